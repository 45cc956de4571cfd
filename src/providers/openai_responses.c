/*-------------------------------------------------------------------------
 *
 * providers/openai_responses.c
 *		OpenAI Responses API wire format (provider kind openai_responses):
 *		translate llmgw's Chat Completions-shaped request, read responses,
 *		streams and errors.  Errors share the Chat Completions envelope.
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

static const char *const responses_media_types[] = {
	"image/png", "image/jpeg", "image/webp", "image/gif", NULL
};
static const char *const responses_file_types[] = {"application/pdf", NULL};
static const LlmgwPartRules responses_parts = {
	.kind = "openai_responses", .media_types = responses_media_types, .image_urls = true,
	.file_types = responses_file_types, .file_ids = true
};

/* A content part as a Responses input content item */
static json_t *
input_part(const LlmgwPart *part)
{
	json_t	   *detail = json_is_string(part->detail) ? part->detail : NULL;

	if (part->text)
		return json_pack("{s:s, s:O}", "type", "input_text", "text", part->text);
	if (part->file)
	{
		json_t	   *item = json_pack("{s:s}", "type", "input_file");

		if (part->file_id)
			json_object_set(item, "file_id", part->file_id);
		else
			json_object_set(item, "file_data", part->url);
		if (part->filename)
			json_object_set(item, "filename", part->filename);
		return item;
	}
	return json_pack("{s:s, s:O, s:s}", "type", "input_image", "image_url", part->url,
					 "detail", detail ? json_string_value(detail) : "auto");
}

/* A text part of an earlier answer, which the Responses API takes as output text */
static json_t *
output_part(const LlmgwPart *part)
{
	return json_pack("{s:s, s:O}", "type", "output_text", "text", part->text);
}

/*
 * A message's content as a Responses message's (a new reference): parts
 * translated, images in user and tool messages only; a string as it is;
 * json null when there is none.  NULL with *error set.
 */
static json_t *
message_content(json_t *content, size_t i, const char *role, char **error)
{
	bool		assistant = strcmp(role, "assistant") == 0;

	if (content == NULL || json_is_null(content))
		return json_null();
	if (json_is_string(content))
		return json_incref(content);
	return llmgw_content_translate(content, i, !assistant, &responses_parts,
								   assistant ? output_part : input_part, error);
}

/*
 * messages[i] as Responses input items appended to input; a system
 * message goes to instructions.  False with *error set when it cannot be
 * translated.
 */
static bool
translate_message(json_t *m, size_t i, json_t *input, StringInfo instructions, char **error)
{
	const char *role = json_string_value(json_object_get(m, "role"));
	json_t	   *content;
	size_t		j;
	json_t	   *call;

	if (role == NULL)
	{
		*error = psprintf("messages[%zu] has no role", i);
		return false;
	}
	if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
		return llmgw_content_text(json_object_get(m, "content"), i, &responses_parts,
								  instructions, error);
	content = message_content(json_object_get(m, "content"), i, role, error);
	if (content == NULL)
		return false;
	if (strcmp(role, "tool") == 0)
		json_array_append_new(input, json_pack("{s:s, s:O?, s:O}", "type", "function_call_output",
											   "call_id", json_object_get(m, "tool_call_id"),
											   "output", content));
	else if (!json_is_null(content))
		json_array_append_new(input, json_pack("{s:s, s:O}", "role", role, "content", content));
	json_decref(content);
	json_array_foreach(json_object_get(m, "tool_calls"), j, call)
	{
		json_t	   *fn = json_object_get(call, "function");

		json_array_append_new(input, json_pack("{s:s, s:O?, s:O?, s:O?}", "type", "function_call",
											   "call_id", json_object_get(call, "id"),
											   "name", json_object_get(fn, "name"),
											   "arguments", json_object_get(fn, "arguments")));
	}
	return true;
}

/* Function tools flattened as the Responses API wants them */
static json_t *
translate_tools(json_t *tools)
{
	json_t	   *out = json_array();
	size_t		i;
	json_t	   *t;

	json_array_foreach(tools, i, t)
	{
		json_t	   *fn = json_object_get(t, "function");

		json_array_append_new(out, json_pack("{s:s, s:O?, s:O?, s:O?}", "type", "function",
											 "name", json_object_get(fn, "name"),
											 "description", json_object_get(fn, "description"),
											 "parameters", json_object_get(fn, "parameters")));
	}
	return out;
}

