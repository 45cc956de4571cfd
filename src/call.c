/*-------------------------------------------------------------------------
 *
 * call.c
 *		Life of one call inside a worker: read the request from its slot,
 *		route it, build the HTTP request, interpret the response, publish
 *		the result.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "common/pg_prng.h"
#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "call.h"
#include "response.h"
#include "http.h"
#include "queue.h"
#include "config.h"
#include "cache.h"
#include "health.h"
#include "journal.h"
#include "mb/pg_wchar.h"
#include "jsonutil.h"
#include "policy.h"
#include "provider.h"
#include "route.h"
#include "redact.h"
#include "share.h"
#include "frontdoor_openai.h"

/* Read a queued request into a new call */
LlmgwCall *
llmgw_call_create(int slotno, MemoryContext parent)
{
	MemoryContext cxt = AllocSetContextCreate(parent, "llmgw call",
											  ALLOCSET_SMALL_SIZES);
	LlmgwCall  *call = MemoryContextAllocZero(cxt, sizeof(LlmgwCall));
	LlmgwRequest *req = dsa_get_address(llmgw_dsa(), llmgw_slots[slotno].request);

	call->cxt = cxt;
	call->slotno = slotno;
	call->kind = req->kind;
	call->created_at = GetCurrentTimestamp();
	memcpy(call->request_id.data, req->request_id, UUID_LEN);
	call->role = MemoryContextStrdup(cxt, LLMGW_REQUEST_ROLE(req));
	call->model = MemoryContextStrdup(cxt, LLMGW_REQUEST_MODEL(req));
	call->caller_body = LLMGW_REQUEST_BODY(req);
	call->tags = req->tags_len ? MemoryContextStrdup(cxt, LLMGW_REQUEST_TAGS(req)) : NULL;
	call->caller_body_len = req->body_len;
	call->settings = req->settings;
	call->deadline = req->settings.deadline_ms > 0 ?
		TimestampTzPlusMilliseconds(GetCurrentTimestamp(), req->settings.deadline_ms) : 0;
	call->has_key = req->has_key;
	call->async_id = req->async_id;
	call->async_take = req->async_take;
	call->job_id = req->job_id;
	memcpy(call->key_hash, req->key_hash, sizeof(call->key_hash));
	call->max_output_tokens = req->max_output_tokens;	/* 0 for embeddings */
	llmgw_outcome_init(&call->out);
	dlist_init(&call->past_attempts);
	return call;
}

/* Fail a call before any provider was reached */
static bool
fail_early(LlmgwCall *call, LlmgwErrorClass error, char *message)
{
	call->out.status = LLMGW_STATUS_ERROR;
	call->out.error = error;
	call->out.provider_message = message;
	return false;
}

/*
 * Start an attempt on the current deployment.  Returns false when this
 * deployment cannot be called (its outcome says why).
 */
