/*-------------------------------------------------------------------------
 *
 * calls_now.c
 *		llmgw.call_slots(), behind the view llmgw.calls_now: each call that
 *		holds a request slot now, queued or running, with the pid of the
 *		backend waiting for it, so that an operator can join
 *		pg_stat_activity to llmgw.
 *
 * A slot keeps who submitted its call (LlmgwSlotCaller, copied in at
 * submission under the queue's mutex).  Once a worker has sent an attempt,
 * the journal of calls in flight has the rest: attempt, deployment, key
 * and team.  A reader copies a few slots at a time under the mutex and
 * reads the journal after letting go of it.
 *
 * Rows are filtered here, not in the view: a role that is not a member of
 * llmgw_admin or llmgw_finance sees only the calls it made itself (its
 * asynchronous calls included).  So no predicate of the caller's query,
 * however cheap or leaky, is ever shown a row of another role.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "calls_now.h"
#include "journal.h"
#include "llmgw.h"
#include "queue.h"

/* Slots copied per hold of the queue's mutex */
#define SLOTS_PER_HOLD 64

#define CALL_SLOTS_COLS 19

/* A slot as copied under the mutex */
typedef struct SlotCopy
{
	int			slotno;
	LlmgwSlotState state;
	bool		cancel_requested;
	pid_t		worker_pid;		/* 0: no worker has it yet */
	LlmgwSlotCaller who;
} SlotCopy;

