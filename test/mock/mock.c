/*-------------------------------------------------------------------------
 *
 * mock.c
 *		A mock LLM provider for llmgw's tests and benchmarks: the OpenAI
 *		Chat Completions and Embeddings wire formats, deterministic
 *		answers, and failures chosen per request.
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
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>

#define MAX_THREADS 16
#define MODEL_BUCKETS 1024

/* Per-request behaviour, from the directives */
typedef struct Behaviour
{
	int			delay_ms;
	int			status;
	int			fail_first;		/* -1: always */
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
} Behaviour;

/* Request counters of one exact model string */
typedef struct ModelCount
{
	char	   *model;
	long		requests;
	long		failed_first;
	struct ModelCount *next;
} ModelCount;

/* A reply waiting for its delay, or a stalled request */
typedef struct Pending
{
	struct evhttp_request *req;
	struct evhttp_connection *conn;
	struct event *timer;
	int			status;
	char	   *content_type;
	struct evbuffer *body;
	bool		stream;
} Pending;

static atomic_long total_requests;
static atomic_long chat_requests;
static atomic_long embedding_requests;
static pthread_mutex_t models_lock = PTHREAD_MUTEX_INITIALIZER;
static ModelCount *models[MODEL_BUCKETS];
static const char *require_key = NULL;
static atomic_long next_id;

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

/* Count a request for a model; returns how many came before it */
static long
count_model(const char *model, bool fail_candidate, int fail_first, bool *fail)
{
	unsigned	b = fnv1a(model, 1469598103934665603ULL) % MODEL_BUCKETS;
	ModelCount *m;
	long		before;

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
	before = m->requests++;
	*fail = false;
	if (fail_candidate)
	{
		if (fail_first < 0)
			*fail = true;
		else if (m->failed_first < fail_first)
		{
			m->failed_first++;
			*fail = true;
		}
	}
	pthread_mutex_unlock(&models_lock);
	return before;
}

