/*-------------------------------------------------------------------------
 *
 * retry.c
 *		When to retry: the backoff of a retry without a hint, and the one
 *		retry hint, in seconds, from whichever headers a provider sends:
 *		retry-after-ms and retry-after (OpenAI, Anthropic, Azure), OpenAI's
 *		x-ratelimit-reset-* durations ("12ms", "2.764s", "6m0s") for limits
 *		with nothing remaining, Anthropic's anthropic-ratelimit-*-reset
 *		RFC 3339 instants for limits with nothing remaining.  Gemini puts
 *		its hint in the body (RetryInfo), read by its parser.
 *
 * Runs inside curl's header callback (llmgw_hint_headers_add): no palloc,
 * no error can be thrown there.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <curl/curl.h>

#include "retry.h"

/* Is this a header we keep? */
static bool
wanted(const char *name)
{
	return strcmp(name, "retry-after") == 0 || strcmp(name, "retry-after-ms") == 0 ||
		strncmp(name, "x-ratelimit-", 12) == 0 || strncmp(name, "anthropic-ratelimit-", 20) == 0;
}

/* Keep a "Name: value" header line if it carries a rate-limit hint */
void
llmgw_hint_headers_add(LlmgwHintHeaders *h, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	size_t		nlen;
	const char *v;
	size_t		vlen;
	char		name[48];

	if (len >= 5 && strncmp(line, "HTTP/", 5) == 0)
	{
		h->count = 0;			/* a new response (after 100 Continue, say) */
		return;
	}
	if (colon == NULL || (nlen = colon - line) >= sizeof(name) || h->count >= LLMGW_MAX_HINT_HEADERS)
		return;
	for (size_t i = 0; i < nlen; i++)
		name[i] = (char) tolower((unsigned char) line[i]);
	name[nlen] = '\0';
	if (!wanted(name))
		return;
	v = colon + 1;
	vlen = len - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
		vlen--;
	if (vlen >= sizeof(h->value[0]))
		return;
	memcpy(h->name[h->count], name, nlen + 1);
	memcpy(h->value[h->count], v, vlen);
	h->value[h->count][vlen] = '\0';
	h->count++;
}

/* Value of a kept header, or NULL */
static const char *
header(const LlmgwHintHeaders *h, const char *name)
{
	for (int i = 0; i < h->count; i++)
		if (strcmp(h->name[i], name) == 0)
			return h->value[i];
	return NULL;
}

/* A non-negative number, or -1 */
static double
number(const char *s)
{
	char	   *end;
	double		v;

	if (s == NULL)
		return -1;
	v = strtod(s, &end);
	return (end != s && *end == '\0' && v >= 0) ? v : -1;
}

/* Seconds of a Go-style duration ("12ms", "2.764s", "6m0s", "1h2m"), or -1 */
double
llmgw_duration_seconds(const char *s)
{
	double		total = 0;
	const char *p = s;

	if (s == NULL || *s == '\0')
		return -1;
	while (*p)
	{
		char	   *end;
		double		v = strtod(p, &end);

		if (end == p || v < 0)
			return -1;
		if (strncmp(end, "ms", 2) == 0)
			total += v / 1000, p = end + 2;
		else if (*end == 'h')
			total += v * 3600, p = end + 1;
		else if (*end == 'm')
			total += v * 60, p = end + 1;
		else if (*end == 's')
			total += v, p = end + 1;
		else
			return -1;
	}
	return total;
}

/* Seconds since the epoch of an RFC 3339 UTC instant ("2026-02-20T10:00:12Z"), or -1 */
static double
instant(const char *s)
{
	struct tm	tm;
	double		frac = 0;
	const char *p;

	memset(&tm, 0, sizeof(tm));
	if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
							&tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
		return -1;
	p = s + 19;
	if (*p == '.')
		frac = strtod(p, (char **) &p);
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	return (double) timegm(&tm) + frac;
}

/*
 * The remaining-count header paired with a reset header: OpenAI's
 * x-ratelimit-reset-X with x-ratelimit-remaining-X, Anthropic's
 * anthropic-ratelimit-X-reset with anthropic-ratelimit-X-remaining.
 * Returns false when name is not a reset header.
 */
static bool
remaining_name(const char *name, char *out, size_t outlen)
{
	size_t		len = strlen(name);

	if (strncmp(name, "x-ratelimit-reset-", 18) == 0)
		return snprintf(out, outlen, "x-ratelimit-remaining-%s", name + 18) < (int) outlen;
	if (strncmp(name, "anthropic-ratelimit-", 20) == 0 && len > 26 &&
		strcmp(name + len - 6, "-reset") == 0)
		return snprintf(out, outlen, "%.*s-remaining", (int) (len - 6), name) < (int) outlen;
	return false;
}

/* The latest reset among limits whose remaining count is zero, or -1 */
static double
exhausted_reset(const LlmgwHintHeaders *h, time_t now)
{
	double		best = -1;

	for (int i = 0; i < h->count; i++)
	{
		char		remaining[64];
		double		secs;

		if (!remaining_name(h->name[i], remaining, sizeof(remaining)) ||
			number(header(h, remaining)) != 0)
			continue;
		secs = h->name[i][0] == 'x' ? llmgw_duration_seconds(h->value[i]) :
			instant(h->value[i]) - (double) now;
		if (secs >= 0 && secs > best)
			best = secs;
	}
	return best;
}

/* Seconds until an HTTP-date ("Wed, 21 Oct 2026 07:28:00 GMT"), or -1 */
static double
until_http_date(const char *s, time_t now)
{
	time_t		at = s ? curl_getdate(s, NULL) : -1;

	return at < 0 ? -1 : Max((double) (at - now), 0.0);
}

/* The provider's hint of when to retry, in seconds; -1 when it gave none */
double
llmgw_retry_hint(const LlmgwHintHeaders *h, time_t now)
{
	double		v;

	if ((v = number(header(h, "retry-after-ms"))) >= 0)
		return v / 1000;
	if ((v = number(header(h, "retry-after"))) >= 0)
		return v;
	/* retry-after may also be an HTTP-date (RFC 9110) */
	if ((v = until_http_date(header(h, "retry-after"), now)) >= 0)
		return v;
	return exhausted_reset(h, now);
}

/*
 * The wait before retry number tries (1, 2, ...) when the provider gave no
 * hint: base_ms doubling with each retry, spread by +-25% (jitter, in [0,
 * 1), so that calls failing together do not retry together), at most max_ms.
 */
double
llmgw_retry_backoff_ms(int tries, int base_ms, int max_ms, double jitter)
{
	double		wait = (double) base_ms * (double) (1 << Min(Max(tries - 1, 0), 16)) *
		(0.75 + 0.5 * jitter);

	return Min(wait, (double) max_ms);
}
