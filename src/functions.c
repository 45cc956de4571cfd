/*-------------------------------------------------------------------------
 *
 * functions.c
 *		SQL-callable entry points.  They build a request, hand it to the
 *		workers through shared memory and sleep until the answer arrives;
 *		no HTTP call is ever made from the caller's backend.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/uuid.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "commands/trigger.h"
#include "access/htup_details.h"
#include "storage/proc.h"

#include "errors.h"
#include "async.h"
#include "executor/spi.h"
#include "llmgw.h"
#include "queue.h"
#include "policy.h"
#include "share.h"
#include "txn.h"

PG_FUNCTION_INFO_V1(llm_complete);
PG_FUNCTION_INFO_V1(llm_chat);
PG_FUNCTION_INFO_V1(llm_complete_many);
PG_FUNCTION_INFO_V1(llm_embed);
PG_FUNCTION_INFO_V1(llm_embed_many);
PG_FUNCTION_INFO_V1(llmgw_stats);

/*
 * Refuse a call that cannot be served from here: on a standby (the workers
 * do no writing work there), or from a database the workers do not serve.
 */
static void
check_caller(void)
{
	char	   *db;

	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("llmgw cannot call models on a standby server"),
				 errdetail("Calls write usage rows, and a standby is read-only."),
				 errhint("Call models on the primary; a standby serves the spend views and usage rows.")));
	db = get_database_name(MyDatabaseId);
	if (db == NULL || strcmp(db, llmgw_database) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("llmgw serves database \"%s\" only", llmgw_database),
				 errhint("Call it from that database, or change llmgw.database and restart the server.")));
}

/*
 * The job the session's calls work for: llmgw.job, which must name a
 * running job of the calling role (checked once per transaction), so that
 * nobody can charge calls to another role's job.
 */
static int64
current_job(void)
{
	static int64 checked_job = 0;
	static Oid	checked_user = InvalidOid;
	static LocalTransactionId checked_lxid = InvalidLocalTransactionId;
	int64		job;
	Oid			types[2] = {INT8OID, NAMEOID};
	Datum		values[2];
	int			rc;
	bool		found;

	if (llmgw_job == NULL || llmgw_job[0] == '\0')
		return 0;
	job = pg_strtoint64(llmgw_job);
	if (job == checked_job && GetUserId() == checked_user && MyProc->lxid == checked_lxid)
		return job;
	values[0] = Int64GetDatum(job);
	values[1] = DirectFunctionCall1(namein, CStringGetDatum(GetUserNameFromId(GetUserId(), false)));
	SPI_connect();
	rc = SPI_execute_with_args("SELECT 1 FROM llmgw.jobs j WHERE j.id = $1 AND j.owner = $2"
							   " AND j.status = 'running'", 2, types, values, NULL, true, 1);
	found = (rc == SPI_OK_SELECT && SPI_processed == 1);
	SPI_finish();
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("llmgw.job %lld is not a running job of role \"%s\"",
						(long long) job, GetUserNameFromId(GetUserId(), false)),
				 errhint("llmgw.enrich sets llmgw.job for its own job; RESET llmgw.job.")));
	checked_job = job;
	checked_user = GetUserId();
	checked_lxid = MyProc->lxid;
	return job;
}

/*
 * The hash of the session's virtual key; false when it presents none,
 * which llmgw.require_key forbids.
 */
static bool
presented_key(uint8 *hash)
{
	bool		has_key = llmgw_api_key_current(hash);

	if (llmgw_require_key && !has_key)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
				 errmsg("a virtual key is required"),
				 errdetail("llmgw.require_key is on and llmgw.api_key is empty."),
				 errhint("Present a key: SELECT set_config('llmgw.api_key', '<key>', false), or PGOPTIONS='-c llmgw.api_key=<key>'.")));
	return has_key;
}

/* Put a request into the payload area, with the session's settings */
static dsa_pointer
request_create(int kind, const char *model, const char *body, size_t body_len)
{
	LlmgwRequest header;

	check_caller();
	memset(&header, 0, sizeof(header));
	header.kind = kind;
	llmgw_call_settings_current(&header.settings);
	header.has_key = presented_key(header.key_hash);
	header.job_id = current_job();
	if (kind != LLMGW_KIND_EMBED)
		header.max_output_tokens = llmgw_json_output_bound_text(body, body_len);
	return llmgw_request_create(&header, GetUserNameFromId(GetUserId(), false), model,
								body, body_len, llmgw_tags && llmgw_tags[0] ? llmgw_tags : NULL);
}

