/*-------------------------------------------------------------------------
 *
 * batch_ingest.c
 *		Write a chunk of a provider batch's results (worker 0, in a
 *		transaction of the chunk's own): each pending item once, with its
 *		usage row at the batch's price, its answer in the job's row, the
 *		budgets settled, the job's counts.
 *
 * It does what llmgw.batch_ingest (sql/) does, without the statement's
 * cost per row: the lines are read by batch_result.c instead of cast to
 * jsonb, the items are found by their primary key and updated in place,
 * each is priced by llmgw_cost (cost.c, as llmgw.cost) at the batch's
 * price read once per chunk, the usage rows go straight into their
 * partitions (direct.c) and the daily rollups and totals that their
 * trigger would keep are added in place (rollup.c).  What must stay SQL
 * is SQL: the batch rates (llmgw.batch_price), the budgets
 * (llmgw.budget_batch_settle), and the answers' write into the job's
 * table, with the owner's rights, row-level security and the table's own
 * triggers.
 *
 * When llmgw's tables are not as the extension made them (a trigger
 * someone added on llmgw.usage or llmgw.batch_items, a partition of
 * another kind), nothing is written here and llmgw.batch_ingest does it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/namespace.h"
#include "catalog/pg_trigger.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/uuid.h"

#include "batch_ingest.h"
#include "batch_result.h"
#include "budget.h"
#include "cost.h"
#include "queue.h"
#include "txn.h"
#include "usage.h"

/*
 * The batch, its job and its price, as llmgw.batch_ingest reads them.  A
 * share lock: chunks of one batch are written at once by worker 0 and its
 * helpers, while what ends a batch (llmgw.batch_finish) or writes a
 * chunk through SQL (llmgw.batch_ingest) takes the row for update and
 * waits for them.
 */
#define BATCH_ROW \
	"SELECT b.job_id, b.owner::text," \
	"       b.key_id, coalesce(b.team_id, (SELECT rb.team_id FROM llmgw.role_bindings rb" \
	"                                        WHERE rb.role_name = b.owner))," \
	"       b.model, b.provider, b.upstream_model, b.endpoint = 'embeddings'," \
	"       b.provider_batch_id, coalesce(b.submitted_at, b.created_at), b.charged_on," \
	"       b.reserved_on, b.price_id, j.id, j.source, j.key_column, j.output_column" \
	"  FROM llmgw.batches b LEFT JOIN llmgw.jobs j ON j.id = b.job_id" \
	" WHERE b.id = $1 FOR SHARE OF b"

/* The batch's price at its batch rates, and its id (no row: no price) */
#define BATCH_PRICE \
	"SELECT (x.p).id, x.p" \
	"  FROM (SELECT llmgw.batch_price(p) AS p FROM llmgw.prices p WHERE p.id = $1 OFFSET 0) x"

#define SETTLE \
	"SELECT llmgw.budget_batch_settle($1, $2, ceil(least($3::numeric, 900000000) * 10000000000)::int8," \
	"                                 ceil(least($4::numeric, 900000000) * 10000000000)::int8, $5)" \
	" WHERE $3::numeric > 0 OR $4::numeric > 0"

/* The batch, as BATCH_ROW reads it */
typedef struct Batch
{
	int64		id;
	Datum		job_id;
	bool		job_null;
	bool		has_job;		/* its job's row is there */
	Datum		owner;
	Datum		key_id;
	bool		key_null;
	Datum		team_id;
	bool		team_null;
	Datum		model;
	Datum		provider;
	bool		provider_null;
	Datum		upstream_model;
	bool		upstream_null;
	bool		embeddings;
	char	   *provider_batch_id;
	Datum		started_at;
	Datum		charged_on;
	Datum		reserved_on;
	Datum		price_id;
	bool		price_null;
	char	   *source;			/* the job's table, key and output column; NULL: no job */
	char	   *key_column;
	char	   *output_column;
} Batch;

