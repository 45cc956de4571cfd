/*-------------------------------------------------------------------------
 *
 * provider.h
 *		What a provider wire format implements: where a call goes, how its
 *		body is built from llmgw's OpenAI-shaped request, how the response
 *		is read.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_PROVIDER_H
#define LLMGW_PROVIDER_H

#include "call.h"
#include "config.h"
#include "lib/stringinfo.h"

/* Where the pieces of a chat stream's events go, in the order they come */
/* What a piece of an answer's extended thinking is */
typedef enum LlmgwThinkingPiece
{
	LLMGW_THINKING_START,		/* a thinking block starts (no piece) */
	LLMGW_THINKING_TEXT,		/* a piece of its text */
	LLMGW_THINKING_SIGNATURE,	/* a piece of its signature */
	LLMGW_THINKING_REDACTED,	/* a whole redacted_thinking block: its data */
	LLMGW_THINKING_REASONING	/* a piece of reasoning text that is no
								 * thinking block (LlmgwOutcome.reasoning) */
} LlmgwThinkingPiece;

typedef struct LlmgwStreamSink
{
	void	   *arg;
	/* a piece of the answer's text */
	void		(*text) (void *arg, const char *text, size_t len);

	/*
	 * A tool call's start (its id and name, NULL when the event has none;
	 * its thought signature, Gemini's, or NULL) and/or a piece of its
	 * arguments (NULL: none).  key is the provider's index of the call (its
	 * tool call index, content block or output item); -1 is a whole call of
	 * its own.
	 */
	void		(*tool) (void *arg, int key, const char *id, const char *name,
						 const char *signature, const char *args, size_t args_len);
	/* a piece of the answer's extended thinking (Anthropic's thinking blocks) */
	void		(*thinking) (void *arg, LlmgwThinkingPiece what, const char *piece, size_t len);
} LlmgwStreamSink;

typedef struct LlmgwProvider
{
	const char *kind;
	/* URL of a chat call (palloc'd) */
	char	   *(*chat_url) (const LlmgwRoute *route, bool stream);
	/* Headers carrying the secret, plus any the format needs */
	struct curl_slist *(*headers) (const LlmgwRoute *route, const char *secret);
	/*
	 * The upstream body (malloc'd), or NULL with *error set (palloc'd).
	 * *stream tells whether the request asked for a streamed answer.
	 */
	char	   *(*build_chat) (const char *request, size_t len, const char *upstream_model,
							   size_t *out_len, bool *stream, char **error);
	/* Read a complete response */
	void		(*parse_chat) (const char *buf, size_t len, long http_status,
							   LlmgwOutcome *out);
	/* Read a complete SSE stream (a 2xx response to a streamed request) */
	void		(*parse_stream) (const char *buf, size_t len, LlmgwOutcome *out);

	/* Embeddings; NULL when the provider has no embeddings API */
	char	   *(*embed_url) (const LlmgwRoute *route);
	/* request: {"input": [strings], "dimensions"?: n} */
	char	   *(*build_embed) (const char *request, size_t len, const char *upstream_model,
								size_t *out_len, char **error);
	void		(*parse_embed) (const char *buf, size_t len, long http_status,
								LlmgwOutcome *out);

	/*
	 * Tell what one event of a chat stream carries, text and tool calls, as
	 * it arrives (the front door forwards it; parse_stream still reads the
	 * whole stream for the outcome)
	 */
	void		(*stream_delta) (const char *data, size_t len, const LlmgwStreamSink *sink);
} LlmgwProvider;

extern const LlmgwProvider *llmgw_provider(const char *kind);

extern const LlmgwProvider llmgw_provider_openai;
extern const LlmgwProvider llmgw_provider_azure;
extern const LlmgwProvider llmgw_provider_responses;
extern const LlmgwProvider llmgw_provider_anthropic;
extern const LlmgwProvider llmgw_provider_gemini;

/* OpenAI pieces other formats reuse (provider_openai.c) */
extern struct curl_slist *llmgw_openai_headers(const LlmgwRoute *route, const char *secret);
extern char *llmgw_openai_embed_url(const LlmgwRoute *route);
extern char *llmgw_openai_build_embed(const char *request, size_t len,
									  const char *upstream_model, size_t *out_len,
									  char **error);
extern void llmgw_openai_parse_embed(const char *buf, size_t len, long http_status,
									 LlmgwOutcome *out);

/* Helpers shared by the formats (provider.c) */
extern char *llmgw_url_join(const char *base, const char *path);
extern struct curl_slist *llmgw_header_secret(struct curl_slist *h, const char *name,
											  const char *prefix, const char *secret);
extern struct curl_slist *llmgw_json_headers(void);

#endif							/* LLMGW_PROVIDER_H */
