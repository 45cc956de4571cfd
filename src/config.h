/*-------------------------------------------------------------------------
 *
 * config.h
 *		The worker's cached view of providers, models and deployments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_CONFIG_H
#define LLMGW_CONFIG_H

/* One deployment of a model alias, with its provider */
typedef struct LlmgwRoute
{
	char	   *provider;
	char	   *kind;
	char	   *base_url;
	char	   *api_version;
	char	   *secret;			/* NULL when the provider needs none */
	char	   *config_error;	/* why the provider cannot be called */
	char	   *upstream_model;
	int			timeout_ms;
	int			connect_timeout_ms;
	int			priority;		/* higher first; fallbacks go down */
	int			weight;			/* share among deployments of equal priority */
} LlmgwRoute;

/* Every deployment of a model alias, highest priority first */
typedef struct LlmgwModelRoutes
{
	char		alias[256];		/* hash key */
	int			nroutes;
	LlmgwRoute *routes;
} LlmgwModelRoutes;

extern void llmgw_config_refresh(void);
extern const LlmgwModelRoutes *llmgw_config_routes(const char *alias);
extern bool llmgw_config_installed(void);

#endif							/* LLMGW_CONFIG_H */
