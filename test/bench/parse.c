/*
 * Benchmark: parse cost of a provider response, per wire format, plain and
 * streamed, with 1 KB and 100 KB answers; in the same run, a baseline that
 * only reads the bytes (sums them).  Prints microseconds per response, the
 * throughput, and the ratio to the baseline.
 */
#include "postgres.h"

#include <stdio.h>
#include <time.h>

#include "provider.h"
#include "pg_stubs.h"

#undef printf
#undef snprintf
#undef vsnprintf

/* A growable malloc'd string */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static void
put(Buf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	for (;;)
	{
		va_start(ap, fmt);
		n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
		va_end(ap);
		if ((size_t) n < b->cap - b->len)
			break;
		b->cap = b->cap * 2 + n + 1;
		b->data = realloc(b->data, b->cap);
	}
	b->len += n;
}

/* Answer text of n bytes: words of lowercase letters */
static char *
answer(size_t n)
{
	char	   *t = malloc(n + 1);

	for (size_t i = 0; i < n; i++)
		t[i] = (i % 6 == 5) ? ' ' : (char) ('a' + i % 26);
	t[n] = '\0';
	return t;
}

/* Piece i of text in 4-byte chunks, as a stream sends tokens */
#define PIECE 4

static void
openai_json(Buf *b, const char *t)
{
	put(b, "{\"id\":\"x\",\"object\":\"chat.completion\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":300,\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}", t);
}

static void
openai_sse(Buf *b, const char *t)
{
	for (size_t i = 0; t[i]; i += PIECE)
		put(b, "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%.4s\"},\"finish_reason\":null}]}\n\n", t + i);
	put(b, "data: {\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
	put(b, "data: {\"id\":\"x\",\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":300}}\n\ndata: [DONE]\n\n");
}

static void
anthropic_json(Buf *b, const char *t)
{
	put(b, "{\"id\":\"msg\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"%s\"}],\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":10,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"output_tokens\":300}}", t);
}

static void
anthropic_sse(Buf *b, const char *t)
{
	put(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n");
	put(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
	for (size_t i = 0; t[i]; i += PIECE)
		put(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"%.4s\"}}\n\n", t + i);
	put(b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":300}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
}

static void
gemini_json(Buf *b, const char *t)
{
	put(b, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"%s\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":300,\"totalTokenCount\":310}}", t);
}

static void
gemini_sse(Buf *b, const char *t)
{
	for (size_t i = 0; t[i]; i += PIECE)
		put(b, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"%.4s\"}],\"role\":\"model\"},\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"totalTokenCount\":10}}\r\n\r\n", t + i);
	put(b, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\"}],\"role\":\"model\"},\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":10,\"candidatesTokenCount\":300,\"totalTokenCount\":310}}\r\n\r\n");
}

static void
responses_json(Buf *b, const char *t)
{
	put(b, "{\"id\":\"resp\",\"object\":\"response\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":\"%s\"}]}],\"usage\":{\"input_tokens\":10,\"output_tokens\":300,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens_details\":{\"reasoning_tokens\":0}}}", t);
}

static void
responses_sse(Buf *b, const char *t)
{
	for (size_t i = 0; t[i]; i += PIECE)
		put(b, "event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"content_index\":0,\"delta\":\"%.4s\"}\n\n", t + i);
	put(b, "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":10,\"output_tokens\":300}}}\n\n");
}

typedef struct Format
{
	const char *name;
	const LlmgwProvider *provider;
	void		(*json) (Buf *, const char *);
	void		(*sse) (Buf *, const char *);
} Format;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static volatile unsigned long sink;

/* Seconds per run of the baseline: read every byte */
static double
time_baseline(const Buf *b, int iters)
{
	double		t0 = now();

	for (int it = 0; it < iters; it++)
	{
		unsigned long s = 0;

		for (size_t i = 0; i < b->len; i++)
			s += (unsigned char) b->data[i];
		sink += s;
	}
	return (now() - t0) / iters;
}

/* Seconds per parse */
static double
time_parse(const LlmgwProvider *p, const Buf *b, bool stream, int iters)
{
	double		t0 = now();

	for (int it = 0; it < iters; it++)
	{
		LlmgwOutcome out;

		llmgw_outcome_init(&out);
		if (stream)
			p->parse_stream(b->data, b->len, &out);
		else
			p->parse_chat(b->data, b->len, 200, &out);
		if (out.status != LLMGW_STATUS_OK || out.text == NULL)
			abort();
		stub_arena_reset();
	}
	return (now() - t0) / iters;
}

int
main(void)
{
	Format		formats[] = {
		{"openai", &llmgw_provider_openai, openai_json, openai_sse},
		{"responses", &llmgw_provider_responses, responses_json, responses_sse},
		{"anthropic", &llmgw_provider_anthropic, anthropic_json, anthropic_sse},
		{"gemini", &llmgw_provider_gemini, gemini_json, gemini_sse},
	};
	size_t		sizes[] = {1024, 100 * 1024};

	printf("%-10s %-6s %7s %9s %12s %12s %12s %8s\n", "format", "shape", "answer", "bytes",
		   "parse_us", "baseline_us", "parses/s", "ratio");
	for (int f = 0; f < (int) lengthof(formats); f++)
		for (int s = 0; s < 2; s++)
			for (int stream = 0; stream < 2; stream++)
			{
				char	   *t = answer(sizes[s]);
				Buf			b = {malloc(1024), 0, 1024};
				int			iters;
				double		parse;
				double		base;

				(stream ? formats[f].sse : formats[f].json) (&b, t);
				iters = sizes[s] > 10000 ? (stream ? 50 : 500) : (stream ? 2000 : 20000);
				time_parse(formats[f].provider, &b, stream, iters / 10);	/* warm up */
				parse = time_parse(formats[f].provider, &b, stream, iters);
				base = time_baseline(&b, iters);
				printf("%-10s %-6s %6zuK %9zu %12.1f %12.2f %12.0f %8.1f\n", formats[f].name,
					   stream ? "stream" : "json", sizes[s] / 1024, b.len, parse * 1e6,
					   base * 1e6, 1 / parse, parse / base);
				free(t);
				free(b.data);
			}
	return 0;
}
