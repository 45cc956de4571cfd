/*-------------------------------------------------------------------------
 *
 * journal.c
 *		The journal of calls in flight: a row per call a worker has sent to
 *		a provider and not yet settled, so that a server restart, which
 *		loses shared memory, still finds the calls it interrupted.
 *
 * Rows are written in the settle transaction of the worker's round (group
 * commit), after the transfers started, so the journal adds no latency to
 * a call.  A call that starts and finishes in one round is never
 * journaled.  At start, a worker turns the rows of a previous server life
 * into "interrupted" usage rows.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "call.h"
#include "journal.h"

static SPIPlanPtr add_plan = NULL;
static SPIPlanPtr remove_plan = NULL;

static SPIPlanPtr
prepare(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "llmgw: could not prepare a journal statement: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

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

/* Journal a call whose transfer has started (in the settle transaction) */
void
llmgw_journal_add(LlmgwCall *call)
{
	Datum		values[8];
	char		nulls[8];

	if (add_plan == NULL)
	{
		Oid			types[8] = {UUIDOID, TIMESTAMPTZOID, TEXTOID, INT8OID, INT8OID,
		TEXTOID, TEXTOID, TEXTOID};

		add_plan = prepare("INSERT INTO llmgw.calls_in_flight (request_id, server_started_at,"
						   " started_at, role_name, key_id, team_id, model, provider, upstream_model)"
						   " VALUES ($1, pg_catalog.pg_postmaster_start_time(), $2, $3, $4, $5, $6,"
						   " $7, $8) ON CONFLICT (request_id) DO NOTHING", 8, types);
	}
	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(&call->request_id);
	values[1] = TimestampTzGetDatum(call->started_at);
	values[2] = text_or_null(call->role, nulls, 2);
	values[3] = Int64GetDatum(call->key_id);
	nulls[3] = call->key_id ? ' ' : 'n';
	values[4] = Int64GetDatum(call->team_id);
	nulls[4] = call->team_id ? ' ' : 'n';
	values[5] = text_or_null(call->model, nulls, 5);
	values[6] = text_or_null(call->provider, nulls, 6);
	values[7] = text_or_null(call->upstream_model, nulls, 7);
	if (SPI_execute_plan(add_plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "llmgw: could not journal a call");
}

/* Remove a settled call from the journal (in the settle transaction) */
void
llmgw_journal_remove(LlmgwCall *call)
{
	Datum		values[1];

	if (remove_plan == NULL)
	{
		Oid			types[1] = {UUIDOID};

		remove_plan = prepare("DELETE FROM llmgw.calls_in_flight WHERE request_id = $1", 1, types);
	}
	values[0] = UUIDPGetDatum(&call->request_id);
	if (SPI_execute_plan(remove_plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "llmgw: could not remove a call from the journal");
}

/*
 * Record the calls of a previous server life as interrupted.  Returns
 * false when that could not be done (the extension may not be installed
 * yet); the caller tries again later.
 */
bool
llmgw_journal_recover(void)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		int			rc;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "llmgw: recovering interrupted calls");
		rc = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'llmgw'", true, 1);
		if (rc == SPI_OK_SELECT && SPI_processed == 1)
		{
			rc = SPI_execute("SELECT llmgw.recover_interrupted()", false, 0);
			if (rc == SPI_OK_SELECT && SPI_processed == 1)
			{
				char	   *n = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

				if (n && strcmp(n, "0") != 0)
					ereport(LOG,
							(errmsg("llmgw recorded %s calls interrupted by a server restart as \"interrupted\"",
									n)));
			}
		}
		else
			ok = false;
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(old);
		EmitErrorReport();
		FlushErrorState();
		AbortCurrentTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}
