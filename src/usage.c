/*-------------------------------------------------------------------------
 *
 * usage.c
 *		Usage rows: a batch of rows written with one INSERT, one array per
 *		column, each row priced exactly in that statement at the price in
 *		force when its attempt started.
 *
 * Pricing rule: a row is priced by the tokens it carries, whatever its
 * outcome.  Providers bill the tokens they processed, so an answer that
 * ends as an error (a content filter, an error inside a stream) but reports
 * usage costs that usage; a row without token counts costs nothing, except
 * an answered call, which is then marked unpriced (cost NULL, never 0).
 * Interrupted calls carry llmgw's estimate of their tokens (usage_source
 * 'estimated'), and are priced by it.  A cache hit costs the model's
 * cache_hit_cost.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "budget.h"
#include "cost.h"
#include "direct.h"
#include "policy.h"
#include "txn.h"
#include "usage.h"

/* The columns of a batch, one array parameter each */
typedef enum UsageColumn
{
	COL_REQUEST_ID,
	COL_STARTED_AT,
	COL_ROLE,
	COL_MODEL,
	COL_PROVIDER,
	COL_UPSTREAM_MODEL,
	COL_STATUS,
	COL_ERROR_CLASS,
	COL_HTTP_STATUS,
	COL_LATENCY,
	COL_TOKENS,					/* LLMGW_NBUCKETS columns, in LlmgwBucket order */
	COL_USAGE_SOURCE = COL_TOKENS + LLMGW_NBUCKETS,
	COL_ATTEMPT,
	COL_FALLBACK_FROM,
	COL_KEY_ID,
	COL_TEAM_ID,
	COL_KIND,
	COL_PRICE_MODEL,
	COL_TAGS,
	COL_HIT,
	COL_HIT_COST,
	COL_PRICE_ID,
	COL_JOB_ID,
	COL_ASYNC_ID,
	NCOLUMNS
} UsageColumn;

StaticAssertDecl(LLMGW_NBUCKETS == 6, "the usage INSERT names six token columns");

static const Oid column_types[NCOLUMNS] = {
	[COL_REQUEST_ID] = UUIDOID,
	[COL_STARTED_AT] = TIMESTAMPTZOID,
	[COL_ROLE] = TEXTOID,
	[COL_MODEL] = TEXTOID,
	[COL_PROVIDER] = TEXTOID,
	[COL_UPSTREAM_MODEL] = TEXTOID,
	[COL_STATUS] = TEXTOID,
	[COL_ERROR_CLASS] = TEXTOID,
	[COL_HTTP_STATUS] = INT4OID,
	[COL_LATENCY] = FLOAT8OID,
	[COL_TOKENS] = INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	[COL_USAGE_SOURCE] = TEXTOID,
	[COL_ATTEMPT] = INT4OID,
	[COL_FALLBACK_FROM] = TEXTOID,
	[COL_KEY_ID] = INT8OID,
	[COL_TEAM_ID] = INT8OID,
	[COL_KIND] = TEXTOID,
	[COL_PRICE_MODEL] = TEXTOID,
	[COL_TAGS] = TEXTOID,
	[COL_HIT] = BOOLOID,
	[COL_HIT_COST] = TEXTOID,
	[COL_PRICE_ID] = INT8OID,
	[COL_JOB_ID] = INT8OID,
	[COL_ASYNC_ID] = INT8OID,
};

/*
 * The INSERT of a batch: its first %s is the rows (ROWS_OF_ARRAYS), the
 * second where recovered rows skip the attempts that already have a row.
 * Keep the column lists in UsageColumn order.
 */
