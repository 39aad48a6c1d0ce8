/*
 * QMQP client (qmail's protocol, served by Postfix's qmqpd): one netstring
 * holding the message, the sender and each recipient as netstrings; the
 * answer is a netstring starting with K (delivered), Z (temporary) or D
 * (permanent).  The message goes with LF line ends, as qmqpd expects.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "relay.h"


/*
 * The message bytes with CRLF turned into LF.  With out == NULL only
 * count them (netstrings need the length first); returns the count or -1
 * on a read error.  Write errors stay in out->failed.
 */
static long long
message_bytes(int fd, off_t off, struct wbuf *out)
{
	/* At most one byte more out than in: a CR carried from before. */
	char		 in[65536], buf[sizeof(in) + 1];
	long long	 total = 0;
	ssize_t		 n;
	int		 cr = 0;

	while ((n = pread(fd, in, sizeof(in), off)) > 0) {
		size_t len = 0;

		off += n;
		/* MailScanner writes LF: most chunks go as they are. */
		if (!cr && memchr(in, '\r', (size_t)n) == NULL) {
			if (out != NULL)
				wbuf_put(out, in, (size_t)n);
			total += (long long)n;
			continue;
		}
		for (ssize_t i = 0; i < n; i++) {
			if (cr && in[i] != '\n')
				buf[len++] = '\r';
			cr = in[i] == '\r';
			if (!cr)
				buf[len++] = in[i];
		}
		if (out != NULL)
			wbuf_put(out, buf, len);
		total += (long long)len;
	}
	if (n < 0)
		return -1;
	if (cr) {
		if (out != NULL)
			wbuf_put(out, "\r", 1);
		total++;
	}
	return total;
}

static size_t
netstring_len(size_t n)
{
	char tmp[32];

	return (size_t)snprintf(tmp, sizeof(tmp), "%zu:", n) + n + 1;
}

static void
put_netstring(struct wbuf *out, const char *s)
{
	char	 head[32];
	size_t	 n = strlen(s);

	snprintf(head, sizeof(head), "%zu:", n);
	wbuf_put(out, head, strlen(head));
	wbuf_put(out, s, n);
	wbuf_put(out, ",", 1);
}

/*
 * QMQP carries addresses in internal form: "john smith"@example.com from
 * the file goes as john smith@example.com, or qmqpd would keep the quotes
 * as part of the local part.  The reader limited addresses to
 * QFILE_ADDR_MAX bytes.
 */
static const char *
internal(const char *addr, char *buf)
{
	if (strlen(addr) > QFILE_ADDR_MAX)
		return addr;		/* cannot be: the reader refuses it */
	qfile_addr_internal(addr, buf);
	return buf;
}

static size_t
address_len(const char *addr)
{
	char buf[QFILE_ADDR_MAX + 1];

	return netstring_len(strlen(internal(addr, buf)));
}

static void
put_address(struct wbuf *out, const char *addr)
{
	char buf[QFILE_ADDR_MAX + 1];

	put_netstring(out, internal(addr, buf));
}

/* "12:Kok thanks," -> code 'K', text "ok thanks"; strict. */
static int
read_answer(int fd, char *code, char *text, size_t size)
{
	char	 buf[QMQP_REPLY_MAX + 16];
	size_t	 got = 0;

	while (got < sizeof(buf)) {
		ssize_t	 n = recv(fd, buf + got, sizeof(buf) - got, 0);
		int	 r;

		if (n <= 0)
			return -1;
		got += (size_t)n;
		if ((r = qmqp_parse_answer(buf, got, code, text, size)) != 0)
			return r == 1 ? 0 : -1;
	}
	return -1;
}

int
qmqp_deliver(struct worker *w, struct delivery *d)
{
	struct relay	*r = w->r;
	char		 err[256], code = 0, text[400], head[32];
	long long	 mlen = message_bytes(d->fd, d->q.data_offset, NULL);
	struct wbuf	 out;
	size_t		 total, n = 0;
	enum rcpt_outcome o;
	int		 fd;

	if (mlen < 0) {
		snprintf(d->reply, sizeof(d->reply), "read error");
		return -1;
	}
	total = netstring_len((size_t)mlen) + address_len(d->q.sender);
	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (d->outcome[i] == RCPT_PENDING) {
			total += address_len(d->q.rcpts[i].addr);
			n++;
		}
	if (n == 0)
		return 0;
	if ((fd = net_connect(&r->set, err, sizeof(err))) == -1) {
		d->connect_failed = 1;
		snprintf(d->reply, sizeof(d->reply), "%s", err);
		o = RCPT_DEFERRED;
		goto done;
	}
	/* All of it in as few writes as fit: qmqpd wakes up for each. */
	out.fd = fd;
	out.len = 0;
	out.failed = 0;
	snprintf(head, sizeof(head), "%zu:%lld:", total, mlen);
	wbuf_put(&out, head, strlen(head));
	errno = 0;
	if (message_bytes(d->fd, d->q.data_offset, &out) != mlen)
		goto lost;	/* a read error, or the file changed */
	wbuf_put(&out, ",", 1);
	put_address(&out, d->q.sender);
	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (d->outcome[i] == RCPT_PENDING)
			put_address(&out, d->q.rcpts[i].addr);
	wbuf_put(&out, ",", 1);
	wbuf_flush(&out);
	if (out.failed || read_answer(fd, &code, text, sizeof(text)) == -1)
		goto lost;
	close(fd);
	snprintf(d->reply, sizeof(d->reply), "%c%s", code, text);
	o = code == 'K' ? RCPT_DELIVERED : code == 'D' ? RCPT_REJECTED :
	    RCPT_DEFERRED;
	if (o == RCPT_REJECTED)
		snprintf(d->reject, sizeof(d->reject), "%s", text);
	goto done;
lost:
	close(fd);
	snprintf(d->reply, sizeof(d->reply), "QMQP connection lost: %s",
	    errno ? strerror(errno) : "bad answer");
	o = RCPT_DEFERRED;
done:
	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (d->outcome[i] == RCPT_PENDING)
			d->outcome[i] = o;
	if (o == RCPT_DELIVERED)
		settle_accepted(r, d);	/* before anything else */
	return 0;
}
