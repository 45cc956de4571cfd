/*-------------------------------------------------------------------------
 *
 * queue.h
 *		The shared-memory request slots: callers submit requests and wait
 *		for results; workers take requests and publish results.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_QUEUE_H
#define LLMGW_QUEUE_H

#include "llmgw.h"

#define LLMGW_QUEUE_FULL (-1)		/* every slot is in use */
#define LLMGW_SHARE_FULL (-2)		/* the caller's share of the slots is used up */

extern dsa_area *llmgw_dsa(void);
extern int	llmgw_slot_submit(dsa_pointer request);
extern int	llmgw_slot_try_submit(dsa_pointer request);
extern int	llmgw_slot_submit_detached(dsa_pointer request, bool cancelled);
extern dsa_pointer llmgw_request_create(const LlmgwRequest *header, const char *role,
										const char *model, const char *body, size_t body_len,
										const char *tags);
extern void llmgw_new_request_id(uint8 *id);
extern void llmgw_slot_refused(int why);
extern LlmgwResult *llmgw_slot_wait(int slotno);
extern void llmgw_slots_wait_any(const int *slotnos, int n);
extern bool llmgw_slot_done(int slotno);
extern LlmgwResult *llmgw_slot_result(int slotno);
extern void llmgw_slot_abandon(int slotno);
extern void llmgw_slots_cancel_jobs(const int64 *jobs, int njobs);
extern int	llmgw_slots_async_calls(int64 *ids, int max);
extern void llmgw_queue_counts(int *workers, int *queued, int *running, uint64 *total);
extern int	llmgw_queue_take(int worker, uint64 generation, int *slotnos, int max);
extern bool llmgw_queue_worker_room(int worker, int room);
extern int	llmgw_slot_claim(dsa_pointer request, int worker, uint64 generation);
extern void llmgw_slot_publish(int slotno, dsa_pointer result);
extern bool llmgw_slot_cancelled(int slotno);
extern bool llmgw_slot_awaited(int slotno);
extern int	llmgw_slots_orphaned(int worker, uint64 generation, int *slotnos, int max);
extern dsa_pointer llmgw_result_create(const LlmgwResult *header, const char *text,
									   const char *message, const char *detail,
									   const char *hint);
extern Size llmgw_shmem_size(void);
extern void llmgw_shmem_init(void *base, bool found);

#endif							/* LLMGW_QUEUE_H */