/* The model argument, which must not be NULL */
static char *
model_arg(FunctionCallInfo fcinfo, int argno)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("model must not be null")));
	return text_to_cstring(PG_GETARG_TEXT_PP(argno));
}

/* Raise the error a worker reported */
static void
raise_result_error(LlmgwResult *res)
{
	const char *detail = LLMGW_RESULT_DETAIL(res);
	const char *hint = LLMGW_RESULT_HINT(res);

	ereport(ERROR,
			(errcode(res->sqlerrcode ? res->sqlerrcode : ERRCODE_INTERNAL_ERROR),
			 errmsg_internal("%s", LLMGW_RESULT_MESSAGE(res)),
			 res->detail_len ? errdetail_internal("%s", detail) : 0,
			 res->hint_len ? errhint("%s", hint) : 0));
}

/* Run one call through the workers; returns the result or raises its error */
static LlmgwResult *
llmgw_execute(int kind, const char *model, StringInfo body)
{
	dsa_pointer request;
	int			slotno;
	LlmgwResult *res;

	request = request_create(kind, model, body->data, body->len);
	PG_TRY();
	{
		slotno = llmgw_slot_submit(request);
	}
	PG_CATCH();
	{
		dsa_free(llmgw_dsa(), request);
		PG_RE_THROW();
	}
	PG_END_TRY();

	res = llmgw_slot_wait(slotno);
	if (res->status != LLMGW_STATUS_OK)
		raise_result_error(res);
	return res;
}

/* Append "key": "value" to a JSON object being built */
static void
append_json_member(StringInfo buf, const char *key, const char *value)
{
	if (buf->data[buf->len - 1] != '{')
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
	escape_json(buf, value);
}

/* Append one chat message {"role": ..., "content": ...} */
static void
append_message(StringInfo buf, const char *role, const char *content)
{
	if (buf->data[buf->len - 1] != '[')
		appendStringInfoChar(buf, ',');
	appendStringInfoChar(buf, '{');
	append_json_member(buf, "role", role);
	append_json_member(buf, "content", content);
	appendStringInfoChar(buf, '}');
}

/* The chat body of a completion: optional system message, one user message */
static void
complete_body(StringInfo body, const char *prompt, FunctionCallInfo fcinfo)
{
	resetStringInfo(body);
	appendStringInfoString(body, "{\"messages\":[");
	if (!PG_ARGISNULL(2))
		append_message(body, "system", text_to_cstring(PG_GETARG_TEXT_PP(2)));
	append_message(body, "user", prompt);
	appendStringInfoChar(body, ']');
	if (!PG_ARGISNULL(3))
	{
		int32		max_tokens = PG_GETARG_INT32(3);

		if (max_tokens < 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_tokens must be at least 1")));
		appendStringInfo(body, ",\"max_tokens\":%d", max_tokens);
	}
	if (!PG_ARGISNULL(4))
	{
		float8		temperature = PG_GETARG_FLOAT8(4);

		if (!(temperature >= 0.0 && temperature <= 2.0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("temperature must be between 0 and 2")));
		appendStringInfo(body, ",\"temperature\":%.17g", temperature);
	}
	appendStringInfoChar(body, '}');
}

/*
 * llm_complete(prompt, model, system, max_tokens, temperature) -> text
 *
 * NULL prompt gives NULL without calling anyone, so a table with missing
 * inputs can be enriched without special cases.
 */
Datum
llm_complete(PG_FUNCTION_ARGS)
{
	StringInfoData body;
	char	   *model;
	LlmgwResult *res;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	model = model_arg(fcinfo, 1);
	initStringInfo(&body);
	complete_body(&body, text_to_cstring(PG_GETARG_TEXT_PP(0)), fcinfo);
	res = llmgw_execute(LLMGW_KIND_CHAT, model, &body);
	if (!res->has_text)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text_with_len(LLMGW_RESULT_TEXT(res), res->text_len));
}

/* The slots a many-call has in flight, for cleanup on error */
typedef struct ManyCalls
{
	int			n;
	int		   *slot;			/* per element: its slot, or -1 */
} ManyCalls;

/* Error or exit during a many-call: abandon every slot still in flight */
static void
many_abandon_cb(int code, Datum arg)
{
	ManyCalls  *calls = (ManyCalls *) DatumGetPointer(arg);

	for (int i = 0; i < calls->n; i++)
		if (calls->slot[i] >= 0)
			llmgw_slot_abandon(calls->slot[i]);
}

