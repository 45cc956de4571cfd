/*-------------------------------------------------------------------------
 *
 * usage.h
 *		Usage rows: one per provider attempt (or cache hit), priced exactly
 *		in the statement that writes them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_USAGE_H
#define LLMGW_USAGE_H

#include "call.h"

/* One row of llmgw.usage, before it is written */
typedef struct LlmgwUsageRow
{
	pg_uuid_t	request_id;
	int32		attempt;
	TimestampTz started_at;
	TimestampTz finished_at;	/* 0: latency unknown */
	const char *role;
	const char *model;
	const char *provider;
	const char *upstream_model;
	LlmgwStatus status;
	LlmgwErrorClass error;
	int32		http_status;	/* 0: none */
	int64		tokens[LLMGW_NBUCKETS]; /* LLMGW_TOKENS_UNKNOWN: not reported */
	bool		estimated;		/* the tokens are llmgw's estimate, not the provider's */
	const char *fallback_from;
	int64		key_id;			/* 0: none (likewise team, job, async) */
	int64		team_id;
	int64		job_id;
	int64		async_id;
	const char *route_kind;		/* to look the price up: provider kind */
	const char *price_model;	/* and the deployment's price_model */
	int64		price_id;		/* the price row known to apply; 0: none; -1: look up */
	const char *tags;			/* JSON object text, or NULL */
	bool		cache_hit;
	const char *hit_cost;		/* numeric text, for cache hits */
	LlmgwCall  *call;			/* whose budgets the cost is charged to, or NULL */
} LlmgwUsageRow;

typedef struct LlmgwUsageBatch LlmgwUsageBatch;

extern LlmgwUsageBatch *llmgw_usage_batch(void);
extern void llmgw_usage_row_init(LlmgwUsageRow *row);
extern void llmgw_usage_add(LlmgwUsageBatch *batch, const LlmgwUsageRow *row);
extern int	llmgw_usage_count(const LlmgwUsageBatch *batch);
extern void llmgw_usage_clear(LlmgwUsageBatch *batch);
extern uint64 llmgw_usage_insert(LlmgwUsageBatch *batch, bool skip_recorded);
extern void llmgw_usage_charge(LlmgwUsageBatch *batch);
extern const char *llmgw_usage_status_name(LlmgwStatus status);

#endif							/* LLMGW_USAGE_H */
