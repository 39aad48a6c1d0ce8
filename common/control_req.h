/*
 * The control socket's request (privsep/control.c, msmilter -s): one line,
 * "status" or "status json", at most CONTROL_REQ_MAX bytes with its
 * newline.  Nothing else is accepted.
 */
#ifndef MSM_CONTROL_REQ_H
#define MSM_CONTROL_REQ_H

#include <stddef.h>

#define CONTROL_REQ_MAX		64

enum control_req {
	CONTROL_REQ_BAD = -1,		/* refuse and close */
	CONTROL_REQ_MORE = 0,		/* no newline yet, under the cap */
	CONTROL_REQ_STATUS = 1,
	CONTROL_REQ_STATUS_JSON = 2,
};

/* What the first len bytes received so far ask for. */
enum control_req control_request(const void *data, size_t len);

#endif
