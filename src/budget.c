/*-------------------------------------------------------------------------
 *
 * budget.c
 *		The budget ledger in shared memory.
 *
 * Admission reserves a call's worst-case cost on every hard budget it
 * counts against, under one lock, so concurrent calls can never reserve
 * past a limit.  Settling charges the exact cost (from the usage row) and
 * releases the reservation; it notes a budget that reaches its limit, or
 * that will run out before its period ends at its rate of spend so far (an
 * alert each, once per period).  Charges happen inside the transaction that
 * writes the usage rows, after those rows are inserted; loading a budget's
 * spend takes a SHARE lock on llmgw.usage first.  So a load sees exactly
 * the charges that were applied before it, and none is counted twice.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "access/htup_details.h"
#include "utils/array.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/datetime.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "llmgw.h"
#include "budget.h"
#include "config.h"

int			llmgw_max_budgets = 1024;

/* A budget in the ledger (hash key: budget_id) */
typedef struct LedgerEntry
{
	int64		budget_id;
	LlmgwPeriod period;
	bool		hard;
	bool		loaded;			/* spent holds the period's spend */
	bool		alerted;		/* its limit was reached in this period */
	bool		forecast_alerted;	/* forecast to run out in this period */
	int64		limit;
	int64		spent;
	int64		reserved;		/* by calls in flight (this server life) */
	int64		batch_reserved; /* by batch items not answered yet (tables) */
	TimestampTz period_start;
	TimestampTz period_end;
	uint64		sync_round;
} LedgerEntry;

typedef struct Ledger
{
	LWLock	   *lock;			/* the entries and every field of them */
	uint64		sync_round;
} Ledger;

static Ledger *ledger = NULL;
static HTAB *entries = NULL;

Size
llmgw_budget_shmem_size(void)
{
	return add_size(MAXALIGN(sizeof(Ledger)),
					hash_estimate_size(llmgw_max_budgets, sizeof(LedgerEntry)));
}

/* Called from the shmem startup hook, with AddinShmemInitLock held */
void
llmgw_budget_shmem_init(void)
{
	bool		found;

	ledger = ShmemInitStruct("llmgw budgets", sizeof(Ledger), &found);
	if (!found)
	{
		ledger->lock = llmgw_lock(LLMGW_LOCK_LEDGER);
		ledger->sync_round = 0;
	}
	entries = llmgw_shmem_hash("llmgw budget ledger", llmgw_max_budgets, sizeof(int64),
							   sizeof(LedgerEntry));
}

/* The end of the period that starts at start (UTC calendar) */
static TimestampTz
period_after(LlmgwPeriod period, TimestampTz start)
{
	struct pg_tm tm;
	fsec_t		fsec;
	TimestampTz result;

	switch (period)
	{
		case LLMGW_PERIOD_DAY:
			return start + USECS_PER_DAY;
		case LLMGW_PERIOD_WEEK:
			return start + 7 * USECS_PER_DAY;
		case LLMGW_PERIOD_MONTH:
			if (timestamp2tm(start, NULL, &tm, &fsec, NULL, NULL) != 0)
				return DT_NOEND;
			tm.tm_mon++;
			if (tm.tm_mon > MONTHS_PER_YEAR)
			{
				tm.tm_mon = 1;
				tm.tm_year++;
			}
			if (tm2timestamp(&tm, fsec, NULL, &result) != 0)
				return DT_NOEND;
			return result;
		default:
			return DT_NOEND;
	}
}

/* Move an entry into the current period when the old one is over */
static void
roll_over(LedgerEntry *e, TimestampTz now)
{
	while (e->period_end != DT_NOEND && now >= e->period_end)
	{
		e->period_start = e->period_end;
		e->period_end = period_after(e->period, e->period_start);
		e->spent = 0;
		e->alerted = false;
		e->forecast_alerted = false;
	}
}

/*
 * Is the budget, at the rate of its spend so far in this period, forecast
 * to run out before the period ends (llmgw.budget_projection, in SQL, says
 * the same: the rate is measured over at least a 24th of the period)?  Not
 * once its limit is reached, and never for a total budget, which does not
 * reset.
 */
