/*
 * libFuzzer target: the front door's Anthropic Messages API
 * (src/frontdoor_anthropic.c).  Each input is read as a client's request
 * (llmgw_anthropic_to_chat), as a normalised answer (llmgw_anthropic_message
 * and the end of a stream), as streamed text cut in three pieces, and as an
 * error message.  Whatever the input: a translated request is a JSON object
 * and a refusal says why; a Message is a JSON object of Anthropic's shape;
 * a stream is well-formed events whose content blocks open, fill and close
 * in order.
 */
#include "postgres.h"

#include "frontdoor_anthropic.h"
#include "jsonutil.h"
#include "pg_stubs.h"
#include "provider.h"

/* The five stop reasons a client may receive */
static bool
stop_reason_ok(json_t *v)
{
	static const char *const reasons[] = {
		"end_turn", "max_tokens", "stop_sequence", "tool_use", "refusal"
	};

	for (int i = 0; i < lengthof(reasons); i++)
		if (json_is_string(v) && strcmp(json_string_value(v), reasons[i]) == 0)
			return true;
	return false;
}

/* A usage object: the four counts, integers, none negative */
static void
check_usage(json_t *usage)
{
	static const char *const keys[] = {
		"input_tokens", "output_tokens", "cache_read_input_tokens",
		"cache_creation_input_tokens"
	};

	for (int i = 0; i < lengthof(keys); i++)
	{
		json_t	   *v = json_object_get(usage, keys[i]);

		if (!json_is_integer(v) || json_integer_value(v) < 0)
			abort();
	}
}

/* A request: a JSON object with messages, or a refusal that says why */
static void
fuzz_request(const char *data, size_t size)
{
	char	   *model = NULL;
	char	   *error = NULL;
	bool		stream = true;
	char	   *chat = llmgw_anthropic_to_chat(data, size, &model, &stream, &error);
	json_t	   *root;

	if (chat == NULL)
	{
		if (error == NULL || *error == '\0' || model != NULL || stream)
			abort();
		return;
	}
	root = json_loads(chat, 0, NULL);
	if (!json_is_object(root) || model == NULL || *model == '\0' ||
		json_array_size(json_object_get(root, "messages")) == 0 ||
		json_object_get(root, "model") != NULL ||
		stream != json_is_true(json_object_get(root, "stream")))
		abort();
	json_decref(root);
}

/* A whole Message, when the input reads as an answer */
static void
fuzz_message(const char *answer)
{
	char	   *text = llmgw_anthropic_message(answer, "fuzz-model", "fuzz-id");
	json_t	   *root;
	json_t	   *content;
	size_t		i;
	json_t	   *block;

	if (text == NULL)
		return;
	root = json_loads(text, 0, NULL);
	content = json_object_get(root, "content");
	if (!json_is_object(root) || !json_is_array(content) ||
		strcmp(json_string_value(json_object_get(root, "id")) ?: "", "msg_fuzz-id") != 0 ||
		!stop_reason_ok(json_object_get(root, "stop_reason")) ||
		!json_is_null(json_object_get(root, "stop_sequence")))
		abort();
	check_usage(json_object_get(root, "usage"));
	json_array_foreach(content, i, block)
	{
		const char *type = json_string_value(json_object_get(block, "type"));

		if (type == NULL ||
			(strcmp(type, "text") == 0 && !json_is_string(json_object_get(block, "text"))) ||
			(strcmp(type, "thinking") == 0 && !json_is_string(json_object_get(block, "thinking"))) ||
			(strcmp(type, "redacted_thinking") == 0 && !json_is_string(json_object_get(block, "data"))) ||
			(strcmp(type, "tool_use") == 0 &&
			 (!json_is_string(json_object_get(block, "id")) ||
			  !json_is_string(json_object_get(block, "name")) ||
			  json_object_get(block, "input") == NULL)))
			abort();
	}
	json_decref(root);
}

/*
 * The rest of the line at *pos of buf, which must start with prefix (its
 * length in *n, not copied); *pos moves past the line's newline
 */
static const char *
event_line(const char *buf, size_t len, size_t *pos, const char *prefix, size_t *n)
{
	size_t		start = *pos + strlen(prefix);
	const char *end;

	if (start > len || strncmp(buf + *pos, prefix, strlen(prefix)) != 0)
		abort();
	end = memchr(buf + start, '\n', len - start);
	if (end == NULL)
		abort();
	*pos = (end - buf) + 1;
	*n = (end - buf) - start;
	return buf + start;
}

/*
 * A stream as a client reads it: "event: NAME\ndata: JSON\n\n" events whose
 * type is their name; message_start first; content blocks numbered from 0,
 * one open at a time, their deltas valid; message_delta after the last
 * block closed, then message_stop, or an error event; nothing after.
 */
