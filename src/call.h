/*-------------------------------------------------------------------------
 *
 * call.h
 *		One provider call as a worker sees it, and what came of it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_CALL_H
#define LLMGW_CALL_H

#include "datatype/timestamp.h"
#include "lib/ilist.h"
#include "utils/uuid.h"

#include "errors.h"
#include "llmgw.h"
#include "ratelimit.h"
#include "retry.h"

struct LlmgwProvider;

/* Normalised token buckets, as in ../shared/corpus/README.md */
typedef enum LlmgwBucket
{
	LLMGW_TOKENS_INPUT = 0,		/* all input, cached and cache writes included */
	LLMGW_TOKENS_OUTPUT,		/* all output, reasoning included */
	LLMGW_TOKENS_CACHED_INPUT,
	LLMGW_TOKENS_CACHE_WRITE,
	LLMGW_TOKENS_REASONING,
	LLMGW_TOKENS_CACHE_WRITE_1H,	/* part of the cache writes kept for 1 hour */
	LLMGW_NBUCKETS
} LlmgwBucket;

#define LLMGW_TOKENS_UNKNOWN (-1)

/* What came of a call */
typedef struct LlmgwOutcome
{
	LlmgwStatus status;
	LlmgwErrorClass error;
	long		http_status;	/* 0 when no HTTP response arrived */
	int64		tokens[LLMGW_NBUCKETS]; /* LLMGW_TOKENS_UNKNOWN = not reported */
	char	   *text;			/* assistant text; NULL when there is none */
	char	   *finish_reason;
	char	   *stop_sequence;	/* the stop sequence that ended the answer,
								 * when the provider says which (Anthropic,
								 * vLLM's stop_reason) */
	char	   *tool_calls;		/* JSON array [{id, name, arguments}], or NULL */
	char	   *thinking;		/* JSON array of the answer's thinking blocks
								 * as the provider gave them, or NULL */
	char	   *logprobs;		/* JSON object of the answer's log
								 * probabilities, OpenAI's {"content": [...]}
								 * (a stream's chunks joined), or NULL */
	char	   *reasoning;		/* reasoning text the provider gave apart from
								 * the answer, not to be sent back (OpenAI-
								 * compatible reasoning_content, Gemini's
								 * thought summaries, the Responses API's
								 * reasoning summaries), or NULL */
	char	   *embeddings;		/* one array literal {x,y,...} per line, or NULL */
	int			embedding_count;
	int			embedding_dims;
	char	   *provider_message;	/* the provider's own error message */
	char	   *provider_code;	/* the provider's own error code */
	double		retry_after_s;	/* -1 when the provider gave no hint */
	bool		estimated;		/* tokens are llmgw's estimate (interrupted calls) */
} LlmgwOutcome;

/* Start an outcome with nothing known */
static inline void
llmgw_outcome_init(LlmgwOutcome *out)
{
	memset(out, 0, sizeof(*out));
	out->status = LLMGW_STATUS_ERROR;
	for (int b = 0; b < LLMGW_NBUCKETS; b++)
		out->tokens[b] = LLMGW_TOKENS_UNKNOWN;
	out->retry_after_s = -1;
}

/* A growable byte buffer allocated with malloc, safe in curl callbacks */
typedef struct LlmgwBuffer
{
	char	   *data;
	size_t		len;
	size_t		cap;
	size_t		limit;
	bool		overflow;		/* more than limit bytes were offered */
	TimestampTz last_data;		/* when bytes last arrived, or 0 */
	bool		grew;			/* bytes arrived since the flag was cleared */
} LlmgwBuffer;

/* A finished attempt of a call that went on to another attempt */
typedef struct LlmgwAttempt
{
	dlist_node	node;
	int			number;			/* 1, 2, ... */
	char	   *provider;
	char	   *upstream_model;
	const struct LlmgwRoute *route;	/* in the call's copy of the routes */
	char	   *fallback_from;	/* "provider/model" of the deployment before, or NULL */
	bool		reached_provider;
	bool		recorded;		/* its usage row is committed */
	TimestampTz started_at;
	TimestampTz finished_at;
	LlmgwOutcome out;
} LlmgwAttempt;

