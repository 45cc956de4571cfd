/*-------------------------------------------------------------------------
 *
 * providers/openai.c
 *		OpenAI Chat Completions wire format, used by OpenAI, Azure OpenAI
 *		and OpenAI-compatible servers (vLLM, Ollama, Groq, Together,
 *		DeepSeek, Mistral), with their usage quirks.
 *
 * llmgw's own request shape is already Chat Completions, so building a
 * body only sets the upstream model.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "common/base64.h"
#include "lib/stringinfo.h"

#include "provider.h"
#include "jsonutil.h"
#include "sse.h"
#include "translate.h"

/*
 * What an assistant message may carry back of llmgw's normalised answer
 * that Chat Completions does not take: its reasoning_content (reasoning is
 * not input: DeepSeek refuses it) and its tool calls' thought_signature
 * (Gemini's; Gemini's own OpenAI-compatible API takes it in extra_content,
 * which is passed on as the caller gave it)
 */
static void
strip_answer_members(json_t *request)
{
	size_t		i, j;
	json_t	   *m, *call;

	json_array_foreach(json_object_get(request, "messages"), i, m)
	{
		json_object_del(m, "reasoning_content");
		json_array_foreach(json_object_get(m, "tool_calls"), j, call)
			json_object_del(call, "thought_signature");
	}
}

/*
 * The caller's request with the upstream model set.  A streamed request
 * always asks for the final usage chunk: usage is never dropped.
 */
static char *
openai_build(const char *request, size_t len, const char *upstream_model,
			 size_t *out_len, bool *stream, char **error)
{
	json_t	   *root = llmgw_json_loadb(request, len, 0, NULL);

	if (!json_is_object(root))
	{
		json_decref(root);
		*error = pstrdup("the request is not a JSON object");
		return NULL;
	}
	/* prompt-cache marks and thinking are Anthropic's: Chat Completions caches on its own */
	if (!llmgw_strip_anthropic(root, error))
	{
		json_decref(root);
		return NULL;
	}
	strip_answer_members(root);
	json_object_set_new(root, "model", json_string(upstream_model));
	*stream = json_is_true(json_object_get(root, "stream"));
	if (*stream)
		json_object_set_new(root, "stream_options", json_pack("{s:b}", "include_usage", 1));
	return llmgw_json_build(root, out_len);
}

/* Fill in a bucket only if no earlier field reported it */
static void
fill_bucket(LlmgwOutcome *out, LlmgwBucket b, int64 value)
{
	if (out->tokens[b] == LLMGW_TOKENS_UNKNOWN)
		out->tokens[b] = value;
}

/* Read the usage block into the normalised buckets */
static void
parse_usage(json_t *usage, LlmgwOutcome *out)
{
	json_t	   *details;

	if (!json_is_object(usage))
		return;
	out->tokens[LLMGW_TOKENS_INPUT] = llmgw_json_count(usage, "prompt_tokens");
	out->tokens[LLMGW_TOKENS_OUTPUT] = llmgw_json_count(usage, "completion_tokens");
	details = json_object_get(usage, "prompt_tokens_details");
	if (json_is_object(details))
	{
		out->tokens[LLMGW_TOKENS_CACHED_INPUT] = llmgw_json_count(details, "cached_tokens");
		out->tokens[LLMGW_TOKENS_CACHE_WRITE] = llmgw_json_count(details, "cache_write_tokens");
	}
	details = json_object_get(usage, "completion_tokens_details");
	if (json_is_object(details))
		out->tokens[LLMGW_TOKENS_REASONING] = llmgw_json_count(details, "reasoning_tokens");
	/* DeepSeek and Together report cache hits in fields of their own */
	fill_bucket(out, LLMGW_TOKENS_CACHED_INPUT, llmgw_json_count(usage, "prompt_cache_hit_tokens"));
	fill_bucket(out, LLMGW_TOKENS_CACHED_INPUT, llmgw_json_count(usage, "cached_tokens"));
}

