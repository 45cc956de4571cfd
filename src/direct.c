/*-------------------------------------------------------------------------
 *
 * direct.c
 *		Rows written straight into the partitions of one of llmgw's tables,
 *		as COPY writes them: each row routed by the table's own partition
 *		bounds, its other columns given their defaults, checked against the
 *		partition's constraints, the rows of a partition written with one
 *		multi-insert, then their index entries.
 *
 * For the workers' many-row writes (the request log of a round, a chunk
 * of a provider batch's usage rows) the INSERT statement's executor start
 * and the unnest of its arrays cost more than the rows themselves.  Only
 * a table as the extension made it is written so: partitions that are
 * plain tables, no trigger on INSERT (but the one the caller does itself,
 * see LlmgwDirectTable), no generated column.  Otherwise nothing is
 * written and the caller goes through its INSERT statement, which fires
 * whatever someone added.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "optimizer/optimizer.h"
#include "partitioning/partbounds.h"
#include "partitioning/partdesc.h"
#include "rewrite/rewriteHandler.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/partcache.h"
#include "utils/rel.h"

#include "direct.h"

/* One partition, and the rows it takes */
typedef struct Target
{
	Relation	rel;
	int			n;
	int		   *rows;
} Target;

/*
 * Whether no trigger of a relation fires on INSERT but own, a statement
 * trigger after it that fires (a disabled one the INSERT statement would
 * not fire either); *own_found says whether own is there
 */
static bool
insert_triggers_are(Relation rel, const char *own, bool *own_found)
{
	TriggerDesc *td = rel->trigdesc;

	if (td == NULL)
		return true;
	for (int i = 0; i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (!TRIGGER_FOR_INSERT(tg->tgtype))
			continue;
		if (own == NULL || strcmp(tg->tgname, own) != 0 || TRIGGER_FOR_ROW(tg->tgtype) ||
			!TRIGGER_FOR_AFTER(tg->tgtype) ||
			(tg->tgenabled != TRIGGER_FIRES_ON_ORIGIN && tg->tgenabled != TRIGGER_FIRES_ALWAYS))
			return false;
		*own_found = true;
	}
	return true;
}

/* Whether a partition can be written here: a plain table without triggers on INSERT */
static bool
plain_partition(Relation rel)
{
	bool		unused = false;

	return rel->rd_rel->relkind == RELKIND_RELATION && insert_triggers_are(rel, NULL, &unused);
}

/*
 * What a table's columns are to the rows given: each column's index in
 * t->columns (or -1) and, for the others, the planned default (or NULL);
 * plain when every column given is there with its type and no column is
 * generated.  Made once per table and kept until the table changes (a
 * relcache invalidation): planning the defaults costs more than writing a
 * row.
 */
typedef struct Shape
{
	const LlmgwDirectTable *table;
	Oid			relid;
	MemoryContext cxt;
	bool		stale;			/* the table changed: freed at the next look */
	bool		plain;
	int		   *given;
	Expr	  **defaults;
} Shape;

#define NSHAPES 4
static Shape shapes[NSHAPES];
static bool callback_registered = false;

/*
 * What writing into a partition needs beyond its rows, made once and kept
 * until it changes, as the shapes are: where each of its columns is in the
 * parent (a partition attached by pg_restore may order its columns
 * otherwise), and its CHECK constraints prepared (ExecConstraints would
 * read each one's text and plan it again for every write's executor state:
 * a tenth of the cost of a worker's round of one row).
 */
typedef struct Partition
{
	Oid			relid;
	Oid			parent;
	MemoryContext cxt;
	bool		stale;
	int		   *from;			/* each column's in the parent, or -1 */
	int			ncheck;
	ExprState **checks;
} Partition;

#define NPARTITIONS 8
static Partition partitions[NPARTITIONS];

/*
 * A relcache invalidation: what is kept of the table goes stale.  It may
 * be in use (an invalidation is read whenever a lock is taken), so it is
 * freed by the next table_shape or partition_of, at the start of a write.
 */
