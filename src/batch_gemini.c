/*-------------------------------------------------------------------------
 *
 * batch_gemini.c
 *		Gemini batch mode: the requests go inline in the create
 *		(POST models/{model}:batchGenerateContent, {"batch": {display_name,
 *		input_config: {requests: {requests: [{request, metadata: {key}}]}}}},
 *		each request built by the generateContent wire format; beyond 20 MB
 *		of requests, a JSONL file of {key, request} uploaded to
 *		{base}/upload/v1beta/files by the resumable upload protocol (a
 *		start, then the file from an offset; a query after a send cut
 *		short), named in input_config.file_name), which
 *		answers a long-running operation batches/{id}; GET batches/{id}
 *		(BATCH_STATE_* or JOB_STATE_*), POST batches/{id}:cancel, and the
 *		answers, each with its key and a response or an error, each
 *		response read by the generateContent parser: inline in the finished
 *		operation (inlinedResponses), or, when Gemini writes them to a file
 *		(responsesFile: the answers too large to inline), as JSONL from the
 *		Files API's download, {base}/download/v1beta/files/{id}:download
 *		?alt=media, on the base URL's host.
 *
 * Embeddings batches go the same way from their own create,
 * POST models/{model}:asyncBatchEmbedContent: each request an
 * EmbedContentRequest (the one request of the batchEmbedContents body
 * the embeddings wire format builds), each answer an EmbedContentResponse
 * ({"embedding": {"values"}}), read by the embeddings parser.
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

/*
 * Inline requests: a create body under 20 MB; beyond, a file of JSONL
 * through the Files API (at most 2 GB); requests as Anthropic's
 */
#define GEMINI_MAX_REQUESTS 100000
#define GEMINI_INLINE_BYTES ((size_t) 20 * 1000 * 1000)
#define GEMINI_MAX_BYTES ((size_t) 2000 * 1000 * 1000)
#define DISPLAY_PREFIX "llmgw-"

/*
 * A URL of the Files API's media: the base URL with what (upload or
 * download) before its last segment (the version), then tail, e.g.
 * https://generativelanguage.googleapis.com/download/v1beta/files/{id}:download?alt=media
 * or .../upload/v1beta/files: on the base URL's host
 */
static char *
media_url(const char *base, const char *what, const char *tail)
{
	size_t		len = strlen(base);
	size_t		last;

	while (len > 0 && base[len - 1] == '/')
		len--;
	last = len;
	while (last > 0 && base[last - 1] != '/')
		last--;
	return psprintf("%.*s%s/%.*s/%s", (int) last, base, what, (int) (len - last), base + last,
					tail);
}

/* Base URL including the version, e.g. .../v1beta; ids are batches/{id} */
static char *
gemini_url(const LlmgwRoute *route, LlmgwBatchOp op, const char *id)
{
	switch (op)
	{
		case LLMGW_BATCH_UPLOAD:
			return media_url(route->base_url, "upload", "files");
		case LLMGW_BATCH_CREATE:
			return llmgw_url_join(route->base_url,
								  psprintf("models/%s:batchGenerateContent", route->upstream_model));
		case LLMGW_BATCH_LIST:
			return llmgw_url_join(route->base_url, "batches?pageSize=" LLMGW_BATCH_LIST_LIMIT_TEXT);
		case LLMGW_BATCH_RESULTS:
			if (strncmp(id, "files/", 6) == 0)
				return media_url(route->base_url, "download", psprintf("%s:download?alt=media", id));
			return llmgw_url_join(route->base_url, psprintf("batches/%s", id));
		case LLMGW_BATCH_GET:
			return llmgw_url_join(route->base_url, psprintf("batches/%s", id));
		case LLMGW_BATCH_CANCEL:
			return llmgw_url_join(route->base_url, psprintf("batches/%s:cancel", id));
	}
	return NULL;
}

/* The generateContent headers (an upload's are gemini_session_headers') */
static struct curl_slist *
gemini_headers(const LlmgwRoute *route, bool json)
{
	return llmgw_provider_gemini.headers(route, route->secret);
}

/* Append lines to a list of headers (NULL when curl could not) */
static struct curl_slist *
append_headers(struct curl_slist *h, int n, const char *const *lines)
{
	for (int i = 0; i < n; i++)
	{
		struct curl_slist *grown = curl_slist_append(h, lines[i]);

		if (grown == NULL)
		{
			curl_slist_free_all(h);
			return NULL;
		}
		h = grown;
	}
	return h;
}

/*
 * Headers of a request of the resumable upload: a start announces the
 * file (its size, JSONL), a send says where its bytes start and finalizes,
 * a query asks; each carries the key (the session's URL is on the base
 * URL's host)
 */
