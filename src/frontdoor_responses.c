/*-------------------------------------------------------------------------
 *
 * frontdoor_responses.c
 *		The front door's OpenAI Responses API (POST /v1/responses), as the
 *		OpenAI SDKs' responses.create, the Vercel AI SDK's OpenAI provider and
 *		the OpenAI Agents SDK speak it: its request read into llmgw's
 *		OpenAI-shaped chat request, and llmgw's normalised answer (response.c)
 *		written back as a Response, whole or as a stream of events.
 *
 * Read: instructions and input (a string, or message, function_call and
 * function_call_output items; reasoning items of an earlier answer are
 * passed over), function tools, tool_choice, text.format (JSON mode and JSON
 * schema), max_output_tokens, temperature, top_p, parallel_tool_calls,
 * logprobs (include's "message.output_text.logprobs", top_logprobs),
 * reasoning.effort (as reasoning_effort), user and metadata (the usage
 * row's tags; metadata goes no further, the front door takes it out), stream.  Refused with an error naming the field: stored
 * state (previous_response_id, conversation: llmgw keeps no responses, the
 * client sends the whole conversation), built-in tools (file search,
 * computer use...; a web search tool, which the model may use or not, is
 * left out: Codex offers it on every request), parts it does not know.  Other members (store,
 * the rest of include, truncation, service_tier...) are dropped.
 *
 * Written: a Response whose output is a message item (output_text) and
 * function_call items; status completed, or incomplete with the reason
 * (max_output_tokens, content_filter); usage with the cached and reasoning
 * details (an unknown count is 0).  A stream is "event: TYPE\ndata: JSON"
 * events with sequence numbers: response.created and response.in_progress,
 * each item's output_item.added, its content_part.added and
 * output_text.delta events (or function_call_arguments.delta), their .done
 * events, then response.completed (or response.incomplete) with the whole
 * Response and llmgw's route and billing proof in an "llmgw" member.
 * Reasoning is not given to Responses clients.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "frontdoor_responses.h"
#include "jsonutil.h"

/* --- the request ---------------------------------------------------------- */

/*
 * A content part of an input message as a chat content part; NULL with
 * *error set
 */
static json_t *
content_part(json_t *p, size_t i, size_t j, char **error)
{
	json_t	   *type = json_object_get(p, "type");
	json_t	   *text = json_object_get(p, "text");

	if (llmgw_json_is_word(type, "input_text") || llmgw_json_is_word(type, "output_text"))
	{
		if (json_is_string(text))
			return json_pack("{s:s, s:O}", "type", "text", "text", text);
		*error = psprintf("input[%zu].content[%zu] has no \"text\" string", i, j);
	}
	else if (llmgw_json_is_word(type, "input_image"))
	{
		json_t	   *url = json_object_get(p, "image_url");
		json_t	   *detail = json_object_get(p, "detail");
		json_t	   *image;

		if (!json_is_string(url))
		{
			*error = psprintf("input[%zu].content[%zu] has no \"image_url\" string (images by file_id are not taken)",
							  i, j);
			return NULL;
		}
		image = json_pack("{s:O}", "url", url);
		if (json_is_string(detail))
			json_object_set(image, "detail", detail);
		return json_pack("{s:s, s:o}", "type", "image_url", "image_url", image);
	}
	else if (llmgw_json_is_word(type, "input_file"))
	{
		json_t	   *file = json_pack("{}");
		static const char *const members[] = {"file_data", "file_id", "filename"};

		for (int k = 0; k < lengthof(members); k++)
			if (json_is_string(json_object_get(p, members[k])))
				json_object_set(file, members[k], json_object_get(p, members[k]));
		return json_pack("{s:s, s:o}", "type", "file", "file", file);
	}
	else
		*error = psprintf("input[%zu].content[%zu] is a part of type \"%.64s\", which llmgw does not take (it takes input_text, output_text, input_image and input_file)",
						  i, j, json_is_string(type) ? json_string_value(type) : "(none)");
	return NULL;
}

