/*-------------------------------------------------------------------------
 *
 * journal.h
 *		The journal of calls in flight, which survives a server restart.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_JOURNAL_H
#define LLMGW_JOURNAL_H

#include "call.h"

extern void llmgw_journal_add(LlmgwCall *call);
extern void llmgw_journal_remove(LlmgwCall *call);
extern bool llmgw_journal_recover(void);

#endif							/* LLMGW_JOURNAL_H */
