/*-------------------------------------------------------------------------
 *
 * translate.c
 *		What every wire format that translates llmgw's Chat Completions
 *		request reads the same way: content parts, data: URLs and
 *		response_format.  A part a format cannot take is refused with an
 *		error naming it; none is ever dropped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "translate.h"

/* Where a part is, in errors */
#define PART_AT "messages[%zu].content[%zu]"

/* c in lower case, if it is an ASCII letter (whatever the locale) */
static char
ascii_lower(char c)
{
	return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* Does s start with prefix (lower case), ignoring ASCII case? */
static bool
starts_with(const char *s, const char *prefix)
{
	for (; *prefix; s++, prefix++)
		if (ascii_lower(*s) != *prefix)
			return false;
	return true;
}

/* Is c a character of base64's standard alphabet (padding aside)? */
static bool
base64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		c == '+' || c == '/';
}

/*
 * Split a data: URL, data:<media type>[;<parameter>];base64,<data>, into
 * its media type (palloc'd, lower case, "" when absent) and its base64 data
 * (within url).  Returns NULL, or what is wrong with it ("it has no
 * data after the comma").
 */
const char *
llmgw_data_url(const char *url, char **media_type, const char **data)
{
	const char *header = url + 5;
	const char *comma;
	size_t		len;
	size_t		pad = 0;

	if (!starts_with(url, "data:"))
		return "it does not start with \"data:\"";
	comma = strchr(header, ',');
	if (comma == NULL)
		return "it has no comma before its data";
	if (comma - header < 7 || !starts_with(comma - 7, ";base64"))
		return "it is not base64-encoded (\";base64\" must come right before the comma)";
	*media_type = pnstrdup(header, strcspn(header, ";,"));
	for (char *c = *media_type; *c; c++)
		*c = ascii_lower(*c);
	*data = comma + 1;
	len = strlen(*data);
	if (len == 0)
		return "it has no data after the comma";
	for (size_t i = 0; i < len; i++)
	{
		if ((*data)[i] == '=')
			pad++;
		else if (pad > 0 || !base64_char((*data)[i]))
			return "its data is not base64 (A-Z, a-z, 0-9, + and / only, then = padding)";
	}
	if (pad > 2 || len % 4 != 0)
		return "its data is not base64 (its length is not a multiple of 4)";
	return NULL;
}

/* Is media_type one of the NULL-terminated list? */
static bool
listed(const char *const *list, const char *media_type)
{
	for (; *list; list++)
		if (strcmp(*list, media_type) == 0)
			return true;
	return false;
}

/* The list as text for an error: "image/png, image/jpeg" */
static char *
list_text(const char *const *list)
{
	StringInfoData s;

	initStringInfo(&s);
	for (; *list; list++)
		appendStringInfo(&s, "%s%s", s.len ? ", " : "", *list);
	return s.data;
}

/*
 * Read an image_url part, {"image_url": {"url", "detail"}} (or a bare URL
 * string): a data: URL of a media type rules take, or an http(s) URL when
 * they take those.
 */
static bool
read_image(json_t *part, size_t msg, size_t idx, const LlmgwPartRules *rules,
		   LlmgwPart *out, char **error)
{
	json_t	   *image = json_object_get(part, "image_url");
	const char *url;
	const char *fault;

	out->url = json_is_object(image) ? json_object_get(image, "url") : image;
	out->detail = json_object_get(image, "detail");
	url = json_string_value(out->url);
	if (url == NULL)
		*error = psprintf(PART_AT " is an \"image_url\" part without a \"url\" string", msg, idx);
	else if (starts_with(url, "data:"))
	{
		if ((fault = llmgw_data_url(url, &out->media_type, &out->data)) != NULL)
			*error = psprintf(PART_AT " has an invalid data: URL: %s", msg, idx, fault);
		else if (!listed(rules->media_types, out->media_type))
			*error = psprintf(PART_AT " is an image of media type \"%.64s\", which provider kind \"%s\" does not take (it takes %s)",
							  msg, idx, out->media_type, rules->kind, list_text(rules->media_types));
		else
			return true;
	}
	else if (!starts_with(url, "http://") && !starts_with(url, "https://"))
		*error = psprintf(PART_AT " has an image URL that is neither a data: URL nor an http(s) URL",
						  msg, idx);
	else if (!rules->image_urls)
		*error = psprintf(PART_AT " gives an image by its http(s) URL, which provider kind \"%s\" cannot send: pass the image as a data: URL (data:image/png;base64,...)",
						  msg, idx, rules->kind);
	else
		return true;
	return false;
}

