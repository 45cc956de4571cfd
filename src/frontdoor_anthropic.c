/*-------------------------------------------------------------------------
 *
 * frontdoor_anthropic.c
 *		The front door's Anthropic Messages API, as a client speaks it: its
 *		request read into llmgw's OpenAI-shaped chat request, and llmgw's
 *		normalised answer (response.c) written back as a Message, whole or
 *		as a stream of events.  This is the opposite direction of
 *		providers/anthropic.c.
 *
 * Prompt-cache marks (cache_control) are kept where Anthropic puts them: on
 * text and image parts, on a tool message (a tool_result's), on a tool
 * call (a tool_use's), on a tool and on the request itself (automatic
 * caching); an Anthropic deployment gets them back where they were, the
 * others drop them (translate.c).
 *
 * A system message in the conversation (Claude Code sends them) becomes a
 * system message of the chat request, as the request's system does.
 *
 * Extended thinking: the thinking parameter becomes the chat request's
 * "thinking", an assistant message's thinking and redacted_thinking blocks
 * its "thinking_blocks" (llmgw's own members, translate.c: an Anthropic
 * deployment gets them back as they were, the others drop them), and an
 * answer's thinking blocks come first in the Message, streamed as
 * thinking_delta and signature_delta events.
 *
 * top_k becomes the chat request's "top_k" (llmgw's own member, as
 * thinking: Anthropic and Gemini deployments get it, the OpenAI formats,
 * which have none, drop it).
 *
 * What is dropped on purpose: a tool result's is_error (a tool message has no
 * such flag; the result's text says what went wrong) and unknown
 * top-level members.  Documents become file parts (PDFs) or text parts
 * (plain text).  Everything else that cannot be translated (documents by
 * URL or file, server tools, file sources) is refused with an error naming
 * the field.
 *
 * Usage: Anthropic's input_tokens excludes prompt-cache reads and writes,
 * which it reports apart; llmgw's input_tokens is the sum of the three.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "frontdoor_anthropic.h"
#include "jsonutil.h"
#include "provider.h"
#include "translate.h"

/* Where a content block is, in errors */
#define BLOCK_AT "messages[%zu].content[%zu]"

/* The image media types Anthropic takes, and so its clients send */
static const char *const image_media_types[] = {
	"image/jpeg", "image/png", "image/gif", "image/webp", NULL
};

/* Are a and b the same, ignoring ASCII case? */
#define same_word(a, b) (pg_strcasecmp((a), (b)) == 0)

/* Does s start with prefix, ignoring ASCII case? */
#define starts_with(s, prefix) (pg_strncasecmp((s), (prefix), strlen(prefix)) == 0)

/*
 * Text as valid UTF-8 (palloc'd, NUL-terminated; *out_len its length, which
 * counts any NUL it holds): each byte that does not start a valid UTF-8
 * character becomes U+FFFD.  With cut, a character that the end of the text
 * cuts short is not replaced but left out, its length in *cut (0 if none).
 */
static char *
valid_utf8(const char *s, size_t len, size_t *out_len, int *cut)
{
	StringInfoData out;
	size_t		i = 0;

	initStringInfo(&out);
	if (cut)
		*cut = 0;
	while (i < len)
	{
		const unsigned char *c = (const unsigned char *) s + i;
		int			n = (*c < 0x80) ? 1 : pg_utf_mblen(c);

		if (n > 1 && i + n > len && cut)
		{
			/* a character cut short: only continuation bytes may follow */
			bool		prefix = true;

			for (size_t k = i + 1; k < len; k++)
				prefix = prefix && ((unsigned char) s[k] & 0xC0) == 0x80;
			if (prefix)
			{
				*cut = (int) (len - i);
				break;
			}
		}
		if (i + n <= len && (n == 1 ? *c < 0x80 : pg_utf8_islegal(c, n)))
		{
			appendBinaryStringInfo(&out, s + i, n);
			i += n;
		}
		else
		{
			appendStringInfoString(&out, "\xEF\xBF\xBD");
			i++;
		}
	}
	*out_len = out.len;
	return out.data;
}

/* A JSON string of any bytes (NULL as ""), made valid UTF-8 */
static json_t *
text_value(const char *s, size_t len)
{
	size_t		n;
	char	   *valid;

	if (s == NULL)
		return json_string("");
	valid = valid_utf8(s, len, &n, NULL);
	return json_stringn(valid, n);
}

/* A NUL-terminated string as a JSON string (NULL as "") */
static json_t *
cstring_value(const char *s)
{
	return text_value(s, s ? strlen(s) : 0);
}

/*
 * item (a part, a tool message, a tool call or a tool) with the
 * cache_control of the block it comes from, if it has one (checked when a
 * deployment that takes it builds its request)
 */
static json_t *
with_mark(json_t *block, json_t *item)
{
	json_t	   *mark = json_object_get(block, "cache_control");

	if (item != NULL && mark != NULL && !json_is_null(mark))
		json_object_set(item, "cache_control", mark);
	return item;
}

/*
 * The content of a message or tool result: a single text part (without a
 * cache_control) as its string, else the parts.  Steals parts.
 */
static json_t *
parts_content(json_t *parts)
{
	json_t	   *only = json_array_get(parts, 0);
	json_t	   *text;

	if (json_array_size(parts) != 1 || !llmgw_json_is_word(json_object_get(only, "type"), "text") ||
		json_object_get(only, "cache_control") != NULL)
		return parts;
	text = json_incref(json_object_get(only, "text"));
	json_decref(parts);
	return text;
}

/* A text block as a text part; NULL with *error set when it has no text */
static json_t *
text_part(json_t *block, const char *where, char **error)
{
	json_t	   *text = json_object_get(block, "text");

	if (json_is_string(text))
		return with_mark(block, json_pack("{s:s, s:O}", "type", "text", "text", text));
	*error = psprintf("%s is a \"text\" block without a \"text\" string", where);
	return NULL;
}

/*
 * The base64 data of a block's source as a data: URL of media type mt;
 * NULL with *error set when it has none, or none that is base64
 */
