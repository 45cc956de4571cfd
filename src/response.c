/*-------------------------------------------------------------------------
 *
 * response.c
 *		The normalised answer llm_chat() returns, whatever the provider:
 *
 *		{"id", "model", "provider", "upstream_model",
 *		 "message": {"role": "assistant", "content", "tool_calls": [...],
 *					 "reasoning_content"?, "thinking_blocks"?: [...]},
 *		 "finish_reason", "stop_sequence"?, "usage": {input_tokens, output_tokens,
 *		 cached_input_tokens, cache_write_tokens, reasoning_tokens},
 *		 "logprobs"?: {"content": [...]}}
 *
 * Tool call arguments are JSON values, not the JSON-encoded strings that
 * OpenAI sends.  Token counts the provider did not report are null.  An
 * answer with extended thinking has its thinking blocks as the provider
 * gave them (their signatures are what a later turn sends back) and their
 * text joined as reasoning_content; an answer with reasoning of another
 * kind (OpenAI-compatible reasoning_content, Gemini's thought summaries,
 * the Responses API's reasoning summaries) has it as reasoning_content
 * alone; an answer without has neither member.  An answer to a request
 * for logprobs has them in OpenAI's shape (an OpenAI-format deployment's as
 * it gave them, Gemini's translated), a stream's chunks joined.  An answer
 * that a stop sequence ended has it as stop_sequence when the provider says
 * which (Anthropic; vLLM's stop_reason); otherwise the member is absent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "call.h"
#include "response.h"
#include "jsonutil.h"

/* from utils/builtins.h, which cannot be included beside jansson.h */
extern uint64 hex_encode(const char *src, size_t len, char *dst);

/* A count, or null when unknown */
static json_t *
count_value(int64 n)
{
	return n == LLMGW_TOKENS_UNKNOWN ? json_null() : json_integer((json_int_t) n);
}

/*
 * Text of a UUID into dst (LLMGW_UUID_TEXT_LEN bytes): the usual form with
 * dashes, or 32 hex digits without
 */
void
llmgw_uuid_text(const pg_uuid_t *id, char *dst, bool dashes)
{
	/* the groups of 4, 2, 2, 2 and 6 bytes */
	static const int group_end[] = {4, 6, 8, 10, UUID_LEN};
	int			from = 0;
	char	   *p = dst;

	if (!dashes)
		p += hex_encode((const char *) id->data, UUID_LEN, p);
	else
		for (int g = 0; g < (int) lengthof(group_end); g++)
		{
			if (g > 0)
				*p++ = '-';
			p += hex_encode((const char *) id->data + from, group_end[g] - from, p);
			from = group_end[g];
		}
	*p = '\0';
}

/* Tool calls with their arguments decoded to JSON values */
static json_t *
tool_calls_value(const char *tool_calls)
{
	json_t	   *calls = json_loads(tool_calls, 0, NULL);
	size_t		i;
	json_t	   *call;

	json_array_foreach(calls, i, call)
	{
		json_t	   *args = json_object_get(call, "arguments");
		json_t	   *decoded = json_is_string(args) ?
			json_loads(json_string_value(args), JSON_DECODE_ANY, NULL) : NULL;

		if (decoded)
			json_object_set_new(call, "arguments", decoded);
	}
	return calls;
}

/*
 * The thinking blocks of an answer (JSON text) into message: thinking_blocks
 * as they are, reasoning_content the text of those that are not redacted
 * (none when all are)
 */
static void
set_thinking(json_t *message, const char *thinking)
{
	json_t	   *blocks = llmgw_json_load(thinking, strlen(thinking), NULL);
	StringInfoData text;
	size_t		i;
	json_t	   *b;

	if (!json_is_array(blocks))
	{
		json_decref(blocks);
		return;
	}
	initStringInfo(&text);
	json_array_foreach(blocks, i, b)
	{
		json_t	   *t = json_object_get(b, "thinking");

		if (json_is_string(t))
			appendStringInfo(&text, "%s%s", text.len ? "\n\n" : "", json_string_value(t));
	}
	/* (only redacted thinking: no text to show) */
	if (text.len > 0)
		json_object_set_new(message, "reasoning_content", json_string(text.data));
	json_object_set_new(message, "thinking_blocks", blocks);
}

/* The normalised answer of a successful call (a new reference) */
json_t *
llmgw_response_value(const LlmgwCall *call)
{
	const LlmgwOutcome *out = &call->out;
	json_t	   *message = json_pack("{s:s, s:s?}", "role", "assistant", "content", out->text);
	json_t	   *root;
	char		id[LLMGW_UUID_TEXT_LEN];

	llmgw_uuid_text(&call->request_id, id, true);
	if (out->tool_calls)
		json_object_set_new(message, "tool_calls", tool_calls_value(out->tool_calls));
	if (out->thinking)
		set_thinking(message, out->thinking);
	else if (out->reasoning)
		json_object_set_new(message, "reasoning_content", json_string(out->reasoning));
	root = json_pack("{s:s, s:s, s:s?, s:s?, s:o, s:s?, s:{s:o, s:o, s:o, s:o, s:o}}",
					 "id", id,
					 "model", call->model,
					 "provider", call->provider,
					 "upstream_model", call->upstream_model,
					 "message", message,
					 "finish_reason", out->finish_reason,
					 "usage",
					 "input_tokens", count_value(out->tokens[LLMGW_TOKENS_INPUT]),
					 "output_tokens", count_value(out->tokens[LLMGW_TOKENS_OUTPUT]),
					 "cached_input_tokens", count_value(out->tokens[LLMGW_TOKENS_CACHED_INPUT]),
					 "cache_write_tokens", count_value(out->tokens[LLMGW_TOKENS_CACHE_WRITE]),
					 "reasoning_tokens", count_value(out->tokens[LLMGW_TOKENS_REASONING]));
	if (out->stop_sequence)
		json_object_set_new(root, "stop_sequence", json_string(out->stop_sequence));
	if (out->logprobs)
		json_object_set_new(root, "logprobs",
							llmgw_json_load(out->logprobs, strlen(out->logprobs), NULL));
	return root;
}

/* The normalised answer of a successful call, as JSON text */
char *
llmgw_response_json(const LlmgwCall *call)
{
	json_t	   *root = llmgw_response_value(call);
	char	   *text = llmgw_json_dump(root);

	json_decref(root);
	return text;
}

/*
 * The answer of a successful chat call as a JSON object (a new reference),
 * built without a trip through its text unless it came from the cache;
 * NULL when there is none or it is not an object
 */
json_t *
llmgw_answer_value(LlmgwCall *call)
{
	json_t	   *answer;
	char	   *text;

	if (call->kind == LLMGW_KIND_CHAT_JSON && !call->cache_hit)
		return llmgw_response_value(call);
	text = llmgw_call_answer(call);
	answer = text ? llmgw_json_load(text, strlen(text), NULL) : NULL;
	if (json_is_object(answer))
		return answer;
	json_decref(answer);
	return NULL;
}
