/*
 * libFuzzer target: llmgw's JSON reader (llmgw_json_read in src/jsonread.c)
 * against jansson's parser.  The first byte of the input picks the flags
 * (an object or array at the top, or any value), the rest is the text.
 * What the reader reads, jansson must read too, into the same tree: the
 * same values of the same types, members in the same order.  The reader
 * may give up on text jansson reads (jansson then reads it in llmgw), but
 * not on the documents providers and clients send: it must read those of
 * LLVMFuzzerInitialize itself, or the fuzzing would hold nothing.
 */
#include "postgres.h"

#include <stdint.h>
#include <stdlib.h>

#include "jsonutil.h"
#include "pg_stubs.h"

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static const char *const documents[] = {
		"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1700000000,"
		"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":"
		"\"Line\\none \\\"quoted\\\" \\u00e9\\ud83d\\ude00 caf\xc3\xa9\",\"refusal\":null},"
		"\"logprobs\":null,\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,"
		"\"completion_tokens\":-0,\"total_tokens\":8}}",
		" [ 0.5 , -1.25e-3 , 1E+2 , true , false , null , [ ] , { } ]\r\n",
		"{\"a\":1,\"a\":2,\"b\\/\":[\"\\b\\f\\n\\r\\t\\\\\"]}",
	};

	for (int i = 0; i < (int) lengthof(documents); i++)
	{
		json_t	   *v = llmgw_json_read(documents[i], strlen(documents[i]), 0);

		if (v == NULL)
		{
			fputs("the reader gives up on a plain document: ", stderr);
			fputs(documents[i], stderr);
			abort();
		}
		json_decref(v);
	}
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t		flags;
	json_t	   *ours;
	json_t	   *theirs;

	if (size < 1)
		return 0;
	flags = data[0] & 1 ? JSON_DECODE_ANY : 0;
	ours = llmgw_json_read((const char *) data + 1, size - 1, flags);
	theirs = json_loadb((const char *) data + 1, size - 1, flags, NULL);
	if (ours != NULL)
	{
		char	   *a = json_dumps(ours, JSON_COMPACT | JSON_ENCODE_ANY);
		char	   *b = theirs ? json_dumps(theirs, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;

		if (theirs == NULL || !json_equal(ours, theirs) || a == NULL || b == NULL ||
			strcmp(a, b) != 0)
		{
			fputs(theirs ? "the trees differ\n" : "read what jansson refuses\n", stderr);
			abort();
		}
		free(a);
		free(b);
	}
	json_decref(ours);
	json_decref(theirs);
	stub_arena_reset();
	return 0;
}
