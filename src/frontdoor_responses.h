/*-------------------------------------------------------------------------
 *
 * frontdoor_responses.h
 *		The front door's OpenAI Responses API: a client's request as llmgw's
 *		chat request, and llmgw's normalised answer as the Response (or the
 *		stream of events) the client expects.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_FRONTDOOR_RESPONSES_H
#define LLMGW_FRONTDOOR_RESPONSES_H

#include "frontdoor_openai.h"

/*
 * The Responses request a client sent, as llmgw's OpenAI-shaped chat
 * request (palloc'd JSON text, without "model"); *model gets the "model"
 * member (palloc'd) and *stream the "stream" member.  NULL with *error
 * (palloc'd, one sentence naming the field) when the request is malformed
 * or asks for what llmgw does not do (stored responses, built-in tools).
 */
extern char *llmgw_responses_to_chat(const char *body, size_t len, char **model, bool *stream,
									 char **error);

/* The Response for a normalised answer (borrowed; palloc'd JSON text) */
extern char *llmgw_responses_response(json_t *answer, const LlmgwFrontMeta *meta);

#define LLMGW_RESPONSES_MAX_CALLS 128

/* What a streamed Response has sent so far (zeroed by ..._stream_start) */
typedef struct LlmgwResponsesStream
{
	int			sequence;		/* sequence_number of the next event */
	int			next_output;	/* output_index of the next item */
	int			message_output; /* the message item's, -1 before it opened */
	bool		message_open;	/* its text is still coming */
	StringInfoData text;		/* its text so far */
	int			ncalls;			/* function_call items started */
	int			call_output[LLMGW_RESPONSES_MAX_CALLS];
	StringInfoData call_args[LLMGW_RESPONSES_MAX_CALLS];
} LlmgwResponsesStream;

extern void llmgw_responses_stream_start(LlmgwResponsesStream *st, StringInfo buf,
										 const LlmgwFrontMeta *meta);
extern void llmgw_responses_stream_text(LlmgwResponsesStream *st, StringInfo buf,
										const LlmgwFrontMeta *meta, const char *text, size_t len);
extern void llmgw_responses_stream_call(LlmgwResponsesStream *st, StringInfo buf,
										const LlmgwFrontMeta *meta, int ordinal, bool start,
										const char *call_id, const char *name,
										const char *args, size_t len);
extern void llmgw_responses_stream_end(LlmgwResponsesStream *st, StringInfo buf,
									   const LlmgwFrontMeta *meta, const char *answer,
									   const char *proof);
extern void llmgw_responses_stream_error(LlmgwResponsesStream *st, StringInfo buf,
										 const char *code, const char *message);

#endif							/* LLMGW_FRONTDOOR_RESPONSES_H */
