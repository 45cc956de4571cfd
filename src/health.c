/*-------------------------------------------------------------------------
 *
 * health.c
 *		Deployment health in shared memory.
 *
 * A deployment that fails llmgw.cooldown_failures times in a row with a
 * failure of its own (server error, overload, rate limit, timeout,
 * connection, auth, quota) cools down for llmgw.cooldown_time: the router
 * skips it while another deployment can serve.  When the time is over, one
 * call probes it; success puts it back, failure starts a new cooldown.
 *
 * Latencies go into a histogram of 64 buckets growing by 25% from 0.5 ms,
 * so percentiles are exact to within one bucket (25%); the Prometheus
 * metrics show every third bucket edge (llmgw.deployment_latency()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "llmgw.h"
#include "health.h"

int			llmgw_max_deployments = 1024;
int			llmgw_cooldown_failures = 3;
int			llmgw_cooldown_time = 30000;

#define NBUCKETS 64
#define BUCKET_BASE_MS 0.5
#define BUCKET_GROWTH 1.25

typedef struct Health
{
	int64		deployment_id;	/* hash key */
	int32		in_flight;
	int32		consecutive_failures;
	TimestampTz probe_started;	/* a probe call is in flight since, or 0 */
	TimestampTz cooldown_until; /* 0: not cooling down */
	int64		cooldowns;
	int64		successes;
	int64		failures;
	double		ewma_ms;		/* recent latency of successful calls */
	double		latency_sum_ms; /* of the calls in the histogram */
	int64		histogram[NBUCKETS];
} Health;

typedef struct HealthTable
{
	LWLock	   *lock;			/* the entries and every field of them */
} HealthTable;

static HealthTable *table = NULL;
static HTAB *entries = NULL;	/* Health by deployment_id */

Size
llmgw_health_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(HealthTable)),
					hash_estimate_size(llmgw_max_deployments, sizeof(Health)));
}

void
llmgw_health_shmem_init(void)
{
	bool		found;

	table = ShmemInitStruct("llmgw health", sizeof(HealthTable), &found);
	if (!found)
		table->lock = llmgw_lock(LLMGW_LOCK_HEALTH);
	entries = llmgw_shmem_hash("llmgw deployment health", llmgw_max_deployments,
							   sizeof(int64), sizeof(Health));
}

/* The entry of a deployment, created on first use; NULL when full.  Lock held. */
static Health *
entry(int64 id)
{
	bool		found;
	Health	   *e = hash_search(entries, &id, HASH_ENTER_NULL, &found);

	if (e && !found)
	{
		memset(e, 0, sizeof(*e));
		e->deployment_id = id;
	}
	return e;
}

/*
 * May the router send a call to this deployment now?  With claim, a call
 * that gets LLMGW_PROBE is the probe (no other call probes meanwhile,
 * unless the probe is older than a cooldown: it was lost).
 */
LlmgwAvailability
llmgw_health_available(int64 deployment_id, bool claim)
{
	LlmgwAvailability result = LLMGW_AVAILABLE;
	TimestampTz now = GetCurrentTimestamp();
	Health	   *e;

	LWLockAcquire(table->lock, LW_EXCLUSIVE);
	e = entry(deployment_id);
	if (e && e->cooldown_until != 0)
	{
		bool		probing = e->probe_started != 0 &&
			now < TimestampTzPlusMilliseconds(e->probe_started, llmgw_cooldown_time);

		if (now < e->cooldown_until || probing)
			result = LLMGW_COOLING_DOWN;
		else
		{
			result = LLMGW_PROBE;
			if (claim)
				e->probe_started = now;
		}
	}
	LWLockRelease(table->lock);
	return result;
}

void
llmgw_health_begin(int64 deployment_id)
{
	Health	   *e;

	LWLockAcquire(table->lock, LW_EXCLUSIVE);
	if ((e = entry(deployment_id)) != NULL)
		e->in_flight++;
	LWLockRelease(table->lock);
}

void
llmgw_health_end(int64 deployment_id)
{
	Health	   *e;

	LWLockAcquire(table->lock, LW_EXCLUSIVE);
	if ((e = entry(deployment_id)) != NULL && e->in_flight > 0)
		e->in_flight--;
	LWLockRelease(table->lock);
}

/* Record the outcome of an attempt that reached the deployment */
void
llmgw_health_record(int64 deployment_id, bool ok, LlmgwErrorClass error, double latency_ms)
{
	Health	   *e;
	bool		failed = !ok && llmgw_error_deployment_failure(error);

	LWLockAcquire(table->lock, LW_EXCLUSIVE);
	if ((e = entry(deployment_id)) == NULL)
	{
		LWLockRelease(table->lock);
		return;
	}
	e->probe_started = 0;
	if (failed)
	{
		e->failures++;
		e->consecutive_failures++;
		if (e->consecutive_failures >= llmgw_cooldown_failures && llmgw_cooldown_time > 0)
		{
			e->cooldown_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															llmgw_cooldown_time);
			e->cooldowns++;
		}
	}
	else
	{
		int			b = 0;

		if (ok)
			e->successes++;
		e->consecutive_failures = 0;
		e->cooldown_until = 0;
		if (ok && latency_ms >= 0)
		{
			if (latency_ms > BUCKET_BASE_MS)
				b = Min((int) ceil(log(latency_ms / BUCKET_BASE_MS) / log(BUCKET_GROWTH)),
						NBUCKETS - 1);
			e->histogram[b]++;
			e->latency_sum_ms += latency_ms;
			e->ewma_ms = e->ewma_ms == 0 ? latency_ms : 0.8 * e->ewma_ms + 0.2 * latency_ms;
		}
	}
	LWLockRelease(table->lock);
}

