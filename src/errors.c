/*-------------------------------------------------------------------------
 *
 * errors.c
 *		Names, SQLSTATEs and messages of the error classes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "errors.h"

/*
 * What a class is and what it does: its name in llmgw.usage.error_class,
 * its SQLSTATE and message, whether the same deployment is worth another
 * try (retry), whether another deployment may do better (fallback), and
 * whether it says something about the deployment rather than the request
 * (it counts towards the deployment's cooldown).
 */
typedef struct ErrorClassInfo
{
	const char *name;
	int			sqlstate;
	const char *message;
	bool		retry;
	bool		fallback;
	bool		deployment;
	int			http;			/* the front door's HTTP status (docs/http.md) */
} ErrorClassInfo;

#define Y true
#define N false

/* Indexed by LlmgwErrorClass */
static const ErrorClassInfo error_classes[] = {
	[LLMGW_ERR_NONE] = {NULL, 0, NULL, N, N, N, 200},
	[LLMGW_ERR_UNKNOWN_MODEL] = {"unknown_model", ERRCODE_UNDEFINED_OBJECT, "model does not exist", N, N, N, 404},
	[LLMGW_ERR_CONNECTION] = {"connection", ERRCODE_LLMGW_CONNECTION, "could not reach the provider", Y, Y, Y, 502},
	[LLMGW_ERR_TIMEOUT] = {"timeout", ERRCODE_LLMGW_TIMEOUT, "the provider did not answer in time", Y, Y, Y, 504},
	[LLMGW_ERR_MALFORMED] = {"malformed_response", ERRCODE_LLMGW_MALFORMED, "the provider sent a malformed response", N, N, Y, 502},
	[LLMGW_ERR_TOO_LARGE] = {"response_too_large", ERRCODE_LLMGW_TOO_LARGE, "the provider response is too large", N, N, N, 502},
	[LLMGW_ERR_PROVIDER_CONFIG] = {"provider_config", ERRCODE_LLMGW_PROVIDER_CONFIG, "the provider is misconfigured", N, Y, N, 502},
	[LLMGW_ERR_INTERRUPTED] = {"interrupted", ERRCODE_LLMGW_INTERRUPTED, "the call was interrupted by a worker or server restart", N, N, N, 503},
	[LLMGW_ERR_CANCELLED] = {"cancelled", ERRCODE_QUERY_CANCELED, "the call was cancelled", N, N, N, 499},
	[LLMGW_ERR_USAGE_NOT_RECORDED] = {"usage_not_recorded", ERRCODE_LLMGW_USAGE_NOT_RECORDED, "the call's usage could not be recorded", N, N, N, 503},
	[LLMGW_ERR_INVALID_REQUEST] = {"invalid_request", ERRCODE_LLMGW_INVALID_REQUEST, "the provider rejected the request", N, N, N, 400},
	[LLMGW_ERR_AUTH] = {"auth", ERRCODE_LLMGW_AUTH, "the provider rejected the credentials", N, Y, Y, 502},
	[LLMGW_ERR_QUOTA] = {"quota", ERRCODE_LLMGW_QUOTA, "the provider quota is exhausted", N, Y, Y, 502},
	[LLMGW_ERR_MODEL_NOT_FOUND] = {"model_not_found", ERRCODE_LLMGW_MODEL_NOT_FOUND, "the provider does not know the model", N, Y, N, 502},
	[LLMGW_ERR_CONTEXT_LENGTH] = {"context_length", ERRCODE_LLMGW_CONTEXT_LENGTH, "the request exceeds the model's context length", N, Y, N, 400},
	[LLMGW_ERR_RATE_LIMIT] = {"rate_limit", ERRCODE_LLMGW_RATE_LIMIT, "the provider rate limit was reached", Y, Y, Y, 429},
	[LLMGW_ERR_CONTENT_FILTER] = {"content_filter", ERRCODE_LLMGW_CONTENT_FILTER, "the provider's content filter blocked the request", N, N, N, 400},
	[LLMGW_ERR_SERVER] = {"server", ERRCODE_LLMGW_SERVER, "the provider had an internal error", Y, Y, Y, 502},
	[LLMGW_ERR_OVERLOADED] = {"overloaded", ERRCODE_LLMGW_OVERLOADED, "the provider is overloaded", Y, Y, Y, 503},
	[LLMGW_ERR_INVALID_KEY] = {"invalid_key", ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION, "the virtual key is not valid", N, N, N, 401},
	[LLMGW_ERR_NOT_ALLOWED] = {"not_allowed", ERRCODE_INSUFFICIENT_PRIVILEGE, "the model is not allowed", N, N, N, 403},
	[LLMGW_ERR_BUDGET] = {"budget_exhausted", ERRCODE_LLMGW_BUDGET_EXHAUSTED, "a budget is exhausted", N, N, N, 429},
	/* a saturated deployment: the router moves on to the next one */
	[LLMGW_ERR_LOCAL_RATE_LIMIT] = {"local_rate_limit", ERRCODE_LLMGW_RATE_LIMITED, "an llmgw rate limit was reached", N, Y, N, 429},
	[LLMGW_ERR_BROKEN_STREAM] = {"broken_stream", ERRCODE_LLMGW_BROKEN_STREAM, "the provider's stream ended early or could not be read", Y, Y, Y, 502},
	/* the same bytes would be refused again; other providers' limits differ */
	[LLMGW_ERR_REQUEST_TOO_LARGE] = {"request_too_large", ERRCODE_LLMGW_REQUEST_TOO_LARGE, "the provider refused a request this large", N, N, N, 413},
};

#undef Y
#undef N

const char *
llmgw_error_class_name(LlmgwErrorClass cls)
{
	return error_classes[cls].name;
}

int
llmgw_error_class_sqlstate(LlmgwErrorClass cls)
{
	return error_classes[cls].sqlstate;
}

const char *
llmgw_error_class_message(LlmgwErrorClass cls)
{
	return error_classes[cls].message;
}

/* Is a failure of this class worth another try on the same deployment? */
bool
llmgw_error_retryable(LlmgwErrorClass cls)
{
	return error_classes[cls].retry;
}

/* May another deployment succeed where this class of failure happened? */
bool
llmgw_error_fallback_helps(LlmgwErrorClass cls)
{
	return error_classes[cls].fallback;
}

/* Does the failure say something about the deployment, not the request? */
int
llmgw_error_class_http(LlmgwErrorClass cls)
{
	return error_classes[cls].http;
}

bool
llmgw_error_deployment_failure(LlmgwErrorClass cls)
{
	return error_classes[cls].deployment;
}

/* Default class of an HTTP error status, before provider codes refine it */
LlmgwErrorClass
llmgw_error_class_from_http(long http_status)
{
	switch (http_status)
	{
		case 401:
		case 403:
			return LLMGW_ERR_AUTH;
		case 402:
			return LLMGW_ERR_QUOTA;
		case 404:
			return LLMGW_ERR_MODEL_NOT_FOUND;
		case 408:
			return LLMGW_ERR_TIMEOUT;
		case 413:
			return LLMGW_ERR_REQUEST_TOO_LARGE;
		case 429:
			return LLMGW_ERR_RATE_LIMIT;
		case 503:
		case 529:
			return LLMGW_ERR_OVERLOADED;
		default:
			if (http_status >= 500)
				return LLMGW_ERR_SERVER;
			return LLMGW_ERR_INVALID_REQUEST;
	}
}
