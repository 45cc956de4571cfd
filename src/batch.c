/*-------------------------------------------------------------------------
 *
 * batch.c
 *		Provider batches: worker 0 moves each row of llmgw.batches through
 *		upload, submission, polling and ingestion, with HTTP through the
 *		worker's own multi handle (never blocking).  Each provider's batch
 *		API (OpenAI, Azure OpenAI, Anthropic Message Batches, Gemini batch
 *		mode) is a table of functions (batch_wire.h); this file is the state
 *		machine they share.
 *
 * Every step is idempotent, so that a crash anywhere resumes from the
 * table:
 *   queued      build the items with the provider's wire format (a batch
 *               too big for the provider is split first: its last items
 *               move to a new row); upload them as JSONL (OpenAI, Azure;
 *               Gemini beyond its inline limit, on a session of several
 *               requests that a send cut short goes on with, this server
 *               life) or, for the APIs that take them inline (Anthropic,
 *               Gemini), mark the row submitting and send the create
 *   submitting  create the batch, carrying the row's marker (metadata,
 *               display name or custom_ids).  A create whose outcome is
 *               unknown (a crash, a timeout) is followed by a look at the
 *               provider's latest batches for the marker before any new
 *               create: a batch is never submitted twice
 *   validating, in_progress, finalizing, cancelling
 *               poll every llmgw.batch_poll_interval; cancel when asked
 *   ingesting   download the results and write them in chunks of
 *               llmgw.batch_ingest_chunk lines, one transaction each
 *               (llmgw.batch_ingest: an item's state, its usage row and
 *               its answer together, so none is written twice); results
 *               not in OpenAI's format are read by the provider's own
 *               response parser into OpenAI output lines first
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <curl/curl.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "batch_helper.h"
#include "batch_ingest.h"
#include "batch_wire.h"
#include "config.h"
#include "http.h"
#include "jsonutil.h"
#include "llmgw.h"
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
int			llmgw_batch_ingest_helpers = 1;
int			llmgw_batch_max_download = 4096;	/* MB */
int			llmgw_batch_max_result_line = 65536;	/* kB */

/* How often worker 0 looks at llmgw.batches */
#define BATCH_SCAN_MS 1000
/* Batches followed at once */
#define MAX_TRACKED 64
/* Timeouts of a step: API calls, and file transfers */
#define BATCH_CALL_TIMEOUT_MS 120000L
#define BATCH_FILE_TIMEOUT_MS 600000L

typedef enum BatchStep
{
	STEP_NONE,
	STEP_UPLOAD,				/* the file, or (on a session) its bytes from an offset */
	STEP_UPLOAD_START,			/* the start of an upload on a session */
	STEP_UPLOAD_QUERY,			/* where an upload on a session stands */
	STEP_LIST,
	STEP_CREATE,
	STEP_POLL,
	STEP_CANCEL,
	STEP_OUTPUT,
	STEP_ERRORS
} BatchStep;

/* How long a create of a serial_create API waits for another's outcome */
#define SERIAL_WAIT_MS 1000

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
	int64		created_unix;	/* when the row was queued */
	int			body_items;		/* items in the create body last built */
	bool		cancel_requested;
	bool		embeddings;		/* llmgw.batches.endpoint = 'embeddings' */
	/* this server life knows no create was sent for it */
	bool		create_fresh;
	bool		cancel_sent;
	bool		output_done;
	bool		waiting_file;	/* its file transfer waits for another's end */
	bool		waiting_create; /* its create waits for another's outcome */
	int			failures;
	TimestampTz next_at;
	BatchStep	step;
	LlmgwTransfer t;
	/* an upload on a session (resumable), this server life only */
	FILE	   *upload_file;	/* the file, kept to go on with; NULL: none */
	size_t		upload_size;
	char	   *session_url;	/* malloc'd; NULL: no session (yet) */
	size_t		upload_offset;	/* where the next send starts */
	bool		session_query;	/* a send was cut short: ask where it stands */
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
							NULL, &llmgw_batch_max_requests, 50000, 1, 100000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.batch_poll_interval",
							"How often the status of a provider batch is asked.",
							NULL, &llmgw_batch_poll_interval, 60000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.batch_ingest_chunk",
							"Results of a provider batch written per transaction.",
							NULL, &llmgw_batch_ingest_chunk, 1000, 1, 100000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.batch_ingest_helpers",
							"Background workers that write a provider batch's results beside worker 0, when they hold more than one chunk.",
							"Each takes a background worker slot (max_worker_processes) while the results are written; 0: worker 0 alone.",
							&llmgw_batch_ingest_helpers, 1, 0, 8,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.batch_max_download",
							"Largest results file of a provider batch worker 0 downloads (to a temporary file).",
							NULL, &llmgw_batch_max_download, 4096, 1, 1048576,
							PGC_SIGHUP, GUC_UNIT_MB, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.batch_max_result_line",
							"Longest line of a provider batch's results, and largest answer of a batch API held in memory.",
							NULL, &llmgw_batch_max_result_line, 65536, 64, 1048575,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
}

/*
 * The route of a batch's model that speaks a batch API, and that API: the
 * highest-priority deployment whose provider has one (that takes
 * embeddings, for an embeddings batch; of the provider the batch went to,
 * once it went)
 */
static const LlmgwRoute *
batch_route(const char *model, const char *provider, bool embeddings,
			const LlmgwBatchWire **wire)
{
	const LlmgwModelRoutes *m = llmgw_config_routes(model);

	if (m == NULL)
		return NULL;
	for (int i = 0; i < m->nroutes; i++)
	{
		const LlmgwRoute *r = &m->routes[i];

		if (r->config_error != NULL || (*wire = llmgw_batch_wire(r->kind)) == NULL ||
			llmgw_provider(r->kind) == NULL || (embeddings && (*wire)->embed_item == NULL))
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
	/* 2 s, 4 s, ... up to 10 minutes (from twice a poll interval under 1 s) */
	b->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 Min((long) Min(llmgw_batch_poll_interval, 1000) << Min(b->failures, 10),
												 600000L));
}

/* Start an upload on a session again from its start (the file is kept) */
static void
session_restart(Tracked *b)
{
	free(b->session_url);
	b->session_url = NULL;
	b->upload_offset = 0;
	b->session_query = false;
}

/* Forget a batch's upload on a session, and its file */
static void
session_end(Tracked *b)
{
	session_restart(b);
	if (b->upload_file)
		fclose(b->upload_file);
	b->upload_file = NULL;
}

/* End a batch (its results, if any, are written) */
static void
finish(Tracked *b, const char *final, const char *error)
{
	char		id[32];
	const char *args[3];

	session_end(b);
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
					 " extract(epoch FROM created_at)::bigint, endpoint = 'embeddings'"
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
		/* a cancel just asked for goes out now, not at the next poll */
		if (strcmp(SPI_getvalue(tup, desc, 11), "t") == 0 && !b->cancel_requested)
		{
			b->cancel_requested = true;
			b->next_at = 0;
		}
		b->created_unix = strtoll(SPI_getvalue(tup, desc, 12), NULL, 10);
		b->embeddings = strcmp(SPI_getvalue(tup, desc, 13), "t") == 0;
	}
	/* batches that ended (or went away) are no longer followed */
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used && !tracked[i].seen && tracked[i].step == STEP_NONE)
		{
			session_end(&tracked[i]);
			tracked[i].used = false;
		}
}