/* A line of the chunk whose item was pending, and what it brings */
typedef struct Pending
{
	int			line;			/* in the chunk */
	LlmgwBatchResult r;
	ItemPointerData tid;
	int32		attempt;
	Datum		reserved;		/* numeric */
	char	   *row_key;		/* NULL: none */
	pg_uuid_t	request_id;
	Datum		cost;
	bool		cost_null;
} Pending;

/* The columns of llmgw.batch_items used here */
typedef enum ItemColumn
{
	I_BATCH_ID,
	I_CUSTOM_ID,
	I_ROW_KEY,
	I_STATE,
	I_ATTEMPT,
	I_REQUEST_ID,
	I_ANSWER,
	I_ERROR,
	I_RESERVED,
	I_ERROR_CLASS,
	I_NCOLUMNS
} ItemColumn;

static const char *const item_names[I_NCOLUMNS] = {
	[I_BATCH_ID] = "batch_id",
	[I_CUSTOM_ID] = "custom_id",
	[I_ROW_KEY] = "row_key",
	[I_STATE] = "state",
	[I_ATTEMPT] = "attempt",
	[I_REQUEST_ID] = "request_id",
	[I_ANSWER] = "answer",
	[I_ERROR] = "error",
	[I_RESERVED] = "reserved",
	[I_ERROR_CLASS] = "error_class",
};

static const Oid item_types[I_NCOLUMNS] = {
	[I_BATCH_ID] = INT8OID,
	[I_CUSTOM_ID] = TEXTOID,
	[I_ROW_KEY] = TEXTOID,
	[I_STATE] = TEXTOID,
	[I_ATTEMPT] = INT4OID,
	[I_REQUEST_ID] = UUIDOID,
	[I_ANSWER] = JSONBOID,
	[I_ERROR] = TEXTOID,
	[I_RESERVED] = NUMERICOID,
	[I_ERROR_CLASS] = TEXTOID,
};

/* llmgw.batch_items, opened for the chunk */
typedef struct Items
{
	Relation	rel;
	Relation	pkey;
	AttrNumber	att[I_NCOLUMNS];
} Items;

/* The bucket of each of a result's token counts (LLMGW_TOKENS_*) */
static const LlmgwBucket result_bucket[LLMGW_RT_NTOKENS] = {
	[LLMGW_RT_INPUT] = LLMGW_TOKENS_INPUT,
	[LLMGW_RT_OUTPUT] = LLMGW_TOKENS_OUTPUT,
	[LLMGW_RT_CACHED_INPUT] = LLMGW_TOKENS_CACHED_INPUT,
	[LLMGW_RT_REASONING] = LLMGW_TOKENS_REASONING,
};

/* A text value of a result row, or NULL */
static char *
text_or_null(HeapTuple tuple, TupleDesc desc, int col)
{
	return SPI_getvalue(tuple, desc, col);
}

/* Lock and read the batch; false if it is gone */
static bool
read_batch(int64 id, Batch *b)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		values[1] = {Int64GetDatum(id)};
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	if (plan == NULL)
		plan = llmgw_spi_prepare(BATCH_ROW, 1, types);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read batch " INT64_FORMAT, id);
	if (SPI_processed == 0)
		return false;
	tup = SPI_copytuple(SPI_tuptable->vals[0]);
	desc = SPI_tuptable->tupdesc;
	memset(b, 0, sizeof(*b));
	b->id = id;
	b->job_id = SPI_getbinval(tup, desc, 1, &b->job_null);
	b->owner = SPI_getbinval(tup, desc, 2, &isnull);
	b->key_id = SPI_getbinval(tup, desc, 3, &b->key_null);
	b->team_id = SPI_getbinval(tup, desc, 4, &b->team_null);
	b->model = SPI_getbinval(tup, desc, 5, &isnull);
	b->provider = SPI_getbinval(tup, desc, 6, &b->provider_null);
	b->upstream_model = SPI_getbinval(tup, desc, 7, &b->upstream_null);
	b->embeddings = DatumGetBool(SPI_getbinval(tup, desc, 8, &isnull));
	b->provider_batch_id = text_or_null(tup, desc, 9);
	b->started_at = SPI_getbinval(tup, desc, 10, &isnull);
	b->charged_on = SPI_getbinval(tup, desc, 11, &isnull);
	b->reserved_on = SPI_getbinval(tup, desc, 12, &isnull);
	b->price_id = SPI_getbinval(tup, desc, 13, &b->price_null);
	SPI_getbinval(tup, desc, 14, &isnull);
	b->has_job = !isnull;
	b->source = text_or_null(tup, desc, 15);
	b->key_column = text_or_null(tup, desc, 16);
	b->output_column = text_or_null(tup, desc, 17);
	return true;
}

