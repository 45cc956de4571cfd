/*
 * floor_proxy: the least a gateway that records every call durably can do,
 * as a baseline for test/bench/http.sh.
 *
 * It forwards each POST as it came to an upstream (the mock) over kept
 * connections, and answers the client with the upstream's status and body
 * only after one 8 kB write and fdatasync of a file on the disk it is given
 * (the data directory's): the durable record of the call, as llmgw's answer
 * waits for its usage row's commit.  The answers read in one turn of the
 * event loop share one write (a group commit, as a worker's round does).
 * Nothing else: no parsing, no keys, no JSON, no accounting.  Its added
 * latency over direct HTTP at one connection and its throughput at many are
 * the floor and the ceiling of any such gateway on the machine that runs it.
 *
 *   floor_proxy --upstream HOST:PORT --sync-file PATH --port-file PATH [--threads N]
 *
 * Each thread has its own event loop, listening socket (SO_REUSEPORT), kept
 * upstream connections and sync file (PATH.N, 16 MB written with zeros
 * first, as PostgreSQL fills a WAL segment, so that fdatasync has no
 * metadata to write).  SIGTERM or SIGINT ends it.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define MAX_THREADS 16
#define SYNC_FILE_SIZE (16 * 1024 * 1024)
#define RECORD_SIZE 8192

typedef struct Answer Answer;

typedef struct Thread
{
	struct event_base *base;
	int			listen_fd;
	int			sync_fd;
	off_t		sync_off;
	struct evhttp_connection *idle[1024];	/* kept upstream connections */
	int			nidle;
	Answer	   *ready;			/* answers waiting for the write */
	struct event *sync_event;
	bool		sync_due;
} Thread;

struct Answer
{
	Thread	   *t;
	struct evhttp_request *client;
	struct evhttp_connection *up;
	int			status;
	struct evbuffer *body;
	Answer	   *next;
};

static const char *up_host;
static int	up_port;
static int	stop_pipe[2];

/* A kept upstream connection, or a new one */
static struct evhttp_connection *
take_connection(Thread *t)
{
	if (t->nidle > 0)
		return t->idle[--t->nidle];
	return evhttp_connection_base_new(t->base, NULL, up_host, (unsigned short) up_port);
}

/* The upstream answered (or failed): keep the answer for the next write */
static void
upstream_done(struct evhttp_request *ureq, void *arg)
{
	Answer	   *a = arg;
	Thread	   *t = a->t;

	a->body = evbuffer_new();
	if (ureq == NULL || evhttp_request_get_response_code(ureq) == 0)
	{
		a->status = 502;
		evhttp_connection_free_on_completion(a->up);
	}
	else
	{
		a->status = evhttp_request_get_response_code(ureq);
		evbuffer_add_buffer(a->body, evhttp_request_get_input_buffer(ureq));
		if (t->nidle < (int) (sizeof(t->idle) / sizeof(t->idle[0])))
			t->idle[t->nidle++] = a->up;
		else
			evhttp_connection_free_on_completion(a->up);
	}
	a->next = t->ready;
	t->ready = a;
	if (!t->sync_due)
	{
		/* runs after the other callbacks of this turn of the loop */
		t->sync_due = true;
		event_active(t->sync_event, EV_READ, 1);
	}
}

/* One durable write for the answers of this turn, then send them */
static void
write_and_answer(evutil_socket_t fd, short what, void *arg)
{
	static const char record[RECORD_SIZE];
	Thread	   *t = arg;
	Answer	   *a = t->ready;

	(void) fd;
	(void) what;
	t->sync_due = false;
	t->ready = NULL;
	if (pwrite(t->sync_fd, record, RECORD_SIZE, t->sync_off) != RECORD_SIZE ||
		fdatasync(t->sync_fd) != 0)
	{
		perror("floor_proxy: sync file");
		exit(1);
	}
	t->sync_off = (t->sync_off + RECORD_SIZE) % SYNC_FILE_SIZE;
	while (a)
	{
		Answer	   *next = a->next;

		evhttp_add_header(evhttp_request_get_output_headers(a->client), "Content-Type",
						  "application/json");
		evhttp_send_reply(a->client, a->status, a->status == 200 ? "OK" : "Error", a->body);
		evbuffer_free(a->body);
		free(a);
		a = next;
	}
}

/* A client's request: forward it as it came */
static void
forward(struct evhttp_request *req, void *arg)
{
	Thread	   *t = arg;
	Answer	   *a = calloc(1, sizeof(Answer));
	struct evhttp_request *ureq;
	struct evkeyvalq *h;
	char		host[300];

	a->t = t;
	a->client = req;
	a->up = take_connection(t);
	ureq = evhttp_request_new(upstream_done, a);
	h = evhttp_request_get_output_headers(ureq);
	snprintf(host, sizeof(host), "%s:%d", up_host, up_port);
	evhttp_add_header(h, "Host", host);
	evhttp_add_header(h, "Content-Type", "application/json");
	evbuffer_add_buffer(evhttp_request_get_output_buffer(ureq), evhttp_request_get_input_buffer(req));
	if (a->up == NULL ||
		evhttp_make_request(a->up, ureq, EVHTTP_REQ_POST, evhttp_request_get_uri(req)) != 0)
	{
		evhttp_send_error(req, 502, "upstream");
		free(a);
	}
}

