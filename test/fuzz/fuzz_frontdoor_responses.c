/*
 * libFuzzer target: the front door's OpenAI Responses API
 * (src/frontdoor_responses.c).  Each input is read as a client's request
 * (llmgw_responses_to_chat), as a normalised answer (llmgw_responses_response
 * and the end of a stream), and as streamed text and function call
 * arguments.  Whatever the input: a translated request is a JSON object with
 * messages and a refusal says why; a Response is a JSON object of the API's
 * shape; a stream is well-formed numbered events, each item added before
 * its deltas, ending with response.completed, response.incomplete or an
 * error event.
 */
#include "postgres.h"

#include "frontdoor_responses.h"
#include "jsonutil.h"
#include "pg_stubs.h"

static const LlmgwFrontMeta meta = {"resp_fuzz", "fuzz-model", 0};

/* A request: a JSON object with messages, or a refusal that says why */
static void
fuzz_request(const char *data, size_t size)
{
	char	   *model = NULL;
	char	   *error = NULL;
	bool		stream = true;
	char	   *chat = llmgw_responses_to_chat(data, size, &model, &stream, &error);
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

/* A usage object: the counts, integers, none negative */
static void
check_usage(json_t *usage)
{
	static const char *const keys[] = {"input_tokens", "output_tokens", "total_tokens"};

	for (int i = 0; i < lengthof(keys); i++)
	{
		json_t	   *v = json_object_get(usage, keys[i]);

		if (!json_is_integer(v) || json_integer_value(v) < 0)
			abort();
	}
}

/* A Response: its id, object, status, output items of known types, usage */
static void
check_response(json_t *r, bool done)
{
	const char *status = json_string_value(json_object_get(r, "status"));
	size_t		i;
	json_t	   *item;

	if (!json_is_object(r) || strcmp(json_string_value(json_object_get(r, "id")) ?: "", meta.id) != 0 ||
		strcmp(json_string_value(json_object_get(r, "object")) ?: "", "response") != 0 ||
		status == NULL || !json_is_array(json_object_get(r, "output")))
		abort();
	if (done != (strcmp(status, "completed") == 0 || strcmp(status, "incomplete") == 0))
		abort();
	if (done)
		check_usage(json_object_get(r, "usage"));
	json_array_foreach(json_object_get(r, "output"), i, item)
	{
		const char *type = json_string_value(json_object_get(item, "type"));

		if (!json_is_string(json_object_get(item, "id")) || type == NULL ||
			(strcmp(type, "message") == 0 && !json_is_array(json_object_get(item, "content"))) ||
			(strcmp(type, "function_call") == 0 &&
			 (!json_is_string(json_object_get(item, "call_id")) ||
			  !json_is_string(json_object_get(item, "name")) ||
			  !json_is_string(json_object_get(item, "arguments")))))
			abort();
	}
}

/* A whole Response, when the input reads as an answer */
static void
fuzz_response(const char *answer)
{
	json_t	   *a = json_loads(answer, 0, NULL);
	char	   *text = llmgw_responses_response(a, &meta);
	json_t	   *root;

	json_decref(a);
	if (text == NULL)
		return;
	root = json_loads(text, 0, NULL);
	check_response(root, true);
	json_decref(root);
}

/* The rest of the line at *pos, which must start with prefix */
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
 * A stream as a client reads it: "event: TYPE\ndata: JSON\n\n" events whose
 * type is their name, numbered from 0; response.created then
 * response.in_progress first; an item's deltas and .done events after its
 * output_item.added; response.completed, response.incomplete or error last
 */
static void
check_stream(const char *buf, size_t len)
{
	size_t		pos = 0;
	int			events = 0;
	int			added = 0;		/* output items added */
	bool		ended = false;

	while (pos < len)
	{
		size_t		name_len;
		size_t		data_len;
		const char *name = event_line(buf, len, &pos, "event: ", &name_len);
		const char *data = event_line(buf, len, &pos, "data: ", &data_len);
		char	   *type = pnstrdup(name, name_len);
		json_t	   *ev = json_loadb(data, data_len, JSON_ALLOW_NUL, NULL);
		json_t	   *index = json_object_get(ev, "output_index");

		if (pos >= len || buf[pos] != '\n' || ended || !json_is_object(ev) ||
			strcmp(type, json_string_value(json_object_get(ev, "type")) ?: "") != 0 ||
			json_integer_value(json_object_get(ev, "sequence_number")) != events)
			abort();
		pos++;
		if ((events == 0) != (strcmp(type, "response.created") == 0) ||
			(events == 1 && strcmp(type, "response.in_progress") != 0))
			abort();
		if (strcmp(type, "response.created") == 0 || strcmp(type, "response.in_progress") == 0)
			check_response(json_object_get(ev, "response"), false);
		else if (strcmp(type, "response.output_item.added") == 0)
		{
			if (json_integer_value(index) != added++ || !json_is_object(json_object_get(ev, "item")))
				abort();
		}
		else if (strcmp(type, "response.completed") == 0 || strcmp(type, "response.incomplete") == 0)
		{
			json_t	   *r = json_object_get(ev, "response");

			check_response(r, true);
			if (json_array_size(json_object_get(r, "output")) != (size_t) added)
				abort();
			ended = true;
		}
		else if (strcmp(type, "error") == 0)
		{
			if (!json_is_string(json_object_get(ev, "message")))
				abort();
			ended = true;
		}
		else if (!json_is_integer(index) || json_integer_value(index) >= added ||
				 (strcmp(type, "response.output_text.delta") == 0 &&
				  !json_is_string(json_object_get(ev, "delta"))) ||
				 (strcmp(type, "response.function_call_arguments.delta") == 0 &&
				  !json_is_string(json_object_get(ev, "delta"))))
			abort();
		events++;
		json_decref(ev);
	}
	if (!ended)
		abort();
}

/*
 * Streams: text cut in three pieces (which may cut UTF-8 characters), two
 * function calls whose id and name are the input and whose arguments come
 * in pieces, text again (after the calls), ended with the input as the
 * answer; the answer alone; and text cut short by an error
 */
static void
fuzz_stream(const char *data, size_t size, const char *answer)
{
	LlmgwResponsesStream st;
	StringInfoData buf;
	size_t		a = size / 3;
	size_t		b = 2 * size / 3;
	static const char *const pieces[] = {"{\"q\": ", "[1, \"x\"]}"};

	initStringInfo(&buf);
	llmgw_responses_stream_start(&st, &buf, &meta);
	llmgw_responses_stream_text(&st, &buf, &meta, data, a);
	llmgw_responses_stream_text(&st, &buf, &meta, data + a, b - a);
	for (int k = 0; k < 2; k++)
	{
		llmgw_responses_stream_call(&st, &buf, &meta, k, true, k ? NULL : answer, answer, NULL, 0);
		for (int p = 0; p < 2; p++)
			llmgw_responses_stream_call(&st, &buf, &meta, k, false, NULL, NULL, pieces[p],
										strlen(pieces[p]));
	}
	/* a call that does not follow the others, and one past the last: not sent */
	llmgw_responses_stream_call(&st, &buf, &meta, 5, true, answer, answer, NULL, 0);
	llmgw_responses_stream_call(&st, &buf, &meta, 9, false, NULL, NULL, "{}", 2);
	llmgw_responses_stream_text(&st, &buf, &meta, data + b, size - b);
	llmgw_responses_stream_end(&st, &buf, &meta, answer, NULL);
	check_stream(buf.data, buf.len);

	resetStringInfo(&buf);
	llmgw_responses_stream_start(&st, &buf, &meta);
	llmgw_responses_stream_end(&st, &buf, &meta, answer, "{\"request_id\": \"x\"}");
	check_stream(buf.data, buf.len);

	resetStringInfo(&buf);
	llmgw_responses_stream_start(&st, &buf, &meta);
	llmgw_responses_stream_text(&st, &buf, &meta, data, size);
	llmgw_responses_stream_error(&st, &buf, "server", answer);
	check_stream(buf.data, buf.len);
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char	   *answer = malloc(size + 1);

	memcpy(answer, data, size);
	answer[size] = '\0';
	fuzz_request((const char *) data, size);
	fuzz_response(answer);
	fuzz_stream((const char *) data, size, answer);
	free(answer);
	stub_arena_reset();
	return 0;
}
