/*
 * Conformance of the wire-format parsers against ../shared/corpus, without
 * a server: every JSON chat response of the corpus goes through its
 * provider's parser and every expected field is compared.  Some built-in
 * cases come first: answers to requests that llmgw itself translated (the
 * response_format tool of Anthropic), which the corpus does not record.
 * Prints one line per case and "N passed, M failed, K skipped".
 */
#include "postgres.h"

#include <dirent.h>
#include <math.h>
#include <time.h>
#include <stdio.h>
#include <unistd.h>

#include "provider.h"
#include "jsonutil.h"
#include "pg_stubs.h"

#undef printf
#undef qsort
#undef snprintf
#undef vsnprintf

static int	failures_in_case;

/* Report one mismatch */
static void
mismatch(const char *id, const char *field, const char *want, const char *got)
{
	printf("  %s: %s expected %s, got %s\n", id, field, want ? want : "null", got ? got : "null");
	failures_in_case++;
}

/* Compare a token bucket */
static void
check_count(const char *id, json_t *expected, const char *field, int64 got)
{
	json_t	   *want = json_object_get(expected, field);
	char		w[32], g[32];

	snprintf(w, sizeof(w), "%lld", (long long) json_number_value(want));
	snprintf(g, sizeof(g), "%lld", (long long) got);
	if (json_is_null(want) || want == NULL)
	{
		if (got != LLMGW_TOKENS_UNKNOWN)
			mismatch(id, field, NULL, g);
	}
	else if (got != (int64) json_number_value(want))
		mismatch(id, field, w, got == LLMGW_TOKENS_UNKNOWN ? NULL : g);
}

/* Compare a string field */
static void
check_string(const char *id, json_t *expected, const char *field, const char *got)
{
	const char *want = json_string_value(json_object_get(expected, field));

	if ((want == NULL) != (got == NULL) || (want && strcmp(want, got) != 0))
		mismatch(id, field, want, got);
}

/* The corpus's coarser error vocabulary */
static const char *
corpus_class(LlmgwErrorClass cls)
{
	if (cls == LLMGW_ERR_QUOTA)
		return "rate_limit";
	if (cls == LLMGW_ERR_MODEL_NOT_FOUND)
		return "invalid_request";
	return llmgw_error_class_name(cls);
}

/* Compare tool calls by name and arguments */
static void
check_tools(const char *id, json_t *expected, const char *got)
{
	json_t	   *want = json_object_get(expected, "tool_calls");
	json_t	   *have = got ? json_loads(got, 0, NULL) : json_array();
	size_t		i;
	json_t	   *w;

	if (!json_is_array(want))
	{
		json_decref(have);
		return;
	}
	if (json_array_size(want) != json_array_size(have))
		mismatch(id, "tool_calls", "a different count", got);
	else
		json_array_foreach(want, i, w)
		{
			json_t	   *h = json_array_get(have, i);
			json_t	   *wa = json_loads(json_string_value(json_object_get(w, "arguments")), 0, NULL);
			json_t	   *ha = json_loads(json_string_value(json_object_get(h, "arguments")), 0, NULL);

			if (!json_equal(json_object_get(w, "name"), json_object_get(h, "name")) ||
				!json_equal(wa, ha))
				mismatch(id, "tool_calls", json_string_value(json_object_get(w, "arguments")), got);
			json_decref(wa);
			json_decref(ha);
		}
	json_decref(have);
}

/* Is the case an embeddings call? */
static bool
is_embedding(json_t *c)
{
	const char *endpoint = json_string_value(json_object_get(c, "endpoint"));

	return strcmp(endpoint, "embeddings") == 0 || strcmp(endpoint, "embedContent") == 0 ||
		strcmp(endpoint, "batchEmbedContents") == 0;
}

