/*-------------------------------------------------------------------------
 *
 * mock.c
 *		A mock LLM provider for llmgw's tests and benchmarks: the OpenAI
 *		Chat Completions and Embeddings, Anthropic Messages and Gemini
 *		generateContent wire formats (streamed or not), deterministic
 *		answers, and failures chosen per request.  It is also an
 *		OpenTelemetry collector (OTLP/HTTP JSON): it counts and keeps the
 *		spans llmgw exports.
 *
 * Behaviour directives follow the model name, separated by ';' (for
 * example "mock-model;delay:200;status:429"), or come in an "x-mock"
 * header.  See README.md beside this file.
 *
 *-------------------------------------------------------------------------
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#define MAX_THREADS 16
#define MODEL_BUCKETS 1024
#define MAX_HUGE 100000000		/* bytes of a huge:BYTES answer */
#define MAX_TOOL_CALLS 8		/* calls of a tool_calls:N answer */
#define MAX_EMBEDDING_VALUES (16 * 1024 * 1024) /* in one embeddings answer */
#define MAX_WORDS 1000000		/* words of a words:N answer */

/* Per-request behaviour, from the directives */
typedef struct Behaviour
{
	int			delay_ms;
	int			status;
	int			fail_first;		/* -1: always */
	int			fail_every;		/* fail one request in N (0: not used) */
	bool		quota;
	bool		context;
	bool		malformed;
	long		huge;
	bool		stall;
	int			dim;
	bool		nousage;
	long		cached;			/* -1: not reported */
	long		reasoning;
	bool		echo_auth;
	bool		echo_body;
	bool		signatures;		/* Gemini: thought signatures on function calls, checked */
	char	   *echo;			/* with echo_body: the request as answered (malloc'd) */
	int			tool_calls;		/* answer with this many calls of the first tool */
	bool		tool_once;		/* ... unless a tool result is in the conversation */
	long		cache_write;	/* Anthropic cache_creation_input_tokens */
	bool		truncate;		/* stream without its terminal event */
	bool		garbage;		/* stream with one malformed JSON event */
	bool		stream_error;	/* stream ending in an in-stream error event */
	bool		filtered;		/* content-filter / safety stop, with usage */
	bool		stop_reason;	/* OpenAI format: vLLM's stop_reason, the stop sequence matched */
	int			drip_ms;		/* a stream's events one at a time, this far apart */
	long		words;			/* an answer of this many words (0: the usual one) */
	char		replay[256];	/* corpus case to replay, or "" */
	long		reject;			/* OTLP: spans to say were rejected (partialSuccess) */
} Behaviour;

/* Request counters of one exact model string */
typedef struct ModelCount
{
	char	   *model;
	long		requests;
	long		failed_first;
	struct ModelCount *next;
} ModelCount;

/*
 * A reply waiting for its delay, a stalled request, or a stream sent one
 * event at a time (drip)
 */
typedef struct Pending
{
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *timer;
	struct event *gone;			/* the client closed its end */
	int			status;
	char	   *content_type;
	struct evbuffer *body;		/* with drip: the events not sent yet */
	bool		stream;
	int			drip_ms;		/* > 0: a stream dripped, this far apart */
	bool		dripping;		/* its response is under way */
	long		dripped;		/* events sent so far */
} Pending;

static atomic_long total_requests;
static atomic_long chat_requests;
static atomic_long embedding_requests;
static pthread_mutex_t models_lock = PTHREAD_MUTEX_INITIALIZER;
static ModelCount *models[MODEL_BUCKETS];
static const char *require_key = NULL;
static const char *corpus_dir = NULL;
static atomic_long next_id;
static atomic_long closed_early;	/* replies whose client left before their end */
static atomic_long drips_cut;	/* of those, streams cut between two events */
static atomic_long drip_events;	/* events sent one at a time */
/* The OTLP collector (POST /v1/traces): counters, spans kept, directives */
#define MAX_KEPT_SPANS 100000
static pthread_mutex_t otlp_lock = PTHREAD_MUTEX_INITIALIZER;
static long otlp_requests;		/* every POST /v1/traces */
static long otlp_accepted;		/* answered 2xx (or to be, after a delay) */
static long otlp_resource_spans;
static long otlp_spans;
static char *otlp_last = NULL;	/* the last accepted body, as received */
static json_t *otlp_kept = NULL;	/* its spans, and those before (MAX_KEPT_SPANS) */
static char *otlp_directives = NULL;	/* what POST /otlp/directives set */
static bool otlp_discard = false;	/* --otlp-discard: accept exports unread */
static int	idle_ms = 0;		/* --idle-ms: close a connection idle this long */
static int	stop_pipe[2];		/* written once to stop the serving threads */

/* FNV-1a hash of a string */
static uint64_t
fnv1a(const char *s, uint64_t h)
{
	for (; *s; s++)
	{
		h ^= (unsigned char) *s;
		h *= 1099511628211ULL;
	}
	return h;
}

/*
 * Count a request for a model string; returns whether a failure directive
 * applies to it (always, or while fewer than fail_first have failed)
 */
static bool
count_model(const char *model, bool fail_candidate, int fail_first, int fail_every)
{
	unsigned	b = fnv1a(model, 1469598103934665603ULL) % MODEL_BUCKETS;
	ModelCount *m;
	bool		fail = false;

	pthread_mutex_lock(&models_lock);
	for (m = models[b]; m && strcmp(m->model, model) != 0; m = m->next)
		;
	if (m == NULL)
	{
		m = calloc(1, sizeof(*m));
		m->model = strdup(model);
		m->next = models[b];
		models[b] = m;
	}
	m->requests++;
	if (fail_candidate)
	{
		if (fail_every > 0)
			fail = (m->requests % fail_every) == 0;
		else if (fail_first < 0)
			fail = true;
		else if (m->failed_first < fail_first)
		{
			m->failed_first++;
			fail = true;
		}
	}
	pthread_mutex_unlock(&models_lock);
	return fail;
}

/* Apply one directive */
static void
apply_directive(Behaviour *b, const char *d)
{
	if (strncmp(d, "replay:", 7) == 0)
	{
		snprintf(b->replay, sizeof(b->replay), "%s", d + 7);
		return;
	}
	if (sscanf(d, "delay:%d", &b->delay_ms) == 1 ||
		sscanf(d, "drip:%d", &b->drip_ms) == 1 ||
		sscanf(d, "pace:%d", &b->drip_ms) == 1 ||	/* the same, older name */
		sscanf(d, "words:%ld", &b->words) == 1 ||
		sscanf(d, "cache_write:%ld", &b->cache_write) == 1 ||
		sscanf(d, "status:%d", &b->status) == 1 ||
		sscanf(d, "fail_first:%d", &b->fail_first) == 1 ||
		sscanf(d, "fail_every:%d", &b->fail_every) == 1 ||
		sscanf(d, "huge:%ld", &b->huge) == 1 ||
		sscanf(d, "dim:%d", &b->dim) == 1 ||
		sscanf(d, "cached:%ld", &b->cached) == 1 ||
		sscanf(d, "reasoning:%ld", &b->reasoning) == 1 ||
		sscanf(d, "reject:%ld", &b->reject) == 1)
		return;
	if (sscanf(d, "tool_calls:%d", &b->tool_calls) == 1)
	{
		b->tool_calls = b->tool_calls < 1 ? 1 : b->tool_calls > MAX_TOOL_CALLS ? MAX_TOOL_CALLS :
			b->tool_calls;
		return;
	}
	if (strcmp(d, "quota") == 0)
		b->quota = true;
	else if (strcmp(d, "context") == 0)
		b->context = true;
	else if (strcmp(d, "malformed") == 0)
		b->malformed = true;
	else if (strcmp(d, "stall") == 0)
		b->stall = true;
	else if (strcmp(d, "nousage") == 0)
		b->nousage = true;
	else if (strcmp(d, "echo_auth") == 0)
		b->echo_auth = true;
	else if (strcmp(d, "echo_body") == 0)
		b->echo_body = true;
	else if (strcmp(d, "thought_signatures") == 0)
		b->signatures = true;
	else if (strcmp(d, "tool_call") == 0)
		b->tool_calls = 1;
	else if (strcmp(d, "tool_once") == 0)
		b->tool_calls = 1, b->tool_once = true;
	else if (strcmp(d, "stop_reason") == 0)
		b->stop_reason = true;
	else if (strcmp(d, "truncate") == 0)
		b->truncate = true;
	else if (strcmp(d, "garbage") == 0)
		b->garbage = true;
	else if (strcmp(d, "stream_error") == 0)
		b->stream_error = true;
	else if (strcmp(d, "filtered") == 0)
		b->filtered = true;
}

/* Apply every ';'-separated directive of s (the first element is skipped if skip_first) */
static void
apply_directives(Behaviour *b, const char *s, bool skip_first)
{
	char	   *copy = strdup(s);
	char	   *save = NULL;
	char	   *tok = strtok_r(copy, ";", &save);

	if (skip_first && tok)
		tok = strtok_r(NULL, ";", &save);
	for (; tok; tok = strtok_r(NULL, ";", &save))
		apply_directive(b, tok);
	free(copy);
}

/* The characters that separate words */
#define WORD_SEPARATORS " \t\n\r"

/* Is c a word separator? */
static bool
is_space(char c)
{
	return c != '\0' && strchr(WORD_SEPARATORS, c) != NULL;
}

/* Replace the bytes of s that are not printable ASCII with '?' (in place) */
static char *
printable(char *s)
{
	for (char *c = s; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			*c = '?';
	return s;
}

/* Number of whitespace-separated words */
static long
count_words(const char *s)
{
	long		n = 0;
	bool		in = false;

	for (; *s; s++)
	{
		bool		space = is_space(*s);

		if (!space && !in)
			n++;
		in = !space;
	}
	return n;
}

/* Send a finished reply now */
static void
send_now(struct evhttp_request *req, int status, const char *ctype, struct evbuffer *body)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);

	evhttp_add_header(h, "Content-Type", ctype);
	evhttp_send_reply(req, status, NULL, body);
}

/* Free a pending reply (not its request) */
static void
pending_free(Pending *p)
{
	if (p->timer)
		event_free(p->timer);
	if (p->gone)
		event_free(p->gone);
	if (p->body)
		evbuffer_free(p->body);
	free(p->content_type);
	free(p);
}

/*
 * The connection of a pending request is being freed.  A request that
 * libevent detached from its failed connection is ours to free.
 */
static void
pending_closed(struct evhttp_connection *conn, void *arg)
{
	Pending    *p = arg;

	(void) conn;
	atomic_fetch_add(&closed_early, 1);
	if (p->dripping)
	{
		atomic_fetch_add(&drips_cut, 1);
		fprintf(stderr, "llmgw-mock: a client closed a dripped stream after %ld events, %zu bytes unsent\n",
				p->dripped, evbuffer_get_length(p->body));
	}
	if (evhttp_request_get_connection(p->req) == NULL)
		evhttp_request_free(p->req);
	pending_free(p);
}

/*
 * The client of a pending request closed its end.  libevent 2.1 stops
 * reading a connection while its request is pending, so it would not see
 * this itself: free the connection, which frees the request and calls
 * pending_closed.
 */
static void
pending_gone(evutil_socket_t fd, short what, void *arg)
{
	Pending    *p = arg;

	(void) fd;
	(void) what;
	evhttp_connection_free(p->conn);
}

/* Stream a chat completion as SSE chunks, kept whole in body */
static void
send_stream(struct evhttp_request *req, struct evbuffer *body)
{
	evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "text/event-stream");
	evhttp_send_reply_start(req, 200, "OK");
	evhttp_send_reply_chunk(req, body);
	evhttp_send_reply_end(req);
}

/*
 * Length of the first SSE event of buf, its blank line included (the
 * whole buffer when no blank line ends one)
 */
static size_t
first_event_length(struct evbuffer *buf)
{
	struct evbuffer_ptr lf = evbuffer_search(buf, "\n\n", 2, NULL);
	struct evbuffer_ptr crlf = evbuffer_search(buf, "\r\n\r\n", 4, NULL);
	size_t		n = evbuffer_get_length(buf);

	if (lf.pos >= 0)
		n = (size_t) lf.pos + 2;
	if (crlf.pos >= 0 && (size_t) crlf.pos + 4 < n)
		n = (size_t) crlf.pos + 4;
	return n;
}

static void pending_fire(evutil_socket_t fd, short what, void *arg);

/*
 * Send the next event of a dripped stream (the status and headers first),
 * then wait drip_ms for the one after; the last one ends the response
 */
static void
drip_next(Pending *p)
{
	struct evbuffer *chunk = evbuffer_new();
	struct timeval tv = {p->drip_ms / 1000, (p->drip_ms % 1000) * 1000};

	if (!p->dripping)
	{
		evhttp_add_header(evhttp_request_get_output_headers(p->req), "Content-Type",
						  "text/event-stream");
		evhttp_send_reply_start(p->req, 200, "OK");
		p->dripping = true;
	}
	evbuffer_remove_buffer(p->body, chunk, first_event_length(p->body));
	evhttp_send_reply_chunk(p->req, chunk);
	evbuffer_free(chunk);
	p->dripped++;
	atomic_fetch_add(&drip_events, 1);
	if (evbuffer_get_length(p->body) > 0)
	{
		if (p->timer == NULL)
			p->timer = evtimer_new(evhttp_connection_get_base(p->conn), pending_fire, p);
		evtimer_add(p->timer, &tv);
		return;
	}
	/* the whole stream is sent: the request is libevent's again */
	evhttp_connection_set_closecb(p->conn, NULL, NULL);
	evhttp_send_reply_end(p->req);
	pending_free(p);
}

/* The delay of a pending reply is over */
static void
pending_fire(evutil_socket_t fd, short what, void *arg)
{
	Pending    *p = arg;

	(void) fd;
	(void) what;
	if (p->drip_ms > 0)
	{
		drip_next(p);
		return;
	}
	evhttp_connection_set_closecb(p->conn, NULL, NULL);
	if (p->stream)
		send_stream(p->req, p->body);
	else
		send_now(p->req, p->status, p->content_type, p->body);
	pending_free(p);
}

/*
 * Reply after the behaviour's delay (or never, for stall); a stream with
 * drip goes out one event at a time
 */
static void
reply(struct evhttp_request *req, const Behaviour *b, int status, const char *ctype,
	  struct evbuffer *body, bool stream)
{
	Pending    *p;
	struct event_base *base;
	evutil_socket_t fd;
	bool		drip = stream && b->drip_ms > 0 && !b->stall;

	if (b->delay_ms <= 0 && !b->stall && !drip)
	{
		if (stream)
			send_stream(req, body);
		else
			send_now(req, status, ctype, body);
		evbuffer_free(body);
		return;
	}
	p = calloc(1, sizeof(*p));
	p->req = req;
	p->conn = evhttp_request_get_connection(req);
	p->status = status;
	p->content_type = strdup(ctype);
	p->body = body;
	p->stream = stream;
	p->drip_ms = drip ? b->drip_ms : 0;
	base = evhttp_connection_get_base(p->conn);
	fd = bufferevent_getfd(evhttp_connection_get_bufferevent(p->conn));
	evhttp_connection_set_closecb(p->conn, pending_closed, p);
	p->gone = event_new(base, fd, EV_CLOSED, pending_gone, p);
	event_add(p->gone, NULL);
	if (drip && b->delay_ms <= 0)
		drip_next(p);			/* the first event now */
	else if (!b->stall)
	{
		struct timeval tv = {b->delay_ms / 1000, (b->delay_ms % 1000) * 1000};

		p->timer = evtimer_new(base, pending_fire, p);
		evtimer_add(p->timer, &tv);
	}
}

/* An evbuffer holding the compact JSON of v (v is released) */
static struct evbuffer *
json_buffer(json_t *v)
{
	struct evbuffer *buf = evbuffer_new();
	char	   *s = json_dumps(v, JSON_COMPACT);

	/* v is NULL only if a string was not UTF-8: answer an empty body then */
	if (s)
		evbuffer_add(buf, s, strlen(s));
	free(s);
	json_decref(v);
	return buf;
}

/* Wire formats the mock speaks */
typedef enum Format
{
	FMT_OPENAI,					/* OpenAI, Azure and compatible servers */
	FMT_ANTHROPIC,
	FMT_GEMINI,
	FMT_RESPONSES				/* OpenAI Responses: corpus replay and echo_body only */
} Format;

/* Send an OpenAI error body with the given status */
static void
reply_error(struct evhttp_request *req, const Behaviour *b, int status,
			const char *message, const char *type, const char *code, const char *param)
{
	json_t	   *err = json_pack("{s:{s:s, s:s, s:o, s:o}}",
								"error", "message", message, "type", type,
								"param", param ? json_string(param) : json_null(),
								"code", code ? json_string(code) : json_null());

	if (status == 429 && !b->quota)
	{
		struct evkeyvalq *h = evhttp_request_get_output_headers(req);

		evhttp_add_header(h, "retry-after", "1");
		evhttp_add_header(h, "x-ratelimit-reset-requests", "1s");
	}
	reply(req, b, status, "application/json", json_buffer(err), false);
}

/* OpenAI error of a status directive (or of quota / context) */
static void
openai_failure(struct evhttp_request *req, const Behaviour *b, const char *model)
{
	char		msg[512];

	if (b->quota)
		reply_error(req, b, 429, "You exceeded your current quota, please check your plan and billing details.",
					"insufficient_quota", "insufficient_quota", NULL);
	else if (b->context)
		reply_error(req, b, 400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
					"invalid_request_error", "context_length_exceeded", "messages");
	else
		switch (b->status)
		{
			case 400:
				reply_error(req, b, 400, "mock error 400", "invalid_request_error", "invalid_request", NULL);
				break;
			case 401:
				reply_error(req, b, 401, "Incorrect API key provided: sk-mo***key. You can find your API key at https://platform.openai.com/account/api-keys.",
							"invalid_request_error", "invalid_api_key", NULL);
				break;
			case 403:
				reply_error(req, b, 403, "mock error 403", "invalid_request_error", "permission_denied", NULL);
				break;
			case 404:
				snprintf(msg, sizeof(msg), "The model `%s` does not exist or you do not have access to it.", model);
				reply_error(req, b, 404, msg, "invalid_request_error", "model_not_found", NULL);
				break;
			case 413:
				reply_error(req, b, 413, "Request too large: the request body exceeds the maximum allowed size.",
							"invalid_request_error", "request_too_large", NULL);
				break;
			case 429:
				reply_error(req, b, 429, "Rate limit reached for requests", "requests", "rate_limit_exceeded", NULL);
				break;
			case 500:
				reply_error(req, b, 500, "The server had an error while processing your request.", "server_error", "server_error", NULL);
				break;
			case 503:
				reply_error(req, b, 503, "The engine is currently overloaded, please try again later", "server_error", "overloaded", NULL);
				break;
			default:
				snprintf(msg, sizeof(msg), "mock error %d", b->status);
				reply_error(req, b, b->status, msg, "server_error", NULL, NULL);
				break;
		}
}

/* Anthropic error envelope */
static void
anthropic_failure(struct evhttp_request *req, const Behaviour *b, const char *model)
{
	int			status = b->quota ? 400 : b->context ? 400 : b->status;
	const char *type;
	const char *msg;

	if (b->quota)
		type = "billing_error", msg = "Your credit balance is too low to access the Anthropic API.";
	else if (b->context)
		type = "invalid_request_error", msg = "prompt is too long: 210000 tokens > 200000 maximum";
	else
		switch (status)
		{
			case 401:
				type = "authentication_error", msg = "invalid x-api-key";
				break;
			case 403:
				type = "permission_error", msg = "Your API key does not have permission to use the specified resource.";
				break;
			case 404:
				type = "not_found_error", msg = "model: not found";
				break;
			case 413:
				type = "request_too_large", msg = "Request exceeds the maximum allowed number of bytes.";
				break;
			case 429:
				type = "rate_limit_error", msg = "Number of request tokens has exceeded your per-minute rate limit";
				evhttp_add_header(evhttp_request_get_output_headers(req), "retry-after", "1");
				break;
			case 500:
				type = "api_error", msg = "Internal server error";
				break;
			case 503:
			case 529:
				type = "overloaded_error", msg = "Overloaded";
				break;
			default:
				type = "invalid_request_error", msg = "mock error";
				break;
		}
	(void) model;
	reply(req, b, status, "application/json",
		  json_buffer(json_pack("{s:s, s:{s:s, s:s}, s:s}", "type", "error", "error",
								"type", type, "message", msg, "request_id", "req_mock")), false);
}

