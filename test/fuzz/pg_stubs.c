/*
 * The few PostgreSQL allocation functions the provider parsers use, for
 * fuzzing them outside a server.  Every allocation goes into an arena that
 * the harness frees after each input, as a memory context reset would.
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>

#undef vsnprintf

#include "lib/stringinfo.h"

#include "pg_stubs.h"

static void **arena = NULL;
static size_t arena_len = 0;
static size_t arena_cap = 0;

/* Remember an allocation so that stub_arena_reset frees it */
static void *
remember(void *p)
{
	if (p == NULL)
		abort();
	if (arena_len == arena_cap)
	{
		arena_cap = arena_cap ? arena_cap * 2 : 64;
		arena = realloc(arena, arena_cap * sizeof(void *));
		if (arena == NULL)
			abort();
	}
	arena[arena_len++] = p;
	return p;
}

void
stub_arena_reset(void)
{
	for (size_t i = 0; i < arena_len; i++)
		free(arena[i]);
	arena_len = 0;
}

void *
palloc(Size size)
{
	return remember(malloc(size ? size : 1));
}

void *
palloc0(Size size)
{
	return remember(calloc(1, size ? size : 1));
}

char *
pstrdup(const char *in)
{
	return remember(strdup(in));
}

char *
pnstrdup(const char *in, Size len)
{
	return remember(strndup(in, len));
}

/* Format into a new arena buffer; *len gets the length */
static char *
format_va(const char *fmt, va_list ap, int *len)
{
	va_list		again;
	char	   *buf;

	va_copy(again, ap);
	*len = vsnprintf(NULL, 0, fmt, ap);
	buf = palloc(*len + 1);
	vsnprintf(buf, *len + 1, fmt, again);
	va_end(again);
	return buf;
}

char *
psprintf(const char *fmt,...)
{
	va_list		ap;
	char	   *buf;
	int			n;

	va_start(ap, fmt);
	buf = format_va(fmt, ap, &n);
	va_end(ap);
	return buf;
}

void
pfree(void *pointer)
{
	/* the arena frees everything at the end of the input */
}

void
initStringInfo(StringInfo str)
{
	str->maxlen = 1024;
	str->data = palloc(str->maxlen);
	resetStringInfo(str);
}

void
resetStringInfo(StringInfo str)
{
	str->data[0] = '\0';
	str->len = 0;
	str->cursor = 0;
}

void
enlargeStringInfo(StringInfo str, int needed)
{
	char	   *grown;

	if (str->len + needed + 1 <= str->maxlen)
		return;
	while (str->len + needed + 1 > str->maxlen)
		str->maxlen *= 2;
	grown = palloc(str->maxlen);
	memcpy(grown, str->data, str->len + 1);
	str->data = grown;
}

void
appendBinaryStringInfo(StringInfo str, const char *data, int datalen)
{
	enlargeStringInfo(str, datalen);
	memcpy(str->data + str->len, data, datalen);
	str->len += datalen;
	str->data[str->len] = '\0';
}

void
appendStringInfoString(StringInfo str, const char *s)
{
	appendBinaryStringInfo(str, s, strlen(s));
}

void
appendStringInfoChar(StringInfo str, char ch)
{
	appendBinaryStringInfo(str, &ch, 1);
}

void
appendStringInfo(StringInfo str, const char *fmt,...)
{
	va_list		ap;
	char	   *buf;
	int			n;

	va_start(ap, fmt);
	buf = format_va(fmt, ap, &n);
	va_end(ap);
	appendBinaryStringInfo(str, buf, n);
}

int
pg_snprintf(char *str, size_t count, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(str, count, fmt, ap);
	va_end(ap);
	return n;
}
