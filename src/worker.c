/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The background worker loop: take requests from the shared queue,
 *		drive their HTTP transfers, settle finished calls, wake callers.
 *
 * One wait point serves everything: the worker's latch (new requests,
 * cancellations, shutdown), postmaster death, and an epoll descriptor that
 * holds every socket curl is using.  A worker never blocks on a transfer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "call.h"
#include "http.h"
#include "async.h"
#include "batch.h"
#include "cache.h"
#include "config.h"
#include "frontdoor.h"
#include "journal.h"
#include "policy.h"
#include "reqlog.h"
#include "settle.h"
#include "txn.h"
#include "llmgw.h"
#include "otel.h"
#include "queue.h"

/* Requests taken from the queue per round */
#define TAKE_BATCH 64

/* How often a call waiting for its team's fair share looks again */
#define SHARE_RECHECK_MS 10

/* Longest sleep when nothing at all is happening */
#define IDLE_WAIT_MS 10000L

static int	my_index;
static uint64 my_generation;
static dlist_head running = DLIST_STATIC_INIT(running);
static dlist_head delayed = DLIST_STATIC_INIT(delayed);	/* waiting to retry */
static MemoryContext calls_cxt;
static uint64 seen_cancels = 0;

/* Announce this worker in shared memory */
static void
worker_attach(void)
{
	LlmgwWorkerInfo *info = &llmgw_shared->workers[my_index];

	SpinLockAcquire(&llmgw_shared->mutex);
	info->generation++;
	my_generation = info->generation;
	info->pid = MyProcPid;
	info->latch = MyLatch;
	info->room = llmgw_max_connections;
	llmgw_shared->database_oid = MyDatabaseId;
	SpinLockRelease(&llmgw_shared->mutex);
}

/* Remove this worker from shared memory at exit */
static void
worker_detach(int code, Datum arg)
{
	LlmgwWorkerInfo *info = &llmgw_shared->workers[my_index];

	SpinLockAcquire(&llmgw_shared->mutex);
	info->pid = 0;
	info->latch = NULL;
	info->room = 0;
	SpinLockRelease(&llmgw_shared->mutex);
}

/* Record and publish finished calls, then free them */
static void
settle(dlist_head *finished)
{
	dlist_mutable_iter iter;

	llmgw_settle(finished, &running, &delayed);
	dlist_foreach_modify(iter, finished)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		dlist_delete(&call->node);
		llmgw_frontdoor_finish(call);
		llmgw_call_publish(call);
		/* its spans, once its caller is answered (docs/tracing.md) */
		llmgw_otel_call(call);
		llmgw_call_free(call);
	}
}

/*
 * Refresh the configuration, then the keys and budgets; false when either
 * could not be loaded (the error is in the server log).
 */
static bool
refresh(void)
{
	return llmgw_config_refresh() && llmgw_policy_refresh();
}

/* Drop expired cached answers and the oldest beyond llmgw.cache_max_size */
static void
trim_cache(void *arg)
{
	char		sql[128];

	snprintf(sql, sizeof(sql), "SELECT llmgw.trim_cache(%lld)",
			 (long long) llmgw_cache_max_size * 1024);
	SPI_execute(sql, false, 0);
}

/*
 * Housekeeping: worker 0 records the calls dead server lives had in flight
 * (at start, and again until it succeeds: the extension may not be
 * installed yet), trims the response cache every minute, drops the request
 * log's days beyond its retention every hour, and every worker flushes its
 * journal to disk once a second.
 */
static void
maintain_tables(void)
{
	static TimestampTz last_trim = 0;
	static TimestampTz last_flush = 0;
	static bool recovered = false;
	TimestampTz now = GetCurrentTimestamp();

	if (now - last_flush >= USECS_PER_SEC)
	{
		last_flush = now;
		llmgw_journal_flush();
	}
	if (my_index != 0 || !refresh() || !llmgw_config_installed())
		return;
	if (!recovered)
		recovered = llmgw_settle_dead_lives();
	if (now - last_trim >= USECS_PER_MINUTE)
	{
		last_trim = now;
		(void) llmgw_in_transaction("llmgw: trimming the response cache", trim_cache, NULL);
	}
	llmgw_reqlog_maintain();
}

