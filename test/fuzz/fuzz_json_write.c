/*
 * libFuzzer target: llmgw's JSON writer (llmgw_json_write in
 * src/jsonutil.c) against jansson's own.  Whatever jansson reads from the
 * input (with \u0000 allowed in strings, and any value at the top), the
 * two must write the same bytes; and the raw input as a string, as an
 * object's key and inside an array (made without jansson's UTF-8 check)
 * must give the same bytes, or fail in both.  (Not quite: jansson ignores
 * its failure on a key and writes on, a string left open; llmgw fails.)
 */
#include "postgres.h"

#include <stdint.h>
#include <stdlib.h>

#include "jsonutil.h"
#include "pg_stubs.h"

/* jansson's text of v, or "null" when it cannot write it (as llmgw_json_dump) */
static void
same(json_t *v)
{
	char	   *theirs = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
	char	   *ours = llmgw_json_dump(v);

	if (strcmp(theirs ? theirs : "null", ours) != 0)
	{
		fputs(theirs ? theirs : "(jansson fails)", stderr);
		fputs("\n", stderr);
		fputs(ours, stderr);
		fputs("\n", stderr);
		abort();
	}
	free(theirs);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	json_t	   *v = json_loadb((const char *) data, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	json_t	   *raw = json_stringn_nocheck((const char *) data, size);
	json_t	   *obj = json_pack("{s:i}", "a", 1);
	json_t	   *arr = json_pack("[s, O, i]", "x", raw, -(json_int_t) size);

	json_t	   *checked = json_stringn((const char *) data, size);

	if (v != NULL)
		same(v);
	json_object_setn_new_nocheck(obj, (const char *) data, size, json_true());
	same(raw);
	if (checked != NULL)
		same(obj);
	else if (strcmp(llmgw_json_dump(obj), "null") != 0)
		abort();
	same(arr);
	json_decref(v);
	json_decref(raw);
	json_decref(obj);
	json_decref(arr);
	json_decref(checked);
	stub_arena_reset();
	return 0;
}