static bool
forecast_to_run_out(const LedgerEntry *e, TimestampTz now)
{
	double		elapsed;
	double		left;

	if (e->period == LLMGW_PERIOD_TOTAL || e->period_end == DT_NOEND ||
		e->period_start == DT_NOBEGIN || e->spent <= 0 || e->spent >= e->limit ||
		now >= e->period_end)
		return false;
	elapsed = Max((double) (now - e->period_start),
				  (double) (e->period_end - e->period_start) / 24.0);
	left = (double) (e->period_end - now);
	/* now + (limit - spent) / (spent / elapsed) < period_end */
	return (double) (e->limit - e->spent) * elapsed < (double) e->spent * left;
}

/*
 * Make the ledger hold exactly the budgets defs, and set each def's entry.
 * Returns true when some of them need their spend loaded.
 */
bool
llmgw_budget_sync(LlmgwBudgetDef *defs, int n)
{
	bool		need_load = false;
	uint64		round;
	HASH_SEQ_STATUS seq;
	LedgerEntry *e;

	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	round = ++ledger->sync_round;
	for (int i = 0; i < n; i++)
	{
		bool		found;

		e = hash_search(entries, &defs[i].id, HASH_ENTER_NULL, &found);
		defs[i].entry = e;
		if (e == NULL)
		{
			LWLockRelease(ledger->lock);
			ereport(ERROR,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("more than llmgw.max_budgets budgets are defined"),
					 errhint("Raise llmgw.max_budgets (currently %d) and restart the server.",
							 llmgw_max_budgets)));
		}
		if (!found || e->period != defs[i].period)
		{
			memset(e, 0, sizeof(*e));
			e->budget_id = defs[i].id;
			e->period = defs[i].period;
		}
		e->hard = defs[i].hard;
		if (e->limit != defs[i].limit)
			e->alerted = false;
		e->limit = defs[i].limit;
		e->sync_round = round;
		if (!e->loaded)
			need_load = true;
	}
	/* budgets that were dropped (a reservation that names one skips it) */
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->sync_round != round)
			(void) hash_search(entries, &e->budget_id, HASH_REMOVE, NULL);
	}
	LWLockRelease(ledger->lock);
	return need_load;
}

/*
 * Store a budget's spend as loaded from the rollups, and what the batch
 * items not answered yet reserve on it (llmgw.budget_batch_reserved)
 */
void
llmgw_budget_loaded(int64 budget_id, int64 spent, int64 batch_reserved,
					TimestampTz period_start, TimestampTz period_end)
{
	LedgerEntry *e;

	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	e = hash_search(entries, &budget_id, HASH_FIND, NULL);
	if (e)
	{
		e->spent = spent;
		e->batch_reserved = batch_reserved;
		e->period_start = period_start;
		e->period_end = period_end;
		e->alerted = e->limit > 0 && spent >= e->limit;
		e->loaded = true;
	}
	LWLockRelease(ledger->lock);
}

/*
 * Admit a call: reserve amount on every hard budget of defs, or on none.
 * A call whose cost has no bound (unbounded) reserves all that is left of
 * each hard budget, so that it is the only call that can overshoot it.
 * Every budget is remembered in res so that settling charges it.  On
 * refusal, fills refusal and returns false.
 */
