/*-------------------------------------------------------------------------
 *
 * llmgw.c
 *		Module load: settings, shared memory request, worker registration.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/bgworker_internals.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "async.h"
#include "batch.h"
#include "budget.h"
#include "cache.h"
#include "frontdoor.h"
#include "health.h"
#include "journal.h"
#include "llmgw.h"
#include "metrics.h"
#include "otel.h"
#include "queue.h"
#include "policy.h"
#include "ratelimit.h"
#include "redact.h"
#include "reqlog.h"
#include "security.h"
#include "share.h"

PG_MODULE_MAGIC;

int			llmgw_workers = 2;
int			llmgw_max_connections = 256;
int			llmgw_queue_size = 1024;
char	   *llmgw_database = NULL;
static int	llmgw_max_response_size = 16 * 1024 * 1024;
static int	llmgw_request_timeout = 0;
static int	llmgw_max_retries = 2;
static int	llmgw_retry_max_wait = 10000;
static int	llmgw_retry_base_delay = 200;
char	   *llmgw_tags = NULL;
static int	llmgw_cache_mode = LLMGW_CACHE_DEFAULT;
static int	llmgw_cache_ttl = 3600;
static int	llmgw_call_deadline = 0;
int			llmgw_rollup_shard = 0;
char	   *llmgw_job = NULL;
bool		llmgw_require_key = false;

static const struct config_enum_entry cache_modes[] = {
	{"default", LLMGW_CACHE_DEFAULT, false},
	{"on", LLMGW_CACHE_ON, false},
	{"off", LLMGW_CACHE_OFF, false},
	{NULL, 0, false}
};

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

void		_PG_init(void);

/* Reserve our part of shared memory */
static void
llmgw_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(llmgw_shmem_size());
	RequestAddinShmemSpace(llmgw_budget_shmem_size());
	RequestAddinShmemSpace(llmgw_ratelimit_shmem_size());
	RequestAddinShmemSpace(llmgw_health_shmem_size());
	RequestAddinShmemSpace(llmgw_share_shmem_size());
	RequestAddinShmemSpace(llmgw_metrics_shmem_size());
	RequestAddinShmemSpace(llmgw_otel_shmem_size());
	RequestNamedLWLockTranche("llmgw", LLMGW_NLOCKS);
}

/* Create or attach to our part of shared memory */
static void
llmgw_shmem_startup(void)
{
	bool		found;
	void	   *base;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	base = ShmemInitStruct("llmgw", llmgw_shmem_size(), &found);
	llmgw_shmem_init(base, found);
	/* a new life: the calls the last one had in flight are to be recorded */
	if (!found)
		llmgw_journal_rotate(llmgw_shared->life);
	llmgw_budget_shmem_init();
	llmgw_ratelimit_shmem_init();
	llmgw_health_shmem_init();
	llmgw_share_shmem_init();
	llmgw_metrics_shmem_init();
	llmgw_otel_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * llmgw.tags must be empty or a JSON object that jsonb accepts (no \u0000,
 * valid in the server encoding), of at most LLMGW_MAX_TAGS bytes: it goes
 * into usage rows, and a value one of them refused would cost the rows of
 * other sessions' calls written with it.
 */
static bool
llmgw_tags_check(char **newval, void **extra, GucSource source)
{
	char	   *p = *newval;
	size_t		len = p ? strlen(p) : 0;
	JsonLexContext *lex;

	if (len == 0)
		return true;
	if (len > LLMGW_MAX_TAGS)
	{
		GUC_check_errdetail("llmgw.tags is %zu bytes long; at most %d are allowed.",
							len, LLMGW_MAX_TAGS);
		return false;
	}
	while (isspace((unsigned char) *p))
		p++;
	if (*p != '{' || !pg_verifymbstr(*newval, (int) len, true))
	{
		GUC_check_errdetail("llmgw.tags must be a JSON object, such as {\"team\": \"nightly\"}.");
		return false;
	}
	/* with de-escaping on, the lexer refuses what jsonb refuses (\u0000) */
	lex = makeJsonLexContextCstringLen(*newval, (int) len, GetDatabaseEncoding(), true);
	if (pg_parse_json(lex, &nullSemAction) != JSON_SUCCESS)
	{
		GUC_check_errdetail("llmgw.tags must be a JSON object that jsonb accepts (no \\u0000, no invalid escapes), such as {\"team\": \"nightly\"}.");
		return false;
	}
	return true;
}

/* One of the llmgw tranche's locks */
LWLock *
llmgw_lock(LlmgwLock which)
{
	return &(GetNamedLWLockTranche("llmgw"))[which].lock;
}

/*
 * A fixed-size shared hash table of max entries keyed by keysize bytes
 * (the shmem startup hook, AddinShmemInitLock held)
 */
HTAB *
llmgw_shmem_hash(const char *name, long max, Size keysize, Size entrysize)
{
	HASHCTL		info;

	memset(&info, 0, sizeof(info));
	info.keysize = keysize;
	info.entrysize = entrysize;
	return ShmemInitHash(name, max, max, &info, HASH_ELEM | HASH_BLOBS);
}

/* llmgw.job must be empty or a job id (whose owner is checked at each call) */
static bool
llmgw_job_check(char **newval, void **extra, GucSource source)
{
	const char *p = *newval;

	if (p == NULL || *p == '\0')
		return true;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p != '\0' || p - *newval > 18)
	{
		GUC_check_errdetail("llmgw.job must be the id of a running llmgw.jobs row.");
		return false;
	}
	return true;
}

