/*
 * The control socket's request reader, kept apart from the socket code so
 * that it is fuzzed on its own (tests/fuzz/fuzz_control.c).
 */
#include <string.h>

#include "control_req.h"

enum control_req
control_request(const void *data, size_t len)
{
	const char	*p = data, *nl;
	size_t		 n;

	if (data == NULL)
		return len == 0 ? CONTROL_REQ_MORE : CONTROL_REQ_BAD;
	nl = memchr(p, '\n', len < CONTROL_REQ_MAX ? len : CONTROL_REQ_MAX);
	if (nl == NULL)
		return len < CONTROL_REQ_MAX ? CONTROL_REQ_MORE :
		    CONTROL_REQ_BAD;
	if ((size_t)(nl - p) + 1 != len)
		return CONTROL_REQ_BAD;		/* bytes after the line */
	n = (size_t)(nl - p);
	if (n > 0 && p[n - 1] == '\r')
		n--;
	if (n == 6 && memcmp(p, "status", 6) == 0)
		return CONTROL_REQ_STATUS;
	if (n == 11 && memcmp(p, "status json", 11) == 0)
		return CONTROL_REQ_STATUS_JSON;
	return CONTROL_REQ_BAD;
}
