/*-------------------------------------------------------------------------
 *
 * route.c
 *		Which deployments of a model alias a call tries, in which order:
 *		by priority, then by the model's strategy among equal priorities,
 *		deployments cooling down last; and the step to the next one when an
 *		attempt fails in a way another deployment may not (fallback).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/pg_prng.h"

#include "health.h"
#include "route.h"

/* A copy of a deployment in the call's memory (the configuration may reload) */
void
llmgw_route_copy(LlmgwRoute *dst, const LlmgwRoute *src)
{
	*dst = *src;
	dst->provider = pstrdup(src->provider);
	dst->kind = pstrdup(src->kind);
	dst->base_url = pstrdup(src->base_url);
	dst->api_version = src->api_version ? pstrdup(src->api_version) : NULL;
	dst->secret = src->secret ? pstrdup(src->secret) : NULL;
	dst->config_error = src->config_error ? pstrdup(src->config_error) : NULL;
	dst->upstream_model = pstrdup(src->upstream_model);
}

/* Pick among routes[from..to) the one to try first, weighted by weight */
static int
pick_weighted(LlmgwRoute *routes, int from, int to)
{
	double		total = 0;
	double		pick;

	for (int j = from; j < to; j++)
		total += routes[j].weight;
	pick = pg_prng_double(&pg_global_prng_state) * total;
	for (int j = from; j < to; j++)
	{
		pick -= routes[j].weight;
		if (pick < 0)
			return j;
	}
	return from;
}

/* Pick among routes[from..to) the least busy, or the fastest recently */
static int
pick_by_load(LlmgwRoute *routes, int from, int to, LlmgwStrategy strategy)
{
	int			best = from;
	double		best_score = 0;

	for (int j = from; j < to; j++)
	{
		int			in_flight;
		double		latency;
		double		score;

		llmgw_health_load(routes[j].deployment_id, &in_flight, &latency);
		/* ties are broken at random, so equal deployments share the load */
		score = (strategy == LLMGW_STRATEGY_LEAST_BUSY ? in_flight : latency) + pg_prng_double(&pg_global_prng_state) * 1e-3;
		if (j == from || score < best_score)
		{
			best = j;
			best_score = score;
		}
	}
	return best;
}

/*
 * The order in which the call tries the deployments: by priority; among
 * equal priorities by the model's strategy (weighted random by default,
 * least busy, or lowest recent latency).  Deployments cooling down after
 * repeated failures go last, so they are used only when nothing else is.
 */
void
llmgw_route_order(LlmgwCall *call, const LlmgwModelRoutes *model)
{
	int			n = model->nroutes;
	LlmgwRoute *healthy = palloc(sizeof(LlmgwRoute) * n);
	LlmgwRoute *cooling = palloc(sizeof(LlmgwRoute) * n);
	int			nhealthy = 0;
	int			ncooling = 0;

	for (int i = 0; i < n; i++)
	{
		if (llmgw_health_available(model->routes[i].deployment_id, false) == LLMGW_COOLING_DOWN)
			llmgw_route_copy(&cooling[ncooling++], &model->routes[i]);
		else
			llmgw_route_copy(&healthy[nhealthy++], &model->routes[i]);
	}
	for (int start = 0; start < nhealthy;)
	{
		int			end = start;

		while (end < nhealthy && healthy[end].priority == healthy[start].priority)
			end++;
		for (int i = start; i < end - 1; i++)
		{
			int			k = model->strategy == LLMGW_STRATEGY_WEIGHTED ? pick_weighted(healthy, i, end) :
				pick_by_load(healthy, i, end, model->strategy);
			LlmgwRoute	tmp = healthy[i];

			healthy[i] = healthy[k];
			healthy[k] = tmp;
		}
		start = end;
	}
	memcpy(healthy + nhealthy, cooling, sizeof(LlmgwRoute) * ncooling);
	call->routes = healthy;
	call->nroutes = n;
}

/* Move to the next deployment; false when there is none */
bool
llmgw_route_next(LlmgwCall *call)
{
	if (call->route_index + 1 >= call->nroutes)
		return false;
	call->fallback_from = psprintf("%s/%s", call->routes[call->route_index].provider,
								   call->routes[call->route_index].upstream_model);
	call->route_index++;
	call->tries_on_route = 0;
	return true;
}
