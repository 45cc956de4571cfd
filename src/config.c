/*-------------------------------------------------------------------------
 *
 * config.c
 *		Configuration cache of a worker, and the trigger that invalidates it.
 *
 * Admin functions change llmgw.providers, llmgw.models and friends; a
 * statement trigger on those tables bumps a generation counter in shared
 * memory when the changing transaction commits.  A worker reloads its
 * whole cache, in a transaction of its own, when it sees a new generation.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "pgstat.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "config.h"
#include "llmgw.h"
#include "reqlog.h"
#include "security.h"
#include "txn.h"

static MemoryContext config_cxt = NULL;
static HTAB *routes = NULL;
static uint64 loaded_generation = 0;
static bool extension_installed = false;
static char *unavailable = NULL;	/* why calls cannot be served */
static bool version_mismatch = false;	/* installed, at another version */

static bool generation_bump_pending = false;
static bool xact_callback_registered = false;

/* Text value of column col of the current SPI row, or NULL */
static char *
spi_text(HeapTuple tup, int col)
{
	return SPI_getvalue(tup, SPI_tuptable->tupdesc, col);
}

/* Integer value of column col of the current SPI row; 0 when NULL */
static int64
spi_int64(HeapTuple tup, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, SPI_tuptable->tupdesc, col, &isnull);

	return isnull ? 0 : DatumGetInt64(d);
}

