/*-------------------------------------------------------------------------
 *
 * frontdoor.c
 *		The HTTP front door: every worker serves the OpenAI and Anthropic
 *		APIs on llmgw.http_listen (libmicrohttpd), and runs the calls it
 *		receives itself, through the same admission, routing, cache, usage
 *		rows and budgets as a call of SQL.
 *
 * The daemon runs in the worker's own event loop: its epoll descriptor sits
 * in the worker's WaitEventSet beside curl's, and MHD_run() is called when
 * it is readable, so one thread serves clients and providers and never
 * blocks.  Every worker listens on the same address (SO_REUSEPORT): the
 * kernel spreads the connections.
 *
 * A request becomes a call at once: it takes a request slot of its own
 * (llmgw_slot_claim, counted against its key's fair share), and its
 * connection is suspended until the call is settled, that is, until its
 * usage row is committed.  A streamed answer is forwarded event by event
 * as the provider sends it (the provider's stream_text reads each event's
 * text); once a byte has reached the client the call may not move to
 * another attempt.  A client that leaves cancels its call: the transfer is
 * aborted and the usage row says cancelled.
 *
 * Secrets: the virtual key is hashed at once and never logged; nothing of
 * a request is logged.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>
#include <microhttpd.h>
#include <netdb.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "config.h"
#include "frontdoor.h"
#include "frontdoor_anthropic.h"
#include "frontdoor_responses.h"
#include "frontdoor_openai.h"
#include "http.h"
#include "jsonutil.h"
#include "policy.h"
#include "queue.h"
#include "response.h"
#include "sse.h"
#include "txn.h"
#include "provider.h"

char	   *llmgw_http_listen = NULL;
char	   *llmgw_http_tls_cert = NULL;
char	   *llmgw_http_tls_key = NULL;
int			llmgw_http_max_connections = 1024;
int			llmgw_http_max_body = 8 * 1024 * 1024;
int			llmgw_http_idle_timeout = 60;

/*
 * The memory of a connection: its request header block must fit (MHD
 * answers 431 beyond).  MHD clears it between two requests of a
 * connection, so a larger one costs every request: 32 kB, MHD's default,
 * and twice what Node.js allows.
 */
#define HEADER_MEMORY (32 * 1024)

typedef enum FrontEndpoint
{
	FRONT_CHAT,					/* POST /v1/chat/completions */
	FRONT_MESSAGES,				/* POST /v1/messages */
	FRONT_RESPONSES,			/* POST /v1/responses */
	FRONT_EMBEDDINGS,			/* POST /v1/embeddings */
	FRONT_MODELS,				/* GET /v1/models */
	FRONT_MODEL,				/* GET /v1/models/{id} */
	FRONT_HEALTH,				/* GET /health */
	FRONT_METRICS,				/* GET /metrics: llmgw.metrics(), scope metrics */
	FRONT_SPEND,				/* GET /spend: llmgw.spend_report(), scope finance */
	FRONT_NOT_FOUND,
	FRONT_BAD_METHOD
} FrontEndpoint;

/* One client request, from its first header to its last byte */
/*
 * One client connection, from accept to close.  libmicrohttpd does not
 * watch a suspended connection, nor notice a client that closed once its
 * bytes were read, and restarts its idle timer at every byte: the front
 * door watches every connection for the client's end of it (EPOLLRDHUP)
 * and gives each request a deadline to arrive whole.
 */
typedef struct FrontConn
{
	dlist_node	node;
	int			fd;
	TimestampTz deadline;		/* a request must have arrived whole by then;
								 * 0 while one is being answered */
	struct LlmgwFrontRequest *r;	/* the request of the moment, or NULL */
} FrontConn;

typedef struct LlmgwFrontRequest
{
	struct MHD_Connection *conn;
	FrontConn  *fc;
	bool		gone;			/* the client left while it waited */
	MemoryContext cxt;
	FrontEndpoint endpoint;
	const char *path;
	StringInfoData body;
	bool		body_too_large;
	bool		dispatched;
	LlmgwCall  *call;			/* the call in flight, or NULL */
	bool		suspended;		/* waits in the access handler for its call */
	struct MHD_Response *ready; /* to queue when the handler runs again */
	unsigned int status;

	/* what the answer needs */
	char	   *model;			/* the alias the client asked for */
	char		id[64];			/* chatcmpl-..., msg_... */
	int64		created;
	bool		stream;
	bool		include_usage;
	bool		base64;			/* embeddings as base64 */

	/* a streamed answer */
	bool		sse;			/* its response is under way */
	StringInfoData out;			/* bytes not yet taken by MHD */
	size_t		out_sent;
	bool		out_done;		/* nothing follows what is in out */
	bool		parked;			/* suspended in the reader, waiting for bytes */
	size_t		consumed;		/* bytes of the provider's stream translated */
	int			consumed_attempt;
	StringInfoData streamed;	/* the text sent so far */
	StringInfoData delta;		/* text of the events at hand, not sent yet */
	struct StreamTool *tools;	/* the tool calls the events told of */
	int			ntools;
	int			nstarted;		/* of them, sent to the client */
	bool		reasoned;		/* some extended thinking was sent */
	LlmgwAnthropicStream anthropic;
	LlmgwResponsesStream responses;
} LlmgwFrontRequest;

/* A tool call of a streamed answer, as the provider's events told it */
typedef struct StreamTool
{
	int			key;			/* the provider's index of it; -1: none */
	int			ordinal;		/* its place among the answer's tool calls, once
								 * its start was sent; -1 before */
	int			block;			/* the client's tool_use block (Anthropic) */
	StringInfoData args;		/* its arguments received */
	size_t		sent;			/* bytes of them sent */
} StreamTool;

/* The tool calls of one answer followed as they stream; the others go whole at its end */
#define MAX_STREAM_TOOLS 128

typedef LlmgwFrontRequest FrontRequest;

static struct MHD_Daemon *daemon_handle = NULL;
static int	watch_fd = -1;		/* epoll set of the client connections */
static dlist_head connections = DLIST_STATIC_INIT(connections);
static int	connections_closed;	/* during one MHD_run() */
static int	my_worker;
static uint64 my_generation;
static dlist_head *created_calls = NULL;	/* during llmgw_frontdoor_run */

static bool
is_anthropic(const FrontRequest *r)
{
	return r->endpoint == FRONT_MESSAGES;
}

/* Does the client speak the Responses API? */
static bool
is_responses(const FrontRequest *r)
{
	return r->endpoint == FRONT_RESPONSES;
}

/* Add the route and billing proof of the request's call to a response */
static void
add_proof_headers(struct MHD_Response *resp, LlmgwCall *call)
{
	char		id[LLMGW_UUID_TEXT_LEN];
	char		buf[64];

	llmgw_uuid_text(&call->request_id, id, true);
	MHD_add_response_header(resp, "x-request-id", id);
	MHD_add_response_header(resp, "request-id", id);	/* what Anthropic's SDKs read */
	if (call->provider && call->upstream_model)
	{
		char	   *deployment = psprintf("%s/%s", call->provider, call->upstream_model);

		MHD_add_response_header(resp, "x-llmgw-deployment", deployment);
		pfree(deployment);
	}
	snprintf(buf, sizeof(buf), "%d", call->attempt);
	MHD_add_response_header(resp, "x-llmgw-attempts", buf);
	if (call->cache_hit)
		MHD_add_response_header(resp, "x-llmgw-cache", "hit");
	if (call->cost_known)
	{
		snprintf(buf, sizeof(buf), "%.10f", (double) call->cost_units / LLMGW_MONEY_SCALE);
		MHD_add_response_header(resp, "x-llmgw-cost", buf);
		MHD_add_response_header(resp, "x-llmgw-currency", call->cost_currency);
	}
}

