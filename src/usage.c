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
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "call.h"
#include "config.h"
#include "journal.h"
#include "policy.h"

#define USAGE_NARGS 24

static SPIPlanPtr insert_plan = NULL;

/*
 * Prepare (once) the INSERT of a usage row.  An answered attempt is priced
 * in the same statement, exactly, at the price in force when it started.
 */
static SPIPlanPtr
usage_plan(void)
{
	static Oid	argtypes[USAGE_NARGS] = {
		UUIDOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
		TEXTOID, TEXTOID, INT4OID, FLOAT8OID,
		INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, TEXTOID, INT4OID, TEXTOID,
		INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID
	};

	if (insert_plan == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(
									   "INSERT INTO llmgw.usage (request_id, started_at, role_name,"
									   " model, provider, upstream_model, status, error_class, http_status,"
									   " latency_ms, input_tokens, output_tokens, cached_input_tokens,"
									   " cache_write_tokens, reasoning_tokens, cache_write_1h_tokens,"
									   " usage_source, attempt, fallback_from, key_id, team_id,"
									   " price_id, cost, currency, unpriced, tags)"
									   " SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
									   " $14, $15, $16, $17, $18, $19, $20, $21,"
									   " p.id, c.cost, p.currency, $7 = 'ok' AND c.cost IS NULL, $24::jsonb"
									   " FROM (SELECT) one"
									   " LEFT JOIN LATERAL llmgw.price_at(llmgw.price_names($5, $22, $6, $23),"
									   "   $2) p ON $7 = 'ok'"
									   " CROSS JOIN LATERAL (SELECT llmgw.cost(p, $11, $12, $13, $14, $16, $15)"
									   "   AS cost) c"
									   " RETURNING currency, ceil(cost * 10000000000)::int8",
									   USAGE_NARGS, argtypes);

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

/* A text Datum, or a NULL */
static Datum
text_or_null(const char *s, char *nulls, int i)
{
	if (s == NULL)
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	return CStringGetTextDatum(s);
}

/* An int8 Datum, NULL for 0 */
static Datum
id_or_null(int64 id, char *nulls, int i)
{
	if (id == 0)
		nulls[i] = 'n';
	return Int64GetDatum(id);
}

/* Insert the usage row of one attempt of a call, and charge its cost */
static void
insert_row(LlmgwCall *call, const LlmgwAttempt *a)
{
	Datum		values[USAGE_NARGS];
	char		nulls[USAGE_NARGS];
	const LlmgwOutcome *out = &a->out;
	bool		any_tokens = false;
	bool		isnull;
	int			rc;

	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(&call->request_id);
	values[1] = TimestampTzGetDatum(a->started_at);
	values[2] = text_or_null(call->role, nulls, 2);
	values[3] = text_or_null(call->model, nulls, 3);
	values[4] = text_or_null(a->provider, nulls, 4);
	values[5] = text_or_null(a->upstream_model, nulls, 5);
	values[6] = CStringGetTextDatum(status_name(out->status));
	values[7] = text_or_null(llmgw_error_class_name(out->error), nulls, 7);
	values[8] = Int32GetDatum((int32) out->http_status);
	if (out->http_status == 0)
		nulls[8] = 'n';
	values[9] = Float8GetDatum((double) (a->finished_at - a->started_at) / 1000.0);
	for (int b = 0; b < LLMGW_NBUCKETS; b++)
	{
		values[10 + b] = Int64GetDatum(out->tokens[b]);
		if (out->tokens[b] == LLMGW_TOKENS_UNKNOWN)
			nulls[10 + b] = 'n';
		else if (b != LLMGW_TOKENS_CACHE_WRITE_1H)
			any_tokens = true;
	}
	values[16] = text_or_null(any_tokens ? "provider" : NULL, nulls, 16);
	values[17] = Int32GetDatum(a->number);
	values[18] = text_or_null(a->fallback_from, nulls, 18);
	values[19] = id_or_null(call->key_id, nulls, 19);
	values[20] = id_or_null(call->team_id, nulls, 20);
	values[21] = text_or_null(a->route ? a->route->kind : NULL, nulls, 21);
	values[22] = text_or_null(a->route ? a->route->price_model : NULL, nulls, 22);
	values[23] = text_or_null(call->tags, nulls, 23);

	rc = SPI_execute_plan(usage_plan(), values, nulls, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "llmgw: could not record usage: %s", SPI_result_code_string(rc));
	if (out->status == LLMGW_STATUS_OK)
	{
		Datum		units = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);

		if (!isnull)
			llmgw_policy_charge(call, DatumGetInt64(units),
								SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
								a->started_at);
	}
}

/* Insert the rows of every attempt of a call that reached a provider */
static void
insert_rows(LlmgwCall *call)
{
	dlist_iter	iter;
	LlmgwAttempt current;

	dlist_foreach(iter, &call->past_attempts)
	{
		LlmgwAttempt *a = dlist_container(LlmgwAttempt, node, iter.cur);

		if (a->reached_provider)
			insert_row(call, a);
	}
	if (!call->reached_provider)
		return;
	llmgw_call_attempt(call, &current);
	insert_row(call, &current);
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
	return call->reached_provider;
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
	dlist_iter	iter;
	bool		any = false;
	MemoryContext oldcxt = CurrentMemoryContext;

	dlist_foreach(iter, calls)
	{
		if (reached_provider(dlist_container(LlmgwCall, node, iter.cur)))
			any = true;
	}
	dlist_foreach(iter, running)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (call->reached_provider && !call->journaled)
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
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "llmgw: recording usage");
		dlist_foreach(iter, calls)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			insert_rows(call);
			if (call->journaled || call->out.status == LLMGW_STATUS_INTERRUPTED)
				llmgw_journal_remove(call);
		}
		dlist_foreach(iter, running)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			if (call->reached_provider && !call->journaled)
				llmgw_journal_add(call);
		}
		llmgw_policy_alerts();
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		dlist_foreach(iter, running)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			if (call->reached_provider)
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
