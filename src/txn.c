/*-------------------------------------------------------------------------
 *
 * txn.c
 *		A worker's short transactions.
 *
 * Workers run outside any transaction.  Housekeeping (partitions, the
 * journal, asynchronous calls, cache lookups) each runs in one of its own:
 * an error is reported to the server log and rolled back, and the worker
 * goes on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"

#include "txn.h"

/*
 * Run work(arg) in a transaction of its own, with SPI connected and
 * activity shown in pg_stat_activity.  Returns false when it failed (the
 * error is in the server log and the transaction rolled back).
 */
bool
llmgw_in_transaction(const char *activity, LlmgwTxnWork work, void *arg)
{
	MemoryContext old = CurrentMemoryContext;
	volatile bool ok = true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, activity);
		work(arg);
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
	/* the tables' counts for autovacuum, at most once a second (as a backend going idle) */
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return ok;
}

/*
 * Run work(arg) in a subtransaction of the current transaction.  On failure
 * the subtransaction is rolled back, *message says why (palloc'd in the
 * caller's context) and *sqlstate (when not NULL) is the error's code;
 * returns whether it worked.
 */
bool
llmgw_in_subtransaction(LlmgwTxnWork work, void *arg, char **message, int *sqlstate)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		work(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		*message = edata->message;
		if (sqlstate)
			*sqlstate = edata->sqlerrcode;
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return ok;
}

/* Prepare a statement for the life of the worker */
SPIPlanPtr
llmgw_spi_prepare(const char *sql, int nargs, Oid *types)
{
	/* always the generic plan: these run thousands of times a second */
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, types, CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "llmgw: could not prepare a statement: %s",
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(plan);
	return plan;
}

/* A text Datum for an SPI argument, or a NULL (nulls[i] = 'n') */
Datum
llmgw_text_or_null(const char *s, char *nulls, int i)
{
	if (s == NULL)
	{
		nulls[i] = 'n';
		return (Datum) 0;
	}
	return CStringGetTextDatum(s);
}

/* A bytea Datum of len bytes (a digest, say) */
Datum
llmgw_bytea_datum(const uint8 *bytes, size_t len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), bytes, len);
	return PointerGetDatum(b);
}

/* A one-dimensional array of n values of a type (nulls NULL: none is), as a parameter */
Datum
llmgw_array_datum(Datum *values, bool *nulls, int n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(values, nulls, 1, dims, lbs, type, typlen,
											  typbyval, typalign));
}
