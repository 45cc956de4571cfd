/*-------------------------------------------------------------------------
 *
 * share.h
 *		Fair share of the gateway: no single role, key or team holds more
 *		than llmgw.max_share percent of the request slots, nor of the calls
 *		the workers run at once.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_SHARE_H
#define LLMGW_SHARE_H

#include "port/atomics.h"

/* Who a share belongs to */
typedef enum LlmgwShareKind
{
	LLMGW_SHARE_ROLE = 1,
	LLMGW_SHARE_KEY,
	LLMGW_SHARE_TEAM,
	LLMGW_SHARE_ASYNC			/* every asynchronous call together */
} LlmgwShareKind;

#define LLMGW_SLOT_SHARES 2		/* the shares a request slot counts against */

/* One holder of slots and running calls, in shared memory */
typedef struct LlmgwShare
{
	uint64		key;			/* hash key: kind and id */
	int32		slots;			/* request slots held (LlmgwShares lock) */
	pg_atomic_uint32 running;	/* calls a worker runs now */
} LlmgwShare;

extern int	llmgw_max_share;
extern bool llmgw_share_wait;

extern Size llmgw_share_shmem_size(void);
extern void llmgw_share_shmem_init(void);
extern uint64 llmgw_share_key(LlmgwShareKind kind, const void *id, size_t len);
extern bool llmgw_share_acquire(const uint64 *keys, int n, LlmgwShare **shares);
extern void llmgw_share_release(LlmgwShare **shares, int n);
extern bool llmgw_share_may_run(LlmgwShare *const *shares, int n);
extern void llmgw_share_run(LlmgwShare **shares, int n, int delta);
extern void llmgw_share_wait_for_room(void);
extern void llmgw_share_wait_stats(uint32 *waiting, uint64 *waits, uint64 *wait_us);
extern int	llmgw_share_room(uint64 key);
extern int	llmgw_share_slot_cap(void);
extern int	llmgw_share_running_cap(void);

#endif							/* LLMGW_SHARE_H */
