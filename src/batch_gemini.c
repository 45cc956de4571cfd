/*-------------------------------------------------------------------------
 *
 * batch_gemini.c
 *		Gemini batch mode: the requests go inline in the create
 *		(POST models/{model}:batchGenerateContent, {"batch": {display_name,
 *		input_config: {requests: {requests: [{request, metadata: {key}}]}}}},
 *		each request built by the generateContent wire format), which
 *		answers a long-running operation batches/{id}; GET batches/{id}
 *		(BATCH_STATE_* or JOB_STATE_*), POST batches/{id}:cancel, and the
 *		answers inline in the finished operation (inlinedResponses, each
 *		with its metadata key and a response or an error), each response
 *		read by the generateContent parser.
 *
 * The display name carries the marker (llmgw-<marker>): after an
 * uncertain create the batch is found by it in GET batches?pageSize=100.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "batch_wire.h"
#include "jsonutil.h"
#include "provider.h"

/* Inline requests: keep a create body under 20 MB; requests as Anthropic's */
#define GEMINI_MAX_REQUESTS 100000
#define GEMINI_MAX_BYTES ((size_t) 20 * 1000 * 1000)
#define DISPLAY_PREFIX "llmgw-"

/* Base URL including the version, e.g. .../v1beta; ids are batches/{id} */
static char *
gemini_url(const LlmgwRoute *route, LlmgwBatchOp op, const char *id)
{
	switch (op)
	{
		case LLMGW_BATCH_UPLOAD:
		case LLMGW_BATCH_CREATE:
			return llmgw_url_join(route->base_url,
								  psprintf("models/%s:batchGenerateContent", route->upstream_model));
		case LLMGW_BATCH_LIST:
			return llmgw_url_join(route->base_url, "batches?pageSize=" LLMGW_BATCH_LIST_LIMIT_TEXT);
		case LLMGW_BATCH_GET:
		case LLMGW_BATCH_RESULTS:
			return llmgw_url_join(route->base_url, psprintf("batches/%s", id));
		case LLMGW_BATCH_CANCEL:
			return llmgw_url_join(route->base_url, psprintf("batches/%s:cancel", id));
	}
	return NULL;
}

static struct curl_slist *
gemini_headers(const LlmgwRoute *route, bool json)
{
	return llmgw_provider_gemini.headers(route, route->secret);
}

static void
gemini_begin(StringInfo buf, const LlmgwRoute *route, const char *marker)
{
	appendStringInfo(buf, "{\"batch\":{\"display_name\":\"" DISPLAY_PREFIX "%s\","
					 "\"input_config\":{\"requests\":{\"requests\":[", marker);
}

/* {"request", "metadata": {"key"}}; keys are [A-Za-z0-9_-] (the marker and r<n>) */
static void
gemini_item(StringInfo buf, int n, const char *marker, const char *custom_id,
			const char *body, size_t len)
{
	appendStringInfo(buf, "%s{\"request\":", n > 0 ? "," : "");
	appendBinaryStringInfo(buf, body, (int) len);
	appendStringInfo(buf, ",\"metadata\":{\"key\":\"%s\"}}", custom_id);
}

static void
gemini_end(StringInfo buf)
{
	appendStringInfoString(buf, "]}}}}");
}

/* A count that protobuf's JSON may send as a string */
static int64
count_of(json_t *obj, const char *key)
{
	json_t	   *v = json_object_get(obj, key);

	if (json_is_string(v))
	{
		char	   *end;
		long long	n = strtoll(json_string_value(v), &end, 10);

		return (*end == '\0' && end != json_string_value(v) && n >= 0) ? (int64) n : -1;
	}
	return llmgw_json_count(obj, key) == LLMGW_TOKENS_UNKNOWN ? -1 : llmgw_json_count(obj, key);
}

