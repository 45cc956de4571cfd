/*-------------------------------------------------------------------------
 *
 * reqlog.c
 *		The request log: the request and response bodies of the calls that
 *		llmgw.request_log_rules selects (a team, a key lineage, a model),
 *		one llmgw.request_log row per call beside its last usage row.
 *
 * Nothing of a body is kept unless a rule selects the call: the worker
 * loads the rules with its configuration, and only selected calls carry
 * their bodies into the round's rows.  The bodies go through the
 * redaction rules (llmgw.redaction_rules, src/redaction.c) in the
 * worker, then are cut to llmgw.request_log_max_body bytes at a
 * character boundary: no unredacted byte reaches SQL.  The rows are
 * written in the settle transaction, in a subtransaction of their own, so
 * that a log that cannot be written costs its rows (a WARNING), never the
 * calls' usage rows or answers.
 *
 * One row per call, for the attempt whose answer the caller got (its last
 * with a usage row): the request is the same for every attempt, and the
 * answers of the attempts before were errors, which their usage rows
 * classify.  Calls recorded as interrupted after a worker or server death
 * are not logged (their answer is lost with the process).
 *
 * The table is partitioned by the UTC day its attempt started: the
 * workers create each day's partition (and the next day's) when a row
 * first needs it, in a transaction of their own before the round is
 * written, and worker 0 drops the days beyond llmgw.request_log_retention
 * every hour and when the setting changes.  Both take a lock on the table
 * that waits for its readers: they give up after a short lock timeout and
 * try again later, rather than hold the calls' settling behind a report.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/partcache.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"

#include "direct.h"
#include "redaction.h"
#include "reqlog.h"
#include "txn.h"

int			llmgw_request_log_retention = 30;	/* days */
int			llmgw_request_log_max_body = 64 * 1024; /* bytes */

/* How long creating or dropping a partition waits for the table's readers */
#define PARTITION_LOCK_TIMEOUT "500ms"

/* The rules of the last configuration load, in rules_cxt */
static MemoryContext rules_cxt = NULL;
static int	nteams = 0;
static int64 *teams = NULL;		/* sorted */
static int	nkeys = 0;
static int64 *keys = NULL;		/* key lineages, sorted */
static int	nmodels = 0;
static char **models = NULL;
static int	nredactions = 0;
static LlmgwRedactionRule *redactions = NULL;

/* Days (UTC, [from, until)) known to have a partition */
static TimestampTz partitions_from = 0;
static TimestampTz partitions_until = 0;

/* One logged call of a round */
typedef struct ReqlogEntry
{
	LlmgwCall  *call;
	pg_uuid_t	request_id;
	int32		attempt;
	TimestampTz started_at;
} ReqlogEntry;

struct LlmgwReqlog
{
	int			n;
	int			cap;
	ReqlogEntry *entries;
};

/* The columns of the INSERT, one array parameter each */
typedef enum ReqlogColumn
{
	RL_REQUEST_ID,
	RL_ATTEMPT,
	RL_STARTED_AT,
	RL_ROLE,
	RL_KEY_ID,
	RL_TEAM_ID,
	RL_MODEL,
	RL_REQUEST,
	RL_REQUEST_BYTES,
	RL_REQUEST_TRUNCATED,
	RL_RESPONSE,
	RL_RESPONSE_BYTES,
	RL_RESPONSE_TRUNCATED,
	RL_REDACTED,
	RL_NCOLUMNS
} ReqlogColumn;

static const Oid column_types[RL_NCOLUMNS] = {
	[RL_REQUEST_ID] = UUIDOID,
	[RL_ATTEMPT] = INT4OID,
	[RL_STARTED_AT] = TIMESTAMPTZOID,
	[RL_ROLE] = TEXTOID,
	[RL_KEY_ID] = INT8OID,
	[RL_TEAM_ID] = INT8OID,
	[RL_MODEL] = TEXTOID,
	[RL_REQUEST] = TEXTOID,
	[RL_REQUEST_BYTES] = INT4OID,
	[RL_REQUEST_TRUNCATED] = BOOLOID,
	[RL_RESPONSE] = TEXTOID,
	[RL_RESPONSE_BYTES] = INT4OID,
	[RL_RESPONSE_TRUNCATED] = BOOLOID,
	[RL_REDACTED] = BOOLOID,
};

