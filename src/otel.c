/*-------------------------------------------------------------------------
 *
 * otel.c
 *		OpenTelemetry spans of settled calls: one span per call and one
 *		child span per provider attempt, with the GenAI semantic
 *		conventions, exported over OTLP/HTTP JSON to the collector
 *		llmgw.otel_endpoint names.
 *
 * Spans are built by the worker once a call is settled and its caller
 * woken, and wait in the worker's own memory, at most llmgw.otel_max_queue
 * of them (beyond that they are dropped, and counted).  The export is a
 * transfer of the worker's own on its curl multi handle (http.c's
 * LlmgwTransfer), not a call: a POST of up to EXPORT_BATCH spans at a time,
 * one in flight per worker, with its own short timeout
 * (llmgw.otel_timeout).  The worker never waits for it, so a
 * slow or absent collector costs spans, never a call's time.  A failed
 * export is not retried: its spans are counted as failed.
 *
 * Nothing of a prompt, an answer, a provider message or a key goes into a
 * span: names of models and deployments, token counts, the finish reason,
 * the error class, the key's visible prefix, the team id and the cost.
 *
 * The counters (spans exported, dropped and failed, exports and failed
 * exports) are in shared memory for llmgw.otel_stats().
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <unistd.h>
#include <curl/curl.h>

#include "access/htup_details.h"
#include "common/hashfn.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "config.h"
#include "http.h"
#include "llmgw.h"
#include "otel.h"
#include "response.h"
#include "usage.h"

/* after the PostgreSQL headers: see jsonutil.h */
#include <jansson.h>

/* from utils/builtins.h, which cannot be included beside jansson.h */
extern int	pg_lltoa(int64 ll, char *a);
extern uint64 hex_encode(const char *src, size_t len, char *dst);

char	   *llmgw_otel_endpoint = NULL;
char	   *llmgw_otel_service_name = NULL;
int			llmgw_otel_max_queue = 2048;
int			llmgw_otel_timeout = 1000;

/* Spans in one export, at most (OpenTelemetry SDKs' default batch) */
#define EXPORT_BATCH 512

/* Longest a span waits for a batch to fill */
#define EXPORT_DELAY_MS 1000

/* Bytes of a collector's answer kept (for its partialSuccess) */
#define MAX_ANSWER 65536

/* Longest endpoint URL accepted */
#define MAX_ENDPOINT 2048

/* How often, at most, a worker logs failed exports */
#define COMPLAIN_EVERY_MS 60000

/* OTLP span kinds and status codes */
#define SPAN_KIND_INTERNAL 1
#define SPAN_KIND_CLIENT 3
#define STATUS_CODE_ERROR 2

/* The counters every worker adds to, and what each worker says of itself */
typedef struct OtelShared
{
	pg_atomic_uint64 spans_exported;
	pg_atomic_uint64 spans_dropped;
	pg_atomic_uint64 spans_failed;
	pg_atomic_uint64 exports;
	pg_atomic_uint64 export_failures;
	pg_atomic_uint32 queued[LLMGW_MAX_WORKERS]; /* spans waiting in each worker */
	pg_atomic_uint32 exporting[LLMGW_MAX_WORKERS];	/* spans in its export in flight */
	pg_atomic_uint32 on[LLMGW_MAX_WORKERS]; /* the worker has an endpoint */
} OtelShared;

static OtelShared *otel_shared = NULL;

/* This worker's queue of spans: compact OTLP JSON texts, malloc'd */
static int	my_worker = -1;
static char **queue = NULL;
static int	queue_cap = 0;
static int	queue_head = 0;
static int	queue_len = 0;
static TimestampTz queue_since = 0; /* when the oldest waiting span came */
static bool was_on = false;

/* The export in flight, if any: a transfer of the worker's own (http.c) */
typedef struct Export
{
	bool		running;
	int			nspans;
	LlmgwTransfer t;
} Export;

static Export export;

/* Failed exports not logged yet, and when the last were */
static uint64 unlogged_failures = 0;
static TimestampTz last_complaint = 0;

/*
 * llmgw.otel_endpoint: empty, or an http(s) URL without spaces or control
 * characters (the value is never echoed: it may hold credentials)
 */
