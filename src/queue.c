/*-------------------------------------------------------------------------
 *
 * queue.c
 *		Shared-memory request slots: callers submit a request and sleep on
 *		their latch; workers take queued slots and publish results.
 *
 * Payloads live in a DSA area created in place inside our shared memory,
 * so a request or a response may be as large as the caller allows.
 * LlmgwShared.mutex (a spinlock) guards the free list, the queue and the
 * slot fields; it is held only for a few instructions at a time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"
#include "utils/wait_event.h"

#include "calls_now.h"
#include "errors.h"
#include "llmgw.h"
#include "metrics.h"
#include "queue.h"
#include "share.h"

/* Size of the DSA area kept inside the main shared memory segment */
#define LLMGW_DSA_INPLACE_SIZE (4 * 1024 * 1024)

/* How long a cancelled caller waits for the worker to record the cancel */
#define LLMGW_CANCEL_WAIT_MS 2000

LlmgwShared *llmgw_shared = NULL;
LlmgwSlot  *llmgw_slots = NULL;
int		   *llmgw_queue = NULL;
static void *llmgw_dsa_place = NULL;
static dsa_area *llmgw_area = NULL;

/* Byte offsets of the parts of our shared memory */
static Size
slots_offset(void)
{
	return MAXALIGN(sizeof(LlmgwShared));
}

static Size
queue_offset(void)
{
	return slots_offset() + MAXALIGN(mul_size(sizeof(LlmgwSlot), llmgw_queue_size));
}

static Size
dsa_offset(void)
{
	return queue_offset() + MAXALIGN(mul_size(sizeof(int), llmgw_queue_size));
}

static Size
dsa_inplace_size(void)
{
	return Max(LLMGW_DSA_INPLACE_SIZE, dsa_minimum_size());
}

/* Total shared memory we need */
Size
llmgw_shmem_size(void)
{
	return add_size(dsa_offset(), dsa_inplace_size());
}

/* Lay out (or find) the shared state; runs in the postmaster and backends */
void
llmgw_shmem_init(void *base, bool found)
{
	llmgw_shared = (LlmgwShared *) base;
	llmgw_slots = (LlmgwSlot *) ((char *) base + slots_offset());
	llmgw_queue = (int *) ((char *) base + queue_offset());
	llmgw_dsa_place = (char *) base + dsa_offset();

	if (!found)
	{
		dsa_area   *area;

		memset(base, 0, dsa_offset());
		SpinLockInit(&llmgw_shared->mutex);
		llmgw_shared->nslots = llmgw_queue_size;
		for (int i = 0; i < llmgw_queue_size; i++)
		{
			llmgw_slots[i].state = LLMGW_SLOT_FREE;
			llmgw_slots[i].request = InvalidDsaPointer;
			llmgw_slots[i].result = InvalidDsaPointer;
			llmgw_slots[i].next = i + 1 < llmgw_queue_size ? i + 1 : -1;
		}
		llmgw_shared->free_head = 0;
		llmgw_shared->database_oid = InvalidOid;
		llmgw_shared->life = GetCurrentTimestamp();
		pg_atomic_init_u64(&llmgw_shared->config_generation, 1);
		pg_atomic_init_u32(&llmgw_shared->next_worker, 0);
		pg_atomic_init_u64(&llmgw_shared->requests_total, 0);
		pg_atomic_init_u64(&llmgw_shared->cancels, 0);
		pg_atomic_init_u64(&llmgw_shared->async_submitted, 0);
		pg_atomic_init_u64(&llmgw_shared->jobs_cancelled, 0);
		pg_atomic_init_u64(&llmgw_shared->batches_queued, 0);

		llmgw_shared->dsa_tranche = LWLockNewTrancheId();
		area = dsa_create_in_place(llmgw_dsa_place, dsa_inplace_size(),
								   llmgw_shared->dsa_tranche, NULL);
		dsa_pin(area);
		dsa_detach(area);
	}
}