/* Apply one directive */
static void
apply_directive(Behaviour *b, const char *d)
{
	if (sscanf(d, "delay:%d", &b->delay_ms) == 1 ||
		sscanf(d, "status:%d", &b->status) == 1 ||
		sscanf(d, "fail_first:%d", &b->fail_first) == 1 ||
		sscanf(d, "huge:%ld", &b->huge) == 1 ||
		sscanf(d, "dim:%d", &b->dim) == 1 ||
		sscanf(d, "cached:%ld", &b->cached) == 1 ||
		sscanf(d, "reasoning:%ld", &b->reasoning) == 1)
		return;
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

/* Number of whitespace-separated words */
static long
count_words(const char *s)
{
	long		n = 0;
	bool		in = false;

	for (; *s; s++)
	{
		bool		space = (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r');

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

/* The connection of a pending request went away: drop the request */
static void
pending_closed(struct evhttp_connection *conn, void *arg)
{
	Pending    *p = arg;

	if (p->timer)
		event_free(p->timer);
	if (p->body)
		evbuffer_free(p->body);
	free(p->content_type);
	free(p);
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

/* The delay of a pending reply is over */
static void
pending_fire(evutil_socket_t fd, short what, void *arg)
{
	Pending    *p = arg;

	evhttp_connection_set_closecb(p->conn, NULL, NULL);
	if (p->stream)
		send_stream(p->req, p->body);
	else
		send_now(p->req, p->status, p->content_type, p->body);
	event_free(p->timer);
	evbuffer_free(p->body);
	free(p->content_type);
	free(p);
}

/* Reply after the behaviour's delay (or never, for stall) */
static void
reply(struct evhttp_request *req, const Behaviour *b, int status, const char *ctype,
	  struct evbuffer *body, bool stream)
{
	Pending    *p;

	if (b->delay_ms <= 0 && !b->stall)
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
	evhttp_connection_set_closecb(p->conn, pending_closed, p);
	if (!b->stall)
	{
		struct timeval tv = {b->delay_ms / 1000, (b->delay_ms % 1000) * 1000};

		p->timer = evtimer_new(evhttp_connection_get_base(p->conn), pending_fire, p);
		evtimer_add(p->timer, &tv);
	}
}

/* An evbuffer holding the compact JSON of v (v is released) */
static struct evbuffer *
json_buffer(json_t *v)
{
	struct evbuffer *buf = evbuffer_new();
	char	   *s = json_dumps(v, JSON_COMPACT);

	evbuffer_add(buf, s, strlen(s));
	free(s);
	json_decref(v);
	return buf;
}

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

/* Error reply of a status directive */
static void
reply_status(struct evhttp_request *req, const Behaviour *b, const char *model)
{
	char		msg[512];

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
			reply_error(req, b, 404, msg, "invalid_request_error", "model_not_found", "model");
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
		bool		space = (*p == ' ');

		if (!space && !in && ++n > max_words && max_words >= 0)
		{
			*cut = true;
			while (p > text && p[-1] == ' ')
				p--;
			return strndup(text, p - text);
		}
		in = !space;
	}
	return strdup(text);
}

/* A chat completion whose content is `size` bytes of 'x' */
static struct evbuffer *
huge_body(const char *model, long size)
{
	struct evbuffer *buf = evbuffer_new();
	static char chunk[65536];
	long		left = size;

	if (chunk[0] != 'x')
		memset(chunk, 'x', sizeof(chunk));
	evbuffer_add_printf(buf, "{\"id\":\"chatcmpl-mock-huge\",\"object\":\"chat.completion\","
						"\"model\":\"%s\",\"choices\":[{\"index\":0,\"message\":"
						"{\"role\":\"assistant\",\"content\":\"", model);
	while (left > 0)
	{
		long		n = left < (long) sizeof(chunk) ? left : (long) sizeof(chunk);

		evbuffer_add(buf, chunk, n);
		left -= n;
	}
	evbuffer_add_printf(buf, "\"},\"finish_reason\":\"stop\"}],\"usage\":"
						"{\"prompt_tokens\":1,\"completion_tokens\":%ld,\"total_tokens\":%ld}}",
						size, size + 1);
	return buf;
}

/* SSE chunks of a streamed answer, one word per chunk */
static struct evbuffer *
stream_body(const char *model, long id, const char *text, const char *finish,
			json_t *usage)
{
	struct evbuffer *buf = evbuffer_new();
	char	   *copy = strdup(text);
	char	   *save = NULL;
	bool		first = true;

	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save))
	{
		char		piece[4096];
		json_t	   *delta;
		json_t	   *c;
		char	   *s;

		snprintf(piece, sizeof(piece), "%s%s", first ? "" : " ", w);
		delta = first ? json_pack("{s:s, s:s}", "role", "assistant", "content", piece)
			: json_pack("{s:s}", "content", piece);
		first = false;
		c = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:o, s:n}]}",
					  "id", "chatcmpl-mock", "object", "chat.completion.chunk",
					  "created", 1700000000, "model", model,
					  "choices", "index", 0, "delta", delta, "finish_reason");
		s = json_dumps(c, JSON_COMPACT);
		evbuffer_add_printf(buf, "data: %s\n\n", s);
		free(s);
		json_decref(c);
	}
	free(copy);
	{
		json_t	   *c = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:{}, s:s}]}",
								  "id", "chatcmpl-mock", "object", "chat.completion.chunk",
								  "created", 1700000000, "model", model,
								  "choices", "index", 0, "delta", "finish_reason", finish);
		char	   *s = json_dumps(c, JSON_COMPACT);

		evbuffer_add_printf(buf, "data: %s\n\n", s);
		free(s);
		json_decref(c);
	}
	if (usage)
	{
		json_t	   *c = json_pack("{s:s, s:s, s:i, s:s, s:[], s:O}",
								  "id", "chatcmpl-mock", "object", "chat.completion.chunk",
								  "created", 1700000000, "model", model,
								  "choices", "usage", usage);
		char	   *s = json_dumps(c, JSON_COMPACT);

		evbuffer_add_printf(buf, "data: %s\n\n", s);
		free(s);
		json_decref(c);
	}
	evbuffer_add_printf(buf, "data: [DONE]\n\n");
	(void) id;
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
	b->dim = 8;
	apply_directives(b, model, true);
	if (hdr)
		apply_directives(b, hdr, false);
}

/* Is the request's failure directive to be applied now? */
static bool
should_fail(const Behaviour *b, const char *model)
{
	bool		fail;
	bool		candidate = b->status || b->quota || b->context || b->malformed;

	count_model(model, candidate, b->fail_first, &fail);
	return fail;
}

