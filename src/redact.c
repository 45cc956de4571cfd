/*-------------------------------------------------------------------------
 *
 * redact.c
 *		Secrets out of text.
 *
 * Provider messages: a provider may echo the key it was sent (masked, as
 * "sk-ab***yz", or whole); llmgw_redact removes it before a message reaches
 * an error, a usage row or a log line.
 *
 * Log lines: an emit_log_hook sees every message the server logs or sends,
 * whatever log_statement, log_min_messages or log_min_error_statement say.
 * It masks every virtual key ("lgw_" and 16 or more letters and digits) in
 * the message, its details, hint, context and internal query, and leaves
 * the statement out of a report that holds one.  A statement that passes a
 * provider secret to llmgw.set_provider_secret() or llmgw.create_provider()
 * has every quoted literal masked in whatever is logged of it (the
 * statement, its parameters, its context), and is left out of reports.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "lib/stringinfo.h"
#include "tcop/tcopprot.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "redact.h"

/*
 * Copy of text with secrets removed: the provider secret itself, and any
 * word containing "***", which is how providers echo a masked key.
 */
char *
llmgw_redact(const char *text, const char *secret)
{
	StringInfoData buf;
	const char *p = text;

	if (text == NULL)
		return NULL;
	initStringInfo(&buf);
	while (*p)
	{
		const char *end = p;

		if (secret && *secret && strncmp(p, secret, strlen(secret)) == 0)
		{
			appendStringInfoString(&buf, "[redacted]");
			p += strlen(secret);
			continue;
		}
		while (*end && *end != ' ')
			end++;
		if (end > p)
		{
			char	   *word = pnstrdup(p, end - p);

			if (strstr(word, "***") != NULL)
			{
				size_t		keep = strlen(word);

				while (keep > 0 && strchr(".,;:)", word[keep - 1]))
					keep--;
				appendStringInfo(&buf, "[redacted]%s", word + keep);
			}
			else if (secret && *secret && strstr(word, secret) != NULL)
				appendStringInfoString(&buf, llmgw_redact(word, secret));
			else
				appendStringInfoString(&buf, word);
			p = end;
		}
		if (*p == ' ')
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

/* Length of the key-like token at s ("lgw_" and what follows), or 0 */
static int
key_token_length(const char *s)
{
	int			n = 4;

	if (strncmp(s, "lgw_", 4) != 0)
		return 0;
	while (isalnum((unsigned char) s[n]))
		n++;
	/* a prefix (lgw_ and 8 characters) is not secret: keys are longer */
	return n >= 4 + 16 ? n : 0;
}

/* Does s hold a virtual key? */
static bool
has_key_token(const char *s)
{
	if (s == NULL)
		return false;
	for (const char *p = strstr(s, "lgw_"); p; p = strstr(p + 1, "lgw_"))
		if (key_token_length(p) > 0)
			return true;
	return false;
}

/* Copy of s with every virtual key masked */
char *
llmgw_mask_keys(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	while (*s)
	{
		int			n = key_token_length(s);

		if (n > 0)
		{
			appendStringInfoString(&buf, "lgw_[redacted]");
			s += n;
			continue;
		}
		appendStringInfoChar(&buf, *s++);
	}
	return buf.data;
}

/* Length of a dollar-quote tag ("$tag$" or "$$") at s, or 0 */
static int
dollar_tag_length(const char *s)
{
	int			n = 1;

	if (s[0] != '$')
		return 0;
	while (isalnum((unsigned char) s[n]) || s[n] == '_')
		n++;
	return s[n] == '$' && !isdigit((unsigned char) s[1]) ? n + 1 : 0;
}

/*
 * Copy of s with the contents of every quoted literal masked: '...' (with
 * '' inside), E'...' (with backslash escapes), U&'...', and $tag$...$tag$.
 * A literal left open runs to the end, and is masked to the end.
 */
char *
llmgw_mask_literals(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	while (*s)
	{
		int			tag = dollar_tag_length(s);

		if (*s == '\'')
		{
			bool		escapes = buf.len > 0 &&
				(buf.data[buf.len - 1] == 'E' || buf.data[buf.len - 1] == 'e');

			s++;
			while (*s)
			{
				if (escapes && *s == '\\' && s[1])
					s += 2;
				else if (*s == '\'' && s[1] == '\'')
					s += 2;
				else if (*s == '\'')
					break;
				else
					s++;
			}
			appendStringInfoString(&buf, "'[redacted]'");
			if (*s)
				s++;
		}
		else if (tag > 0)
		{
			char	   *close = pnstrdup(s, tag);
			const char *end = strstr(s + tag, close);

			appendStringInfo(&buf, "%s[redacted]%s", close, close);
			s = end ? end + tag : s + strlen(s);
			pfree(close);
		}
		else
			appendStringInfoChar(&buf, *s++);
	}
	return buf.data;
}

/* Does s call a function that takes a provider secret? */
static bool
passes_secret(const char *s)
{
	static const char *const functions[] = {"set_provider_secret", "create_provider"};

	if (s == NULL)
		return false;
	for (int i = 0; i < lengthof(functions); i++)
	{
		size_t		n = strlen(functions[i]);

		for (const char *p = s; *p; p++)
			if (pg_strncasecmp(p, functions[i], n) == 0)
				return true;
	}
	return false;
}

/* Mask one field of a report in place (ErrorContext is current) */
static void
mask_field(char **field, bool literals)
{
	if (*field == NULL)
		return;
	if (literals)
		*field = llmgw_mask_literals(*field);
	if (has_key_token(*field))
		*field = llmgw_mask_keys(*field);
}

static emit_log_hook_type prev_emit_log_hook = NULL;

/* Every report, before it is logged or sent: no key, no provider secret */
static void
llmgw_emit_log(ErrorData *edata)
{
	bool		secret_statement = passes_secret(debug_query_string) ||
		passes_secret(edata->message) || passes_secret(edata->internalquery);

	if (secret_statement || has_key_token(edata->message) || has_key_token(edata->detail) ||
		has_key_token(edata->detail_log) || has_key_token(edata->hint) ||
		has_key_token(edata->context) || has_key_token(edata->internalquery) ||
		has_key_token(debug_query_string))
	{
		MemoryContext old = MemoryContextSwitchTo(ErrorContext);

		mask_field(&edata->message, secret_statement);
		mask_field(&edata->detail, secret_statement);
		mask_field(&edata->detail_log, secret_statement);
		mask_field(&edata->hint, false);
		mask_field(&edata->context, secret_statement);
		mask_field(&edata->internalquery, secret_statement);
		if (secret_statement || has_key_token(debug_query_string))
			edata->hide_stmt = true;
		MemoryContextSwitchTo(old);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
llmgw_redact_install_log_hook(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = llmgw_emit_log;
}