/* This process's handle on the payload area, attached on first use */
dsa_area *
llmgw_dsa(void)
{
	if (llmgw_area == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

		LWLockRegisterTranche(llmgw_shared->dsa_tranche, "llmgw_dsa");
		llmgw_area = dsa_attach_in_place(llmgw_dsa_place, NULL);
		dsa_pin_mapping(llmgw_area);
		MemoryContextSwitchTo(old);
	}
	return llmgw_area;
}

/*
 * Pick a running worker to wake, round robin among those with room for
 * another transfer (a full worker would leave the call queued until one of
 * its transfers ends); any running one when all are full, -1 when none is
 * running.  Caller holds the mutex.
 */
static int
pick_worker_locked(int except)
{
	uint32		start = pg_atomic_fetch_add_u32(&llmgw_shared->next_worker, 1);
	int			any = -1;

	for (int i = 0; i < llmgw_workers; i++)
	{
		int			w = (start + i) % llmgw_workers;
		LlmgwWorkerInfo *info = &llmgw_shared->workers[w];

		if (info->pid == 0 || w == except)
			continue;
		if (info->room > 0)
			return w;
		if (any < 0)
			any = w;
	}
	return except < 0 ? any : -1;
}

static int	slot_submit(dsa_pointer request, bool detached, bool cancelled);

/*
 * Queue a request; returns the slot number, LLMGW_QUEUE_FULL when every
 * slot is in use, or LLMGW_SHARE_FULL when the caller's role or key holds
 * its whole share of the slots.  The slot owns the request memory from
 * then on.
 */
int
llmgw_slot_try_submit(dsa_pointer request)
{
	return slot_submit(request, false, false);
}

/*
 * Queue a request nobody waits for (an asynchronous call): the worker frees
 * the slot when the call is done.  A call already cancelled (its job was,
 * llmgw.cancel_job) goes through the worker to record its end, and is
 * never sent.  Returns a slot number or a *_FULL code.
 */
int
llmgw_slot_submit_detached(dsa_pointer request, bool cancelled)
{
	return slot_submit(request, true, cancelled);
}

/* The shares a request counts against: its role and key, or "async" */
static int
request_shares(dsa_pointer request, bool detached, uint64 *keys)
{
	LlmgwRequest *req = dsa_get_address(llmgw_dsa(), request);
	Oid			role = GetUserId();
	int			n = 0;

	if (detached)
	{
		keys[n++] = llmgw_share_key(LLMGW_SHARE_ASYNC, "", 0);
		return n;
	}
	keys[n++] = llmgw_share_key(LLMGW_SHARE_ROLE, &role, sizeof(role));
	if (req->has_key)
		keys[n++] = llmgw_share_key(LLMGW_SHARE_KEY, req->key_hash, sizeof(req->key_hash));
	return n;
}

static int
slot_submit(dsa_pointer request, bool detached, bool cancelled)
{
	int			slotno;
	int			w;
	Latch	   *wake = NULL;
	Oid			dboid;
	uint64		keys[LLMGW_SLOT_SHARES];
	LlmgwShare *shares[LLMGW_SLOT_SHARES] = {NULL, NULL};
	int			nshares = request_shares(request, detached, keys);
	LlmgwSlotCaller who;

	if (!llmgw_share_acquire(keys, nshares, shares))
		return LLMGW_SHARE_FULL;
	llmgw_slot_caller(request, detached ? LLMGW_CALLER_ASYNC : LLMGW_CALLER_SQL, &who);

	SpinLockAcquire(&llmgw_shared->mutex);
	dboid = llmgw_shared->database_oid;
	slotno = llmgw_shared->free_head;
	if (slotno >= 0 && (dboid == InvalidOid || dboid == MyDatabaseId))
	{
		LlmgwSlot  *slot = &llmgw_slots[slotno];

		llmgw_shared->free_head = slot->next;
		slot->state = LLMGW_SLOT_QUEUED;
		slot->cancel_requested = cancelled;
		slot->abandoned = detached;
		slot->worker = -1;
		slot->worker_generation = 0;
		slot->caller_latch = MyLatch;
		slot->request = request;
		slot->result = InvalidDsaPointer;
		slot->reservation.n = 0;
		slot->share[0] = shares[0];
		slot->share[1] = shares[1];
		slot->share_running = false;
		slot->who = who;
		llmgw_queue[(llmgw_shared->queue_head + llmgw_shared->queue_len) %
					llmgw_shared->nslots] = slotno;
		llmgw_shared->queue_len++;
		w = pick_worker_locked(-1);
		if (w >= 0)
			wake = llmgw_shared->workers[w].latch;
	}
	SpinLockRelease(&llmgw_shared->mutex);

	if (slotno < 0 || (dboid != InvalidOid && dboid != MyDatabaseId))
		llmgw_share_release(shares, nshares);
	if (dboid != InvalidOid && dboid != MyDatabaseId)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("llmgw serves database \"%s\" only", llmgw_database),
				 errhint("Call it from that database, or change llmgw.database and restart the server.")));
	if (slotno < 0)
		return LLMGW_QUEUE_FULL;

	pg_atomic_fetch_add_u64(&llmgw_shared->requests_total, 1);
	if (wake)
		SetLatch(wake);
	return slotno;
}

