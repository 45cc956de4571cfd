/*-------------------------------------------------------------------------
 *
 * redact.h
 *		Secrets out of text: provider messages, and every server log line.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_REDACT_H
#define LLMGW_REDACT_H

extern char *llmgw_redact(const char *text, const char *secret);
extern char *llmgw_mask_keys(const char *s);
extern char *llmgw_mask_literals(const char *s);
extern void llmgw_redact_install_log_hook(void);

#endif							/* LLMGW_REDACT_H */
