/*-------------------------------------------------------------------------
 *
 * providers/anthropic.c
 *		Anthropic Messages wire format: translate llmgw's OpenAI-shaped
 *		request, read responses and errors.
 *
 * Usage normalisation: Anthropic's input_tokens excludes prompt-cache
 * reads and writes, which it reports separately; llmgw's input bucket is
 * the sum of the three.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "lib/stringinfo.h"

#include "provider.h"
#include "jsonutil.h"
#include "sse.h"
#include "translate.h"

/* Anthropic requires max_tokens; this is used when the caller gave none */
#define ANTHROPIC_DEFAULT_MAX_TOKENS 4096
#define ANTHROPIC_DEFAULT_VERSION "2023-06-01"

/* The tool that carries a response_format answer (docs/providers.md) */
#define RESPONSE_TOOL "llmgw_response"

static const char *const anthropic_media_types[] = {
	"image/jpeg", "image/png", "image/gif", "image/webp", NULL
};
/* documents: PDFs (base64 sources) */
static const char *const anthropic_file_types[] = {"application/pdf", NULL};
static const LlmgwPartRules anthropic_parts = {
	.kind = "anthropic", .media_types = anthropic_media_types, .image_urls = true,
	.file_types = anthropic_file_types
};

/* block with the prompt-cache mark given (or none) */
static json_t *
marked(json_t *block, json_t *cache_control)
{
	if (cache_control)
		json_object_set(block, "cache_control", cache_control);
	return block;
}

/*
 * A content part as an Anthropic content block, with its cache_control: a
 * file is a document block, its filename the document's title
 */
static json_t *
content_block(const LlmgwPart *part)
{
	if (part->text)
		return marked(json_pack("{s:s, s:O}", "type", "text", "text", part->text),
					  part->cache_control);
	if (part->file)
	{
		json_t	   *doc = json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "document", "source",
									"type", "base64", "media_type", part->media_type,
									"data", part->data);

		if (part->filename)
			json_object_set(doc, "title", part->filename);
		return marked(doc, part->cache_control);
	}
	if (part->data)
		return marked(json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "image", "source", "type", "base64",
								"media_type", part->media_type, "data", part->data),
					  part->cache_control);
	return marked(json_pack("{s:s, s:{s:s, s:O}}", "type", "image", "source", "type", "url",
							"url", part->url),
				  part->cache_control);
}


/* An assistant message's tool calls as tool_use blocks */
static bool
append_tool_uses(json_t *blocks, json_t *tool_calls, size_t msg, char **error)
{
	size_t		i;
	json_t	   *call;

	json_array_foreach(tool_calls, i, call)
	{
		json_t	   *fn = json_object_get(call, "function");
		json_t	   *args = json_object_get(fn, "arguments");
		json_t	   *input;
		json_t	   *mark;

		if (!llmgw_cache_control_at(call, &mark, "messages[%zu].tool_calls[%zu]", msg, i, error))
			return false;
		input = json_is_string(args) ?
			json_loads(json_string_value(args), 0, NULL) : json_incref(args);
		if (!json_is_object(input))
		{
			json_decref(input);
			input = json_pack("{}");
		}
		json_array_append_new(blocks, marked(json_pack("{s:s, s:O?, s:O?, s:o}", "type", "tool_use",
													   "id", json_object_get(call, "id"),
													   "name", json_object_get(fn, "name"),
													   "input", input),
											 mark));
	}
	return true;
}

/*
 * A tool message as a tool_result block: its content a string as it is, or
 * parts as text and image blocks.  NULL with *error set.
 */
static json_t *
tool_result(json_t *m, size_t i, char **error)
{
	json_t	   *content = json_object_get(m, "content");
	json_t	   *result;
	json_t	   *blocks;
	json_t	   *mark;

	if (!llmgw_cache_control_at(m, &mark, "messages[%zu]", i, 0, error))
		return NULL;
	result = marked(json_pack("{s:s, s:O?}", "type", "tool_result",
							  "tool_use_id", json_object_get(m, "tool_call_id")),
					mark);
	if (json_is_string(content))
		json_object_set(result, "content", content);
	else if (content != NULL && !json_is_null(content))
	{
		blocks = llmgw_content_translate(content, i, true, &anthropic_parts, content_block, error);
		if (blocks == NULL)
		{
			json_decref(result);
			return NULL;
		}
		json_object_set_new(result, "content", blocks);
	}
	return result;
}