static void
forget_shapes(Datum arg, Oid relid)
{
	for (int i = 0; i < NSHAPES; i++)
		if (shapes[i].cxt && (relid == InvalidOid || shapes[i].relid == relid))
			shapes[i].stale = true;
	for (int i = 0; i < NPARTITIONS; i++)
		if (partitions[i].cxt && (relid == InvalidOid || partitions[i].relid == relid ||
								  partitions[i].parent == relid))
			partitions[i].stale = true;
}

static void
register_callback(void)
{
	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(forget_shapes, (Datum) 0);
		callback_registered = true;
	}
}

/* What writing into partition rel of parent needs (see Partition) */
static const Partition *
partition_of(Relation rel, Relation parent)
{
	TupleDesc	desc = RelationGetDescr(rel);
	TupleConstr *constr = desc->constr;
	int			ncheck = constr ? constr->num_check : 0;
	Partition  *p = NULL;
	MemoryContext old;
	int		   *from;
	ExprState **checks = NULL;

	for (int i = 0; i < NPARTITIONS; i++)
	{
		/* stale, its checks counted otherwise, or left by an error while it was made */
		if (partitions[i].cxt && (partitions[i].stale || !OidIsValid(partitions[i].relid) ||
								  (partitions[i].relid == RelationGetRelid(rel) &&
								   partitions[i].ncheck != ncheck)))
		{
			MemoryContextDelete(partitions[i].cxt);
			memset(&partitions[i], 0, sizeof(Partition));
		}
		if (partitions[i].cxt && partitions[i].relid == RelationGetRelid(rel) &&
			partitions[i].parent == RelationGetRelid(parent))
			return &partitions[i];
	}
	for (int i = 0; i < NPARTITIONS && p == NULL; i++)
		if (partitions[i].cxt == NULL)
			p = &partitions[i];
	if (p == NULL)
	{
		/* more partitions written than slots: the first kept goes */
		MemoryContextDelete(partitions[0].cxt);
		memmove(&partitions[0], &partitions[1], sizeof(Partition) * (NPARTITIONS - 1));
		p = &partitions[NPARTITIONS - 1];
		memset(p, 0, sizeof(Partition));
	}
	register_callback();
	p->cxt = AllocSetContextCreate(CacheMemoryContext, "llmgw direct partition",
								   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(p->cxt);
	from = palloc(sizeof(int) * desc->natts);
	for (int b = 0; b < desc->natts; b++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, b);

		from[b] = att->attisdropped ? -1 :
			get_attnum(RelationGetRelid(parent), NameStr(att->attname)) - 1;
	}
	if (ncheck > 0)
	{
		checks = palloc(sizeof(ExprState *) * ncheck);
		for (int i = 0; i < ncheck; i++)
			checks[i] = ExecInitExpr(expression_planner(stringToNode(constr->check[i].ccbin)), NULL);
	}
	MemoryContextSwitchTo(old);
	/* set last: an error above leaves no entry to find */
	p->from = from;
	p->checks = checks;
	p->ncheck = ncheck;
	p->parent = RelationGetRelid(parent);
	p->relid = RelationGetRelid(rel);
	return p;
}

