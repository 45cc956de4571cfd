/*-------------------------------------------------------------------------
 *
 * settle.c
 *		Settle finished calls: one llmgw.usage row per provider attempt,
 *		cache entries, the answers of asynchronous calls and budget alerts,
 *		all of a worker round written in one transaction (group commit)
 *		before any caller is woken.  An attempt that failed while its call
 *		goes on (a retry, a fallback) gets its row in the round it ended.
 *
 * Failure isolation: the round is first written in one subtransaction.
 * If that fails, each call is written in a subtransaction of its own, so
 * that only the call at fault fails; its rows are tried once more without
 * its tags.  A call whose rows cannot be written at all fails with LG007,
 * and its cost (an estimate at the deployment's highest rates) is still
 * charged to the budgets.
 *
 * Recovery: calls whose worker died (same server life) and the journals of
 * dead server lives are settled here too, as "interrupted" rows priced by
 * llmgw's estimate of their tokens; an attempt that already has a row is
 * skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "async.h"
#include "budget.h"
#include "cache.h"
#include "config.h"
#include "journal.h"
#include "policy.h"
#include "reqlog.h"
#include "settle.h"
#include "txn.h"
#include "usage.h"

static void mark_call_recorded(LlmgwCall *call);

/* What one attempt at writing settles */
typedef struct SettleWork
{
	dlist_head *finished;
	dlist_head *running;
	dlist_head *delayed;
	LlmgwCall  *only;			/* just this call (call by call), or NULL */
	bool		only_finished;	/* ... which is finished */
	bool		skip_recorded;	/* recovered calls: skip attempts with a row */
	bool		without_tags;
	LlmgwUsageBatch *batch;
	LlmgwReqlog *log;			/* the calls the request log keeps, or NULL */
} SettleWork;

/* Partitions of llmgw.usage exist for rows started before this */
static TimestampTz partitions_until = 0;

/* The usage row of an attempt of a call */
static void
attempt_row(LlmgwCall *call, const LlmgwAttempt *a, bool without_tags, LlmgwUsageRow *row)
{
	llmgw_usage_row_init(row);
	row->request_id = call->request_id;
	row->attempt = a->number;
	row->started_at = a->started_at;
	row->finished_at = a->finished_at;
	row->role = call->role;
	row->model = call->model;
	row->provider = a->provider;
	row->upstream_model = a->upstream_model;
	row->status = a->out.status;
	row->error = a->out.error;
	row->http_status = (int32) a->out.http_status;
	memcpy(row->tokens, a->out.tokens, sizeof(row->tokens));
	row->estimated = a->out.estimated;
	row->fallback_from = a->fallback_from;
	row->key_id = call->key_id;
	row->team_id = call->team_id;
	row->job_id = call->job_id;
	row->async_id = call->async_id;
	if (a->route)
	{
		row->route_kind = a->route->kind;
		row->price_model = a->route->price_model;
		/* the price row the configuration found, if it is still in force */
		if (a->started_at < a->route->price_until)
		{
			row->price_id = a->route->price_id;
			row->price = a->route->price;
		}
	}
	row->tags = without_tags ? NULL : call->tags;
	row->call = call;
}

/* The row of a call answered from the cache: no provider, no tokens used */
static void
cache_hit_row(LlmgwCall *call, bool without_tags, LlmgwUsageRow *row)
{
	LlmgwAttempt current;

	llmgw_call_attempt(call, &current);
	current.provider = current.upstream_model = NULL;
	current.route = NULL;
	current.started_at = current.finished_at = GetCurrentTimestamp();
	for (int t = 0; t < LLMGW_NBUCKETS; t++)
		current.out.tokens[t] = t == LLMGW_TOKENS_CACHE_WRITE_1H ? LLMGW_TOKENS_UNKNOWN : 0;
	attempt_row(call, &current, without_tags, row);
	row->cache_hit = true;
	row->hit_cost = call->cache_hit_cost;
}

/*
 * Add the rows a call owes: its past attempts not yet recorded and, when it
 * is finished, its last attempt (if it reached a provider) or its cache hit;
 * a finished call goes to the request log too (if a rule selects it).
 */