/* Gemini google.rpc.Status error */
static void
gemini_failure(struct evhttp_request *req, const Behaviour *b, const char *model)
{
	int			status = b->quota ? 429 : b->context ? 400 : b->status;
	const char *st;
	const char *msg;
	json_t	   *details = json_array();

	if (b->context)
		st = "INVALID_ARGUMENT", msg = "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).";
	else
		switch (status)
		{
			case 401:
				status = 400;
				st = "INVALID_ARGUMENT", msg = "API key not valid. Please pass a valid API key.";
				json_array_append_new(details, json_pack("{s:s, s:s, s:s}", "@type", "type.googleapis.com/google.rpc.ErrorInfo",
														 "reason", "API_KEY_INVALID", "domain", "googleapis.com"));
				break;
			case 403:
				st = "PERMISSION_DENIED", msg = "Method doesn't allow unregistered callers.";
				break;
			case 404:
				st = "NOT_FOUND", msg = "models/x is not found for API version v1beta.";
				break;
			case 413:
				st = "INVALID_ARGUMENT", msg = "Request payload size exceeds the limit: 20971520 bytes.";
				break;
			case 429:
				st = "RESOURCE_EXHAUSTED", msg = "You exceeded your current quota, please check your plan and billing details.";
				json_array_append_new(details, json_pack("{s:s, s:s}", "@type", "type.googleapis.com/google.rpc.RetryInfo",
														 "retryDelay", "2s"));
				break;
			case 500:
				st = "INTERNAL", msg = "An internal error has occurred.";
				break;
			case 503:
				st = "UNAVAILABLE", msg = "The model is overloaded. Please try again later.";
				break;
			default:
				st = "INVALID_ARGUMENT", msg = "Request contains an invalid argument.";
				break;
		}
	(void) model;
	reply(req, b, status, "application/json",
		  json_buffer(json_pack("{s:{s:i, s:s, s:s, s:o}}", "error", "code", status,
								"message", msg, "status", st, "details", details)), false);
}

/* The failure a directive asks for, in the request's format */
static void
send_failure(struct evhttp_request *req, const Behaviour *b, Format fmt, const char *model)
{
	if (b->malformed)
	{
		struct evbuffer *buf = evbuffer_new();

		evbuffer_add_printf(buf, "{\"id\": \"broken\", \"choices\": [");
		reply(req, b, 200, "application/json", buf, false);
	}
	else if (fmt == FMT_ANTHROPIC)
		anthropic_failure(req, b, model);
	else if (fmt == FMT_GEMINI)
		gemini_failure(req, b, model);
	else
		openai_failure(req, b, model);
}

/* The request body as a NUL-terminated string (caller frees) */
static char *
request_body(struct evhttp_request *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	char	   *s;

	*len = evbuffer_get_length(in);
	s = malloc(*len + 1);
	evbuffer_copyout(in, s, *len);
	s[*len] = '\0';
	return s;
}

/* The usage object of a chat answer */
static json_t *
chat_usage(const Behaviour *b, long prompt, long completion)
{
	json_t	   *u = json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t) prompt,
							  "completion_tokens", (json_int_t) completion,
							  "total_tokens", (json_int_t) (prompt + completion));

	if (b->cached >= 0)
		json_object_set_new(u, "prompt_tokens_details",
							json_pack("{s:I}", "cached_tokens", (json_int_t) b->cached));
	if (b->reasoning >= 0)
		json_object_set_new(u, "completion_tokens_details",
							json_pack("{s:I}", "reasoning_tokens", (json_int_t) b->reasoning));
	return u;
}

/* The first max_words words of text (all when max_words < 0) */
static char *
first_words(const char *text, long max_words, bool *cut)
{
	const char *p = text;
	long		n = 0;
	bool		in = false;

	*cut = false;
	for (; *p; p++)
	{
		bool		space = is_space(*p);

		if (!space && !in && ++n > max_words && max_words >= 0)
		{
			*cut = true;
			while (p > text && is_space(p[-1]))
				p--;
			return strndup(text, p - text);
		}
		in = !space;
	}
	return strdup(text);
}

/* A chat completion whose content is `size` bytes of 'x', built in place */
static struct evbuffer *
huge_body(const char *model, long id, long prompt, long size)
{
	struct evbuffer *buf = evbuffer_new();
	json_t	   *name = json_string(model);
	char	   *quoted = json_dumps(name, JSON_ENCODE_ANY);
	struct evbuffer_iovec vec;

	evbuffer_add_printf(buf, "{\"id\":\"chatcmpl-mock-%ld\",\"object\":\"chat.completion\","
						"\"created\":1700000000,\"model\":%s,\"choices\":[{\"index\":0,"
						"\"message\":{\"role\":\"assistant\",\"content\":\"", id, quoted);
	if (evbuffer_reserve_space(buf, size, &vec, 1) != 1)
		abort();
	memset(vec.iov_base, 'x', size);
	vec.iov_len = size;
	evbuffer_commit_space(buf, &vec, 1);
	evbuffer_add_printf(buf, "\"},\"finish_reason\":\"stop\"}],\"usage\":"
						"{\"prompt_tokens\":%ld,\"completion_tokens\":1,\"total_tokens\":%ld}}",
						prompt, prompt + 1);
	free(quoted);
	json_decref(name);
	return buf;
}

/*
 * Append one SSE event carrying payload, framed as the format frames it:
 * "event: NAME" first when named, CRLF line ends for Gemini
 */
static void
add_raw_event(struct evbuffer *buf, Format fmt, const char *event, const char *payload)
{
	const char *eol = fmt == FMT_GEMINI ? "\r\n" : "\n";

	if (event)
		evbuffer_add_printf(buf, "event: %s%s", event, eol);
	evbuffer_add_printf(buf, "data: %s%s%s", payload, eol, eol);
}

/*
 * Append one SSE event holding the compact JSON of chunk (released); an
 * Anthropic event is named by its "type", as Anthropic names them
 */
static void
add_event(struct evbuffer *buf, Format fmt, json_t *chunk)
{
	char	   *s = json_dumps(chunk, JSON_COMPACT);

	add_raw_event(buf, fmt, fmt == FMT_ANTHROPIC ?
				  json_string_value(json_object_get(chunk, "type")) : NULL, s ? s : "null");
	free(s);
	json_decref(chunk);
}

/* Append the malformed JSON event of the garbage directive, in the format's shape */
static void
add_garbage(struct evbuffer *buf, Format fmt)
{
	if (fmt == FMT_ANTHROPIC)
		add_raw_event(buf, fmt, "content_block_delta",
					  "{\"type\": \"content_block_delta\", \"index\": 0, \"delta\": ");
	else if (fmt == FMT_GEMINI)
		add_raw_event(buf, fmt, NULL, "{\"candidates\": [{\"content\": ");
	else
		add_raw_event(buf, fmt, NULL, "{\"choices\": [{\"delta\": ");
}

/* The in-stream error event of the stream_error directive, in the format's shape */
static json_t *
stream_error_event(Format fmt)
{
	if (fmt == FMT_ANTHROPIC)
		return json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error",
						 "type", "overloaded_error", "message", "Overloaded");
	if (fmt == FMT_GEMINI)
		return json_pack("{s:{s:i, s:s, s:s}}", "error", "code", 500,
						 "message", "mock stream error", "status", "INTERNAL");
	return json_pack("{s:{s:s, s:s, s:s}}", "error", "message", "mock stream error",
					 "type", "server_error", "code", "server_error");
}

/*
 * Append the end of a stream: its terminal event (released), nothing with
 * truncate, or the format's error event instead with stream_error
 */
static void
end_stream(struct evbuffer *buf, Format fmt, const Behaviour *b, json_t *terminal)
{
	if (b->stream_error || b->truncate)
	{
		json_decref(terminal);
		if (b->stream_error)
			add_event(buf, fmt, stream_error_event(fmt));
	}
	else if (terminal)
		add_event(buf, fmt, terminal);
	else
		add_raw_event(buf, fmt, NULL, "[DONE]");
}

/* Why an answer stopped, in the format's own words */
static const char *
finish_reason(Format fmt, const Behaviour *b, bool tool, bool cut)
{
	if (fmt == FMT_ANTHROPIC)
		return b->filtered ? "refusal" : tool ? "tool_use" : cut ? "max_tokens" : "end_turn";
	if (fmt == FMT_GEMINI)
		return b->filtered ? "SAFETY" : cut ? "MAX_TOKENS" : "STOP";
	return b->filtered ? "content_filter" : tool ? "tool_calls" : cut ? "length" : "stop";
}

/* The words of text as a streamed answer sends them: every word after the first led by a space */
static json_t *
stream_pieces(const char *text)
{
	json_t	   *pieces = json_array();
	char	   *copy = strdup(text);
	char	   *save = NULL;

	for (char *w = strtok_r(copy, WORD_SEPARATORS, &save); w;
		 w = strtok_r(NULL, WORD_SEPARATORS, &save))
		json_array_append_new(pieces, json_sprintf("%s%s", json_array_size(pieces) ? " " : "", w));
	free(copy);
	return pieces;
}

/*
 * OpenAI's logprobs of a piece of the answer: one entry per piece, each
 * with top top_logprobs alternatives (the piece itself first), a log
 * probability of -0.125 less one per alternative's rank, and its bytes
 */
static json_t *
logprob_entry(const char *token, int rank)
{
	json_t	   *bytes = json_array();

	for (const unsigned char *p = (const unsigned char *) token; *p; p++)
		json_array_append_new(bytes, json_integer(*p));
	return json_pack("{s:s, s:f, s:o}", "token", token, "logprob", -0.125 - rank, "bytes", bytes);
}

/* (pieces: the answer's pieces, stolen) */
static json_t *
logprobs_of(json_t *pieces, int top)
{
	json_t	   *content = json_array();
	size_t		i;
	json_t	   *piece;

	json_array_foreach(pieces, i, piece)
	{
		json_t	   *e = logprob_entry(json_string_value(piece), 0);
		json_t	   *alts = json_array();

		for (int k = 0; k < top; k++)
			json_array_append_new(alts, k == 0 ? logprob_entry(json_string_value(piece), 0) :
								  logprob_entry(k == 1 ? "maybe" : "other", k));
		json_object_set_new(e, "top_logprobs", alts);
		json_array_append_new(content, e);
	}
	json_decref(pieces);
	return json_pack("{s:o, s:n}", "content", content, "refusal");
}

/* A chat.completion.chunk object with the given choices (stolen) */
static json_t *
chunk_object(const char *id, const char *model, json_t *choices)
{
	return json_pack("{s:s, s:s, s:i, s:s, s:o}", "id", id, "object", "chat.completion.chunk",
					 "created", 1700000000, "model", model, "choices", choices);
}

/* A chat.completion.chunk with one choice whose delta is given (stolen), no finish yet */
static json_t *
delta_chunk(const char *id, const char *model, json_t *delta)
{
	return chunk_object(id, model, json_pack("[{s:i, s:o, s:n}]", "index", 0, "delta", delta,
											 "finish_reason"));
}

/*
 * The calls of a tool_calls:N answer: call k's id (the first keeps the
 * single call's), and its arguments: with more than one call the first
 * takes none ({}), the others {"city": "Paris"}
 */
static char *
tool_id(const char *prefix, int k)
{
	static __thread char id[32];

	if (k == 0)
		snprintf(id, sizeof(id), "%s_mock", prefix);
	else
		snprintf(id, sizeof(id), "%s_mock_%d", prefix, k);
	return id;
}

static bool
tool_has_args(const Behaviour *b, int k)
{
	return b->tool_calls == 1 || k > 0;
}

/*
 * SSE chunks of a streamed chat completion: the reasoning (if any) one word
 * per chunk as reasoning_content, then one word per chunk (or each call of
 * tool in pieces: its id and name, then its arguments in two pieces, or
 * "{}" in one), the finish chunk, the usage chunk, [DONE]
 */
static struct evbuffer *
stream_body(const Behaviour *b, const char *model, const char *id, const char *reasoning,
			const char *text, const char *tool, const char *finish, const char *stopped,
			json_t *usage, int logprobs)
{
	struct evbuffer *buf = evbuffer_new();
	json_t	   *pieces = tool ? json_array() : stream_pieces(text);
	json_t	   *thoughts = reasoning ? stream_pieces(reasoning) : json_array();
	size_t		i;
	json_t	   *piece;
	bool		first = true;

	json_array_foreach(thoughts, i, piece)
	{
		add_event(buf, FMT_OPENAI, delta_chunk(id, model, first ?
											   json_pack("{s:s, s:n, s:O}", "role", "assistant", "content",
														 "reasoning_content", piece) :
											   json_pack("{s:n, s:O}", "content", "reasoning_content", piece)));
		first = false;
	}
	json_decref(thoughts);

	for (int k = 0; tool && k < b->tool_calls; k++)
	{
		json_t	   *start = json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls",
									  "index", k, "id", tool_id("call", k), "type", "function",
									  "function", "name", tool, "arguments", "");

		if (k == 0)
		{
			json_object_set_new(start, "role", json_string("assistant"));
			json_object_set_new(start, "content", json_null());
		}
		add_event(buf, FMT_OPENAI, delta_chunk(id, model, start));
		if (k == 0 && b->garbage)
			add_garbage(buf, FMT_OPENAI);
		for (int p = 0; p < (tool_has_args(b, k) ? 2 : 1); p++)
			add_event(buf, FMT_OPENAI, delta_chunk(id, model,
												   json_pack("{s:[{s:i, s:{s:s}}]}", "tool_calls", "index", k,
															 "function", "arguments",
															 !tool_has_args(b, k) ? "{}" :
															 p == 0 ? "{\"city\":" : "\"Paris\"}")));
		first = false;
	}
	json_array_foreach(pieces, i, piece)
	{
		json_t	   *delta = first ? json_pack("{s:s, s:O}", "role", "assistant", "content", piece)
			: json_pack("{s:O}", "content", piece);
		json_t	   *chunk = delta_chunk(id, model, delta);

		/* logprobs: the piece's, in its chunk */
		if (logprobs >= 0)
			json_object_set_new(json_array_get(json_object_get(chunk, "choices"), 0), "logprobs",
								logprobs_of(json_pack("[O]", piece), logprobs));
		add_event(buf, FMT_OPENAI, chunk);
		if (first && b->garbage)
			add_garbage(buf, FMT_OPENAI);
		first = false;
	}
	json_decref(pieces);
	if (first && b->garbage)
		add_garbage(buf, FMT_OPENAI);	/* no content chunk: before the finish */
	{
		json_t	   *last = json_pack("{s:i, s:{}, s:s}", "index", 0, "delta", "finish_reason", finish);

		if (b->stop_reason)
			json_object_set_new(last, "stop_reason", stopped ? json_string(stopped) : json_null());
		add_event(buf, FMT_OPENAI, chunk_object(id, model, json_pack("[o]", last)));
	}
	if (usage)
	{
		json_t	   *c = chunk_object(id, model, json_array());

		json_object_set(c, "usage", usage);
		add_event(buf, FMT_OPENAI, c);
	}
	end_stream(buf, FMT_OPENAI, b, NULL);
	return buf;
}

/* Read the behaviour of a request from its model and x-mock header */
static void
read_behaviour(struct evhttp_request *req, const char *model, Behaviour *b)
{
	const char *hdr = evhttp_find_header(evhttp_request_get_input_headers(req), "x-mock");

	memset(b, 0, sizeof(*b));
	b->fail_first = -1;
	b->cached = -1;
	b->reasoning = -1;
	b->cache_write = -1;
	b->dim = 8;
	apply_directives(b, model, true);
	if (hdr)
		apply_directives(b, hdr, false);
	if (b->status != 0 && (b->status < 100 || b->status > 599))
		b->status = 500;
	if (b->huge > MAX_HUGE)
		b->huge = MAX_HUGE;
	if (b->words > MAX_WORDS)
		b->words = MAX_WORDS;
}

/*
 * Is the request's error directive to be applied now?  fail_first and
 * fail_every count the broken-stream and filtered directives too: a request
 * they spare loses those.
 */
static bool
should_fail(Behaviour *b, const char *model)
{
	bool		error = b->status || b->quota || b->context || b->malformed;
	bool		broken = b->truncate || b->garbage || b->stream_error || b->filtered;

	if (count_model(model, error || broken, b->fail_first, b->fail_every))
		return error;
	b->truncate = b->garbage = b->stream_error = b->filtered = false;
	return false;
}

/* A chat request, whatever its format */
typedef struct Chat
{
	const char *last_user;		/* text of the last user message */
	long		prompt;			/* words of all messages + 3 per message */
	long		max_tokens;		/* -1: none */
	const char *tool;			/* name of the first tool offered, or NULL */
	bool		stream;
	bool		include_usage;
	int			logprobs;		/* OpenAI: -1 none asked for, else top_logprobs */
	bool		thinking;		/* Anthropic: extended thinking asked for */
	bool		unsigned_call;	/* Gemini: a model turn's function calls without
								 * a thought signature on the first */
	bool		bad_signature;	/* Anthropic: a thinking block sent back altered */
	bool		tool_result;	/* OpenAI, Anthropic: a tool's result is in the conversation */
	json_t	   *stops;			/* stop sequences: a string or an array of them (borrowed) */
} Chat;

/*
 * The signature of a thinking block the mock gave: "mocksig-" and a hash of
 * its text (FNV-1a), so a block sent back altered or without it is told
 * apart, as Anthropic does (malloc'd)
 */
static char *
thinking_signature(const char *text)
{
	uint64_t	h = 14695981039346656037ULL;
	char	   *s;

	for (const unsigned char *p = (const unsigned char *) text; *p; p++)
		h = (h ^ *p) * 1099511628211ULL;
	if (asprintf(&s, "mocksig-%016llx", (unsigned long long) h) < 0)
		abort();
	return s;
}

/* Is this Anthropic content block a thinking block with the mock's signature? */
static bool
signed_thinking(json_t *block)
{
	const char *text = json_string_value(json_object_get(block, "thinking"));
	const char *signature = json_string_value(json_object_get(block, "signature"));
	char	   *expected;
	bool		ok;

	if (text == NULL || signature == NULL)
		return false;
	expected = thinking_signature(text);
	ok = strcmp(expected, signature) == 0;
	free(expected);
	return ok;
}

/* Count the words of an OpenAI/Anthropic content (string or typed blocks) */
static long
content_words(json_t *content, const char **text)
{
	size_t		i;
	json_t	   *part;
	long		n = 0;

	if (json_is_string(content))
	{
		*text = json_string_value(content);
		return count_words(*text);
	}
	json_array_foreach(content, i, part)
	{
		const char *t = json_string_value(json_object_get(part, "text"));

		if (t)
		{
			*text = t;
			n += count_words(t);
		}
	}
	return n;
}

/* Read an OpenAI or Anthropic request (messages[], max_tokens, tools[]) */
static bool
read_messages_request(json_t *root, Format fmt, Chat *c)
{
	json_t	   *messages = json_object_get(root, "messages");
	json_t	   *maxt = json_object_get(root, "max_tokens");
	json_t	   *tool = json_array_get(json_object_get(root, "tools"), 0);
	size_t		i;
	json_t	   *m;

	if (!json_is_array(messages))
		return false;
	memset(c, 0, sizeof(*c));
	c->last_user = "";
	c->max_tokens = json_is_integer(maxt) ? (long) json_integer_value(maxt) : -1;
	c->tool = json_string_value(fmt == FMT_OPENAI ?
								json_object_get(json_object_get(tool, "function"), "name") :
								json_object_get(tool, "name"));
	c->stream = json_is_true(json_object_get(root, "stream"));
	c->stops = json_object_get(root, fmt == FMT_ANTHROPIC ? "stop_sequences" : "stop");
	c->include_usage = json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
	c->logprobs = !json_is_true(json_object_get(root, "logprobs")) ? -1 :
		(int) json_integer_value(json_object_get(root, "top_logprobs"));
	if (json_object_get(root, "system"))
	{
		const char *ignored;

		c->prompt += 3 + content_words(json_object_get(root, "system"), &ignored);
	}
	if (fmt == FMT_ANTHROPIC)
	{
		const char *type = json_string_value(json_object_get(json_object_get(root, "thinking"), "type"));

		c->thinking = type && (strcmp(type, "enabled") == 0 || strcmp(type, "adaptive") == 0);
	}
	json_array_foreach(messages, i, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		const char *text = NULL;
		size_t		k;
		json_t	   *block;

		c->prompt += 3 + content_words(json_object_get(m, "content"), &text);
		if (role && strcmp(role, "user") == 0 && text)
			c->last_user = text;
		if (role && strcmp(role, "tool") == 0)
			c->tool_result = true;
		json_array_foreach(json_object_get(m, "content"), k, block)
		{
			const char *type = json_string_value(json_object_get(block, "type"));

			if (fmt == FMT_ANTHROPIC && type && strcmp(type, "thinking") == 0 &&
				!signed_thinking(block))
				c->bad_signature = true;
			if (type && strcmp(type, "tool_result") == 0)
				c->tool_result = true;
		}
	}
	return true;
}