/* The columns by name, as the table has them; logged_at gets its default (the transaction's start) */
static const char *const column_names[RL_NCOLUMNS] = {
	[RL_REQUEST_ID] = "request_id",
	[RL_ATTEMPT] = "attempt",
	[RL_STARTED_AT] = "started_at",
	[RL_ROLE] = "role_name",
	[RL_KEY_ID] = "key_id",
	[RL_TEAM_ID] = "team_id",
	[RL_MODEL] = "model",
	[RL_REQUEST] = "request_body",
	[RL_REQUEST_BYTES] = "request_bytes",
	[RL_REQUEST_TRUNCATED] = "request_truncated",
	[RL_RESPONSE] = "response_body",
	[RL_RESPONSE_BYTES] = "response_bytes",
	[RL_RESPONSE_TRUNCATED] = "response_truncated",
	[RL_REDACTED] = "redacted",
};

#define REQLOG_INSERT \
	"INSERT INTO llmgw.request_log (request_id, attempt, started_at, role_name, key_id," \
	" team_id, model, request_body, request_bytes, request_truncated, response_body," \
	" response_bytes, response_truncated, redacted)" \
	" SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"

/* Define the llmgw.request_log_* settings */
void
llmgw_reqlog_define_gucs(void)
{
	DefineCustomIntVariable("llmgw.request_log_retention",
							"Days of the request log kept, today included; older daily partitions are dropped. 0: all are kept.",
							NULL, &llmgw_request_log_retention, 30, 0, 36500,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.request_log_max_body",
							"Largest request or response body the request log keeps; a longer one is cut and marked truncated.",
							NULL, &llmgw_request_log_max_body, 64 * 1024, 0, INT_MAX / 2,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
}

static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/*
 * Load the rules (in the configuration's transaction, SPI connected).  On
 * an error part way, no rule is left loaded: nothing is logged.
 */
void
llmgw_reqlog_load(bool installed)
{
	MemoryContext old;
	int			rc;
	int			nt = 0,
				nk = 0,
				nm = 0;
	int64	   *t,
			   *k;
	char	  **m;

	if (rules_cxt == NULL)
		rules_cxt = AllocSetContextCreate(TopMemoryContext, "llmgw request log rules",
										  ALLOCSET_SMALL_SIZES);
	nteams = nkeys = nmodels = nredactions = 0;
	MemoryContextReset(rules_cxt);
	if (!installed)
		return;

	rc = SPI_execute("SELECT scope, coalesce(team_id, key_id, 0), model"
					 " FROM llmgw.request_log_rules", true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read the request log rules: %s", SPI_result_code_string(rc));
	old = MemoryContextSwitchTo(rules_cxt);
	t = palloc(sizeof(int64) * (SPI_processed + 1));
	k = palloc(sizeof(int64) * (SPI_processed + 1));
	m = palloc(sizeof(char *) * (SPI_processed + 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *scope = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));

		if (strcmp(scope, "team") == 0)
			t[nt++] = id;
		else if (strcmp(scope, "key") == 0)
			k[nk++] = id;
		else
			m[nm++] = SPI_getvalue(tup, SPI_tuptable->tupdesc, 3);
	}
	qsort(t, nt, sizeof(int64), int64_cmp);
	qsort(k, nk, sizeof(int64), int64_cmp);
	MemoryContextSwitchTo(old);

	/* the patterns matter only when something is logged */
	if (nt + nk + nm > 0)
		redactions = llmgw_redaction_load(rules_cxt, &nredactions);
	teams = t;
	keys = k;
	models = m;
	nteams = nt;
	nkeys = nk;
	nmodels = nm;
}

/* Does a rule select this call? */
bool
llmgw_reqlog_wanted(const LlmgwCall *call)
{
	if (nteams + nkeys + nmodels == 0)
		return false;
	if (call->team_id != 0 &&
		bsearch(&call->team_id, teams, nteams, sizeof(int64), int64_cmp) != NULL)
		return true;
	if (call->key_lineage != 0 &&
		bsearch(&call->key_lineage, keys, nkeys, sizeof(int64), int64_cmp) != NULL)
		return true;
	for (int i = 0; i < nmodels && call->model; i++)
		if (strcmp(models[i], call->model) == 0)
			return true;
	return false;
}

/*
 * The attempt a finished call is logged with: the one whose answer the
 * caller got, which is its last with a usage row (the current attempt, or
 * the last before it that reached a provider).  False when it has none.
 * A cache hit's row gets its time when it is written: *started_at is 0.
 */
static bool
logged_attempt(LlmgwCall *call, int32 *attempt, TimestampTz *started_at)
{
	dlist_iter	iter;
	bool		found = false;

	if (call->cache_hit || call->reached_provider)
	{
		*attempt = call->attempt;
		*started_at = call->cache_hit ? 0 : call->started_at;
		return true;
	}
	dlist_foreach(iter, &call->past_attempts)
	{
		LlmgwAttempt *a = dlist_container(LlmgwAttempt, node, iter.cur);

		if (a->reached_provider)
		{
			*attempt = a->number;
			*started_at = a->started_at;
			found = true;
		}
	}
	return found;
}

/* Start of the UTC day of a time */
static TimestampTz
day_start(TimestampTz t)
{
	TimestampTz r = t - t % USECS_PER_DAY;

	return r > t ? r - USECS_PER_DAY : r;
}

typedef struct PartitionRange
{
	TimestampTz from;
	int			days;
} PartitionRange;

/* Create the partitions of a range of days (in a transaction) */
static void
create_partitions(void *arg)
{
	PartitionRange *range = (PartitionRange *) arg;
	Oid			types[2] = {DATEOID, INT4OID};
	Datum		args[2];
	int			rc;

	args[0] = DateADTGetDatum((DateADT) (range->from / USECS_PER_DAY));
	args[1] = Int32GetDatum(range->days);
	SPI_execute("SELECT pg_catalog.set_config('lock_timeout', '" PARTITION_LOCK_TIMEOUT "', true)",
				false, 0);
	rc = SPI_execute_with_args("SELECT llmgw.create_request_log_partitions($1, $2)",
							   2, types, args, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not create request log partitions: %s",
			 SPI_result_code_string(rc));
}

/*
 * Before a round is written: make sure the days its logged calls started
 * on have partitions (and today and tomorrow, so that one creation a day
 * serves every worker).  A failure is logged; the rows that find no
 * partition are then lost with a WARNING, and the next round tries again.
 */
void
llmgw_reqlog_prepare(dlist_head *finished)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz first = 0,
				last = 0;
	dlist_iter	iter;
	PartitionRange range;

	if (nteams + nkeys + nmodels == 0)
		return;
	dlist_foreach(iter, finished)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);
		int32		attempt;
		TimestampTz started_at;

		if (!llmgw_reqlog_wanted(call) || !logged_attempt(call, &attempt, &started_at))
			continue;
		if (started_at == 0)
			started_at = now;
		if (first == 0 || started_at < first)
			first = started_at;
		if (started_at > last)
			last = started_at;
	}
	if (first == 0)
		return;
	first = day_start(first);
	last = day_start(last) + USECS_PER_DAY;
	if (partitions_until != 0 && first >= partitions_from && last <= partitions_until)
		return;
	first = Min(first, day_start(now));
	last = Max(last, day_start(now) + 2 * USECS_PER_DAY);
	/* a call a year old has no place in the log anyway */
	first = Max(first, last - 366 * USECS_PER_DAY);
	range.from = first;
	range.days = (int) ((last - first) / USECS_PER_DAY);
	if (llmgw_in_transaction("llmgw: creating request log partitions", create_partitions, &range))
	{
		partitions_from = first;
		partitions_until = last;
	}
}