/*
 * Put a call that was just admitted where it belongs now: finished (it
 * failed at once), waiting for its team's share (delayed), waiting for a
 * cache lookup, or running.
 */
static void
place_admitted(LlmgwCall *call, bool ok, dlist_head *finished, dlist_head *lookups)
{
	if (!ok)
		dlist_push_tail(finished, &call->node);
	else if (call->awaiting_share)
	{
		call->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SHARE_RECHECK_MS);
		dlist_push_tail(&delayed, &call->node);
	}
	else if (call->awaiting_cache)
		dlist_push_tail(lookups, &call->node);
	else
		dlist_push_tail(&running, &call->node);
}

/* Cached calls: a hit is finished, a miss goes to its provider now */
static void
look_up_cached(dlist_head *lookups, dlist_head *finished)
{
	dlist_mutable_iter iter;

	llmgw_cache_lookup(lookups);
	dlist_foreach_modify(iter, lookups)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		dlist_delete(&call->node);
		if (call->cache_hit)
		{
			call->out.status = LLMGW_STATUS_OK;
			call->out.error = LLMGW_ERR_NONE;
			dlist_push_tail(finished, &call->node);
		}
		else
			dlist_push_tail(llmgw_call_resume(call) ? &running : finished, &call->node);
	}
}

/* A call cancelled before its next attempt: it ends with the attempts it made */
static void
end_cancelled(LlmgwCall *call, dlist_head *finished)
{
	llmgw_outcome_init(&call->out);
	call->out.status = LLMGW_STATUS_CANCELLED;
	call->out.error = LLMGW_ERR_CANCELLED;
	call->reached_provider = false;
	dlist_push_tail(finished, &call->node);
}

/* Admit new calls and route them; config_ok: the configuration is loaded */
static void
admit(LlmgwCall *call, bool config_ok, dlist_head *finished, dlist_head *lookups)
{
	/* cancelled while it waited for a worker (by its caller, or with its
	 * job by llmgw.cancel_job): never admitted, never sent */
	if (llmgw_slot_cancelled(call->slotno))
		end_cancelled(call, finished);
	else if (!config_ok)
	{
		call->out.error = LLMGW_ERR_PROVIDER_CONFIG;
		call->out.provider_message = "the configuration could not be loaded; see the server log";
		dlist_push_tail(finished, &call->node);
	}
	else
		place_admitted(call, llmgw_call_start(call), finished, lookups);
}

/* Serve the front door's clients; the calls they make are admitted */
static void
serve_front_door(dlist_head *finished)
{
	dlist_head	created = DLIST_STATIC_INIT(created);
	dlist_head	lookups = DLIST_STATIC_INIT(lookups);
	dlist_mutable_iter iter;
	bool		config_ok;

	if (!llmgw_frontdoor_listening())
		return;
	dlist_init(&created);
	dlist_init(&lookups);
	/* keys and models as they are now, for the requests */
	config_ok = refresh();
	llmgw_frontdoor_run(&created);
	dlist_foreach_modify(iter, &created)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		dlist_delete(&call->node);
		admit(call, config_ok, finished, &lookups);
	}
	look_up_cached(&lookups, finished);
}

/*
 * Take queued requests while we have room for more transfers.  Returns true
 * when it stopped for want of room (the calls left queued were passed on to
 * a worker with room, if there is one).
 */
static bool
accept_requests(dlist_head *finished)
{
	bool		full = false;
	int			slotnos[TAKE_BATCH];
	int			n;
	dlist_head	lookups = DLIST_STATIC_INIT(lookups);

	dlist_init(&lookups);
	do
	{
		int			room = llmgw_max_connections - llmgw_http_active();
		bool		config_ok;

		if (room <= 0)
		{
			full = true;
			(void) llmgw_queue_worker_room(my_index, 0);
			break;
		}
		n = llmgw_queue_take(my_index, my_generation, slotnos, Min(room, TAKE_BATCH));
		if (n == 0)
			break;
		config_ok = refresh();
		for (int i = 0; i < n; i++)
			admit(llmgw_call_create(slotnos[i], calls_cxt), config_ok, finished, &lookups);
	} while (n == TAKE_BATCH);
	look_up_cached(&lookups, finished);
	return full;
}