/*
 * Run the elements' calls with at most `concurrency` in flight; results[i]
 * gets each element's result (NULL for a NULL prompt).
 */
static void
run_many(FunctionCallInfo fcinfo, const char *model, Datum *prompts, bool *nulls,
		 int n, int concurrency, LlmgwResult **results)
{
	ManyCalls	calls;
	int		   *active = palloc(sizeof(int) * concurrency);	/* element numbers */
	int		   *slotnos = palloc(sizeof(int) * concurrency);
	StringInfoData body;

	calls.n = n;
	calls.slot = palloc(sizeof(int) * n);
	for (int i = 0; i < n; i++)
		calls.slot[i] = -1;
	initStringInfo(&body);

	PG_ENSURE_ERROR_CLEANUP(many_abandon_cb, PointerGetDatum(&calls));
	{
		int			next = 0;
		int			nactive = 0;

		while (next < n || nactive > 0)
		{
			while (nactive < concurrency && next < n)
			{
				dsa_pointer request;
				int			slotno;

				if (nulls[next])
				{
					results[next++] = NULL;
					continue;
				}
				complete_body(&body, TextDatumGetCString(prompts[next]), fcinfo);
				request = request_create(LLMGW_KIND_CHAT, model, body.data, body.len);
				slotno = llmgw_slot_try_submit(request);
				if (slotno < 0)
				{
					dsa_free(llmgw_dsa(), request);
					if (nactive > 0)
						break;	/* no slot now: wait for ours to free one */
					/* our share is held by other sessions of our role or key */
					llmgw_slot_refused(slotno);
					continue;
				}
				calls.slot[next] = slotno;
				active[nactive++] = next++;
			}
			if (nactive == 0)
				continue;
			for (int i = 0; i < nactive; i++)
				slotnos[i] = calls.slot[active[i]];
			llmgw_slots_wait_any(slotnos, nactive);
			for (int i = 0; i < nactive; i++)
			{
				int			elem = active[i];

				if (!llmgw_slot_done(calls.slot[elem]))
					continue;
				results[elem] = llmgw_slot_result(calls.slot[elem]);
				calls.slot[elem] = -1;
				active[i--] = active[--nactive];
			}
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(many_abandon_cb, PointerGetDatum(&calls));
}

/*
 * llm_complete_many(prompts text[], model, system, max_tokens, temperature,
 *                   concurrency, on_error)
 *		-> TABLE (ordinality integer, answer text, sqlstate text, error text)
 *
 * Every prompt goes to the workers at once (up to `concurrency` in flight)
 * and runs concurrently.  on_error 'raise' raises the first failure once all
 * calls are settled; 'continue' gives NULL and the error on that row.
 */
Datum
llm_complete_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *model;
	Datum	   *prompts;
	bool	   *nulls;
	int			n;
	int			concurrency = PG_ARGISNULL(5) ? 64 : PG_GETARG_INT32(5);
	bool		raise = true;
	LlmgwResult **results;
	StringInfoData check;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	model = model_arg(fcinfo, 1);
	if (concurrency < 1 || concurrency > llmgw_queue_size)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("concurrency must be between 1 and llmgw.queue_size (%d)", llmgw_queue_size)));
	if (!PG_ARGISNULL(6))
	{
		char	   *mode = text_to_cstring(PG_GETARG_TEXT_PP(6));

		if (strcmp(mode, "continue") == 0)
			raise = false;
		else if (strcmp(mode, "raise") != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("on_error must be 'raise' or 'continue'")));
	}
	initStringInfo(&check);
	complete_body(&check, "", fcinfo);	/* checks the parameters once, up front */

	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
					  &prompts, &nulls, &n);
	results = palloc0(sizeof(LlmgwResult *) * Max(n, 1));
	run_many(fcinfo, model, prompts, nulls, n, Min(concurrency, Max(n, 1)), results);

	for (int i = 0; i < n && raise; i++)
		if (results[i] && results[i]->status != LLMGW_STATUS_OK)
			raise_result_error(results[i]);
	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		isnull[4] = {false, true, true, true};
		LlmgwResult *res = results[i];

		values[0] = Int32GetDatum(i + 1);
		if (res && res->status == LLMGW_STATUS_OK && res->has_text)
		{
			values[1] = PointerGetDatum(cstring_to_text_with_len(LLMGW_RESULT_TEXT(res), res->text_len));
			isnull[1] = false;
		}
		else if (res && res->status != LLMGW_STATUS_OK)
		{
			values[2] = CStringGetTextDatum(unpack_sql_state(res->sqlerrcode));
			values[3] = CStringGetTextDatum(LLMGW_RESULT_MESSAGE(res));
			isnull[2] = isnull[3] = false;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
	}
	PG_RETURN_NULL();
}

