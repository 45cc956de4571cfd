/*-------------------------------------------------------------------------
 *
 * provider_openai.c
 *		OpenAI Chat Completions wire format (OpenAI and compatible servers):
 *		build the request body, parse the response, classify errors.
 *
 * jansson is included after the PostgreSQL headers and json_object() is
 * never called: the server exports a function of that name, and the
 * dynamic linker would bind our call to it.  Objects come from
 * json_pack("{}") instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "call.h"

#include <jansson.h>

/* Build the upstream body: the caller's request with the upstream model */
char *
llmgw_openai_build(const char *caller_body, size_t len,
				   const char *upstream_model, size_t *out_len)
{
	json_t	   *root = json_loadb(caller_body, len, 0, NULL);
	char	   *body;

	if (root == NULL || !json_is_object(root))
	{
		json_decref(root);
		return NULL;
	}
	json_object_set_new(root, "model", json_string(upstream_model));
	body = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (body)
		*out_len = strlen(body);
	return body;
}

/* An integer field of obj, or LLMGW_TOKENS_UNKNOWN when absent or not a count */
static int64
count_field(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);

	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return LLMGW_TOKENS_UNKNOWN;
	return (int64) json_integer_value(v);
}

/* Copy a JSON string into palloc'd memory; NULL when not a string */
static char *
string_field(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);

	if (!json_is_string(v))
		return NULL;
	return pnstrdup(json_string_value(v), json_string_length(v));
}

/* Read the usage block into the normalised buckets */
static void
parse_usage(json_t *usage, LlmgwOutcome *out)
{
	json_t	   *details;

	if (!json_is_object(usage))
		return;
	out->tokens[LLMGW_TOKENS_INPUT] = count_field(usage, "prompt_tokens");
	out->tokens[LLMGW_TOKENS_OUTPUT] = count_field(usage, "completion_tokens");
	details = json_object_get(usage, "prompt_tokens_details");
	if (json_is_object(details))
	{
		out->tokens[LLMGW_TOKENS_CACHED_INPUT] = count_field(details, "cached_tokens");
		out->tokens[LLMGW_TOKENS_CACHE_WRITE] = count_field(details, "cache_write_tokens");
	}
	details = json_object_get(usage, "completion_tokens_details");
	if (json_is_object(details))
		out->tokens[LLMGW_TOKENS_REASONING] = count_field(details, "reasoning_tokens");
}

/* Refine the HTTP-derived error class with the provider's own code */
static LlmgwErrorClass
classify(long http_status, const char *code, const char *type)
{
	const char *c = code ? code : (type ? type : "");

	if (strcmp(c, "insufficient_quota") == 0 ||
		(type && strcmp(type, "insufficient_quota") == 0))
		return LLMGW_ERR_QUOTA;
	if (strcmp(c, "context_length_exceeded") == 0)
		return LLMGW_ERR_CONTEXT_LENGTH;
	if (strcmp(c, "content_filter") == 0 || strcmp(c, "content_policy_violation") == 0)
		return LLMGW_ERR_CONTENT_FILTER;
	if (strcmp(c, "model_not_found") == 0)
		return LLMGW_ERR_MODEL_NOT_FOUND;
	if (strcmp(c, "invalid_api_key") == 0)
		return LLMGW_ERR_AUTH;
	if (strcmp(c, "rate_limit_exceeded") == 0)
		return LLMGW_ERR_RATE_LIMIT;
	return llmgw_error_class_from_http(http_status);
}

/* Parse an error response: {"error": {"message", "type", "code"}} */
static void
parse_error(json_t *root, long http_status, LlmgwOutcome *out)
{
	json_t	   *err = json_object_get(root, "error");
	char	   *type = NULL;

	out->status = LLMGW_STATUS_ERROR;
	if (json_is_object(err))
	{
		json_t	   *code = json_object_get(err, "code");

		out->provider_message = string_field(err, "message");
		type = string_field(err, "type");
		if (json_is_string(code))
			out->provider_code = pstrdup(json_string_value(code));
		else if (json_is_integer(code))
			out->provider_code = psprintf("%lld", (long long) json_integer_value(code));
	}
	else if (json_is_string(err))
		out->provider_message = pstrdup(json_string_value(err));
	out->error = classify(http_status, out->provider_code, type);
}

/* Parse a successful chat completion */
static void
parse_completion(json_t *root, LlmgwOutcome *out)
{
	json_t	   *choices = json_object_get(root, "choices");
	json_t	   *choice;
	json_t	   *message;

	parse_usage(json_object_get(root, "usage"), out);

	choice = json_array_get(choices, 0);
	message = json_object_get(choice, "message");
	if (!json_is_object(message))
	{
		out->status = LLMGW_STATUS_ERROR;
		out->error = LLMGW_ERR_MALFORMED;
		out->provider_message = pstrdup("the response has no choices[0].message object");
		return;
	}
	out->status = LLMGW_STATUS_OK;
	out->text = string_field(message, "content");
	if (out->text == NULL)
		out->text = string_field(message, "refusal");
	out->finish_reason = string_field(choice, "finish_reason");
}

/* Turn an HTTP response into an outcome */
void
llmgw_openai_parse(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_error_t jerr;
	json_t	   *root = json_loadb(buf, len, 0, &jerr);

	if (root == NULL || !json_is_object(root))
	{
		out->status = LLMGW_STATUS_ERROR;
		if (http_status >= 200 && http_status < 300)
		{
			out->error = LLMGW_ERR_MALFORMED;
			out->provider_message = root ? pstrdup("the response is not a JSON object") :
				psprintf("invalid JSON at line %d, column %d: %s",
						 jerr.line, jerr.column, jerr.text);
		}
		else
			out->error = llmgw_error_class_from_http(http_status);
		json_decref(root);
		return;
	}

	if (http_status >= 200 && http_status < 300 && json_object_get(root, "error") == NULL)
		parse_completion(root, out);
	else
		parse_error(root, http_status, out);
	json_decref(root);
}