/* Abort the transfers whose callers asked to cancel */
static void
process_cancels(dlist_head *finished)
{
	uint64		cancels = pg_atomic_read_u64(&llmgw_shared->cancels);
	dlist_mutable_iter iter;

	if (cancels == seen_cancels)
		return;
	seen_cancels = cancels;
	dlist_foreach_modify(iter, &running)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (!llmgw_slot_cancelled(call->slotno))
			continue;
		llmgw_call_cancel(call);
		dlist_delete(&call->node);
		dlist_push_tail(finished, &call->node);
	}
	/* a call waiting to retry ends with the attempts it made */
	dlist_foreach_modify(iter, &delayed)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (!llmgw_slot_cancelled(call->slotno))
			continue;
		dlist_delete(&call->node);
		end_cancelled(call, finished);
	}
}

/*
 * An attempt ended: the call is finished, waits to retry, or runs again
 * (a fallback, or a retry on another deployment of the same priority).
 */
static void
place_after_attempt(LlmgwCall *call, dlist_head *finished)
{
	if (!llmgw_call_continue(call))
		dlist_push_tail(finished, &call->node);
	else if (call->retry_at != 0)
		dlist_push_tail(&delayed, &call->node);
	else
		dlist_push_tail(&running, &call->node);
}

/* Let curl work, and interpret the transfers it finished */
static void
process_transfers(dlist_head *finished)
{
	dlist_head	done = DLIST_STATIC_INIT(done);
	dlist_mutable_iter iter;

	dlist_init(&done);
	llmgw_http_drive(&done);
	dlist_foreach_modify(iter, &done)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		dlist_delete(&call->node);
		llmgw_call_interpret(call);
		place_after_attempt(call, finished);
	}
}

/*
 * Abort the attempts that went silent for longer than their deployment's
 * idle_timeout_ms, and retry or fall back like any timeout.  Returns the
 * milliseconds until the next such check is due (-1: none).
 */
static long
check_silence(dlist_head *finished)
{
	TimestampTz now = GetCurrentTimestamp();
	dlist_mutable_iter iter;
	long		next = -1;

	dlist_foreach_modify(iter, &running)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);
		long		left = llmgw_call_silence(call, now);

		if (left < 0)
			continue;
		if (left > 0)
		{
			next = next < 0 ? left : Min(next, left);
			continue;
		}
		dlist_delete(&call->node);
		llmgw_call_abort_silent(call);
		place_after_attempt(call, finished);
	}
	return next;
}

/* Start the retries whose delay is over, and the calls whose team has room */
static void
start_due_retries(dlist_head *finished)
{
	TimestampTz now = GetCurrentTimestamp();
	dlist_mutable_iter iter;
	dlist_head	lookups = DLIST_STATIC_INIT(lookups);

	dlist_init(&lookups);
	dlist_foreach_modify(iter, &delayed)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (call->retry_at > now)
			continue;
		dlist_delete(&call->node);
		if (call->awaiting_share)
			place_admitted(call, llmgw_call_unpark(call), finished, &lookups);
		else
			dlist_push_tail(llmgw_call_resume(call) ? &running : finished, &call->node);
	}
	look_up_cached(&lookups, finished);
}

/* Milliseconds until the next retry is due, or -1 when none waits */
static long
next_retry_ms(void)
{
	dlist_iter	iter;
	TimestampTz first = 0;

	dlist_foreach(iter, &delayed)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (first == 0 || call->retry_at < first)
			first = call->retry_at;
	}
	if (first == 0)
		return -1;
	return Max(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), first), 0);
}

/*
 * Calls that a previous incarnation of this worker had in flight when it
 * died: record them as interrupted (as the journal describes them) and
 * wake their callers.
 */
static void
recover_orphans(void)
{
	int			slotnos[TAKE_BATCH];
	int			n;

	while ((n = llmgw_slots_orphaned(my_index, my_generation, slotnos, TAKE_BATCH)) > 0)
	{
		dlist_head	finished = DLIST_STATIC_INIT(finished);
		dlist_mutable_iter iter;

		dlist_init(&finished);
		(void) refresh();
		for (int i = 0; i < n; i++)
		{
			LlmgwCall  *call = llmgw_call_create(slotnos[i], calls_cxt);
			MemoryContext old = MemoryContextSwitchTo(call->cxt);

			llmgw_call_interrupted(call);
			MemoryContextSwitchTo(old);
			dlist_push_tail(&finished, &call->node);
		}
		llmgw_settle_recovered(&finished);
		dlist_foreach_modify(iter, &finished)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			dlist_delete(&call->node);
			llmgw_call_publish(call);
			llmgw_call_free(call);
		}
	}
}

