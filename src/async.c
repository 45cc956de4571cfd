/*-------------------------------------------------------------------------
 *
 * async.c
 *		Asynchronous calls: llmgw.submit() queues a call durably in
 *		llmgw.async_calls; worker 0 takes queued calls with a lease and hands
 *		them to the workers like any other call; the worker that makes the
 *		call writes its answer in the same transaction as its usage rows.
 *		A batch job with retry => 'sync' queues its expired and retryable
 *		items here (llmgw.batch_finish): chat calls, or embeddings calls for
 *		an embeddings batch (endpoint); their answers go to the job's rows.
 *
 * A call a request slot holds is never taken again, however long it runs:
 * the slot is this server life's proof that a live worker makes it (or
 * records its end).  A call no slot holds is taken again once its lease is
 * over (it could not be handed over, or its round could not be recorded),
 * and at once after a server restart: the journal records a first try that
 * was at the provider as interrupted, so a second call is never silent.
 * Its outcome is written only by the take that holds it (attempts).
 *
 * llmgw.cancel_job ends a job's calls still queued in the table itself;
 * once it commits, worker 0 asks the workers to abort those in flight, as
 * a cancelled caller does, and a call of a cancelled job taken later (after
 * a restart, say) is handed over cancelled: it ends without being sent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "pgstat.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "async.h"
#include "call.h"
#include "queue.h"
#include "share.h"
#include "txn.h"

int			llmgw_async_lease = 600;	/* seconds */

#define ASYNC_TAKE_MAX 64

static bool signal_pending = false;	/* calls were queued */
static bool cancel_pending = false; /* jobs were cancelled */
static bool batches_pending = false;	/* provider batches were queued */
static bool callback_registered = false;

/*
 * At commit of a transaction that submitted calls or batches or cancelled
 * jobs, wake worker 0 (the dispatcher, and the follower of batches)
 */
static void
submit_xact_callback(XactEvent event, void *arg)
{
	Latch	   *wake = NULL;

	if (!signal_pending && !cancel_pending && !batches_pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
	{
		if (signal_pending)
			pg_atomic_fetch_add_u64(&llmgw_shared->async_submitted, 1);
		if (cancel_pending)
			pg_atomic_fetch_add_u64(&llmgw_shared->jobs_cancelled, 1);
		if (batches_pending)
			pg_atomic_fetch_add_u64(&llmgw_shared->batches_queued, 1);
		SpinLockAcquire(&llmgw_shared->mutex);
		wake = llmgw_shared->workers[0].latch;
		SpinLockRelease(&llmgw_shared->mutex);
		if (wake)
			SetLatch(wake);
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		signal_pending = cancel_pending = batches_pending = false;
}

/* Wake the dispatcher once the current transaction commits */
static void
wake_at_commit(bool *pending)
{
	if (!callback_registered)
	{
		RegisterXactCallback(submit_xact_callback, NULL);
		callback_registered = true;
	}
	*pending = true;
}

/* Calls were queued: the dispatcher takes them once this commits */
void
llmgw_async_signal_at_commit(void)
{
	wake_at_commit(&signal_pending);
}

PG_FUNCTION_INFO_V1(llmgw_batches_queued);

/*
 * llmgw.batches_queued(), the statement trigger after an INSERT into
 * llmgw.batches: once this commits, worker 0 looks at llmgw.batches at once
 * (not at its next look, up to a second later)
 */
Datum
llmgw_batches_queued(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("llmgw.batches_queued() is a trigger function")));
	wake_at_commit(&batches_pending);
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(llmgw_cancel_job_calls);

/*
 * llmgw.cancel_job_calls(): jobs were cancelled (llmgw.cancel_job); once
 * this commits, worker 0 asks the workers to abort their calls in flight.
 */
Datum
llmgw_cancel_job_calls(PG_FUNCTION_ARGS)
{
	wake_at_commit(&cancel_pending);
	PG_RETURN_VOID();
}

/* The columns of an async_calls row that async_request reads, and whether
 * its job was cancelled */
#define ASYNC_CALL_COLUMNS \
	"a.id, a.model, a.request::text, a.owner, a.key_hash, a.tags::text," \
	" a.max_retries, a.timeout_ms, a.retry_max_wait_ms, a.retry_base_delay_ms," \
	" a.deadline_ms, a.cache, a.cache_ttl_s, a.max_response_bytes, a.job_id, a.attempts," \
	" EXISTS (SELECT 1 FROM llmgw.jobs j WHERE j.id = a.job_id AND j.cancel_requested)," \
	" a.endpoint = 'embeddings'"
#define ASYNC_CALL_CANCELLED 17
#define ASYNC_CALL_EMBEDDINGS 18

/* An integer column of the row, or *value unchanged when it is NULL */
static void
column_int32(HeapTuple tup, TupleDesc desc, int col, int32 *value)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	if (!isnull)
		*value = DatumGetInt32(d);
}