/* Load every route; runs inside a transaction with SPI connected */
static void
load_routes(void)
{
	HASHCTL		ctl;
	int			rc;

	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(((LlmgwModelRoutes *) 0)->alias);
	ctl.entrysize = sizeof(LlmgwModelRoutes);
	ctl.hcxt = config_cxt;
	routes = hash_create("llmgw routes", 64, &ctl,
						 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);

	rc = SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'llmgw'",
					 true, 1);
	extension_installed = false;
	version_mismatch = false;
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
	{
		unavailable = MemoryContextStrdup(config_cxt,
										  psprintf("extension llmgw is not installed in database \"%s\"",
												   llmgw_database));
		return;
	}
	if (strcmp(spi_text(SPI_tuptable->vals[0], 1), LLMGW_SCHEMA_VERSION) != 0)
	{
		/* the library is newer than the schema: nothing is served until the update */
		unavailable = MemoryContextStrdup(config_cxt,
										  psprintf("extension llmgw is at version %s, but this server's llmgw library needs %s; run ALTER EXTENSION llmgw UPDATE",
												   spi_text(SPI_tuptable->vals[0], 1), LLMGW_SCHEMA_VERSION));
		version_mismatch = true;
		return;
	}
	extension_installed = true;

	rc = SPI_execute("SELECT m.alias, p.name, p.kind, p.base_url, p.api_version,"
					 " p.secret_ref, s.secret, d.upstream_model,"
					 " p.timeout_ms, p.connect_timeout_ms, d.priority, d.weight,"
					 " d.id, d.price_model, coalesce(d.rpm_limit, 0), coalesce(d.tpm_limit, 0),"
					 " coalesce(m.rpm_limit, 0), coalesce(m.tpm_limit, 0), pr.id IS NOT NULL,"
					 " ceil(greatest(pr.input, pr.tier_input, pr.cached_input, pr.tier_cached_input,"
					 "   pr.cache_write_5m, pr.cache_write_1h, pr.tier_cache_write_5m,"
					 "   pr.tier_cache_write_1h) * " LLMGW_MONEY_UNITS_PER_TOKEN_SQL ")::int8,"
					 " ceil(greatest(pr.output, pr.tier_output, pr.reasoning) * "
					 LLMGW_MONEY_UNITS_PER_TOKEN_SQL ")::int8,"
					 " ceil(coalesce(pr.per_request, 0) * " LLMGW_MONEY_SCALE_SQL ")::int8,"
					 " coalesce(pr.max_output_tokens, 0), m.strategy,"
					 " least(coalesce(extract(epoch FROM m.cache_ttl), 0), 2000000000)::int8,"
					 " m.cache_shared, m.cache_hit_cost, coalesce(pr.id, 0),"
					 " coalesce((SELECT min(n.valid_from) FROM llmgw.prices n"
					 "   WHERE n.model = ANY (llmgw.price_names(p.name, p.kind, d.upstream_model,"
					 "     d.price_model)) AND n.valid_from > now()), pr.valid_to, 'infinity'),"
					 " coalesce(p.idle_timeout_ms, 0), coalesce(pr.currency, ''),"
					 " p.secret_ref_trusted, pr"
					 " FROM llmgw.models m"
					 " JOIN llmgw.deployments d ON d.model = m.alias"
					 " JOIN llmgw.providers p ON p.name = d.provider"
					 " LEFT JOIN llmgw.provider_secrets s ON s.provider = p.name"
					 " LEFT JOIN LATERAL llmgw.price_at(llmgw.price_names(p.name, p.kind,"
					 "   d.upstream_model, d.price_model), now()) pr ON true"
					 " ORDER BY d.priority DESC, d.id",
					 true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read configuration: %s", SPI_result_code_string(rc));

	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *alias = spi_text(tup, 1);
		LlmgwModelRoutes *model;
		LlmgwRoute *route;
		bool		found;
		MemoryContext old;
		char	   *error = NULL;

		if (strlen(alias) >= sizeof(model->alias))
			continue;
		model = hash_search(routes, alias, HASH_ENTER, &found);
		old = MemoryContextSwitchTo(config_cxt);
		if (!found)
		{
			model->nroutes = 0;
			model->routes = palloc(sizeof(LlmgwRoute) * 4);
			model->rpm_limit = pg_strtoint32(spi_text(tup, 17));
			model->tpm_limit = spi_int64(tup, 18);
			model->strategy = strcmp(spi_text(tup, 24), "least_busy") == 0 ? LLMGW_STRATEGY_LEAST_BUSY :
				strcmp(spi_text(tup, 24), "lowest_latency") == 0 ? LLMGW_STRATEGY_LOWEST_LATENCY :
				LLMGW_STRATEGY_WEIGHTED;
			model->cache_ttl_s = (int32) spi_int64(tup, 25);
			model->cache_shared = strcmp(spi_text(tup, 26), "t") == 0;
			model->cache_hit_cost = spi_text(tup, 27);
		}
		else if ((model->nroutes & (model->nroutes - 1)) == 0 && model->nroutes >= 4)
			model->routes = repalloc(model->routes, sizeof(LlmgwRoute) * model->nroutes * 2);
		/* rows come highest priority first */
		route = &model->routes[model->nroutes++];
		route->provider = spi_text(tup, 2);
		route->kind = spi_text(tup, 3);
		route->base_url = spi_text(tup, 4);
		route->api_version = spi_text(tup, 5);
		route->secret = llmgw_resolve_secret(spi_text(tup, 6), spi_text(tup, 7),
											 strcmp(spi_text(tup, 32), "t") == 0, &error);
		if (error == NULL && llmgw_url_refused(route->base_url))
			error = pstrdup(llmgw_url_refused(route->base_url));
		route->config_error = error;
		route->upstream_model = spi_text(tup, 8);
		route->timeout_ms = pg_strtoint32(spi_text(tup, 9));
		route->connect_timeout_ms = pg_strtoint32(spi_text(tup, 10));
		route->priority = pg_strtoint32(spi_text(tup, 11));
		route->weight = pg_strtoint32(spi_text(tup, 12));
		route->deployment_id = spi_int64(tup, 13);
		route->price_model = spi_text(tup, 14);
		route->rpm_limit = pg_strtoint32(spi_text(tup, 15));
		route->tpm_limit = spi_int64(tup, 16);
		route->priced = strcmp(spi_text(tup, 19), "t") == 0;
		route->input_rate = route->priced ? spi_int64(tup, 20) : 0;
		route->output_rate = route->priced ? spi_int64(tup, 21) : 0;
		route->per_request = route->priced ? spi_int64(tup, 22) : 0;
		route->max_output_tokens = pg_strtoint32(spi_text(tup, 23));
		route->price_id = spi_int64(tup, 28);
		route->price = (Datum) 0;
		if (route->price_id != 0)
		{
			bool		isnull;
			Datum		price = SPI_getbinval(tup, SPI_tuptable->tupdesc, 33, &isnull);

			if (!isnull)
				route->price = datumCopy(price, false, -1);
		}
		route->idle_timeout_ms = pg_strtoint32(spi_text(tup, 30));
		strlcpy(route->currency, spi_text(tup, 31), sizeof(route->currency));
		{
			bool		isnull;

			route->price_until = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc,
																   29, &isnull));
		}
		MemoryContextSwitchTo(old);
	}
}

