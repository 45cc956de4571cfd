/*-------------------------------------------------------------------------
 *
 * redaction.c
 *		The redaction rules of the request log (llmgw.redaction_rules):
 *		each enabled rule's pattern replaced in a body, rule after rule in
 *		the byte order of their names, exactly as regexp_replace(body,
 *		pattern, replacement, 'g') would replace it.
 *
 * A rule whose pattern is, byte for byte, one of the three built-in
 * patterns (card, email, virtual_key) and whose replacement holds no
 * backslash (so means itself) is matched by a scanner written for that
 * pattern instead of the regular expression engine: one pass over the
 * bytes, with the regular expression's leftmost-longest choice, at a
 * fraction of the engine's cost per body (the engine converts the body to
 * wide characters and runs an automaton per rule).  Every other rule, and
 * a built-in one changed in any way, goes through the engine.  The
 * scanners look at ASCII bytes only, which in every server encoding are
 * whole characters, so their byte offsets are character boundaries.
 * test/sql/request_log.sql checks the scanners against regexp_replace on
 * crafted and generated bodies.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "regex/regex.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "redaction.h"

/* The built-in patterns, as the extension script inserts them */
#define CARD_PATTERN "(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"
#define EMAIL_PATTERN "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}"
#define VIRTUAL_KEY_PATTERN "lgw_[A-Za-z0-9]{16,}"

#define REDACTION_RULES \
	"SELECT pattern, replacement FROM llmgw.redaction_rules WHERE enabled" \
	" ORDER BY name COLLATE \"C\""

/*
 * A scanner: the leftmost match starting at or after from in s[0, n), as
 * [*start, *end); false when there is none.  Bytes before from are seen
 * (as a look-behind sees them) but never matched.
 */
typedef bool (*Scanner) (const char *s, int n, int from, int *start, int *end);

struct LlmgwRedactionRule
{
	Scanner		scan;			/* NULL: the regular expression engine */
	text	   *pattern;
	text	   *replacement;
};

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
static bool
scan_card(const char *s, int n, int from, int *start, int *end)
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
static bool
scan_email(const char *s, int n, int from, int *start, int *end)
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
static bool
scan_virtual_key(const char *s, int n, int from, int *start, int *end)
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

/* The scanner of a rule, if it is a built-in one unchanged */
static Scanner
scanner_for(const char *pattern, const char *replacement)
{
	if (strchr(replacement, '\\') != NULL)
		return NULL;
	if (strcmp(pattern, CARD_PATTERN) == 0)
		return scan_card;
	if (strcmp(pattern, EMAIL_PATTERN) == 0)
		return scan_email;
	if (strcmp(pattern, VIRTUAL_KEY_PATTERN) == 0)
		return scan_virtual_key;
	return NULL;
}

/*
 * The enabled rules, in the order they apply, allocated in cxt (SPI
 * connected)
 */
LlmgwRedactionRule *
llmgw_redaction_load(MemoryContext cxt, int *nrules)
{
	int			rc = SPI_execute(REDACTION_RULES, true, 0);
	int			n;
	LlmgwRedactionRule *rules;
	MemoryContext old;

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read the redaction rules: %s", SPI_result_code_string(rc));
	n = (int) SPI_processed;
	old = MemoryContextSwitchTo(cxt);
	rules = palloc0(sizeof(LlmgwRedactionRule) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		char	   *pattern = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		char	   *replacement = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);

		rules[i].scan = scanner_for(pattern, replacement);
		rules[i].pattern = cstring_to_text(pattern);
		rules[i].replacement = cstring_to_text(replacement);
	}
	MemoryContextSwitchTo(old);
	*nrules = n;
	return rules;
}

/* Every match of a scanner replaced; NULL when there was none */
static text *
replace_scanned(text *body, const LlmgwRedactionRule *rule)
{
	const char *s = VARDATA_ANY(body);
	int			n = VARSIZE_ANY_EXHDR(body);
	int			from = 0,
				start,
				end;
	StringInfoData out;

	if (!rule->scan(s, n, 0, &start, &end))
		return NULL;
	initStringInfo(&out);
	appendStringInfoSpaces(&out, VARHDRSZ);
	do
	{
		appendBinaryStringInfo(&out, s + from, start - from);
		appendBinaryStringInfo(&out, VARDATA_ANY(rule->replacement),
							   VARSIZE_ANY_EXHDR(rule->replacement));
		from = end;
	} while (from < n && rule->scan(s, n, from, &start, &end));
	appendBinaryStringInfo(&out, s + from, n - from);
	SET_VARSIZE(out.data, out.len);
	return (text *) out.data;
}

/*
 * A body with the rules applied in order; *changed is set when any of
 * them changed it.  The engine's errors (a pattern too complex for the
 * input) are raised.
 */
text *
llmgw_redaction_apply(const LlmgwRedactionRule *rules, int n, text *body, bool *changed)
{
	for (int i = 0; i < n; i++)
	{
		const LlmgwRedactionRule *rule = &rules[i];
		text	   *out;

		if (rule->scan)
		{
			out = replace_scanned(body, rule);
			if (out == NULL)
				continue;
			*changed = true;
		}
		else
		{
			/* what regexp_replace(body, pattern, replacement, 'g') does */
			out = replace_text_regexp(body, rule->pattern, rule->replacement, REG_ADVANCED,
									  DEFAULT_COLLATION_OID, 0, 0);
			if (!*changed &&
				(VARSIZE_ANY_EXHDR(out) != VARSIZE_ANY_EXHDR(body) ||
				 memcmp(VARDATA_ANY(out), VARDATA_ANY(body), VARSIZE_ANY_EXHDR(body)) != 0))
				*changed = true;
		}
		body = out;
	}
	return body;
}
