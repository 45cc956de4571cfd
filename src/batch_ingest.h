/*-------------------------------------------------------------------------
 *
 * batch_ingest.h
 *		Write a chunk of a provider batch's results (batch_ingest.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_BATCH_INGEST_H
#define LLMGW_BATCH_INGEST_H

#include "postgres.h"

/*
 * Write a chunk of result lines (text datums) of a batch, in the caller's
 * transaction with SPI connected; lines that are not JSON objects are
 * counted in *skipped.  False, with nothing written, when llmgw's tables
 * are not as the extension made them: llmgw.batch_ingest must do it.
 */
extern bool llmgw_batch_ingest_direct(int64 batch, Datum *lines, int n, int *skipped);

#endif							/* LLMGW_BATCH_INGEST_H */