/* ---- temporary files ---- */

/*
 * A temporary file of worker 0 (a batch's upload or create body, its
 * results, the result lines of items refused), read and written with
 * stdio.  It is made under the database's base/pgsql_tmp and unlinked at
 * once: nothing but the open descriptor names it, so it is gone when it is
 * closed or when the worker ends, however it ends (kill -9 included), and
 * no file is ever left behind.
 */
static FILE *
temp_file(void)
{
	static int	counter = 0;
	char		path[MAXPGPATH];
	int			fd;
	FILE	   *f;

	snprintf(path, sizeof(path), "base/%s/%s_llmgw_batch.%d.%d", PG_TEMP_FILES_DIR,
			 PG_TEMP_FILE_PREFIX, MyProcPid, counter++);
	fd = open(path, O_RDWR | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	if (fd < 0 && errno == ENOENT)
	{
		(void) MakePGDirectory("base/" PG_TEMP_FILES_DIR);
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | PG_BINARY, S_IRUSR | S_IWUSR);
	}
	if (fd < 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("llmgw: could not create temporary file \"%s\": %m", path)));
	(void) unlink(path);
	f = fdopen(fd, "w+");
	if (f == NULL)
	{
		close(fd);
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("llmgw: could not open temporary file \"%s\": %m", path)));
	}
	return f;
}

/* Append bytes to a temporary file (an error if the disk refuses them) */
static void
temp_write(FILE *f, const char *data, size_t len)
{
	if (len > 0 && fwrite(data, 1, len, f) != len)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("llmgw: could not write a temporary file of provider batches: %m")));
}

/* Flush a temporary file and go back to its start; its size */
static size_t
temp_rewind(FILE *f)
{
	off_t		size;

	if (fflush(f) != 0 || (size = ftello(f)) < 0 || fseeko(f, 0, SEEK_SET) != 0)
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("llmgw: could not read back a temporary file of provider batches: %m")));
	return (size_t) size;
}

/*
 * A second stream on a temporary file, at offset: for a transfer to take
 * over while the file stays open
 */
static FILE *
temp_reopen(FILE *f, size_t offset)
{
	int			fd = dup(fileno(f));
	FILE	   *copy = fd >= 0 ? fdopen(fd, "rb") : NULL;

	if (copy == NULL && fd >= 0)
		close(fd);
	if (copy == NULL || fseeko(copy, (off_t) offset, SEEK_SET) != 0)
	{
		if (copy)
			fclose(copy);
		ereport(ERROR, (errcode_for_file_access(),
						errmsg("llmgw: could not read back a temporary file of provider batches: %m")));
	}
	return copy;
}

/* ---- starting steps ---- */

/*
 * Start a step's transfer: a small body (malloc'd), or a file sent as the
 * body (multipart for an upload); the answer in memory, or (a results
 * download) in a temporary file.  The files are the transfer's from now on.
 */
static void
start(Tracked *b, BatchStep step, const LlmgwRoute *r, const LlmgwBatchWire *w, LlmgwBatchOp op,
	  const char *id, const char *method, char *body, FILE *upload, size_t upload_len,
	  long timeout_ms)
{
	char	   *url = op == LLMGW_BATCH_CREATE && b->embeddings && w->embed_create_url ?
		w->embed_create_url(r) : w->url(r, op, id);
	bool		download = step == STEP_OUTPUT || step == STEP_ERRORS;
	FILE	   *into = NULL;

	if (download)
		PG_TRY();
		{
			into = temp_file();
		}
		PG_CATCH();
		{
			if (upload)
				fclose(upload);
			free(body);
			PG_RE_THROW();
		}
		PG_END_TRY();
	b->step = step;
	llmgw_http_transfer_start(&b->t, url, method,
							  w->headers(r, upload == NULL || op != LLMGW_BATCH_UPLOAD), body,
							  upload, upload_len,
							  op == LLMGW_BATCH_UPLOAD && w->upload ? LLMGW_TRANSFER_MULTIPART : 0, into,
							  download ? (size_t) llmgw_batch_max_download * 1024 * 1024 :
							  (size_t) llmgw_batch_max_result_line * 1024, timeout_ms);
	pfree(url);
}

/* A copy in malloc'd memory, for curl */
static char *
malloc_copy(const char *s, size_t len)
{
	char	   *copy = malloc(len + 1);

	if (copy == NULL)
		elog(ERROR, "out of memory");
	memcpy(copy, s, len);
	copy[len] = '\0';
	return copy;
}

/*
 * The file or create body of a batch's pending items, built by the
 * provider's wire format into a temporary file, item by item (the items
 * are read through a cursor: worker 0 holds a few of them at a time).
 * Items past the provider's limits are listed in moved (the batch is split
 * before anything is sent); items the wire format refuses get a failed
 * result line in a file of their own.
 */
typedef struct Build
{
	Tracked    *b;
	const LlmgwRoute *r;
	const LlmgwBatchWire *w;
	MemoryContext cxt;			/* of what follows */
	FILE	   *file;			/* the file or create body */
	size_t		bytes;			/* in it */
	FILE	   *failed;			/* result lines of the items refused, or NULL */
	int			nitems;
	int			nfailed;
	Datum	   *moved;			/* custom_ids (text) for a new batch */
	int			nmoved;
	int			maxmoved;
	bool		as_file;		/* an inline API's items as a file to upload */
	bool		too_big_inline; /* past the API's inline_bytes: build as a file */
} Build;

/* Items read from the cursor at a time */
#define BUILD_FETCH 1000

/* Close a build's files */
static void
build_close(Build *bd)
{
	if (bd->file)
		fclose(bd->file);
	if (bd->failed)
		fclose(bd->failed);
	bd->file = bd->failed = NULL;
}

/* An item that goes to another batch */
static void
move_item(Build *bd, const char *cid)
{
	MemoryContext old = MemoryContextSwitchTo(bd->cxt);

	if (bd->moved == NULL)
	{
		bd->maxmoved = 1024;
		bd->moved = palloc(sizeof(Datum) * bd->maxmoved);
	}
	else if (bd->nmoved == bd->maxmoved)
	{
		bd->maxmoved *= 2;
		bd->moved = repalloc(bd->moved, sizeof(Datum) * bd->maxmoved);
	}
	bd->moved[bd->nmoved++] = CStringGetTextDatum(cid);
	MemoryContextSwitchTo(old);
}

/*
 * Build one item (of the cursor's current row) into item and the file, or
 * refuse it (in a memory context reset after each item)
 */