/*
 * An assistant message's thinking blocks (an earlier answer's, signatures
 * and all) before its other blocks, where Anthropic wants them
 */
static bool
prepend_thinking(json_t *blocks, json_t *m, size_t msg, char **error)
{
	json_t	   *thinking;

	if (!llmgw_thinking_blocks(m, msg, &thinking, error))
		return false;
	for (size_t k = json_array_size(thinking); k > 0; k--)
		json_array_insert(blocks, 0, json_array_get(thinking, k - 1));
	return true;
}

/*
 * Translate OpenAI messages; system messages go to the system string (or,
 * when one of their parts has a cache_control, to system text blocks, the
 * marks where they were).  Images may come in user messages and tool
 * results.
 */
static bool
translate_messages(json_t *messages, json_t *req, char **error)
{
	json_t	   *out = json_array();
	StringInfoData system;
	json_t	   *system_blocks = json_array();
	bool		system_marked = false;
	size_t		i;
	json_t	   *m;

	initStringInfo(&system);
	json_array_foreach(messages, i, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		json_t	   *content = json_object_get(m, "content");
		json_t	   *blocks;

		if (role == NULL)
			*error = psprintf("messages[%zu] has no role", i);
		else if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0)
		{
			system_marked = system_marked || llmgw_has_cache_control(content);
			if ((blocks = llmgw_content_translate(content, i, false, &anthropic_parts,
												  content_block, error)) != NULL)
			{
				size_t		b;
				json_t	   *block;

				/* text blocks only: no images in a system message */
				json_array_foreach(blocks, b, block)
					appendStringInfo(&system, "%s%s", system.len ? "\n\n" : "",
									 json_string_value(json_object_get(block, "text")));
				json_array_extend(system_blocks, blocks);
				json_decref(blocks);
				continue;
			}
		}
		else if (strcmp(role, "tool") == 0)
		{
			if ((blocks = tool_result(m, i, error)) != NULL)
			{
				json_array_append_new(out, json_pack("{s:s, s:[o]}", "role", "user", "content", blocks));
				continue;
			}
		}
		else if ((blocks = llmgw_content_translate(content, i, strcmp(role, "user") == 0,
												   &anthropic_parts, content_block, error)) != NULL)
		{
			if (strcmp(role, "assistant") != 0 ||
				(prepend_thinking(blocks, m, i, error) &&
				 append_tool_uses(blocks, json_object_get(m, "tool_calls"), i, error)))
			{
				json_array_append_new(out, json_pack("{s:s, s:o}", "role",
													 strcmp(role, "assistant") == 0 ? "assistant" : "user",
													 "content", blocks));
				continue;
			}
			json_decref(blocks);
		}
		json_decref(out);
		json_decref(system_blocks);
		return false;
	}
	json_object_set_new(req, "messages", out);
	if (system_marked)
		json_object_set_new(req, "system", system_blocks);
	else
	{
		json_decref(system_blocks);
		if (system.len > 0)
			json_object_set_new(req, "system", json_string(system.data));
	}
	return true;
}

/*
 * OpenAI tools and tool_choice in Anthropic's shape.  The name of the
 * response_format tool is reserved.
 */
