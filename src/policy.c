/*-------------------------------------------------------------------------
 *
 * policy.c
 *		Admission of a call by a worker, before any provider is called:
 *		identify the virtual key or the caller's team, check that the model
 *		is allowed, reserve the worst-case cost on the budgets, and take the
 *		rate limits.  Settling charges the exact cost and gives back the
 *		reservation (see usage.c).
 *
 * The worker keeps teams, keys (by hash), role bindings and budgets in
 * memory, reloaded with the rest of the configuration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "config.h"
#include "metrics.h"
#include "policy.h"
#include "ratelimit.h"
#include "txn.h"

/* A list of model aliases; NULL list means every model */
typedef struct ModelList
{
	int			n;
	char	  **names;
} ModelList;

typedef struct TeamInfo
{
	int64		id;				/* hash key */
	char	   *name;
	ModelList  *allowed;
	int32		rpm;
	int64		tpm;
} TeamInfo;

typedef struct KeyInfo
{
	uint8		hash[LLMGW_KEY_HASH_LEN];	/* hash key */
	int64		id;
	int64		lineage;
	int64		team_id;
	char		prefix[LLMGW_KEY_PREFIX_LEN + 1];
	ModelList  *allowed;
	int32		rpm;
	int64		tpm;
	TimestampTz expires_at;		/* DT_NOEND when never */
	bool		revoked;
	bool		scope_metrics;	/* may read the front door's /metrics */
	bool		scope_finance;	/* may read the front door's /spend */
} KeyInfo;

typedef struct RoleTeam
{
	char		role[NAMEDATALEN];	/* hash key */
	int64		team_id;
} RoleTeam;

static HTAB *teams = NULL;
static HTAB *keys = NULL;
static HTAB *role_teams = NULL;
static LlmgwBudgetDef *budgets = NULL;
static int	nbudgets = 0;

/* Alerts raised while settling, written with the usage rows */
typedef struct PendingAlert
{
	int64		budget_id;
	int64		spent;
	TimestampTz period_start;
	bool		forecast;		/* forecast to run out, not reached */
	TimestampTz at;				/* when the charge was made */
} PendingAlert;

#define MAX_PENDING_ALERTS 64
static PendingAlert pending_alerts[MAX_PENDING_ALERTS];
static int	npending_alerts = 0;

/* A text[] column as a model list (in the current memory context) */
static ModelList *
model_list(HeapTuple tup, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, SPI_tuptable->tupdesc, col, &isnull);
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	ModelList  *list;

	if (isnull)
		return NULL;
	deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	list = palloc(sizeof(ModelList));
	list->n = 0;
	list->names = palloc(sizeof(char *) * Max(n, 1));
	for (int i = 0; i < n; i++)
		if (!nulls[i])
			list->names[list->n++] = TextDatumGetCString(elems[i]);
	return list;
}

static bool
model_allowed(const ModelList *list, const char *model)
{
	if (list == NULL)
		return true;
	for (int i = 0; i < list->n; i++)
		if (strcmp(list->names[i], model) == 0)
			return true;
	return false;
}

static int64
col_int64(HeapTuple tup, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

static char *
col_text(HeapTuple tup, int col)
{
	return SPI_getvalue(tup, SPI_tuptable->tupdesc, col);
}

static HTAB *
make_hash(const char *name, Size keysize, Size entrysize, int flags)
{
	HASHCTL		ctl;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = keysize;
	ctl.entrysize = entrysize;
	ctl.hcxt = CurrentMemoryContext;
	return hash_create(name, 256, &ctl, HASH_ELEM | HASH_CONTEXT | flags);
}

/*
 * Run a query; the memory context stays the caller's (SPI calls return in
 * SPI's own context, which SPI_finish frees).
 */
static void
run_select(const char *sql)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			rc = SPI_execute(sql, true, 0);

	MemoryContextSwitchTo(cxt);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read configuration: %s", SPI_result_code_string(rc));
}

