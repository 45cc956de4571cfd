/*-------------------------------------------------------------------------
 *
 * cost.c
 *		The exact cost of token counts at a price row: llmgw.cost(), which
 *		SQL calls, and llmgw_cost(), which the workers call for the usage
 *		rows they write.  One definition of the price rule for both.
 *
 * The rule (docs/money.md): input includes cached input and cache writes,
 * output includes reasoning; above the tier threshold the whole call is
 * charged the tier rates; a rate left NULL falls back as the price list
 * says (cached input and 5-minute cache writes to input, 1-hour writes to
 * 5-minute writes, reasoning to output).  Rates are per million tokens.
 * The sum is the numeric SQL would compute, operation for operation (the
 * same functions, in the same order, with the same scales), and NULL
 * where SQL's would be: a missing count that the rule needs makes the
 * cost NULL, never 0.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "common/int.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/numeric.h"
#include "utils/typcache.h"

#include "budget.h"
#include "cost.h"

/* The columns of llmgw.prices the rule reads */
typedef enum PriceField
{
	P_ID,
	P_INPUT,
	P_CACHED_INPUT,
	P_CACHE_WRITE_5M,
	P_CACHE_WRITE_1H,
	P_OUTPUT,
	P_REASONING,
	P_PER_REQUEST,
	P_PER_IMAGE,
	P_TIER_THRESHOLD,
	P_TIER_INPUT,
	P_TIER_CACHED_INPUT,
	P_TIER_CACHE_WRITE_5M,
	P_TIER_CACHE_WRITE_1H,
	P_TIER_OUTPUT,
	P_CURRENCY,
	NFIELDS
} PriceField;

static const char *const field_names[NFIELDS] = {
	[P_ID] = "id",
	[P_INPUT] = "input",
	[P_CACHED_INPUT] = "cached_input",
	[P_CACHE_WRITE_5M] = "cache_write_5m",
	[P_CACHE_WRITE_1H] = "cache_write_1h",
	[P_OUTPUT] = "output",
	[P_REASONING] = "reasoning",
	[P_PER_REQUEST] = "per_request",
	[P_PER_IMAGE] = "per_image",
	[P_TIER_THRESHOLD] = "tier_threshold",
	[P_TIER_INPUT] = "tier_input",
	[P_TIER_CACHED_INPUT] = "tier_cached_input",
	[P_TIER_CACHE_WRITE_5M] = "tier_cache_write_5m",
	[P_TIER_CACHE_WRITE_1H] = "tier_cache_write_1h",
	[P_TIER_OUTPUT] = "tier_output",
	[P_CURRENCY] = "currency",
};

/* A value that may be NULL, as SQL carries it */
typedef struct Maybe
{
	Datum		v;
	bool		null;
} Maybe;

static const Maybe null_value = {0, true};

/* A price row's fields, by PriceField */
typedef struct Price
{
	Maybe		f[NFIELDS];
} Price;

/* Where each field is in the row type, for the row type's current shape */
static uint64 cached_identifier = 0;
static int	attnums[NFIELDS];

static void
read_price(HeapTupleHeader row, Price *p)
{
	Oid			typid = HeapTupleHeaderGetTypeId(row);
	int32		typmod = HeapTupleHeaderGetTypMod(row);
	TupleDesc	desc = lookup_rowtype_tupdesc(typid, typmod);
	TypeCacheEntry *tc = lookup_type_cache(typid, TYPECACHE_TUPDESC);
	HeapTupleData tuple;
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *nulls = palloc(sizeof(bool) * desc->natts);

	if (typid == RECORDOID || tc->tupDesc_identifier != cached_identifier)
	{
		for (int f = 0; f < NFIELDS; f++)
		{
			attnums[f] = -1;
			for (int a = 0; a < desc->natts; a++)
			{
				Form_pg_attribute att = TupleDescAttr(desc, a);

				if (!att->attisdropped && strcmp(NameStr(att->attname), field_names[f]) == 0)
					attnums[f] = a;
			}
			if (attnums[f] < 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATATYPE_MISMATCH),
						 errmsg("a price row has no column \"%s\"", field_names[f])));
		}
		cached_identifier = typid == RECORDOID ? 0 : tc->tupDesc_identifier;
	}
	tuple.t_len = HeapTupleHeaderGetDatumLength(row);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = row;
	heap_deform_tuple(&tuple, desc, values, nulls);
	for (int f = 0; f < NFIELDS; f++)
	{
		p->f[f].v = values[attnums[f]];
		p->f[f].null = nulls[attnums[f]];
	}
	ReleaseTupleDesc(desc);
}