/* A new empty batch in the current memory context */
LlmgwReqlog *
llmgw_reqlog_batch(void)
{
	LlmgwReqlog *log = palloc0(sizeof(LlmgwReqlog));

	log->cap = 16;
	log->entries = palloc(sizeof(ReqlogEntry) * log->cap);
	return log;
}

void
llmgw_reqlog_clear(LlmgwReqlog *log)
{
	if (log)
		log->n = 0;
}

/*
 * A finished call's rows were added to the round: log it if a rule
 * selects it.  row is its last row of the round (NULL: none, its last
 * attempt did not reach a provider), which is the row it is logged with
 * unless the call is logged with an attempt recorded before.
 */
void
llmgw_reqlog_add(LlmgwReqlog *log, LlmgwCall *call, const LlmgwUsageRow *row)
{
	ReqlogEntry *e;
	int32		attempt;
	TimestampTz started_at;

	if (log == NULL || !llmgw_reqlog_wanted(call) ||
		!logged_attempt(call, &attempt, &started_at))
		return;
	if (log->n == log->cap)
	{
		log->cap *= 2;
		log->entries = repalloc(log->entries, sizeof(ReqlogEntry) * log->cap);
	}
	e = &log->entries[log->n++];
	e->call = call;
	e->request_id = call->request_id;
	e->attempt = attempt;
	/* a cache hit's row has the time it was given when it was built */
	e->started_at = row && row->attempt == attempt ? row->started_at : started_at;
}