/* A message item's content as a chat message's; NULL with *error set */
static json_t *
message_content(json_t *content, size_t i, char **error)
{
	json_t	   *parts;
	size_t		j;
	json_t	   *p;

	if (json_is_string(content))
		return json_incref(content);
	if (!json_is_array(content))
	{
		*error = psprintf("input[%zu].content is neither a string nor an array of parts", i);
		return NULL;
	}
	parts = json_array();
	json_array_foreach(content, j, p)
	{
		json_t	   *part = content_part(p, i, j, error);

		if (part == NULL)
		{
			json_decref(parts);
			return NULL;
		}
		json_array_append_new(parts, part);
	}
	return parts;
}

/*
 * The assistant message that function calls join: the last message when it
 * is an assistant's without tool results after it, else a new one
 */
static json_t *
calling_message(json_t *messages)
{
	json_t	   *last = json_array_get(messages, json_array_size(messages) - 1);

	if (!llmgw_json_is_word(json_object_get(last, "role"), "assistant"))
	{
		last = json_pack("{s:s, s:n}", "role", "assistant", "content");
		json_array_append_new(messages, last);
	}
	if (!json_is_array(json_object_get(last, "tool_calls")))
		json_object_set_new(last, "tool_calls", json_array());
	return last;
}

/* Input item i appended to messages as chat messages.  False with *error set. */
static bool
input_item(json_t *item, size_t i, json_t *messages, char **error)
{
	json_t	   *type = json_object_get(item, "type");
	json_t	   *role = json_object_get(item, "role");

	if (!json_is_object(item))
		*error = psprintf("input[%zu] is not an object", i);
	else if (llmgw_json_is_word(type, "message") || (llmgw_json_absent(type) && json_is_string(role)))
	{
		json_t	   *content;

		if (!llmgw_json_is_word(role, "user") && !llmgw_json_is_word(role, "assistant") && !llmgw_json_is_word(role, "system") &&
			!llmgw_json_is_word(role, "developer"))
			*error = psprintf("input[%zu].role is not \"user\", \"assistant\", \"system\" or \"developer\"", i);
		else if ((content = message_content(json_object_get(item, "content"), i, error)) != NULL)
		{
			json_array_append_new(messages, json_pack("{s:O, s:o}", "role", role, "content", content));
			return true;
		}
	}
	else if (llmgw_json_is_word(type, "function_call"))
	{
		json_t	   *call_id = json_object_get(item, "call_id");
		json_t	   *name = json_object_get(item, "name");
		json_t	   *args = json_object_get(item, "arguments");

		if (!json_is_string(call_id) || !json_is_string(name) || !json_is_string(args))
			*error = psprintf("input[%zu] is a function_call without \"call_id\", \"name\" and \"arguments\" strings",
							  i);
		else
		{
			json_array_append_new(json_object_get(calling_message(messages), "tool_calls"),
								  json_pack("{s:O, s:s, s:{s:O, s:O}}", "id", call_id, "type", "function",
											"function", "name", name, "arguments", args));
			return true;
		}
	}
	else if (llmgw_json_is_word(type, "function_call_output"))
	{
		json_t	   *call_id = json_object_get(item, "call_id");
		json_t	   *output = json_object_get(item, "output");
		json_t	   *content;

		if (!json_is_string(call_id))
			*error = psprintf("input[%zu] is a function_call_output without a \"call_id\" string", i);
		else if ((content = message_content(output, i, error)) != NULL)
		{
			json_array_append_new(messages, json_pack("{s:s, s:O, s:o}", "role", "tool",
													  "tool_call_id", call_id, "content", content));
			return true;
		}
	}
	/* an earlier answer's reasoning: nothing llmgw sends back */
	else if (llmgw_json_is_word(type, "reasoning"))
		return true;
	else
		*error = psprintf("input[%zu] is an item of type \"%.64s\", which llmgw does not take (it takes message, function_call, function_call_output and reasoning items)",
						  i, json_is_string(type) ? json_string_value(type) : "(none)");
	return false;
}