/* A string member of a jsonb object, or NULL */
static char *
jsonb_string_member(Jsonb *jb, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Is the member a non-empty array? */
static bool
jsonb_has_array(Jsonb *jb, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(&jb->root, key, strlen(key), NULL);

	return v != NULL && v->type == jbvBinary &&
		JsonContainerIsArray(v->val.binary.data) &&
		JsonContainerSize(v->val.binary.data) > 0;
}

/*
 * llm_chat(request jsonb) -> jsonb
 *
 * An OpenAI Chat Completions request, "model" naming an llmgw alias; the
 * worker translates it for whatever provider the alias routes to and
 * answers in llmgw's normalised shape (see response.c).
 */
Datum
llm_chat(PG_FUNCTION_ARGS)
{
	Jsonb	   *request = PG_GETARG_JSONB_P(0);
	char	   *model;
	StringInfoData body;
	LlmgwResult *res;

	if (!JB_ROOT_IS_OBJECT(request))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("llm_chat request must be a JSON object")));
	model = jsonb_string_member(request, "model");
	if (model == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("llm_chat request needs a \"model\" string"),
				 errhint("Name a model alias created with llmgw.create_model().")));
	if (!jsonb_has_array(request, "messages"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("llm_chat request needs a non-empty \"messages\" array")));

	initStringInfo(&body);
	(void) JsonbToCString(&body, &request->root, VARSIZE(request));
	res = llmgw_execute(LLMGW_KIND_CHAT_JSON, model, &body);
	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(LLMGW_RESULT_TEXT(res))));
}

/*
 * The dimensions argument (argno) of llm_embed and llm_embed_many: 0 when
 * absent or NULL (the model's own), else a positive count asked of the
 * model (OpenAI's "dimensions", Gemini's outputDimensionality).  The
 * functions as 0.5 and before declared them have no such argument.
 */
static int
dimensions_arg(FunctionCallInfo fcinfo, int argno)
{
	int			dims;

	if (PG_NARGS() <= argno || PG_ARGISNULL(argno))
		return 0;
	dims = PG_GETARG_INT32(argno);
	if (dims < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("dimensions must be at least 1, not %d", dims),
				 errhint("Pass NULL for the model's own dimension.")));
	return dims;
}

/*
 * Embed the strings (a JSON array, built by the caller), asking for dims
 * values each when dims > 0; one line per vector
 */
static char *
embed(const char *model, StringInfo inputs, int expected, int dims)
{
	StringInfoData body;
	LlmgwResult *res;
	char	   *lines;
	int			count = 0;

	initStringInfo(&body);
	appendStringInfo(&body, "{\"input\":%s", inputs->data);
	if (dims > 0)
		appendStringInfo(&body, ",\"dimensions\":%d", dims);
	appendStringInfoChar(&body, '}');
	res = llmgw_execute(LLMGW_KIND_EMBED, model, &body);
	lines = pstrdup(LLMGW_RESULT_TEXT(res));
	for (char *p = lines; *p; p++)
		count += (*p == '\n');
	if (count != expected)
		ereport(ERROR,
				(errcode(ERRCODE_LLMGW_MALFORMED),
				 errmsg("provider returned %d embeddings for %d inputs", count, expected)));
	return lines;
}

/* A vector line "{x,y,...}" written by a worker as real[] */
static Datum
vector_datum(char *line)
{
	int			n = 1;
	Datum	   *elems;
	char	   *p = line + 1;

	for (char *c = line; *c; c++)
		n += (*c == ',');
	elems = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
	{
		elems[i] = Float4GetDatum(strtof(p, &p));
		p++;					/* the ',' or the closing '}' */
	}
	return PointerGetDatum(construct_array(elems, n, FLOAT4OID, sizeof(float4),
										   true, TYPALIGN_INT));
}