static bool
start_attempt(LlmgwCall *call)
{
	const LlmgwRoute *route = &call->routes[call->route_index];
	const LlmgwProvider *ops = llmgw_provider(route->kind);
	char	   *error = NULL;

	llmgw_outcome_init(&call->out);
	call->provider = route->provider;
	call->upstream_model = route->upstream_model;
	call->route = route;
	call->secret = route->secret;
	call->reached_provider = false;
	call->provider_ops = ops;
	call->timeout_ms = call->settings.timeout_ms > 0 ? call->settings.timeout_ms : route->timeout_ms;
	/* an attempt never runs past the call's overall deadline */
	if (call->deadline != 0)
	{
		long		left = (long) ((call->deadline - GetCurrentTimestamp()) / 1000);

		call->timeout_ms = (int) Max(Min((long) call->timeout_ms, left), 1);
	}
	call->connect_timeout_ms = Min(route->connect_timeout_ms, call->timeout_ms);
	/* what an interrupted attempt is charged: about 4 bytes a token, the output bound */
	call->input_estimate = ((int64) call->caller_body_len + 3) / 4;
	call->output_estimate = llmgw_policy_output_bound(call, route);
	memset(&call->hint_headers, 0, sizeof(call->hint_headers));
	call->went_silent = false;
	memset(&call->response, 0, sizeof(call->response));
	call->tries_on_route++;

	if (route->config_error)
		return fail_early(call, LLMGW_ERR_PROVIDER_CONFIG, pstrdup(route->config_error));
	if (ops == NULL)
		return fail_early(call, LLMGW_ERR_PROVIDER_CONFIG,
						  psprintf("provider kind \"%s\" is not supported", route->kind));
	if (call->kind == LLMGW_KIND_EMBED && ops->build_embed == NULL)
		return fail_early(call, LLMGW_ERR_PROVIDER_CONFIG,
						  psprintf("provider kind \"%s\" has no embeddings API", route->kind));
	if (!llmgw_policy_deployment(call, route))
		return false;			/* saturated: the router moves on */
	if (call->kind == LLMGW_KIND_EMBED)
		call->body = ops->build_embed(call->caller_body, call->caller_body_len,
									  call->upstream_model, &call->body_len, &error);
	else
		call->body = ops->build_chat(call->caller_body, call->caller_body_len,
									 call->upstream_model, &call->body_len, &call->stream,
									 &error);
	if (call->body == NULL)
		return fail_early(call, LLMGW_ERR_INVALID_REQUEST, error);
	call->headers = ops->headers(route, call->secret);
	(void) llmgw_health_available(route->deployment_id, true);	/* claims a due probe */
	llmgw_http_start(call, call->kind == LLMGW_KIND_EMBED ? ops->embed_url(route) :
					 ops->chat_url(route, call->stream));
	llmgw_health_begin(route->deployment_id);
	call->health_counted = true;
	return true;
}

/* The current attempt of a call as a record (for archiving and usage rows) */
void
llmgw_call_attempt(const LlmgwCall *call, LlmgwAttempt *a)
{
	a->number = call->attempt;
	a->provider = call->provider;
	a->upstream_model = call->upstream_model;
	a->route = call->route;
	a->fallback_from = call->fallback_from;
	a->reached_provider = call->reached_provider;
	a->started_at = call->started_at;
	a->finished_at = call->finished_at;
	a->out = call->out;
}

/* Release the transfer of the current attempt */
static void
release_transfer(LlmgwCall *call)
{
	if (call->health_counted)
	{
		llmgw_health_end(call->route->deployment_id);
		call->health_counted = false;
	}
	llmgw_http_release(call);
}

/* Keep the finished attempt for its usage row, and clear the transfer */
static void
archive_attempt(LlmgwCall *call)
{
	LlmgwAttempt *a = palloc0(sizeof(LlmgwAttempt));

	llmgw_call_attempt(call, a);
	dlist_push_tail(&call->past_attempts, &a->node);
	if (a->reached_provider)
		call->unrecorded++;		/* its row is written in this round's settle */
	release_transfer(call);
	call->attempt++;
}

/* Try deployments from the current one until one starts; false if none does */
static bool
start_some_route(LlmgwCall *call)
{
	while (!start_attempt(call))
	{
		if (!llmgw_error_fallback_helps(call->out.error) || call->route_index + 1 >= call->nroutes)
			return false;
		archive_attempt(call);
		(void) llmgw_route_next(call);
	}
	return true;
}

/*
 * Hold the call to its team's fair share of the calls the workers run at
 * once.  False when the team runs its whole share: the call waits.
 */
static bool
take_team_share(LlmgwCall *call)
{
	if (call->team_id == 0 || call->team_running)
		return true;
	if (call->team_share == NULL)
	{
		uint64		key = llmgw_share_key(LLMGW_SHARE_TEAM, &call->team_id, sizeof(call->team_id));

		if (!llmgw_share_acquire(&key, 1, &call->team_share))
			return false;
	}
	if (!llmgw_share_may_run(&call->team_share, 1))
		return false;
	llmgw_share_run(&call->team_share, 1, 1);
	call->team_running = true;
	return true;
}

