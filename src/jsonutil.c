/*-------------------------------------------------------------------------
 *
 * jsonutil.c
 *		jansson helpers shared by the wire formats.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "jsonutil.h"

/* A token count field, or LLMGW_TOKENS_UNKNOWN when absent or not a count */
int64
llmgw_json_count(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);
	double		d;

	if (json_is_integer(v))
		return json_integer_value(v) < 0 ? LLMGW_TOKENS_UNKNOWN : (int64) json_integer_value(v);
	/* a body with an integer beyond 64 bits was read with reals for integers */
	d = json_is_real(v) ? json_real_value(v) : -1;
	if (d < 0 || d > 9e15 || d != (double) (int64) d)
		return LLMGW_TOKENS_UNKNOWN;
	return (int64) d;
}

/* The output bound of a chat request (max_tokens and its aliases), or 0 */
int64
llmgw_json_output_bound(json_t *request)
{
	static const char *const names[] = {"max_tokens", "max_completion_tokens", "max_output_tokens"};
	int64		bound = 0;

	for (int i = 0; i < lengthof(names) && bound <= 0; i++)
		bound = llmgw_json_count(request, names[i]);
	return Max(bound, 0);
}

/* The same of a request body's text (0 when it is not JSON) */
int64
llmgw_json_output_bound_text(const char *body, size_t len)
{
	json_t	   *root = llmgw_json_loadb(body, len, JSON_DECODE_ANY, NULL);
	int64		bound = llmgw_json_output_bound(root);

	json_decref(root);
	return bound;
}

/* A string field copied to palloc'd memory; NULL when not a string */
char *
llmgw_json_string(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);

	if (!json_is_string(v))
		return NULL;
	return pnstrdup(json_string_value(v), json_string_length(v));
}

/*
 * The length of the well-formed UTF-8 sequence at p (Unicode's table 3-7:
 * no overlong forms, surrogates or code points past U+10FFFF, as jansson
 * checks), or 0
 */