#define USAGE_INSERT \
	"INSERT INTO llmgw.usage (request_id, started_at, role_name, model, provider," \
	" upstream_model, status, error_class, http_status, latency_ms, input_tokens," \
	" output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens," \
	" cache_write_1h_tokens, usage_source, attempt, fallback_from, key_id, team_id," \
	" price_id, cost, currency, unpriced, tags, cache_hit, job_id, async_id)" \
	" SELECT v.request_id, v.started_at, v.role_name, v.model, v.provider," \
	" v.upstream_model, v.status, v.error_class, v.http_status, v.latency_ms," \
	" v.i, v.o, v.ci, v.cw, v.r, v.cw1h, v.usage_source, v.attempt, v.fallback_from," \
	" v.key_id, v.team_id, (pr.p).id," \
	" CASE WHEN v.hit THEN v.hit_cost::numeric ELSE c.cost END," \
	" CASE WHEN v.hit THEN 'USD' ELSE (pr.p).currency END," \
	" NOT v.hit AND (v.status = 'ok' OR v.usage_source IS NOT NULL) AND c.cost IS NULL," \
	" v.tags::jsonb, v.hit, v.job_id, v.async_id" \
	" FROM %s AS v(request_id, started_at, role_name, model, provider, upstream_model, status," \
	"   error_class, http_status, latency_ms, i, o, ci, cw, r, cw1h, usage_source, attempt," \
	"   fallback_from, key_id, team_id, kind, price_model, tags, hit, hit_cost, price_id," \
	"   job_id, async_id)" \
	/* rows with tokens are priced: by the row the worker knows, else looked up */ \
	" CROSS JOIN LATERAL (SELECT CASE WHEN v.usage_source IS NOT NULL AND NOT v.hit" \
	"   AND v.price_id IS DISTINCT FROM 0" \
	"   THEN coalesce(v.price_id, (llmgw.price_at(llmgw.price_names(v.provider," \
	"     v.kind, v.upstream_model, v.price_model), v.started_at)).id) END AS id) pid" \
	/*
	 * the price row by its key, row by row (a join was planned as a hash of
	 * every price, each round), and its cost once (OFFSET 0: not inlined
	 * into each place that names it)
	 */ \
	" CROSS JOIN LATERAL (SELECT (SELECT p FROM llmgw.prices p WHERE p.id = pid.id) AS p OFFSET 0) pr" \
	" CROSS JOIN LATERAL (SELECT llmgw.cost(pr.p, v.i, v.o, v.ci, v.cw, v.cw1h, v.r) AS cost OFFSET 0) c" \
	" %s" \
	" RETURNING request_id, attempt, currency, ceil(cost * " LLMGW_MONEY_SCALE_SQL ")::int8"

/* The rows of a batch: one array parameter per column */
#define ROWS_OF_ARRAYS \
	"unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17," \
	" $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29)"

StaticAssertDecl(NCOLUMNS == 29, "the usage INSERT has 29 parameters");

#define SKIP_RECORDED \
	"WHERE NOT EXISTS (SELECT 1 FROM llmgw.usage u" \
	" WHERE u.request_id = v.request_id AND u.attempt = v.attempt)"

/* The rows of a batch, column by column, and the charge each row owes */
struct LlmgwUsageBatch
{
	int			n;
	int			cap;
	Datum	   *values[NCOLUMNS];
	bool	   *nulls[NCOLUMNS];
	LlmgwUsageRow *rows;
	int64	   *charge;			/* money units, -1: nothing to charge */
	char	  **currency;
};

/* A new empty batch in the current memory context */
LlmgwUsageBatch *
llmgw_usage_batch(void)
{
	LlmgwUsageBatch *b = palloc0(sizeof(LlmgwUsageBatch));

	b->cap = 64;
	for (int c = 0; c < NCOLUMNS; c++)
	{
		b->values[c] = palloc(sizeof(Datum) * b->cap);
		b->nulls[c] = palloc(sizeof(bool) * b->cap);
	}
	b->rows = palloc(sizeof(LlmgwUsageRow) * b->cap);
	b->charge = palloc(sizeof(int64) * b->cap);
	b->currency = palloc(sizeof(char *) * b->cap);
	return b;
}

/* A row with nothing known yet */
void
llmgw_usage_row_init(LlmgwUsageRow *row)
{
	memset(row, 0, sizeof(*row));
	row->status = LLMGW_STATUS_ERROR;
	row->price_id = -1;
	for (int t = 0; t < LLMGW_NBUCKETS; t++)
		row->tokens[t] = LLMGW_TOKENS_UNKNOWN;
}

int
llmgw_usage_count(const LlmgwUsageBatch *batch)
{
	return batch->n;
}

/* Empty the batch, keeping its memory */
void
llmgw_usage_clear(LlmgwUsageBatch *batch)
{
	batch->n = 0;
}

/* Name of a status as stored in llmgw.usage.status */
const char *
llmgw_usage_status_name(LlmgwStatus status)
{
	switch (status)
	{
		case LLMGW_STATUS_OK:
			return "ok";
		case LLMGW_STATUS_CANCELLED:
			return "cancelled";
		case LLMGW_STATUS_INTERRUPTED:
			return "interrupted";
		default:
			return "error";
	}
}