/*
 * A call the front door of this worker runs itself: it takes a slot at once
 * (no queue), running on this worker, with no caller waiting on it (the slot
 * is freed when its result is published).  It counts against its key's fair
 * share of the slots and of the calls running.  Returns the slot number,
 * LLMGW_QUEUE_FULL or LLMGW_SHARE_FULL; on success the slot owns the request.
 */
int
llmgw_slot_claim(dsa_pointer request, int worker, uint64 generation)
{
	LlmgwRequest *req = dsa_get_address(llmgw_dsa(), request);
	uint64		key = llmgw_share_key(LLMGW_SHARE_KEY, req->key_hash, sizeof(req->key_hash));
	LlmgwShare *shares[LLMGW_SLOT_SHARES] = {NULL, NULL};
	int			slotno;
	LlmgwSlotCaller who;

	if (!llmgw_share_acquire(&key, 1, shares))
	{
		llmgw_metrics_refused(LLMGW_REFUSED_FAIR_SHARE, LLMGW_SCOPE_SHARE);
		return LLMGW_SHARE_FULL;
	}
	llmgw_slot_caller(request, LLMGW_CALLER_HTTP, &who);
	SpinLockAcquire(&llmgw_shared->mutex);
	slotno = llmgw_shared->free_head;
	if (slotno >= 0 && llmgw_share_may_run(shares, 1))
	{
		LlmgwSlot  *slot = &llmgw_slots[slotno];

		llmgw_shared->free_head = slot->next;
		slot->state = LLMGW_SLOT_RUNNING;
		slot->cancel_requested = false;
		slot->abandoned = true;
		slot->worker = worker;
		slot->worker_generation = generation;
		slot->caller_latch = NULL;
		slot->request = request;
		slot->result = InvalidDsaPointer;
		slot->reservation.n = 0;
		slot->share[0] = shares[0];
		slot->share[1] = NULL;
		llmgw_share_run(shares, 1, 1);
		slot->share_running = true;
		slot->who = who;
		SpinLockRelease(&llmgw_shared->mutex);
		pg_atomic_fetch_add_u64(&llmgw_shared->requests_total, 1);
		return slotno;
	}
	SpinLockRelease(&llmgw_shared->mutex);
	llmgw_share_release(shares, 1);
	llmgw_metrics_refused(slotno < 0 ? LLMGW_REFUSED_QUEUE_FULL : LLMGW_REFUSED_FAIR_SHARE,
						  slotno < 0 ? LLMGW_SCOPE_QUEUE : LLMGW_SCOPE_SHARE);
	return slotno < 0 ? LLMGW_QUEUE_FULL : LLMGW_SHARE_FULL;
}

/* Raise the error of a caller whose share of the gateway is used up */
static void
share_full_error(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_LLMGW_SHARE_EXCEEDED),
			 errmsg("role \"%s\" holds its whole share of the llmgw gateway",
					GetUserNameFromId(GetUserId(), false)),
			 errdetail("One role or virtual key may hold %d of the %d request slots (llmgw.max_share = %d%%).",
					   llmgw_share_slot_cap(), llmgw_queue_size, llmgw_max_share),
			 errhint("Wait for its calls to finish, lower their concurrency, or SET llmgw.share_wait = on to wait for room.")));
}

