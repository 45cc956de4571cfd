/*-------------------------------------------------------------------------
 *
 * batch_helper.c
 *		Helpers of worker 0's batch ingest.
 *
 * A provider batch's results are written a chunk per transaction
 * (batch.c, batch_ingest.c), and one process writes about one core's
 * worth of rows a second.  When a results file holds more than one chunk,
 * worker 0 starts llmgw.batch_ingest_helpers background workers for it
 * and, while it reads the file, hands each chunk to a helper that is idle
 * or writes it itself.  A helper receives a chunk through a shared memory
 * queue, writes it exactly as worker 0 would (llmgw_batch_write_chunk, in
 * a transaction of its own), answers whether it did, and waits for the
 * next, of the same file or of the next one: the helpers outlive a file
 * (a job's results come as many files, one after another) and stop when
 * worker 0 detaches, once it has had no results to write for a while.
 *
 * Nothing here is needed for correctness, and nothing here can write a
 * result twice: a chunk writes only the items still pending, under a
 * share lock of the batch's row, and the rows all chunks share (rollups,
 * ledger, the job's counts) last.  A helper that cannot start leaves its
 * chunks to worker 0; a chunk a helper did not answer for (an error, the
 * helper gone) stops the ingest as a chunk worker 0 could not write does:
 * the results are read again later, and the items written are passed
 * over.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "batch.h"
#include "batch_helper.h"
#include "llmgw.h"

#define MAX_HELPERS 8
#define CHUNK_QUEUE_SIZE (256 * 1024)	/* a chunk may be larger: it streams */
#define REPLY_QUEUE_SIZE 1024
/* a larger chunk (long answers) stays worker 0's: its copies would pass palloc's limit */
#define CHUNK_MESSAGE_MAX ((Size) 64 * 1024 * 1024)

/* The segment: a header, then each helper's two queues */
typedef struct HelperArea
{
	int			nhelpers;
} HelperArea;

/* What a helper answers for a chunk */
typedef struct HelperReply
{
	int32		written;		/* 1: the chunk is written */
	int32		skipped;		/* its lines that are not JSON objects */
} HelperReply;

/* Worker 0's side of a helper */
typedef struct Helper
{
	BackgroundWorkerHandle *handle;
	shm_mq_handle *to;			/* chunks */
	shm_mq_handle *from;		/* replies */
	bool		busy;			/* a chunk given, not yet answered */
	bool		gone;
} Helper;

struct LlmgwIngestHelpers
{
	dsm_segment *seg;
	int			n;
	Helper		h[MAX_HELPERS];
	bool		failed;			/* a chunk given was not written, or may not have been */
	int			skipped;
	int			chunks;
	StringInfoData msg;
};

static Size
area_offset(int helper, bool reply)
{
	return MAXALIGN(sizeof(HelperArea)) +
		(Size) helper * (CHUNK_QUEUE_SIZE + REPLY_QUEUE_SIZE) + (reply ? CHUNK_QUEUE_SIZE : 0);
}

static shm_mq *
queue_of(dsm_segment *seg, int helper, bool reply)
{
	return (shm_mq *) ((char *) dsm_segment_address(seg) + area_offset(helper, reply));
}