static void
set_text(LlmgwUsageBatch *b, int col, const char *s)
{
	b->nulls[col][b->n] = (s == NULL);
	b->values[col][b->n] = s ? CStringGetTextDatum(s) : (Datum) 0;
}

/* An id column: 0 is NULL */
static void
set_id(LlmgwUsageBatch *b, int col, int64 id)
{
	b->nulls[col][b->n] = (id == 0);
	b->values[col][b->n] = Int64GetDatum(id);
}

/* Add a row to the batch */
void
llmgw_usage_add(LlmgwUsageBatch *b, const LlmgwUsageRow *row)
{
	bool		any_tokens = false;
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));

	if (b->n == b->cap)
	{
		b->cap *= 2;
		for (int c = 0; c < NCOLUMNS; c++)
		{
			b->values[c] = repalloc(b->values[c], sizeof(Datum) * b->cap);
			b->nulls[c] = repalloc(b->nulls[c], sizeof(bool) * b->cap);
		}
		b->rows = repalloc(b->rows, sizeof(LlmgwUsageRow) * b->cap);
		b->charge = repalloc(b->charge, sizeof(int64) * b->cap);
		b->currency = repalloc(b->currency, sizeof(char *) * b->cap);
	}
	for (int c = 0; c < NCOLUMNS; c++)
		b->nulls[c][b->n] = false;
	*uuid = row->request_id;
	b->values[COL_REQUEST_ID][b->n] = UUIDPGetDatum(uuid);
	b->values[COL_STARTED_AT][b->n] = TimestampTzGetDatum(row->started_at);
	set_text(b, COL_ROLE, row->role);
	set_text(b, COL_MODEL, row->model);
	set_text(b, COL_PROVIDER, row->provider);
	set_text(b, COL_UPSTREAM_MODEL, row->upstream_model);
	set_text(b, COL_STATUS, llmgw_usage_status_name(row->status));
	set_text(b, COL_ERROR_CLASS, llmgw_error_class_name(row->error));
	b->values[COL_HTTP_STATUS][b->n] = Int32GetDatum(row->http_status);
	b->nulls[COL_HTTP_STATUS][b->n] = (row->http_status == 0);
	b->values[COL_LATENCY][b->n] =
		Float8GetDatum((double) (row->finished_at - row->started_at) / 1000.0);
	b->nulls[COL_LATENCY][b->n] = (row->finished_at == 0);
	for (int t = 0; t < LLMGW_NBUCKETS; t++)
	{
		b->values[COL_TOKENS + t][b->n] = Int64GetDatum(row->tokens[t]);
		b->nulls[COL_TOKENS + t][b->n] = (row->tokens[t] == LLMGW_TOKENS_UNKNOWN);
		if (row->tokens[t] != LLMGW_TOKENS_UNKNOWN && t != LLMGW_TOKENS_CACHE_WRITE_1H)
			any_tokens = true;
	}
	set_text(b, COL_USAGE_SOURCE, !any_tokens || row->cache_hit ? NULL :
			 row->estimated ? "estimated" : "provider");
	b->values[COL_ATTEMPT][b->n] = Int32GetDatum(row->attempt);
	set_text(b, COL_FALLBACK_FROM, row->fallback_from);
	set_id(b, COL_KEY_ID, row->key_id);
	set_id(b, COL_TEAM_ID, row->team_id);
	set_text(b, COL_KIND, row->route_kind);
	set_text(b, COL_PRICE_MODEL, row->price_model);
	set_text(b, COL_TAGS, row->tags);
	b->values[COL_HIT][b->n] = BoolGetDatum(row->cache_hit);
	set_text(b, COL_HIT_COST, row->cache_hit ? row->hit_cost : NULL);
	b->values[COL_PRICE_ID][b->n] = Int64GetDatum(row->price_id);
	b->nulls[COL_PRICE_ID][b->n] = (row->price_id < 0);
	set_id(b, COL_JOB_ID, row->job_id);
	set_id(b, COL_ASYNC_ID, row->async_id);
	b->rows[b->n] = *row;
	b->charge[b->n] = -1;
	b->currency[b->n] = NULL;
	b->n++;
}

