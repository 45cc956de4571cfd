/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		What shared memory tells the Prometheus metrics (llmgw.metrics()):
 *		the queue, the workers and their restarts, the fair share's waits,
 *		and the calls refused before any provider was called.
 *
 * A refused call leaves no usage row, so refusals are counted here, by
 * reason and scope, in atomics bumped where policy.c and queue.c refuse.
 * Everything here lives as long as shared memory: a new server life (a
 * start, a crash restart) starts every counter from zero again, which
 * Prometheus reads as a counter reset.  What the usage rows say (calls,
 * tokens, cost) is counted in llmgw.usage_totals instead, which lives as
 * long as the data.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "port/atomics.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "llmgw.h"
#include "metrics.h"
#include "otel.h"
#include "queue.h"
#include "ratelimit.h"
#include "share.h"

typedef struct MetricsState
{
	pg_atomic_uint64 refusals[LLMGW_NREFUSALS][LLMGW_NSCOPES];
} MetricsState;

static MetricsState *state = NULL;

static const char *const reason_names[LLMGW_NREFUSALS] = {
	[LLMGW_REFUSED_BUDGET] = "budget",
	[LLMGW_REFUSED_RATE_LIMIT] = "rate_limit",
	[LLMGW_REFUSED_INVALID_KEY] = "invalid_key",
	[LLMGW_REFUSED_NOT_ALLOWED] = "not_allowed",
	[LLMGW_REFUSED_FAIR_SHARE] = "fair_share",
	[LLMGW_REFUSED_QUEUE_FULL] = "queue_full",
};

static const char *const scope_names[LLMGW_NSCOPES] = {
	[LLMGW_SCOPE_KEY] = "key",
	[LLMGW_SCOPE_TEAM] = "team",
	[LLMGW_SCOPE_ROLE] = "role",
	[LLMGW_SCOPE_MODEL] = "model",
	[LLMGW_SCOPE_DEPLOYMENT] = "deployment",
	[LLMGW_SCOPE_GLOBAL] = "global",
	[LLMGW_SCOPE_SHARE] = "share",
	[LLMGW_SCOPE_QUEUE] = "queue",
};

/*
 * The scopes each reason can have: these series are always there, zero
 * until a refusal, so that a rate() over them starts at the first scrape
 */
static const bool reason_scopes[LLMGW_NREFUSALS][LLMGW_NSCOPES] = {
	[LLMGW_REFUSED_BUDGET] = {[LLMGW_SCOPE_KEY] = true,[LLMGW_SCOPE_TEAM] = true,
	[LLMGW_SCOPE_ROLE] = true,[LLMGW_SCOPE_MODEL] = true,[LLMGW_SCOPE_GLOBAL] = true},
	[LLMGW_REFUSED_RATE_LIMIT] = {[LLMGW_SCOPE_KEY] = true,[LLMGW_SCOPE_TEAM] = true,
	[LLMGW_SCOPE_MODEL] = true,[LLMGW_SCOPE_DEPLOYMENT] = true},
	[LLMGW_REFUSED_INVALID_KEY] = {[LLMGW_SCOPE_KEY] = true},
	[LLMGW_REFUSED_NOT_ALLOWED] = {[LLMGW_SCOPE_KEY] = true,[LLMGW_SCOPE_TEAM] = true},
	[LLMGW_REFUSED_FAIR_SHARE] = {[LLMGW_SCOPE_SHARE] = true},
	[LLMGW_REFUSED_QUEUE_FULL] = {[LLMGW_SCOPE_QUEUE] = true},
};

Size
llmgw_metrics_shmem_size(void)
{
	return MAXALIGN(sizeof(MetricsState));
}

/* Called from the shmem startup hook, with AddinShmemInitLock held */
void
llmgw_metrics_shmem_init(void)
{
	bool		found;

	state = ShmemInitStruct("llmgw metrics", sizeof(MetricsState), &found);
	if (!found)
		for (int r = 0; r < LLMGW_NREFUSALS; r++)
			for (int s = 0; s < LLMGW_NSCOPES; s++)
				pg_atomic_init_u64(&state->refusals[r][s], 0);
}

/* Count a call refused before any provider was called */
void
llmgw_metrics_refused(LlmgwRefusal reason, LlmgwRefusalScope scope)
{
	if (state != NULL)
		pg_atomic_fetch_add_u64(&state->refusals[reason][scope], 1);
}

/* Count a refusal by a rate limit (an LlmgwLimitScope) */
void
llmgw_metrics_rate_refused(int limit_scope)
{
	llmgw_metrics_refused(LLMGW_REFUSED_RATE_LIMIT,
						  limit_scope == LLMGW_LIMIT_KEY ? LLMGW_SCOPE_KEY :
						  limit_scope == LLMGW_LIMIT_TEAM ? LLMGW_SCOPE_TEAM :
						  limit_scope == LLMGW_LIMIT_MODEL ? LLMGW_SCOPE_MODEL :
						  LLMGW_SCOPE_DEPLOYMENT);
}