/* Copy at most size - 1 bytes of a string, cut at a character boundary */
static void
copy_clipped(char *dst, size_t size, const char *src, size_t len)
{
	if (len >= size)
		len = pg_mbcliplen(src, len, size - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

/*
 * What a slot will show of the call of request, submitted now by a caller
 * of that kind (LLMGW_CALLER_*): the submitting process is its caller only
 * for a call of SQL; an asynchronous call and a call of the front door have
 * a worker for caller, which calls_now shows as the worker running it.
 */
void
llmgw_slot_caller(dsa_pointer request, char kind, LlmgwSlotCaller *who)
{
	LlmgwRequest *req = dsa_get_address(llmgw_dsa(), request);

	memset(who, 0, sizeof(*who));
	who->kind = kind;
	who->pid = kind == LLMGW_CALLER_SQL ? MyProcPid : 0;
	who->submitted_at = GetCurrentTimestamp();
	memcpy(who->request_id, req->request_id, sizeof(who->request_id));
	who->job_id = req->job_id;
	who->async_id = req->async_id;
	copy_clipped(who->role, sizeof(who->role), LLMGW_REQUEST_ROLE(req), req->role_len);
	copy_clipped(who->model, sizeof(who->model), LLMGW_REQUEST_MODEL(req), req->model_len);
}

/* May the current role see every call (admin, finance, superuser)? */
static bool
sees_every_call(void)
{
	Oid			admin = get_role_oid("llmgw_admin", true);
	Oid			finance = get_role_oid("llmgw_finance", true);

	return (OidIsValid(admin) && has_privs_of_role(GetUserId(), admin)) ||
		(OidIsValid(finance) && has_privs_of_role(GetUserId(), finance));
}

/* The word for a caller kind */
static const char *
caller_name(char kind)
{
	switch (kind)
	{
		case LLMGW_CALLER_SQL:
			return "sql";
		case LLMGW_CALLER_ASYNC:
			return "async";
		default:
			return "http";
	}
}

/* Text of a string, NULL when empty */
static Datum
text_or_null(const char *s, bool *isnull)
{
	*isnull = (s[0] == '\0');
	return *isnull ? (Datum) 0 : CStringGetTextDatum(s);
}

/* A bigint that is 0 for "none", NULL then */
static Datum
id_or_null(int64 id, bool *isnull)
{
	*isnull = (id == 0);
	return Int64GetDatum(id);
}

/* Emit one row: the slot's copy, and its journal record when it has one */
static void
emit(ReturnSetInfo *rsinfo, const SlotCopy *c, const LlmgwJournalEntry *e, TimestampTz now)
{
	Datum		values[CALL_SLOTS_COLS];
	bool		nulls[CALL_SLOTS_COLS];
	pg_uuid_t  *uuid = palloc(sizeof(pg_uuid_t));
	Interval   *age = palloc0(sizeof(Interval));

	memset(nulls, true, sizeof(nulls));
	memcpy(uuid->data, c->who.request_id, UUID_LEN);
	age->time = Max(now - c->who.submitted_at, 0);

	values[0] = UUIDPGetDatum(uuid);
	nulls[0] = false;
	values[1] = CStringGetTextDatum(c->state == LLMGW_SLOT_QUEUED && !c->cancel_requested ? "queued" :
									c->cancel_requested ? "cancelling" : "running");
	nulls[1] = false;
	values[2] = CStringGetTextDatum(caller_name(c->who.kind));
	nulls[2] = false;
	values[3] = Int32GetDatum(c->who.pid);
	nulls[3] = (c->who.pid == 0);
	values[4] = Int32GetDatum((int32) c->worker_pid);
	nulls[4] = (c->worker_pid == 0);
	values[5] = text_or_null(c->who.role, &nulls[5]);
	/* the journal keeps a longer model alias than the slot */
	values[6] = text_or_null(e ? e->model : c->who.model, &nulls[6]);
	values[7] = TimestampTzGetDatum(c->who.submitted_at);
	nulls[7] = false;
	values[8] = IntervalPGetDatum(age);
	nulls[8] = false;
	if (e)
	{
		values[9] = Int32GetDatum(e->attempt);
		nulls[9] = false;
		values[10] = TimestampTzGetDatum(e->started_at);
		nulls[10] = false;
		values[11] = id_or_null(e->deployment_id, &nulls[11]);
		values[12] = text_or_null(e->provider, &nulls[12]);
		values[13] = text_or_null(e->upstream_model, &nulls[13]);
		values[14] = id_or_null(e->key_id, &nulls[14]);
		values[15] = id_or_null(e->team_id, &nulls[15]);
	}
	values[16] = id_or_null(c->who.job_id, &nulls[16]);
	values[17] = id_or_null(c->who.async_id, &nulls[17]);
	values[18] = Int32GetDatum(c->slotno);
	nulls[18] = false;
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

PG_FUNCTION_INFO_V1(llmgw_call_slots);

/*
 * llmgw.call_slots(): every call holding a request slot now (queued,
 * running, or being cancelled), those of the current role only unless it is
 * a member of llmgw_admin or llmgw_finance.
 */
Datum
llmgw_call_slots(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	SlotCopy   *copies = palloc(sizeof(SlotCopy) * SLOTS_PER_HOLD);
	LlmgwJournalEntry *entry = palloc(sizeof(LlmgwJournalEntry));
	bool		all = sees_every_call();
	char	   *me = GetUserNameFromId(GetUserId(), false);
	int			nslots = llmgw_shared->nslots;
	int			fd;

	InitMaterializedSRF(fcinfo, 0);
	fd = llmgw_journal_open_read();
	for (int first = 0; first < nslots; first += SLOTS_PER_HOLD)
	{
		int			last = Min(first + SLOTS_PER_HOLD, nslots);
		int			n = 0;
		TimestampTz now;

		SpinLockAcquire(&llmgw_shared->mutex);
		for (int i = first; i < last; i++)
		{
			LlmgwSlot  *slot = &llmgw_slots[i];

			if (slot->state != LLMGW_SLOT_QUEUED && slot->state != LLMGW_SLOT_RUNNING)
				continue;
			/* a call whose caller left before any worker took it: never run */
			if (slot->state == LLMGW_SLOT_QUEUED && slot->abandoned && slot->cancel_requested)
				continue;
			copies[n].slotno = i;
			copies[n].state = slot->state;
			copies[n].cancel_requested = slot->cancel_requested;
			copies[n].worker_pid = slot->state == LLMGW_SLOT_RUNNING && slot->worker >= 0 ?
				llmgw_shared->workers[slot->worker].pid : 0;
			copies[n].who = slot->who;
			n++;
		}
		SpinLockRelease(&llmgw_shared->mutex);
		now = GetCurrentTimestamp();

		for (int i = 0; i < n; i++)
		{
			const SlotCopy *c = &copies[i];
			bool		journaled;

			if (!all && strcmp(c->who.role, me) != 0)
				continue;
			/* the attempt a worker sent, if the record is this call's */
			journaled = c->state == LLMGW_SLOT_RUNNING && fd >= 0 &&
				llmgw_journal_read_from(fd, c->slotno, entry) &&
				memcmp(entry->request_id.data, c->who.request_id, UUID_LEN) == 0;
			emit(rsinfo, c, journaled ? entry : NULL, now);
		}
	}
	if (fd >= 0)
		CloseTransientFile(fd);
	return (Datum) 0;
}