/* response_format as the Responses API's text.format */
static bool
translate_response_format(json_t *src, json_t *req, char **error)
{
	LlmgwResponseFormat format;
	json_t	   *json_schema;
	json_t	   *spec;

	if (!llmgw_response_format(src, &format, &json_schema, error))
		return false;
	if (format == LLMGW_FORMAT_TEXT)
		return true;
	if (format == LLMGW_FORMAT_JSON_OBJECT)
		spec = json_pack("{s:s}", "type", "json_object");
	else
	{
		/* the json_schema's members (name, schema, strict, description) flattened */
		spec = json_copy(json_schema);
		json_object_set_new(spec, "type", json_string("json_schema"));
	}
	json_object_set_new(req, "text", json_pack("{s:o}", "format", spec));
	return true;
}

static char *
responses_build(const char *request, size_t len, const char *upstream_model,
				size_t *out_len, bool *stream, char **error)
{
	json_t	   *src = llmgw_json_loadb(request, len, 0, NULL);
	json_t	   *messages = json_object_get(src, "messages");
	json_t	   *input = json_array();
	json_t	   *req;
	json_t	   *max_tokens;
	StringInfoData instructions;
	bool		ok = json_is_object(src) && json_is_array(messages);
	LlmgwToolChoice choice;
	const char *chosen;
	size_t		i;

	if (!ok)
		*error = pstrdup("the request has no messages array");
	else
		ok = llmgw_strip_anthropic(src, error) && /* the Responses API has no such marks or blocks */
			llmgw_no_logprobs(src, "a Responses API deployment (through llmgw)", error);
	initStringInfo(&instructions);
	for (i = 0; ok && i < json_array_size(messages); i++)
		ok = translate_message(json_array_get(messages, i), i, input, &instructions, error);
	if (!ok)
	{
		json_decref(src);
		json_decref(input);
		return NULL;
	}
	req = json_pack("{s:s, s:o}", "model", upstream_model, "input", input);
	if (!translate_response_format(src, req, error))
	{
		json_decref(src);
		json_decref(req);
		return NULL;
	}
	if (instructions.len > 0)
		json_object_set_new(req, "instructions", json_string(instructions.data));
	max_tokens = json_object_get(src, "max_completion_tokens");
	if (!json_is_integer(max_tokens))
		max_tokens = json_object_get(src, "max_tokens");
	if (json_is_integer(max_tokens))
		json_object_set(req, "max_output_tokens", max_tokens);
	if (json_is_number(json_object_get(src, "temperature")))
		json_object_set(req, "temperature", json_object_get(src, "temperature"));
	if (json_is_array(json_object_get(src, "tools")))
		json_object_set_new(req, "tools", translate_tools(json_object_get(src, "tools")));
	if (!llmgw_tool_choice(src, &choice, &chosen, error))
	{
		json_decref(src);
		json_decref(req);
		return NULL;
	}
	if (choice == LLMGW_TOOLS_NAMED)
		json_object_set_new(req, "tool_choice", json_pack("{s:s, s:s}", "type", "function",
														  "name", chosen));
	else if (choice != LLMGW_TOOLS_UNSET)
		json_object_set(req, "tool_choice", json_object_get(src, "tool_choice"));
	*stream = json_is_true(json_object_get(src, "stream"));
	if (*stream)
		json_object_set_new(req, "stream", json_true());
	json_decref(src);
	return llmgw_json_build(req, out_len);
}

/* usage {input_tokens, output_tokens, *_details} into the buckets */
static void
parse_usage(json_t *usage, LlmgwOutcome *out)
{
	json_t	   *in = json_object_get(usage, "input_tokens_details");
	json_t	   *outd = json_object_get(usage, "output_tokens_details");

	if (!json_is_object(usage))
		return;
	out->tokens[LLMGW_TOKENS_INPUT] = llmgw_json_count(usage, "input_tokens");
	out->tokens[LLMGW_TOKENS_OUTPUT] = llmgw_json_count(usage, "output_tokens");
	out->tokens[LLMGW_TOKENS_CACHED_INPUT] = llmgw_json_count(in, "cached_tokens");
	out->tokens[LLMGW_TOKENS_CACHE_WRITE] = llmgw_json_count(in, "cache_write_tokens");
	out->tokens[LLMGW_TOKENS_REASONING] = llmgw_json_count(outd, "reasoning_tokens");
}