bool
llmgw_budget_reserve(LlmgwBudgetDef **defs, int n, int64 amount, bool unbounded,
					 LlmgwReservation *res, LlmgwBudgetRefusal *refusal)
{
	TimestampTz now = GetCurrentTimestamp();

	res->n = 0;
	if (n == 0)
		return true;
	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n; i++)
	{
		LedgerEntry *e = defs[i]->entry;

		if (e == NULL || e->budget_id != defs[i]->id)
			continue;			/* dropped meanwhile */
		roll_over(e, now);
		if (e->hard && (e->spent + e->reserved + e->batch_reserved + amount > e->limit ||
						e->spent + e->reserved + e->batch_reserved >= e->limit))
		{
			refusal->index = i;
			refusal->spent = e->spent;
			refusal->reserved = e->reserved + e->batch_reserved;
			refusal->resets_at = e->period_end;
			LWLockRelease(ledger->lock);
			res->n = 0;
			return false;
		}
	}
	for (int i = 0; i < n && res->n < LLMGW_MAX_CALL_BUDGETS; i++)
	{
		LedgerEntry *e = defs[i]->entry;

		if (e == NULL || e->budget_id != defs[i]->id)
			continue;
		res->entry[res->n] = e;
		res->budget_id[res->n] = e->budget_id;
		res->amount[res->n] = 0;
		if (e->hard)
		{
			res->amount[res->n] = unbounded ?
				Max(amount, e->limit - e->spent - e->reserved - e->batch_reserved) : amount;
			e->reserved += res->amount[res->n];
		}
		res->n++;
	}
	LWLockRelease(ledger->lock);
	return true;
}

/*
 * Charge the cost of one attempt that started at started_at to the budgets
 * of res that charged[] names.  The cost comes out of what the call
 * reserved on each, in the same step, so that no other call ever sees it
 * counted twice (spent and still reserved).  Returns how many budgets
 * reached their limit with it.
 */
int
llmgw_budget_charge(LlmgwReservation *res, const bool *charged, int64 cost,
					TimestampTz started_at, LlmgwBudgetCrossing *crossings, int max)
{
	TimestampTz now = GetCurrentTimestamp();
	int			ncrossed = 0;

	if (res->n == 0 || cost <= 0)
		return 0;
	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	for (int i = 0; i < res->n; i++)
	{
		LedgerEntry *e = res->entry[i];
		int64		taken = Min(cost, res->amount[i]);

		if (!charged[i] || e->budget_id != res->budget_id[i] || !e->loaded)
			continue;
		roll_over(e, now);
		if (started_at < e->period_start)
			continue;			/* belongs to a period that is over */
		if (taken > 0)
		{
			e->reserved = Max(e->reserved - taken, 0);
			res->amount[i] -= taken;
		}
		e->spent += cost;
		if (!e->alerted && e->spent >= e->limit && ncrossed < max)
		{
			e->alerted = true;
			crossings[ncrossed].budget_id = e->budget_id;
			crossings[ncrossed].spent = e->spent;
			crossings[ncrossed].period_start = e->period_start;
			crossings[ncrossed].forecast = false;
			crossings[ncrossed].at = now;
			ncrossed++;
		}
		else if (!e->forecast_alerted && ncrossed < max && forecast_to_run_out(e, now))
		{
			e->forecast_alerted = true;
			crossings[ncrossed].budget_id = e->budget_id;
			crossings[ncrossed].spent = e->spent;
			crossings[ncrossed].period_start = e->period_start;
			crossings[ncrossed].forecast = true;
			crossings[ncrossed].at = now;
			ncrossed++;
		}
	}
	LWLockRelease(ledger->lock);
	return ncrossed;
}

/* Give back what res reserved */
void
llmgw_budget_release(LlmgwReservation *res)
{
	if (res->n == 0)
		return;
	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	for (int i = 0; i < res->n; i++)
	{
		LedgerEntry *e = res->entry[i];

		if (res->amount[i] > 0 && e->budget_id == res->budget_id[i])
			e->reserved = Max(e->reserved - res->amount[i], 0);
	}
	LWLockRelease(ledger->lock);
	res->n = 0;
}

/* units as an exact numeric */
static Datum
units_numeric(int64 units)
{
	return DirectFunctionCall2(numeric_div,
							   DirectFunctionCall1(int8_numeric, Int64GetDatum(units)),
							   DirectFunctionCall1(int8_numeric,
												   Int64GetDatum((int64) LLMGW_MONEY_SCALE)));
}

PG_FUNCTION_INFO_V1(llmgw_budget_ledger);