static void
build_item(Build *bd, const LlmgwProvider *p, const char *cid, const char *req, StringInfo item)
{
	size_t		len = 0;
	bool		stream = false;
	char	   *error = NULL;
	char	   *body;

	if (bd->moved)
	{
		move_item(bd, cid);
		return;
	}
	if (bd->b->embeddings)
		body = p->build_embed ? p->build_embed(req, strlen(req), bd->r->upstream_model, &len, &error) :
			NULL;
	else
		body = p->build_chat(req, strlen(req), bd->r->upstream_model, &len, &stream, &error);
	resetStringInfo(item);
	if (body == NULL)
	{
		LlmgwOutcome out;

		llmgw_outcome_init(&out);
		out.error = LLMGW_ERR_INVALID_REQUEST;
		out.provider_message = psprintf("llmgw could not translate the request: %s",
										error ? error : "no reason given");
		llmgw_batch_line(item, cid, LLMGW_BATCH_ITEM_ANSWERED, &out);
		if (bd->failed == NULL)
			bd->failed = temp_file();
		temp_write(bd->failed, item->data, item->len);
		bd->nfailed++;
		return;
	}
	(bd->as_file ? (bd->b->embeddings && bd->w->embed_file_item ?
					bd->w->embed_file_item : bd->w->file_item) :
	 bd->b->embeddings ? bd->w->embed_item : bd->w->item)
		(item, bd->nitems, bd->b->marker,
		 bd->w->results ? llmgw_batch_custom_id(bd->b->marker, cid) : cid, body, len);
	free(body);
	/* too much to go inline: the items are built again, as a file */
	if (!bd->as_file && bd->w->inline_bytes > 0 &&
		bd->bytes + item->len + 64 > bd->w->inline_bytes)
	{
		bd->too_big_inline = true;
		return;
	}
	/* past a limit: this item and the next go to another batch */
	if (bd->nitems > 0 && (bd->nitems + 1 > bd->w->max_requests ||
						   bd->bytes + item->len + 64 > bd->w->max_bytes))
	{
		move_item(bd, cid);
		return;
	}
	temp_write(bd->file, item->data, item->len);
	bd->bytes += item->len;
	bd->nitems++;
}

static void
build_items(void *arg)
{
	Build	   *bd = (Build *) arg;
	const LlmgwProvider *p = llmgw_provider(bd->r->kind);
	Oid			types[1] = {INT8OID};
	Datum		values[1];
	Portal		portal;
	MemoryContext rows = AllocSetContextCreate(CurrentMemoryContext, "llmgw batch build",
											   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	StringInfoData item;

	values[0] = Int64GetDatum(bd->b->id);
	portal = SPI_cursor_open_with_args(NULL, "SELECT custom_id, request::text FROM llmgw.batch_items"
									   " WHERE batch_id = $1 AND state = 'pending'"
									   " ORDER BY custom_id COLLATE \"C\"", 1, types, values, NULL,
									   true, 0);
	old = MemoryContextSwitchTo(bd->cxt);
	initStringInfo(&item);
	bd->file = temp_file();
	if (!bd->as_file)
		bd->w->begin(&item, bd->r, bd->b->marker);
	temp_write(bd->file, item.data, item.len);
	bd->bytes = item.len;
	while (!bd->too_big_inline)
	{
		SPI_cursor_fetch(portal, true, BUILD_FETCH);
		if (SPI_processed == 0)
			break;
		for (uint64 i = 0; i < SPI_processed && !bd->too_big_inline; i++)
		{
			MemoryContextSwitchTo(rows);
			build_item(bd, p, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1),
					   bd->moved ? NULL : SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2),
					   &item);
			MemoryContextSwitchTo(bd->cxt);
			MemoryContextReset(rows);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);
	resetStringInfo(&item);
	if (!bd->as_file)
		bd->w->end(&item);
	temp_write(bd->file, item.data, item.len);
	bd->bytes += item.len;
	pfree(item.data);
	if (temp_rewind(bd->file) != bd->bytes)
		elog(ERROR, "llmgw: the body of provider batch " INT64_FORMAT " was not written whole", bd->b->id);
	if (bd->failed)
		(void) temp_rewind(bd->failed);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(rows);
}

/* Build the items again, as a file to upload (too many bytes to go inline) */
static bool
build_as_file(Build *bd)
{
	build_close(bd);
	bd->too_big_inline = false;
	bd->as_file = true;
	bd->bytes = 0;
	bd->nitems = bd->nfailed = bd->nmoved = 0;
	bd->moved = NULL;
	return llmgw_in_transaction("llmgw: building a provider batch", build_items, bd);
}

/* Build a batch's items; false (the error noted) if they could not be read */
static bool
build(Tracked *b, const LlmgwRoute *r, const LlmgwBatchWire *w, Build *bd)
{
	memset(bd, 0, sizeof(*bd));
	bd->b = b;
	bd->r = r;
	bd->w = w;
	bd->cxt = CurrentMemoryContext;
	if (!llmgw_in_transaction("llmgw: building a provider batch", build_items, bd) ||
		(bd->too_big_inline && !build_as_file(bd)))
	{
		build_close(bd);
		note_error(b, "its items could not be read; see the server log");
		return false;
	}
	if (bd->nfailed > 0 && (w->upload || bd->as_file))
	{
		build_close(bd);
		note_error(b, "some of its requests could not be translated");
		return false;
	}
	b->body_items = bd->nitems;
	return true;
}

static void
split_batch(void *arg)
{
	Build	   *bd = (Build *) arg;
	Oid			types[2] = {INT8OID, TEXTARRAYOID};
	Datum		values[2];

	values[0] = Int64GetDatum(bd->b->id);
	values[1] = PointerGetDatum(construct_array(bd->moved, bd->nmoved, TEXTOID, -1, false, TYPALIGN_INT));
	if (SPI_execute_with_args("SELECT llmgw.batch_split($1, $2)", 2, types, values, NULL,
							  false, 0) != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not split batch " INT64_FORMAT, bd->b->id);
}

/*
 * Write the result lines of a file (OpenAI output lines, or a provider's
 * results read by its wire format); false, *error saying why, if they
 * could not be written
 */
static bool ingest_file(Tracked *b, const LlmgwBatchWire *w, const char *ref, FILE *f,
						const char **error);

/*
 * Mark a batch of an API without upload submitting: from now on a create
 * may have reached the provider.  The items the wire format refused are
 * written as failed.
 */
static bool
mark_submitting(Tracked *b, const LlmgwRoute *r, Build *bd)
{
	char		id[32];
	const char *args[3];

	snprintf(id, sizeof(id), INT64_FORMAT, b->id);
	args[0] = id;
	args[1] = r->provider;
	args[2] = r->upstream_model;
	if (!exec_text("llmgw: submitting a provider batch",
				   "UPDATE llmgw.batches SET state = 'submitting', provider = $2, upstream_model = $3,"
				   " last_error = NULL WHERE id = $1::bigint AND state = 'queued'", 3, args, NULL))
	{
		note_error(b, "the submission could not be recorded; see the server log");
		return false;
	}
	strlcpy(b->provider, r->provider, sizeof(b->provider));
	strlcpy(b->state, "submitting", sizeof(b->state));
	if (bd->nfailed > 0)
	{
		const char *error = NULL;

		if (!ingest_file(b, NULL, NULL, bd->failed, &error))
		{
			note_error(b, error);
			return false;
		}
		fclose(bd->failed);
		bd->failed = NULL;
	}
	return true;
}

/* Is another batch of this provider waiting for a create's outcome? */
static bool
create_uncertain(const Tracked *b)
{
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used && &tracked[i] != b && strcmp(tracked[i].state, "submitting") == 0 &&
			strcmp(tracked[i].provider, b->provider) == 0)
			return true;
	return false;
}