/* The first of up to six values that is not NULL (SQL's coalesce) */
static Maybe
first_of(int n, const Maybe *const *v)
{
	for (int i = 0; i < n; i++)
		if (!v[i]->null)
			return *v[i];
	return null_value;
}

#define COALESCE(...) \
	first_of(lengthof(((const Maybe *const[]) {__VA_ARGS__})), (const Maybe *const[]) {__VA_ARGS__})

static Maybe
numeric_of(int64 n)
{
	Maybe		m = {NumericGetDatum(int64_to_numeric(n)), false};

	return m;
}

static Maybe
op(PGFunction fn, Maybe a, Maybe b)
{
	Maybe		m = null_value;

	if (!a.null && !b.null)
	{
		m.v = DirectFunctionCall2(fn, a.v, b.v);
		m.null = false;
	}
	return m;
}

/* bigint a - b, NULL if either is, "bigint out of range" as SQL says it */
static Maybe
int8_minus(Maybe a, Maybe b)
{
	Maybe		m = null_value;
	int64		r;

	if (a.null || b.null)
		return m;
	if (pg_sub_s64_overflow(DatumGetInt64(a.v), DatumGetInt64(b.v), &r))
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("bigint out of range")));
	m.v = Int64GetDatum(r);
	m.null = false;
	return m;
}

/* tokens (bigint) times a rate (numeric) */
static Maybe
times(Maybe tokens, Maybe rate)
{
	if (tokens.null)
		return null_value;
	return op(numeric_mul, numeric_of(DatumGetInt64(tokens.v)), rate);
}

/* A count, or 0 when NULL (coalesce(x, 0)) */
static Maybe
or_zero(Maybe count)
{
	Maybe		m = {count.null ? Int64GetDatum(0) : count.v, false};

	return m;
}

/* The cost of the counts (bigint, by LlmgwBucket) at price p */
static Maybe
cost_at(const Price *pr, const Maybe *tokens, int32 images, bool images_null)
{
	const Maybe *p = pr->f;
	Maybe		input = tokens[LLMGW_TOKENS_INPUT];
	bool		tier;
	Maybe		rate_input,
				rate_cached,
				rate_5m,
				rate_1h,
				rate_output,
				output,
				sum,
				zero = numeric_of(0),
				extra;

	if (p[P_ID].null)
		return null_value;
	tier = !input.null && !p[P_TIER_THRESHOLD].null &&
		DatumGetInt64(input.v) > DatumGetInt64(p[P_TIER_THRESHOLD].v);
	if (tier)
	{
		rate_input = COALESCE(&p[P_TIER_INPUT], &p[P_INPUT]);
		rate_cached = COALESCE(&p[P_TIER_CACHED_INPUT], &p[P_CACHED_INPUT], &p[P_TIER_INPUT],
							   &p[P_INPUT]);
		rate_5m = COALESCE(&p[P_TIER_CACHE_WRITE_5M], &p[P_CACHE_WRITE_5M], &p[P_TIER_INPUT],
						   &p[P_INPUT]);
		rate_1h = COALESCE(&p[P_TIER_CACHE_WRITE_1H], &p[P_CACHE_WRITE_1H],
						   &p[P_TIER_CACHE_WRITE_5M], &p[P_CACHE_WRITE_5M], &p[P_TIER_INPUT],
						   &p[P_INPUT]);
		rate_output = COALESCE(&p[P_TIER_OUTPUT], &p[P_OUTPUT]);
	}
	else
	{
		rate_input = p[P_INPUT];
		rate_cached = COALESCE(&p[P_CACHED_INPUT], &p[P_INPUT]);
		rate_5m = COALESCE(&p[P_CACHE_WRITE_5M], &p[P_INPUT]);
		rate_1h = COALESCE(&p[P_CACHE_WRITE_1H], &p[P_CACHE_WRITE_5M], &p[P_INPUT]);
		rate_output = p[P_OUTPUT];
	}

	/* coalesce(output_tokens, CASE WHEN p.output = 0 AND p.reasoning IS NULL THEN 0 END) */
	output = tokens[LLMGW_TOKENS_OUTPUT];
	if (output.null && !p[P_OUTPUT].null && p[P_REASONING].null &&
		DatumGetBool(DirectFunctionCall2(numeric_eq, p[P_OUTPUT].v, zero.v)))
		output = or_zero(null_value);

	sum = times(int8_minus(int8_minus(input, or_zero(tokens[LLMGW_TOKENS_CACHED_INPUT])),
						   or_zero(tokens[LLMGW_TOKENS_CACHE_WRITE])),
				rate_input);
	sum = op(numeric_add, sum, times(or_zero(tokens[LLMGW_TOKENS_CACHED_INPUT]), rate_cached));
	sum = op(numeric_add, sum,
			 times(int8_minus(or_zero(tokens[LLMGW_TOKENS_CACHE_WRITE]),
							  or_zero(tokens[LLMGW_TOKENS_CACHE_WRITE_1H])), rate_5m));
	sum = op(numeric_add, sum, times(or_zero(tokens[LLMGW_TOKENS_CACHE_WRITE_1H]), rate_1h));
	sum = op(numeric_add, sum,
			 times(int8_minus(output, or_zero(tokens[LLMGW_TOKENS_REASONING])), rate_output));
	sum = op(numeric_add, sum,
			 times(or_zero(tokens[LLMGW_TOKENS_REASONING]), COALESCE(&p[P_REASONING], &rate_output)));
	sum = op(numeric_div, sum, numeric_of(1000000));
	sum = op(numeric_add, sum, COALESCE(&p[P_PER_REQUEST], &zero));
	extra = op(numeric_mul, numeric_of(images_null ? 0 : images),
			   COALESCE(&p[P_PER_IMAGE], &zero));
	sum = op(numeric_add, sum, extra);
	if (!sum.null)
		sum.v = DirectFunctionCall1(numeric_trim_scale, sum.v);
	return sum;
}