static void
add_call_rows(LlmgwUsageBatch *batch, LlmgwReqlog *log, LlmgwCall *call, bool finished,
			  bool without_tags)
{
	dlist_iter	iter;
	LlmgwUsageRow row;

	dlist_foreach(iter, &call->past_attempts)
	{
		LlmgwAttempt *a = dlist_container(LlmgwAttempt, node, iter.cur);

		if (a->reached_provider && !a->recorded)
		{
			attempt_row(call, a, without_tags, &row);
			llmgw_usage_add(batch, &row);
		}
	}
	if (!finished)
		return;
	if (call->cache_hit)
		cache_hit_row(call, without_tags, &row);
	else if (call->reached_provider)
	{
		LlmgwAttempt current;

		llmgw_call_attempt(call, &current);
		attempt_row(call, &current, without_tags, &row);
	}
	else
	{
		llmgw_reqlog_add(log, call, NULL);
		return;
	}
	llmgw_usage_add(batch, &row);
	llmgw_reqlog_add(log, call, &row);
}

/* The result of an asynchronous call, written with its usage rows */
static void
async_answer(LlmgwCall *call)
{
	if (call->out.status == LLMGW_STATUS_INTERRUPTED)
		llmgw_async_requeue(call);
	else if (call->out.status == LLMGW_STATUS_OK)
		llmgw_async_finish(call, llmgw_call_answer_json(call), 0, NULL, NULL);
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

/* What a finished call writes besides its rows: cache entry, async answer */
static void
finish_effects(LlmgwCall *call)
{
	if (call->cache_enabled && !call->cache_hit && call->out.status == LLMGW_STATUS_OK)
	{
		char	   *answer = llmgw_call_answer(call);

		if (answer)
			llmgw_cache_store(call, answer);
	}
	if (call->async_id)
		async_answer(call);
}

/* Does a call have anything to write this round? */
static bool
has_work(LlmgwCall *call, bool finished)
{
	if (call->unrecorded > 0)
		return true;
	return finished && (call->reached_provider || call->cache_hit || call->async_id);
}

typedef void (*CallStep) (SettleWork *w, LlmgwCall *call, bool finished);

/* Run a step on each call of a list that has something to settle */
static void
each_call_with_work(SettleWork *w, dlist_head *list, bool finished, CallStep step)
{
	dlist_iter	iter;

	if (list == NULL)
		return;
	dlist_foreach(iter, list)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (has_work(call, finished))
			step(w, call, finished);
	}
}

/* Add a call's rows to the batch and write its effects */
static void
add_call_work(SettleWork *w, LlmgwCall *call, bool finished)
{
	add_call_rows(w->batch, w->log, call, finished, w->without_tags);
	if (finished)
		finish_effects(call);
}

static void
settle_work(void *arg)
{
	SettleWork *w = (SettleWork *) arg;

	llmgw_usage_clear(w->batch);
	llmgw_reqlog_clear(w->log);
	if (w->only)
	{
		add_call_rows(w->batch, w->log, w->only, w->only_finished, w->without_tags);
		if (w->only_finished)
			finish_effects(w->only);
	}
	else
	{
		each_call_with_work(w, w->finished, true, add_call_work);
		each_call_with_work(w, w->running, false, add_call_work);
		each_call_with_work(w, w->delayed, false, add_call_work);
	}
	(void) llmgw_usage_insert(w->batch, w->skip_recorded);
	llmgw_reqlog_write(w->log);
}

/* A call's outcome becomes "usage not recorded", with the reason */
static void
fail_unrecorded(LlmgwCall *call, const char *why)
{
	call->out.status = LLMGW_STATUS_ERROR;
	call->out.error = LLMGW_ERR_USAGE_NOT_RECORDED;
	call->out.provider_message = MemoryContextStrdup(call->cxt, why);
}

/*
 * Write one call in subtransactions of its own: as it is, else without its
 * tags, else not at all (its cost is then charged as an estimate).
 */