LlmgwIngestHelpers *
llmgw_ingest_helpers_start(void)
{
	int			want = Min(llmgw_batch_ingest_helpers, MAX_HELPERS);
	LlmgwIngestHelpers *hs;
	dsm_segment *seg;

	if (want <= 0)
		return NULL;
	seg = dsm_create(area_offset(want, false), DSM_CREATE_NULL_IF_MAXSEGMENTS);
	if (seg == NULL)
		return NULL;
	/* the segment lives until llmgw_ingest_helpers_end, whatever the resource owner */
	dsm_pin_mapping(seg);
	((HelperArea *) dsm_segment_address(seg))->nhelpers = want;
	hs = palloc0(sizeof(LlmgwIngestHelpers));
	hs->seg = seg;
	initStringInfo(&hs->msg);
	for (int i = 0; i < want; i++)
	{
		shm_mq	   *to = shm_mq_create(queue_of(seg, i, false), CHUNK_QUEUE_SIZE);
		shm_mq	   *from = shm_mq_create(queue_of(seg, i, true), REPLY_QUEUE_SIZE);
		BackgroundWorker w;
		Helper	   *h = &hs->h[hs->n];

		shm_mq_set_sender(to, MyProc);
		shm_mq_set_receiver(from, MyProc);
		memset(&w, 0, sizeof(w));
		w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		w.bgw_start_time = BgWorkerStart_RecoveryFinished;
		w.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(w.bgw_library_name, BGW_MAXLEN, "llmgw");
		snprintf(w.bgw_function_name, BGW_MAXLEN, "llmgw_batch_helper_main");
		snprintf(w.bgw_name, BGW_MAXLEN, "llmgw batch ingest %d", i + 1);
		snprintf(w.bgw_type, BGW_MAXLEN, "llmgw batch ingest");
		w.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(seg));
		memcpy(w.bgw_extra, &i, sizeof(i));
		w.bgw_notify_pid = MyProcPid;
		/* no room (max_worker_processes): the chunks are worker 0's */
		if (!RegisterDynamicBackgroundWorker(&w, &h->handle))
			break;
		h->to = shm_mq_attach(to, seg, h->handle);
		h->from = shm_mq_attach(from, seg, h->handle);
		hs->n++;
	}
	if (hs->n == 0)
	{
		dsm_detach(seg);
		pfree(hs->msg.data);
		pfree(hs);
		return NULL;
	}
	return hs;
}

/* Take a helper's answer; wait for it when asked to */
static void
take_reply(LlmgwIngestHelpers *hs, Helper *h, bool wait)
{
	Size		len;
	void	   *data;
	shm_mq_result res;

	if (!h->busy)
		return;
	res = shm_mq_receive(h->from, &len, &data, !wait);
	if (res == SHM_MQ_WOULD_BLOCK)
		return;
	h->busy = false;
	if (res == SHM_MQ_SUCCESS && len == sizeof(HelperReply))
	{
		HelperReply reply;

		memcpy(&reply, data, sizeof(reply));
		hs->skipped += reply.skipped;
		hs->chunks++;
		if (reply.written)
			return;
	}
	else
		h->gone = true;
	hs->failed = true;
}

bool
llmgw_ingest_helpers_give(LlmgwIngestHelpers *hs, int64 batch, Datum *lines, int n)
{
	int32		count = n;
	Size		size = sizeof(batch) + sizeof(count);

	for (int k = 0; k < n && size <= CHUNK_MESSAGE_MAX; k++)
		size += sizeof(int32) + VARSIZE_ANY_EXHDR(DatumGetPointer(lines[k]));
	if (size > CHUNK_MESSAGE_MAX)
		return false;

	for (int i = 0; i < hs->n; i++)
	{
		Helper	   *h = &hs->h[i];

		take_reply(hs, h, false);
		if (h->busy || h->gone)
			continue;
		resetStringInfo(&hs->msg);
		appendBinaryStringInfo(&hs->msg, (char *) &batch, sizeof(batch));
		appendBinaryStringInfo(&hs->msg, (char *) &count, sizeof(count));
		for (int k = 0; k < n; k++)
		{
			text	   *t = (text *) DatumGetPointer(lines[k]);
			int32		len = VARSIZE_ANY_EXHDR(t);

			appendBinaryStringInfo(&hs->msg, (char *) &len, sizeof(len));
			appendBinaryStringInfo(&hs->msg, VARDATA_ANY(t), len);
		}
		/* a helper that is not there (yet) holds worker 0 here until it attaches or fails */
		if (shm_mq_send(h->to, hs->msg.len, hs->msg.data, false, true) != SHM_MQ_SUCCESS)
		{
			/* it never had the whole chunk: worker 0 writes it */
			h->gone = true;
			continue;
		}
		h->busy = true;
		return true;
	}
	return false;
}

bool
llmgw_ingest_helpers_ok(LlmgwIngestHelpers *hs)
{
	for (int i = 0; i < hs->n; i++)
		take_reply(hs, &hs->h[i], false);
	return !hs->failed;
}

bool
llmgw_ingest_helpers_wait(LlmgwIngestHelpers *hs, int *skipped, int *chunks)
{
	bool		ok;

	for (int i = 0; i < hs->n; i++)
		take_reply(hs, &hs->h[i], true);
	*skipped += hs->skipped;
	*chunks = hs->chunks;
	ok = !hs->failed;
	hs->skipped = 0;
	hs->chunks = 0;
	hs->failed = false;
	/* the waits above may have taken a wake-up meant for worker 0's loop */
	SetLatch(MyLatch);
	return ok;
}

