/*-------------------------------------------------------------------------
 *
 * journal.c
 *		The journal of calls in flight.
 *
 * pg_llmgw/journal in the data directory holds one fixed-size record per
 * request slot.  A worker writes a slot's record right before the request
 * leaves (curl's pre-request callback) and clears it once the call's usage
 * rows are committed.  The write goes to the kernel's page cache, which
 * outlives any process: a crash of a backend or a worker, or an immediate
 * shutdown, both of which lose shared memory, keep every record.  It costs
 * a pwrite per attempt and no transaction, so every call is journaled, not
 * only the slow ones.  (An operating system crash loses what the kernel had
 * not yet written back; the workers flush the file once a second.)
 *
 * Each server life (shared memory created anew: a start, or a restart after
 * a crash) is told apart by llmgw_shared->life.  When shared memory is
 * created, the postmaster renames the journal of the dead life to
 * pg_llmgw/dead.<life>; worker 0 turns its records into "interrupted" usage
 * rows and removes the file.  A record whose attempt already has a usage
 * row (the call settled just before the crash) is skipped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/file_perm.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "port/pg_crc32c.h"
#include "storage/fd.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "journal.h"

#define JOURNAL_FILE LLMGW_JOURNAL_DIR "/journal"
#define JOURNAL_MAGIC 0x4c474a32	/* "LGJ2" */
#define JOURNAL_RECORD_SIZE 8192	/* the stride of the slots in the file */

/* A slot's record as stored; magic is 0 when the slot has nothing in flight */
typedef struct JournalRecord
{
	uint32		magic;
	pg_crc32c	crc;			/* of entry */
	LlmgwJournalEntry entry;
} JournalRecord;

StaticAssertDecl(sizeof(JournalRecord) <= JOURNAL_RECORD_SIZE,
				 "a journal record must fit its slot");

static int	journal_fd = -1;

/* The checksum of an entry */
static pg_crc32c
entry_crc(const LlmgwJournalEntry *entry)
{
	pg_crc32c	crc;

	INIT_CRC32C(crc);
	COMP_CRC32C(crc, entry, sizeof(*entry));
	FIN_CRC32C(crc);
	return crc;
}

/* Is a record read from disk a whole call in flight? */
static bool
record_valid(const JournalRecord *rec)
{
	return rec->magic == JOURNAL_MAGIC && EQ_CRC32C(rec->crc, entry_crc(&rec->entry));
}

/* Read the record of a slot from fd; false when there is none */
static bool
read_record(int fd, int slotno, JournalRecord *rec)
{
	ssize_t		n = pg_pread(fd, rec, sizeof(*rec), (off_t) slotno * JOURNAL_RECORD_SIZE);

	return n == (ssize_t) sizeof(*rec) && record_valid(rec);
}

/* Does the journal at path hold any call in flight? */
static bool
has_records(const char *path)
{
	int			fd = open(path, O_RDONLY | PG_BINARY, 0);
	JournalRecord *rec;
	bool		found = false;
	struct stat st;

	if (fd < 0)
		return false;
	rec = palloc(sizeof(JournalRecord));
	if (fstat(fd, &st) == 0)
	{
		for (int slot = 0; (off_t) slot * JOURNAL_RECORD_SIZE < st.st_size && !found; slot++)
			found = read_record(fd, slot, rec);
	}
	pfree(rec);
	close(fd);
	return found;
}

/*
 * Postmaster, when shared memory is created: the journal of the previous
 * life (if it holds anything) becomes pg_llmgw/dead.<life>, to be recorded
 * by worker 0; this life starts with an empty journal.
 */
