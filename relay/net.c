/*
 * Connections to the MTA: a numeric address or a unix socket from the
 * configuration (no DNS: the relay cannot and need not resolve names), a
 * bounded connect, and read/write timeouts on every later step.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "relay.h"

static int
fill_addr(const struct msm_settings *s, struct sockaddr_storage *ss,
    socklen_t *len, char *err, size_t errlen)
{
	struct sockaddr_in	*in = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*in6 = (struct sockaddr_in6 *)ss;
	struct sockaddr_un	*un = (struct sockaddr_un *)ss;

	memset(ss, 0, sizeof(*ss));
	if (s->delivery_method == MSM_DELIVER_QMQP &&
	    s->socket_type == MSM_SOCKET_UNIX) {
		un->sun_family = AF_UNIX;
		if (strlen(s->socket_dir) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "socket path too long");
			return -1;
		}
		strcpy(un->sun_path, s->socket_dir);
		*len = sizeof(*un);
		return 0;
	}
	if (inet_pton(AF_INET, s->relay_address, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)s->relay_port);
		*len = sizeof(*in);
		return 0;
	}
	if (inet_pton(AF_INET6, s->relay_address, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)s->relay_port);
		*len = sizeof(*in6);
		return 0;
	}
	snprintf(err, errlen, "MSMail Relay Address %s is not an address",
	    s->relay_address);
	return -1;
}

/* Wait for a non-blocking connect to finish, at most timeout seconds. */
static int
finish_connect(int fd, unsigned timeout)
{
	struct pollfd	 pfd = { fd, POLLOUT, 0 };
	int		 soerr = 0;
	socklen_t	 len = sizeof(soerr);
	int		 r = poll(&pfd, 1, (int)timeout * 1000);

	if (r == 0) {
		errno = ETIMEDOUT;
		return -1;
	}
	if (r < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		return -1;
	if (soerr != 0) {
		errno = soerr;
		return -1;
	}
	return 0;
}

int
net_connect(const struct msm_settings *s, char *err, size_t errlen)
{
	struct sockaddr_storage	 ss;
	socklen_t		 len;
	struct timeval		 tv = { (time_t)s->relay_timeout, 0 };
	int			 fd;

	if (fill_addr(s, &ss, &len, err, errlen) == -1)
		return -1;
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&ss, len) == -1 &&
	    (errno != EINPROGRESS || finish_connect(fd, s->relay_timeout) ==
	    -1)) {
		snprintf(err, errlen, "connect: %s", strerror(errno));
		close(fd);
		return -1;
	}
	/* Blocking from here on, every read and write bounded. */
	if (fcntl(fd, F_SETFL, 0) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) == -1 ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1) {
		snprintf(err, errlen, "socket options: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
net_write_all(int fd, const void *p, size_t len)
{
	const char *cp = p;

	while (len > 0) {
		ssize_t n = send(fd, cp, len, MSG_NOSIGNAL);

		if (n == -1 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		cp += n;
		len -= (size_t)n;
	}
	return 0;
}

void
wbuf_flush(struct wbuf *w)
{
	if (w->len > 0 && !w->failed && net_write_all(w->fd, w->data, w->len))
		w->failed = 1;
	w->len = 0;
}

void
wbuf_put(struct wbuf *w, const void *p, size_t n)
{
	const char *cp = p;

	while (n > 0) {
		size_t k = n < WBUF_SIZE - w->len ? n : WBUF_SIZE - w->len;

		memcpy(w->data + w->len, cp, k);
		w->len += k;
		cp += k;
		n -= k;
		if (w->len == WBUF_SIZE)
			wbuf_flush(w);
	}
}
