/*
 * The parent's syslog writer.  syslog(3) can only name the process that
 * calls it, and every line reaches us from a child; so we write the RFC
 * 3164 datagram ourselves, as glibc's syslog(3) does ("<PRI>Mmm dd
 * hh:mm:ss TAG[PID]: text", the host added by the daemon), with the
 * child's tag and pid: "msmilter/relay[4242]: ...", the way Postfix names
 * its daemons.  The socket is Milter Syslog Socket (default /dev/log).
 *
 * The supervisor must never wait on a syslog daemon that does not read:
 * a send that would block waits a moment, then the line is dropped and
 * counted, and the count is logged when the daemon reads again.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "syslog_out.h"

#define SEND_WAIT_MS	200

static struct {
	char		 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int		 facility;
	int		 fd;
	int		 stream;	/* the daemon listens on SOCK_STREAM */
	unsigned long	 dropped;
} out = { "/dev/log", LOG_MAIL, -1, 0, 0 };

void
syslog_out_init(const char *path, int facility)
{
	if (path != NULL && path[0] != '\0' &&
	    strcmp(path, out.path) != 0) {
		snprintf(out.path, sizeof(out.path), "%s", path);
		syslog_out_close();
	}
	out.facility = facility;
}

void
syslog_out_close(void)
{
	if (out.fd != -1)
		close(out.fd);
	out.fd = -1;
}

/* Datagram first, as syslog(3) does; a stream socket if that is all. */
static int
connect_log(void)
{
	struct sockaddr_un sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, out.path, strlen(out.path) + 1);
	for (int stream = 0; stream < 2; stream++) {
		int fd = socket(AF_UNIX, (stream ? SOCK_STREAM : SOCK_DGRAM) |
		    SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

		if (fd == -1)
			return -1;
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			out.fd = fd;
			out.stream = stream;
			return 0;
		}
		close(fd);
		if (errno != EPROTOTYPE)
			return -1;
	}
	return -1;
}

/* One record, whole (a stream gets it NUL-terminated, as glibc does). */
static int
send_record(const char *buf, size_t len)
{
	for (int tries = 0; tries < 2; tries++) {
		struct pollfd pfd;

		if (out.fd == -1 && connect_log() == -1)
			return -1;
		if (send(out.fd, buf, len + (size_t)out.stream,
		    MSG_NOSIGNAL) == (ssize_t)(len + (size_t)out.stream))
			return 0;
		if (errno == EAGAIN) {
			/* Wait once; while lines are being dropped, not at
			   all, so a wedged daemon costs the loop nothing. */
			pfd.fd = out.fd;
			pfd.events = POLLOUT;
			if (out.dropped == 0 &&
			    poll(&pfd, 1, SEND_WAIT_MS) == 1 && send(out.fd, buf,
			    len + (size_t)out.stream, MSG_NOSIGNAL) ==
			    (ssize_t)(len + (size_t)out.stream))
				return 0;
			return -1;	/* not reading: drop, do not wait */
		}
		/* The daemon restarted (or a stream broke): once more. */
		syslog_out_close();
	}
	return -1;
}

static int
format(char *buf, size_t size, int pri, const char *tag, long pid,
    const char *text)
{
	struct tm	 tm;
	time_t		 now = time(NULL);
	char		 stamp[32];
	int		 n;

	if (localtime_r(&now, &tm) == NULL ||
	    strftime(stamp, sizeof(stamp), "%h %e %T", &tm) == 0)
		snprintf(stamp, sizeof(stamp), "Jan  1 00:00:00");
	if ((pri & LOG_FACMASK) == 0)
		pri |= out.facility;
	n = snprintf(buf, size, "<%d>%s %s[%ld]: %s", pri, stamp, tag, pid,
	    text);
	if (n < 0)
		return -1;
	return (size_t)n >= size ? (int)size - 1 : n;
}

void
syslog_out_send(int pri, const char *tag, long pid, const char *text)
{
	char	 buf[LOG_LINE_MAX + 256];
	int	 n;

	if (out.dropped > 0) {
		char note[96];

		snprintf(note, sizeof(note), "%lu log line%s dropped: the "
		    "syslog daemon did not read", out.dropped,
		    out.dropped == 1 ? "" : "s");
		n = format(buf, sizeof(buf) - 1, LOG_WARNING, "msmilter",
		    (long)getpid(), note);
		if (n < 0 || send_record(buf, (size_t)n) == -1) {
			out.dropped++;
			return;
		}
		out.dropped = 0;
	}
	/* One byte spare: a stream socket's record ends with the NUL. */
	n = format(buf, sizeof(buf) - 1, pri, tag, pid, text);
	if (n < 0 || send_record(buf, (size_t)n) == -1)
		out.dropped++;
}