static char *
source_data_url(json_t *source, const char *mt, const char *where, char **error)
{
	json_t	   *data = json_object_get(source, "data");
	char	   *url;
	char	   *media_type;
	const char *b64;

	if (!json_is_string(data) || json_string_length(data) == 0 ||
		strlen(json_string_value(data)) != json_string_length(data))
	{
		*error = psprintf("%s.source has no \"data\" string", where);
		return NULL;
	}
	url = psprintf("data:%s;base64,%s", mt, json_string_value(data));
	if (llmgw_data_url(url, &media_type, &b64) == NULL)
		return url;
	*error = psprintf("%s.source.data is not base64 (A-Z, a-z, 0-9, + and /, then = padding, in a multiple of 4 characters)",
					  where);
	return NULL;
}

/*
 * An image block, {"source": {"type": "base64", "media_type", "data"}} or
 * {"source": {"type": "url", "url"}}, as an image_url part (a data: URL for
 * base64 data).  NULL with *error set.
 */
static json_t *
image_part(json_t *block, const char *where, char **error)
{
	json_t	   *source = json_object_get(block, "source");
	json_t	   *stype = json_object_get(source, "type");
	json_t	   *media = json_object_get(source, "media_type");
	json_t	   *url = json_object_get(source, "url");

	if (!json_is_object(source) || !json_is_string(stype))
		*error = psprintf("%s is an \"image\" block without a \"source\" object with a \"type\" string",
						  where);
	else if (llmgw_json_is_word(stype, "base64"))
	{
		const char *mt = json_string_value(media);

		bool		known = false;
		char	   *data_url;

		for (const char *const *t = image_media_types; mt && *t; t++)
			known = known || strcmp(*t, mt) == 0;
		if (mt == NULL || strlen(mt) != json_string_length(media))
			*error = psprintf("%s.source has no \"media_type\" string", where);
		else if (!known)
			*error = psprintf("%s.source.media_type is \"%.64s\", which is not an image type Anthropic takes (image/jpeg, image/png, image/gif or image/webp)",
							  where, mt);
		else if ((data_url = source_data_url(source, mt, where, error)) != NULL)
			return with_mark(block, json_pack("{s:s, s:{s:s}}", "type", "image_url",
											  "image_url", "url", data_url));
	}
	else if (llmgw_json_is_word(stype, "url"))
	{
		const char *u = json_string_value(url);

		if (u == NULL || strlen(u) != json_string_length(url) ||
			!(starts_with(u, "http://") || starts_with(u, "https://")))
			*error = psprintf("%s.source.url is not an http(s) URL", where);
		else
			return with_mark(block, json_pack("{s:s, s:{s:O}}", "type", "image_url",
											  "image_url", "url", url));
	}
	else
		*error = psprintf("%s.source.type is \"%.64s\", which llmgw does not take (it takes \"base64\" and \"url\" sources)",
						  where, json_string_value(stype));
	return NULL;
}

/*
 * A document block: a PDF, {"source": {"type": "base64", "media_type":
 * "application/pdf", "data"}}, as a file part (its title the filename); a
 * plain text one, {"source": {"type": "text", "data"}}, as a text part.
 * NULL with *error set.
 */
static json_t *
document_part(json_t *block, const char *where, char **error)
{
	json_t	   *source = json_object_get(block, "source");
	json_t	   *stype = json_object_get(source, "type");
	json_t	   *data = json_object_get(source, "data");
	json_t	   *title = json_object_get(block, "title");
	char	   *data_url;

	if (!json_is_object(source) || !json_is_string(stype))
		*error = psprintf("%s is a \"document\" block without a \"source\" object with a \"type\" string",
						  where);
	else if (!llmgw_json_absent(title) && !json_is_string(title))
		*error = psprintf("%s.title is not a string", where);
	else if (llmgw_json_is_word(stype, "text"))
	{
		if (json_is_string(data))
			return with_mark(block, json_pack("{s:s, s:O}", "type", "text", "text", data));
		*error = psprintf("%s.source has no \"data\" string", where);
	}
	else if (!llmgw_json_is_word(stype, "base64"))
		*error = psprintf("%s.source.type is \"%.64s\", which llmgw does not take for documents (it takes \"base64\" PDFs and \"text\")",
						  where, json_string_value(stype));
	else if (!llmgw_json_is_word(json_object_get(source, "media_type"), "application/pdf"))
		*error = psprintf("%s.source.media_type is not \"application/pdf\"", where);
	else if ((data_url = source_data_url(source, "application/pdf", where, error)) != NULL)
	{
		json_t	   *file = json_pack("{s:s}", "file_data", data_url);

		if (json_is_string(title))
			json_object_set(file, "filename", title);
		return with_mark(block, json_pack("{s:s, s:o}", "type", "file", "file", file));
	}
	return NULL;
}

/* The type of a content block; NULL with *error set when it has none */
static const char *
block_type(json_t *block, const char *where, char **error)
{
	const char *type = json_string_value(json_object_get(block, "type"));

	if (type == NULL)
		*error = psprintf("%s is not a content block (an object with a \"type\" string)", where);
	return type;
}

/* A block of a type llmgw does not take: NULL with *error set */
static json_t *
unknown_block(const char *where, const char *type, const char *takes, char **error)
{
	*error = psprintf("%s is a block of type \"%.64s\", which llmgw does not take here (it takes %s)",
					  where, type, takes);
	return NULL;
}

/*
 * A tool_result block's content (absent, a string, or text and image
 * blocks) as a tool message's content.  NULL with *error set.
 */
static json_t *
tool_result_content(json_t *content, const char *where, char **error)
{
	json_t	   *parts;
	size_t		k;
	json_t	   *b;

	if (llmgw_json_absent(content))
		return json_string("");
	if (json_is_string(content))
		return json_incref(content);
	if (!json_is_array(content))
	{
		*error = psprintf("%s.content is neither a string nor an array of content blocks", where);
		return NULL;
	}
	parts = json_array();
	json_array_foreach(content, k, b)
	{
		char	   *at = psprintf("%s.content[%zu]", where, k);
		const char *type = block_type(b, at, error);
		json_t	   *part = NULL;

		if (type == NULL)
			part = NULL;		/* *error says why */
		else if (strcmp(type, "text") == 0)
			part = text_part(b, at, error);
		else if (strcmp(type, "image") == 0)
			part = image_part(b, at, error);
		else
			unknown_block(at, type, "\"text\" and \"image\" blocks in a tool result", error);
		if (part == NULL)
		{
			json_decref(parts);
			return NULL;
		}
		json_array_append_new(parts, part);
	}
	if (json_array_size(parts) == 0)
	{
		json_decref(parts);
		return json_string("");
	}
	return parts_content(parts);
}