int
llmgw_utf8_sequence(const unsigned char *p, const unsigned char *end)
{
	unsigned char lo = 0x80;	/* the second byte's range */
	unsigned char hi = 0xBF;
	int			n;

	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
	{
		n = 3;
		lo = p[0] == 0xE0 ? 0xA0 : lo;
		hi = p[0] == 0xED ? 0x9F : hi;
	}
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
	{
		n = 4;
		lo = p[0] == 0xF0 ? 0x90 : lo;
		hi = p[0] == 0xF4 ? 0x8F : hi;
	}
	else
		return 0;
	if (end - p < n || p[1] < lo || p[1] > hi)
		return 0;
	for (int i = 2; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

/*
 * Append the JSON text of a string: the bytes as they are, but for the
 * quote, the backslash and control characters, which are escaped as
 * jansson escapes them.  false when the bytes are not UTF-8.
 */
static bool
write_string(StringInfo buf, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *) s;
	const unsigned char *end = p + len;
	const unsigned char *run = p;

	appendStringInfoCharMacro(buf, '"');
	while (p < end)
	{
		unsigned char c = *p;
		char		esc[6];
		int			n = 2;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')
		{
			p++;
			continue;
		}
		if (c >= 0x80)
		{
			if ((n = llmgw_utf8_sequence(p, end)) == 0)
				return false;
			p += n;
			continue;
		}
		appendBinaryStringInfo(buf, (const char *) run, p - run);
		esc[0] = '\\';
		switch (c)
		{
			case '"':
			case '\\':
				esc[1] = c;
				break;
			case '\b':
				esc[1] = 'b';
				break;
			case '\f':
				esc[1] = 'f';
				break;
			case '\n':
				esc[1] = 'n';
				break;
			case '\r':
				esc[1] = 'r';
				break;
			case '\t':
				esc[1] = 't';
				break;
			default:
				memcpy(esc + 1, "u00", 3);
				esc[4] = "0123456789ABCDEF"[c >> 4];
				esc[5] = "0123456789ABCDEF"[c & 15];
				n = 6;
		}
		appendBinaryStringInfo(buf, esc, n);
		run = ++p;
	}
	appendBinaryStringInfo(buf, (const char *) run, p - run);
	appendStringInfoCharMacro(buf, '"');
	return true;
}

/* Append an integer's digits (what "%lld" writes) */
static void
write_integer(StringInfo buf, json_int_t value)
{
	char		digits[24];
	char	   *d = digits + sizeof(digits);
	uint64		u = value < 0 ? -(uint64) value : (uint64) value;

	do
		*--d = '0' + u % 10;
	while ((u /= 10) != 0);
	if (value < 0)
		*--d = '-';
	appendBinaryStringInfo(buf, d, digits + sizeof(digits) - d);
}

/*
 * Append the compact JSON text of v, the text json_dumps(v, JSON_COMPACT |
 * JSON_ENCODE_ANY) gives, byte for byte (test/fuzz/fuzz_json_write.c
 * checks it): members in their order, strings escaped alike, reals written
 * by jansson.  jansson's own writer walks a string a code point at a time
 * through a callback and keeps a hash set of the containers it is inside
 * (to catch cycles, which a parsed or built tree never has): several
 * times the work.  v is not NULL.  false, with garbage appended, when v
 * holds a string that is not UTF-8, where json_dumps fails.
 */
bool
llmgw_json_write(StringInfo buf, json_t *v)
{
	switch (json_typeof(v))
	{
		case JSON_OBJECT:
			{
				void	   *iter = json_object_iter(v);

				appendStringInfoCharMacro(buf, '{');
				for (bool first = true; iter != NULL; first = false)
				{
					if (!first)
						appendStringInfoCharMacro(buf, ',');
					if (!write_string(buf, json_object_iter_key(iter), json_object_iter_key_len(iter)))
						return false;
					appendStringInfoCharMacro(buf, ':');
					if (!llmgw_json_write(buf, json_object_iter_value(iter)))
						return false;
					iter = json_object_iter_next(v, iter);
				}
				appendStringInfoCharMacro(buf, '}');
				return true;
			}
		case JSON_ARRAY:
			appendStringInfoCharMacro(buf, '[');
			for (size_t i = 0; i < json_array_size(v); i++)
			{
				if (i > 0)
					appendStringInfoCharMacro(buf, ',');
				if (!llmgw_json_write(buf, json_array_get(v, i)))
					return false;
			}
			appendStringInfoCharMacro(buf, ']');
			return true;
		case JSON_STRING:
			return write_string(buf, json_string_value(v), json_string_length(v));
		case JSON_INTEGER:
			write_integer(buf, json_integer_value(v));
			return true;
		case JSON_REAL:
			{
				char	   *s = json_dumps(v, JSON_ENCODE_ANY);

				if (s == NULL)
					return false;
				appendStringInfoString(buf, s);
				free(s);
				return true;
			}
		case JSON_TRUE:
			appendBinaryStringInfo(buf, "true", 4);
			return true;
		case JSON_FALSE:
			appendBinaryStringInfo(buf, "false", 5);
			return true;
		case JSON_NULL:
			appendBinaryStringInfo(buf, "null", 4);
			return true;
	}
	return false;
}

/* The JSON string of s (len bytes); false when they are not UTF-8 */
bool
llmgw_json_write_text(StringInfo buf, const char *s, size_t len)
{
	return write_string(buf, s, len);
}

/* Compact JSON text of v in palloc'd memory ("null" for NULL) */
char *
llmgw_json_dump(json_t *v)
{
	StringInfoData buf;

	initStringInfo(&buf);
	if (v != NULL && llmgw_json_write(&buf, v))
		return buf.data;
	pfree(buf.data);
	return pstrdup("null");
}

/* Dump a request body (malloc'd, for curl) and release root */
char *
llmgw_json_build(json_t *root, size_t *out_len)
{
	StringInfoData buf;
	char	   *body = NULL;

	initStringInfo(&buf);
	if ((json_is_object(root) || json_is_array(root)) && llmgw_json_write(&buf, root) &&
		(body = malloc(buf.len + 1)) != NULL)
	{
		memcpy(body, buf.data, buf.len + 1);
		*out_len = buf.len;
	}
	pfree(buf.data);
	json_decref(root);
	return body;
}

/*
 * Parse JSON text.  jansson refuses integers beyond 64 bits, which some
 * servers send (a Together "seed"): such text is read again with reals for
 * integers.  NULL when it is not JSON; *jerr says why (if given).
 */
json_t *
llmgw_json_load(const char *buf, size_t len, json_error_t *jerr)
{
	json_error_t local;
	json_error_t *e = jerr ? jerr : &local;
	json_t	   *root = llmgw_json_loadb(buf, len, 0, e);

	if (root == NULL && strstr(e->text, "too big") != NULL)
		root = json_loadb(buf, len, JSON_DECODE_INT_AS_REAL, e);
	return root;
}

/*
 * Parse a response body.  Returns the root object, or NULL after setting
 * the outcome: a malformed 2xx response, or an error status whose body is
 * not JSON (classified by its status alone).
 */
json_t *
llmgw_json_parse(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_error_t jerr;
	json_t	   *root = llmgw_json_load(buf, len, &jerr);

	if (root != NULL && json_is_object(root))
		return root;

	out->status = LLMGW_STATUS_ERROR;
	if (http_status >= 200 && http_status < 300)
	{
		out->error = LLMGW_ERR_MALFORMED;
		out->provider_message = root ? pstrdup("the response is not a JSON object") :
			psprintf("invalid JSON at line %d, column %d: %s",
					 jerr.line, jerr.column, jerr.text);
	}
	else
		out->error = llmgw_error_class_from_http(http_status);
	json_decref(root);
	return NULL;
}

/*
 * The root of a successful response (2xx, no "error" member), or NULL when
 * the body was malformed or an error, which the outcome then describes.
 */
json_t *
llmgw_json_success(const char *buf, size_t len, long http_status, LlmgwOutcome *out,
				   LlmgwErrorReader read_error)
{
	json_t	   *root = llmgw_json_parse(buf, len, http_status, out);
	json_t	   *err;

	if (root == NULL)
		return NULL;
	err = json_object_get(root, "error");
	if (http_status >= 200 && http_status < 300 && (err == NULL || json_is_null(err)))
		return root;
	read_error(root, http_status, out);
	json_decref(root);
	return NULL;
}

/* Mark the outcome failed, keeping the provider's message and code */
void
llmgw_json_set_error(LlmgwOutcome *out, LlmgwErrorClass error, json_t *message,
					 const char *code)
{
	out->status = LLMGW_STATUS_ERROR;
	out->error = error;
	if (json_is_string(message))
		out->provider_message = pnstrdup(json_string_value(message),
										 json_string_length(message));
	if (code)
		out->provider_code = pstrdup(code);
}

/*
 * Append one embedding, a JSON array of numbers, as an array literal line.
 * All vectors of a response must have the same dimension.
 */
bool
llmgw_vector_append(StringInfo vectors, json_t *values, int *dims)
{
	size_t		i;
	json_t	   *v;

	if (!json_is_array(values) || json_array_size(values) == 0 ||
		(*dims > 0 && json_array_size(values) != (size_t) *dims))
		return false;
	*dims = (int) json_array_size(values);
	appendStringInfoChar(vectors, '{');
	json_array_foreach(values, i, v)
	{
		if (!json_is_number(v))
			return false;
		appendStringInfo(vectors, "%s%.9g", i ? "," : "", (float) json_number_value(v));
	}
	appendStringInfoString(vectors, "}\n");
	return true;
}

/* Set the outcome of an embeddings response */
void
llmgw_vectors_finish(LlmgwOutcome *out, StringInfo vectors, int count, int dims)
{
	if (count == 0)
	{
		llmgw_json_set_error(out, LLMGW_ERR_MALFORMED, NULL, NULL);
		out->provider_message = pstrdup("the response has no usable embeddings");
		return;
	}
	out->status = LLMGW_STATUS_OK;
	out->embeddings = vectors->data;
	out->embedding_count = count;
	out->embedding_dims = dims;
}

/*
 * Read a whole stream: each event goes to handler with st (the first member
 * of the wire format's own state, zeroed by the caller).
 */
void
llmgw_stream_read(LlmgwStream *st, LlmgwOutcome *out, const char *buf, size_t len,
				  LlmgwSseHandler handler)
{
	st->out = out;
	initStringInfo(&st->text);
	initStringInfo(&st->reasoning);
	llmgw_sse_parse(buf, len, handler, st);
	if (st->reasoning.len > 0)
		out->reasoning = st->reasoning.data;
}

/*
 * Did the stream end whole: its terminal event, no error event, no event
 * that is not JSON?  A 2xx stream that did not is broken: the call failed,
 * but the text and the usage it reported so far are kept (the usage is
 * billed and priced).  An error event has set the outcome already.
 */
bool
llmgw_stream_whole(LlmgwStream *st)
{
	if (st->failed)
		return false;
	if (st->unreadable || !st->done)
	{
		st->out->status = LLMGW_STATUS_ERROR;
		st->out->error = LLMGW_ERR_BROKEN_STREAM;
		st->out->provider_message = pstrdup(st->unreadable ?
											"the stream carried an event that is not valid JSON" :
											"the stream ended before its final event");
		return false;
	}
	return true;
}

/* Is an SSE data payload empty (a keep-alive), so that it says nothing? */
static bool
stream_empty(const char *data, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isspace((unsigned char) data[i]))
			return false;
	return true;
}

/*
 * The JSON object an SSE data payload carries.  NULL for a keep-alive (an
 * empty payload), and for a payload that is not a JSON object, which also
 * sets *unreadable: the stream is broken.
 */
json_t *
llmgw_stream_event_json(const char *data, size_t len, bool *unreadable)
{
	json_t	   *event;

	if (stream_empty(data, len))
		return NULL;
	event = llmgw_json_load(data, len, NULL);
	if (json_is_object(event))
		return event;
	*unreadable = true;
	json_decref(event);
	return NULL;
}

/*
 * A stream's index of a tool call (a tool call index, a content block, an
 * output item): dflt when it is not an integer, -1 when it is outside 0
 * to 1024
 */
int
llmgw_stream_key(json_t *index, int dflt)
{
	if (!json_is_integer(index))
		return dflt;
	if (json_integer_value(index) < 0 || json_integer_value(index) > 1024)
		return -1;
	return (int) json_integer_value(index);
}