/*
 * Read a file part, {"file": {"file_data": <data: URL>, "filename"}} or
 * {"file": {"file_id"}}: inline data of a media type rules take as a
 * document, or an OpenAI file id when they take those.
 */
static bool
read_file(json_t *part, size_t msg, size_t idx, const LlmgwPartRules *rules,
		  LlmgwPart *out, char **error)
{
	json_t	   *file = json_object_get(part, "file");
	json_t	   *filename = json_object_get(file, "filename");
	const char *data;
	const char *fault;

	out->file = true;
	out->url = json_object_get(file, "file_data");
	out->file_id = json_object_get(file, "file_id");
	out->filename = json_is_string(filename) ? filename : NULL;
	data = json_string_value(out->url);
	if (!json_is_object(file) || (data == NULL && !json_is_string(out->file_id)))
		*error = psprintf(PART_AT " is a \"file\" part without a \"file\" object holding a \"file_data\" or \"file_id\" string",
						  msg, idx);
	else if (filename != NULL && !json_is_null(filename) && !json_is_string(filename))
		*error = psprintf(PART_AT " is a \"file\" part whose \"filename\" is not a string", msg, idx);
	else if (rules->file_types == NULL)
		*error = psprintf(PART_AT " is a file, which provider kind \"%s\" does not take", msg, idx,
						  rules->kind);
	else if (data == NULL)
	{
		if (rules->file_ids)
			return true;
		*error = psprintf(PART_AT " gives a file by its OpenAI file_id, which provider kind \"%s\" cannot send: pass the file inline as file_data (data:application/pdf;base64,...)",
						  msg, idx, rules->kind);
	}
	else if ((fault = llmgw_data_url(data, &out->media_type, &out->data)) != NULL)
		*error = psprintf(PART_AT " has an invalid file_data: %s", msg, idx, fault);
	else if (!listed(rules->file_types, out->media_type))
		*error = psprintf(PART_AT " is a file of media type \"%.64s\", which provider kind \"%s\" does not take (it takes %s)",
						  msg, idx, out->media_type, rules->kind, list_text(rules->file_types));
	else
	{
		out->file_id = NULL;	/* inline data, whatever the id */
		return true;
	}
	return false;
}

/*
 * The prompt-cache mark of a content part, message, tool call or tool
 * (Anthropic's cache_control, which llmgw's requests carry where Anthropic
 * puts it): {"type": "ephemeral"} with an optional "ttl" of "5m" or "1h".
 * *mark is the mark (borrowed) or NULL when there is none.  False with
 * *error set (naming where) when it is anything else.
 */
bool
llmgw_cache_control(json_t *holder, json_t **mark, const char *where, char **error)
{
	json_t	   *cc = json_object_get(holder, "cache_control");
	json_t	   *ttl = json_object_get(cc, "ttl");
	const char *type = json_string_value(json_object_get(cc, "type"));
	const char *t = json_string_value(ttl);

	*mark = NULL;
	if (cc == NULL || json_is_null(cc))
		return true;
	if (json_is_object(cc) && type != NULL && strcmp(type, "ephemeral") == 0 &&
		json_object_size(cc) == (ttl ? 2 : 1) &&
		(ttl == NULL || (t != NULL && (strcmp(t, "5m") == 0 || strcmp(t, "1h") == 0))))
	{
		*mark = cc;
		return true;
	}
	*error = psprintf("%s has a cache_control that is not {\"type\": \"ephemeral\"} with an optional \"ttl\" of \"5m\" or \"1h\"",
					  where);
	return false;
}

/*
 * As llmgw_cache_control, where naming the holder lazily: a format of two
 * indexes (b unused by some), made only for an error
 */
