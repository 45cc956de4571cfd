/*-------------------------------------------------------------------------
 *
 * batch_helper.h
 *		Helpers of worker 0's batch ingest: background workers started for
 *		the ingest of one results file, each writing the chunks worker 0
 *		hands it, in transactions of their own, while worker 0 writes
 *		others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_BATCH_HELPER_H
#define LLMGW_BATCH_HELPER_H

#include "postgres.h"

typedef struct LlmgwIngestHelpers LlmgwIngestHelpers;

/* Start up to llmgw.batch_ingest_helpers helpers; NULL when none could start */
extern LlmgwIngestHelpers *llmgw_ingest_helpers_start(void);

/*
 * Hand a chunk of result lines (text) of a batch to an idle helper: false
 * when every helper is busy or gone (the caller writes it)
 */
extern bool llmgw_ingest_helpers_give(LlmgwIngestHelpers *h, int64 batch, Datum *lines, int n);

/* False once a chunk given to a helper was not written (or may not have been) */
extern bool llmgw_ingest_helpers_ok(LlmgwIngestHelpers *h);

/*
 * Wait for the chunks given (a file's end): whether every chunk given
 * since the last wait was written; the lines they passed over (not JSON
 * objects) added to *skipped, the chunks they wrote in *chunks.  The
 * helpers stay, idle, for the next file.
 */
extern bool llmgw_ingest_helpers_wait(LlmgwIngestHelpers *h, int *skipped, int *chunks);

/* Wait for the chunks given and stop the helpers (what they wrote is not told) */
extern void llmgw_ingest_helpers_end(LlmgwIngestHelpers *h);

extern PGDLLEXPORT void llmgw_batch_helper_main(Datum arg);

#endif							/* LLMGW_BATCH_HELPER_H */