/* A body as the log keeps it: redacted, then cut at a character boundary */
static Datum
log_body(const char *raw, size_t len, bool *truncated, bool *changed)
{
	text	   *t = llmgw_redaction_apply(redactions, nredactions,
											cstring_to_text_with_len(raw, (int) len), changed);
	int			n = VARSIZE_ANY_EXHDR(t);

	*truncated = n > llmgw_request_log_max_body;
	if (*truncated)
		t = cstring_to_text_with_len(VARDATA_ANY(t),
									 pg_mbcliplen(VARDATA_ANY(t), n, llmgw_request_log_max_body));
	return PointerGetDatum(t);
}

/* What llmgw answered a call that failed: its error, as JSON */
static char *
error_answer(LlmgwCall *call)
{
	char	   *message,
			   *detail,
			   *hint;
	StringInfoData s;

	llmgw_call_error(call, &message, &detail, &hint);
	initStringInfo(&s);
	appendStringInfoString(&s, "{\"error\": {\"sqlstate\": ");
	escape_json(&s, unpack_sql_state(llmgw_error_class_sqlstate(call->out.error)));
	appendStringInfoString(&s, ", \"message\": ");
	escape_json(&s, message ? message : "");
	if (detail && *detail)
	{
		appendStringInfoString(&s, ", \"detail\": ");
		escape_json(&s, detail);
	}
	if (hint && *hint)
	{
		appendStringInfoString(&s, ", \"hint\": ");
		escape_json(&s, hint);
	}
	appendStringInfoString(&s, "}}");
	return s.data;
}

/* The prepared INSERT */
static SPIPlanPtr
insert_plan(void)
{
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
	{
		Oid			argtypes[RL_NCOLUMNS];

		for (int c = 0; c < RL_NCOLUMNS; c++)
			argtypes[c] = get_array_type(column_types[c]);
		plan = llmgw_spi_prepare(REQLOG_INSERT, RL_NCOLUMNS, argtypes);
	}
	return plan;
}

/* The table, for rows written straight into its partitions */
static const LlmgwDirectTable reqlog_table = {
	.name = "request_log",
	.ncolumns = RL_NCOLUMNS,
	.columns = column_names,
	.types = column_types,
	.route = RL_STARTED_AT,
	.own_trigger = NULL,
};

/* Build the rows of the batch and insert them (in a subtransaction) */
static void
write_rows(void *arg)
{
	LlmgwReqlog *log = (LlmgwReqlog *) arg;
	Datum	   *values[RL_NCOLUMNS];
	bool	   *nulls[RL_NCOLUMNS];
	Datum		args[RL_NCOLUMNS];
	int			rc;

	for (int c = 0; c < RL_NCOLUMNS; c++)
	{
		values[c] = palloc(sizeof(Datum) * log->n);
		nulls[c] = palloc0(sizeof(bool) * log->n);
	}
	for (int i = 0; i < log->n; i++)
	{
		ReqlogEntry *e = &log->entries[i];
		LlmgwCall  *call = e->call;
		char	   *answer = call->out.status == LLMGW_STATUS_OK ? llmgw_call_answer(call) :
			error_answer(call);
		bool		truncated;
		bool		changed = false;

		values[RL_REQUEST_ID][i] = UUIDPGetDatum(&e->request_id);
		values[RL_ATTEMPT][i] = Int32GetDatum(e->attempt);
		values[RL_STARTED_AT][i] = TimestampTzGetDatum(e->started_at);
		values[RL_ROLE][i] = call->role ? CStringGetTextDatum(call->role) : (Datum) 0;
		nulls[RL_ROLE][i] = call->role == NULL;
		values[RL_KEY_ID][i] = Int64GetDatum(call->key_id);
		nulls[RL_KEY_ID][i] = call->key_id == 0;
		values[RL_TEAM_ID][i] = Int64GetDatum(call->team_id);
		nulls[RL_TEAM_ID][i] = call->team_id == 0;
		values[RL_MODEL][i] = call->model ? CStringGetTextDatum(call->model) : (Datum) 0;
		nulls[RL_MODEL][i] = call->model == NULL;
		values[RL_REQUEST][i] = log_body(call->caller_body, call->caller_body_len,
										 &truncated, &changed);
		values[RL_REQUEST_BYTES][i] = Int32GetDatum((int32) Min(call->caller_body_len, PG_INT32_MAX));
		values[RL_REQUEST_TRUNCATED][i] = BoolGetDatum(truncated);
		truncated = false;
		if (answer != NULL)
		{
			size_t		len = strlen(answer);

			values[RL_RESPONSE][i] = log_body(answer, len, &truncated, &changed);
			values[RL_RESPONSE_BYTES][i] = Int32GetDatum((int32) Min(len, PG_INT32_MAX));
		}
		nulls[RL_RESPONSE][i] = nulls[RL_RESPONSE_BYTES][i] = answer == NULL;
		values[RL_RESPONSE_TRUNCATED][i] = BoolGetDatum(truncated);
		values[RL_REDACTED][i] = BoolGetDatum(changed);
	}
	if (llmgw_direct_insert(&reqlog_table, log->n, values, nulls))
		return;
	for (int c = 0; c < RL_NCOLUMNS; c++)
		args[c] = llmgw_array_datum(values[c], nulls[c], log->n, column_types[c]);
	rc = SPI_execute_plan(insert_plan(), args, NULL, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "llmgw: could not write the request log: %s", SPI_result_code_string(rc));
}