/* Class of an error object {type, code, message} */
static void
set_error(json_t *err, long http_status, LlmgwOutcome *out)
{
	const char *code = json_string_value(json_object_get(err, "code"));
	const char *type = json_string_value(json_object_get(err, "type"));
	const char *c = code ? code : type;
	LlmgwErrorClass cls = llmgw_error_class_from_http(http_status);

	if (c && strcmp(c, "insufficient_quota") == 0)
		cls = LLMGW_ERR_QUOTA;
	else if (c && strcmp(c, "context_length_exceeded") == 0)
		cls = LLMGW_ERR_CONTEXT_LENGTH;
	else if (c && strcmp(c, "model_not_found") == 0)
		cls = LLMGW_ERR_MODEL_NOT_FOUND;
	else if (c && strcmp(c, "rate_limit_exceeded") == 0)
		cls = LLMGW_ERR_RATE_LIMIT;
	else if (c && strcmp(c, "invalid_api_key") == 0)
		cls = LLMGW_ERR_AUTH;
	else if (c && (strcmp(c, "server_error") == 0 || strcmp(c, "server_is_overloaded") == 0))
		cls = strcmp(c, "server_error") == 0 ? LLMGW_ERR_SERVER : LLMGW_ERR_OVERLOADED;
	else if (http_status >= 200 && http_status < 300)
		cls = LLMGW_ERR_SERVER;
	llmgw_json_set_error(out, cls, json_object_get(err, "message"), c);
}

/* A response object: output items, status, usage */
static void
parse_response_object(json_t *resp, LlmgwOutcome *out)
{
	StringInfoData text;
	StringInfoData reasoning;
	json_t	   *calls = json_array();
	size_t		i;
	json_t	   *item;

	initStringInfo(&text);
	initStringInfo(&reasoning);
	parse_usage(json_object_get(resp, "usage"), out);
	json_array_foreach(json_object_get(resp, "output"), i, item)
	{
		const char *type = json_string_value(json_object_get(item, "type"));
		size_t		j;
		json_t	   *part;

		if (type && strcmp(type, "message") == 0)
			json_array_foreach(json_object_get(item, "content"), j, part)
			{
				const char *ptype = json_string_value(json_object_get(part, "type"));

				if (ptype && strcmp(ptype, "output_text") == 0 &&
					json_is_string(json_object_get(part, "text")))
					appendStringInfoString(&text, json_string_value(json_object_get(part, "text")));
			}
		else if (type && strcmp(type, "function_call") == 0)
			json_array_append_new(calls, json_pack("{s:O?, s:O?, s:O?}",
												   "id", json_object_get(item, "call_id"),
												   "name", json_object_get(item, "name"),
												   "arguments", json_object_get(item, "arguments")));
		/* a reasoning item's summaries, one paragraph each */
		else if (type && strcmp(type, "reasoning") == 0)
			json_array_foreach(json_object_get(item, "summary"), j, part)
				if (json_is_string(json_object_get(part, "text")))
					appendStringInfo(&reasoning, "%s%s", reasoning.len ? "\n\n" : "",
									 json_string_value(json_object_get(part, "text")));
	}
	out->text = text.data;
	out->reasoning = reasoning.len > 0 ? reasoning.data : NULL;
	if (json_array_size(calls) > 0)
		out->tool_calls = llmgw_json_dump(calls);
	json_decref(calls);
	out->finish_reason = llmgw_json_string(resp, "status");
	if (json_is_object(json_object_get(resp, "error")))
		set_error(json_object_get(resp, "error"), 200, out);
	else
	{
		out->status = LLMGW_STATUS_OK;
		out->error = LLMGW_ERR_NONE;
	}
}

/* The error envelope of a whole body */
static void
set_error_body(json_t *root, long http_status, LlmgwOutcome *out)
{
	set_error(json_object_get(root, "error"), http_status, out);
}

static void
responses_parse(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_t	   *root = llmgw_json_success(buf, len, http_status, out, set_error_body);

	if (root == NULL)
		return;
	parse_response_object(root, out);
	json_decref(root);
}

/* What a Responses stream has said so far */
typedef struct ResponsesStream
{
	LlmgwStream base;			/* text: output_text deltas; done: a
								 * response.completed/incomplete/failed arrived */
} ResponsesStream;

