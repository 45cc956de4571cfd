/*-------------------------------------------------------------------------
 *
 * frontdoor_openai.c
 *		What the front door says in the OpenAI API: chat completions (whole
 *		and as stream chunks), embeddings, model lists and error bodies,
 *		rendered from llmgw's normalised answer (response.c).
 *
 * A stream is "data: <chunk>\n\n" lines ending with "data: [DONE]": a
 * first chunk with the assistant's role, one chunk per piece of text as it
 * arrives, then the tool calls, the finish reason, the usage (when the
 * client asked for it with stream_options.include_usage) and llmgw's route
 * and billing proof in an "llmgw" member of the last chunk.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/base64.h"

#include "frontdoor_openai.h"
#include "jsonutil.h"

/* OpenAI's finish_reason for a provider's own word */
const char *
llmgw_openai_finish_reason(const char *native, bool tool_calls)
{
	static const struct
	{
		const char *native;
		const char *openai;
	}			map[] = {
		{"stop", "stop"}, {"end_turn", "stop"}, {"stop_sequence", "stop"}, {"STOP", "stop"},
		{"completed", "stop"}, {"pause_turn", "stop"},
		{"length", "length"}, {"max_tokens", "length"}, {"MAX_TOKENS", "length"},
		{"incomplete", "length"}, {"max_output_tokens", "length"},
		{"tool_calls", "tool_calls"}, {"tool_use", "tool_calls"}, {"function_call", "tool_calls"},
		{"content_filter", "content_filter"}, {"refusal", "content_filter"},
		{"SAFETY", "content_filter"}, {"RECITATION", "content_filter"},
		{"BLOCKLIST", "content_filter"}, {"PROHIBITED_CONTENT", "content_filter"},
		{"SPII", "content_filter"},
	};
	const char *reason = "stop";

	for (int i = 0; native && i < lengthof(map); i++)
		if (strcmp(map[i].native, native) == 0)
			reason = map[i].openai;
	if (tool_calls && strcmp(reason, "stop") == 0)
		reason = "tool_calls";
	return reason;
}

/* A token count of the answer's usage, or -1 when unknown */
static json_int_t
usage_count(json_t *usage, const char *name)
{
	json_t	   *v = json_object_get(usage, name);

	return json_is_integer(v) ? json_integer_value(v) : -1;
}

/* OpenAI's usage object for the normalised usage (unknown counts as 0) */
static json_t *
usage_value(json_t *usage)
{
	json_int_t	in = Max(usage_count(usage, "input_tokens"), 0);
	json_int_t	out = Max(usage_count(usage, "output_tokens"), 0);
	json_t	   *v = json_pack("{s:I, s:I, s:I}", "prompt_tokens", in, "completion_tokens", out,
							  "total_tokens", in + out);

	if (usage_count(usage, "cached_input_tokens") >= 0)
		json_object_set_new(v, "prompt_tokens_details",
							json_pack("{s:I}", "cached_tokens",
									  usage_count(usage, "cached_input_tokens")));
	if (usage_count(usage, "reasoning_tokens") >= 0)
		json_object_set_new(v, "completion_tokens_details",
							json_pack("{s:I}", "reasoning_tokens",
									  usage_count(usage, "reasoning_tokens")));
	return v;
}

/* A normalised tool call's arguments as OpenAI sends them: JSON-encoded again */
char *
llmgw_openai_tool_arguments(json_t *call)
{
	json_t	   *args = json_object_get(call, "arguments");

	return json_is_string(args) ? pstrdup(json_string_value(args)) :
		args ? llmgw_json_dump(args) : pstrdup("{}");
}

/*
 * A tool call's id, or one made from its place k when the provider gave
 * none (Gemini): a client sends it back with the call's result
 */
static char *
tool_call_id(const char *id, size_t k)
{
	return id && *id ? pstrdup(id) : psprintf("call_llmgw_%zu", k);
}

/*
 * OpenAI tool calls for the normalised ones; a Gemini call's thought
 * signature where Gemini's own OpenAI-compatible API puts it
 * (extra_content.google.thought_signature), for the next turn to send back
 */