void
llmgw_journal_rotate(TimestampTz life)
{
	char		dead[MAXPGPATH];

	if (MakePGDirectory(LLMGW_JOURNAL_DIR) < 0 && errno != EEXIST)
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("llmgw could not create directory \"%s\": %m", LLMGW_JOURNAL_DIR)));
		return;
	}
	if (access(JOURNAL_FILE, F_OK) != 0)
		return;
	snprintf(dead, sizeof(dead), "%s/dead.%lld", LLMGW_JOURNAL_DIR, (long long) life);
	if (has_records(JOURNAL_FILE))
	{
		if (rename(JOURNAL_FILE, dead) != 0)
			ereport(WARNING,
					(errcode_for_file_access(),
					 errmsg("llmgw could not rename \"%s\" to \"%s\": %m", JOURNAL_FILE, dead)));
		else
			ereport(LOG,
					(errmsg("llmgw found calls in flight from before the restart; they will be recorded as interrupted")));
	}
	else if (unlink(JOURNAL_FILE) != 0)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("llmgw could not remove \"%s\": %m", JOURNAL_FILE)));
}

/* Worker: open this life's journal; false (and a warning) if it cannot */
bool
llmgw_journal_open(void)
{
	if (journal_fd >= 0)
		return true;
	journal_fd = BasicOpenFilePerm(JOURNAL_FILE, O_RDWR | O_CREAT | PG_BINARY,
								   pg_file_create_mode);
	if (journal_fd < 0)
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("llmgw could not open the journal \"%s\": %m", JOURNAL_FILE)));
	return journal_fd >= 0;
}

/*
 * Worker: record a call whose request is about to be sent.  False when it
 * could not be written: the caller does not send the request.
 */
bool
llmgw_journal_begin(const LlmgwJournalEntry *entry)
{
	JournalRecord rec;

	if (!llmgw_journal_open())
		return false;
	rec.magic = JOURNAL_MAGIC;
	rec.entry = *entry;
	rec.crc = entry_crc(&rec.entry);
	if (pg_pwrite(journal_fd, &rec, sizeof(rec),
				  (off_t) entry->slotno * JOURNAL_RECORD_SIZE) != (ssize_t) sizeof(rec))
	{
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("llmgw could not write the journal \"%s\": %m", JOURNAL_FILE)));
		return false;
	}
	return true;
}

/* Worker: the call of a slot is settled (its usage rows are committed) */
void
llmgw_journal_end(int slotno)
{
	uint32		free_magic = 0;

	if (journal_fd < 0)
		return;
	if (pg_pwrite(journal_fd, &free_magic, sizeof(free_magic),
				  (off_t) slotno * JOURNAL_RECORD_SIZE) != (ssize_t) sizeof(free_magic))
		ereport(WARNING,
				(errcode_for_file_access(),
				 errmsg("llmgw could not write the journal \"%s\": %m", JOURNAL_FILE)));
}

/* Worker: flush the journal to disk (off the call path, once a second) */
void
llmgw_journal_flush(void)
{
	if (journal_fd >= 0)
		(void) pg_fdatasync(journal_fd);
}

/* The call in flight of a slot in this life, if the journal has one */
bool
llmgw_journal_read(int slotno, LlmgwJournalEntry *entry)
{
	JournalRecord *rec;
	bool		found;

	if (!llmgw_journal_open())
		return false;
	rec = palloc(sizeof(JournalRecord));
	found = read_record(journal_fd, slotno, rec) &&
		rec->entry.life == llmgw_shared->life;
	if (found)
		*entry = rec->entry;
	pfree(rec);
	return found;
}

/*
 * A backend: open this life's journal for reading (close it with
 * CloseTransientFile); -1 when there is none yet.
 */
int
llmgw_journal_open_read(void)
{
	return OpenTransientFile(JOURNAL_FILE, O_RDONLY | PG_BINARY);
}

/*
 * The call in flight of a slot in this life, as the journal open on fd has
 * it (a record a worker is writing meanwhile is left out)
 */
bool
llmgw_journal_read_from(int fd, int slotno, LlmgwJournalEntry *entry)
{
	JournalRecord *rec = palloc(sizeof(JournalRecord));
	bool		found;

	found = read_record(fd, slotno, rec) && rec->entry.life == llmgw_shared->life;
	if (found)
		*entry = rec->entry;
	pfree(rec);
	return found;
}

