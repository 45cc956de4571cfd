/*-------------------------------------------------------------------------
 *
 * batch.c
 *		Provider batches (OpenAI Batch API): worker 0 moves each row of
 *		llmgw.batches through upload, submission, polling and ingestion,
 *		with HTTP through the worker's own multi handle (never blocking).
 *
 * Every step is idempotent, so that a crash anywhere resumes from the
 * table:
 *   queued      upload the items as JSONL; an upload lost in a crash is
 *               only an unused file at the provider
 *   submitting  the file is uploaded; create the batch with the row's
 *               marker in its metadata.  A create whose outcome is unknown
 *               (a crash, a timeout) is followed by a look at the
 *               provider's latest batches for the marker before any new
 *               create: a batch is never submitted twice
 *   validating, in_progress, finalizing, cancelling
 *               poll every llmgw.batch_poll_interval; cancel when asked
 *   ingesting   download the output and error files and write them in
 *               chunks of llmgw.batch_ingest_chunk lines, one transaction
 *               each (llmgw.batch_ingest: an item's state, its usage row
 *               and its answer together, so none is written twice)
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <curl/curl.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "config.h"
#include "http.h"
#include "jsonutil.h"
#include "provider.h"
#include "txn.h"

/*
 * From utils/builtins.h, which cannot be included beside jansson (both
 * declare json_object)
 */
extern text *cstring_to_text(const char *s);
extern text *cstring_to_text_with_len(const char *s, int len);
#define CStringGetTextDatum(s) PointerGetDatum(cstring_to_text(s))

int			llmgw_batch_max_requests = 50000;
int			llmgw_batch_poll_interval = 60000;	/* ms */
int			llmgw_batch_ingest_chunk = 1000;

/* How often worker 0 looks at llmgw.batches */
#define BATCH_SCAN_MS 1000
/* Batches followed at once */
#define MAX_TRACKED 64
/* Largest file downloaded */
#define BATCH_MAX_DOWNLOAD ((size_t) 512 * 1024 * 1024)
/* Timeouts of a step: API calls, and file transfers */
#define BATCH_CALL_TIMEOUT_MS 120000L
#define BATCH_FILE_TIMEOUT_MS 600000L

typedef enum BatchStep
{
	STEP_NONE,
	STEP_UPLOAD,
	STEP_LIST,
	STEP_CREATE,
	STEP_POLL,
	STEP_CANCEL,
	STEP_OUTPUT,
	STEP_ERRORS
} BatchStep;

/* A batch worker 0 follows: its row as last read, and its step in flight */
typedef struct Tracked
{
	bool		used;
	bool		seen;			/* in the latest scan */
	int64		id;
	char		state[16];
	char		model[256];
	char		provider[64];
	char		marker[40];
	char		input_file[128];
	char		batch_id[128];
	char		output_file[128];
	char		error_file[128];
	char		provider_status[32];
	char		endpoint[32];	/* /v1/chat/completions or /v1/embeddings */
	bool		cancel_requested;
	/* this server life knows no create was sent for it */
	bool		create_fresh;
	bool		cancel_sent;
	bool		output_done;
	bool		waiting_file;	/* its file transfer waits for another's end */
	int			failures;
	TimestampTz next_at;
	BatchStep	step;
	LlmgwTransfer t;
} Tracked;

static Tracked tracked[MAX_TRACKED];
static MemoryContext batch_cxt = NULL;	/* reset every round */
static TimestampTz next_scan = 0;
static bool installed = true;