static struct curl_slist *
gemini_session_headers(const LlmgwRoute *route, LlmgwUploadCommand cmd, size_t offset,
					   size_t size)
{
	char		length[80];
	char		from[80];
	struct curl_slist *h = NULL;

	snprintf(length, sizeof(length), "X-Goog-Upload-Header-Content-Length: %zu", size);
	snprintf(from, sizeof(from), "X-Goog-Upload-Offset: %zu", offset);
	switch (cmd)
	{
		case LLMGW_UPLOAD_START:
			{
				const char *const lines[] = {"X-Goog-Upload-Protocol: resumable",
					"X-Goog-Upload-Command: start", length,
					"X-Goog-Upload-Header-Content-Type: application/jsonl",
				"Content-Type: application/json"};

				h = append_headers(NULL, lengthof(lines), lines);
			}
			break;
		case LLMGW_UPLOAD_SEND:
			{
				const char *const lines[] = {"X-Goog-Upload-Command: upload, finalize", from,
				"Content-Type: application/jsonl", "Expect:"};

				h = append_headers(NULL, lengthof(lines), lines);
			}
			break;
		case LLMGW_UPLOAD_QUERY:
			{
				const char *const lines[] = {"X-Goog-Upload-Command: query"};

				h = append_headers(NULL, lengthof(lines), lines);
			}
			break;
	}
	return h ? llmgw_header_secret(h, "x-goog-api-key", "", route->secret) : NULL;
}

/* The body of a start: the file's display name, the batch's */
static char *
gemini_session_start_body(const char *marker)
{
	return psprintf("{\"file\":{\"display_name\":\"" DISPLAY_PREFIX "%s\"}}", marker);
}

/* A byte count: digits only (at most 18 of them); false if it is not one */
static bool
byte_count(const char *s, size_t *n)
{
	size_t		len = s ? strlen(s) : 0;

	if (len == 0 || len > 18 || strspn(s, "0123456789") != len)
		return false;
	*n = (size_t) strtoull(s, NULL, 10);
	return true;
}

/* The response headers of a start's or a query's answer */
static const char *const session_answer_headers[] = {
	"X-Goog-Upload-URL", "X-Goog-Upload-Status", "X-Goog-Upload-Size-Received", NULL
};

/*
 * A start's answer: the session URL (X-Goog-Upload-URL), refused unless it
 * is on the base URL's host (the key goes there); a query's: the status
 * (X-Goog-Upload-Status, active or final) and, active, the bytes received
 * (X-Goog-Upload-Size-Received, digits, at most the file's size).  The
 * URL is never quoted in an error: it is the session's credential.
 */
static void
gemini_session_read(const char *base_url, LlmgwUploadCommand cmd, char *const *values,
					size_t size, LlmgwUploadAnswer *a)
{
	const char *url = values[0];
	const char *status = values[1];

	memset(a, 0, sizeof(*a));
	if (cmd == LLMGW_UPLOAD_START)
	{
		if (url == NULL || *url == '\0')
			a->error = "the start of the upload named no session (no X-Goog-Upload-URL header)";
		else if (strlen(url) > 4096 || !llmgw_batch_same_origin(base_url, url))
			a->error = "the upload's session URL (X-Goog-Upload-URL) is not on the host of the provider's base URL: refused";
		else
			a->session_url = pstrdup(url);
	}
	else if (status && strcmp(status, "final") == 0)
		a->final = true;
	else if (status == NULL || strcmp(status, "active") != 0)
		a->error = "the upload session's answer to a query has no X-Goog-Upload-Status active or final";
	else if (!byte_count(values[2], &a->received) || a->received > size)
		a->error = psprintf("the upload session's answer to a query has no X-Goog-Upload-Size-Received of at most the file's %zu bytes",
							size);
}

static const LlmgwUploadSession gemini_session = {
	session_answer_headers, gemini_session_headers, gemini_session_start_body,
	gemini_session_read
};

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

/* A line of an uploaded file: {"key", "request"} */
static void
gemini_file_item(StringInfo buf, int n, const char *marker, const char *custom_id,
				 const char *body, size_t len)
{
	appendStringInfo(buf, "{\"key\":\"%s\",\"request\":", custom_id);
	appendBinaryStringInfo(buf, body, (int) len);
	appendStringInfoString(buf, "}\n");
}

typedef void (*ItemFn) (StringInfo buf, int n, const char *marker, const char *custom_id,
						const char *body, size_t len);

/*
 * An embeddings item as fn writes a request: its EmbedContentRequest, the
 * one request of the batchEmbedContents body built for it
 */
static void
embed_item_as(ItemFn fn, StringInfo buf, int n, const char *marker, const char *custom_id,
			  const char *body, size_t len)
{
	json_t	   *root = llmgw_json_load(body, len, NULL);
	json_t	   *requests = json_object_get(root, "requests");
	/* (never "{}": the body is built by gemini.c for one input) */
	char	   *one = json_array_size(requests) == 1 && json_is_object(json_array_get(requests, 0)) ?
		llmgw_json_dump(json_array_get(requests, 0)) : pstrdup("{}");

	json_decref(root);
	fn(buf, n, marker, custom_id, one, strlen(one));
	pfree(one);
}