/*
 * A request in the payload area for the asynchronous call of a row taken
 * with ASYNC_CALL_COLUMNS.  The row carries the settings of the session
 * that submitted it; a NULL one (a row inserted by hand) is the server's.
 */
static dsa_pointer
async_request(HeapTuple tup, TupleDesc desc)
{
	LlmgwRequest header;
	bool		isnull;
	Datum		d;
	char	   *cache;
	char	   *body;

	memset(&header, 0, sizeof(header));
	/* a chat call (llm_chat's), or the embeddings retry of a batch item */
	header.kind = DatumGetBool(SPI_getbinval(tup, desc, ASYNC_CALL_EMBEDDINGS, &isnull)) ?
		LLMGW_KIND_EMBED : LLMGW_KIND_CHAT_JSON;
	header.async_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	header.async_take = DatumGetInt32(SPI_getbinval(tup, desc, 16, &isnull));
	llmgw_call_settings_current(&header.settings);
	column_int32(tup, desc, 7, &header.settings.max_retries);
	column_int32(tup, desc, 8, &header.settings.timeout_ms);
	column_int32(tup, desc, 9, &header.settings.retry_max_wait_ms);
	column_int32(tup, desc, 10, &header.settings.retry_base_delay_ms);
	column_int32(tup, desc, 11, &header.settings.deadline_ms);
	cache = SPI_getvalue(tup, desc, 12);
	if (cache)
		header.settings.cache_mode = llmgw_cache_mode_from_name(cache);
	column_int32(tup, desc, 13, &header.settings.cache_ttl_s);
	d = SPI_getbinval(tup, desc, 14, &isnull);
	if (!isnull)
		header.settings.max_response_bytes = DatumGetInt64(d);
	/* a synchronous retry of a batch item: its usage rows carry the job */
	d = SPI_getbinval(tup, desc, 15, &isnull);
	if (!isnull)
		header.job_id = DatumGetInt64(d);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	if (!isnull && VARSIZE_ANY_EXHDR(DatumGetByteaPP(d)) == sizeof(header.key_hash))
	{
		header.has_key = true;
		memcpy(header.key_hash, VARDATA_ANY(DatumGetByteaPP(d)), sizeof(header.key_hash));
	}
	body = SPI_getvalue(tup, desc, 3);
	if (header.kind != LLMGW_KIND_EMBED)
		header.max_output_tokens = llmgw_json_output_bound_text(body, strlen(body));
	return llmgw_request_create(&header, SPI_getvalue(tup, desc, 4), SPI_getvalue(tup, desc, 2),
								body, strlen(body), SPI_getvalue(tup, desc, 6));
}

/* The calls just taken, handed over once the taking commits */
typedef struct TakenCall
{
	dsa_pointer request;
	bool		cancelled;		/* its job was cancelled: it ends unsent */
} TakenCall;

static TakenCall taken[ASYNC_TAKE_MAX];
static int	ntaken = 0;

/* What take_calls takes: room, and the calls slots hold */
typedef struct TakeArgs
{
	int			room;
	int64	   *held;
	int			nheld;
} TakeArgs;

