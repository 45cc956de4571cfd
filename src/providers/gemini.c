/*-------------------------------------------------------------------------
 *
 * providers/gemini.c
 *		Gemini generateContent wire format: translate llmgw's OpenAI-shaped
 *		request, read responses and errors.
 *
 * The key travels in the x-goog-api-key header, never in the URL.  Usage
 * normalisation: Gemini reports thinking (thoughtsTokenCount) apart from
 * candidatesTokenCount, and omits counters that are zero.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"

#include "provider.h"
#include "jsonutil.h"
#include "sse.h"
#include "translate.h"

static void parse_error(json_t *root, long http_status, LlmgwOutcome *out);

static const char *const gemini_media_types[] = {
	"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif", NULL
};

/* documents Gemini reads inline */
static const char *const gemini_file_types[] = {
	"application/pdf", "text/plain", "text/csv", "text/html", "text/xml", NULL
};

/* Gemini fetches no image by URL for us: images and files come inline */
static const LlmgwPartRules gemini_parts = {
	.kind = "gemini", .media_types = gemini_media_types, .file_types = gemini_file_types
};

/* A content part as a Gemini part (an image or a file: inline data) */
static json_t *
gemini_part(const LlmgwPart *part)
{
	if (part->text)
		return json_pack("{s:O}", "text", part->text);
	return json_pack("{s:{s:s, s:s}}", "inlineData", "mimeType", part->media_type,
					 "data", part->data);
}

/*
 * The thought signature Gemini documents for function calls it did not
 * make, which skips its check of the signature
 */
#define SKIP_SIGNATURE "skip_thought_signature_validator"

/*
 * The thought signature of an assistant message's tool call: llmgw's own
 * member (the normalised answer's tool call), or where Gemini's OpenAI
 * compatible API puts it (extra_content.google.thought_signature); NULL
 * when none
 */
static json_t *
call_signature(json_t *call)
{
	json_t	   *s = json_object_get(call, "thought_signature");

	if (!json_is_string(s))
		s = json_object_get(json_object_get(json_object_get(call, "extra_content"), "google"),
							"thought_signature");
	return json_is_string(s) ? s : NULL;
}

/* Does any of these tool calls have its thought signature? */
static bool
any_signature(json_t *calls)
{
	size_t		i;
	json_t	   *call;

	json_array_foreach(calls, i, call)
		if (call_signature(call))
			return true;
	return false;
}

/* The function name of the tool call with this id, from earlier messages */
static json_t *
tool_name(json_t *messages, json_t *id)
{
	size_t		i;
	json_t	   *m;

	json_array_foreach(messages, i, m)
	{
		size_t		j;
		json_t	   *call;

		json_array_foreach(json_object_get(m, "tool_calls"), j, call)
		{
			if (json_equal(json_object_get(call, "id"), id))
				return json_object_get(json_object_get(call, "function"), "name");
		}
	}
	return NULL;
}

/*
 * messages[i] as a Gemini content, or json null for a system message,
 * whose parts go to sysparts; NULL with *error set when it cannot be
 * translated.  Images may come in user messages.
 */
