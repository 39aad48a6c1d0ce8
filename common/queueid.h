/*
 * Queue ids in Postfix's short and long formats (MSMail Queue Type), used
 * when Postfix did not send {i} or a name is already taken.  Also the check
 * every id must pass before it becomes a file name.
 */
#ifndef MSM_QUEUEID_H
#define MSM_QUEUEID_H

#include <stddef.h>
#include <stdint.h>

/* Format an id from explicit parts (tests use this for golden values). */
int	queueid_format(int type, uint64_t sec, uint32_t usec, uint32_t unique,
	    char *buf, size_t len);
/* A fresh id: the current time plus a random part from libsodium. */
int	queueid_new(int type, char *buf, size_t len);
/* 1 when s is 1..QUEUEID_MAX-1 letters and digits, nothing else. */
int	queueid_valid(const char *s);

#endif
