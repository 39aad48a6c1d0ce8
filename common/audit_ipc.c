/*
 * Audit events between the children and the parent (see audit_ipc.h).
 * The parent's reader trusts nothing: a child may only name its own
 * events, and every string must be there, terminated, and followed by
 * exactly the recipients it announced.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit_ipc.h"

static const char *const f_loopback[] = { "client_addr" };
static const char *const f_reject[] = { "client_addr", "client_name", "helo",
    "sender", "rule" };
static const char *const f_tempfail[] = { "queue_id", "reason" };
static const char *const f_commit[] = { "queue_id", "client_addr",
    "client_name", "helo", "sender" };
static const char *const f_scan[] = { "queue_id", "client_addr",
    "client_name", "helo", "sender", "result", "signature" };
static const char *const f_relay[] = { "queue_id", "method", "reply",
    "requeued_as" };

#define FIELDS(a)	a, sizeof(a) / sizeof(a[0])

static const struct {
	const char		*name;
	uint32_t		 type;		/* the sender's record type */
	const char *const	*keys;
	size_t			 nkeys;
	int			 rcpts;		/* carries recipients */
} events[AUDIT_EV_COUNT] = {
	[AUDIT_EV_ACCEPT_LOOPBACK] = { "accept_loopback", MSG_CAPTURE_AUDIT,
	    FIELDS(f_loopback), 0 },
	[AUDIT_EV_REJECT] = { "reject", MSG_CAPTURE_AUDIT, FIELDS(f_reject),
	    1 },
	[AUDIT_EV_TEMPFAIL] = { "tempfail", MSG_CAPTURE_AUDIT,
	    FIELDS(f_tempfail), 0 },
	[AUDIT_EV_COMMIT] = { "commit", MSG_SPOOLER_AUDIT, FIELDS(f_commit),
	    1 },
	[AUDIT_EV_DELIVERED] = { "delivered", MSG_RELAY_AUDIT,
	    FIELDS(f_relay), 1 },
	[AUDIT_EV_DEFERRED] = { "deferred", MSG_RELAY_AUDIT, FIELDS(f_relay),
	    1 },
	[AUDIT_EV_REQUEUED] = { "requeued", MSG_RELAY_AUDIT, FIELDS(f_relay),
	    1 },
	[AUDIT_EV_QUARANTINED] = { "quarantined", MSG_RELAY_AUDIT,
	    FIELDS(f_relay), 1 },
	[AUDIT_EV_SCAN] = { "scan", MSG_SPOOLER_AUDIT, FIELDS(f_scan), 1 },
};

static int
known(uint32_t event)
{
	return event < AUDIT_EV_COUNT && events[event].name != NULL;
}

const char *
audit_event_name(uint32_t event)
{
	return known(event) ? events[event].name : NULL;
}

uint32_t
audit_event_type(uint32_t event)
{
	return known(event) ? events[event].type : MSG_NONE;
}

size_t
audit_ipc_fields(uint32_t event, const char *const **keys)
{
	if (!known(event)) {
		*keys = NULL;
		return 0;
	}
	*keys = events[event].keys;
	return events[event].nkeys;
}

/* Append s (cut at AUDIT_IPC_STRING_MAX) and its NUL; -1 when full. */
static int
put(char *buf, size_t *used, const char *s)
{
	size_t n = s != NULL ? strnlen(s, AUDIT_IPC_STRING_MAX) : 0;

	if (*used + n + 1 > IPC_MAX_PAYLOAD)
		return -1;
	if (n > 0)
		memcpy(buf + *used, s, n);
	buf[*used + n] = '\0';
	*used += n + 1;
	return 0;
}

/* The recipients that fit; the rest are counted in h->omitted. */
static void
put_rcpts(char *buf, size_t *used, const struct audit_msg *m,
    struct ipc_audit *h)
{
	const char	*packed = m->packed;
	int		 full = 0;