/* POST /v1/chat/completions */
static void
handle_chat(struct evhttp_request *req, json_t *root, const Behaviour *b, const char *model)
{
	json_t	   *messages = json_object_get(root, "messages");
	json_t	   *maxt = json_object_get(root, "max_tokens");
	json_t	   *opts = json_object_get(root, "stream_options");
	const char *last = "";
	long		prompt = 0;
	size_t		i;
	json_t	   *m;
	char	   *reply_text;
	char	   *text;
	bool		cut;
	long		completion;
	json_t	   *usage;

	if (!json_is_array(messages))
	{
		reply_error(req, b, 400, "messages must be an array", "invalid_request_error", "invalid_request", "messages");
		return;
	}
	json_array_foreach(messages, i, m)
	{
		const char *content = json_string_value(json_object_get(m, "content"));
		const char *role = json_string_value(json_object_get(m, "role"));

		prompt += 3;
		if (content)
		{
			prompt += count_words(content);
			if (role && strcmp(role, "user") == 0)
				last = content;
		}
	}
	if (b->huge > 0)
	{
		reply(req, b, 200, "application/json", huge_body(model, b->huge), false);
		return;
	}
	if (b->echo_auth)
	{
		const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

		reply_text = strdup(auth ? auth : "");
	}
	else if (asprintf(&reply_text, "Hello! You said: %s", last) < 0)
		abort();
	text = first_words(reply_text, json_is_integer(maxt) ? (long) json_integer_value(maxt) : -1, &cut);
	free(reply_text);
	completion = count_words(text);
	usage = b->nousage ? NULL : chat_usage(b, prompt, completion);

	if (json_is_true(json_object_get(root, "stream")))
	{
		json_t	   *u = json_is_true(json_object_get(opts, "include_usage")) ? usage : NULL;

		reply(req, b, 200, "text/event-stream",
			  stream_body(model, 0, text, cut ? "length" : "stop", u), true);
		json_decref(usage);
	}
	else
	{
		char		id[64];
		json_t	   *out;

		snprintf(id, sizeof(id), "chatcmpl-mock-%ld", atomic_fetch_add(&next_id, 1));
		out = json_pack("{s:s, s:s, s:i, s:s, s:[{s:i, s:{s:s, s:s}, s:s}]}",
						"id", id, "object", "chat.completion", "created", 1700000000,
						"model", model, "choices", "index", 0, "message",
						"role", "assistant", "content", text,
						"finish_reason", cut ? "length" : "stop");
		if (usage)
			json_object_set_new(out, "usage", usage);
		reply(req, b, 200, "application/json", json_buffer(out), false);
	}
	free(text);
}

/* Deterministic embedding element j of s, in [-1, 1] */
static double
embed_value(const char *s, int j)
{
	uint64_t	h = fnv1a(s, 1469598103934665603ULL ^ (uint64_t) (j + 1) * 0x9E3779B97F4A7C15ULL);

	return ((double) (h % 2000001) / 1000000.0) - 1.0;
}

/* POST /v1/embeddings */
static void
handle_embeddings(struct evhttp_request *req, json_t *root, const Behaviour *b, const char *model)
{
	json_t	   *input = json_object_get(root, "input");
	json_t	   *dims = json_object_get(root, "dimensions");
	int			dim = json_is_integer(dims) ? (int) json_integer_value(dims) : b->dim;
	json_t	   *data = json_array();
	long		words = 0;
	size_t		n = json_is_array(input) ? json_array_size(input) : 1;

	if (!json_is_string(input) && !json_is_array(input))
	{
		json_decref(data);
		reply_error(req, b, 400, "input must be a string or an array of strings", "invalid_request_error", "invalid_request", "input");
		return;
	}
	if (dim < 1 || dim > 65536)
		dim = 8;
	for (size_t i = 0; i < n; i++)
	{
		json_t	   *s = json_is_array(input) ? json_array_get(input, i) : input;
		const char *str = json_is_string(s) ? json_string_value(s) : "";
		json_t	   *vec = json_array();

		words += count_words(str);
		for (int j = 0; j < dim; j++)
			json_array_append_new(vec, json_real(embed_value(str, j)));
		json_array_append_new(data, json_pack("{s:s, s:i, s:o}", "object", "embedding",
											  "index", (int) i, "embedding", vec));
	}
	reply(req, b, 200, "application/json",
		  json_buffer(json_pack("{s:s, s:o, s:s, s:{s:I, s:I}}", "object", "list",
								"data", data, "model", model, "usage",
								"prompt_tokens", (json_int_t) words,
								"total_tokens", (json_int_t) words)), false);
}