bool
llmgw_cache_control_at(json_t *holder, json_t **mark, const char *where, size_t a, size_t b,
					   char **error)
{
	*mark = NULL;
	return json_object_get(holder, "cache_control") == NULL ||
		llmgw_cache_control(holder, mark, psprintf(where, a, b), error);
}

/* Does a message's content (an array of parts) hold a cache_control? */
bool
llmgw_has_cache_control(json_t *content)
{
	size_t		i;
	json_t	   *p;
	json_t	   *mark;

	json_array_foreach(content, i, p)
		if ((mark = json_object_get(p, "cache_control")) != NULL && !json_is_null(mark))
			return true;
	return false;
}

/* Check and remove the cache_control of o (named as llmgw_cache_control_at) */
static bool
strip_mark(json_t *o, const char *where, size_t a, size_t b, char **error)
{
	json_t	   *mark;

	if (!llmgw_cache_control_at(o, &mark, where, a, b, error))
		return false;
	json_object_del(o, "cache_control");
	return true;
}

/*
 * The request's extended thinking setting (Anthropic's "thinking": an
 * object with a "type" string, and with "enabled" a positive integer
 * "budget_tokens"), borrowed into *thinking (NULL: none given).  False with
 * *error set when it is malformed.
 */
bool
llmgw_thinking(json_t *request, json_t **thinking, char **error)
{
	json_t	   *t = json_object_get(request, "thinking");
	const char *type = json_string_value(json_object_get(t, "type"));
	json_t	   *budget = json_object_get(t, "budget_tokens");

	*thinking = NULL;
	if (t == NULL || json_is_null(t))
		return true;
	if (!json_is_object(t) || type == NULL)
		*error = pstrdup("thinking is not an object with a \"type\" string, such as {\"type\": \"enabled\", \"budget_tokens\": 2048}");
	else if (strcmp(type, "enabled") == 0 &&
			 (!json_is_integer(budget) || json_integer_value(budget) <= 0))
		*error = pstrdup("thinking of type \"enabled\" has no positive integer \"budget_tokens\"");
	else
	{
		*thinking = t;
		return true;
	}
	return false;
}

/*
 * The request's top_k (a sampling setting of Anthropic and Gemini that Chat
 * Completions has not), borrowed into *top_k (NULL: none given).  False
 * with *error set when it is not a non-negative integer.
 */
bool
llmgw_top_k(json_t *request, json_t **top_k, char **error)
{
	json_t	   *v = json_object_get(request, "top_k");

	*top_k = NULL;
	if (llmgw_json_absent(v))
		return true;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
	{
		*error = pstrdup("top_k is not a non-negative integer");
		return false;
	}
	*top_k = v;
	return true;
}

/*
 * Refuse a request for log probabilities ("logprobs": true) to a kind that
 * gives none (named by who): its answer would come back without them, as
 * if there were none to give.  False with *error set.
 */
bool
llmgw_no_logprobs(json_t *request, const char *who, char **error)
{
	if (!json_is_true(json_object_get(request, "logprobs")))
		return true;
	*error = psprintf("logprobs: %s gives no log probabilities", who);
	return false;
}

/*
 * The thinking blocks of messages[msg] (an assistant message's
 * "thinking_blocks", as an answer gave them: {"type": "thinking",
 * "thinking", "signature"} or {"type": "redacted_thinking", "data"}),
 * borrowed into *blocks (NULL: none).  False with *error set when they are
 * malformed.
 */
bool
llmgw_thinking_blocks(json_t *message, size_t msg, json_t **blocks, char **error)
{
	json_t	   *given = json_object_get(message, "thinking_blocks");
	size_t		i;
	json_t	   *b;

	*blocks = NULL;
	if (given == NULL || json_is_null(given))
		return true;
	if (!json_is_array(given))
	{
		*error = psprintf("messages[%zu].thinking_blocks is not an array", msg);
		return false;
	}
	json_array_foreach(given, i, b)
	{
		const char *type = json_string_value(json_object_get(b, "type"));
		bool		thinking = type && strcmp(type, "thinking") == 0 &&
			json_is_string(json_object_get(b, "thinking")) &&
			json_is_string(json_object_get(b, "signature"));

		if (!thinking && !(type && strcmp(type, "redacted_thinking") == 0 &&
						   json_is_string(json_object_get(b, "data"))))
		{
			*error = psprintf("messages[%zu].thinking_blocks[%zu] is neither {\"type\": \"thinking\", \"thinking\": string, \"signature\": string} nor {\"type\": \"redacted_thinking\", \"data\": string}",
							  msg, i);
			return false;
		}
	}
	*blocks = given;
	return true;
}

