/*-------------------------------------------------------------------------
 *
 * rollup.c
 *		The daily rollups (llmgw.usage_daily) and the totals
 *		(llmgw.usage_totals) of usage rows written straight into
 *		llmgw.usage (usage.c: a worker's round; batch_ingest.c: a chunk of
 *		a provider batch), which the trigger llmgw.usage_rollup does not
 *		see: what it would add for their statement.
 *
 * The rows are summed here, per rollup row (a day's and a total's
 * dimensions, NULLs alike as the unique constraints have them): a round or
 * a chunk rarely has more than a handful of rollup rows, and sorting and
 * grouping its rows in SQL cost more than writing them.  Where every
 * rollup row exists (all but the first call of a day, a deployment, ...)
 * the sums are added in place, each row found by its unique index and
 * locked before any is changed, without a statement's executor start.
 * Otherwise one statement upserts the sums: the totals, then (the
 * statement of its WITH runs after) the days, each in the order of their
 * dimensions.  Both take the trigger's order of locks, totals then days.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relscan.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_index.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "common/int.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "storage/lmgr.h"
#include "utils/date.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "llmgw.h"
#include "txn.h"
#include "usage.h"

/* The dimensions of a day's rollup row and of a total, as usage columns */
static const LlmgwUsageColumn daily_dims[] = {
	UC_TEAM_ID, UC_KEY_ID, UC_ROLE, UC_MODEL, UC_PROVIDER, UC_UPSTREAM_MODEL, UC_CURRENCY
};								/* and the day, and whether a batch's */
static const LlmgwUsageColumn totals_dims[] = {
	UC_TEAM_ID, UC_MODEL, UC_PROVIDER, UC_UPSTREAM_MODEL, UC_STATUS, UC_ERROR_CLASS,
	UC_CACHE_HIT, UC_FALLBACK_FROM, UC_CURRENCY
};

/* The token columns the rollups sum, in the order of their parameters */
static const LlmgwBucket summed[] = {
	LLMGW_TOKENS_INPUT, LLMGW_TOKENS_OUTPUT, LLMGW_TOKENS_CACHED_INPUT,
	LLMGW_TOKENS_CACHE_WRITE, LLMGW_TOKENS_REASONING
};

#define NSUMMED lengthof(summed)

/* A rollup row being summed: its first usage row stands for its dimensions */
typedef struct Sum
{
	int			first;
	int64		day;
	bool		batch;
	int64		calls;
	int64		errors;
	int64		unpriced;
	int64		cache_hits;
	int64		tokens[NSUMMED];
	Datum		cost;
} Sum;

static int64
day_of(Datum started_at)
{
	TimestampTz t = DatumGetTimestampTz(started_at);

	/* days since 2000-01-01 in UTC, rounded down */
	return t >= 0 ? t / USECS_PER_DAY : -((-t - 1) / USECS_PER_DAY) - 1;
}

/* Equal texts: the same bytes, as deterministic collations have them */
static bool
text_equal(Datum a, Datum b)
{
	text	   *x = DatumGetTextPP(a);
	text	   *y = DatumGetTextPP(b);

	return VARSIZE_ANY_EXHDR(x) == VARSIZE_ANY_EXHDR(y) &&
		memcmp(VARDATA_ANY(x), VARDATA_ANY(y), VARSIZE_ANY_EXHDR(x)) == 0;
}

static bool
same_value(const LlmgwUsageColumns *c, LlmgwUsageColumn col, int i, int j)
{
	if (c->nulls[col][i] || c->nulls[col][j])
		return c->nulls[col][i] && c->nulls[col][j];
	switch (col)
	{
		case UC_TEAM_ID:
		case UC_KEY_ID:
			return DatumGetInt64(c->values[col][i]) == DatumGetInt64(c->values[col][j]);
		case UC_CACHE_HIT:
			return DatumGetBool(c->values[col][i]) == DatumGetBool(c->values[col][j]);
		default:
			return text_equal(c->values[col][i], c->values[col][j]);
	}
}