/* tools: function tools only.  False with *error set. */
static bool
translate_tools(json_t *req, json_t *out, char **error)
{
	json_t	   *tools = json_object_get(req, "tools");
	json_t	   *chat;
	size_t		i;
	json_t	   *t;

	if (llmgw_json_absent(tools))
		return true;
	if (!json_is_array(tools))
	{
		*error = pstrdup("tools is not an array");
		return false;
	}
	chat = json_array();
	json_object_set_new(out, "tools", chat);
	json_array_foreach(tools, i, t)
	{
		json_t	   *fn;
		static const char *const members[] = {"description", "parameters", "strict"};

		/*
		 * web search the model may use or not: left out (Codex offers it
		 * on every request); a tool the client's work needs is refused
		 */
		if (llmgw_json_is_word(json_object_get(t, "type"), "web_search") ||
			llmgw_json_is_word(json_object_get(t, "type"), "web_search_preview"))
			continue;
		if (!llmgw_json_is_word(json_object_get(t, "type"), "function") ||
			!json_is_string(json_object_get(t, "name")))
		{
			*error = psprintf("tools[%zu] is not a function tool with a \"name\" string (llmgw does not run OpenAI's built-in tools)",
							  i);
			return false;
		}
		fn = json_pack("{s:O}", "name", json_object_get(t, "name"));
		for (int k = 0; k < lengthof(members); k++)
			if (!llmgw_json_absent(json_object_get(t, members[k])))
				json_object_set(fn, members[k], json_object_get(t, members[k]));
		json_array_append_new(chat, json_pack("{s:s, s:o}", "type", "function", "function", fn));
	}
	if (json_array_size(chat) == 0)
		json_object_del(out, "tools");
	return true;
}

/* tool_choice and text.format.  False with *error set. */
static bool
translate_choices(json_t *req, json_t *out, char **error)
{
	json_t	   *choice = json_object_get(req, "tool_choice");
	json_t	   *format = json_object_get(json_object_get(req, "text"), "format");
	json_t	   *ftype = json_object_get(format, "type");

	if (json_is_string(choice))
		json_object_set(out, "tool_choice", choice);
	else if (json_is_object(choice) && llmgw_json_is_word(json_object_get(choice, "type"), "function") &&
			 json_is_string(json_object_get(choice, "name")))
		json_object_set_new(out, "tool_choice",
							json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name",
									  json_object_get(choice, "name")));
	else if (!llmgw_json_absent(choice))
	{
		*error = pstrdup("tool_choice is not \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"name\": ...}");
		return false;
	}
	if (llmgw_json_absent(format) || llmgw_json_is_word(ftype, "text"))
		return true;
	if (llmgw_json_is_word(ftype, "json_object"))
		json_object_set_new(out, "response_format", json_pack("{s:s}", "type", "json_object"));
	else if (llmgw_json_is_word(ftype, "json_schema"))
	{
		json_t	   *schema = json_pack("{}");
		static const char *const members[] = {"name", "schema", "strict", "description"};

		for (int k = 0; k < lengthof(members); k++)
			if (!llmgw_json_absent(json_object_get(format, members[k])))
				json_object_set(schema, members[k], json_object_get(format, members[k]));
		json_object_set_new(out, "response_format",
							json_pack("{s:s, s:o}", "type", "json_schema", "json_schema", schema));
	}
	else
	{
		*error = pstrdup("text.format is not {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", ...}");
		return false;
	}
	return true;
}

/*
 * Log probabilities, asked for with include's "message.output_text.logprobs"
 * or top_logprobs: the chat request's logprobs and top_logprobs.  False
 * with *error set.
 */