/* Classify an error from the provider's code or type */
static LlmgwErrorClass
classify(long http_status, const char *code, const char *type)
{
	const char *keys[2] = {code, type};

	for (int i = 0; i < 2; i++)
	{
		const char *c = keys[i];

		if (c == NULL)
			continue;
		if (strcmp(c, "insufficient_quota") == 0)
			return LLMGW_ERR_QUOTA;
		if (strcmp(c, "context_length_exceeded") == 0)
			return LLMGW_ERR_CONTEXT_LENGTH;
		if (strcmp(c, "request_too_large") == 0)
			return LLMGW_ERR_REQUEST_TOO_LARGE;
		if (strcmp(c, "content_filter") == 0 || strcmp(c, "content_policy_violation") == 0)
			return LLMGW_ERR_CONTENT_FILTER;
		if (strcmp(c, "model_not_found") == 0)
			return LLMGW_ERR_MODEL_NOT_FOUND;
		if (strcmp(c, "invalid_api_key") == 0)
			return LLMGW_ERR_AUTH;
		if (strcmp(c, "rate_limit_exceeded") == 0)
			return LLMGW_ERR_RATE_LIMIT;
		if (strcmp(c, "server_is_overloaded") == 0 || strcmp(c, "overloaded_error") == 0)
			return LLMGW_ERR_OVERLOADED;
		/* an error event inside a 200 stream: the status says nothing */
		if (strcmp(c, "server_error") == 0 && http_status < 300)
			return LLMGW_ERR_SERVER;
	}
	return llmgw_error_class_from_http(http_status);
}

/* {"error": {"message", "type", "code"}} */
static void
parse_error(json_t *root, long http_status, LlmgwOutcome *out)
{
	json_t	   *err = json_object_get(root, "error");
	json_t	   *code = json_object_get(err, "code");
	char	   *type = llmgw_json_string(err, "type");
	char	   *code_text = NULL;

	if (json_is_string(code))
		code_text = pstrdup(json_string_value(code));
	else if (json_is_integer(code))
		code_text = psprintf("%lld", (long long) json_integer_value(code));
	if (json_is_string(err))
		llmgw_json_set_error(out, LLMGW_ERR_NONE, err, NULL);
	else
		llmgw_json_set_error(out, LLMGW_ERR_NONE, json_object_get(err, "message"), code_text);
	out->error = classify(http_status, code_text, type);
}

/* Assistant text: a string, or (Mistral) an array of typed parts */
static char *
message_text(json_t *message)
{
	json_t	   *content = json_object_get(message, "content");

	if (json_is_string(content))
		return pnstrdup(json_string_value(content), json_string_length(content));
	if (json_is_array(content))
	{
		StringInfoData buf;
		size_t		i;
		json_t	   *part;

		initStringInfo(&buf);
		json_array_foreach(content, i, part)
		{
			if (json_is_string(json_object_get(part, "type")) &&
				strcmp(json_string_value(json_object_get(part, "type")), "text") == 0 &&
				json_is_string(json_object_get(part, "text")))
				appendStringInfoString(&buf, json_string_value(json_object_get(part, "text")));
		}
		return buf.data;
	}
	/* no content: the refusal if there is one, else empty */
	if (json_is_string(json_object_get(message, "refusal")))
		return llmgw_json_string(message, "refusal");
	return pstrdup("");
}

/*
 * The reasoning a message gives apart from its text: reasoning_content
 * (DeepSeek, vLLM, Qwen), reasoning (OpenRouter, Groq), or (Magistral) the
 * text of thinking parts of its content; NULL when none
 */