bool
llmgw_cost(Datum price, const int64 *tokens, Datum *cost, char **currency)
{
	Price		p;
	Maybe		counts[LLMGW_NBUCKETS];
	Maybe		c;

	for (int t = 0; t < LLMGW_NBUCKETS; t++)
	{
		counts[t].v = Int64GetDatum(tokens[t]);
		counts[t].null = tokens[t] == LLMGW_TOKENS_UNKNOWN;
	}
	read_price(DatumGetHeapTupleHeader(price), &p);
	c = cost_at(&p, counts, 0, true);
	*currency = p.f[P_CURRENCY].null ? NULL : TextDatumGetCString(p.f[P_CURRENCY].v);
	*cost = c.v;
	return !c.null;
}

int64
llmgw_cost_units(Datum cost)
{
	Datum		scale = DirectFunctionCall1(int8_numeric, Int64GetDatum(LLMGW_MONEY_SCALE_INT));
	Datum		units = DirectFunctionCall2(numeric_mul, cost, scale);

	return DatumGetInt64(DirectFunctionCall1(numeric_int8,
											 DirectFunctionCall1(numeric_ceil, units)));
}

/*
 * llmgw.cost(p llmgw.prices, input_tokens, output_tokens, cached_input_tokens,
 *			  cache_write_tokens, cache_write_1h_tokens, reasoning_tokens, images)
 */
PG_FUNCTION_INFO_V1(llmgw_cost_sql);
Datum
llmgw_cost_sql(PG_FUNCTION_ARGS)
{
	/* the buckets of the arguments after p, in their order */
	static const LlmgwBucket args[6] = {LLMGW_TOKENS_INPUT, LLMGW_TOKENS_OUTPUT,
		LLMGW_TOKENS_CACHED_INPUT, LLMGW_TOKENS_CACHE_WRITE, LLMGW_TOKENS_CACHE_WRITE_1H,
	LLMGW_TOKENS_REASONING};
	Maybe		counts[LLMGW_NBUCKETS];
	Price		p;
	Maybe		c;

	StaticAssertStmt(LLMGW_NBUCKETS == 6, "llmgw.cost takes six token counts");
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	for (int i = 0; i < 6; i++)
	{
		counts[args[i]].null = PG_ARGISNULL(i + 1);
		counts[args[i]].v = counts[args[i]].null ? (Datum) 0 : PG_GETARG_DATUM(i + 1);
	}
	read_price(PG_GETARG_HEAPTUPLEHEADER(0), &p);
	c = cost_at(&p, counts, PG_ARGISNULL(7) ? 0 : PG_GETARG_INT32(7), PG_ARGISNULL(7));
	if (c.null)
		PG_RETURN_NULL();
	PG_RETURN_DATUM(c.v);
}