/* llmgw.budget_ledger(): the ledger entries, for llmgw.budget_status */
Datum
llmgw_budget_ledger(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	LedgerEntry *copy;
	int			n = 0;
	TimestampTz now = GetCurrentTimestamp();
	HASH_SEQ_STATUS seq;
	LedgerEntry *e;

	InitMaterializedSRF(fcinfo, 0);
	copy = palloc(sizeof(LedgerEntry) * Max(llmgw_max_budgets, 1));
	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->loaded && n < llmgw_max_budgets)
		{
			roll_over(e, now);
			copy[n++] = *e;
		}
	}
	LWLockRelease(ledger->lock);

	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		values[0] = Int64GetDatum(copy[i].budget_id);
		values[1] = units_numeric(copy[i].reserved);
		values[2] = units_numeric(copy[i].spent);
		values[3] = TimestampTzGetDatum(copy[i].period_start);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * Have every budget's spend loaded again from the usage rows (after rows
 * were written that the ledger never charged: recovered calls).  A
 * reservation held by a call in flight stays.
 */
void
llmgw_budget_reload(void)
{
	HASH_SEQ_STATUS seq;
	LedgerEntry *e;

	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	hash_seq_init(&seq, entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		e->loaded = false;
	LWLockRelease(ledger->lock);
	llmgw_config_invalidate();
}

static bool ledger_reload_pending = false;
static bool ledger_callback_registered = false;

/* Reload the ledger once the transaction that changed the rollups commits */
static void
ledger_xact_callback(XactEvent event, void *arg)
{
	if (!ledger_reload_pending)
		return;
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT)
		llmgw_budget_reload();
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		ledger_reload_pending = false;
}

/* A worker adds its own rows' rollups by a statement (batch_ingest.c): no change to reload for */
bool		llmgw_own_rollup = false;

PG_FUNCTION_INFO_V1(llmgw_ledger_changed);

/*
 * Statement trigger on llmgw.usage_daily, for writes by anything but the
 * rollup trigger (a restore, a repair): the ledger's spend, loaded from the
 * rollups, is loaded again once the change commits.
 */
Datum
llmgw_ledger_changed(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("llmgw.ledger_changed() must be called as a trigger")));
	if (llmgw_own_rollup)
		return PointerGetDatum(NULL);
	if (!ledger_callback_registered)
	{
		RegisterXactCallback(ledger_xact_callback, NULL);
		ledger_callback_registered = true;
	}
	ledger_reload_pending = true;
	return PointerGetDatum(NULL);
}

/*
 * Batch reservations.  A provider batch reserves the worst case of its
 * items when it is queued, and each item gives its share back when its
 * result is written (and charges its cost).  The record is in the tables
 * (llmgw.batch_items.reserved of items still pending), so it survives a
 * restart: loading a budget reads it with the spend, under SHARE locks on
 * llmgw.usage and llmgw.batch_items.  The ledger changes below are made by
 * transactions that already hold ROW EXCLUSIVE on llmgw.batch_items (and
 * on llmgw.usage for charges), so a load never sees a table without the
 * change or the change without the table; they are undone if the
 * transaction (or subtransaction) that made them aborts.
 */
typedef struct BatchUndo
{
	int64		budget_id;
	int64		reserved;		/* added to batch_reserved */
	int64		spent;			/* added to spent */
	TimestampTz period_start;	/* the period the spend went to */
	SubTransactionId subid;
} BatchUndo;

static BatchUndo *undo = NULL;
static int	nundo = 0;
static int	maxundo = 0;
static bool undo_callbacks = false;

/* Undo the changes of subtransaction subid (every change: InvalidSubTransactionId) */
static void
undo_changes(SubTransactionId subid)
{
	int			kept = 0;

	if (nundo == 0)
		return;
	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nundo; i++)
	{
		LedgerEntry *e;

		if (subid != InvalidSubTransactionId && undo[i].subid != subid)
		{
			undo[kept++] = undo[i];
			continue;
		}
		e = hash_search(entries, &undo[i].budget_id, HASH_FIND, NULL);
		if (e == NULL)
			continue;
		e->batch_reserved = Max(e->batch_reserved - undo[i].reserved, 0);
		if (undo[i].spent != 0 && e->period_start == undo[i].period_start)
			e->spent -= undo[i].spent;
	}
	LWLockRelease(ledger->lock);
	nundo = kept;
}

