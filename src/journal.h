/*-------------------------------------------------------------------------
 *
 * journal.h
 *		The journal of calls in flight: a record per request slot, written
 *		to a file in the data directory right before a request is sent, so
 *		that a crash or immediate shutdown, which loses shared memory, still
 *		finds every call it interrupted.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_JOURNAL_H
#define LLMGW_JOURNAL_H

#include "datatype/timestamp.h"
#include "utils/uuid.h"

#include "llmgw.h"

#define LLMGW_JOURNAL_DIR "pg_llmgw"

/* One call in flight, as the journal keeps it */
typedef struct LlmgwJournalEntry
{
	TimestampTz life;			/* the server life that made the call */
	int			slotno;
	pg_uuid_t	request_id;
	int32		attempt;
	int32		kind;			/* LLMGW_KIND_* */
	TimestampTz started_at;
	int64		key_id;			/* 0: none (likewise below) */
	int64		team_id;
	int64		deployment_id;
	int64		job_id;
	int64		async_id;
	int64		input_estimate; /* tokens; -1: unknown */
	int64		output_estimate;
	char		role[NAMEDATALEN];
	char		model[256];
	char		provider[64];
	char		upstream_model[256];
	char		route_kind[32];
	char		price_model[256];
	char		tags[LLMGW_MAX_TAGS + 1];
} LlmgwJournalEntry;

extern void llmgw_journal_rotate(TimestampTz life);
extern bool llmgw_journal_open(void);
extern bool llmgw_journal_begin(const LlmgwJournalEntry *entry);
extern void llmgw_journal_end(int slotno);
extern void llmgw_journal_flush(void);
extern bool llmgw_journal_read(int slotno, LlmgwJournalEntry *entry);
extern int	llmgw_journal_open_read(void);
extern bool llmgw_journal_read_from(int fd, int slotno, LlmgwJournalEntry *entry);
extern int	llmgw_journal_dead_files(char ***paths);
extern int	llmgw_journal_read_file(const char *path, LlmgwJournalEntry **entries);

#endif							/* LLMGW_JOURNAL_H */