/*
 * A request for a wire format without Anthropic's own members: every
 * prompt-cache mark (cache_control) of the request itself (Anthropic's
 * automatic caching), its messages, their parts and tool calls, and its
 * tools; the extended thinking setting and the assistant messages' thinking
 * blocks.  Each is checked as an Anthropic deployment would check it (the
 * same request is refused or taken whatever the deployment), then removed:
 * OpenAI's Chat Completions caches on its own, and no other format takes
 * another model's signed thinking.  False with *error set.
 */
bool
llmgw_strip_anthropic(json_t *request, char **error)
{
	json_t	   *messages = json_object_get(request, "messages");
	json_t	   *unused;
	size_t		i, j;
	json_t	   *m, *o;

	if (!strip_mark(request, "the request", 0, 0, error) ||
		!llmgw_thinking(request, &unused, error) || !llmgw_top_k(request, &unused, error))
		return false;
	json_object_del(request, "thinking");
	json_object_del(request, "top_k");
	json_array_foreach(messages, i, m)
	{
		if (!strip_mark(m, "messages[%zu]", i, 0, error) ||
			!llmgw_thinking_blocks(m, i, &unused, error))
			return false;
		json_object_del(m, "thinking_blocks");
		json_array_foreach(json_object_get(m, "content"), j, o)
			if (!strip_mark(o, "messages[%zu].content[%zu]", i, j, error))
				return false;
		json_array_foreach(json_object_get(m, "tool_calls"), j, o)
			if (!strip_mark(o, "messages[%zu].tool_calls[%zu]", i, j, error))
				return false;
	}
	json_array_foreach(json_object_get(request, "tools"), i, o)
		if (!strip_mark(o, "tools[%zu]", i, 0, error))
			return false;
	return true;
}

/*
 * Read part idx of messages[msg]: a text, or an image or a file where
 * the message may hold them.  False with *error set when it is not a part that
 * rules take.
 */
static bool
read_part(json_t *part, size_t msg, size_t idx, bool images,
		  const LlmgwPartRules *rules, LlmgwPart *out, char **error)
{
	const char *type = json_string_value(json_object_get(part, "type"));

	memset(out, 0, sizeof(*out));
	if (type == NULL)
		*error = psprintf(PART_AT " is not a content part (an object with a \"type\" string)",
						  msg, idx);
	else if (!llmgw_cache_control_at(part, &out->cache_control, PART_AT, msg, idx, error))
		return false;
	else if (strcmp(type, "text") == 0)
	{
		out->text = json_object_get(part, "text");
		if (json_is_string(out->text))
			return true;
		*error = psprintf(PART_AT " is a \"text\" part without a \"text\" string", msg, idx);
	}
	else if (strcmp(type, "image_url") != 0 && strcmp(type, "file") != 0)
		*error = psprintf(PART_AT " is a part of type \"%.64s\", which provider kind \"%s\" does not take (it takes \"text\", \"image_url\" and \"file\" parts)",
						  msg, idx, type, rules->kind);
	else if (!images)
		*error = psprintf(PART_AT " is %s in a message whose role takes only text for provider kind \"%s\"",
						  msg, idx, strcmp(type, "file") == 0 ? "a file" : "an image", rules->kind);
	else if (strcmp(type, "file") == 0)
		return read_file(part, msg, idx, rules, out, error);
	else
		return read_image(part, msg, idx, rules, out, error);
	return false;
}

/*
 * The content of messages[msg] (a string, an array of parts, or null) as
 * an array of parts in a wire format's shape, each written by write.
 * images: whether this message may hold images.  NULL with *error set when
 * a part is not one that rules take.
 */
