/*
 * Audit events on the wire (struct ipc_audit in ipc.h): the children's
 * builder and the parent's strict reader.  Which child may report which
 * event is decided here, once, for both sides.
 */
#ifndef MSM_AUDIT_IPC_H
#define MSM_AUDIT_IPC_H

#include <stddef.h>
#include <stdint.h>

#include "ipc.h"

/* Longest string of an event we send; longer ones are cut. */
#define AUDIT_IPC_STRING_MAX	2048

/* An event to send: its strings in audit_ipc_fields order, recipients. */
struct audit_msg {
	uint32_t		 event;		/* enum ipc_audit_event */
	uint32_t		 flags;		/* AUDIT_F_ACK */
	uint64_t		 size;		/* commit */
	unsigned char		 digest[32];	/* commit */
	const char		*str[AUDIT_IPC_MAX_STRINGS];
	const char *const	*rcpts;		/* nrcpt pointers, or */
	const char		*packed;	/* nrcpt NUL-terminated strings */
	size_t			 nrcpt;
	uint32_t		 omitted;	/* recipients already left out */
};

/* An event as the parent received it; strings point into the record. */
struct audit_event {
	uint32_t		 type, event, flags, nrcpt, omitted;
	uint64_t		 size;
	unsigned char		 digest[32];
	const char		*str[AUDIT_IPC_MAX_STRINGS];
	const char		*rcpts;		/* packed, nrcpt strings */
};

/* "commit", or NULL for a number that is no event. */
const char	*audit_event_name(uint32_t event);
/* The record type that carries event (its sender's), or MSG_NONE. */
uint32_t	 audit_event_type(uint32_t event);
/* The JSON keys of the event's strings, in order; returns how many. */
size_t		 audit_ipc_fields(uint32_t event, const char *const **keys);

/*
 * Send m as type on fd; recipients that do not fit one record are
 * counted in omitted.  0 or -1 with errno.
 */
int	audit_ipc_send(int fd, uint32_t type, const struct audit_msg *m);
/*
 * Check a record of type from a child: an event of that sender's, its
 * exact strings, the recipients, nothing after.  0, or -1 with why.
 */
int	audit_ipc_parse(uint32_t type, const void *data, size_t len,
	    struct audit_event *ev, const char **why);

#endif
