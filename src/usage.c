/*-------------------------------------------------------------------------
 *
 * usage.c
 *		Settle finished calls: one llmgw.usage row per provider attempt,
 *		all rows of a worker's wake-up written in one transaction (group
 *		commit) before any caller is woken.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "call.h"
#include "async.h"
#include "cache.h"
#include "config.h"
#include "journal.h"
#include "policy.h"

#define USAGE_NARGS 27

/* Column types of the batched INSERT, one array parameter each */
static const Oid usage_types[USAGE_NARGS] = {
	UUIDOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TEXTOID, INT4OID, FLOAT8OID,
	INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, INT4OID, TEXTOID,
	INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, INT8OID
};

static SPIPlanPtr insert_plan = NULL;

/*
 * Prepare (once) the INSERT of a round's usage rows, one array per column.
 * An answered attempt is priced in the same statement, exactly, at the
 * price in force when it started; one statement per round also means the
 * rollup trigger runs once per round.
 */
static SPIPlanPtr
usage_plan(void)
{
	if (insert_plan == NULL)
	{
		Oid			argtypes[USAGE_NARGS];
		SPIPlanPtr	plan;

		for (int i = 0; i < USAGE_NARGS; i++)
			argtypes[i] = get_array_type(usage_types[i]);
		plan = SPI_prepare_cursor("INSERT INTO llmgw.usage (request_id, started_at, role_name,"
						   " model, provider, upstream_model, status, error_class, http_status,"
						   " latency_ms, input_tokens, output_tokens, cached_input_tokens,"
						   " cache_write_tokens, reasoning_tokens, cache_write_1h_tokens,"
						   " usage_source, attempt, fallback_from, key_id, team_id,"
						   " price_id, cost, currency, unpriced, tags, cache_hit)"
						   " SELECT v.request_id, v.started_at, v.role_name, v.model, v.provider,"
						   " v.upstream_model, v.status, v.error_class, v.http_status, v.latency_ms,"
						   " v.i, v.o, v.ci, v.cw, v.r, v.cw1h, v.usage_source, v.attempt,"
						   " v.fallback_from, v.key_id, v.team_id, p.id,"
						   " CASE WHEN v.hit THEN v.hit_cost::numeric ELSE c.cost END,"
						   " CASE WHEN v.hit THEN 'USD' ELSE p.currency END,"
						   " NOT v.hit AND v.status = 'ok' AND c.cost IS NULL, v.tags::jsonb, v.hit"
						   " FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
						   "   $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)"
						   "   AS v(request_id, started_at, role_name, model, provider, upstream_model,"
						   "   status, error_class, http_status, latency_ms, i, o, ci, cw, r, cw1h,"
						   "   usage_source, attempt, fallback_from, key_id, team_id, kind,"
						   "   price_model, tags, hit, hit_cost, price_id)"
						   /* the worker knows the price row in force, else it is looked up */
						   " CROSS JOIN LATERAL (SELECT CASE WHEN v.status = 'ok' AND NOT v.hit"
						   "   AND v.price_id IS DISTINCT FROM 0"
						   "   THEN coalesce(v.price_id, (llmgw.price_at(llmgw.price_names(v.provider,"
						   "     v.kind, v.upstream_model, v.price_model), v.started_at)).id) END AS id) pid"
						   " LEFT JOIN llmgw.prices p ON p.id = pid.id"
						   " CROSS JOIN LATERAL (SELECT llmgw.cost(p, v.i, v.o, v.ci, v.cw, v.cw1h, v.r)"
						   "   AS cost) c"
						   " RETURNING request_id, attempt, currency, ceil(cost * 10000000000)::int8",
						   USAGE_NARGS, argtypes, CURSOR_OPT_GENERIC_PLAN);
		if (plan == NULL)
			elog(ERROR, "llmgw: could not prepare usage insert: %s",
				 SPI_result_code_string(SPI_result));
		SPI_keepplan(plan);
		insert_plan = plan;
	}
	return insert_plan;
}

/* Name of a status as stored in llmgw.usage.status */
static const char *
status_name(LlmgwStatus status)
{
	switch (status)
	{
		case LLMGW_STATUS_OK:
			return "ok";
		case LLMGW_STATUS_CANCELLED:
			return "cancelled";
		case LLMGW_STATUS_INTERRUPTED:
			return "interrupted";
		default:
			return "error";
	}
}

/* The rows of a round, column by column, and what each row belongs to */
typedef struct UsageBatch
{
	int			n;
	int			cap;
	Datum	   *values[USAGE_NARGS];
	bool	   *nulls[USAGE_NARGS];
	LlmgwCall **calls;
	LlmgwAttempt *attempts;		/* copies: started_at, number, status */
} UsageBatch;

static void
batch_init(UsageBatch *b)
{
	memset(b, 0, sizeof(*b));
	b->cap = 64;
	for (int c = 0; c < USAGE_NARGS; c++)
	{
		b->values[c] = palloc(sizeof(Datum) * b->cap);
		b->nulls[c] = palloc(sizeof(bool) * b->cap);
	}
	b->calls = palloc(sizeof(LlmgwCall *) * b->cap);
	b->attempts = palloc(sizeof(LlmgwAttempt) * b->cap);
}