/* The columns given when usage rows are written straight into llmgw.usage */
static const char *const direct_names[UC_NCOLUMNS] = {
	[UC_REQUEST_ID] = "request_id",
	[UC_ATTEMPT] = "attempt",
	[UC_STARTED_AT] = "started_at",
	[UC_ROLE] = "role_name",
	[UC_KEY_ID] = "key_id",
	[UC_TEAM_ID] = "team_id",
	[UC_MODEL] = "model",
	[UC_PROVIDER] = "provider",
	[UC_UPSTREAM_MODEL] = "upstream_model",
	[UC_STATUS] = "status",
	[UC_ERROR_CLASS] = "error_class",
	[UC_HTTP_STATUS] = "http_status",
	[UC_LATENCY] = "latency_ms",
	[UC_TOKENS + LLMGW_TOKENS_INPUT] = "input_tokens",
	[UC_TOKENS + LLMGW_TOKENS_OUTPUT] = "output_tokens",
	[UC_TOKENS + LLMGW_TOKENS_CACHED_INPUT] = "cached_input_tokens",
	[UC_TOKENS + LLMGW_TOKENS_CACHE_WRITE] = "cache_write_tokens",
	[UC_TOKENS + LLMGW_TOKENS_REASONING] = "reasoning_tokens",
	[UC_TOKENS + LLMGW_TOKENS_CACHE_WRITE_1H] = "cache_write_1h_tokens",
	[UC_USAGE_SOURCE] = "usage_source",
	[UC_PRICE_ID] = "price_id",
	[UC_COST] = "cost",
	[UC_CURRENCY] = "currency",
	[UC_UNPRICED] = "unpriced",
	[UC_CACHE_HIT] = "cache_hit",
	[UC_FALLBACK_FROM] = "fallback_from",
	[UC_TAGS] = "tags",
	[UC_JOB_ID] = "job_id",
	[UC_ASYNC_ID] = "async_id",
	[UC_BATCH_ID] = "batch_id",
};

static const Oid direct_types[UC_NCOLUMNS] = {
	[UC_REQUEST_ID] = UUIDOID,
	[UC_ATTEMPT] = INT4OID,
	[UC_STARTED_AT] = TIMESTAMPTZOID,
	[UC_ROLE] = TEXTOID,
	[UC_KEY_ID] = INT8OID,
	[UC_TEAM_ID] = INT8OID,
	[UC_MODEL] = TEXTOID,
	[UC_PROVIDER] = TEXTOID,
	[UC_UPSTREAM_MODEL] = TEXTOID,
	[UC_STATUS] = TEXTOID,
	[UC_ERROR_CLASS] = TEXTOID,
	[UC_HTTP_STATUS] = INT4OID,
	[UC_LATENCY] = FLOAT8OID,
	[UC_TOKENS] = INT8OID, INT8OID, INT8OID, INT8OID, INT8OID, INT8OID,
	[UC_USAGE_SOURCE] = TEXTOID,
	[UC_PRICE_ID] = INT8OID,
	[UC_COST] = NUMERICOID,
	[UC_CURRENCY] = TEXTOID,
	[UC_UNPRICED] = BOOLOID,
	[UC_CACHE_HIT] = BOOLOID,
	[UC_FALLBACK_FROM] = TEXTOID,
	[UC_TAGS] = JSONBOID,
	[UC_JOB_ID] = INT8OID,
	[UC_ASYNC_ID] = INT8OID,
	[UC_BATCH_ID] = INT8OID,
};

/* llmgw.usage: its rollup trigger is done here (llmgw_usage_roll_up) */
static const LlmgwDirectTable usage_table = {
	.name = "usage",
	.ncolumns = UC_NCOLUMNS,
	.columns = direct_names,
	.types = direct_types,
	.route = UC_STARTED_AT,
	.own_trigger = "usage_rollup",
};

/* Room for n rows, every value NULL */
void
llmgw_usage_columns(LlmgwUsageColumns *c, int n)
{
	c->n = n;
	for (int col = 0; col < UC_NCOLUMNS; col++)
	{
		c->values[col] = palloc0(sizeof(Datum) * Max(n, 1));
		c->nulls[col] = palloc(sizeof(bool) * Max(n, 1));
		memset(c->nulls[col], true, sizeof(bool) * Max(n, 1));
	}
}

/*
 * Write the rows straight into llmgw.usage, as COPY would, without the
 * statement's trigger: the caller adds them to the rollups
 * (llmgw_usage_roll_up) in the same transaction.  False, with nothing
 * written, when the table is not as the extension made it.
 */
