/*-------------------------------------------------------------------------
 *
 * route.h
 *		The deployments a call tries, and the fallback from one to the next.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_ROUTE_H
#define LLMGW_ROUTE_H

#include "call.h"
#include "config.h"

extern void llmgw_route_copy(LlmgwRoute *dst, const LlmgwRoute *src);
extern void llmgw_route_order(LlmgwCall *call, const LlmgwModelRoutes *model);
extern bool llmgw_route_next(LlmgwCall *call);

#endif							/* LLMGW_ROUTE_H */