static void
add_int8(int64 *sum, int64 v)
{
	if (pg_add_s64_overflow(*sum, v, sum))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
}

/* Add usage row i to its rollup row among sums[0..*n), or to a new one */
static void
add_row(const LlmgwUsageColumns *c, int i, bool daily, Sum *sums, int *n)
{
	const LlmgwUsageColumn *dims = daily ? daily_dims : totals_dims;
	int			ndims = daily ? lengthof(daily_dims) : lengthof(totals_dims);
	int64		day = daily ? day_of(c->values[UC_STARTED_AT][i]) : 0;
	bool		batch = daily && !c->nulls[UC_BATCH_ID][i];
	Sum		   *s = NULL;

	for (int k = 0; k < *n && s == NULL; k++)
	{
		bool		same = sums[k].day == day && sums[k].batch == batch;

		for (int d = 0; d < ndims && same; d++)
			same = same_value(c, dims[d], sums[k].first, i);
		if (same)
			s = &sums[k];
	}
	if (s == NULL)
	{
		s = &sums[(*n)++];
		memset(s, 0, sizeof(Sum));
		s->first = i;
		s->day = day;
		s->batch = batch;
		s->cost = NumericGetDatum(int64_to_numeric(0));
	}
	add_int8(&s->calls, 1);
	if (strcmp(TextDatumGetCString(c->values[UC_STATUS][i]), "ok") != 0)
		add_int8(&s->errors, 1);
	if (DatumGetBool(c->values[UC_UNPRICED][i]))
		add_int8(&s->unpriced, 1);
	if (DatumGetBool(c->values[UC_CACHE_HIT][i]))
		add_int8(&s->cache_hits, 1);
	for (int t = 0; t < NSUMMED; t++)
		if (!c->nulls[UC_TOKENS + summed[t]][i])
			add_int8(&s->tokens[t], DatumGetInt64(c->values[UC_TOKENS + summed[t]][i]));
	if (!c->nulls[UC_COST][i])
		s->cost = DirectFunctionCall2(numeric_add, s->cost, c->values[UC_COST][i]);
}

/*
 * In place: the rollup rows that exist already (all but the first of a
 * day, of a worker, of a deployment, ...) get the sums added by an update
 * of each, as the statement's ON CONFLICT would, without its executor
 * start.  Every rollup row of the round is found and locked first; if one
 * is missing (or a table is not as the extension made it) nothing is
 * updated here and the statement does it all, inserting what is missing.
 */

/* Where a rollup table's dimension comes from: a usage column (>= 0) or these */
#define DIM_DAY (-1)
#define DIM_SHARD (-2)
#define DIM_BATCH (-3)
#define DIM_NONE (-4)

/* The dimension a rollup table's column is, by its name */
static int
dim_of(const char *name)
{
	static const struct
	{
		const char *name;
		int			dim;
	}			names[] = {
		{"day", DIM_DAY}, {"shard", DIM_SHARD}, {"batch", DIM_BATCH},
		{"team_id", UC_TEAM_ID}, {"key_id", UC_KEY_ID}, {"role_name", UC_ROLE},
		{"model", UC_MODEL}, {"provider", UC_PROVIDER}, {"upstream_model", UC_UPSTREAM_MODEL},
		{"currency", UC_CURRENCY}, {"status", UC_STATUS}, {"error_class", UC_ERROR_CLASS},
		{"cache_hit", UC_CACHE_HIT}, {"fallback_from", UC_FALLBACK_FROM},
	};

	for (int k = 0; k < lengthof(names); k++)
		if (strcmp(name, names[k].name) == 0)
			return names[k].dim;
	return DIM_NONE;
}

/* The value of a rollup row's dimension (false: NULL) */
static bool
dim_value(const LlmgwUsageColumns *c, const Sum *s, int dim, Datum *value)
{
	switch (dim)
	{
		case DIM_DAY:
			*value = DateADTGetDatum((DateADT) s->day);
			return true;
		case DIM_SHARD:
			*value = Int32GetDatum(llmgw_rollup_shard);
			return true;
		case DIM_BATCH:
			*value = BoolGetDatum(s->batch);
			return true;
		default:
			Assert(dim >= 0);
			*value = c->values[dim][s->first];
			return !c->nulls[dim][s->first];
	}
}

