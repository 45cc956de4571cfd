/*
 * The few PostgreSQL allocation functions the provider parsers use, for
 * fuzzing them outside a server.  Every allocation goes into an arena that
 * the harness frees after each input, as a memory context reset would.
 */
#include "postgres.h"

#include <stdarg.h>
#include <stdio.h>

#undef vsnprintf

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

char *
psprintf(const char *fmt,...)
{
	va_list		ap;
	char	   *buf;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	buf = palloc(n + 1);
	va_start(ap, fmt);
	vsnprintf(buf, n + 1, fmt, ap);
	va_end(ap);
	return buf;
}
