/*-------------------------------------------------------------------------
 *
 * http.c
 *		One libcurl multi handle per worker, driven through an epoll set.
 *
 * curl tells us which sockets it wants watched (socket callback) and when
 * it next needs a timeout (timer callback).  We keep those sockets in an
 * epoll set of our own; the worker waits on that epoll descriptor together
 * with its latch, so new requests and cancellations wake it as promptly as
 * network events.  Connections are kept alive in the multi handle's cache
 * and HTTP/2 is used for TLS endpoints that offer it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <curl/curl.h>

#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "call.h"
#include "http.h"
#include "config.h"
#include "security.h"

static CURLM *multi = NULL;
static int	epoll_fd = -1;
static int	active = 0;
static TimestampTz timer_deadline = 0;	/* 0 means no timer */
static bool timer_set = false;

/*
 * What the epoll set holds of a connection socket we opened, by descriptor.
 * curl says "remove" after every transfer and "watch for input" again when
 * it reuses the connection for the next one: for these sockets a removal is
 * only noted (unwanted), and the socket is taken out of the set only if it
 * reports an event while no transfer wants it (the server closing an idle
 * connection).  We learn of their opening and closing through the socket
 * callbacks, so the set never holds a descriptor number we have not seen
 * opened; gen tells an event of a closed socket from one of its successor.
 * Other sockets (the resolver's) are added and removed as curl says.
 */
typedef struct SocketWatch
{
	uint32		gen;			/* new at every open */
	uint32		events;			/* registered in the epoll set; 0 = not */
	bool		ours;			/* opened by opensocket_cb, not yet closed */
	bool		wanted;			/* a transfer waits on it */
} SocketWatch;

#define PASS_THROUGH_GEN	UINT32_MAX	/* an event curl gets as it is */

static SocketWatch *watches = NULL;
static int	nwatches = 0;
static uint32 watch_gen = 0;

/* The watch of descriptor fd, growing the table to reach it */
static SocketWatch *
watch_of(int fd)
{
	if (fd >= nwatches)
	{
		int			n = Max(fd + 1, Max(nwatches * 2, 64));
		SocketWatch *grown = realloc(watches, n * sizeof(SocketWatch));

		if (grown == NULL)
			return NULL;
		memset(grown + nwatches, 0, (n - nwatches) * sizeof(SocketWatch));
		watches = grown;
		nwatches = n;
	}
	return &watches[fd];
}

/* Put fd in the epoll set with events, or change its events there */
static void
epoll_set(int fd, uint32 events, uint32 gen, bool known)
{
	struct epoll_event ev;

	memset(&ev, 0, sizeof(ev));
	ev.events = events;
	ev.data.u64 = ((uint64) gen << 32) | (uint32) fd;
	if (known)
	{
		if (epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT)
			(void) epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
	}
	else if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST)
		(void) epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

/* curl asks us to watch (or stop watching) a socket */
static int
socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	SocketWatch *w = (fd >= 0 && fd < nwatches) ? &watches[fd] : NULL;
	uint32		events = 0;

	if (what == CURL_POLL_IN || what == CURL_POLL_INOUT)
		events |= EPOLLIN;
	if (what == CURL_POLL_OUT || what == CURL_POLL_INOUT)
		events |= EPOLLOUT;
	if (w == NULL || !w->ours)
	{
		if (what == CURL_POLL_REMOVE)
			(void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
		else
			epoll_set(fd, events, PASS_THROUGH_GEN, true);
		return 0;
	}
	if (what == CURL_POLL_REMOVE)
	{
		w->wanted = false;		/* stays in the set until it stirs */
		return 0;
	}
	w->wanted = true;
	if (w->events != events)
	{
		epoll_set(fd, events, w->gen, w->events != 0);
		w->events = events;
	}
	return 0;
}

/* curl asks to be called back after timeout_ms (-1: never) */
static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_set = false;
	else
	{
		timer_set = true;
		timer_deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}
	return 0;
}