static bool
translate_logprobs(json_t *req, json_t *out, char **error)
{
	json_t	   *top = json_object_get(req, "top_logprobs");
	bool		asked = false;
	size_t		i;
	json_t	   *v;

	json_array_foreach(json_object_get(req, "include"), i, v)
		asked = asked || llmgw_json_is_word(v, "message.output_text.logprobs");
	if (!llmgw_json_absent(top) &&
		(!json_is_integer(top) || json_integer_value(top) < 0 || json_integer_value(top) > 20))
	{
		*error = pstrdup("top_logprobs is not an integer from 0 to 20");
		return false;
	}
	if (json_is_integer(top) && json_integer_value(top) > 0)
		asked = true;
	if (asked)
	{
		json_object_set_new(out, "logprobs", json_true());
		if (json_is_integer(top))
			json_object_set(out, "top_logprobs", top);
	}
	return true;
}

/* The settings llmgw passes on.  False with *error set. */
static bool
translate_settings(json_t *req, json_t *out, bool *stream, char **error)
{
	json_t	   *max = json_object_get(req, "max_output_tokens");
	json_t	   *streamed = json_object_get(req, "stream");
	json_t	   *effort = json_object_get(json_object_get(req, "reasoning"), "effort");
	static const char *const numbers[] = {"temperature", "top_p"};

	if (!llmgw_json_absent(max) && (!json_is_integer(max) || json_integer_value(max) <= 0))
	{
		*error = pstrdup("max_output_tokens is not a positive integer");
		return false;
	}
	if (!llmgw_json_absent(max))
		json_object_set(out, "max_tokens", max);
	for (int k = 0; k < lengthof(numbers); k++)
	{
		json_t	   *v = json_object_get(req, numbers[k]);

		if (json_is_number(v))
			json_object_set(out, numbers[k], v);
		else if (!llmgw_json_absent(v))
		{
			*error = psprintf("%s is not a number", numbers[k]);
			return false;
		}
	}
	if (json_is_boolean(json_object_get(req, "parallel_tool_calls")))
		json_object_set(out, "parallel_tool_calls", json_object_get(req, "parallel_tool_calls"));
	if (!translate_logprobs(req, out, error))
		return false;
	if (json_is_string(effort))
		json_object_set(out, "reasoning_effort", effort);
	if (json_is_string(json_object_get(req, "user")))
		json_object_set(out, "user", json_object_get(req, "user"));
	if (json_is_object(json_object_get(req, "metadata")))
		json_object_set(out, "metadata", json_object_get(req, "metadata"));
	if (!llmgw_json_absent(streamed) && !json_is_boolean(streamed))
	{
		*error = pstrdup("stream is not a boolean");
		return false;
	}
	*stream = json_is_true(streamed);
	if (*stream)
	{
		json_object_set_new(out, "stream", json_true());
		json_object_set_new(out, "stream_options", json_pack("{s:b}", "include_usage", 1));
	}
	return true;
}