/*
 * Read a Gemini request (contents[].parts[], systemInstruction,
 * generationConfig); whether it streams comes from its path
 */
static bool
read_gemini_request(json_t *root, bool stream, Chat *c)
{
	json_t	   *contents = json_object_get(root, "contents");
	json_t	   *maxt = json_object_get(json_object_get(root, "generationConfig"), "maxOutputTokens");
	json_t	   *sys = json_object_get(json_object_get(root, "systemInstruction"), "parts");
	json_t	   *decl = json_array_get(json_object_get(json_array_get(json_object_get(root, "tools"), 0),
													  "functionDeclarations"), 0);
	size_t		i;
	json_t	   *m;
	const char *ignored;

	if (!json_is_array(contents))
		return false;
	memset(c, 0, sizeof(*c));
	c->last_user = "";
	c->max_tokens = json_is_integer(maxt) ? (long) json_integer_value(maxt) : -1;
	c->tool = json_string_value(json_object_get(decl, "name"));
	c->stream = stream;
	c->stops = json_object_get(json_object_get(root, "generationConfig"), "stopSequences");
	c->thinking = json_is_true(json_object_get(json_object_get(json_object_get(root, "generationConfig"),
															   "thinkingConfig"), "includeThoughts"));
	c->logprobs = !json_is_true(json_object_get(json_object_get(root, "generationConfig"), "responseLogprobs")) ?
		-1 : (int) json_integer_value(json_object_get(json_object_get(root, "generationConfig"), "logprobs"));
	if (sys)
		c->prompt += 3 + content_words(sys, &ignored);
	json_array_foreach(contents, i, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		const char *text = NULL;
		size_t		k;
		json_t	   *part;

		json_array_foreach(json_object_get(m, "parts"), k, part)
		{
			if (json_object_get(part, "functionCall") == NULL)
				continue;
			if (!json_is_string(json_object_get(part, "thoughtSignature")))
				c->unsigned_call = true;
			break;				/* the first call of the turn carries it */
		}
		c->prompt += 3 + content_words(json_object_get(m, "parts"), &text);
		if ((role == NULL || strcmp(role, "user") == 0) && text)
			c->last_user = text;
	}
	return true;
}

/* The answer of words:N: "w1 w2 ... wN" */
static char *
numbered_words(long n)
{
	struct evbuffer *buf = evbuffer_new();
	size_t		len;
	char	   *s;

	for (long i = 1; i <= n; i++)
		evbuffer_add_printf(buf, "%sw%ld", i > 1 ? " " : "", i);
	len = evbuffer_get_length(buf);
	s = malloc(len + 1);
	evbuffer_remove(buf, s, len);
	s[len] = '\0';
	evbuffer_free(buf);
	return s;
}

/*
 * Cut text at the first of the request's stop sequences it holds; the
 * sequence, or NULL when none is in it
 */
static const char *
cut_at_stop(char *text, json_t *stops)
{
	char	   *first = NULL;
	const char *which = NULL;

	for (size_t i = 0; i < (json_is_array(stops) ? json_array_size(stops) : 1); i++)
	{
		const char *stop = json_string_value(json_is_array(stops) ? json_array_get(stops, i) : stops);
		char	   *at = stop && *stop ? strstr(text, stop) : NULL;

		if (at && (first == NULL || at < first))
		{
			first = at;
			which = stop;
		}
	}
	if (first)
		*first = '\0';
	return which;
}

/*
 * The deterministic answer: text, whether it was cut, its word count, and
 * (when stopped is given) the stop sequence that ended it, or NULL
 */
static char *
answer(struct evhttp_request *req, const Behaviour *b, const Chat *c, bool *cut, long *completion,
	   const char **stopped)
{
	char	   *full;
	char	   *text;

	if (b->echo_auth)
	{
		struct evkeyvalq *in = evhttp_request_get_input_headers(req);
		const char *auth = evhttp_find_header(in, "Authorization");

		if (auth == NULL)
			auth = evhttp_find_header(in, "x-api-key");
		if (auth == NULL)
			auth = evhttp_find_header(in, "x-goog-api-key");
		if (auth == NULL)
			auth = evhttp_find_header(in, "api-key");
		full = printable(strdup(auth ? auth : ""));
	}
	else if (b->echo)
		full = strdup(b->echo);
	else if (b->words > 0)
		full = numbered_words(b->words);
	else if (asprintf(&full, "Hello! You said: %s", c->last_user) < 0)
		abort();
	if (stopped)				/* (an echo is shown whole) */
		*stopped = b->echo_auth || b->echo ? NULL : cut_at_stop(full, c->stops);
	text = first_words(full, c->max_tokens, cut);
	if (stopped && *cut)
		*stopped = NULL;		/* the token limit came first */
	free(full);
	*completion = count_words(text);
	return text;
}

/* OpenAI chat.completion, or its stream */
static void
reply_openai(struct evhttp_request *req, const Behaviour *b, const Chat *c, const char *model)
{
	bool		cut;
	long		completion;
	const char *stopped;
	char	   *text = answer(req, b, c, &cut, &completion, &stopped);
	json_t	   *usage = b->nousage ? NULL : chat_usage(b, c->prompt, completion);
	bool		tool = b->tool_calls > 0 && c->tool && !(b->tool_once && c->tool_result);
	const char *finish = finish_reason(FMT_OPENAI, b, tool, cut);
	char		id[64];
	char	   *reasoning = NULL;

	/* reasoning:N: reasoning_content beside the answer, as DeepSeek and vLLM give it */
	if (b->reasoning > 0 && asprintf(&reasoning, "Reasoning about: %s", c->last_user) < 0)
		abort();

	snprintf(id, sizeof(id), "chatcmpl-mock-%ld", atomic_fetch_add(&next_id, 1));
	if (c->stream)
	{
		reply(req, b, 200, "text/event-stream",
			  stream_body(b, model, id, reasoning, text, tool ? c->tool : NULL, finish, stopped,
						  c->include_usage ? usage : NULL, c->logprobs), true);
		json_decref(usage);
	}
	else
	{
		json_t	   *message = tool ?
			json_pack("{s:s, s:n, s:[]}", "role", "assistant", "content", "tool_calls") :
			json_pack("{s:s, s:s}", "role", "assistant", "content", text);
		json_t	   *out;

		for (int k = 0; tool && k < b->tool_calls; k++)
			json_array_append_new(json_object_get(message, "tool_calls"),
								  json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", tool_id("call", k),
											"type", "function", "function", "name", c->tool,
											"arguments", tool_has_args(b, k) ? "{\"city\":\"Paris\"}" : "{}"));
		if (reasoning)
			json_object_set_new(message, "reasoning_content", json_string(reasoning));

		out = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:o, s:s}]}",
						"id", id, "object", "chat.completion", "created", 1700000000,
						"model", model, "choices", "index", 0, "message", message,
						"finish_reason", finish);
		if (usage)
			json_object_set_new(out, "usage", usage);
		if (b->stop_reason)
			json_object_set_new(json_array_get(json_object_get(out, "choices"), 0), "stop_reason",
								stopped ? json_string(stopped) : json_null());
		/* logprobs: one entry per piece of the text as it would be streamed */
		if (c->logprobs >= 0 && !tool)
			json_object_set_new(json_array_get(json_object_get(out, "choices"), 0), "logprobs",
								logprobs_of(stream_pieces(text), c->logprobs));
		reply(req, b, 200, "application/json", json_buffer(out), false);
	}
	free(reasoning);
	free(text);
}

/* Anthropic usage with this many output tokens */
static json_t *
anthropic_usage(const Behaviour *b, const Chat *c, long output)
{
	/* input_tokens excludes cache reads and writes, as Anthropic reports it */
	long		read = b->cached > 0 ? b->cached : 0;
	long		write = b->cache_write > 0 ? b->cache_write : 0;

	return json_pack("{s:I, s:I, s:I, s:I}",
					 "input_tokens", (json_int_t) (c->prompt - read - write),
					 "cache_creation_input_tokens", (json_int_t) write,
					 "cache_read_input_tokens", (json_int_t) read,
					 "output_tokens", (json_int_t) output);
}

/* A content_block_delta event of a block (the delta is stolen) */
static json_t *
block_delta(int index, json_t *delta)
{
	return json_pack("{s:s, s:i, s:o}", "type", "content_block_delta", "index", index, "delta", delta);
}

/* Call k of a tool_calls:N answer as a tool_use block, its input whole or {} (streamed) */
static json_t *
tool_use_block(const Behaviour *b, const Chat *c, int k, bool whole)
{
	return json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", tool_id("toolu", k),
					 "name", c->tool, "input", whole && tool_has_args(b, k) ?
					 json_pack("{s:s}", "city", "Paris") : json_object());
}

/*
 * SSE events of a streamed Anthropic message: message_start (usage with
 * output_tokens 1), with extended thinking a thinking block (one
 * thinking_delta per word, then its signature_delta), a text block with
 * one text_delta per word (or a
 * tool_use block whose input comes in two input_json_delta pieces),
 * message_delta with the stop reason and output_tokens, message_stop
 */
static struct evbuffer *
anthropic_stream_body(const Behaviour *b, const Chat *c, const char *model, const char *thinking,
					  const char *text, bool tool, const char *stop, const char *stop_seq,
					  long completion)
{
	struct evbuffer *buf = evbuffer_new();
	json_t	   *message = json_pack("{s:s, s:s, s:s, s:s, s:[], s:n, s:n}",
									"id", "msg_mock", "type", "message", "role", "assistant",
									"model", model, "content", "stop_reason", "stop_sequence");
	json_t	   *pieces = stream_pieces(text);
	json_t	   *delta;
	size_t		i;
	json_t	   *piece;

	int			first = thinking ? 1 : 0;	/* index of the first block after thinking */

	if (!b->nousage)
		json_object_set_new(message, "usage", anthropic_usage(b, c, 1));
	add_event(buf, FMT_ANTHROPIC, json_pack("{s:s, s:o}", "type", "message_start", "message", message));
	if (thinking)
	{
		json_t	   *thoughts = stream_pieces(thinking);
		char	   *signature = thinking_signature(thinking);

		add_event(buf, FMT_ANTHROPIC,
				  json_pack("{s:s, s:i, s:{s:s, s:s, s:s}}", "type", "content_block_start", "index", 0,
							"content_block", "type", "thinking", "thinking", "", "signature", ""));
		json_array_foreach(thoughts, i, piece)
			add_event(buf, FMT_ANTHROPIC, block_delta(0, json_pack("{s:s, s:O}", "type", "thinking_delta",
																   "thinking", piece)));
		add_event(buf, FMT_ANTHROPIC, block_delta(0, json_pack("{s:s, s:s}", "type", "signature_delta",
															   "signature", signature)));
		add_event(buf, FMT_ANTHROPIC, json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0));
		json_decref(thoughts);
		free(signature);
	}
	for (int k = 0; tool && k < b->tool_calls; k++)
	{
		add_event(buf, FMT_ANTHROPIC,
				  json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", first + k,
							"content_block", tool_use_block(b, c, k, false)));
		/* a call without arguments: one empty piece, as Anthropic sends it */
		for (int p = 0; p < (tool_has_args(b, k) ? 2 : 1); p++)
		{
			add_event(buf, FMT_ANTHROPIC,
					  block_delta(first + k, json_pack("{s:s, s:s}", "type", "input_json_delta", "partial_json",
											   !tool_has_args(b, k) ? "" :
											   p == 0 ? "{\"city\": " : "\"Paris\"}")));
			if (k == 0 && p == 0 && b->garbage)
				add_garbage(buf, FMT_ANTHROPIC);
		}
		if (k + 1 < b->tool_calls)
			add_event(buf, FMT_ANTHROPIC, json_pack("{s:s, s:i}", "type", "content_block_stop",
													"index", first + k));
	}
	if (!tool)
	{
		add_event(buf, FMT_ANTHROPIC,
				  json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start", "index", first,
							"content_block", "type", "text", "text", ""));
		json_array_foreach(pieces, i, piece)
		{
			add_event(buf, FMT_ANTHROPIC, block_delta(first, json_pack("{s:s, s:O}", "type", "text_delta",
																	   "text", piece)));
			if (i == 0 && b->garbage)
				add_garbage(buf, FMT_ANTHROPIC);
		}
		if (json_array_size(pieces) == 0 && b->garbage)
			add_garbage(buf, FMT_ANTHROPIC);	/* no text: before the block ends */
	}
	json_decref(pieces);
	add_event(buf, FMT_ANTHROPIC, json_pack("{s:s, s:i}", "type", "content_block_stop",
											"index", first + (tool ? b->tool_calls - 1 : 0)));
	delta = json_pack("{s:s, s:{s:s, s:s?}}", "type", "message_delta", "delta",
					  "stop_reason", stop, "stop_sequence", stop_seq);
	if (!b->nousage)
		json_object_set_new(delta, "usage", json_pack("{s:I}", "output_tokens", (json_int_t) completion));
	add_event(buf, FMT_ANTHROPIC, delta);
	end_stream(buf, FMT_ANTHROPIC, b, json_pack("{s:s}", "type", "message_stop"));
	return buf;
}

/* Anthropic message, or its stream */
static void
reply_anthropic(struct evhttp_request *req, const Behaviour *b, const Chat *c, const char *model)
{
	bool		cut;
	long		completion;
	const char *stopped;
	char	   *text = answer(req, b, c, &cut, &completion, &stopped);
	bool		tool = b->tool_calls > 0 && c->tool && !(b->tool_once && c->tool_result);
	const char *stop = stopped && !tool && !b->filtered ? "stop_sequence" :
		finish_reason(FMT_ANTHROPIC, b, tool, cut);
	json_t	   *content;
	json_t	   *out;
	char	   *thinking = NULL;

	/* extended thinking: a block of its own first, its words billed as output */
	if (c->thinking && asprintf(&thinking, "Thinking about: %s", c->last_user) < 0)
		abort();
	if (thinking)
		completion += count_words(thinking);
	if (c->stream)
	{
		reply(req, b, 200, "text/event-stream",
			  anthropic_stream_body(b, c, model, thinking, text, tool, stop,
									strcmp(stop, "stop_sequence") == 0 ? stopped : NULL, completion), true);
		free(thinking);
		free(text);
		return;
	}
	content = tool ? json_array() : json_pack("[{s:s, s:s}]", "type", "text", "text", text);
	if (thinking)
	{
		char	   *signature = thinking_signature(thinking);

		json_array_insert_new(content, 0, json_pack("{s:s, s:s, s:s}", "type", "thinking",
													"thinking", thinking, "signature", signature));
		free(signature);
		free(thinking);
	}
	for (int k = 0; tool && k < b->tool_calls; k++)
		json_array_append_new(content, tool_use_block(b, c, k, true));
	out = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:s?}",
					"id", "msg_mock", "type", "message", "role", "assistant",
					"model", model, "content", content, "stop_reason", stop, "stop_sequence",
					strcmp(stop, "stop_sequence") == 0 ? stopped : NULL);
	if (!b->nousage)
		json_object_set_new(out, "usage", anthropic_usage(b, c, completion));
	reply(req, b, 200, "application/json", json_buffer(out), false);
	free(text);
}

/* Gemini usageMetadata after this many answer tokens */
static json_t *
gemini_usage(const Behaviour *b, const Chat *c, long completion)
{
	/* Gemini omits zero counters and reports thinking apart */
	json_t	   *u = json_pack("{s:I, s:I}", "promptTokenCount", (json_int_t) c->prompt,
							  "totalTokenCount",
							  (json_int_t) (c->prompt + completion + (b->reasoning > 0 ? b->reasoning : 0)));

	if (completion > 0)
		json_object_set_new(u, "candidatesTokenCount", json_integer(completion));
	if (b->reasoning > 0)
		json_object_set_new(u, "thoughtsTokenCount", json_integer(b->reasoning));
	if (b->cached > 0)
		json_object_set_new(u, "cachedContentTokenCount", json_integer(b->cached));
	return u;
}

/*
 * A GenerateContentResponse with one candidate of these parts (stolen),
 * its finishReason if finish is not NULL, and the usage after completion
 * answer tokens (none with nousage)
 */
static json_t *
gemini_response(const Behaviour *b, const Chat *c, const char *model, json_t *parts,
				const char *finish, long completion)
{
	json_t	   *candidate = json_pack("{s:{s:s, s:o}}", "content", "role", "model", "parts", parts);
	json_t	   *out;

	if (finish)
		json_object_set_new(candidate, "finishReason", json_string(finish));
	json_object_set_new(candidate, "index", json_integer(0));
	/* responseLogprobs: the text's pieces as chosen candidates, logprobs top ones each */
	if (c->logprobs >= 0)
	{
		json_t	   *chosen = json_array();
		json_t	   *top = json_array();
		size_t		i;
		size_t		j;
		json_t	   *part;
		json_t	   *piece;

		json_array_foreach(parts, i, part)
		{
			json_t	   *pieces;

			if (!json_is_string(json_object_get(part, "text")) || json_object_get(part, "thought"))
				continue;
			pieces = stream_pieces(json_string_value(json_object_get(part, "text")));
			json_array_foreach(pieces, j, piece)
			{
				/* a streamed piece is itself a word led by its space */
				if (j == 0 && json_string_value(json_object_get(part, "text"))[0] == ' ')
					json_string_set(piece, json_string_value(json_object_get(part, "text")));
				json_t	   *alts = json_array();

				json_array_append_new(chosen, json_pack("{s:O, s:f}", "token", piece, "logProbability", -0.125));
				for (int k = 0; k < c->logprobs; k++)
					json_array_append_new(alts, json_pack("{s:s, s:f}", "token",
														  k == 0 ? json_string_value(piece) : "maybe",
														  "logProbability", -0.125 - k));
				json_array_append_new(top, json_pack("{s:o}", "candidates", alts));
			}
			json_decref(pieces);
		}
		json_object_set_new(candidate, "logprobsResult",
							json_pack("{s:o, s:o}", "topCandidates", top, "chosenCandidates", chosen));
	}
	if (finish && b->filtered)
		json_object_set_new(candidate, "safetyRatings",
							json_pack("[{s:s, s:s, s:b}]", "category", "HARM_CATEGORY_DANGEROUS_CONTENT",
									  "probability", "HIGH", "blocked", 1));
	out = json_pack("{s:[o], s:s}", "candidates", candidate, "modelVersion", model);
	if (!b->nousage)
		json_object_set_new(out, "usageMetadata", gemini_usage(b, c, completion));
	return out;
}

/* The functionCall parts of a Gemini tool call answer (Gemini gives them no id) */
static json_t *
gemini_call(const Behaviour *b, const Chat *c)
{
	json_t	   *parts = json_array();

	for (int k = 0; k < b->tool_calls; k++)
	{
		json_t	   *part = json_pack("{s:{s:s, s:o}}", "functionCall", "name", c->tool,
									 "args", tool_has_args(b, k) ?
									 json_pack("{s:s}", "city", "Paris") : json_object());

		/* thought_signatures: as Gemini 3 signs them, on the first call */
		if (b->signatures && k == 0)
			json_object_set_new(part, "thoughtSignature", json_string("mocksig-gemini"));
		json_array_append_new(parts, part);
	}
	return parts;
}

/*
 * SSE chunks of a streamed Gemini answer (CRLF line ends): one chunk per
 * word (or one functionCall chunk), each with the usage so far, then a
 * last chunk with an empty text, the finishReason and the whole usage
 */