static void
check_stream(const char *buf, size_t len)
{
	size_t		pos = 0;
	int			events = 0;
	int			next = 0;
	int			open = -1;
	bool		delta_sent = false;
	bool		ended = false;
	bool		tool_open = false;
	bool		thinking_open = false;
	StringInfoData input;		/* the input JSON of the open tool_use block */

	initStringInfo(&input);
	while (pos < len)
	{
		size_t		name_len;
		size_t		data_len;
		const char *name = event_line(buf, len, &pos, "event: ", &name_len);
		const char *data = event_line(buf, len, &pos, "data: ", &data_len);
		char	   *type = pnstrdup(name, name_len);
		/* text may hold NULs, sent as \u0000 as JSON allows */
		json_t	   *ev = json_loadb(data, data_len, JSON_ALLOW_NUL, NULL);
		json_t	   *index = json_object_get(ev, "index");
		json_t	   *delta = json_object_get(ev, "delta");
		const char *dtype = json_string_value(json_object_get(delta, "type"));

		if (pos >= len || buf[pos] != '\n' || ended || !json_is_object(ev) ||
			strcmp(type, json_string_value(json_object_get(ev, "type")) ?: "") != 0)
			abort();
		pos++;
		if (strcmp(type, "message_start") == 0)
		{
			json_t	   *message = json_object_get(ev, "message");

			if (events != 0 || json_array_size(json_object_get(message, "content")) != 0 ||
				!json_is_array(json_object_get(message, "content")) ||
				!json_is_null(json_object_get(message, "stop_reason")))
				abort();
			check_usage(json_object_get(message, "usage"));
		}
		else if (strcmp(type, "content_block_start") == 0)
		{
			const char *btype = json_string_value(json_object_get(json_object_get(ev, "content_block"),
																  "type"));

			json_t	   *block = json_object_get(ev, "content_block");

			if (json_integer_value(index) != next || !json_is_integer(index) || open != -1 ||
				delta_sent || btype == NULL ||
				(strcmp(btype, "text") != 0 && strcmp(btype, "tool_use") != 0 &&
				 strcmp(btype, "thinking") != 0 && strcmp(btype, "redacted_thinking") != 0) ||
				(strcmp(btype, "thinking") == 0 &&
				 (!json_is_string(json_object_get(block, "thinking")) ||
				  !json_is_string(json_object_get(block, "signature")))) ||
				(strcmp(btype, "redacted_thinking") == 0 &&
				 !json_is_string(json_object_get(block, "data"))))
				abort();
			open = next++;
			tool_open = strcmp(btype, "tool_use") == 0;
			thinking_open = strcmp(btype, "thinking") == 0;
			resetStringInfo(&input);
		}
		else if (strcmp(type, "content_block_delta") == 0)
		{
			json_t	   *text = json_object_get(delta, "text");
			json_t	   *partial = json_object_get(delta, "partial_json");

			if (open < 0 || json_integer_value(index) != open || dtype == NULL)
				abort();
			if (strcmp(dtype, "text_delta") == 0)
			{
				if (!json_is_string(text) || json_string_length(text) == 0)
					abort();
			}
			else if (strcmp(dtype, "input_json_delta") == 0 && json_is_string(partial) &&
					 tool_open)
				appendBinaryStringInfo(&input, json_string_value(partial),
									   (int) json_string_length(partial));
			else if (thinking_open && ((strcmp(dtype, "thinking_delta") == 0 &&
										json_is_string(json_object_get(delta, "thinking"))) ||
									   (strcmp(dtype, "signature_delta") == 0 &&
										json_is_string(json_object_get(delta, "signature")))))
				;
			else
				abort();
		}
		else if (strcmp(type, "content_block_stop") == 0)
		{
			if (open < 0 || json_integer_value(index) != open)
				abort();
			/* the SDKs parse the whole input from its pieces: they must be JSON */
			if (tool_open)
			{
				json_t	   *whole = json_loadb(input.data, input.len, JSON_DECODE_ANY, NULL);

				if (whole == NULL)
					abort();
				json_decref(whole);
			}
			open = -1;
			tool_open = thinking_open = false;
		}
		else if (strcmp(type, "message_delta") == 0)
		{
			if (open != -1 || delta_sent ||
				!stop_reason_ok(json_object_get(delta, "stop_reason")) ||
				!json_is_null(json_object_get(delta, "stop_sequence")))
				abort();
			check_usage(json_object_get(ev, "usage"));
			delta_sent = true;
		}
		else if (strcmp(type, "message_stop") == 0)
		{
			if (!delta_sent)
				abort();
			ended = true;
		}
		else if (strcmp(type, "error") == 0)
		{
			json_t	   *err = json_object_get(ev, "error");

			if (!json_is_string(json_object_get(err, "type")) ||
				!json_is_string(json_object_get(err, "message")))
				abort();
			ended = true;
		}
		else
			abort();
		events++;
		json_decref(ev);
	}
	if (!ended)
		abort();
}

/*
 * A stream: the input as text cut in three pieces (which may cut UTF-8
 * characters), then ended with the input as the answer; and a stream cut
 * short by an error whose message is the input
 */
