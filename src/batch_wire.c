/*-------------------------------------------------------------------------
 *
 * batch_wire.c
 *		The table of batch APIs, and what they share: ids fit for a URL,
 *		custom_ids that carry the batch's marker, and the normalised result
 *		line (an OpenAI Batch API output line) that llmgw.batch_ingest
 *		writes, built from a provider's parsed answer.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <time.h>

#include "batch_wire.h"

/* The batch API of a provider kind, or NULL */
const LlmgwBatchWire *
llmgw_batch_wire(const char *kind)
{
	if (strcmp(kind, "openai") == 0 || strcmp(kind, "openai_compatible") == 0)
		return &llmgw_batch_openai;
	if (strcmp(kind, "azure") == 0)
		return &llmgw_batch_azure;
	if (strcmp(kind, "anthropic") == 0)
		return &llmgw_batch_anthropic;
	if (strcmp(kind, "gemini") == 0)
		return &llmgw_batch_gemini;
	return NULL;
}

/* A batch object (a create's, a poll's, a cancel's answer); false if not one */
bool
llmgw_batch_parse_status(const LlmgwBatchWire *w, const char *buf, size_t len,
						 LlmgwBatchStatus *st)
{
	json_t	   *root = llmgw_json_load(buf, len, NULL);
	bool		ok = w->read_batch(root, st);

	json_decref(root);
	return ok;
}

/*
 * The batches of a list answer that can be read (palloc'd array, newest
 * first, *n of them); *listed: how many the answer listed, read or not
 */
LlmgwBatchStatus *
llmgw_batch_parse_list(const LlmgwBatchWire *w, const char *buf, size_t len, int *n,
					   int *listed)
{
	json_t	   *root = llmgw_json_load(buf, len, NULL);
	json_t	   *data = json_object_get(root, w->list_key);
	LlmgwBatchStatus *list;
	size_t		i;
	json_t	   *v;

	if (!json_is_array(data) && w->list_key_too)
		data = json_object_get(root, w->list_key_too);
	list = palloc0(sizeof(LlmgwBatchStatus) * (json_array_size(data) + 1));
	*n = 0;
	*listed = (int) Min(json_array_size(data), INT_MAX);
	json_array_foreach(data, i, v)
	{
		if (w->read_batch(v, &list[*n]))
			(*n)++;
	}
	json_decref(root);
	return list;
}

void
llmgw_batch_status_init(LlmgwBatchStatus *st)
{
	memset(st, 0, sizeof(*st));
	st->completed = st->failed = st->total = -1;
}

/* A URL's part (lower case, palloc'd), or NULL when it has none */
static char *
url_part(CURLU *u, CURLUPart what, unsigned int flags)
{
	char	   *part = NULL;
	char	   *copy;

	if (curl_url_get(u, what, &part, flags) != CURLUE_OK || part == NULL)
		return NULL;
	copy = pstrdup(part);
	curl_free(part);
	for (char *p = copy; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	return copy;
}

/*
 * Is url (an address a provider named, e.g. an upload session's) an
 * http(s) URL of the same scheme, host and port as base_url, without user
 * or password?  Where the provider's key may go, and nowhere else.
 */
bool
llmgw_batch_same_origin(const char *base_url, const char *url)
{
	CURLU	   *base = curl_url();
	CURLU	   *other = curl_url();
	bool		same = false;

	if (base && other && url &&
		curl_url_set(base, CURLUPART_URL, base_url, 0) == CURLUE_OK &&
		curl_url_set(other, CURLUPART_URL, url, 0) == CURLUE_OK)
	{
		char	   *scheme = url_part(other, CURLUPART_SCHEME, 0);
		char	   *user = url_part(other, CURLUPART_USER, 0);
		char	   *password = url_part(other, CURLUPART_PASSWORD, 0);

		same = scheme && (strcmp(scheme, "https") == 0 || strcmp(scheme, "http") == 0) &&
			user == NULL && password == NULL;
		for (int i = 0; same && i < 3; i++)
		{
			static const CURLUPart parts[] = {CURLUPART_SCHEME, CURLUPART_HOST, CURLUPART_PORT};
			char	   *a = url_part(base, parts[i], CURLU_DEFAULT_PORT);
			char	   *b = url_part(other, parts[i], CURLU_DEFAULT_PORT);

			same = a && b && strcmp(a, b) == 0;
		}
	}
	curl_url_cleanup(base);
	curl_url_cleanup(other);
	return same;
}

/* A provider id fit to go into a URL (letters, digits, '-', '_', '.') */
bool
llmgw_batch_safe_id(const char *s)
{
	if (s == NULL || *s == '\0' || strlen(s) >= 128)
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char) *s) && *s != '-' && *s != '_' && *s != '.')
			return false;
	return true;
}