static json_t *
translate_message(json_t *messages, size_t i, json_t *sysparts, char **error)
{
	json_t	   *m = json_array_get(messages, i);
	const char *role = json_string_value(json_object_get(m, "role"));
	json_t	   *content = json_object_get(m, "content");
	json_t	   *parts;
	size_t		j;
	json_t	   *call;

	if (role == NULL)
	{
		*error = psprintf("messages[%zu] has no role", i);
		return NULL;
	}
	if (strcmp(role, "tool") == 0)
	{
		json_t	   *name = tool_name(messages, json_object_get(m, "tool_call_id"));
		StringInfoData text;

		/* the response is a JSON object: parts of text become one string */
		if (content == NULL || json_is_null(content) || json_is_string(content))
			return json_pack("{s:s, s:[{s:{s:O?, s:{s:O?}}}]}", "role", "user", "parts",
							 "functionResponse", "name", name, "response", "content", content);
		initStringInfo(&text);
		if (!llmgw_content_text(content, i, &gemini_parts, &text, error))
			return NULL;
		return json_pack("{s:s, s:[{s:{s:O?, s:{s:s}}}]}", "role", "user", "parts",
						 "functionResponse", "name", name, "response", "content", text.data);
	}
	parts = llmgw_content_translate(content, i, strcmp(role, "user") == 0, &gemini_parts,
									gemini_part, error);
	if (parts == NULL)
		return NULL;
	if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
	{
		json_array_extend(sysparts, parts);
		json_decref(parts);
		return json_null();
	}
	json_array_foreach(json_object_get(m, "tool_calls"), j, call)
	{
		json_t	   *fn = json_object_get(call, "function");
		json_t	   *args = json_object_get(fn, "arguments");
		json_t	   *obj = json_is_string(args) ? json_loads(json_string_value(args), 0, NULL) : NULL;
		json_t	   *part;
		json_t	   *signature = call_signature(call);

		if (!json_is_object(obj))
		{
			json_decref(obj);
			obj = json_pack("{}");
		}
		part = json_pack("{s:{s:O?, s:o}}", "functionCall", "name", json_object_get(fn, "name"),
						 "args", obj);
		/*
		 * the call's thought signature as Gemini gave it; a message of calls
		 * without any (made elsewhere: another model, a client that could
		 * not keep it) has the value Gemini documents for them on its first
		 * call, without which Gemini 3 refuses the turn
		 */
		if (signature)
			json_object_set(part, "thoughtSignature", signature);
		else if (j == 0 && !any_signature(json_object_get(m, "tool_calls")))
			json_object_set_new(part, "thoughtSignature", json_string(SKIP_SIGNATURE));
		json_array_append_new(parts, part);
	}
	return json_pack("{s:s, s:o}", "role", strcmp(role, "assistant") == 0 ? "model" : "user",
					 "parts", parts);
}

/*
 * generationConfig from the OpenAI parameters; NULL with *error set when
 * response_format is not one llmgw knows
 */
static json_t *
generation_config(json_t *src, char **error)
{
	json_t	   *cfg = json_pack("{}");
	json_t	   *max_tokens = json_object_get(src, "max_completion_tokens");
	json_t	   *stop = json_object_get(src, "stop");
	LlmgwResponseFormat format;
	json_t	   *json_schema;

	if (!llmgw_response_format(src, &format, &json_schema, error))
	{
		json_decref(cfg);
		return NULL;
	}
	if (!json_is_integer(max_tokens))
		max_tokens = json_object_get(src, "max_tokens");
	if (json_is_integer(max_tokens))
		json_object_set(cfg, "maxOutputTokens", max_tokens);
	if (json_is_number(json_object_get(src, "temperature")))
		json_object_set(cfg, "temperature", json_object_get(src, "temperature"));
	if (json_is_number(json_object_get(src, "top_p")))
		json_object_set(cfg, "topP", json_object_get(src, "top_p"));
	if (json_is_number(json_object_get(src, "presence_penalty")))
		json_object_set(cfg, "presencePenalty", json_object_get(src, "presence_penalty"));
	if (json_is_number(json_object_get(src, "frequency_penalty")))
		json_object_set(cfg, "frequencyPenalty", json_object_get(src, "frequency_penalty"));
	if (json_is_integer(json_object_get(src, "seed")))
		json_object_set(cfg, "seed", json_object_get(src, "seed"));
	if (json_is_string(stop))
		json_object_set_new(cfg, "stopSequences", json_pack("[O]", stop));
	else if (json_is_array(stop))
		json_object_set(cfg, "stopSequences", stop);
	/* JSON mode; a JSON Schema goes to responseJsonSchema as it is */
	if (format != LLMGW_FORMAT_TEXT)
		json_object_set_new(cfg, "responseMimeType", json_string("application/json"));
	if (json_object_get(json_schema, "schema"))
		json_object_set(cfg, "responseJsonSchema", json_object_get(json_schema, "schema"));
	return cfg;
}

