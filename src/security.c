/*-------------------------------------------------------------------------
 *
 * security.c
 *		What llmgw lets a role reach: provider secrets by reference, the
 *		hosts a provider may live on, and who is really calling.
 *
 * Secret references.  A provider's secret is stored (owner-only table) or
 * referenced as env:NAME or file:/path, resolved by a worker, which can read
 * whatever the server can.  So a reference resolves only if the superuser
 * allowed it in postgresql.conf (llmgw.secret_env_prefix for variable
 * names, llmgw.secret_directory for files; nothing by default), or if a
 * superuser set it (providers.secret_ref_trusted, kept by a trigger).
 * Secrets with control characters are refused: they would inject headers.
 *
 * Hosts.  A base URL may name only hosts of llmgw.allowed_hosts (when set),
 * and never a link-local or cloud metadata address unless
 * llmgw.allow_link_local is on.  The URL is checked when the configuration
 * is loaded, and every address curl connects to is checked again (a name
 * may resolve anywhere).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <curl/curl.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/fd.h"
#include "utils/acl.h"
#include "utils/builtins.h"

#include "security.h"

/* Largest secret file read */
#define SECRET_FILE_MAX 65536

char	   *llmgw_secret_directory = NULL;
char	   *llmgw_secret_env_prefix = NULL;
char	   *llmgw_allowed_hosts = NULL;
bool		llmgw_allow_link_local = false;

