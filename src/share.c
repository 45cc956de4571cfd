/*-------------------------------------------------------------------------
 *
 * share.c
 *		Fair share of the gateway.
 *
 * A caller's request slot counts against the share of its role and, when
 * it presents one, of its virtual key (asynchronous calls count against one
 * share of their own).  A share may hold at most llmgw.max_share percent of
 * llmgw.queue_size slots: beyond it a caller waits for room (or fails with
 * LG012 when llmgw.share_wait is off) while other roles get slots.  The
 * workers take queued calls in order but skip those whose share already
 * runs llmgw.max_share percent of what all workers can run at once
 * (llmgw.workers * llmgw.max_connections), and once a call is admitted they
 * hold its team to the same share; so a flood from one role, key or team
 * never keeps another's calls waiting behind it.
 *
 * Shares live in a shared hash table; an entry lives while a slot or a
 * running call holds it.  Slot counts change under the table's lock, the
 * running counts are atomics (workers test and bump them while holding the
 * queue's spinlock, which serialises them).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "storage/condition_variable.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "llmgw.h"
#include "share.h"

int			llmgw_max_share = 50;
bool		llmgw_share_wait = true;

typedef struct ShareState
{
	LWLock	   *lock;
	ConditionVariable room;		/* a slot of some share was given back */
	pg_atomic_uint32 waiters;
	pg_atomic_uint64 waits;		/* sleeps of callers for room (metrics) */
	pg_atomic_uint64 wait_us;	/* and their time, in microseconds */
} ShareState;

static ShareState *state = NULL;
static HTAB *shares = NULL;

/* At most this many shares: two per slot, and the teams of running calls */
static long
max_shares(void)
{
	return (long) llmgw_queue_size * 2 + 1024;
}

Size
llmgw_share_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(ShareState)),
					hash_estimate_size(max_shares(), sizeof(LlmgwShare)));
}

/* Called from the shmem startup hook, with AddinShmemInitLock held */
void
llmgw_share_shmem_init(void)
{
	bool		found;

	state = ShmemInitStruct("llmgw shares", sizeof(ShareState), &found);
	if (!found)
	{
		state->lock = llmgw_lock(LLMGW_LOCK_SHARES);
		ConditionVariableInit(&state->room);
		pg_atomic_init_u32(&state->waiters, 0);
		pg_atomic_init_u64(&state->waits, 0);
		pg_atomic_init_u64(&state->wait_us, 0);
	}
	shares = llmgw_shmem_hash("llmgw share table", max_shares(), sizeof(uint64),
							  sizeof(LlmgwShare));
}

/* The hash key of a share (never 0) */
uint64
llmgw_share_key(LlmgwShareKind kind, const void *id, size_t len)
{
	uint64		h = hash_bytes_extended((const unsigned char *) id, (int) len, (uint64) kind);

	return h ? h : 1;
}

/* The most request slots one share may hold */
int
llmgw_share_slot_cap(void)
{
	return Max(1, (int) ((int64) llmgw_queue_size * llmgw_max_share / 100));
}

/* The most calls of one share the workers run at once */
int
llmgw_share_running_cap(void)
{
	return Max(1, (int) ((int64) llmgw_workers * llmgw_max_connections * llmgw_max_share / 100));
}

/* How many more slots a share may take now */
int
llmgw_share_room(uint64 key)
{
	LlmgwShare *s;
	int			held;

	LWLockAcquire(state->lock, LW_SHARED);
	s = hash_search(shares, &key, HASH_FIND, NULL);
	held = s ? s->slots : 0;
	LWLockRelease(state->lock);
	return Max(llmgw_share_slot_cap() - held, 0);
}

/* Drop a share nothing holds any more; lock held */
static void
forget_if_unused(LlmgwShare *s)
{
	if (s->slots <= 0 && pg_atomic_read_u32(&s->running) == 0)
		(void) hash_search(shares, &s->key, HASH_REMOVE, NULL);
}

/*
 * Take a slot on each of the shares keys[0..n) (all or none).  Returns false
 * when one of them holds its whole share already (or the table is full).
 */
bool
llmgw_share_acquire(const uint64 *keys, int n, LlmgwShare **out)
{
	int			cap = llmgw_share_slot_cap();
	int			got = 0;

	LWLockAcquire(state->lock, LW_EXCLUSIVE);
	for (; got < n; got++)
	{
		bool		found;
		LlmgwShare *s = hash_search(shares, &keys[got], HASH_ENTER_NULL, &found);

		if (s == NULL)
			break;
		if (!found)
		{
			s->slots = 0;
			pg_atomic_init_u32(&s->running, 0);
		}
		if (s->slots >= cap)
		{
			forget_if_unused(s);
			break;
		}
		s->slots++;
		out[got] = s;
	}
	if (got < n)
	{
		/* undo what was taken */
		while (--got >= 0)
		{
			out[got]->slots--;
			forget_if_unused(out[got]);
		}
		LWLockRelease(state->lock);
		return false;
	}
	LWLockRelease(state->lock);
	return true;
}

/* Give back the slots of shares (NULL entries are skipped) */
void
llmgw_share_release(LlmgwShare **out, int n)
{
	bool		any = false;

	LWLockAcquire(state->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		if (out[i] == NULL)
			continue;
		out[i]->slots--;
		forget_if_unused(out[i]);
		out[i] = NULL;
		any = true;
	}
	LWLockRelease(state->lock);
	if (any && pg_atomic_read_u32(&state->waiters) > 0)
		ConditionVariableBroadcast(&state->room);
}

/* May a worker run one more call of these shares? */
bool
llmgw_share_may_run(LlmgwShare *const *s, int n)
{
	uint32		cap = (uint32) llmgw_share_running_cap();

	for (int i = 0; i < n; i++)
		if (s[i] && pg_atomic_read_u32(&s[i]->running) >= cap)
			return false;
	return true;
}

/* A call of these shares starts (delta 1) or stops (delta -1) running */
void
llmgw_share_run(LlmgwShare **s, int n, int delta)
{
	for (int i = 0; i < n; i++)
	{
		if (s[i] == NULL)
			continue;
		if (delta > 0)
			pg_atomic_fetch_add_u32(&s[i]->running, 1);
		else
			pg_atomic_fetch_sub_u32(&s[i]->running, 1);
	}
}

/*
 * A caller whose share is full: sleep until some share gives a slot back
 * (or a second passes: a caller tries again anyway).  Each sleep and its
 * time are counted for the metrics, also when it is cut short.
 */
void
llmgw_share_wait_for_room(void)
{
	TimestampTz start = GetCurrentTimestamp();

	pg_atomic_fetch_add_u32(&state->waiters, 1);
	pg_atomic_fetch_add_u64(&state->waits, 1);
	PG_TRY();
	{
		(void) ConditionVariableTimedSleep(&state->room, 1000L, PG_WAIT_EXTENSION);
		ConditionVariableCancelSleep();
	}
	PG_FINALLY();
	{
		pg_atomic_fetch_sub_u32(&state->waiters, 1);
		pg_atomic_fetch_add_u64(&state->wait_us,
								(uint64) Max(GetCurrentTimestamp() - start, 0));
	}
	PG_END_TRY();
}

/* Callers sleeping for room now, their sleeps and time so far (metrics) */
void
llmgw_share_wait_stats(uint32 *waiting, uint64 *waits, uint64 *wait_us)
{
	*waiting = pg_atomic_read_u32(&state->waiters);
	*waits = pg_atomic_read_u64(&state->waits);
	*wait_us = pg_atomic_read_u64(&state->wait_us);
}
