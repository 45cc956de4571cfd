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

#include "lib/stringinfo.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "call.h"
#include "config.h"
#include "provider.h"

/*
 * Copy of text with secrets removed: the provider secret itself, and any
 * word containing "***", which is how providers echo a masked key.
 */
char *
llmgw_redact(const char *text, const char *secret)
{
	StringInfoData buf;
	const char *p = text;

	if (text == NULL)
		return NULL;
	initStringInfo(&buf);
	while (*p)
	{
		const char *end = p;

		if (secret && *secret && strncmp(p, secret, strlen(secret)) == 0)
		{
			appendStringInfoString(&buf, "[redacted]");
			p += strlen(secret);
			continue;
		}
		while (*end && *end != ' ')
			end++;
		if (end > p)
		{
			char	   *word = pnstrdup(p, end - p);

			if (strstr(word, "***") != NULL)
			{
				size_t		keep = strlen(word);

				while (keep > 0 && strchr(".,;:)", word[keep - 1]))
					keep--;
				appendStringInfo(&buf, "[redacted]%s", word + keep);
			}
			else if (secret && *secret && strstr(word, secret) != NULL)
				appendStringInfoString(&buf, llmgw_redact(word, secret));
			else
				appendStringInfoString(&buf, word);
			p = end;
		}
		if (*p == ' ')
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}

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
	memcpy(call->request_id.data, req->request_id, UUID_LEN);
	call->role = MemoryContextStrdup(cxt, LLMGW_REQUEST_ROLE(req));
	call->model = MemoryContextStrdup(cxt, LLMGW_REQUEST_MODEL(req));
	call->caller_body = LLMGW_REQUEST_BODY(req);
	call->caller_body_len = req->body_len;
	call->timeout_ms = req->timeout_ms;
	call->max_response_bytes = req->max_response_bytes;
	llmgw_outcome_init(&call->out);
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
 * Route the call and start its transfer.  Returns false when the call
 * failed before reaching a provider (its outcome says why).
 */
bool
llmgw_call_start(LlmgwCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	const LlmgwRoute *route = llmgw_config_route(call->model);
	char	   *error = NULL;
	bool		started = false;

	if (route == NULL)
		started = fail_early(call, LLMGW_ERR_UNKNOWN_MODEL,
							 llmgw_config_installed() ? NULL :
							 psprintf("extension llmgw is not installed in database \"%s\"",
									  llmgw_database));
	else if (route->config_error)
		started = fail_early(call, LLMGW_ERR_PROVIDER_CONFIG, pstrdup(route->config_error));
	else if ((call->provider_ops = llmgw_provider(route->kind)) == NULL)
		started = fail_early(call, LLMGW_ERR_PROVIDER_CONFIG,
							 psprintf("provider kind \"%s\" is not supported", route->kind));
	else
	{
		const LlmgwProvider *ops = call->provider_ops;

		call->provider = pstrdup(route->provider);
		call->upstream_model = pstrdup(route->upstream_model);
		call->secret = route->secret ? pstrdup(route->secret) : NULL;
		if (call->timeout_ms <= 0)
			call->timeout_ms = route->timeout_ms;
		call->connect_timeout_ms = Min(route->connect_timeout_ms, call->timeout_ms);

		if (call->kind == LLMGW_KIND_EMBED && ops->build_embed == NULL)
			error = psprintf("provider kind \"%s\" has no embeddings API", route->kind);
		else if (call->kind == LLMGW_KIND_EMBED)
			call->body = ops->build_embed(call->caller_body, call->caller_body_len,
										  call->upstream_model, &call->body_len, &error);
		else
			call->body = ops->build_chat(call->caller_body, call->caller_body_len,
										 call->upstream_model, &call->body_len, &call->stream,
										 &error);
		if (call->body == NULL)
			started = fail_early(call,
								 (call->kind == LLMGW_KIND_EMBED && ops->build_embed == NULL) ?
								 LLMGW_ERR_PROVIDER_CONFIG : LLMGW_ERR_INVALID_REQUEST,
								 error);
		else
		{
			call->headers = ops->headers(route, call->secret);
			llmgw_http_start(call, call->kind == LLMGW_KIND_EMBED ? ops->embed_url(route) :
							 ops->chat_url(route, call->stream));
			started = true;
		}
	}
	MemoryContextSwitchTo(old);
	return started;
}

/* Turn a finished transfer into an outcome */
void
llmgw_call_interpret(LlmgwCall *call)
{
	MemoryContext old = MemoryContextSwitchTo(call->cxt);
	LlmgwOutcome *out = &call->out;

	if (call->curl_result != CURLE_OK)
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
	/* a hint in the body (Gemini) wins over the headers */
	if (out->retry_after_s < 0 && out->status != LLMGW_STATUS_OK)
		out->retry_after_s = llmgw_retry_hint(&call->hint_headers, time(NULL));
	out->provider_message = llmgw_redact(out->provider_message, call->secret);
	out->provider_code = llmgw_redact(out->provider_code, call->secret);
	MemoryContextSwitchTo(old);
}

/* The error message, detail and hint a caller sees for a failed call */
static void
describe_error(LlmgwCall *call, char **message, char **detail, char **hint)
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
							 (long long) call->max_response_bytes);
			break;
		case LLMGW_ERR_TIMEOUT:
			*message = psprintf("provider \"%s\" did not answer within %d ms",
								call->provider, call->timeout_ms);
			break;
		case LLMGW_ERR_INTERRUPTED:
		case LLMGW_ERR_CANCELLED:
		case LLMGW_ERR_USAGE_NOT_RECORDED:
			*message = psprintf("llmgw call to model \"%s\" failed: %s", call->model, what);
			if (out->provider_message)
				appendStringInfo(&d, "%s.", out->provider_message);
			break;
		default:
			*message = psprintf("provider \"%s\" failed: %s", call->provider, what);
			if (out->http_status)
				appendStringInfo(&d, "HTTP status %ld.", out->http_status);
			if (out->provider_code)
				appendStringInfo(&d, "%sProvider code: %s.", d.len ? " " : "",
								 out->provider_code);
			if (out->provider_message)
				appendStringInfo(&d, "%sProvider message: %s", d.len ? " " : "",
								 out->provider_message);
			break;
	}
	if (out->retry_after_s >= 0)
		*hint = psprintf("The provider asks to retry after %g seconds.", out->retry_after_s);
	*detail = d.len > 0 ? d.data : NULL;
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

	memset(&header, 0, sizeof(header));
	header.status = call->out.status;
	header.http_status = (int32) call->out.http_status;
	if (call->out.status != LLMGW_STATUS_OK)
	{
		header.sqlerrcode = llmgw_error_class_sqlstate(call->out.error);
		describe_error(call, &message, &detail, &hint);
	}
	else if (call->kind == LLMGW_KIND_CHAT_JSON)
		text = llmgw_response_json(call);
	else if (call->kind == LLMGW_KIND_EMBED)
		text = call->out.embeddings;
	else
		text = call->out.text;
	header.has_text = (text != NULL);
	llmgw_slot_publish(call->slotno,
					   llmgw_result_create(&header, text, message, detail, hint));
	MemoryContextSwitchTo(old);
}

/* Free everything the call holds */
void
llmgw_call_free(LlmgwCall *call)
{
	llmgw_http_release(call);
	if (call->secret)
		explicit_bzero(call->secret, strlen(call->secret));
	MemoryContextDelete(call->cxt);
}