/*
 * Anthropic's thinking setting as Gemini's thinkingConfig: a budget of
 * budget_tokens, "disabled" none (0), any other type Gemini's dynamic
 * budget (-1); thought summaries asked for whenever it thinks, so that the
 * answer has them (its reasoning_content)
 */
static json_t *
thinking_config(json_t *thinking)
{
	const char *type = json_string_value(json_object_get(thinking, "type"));

	if (strcmp(type, "disabled") == 0)
		return json_pack("{s:i}", "thinkingBudget", 0);
	if (strcmp(type, "enabled") == 0)
		return json_pack("{s:O, s:b}", "thinkingBudget", json_object_get(thinking, "budget_tokens"),
						 "includeThoughts", 1);
	return json_pack("{s:i, s:b}", "thinkingBudget", -1, "includeThoughts", 1);
}

/* OpenAI tools as functionDeclarations */
static json_t *
translate_tools(json_t *tools)
{
	json_t	   *decls = json_array();
	size_t		i;
	json_t	   *t;

	json_array_foreach(tools, i, t)
	{
		json_t	   *fn = json_object_get(t, "function");

		json_array_append_new(decls, json_pack("{s:O?, s:O?, s:O?}",
											   "name", json_object_get(fn, "name"),
											   "description", json_object_get(fn, "description"),
											   "parameters", json_object_get(fn, "parameters")));
	}
	return json_pack("[{s:o}]", "functionDeclarations", decls);
}

/* Build a generateContent request from llmgw's request */
static char *
gemini_build(const char *request, size_t len, const char *upstream_model,
			 size_t *out_len, bool *stream, char **error)
{
	json_t	   *src = llmgw_json_loadb(request, len, 0, NULL);
	json_t	   *messages = json_object_get(src, "messages");
	json_t	   *contents = json_array();
	json_t	   *sysparts = json_array();
	json_t	   *config = NULL;
	json_t	   *req;
	size_t		i;
	bool		ok = json_is_array(messages);
	LlmgwToolChoice choice = LLMGW_TOOLS_UNSET;
	const char *chosen = NULL;
	json_t	   *thinking = NULL;
	json_t	   *top_k = NULL;

	if (!ok)
		*error = pstrdup("the request has no messages array");
	else if ((ok = llmgw_thinking(src, &thinking, error) && llmgw_top_k(src, &top_k, error)))
	{
		/* the settings, translated below */
		json_incref(thinking);
		json_incref(top_k);
		ok = llmgw_strip_anthropic(src, error); /* Gemini has no such marks or blocks */
	}
	for (i = 0; ok && i < json_array_size(messages); i++)
	{
		json_t	   *c = translate_message(messages, i, sysparts, error);

		ok = (c != NULL);
		if (ok && !json_is_null(c))
			json_array_append(contents, c);
		json_decref(c);
	}
	if (ok)
		ok = (config = generation_config(src, error)) != NULL;
	if (ok && thinking)
		json_object_set_new(config, "thinkingConfig", thinking_config(thinking));
	if (ok && top_k)
		json_object_set(config, "topK", top_k);
	/* logprobs: the chosen tokens' (responseLogprobs), top_logprobs of each (logprobs) */
	if (ok && json_is_true(json_object_get(src, "logprobs")))
	{
		json_t	   *top = json_object_get(src, "top_logprobs");

		json_object_set_new(config, "responseLogprobs", json_true());
		if (json_is_integer(top) && json_integer_value(top) > 0)
			json_object_set(config, "logprobs", top);
	}
	json_decref(thinking);
	json_decref(top_k);
	if (ok)
		ok = llmgw_tool_choice(src, &choice, &chosen, error);
	if (!ok)
	{
		json_decref(src);
		json_decref(contents);
		json_decref(sysparts);
		json_decref(config);
		return NULL;
	}
	req = json_pack("{s:o, s:o}", "contents", contents, "generationConfig", config);
	if (json_array_size(sysparts) > 0)
		json_object_set_new(req, "systemInstruction", json_pack("{s:O}", "parts", sysparts));
	json_decref(sysparts);
	if (json_is_array(json_object_get(src, "tools")))
		json_object_set_new(req, "tools", translate_tools(json_object_get(src, "tools")));
	/* tool_choice as the function calling mode (a named function: ANY of one) */
	if (choice == LLMGW_TOOLS_NAMED)
		json_object_set_new(req, "toolConfig",
							json_pack("{s:{s:s, s:[s]}}", "functionCallingConfig", "mode", "ANY",
									  "allowedFunctionNames", chosen));
	else if (choice != LLMGW_TOOLS_UNSET)
		json_object_set_new(req, "toolConfig",
							json_pack("{s:{s:s}}", "functionCallingConfig", "mode",
									  choice == LLMGW_TOOLS_REQUIRED ? "ANY" :
									  choice == LLMGW_TOOLS_NONE ? "NONE" : "AUTO"));
	*stream = json_is_true(json_object_get(src, "stream"));
	json_decref(src);
	return llmgw_json_build(req, out_len);
}

