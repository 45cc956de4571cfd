/*-------------------------------------------------------------------------
 *
 * ratelimit.h
 *		Requests-per-minute and tokens-per-minute limits as token buckets
 *		in shared memory, per key, team, model and deployment.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_RATELIMIT_H
#define LLMGW_RATELIMIT_H

#define LLMGW_MAX_CALL_LIMITS 4

typedef enum LlmgwLimitScope
{
	LLMGW_LIMIT_KEY = 1,
	LLMGW_LIMIT_TEAM,
	LLMGW_LIMIT_MODEL,
	LLMGW_LIMIT_DEPLOYMENT
} LlmgwLimitScope;

/* One limit a call is subject to */
typedef struct LlmgwLimit
{
	LlmgwLimitScope scope;
	int64		id;				/* key lineage, team id, model hash, deployment id */
	int32		rpm;			/* 0: none */
	int64		tpm;			/* 0: none */
} LlmgwLimit;

/* Which limit refused, and when to try again */
typedef struct LlmgwLimitRefusal
{
	int			index;
	bool		tokens;			/* the TPM limit, not the RPM one */
	double		retry_after_s;
} LlmgwLimitRefusal;

extern int	llmgw_max_rate_limits;

extern Size llmgw_ratelimit_shmem_size(void);
extern void llmgw_ratelimit_shmem_init(void);
extern bool llmgw_ratelimit_take(const LlmgwLimit *limits, int n, int64 tokens,
								 LlmgwLimitRefusal *refusal);
extern void llmgw_ratelimit_adjust(const LlmgwLimit *limits, int n, int64 tokens);

#endif							/* LLMGW_RATELIMIT_H */
