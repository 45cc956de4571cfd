/*-------------------------------------------------------------------------
 *
 * settle.h
 *		Settling calls: their usage rows, cache entries, asynchronous
 *		answers and budget alerts, written in one transaction per worker
 *		round before any caller is woken.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_SETTLE_H
#define LLMGW_SETTLE_H

#include "call.h"

extern void llmgw_settle(dlist_head *finished, dlist_head *running, dlist_head *delayed);
extern void llmgw_settle_recovered(dlist_head *finished);
extern bool llmgw_settle_dead_lives(void);

#endif							/* LLMGW_SETTLE_H */
