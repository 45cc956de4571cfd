/*-------------------------------------------------------------------------
 *
 * sse.c
 *		Server-sent events: split a stream into events and hand each
 *		event's name and data to a handler.
 *
 * Lines end with LF, CRLF or CR (Gemini uses CRLF); "data:" lines of one
 * event are joined with LF; comments (":") and unknown fields are ignored;
 * a last event without its blank line is still delivered.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "sse.h"

/* Deliver the pending event, if it has data */
static void
dispatch(StringInfo event, StringInfo data, bool *has_data, LlmgwSseHandler handler, void *arg)
{
	if (*has_data)
		handler(arg, event->len ? event->data : NULL, data->data, data->len);
	resetStringInfo(event);
	resetStringInfo(data);
	*has_data = false;
}

/* Process one line (without its terminator) */
static void
process_line(const char *line, size_t len, StringInfo event, StringInfo data,
			 bool *has_data, LlmgwSseHandler handler, void *arg)
{
	const char *colon;
	size_t		name_len;
	const char *value;
	size_t		value_len;

	if (len == 0)
	{
		dispatch(event, data, has_data, handler, arg);
		return;
	}
	if (line[0] == ':')
		return;
	colon = memchr(line, ':', len);
	name_len = colon ? (size_t) (colon - line) : len;
	value = colon ? colon + 1 : line + len;
	value_len = colon ? len - name_len - 1 : 0;
	if (value_len > 0 && value[0] == ' ')
	{
		value++;
		value_len--;
	}
	if (name_len == 4 && memcmp(line, "data", 4) == 0)
	{
		if (*has_data)
			appendStringInfoChar(data, '\n');
		appendBinaryStringInfo(data, value, (int) value_len);
		*has_data = true;
	}
	else if (name_len == 5 && memcmp(line, "event", 5) == 0)
	{
		resetStringInfo(event);
		appendBinaryStringInfo(event, value, (int) value_len);
	}
}

/* Split buf into events and call handler for each */
void
llmgw_sse_parse(const char *buf, size_t len, LlmgwSseHandler handler, void *arg)
{
	StringInfoData event;
	StringInfoData data;
	bool		has_data = false;
	size_t		start = 0;

	initStringInfo(&event);
	initStringInfo(&data);
	for (size_t i = 0; i < len; i++)
	{
		if (buf[i] != '\n' && buf[i] != '\r')
			continue;
		process_line(buf + start, i - start, &event, &data, &has_data, handler, arg);
		if (buf[i] == '\r' && i + 1 < len && buf[i + 1] == '\n')
			i++;
		start = i + 1;
	}
	if (start < len)
		process_line(buf + start, len - start, &event, &data, &has_data, handler, arg);
	dispatch(&event, &data, &has_data, handler, arg);
}
