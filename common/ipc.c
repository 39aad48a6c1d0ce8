/*
 * Framing for the SOCK_SEQPACKET channels (see ipc.h).  The receive side is
 * the parser of everything a possibly compromised peer sends us.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "ipc.h"

/* What may ride on a type: payload bounds, and whether a descriptor must. */
struct type_rule {
	const char	*name;
	uint32_t	 min, max;	/* payload bytes */
	int		 fd;		/* 1: exactly one descriptor, 0: none */
};

#define EMPTY		0, 0
#define EXACTLY(t)	sizeof(t), sizeof(t)
#define AT_LEAST(n)	(n), IPC_MAX_PAYLOAD

static const struct type_rule rules[MSG_TYPE_COUNT] = {
	[MSG_PARENT_SETTINGS] = { "PARENT_SETTINGS",
	    AT_LEAST(sizeof(struct ipc_settings_hdr)), 0 },
	[MSG_PARENT_STOP] = { "PARENT_STOP", EMPTY, 0 },
	[MSG_PARENT_SPOOLER_CHANNEL] = { "PARENT_SPOOLER_CHANNEL", EMPTY, 1 },
	[MSG_PARENT_CAPTURE_CHANNEL] = { "PARENT_CAPTURE_CHANNEL", EMPTY, 1 },
	[MSG_PARENT_RELAY_CHANNEL] = { "PARENT_RELAY_CHANNEL", EMPTY, 1 },
	[MSG_PARENT_REQUEUE_CHANNEL] = { "PARENT_REQUEUE_CHANNEL", EMPTY, 1 },
	[MSG_PARENT_RULES] = { "PARENT_RULES",
	    sizeof(struct ipc_rules), sizeof(struct ipc_rules) +
	    IPC_RULES_CHUNK, 0 },
	[MSG_CHILD_READY] = { "CHILD_READY", EMPTY, 0 },
	[MSG_CHILD_LOG] = { "CHILD_LOG",
	    AT_LEAST(sizeof(struct ipc_log) + 1), 0 },
	[MSG_CAPTURE_SESSION] = { "CAPTURE_SESSION", EMPTY, 1 },
	[MSG_CAPTURE_BEGIN] = { "CAPTURE_BEGIN",
	    AT_LEAST(sizeof(struct ipc_begin)), 0 },
	[MSG_CAPTURE_DATA] = { "CAPTURE_DATA", AT_LEAST(1), 0 },
	[MSG_CAPTURE_COMMIT] = { "CAPTURE_COMMIT", EMPTY, 0 },
	[MSG_CAPTURE_ABORT] = { "CAPTURE_ABORT", EMPTY, 0 },
	[MSG_RELAY_REQUEUE] = { "RELAY_REQUEUE",
	    AT_LEAST(sizeof(struct ipc_requeue)), 1 },
	[MSG_SPOOLER_BEGUN] = { "SPOOLER_BEGUN", EMPTY, 0 },
	[MSG_SPOOLER_COMMITTED] = { "SPOOLER_COMMITTED",
	    EXACTLY(struct ipc_committed), 0 },
	[MSG_SPOOLER_FAILED] = { "SPOOLER_FAILED",
	    EXACTLY(struct ipc_failed), 0 },
	[MSG_SPOOLER_REQUEUED] = { "SPOOLER_REQUEUED",
	    EXACTLY(struct ipc_committed), 0 },
	[MSG_CAPTURE_AUDIT] = { "CAPTURE_AUDIT",
	    AT_LEAST(sizeof(struct ipc_audit)), 0 },
	[MSG_SPOOLER_AUDIT] = { "SPOOLER_AUDIT",
	    AT_LEAST(sizeof(struct ipc_audit)), 0 },
	[MSG_RELAY_AUDIT] = { "RELAY_AUDIT",
	    AT_LEAST(sizeof(struct ipc_audit)), 0 },
	[MSG_PARENT_AUDIT_SYNCED] = { "PARENT_AUDIT_SYNCED", EMPTY, 0 },
	[MSG_CHILD_CONFINED] = { "CHILD_CONFINED",
	    EXACTLY(struct ipc_confined), 0 },
	[MSG_CAPTURE_COMMIT_TIME] = { "CAPTURE_COMMIT_TIME",
	    EXACTLY(struct ipc_commit_time), 0 },
	[MSG_RELAY_STATUS] = { "RELAY_STATUS",
	    EXACTLY(struct ipc_relay_status), 0 },
	[MSG_SPOOLER_VERDICT] = { "SPOOLER_VERDICT",
	    EXACTLY(struct ipc_verdict), 0 },
};