/* The proof as JSON, for the end of a stream */
static char *
proof_json(LlmgwCall *call)
{
	char		id[LLMGW_UUID_TEXT_LEN];
	json_t	   *p;
	char	   *text;

	llmgw_uuid_text(&call->request_id, id, true);
	p = json_pack("{s:s, s:i, s:b}", "request_id", id, "attempts", call->attempt,
				  "cache_hit", call->cache_hit);
	if (call->provider && call->upstream_model)
		json_object_set_new(p, "deployment",
							json_string(psprintf("%s/%s", call->provider, call->upstream_model)));
	if (call->cost_known)
	{
		json_object_set_new(p, "cost",
							json_string(psprintf("%.10f", (double) call->cost_units / LLMGW_MONEY_SCALE)));
		json_object_set_new(p, "currency", json_string(call->cost_currency));
	}
	text = llmgw_json_dump(p);
	json_decref(p);
	return text;
}

/* Make the response the handler queues when it runs again */
static void
reply(FrontRequest *r, unsigned int status, const char *body, LlmgwCall *call)
{
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(strlen(body), (void *) body, MHD_RESPMEM_MUST_COPY);

	if (resp == NULL)
		return;					/* out of memory: MHD closes the connection */
	MHD_add_response_header(resp, "Content-Type", "application/json");
	if (call)
		add_proof_headers(resp, call);
	if (r->ready)
		MHD_destroy_response(r->ready);
	r->ready = resp;
	r->status = status;
}

/* A copy of s with every byte that is not part of valid UTF-8 as '?' */
static char *
utf8_clean(const char *s)
{
	char	   *copy = pstrdup(s);
	unsigned char *p = (unsigned char *) copy;

	while (*p)
	{
		int			len = pg_utf_mblen(p);

		if (!pg_utf8_islegal(p, len) || strnlen((char *) p, len) < (size_t) len)
		{
			*p++ = '?';
			continue;
		}
		p += len;
	}
	return copy;
}

/* Is an error with this code worth the client's retry? */
static bool
code_retryable(const char *code)
{
	static const char *const transient[] = {
		"connection", "timeout", "server", "overloaded", "broken_stream", "rate_limit",
		"local_rate_limit", "share_exceeded", "gateway_full", "interrupted"
	};

	for (int i = 0; i < lengthof(transient); i++)
		if (strcmp(code, transient[i]) == 0)
			return true;
	return false;
}

/* An error in the envelope of the client's API, with a stable code */
static void
reply_error(FrontRequest *r, unsigned int status, const char *code, const char *message,
			double retry_after_s, LlmgwCall *call)
{
	char	   *body;

	/* a provider's message may not be UTF-8: JSON must be */
	message = utf8_clean(message);

	if (is_anthropic(r))
	{
		json_t	   *e = json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "error", "error",
								  "type", llmgw_anthropic_error_type(status),
								  "message", message, "code", code);

		body = llmgw_json_dump(e);
		json_decref(e);
	}
	else
		body = llmgw_openai_error(status, code, message);
	reply(r, status, body, call);
	if (r->ready && retry_after_s >= 0)
	{
		char		secs[32];

		snprintf(secs, sizeof(secs), "%.0f", ceil(Max(retry_after_s, 1)));
		MHD_add_response_header(r->ready, "Retry-After", secs);
	}
	if (r->ready)
	{
		MHD_add_response_header(r->ready, "x-llmgw-error-code", code);
		/* the SDKs retry what this says, not every 429 and 5xx */
		MHD_add_response_header(r->ready, "x-should-retry", code_retryable(code) ? "true" : "false");
	}
}

/* The virtual key of the request (Bearer, or x-api-key) as its hash */
static bool
authenticate(FrontRequest *r, uint8 *hash)
{
	const char *auth = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
												   MHD_HTTP_HEADER_AUTHORIZATION);
	const char *key = NULL;

	if (auth && pg_strncasecmp(auth, "Bearer ", 7) == 0)
		key = auth + 7;
	else
		key = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "x-api-key");
	while (key && *key == ' ')
		key++;
	if (key == NULL || *key == '\0')
	{
		reply_error(r, 401, "missing_key",
					is_anthropic(r) ? "no virtual key: send it in the x-api-key header" :
					"no virtual key: send it as Authorization: Bearer <key>", -1, NULL);
		return false;
	}
	(void) llmgw_api_key_hash(key, strlen(key), hash);
	return true;
}

/* GET /v1/models and /v1/models/{id}: the aliases the key may call */
static void
serve_models(FrontRequest *r)
{
	uint8		hash[LLMGW_KEY_HASH_LEN];
	int			n;
	char	  **aliases;
	int			kept = 0;

	if (!authenticate(r, hash))
		return;
	if (llmgw_policy_key_may(hash, NULL) != LLMGW_ERR_NONE)
	{
		reply_error(r, 401, "invalid_key", "invalid virtual key", -1, NULL);
		return;
	}
	aliases = llmgw_config_aliases(&n);
	for (int i = 0; i < n; i++)
		if (llmgw_policy_key_may(hash, aliases[i]) == LLMGW_ERR_NONE)
			aliases[kept++] = aliases[i];
	if (r->endpoint == FRONT_MODELS)
	{
		reply(r, 200, llmgw_openai_models(aliases, kept), NULL);
		return;
	}
	for (int i = 0; i < kept; i++)
	{
		if (strcmp(aliases[i], r->path + strlen("/v1/models/")) == 0)
		{
			reply(r, 200, llmgw_openai_model(aliases[i]), NULL);
			return;
		}
	}
	reply_error(r, 404, "unknown_model",
				psprintf("model \"%s\" does not exist or this key may not use it",
						 r->path + strlen("/v1/models/")), -1, NULL);
}

/* GET /health: the workers are up and take calls */
static void
serve_health(FrontRequest *r)
{
	int			workers,
				queued,
				running;
	uint64		total;
	json_t	   *h;

	llmgw_queue_counts(&workers, &queued, &running, &total);
	h = json_pack("{s:s, s:i, s:i, s:i}", "status", "ok", "workers", workers,
				  "calls_queued", queued, "calls_in_flight", running);
	reply(r, 200, llmgw_json_dump(h), NULL);
	json_decref(h);
}

/* A query whose one text value is the answer of a GET */
typedef struct TextQuery
{
	const char *sql;
	int			nargs;
	Oid			types[3];
	Datum		args[3];
	char		nulls[3];
	MemoryContext cxt;			/* where the result goes */
	char	   *result;
	int			sqlstate;		/* of the error the query raised, or 0 */
	char	   *message;		/* and its message */
} TextQuery;

/* The query itself */
static void
text_query(void *arg)
{
	TextQuery  *q = arg;

	if (SPI_execute_with_args(q->sql, q->nargs, q->types, q->args, q->nulls, true, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v)
			q->result = MemoryContextStrdup(q->cxt, v);
	}
}

/* Run the query in a subtransaction: its error is the client's answer */
static void
run_text_query(void *arg)
{
	TextQuery  *q = arg;
	MemoryContext old = MemoryContextSwitchTo(q->cxt);

	(void) llmgw_in_subtransaction(text_query, q, &q->message, &q->sqlstate);
	MemoryContextSwitchTo(old);
}

/* utils/fmgrprotos.h would clash with jansson's json_object() */
extern Datum timestamptz_in(PG_FUNCTION_ARGS);