static bool
translate_tools(json_t *src, json_t *req, char **error)
{
	json_t	   *tools = json_object_get(src, "tools");
	LlmgwToolChoice choice;
	const char *chosen;
	size_t		i;
	json_t	   *t;

	if (json_is_array(tools))
	{
		json_t	   *out = json_array();

		json_array_foreach(tools, i, t)
		{
			json_t	   *fn = json_object_get(t, "function");
			json_t	   *name = json_object_get(fn, "name");
			json_t	   *schema = json_object_get(fn, "parameters");
			json_t	   *mark;

			if (json_is_string(name) && strcmp(json_string_value(name), RESPONSE_TOOL) == 0)
			{
				json_decref(out);
				*error = psprintf("tools[%zu] is named \"%s\", a name llmgw reserves for response_format",
								  i, RESPONSE_TOOL);
				return false;
			}
			if (!llmgw_cache_control_at(t, &mark, "tools[%zu]", i, 0, error))
			{
				json_decref(out);
				return false;
			}
			schema = schema ? json_incref(schema) : json_pack("{s:s}", "type", "object");
			json_array_append_new(out, marked(json_pack("{s:O?, s:O?, s:o}",
														"name", name,
														"description", json_object_get(fn, "description"),
														"input_schema", schema),
											  mark));
		}
		json_object_set_new(req, "tools", out);
	}
	if (!llmgw_tool_choice(src, &choice, &chosen, error))
		return false;
	if (choice == LLMGW_TOOLS_NAMED)
		json_object_set_new(req, "tool_choice", json_pack("{s:s, s:s}", "type", "tool", "name", chosen));
	else if (choice != LLMGW_TOOLS_UNSET)
		json_object_set_new(req, "tool_choice",
							json_pack("{s:s}", "type",
									  choice == LLMGW_TOOLS_REQUIRED ? "any" :
									  choice == LLMGW_TOOLS_NONE ? "none" : "auto"));
	return true;
}

/* Is a member of the request there, and neither null nor an empty array? */
static bool
given(json_t *src, const char *key)
{
	json_t	   *v = json_object_get(src, key);

	return v != NULL && !json_is_null(v) && !(json_is_array(v) && json_array_size(v) == 0);
}

/*
 * response_format as a forced tool whose input is the answer: Anthropic
 * has no JSON mode of its own.  The parsers turn a call of that tool back
 * into the answer's text.
 */
static bool
translate_response_format(json_t *src, json_t *req, char **error)
{
	LlmgwResponseFormat format;
	json_t	   *json_schema;
	json_t	   *schema;
	json_t	   *description;

	if (!llmgw_response_format(src, &format, &json_schema, error))
		return false;
	if (format == LLMGW_FORMAT_TEXT)
		return true;
	if (given(src, "tools") || given(src, "tool_choice"))
	{
		*error = pstrdup("response_format cannot be combined with tools or tool_choice for provider kind \"anthropic\", which receives the response format as a tool of its own");
		return false;
	}
	schema = json_object_get(json_schema, "schema");
	description = json_object_get(json_schema, "description");
	json_object_set_new(req, "tools",
						json_pack("[{s:s, s:o, s:o}]", "name", RESPONSE_TOOL, "description",
								  json_is_string(description) ? json_incref(description) :
								  json_string("Give your answer as this tool's input."),
								  "input_schema",
								  schema ? json_incref(schema) : json_pack("{s:s}", "type", "object")));
	json_object_set_new(req, "tool_choice",
						json_pack("{s:s, s:s}", "type", "tool", "name", RESPONSE_TOOL));
	return true;
}

/* Build a Messages request from llmgw's request */
static char *
anthropic_build(const char *request, size_t len, const char *upstream_model,
				size_t *out_len, bool *stream, char **error)
{
	json_t	   *src = llmgw_json_loadb(request, len, 0, NULL);
	json_t	   *req;
	json_t	   *max_tokens;
	json_t	   *stop;
	json_t	   *mark;
	json_t	   *thinking;
	json_t	   *top_k;

	if (!json_is_object(src) || !json_is_array(json_object_get(src, "messages")))
	{
		json_decref(src);
		*error = pstrdup("the request has no messages array");
		return NULL;
	}
	req = json_pack("{s:s}", "model", upstream_model);
	/* automatic prompt caching: a mark on the request itself */
	if (!llmgw_cache_control_at(src, &mark, "the request", 0, 0, error))
	{
		json_decref(src);
		json_decref(req);
		return NULL;
	}
	marked(req, mark);
	if (!translate_messages(json_object_get(src, "messages"), req, error) ||
		!translate_tools(src, req, error) || !translate_response_format(src, req, error))
	{
		json_decref(src);
		json_decref(req);
		return NULL;
	}
	if (!llmgw_thinking(src, &thinking, error) || !llmgw_top_k(src, &top_k, error) ||
		!llmgw_no_logprobs(src, "an Anthropic deployment", error))
	{
		json_decref(src);
		json_decref(req);
		return NULL;
	}
	if (thinking)
		json_object_set(req, "thinking", thinking);
	max_tokens = json_object_get(src, "max_completion_tokens");
	if (!json_is_integer(max_tokens))
		max_tokens = json_object_get(src, "max_tokens");
	/* without a max_tokens, room for the answer beyond the thinking budget */
	json_object_set_new(req, "max_tokens", json_is_integer(max_tokens) ? json_incref(max_tokens) :
						json_integer(ANTHROPIC_DEFAULT_MAX_TOKENS +
									 json_integer_value(json_object_get(thinking, "budget_tokens"))));
	if (json_is_number(json_object_get(src, "temperature")))
		json_object_set(req, "temperature", json_object_get(src, "temperature"));
	if (json_is_number(json_object_get(src, "top_p")))
		json_object_set(req, "top_p", json_object_get(src, "top_p"));
	if (top_k)
		json_object_set(req, "top_k", top_k);
	stop = json_object_get(src, "stop");
	if (json_is_string(stop))
		json_object_set_new(req, "stop_sequences", json_pack("[O]", stop));
	else if (json_is_array(stop))
		json_object_set(req, "stop_sequences", stop);
	*stream = json_is_true(json_object_get(src, "stream"));
	if (*stream)
		json_object_set_new(req, "stream", json_true());
	json_decref(src);
	return llmgw_json_build(req, out_len);
}