/* The fields of a Sum that rollup columns add up */
#define SUM_NONE (-1)
#define SUM_COST 0
#define SUM_CALLS 1
#define SUM_ERRORS 2
#define SUM_UNPRICED 3
#define SUM_CACHE_HITS 4
#define SUM_TOKENS 5			/* + the index in summed[] */

/* The field a rollup table's column adds up, by its name (SUM_NONE: not a sum) */
static int
sum_of(const char *name)
{
	static const char *const fields[SUM_TOKENS + NSUMMED] = {
		"cost", "calls", "errors", "unpriced", "cache_hits",
		"input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
		"reasoning_tokens"
	};

	for (int f = 0; f < lengthof(fields); f++)
		if (strcmp(name, fields[f]) == 0)
			return f;
	return SUM_NONE;
}

/* What a rollup row adds to the column of field f */
static Datum
sum_value(const Sum *s, int f)
{
	switch (f)
	{
		case SUM_COST:
			return s->cost;
		case SUM_CALLS:
			return Int64GetDatum(s->calls);
		case SUM_ERRORS:
			return Int64GetDatum(s->errors);
		case SUM_UNPRICED:
			return Int64GetDatum(s->unpriced);
		case SUM_CACHE_HITS:
			return Int64GetDatum(s->cache_hits);
		default:
			Assert(f >= SUM_TOKENS && f < SUM_TOKENS + NSUMMED);
			return Int64GetDatum(s->tokens[f - SUM_TOKENS]);
	}
}

/*
 * What the update in place needs of a rollup table, worked out from its
 * catalog entries once and kept until the table or one of its indexes
 * changes (a relcache invalidation marks it stale; it may be in use then,
 * so it is rebuilt at the next open_table): whether it is as the extension
 * made it, its unique index on the dimensions with each key's dimension and
 * equality function, the sum each column adds up, and whether a stored
 * generated column depends on a sum (none does: usage_daily's month is of
 * its day, and is then neither planned nor computed again for each update).
 */
typedef struct Layout
{
	const char *name;			/* the table, in schema llmgw */
	const char *const *dims;	/* the columns of its unique dimensions */
	int			ndims;
	Oid			relid;			/* whose layout is kept (InvalidOid: none) */
	bool		stale;
	MemoryContext cxt;
	bool		usable;			/* false: the statement does the update */
	Oid			index;
	int			key_dim[INDEX_MAX_KEYS];
	RegProcedure key_eq[INDEX_MAX_KEYS];
	int		   *sums;			/* each column's SUM_*, by attribute number - 1 */
	Bitmapset  *updated;		/* the columns the sums change (rte->updatedCols) */
	bool		compute_generated;
} Layout;

/* The columns of the rollup tables' unique dimensions */
static const char *const daily_columns[] = {
	"day", "shard", "team_id", "key_id", "role_name", "model", "provider", "upstream_model",
	"currency", "batch"
};
static const char *const total_columns[] = {
	"shard", "team_id", "model", "provider", "upstream_model", "status", "error_class",
	"cache_hit", "fallback_from", "currency"
};

static Layout daily_layout = {"usage_daily", daily_columns, lengthof(daily_columns)};
static Layout totals_layout = {"usage_totals", total_columns, lengthof(total_columns)};

static void
forget_layouts(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == daily_layout.relid)
		daily_layout.stale = true;
	if (relid == InvalidOid || relid == totals_layout.relid)
		totals_layout.stale = true;
}

/*
 * Work out l from rel: usable unless a trigger of someone's fires on UPDATE
 * (but the ledger's statement trigger, which the workers' own rollups do
 * not fire) or no unique index is on exactly the dimensions with NULLs not
 * distinct
 */