/* A query-string timestamp as a timestamptz Datum; false if it is not one */
static bool
timestamp_arg(FrontRequest *r, const char *name, TextQuery *q, int i)
{
	const char *v = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
	volatile bool ok = true;
	MemoryContext cxt = CurrentMemoryContext;

	q->types[i] = TIMESTAMPTZOID;
	q->nulls[i] = ' ';
	if (v == NULL || *v == '\0')
	{
		q->nulls[i] = 'n';
		return true;
	}
	PG_TRY();
	{
		q->args[i] = DirectFunctionCall3(timestamptz_in, CStringGetDatum(v),
										 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	if (!ok)
		reply_error(r, 400, "invalid_request",
					psprintf("%s must be a timestamp, such as 2026-11-01", name), -1, NULL);
	return ok;
}

/*
 * GET /metrics (a key with scope metrics): llmgw.metrics(), Prometheus's
 * text format.  GET /spend?from=&to=&team= (scope finance): the HTML spend
 * report, this month by default.  Both run as the workers' role, in a short
 * transaction of the worker.
 */
static void
serve_report(FrontRequest *r)
{
	uint8		hash[LLMGW_KEY_HASH_LEN];
	int			scopes;
	bool		metrics = r->endpoint == FRONT_METRICS;
	int			need = metrics ? LLMGW_KEY_SCOPE_METRICS : LLMGW_KEY_SCOPE_FINANCE;
	TextQuery	q;
	struct MHD_Response *resp;

	if (!authenticate(r, hash))
		return;
	scopes = llmgw_policy_key_scopes(hash);
	if (scopes < 0)
	{
		reply_error(r, 401, "invalid_key", "invalid virtual key", -1, NULL);
		return;
	}
	if ((scopes & need) == 0)
	{
		reply_error(r, 403, "not_allowed",
					psprintf("this key has no scope %s (llmgw.set_key_scopes)",
							 metrics ? "metrics" : "finance"), -1, NULL);
		return;
	}
	memset(&q, 0, sizeof(q));
	q.cxt = r->cxt;
	if (metrics)
		q.sql = "SELECT llmgw.metrics()";
	else
	{
		const char *team = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "team");

		/* this month by default, in UTC like the report's days */
		q.sql = "SELECT llmgw.spend_report(coalesce($1, pg_catalog.date_trunc('month', pg_catalog.now(), 'UTC')),"
			" coalesce($2, pg_catalog.now()), $3)";
		q.nargs = 3;
		if (!timestamp_arg(r, "from", &q, 0) || !timestamp_arg(r, "to", &q, 1))
			return;
		q.types[2] = TEXTOID;
		q.args[2] = llmgw_text_or_null(team && *team ? team : NULL, q.nulls, 2);
		if (q.nulls[2] != 'n')
			q.nulls[2] = ' ';
	}
	if (llmgw_in_transaction(metrics ? "llmgw: front door /metrics" : "llmgw: front door /spend",
							 run_text_query, &q) && q.sqlstate != 0)
	{
		/* the report's own refusals: a bad period, an unknown team */
		if (ERRCODE_TO_CATEGORY(q.sqlstate) == ERRCODE_DATA_EXCEPTION)
			reply_error(r, 400, "invalid_request", q.message, -1, NULL);
		else if (q.sqlstate == ERRCODE_UNDEFINED_OBJECT)
			reply_error(r, 404, "not_found", q.message, -1, NULL);
		else
			reply_error(r, 500, "internal_error",
						"the report could not be made; see the server log", -1, NULL);
		if (q.sqlstate != ERRCODE_UNDEFINED_OBJECT &&
			ERRCODE_TO_CATEGORY(q.sqlstate) != ERRCODE_DATA_EXCEPTION)
			ereport(WARNING,
					(errmsg("llmgw front door: %s: %s", r->path, q.message)));
		return;
	}
	if (q.result == NULL)
	{
		reply_error(r, 500, "internal_error",
					"the report could not be made; see the server log", -1, NULL);
		return;
	}
	resp = MHD_create_response_from_buffer(strlen(q.result), q.result, MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return;
	MHD_add_response_header(resp, "Content-Type", metrics ? "text/plain; version=0.0.4; charset=utf-8" :
							"text/html; charset=utf-8");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	if (!metrics)
		MHD_add_response_header(resp, "Content-Security-Policy",
								"default-src 'none'; style-src 'unsafe-inline'");
	r->ready = resp;
	r->status = 200;
}

/* Merge a JSON object's members into tags */
static void
tags_merge(json_t *tags, json_t *obj)
{
	const char *k;
	json_t	   *v;

	json_object_foreach(obj, k, v)
		json_object_set(tags, k, v);
}

/*
 * The tags of the call's usage row: the x-llmgw-tags header (a JSON
 * object), then OpenAI's user and metadata.  False (with the reply made)
 * when they are not acceptable.
 */
static bool
client_tags(FrontRequest *r, json_t *root, char **tags_text)
{
	const char *header = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "x-llmgw-tags");
	json_t	   *tags = json_pack("{}");
	json_t	   *user = json_object_get(root, "user");
	json_t	   *metadata = json_object_get(root, "metadata");

	*tags_text = NULL;
	if (header)
	{
		json_t	   *h = llmgw_json_load(header, strlen(header), NULL);

		if (!json_is_object(h))
		{
			json_decref(h);
			json_decref(tags);
			reply_error(r, 400, "invalid_tags", "the x-llmgw-tags header must be a JSON object", -1, NULL);
			return false;
		}
		tags_merge(tags, h);
		json_decref(h);
	}
	if (json_is_string(user))
		json_object_set(tags, "user", user);
	if (json_is_object(metadata) && !is_anthropic(r))
		tags_merge(tags, metadata);
	if (json_object_size(tags) > 0)
	{
		*tags_text = llmgw_json_dump(tags);
		if (strlen(*tags_text) > LLMGW_MAX_TAGS)
		{
			json_decref(tags);
			reply_error(r, 400, "invalid_tags",
						psprintf("the tags (x-llmgw-tags, user, metadata) are longer than %d bytes",
								 LLMGW_MAX_TAGS), -1, NULL);
			return false;
		}
	}
	json_decref(tags);
	return true;
}

/* A token array: a non-empty array of integers from 0 to 2^31 - 1 */
static bool
token_array(json_t *v)
{
	size_t		i;
	json_t	   *t;

	if (!json_is_array(v) || json_array_size(v) == 0)
		return false;
	json_array_foreach(v, i, t)
	{
		if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) > PG_INT32_MAX)
			return false;
	}
	return true;
}

/*
 * An OpenAI embeddings request as llmgw's: {"input": [inputs],
 * "dimensions"?}, an input a string or a token array (which OpenAI-shaped
 * deployments take as they are, Gemini refuses)
 */
static char *
embeddings_request(FrontRequest *r, json_t *root, char **error)
{
	json_t	   *input = json_object_get(root, "input");
	json_t	   *dims = json_object_get(root, "dimensions");
	const char *format = json_string_value(json_object_get(root, "encoding_format"));
	json_t	   *req;
	char	   *text;
	size_t		i;
	json_t	   *v;
	size_t		strings = 0;

	if (format && strcmp(format, "base64") != 0 && strcmp(format, "float") != 0)
	{
		*error = pstrdup("encoding_format must be \"float\" or \"base64\"");
		return NULL;
	}
	r->base64 = format && strcmp(format, "base64") == 0;
	if (json_is_string(input) || token_array(input))
		req = json_pack("{s:[O]}", "input", input);
	else if (json_is_array(input) && json_array_size(input) > 0)
	{
		json_array_foreach(input, i, v)
		{
			strings += json_is_string(v);
			if (!json_is_string(v) && !token_array(v))
			{
				*error = pstrdup("input must be a string, an array of strings, a token array or an array of token arrays");
				return NULL;
			}
		}
		if (strings > 0 && strings < json_array_size(input))
		{
			*error = pstrdup("input mixes strings and token arrays");
			return NULL;
		}
		req = json_pack("{s:O}", "input", input);
	}
	else
	{
		*error = pstrdup("input must be a string, a token array or a non-empty array of either");
		return NULL;
	}
	if (dims && !json_is_integer(dims))
	{
		json_decref(req);
		*error = pstrdup("dimensions must be an integer");
		return NULL;
	}
	if (dims)
		json_object_set(req, "dimensions", dims);
	text = llmgw_json_dump(req);
	json_decref(req);
	return text;
}