static struct evbuffer *
gemini_stream_body(const Behaviour *b, const Chat *c, const char *model, const char *text,
				   bool tool, const char *finish, long completion)
{
	struct evbuffer *buf = evbuffer_new();
	json_t	   *pieces = tool ? json_array() : stream_pieces(text);
	size_t		i;
	json_t	   *piece;

	if (c->thinking)
	{
		char	   *thought = NULL;

		if (asprintf(&thought, "Thinking about: %s", c->last_user) < 0)
			abort();
		add_event(buf, FMT_GEMINI, gemini_response(b, c, model,
												   json_pack("[{s:s, s:b}]", "text", thought, "thought", 1),
												   NULL, 0));
		free(thought);
	}
	if (tool)
	{
		add_event(buf, FMT_GEMINI, gemini_response(b, c, model, gemini_call(b, c), NULL, completion));
		if (b->garbage)
			add_garbage(buf, FMT_GEMINI);
	}
	json_array_foreach(pieces, i, piece)
	{
		add_event(buf, FMT_GEMINI, gemini_response(b, c, model, json_pack("[{s:O}]", "text", piece),
												   NULL, (long) i + 1));
		if (i == 0 && b->garbage)
			add_garbage(buf, FMT_GEMINI);
	}
	if (!tool && json_array_size(pieces) == 0 && b->garbage)
		add_garbage(buf, FMT_GEMINI);	/* no text: before the last chunk */
	json_decref(pieces);
	end_stream(buf, FMT_GEMINI, b,
			   gemini_response(b, c, model, json_pack("[{s:s}]", "text", ""), finish, completion));
	return buf;
}

/* Gemini GenerateContentResponse, or its stream */
static void
reply_gemini(struct evhttp_request *req, const Behaviour *b, const Chat *c, const char *model)
{
	bool		cut;
	long		completion;
	const char *stopped;
	char	   *text = answer(req, b, c, &cut, &completion, &stopped);
	bool		tool = b->tool_calls > 0 && c->tool && !(b->tool_once && c->tool_result);
	const char *finish = finish_reason(FMT_GEMINI, b, tool, cut);

	json_t	   *parts;
	char	   *thought = NULL;

	if (c->stream)
	{
		reply(req, b, 200, "text/event-stream",
			  gemini_stream_body(b, c, model, text, tool, finish, completion), true);
		free(text);
		return;
	}
	parts = tool ? gemini_call(b, c) : json_pack("[{s:s}]", "text", text);
	/* thinkingConfig.includeThoughts: a thought summary first */
	if (c->thinking)
	{
		if (asprintf(&thought, "Thinking about: %s", c->last_user) < 0)
			abort();
		json_array_insert_new(parts, 0, json_pack("{s:s, s:b}", "text", thought, "thought", 1));
		free(thought);
	}
	reply(req, b, 200, "application/json",
		  json_buffer(gemini_response(b, c, model, parts, finish, completion)), false);
	free(text);
}

/* The request body as echo_body answers it: compact JSON, without "model" */
static char *
echo_text(json_t *root)
{
	json_t	   *copy = json_copy(root);
	char	   *text;

	json_object_del(copy, "model");
	text = json_dumps(copy, JSON_COMPACT);
	json_decref(copy);
	return text;
}

/* A Responses API answer whose text is the echoed request (echo_body only) */
static void
reply_responses(struct evhttp_request *req, const Behaviour *b, const char *model)
{
	json_int_t	words = count_words(b->echo);

	reply(req, b, 200, "application/json",
		  json_buffer(json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s, s:s, s:[{s:s, s:s}]}], s:{s:I, s:I}}",
								"id", "resp_mock", "object", "response", "status", "completed",
								"model", model, "output", "type", "message", "id", "msg_mock",
								"role", "assistant", "content", "type", "output_text", "text", b->echo,
								"usage", "input_tokens", words, "output_tokens", words)), false);
}

/* Deterministic embedding element j of s, in [-1, 1] */
static double
embed_value(const char *s, int j)
{
	uint64_t	h = fnv1a(s, 1469598103934665603ULL ^ (uint64_t) (j + 1) * 0x9E3779B97F4A7C15ULL);

	return ((double) (h % 2000001) / 1000000.0) - 1.0;
}

/*
 * The inputs of an embeddings request, as OpenAI takes them: a string,
 * strings, one token array (integers) or token arrays; NULL when it is none
 */
static json_t *
embedding_inputs(json_t *input)
{
	size_t		i;
	json_t	   *v;

	if (json_is_string(input))
		return json_pack("[O]", input);
	if (!json_is_array(input) || json_array_size(input) == 0)
		return NULL;
	if (json_is_integer(json_array_get(input, 0)))
		return json_pack("[O]", input);
	json_array_foreach(input, i, v)
	{
		size_t		j;
		json_t	   *t;

		if (json_is_string(v))
			continue;
		if (!json_is_array(v) || json_array_size(v) == 0)
			return NULL;
		json_array_foreach(v, j, t)
		{
			if (!json_is_integer(t))
				return NULL;
		}
	}
	return json_incref(input);
}

/*
 * The embeddings response of a request body (its input and dimensions;
 * default_dim without), or NULL when the input cannot be embedded.  A
 * token array is embedded as its compact JSON text, and counts a token
 * per integer.
 */
static json_t *
embeddings_body(json_t *root, int default_dim, const char *model)
{
	json_t	   *inputs = embedding_inputs(json_object_get(root, "input"));
	json_t	   *dims = json_object_get(root, "dimensions");
	int			dim = json_is_integer(dims) ? (int) json_integer_value(dims) : default_dim;
	json_t	   *data;
	long		words = 0;
	size_t		n = json_array_size(inputs);

	if (dim < 1 || dim > 65536)
		dim = 8;
	if (inputs == NULL || n * dim > MAX_EMBEDDING_VALUES)
	{
		json_decref(inputs);
		return NULL;
	}
	data = json_array();
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *s = json_array_get(inputs, i);
		char	   *str = json_is_string(s) ? strdup(json_string_value(s)) : json_dumps(s, JSON_COMPACT);
		json_t	   *vec = json_array();

		words += json_is_string(s) ? count_words(str) : (long) json_array_size(s);
		for (int j = 0; j < dim; j++)
			json_array_append_new(vec, json_real(embed_value(str, j)));
		json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding",
											  "index", (int) i, "embedding", vec));
		free(str);
	}
	json_decref(inputs);
	return json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list", "data", data,
					 "model", model, "usage", "prompt_tokens", (json_int_t) words,
					 "total_tokens", (json_int_t) words);
}

/* Does an input of the request hold [[fail]] (the provider refuses it)? */
static bool
embeddings_refused(json_t *root)
{
	json_t	   *input = json_object_get(root, "input");
	size_t		n = json_is_array(input) ? json_array_size(input) : 1;

	for (size_t i = 0; i < n; i++)
	{
		json_t	   *s = json_is_array(input) ? json_array_get(input, i) : input;

		if (json_is_string(s) && strstr(json_string_value(s), "[[fail]]"))
			return true;
	}
	return false;
}

/* POST /v1/embeddings */
static void
handle_embeddings(struct evhttp_request *req, json_t *root, const Behaviour *b, const char *model)
{
	json_t	   *body;

	if (embeddings_refused(root))
	{
		reply_error(req, b, 400, "the mock refuses this input ([[fail]])",
					"invalid_request_error", "invalid_request", "input");
		return;
	}
	body = embeddings_body(root, b->dim, model);
	if (body == NULL)
	{
		reply_error(req, b, 400, "input must be a string, strings, a token array or token arrays, and not too many",
					"invalid_request_error", "invalid_request", "input");
		return;
	}
	reply(req, b, 200, "application/json", json_buffer(body), false);
}

/* Read a whole file; NULL if it cannot be read */
static struct evbuffer *
file_buffer(const char *path)
{
	struct evbuffer *buf;
	int			fd = open(path, O_RDONLY | O_CLOEXEC);
	ev_off_t	size;

	if (fd < 0)
		return NULL;
	size = lseek(fd, 0, SEEK_END);
	buf = evbuffer_new();
	if (size < 0 || evbuffer_add_file(buf, fd, 0, size) != 0)
	{
		evbuffer_free(buf);
		close(fd);
		return NULL;
	}
	return buf;
}

/*
 * Replay a corpus case byte for byte: its status, headers, and body_file
 * (or the body re-serialised), or its SSE stream.
 */
static void
replay_case(struct evhttp_request *req, const Behaviour *b)
{
	char		path[4096];
	json_t	   *c;
	json_t	   *resp;
	const char *key;
	json_t	   *value;
	const char *file;
	struct evbuffer *body = NULL;
	const char *ctype = "application/json";

	snprintf(path, sizeof(path), "%s/%s/case.json", corpus_dir ? corpus_dir : ".", b->replay);
	/* a case with an integer beyond 64 bits (Together's seed) loads with reals */
	c = (corpus_dir == NULL || strchr(b->replay, '/')) ? NULL : json_load_file(path, 0, NULL);
	if (c == NULL && corpus_dir && !strchr(b->replay, '/'))
		c = json_load_file(path, JSON_DECODE_INT_AS_REAL, NULL);
	if (c == NULL)
	{
		reply_error(req, b, 404, "no such corpus case", "invalid_request_error", "replay", NULL);
		return;
	}
	resp = json_object_get(c, "response");
	json_object_foreach(json_object_get(resp, "headers"), key, value)
	{
		if (!json_is_string(value) || strcasecmp(key, "content-length") == 0 ||
			strcasecmp(key, "transfer-encoding") == 0 || strcasecmp(key, "content-encoding") == 0 ||
			strcasecmp(key, "connection") == 0)
			continue;
		if (strcasecmp(key, "content-type") == 0)
			ctype = json_string_value(value);
		else
			evhttp_add_header(evhttp_request_get_output_headers(req), key, json_string_value(value));
	}
	file = json_string_value(json_object_get(resp, "sse_file"));
	if (file == NULL)
		file = json_string_value(json_object_get(resp, "body_file"));
	if (file)
	{
		snprintf(path, sizeof(path), "%s/%s/%s", corpus_dir, b->replay, file);
		body = file_buffer(path);
	}
	if (body == NULL)
		body = json_buffer(json_incref(json_object_get(resp, "body")));
	reply(req, b, (int) json_number_value(json_object_get(resp, "status")), ctype, body, false);
	json_decref(c);
}

/* Does the request carry the key the format expects? */
static bool
authorised(struct evhttp_request *req, Format fmt)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *v;

	if (require_key == NULL)
		return true;
	if (fmt == FMT_ANTHROPIC)
		return (v = evhttp_find_header(in, "x-api-key")) && strcmp(v, require_key) == 0 &&
			evhttp_find_header(in, "anthropic-version") != NULL;
	if (fmt == FMT_GEMINI)
		return (v = evhttp_find_header(in, "x-goog-api-key")) && strcmp(v, require_key) == 0;
	if ((v = evhttp_find_header(in, "api-key")) && strcmp(v, require_key) == 0)
		return true;			/* Azure */
	return (v = evhttp_find_header(in, "Authorization")) && strncmp(v, "Bearer ", 7) == 0 &&
		strcmp(v + 7, require_key) == 0;
}

/* Does s end with suffix? */
static bool
ends_with(const char *s, const char *suffix)
{
	size_t		n = strlen(s);
	size_t		m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Which endpoint a path is; the Gemini model comes from the path */
static bool
route(const char *path, Format *fmt, bool *embed, char **path_model)
{
	const char *models = strstr(path, "/models/");

	*embed = false;
	*path_model = NULL;
	if (ends_with(path, "/chat/completions"))
		*fmt = FMT_OPENAI;
	else if (ends_with(path, "/embeddings"))
		*fmt = FMT_OPENAI, *embed = true;
	else if (ends_with(path, "/messages"))
		*fmt = FMT_ANTHROPIC;
	else if (ends_with(path, "/responses"))
		*fmt = FMT_RESPONSES;
	else if (models && (ends_with(path, ":generateContent") ||
						ends_with(path, ":streamGenerateContent") ||
						ends_with(path, ":batchEmbedContents") ||
						ends_with(path, ":embedContent")))
	{
		char	   *raw = strndup(models + 8, strrchr(path, ':') - (models + 8));

		*fmt = FMT_GEMINI;
		*embed = ends_with(path, "EmbedContents") || ends_with(path, ":embedContent");
		*path_model = printable(evhttp_decode_uri(raw));
		free(raw);
	}
	else
		return false;
	return true;
}

/* Every model API request */
static void
handle_api(struct evhttp_request *req, const char *path)
{
	static const Behaviour plain = {.fail_first = -1, .cached = -1, .reasoning = -1,
	.cache_write = -1, .dim = 8};
	Format		fmt;
	bool		known;
	bool		embed;
	char	   *path_model;
	size_t		len;
	char	   *body;
	json_t	   *root;
	const char *full_model;
	char	   *model;
	Behaviour	b;
	Chat		chat;

	known = route(path, &fmt, &embed, &path_model);
	if (known || strncmp(path, "/v1", 3) == 0)
		atomic_fetch_add(&total_requests, 1);
	if (!known || evhttp_request_get_command(req) != EVHTTP_REQ_POST)
	{
		free(path_model);
		reply_error(req, &plain, 404, "Unknown request URL", "invalid_request_error", "unknown_url", NULL);
		return;
	}
	atomic_fetch_add(embed ? &embedding_requests : &chat_requests, 1);
	if (!authorised(req, fmt))
	{
		Behaviour	b401 = plain;

		b401.status = 401;
		send_failure(req, &b401, fmt, "");
		free(path_model);
		return;
	}
	body = request_body(req, &len);
	root = json_loadb(body, len, 0, NULL);
	free(body);
	full_model = path_model ? path_model : json_string_value(json_object_get(root, "model"));
	if (!json_is_object(root) || full_model == NULL)
	{
		json_decref(root);
		free(path_model);
		reply_error(req, &plain, 400, "We could not parse the JSON body of your request.",
					"invalid_request_error", "invalid_json", NULL);
		return;
	}
	read_behaviour(req, full_model, &b);
	if (b.echo_body)
		b.echo = echo_text(root);
	model = strndup(full_model, strcspn(full_model, ";"));
	if (b.replay[0])
		replay_case(req, &b);
	else if (should_fail(&b, full_model))
		send_failure(req, &b, fmt, model);
	else if (embed && fmt == FMT_GEMINI)
		reply_error(req, &b, 400, "the mock answers Gemini embeddings only with replay:CASE",
					"invalid_request_error", "unsupported", NULL);
	else if (embed)
		handle_embeddings(req, root, &b, model);
	else if (fmt == FMT_RESPONSES && b.echo)
		reply_responses(req, &b, model);
	else if (fmt == FMT_RESPONSES)
		reply_error(req, &b, 400, "the mock answers the Responses API only with replay:CASE or echo_body",
					"invalid_request_error", "unsupported", NULL);
	else if (!(fmt == FMT_GEMINI ?
			   read_gemini_request(root, ends_with(path, ":streamGenerateContent"), &chat) :
			   read_messages_request(root, fmt, &chat)))
		reply_error(req, &b, 400, "messages must be an array", "invalid_request_error",
					"invalid_request", "messages");
	else if (b.huge > 0)
		reply(req, &b, 200, "application/json",
			  huge_body(model, atomic_fetch_add(&next_id, 1), chat.prompt, b.huge), false);
	else if (fmt == FMT_GEMINI && b.signatures && chat.unsigned_call && !b.echo)
		reply(req, &b, 400, "application/json",
			  json_buffer(json_pack("{s:{s:i, s:s, s:s}}", "error", "code", 400, "message",
									"Function call is missing a thought_signature in functionCall parts.",
									"status", "INVALID_ARGUMENT")), false);
	else if (fmt == FMT_ANTHROPIC && chat.bad_signature && !b.echo)
		reply(req, &b, 400, "application/json",
			  json_buffer(json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
									"invalid_request_error", "message",
									"messages: Invalid `signature` in `thinking` block")), false);
	else if (fmt == FMT_ANTHROPIC)
		reply_anthropic(req, &b, &chat, model);
	else if (fmt == FMT_GEMINI)
		reply_gemini(req, &b, &chat, model);
	else
		reply_openai(req, &b, &chat, model);
	free(b.echo);
	free(model);
	free(path_model);
	json_decref(root);
}

/*
 * The OpenAI Batch API: files uploaded as multipart JSONL, batches that
 * pass validating -> in_progress -> finalizing -> completed as time goes by,
 * their output and error files, cancel, and a list of batches (newest
 * first).  Shared by every serving thread, under batch_lock.
 *
 * A batch completes batch_ms after it was created (--batch-ms, default 300;
 * batch_ms:N in the model of its first request overrides it); batch_fail in
 * that model fails the whole batch at validation, batch_expire lets it
 * expire (every item in the error file as batch_expired).  An item whose
 * last user message holds [[fail]] is answered 400 in the error file
 * ([[fail_429]]: 429, [[fail_500]]: 500; a synchronous call of it is
 * answered as any other), one holding [[expire]] expires alone, one holding [[expire_once]] expires the
 * first time the mock sees its message and is answered the next; create_lost
 * in the model creates the batch but answers its create with a 503 (a create
 * whose answer was lost).  Lines for /v1/embeddings (Azure: /embeddings) are
 * answered as POST /v1/embeddings would answer them, the same markers in
 * their input string ending them as above.
 *
 * For crash tests, in the same model: batch_upload_ms:N answers an upload
 * N ms late (the file is kept at once), batch_create_ms:N answers a create
 * N ms late (the batch is created at once), batch_create_busy answers the
 * first create of each file 503 without creating anything, batch_garbage
 * ends its output file with lines that are not JSON objects.
 */
#define MAX_BATCH_FILES 4096
#define MAX_BATCHES 1024

typedef struct MockFile
{
	char		id[48];
	char	   *data;
	size_t		len;
	bool		create_refused; /* batch_create_busy: its first create was */
} MockFile;

typedef struct MockBatch
{
	char		id[48];
	char		input_file[48];
	char		output_file[48];
	char		error_file[48];
	char		endpoint[32];
	char	   *metadata;		/* JSON text, or NULL */
	double		created;		/* monotonic seconds */
	double		cancelled_at;	/* 0: not cancelled */
	long		created_unix;
	int			batch_ms;
	bool		fail;
	bool		expire;
	bool		garbage;		/* its output file holds lines that are not JSON objects */
	bool		ended;			/* output produced */
	long		total, completed, failed;
	const char *final;			/* completed, failed, expired, cancelled */
	int			api;			/* API_* */
	bool		job_states;		/* Gemini: JOB_STATE_* rather than BATCH_STATE_* */
	bool		responses_file; /* Gemini: answers in a file, not inline */
	bool		embed;			/* Gemini: an asyncBatchEmbedContent batch */
	char		display[128];	/* Gemini: its display name */
	char		model[128];		/* Gemini: models/{model} */
	json_t	   *items;			/* Anthropic, Gemini: [{"id", "request"}] */
	long		expired_n, cancelled_n;	/* Anthropic's request_counts */
	char	   *results;		/* Anthropic: JSONL; Gemini: inlinedResponses JSON */
	const char *pre_input;		/* OpenAI, Azure: the input prerender reads */
	size_t		pre_input_len;
	struct Rendered *pre;		/* its answers for a completion, made ahead */
} MockBatch;

static pthread_mutex_t batch_lock = PTHREAD_MUTEX_INITIALIZER;
static MockFile *mock_files[MAX_BATCH_FILES];
static int	nmock_files = 0;
static MockBatch *mock_batches[MAX_BATCHES];
static int	nmock_batches = 0;
static int	default_batch_ms = 300;
/* The batch APIs, each with its own counters in /stats */
enum
{
	API_OPENAI, API_AZURE, API_ANTHROPIC, API_GEMINI, NAPIS
};
static atomic_long batch_uploads[NAPIS];
static atomic_long batch_creates[NAPIS];
static atomic_long batch_polls[NAPIS];
static atomic_long batch_downloads[NAPIS];
static atomic_long batch_cancels[NAPIS];
static atomic_long batch_lists[NAPIS];
static atomic_long batch_created[NAPIS];	/* batches made (creates answered 200) */
/* the messages with [[expire_once]] that expired already (under batch_lock) */
#define MAX_EXPIRED_ONCE 256
static char *expired_once[MAX_EXPIRED_ONCE];
static int	nexpired_once = 0;