/* Append received bytes, refusing more than the call's limit */
static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	LlmgwBuffer *buf = (LlmgwBuffer *) userdata;
	size_t		n = size * nmemb;

	if (buf->len + n > buf->limit)
	{
		buf->overflow = true;
		return 0;				/* curl aborts with CURLE_WRITE_ERROR */
	}
	if (buf->len + n + 1 > buf->cap)
	{
		size_t		cap = Max(buf->cap * 2, buf->len + n + 1);
		char	   *grown;

		cap = Max(cap, 4096);
		grown = realloc(buf->data, cap);
		if (grown == NULL)
			return 0;
		buf->data = grown;
		buf->cap = cap;
	}
	memcpy(buf->data + buf->len, ptr, n);
	buf->last_data = GetCurrentTimestamp();
	buf->grew = true;
	buf->len += n;
	buf->data[buf->len] = '\0';
	return n;
}

/* Keep the rate-limit headers of the response */
static size_t
header_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	llmgw_hint_headers_add((LlmgwHintHeaders *) userdata, buffer, size * nitems);
	return size * nitems;
}

/*
 * curl is about to send the request: journal the call first, so that from
 * now on a crash still leaves its usage row.  A journal that cannot be
 * written stops the request.
 */
static int
prereq_cb(void *clientp, char *conn_primary_ip, char *conn_local_ip,
		  int conn_primary_port, int conn_local_port)
{
	LlmgwCall  *call = (LlmgwCall *) clientp;
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	bool		ok = llmgw_call_journal(call);

	MemoryContextSwitchTo(old);
	return ok ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

/*
 * curl is about to open a socket to an address a name resolved to: refuse
 * link-local and cloud metadata addresses (a base URL's host may resolve
 * anywhere, and change after it was checked).
 */
static curl_socket_t
opensocket_cb(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	curl_socket_t fd;
	SocketWatch *w;

	if (!llmgw_address_allowed(&address->addr))
		return CURL_SOCKET_BAD;
	fd = socket(address->family, address->socktype, address->protocol);
	if (fd >= 0 && (w = watch_of(fd)) != NULL)
	{
		w->gen = ++watch_gen == PASS_THROUGH_GEN ? ++watch_gen : watch_gen;
		w->events = 0;
		w->ours = true;
		w->wanted = false;
	}
	return fd;
}

/*
 * curl closes a socket: closing it takes it out of the epoll set, and its
 * events still to come are not ours (a successor gets a generation of its own)
 */
static int
closesocket_cb(void *clientp, curl_socket_t fd)
{
	if (fd >= 0 && fd < nwatches)
		memset(&watches[fd], 0, sizeof(SocketWatch));
	return close(fd);
}

/* Create the multi handle and the epoll set; once per worker */
void
llmgw_http_init(int max_connections)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		elog(ERROR, "llmgw: could not initialise libcurl");
	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "llmgw: could not create a curl multi handle");
	epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (epoll_fd < 0)
		elog(ERROR, "llmgw: could not create an epoll set: %m");

	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
	curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long) max_connections);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) max_connections);
}

/* The descriptor the worker waits on for network events */
int
llmgw_http_fd(void)
{
	return epoll_fd;
}

/* Milliseconds until curl needs a timeout callback; -1 when it needs none */
long
llmgw_http_timeout(void)
{
	long		ms;

	if (!timer_set)
		return -1;
	ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), timer_deadline);
	return Max(ms, 0);
}

/* Number of transfers in flight */
int
llmgw_http_active(void)
{
	return active;
}