static void
build_layout(Layout *l, Relation rel)
{
	static bool callback_registered = false;
	TupleDesc	desc = RelationGetDescr(rel);
	TriggerDesc *td = rel->trigdesc;
	MemoryContext old;
	ListCell   *lc;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_layouts, (Datum) 0);
		callback_registered = true;
	}
	if (l->cxt == NULL)
		l->cxt = AllocSetContextCreate(TopMemoryContext, "llmgw rollup layout",
									   ALLOCSET_SMALL_SIZES);
	MemoryContextReset(l->cxt);
	old = MemoryContextSwitchTo(l->cxt);
	l->relid = InvalidOid;		/* until it is whole */
	l->stale = false;
	l->usable = false;
	l->index = InvalidOid;
	l->updated = NULL;
	l->compute_generated = false;

	for (int i = 0; td && i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (TRIGGER_FOR_UPDATE(tg->tgtype) &&
			(tg->tgenabled == TRIGGER_FIRES_ON_ORIGIN || tg->tgenabled == TRIGGER_FIRES_ALWAYS) &&
			(TRIGGER_FOR_ROW(tg->tgtype) || strcmp(tg->tgname, "ledger_changed") != 0))
		{
			l->relid = RelationGetRelid(rel);
			MemoryContextSwitchTo(old);
			return;
		}
	}
	foreach(lc, RelationGetIndexList(rel))
	{
		Relation	index = index_open(lfirst_oid(lc), RowExclusiveLock);
		int			nkeys = IndexRelationGetNumberOfKeyAttributes(index);
		bool		dims = index->rd_index->indisunique && index->rd_index->indnullsnotdistinct &&
			index->rd_index->indisvalid && index->rd_index->indimmediate &&
			index->rd_rel->relam == BTREE_AM_OID && index->rd_indexprs == NIL &&
			index->rd_indpred == NIL && nkeys == l->ndims && !OidIsValid(l->index);

		/* its columns: the dimensions, each once */
		for (int a = 0; a < nkeys && dims; a++)
		{
			AttrNumber attno = index->rd_index->indkey.values[a];
			const char *column = attno > 0 ?
				NameStr(TupleDescAttr(desc, attno - 1)->attname) : "";
			bool		known = false;

			for (int d = 0; d < l->ndims && !known; d++)
				known = strcmp(column, l->dims[d]) == 0;
			for (int b = 0; b < a && known; b++)
				known = index->rd_index->indkey.values[b] != attno;
			l->key_dim[a] = dim_of(column);
			dims = known && l->key_dim[a] != DIM_NONE;
			if (dims)
			{
				l->key_eq[a] = get_opcode(get_opfamily_member(index->rd_opfamily[a],
															  index->rd_opcintype[a],
															  index->rd_opcintype[a],
															  BTEqualStrategyNumber));
				dims = RegProcedureIsValid(l->key_eq[a]);
			}
		}
		if (dims)
			l->index = RelationGetRelid(index);
		index_close(index, NoLock);
	}

	l->sums = palloc(sizeof(int) * Max(desc->natts, 1));
	for (int a = 0; a < desc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, a);

		l->sums[a] = att->attisdropped ? SUM_NONE : sum_of(NameStr(att->attname));
		if (l->sums[a] != SUM_NONE)
			l->updated = bms_add_member(l->updated, a + 1 - FirstLowInvalidHeapAttributeNumber);
	}
	/* a stored generated column of a sum is computed, as PostgreSQL would */
	for (int a = 0; a < desc->natts; a++)
	{
		Bitmapset  *used = NULL;

		if (TupleDescAttr(desc, a)->attgenerated != ATTRIBUTE_GENERATED_STORED)
			continue;
		pull_varattnos(build_column_default(rel, a + 1), 1, &used);
		if (bms_overlap(used, l->updated))
			l->compute_generated = true;
	}
	l->usable = OidIsValid(l->index);
	l->relid = RelationGetRelid(rel);
	MemoryContextSwitchTo(old);
}