/* Raise the error of a full queue */
static void
queue_full_error(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
			 errmsg("too many llmgw calls in flight"),
			 errdetail("All %d request slots are in use.", llmgw_queue_size),
			 errhint("Raise llmgw.queue_size or lower the number of concurrent calls.")));
}

/*
 * A submission was refused (LLMGW_QUEUE_FULL or LLMGW_SHARE_FULL): all
 * slots in use is an error; a share used up is waited for
 * (llmgw.share_wait), or an error.
 */
void
llmgw_slot_refused(int why)
{
	if (why == LLMGW_QUEUE_FULL)
	{
		llmgw_metrics_refused(LLMGW_REFUSED_QUEUE_FULL, LLMGW_SCOPE_QUEUE);
		queue_full_error();
	}
	if (!llmgw_share_wait)
	{
		llmgw_metrics_refused(LLMGW_REFUSED_FAIR_SHARE, LLMGW_SCOPE_SHARE);
		share_full_error();
	}
	llmgw_share_wait_for_room();
	CHECK_FOR_INTERRUPTS();
}

/* Queue a request, waiting for room in the caller's share if need be */
int
llmgw_slot_submit(dsa_pointer request)
{
	for (;;)
	{
		int			slotno = llmgw_slot_try_submit(request);

		if (slotno >= 0)
			return slotno;
		llmgw_slot_refused(slotno);
	}
}

/*
 * Return a slot to the free list; caller holds the mutex, and gives the
 * slot's shares back (llmgw_share_release) once it has let go of it.
 */
static void
slot_release_locked(int slotno, LlmgwShare **shares)
{
	LlmgwSlot  *slot = &llmgw_slots[slotno];

	shares[0] = slot->share[0];
	shares[1] = slot->share[1];
	slot->share[0] = slot->share[1] = NULL;
	slot->state = LLMGW_SLOT_FREE;
	slot->request = InvalidDsaPointer;
	slot->result = InvalidDsaPointer;
	slot->caller_latch = NULL;
	slot->next = llmgw_shared->free_head;
	llmgw_shared->free_head = slotno;
}

/* Free a finished slot and its payloads */
static void
slot_free(int slotno)
{
	dsa_pointer request;
	dsa_pointer result;
	LlmgwShare *shares[LLMGW_SLOT_SHARES];

	SpinLockAcquire(&llmgw_shared->mutex);
	request = llmgw_slots[slotno].request;
	result = llmgw_slots[slotno].result;
	slot_release_locked(slotno, shares);
	SpinLockRelease(&llmgw_shared->mutex);
	llmgw_share_release(shares, LLMGW_SLOT_SHARES);

	if (DsaPointerIsValid(request))
		dsa_free(llmgw_dsa(), request);
	if (DsaPointerIsValid(result))
		dsa_free(llmgw_dsa(), result);
}

/*
 * Flag a slot's call cancelled; returns the latch of the worker running it
 * (NULL: none runs it yet).  Caller holds the mutex.
 */
static Latch *
slot_cancel_locked(LlmgwSlot *slot, bool abandon)
{
	slot->cancel_requested = true;
	if (abandon)
		slot->abandoned = true;
	return slot->state == LLMGW_SLOT_RUNNING ? llmgw_shared->workers[slot->worker].latch : NULL;
}

/* Ask the owning worker to abort the call; returns true if already done */
static bool
slot_cancel(int slotno, bool abandon)
{
	LlmgwSlot  *slot = &llmgw_slots[slotno];
	Latch	   *wake = NULL;
	bool		done;

	SpinLockAcquire(&llmgw_shared->mutex);
	done = (slot->state == LLMGW_SLOT_DONE);
	if (!done)
		wake = slot_cancel_locked(slot, abandon);
	SpinLockRelease(&llmgw_shared->mutex);
	if (!done)
		pg_atomic_fetch_add_u64(&llmgw_shared->cancels, 1);
	if (wake)
		SetLatch(wake);
	return done;
}

