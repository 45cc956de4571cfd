/*-------------------------------------------------------------------------
 *
 * batch_result.h
 *		What the ingest of a provider batch reads of a result line (an
 *		OpenAI Batch API output line, as every API's results are
 *		normalised to): plain C, no JSON library in sight.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_BATCH_RESULT_H
#define LLMGW_BATCH_RESULT_H

#include "postgres.h"

/* The token counts a result carries, as the usage row's columns */
typedef enum LlmgwResultTokens
{
	LLMGW_RT_INPUT,
	LLMGW_RT_OUTPUT,
	LLMGW_RT_CACHED_INPUT,
	LLMGW_RT_REASONING,
	LLMGW_RT_NTOKENS
} LlmgwResultTokens;

typedef struct LlmgwBatchResult
{
	char	   *custom_id;		/* NULL: it has none (matches no item) */
	const char *state;			/* the item's end: done, failed, expired or cancelled */
	bool		has_status;
	int32		http_status;	/* response.status_code */
	char	   *answer;			/* a chat answer's text (done), else NULL */
	bool		has_tokens[LLMGW_RT_NTOKENS];
	int64		tokens[LLMGW_RT_NTOKENS];	/* missing counts are not 0 */
	const char *error_class;	/* NULL: answered */
	char	   *error;			/* the provider's message, or NULL */
} LlmgwBatchResult;

/* Read a line (palloc'd strings); false if it is not a JSON object */
extern bool llmgw_batch_result_read(const char *buf, size_t len, bool embeddings,
									LlmgwBatchResult *r);

#endif							/* LLMGW_BATCH_RESULT_H */
