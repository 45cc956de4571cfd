/*-------------------------------------------------------------------------
 *
 * async.h
 *		Asynchronous calls (llmgw.submit, llmgw.result, llmgw.wait).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_ASYNC_H
#define LLMGW_ASYNC_H

#include "call.h"

extern int	llmgw_async_lease;

#define LLMGW_ASYNC_POLL_MS 5000

extern void llmgw_async_signal_at_commit(void);
extern void llmgw_async_dispatch(void);
extern void llmgw_async_requeue(LlmgwCall *call);
extern void llmgw_async_finish(LlmgwCall *call, const char *answer, int sqlstate,
							   const char *message, const char *detail);

#endif							/* LLMGW_ASYNC_H */