/*
 * Ask the workers to abort the asynchronous calls of these jobs (cancelled
 * by llmgw.cancel_job), as a cancelled caller asks for its own: a running
 * call is aborted, a queued one ends when a worker takes it, unsent.
 */
void
llmgw_slots_cancel_jobs(const int64 *jobs, int njobs)
{
	Latch	   *wake[LLMGW_MAX_WORKERS];
	int			nwake = 0;
	int			cancelled = 0;

	SpinLockAcquire(&llmgw_shared->mutex);
	for (int i = 0; i < llmgw_shared->nslots; i++)
	{
		LlmgwSlot  *slot = &llmgw_slots[i];

		if (slot->state == LLMGW_SLOT_FREE || slot->who.kind != LLMGW_CALLER_ASYNC ||
			slot->who.job_id == 0 || slot->cancel_requested)
			continue;
		for (int j = 0; j < njobs; j++)
		{
			if (slot->who.job_id == jobs[j])
			{
				(void) slot_cancel_locked(slot, false);
				cancelled++;
				break;
			}
		}
	}
	/* the workers that run them look at their calls (process_cancels) */
	for (int w = 0; cancelled > 0 && w < llmgw_workers; w++)
		if (llmgw_shared->workers[w].latch)
			wake[nwake++] = llmgw_shared->workers[w].latch;
	SpinLockRelease(&llmgw_shared->mutex);
	if (cancelled > 0)
		pg_atomic_fetch_add_u64(&llmgw_shared->cancels, 1);
	for (int w = 0; w < nwake; w++)
		SetLatch(wake[w]);
}

/*
 * The ids of the asynchronous calls that slots hold now, queued or running:
 * a live worker makes them (or records their end), so they are not taken
 * again whatever their lease says.  Returns how many (at most max).
 */
int
llmgw_slots_async_calls(int64 *ids, int max)
{
	int			n = 0;

	SpinLockAcquire(&llmgw_shared->mutex);
	for (int i = 0; i < llmgw_shared->nslots && n < max; i++)
	{
		LlmgwSlot  *slot = &llmgw_slots[i];

		if (slot->state != LLMGW_SLOT_FREE && slot->who.kind == LLMGW_CALLER_ASYNC)
			ids[n++] = slot->who.async_id;
	}
	SpinLockRelease(&llmgw_shared->mutex);
	return n;
}

/* Free the slot if it is done, else ask the worker to abort and free it */
void
llmgw_slot_abandon(int slotno)
{
	if (slot_cancel(slotno, true))
		slot_free(slotno);
}

/* Error or exit while waiting: free the slot, or leave it to the worker */
static void
slot_abandon_cb(int code, Datum arg)
{
	llmgw_slot_abandon(DatumGetInt32(arg));
}

/* Is the slot done? */
bool
llmgw_slot_done(int slotno)
{
	bool		done;

	SpinLockAcquire(&llmgw_shared->mutex);
	done = (llmgw_slots[slotno].state == LLMGW_SLOT_DONE);
	SpinLockRelease(&llmgw_shared->mutex);
	return done;
}

/* How many of the slots are done */
static int
count_done(const int *slotnos, int n)
{
	int			done = 0;

	for (int i = 0; i < n; i++)
		done += llmgw_slot_done(slotnos[i]);
	return done;
}

/*
 * The caller was cancelled: tell the workers, give them a moment to abort
 * the transfers and record the cancelled calls, then let the interrupt fire.
 */
static void
wait_for_cancel(const int *slotnos, int n)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   LLMGW_CANCEL_WAIT_MS);

	for (int i = 0; i < n; i++)
		(void) slot_cancel(slotnos[i], false);
	while (count_done(slotnos, n) < n)
	{
		long		left = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);

		if (left <= 0)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 left, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	CHECK_FOR_INTERRUPTS();
}

/*
 * Sleep until at least one of the slots is done.  The caller arranges for
 * the slots to be abandoned if this raises an error (cancel, terminate).
 */