/* The journals of dead lives, as palloc'd paths; returns how many */
int
llmgw_journal_dead_files(char ***paths)
{
	DIR		   *dir = AllocateDir(LLMGW_JOURNAL_DIR);
	struct dirent *de;
	int			n = 0;
	int			cap = 4;

	*paths = palloc(sizeof(char *) * cap);
	while ((de = ReadDirExtended(dir, LLMGW_JOURNAL_DIR, LOG)) != NULL)
	{
		if (strncmp(de->d_name, "dead.", 5) != 0)
			continue;
		if (n == cap)
			*paths = repalloc(*paths, sizeof(char *) * (cap *= 2));
		(*paths)[n++] = psprintf("%s/%s", LLMGW_JOURNAL_DIR, de->d_name);
	}
	FreeDir(dir);
	return n;
}

/* Every call in flight a journal file holds (palloc'd); returns how many */
int
llmgw_journal_read_file(const char *path, LlmgwJournalEntry **entries)
{
	int			fd = OpenTransientFile(path, O_RDONLY | PG_BINARY);
	JournalRecord *rec;
	struct stat st;
	int			n = 0;
	int			cap = 16;

	*entries = palloc(sizeof(LlmgwJournalEntry) * cap);
	if (fd < 0)
		ereport(ERROR,
				(errcode_for_file_access(),
				 errmsg("llmgw could not open \"%s\": %m", path)));
	rec = palloc(sizeof(JournalRecord));
	if (fstat(fd, &st) == 0)
	{
		for (int slot = 0; (off_t) slot * JOURNAL_RECORD_SIZE < st.st_size; slot++)
		{
			if (!read_record(fd, slot, rec))
				continue;
			if (n == cap)
				*entries = repalloc(*entries, sizeof(LlmgwJournalEntry) * (cap *= 2));
			(*entries)[n++] = rec->entry;
		}
	}
	pfree(rec);
	CloseTransientFile(fd);
	return n;
}

PG_FUNCTION_INFO_V1(llmgw_calls_in_flight);

/*
 * llmgw.calls_in_flight_now(): the calls of this life whose requests were
 * sent and which are not settled yet, from the journal (which a worker may
 * be writing meanwhile: a record caught half-written is left out).
 */
Datum
llmgw_calls_in_flight(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			fd;
	JournalRecord *rec = palloc(sizeof(JournalRecord));

	InitMaterializedSRF(fcinfo, 0);
	fd = OpenTransientFile(JOURNAL_FILE, O_RDONLY | PG_BINARY);
	if (fd < 0)
		PG_RETURN_NULL();		/* nothing was ever sent in this life */
	for (int slot = 0; slot < llmgw_shared->nslots; slot++)
	{
		LlmgwJournalEntry *e = &rec->entry;
		Datum		values[12];
		bool		nulls[12];

		if (!read_record(fd, slot, rec) || e->life != llmgw_shared->life)
			continue;
		memset(nulls, false, sizeof(nulls));
		values[0] = UUIDPGetDatum(&e->request_id);
		values[1] = Int32GetDatum(e->attempt);
		values[2] = TimestampTzGetDatum(e->started_at);
		values[3] = CStringGetTextDatum(e->role);
		values[4] = CStringGetTextDatum(e->model);
		values[5] = CStringGetTextDatum(e->provider);
		values[6] = CStringGetTextDatum(e->upstream_model);
		values[7] = Int64GetDatum(e->key_id);
		nulls[7] = (e->key_id == 0);
		values[8] = Int64GetDatum(e->team_id);
		nulls[8] = (e->team_id == 0);
		values[9] = Int64GetDatum(e->job_id);
		nulls[9] = (e->job_id == 0);
		values[10] = Int64GetDatum(e->async_id);
		nulls[10] = (e->async_id == 0);
		values[11] = Int32GetDatum(slot);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	CloseTransientFile(fd);
	return (Datum) 0;
}
