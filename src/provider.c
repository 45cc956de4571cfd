/*-------------------------------------------------------------------------
 *
 * provider.c
 *		The table of wire formats, and helpers they share.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "provider.h"

/* The format of a provider kind, or NULL */
const LlmgwProvider *
llmgw_provider(const char *kind)
{
	if (strcmp(kind, "openai") == 0 || strcmp(kind, "openai_compatible") == 0)
		return &llmgw_provider_openai;
	if (strcmp(kind, "openai_responses") == 0)
		return &llmgw_provider_responses;
	if (strcmp(kind, "azure") == 0)
		return &llmgw_provider_azure;
	if (strcmp(kind, "anthropic") == 0)
		return &llmgw_provider_anthropic;
	if (strcmp(kind, "gemini") == 0)
		return &llmgw_provider_gemini;
	return NULL;
}

/* base + path, with exactly one '/' between them */
char *
llmgw_url_join(const char *base, const char *path)
{
	size_t		len = strlen(base);

	while (len > 0 && base[len - 1] == '/')
		len--;
	while (*path == '/')
		path++;
	return psprintf("%.*s/%s", (int) len, base, path);
}

/* Content type and the headers every JSON call sends */
struct curl_slist *
llmgw_json_headers(void)
{
	struct curl_slist *h = NULL;

	h = curl_slist_append(h, "Content-Type: application/json");
	h = curl_slist_append(h, "Accept: application/json");
	h = curl_slist_append(h, "Expect:");
	return h;
}

/* Add "name: prefix secret"; the temporary copy is wiped */
struct curl_slist *
llmgw_header_secret(struct curl_slist *h, const char *name, const char *prefix,
					const char *secret)
{
	char	   *line;

	if (secret == NULL)
		return h;
	line = psprintf("%s: %s%s", name, prefix, secret);
	h = curl_slist_append(h, line);
	explicit_bzero(line, strlen(line));
	pfree(line);
	return h;
}