static const Shape *
table_shape(const LlmgwDirectTable *t, Relation parent)
{
	TupleDesc	pdesc = RelationGetDescr(parent);
	Shape	   *shape = NULL;
	MemoryContext old;
	int			found = 0;

	for (int i = 0; i < NSHAPES; i++)
	{
		if (shapes[i].cxt && shapes[i].stale)
		{
			MemoryContextDelete(shapes[i].cxt);
			memset(&shapes[i], 0, sizeof(Shape));
		}
		if (shapes[i].table == t && shapes[i].relid == RelationGetRelid(parent))
			return &shapes[i];
	}
	for (int i = 0; i < NSHAPES && shape == NULL; i++)
		if (shapes[i].table == NULL)
			shape = &shapes[i];
	if (shape == NULL)
	{
		/* more tables than slots (not so today): start over */
		for (int i = 0; i < NSHAPES; i++)
			MemoryContextDelete(shapes[i].cxt);
		memset(shapes, 0, sizeof(shapes));
		shape = &shapes[0];
	}
	register_callback();
	if (shape->cxt)				/* left by an error while it was made */
		MemoryContextDelete(shape->cxt);
	shape->cxt = AllocSetContextCreate(CacheMemoryContext, "llmgw direct table",
									   ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(shape->cxt);
	shape->plain = true;
	shape->given = palloc(sizeof(int) * pdesc->natts);
	shape->defaults = palloc0(sizeof(Expr *) * pdesc->natts);
	for (int a = 0; a < pdesc->natts; a++)
	{
		Form_pg_attribute att = TupleDescAttr(pdesc, a);
		int			c;

		shape->given[a] = -1;
		if (att->attisdropped)
			continue;
		if (att->attgenerated)
			shape->plain = false;
		for (c = 0; c < t->ncolumns; c++)
			if (strcmp(NameStr(att->attname), t->columns[c]) == 0)
				break;
		if (c < t->ncolumns)
		{
			shape->plain = shape->plain && att->atttypid == t->types[c];
			shape->given[a] = c;
			found++;
		}
		else
		{
			Node	   *def = build_column_default(parent, a + 1);

			if (def != NULL)
				shape->defaults[a] = expression_planner((Expr *) def);
		}
	}
	shape->plain = shape->plain && found == t->ncolumns;
	MemoryContextSwitchTo(old);
	/* set last: an error above leaves no entry to find */
	shape->relid = RelationGetRelid(parent);
	shape->table = t;
	return shape;
}

bool
llmgw_direct_insert(const LlmgwDirectTable *t, int n, Datum **values, bool **nulls)
{
	Oid			nsp = get_namespace_oid("llmgw", true);
	Oid			parent_id = OidIsValid(nsp) ? get_relname_relid(t->name, nsp) : InvalidOid;
	Relation	parent;
	TupleDesc	pdesc;
	PartitionKey key;
	PartitionDesc desc;
	const int  *given;			/* each parent column's index in t->columns, or -1 */
	ExprState **defaults;		/* the others' defaults */
	Datum	  **dvalues;
	bool	  **dnulls;
	Target	   *targets;
	int			ntargets = 0;
	bool		plain = true;
	bool		own_found = false;
	const Shape *shape;
	EState	   *estate;
	ExprContext *econtext;

	if (!OidIsValid(parent_id) || n == 0)
		return n == 0;
	parent = table_open(parent_id, RowExclusiveLock);
	pdesc = RelationGetDescr(parent);
	key = RelationGetPartitionKey(parent);
	if (parent->rd_rel->relkind != RELKIND_PARTITIONED_TABLE ||
		!insert_triggers_are(parent, t->own_trigger, &own_found) ||
		own_found != (t->own_trigger != NULL) ||
		key == NULL || key->strategy != PARTITION_STRATEGY_RANGE || key->partnatts != 1 ||
		key->partattrs[0] == 0 ||
		strcmp(NameStr(TupleDescAttr(pdesc, key->partattrs[0] - 1)->attname),
			   t->columns[t->route]) != 0)
	{
		table_close(parent, NoLock);
		return false;
	}

	/* each column of the table: given, or its default */
	shape = table_shape(t, parent);
	if (!shape->plain)
	{
		table_close(parent, NoLock);
		return false;
	}
	given = shape->given;
	estate = CreateExecutorState();
	/*
	 * A range table of the parent, as COPY has: a constraint's error names
	 * the columns written from the range table entry of the result relation
	 */
	{
		RangeTblEntry *rte = makeNode(RangeTblEntry);

		rte->rtekind = RTE_RELATION;
		rte->relid = parent_id;
		rte->relkind = parent->rd_rel->relkind;
		rte->rellockmode = RowExclusiveLock;
		ExecInitRangeTable(estate, list_make1(rte));
	}
	econtext = GetPerTupleExprContext(estate);
	defaults = palloc0(sizeof(ExprState *) * pdesc->natts);
	for (int a = 0; a < pdesc->natts; a++)
		if (shape->defaults[a])
			defaults[a] = ExecInitExpr(shape->defaults[a], NULL);

	/* route every row first: nothing is written unless all can be */
	desc = RelationGetPartitionDesc(parent, true);
	targets = palloc0(sizeof(Target) * n);
	for (int i = 0; i < n && plain; i++)
	{
		int			index = -1;
		Oid			relid;
		int			k;

		if (nulls[t->route][i])
			ereport(ERROR,
					(errcode(ERRCODE_NOT_NULL_VIOLATION),
					 errmsg("no partition of relation \"%s\" found for row",
							RelationGetRelationName(parent))));
		if (desc->nparts > 0)
		{
			bool		equal;
			int			bound = partition_range_datum_bsearch(key->partsupfunc, key->partcollation,
															  desc->boundinfo, 1,
															  &values[t->route][i], &equal);

			index = desc->boundinfo->indexes[bound + 1];
		}
		if (index < 0 && desc->nparts > 0 && partition_bound_has_default(desc->boundinfo))
			index = desc->boundinfo->default_index;
		if (index < 0)
			ereport(ERROR,
					(errcode(ERRCODE_CHECK_VIOLATION),
					 errmsg("no partition of relation \"%s\" found for row",
							RelationGetRelationName(parent))));
		relid = desc->oids[index];
		for (k = 0; k < ntargets; k++)
			if (RelationGetRelid(targets[k].rel) == relid)
				break;
		if (k == ntargets)
		{
			targets[k].rel = table_open(relid, RowExclusiveLock);
			targets[k].rows = palloc(sizeof(int) * n);
			ntargets++;
			plain = plain_partition(targets[k].rel);
		}
		targets[k].rows[targets[k].n++] = i;
	}
	if (!plain)
	{
		for (int k = 0; k < ntargets; k++)
			table_close(targets[k].rel, NoLock);
		FreeExecutorState(estate);
		table_close(parent, NoLock);
		return false;
	}

	/* the defaults, row by row (a sequence's next value), in the table's column order */
	dvalues = palloc(sizeof(Datum *) * pdesc->natts);
	dnulls = palloc(sizeof(bool *) * pdesc->natts);
	for (int a = 0; a < pdesc->natts; a++)
	{
		if (given[a] >= 0)
			continue;
		dvalues[a] = palloc(sizeof(Datum) * n);
		dnulls[a] = palloc(sizeof(bool) * n);
		for (int i = 0; i < n; i++)
		{
			dnulls[a][i] = true;
			if (defaults[a])
				dvalues[a][i] = ExecEvalExprSwitchContext(defaults[a], econtext, &dnulls[a][i]);
		}
	}

	for (int k = 0; k < ntargets; k++)
	{
		Target	   *tg = &targets[k];
		TupleDesc	desc_k = RelationGetDescr(tg->rel);
		const Partition *part = partition_of(tg->rel, parent);
		const int  *from = part->from;	/* its columns in the parent's */
		ResultRelInfo *rri = makeNode(ResultRelInfo);
		TupleTableSlot **slots = palloc(sizeof(TupleTableSlot *) * tg->n);

		InitResultRelInfo(rri, tg->rel, 1, NULL, 0);
		rri->ri_ConstraintExprs = part->checks;
		ExecOpenIndices(rri, false);
		for (int r = 0; r < tg->n; r++)
		{
			int			i = tg->rows[r];
			TupleTableSlot *slot = table_slot_create(tg->rel, NULL);

			ExecClearTuple(slot);
			for (int b = 0; b < desc_k->natts; b++)
			{
				int			a = from[b];

				if (a < 0)
					slot->tts_isnull[b] = true;
				else if (given[a] >= 0)
				{
					slot->tts_values[b] = values[given[a]][i];
					slot->tts_isnull[b] = nulls[given[a]][i];
				}
				else
				{
					slot->tts_values[b] = dvalues[a][i];
					slot->tts_isnull[b] = dnulls[a][i];
				}
			}
			ExecStoreVirtualTuple(slot);
			if (tg->rel->rd_att->constr)
				ExecConstraints(rri, slot, estate);
			slots[r] = slot;
		}
		table_multi_insert(tg->rel, slots, tg->n, GetCurrentCommandId(true), 0, NULL);
		for (int r = 0; r < tg->n; r++)
		{
			if (rri->ri_NumIndices > 0)
				list_free(ExecInsertIndexTuples(rri, slots[r], estate, false, false, NULL, NIL));
			ExecDropSingleTupleTableSlot(slots[r]);
		}
		ExecCloseIndices(rri);
		table_close(tg->rel, NoLock);
	}
	FreeExecutorState(estate);
	table_close(parent, NoLock);
	return true;
}