/* Sum of counts where the first must be known and the others default to 0 */
static int64
sum_counts(int64 first, int64 a, int64 b)
{
	if (first == LLMGW_TOKENS_UNKNOWN)
		return LLMGW_TOKENS_UNKNOWN;
	return first + Max(a, 0) + Max(b, 0);
}

/* Read a usage object into the buckets (also used for stream events) */
static void
parse_usage(json_t *usage, LlmgwOutcome *out)
{
	int64		input = llmgw_json_count(usage, "input_tokens");
	int64		write = llmgw_json_count(usage, "cache_creation_input_tokens");
	int64		read = llmgw_json_count(usage, "cache_read_input_tokens");
	json_t	   *details = json_object_get(usage, "output_tokens_details");
	json_t	   *creation = json_object_get(usage, "cache_creation");

	if (!json_is_object(usage))
		return;
	out->tokens[LLMGW_TOKENS_INPUT] = sum_counts(input, write, read);
	out->tokens[LLMGW_TOKENS_OUTPUT] = llmgw_json_count(usage, "output_tokens");
	out->tokens[LLMGW_TOKENS_CACHED_INPUT] = read;
	out->tokens[LLMGW_TOKENS_CACHE_WRITE] = write;
	/* the split by lifetime, when given: 1-hour writes cost more */
	if (json_is_object(creation))
	{
		int64		hour = llmgw_json_count(creation, "ephemeral_1h_input_tokens");

		out->tokens[LLMGW_TOKENS_CACHE_WRITE_1H] = hour == LLMGW_TOKENS_UNKNOWN ? 0 : hour;
	}
	if (json_is_object(details))
		out->tokens[LLMGW_TOKENS_REASONING] = llmgw_json_count(details, "thinking_tokens");
}

/* Is this content block a call of the response_format tool? */
static bool
response_tool(json_t *block)
{
	const char *type = json_string_value(json_object_get(block, "type"));
	const char *name = json_string_value(json_object_get(block, "name"));

	return type && name && strcmp(type, "tool_use") == 0 && strcmp(name, RESPONSE_TOOL) == 0;
}

/*
 * An answer given as the response_format tool's input (compact JSON) is
 * the answer's text, and it ends as a plain answer would: callers get the
 * same answer as from a provider with a JSON mode.
 */
static void
set_response_answer(LlmgwOutcome *out, char *json)
{
	out->text = json;
	if (out->tool_calls == NULL && out->finish_reason &&
		strcmp(out->finish_reason, "tool_use") == 0)
		out->finish_reason = pstrdup("end_turn");
}

/* Is this content block a thinking or redacted_thinking block? */
static bool
thinking_block(json_t *block)
{
	const char *type = json_string_value(json_object_get(block, "type"));

	return type && (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0);
}

/*
 * The thinking blocks among a message's content blocks, as they are (JSON
 * text), or NULL when there are none
 */