/* Calls in flight and recent latency of a deployment (for routing) */
void
llmgw_health_load(int64 deployment_id, int *in_flight, double *latency_ms)
{
	Health	   *e;

	*in_flight = 0;
	*latency_ms = 0;
	LWLockAcquire(table->lock, LW_SHARED);
	e = hash_search(entries, &deployment_id, HASH_FIND, NULL);
	if (e)
	{
		*in_flight = e->in_flight;
		*latency_ms = e->ewma_ms;
	}
	LWLockRelease(table->lock);
}

/* The latency below which a fraction p of the calls finished */
static double
percentile(const int64 *histogram, double p)
{
	int64		total = 0;
	int64		seen = 0;

	for (int b = 0; b < NBUCKETS; b++)
		total += histogram[b];
	if (total == 0)
		return -1;
	for (int b = 0; b < NBUCKETS; b++)
	{
		seen += histogram[b];
		if (seen >= p * total)
			return BUCKET_BASE_MS * pow(BUCKET_GROWTH, b);
	}
	return BUCKET_BASE_MS * pow(BUCKET_GROWTH, NBUCKETS - 1);
}

PG_FUNCTION_INFO_V1(llmgw_deployment_stats);

/* llmgw.deployment_stats(): one row per deployment seen since start */
Datum
llmgw_deployment_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Health	   *copy;
	int			n = 0;
	TimestampTz now = GetCurrentTimestamp();
	HASH_SEQ_STATUS seq;
	Health	   *shared;

	InitMaterializedSRF(fcinfo, 0);
	copy = palloc(sizeof(Health) * Max(llmgw_max_deployments, 1));
	LWLockAcquire(table->lock, LW_SHARED);
	hash_seq_init(&seq, entries);
	while ((shared = hash_seq_search(&seq)) != NULL)
		if (n < llmgw_max_deployments)
			copy[n++] = *shared;
	LWLockRelease(table->lock);

	for (int i = 0; i < n; i++)
	{
		Health	   *e = &copy[i];
		Datum		values[12];
		bool		nulls[12];
		double		p;

		memset(nulls, 0, sizeof(nulls));
		values[0] = Int64GetDatum(e->deployment_id);
		values[1] = CStringGetTextDatum(e->cooldown_until == 0 ? "healthy" :
										e->probe_started != 0 ? "probing" :
										now < e->cooldown_until ? "cooling_down" : "probe_due");
		values[2] = TimestampTzGetDatum(e->cooldown_until);
		nulls[2] = e->cooldown_until == 0;
		values[3] = Int32GetDatum(e->consecutive_failures);
		values[4] = Int32GetDatum(e->in_flight);
		values[5] = Int64GetDatum(e->successes);
		values[6] = Int64GetDatum(e->failures);
		values[7] = Int64GetDatum(e->cooldowns);
		for (int k = 0; k < 3; k++)
		{
			p = percentile(e->histogram, k == 0 ? 0.5 : k == 1 ? 0.95 : 0.99);
			values[8 + k] = Float8GetDatum(p);
			nulls[8 + k] = p < 0;
		}
		values[11] = Float8GetDatum(e->ewma_ms);
		nulls[11] = e->successes == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* The histogram's buckets shown as Prometheus buckets: every third edge */
#define LATENCY_EDGE_STEP 3

PG_FUNCTION_INFO_V1(llmgw_deployment_latency);

/*
 * llmgw.deployment_latency(): the latency histogram of each deployment
 * since the server started, as Prometheus wants it: upper bounds in
 * seconds (the edges of every third bucket, to 6 significant digits), the
 * calls at or below each (cumulative), their sum in seconds and count.
 * The last bucket also holds everything slower, so its edge is not shown.
 */
Datum
llmgw_deployment_latency(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Health	   *copy;
	int			n = 0;
	HASH_SEQ_STATUS seq;
	Health	   *shared;
	int			nedges = (NBUCKETS - 2) / LATENCY_EDGE_STEP + 1;
	Datum	   *edges = palloc(sizeof(Datum) * nedges);
	ArrayType  *le;

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nedges; i++)
	{
		char		buf[32];

		snprintf(buf, sizeof(buf), "%.6g",
				 BUCKET_BASE_MS * pow(BUCKET_GROWTH, i * LATENCY_EDGE_STEP) / 1000.0);
		edges[i] = Float8GetDatum(strtod(buf, NULL));
	}
	le = construct_array(edges, nedges, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
						 TYPALIGN_DOUBLE);

	copy = palloc(sizeof(Health) * Max(llmgw_max_deployments, 1));
	LWLockAcquire(table->lock, LW_SHARED);
	hash_seq_init(&seq, entries);
	while ((shared = hash_seq_search(&seq)) != NULL)
		if (n < llmgw_max_deployments)
			copy[n++] = *shared;
	LWLockRelease(table->lock);

	for (int i = 0; i < n; i++)
	{
		Health	   *e = &copy[i];
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};
		Datum	   *counts = palloc(sizeof(Datum) * nedges);
		int64		seen = 0;
		int			b = 0;

		for (int k = 0; k < nedges; k++)
		{
			for (; b <= k * LATENCY_EDGE_STEP; b++)
				seen += e->histogram[b];
			counts[k] = Int64GetDatum(seen);
		}
		for (; b < NBUCKETS; b++)
			seen += e->histogram[b];
		values[0] = Int64GetDatum(e->deployment_id);
		values[1] = PointerGetDatum(le);
		values[2] = PointerGetDatum(construct_array(counts, nedges, INT8OID, sizeof(int64),
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		values[3] = Float8GetDatum(e->latency_sum_ms / 1000.0);
		values[4] = Int64GetDatum(seen);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