/*
 * A tool_result block as a tool message.  Its is_error has no place in a
 * tool message and is dropped.  NULL with *error set.
 */
static json_t *
tool_message(json_t *block, const char *where, char **error)
{
	json_t	   *id = json_object_get(block, "tool_use_id");
	json_t	   *content;

	if (!json_is_string(id))
	{
		*error = psprintf("%s is a \"tool_result\" block without a \"tool_use_id\" string", where);
		return NULL;
	}
	content = tool_result_content(json_object_get(block, "content"), where, error);
	if (content == NULL)
		return NULL;
	return with_mark(block, json_pack("{s:s, s:O, s:o}", "role", "tool", "tool_call_id", id,
									  "content", content));
}

/*
 * A user message's content blocks: each tool_result as a tool message, in
 * order, then the rest (text and images) as one user message.  False with
 * *error set.
 */
static bool
user_blocks(json_t *content, size_t i, json_t *messages, char **error)
{
	json_t	   *parts = json_array();
	size_t		results = 0;
	size_t		j;
	json_t	   *b;

	json_array_foreach(content, j, b)
	{
		char	   *at = psprintf(BLOCK_AT, i, j);
		const char *type = block_type(b, at, error);
		json_t	   *part = NULL;

		if (type == NULL)
			part = NULL;		/* *error says why */
		else if (strcmp(type, "text") == 0)
			part = text_part(b, at, error);
		else if (strcmp(type, "image") == 0)
			part = image_part(b, at, error);
		else if (strcmp(type, "document") == 0)
			part = document_part(b, at, error);
		else if (strcmp(type, "tool_result") == 0)
		{
			json_t	   *tool = tool_message(b, at, error);

			if (tool != NULL)
			{
				json_array_append_new(messages, tool);
				results++;
				continue;
			}
		}
		else if (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0 ||
				 strcmp(type, "tool_use") == 0)
			*error = psprintf("%s is a \"%s\" block in a user message: such blocks belong to assistant messages",
							  at, type);
		else
			unknown_block(at, type, "\"text\", \"image\", \"document\" and \"tool_result\" blocks in a user message",
						  error);
		if (part == NULL)
		{
			json_decref(parts);
			return false;
		}
		json_array_append_new(parts, part);
	}
	if (json_array_size(parts) > 0)
		json_array_append_new(messages, json_pack("{s:s, s:o}", "role", "user",
												  "content", parts_content(parts)));
	else
	{
		json_decref(parts);
		if (results == 0)
		{
			*error = psprintf("messages[%zu].content has no text, image, document or tool_result block", i);
			return false;
		}
	}
	return true;
}

/*
 * A tool_use block as a Chat Completions tool call, its input JSON-encoded.
 * NULL with *error set.
 */
static json_t *
tool_call(json_t *block, const char *where, char **error)
{
	json_t	   *id = json_object_get(block, "id");
	json_t	   *name = json_object_get(block, "name");
	json_t	   *input = json_object_get(block, "input");

	if (!json_is_string(id) || !json_is_string(name))
		*error = psprintf("%s is a \"tool_use\" block without \"id\" and \"name\" strings", where);
	else if (!llmgw_json_absent(input) && !json_is_object(input))
		*error = psprintf("%s.input is not an object", where);
	else
		return with_mark(block, json_pack("{s:O, s:s, s:{s:O, s:s}}", "id", id, "type", "function",
										  "function", "name", name,
										  "arguments", llmgw_json_absent(input) ? "{}" : llmgw_json_dump(input)));
	return NULL;
}

/*
 * A thinking block of an earlier answer, as the request sends it back (its
 * text and signature, or a redacted block's data): kept as it is, for an
 * Anthropic deployment to check
 */
static json_t *
thinking_block(json_t *block, const char *type, const char *where, char **error)
{
	json_t	   *data = json_object_get(block, "data");
	json_t	   *text = json_object_get(block, "thinking");
	json_t	   *signature = json_object_get(block, "signature");

	if (strcmp(type, "redacted_thinking") == 0)
	{
		if (json_is_string(data))
			return json_pack("{s:s, s:O}", "type", type, "data", data);
		*error = psprintf("%s is a \"redacted_thinking\" block without a \"data\" string", where);
	}
	else if (json_is_string(text) && json_is_string(signature))
		return json_pack("{s:s, s:O, s:O}", "type", type, "thinking", text, "signature", signature);
	else
		*error = psprintf("%s is a \"thinking\" block without a \"thinking\" and a \"signature\" string",
						  where);
	return NULL;
}

/*
 * An assistant message's content blocks as one assistant message: its
 * text (or null), its tool calls and its thinking blocks.  False with
 * *error set.
 */
static bool
assistant_blocks(json_t *content, size_t i, json_t *messages, char **error)
{
	json_t	   *parts = json_array();
	json_t	   *calls = json_array();
	json_t	   *thinking = json_array();
	json_t	   *message;
	size_t		j;
	json_t	   *b;

	json_array_foreach(content, j, b)
	{
		char	   *at = psprintf(BLOCK_AT, i, j);
		const char *type = block_type(b, at, error);
		json_t	   *item = NULL;
		json_t	   *into = parts;

		if (type == NULL)
			item = NULL;		/* *error says why */
		else if (strcmp(type, "text") == 0)
			item = text_part(b, at, error);
		else if (strcmp(type, "tool_use") == 0)
		{
			item = tool_call(b, at, error);
			into = calls;
		}
		else if (strcmp(type, "thinking") == 0 || strcmp(type, "redacted_thinking") == 0)
		{
			item = thinking_block(b, type, at, error);
			into = thinking;
		}
		else if (strcmp(type, "image") == 0 || strcmp(type, "tool_result") == 0)
			*error = psprintf("%s is an \"%s\" block in an assistant message: it belongs to user messages",
							  at, type);
		else
			unknown_block(at, type, "\"text\" and \"tool_use\" blocks in an assistant message",
						  error);
		if (item == NULL)
		{
			json_decref(parts);
			json_decref(calls);
			json_decref(thinking);
			return false;
		}
		json_array_append_new(into, item);
	}
	if (json_array_size(parts) > 0)
		message = json_pack("{s:s, s:o}", "role", "assistant", "content", parts_content(parts));
	else
	{
		json_decref(parts);
		message = json_pack("{s:s, s:o}", "role", "assistant", "content",
							json_array_size(calls) > 0 ? json_null() : json_string(""));
	}
	if (json_array_size(calls) > 0)
		json_object_set_new(message, "tool_calls", calls);
	else
		json_decref(calls);
	if (json_array_size(thinking) > 0)
		json_object_set_new(message, "thinking_blocks", thinking);
	else
		json_decref(thinking);
	json_array_append_new(messages, message);
	return true;
}