/* A counter Gemini omits when zero: 0 if absent, unknown if not a count */
static int64
zero_count(json_t *usage, const char *key)
{
	json_t	   *v = json_object_get(usage, key);

	return v == NULL ? 0 : llmgw_json_count(usage, key);
}

/* Sum two counts, unknown if either is */
static int64
add_counts(int64 a, int64 b)
{
	if (a == LLMGW_TOKENS_UNKNOWN || b == LLMGW_TOKENS_UNKNOWN)
		return LLMGW_TOKENS_UNKNOWN;
	return a + b;
}

/* usageMetadata into the buckets (also used for stream chunks) */
static void
parse_usage(json_t *usage, LlmgwOutcome *out)
{
	int64		thoughts;

	if (!json_is_object(usage))
		return;
	thoughts = zero_count(usage, "thoughtsTokenCount");
	out->tokens[LLMGW_TOKENS_INPUT] = add_counts(zero_count(usage, "promptTokenCount"),
												 zero_count(usage, "toolUsePromptTokenCount"));
	out->tokens[LLMGW_TOKENS_OUTPUT] = add_counts(zero_count(usage, "candidatesTokenCount"),
												  thoughts);
	out->tokens[LLMGW_TOKENS_CACHED_INPUT] = zero_count(usage, "cachedContentTokenCount");
	out->tokens[LLMGW_TOKENS_REASONING] = thoughts;
}

/*
 * A token's log probability as OpenAI gives it: {"token", "logprob",
 * "bytes"} (its UTF-8 bytes) from a Gemini candidate {"token",
 * "logProbability"}, whose members JSON leaves out when they are 0 or ""
 */
static json_t *
token_logprob(json_t *candidate)
{
	const char *token = json_string_value(json_object_get(candidate, "token"));
	json_t	   *p = json_object_get(candidate, "logProbability");
	json_t	   *bytes = json_array();

	token = token ? token : "";
	for (const unsigned char *b = (const unsigned char *) token; *b; b++)
		json_array_append_new(bytes, json_integer(*b));
	return json_pack("{s:s, s:f, s:o}", "token", token,
					 "logprob", json_is_number(p) ? json_number_value(p) : 0.0, "bytes", bytes);
}

/*
 * Append a candidate's logprobsResult (chosenCandidates, and beside each
 * its topCandidates) to content, OpenAI's logprobs.content: created at the
 * first candidate that has one
 */