/*
 * Look the admitted call up in the cache first, or start its first attempt
 * (the model may be gone from a configuration reloaded while it waited)
 */
static bool
route(LlmgwCall *call, const LlmgwModelRoutes *model)
{
	if (model == NULL || model->nroutes == 0)
		return fail_early(call, LLMGW_ERR_UNKNOWN_MODEL, NULL);
	/* a cached call waits for the worker's lookup before it is routed */
	if (llmgw_cache_prepare(call, model))
	{
		call->awaiting_cache = true;
		return true;
	}
	return start_some_route(call);
}

/*
 * Admit the call and route it: start its first attempt, or leave it waiting
 * for a cache lookup or for its team's share.  Returns false when the call
 * failed before reaching any provider (its outcome says why).
 */
bool
llmgw_call_start(LlmgwCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	const LlmgwModelRoutes *model = llmgw_config_routes(call->model);
	bool		started;
	bool		installed;
	const char *unavailable = llmgw_config_unavailable(&installed);

	call->attempt = 1;
	if (unavailable)
		started = fail_early(call, installed ? LLMGW_ERR_PROVIDER_CONFIG : LLMGW_ERR_UNKNOWN_MODEL,
							 pstrdup(unavailable));
	else if (model == NULL || model->nroutes == 0)
		started = fail_early(call, LLMGW_ERR_UNKNOWN_MODEL, NULL);
	else
	{
		llmgw_route_order(call, model);
		started = llmgw_policy_admit(call, model);
		/* a team that runs its whole share waits (the worker parks the call) */
		if (started && !take_team_share(call))
			call->awaiting_share = true;
		else if (started)
			started = route(call, model);
	}
	MemoryContextSwitchTo(old);
	return started;
}

/*
 * A parked call: if its team's share has room now, route it.  Returns false
 * when it failed at once; call->awaiting_share says whether it still waits.
 */
bool
llmgw_call_unpark(LlmgwCall *call)
{
	MemoryContext old;
	bool		started;

	if (!take_team_share(call))
		return true;
	old = MemoryContextSwitchTo(call->cxt);
	call->awaiting_share = false;
	started = route(call, llmgw_config_routes(call->model));
	MemoryContextSwitchTo(old);
	return started;
}

/*
 * A finished attempt failed: retry it, fall back to the next deployment,
 * or stop.  Returns true when the call goes on, either started again now or
 * scheduled for call->retry_at; false when this outcome is final.
 */
bool
llmgw_call_continue(LlmgwCall *call)
{
	MemoryContext old;
	LlmgwErrorClass error = call->out.error;
	double		hint = call->out.retry_after_s;
	double		wait_ms = -1;
	bool		goes_on = false;

	if (call->out.status != LLMGW_STATUS_ERROR || call->committed)
		return false;
	/* the call's overall deadline: no new attempt once it is over */
	if (call->deadline != 0 && GetCurrentTimestamp() >= call->deadline)
		return false;
	old = MemoryContextSwitchTo(call->cxt);
	/*
	 * A transient failure with another deployment of the same priority (load
	 * balancing) moves to it at once: no wait, and the retries left stay for
	 * when no such alternative is left.
	 */
	if (llmgw_error_retryable(error) && call->route_index + 1 < call->nroutes &&
		call->routes[call->route_index + 1].priority == call->routes[call->route_index].priority &&
		call->attempt <= call->settings.max_retries + call->nroutes)
	{
		archive_attempt(call);
		(void) llmgw_route_next(call);
		call->retry_at = 0;
		goes_on = start_some_route(call);
	}
	else if (llmgw_error_retryable(error) && call->tries_on_route <= call->settings.max_retries &&
		(hint < 0 || hint * 1000 <= call->settings.retry_max_wait_ms))
	{
		wait_ms = hint >= 0 ? hint * 1000 :
			llmgw_retry_backoff_ms(call->tries_on_route, call->settings.retry_base_delay_ms,
								   call->settings.retry_max_wait_ms,
								   pg_prng_double(&pg_global_prng_state));
		if (call->deadline != 0 &&
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) wait_ms) >= call->deadline)
			goes_on = false;	/* the wait would outlast the deadline */
		else
		{
			archive_attempt(call);
			call->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) wait_ms);
			goes_on = true;
		}
	}
	else if (llmgw_error_fallback_helps(error) && call->route_index + 1 < call->nroutes)
	{
		archive_attempt(call);
		(void) llmgw_route_next(call);
		call->retry_at = 0;
		goes_on = start_some_route(call);
	}
	MemoryContextSwitchTo(old);
	return goes_on;
}