static char *
thinking_blocks(json_t *content)
{
	json_t	   *blocks = json_array();
	size_t		i;
	json_t	   *block;
	char	   *text = NULL;

	json_array_foreach(content, i, block)
		if (thinking_block(block))
			json_array_append(blocks, block);
	if (json_array_size(blocks) > 0)
		text = llmgw_json_dump(blocks);
	json_decref(blocks);
	return text;
}

/*
 * Text blocks and tool_use blocks of a message (its thinking blocks apart);
 * a call of the response_format tool is the answer
 */
static void
parse_content(json_t *content, LlmgwOutcome *out)
{
	StringInfoData text;
	json_t	   *calls = json_array();
	char	   *answer = NULL;
	size_t		i;
	json_t	   *block;

	initStringInfo(&text);
	json_array_foreach(content, i, block)
	{
		const char *type = json_string_value(json_object_get(block, "type"));

		if (type == NULL)
			continue;
		if (strcmp(type, "text") == 0 && json_is_string(json_object_get(block, "text")))
			appendStringInfoString(&text, json_string_value(json_object_get(block, "text")));
		else if (response_tool(block))
			answer = llmgw_json_dump(json_object_get(block, "input"));
		else if (strcmp(type, "tool_use") == 0)
		{
			char	   *args = llmgw_json_dump(json_object_get(block, "input"));

			json_array_append_new(calls, json_pack("{s:O?, s:O?, s:s}",
												   "id", json_object_get(block, "id"),
												   "name", json_object_get(block, "name"),
												   "arguments", args));
		}
	}
	out->text = text.data;
	if (json_array_size(calls) > 0)
		out->tool_calls = llmgw_json_dump(calls);
	json_decref(calls);
	out->thinking = thinking_blocks(content);
	if (answer)
		set_response_answer(out, answer);
}

/* Class of an Anthropic error type */
static LlmgwErrorClass
classify(const char *type, const char *message, long http_status)
{
	if (type == NULL)
		return llmgw_error_class_from_http(http_status);
	if (strcmp(type, "authentication_error") == 0 || strcmp(type, "permission_error") == 0)
		return LLMGW_ERR_AUTH;
	if (strcmp(type, "not_found_error") == 0)
		return LLMGW_ERR_MODEL_NOT_FOUND;
	if (strcmp(type, "rate_limit_error") == 0)
		return LLMGW_ERR_RATE_LIMIT;
	if (strcmp(type, "overloaded_error") == 0)
		return LLMGW_ERR_OVERLOADED;
	if (strcmp(type, "api_error") == 0)
		return LLMGW_ERR_SERVER;
	if (strcmp(type, "billing_error") == 0)
		return LLMGW_ERR_QUOTA;
	if (strcmp(type, "request_too_large") == 0)
		return LLMGW_ERR_REQUEST_TOO_LARGE;
	if (message && strstr(message, "prompt is too long") != NULL)
		return LLMGW_ERR_CONTEXT_LENGTH;
	if (strcmp(type, "invalid_request_error") == 0)
		return LLMGW_ERR_INVALID_REQUEST;
	return llmgw_error_class_from_http(http_status);
}

/* {"type": "error", "error": {"type", "message"}}: the error member */
static void
parse_error(json_t *err, long http_status, LlmgwOutcome *out)
{
	char	   *type = llmgw_json_string(err, "type");
	char	   *message = llmgw_json_string(err, "message");

	llmgw_json_set_error(out, classify(type, message, http_status),
						 json_object_get(err, "message"), type);
}

/* The error envelope of a whole body */
static void
parse_error_body(json_t *root, long http_status, LlmgwOutcome *out)
{
	parse_error(json_object_get(root, "error"), http_status, out);
}