static void
undo_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
		undo_changes(InvalidSubTransactionId);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_PREPARE || event == XACT_EVENT_ABORT ||
		event == XACT_EVENT_PARALLEL_ABORT)
		nundo = 0;
}

static void
undo_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
					  SubTransactionId parentSubid, void *arg)
{
	if (event == SUBXACT_EVENT_ABORT_SUB)
		undo_changes(mySubid);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		for (int i = 0; i < nundo; i++)
			if (undo[i].subid == mySubid)
				undo[i].subid = parentSubid;
	}
}

/* Remember a change to the ledger (lock held), to undo it on abort */
static void
remember(LedgerEntry *e, int64 reserved, int64 spent)
{
	/* make_room() made room before the lock was taken */
	if (nundo >= maxundo)
		elog(ERROR, "llmgw: the batch undo log is full");
	undo[nundo].budget_id = e->budget_id;
	undo[nundo].reserved = reserved;
	undo[nundo].spent = spent;
	undo[nundo].period_start = e->period_start;
	undo[nundo].subid = GetCurrentSubTransactionId();
	nundo++;
}

/* Room for n more changes in the undo log (before the lock is taken) */
static void
make_room(int n)
{
	if (!undo_callbacks)
	{
		RegisterXactCallback(undo_xact_callback, NULL);
		RegisterSubXactCallback(undo_subxact_callback, NULL);
		undo_callbacks = true;
	}
	if (nundo + n <= maxundo)
		return;
	maxundo = Max(maxundo * 2, nundo + n + 16);
	undo = undo == NULL ?
		MemoryContextAlloc(TopMemoryContext, sizeof(BatchUndo) * maxundo) :
		repalloc(undo, sizeof(BatchUndo) * maxundo);
}

/* The elements of an int8[] that has no NULL */
static int64 *
int8_array(ArrayType *a, int *n, const char *what)
{
	Datum	   *elems;
	bool	   *nulls;
	int64	   *out;

	deconstruct_array(a, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE, &elems, &nulls, n);
	out = palloc(sizeof(int64) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s must not hold NULL", what)));
		out[i] = DatumGetInt64(elems[i]);
	}
	return out;
}

PG_FUNCTION_INFO_V1(llmgw_budget_batch_reserve);

/*
 * llmgw.budget_batch_reserve(budget_ids, limits, spent, batch_reserved,
 * costs): reserve the worst cases (money units) of the longest prefix of a
 * batch's items that fits under every hard budget of budget_ids, under the
 * ledger's lock, as admission does for a call.  A budget the ledger holds
 * and has loaded counts its own spend and reservations; one it does not
 * (created since the workers last loaded) counts the figures given (from
 * the tables: limit, spend and batch reservations).  Returns the number of
 * items reserved and, when not all fit, the budget that stopped them with
 * its spend and reservations in units.
 */