/* Does a message with [[expire_once]] expire now (the first time it is seen)? */
static bool
expires_once(const char *text)
{
	if (strstr(text, "[[expire_once]]") == NULL)
		return false;
	for (int i = 0; i < nexpired_once; i++)
		if (strcmp(expired_once[i], text) == 0)
			return false;
	if (nexpired_once < MAX_EXPIRED_ONCE)
		expired_once[nexpired_once++] = strdup(text);
	return true;
}

static double
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A new file holding data (taken over); its id is written to id */
static MockFile *
file_add(char *data, size_t len)
{
	MockFile   *f;

	if (nmock_files >= MAX_BATCH_FILES)
		return NULL;
	f = calloc(1, sizeof(*f));
	snprintf(f->id, sizeof(f->id), "file-mock-%d", nmock_files + 1);
	f->data = data;
	f->len = len;
	mock_files[nmock_files++] = f;
	return f;
}

static MockFile *
file_find(const char *id)
{
	for (int i = 0; i < nmock_files; i++)
		if (strcmp(mock_files[i]->id, id) == 0)
			return mock_files[i];
	return NULL;
}

static MockBatch *
batch_find(const char *id)
{
	for (int i = 0; i < nmock_batches; i++)
		if (strcmp(mock_batches[i]->id, id) == 0)
			return mock_batches[i];
	return NULL;
}

/*
 * The batch of an API by its id (batch_lock held), marked cancelled first
 * when cancel asks for it and it has not ended
 */
static MockBatch *
batch_of_api(const char *id, int api, bool cancel)
{
	MockBatch  *b = batch_find(id);

	if (b && b->api != api)
		return NULL;
	if (b && cancel && !b->ended && b->cancelled_at == 0)
		b->cancelled_at = mono_now();
	return b;
}

/*
 * The model of the first line of a JSONL file (malloc'd), or NULL: the
 * batch directives are read from it
 */
static char *
first_model(const char *data, size_t len)
{
	const char *nl = memchr(data, '\n', len);
	json_t	   *first = json_loadb(data, nl ? (size_t) (nl - data) : len, 0, NULL);
	const char *model = json_string_value(json_object_get(json_object_get(first, "body"), "model"));
	char	   *copy = model ? strdup(model) : NULL;

	json_decref(first);
	return copy;
}

/* The value of directive name ("batch_ms:") in model, or 0 */
static int
model_ms(const char *model, const char *name)
{
	char		want[64];
	const char *d;

	snprintf(want, sizeof(want), ";%s", name);
	return model && (d = strstr(model, want)) != NULL ? atoi(d + strlen(want)) : 0;
}

/* A part of a multipart body: the value of its name and its content */
static bool
multipart_part(const char *body, size_t len, const char *boundary, const char *name,
			   const char **content, size_t *clen)
{
	char		delim[256];
	char		want[128];
	const char *end = body + len;
	const char *p = body;

	snprintf(delim, sizeof(delim), "--%s", boundary);
	snprintf(want, sizeof(want), "name=\"%s\"", name);
	while ((p = memmem(p, end - p, delim, strlen(delim))) != NULL)
	{
		const char *hdr_end;
		const char *next;

		p += strlen(delim);
		hdr_end = memmem(p, end - p, "\r\n\r\n", 4);
		if (hdr_end == NULL)
			return false;
		next = memmem(hdr_end + 4, end - hdr_end - 4, delim, strlen(delim));
		if (next == NULL)
			return false;
		if (memmem(p, hdr_end - p, want, strlen(want)) != NULL)
		{
			*content = hdr_end + 4;
			*clen = next - 2 - *content;	/* the CRLF before the delimiter */
			return true;
		}
	}
	return false;
}

/* The JSON of a batch as OpenAI describes it */
static json_t *
batch_json(MockBatch *b)
{
	double		now = mono_now();
	double		t = (now - b->created) * 1000.0;
	const char *status;
	json_t	   *out;

	if (b->final)
		status = b->final;
	else if (b->cancelled_at > 0)
		status = (now - b->cancelled_at) * 1000.0 >= 50 ? "cancelled" : "cancelling";
	else if (t < b->batch_ms / 3.0)
		status = "validating";
	else if (b->fail)
		status = "failed";
	else if (t < b->batch_ms * 2 / 3.0)
		status = "in_progress";
	else if (t < b->batch_ms)
		status = "finalizing";
	else
		status = b->expire ? "expired" : "completed";
	out = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:{s:I, s:I, s:I}}",
					"id", b->id, "object", "batch", "endpoint", b->endpoint,
					"input_file_id", b->input_file, "status", status,
					"created_at", (json_int_t) b->created_unix,
					"request_counts", "total", (json_int_t) b->total,
					"completed", (json_int_t) b->completed, "failed", (json_int_t) b->failed);
	json_object_set_new(out, "completion_window", json_string("24h"));
	json_object_set_new(out, "metadata", b->metadata ? json_loads(b->metadata, 0, NULL) : json_null());
	json_object_set_new(out, "output_file_id", b->output_file[0] ? json_string(b->output_file) : json_null());
	json_object_set_new(out, "error_file_id", b->error_file[0] ? json_string(b->error_file) : json_null());
	if (strcmp(status, "failed") == 0)
		json_object_set_new(out, "errors",
							json_pack("{s:s, s:[{s:s, s:s, s:n}]}", "object", "list", "data",
									  "code", "invalid_request", "message",
									  "the mock fails this batch (batch_fail)", "line"));
	return out;
}

/* A batch's output and error files, as rendered for one of its ends */
typedef struct Rendered
{
	char	   *ok;				/* JSONL, or NULL: none */
	size_t		ok_len;
	char	   *err;
	size_t		err_len;
	long		n;				/* lines read */
	long		completed;
	long		failed;
} Rendered;

/* The contents of buf as a string (NULL if empty); buf freed */
static char *
buffer_text(struct evbuffer *buf, size_t *len)
{
	char	   *data = NULL;

	*len = evbuffer_get_length(buf);
	if (*len > 0)
	{
		data = malloc(*len + 1);
		evbuffer_remove(buf, data, *len);
		data[*len] = '\0';
	}
	evbuffer_free(buf);
	return data;
}

/*
 * The output and error files of a batch whose input is data, at its end
 * (completed, expired, cancelled or failed): each request answered as
 * /v1/chat/completions would have answered it, failures and expiries in
 * the error file (garbage: the output ends with lines that are not JSON
 * objects).
 */
static void
render_openai_batch(const char *data, size_t len, const char *status, bool garbage, Rendered *r)
{
	struct evbuffer *ok = evbuffer_new();
	struct evbuffer *err = evbuffer_new();
	const char *p = data;
	const char *end = data + len;
	static const Behaviour plain = {.fail_first = -1, .cached = -1, .reasoning = -1,
	.cache_write = -1, .dim = 8};
	bool		cancelled = strcmp(status, "cancelled") == 0;
	bool		whole_expired = strcmp(status, "expired") == 0;
	long		n = 0;

	memset(r, 0, sizeof(*r));
	while (p < end && !(strcmp(status, "failed") == 0))
	{
		const char *nl = memchr(p, '\n', end - p);
		size_t		len = nl ? (size_t) (nl - p) : (size_t) (end - p);
		json_t	   *line = json_loadb(p, len, 0, NULL);
		json_t	   *body = json_object_get(line, "body");
		const char *custom_id = json_string_value(json_object_get(line, "custom_id"));
		const char *full_model = json_string_value(json_object_get(body, "model"));
		Chat		c;
		json_t	   *out = NULL;
		char		rid[64];

		const char *url = json_string_value(json_object_get(line, "url"));
		bool		embed = url && (strcmp(url, "/v1/embeddings") == 0 || strcmp(url, "/embeddings") == 0);
		json_t	   *vectors = NULL;
		const char *input = NULL;
		bool		e_fail = false;
		bool		e_expire = false;
		bool		e_status = false;	/* [[fail_429]] or [[fail_500]] */

		p = nl ? nl + 1 : end;
		if (line == NULL)
			continue;
		n++;
		snprintf(rid, sizeof(rid), "batch_req_mock_%ld", atomic_fetch_add(&next_id, 1));
		/* an embeddings item's outcome: its input string, as a chat item's last user message */
		if (embed && custom_id)
		{
			input = json_string_value(json_object_get(body, "input"));
			e_fail = input && strstr(input, "[[fail]]");
			e_expire = !e_fail && (whole_expired || (cancelled && n % 2 == 0) ||
								   (input && (strstr(input, "[[expire]]") || expires_once(input))));
			e_status = !e_fail && !e_expire && input &&
				(strstr(input, "[[fail_429]]") || strstr(input, "[[fail_500]]"));
		}
		if (embed && full_model && custom_id && !e_expire && !e_fail && !e_status &&
			(vectors = embeddings_body(body, 8, full_model)) != NULL)
		{
			out = json_pack("{s:s, s:s, s:{s:i, s:s, s:o}, s:n}", "id", rid, "custom_id",
							custom_id, "response", "status_code", 200, "request_id", rid,
							"body", vectors, "error");
			r->completed++;
		}
		else if (custom_id == NULL || full_model == NULL || (embed && !e_expire && !e_fail && !e_status) ||
				 (!embed && !read_messages_request(body, FMT_OPENAI, &c)))
		{
			out = json_pack("{s:s, s:o, s:n, s:{s:s, s:s}}", "id", rid, "custom_id",
							custom_id ? json_string(custom_id) : json_null(), "response",
							"error", "code", "invalid_request", "message", "a line the mock cannot read");
			r->failed++;
		}
		else if (embed ? e_expire : (whole_expired || strstr(c.last_user, "[[expire]]") ||
									 (cancelled && n % 2 == 0) || expires_once(c.last_user)))
		{
			out = json_pack("{s:s, s:s, s:n, s:{s:s, s:s}}", "id", rid, "custom_id", custom_id,
							"response", "error", "code",
							cancelled ? "batch_cancelled" : "batch_expired", "message",
							cancelled ? "This request was not executed because the batch was cancelled."
							: "This request could not be executed before the completion window expired.");
			r->failed++;
		}
		else if (embed ? e_fail : strstr(c.last_user, "[[fail]]") != NULL)
		{
			out = json_pack("{s:s, s:s, s:{s:i, s:s, s:{s:{s:s, s:s, s:n, s:s}}}, s:n}",
							"id", rid, "custom_id", custom_id, "response", "status_code", 400,
							"request_id", rid, "body", "error", "message",
							"the mock refuses this item ([[fail]])", "type",
							"invalid_request_error", "param", "code", "invalid_request", "error");
			r->failed++;
		}
		else if (embed ? e_status : (strstr(c.last_user, "[[fail_429]]") || strstr(c.last_user, "[[fail_500]]")))
		{
			bool		limited = strstr(embed ? input : c.last_user, "[[fail_429]]") != NULL;

			out = json_pack("{s:s, s:s, s:{s:i, s:s, s:{s:{s:s, s:s, s:n, s:s}}}, s:n}",
							"id", rid, "custom_id", custom_id, "response", "status_code",
							limited ? 429 : 500, "request_id", rid, "body", "error", "message",
							limited ? "the mock rate limits this item ([[fail_429]])"
							: "the mock fails this item ([[fail_500]])", "type",
							limited ? "rate_limit_error" : "server_error", "param", "code",
							limited ? "rate_limit_exceeded" : "server_error", "error");
			r->failed++;
		}
		else
		{
			bool		cut;
			long		completion;
			char	   *model = strndup(full_model, strcspn(full_model, ";"));
			char	   *text = answer(NULL, &plain, &c, &cut, &completion, NULL);
			char		cid[64];
			json_t	   *resp;

			snprintf(cid, sizeof(cid), "chatcmpl-mock-%ld", atomic_fetch_add(&next_id, 1));
			resp = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:{s:s, s:s}, s:s}], s:o}",
							 "id", cid, "object", "chat.completion", "created", 1700000000,
							 "model", model, "choices", "index", 0, "message", "role", "assistant",
							 "content", text, "finish_reason", cut ? "length" : "stop",
							 "usage", chat_usage(&plain, c.prompt, completion));
			out = json_pack("{s:s, s:s, s:{s:i, s:s, s:o}, s:n}", "id", rid, "custom_id",
							custom_id, "response", "status_code", 200, "request_id", rid,
							"body", resp, "error");
			free(model);
			free(text);
			r->completed++;
		}
		if (out)
		{
			char	   *s = json_dumps(out, JSON_COMPACT);
			bool		good = json_integer_value(json_object_get(json_object_get(out, "response"), "status_code")) == 200;

			evbuffer_add_printf(good ? ok : err, "%s\n", s);
			free(s);
			json_decref(out);
		}
		json_decref(line);
	}
	r->n = n;
	if (garbage && evbuffer_get_length(ok) > 0)
		evbuffer_add_printf(ok, "{\"custom_id\": \"r1\", not json\n[1]\n\n");
	r->ok = buffer_text(ok, &r->ok_len);
	r->err = buffer_text(err, &r->err_len);
}

/*
 * A batch's answers for its completion, made while it is in progress (as
 * a provider works through a batch before it reports it completed), by a
 * thread of its own at the lowest priority; batch_finish takes them if
 * they are ready and the batch completed.  Not for batches whose answers
 * depend on their end or on what the mock saw before ([[expire_once]]).
 */
static void *
prerender(void *arg)
{
	MockBatch  *b = arg;
	Rendered   *r = malloc(sizeof(*r));

	setpriority(PRIO_PROCESS, 0, 19);	/* this thread (Linux) */
	render_openai_batch(b->pre_input, b->pre_input_len, "completed", false, r);
	pthread_mutex_lock(&batch_lock);
	if (!b->ended)
	{
		b->pre = r;
		r = NULL;
	}
	pthread_mutex_unlock(&batch_lock);
	if (r)
	{
		free(r->ok);
		free(r->err);
		free(r);
	}
	return NULL;
}

/* Start making a batch's answers ahead of its completion, where it can be */
static void
prerender_start(MockBatch *b, MockFile *in)
{
	pthread_t	tid;

	if (b->fail || b->expire || b->garbage || memmem(in->data, in->len, "[[expire_once]]", 15))
		return;
	b->pre_input = in->data;
	b->pre_input_len = in->len;
	if (pthread_create(&tid, NULL, prerender, b) == 0)
		pthread_detach(tid);
}

/*
 * Once a batch reaches its end (completed, expired or cancelled), write its
 * output and error files (under batch_lock)
 */
static void
batch_finish(MockBatch *b, const char *status)
{
	MockFile   *in = file_find(b->input_file);
	Rendered	r;

	if (b->pre && strcmp(status, "completed") == 0)
		r = *b->pre;
	else
	{
		if (b->pre)
		{
			free(b->pre->ok);
			free(b->pre->err);
		}
		render_openai_batch(in ? in->data : "", in ? in->len : 0, status, b->garbage, &r);
	}
	free(b->pre);
	b->pre = NULL;
	b->completed = r.completed;
	b->failed = r.failed;
	b->total = r.n > 0 ? r.n : b->total;
	if (r.ok)
	{
		MockFile   *f = file_add(r.ok, r.ok_len);

		if (f != NULL)
			snprintf(b->output_file, sizeof(b->output_file), "%s", f->id);
		else
			free(r.ok);
	}
	if (r.err)
	{
		MockFile   *f = file_add(r.err, r.err_len);

		if (f != NULL)
			snprintf(b->error_file, sizeof(b->error_file), "%s", f->id);
		else
			free(r.err);
	}
	b->final = status;
	b->ended = true;
}

/* Move a batch to its end once its time has come (under batch_lock) */
static void
batch_advance(MockBatch *b)
{
	json_t	   *j;
	const char *status;

	if (b->ended)
		return;
	j = batch_json(b);
	status = json_string_value(json_object_get(j, "status"));
	if (strcmp(status, "completed") == 0 || strcmp(status, "expired") == 0 ||
		strcmp(status, "cancelled") == 0 || strcmp(status, "failed") == 0)
		batch_finish(b, strcmp(status, "completed") == 0 ? "completed" :
					 strcmp(status, "expired") == 0 ? "expired" :
					 strcmp(status, "cancelled") == 0 ? "cancelled" : "failed");
	json_decref(j);
}

/* Send v as JSON (v released) */
static void
send_json(struct evhttp_request *req, int status, json_t *v)
{
	struct evbuffer *buf = json_buffer(v);

	send_now(req, status, "application/json", buf);
	evbuffer_free(buf);
}

/* A batch as OpenAI lists it, moved to its end if its time has come */
static json_t *
openai_batch_json(MockBatch *b)
{
	batch_advance(b);
	return batch_json(b);
}

/* The latest 100 batches of an API, newest first, as describe shows them */
static json_t *
list_batches(int api, json_t *(*describe) (MockBatch *b))
{
	json_t	   *data = json_array();

	atomic_fetch_add(&batch_lists[api], 1);
	pthread_mutex_lock(&batch_lock);
	for (int i = nmock_batches - 1; i >= 0 && json_array_size(data) < 100; i--)
		if (mock_batches[i]->api == api)
			json_array_append_new(data, describe(mock_batches[i]));
	pthread_mutex_unlock(&batch_lock);
	return data;
}

/* Send v as JSON delay_ms from now (v released) */
static void
send_json_late(struct evhttp_request *req, int status, json_t *v, int delay_ms)
{
	Behaviour	b = {.fail_first = -1, .delay_ms = delay_ms};

	reply(req, &b, status, "application/json", json_buffer(v), false);
}

/* POST /v1/files (multipart: purpose=batch, file=JSONL) */
static void
batch_upload(struct evhttp_request *req, int api)
{
	static const Behaviour plain = {.fail_first = -1};
	const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	const char *bnd = ctype ? strstr(ctype, "boundary=") : NULL;
	size_t		len;
	char	   *body = request_body(req, &len);
	const char *content;
	size_t		clen;
	const char *purpose;
	size_t		plen;
	char		boundary[200];
	MockFile   *f = NULL;
	char	   *model = NULL;

	atomic_fetch_add(&batch_uploads[api], 1);
	if (bnd)
		snprintf(boundary, sizeof(boundary), "%.*s", (int) strcspn(bnd + 9, "; \r\n"), bnd + 9);
	if (bnd == NULL || !multipart_part(body, len, boundary, "purpose", &purpose, &plen) ||
		plen != 5 || strncmp(purpose, "batch", 5) != 0 ||
		!multipart_part(body, len, boundary, "file", &content, &clen))
	{
		free(body);
		reply_error(req, &plain, 400, "a multipart body with purpose=batch and a file is expected",
					"invalid_request_error", "invalid_request", "file");
		return;
	}
	{
		char	   *data = malloc(clen + 1);

		memcpy(data, content, clen);
		data[clen] = '\0';
		model = first_model(data, clen);
		pthread_mutex_lock(&batch_lock);
		f = file_add(data, clen);
		pthread_mutex_unlock(&batch_lock);
		if (f == NULL)
			free(data);
	}
	free(body);
	if (f == NULL)
	{
		reply_error(req, &plain, 500, "the mock holds too many files", "server_error", NULL, NULL);
		return;
	}
	send_json_late(req, 200, json_pack("{s:s, s:s, s:I, s:s, s:s}", "id", f->id, "object", "file",
									   "bytes", (json_int_t) clen, "filename", "batch.jsonl",
									   "purpose", "batch"),
				   model_ms(model, "batch_upload_ms:"));
	free(model);
}

