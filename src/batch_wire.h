/*-------------------------------------------------------------------------
 *
 * batch_wire.h
 *		What a provider's batch API implements for worker 0's state machine
 *		(batch.c): its URLs and headers, the body that carries the items,
 *		its batch objects, how a batch is found again after an uncertain
 *		create, and its results, read into normalised result lines.
 *
 * The state machine speaks OpenAI's words: a batch's status is one of
 * validating, in_progress, finalizing, cancelling, completed, expired,
 * cancelled or failed, and a result line is an OpenAI Batch API output
 * line, which llmgw.batch_ingest writes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_BATCH_WIRE_H
#define LLMGW_BATCH_WIRE_H

#include <curl/curl.h>

#include "call.h"
#include "config.h"
#include "jsonutil.h"
#include "lib/stringinfo.h"

/* What the provider says of a batch, in OpenAI's words */
typedef struct LlmgwBatchStatus
{
	char	   *id;				/* the provider's batch id, fit for a URL */
	const char *status;		/* validating ... failed (see above) */
	char	   *output_ref;		/* what to fetch the results from, or NULL (fit for
								 * a URL: llmgw_batch_safe_ref) */
	char	   *error_ref;		/* a second results file (OpenAI), or NULL */
	int64		completed;		/* items answered so far; -1 when not said */
	int64		failed;			/* items failed so far; -1 when not said */
	char	   *error;			/* why a failed batch failed, or NULL */
	int64		created;		/* Unix seconds; 0 when not said */
	int64		total;			/* items in it; -1 when not said */
	char	   *marker;			/* the marker it carries, or NULL */
	char	   *input_file;		/* its input file, or NULL */
} LlmgwBatchStatus;

/*
 * Batches asked for in one list of the latest (LLMGW_BATCH_LIST): every
 * API's list answers at most this many, newest first
 */
#define LLMGW_BATCH_LIST_LIMIT 100
#define LLMGW_BATCH_LIST_LIMIT_TEXT "100"

/* The calls of a batch API */
typedef enum LlmgwBatchOp
{
	LLMGW_BATCH_UPLOAD,			/* the items as a file (id: none) */
	LLMGW_BATCH_CREATE,			/* (id: none) */
	LLMGW_BATCH_LIST,			/* the latest batches (id: none) */
	LLMGW_BATCH_GET,			/* a batch's object (id: the batch) */
	LLMGW_BATCH_CANCEL,			/* (id: the batch) */
	LLMGW_BATCH_RESULTS			/* (id: an output_ref or error_ref) */
} LlmgwBatchOp;

/* The requests of an upload on a session (a resumable upload) */
typedef enum LlmgwUploadCommand
{
	LLMGW_UPLOAD_START,			/* open a session for the file */
	LLMGW_UPLOAD_SEND,			/* send the file from an offset, and finalize it */
	LLMGW_UPLOAD_QUERY			/* ask how much of the file the session holds */
} LlmgwUploadCommand;

/* What the answer (2xx) of a start or of a query says */
typedef struct LlmgwUploadAnswer
{
	char	   *session_url;	/* a start's: where the session's requests go
								 * (palloc'd) */
	bool		final;			/* a query's: the file is whole, and the
								 * answer's body names it */
	size_t		received;		/* a query's, not final: bytes of the file the
								 * session holds */
	const char *error;			/* why the answer cannot be used (the upload
								 * starts again), or NULL */
} LlmgwUploadAnswer;

/*
 * An upload of the file on a session of several requests (Gemini's
 * resumable upload protocol): a start, to url(LLMGW_BATCH_UPLOAD) with the
 * body start_body, whose answer names the session's URL (on the base URL's
 * host: llmgw_batch_same_origin); a send of the file from an offset (the
 * whole file: 0), whose answer names the file as uploaded() reads it; when
 * a send is cut short, a query whose answer says where to go on from.
 */
typedef struct LlmgwUploadSession
{
	/* the response headers a start's or a query's answer is read from */
	const char *const *answer_headers;	/* NULL-terminated */
	/* headers of a request, for a file of size bytes sent from offset */
	struct curl_slist *(*headers) (const LlmgwRoute *route, LlmgwUploadCommand cmd,
								   size_t offset, size_t size);
	char	   *(*start_body) (const char *marker);
	/*
	 * Read a start's or a query's 2xx answer: values are those of
	 * answer_headers, in order (NULL: absent)
	 */
	void		(*read) (const char *base_url, LlmgwUploadCommand cmd, char *const *values,
						 size_t size, LlmgwUploadAnswer *answer);
} LlmgwUploadSession;

/* What became of an item */
typedef enum LlmgwBatchItemEnd
{
	LLMGW_BATCH_ITEM_ANSWERED,	/* the outcome says how */
	LLMGW_BATCH_ITEM_EXPIRED,
	LLMGW_BATCH_ITEM_CANCELLED
} LlmgwBatchItemEnd;

/* Receives each item of a results document (custom_id without the marker) */
typedef void (*LlmgwBatchEmit) (void *arg, const char *custom_id, LlmgwBatchItemEnd end,
								const LlmgwOutcome *out);