static void
settle_one(SettleWork *w, LlmgwCall *call, bool finished)
{
	char	   *why = NULL;
	char	   *why_again = NULL;

	w->only = call;
	w->only_finished = finished;
	w->without_tags = false;
	if (llmgw_in_subtransaction(settle_work, w, &why, NULL))
	{
		llmgw_usage_charge(w->batch);
		return;
	}
	w->without_tags = true;
	if (call->tags && llmgw_in_subtransaction(settle_work, w, &why_again, NULL))
	{
		llmgw_usage_charge(w->batch);
		ereport(WARNING,
				(errmsg("llmgw recorded the usage of a call to model \"%s\" without its tags: %s",
						call->model, why)));
		if (finished)
			fail_unrecorded(call, psprintf("its usage was recorded without llmgw.tags, which could not be stored: %s", why));
		return;
	}
	ereport(WARNING,
			(errmsg("llmgw could not record the usage of a call to model \"%s\": %s",
					call->model, why_again ? why_again : why)));
	llmgw_policy_charge_estimate(call);
	if (finished)
		fail_unrecorded(call, why_again ? why_again : why);
	else
		mark_call_recorded(call);	/* given up: it is charged, and logged */
}

static void
mark_call_recorded(LlmgwCall *call)
{
	dlist_iter	a;

	dlist_foreach(a, &call->past_attempts)
		dlist_container(LlmgwAttempt, node, a.cur)->recorded = true;
	call->unrecorded = 0;
}

/* Mark the past attempts of the calls of a list recorded */
static void
mark_recorded(dlist_head *list)
{
	dlist_iter	iter;

	if (list == NULL)
		return;
	dlist_foreach(iter, list)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (call->unrecorded > 0)
			mark_call_recorded(call);
	}
}

/* Create this month's and next month's partitions of llmgw.usage */
static void
create_partitions(void *arg)
{
	int			rc = SPI_execute("SELECT llmgw.create_usage_partitions(1),"
								 " (pg_catalog.date_trunc('month', pg_catalog.now() AT TIME ZONE 'UTC')"
								 "  + interval '2 months') AT TIME ZONE 'UTC'", false, 1);
	bool		isnull;

	if (rc == SPI_OK_SELECT && SPI_processed == 1)
		partitions_until = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0],
															 SPI_tuptable->tupdesc, 2, &isnull));
}

/*
 * Monthly partitions are made when a row first needs one, not ahead by a
 * timer: a database being restored by pg_restore gets no partition but its
 * own, so the two never collide.
 */
static void
ensure_partitions(void)
{
	if (GetCurrentTimestamp() < partitions_until)
		return;
	(void) llmgw_in_transaction("llmgw: creating usage partitions", create_partitions, NULL);
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

/* Clear the journal records of settled calls */
static void
end_journal(dlist_head *finished)
{
	dlist_iter	iter;

	dlist_foreach(iter, finished)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (call->journaled)
			llmgw_journal_end(call->slotno);
		call->journaled = false;
	}
}

/* Is there anything to write for these lists? */
static bool
any_work(dlist_head *list, bool finished)
{
	dlist_iter	iter;

	if (list == NULL)
		return false;
	dlist_foreach(iter, list)
	{
		if (has_work(dlist_container(LlmgwCall, node, iter.cur), finished))
			return true;
	}
	return false;
}

/*
 * Settle a round: the rows of the finished calls and of the past attempts
 * of calls still running or waiting to retry, in one transaction.  On a
 * failure outside the isolated writes every finished call that reached a
 * provider becomes LG007.
 */