/* Start an attempt whose delay is over; false when it failed at once */
bool
llmgw_call_resume(LlmgwCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	bool		started;

	call->retry_at = 0;
	started = start_some_route(call);
	MemoryContextSwitchTo(old);
	return started;
}

/*
 * Has the current attempt been silent for longer than its deployment's
 * idle_timeout_ms (before the first byte, or between stream chunks)?
 * Returns the milliseconds left otherwise (-1: no idle timeout).
 */
long
llmgw_call_silence(LlmgwCall *call, TimestampTz now)
{
	TimestampTz last;
	long		left;

	if (call->easy == NULL || call->route == NULL || call->route->idle_timeout_ms <= 0)
		return -1;
	last = Max(call->started_at, call->response.last_data);
	left = call->route->idle_timeout_ms - (long) ((now - last) / 1000);
	return Max(left, 0);
}

/*
 * The caller left (a cancelled statement, a client gone from the front
 * door): abort the transfer; the call ends cancelled, with the usage its
 * stream reported so far
 */
void
llmgw_call_cancel(LlmgwCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->cxt);

	if (call->easy && call->stream && call->response.len > 0 && call->provider_ops &&
		llmgw_http_status_now(call) / 100 == 2)
		call->provider_ops->parse_stream(call->response.data, call->response.len, &call->out);
	llmgw_http_abort(call);
	call->out.status = LLMGW_STATUS_CANCELLED;
	call->out.error = LLMGW_ERR_CANCELLED;
	MemoryContextSwitchTo(old);
}

/* Abort an attempt that went silent; it ends as a timeout */
void
llmgw_call_abort_silent(LlmgwCall *call)
{
	llmgw_health_record(call->route->deployment_id, false, LLMGW_ERR_TIMEOUT,
						(double) (GetCurrentTimestamp() - call->started_at) / 1000.0);
	llmgw_http_abort(call);
	call->went_silent = true;
	call->out.status = LLMGW_STATUS_ERROR;
	call->out.error = LLMGW_ERR_TIMEOUT;
	call->out.provider_message = psprintf("no data for %d ms", call->route->idle_timeout_ms);
}

