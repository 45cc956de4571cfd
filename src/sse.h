/*-------------------------------------------------------------------------
 *
 * sse.h
 *		Server-sent events splitter.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_SSE_H
#define LLMGW_SSE_H

/* event is NULL when the event has no "event:" line */
typedef void (*LlmgwSseHandler) (void *arg, const char *event, const char *data, size_t len);

extern void llmgw_sse_parse(const char *buf, size_t len, LlmgwSseHandler handler, void *arg);

#endif							/* LLMGW_SSE_H */