/* A results reference: a safe id, or files/ and a safe id (Gemini's files) */
bool
llmgw_batch_safe_ref(const char *s)
{
	return llmgw_batch_safe_id(s) ||
		(s != NULL && strncmp(s, "files/", 6) == 0 && llmgw_batch_safe_id(s + 6));
}

/*
 * The custom_id an item is sent with: the batch's marker, '-', its own
 * custom_id (at most 64 characters of [A-Za-z0-9_-], as Anthropic wants)
 */
char *
llmgw_batch_custom_id(const char *marker, const char *wire_id)
{
	return psprintf("%s-%s", marker, wire_id);
}

/* The item's own custom_id from the one sent, or NULL if not of this batch */
char *
llmgw_batch_wire_id(const char *marker, const char *custom_id)
{
	size_t		n = strlen(marker);

	if (custom_id == NULL || strncmp(custom_id, marker, n) != 0 || custom_id[n] != '-' ||
		custom_id[n + 1] == '\0')
		return NULL;
	return pstrdup(custom_id + n + 1);
}

/* Unix seconds of an RFC 3339 time ("2024-08-20T18:37:24.1Z"); 0 if unreadable */
int64
llmgw_batch_rfc3339(const char *s)
{
	struct tm	tm;
	int			n = 0;

	if (s == NULL)
		return 0;
	memset(&tm, 0, sizeof(tm));
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
			   &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 || n == 0)
		return 0;
	if (tm.tm_year < 1970 || tm.tm_year > 9999 || tm.tm_mon < 1 || tm.tm_mon > 12 ||
		tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 ||
		tm.tm_sec > 60)
		return 0;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	/* offsets other than Z are off by hours at most: the uses allow for it */
	return (int64) timegm(&tm);
}

/* A count into a usage object, left out when unknown */
static void
set_count(json_t *obj, const char *key, int64 n)
{
	if (n != LLMGW_TOKENS_UNKNOWN)
		json_object_set_new(obj, key, json_integer((json_int_t) n));
}

/* OpenAI's tool_calls from llmgw's [{id, name, arguments}] */
static json_t *
openai_tool_calls(const char *tool_calls)
{
	json_t	   *calls = json_loads(tool_calls, 0, NULL);
	json_t	   *out = json_array();
	size_t		i;
	json_t	   *c;

	json_array_foreach(calls, i, c)
	{
		json_array_append_new(out, json_pack("{s:O?, s:s, s:{s:O?, s:O?}}",
											 "id", json_object_get(c, "id"), "type", "function",
											 "function", "name", json_object_get(c, "name"),
											 "arguments", json_object_get(c, "arguments")));
	}
	json_decref(calls);
	return out;
}

/* The HTTP status llmgw.batch_ingest reads a failed item's class from */
static int
class_status(LlmgwErrorClass cls)
{
	switch (cls)
	{
		case LLMGW_ERR_RATE_LIMIT:
			return 429;
		case LLMGW_ERR_AUTH:
			return 401;
		case LLMGW_ERR_MODEL_NOT_FOUND:
			return 404;
		case LLMGW_ERR_SERVER:
			return 500;
		case LLMGW_ERR_OVERLOADED:
			return 503;
		case LLMGW_ERR_MALFORMED:
			return 0;
		default:
			return 400;
	}
}

/*
 * Append the normalised result line of an item: an OpenAI Batch API output
 * line, the answer as a chat.completion with OpenAI's usage fields (the
 * buckets of the provider's parser), an embedding as an embeddings list
 * (one vector, its input tokens when told), a failure as an error body whose
 * status and code carry its class, an expiry or a cancellation as OpenAI's
 * batch_expired and batch_cancelled
 */
