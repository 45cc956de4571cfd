/*-------------------------------------------------------------------------
 *
 * response.h
 *		The normalised answer llm_chat() returns, whatever the provider.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_RESPONSE_H
#define LLMGW_RESPONSE_H

#include <jansson.h>

#include "call.h"

/* A UUID as text, dashes included: 36 characters and the NUL */
#define LLMGW_UUID_TEXT_LEN 37

extern json_t *llmgw_response_value(const LlmgwCall *call);
extern char *llmgw_response_json(const LlmgwCall *call);
extern json_t *llmgw_answer_value(LlmgwCall *call);
extern void llmgw_uuid_text(const pg_uuid_t *id, char *dst, bool dashes);

#endif							/* LLMGW_RESPONSE_H */