static void
anthropic_parse(const char *buf, size_t len, long http_status, LlmgwOutcome *out)
{
	json_t	   *root = llmgw_json_success(buf, len, http_status, out, parse_error_body);

	if (root == NULL)
		return;
	parse_usage(json_object_get(root, "usage"), out);
	if (!json_is_array(json_object_get(root, "content")))
	{
		llmgw_json_set_error(out, LLMGW_ERR_MALFORMED, NULL, NULL);
		out->provider_message = pstrdup("the response has no content array");
	}
	else
	{
		out->status = LLMGW_STATUS_OK;
		out->finish_reason = llmgw_json_string(root, "stop_reason");
		out->stop_sequence = llmgw_json_string(root, "stop_sequence");
		parse_content(json_object_get(root, "content"), out);
		if (out->finish_reason && strcmp(out->finish_reason, "refusal") == 0)
			llmgw_json_set_error(out, LLMGW_ERR_CONTENT_FILTER, NULL, "refusal");
	}
	json_decref(root);
}

/*
 * What a Messages stream has said so far.  Usage counters are kept raw:
 * message_start reports them all, message_delta replaces those it carries.
 */
typedef struct AnthropicStream
{
	LlmgwStream base;			/* done: message_stop arrived */
	json_t	   *blocks;			/* content blocks by index */
	json_t	   *usage;			/* raw counters */
} AnthropicStream;

/* Merge a usage object's counters into the raw counters */
static void
merge_usage(AnthropicStream *st, json_t *usage)
{
	const char *key;
	json_t	   *value;

	json_object_foreach(usage, key, value)
	{
		if (json_is_integer(value) || json_is_object(value))
			json_object_set(st->usage, key, value);
	}
}

/* The content block with this index, created on first use */
static json_t *
stream_block(AnthropicStream *st, json_t *index)
{
	int			i = llmgw_stream_key(index, 0);

	if (i < 0)
		return NULL;
	while (json_array_size(st->blocks) <= (size_t) i)
		json_array_append_new(st->blocks, json_pack("{}"));
	return json_array_get(st->blocks, i);
}

/*
 * Append a piece to a string member of a block being streamed: the pieces
 * are kept in an array (after what content_block_start gave), joined once
 * the stream has ended (join_members)
 */
static void
append_member(json_t *block, const char *member, const char *piece)
{
	json_t	   *pieces = json_object_get(block, member);

	if (!json_is_array(pieces))
	{
		json_t	   *given = pieces;

		pieces = json_array();
		if (json_is_string(given))
			json_array_append(pieces, given);
		json_object_set_new(block, member, pieces);
	}
	json_array_append_new(pieces, json_string(piece));
}

/*
 * The pieces of the members that deltas append to (append_member), each
 * joined into its string; pieces that are not strings (a start block's own
 * array, sent by no provider) count for nothing
 */
static void
join_members(json_t *blocks)
{
	static const char *const members[] = {"partial_json", "thinking", "signature"};
	size_t		i;
	json_t	   *block;

	json_array_foreach(blocks, i, block)
	{
		for (int m = 0; m < lengthof(members); m++)
		{
			json_t	   *pieces = json_object_get(block, members[m]);
			StringInfoData joined;
			size_t		k;
			json_t	   *piece;

			if (!json_is_array(pieces))
				continue;
			initStringInfo(&joined);
			json_array_foreach(pieces, k, piece)
				if (json_is_string(piece))
					appendBinaryStringInfo(&joined, json_string_value(piece),
										   (int) json_string_length(piece));
			json_object_set_new(block, members[m], json_stringn(joined.data, joined.len));
			pfree(joined.data);
		}
	}
}