/* Entry point of an llmgw worker */
void
llmgw_worker_main(Datum arg)
{
	WaitEventSet *wes;

	my_index = DatumGetInt32(arg);
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(llmgw_database, NULL, 0);
	pgstat_report_appname("llmgw worker");
	/* loading budgets relies on fresh snapshots within a transaction */
	SetConfigOption("default_transaction_isolation", "read committed",
					PGC_SUSET, PGC_S_OVERRIDE);
	{
		char		shard[16];

		snprintf(shard, sizeof(shard), "%d", my_index + 1);
		SetConfigOption("llmgw.rollup_shard", shard, PGC_INTERNAL, PGC_S_OVERRIDE);
	}

	calls_cxt = AllocSetContextCreate(TopMemoryContext, "llmgw calls",
									  ALLOCSET_DEFAULT_SIZES);
	(void) llmgw_dsa();
	llmgw_http_init(llmgw_max_connections);
	llmgw_otel_start(my_index);

	wes = CreateWaitEventSet(TopMemoryContext, 5);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, llmgw_http_fd(), NULL, NULL);

	(void) llmgw_journal_open();
	worker_attach();
	before_shmem_exit(worker_detach, (Datum) 0);
	llmgw_frontdoor_start(my_index, my_generation, wes);
	recover_orphans();
	maintain_tables();
	if (my_index == 0 && llmgw_config_installed())
		llmgw_async_dispatch();
	pgstat_report_activity(STATE_IDLE, NULL);

	for (;;)
	{
		static long silence = -1;
		long		front = llmgw_frontdoor_timeout();
		long		otel = llmgw_otel_timeout_ms();
		bool		was_full;
		dlist_head	finished = DLIST_STATIC_INIT(finished);
		WaitEvent	event;
		long		timeout = llmgw_http_timeout();
		long		retry = next_retry_ms();

		if (retry >= 0 && (timeout < 0 || retry < timeout))
			timeout = retry;
		if (timeout < 0 || timeout > IDLE_WAIT_MS)
			timeout = IDLE_WAIT_MS;
		/* worker 0 looks for asynchronous calls whose lease ran out */
		if (my_index == 0 && timeout > LLMGW_ASYNC_POLL_MS)
			timeout = LLMGW_ASYNC_POLL_MS;
		/* and moves provider batches on (batch.c) */
		if (my_index == 0 && timeout > llmgw_batch_timeout())
			timeout = llmgw_batch_timeout();
		/* the journal is flushed once a second */
		if (timeout > 1000 && llmgw_http_active() > 0)
			timeout = 1000;
		if (silence >= 0 && timeout > silence)
			timeout = silence;
		if (front >= 0 && timeout > front)
			timeout = front;
		/* a batch of spans is due for export */
		if (otel >= 0 && timeout > otel)
			timeout = otel;
		(void) WaitEventSetWait(wes, timeout, &event, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* secret references and hosts may be allowed differently now */
			llmgw_config_force_reload();
		}

		dlist_init(&finished);
		if (my_index == 0 && llmgw_config_installed())
			llmgw_async_dispatch();
		was_full = accept_requests(&finished);
		serve_front_door(&finished);
		start_due_retries(&finished);
		process_cancels(&finished);
		process_transfers(&finished);
		/* streamed text goes out now, not after the round's commit */
		if (llmgw_frontdoor_progress(&running, &finished))
			llmgw_frontdoor_run(NULL);
		silence = check_silence(&finished);
		settle(&finished);
		llmgw_otel_export();
		maintain_tables();
		if (my_index == 0 && llmgw_config_installed())
		{
			llmgw_async_dispatch();
			llmgw_batch_run();
		}
		/* say how much room is left; calls left queued for want of it are
		 * taken at once now that transfers have ended */
		if (llmgw_queue_worker_room(my_index, llmgw_max_connections - llmgw_http_active()) &&
			was_full)
			SetLatch(MyLatch);
		/* send what the settled calls answered */
		llmgw_frontdoor_run(NULL);
		MemoryContextSwitchTo(TopMemoryContext);
	}
}
