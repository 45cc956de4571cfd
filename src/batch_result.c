/*-------------------------------------------------------------------------
 *
 * batch_result.c
 *		Read a result line of a provider batch (an OpenAI Batch API output
 *		line: every API's results are normalised to them, batch_wire.c)
 *		into what its item, its usage row and its answer need.
 *
 * The rules are llmgw.batch_ingest's (the SQL that writes a chunk when
 * llmgw's tables are not as the extension made them, sql/): an item is
 * done when the status is 200 and the body has its answer (a chat
 * answer's text, an embedding's array); otherwise expired or cancelled
 * when the line's error says so, else failed, classed by the body's
 * error code and the status.  Where the SQL would fail the whole chunk
 * on a value of the wrong type (a status code or a token count that is
 * not an integer), the value is taken as missing here.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "batch_result.h"
#include "jsonutil.h"

/* A string member's text, palloc'd; NULL if missing or not a string */
static char *
string_of(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);

	return json_is_string(v) ? pnstrdup(json_string_value(v), json_string_length(v)) : NULL;
}

/* Whether a string member is there and equal to s */
static bool
string_is(json_t *obj, const char *key, const char *s)
{
	json_t	   *v = json_object_get(obj, key);

	return json_is_string(v) && strcmp(json_string_value(v), s) == 0;
}

/* An integer member (or a string of one, as SQL's cast takes it) */
static bool
integer_of(json_t *obj, const char *key, int64 min, int64 max, int64 *n)
{
	json_t	   *v = json_object_get(obj, key);
	int64		x;

	if (json_is_integer(v))
		x = json_integer_value(v);
	else if (json_is_string(v))
	{
		const char *s = json_string_value(v);
		char	   *end;

		errno = 0;
		x = strtoll(s, &end, 10);
		if (errno != 0 || end == s || *end != '\0' || strlen(s) != json_string_length(v))
			return false;
	}
	else
		return false;
	if (x < min || x > max)
		return false;
	*n = x;
	return true;
}

/* A message: a string as it is, another value as its JSON text */
static char *
message_of(json_t *obj)
{
	json_t	   *v = json_object_get(obj, "message");
	char	   *dump;
	char	   *s;

	if (v == NULL || json_is_null(v))
		return NULL;
	if (json_is_string(v))
		return pnstrdup(json_string_value(v), json_string_length(v));
	dump = json_dumps(v, JSON_ENCODE_ANY);
	if (dump == NULL)
		return NULL;
	s = pstrdup(dump);
	free(dump);
	return s;
}

/* The class of a failed item: the body's error code, else the status */
static const char *
failure_class(json_t *body, const LlmgwBatchResult *r)
{
	json_t	   *err = json_object_get(body, "error");

	if (string_is(err, "code", "context_length_exceeded"))
		return "context_length";
	if (string_is(err, "code", "content_filter"))
		return "content_filter";
	if (!r->has_status)
		return "malformed_response";
	if (r->http_status == 429)
		return "rate_limit";
	if (r->http_status >= 500)
		return "server";
	if (r->http_status == 401 || r->http_status == 403)
		return "auth";
	if (r->http_status == 404)
		return "model_not_found";
	return "invalid_request";
}

bool
llmgw_batch_result_read(const char *buf, size_t len, bool embeddings, LlmgwBatchResult *r)
{
	json_t	   *line = llmgw_json_loadb(buf, len, 0, NULL);
	json_t	   *response;
	json_t	   *body;
	json_t	   *usage;
	json_t	   *line_error;
	json_t	   *status;
	int64		n;
	bool		answered;

	memset(r, 0, sizeof(*r));
	if (!json_is_object(line))
	{
		json_decref(line);
		return false;
	}
	response = json_object_get(line, "response");
	body = json_object_get(response, "body");
	usage = json_object_get(body, "usage");
	line_error = json_object_get(line, "error");

	r->custom_id = string_of(line, "custom_id");
	r->has_status = integer_of(response, "status_code", PG_INT32_MIN, PG_INT32_MAX, &n);
	r->http_status = r->has_status ? (int32) n : 0;
	status = json_object_get(response, "status_code");

	/* done: the status 200 (as a number or a string) and the answer there */
	answered = (json_is_integer(status) && json_integer_value(status) == 200) ||
		string_is(response, "status_code", "200");
	if (answered && embeddings)
		answered = json_is_array(json_object_get(json_array_get(json_object_get(body, "data"), 0),
												 "embedding"));
	else if (answered)
		answered = json_is_string(json_object_get(json_object_get(
																  json_array_get(json_object_get(body, "choices"), 0), "message"), "content"));
	if (answered)
		r->state = "done";
	else if (string_is(line_error, "code", "batch_expired"))
		r->state = "expired";
	else if (string_is(line_error, "code", "batch_cancelled"))
		r->state = "cancelled";
	else
		r->state = "failed";

	if (answered && !embeddings)
		r->answer = string_of(json_object_get(json_array_get(json_object_get(body, "choices"), 0),
											  "message"), "content");

	r->has_tokens[LLMGW_RT_INPUT] = integer_of(usage, "prompt_tokens", PG_INT64_MIN, PG_INT64_MAX,
											   &r->tokens[LLMGW_RT_INPUT]);
	/* embeddings bill no output */
	if (embeddings && json_object_get(usage, "prompt_tokens") != NULL)
	{
		r->has_tokens[LLMGW_RT_OUTPUT] = true;
		r->tokens[LLMGW_RT_OUTPUT] = 0;
	}
	else
		r->has_tokens[LLMGW_RT_OUTPUT] = integer_of(usage, "completion_tokens", PG_INT64_MIN,
													PG_INT64_MAX, &r->tokens[LLMGW_RT_OUTPUT]);
	r->has_tokens[LLMGW_RT_CACHED_INPUT] =
		integer_of(json_object_get(usage, "prompt_tokens_details"), "cached_tokens",
				   PG_INT64_MIN, PG_INT64_MAX, &r->tokens[LLMGW_RT_CACHED_INPUT]);
	r->has_tokens[LLMGW_RT_REASONING] =
		integer_of(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens",
				   PG_INT64_MIN, PG_INT64_MAX, &r->tokens[LLMGW_RT_REASONING]);

	if (strcmp(r->state, "done") == 0)
		r->error_class = NULL;
	else if (strcmp(r->state, "failed") == 0)
		r->error_class = failure_class(body, r);
	else
		r->error_class = r->state;
	r->error = message_of(json_object_get(body, "error"));
	if (r->error == NULL)
		r->error = message_of(line_error);
	if (r->error == NULL && strcmp(r->state, "failed") == 0)
		r->error = pstrdup("the provider's result could not be read");
	json_decref(line);
	return true;
}
