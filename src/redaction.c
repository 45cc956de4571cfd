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
 * pattern (src/redaction_scan.c) instead of the regular expression engine: one pass over the
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
#include "redaction_scan.h"

/* The built-in patterns, as the extension script inserts them */
#define CARD_PATTERN "(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"
#define EMAIL_PATTERN "[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}"
#define VIRTUAL_KEY_PATTERN "lgw_[A-Za-z0-9]{16,}"

#define REDACTION_RULES \
	"SELECT pattern, replacement FROM llmgw.redaction_rules WHERE enabled" \
	" ORDER BY name COLLATE \"C\""

struct LlmgwRedactionRule
{
	LlmgwScanner scan;			/* NULL: the regular expression engine */
	text	   *pattern;
	text	   *replacement;
};

/* The scanner of a rule, if it is a built-in one unchanged */
static LlmgwScanner
scanner_for(const char *pattern, const char *replacement)
{
	if (strchr(replacement, '\\') != NULL)
		return NULL;
	if (strcmp(pattern, CARD_PATTERN) == 0)
		return llmgw_scan_card;
	if (strcmp(pattern, EMAIL_PATTERN) == 0)
		return llmgw_scan_email;
	if (strcmp(pattern, VIRTUAL_KEY_PATTERN) == 0)
		return llmgw_scan_virtual_key;
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

/*
 * Every match of a scanner replaced; NULL when that changed nothing (no
 * match, or only matches equal to the replacement)
 */
static text *
replace_scanned(text *body, const LlmgwRedactionRule *rule)
{
	const char *s = VARDATA_ANY(body);
	int			n = VARSIZE_ANY_EXHDR(body);
	const char *rep = VARDATA_ANY(rule->replacement);
	int			replen = VARSIZE_ANY_EXHDR(rule->replacement);
	int			from = 0,
				start,
				end;
	bool		differs = false;
	StringInfoData out;

	if (!rule->scan(s, n, 0, &start, &end))
		return NULL;
	initStringInfo(&out);
	appendStringInfoSpaces(&out, VARHDRSZ);
	do
	{
		differs |= end - start != replen || memcmp(s + start, rep, replen) != 0;
		appendBinaryStringInfo(&out, s + from, start - from);
		appendBinaryStringInfo(&out, rep, replen);
		from = end;
	} while (from < n && rule->scan(s, n, from, &start, &end));
	if (!differs)
	{
		pfree(out.data);
		return NULL;
	}
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