/* Turn a finished transfer into an outcome */
void
llmgw_call_interpret(LlmgwCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	LlmgwOutcome *out = &call->out;

	if (call->journal_failed)
	{
		/* the request was not sent: nothing reached the provider */
		call->reached_provider = false;
		out->status = LLMGW_STATUS_ERROR;
		out->error = LLMGW_ERR_USAGE_NOT_RECORDED;
		out->provider_message = pstrdup("the journal of calls in flight could not be written, so the request was not sent");
	}
	else if (call->curl_result != CURLE_OK)
	{
		out->status = LLMGW_STATUS_ERROR;
		if (llmgw_http_too_large(call))
			out->error = LLMGW_ERR_TOO_LARGE;
		else if (llmgw_http_timed_out(call->curl_result))
			out->error = LLMGW_ERR_TIMEOUT;
		else
			out->error = LLMGW_ERR_CONNECTION;
		out->provider_message = pstrdup(llmgw_http_strerror(call->curl_result));
	}
	else
	{
		const char *buf = call->response.data ? call->response.data : "";

		if (call->kind == LLMGW_KIND_EMBED)
			call->provider_ops->parse_embed(buf, call->response.len, out->http_status, out);
		else if (call->stream && out->http_status >= 200 && out->http_status < 300)
			call->provider_ops->parse_stream(buf, call->response.len, out);
		else
			call->provider_ops->parse_chat(buf, call->response.len, out->http_status, out);
	}
	llmgw_health_record(call->route->deployment_id, out->status == LLMGW_STATUS_OK, out->error,
						(double) (call->finished_at - call->started_at) / 1000.0);
	/* a hint in the body (Gemini) wins over the headers */
	if (out->retry_after_s < 0 && out->status != LLMGW_STATUS_OK)
		out->retry_after_s = llmgw_retry_hint(&call->hint_headers, time(NULL));
	out->provider_message = llmgw_redact(out->provider_message, call->secret);
	out->provider_code = llmgw_redact(out->provider_code, call->secret);
	MemoryContextSwitchTo(old);
}

/* Message and detail of a failure the provider reported */
static void
provider_failure(LlmgwCall *call, const char *what, char **message, StringInfo d)
{
	LlmgwOutcome *out = &call->out;

	*message = psprintf("provider \"%s\" failed: %s", call->provider, what);
	if (out->http_status)
		appendStringInfo(d, "HTTP status %ld.", out->http_status);
	if (out->provider_code)
		appendStringInfo(d, "%sProvider code: %s.", d->len ? " " : "", out->provider_code);
	if (out->provider_message)
		appendStringInfo(d, "%sProvider message: %s", d->len ? " " : "", out->provider_message);
}

/* The error message, detail and hint a caller sees for a failed call */
void
llmgw_call_error(LlmgwCall *call, char **message, char **detail, char **hint)
{
	LlmgwOutcome *out = &call->out;
	const char *what = llmgw_error_class_message(out->error);
	StringInfoData d;

	*hint = NULL;
	initStringInfo(&d);
	switch (out->error)
	{
		case LLMGW_ERR_UNKNOWN_MODEL:
			*message = psprintf("model \"%s\" does not exist", call->model);
			if (out->provider_message)
				appendStringInfo(&d, "%s.", out->provider_message);
			*hint = pstrdup("Create it with llmgw.create_model().");
			break;
		case LLMGW_ERR_PROVIDER_CONFIG:
			*message = psprintf("cannot call model \"%s\": %s", call->model, what);
			appendStringInfo(&d, "%s.", out->provider_message);
			break;
		case LLMGW_ERR_TOO_LARGE:
			*message = psprintf("response of provider \"%s\" exceeds llmgw.max_response_size",
								call->provider);
			appendStringInfo(&d, "The limit is %lld bytes.",
							 (long long) call->settings.max_response_bytes);
			break;
		case LLMGW_ERR_TIMEOUT:
			if (call->went_silent)
				*message = psprintf("provider \"%s\" sent nothing for %d ms",
									call->provider, call->route->idle_timeout_ms);
			else
				*message = psprintf("provider \"%s\" did not answer within %d ms",
									call->provider, call->timeout_ms);
			break;
		case LLMGW_ERR_INVALID_KEY:
		case LLMGW_ERR_NOT_ALLOWED:
		case LLMGW_ERR_BUDGET:
		case LLMGW_ERR_LOCAL_RATE_LIMIT:
			*message = call->deny_message ? call->deny_message : pstrdup(what);
			if (call->deny_detail)
				appendStringInfoString(&d, call->deny_detail);
			*hint = call->deny_hint;
			break;
		case LLMGW_ERR_INTERRUPTED:
		case LLMGW_ERR_CANCELLED:
		case LLMGW_ERR_USAGE_NOT_RECORDED:
			*message = psprintf("llmgw call to model \"%s\" failed: %s", call->model, what);
			if (out->provider_message)
				appendStringInfo(&d, "%s.", out->provider_message);
			break;
		case LLMGW_ERR_INVALID_REQUEST:
			if (!call->reached_provider)
			{
				/* its wire format could not take the request: nothing was sent */
				*message = psprintf("cannot send this request to provider \"%s\"", call->provider);
				if (out->provider_message)
					appendStringInfo(&d, "%s.", out->provider_message);
				break;
			}
			provider_failure(call, what, message, &d);
			break;
		default:
			provider_failure(call, what, message, &d);
			break;
	}
	if (!dlist_is_empty(&call->past_attempts))
	{
		dlist_iter	iter;

		if (d.len > 0 && d.data[d.len - 1] != '.')
			appendStringInfoChar(&d, '.');
		appendStringInfoString(&d, d.len ? " Attempts:" : "Attempts:");
		dlist_foreach(iter, &call->past_attempts)
		{
			LlmgwAttempt *a = dlist_container(LlmgwAttempt, node, iter.cur);

			appendStringInfo(&d, " %d %s/%s %s;", a->number,
							 a->provider, a->upstream_model, llmgw_error_class_name(a->out.error));
		}
		appendStringInfo(&d, " %d %s/%s %s.", call->attempt,
						 call->provider ? call->provider : "?",
						 call->upstream_model ? call->upstream_model : "?",
						 llmgw_error_class_name(out->error));
	}
	if (out->retry_after_s >= 0 && *hint == NULL)
		*hint = psprintf("The provider asks to retry after %g seconds.", out->retry_after_s);
	*detail = d.len > 0 ? d.data : NULL;
}


