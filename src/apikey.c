/*-------------------------------------------------------------------------
 *
 * apikey.c
 *		The llmgw.api_key setting: a session presents its virtual key here.
 *
 * The key is hashed as soon as it is set; requests carry only the hash.
 * SHOW and pg_settings display the key's short prefix, never the key, and
 * the statement that set it is hidden from pg_stat_activity.  The check
 * hook accepts any value, so the GUC machinery never echoes a key in an
 * error: a bad key is refused, without being repeated, when it is used.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "pgstat.h"
#include "utils/guc.h"

#include "policy.h"

char	   *llmgw_api_key = NULL;

static bool key_set = false;
static uint8 key_hash[LLMGW_KEY_HASH_LEN];
static char key_shown[LLMGW_KEY_PREFIX_LEN + 8];

bool
llmgw_api_key_check(char **newval, void **extra, GucSource source)
{
	return true;
}

void
llmgw_api_key_assign(const char *newval, void *extra)
{
	pg_cryptohash_ctx *ctx;
	size_t		len = newval ? strlen(newval) : 0;

	key_set = false;
	key_shown[0] = '\0';
	if (len == 0)
		return;
	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) newval, len) < 0 ||
		pg_cryptohash_final(ctx, key_hash, sizeof(key_hash)) < 0)
	{
		/* out of memory: no key is presented, and calls say so */
		pg_cryptohash_free(ctx);
		memset(key_hash, 0, sizeof(key_hash));
		key_set = true;
		return;
	}
	pg_cryptohash_free(ctx);
	key_set = true;
	snprintf(key_shown, sizeof(key_shown), "%.*s...",
			 (int) Min(len / 2, LLMGW_KEY_PREFIX_LEN), newval);
	/* the statement that set the key must not stay in pg_stat_activity */
	if (IsUnderPostmaster && MyBackendType == B_BACKEND)
		pgstat_report_activity(STATE_RUNNING,
							   "<statement hidden: it set llmgw.api_key>");
}

const char *
llmgw_api_key_show(void)
{
	return key_shown;
}

/* The presented key's hash; false when the session presents none */
bool
llmgw_api_key_current(uint8 *hash)
{
	if (!key_set)
		return false;
	memcpy(hash, key_hash, LLMGW_KEY_HASH_LEN);
	return true;
}

/*
 * Log lines must not carry keys, even with log_statement = all: mask every
 * "lgw_" token in a message, and leave out the statement of a report when
 * it holds one.
 */
static emit_log_hook_type prev_emit_log_hook = NULL;

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

static char *
mask_keys(const char *s)
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

static void
llmgw_emit_log(ErrorData *edata)
{
	if (has_key_token(edata->message) || has_key_token(edata->detail) ||
		has_key_token(debug_query_string))
	{
		MemoryContext old = MemoryContextSwitchTo(ErrorContext);

		if (has_key_token(edata->message))
			edata->message = mask_keys(edata->message);
		if (has_key_token(edata->detail))
			edata->detail = mask_keys(edata->detail);
		if (has_key_token(debug_query_string))
			edata->hide_stmt = true;
		MemoryContextSwitchTo(old);
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

void
llmgw_api_key_install_log_hook(void)
{
	prev_emit_log_hook = emit_log_hook;
	emit_log_hook = llmgw_emit_log;
}