typedef struct LlmgwBatchWire
{
	const char *api;			/* its name, for messages */
	bool		upload;			/* the items go up as a file before the create
								 * (multipart, purpose=batch) */
	bool		serial_create;	/* one uncertain create per provider at a time */
	int			max_requests;	/* items in one batch */
	size_t		max_bytes;		/* of the file or create body */
	/* URL of a call (palloc'd) */
	char	   *(*url) (const LlmgwRoute *route, LlmgwBatchOp op, const char *id);
	/* headers of a call: JSON, or a multipart upload */
	struct curl_slist *(*headers) (const LlmgwRoute *route, bool json);
	/*
	 * The file or create body: begin, then one item each (n from 0; body is
	 * the provider's request as its wire format builds it), then end
	 */
	void		(*begin) (StringInfo buf, const LlmgwRoute *route, const char *marker);
	void		(*item) (StringInfo buf, int n, const char *marker, const char *custom_id,
						 const char *body, size_t len);
	void		(*end) (StringInfo buf);
	/* The create body of an uploaded file (upload formats only; palloc'd) */
	char	   *(*create_body) (const LlmgwRoute *route, const char *marker, const char *input_file);
	/* Read a batch object; false if it is not one */
	bool		(*read_batch) (json_t *obj, LlmgwBatchStatus *st);
	/* The member of a list answer holding its batches (and another name) */
	const char *list_key;
	const char *list_key_too;
	/*
	 * A line of a JSONL results document (an item); NULL when its lines
	 * are already OpenAI output lines.  An item whose custom_id does not
	 * carry the marker is passed over: returns 1 then, else 0.
	 */
	int			(*results) (const char *buf, size_t len, const char *marker,
							LlmgwBatchEmit emit, void *arg);
	/*
	 * Whether the results at ref (an output_ref) are one document, read
	 * whole by results_doc (which returns how many items it passed over),
	 * rather than JSONL lines; NULL when they never are
	 */
	bool		(*whole) (const char *ref);
	int			(*results_doc) (const char *buf, size_t len, const char *marker,
								LlmgwBatchEmit emit, void *arg);
	/*
	 * Embeddings batches (llmgw.submit_embedding_batch): an item and the
	 * create body as item and create_body; NULL when the API takes none
	 */
	void		(*embed_item) (StringInfo buf, int n, const char *marker, const char *custom_id,
							   const char *body, size_t len);
	char	   *(*embed_create_body) (const LlmgwRoute *route, const char *marker,
									  const char *input_file);
	/*
	 * An API that takes its requests inline (upload false) up to
	 * inline_bytes of create body, and beyond them as an uploaded file
	 * (Gemini): each item a line of that file, the file's name read from the
	 * upload's answer (palloc'd, NULL if it names none), the create body
	 * naming it built by create_body.  inline_bytes 0: always inline.
	 */
	size_t		inline_bytes;
	void		(*file_item) (StringInfo buf, int n, const char *marker, const char *custom_id,
							  const char *body, size_t len);
	char	   *(*uploaded) (json_t *answer);
	/*
	 * Embeddings batches of an API with a create of their own (Gemini's
	 * asyncBatchEmbedContent): its URL (palloc'd), and a line of the file
	 * of such a batch; NULL when embeddings batches are created as others
	 * (the create body says the endpoint) and go in files as others
	 */
	char	   *(*embed_create_url) (const LlmgwRoute *route);
	void		(*embed_file_item) (StringInfo buf, int n, const char *marker, const char *custom_id,
									const char *body, size_t len);
	/*
	 * How an inline API's file goes up: on a session of several requests
	 * (above), or in one request when NULL
	 */
	const LlmgwUploadSession *session;
} LlmgwBatchWire;

extern const LlmgwBatchWire *llmgw_batch_wire(const char *kind);

extern const LlmgwBatchWire llmgw_batch_openai;
extern const LlmgwBatchWire llmgw_batch_azure;
extern const LlmgwBatchWire llmgw_batch_anthropic;
extern const LlmgwBatchWire llmgw_batch_gemini;

/* Shared by the formats (batch_wire.c) */
extern bool llmgw_batch_parse_status(const LlmgwBatchWire *w, const char *buf, size_t len,
									 LlmgwBatchStatus *st);
extern LlmgwBatchStatus *llmgw_batch_parse_list(const LlmgwBatchWire *w, const char *buf,
												size_t len, int *n, int *listed);
extern void llmgw_batch_status_init(LlmgwBatchStatus *st);
extern bool llmgw_batch_safe_id(const char *s);
extern bool llmgw_batch_safe_ref(const char *s);
extern char *llmgw_batch_custom_id(const char *marker, const char *wire_id);
extern char *llmgw_batch_wire_id(const char *marker, const char *custom_id);
extern int64 llmgw_batch_rfc3339(const char *s);
extern bool llmgw_batch_same_origin(const char *base_url, const char *url);
extern void llmgw_batch_line(StringInfo buf, const char *custom_id, LlmgwBatchItemEnd end,
							 const LlmgwOutcome *out);

#endif							/* LLMGW_BATCH_WIRE_H */