/* The answer of a successful call as the caller receives it (NULL: SQL NULL) */
char *
llmgw_call_answer(LlmgwCall *call)
{
	if (call->cache_hit)
		return call->cached_answer;
	if (call->kind == LLMGW_KIND_CHAT_JSON)
		return llmgw_response_json(call);
	if (call->kind == LLMGW_KIND_EMBED)
		return call->out.embeddings;
	return call->out.text;
}

/*
 * The answer of a successful call as a JSON document (an asynchronous
 * call's answer): llm_chat's, or for embeddings the OpenAI embeddings list
 * a batch's embeddings item answers (NULL: SQL NULL)
 */
char *
llmgw_call_answer_json(LlmgwCall *call)
{
	char	   *answer = llmgw_call_answer(call);

	if (call->kind != LLMGW_KIND_EMBED || answer == NULL)
		return answer;
	return llmgw_openai_embeddings(answer, call->upstream_model ? call->upstream_model : call->model,
								   false, call->out.tokens[LLMGW_TOKENS_INPUT]);
}

/* Hand the outcome to the waiting caller */
void
llmgw_call_publish(LlmgwCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	LlmgwResult header;
	char	   *text = NULL;
	char	   *message = NULL;
	char	   *detail = NULL;
	char	   *hint = NULL;

	/* nobody waits (an asynchronous call, the front door's, a caller gone):
	 * the slot is freed, with no result to build */
	if (!llmgw_slot_awaited(call->slotno))
	{
		llmgw_slot_publish(call->slotno, InvalidDsaPointer);
		MemoryContextSwitchTo(old);
		return;
	}
	memset(&header, 0, sizeof(header));
	header.status = call->out.status;
	header.http_status = (int32) call->out.http_status;
	if (call->out.status != LLMGW_STATUS_OK)
	{
		header.sqlerrcode = llmgw_error_class_sqlstate(call->out.error);
		llmgw_call_error(call, &message, &detail, &hint);
	}
	else
		text = llmgw_call_answer(call);
	header.has_text = (text != NULL);
	llmgw_slot_publish(call->slotno,
					   llmgw_result_create(&header, text, message, detail, hint));
	MemoryContextSwitchTo(old);
}