static void
stop_serving(evutil_socket_t fd, short what, void *arg)
{
	(void) fd;
	(void) what;
	event_base_loopbreak(arg);
}

static void *
serve(void *arg)
{
	Thread	   *t = arg;
	struct evhttp *http = evhttp_new(t->base);
	struct event *stop = event_new(t->base, stop_pipe[0], EV_READ, stop_serving, t->base);

	evhttp_set_gencb(http, forward, t);
	evhttp_set_timeout(http, 3600);
	evhttp_accept_socket(http, t->listen_fd);
	t->sync_event = event_new(t->base, -1, 0, write_and_answer, t);
	event_add(stop, NULL);
	event_base_dispatch(t->base);
	return NULL;
}

static int
listen_socket(int port)
{
	int			fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	int			one = 1;
	struct sockaddr_in addr;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_port = htons((unsigned short) port);
	addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *) &addr, sizeof(addr)) != 0 || listen(fd, 4096) != 0)
	{
		perror("floor_proxy: listen");
		exit(1);
	}
	return fd;
}

/* A sync file of SYNC_FILE_SIZE zeros, written and synced before use */
static int
sync_file(const char *path)
{
	static const char zeros[RECORD_SIZE];
	int			fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);

	if (fd < 0)
	{
		perror("floor_proxy: sync file");
		exit(1);
	}
	for (off_t off = 0; off < SYNC_FILE_SIZE; off += RECORD_SIZE)
		if (write(fd, zeros, RECORD_SIZE) != RECORD_SIZE)
		{
			perror("floor_proxy: sync file");
			exit(1);
		}
	if (fsync(fd) != 0)
	{
		perror("floor_proxy: sync file");
		exit(1);
	}
	return fd;
}

int
main(int argc, char **argv)
{
	const char *upstream = NULL;
	const char *sync_path = NULL;
	const char *port_file = NULL;
	int			nthreads = 2;
	static Thread threads[MAX_THREADS];
	pthread_t	tids[MAX_THREADS];
	struct sockaddr_in addr;
	socklen_t	alen = sizeof(addr);
	sigset_t	set;
	int			sig;
	const char *colon;
	char		tmp[4096];
	FILE	   *f;

	for (int i = 1; i + 1 < argc; i += 2)
	{
		if (strcmp(argv[i], "--upstream") == 0)
			upstream = argv[i + 1];
		else if (strcmp(argv[i], "--sync-file") == 0)
			sync_path = argv[i + 1];
		else if (strcmp(argv[i], "--port-file") == 0)
			port_file = argv[i + 1];
		else if (strcmp(argv[i], "--threads") == 0)
			nthreads = atoi(argv[i + 1]);
	}
	if (upstream == NULL || sync_path == NULL || port_file == NULL ||
		(colon = strrchr(upstream, ':')) == NULL || nthreads < 1 || nthreads > MAX_THREADS)
	{
		fprintf(stderr, "usage: floor_proxy --upstream HOST:PORT --sync-file PATH --port-file PATH [--threads N]\n");
		return 2;
	}
	up_host = strndup(upstream, (size_t) (colon - upstream));
	up_port = atoi(colon + 1);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	if (pipe(stop_pipe) != 0)
		return 1;

	threads[0].listen_fd = listen_socket(0);
	if (getsockname(threads[0].listen_fd, (struct sockaddr *) &addr, &alen) != 0)
		return 1;
	for (int i = 0; i < nthreads; i++)
	{
		snprintf(tmp, sizeof(tmp), "%s.%d", sync_path, i);
		if (i > 0)
			threads[i].listen_fd = listen_socket(ntohs(addr.sin_port));
		threads[i].sync_fd = sync_file(tmp);
		threads[i].base = event_base_new();
		pthread_create(&tids[i], NULL, serve, &threads[i]);
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", port_file);
	f = fopen(tmp, "w");
	if (f == NULL || fprintf(f, "%d\n", ntohs(addr.sin_port)) < 0 || fclose(f) != 0 ||
		rename(tmp, port_file) != 0)
	{
		perror("floor_proxy: port file");
		return 1;
	}
	sigwait(&set, &sig);
	if (write(stop_pipe[1], "x", 1) != 1)
		return 1;
	for (int i = 0; i < nthreads; i++)
		pthread_join(tids[i], NULL);
	return 0;
}