/* Define the llmgw.batch_* settings (from _PG_init) */
void
llmgw_batch_define_settings(void)
{
	DefineCustomIntVariable("llmgw.batch_max_requests",
							"Most requests in one provider batch; llmgw.enrich splits a job into batches of this size.",
							NULL, &llmgw_batch_max_requests, 50000, 1, 50000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.batch_poll_interval",
							"How often the status of a provider batch is asked.",
							NULL, &llmgw_batch_poll_interval, 60000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.batch_ingest_chunk",
							"Results of a provider batch written per transaction.",
							NULL, &llmgw_batch_ingest_chunk, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
}

/* A provider id fit to go into a URL (letters, digits, '-', '_', '.') */
static bool
safe_id(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) >= 128)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* The route of a batch's model that speaks the OpenAI Batch API */
static const LlmgwRoute *
batch_route(const char *model, const char *provider)
{
	const LlmgwModelRoutes *m = llmgw_config_routes(model);

	if (m == NULL)
		return NULL;
	for (int i = 0; i < m->nroutes; i++)
	{
		const LlmgwRoute *r = &m->routes[i];

		if (r->config_error != NULL)
			continue;
		if (strcmp(r->kind, "openai") != 0 && strcmp(r->kind, "openai_compatible") != 0)
			continue;
		if (provider && provider[0] && strcmp(r->provider, provider) != 0)
			continue;
		return r;
	}
	return NULL;
}

/* ---- small transactions ---- */

typedef struct Sql
{
	const char *sql;
	int			nargs;
	Oid			types[10];
	Datum		values[10];
	char		nulls[10];
	char	   *result;			/* first column of the first row, palloc'd in caller's context */
	MemoryContext cxt;
} Sql;

static void
run_sql(void *arg)
{
	Sql		   *q = (Sql *) arg;
	int			rc = SPI_execute_with_args(q->sql, q->nargs, q->types, q->values, q->nulls,
										   false, 0);

	if (rc < 0)
		elog(ERROR, "llmgw: batch statement failed: %s", SPI_result_code_string(rc));
	if (SPI_tuptable && SPI_processed > 0)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v)
			q->result = MemoryContextStrdup(q->cxt, v);
	}
}

/* Run sql with text arguments (NULL: SQL NULL) in a transaction of its own */
static bool
exec_text(const char *activity, const char *sql, int nargs, const char **args, char **result)
{
	Sql			q;
	bool		ok;

	memset(&q, 0, sizeof(q));
	q.sql = sql;
	q.nargs = nargs;
	q.cxt = CurrentMemoryContext;
	for (int i = 0; i < nargs; i++)
	{
		q.types[i] = TEXTOID;
		q.nulls[i] = args[i] ? ' ' : 'n';
		q.values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
	}
	ok = llmgw_in_transaction(activity, run_sql, &q);
	if (result)
		*result = q.result;
	return ok;
}

/* Record a step's error on the batch (retried later) */
static void
note_error(Tracked *b, const char *error)
{
	char		id[32];
	const char *args[2];

	snprintf(id, sizeof(id), INT64_FORMAT, b->id);
	args[0] = id;
	args[1] = error;
	(void) exec_text("llmgw: batch error",
					 "UPDATE llmgw.batches SET last_error = $2 WHERE id = $1::bigint", 2, args, NULL);
	b->failures++;
	/* 2 s, 4 s, ... up to 10 minutes */
	b->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 Min(1000L << Min(b->failures, 10), 600000L));
}

/* End a batch (its results, if any, are written) */
static void
finish(Tracked *b, const char *final, const char *error)
{
	char		id[32];
	const char *args[3];

	snprintf(id, sizeof(id), INT64_FORMAT, b->id);
	args[0] = id;
	args[1] = final;
	args[2] = error;
	if (exec_text("llmgw: ending a provider batch",
				  "SELECT llmgw.batch_finish($1::bigint, $2, $3)", 3, args, NULL))
		b->used = false;
	else
		note_error(b, "the batch could not be ended; see the server log");
}

/* ---- the scan of llmgw.batches ---- */

