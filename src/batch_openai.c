/*-------------------------------------------------------------------------
 *
 * batch_openai.c
 *		The OpenAI Batch API (kinds openai, openai_compatible) and Azure
 *		OpenAI's global batch (kind azure), which differs only in its URLs
 *		(/openai/files, /openai/batches with the api-version), its api-key
 *		header and the endpoint its lines name (/chat/completions; the
 *		model of each line is the deployment).
 *
 *	  POST /files (multipart JSONL, purpose=batch), POST /batches with the
 *	  marker in metadata.llmgw_batch, GET /batches/{id}, POST
 *	  /batches/{id}/cancel, GET /files/{id}/content, GET /batches?limit=100
 *	  (a batch is ours if it carries the marker or our input file).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "batch_wire.h"
#include "jsonutil.h"
#include "provider.h"

/* Limits of a batch: 50,000 requests, a 200 MB input file */
#define OPENAI_MAX_REQUESTS 50000
#define OPENAI_MAX_BYTES ((size_t) 200 * 1024 * 1024)

static char *
openai_url(const LlmgwRoute *route, LlmgwBatchOp op, const char *id)
{
	switch (op)
	{
		case LLMGW_BATCH_UPLOAD:
			return llmgw_url_join(route->base_url, "files");
		case LLMGW_BATCH_CREATE:
			return llmgw_url_join(route->base_url, "batches");
		case LLMGW_BATCH_LIST:
			return llmgw_url_join(route->base_url, "batches?limit=" LLMGW_BATCH_LIST_LIMIT_TEXT);
		case LLMGW_BATCH_GET:
			return llmgw_url_join(route->base_url, psprintf("batches/%s", id));
		case LLMGW_BATCH_CANCEL:
			return llmgw_url_join(route->base_url, psprintf("batches/%s/cancel", id));
		case LLMGW_BATCH_RESULTS:
			return llmgw_url_join(route->base_url, psprintf("files/%s/content", id));
	}
	return NULL;
}

/*
 * Azure: {endpoint}/openai/{path}?api-version=... with an api_version, the
 * v1 surface ({endpoint}/openai/v1/{path}) without
 */
static char *
azure_url(const LlmgwRoute *route, LlmgwBatchOp op, const char *id)
{
	const char *path = NULL;
	const char *query = "";

	switch (op)
	{
		case LLMGW_BATCH_UPLOAD:
			path = "files";
			break;
		case LLMGW_BATCH_CREATE:
			path = "batches";
			break;
		case LLMGW_BATCH_LIST:
			path = "batches";
			query = "limit=" LLMGW_BATCH_LIST_LIMIT_TEXT;
			break;
		case LLMGW_BATCH_GET:
			path = psprintf("batches/%s", id);
			break;
		case LLMGW_BATCH_CANCEL:
			path = psprintf("batches/%s/cancel", id);
			break;
		case LLMGW_BATCH_RESULTS:
			path = psprintf("files/%s/content", id);
			break;
	}
	if (route->api_version == NULL)
		return llmgw_url_join(route->base_url,
							  psprintf("openai/v1/%s%s%s", path, *query ? "?" : "", query));
	return llmgw_url_join(route->base_url,
						  psprintf("openai/%s?api-version=%s%s%s", path, route->api_version,
								   *query ? "&" : "", query));
}

static struct curl_slist *
openai_headers(const LlmgwRoute *route, bool json)
{
	struct curl_slist *h = json ? llmgw_json_headers() : curl_slist_append(NULL, "Expect:");

	return llmgw_header_secret(h, "Authorization", "Bearer ", route->secret);
}

static struct curl_slist *
azure_headers(const LlmgwRoute *route, bool json)
{
	struct curl_slist *h = json ? llmgw_json_headers() : curl_slist_append(NULL, "Expect:");

	return llmgw_header_secret(h, "api-key", "", route->secret);
}

static void
jsonl_begin(StringInfo buf, const LlmgwRoute *route, const char *marker)
{
}

/* One JSONL line: {"custom_id", "method", "url", "body"} */
static void
jsonl_item(StringInfo buf, const char *url, const char *custom_id, const char *body, size_t len)
{
	json_t	   *id = json_string(custom_id);

	appendStringInfoString(buf, "{\"custom_id\":");
	if (id == NULL || !llmgw_json_write(buf, id))
		appendStringInfoString(buf, "null");
	appendStringInfo(buf, ",\"method\":\"POST\",\"url\":\"%s\",\"body\":", url);
	appendBinaryStringInfo(buf, body, (int) len);
	appendStringInfoString(buf, "}\n");
	json_decref(id);
}