/* Load teams, role bindings and keys; config memory context is current */
static void
load_identities(void)
{
	teams = make_hash("llmgw teams", sizeof(int64), sizeof(TeamInfo), HASH_BLOBS);
	run_select("SELECT id, name, allowed_models, coalesce(rpm_limit, 0),"
			   " coalesce(tpm_limit, 0) FROM llmgw.teams");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		int64		id = col_int64(tup, 1);
		TeamInfo   *t = hash_search(teams, &id, HASH_ENTER, NULL);

		t->name = col_text(tup, 2);
		t->allowed = model_list(tup, 3);
		t->rpm = (int32) col_int64(tup, 4);
		t->tpm = col_int64(tup, 5);
	}

	role_teams = make_hash("llmgw role teams", NAMEDATALEN, sizeof(RoleTeam), HASH_STRINGS);
	/*
	 * A role's own binding first, then the nearest role it is a member of by
	 * explicit grants: a superuser, a member of every role to
	 * pg_has_role(), is bound to no team unless a binding says so.
	 */
	run_select("WITH RECURSIVE m(member, roleid, depth) AS ("
			   "   SELECT r.oid, r.oid, 0 FROM pg_catalog.pg_roles r"
			   "   UNION"
			   "   SELECT m.member, a.roleid, m.depth + 1 FROM m"
			   "     JOIN pg_catalog.pg_auth_members a ON a.member = m.roleid"
			   "    WHERE m.depth < 64)"
			   " SELECT r.rolname, b.team_id FROM m"
			   "   JOIN pg_catalog.pg_roles r ON r.oid = m.member"
			   "   JOIN pg_catalog.pg_roles br ON br.oid = m.roleid"
			   "   JOIN llmgw.role_bindings b ON b.role_name = br.rolname"
			   " ORDER BY r.rolname, m.depth, b.role_name");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *role = col_text(tup, 1);
		bool		found;
		RoleTeam   *rt;

		if (strlen(role) >= NAMEDATALEN)
			continue;
		rt = hash_search(role_teams, role, HASH_ENTER, &found);
		if (!found)
			rt->team_id = col_int64(tup, 2);
	}

	keys = make_hash("llmgw keys", LLMGW_KEY_HASH_LEN, sizeof(KeyInfo), HASH_BLOBS);
	run_select("SELECT hash, id, lineage_id, coalesce(team_id, 0), prefix, allowed_models,"
			   " coalesce(rpm_limit, 0), coalesce(tpm_limit, 0),"
			   " coalesce(expires_at, 'infinity'), revoked_at IS NOT NULL,"
			   " 'metrics' = ANY (scopes), 'finance' = ANY (scopes)"
			   " FROM llmgw.virtual_keys");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		bytea	   *hash = DatumGetByteaPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		KeyInfo    *k;

		if (VARSIZE_ANY_EXHDR(hash) != LLMGW_KEY_HASH_LEN)
			continue;
		k = hash_search(keys, VARDATA_ANY(hash), HASH_ENTER, NULL);
		k->id = col_int64(tup, 2);
		k->lineage = col_int64(tup, 3);
		k->team_id = col_int64(tup, 4);
		strlcpy(k->prefix, col_text(tup, 5), sizeof(k->prefix));
		k->allowed = model_list(tup, 6);
		k->rpm = (int32) col_int64(tup, 7);
		k->tpm = col_int64(tup, 8);
		k->expires_at = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 9, &isnull));
		k->revoked = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 10, &isnull));
		k->scope_metrics = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 11, &isnull));
		k->scope_finance = DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, 12, &isnull));
	}
}

/* A budget scope as llmgw.budgets names it */
static LlmgwBudgetScope
budget_scope(const char *s)
{
	if (strcmp(s, "key") == 0)
		return LLMGW_BUDGET_KEY;
	if (strcmp(s, "team") == 0)
		return LLMGW_BUDGET_TEAM;
	if (strcmp(s, "role") == 0)
		return LLMGW_BUDGET_ROLE;
	if (strcmp(s, "model") == 0)
		return LLMGW_BUDGET_MODEL;
	return LLMGW_BUDGET_GLOBAL;
}

/* A budget period as llmgw.budgets names it */
static LlmgwPeriod
budget_period(const char *s)
{
	if (strcmp(s, "day") == 0)
		return LLMGW_PERIOD_DAY;
	if (strcmp(s, "week") == 0)
		return LLMGW_PERIOD_WEEK;
	if (strcmp(s, "month") == 0)
		return LLMGW_PERIOD_MONTH;
	return LLMGW_PERIOD_TOTAL;
}