static void
add_logprobs(json_t *candidate, json_t **content)
{
	json_t	   *result = json_object_get(candidate, "logprobsResult");
	json_t	   *top = json_object_get(result, "topCandidates");
	size_t		i;
	size_t		j;
	json_t	   *chosen;
	json_t	   *alt;

	if (!json_is_object(result))
		return;
	if (*content == NULL)
		*content = json_array();
	json_array_foreach(json_object_get(result, "chosenCandidates"), i, chosen)
	{
		json_t	   *entry = token_logprob(chosen);
		json_t	   *alts = json_array();

		json_array_foreach(json_object_get(json_array_get(top, i), "candidates"), j, alt)
			json_array_append_new(alts, token_logprob(alt));
		json_object_set_new(entry, "top_logprobs", alts);
		json_array_append_new(*content, entry);
	}
}

/*
 * Append a candidate's text, its thought summaries (parts marked "thought",
 * asked for with thinkingConfig.includeThoughts), its function calls and
 * its log probabilities
 */
static void
add_candidate(json_t *candidate, StringInfo text, StringInfo reasoning, json_t *calls,
			  json_t **logprobs, LlmgwOutcome *out)
{
	size_t		i;
	json_t	   *part;
	json_t	   *finish = json_object_get(candidate, "finishReason");

	add_logprobs(candidate, logprobs);
	json_array_foreach(json_object_get(json_object_get(candidate, "content"), "parts"), i, part)
	{
		json_t	   *fc = json_object_get(part, "functionCall");

		if (json_is_true(json_object_get(part, "thought")))
		{
			if (json_is_string(json_object_get(part, "text")))
				appendStringInfoString(reasoning, json_string_value(json_object_get(part, "text")));
		}
		else if (json_is_string(json_object_get(part, "text")))
			appendStringInfoString(text, json_string_value(json_object_get(part, "text")));
		else if (json_is_object(fc))
		{
			char	   *args = llmgw_json_dump(json_object_get(fc, "args"));
			json_t	   *signature = json_object_get(part, "thoughtSignature");

			json_array_append_new(calls, json_pack("{s:O?, s:O?, s:s, s:O?}",
												   "id", json_object_get(fc, "id"),
												   "name", json_object_get(fc, "name"),
												   "arguments", args,
												   "thought_signature",
												   json_is_string(signature) ? signature : NULL));
		}
	}
	if (json_is_string(finish))
		out->finish_reason = llmgw_json_string(candidate, "finishReason");
}

/* Set the outcome's text, tool calls and logprobs from what was collected */
static void
set_answer(StringInfo text, json_t *calls, json_t *logprobs, LlmgwOutcome *out)
{
	out->text = text->data;
	if (json_array_size(calls) > 0)
		out->tool_calls = llmgw_json_dump(calls);
	if (logprobs)
	{
		json_t	   *v = json_pack("{s:O}", "content", logprobs);

		out->logprobs = llmgw_json_dump(v);
		json_decref(v);
	}
}

/* Is this finish reason a block by a safety filter? */
static bool
blocked(const char *finish_reason)
{
	static const char *const reasons[] = {
		"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION", "IMAGE_SAFETY"
	};

	for (int i = 0; finish_reason && i < lengthof(reasons); i++)
		if (strcmp(finish_reason, reasons[i]) == 0)
			return true;
	return false;
}

/* Fail the outcome for a blocked prompt (reason) or a missing answer */
static void
fail_no_candidate(const char *reason, LlmgwOutcome *out)
{
	if (out->text == NULL)
		out->text = pstrdup("");
	llmgw_json_set_error(out, reason ? LLMGW_ERR_CONTENT_FILTER : LLMGW_ERR_MALFORMED,
						 NULL, reason);
	out->provider_message = reason ? psprintf("the prompt was blocked (%s)", reason) :
		pstrdup("the response has no candidates");
}