/*
 * Open llmgw.batch_items if it can be written here: its columns as the
 * extension made them, found by a primary key on (batch_id, custom_id),
 * and no trigger on UPDATE but the foreign key's check of batch_id (not
 * changed here)
 */
static bool
open_items(Items *it)
{
	Oid			nsp = get_namespace_oid("llmgw", false);
	Oid			relid = get_relname_relid("batch_items", nsp);
	TupleDesc	desc;
	TriggerDesc *td;
	Oid			pkey;

	if (!OidIsValid(relid))
		return false;
	it->rel = table_open(relid, RowExclusiveLock);
	desc = RelationGetDescr(it->rel);
	td = it->rel->trigdesc;
	for (int c = 0; c < I_NCOLUMNS; c++)
	{
		it->att[c] = InvalidAttrNumber;
		for (int a = 0; a < desc->natts; a++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, a);

			if (!att->attisdropped && strcmp(NameStr(att->attname), item_names[c]) == 0 &&
				att->atttypid == item_types[c])
				it->att[c] = a + 1;
		}
		if (it->att[c] == InvalidAttrNumber)
			goto not_plain;
	}
	for (int i = 0; td != NULL && i < td->numtriggers; i++)
	{
		Trigger    *tg = &td->triggers[i];

		if (TRIGGER_FOR_UPDATE(tg->tgtype) &&
			!(tg->tgisinternal && RI_FKey_trigger_type(tg->tgfoid) == RI_TRIGGER_FK))
			goto not_plain;
	}
	pkey = RelationGetPrimaryKeyIndex(it->rel);
	if (!OidIsValid(pkey))
		goto not_plain;
	it->pkey = index_open(pkey, RowExclusiveLock);
	if (IndexRelationGetNumberOfKeyAttributes(it->pkey) == 2 &&
		it->pkey->rd_index->indkey.values[0] == it->att[I_BATCH_ID] &&
		it->pkey->rd_index->indkey.values[1] == it->att[I_CUSTOM_ID])
		return true;
	index_close(it->pkey, NoLock);
not_plain:
	table_close(it->rel, NoLock);
	return false;
}

/*
 * Find each line's item, if it is still pending; a custom_id twice in
 * the chunk counts once.  The items found, in *found.
 */