/* The word for a period in messages */
static const char *
period_name(LlmgwPeriod period)
{
	switch (period)
	{
		case LLMGW_PERIOD_DAY:
			return "day";
		case LLMGW_PERIOD_WEEK:
			return "week";
		case LLMGW_PERIOD_MONTH:
			return "month";
		default:
			return "budget's lifetime";
	}
}

/* Load the budgets and make the shared ledger hold them */
static void
load_budgets(void)
{
	int			rc;
	MemoryContext cxt = CurrentMemoryContext;

	run_select("SELECT id, name, scope, coalesce(key_id, 0), coalesce(team_id, 0), role_name,"
			   " model, period, enforcement = 'hard',"
			   " floor(least(limit_amount, 900000000) * " LLMGW_MONEY_SCALE_SQL ")::int8, currency"
			   " FROM llmgw.budgets ORDER BY id");
	nbudgets = (int) SPI_processed;
	budgets = palloc0(sizeof(LlmgwBudgetDef) * Max(nbudgets, 1));
	for (int i = 0; i < nbudgets; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		LlmgwBudgetDef *b = &budgets[i];

		b->id = col_int64(tup, 1);
		b->name = col_text(tup, 2);
		b->scope = budget_scope(col_text(tup, 3));
		b->key_lineage = col_int64(tup, 4);
		b->team_id = col_int64(tup, 5);
		b->role = col_text(tup, 6);
		b->model = col_text(tup, 7);
		b->period = budget_period(col_text(tup, 8));
		b->hard = strcmp(col_text(tup, 9), "t") == 0;
		b->limit = col_int64(tup, 10);
		strlcpy(b->currency, col_text(tup, 11), sizeof(b->currency));
	}
	if (!llmgw_budget_sync(budgets, nbudgets))
		return;

	/*
	 * Load the spend of the budgets, and what batch items not answered yet
	 * reserve on them.  The SHARE locks wait for the workers that are
	 * writing usage rows (and charging the ledger) and for the batches
	 * being queued or written to commit, and keep new ones out until we are
	 * done: a fresh snapshot taken now sees every charge and batch
	 * reservation already in the ledger and none that is not.
	 */
	rc = SPI_execute("LOCK TABLE llmgw.usage, llmgw.batch_items IN SHARE MODE", false, 0);
	if (rc != SPI_OK_UTILITY)
		elog(ERROR, "llmgw: could not lock llmgw.usage: %s", SPI_result_code_string(rc));
	rc = SPI_execute("SELECT b.id, ceil(llmgw.budget_spent(b, now()) * " LLMGW_MONEY_SCALE_SQL ")::int8,"
					 " llmgw.period_start(b.period, now()), llmgw.period_end(b.period, now()),"
					 " ceil(llmgw.budget_batch_reserved(b) * " LLMGW_MONEY_SCALE_SQL ")::int8"
					 " FROM llmgw.budgets b ORDER BY b.id", false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read budget spend: %s", SPI_result_code_string(rc));
	MemoryContextSwitchTo(cxt);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		int64		id = col_int64(tup, 1);
		bool		isnull;

		for (int j = 0; j < nbudgets; j++)
			if (budgets[j].id == id)
				llmgw_budget_loaded(id, col_int64(tup, 2), col_int64(tup, 5),
									DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull)),
									DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 4, &isnull)));
	}
}

static MemoryContext policy_cxt = NULL;
static uint64 loaded_generation = 0;

/* Load identities and budgets (in a transaction, SPI connected) */
static void
load_policy(void *arg)
{
	MemoryContext old = MemoryContextSwitchTo(policy_cxt);

	load_identities();
	load_budgets();
	MemoryContextSwitchTo(old);
}

/*
 * Reload teams, keys, role bindings and budgets if an admin changed them
 * (or the ledger asks for a reload) since last time.  The worker refreshes
 * the configuration first: nothing is loaded while the extension is not
 * installed.  Returns false when they could not be loaded.
 */