/* One event of a Responses stream */
static void
responses_stream_event(void *arg, const char *event, const char *data, size_t len)
{
	ResponsesStream *st = arg;
	json_t	   *ev;
	const char *type;

	ev = llmgw_stream_event_json(data, len, &st->base.unreadable);
	type = json_string_value(json_object_get(ev, "type"));
	if (ev == NULL || type == NULL)
		;
	else if (strcmp(type, "response.output_text.delta") == 0 &&
			 json_is_string(json_object_get(ev, "delta")))
		appendStringInfoString(&st->base.text, json_string_value(json_object_get(ev, "delta")));
	else if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0 ||
			 strcmp(type, "response.failed") == 0)
	{
		LlmgwErrorClass error = st->base.out->error;
		LlmgwStatus status = st->base.out->status;

		parse_response_object(json_object_get(ev, "response"), st->base.out);
		st->base.done = true;
		if (st->base.failed)
		{
			/* the error event said why; keep it */
			st->base.out->status = status;
			st->base.out->error = error;
		}
	}
	else if (strcmp(type, "error") == 0)
	{
		json_t	   *err = json_object_get(ev, "error");

		set_error(json_is_object(err) ? err : ev, 200, st->base.out);
		st->base.failed = true;
	}
	json_decref(ev);
}

static void
responses_parse_stream(const char *buf, size_t len, LlmgwOutcome *out)
{
	ResponsesStream st;

	memset(&st, 0, sizeof(st));
	llmgw_stream_read(&st.base, out, buf, len, responses_stream_event);
	/* the text of a stream is what its deltas said */
	if (st.base.text.len > 0 || !st.base.done || st.base.unreadable)
		out->text = st.base.text.data;
	(void) llmgw_stream_whole(&st.base);
}

static char *
responses_url(const LlmgwRoute *route, bool stream)
{
	return llmgw_url_join(route->base_url, "responses");
}

/* Headers and embeddings are OpenAI's own */
/*
 * Tell what one event of a Responses stream carries: its text, its
 * reasoning summaries (a new summary after another starts with a blank
 * line, as the response's reasoning joins them), and its function calls
 * (output items) with their arguments' pieces
 */
static void
responses_stream_delta(const char *data, size_t len, const LlmgwStreamSink *sink)
{
	bool		unreadable = false;
	json_t	   *ev = llmgw_stream_event_json(data, len, &unreadable);
	const char *type = json_string_value(json_object_get(ev, "type"));
	const char *delta = json_string_value(json_object_get(ev, "delta"));
	json_t	   *item = json_object_get(ev, "item");
	const char *itype = json_string_value(json_object_get(item, "type"));
	int			key = llmgw_stream_key(json_object_get(ev, "output_index"), 0);

	if (type == NULL)
		;						/* nothing to tell */
	else if (strcmp(type, "response.output_text.delta") == 0 && delta)
		sink->text(sink->arg, delta, strlen(delta));
	else if (strcmp(type, "response.reasoning_summary_text.delta") == 0 && delta && *delta)
		sink->thinking(sink->arg, LLMGW_THINKING_REASONING, delta, strlen(delta));
	else if (strcmp(type, "response.reasoning_summary_part.added") == 0 &&
			 llmgw_stream_key(json_object_get(ev, "summary_index"), 0) > 0)
		sink->thinking(sink->arg, LLMGW_THINKING_REASONING, "\n\n", 2);
	else if (key < 0)
		;						/* not an output item of ours */
	else if (strcmp(type, "response.output_item.added") == 0 && itype &&
			 strcmp(itype, "function_call") == 0)
		sink->tool(sink->arg, key, json_string_value(json_object_get(item, "call_id")),
				   json_string_value(json_object_get(item, "name")), NULL, NULL, 0);
	else if (strcmp(type, "response.function_call_arguments.delta") == 0 && delta)
		sink->tool(sink->arg, key, NULL, NULL, NULL, delta, strlen(delta));
	json_decref(ev);
}

const LlmgwProvider llmgw_provider_responses = {
	"openai_responses", responses_url, llmgw_openai_headers, responses_build, responses_parse,
	responses_parse_stream, llmgw_openai_embed_url, llmgw_openai_build_embed,
	llmgw_openai_parse_embed, responses_stream_delta
};