static void
scan_batches(void *arg)
{
	int			rc;

	rc = SPI_execute("SELECT pg_catalog.to_regclass('llmgw.batches') IS NOT NULL", true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1 ||
		strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") != 0)
	{
		installed = false;
		return;
	}
	installed = true;
	rc = SPI_execute("SELECT id, state, model, coalesce(provider, ''), marker::text,"
					 " coalesce(input_file_id, ''), coalesce(provider_batch_id, ''),"
					 " coalesce(output_file_id, ''), coalesce(error_file_id, ''),"
					 " coalesce(provider_status, ''), cancel_requested,"
					 " CASE endpoint WHEN 'embeddings' THEN '/v1/embeddings' ELSE '/v1/chat/completions' END"
					 " FROM llmgw.batches"
					 " WHERE state NOT IN ('completed', 'failed', 'expired', 'cancelled')"
					 " ORDER BY id LIMIT " CppAsString2(MAX_TRACKED), true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read llmgw.batches");
	for (int i = 0; i < MAX_TRACKED; i++)
		tracked[i].seen = false;
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		id = strtoll(SPI_getvalue(tup, desc, 1), NULL, 10);
		Tracked    *b = NULL;

		for (int i = 0; i < MAX_TRACKED && b == NULL; i++)
			if (tracked[i].used && tracked[i].id == id)
				b = &tracked[i];
		for (int i = 0; i < MAX_TRACKED && b == NULL; i++)
			if (!tracked[i].used)
			{
				b = &tracked[i];
				memset(b, 0, sizeof(*b));
				b->used = true;
				b->id = id;
			}
		if (b == NULL)
			break;
		b->seen = true;
		if (b->step != STEP_NONE)
			continue;			/* its row changes only when its step ends */
		strlcpy(b->state, SPI_getvalue(tup, desc, 2), sizeof(b->state));
		strlcpy(b->model, SPI_getvalue(tup, desc, 3), sizeof(b->model));
		strlcpy(b->provider, SPI_getvalue(tup, desc, 4), sizeof(b->provider));
		strlcpy(b->marker, SPI_getvalue(tup, desc, 5), sizeof(b->marker));
		strlcpy(b->input_file, SPI_getvalue(tup, desc, 6), sizeof(b->input_file));
		strlcpy(b->batch_id, SPI_getvalue(tup, desc, 7), sizeof(b->batch_id));
		strlcpy(b->output_file, SPI_getvalue(tup, desc, 8), sizeof(b->output_file));
		strlcpy(b->error_file, SPI_getvalue(tup, desc, 9), sizeof(b->error_file));
		strlcpy(b->provider_status, SPI_getvalue(tup, desc, 10), sizeof(b->provider_status));
		b->cancel_requested = strcmp(SPI_getvalue(tup, desc, 11), "t") == 0;
		strlcpy(b->endpoint, SPI_getvalue(tup, desc, 12), sizeof(b->endpoint));
	}
	/* batches that ended (or went away) are no longer followed */
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used && !tracked[i].seen && tracked[i].step == STEP_NONE)
			tracked[i].used = false;
}

/* ---- starting steps ---- */

/* The headers of a call to the batch's provider */
static struct curl_slist *
headers_for(const LlmgwRoute *r, bool json)
{
	struct curl_slist *h = json ? llmgw_json_headers() : curl_slist_append(NULL, "Expect:");

	return llmgw_header_secret(h, "Authorization", "Bearer ", r->secret);
}

static void
start(Tracked *b, BatchStep step, const LlmgwRoute *r, const char *path, const char *method,
	  char *body, const char *upload, size_t upload_len, long timeout_ms)
{
	char	   *url = psprintf("%s%s", r->base_url, path);

	b->step = step;
	llmgw_http_transfer_start(&b->t, url, method, headers_for(r, upload == NULL), body,
							  upload, upload_len, BATCH_MAX_DOWNLOAD, timeout_ms);
	pfree(url);
}

/* The JSONL of a batch's items */
typedef struct Jsonl
{
	int64		id;
	const char *upstream;
	char	   *data;			/* malloc'd */
	size_t		len;
} Jsonl;