/*
 * system (a string, or text blocks; where names it in errors) as a system
 * message: the request's own system, leading, or a system message of the
 * conversation (as Claude Code sends them mid-conversation).  False with
 * *error set.
 */
static bool
translate_system(json_t *system, const char *where, json_t *messages, char **error)
{
	json_t	   *parts;
	size_t		j;
	json_t	   *b;

	if (llmgw_json_absent(system))
		return true;
	if (json_is_string(system))
	{
		if (json_string_length(system) > 0)
			json_array_append_new(messages, json_pack("{s:s, s:O}", "role", "system",
													  "content", system));
		return true;
	}
	if (!json_is_array(system))
	{
		*error = psprintf("%s is neither a string nor an array of text blocks", where);
		return false;
	}
	parts = json_array();
	json_array_foreach(system, j, b)
	{
		char	   *at = psprintf("%s[%zu]", where, j);
		const char *type = block_type(b, at, error);
		json_t	   *part = NULL;

		if (type && strcmp(type, "text") == 0)
			part = text_part(b, at, error);
		else if (type)
			unknown_block(at, type, "\"text\" blocks in a system message", error);
		if (part == NULL)
		{
			json_decref(parts);
			return false;
		}
		json_array_append_new(parts, part);
	}
	if (json_array_size(parts) == 0)
		json_decref(parts);
	else
		json_array_append_new(messages, json_pack("{s:s, s:o}", "role", "system",
												  "content", parts_content(parts)));
	return true;
}

/* Message i of the request, appended to messages.  False with *error set. */
static bool
translate_message(json_t *m, size_t i, json_t *messages, char **error)
{
	json_t	   *role = json_object_get(m, "role");
	json_t	   *content = json_object_get(m, "content");
	bool		user = llmgw_json_is_word(role, "user");

	if (!json_is_object(m))
		*error = psprintf("messages[%zu] is not an object", i);
	else if (llmgw_json_is_word(role, "system"))
		return translate_system(content, psprintf("messages[%zu].content", i), messages, error);
	else if (!user && !llmgw_json_is_word(role, "assistant"))
		*error = psprintf("messages[%zu].role is not \"user\", \"assistant\" or \"system\"", i);
	else if (json_is_string(content))
	{
		json_array_append_new(messages, json_pack("{s:s, s:O}", "role", user ? "user" : "assistant",
												  "content", content));
		return true;
	}
	else if (!json_is_array(content))
		*error = psprintf("messages[%zu].content is neither a string nor an array of content blocks", i);
	else if (user)
		return user_blocks(content, i, messages, error);
	else
		return assistant_blocks(content, i, messages, error);
	return false;
}


/*
 * tools [{name, description, input_schema}] as Chat Completions function
 * tools.  Anthropic's server tools (web search, code execution, ...) are
 * refused: no provider behind llmgw would run them.  False with *error set.
 */
static bool
translate_tools(json_t *req, json_t *out, char **error)
{
	json_t	   *tools = json_object_get(req, "tools");
	json_t	   *functions;
	size_t		i;
	json_t	   *t;

	if (llmgw_json_absent(tools))
		return true;
	if (!json_is_array(tools))
	{
		*error = pstrdup("tools is not an array");
		return false;
	}
	functions = json_array();
	json_array_foreach(tools, i, t)
	{
		json_t	   *type = json_object_get(t, "type");
		json_t	   *name = json_object_get(t, "name");
		json_t	   *schema = json_object_get(t, "input_schema");
		json_t	   *description = json_object_get(t, "description");
		json_t	   *fn;

		if (!json_is_object(t))
			*error = psprintf("tools[%zu] is not an object", i);
		else if (!llmgw_json_absent(type) && !llmgw_json_is_word(type, "custom"))
			*error = psprintf("tools[%zu] is a tool of type \"%.64s\", which llmgw does not take (it takes client tools: {name, description, input_schema})",
							  i, json_is_string(type) ? json_string_value(type) : "?");
		else if (!json_is_string(name) || json_string_length(name) == 0)
			*error = psprintf("tools[%zu] has no \"name\" string", i);
		else if (!json_is_object(schema))
			*error = psprintf("tools[%zu].input_schema is not an object", i);
		else if (!llmgw_json_absent(description) && !json_is_string(description))
			*error = psprintf("tools[%zu].description is not a string", i);
		else
		{
			fn = json_pack("{s:O}", "name", name);
			if (json_is_string(description))
				json_object_set(fn, "description", description);
			json_object_set(fn, "parameters", schema);
			json_array_append_new(functions, with_mark(t, json_pack("{s:s, s:o}", "type", "function",
																	"function", fn)));
			continue;
		}
		json_decref(functions);
		return false;
	}
	/* Chat Completions refuses an empty tools array: none is none */
	if (json_array_size(functions) > 0)
		json_object_set_new(out, "tools", functions);
	else
		json_decref(functions);
	return true;
}

/*
 * tool_choice {type: auto|any|tool|none, name} as Chat Completions'
 * tool_choice; disable_parallel_tool_use as parallel_tool_calls false
 * (which Chat Completions takes only with tools).  False with *error set.
 */
static bool
translate_tool_choice(json_t *req, json_t *out, char **error)
{
	json_t	   *tc = json_object_get(req, "tool_choice");
	json_t	   *type = json_object_get(tc, "type");
	json_t	   *name = json_object_get(tc, "name");
	json_t	   *choice;

	if (llmgw_json_absent(tc))
		return true;
	if (llmgw_json_is_word(type, "auto"))
		choice = json_string("auto");
	else if (llmgw_json_is_word(type, "any"))
		choice = json_string("required");
	else if (llmgw_json_is_word(type, "none"))
		choice = json_string("none");
	else if (llmgw_json_is_word(type, "tool") && json_is_string(name))
		choice = json_pack("{s:s, s:{s:O}}", "type", "function", "function", "name", name);
	else
	{
		*error = pstrdup("tool_choice is not {\"type\": \"auto\"}, {\"type\": \"any\"}, {\"type\": \"tool\", \"name\": ...} or {\"type\": \"none\"}");
		return false;
	}
	json_object_set_new(out, "tool_choice", choice);
	if (json_is_true(json_object_get(tc, "disable_parallel_tool_use")) &&
		json_object_get(out, "tools") != NULL)
		json_object_set_new(out, "parallel_tool_calls", json_false());
	return true;
}

