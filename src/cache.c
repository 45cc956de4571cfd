/*-------------------------------------------------------------------------
 *
 * cache.c
 *		Exact-match response cache, in llmgw.response_cache so it survives
 *		restarts.
 *
 * A call uses the cache when its model has a cache_ttl or its session
 * sets llmgw.cache = on (and not when it sets off).  The key is the
 * sha256 of the call's scope, kind, model alias and normalised request
 * (the JSON body the caller built: llm_chat's jsonb text is canonical).
 * The scope is the caller's team, else its key, else its role, or
 * "shared" when the model shares answers across teams: one team never
 * gets another team's answer unless the model says so.
 *
 * Lookups happen after admission (key, model access, budget and rate
 * limits apply to hits too), all calls of a worker round in one
 * transaction.  A hit is recorded as a usage row (cache_hit, cost the
 * model's cache_hit_cost); answers are stored in the settle transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "cache.h"
#include "config.h"
#include "txn.h"

int			llmgw_cache_max_size = 100 * 1024;	/* kB */

static SPIPlanPtr lookup_plan = NULL;
static SPIPlanPtr store_plan = NULL;

/* sha256 over the parts, each followed by a NUL */
static bool
hash_parts(uint8 *out, const char *const *parts, const size_t *lens, int n)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	bool		ok = ctx != NULL && pg_cryptohash_init(ctx) == 0;

	for (int i = 0; ok && i < n; i++)
		ok = pg_cryptohash_update(ctx, (const uint8 *) parts[i], lens[i]) == 0 &&
			pg_cryptohash_update(ctx, (const uint8 *) "", 1) == 0;
	ok = ok && pg_cryptohash_final(ctx, out, 32) == 0;
	pg_cryptohash_free(ctx);
	return ok;
}

/*
 * Decide whether an admitted call uses the cache, and compute its key.
 * Returns true when it does (the call waits for llmgw_cache_lookup).
 */
bool
llmgw_cache_prepare(LlmgwCall *call, const LlmgwModelRoutes *model)
{
	if (call->settings.cache_mode == LLMGW_CACHE_OFF)
		return false;
	call->cache_ttl_s = model->cache_ttl_s > 0 ? model->cache_ttl_s :
		call->settings.cache_mode == LLMGW_CACHE_ON ? call->settings.cache_ttl_s : 0;
	if (call->cache_ttl_s <= 0)
		return false;
	if (model->cache_shared)
		call->cache_scope = pstrdup("shared");
	else if (call->team_id)
		call->cache_scope = psprintf("team:%lld", (long long) call->team_id);
	else if (call->key_lineage)
		call->cache_scope = psprintf("key:%lld", (long long) call->key_lineage);
	else
		call->cache_scope = psprintf("role:%s", call->role ? call->role : "");
	call->cache_hit_cost = pstrdup(model->cache_hit_cost);
	call->cache_enabled = true;
	return true;
}

/* The key of a call (in a transaction: hashing needs a resource owner) */
static bool
compute_key(LlmgwCall *call)
{
	char		kind[16];
	const char *parts[4];
	size_t		lens[4];

	snprintf(kind, sizeof(kind), "%d", call->kind);
	parts[0] = call->cache_scope;
	parts[1] = kind;
	parts[2] = call->model;
	parts[3] = call->caller_body;
	for (int i = 0; i < 3; i++)
		lens[i] = strlen(parts[i]);
	lens[3] = call->caller_body_len;
	return hash_parts(call->cache_key, parts, lens, 4);
}

/* Look up the calls of a round (in a transaction) */
static void
lookup(void *arg)
{
	dlist_head *calls = (dlist_head *) arg;
	dlist_iter	iter;

	if (lookup_plan == NULL)
	{
		Oid			types[1] = {BYTEAOID};

		lookup_plan = llmgw_spi_prepare("UPDATE llmgw.response_cache SET hits = hits + 1"
										" WHERE key = $1 AND expires_at > pg_catalog.now()"
										" RETURNING answer", 1, types);
	}
	dlist_foreach(iter, calls)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);
		Datum		values[1];

		if (!compute_key(call))
		{
			call->cache_enabled = false;
			continue;
		}
		values[0] = llmgw_bytea_datum(call->cache_key, sizeof(call->cache_key));
		if (SPI_execute_plan(lookup_plan, values, NULL, false, 1) == SPI_OK_UPDATE_RETURNING &&
			SPI_processed == 1)
		{
			char	   *answer = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

			call->cached_answer = MemoryContextStrdup(call->cxt, answer);
			call->cache_hit = true;
		}
	}
}

/*
 * Look up every call of calls (linked by node) in one transaction; a hit
 * gets cache_hit and its answer.  On failure the calls simply miss.
 */
void
llmgw_cache_lookup(dlist_head *calls)
{
	dlist_iter	iter;

	if (dlist_is_empty(calls))
		return;
	if (llmgw_in_transaction("llmgw: looking up cached answers", lookup, calls))
		return;
	dlist_foreach(iter, calls)
	{
		dlist_container(LlmgwCall, node, iter.cur)->cache_hit = false;
	}
}

/* Store a call's answer (in the settle transaction) */
void
llmgw_cache_store(LlmgwCall *call, const char *answer)
{
	Datum		values[6];

	if (store_plan == NULL)
	{
		Oid			types[6] = {BYTEAOID, TEXTOID, TEXTOID, INT4OID, TEXTOID, INT4OID};

		store_plan = llmgw_spi_prepare("INSERT INTO llmgw.response_cache (key, model, scope, kind, answer,"
							 " expires_at) VALUES ($1, $2, $3, $4, $5,"
							 " pg_catalog.now() + $6 * interval '1 second')"
							 " ON CONFLICT (key) DO UPDATE SET answer = excluded.answer,"
							 " created_at = excluded.created_at, expires_at = excluded.expires_at",
							 6, types);
	}
	values[0] = llmgw_bytea_datum(call->cache_key, sizeof(call->cache_key));
	values[1] = CStringGetTextDatum(call->model);
	values[2] = CStringGetTextDatum(call->cache_scope);
	values[3] = Int32GetDatum(call->kind);
	values[4] = CStringGetTextDatum(answer);
	values[5] = Int32GetDatum(call->cache_ttl_s);
	if (SPI_execute_plan(store_plan, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "llmgw: could not store a cached answer");
}