json_t *
llmgw_content_translate(json_t *content, size_t msg, bool images,
						const LlmgwPartRules *rules, LlmgwPartWriter write, char **error)
{
	json_t	   *out = json_array();
	LlmgwPart	part;
	size_t		i;
	json_t	   *p;

	if (json_is_string(content))
	{
		memset(&part, 0, sizeof(part));
		part.text = content;
		json_array_append_new(out, write(&part));
	}
	else if (content != NULL && !json_is_null(content) && !json_is_array(content))
	{
		json_decref(out);
		*error = psprintf("messages[%zu].content is neither a string nor an array of parts", msg);
		return NULL;
	}
	json_array_foreach(content, i, p)
	{
		if (!read_part(p, msg, i, images, rules, &part, error))
		{
			json_decref(out);
			return NULL;
		}
		json_array_append_new(out, write(&part));
	}
	return out;
}

/* A text part as itself */
static json_t *
text_of(const LlmgwPart *part)
{
	return json_incref(part->text);
}

/*
 * Append the text of messages[msg], whose content may hold only text, to
 * text: every part after a blank line.
 */
bool
llmgw_content_text(json_t *content, size_t msg, const LlmgwPartRules *rules,
				   StringInfo text, char **error)
{
	json_t	   *texts = llmgw_content_translate(content, msg, false, rules, text_of, error);
	size_t		i;
	json_t	   *t;

	if (texts == NULL)
		return false;
	json_array_foreach(texts, i, t)
		appendStringInfo(text, "%s%s", text->len ? "\n\n" : "", json_string_value(t));
	json_decref(texts);
	return true;
}

/*
 * What the request's response_format asks for; for json_schema, also its
 * json_schema object (borrowed: name, schema, strict, description).  False
 * with *error set when it is none of the three.
 */
bool
llmgw_response_format(json_t *request, LlmgwResponseFormat *format, json_t **json_schema,
					  char **error)
{
	json_t	   *rf = json_object_get(request, "response_format");
	const char *type = json_string_value(json_object_get(rf, "type"));
	json_t	   *schema;

	*format = LLMGW_FORMAT_TEXT;
	*json_schema = NULL;
	if (rf == NULL || json_is_null(rf) || (type && strcmp(type, "text") == 0))
		return true;
	if (type && strcmp(type, "json_object") == 0)
	{
		*format = LLMGW_FORMAT_JSON_OBJECT;
		return true;
	}
	if (type == NULL || strcmp(type, "json_schema") != 0)
	{
		*error = pstrdup("response_format is not {\"type\": \"text\"}, {\"type\": \"json_object\"} or {\"type\": \"json_schema\", \"json_schema\": {...}}");
		return false;
	}
	*json_schema = json_object_get(rf, "json_schema");
	schema = json_object_get(*json_schema, "schema");
	if (!json_is_object(*json_schema) || (schema != NULL && !json_is_object(schema)))
	{
		*error = pstrdup("response_format of type \"json_schema\" needs a \"json_schema\" object, whose \"schema\" (if given) is an object");
		return false;
	}
	*format = LLMGW_FORMAT_JSON_SCHEMA;
	return true;
}

/*
 * What the request's tool_choice asks for; for a named function, its name
 * (borrowed).  False with *error set when it is none of the OpenAI forms.
 */
bool
llmgw_tool_choice(json_t *request, LlmgwToolChoice *choice, const char **name, char **error)
{
	json_t	   *tc = json_object_get(request, "tool_choice");
	const char *mode = json_string_value(tc);

	*name = NULL;
	*choice = LLMGW_TOOLS_UNSET;
	if (tc == NULL || json_is_null(tc))
		return true;
	if (mode && strcmp(mode, "auto") == 0)
		*choice = LLMGW_TOOLS_AUTO;
	else if (mode && strcmp(mode, "none") == 0)
		*choice = LLMGW_TOOLS_NONE;
	else if (mode && strcmp(mode, "required") == 0)
		*choice = LLMGW_TOOLS_REQUIRED;
	else if (json_is_object(tc) &&
			 json_is_string(json_object_get(json_object_get(tc, "function"), "name")))
	{
		*choice = LLMGW_TOOLS_NAMED;
		*name = json_string_value(json_object_get(json_object_get(tc, "function"), "name"));
	}
	else
	{
		*error = pstrdup("tool_choice is not \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}");
		return false;
	}
	return true;
}