/*
 * max_tokens, thinking, temperature, top_p, top_k, stop_sequences, stream
 * and metadata.user_id.  False with *error set.
 */
static bool
translate_settings(json_t *req, json_t *out, bool *stream, char **error)
{
	json_t	   *max_tokens = json_object_get(req, "max_tokens");
	json_t	   *stop = json_object_get(req, "stop_sequences");
	json_t	   *streamed = json_object_get(req, "stream");
	json_t	   *metadata = json_object_get(req, "metadata");
	json_t	   *user = json_object_get(metadata, "user_id");
	const char *const numbers[] = {"temperature", "top_p"};
	size_t		i;
	json_t	   *s;

	json_t	   *thinking;
	json_t	   *top_k;

	if (!json_is_integer(max_tokens) || json_integer_value(max_tokens) <= 0)
	{
		*error = pstrdup("max_tokens is missing or not a positive integer");
		return false;
	}
	json_object_set(out, "max_tokens", max_tokens);
	if (!llmgw_thinking(req, &thinking, error))
		return false;
	if (thinking)
		json_object_set(out, "thinking", thinking);
	if (!llmgw_top_k(req, &top_k, error))
		return false;
	if (top_k)
		json_object_set(out, "top_k", top_k);
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
	if (!llmgw_json_absent(stop))
	{
		bool		strings = json_is_array(stop);

		json_array_foreach(stop, i, s)
			strings = strings && json_is_string(s);
		if (!strings)
		{
			*error = pstrdup("stop_sequences is not an array of strings");
			return false;
		}
		if (json_array_size(stop) > 0)
			json_object_set(out, "stop", stop);
	}
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
	if (!llmgw_json_absent(metadata) && !json_is_object(metadata))
	{
		*error = pstrdup("metadata is not an object");
		return false;
	}
	if (json_is_string(user))
		json_object_set(out, "user", user);
	else if (!llmgw_json_absent(user))
	{
		*error = pstrdup("metadata.user_id is not a string");
		return false;
	}
	/* automatic prompt caching: the request's own mark */
	with_mark(req, out);
	return true;
}

/*
 * The request body as a JSON object; NULL with *error set when it is not
 * one.  A string holding \u0000 is refused: llmgw's providers read
 * requests as C strings.
 */
static json_t *
read_body(const char *body, size_t len, char **error)
{
	json_error_t jerr;
	json_t	   *req = body ? llmgw_json_load(body, len, &jerr) : NULL;
	json_t	   *with_nul;

	*error = NULL;
	if (json_is_object(req))
		return req;
	if (req != NULL || body == NULL)
		*error = pstrdup("the request body is not a JSON object");
	else if ((with_nul = json_loadb(body, len, JSON_ALLOW_NUL, NULL)) != NULL)
	{
		json_decref(with_nul);
		*error = pstrdup("the request body holds a \\u0000 character in a string, which llmgw does not take");
	}
	else
		*error = psprintf("the request body is not valid JSON (line %d, column %d: %.200s)",
						  jerr.line, jerr.column, jerr.text);
	json_decref(req);
	return NULL;
}

/*
 * The Anthropic Messages request a client sent, as llmgw's OpenAI-shaped
 * chat request (palloc'd JSON text, without "model"); *model gets the
 * "model" member and *stream the "stream" member.  NULL with *error set
 * (one sentence naming the field) when the request is malformed.
 */
char *
llmgw_anthropic_to_chat(const char *body, size_t len, char **model, bool *stream,
						char **error)
{
	json_t	   *req = read_body(body, len, error);
	json_t	   *name = json_object_get(req, "model");
	json_t	   *messages = json_object_get(req, "messages");
	json_t	   *out = NULL;
	json_t	   *chat;
	char	   *text = NULL;
	size_t		i;
	json_t	   *m;

	*model = NULL;
	*stream = false;
	if (req == NULL)
		return NULL;			/* read_body said why */
	if (!json_is_string(name))
		*error = pstrdup("model is missing or not a string");
	else if (json_string_length(name) == 0)
		*error = pstrdup("model is empty");
	else if (!json_is_array(messages) || json_array_size(messages) == 0)
		*error = pstrdup("messages is missing, empty or not an array");
	else
	{
		chat = json_array();
		out = json_pack("{s:o}", "messages", chat);
		if (translate_system(json_object_get(req, "system"), "system", chat, error))
		{
			json_array_foreach(messages, i, m)
			{
				if (!translate_message(m, i, chat, error))
					break;
			}
		}
		if (*error == NULL && json_array_size(chat) == 0)
			*error = pstrdup("messages holds no content");
		if (*error == NULL && translate_tools(req, out, error) &&
			translate_tool_choice(req, out, error) &&
			translate_settings(req, out, stream, error))
		{
			*model = pnstrdup(json_string_value(name), json_string_length(name));
			text = llmgw_json_dump(out);
		}
	}
	if (text == NULL)
	{
		*stream = false;
		if (*error == NULL)
			*error = pstrdup("the request could not be translated");
	}
	json_decref(out);
	json_decref(req);
	return text;
}

/* Token counts of a normalised answer, each 0 when unknown */
typedef struct AnswerUsage
{
	int64		input;			/* Anthropic's: cache reads and writes excluded */
	int64		output;
	int64		cache_read;
	int64		cache_write;
} AnswerUsage;

/* A count of the answer's usage, 0 when unknown */
static int64
known(json_t *usage, const char *key)
{
	int64		n = llmgw_json_count(usage, key);

	return n == LLMGW_TOKENS_UNKNOWN ? 0 : n;
}

/* The answer's usage in Anthropic's terms */
static AnswerUsage
answer_usage(json_t *answer)
{
	json_t	   *usage = json_object_get(answer, "usage");
	AnswerUsage u;

	u.output = known(usage, "output_tokens");
	u.cache_read = known(usage, "cached_input_tokens");
	u.cache_write = known(usage, "cache_write_tokens");
	/* never below 0 (and no overflow on absurd counts) */
	u.input = known(usage, "input_tokens");
	u.input -= Min(u.input, u.cache_read);
	u.input -= Min(u.input, u.cache_write);
	return u;
}

