/*-------------------------------------------------------------------------
 *
 * batch_anthropic.c
 *		Anthropic Message Batches: the requests go inline in the create
 *		(POST /messages/batches, {"requests": [{custom_id, params}]}, the
 *		params built by the Messages wire format), GET /messages/batches/{id}
 *		(processing_status in_progress, canceling, ended), POST
 *		.../{id}/cancel, and the results as JSONL from .../{id}/results, each
 *		succeeded message read by the Messages parser.
 *
 * A message batch has no metadata.  After an uncertain create, the batch
 * is found in GET /messages/batches?limit=100 as the oldest batch created
 * since the row was queued (less 10 minutes of clock skew) with exactly
 * as many requests, that no other row of llmgw.batches holds; batch.c
 * sends one uncertain create per provider at a time, so no other batch of
 * llmgw's can match.  Every custom_id carries the row's marker, and results
 * of another batch are never written (see docs/batch.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "batch_wire.h"
#include "jsonutil.h"
#include "provider.h"

/* Limits of a message batch: 100,000 requests or 256 MB */
#define ANTHROPIC_MAX_REQUESTS 100000
#define ANTHROPIC_MAX_BYTES ((size_t) 256 * 1024 * 1024)

/* Base URL including the version, e.g. https://api.anthropic.com/v1 */
static char *
anthropic_url(const LlmgwRoute *route, LlmgwBatchOp op, const char *id)
{
	switch (op)
	{
		case LLMGW_BATCH_UPLOAD:
		case LLMGW_BATCH_CREATE:
			return llmgw_url_join(route->base_url, "messages/batches");
		case LLMGW_BATCH_LIST:
			return llmgw_url_join(route->base_url, "messages/batches?limit=" LLMGW_BATCH_LIST_LIMIT_TEXT);
		case LLMGW_BATCH_GET:
			return llmgw_url_join(route->base_url, psprintf("messages/batches/%s", id));
		case LLMGW_BATCH_CANCEL:
			return llmgw_url_join(route->base_url, psprintf("messages/batches/%s/cancel", id));
		case LLMGW_BATCH_RESULTS:
			return llmgw_url_join(route->base_url, psprintf("messages/batches/%s/results", id));
	}
	return NULL;
}

/* The Messages API's headers (x-api-key, anthropic-version) */
static struct curl_slist *
anthropic_headers(const LlmgwRoute *route, bool json)
{
	return llmgw_provider_anthropic.headers(route, route->secret);
}

static void
anthropic_begin(StringInfo buf, const LlmgwRoute *route, const char *marker)
{
	appendStringInfoString(buf, "{\"requests\":[");
}

/* {"custom_id", "params"}; custom_ids are [A-Za-z0-9_-] (the marker and r<n>) */
static void
anthropic_item(StringInfo buf, int n, const char *marker, const char *custom_id,
			   const char *body, size_t len)
{
	appendStringInfo(buf, "%s{\"custom_id\":\"%s\",\"params\":", n > 0 ? "," : "", custom_id);
	appendBinaryStringInfo(buf, body, (int) len);
	appendStringInfoChar(buf, '}');
}

static void
anthropic_end(StringInfo buf)
{
	appendStringInfoString(buf, "]}");
}

/* Read a message batch; false if it is not one */
static bool
read_batch(json_t *obj, LlmgwBatchStatus *st)
{
	const char *ps = json_string_value(json_object_get(obj, "processing_status"));
	json_t	   *counts = json_object_get(obj, "request_counts");
	int64		c[5];
	static const char *const names[5] = {"processing", "succeeded", "errored", "canceled", "expired"};

	llmgw_batch_status_init(st);
	if (!llmgw_batch_safe_id(json_string_value(json_object_get(obj, "id"))) || ps == NULL)
		return false;
	for (int i = 0; i < 5; i++)
		c[i] = Max(llmgw_json_count(counts, names[i]), 0);
	st->id = llmgw_json_string(obj, "id");
	if (strcmp(ps, "in_progress") == 0)
		st->status = "in_progress";
	else if (strcmp(ps, "canceling") == 0)
		st->status = "cancelling";
	else if (strcmp(ps, "ended") == 0)
	{
		json_t	   *cancel = json_object_get(obj, "cancel_initiated_at");

		/*
		 * ended: cancelled if a cancel was asked, completed otherwise; the
		 * items that expired (the batch reached its 24 hours) say so each
		 */
		st->status = (cancel && !json_is_null(cancel)) ? "cancelled" : "completed";
		/* the results are at .../{id}/results */
		st->output_ref = st->id;
	}
	else
		return false;
	st->completed = c[1];
	st->failed = c[2] + c[3] + c[4];
	st->total = c[0] + c[1] + c[2] + c[3] + c[4];
	st->created = llmgw_batch_rfc3339(json_string_value(json_object_get(obj, "created_at")));
	return true;
}