char *
llmgw_responses_to_chat(const char *body, size_t len, char **model, bool *stream, char **error)
{
	json_t	   *req = body ? llmgw_json_load(body, len, NULL) : NULL;
	json_t	   *name = json_object_get(req, "model");
	json_t	   *input = json_object_get(req, "input");
	json_t	   *instructions = json_object_get(req, "instructions");
	json_t	   *messages = json_array();
	json_t	   *out = json_pack("{s:o}", "messages", messages);
	char	   *text = NULL;
	size_t		i;
	json_t	   *item;

	*model = NULL;
	*stream = false;
	*error = NULL;
	if (!json_is_object(req))
		*error = pstrdup("the request body is not a JSON object");
	else if (!json_is_string(name) || json_string_length(name) == 0)
		*error = pstrdup("model is missing or not a string");
	else if (!llmgw_json_absent(json_object_get(req, "previous_response_id")) ||
			 !llmgw_json_absent(json_object_get(req, "conversation")))
		*error = pstrdup("previous_response_id and conversation are not supported: llmgw keeps no responses, send the whole conversation as input");
	else if (!llmgw_json_absent(instructions) && !json_is_string(instructions))
		*error = pstrdup("instructions is not a string");
	else if (!json_is_string(input) && !(json_is_array(input) && json_array_size(input) > 0))
		*error = pstrdup("input is missing, empty, or neither a string nor an array of items");
	else
	{
		if (json_is_string(instructions) && json_string_length(instructions) > 0)
			json_array_append_new(messages, json_pack("{s:s, s:O}", "role", "system",
													  "content", instructions));
		if (json_is_string(input))
			json_array_append_new(messages, json_pack("{s:s, s:O}", "role", "user", "content", input));
		json_array_foreach(input, i, item)
			if (!input_item(item, i, messages, error))
				break;
		if (*error == NULL && json_array_size(messages) == 0)
			*error = pstrdup("input holds no content");
		if (*error == NULL && translate_tools(req, out, error) &&
			translate_choices(req, out, error) && translate_settings(req, out, stream, error))
		{
			*model = pnstrdup(json_string_value(name), json_string_length(name));
			text = llmgw_json_dump(out);
		}
	}
	if (text == NULL)
		*stream = false;
	json_decref(out);
	json_decref(req);
	return text;
}

/* --- the answer ----------------------------------------------------------- */

/* The hex of the request id: the Response id after its "resp_" */
static const char *
hex_of(const LlmgwFrontMeta *meta)
{
	return strncmp(meta->id, "resp_", 5) == 0 ? meta->id + 5 : meta->id;
}

/* The id of the message item, and of function call item k */
static char *
message_id(const LlmgwFrontMeta *meta)
{
	return psprintf("msg_%s", hex_of(meta));
}

static char *
call_item_id(const LlmgwFrontMeta *meta, int k)
{
	return psprintf("fc_%s_%d", hex_of(meta), k);
}