/* A rollup table, opened for the update of its rows in place */
typedef struct Table
{
	const Layout *layout;
	Relation	rel;
	Relation	index;			/* its unique index on the dimensions */
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epq;
	int			n;
	TupleTableSlot **found;		/* each rollup row's row, locked */
} Table;

/* Open a rollup table; false when it is not as the extension made it */
static bool
open_table(Layout *l, Table *t)
{
	Oid			relid = get_relname_relid(l->name, get_namespace_oid("llmgw", false));
	RangeTblEntry *rte;

	memset(t, 0, sizeof(Table));
	if (!OidIsValid(relid))
		return false;
	t->rel = table_open(relid, RowExclusiveLock);
	if (l->relid != relid || l->stale)
		build_layout(l, t->rel);
	t->layout = l;
	if (!l->usable)
		return false;
	t->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = t->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	rte->updatedCols = bms_copy(l->updated);
	ExecInitRangeTable(t->estate, list_make1(rte));
	t->estate->es_output_cid = GetCurrentCommandId(true);
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	ExecOpenIndices(t->rri, false);
	for (int i = 0; i < t->rri->ri_NumIndices; i++)
		if (RelationGetRelid(t->rri->ri_IndexRelationDescs[i]) == l->index)
			t->index = t->rri->ri_IndexRelationDescs[i];
	/*
	 * No generated column to compute: ExecComputeStoredGenerated would
	 * read each one's expression again to find that out
	 */
	if (!l->compute_generated)
	{
		t->rri->ri_GeneratedExprs = palloc0(sizeof(ExprState *) * RelationGetDescr(t->rel)->natts);
		t->rri->ri_NumGeneratedNeeded = 0;
	}
	EvalPlanQualInit(&t->epq, t->estate, NULL, NIL, -1);
	return t->index != NULL;
}

static void
close_table(Table *t)
{
	if (t->estate)
	{
		for (int k = 0; k < t->n; k++)
			if (t->found[k])
				ExecDropSingleTupleTableSlot(t->found[k]);
		EvalPlanQualEnd(&t->epq);
		ExecCloseIndices(t->rri);
		FreeExecutorState(t->estate);
	}
	if (t->rel)
		table_close(t->rel, NoLock);
}

/*
 * Find and lock the row of each rollup row (its dimensions' values, NULLs
 * alike); false when one is missing
 */
static bool
find_rows(const LlmgwUsageColumns *c, const Sum *sums, int n, Table *t)
{
	const Layout *l = t->layout;
	int			nkeys = IndexRelationGetNumberOfKeyAttributes(t->index);
	ScanKeyData *keys = palloc(sizeof(ScanKeyData) * nkeys);
	SnapshotData dirty;
	IndexScanDesc scan;

	t->n = n;
	t->found = palloc0(sizeof(TupleTableSlot *) * n);
	InitDirtySnapshot(dirty);
	scan = index_beginscan(t->rel, t->index, &dirty, nkeys, 0);
	for (int k = 0; k < n; k++)
	{
		TupleTableSlot *slot = table_slot_create(t->rel, NULL);
		bool		found;

		t->found[k] = slot;
		for (int a = 0; a < nkeys; a++)
		{
			Datum		value;

			if (!dim_value(c, &sums[k], l->key_dim[a], &value))
				ScanKeyEntryInitialize(&keys[a], SK_ISNULL | SK_SEARCHNULL, a + 1,
									   InvalidStrategy, InvalidOid, InvalidOid, InvalidOid,
									   (Datum) 0);
			else
			{
				ScanKeyInit(&keys[a], a + 1, BTEqualStrategyNumber, l->key_eq[a], value);
				keys[a].sk_collation = t->index->rd_indcollation[a];
			}
		}
retry:
		found = false;
		index_rescan(scan, keys, nkeys, NULL, 0);
		if (index_getnext_slot(scan, ForwardScanDirection, slot))
		{
			TransactionId xwait = TransactionIdIsValid(dirty.xmin) ? dirty.xmin : dirty.xmax;
			TM_FailureData tmfd;

			found = true;
			/* another transaction is writing it: wait for its end, then look again */
			if (TransactionIdIsValid(xwait))
			{
				XactLockTableWait(xwait, NULL, NULL, XLTW_None);
				goto retry;
			}
			switch (table_tuple_lock(t->rel, &slot->tts_tid, GetLatestSnapshot(), slot,
									 GetCurrentCommandId(false), LockTupleNoKeyExclusive,
									 LockWaitBlock, 0, &tmfd))
			{
				case TM_Ok:
					break;
				case TM_Updated:
				case TM_Deleted:
					goto retry;
				default:
					elog(ERROR, "llmgw: could not lock a rollup row of \"%s\"",
						 RelationGetRelationName(t->rel));
			}
		}
		if (!found)
		{
			index_endscan(scan);
			return false;
		}
	}
	index_endscan(scan);
	return true;
}