static char *
message_reasoning(json_t *message)
{
	json_t	   *given = json_object_get(message, "reasoning_content");
	StringInfoData buf;
	size_t		i;
	json_t	   *part;

	if (!json_is_string(given) || json_string_length(given) == 0)
		given = json_object_get(message, "reasoning");
	if (json_is_string(given) && json_string_length(given) > 0)
		return pnstrdup(json_string_value(given), json_string_length(given));
	initStringInfo(&buf);
	json_array_foreach(json_object_get(message, "content"), i, part)
	{
		json_t	   *thinking = json_object_get(part, "thinking");
		size_t		j;
		json_t	   *t;

		if (!json_is_string(json_object_get(part, "type")) ||
			strcmp(json_string_value(json_object_get(part, "type")), "thinking") != 0)
			continue;
		if (json_is_string(thinking))
			appendStringInfoString(&buf, json_string_value(thinking));
		json_array_foreach(thinking, j, t)
			if (json_is_string(json_object_get(t, "text")))
				appendStringInfoString(&buf, json_string_value(json_object_get(t, "text")));
	}
	return buf.len > 0 ? buf.data : NULL;
}

/* A piece of reasoning in a stream's delta, or NULL */
static const char *
delta_reasoning(json_t *delta)
{
	const char *piece = json_string_value(json_object_get(delta, "reasoning_content"));

	return piece && *piece ? piece : json_string_value(json_object_get(delta, "reasoning"));
}

/* Tool calls as [{"id", "name", "arguments"}], arguments kept as sent */
static char *
tool_calls(json_t *message)
{
	json_t	   *calls = json_object_get(message, "tool_calls");
	json_t	   *norm;
	size_t		i;
	json_t	   *call;
	char	   *text;

	if (!json_is_array(calls) || json_array_size(calls) == 0)
		return NULL;
	norm = json_array();
	json_array_foreach(calls, i, call)
	{
		json_t	   *fn = json_object_get(call, "function");
		json_t	   *args = json_object_get(fn, "arguments");

		json_array_append_new(norm, json_pack("{s:O?, s:O?, s:O?}",
											  "id", json_object_get(call, "id"),
											  "name", json_object_get(fn, "name"),
											  "arguments", args));
	}
	text = llmgw_json_dump(norm);
	json_decref(norm);
	return text;
}

/* A successful chat completion */
static void
parse_completion(json_t *root, LlmgwOutcome *out)
{
	json_t	   *choice = json_array_get(json_object_get(root, "choices"), 0);
	json_t	   *message = json_object_get(choice, "message");
	json_t	   *usage = json_object_get(root, "usage");

	/* Groq used to report usage only under x_groq */
	if (!json_is_object(usage))
		usage = json_object_get(json_object_get(root, "x_groq"), "usage");
	parse_usage(usage, out);

	if (!json_is_object(message))
	{
		out->status = LLMGW_STATUS_ERROR;
		out->error = LLMGW_ERR_MALFORMED;
		out->provider_message = pstrdup("the response has no choices[0].message object");
		return;
	}
	out->status = LLMGW_STATUS_OK;
	out->text = message_text(message);
	out->reasoning = message_reasoning(message);
	out->tool_calls = tool_calls(message);
	if (json_is_object(json_object_get(choice, "logprobs")))
		out->logprobs = llmgw_json_dump(json_object_get(choice, "logprobs"));
	out->finish_reason = llmgw_json_string(choice, "finish_reason");
	/* vLLM says which stop sequence ended the answer (a token id: not one) */
	out->stop_sequence = llmgw_json_string(choice, "stop_reason");
	if (out->finish_reason && strcmp(out->finish_reason, "content_filter") == 0)
	{
		out->status = LLMGW_STATUS_ERROR;
		out->error = LLMGW_ERR_CONTENT_FILTER;
		out->provider_message = pstrdup("the completion was filtered (finish_reason content_filter)");
	}
}

/* Turn an HTTP response into an outcome */
static void
openai_parse(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_t	   *root = llmgw_json_success(buf, len, http_status, out, parse_error);

	if (root == NULL)
		return;
	parse_completion(root, out);
	json_decref(root);
}

/* What a chat stream has said so far */
typedef struct OpenaiStream
{
	LlmgwStream base;			/* done: the terminal "[DONE]" arrived */
	json_t	   *calls;			/* [{id, name, arguments}] by tool call index */
	json_t	   *logprobs;		/* the chunks' logprobs joined: {"content": [...],
								 * "refusal": [...]}, NULL until one has some */
} OpenaiStream;