void
llmgw_batch_line(StringInfo buf, const char *custom_id, LlmgwBatchItemEnd end,
				 const LlmgwOutcome *out)
{
	json_t	   *line = json_pack("{s:s}", "custom_id", custom_id);
	int			start;

	if (end != LLMGW_BATCH_ITEM_ANSWERED)
	{
		bool		expired = end == LLMGW_BATCH_ITEM_EXPIRED;

		json_object_set_new(line, "response", json_null());
		json_object_set_new(line, "error",
							json_pack("{s:s, s:s}", "code", expired ? "batch_expired" : "batch_cancelled",
									  "message", expired ? "the batch expired before this request ran" :
									  "the batch was cancelled before this request ran"));
	}
	else if (out->status == LLMGW_STATUS_OK && out->embeddings != NULL)
	{
		/* the vector line {x,y,...} as a JSON array */
		size_t		len = strcspn(out->embeddings, "\n");
		json_t	   *vector = NULL;
		json_t	   *usage = json_pack("{}");

		if (out->embedding_count == 1 && len >= 2 && out->embeddings[len - 1] == '}')
		{
			char	   *array = pnstrdup(out->embeddings, len);

			array[0] = '[';
			array[len - 1] = ']';
			vector = llmgw_json_load(array, len, NULL);
			pfree(array);
		}
		set_count(usage, "prompt_tokens", out->tokens[LLMGW_TOKENS_INPUT]);
		if (json_is_array(vector))
			json_object_set_new(line, "response",
								json_pack("{s:i, s:{s:s, s:[{s:s, s:i, s:o}], s:o}}",
										  "status_code", 200, "body", "object", "list", "data",
										  "object", "embedding", "index", 0, "embedding", vector,
										  "usage", usage));
		else
		{
			json_decref(vector);
			json_decref(usage);
			json_object_set_new(line, "response",
								json_pack("{s:{s:{s:s}}}", "body", "error", "message",
										  "the provider's embedding could not be read"));
		}
	}
	else if (out->status == LLMGW_STATUS_OK)
	{
		json_t	   *message = json_pack("{s:s, s:s}", "role", "assistant", "content",
										out->text ? out->text : "");
		json_t	   *usage = json_pack("{}");
		json_t	   *prompt = json_pack("{}");
		json_t	   *completion = json_pack("{}");

		if (out->tool_calls)
			json_object_set_new(message, "tool_calls", openai_tool_calls(out->tool_calls));
		set_count(usage, "prompt_tokens", out->tokens[LLMGW_TOKENS_INPUT]);
		set_count(usage, "completion_tokens", out->tokens[LLMGW_TOKENS_OUTPUT]);
		set_count(prompt, "cached_tokens", out->tokens[LLMGW_TOKENS_CACHED_INPUT]);
		set_count(prompt, "cache_write_tokens", out->tokens[LLMGW_TOKENS_CACHE_WRITE]);
		set_count(completion, "reasoning_tokens", out->tokens[LLMGW_TOKENS_REASONING]);
		json_object_set_new(usage, "prompt_tokens_details", prompt);
		json_object_set_new(usage, "completion_tokens_details", completion);
		json_object_set_new(line, "response",
							json_pack("{s:i, s:{s:s, s:[{s:i, s:o, s:s?}], s:o}}",
									  "status_code", 200, "body", "object", "chat.completion",
									  "choices", "index", 0, "message", message,
									  "finish_reason", out->finish_reason,
									  "usage", usage));
	}
	else
	{
		int			status = class_status(out->error);
		const char *code = out->error == LLMGW_ERR_CONTEXT_LENGTH ? "context_length_exceeded" :
			out->error == LLMGW_ERR_CONTENT_FILTER ? "content_filter" : out->provider_code;
		const char *msg = out->provider_message ? out->provider_message :
			llmgw_error_class_message(out->error);
		json_t	   *body = json_pack("{s:{s:s?, s:s?}}", "error", "message", msg, "code", code);

		if (status == 0)
			json_object_set_new(line, "response", json_pack("{s:o}", "body", body));
		else
			json_object_set_new(line, "response",
								json_pack("{s:i, s:o}", "status_code", status, "body", body));
	}
	start = buf->len;
	if (line != NULL && llmgw_json_write(buf, line))
		appendStringInfoChar(buf, '\n');
	else
	{
		buf->len = start;		/* a string that is not UTF-8: no line */
		buf->data[start] = '\0';
	}
	json_decref(line);
}