/* Compare embeddings: count, dimensions, first vector when given */
static void
check_embeddings(const char *id, json_t *expected, const LlmgwOutcome *out)
{
	json_t	   *first = json_object_get(expected, "decoded_first_vector");
	char		got[64];

	snprintf(got, sizeof(got), "%d x %d", out->embedding_count, out->embedding_dims);
	if (out->embedding_count != json_number_value(json_object_get(expected, "embedding_count")) ||
		out->embedding_dims != json_number_value(json_object_get(expected, "embedding_dimensions")))
		mismatch(id, "embeddings", "another count or dimension", got);
	if (json_is_array(first) && out->embeddings)
	{
		char	   *p = out->embeddings + 1;
		size_t		i;
		json_t	   *v;

		json_array_foreach(first, i, v)
		{
			double		x = strtod(p, &p);

			if (fabs(x - json_number_value(v)) > 1e-6)
				mismatch(id, "decoded_first_vector", "another value", got);
			p++;
		}
	}
}

/* The parser of a case, or NULL when the endpoint is not supported */
static const LlmgwProvider *
case_provider(json_t *c)
{
	const char *provider = json_string_value(json_object_get(c, "provider"));
	const char *endpoint = json_string_value(json_object_get(c, "endpoint"));
	json_t	   *resp = json_object_get(c, "response");

	if (strcmp(endpoint, "embeddings") == 0)
		return &llmgw_provider_openai;
	if (strcmp(endpoint, "embedContent") == 0 || strcmp(endpoint, "batchEmbedContents") == 0)
		return &llmgw_provider_gemini;
	if (strcmp(endpoint, "chat.completions") == 0)
		return strcmp(provider, "azure") == 0 ? &llmgw_provider_azure : &llmgw_provider_openai;
	if (strcmp(endpoint, "responses") == 0)
		return &llmgw_provider_responses;
	if (strcmp(endpoint, "messages") == 0)
		return &llmgw_provider_anthropic;
	if (strcmp(endpoint, "generateContent") == 0 || strcmp(endpoint, "streamGenerateContent") == 0)
		return &llmgw_provider_gemini;
	return NULL;
}

/* The response bytes of a case: body_file if recorded, else the parsed body */
static char *
case_body(const char *dir, json_t *resp, size_t *len)
{
	const char *file = json_string_value(json_object_get(resp, "sse_file"));
	json_t	   *body = json_object_get(resp, "body");

	if (file == NULL)
		file = json_string_value(json_object_get(resp, "body_file"));
	if (file)
	{
		char		path[4096];
		FILE	   *f;
		char	   *buf = NULL;

		snprintf(path, sizeof(path), "%s/%s", dir, file);
		if ((f = fopen(path, "rb")) != NULL)
		{
			fseek(f, 0, SEEK_END);
			*len = ftell(f);
			fseek(f, 0, SEEK_SET);
			buf = palloc(*len + 1);
			*len = fread(buf, 1, *len, f);
			buf[*len] = '\0';
			fclose(f);
			return buf;
		}
	}
	if (body)
	{
		char	   *s = llmgw_json_dump(body);

		*len = strlen(s);
		return s;
	}
	*len = 0;
	return pstrdup("");
}

/*
 * The thinking blocks read (JSON text, or NULL) against those of content,
 * an Anthropic message's content blocks: the same blocks, as they came
 */
static void
check_thinking(const char *id, json_t *content, const char *got)
{
	json_t	   *want = json_array();
	json_t	   *have = got ? json_loads(got, 0, NULL) : json_array();
	size_t		i;
	json_t	   *b;

	json_array_foreach(content, i, b)
	{
		const char *type = json_string_value(json_object_get(b, "type"));

		if (type && (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0))
			json_array_append(want, b);
	}
	if (!json_equal(want, have) || (got != NULL && json_array_size(want) == 0))
		mismatch(id, "thinking", json_array_size(want) ? "the thinking blocks" : "none", got);
	json_decref(want);
	json_decref(have);
}

/* Characters of UTF-8 text */
static int
utf8_chars(const char *s)
{
	int			n = 0;

	for (; s && *s; s++)
		n += ((unsigned char) *s & 0xC0) != 0x80;
	return n;
}

/*
 * The reasoning an answer gives apart from its text: expected (as
 * reasoning_text_chars, its length in characters) where a case says, and
 * some where the recording holds it (these cases)
 */
static const char *const reasoning_cases[] = {
	"gemini-generatecontent-thoughts-included", "gemini-stream-thinking",
	"openai-responses-reasoning", "openai_compatible-chat-mistral-magistral-content-array",
	"openai_compatible-chat-deepseek-reasoner", "openai_compatible-chat-deepseek-stream-reasoner",
	"openai_compatible-chat-deepseek-cache-hit"
};