/* Add each rollup row's sums to its row, found and locked */
static void
add_in_place(const Sum *sums, Table *t)
{
	TupleDesc	desc = RelationGetDescr(t->rel);

	for (int k = 0; k < t->n; k++)
	{
		TupleTableSlot *old = t->found[k];
		TupleTableSlot *new = MakeSingleTupleTableSlot(desc, &TTSOpsVirtual);

		slot_getallattrs(old);
		ExecClearTuple(new);
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);
			Datum		add;

			new->tts_values[a] = old->tts_values[a];
			new->tts_isnull[a] = old->tts_isnull[a];
			if (t->layout->sums[a] == SUM_NONE || old->tts_isnull[a])
				continue;
			add = sum_value(&sums[k], t->layout->sums[a]);
			if (att->atttypid == NUMERICOID)
				new->tts_values[a] = DirectFunctionCall2(numeric_add, old->tts_values[a], add);
			else
			{
				int64		sum = DatumGetInt64(old->tts_values[a]);

				add_int8(&sum, DatumGetInt64(add));
				new->tts_values[a] = Int64GetDatum(sum);
			}
		}
		ExecStoreVirtualTuple(new);
		ExecSimpleRelationUpdate(t->rri, t->estate, &t->epq, old, new);
		ExecDropSingleTupleTableSlot(new);
	}
}

/*
 * The rollup rows of the round, updated in place where all exist: the
 * totals' rows found and locked, then the days' (the trigger's order),
 * then each updated.  False, with nothing changed, when one is missing.
 */
static bool
roll_up_in_place(const LlmgwUsageColumns *c, const Sum *days, int ndays, const Sum *totals,
				 int ntotals)
{
	Table		daily = {0},
				total = {0};
	bool		done = false;

	/* the rows earlier statements of this transaction wrote are seen and locked */
	CommandCounterIncrement();
	if (open_table(&totals_layout, &total) && open_table(&daily_layout, &daily) &&
		find_rows(c, totals, ntotals, &total) && find_rows(c, days, ndays, &daily))
	{
		add_in_place(totals, &total);
		add_in_place(days, &daily);
		done = true;
	}
	close_table(&daily);
	close_table(&total);
	return done;
}

#define DAILY_UPSERT \
	"INSERT INTO llmgw.usage_daily AS d (day, shard, team_id, key_id, role_name, model," \
	"  provider, upstream_model, currency, batch, calls, errors, unpriced, cache_hits," \
	"  input_tokens, output_tokens, cached_input_tokens, reasoning_tokens, cost)" \
	" SELECT (n.started_at AT TIME ZONE 'UTC')::date, $1, n.team_id, n.key_id, n.role_name," \
	"        n.model, n.provider, n.upstream_model, n.currency, n.batch, n.calls, n.errors," \
	"        n.unpriced, n.cache_hits, n.i, n.o, n.c, n.r, n.cost" \
	"   FROM unnest($2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17," \
	"                $18, $19)" \
	"        AS n(started_at, team_id, key_id, role_name, model, provider, upstream_model," \
	"             currency, batch, calls, errors, unpriced, cache_hits, i, o, c, r, cost)" \
	"  ORDER BY 1, 3, 4, 5, 6, 7, 8, 9, 10" \
	" ON CONFLICT (day, team_id, key_id, role_name, model, provider, upstream_model, currency," \
	"              shard, batch)" \
	" DO UPDATE SET calls = d.calls + excluded.calls, errors = d.errors + excluded.errors," \
	"  unpriced = d.unpriced + excluded.unpriced, cache_hits = d.cache_hits + excluded.cache_hits," \
	"  input_tokens = d.input_tokens + excluded.input_tokens," \
	"  output_tokens = d.output_tokens + excluded.output_tokens," \
	"  cached_input_tokens = d.cached_input_tokens + excluded.cached_input_tokens," \
	"  reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens," \
	"  cost = d.cost + excluded.cost"
