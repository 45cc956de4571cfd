/*-------------------------------------------------------------------------
 *
 * response.h
 *		The normalised answer llm_chat() returns, whatever the provider.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_RESPONSE_H
#define LLMGW_RESPONSE_H

#include "call.h"

extern char *llmgw_response_json(const LlmgwCall *call);

#endif							/* LLMGW_RESPONSE_H */