static Pending *
find_items(Items *it, int64 batch, LlmgwBatchResult *results, int n, int *found)
{
	Pending	   *items = palloc0(sizeof(Pending) * n);
	TupleTableSlot *slot = table_slot_create(it->rel, NULL);
	IndexScanDesc scan = index_beginscan(it->rel, it->pkey, GetActiveSnapshot(), 2, 0);
	ScanKeyData keys[2];
	HASHCTL		ctl = {.keysize = sizeof(ItemPointerData), .entrysize = sizeof(ItemPointerData),
	.hcxt = CurrentMemoryContext};
	HTAB	   *seen = hash_create("llmgw items seen", n, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	int			m = 0;

	for (int i = 0; i < n; i++)
	{
		Datum		v;
		bool		isnull;
		bool		found_before;

		if (results[i].custom_id == NULL)
			continue;
		ScanKeyInit(&keys[0], 1, BTEqualStrategyNumber, F_INT8EQ, Int64GetDatum(batch));
		ScanKeyInit(&keys[1], 2, BTEqualStrategyNumber, F_TEXTEQ,
					CStringGetTextDatum(results[i].custom_id));
		keys[1].sk_collation = it->pkey->rd_indcollation[1];
		index_rescan(scan, keys, 2, NULL, 0);
		if (!index_getnext_slot(scan, ForwardScanDirection, slot))
			continue;
		v = slot_getattr(slot, it->att[I_STATE], &isnull);
		if (isnull || strcmp(TextDatumGetCString(v), "pending") != 0)
			continue;
		if (hash_search(seen, &slot->tts_tid, HASH_ENTER, &found_before) && found_before)
			continue;
		items[m].line = i;
		items[m].r = results[i];
		items[m].tid = slot->tts_tid;
		items[m].attempt = DatumGetInt32(slot_getattr(slot, it->att[I_ATTEMPT], &isnull));
		items[m].reserved = datumCopy(slot_getattr(slot, it->att[I_RESERVED], &isnull), false, -1);
		v = slot_getattr(slot, it->att[I_ROW_KEY], &isnull);
		items[m].row_key = isnull ? NULL : TextDatumGetCString(v);
		llmgw_new_request_id(items[m].request_id.data);
		m++;
	}
	index_endscan(scan);
	ExecDropSingleTupleTableSlot(slot);
	hash_destroy(seen);
	*found = m;
	return items;
}

/*
 * Each item's cost at the batch's price (llmgw_cost, as llmgw.cost); the
 * price's id and currency in *price_id, *currency
 */
static void
price_items(Batch *b, Pending *items, int n, Datum *price_id, bool *price_null, Datum *currency,
			bool *currency_null)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[1] = {INT8OID};
	Datum		price;
	bool		isnull;
	char	   *cur = NULL;

	*price_null = *currency_null = true;
	for (int i = 0; i < n; i++)
		items[i].cost_null = true;
	if (b->price_null)
		return;
	if (plan == NULL)
		plan = llmgw_spi_prepare(BATCH_PRICE, 1, types);
	if (SPI_execute_plan(plan, &b->price_id, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not read the price of batch " INT64_FORMAT, b->id);
	if (SPI_processed == 0)
		return;
	*price_id = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, price_null);
	price = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull);
	if (isnull)
		return;
	price = datumCopy(price, false, -1);
	for (int i = 0; i < n; i++)
	{
		int64		tokens[LLMGW_NBUCKETS];

		for (int t = 0; t < LLMGW_NBUCKETS; t++)
			tokens[t] = LLMGW_TOKENS_UNKNOWN;
		for (int k = 0; k < LLMGW_RT_NTOKENS; k++)
			if (items[i].r.has_tokens[k])
				tokens[result_bucket[k]] = items[i].r.tokens[k];
		items[i].cost_null = !llmgw_cost(price, tokens, &items[i].cost, &cur);
	}
	if (cur != NULL)
	{
		*currency = CStringGetTextDatum(cur);
		*currency_null = false;
	}
}

/* The usage row's tags: the provider's batch id and the item's custom_id */
static Datum
tags_of(const char *provider_batch_id, const char *custom_id)
{
	JsonbParseState *st = NULL;
	JsonbValue	k,
				v;

	pushJsonbValue(&st, WJB_BEGIN_OBJECT, NULL);
	k.type = jbvString;
	k.val.string.val = "batch";
	k.val.string.len = 5;
	pushJsonbValue(&st, WJB_KEY, &k);
	if (provider_batch_id)
	{
		v.type = jbvString;
		v.val.string.val = (char *) provider_batch_id;
		v.val.string.len = strlen(provider_batch_id);
	}
	else
		v.type = jbvNull;
	pushJsonbValue(&st, WJB_VALUE, &v);
	k.val.string.val = "custom_id";
	k.val.string.len = 9;
	pushJsonbValue(&st, WJB_KEY, &k);
	v.type = jbvString;
	v.val.string.val = (char *) custom_id;
	v.val.string.len = strlen(custom_id);
	pushJsonbValue(&st, WJB_VALUE, &v);
	return JsonbPGetDatum(JsonbValueToJsonb(pushJsonbValue(&st, WJB_END_OBJECT, NULL)));
}

/* The usage status of an item's end */
static const char *
usage_status(const char *state)
{
	if (strcmp(state, "done") == 0)
		return "ok";
	if (strcmp(state, "cancelled") == 0)
		return "cancelled";
	return "error";
}

