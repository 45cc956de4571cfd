/*
 * libFuzzer target: a provider's response parser (chosen at build time
 * with -DFUZZ_PROVIDER=llmgw_provider_xxx), fed any bytes with an HTTP
 * status chosen by the first byte.
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

	if (size > 0)
	{
		status = statuses[data[0] % lengthof(statuses)];
		data++;
		size--;
	}
	llmgw_outcome_init(&out);
	FUZZ_PROVIDER.parse_chat((const char *) data, size, status, &out);
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