/* An answer whose finish reason is a safety block becomes an error */
static void
check_blocked(LlmgwOutcome *out)
{
	if (blocked(out->finish_reason))
	{
		llmgw_json_set_error(out, LLMGW_ERR_CONTENT_FILTER, NULL, out->finish_reason);
		out->provider_message = psprintf("the answer was blocked (%s)", out->finish_reason);
	}
}

/* A successful response, which may still be a blocked prompt or answer */
static void
parse_response(json_t *root, LlmgwOutcome *out)
{
	json_t	   *candidate = json_array_get(json_object_get(root, "candidates"), 0);
	StringInfoData text;
	StringInfoData reasoning;
	json_t	   *calls;
	json_t	   *logprobs = NULL;

	parse_usage(json_object_get(root, "usageMetadata"), out);
	if (!json_is_object(candidate))
	{
		fail_no_candidate(llmgw_json_string(json_object_get(root, "promptFeedback"), "blockReason"), out);
		return;
	}
	out->status = LLMGW_STATUS_OK;
	initStringInfo(&text);
	initStringInfo(&reasoning);
	calls = json_array();
	add_candidate(candidate, &text, &reasoning, calls, &logprobs, out);
	set_answer(&text, calls, logprobs, out);
	if (reasoning.len > 0)
		out->reasoning = reasoning.data;
	json_decref(calls);
	json_decref(logprobs);
	check_blocked(out);
}

/* What a streamGenerateContent stream has said so far */
typedef struct GeminiStream
{
	LlmgwStream base;			/* done: a finish or block reason arrived */
	json_t	   *calls;
	json_t	   *logprobs;		/* OpenAI's logprobs.content, NULL until a chunk has some */
	char	   *block_reason;
	bool		any_candidate;
} GeminiStream;

/* One chunk: a partial GenerateContentResponse (usage is cumulative) */
static void
gemini_stream_event(void *arg, const char *event, const char *data, size_t len)
{
	GeminiStream *st = arg;
	json_t	   *chunk;
	json_t	   *candidate;

	if (st->base.failed)
		return;
	chunk = llmgw_stream_event_json(data, len, &st->base.unreadable);
	if (chunk == NULL)
		return;
	if (json_object_get(chunk, "error"))
	{
		parse_error(chunk, 200, st->base.out);
		st->base.failed = true;
		json_decref(chunk);
		return;
	}
	parse_usage(json_object_get(chunk, "usageMetadata"), st->base.out);
	candidate = json_array_get(json_object_get(chunk, "candidates"), 0);
	if (json_is_object(candidate))
	{
		st->any_candidate = true;
		add_candidate(candidate, &st->base.text, &st->base.reasoning, st->calls, &st->logprobs,
					  st->base.out);
		if (json_is_string(json_object_get(candidate, "finishReason")))
			st->base.done = true;
	}
	if (json_is_string(json_object_get(json_object_get(chunk, "promptFeedback"), "blockReason")))
	{
		st->block_reason = llmgw_json_string(json_object_get(chunk, "promptFeedback"), "blockReason");
		st->base.done = true;
	}
	json_decref(chunk);
}

/* Read a complete streamGenerateContent stream */
static void
gemini_parse_stream(const char *buf, size_t len, LlmgwOutcome *out)
{
	GeminiStream st;

	memset(&st, 0, sizeof(st));
	st.calls = json_array();
	llmgw_stream_read(&st.base, out, buf, len, gemini_stream_event);
	if (!st.base.failed)
		set_answer(&st.base.text, st.calls, st.logprobs, out);
	if (llmgw_stream_whole(&st.base))
	{
		if (!st.any_candidate)
			fail_no_candidate(st.block_reason, out);
		else
		{
			out->status = LLMGW_STATUS_OK;
			check_blocked(out);
		}
	}
	json_decref(st.calls);
	json_decref(st.logprobs);
}