/* POST /v1/batches */
static void
batch_create(struct evhttp_request *req, int api)
{
	static const Behaviour plain = {.fail_first = -1};
	size_t		len;
	char	   *body = request_body(req, &len);
	json_t	   *root = json_loadb(body, len, 0, NULL);
	const char *file = json_string_value(json_object_get(root, "input_file_id"));
	const char *endpoint = json_string_value(json_object_get(root, "endpoint"));
	json_t	   *meta = json_object_get(root, "metadata");
	MockFile   *f;
	MockBatch  *b;
	char	   *model;

	free(body);
	atomic_fetch_add(&batch_creates[api], 1);
	pthread_mutex_lock(&batch_lock);
	f = file ? file_find(file) : NULL;
	if (f == NULL || endpoint == NULL ||
		(strcmp(endpoint, api == API_AZURE ? "/chat/completions" : "/v1/chat/completions") != 0 &&
		 strcmp(endpoint, api == API_AZURE ? "/embeddings" : "/v1/embeddings") != 0) ||
		nmock_batches >= MAX_BATCHES)
	{
		pthread_mutex_unlock(&batch_lock);
		json_decref(root);
		reply_error(req, &plain, 400, "input_file_id must name an uploaded file and endpoint be /v1/chat/completions or /v1/embeddings (Azure: without /v1)",
					"invalid_request_error", "invalid_request", "input_file_id");
		return;
	}
	model = first_model(f->data, f->len);
	if (model && strstr(model, ";batch_create_busy") && !f->create_refused)
	{
		f->create_refused = true;
		pthread_mutex_unlock(&batch_lock);
		json_decref(root);
		free(model);
		reply_error(req, &plain, 503, "the mock is busy (batch_create_busy)", "server_error", NULL, NULL);
		return;
	}
	b = calloc(1, sizeof(*b));
	snprintf(b->id, sizeof(b->id), "batch_mock_%d", nmock_batches + 1);
	snprintf(b->input_file, sizeof(b->input_file), "%s", f->id);
	snprintf(b->endpoint, sizeof(b->endpoint), "%s", endpoint);
	b->created = mono_now();
	b->created_unix = (long) time(NULL);
	b->batch_ms = default_batch_ms;
	b->metadata = json_is_object(meta) ? json_dumps(meta, JSON_COMPACT) : NULL;
	b->api = api;
	/* directives of the first request's model; its line count */
	if (model && strstr(model, ";batch_ms:") != NULL)
		b->batch_ms = model_ms(model, "batch_ms:");
	b->fail = model && strstr(model, ";batch_fail") != NULL;
	b->expire = model && strstr(model, ";batch_expire") != NULL;
	b->garbage = model && strstr(model, ";batch_garbage") != NULL;
	for (size_t i = 0; i < f->len; i++)
		if (f->data[i] == '\n' || (i == f->len - 1))
			b->total++;
	mock_batches[nmock_batches++] = b;
	atomic_fetch_add(&batch_created[api], 1);
	prerender_start(b, f);
	{
		json_t	   *out = batch_json(b);

		pthread_mutex_unlock(&batch_lock);
		json_decref(root);
		if (model && strstr(model, ";create_lost"))
		{
			json_decref(out);
			free(model);
			reply_error(req, &plain, 503, "the answer of this create is lost (create_lost)",
						"server_error", NULL, NULL);
			return;
		}
		send_json_late(req, 200, out, model_ms(model, "batch_create_ms:"));
		free(model);
	}
}

/* Every /v1/files and /v1/batches request */
static void
handle_batch(struct evhttp_request *req, const char *path)
{
	static const Behaviour plain = {.fail_first = -1};
	int			api = strncmp(path, "/openai/", 8) == 0 ? API_AZURE : API_OPENAI;
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *files = strstr(path, "/files");
	const char *batches = strstr(path, "/batches");
	char		id[64];

	atomic_fetch_add(&total_requests, 1);
	if (!authorised(req, FMT_OPENAI))
	{
		reply_error(req, &plain, 401, "Incorrect API key provided: sk-*****.", "invalid_request_error",
					"invalid_api_key", NULL);
		return;
	}
	if (files && strcmp(files, "/files") == 0 && cmd == EVHTTP_REQ_POST)
		batch_upload(req, api);
	else if (files && sscanf(files, "/files/%47[^/]", id) == 1 && ends_with(files, "/content") &&
			 cmd == EVHTTP_REQ_GET)
	{
		MockFile   *f;
		struct evbuffer *buf = evbuffer_new();

		atomic_fetch_add(&batch_downloads[api], 1);
		pthread_mutex_lock(&batch_lock);
		f = file_find(id);
		if (f)
			evbuffer_add(buf, f->data, f->len);
		pthread_mutex_unlock(&batch_lock);
		if (f)
			send_now(req, 200, "application/jsonl", buf);
		else
			reply_error(req, &plain, 404, "No such File object", "invalid_request_error", NULL, "id");
		evbuffer_free(buf);
	}
	else if (batches && strcmp(batches, "/batches") == 0 && cmd == EVHTTP_REQ_POST)
		batch_create(req, api);
	else if (batches && strcmp(batches, "/batches") == 0 && cmd == EVHTTP_REQ_GET)
	{
		send_json(req, 200, json_pack("{s:s, s:o, s:b}", "object", "list", "data",
									  list_batches(api, openai_batch_json), "has_more", 0));
	}
	else if (batches && sscanf(batches, "/batches/%47[^/]", id) == 1)
	{
		MockBatch  *b;
		bool		cancel = ends_with(batches, "/cancel") && cmd == EVHTTP_REQ_POST;
		json_t	   *out = NULL;

		atomic_fetch_add(cancel ? &batch_cancels[api] : &batch_polls[api], 1);
		pthread_mutex_lock(&batch_lock);
		b = batch_of_api(id, api, cancel);
		if (b)
		{
			batch_advance(b);
			out = batch_json(b);
		}
		pthread_mutex_unlock(&batch_lock);
		if (out)
			send_json(req, 200, out);
		else
			reply_error(req, &plain, 404, "No such Batch object", "invalid_request_error", NULL, "id");
	}
	else
		reply_error(req, &plain, 404, "Unknown request URL", "invalid_request_error", "unknown_url", NULL);
}

/*
 * Anthropic Message Batches and Gemini batch mode: the requests come
 * inline in the create, with the same knobs as the OpenAI Batch API above
 * (batch_ms, batch_fail, batch_expire in the model of the first request,
 * [[fail]] and [[expire]] in an item, cancel).  create_lost in that model
 * creates the batch but answers the create with a 503, as a create whose
 * answer was lost.  Anthropic refuses a batch_fail batch at its create (it
 * has no failed state); Gemini fails it (BATCH_STATE_FAILED).  job_states
 * makes Gemini report JOB_STATE_* rather than BATCH_STATE_*; responses_file
 * makes it answer with a responsesFile (files/batch-{id}), JSONL from
 * GET /download/v1beta/files/batch-{id}:download?alt=media (each line
 * {"key", "response" or "error"}), rather than inlinedResponses;
 * batch_download_ms:N answers that download N ms late.  A batch created
 * from an uploaded file (input_config.file_name: a file uploaded raw to
 * /upload/v1beta/files, JSONL of {"key", "request"}) answers in a file.
 */

/* An RFC 3339 time of Unix seconds */
static void
rfc3339(long t, char *buf, size_t len)
{
	time_t		tt = (time_t) t;
	struct tm	tm;

	gmtime_r(&tt, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* A new inline batch of an API (under batch_lock), directives from model */
static MockBatch *
inline_batch_add(int api, const char *model, json_t *items)
{
	MockBatch  *b;
	const char *d;

	if (nmock_batches >= MAX_BATCHES)
		return NULL;
	b = calloc(1, sizeof(*b));
	snprintf(b->id, sizeof(b->id), api == API_ANTHROPIC ? "msgbatch_mock_%d" : "mock%d",
			 nmock_batches + 1);
	b->api = api;
	b->created = mono_now();
	b->created_unix = (long) time(NULL);
	b->batch_ms = default_batch_ms;
	if (model && (d = strstr(model, ";batch_ms:")) != NULL)
		b->batch_ms = atoi(d + 10);
	b->fail = model && strstr(model, ";batch_fail") != NULL;
	b->expire = model && strstr(model, ";batch_expire") != NULL;
	b->job_states = model && strstr(model, ";job_states") != NULL;
	b->responses_file = model && strstr(model, ";responses_file") != NULL;
	b->items = items;
	b->total = (long) json_array_size(items);
	mock_batches[nmock_batches++] = b;
	atomic_fetch_add(&batch_created[api], 1);
	return b;
}

/* How an item of a batch that ended as status ends */
typedef enum ItemEnd
{
	ITEM_OK, ITEM_FAIL, ITEM_EXPIRED, ITEM_CANCELLED
} ItemEnd;

static ItemEnd
item_end(const char *status, const Chat *c, long n)
{
	if (strcmp(status, "expired") == 0 || strstr(c->last_user, "[[expire]]"))
		return ITEM_EXPIRED;
	if (strcmp(status, "cancelled") == 0 && n % 2 == 0)
		return ITEM_CANCELLED;
	if (strstr(c->last_user, "[[fail]]"))
		return ITEM_FAIL;
	return ITEM_OK;
}

/* The results of an inline batch that ended as status */
static void
inline_finish(MockBatch *b, const char *status)
{
	static const Behaviour plain = {.fail_first = -1, .cached = -1, .reasoning = -1,
	.cache_write = -1, .dim = 8};
	struct evbuffer *jsonl = evbuffer_new();
	json_t	   *responses = json_array();
	size_t		i;
	json_t	   *item;

	b->completed = b->failed = b->expired_n = b->cancelled_n = 0;
	json_array_foreach(b->items, i, item)
	{
		const char *id = json_string_value(json_object_get(item, "id"));
		json_t	   *request = json_object_get(item, "request");
		Chat		c;
		bool		readable;
		ItemEnd		end;
		json_t	   *out = NULL;

		if (b->embed)
		{
			/* an EmbedContentRequest: its text is what [[fail]] is looked for in */
			memset(&c, 0, sizeof(c));
			c.last_user = json_string_value(json_object_get(json_array_get(json_object_get(
									json_object_get(request, "content"), "parts"), 0), "text"));
			readable = c.last_user != NULL;
		}
		else
			readable = b->api == API_ANTHROPIC ?
				read_messages_request(request, FMT_ANTHROPIC, &c) : read_gemini_request(request, false, &c);
		end = readable ? item_end(status, &c, (long) i + 1) : ITEM_FAIL;

		if (strcmp(status, "failed") == 0 || (b->api == API_GEMINI && strcmp(status, "expired") == 0))
			break;				/* no results at all */
		if (end == ITEM_OK && b->embed)
		{
			json_t	   *dims = json_object_get(request, "outputDimensionality");
			int			dim = json_is_integer(dims) ? (int) json_integer_value(dims) : plain.dim;
			json_t	   *values = json_array();

			if (dim < 1 || dim > 65536)
				dim = plain.dim;
			for (int j = 0; j < dim; j++)
				json_array_append_new(values, json_real(embed_value(c.last_user, j)));
			out = json_pack("{s:{s:{s:o}}, s:{s:s}}", "response", "embedding", "values", values,
							"metadata", "key", id);
			b->completed++;
		}
		else if (end == ITEM_OK)
		{
			bool		cut;
			long		completion;
			char	   *text = answer(NULL, &plain, &c, &cut, &completion, NULL);

			if (b->api == API_ANTHROPIC)
			{
				json_t	   *message = json_pack("{s:s, s:s, s:s, s:s, s:[{s:s, s:s}], s:s, s:n, s:o}",
												"id", "msg_mock", "type", "message", "role", "assistant",
												"model", json_string_value(json_object_get(request, "model")) ?
												json_string_value(json_object_get(request, "model")) : "mock",
												"content", "type", "text", "text", text,
												"stop_reason", finish_reason(FMT_ANTHROPIC, &plain, false, cut),
												"stop_sequence", "usage", anthropic_usage(&plain, &c, completion));

				out = json_pack("{s:s, s:{s:s, s:o}}", "custom_id", id, "result", "type", "succeeded",
								"message", message);
			}
			else
				out = json_pack("{s:o, s:{s:s}}", "response",
								gemini_response(&plain, &c, b->model, json_pack("[{s:s}]", "text", text),
												finish_reason(FMT_GEMINI, &plain, false, cut), completion),
								"metadata", "key", id);
			free(text);
			b->completed++;
		}
		else if (b->api == API_ANTHROPIC)
		{
			if (end == ITEM_FAIL)
				out = json_pack("{s:s, s:{s:s, s:{s:s, s:{s:s, s:s}}}}", "custom_id", id, "result",
								"type", "errored", "error", "type", "error", "error", "type",
								"invalid_request_error", "message",
								readable ? "the mock refuses this item ([[fail]])" : "params the mock cannot read");
			else
				out = json_pack("{s:s, s:{s:s}}", "custom_id", id, "result", "type",
								end == ITEM_EXPIRED ? "expired" : "canceled");
		}
		else
			out = json_pack("{s:{s:i, s:s}, s:{s:s}}", "error", "code",
							end == ITEM_FAIL ? 3 : end == ITEM_EXPIRED ? 4 : 1, "message",
							end == ITEM_FAIL ? "the mock refuses this item ([[fail]])" :
							end == ITEM_EXPIRED ? "deadline exceeded" : "cancelled",
							"metadata", "key", id);
		if (end == ITEM_FAIL)
			b->failed++;
		else if (end == ITEM_EXPIRED)
			b->expired_n++;
		else if (end == ITEM_CANCELLED)
			b->cancelled_n++;
		if (b->api == API_ANTHROPIC)
		{
			char	   *line = json_dumps(out, JSON_COMPACT);

			evbuffer_add_printf(jsonl, "%s\n", line);
			free(line);
			json_decref(out);
		}
		else
			json_array_append_new(responses, out);
	}
	if (b->api == API_ANTHROPIC)
	{
		size_t		len = evbuffer_get_length(jsonl);

		b->results = malloc(len + 1);
		evbuffer_remove(jsonl, b->results, len);
		b->results[len] = '\0';
	}
	else if (json_array_size(responses) > 0)
		b->results = json_dumps(responses, JSON_COMPACT);
	evbuffer_free(jsonl);
	json_decref(responses);
	b->final = status;
	b->ended = true;
}

/* The status of an inline batch now, in OpenAI's words; its end once reached */
static const char *
inline_status(MockBatch *b)
{
	double		now = mono_now();
	double		t = (now - b->created) * 1000.0;
	const char *status;

	if (b->final)
		return b->final;
	if (b->cancelled_at > 0)
		status = (now - b->cancelled_at) * 1000.0 >= 50 ? "cancelled" : "cancelling";
	else if (t < b->batch_ms / 3.0)
		status = "validating";
	else if (b->fail)
		status = "failed";
	else if (t < b->batch_ms)
		status = "in_progress";
	else
		status = b->expire ? "expired" : "completed";
	if (strcmp(status, "completed") == 0 || strcmp(status, "expired") == 0 ||
		strcmp(status, "cancelled") == 0 || strcmp(status, "failed") == 0)
		inline_finish(b, status);
	return status;
}

/* A message batch as Anthropic describes it */
static json_t *
anthropic_batch_json(MockBatch *b)
{
	const char *status = inline_status(b);
	bool		ended = b->ended;
	char		created[32];
	char		expires[32];
	char		cancel[32];
	json_t	   *out;

	rfc3339(b->created_unix, created, sizeof(created));
	rfc3339(b->created_unix + 86400, expires, sizeof(expires));
	out = json_pack("{s:s, s:s, s:s, s:{s:I, s:I, s:I, s:I, s:I}, s:s, s:s}",
					"id", b->id, "type", "message_batch", "processing_status",
					ended ? "ended" : strcmp(status, "cancelling") == 0 ? "canceling" : "in_progress",
					"request_counts", "processing", (json_int_t) (ended ? 0 : b->total),
					"succeeded", (json_int_t) (ended ? b->completed : 0),
					"errored", (json_int_t) (ended ? b->failed : 0),
					"canceled", (json_int_t) (ended ? b->cancelled_n : 0),
					"expired", (json_int_t) (ended ? b->expired_n : 0),
					"created_at", created, "expires_at", expires);
	if (b->cancelled_at > 0)
	{
		rfc3339(b->created_unix, cancel, sizeof(cancel));
		json_object_set_new(out, "cancel_initiated_at", json_string(cancel));
	}
	else
		json_object_set_new(out, "cancel_initiated_at", json_null());
	json_object_set_new(out, "ended_at", ended ? json_string(created) : json_null());
	json_object_set_new(out, "archived_at", json_null());
	json_object_set_new(out, "results_url",
						ended ? json_pack("s+", "https://api.anthropic.com/v1/messages/batches/", b->id) :
						json_null());
	return out;
}

/* Every /v1/messages/batches request */
static void
handle_anthropic_batch(struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const char *rest = strstr(path, "/messages/batches") + strlen("/messages/batches");
	char		id[64];
	const int	api = API_ANTHROPIC;

	atomic_fetch_add(&total_requests, 1);
	if (!authorised(req, FMT_ANTHROPIC))
	{
		send_json(req, 401, json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
									  "authentication_error", "message", "invalid x-api-key"));
		return;
	}
	if (*rest == '\0' && cmd == EVHTTP_REQ_POST)
	{
		size_t		len;
		char	   *body = request_body(req, &len);
		json_t	   *root = json_loadb(body, len, 0, NULL);
		json_t	   *requests = json_object_get(root, "requests");
		json_t	   *items = json_array();
		const char *model = json_string_value(json_object_get(json_object_get(json_array_get(requests, 0),
																			 "params"), "model"));
		const char *bad = NULL;
		size_t		i;
		json_t	   *r;
		MockBatch  *b = NULL;

		free(body);
		atomic_fetch_add(&batch_creates[api], 1);
		if (!json_is_array(requests) || json_array_size(requests) == 0)
			bad = "requests: an array of at least one request is expected";
		json_array_foreach(requests, i, r)
		{
			const char *cid = json_string_value(json_object_get(r, "custom_id"));
			json_t	   *params = json_object_get(r, "params");

			if (bad)
				break;
			if (cid == NULL || strlen(cid) < 1 || strlen(cid) > 64 ||
				strspn(cid, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != strlen(cid))
				bad = "custom_id: must match ^[a-zA-Z0-9_-]{1,64}$";
			else if (!json_is_string(json_object_get(params, "model")) ||
					 !json_is_integer(json_object_get(params, "max_tokens")) ||
					 !json_is_array(json_object_get(params, "messages")))
				bad = "params: model, max_tokens and messages are required";
			else
				json_array_append_new(items, json_pack("{s:s, s:O}", "id", cid, "request", params));
		}
		if (bad == NULL && model && strstr(model, ";batch_fail"))
			bad = "the mock refuses this batch (batch_fail)";
		if (bad == NULL)
		{
			pthread_mutex_lock(&batch_lock);
			b = inline_batch_add(api, model, items);
			pthread_mutex_unlock(&batch_lock);
		}
		if (b == NULL)
		{
			json_decref(items);
			json_decref(root);
			send_json(req, bad ? 400 : 500,
					  json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
								bad ? "invalid_request_error" : "api_error", "message",
								bad ? bad : "the mock holds too many batches"));
			return;
		}
		json_decref(root);
		if (model && strstr(model, ";create_lost"))
		{
			send_json(req, 503, json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
										  "overloaded_error", "message", "the answer of this create is lost (create_lost)"));
			return;
		}
		pthread_mutex_lock(&batch_lock);
		{
			json_t	   *out = anthropic_batch_json(b);

			pthread_mutex_unlock(&batch_lock);
			send_json(req, 200, out);
		}
	}
	else if (*rest == '\0' && cmd == EVHTTP_REQ_GET)
	{
		send_json(req, 200, json_pack("{s:o, s:b, s:n, s:n}", "data",
									  list_batches(api, anthropic_batch_json), "has_more", 0,
									  "first_id", "last_id"));
	}
	else if (sscanf(rest, "/%63[^/]", id) == 1)
	{
		MockBatch  *b;
		bool		cancel = ends_with(rest, "/cancel") && cmd == EVHTTP_REQ_POST;
		bool		results = ends_with(rest, "/results") && cmd == EVHTTP_REQ_GET;
		json_t	   *out = NULL;
		struct evbuffer *buf = NULL;

		atomic_fetch_add(cancel ? &batch_cancels[api] : results ? &batch_downloads[api] :
						 &batch_polls[api], 1);
		pthread_mutex_lock(&batch_lock);
		b = batch_of_api(id, api, cancel);
		if (b)
			out = anthropic_batch_json(b);
		if (b && results && b->ended && b->results)
		{
			buf = evbuffer_new();
			evbuffer_add(buf, b->results, strlen(b->results));
		}
		pthread_mutex_unlock(&batch_lock);
		if (results && buf)
		{
			json_decref(out);
			send_now(req, 200, "application/binary", buf);
			evbuffer_free(buf);
		}
		else if (out && !results)
			send_json(req, 200, out);
		else
		{
			json_decref(out);
			send_json(req, 404, json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
										  "not_found_error", "message",
										  b ? "the batch has not ended" : "no such message batch"));
		}
	}
	else
		send_json(req, 404, json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type",
									  "not_found_error", "message", "Unknown request URL"));
}