/* Start the HTTP POST of call->body to url */
void
llmgw_http_start(LlmgwCall *call, const char *url)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		elog(ERROR, "llmgw: could not create a curl handle");
	call->easy = easy;
	call->response.limit = (size_t) call->settings.max_response_bytes;

	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_POST, 1L);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDS, call->body);
	curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) call->body_len);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, call->headers);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, &call->response);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, &call->hint_headers);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, call);
	curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, prereq_cb);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
	curl_easy_setopt(easy, CURLOPT_PREREQDATA, call);
	curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long) CURL_HTTP_VERSION_2TLS);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, (long) call->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long) call->connect_timeout_ms);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);

	call->reached_provider = true;
	call->started_at = GetCurrentTimestamp();
	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		elog(ERROR, "llmgw: could not start a transfer");
	active++;
}

/* The HTTP status of a transfer's response so far (0 before its headers) */
long
llmgw_http_status_now(LlmgwCall *call)
{
	long		status = 0;

	if (call->easy)
		curl_easy_getinfo((CURL *) call->easy, CURLINFO_RESPONSE_CODE, &status);
	return status;
}

/* Stop a transfer in flight */
void
llmgw_http_abort(LlmgwCall *call)
{
	if (call->easy == NULL)
		return;
	curl_multi_remove_handle(multi, call->easy);
	active--;
	call->finished_at = GetCurrentTimestamp();
	llmgw_http_release(call);
}

/* Free what curl holds for a call (handle, headers, buffers) */
void
llmgw_http_release(LlmgwCall *call)
{
	if (call->easy)
		curl_easy_cleanup(call->easy);
	call->easy = NULL;
	if (call->headers)
		curl_slist_free_all(call->headers);
	call->headers = NULL;
	free(call->body);
	call->body = NULL;
	free(call->response.data);
	call->response.data = NULL;
}

/* ---- the worker's own transfers (provider batches) ---- */

static LlmgwTransfer *transfers = NULL;

/* Hand curl the next bytes of a transfer's file (no PostgreSQL call here) */
static size_t
file_read_cb(char *buffer, size_t size, size_t nitems, void *arg)
{
	FILE	   *f = ((LlmgwTransfer *) arg)->upload;
	size_t		n = fread(buffer, 1, size * nitems, f);

	return (n == 0 && ferror(f)) ? CURL_READFUNC_ABORT : n;
}

/*
 * Go back in a transfer's body (a request sent again, e.g. after a
 * redirect): offset counts from where the body starts in its file
 */
static int
file_seek_cb(void *arg, curl_off_t offset, int origin)
{
	LlmgwTransfer *t = (LlmgwTransfer *) arg;

	if (origin != SEEK_SET)
		return CURL_SEEKFUNC_CANTSEEK;
	return fseeko(t->upload, t->upload_from + (off_t) offset, SEEK_SET) == 0 ?
		CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

/*
 * Write a download's bytes to its file, refusing more than its limit; an
 * answer that is not a success goes to the memory buffer (it is an error
 * body to be read, kept small)
 */
static size_t
file_write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	LlmgwTransfer *t = (LlmgwTransfer *) userdata;
	size_t		n = size * nmemb;
	long		status = 0;

	curl_easy_getinfo((CURL *) t->easy, CURLINFO_RESPONSE_CODE, &status);
	if (status < 200 || status >= 300)
		return write_cb(ptr, size, nmemb, &t->response);
	if (t->downloaded + n > t->download_limit)
	{
		t->too_large = true;
		return 0;				/* curl aborts with CURLE_WRITE_ERROR */
	}
	if (fwrite(ptr, 1, n, t->download) != n)
		return 0;
	t->downloaded += n;
	return n;
}

/*
 * Start a transfer of the worker's own: a GET (method "GET"), a POST of
 * body (malloc'd, taken over), or a POST of upload (a file, taken over) of
 * upload_len bytes from where it stands (its start, or where a resumed
 * upload goes on), read as curl sends it: the body itself, or with
 * LLMGW_TRANSFER_MULTIPART the file part of a multipart POST of
 * purpose=batch.  LLMGW_TRANSFER_FRESH: on a new connection, never on a
 * kept-alive one (curl sends a request again, from its start, when a
 * reused connection dies before any answer: a resumed upload must see the
 * cut instead).  The
 * answer is kept in memory up to limit bytes, or with download (a file,
 * taken over) written to it up to limit bytes (an answer that is not a
 * success stays in memory, up to 64 kB).  headers (a curl_slist) is taken
 * over.
 */