/* Take up to room calls and build their requests (in a transaction) */
static void
take_calls(void *arg)
{
	TakeArgs   *t = (TakeArgs *) arg;
	Oid			types[4] = {INT4OID, INT4OID, TIMESTAMPTZOID, INT8ARRAYOID};
	Datum		values[4];
	Datum	   *held = palloc(sizeof(Datum) * Max(t->nheld, 1));
	int			rc;

	for (int i = 0; i < t->nheld; i++)
		held[i] = Int64GetDatum(t->held[i]);

	/*
	 * Queued calls, and running ones whose server life is gone (a crash
	 * restart: taken again at once) or that no slot holds and whose lease
	 * is over.
	 */
	values[0] = Int32GetDatum(llmgw_async_lease);
	values[1] = Int32GetDatum(t->room);
	values[2] = TimestampTzGetDatum(llmgw_shared->life);
	values[3] = PointerGetDatum(construct_array(held, t->nheld, INT8OID, sizeof(int64),
												FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	rc = SPI_execute_with_args("UPDATE llmgw.async_calls a SET status = 'running',"
							   " attempts = a.attempts + 1,"
							   " started_at = coalesce(a.started_at, pg_catalog.clock_timestamp()),"
							   " lease_until = pg_catalog.now() + $1 * interval '1 second',"
							   " server_started_at = $3"
							   " WHERE a.id IN (SELECT q.id FROM llmgw.async_calls q"
							   "   WHERE (q.status = 'queued' OR (q.status = 'running' AND"
							   "     (q.server_started_at <> $3 OR"
							   "      (q.lease_until < pg_catalog.now() AND q.id <> ALL ($4)))))"
							   /* not while pg_restore fills the database: models may be missing */
							   "     AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity s"
							   "       WHERE s.datname = pg_catalog.current_database()"
							   "         AND s.application_name = 'pg_restore')"
							   "   ORDER BY q.id LIMIT $2 FOR UPDATE SKIP LOCKED)"
							   " RETURNING " ASYNC_CALL_COLUMNS,
							   4, types, values, NULL, false, 0);
	if (rc != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "llmgw: could not take asynchronous calls: %s", SPI_result_code_string(rc));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;

		taken[ntaken].cancelled =
			DatumGetBool(SPI_getbinval(tup, SPI_tuptable->tupdesc, ASYNC_CALL_CANCELLED, &isnull));
		taken[ntaken++].request = async_request(tup, SPI_tuptable->tupdesc);
	}
}

/* The running jobs llmgw.cancel_job cancelled */
typedef struct JobIds
{
	int64	   *ids;			/* in TopMemoryContext */
	int			n;
} JobIds;

/* Find the running jobs llmgw.cancel_job cancelled (in a transaction) */
static void
find_cancelled_jobs(void *arg)
{
	JobIds	   *jobs = (JobIds *) arg;
	int			rc = SPI_execute("SELECT id FROM llmgw.jobs WHERE cancel_requested AND status = 'running'",
								 true, 0);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read the cancelled jobs: %s", SPI_result_code_string(rc));
	jobs->ids = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		jobs->ids[jobs->n++] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));
	}
}

/*
 * Jobs were cancelled since we last looked: abort their calls in flight.
 * The calls this worker handed over before are all in slots by now, and
 * those taken from now on see their job cancelled.
 */
static void
abort_cancelled_jobs(void)
{
	static uint64 seen = 0;
	uint64		cancelled = pg_atomic_read_u64(&llmgw_shared->jobs_cancelled);
	JobIds		jobs = {NULL, 0};

	if (cancelled == seen)
		return;
	if (llmgw_in_transaction("llmgw: cancelling the calls of jobs", find_cancelled_jobs, &jobs))
	{
		seen = cancelled;
		llmgw_slots_cancel_jobs(jobs.ids, jobs.n);
	}
	if (jobs.ids)
		pfree(jobs.ids);
}

/*
 * Worker 0: take queued asynchronous calls (and calls whose lease is over,
 * or whose server died) and hand them to the workers.
 */
void
llmgw_async_dispatch(void)
{
	static uint64 seen = 0;
	static TimestampTz next_poll = 0;
	static int64 *held = NULL;
	uint64		submitted = pg_atomic_read_u64(&llmgw_shared->async_submitted);
	TimestampTz now = GetCurrentTimestamp();
	TakeArgs	t;
	int			queued, running, workers;
	uint64		total;

	abort_cancelled_jobs();
	if (submitted == seen && now < next_poll)
		return;
	llmgw_queue_counts(&workers, &queued, &running, &total);
	t.room = Min(ASYNC_TAKE_MAX, llmgw_queue_size - queued - running - 1);
	/* asynchronous calls together hold one fair share of the slots */
	t.room = Min(t.room, llmgw_share_room(llmgw_share_key(LLMGW_SHARE_ASYNC, "", 0)));
	if (t.room <= 0)
		return;
	seen = submitted;
	next_poll = TimestampTzPlusMilliseconds(now, LLMGW_ASYNC_POLL_MS);

	/* every call handed over before is in a slot now, or done */
	if (held == NULL)
		held = MemoryContextAlloc(TopMemoryContext, sizeof(int64) * llmgw_queue_size);
	t.held = held;
	t.nheld = llmgw_slots_async_calls(held, llmgw_queue_size);
	ntaken = 0;
	if (!llmgw_in_transaction("llmgw: taking asynchronous calls", take_calls, &t))
	{
		for (int i = 0; i < ntaken; i++)
			dsa_free(llmgw_dsa(), taken[i].request);
		return;
	}

	/*
	 * Only now that the calls are marked running for everyone may a worker
	 * make them (its answer is written where status = 'running').  Detached:
	 * the worker that makes a call frees its slot; with no slot free after
	 * all, the lease runs out and the call is taken again.
	 */
	for (int i = 0; i < ntaken; i++)
		if (llmgw_slot_submit_detached(taken[i].request, taken[i].cancelled) < 0)
			dsa_free(llmgw_dsa(), taken[i].request);
}

