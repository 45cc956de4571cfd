/*-------------------------------------------------------------------------
 *
 * direct.h
 *		Rows written straight into the partitions of one of llmgw's tables,
 *		as COPY writes them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_DIRECT_H
#define LLMGW_DIRECT_H

#include "postgres.h"

/* A table of schema llmgw, partitioned by range on one of the columns given */
typedef struct LlmgwDirectTable
{
	const char *name;
	int			ncolumns;
	const char *const *columns; /* the columns given, by name */
	const Oid  *types;			/* and their types */
	int			route;			/* the partition key (an index into columns) */
	/* a statement trigger on INSERT of the table that the caller does itself (NULL: none) */
	const char *own_trigger;
} LlmgwDirectTable;

/*
 * Insert n rows (values[column][row], nulls[column][row]); the other
 * columns get their defaults.  False, with nothing written, when the
 * table is not as the extension made it.
 */
extern bool llmgw_direct_insert(const LlmgwDirectTable *t, int n, Datum **values, bool **nulls);

#endif							/* LLMGW_DIRECT_H */
