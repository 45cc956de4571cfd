/*-------------------------------------------------------------------------
 *
 * jsonread.c
 *		A fast reader of well-formed JSON into jansson trees.
 *
 * jansson's parser takes a byte at a time from a stream with a UTF-8
 * decoder behind it and copies every token before it converts it: about
 * 190 instructions a byte, the largest single cost of a front-door call
 * (a request's body and the provider's answer) and of a batch's results.
 * This reader walks the bytes in place and builds the same tree with
 * jansson's own constructors.  It reads only what it is sure of and gives
 * up (NULL) on anything else: malformed text, a number that does not fit,
 * \u0000, a very deep document.  The caller then asks jansson, which reads
 * the document or says why not, so errors are always jansson's; a document
 * read here gives exactly the tree jansson gives (test/fuzz/fuzz_json_read.c
 * holds the two to that).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <errno.h>
#include <math.h>

#include "jsonutil.h"

/* deeper documents are left to jansson (its own limit is 2048) */
#define READ_MAX_DEPTH 256

typedef struct Reader
{
	const char *p;				/* the next byte */
	const char *end;
	int			depth;
	StringInfoData scratch;		/* a string's text with its escapes undone
								 * (data NULL until one has escapes) */
} Reader;

static json_t *read_value(Reader *r);

static inline void
skip_space(Reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
		r->p++;
}

/* The value of four hex digits at p (before end), or -1 */
static int
hex4(const char *p, const char *end)
{
	int			v = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		char		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * Undo the escape at r->p (just after its backslash) into the scratch
 * buffer.  false for what jansson refuses (an unknown escape, a lone
 * surrogate) and for \u0000, which it takes only with JSON_ALLOW_NUL.
 */
static bool
read_escape(Reader *r)
{
	const char *named = "\"\"\\\\//b\bf\fn\nr\rt\t";
	char		utf8[4];
	int			cp;
	int			n;

	if (r->p >= r->end)
		return false;
	if (*r->p != 'u')
	{
		for (const char *e = named; *e; e += 2)
			if (*e == *r->p)
			{
				appendStringInfoCharMacro(&r->scratch, e[1]);
				r->p++;
				return true;
			}
		return false;
	}
	cp = hex4(r->p + 1, r->end);
	r->p += 5;
	if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
		return false;
	if (cp >= 0xD800 && cp <= 0xDBFF)
	{
		int			low;

		if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
			return false;
		low = hex4(r->p + 2, r->end);
		if (low < 0xDC00 || low > 0xDFFF)
			return false;
		r->p += 6;
		cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
	}
	if (cp < 0x80)
	{
		utf8[0] = cp;
		n = 1;
	}
	else if (cp < 0x800)
	{
		utf8[0] = 0xC0 | (cp >> 6);
		utf8[1] = 0x80 | (cp & 0x3F);
		n = 2;
	}
	else if (cp < 0x10000)
	{
		utf8[0] = 0xE0 | (cp >> 12);
		utf8[1] = 0x80 | ((cp >> 6) & 0x3F);
		utf8[2] = 0x80 | (cp & 0x3F);
		n = 3;
	}
	else
	{
		utf8[0] = 0xF0 | (cp >> 18);
		utf8[1] = 0x80 | ((cp >> 12) & 0x3F);
		utf8[2] = 0x80 | ((cp >> 6) & 0x3F);
		utf8[3] = 0x80 | (cp & 0x3F);
		n = 4;
	}
	appendBinaryStringInfo(&r->scratch, utf8, n);
	return true;
}

/*
 * Read the string at r->p (its opening quote).  Its text is the document's
 * own bytes when it has no escapes, else the scratch buffer's.  false when
 * it is not a string jansson would read.
 */
static bool
read_string(Reader *r, const char **text, size_t *len)
{
	const char *run = ++r->p;
	bool		escaped = false;

	for (;;)
	{
		unsigned char c;

		if (r->p >= r->end)
			return false;
		c = (unsigned char) *r->p;
		if (c == '"')
			break;
		if (c >= 0x20 && c < 0x80 && c != '\\')
			r->p++;
		else if (c >= 0x80)
		{
			int			n = llmgw_utf8_sequence((const unsigned char *) r->p,
												(const unsigned char *) r->end);

			if (n == 0)
				return false;
			r->p += n;
		}
		else if (c == '\\')
		{
			if (!escaped)
			{
				if (r->scratch.data == NULL)
					initStringInfo(&r->scratch);
				resetStringInfo(&r->scratch);
				escaped = true;
			}
			appendBinaryStringInfo(&r->scratch, run, r->p - run);
			r->p++;
			if (!read_escape(r))
				return false;
			run = r->p;
		}
		else
			return false;		/* a control character */
	}
	if (escaped)
	{
		appendBinaryStringInfo(&r->scratch, run, r->p - run);
		*text = r->scratch.data;
		*len = r->scratch.len;
	}
	else
	{
		*text = run;
		*len = r->p - run;
	}
	r->p++;						/* the closing quote */
	return true;
}

/* A number as jansson reads it: an integer unless it has a fraction or an exponent */
static json_t *
read_number(Reader *r)
{
	const char *start = r->p;
	const char *p = r->p;
	bool		real = false;
	char		text[64];
	char	   *end;

#define DIGITS(p) ((p) < r->end && *(p) >= '0' && *(p) <= '9')
	if (p < r->end && *p == '-')
		p++;
	if (!DIGITS(p))
		return NULL;
	if (*p++ != '0')
		while (DIGITS(p))
			p++;
	if (p < r->end && *p == '.')
	{
		real = true;
		p++;
		if (!DIGITS(p))
			return NULL;
		while (DIGITS(p))
			p++;
	}
	if (p < r->end && (*p == 'e' || *p == 'E'))
	{
		real = true;
		p++;
		if (p < r->end && (*p == '+' || *p == '-'))
			p++;
		if (!DIGITS(p))
			return NULL;
		while (DIGITS(p))
			p++;
	}
#undef DIGITS
	if (p - start >= (ptrdiff_t) sizeof(text))
		return NULL;
	memcpy(text, start, p - start);
	text[p - start] = '\0';
	r->p = p;
	errno = 0;
	if (!real)
	{
		json_int_t	v = strtoll(text, &end, 10);

		return errno == ERANGE ? NULL : json_integer(v);
	}
	else
	{
		double		v = strtod(text, &end);

		return (v == HUGE_VAL || v == -HUGE_VAL) && errno == ERANGE ? NULL : json_real(v);
	}
}

/* The literal word at r->p, if it is one */
static json_t *
read_word(Reader *r, const char *word, json_t *value)
{
	size_t		n = strlen(word);

	if ((size_t) (r->end - r->p) < n || memcmp(r->p, word, n) != 0)
		return NULL;
	r->p += n;
	return value;
}

static json_t *
read_object(Reader *r)
{
	json_t	   *obj = json_pack("{}");

	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == '}')
	{
		r->p++;
		return obj;
	}
	for (;;)
	{
		const char *key;
		size_t		len;
		char	   *copy;
		json_t	   *value;

		bool		set;

		if (r->p >= r->end || *r->p != '"' || !read_string(r, &key, &len))
			break;
		/* the key's text may be the scratch buffer, which the value reuses */
		copy = key == r->scratch.data ? pnstrdup(key, len) : NULL;
		skip_space(r);
		set = r->p < r->end && *r->p++ == ':' && (value = read_value(r)) != NULL &&
			json_object_setn_new_nocheck(obj, copy ? copy : key, len, value) == 0;
		if (copy)
			pfree(copy);
		if (!set)
			break;
		skip_space(r);
		if (r->p < r->end && *r->p == ',')
		{
			r->p++;
			skip_space(r);
			continue;
		}
		if (r->p < r->end && *r->p == '}')
		{
			r->p++;
			return obj;
		}
		break;
	}
	json_decref(obj);
	return NULL;
}