/* A Gemini error body */
static void
gemini_error(struct evhttp_request *req, int status, const char *grpc, const char *message)
{
	send_json(req, status, json_pack("{s:{s:i, s:s, s:s}}", "error", "code", status,
									 "message", message, "status", grpc));
}

/* A batch as a Gemini long-running operation */
static json_t *
gemini_batch_json(MockBatch *b)
{
	const char *status = inline_status(b);
	const char *state = strcmp(status, "validating") == 0 ? "PENDING" :
		strcmp(status, "in_progress") == 0 || strcmp(status, "cancelling") == 0 ? "RUNNING" :
		strcmp(status, "completed") == 0 ? "SUCCEEDED" : strcmp(status, "failed") == 0 ? "FAILED" :
		strcmp(status, "expired") == 0 ? "EXPIRED" : "CANCELLED";
	char		created[32];
	char		full[64];
	char		name[64];
	json_t	   *out;

	rfc3339(b->created_unix, created, sizeof(created));
	snprintf(full, sizeof(full), "%s%s", b->job_states ? "JOB_STATE_" : "BATCH_STATE_", state);
	snprintf(name, sizeof(name), "batches/%s", b->id);
	out = json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:s, s:s}, s:b}",
					"name", name, "metadata",
					"@type", b->embed ? "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatch" :
					"type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
					"name", name, "model", b->model, "displayName", b->display, "state", full,
					"createTime", created, "done", b->ended);
	{
		json_t	   *stats = json_pack("{}");
		char		n[32];

		/* int64 fields: strings in protobuf's JSON */
		snprintf(n, sizeof(n), "%ld", b->total);
		json_object_set_new(stats, "requestCount", json_string(n));
		snprintf(n, sizeof(n), "%ld", b->completed);
		json_object_set_new(stats, "successfulRequestCount", json_string(n));
		snprintf(n, sizeof(n), "%ld", b->failed + b->expired_n + b->cancelled_n);
		json_object_set_new(stats, "failedRequestCount", json_string(n));
		json_object_set_new(json_object_get(out, "metadata"), "batchStats", stats);
	}
	if (b->ended && b->results && b->responses_file)
	{
		char		file[80];

		snprintf(file, sizeof(file), "files/batch-%s", b->id);
		json_object_set_new(out, "response",
							json_pack("{s:s, s:s}", "@type", b->embed ?
									  "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatchOutput" :
									  "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
									  "responsesFile", file));
	}
	else if (b->ended && b->results)
		json_object_set_new(out, "response",
							json_pack("{s:s, s:{s:o}}", "@type", b->embed ?
									  "type.googleapis.com/google.ai.generativelanguage.v1main.EmbedContentBatchOutput" :
									  "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
									  "inlinedResponses", "inlinedResponses",
									  json_loads(b->results, 0, NULL)));
	if (strcmp(status, "failed") == 0)
		json_object_set_new(out, "error", json_pack("{s:i, s:s}", "code", 3, "message",
													"the mock fails this batch (batch_fail)"));
	return out;
}

/*
 * The Files API's resumable upload of a batch's input (Google's protocol):
 * a start (X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Command:
 * start, X-Goog-Upload-Header-Content-Length, a JSON body naming the file)
 * answers a session URL (X-Goog-Upload-URL) on the mock's own host and
 * port; "upload[, finalize]" at X-Goog-Upload-Offset (the bytes the
 * session holds) adds the body, and finalize, once the session holds the
 * announced size, keeps it as a file files/file-mock-N (JSONL of {"key",
 * "request"}); "query" answers X-Goog-Upload-Status (active or final) and
 * X-Goog-Upload-Size-Received, and when final the file.  Knobs, set by
 * POST /gemini/upload_knobs (';'-separated, an empty body clears them,
 * /reset too): cut_upload:N keeps only the first N bytes of the first
 * upload of each session and closes the connection without an answer;
 * foreign_session answers every start with a session URL on another host
 * (localhost for 127.0.0.1, else 127.0.0.1: still the mock, so a request
 * sent there is counted); bad_size_received answers the next query with
 * a malformed X-Goog-Upload-Size-Received.  /stats counts in
 * "batch_gemini" the starts (upload_starts), the upload requests
 * (uploads), the queries (upload_queries), the bytes the sessions took
 * (upload_bytes: of a cut upload, its first N) and the sizes the starts
 * announced (upload_announced).
 */
#define MAX_UPLOAD_SESSIONS 256

static void send_json_text(struct evhttp_request *req, int status, const char *text);

typedef struct UploadSession
{
	char	   *data;			/* the bytes received (malloc'd) */
	size_t		len;
	size_t		size;			/* announced at the start */
	long		uploads;		/* upload requests so far */
	char		file[64];		/* once final: files/{id} */
} UploadSession;

static UploadSession *upload_sessions[MAX_UPLOAD_SESSIONS];
static int	nupload_sessions = 0;	/* (under batch_lock, as what follows) */
static long upload_cut = -1;	/* cut_upload:N, or -1 */
static bool upload_foreign = false;
static bool upload_bad_size = false;
static atomic_long upload_starts;
static atomic_long upload_queries;
static atomic_long upload_bytes;	/* bytes taken by the sessions */
static atomic_long upload_announced;	/* sizes announced by the starts */

/* Clear the knobs (under batch_lock) */
static void
upload_knobs_clear(void)
{
	upload_cut = -1;
	upload_foreign = upload_bad_size = false;
}

/* POST /gemini/upload_knobs: the knobs above */
static void
handle_upload_knobs(struct evhttp_request *req)
{
	size_t		len;
	char	   *body = request_body(req, &len);
	char	   *save = NULL;

	pthread_mutex_lock(&batch_lock);
	upload_knobs_clear();
	for (char *d = strtok_r(body, "; \n", &save); d; d = strtok_r(NULL, "; \n", &save))
	{
		if (strncmp(d, "cut_upload:", 11) == 0)
			upload_cut = atol(d + 11);
		else if (strcmp(d, "foreign_session") == 0)
			upload_foreign = true;
		else if (strcmp(d, "bad_size_received") == 0)
			upload_bad_size = true;
	}
	pthread_mutex_unlock(&batch_lock);
	free(body);
	send_json_text(req, 200, "{\"ok\":true}");
}

/* Close a request's connection without an answer (a transfer cut short) */
static void
close_unanswered(struct evhttp_request *req)
{
	static const Behaviour stall = {.fail_first = -1, .stall = true};
	struct evhttp_connection *conn = evhttp_request_get_connection(req);

	shutdown(bufferevent_getfd(evhttp_connection_get_bufferevent(conn)), SHUT_RDWR);
	/* the mock sees its end closed, and frees the request */
	reply(req, &stall, 200, "application/json", evbuffer_new(), false);
}

/* The file of a final session, as the upload's and a query's answers give it */
static json_t *
upload_file_json(const UploadSession *u)
{
	char		size[32];

	snprintf(size, sizeof(size), "%zu", u->len);
	return json_pack("{s:{s:s, s:s, s:s, s:s}}", "file", "name", u->file,
					 "mimeType", "application/jsonl", "sizeBytes", size, "state", "ACTIVE");
}

/* A start: a session for the announced size, its URL on this host */
static void
upload_start(struct evhttp_request *req, const char *body, size_t len)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	const char *protocol = evhttp_find_header(in, "X-Goog-Upload-Protocol");
	const char *length = evhttp_find_header(in, "X-Goog-Upload-Header-Content-Length");
	const char *host = evhttp_find_header(in, "Host");
	json_t	   *root = json_loadb(body, len, 0, NULL);
	const char *display = json_string_value(json_object_get(json_object_get(root, "file"), "display_name"));
	UploadSession *u = NULL;
	int			n = -1;
	char		url[512];
	const char *port;

	atomic_fetch_add(&upload_starts, 1);
	if (protocol == NULL || strcmp(protocol, "resumable") != 0 || length == NULL ||
		length[0] == '\0' || strspn(length, "0123456789") != strlen(length) || display == NULL ||
		host == NULL)
	{
		json_decref(root);
		gemini_error(req, 400, "INVALID_ARGUMENT",
					 "a start needs X-Goog-Upload-Protocol: resumable, X-Goog-Upload-Header-Content-Length and file.display_name");
		return;
	}
	json_decref(root);
	pthread_mutex_lock(&batch_lock);
	if (nupload_sessions < MAX_UPLOAD_SESSIONS)
	{
		u = calloc(1, sizeof(*u));
		u->size = strtoull(length, NULL, 10);
		atomic_fetch_add(&upload_announced, (long) u->size);
		n = nupload_sessions;
		upload_sessions[nupload_sessions++] = u;
	}
	port = strchr(host, ':');
	snprintf(url, sizeof(url), "http://%s%s/upload/v1beta/files?upload_id=mock-%d&upload_protocol=resumable",
			 !upload_foreign ? "" : strncmp(host, "localhost", 9) == 0 ? "127.0.0.1" : "localhost",
			 !upload_foreign ? host : port ? port : "", n);
	pthread_mutex_unlock(&batch_lock);
	if (u == NULL)
	{
		gemini_error(req, 500, "INTERNAL", "the mock holds too many upload sessions");
		return;
	}
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Goog-Upload-URL", url);
	evhttp_add_header(evhttp_request_get_output_headers(req), "X-Goog-Upload-Status", "active");
	send_json_text(req, 200, "{}");
}

/* An upload or a query on the session upload_id names */
static void
upload_on_session(struct evhttp_request *req, int n, char *body, size_t len)
{
	struct evkeyvalq *in = evhttp_request_get_input_headers(req);
	struct evkeyvalq *out = evhttp_request_get_output_headers(req);
	const char *command = evhttp_find_header(in, "X-Goog-Upload-Command");
	const char *offset = evhttp_find_header(in, "X-Goog-Upload-Offset");
	UploadSession *u;
	char		received[32];
	json_t	   *answer = NULL;
	const char *refused = NULL;
	bool		cut = false;

	if (command == NULL)
		command = "";
	pthread_mutex_lock(&batch_lock);
	u = n >= 0 && n < nupload_sessions ? upload_sessions[n] : NULL;
	if (u == NULL)
		refused = "no such upload session";
	else if (strcmp(command, "query") == 0)
	{
		atomic_fetch_add(&upload_queries, 1);
		snprintf(received, sizeof(received), "%zu", u->len);
		evhttp_add_header(out, "X-Goog-Upload-Status", u->file[0] ? "final" : "active");
		evhttp_add_header(out, "X-Goog-Upload-Size-Received", upload_bad_size ? "12x" : received);
		upload_bad_size = false;
		answer = u->file[0] ? upload_file_json(u) : json_pack("{}");
	}
	else if (strcmp(command, "upload") == 0 || strcmp(command, "upload, finalize") == 0)
	{
		bool		finalize = strcmp(command, "upload, finalize") == 0;

		atomic_fetch_add(&batch_uploads[API_GEMINI], 1);
		if (u->file[0])
			refused = "the upload session is final already";
		else if (offset == NULL || strspn(offset, "0123456789") != strlen(offset) ||
				 offset[0] == '\0' || strtoull(offset, NULL, 10) != u->len)
			refused = "X-Goog-Upload-Offset is not the bytes the session holds";
		else
		{
			size_t		take = len;

			cut = u->uploads++ == 0 && upload_cut >= 0 && (size_t) upload_cut < len;
			if (cut)
				take = (size_t) upload_cut;
			u->data = realloc(u->data, u->len + take + 1);
			memcpy(u->data + u->len, body, take);
			u->len += take;
			atomic_fetch_add(&upload_bytes, (long) take);
			if (!cut && finalize && u->len != u->size)
				refused = "the session holds fewer or more bytes than announced";
			else if (!cut && finalize)
			{
				char	   *data = malloc(u->len + 1);
				MockFile   *f;

				memcpy(data, u->data, u->len);
				data[u->len] = '\0';
				f = file_add(data, u->len);
				if (f == NULL)
				{
					free(data);
					refused = "the mock holds too many files";
				}
				else
				{
					snprintf(u->file, sizeof(u->file), "files/%s", f->id);
					free(u->data);	/* the file holds them now */
					u->data = NULL;
				}
			}
			if (refused == NULL && !cut)
			{
				evhttp_add_header(out, "X-Goog-Upload-Status", u->file[0] ? "final" : "active");
				answer = u->file[0] ? upload_file_json(u) : json_pack("{}");
			}
		}
	}
	else
		refused = "X-Goog-Upload-Command is none of upload, upload, finalize and query";
	pthread_mutex_unlock(&batch_lock);
	free(body);
	if (cut)
		close_unanswered(req);
	else if (refused)
		gemini_error(req, u == NULL ? 404 : 400, u == NULL ? "NOT_FOUND" : "INVALID_ARGUMENT", refused);
	else
		send_json(req, 200, answer);
}

/* POST /upload/v1beta/files: a start, or (?upload_id=) a session's request */
static void
handle_gemini_upload(struct evhttp_request *req)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	const char *id = query ? strstr(query, "upload_id=mock-") : NULL;
	size_t		len;
	char	   *body;

	atomic_fetch_add(&total_requests, 1);
	if (!authorised(req, FMT_GEMINI))
	{
		gemini_error(req, 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.");
		return;
	}
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
	{
		gemini_error(req, 404, "NOT_FOUND", "Unknown request URL");
		return;
	}
	body = request_body(req, &len);
	if (id)
		upload_on_session(req, atoi(id + 15), body, len);
	else
	{
		upload_start(req, body, len);
		free(body);
	}
}

/*
 * Is a request one of a batch (GenerateContentRequest: contents; of an
 * embeddings batch, EmbedContentRequest: content.parts)?
 */
static bool
gemini_batch_request(json_t *request, bool embed)
{
	return embed ? json_is_array(json_object_get(json_object_get(request, "content"), "parts")) :
		json_is_array(json_object_get(request, "contents"));
}

/* The items of an uploaded input file (files/{id}), or NULL with *bad saying why */
static json_t *
gemini_file_items(const char *file_name, bool embed, const char **bad)
{
	MockFile   *f;
	json_t	   *items = json_array();
	const char *p;
	const char *end;

	pthread_mutex_lock(&batch_lock);
	f = strncmp(file_name, "files/", 6) == 0 ? file_find(file_name + 6) : NULL;
	p = f ? f->data : NULL;
	end = f ? f->data + f->len : NULL;
	while (p && p < end && *bad == NULL)
	{
		const char *nl = memchr(p, '\n', end - p);
		size_t		n = nl ? (size_t) (nl - p) : (size_t) (end - p);
		json_t	   *line = n > 0 ? json_loadb(p, n, 0, NULL) : NULL;
		const char *key = json_string_value(json_object_get(line, "key"));

		if (n > 0 && (key == NULL || !gemini_batch_request(json_object_get(line, "request"), embed)))
			*bad = embed ? "each line of the file needs a key and request.content.parts" :
				"each line of the file needs a key and request.contents";
		else if (n > 0)
			json_array_append_new(items, json_pack("{s:s, s:O}", "id", key, "request",
												   json_object_get(line, "request")));
		json_decref(line);
		p = nl ? nl + 1 : end;
	}
	pthread_mutex_unlock(&batch_lock);
	if (f == NULL)
		*bad = "no such file";
	if (*bad)
	{
		json_decref(items);
		return NULL;
	}
	return items;
}

/*
 * The Files API's download of a batch's responses file (responses_file):
 * JSONL, each answer with its key at the top
 */