/* Known type, payload within its bounds, a descriptor exactly where due. */
static int
record_ok(const struct ipc_hdr *h, int fd)
{
	const struct type_rule *r;

	if (h->type >= MSG_TYPE_COUNT || rules[h->type].name == NULL)
		return 0;
	r = &rules[h->type];
	return h->len >= r->min && h->len <= r->max && (fd >= 0) == r->fd;
}

const char *
ipc_type_name(uint32_t type)
{
	if (type < MSG_TYPE_COUNT && rules[type].name != NULL)
		return rules[type].name;
	return "UNKNOWN";
}

int
ipc_pair(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv);
}

void
ipc_attach_fd(struct msghdr *msg, union ipc_fdroom *room, int fd)
{
	struct cmsghdr *cm;

	memset(room, 0, sizeof(*room));
	msg->msg_control = room->buf;
	msg->msg_controllen = sizeof(room->buf);
	cm = CMSG_FIRSTHDR(msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
}

static int
send_record(int sock, uint32_t type, const void *p1, size_t len1,
    const void *p2, size_t len2, int fd, int flags)
{
	struct ipc_hdr	 hdr;
	struct iovec	 iov[3];
	struct msghdr	 msg;
	union ipc_fdroom cmsgbuf;
	ssize_t		 n;

	if (len1 + len2 > IPC_MAX_PAYLOAD) {
		errno = EMSGSIZE;
		return -1;
	}
	hdr.type = type;
	hdr.len = (uint32_t)(len1 + len2);
	iov[0].iov_base = &hdr;
	iov[0].iov_len = sizeof(hdr);
	iov[1].iov_base = (void *)p1;
	iov[1].iov_len = len1;
	iov[2].iov_base = (void *)p2;
	iov[2].iov_len = len2;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 3;
	if (fd >= 0)
		ipc_attach_fd(&msg, &cmsgbuf, fd);
	do {
		n = sendmsg(sock, &msg, MSG_NOSIGNAL | flags);
	} while (n == -1 && errno == EINTR);
	if (n == -1)
		return -1;
	/* SEQPACKET sends whole records or nothing. */
	if ((size_t)n != sizeof(hdr) + len1 + len2) {
		errno = EIO;
		return -1;
	}
	return 0;
}

int
ipc_sendv2(int sock, uint32_t type, const void *p1, size_t len1,
    const void *p2, size_t len2, int fd)
{
	return send_record(sock, type, p1, len1, p2, len2, fd, 0);
}

int
ipc_send(int sock, uint32_t type, const void *p, size_t len, int fd)
{
	return send_record(sock, type, p, len, NULL, 0, fd, 0);
}

int
ipc_send_nowait(int sock, uint32_t type, const void *p, size_t len)
{
	return send_record(sock, type, p, len, NULL, 0, -1, MSG_DONTWAIT);
}

/*
 * Collect the passed descriptors: all of them are closed unless there was
 * exactly one, so a peer cannot fill our descriptor table.  Returns the
 * one descriptor, -1 when none, -2 when the peer sent more than one.
 */
static int
take_fd(struct msghdr *msg)
{
	struct cmsghdr	*cmsg;
	int		 fd = -1, count = 0;

	for (cmsg = CMSG_FIRSTHDR(msg); cmsg != NULL;
	    cmsg = CMSG_NXTHDR(msg, cmsg)) {
		size_t n;

		if (cmsg->cmsg_level != SOL_SOCKET ||
		    cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int got;

			memcpy(&got, CMSG_DATA(cmsg) + i * sizeof(int),
			    sizeof(int));
			if (count++ == 0)
				fd = got;
			else
				close(got);
		}
	}
	if (count > 1) {
		close(fd);
		return -2;
	}
	return fd;
}

int
ipc_recv(int sock, struct ipc_msg *m)
{
	struct iovec	 iov[2];
	struct msghdr	 msg;
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(4 * sizeof(int))];
	} cmsgbuf;
	ssize_t		 n;
	int		 fd;

	m->fd = -1;
	iov[0].iov_base = &m->hdr;
	iov[0].iov_len = sizeof(m->hdr);
	iov[1].iov_base = m->data;
	iov[1].iov_len = m->cap;
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = iov;
	msg.msg_iovlen = 2;
	msg.msg_control = cmsgbuf.buf;
	msg.msg_controllen = sizeof(cmsgbuf.buf);

	do {
		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
	} while (n == -1 && errno == EINTR);
	if (n < 0)
		return -1;
	fd = take_fd(&msg);
	if (n == 0 && msg.msg_controllen == 0)
		return 0;		/* end of file */
	m->fd = fd;

	if (fd == -2 || n == 0 || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) ||
	    (size_t)n < sizeof(m->hdr) ||
	    (size_t)n - sizeof(m->hdr) != m->hdr.len ||
	    !record_ok(&m->hdr, m->fd)) {
		if (m->fd >= 0)
			close(m->fd);
		m->fd = -1;
		errno = EPROTO;
		return -1;
	}
	return 1;
}