/*
 * The body of a call as llmgw takes it, from the client's request; NULL
 * with *error when the request is malformed
 */
static char *
call_body(FrontRequest *r, json_t *root, char **error)
{
	json_t	   *model = json_object_get(root, "model");
	json_t	   *n = json_object_get(root, "n");

	if (!json_is_string(model) || json_string_length(model) == 0)
	{
		*error = pstrdup("model is required");
		return NULL;
	}
	r->model = pstrdup(json_string_value(model));
	if (r->endpoint == FRONT_EMBEDDINGS)
		return embeddings_request(r, root, error);
	if (n && !(json_is_integer(n) && json_integer_value(n) == 1))
	{
		*error = pstrdup("n other than 1 is not supported");
		return NULL;
	}
	r->stream = json_is_true(json_object_get(root, "stream"));
	r->include_usage = json_is_true(json_object_get(json_object_get(root, "stream_options"),
													"include_usage"));
	json_object_del(root, "model");
	return llmgw_json_dump(root);
}

/*
 * POST /v1/chat/completions, /v1/messages, /v1/embeddings: make the call,
 * and suspend the connection until it is settled
 */
static void
start_call(FrontRequest *r, dlist_head *created)
{
	uint8		hash[LLMGW_KEY_HASH_LEN];
	const char *ctype = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND,
													MHD_HTTP_HEADER_CONTENT_TYPE);
	json_t	   *root = NULL;
	char	   *body = NULL;
	char	   *tags = NULL;
	char	   *error = NULL;
	LlmgwRequest header;
	dsa_pointer request;
	int			slotno;
	LlmgwCall  *call;
	char		hex[LLMGW_UUID_TEXT_LEN];

	if (!authenticate(r, hash))
		return;
	if (r->body_too_large)
	{
		reply_error(r, 413, "request_too_large",
					psprintf("the request body is larger than llmgw.http_max_body (%d bytes)",
							 llmgw_http_max_body), -1, NULL);
		return;
	}
	if (ctype == NULL || pg_strncasecmp(ctype, "application/json", 16) != 0)
	{
		reply_error(r, 415, "unsupported_media_type",
					"the request body must be JSON (Content-Type: application/json)", -1, NULL);
		return;
	}
	if (is_anthropic(r) || is_responses(r))
	{
		char	   *model = NULL;

		body = is_anthropic(r) ?
			llmgw_anthropic_to_chat(r->body.data, r->body.len, &model, &r->stream, &error) :
			llmgw_responses_to_chat(r->body.data, r->body.len, &model, &r->stream, &error);
		r->model = model;
		r->include_usage = true;
		if (body)
			root = llmgw_json_load(body, strlen(body), NULL);
	}
	else
	{
		root = llmgw_json_load(r->body.data, r->body.len, NULL);
		if (!json_is_object(root))
			error = pstrdup("the request body is not a JSON object");
		else
			body = call_body(r, root, &error);
	}
	if (error || root == NULL)
	{
		json_decref(root);
		reply_error(r, 400, "invalid_request", error ? error : "the request could not be read", -1, NULL);
		return;
	}
	if (!client_tags(r, root, &tags))
	{
		json_decref(root);
		return;
	}
	/*
	 * a Responses request's metadata is tags only: Chat Completions takes
	 * metadata only for stored completions
	 */
	if (is_responses(r) && json_object_get(root, "metadata"))
	{
		json_object_del(root, "metadata");
		body = llmgw_json_dump(root);
	}

	memset(&header, 0, sizeof(header));
	header.kind = r->endpoint == FRONT_EMBEDDINGS ? LLMGW_KIND_EMBED : LLMGW_KIND_CHAT_JSON;
	/* from the tree at hand: the call need not parse its body again for it */
	if (header.kind != LLMGW_KIND_EMBED)
		header.max_output_tokens = llmgw_json_output_bound(root);
	json_decref(root);
	llmgw_call_settings_current(&header.settings);
	header.has_key = true;
	memcpy(header.key_hash, hash, sizeof(header.key_hash));
	request = llmgw_request_create(&header, "", r->model, body, strlen(body), tags);
	slotno = llmgw_slot_claim(request, my_worker, my_generation);
	if (slotno < 0)
	{
		dsa_free(llmgw_dsa(), request);
		if (slotno == LLMGW_SHARE_FULL)
			reply_error(r, 429, "share_exceeded",
						"this key holds its whole share of the llmgw gateway (llmgw.max_share)", 1, NULL);
		else
			reply_error(r, 503, "gateway_full",
						"every request slot of the llmgw gateway is in use (llmgw.queue_size)", 1, NULL);
		return;
	}
	call = llmgw_call_create(slotno, TopMemoryContext);
	call->role = NULL;			/* a key's call: no database role */
	call->front = r;
	r->call = call;
	r->created = (int64) time(NULL);
	llmgw_uuid_text(&call->request_id, hex, false);
	snprintf(r->id, sizeof(r->id), "%s%s",
			 is_anthropic(r) ? "msg_" : is_responses(r) ? "resp_" : "chatcmpl-", hex);
	dlist_push_tail(created, &call->node);
}

/* Serve a complete request: a reply now, or a call */
static void
dispatch(FrontRequest *r)
{
	switch (r->endpoint)
	{
		case FRONT_HEALTH:
			serve_health(r);
			break;
		case FRONT_METRICS:
		case FRONT_SPEND:
			serve_report(r);
			break;
		case FRONT_MODELS:
		case FRONT_MODEL:
			serve_models(r);
			break;
		case FRONT_CHAT:
		case FRONT_MESSAGES:
		case FRONT_RESPONSES:
		case FRONT_EMBEDDINGS:
			start_call(r, created_calls);
			break;
		case FRONT_BAD_METHOD:
			reply_error(r, 405, "method_not_allowed",
						psprintf("%s does not take this method", r->path), -1, NULL);
			break;
		case FRONT_NOT_FOUND:
			reply_error(r, 404, "not_found", psprintf("no endpoint %s", r->path), -1, NULL);
			break;
	}
}

/* Which endpoint a method and path name */
static FrontEndpoint
endpoint_of(const char *method, const char *url)
{
	static const struct
	{
		const char *path;
		const char *method;
		FrontEndpoint endpoint;
	}			routes[] = {
		{"/v1/chat/completions", "POST", FRONT_CHAT},
		{"/chat/completions", "POST", FRONT_CHAT},
		{"/v1/messages", "POST", FRONT_MESSAGES},
		{"/v1/responses", "POST", FRONT_RESPONSES},
		{"/responses", "POST", FRONT_RESPONSES},
		{"/v1/embeddings", "POST", FRONT_EMBEDDINGS},
		{"/embeddings", "POST", FRONT_EMBEDDINGS},
		{"/v1/models", "GET", FRONT_MODELS},
		{"/models", "GET", FRONT_MODELS},
		{"/health", "GET", FRONT_HEALTH},
		{"/metrics", "GET", FRONT_METRICS},
		{"/spend", "GET", FRONT_SPEND},
	};

	for (int i = 0; i < lengthof(routes); i++)
		if (strcmp(url, routes[i].path) == 0)
			return strcmp(method, routes[i].method) == 0 ? routes[i].endpoint : FRONT_BAD_METHOD;
	if (strncmp(url, "/v1/models/", 11) == 0 && url[11] != '\0')
		return strcmp(method, "GET") == 0 ? FRONT_MODEL : FRONT_BAD_METHOD;
	return FRONT_NOT_FOUND;
}