static void
set_text(UsageBatch *b, int col, const char *s)
{
	b->nulls[col][b->n] = (s == NULL);
	b->values[col][b->n] = s ? CStringGetTextDatum(s) : (Datum) 0;
}

static void
set_id(UsageBatch *b, int col, int64 id)
{
	b->nulls[col][b->n] = (id == 0);
	b->values[col][b->n] = Int64GetDatum(id);
}

/* Add the usage row of one attempt of a call */
static void
add_row(UsageBatch *b, LlmgwCall *call, const LlmgwAttempt *a)
{
	const LlmgwOutcome *out = &a->out;
	bool		any_tokens = false;
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (b->n == b->cap)
	{
		b->cap *= 2;
		for (int c = 0; c < USAGE_NARGS; c++)
		{
			b->values[c] = repalloc(b->values[c], sizeof(Datum) * b->cap);
			b->nulls[c] = repalloc(b->nulls[c], sizeof(bool) * b->cap);
		}
		b->calls = repalloc(b->calls, sizeof(LlmgwCall *) * b->cap);
		b->attempts = repalloc(b->attempts, sizeof(LlmgwAttempt) * b->cap);
	}
	for (int c = 0; c < USAGE_NARGS; c++)
		b->nulls[c][b->n] = false;
	*uuid = call->request_id;
	b->values[0][b->n] = UUIDPGetDatum(uuid);
	b->values[1][b->n] = TimestampTzGetDatum(a->started_at);
	set_text(b, 2, call->role);
	set_text(b, 3, call->model);
	set_text(b, 4, a->provider);
	set_text(b, 5, a->upstream_model);
	set_text(b, 6, status_name(out->status));
	set_text(b, 7, llmgw_error_class_name(out->error));
	b->values[8][b->n] = Int32GetDatum((int32) out->http_status);
	b->nulls[8][b->n] = (out->http_status == 0);
	b->values[9][b->n] = Float8GetDatum((double) (a->finished_at - a->started_at) / 1000.0);
	for (int t = 0; t < LLMGW_NBUCKETS; t++)
	{
		b->values[10 + t][b->n] = Int64GetDatum(out->tokens[t]);
		b->nulls[10 + t][b->n] = (out->tokens[t] == LLMGW_TOKENS_UNKNOWN);
		if (out->tokens[t] != LLMGW_TOKENS_UNKNOWN && t != LLMGW_TOKENS_CACHE_WRITE_1H)
			any_tokens = true;
	}
	set_text(b, 16, any_tokens && !call->cache_hit ? "provider" : NULL);
	b->values[17][b->n] = Int32GetDatum(a->number);
	set_text(b, 18, a->fallback_from);
	set_id(b, 19, call->key_id);
	set_id(b, 20, call->team_id);
	set_text(b, 21, a->route ? a->route->kind : NULL);
	set_text(b, 22, a->route ? a->route->price_model : NULL);
	set_text(b, 23, call->tags);
	/*
	 * The price row the configuration found (0: it found none), if that is
	 * still true when the attempt started; NULL lets SQL look it up.
	 */
	if (a->route && a->started_at < a->route->price_until)
		b->values[26][b->n] = Int64GetDatum(a->route->price_id);
	else
		b->nulls[26][b->n] = true;
	b->values[24][b->n] = BoolGetDatum(call->cache_hit);
	set_text(b, 25, call->cache_hit ? call->cache_hit_cost : NULL);
	b->calls[b->n] = call;
	b->attempts[b->n] = *a;
	b->n++;
}

/* Insert the batch in one statement, and charge each answered row's cost */
static void
batch_insert(UsageBatch *b)
{
	Datum		args[USAGE_NARGS];
	int			dims[1] = {b->n};
	int			lbs[1] = {1};
	int			rc;

	if (b->n == 0)
		return;
	for (int c = 0; c < USAGE_NARGS; c++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;

		get_typlenbyvalalign(usage_types[c], &typlen, &typbyval, &typalign);
		args[c] = PointerGetDatum(construct_md_array(b->values[c], b->nulls[c], 1, dims, lbs,
													 usage_types[c], typlen, typbyval, typalign));
	}
	rc = SPI_execute_plan(usage_plan(), args, NULL, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != (uint64) b->n)
		elog(ERROR, "llmgw: could not record usage: %s", SPI_result_code_string(rc));
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
		int32		number = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		Datum		units = SPI_getbinval(tup, desc, 4, &isnull);

		if (isnull)
			continue;			/* not priced: nothing to charge */
		for (int i = 0; i < b->n; i++)
		{
			if (b->attempts[i].number == number &&
				memcmp(b->calls[i]->request_id.data, id->data, UUID_LEN) == 0)
			{
				llmgw_policy_charge(b->calls[i], DatumGetInt64(units),
									SPI_getvalue(tup, desc, 3), b->attempts[i].started_at);
				break;
			}
		}
	}
}