void
llmgw_slots_wait_any(const int *slotnos, int n)
{
	bool		cancel_sent = false;

	for (;;)
	{
		ResetLatch(MyLatch);
		if (count_done(slotnos, n) > 0)
			return;
		if (!cancel_sent && (QueryCancelPending || ProcDiePending))
		{
			cancel_sent = true;
			wait_for_cancel(slotnos, n);
			continue;
		}
		CHECK_FOR_INTERRUPTS();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 1000L, PG_WAIT_EXTENSION);
	}
}

/* The result of a done slot, copied to palloc'd memory; the slot is freed */
LlmgwResult *
llmgw_slot_result(int slotno)
{
	LlmgwResult *res = dsa_get_address(llmgw_dsa(), llmgw_slots[slotno].result);
	Size		len = LLMGW_RESULT_SIZE(res);
	LlmgwResult *copy = palloc(len);

	memcpy(copy, res, len);
	slot_free(slotno);
	return copy;
}

/* Sleep until the slot is done; the result is copied to palloc'd memory */
LlmgwResult *
llmgw_slot_wait(int slotno)
{
	PG_ENSURE_ERROR_CLEANUP(slot_abandon_cb, Int32GetDatum(slotno));
	{
		llmgw_slots_wait_any(&slotno, 1);
	}
	PG_END_ENSURE_ERROR_CLEANUP(slot_abandon_cb, Int32GetDatum(slotno));
	return llmgw_slot_result(slotno);
}

/* How far into the queue a worker looks for calls whose share may run */
#define TAKE_SCAN_MAX 4096

/*
 * Worker side: take up to max queued slots, in order, but passing over the
 * calls of shares that already run their share (they stay queued, in
 * order).  Slots abandoned before a worker saw them are freed here, unseen
 * by any provider.
 */
int
llmgw_queue_take(int worker, uint64 generation, int *slotnos, int max)
{
	int			n = 0;
	dsa_pointer dropped[64];
	LlmgwShare *dropped_shares[64 * LLMGW_SLOT_SHARES];
	int			ndropped = 0;
	int			kept[TAKE_SCAN_MAX];
	int			nkept = 0;
	int			scanned = 0;
	int			nslots;
	int			head;

	SpinLockAcquire(&llmgw_shared->mutex);
	nslots = llmgw_shared->nslots;
	head = llmgw_shared->queue_head;
	while (n < max && scanned < llmgw_shared->queue_len && scanned < TAKE_SCAN_MAX &&
		   ndropped < lengthof(dropped))
	{
		int			slotno = llmgw_queue[(head + scanned) % nslots];
		LlmgwSlot  *slot = &llmgw_slots[slotno];

		scanned++;
		/* a caller that left before a worker took the call (an asynchronous
		 * call has no caller: it is taken, and ends unsent if cancelled) */
		if (slot->abandoned && slot->cancel_requested && slot->who.kind != LLMGW_CALLER_ASYNC)
		{
			dropped[ndropped] = slot->request;
			slot_release_locked(slotno, &dropped_shares[ndropped * LLMGW_SLOT_SHARES]);
			ndropped++;
			continue;
		}
		if (!llmgw_share_may_run(slot->share, LLMGW_SLOT_SHARES))
		{
			kept[nkept++] = slotno;
			continue;
		}
		llmgw_share_run(slot->share, LLMGW_SLOT_SHARES, 1);
		slot->share_running = true;
		slot->state = LLMGW_SLOT_RUNNING;
		slot->worker = worker;
		slot->worker_generation = generation;
		slotnos[n++] = slotno;
	}
	/* the calls passed over move up, in order, to just before the rest */
	head = (head + scanned - nkept) % nslots;
	for (int i = 0; i < nkept; i++)
		llmgw_queue[(head + i) % nslots] = kept[i];
	llmgw_shared->queue_head = head;
	llmgw_shared->queue_len -= scanned - nkept;
	SpinLockRelease(&llmgw_shared->mutex);

	for (int i = 0; i < ndropped; i++)
	{
		dsa_free(llmgw_dsa(), dropped[i]);
		llmgw_share_release(&dropped_shares[i * LLMGW_SLOT_SHARES], LLMGW_SLOT_SHARES);
	}
	return n;
}