/* Send the create of an inline batch (its outcome is unknown from now on) */
static void
start_create(Tracked *b, const LlmgwRoute *r, const LlmgwBatchWire *w, Build *bd)
{
	FILE	   *body = bd->file;

	b->create_fresh = false;
	bd->file = NULL;
	build_close(bd);
	start(b, STEP_CREATE, r, w, LLMGW_BATCH_CREATE, NULL, "POST", NULL, body, bd->bytes,
		  BATCH_CALL_TIMEOUT_MS);
}

/* Is a step one of a file's transfer (an upload's, a download's)? */
static bool
file_step(BatchStep step)
{
	return step == STEP_UPLOAD || step == STEP_UPLOAD_START || step == STEP_UPLOAD_QUERY ||
		step == STEP_OUTPUT || step == STEP_ERRORS;
}

/*
 * The next request of an upload on a session: its start, the file sent
 * from where the session stands (the transfer reads a stream of its own),
 * or a query after a send cut short
 */
static void
session_step(Tracked *b, const LlmgwRoute *r, const LlmgwBatchWire *w)
{
	LlmgwUploadCommand cmd;
	char	   *url;
	char	   *body = NULL;
	FILE	   *part = NULL;
	struct curl_slist *headers;

	/* the base URL changed meanwhile: the key goes to no other host */
	if (b->session_url && !llmgw_batch_same_origin(r->base_url, b->session_url))
		session_restart(b);
	cmd = b->session_url == NULL ? LLMGW_UPLOAD_START :
		b->session_query ? LLMGW_UPLOAD_QUERY : LLMGW_UPLOAD_SEND;
	url = cmd == LLMGW_UPLOAD_START ? w->url(r, LLMGW_BATCH_UPLOAD, NULL) : b->session_url;
	if (cmd == LLMGW_UPLOAD_START)
	{
		char	   *start_body = w->session->start_body(b->marker);

		body = malloc_copy(start_body, strlen(start_body));
	}
	else if (cmd == LLMGW_UPLOAD_SEND)
		part = temp_reopen(b->upload_file, b->upload_offset);
	headers = w->session->headers(r, cmd, b->upload_offset, b->upload_size);
	b->step = cmd == LLMGW_UPLOAD_START ? STEP_UPLOAD_START :
		cmd == LLMGW_UPLOAD_QUERY ? STEP_UPLOAD_QUERY : STEP_UPLOAD;
	llmgw_http_transfer_start(&b->t, url, "POST", headers, body, part,
							  part ? b->upload_size - b->upload_offset : 0,
							  part ? LLMGW_TRANSFER_FRESH : 0, NULL,
							  (size_t) llmgw_batch_max_result_line * 1024,
							  part ? BATCH_FILE_TIMEOUT_MS : BATCH_CALL_TIMEOUT_MS);
	llmgw_http_transfer_keep(&b->t, w->session->answer_headers);
}

/*
 * One file (a batch's JSONL upload, or its results download) in flight at a
 * time, however many batches a job has: one temporary file on disk, and
 * the provider's bandwidth not shared.  A batch whose turn has not come
 * waits; the end of the transfer in flight wakes it.
 */
static bool
file_turn(Tracked *b)
{
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used && tracked[i].step != STEP_NONE && file_step(tracked[i].step))
		{
			b->waiting_file = true;
			b->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), BATCH_SCAN_MS);
			return false;
		}
	return true;
}

/* The first step of a queued batch: split it, upload it or create it */
static void
step_queued(Tracked *b, const LlmgwRoute *r, const LlmgwBatchWire *w)
{
	Build		bd;

	strlcpy(b->provider, r->provider, sizeof(b->provider));
	if (w->serial_create && create_uncertain(b))
	{
		/* the end of the other's create (or of its look) wakes it */
		b->waiting_create = true;
		b->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), SERIAL_WAIT_MS);
		return;
	}
	if (!file_turn(b))
		return;
	if (b->upload_file && w->session)
	{
		/* an upload on a session goes on (or starts again) */
		session_step(b, r, w);
		return;
	}
	session_end(b);				/* (the provider's API changed meanwhile) */
	if (!build(b, r, w, &bd))
		return;
	if (bd.nmoved > 0)
	{
		build_close(&bd);
		if (!llmgw_in_transaction("llmgw: splitting a provider batch", split_batch, &bd))
			note_error(b, "the batch could not be split; see the server log");
		else
			elog(LOG, "llmgw: batch " INT64_FORMAT " split: %d requests go to another batch (%s takes %d requests, %zu bytes)",
				 b->id, bd.nmoved, w->api, w->max_requests, w->max_bytes);
		next_scan = 0;
		return;
	}
	if (bd.as_file && w->session)
	{
		/* kept to go on with, or to start again with */
		b->upload_file = bd.file;
		b->upload_size = bd.bytes;
		bd.file = NULL;
		session_step(b, r, w);
		return;
	}
	if (w->upload || bd.as_file)
	{
		FILE	   *file = bd.file;

		/* the transfer reads the file as curl sends it, and closes it */
		bd.file = NULL;
		start(b, STEP_UPLOAD, r, w, LLMGW_BATCH_UPLOAD, NULL, "POST", NULL, file, bd.bytes,
			  BATCH_FILE_TIMEOUT_MS);
		return;
	}
	if (!mark_submitting(b, r, &bd))
	{
		build_close(&bd);
		return;
	}
	if (bd.nitems == 0)
	{
		build_close(&bd);
		finish(b, "failed", "none of its requests could be translated");
		return;
	}
	start_create(b, r, w, &bd);
}


