/*-------------------------------------------------------------------------
 *
 * ratelimit.c
 *		Token buckets in shared memory.
 *
 * Each limited scope has a bucket of requests and one of tokens; both
 * hold at most a minute's allowance and refill continuously.  A call takes
 * one request and its estimated tokens from every bucket it is subject to,
 * all or nothing, under one lock.  Once the real token count is known the
 * difference is given back or taken (a token bucket may go into debt, which
 * delays the next calls rather than failing the finished one).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"

#include "llmgw.h"
#include "ratelimit.h"

int			llmgw_max_rate_limits = 4096;

/* Who a bucket belongs to (hash key) */
typedef struct BucketKey
{
	int32		scope;			/* LlmgwLimitScope */
	int64		id;
} BucketKey;

typedef struct Bucket
{
	BucketKey	key;
	double		requests;		/* available now */
	double		tokens;
	TimestampTz updated;
} Bucket;

typedef struct Buckets
{
	LWLock	   *lock;			/* the buckets and every field of them */
} Buckets;

static Buckets *buckets = NULL;
static HTAB *table = NULL;

Size
llmgw_ratelimit_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(Buckets)),
					hash_estimate_size(llmgw_max_rate_limits, sizeof(Bucket)));
}

/* Called from the shmem startup hook, with AddinShmemInitLock held */
void
llmgw_ratelimit_shmem_init(void)
{
	bool		found;

	buckets = ShmemInitStruct("llmgw rate limits", sizeof(Buckets), &found);
	if (!found)
		buckets->lock = llmgw_lock(LLMGW_LOCK_RATE_LIMITS);
	table = llmgw_shmem_hash("llmgw rate limit buckets", llmgw_max_rate_limits,
							 sizeof(BucketKey), sizeof(Bucket));
}

/* The bucket of a limit, refilled up to now; NULL when the table is full */
static Bucket *
bucket_for(const LlmgwLimit *l, TimestampTz now)
{
	BucketKey	key;
	Bucket	   *b;
	bool		found;
	double		elapsed_min;

	memset(&key, 0, sizeof(key));	/* the padding is part of the key */
	key.scope = (int32) l->scope;
	key.id = l->id;
	b = hash_search(table, &key, HASH_ENTER_NULL, &found);
	if (b == NULL)
		return NULL;
	if (!found)
	{
		b->requests = l->rpm;
		b->tokens = (double) l->tpm;
		b->updated = now;
		return b;
	}
	elapsed_min = (double) (now - b->updated) / (60.0 * USECS_PER_SEC);
	if (elapsed_min > 0)
	{
		b->requests = Min(b->requests + elapsed_min * l->rpm, (double) l->rpm);
		b->tokens = Min(b->tokens + elapsed_min * l->tpm, (double) l->tpm);
		b->updated = now;
	}
	/* a lowered limit takes effect at once */
	b->requests = Min(b->requests, (double) l->rpm);
	b->tokens = Min(b->tokens, (double) l->tpm);
	return b;
}

/*
 * Take one request and tokens from the buckets of every limit, or from
 * none.  On refusal, says which limit and when a call would pass.
 */
bool
llmgw_ratelimit_take(const LlmgwLimit *limits, int n, int64 tokens,
					 LlmgwLimitRefusal *refusal)
{
	TimestampTz now = GetCurrentTimestamp();
	Bucket	   *bs[LLMGW_MAX_CALL_LIMITS];

	if (n == 0)
		return true;
	Assert(n <= LLMGW_MAX_CALL_LIMITS);
	LWLockAcquire(buckets->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		const LlmgwLimit *l = &limits[i];

		bs[i] = bucket_for(l, now);
		if (bs[i] == NULL)
			continue;			/* table full: not enforced, see docs */
		if (l->rpm > 0 && bs[i]->requests < 1.0)
		{
			refusal->index = i;
			refusal->tokens = false;
			refusal->retry_after_s = (1.0 - bs[i]->requests) * 60.0 / l->rpm;
			LWLockRelease(buckets->lock);
			return false;
		}
		/* a call may take the bucket into debt, but not start in debt */
		if (l->tpm > 0 && bs[i]->tokens <= 0)
		{
			refusal->index = i;
			refusal->tokens = true;
			refusal->retry_after_s = (1.0 - bs[i]->tokens) * 60.0 / (double) l->tpm;
			LWLockRelease(buckets->lock);
			return false;
		}
	}
	for (int i = 0; i < n; i++)
	{
		if (bs[i] == NULL)
			continue;
		if (limits[i].rpm > 0)
			bs[i]->requests -= 1.0;
		if (limits[i].tpm > 0)
			bs[i]->tokens -= (double) tokens;
	}
	LWLockRelease(buckets->lock);
	return true;
}

/* Take (positive) or give back (negative) tokens after the fact */
void
llmgw_ratelimit_adjust(const LlmgwLimit *limits, int n, int64 tokens)
{
	TimestampTz now = GetCurrentTimestamp();

	if (n == 0 || tokens == 0)
		return;
	LWLockAcquire(buckets->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		Bucket	   *b;

		if (limits[i].tpm <= 0)
			continue;
		b = bucket_for(&limits[i], now);
		if (b != NULL)
			b->tokens = Min(b->tokens - (double) tokens, (double) limits[i].tpm);
	}
	LWLockRelease(buckets->lock);
}