static void
check_reasoning(const char *id, json_t *expected, const char *got)
{
	json_t	   *chars = json_object_get(expected, "reasoning_text_chars");
	char		n[32];

	snprintf(n, sizeof(n), "%d", utf8_chars(got));
	if (chars && (int) json_number_value(chars) != utf8_chars(got))
		mismatch(id, "reasoning_text_chars", json_dumps(chars, JSON_ENCODE_ANY), n);
	for (int i = 0; i < lengthof(reasoning_cases); i++)
		if (strcmp(id, reasoning_cases[i]) == 0 && (got == NULL || *got == '\0'))
			mismatch(id, "reasoning", "some", got);
}

/* An answer to a request llmgw translated, and what it must read as */
typedef struct BuiltinCase
{
	const char *id;
	const LlmgwProvider *provider;
	bool		stream;
	const char *body;
	const char *text;
	const char *finish_reason;
	const char *tool_calls;		/* JSON of the tool calls, or NULL for none */
	const char *thinking;		/* JSON of the thinking blocks, or NULL for none */
} BuiltinCase;

#define ANTHROPIC_EVENT(type, data) "event: " type "\ndata: " data "\n\n"
#define ANTHROPIC_START \
	ANTHROPIC_EVENT("message_start", "{\"type\":\"message_start\",\"message\":{\"id\":\"msg_01\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}") \
	ANTHROPIC_EVENT("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"llmgw_response\",\"input\":{}}}")
#define ANTHROPIC_DELTA(json) \
	ANTHROPIC_EVENT("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"" json "\"}}")
#define ANTHROPIC_END(stop) \
	ANTHROPIC_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}") \
	ANTHROPIC_EVENT("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"" stop "\"},\"usage\":{\"output_tokens\":12}}") \
	ANTHROPIC_EVENT("message_stop", "{\"type\":\"message_stop\"}")

static const BuiltinCase builtin_cases[] = {
	{"builtin-anthropic-response-format", &llmgw_provider_anthropic, false,
		"{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_01\","
		"\"name\":\"llmgw_response\",\"input\":{\"city\": \"Paris\", \"population\": 2102650}}],"
		"\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":20,\"output_tokens\":12}}",
	"{\"city\":\"Paris\",\"population\":2102650}", "end_turn", NULL},
	/* not a request llmgw makes, but the parser keeps other calls as calls */
	{"builtin-anthropic-response-format-beside-a-tool", &llmgw_provider_anthropic, false,
		"{\"type\":\"message\",\"content\":[{\"type\":\"text\",\"text\":\"Here it is.\"},"
		"{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":\"llmgw_response\",\"input\":{\"a\":[1,2]}},"
		"{\"type\":\"tool_use\",\"id\":\"toolu_02\",\"name\":\"get_city\",\"input\":{}}],"
		"\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":20,\"output_tokens\":12}}",
	"{\"a\":[1,2]}", "tool_use", "[{\"name\":\"get_city\",\"arguments\":\"{}\"}]"},
	/* the input comes in pieces split anywhere, with spaces: compact JSON */
	{"builtin-anthropic-stream-response-format", &llmgw_provider_anthropic, true,
		ANTHROPIC_START ANTHROPIC_DELTA("") ANTHROPIC_DELTA("{\\\"city\\\": \\\"Pa")
		ANTHROPIC_DELTA("ris\\\", \\\"tags\\\": [1, ") ANTHROPIC_DELTA("2]}") ANTHROPIC_END("tool_use"),
	"{\"city\":\"Paris\",\"tags\":[1,2]}", "end_turn", NULL},
	/* cut by max_tokens: the JSON so far, as sent, and the finish says why */
	{"builtin-anthropic-stream-response-format-max-tokens", &llmgw_provider_anthropic, true,
		ANTHROPIC_START ANTHROPIC_DELTA("{\\\"city\\\": \\\"Pa") ANTHROPIC_END("max_tokens"),
	"{\"city\": \"Pa", "max_tokens", NULL},
	/* extended thinking: its pieces and signature joined, a redacted block as it came */
	{"builtin-anthropic-stream-thinking", &llmgw_provider_anthropic, true,
		ANTHROPIC_EVENT("message_start", "{\"type\":\"message_start\",\"message\":{\"content\":[],\"usage\":{\"input_tokens\":20,\"output_tokens\":1}}}")
		ANTHROPIC_EVENT("content_block_start", "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}")
		ANTHROPIC_EVENT("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Two and \"}}")
		ANTHROPIC_EVENT("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"two: 4\"}}")
		ANTHROPIC_EVENT("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"EqQB\"}}")
		ANTHROPIC_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":0}")
		ANTHROPIC_EVENT("content_block_start", "{\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"EmwK\"}}")
		ANTHROPIC_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":1}")
		ANTHROPIC_EVENT("content_block_start", "{\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}")
		ANTHROPIC_EVENT("content_block_delta", "{\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"text_delta\",\"text\":\"4\"}}")
		ANTHROPIC_EVENT("content_block_stop", "{\"type\":\"content_block_stop\",\"index\":2}")
		ANTHROPIC_EVENT("message_delta", "{\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":12}}")
		ANTHROPIC_EVENT("message_stop", "{\"type\":\"message_stop\"}"),
		"4", "end_turn", NULL,
	"[{\"type\":\"thinking\",\"thinking\":\"Two and two: 4\",\"signature\":\"EqQB\"},"
	"{\"type\":\"redacted_thinking\",\"data\":\"EmwK\"}]"},
};