/* One call in flight in a worker */
typedef struct LlmgwCall
{
	dlist_node	node;
	int			slotno;
	int			kind;			/* LLMGW_KIND_* of the request */
	TimestampTz created_at;		/* when the worker took it (its span's start) */
	MemoryContext cxt;			/* everything palloc'd for this call */
	pg_uuid_t	request_id;
	char	   *role;
	char	   *model;
	char	   *tags;			/* llmgw.tags of the caller, or NULL */
	int64		async_id;		/* llmgw.async_calls.id, or 0 */
	int32		async_take;		/* of the row's take that made the call */
	int64		job_id;			/* llmgw.jobs.id, or 0 */
	const char *caller_body;	/* in the DSA request */
	size_t		caller_body_len;
	LlmgwCallSettings settings; /* the caller's */
	TimestampTz deadline;		/* llmgw.call_deadline from the start, or 0 */
	int			timeout_ms;		/* of the current attempt */
	int			connect_timeout_ms;
	int64		max_output_tokens;	/* the request's max_tokens, or 0 */

	/* policy, set by llmgw_policy_admit */
	bool		has_key;
	uint8		key_hash[32];
	char		key_prefix[16];
	int64		key_id;			/* 0: no key */
	int64		key_lineage;
	int64		team_id;		/* 0: no team */
	int64		estimated_tokens;	/* taken from the TPM limits */
	LlmgwLimit	limits[LLMGW_MAX_CALL_LIMITS];
	int			nlimits;
	LlmgwLimit	deployment_limit;	/* of the current attempt */
	bool		has_deployment_limit;
	/* response cache */
	bool		cache_enabled;	/* looked up, and stored on success */
	bool		awaiting_cache; /* admitted, waits for the lookup */
	bool		awaiting_share; /* admitted, waits for its team's fair share */
	struct LlmgwShare *team_share;	/* its team's share, once taken */
	bool		team_running;	/* counted among its team's running calls */
	bool		cache_hit;
	int32		cache_ttl_s;
	uint8		cache_key[32];
	char	   *cache_scope;
	char	   *cache_hit_cost;
	char	   *cached_answer;
	char	   *deny_message;	/* why llmgw itself refused the call */
	char	   *deny_detail;
	char	   *deny_hint;

	/* the deployments to try, in order, copied from the configuration */
	struct LlmgwRoute *routes;
	int			nroutes;
	int			route_index;	/* the deployment of the current attempt */
	int			tries_on_route; /* attempts made on it so far */
	int			attempt;		/* number of the current attempt, from 1 */
	char	   *fallback_from;
	dlist_head	past_attempts;	/* LlmgwAttempt, oldest first */
	int			unrecorded;		/* past attempts whose usage row is not written yet */
	TimestampTz retry_at;		/* when a delayed attempt starts, or 0 */

	/* the current attempt's deployment */
	char	   *provider;
	char	   *upstream_model;
	const struct LlmgwRoute *route;
	char	   *secret;
	const struct LlmgwProvider *provider_ops;	/* the route's wire format */

	/* transfer state */
	bool		reached_provider;	/* an HTTP attempt was made */
	bool		health_counted; /* counted in its deployment's calls in flight */
	bool		went_silent;	/* aborted by the route's idle_timeout_ms */
	bool		journaled;		/* has a record in the journal of calls in flight */
	bool		journal_failed; /* the journal could not be written: not sent */
	bool		recovered;		/* its worker died: it may already have usage rows */
	int64		input_estimate; /* tokens, for an interrupted attempt's row */
	int64		output_estimate;	/* -1: no bound */
	TimestampTz started_at;
	TimestampTz finished_at;
	void	   *easy;			/* CURL * */
	struct curl_slist *headers;
	char	   *body;			/* malloc'd request body */
	bool		stream;			/* the answer comes as server-sent events */
	size_t		body_len;
	LlmgwBuffer response;
	int			curl_result;	/* CURLcode once finished */
	LlmgwHintHeaders hint_headers;	/* rate-limit headers of the response */

	LlmgwOutcome out;

	/* a call of the HTTP front door (frontdoor.c) */
	struct LlmgwFrontRequest *front;	/* its client's request; NULL for a
										 * call of SQL, or once the client left */
	bool		committed;		/* part of the answer reached the client: no
								 * other attempt may follow */
	int64		cost_units;		/* charged so far, in money units */
	bool		cost_known;		/* some usage row of it was priced */
	char		cost_currency[4];
} LlmgwCall;

/* call.c */
extern LlmgwCall *llmgw_call_create(int slotno, MemoryContext parent);
extern bool llmgw_call_start(LlmgwCall *call);
extern bool llmgw_call_unpark(LlmgwCall *call);
extern bool llmgw_call_continue(LlmgwCall *call);
extern bool llmgw_call_resume(LlmgwCall *call);
extern void llmgw_call_attempt(const LlmgwCall *call, LlmgwAttempt *a);
extern void llmgw_call_interpret(LlmgwCall *call);
extern long llmgw_call_silence(LlmgwCall *call, TimestampTz now);
extern void llmgw_call_abort_silent(LlmgwCall *call);
extern void llmgw_call_cancel(LlmgwCall *call);
extern void llmgw_call_publish(LlmgwCall *call);
extern char *llmgw_call_answer(LlmgwCall *call);
extern char *llmgw_call_answer_json(LlmgwCall *call);
extern void llmgw_call_error(LlmgwCall *call, char **message, char **detail, char **hint);
extern void llmgw_call_free(LlmgwCall *call);
extern bool llmgw_call_journal(LlmgwCall *call);
extern void llmgw_call_interrupted(LlmgwCall *call);

#endif							/* LLMGW_CALL_H */
