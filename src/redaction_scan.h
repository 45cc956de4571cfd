/*-------------------------------------------------------------------------
 *
 * redaction_scan.h
 *		Scanners of the built-in redaction patterns.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LLMGW_REDACTION_SCAN_H
#define LLMGW_REDACTION_SCAN_H

/*
 * A scanner: the leftmost match starting at or after from in s[0, n), as
 * [*start, *end), the longest there; false when there is none.  Bytes
 * before from are seen (as a look-behind sees them) but never matched.
 * A match is never empty.
 */
typedef bool (*LlmgwScanner) (const char *s, int n, int from, int *start, int *end);

/* (?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9]) */
extern bool llmgw_scan_card(const char *s, int n, int from, int *start, int *end);

/* [A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,} */
extern bool llmgw_scan_email(const char *s, int n, int from, int *start, int *end);

/* lgw_[A-Za-z0-9]{16,} */
extern bool llmgw_scan_virtual_key(const char *s, int n, int from, int *start, int *end);

#endif							/* LLMGW_REDACTION_SCAN_H */