/* Run the built-in cases; returns how many failed */
static int
run_builtin_cases(int *passed)
{
	int			failed = 0;

	for (int i = 0; i < lengthof(builtin_cases); i++)
	{
		const BuiltinCase *c = &builtin_cases[i];
		LlmgwOutcome out;
		json_t	   *expected;

		llmgw_outcome_init(&out);
		if (c->stream)
			c->provider->parse_stream(c->body, strlen(c->body), &out);
		else
			c->provider->parse_chat(c->body, strlen(c->body), 200, &out);
		expected = json_pack("{s:s, s:s, s:s, s:o}", "text", c->text,
							 "finish_reason", c->finish_reason, "error_class", "none",
							 "tool_calls", c->tool_calls ? json_loads(c->tool_calls, 0, NULL) : json_array());
		failures_in_case = 0;
		check_string(c->id, expected, "text", out.text);
		check_string(c->id, expected, "finish_reason", out.finish_reason);
		check_string(c->id, expected, "error_class",
					 out.status == LLMGW_STATUS_OK ? "none" : llmgw_error_class_name(out.error));
		check_tools(c->id, expected, out.tool_calls);
		if (c->thinking)
		{
			json_t	   *want = json_loads(c->thinking, 0, NULL);

			check_thinking(c->id, want, out.thinking);
			json_decref(want);
		}
		else if (out.thinking)
			mismatch(c->id, "thinking", "none", out.thinking);
		printf("%s %s\n", failures_in_case ? "not ok" : "ok", c->id);
		if (failures_in_case)
			failed++;
		else
			(*passed)++;
		json_decref(expected);
		stub_arena_reset();
	}
	return failed;
}