static void
build_jsonl(void *arg)
{
	Jsonl	   *j = (Jsonl *) arg;
	Oid			types[2] = {INT8OID, TEXTOID};
	Datum		values[2];
	int			rc;

	values[0] = Int64GetDatum(j->id);
	values[1] = CStringGetTextDatum(j->upstream);
	rc = SPI_execute_with_args("SELECT pg_catalog.string_agg(pg_catalog.jsonb_build_object("
							   "'custom_id', i.custom_id, 'method', 'POST', 'url',"
							   " CASE b.endpoint WHEN 'embeddings' THEN '/v1/embeddings' ELSE '/v1/chat/completions' END,"
							   "'body', i.request || pg_catalog.jsonb_build_object('model', $2))::text,"
							   " E'\\n' ORDER BY i.custom_id)"
							   " FROM llmgw.batch_items i JOIN llmgw.batches b ON b.id = i.batch_id"
							   " WHERE i.batch_id = $1",
							   2, types, values, NULL, true, 1);
	if (rc != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "llmgw: could not read the items of batch " INT64_FORMAT, j->id);
	{
		char	   *s = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (s == NULL)
			elog(ERROR, "llmgw: batch " INT64_FORMAT " has no items", j->id);
		j->len = strlen(s) + 1;
		j->data = malloc(j->len + 1);
		if (j->data == NULL)
			elog(ERROR, "out of memory");
		memcpy(j->data, s, j->len - 1);
		j->data[j->len - 1] = '\n';
		j->data[j->len] = '\0';
	}
}

/*
 * One file (a batch's JSONL upload, or its results download) in flight at a
 * time: worker 0 holds one batch's file in memory, however many batches a
 * job has.  A batch whose turn has not come waits; the end of the transfer
 * in flight wakes it.
 */
static bool
file_turn(Tracked *b)
{
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used && (tracked[i].step == STEP_UPLOAD || tracked[i].step == STEP_OUTPUT ||
								tracked[i].step == STEP_ERRORS))
		{
			b->waiting_file = true;
			b->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BATCH_SCAN_MS);
			return false;
		}
	return true;
}

/* The next step of a batch whose turn it is */
static void
step_batch(Tracked *b)
{
	const LlmgwRoute *r;
	char	   *path;

	if (strcmp(b->state, "queued") == 0 && b->cancel_requested)
	{
		finish(b, "cancelled", "cancelled before it was submitted");
		return;
	}
	r = batch_route(b->model, strcmp(b->state, "queued") == 0 ? NULL : b->provider);
	if (r == NULL)
	{
		if (strcmp(b->state, "queued") == 0)
			finish(b, "failed", psprintf("no deployment of model \"%s\" speaks the OpenAI Batch API", b->model));
		else
			note_error(b, psprintf("provider \"%s\" of model \"%s\" cannot be called now", b->provider, b->model));
		return;
	}
	if (strcmp(b->state, "queued") == 0)
	{
		Jsonl		j;

		if (!file_turn(b))
			return;
		memset(&j, 0, sizeof(j));
		j.id = b->id;
		j.upstream = r->upstream_model;
		if (!llmgw_in_transaction("llmgw: building a provider batch", build_jsonl, &j))
		{
			free(j.data);
			note_error(b, "its items could not be read; see the server log");
			return;
		}
		strlcpy(b->provider, r->provider, sizeof(b->provider));
		/* curl_mime_data keeps a copy of the file */
		start(b, STEP_UPLOAD, r, "/files", "POST", NULL, j.data, j.len, BATCH_FILE_TIMEOUT_MS);
		free(j.data);
	}
	else if (strcmp(b->state, "submitting") == 0)
	{
		if (!b->create_fresh)
			start(b, STEP_LIST, r, "/batches?limit=100", "GET", NULL, NULL, 0, BATCH_CALL_TIMEOUT_MS);
		else
		{
			char	   *body = psprintf("{\"input_file_id\":\"%s\",\"endpoint\":\"%s\","
										"\"completion_window\":\"24h\",\"metadata\":{\"llmgw_batch\":\"%s\"}}",
										b->input_file, b->endpoint, b->marker);
			char	   *copy = strdup(body);

			pfree(body);
			/* from now on its outcome is unknown until it is answered */
			b->create_fresh = false;
			start(b, STEP_CREATE, r, "/batches", "POST", copy, NULL, 0, BATCH_CALL_TIMEOUT_MS);
		}
	}
	else if (strcmp(b->state, "ingesting") == 0)
	{
		if (((b->output_file[0] && !b->output_done) || b->error_file[0]) && !file_turn(b))
			return;
		if (b->output_file[0] && !b->output_done)
		{
			path = psprintf("/files/%s/content", b->output_file);
			start(b, STEP_OUTPUT, r, path, "GET", NULL, NULL, 0, BATCH_FILE_TIMEOUT_MS);
		}
		else if (b->error_file[0])
		{
			path = psprintf("/files/%s/content", b->error_file);
			start(b, STEP_ERRORS, r, path, "GET", NULL, NULL, 0, BATCH_FILE_TIMEOUT_MS);
		}
		else
			finish(b, strcmp(b->provider_status, "completed") == 0 ? "completed" :
				   b->provider_status, NULL);
	}
	else if (b->cancel_requested && !b->cancel_sent && strcmp(b->state, "cancelling") != 0)
	{
		path = psprintf("/batches/%s/cancel", b->batch_id);
		b->cancel_sent = true;
		start(b, STEP_CANCEL, r, path, "POST", NULL, NULL, 0, BATCH_CALL_TIMEOUT_MS);
	}
	else
	{
		path = psprintf("/batches/%s", b->batch_id);
		start(b, STEP_POLL, r, path, "GET", NULL, NULL, 0, BATCH_CALL_TIMEOUT_MS);
	}
}

