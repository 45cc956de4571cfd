/*-------------------------------------------------------------------------
 *
 * jsonutil.h
 *		jansson helpers shared by the wire formats.
 *
 * Include after the PostgreSQL headers, and never call json_object(): the
 * server exports a function of that name and the dynamic linker binds our
 * call to it.  Use json_pack("{}") for an empty object.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_JSONUTIL_H
#define LLMGW_JSONUTIL_H

#include <jansson.h>

#include "call.h"
#include "lib/stringinfo.h"
#include "sse.h"

/* Is v a JSON string equal to s? */
static inline bool
llmgw_json_is_word(json_t *v, const char *s)
{
	return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* Is a member absent or null (the client did not give it)? */
static inline bool
llmgw_json_absent(json_t *v)
{
	return v == NULL || json_is_null(v);
}

extern int64 llmgw_json_count(json_t *obj, const char *key);
extern int64 llmgw_json_output_bound(json_t *request);
extern char *llmgw_json_string(json_t *obj, const char *key);
extern int	llmgw_utf8_sequence(const unsigned char *p, const unsigned char *end);
extern bool llmgw_json_write(StringInfo buf, json_t *v);
extern bool llmgw_json_write_text(StringInfo buf, const char *s, size_t len);
/* jsonread.c */
extern json_t *llmgw_json_read(const char *buf, size_t len, size_t flags);
extern json_t *llmgw_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *jerr);
extern char *llmgw_json_dump(json_t *v);
extern json_t *llmgw_json_load(const char *buf, size_t len, json_error_t *jerr);
extern json_t *llmgw_json_parse(const char *buf, size_t len, long http_status,
								LlmgwOutcome *out);
extern char *llmgw_json_build(json_t *root, size_t *out_len);
/* Reads a provider's error envelope (the whole body) into the outcome */
typedef void (*LlmgwErrorReader) (json_t *root, long http_status, LlmgwOutcome *out);

extern json_t *llmgw_json_success(const char *buf, size_t len, long http_status,
								  LlmgwOutcome *out, LlmgwErrorReader read_error);
extern bool llmgw_vector_append(StringInfo vectors, json_t *values, int *dims);
extern void llmgw_vectors_finish(LlmgwOutcome *out, StringInfo vectors, int count, int dims);

/* What every wire format's stream reader keeps: the first member of its own */
typedef struct LlmgwStream
{
	LlmgwOutcome *out;
	StringInfoData text;		/* the answer's text, delta by delta */
	StringInfoData reasoning;	/* reasoning text apart from the answer's,
								 * delta by delta (out->reasoning, if any) */
	bool		failed;			/* an error event arrived */
	bool		done;			/* the stream's terminal event arrived */
	bool		unreadable;		/* an event was not JSON */
} LlmgwStream;

extern void llmgw_stream_read(LlmgwStream *st, LlmgwOutcome *out, const char *buf, size_t len,
							  LlmgwSseHandler handler);
extern bool llmgw_stream_whole(LlmgwStream *st);
extern json_t *llmgw_stream_event_json(const char *data, size_t len, bool *unreadable);
extern int	llmgw_stream_key(json_t *index, int dflt);
extern void llmgw_json_set_error(LlmgwOutcome *out, LlmgwErrorClass error,
								 json_t *message, const char *code);

#endif							/* LLMGW_JSONUTIL_H */