int
ipc_send_settings(int sock, const void *settings, size_t len)
{
	struct ipc_settings_hdr h = { IPC_MAGIC, IPC_VERSION, (uint32_t)len, 0 };

	return send_record(sock, MSG_PARENT_SETTINGS, &h, sizeof(h), settings,
	    len, -1, 0);
}

int
ipc_settings_open(const void *data, size_t *len, size_t settings_size,
    const void **body, char *why, size_t whylen)
{
	struct ipc_settings_hdr h;

	if (*len < sizeof(h) || (memcpy(&h, data, sizeof(h)),
	    h.magic != IPC_MAGIC)) {
		snprintf(why, whylen, "the parent speaks an IPC protocol "
		    "older than version 2 (no version header), this program "
		    "version %u", IPC_VERSION);
		return -1;
	}
	if (h.version != IPC_VERSION) {
		snprintf(why, whylen, "the parent speaks IPC protocol version "
		    "%u, this program version %u", h.version, IPC_VERSION);
		return -1;
	}
	if (h.settings_size != settings_size || h.reserved != 0 ||
	    *len - sizeof(h) != settings_size) {
		snprintf(why, whylen, "IPC protocol version %u on both sides, "
		    "but the parent's settings are %u bytes (%zu sent), ours "
		    "%zu: built from different sources", IPC_VERSION,
		    h.settings_size, *len - sizeof(h), settings_size);
		return -1;
	}
	*body = (const unsigned char *)data + sizeof(h);
	*len = settings_size;
	return 0;
}

int
ipc_expect_size(const struct ipc_msg *m, size_t size)
{
	return m->hdr.len == size ? 0 : -1;
}

int
ipc_string_ok(const char *s, size_t size)
{
	return memchr(s, '\0', size) != NULL ? 0 : -1;
}

int
ipc_is_socket(int fd, int type)
{
	int		got;
	socklen_t	len = sizeof(got);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &got, &len) == -1)
		return 0;
	return got == type;
}
