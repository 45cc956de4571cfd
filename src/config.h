/*-------------------------------------------------------------------------
 *
 * config.h
 *		The worker's cached view of providers, models and deployments.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_CONFIG_H
#define LLMGW_CONFIG_H

/* How calls spread over deployments of equal priority (models.strategy) */
typedef enum LlmgwStrategy
{
	LLMGW_STRATEGY_WEIGHTED,	/* at random, by weight */
	LLMGW_STRATEGY_LEAST_BUSY,	/* fewest calls in flight */
	LLMGW_STRATEGY_LOWEST_LATENCY	/* fastest recently */
} LlmgwStrategy;

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
	int			idle_timeout_ms;	/* longest silence once connected; 0: none */
	int			priority;		/* higher first; fallbacks go down */
	int			weight;			/* share among deployments of equal priority */
	int64		deployment_id;
	char	   *price_model;	/* llmgw.deployments.price_model, or NULL */
	int32		rpm_limit;		/* of the deployment; 0: none */
	int64		tpm_limit;
	/* the price in force when the configuration was loaded, for admission */
	bool		priced;
	int64		input_rate;		/* highest input rate, money units per token */
	int64		output_rate;	/* highest output rate, money units per token */
	int64		per_request;	/* money units */
	int32		max_output_tokens;	/* of the model, 0 when unknown */
	int64		price_id;		/* that price row, 0 when none */
	Datum		price;			/* and the row itself (llmgw.prices), when there is one */
	char		currency[4];	/* of that price */
	TimestampTz price_until;	/* when another price row takes over */
} LlmgwRoute;

/* Every deployment of a model alias, highest priority first */
typedef struct LlmgwModelRoutes
{
	char		alias[256];		/* hash key */
	int			nroutes;
	LlmgwRoute *routes;
	int32		rpm_limit;		/* of the alias; 0: none */
	int64		tpm_limit;
	LlmgwStrategy strategy;
	int32		cache_ttl_s;	/* models.cache_ttl; 0: not cached by default */
	bool		cache_shared;
	char	   *cache_hit_cost; /* numeric, as text */
} LlmgwModelRoutes;

extern bool llmgw_config_refresh(void);
extern void llmgw_config_invalidate(void);
extern void llmgw_config_force_reload(void);
extern const LlmgwModelRoutes *llmgw_config_routes(const char *alias);
extern bool llmgw_config_installed(void);
extern char **llmgw_config_aliases(int *n);
extern const char *llmgw_config_unavailable(bool *installed);

#endif							/* LLMGW_CONFIG_H */