static void
openai_item(StringInfo buf, int n, const char *marker, const char *custom_id,
			const char *body, size_t len)
{
	jsonl_item(buf, "/v1/chat/completions", custom_id, body, len);
}

static void
azure_item(StringInfo buf, int n, const char *marker, const char *custom_id,
		   const char *body, size_t len)
{
	jsonl_item(buf, "/chat/completions", custom_id, body, len);
}

static void
openai_embed_item(StringInfo buf, int n, const char *marker, const char *custom_id,
				  const char *body, size_t len)
{
	jsonl_item(buf, "/v1/embeddings", custom_id, body, len);
}

static void
azure_embed_item(StringInfo buf, int n, const char *marker, const char *custom_id,
				 const char *body, size_t len)
{
	jsonl_item(buf, "/embeddings", custom_id, body, len);
}

static void
jsonl_end(StringInfo buf)
{
}

static char *
create_body(const char *endpoint, const char *marker, const char *input_file)
{
	return psprintf("{\"input_file_id\":\"%s\",\"endpoint\":\"%s\",\"completion_window\":\"24h\","
					"\"metadata\":{\"llmgw_batch\":\"%s\"}}", input_file, endpoint, marker);
}

static char *
openai_create_body(const LlmgwRoute *route, const char *marker, const char *input_file)
{
	return create_body("/v1/chat/completions", marker, input_file);
}

static char *
azure_create_body(const LlmgwRoute *route, const char *marker, const char *input_file)
{
	return create_body("/chat/completions", marker, input_file);
}

static char *
openai_embed_create_body(const LlmgwRoute *route, const char *marker, const char *input_file)
{
	return create_body("/v1/embeddings", marker, input_file);
}

static char *
azure_embed_create_body(const LlmgwRoute *route, const char *marker, const char *input_file)
{
	return create_body("/embeddings", marker, input_file);
}

/* Read a batch object; false if it is not one */
static bool
read_batch(json_t *obj, LlmgwBatchStatus *st)
{
	const char *status = json_string_value(json_object_get(obj, "status"));
	json_t	   *counts = json_object_get(obj, "request_counts");
	const char *out = json_string_value(json_object_get(obj, "output_file_id"));
	const char *err = json_string_value(json_object_get(obj, "error_file_id"));
	json_t	   *created = json_object_get(obj, "created_at");

	llmgw_batch_status_init(st);
	if (!llmgw_batch_safe_id(json_string_value(json_object_get(obj, "id"))) || status == NULL ||
		(out && !llmgw_batch_safe_id(out)) || (err && !llmgw_batch_safe_id(err)))
		return false;
	if (strcmp(status, "validating") != 0 && strcmp(status, "in_progress") != 0 &&
		strcmp(status, "finalizing") != 0 && strcmp(status, "cancelling") != 0 &&
		strcmp(status, "failed") != 0 && strcmp(status, "completed") != 0 &&
		strcmp(status, "expired") != 0 && strcmp(status, "cancelled") != 0)
		return false;
	st->id = llmgw_json_string(obj, "id");
	st->status = pstrdup(status);
	st->output_ref = out ? pstrdup(out) : NULL;
	st->error_ref = err ? pstrdup(err) : NULL;
	st->completed = llmgw_json_count(counts, "completed");
	st->failed = llmgw_json_count(counts, "failed");
	st->total = llmgw_json_count(counts, "total");
	st->created = json_is_integer(created) ? (int64) json_integer_value(created) : 0;
	st->marker = llmgw_json_string(json_object_get(obj, "metadata"), "llmgw_batch");
	st->input_file = llmgw_json_string(obj, "input_file_id");
	if (strcmp(status, "failed") == 0)
	{
		json_t	   *e = json_array_get(json_object_get(json_object_get(obj, "errors"), "data"), 0);

		st->error = llmgw_json_string(e, "message");
	}
	return true;
}

const LlmgwBatchWire llmgw_batch_openai = {
	"the OpenAI Batch API", true, false, OPENAI_MAX_REQUESTS, OPENAI_MAX_BYTES,
	openai_url, openai_headers, jsonl_begin, openai_item, jsonl_end, openai_create_body,
	read_batch, "data", NULL, NULL, NULL, NULL, openai_embed_item, openai_embed_create_body
};

const LlmgwBatchWire llmgw_batch_azure = {
	"Azure OpenAI global batch", true, false, OPENAI_MAX_REQUESTS, OPENAI_MAX_BYTES,
	azure_url, azure_headers, jsonl_begin, azure_item, jsonl_end, azure_create_body,
	read_batch, "data", NULL, NULL, NULL, NULL, azure_embed_item, azure_embed_create_body
};