/* Define the llmgw.* settings */
static void
llmgw_define_gucs(void)
{
	DefineCustomIntVariable("llmgw.workers",
							"Number of background workers that call providers.",
							NULL, &llmgw_workers, 2, 1, LLMGW_MAX_WORKERS,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.max_connections",
							"Maximum number of HTTP transfers in flight per worker.",
							NULL, &llmgw_max_connections, 256, 1, 10000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.queue_size",
							"Maximum number of calls waiting or in flight across all sessions.",
							NULL, &llmgw_queue_size, 1024, 16, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.database",
							   "Database the llmgw workers connect to; the extension must be created there.",
							   NULL, &llmgw_database, "postgres",
							   PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.max_response_size",
							"Largest provider response accepted, in bytes.",
							NULL, &llmgw_max_response_size, 16 * 1024 * 1024,
							1024, INT_MAX,
							PGC_USERSET, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.request_timeout",
							"Total time allowed for one provider call; 0 uses the provider's setting.",
							NULL, &llmgw_request_timeout, 0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.max_retries",
							"Retries of a failed call on the same deployment before falling back.",
							"Only transient failures are retried: rate limits, server errors, overload, timeouts, connection failures.",
							&llmgw_max_retries, 2, 0, 10,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.retry_max_wait",
							"Longest wait before a retry; a provider asking for more is not retried.",
							NULL, &llmgw_retry_max_wait, 10000, 0, 600000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.retry_base_delay",
							"First backoff delay of a retry without a provider hint; it doubles each retry.",
							NULL, &llmgw_retry_base_delay, 200, 0, 60000,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.api_key",
							   "The virtual key this session calls models with.",
							   "Empty: the caller's role binding decides. SHOW displays only a prefix.",
							   &llmgw_api_key, "",
							   PGC_USERSET, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   llmgw_api_key_check, llmgw_api_key_assign, llmgw_api_key_show);
	DefineCustomStringVariable("llmgw.tags",
							   "Tags (a JSON object) recorded in llmgw.usage.tags for this session's calls.",
							   NULL, &llmgw_tags, "",
							   PGC_USERSET, 0, llmgw_tags_check, NULL, NULL);
	DefineCustomStringVariable("llmgw.job",
							   "The llmgw.jobs row this session's calls work for (set by llmgw.enrich).",
							   "Only the job's owner may set it, while the job runs; its calls carry usage.job_id.",
							   &llmgw_job, "",
							   PGC_USERSET, GUC_NOT_IN_SAMPLE, llmgw_job_check, NULL, NULL);
	DefineCustomBoolVariable("llmgw.require_key",
							 "Refuse calls that present no virtual key in llmgw.api_key.",
							 "Set it cluster-wide, per database or per role (ALTER ROLE ... SET); only a superuser can change it.",
							 &llmgw_require_key, false,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.secret_directory",
							   "Directory whose files any llmgw_admin may use as provider secrets (file:/path).",
							   "Empty: only a superuser may point a provider at a file.",
							   &llmgw_secret_directory, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.secret_env_prefix",
							   "Prefix of the environment variables any llmgw_admin may use as provider secrets (env:NAME).",
							   "Empty: only a superuser may point a provider at an environment variable.",
							   &llmgw_secret_env_prefix, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.allowed_hosts",
							   "Hosts providers may be called on: names, or .domain for a whole domain, comma-separated.",
							   "Empty: any host but link-local and cloud metadata addresses.",
							   &llmgw_allowed_hosts, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("llmgw.allow_link_local",
							 "Let providers be called on link-local and cloud metadata addresses.",
							 NULL, &llmgw_allow_link_local, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.max_share",
							"Percent of the request slots, and of the calls the workers run at once, that one role, key or team may hold.",
							NULL, &llmgw_max_share, 50, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("llmgw.share_wait",
							 "Wait when this session's role or key holds its whole share of the gateway; off: fail with LG012.",
							 NULL, &llmgw_share_wait, true,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.max_budgets",
							"Maximum number of budgets the shared ledger holds.",
							NULL, &llmgw_max_budgets, 1024, 16, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.max_rate_limits",
							"Maximum number of rate-limited keys, teams, models and deployments.",
							NULL, &llmgw_max_rate_limits, 4096, 16, 10000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("llmgw.cache",
							 "Response cache for this session's calls: default (as the model says), on, off.",
							 NULL, &llmgw_cache_mode, LLMGW_CACHE_DEFAULT, cache_modes,
							 PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.cache_ttl",
							"How long answers are cached when llmgw.cache = on and the model sets no cache_ttl.",
							NULL, &llmgw_cache_ttl, 3600, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.cache_max_size",
							"Size cap of the response cache; the oldest answers go first.",
							NULL, &llmgw_cache_max_size, 100 * 1024, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.call_deadline",
							"Overall time for a call, all attempts, waits and fallbacks included; 0: none.",
							NULL, &llmgw_call_deadline, 0, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.rollup_shard",
							"Internal: the rollup rows a worker writes (one set per worker avoids lock waits).",
							NULL, &llmgw_rollup_shard, 0, 0, LLMGW_MAX_WORKERS,
							PGC_INTERNAL, GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_DISALLOW_IN_FILE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.async_lease",
							"How long an asynchronous call taken but held by no worker waits before it is taken again.",
							"A call a worker holds is never taken again, however long it runs.",
							&llmgw_async_lease, 600, 1, 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.max_deployments",
							"Maximum number of deployments whose health shared memory tracks.",
							NULL, &llmgw_max_deployments, 1024, 16, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.cooldown_failures",
							"Consecutive failures after which a deployment cools down.",
							NULL, &llmgw_cooldown_failures, 3, 1, 1000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.cooldown_time",
							"How long a failing deployment is left out of routing before a probe; 0 disables cooldowns.",
							NULL, &llmgw_cooldown_time, 30000, 0, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.http_listen",
							   "Address (host:port) the workers serve the HTTP front door on; empty: off.",
							   "Every worker listens on it (SO_REUSEPORT). See docs/http.md.",
							   &llmgw_http_listen, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.http_tls_cert",
							   "PEM certificate file of the front door; set with llmgw.http_tls_key, it serves HTTPS.",
							   NULL, &llmgw_http_tls_cert, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("llmgw.http_tls_key",
							   "PEM private key file of the front door's certificate.",
							   NULL, &llmgw_http_tls_key, "",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.http_max_connections",
							"Most client connections the front door holds open, across all workers.",
							NULL, &llmgw_http_max_connections, 1024, 1, 1000000,
							PGC_POSTMASTER, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.http_max_body",
							"Largest request body the front door accepts.",
							NULL, &llmgw_http_max_body, 8 * 1024 * 1024, 1024, INT_MAX / 2,
							PGC_POSTMASTER, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.http_idle_timeout",
							"Time a client connection may stay silent (idle, or sending too slowly) before it is closed.",
							NULL, &llmgw_http_idle_timeout, 60, 1, 3600,
							PGC_POSTMASTER, GUC_UNIT_S, NULL, NULL, NULL);
	llmgw_reqlog_define_gucs();
	llmgw_otel_define_gucs();

	llmgw_batch_define_settings();
	MarkGUCPrefixReserved("llmgw");
}

/* The settings of a call made now, in this session */
void
llmgw_call_settings_current(LlmgwCallSettings *settings)
{
	settings->timeout_ms = llmgw_request_timeout;
	settings->max_retries = llmgw_max_retries;
	settings->retry_max_wait_ms = llmgw_retry_max_wait;
	settings->retry_base_delay_ms = llmgw_retry_base_delay;
	settings->deadline_ms = llmgw_call_deadline;
	settings->cache_mode = llmgw_cache_mode;
	settings->cache_ttl_s = llmgw_cache_ttl;
	settings->max_response_bytes = llmgw_max_response_size;
}

/* The name of an llmgw.cache mode, as the setting and async_calls.cache spell it */
const char *
llmgw_cache_mode_name(int mode)
{
	for (const struct config_enum_entry *e = cache_modes; e->name; e++)
		if (e->val == mode)
			return e->name;
	return "default";
}

/* The mode of a name; unknown names (which the CHECK of async_calls refuses) are "default" */
int
llmgw_cache_mode_from_name(const char *name)
{
	for (const struct config_enum_entry *e = cache_modes; e->name; e++)
		if (strcmp(e->name, name) == 0)
			return e->val;
	return LLMGW_CACHE_DEFAULT;
}

/* How many background workers are registered so far */
static int
registered_workers(void)
{
	slist_iter	iter;
	int			n = 0;

	slist_foreach(iter, &BackgroundWorkerList)
		n++;
	return n;
}

/*
 * Register the worker pool with the postmaster.  The postmaster refuses
 * registrations beyond max_worker_processes with only a LOG line: say it
 * louder, since fewer workers than configured serve the calls.
 */
static void
llmgw_register_workers(void)
{
	int			before = registered_workers();
	int			registered;

	for (int i = 0; i < llmgw_workers; i++)
	{
		BackgroundWorker worker;

		memset(&worker, 0, sizeof(worker));
		worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
			BGWORKER_BACKEND_DATABASE_CONNECTION;
		worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
		worker.bgw_restart_time = 1;
		snprintf(worker.bgw_library_name, BGW_MAXLEN, "llmgw");
		snprintf(worker.bgw_function_name, BGW_MAXLEN, "llmgw_worker_main");
		snprintf(worker.bgw_name, BGW_MAXLEN, "llmgw worker %d", i);
		snprintf(worker.bgw_type, BGW_MAXLEN, "llmgw worker");
		worker.bgw_main_arg = Int32GetDatum(i);
		RegisterBackgroundWorker(&worker);
	}
	registered = registered_workers() - before;
	if (registered < llmgw_workers)
		ereport(WARNING,
				(errmsg("only %d of the %d llmgw workers could be registered",
						registered, llmgw_workers),
				 errdetail("max_worker_processes (%d) leaves no room for more background workers.",
						   max_worker_processes),
				 errhint("Raise max_worker_processes to at least the number of llmgw.workers plus the other background workers (pg_cron's launcher, parallel queries, logical replication).")));
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("llmgw must be loaded via shared_preload_libraries"),
				 errhint("Add llmgw to shared_preload_libraries in postgresql.conf and restart the server.")));

	llmgw_define_gucs();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = llmgw_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = llmgw_shmem_startup;

	llmgw_register_workers();
	llmgw_redact_install_log_hook();
}