/* ---- steps that ended ---- */

/* Our state for a provider's batch status; NULL when unknown */
static const char *
state_of(const char *status)
{
	if (strcmp(status, "validating") == 0 || strcmp(status, "in_progress") == 0 ||
		strcmp(status, "finalizing") == 0 || strcmp(status, "cancelling") == 0 ||
		strcmp(status, "failed") == 0)
		return status;
	if (strcmp(status, "completed") == 0 || strcmp(status, "expired") == 0 ||
		strcmp(status, "cancelled") == 0)
		return "ingesting";
	return NULL;
}

/*
 * Record what the provider says of a batch (a create, a poll, a cancel, or
 * the batch found by its marker).
 */
static void
record_batch(Tracked *b, json_t *obj, bool submitted)
{
	const char *pid = json_string_value(json_object_get(obj, "id"));
	const char *status = json_string_value(json_object_get(obj, "status"));
	const char *out = json_string_value(json_object_get(obj, "output_file_id"));
	const char *err = json_string_value(json_object_get(obj, "error_file_id"));
	json_t	   *counts = json_object_get(obj, "request_counts");
	const char *state = status ? state_of(status) : NULL;
	char		id[32];
	char		done[32];
	char		failed[32];
	const char *args[9];

	if (!safe_id(pid) || state == NULL || (out && !safe_id(out)) || (err && !safe_id(err)))
	{
		note_error(b, "the provider's batch object could not be read");
		return;
	}
	snprintf(id, sizeof(id), INT64_FORMAT, b->id);
	snprintf(done, sizeof(done), "%lld", (long long) json_integer_value(json_object_get(counts, "completed")));
	snprintf(failed, sizeof(failed), "%lld", (long long) json_integer_value(json_object_get(counts, "failed")));
	args[0] = id;
	args[1] = strcmp(state, "failed") == 0 ? b->state : state;
	args[2] = status;
	args[3] = pid;
	args[4] = out;
	args[5] = err;
	args[6] = done;
	args[7] = failed;
	args[8] = submitted ? "t" : "f";
	{
		Sql			q;

		memset(&q, 0, sizeof(q));
		q.sql = "UPDATE llmgw.batches b SET state = $2, provider_status = $3, provider_batch_id = $4,"
			" output_file_id = $5, error_file_id = $6, provider_completed = $7::integer,"
			" provider_failed = $8::integer, checked_at = pg_catalog.clock_timestamp(), last_error = NULL,"
			" submitted_at = CASE WHEN $9::boolean THEN pg_catalog.clock_timestamp() ELSE b.submitted_at END,"
			" price_id = CASE WHEN $9::boolean THEN (SELECT (llmgw.price_at(llmgw.price_names(p.name, p.kind,"
			"   b.upstream_model, d.price_model), pg_catalog.now())).id"
			"   FROM llmgw.providers p LEFT JOIN llmgw.deployments d ON d.model = b.model"
			"    AND d.provider = p.name AND d.upstream_model = b.upstream_model"
			"   WHERE p.name = b.provider) ELSE b.price_id END"
			" WHERE b.id = $1::bigint";
		q.nargs = 9;
		q.cxt = CurrentMemoryContext;
		for (int i = 0; i < 9; i++)
		{
			q.types[i] = TEXTOID;
			q.nulls[i] = args[i] ? ' ' : 'n';
			q.values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		}
		if (!llmgw_in_transaction("llmgw: recording a provider batch", run_sql, &q))
		{
			note_error(b, "the provider's answer could not be recorded; see the server log");
			return;
		}
	}
	b->failures = 0;
	strlcpy(b->state, args[1], sizeof(b->state));
	strlcpy(b->provider_status, status, sizeof(b->provider_status));
	strlcpy(b->batch_id, pid, sizeof(b->batch_id));
	strlcpy(b->output_file, out ? out : "", sizeof(b->output_file));
	strlcpy(b->error_file, err ? err : "", sizeof(b->error_file));
	if (strcmp(status, "failed") == 0)
	{
		json_t	   *e = json_array_get(json_object_get(json_object_get(obj, "errors"), "data"), 0);
		const char *msg = json_string_value(json_object_get(e, "message"));

		finish(b, "failed", psprintf("the provider failed the batch: %s", msg ? msg : "no reason given"));
		return;
	}
	if (strcmp(state, "ingesting") == 0)
		b->next_at = 0;
	else
		b->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), llmgw_batch_poll_interval);
}