/*
 * A worker says how many more transfers it could start.  A full worker with
 * calls still queued passes the wake-up on to one with room; a worker with
 * room and calls queued is told so (true), to take them now.
 */
bool
llmgw_queue_worker_room(int worker, int room)
{
	Latch	   *wake = NULL;
	bool		waiting;

	SpinLockAcquire(&llmgw_shared->mutex);
	llmgw_shared->workers[worker].room = room;
	waiting = llmgw_shared->queue_len > 0;
	if (waiting && room <= 0)
	{
		int			w = pick_worker_locked(worker);

		if (w >= 0 && llmgw_shared->workers[w].room > 0)
			wake = llmgw_shared->workers[w].latch;
	}
	SpinLockRelease(&llmgw_shared->mutex);
	if (wake)
		SetLatch(wake);
	return waiting && room > 0;
}

/* Does a caller wait for this slot's result (it was not abandoned)? */
bool
llmgw_slot_awaited(int slotno)
{
	bool		awaited;

	SpinLockAcquire(&llmgw_shared->mutex);
	awaited = !llmgw_slots[slotno].abandoned;
	SpinLockRelease(&llmgw_shared->mutex);
	return awaited;
}

/* Is the caller of this slot still waiting for it? */
bool
llmgw_slot_cancelled(int slotno)
{
	bool		cancelled;

	SpinLockAcquire(&llmgw_shared->mutex);
	cancelled = llmgw_slots[slotno].cancel_requested;
	SpinLockRelease(&llmgw_shared->mutex);
	return cancelled;
}

/* Worker side: hand the result to the caller and wake it */
void
llmgw_slot_publish(int slotno, dsa_pointer result)
{
	LlmgwSlot  *slot = &llmgw_slots[slotno];
	Latch	   *wake = NULL;
	bool		abandoned;

	SpinLockAcquire(&llmgw_shared->mutex);
	if (slot->share_running)
		llmgw_share_run(slot->share, LLMGW_SLOT_SHARES, -1);
	slot->share_running = false;
	abandoned = slot->abandoned;
	slot->result = result;
	if (!abandoned)
	{
		slot->state = LLMGW_SLOT_DONE;
		wake = slot->caller_latch;
	}
	SpinLockRelease(&llmgw_shared->mutex);

	if (abandoned)
		slot_free(slotno);
	else
		SetLatch(wake);
}

/*
 * Worker side, at start: slots a previous incarnation of this worker was
 * running when it died.  Returns how many were found.
 */
int
llmgw_slots_orphaned(int worker, uint64 generation, int *slotnos, int max)
{
	int			n = 0;

	SpinLockAcquire(&llmgw_shared->mutex);
	for (int i = 0; i < llmgw_shared->nslots && n < max; i++)
	{
		LlmgwSlot  *slot = &llmgw_slots[i];

		if (slot->state == LLMGW_SLOT_RUNNING && slot->worker == worker &&
			slot->worker_generation != generation)
		{
			slot->worker_generation = generation;
			slotnos[n++] = i;
		}
	}
	SpinLockRelease(&llmgw_shared->mutex);
	return n;
}

/* Length of an optional string */
static uint32
optlen(const char *s)
{
	return s ? strlen(s) : 0;
}

/* Append an optional string and its terminator; returns the next position */
static char *
put_string(char *p, const char *s, uint32 len)
{
	if (len > 0)
		memcpy(p, s, len);
	p[len] = '\0';
	return p + len + 1;
}

/* Worker side: allocate a result in the payload area */
dsa_pointer
llmgw_result_create(const LlmgwResult *header, const char *text,
					const char *message, const char *detail, const char *hint)
{
	LlmgwResult tmp = *header;
	dsa_pointer dp;
	LlmgwResult *res;
	char	   *p;

	tmp.text_len = optlen(text);
	tmp.message_len = optlen(message);
	tmp.detail_len = optlen(detail);
	tmp.hint_len = optlen(hint);
	dp = dsa_allocate(llmgw_dsa(), LLMGW_RESULT_SIZE(&tmp));
	res = dsa_get_address(llmgw_dsa(), dp);
	*res = tmp;
	p = put_string(res->data, text, tmp.text_len);
	p = put_string(p, message, tmp.message_len);
	p = put_string(p, detail, tmp.detail_len);
	(void) put_string(p, hint, tmp.hint_len);
	return dp;
}