/* Append a chunk's logprobs (each of its lists) to the stream's */
static void
add_logprobs(OpenaiStream *st, json_t *logprobs)
{
	static const char *const lists[] = {"content", "refusal"};

	if (!json_is_object(logprobs))
		return;
	if (st->logprobs == NULL)
		st->logprobs = json_pack("{}");
	for (int k = 0; k < lengthof(lists); k++)
	{
		json_t	   *items = json_object_get(logprobs, lists[k]);

		if (!json_is_array(items))
			continue;
		if (!json_is_array(json_object_get(st->logprobs, lists[k])))
			json_object_set_new(st->logprobs, lists[k], json_array());
		json_array_extend(json_object_get(st->logprobs, lists[k]), items);
	}
}

/* Append a tool call delta to the call with its index */
static void
add_tool_delta(OpenaiStream *st, json_t *delta)
{
	int			i = llmgw_stream_key(json_object_get(delta, "index"), 0);
	json_t	   *fn = json_object_get(delta, "function");
	json_t	   *call;
	const char *piece = json_string_value(json_object_get(fn, "arguments"));

	if (i < 0)
		return;
	while (json_array_size(st->calls) <= (size_t) i)
		json_array_append_new(st->calls, json_pack("{s:s}", "arguments", ""));
	call = json_array_get(st->calls, i);
	if (json_is_string(json_object_get(delta, "id")))
		json_object_set(call, "id", json_object_get(delta, "id"));
	if (json_is_string(json_object_get(fn, "name")))
		json_object_set(call, "name", json_object_get(fn, "name"));
	if (piece && *piece)
	{
		const char *so_far = json_string_value(json_object_get(call, "arguments"));
		char	   *joined = psprintf("%s%s", so_far ? so_far : "", piece);

		json_object_set_new(call, "arguments", json_string(joined));
	}
}

/* One chunk of a chat stream */
static void
openai_stream_event(void *arg, const char *event, const char *data, size_t len)
{
	OpenaiStream *st = arg;
	json_t	   *chunk;
	json_t	   *usage;
	json_t	   *choice;
	json_t	   *delta;
	size_t		i;
	size_t		j;
	json_t	   *call;

	if (len == 6 && memcmp(data, "[DONE]", 6) == 0)
	{
		st->base.done = true;
		return;
	}
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
	usage = json_object_get(chunk, "usage");
	if (!json_is_object(usage))
		usage = json_object_get(json_object_get(chunk, "x_groq"), "usage");
	if (json_is_object(usage))
		parse_usage(usage, st->base.out);
	json_array_foreach(json_object_get(chunk, "choices"), i, choice)
	{
		json_t	   *index = json_object_get(choice, "index");

		if (json_is_integer(index) && json_integer_value(index) != 0)
			continue;			/* n > 1: the first choice is the answer */
		delta = json_object_get(choice, "delta");
		if (json_is_string(json_object_get(delta, "content")))
			appendStringInfoString(&st->base.text, json_string_value(json_object_get(delta, "content")));
		if (delta_reasoning(delta))
			appendStringInfoString(&st->base.reasoning, delta_reasoning(delta));
		json_array_foreach(json_object_get(delta, "tool_calls"), j, call)
			add_tool_delta(st, call);
		add_logprobs(st, json_object_get(choice, "logprobs"));
		if (json_is_string(json_object_get(choice, "finish_reason")))
			st->base.out->finish_reason = llmgw_json_string(choice, "finish_reason");
		if (json_is_string(json_object_get(choice, "stop_reason")))
			st->base.out->stop_sequence = llmgw_json_string(choice, "stop_reason");
	}
	json_decref(chunk);
}

