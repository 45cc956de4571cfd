/*-------------------------------------------------------------------------
 *
 * http.h
 *		The worker's transfers: one libcurl multi handle driven through an
 *		epoll set.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_HTTP_H
#define LLMGW_HTTP_H

#include <stdio.h>

#include "call.h"

extern void llmgw_http_init(int max_connections);
extern int	llmgw_http_fd(void);
extern long llmgw_http_timeout(void);
extern int	llmgw_http_active(void);
extern void llmgw_http_start(LlmgwCall *call, const char *url);
extern long llmgw_http_status_now(LlmgwCall *call);
extern void llmgw_http_abort(LlmgwCall *call);
extern void llmgw_http_drive(dlist_head *finished);
extern void llmgw_http_release(LlmgwCall *call);
extern const char *llmgw_http_strerror(int curl_result);
extern bool llmgw_http_timed_out(int curl_result);
extern bool llmgw_http_too_large(LlmgwCall *call);

/*
 * A transfer of the worker's own that is no call (a provider batch's
 * upload, poll or download): driven by the same multi handle, never
 * journaled; done is set once it ended.
 */
#define LLMGW_TRANSFER_KEPT 4

typedef struct LlmgwTransfer
{
	void	   *easy;
	void	   *headers;		/* struct curl_slist *, freed with it */
	void	   *mime;			/* curl_mime * of an upload */
	char	   *body;			/* malloc'd POST body */
	FILE	   *upload;			/* the file sent as the body, or NULL */
	off_t		upload_from;	/* where in it the body starts */
	FILE	   *download;		/* the file the answer is written to, or NULL */
	size_t		downloaded;		/* bytes written to it */
	size_t		download_limit; /* most bytes it takes */
	bool		too_large;		/* the download went past it */
	LlmgwBuffer response;
	long		http_status;
	int			curl_result;
	bool		done;
	/* response headers kept (llmgw_http_transfer_keep), NULL-terminated */
	const char *const *keep;
	char	   *kept[LLMGW_TRANSFER_KEPT];	/* their values once done (malloc'd), NULL
											 * when the answer had none */
	struct LlmgwTransfer *next;
} LlmgwTransfer;

/* How a transfer's upload goes (llmgw_http_transfer_start's flags) */
#define LLMGW_TRANSFER_MULTIPART 0x01	/* the file part of a multipart POST */
#define LLMGW_TRANSFER_FRESH 0x02	/* on a connection of its own */

extern void llmgw_http_transfer_start(LlmgwTransfer *t, const char *url, const char *method,
									  void *headers, char *body, FILE *upload,
									  size_t upload_len, int flags, FILE *download,
									  size_t limit, long timeout_ms);
extern void llmgw_http_transfer_keep(LlmgwTransfer *t, const char *const *names);
extern void llmgw_http_transfer_release(LlmgwTransfer *t);

#endif							/* LLMGW_HTTP_H */