static bool
endpoint_check(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (pg_strncasecmp(v, "http://", 7) != 0 && pg_strncasecmp(v, "https://", 8) != 0)
	{
		GUC_check_errdetail("llmgw.otel_endpoint must be empty or an http:// or https:// URL, such as http://127.0.0.1:4318.");
		return false;
	}
	if (strlen(v) > MAX_ENDPOINT)
	{
		GUC_check_errdetail("llmgw.otel_endpoint may be at most %d bytes long.", MAX_ENDPOINT);
		return false;
	}
	for (const unsigned char *p = (const unsigned char *) v; *p; p++)
	{
		if (*p <= ' ' || *p >= 0x7f)
		{
			GUC_check_errdetail("llmgw.otel_endpoint must not contain spaces, control characters or non-ASCII bytes.");
			return false;
		}
	}
	return true;
}

/* llmgw.otel_service_name: 1 to 255 bytes of UTF-8 without control characters */
static bool
service_name_check(char **newval, void **extra, GucSource source)
{
	const unsigned char *p = (const unsigned char *) *newval;

	if (p == NULL || *p == '\0' || strlen(*newval) > 255)
	{
		GUC_check_errdetail("llmgw.otel_service_name must be 1 to 255 bytes long.");
		return false;
	}
	while (*p)
	{
		int			n = *p < 0x80 ? 1 : pg_utf_mblen(p);

		if (*p < ' ' || *p == 0x7f)
		{
			GUC_check_errdetail("llmgw.otel_service_name must not contain control characters.");
			return false;
		}
		if (*p >= 0x80 && (strnlen((const char *) p, n) < n || !pg_utf8_islegal(p, n)))
		{
			GUC_check_errdetail("llmgw.otel_service_name must be UTF-8.");
			return false;
		}
		p += n;
	}
	return true;
}