static json_t *
tool_calls_value(json_t *calls)
{
	json_t	   *v = json_array();
	size_t		i;
	json_t	   *c;

	json_array_foreach(calls, i, c)
	{
		json_t	   *call = json_pack("{s:s, s:s, s:{s:O?, s:s}}",
									 "id", tool_call_id(json_string_value(json_object_get(c, "id")), i),
									 "type", "function",
									 "function", "name", json_object_get(c, "name"),
									 "arguments", llmgw_openai_tool_arguments(c));
		json_t	   *signature = json_object_get(c, "thought_signature");

		if (json_is_string(signature))
			json_object_set_new(call, "extra_content",
								json_pack("{s:{s:O}}", "google", "thought_signature", signature));
		json_array_append_new(v, call);
	}
	return v;
}

/*
 * An answer's extended thinking into a chat.completion message, where
 * OpenAI-compatible gateways put it: its text as reasoning_content, its
 * blocks (signatures and all, what a later turn sends back) as
 * thinking_blocks
 */
static void
set_thinking(json_t *message, json_t *answer_message)
{
	json_t	   *reasoning = json_object_get(answer_message, "reasoning_content");
	json_t	   *blocks = json_object_get(answer_message, "thinking_blocks");

	if (json_is_string(reasoning))
		json_object_set(message, "reasoning_content", reasoning);
	if (json_is_array(blocks))
		json_object_set(message, "thinking_blocks", blocks);
}

/*
 * A chat.completion for a normalised answer (borrowed); NULL when it is none.
 * Written as it is read, member by member, rather than built as a tree and
 * written (the tree took a tenth of a front-door request's instructions):
 * {"id", "object", "created", "model", "choices": [{"index", "message":
 * {"role", "content", "refusal", "tool_calls"?, "reasoning_content"?,
 * "thinking_blocks"?}, "logprobs", "finish_reason"}], "usage",
 * "system_fingerprint"}
 */