/* A chunk of result lines for llmgw.batch_ingest */
typedef struct Chunk
{
	int64		id;
	Datum	   *lines;
	int			n;
} Chunk;

static void
ingest_chunk(void *arg)
{
	Chunk	   *c = (Chunk *) arg;
	Oid			types[2] = {INT8OID, TEXTARRAYOID};
	Datum		values[2];
	int			rc;

	values[0] = Int64GetDatum(c->id);
	values[1] = PointerGetDatum(construct_array(c->lines, c->n, TEXTOID, -1, false, TYPALIGN_INT));
	rc = SPI_execute_with_args("SELECT llmgw.batch_ingest($1, $2)", 2, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not write the results of batch " INT64_FORMAT, c->id);
}

/*
 * Write a chunk of result lines in a transaction of its own.  A line that
 * is not JSON makes the chunk's cast to jsonb fail: then each line of the
 * chunk is parsed here, those that are not JSON objects are counted in
 * *skipped and left out, and the rest written again.  (Parsing every line
 * here first would parse each line twice: a tenth of the ingest's time.)
 */
static bool
write_chunk(Chunk *c, int *skipped)
{
	int			kept = 0;

	if (llmgw_in_transaction("llmgw: writing the results of a provider batch", ingest_chunk, c))
		return true;
	for (int i = 0; i < c->n; i++)
	{
		text	   *t = (text *) DatumGetPointer(c->lines[i]);
		json_t	   *line = json_loadb(VARDATA(t), VARSIZE(t) - VARHDRSZ, 0, NULL);

		if (json_is_object(line))
			c->lines[kept++] = c->lines[i];
		else
		{
			pfree(t);
			(*skipped)++;
		}
		json_decref(line);
	}
	if (kept == c->n)
		return false;			/* it failed for another reason */
	c->n = kept;
	return kept == 0 ||
		llmgw_in_transaction("llmgw: writing the results of a provider batch", ingest_chunk, c);
}

/*
 * Write a downloaded results file, a chunk of lines per transaction; false
 * when a chunk could not be written (the file is downloaded again later,
 * and the items already written are passed over).
 */
static bool
ingest(Tracked *b, char *data, size_t len)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "llmgw batch ingest",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Chunk		c;
	char	   *p = data;
	char	   *end = data + len;
	bool		ok = true;
	int			skipped = 0;

	c.id = b->id;
	c.lines = palloc(sizeof(Datum) * llmgw_batch_ingest_chunk);
	c.n = 0;
	while (p < end && ok)
	{
		char	   *nl = memchr(p, '\n', end - p);
		size_t		n = nl ? (size_t) (nl - p) : (size_t) (end - p);
		size_t		lead = 0;

		while (lead < n && isspace((unsigned char) p[lead]))
			lead++;
		/* an object, if it is JSON at all (write_chunk sees to the rest) */
		if (lead < n && p[lead] == '{')
			c.lines[c.n++] = PointerGetDatum(cstring_to_text_with_len(p, n));
		else if (lead < n)
			skipped++;
		p = nl ? nl + 1 : end;
		if (c.n == llmgw_batch_ingest_chunk || (p >= end && c.n > 0))
		{
			ok = write_chunk(&c, &skipped);
			MemoryContextSwitchTo(cxt);
			for (int i = 0; i < c.n; i++)
				pfree(DatumGetPointer(c.lines[i]));
			c.n = 0;
		}
	}
	if (skipped > 0)
		elog(WARNING, "llmgw: %d lines of the results of batch " INT64_FORMAT " are not JSON objects",
			 skipped, b->id);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return ok;
}

