/*-------------------------------------------------------------------------
 *
 * frontdoor_openai.h
 *		The front door's answers in the OpenAI API.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_FRONTDOOR_OPENAI_H
#define LLMGW_FRONTDOOR_OPENAI_H

#include <jansson.h>

#include "lib/stringinfo.h"

/* What every answer of one request carries */
typedef struct LlmgwFrontMeta
{
	const char *id;				/* "chatcmpl-<request id>" */
	const char *model;			/* the alias the client asked for */
	int64		created;		/* Unix time */
} LlmgwFrontMeta;

extern const char *llmgw_openai_finish_reason(const char *native, bool tool_calls);
extern char *llmgw_openai_completion(json_t *answer, const LlmgwFrontMeta *meta);
extern void llmgw_openai_stream_start(StringInfo out, const LlmgwFrontMeta *meta);
extern void llmgw_openai_stream_text(StringInfo out, const LlmgwFrontMeta *meta,
									 const char *text, size_t len);
extern void llmgw_openai_stream_reasoning(StringInfo out, const LlmgwFrontMeta *meta,
										  const char *text, size_t len);
extern void llmgw_openai_stream_tool(StringInfo out, const LlmgwFrontMeta *meta, int index,
									 bool start, const char *id, const char *name,
									 const char *signature, const char *args, size_t len);
extern char *llmgw_openai_tool_arguments(json_t *call);
extern void llmgw_openai_stream_end(StringInfo out, const LlmgwFrontMeta *meta,
									const char *answer, bool include_usage,
									const char *proof);
extern char *llmgw_openai_error(int status, const char *code, const char *message);
extern void llmgw_openai_stream_error(StringInfo out, int status, const char *code,
									  const char *message);
extern char *llmgw_openai_embeddings(const char *vectors, const char *model, bool base64,
									 int64 input_tokens);
extern char *llmgw_openai_models(char **aliases, int n);
extern char *llmgw_openai_model(const char *alias);

#endif							/* LLMGW_FRONTDOOR_OPENAI_H */