/* The usage rows of the items, as llmgw.usage columns */
static void
usage_rows(Batch *b, Pending *items, int n, Datum price_id, bool price_null, Datum currency,
		   bool currency_null, LlmgwUsageColumns *c)
{
	Datum	  **values = c->values;
	bool	  **nulls = c->nulls;

	llmgw_usage_columns(c, n);
	for (int i = 0; i < n; i++)
	{
		Pending	   *it = &items[i];
		bool		done = strcmp(it->r.state, "done") == 0;

#define SET(col, value, isnull) (values[col][i] = (value), nulls[col][i] = (isnull))
		SET(UC_REQUEST_ID, UUIDPGetDatum(&it->request_id), false);
		SET(UC_ATTEMPT, Int32GetDatum(it->attempt), false);
		SET(UC_STARTED_AT, b->started_at, false);
		SET(UC_ROLE, b->owner, false);
		SET(UC_KEY_ID, b->key_id, b->key_null);
		SET(UC_TEAM_ID, b->team_id, b->team_null);
		SET(UC_MODEL, b->model, false);
		SET(UC_PROVIDER, b->provider, b->provider_null);
		SET(UC_UPSTREAM_MODEL, b->upstream_model, b->upstream_null);
		SET(UC_STATUS, CStringGetTextDatum(usage_status(it->r.state)), false);
		SET(UC_ERROR_CLASS, it->r.error_class ? CStringGetTextDatum(it->r.error_class) : 0,
			it->r.error_class == NULL);
		SET(UC_HTTP_STATUS, Int32GetDatum(it->r.http_status), !it->r.has_status);
		for (int t = 0; t < LLMGW_RT_NTOKENS; t++)
			SET(UC_TOKENS + result_bucket[t], Int64GetDatum(it->r.tokens[t]), !it->r.has_tokens[t]);
		SET(UC_USAGE_SOURCE, CStringGetTextDatum("provider"), !it->r.has_tokens[LLMGW_RT_INPUT]);
		SET(UC_PRICE_ID, price_id, price_null);
		SET(UC_COST, it->cost, it->cost_null);
		SET(UC_CURRENCY, currency, currency_null);
		SET(UC_UNPRICED, BoolGetDatum(done && it->cost_null), false);
		SET(UC_CACHE_HIT, BoolGetDatum(false), false);
		SET(UC_JOB_ID, b->job_id, b->job_null);
		SET(UC_BATCH_ID, Int64GetDatum(b->id), false);
		SET(UC_TAGS, tags_of(b->provider_batch_id, it->r.custom_id), false);
#undef SET
	}
}

/* The provider's body of a result line, as jsonb (it keeps the numbers as written), or NULL */
static JsonbValue *
line_body(Datum line)
{
	Jsonb	   *jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
														CStringGetDatum(TextDatumGetCString(line))));
	JsonbValue *response = getKeyJsonValueFromContainer(&jb->root, "response", 8, NULL);

	if (response == NULL || response->type != jbvBinary ||
		!JsonContainerIsObject(response->val.binary.data))
		return NULL;
	return getKeyJsonValueFromContainer(response->val.binary.data, "body", 4, NULL);
}

/* An embedding's text form, as jsonb writes it ('[x, y, ...]'), or NULL */
static char *
embedding_text(Datum line)
{
	JsonbValue *body = line_body(line);
	JsonbValue *data;
	JsonbValue *first;
	JsonbValue *embedding;
	Jsonb	   *vector;

	if (body == NULL || body->type != jbvBinary || !JsonContainerIsObject(body->val.binary.data))
		return NULL;
	data = getKeyJsonValueFromContainer(body->val.binary.data, "data", 4, NULL);
	if (data == NULL || data->type != jbvBinary || !JsonContainerIsArray(data->val.binary.data))
		return NULL;
	first = getIthJsonbValueFromContainer(data->val.binary.data, 0);
	if (first == NULL || first->type != jbvBinary || !JsonContainerIsObject(first->val.binary.data))
		return NULL;
	embedding = getKeyJsonValueFromContainer(first->val.binary.data, "embedding", 9, NULL);
	if (embedding == NULL)
		return NULL;
	vector = JsonbValueToJsonb(embedding);
	return JsonbToCString(NULL, &vector->root, VARSIZE(vector));
}