/* A new request: its endpoint, and a refusal of a body announced too large */
static FrontRequest *
request_new(struct MHD_Connection *conn, const char *url, const char *method)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "llmgw front request",
											  ALLOCSET_SMALL_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	FrontRequest *r = palloc0(sizeof(FrontRequest));
	const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
													 MHD_HTTP_HEADER_CONTENT_LENGTH);

	r->conn = conn;
	r->cxt = cxt;
	r->path = pstrdup(url);
	r->endpoint = endpoint_of(method, url);
	initStringInfo(&r->body);
	initStringInfo(&r->out);
	initStringInfo(&r->streamed);
	initStringInfo(&r->delta);
	if (length && strtoll(length, NULL, 10) > llmgw_http_max_body)
		r->body_too_large = true;
	MemoryContextSwitchTo(old);
	return r;
}

/* Run fn(r) with the request's memory, turning an error into a 500 reply */
static void
guarded(FrontRequest *r, void (*fn) (FrontRequest *))
{
	MemoryContext old = MemoryContextSwitchTo(r->cxt);

	PG_TRY();
	{
		fn(r);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(r->cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(WARNING,
				(errmsg("llmgw front door: %s", edata->message)));
		if (r->call == NULL)
			reply_error(r, 500, "internal_error", "llmgw could not serve this request; see the server log", -1, NULL);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
}

/* MHD's access handler: headers, body pieces, then the reply */
static enum MHD_Result
access_handler(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
			   const char *version, const char *upload_data, size_t *upload_size, void **con_cls)
{
	FrontRequest *r = *con_cls;

	if (r == NULL)
	{
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

		r = request_new(conn, url, method);
		r->fc = info ? info->socket_context : NULL;
		if (r->fc)
			r->fc->r = r;
		*con_cls = r;
		return MHD_YES;
	}
	if (r->gone)
		return MHD_NO;			/* the client left: close */
	if (*upload_size > 0)
	{
		if (!r->body_too_large && r->body.len + *upload_size > (size_t) llmgw_http_max_body)
			r->body_too_large = true;
		if (!r->body_too_large)
		{
			MemoryContext old = MemoryContextSwitchTo(r->cxt);

			appendBinaryStringInfo(&r->body, upload_data, (int) *upload_size);
			MemoryContextSwitchTo(old);
		}
		*upload_size = 0;
		return MHD_YES;
	}
	if (!r->dispatched)
	{
		r->dispatched = true;
		if (r->fc)
			r->fc->deadline = 0;	/* arrived whole: now it is answered */
		guarded(r, dispatch);
	}
	if (r->ready)
	{
		enum MHD_Result ok = MHD_queue_response(conn, r->status, r->ready);

		MHD_destroy_response(r->ready);
		r->ready = NULL;
		return ok;
	}
	if (r->call)
	{
		MHD_suspend_connection(conn);
		r->suspended = true;
		return MHD_YES;
	}
	return MHD_NO;				/* nothing to say: close the connection */
}

/* Wake a connection waiting for its call or for more of the stream */
static void
wake(FrontRequest *r)
{
	if (r->suspended && r->ready)
	{
		r->suspended = false;
		MHD_resume_connection(r->conn);
	}
	else if (r->parked)
	{
		r->parked = false;
		MHD_resume_connection(r->conn);
	}
}

/* MHD asks for the next bytes of a streamed answer */
static ssize_t
stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	FrontRequest *r = cls;
	size_t		avail = r->out.len - r->out_sent;

	if (avail > 0)
	{
		size_t		n = Min(avail, max);

		memcpy(buf, r->out.data + r->out_sent, n);
		r->out_sent += n;
		if (r->out_sent == (size_t) r->out.len)
		{
			resetStringInfo(&r->out);
			r->out_sent = 0;
		}
		return (ssize_t) n;
	}
	if (r->out_done)
		return MHD_CONTENT_READER_END_OF_STREAM;
	if (r->gone)
		return MHD_CONTENT_READER_END_WITH_ERROR;
	MHD_suspend_connection(r->conn);
	r->parked = true;
	return 0;
}

static LlmgwFrontMeta
meta_of(FrontRequest *r)
{
	LlmgwFrontMeta m = {r->id, r->model, r->created};

	return m;
}

/* Start the response of a streamed answer: status 200, server-sent events */
static void
stream_start(FrontRequest *r, LlmgwCall *call)
{
	struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024,
																  stream_reader, r, NULL);
	LlmgwFrontMeta meta = meta_of(r);

	if (resp == NULL)
		elog(ERROR, "could not create a streamed response");
	MHD_add_response_header(resp, "Content-Type", "text/event-stream");
	MHD_add_response_header(resp, "Cache-Control", "no-cache");
	add_proof_headers(resp, call);
	r->ready = resp;
	r->status = 200;
	r->sse = true;
	if (is_anthropic(r))
		llmgw_anthropic_stream_start(&r->anthropic, &r->out, r->model, r->id);
	else if (is_responses(r))
		llmgw_responses_stream_start(&r->responses, &r->out, &meta);
	else
		llmgw_openai_stream_start(&r->out, &meta);
}

/* Forward a piece of the answer's text */
static void
stream_text(FrontRequest *r, LlmgwCall *call, const char *text, size_t len)
{
	LlmgwFrontMeta meta = meta_of(r);

	if (len == 0)
		return;
	if (!r->sse)
		stream_start(r, call);
	if (is_anthropic(r))
		llmgw_anthropic_stream_text(&r->anthropic, &r->out, text, len);
	else if (is_responses(r))
		llmgw_responses_stream_text(&r->responses, &r->out, &meta, text, len);
	else
		llmgw_openai_stream_text(&r->out, &meta, text, len);
	appendBinaryStringInfo(&r->streamed, text, (int) len);
	call->committed = true;
}

/* A streamed call's events being translated for its client */
typedef struct Forwarding
{
	FrontRequest *r;
	LlmgwCall  *call;
	LlmgwStreamSink sink;
} Forwarding;

/* Send the text of the events at hand */
static void
flush_text(Forwarding *f)
{
	stream_text(f->r, f->call, f->r->delta.data, f->r->delta.len);
	resetStringInfo(&f->r->delta);
}

/* Sink: a piece of text, sent with the pieces next to it */
static void
sink_text(void *arg, const char *text, size_t len)
{
	Forwarding *f = arg;

	appendBinaryStringInfo(&f->r->delta, text, (int) len);
}

/* The tool call the provider calls key (-1: a new one); NULL when there are too many */
static StreamTool *
tool_of(FrontRequest *r, int key)
{
	StreamTool *t;

	for (int i = 0; key >= 0 && i < r->ntools; i++)
		if (r->tools[i].key == key)
			return &r->tools[i];
	if (r->ntools == MAX_STREAM_TOOLS)
		return NULL;
	if (r->tools == NULL)
		r->tools = palloc(sizeof(StreamTool) * MAX_STREAM_TOOLS);
	t = &r->tools[r->ntools++];
	t->key = key;
	t->ordinal = -1;
	t->block = -1;
	initStringInfo(&t->args);
	t->sent = 0;
	return t;
}

/*
 * Send a tool call's start, as the answer's next tool call (with its thought
 * signature, Gemini's, if any, to an OpenAI client)
 */
static void
send_tool_start(FrontRequest *r, LlmgwCall *call, StreamTool *t, const char *id,
				const char *name, const char *signature)
{
	LlmgwFrontMeta meta = meta_of(r);

	if (!r->sse)
		stream_start(r, call);
	t->ordinal = r->nstarted++;
	if (is_anthropic(r))
		t->block = llmgw_anthropic_stream_tool_start(&r->anthropic, &r->out, t->ordinal, id, name);
	else if (is_responses(r))
		llmgw_responses_stream_call(&r->responses, &r->out, &meta, t->ordinal, true, id, name, "", 0);
	else
		llmgw_openai_stream_tool(&r->out, &meta, t->ordinal, true, id, name, signature, "", 0);
	call->committed = true;
}

