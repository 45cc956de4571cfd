/*-------------------------------------------------------------------------
 *
 * retry.h
 *		When to retry: backoff, and the provider's hint from response headers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_RETRY_H
#define LLMGW_RETRY_H

#include <time.h>

#define LLMGW_MAX_HINT_HEADERS 12

/* Rate-limit headers of one response, names lower-cased */
typedef struct LlmgwHintHeaders
{
	int			count;
	char		name[LLMGW_MAX_HINT_HEADERS][48];
	char		value[LLMGW_MAX_HINT_HEADERS][64];
} LlmgwHintHeaders;

extern void llmgw_hint_headers_add(LlmgwHintHeaders *h, const char *line, size_t len);
extern double llmgw_retry_hint(const LlmgwHintHeaders *h, time_t now);
extern double llmgw_duration_seconds(const char *s);
extern double llmgw_retry_backoff_ms(int tries, int base_ms, int max_ms, double jitter);

#endif							/* LLMGW_RETRY_H */
