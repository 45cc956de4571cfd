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

#include "common/cryptohash.h"
#include "lib/stringinfo.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
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

/*
 * The hash a virtual key is stored under (SHA-256); false when it could not
 * be computed (out of memory), and then the hash matches no key.
 */
bool
llmgw_api_key_hash(const char *key, size_t len, uint8 *hash)
{
	static ResourceOwner outside = NULL;
	ResourceOwner saved = CurrentResourceOwner;
	pg_cryptohash_ctx *ctx;
	bool		ok;

	/* outside a transaction (the front door), the context needs an owner */
	if (CurrentResourceOwner == NULL)
	{
		if (outside == NULL)
			outside = ResourceOwnerCreate(NULL, "llmgw key hashing");
		CurrentResourceOwner = outside;
	}
	ctx = pg_cryptohash_create(PG_SHA256);
	ok = ctx != NULL && pg_cryptohash_init(ctx) == 0 &&
		pg_cryptohash_update(ctx, (const uint8 *) key, len) == 0 &&
		pg_cryptohash_final(ctx, hash, LLMGW_KEY_HASH_LEN) == 0;
	pg_cryptohash_free(ctx);
	CurrentResourceOwner = saved;
	if (!ok)
		memset(hash, 0, LLMGW_KEY_HASH_LEN);
	return ok;
}

void
llmgw_api_key_assign(const char *newval, void *extra)
{
	size_t		len = newval ? strlen(newval) : 0;

	key_set = false;
	key_shown[0] = '\0';
	if (len == 0)
		return;
	/* out of memory: the hash matches no key, and calls say so */
	key_set = true;
	if (!llmgw_api_key_hash(newval, len, key_hash))
		return;
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
