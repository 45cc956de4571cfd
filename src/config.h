/*-------------------------------------------------------------------------
 *
 * config.h
 *		The worker's cached view of providers, models and deployments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_CONFIG_H
#define LLMGW_CONFIG_H

/* Where a model alias goes: one deployment and its provider */
typedef struct LlmgwRoute
{
	char		alias[256];		/* hash key */
	char	   *provider;
	char	   *kind;
	char	   *base_url;
	char	   *api_version;
	char	   *secret;			/* NULL when the provider needs none */
	char	   *config_error;	/* why the provider cannot be called */
	char	   *upstream_model;
	int			timeout_ms;
	int			connect_timeout_ms;
} LlmgwRoute;

extern void llmgw_config_refresh(void);
extern const LlmgwRoute *llmgw_config_route(const char *alias);
extern bool llmgw_config_installed(void);

#endif							/* LLMGW_CONFIG_H */
