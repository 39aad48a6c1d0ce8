/*
 * libFuzzer harness for common/clamd_reply.c, the reader of clamd's
 * answers.  Never a crash or an overread; a result is always one of the
 * four; CLEAN only for an answer that holds exactly one "...: OK"
 * record; a detail is always terminated and printable.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "clamd_reply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct clamd_reply	 r;
	char			*copy = malloc(size ? size : 1);
	int			 rc;

	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);	/* exactly size bytes: ASan sees overreads */
	rc = clamd_reply_parse(copy, size, &r);
	if (r.result < 0 || r.result >= SCAN_RESULT_COUNT)
		abort();
	if (memchr(r.detail, '\0', sizeof(r.detail)) == NULL)
		abort();
	if (rc == -1 && r.result != SCAN_TEMPFAIL)
		abort();
	if (r.result == SCAN_CLEAN && (rc != 0 || size < 5 ||
	    memcmp(copy + size - 5, ": OK", 4) != 0 ||
	    memchr(copy, '\0', size - 1) != NULL ||
	    memchr(copy, '\n', size - 1) != NULL))
		abort();
	(void)clamd_reply_pong(copy, size);
	free(copy);
	return 0;
}