/* llm_embed(input text, model text, dimensions integer) -> real[] */
Datum
llm_embed(PG_FUNCTION_ARGS)
{
	StringInfoData inputs;
	char	   *lines;
	char	   *model;
	int			dims;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	model = model_arg(fcinfo, 1);
	dims = dimensions_arg(fcinfo, 2);
	initStringInfo(&inputs);
	appendStringInfoChar(&inputs, '[');
	escape_json(&inputs, text_to_cstring(PG_GETARG_TEXT_PP(0)));
	appendStringInfoChar(&inputs, ']');
	lines = embed(model, &inputs, 1, dims);
	*strchr(lines, '\n') = '\0';
	PG_RETURN_DATUM(vector_datum(lines));
}

/*
 * llm_embed_many(inputs text[], model text, dimensions integer)
 *		-> TABLE (ordinality integer, embedding real[])
 *
 * All inputs go to the provider in one request.
 */
Datum
llm_embed_many(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	StringInfoData inputs;
	char	   *lines;
	char	   *line;
	char	   *model;
	int			dims;

	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	model = model_arg(fcinfo, 1);
	dims = dimensions_arg(fcinfo, 2);
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(0), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &nulls, &n);
	if (n == 0)
		PG_RETURN_NULL();
	initStringInfo(&inputs);
	appendStringInfoChar(&inputs, '[');
	for (int i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("inputs must not contain nulls")));
		if (i > 0)
			appendStringInfoChar(&inputs, ',');
		escape_json(&inputs, TextDatumGetCString(elems[i]));
	}
	appendStringInfoChar(&inputs, ']');
	lines = embed(model, &inputs, n, dims);
	line = lines;
	for (int i = 0; i < n; i++)
	{
		char	   *end = strchr(line, '\n');
		Datum		values[2];
		bool		isnull[2] = {false, false};

		*end = '\0';
		values[0] = Int32GetDatum(i + 1);
		values[1] = vector_datum(line);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, isnull);
		line = end + 1;
	}
	PG_RETURN_NULL();
}

/*
 * The 0.1 name of llm_embed_many, which only the 0.1 install script binds
 * (an upgrade from 0.1 starts by running it against this library).
 */
PG_FUNCTION_INFO_V1(llm_embed_batch);
Datum
llm_embed_batch(PG_FUNCTION_ARGS)
{
	return llm_embed_many(fcinfo);
}

/*
 * llmgw.stats() -> (workers_running, calls_queued, calls_in_flight,
 *                   calls_since_start, queue_size, workers_configured,
 *                   life_started_at)
 */
Datum
llmgw_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[7];
	bool		nulls[7] = {false, false, false, false, false, false, false};
	int			workers;
	int			queued;
	int			running;
	uint64		total;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "llmgw.stats must return a record");
	llmgw_queue_counts(&workers, &queued, &running, &total);
	values[0] = Int32GetDatum(workers);
	values[1] = Int32GetDatum(queued);
	values[2] = Int32GetDatum(running);
	values[3] = Int64GetDatum((int64) total);
	values[4] = Int32GetDatum(llmgw_queue_size);
	values[5] = Int32GetDatum(llmgw_workers);
	values[6] = TimestampTzGetDatum(llmgw_shared->life);
	/* an older schema (before ALTER EXTENSION UPDATE) has five columns */
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}

PG_FUNCTION_INFO_V1(llmgw_async_calls_guard);

/*
 * llmgw.async_calls_guard(): BEFORE INSERT trigger of llmgw.async_calls.
 * A call queued by hand is queued as llmgw.submit() queues it: its key is
 * the session's (a hash written in the row is not taken: it would charge a
 * key the caller never presented), llmgw.require_key holds, and its tags
 * are the session's llmgw.tags unless given, within the same rules.  A
 * superuser's rows (a restore, say) keep what they say; what they leave
 * NULL is filled the same way.
 */