/* Send the arguments of a started tool call not sent yet; false if they cannot go */
static bool
send_tool_args(FrontRequest *r, StreamTool *t)
{
	LlmgwFrontMeta meta = meta_of(r);
	const char *piece = t->args.data + t->sent;
	size_t		len = t->args.len - t->sent;

	if (len == 0)
		return true;
	if (is_anthropic(r))
	{
		if (!llmgw_anthropic_stream_tool_input(&r->anthropic, &r->out, t->block, piece, len))
			return false;
	}
	else if (is_responses(r))
		llmgw_responses_stream_call(&r->responses, &r->out, &meta, t->ordinal, false, NULL, NULL,
									piece, len);
	else
		llmgw_openai_stream_tool(&r->out, &meta, t->ordinal, false, NULL, NULL, NULL, piece, len);
	t->sent = t->args.len;
	return true;
}

/*
 * Sink: a tool call's start and/or a piece of its arguments.  Pieces that
 * come before the start are held until it; pieces of a call never started
 * (Anthropic's response_format tool) are never sent.
 */
static void
sink_tool(void *arg, int key, const char *id, const char *name, const char *signature,
		  const char *args, size_t len)
{
	Forwarding *f = arg;
	StreamTool *t = tool_of(f->r, key);

	if (t == NULL)
		return;
	flush_text(f);
	if (args)
		appendBinaryStringInfo(&t->args, args, (int) len);
	if (t->ordinal < 0 && (key < 0 || id || name))
		send_tool_start(f->r, f->call, t, id, name, signature);
	if (t->ordinal >= 0)
		(void) send_tool_args(f->r, t);
}

/*
 * Sink: a piece of the answer's extended thinking or reasoning: thinking as
 * it is to an Anthropic client (other reasoning, which no thinking block
 * could carry back, is not sent to it, as its Message has none); to an
 * OpenAI client the text of either as reasoning_content (thinking blocks
 * whole at the end, llmgw_openai_stream_end)
 */
static void
sink_thinking(void *arg, LlmgwThinkingPiece what, const char *piece, size_t len)
{
	Forwarding *f = arg;
	FrontRequest *r = f->r;
	LlmgwFrontMeta meta = meta_of(r);

	/* (a Responses client gets no reasoning) */
	if ((is_anthropic(r) && what == LLMGW_THINKING_REASONING) || is_responses(r))
		return;
	flush_text(f);
	if (!r->sse)
		stream_start(r, f->call);
	if (is_anthropic(r))
		llmgw_anthropic_stream_thinking(&r->anthropic, &r->out, what, piece, len);
	else if (what == LLMGW_THINKING_TEXT || what == LLMGW_THINKING_REASONING)
		llmgw_openai_stream_reasoning(&r->out, &meta, piece, len);
	r->reasoned = true;
	f->call->committed = true;
}

/*
 * The answer's extended thinking whole, when none of it was streamed (an
 * answer from the cache) and nothing came before it
 */
static void
send_thinking(FrontRequest *r, json_t *message)
{
	LlmgwFrontMeta meta = meta_of(r);
	json_t	   *reasoning = json_object_get(message, "reasoning_content");

	if (r->reasoned || r->streamed.len > 0 || r->nstarted > 0 || is_responses(r))
		return;
	if (is_anthropic(r))
		llmgw_anthropic_stream_thinking_blocks(&r->anthropic, &r->out,
											   json_object_get(message, "thinking_blocks"));
	else if (json_string_length(reasoning) > 0)
		llmgw_openai_stream_reasoning(&r->out, &meta, json_string_value(reasoning),
									  json_string_length(reasoning));
	r->reasoned = true;
}

/* SSE handler: tell the sink what an event of the provider's stream carries */
static void
forward_event(void *arg, const char *event, const char *data, size_t len)
{
	Forwarding *f = arg;

	f->call->provider_ops->stream_delta(data, len, &f->sink);
}

/* End of the last complete event in buf[from, len), or from when none */
static size_t
events_end(const char *buf, size_t from, size_t len)
{
	for (size_t i = len; i > from + 1; i--)
	{
		if (buf[i - 1] == '\n' && (buf[i - 2] == '\n' ||
								   (i >= from + 3 && buf[i - 2] == '\r' && buf[i - 3] == '\n')))
			return i;
	}
	return from;
}

/* Translate the complete events a streamed call received since the last look */
static void
forward(LlmgwCall *call)
{
	FrontRequest *r = call->front;
	Forwarding	f = {r, call, {NULL, sink_text, sink_tool, sink_thinking}};
	MemoryContext old;
	long		status = llmgw_http_status_now(call);
	size_t		end;

	f.sink.arg = &f;
	if (status < 200 || status >= 300 || call->provider_ops == NULL ||
		call->provider_ops->stream_delta == NULL)
		return;
	if (r->consumed_attempt != call->attempt)
	{
		/* a new attempt (nothing was sent of the last one) */
		r->consumed = 0;
		r->consumed_attempt = call->attempt;
		r->ntools = r->nstarted = 0;
		r->reasoned = false;
	}
	end = events_end(call->response.data, r->consumed, call->response.len);
	if (end <= r->consumed)
		return;
	old = MemoryContextSwitchTo(r->cxt);
	resetStringInfo(&r->delta);
	llmgw_sse_parse(call->response.data + r->consumed, end - r->consumed, forward_event, &f);
	r->consumed = end;
	flush_text(&f);
	wake(r);
	MemoryContextSwitchTo(old);
}

/* Forward the new bytes of the streamed calls of a list; whether there were any */
static bool
forward_list(dlist_head *calls, bool finished)
{
	dlist_iter	iter;
	bool		any = false;

	dlist_foreach(iter, calls)
	{
		LlmgwCall  *call = dlist_container(LlmgwCall, node, iter.cur);

		if (call->front == NULL || !call->front->stream || !call->response.grew ||
			(finished && call->out.status != LLMGW_STATUS_OK))
			continue;
		call->response.grew = false;
		forward(call);
		any = true;
	}
	return any;
}

/*
 * Forward the new bytes of the front door's streamed calls: those running,
 * and those finished well (a stream that came whole in one read, or its
 * last events with its end), before the round settles them.  True when
 * there is something to send: llmgw_frontdoor_run sends it, so that the
 * answers' text does not wait for the round's commit.
 */
bool
llmgw_frontdoor_progress(dlist_head *running, dlist_head *finished)
{
	bool		any;

	if (daemon_handle == NULL)
		return false;
	any = forward_list(running, false);
	return forward_list(finished, true) || any;
}

/* The text of the answer not streamed yet (it all, when streamed differs) */
static const char *
text_rest(FrontRequest *r, json_t *answer)
{
	const char *text = json_string_value(json_object_get(json_object_get(answer, "message"), "content"));

	if (text == NULL)
		return NULL;
	if (strncmp(text, r->streamed.data, r->streamed.len) == 0)
		return text + r->streamed.len;
	return r->streamed.len == 0 ? text : NULL;
}

/* Arguments streamed (text) and an answer's (text) alike: the same text or JSON */
static bool
same_arguments(const char *streamed, const char *final)
{
	json_t	   *a;
	json_t	   *b;
	bool		same;

	if (strcmp(streamed, final) == 0)
		return true;
	a = llmgw_json_load(streamed, strlen(streamed), NULL);
	b = llmgw_json_load(final, strlen(final), NULL);
	same = a && b && json_equal(a, b);
	json_decref(a);
	json_decref(b);
	return same;
}

/*
 * Send what the client has not had of the answer's tool calls: those never
 * started whole, the rest of the arguments of those started.  False when
 * what was sent is not the answer's (a started call it lacks, arguments it
 * does not have).
 */
