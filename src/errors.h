/*-------------------------------------------------------------------------
 *
 * errors.h
 *		Error classes of provider calls and their SQLSTATEs.
 *
 * Class LG is llmgw's own (implementation-defined SQLSTATE class); the
 * last three characters echo the HTTP status that usually carries the
 * condition.  docs/errors.md lists them for users.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_ERRORS_H
#define LLMGW_ERRORS_H

#include "utils/elog.h"

#define ERRCODE_LLMGW_CONNECTION		MAKE_SQLSTATE('L','G','0','0','1')
#define ERRCODE_LLMGW_TIMEOUT			MAKE_SQLSTATE('L','G','0','0','2')
#define ERRCODE_LLMGW_MALFORMED			MAKE_SQLSTATE('L','G','0','0','3')
#define ERRCODE_LLMGW_TOO_LARGE			MAKE_SQLSTATE('L','G','0','0','4')
#define ERRCODE_LLMGW_PROVIDER_CONFIG	MAKE_SQLSTATE('L','G','0','0','5')
#define ERRCODE_LLMGW_INTERRUPTED		MAKE_SQLSTATE('L','G','0','0','6')
#define ERRCODE_LLMGW_USAGE_NOT_RECORDED MAKE_SQLSTATE('L','G','0','0','7')
#define ERRCODE_LLMGW_BROKEN_STREAM		MAKE_SQLSTATE('L','G','0','0','8')
#define ERRCODE_LLMGW_REQUEST_TOO_LARGE	MAKE_SQLSTATE('L','G','0','0','9')
#define ERRCODE_LLMGW_BUDGET_EXHAUSTED	MAKE_SQLSTATE('L','G','0','1','0')
#define ERRCODE_LLMGW_RATE_LIMITED		MAKE_SQLSTATE('L','G','0','1','1')
#define ERRCODE_LLMGW_SHARE_EXCEEDED	MAKE_SQLSTATE('L','G','0','1','2')
#define ERRCODE_LLMGW_INVALID_REQUEST	MAKE_SQLSTATE('L','G','4','0','0')
#define ERRCODE_LLMGW_AUTH				MAKE_SQLSTATE('L','G','4','0','1')
#define ERRCODE_LLMGW_QUOTA				MAKE_SQLSTATE('L','G','4','0','2')
#define ERRCODE_LLMGW_MODEL_NOT_FOUND	MAKE_SQLSTATE('L','G','4','0','4')
#define ERRCODE_LLMGW_CONTEXT_LENGTH	MAKE_SQLSTATE('L','G','4','1','3')
#define ERRCODE_LLMGW_RATE_LIMIT		MAKE_SQLSTATE('L','G','4','2','9')
#define ERRCODE_LLMGW_CONTENT_FILTER	MAKE_SQLSTATE('L','G','4','5','1')
#define ERRCODE_LLMGW_SERVER			MAKE_SQLSTATE('L','G','5','0','0')
#define ERRCODE_LLMGW_OVERLOADED		MAKE_SQLSTATE('L','G','5','0','3')

/* Why a call failed; the name is what llmgw.usage.error_class holds */
typedef enum LlmgwErrorClass
{
	LLMGW_ERR_NONE = 0,
	LLMGW_ERR_UNKNOWN_MODEL,
	LLMGW_ERR_CONNECTION,
	LLMGW_ERR_TIMEOUT,
	LLMGW_ERR_MALFORMED,
	LLMGW_ERR_TOO_LARGE,
	LLMGW_ERR_PROVIDER_CONFIG,
	LLMGW_ERR_INTERRUPTED,
	LLMGW_ERR_CANCELLED,
	LLMGW_ERR_USAGE_NOT_RECORDED,
	LLMGW_ERR_INVALID_REQUEST,
	LLMGW_ERR_AUTH,
	LLMGW_ERR_QUOTA,
	LLMGW_ERR_MODEL_NOT_FOUND,
	LLMGW_ERR_CONTEXT_LENGTH,
	LLMGW_ERR_RATE_LIMIT,
	LLMGW_ERR_CONTENT_FILTER,
	LLMGW_ERR_SERVER,
	LLMGW_ERR_OVERLOADED,
	LLMGW_ERR_INVALID_KEY,		/* llmgw's own refusals, before any provider */
	LLMGW_ERR_NOT_ALLOWED,
	LLMGW_ERR_BUDGET,
	LLMGW_ERR_LOCAL_RATE_LIMIT,
	LLMGW_ERR_BROKEN_STREAM,	/* a 2xx stream cut short or unreadable */
	LLMGW_ERR_REQUEST_TOO_LARGE	/* the provider refused the request's size */
} LlmgwErrorClass;

extern const char *llmgw_error_class_name(LlmgwErrorClass cls);
extern int	llmgw_error_class_sqlstate(LlmgwErrorClass cls);
extern const char *llmgw_error_class_message(LlmgwErrorClass cls);
extern bool llmgw_error_retryable(LlmgwErrorClass cls);
extern bool llmgw_error_fallback_helps(LlmgwErrorClass cls);
extern bool llmgw_error_deployment_failure(LlmgwErrorClass cls);
extern int	llmgw_error_class_http(LlmgwErrorClass cls);
extern LlmgwErrorClass llmgw_error_class_from_http(long http_status);

#endif							/* LLMGW_ERRORS_H */