/* Each item's end, in place: its state, request id, error and (batch without a job) answer */
static void
update_items(Items *it, Batch *b, Pending *items, int n, Datum *lines)
{
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *old = table_slot_create(it->rel, NULL);
	TupleTableSlot *new = table_slot_create(it->rel, NULL);
	TupleDesc	desc = RelationGetDescr(it->rel);
	Snapshot	snapshot = GetActiveSnapshot();

	InitResultRelInfo(rri, it->rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	for (int i = 0; i < n; i++)
	{
		Pending	   *item = &items[i];
		bool		update_indexes;

		if (!table_tuple_fetch_row_version(it->rel, &item->tid, snapshot, old))
			ereport(ERROR,
					(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
					 errmsg("llmgw: an item of batch " INT64_FORMAT " changed while its result was written",
							b->id)));
		slot_getallattrs(old);
		ExecClearTuple(new);
		memcpy(new->tts_values, old->tts_values, sizeof(Datum) * desc->natts);
		memcpy(new->tts_isnull, old->tts_isnull, sizeof(bool) * desc->natts);
#define SET(col, value, isnull) \
		(new->tts_values[it->att[col] - 1] = (value), new->tts_isnull[it->att[col] - 1] = (isnull))
		SET(I_STATE, CStringGetTextDatum(item->r.state), false);
		SET(I_REQUEST_ID, UUIDPGetDatum(&item->request_id), false);
		SET(I_ERROR, item->r.error ? CStringGetTextDatum(item->r.error) : 0, item->r.error == NULL);
		SET(I_ERROR_CLASS, item->r.error_class ? CStringGetTextDatum(item->r.error_class) : 0,
			item->r.error_class == NULL);
		if (!b->job_null)
			SET(I_ANSWER, 0, true);
		else
		{
			/* the provider's body, from the line's own text (jsonb keeps its numbers as written) */
			JsonbValue *body = line_body(lines[item->line]);

			SET(I_ANSWER, body ? JsonbPGetDatum(JsonbValueToJsonb(body)) : 0, body == NULL);
		}
#undef SET
		ExecStoreVirtualTuple(new);
		if (it->rel->rd_att->constr)
			ExecConstraints(rri, new, estate);
		simple_table_tuple_update(it->rel, &item->tid, new, snapshot, &update_indexes);
		/* (not marked as an update's: the hint needs a range table, and the key changed nowhere) */
		if (update_indexes && rri->ri_NumIndices > 0)
			list_free(ExecInsertIndexTuples(rri, new, estate, false, false, NULL, NIL));
	}
	ExecDropSingleTupleTableSlot(old);
	ExecDropSingleTupleTableSlot(new);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
}

/* Give the items' reservations back and charge their costs on the ledger */
static void
settle(Batch *b, Pending *items, int n)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[5] = {INT8ARRAYOID, INT8ARRAYOID, NUMERICOID, NUMERICOID, TIMESTAMPTZOID};
	Datum		args[5];
	Datum		released = NumericGetDatum(int64_to_numeric(0));
	Datum		charged = released;

	for (int i = 0; i < n; i++)
	{
		released = DirectFunctionCall2(numeric_add, released, items[i].reserved);
		if (!items[i].cost_null)
			charged = DirectFunctionCall2(numeric_add, charged, items[i].cost);
	}
	args[0] = b->charged_on;
	args[1] = b->reserved_on;
	args[2] = released;
	args[3] = charged;
	args[4] = b->started_at;
	if (plan == NULL)
		plan = llmgw_spi_prepare(SETTLE, 5, types);
	if (SPI_execute_plan(plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "llmgw: could not settle the budgets of batch " INT64_FORMAT, b->id);
}

/* Run a statement with arguments; its first column of its first row, or NULL */
static Datum
run(const char *sql, int nargs, Oid *types, Datum *args, bool *isnull)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, args, NULL, false, 0);

	if (rc < 0)
		elog(ERROR, "llmgw: could not run a statement of the batch ingest: %s",
			 SPI_result_code_string(rc));
	*isnull = true;
	if (SPI_tuptable == NULL || SPI_processed == 0)
		return (Datum) 0;
	return SPI_datumTransfer(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull),
							 false, -1);
}