char *
llmgw_openai_completion(json_t *a, const LlmgwFrontMeta *meta)
{
	json_t	   *msg = json_object_get(a, "message");
	json_t	   *calls = json_object_get(msg, "tool_calls");
	json_t	   *content = json_object_get(msg, "content");
	json_t	   *logprobs = json_object_get(a, "logprobs");
	json_t	   *more;			/* the message's members after refusal */
	json_t	   *usage;
	const char *key;
	json_t	   *value;
	StringInfoData out;
	bool		ok;

	if (!json_is_object(a))
		return NULL;
	more = json_pack("{}");
	if (json_array_size(calls) > 0)
		json_object_set_new(more, "tool_calls", tool_calls_value(calls));
	set_thinking(more, msg);
	usage = usage_value(json_object_get(a, "usage"));

	initStringInfo(&out);
	appendStringInfoString(&out, "{\"id\":");
	ok = llmgw_json_write_text(&out, meta->id, strlen(meta->id));
	appendStringInfo(&out, ",\"object\":\"chat.completion\",\"created\":" INT64_FORMAT ",\"model\":",
					 (int64) meta->created);
	ok = ok && llmgw_json_write_text(&out, meta->model, strlen(meta->model));
	appendStringInfoString(&out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
	ok = ok && llmgw_json_write(&out, content ? content : json_null());
	appendStringInfoString(&out, ",\"refusal\":null");
	json_object_foreach(more, key, value)
	{
		appendStringInfo(&out, ",\"%s\":", key);
		ok = ok && llmgw_json_write(&out, value);
	}
	appendStringInfoString(&out, "},\"logprobs\":");
	ok = ok && llmgw_json_write(&out, logprobs ? logprobs : json_null());
	appendStringInfo(&out, ",\"finish_reason\":\"%s\"}],\"usage\":",
					 llmgw_openai_finish_reason(json_string_value(json_object_get(a, "finish_reason")),
												json_array_size(calls) > 0));
	ok = ok && llmgw_json_write(&out, usage);
	appendStringInfoString(&out, ",\"system_fingerprint\":null}");
	json_decref(more);
	json_decref(usage);
	if (ok)
		return out.data;
	pfree(out.data);
	return NULL;
}

/*
 * Append one chunk: choices [{index 0, delta, logprobs, finish_reason}], or
 * none (logprobs borrowed, NULL: null)
 */
static void
append_chunk(StringInfo out, const LlmgwFrontMeta *meta, json_t *delta, json_t *logprobs,
			 const char *finish, json_t *usage, json_t *proof)
{
	json_t	   *chunk = json_pack("{s:s, s:s, s:I, s:s, s:n}",
								  "id", meta->id, "object", "chat.completion.chunk",
								  "created", (json_int_t) meta->created, "model", meta->model,
								  "system_fingerprint");
	char	   *text;

	if (delta)
		json_object_set_new(chunk, "choices",
							json_pack("[{s:i, s:o, s:O, s:s?}]", "index", 0, "delta", delta,
									  "logprobs", logprobs ? logprobs : json_null(),
									  "finish_reason", finish));
	else
		json_object_set_new(chunk, "choices", json_array());
	if (usage)
		json_object_set_new(chunk, "usage", usage);
	if (proof)
		json_object_set_new(chunk, "llmgw", proof);
	text = llmgw_json_dump(chunk);
	appendStringInfo(out, "data: %s\n\n", text);
	pfree(text);
	json_decref(chunk);
}

/* The first chunk of a stream: the assistant's role */
void
llmgw_openai_stream_start(StringInfo out, const LlmgwFrontMeta *meta)
{
	append_chunk(out, meta, json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
				 NULL, NULL, NULL, NULL);
}

/* A piece of the answer's text */
void
llmgw_openai_stream_text(StringInfo out, const LlmgwFrontMeta *meta, const char *text, size_t len)
{
	json_t	   *piece = json_stringn(text, len);

	if (piece == NULL)
		return;					/* not UTF-8: never sent by a provider parser */
	append_chunk(out, meta, json_pack("{s:o}", "content", piece), NULL, NULL, NULL, NULL);
}

/* A piece of the answer's extended thinking text, as reasoning_content */
void
llmgw_openai_stream_reasoning(StringInfo out, const LlmgwFrontMeta *meta, const char *text,
							  size_t len)
{
	json_t	   *piece = json_stringn(text, len);

	if (piece == NULL)
		return;					/* not UTF-8: never sent by a provider parser */
	append_chunk(out, meta, json_pack("{s:o}", "reasoning_content", piece), NULL, NULL, NULL, NULL);
}

/*
 * A tool call in a stream: its start (start: its id and name, its thought
 * signature if any, args its first arguments, often "") or a piece of its
 * arguments; index is its place among the answer's tool calls
 */
void
llmgw_openai_stream_tool(StringInfo out, const LlmgwFrontMeta *meta, int index, bool start,
						 const char *id, const char *name, const char *signature,
						 const char *args, size_t len)
{
	json_t	   *piece = json_stringn(args ? args : "", args ? len : 0);
	json_t	   *call;

	if (piece == NULL)
		return;					/* not UTF-8: never sent by a provider parser */
	if (start)
	{
		call = json_pack("{s:i, s:s, s:s, s:{s:s, s:o}}", "index", index,
						 "id", tool_call_id(id, index), "type", "function",
						 "function", "name", name ? name : "", "arguments", piece);
		if (signature)
			json_object_set_new(call, "extra_content",
								json_pack("{s:{s:s}}", "google", "thought_signature", signature));
	}
	else
		call = json_pack("{s:i, s:{s:o}}", "index", index, "function", "arguments", piece);
	append_chunk(out, meta, json_pack("{s:[o]}", "tool_calls", call), NULL, NULL, NULL, NULL);
}

/*
 * The end of a stream, from the final answer: the finish reason (with the
 * answer's thinking blocks whole, signatures and all, and its logprobs
 * whole, when it has them), the usage if asked for, the proof, and [DONE]
 * (the text, the reasoning and the tool calls went before)
 */
void
llmgw_openai_stream_end(StringInfo out, const LlmgwFrontMeta *meta, const char *answer,
						bool include_usage, const char *proof)
{
	json_t	   *a = llmgw_json_load(answer, strlen(answer), NULL);
	json_t	   *calls = json_object_get(json_object_get(a, "message"), "tool_calls");
	json_t	   *blocks = json_object_get(json_object_get(a, "message"), "thinking_blocks");
	json_t	   *p = proof ? llmgw_json_load(proof, strlen(proof), NULL) : NULL;

	/* the answer's logprobs whole, with its end (clients join the chunks' lists) */
	append_chunk(out, meta, json_is_array(blocks) ?
				 json_pack("{s:O}", "thinking_blocks", blocks) : json_pack("{}"),
				 json_object_get(a, "logprobs"),
				 llmgw_openai_finish_reason(json_string_value(json_object_get(a, "finish_reason")),
							   json_array_size(calls) > 0),
				 NULL, include_usage ? NULL : p);
	if (include_usage)
		append_chunk(out, meta, NULL, NULL, NULL, usage_value(json_object_get(a, "usage")), p);
	appendStringInfoString(out, "data: [DONE]\n\n");
	json_decref(a);
}

/* OpenAI's error type for an HTTP status */
static const char *
error_type(int status)
{
	switch (status)
	{
		case 401:
			return "authentication_error";
		case 403:
			return "permission_error";
		case 404:
			return "not_found_error";
		case 429:
			return "rate_limit_error";
		default:
			return status >= 500 ? "api_error" : "invalid_request_error";
	}
}

/* The error body: {"error": {"message", "type", "param", "code"}} */
char *
llmgw_openai_error(int status, const char *code, const char *message)
{
	json_t	   *root = json_pack("{s:{s:s, s:s, s:n, s:s}}", "error", "message", message,
								 "type", error_type(status), "param", "code", code);
	char	   *text = llmgw_json_dump(root);

	json_decref(root);
	return text;
}

/* An error in the middle of a stream, and its end */
void
llmgw_openai_stream_error(StringInfo out, int status, const char *code, const char *message)
{
	char	   *body = llmgw_openai_error(status, code, message);

	appendStringInfo(out, "data: %s\n\ndata: [DONE]\n\n", body);
	pfree(body);
}

/* One vector, little-endian float32 in base64, as OpenAI's SDKs ask for */
static json_t *
vector_base64(const double *v, int n)
{
	int			len = n * 4;
	unsigned char *raw = palloc(len);
	char	   *enc = palloc(pg_b64_enc_len(len) + 1);
	int			enc_len;
	json_t	   *s;

	for (int i = 0; i < n; i++)
	{
		float		f = (float) v[i];
		uint32		bits;

		memcpy(&bits, &f, 4);
		raw[i * 4] = bits & 0xff;
		raw[i * 4 + 1] = (bits >> 8) & 0xff;
		raw[i * 4 + 2] = (bits >> 16) & 0xff;
		raw[i * 4 + 3] = (bits >> 24) & 0xff;
	}
	enc_len = pg_b64_encode((char *) raw, len, enc, pg_b64_enc_len(len));
	s = json_stringn(enc, Max(enc_len, 0));
	pfree(raw);
	pfree(enc);
	return s;
}

/*
 * The embeddings list for llmgw's vectors (one array literal "{x,y,...}"
 * per line), as floats or base64; NULL when they are unreadable
 */
char *
llmgw_openai_embeddings(const char *vectors, const char *model, bool base64,
						int64 input_tokens)
{
	json_t	   *data = json_array();
	json_t	   *root;
	const char *p = vectors ? vectors : "";
	char	   *text;
	int			index = 0;

	while (*p)
	{
		const char *end = strchr(p, '\n');
		size_t		len = end ? (size_t) (end - p) : strlen(p);
		double	   *v = palloc(sizeof(double) * (len / 2 + 1));
		int			n = 0;
		const char *q = p;
		json_t	   *emb;

		if (len < 2 || *q != '{')
		{
			json_decref(data);
			return NULL;
		}
		q++;
		while (q < p + len && *q != '}')
		{
			char	   *stop;

			v[n++] = strtod(q, &stop);
			if (stop == q)
			{
				json_decref(data);
				return NULL;
			}
			q = stop;
			if (*q == ',')
				q++;
		}
		if (base64)
			emb = vector_base64(v, n);
		else
		{
			emb = json_array();
			for (int i = 0; i < n; i++)
				json_array_append_new(emb, json_real(v[i]));
		}
		json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding",
											  "index", index++, "embedding", emb));
		pfree(v);
		p += len;
		if (*p == '\n')
			p++;
	}
	root = json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data,
					 "model", model, "usage",
					 "prompt_tokens", (json_int_t) Max(input_tokens, 0),
					 "total_tokens", (json_int_t) Max(input_tokens, 0));
	text = llmgw_json_dump(root);
	json_decref(root);
	return text;
}

/* The model list: every alias given */
char *
llmgw_openai_models(char **aliases, int n)
{
	json_t	   *data = json_array();
	json_t	   *root;
	char	   *text;

	for (int i = 0; i < n; i++)
		json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s}", "id", aliases[i],
											  "object", "model", "created", 0,
											  "owned_by", "llmgw"));
	root = json_pack("{s:s, s:o}", "object", "list", "data", data);
	text = llmgw_json_dump(root);
	json_decref(root);
	return text;
}

/* One model */
char *
llmgw_openai_model(const char *alias)
{
	json_t	   *root = json_pack("{s:s, s:s, s:i, s:s}", "id", alias, "object", "model",
								 "created", 0, "owned_by", "llmgw");
	char	   *text = llmgw_json_dump(root);

	json_decref(root);
	return text;
}