Datum
llmgw_budget_batch_reserve(PG_FUNCTION_ARGS)
{
	int			nb,
				nl,
				ns,
				nr,
				nc;
	int64	   *ids = int8_array(PG_GETARG_ARRAYTYPE_P(0), &nb, "budget_ids");
	int64	   *limits = int8_array(PG_GETARG_ARRAYTYPE_P(1), &nl, "limits");
	int64	   *spent = int8_array(PG_GETARG_ARRAYTYPE_P(2), &ns, "spent");
	int64	   *breserved = int8_array(PG_GETARG_ARRAYTYPE_P(3), &nr, "batch_reserved");
	int64	   *costs = int8_array(PG_GETARG_ARRAYTYPE_P(4), &nc, "costs");
	LedgerEntry **found;
	int			k = nc;
	int			limited = -1;
	int64		limited_spent = 0;
	int64		limited_reserved = 0;
	int64		total = 0;
	TupleDesc	desc;
	Datum		values[4];
	bool		nulls[4] = {false, true, true, true};
	TimestampTz now = GetCurrentTimestamp();

	if (nl != nb || ns != nb || nr != nb)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("budget_ids, limits, spent and batch_reserved must have one element per budget")));
	for (int j = 0; j < nc; j++)
		if (costs[j] < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("a cost must not be negative")));
	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "llmgw.budget_batch_reserve must return a record");
	found = palloc0(sizeof(LedgerEntry *) * Max(nb, 1));
	make_room(nb);

	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nb; i++)
	{
		LedgerEntry *e = hash_search(entries, &ids[i], HASH_FIND, NULL);
		int64		used;
		int64		limit;
		int64		cum = 0;
		int			fit = 0;

		found[i] = e;
		if (e && e->loaded)
		{
			roll_over(e, now);
			used = e->spent + e->reserved + e->batch_reserved;
			limit = e->limit;
		}
		else
		{
			used = spent[i] + breserved[i] + (e ? e->reserved : 0);
			limit = limits[i];
		}
		if (used < limit)
		{
			while (fit < k && costs[fit] <= limit - used - cum)
				cum += costs[fit++];
		}
		if (fit < k)
		{
			k = fit;
			limited = i;
			limited_spent = e && e->loaded ? e->spent : spent[i];
			limited_reserved = used - limited_spent;
		}
	}
	for (int j = 0; j < k; j++)
		total += costs[j];
	for (int i = 0; i < nb && k > 0; i++)
	{
		if (found[i] == NULL)
			continue;			/* the next load reads it from the tables */
		found[i]->batch_reserved += total;
		remember(found[i], total, 0);
	}
	LWLockRelease(ledger->lock);

	values[0] = Int32GetDatum(k);
	if (limited >= 0)
	{
		values[1] = Int64GetDatum(ids[limited]);
		values[2] = units_numeric(limited_spent);
		values[3] = units_numeric(limited_reserved);
		nulls[1] = nulls[2] = nulls[3] = false;
	}
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}

PG_FUNCTION_INFO_V1(llmgw_budget_batch_settle);

/*
 * llmgw.budget_batch_settle(charged_on, reserved_on, released, charged,
 * started_at): items of a batch got their results (or ended without): give
 * back released units on the budgets they reserved on, and charge charged
 * units to the budgets they count against, in the period of started_at.
 * Called in the transaction that writes their usage rows.
 */
Datum
llmgw_budget_batch_settle(PG_FUNCTION_ARGS)
{
	int			nc,
				nr;
	int64	   *charged_on = int8_array(PG_GETARG_ARRAYTYPE_P(0), &nc, "charged_on");
	int64	   *reserved_on = int8_array(PG_GETARG_ARRAYTYPE_P(1), &nr, "reserved_on");
	int64		released = PG_GETARG_INT64(2);
	int64		charged = PG_GETARG_INT64(3);
	TimestampTz started_at = PG_GETARG_TIMESTAMPTZ(4);
	TimestampTz now = GetCurrentTimestamp();

	if (released < 0 || charged < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("released and charged must not be negative")));
	make_room(nc + nr);
	LWLockAcquire(ledger->lock, LW_EXCLUSIVE);
	for (int i = 0; i < nr && released > 0; i++)
	{
		LedgerEntry *e = hash_search(entries, &reserved_on[i], HASH_FIND, NULL);
		int64		taken;

		if (e == NULL)
			continue;
		taken = Min(released, e->batch_reserved);
		e->batch_reserved -= taken;
		remember(e, -taken, 0);
	}
	for (int i = 0; i < nc && charged > 0; i++)
	{
		LedgerEntry *e = hash_search(entries, &charged_on[i], HASH_FIND, NULL);

		if (e == NULL || !e->loaded)
			continue;			/* the next load reads it from the rollups */
		roll_over(e, now);
		if (started_at < e->period_start)
			continue;			/* belongs to a period that is over */
		e->spent += charged;
		remember(e, 0, charged);
	}
	LWLockRelease(ledger->lock);
	PG_RETURN_VOID();
}
