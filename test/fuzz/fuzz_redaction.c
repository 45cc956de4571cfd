/*
 * libFuzzer target: the scanners of the built-in redaction patterns
 * (src/redaction_scan.c), which read provider answers before the request
 * log stores them.  Every match must lie inside the body, start at or
 * after where the search began and not be empty, so that the replacement
 * loop of src/redaction.c always moves forward; the first byte of the
 * input also picks a search start inside the body, as a replacement loop
 * resumes mid-body.  What they match is checked against regexp_replace in
 * test/sql/request_log.sql.
 */
#include "postgres.h"

#include <stdint.h>
#include <stdlib.h>

#include "redaction_scan.h"

static void
scan_all(LlmgwScanner scan, const char *s, int n, int from)
{
	int			start,
				end;

	while (from < n && scan(s, n, from, &start, &end))
	{
		if (start < from || end <= start || end > n)
			abort();
		from = end;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const LlmgwScanner scanners[] = {llmgw_scan_card, llmgw_scan_email,
	llmgw_scan_virtual_key};
	char	   *s;
	int			n,
				from;

	if (size < 1 || size > 1 << 20)
		return 0;
	n = (int) size - 1;
	/* an exact-size copy: a read past the body is a read past the buffer */
	s = malloc(n > 0 ? n : 1);
	memcpy(s, data + 1, n);
	from = n > 0 ? data[0] % (n + 1) : 0;
	for (int i = 0; i < (int) lengthof(scanners); i++)
	{
		scan_all(scanners[i], s, n, 0);
		scan_all(scanners[i], s, n, from);
	}
	free(s);
	return 0;
}