/* The next step of a batch whose turn it is */
static void
step_batch(Tracked *b)
{
	const LlmgwRoute *r;
	const LlmgwBatchWire *w = NULL;
	bool		queued = strcmp(b->state, "queued") == 0;

	if (queued && b->cancel_requested)
	{
		finish(b, "cancelled", "cancelled before it was submitted");
		return;
	}
	r = batch_route(b->model, queued ? NULL : b->provider, b->embeddings, &w);
	if (r == NULL)
	{
		if (queued)
			finish(b, "failed", psprintf("no deployment of model \"%s\" has a batch API llmgw speaks (OpenAI, Azure OpenAI, Anthropic, Gemini)", b->model));
		else
			note_error(b, psprintf("provider \"%s\" of model \"%s\" cannot be called now", b->provider, b->model));
		return;
	}
	if (queued)
		step_queued(b, r, w);
	else if (strcmp(b->state, "submitting") == 0)
	{
		Build		bd;

		if (w->upload || b->input_file[0])
		{
			if (!b->create_fresh)
				start(b, STEP_LIST, r, w, LLMGW_BATCH_LIST, NULL, "GET", NULL, NULL, 0,
					  BATCH_CALL_TIMEOUT_MS);
			else
			{
				char	   *body = (b->embeddings ? w->embed_create_body : w->create_body) (r, b->marker, b->input_file);

				/* from now on its outcome is unknown until it is answered */
				b->create_fresh = false;
				start(b, STEP_CREATE, r, w, LLMGW_BATCH_CREATE, NULL, "POST",
					  malloc_copy(body, strlen(body)), NULL, 0, BATCH_CALL_TIMEOUT_MS);
			}
		}
		else if (!b->create_fresh)
		{
			/* (the items are built again for the count find_ours compares) */
			if (build(b, r, w, &bd))
			{
				build_close(&bd);
				start(b, STEP_LIST, r, w, LLMGW_BATCH_LIST, NULL, "GET", NULL, NULL, 0,
					  BATCH_CALL_TIMEOUT_MS);
			}
		}
		else if (build(b, r, w, &bd))
		{
			if (bd.nitems == 0)
			{
				build_close(&bd);
				finish(b, "failed", "none of its requests could be translated");
			}
			else
				start_create(b, r, w, &bd);
		}
	}
	else if (strcmp(b->state, "ingesting") == 0)
	{
		if (((b->output_file[0] && !b->output_done) || b->error_file[0]) && !file_turn(b))
			return;
		if (b->output_file[0] && !b->output_done)
			start(b, STEP_OUTPUT, r, w, LLMGW_BATCH_RESULTS, b->output_file, "GET", NULL, NULL, 0,
				  BATCH_FILE_TIMEOUT_MS);
		else if (b->error_file[0])
			start(b, STEP_ERRORS, r, w, LLMGW_BATCH_RESULTS, b->error_file, "GET", NULL, NULL, 0,
				  BATCH_FILE_TIMEOUT_MS);
		else
			finish(b, strcmp(b->provider_status, "completed") == 0 ? "completed" :
				   b->provider_status, NULL);
	}
	else if (b->cancel_requested && !b->cancel_sent && strcmp(b->state, "cancelling") != 0)
	{
		b->cancel_sent = true;
		start(b, STEP_CANCEL, r, w, LLMGW_BATCH_CANCEL, b->batch_id, "POST", NULL, NULL, 0,
			  BATCH_CALL_TIMEOUT_MS);
	}
	else
		start(b, STEP_POLL, r, w, LLMGW_BATCH_GET, b->batch_id, "GET", NULL, NULL, 0,
			  BATCH_CALL_TIMEOUT_MS);
}

/* ---- steps that ended ---- */

/* Our state for a batch status (in OpenAI's words) */
static const char *
state_of(const char *status)
{
	if (strcmp(status, "completed") == 0 || strcmp(status, "expired") == 0 ||
		strcmp(status, "cancelled") == 0)
		return "ingesting";
	return status;
}

/* A count as text, NULL when not said */
static char *
count_text(int64 n)
{
	return n < 0 ? NULL : psprintf(INT64_FORMAT, n);
}

/*
 * Record what the provider says of a batch (a create, a poll, a cancel, or
 * the batch found by its marker).
 */
static void
record_batch(Tracked *b, const LlmgwBatchStatus *st, bool submitted)
{
	const char *state = state_of(st->status);
	char		id[32];
	const char *args[9];

	snprintf(id, sizeof(id), INT64_FORMAT, b->id);
	args[0] = id;
	args[1] = strcmp(state, "failed") == 0 ? b->state : state;
	args[2] = st->status;
	args[3] = st->id;
	args[4] = st->output_ref;
	args[5] = st->error_ref;
	args[6] = count_text(st->completed);
	args[7] = count_text(st->failed);
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
	strlcpy(b->provider_status, st->status, sizeof(b->provider_status));
	strlcpy(b->batch_id, st->id, sizeof(b->batch_id));
	strlcpy(b->output_file, st->output_ref ? st->output_ref : "", sizeof(b->output_file));
	strlcpy(b->error_file, st->error_ref ? st->error_ref : "", sizeof(b->error_file));
	if (strcmp(st->status, "failed") == 0)
	{
		finish(b, "failed", psprintf("the provider failed the batch: %s",
									 st->error ? st->error : "no reason given"));
		return;
	}
	if (strcmp(state, "ingesting") == 0)
		b->next_at = 0;
	else
		b->next_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), llmgw_batch_poll_interval);
}

/* Does another row of llmgw.batches hold this provider batch? */
static bool
held_elsewhere(Tracked *b, const char *provider_batch_id)
{
	char		id[32];
	const char *args[3];
	char	   *held = NULL;

	snprintf(id, sizeof(id), INT64_FORMAT, b->id);
	args[0] = id;
	args[1] = b->provider;
	args[2] = provider_batch_id;
	if (!exec_text("llmgw: looking for a provider batch",
				   "SELECT 1 FROM llmgw.batches WHERE id <> $1::bigint AND provider = $2"
				   " AND provider_batch_id = $3", 3, args, &held))
		return true;			/* in doubt, not ours */
	return held != NULL;
}

/*
 * The batch of a list answer that is ours: it carries our marker or our
 * input file; for an API without either (serial_create), the oldest one
 * created since the row was queued (less 10 minutes of clock skew) with as
 * many requests as we send, that no other row holds.  NULL if none.
 */
static const LlmgwBatchStatus *
find_ours(Tracked *b, const LlmgwBatchWire *w, const LlmgwBatchStatus *list, int n)
{
	const LlmgwBatchStatus *found = NULL;

	/* newest first: the last match is the oldest */
	for (int i = 0; i < n; i++)
	{
		const LlmgwBatchStatus *c = &list[i];
		bool		match = (c->marker && strcmp(c->marker, b->marker) == 0) ||
			(b->input_file[0] && c->input_file && strcmp(c->input_file, b->input_file) == 0);

		if (!match && w->serial_create)
			match = c->total == b->body_items && c->created >= b->created_unix - 600;
		if (match && !held_elsewhere(b, c->id))
			found = c;
	}
	return found;
}

/*
 * Whether a list of the latest batches reaches back to when this one was
 * queued: a page that is not full holds every batch there is; a full one
 * must hold a batch made before the row (10 minutes of clock skew allowed)
 */
static bool
list_reaches_back(const Tracked *b, const LlmgwBatchStatus *list, int n, int listed)
{
	if (listed < LLMGW_BATCH_LIST_LIMIT)
		return true;
	for (int i = 0; i < n; i++)
		if (list[i].created > 0 && list[i].created < b->created_unix - 600)
			return true;
	return false;
}

/* A chunk of result lines for llmgw.batch_ingest */
typedef struct Chunk
{
	int64		id;
	Datum	   *lines;
	int			n;
	int			skipped;		/* lines that are not JSON objects (batch_ingest.c) */
	bool		by_sql;			/* written by llmgw.batch_ingest */
} Chunk;

/*
 * Write a chunk by batch_ingest.c, in a subtransaction: when llmgw's
 * tables are not as the extension made them it writes nothing, and the
 * share lock it took on the batch's row goes with the subtransaction, so
 * that chunks llmgw.batch_ingest then writes (worker 0's and a helper's
 * at once) wait for each other's commit on that row instead of for each
 * other's share lock
 */
static bool
ingest_direct(Chunk *c)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	bool		done;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		done = llmgw_batch_ingest_direct(c->id, c->lines, c->n, &c->skipped);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		RollbackAndReleaseCurrentSubTransaction();
		CurrentResourceOwner = owner;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (done)
		ReleaseCurrentSubTransaction();
	else
		RollbackAndReleaseCurrentSubTransaction();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return done;
}