/* The message of a failed step */
static char *
step_error(Tracked *b, const char *what)
{
	json_t	   *root;
	const char *msg = NULL;
	char	   *s;

	if (b->t.curl_result != CURLE_OK)
		return psprintf("%s failed: %s", what, llmgw_http_strerror(b->t.curl_result));
	root = b->t.response.data ? json_loads(b->t.response.data, 0, NULL) : NULL;
	msg = json_string_value(json_object_get(json_object_get(root, "error"), "message"));
	s = psprintf("%s failed: HTTP %ld%s%s", what, b->t.http_status, msg ? ": " : "", msg ? msg : "");
	json_decref(root);
	return s;
}

/* A step's transfer ended: act on its answer */
static void
step_done(Tracked *b)
{
	BatchStep	step = b->step;
	bool		ok = b->t.curl_result == CURLE_OK && b->t.http_status >= 200 && b->t.http_status < 300;
	bool		refused = b->t.curl_result == CURLE_OK && b->t.http_status >= 400 &&
		b->t.http_status < 500 && b->t.http_status != 429 && b->t.http_status != 408;
	json_t	   *root = NULL;

	b->step = STEP_NONE;
	if (ok && step != STEP_OUTPUT && step != STEP_ERRORS)
		root = b->t.response.data ? json_loads(b->t.response.data, 0, NULL) : NULL;
	switch (step)
	{
		case STEP_UPLOAD:
			if (ok && safe_id(json_string_value(json_object_get(root, "id"))))
			{
				char		id[32];
				const LlmgwRoute *r = batch_route(b->model, b->provider);
				const char *args[4];

				snprintf(id, sizeof(id), INT64_FORMAT, b->id);
				args[0] = id;
				args[1] = json_string_value(json_object_get(root, "id"));
				args[2] = b->provider;
				args[3] = r ? r->upstream_model : NULL;
				if (exec_text("llmgw: recording a batch upload",
							  "UPDATE llmgw.batches SET state = 'submitting', input_file_id = $2,"
							  " provider = $3, upstream_model = $4, last_error = NULL"
							  " WHERE id = $1::bigint AND state = 'queued'", 4, args, NULL))
				{
					strlcpy(b->input_file, args[1], sizeof(b->input_file));
					strlcpy(b->state, "submitting", sizeof(b->state));
					b->create_fresh = true;
					b->failures = 0;
					b->next_at = 0;
				}
				else
					note_error(b, "the upload could not be recorded; see the server log");
			}
			else if (refused)
				finish(b, "failed", step_error(b, "the upload"));
			else
				note_error(b, ok ? "the upload's answer could not be read" : step_error(b, "the upload"));
			break;
		case STEP_LIST:
			if (ok)
			{
				json_t	   *data = json_object_get(root, "data");
				json_t	   *found = NULL;
				size_t		i;
				json_t	   *v;

				json_array_foreach(data, i, v)
				{
					const char *m = json_string_value(json_object_get(json_object_get(v, "metadata"), "llmgw_batch"));

					if (m && strcmp(m, b->marker) == 0)
						found = v;
				}
				if (found)
					record_batch(b, found, true);
				else
				{
					/* not created: create it now */
					b->create_fresh = true;
					b->next_at = 0;
				}
			}
			else
				note_error(b, step_error(b, "looking for the batch"));
			break;
		case STEP_CREATE:
			if (ok && root)
				record_batch(b, root, true);
			else if (refused)
			{
				/* refused: nothing was created */
				b->create_fresh = true;
				finish(b, "failed", step_error(b, "creating the batch"));
			}
			else
				note_error(b, step_error(b, "creating the batch"));
			break;
		case STEP_POLL:
		case STEP_CANCEL:
			if (ok && root)
				record_batch(b, root, false);
			else
				note_error(b, step_error(b, step == STEP_POLL ? "asking the batch's status" :
										 "cancelling the batch"));
			break;
		case STEP_OUTPUT:
		case STEP_ERRORS:
			if (!ok)
				note_error(b, step_error(b, "downloading the results"));
			else if (!ingest(b, b->t.response.data ? b->t.response.data : "", b->t.response.len))
				note_error(b, "results could not be written; see the server log");
			else if (step == STEP_OUTPUT)
			{
				b->output_done = true;
				b->next_at = 0;
			}
			else
				finish(b, strcmp(b->provider_status, "completed") == 0 ? "completed" :
					   b->provider_status, NULL);
			break;
		case STEP_NONE:
			break;
	}
	json_decref(root);
	llmgw_http_transfer_release(&b->t);
	if (step == STEP_UPLOAD || step == STEP_OUTPUT || step == STEP_ERRORS)
		for (int i = 0; i < MAX_TRACKED; i++)
			if (tracked[i].used && tracked[i].waiting_file)
			{
				tracked[i].waiting_file = false;
				tracked[i].next_at = 0;
			}
}

