/*-------------------------------------------------------------------------
 *
 * frontdoor.h
 *		The HTTP front door each worker serves (llmgw.http_listen).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_FRONTDOOR_H
#define LLMGW_FRONTDOOR_H

#include "lib/ilist.h"
#include "storage/latch.h"

#include "call.h"

extern char *llmgw_http_listen;
extern char *llmgw_http_tls_cert;
extern char *llmgw_http_tls_key;
extern int	llmgw_http_max_connections;
extern int	llmgw_http_max_body;
extern int	llmgw_http_idle_timeout;

extern void llmgw_frontdoor_start(int worker, uint64 generation, WaitEventSet *wes);
extern bool llmgw_frontdoor_listening(void);
extern void llmgw_frontdoor_run(dlist_head *created);
extern long llmgw_frontdoor_timeout(void);
extern bool llmgw_frontdoor_progress(dlist_head *running, dlist_head *finished);
extern void llmgw_frontdoor_finish(LlmgwCall *call);
extern void llmgw_frontdoor_stop(void);

#endif							/* LLMGW_FRONTDOOR_H */
