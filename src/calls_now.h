/*-------------------------------------------------------------------------
 *
 * calls_now.h
 *		Who is waiting for what: each call holding a request slot, queued
 *		or running, with its caller's pid, for llmgw.calls_now.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_CALLS_NOW_H
#define LLMGW_CALLS_NOW_H

#include "llmgw.h"

extern void llmgw_slot_caller(dsa_pointer request, char kind, LlmgwSlotCaller *who);

#endif							/* LLMGW_CALLS_NOW_H */