/*
 * Worker 0, every round: act on the batch transfers that ended, look at
 * llmgw.batches once a second, and start the steps that are due.
 */
void
llmgw_batch_run(void)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext old;

	if (batch_cxt == NULL)
		batch_cxt = AllocSetContextCreate(TopMemoryContext, "llmgw batches",
										  ALLOCSET_DEFAULT_SIZES);
	MemoryContextReset(batch_cxt);
	old = MemoryContextSwitchTo(batch_cxt);
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used && tracked[i].step != STEP_NONE && tracked[i].t.done)
		{
			step_done(&tracked[i]);
			next_scan = 0;
		}
	if (now >= next_scan)
	{
		next_scan = TimestampTzPlusMilliseconds(now, BATCH_SCAN_MS);
		if (!llmgw_in_transaction("llmgw: looking at provider batches", scan_batches, NULL))
		{
			MemoryContextSwitchTo(old);
			return;
		}
	}
	if (!installed)
	{
		MemoryContextSwitchTo(old);
		return;
	}
	for (int i = 0; i < MAX_TRACKED; i++)
	{
		Tracked    *b = &tracked[i];

		if (!b->used || b->step != STEP_NONE || b->next_at > now)
			continue;
		PG_TRY();
		{
			step_batch(b);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(batch_cxt);
			EmitErrorReport();
			FlushErrorState();
			b->next_at = TimestampTzPlusMilliseconds(now, llmgw_batch_poll_interval);
		}
		PG_END_TRY();
	}
	MemoryContextSwitchTo(old);
}

/* Milliseconds until worker 0 has batch work to do */
long
llmgw_batch_timeout(void)
{
	long		ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_scan);

	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used && tracked[i].step == STEP_NONE)
			ms = Min(ms, TimestampDifferenceMilliseconds(GetCurrentTimestamp(), tracked[i].next_at));
	return Max(ms, 0);
}
