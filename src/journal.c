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
#include "txn.h"

static SPIPlanPtr add_plan = NULL;
static SPIPlanPtr remove_plan = NULL;

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

		add_plan = llmgw_spi_prepare("INSERT INTO llmgw.calls_in_flight (request_id, server_started_at,"
						   " started_at, role_name, key_id, team_id, model, provider, upstream_model)"
						   " VALUES ($1, pg_catalog.pg_postmaster_start_time(), $2, $3, $4, $5, $6,"
						   " $7, $8) ON CONFLICT (request_id) DO NOTHING", 8, types);
	}
	memset(nulls, ' ', sizeof(nulls));
	values[0] = UUIDPGetDatum(&call->request_id);
	values[1] = TimestampTzGetDatum(call->started_at);
	values[2] = llmgw_text_or_null(call->role, nulls, 2);
	values[3] = Int64GetDatum(call->key_id);
	nulls[3] = call->key_id ? ' ' : 'n';
	values[4] = Int64GetDatum(call->team_id);
	nulls[4] = call->team_id ? ' ' : 'n';
	values[5] = llmgw_text_or_null(call->model, nulls, 5);
	values[6] = llmgw_text_or_null(call->provider, nulls, 6);
	values[7] = llmgw_text_or_null(call->upstream_model, nulls, 7);
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

		remove_plan = llmgw_spi_prepare("DELETE FROM llmgw.calls_in_flight WHERE request_id = $1", 1, types);
	}
	values[0] = UUIDPGetDatum(&call->request_id);
	if (SPI_execute_plan(remove_plan, values, NULL, false, 0) != SPI_OK_DELETE)
		elog(ERROR, "llmgw: could not remove a call from the journal");
}

/* Record the journal rows of a previous server life (in a transaction) */
static void
recover(void *arg)
{
	bool	   *installed = (bool *) arg;
	int			rc;

	rc = SPI_execute("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = 'llmgw'", true, 1);
	*installed = (rc == SPI_OK_SELECT && SPI_processed == 1);
	if (!*installed)
		return;
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

/*
 * Record the calls of a previous server life as interrupted.  Returns
 * false when that could not be done (the extension may not be installed
 * yet); the caller tries again later.
 */
bool
llmgw_journal_recover(void)
{
	bool		installed = false;

	return llmgw_in_transaction("llmgw: recovering interrupted calls", recover, &installed) &&
		installed;
}