/*
 * A usage object.  Anthropic's SDKs and clients read these as numbers (they
 * add them up), so an unknown count is 0, never null.
 */
static json_t *
usage_value(const AnswerUsage *u)
{
	return json_pack("{s:I, s:I, s:I, s:I}",
					 "input_tokens", (json_int_t) u->input,
					 "cache_creation_input_tokens", (json_int_t) u->cache_write,
					 "cache_read_input_tokens", (json_int_t) u->cache_read,
					 "output_tokens", (json_int_t) u->output);
}

/*
 * Anthropic's stop_reason for a normalised answer, from the provider's own
 * finish reason (OpenAI, Anthropic, Gemini, Responses API).  A stop-like
 * reason with tool calls (the answer's) is tool_use; a tool-call reason
 * without any is end_turn; a stop-like reason of an answer that a known
 * stop sequence ended (vLLM says which) is stop_sequence.
 */
static const char *
stop_reason(json_t *answer, json_t *tool_calls)
{
	const char *finish = json_string_value(json_object_get(answer, "finish_reason"));
	bool		calls = json_array_size(tool_calls) > 0;
	bool		sequence = json_is_string(json_object_get(answer, "stop_sequence"));
	static const char *const max_tokens[] = {
		"length", "max_tokens", "incomplete", "max_output_tokens",
		"model_context_window_exceeded", NULL
	};
	static const char *const refusal[] = {
		"refusal", "content_filter", "safety", "recitation", "blocklist",
		"prohibited_content", "spii", "image_safety", "language", NULL
	};
	static const char *const tool_use[] = {"tool_use", "tool_calls", "function_call", NULL};

	for (int k = 0; finish && max_tokens[k]; k++)
		if (same_word(finish, max_tokens[k]))
			return "max_tokens";
	for (int k = 0; finish && refusal[k]; k++)
		if (same_word(finish, refusal[k]))
			return "refusal";
	if (finish && same_word(finish, "stop_sequence"))
		return "stop_sequence";
	for (int k = 0; finish && !calls && tool_use[k]; k++)
		if (same_word(finish, tool_use[k]))
			return "end_turn";
	/* stop, end_turn, STOP, completed, pause_turn, unknown, none: stop-like */
	return calls ? "tool_use" : sequence ? "stop_sequence" : "end_turn";
}

/* The stop sequence that ended the answer, or null (a new reference) */
static json_t *
stop_sequence(json_t *answer)
{
	json_t	   *seq = json_object_get(answer, "stop_sequence");

	return json_is_string(seq) ? json_incref(seq) : json_null();
}

/*
 * A tool call's input: its arguments, an object as Anthropic gives, or {}
 * when there are none.  Arguments that were not JSON (response.c leaves
 * them as the string the provider sent) are kept as that string rather
 * than lost.
 */
static json_t *
tool_input(json_t *call)
{
	json_t	   *args = json_object_get(call, "arguments");

	return llmgw_json_absent(args) ? json_pack("{}") : json_incref(args);
}

/* A tool call's id, or one made from its position when the provider gave none */
static json_t *
tool_id(json_t *call, size_t k)
{
	json_t	   *id = json_object_get(call, "id");

	if (json_is_string(id) && json_string_length(id) > 0)
		return json_incref(id);
	return json_string(psprintf("toolu_llmgw_%zu", k));
}

/* A tool call's name ("" when missing) */
static json_t *
tool_name(json_t *call)
{
	json_t	   *name = json_object_get(call, "name");

	return json_is_string(name) ? json_incref(name) : json_string("");
}

/* The normalised answer, or NULL when it is not a JSON object */
static json_t *
load_answer(const char *answer_json)
{
	json_t	   *answer = answer_json ?
		llmgw_json_load(answer_json, strlen(answer_json), NULL) : NULL;

	if (json_is_object(answer))
		return answer;
	json_decref(answer);
	return NULL;
}

/* The message id: msg_<id>, unless it starts so already */
static json_t *
message_id(const char *id, json_t *answer)
{
	const char *given = id ? id : json_string_value(json_object_get(answer, "id"));

	if (given == NULL || *given == '\0')
		return json_string("msg_llmgw");
	if (strncmp(given, "msg_", 4) == 0)
		return cstring_value(given);
	return cstring_value(psprintf("msg_%s", given));
}

/*
 * Is this block of a normalised answer's thinking_blocks one to give a
 * client: a thinking block with its text (and a signature string, if any)
 * or a redacted_thinking block with its data?
 */
static bool
thinking_block_ok(json_t *block)
{
	json_t	   *signature = json_object_get(block, "signature");

	if (llmgw_json_is_word(json_object_get(block, "type"), "redacted_thinking"))
		return json_is_string(json_object_get(block, "data"));
	return llmgw_json_is_word(json_object_get(block, "type"), "thinking") &&
		json_is_string(json_object_get(block, "thinking")) &&
		(signature == NULL || json_is_string(signature));
}

/*
 * The Anthropic Message a client receives for a normalised answer
 * (palloc'd JSON text).  NULL if answer_json is not a JSON object.
 */
char *
llmgw_anthropic_message(const char *answer_json, const char *model, const char *id)
{
	json_t	   *answer = load_answer(answer_json);
	char	   *result = llmgw_anthropic_message_value(answer, model, id);

	json_decref(answer);
	return result;
}