/* Counts for llmgw.stats: running workers, queued and in-flight calls */
void
llmgw_queue_counts(int *workers, int *queued, int *running, uint64 *total)
{
	*workers = *queued = *running = 0;
	SpinLockAcquire(&llmgw_shared->mutex);
	for (int i = 0; i < llmgw_workers; i++)
		*workers += (llmgw_shared->workers[i].pid != 0);
	*queued = llmgw_shared->queue_len;
	for (int i = 0; i < llmgw_shared->nslots; i++)
		*running += (llmgw_slots[i].state == LLMGW_SLOT_RUNNING);
	SpinLockRelease(&llmgw_shared->mutex);
	*total = pg_atomic_read_u64(&llmgw_shared->requests_total);
}

/*
 * A request id: a UUID of version 7 (RFC 9562), the time in milliseconds
 * since 1970 and then 74 random bits.  The ids of one moment sort
 * together, so the indexes on request ids (the usage rows', the request
 * log's) grow at their right edge instead of at random pages; the last
 * seven bytes, random, keep it a valid W3C trace id.  The random bytes
 * are drawn from the strong source a few hundred at a time (one call for
 * 64 ids instead of one per id: a batch's results file takes thousands
 * at once), never shared with another process.
 */
void
llmgw_new_request_id(uint8 *id)
{
#define RANDOM_PER_ID (UUID_LEN - 6)
	static uint8 pool[64 * RANDOM_PER_ID];
	static int	pool_used = sizeof(pool);
	static int	pool_pid = 0;
	uint64		ms = (uint64) (GetCurrentTimestamp() / 1000) +
		(uint64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY * 1000;

	if (pool_used == sizeof(pool) || pool_pid != MyProcPid)
	{
		if (!pg_strong_random(pool, sizeof(pool)))
			ereport(ERROR,
					(errcode(ERRCODE_INTERNAL_ERROR),
					 errmsg("could not generate a request id")));
		pool_used = 0;
		pool_pid = MyProcPid;
	}
	memcpy(id + 6, pool + pool_used, RANDOM_PER_ID);
	memset(pool + pool_used, 0, RANDOM_PER_ID);	/* used once */
	pool_used += RANDOM_PER_ID;
	for (int i = 0; i < 6; i++)
		id[i] = (uint8) (ms >> (8 * (5 - i)));
	id[6] = (id[6] & 0x0f) | 0x70;	/* version 7 */
	id[8] = (id[8] & 0x3f) | 0x80;	/* variant */
#undef RANDOM_PER_ID
}

/*
 * A request in the payload area: the header's fixed fields (request_id
 * filled here), then role, model, body and tags (tags may be NULL).
 */
dsa_pointer
llmgw_request_create(const LlmgwRequest *header, const char *role, const char *model,
					 const char *body, size_t body_len, const char *tags)
{
	LlmgwRequest tmp = *header;
	LlmgwRequest *req;
	dsa_pointer dp;
	char	   *p;

	tmp.role_len = strlen(role);
	tmp.model_len = strlen(model);
	tmp.body_len = body_len;
	tmp.tags_len = tags ? strlen(tags) : 0;
	llmgw_new_request_id(tmp.request_id);

	dp = dsa_allocate_extended(llmgw_dsa(), LLMGW_REQUEST_SIZE(&tmp), DSA_ALLOC_HUGE);
	req = dsa_get_address(llmgw_dsa(), dp);
	*req = tmp;
	p = req->data;
	memcpy(p, role, tmp.role_len + 1);
	p += tmp.role_len + 1;
	memcpy(p, model, tmp.model_len + 1);
	p += tmp.model_len + 1;
	memcpy(p, body, body_len);
	p[body_len] = '\0';
	p += body_len + 1;
	if (tmp.tags_len)
		memcpy(p, tags, tmp.tags_len);
	p[tmp.tags_len] = '\0';
	return dp;
}
