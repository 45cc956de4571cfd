/*-------------------------------------------------------------------------
 *
 * batch.h
 *		Provider batches: worker 0's state machine over llmgw.batches.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_BATCH_H
#define LLMGW_BATCH_H

extern int	llmgw_batch_max_requests;
extern int	llmgw_batch_poll_interval;
extern int	llmgw_batch_ingest_chunk;
extern int	llmgw_batch_ingest_helpers;
extern int	llmgw_batch_max_download;
extern int	llmgw_batch_max_result_line;

extern void llmgw_batch_define_settings(void);
extern void llmgw_batch_run(void);
extern long llmgw_batch_timeout(void);
extern bool llmgw_batch_write_chunk(int64 batch, Datum *lines, int n, int *skipped);

#endif							/* LLMGW_BATCH_H */