static void
fuzz_stream(const char *data, size_t size, const char *answer)
{
	LlmgwAnthropicStream st;
	StringInfoData buf;
	size_t		a = size / 3;
	size_t		b = 2 * size / 3;

	initStringInfo(&buf);
	llmgw_anthropic_stream_start(&st, &buf, "fuzz-model", "fuzz-id");
	llmgw_anthropic_stream_text(&st, &buf, data, a);
	llmgw_anthropic_stream_text(&st, &buf, data + a, b - a);
	llmgw_anthropic_stream_text(&st, &buf, data + b, size - b);
	llmgw_anthropic_stream_end(&st, &buf, answer, NULL);
	check_stream(buf.data, buf.len);

	/*
	 * text, then two tool calls whose input comes in pieces, their id and
	 * name the input's, then text again
	 */
	resetStringInfo(&buf);
	llmgw_anthropic_stream_start(&st, &buf, "fuzz-model", "fuzz-id");
	llmgw_anthropic_stream_text(&st, &buf, data, a);
	for (int k = 0; k < 2; k++)
	{
		int			block = llmgw_anthropic_stream_tool_start(&st, &buf, k, k ? NULL : answer,
															  answer);

		static const char *const pieces[] = {"{\"q\": ", "[1, \"x\"]}"};

		if (!llmgw_anthropic_stream_tool_input(&st, &buf, block, pieces[0], strlen(pieces[0])) ||
			!llmgw_anthropic_stream_tool_input(&st, &buf, block, pieces[1], strlen(pieces[1])) ||
			llmgw_anthropic_stream_tool_input(&st, &buf, block - 1, "{}", 2))
			abort();
	}
	llmgw_anthropic_stream_text(&st, &buf, data + a, size - a);
	llmgw_anthropic_stream_end(&st, &buf, answer, NULL);
	check_stream(buf.data, buf.len);

	/*
	 * extended thinking: a block of the input's text cut in three pieces,
	 * its signature the answer, a redacted block whose data is the input,
	 * then the answer's own thinking blocks whole, then text
	 */
	resetStringInfo(&buf);
	llmgw_anthropic_stream_start(&st, &buf, "fuzz-model", "fuzz-id");
	llmgw_anthropic_stream_thinking(&st, &buf, LLMGW_THINKING_START, NULL, 0);
	llmgw_anthropic_stream_thinking(&st, &buf, LLMGW_THINKING_TEXT, data, a);
	llmgw_anthropic_stream_thinking(&st, &buf, LLMGW_THINKING_TEXT, data + a, b - a);
	llmgw_anthropic_stream_thinking(&st, &buf, LLMGW_THINKING_SIGNATURE, answer, strlen(answer));
	llmgw_anthropic_stream_thinking(&st, &buf, LLMGW_THINKING_REDACTED, data, size);
	llmgw_anthropic_stream_thinking(&st, &buf, LLMGW_THINKING_TEXT, data + b, size - b);
	{
		json_t	   *a_json = json_loads(answer, 0, NULL);

		llmgw_anthropic_stream_thinking_blocks(&st, &buf,
											   json_object_get(json_object_get(a_json, "message"),
															   "thinking_blocks"));
		json_decref(a_json);
	}
	llmgw_anthropic_stream_text(&st, &buf, data, size);
	llmgw_anthropic_stream_end(&st, &buf, answer, NULL);
	check_stream(buf.data, buf.len);

	/* the answer alone, nothing streamed before it */
	resetStringInfo(&buf);
	llmgw_anthropic_stream_start(&st, &buf, answer, answer);
	llmgw_anthropic_stream_end(&st, &buf, answer, NULL);
	check_stream(buf.data, buf.len);

	resetStringInfo(&buf);
	llmgw_anthropic_stream_start(&st, &buf, NULL, NULL);
	llmgw_anthropic_stream_text(&st, &buf, data, a);
	llmgw_anthropic_stream_error(&buf, llmgw_anthropic_error_type(500 + (int) (size % 40)), "server", answer);
	check_stream(buf.data, buf.len);
}

/* An error body whose message is the input */
static void
fuzz_error(const char *answer, size_t size)
{
	char	   *text = llmgw_anthropic_error(llmgw_anthropic_error_type(400 + (int) (size % 200)),
											 answer);
	json_t	   *root = json_loads(text, 0, NULL);
	json_t	   *err = json_object_get(root, "error");

	if (!json_is_string(json_object_get(err, "type")) ||
		!json_is_string(json_object_get(err, "message")) ||
		!json_is_string(json_object_get(root, "type")))
		abort();
	json_decref(root);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *answer = malloc(size + 1);

	memcpy(answer, data, size);
	answer[size] = '\0';
	fuzz_request((const char *) data, size);
	fuzz_message(answer);
	fuzz_stream((const char *) data, size, answer);
	fuzz_error(answer, size);
	free(answer);
	stub_arena_reset();
	return 0;
}