Datum
llmgw_async_calls_guard(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	HeapTuple	tuple;
	int			cols[2];
	Datum		values[2];
	bool		nulls[2];
	bool		trusted = superuser();
	uint8		hash[32];

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_BEFORE(trigdata->tg_event) ||
		!TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) || !TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
		elog(ERROR, "llmgw.async_calls_guard() must be fired BEFORE INSERT FOR EACH ROW");
	desc = trigdata->tg_relation->rd_att;
	tuple = trigdata->tg_trigtuple;
	cols[0] = SPI_fnumber(desc, "key_hash");
	cols[1] = SPI_fnumber(desc, "tags");
	if (cols[0] <= 0 || cols[1] <= 0)
		elog(ERROR, "llmgw.async_calls has no key_hash or tags column");
	values[0] = heap_getattr(tuple, cols[0], desc, &nulls[0]);
	values[1] = heap_getattr(tuple, cols[1], desc, &nulls[1]);

	if (!trusted || nulls[0])
	{
		bool		has_key = trusted ? llmgw_api_key_current(hash) : presented_key(hash);

		nulls[0] = !has_key;
		if (has_key)
			values[0] = llmgw_bytea_datum(hash, sizeof(hash));
	}
	if (nulls[1])
	{
		nulls[1] = !(llmgw_tags && llmgw_tags[0]);
		if (!nulls[1])
			values[1] = DirectFunctionCall1(jsonb_in, CStringGetDatum(llmgw_tags));
	}
	else if (!trusted)
	{
		Jsonb	   *tags = DatumGetJsonbP(values[1]);
		char	   *text = JsonbToCString(NULL, &tags->root, VARSIZE(tags));

		if (!JB_ROOT_IS_OBJECT(tags) || strlen(text) > LLMGW_MAX_TAGS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("the tags of an asynchronous call must be a JSON object of at most %d bytes",
							LLMGW_MAX_TAGS),
					 errdetail("They go into its usage rows, as llmgw.tags does.")));
	}
	tuple = heap_modify_tuple_by_cols(tuple, desc, 2, cols, values, nulls);
	llmgw_async_signal_at_commit();		/* the dispatcher takes it at once */
	return PointerGetDatum(tuple);
}

PG_FUNCTION_INFO_V1(llmgw_session_key_hash);

/*
 * llmgw.session_key_hash() -> bytea: the sha256 of the session's virtual
 * key (NULL: none; an error when llmgw.require_key wants one), for the
 * functions that queue work the workers run later (llmgw.submit_batch).
 * Only the extension owner may call it: the hash identifies the key.
 */
Datum
llmgw_session_key_hash(PG_FUNCTION_ARGS)
{
	uint8		hash[32];

	if (!presented_key(hash))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(llmgw_bytea_datum(hash, sizeof(hash)));
}

PG_FUNCTION_INFO_V1(llmgw_submit);

/*
 * llmgw.submit(request jsonb) -> bigint: queue an llm_chat request in
 * llmgw.async_calls, with the caller's key (its hash), tags and retry and
 * timeout settings.  The workers take it once this transaction commits.
 */
Datum
llmgw_submit(PG_FUNCTION_ARGS)
{
	Jsonb	   *request = PG_GETARG_JSONB_P(0);
	char	   *model;
	LlmgwCallSettings settings;
	Oid			types[10] = {TEXTOID, JSONBOID, INT4OID, INT4OID, INT4OID, INT4OID,
							 INT4OID, TEXTOID, INT4OID, INT8OID};
	Datum		values[10];
	int64		id;
	bool		isnull;
	int			rc;

	if (!JB_ROOT_IS_OBJECT(request))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("llmgw.submit request must be a JSON object")));
	model = jsonb_string_member(request, "model");
	if (model == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("llmgw.submit request needs a \"model\" string"),
				 errhint("Name a model alias created with llmgw.create_model().")));
	if (!jsonb_has_array(request, "messages"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("llmgw.submit request needs a non-empty \"messages\" array")));

	check_caller();
	values[0] = CStringGetTextDatum(model);
	values[1] = JsonbPGetDatum(request);
	/* the call runs as this session would run it (its key and tags: the trigger) */
	llmgw_call_settings_current(&settings);
	values[2] = Int32GetDatum(settings.max_retries);
	values[3] = Int32GetDatum(settings.timeout_ms);
	values[4] = Int32GetDatum(settings.retry_max_wait_ms);
	values[5] = Int32GetDatum(settings.retry_base_delay_ms);
	values[6] = Int32GetDatum(settings.deadline_ms);
	values[7] = CStringGetTextDatum(llmgw_cache_mode_name(settings.cache_mode));
	values[8] = Int32GetDatum(settings.cache_ttl_s);
	values[9] = Int64GetDatum(settings.max_response_bytes);

	SPI_connect();
	rc = SPI_execute_with_args("INSERT INTO llmgw.async_calls (model, request, max_retries,"
							   " timeout_ms, retry_max_wait_ms, retry_base_delay_ms, deadline_ms,"
							   " cache, cache_ttl_s, max_response_bytes)"
							   " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
							   " RETURNING id", 10, types, values, NULL, false, 1);
	if (rc != SPI_OK_INSERT_RETURNING || SPI_processed != 1)
		elog(ERROR, "llmgw: could not queue the call: %s", SPI_result_code_string(rc));
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	PG_RETURN_INT64(id);
}
