/*-------------------------------------------------------------------------
 *
 * redaction_scan.c
 *		Scanners of the built-in redaction patterns: each finds the match
 *		that regexp_replace would find for its pattern, in one pass over
 *		the bytes (src/redaction.c uses them; test/fuzz fuzzes them).
 *
 * The scanners look at ASCII bytes only, which in every server encoding
 * are whole characters, so their offsets are character boundaries.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "redaction_scan.h"

static inline bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static inline bool
is_alpha(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static inline bool
is_alnum(char c)
{
	return is_alpha(c) || is_digit(c);
}

/* [A-Za-z0-9-]: a character of a domain label */
static inline bool
is_label(char c)
{
	return is_alnum(c) || c == '-';
}

/* [A-Za-z0-9._%+-]: a character of an address's local part */
static inline bool
is_local(char c)
{
	return is_label(c) || c == '.' || c == '_' || c == '%' || c == '+';
}

/*
 * card: (?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9]).  From a digit that
 * follows no digit, the walk over digits (each alone or after one space or
 * dash) is the only way the pattern can go; it may end after 13 to 19
 * digits where no digit follows, and the longest such end is the match.
 */
bool
llmgw_scan_card(const char *s, int n, int from, int *start, int *end)
{
	for (int i = from; i < n; i++)
	{
		int			p,
					digits = 1,
					best = -1;

		if (!is_digit(s[i]) || (i > 0 && is_digit(s[i - 1])))
			continue;
		p = i + 1;
		for (;;)
		{
			if (p < n && is_digit(s[p]))
				p++;
			else if (p + 1 < n && (s[p] == ' ' || s[p] == '-') && is_digit(s[p + 1]))
				p += 2;
			else
				break;
			if (++digits > 19)
				break;
			if (digits >= 13 && (p == n || !is_digit(s[p])))
				best = p;
		}
		if (best >= 0)
		{
			*start = i;
			*end = best;
			return true;
		}
	}
	return false;
}

/*
 * The longest domain after an '@' at d:
 * [A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}.  Labels are walked
 * while a dot is followed by a label character; the domain may end
 * wherever the characters since the last dot are two or more letters.
 * -1: none.
 */
static int
domain_end(const char *s, int n, int d)
{
	int			p = d,
				best = -1,
				letters = 0;
	bool		after_dot = false;	/* a dot was passed, and only letters since */

	if (p >= n || !is_label(s[p]))
		return -1;
	while (p < n)
	{
		if (is_label(s[p]))
		{
			if (after_dot && is_alpha(s[p]))
				letters++;
			else
				after_dot = false;
			p++;
			if (after_dot && letters >= 2)
				best = p;
		}
		else if (s[p] == '.' && p + 1 < n && is_label(s[p + 1]))
		{
			after_dot = true;
			letters = 0;
			p++;
		}
		else
			break;
	}
	return best;
}

/*
 * email: [A-Za-z0-9._%+-]+@ and a domain.  No local character is an '@',
 * so a match holds the first '@' after its start: the '@'s are tried in
 * order, each with the local characters that run back from it (not before
 * from) and the longest domain after it.
 */
bool
llmgw_scan_email(const char *s, int n, int from, int *start, int *end)
{
	const char *at;

	for (int i = from; i < n && (at = memchr(s + i, '@', n - i)) != NULL; i = (int) (at - s) + 1)
	{
		int			a = (int) (at - s),
					local = a,
					e;

		while (local > from && is_local(s[local - 1]))
			local--;
		if (local == a || (e = domain_end(s, n, a + 1)) < 0)
			continue;
		*start = local;
		*end = e;
		return true;
	}
	return false;
}

/* virtual_key: lgw_[A-Za-z0-9]{16,}, with every letter and digit that follows */
bool
llmgw_scan_virtual_key(const char *s, int n, int from, int *start, int *end)
{
	for (int i = from; i + 4 <= n; i++)
	{
		int			p;

		if (memcmp(s + i, "lgw_", 4) != 0)
			continue;
		for (p = i + 4; p < n && is_alnum(s[p]); p++)
			;
		if (p - (i + 4) >= 16)
		{
			*start = i;
			*end = p;
			return true;
		}
	}
	return false;
}