/*
 * Write the logged calls of a round (in the settle transaction, after
 * their usage rows).  A failure costs the log rows only.
 */
void
llmgw_reqlog_write(LlmgwReqlog *log)
{
	char	   *why = NULL;

	if (log == NULL || log->n == 0)
		return;
	if (!llmgw_in_subtransaction(write_rows, log, &why, NULL))
	{
		ereport(WARNING,
				(errmsg("llmgw could not write the request log of %d calls: %s", log->n, why)));
		/* a partition may be gone: look again before the next round */
		partitions_until = 0;
	}
}

/* Drop the partitions beyond the retention (in a transaction) */
static void
prune(void *arg)
{
	int			rc;
	bool		isnull;
	int32		dropped;

	SPI_execute("SELECT pg_catalog.set_config('lock_timeout', '" PARTITION_LOCK_TIMEOUT "', true)",
				false, 0);
	rc = SPI_execute("SELECT llmgw.prune_request_log()", false, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "llmgw: could not drop old request log partitions: %s",
			 SPI_result_code_string(rc));
	dropped = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										  &isnull));
	if (!isnull && dropped > 0)
		ereport(LOG,
				(errmsg("llmgw dropped %d daily partitions of llmgw.request_log older than %d days",
						dropped, llmgw_request_log_retention)));
}

/*
 * Worker 0's housekeeping: drop the days beyond the retention every hour,
 * and at once when llmgw.request_log_retention changed.  After a failure
 * (a reader held the table past the lock timeout) it tries again in a
 * minute.
 */
void
llmgw_reqlog_maintain(void)
{
	static TimestampTz next = 0;
	static int	retention = -1;
	TimestampTz now = GetCurrentTimestamp();

	if (now < next && retention == llmgw_request_log_retention)
		return;
	retention = llmgw_request_log_retention;
	if (retention == 0)
	{
		next = now + USECS_PER_HOUR;
		return;
	}
	if (llmgw_in_transaction("llmgw: dropping old request log partitions", prune, NULL))
		next = now + USECS_PER_HOUR;
	else
		next = now + USECS_PER_MINUTE;
	/* the partitions this worker knew of may be gone */
	partitions_until = 0;
}

PG_FUNCTION_INFO_V1(llmgw_reqlog_redact_sql);

/* llmgw.redact(body): the enabled redaction rules applied, as the log does */
Datum
llmgw_reqlog_redact_sql(PG_FUNCTION_ARGS)
{
	text	   *body = PG_GETARG_TEXT_PP(0);
	LlmgwRedactionRule *rules;
	int			n;
	bool		changed = false;
	Datum		result;

	SPI_connect();
	rules = llmgw_redaction_load(CurrentMemoryContext, &n);
	result = PointerGetDatum(llmgw_redaction_apply(rules, n, body, &changed));
	result = SPI_datumTransfer(result, false, -1);
	SPI_finish();
	PG_RETURN_DATUM(result);
}