/* Copy a string into a fixed buffer, cut at a character boundary */
static void
copy_text(char *dst, size_t size, const char *src)
{
	size_t		len = src ? strlen(src) : 0;

	if (len >= size)
		len = pg_mbcliplen(src, len, size - 1);
	if (len > 0)
		memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * The request of the current attempt is about to be sent: journal it, so
 * that a crash from now on still leaves a usage row.  False when the
 * journal cannot be written: the request is then not sent.
 */
bool
llmgw_call_journal(LlmgwCall *call)
{
	LlmgwJournalEntry *e = palloc0(sizeof(LlmgwJournalEntry));
	bool		ok;

	e->life = llmgw_shared->life;
	e->slotno = call->slotno;
	e->request_id = call->request_id;
	e->attempt = call->attempt;
	e->kind = call->kind;
	e->started_at = call->started_at;
	e->key_id = call->key_id;
	e->team_id = call->team_id;
	e->deployment_id = call->route->deployment_id;
	e->job_id = call->job_id;
	e->async_id = call->async_id;
	e->input_estimate = call->input_estimate;
	e->output_estimate = call->output_estimate;
	copy_text(e->role, sizeof(e->role), call->role);
	copy_text(e->model, sizeof(e->model), call->model);
	copy_text(e->provider, sizeof(e->provider), call->provider);
	copy_text(e->upstream_model, sizeof(e->upstream_model), call->upstream_model);
	copy_text(e->route_kind, sizeof(e->route_kind), call->route->kind);
	copy_text(e->price_model, sizeof(e->price_model), call->route->price_model);
	copy_text(e->tags, sizeof(e->tags), call->tags);
	ok = llmgw_journal_begin(e);
	pfree(e);
	if (ok)
		call->journaled = true;
	else
		call->journal_failed = true;
	return ok;
}

/*
 * A call whose worker died: what its journal record says of the attempt in
 * flight, priced by estimate; without a record, its request was never sent.
 */
void
llmgw_call_interrupted(LlmgwCall *call)
{
	LlmgwJournalEntry *e = palloc(sizeof(LlmgwJournalEntry));

	call->recovered = true;
	call->out.status = LLMGW_STATUS_INTERRUPTED;
	call->out.error = LLMGW_ERR_INTERRUPTED;
	call->started_at = call->finished_at = GetCurrentTimestamp();
	call->attempt = 1;
	if (llmgw_journal_read(call->slotno, e) &&
		memcmp(e->request_id.data, call->request_id.data, UUID_LEN) == 0)
	{
		const LlmgwModelRoutes *model = llmgw_config_routes(call->model);

		call->reached_provider = true;
		call->journaled = true;
		call->attempt = e->attempt;
		call->started_at = e->started_at;
		call->key_id = e->key_id;
		call->team_id = e->team_id;
		call->provider = pstrdup(e->provider);
		call->upstream_model = pstrdup(e->upstream_model);
		call->out.tokens[LLMGW_TOKENS_INPUT] = e->input_estimate;
		call->out.tokens[LLMGW_TOKENS_OUTPUT] = e->output_estimate;
		call->out.estimated = true;
		/* its deployment, for the price */
		for (int i = 0; model && i < model->nroutes; i++)
		{
			if (model->routes[i].deployment_id == e->deployment_id)
			{
				call->routes = palloc(sizeof(LlmgwRoute));
				llmgw_route_copy(call->routes, &model->routes[i]);
				call->nroutes = 1;
				call->route = call->routes;
			}
		}
	}
	pfree(e);
}

/* Free everything the call holds */
void
llmgw_call_free(LlmgwCall *call)
{
	release_transfer(call);
	if (call->team_running)
		llmgw_share_run(&call->team_share, 1, -1);
	if (call->team_share)
		llmgw_share_release(&call->team_share, 1);
	for (int i = 0; i < call->nroutes; i++)
		if (call->routes[i].secret)
			explicit_bzero(call->routes[i].secret, strlen(call->routes[i].secret));
	MemoryContextDelete(call->cxt);
}