bool
llmgw_usage_write(const LlmgwUsageColumns *c)
{
	return llmgw_direct_insert(&usage_table, c->n, (Datum **) c->values, (bool **) c->nulls);
}

/*
 * Write a batch of a round straight into llmgw.usage, each row priced here
 * (llmgw.cost's code) at the price row its route holds, then its rollups:
 * what the INSERT statement and its trigger would write, without their
 * executor start.  False, with nothing written, when a row's price must be
 * looked up in SQL (the price changed since the configuration was loaded)
 * or the table is not as the extension made it: the statement writes them.
 */
static bool
insert_direct(LlmgwUsageBatch *b)
{
	LlmgwUsageColumns c;
	char	  **currencies;
	static const struct
	{
		LlmgwUsageColumn to;
		UsageColumn from;
	}			same[] = {
		{UC_REQUEST_ID, COL_REQUEST_ID}, {UC_ATTEMPT, COL_ATTEMPT},
		{UC_STARTED_AT, COL_STARTED_AT}, {UC_ROLE, COL_ROLE}, {UC_KEY_ID, COL_KEY_ID},
		{UC_TEAM_ID, COL_TEAM_ID}, {UC_MODEL, COL_MODEL}, {UC_PROVIDER, COL_PROVIDER},
		{UC_UPSTREAM_MODEL, COL_UPSTREAM_MODEL}, {UC_STATUS, COL_STATUS},
		{UC_ERROR_CLASS, COL_ERROR_CLASS}, {UC_HTTP_STATUS, COL_HTTP_STATUS},
		{UC_LATENCY, COL_LATENCY}, {UC_USAGE_SOURCE, COL_USAGE_SOURCE},
		{UC_CACHE_HIT, COL_HIT}, {UC_FALLBACK_FROM, COL_FALLBACK_FROM},
		{UC_JOB_ID, COL_JOB_ID}, {UC_ASYNC_ID, COL_ASYNC_ID},
	};

	/* every row priced by the row its route holds, or not priced at all */
	for (int i = 0; i < b->n; i++)
	{
		const LlmgwUsageRow *row = &b->rows[i];

		if (!b->nulls[COL_USAGE_SOURCE][i] && !row->cache_hit && row->price_id != 0 &&
			(row->price_id < 0 || row->price == (Datum) 0))
			return false;
	}

	c.n = b->n;
	for (int k = 0; k < lengthof(same); k++)
	{
		c.values[same[k].to] = b->values[same[k].from];
		c.nulls[same[k].to] = b->nulls[same[k].from];
	}
	for (int t = 0; t < LLMGW_NBUCKETS; t++)
	{
		c.values[UC_TOKENS + t] = b->values[COL_TOKENS + t];
		c.nulls[UC_TOKENS + t] = b->nulls[COL_TOKENS + t];
	}
	for (int col = UC_PRICE_ID; col <= UC_BATCH_ID; col++)
	{
		if (col == UC_CACHE_HIT || col == UC_FALLBACK_FROM || col == UC_JOB_ID ||
			col == UC_ASYNC_ID)
			continue;
		c.values[col] = palloc0(sizeof(Datum) * b->n);
		c.nulls[col] = palloc(sizeof(bool) * b->n);
		memset(c.nulls[col], true, sizeof(bool) * b->n);
	}

	currencies = palloc0(sizeof(char *) * b->n);
	for (int i = 0; i < b->n; i++)
	{
		const LlmgwUsageRow *row = &b->rows[i];
		bool		has_cost = false;
		Datum		cost = (Datum) 0;
		char	   *currency = NULL;

		if (row->cache_hit)
		{
			currency = "USD";
			if (row->hit_cost)
			{
				cost = DirectFunctionCall3(numeric_in, CStringGetDatum(row->hit_cost),
										   ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1));
				has_cost = true;
			}
		}
		else if (!b->nulls[COL_USAGE_SOURCE][i] && row->price_id > 0)
		{
			has_cost = llmgw_cost(row->price, row->tokens, &cost, &currency);
			c.values[UC_PRICE_ID][i] = Int64GetDatum(row->price_id);
			c.nulls[UC_PRICE_ID][i] = false;
		}
		c.values[UC_COST][i] = cost;
		c.nulls[UC_COST][i] = !has_cost;
		if (currency)
		{
			c.values[UC_CURRENCY][i] = CStringGetTextDatum(currency);
			c.nulls[UC_CURRENCY][i] = false;
		}
		currencies[i] = currency;
		c.values[UC_UNPRICED][i] =
			BoolGetDatum(!row->cache_hit && !has_cost &&
						 (row->status == LLMGW_STATUS_OK || !b->nulls[COL_USAGE_SOURCE][i]));
		c.nulls[UC_UNPRICED][i] = false;
		if (row->tags)
		{
			c.values[UC_TAGS][i] = DirectFunctionCall1(jsonb_in, CStringGetDatum(row->tags));
			c.nulls[UC_TAGS][i] = false;
		}
	}
	if (!llmgw_usage_write(&c))
		return false;
	llmgw_usage_roll_up(&c);

	/* what each priced row owes, for llmgw_usage_charge */
	for (int i = 0; i < b->n; i++)
	{
		if (c.nulls[UC_COST][i])
			continue;
		b->charge[i] = llmgw_cost_units(c.values[UC_COST][i]);
		b->currency[i] = currencies[i];
	}
	return true;
}