/* One event of a Messages stream */
static void
anthropic_stream_event(void *arg, const char *event, const char *data, size_t len)
{
	AnthropicStream *st = arg;
	json_t	   *ev;
	const char *type;

	if (st->base.failed)
		return;
	ev = llmgw_stream_event_json(data, len, &st->base.unreadable);
	if (ev == NULL)
		return;
	type = json_string_value(json_object_get(ev, "type"));
	if (type == NULL)
	{
		json_decref(ev);
		return;
	}
	if (strcmp(type, "message_start") == 0)
		merge_usage(st, json_object_get(json_object_get(ev, "message"), "usage"));
	else if (strcmp(type, "content_block_start") == 0)
	{
		json_t	   *block = stream_block(st, json_object_get(ev, "index"));

		if (block)
			json_object_update(block, json_object_get(ev, "content_block"));
	}
	else if (strcmp(type, "content_block_delta") == 0)
	{
		json_t	   *block = stream_block(st, json_object_get(ev, "index"));
		json_t	   *delta = json_object_get(ev, "delta");
		const char *dtype = json_string_value(json_object_get(delta, "type"));
		const char *piece;

		if (block && dtype && strcmp(dtype, "text_delta") == 0 &&
			(piece = json_string_value(json_object_get(delta, "text"))) != NULL)
			appendStringInfoString(&st->base.text, piece);
		else if (block && dtype && strcmp(dtype, "input_json_delta") == 0 &&
				 (piece = json_string_value(json_object_get(delta, "partial_json"))) != NULL)
			append_member(block, "partial_json", piece);
		else if (block && dtype && strcmp(dtype, "thinking_delta") == 0 &&
				 (piece = json_string_value(json_object_get(delta, "thinking"))) != NULL)
			append_member(block, "thinking", piece);
		else if (block && dtype && strcmp(dtype, "signature_delta") == 0 &&
				 (piece = json_string_value(json_object_get(delta, "signature"))) != NULL)
			append_member(block, "signature", piece);
	}
	else if (strcmp(type, "message_delta") == 0)
	{
		json_t	   *delta = json_object_get(ev, "delta");

		merge_usage(st, json_object_get(ev, "usage"));
		if (json_is_string(json_object_get(delta, "stop_reason")))
			st->base.out->finish_reason = llmgw_json_string(delta, "stop_reason");
		if (json_is_string(json_object_get(delta, "stop_sequence")))
			st->base.out->stop_sequence = llmgw_json_string(delta, "stop_sequence");
	}
	else if (strcmp(type, "message_stop") == 0)
		st->base.done = true;
	else if (strcmp(type, "error") == 0)
	{
		parse_error(json_object_get(ev, "error"), 200, st->base.out);
		st->base.failed = true;
	}
	json_decref(ev);
}

/* JSON text a stream sent in pieces, compact when it parses */
static char *
compact_json(const char *text)
{
	json_t	   *v;
	char	   *s;

	if (text == NULL || *text == '\0')
		return pstrdup("{}");
	v = llmgw_json_load(text, strlen(text), NULL);
	s = v ? llmgw_json_dump(v) : pstrdup(text);
	json_decref(v);
	return s;
}

/*
 * The tool_use blocks of a finished stream; a call of the response_format
 * tool sets *answer instead
 */
static char *
stream_tool_calls(json_t *blocks, char **answer)
{
	json_t	   *calls = json_array();
	size_t		i;
	json_t	   *b;
	char	   *text = NULL;

	json_array_foreach(blocks, i, b)
	{
		const char *args = json_string_value(json_object_get(b, "partial_json"));

		if (response_tool(b))
		{
			*answer = compact_json(args);
			continue;
		}
		if (!json_is_string(json_object_get(b, "type")) ||
			strcmp(json_string_value(json_object_get(b, "type")), "tool_use") != 0)
			continue;
		json_array_append_new(calls, json_pack("{s:O?, s:O?, s:s}", "id", json_object_get(b, "id"),
											   "name", json_object_get(b, "name"),
											   "arguments", args && *args ? args : "{}"));
	}
	if (json_array_size(calls) > 0)
		text = llmgw_json_dump(calls);
	json_decref(calls);
	return text;
}

/* Read a complete Messages stream */
static void
anthropic_parse_stream(const char *buf, size_t len, LlmgwOutcome *out)
{
	AnthropicStream st;

	memset(&st, 0, sizeof(st));
	st.blocks = json_array();
	st.usage = json_pack("{}");
	llmgw_stream_read(&st.base, out, buf, len, anthropic_stream_event);
	if (json_object_size(st.usage) > 0)
		parse_usage(st.usage, out);
	out->text = st.base.text.data;
	if (llmgw_stream_whole(&st.base))
	{
		char	   *answer = NULL;

		out->status = LLMGW_STATUS_OK;
		join_members(st.blocks);
		out->tool_calls = stream_tool_calls(st.blocks, &answer);
		out->thinking = thinking_blocks(st.blocks);
		if (answer)
			set_response_answer(out, answer);
		if (out->finish_reason && strcmp(out->finish_reason, "refusal") == 0)
			llmgw_json_set_error(out, LLMGW_ERR_CONTENT_FILTER, NULL, "refusal");
	}
	json_decref(st.blocks);
	json_decref(st.usage);
}

