/*-------------------------------------------------------------------------
 *
 * llmgw.h
 *		Declarations shared by the llmgw sources: settings, the shared-memory
 *		request slots, and the messages passed between callers and workers.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_H
#define LLMGW_H

#include "postgres.h"

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/spin.h"
#include "datatype/timestamp.h"
#include "utils/dsa.h"
#include "utils/hsearch.h"

#include "budget.h"

/* Settings (llmgw.c) */
extern int	llmgw_workers;
extern int	llmgw_max_connections;
extern int	llmgw_queue_size;
extern char *llmgw_database;
extern char *llmgw_tags;
extern int	llmgw_rollup_shard;
extern char *llmgw_job;
extern bool llmgw_require_key;

/* The schema version (sql/llmgw--X.sql) this library serves */
#define LLMGW_SCHEMA_VERSION "0.8"

#define LLMGW_MAX_WORKERS 64

/* Largest llmgw.tags accepted, in bytes (it is journaled with each call) */
#define LLMGW_MAX_TAGS 4096

/* The LWLocks of the llmgw tranche */
typedef enum LlmgwLock
{
	LLMGW_LOCK_LEDGER,			/* budget.c */
	LLMGW_LOCK_RATE_LIMITS,		/* ratelimit.c */
	LLMGW_LOCK_HEALTH,			/* health.c */
	LLMGW_LOCK_SHARES,			/* share.c */
	LLMGW_NLOCKS
} LlmgwLock;

/* Bytes of a model alias a request slot keeps for llmgw.calls_now */
#define LLMGW_SLOT_MODEL_LEN 64

/* Life of a request slot */
typedef enum LlmgwSlotState
{
	LLMGW_SLOT_FREE = 0,
	LLMGW_SLOT_QUEUED,			/* waiting for a worker */
	LLMGW_SLOT_RUNNING,			/* a worker owns it */
	LLMGW_SLOT_DONE				/* result published, caller may read */
} LlmgwSlotState;

/* Final status of a call, as recorded in llmgw.usage.status */
typedef enum LlmgwStatus
{
	LLMGW_STATUS_OK = 0,
	LLMGW_STATUS_ERROR,
	LLMGW_STATUS_CANCELLED,
	LLMGW_STATUS_INTERRUPTED
} LlmgwStatus;

/*
 * Who submitted a slot's call and what it asked for, as llmgw.calls_now
 * shows it before a worker has sent anything (calls_now.c).  Copied into
 * the slot at submission: a reader cannot follow the request's pointer into
 * the payload area, which its owner may free at any moment.
 */
typedef struct LlmgwSlotCaller
{
	char		kind;			/* LLMGW_CALLER_* */
	int			pid;			/* the backend waiting for it; 0: none (async, http) */
	TimestampTz submitted_at;
	uint8		request_id[16];
	int64		job_id;			/* 0: none */
	int64		async_id;		/* 0: none */
	char		role[NAMEDATALEN];	/* "" for a call of the front door */
	char		model[LLMGW_SLOT_MODEL_LEN];	/* the alias, cut to fit */
} LlmgwSlotCaller;

/* Who submitted a slot's call (LlmgwSlotCaller.kind) */
#define LLMGW_CALLER_SQL 's'	/* a backend, waiting on its latch */
#define LLMGW_CALLER_ASYNC 'a'	/* llmgw.submit, handed over by worker 0 */
#define LLMGW_CALLER_HTTP 'h'	/* the front door of the worker running it */

/* One request slot in shared memory; LlmgwShared.mutex protects it */
typedef struct LlmgwSlot
{
	LlmgwSlotState state;
	bool		cancel_requested;	/* caller asks the worker to abort */
	bool		abandoned;		/* caller is gone; worker frees the slot */
	int			worker;			/* index of the worker that owns it */
	uint64		worker_generation;	/* incarnation of that worker */
	Latch	   *caller_latch;
	dsa_pointer request;		/* LlmgwRequest, written by the caller */
	dsa_pointer result;			/* LlmgwResult, written by the worker */
	int			next;			/* free list link */
	LlmgwReservation reservation;	/* budgets held by the call, owned by its worker */
	struct LlmgwShare *share[2];	/* the fair shares it counts against (share.c) */
	bool		share_running;	/* counted among the shares' running calls */
	LlmgwSlotCaller who;		/* who submitted it (llmgw.calls_now) */
} LlmgwSlot;


/* What the shared memory knows of each worker */
typedef struct LlmgwWorkerInfo
{
	pid_t		pid;			/* 0 when not running */
	Latch	   *latch;
	uint64		generation;		/* bumped at every start */
	int			room;			/* transfers it could still start, as it
								 * last said (llmgw_queue_worker_room) */
} LlmgwWorkerInfo;

/* The shared state, laid out by llmgw_shmem_startup */
typedef struct LlmgwShared
{
	slock_t		mutex;			/* protects free list, queue, slots, workers[] */
	int			free_head;
	int			queue_head;		/* ring of queued slot numbers */
	int			queue_len;
	int			nslots;
	int			dsa_tranche;
	Oid			database_oid;	/* set once a worker has connected */
	TimestampTz life;			/* when this shared memory was created: a new
								 * value after every start and crash restart */
	pg_atomic_uint64 config_generation;
	pg_atomic_uint32 next_worker;
	pg_atomic_uint64 requests_total;
	pg_atomic_uint64 cancels;	/* bumped at every cancel request */
	pg_atomic_uint64 async_submitted;	/* bumped when llmgw.submit commits */
	pg_atomic_uint64 jobs_cancelled;	/* bumped when llmgw.cancel_job commits */
	pg_atomic_uint64 batches_queued;	/* bumped when rows of llmgw.batches commit */
	LlmgwWorkerInfo workers[LLMGW_MAX_WORKERS];
	/* followed by: LlmgwSlot slots[nslots]; int queue[nslots]; DSA area */
} LlmgwShared;

