/*-------------------------------------------------------------------------
 *
 * policy.h
 *		Who is calling, what they may call, and what it may cost: virtual
 *		keys, teams, role bindings, rate limits and budgets, applied by a
 *		worker before it calls a provider and settled after.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_POLICY_H
#define LLMGW_POLICY_H

#include "utils/guc.h"

#include "call.h"
#include "config.h"

#define LLMGW_KEY_HASH_LEN 32
#define LLMGW_KEY_PREFIX_LEN 12

/* apikey.c: the session's llmgw.api_key, as a hash and a visible prefix */
extern char *llmgw_api_key;
extern bool llmgw_api_key_check(char **newval, void **extra, GucSource source);
extern void llmgw_api_key_assign(const char *newval, void *extra);
extern const char *llmgw_api_key_show(void);
extern bool llmgw_api_key_current(uint8 *hash);
extern bool llmgw_api_key_hash(const char *key, size_t len, uint8 *hash);
extern LlmgwErrorClass llmgw_policy_key_may(const uint8 *hash, const char *model);

/* What a key may read at the front door besides calling models */
#define LLMGW_KEY_SCOPE_METRICS 0x01	/* GET /metrics */
#define LLMGW_KEY_SCOPE_FINANCE 0x02	/* GET /spend */

extern int	llmgw_policy_key_scopes(const uint8 *hash);

/* policy.c */
extern bool llmgw_policy_refresh(void);
extern bool llmgw_policy_admit(LlmgwCall *call, const LlmgwModelRoutes *model);
extern bool llmgw_policy_deployment(LlmgwCall *call, const struct LlmgwRoute *route);
extern void llmgw_policy_charge(LlmgwCall *call, int64 cost, const char *currency,
								TimestampTz started_at);
extern void llmgw_policy_finish(LlmgwCall *call);
extern void llmgw_policy_charge_estimate(LlmgwCall *call);
extern int64 llmgw_policy_output_bound(const LlmgwCall *call, const struct LlmgwRoute *route);
extern void llmgw_policy_alerts(void);
extern void llmgw_policy_alerts_discard(void);

#endif							/* LLMGW_POLICY_H */