/* Our status of a batch state (BATCH_STATE_* or JOB_STATE_*); NULL if unknown */
static const char *
status_of(const char *state)
{
	static const char *const map[][2] = {
		{"PENDING", "validating"}, {"QUEUED", "validating"}, {"RUNNING", "in_progress"},
		{"CANCELLING", "cancelling"}, {"SUCCEEDED", "completed"}, {"FAILED", "failed"},
		{"CANCELLED", "cancelled"}, {"EXPIRED", "expired"}
	};

	if (state == NULL)
		return NULL;
	if (strncmp(state, "BATCH_STATE_", 12) == 0)
		state += 12;
	else if (strncmp(state, "JOB_STATE_", 10) == 0)
		state += 10;
	else
		return NULL;
	for (int i = 0; i < lengthof(map); i++)
		if (strcmp(state, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

/*
 * Read an operation (or a batch resource): its name batches/{id}, the
 * batch's state and stats in its metadata; false if it is not one
 */
static bool
read_batch(json_t *op, LlmgwBatchStatus *st)
{
	json_t	   *meta = json_object_get(op, "metadata");
	json_t	   *batch = json_is_object(meta) ? meta : op;
	const char *name = json_string_value(json_object_get(op, "name"));
	const char *state = json_string_value(json_object_get(batch, "state"));
	const char *display = json_string_value(json_object_get(batch, "displayName"));
	json_t	   *stats = json_object_get(batch, "batchStats");
	json_t	   *error = json_object_get(op, "error");

	llmgw_batch_status_init(st);
	if (display == NULL)
		display = json_string_value(json_object_get(batch, "display_name"));
	if (state == NULL)
		state = json_string_value(json_object_get(op, "state"));
	if (name == NULL || strncmp(name, "batches/", 8) != 0 || !llmgw_batch_safe_id(name + 8))
		return false;
	st->id = pstrdup(name + 8);
	st->status = status_of(state);
	if (st->status == NULL && json_is_object(error))
		st->status = "failed";
	if (st->status == NULL)
		return false;
	if (strcmp(st->status, "failed") == 0)
		st->error = llmgw_json_string(error, "message");
	/* the answers are in the operation itself */
	if (strcmp(st->status, "completed") == 0 || strcmp(st->status, "cancelled") == 0)
		st->output_ref = st->id;
	st->total = count_of(stats, "requestCount");
	st->completed = count_of(stats, "successfulRequestCount");
	st->failed = count_of(stats, "failedRequestCount");
	st->created = llmgw_batch_rfc3339(json_string_value(json_object_get(batch, "createTime")));
	if (display && strncmp(display, DISPLAY_PREFIX, strlen(DISPLAY_PREFIX)) == 0)
		st->marker = pstrdup(display + strlen(DISPLAY_PREFIX));
	return true;
}

/* The inlined responses of a finished operation, wherever they are */
static json_t *
inlined(json_t *op)
{
	json_t	   *places[] = {
		json_object_get(op, "response"),
		json_object_get(json_object_get(op, "metadata"), "output"),
		json_object_get(op, "output")
	};

	for (int i = 0; i < lengthof(places); i++)
	{
		json_t	   *r = json_object_get(places[i], "inlinedResponses");

		if (json_is_array(r))
			return r;
		if (json_is_array(json_object_get(r, "inlinedResponses")))
			return json_object_get(r, "inlinedResponses");
	}
	return NULL;
}

/* google.rpc.Code: its name and the HTTP status that carries it */
static void
rpc_code(int code, const char **name, long *http)
{
	static const struct
	{
		int			code;
		const char *name;
		long		http;
	}			codes[] = {
		{1, "CANCELLED", 499}, {3, "INVALID_ARGUMENT", 400}, {4, "DEADLINE_EXCEEDED", 504},
		{5, "NOT_FOUND", 404}, {7, "PERMISSION_DENIED", 403}, {8, "RESOURCE_EXHAUSTED", 429},
		{9, "FAILED_PRECONDITION", 400}, {13, "INTERNAL", 500}, {14, "UNAVAILABLE", 503},
		{16, "UNAUTHENTICATED", 401}
	};

	*name = NULL;
	*http = 500;
	for (int i = 0; i < lengthof(codes); i++)
		if (codes[i].code == code)
		{
			*name = codes[i].name;
			*http = codes[i].http;
		}
}

/*
 * One inlined response: {"metadata": {"key"}, "response"} or
 * {"metadata": {"key"}, "error": google.rpc.Status}.  DEADLINE_EXCEEDED is
 * an item that expired, CANCELLED one that was cancelled.
 */
static bool
result_item(json_t *item, const char *marker, LlmgwBatchEmit emit, void *arg)
{
	char	   *id = llmgw_batch_wire_id(marker,
										 json_string_value(json_object_get(json_object_get(item, "metadata"), "key")));
	json_t	   *response = json_object_get(item, "response");
	json_t	   *error = json_object_get(item, "error");
	LlmgwOutcome out;

	if (id == NULL)
		return false;
	llmgw_outcome_init(&out);
	if (json_is_object(error))
	{
		const char *name = json_string_value(json_object_get(error, "status"));
		long		http;
		const char *from_code;
		json_t	   *envelope;
		char	   *text;

		rpc_code((int) json_integer_value(json_object_get(error, "code")), &from_code, &http);
		if (name == NULL)
			name = from_code;
		if (name && strcmp(name, "DEADLINE_EXCEEDED") == 0)
		{
			emit(arg, id, LLMGW_BATCH_ITEM_EXPIRED, &out);
			return true;
		}
		if (name && strcmp(name, "CANCELLED") == 0)
		{
			emit(arg, id, LLMGW_BATCH_ITEM_CANCELLED, &out);
			return true;
		}
		envelope = json_pack("{s:{s:I, s:O?, s:s?, s:O?}}", "error", "code", (json_int_t) http,
							 "message", json_object_get(error, "message"), "status", name,
							 "details", json_object_get(error, "details"));
		text = llmgw_json_dump(envelope);
		json_decref(envelope);
		llmgw_provider_gemini.parse_chat(text, strlen(text), http, &out);
	}
	else if (json_is_object(response))
	{
		char	   *text = llmgw_json_dump(response);

		llmgw_provider_gemini.parse_chat(text, strlen(text), 200, &out);
	}
	else
	{
		llmgw_json_set_error(&out, LLMGW_ERR_MALFORMED, NULL, NULL);
		out.provider_message = pstrdup("the provider's result for this request could not be read");
	}
	emit(arg, id, LLMGW_BATCH_ITEM_ANSWERED, &out);
	return true;
}

/* The answers of a finished operation */
static int
gemini_results(const char *buf, size_t len, const char *marker, LlmgwBatchEmit emit, void *arg)
{
	json_t	   *root = llmgw_json_load(buf, len, NULL);
	json_t	   *items = inlined(root);
	size_t		i;
	json_t	   *v;
	int			foreign = 0;

	json_array_foreach(items, i, v)
	{
		if (!result_item(v, marker, emit, arg))
			foreign++;
	}
	json_decref(root);
	return foreign;
}

const LlmgwBatchWire llmgw_batch_gemini = {
	"Gemini batch mode", false, false, GEMINI_MAX_REQUESTS, GEMINI_MAX_BYTES,
	gemini_url, gemini_headers, gemini_begin, gemini_item, gemini_end, NULL,
	read_batch, "operations", "batches", gemini_results
};
