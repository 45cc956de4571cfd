/*-------------------------------------------------------------------------
 *
 * reqlog.h
 *		The request log: the bodies of opted-in calls, redacted and cut to
 *		size, written beside their usage rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_REQLOG_H
#define LLMGW_REQLOG_H

#include "usage.h"

/* The logged calls of a round, for one INSERT */
typedef struct LlmgwReqlog LlmgwReqlog;

extern int	llmgw_request_log_retention;
extern int	llmgw_request_log_max_body;

extern void llmgw_reqlog_define_gucs(void);
extern void llmgw_reqlog_load(bool installed);
extern bool llmgw_reqlog_wanted(const LlmgwCall *call);
extern void llmgw_reqlog_prepare(dlist_head *finished);
extern LlmgwReqlog *llmgw_reqlog_batch(void);
extern void llmgw_reqlog_clear(LlmgwReqlog *log);
extern void llmgw_reqlog_add(LlmgwReqlog *log, LlmgwCall *call, const LlmgwUsageRow *row);
extern void llmgw_reqlog_write(LlmgwReqlog *log);
extern void llmgw_reqlog_maintain(void);

#endif							/* LLMGW_REQLOG_H */