/*
 * In the settle transaction: a synchronous retry of a batch item writes
 * its outcome where the item's would have gone (llmgw.batch_sync_finish
 * never raises, so the call's usage rows are written whatever happens).
 */
static void
batch_retry_finish(int64 async_id)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[1];

	if (plan == NULL)
	{
		Oid			types[1] = {INT8OID};

		plan = llmgw_spi_prepare("SELECT llmgw.batch_sync_finish($1)", 1, types);
	}
	values[0] = Int64GetDatum(async_id);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not write the synchronous retry %lld of a batch item",
			 (long long) async_id);
}

/* In the settle transaction: the answer or error of an asynchronous call */
void
llmgw_async_finish(LlmgwCall *call, const char *answer, int sqlstate, const char *message,
				   const char *detail)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	bool		isnull;
	bool		batch_retry;

	if (plan == NULL)
	{
		Oid			types[6] = {INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT4OID};

		plan = llmgw_spi_prepare("UPDATE llmgw.async_calls SET status = $2, answer = $3::jsonb,"
						   " sqlstate = $4, error = $5, finished_at = pg_catalog.clock_timestamp(),"
						   " lease_until = NULL"
						   " WHERE id = $1 AND status = 'running' AND attempts = $6"
						   " RETURNING batch_id IS NOT NULL", 6, types);
	}
	values[0] = Int64GetDatum(call->async_id);
	values[1] = CStringGetTextDatum(sqlstate ? "error" : "done");
	values[2] = answer ? CStringGetTextDatum(answer) : (Datum) 0;
	nulls[2] = answer ? ' ' : 'n';
	values[3] = sqlstate ? CStringGetTextDatum(unpack_sql_state(sqlstate)) : (Datum) 0;
	nulls[3] = sqlstate ? ' ' : 'n';
	if (message)
		values[4] = CStringGetTextDatum(detail ? psprintf("%s (%s)", message, detail) : message);
	else
		nulls[4] = 'n';
	values[5] = Int32GetDatum(call->async_take);
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_UPDATE_RETURNING)
		elog(ERROR, "llmgw: could not record the result of asynchronous call %lld",
			 (long long) call->async_id);
	/*
	 * Written once, by the take that holds the row: a call already finished
	 * (a recovered one), or taken again since, updates nothing.  Its usage
	 * rows are written all the same: a call made is a call billed.
	 */
	batch_retry = SPI_processed == 1 &&
		DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (batch_retry)
		batch_retry_finish(call->async_id);
}

/*
 * In the settle transaction: an asynchronous call whose worker died is
 * queued again (its interrupted try has its usage row), so that a worker
 * takes it again at once.
 */
void
llmgw_async_requeue(LlmgwCall *call)
{
	static SPIPlanPtr plan = NULL;
	Datum		values[2];

	if (plan == NULL)
	{
		Oid			types[2] = {INT8OID, INT4OID};

		plan = llmgw_spi_prepare("UPDATE llmgw.async_calls SET status = 'queued', lease_until = NULL"
								 " WHERE id = $1 AND status = 'running' AND attempts = $2", 2, types);
	}
	values[0] = Int64GetDatum(call->async_id);
	values[1] = Int32GetDatum(call->async_take);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "llmgw: could not queue asynchronous call %lld again",
			 (long long) call->async_id);
	llmgw_async_signal_at_commit();
}
