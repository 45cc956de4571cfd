/*-------------------------------------------------------------------------
 *
 * cache.h
 *		Exact-match response cache.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_CACHE_H
#define LLMGW_CACHE_H

#include "call.h"

struct LlmgwModelRoutes;

extern int	llmgw_cache_max_size;

extern bool llmgw_cache_prepare(LlmgwCall *call, const struct LlmgwModelRoutes *model);
extern void llmgw_cache_lookup(dlist_head *calls);
extern void llmgw_cache_store(LlmgwCall *call, const char *answer);

#endif							/* LLMGW_CACHE_H */