/* Load every route and the policy (in a transaction, SPI connected) */
static void
load_config(void *arg)
{
	load_routes();
	llmgw_reqlog_load(extension_installed);
}

/*
 * Reload the cache if an admin changed the configuration since last time.
 * Returns false when it could not be loaded (the error is in the server
 * log; the cache is empty, and calls fail until a reload works).
 */
bool
llmgw_config_refresh(void)
{
	uint64		generation = pg_atomic_read_u64(&llmgw_shared->config_generation);

	/* CREATE EXTENSION fires no trigger: keep looking until it is there */
	if (generation == loaded_generation && extension_installed)
		return true;

	if (config_cxt == NULL)
		config_cxt = AllocSetContextCreate(TopMemoryContext, "llmgw config",
										   ALLOCSET_DEFAULT_SIZES);
	unavailable = NULL;
	MemoryContextReset(config_cxt);
	routes = NULL;
	if (!llmgw_in_transaction("llmgw: loading configuration", load_config, NULL))
		return false;
	loaded_generation = generation;
	return true;
}

/* The deployments of a model alias, or NULL */
const LlmgwModelRoutes *
llmgw_config_routes(const char *alias)
{
	if (routes == NULL || strlen(alias) >= sizeof(((LlmgwModelRoutes *) 0)->alias))
		return NULL;
	return hash_search(routes, alias, HASH_FIND, NULL);
}

/* Compare two alias names, for sorting */
static int
alias_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Every model alias with a deployment, sorted (palloc'd array) */
char	  **
llmgw_config_aliases(int *n)
{
	HASH_SEQ_STATUS seq;
	LlmgwModelRoutes *m;
	char	  **names;

	*n = 0;
	if (routes == NULL)
		return NULL;
	names = palloc(sizeof(char *) * (hash_get_num_entries(routes) + 1));
	hash_seq_init(&seq, routes);
	while ((m = hash_seq_search(&seq)) != NULL)
		if (m->nroutes > 0)
			names[(*n)++] = pstrdup(m->alias);
	qsort(names, *n, sizeof(char *), alias_cmp);
	return names;
}

/* Was the extension installed (at our schema version) at the last refresh? */
bool
llmgw_config_installed(void)
{
	return extension_installed;
}

/*
 * Why the workers cannot serve calls, or NULL.  *installed says whether
 * the extension is there (at another version) or not at all.
 */
const char *
llmgw_config_unavailable(bool *installed)
{
	*installed = version_mismatch;
	return extension_installed ? NULL : unavailable;
}

/* Reload this worker's configuration at its next refresh */
void
llmgw_config_force_reload(void)
{
	loaded_generation = 0;
}

/* Have every worker reload its configuration (and the budget ledger) */
void
llmgw_config_invalidate(void)
{
	pg_atomic_fetch_add_u64(&llmgw_shared->config_generation, 1);
}

/* Bump the configuration generation once the changing transaction commits */
static void
config_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (generation_bump_pending)
				llmgw_config_invalidate();
			generation_bump_pending = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			generation_bump_pending = false;
			break;
		default:
			break;
	}
}

PG_FUNCTION_INFO_V1(llmgw_config_changed);

/* Statement trigger on the configuration tables */
Datum
llmgw_config_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("llmgw.config_changed() must be called as a trigger")));

	if (!xact_callback_registered)
	{
		RegisterXactCallback(config_xact_callback, NULL);
		xact_callback_registered = true;
	}
	generation_bump_pending = true;
	return PointerGetDatum(NULL);
}