bool
llmgw_policy_refresh(void)
{
	uint64		generation = pg_atomic_read_u64(&llmgw_shared->config_generation);

	if (generation == loaded_generation || !llmgw_config_installed())
		return true;
	if (policy_cxt == NULL)
		policy_cxt = AllocSetContextCreate(TopMemoryContext, "llmgw policy",
										   ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(policy_cxt);
	teams = keys = role_teams = NULL;
	budgets = NULL;
	nbudgets = 0;
	if (!llmgw_in_transaction("llmgw: loading keys and budgets", load_policy, NULL))
		return false;
	loaded_generation = generation;
	return true;
}

/* Refuse a call with a policy error; message, detail and hint are the user's */
static bool
refuse(LlmgwCall *call, LlmgwErrorClass error, char *message, char *detail, char *hint)
{
	/* the other refusals are counted where their scope is known */
	if (error == LLMGW_ERR_INVALID_KEY)
		llmgw_metrics_refused(LLMGW_REFUSED_INVALID_KEY, LLMGW_SCOPE_KEY);
	call->out.status = LLMGW_STATUS_ERROR;
	call->out.error = error;
	call->deny_message = message;
	call->deny_detail = detail;
	call->deny_hint = hint;
	return false;
}

/* Money units as text with the currency, rounded up to 1e-6 */
static char *
money_text(int64 units, const char *currency)
{
	return psprintf("%.6f %s", (double) units / LLMGW_MONEY_SCALE, currency);
}

/* Does budget b apply to the call? */
static bool
budget_applies(const LlmgwBudgetDef *b, const LlmgwCall *call)
{
	switch (b->scope)
	{
		case LLMGW_BUDGET_KEY:
			return call->key_lineage != 0 && b->key_lineage == call->key_lineage;
		case LLMGW_BUDGET_TEAM:
			return call->team_id != 0 && b->team_id == call->team_id;
		case LLMGW_BUDGET_ROLE:
			return call->role && strcmp(b->role, call->role) == 0;
		case LLMGW_BUDGET_MODEL:
			return strcmp(b->model, call->model) == 0;
		default:
			return true;
	}
}

/* Who the call is: its key, or its role's team */
static bool
identify(LlmgwCall *call)
{
	if (call->has_key)
	{
		KeyInfo    *k = keys ? hash_search(keys, call->key_hash, HASH_FIND, NULL) : NULL;

		if (k == NULL)
			return refuse(call, LLMGW_ERR_INVALID_KEY, pstrdup("invalid virtual key"),
						  pstrdup(call->front ? "The key the request presented is not a key of this gateway." :
								  "The key in llmgw.api_key is not a key of this gateway."),
						  pstrdup("Check the key, or ask an llmgw_admin for one (llmgw.create_key)."));
		if (k->revoked)
			return refuse(call, LLMGW_ERR_INVALID_KEY,
						  psprintf("virtual key %s was revoked", k->prefix), NULL, NULL);
		if (k->expires_at != DT_NOEND && k->expires_at <= GetCurrentTimestamp())
			return refuse(call, LLMGW_ERR_INVALID_KEY,
						  psprintf("virtual key %s expired at %s", k->prefix,
								   timestamptz_to_str(k->expires_at)), NULL, NULL);
		call->key_id = k->id;
		call->key_lineage = k->lineage;
		call->team_id = k->team_id;
		strlcpy(call->key_prefix, k->prefix, sizeof(call->key_prefix));
		if (!model_allowed(k->allowed, call->model))
		{
			llmgw_metrics_refused(LLMGW_REFUSED_NOT_ALLOWED, LLMGW_SCOPE_KEY);
			return refuse(call, LLMGW_ERR_NOT_ALLOWED,
						  psprintf("virtual key %s may not use model \"%s\"", k->prefix, call->model),
						  NULL, NULL);
		}
		if (k->rpm > 0 || k->tpm > 0)
			call->limits[call->nlimits++] = (LlmgwLimit)
			{
				LLMGW_LIMIT_KEY, k->lineage, k->rpm, k->tpm
			};
	}
	else if (call->role && role_teams)
	{
		RoleTeam   *rt = strlen(call->role) < NAMEDATALEN ?
			hash_search(role_teams, call->role, HASH_FIND, NULL) : NULL;

		if (rt)
			call->team_id = rt->team_id;
	}
	if (call->team_id != 0 && teams)
	{
		TeamInfo   *t = hash_search(teams, &call->team_id, HASH_FIND, NULL);

		if (t && !model_allowed(t->allowed, call->model))
		{
			llmgw_metrics_refused(LLMGW_REFUSED_NOT_ALLOWED, LLMGW_SCOPE_TEAM);
			return refuse(call, LLMGW_ERR_NOT_ALLOWED,
						  psprintf("team \"%s\" may not use model \"%s\"", t->name, call->model),
						  NULL, NULL);
		}
		if (t && (t->rpm > 0 || t->tpm > 0))
			call->limits[call->nlimits++] = (LlmgwLimit)
			{
				LLMGW_LIMIT_TEAM, t->id, t->rpm, t->tpm
			};
	}
	return true;
}

/*
 * May the key with this hash call the model (NULL: is it a valid key at
 * all)?  LLMGW_ERR_NONE, LLMGW_ERR_INVALID_KEY or LLMGW_ERR_NOT_ALLOWED, as
 * a call would be refused (the front door lists a key's models with it).
 */
LlmgwErrorClass
llmgw_policy_key_may(const uint8 *hash, const char *model)
{
	KeyInfo    *k = keys ? hash_search(keys, hash, HASH_FIND, NULL) : NULL;
	TeamInfo   *t;

	if (k == NULL || k->revoked ||
		(k->expires_at != DT_NOEND && k->expires_at <= GetCurrentTimestamp()))
		return LLMGW_ERR_INVALID_KEY;
	if (model == NULL)
		return LLMGW_ERR_NONE;
	if (!model_allowed(k->allowed, model))
		return LLMGW_ERR_NOT_ALLOWED;
	t = k->team_id != 0 && teams ? hash_search(teams, &k->team_id, HASH_FIND, NULL) : NULL;
	if (t && !model_allowed(t->allowed, model))
		return LLMGW_ERR_NOT_ALLOWED;
	return LLMGW_ERR_NONE;
}

/*
 * The front door scopes of a valid key (LLMGW_KEY_SCOPE_* bits); -1 when
 * the key is not valid
 */
int
llmgw_policy_key_scopes(const uint8 *hash)
{
	KeyInfo    *k = keys ? hash_search(keys, hash, HASH_FIND, NULL) : NULL;

	if (llmgw_policy_key_may(hash, NULL) != LLMGW_ERR_NONE)
		return -1;
	return (k->scope_metrics ? LLMGW_KEY_SCOPE_METRICS : 0) |
		(k->scope_finance ? LLMGW_KEY_SCOPE_FINANCE : 0);
}

/* Name of the scope a limit belongs to, for messages */
static char *
limit_name(const LlmgwCall *call, const LlmgwLimit *l)
{
	switch (l->scope)
	{
		case LLMGW_LIMIT_KEY:
			return psprintf("virtual key %s", call->key_prefix);
		case LLMGW_LIMIT_TEAM:
			{
				TeamInfo   *t = hash_search(teams, &l->id, HASH_FIND, NULL);

				return psprintf("team \"%s\"", t ? t->name : "?");
			}
		case LLMGW_LIMIT_MODEL:
			return psprintf("model \"%s\"", call->model);
		default:
			return psprintf("deployment %s/%s", call->provider, call->upstream_model);
	}
}

/* Refuse for a rate limit */
static bool
refuse_rate(LlmgwCall *call, const LlmgwLimit *l, const LlmgwLimitRefusal *r)
{
	call->out.retry_after_s = r->retry_after_s;
	llmgw_metrics_rate_refused(l->scope);
	return refuse(call, LLMGW_ERR_LOCAL_RATE_LIMIT,
				  psprintf("rate limit of %s reached", limit_name(call, l)),
				  r->tokens ? psprintf("The limit is %lld tokens per minute.", (long long) l->tpm)
				  : psprintf("The limit is %d requests per minute.", l->rpm),
				  psprintf("Retry after %.1f seconds.", Max(r->retry_after_s, 0.1)));
}

/* The largest output a call can produce on a route, or -1 when unbounded */
int64
llmgw_policy_output_bound(const LlmgwCall *call, const LlmgwRoute *route)
{
	if (call->kind == LLMGW_KIND_EMBED)
		return 0;
	if (call->max_output_tokens > 0)
		return call->max_output_tokens;
	if (route->max_output_tokens > 0)
		return route->max_output_tokens;
	return -1;
}

/*
 * Admit a call (the worker's configuration is loaded and call->routes are
 * ordered).  Returns false when the call is refused; its outcome says why.
 */
bool
llmgw_policy_admit(LlmgwCall *call, const LlmgwModelRoutes *model)
{
	LlmgwBudgetDef *applicable[LLMGW_MAX_CALL_BUDGETS];
	int			napplicable = 0;
	bool		any_hard = false;
	int64		worst = 0;
	bool		unbounded = false;
	LlmgwBudgetRefusal refusal;
	LlmgwLimitRefusal rate_refusal;
	LlmgwReservation *res = &llmgw_slots[call->slotno].reservation;
	int64		input_bound = (int64) call->caller_body_len;

	if (!identify(call))
		return false;
	if (model && (model->rpm_limit > 0 || model->tpm_limit > 0))
		call->limits[call->nlimits++] = (LlmgwLimit)
		{
			LLMGW_LIMIT_MODEL, (int64) hash_bytes_extended((const unsigned char *) call->model,
														   strlen(call->model), 0),
				model->rpm_limit, model->tpm_limit
		};

	for (int i = 0; i < nbudgets && napplicable < LLMGW_MAX_CALL_BUDGETS; i++)
	{
		if (budget_applies(&budgets[i], call))
		{
			applicable[napplicable++] = &budgets[i];
			any_hard |= budgets[i].hard;
		}
	}

	/*
	 * The worst case over the deployments the call may use: every byte of
	 * the request an input token at the highest input rate, and the whole
	 * output bound at the highest output rate.
	 */
	for (int i = 0; i < call->nroutes; i++)
	{
		const LlmgwRoute *route = &call->routes[i];
		int64		out = llmgw_policy_output_bound(call, route);
		int64		cost;

		if (!route->priced)
		{
			if (any_hard)
			{
				for (int j = 0; j < napplicable; j++)
					if (applicable[j]->hard)
					{
						llmgw_metrics_budget_refused(applicable[j]->scope);
						return refuse(call, LLMGW_ERR_BUDGET,
									  psprintf("cannot enforce budget \"%s\": deployment %s/%s of model \"%s\" has no price",
											   applicable[j]->name, route->provider,
											   route->upstream_model, call->model),
									  NULL,
									  pstrdup("Set its price with llmgw.set_price() or llmgw.import_prices()."));
					}
			}
			continue;
		}
		if (out < 0 && route->output_rate > 0)
			unbounded = true;
		cost = input_bound * route->input_rate + Max(out, 0) * route->output_rate +
			route->per_request;
		worst = Max(worst, cost);
	}
	call->estimated_tokens = input_bound / 4 + Max(call->max_output_tokens, 0);

	if (!llmgw_budget_reserve(applicable, napplicable, worst, unbounded, res, &refusal))
	{
		LlmgwBudgetDef *b = applicable[refusal.index];
		StringInfoData detail;

		llmgw_metrics_budget_refused(b->scope);
		initStringInfo(&detail);
		appendStringInfo(&detail, "Spent %s of %s this %s", money_text(refusal.spent, b->currency),
						 money_text(b->limit, b->currency),
						 period_name(b->period));
		if (refusal.reserved > 0)
			appendStringInfo(&detail, ", %s reserved by calls in flight",
							 money_text(refusal.reserved, b->currency));
		appendStringInfo(&detail, "; this call may cost up to %s.", money_text(worst, b->currency));
		/* when it is worth trying again (the front door's Retry-After) */
		if (refusal.resets_at != DT_NOEND)
			call->out.retry_after_s =
				Max((double) (refusal.resets_at - GetCurrentTimestamp()) / USECS_PER_SEC, 0);
		return refuse(call, LLMGW_ERR_BUDGET,
					  psprintf("budget \"%s\" is exhausted", b->name), detail.data,
					  refusal.resets_at == DT_NOEND ?
					  pstrdup("The budget never resets; an llmgw_admin can raise its limit.") :
					  psprintf("It resets at %s.", timestamptz_to_str(refusal.resets_at)));
	}
	if (!llmgw_ratelimit_take(call->limits, call->nlimits, call->estimated_tokens, &rate_refusal))
	{
		llmgw_budget_release(res);
		return refuse_rate(call, &call->limits[rate_refusal.index], &rate_refusal);
	}
	return true;
}

/*
 * Take the rate limits of the deployment an attempt is about to use.
 * Returns false (the outcome says why) when the deployment is saturated,
 * so that the router moves on to the next one.
 */
bool
llmgw_policy_deployment(LlmgwCall *call, const LlmgwRoute *route)
{
	LlmgwLimitRefusal r;

	call->has_deployment_limit = false;
	if (route->rpm_limit <= 0 && route->tpm_limit <= 0)
		return true;
	call->deployment_limit = (LlmgwLimit)
	{
		LLMGW_LIMIT_DEPLOYMENT, route->deployment_id, route->rpm_limit, route->tpm_limit
	};
	if (!llmgw_ratelimit_take(&call->deployment_limit, 1, call->estimated_tokens, &r))
		return refuse_rate(call, &call->deployment_limit, &r);
	call->has_deployment_limit = true;
	return true;
}

/* Charge an attempt's exact cost (money units) to the call's budgets */
void
llmgw_policy_charge(LlmgwCall *call, int64 cost, const char *currency, TimestampTz started_at)
{
	LlmgwReservation *res = &llmgw_slots[call->slotno].reservation;
	LlmgwBudgetCrossing crossings[LLMGW_MAX_CALL_BUDGETS];
	bool		charged[LLMGW_MAX_CALL_BUDGETS];
	int			n;

	/* only the budgets kept in the attempt's currency */
	for (int i = 0; i < res->n; i++)
	{
		charged[i] = false;
		for (int j = 0; j < nbudgets; j++)
		{
			if (budgets[j].id == res->budget_id[i])
			{
				charged[i] = currency && strcmp(budgets[j].currency, currency) == 0;
				break;
			}
		}
	}
	n = llmgw_budget_charge(res, charged, cost, started_at, crossings, LLMGW_MAX_CALL_BUDGETS);
	for (int i = 0; i < n && npending_alerts < MAX_PENDING_ALERTS; i++)
	{
		pending_alerts[npending_alerts].budget_id = crossings[i].budget_id;
		pending_alerts[npending_alerts].spent = crossings[i].spent;
		pending_alerts[npending_alerts].period_start = crossings[i].period_start;
		pending_alerts[npending_alerts].forecast = crossings[i].forecast;
		pending_alerts[npending_alerts].at = crossings[i].at;
		npending_alerts++;
	}
}

/*
 * Charge a call whose usage rows could not be written, so that its budgets
 * still count it: its tokens at its deployment's highest rates (the input
 * and output bounds when the provider reported none).
 */
void
llmgw_policy_charge_estimate(LlmgwCall *call)
{
	const LlmgwRoute *route = call->route;
	int64		in = call->out.tokens[LLMGW_TOKENS_INPUT];
	int64		out = call->out.tokens[LLMGW_TOKENS_OUTPUT];

	if (route == NULL || !route->priced || !call->reached_provider)
		return;
	if (in == LLMGW_TOKENS_UNKNOWN)
		in = call->input_estimate;
	if (out == LLMGW_TOKENS_UNKNOWN)
		out = Max(call->output_estimate, 0);
	llmgw_policy_charge(call, in * route->input_rate + out * route->output_rate +
						route->per_request, route->currency, call->started_at);
}

/* The call is settled: give back its reservation and correct token counts */
void
llmgw_policy_finish(LlmgwCall *call)
{
	int64		used = 0;

	llmgw_budget_release(&llmgw_slots[call->slotno].reservation);
	if (call->out.tokens[LLMGW_TOKENS_INPUT] > 0)
		used += call->out.tokens[LLMGW_TOKENS_INPUT];
	if (call->out.tokens[LLMGW_TOKENS_OUTPUT] > 0)
		used += call->out.tokens[LLMGW_TOKENS_OUTPUT];
	if (used == 0 && call->out.status != LLMGW_STATUS_OK)
		used = 0;
	else if (used == 0)
		used = call->estimated_tokens;	/* nothing reported: keep the estimate */
	llmgw_ratelimit_adjust(call->limits, call->nlimits, used - call->estimated_tokens);
	if (call->has_deployment_limit)
		llmgw_ratelimit_adjust(&call->deployment_limit, 1, used - call->estimated_tokens);
	call->nlimits = 0;
	call->has_deployment_limit = false;
}

/*
 * The statement that records a forecast alert: its run-rate and time of
 * exhaustion as llmgw.budget_projection computes them from the ledger's
 * spend, once per budget and period however often the workers (of this
 * server life or another) find the forecast.
 */
static SPIPlanPtr
forecast_alert_plan(void)
{
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
	{
		Oid			types[4] = {INT8OID, NUMERICOID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		plan = SPI_prepare("WITH a AS ("
						   " INSERT INTO llmgw.alerts (budget_id, budget_name, kind, period_start,"
						   "   limit_amount, spent, currency, team_id, run_rate, exhausts_at)"
						   " SELECT b.id, b.name, 'forecast_exhaustion', $3, b.limit_amount,"
						   "   pg_catalog.trim_scale($2), b.currency, b.team_id, p.run_rate, p.exhausts_at"
						   " FROM llmgw.budgets b"
						   " CROSS JOIN LATERAL llmgw.budget_projection(b.period, b.limit_amount,"
						   "   $2, $3, $4) p"
						   " WHERE b.id = $1 AND p.exhausts_at IS NOT NULL"
						   "   AND NOT EXISTS (SELECT FROM llmgw.alerts x WHERE x.budget_id = b.id"
						   "     AND x.kind = 'forecast_exhaustion' AND x.period_start = $3)"
						   " RETURNING *)"
						   " SELECT pg_catalog.pg_notify('llmgw_alerts', pg_catalog.json_build_object("
						   "   'alert_id', a.id, 'budget', a.budget_name, 'kind', a.kind,"
						   "   'limit', a.limit_amount, 'spent', a.spent, 'currency', a.currency,"
						   "   'run_rate', a.run_rate, 'exhausts_at', a.exhausts_at)::text)"
						   " FROM a", 4, types);
		if (plan == NULL)
			elog(ERROR, "llmgw: could not prepare the forecast alert insert");
		SPI_keepplan(plan);
	}
	return plan;
}

/*
 * Write the alerts raised by this round's charges: a row in llmgw.alerts
 * and a NOTIFY on channel llmgw_alerts, in the usage transaction.
 */
void
llmgw_policy_alerts(void)
{
	static SPIPlanPtr plan = NULL;

	if (npending_alerts == 0)
		return;
	if (plan == NULL)
	{
		Oid			types[3] = {INT8OID, NUMERICOID, TIMESTAMPTZOID};

		plan = SPI_prepare("WITH a AS ("
						   " INSERT INTO llmgw.alerts (budget_id, budget_name, kind, period_start,"
						   "   limit_amount, spent, currency, team_id)"
						   " SELECT b.id, b.name, CASE b.enforcement WHEN 'hard'"
						   "   THEN 'hard_limit_reached' ELSE 'soft_limit_reached' END,"
						   "   $3, b.limit_amount, pg_catalog.trim_scale($2), b.currency, b.team_id"
						   " FROM llmgw.budgets b WHERE b.id = $1 RETURNING *)"
						   " SELECT pg_catalog.pg_notify('llmgw_alerts', pg_catalog.json_build_object("
						   "   'alert_id', a.id, 'budget', a.budget_name, 'kind', a.kind,"
						   "   'limit', a.limit_amount, 'spent', a.spent, 'currency', a.currency)::text)"
						   " FROM a", 3, types);
		if (plan == NULL)
			elog(ERROR, "llmgw: could not prepare the alert insert");
		SPI_keepplan(plan);
	}
	for (int i = 0; i < npending_alerts; i++)
	{
		Datum		values[4];
		char		nulls[4] = {' ', ' ', ' ', ' '};

		values[0] = Int64GetDatum(pending_alerts[i].budget_id);
		values[1] = DirectFunctionCall2(numeric_div,
										DirectFunctionCall1(int8_numeric,
															Int64GetDatum(pending_alerts[i].spent)),
										DirectFunctionCall1(int8_numeric,
															Int64GetDatum((int64) LLMGW_MONEY_SCALE)));
		values[2] = TimestampTzGetDatum(pending_alerts[i].period_start);
		if (pending_alerts[i].period_start == DT_NOBEGIN)
			nulls[2] = 'n';
		values[3] = TimestampTzGetDatum(pending_alerts[i].at);
		if (SPI_execute_plan(pending_alerts[i].forecast ? forecast_alert_plan() : plan,
							 values, nulls, false, 0) < 0)
			elog(ERROR, "llmgw: could not record a budget alert");
	}
	npending_alerts = 0;
}

/* Forget alerts of a usage transaction that failed */
void
llmgw_policy_alerts_discard(void)
{
	npending_alerts = 0;
}
