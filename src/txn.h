/*-------------------------------------------------------------------------
 *
 * txn.h
 *		A worker's short transactions: run a piece of work with SPI in a
 *		transaction of its own, and the SPI helpers that work shares.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_TXN_H
#define LLMGW_TXN_H

#include "executor/spi.h"

typedef void (*LlmgwTxnWork) (void *arg);

extern bool llmgw_in_transaction(const char *activity, LlmgwTxnWork work, void *arg);
extern bool llmgw_in_subtransaction(LlmgwTxnWork work, void *arg, char **message,
									int *sqlstate);
extern SPIPlanPtr llmgw_spi_prepare(const char *sql, int nargs, Oid *types);
extern Datum llmgw_text_or_null(const char *s, char *nulls, int i);
extern Datum llmgw_bytea_datum(const uint8 *bytes, size_t len);
extern Datum llmgw_array_datum(Datum *values, bool *nulls, int n, Oid type);

#endif							/* LLMGW_TXN_H */