/* Everything under /v1/ */
static void
handle_v1(struct evhttp_request *req, const char *path)
{
	static const Behaviour plain = {.fail_first = -1, .cached = -1, .reasoning = -1, .dim = 8};
	bool		chat = strcmp(path, "/v1/chat/completions") == 0;
	bool		embed = strcmp(path, "/v1/embeddings") == 0;
	size_t		len;
	char	   *body;
	json_t	   *root;
	const char *full_model;
	char	   *model;
	Behaviour	b;

	atomic_fetch_add(&total_requests, 1);
	if (chat)
		atomic_fetch_add(&chat_requests, 1);
	if (embed)
		atomic_fetch_add(&embedding_requests, 1);
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST || (!chat && !embed))
	{
		reply_error(req, &plain, 404, "Unknown request URL", "invalid_request_error", "unknown_url", NULL);
		return;
	}
	if (require_key)
	{
		const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

		if (!auth || strncmp(auth, "Bearer ", 7) != 0 || strcmp(auth + 7, require_key) != 0)
		{
			Behaviour	b401 = plain;

			b401.status = 401;
			reply_status(req, &b401, "");
			return;
		}
	}
	body = request_body(req, &len);
	root = json_loadb(body, len, 0, NULL);
	free(body);
	full_model = json_string_value(json_object_get(root, "model"));
	if (!json_is_object(root) || full_model == NULL)
	{
		json_decref(root);
		reply_error(req, &plain, 400, "We could not parse the JSON body of your request.",
					"invalid_request_error", "invalid_json", NULL);
		return;
	}
	read_behaviour(req, full_model, &b);
	model = strndup(full_model, strcspn(full_model, ";"));
	if (should_fail(&b, full_model))
	{
		if (b.quota)
			reply_error(req, &b, 429, "You exceeded your current quota, please check your plan and billing details.",
						"insufficient_quota", "insufficient_quota", NULL);
		else if (b.context)
			reply_error(req, &b, 400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
						"invalid_request_error", "context_length_exceeded", "messages");
		else if (b.malformed)
		{
			struct evbuffer *buf = evbuffer_new();

			evbuffer_add_printf(buf, "{\"id\": \"chatcmpl-broken\", \"choices\": [");
			reply(req, &b, 200, "application/json", buf, false);
		}
		else
			reply_status(req, &b, model);
	}
	else if (chat)
		handle_chat(req, root, &b, model);
	else
		handle_embeddings(req, root, &b, model);
	free(model);
	json_decref(root);
}

/* GET /stats */
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
	out = json_pack("{s:I, s:I, s:I, s:o}",
					"requests", (json_int_t) atomic_load(&total_requests),
					"chat", (json_int_t) atomic_load(&chat_requests),
					"embeddings", (json_int_t) atomic_load(&embedding_requests),
					"by_model", by_model);
	{
		struct evbuffer *buf = json_buffer(out);

		send_now(req, 200, "application/json", buf);
		evbuffer_free(buf);
	}
}

/* POST /reset */
static void
handle_reset(struct evhttp_request *req)
{
	struct evbuffer *buf = evbuffer_new();

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
	atomic_store(&total_requests, 0);
	atomic_store(&chat_requests, 0);
	atomic_store(&embedding_requests, 0);
	evbuffer_add_printf(buf, "{\"ok\":true}");
	send_now(req, 200, "application/json", buf);
	evbuffer_free(buf);
}

/* Dispatch on the path */
static void
handle(struct evhttp_request *req, void *arg)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));

	if (path == NULL)
		path = "/";
	if (strncmp(path, "/v1/", 4) == 0)
		handle_v1(req, path);
	else if (strcmp(path, "/stats") == 0)
		handle_stats(req);
	else if (strcmp(path, "/reset") == 0)
		handle_reset(req);
	else if (strcmp(path, "/health") == 0)
	{
		struct evbuffer *buf = evbuffer_new();

		evbuffer_add_printf(buf, "{\"ok\":true}");
		send_now(req, 200, "application/json", buf);
		evbuffer_free(buf);
	}
	else
		evhttp_send_error(req, 404, NULL);
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

/* One serving thread: its own event base and evhttp on its own socket */
static void *
serve(void *arg)
{
	int			fd = (int) (intptr_t) arg;
	struct event_base *base = event_base_new();
	struct evhttp *http = evhttp_new(base);

	evhttp_set_gencb(http, handle, NULL);
	evhttp_set_max_body_size(http, 64 * 1024 * 1024);
	evhttp_set_timeout(http, 3600);
	if (evhttp_accept_socket(http, fd) != 0)
	{
		fprintf(stderr, "llmgw-mock: cannot accept on socket\n");
		exit(1);
	}
	event_base_dispatch(base);
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
		else
		{
			fprintf(stderr, "usage: llmgw-mock [--port N] [--port-file PATH] [--threads N] [--require-key KEY]\n");
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
	for (int i = 0; i < threads; i++)
		pthread_create(&tids[i], NULL, serve, (void *) (intptr_t) fds[i]);
	if (port_file)
		write_port_file(port_file, port);
	fprintf(stderr, "llmgw-mock listening on 127.0.0.1:%d with %d threads\n", port, threads);
	sigwait(&set, &sig);
	return 0;
}