/* Count a refusal by a hard budget (an LlmgwBudgetScope) */
void
llmgw_metrics_budget_refused(int budget_scope)
{
	llmgw_metrics_refused(LLMGW_REFUSED_BUDGET,
						  budget_scope == LLMGW_BUDGET_KEY ? LLMGW_SCOPE_KEY :
						  budget_scope == LLMGW_BUDGET_TEAM ? LLMGW_SCOPE_TEAM :
						  budget_scope == LLMGW_BUDGET_ROLE ? LLMGW_SCOPE_ROLE :
						  budget_scope == LLMGW_BUDGET_MODEL ? LLMGW_SCOPE_MODEL :
						  LLMGW_SCOPE_GLOBAL);
}

/* One row of llmgw.gateway_counters(): labels as {name, value, ...} */
static void
put(ReturnSetInfo *rsinfo, const char *metric, double value, int nlabels, ...)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};
	Datum		labels[4];
	va_list		ap;

	Assert(nlabels <= 2);
	va_start(ap, nlabels);
	for (int i = 0; i < nlabels * 2; i++)
		labels[i] = CStringGetTextDatum(va_arg(ap, const char *));
	va_end(ap);
	values[0] = CStringGetTextDatum(metric);
	values[1] = PointerGetDatum(construct_array(labels, nlabels * 2, TEXTOID, -1, false,
												TYPALIGN_INT));
	values[2] = Float8GetDatum(value);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

PG_FUNCTION_INFO_V1(llmgw_gateway_counters);

/*
 * llmgw.gateway_counters(): one row per sample of the metrics kept in
 * shared memory, since this server life began
 */
Datum
llmgw_gateway_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			workers;
	int			queued;
	int			running;
	uint64		total;
	uint64		generations[LLMGW_MAX_WORKERS];
	uint32		waiting;
	uint64		waits;
	uint64		wait_us;
	uint64		spans_exported;
	uint64		spans_dropped;
	uint64		spans_failed;
	TimestampTz life;

	InitMaterializedSRF(fcinfo, 0);
	llmgw_queue_counts(&workers, &queued, &running, &total);
	SpinLockAcquire(&llmgw_shared->mutex);
	for (int i = 0; i < llmgw_workers; i++)
		generations[i] = llmgw_shared->workers[i].generation;
	life = llmgw_shared->life;
	SpinLockRelease(&llmgw_shared->mutex);
	llmgw_share_wait_stats(&waiting, &waits, &wait_us);

	put(rsinfo, "llmgw_queue_depth", queued, 0);
	put(rsinfo, "llmgw_calls_in_flight", running, 0);
	put(rsinfo, "llmgw_queue_size", llmgw_queue_size, 0);
	put(rsinfo, "llmgw_requests_total", (double) total, 0);
	put(rsinfo, "llmgw_workers_running", workers, 0);
	put(rsinfo, "llmgw_workers_configured", llmgw_workers, 0);
	put(rsinfo, "llmgw_life_start_time_seconds",
		(double) life / USECS_PER_SEC +
		(double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY, 0);
	for (int i = 0; i < llmgw_workers; i++)
	{
		char		worker[16];

		snprintf(worker, sizeof(worker), "%d", i);
		/* the generation counts the starts of a worker in this life */
		put(rsinfo, "llmgw_worker_restarts_total",
			generations[i] > 1 ? (double) (generations[i] - 1) : 0, 1, "worker", worker);
	}
	put(rsinfo, "llmgw_fair_share_waiting", waiting, 0);
	put(rsinfo, "llmgw_fair_share_waits_total", (double) waits, 0);
	put(rsinfo, "llmgw_fair_share_wait_seconds_total", (double) wait_us / 1e6, 0);
	for (int r = 0; r < LLMGW_NREFUSALS; r++)
		for (int s = 0; s < LLMGW_NSCOPES; s++)
			if (reason_scopes[r][s])
				put(rsinfo, "llmgw_refusals_total",
					(double) pg_atomic_read_u64(&state->refusals[r][s]), 2,
					"reason", reason_names[r], "scope", scope_names[s]);
	llmgw_otel_span_counts(&spans_exported, &spans_dropped, &spans_failed);
	put(rsinfo, "llmgw_otel_spans_exported_total", (double) spans_exported, 0);
	put(rsinfo, "llmgw_otel_spans_dropped_total", (double) spans_dropped, 0);
	put(rsinfo, "llmgw_otel_spans_failed_total", (double) spans_failed, 0);
	return (Datum) 0;
}