void
llmgw_http_transfer_start(LlmgwTransfer *t, const char *url, const char *method,
						  void *headers, char *body, FILE *upload, size_t upload_len,
						  int flags, FILE *download, size_t limit, long timeout_ms)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
	{
		if (upload)
			fclose(upload);
		if (download)
			fclose(download);
		elog(ERROR, "llmgw: could not create a curl handle");
	}
	memset(&t->response, 0, sizeof(t->response));
	t->response.limit = limit;
	t->easy = easy;
	t->headers = headers;
	t->body = body;
	t->mime = NULL;
	t->upload = upload;
	t->upload_from = upload ? Max(ftello(upload), 0) : 0;
	t->download = download;
	t->downloaded = 0;
	t->too_large = false;
	t->done = false;
	t->http_status = 0;
	t->curl_result = 0;
	t->keep = NULL;
	memset(t->kept, 0, sizeof(t->kept));
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, (struct curl_slist *) headers);
	if (download)
	{
		/* an error answer, kept in memory */
		t->response.limit = 65536;
		t->download_limit = limit;
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, file_write_cb);
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
	}
	else
	{
		curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
		curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t->response);
	}
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, opensocket_cb);
	curl_easy_setopt(easy, CURLOPT_CLOSESOCKETFUNCTION, closesocket_cb);
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	if (flags & LLMGW_TRANSFER_FRESH)
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
	if (upload && (flags & LLMGW_TRANSFER_MULTIPART))
	{
		curl_mime  *mime = curl_mime_init(easy);
		curl_mimepart *part = curl_mime_addpart(mime);

		curl_mime_name(part, "purpose");
		curl_mime_data(part, "batch", CURL_ZERO_TERMINATED);
		part = curl_mime_addpart(mime);
		curl_mime_name(part, "file");
		curl_mime_filename(part, "batch.jsonl");
		curl_mime_type(part, "application/jsonl");
		curl_mime_data_cb(part, (curl_off_t) upload_len, file_read_cb, file_seek_cb, NULL, t);
		curl_easy_setopt(easy, CURLOPT_MIMEPOST, mime);
		t->mime = mime;
	}
	else if (upload)
	{
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_READFUNCTION, file_read_cb);
		curl_easy_setopt(easy, CURLOPT_READDATA, t);
		curl_easy_setopt(easy, CURLOPT_SEEKFUNCTION, file_seek_cb);
		curl_easy_setopt(easy, CURLOPT_SEEKDATA, t);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) upload_len);
	}
	else if (body)
	{
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
	}
	else if (strcmp(method, "POST") == 0)
	{
		curl_easy_setopt(easy, CURLOPT_POST, 1L);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
	}
	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		elog(ERROR, "llmgw: could not start a transfer");
	t->next = transfers;
	transfers = t;
	active++;
}

/*
 * Keep the values of the response headers names (at most
 * LLMGW_TRANSFER_KEPT, NULL-terminated, static) of a transfer just
 * started: in t->kept once it is done, in the same order
 */
void
llmgw_http_transfer_keep(LlmgwTransfer *t, const char *const *names)
{
	t->keep = names;
}

/* Copy the values of the headers a finished transfer keeps */
static void
transfer_keep_values(LlmgwTransfer *t)
{
	for (int i = 0; t->keep && i < LLMGW_TRANSFER_KEPT && t->keep[i]; i++)
	{
		struct curl_header *h;

		if (curl_easy_header((CURL *) t->easy, t->keep[i], 0, CURLH_HEADER, -1, &h) == CURLHE_OK)
			t->kept[i] = strdup(h->value);
	}
}

