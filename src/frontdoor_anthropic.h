/*-------------------------------------------------------------------------
 *
 * frontdoor_anthropic.h
 *		The front door's Anthropic Messages API: a client's request as
 *		llmgw's OpenAI-shaped chat request, and llmgw's normalised answer as
 *		the Message (or the stream of events) the client expects.
 *
 * Does not include jansson: callers may include it in any order.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_FRONTDOOR_ANTHROPIC_H
#define LLMGW_FRONTDOOR_ANTHROPIC_H

#include "lib/stringinfo.h"

/*
 * The Anthropic Messages request a client sent, as llmgw's OpenAI-shaped
 * chat request (palloc'd JSON text, without "model"); *model gets the
 * "model" member (palloc'd) and *stream the "stream" member.  NULL with
 * *error (palloc'd, one sentence naming the field) when the request is
 * malformed.
 */
extern char *llmgw_anthropic_to_chat(const char *body, size_t len, char **model,
									 bool *stream, char **error);

/*
 * The Anthropic Message a client receives for a normalised answer
 * (palloc'd JSON text), for the model the client asked for and the
 * answer's id ("msg_<id>").  NULL if answer_json is not a JSON object.
 */
extern char *llmgw_anthropic_message(const char *answer_json, const char *model,
									 const char *id);
/* The same for a normalised answer already read (a borrowed json_t) */
struct json_t;
extern char *llmgw_anthropic_message_value(struct json_t *answer, const char *model,
										   const char *id);

/*
 * What a streamed Message has sent so far.  llmgw_anthropic_stream_start
 * sets it up.
 */
typedef struct LlmgwAnthropicStream
{
	int			next_index;		/* index of the next content block */
	bool		text_open;		/* a text block is open, at next_index - 1 */
	bool		tool_open;		/* a tool_use block is open, at next_index - 1 */
	bool		thinking_open;	/* a thinking block is open, at next_index - 1 */
	bool		thinking_sent;	/* some thinking was streamed */
	bool		text_sent;		/* some text was streamed */
	int			pending_len;	/* bytes of a UTF-8 character cut at the end of
								 * the last piece of text, kept for the next */
	char		pending[4];
} LlmgwAnthropicStream;

/* message_start (usage zeros, content []) appended to buf */
extern void llmgw_anthropic_stream_start(LlmgwAnthropicStream *st, StringInfo buf,
										 const char *model, const char *id);

/*
 * A piece of the answer's text: content_block_start of a text block if none
 * is open, then a content_block_delta text_delta
 */
extern void llmgw_anthropic_stream_text(LlmgwAnthropicStream *st, StringInfo buf,
										const char *text, size_t len);

/*
 * The start of the answer's tool call k (id NULL: one made from k): closes
 * the open block, opens a tool_use block and returns its index
 */
extern int	llmgw_anthropic_stream_tool_start(LlmgwAnthropicStream *st, StringInfo buf,
											  size_t k, const char *id, const char *name);

/* A piece of a tool_use block's input JSON; false when the block is closed */
extern bool llmgw_anthropic_stream_tool_input(LlmgwAnthropicStream *st, StringInfo buf,
											  int block, const char *json, size_t len);

/*
 * A piece of the answer's extended thinking (what: an LlmgwThinkingPiece of
 * provider.h): a thinking block's start, a piece of its text or signature
 * (opening one if none is open), or a whole redacted_thinking block
 */
extern void llmgw_anthropic_stream_thinking(LlmgwAnthropicStream *st, StringInfo buf, int what,
											const char *piece, size_t len);

/* The thinking blocks of a normalised answer (a borrowed array), each whole */
extern void llmgw_anthropic_stream_thinking_blocks(LlmgwAnthropicStream *st, StringInfo buf,
												   struct json_t *blocks);

/* A normalised tool call's input as the JSON text of a tool_use block */
extern char *llmgw_anthropic_tool_input_json(struct json_t *call);

/*
 * The end, given the final normalised answer (its tool calls went before):
 * the text if none was streamed, message_delta and message_stop.  An
 * unreadable answer ends the message as it stands.
 */
extern void llmgw_anthropic_stream_end(LlmgwAnthropicStream *st, StringInfo buf,
									   const char *answer_json, const char *proof);

/* An error event mid-stream */
extern void llmgw_anthropic_stream_error(StringInfo buf, const char *type, const char *code,
										 const char *message);

/* The error body of a non-streamed response (palloc'd) */
extern char *llmgw_anthropic_error(const char *type, const char *message);

/* Anthropic's error type for an HTTP status */
extern const char *llmgw_anthropic_error_type(int http_status);

#endif							/* LLMGW_FRONTDOOR_ANTHROPIC_H */