/* Seconds of a protobuf duration string such as "34.4s"; -1 if not one */
static double
duration_seconds(const char *s)
{
	char	   *end;
	double		v;

	if (s == NULL)
		return -1;
	v = strtod(s, &end);
	return (end != s && strcmp(end, "s") == 0 && v >= 0) ? v : -1;
}

/* Class of a google.rpc.Status error, refined by its details */
static LlmgwErrorClass
classify(json_t *err, const char *status, long http_status, LlmgwOutcome *out)
{
	size_t		i;
	json_t	   *d;
	const char *message = json_string_value(json_object_get(err, "message"));

	json_array_foreach(json_object_get(err, "details"), i, d)
	{
		const char *reason = json_string_value(json_object_get(d, "reason"));
		double		delay = duration_seconds(json_string_value(json_object_get(d, "retryDelay")));

		if (delay >= 0)
			out->retry_after_s = delay;
		if (reason && strcmp(reason, "API_KEY_INVALID") == 0)
			return LLMGW_ERR_AUTH;
	}
	if (status == NULL)
		return llmgw_error_class_from_http(http_status);
	if (strcmp(status, "UNAUTHENTICATED") == 0 || strcmp(status, "PERMISSION_DENIED") == 0)
		return LLMGW_ERR_AUTH;
	if (strcmp(status, "RESOURCE_EXHAUSTED") == 0)
		return LLMGW_ERR_RATE_LIMIT;
	if (strcmp(status, "NOT_FOUND") == 0)
		return LLMGW_ERR_MODEL_NOT_FOUND;
	if (strcmp(status, "UNAVAILABLE") == 0)
		return LLMGW_ERR_OVERLOADED;
	if (strcmp(status, "DEADLINE_EXCEEDED") == 0)
		return LLMGW_ERR_TIMEOUT;
	if (strcmp(status, "INTERNAL") == 0)
		return LLMGW_ERR_SERVER;
	if (strcmp(status, "INVALID_ARGUMENT") == 0 || strcmp(status, "FAILED_PRECONDITION") == 0)
		return (message && strstr(message, "token count") != NULL) ?
			LLMGW_ERR_CONTEXT_LENGTH : LLMGW_ERR_INVALID_REQUEST;
	return llmgw_error_class_from_http(http_status);
}

/* {"error": {"code", "message", "status", "details"}} */
static void
parse_error(json_t *root, long http_status, LlmgwOutcome *out)
{
	json_t	   *err = json_object_get(root, "error");
	char	   *status = llmgw_json_string(err, "status");

	llmgw_json_set_error(out, classify(err, status, http_status, out),
						 json_object_get(err, "message"), status);
}

static void
gemini_parse(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_t	   *root = llmgw_json_success(buf, len, http_status, out, parse_error);

	if (root == NULL)
		return;
	parse_response(root, out);
	json_decref(root);
}

/* batchEmbedContents request: one EmbedContentRequest per input */
static char *
gemini_build_embed(const char *request, size_t len, const char *upstream_model,
				   size_t *out_len, char **error)
{
	json_t	   *src = llmgw_json_loadb(request, len, 0, NULL);
	json_t	   *dims = json_object_get(src, "dimensions");
	json_t	   *requests = json_array();
	char	   *model = psprintf("models/%s", upstream_model);
	json_t	   *inputs = json_object_get(src, "input");
	size_t		i;
	json_t	   *input;

	/* an array of inputs, or one (a batch item's) */
	if (json_is_string(inputs))
		inputs = json_pack("[O]", inputs);
	else if (json_is_array(inputs))
		json_incref(inputs);
	else
	{
		json_decref(src);
		json_decref(requests);
		*error = pstrdup("the request has no input array");
		return NULL;
	}
	json_array_foreach(inputs, i, input)
	{
		json_t	   *r;

		if (!json_is_string(input))
		{
			json_decref(inputs);
			json_decref(src);
			json_decref(requests);
			*error = pstrdup("Gemini embeds text only: token arrays need an OpenAI-compatible deployment");
			return NULL;
		}
		r = json_pack("{s:s, s:{s:[{s:O}]}}", "model", model, "content", "parts", "text", input);

		if (json_is_integer(dims))
			json_object_set(r, "outputDimensionality", dims);
		json_array_append_new(requests, r);
	}
	json_decref(inputs);
	json_decref(src);
	return llmgw_json_build(json_pack("{s:o}", "requests", requests), out_len);
}