/* What a chunk adds to its job's counts */
typedef struct JobCounts
{
	int64		written;
	int64		failed;
	Datum		error;			/* the last row's error, or 0 */
	bool		error_null;
} JobCounts;

/*
 * The job's answers (a message's text, or an embedding's text form) into
 * its table, through llmgw.write_answers: with the owner's rights, into
 * rows still without one, a row that cannot be written failing alone; the
 * rows written and failed in *counts, for the job.  As
 * llmgw.batch_ingest does.
 */
static void
write_answers(Batch *b, Pending *items, int n, Datum *lines, JobCounts *counts)
{
	int			ndone = 0;
	int64		nwritten = 0;
	int64		nfailed = 0;
	Datum	   *keys = palloc(sizeof(Datum) * Max(n, 1));
	Datum	   *answers = palloc(sizeof(Datum) * Max(n, 1));
	bool	   *key_null = palloc(sizeof(bool) * Max(n, 1));
	bool	   *answer_null = palloc(sizeof(bool) * Max(n, 1));
	Datum		write_error = (Datum) 0;
	bool		error_null = true;
	bool		isnull;

	for (int i = 0; i < n; i++)
	{
		char	   *answer = items[i].r.answer;

		if (strcmp(items[i].r.state, "failed") == 0)
			nfailed++;
		if (strcmp(items[i].r.state, "done") != 0)
			continue;
		if (b->embeddings)
			answer = embedding_text(lines[items[i].line]);
		key_null[ndone] = items[i].row_key == NULL;
		keys[ndone] = key_null[ndone] ? (Datum) 0 : CStringGetTextDatum(items[i].row_key);
		answer_null[ndone] = answer == NULL;
		answers[ndone] = answer_null[ndone] ? (Datum) 0 : CStringGetTextDatum(answer);
		ndone++;
	}
	if (ndone > 0)
	{
		Oid			types[6] = {TEXTOID, TEXTOID, TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTOID};
		Datum		args[6] = {CStringGetTextDatum(b->source), CStringGetTextDatum(b->key_column),
			CStringGetTextDatum(b->output_column), llmgw_array_datum(keys, key_null, ndone, TEXTOID),
		llmgw_array_datum(answers, answer_null, ndone, TEXTOID), b->owner};
		HeapTuple	tup;
		TupleDesc	desc;
		ArrayType  *written;
		ArrayType  *failed;
		int			nfail;

		if (SPI_execute_with_args("SELECT w.written, w.failed, w.errors"
								  "  FROM llmgw.write_answers($1, $2, $3, $4, $5, $6::name) w",
								  6, types, args, NULL, false, 0) != SPI_OK_SELECT ||
			SPI_processed != 1)
			elog(ERROR, "llmgw: could not write the answers of batch " INT64_FORMAT, b->id);
		tup = SPI_tuptable->vals[0];
		desc = SPI_tuptable->tupdesc;
		written = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 1, &isnull));
		failed = DatumGetArrayTypeP(SPI_getbinval(tup, desc, 2, &isnull));
		nwritten = ArrayGetNItems(ARR_NDIM(written), ARR_DIMS(written));
		nfail = ArrayGetNItems(ARR_NDIM(failed), ARR_DIMS(failed));
		if (nfail > 0)
		{
			Oid			ftypes[3] = {INT8OID, TEXTARRAYOID, TEXTARRAYOID};
			Datum		fargs[3] = {Int64GetDatum(b->id), PointerGetDatum(failed),
			SPI_datumTransfer(SPI_getbinval(tup, desc, 3, &isnull), false, -1)};
			Datum		errors = fargs[2];

			fargs[1] = SPI_datumTransfer(fargs[1], false, -1);
			/* the last row's error is the job's */
			write_error = SPI_datumTransfer(array_get_element(errors, 1, &nfail, -1, -1, false,
															  TYPALIGN_INT, &error_null),
											false, -1);
			run("UPDATE llmgw.batch_items i SET state = 'failed', error = f.error"
				"  FROM unnest($2, $3) f(k, error)"
				" WHERE i.batch_id = $1 AND i.state = 'done' AND i.row_key = f.k",
				3, ftypes, fargs, &isnull);
			nfailed += nfail;
		}
	}
	counts->written = nwritten;
	counts->failed = nfailed;
	counts->error = write_error;
	counts->error_null = error_null;
}