static void
settle(dlist_head *finished, dlist_head *running, dlist_head *delayed, bool recovered)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	SettleWork	w;

	if (!any_work(finished, true) && !any_work(running, false) && !any_work(delayed, false))
	{
		end_journal(finished);
		finish_all(finished);
		return;
	}
	ensure_partitions();
	if (!recovered)
		llmgw_reqlog_prepare(finished);

	memset(&w, 0, sizeof(w));
	w.finished = finished;
	w.running = running;
	w.delayed = delayed;
	w.skip_recorded = recovered;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PG_TRY();
	{
		char	   *why = NULL;

		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "llmgw: recording usage");
		w.batch = llmgw_usage_batch();
		/* calls recovered from a dead worker may have their rows already */
		w.log = recovered ? NULL : llmgw_reqlog_batch();
		if (llmgw_in_subtransaction(settle_work, &w, &why, NULL))
			llmgw_usage_charge(w.batch);
		else
		{
			ereport(WARNING,
					(errmsg("llmgw could not record a round of usage rows at once, recording them call by call: %s",
							why)));
			each_call_with_work(&w, finished, true, settle_one);
			each_call_with_work(&w, running, false, settle_one);
			each_call_with_work(&w, delayed, false, settle_one);
		}
		llmgw_policy_alerts();
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		mark_recorded(running);
		mark_recorded(delayed);
		end_journal(finished);
	}
	PG_CATCH();
	{
		ErrorData  *edata;
		dlist_iter	iter;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		llmgw_policy_alerts_discard();
		ereport(WARNING,
				(errmsg("llmgw could not record usage: %s", edata->message)));
		dlist_foreach(iter, finished)
		{
			LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

			if (has_work(call, true) && (call->reached_provider || call->unrecorded > 0))
				fail_unrecorded(call, edata->message);
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	finish_all(finished);
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* Settle a worker round (see settle) */
void
llmgw_settle(dlist_head *finished, dlist_head *running, dlist_head *delayed)
{
	settle(finished, running, delayed, false);
}

/* Settle calls recovered from a dead worker: they may already have rows */
void
llmgw_settle_recovered(dlist_head *finished)
{
	settle(finished, NULL, NULL, true);
}

/* The interrupted row of a call a dead server life had in flight */
static void
entry_row(const LlmgwJournalEntry *e, LlmgwUsageRow *row)
{
	llmgw_usage_row_init(row);
	row->request_id = e->request_id;
	row->attempt = e->attempt;
	row->started_at = e->started_at;
	row->role = e->role;
	row->model = e->model;
	row->provider = e->provider;
	row->upstream_model = e->upstream_model;
	row->status = LLMGW_STATUS_INTERRUPTED;
	row->error = LLMGW_ERR_INTERRUPTED;
	row->tokens[LLMGW_TOKENS_INPUT] = e->input_estimate;
	row->tokens[LLMGW_TOKENS_OUTPUT] = e->output_estimate;
	row->estimated = true;
	row->key_id = e->key_id;
	row->team_id = e->team_id;
	row->job_id = e->job_id;
	row->async_id = e->async_id;
	row->route_kind = e->route_kind;
	row->price_model = e->price_model[0] ? e->price_model : NULL;
	row->tags = e->tags[0] ? e->tags : NULL;
}

/* Record the calls of a dead life's journal file (in a transaction) */
static void
record_dead_file(void *arg)
{
	const char *path = (const char *) arg;
	LlmgwJournalEntry *entries;
	int			n = llmgw_journal_read_file(path, &entries);
	LlmgwUsageBatch *batch = llmgw_usage_batch();
	uint64		recorded;

	for (int i = 0; i < n; i++)
	{
		LlmgwUsageRow row;

		entry_row(&entries[i], &row);
		llmgw_usage_add(batch, &row);
	}
	recorded = llmgw_usage_insert(batch, true);
	if (recorded > 0)
		ereport(LOG,
				(errmsg("llmgw recorded %llu calls interrupted by a server restart as \"interrupted\"",
						(unsigned long long) recorded)));
}

/*
 * Worker 0, at start: record the calls that dead server lives had in
 * flight, then reload the budget ledger so that it counts them.  Returns
 * false when some journal could not be recorded (tried again later).
 */
bool
llmgw_settle_dead_lives(void)
{
	char	  **paths;
	int			n = llmgw_journal_dead_files(&paths);
	bool		all = true;
	bool		any = false;

	if (n > 0)
		ensure_partitions();
	for (int i = 0; i < n; i++)
	{
		if (!llmgw_in_transaction("llmgw: recording interrupted calls", record_dead_file,
								  paths[i]))
		{
			all = false;
			continue;
		}
		if (unlink(paths[i]) != 0)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("llmgw could not remove \"%s\": %m", paths[i])));
		any = true;
	}
	if (any)
		llmgw_budget_reload();
	return all;
}