/*
 * A request as handed to a worker.  Fixed header followed by the
 * NUL-terminated strings role, model, body (an OpenAI-shaped chat request
 * without "model").
 */
/*
 * How a caller wants its call run: the session's settings for a call of
 * SQL, the columns of its llmgw.async_calls row for an asynchronous one.
 */
typedef struct LlmgwCallSettings
{
	int32		timeout_ms;		/* llmgw.request_timeout; 0: the provider's */
	int32		max_retries;	/* llmgw.max_retries */
	int32		retry_max_wait_ms;	/* llmgw.retry_max_wait */
	int32		retry_base_delay_ms;	/* llmgw.retry_base_delay */
	int32		deadline_ms;	/* llmgw.call_deadline: every attempt and wait; 0: none */
	int32		cache_mode;		/* LLMGW_CACHE_* of llmgw.cache */
	int32		cache_ttl_s;	/* llmgw.cache_ttl */
	int64		max_response_bytes; /* llmgw.max_response_size */
} LlmgwCallSettings;

/* The current values of the settings above, and llmgw.cache's names (llmgw.c) */
extern void llmgw_call_settings_current(LlmgwCallSettings *settings);
extern const char *llmgw_cache_mode_name(int mode);
extern int	llmgw_cache_mode_from_name(const char *name);

/*
 * A request as handed to a worker.  Fixed header followed by the
 * NUL-terminated strings role, model, body (an OpenAI-shaped chat request
 * without "model").
 */
typedef struct LlmgwRequest
{
	uint8		request_id[16];
	int32		kind;			/* LLMGW_KIND_* */
	LlmgwCallSettings settings;
	int64		async_id;		/* llmgw.async_calls.id, or 0 */
	int32		async_take;		/* its attempts when worker 0 took it: the
								 * take whose outcome the row records */
	int64		job_id;			/* llmgw.jobs.id the call works for, or 0 */
	int64		max_output_tokens;	/* the body's output bound (max_tokens and its
									 * aliases: llmgw_json_output_bound), 0: none;
									 * read by whoever makes the request, so that
									 * the worker does not parse the body for it */
	bool		has_key;		/* the caller presented a virtual key */
	uint8		key_hash[32];	/* its sha256; the key itself never leaves the caller */
	uint32		role_len;
	uint32		model_len;
	uint32		body_len;
	uint32		tags_len;		/* llmgw.tags, a JSON object; 0 when unset */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} LlmgwRequest;

/*
 * The output bound of a chat request body's text (its max_tokens and
 * aliases; 0: none, or not JSON), for LlmgwRequest.max_output_tokens
 * (jsonutil.c: without jansson's names, which clash with PostgreSQL's
 * json_object in files that include utils/builtins.h)
 */
extern int64 llmgw_json_output_bound_text(const char *body, size_t len);

#define LLMGW_CACHE_DEFAULT 0	/* as the model says */
#define LLMGW_CACHE_ON 1
#define LLMGW_CACHE_OFF 2

#define LLMGW_KIND_CHAT 1		/* the answer is the assistant's text */
#define LLMGW_KIND_CHAT_JSON 2	/* the answer is llm_chat's normalised JSON */
#define LLMGW_KIND_EMBED 3		/* the answer is one array literal per line */

/* A result as published by a worker: header then text, message, detail */
typedef struct LlmgwResult
{
	int32		status;			/* LlmgwStatus */
	int32		sqlerrcode;		/* for errors */
	int32		http_status;
	int32		has_text;		/* false: the answer is SQL NULL */
	uint32		text_len;
	uint32		message_len;
	uint32		detail_len;
	uint32		hint_len;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} LlmgwResult;

/* Accessors of the strings that follow an LlmgwResult header */
#define LLMGW_RESULT_TEXT(r)	((r)->data)
#define LLMGW_RESULT_MESSAGE(r) ((r)->data + (r)->text_len + 1)
#define LLMGW_RESULT_DETAIL(r)	(LLMGW_RESULT_MESSAGE(r) + (r)->message_len + 1)
#define LLMGW_RESULT_HINT(r)	(LLMGW_RESULT_DETAIL(r) + (r)->detail_len + 1)
#define LLMGW_RESULT_SIZE(r) \
	(offsetof(LlmgwResult, data) + (r)->text_len + (r)->message_len + \
	 (r)->detail_len + (r)->hint_len + 4)

/* Accessors of the strings that follow an LlmgwRequest header */
#define LLMGW_REQUEST_ROLE(q)	((q)->data)
#define LLMGW_REQUEST_MODEL(q)	((q)->data + (q)->role_len + 1)
#define LLMGW_REQUEST_BODY(q)	(LLMGW_REQUEST_MODEL(q) + (q)->model_len + 1)
#define LLMGW_REQUEST_TAGS(q)	(LLMGW_REQUEST_BODY(q) + (q)->body_len + 1)
#define LLMGW_REQUEST_SIZE(q) \
	(offsetof(LlmgwRequest, data) + (q)->role_len + (q)->model_len + \
	 (q)->body_len + (q)->tags_len + 4)

/* llmgw.c */
extern LWLock *llmgw_lock(LlmgwLock which);
extern HTAB *llmgw_shmem_hash(const char *name, long max, Size keysize, Size entrysize);

/* queue.c (its functions: queue.h) */
extern LlmgwShared *llmgw_shared;
extern LlmgwSlot *llmgw_slots;
extern int *llmgw_queue;

/* worker.c */
extern PGDLLEXPORT void llmgw_worker_main(Datum arg);

#endif							/* LLMGW_H */
