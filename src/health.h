/*-------------------------------------------------------------------------
 *
 * health.h
 *		Health of each deployment in shared memory: calls in flight,
 *		successes and failures, latency histogram, and the cooldown
 *		(circuit breaker) that takes a failing deployment out of routing
 *		for a while and probes it back in.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_HEALTH_H
#define LLMGW_HEALTH_H

#include "errors.h"

extern int	llmgw_max_deployments;
extern int	llmgw_cooldown_failures;
extern int	llmgw_cooldown_time;

/* What the router may do with a deployment now */
typedef enum LlmgwAvailability
{
	LLMGW_AVAILABLE,
	LLMGW_PROBE,				/* cooling down is over: this call probes it */
	LLMGW_COOLING_DOWN
} LlmgwAvailability;

extern Size llmgw_health_shmem_size(void);
extern void llmgw_health_shmem_init(void);
extern LlmgwAvailability llmgw_health_available(int64 deployment_id, bool claim);
extern void llmgw_health_begin(int64 deployment_id);
extern void llmgw_health_end(int64 deployment_id);
extern void llmgw_health_record(int64 deployment_id, bool ok, LlmgwErrorClass error,
								double latency_ms);
extern void llmgw_health_load(int64 deployment_id, int *in_flight, double *latency_ms);

#endif							/* LLMGW_HEALTH_H */