/* A count of the answer's usage, 0 when unknown */
static json_int_t
count(json_t *usage, const char *name)
{
	json_t	   *v = json_object_get(usage, name);

	return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* The Response's usage from the normalised answer's */
static json_t *
usage_value(json_t *answer)
{
	json_t	   *u = json_object_get(answer, "usage");

	return json_pack("{s:I, s:{s:I}, s:I, s:{s:I}, s:I}",
					 "input_tokens", count(u, "input_tokens"),
					 "input_tokens_details", "cached_tokens", count(u, "cached_input_tokens"),
					 "output_tokens", count(u, "output_tokens"),
					 "output_tokens_details", "reasoning_tokens", count(u, "reasoning_tokens"),
					 "total_tokens", count(u, "input_tokens") + count(u, "output_tokens"));
}

/*
 * The message item of text (status completed or in_progress), its
 * output_text part with the answer's logprobs (answer NULL: none)
 */
static json_t *
message_item(const LlmgwFrontMeta *meta, json_t *text, json_t *answer, bool done)
{
	json_t	   *content = json_array();
	json_t	   *logprobs = json_object_get(json_object_get(answer, "logprobs"), "content");

	if (text)
		json_array_append_new(content, json_pack("{s:s, s:O, s:[], s:o}", "type", "output_text",
												 "text", text, "annotations", "logprobs",
												 json_is_array(logprobs) ? json_incref(logprobs) :
												 json_array()));
	return json_pack("{s:s, s:s, s:s, s:s, s:o}", "id", message_id(meta), "type", "message",
					 "status", done ? "completed" : "in_progress", "role", "assistant",
					 "content", content);
}

/* A string as JSON; "" for NULL or what is not UTF-8 (never given by a provider parser) */
static json_t *
text_value(const char *s)
{
	json_t	   *v = s ? json_string(s) : NULL;

	return v ? v : json_string("");
}

/* Function call item k (arguments JSON text) */
static json_t *
call_item(const LlmgwFrontMeta *meta, int k, json_t *call_id, const char *name, const char *args,
		  bool done)
{
	return json_pack("{s:s, s:s, s:s, s:O, s:o, s:o}", "id", call_item_id(meta, k),
					 "type", "function_call", "status", done ? "completed" : "in_progress",
					 "call_id", call_id, "name", text_value(name), "arguments", text_value(args));
}

/* The call_id of a normalised tool call (one made from k when it has none) */
static json_t *
call_id_value(json_t *call, const LlmgwFrontMeta *meta, int k)
{
	json_t	   *id = json_object_get(call, "id");

	return json_is_string(id) && json_string_length(id) > 0 ? json_incref(id) :
		json_string(psprintf("call_%s_%d", hex_of(meta), k));
}

/*
 * The Response for an answer whose output is given (a new reference; NULL
 * output: the message item, then the function calls, from the answer)
 */
static json_t *
response_value(json_t *answer, const LlmgwFrontMeta *meta, json_t *output, bool done)
{
	const char *finish = json_string_value(json_object_get(answer, "finish_reason"));
	json_t	   *message = json_object_get(answer, "message");
	json_t	   *calls = json_object_get(message, "tool_calls");
	const char *reason = llmgw_openai_finish_reason(finish, json_array_size(calls) > 0);
	json_t	   *root;

	if (output == NULL)
	{
		size_t		k;
		json_t	   *c;
		json_t	   *text = json_object_get(message, "content");

		output = json_array();
		if (json_is_string(text) && (json_string_length(text) > 0 || json_array_size(calls) == 0))
			json_array_append_new(output, message_item(meta, text, answer, true));
		json_array_foreach(calls, k, c)
		{
			json_t	   *id = call_id_value(c, meta, (int) k);

			json_array_append_new(output, call_item(meta, (int) k, id,
													json_string_value(json_object_get(c, "name")),
													llmgw_openai_tool_arguments(c), true));
			json_decref(id);
		}
	}
	root = json_pack("{s:s, s:s, s:I, s:s, s:n, s:n, s:s, s:o, s:b, s:n, s:b, s:{s:{s:s}}, s:s, s:[], s:s}",
					 "id", meta->id, "object", "response", "created_at", (json_int_t) meta->created,
					 "status", !done ? "in_progress" : strcmp(reason, "length") == 0 ||
					 strcmp(reason, "content_filter") == 0 ? "incomplete" : "completed",
					 "error", "incomplete_details", "model", meta->model, "output", output,
					 "parallel_tool_calls", 1, "previous_response_id", "store", 0,
					 "text", "format", "type", "text", "tool_choice", "auto", "tools",
					 "truncation", "disabled");
	if (done)
		json_object_set_new(root, "usage", usage_value(answer));
	if (done && strcmp(reason, "length") == 0)
		json_object_set_new(root, "incomplete_details", json_pack("{s:s}", "reason", "max_output_tokens"));
	else if (done && strcmp(reason, "content_filter") == 0)
		json_object_set_new(root, "incomplete_details", json_pack("{s:s}", "reason", "content_filter"));
	return root;
}

char *
llmgw_responses_response(json_t *answer, const LlmgwFrontMeta *meta)
{
	json_t	   *root;
	char	   *text;

	if (!json_is_object(answer))
		return NULL;
	root = response_value(answer, meta, NULL, true);
	text = llmgw_json_dump(root);
	json_decref(root);
	return text;
}

/* --- the stream ----------------------------------------------------------- */

/* Append event type with its members (stolen), numbered */
static void
emit(LlmgwResponsesStream *st, StringInfo buf, const char *type, json_t *event)
{
	char	   *text;

	if (event == NULL)
		return;					/* not JSON: never, with what the parsers give */
	json_object_set_new(event, "type", json_string(type));
	json_object_set_new(event, "sequence_number", json_integer(st->sequence++));
	text = llmgw_json_dump(event);
	appendStringInfo(buf, "event: %s\ndata: %s\n\n", type, text);
	pfree(text);
	json_decref(event);
}

void
llmgw_responses_stream_start(LlmgwResponsesStream *st, StringInfo buf, const LlmgwFrontMeta *meta)
{
	memset(st, 0, sizeof(*st));
	st->message_output = -1;
	initStringInfo(&st->text);
	emit(st, buf, "response.created",
		 json_pack("{s:o}", "response", response_value(NULL, meta, json_array(), false)));
	emit(st, buf, "response.in_progress",
		 json_pack("{s:o}", "response", response_value(NULL, meta, json_array(), false)));
}

/* The output_text part of the message item, with the text given */
static json_t *
text_part(const char *text, size_t len)
{
	return json_pack("{s:s, s:o, s:[], s:[]}", "type", "output_text", "text", json_stringn(text, len),
					 "annotations", "logprobs");
}

/* Close the message item, if it is open: its .done events */
static void
close_message(LlmgwResponsesStream *st, StringInfo buf, const LlmgwFrontMeta *meta)
{
	json_t	   *item;

	if (!st->message_open)
		return;
	st->message_open = false;
	emit(st, buf, "response.output_text.done",
		 json_pack("{s:s, s:i, s:i, s:o, s:[]}", "item_id", message_id(meta),
				   "output_index", st->message_output, "content_index", 0,
				   "text", json_stringn(st->text.data, st->text.len), "logprobs"));
	emit(st, buf, "response.content_part.done",
		 json_pack("{s:s, s:i, s:i, s:o}", "item_id", message_id(meta),
				   "output_index", st->message_output, "content_index", 0,
				   "part", text_part(st->text.data, st->text.len)));
	item = message_item(meta, NULL, NULL, true);
	json_array_append_new(json_object_get(item, "content"), text_part(st->text.data, st->text.len));
	emit(st, buf, "response.output_item.done",
		 json_pack("{s:i, s:o}", "output_index", st->message_output, "item", item));
}

void
llmgw_responses_stream_text(LlmgwResponsesStream *st, StringInfo buf, const LlmgwFrontMeta *meta,
							const char *text, size_t len)
{
	json_t	   *delta = json_stringn(text, len);

	if (delta == NULL || len == 0)
	{
		json_decref(delta);
		return;					/* not UTF-8: never sent by a provider parser */
	}
	if (st->message_output < 0)
	{
		st->message_output = st->next_output++;
		st->message_open = true;
		emit(st, buf, "response.output_item.added",
			 json_pack("{s:i, s:o}", "output_index", st->message_output,
					   "item", message_item(meta, NULL, NULL, false)));
		emit(st, buf, "response.content_part.added",
			 json_pack("{s:s, s:i, s:i, s:o}", "item_id", message_id(meta),
					   "output_index", st->message_output, "content_index", 0,
					   "part", text_part("", 0)));
	}
	if (!st->message_open)
	{
		json_decref(delta);
		return;					/* text after the calls: in the final Response only */
	}
	appendBinaryStringInfo(&st->text, text, (int) len);
	emit(st, buf, "response.output_text.delta",
		 json_pack("{s:s, s:i, s:i, s:o, s:[]}", "item_id", message_id(meta),
				   "output_index", st->message_output, "content_index", 0, "delta", delta,
				   "logprobs"));
}

void
llmgw_responses_stream_call(LlmgwResponsesStream *st, StringInfo buf, const LlmgwFrontMeta *meta,
							int ordinal, bool start, const char *call_id, const char *name,
							const char *args, size_t len)
{
	json_t	   *piece;

	if (ordinal < 0 || ordinal >= LLMGW_RESPONSES_MAX_CALLS || (!start && ordinal >= st->ncalls))
		return;
	if (start)
	{
		json_t	   *id;

		if (ordinal != st->ncalls)
			return;				/* calls start in order */
		close_message(st, buf, meta);
		st->call_output[ordinal] = st->next_output++;
		initStringInfo(&st->call_args[ordinal]);
		st->ncalls++;
		id = call_id && *call_id ? text_value(call_id) :
			json_string(psprintf("call_%s_%d", hex_of(meta), ordinal));
		emit(st, buf, "response.output_item.added",
			 json_pack("{s:i, s:o}", "output_index", st->call_output[ordinal],
					   "item", call_item(meta, ordinal, id, name, "", false)));
		json_decref(id);
	}
	if (args == NULL || len == 0 || (piece = json_stringn(args, len)) == NULL)
		return;
	appendBinaryStringInfo(&st->call_args[ordinal], args, (int) len);
	emit(st, buf, "response.function_call_arguments.delta",
		 json_pack("{s:s, s:i, s:o}", "item_id", call_item_id(meta, ordinal),
				   "output_index", st->call_output[ordinal], "delta", piece));
}

void
llmgw_responses_stream_end(LlmgwResponsesStream *st, StringInfo buf, const LlmgwFrontMeta *meta,
						   const char *answer_json, const char *proof)
{
	json_t	   *loaded = llmgw_json_load(answer_json, strlen(answer_json), NULL);
	/* an answer that does not read: the Response of what was sent */
	json_t	   *answer = json_is_object(loaded) ? loaded : json_pack("{}");
	json_t	   *calls = json_object_get(json_object_get(answer, "message"), "tool_calls");
	json_t	   *text = json_object_get(json_object_get(answer, "message"), "content");
	json_t	   *output = json_array();
	json_t	   *response;
	json_t	   *event;
	const char *status;

	close_message(st, buf, meta);
	/* the items in the order they were sent, with what the answer says of them */
	for (int o = 0; o < st->next_output; o++)
	{
		if (o == st->message_output)
		{
			json_t	   *sent = json_stringn(st->text.data, st->text.len);

			json_array_append_new(output, message_item(meta, json_is_string(text) ? text : sent, answer,
													   true));
			json_decref(sent);
		}
		for (int k = 0; k < st->ncalls; k++)
		{
			json_t	   *c = json_array_get(calls, k);
			json_t	   *name = json_object_get(c, "name");
			json_t	   *id;
			json_t	   *item;

			if (st->call_output[k] != o)
				continue;
			id = call_id_value(c, meta, k);
			item = call_item(meta, k, id, json_string_value(name),
							 c ? llmgw_openai_tool_arguments(c) : st->call_args[k].data, true);
			emit(st, buf, "response.function_call_arguments.done",
				 json_pack("{s:s, s:i, s:O}", "item_id", call_item_id(meta, k), "output_index", o,
						   "arguments", json_object_get(item, "arguments")));
			emit(st, buf, "response.output_item.done",
				 json_pack("{s:i, s:O}", "output_index", o, "item", item));
			json_array_append_new(output, item);
			json_decref(id);
		}
	}
	response = response_value(answer, meta, output, true);
	status = json_string_value(json_object_get(response, "status"));
	event = json_pack("{s:o}", "response", response);
	if (proof)
	{
		json_t	   *p = llmgw_json_load(proof, strlen(proof), NULL);

		if (json_is_object(p))
			json_object_set(event, "llmgw", p);
		json_decref(p);
	}
	emit(st, buf, strcmp(status, "incomplete") == 0 ? "response.incomplete" : "response.completed",
		 event);
	json_decref(answer);
	if (loaded != answer)
		json_decref(loaded);
}

void
llmgw_responses_stream_error(LlmgwResponsesStream *st, StringInfo buf, const char *code,
							 const char *message)
{
	json_t	   *m = json_string(message ? message : "");

	/* (llmgw's messages are UTF-8; this is never sent) */
	if (m == NULL)
		m = json_string("the error's message is not UTF-8");
	emit(st, buf, "error", json_pack("{s:s?, s:o, s:n}", "code", code, "message", m, "param"));
}