/* The same, for a normalised answer already read (borrowed) */
char *
llmgw_anthropic_message_value(json_t *answer, const char *model, const char *id)
{
	json_t	   *message;
	json_t	   *content;
	json_t	   *text;
	json_t	   *calls;
	json_t	   *root;
	AnswerUsage usage;
	size_t		k;
	json_t	   *call;
	json_t	   *block;
	char	   *result;

	if (!json_is_object(answer))
		return NULL;
	message = json_object_get(answer, "message");
	text = json_object_get(message, "content");
	calls = json_object_get(message, "tool_calls");
	content = json_array();
	/* thinking first, as the provider gave it */
	json_array_foreach(json_object_get(message, "thinking_blocks"), k, block)
		if (thinking_block_ok(block))
			json_array_append(content, block);
	if (json_is_string(text) && json_string_length(text) > 0)
		json_array_append_new(content, json_pack("{s:s, s:O}", "type", "text", "text", text));
	json_array_foreach(calls, k, call)
		json_array_append_new(content, json_pack("{s:s, s:o, s:o, s:o}", "type", "tool_use",
												 "id", tool_id(call, k),
												 "name", tool_name(call),
												 "input", tool_input(call)));
	usage = answer_usage(answer);
	root = json_pack("{s:o, s:s, s:s, s:o, s:o, s:s, s:o, s:o}",
					 "id", message_id(id, answer),
					 "type", "message",
					 "role", "assistant",
					 "model", model ? cstring_value(model) :
					 json_is_string(json_object_get(answer, "model")) ?
					 json_incref(json_object_get(answer, "model")) : json_string(""),
					 "content", content,
					 "stop_reason",
					 stop_reason(answer, calls),
					 "stop_sequence", stop_sequence(answer),
					 "usage", usage_value(&usage));
	result = root ? llmgw_json_dump(root) : NULL;
	json_decref(root);
	return result;
}

/* Append one event, "event: NAME\ndata: JSON\n\n", and release data */
static void
emit(StringInfo buf, const char *name, json_t *data)
{
	appendStringInfo(buf, "event: %s\ndata: %s\n\n", name, llmgw_json_dump(data));
	json_decref(data);
}

/* content_block_stop of block index */
static void
emit_block_stop(StringInfo buf, int index)
{
	emit(buf, "content_block_stop", json_pack("{s:s, s:i}", "type", "content_block_stop",
											  "index", index));
}

/* Close the block that is open (text, tool_use or thinking), if one is */
static void
close_block(LlmgwAnthropicStream *st, StringInfo buf)
{
	if (st->text_open || st->tool_open || st->thinking_open)
		emit_block_stop(buf, st->next_index - 1);
	st->text_open = st->tool_open = st->thinking_open = false;
}

/* content_block_start of a new block (stolen), the one now open */
static void
emit_block_start(LlmgwAnthropicStream *st, StringInfo buf, json_t *block)
{
	close_block(st, buf);
	emit(buf, "content_block_start",
		 json_pack("{s:s, s:i, s:o}", "type", "content_block_start",
				   "index", st->next_index, "content_block", block));
	st->next_index++;
}

/* A text delta (valid UTF-8) in the open text block, opening it if need be */
static void
emit_text(LlmgwAnthropicStream *st, StringInfo buf, const char *text, size_t len)
{
	if (len == 0)
		return;
	if (st->tool_open || st->thinking_open)
		close_block(st, buf);
	if (!st->text_open)
	{
		emit(buf, "content_block_start",
			 json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_start",
					   "index", st->next_index, "content_block", "type", "text", "text", ""));
		st->text_open = true;
		st->next_index++;
	}
	emit(buf, "content_block_delta",
		 json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta",
				   "index", st->next_index - 1, "delta", "type", "text_delta",
				   "text", json_stringn(text, len)));
	st->text_sent = true;
}

/* message_start (usage zeros, content []) appended to buf */
void
llmgw_anthropic_stream_start(LlmgwAnthropicStream *st, StringInfo buf, const char *model,
							 const char *id)
{
	AnswerUsage zero = {0, 0, 0, 0};

	memset(st, 0, sizeof(*st));
	emit(buf, "message_start",
		 json_pack("{s:s, s:{s:o, s:s, s:s, s:o, s:[], s:n, s:n, s:o}}",
				   "type", "message_start",
				   "message",
				   "id", message_id(id ? id : "", NULL),
				   "type", "message",
				   "role", "assistant",
				   "model", cstring_value(model),
				   "content",
				   "stop_reason",
				   "stop_sequence",
				   "usage", usage_value(&zero)));
}

/*
 * A piece of the answer's text.  A UTF-8 character the piece cuts short is
 * kept for the next piece; bytes that are not UTF-8 become U+FFFD.
 */
void
llmgw_anthropic_stream_text(LlmgwAnthropicStream *st, StringInfo buf, const char *text,
							size_t len)
{
	StringInfoData joined;
	char	   *valid;
	size_t		n;
	int			cut;

	if (text == NULL)
		len = 0;
	initStringInfo(&joined);
	appendBinaryStringInfo(&joined, st->pending, st->pending_len);
	if (len > 0)
		appendBinaryStringInfo(&joined, text, (int) len);
	valid = valid_utf8(joined.data, joined.len, &n, &cut);
	st->pending_len = cut;
	memcpy(st->pending, joined.data + joined.len - cut, cut);
	emit_text(st, buf, valid, n);
}

/*
 * A piece of the answer's extended thinking: a thinking block's start, a
 * piece of its text or signature (opening a block if none is open), or a
 * whole redacted_thinking block.  Pieces are the provider's JSON strings
 * (valid UTF-8); one that is not is dropped.
 */
void
llmgw_anthropic_stream_thinking(LlmgwAnthropicStream *st, StringInfo buf, int what,
								const char *piece, size_t len)
{
	json_t	   *value = piece ? json_stringn(piece, len) : NULL;

	if (piece && value == NULL)
		return;
	if (what == LLMGW_THINKING_REDACTED)
	{
		emit_block_start(st, buf, json_pack("{s:s, s:o}", "type", "redacted_thinking",
											"data", value));
		emit_block_stop(buf, st->next_index - 1);
		st->thinking_sent = true;
		return;
	}
	if (what == LLMGW_THINKING_START || !st->thinking_open)
	{
		emit_block_start(st, buf, json_pack("{s:s, s:s, s:s}", "type", "thinking",
											"thinking", "", "signature", ""));
		st->thinking_open = st->thinking_sent = true;
	}
	if (value == NULL)
		return;
	emit(buf, "content_block_delta",
		 json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta",
				   "index", st->next_index - 1, "delta",
				   "type", what == LLMGW_THINKING_TEXT ? "thinking_delta" : "signature_delta",
				   what == LLMGW_THINKING_TEXT ? "thinking" : "signature", value));
}