/* The prepared INSERT, with or without skipping attempts already recorded */
static SPIPlanPtr
insert_plan(bool skip_recorded)
{
	static SPIPlanPtr plans[2];

	if (plans[skip_recorded] == NULL)
	{
		Oid			argtypes[NCOLUMNS];

		for (int c = 0; c < NCOLUMNS; c++)
			argtypes[c] = get_array_type(column_types[c]);
		plans[skip_recorded] =
			llmgw_spi_prepare(psprintf(USAGE_INSERT, ROWS_OF_ARRAYS,
									   skip_recorded ? SKIP_RECORDED : ""),
							  NCOLUMNS, argtypes);
	}
	return plans[skip_recorded];
}

/*
 * Insert the batch in one statement (SPI connected, in a transaction).
 * Remembers what each priced row owes, for llmgw_usage_charge once the
 * rows are sure to stay.  skip_recorded leaves out attempts that already
 * have a row (recovered calls).  Returns the number of rows inserted.
 */
uint64
llmgw_usage_insert(LlmgwUsageBatch *b, bool skip_recorded)
{
	Datum		args[NCOLUMNS];
	int			rc;
	uint64		inserted;

	if (b->n == 0)
		return 0;
	if (!skip_recorded && insert_direct(b))
		return b->n;
	for (int c = 0; c < NCOLUMNS; c++)
		args[c] = llmgw_array_datum(b->values[c], b->nulls[c], b->n, column_types[c]);
	rc = SPI_execute_plan(insert_plan(skip_recorded), args, NULL, false, 0);
	if (rc != SPI_OK_INSERT_RETURNING ||
		(!skip_recorded && SPI_processed != (uint64) b->n))
		elog(ERROR, "llmgw: could not record usage: %s", SPI_result_code_string(rc));
	inserted = SPI_processed;
	for (uint64 r = 0; r < inserted; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		pg_uuid_t  *id = DatumGetUUIDP(SPI_getbinval(tup, desc, 1, &isnull));
		int32		attempt = DatumGetInt32(SPI_getbinval(tup, desc, 2, &isnull));
		Datum		units = SPI_getbinval(tup, desc, 4, &isnull);

		if (isnull)
			continue;			/* not priced: nothing to charge */
		for (int i = 0; i < b->n; i++)
		{
			if (b->rows[i].attempt == attempt &&
				memcmp(b->rows[i].request_id.data, id->data, UUID_LEN) == 0)
			{
				b->charge[i] = DatumGetInt64(units);
				b->currency[i] = SPI_getvalue(tup, desc, 3);
				break;
			}
		}
	}
	return inserted;
}

/*
 * Charge the cost of the inserted rows to the budgets of their calls (in
 * the transaction that wrote them, so that a ledger load, which takes a
 * SHARE lock on llmgw.usage, sees each charge exactly once).
 */
void
llmgw_usage_charge(LlmgwUsageBatch *b)
{
	for (int i = 0; i < b->n; i++)
	{
		LlmgwCall  *call = b->rows[i].call;

		if (b->charge[i] >= 0 && call != NULL)
		{
			llmgw_policy_charge(call, b->charge[i], b->currency[i], b->rows[i].started_at);
			/* what the call cost so far, for the front door's proof */
			call->cost_units += b->charge[i];
			call->cost_known = true;
			strlcpy(call->cost_currency, b->currency[i] ? b->currency[i] : "",
					sizeof(call->cost_currency));
		}
		b->charge[i] = -1;
	}
}
