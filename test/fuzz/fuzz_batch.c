/*
 * libFuzzer target: a provider batch API's parsers (chosen at build time
 * with -DFUZZ_BATCH=llmgw_batch_xxx): its batch objects (and upload
 * answers, for an API that reads the file's name from them), its list of
 * batches and its results, each item read by the provider's response
 * parser and written as a normalised result line: a results document read
 * whole (Gemini's inline answers), or JSONL split into lines as worker 0
 * splits them, each line handed to the line parser; every result line (a
 * normalised one, or OpenAI's as it came) read as the ingest reads it
 * (batch_result.c); and for an API whose file goes up on a session
 * (Gemini's resumable upload), the answers of a start and of a query, as
 * the values of their response headers, one a line.  The first byte picks
 * the parser.
 */
#include "postgres.h"

#include "batch_result.h"
#include "batch_wire.h"
#include "jsonutil.h"
#include "pg_stubs.h"

#define MARKER "0b1e2c3d-4f50-4a6b-8c7d-9e0f1a2b3c4d"
/* values of the response headers a session's answers are read from */
#define SESSION_HEADERS 4

/* A status must be one of OpenAI's words, its ids fit for a URL */
static void
check_status(const LlmgwBatchStatus *st)
{
	static const char *const words[] = {"validating", "in_progress", "finalizing", "cancelling",
	"completed", "expired", "cancelled", "failed"};
	bool		known = false;

	if (st->status == NULL || !llmgw_batch_safe_id(st->id))
		abort();
	for (int i = 0; i < lengthof(words); i++)
		known |= strcmp(st->status, words[i]) == 0;
	if (!known)
		abort();
	if ((st->output_ref && !llmgw_batch_safe_ref(st->output_ref)) ||
		(st->error_ref && !llmgw_batch_safe_id(st->error_ref)))
		abort();
}

/*
 * What the ingest reads of a result line (batch_result.c): an item's end
 * is one of four, classed exactly when it is not done, a done chat item
 * has its answer
 */
static void
check_result(const char *line, size_t len, const char *custom_id)
{
	for (int embeddings = 0; embeddings < 2; embeddings++)
	{
		LlmgwBatchResult r;
		bool		done;

		if (!llmgw_batch_result_read(line, len, embeddings, &r))
		{
			if (custom_id)
				abort();
			continue;
		}
		if (r.state == NULL || (strcmp(r.state, "done") != 0 && strcmp(r.state, "failed") != 0 &&
								strcmp(r.state, "expired") != 0 && strcmp(r.state, "cancelled") != 0))
			abort();
		done = strcmp(r.state, "done") == 0;
		if (done != (r.error_class == NULL) || (done && !embeddings && r.answer == NULL) ||
			(!done && r.answer != NULL) || (strcmp(r.state, "failed") == 0 && r.error == NULL))
			abort();
		if (custom_id && (r.custom_id == NULL || strcmp(r.custom_id, custom_id) != 0))
			abort();
	}
}

/* Each item: a line that is a JSON object with its custom_id */
static void
emit(void *arg, const char *custom_id, LlmgwBatchItemEnd end, const LlmgwOutcome *out)
{
	StringInfoData line;
	json_t	   *v;

	if (custom_id == NULL || *custom_id == '\0')
		abort();
	if (out->status == LLMGW_STATUS_OK && out->error != LLMGW_ERR_NONE)
		abort();
	initStringInfo(&line);
	llmgw_batch_line(&line, custom_id, end, out);
	v = json_loadb(line.data, line.len, 0, NULL);
	if (!json_is_object(v) || strcmp(json_string_value(json_object_get(v, "custom_id")), custom_id) != 0)
		abort();
	json_decref(v);
	check_result(line.data, line.len, custom_id);
	(*(int *) arg)++;
}

/*
 * The answers of a start and of a query on a session: data holds the
 * values of the headers the session reads, one a line (a line missing: the
 * header absent).  A session URL must be on the base URL's host, a count
 * received at most the file's size.
 */
static void
fuzz_session(const char *data, size_t size)
{
	static const char *const base_url = "https://generativelanguage.googleapis.com/v1beta";
	char	   *values[SESSION_HEADERS] = {NULL};
	const char *p = data;
	const char *end = data + size;
	int			n = 0;

	while (n < SESSION_HEADERS && p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		size_t		len = nl ? (size_t) (nl - p) : (size_t) (end - p);

		values[n++] = pnstrdup(p, len);
		p = nl ? nl + 1 : end;
	}
	static const LlmgwUploadCommand cmds[] = {LLMGW_UPLOAD_START, LLMGW_UPLOAD_QUERY};

	for (int i = 0; i < lengthof(cmds); i++)
	{
		LlmgwUploadCommand cmd = cmds[i];
		LlmgwUploadAnswer a;
		size_t		file_size = 1000000;

		FUZZ_BATCH.session->read(base_url, cmd, values, file_size, &a);
		if (a.error == NULL && cmd == LLMGW_UPLOAD_START &&
			(a.session_url == NULL || !llmgw_batch_same_origin(base_url, a.session_url)))
			abort();
		if (a.error == NULL && cmd == LLMGW_UPLOAD_QUERY && !a.final && a.received > file_size)
			abort();
		if (a.error && a.session_url)
			abort();
	}
}

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int			mode = 0;
	LlmgwBatchStatus st;

	if (size > 0)
	{
		mode = data[0] % 5;
		data++;
		size--;
	}
	if (mode == 0)
	{
		if (llmgw_batch_parse_status(&FUZZ_BATCH, (const char *) data, size, &st))
			check_status(&st);
		/* the same document as an upload's answer (Gemini's Files API) */
		if (FUZZ_BATCH.uploaded)
		{
			json_t	   *root = llmgw_json_load((const char *) data, size, NULL);
			char	   *file = FUZZ_BATCH.uploaded(root);

			if (file && !llmgw_batch_safe_ref(file))
				abort();
			json_decref(root);
		}
	}
	else if (mode == 1)
	{
		int			n = -1;
		int			listed = -1;
		LlmgwBatchStatus *list = llmgw_batch_parse_list(&FUZZ_BATCH, (const char *) data, size, &n, &listed);

		if (n < 0 || list == NULL || listed < n)
			abort();
		for (int i = 0; i < n; i++)
			check_status(&list[i]);
	}
	else if (mode == 4)
	{
		if (FUZZ_BATCH.session)
			fuzz_session((const char *) data, size);
	}
	else if (mode == 2 && FUZZ_BATCH.results_doc)
	{
		int			items = 0;

		(void) FUZZ_BATCH.results_doc((const char *) data, size, MARKER, emit, &items);
	}
	else
	{
		const char *p = (const char *) data;
		const char *end = p + size;
		int			items = 0;

		while (p < end)
		{
			const char *nl = memchr(p, '\n', end - p);
			size_t		n = nl ? (size_t) (nl - p) : (size_t) (end - p);
			/* OpenAI's lines are read as they are */
			int			foreign = FUZZ_BATCH.results ? FUZZ_BATCH.results(p, n, MARKER, emit, &items) : 0;

			if (foreign != 0 && foreign != 1)
				abort();
			if (FUZZ_BATCH.results == NULL)
				check_result(p, n, NULL);
			p = nl ? nl + 1 : end;
		}
	}
	stub_arena_reset();
	return 0;
}