/* The thinking blocks of a normalised answer (borrowed), each whole */
void
llmgw_anthropic_stream_thinking_blocks(LlmgwAnthropicStream *st, StringInfo buf,
									   json_t *blocks)
{
	size_t		i;
	json_t	   *b;

	json_array_foreach(blocks, i, b)
	{
		json_t	   *data = json_object_get(b, "data");
		json_t	   *text = json_object_get(b, "thinking");
		json_t	   *signature = json_object_get(b, "signature");

		if (!thinking_block_ok(b))
			continue;
		if (json_is_string(data) && llmgw_json_is_word(json_object_get(b, "type"), "redacted_thinking"))
			llmgw_anthropic_stream_thinking(st, buf, LLMGW_THINKING_REDACTED, json_string_value(data),
											json_string_length(data));
		else if (json_is_string(text))
		{
			llmgw_anthropic_stream_thinking(st, buf, LLMGW_THINKING_START, NULL, 0);
			llmgw_anthropic_stream_thinking(st, buf, LLMGW_THINKING_TEXT, json_string_value(text),
											json_string_length(text));
			if (json_is_string(signature))
				llmgw_anthropic_stream_thinking(st, buf, LLMGW_THINKING_SIGNATURE,
												json_string_value(signature),
												json_string_length(signature));
		}
	}
}

/*
 * The start of the answer's tool call k (id NULL: one made from k): closes
 * the block that is open, opens a tool_use block; returns its index
 */
int
llmgw_anthropic_stream_tool_start(LlmgwAnthropicStream *st, StringInfo buf, size_t k,
								  const char *id, const char *name)
{
	json_t	   *call = json_pack("{s:s?, s:s?}", "id", id, "name", name);

	close_block(st, buf);
	emit(buf, "content_block_start",
		 json_pack("{s:s, s:i, s:{s:s, s:o, s:o, s:{}}}", "type", "content_block_start",
				   "index", st->next_index, "content_block", "type", "tool_use",
				   "id", tool_id(call, k), "name", tool_name(call), "input"));
	json_decref(call);
	st->tool_open = true;
	return st->next_index++;
}

/*
 * A piece of the input JSON of the tool_use block at index block; false
 * (nothing sent) when that block is no longer open
 */
bool
llmgw_anthropic_stream_tool_input(LlmgwAnthropicStream *st, StringInfo buf, int block,
								  const char *json, size_t len)
{
	json_t	   *piece;

	if (!st->tool_open || block != st->next_index - 1)
		return false;
	if (len == 0)
		return true;
	piece = json_stringn(json, len);
	if (piece == NULL)
		return false;			/* not UTF-8: never sent by a provider parser */
	emit(buf, "content_block_delta",
		 json_pack("{s:s, s:i, s:{s:s, s:o}}", "type", "content_block_delta",
				   "index", block, "delta", "type", "input_json_delta", "partial_json", piece));
	return true;
}

/* A normalised tool call's input as the JSON text of a tool_use block */
char *
llmgw_anthropic_tool_input_json(json_t *call)
{
	json_t	   *input = tool_input(call);
	char	   *text = llmgw_json_dump(input);

	json_decref(input);
	return text;
}

/*
 * The end, given the final normalised answer (its tool calls went before,
 * llmgw_anthropic_stream_tool_start and _input): sends the answer's text if
 * none was streamed, closes the open block, then message_delta
 * (stop_reason, usage, and llmgw's route and billing proof, JSON text, in an
 * "llmgw" member when given) and message_stop.  An unreadable answer ends
 * the message with what was streamed (end_turn, usage unknown).
 */
void
llmgw_anthropic_stream_end(LlmgwAnthropicStream *st, StringInfo buf, const char *answer_json,
						   const char *proof)
{
	json_t	   *delta;
	json_t	   *answer = load_answer(answer_json);
	json_t	   *message = json_object_get(answer, "message");
	json_t	   *text = json_object_get(message, "content");
	json_t	   *calls = json_object_get(message, "tool_calls");
	AnswerUsage usage = answer_usage(answer);

	/* a character cut short that never came whole */
	if (st->pending_len > 0)
	{
		st->pending_len = 0;
		emit_text(st, buf, "\xEF\xBF\xBD", 3);
	}
	if (!st->text_sent && json_is_string(text))
		emit_text(st, buf, json_string_value(text), json_string_length(text));
	close_block(st, buf);
	delta = json_pack("{s:s, s:{s:s, s:o}, s:o}", "type", "message_delta",
					  "delta",
					  "stop_reason",
					  stop_reason(answer, calls),
					  "stop_sequence", stop_sequence(answer),
					  "usage", usage_value(&usage));
	if (proof && delta)
	{
		json_t	   *p = llmgw_json_load(proof, strlen(proof), NULL);

		if (json_is_object(p))
			json_object_set(delta, "llmgw", p);
		json_decref(p);
	}
	emit(buf, "message_delta", delta);
	emit(buf, "message_stop", json_pack("{s:s}", "type", "message_stop"));
	json_decref(answer);
}

/*
 * The error object {"type", "message", "code"?} (api_error when no type is
 * given; code: llmgw's stable error code, docs/http.md)
 */
static json_t *
error_value(const char *type, const char *message, const char *code)
{
	json_t	   *e = json_pack("{s:o, s:o}", "type", cstring_value(type ? type : "api_error"),
							  "message", cstring_value(message));

	if (code && e)
		json_object_set_new(e, "code", cstring_value(code));
	return e;
}

/* An error event mid-stream */
void
llmgw_anthropic_stream_error(StringInfo buf, const char *type, const char *code,
							 const char *message)
{
	emit(buf, "error", json_pack("{s:s, s:o}", "type", "error",
								 "error", error_value(type, message, code)));
}

/* The error body of a non-streamed response (palloc'd) */
char *
llmgw_anthropic_error(const char *type, const char *message)
{
	json_t	   *root = json_pack("{s:s, s:o}", "type", "error", "error",
								 error_value(type, message, NULL));
	char	   *text = llmgw_json_dump(root);

	json_decref(root);
	return text;
}

/*
 * Anthropic's error type for an HTTP status, as its API documents them;
 * any other 4xx is invalid_request_error, any other status api_error.
 */
const char *
llmgw_anthropic_error_type(int http_status)
{
	switch (http_status)
	{
		case 400:
			return "invalid_request_error";
		case 401:
			return "authentication_error";
		case 402:
			return "billing_error";
		case 403:
			return "permission_error";
		case 404:
			return "not_found_error";
		case 413:
			return "request_too_large";
		case 429:
			return "rate_limit_error";
		case 503:
		case 529:
			return "overloaded_error";
		case 504:
			return "timeout_error";
		default:
			return (http_status >= 400 && http_status < 500) ?
				"invalid_request_error" : "api_error";
	}
}