/*
 * Write a chunk: by batch_ingest.c, or by llmgw.batch_ingest when
 * llmgw's tables are not as the extension made them
 */
static void
ingest_chunk(void *arg)
{
	Chunk	   *c = (Chunk *) arg;
	Oid			types[2] = {INT8OID, TEXTARRAYOID};
	Datum		values[2];
	int			rc;

	c->skipped = 0;
	c->by_sql = false;
	if (ingest_direct(c))
		return;
	c->by_sql = true;
	values[0] = Int64GetDatum(c->id);
	values[1] = PointerGetDatum(construct_array(c->lines, c->n, TEXTOID, -1, false, TYPALIGN_INT));
	rc = SPI_execute_with_args("SELECT llmgw.batch_ingest($1, $2)", 2, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not write the results of batch " INT64_FORMAT, c->id);
}

/*
 * Write a chunk of result lines in a transaction of its own.  When
 * llmgw.batch_ingest writes it, a line that is not JSON makes the chunk's
 * cast to jsonb fail: then each line of the chunk is parsed here, those
 * that are not JSON objects are counted in *skipped and left out, and the
 * rest written again.  (Parsing every line here first would parse each
 * line twice.)
 */
static bool
write_chunk(Chunk *c, int *skipped)
{
	int			kept = 0;

	if (llmgw_in_transaction("llmgw: writing the results of a provider batch", ingest_chunk, c))
	{
		*skipped += c->skipped;
		return true;
	}
	for (int i = 0; i < c->n; i++)
	{
		text	   *t = (text *) DatumGetPointer(c->lines[i]);
		json_t	   *line = llmgw_json_loadb(VARDATA(t), VARSIZE(t) - VARHDRSZ, 0, NULL);

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
	if (kept == 0)
		return true;
	if (!llmgw_in_transaction("llmgw: writing the results of a provider batch", ingest_chunk, c))
		return false;
	*skipped += c->skipped;
	return true;
}

/* A chunk of a batch's result lines, written as worker 0 writes it (batch_helper.c) */
bool
llmgw_batch_write_chunk(int64 batch, Datum *lines, int n, int *skipped)
{
	Chunk		c = {.id = batch, .lines = lines, .n = n};

	return write_chunk(&c, skipped);
}

/*
 * Result lines on their way to llmgw.batch_ingest: a chunk of lines per
 * transaction.  A chunk that cannot be written stops the ingest (the
 * results are downloaded again later, and the items already written are
 * passed over).
 */
typedef struct Ingest
{
	Tracked    *b;
	MemoryContext cxt;			/* the chunk's lines */
	Chunk		c;
	bool		ok;
	int			skipped;		/* lines that are not JSON objects */
	StringInfoData line;		/* a normalised line (foreign formats) */
	int			chunks;			/* chunks so far */
	int			helped;			/* of them, written by helpers */
	bool		helpers_tried;
} Ingest;

/*
 * Worker 0's ingest helpers (batch_helper.c; NULL: none), kept from one
 * results file to the next (a job's batches end together, and a helper
 * takes tens of milliseconds to start), stopped once worker 0 has had no
 * results to write for HELPERS_IDLE_MS
 */
#define HELPERS_IDLE_MS 2000
static LlmgwIngestHelpers *helpers = NULL;
static TimestampTz helpers_idle_since = 0;

/* Stop the helpers */
static void
end_helpers(void)
{
	if (helpers == NULL)
		return;
	llmgw_ingest_helpers_end(helpers);
	helpers = NULL;
}

/* Wait for the chunks of the file given to the helpers; they stay for the next */
static void
wait_helpers(Ingest *in)
{
	int			helped = 0;

	if (helpers == NULL)
		return;
	if (!llmgw_ingest_helpers_wait(helpers, &in->skipped, &helped))
	{
		/* a chunk not written, a helper perhaps gone: the next file starts afresh */
		in->ok = false;
		end_helpers();
	}
	in->helped += helped;
	helpers_idle_since = GetCurrentTimestamp();
}

/*
 * Write the chunk's lines, or hand them to an idle helper, and start the
 * next chunk.  Helpers start with a file's second chunk (a full one) when
 * none are left from the last file, so that a file of one chunk starts
 * none: worker 0 writes the first while they start.
 */
static void
ingest_flush(Ingest *in, bool last)
{
	if (in->c.n == 0 || !in->ok)
		return;
	if (helpers && !llmgw_ingest_helpers_ok(helpers))
		in->ok = false;
	else if (!helpers || !llmgw_ingest_helpers_give(helpers, in->c.id, in->c.lines, in->c.n))
	{
		if (!last && !in->helpers_tried && helpers == NULL)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			in->helpers_tried = true;
			helpers = llmgw_ingest_helpers_start();
			MemoryContextSwitchTo(old);
		}
		in->ok = write_chunk(&in->c, &in->skipped);

		/*
		 * Chunks that llmgw.batch_ingest writes (llmgw's tables were
		 * changed) wait for each other on the batch's row: they are
		 * worker 0's alone
		 */
		if (in->c.by_sql)
		{
			wait_helpers(in);
			end_helpers();
			in->helpers_tried = true;
		}
	}
	in->chunks++;
	MemoryContextReset(in->cxt);
	in->c.lines = MemoryContextAlloc(in->cxt, sizeof(Datum) * llmgw_batch_ingest_chunk);
	in->c.n = 0;
}

/* Add a result line (an object, if it is JSON at all: write_chunk sees to the rest) */
static void
ingest_add(Ingest *in, const char *p, size_t n)
{
	size_t		lead = 0;

	while (lead < n && isspace((unsigned char) p[lead]))
		lead++;
	if (lead == n || !in->ok)
		return;
	if (p[lead] != '{')
	{
		in->skipped++;
		return;
	}
	{
		MemoryContext old = MemoryContextSwitchTo(in->cxt);

		in->c.lines[in->c.n++] = PointerGetDatum(cstring_to_text_with_len(p, (int) n));
		MemoryContextSwitchTo(old);
	}
	if (in->c.n == llmgw_batch_ingest_chunk)
		ingest_flush(in, false);
}

/* Each item of a provider's results, as a normalised line */
static void
emit_line(void *arg, const char *custom_id, LlmgwBatchItemEnd end, const LlmgwOutcome *out)
{
	Ingest	   *in = (Ingest *) arg;

	resetStringInfo(&in->line);
	llmgw_batch_line(&in->line, custom_id, end, out);
	ingest_add(in, in->line.data, in->line.len);
}

/* Reads a file a line at a time, through a block of its own */
typedef struct LineReader
{
	FILE	   *f;
	char	   *block;
	size_t		pos;
	size_t		end;
} LineReader;

#define LINE_BLOCK 65536

/*
 * The next line of the file (without its newline) in line: 1; 0 at the
 * end; -1 for a line longer than cap (passed over, not kept), -2 when the
 * file cannot be read
 */
static int
next_line(LineReader *r, StringInfo line, size_t cap)
{
	bool		toolong = false;

	resetStringInfo(line);
	for (;;)
	{
		char	   *nl;
		size_t		n;

		if (r->pos == r->end)
		{
			r->pos = 0;
			r->end = fread(r->block, 1, LINE_BLOCK, r->f);
			if (r->end == 0)
				return ferror(r->f) ? -2 : toolong ? -1 : line->len > 0 ? 1 : 0;
		}
		nl = memchr(r->block + r->pos, '\n', r->end - r->pos);
		n = nl ? (size_t) (nl - (r->block + r->pos)) : r->end - r->pos;
		if (!toolong && (size_t) line->len + n <= cap)
			appendBinaryStringInfo(line, r->block + r->pos, (int) n);
		else
			toolong = true;
		r->pos += n + (nl ? 1 : 0);
		if (nl)
			return toolong ? -1 : 1;
	}
}

/*
 * Write the results in a file, a line at a time: OpenAI output lines as
 * they are (w NULL, or an API whose lines are OpenAI's), others read by
 * their wire format, a line (an item) at a time; a document the wire
 * format reads whole (Gemini's inline answers) is read whole.  Worker 0
 * holds a line, and a chunk of result lines, at a time.
 */
static bool
ingest_file(Tracked *b, const LlmgwBatchWire *w, const char *ref, FILE *f, const char **error)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "llmgw batch ingest",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext each = AllocSetContextCreate(cxt, "llmgw batch result", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	size_t		cap = (size_t) llmgw_batch_max_result_line * 1024;
	bool		whole = w && w->results_doc && w->whole && w->whole(ref);
	Ingest		in;
	LineReader	r;
	StringInfoData line;
	int			foreign = 0;
	int			got;

	memset(&in, 0, sizeof(in));
	in.b = b;
	in.ok = true;
	in.c.id = b->id;
	in.cxt = AllocSetContextCreate(cxt, "llmgw batch chunk", ALLOCSET_DEFAULT_SIZES);
	/* chunks an error kept the last file from waiting for are not this file's */
	if (helpers)
	{
		Ingest		before = {.ok = true};

		wait_helpers(&before);
	}
	in.c.lines = MemoryContextAlloc(in.cxt, sizeof(Datum) * llmgw_batch_ingest_chunk);
	initStringInfo(&in.line);
	initStringInfo(&line);
	r.f = f;
	r.block = palloc(LINE_BLOCK);
	r.pos = r.end = 0;
	*error = NULL;
	if (fseeko(f, 0, SEEK_SET) != 0)
		got = -2;
	else if (whole)
	{
		/* one document: its lines joined (JSON does not care) */
		StringInfoData doc;

		initStringInfo(&doc);
		while ((got = next_line(&r, &line, cap - Min(cap, (size_t) doc.len))) == 1)
		{
			appendBinaryStringInfo(&doc, line.data, line.len);
			appendStringInfoChar(&doc, '\n');
		}
		if (got == 0)
		{
			MemoryContextSwitchTo(each);
			foreign = w->results_doc(doc.data, doc.len, b->marker, emit_line, &in);
			MemoryContextSwitchTo(cxt);
		}
		pfree(doc.data);
	}
	else
		while (in.ok && (got = next_line(&r, &line, cap)) == 1)
		{
			if (w == NULL || w->results == NULL)
				ingest_add(&in, line.data, line.len);
			else
			{
				MemoryContextSwitchTo(each);
				foreign += w->results(line.data, line.len, b->marker, emit_line, &in);
				MemoryContextSwitchTo(cxt);
				MemoryContextReset(each);
			}
		}
	if (got == -1)
		*error = psprintf("%s is longer than llmgw.batch_max_result_line (%d kB)",
						  whole ? "its results document" : "a line of its results",
						  llmgw_batch_max_result_line);
	else if (got == -2)
		*error = "its results could not be read back from their temporary file";
	else
		ingest_flush(&in, true);
	wait_helpers(&in);
	if (in.helped > 0)
		elog(DEBUG1, "llmgw: the results of batch " INT64_FORMAT ": %d chunks, %d of them written by helpers",
			 b->id, in.chunks, in.helped);
	if (!in.ok)
		*error = "results could not be written; see the server log";
	if (in.skipped > 0)
		elog(WARNING, "llmgw: %d lines of the results of batch " INT64_FORMAT " are not JSON objects",
			 in.skipped, b->id);
	if (foreign > 0)
		elog(WARNING, "llmgw: %d results of provider batch %s are not of batch " INT64_FORMAT " (their custom_ids do not carry its marker) and were passed over",
			 foreign, b->batch_id, b->id);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return *error == NULL;
}

/* The message of a failed step */
static char *
step_error(Tracked *b, const char *what)
{
	json_t	   *root;
	json_t	   *err;
	const char *msg = NULL;
	char	   *s;

	if (b->t.curl_result != CURLE_OK)
		return psprintf("%s failed: %s", what, llmgw_http_strerror(b->t.curl_result));
	root = b->t.response.data ? json_loads(b->t.response.data, 0, NULL) : NULL;
	err = json_object_get(root, "error");
	/* OpenAI and Gemini: error.message; Anthropic: error.error.message too */
	msg = json_string_value(json_object_get(err, "message"));
	s = psprintf("%s failed: HTTP %ld%s%s", what, b->t.http_status, msg ? ": " : "", msg ? msg : "");
	json_decref(root);
	return s;
}

/*
 * Record the file an upload's answer names (the batch is submitting from
 * now on); false if it names none
 */
static bool
upload_named(Tracked *b, const LlmgwRoute *r, const LlmgwBatchWire *w)
{
	json_t	   *root = b->t.response.data ? llmgw_json_loadb(b->t.response.data, b->t.response.len, 0, NULL) : NULL;
	const char *file = w->uploaded ? w->uploaded(root) :
		json_string_value(json_object_get(root, "id"));
	bool		named = llmgw_batch_safe_ref(file);

	if (named)
	{
		char		id[32];
		const char *args[4];

		snprintf(id, sizeof(id), INT64_FORMAT, b->id);
		args[0] = id;
		args[1] = file;
		args[2] = b->provider;
		args[3] = r->upstream_model;
		if (exec_text("llmgw: recording a batch upload",
					  "UPDATE llmgw.batches SET state = 'submitting', input_file_id = $2,"
					  " provider = $3, upstream_model = $4, last_error = NULL"
					  " WHERE id = $1::bigint AND state = 'queued'", 4, args, NULL))
		{
			strlcpy(b->input_file, file, sizeof(b->input_file));
			strlcpy(b->state, "submitting", sizeof(b->state));
			b->create_fresh = true;
			b->failures = 0;
			b->next_at = 0;
			session_end(b);
		}
		else
			note_error(b, "the upload could not be recorded; see the server log");
	}
	json_decref(root);
	return named;
}

/*
 * An upload (the file, or on a session its bytes from an offset) ended: a
 * send on a session cut short or answered 5xx, 408 or 429 goes on where
 * the session stands, asked first
 */
static void
upload_done(Tracked *b, const LlmgwRoute *r, const LlmgwBatchWire *w, bool ok, bool refused)
{
	if (ok)
	{
		if (!upload_named(b, r, w))
		{
			session_end(b);
			note_error(b, "the upload's answer could not be read");
		}
	}
	else if (refused)
		finish(b, "failed", step_error(b, "the upload"));
	else if (b->session_url)
	{
		b->session_query = true;
		note_error(b, psprintf("%s; it goes on where the upload session stands",
							   step_error(b, "the upload")));
	}
	else
		note_error(b, step_error(b, "the upload"));
}

/*
 * The answer of a start (the session's URL) or of a query (where the
 * session stands) of an upload on a session.  A session that is gone (a
 * query answered 4xx) or an answer that cannot be used starts the upload
 * again.
 */
static void
session_answer(Tracked *b, const LlmgwRoute *r, const LlmgwBatchWire *w, LlmgwUploadCommand cmd,
			   bool ok, bool refused)
{
	const char *what = cmd == LLMGW_UPLOAD_START ? "starting the upload" :
		"asking where the upload session stands";
	LlmgwUploadAnswer a;

	if (!ok && refused && cmd == LLMGW_UPLOAD_START)
		finish(b, "failed", step_error(b, what));
	else if (!ok && refused)
	{
		session_restart(b);
		note_error(b, psprintf("%s; the session is gone: the upload starts again",
							   step_error(b, what)));
	}
	else if (!ok)
		note_error(b, step_error(b, what)); /* the same request later */
	else
	{
		w->session->read(r->base_url, cmd, b->t.kept, b->upload_size, &a);
		if (a.error)
		{
			session_restart(b);
			note_error(b, psprintf("%s; the upload starts again", a.error));
		}
		else if (cmd == LLMGW_UPLOAD_START)
		{
			b->session_url = strdup(a.session_url);
			if (b->session_url == NULL)
				note_error(b, "out of memory");
			else
				b->next_at = 0;
		}
		else if (a.final)
		{
			if (!upload_named(b, r, w))
			{
				session_restart(b);
				note_error(b, "the upload session says the file is whole, but its answer names no file; the upload starts again");
			}
		}
		else
		{
			b->upload_offset = a.received;
			b->session_query = false;
			b->next_at = 0;
		}
	}
}

/* A step's transfer ended: act on its answer */
static void
step_done(Tracked *b)
{
	BatchStep	step = b->step;
	bool		ok = b->t.curl_result == CURLE_OK && b->t.http_status >= 200 && b->t.http_status < 300;
	bool		refused = b->t.curl_result == CURLE_OK && b->t.http_status >= 400 &&
		b->t.http_status < 500 && b->t.http_status != 429 && b->t.http_status != 408;
	const LlmgwBatchWire *w = NULL;
	const LlmgwRoute *r = batch_route(b->model, b->provider, b->embeddings, &w);
	const char *data = b->t.response.data ? b->t.response.data : "";
	size_t		len = b->t.response.len;
	LlmgwBatchStatus st;
	const char *error = NULL;

	b->step = STEP_NONE;
	if (r == NULL)
	{
		/* the configuration changed meanwhile: the step is done again */
		note_error(b, psprintf("provider \"%s\" of model \"%s\" cannot be called now", b->provider, b->model));
		llmgw_http_transfer_release(&b->t);
		return;
	}
	switch (step)
	{
		case STEP_UPLOAD:
			upload_done(b, r, w, ok, refused);
			break;
		case STEP_UPLOAD_START:
		case STEP_UPLOAD_QUERY:
			session_answer(b, r, w, step == STEP_UPLOAD_START ? LLMGW_UPLOAD_START : LLMGW_UPLOAD_QUERY,
						   ok, refused);
			break;
		case STEP_LIST:
			if (ok)
			{
				int			n = 0;
				int			listed = 0;
				LlmgwBatchStatus *list = llmgw_batch_parse_list(w, data, len, &n, &listed);
				const LlmgwBatchStatus *found = find_ours(b, w, list, n);

				if (found)
					record_batch(b, found, true);
				else if (!list_reaches_back(b, list, n, listed))
				{
					/*
					 * a full page of batches all made since this one was
					 * queued: it may be among the older ones; creating it
					 * again could submit it twice
					 */
					finish(b, "failed",
						   psprintf("cannot tell whether the provider created this batch: its %d latest batches were all made since it was queued; look for metadata llmgw_batch = %s (Anthropic: custom_ids starting %s-) among the provider's batches",
									LLMGW_BATCH_LIST_LIMIT, b->marker, b->marker));
				}
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
			if (ok && llmgw_batch_parse_status(w, data, len, &st))
				record_batch(b, &st, true);
			else if (refused)
			{
				/* refused: nothing was created */
				b->create_fresh = true;
				finish(b, "failed", step_error(b, "creating the batch"));
			}
			else
				note_error(b, ok ? "the create's answer could not be read" :
						   step_error(b, "creating the batch"));
			break;
		case STEP_POLL:
		case STEP_CANCEL:
			if (ok && llmgw_batch_parse_status(w, data, len, &st))
				record_batch(b, &st, false);
			else if (ok && step == STEP_CANCEL)
				b->next_at = 0;	/* an answer without the batch (Gemini): ask now */
			else
				note_error(b, ok ? "the provider's batch object could not be read" :
						   step_error(b, step == STEP_POLL ? "asking the batch's status" :
									  "cancelling the batch"));
			break;
		case STEP_OUTPUT:
		case STEP_ERRORS:
			if (b->t.too_large)
				note_error(b, psprintf("its results are larger than llmgw.batch_max_download (%d MB)",
									   llmgw_batch_max_download));
			else if (!ok)
				note_error(b, step_error(b, "downloading the results"));
			else if (!ingest_file(b, w, step == STEP_OUTPUT ? b->output_file : b->error_file,
								  b->t.download, &error))
				note_error(b, error);
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
	llmgw_http_transfer_release(&b->t);
	/* the batches that waited for this step's end go now */
	for (int i = 0; i < MAX_TRACKED; i++)
		if (tracked[i].used &&
			((file_step(step) && tracked[i].waiting_file) ||
			 ((step == STEP_CREATE || step == STEP_LIST) && tracked[i].waiting_create)))
		{
			tracked[i].waiting_file = tracked[i].waiting_create = false;
			tracked[i].next_at = 0;
		}
}

/*
 * Were batches queued or jobs cancelled (their commits counted in shared
 * memory, async.c) since worker 0 last looked at llmgw.batches?
 */
static bool
queued_or_cancelled(void)
{
	static uint64 seen = 0;
	uint64		now = pg_atomic_read_u64(&llmgw_shared->batches_queued) +
		pg_atomic_read_u64(&llmgw_shared->jobs_cancelled);

	if (now == seen)
		return false;
	seen = now;
	return true;
}

/*
 * Worker 0, every round: act on the batch transfers that ended, look at
 * llmgw.batches once a second and as soon as batches are queued or jobs
 * cancelled, and start the steps that are due.
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
	if (queued_or_cancelled())
		next_scan = 0;
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
	if (helpers && now >= TimestampTzPlusMilliseconds(helpers_idle_since, HELPERS_IDLE_MS))
		end_helpers();
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
	if (helpers)
		ms = Min(ms, TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
													 TimestampTzPlusMilliseconds(helpers_idle_since,
																				 HELPERS_IDLE_MS)));
	return Max(ms, 0);
}
