/*
 * libFuzzer harness for the IPC reader: any bytes as one record on a
 * SOCK_SEQPACKET channel, with 0, 1 or several real descriptors riding
 * along (SCM_RIGHTS), must be accepted as a well-formed message or refused
 * with EPROTO.  Checked for every input: no descriptor leaks, whatever
 * ipc_recv did; an accepted record has the size rule and descriptor rule
 * of its type (written out again here from ipc.h, not taken from ipc.c);
 * a settings record must validate or be refused.
 *
 * Input: byte 0 says how many descriptors (bits 0-2: 0..7; more than 4
 * overflow ipc_recv's control buffer) and whether to fix the header (bit
 * 3: type from byte 1, length made right); byte 1 picks each descriptor's
 * kind, two bits apiece (pipe end, socket, /dev/null) and the type; the
 * rest is the record as sent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "audit_ipc.h"
#include "child.h"
#include "config.h"
#include "ipc.h"

#define MAX_FDS		7
#define FD_PROBE	256	/* descriptors are allocated lowest first */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* What ipc.h promises per type: exact or minimum sizes, descriptors. */
static int
expect_ok(const struct ipc_hdr *h, int has_fd)
{
	switch (h->type) {
	case MSG_PARENT_STOP:
	case MSG_CHILD_READY:
	case MSG_CAPTURE_COMMIT:
	case MSG_CAPTURE_ABORT:
	case MSG_SPOOLER_BEGUN:
		return h->len == 0 && !has_fd;
	case MSG_PARENT_SPOOLER_CHANNEL:
	case MSG_PARENT_CAPTURE_CHANNEL:
	case MSG_PARENT_RELAY_CHANNEL:
	case MSG_PARENT_REQUEUE_CHANNEL:
	case MSG_CAPTURE_SESSION:
		return h->len == 0 && has_fd;
	case MSG_SPOOLER_COMMITTED:
	case MSG_SPOOLER_REQUEUED:
		return h->len == sizeof(struct ipc_committed) && !has_fd;
	case MSG_SPOOLER_FAILED:
		return h->len == sizeof(struct ipc_failed) && !has_fd;
	case MSG_RELAY_REQUEUE:
		return h->len >= sizeof(struct ipc_requeue) && has_fd;
	case MSG_PARENT_SETTINGS:
		return h->len >= sizeof(struct ipc_settings_hdr) && !has_fd;
	case MSG_PARENT_RULES:
		return h->len >= sizeof(struct ipc_rules) &&
		    h->len <= sizeof(struct ipc_rules) + IPC_RULES_CHUNK &&
		    !has_fd;
	case MSG_CHILD_LOG:
		return h->len > sizeof(struct ipc_log) && !has_fd;
	case MSG_CAPTURE_BEGIN:
		return h->len >= sizeof(struct ipc_begin) && !has_fd;
	case MSG_CAPTURE_DATA:
		return h->len > 0 && !has_fd;
	case MSG_CAPTURE_AUDIT:
	case MSG_SPOOLER_AUDIT:
	case MSG_RELAY_AUDIT:
		return h->len >= sizeof(struct ipc_audit) && !has_fd;
	case MSG_PARENT_AUDIT_SYNCED:
		return h->len == 0 && !has_fd;
	case MSG_CHILD_CONFINED:
		return h->len == sizeof(struct ipc_confined) && !has_fd;
	case MSG_CAPTURE_COMMIT_TIME:
		return h->len == sizeof(struct ipc_commit_time) && !has_fd;
	case MSG_RELAY_STATUS:
		return h->len == sizeof(struct ipc_relay_status) && !has_fd;
	default:
		return 0;	/* MSG_NONE, unknown */
	}
}

static int
open_fds(void)
{
	int n = 0;

	for (int fd = 0; fd < FD_PROBE; fd++)
		n += fcntl(fd, F_GETFD) != -1;
	return n;
}