/* Base URL including the version, e.g. https://api.anthropic.com/v1 */
static char *
anthropic_url(const LlmgwRoute *route, bool stream)
{
	return llmgw_url_join(route->base_url, "messages");
}

static struct curl_slist *
anthropic_headers(const LlmgwRoute *route, const char *secret)
{
	struct curl_slist *h = llmgw_json_headers();
	char	   *version = psprintf("anthropic-version: %s",
								   route->api_version ? route->api_version :
								   ANTHROPIC_DEFAULT_VERSION);

	h = curl_slist_append(h, version);
	return llmgw_header_secret(h, "x-api-key", "", secret);
}

/*
 * Tell what one event of a Messages stream carries: text_delta events, the
 * tool_use blocks (but the response_format tool's, whose input is the
 * answer's text at the end) with their input_json_delta pieces, and the
 * thinking blocks with their thinking_delta and signature_delta pieces
 */
static void
anthropic_stream_delta(const char *data, size_t len, const LlmgwStreamSink *sink)
{
	bool		unreadable = false;
	json_t	   *ev = llmgw_stream_event_json(data, len, &unreadable);
	const char *type = json_string_value(json_object_get(ev, "type"));
	json_t	   *delta = json_object_get(ev, "delta");
	const char *dtype = json_string_value(json_object_get(delta, "type"));
	json_t	   *block = json_object_get(ev, "content_block");
	int			key = llmgw_stream_key(json_object_get(ev, "index"), 0);
	const char *piece;

	if (type == NULL || key < 0)
		;						/* nothing to tell */
	else if (strcmp(type, "content_block_start") == 0)
	{
		const char *btype = json_string_value(json_object_get(block, "type"));

		if (btype && strcmp(btype, "tool_use") == 0 && !response_tool(block))
			sink->tool(sink->arg, key, json_string_value(json_object_get(block, "id")),
					   json_string_value(json_object_get(block, "name")), NULL, NULL, 0);
		else if (btype && strcmp(btype, "thinking") == 0)
		{
			sink->thinking(sink->arg, LLMGW_THINKING_START, NULL, 0);
			/* (a start that carries text or a signature already: sent too) */
			if ((piece = json_string_value(json_object_get(block, "thinking"))) && *piece)
				sink->thinking(sink->arg, LLMGW_THINKING_TEXT, piece, strlen(piece));
			if ((piece = json_string_value(json_object_get(block, "signature"))) && *piece)
				sink->thinking(sink->arg, LLMGW_THINKING_SIGNATURE, piece, strlen(piece));
		}
		else if (btype && strcmp(btype, "redacted_thinking") == 0 &&
				 (piece = json_string_value(json_object_get(block, "data"))) != NULL)
			sink->thinking(sink->arg, LLMGW_THINKING_REDACTED, piece, strlen(piece));
	}
	else if (strcmp(type, "content_block_delta") == 0 && dtype != NULL)
	{
		if (strcmp(dtype, "text_delta") == 0 &&
			(piece = json_string_value(json_object_get(delta, "text"))) != NULL)
			sink->text(sink->arg, piece, strlen(piece));
		else if (strcmp(dtype, "input_json_delta") == 0 &&
				 (piece = json_string_value(json_object_get(delta, "partial_json"))) != NULL)
			sink->tool(sink->arg, key, NULL, NULL, NULL, piece, strlen(piece));
		else if (strcmp(dtype, "thinking_delta") == 0 &&
				 (piece = json_string_value(json_object_get(delta, "thinking"))) != NULL)
			sink->thinking(sink->arg, LLMGW_THINKING_TEXT, piece, strlen(piece));
		else if (strcmp(dtype, "signature_delta") == 0 &&
				 (piece = json_string_value(json_object_get(delta, "signature"))) != NULL)
			sink->thinking(sink->arg, LLMGW_THINKING_SIGNATURE, piece, strlen(piece));
	}
	json_decref(ev);
}

const LlmgwProvider llmgw_provider_anthropic = {
	"anthropic", anthropic_url, anthropic_headers, anthropic_build, anthropic_parse,
	anthropic_parse_stream, .stream_delta = anthropic_stream_delta
};