/* Stop (if running) and free what a transfer of the worker's own holds */
void
llmgw_http_transfer_release(LlmgwTransfer *t)
{
	for (LlmgwTransfer **p = &transfers; *p; p = &(*p)->next)
		if (*p == t)
		{
			*p = t->next;
			if (t->easy && !t->done)
			{
				curl_multi_remove_handle(multi, t->easy);
				active--;
			}
			break;
		}
	if (t->easy)
		curl_easy_cleanup(t->easy);
	t->easy = NULL;
	if (t->mime)
		curl_mime_free(t->mime);
	t->mime = NULL;
	if (t->headers)
		curl_slist_free_all(t->headers);
	t->headers = NULL;
	free(t->body);
	t->body = NULL;
	if (t->upload)
		fclose(t->upload);
	t->upload = NULL;
	if (t->download)
		fclose(t->download);
	t->download = NULL;
	free(t->response.data);
	t->response.data = NULL;
	for (int i = 0; i < LLMGW_TRANSFER_KEPT; i++)
	{
		free(t->kept[i]);
		t->kept[i] = NULL;
	}
}

/* A finished transfer of the worker's own: true when easy is one */
static bool
transfer_finished(CURL *easy, CURLcode result)
{
	for (LlmgwTransfer *t = transfers; t; t = t->next)
		if (t->easy == easy)
		{
			t->curl_result = result;
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &t->http_status);
			transfer_keep_values(t);
			curl_multi_remove_handle(multi, easy);
			active--;
			t->done = true;
			return true;
		}
	return false;
}

/* ---- end of the worker's own transfers ---- */

/* Collect the transfers curl has finished */
static void
collect_finished(dlist_head *finished)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		LlmgwCall  *call;
		long		status = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;
		if (transfer_finished(msg->easy_handle, msg->data.result))
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &call);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		call->curl_result = msg->data.result;
		call->out.http_status = status;
		call->finished_at = GetCurrentTimestamp();
		curl_multi_remove_handle(multi, msg->easy_handle);
		active--;
		dlist_delete(&call->node);	/* leaves the worker's running list */
		dlist_push_tail(finished, &call->node);
	}
}

/*
 * Let curl act on ready sockets and due timers.  Finished calls move from
 * the list they were on (the worker's running list) to finished.
 */
void
llmgw_http_drive(dlist_head *finished)
{
	struct epoll_event events[64];
	int			n;
	int			running;

	do
	{
		n = epoll_wait(epoll_fd, events, lengthof(events), 0);
		for (int i = 0; i < n; i++)
		{
			int			fd = (int) (uint32) events[i].data.u64;
			uint32		gen = (uint32) (events[i].data.u64 >> 32);
			int			flags = 0;

			if (gen != PASS_THROUGH_GEN)
			{
				SocketWatch *w = fd < nwatches ? &watches[fd] : NULL;

				if (w == NULL || !w->ours || w->gen != gen)
					continue;	/* a socket closed since epoll_wait */
				if (!w->wanted)
				{
					/* an idle connection stirred: leave it to curl's check */
					(void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
					w->events = 0;
					continue;
				}
			}
			if (events[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (events[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (events[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, fd, flags, &running);
		}
	} while (n == lengthof(events));

	if (timer_set && GetCurrentTimestamp() >= timer_deadline)
	{
		timer_set = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	collect_finished(finished);
}

/* Text of a curl error code */
const char *
llmgw_http_strerror(int curl_result)
{
	return curl_easy_strerror((CURLcode) curl_result);
}

/* Did the transfer fail because it ran out of time? */
bool
llmgw_http_timed_out(int curl_result)
{
	return curl_result == CURLE_OPERATION_TIMEDOUT;
}

/* Did the response exceed the call's size limit? */
bool
llmgw_http_too_large(LlmgwCall *call)
{
	return call->response.overflow;
}