/* Does a secret contain a control character (or is it empty)? */
static bool
unsafe_secret(const char *s)
{
	if (*s == '\0')
		return true;
	for (; *s; s++)
		if ((unsigned char) *s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* Is path, taken literally, inside directory dir (no "..", no "//")? */
static bool
path_inside(const char *path, const char *dir)
{
	size_t		n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n == 0 || dir[0] != '/' || strncmp(path, dir, n) != 0 || path[n] != '/')
		return false;
	return strstr(path, "/../") == NULL && strstr(path, "/./") == NULL &&
		strstr(path, "//") == NULL &&
		!(strlen(path) >= 3 && strcmp(path + strlen(path) - 3, "/..") == 0);
}

/*
 * Does postgresql.conf allow this reference for any role?  For a file, the
 * path as written must be inside llmgw.secret_directory (the real path is
 * checked again when it is read).
 */
bool
llmgw_secret_ref_allowed(const char *ref)
{
	if (strncmp(ref, "env:", 4) == 0)
		return llmgw_secret_env_prefix && llmgw_secret_env_prefix[0] &&
			strncmp(ref + 4, llmgw_secret_env_prefix, strlen(llmgw_secret_env_prefix)) == 0;
	if (strncmp(ref, "file:", 5) == 0)
		return llmgw_secret_directory && llmgw_secret_directory[0] &&
			path_inside(ref + 5, llmgw_secret_directory);
	return true;				/* 'stored' */
}

/*
 * The canonical path of a file (symbolic links resolved), palloc'd; NULL
 * when it cannot be resolved.  realpath() allocates it: a buffer of ours
 * would have to be PATH_MAX long (glibc's _FORTIFY_SOURCE checks that).
 */
static char *
canonical_path(const char *path)
{
	char	   *real = realpath(path, NULL);
	char	   *copy;

	if (real == NULL)
		return NULL;
	copy = pstrdup(real);
	free(real);
	return copy;
}

/* Read a secret file, trimming the trailing newline */
static char *
read_secret_file(const char *path, bool trusted, char **error)
{
	FILE	   *f;
	char	   *buf;
	size_t		n;
	struct stat st;

	/*
	 * Symbolic links may not lead out of the allowed directory: the file
	 * read is the one whose canonical path was checked.
	 */
	if (!trusted)
	{
		char	   *real = canonical_path(path);
		char	   *dir = canonical_path(llmgw_secret_directory);

		if (real == NULL || dir == NULL || !path_inside(real, dir))
		{
			*error = pstrdup("the secret file is outside llmgw.secret_directory or cannot be read");
			return NULL;
		}
		path = real;
	}
	if (stat(path, &st) != 0)
	{
		*error = psprintf("could not open secret file \"%s\": %m", path);
		return NULL;
	}
	if (!S_ISREG(st.st_mode))
	{
		*error = psprintf("secret file \"%s\" is not a regular file", path);
		return NULL;
	}
	f = AllocateFile(path, "r");
	if (f == NULL)
	{
		*error = psprintf("could not open secret file \"%s\": %m", path);
		return NULL;
	}
	buf = palloc(SECRET_FILE_MAX + 1);
	n = fread(buf, 1, SECRET_FILE_MAX, f);
	FreeFile(f);
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	return buf;
}

/*
 * Resolve a provider's secret reference to the secret itself, or NULL with
 * *error set.  trusted: a superuser set the reference.
 */
char *
llmgw_resolve_secret(const char *ref, const char *stored, bool trusted, char **error)
{
	char	   *secret = NULL;

	if (ref == NULL)
		return NULL;
	if (!trusted && !llmgw_secret_ref_allowed(ref))
	{
		*error = psprintf("the secret reference of this provider is not allowed: only a superuser may point a provider at %s outside %s",
						  strncmp(ref, "env:", 4) == 0 ? "an environment variable" : "a file",
						  strncmp(ref, "env:", 4) == 0 ? "llmgw.secret_env_prefix" : "llmgw.secret_directory");
		return NULL;
	}
	if (strncmp(ref, "env:", 4) == 0)
	{
		const char *value = getenv(ref + 4);

		if (value == NULL || value[0] == '\0')
		{
			*error = psprintf("environment variable \"%s\" is not set in the server's environment", ref + 4);
			return NULL;
		}
		secret = pstrdup(value);
	}
	else if (strncmp(ref, "file:", 5) == 0)
		secret = read_secret_file(ref + 5, trusted, error);
	else if (strcmp(ref, "stored") == 0)
	{
		if (stored == NULL)
			*error = pstrdup("the stored secret is missing");
		secret = stored ? pstrdup(stored) : NULL;
	}
	else
		*error = pstrdup("unknown secret reference kind");
	if (secret && unsafe_secret(secret))
	{
		explicit_bzero(secret, strlen(secret));
		*error = pstrdup("the secret is empty or contains control characters");
		return NULL;
	}
	return secret;
}

/* Is an IPv4 address (host order) link-local or a cloud metadata service? */
static bool
refused_ipv4(uint32 a)
{
	return (a & 0xffff0000) == 0xa9fe0000 ||	/* 169.254.0.0/16 */
		a == 0x646464c8;		/* 100.100.100.200 (Alibaba Cloud) */
}

/* Is an IPv6 address link-local, a cloud metadata service, or a mapped one? */
static bool
refused_ipv6(const unsigned char *a)
{
	static const unsigned char aws[16] = {0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54};
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return true;			/* fe80::/10 */
	if (memcmp(a, aws, 16) == 0)
		return true;
	if (memcmp(a, mapped, 12) == 0)
		return refused_ipv4(((uint32) a[12] << 24) | ((uint32) a[13] << 16) |
							((uint32) a[14] << 8) | a[15]);
	return false;
}

/* May curl connect to this address? */
bool
llmgw_address_allowed(const struct sockaddr *addr)
{
	if (llmgw_allow_link_local)
		return true;
	if (addr->sa_family == AF_INET)
		return !refused_ipv4(ntohl(((const struct sockaddr_in *) addr)->sin_addr.s_addr));
	if (addr->sa_family == AF_INET6)
		return !refused_ipv6(((const struct sockaddr_in6 *) addr)->sin6_addr.s6_addr);
	return true;
}

/* Does host match an entry of llmgw.allowed_hosts ("name" or ".domain")? */
static bool
host_listed(const char *host)
{
	char	   *list = pstrdup(llmgw_allowed_hosts);
	char	   *save = NULL;
	size_t		hlen = strlen(host);

	for (char *tok = strtok_r(list, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
	{
		size_t		tlen;

		if (tok[0] == '*')
			tok++;
		tlen = strlen(tok);
		if (pg_strcasecmp(tok, host) == 0)
			return true;
		if (tok[0] == '.' && hlen > tlen && pg_strcasecmp(host + hlen - tlen, tok) == 0)
			return true;
	}
	return false;
}

/*
 * Why a provider may not be called at this base URL, or NULL when it may:
 * the host must be listed in llmgw.allowed_hosts (when that is set) and,
 * unless llmgw.allow_link_local, not be a link-local or metadata address.
 */
const char *
llmgw_url_refused(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *host = NULL;
	const char *why = NULL;

	if (u == NULL)
		return "out of memory";
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		why = "the base URL cannot be parsed";
	else
	{
		char	   *bare = pstrdup(host);
		unsigned char addr[16];
		size_t		len = strlen(bare);

		if (len > 2 && bare[0] == '[' && bare[len - 1] == ']')
		{
			bare[len - 1] = '\0';
			bare++;
		}
		/* "metadata.google.internal." and "169.254.169.254." are the same hosts */
		else
		{
			while (len > 0 && bare[len - 1] == '.')
				bare[--len] = '\0';
		}
		if (!llmgw_allow_link_local &&
			((inet_pton(AF_INET, bare, addr) == 1 && refused_ipv4(ntohl(*(uint32 *) addr))) ||
			 (inet_pton(AF_INET6, bare, addr) == 1 && refused_ipv6(addr)) ||
			 pg_strcasecmp(bare, "metadata.google.internal") == 0 ||
			 pg_strcasecmp(bare, "metadata") == 0))
			why = "the base URL names a link-local or cloud metadata address (see llmgw.allow_link_local)";
		else if (llmgw_allowed_hosts && llmgw_allowed_hosts[0] && !host_listed(bare))
			why = "the base URL's host is not in llmgw.allowed_hosts";
	}
	curl_free(host);
	curl_url_cleanup(u);
	return why;
}

/* The role that is really calling: SET ROLE's, not a SECURITY DEFINER owner */
Oid
llmgw_caller(void)
{
	return GetOuterUserId();
}

PG_FUNCTION_INFO_V1(llmgw_caller_name);

/* llmgw.caller() -> name: the calling role, seen from a SECURITY DEFINER function */
Datum
llmgw_caller_name(PG_FUNCTION_ARGS)
{
	PG_RETURN_DATUM(DirectFunctionCall1(namein,
										CStringGetDatum(GetUserNameFromId(llmgw_caller(), false))));
}

PG_FUNCTION_INFO_V1(llmgw_caller_is_superuser);

/* llmgw.caller_is_superuser() -> boolean */
Datum
llmgw_caller_is_superuser(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(superuser_arg(llmgw_caller()));
}

PG_FUNCTION_INFO_V1(llmgw_caller_has_role);

/*
 * llmgw.caller_has_role(role name) -> boolean: is the caller a member of the
 * role by explicit grants (a superuser is not a member of everything here)?
 */
Datum
llmgw_caller_has_role(PG_FUNCTION_ARGS)
{
	Oid			role = get_role_oid(NameStr(*PG_GETARG_NAME(0)), true);

	PG_RETURN_BOOL(OidIsValid(role) && is_member_of_role_nosuper(llmgw_caller(), role));
}

PG_FUNCTION_INFO_V1(llmgw_secret_ref_allowed_sql);

/* llmgw.secret_ref_allowed(ref text) -> boolean (for the providers trigger) */
Datum
llmgw_secret_ref_allowed_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(llmgw_secret_ref_allowed(text_to_cstring(PG_GETARG_TEXT_PP(0))));
}

PG_FUNCTION_INFO_V1(llmgw_check_base_url);

/* llmgw.check_base_url(url text): an error if llmgw would refuse the URL */
Datum
llmgw_check_base_url(PG_FUNCTION_ARGS)
{
	const char *why = llmgw_url_refused(text_to_cstring(PG_GETARG_TEXT_PP(0)));

	if (why)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("llmgw may not call this base URL"),
				 errdetail("%c%s.", pg_toupper((unsigned char) why[0]), why + 1),
				 errhint("A superuser decides with llmgw.allowed_hosts and llmgw.allow_link_local in postgresql.conf.")));
	PG_RETURN_VOID();
}

PG_FUNCTION_INFO_V1(llmgw_hide_statement);

/*
 * llmgw.hide_statement(): the statement running now passed a secret; show
 * something else in pg_stat_activity (also once the session is idle).
 */
Datum
llmgw_hide_statement(PG_FUNCTION_ARGS)
{
	pgstat_report_activity(STATE_RUNNING, "<statement hidden: it passed a provider secret>");
	PG_RETURN_VOID();
}