/* Add the rows of every attempt of a call that reached a provider */
static void
add_rows(UsageBatch *b, LlmgwCall *call)
{
	dlist_iter	iter;
	LlmgwAttempt current;

	dlist_foreach(iter, &call->past_attempts)
	{
		LlmgwAttempt *a = dlist_container(LlmgwAttempt, node, iter.cur);

		if (a->reached_provider)
			add_row(b, call, a);
	}
	if (!call->reached_provider && !call->cache_hit)
		return;
	llmgw_call_attempt(call, &current);
	if (call->cache_hit)
	{
		/* answered from the cache: no provider, no tokens used */
		current.provider = current.upstream_model = NULL;
		current.route = NULL;
		current.started_at = current.finished_at = GetCurrentTimestamp();
		for (int t = 0; t < LLMGW_NBUCKETS; t++)
			current.out.tokens[t] = 0;
		current.out.tokens[LLMGW_TOKENS_CACHE_WRITE_1H] = LLMGW_TOKENS_UNKNOWN;
	}
	add_row(b, call, &current);
}

/* The result of an asynchronous call, written with its usage rows */
static void
async_answer(LlmgwCall *call)
{
	if (call->out.status == LLMGW_STATUS_OK)
		llmgw_async_finish(call, llmgw_call_answer(call), 0, NULL, NULL);
	else
	{
		char	   *message,
				   *detail,
				   *hint;

		llmgw_call_error(call, &message, &detail, &hint);
		llmgw_async_finish(call, NULL, llmgw_error_class_sqlstate(call->out.error),
						   message, detail);
	}
}

/* A fresh answer goes into the cache, with the usage rows */
static void
cache_answer(LlmgwCall *call)
{
	if (call->cache_enabled && !call->cache_hit && call->out.status == LLMGW_STATUS_OK)
	{
		char	   *answer = llmgw_call_answer(call);

		if (answer)
			llmgw_cache_store(call, answer);
	}
}

/* Did any attempt of the call reach a provider? */
static bool
reached_provider(LlmgwCall *call)
{
	dlist_iter	iter;

	dlist_foreach(iter, &call->past_attempts)
	{
		if (dlist_container(LlmgwAttempt, node, iter.cur)->reached_provider)
			return true;
	}
	return call->reached_provider || call->cache_hit;
}

/*
 * Should a running call be written to the journal now?  Calls are
 * journaled once they have run for llmgw.journal_delay: the many calls
 * that finish sooner cost no journal writes.
 */
static bool
needs_journal(LlmgwCall *call, TimestampTz now)
{
	return call->reached_provider && !call->journaled &&
		now - call->started_at >= (int64) llmgw_journal_delay * 1000;
}

/* Give back the reservations and correct the token estimates of calls */
static void
finish_all(dlist_head *calls)
{
	dlist_iter	iter;

	dlist_foreach(iter, calls)
	{
		llmgw_policy_finish(dlist_container(LlmgwCall, node, iter.cur));
	}
}

/*
 * Write the usage rows of the calls that reached a provider, charging
 * their cost to the budgets in the same transaction.  On failure
 * every call in the batch becomes an error: the caller must not believe a
 * call was accounted for when it was not.
 */
void
llmgw_usage_record(dlist_head *calls, dlist_head *running)
{
	TimestampTz now = GetCurrentTimestamp();
	dlist_iter	iter;
	bool		any = false;
	MemoryContext oldcxt = CurrentMemoryContext;

	dlist_foreach(iter, calls)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (reached_provider(call) || call->async_id)
			any = true;
	}
	dlist_foreach(iter, running)
	{
		if (needs_journal(dlist_container(LlmgwCall, node, iter.cur), now))
			any = true;
	}
	if (!any)
	{
		finish_all(calls);
		return;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		UsageBatch	batch;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "llmgw: recording usage");
		batch_init(&batch);
		dlist_foreach(iter, calls)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			add_rows(&batch, call);
			cache_answer(call);
			if (call->async_id)
				async_answer(call);
			if (call->journaled || call->out.status == LLMGW_STATUS_INTERRUPTED)
				llmgw_journal_remove(call);
		}
		batch_insert(&batch);
		dlist_foreach(iter, running)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			if (needs_journal(call, now))
				llmgw_journal_add(call);
		}
		llmgw_policy_alerts();
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		dlist_foreach(iter, running)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			if (needs_journal(call, now))
				call->journaled = true;
		}
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		llmgw_policy_alerts_discard();
		ereport(WARNING,
				(errmsg("llmgw could not record usage: %s", edata->message)));
		dlist_foreach(iter, calls)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			if (reached_provider(call))
			{
				call->out.status = LLMGW_STATUS_ERROR;
				call->out.error = LLMGW_ERR_USAGE_NOT_RECORDED;
				call->out.provider_message = MemoryContextStrdup(call->cxt, edata->message);
			}
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	finish_all(calls);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}