#define TOTALS_UPSERT \
	"INSERT INTO llmgw.usage_totals AS t (shard, team_id, model, provider, upstream_model," \
	"  status, error_class, cache_hit, fallback_from, currency, calls, unpriced, input_tokens," \
	"  output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost)" \
	" SELECT $1, n.team_id, n.model, n.provider, n.upstream_model, n.status, n.error_class," \
	"        n.cache_hit, n.fallback_from, n.currency, n.calls, n.unpriced, n.i, n.o, n.c, n.cw," \
	"        n.r, n.cost" \
	"   FROM unnest($20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33, $34," \
	"                $35, $36)" \
	"        AS n(team_id, model, provider, upstream_model, status, error_class, cache_hit," \
	"             fallback_from, currency, calls, unpriced, i, o, c, cw, r, cost)" \
	"  ORDER BY 2, 3, 4, 5, 6, 7, 8, 9, 10" \
	" ON CONFLICT (team_id, model, provider, upstream_model, status, error_class, cache_hit," \
	"              fallback_from, currency, shard)" \
	" DO UPDATE SET calls = t.calls + excluded.calls, unpriced = t.unpriced + excluded.unpriced," \
	"  input_tokens = t.input_tokens + excluded.input_tokens," \
	"  output_tokens = t.output_tokens + excluded.output_tokens," \
	"  cached_input_tokens = t.cached_input_tokens + excluded.cached_input_tokens," \
	"  cache_write_tokens = t.cache_write_tokens + excluded.cache_write_tokens," \
	"  reasoning_tokens = t.reasoning_tokens + excluded.reasoning_tokens," \
	"  cost = t.cost + excluded.cost"

/* The parameters of the days ($2-$19) and of the totals ($20-$36); $1 is the shard */
#define NDAILY 18
#define NTOTALS 17
#define NPARAMS (1 + NDAILY + NTOTALS)

static const Oid daily_types[NDAILY] = {
	TIMESTAMPTZOID, INT8OID, INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID,
	INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, NUMERICOID
};
static const Oid totals_types[NTOTALS] = {
	INT8OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BOOLOID, TEXTOID, TEXTOID,
	INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, NUMERICOID
};

/* The rollup rows of the days and of the totals, each in the order of their dimensions */
#define ROLL_UP \
	"WITH daily AS (" DAILY_UPSERT ") " TOTALS_UPSERT

/* A parameter of a dimension: the value of its column in each rollup row's first usage row */
static Datum
dim_param(const LlmgwUsageColumns *c, LlmgwUsageColumn col, Oid type, const Sum *sums, int n)
{
	Datum	   *values = palloc(sizeof(Datum) * n);
	bool	   *nulls = palloc(sizeof(bool) * n);

	for (int k = 0; k < n; k++)
	{
		values[k] = c->values[col][sums[k].first];
		nulls[k] = c->nulls[col][sums[k].first];
	}
	return llmgw_array_datum(values, nulls, n, type);
}

/* A parameter of a sum: offset is the field's place in Sum */
static Datum
sum_param(size_t offset, Oid type, const Sum *sums, int n)
{
	Datum	   *values = palloc(sizeof(Datum) * n);

	for (int k = 0; k < n; k++)
	{
		const char *field = (const char *) &sums[k] + offset;

		values[k] = type == NUMERICOID ? *(const Datum *) field :
			Int64GetDatum(*(const int64 *) field);
	}
	return llmgw_array_datum(values, NULL, n, type);
}