/* A real descriptor of the kind asked for; -1 on failure. */
static int
make_fd(unsigned kind, int *extra)
{
	int p[2];

	*extra = -1;
	switch (kind % 3) {
	case 0:
		if (pipe2(p, O_CLOEXEC) == -1)
			return -1;
		*extra = p[1];
		return p[0];
	case 1:
		if (ipc_pair(p) == -1)
			return -1;
		*extra = p[1];
		return p[0];
	default:
		return open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
}

static int
send_with_fds(int sock, const void *rec, size_t len, const int *fds, int n)
{
	union {
		struct cmsghdr	hdr;
		char		buf[CMSG_SPACE(MAX_FDS * sizeof(int))];
	} cbuf;
	struct iovec	 iov = { (void *)rec, len };
	struct msghdr	 msg;
	struct cmsghdr	*c;

	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	if (n > 0) {
		memset(&cbuf, 0, sizeof(cbuf));
		msg.msg_control = cbuf.buf;
		msg.msg_controllen = CMSG_SPACE(n * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	return sendmsg(sock, &msg, MSG_DONTWAIT) == (ssize_t)len ? 0 : -1;
}

/*
 * An audit event the parent takes: its sender's event, every string and
 * recipient inside the record and terminated.
 */
static void
check_audit(const struct ipc_msg *m)
{
	const char		*end = (const char *)m->data + m->hdr.len;
	const char *const	*keys;
	struct audit_event	 ev;
	const char		*why, *r;
	size_t			 n;

	if (audit_ipc_parse(m->hdr.type, m->data, m->hdr.len, &ev, &why) ==
	    -1)
		return;
	if (audit_event_type(ev.event) != m->hdr.type ||
	    (n = audit_ipc_fields(ev.event, &keys)) == 0)
		abort();
	for (size_t i = 0; i < n; i++)
		if (ev.str[i] < (const char *)m->data || ev.str[i] >= end ||
		    memchr(ev.str[i], '\0', (size_t)(end - ev.str[i])) == NULL)
			abort();
	r = ev.rcpts;
	for (uint32_t i = 0; i < ev.nrcpt; i++, r += strlen(r) + 1)
		if (r >= end || memchr(r, '\0', (size_t)(end - r)) == NULL)
			abort();
	if (r != end)
		abort();
}

static void
check_record(const struct ipc_msg *m, size_t reclen, int nfd)
{
	struct msm_settings s;

	if (m->hdr.len != reclen - sizeof(struct ipc_hdr))
		abort();	/* the length field was not checked */
	if (nfd > 1 || (m->fd >= 0) != (nfd == 1))
		abort();	/* several descriptors, or one lost */
	if (!expect_ok(&m->hdr, m->fd >= 0))
		abort();	/* a size or descriptor rule not enforced */
	if (m->hdr.type == MSG_PARENT_SETTINGS &&
	    child_take_settings(m->data, m->hdr.len, &s) == 0 &&
	    config_validate(&s) != 0)
		abort();
	if (m->hdr.type == MSG_CAPTURE_AUDIT ||
	    m->hdr.type == MSG_SPOOLER_AUDIT || m->hdr.type == MSG_RELAY_AUDIT)
		check_audit(m);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char	 rec[IPC_MAX_PAYLOAD + 4096];
	static unsigned char	 buf[IPC_MAX_PAYLOAD];
	static int		 sv[2] = { -1, -1 };
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	int			 fds[MAX_FDS], extra[MAX_FDS], nfd, before, r;
	size_t			 len;

	if (sv[0] == -1) {
		int big = 1 << 20;

		if (ipc_pair(sv) == -1)
			abort();
		setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	}
	if (size < 2 || size - 2 > sizeof(rec))
		return 0;
	len = size - 2;
	memcpy(rec, data + 2, len);
	if ((data[0] & 0x08) && len >= sizeof(struct ipc_hdr)) {
		struct ipc_hdr h = { data[1] % (MSG_TYPE_COUNT + 1),
		    (uint32_t)(len - sizeof(struct ipc_hdr)) };

		memcpy(rec, &h, sizeof(h));
	}

	before = open_fds();
	nfd = data[0] & 0x07;
	for (int i = 0; i < nfd; i++)
		if ((fds[i] = make_fd(data[1] >> (2 * (i % 4)), &extra[i])) ==
		    -1)
			abort();
	if (send_with_fds(sv[0], rec, len, fds, nfd) == -1)
		nfd = -1;		/* too big for the socket: not sent */
	for (int i = 0; i < (nfd < 0 ? (data[0] & 0x07) : nfd); i++) {
		close(fds[i]);
		if (extra[i] != -1)
			close(extra[i]);
	}
	if (nfd < 0)
		return 0;

	r = ipc_recv(sv[1], &m);
	if (r == 1)
		check_record(&m, len, nfd);
	else if (r == -1 && errno != EPROTO)
		abort();
	else if (r == 0 && len != 0)
		abort();		/* a record taken for end of file */
	if (m.fd >= 0 && r != 1)
		abort();		/* refused, but a descriptor handed out */
	if (m.fd >= 0)
		close(m.fd);
	if (open_fds() != before)
		abort();		/* ipc_recv leaked a descriptor */
	return 0;
}