/*
 * One result line: {"custom_id", "result": {"type": "succeeded", "message"}
 * | {"type": "errored", "error": {"type": "error", "error": {type, message}}}
 * | {"type": "canceled"} | {"type": "expired"}}
 */
static bool
result_line(json_t *line, const char *marker, LlmgwBatchEmit emit, void *arg)
{
	char	   *id = llmgw_batch_wire_id(marker, json_string_value(json_object_get(line, "custom_id")));
	json_t	   *result = json_object_get(line, "result");
	const char *type = json_string_value(json_object_get(result, "type"));
	LlmgwOutcome out;

	if (id == NULL)
		return false;
	llmgw_outcome_init(&out);
	if (type && strcmp(type, "expired") == 0)
		emit(arg, id, LLMGW_BATCH_ITEM_EXPIRED, &out);
	else if (type && strcmp(type, "canceled") == 0)
		emit(arg, id, LLMGW_BATCH_ITEM_CANCELLED, &out);
	else if (type && strcmp(type, "succeeded") == 0 && json_is_object(json_object_get(result, "message")))
	{
		char	   *message = llmgw_json_dump(json_object_get(result, "message"));

		llmgw_provider_anthropic.parse_chat(message, strlen(message), 200, &out);
		emit(arg, id, LLMGW_BATCH_ITEM_ANSWERED, &out);
	}
	else if (type && strcmp(type, "errored") == 0 && json_is_object(json_object_get(result, "error")))
	{
		json_t	   *err = json_object_get(result, "error");
		json_t	   *envelope = json_is_object(json_object_get(err, "error")) ?
			json_incref(err) : json_pack("{s:s, s:O}", "type", "error", "error", err);
		char	   *text = llmgw_json_dump(envelope);

		json_decref(envelope);
		/* the error's type classifies it; an unknown type is a refused request */
		llmgw_provider_anthropic.parse_chat(text, strlen(text), 400, &out);
		emit(arg, id, LLMGW_BATCH_ITEM_ANSWERED, &out);
	}
	else
	{
		llmgw_json_set_error(&out, LLMGW_ERR_MALFORMED, NULL, NULL);
		out.provider_message = pstrdup("the provider's result for this request could not be read");
		emit(arg, id, LLMGW_BATCH_ITEM_ANSWERED, &out);
	}
	return true;
}

/* Is this line only white space? */
static bool
blank(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return false;
	return true;
}

/* A line of the results (JSONL): 1 if it is not an item of ours */
static int
anthropic_results(const char *buf, size_t len, const char *marker, LlmgwBatchEmit emit, void *arg)
{
	json_t	   *line = len > 0 ? llmgw_json_load(buf, len, NULL) : NULL;
	int			foreign = (line ? !result_line(line, marker, emit, arg) : !blank(buf, len)) ? 1 : 0;

	json_decref(line);
	return foreign;
}

const LlmgwBatchWire llmgw_batch_anthropic = {
	"Anthropic Message Batches", false, true, ANTHROPIC_MAX_REQUESTS, ANTHROPIC_MAX_BYTES,
	anthropic_url, anthropic_headers, anthropic_begin, anthropic_item, anthropic_end, NULL,
	read_batch, "data", NULL, anthropic_results, NULL, NULL
};