/* embeddings[].values (batch) or embedding.values (single) */
static void
gemini_parse_embed(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_t	   *root = llmgw_json_success(buf, len, http_status, out, parse_error);
	json_t	   *list;
	StringInfoData vectors;
	int			dims = 0;
	int			count = 0;
	size_t		i;
	json_t	   *e;

	if (root == NULL)
		return;
	list = json_object_get(root, "embeddings");
	if (!json_is_array(list))
		list = json_pack("[O?]", json_object_get(root, "embedding"));
	else
		json_incref(list);
	initStringInfo(&vectors);
	json_array_foreach(list, i, e)
	{
		if (!llmgw_vector_append(&vectors, json_object_get(e, "values"), &dims))
		{
			count = 0;
			break;
		}
		count++;
	}
	json_decref(list);
	llmgw_vectors_finish(out, &vectors, count, dims);
	json_decref(root);
}

static char *
gemini_embed_url(const LlmgwRoute *route)
{
	return llmgw_url_join(route->base_url,
						  psprintf("models/%s:batchEmbedContents", route->upstream_model));
}

/* Base URL including the version, e.g. https://generativelanguage.googleapis.com/v1beta */
static char *
gemini_url(const LlmgwRoute *route, bool stream)
{
	return llmgw_url_join(route->base_url,
						  psprintf(stream ? "models/%s:streamGenerateContent?alt=sse" :
								   "models/%s:generateContent", route->upstream_model));
}

static struct curl_slist *
gemini_headers(const LlmgwRoute *route, const char *secret)
{
	return llmgw_header_secret(llmgw_json_headers(), "x-goog-api-key", "", secret);
}

/*
 * Tell what one chunk of a Gemini stream carries: text, thought summaries,
 * and function calls, each whole
 */
static void
gemini_stream_delta(const char *data, size_t len, const LlmgwStreamSink *sink)
{
	bool		unreadable = false;
	json_t	   *chunk = llmgw_stream_event_json(data, len, &unreadable);
	json_t	   *candidate = json_array_get(json_object_get(chunk, "candidates"), 0);
	size_t		i;
	json_t	   *part;

	json_array_foreach(json_object_get(json_object_get(candidate, "content"), "parts"), i, part)
	{
		json_t	   *fc = json_object_get(part, "functionCall");

		const char *text = json_string_value(json_object_get(part, "text"));

		if (json_is_true(json_object_get(part, "thought")))
		{
			if (text && *text)
				sink->thinking(sink->arg, LLMGW_THINKING_REASONING, text, strlen(text));
		}
		else if (text)
			sink->text(sink->arg, text, strlen(text));
		else if (json_is_object(fc))
		{
			/* the arguments as add_candidate writes them */
			char	   *args = llmgw_json_dump(json_object_get(fc, "args"));

			sink->tool(sink->arg, -1, json_string_value(json_object_get(fc, "id")),
					   json_string_value(json_object_get(fc, "name")),
					   json_string_value(json_object_get(part, "thoughtSignature")),
					   args, strlen(args));
			pfree(args);
		}
	}
	json_decref(chunk);
}

const LlmgwProvider llmgw_provider_gemini = {
	"gemini", gemini_url, gemini_headers, gemini_build, gemini_parse,
	gemini_parse_stream, gemini_embed_url, gemini_build_embed, gemini_parse_embed,
	gemini_stream_delta
};
