/*
 * libFuzzer target: a provider's response parser (chosen at build time
 * with -DFUZZ_PROVIDER=llmgw_provider_xxx): JSON bodies, SSE streams and
 * embeddings responses, with the parser and HTTP status chosen by the first
 * byte.
 */
#include "postgres.h"

#include "provider.h"
#include "pg_stubs.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 400, 401, 404, 429, 500, 503, 529};
	LlmgwOutcome out;
	long		status = 200;
	int			mode = 0;

	/* first byte: bits 6-7 pick the parser (chat, stream, embeddings), the rest the status */
	if (size > 0)
	{
		mode = data[0] >> 6;
		status = statuses[(data[0] & 0x3f) % lengthof(statuses)];
		data++;
		size--;
	}
	llmgw_outcome_init(&out);
	if (mode == 1)
		FUZZ_PROVIDER.parse_stream((const char *) data, size, &out);
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