/* Read a complete chat stream */
static void
openai_parse_stream(const char *buf, size_t len, LlmgwOutcome *out)
{
	OpenaiStream st;

	memset(&st, 0, sizeof(st));
	st.calls = json_array();
	llmgw_stream_read(&st.base, out, buf, len, openai_stream_event);
	out->text = st.base.text.data;
	if (llmgw_stream_whole(&st.base))
	{
		out->status = LLMGW_STATUS_OK;
		if (json_array_size(st.calls) > 0)
			out->tool_calls = llmgw_json_dump(st.calls);
		if (st.logprobs)
			out->logprobs = llmgw_json_dump(st.logprobs);
		if (out->finish_reason && strcmp(out->finish_reason, "content_filter") == 0)
		{
			out->status = LLMGW_STATUS_ERROR;
			out->error = LLMGW_ERR_CONTENT_FILTER;
			out->provider_message = pstrdup("the completion was filtered (finish_reason content_filter)");
		}
	}
	json_decref(st.calls);
	json_decref(st.logprobs);
}

/*
 * Tell what one chunk of a chat stream carries (its first choice's delta):
 * its reasoning, text and tool calls
 */
static void
openai_stream_delta(const char *data, size_t len, const LlmgwStreamSink *sink)
{
	bool		unreadable = false;
	json_t	   *chunk = llmgw_stream_event_json(data, len, &unreadable);
	size_t		i;
	json_t	   *choice;

	json_array_foreach(json_object_get(chunk, "choices"), i, choice)
	{
		json_t	   *index = json_object_get(choice, "index");
		json_t	   *delta = json_object_get(choice, "delta");
		json_t	   *content = json_object_get(delta, "content");
		size_t		j;
		json_t	   *call;

		if (json_is_integer(index) && json_integer_value(index) != 0)
			continue;
		if (delta_reasoning(delta) && *delta_reasoning(delta))
			sink->thinking(sink->arg, LLMGW_THINKING_REASONING, delta_reasoning(delta),
						   strlen(delta_reasoning(delta)));
		if (json_is_string(content))
			sink->text(sink->arg, json_string_value(content), strlen(json_string_value(content)));
		json_array_foreach(json_object_get(delta, "tool_calls"), j, call)
		{
			json_t	   *fn = json_object_get(call, "function");
			const char *args = json_string_value(json_object_get(fn, "arguments"));
			int			key = llmgw_stream_key(json_object_get(call, "index"), 0);

			if (key >= 0)
				sink->tool(sink->arg, key, json_string_value(json_object_get(call, "id")),
						   json_string_value(json_object_get(fn, "name")), NULL,
						   args, args ? strlen(args) : 0);
		}
	}
	json_decref(chunk);
}

/* The embeddings request: {"model", "input": [...], "dimensions"?} */
char *
llmgw_openai_build_embed(const char *request, size_t len, const char *upstream_model,
				   size_t *out_len, char **error)
{
	json_t	   *root = llmgw_json_loadb(request, len, 0, NULL);

	if (!json_is_object(root))
	{
		json_decref(root);
		*error = pstrdup("the request is not a JSON object");
		return NULL;
	}
	json_object_set_new(root, "model", json_string(upstream_model));
	return llmgw_json_build(root, out_len);
}

/*
 * A base64 string of little-endian float32 values as a JSON array; NULL if
 * invalid.  The URL-safe alphabet is read too.
 */
static json_t *
base64_floats(const char *s)
{
	int			n = (int) strlen(s);
	char	   *std = pstrdup(s);
	int			cap = pg_b64_dec_len(n);
	unsigned char *bytes = palloc(cap + 1);
	int			nbytes;
	json_t	   *values;

	for (int i = 0; i < n; i++)
		std[i] = std[i] == '-' ? '+' : std[i] == '_' ? '/' : std[i];
	nbytes = pg_b64_decode(std, n, (char *) bytes, cap);
	if (nbytes <= 0 || nbytes % 4 != 0)
		return NULL;
	values = json_array();
	for (int i = 0; i < nbytes; i += 4)
	{
		uint32		u = (uint32) bytes[i] | (uint32) bytes[i + 1] << 8 |
			(uint32) bytes[i + 2] << 16 | (uint32) bytes[i + 3] << 24;
		float		f;

		memcpy(&f, &u, sizeof(f));
		json_array_append_new(values, json_real(f));
	}
	return values;
}

