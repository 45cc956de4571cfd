/*-------------------------------------------------------------------------
 *
 * cost.h
 *		The exact cost of token counts at a price row (llmgw.cost).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_COST_H
#define LLMGW_COST_H

#include "postgres.h"

#include "call.h"

/*
 * The cost of tokens (by LlmgwBucket, LLMGW_TOKENS_UNKNOWN: not reported)
 * at a price row (a llmgw.prices composite datum), as llmgw.cost computes
 * it; false when it is NULL.  *currency is the price's currency.
 */
extern bool llmgw_cost(Datum price, const int64 *tokens, Datum *cost, char **currency);

/* A cost in money units, rounded up (budget.h) */
extern int64 llmgw_cost_units(Datum cost);

#endif							/* LLMGW_COST_H */
