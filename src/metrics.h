/*-------------------------------------------------------------------------
 *
 * metrics.h
 *		Counters in shared memory for the Prometheus metrics: calls refused
 *		before any provider was called (they leave no usage row), by reason
 *		and scope.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_METRICS_H
#define LLMGW_METRICS_H

/* Why a call was refused (the reason label of llmgw_refusals_total) */
typedef enum LlmgwRefusal
{
	LLMGW_REFUSED_BUDGET,		/* a hard budget (LG010) */
	LLMGW_REFUSED_RATE_LIMIT,	/* a local rate limit (LG011), or a saturated deployment */
	LLMGW_REFUSED_INVALID_KEY,	/* unknown, revoked or expired virtual key (28000) */
	LLMGW_REFUSED_NOT_ALLOWED,	/* the key or team may not use the model (42501) */
	LLMGW_REFUSED_FAIR_SHARE,	/* a share used up, without waiting (LG012, HTTP 429) */
	LLMGW_REFUSED_QUEUE_FULL,	/* every request slot in use (53200, HTTP 503) */
	LLMGW_NREFUSALS
} LlmgwRefusal;

/* What refused it (the scope label) */
typedef enum LlmgwRefusalScope
{
	LLMGW_SCOPE_KEY,
	LLMGW_SCOPE_TEAM,
	LLMGW_SCOPE_ROLE,
	LLMGW_SCOPE_MODEL,
	LLMGW_SCOPE_DEPLOYMENT,
	LLMGW_SCOPE_GLOBAL,
	LLMGW_SCOPE_SHARE,
	LLMGW_SCOPE_QUEUE,
	LLMGW_NSCOPES
} LlmgwRefusalScope;

extern Size llmgw_metrics_shmem_size(void);
extern void llmgw_metrics_shmem_init(void);
extern void llmgw_metrics_refused(LlmgwRefusal reason, LlmgwRefusalScope scope);
extern void llmgw_metrics_rate_refused(int limit_scope);
extern void llmgw_metrics_budget_refused(int budget_scope);

#endif							/* LLMGW_METRICS_H */