/* An embeddings item inline, as gemini_item */
static void
gemini_embed_item(StringInfo buf, int n, const char *marker, const char *custom_id,
				  const char *body, size_t len)
{
	embed_item_as(gemini_item, buf, n, marker, custom_id, body, len);
}

/* An embeddings item as a line of an uploaded file, as gemini_file_item */
static void
gemini_embed_file_item(StringInfo buf, int n, const char *marker, const char *custom_id,
					   const char *body, size_t len)
{
	embed_item_as(gemini_file_item, buf, n, marker, custom_id, body, len);
}

/* The create of an embeddings batch */
static char *
gemini_embed_create_url(const LlmgwRoute *route)
{
	return llmgw_url_join(route->base_url,
						  psprintf("models/%s:asyncBatchEmbedContent", route->upstream_model));
}

/* The create of a batch whose requests are an uploaded file (files/{id}) */
static char *
gemini_create_body(const LlmgwRoute *route, const char *marker, const char *input_file)
{
	return psprintf("{\"batch\":{\"display_name\":\"" DISPLAY_PREFIX "%s\","
					"\"input_config\":{\"file_name\":\"%s\"}}}", marker, input_file);
}

/* The name of an uploaded file ({"file": {"name": "files/{id}"}}), or NULL */
static char *
gemini_uploaded(json_t *answer)
{
	const char *name = json_string_value(json_object_get(json_object_get(answer, "file"), "name"));

	return name && strncmp(name, "files/", 6) == 0 && llmgw_batch_safe_ref(name) ? pstrdup(name) : NULL;
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

/* Where the finished operation's answers are, wherever it says it */
static json_t *
output_of(json_t *op, int i)
{
	switch (i)
	{
		case 0:
			return json_object_get(op, "response");
		case 1:
			return json_object_get(json_object_get(op, "metadata"), "output");
		case 2:
			return json_object_get(op, "output");
	}
	return NULL;
}

/* The file of a finished operation's answers (responsesFile), or NULL */
static const char *
responses_file(json_t *op)
{
	for (int i = 0; i < 3; i++)
	{
		const char *file = json_string_value(json_object_get(output_of(op, i), "responsesFile"));

		if (file)
			return file;
	}
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
	/* the answers are in the operation itself, or in a file */
	if (strcmp(st->status, "completed") == 0 || strcmp(st->status, "cancelled") == 0)
	{
		const char *file = responses_file(op);

		st->output_ref = file && llmgw_batch_safe_ref(file) && strncmp(file, "files/", 6) == 0 ?
			pstrdup(file) : st->id;
	}
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
	for (int i = 0; i < 3; i++)
	{
		json_t	   *r = json_object_get(output_of(op, i), "inlinedResponses");

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
 * One answer: {"metadata": {"key"}, "response"} or {"metadata": {"key"},
 * "error": google.rpc.Status} inline, {"key", "response" or "error"} in a
 * file.  DEADLINE_EXCEEDED is an item that expired, CANCELLED one that was
 * cancelled.
 */
static bool
result_item(json_t *item, const char *marker, LlmgwBatchEmit emit, void *arg)
{
	json_t	   *key = json_object_get(item, "key");
	json_t	   *response = json_object_get(item, "response");
	json_t	   *error = json_object_get(item, "error");
	char	   *id;
	LlmgwOutcome out;

	if (!json_is_string(key))
		key = json_object_get(json_object_get(item, "metadata"), "key");
	id = llmgw_batch_wire_id(marker, json_string_value(key));

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

		/* an EmbedContentResponse, or a GenerateContentResponse */
		if (json_object_get(response, "embedding") != NULL)
			llmgw_provider_gemini.parse_embed(text, strlen(text), 200, &out);
		else
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

/* Are the answers at ref in the operation (not a file of JSONL)? */
static bool
gemini_whole(const char *ref)
{
	return ref == NULL || strncmp(ref, "files/", 6) != 0;
}

/* A line of a responses file: 1 if it is not an answer of ours */
static int
gemini_results_line(const char *buf, size_t len, const char *marker, LlmgwBatchEmit emit,
					void *arg)
{
	json_t	   *line = llmgw_json_load(buf, len, NULL);
	int			foreign = 0;
	size_t		i;

	for (i = 0; i < len; i++)
		if (buf[i] != ' ' && buf[i] != '\t' && buf[i] != '\r')
			break;
	if (i < len && !result_item(line, marker, emit, arg))
		foreign = 1;
	json_decref(line);
	return foreign;
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
	gemini_url, gemini_headers, gemini_begin, gemini_item, gemini_end, gemini_create_body,
	read_batch, "operations", "batches", gemini_results_line, gemini_whole, gemini_results,
	gemini_embed_item, gemini_create_body, GEMINI_INLINE_BYTES, gemini_file_item,
	gemini_uploaded, gemini_embed_create_url, gemini_embed_file_item, &gemini_session
};