static bool
end_tools(FrontRequest *r, LlmgwCall *call, json_t *calls)
{
	size_t		k;
	json_t	   *c;

	if ((size_t) r->nstarted > json_array_size(calls))
		return false;
	json_array_foreach(calls, k, c)
	{
		char	   *args = is_anthropic(r) ? llmgw_anthropic_tool_input_json(c) :
			llmgw_openai_tool_arguments(c);
		StreamTool *t = NULL;
		char	   *sent;

		for (int i = 0; i < r->ntools; i++)
			if (r->tools[i].ordinal == (int) k)
				t = &r->tools[i];
		if (t == NULL)
		{
			/* never started: now, whole */
			StreamTool	whole = {.key = -1, .ordinal = -1, .block = -1};

			initStringInfo(&whole.args);
			appendStringInfoString(&whole.args, args);
			send_tool_start(r, call, &whole, json_string_value(json_object_get(c, "id")),
							json_string_value(json_object_get(c, "name")),
							json_string_value(json_object_get(c, "thought_signature")));
			if (!send_tool_args(r, &whole))
				return false;
			continue;
		}
		sent = pnstrdup(t->args.data, t->sent);
		/* nothing sent of a tool_use block's input: its start said {} */
		if (same_arguments(t->sent == 0 && is_anthropic(r) ? "{}" : sent, args))
			continue;
		/* the rest of them, after what was sent */
		resetStringInfo(&t->args);
		appendStringInfoString(&t->args, args);
		if (strncmp(args, sent, t->sent) != 0 || !send_tool_args(r, t))
			return false;
	}
	return true;
}

/* A call succeeded: the answer in the client's API */
static void
answer(FrontRequest *r, LlmgwCall *call)
{
	LlmgwFrontMeta meta = meta_of(r);
	char	   *body = NULL;

	if (r->endpoint == FRONT_EMBEDDINGS)
		body = llmgw_openai_embeddings(llmgw_call_answer(call), r->model, r->base64,
									   call->out.tokens[LLMGW_TOKENS_INPUT]);
	else if (r->stream)
	{
		char	   *result = llmgw_call_answer(call);
		json_t	   *a = result ? llmgw_json_load(result, strlen(result), NULL) : NULL;
		/* (its last events went before the settle: llmgw_frontdoor_progress) */
		const char *rest = a ? text_rest(r, a) : NULL;

		if (!r->sse)
			stream_start(r, call);
		send_thinking(r, json_object_get(a, "message"));
		if (rest && *rest)
			stream_text(r, call, rest, strlen(rest));
		if (!end_tools(r, call, json_object_get(json_object_get(a, "message"), "tool_calls")))
		{
			/* a provider's stream at odds with itself: say so rather than end it as whole */
			elog(WARNING, "llmgw: the tool calls streamed differ from the answer's");
			if (is_anthropic(r))
				llmgw_anthropic_stream_error(&r->out, "api_error", "malformed_response",
											 "the tool calls streamed differ from the provider's answer");
			else if (is_responses(r))
				llmgw_responses_stream_error(&r->responses, &r->out, "malformed_response",
											 "the tool calls streamed differ from the provider's answer");
			else
				llmgw_openai_stream_error(&r->out, 502, "malformed_response",
										  "the tool calls streamed differ from the provider's answer");
		}
		else if (is_anthropic(r))
			llmgw_anthropic_stream_end(&r->anthropic, &r->out, result ? result : "{}",
									   proof_json(call));
		else if (is_responses(r))
			llmgw_responses_stream_end(&r->responses, &r->out, &meta, result ? result : "{}",
									   proof_json(call));
		else
			llmgw_openai_stream_end(&r->out, &meta, result ? result : "{}",
									r->include_usage, proof_json(call));
		json_decref(a);
		r->out_done = true;
		return;
	}
	else
	{
		json_t	   *a = llmgw_answer_value(call);

		body = is_anthropic(r) ? llmgw_anthropic_message_value(a, r->model, r->id) :
			is_responses(r) ? llmgw_responses_response(a, &meta) :
			llmgw_openai_completion(a, &meta);
		json_decref(a);
	}
	if (body == NULL)
		reply_error(r, 502, "malformed_response", "the answer could not be rendered", -1, call);
	else
		reply(r, 200, body, call);
}

/* A call failed: the error in the client's API (in the stream, if started) */
static void
failure(FrontRequest *r, LlmgwCall *call)
{
	LlmgwErrorClass error = call->out.error;
	int			status = llmgw_error_class_http(error);
	const char *code = llmgw_error_class_name(error);
	char	   *message;
	char	   *detail;
	char	   *hint;
	char	   *text;

	llmgw_call_error(call, &message, &detail, &hint);
	text = utf8_clean(detail ? psprintf("%s: %s", message, detail) : message);
	if (r->sse)
	{
		if (is_anthropic(r))
			llmgw_anthropic_stream_error(&r->out, llmgw_anthropic_error_type(status), code, text);
		else if (is_responses(r))
			llmgw_responses_stream_error(&r->responses, &r->out, code, text);
		else
			llmgw_openai_stream_error(&r->out, status, code, text);
		r->out_done = true;
		return;
	}
	reply_error(r, status, code, text,
				status == 429 || status == 503 ? call->out.retry_after_s : -1, call);
}

/*
 * A call of the front door is settled (its usage rows are committed):
 * answer its client, if it is still there
 */
void
llmgw_frontdoor_finish(LlmgwCall *call)
{
	FrontRequest *r = call->front;
	MemoryContext old;

	if (r == NULL)
		return;
	r->call = NULL;
	call->front = NULL;
	old = MemoryContextSwitchTo(r->cxt);
	PG_TRY();
	{
		if (call->out.status == LLMGW_STATUS_OK)
			answer(r, call);
		else
			failure(r, call);
	}
	PG_CATCH();
	{
		FlushErrorState();
		if (!r->sse)
			reply_error(r, 500, "internal_error", "llmgw could not render the answer", -1, NULL);
		r->out_done = true;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	wake(r);
}

/* A request ended (answered, or its client left) */
static void
request_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
				  enum MHD_RequestTerminationCode toe)
{
	FrontRequest *r = *con_cls;

	if (r == NULL)
		return;
	if (r->call)
	{
		/* the client left: cancel its call (the row says cancelled) */
		r->call->front = NULL;
		llmgw_slot_abandon(r->call->slotno);
	}
	if (r->fc)
	{
		/* the next request on this connection must come in time */
		r->fc->r = NULL;
		r->fc->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													  llmgw_http_idle_timeout * 1000);
	}
	if (r->ready)
		MHD_destroy_response(r->ready);
	MemoryContextDelete(r->cxt);
	*con_cls = NULL;
}

/* A connection opened or closed: watch it, or stop */
static void
connection_notify(void *cls, struct MHD_Connection *conn, void **socket_context,
				  enum MHD_ConnectionNotificationCode toe)
{
	FrontConn  *fc = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED)
	{
		const union MHD_ConnectionInfo *info =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		struct epoll_event ev;

		fc = MemoryContextAllocZero(TopMemoryContext, sizeof(FrontConn));
		fc->fd = info ? info->connect_fd : -1;
		fc->deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												   llmgw_http_idle_timeout * 1000);
		memset(&ev, 0, sizeof(ev));
		ev.events = EPOLLRDHUP;
		ev.data.ptr = fc;
		if (fc->fd >= 0)
			(void) epoll_ctl(watch_fd, EPOLL_CTL_ADD, fc->fd, &ev);
		dlist_push_tail(&connections, &fc->node);
		*socket_context = fc;
	}
	else if (fc != NULL)
	{
		if (fc->fd >= 0)
			(void) epoll_ctl(watch_fd, EPOLL_CTL_DEL, fc->fd, NULL);
		if (fc->r)
			fc->r->fc = NULL;
		dlist_delete(&fc->node);
		pfree(fc);
		*socket_context = NULL;
		connections_closed++;
	}
}

/*
 * The client closed its end of a connection: a request waiting for its
 * call is cancelled like a cancelled statement, and the connection closed.
 */
