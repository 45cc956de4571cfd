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
	Datum		price;			/* that row (llmgw.prices), or 0: read it in SQL */
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

/*
 * The columns of usage rows written straight into llmgw.usage (direct.c),
 * by the workers' rounds and the batch ingest; the others get their
 * defaults.  The token columns are in LlmgwBucket order.
 */
typedef enum LlmgwUsageColumn
{
	UC_REQUEST_ID,
	UC_ATTEMPT,
	UC_STARTED_AT,
	UC_ROLE,
	UC_KEY_ID,
	UC_TEAM_ID,
	UC_MODEL,
	UC_PROVIDER,
	UC_UPSTREAM_MODEL,
	UC_STATUS,
	UC_ERROR_CLASS,
	UC_HTTP_STATUS,
	UC_LATENCY,
	UC_TOKENS,					/* LLMGW_NBUCKETS columns */
	UC_USAGE_SOURCE = UC_TOKENS + LLMGW_NBUCKETS,
	UC_PRICE_ID,
	UC_COST,
	UC_CURRENCY,
	UC_UNPRICED,
	UC_CACHE_HIT,
	UC_FALLBACK_FROM,
	UC_TAGS,
	UC_JOB_ID,
	UC_ASYNC_ID,
	UC_BATCH_ID,
	UC_NCOLUMNS
} LlmgwUsageColumn;

/* n rows, column by column: values[column][row], nulls[column][row] */
typedef struct LlmgwUsageColumns
{
	int			n;
	Datum	   *values[UC_NCOLUMNS];
	bool	   *nulls[UC_NCOLUMNS];
} LlmgwUsageColumns;

extern void llmgw_usage_columns(LlmgwUsageColumns *c, int n);
extern bool llmgw_usage_write(const LlmgwUsageColumns *c);
extern void llmgw_usage_roll_up(const LlmgwUsageColumns *c);

#endif							/* LLMGW_USAGE_H */
