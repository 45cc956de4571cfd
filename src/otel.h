/*-------------------------------------------------------------------------
 *
 * otel.h
 *		OpenTelemetry spans of settled calls, exported over OTLP/HTTP JSON
 *		off the call path.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_OTEL_H
#define LLMGW_OTEL_H

#include "call.h"

/* Settings (otel.c) */
extern char *llmgw_otel_endpoint;
extern char *llmgw_otel_service_name;
extern int	llmgw_otel_max_queue;
extern int	llmgw_otel_timeout;

extern void llmgw_otel_define_gucs(void);
extern Size llmgw_otel_shmem_size(void);
extern void llmgw_otel_shmem_init(void);

/* spans exported, dropped and failed since the server life began */
extern void llmgw_otel_span_counts(uint64 *exported, uint64 *dropped, uint64 *failed);

/* in a worker */
extern void llmgw_otel_start(int worker_index);
extern void llmgw_otel_call(const LlmgwCall *call);
extern void llmgw_otel_export(void);
extern long llmgw_otel_timeout_ms(void);

#endif							/* LLMGW_OTEL_H */