static void
handle_gemini_download(struct evhttp_request *req, const char *path)
{
	const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
	char		id[64];
	char		tail[32];
	MockBatch  *b = NULL;
	struct evbuffer *buf;
	json_t	   *items = NULL;
	int			delay_ms = 0;
	size_t		i;
	json_t	   *item;

	atomic_fetch_add(&total_requests, 1);
	if (!authorised(req, FMT_GEMINI))
	{
		gemini_error(req, 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.");
		return;
	}
	if (sscanf(path, "/download/v1beta/files/batch-%63[^:]%31s", id, tail) != 2 ||
		strcmp(tail, ":download") != 0 || query == NULL || strstr(query, "alt=media") == NULL)
	{
		gemini_error(req, 404, "NOT_FOUND", "Unknown request URL");
		return;
	}
	pthread_mutex_lock(&batch_lock);
	b = batch_of_api(id, API_GEMINI, false);
	if (b && b->ended && b->results && b->responses_file)
	{
		items = json_loads(b->results, 0, NULL);
		delay_ms = model_ms(b->model, "batch_download_ms:");
		atomic_fetch_add(&batch_downloads[API_GEMINI], 1);
	}
	pthread_mutex_unlock(&batch_lock);
	if (items == NULL)
	{
		gemini_error(req, 404, "NOT_FOUND", "no such file");
		return;
	}
	buf = evbuffer_new();
	json_array_foreach(items, i, item)
	{
		json_t	   *line = json_deep_copy(item);
		char	   *text;

		json_object_set(line, "key", json_object_get(json_object_get(item, "metadata"), "key"));
		json_object_del(line, "metadata");
		text = json_dumps(line, JSON_COMPACT);
		evbuffer_add_printf(buf, "%s\n", text);
		free(text);
		json_decref(line);
	}
	json_decref(items);
	{
		Behaviour	late = {.fail_first = -1, .delay_ms = delay_ms};

		reply(req, &late, 200, "application/jsonl", buf, false);
	}
}

/*
 * Every Gemini batch request: :batchGenerateContent, :asyncBatchEmbedContent
 * (an embeddings batch: EmbedContentRequests, each answered with its text's
 * vector as /v1/embeddings gives it, of outputDimensionality values or 8),
 * /v1beta/batches...
 */
static void
handle_gemini_batch(struct evhttp_request *req, const char *path)
{
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
	const int	api = API_GEMINI;
	char		id[64];

	atomic_fetch_add(&total_requests, 1);
	if (!authorised(req, FMT_GEMINI))
	{
		gemini_error(req, 400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.");
		return;
	}
	if ((ends_with(path, ":batchGenerateContent") || ends_with(path, ":asyncBatchEmbedContent")) &&
		cmd == EVHTTP_REQ_POST && strstr(path, "/models/"))
	{
		bool		embed = ends_with(path, ":asyncBatchEmbedContent");
		const char *m = strstr(path, "/models/") + 8;
		char	   *raw = strndup(m, strrchr(path, ':') - m);
		char	   *model = printable(evhttp_decode_uri(raw));
		size_t		len;
		char	   *body = request_body(req, &len);
		json_t	   *root = json_loadb(body, len, 0, NULL);
		json_t	   *batch = json_object_get(root, "batch");
		const char *display = json_string_value(json_object_get(batch, "display_name"));
		json_t	   *config = json_object_get(batch, "input_config");
		json_t	   *requests;
		json_t	   *items = json_array();
		const char *bad = NULL;
		const char *file_name;
		size_t		i;
		json_t	   *r;
		MockBatch  *b = NULL;

		free(raw);
		free(body);
		atomic_fetch_add(&batch_creates[api], 1);
		if (display == NULL)
			display = json_string_value(json_object_get(batch, "displayName"));
		if (config == NULL)
			config = json_object_get(batch, "inputConfig");
		requests = json_object_get(json_object_get(config, "requests"), "requests");
		file_name = json_string_value(json_object_get(config, "file_name"));
		if (file_name == NULL)
			file_name = json_string_value(json_object_get(config, "fileName"));
		if (file_name && display)
		{
			json_decref(items);
			items = gemini_file_items(file_name, embed, &bad);
			if (items && json_array_size(items) == 0)
				bad = "the file holds no requests";
			if (bad)
			{
				json_decref(items);
				items = json_array();
			}
		}
		else if (display == NULL || !json_is_array(requests) || json_array_size(requests) == 0)
			bad = "batch.display_name and batch.input_config.requests.requests (or file_name) are required";
		json_array_foreach(requests, i, r)
		{
			const char *key = json_string_value(json_object_get(json_object_get(r, "metadata"), "key"));

			if (bad)
				break;
			if (key == NULL || !gemini_batch_request(json_object_get(r, "request"), embed))
				bad = embed ? "each request needs request.content.parts and metadata.key" :
					"each request needs request.contents and metadata.key";
			else
				json_array_append_new(items, json_pack("{s:s, s:O}", "id", key, "request",
													   json_object_get(r, "request")));
		}
		if (bad == NULL)
		{
			pthread_mutex_lock(&batch_lock);
			b = inline_batch_add(api, model, items);
			if (b)
			{
				snprintf(b->display, sizeof(b->display), "%s", display);
				snprintf(b->model, sizeof(b->model), "models/%.100s", model);
				b->embed = embed;
				/* a batch made from a file answers in a file */
				if (file_name)
					b->responses_file = true;
			}
			pthread_mutex_unlock(&batch_lock);
		}
		json_decref(root);
		if (b == NULL)
		{
			json_decref(items);
			free(model);
			gemini_error(req, bad ? 400 : 500, bad ? "INVALID_ARGUMENT" : "INTERNAL",
						 bad ? bad : "the mock holds too many batches");
			return;
		}
		if (strstr(model, ";create_lost"))
		{
			free(model);
			gemini_error(req, 503, "UNAVAILABLE", "the answer of this create is lost (create_lost)");
			return;
		}
		free(model);
		pthread_mutex_lock(&batch_lock);
		{
			json_t	   *out = gemini_batch_json(b);

			pthread_mutex_unlock(&batch_lock);
			send_json(req, 200, out);
		}
	}
	else if (strcmp(path, "/v1beta/batches") == 0 && cmd == EVHTTP_REQ_GET)
	{
		send_json(req, 200, json_pack("{s:o}", "operations", list_batches(api, gemini_batch_json)));
	}
	else if (sscanf(path, "/v1beta/batches/%63[^/:]", id) == 1)
	{
		MockBatch  *b;
		bool		cancel = ends_with(path, ":cancel") && cmd == EVHTTP_REQ_POST;
		json_t	   *out = NULL;

		pthread_mutex_lock(&batch_lock);
		b = batch_of_api(id, api, cancel);
		if (b)
			out = gemini_batch_json(b);
		/* a GET of a finished batch fetches its answers */
		atomic_fetch_add(cancel ? &batch_cancels[api] : (b && b->ended) ? &batch_downloads[api] :
						 &batch_polls[api], 1);
		pthread_mutex_unlock(&batch_lock);
		if (out == NULL)
			gemini_error(req, 404, "NOT_FOUND", "no such batch");
		else if (cancel)
		{
			json_decref(out);
			send_json(req, 200, json_pack("{}"));
		}
		else
			send_json(req, 200, out);
	}
	else
		gemini_error(req, 404, "NOT_FOUND", "Unknown request URL");
}

/* Send a small JSON text now */
static void
send_json_text(struct evhttp_request *req, int status, const char *text)
{
	struct evbuffer *buf = evbuffer_new();

	evbuffer_add(buf, text, strlen(text));
	send_now(req, status, "application/json", buf);
	evbuffer_free(buf);
}

/*
 * Count the spans of an OTLP export (resourceSpans[].scopeSpans[].spans[])
 * and keep them; false when it is not shaped so
 */
static bool
otlp_count(json_t *root, long *resource_spans, long *spans)
{
	json_t	   *rs = json_object_get(root, "resourceSpans");
	size_t		i,
				j,
				k;
	json_t	   *r,
			   *ss,
			   *span;

	*resource_spans = *spans = 0;
	if (!json_is_array(rs))
		return false;
	json_array_foreach(rs, i, r)
	{
		json_t	   *scopes = json_object_get(r, "scopeSpans");

		if (!json_is_array(scopes))
			return false;
		(*resource_spans)++;
		json_array_foreach(scopes, j, ss)
		{
			json_t	   *list = json_object_get(ss, "spans");

			if (!json_is_array(list))
				return false;
			json_array_foreach(list, k, span)
			{
				if (!json_is_object(span))
					return false;
				(*spans)++;
			}
		}
	}
	return true;
}

/* Keep the spans of an accepted export (otlp_lock held) */
static void
otlp_keep(json_t *root)
{
	size_t		i,
				j,
				k;
	json_t	   *r,
			   *ss,
			   *span;

	if (otlp_kept == NULL)
		otlp_kept = json_array();
	json_array_foreach(json_object_get(root, "resourceSpans"), i, r)
		json_array_foreach(json_object_get(r, "scopeSpans"), j, ss)
		json_array_foreach(json_object_get(ss, "spans"), k, span)
	{
		if (json_array_size(otlp_kept) >= MAX_KEPT_SPANS)
			return;
		json_array_append(otlp_kept, span);
	}
}

/*
 * POST /v1/traces: an OTLP/HTTP JSON export.  The directives of POST
 * /otlp/directives apply (delay, stall, status, reject); a request they
 * fail or stall is counted in requests only.
 */
static void
handle_otlp(struct evhttp_request *req)
{
	const char *ctype = evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Type");
	Behaviour	b;
	size_t		len;
	char	   *body;
	json_t	   *root;
	long		resource_spans;
	long		spans;
	char		answer[256];

	memset(&b, 0, sizeof(b));
	pthread_mutex_lock(&otlp_lock);
	otlp_requests++;
	if (otlp_directives)
		apply_directives(&b, otlp_directives, false);
	pthread_mutex_unlock(&otlp_lock);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST)
	{
		send_json_text(req, 405, "{\"code\":12,\"message\":\"POST only\"}");
		return;
	}
	if (b.stall || b.status)
	{
		struct evbuffer *buf = evbuffer_new();

		evbuffer_add_printf(buf, "{\"code\":14,\"message\":\"mock collector failure\"}");
		reply(req, &b, b.status ? b.status : 503, "application/json", buf, false);
		return;
	}
	if (ctype == NULL || strncasecmp(ctype, "application/json", 16) != 0)
	{
		send_json_text(req, 415, "{\"code\":3,\"message\":\"Content-Type must be application/json\"}");
		return;
	}
	if (otlp_discard)
	{
		/* a collector that costs this machine nothing: read, count, drop */
		evbuffer_drain(evhttp_request_get_input_buffer(req),
					   evbuffer_get_length(evhttp_request_get_input_buffer(req)));
		pthread_mutex_lock(&otlp_lock);
		otlp_accepted++;
		pthread_mutex_unlock(&otlp_lock);
		send_json_text(req, 200, "{}");
		return;
	}
	body = request_body(req, &len);
	root = json_loadb(body, len, 0, NULL);
	if (!json_is_object(root) || !otlp_count(root, &resource_spans, &spans))
	{
		free(body);
		json_decref(root);
		send_json_text(req, 400, "{\"code\":3,\"message\":\"not an OTLP ExportTraceServiceRequest\"}");
		return;
	}
	pthread_mutex_lock(&otlp_lock);
	otlp_accepted++;
	otlp_resource_spans += resource_spans;
	otlp_spans += spans;
	otlp_keep(root);
	free(otlp_last);
	otlp_last = body;			/* as received */
	pthread_mutex_unlock(&otlp_lock);
	json_decref(root);
	if (b.reject > 0)
		snprintf(answer, sizeof(answer),
				 "{\"partialSuccess\":{\"rejectedSpans\":\"%ld\",\"errorMessage\":\"mock rejects\"}}",
				 b.reject);
	else
		snprintf(answer, sizeof(answer), "{}");
	{
		struct evbuffer *buf = evbuffer_new();

		evbuffer_add(buf, answer, strlen(answer));
		reply(req, &b, 200, "application/json", buf, false);
	}
}

/* Forget the spans received and the directives (otlp_lock held) */
static void
otlp_forget(void)
{
	otlp_requests = otlp_accepted = otlp_resource_spans = otlp_spans = 0;
	free(otlp_last);
	otlp_last = NULL;
	json_decref(otlp_kept);
	otlp_kept = NULL;
	free(otlp_directives);
	otlp_directives = NULL;
}

/*
 * GET /otlp/last (the last accepted export), GET /otlp/spans (every span
 * kept), POST /otlp/directives (the body: directives for the exports that
 * follow; empty: none)
 */
static void
handle_otlp_control(struct evhttp_request *req, const char *path)
{
	bool		post = evhttp_request_get_command(req) == EVHTTP_REQ_POST;

	if (!post && strcmp(path, "/otlp/last") == 0)
	{
		char	   *text;

		pthread_mutex_lock(&otlp_lock);
		text = strdup(otlp_last ? otlp_last : "{}");
		pthread_mutex_unlock(&otlp_lock);
		send_json_text(req, 200, text);
		free(text);
	}
	else if (!post && strcmp(path, "/otlp/spans") == 0)
	{
		json_t	   *out;

		pthread_mutex_lock(&otlp_lock);
		out = json_pack("{s:O}", "spans", otlp_kept ? otlp_kept : json_array());
		pthread_mutex_unlock(&otlp_lock);
		{
			struct evbuffer *buf = json_buffer(out);

			send_now(req, 200, "application/json", buf);
			evbuffer_free(buf);
		}
	}
	else if (post && strcmp(path, "/otlp/directives") == 0)
	{
		size_t		len;
		char	   *body = request_body(req, &len);

		pthread_mutex_lock(&otlp_lock);
		free(otlp_directives);
		otlp_directives = len > 0 ? body : NULL;
		pthread_mutex_unlock(&otlp_lock);
		if (len == 0)
			free(body);
		send_json_text(req, 200, "{\"ok\":true}");
	}
	else
		send_json_text(req, 404, "{\"code\":5,\"message\":\"unknown OTLP control\"}");
}

/* GET /stats */
/* The counters of a batch API */
static json_t *
batch_counters(int api)
{
	json_t	   *out = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I}",
								"uploads", (json_int_t) atomic_load(&batch_uploads[api]),
								"creates", (json_int_t) atomic_load(&batch_creates[api]),
								"polls", (json_int_t) atomic_load(&batch_polls[api]),
								"downloads", (json_int_t) atomic_load(&batch_downloads[api]),
								"cancels", (json_int_t) atomic_load(&batch_cancels[api]),
								"lists", (json_int_t) atomic_load(&batch_lists[api]),
								"created", (json_int_t) atomic_load(&batch_created[api]));

	/* Gemini's resumable upload: starts, queries, bytes taken */
	if (api == API_GEMINI)
	{
		json_object_set_new(out, "upload_starts", json_integer(atomic_load(&upload_starts)));
		json_object_set_new(out, "upload_queries", json_integer(atomic_load(&upload_queries)));
		json_object_set_new(out, "upload_bytes", json_integer(atomic_load(&upload_bytes)));
		json_object_set_new(out, "upload_announced", json_integer(atomic_load(&upload_announced)));
	}
	return out;
}

static void
handle_stats(struct evhttp_request *req)
{
	json_t	   *by_model = json_pack("{}");
	json_t	   *out;

	pthread_mutex_lock(&models_lock);
	for (int i = 0; i < MODEL_BUCKETS; i++)
		for (ModelCount *m = models[i]; m; m = m->next)
			json_object_set_new(by_model, m->model, json_integer(m->requests));
	pthread_mutex_unlock(&models_lock);
	pthread_mutex_lock(&otlp_lock);
	out = json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:{s:I, s:I, s:I, s:I}}",
					"requests", (json_int_t) atomic_load(&total_requests),
					"chat", (json_int_t) atomic_load(&chat_requests),
					"embeddings", (json_int_t) atomic_load(&embedding_requests),
					"closed_early", (json_int_t) atomic_load(&closed_early),
					"drips_cut", (json_int_t) atomic_load(&drips_cut),
					"drip_events", (json_int_t) atomic_load(&drip_events),
					"by_model", by_model,
					"batch", batch_counters(API_OPENAI),
					"batch_azure", batch_counters(API_AZURE),
					"batch_anthropic", batch_counters(API_ANTHROPIC),
					"batch_gemini", batch_counters(API_GEMINI),
					"otlp", "requests", (json_int_t) otlp_requests,
					"accepted", (json_int_t) otlp_accepted,
					"resource_spans", (json_int_t) otlp_resource_spans,
					"spans", (json_int_t) otlp_spans);
	pthread_mutex_unlock(&otlp_lock);
	{
		struct evbuffer *buf = json_buffer(out);

		send_now(req, 200, "application/json", buf);
		evbuffer_free(buf);
	}
}

/* Drop the counters of every model string */
static void
forget_models(void)
{
	pthread_mutex_lock(&models_lock);
	for (int i = 0; i < MODEL_BUCKETS; i++)
	{
		while (models[i])
		{
			ModelCount *next = models[i]->next;

			free(models[i]->model);
			free(models[i]);
			models[i] = next;
		}
	}
	pthread_mutex_unlock(&models_lock);
}

/* POST /reset */
static void
handle_reset(struct evhttp_request *req)
{
	struct evbuffer *buf = evbuffer_new();

	forget_models();
	pthread_mutex_lock(&otlp_lock);
	otlp_forget();
	pthread_mutex_unlock(&otlp_lock);
	atomic_store(&total_requests, 0);
	atomic_store(&chat_requests, 0);
	atomic_store(&embedding_requests, 0);
	atomic_store(&closed_early, 0);
	atomic_store(&drips_cut, 0);
	atomic_store(&drip_events, 0);
	for (int api = 0; api < NAPIS; api++)
	{
		atomic_store(&batch_uploads[api], 0);
		atomic_store(&batch_creates[api], 0);
		atomic_store(&batch_polls[api], 0);
		atomic_store(&batch_downloads[api], 0);
		atomic_store(&batch_cancels[api], 0);
		atomic_store(&batch_lists[api], 0);
		atomic_store(&batch_created[api], 0);
	}
	atomic_store(&upload_starts, 0);
	atomic_store(&upload_queries, 0);
	atomic_store(&upload_bytes, 0);
	atomic_store(&upload_announced, 0);
	pthread_mutex_lock(&batch_lock);
	upload_knobs_clear();
	pthread_mutex_unlock(&batch_lock);
	evbuffer_add_printf(buf, "{\"ok\":true}");
	send_now(req, 200, "application/json", buf);
	evbuffer_free(buf);
}

/* Dispatch on the path */
static void
handle(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

	(void) arg;
	if (path == NULL)
		path = "/";
	if (strcmp(path, "/stats") == 0)
		handle_stats(req);
	else if (strcmp(path, "/v1/traces") == 0)
		handle_otlp(req);
	else if (strncmp(path, "/otlp/", 6) == 0)
		handle_otlp_control(req, path);
	else if (strcmp(path, "/reset") == 0)
		handle_reset(req);
	else if (strcmp(path, "/health") == 0)
	{
		struct evbuffer *buf = evbuffer_new();

		evbuffer_add_printf(buf, "{\"ok\":true}");
		send_now(req, 200, "application/json", buf);
		evbuffer_free(buf);
	}
	else if (strstr(path, "/messages/batches"))
		handle_anthropic_batch(req, path);
	else if (strncmp(path, "/v1beta/batches", 15) == 0 || ends_with(path, ":batchGenerateContent") ||
			 ends_with(path, ":asyncBatchEmbedContent"))
		handle_gemini_batch(req, path);
	else if (strncmp(path, "/download/v1beta/files/", 23) == 0)
		handle_gemini_download(req, path);
	else if (strcmp(path, "/upload/v1beta/files") == 0)
		handle_gemini_upload(req);
	else if (strcmp(path, "/gemini/upload_knobs") == 0)
		handle_upload_knobs(req);
	else if (strstr(path, "/files") || strstr(path, "/batches"))
		handle_batch(req, path);
	else
		handle_api(req, path);
}

/* A listening socket on 127.0.0.1:port with SO_REUSEPORT */
static int
listen_socket(int port)
{
	int			fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int			one = 1;
	struct sockaddr_in addr;

	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons(port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0 || listen(fd, 4096) != 0)
	{
		close(fd);
		return -1;
	}
	return fd;
}

/* The main thread asks the serving threads to stop: stop_pipe becomes readable */
static void
stop_serving(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	event_base_loopbreak(arg);
}

/*
 * One serving thread: its own event base and evhttp on its own socket,
 * until stop_pipe becomes readable; then everything is freed, pending
 * requests included.
 */
static void *
serve(void *arg)
{
	int			fd = (int) (intptr_t) arg;
	struct event_config *cfg = event_config_new();
	struct event_base *base;
	struct evhttp *http;
	struct event *stop;

	event_config_require_features(cfg, EV_FEATURE_EARLY_CLOSE);
	base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (base == NULL)
	{
		fprintf(stderr, "llmgw-mock: no event backend detects closed connections\n");
		exit(1);
	}
	http = evhttp_new(base);
	evhttp_set_gencb(http, handle, NULL);
	evhttp_set_max_body_size(http, 64 * 1024 * 1024);
	if (idle_ms > 0)
	{
		struct timeval tv = {idle_ms / 1000, (idle_ms % 1000) * 1000};

		evhttp_set_timeout_tv(http, &tv);
	}
	else
		evhttp_set_timeout(http, 3600);
	if (evhttp_accept_socket(http, fd) != 0)
	{
		fprintf(stderr, "llmgw-mock: cannot accept on socket\n");
		exit(1);
	}
	stop = event_new(base, stop_pipe[0], EV_READ, stop_serving, base);
	event_add(stop, NULL);
	event_base_dispatch(base);
	event_free(stop);
	evhttp_free(http);
	event_base_free(base);
	return NULL;
}

/* Write the port to path atomically */
static void
write_port_file(const char *path, int port)
{
	char		tmp[4096];
	FILE	   *f;

	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, path) != 0)
	{
		perror("llmgw-mock: port file");
		exit(1);
	}
}

/* Parse the options, listen, serve until SIGTERM or SIGINT, then free everything */
int
main(int argc, char **argv)
{
	int			port = 0;
	int			threads = 2;
	const char *port_file = NULL;
	int			fds[MAX_THREADS];
	pthread_t	tids[MAX_THREADS];
	struct rlimit rl;
	struct sockaddr_in addr;
	socklen_t	alen = sizeof(addr);
	sigset_t	set;
	int			sig;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--port") == 0 && i + 1 < argc)
			port = atoi(argv[++i]);
		else if (strcmp(argv[i], "--port-file") == 0 && i + 1 < argc)
			port_file = argv[++i];
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--require-key") == 0 && i + 1 < argc)
			require_key = argv[++i];
		else if (strcmp(argv[i], "--corpus") == 0 && i + 1 < argc)
			corpus_dir = argv[++i];
		else if (strcmp(argv[i], "--batch-ms") == 0 && i + 1 < argc)
			default_batch_ms = atoi(argv[++i]);
		else if (strcmp(argv[i], "--otlp-discard") == 0)
			otlp_discard = true;
		else if (strcmp(argv[i], "--idle-ms") == 0 && i + 1 < argc)
			idle_ms = atoi(argv[++i]);
		else
		{
			fprintf(stderr, "usage: llmgw-mock [--port N] [--port-file PATH] [--threads N] [--require-key KEY] [--corpus DIR] [--batch-ms MS] [--otlp-discard] [--idle-ms MS]\n");
			return 2;
		}
	}
	if (threads < 1 || threads > MAX_THREADS)
		threads = 2;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
	{
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	fds[0] = listen_socket(port);
	if (fds[0] < 0 || getsockname(fds[0], (struct sockaddr *) &addr, &alen) != 0)
	{
		perror("llmgw-mock: listen");
		return 1;
	}
	port = ntohs(addr.sin_port);
	for (int i = 1; i < threads; i++)
		if ((fds[i] = listen_socket(port)) < 0)
		{
			perror("llmgw-mock: listen");
			return 1;
		}
	if (pipe2(stop_pipe, O_CLOEXEC) != 0)
	{
		perror("llmgw-mock: pipe");
		return 1;
	}
	for (int i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, serve, (void *) (intptr_t) fds[i]);
	if (port_file)
		write_port_file(port_file, port);
	fprintf(stderr, "llmgw-mock listening on 127.0.0.1:%d with %d threads\n", port, threads);
	sigwait(&set, &sig);
	if (write(stop_pipe[1], "x", 1) != 1)
		return 1;
	for (int i = 0; i < threads; i++)
		pthread_join(tids[i], NULL);
	forget_models();
	otlp_forget();
	close(stop_pipe[0]);
	close(stop_pipe[1]);
	return 0;
}