/* Define the llmgw.otel_* settings (before the prefix is reserved) */
void
llmgw_otel_define_gucs(void)
{
	DefineCustomStringVariable("llmgw.otel_endpoint",
							   "OpenTelemetry collector the workers export call spans to (OTLP/HTTP JSON, POST to {endpoint}/v1/traces); empty: off.",
							   "See docs/tracing.md.",
							   &llmgw_otel_endpoint, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, endpoint_check, NULL, NULL);
	DefineCustomStringVariable("llmgw.otel_service_name",
							   "service.name of the exported spans' resource.",
							   NULL, &llmgw_otel_service_name, "llmgw",
							   PGC_SIGHUP, 0, service_name_check, NULL, NULL);
	DefineCustomIntVariable("llmgw.otel_max_queue",
							"Spans each worker keeps waiting for export; more are dropped and counted.",
							NULL, &llmgw_otel_max_queue, 2048, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("llmgw.otel_timeout",
							"Time allowed for one export to the OpenTelemetry collector; its spans are lost after it.",
							NULL, &llmgw_otel_timeout, 1000, 100, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
}

Size
llmgw_otel_shmem_size(void)
{
	return MAXALIGN(sizeof(OtelShared));
}

/* Create or attach to the counters (AddinShmemInitLock held) */
void
llmgw_otel_shmem_init(void)
{
	bool		found;

	otel_shared = ShmemInitStruct("llmgw otel", sizeof(OtelShared), &found);
	if (found)
		return;
	pg_atomic_init_u64(&otel_shared->spans_exported, 0);
	pg_atomic_init_u64(&otel_shared->spans_dropped, 0);
	pg_atomic_init_u64(&otel_shared->spans_failed, 0);
	pg_atomic_init_u64(&otel_shared->exports, 0);
	pg_atomic_init_u64(&otel_shared->export_failures, 0);
	for (int i = 0; i < LLMGW_MAX_WORKERS; i++)
	{
		pg_atomic_init_u32(&otel_shared->queued[i], 0);
		pg_atomic_init_u32(&otel_shared->exporting[i], 0);
		pg_atomic_init_u32(&otel_shared->on[i], 0);
	}
}

/* Is export configured? */
static bool
otel_on(void)
{
	return llmgw_otel_endpoint != NULL && llmgw_otel_endpoint[0] != '\0';
}

/* The worker exits: its spans are gone with it */
static void
otel_detach(int code, Datum arg)
{
	pg_atomic_write_u32(&otel_shared->queued[my_worker], 0);
	pg_atomic_write_u32(&otel_shared->exporting[my_worker], 0);
	pg_atomic_write_u32(&otel_shared->on[my_worker], 0);
}

/* A worker starts: its queue is empty */
void
llmgw_otel_start(int worker_index)
{
	my_worker = worker_index;
	pg_atomic_write_u32(&otel_shared->queued[my_worker], 0);
	pg_atomic_write_u32(&otel_shared->exporting[my_worker], 0);
	was_on = otel_on();
	pg_atomic_write_u32(&otel_shared->on[my_worker], was_on ? 1 : 0);
	before_shmem_exit(otel_detach, (Datum) 0);
}

/*
 * Span building: OTLP JSON written straight into a malloc'd buffer (a tree
 * of jansson objects per span cost the worker several times more).  No
 * ERROR is raised here: a failure to allocate drops the span.
 */

/* A span's JSON text as it is written */
typedef struct SpanText
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		failed;			/* out of memory: the span is dropped */
	int			nattrs;			/* attributes written so far */
} SpanText;

/* Make room for n more bytes (and a NUL) */
static bool
st_reserve(SpanText *b, size_t n)
{
	char	   *grown;
	size_t		cap;

	if (b->failed)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	cap = Max(b->cap * 2, b->len + n + 1);
	cap = Max(cap, 1024);
	grown = realloc(b->data, cap);
	if (grown == NULL)
	{
		b->failed = true;
		return false;
	}
	b->data = grown;
	b->cap = cap;
	return true;
}

static void
st_raw(SpanText *b, const char *s)
{
	size_t		n = strlen(s);

	if (!st_reserve(b, n))
		return;
	memcpy(b->data + b->len, s, n + 1);
	b->len += n;
}

static void
st_fmt(SpanText *b, const char *fmt,...) pg_attribute_printf(2, 3);

static void
st_fmt(SpanText *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	/* pieces are short: write into the room there is, measure only when it is too small */
	if (!st_reserve(b, 128))
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
	va_end(ap);
	if (n < 0)
	{
		b->data[b->len] = '\0';
		return;
	}
	if ((size_t) n >= b->cap - b->len)
	{
		if (!st_reserve(b, n))
			return;
		va_start(ap, fmt);
		vsnprintf(b->data + b->len, n + 1, fmt, ap);
		va_end(ap);
	}
	b->len += n;
}

/*
 * A JSON string of s: quotes, backslashes and control characters escaped,
 * and bytes that are not UTF-8 (a server encoding that is not) as '?'
 */
static void
st_str(SpanText *b, const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	if (!st_reserve(b, strlen(s) * 6 + 2))
		return;
	b->data[b->len++] = '"';
	while (*p)
	{
		if (*p == '"' || *p == '\\')
		{
			b->data[b->len++] = '\\';
			b->data[b->len++] = (char) *p++;
		}
		else if (*p < 0x20 || *p == 0x7f)
			b->len += sprintf(b->data + b->len, "\\u%04x", *p++);
		else if (*p < 0x80)
			b->data[b->len++] = (char) *p++;
		else
		{
			int			n = pg_utf_mblen(p);
			int			avail = strnlen((const char *) p, n);

			if (avail == n && pg_utf8_islegal(p, n))
			{
				memcpy(b->data + b->len, p, n);
				b->len += n;
				p += n;
			}
			else
			{
				b->data[b->len++] = '?';
				p++;
			}
		}
	}
	b->data[b->len++] = '"';
	b->data[b->len] = '\0';
}

/* Start an attribute: {"key":"<key>","value":{"<type>": */
static void
st_attr(SpanText *b, const char *key, const char *type)
{
	st_raw(b, b->nattrs++ ? ",{\"key\":\"" : "{\"key\":\"");
	st_raw(b, key);
	st_raw(b, "\",\"value\":{\"");
	st_raw(b, type);
	st_raw(b, "\":");
}

static void
add_text(SpanText *b, const char *key, const char *value)
{
	if (value == NULL)
		return;
	st_attr(b, key, "stringValue");
	st_str(b, value);
	st_raw(b, "}}");
}

/* An int64 attribute: OTLP JSON writes it as a decimal string */
static void
add_int(SpanText *b, const char *key, int64 value)
{
	char		digits[21];	/* MAXINT8LEN + 1 */

	pg_lltoa(value, digits);
	st_attr(b, key, "intValue");
	st_raw(b, "\"");
	st_raw(b, digits);
	st_raw(b, "\"}}");
}

static void
add_bool(SpanText *b, const char *key, bool value)
{
	st_attr(b, key, "boolValue");
	st_raw(b, value ? "true}}" : "false}}");
}

/* A cost in money units, as a number of the currency (15 significant digits) */
static void
add_money(SpanText *b, const char *key, int64 units)
{
	st_attr(b, key, "doubleValue");
	st_fmt(b, "%.15g}}", (double) units / LLMGW_MONEY_SCALE);
}

/* A string array of one element */
static void
add_text_array1(SpanText *b, const char *key, const char *value)
{
	if (value == NULL)
		return;
	st_attr(b, key, "arrayValue");
	st_raw(b, "{\"values\":[{\"stringValue\":");
	st_str(b, value);
	st_raw(b, "}]}}}");
}

/*
 * The span id of a call (attempt 0) or of one of its attempts: a hash of
 * the request id (the trace id), never 0, so that the same call always
 * gets the same ids
 */
static void
span_id(const pg_uuid_t *request_id, int attempt, char out[17])
{
	uint64		h = hash_bytes_extended(request_id->data, UUID_LEN, (uint64) attempt + 1);
	uint8		b[8];

	if (h == 0)
		h = 1;
	for (int i = 0; i < 8; i++)
		b[i] = (uint8) (h >> (56 - 8 * i));
	out[hex_encode((const char *) b, 8, out)] = '\0';
}

/* A time as OTLP has it: nanoseconds since the Unix epoch */
static int64
unix_micros(TimestampTz t)
{
	return t + (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
}

/* gen_ai.system of a provider kind */
static const char *
genai_system(const char *kind)
{
	if (kind == NULL)
		return NULL;
	if (strcmp(kind, "anthropic") == 0)
		return "anthropic";
	if (strcmp(kind, "gemini") == 0)
		return "gcp.gemini";
	if (strcmp(kind, "azure") == 0)
		return "az.ai.openai";
	/* openai, openai_responses and the servers that speak OpenAI's API */
	return "openai";
}

/* Start a span: ids, name, kind, times, and the attributes' array opened */
static void
span_begin(SpanText *b, const pg_uuid_t *request_id, int attempt, const char *op,
		   const char *model, int kind, TimestampTz start, TimestampTz end)
{
	char		trace[33];
	char		id[17];
	char		parent[17];
	char		name[512];
	char		nanos[21];

	/* plain appends: a formatted print costs more than the rest of the span */
	llmgw_uuid_text(request_id, trace, false);
	span_id(request_id, attempt, id);
	st_raw(b, "{\"traceId\":\"");
	st_raw(b, trace);
	st_raw(b, "\",\"spanId\":\"");
	st_raw(b, id);
	st_raw(b, "\"");
	if (attempt > 0)
	{
		span_id(request_id, 0, parent);
		st_raw(b, ",\"parentSpanId\":\"");
		st_raw(b, parent);
		st_raw(b, "\"");
	}
	strlcpy(name, op, sizeof(name));
	strlcat(name, " ", sizeof(name));
	strlcat(name, model ? model : "", sizeof(name));
	st_raw(b, ",\"name\":");
	st_str(b, name);
	pg_lltoa(kind, nanos);
	st_raw(b, ",\"kind\":");
	st_raw(b, nanos);
	pg_lltoa(unix_micros(start), nanos);
	st_raw(b, ",\"startTimeUnixNano\":\"");
	st_raw(b, nanos);
	pg_lltoa(unix_micros(end < start ? start : end), nanos);
	st_raw(b, "000\",\"endTimeUnixNano\":\"");
	st_raw(b, nanos);
	st_raw(b, "000\",\"attributes\":[");
}

/*
 * End a span: error.type and status ERROR with the error class when the
 * outcome is not a success
 */
static void
span_end(SpanText *b, const LlmgwOutcome *out)
{
	const char *error = NULL;

	if (out->status != LLMGW_STATUS_OK)
	{
		error = llmgw_error_class_name(out->error);
		if (error == NULL)
			error = "error";
		add_text(b, "error.type", error);
	}
	st_raw(b, "]");
	if (error)
	{
		st_fmt(b, ",\"status\":{\"code\":%d,\"message\":", STATUS_CODE_ERROR);
		st_str(b, error);
		st_raw(b, "}");
	}
	st_raw(b, "}");
}

/* The attributes a call and its attempts share */
static void
add_call_ids(SpanText *b, const LlmgwCall *call, const char *op)
{
	char		uuid[37];

	llmgw_uuid_text(&call->request_id, uuid, true);
	add_text(b, "gen_ai.operation.name", op);
	add_text(b, "llmgw.request_id", uuid);
	if (call->team_id != 0)
		add_int(b, "llmgw.team_id", call->team_id);
	if (call->key_id != 0)
		add_text(b, "llmgw.key_prefix", call->key_prefix);
	if (call->job_id != 0)
		add_int(b, "llmgw.job_id", call->job_id);
	if (call->async_id != 0)
		add_int(b, "llmgw.async_id", call->async_id);
}

/* "provider/upstream_model", as llmgw.usage.fallback_from names a deployment */
static void
add_deployment(SpanText *b, const char *provider, const char *upstream_model)
{
	char		buf[1024];

	if (provider == NULL || upstream_model == NULL)
		return;
	strlcpy(buf, provider, sizeof(buf));
	strlcat(buf, "/", sizeof(buf));
	strlcat(buf, upstream_model, sizeof(buf));
	add_text(b, "llmgw.deployment", buf);
	add_text(b, "llmgw.provider", provider);
}

/* The operation of a call, as gen_ai.operation.name has it */
static const char *
operation(const LlmgwCall *call)
{
	return call->kind == LLMGW_KIND_EMBED ? "embeddings" : "chat";
}

/* The span of one attempt that reached a provider */
static void
attempt_span(SpanText *b, const LlmgwCall *call, const LlmgwAttempt *a)
{
	span_begin(b, &call->request_id, a->number, operation(call), a->upstream_model,
			   SPAN_KIND_CLIENT, a->started_at, a->finished_at ? a->finished_at : a->started_at);
	add_call_ids(b, call, operation(call));
	add_text(b, "gen_ai.system", genai_system(a->route ? a->route->kind : NULL));
	add_text(b, "gen_ai.request.model", a->upstream_model);
	if (a->out.status == LLMGW_STATUS_OK)
		add_text(b, "gen_ai.response.model", a->upstream_model);
	if (a->out.tokens[LLMGW_TOKENS_INPUT] != LLMGW_TOKENS_UNKNOWN)
		add_int(b, "gen_ai.usage.input_tokens", a->out.tokens[LLMGW_TOKENS_INPUT]);
	if (a->out.tokens[LLMGW_TOKENS_OUTPUT] != LLMGW_TOKENS_UNKNOWN)
		add_int(b, "gen_ai.usage.output_tokens", a->out.tokens[LLMGW_TOKENS_OUTPUT]);
	add_text_array1(b, "gen_ai.response.finish_reasons", a->out.finish_reason);
	if (a->out.http_status != 0)
		add_int(b, "http.response.status_code", a->out.http_status);
	add_int(b, "llmgw.attempt", a->number);
	add_deployment(b, a->provider, a->upstream_model);
	add_text(b, "llmgw.fallback_from", a->fallback_from);
	add_text(b, "llmgw.status", llmgw_usage_status_name(a->out.status));
	add_bool(b, "llmgw.cache_hit", false);
	if (a->out.estimated)
		add_text(b, "llmgw.usage_source", "estimated");
	span_end(b, &a->out);
}

/* Sum of the known counts of a bucket over the attempts; false if none is known */
static bool
sum_tokens(const LlmgwAttempt *attempts, int n, LlmgwBucket bucket, int64 *sum)
{
	bool		known = false;

	*sum = 0;
	for (int i = 0; i < n; i++)
	{
		if (attempts[i].out.tokens[bucket] == LLMGW_TOKENS_UNKNOWN)
			continue;
		*sum += attempts[i].out.tokens[bucket];
		known = true;
	}
	return known;
}

/*
 * The span of the call: from when the worker took it to now, with the
 * tokens of all its attempts, its cost and its final outcome
 */
static void
call_span(SpanText *b, const LlmgwCall *call, const LlmgwAttempt *attempts, int n)
{
	const LlmgwAttempt *last = n > 0 ? &attempts[n - 1] : NULL;
	TimestampTz now = GetCurrentTimestamp();
	int64		tokens;

	span_begin(b, &call->request_id, 0, operation(call), call->model, SPAN_KIND_INTERNAL,
			   call->created_at ? call->created_at : now, now);
	add_call_ids(b, call, operation(call));
	add_text(b, "gen_ai.request.model", call->model);
	if (last)
	{
		add_text(b, "gen_ai.system", genai_system(last->route ? last->route->kind : NULL));
		if (call->out.status == LLMGW_STATUS_OK)
			add_text(b, "gen_ai.response.model", last->upstream_model);
		add_text_array1(b, "gen_ai.response.finish_reasons", last->out.finish_reason);
		add_int(b, "llmgw.attempt", last->number);
		add_deployment(b, last->provider, last->upstream_model);
	}
	if (sum_tokens(attempts, n, LLMGW_TOKENS_INPUT, &tokens))
		add_int(b, "gen_ai.usage.input_tokens", tokens);
	if (sum_tokens(attempts, n, LLMGW_TOKENS_OUTPUT, &tokens))
		add_int(b, "gen_ai.usage.output_tokens", tokens);
	if (call->cost_known)
	{
		add_money(b, "llmgw.cost", call->cost_units);
		add_text(b, "llmgw.currency", call->cost_currency);
	}
	add_text(b, "llmgw.status", llmgw_usage_status_name(call->out.status));
	add_bool(b, "llmgw.cache_hit", call->cache_hit);
	span_end(b, &call->out);
}

/* Publish the length of this worker's queue */
static void
publish_queued(void)
{
	pg_atomic_write_u32(&otel_shared->queued[my_worker], (uint32) queue_len);
}

/*
 * Queue a span (its text is taken over, and b emptied); dropped when the
 * queue is full or the span could not be written
 */
static void
enqueue(SpanText *b)
{
	bool		room = !b->failed && b->data != NULL && queue_len < llmgw_otel_max_queue;

	if (room && queue_len == queue_cap)
	{
		int			cap = Max(queue_cap * 2, 64);
		char	  **grown = malloc(sizeof(char *) * cap);

		if (grown != NULL)
		{
			for (int i = 0; i < queue_len; i++)
				grown[i] = queue[(queue_head + i) % queue_cap];
			free(queue);
			queue = grown;
			queue_cap = cap;
			queue_head = 0;
		}
		room = queue_len < queue_cap;
	}
	if (!room)
	{
		free(b->data);
		pg_atomic_fetch_add_u64(&otel_shared->spans_dropped, 1);
	}
	else
	{
		char	   *fit = realloc(b->data, b->len + 1);	/* it waits: no slack */

		if (queue_len == 0)
			queue_since = GetCurrentTimestamp();
		queue[(queue_head + queue_len) % queue_cap] = fit ? fit : b->data;
		queue_len++;
	}
	memset(b, 0, sizeof(*b));
}

/*
 * A call was settled (and its caller answered): queue its span and the
 * spans of its attempts that reached a provider (the attempts that have a
 * usage row).  Calls answered from the cache, or refused before any
 * provider, have the call's span alone.
 */
void
llmgw_otel_call(const LlmgwCall *call)
{
	LlmgwAttempt *attempts;
	int			n = 0;
	int			max = 1;
	dlist_iter	iter;
	SpanText	b;

	if (my_worker < 0 || !otel_on())
		return;
	dlist_foreach(iter, &((LlmgwCall *) call)->past_attempts)
		max++;
	attempts = calloc(max, sizeof(LlmgwAttempt));
	if (attempts == NULL)
	{
		pg_atomic_fetch_add_u64(&otel_shared->spans_dropped, max + 1);
		return;
	}
	dlist_foreach(iter, &((LlmgwCall *) call)->past_attempts)
	{
		LlmgwAttempt *a = dlist_container(LlmgwAttempt, node, iter.cur);

		if (a->reached_provider)
			attempts[n++] = *a;
	}
	if (call->reached_provider && !call->cache_hit)
		llmgw_call_attempt(call, &attempts[n++]);

	memset(&b, 0, sizeof(b));
	call_span(&b, call, attempts, n);
	enqueue(&b);
	for (int i = 0; i < n; i++)
	{
		attempt_span(&b, call, &attempts[i]);
		enqueue(&b);
	}
	free(attempts);
	publish_queued();
}

/* Drop every queued span (export was turned off) */
static void
drop_queue(void)
{
	pg_atomic_fetch_add_u64(&otel_shared->spans_dropped, queue_len);
	while (queue_len > 0)
	{
		free(queue[queue_head]);
		queue_head = (queue_head + 1) % queue_cap;
		queue_len--;
	}
	publish_queued();
}

/* Spans a successful answer says the collector rejected (partialSuccess) */
static int64
rejected_spans(void)
{
	json_t	   *root;
	json_t	   *r;
	int64		n = 0;

	if (export.t.response.data == NULL)
		return 0;
	root = json_loadb(export.t.response.data, export.t.response.len, 0, NULL);
	r = json_object_get(json_object_get(root, "partialSuccess"), "rejectedSpans");
	if (json_is_integer(r))
		n = json_integer_value(r);
	else if (json_is_string(r))
		n = strtoll(json_string_value(r), NULL, 10);
	json_decref(root);
	return Max(Min(n, (int64) export.nspans), 0);
}

/* Say, at most once a minute, that exports fail (never the endpoint: it may hold credentials) */
static void
complain(const char *why)
{
	TimestampTz now = GetCurrentTimestamp();

	unlogged_failures++;
	if (last_complaint != 0 &&
		!TimestampDifferenceExceeds(last_complaint, now, COMPLAIN_EVERY_MS))
		return;
	ereport(LOG,
			(errmsg("llmgw could not export spans to the OpenTelemetry collector: %s", why),
			 errdetail("%llu exports failed since this was last logged; their spans are lost.",
					   (unsigned long long) unlogged_failures)));
	unlogged_failures = 0;
	last_complaint = now;
}

/* The export in flight ended: count its spans, free it */
static void
finish_export(void)
{
	if (export.t.curl_result == CURLE_OK && export.t.http_status / 100 == 2)
	{
		int64		rejected = rejected_spans();

		pg_atomic_fetch_add_u64(&otel_shared->spans_exported, export.nspans - rejected);
		pg_atomic_fetch_add_u64(&otel_shared->spans_failed, rejected);
	}
	else
	{
		char		why[128];

		pg_atomic_fetch_add_u64(&otel_shared->export_failures, 1);
		pg_atomic_fetch_add_u64(&otel_shared->spans_failed, export.nspans);
		if (export.t.curl_result != CURLE_OK)
			snprintf(why, sizeof(why), "%s",
					 curl_easy_strerror((CURLcode) export.t.curl_result));
		else
			snprintf(why, sizeof(why), "HTTP status %ld", export.t.http_status);
		complain(why);
	}
	llmgw_http_transfer_release(&export.t);
	export.running = false;
	export.nspans = 0;
	pg_atomic_write_u32(&otel_shared->exporting[my_worker], 0);
}

/* The resource and scope of the spans, as the start of an OTLP export body */
static char *
export_head(void)
{
	char		host[256];
	SpanText	b;

	if (gethostname(host, sizeof(host)) != 0)
		strlcpy(host, "unknown", sizeof(host));
	host[sizeof(host) - 1] = '\0';
	memset(&b, 0, sizeof(b));
	st_raw(&b, "{\"resourceSpans\":[{\"resource\":{\"attributes\":[");
	add_text(&b, "service.name", llmgw_otel_service_name);
	add_text(&b, "service.version", LLMGW_SCHEMA_VERSION);
	add_text(&b, "host.name", host);
	add_int(&b, "process.pid", MyProcPid);
	st_raw(&b, "]},\"scopeSpans\":[{\"scope\":{\"name\":\"llmgw\",\"version\":\""
		   LLMGW_SCHEMA_VERSION "\"},\"spans\":[");
	if (b.failed)
	{
		free(b.data);
		return NULL;
	}
	return b.data;
}

/* The body of an export of the first n queued spans, or NULL */
static char *
export_body(int n, size_t *body_len)
{
	static const char tail[] = "]}]}]}";
	char	   *head = export_head();
	size_t		len;
	char	   *body;
	char	   *p;

	if (head == NULL)
		return NULL;
	len = strlen(head) + sizeof(tail);
	for (int i = 0; i < n; i++)
		len += strlen(queue[(queue_head + i) % queue_cap]) + 1;
	body = malloc(len);
	if (body == NULL)
	{
		free(head);
		return NULL;
	}
	p = body;
	p = stpcpy(p, head);
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			*p++ = ',';
		p = stpcpy(p, queue[(queue_head + i) % queue_cap]);
	}
	p = stpcpy(p, tail);
	*body_len = p - body;
	free(head);
	return body;
}

/* Start the POST of the first spans of the queue; they leave the queue */
static void
start_export(void)
{
	int			n = Min(queue_len, EXPORT_BATCH);
	char		url[MAX_ENDPOINT + 16];
	size_t		base_len = strlen(llmgw_otel_endpoint);
	size_t		body_len = 0;
	char	   *body;
	struct curl_slist *headers;

	while (base_len > 0 && llmgw_otel_endpoint[base_len - 1] == '/')
		base_len--;
	snprintf(url, sizeof(url), "%.*s/v1/traces", (int) base_len, llmgw_otel_endpoint);

	body = export_body(n, &body_len);
	headers = curl_slist_append(NULL, "Content-Type: application/json");
	if (headers)
		headers = curl_slist_append(headers, "Expect:");
	if (headers)
		headers = curl_slist_append(headers, "User-Agent: llmgw/" LLMGW_SCHEMA_VERSION);
	if (body == NULL || headers == NULL)
	{
		free(body);
		curl_slist_free_all(headers);
		return;					/* out of memory: the spans wait */
	}
	memset(&export, 0, sizeof(export));
	llmgw_http_transfer_start(&export.t, url, "POST", headers, body, NULL, 0, 0, NULL, MAX_ANSWER,
							  llmgw_otel_timeout);
	export.running = true;
	export.nspans = n;
	pg_atomic_fetch_add_u64(&otel_shared->exports, 1);
	pg_atomic_write_u32(&otel_shared->exporting[my_worker], (uint32) n);

	/* the spans are in the body now */
	for (int i = 0; i < n; i++)
	{
		free(queue[queue_head]);
		queue_head = (queue_head + 1) % queue_cap;
		queue_len--;
	}
	publish_queued();
}

/*
 * Once per worker round: start an export when none is in flight and a
 * batch is full or its oldest span has waited EXPORT_DELAY_MS; drop the
 * queue when export was turned off.
 */
void
llmgw_otel_export(void)
{
	bool		on;

	if (my_worker < 0)
		return;
	if (export.running && export.t.done)
		finish_export();
	on = otel_on();
	if (on != was_on)
	{
		was_on = on;
		pg_atomic_write_u32(&otel_shared->on[my_worker], on ? 1 : 0);
	}
	if (!on)
	{
		if (queue_len > 0)
			drop_queue();
		return;
	}
	if (export.running || queue_len == 0)
		return;
	if (queue_len < EXPORT_BATCH &&
		!TimestampDifferenceExceeds(queue_since, GetCurrentTimestamp(), EXPORT_DELAY_MS))
		return;
	start_export();
}

/* Milliseconds until llmgw_otel_export has work to start; -1: none */
long
llmgw_otel_timeout_ms(void)
{
	long		ms;

	if (my_worker < 0 || export.running || queue_len == 0)
		return -1;
	if (queue_len >= EXPORT_BATCH)
		return 0;
	ms = EXPORT_DELAY_MS -
		TimestampDifferenceMilliseconds(queue_since, GetCurrentTimestamp());
	return Max(ms, 0);
}

/* Spans exported, dropped and failed since the server life began */
void
llmgw_otel_span_counts(uint64 *exported, uint64 *dropped, uint64 *failed)
{
	*exported = pg_atomic_read_u64(&otel_shared->spans_exported);
	*dropped = pg_atomic_read_u64(&otel_shared->spans_dropped);
	*failed = pg_atomic_read_u64(&otel_shared->spans_failed);
}

PG_FUNCTION_INFO_V1(llmgw_otel_stats);

/*
 * llmgw.otel_stats() -> (enabled, spans_queued, spans_exporting,
 *                        spans_exported, spans_dropped, spans_failed,
 *                        exports, export_failures), since the server life
 *                        began
 */
Datum
llmgw_otel_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[8];
	bool		nulls[8] = {false, false, false, false, false, false, false, false};
	bool		enabled = false;
	int64		queued = 0;
	int64		exporting = 0;
	uint64		exported;
	uint64		dropped;
	uint64		failed;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "llmgw.otel_stats must return a record");
	for (int i = 0; i < LLMGW_MAX_WORKERS; i++)
	{
		enabled |= pg_atomic_read_u32(&otel_shared->on[i]) != 0;
		queued += pg_atomic_read_u32(&otel_shared->queued[i]);
		exporting += pg_atomic_read_u32(&otel_shared->exporting[i]);
	}
	values[0] = BoolGetDatum(enabled);
	values[1] = Int64GetDatum(queued);
	values[2] = Int64GetDatum(exporting);
	llmgw_otel_span_counts(&exported, &dropped, &failed);
	values[3] = Int64GetDatum((int64) exported);
	values[4] = Int64GetDatum((int64) dropped);
	values[5] = Int64GetDatum((int64) failed);
	values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&otel_shared->exports));
	values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&otel_shared->export_failures));
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
