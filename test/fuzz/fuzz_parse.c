/*
 * libFuzzer target: a provider's response parser (chosen at build time
 * with -DFUZZ_PROVIDER=llmgw_provider_xxx): JSON bodies, SSE streams and
 * embeddings responses, with the parser and HTTP status chosen by the first
 * byte; or its request builder, which reads the caller's request (content
 * parts, data: URLs, response_format).
 */
#include "postgres.h"

#include "provider.h"
#include "jsonutil.h"
#include "sse.h"
#include "pg_stubs.h"

/* Build a request: a body must be a JSON object, a refusal must say why */
static void
fuzz_build(const char *data, size_t size)
{
	size_t		len = 0;
	bool		stream = false;
	char	   *error = NULL;
	char	   *body = FUZZ_PROVIDER.build_chat(data, size, "fuzz-model", &len, &stream, &error);
	json_t	   *root;

	if (body == NULL)
	{
		if (error == NULL)
			abort();
		return;
	}
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_object(root))
		abort();
	json_decref(root);
	free(body);
}

/* Sink: the text of the events, as the front door gathers it */
static void
sink_text(void *arg, const char *text, size_t len)
{
	appendBinaryStringInfo((StringInfo) arg, text, (int) len);
}

/*
 * Sink: a tool call's start or piece.  (Whether what streamed matches the
 * final answer is not checked: a crafted stream, a block restarted as
 * another type, makes them differ, and the front door then ends the
 * stream with an error event, as it should.)
 */
static void
sink_tool(void *arg, int key, const char *id, const char *name, const char *signature,
		  const char *args, size_t len)
{
	if (key < -1 || key > 1024 || (args == NULL && len != 0) || (args && strlen(args) != len))
		abort();
}

/* Sink: a piece of thinking, a string of its length (none for a start) */
static void
sink_thinking(void *arg, LlmgwThinkingPiece what, const char *piece, size_t len)
{
	if ((what == LLMGW_THINKING_START) != (piece == NULL) || (piece && strlen(piece) != len) ||
		what > LLMGW_THINKING_REASONING)
		abort();
}

/* SSE handler: what an event carries, as the front door reads it */
static void
stream_delta_event(void *arg, const char *event, const char *data, size_t len)
{
	LlmgwStreamSink sink = {arg, sink_text, sink_tool, sink_thinking};

	if (FUZZ_PROVIDER.stream_delta)
		FUZZ_PROVIDER.stream_delta(data, len, &sink);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 400, 401, 404, 429, 500, 503, 529};
	LlmgwOutcome out;
	long		status = 200;
	int			mode = 0;

	/*
	 * first byte: bits 6-7 pick the parser (chat, stream, embeddings) or the
	 * request builder, the rest the status
	 */
	if (size > 0)
	{
		mode = data[0] >> 6;
		status = statuses[(data[0] & 0x3f) % lengthof(statuses)];
		data++;
		size--;
	}
	llmgw_outcome_init(&out);
	if (mode == 3)
	{
		fuzz_build((const char *) data, size);
		stub_arena_reset();
		return 0;
	}
	if (mode == 1)
	{
		StringInfoData text;

		FUZZ_PROVIDER.parse_stream((const char *) data, size, &out);
		/* the front door's reading of the same events, one at a time */
		initStringInfo(&text);
		llmgw_sse_parse((const char *) data, size, stream_delta_event, &text);
		if (text.len != (int) strlen(text.data))
			abort();
	}
	else if (mode == 2 && FUZZ_PROVIDER.parse_embed)
		FUZZ_PROVIDER.parse_embed((const char *) data, size, status, &out);
	else
		FUZZ_PROVIDER.parse_chat((const char *) data, size, status, &out);
	if (out.embedding_count > 0 && (out.embeddings == NULL || out.embedding_dims <= 0))
		abort();
	if (out.status == LLMGW_STATUS_OK && out.error != LLMGW_ERR_NONE)
		abort();
	if (out.status != LLMGW_STATUS_OK && out.error == LLMGW_ERR_NONE)
		abort();
	for (int b = 0; b < LLMGW_NBUCKETS; b++)
		if (out.tokens[b] < LLMGW_TOKENS_UNKNOWN)
			abort();
	(void) llmgw_error_class_name(out.error);
	stub_arena_reset();
	return 0;
}
