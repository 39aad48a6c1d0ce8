/*
 * clamd's client, run on a commit pool thread (see scan.h).  One
 * connection per message, one command (zFILDES or zINSTREAM), one
 * answer, all before the job's deadline: every wait is a poll bounded by
 * it, so a clamd that is stopped, stalled or swamped costs a 451 4.7.1
 * within Milter Clamd Timeout, never a hung session.
 *
 * FDPASS (zFILDES) hands clamd the descriptor of the file we hold: clamd
 * reads it in place, nothing is copied, and clamd needs no permission on
 * milterin.  It only works where clamd shares our kernel.  INSTREAM sends
 * the bytes in chunks read with pread(2) from the same descriptor: memory
 * stays one chunk whatever the message size, and clamd may be anywhere
 * the socket leads.  No allocation here: the pool's threads have none.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ipc.h"
#include "scan.h"
#include "stats.h"

/* INSTREAM chunk; clamd takes up to its StreamMaxLength per chunk. */
#define CHUNK		(32 * 1024)
/* A full listen backlog: try again after this long. */
#define BACKLOG_RETRY_NS	(20 * 1000 * 1000)

void
scan_conf_set(struct scan_conf *c, const struct msm_settings *s,
    uint64_t now_us)
{
	/* config.c checked that it fits sun_path; cut, never overrun. */
	memset(c->socket, 0, sizeof(c->socket));
	memcpy(c->socket, s->milter_clamd_socket, strnlen(s->milter_clamd_socket,
	    sizeof(c->socket) - 1));
	c->method = s->milter_clamd_method;
	c->deadline_us = now_us + (uint64_t)s->milter_clamd_timeout * 1000000;
}

const char *
scan_result_name(int result)
{
	static const char *const names[SCAN_RESULT_COUNT] = {
		[SCAN_CLEAN] = "clean", [SCAN_VIRUS] = "virus",
		[SCAN_TEMPFAIL] = "tempfail", [SCAN_OVERSIZE] = "oversize",
	};

	return result >= 0 && result < SCAN_RESULT_COUNT ? names[result] :
	    "tempfail";
}

static void __attribute__((format(printf, 2, 3)))
fail(struct clamd_reply *r, const char *fmt, ...)
{
	va_list ap;

	r->result = SCAN_TEMPFAIL;
	va_start(ap, fmt);
	vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
	va_end(ap);
}

/* Milliseconds to the deadline, 0 when it has passed. */
static int
left_ms(const struct scan_conf *c)
{
	uint64_t now = clock_now_us();

	if (now >= c->deadline_us)
		return 0;
	if ((c->deadline_us - now) / 1000 >= INT_MAX)
		return INT_MAX;
	return (int)((c->deadline_us - now + 999) / 1000);
}

/* Until fd is ready for ev (or in error), or ETIMEDOUT. */
static int
await(int fd, short ev, const struct scan_conf *c)
{
	for (;;) {
		struct pollfd	 pfd = { fd, ev, 0 };
		int		 ms = left_ms(c), r;

		if (ms == 0) {
			errno = ETIMEDOUT;
			return -1;
		}
		if ((r = poll(&pfd, 1, ms)) == 1)
			return 0;	/* an error shows in the next call */
		if (r == -1 && errno != EINTR)
			return -1;
	}
}

/* Connect to clamd's socket; the descriptor, or -1 with errno. */
static int
dial(const struct scan_conf *c)
{
	struct sockaddr_un	 sun;
	struct timespec		 pause = { 0, BACKLOG_RETRY_NS };
	int			 s, err;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, c->socket, sizeof(sun.sun_path));
	if ((s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0)) == -1)
		return -1;
	/* A unix connect completes at once, or EAGAIN: backlog full. */
	while (connect(s, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN || left_ms(c) == 0) {
			err = errno == EAGAIN ? ETIMEDOUT : errno;
			close(s);
			errno = err;
			return -1;
		}
		nanosleep(&pause, NULL);
	}
	return s;
}

/* Send iov[0..n) whole, with an optional descriptor on the first byte. */
static int
send_all(int s, struct iovec *iov, int n, int pass_fd,
    const struct scan_conf *c)
{
	union ipc_fdroom u;
	struct msghdr	 msg;
	ssize_t		 w;

	while (n > 0) {
		memset(&msg, 0, sizeof(msg));
		msg.msg_iov = iov;
		msg.msg_iovlen = (size_t)n;
		if (pass_fd != -1)
			ipc_attach_fd(&msg, &u, pass_fd);
		if ((w = sendmsg(s, &msg, MSG_NOSIGNAL)) == -1) {
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN || await(s, POLLOUT, c) == -1)
				return -1;
			continue;
		}
		pass_fd = -1;		/* it went with the first byte */
		while (n > 0 && (size_t)w >= iov->iov_len) {
			w -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (char *)iov->iov_base + w;
			iov->iov_len -= (size_t)w;
		}
	}
	return 0;
}