/* An embeddings response: data[] in index order, float arrays or base64 */
void
llmgw_openai_parse_embed(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_t	   *root = llmgw_json_success(buf, len, http_status, out, parse_error);
	json_t	   *data;
	StringInfoData vectors;
	int			dims = 0;
	size_t		count;
	json_t	   *usage;

	if (root == NULL)
		return;
	usage = json_object_get(root, "usage");
	if (json_is_object(usage))
	{
		out->tokens[LLMGW_TOKENS_INPUT] = llmgw_json_count(usage, "prompt_tokens");
		out->tokens[LLMGW_TOKENS_OUTPUT] = 0;	/* embeddings bill no output */
	}
	data = json_object_get(root, "data");
	count = json_array_size(data);
	initStringInfo(&vectors);
	for (size_t want = 0; want < count; want++)
	{
		size_t		i;
		json_t	   *item;
		json_t	   *found = NULL;

		/* the index field orders the vectors; they usually come in order */
		json_array_foreach(data, i, item)
		{
			json_t	   *index = json_object_get(item, "index");

			if (json_is_integer(index) ? (size_t) json_integer_value(index) == want : i == want)
			{
				found = item;
				break;
			}
		}
		if (found)
		{
			json_t	   *emb = json_object_get(found, "embedding");
			json_t	   *values = json_is_string(emb) ? base64_floats(json_string_value(emb)) :
				json_incref(emb);
			bool		ok = llmgw_vector_append(&vectors, values, &dims);

			json_decref(values);
			if (!ok)
				found = NULL;
		}
		if (found == NULL)
		{
			count = 0;
			break;
		}
	}
	llmgw_vectors_finish(out, &vectors, (int) count, dims);
	json_decref(root);
}

char *
llmgw_openai_embed_url(const LlmgwRoute *route)
{
	return llmgw_url_join(route->base_url, "embeddings");
}

static char *
openai_url(const LlmgwRoute *route, bool stream)
{
	return llmgw_url_join(route->base_url, "chat/completions");
}

struct curl_slist *
llmgw_openai_headers(const LlmgwRoute *route, const char *secret)
{
	return llmgw_header_secret(llmgw_json_headers(), "Authorization", "Bearer ", secret);
}

const LlmgwProvider llmgw_provider_openai = {
	"openai", openai_url, llmgw_openai_headers, openai_build, openai_parse,
	openai_parse_stream, llmgw_openai_embed_url, llmgw_openai_build_embed, llmgw_openai_parse_embed,
	openai_stream_delta
};

/*
 * Azure OpenAI.  With an api_version, the classic deployment URL
 * (/openai/deployments/{deployment}/chat/completions?api-version=...),
 * where the deployment is the upstream model; without one, the v1 surface
 * (/openai/v1/chat/completions) with the model in the body.
 */
static char *
azure_endpoint(const LlmgwRoute *route, const char *operation)
{
	if (route->api_version == NULL)
		return llmgw_url_join(route->base_url, psprintf("openai/v1/%s", operation));
	return llmgw_url_join(route->base_url,
						  psprintf("openai/deployments/%s/%s?api-version=%s",
								   route->upstream_model, operation, route->api_version));
}

static char *
azure_url(const LlmgwRoute *route, bool stream)
{
	return azure_endpoint(route, "chat/completions");
}

static char *
azure_embed_url(const LlmgwRoute *route)
{
	return azure_endpoint(route, "embeddings");
}

static struct curl_slist *
azure_headers(const LlmgwRoute *route, const char *secret)
{
	return llmgw_header_secret(llmgw_json_headers(), "api-key", "", secret);
}

const LlmgwProvider llmgw_provider_azure = {
	"azure", azure_url, azure_headers, openai_build, openai_parse,
	openai_parse_stream, azure_embed_url, llmgw_openai_build_embed, llmgw_openai_parse_embed,
	openai_stream_delta
};
