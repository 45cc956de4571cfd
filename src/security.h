/*-------------------------------------------------------------------------
 *
 * security.h
 *		What llmgw lets a role reach: secret references, provider hosts,
 *		and the role that is really calling.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_SECURITY_H
#define LLMGW_SECURITY_H

#include <sys/socket.h>

extern char *llmgw_secret_directory;
extern char *llmgw_secret_env_prefix;
extern char *llmgw_allowed_hosts;
extern bool llmgw_allow_link_local;

extern bool llmgw_secret_ref_allowed(const char *ref);
extern char *llmgw_resolve_secret(const char *ref, const char *stored, bool trusted,
								  char **error);
extern const char *llmgw_url_refused(const char *url);
extern bool llmgw_address_allowed(const struct sockaddr *addr);
extern Oid	llmgw_caller(void);

#endif							/* LLMGW_SECURITY_H */