static int
send_bytes(int s, const void *p, size_t len, int pass_fd,
    const struct scan_conf *c)
{
	struct iovec iov = { (void *)(uintptr_t)p, len };

	return send_all(s, &iov, 1, pass_fd, c);
}

/* clamd answered already (an early ERROR such as the size limit)? */
static int
answered(int s)
{
	struct pollfd pfd = { s, POLLIN, 0 };

	return poll(&pfd, 1, 0) == 1;
}

/*
 * zINSTREAM: 4-byte big-endian length, that many bytes, ..., and a zero
 * length.  Stops early when clamd answers or hangs up mid-stream (its
 * StreamMaxLength): the answer says why.  0, or -1 with errno.
 */
static int
send_stream(int s, int fd, uint64_t size, const struct scan_conf *c)
{
	static const char	 cmd[] = "zINSTREAM";
	char			 buf[CHUNK];
	uint32_t		 hdr;
	uint64_t		 off = 0;

	if (send_bytes(s, cmd, sizeof(cmd), -1, c) == -1)
		return -1;
	while (off < size) {
		struct iovec	 iov[2];
		size_t		 want = size - off < CHUNK ? (size_t)(size - off) :
				    CHUNK;
		ssize_t		 n = pread(fd, buf, want, (off_t)off);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* the file shrank */
			return -1;
		}
		if (answered(s))
			return 0;
		hdr = htonl((uint32_t)n);
		iov[0] = (struct iovec){ &hdr, sizeof(hdr) };
		iov[1] = (struct iovec){ buf, (size_t)n };
		if (send_all(s, iov, 2, -1, c) == -1)
			return errno == EPIPE || errno == ECONNRESET ? 0 : -1;
		off += (uint64_t)n;
	}
	hdr = 0;
	if (send_bytes(s, &hdr, sizeof(hdr), -1, c) == -1)
		return errno == EPIPE || errno == ECONNRESET ? 0 : -1;
	return 0;
}

/* zFILDES, then the descriptor on one byte of its own (as clamdscan). */
static int
send_fd(int s, int fd, const struct scan_conf *c)
{
	static const char cmd[] = "zFILDES";

	if (send_bytes(s, cmd, sizeof(cmd), -1, c) == -1)
		return -1;
	return send_bytes(s, "", 1, fd, c);
}

/*
 * clamd's answer, up to end of file (it closes after a one-shot
 * command) or CLAMD_REPLY_MAX + 1 bytes (too long: the parser says so).
 * Bytes read, or -1 with errno (ETIMEDOUT).
 */
static ssize_t
read_answer(int s, char *buf, size_t cap, const struct scan_conf *c)
{
	size_t n = 0;

	while (n < cap) {
		ssize_t r = read(s, buf + n, cap - n);

		if (r == 0)
			break;
		if (r > 0) {
			n += (size_t)r;
			continue;
		}
		if (errno == EINTR)
			continue;
		if (errno == ECONNRESET && n > 0)
			break;
		if (errno != EAGAIN || await(s, POLLIN, c) == -1)
			return -1;
	}
	return (ssize_t)n;
}

void
scan_clamd(const struct scan_conf *c, int fd, uint64_t size,
    struct clamd_reply *r)
{
	char	 buf[CLAMD_REPLY_MAX + 1];
	ssize_t	 n;
	int	 s, sent;

	memset(r, 0, sizeof(*r));
	/* Queued behind other scans past the bound (a stalled clamd holds
	 * every thread): no point in asking now. */
	if (left_ms(c) == 0) {
		fail(r, "no scan thread free within Milter Clamd Timeout "
		    "(clamd at %s busy or stalled)", c->socket);
		return;
	}
	if ((s = dial(c)) == -1) {
		fail(r, "cannot connect to clamd at %s: %s", c->socket,
		    strerror(errno));
		return;
	}
	sent = c->method == MSM_CLAMD_INSTREAM ? send_stream(s, fd, size, c) :
	    send_fd(s, fd, c);
	if (sent == -1) {
		fail(r, "sending to clamd at %s: %s", c->socket,
		    strerror(errno));
		close(s);
		return;
	}
	n = read_answer(s, buf, sizeof(buf), c);
	close(s);
	if (n == -1) {
		if (errno == ETIMEDOUT)
			fail(r, "no answer from clamd at %s within Milter "
			    "Clamd Timeout", c->socket);
		else
			fail(r, "reading clamd's answer from %s: %s", c->socket,
			    strerror(errno));
		return;
	}
	clamd_reply_parse(buf, (size_t)n, r);
}
