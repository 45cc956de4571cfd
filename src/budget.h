/*-------------------------------------------------------------------------
 *
 * budget.h
 *		The budget ledger in shared memory: what each budget has spent in
 *		its period, what calls in flight have reserved against it, and what
 *		the items of provider batches not answered yet reserve (loaded from
 *		llmgw.batch_items, kept up to date as batches are queued and written).
 *
 * Money here is an int64 count of LLMGW_MONEY_UNIT (1e-10 of a currency
 * unit), rounded up from the exact numeric costs of llmgw.usage; the
 * tables stay the record, the ledger only decides admission quickly.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_BUDGET_H
#define LLMGW_BUDGET_H

#include "datatype/timestamp.h"

#define LLMGW_MONEY_SCALE_SQL "10000000000"	/* units per currency unit */
#define LLMGW_MONEY_SCALE 10000000000.0
#define LLMGW_MONEY_SCALE_INT INT64CONST(10000000000)
#define LLMGW_MONEY_UNITS_PER_TOKEN_SQL "10000"	/* a price per 1M tokens in units per token */
#define LLMGW_MAX_CALL_BUDGETS 16

struct LedgerEntry;

/* What a budget is kept for (llmgw.budgets.scope) */
typedef enum LlmgwBudgetScope
{
	LLMGW_BUDGET_KEY,
	LLMGW_BUDGET_TEAM,
	LLMGW_BUDGET_ROLE,
	LLMGW_BUDGET_MODEL,
	LLMGW_BUDGET_GLOBAL
} LlmgwBudgetScope;

/* A budget's period, in UTC (llmgw.budgets.period) */
typedef enum LlmgwPeriod
{
	LLMGW_PERIOD_DAY,
	LLMGW_PERIOD_WEEK,
	LLMGW_PERIOD_MONTH,
	LLMGW_PERIOD_TOTAL
} LlmgwPeriod;

/* The budgets a call counts against, and what it reserved on the hard ones */
typedef struct LlmgwReservation
{
	int			n;
	struct LedgerEntry *entry[LLMGW_MAX_CALL_BUDGETS];	/* in the shared ledger */
	int64		budget_id[LLMGW_MAX_CALL_BUDGETS];
	int64		amount[LLMGW_MAX_CALL_BUDGETS];	/* units reserved; 0 on soft ones */
} LlmgwReservation;

/* A budget as the configuration describes it */
typedef struct LlmgwBudgetDef
{
	int64		id;
	char	   *name;
	LlmgwBudgetScope scope;
	int64		key_lineage;
	int64		team_id;
	char	   *role;
	char	   *model;
	LlmgwPeriod period;
	bool		hard;
	int64		limit;			/* units */
	char		currency[4];
	struct LedgerEntry *entry;	/* in the ledger, set by llmgw_budget_sync */
} LlmgwBudgetDef;

/* Why admission failed */
typedef struct LlmgwBudgetRefusal
{
	int			index;			/* into the defs given */
	int64		spent;
	int64		reserved;
	TimestampTz resets_at;
} LlmgwBudgetRefusal;

/*
 * A budget that crossed its limit while settling, or that is now forecast
 * to run out before its period ends
 */
typedef struct LlmgwBudgetCrossing
{
	int64		budget_id;
	int64		spent;
	TimestampTz period_start;
	bool		forecast;		/* forecast to run out, not reached */
	TimestampTz at;				/* when the charge was made */
} LlmgwBudgetCrossing;

extern bool llmgw_own_rollup;
extern int	llmgw_max_budgets;

extern Size llmgw_budget_shmem_size(void);
extern void llmgw_budget_shmem_init(void);
extern bool llmgw_budget_sync(LlmgwBudgetDef *defs, int n);
extern void llmgw_budget_loaded(int64 budget_id, int64 spent, int64 batch_reserved,
								TimestampTz period_start, TimestampTz period_end);
extern bool llmgw_budget_reserve(LlmgwBudgetDef **defs, int n, int64 amount, bool unbounded,
								 LlmgwReservation *res, LlmgwBudgetRefusal *refusal);
extern int	llmgw_budget_charge(LlmgwReservation *res, const bool *charged, int64 cost,
								TimestampTz started_at, LlmgwBudgetCrossing *crossings,
								int max);
extern void llmgw_budget_release(LlmgwReservation *res);
extern void llmgw_budget_reload(void);

#endif							/* LLMGW_BUDGET_H */
