/*-------------------------------------------------------------------------
 *
 * redaction.h
 *		The request log's redaction rules, loaded and applied.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_REDACTION_H
#define LLMGW_REDACTION_H

typedef struct LlmgwRedactionRule LlmgwRedactionRule;

extern LlmgwRedactionRule *llmgw_redaction_load(MemoryContext cxt, int *nrules);
extern text *llmgw_redaction_apply(const LlmgwRedactionRule *rules, int n, text *body,
								   bool *changed);

#endif							/* LLMGW_REDACTION_H */