/* The chunk's rows written and failed, counted in its job */
static void
count_job(Batch *b, const JobCounts *counts)
{
	Oid			types[4] = {INT8OID, INT8OID, INT8OID, TEXTOID};
	Datum		args[4] = {b->job_id, Int64GetDatum(counts->written), Int64GetDatum(counts->failed),
	counts->error};
	char		nulls[4] = {' ', ' ', ' ', counts->error_null ? 'n' : ' '};
	int			rc = SPI_execute_with_args("UPDATE llmgw.jobs"
										   "   SET rows_done = rows_done + $2, rows_failed = rows_failed + $3,"
										   "       last_error = coalesce($4, last_error),"
										   "       updated_at = pg_catalog.clock_timestamp()"
										   " WHERE jobs.id = $1",
										   4, types, args, nulls, false, 0);

	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "llmgw: could not count the results of batch " INT64_FORMAT, b->id);
}

bool
llmgw_batch_ingest_direct(int64 batch, Datum *lines, int nlines, int *skipped)
{
	Oid			nsp = get_namespace_oid("llmgw", false);
	Relation	usage;
	Batch		b;
	Items		it;
	LlmgwBatchResult *results;
	Pending	   *items;
	int			n;
	Datum		price_id = 0,
				currency = 0;
	bool		price_null = true,
				currency_null = true;
	JobCounts	counts = {0, 0, (Datum) 0, true};
	LlmgwUsageColumns rows;

	/* usage before the batch, as a load of the budget ledger locks them */
	usage = table_open(get_relname_relid("usage", nsp), RowExclusiveLock);
	table_close(usage, NoLock);
	if (!read_batch(batch, &b))
		return true;
	if (b.has_job && (b.source == NULL || b.key_column == NULL || b.output_column == NULL))
		return false;
	if (!open_items(&it))
		return false;

	/* a snapshot taken after the batch's lock (as a statement would) */
	PushActiveSnapshot(GetTransactionSnapshot());
	results = palloc(sizeof(LlmgwBatchResult) * nlines);
	*skipped = 0;
	for (int i = 0; i < nlines; i++)
	{
		text	   *line = DatumGetTextPP(lines[i]);

		if (!llmgw_batch_result_read(VARDATA_ANY(line), VARSIZE_ANY_EXHDR(line), b.embeddings,
									 &results[i]))
			(*skipped)++;
	}
	items = find_items(&it, batch, results, nlines, &n);
	if (n > 0)
	{
		price_items(&b, items, n, &price_id, &price_null, &currency, &currency_null);
		usage_rows(&b, items, n, price_id, price_null, currency, currency_null, &rows);
		if (!llmgw_usage_write(&rows))
		{
			PopActiveSnapshot();
			index_close(it.pkey, NoLock);
			table_close(it.rel, NoLock);
			return false;
		}
		update_items(&it, &b, items, n, lines);
	}
	index_close(it.pkey, NoLock);
	table_close(it.rel, NoLock);
	PopActiveSnapshot();
	if (b.has_job)
		write_answers(&b, items, n, lines, &counts);

	/*
	 * Last, the rows every chunk of the batch shares (the rollups, the
	 * budgets' ledger, the job's counts), in the order the trigger and the
	 * settlement of a call lock them: chunks written at once by worker 0
	 * and its helpers (batch_helper.c) wait on each other only from here
	 * to their commits.
	 */
	if (n > 0)
	{
		llmgw_usage_roll_up(&rows);
		settle(&b, items, n);
	}
	if (b.has_job)
		count_job(&b, &counts);
	return true;
}