	for (size_t i = 0; i < m->nrcpt; i++) {
		const char *r = m->rcpts != NULL ? m->rcpts[i] : packed;

		if (m->rcpts == NULL)
			packed += strlen(packed) + 1;
		/* In order: once one does not fit, none after it does. */
		if (!full && put(buf, used, r) == 0)
			h->nrcpt++;
		else {
			full = 1;
			h->omitted++;
		}
	}
}

int
audit_ipc_send(int fd, uint32_t type, const struct audit_msg *m)
{
	struct ipc_audit	 h;
	char			*buf;
	size_t			 used = sizeof(h), nkeys;
	const char *const	*keys;
	int			 rc = -1;

	if ((nkeys = audit_ipc_fields(m->event, &keys)) == 0 ||
	    (buf = malloc(IPC_MAX_PAYLOAD)) == NULL) {
		errno = nkeys == 0 ? EINVAL : ENOMEM;
		return -1;
	}
	memset(&h, 0, sizeof(h));
	h.event = m->event;
	h.flags = m->flags;
	h.size = m->size;
	h.omitted = m->omitted;
	memcpy(h.digest, m->digest, sizeof(h.digest));
	for (size_t i = 0; i < nkeys; i++)
		if (put(buf, &used, m->str[i]) == -1)
			goto out;
	if (events[m->event].rcpts)
		put_rcpts(buf, &used, m, &h);
	memcpy(buf, &h, sizeof(h));
	rc = ipc_send(fd, type, buf, used, -1);
out:
	free(buf);
	return rc;
}

/* The next NUL-terminated string at *p; NULL when none is left. */
static const char *
take(const char **p, const char *end)
{
	const char *s = *p, *nul;

	if (s >= end || (nul = memchr(s, '\0', (size_t)(end - s))) == NULL)
		return NULL;
	*p = nul + 1;
	return s;
}

static int
refuse(const char **why, const char *reason)
{
	*why = reason;
	return -1;
}

int
audit_ipc_parse(uint32_t type, const void *data, size_t len,
    struct audit_event *ev, const char **why)
{
	struct ipc_audit	 h;
	const char		*p = (const char *)data + sizeof(h);
	const char		*end = (const char *)data + len;
	const char *const	*keys;
	size_t			 nkeys;

	if (len < sizeof(h))
		return refuse(why, "shorter than its header");
	memcpy(&h, data, sizeof(h));
	if (audit_event_type(h.event) == MSG_NONE)
		return refuse(why, "no such event");
	if (audit_event_type(h.event) != type)
		return refuse(why, "an event this child may not report");
	/* The spooler's events, about a file it holds, carry both. */
	if ((h.flags & ~AUDIT_F_ACK) != 0 ||
	    ((h.flags & AUDIT_F_ACK) && h.event != AUDIT_EV_COMMIT &&
	    h.event != AUDIT_EV_SCAN))
		return refuse(why, "unknown flags");
	if (h.event != AUDIT_EV_COMMIT && h.event != AUDIT_EV_SCAN &&
	    (h.size != 0 ||
	    memcmp(h.digest, (unsigned char[32]){ 0 }, 32) != 0))
		return refuse(why, "size or digest on an event without them");
	if (!events[h.event].rcpts && (h.nrcpt != 0 || h.omitted != 0))
		return refuse(why, "recipients on an event without them");
	memset(ev, 0, sizeof(*ev));
	nkeys = audit_ipc_fields(h.event, &keys);
	for (size_t i = 0; i < nkeys; i++)
		if ((ev->str[i] = take(&p, end)) == NULL)
			return refuse(why, "a string is missing");
	ev->rcpts = p;
	for (uint32_t i = 0; i < h.nrcpt; i++)
		if (take(&p, end) == NULL)
			return refuse(why, "fewer recipients than announced");
	if (p != end)
		return refuse(why, "bytes after the last recipient");
	ev->type = type;
	ev->event = h.event;
	ev->flags = h.flags;
	ev->nrcpt = h.nrcpt;
	ev->omitted = h.omitted;
	ev->size = h.size;
	memcpy(ev->digest, h.digest, sizeof(ev->digest));
	return 0;
}