int
main(int argc, char **argv)
{
	const char *corpus = argc > 1 ? argv[1] : "../shared/corpus";
	char		path[4096];
	int			passed = 0, failed = 0, skipped = 0;
	DIR		   *d = opendir(corpus);
	struct dirent *e;
	char	  **ids = NULL;
	int			nids = 0;

	failed = run_builtin_cases(&passed);
	if (d == NULL)
	{
		printf("corpus not found at \"%s\": its cases skipped\n", corpus);
		printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
		return failed > 0;
	}
	while ((e = readdir(d)) != NULL)
	{
		if (e->d_name[0] == '.')
			continue;
		ids = realloc(ids, sizeof(char *) * (nids + 1));
		ids[nids++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(ids, nids, sizeof(char *), (int (*) (const void *, const void *)) strcmp);

	for (int i = 0; i < nids; i++)
	{
		json_t	   *c;
		json_t	   *resp, *expected;
		const LlmgwProvider *p;
		LlmgwOutcome out;
		char	   *body;
		size_t		len;
		char		dir[4096];
		double		retry;
		long		status;

		snprintf(dir, sizeof(dir), "%s/%s", corpus, ids[i]);
		snprintf(path, sizeof(path), "%s/case.json", dir);
		if (access(path, F_OK) != 0)
			continue;			/* not a case: README.md, index.json, ... */
		if ((c = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL)) == NULL)
		{
			printf("not ok %s (case.json cannot be read)\n", ids[i]);
			failed++;
			continue;
		}
		resp = json_object_get(c, "response");
		expected = json_object_get(c, "expected");
		p = case_provider(c);
		if (p == NULL)
		{
			printf("skip %s (%s not supported yet)\n", ids[i],
				   json_string_value(json_object_get(c, "endpoint")));
			skipped++;
			json_decref(c);
			continue;
		}
		body = case_body(dir, resp, &len);
		llmgw_outcome_init(&out);
		status = (long) json_number_value(json_object_get(resp, "status"));
		if (is_embedding(c))
			p->parse_embed(body, len, status, &out);
		else if (json_is_string(json_object_get(resp, "sse_file")) && status < 300)
			p->parse_stream(body, len, &out);
		else
			p->parse_chat(body, len, status, &out);
		/* as the worker does: the headers' hint when the body gave none */
		if (out.retry_after_s < 0 && out.status != LLMGW_STATUS_OK)
		{
			LlmgwHintHeaders h;
			const char *key;
			json_t	   *value;

			memset(&h, 0, sizeof(h));
			json_object_foreach(json_object_get(resp, "headers"), key, value)
			{
				char		line[512];

				snprintf(line, sizeof(line), "%s: %s\r\n", key, json_string_value(value));
				llmgw_hint_headers_add(&h, line, strlen(line));
			}
			out.retry_after_s = llmgw_retry_hint(&h, time(NULL));
		}
		failures_in_case = 0;
		check_count(ids[i], expected, "input_tokens", out.tokens[LLMGW_TOKENS_INPUT]);
		check_count(ids[i], expected, "output_tokens", out.tokens[LLMGW_TOKENS_OUTPUT]);
		check_count(ids[i], expected, "cached_input_tokens", out.tokens[LLMGW_TOKENS_CACHED_INPUT]);
		check_count(ids[i], expected, "cache_write_tokens", out.tokens[LLMGW_TOKENS_CACHE_WRITE]);
		check_count(ids[i], expected, "reasoning_tokens", out.tokens[LLMGW_TOKENS_REASONING]);
		check_string(ids[i], expected, "text", out.text);
		check_string(ids[i], expected, "finish_reason", out.finish_reason);
		check_string(ids[i], expected, "error_class",
					 out.status == LLMGW_STATUS_OK ? NULL : corpus_class(out.error));
		if (json_object_get(expected, "error_code"))
			check_string(ids[i], expected, "error_code", out.provider_code);
		check_tools(ids[i], expected, out.tool_calls);
		check_reasoning(ids[i], expected, out.reasoning);
		/* an Anthropic message's thinking blocks, as they came */
		if (p == &llmgw_provider_anthropic && out.status == LLMGW_STATUS_OK &&
			!json_is_string(json_object_get(resp, "sse_file")))
		{
			json_t	   *message = json_loadb(body, len, 0, NULL);

			check_thinking(ids[i], json_object_get(message, "content"), out.thinking);
			json_decref(message);
		}
		if (is_embedding(c))
			check_embeddings(ids[i], expected, &out);
		retry = json_number_value(json_object_get(expected, "retry_after_seconds"));
		if (json_object_get(expected, "retry_after_seconds") && retry != out.retry_after_s)
			mismatch(ids[i], "retry_after_seconds", "a hint", "another");
		if (failures_in_case == 0)
		{
			printf("ok %s\n", ids[i]);
			passed++;
		}
		else
		{
			printf("not ok %s\n", ids[i]);
			failed++;
		}
		stub_arena_reset();
		json_decref(c);
	}
	for (int i = 0; i < nids; i++)
		free(ids[i]);
	free(ids);
	stub_arena_reset();
	printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
	return failed > 0;
}