static json_t *
read_array(Reader *r)
{
	json_t	   *arr = json_array();

	r->p++;
	skip_space(r);
	if (r->p < r->end && *r->p == ']')
	{
		r->p++;
		return arr;
	}
	for (;;)
	{
		json_t	   *value = read_value(r);

		if (value == NULL || json_array_append_new(arr, value) != 0)
			break;
		skip_space(r);
		if (r->p < r->end && *r->p == ',')
		{
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == ']')
		{
			r->p++;
			return arr;
		}
		break;
	}
	json_decref(arr);
	return NULL;
}

static json_t *
read_value(Reader *r)
{
	json_t	   *v = NULL;

	skip_space(r);
	if (r->p >= r->end || ++r->depth > READ_MAX_DEPTH)
		return NULL;
	switch (*r->p)
	{
		case '{':
			v = read_object(r);
			break;
		case '[':
			v = read_array(r);
			break;
		case '"':
			{
				const char *text;
				size_t		len;

				if (read_string(r, &text, &len))
					v = json_stringn_nocheck(text, len);
				break;
			}
		case 't':
			v = read_word(r, "true", json_true());
			break;
		case 'f':
			v = read_word(r, "false", json_false());
			break;
		case 'n':
			v = read_word(r, "null", json_null());
			break;
		default:
			v = read_number(r);
	}
	r->depth--;
	return v;
}

/*
 * The tree of the JSON text buf, as json_loadb(buf, len, flags) reads it,
 * or NULL when this reader leaves it to jansson.  flags: 0 (an object or an
 * array) or JSON_DECODE_ANY (any value).
 */
json_t *
llmgw_json_read(const char *buf, size_t len, size_t flags)
{
	Reader		r = {.p = buf, .end = buf + len};
	json_t	   *root;

	skip_space(&r);
	if ((flags & ~JSON_DECODE_ANY) != 0 ||
		(!(flags & JSON_DECODE_ANY) && (r.p >= r.end || (*r.p != '{' && *r.p != '['))))
		return NULL;
	root = read_value(&r);
	skip_space(&r);
	if (r.scratch.data)
		pfree(r.scratch.data);
	if (root != NULL && r.p != r.end)
	{
		json_decref(root);
		return NULL;
	}
	return root;
}

/* json_loadb, through the reader above first */
json_t *
llmgw_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *jerr)
{
	json_t	   *root = llmgw_json_read(buf, len, flags);

	if (root != NULL)
		return root;
	return json_loadb(buf, len, flags, jerr);
}