static void
client_left(FrontConn *fc)
{
	FrontRequest *r = fc->r;

	(void) epoll_ctl(watch_fd, EPOLL_CTL_DEL, fc->fd, NULL);
	if (r && r->call)
	{
		r->call->front = NULL;
		llmgw_slot_abandon(r->call->slotno);
		r->call = NULL;
	}
	if (r && (r->suspended || r->parked))
	{
		r->gone = true;
		r->suspended = r->parked = false;
		MHD_resume_connection(r->conn);
	}
	/* libmicrohttpd sees the error at once, and closes */
	(void) shutdown(fc->fd, SHUT_RDWR);
}

/*
 * Clients that left, and requests that did not arrive whole in time
 * (llmgw.http_idle_timeout, a slow client's too)
 */
static void
watch_connections(void)
{
	struct epoll_event events[64];
	int			n;
	TimestampTz now = GetCurrentTimestamp();
	dlist_iter	iter;

	while ((n = epoll_wait(watch_fd, events, lengthof(events), 0)) > 0)
	{
		for (int i = 0; i < n; i++)
			client_left(events[i].data.ptr);
		if (n < lengthof(events))
			break;
	}
	dlist_foreach(iter, &connections)
	{
		FrontConn  *fc = dlist_container(FrontConn, node, iter.cur);

		if (fc->deadline != 0 && fc->deadline <= now)
		{
			fc->deadline = 0;
			(void) shutdown(fc->fd, SHUT_RDWR);
		}
	}
}

/* MHD's own messages go to the server log at DEBUG1: they name no secret */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char		buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	elog(DEBUG1, "llmgw front door: %s", buf);
}

/* A whole file, for the TLS certificate and key */
static char *
read_file(const char *path)
{
	FILE	   *f = AllocateFile(path, "r");
	StringInfoData s;
	char		buf[4096];
	size_t		n;

	if (f == NULL)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("could not open file \"%s\": %m", path)));
	initStringInfo(&s);
	while ((n = fread(buf, 1, sizeof(buf), f)) > 0)
		appendBinaryStringInfo(&s, buf, (int) n);
	FreeFile(f);
	return s.data;
}

/*
 * Start listening on llmgw.http_listen (host:port, [v6]:port), when set;
 * a worker that cannot says so in the log and serves SQL only
 */
void
llmgw_frontdoor_start(int worker, uint64 generation, WaitEventSet *wes)
{
	char	   *spec;
	char	   *colon;
	char	   *host;
	struct addrinfo hints;
	struct addrinfo *ai = NULL;
	unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
	bool		tls = llmgw_http_tls_cert && *llmgw_http_tls_cert;
	char	   *cert = NULL;
	char	   *key = NULL;
	const union MHD_DaemonInfo *info;
	int			per_worker = Max(llmgw_http_max_connections / Max(llmgw_workers, 1), 1);

	my_worker = worker;
	my_generation = generation;
	if (llmgw_http_listen == NULL || *llmgw_http_listen == '\0')
		return;
	watch_fd = epoll_create1(EPOLL_CLOEXEC);
	if (watch_fd < 0)
	{
		ereport(WARNING,
				(errcode_for_socket_access(),
				 errmsg("llmgw front door: could not create an epoll set: %m")));
		return;
	}
	spec = pstrdup(llmgw_http_listen);
	colon = strrchr(spec, ':');
	if (colon == NULL || colon[1] == '\0')
	{
		ereport(WARNING,
				(errmsg("llmgw.http_listen must be host:port, not \"%s\"", llmgw_http_listen)));
		return;
	}
	*colon = '\0';
	host = spec;
	if (*host == '[' && host[strlen(host) - 1] == ']')
	{
		host[strlen(host) - 1] = '\0';
		host++;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (getaddrinfo(*host ? host : NULL, colon + 1, &hints, &ai) != 0 || ai == NULL)
	{
		ereport(WARNING,
				(errmsg("llmgw.http_listen: cannot resolve \"%s\"", llmgw_http_listen)));
		return;
	}
	if (tls)
	{
		flags |= MHD_USE_TLS;
		cert = read_file(llmgw_http_tls_cert);
		key = read_file(llmgw_http_tls_key);
	}
	if (ai->ai_family == AF_INET6)
		flags |= MHD_USE_IPv6;
	daemon_handle = MHD_start_daemon(flags, 1, NULL, NULL, access_handler, NULL,
									 MHD_OPTION_SOCK_ADDR, ai->ai_addr,
									 MHD_OPTION_LISTENING_ADDRESS_REUSE, (unsigned int) 1,
									 MHD_OPTION_CONNECTION_LIMIT, (unsigned int) per_worker,
									 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) llmgw_http_idle_timeout,
									 MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) HEADER_MEMORY,
									 MHD_OPTION_NOTIFY_COMPLETED, request_completed, NULL,
									 MHD_OPTION_NOTIFY_CONNECTION, connection_notify, NULL,
									 MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
									 tls ? MHD_OPTION_HTTPS_MEM_CERT : MHD_OPTION_END, cert,
									 MHD_OPTION_HTTPS_MEM_KEY, key,
									 MHD_OPTION_END);
	freeaddrinfo(ai);
	if (key)
		explicit_bzero(key, strlen(key));
	if (daemon_handle == NULL)
	{
		ereport(WARNING,
				(errmsg("llmgw worker %d could not listen on llmgw.http_listen \"%s\"",
						worker + 1, llmgw_http_listen),
				 errhint("Is the address in use by another program, or not of this machine?")));
		return;
	}
	info = MHD_get_daemon_info(daemon_handle, MHD_DAEMON_INFO_EPOLL_FD);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, info->epoll_fd, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, watch_fd, NULL, NULL);
}

/* Does this worker serve the front door? */
bool
llmgw_frontdoor_listening(void)
{
	return daemon_handle != NULL;
}

/*
 * Serve what the clients sent; the calls they start go to created.  NULL:
 * keep them for the next call (the worker's loop admits them then).
 */
void
llmgw_frontdoor_run(dlist_head *created)
{
	static dlist_head pending = DLIST_STATIC_INIT(pending);

	if (daemon_handle == NULL)
		return;
	created_calls = &pending;
	watch_connections();
	/* a closed connection makes room: at the limit, libmicrohttpd listens
	 * again only at its next run */
	for (int i = 0; i < 4; i++)
	{
		connections_closed = 0;
		(void) MHD_run(daemon_handle);
		if (connections_closed == 0)
			break;
	}
	created_calls = NULL;
	if (created == NULL)
	{
		if (!dlist_is_empty(&pending))
			SetLatch(MyLatch);
		return;
	}
	while (!dlist_is_empty(&pending))
		dlist_push_tail(created, dlist_pop_head_node(&pending));
}

/* Milliseconds until the front door has something to do (-1: nothing) */
long
llmgw_frontdoor_timeout(void)
{
	MHD_UNSIGNED_LONG_LONG ms;
	long		timeout = -1;
	TimestampTz now = GetCurrentTimestamp();
	dlist_iter	iter;

	if (daemon_handle == NULL)
		return -1;
	if (MHD_get_timeout(daemon_handle, &ms) == MHD_YES)
		timeout = (long) Min(ms, (MHD_UNSIGNED_LONG_LONG) LONG_MAX);
	dlist_foreach(iter, &connections)
	{
		FrontConn  *fc = dlist_container(FrontConn, node, iter.cur);
		long		left;

		if (fc->deadline == 0)
			continue;
		left = Max(TimestampDifferenceMilliseconds(now, fc->deadline), 0) + 1;
		if (timeout < 0 || left < timeout)
			timeout = left;
	}
	return timeout;
}

/* Stop listening (the worker exits) */
void
llmgw_frontdoor_stop(void)
{
	if (daemon_handle)
		MHD_stop_daemon(daemon_handle);
	daemon_handle = NULL;
}