void
llmgw_ingest_helpers_end(LlmgwIngestHelpers *hs)
{
	int			skipped = 0;
	int			chunks;

	(void) llmgw_ingest_helpers_wait(hs, &skipped, &chunks);
	for (int i = 0; i < hs->n; i++)
	{
		/* its queue detached: the helper ends */
		shm_mq_detach(hs->h[i].to);
		shm_mq_detach(hs->h[i].from);
	}
	for (int i = 0; i < hs->n; i++)
		(void) WaitForBackgroundWorkerShutdown(hs->h[i].handle);
	dsm_detach(hs->seg);
	pfree(hs->msg.data);
	pfree(hs);
	SetLatch(MyLatch);
}

/* A chunk from worker 0, written; false when worker 0 is gone */
static bool
helper_chunk(shm_mq_handle *from_leader, shm_mq_handle *to_leader, MemoryContext cxt)
{
	Size		len;
	void	   *data;
	char	   *p;
	char	   *end;
	int64		batch;
	int32		n;
	Datum	   *lines;
	HelperReply reply = {0, 0};
	int			skipped = 0;
	MemoryContext old;

	if (shm_mq_receive(from_leader, &len, &data, false) != SHM_MQ_SUCCESS)
		return false;
	p = data;
	end = p + len;
	if (len < sizeof(batch) + sizeof(n))
		elog(ERROR, "llmgw: a chunk of batch results came truncated from worker 0");
	memcpy(&batch, p, sizeof(batch));
	p += sizeof(batch);
	memcpy(&n, p, sizeof(n));
	p += sizeof(n);
	old = MemoryContextSwitchTo(cxt);
	lines = palloc(sizeof(Datum) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		int32		l;

		if (end - p < (ptrdiff_t) sizeof(l))
			elog(ERROR, "llmgw: a chunk of batch results came truncated from worker 0");
		memcpy(&l, p, sizeof(l));
		p += sizeof(l);
		if (l < 0 || end - p < l)
			elog(ERROR, "llmgw: a chunk of batch results came truncated from worker 0");
		lines[i] = PointerGetDatum(cstring_to_text_with_len(p, l));
		p += l;
	}
	MemoryContextSwitchTo(old);
	reply.written = llmgw_batch_write_chunk(batch, lines, n, &skipped) ? 1 : 0;
	reply.skipped = skipped;
	MemoryContextReset(cxt);
	return shm_mq_send(to_leader, sizeof(reply), &reply, false, true) == SHM_MQ_SUCCESS;
}

/* Entry point of a helper: its segment's handle in arg, its number in bgw_extra */
void
llmgw_batch_helper_main(Datum arg)
{
	dsm_segment *seg;
	int			index;
	shm_mq_handle *from_leader;
	shm_mq_handle *to_leader;
	MemoryContext cxt;
	char		shard[16];

	memcpy(&index, MyBgworkerEntry->bgw_extra, sizeof(index));
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "llmgw batch ingest");
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* worker 0 gave up on the ingest already */
	dsm_pin_mapping(seg);
	if (index < 0 || index >= ((HelperArea *) dsm_segment_address(seg))->nhelpers)
		elog(ERROR, "llmgw: batch ingest helper %d has no queue", index);
	shm_mq_set_receiver(queue_of(seg, index, false), MyProc);
	shm_mq_set_sender(queue_of(seg, index, true), MyProc);
	from_leader = shm_mq_attach(queue_of(seg, index, false), seg, NULL);
	to_leader = shm_mq_attach(queue_of(seg, index, true), seg, NULL);

	BackgroundWorkerInitializeConnection(llmgw_database, NULL, 0);
	pgstat_report_appname("llmgw batch ingest");
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	/* rollup rows of its own (the workers' are 1 to llmgw.workers, SQL's 0) */
	snprintf(shard, sizeof(shard), "%d", LLMGW_MAX_WORKERS - index);
	SetConfigOption("llmgw.rollup_shard", shard, PGC_INTERNAL, PGC_S_OVERRIDE);
	cxt = AllocSetContextCreate(TopMemoryContext, "llmgw batch ingest chunk", ALLOCSET_DEFAULT_SIZES);
	pgstat_report_activity(STATE_IDLE, NULL);
	while (helper_chunk(from_leader, to_leader, cxt))
		CHECK_FOR_INTERRUPTS();
	proc_exit(0);
}