void
llmgw_usage_roll_up(const LlmgwUsageColumns *c)
{
	static SPIPlanPtr plan = NULL;
	Sum		   *days = palloc(sizeof(Sum) * Max(c->n, 1));
	Sum		   *totals = palloc(sizeof(Sum) * Max(c->n, 1));
	int			ndays = 0,
				ntotals = 0;
	Oid			types[NPARAMS];
	Datum		args[NPARAMS];
	int			p = 0;

	if (c->n == 0)
		return;
	for (int i = 0; i < c->n; i++)
	{
		add_row(c, i, true, days, &ndays);
		add_row(c, i, false, totals, &ntotals);
	}
	if (roll_up_in_place(c, days, ndays, totals, ntotals))
		return;

	types[p] = INT4OID;
	args[p++] = Int32GetDatum(llmgw_rollup_shard);
	args[p++] = dim_param(c, UC_STARTED_AT, TIMESTAMPTZOID, days, ndays);
	for (int d = 0; d < lengthof(daily_dims); d++)
		args[p++] = dim_param(c, daily_dims[d], daily_types[1 + d], days, ndays);
#define SUM_OF(sums, n, field, type) \
	(args[p++] = sum_param(offsetof(Sum, field), type, sums, n))
	{
		Datum	   *batch = palloc(sizeof(Datum) * ndays);

		for (int k = 0; k < ndays; k++)
			batch[k] = BoolGetDatum(days[k].batch);
		args[p++] = llmgw_array_datum(batch, NULL, ndays, BOOLOID);
	}
	SUM_OF(days, ndays, calls, INT8OID);
	SUM_OF(days, ndays, errors, INT8OID);
	SUM_OF(days, ndays, unpriced, INT8OID);
	SUM_OF(days, ndays, cache_hits, INT8OID);
	SUM_OF(days, ndays, tokens[0], INT8OID);	/* input */
	SUM_OF(days, ndays, tokens[1], INT8OID);	/* output */
	SUM_OF(days, ndays, tokens[2], INT8OID);	/* cached input */
	SUM_OF(days, ndays, tokens[4], INT8OID);	/* reasoning */
	SUM_OF(days, ndays, cost, NUMERICOID);
	Assert(p == 1 + NDAILY);
	for (int d = 0; d < lengthof(totals_dims); d++)
		args[p++] = dim_param(c, totals_dims[d], totals_types[d], totals, ntotals);
	SUM_OF(totals, ntotals, calls, INT8OID);
	SUM_OF(totals, ntotals, unpriced, INT8OID);
	SUM_OF(totals, ntotals, tokens[0], INT8OID);
	SUM_OF(totals, ntotals, tokens[1], INT8OID);
	SUM_OF(totals, ntotals, tokens[2], INT8OID);
	SUM_OF(totals, ntotals, tokens[3], INT8OID);	/* cache writes */
	SUM_OF(totals, ntotals, tokens[4], INT8OID);
	SUM_OF(totals, ntotals, cost, NUMERICOID);
#undef SUM_OF
	Assert(p == NPARAMS);
	for (int k = 0; k < NDAILY; k++)
		types[1 + k] = get_array_type(daily_types[k]);
	for (int k = 0; k < NTOTALS; k++)
		types[1 + NDAILY + k] = get_array_type(totals_types[k]);

	if (plan == NULL)
		plan = llmgw_spi_prepare(ROLL_UP, NPARAMS, types);
	/* the rollups' own rows: not a change that the ledger reloads for */
	llmgw_own_rollup = true;
	PG_TRY();
	{
		if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_INSERT)
			elog(ERROR, "llmgw: could not add usage rows to the rollups");
	}
	PG_FINALLY();
	{
		llmgw_own_rollup = false;
	}
	PG_END_TRY();
}
