/*
 * An RFC 5321 client for re-injection: EHLO (HELO fallback), multi-line
 * replies, every reply code checked, PIPELINING, SIZE, 8BITMIME, SMTPUTF8,
 * DSN and XFORWARD when offered, several messages per connection, and the
 * body sent as CRLF lines with dot-stuffing: never a bare CR or LF on the
 * wire (SMTP smuggling).  Replies come from the MTA and are parsed as
 * untrusted input: bounded lines, consistent codes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "relay.h"

#define REPLY_LINE_MAX	2048
#define REPLY_LINES_MAX	100
#define RCPTS_PER_TXN	1000	/* Postfix's smtpd_recipient_limit */
#define ADDRESS_MAX	1000	/* RFC 5321 allows 256 octets per path */

enum ext {
	EXT_PIPELINING = 1 << 0,
	EXT_SIZE = 1 << 1,
	EXT_8BITMIME = 1 << 2,
	EXT_SMTPUTF8 = 1 << 3,
	EXT_DSN = 1 << 4,
	EXT_XFORWARD = 1 << 5,
};

struct smtp_conn {
	int		 fd;
	int		 idle;		/* no transaction open: no RSET needed */
	unsigned	 ext;
	char		 xforward[128];	/* attribute names offered */
	char		 rbuf[8192];
	size_t		 rlen, roff;
	struct wbuf	 w;		/* commands and body on their way */
};

/* ---- reading replies ---- */

static int
read_line(struct smtp_conn *c, char *line, size_t size)
{
	size_t n = 0;

	for (;;) {
		if (c->roff == c->rlen) {
			ssize_t r = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);

			if (r <= 0)
				return -1;
			c->rlen = (size_t)r;
			c->roff = 0;
		}
		char ch = c->rbuf[c->roff++];

		if (ch == '\n')
			break;
		if (n + 1 >= size)
			return -1;	/* absurdly long line */
		line[n++] = ch;
	}
	if (n > 0 && line[n - 1] == '\r')
		n--;
	line[n] = '\0';
	return 0;
}

/* One reply, all its lines; every line must carry the same code. */
static int
read_reply(struct smtp_conn *c, struct reply *r)
{
	char	 line[REPLY_LINE_MAX];

	memset(r, 0, sizeof(*r));
	for (int i = 0; i < REPLY_LINES_MAX; i++) {
		int done;

		if (read_line(c, line, sizeof(line)) == -1 ||
		    (done = smtp_reply_line(r, i, line)) == -1)
			return -1;
		if (done)
			return 0;
	}
	return -1;
}

/* ---- writing ---- */

static void wprintf(struct wbuf *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

static void
wprintf(struct wbuf *w, const char *fmt, ...)
{
	char	 line[2048];
	va_list	 ap;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		w->failed = 1;
		return;
	}
	wbuf_put(w, line, (size_t)n);
}

/*
 * The message as SMTP DATA: every line end (LF, CRLF, or a lone CR)
 * becomes CRLF, a line starting with "." gets another, and the message
 * ends with CRLF whatever the file did.
 */
static int
send_body(struct wbuf *w, int fd, off_t off)
{
	char	 buf[65536];
	int	 bol = 1, cr = 0;
	ssize_t	 n;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		off += n;
		for (ssize_t i = 0; i < n; i++) {
			char ch = buf[i];

			if (cr) {
				cr = 0;
				wbuf_put(w, "\r\n", 2);
				bol = 1;
				if (ch == '\n')
					continue;
			}
			if (ch == '\r') {
				cr = 1;
				continue;
			}
			if (ch == '\n') {
				wbuf_put(w, "\r\n", 2);
				bol = 1;
				continue;
			}
			if (bol && ch == '.')
				wbuf_put(w, ".", 1);
			bol = 0;
			w->data[w->len++] = ch;	/* wbuf_put's fast path */
			if (w->len == WBUF_SIZE)
				wbuf_flush(w);
		}
	}
	if (n < 0)
		return -1;
	if (cr || !bol)
		wbuf_put(w, "\r\n", 2);
	wbuf_put(w, ".\r\n", 3);
	return 0;
}

/* ---- the session ---- */

static void
parse_ehlo(struct smtp_conn *c, const char *all)
{
	const char *line = all;

	c->ext = 0;
	c->xforward[0] = '\0';
	while (*line != '\0') {
		const char	*end = strchr(line, '\n');
		size_t		 len = end ? (size_t)(end - line) : strlen(line);
		char		 kw[128];

		snprintf(kw, sizeof(kw), "%.*s", (int)len, line);
		if (strcasecmp(kw, "PIPELINING") == 0)
			c->ext |= EXT_PIPELINING;
		else if (strncasecmp(kw, "SIZE", 4) == 0 &&
		    (kw[4] == '\0' || kw[4] == ' '))
			c->ext |= EXT_SIZE;
		else if (strcasecmp(kw, "8BITMIME") == 0)
			c->ext |= EXT_8BITMIME;
		else if (strcasecmp(kw, "SMTPUTF8") == 0)
			c->ext |= EXT_SMTPUTF8;
		else if (strcasecmp(kw, "DSN") == 0)
			c->ext |= EXT_DSN;
		else if (strncasecmp(kw, "XFORWARD ", 9) == 0) {
			c->ext |= EXT_XFORWARD;
			snprintf(c->xforward, sizeof(c->xforward), " %s ",
			    kw + 9);
		}
		line += len + (end != NULL);
	}
}

static int
smtp_open(struct worker *wk, struct reply *rep, char *err, size_t errlen)
{
	struct relay		*r = wk->r;
	struct smtp_conn	*c;
	char			 cmd[300];
	int			 fd;

	memset(rep, 0, sizeof(*rep));
	if ((fd = net_connect(&r->set, err, errlen)) == -1)
		return -1;
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	c->fd = fd;
	c->idle = 1;
	wk->smtp = c;
	if (read_reply(c, rep) == -1 || rep->code != 220)
		goto bad;
	snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", r->hostname);
	if (net_write_all(fd, cmd, strlen(cmd)) == -1 ||
	    read_reply(c, rep) == -1)
		goto bad;
	if (rep->code == 250) {
		parse_ehlo(c, strchr(rep->all, '\n') ? strchr(rep->all, '\n') +
		    1 : "");
		return 0;
	}
	snprintf(cmd, sizeof(cmd), "HELO %s\r\n", r->hostname);
	if (net_write_all(fd, cmd, strlen(cmd)) == -1 ||
	    read_reply(c, rep) == -1 || rep->code != 250)
		goto bad;
	return 0;
bad:
	snprintf(err, errlen, "%.*s", (int)sizeof(rep->text),
	    rep->code ? rep->text : "connection lost or bad reply");
	smtp_close(wk);
	return -1;
}

void
smtp_close(struct worker *wk)
{
	if (wk->smtp == NULL)
		return;
	/* A polite QUIT; the reply does not matter any more. */
	(void)net_write_all(wk->smtp->fd, "QUIT\r\n", 6);
	close(wk->smtp->fd);
	free(wk->smtp);
	wk->smtp = NULL;
}

/* RFC 3461 xtext, as XFORWARD wants its values. */
static void
xtext(const char *in, char *out, size_t size)
{
	size_t n = 0;

	for (; *in != '\0' && n + 4 < size; in++) {
		unsigned char c = (unsigned char)*in;

		if (c >= '!' && c <= '~' && c != '+' && c != '=')
			out[n++] = (char)c;
		else
			n += (size_t)snprintf(out + n, size - n, "+%02X", c);
	}
	out[n] = '\0';
}

static void
put_xforward(struct smtp_conn *c, struct wbuf *w, const struct delivery *d)
{
	char		 v[4][300];
	const char	*names[4] = { "NAME", "ADDR", "HELO", "IDENT" };
	const char	*vals[4] = { d->q.client_name, d->q.client_addr,
	    d->q.helo, d->queue_id };

	if (!(c->ext & EXT_XFORWARD) || d->q.client_addr[0] == '\0')
		return;
	wbuf_put(w, "XFORWARD", 8);
	for (int i = 0; i < 4; i++) {
		char want[16];

		snprintf(want, sizeof(want), " %s ", names[i]);
		if (strcasestr(c->xforward, want) == NULL || vals[i][0] == '\0')
			continue;
		xtext(vals[i], v[i], sizeof(v[i]));
		wprintf(w, " %s=%s", names[i], v[i]);
	}
	wbuf_put(w, "\r\n", 2);
}

/* Does this transaction need SMTPUTF8: any envelope byte above 127? */
static int
needs_utf8(const struct delivery *d)
{
	for (const char *p = d->q.sender; *p; p++)
		if ((unsigned char)*p > 127)
			return 1;
	for (size_t i = 0; i < d->q.nrcpt; i++)
		for (const char *p = d->q.rcpts[i].addr; *p; p++)
			if ((unsigned char)*p > 127)
				return 1;
	return 0;
}

/* DSN parameters we pass on: NOTIFY= and ORCPT= tokens, nothing else. */
static void
put_dsn(struct wbuf *w, const char *dsn)
{
	char		 tok[600];
	const char	*p = dsn;

	while (p != NULL && *p != '\0') {
		size_t len = strcspn(p, " ");

		snprintf(tok, sizeof(tok), "%.*s", (int)len, p);
		if ((strncasecmp(tok, "NOTIFY=", 7) == 0 ||
		    strncasecmp(tok, "ORCPT=", 6) == 0) && len < sizeof(tok))
			wprintf(w, " %s", tok);
		p += len;
		while (*p == ' ')
			p++;
	}
}

static void
outcome_all(struct delivery *d, const char *sel, enum rcpt_outcome o,
    const struct reply *rep)
{
	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (sel[i])
			d->outcome[i] = o;
	snprintf(d->reply, sizeof(d->reply), "%s", rep->text);
	if (o == RCPT_REJECTED && d->reject[0] == '\0')
		snprintf(d->reject, sizeof(d->reject), "%s", rep->text);
}

/*
 * What a RCPT reply means for recipient i of this transaction.  -1 for a
 * reply that makes no sense here (3xx): the session is out of step.
 */
static int
rcpt_reply(struct delivery *d, size_t i, const struct reply *rep,
    char *accepted, size_t *naccepted)
{
	if (rep->code / 100 == 3)
		return -1;
	if (rep->code / 100 == 2) {
		accepted[i] = 1;
		(*naccepted)++;
	} else if (rep->code == 452) {
		/* Too many recipients: send this one in another round. */
		snprintf(d->reply, sizeof(d->reply), "%s", rep->text);
	} else if (rep->code / 100 == 4) {
		d->outcome[i] = RCPT_DEFERRED;
		snprintf(d->reply, sizeof(d->reply), "%s", rep->text);
	} else {
		d->outcome[i] = RCPT_REJECTED;
		snprintf(d->reply, sizeof(d->reply), "%s", rep->text);
		if (d->reject[0] == '\0')
			snprintf(d->reject, sizeof(d->reject), "%s", rep->text);
	}
	return 0;
}

static void
put_mail(struct smtp_conn *c, struct wbuf *w, const struct delivery *d)
{
	wprintf(w, "MAIL FROM:<%s>", d->q.sender);
	if (c->ext & EXT_SIZE)
		wprintf(w, " SIZE=%lld",
		    (long long)(d->q.size - d->q.data_offset));
	if (c->ext & EXT_8BITMIME)
		wbuf_put(w, " BODY=8BITMIME", 14);
	if ((c->ext & EXT_SMTPUTF8) && needs_utf8(d))
		wbuf_put(w, " SMTPUTF8", 9);
	wbuf_put(w, "\r\n", 2);
}

static void
put_rcpt(struct smtp_conn *c, struct wbuf *w, const struct qrcpt *rc)
{
	wprintf(w, "RCPT TO:<%s>", rc->addr);
	if (c->ext & EXT_DSN)
		put_dsn(w, rc->dsn);
	wbuf_put(w, "\r\n", 2);
}

/* Send what is buffered and read one reply: the unpipelined step. */
static int
step(struct smtp_conn *c, struct wbuf *w, struct reply *rep)
{
	wbuf_flush(w);
	if (w->failed || read_reply(c, rep) == -1)
		return -1;
	return 0;
}

/*
 * One transaction for the recipients selected in sel.  Recipients that got
 * 452 stay RCPT_PENDING for another round.  -1 when the connection can no
 * longer be trusted to be in step with the server.
 */
static int
transaction(struct smtp_conn *c, struct delivery *d, const char *sel,
    size_t *naccepted)
{
	struct reply		 rep;
	int			 pipe = (c->ext & EXT_PIPELINING) != 0;
	int			 mail_ok, xfwd = 0;
	char			*accepted = calloc(d->q.nrcpt, 1);
	size_t			 i;

	if (accepted == NULL)
		return -1;
	*naccepted = 0;
	c->w.fd = c->fd;
	c->w.len = 0;
	c->w.failed = 0;
	if ((c->ext & EXT_XFORWARD) && d->q.client_addr[0] != '\0') {
		put_xforward(c, &c->w, d);
		xfwd = 1;
		if (!pipe && step(c, &c->w, &rep) == -1)
			goto broken;
	}
	put_mail(c, &c->w, d);
	if (!pipe) {
		if (step(c, &c->w, &rep) == -1)
			goto broken;
	}
	for (i = 0; i < d->q.nrcpt; i++) {
		if (!sel[i])
			continue;
		put_rcpt(c, &c->w, &d->q.rcpts[i]);
		if (!pipe && rep.code / 100 == 2) {
			struct reply rr;

			if (step(c, &c->w, &rr) == -1 ||
			    rcpt_reply(d, i, &rr, accepted, naccepted) == -1)
				goto broken;
			if (rr.code == 452)
				break;	/* the rest in another round */
		}
		if (!pipe && rep.code / 100 != 2)
			c->w.len = 0;	/* MAIL failed: RCPT not sent */
	}
	if (pipe) {
		wbuf_put(&c->w, "DATA\r\n", 6);
		wbuf_flush(&c->w);
		if (c->w.failed)
			goto broken;
		if (xfwd && read_reply(c, &rep) == -1)
			goto broken;	/* XFORWARD's answer does not matter */
		if (read_reply(c, &rep) == -1)
			goto broken;
	}
	if (rep.code / 100 == 3)
		goto broken;	/* no 3xx answers MAIL */
	mail_ok = rep.code / 100 == 2;
	if (!mail_ok)
		outcome_all(d, sel, rep.code / 100 == 4 ? RCPT_DEFERRED :
		    RCPT_REJECTED, &rep);
	if (pipe) {
		for (i = 0; i < d->q.nrcpt; i++) {
			struct reply rr;

			if (!sel[i])
				continue;
			if (read_reply(c, &rr) == -1)
				goto broken;
			if (mail_ok && rcpt_reply(d, i, &rr, accepted,
			    naccepted) == -1)
				goto broken;
		}
		if (read_reply(c, &rep) == -1)	/* to DATA */
			goto broken;
	} else if (mail_ok && *naccepted > 0) {
		wbuf_put(&c->w, "DATA\r\n", 6);
		if (step(c, &c->w, &rep) == -1)
			goto broken;
	} else
		rep.code = 0;
	/* DATA is answered 354, 4xx or 5xx; anything else is out of step. */
	if (rep.code != 0 && rep.code != 354 && rep.code / 100 < 4)
		goto broken;
	if (rep.code == 354 && *naccepted == 0) {
		/* Nobody to deliver to, yet the server wants data. */
		wbuf_put(&c->w, ".\r\n", 3);
		if (step(c, &c->w, &rep) == -1)
			goto broken;
	} else if (rep.code == 354) {
		if (send_body(&c->w, d->fd, d->q.data_offset) == -1) {
			snprintf(d->reply, sizeof(d->reply), "read error");
			goto broken;
		}
		if (step(c, &c->w, &rep) == -1 || rep.code / 100 == 3)
			goto broken;
		c->idle = 1;	/* the reply to "." ends the transaction */
		outcome_all(d, accepted, rep.code / 100 == 2 ? RCPT_DELIVERED :
		    rep.code / 100 == 4 ? RCPT_DEFERRED : RCPT_REJECTED, &rep);
	} else if (rep.code != 0 && *naccepted > 0)
		outcome_all(d, accepted, rep.code / 100 == 4 ? RCPT_DEFERRED :
		    RCPT_REJECTED, &rep);
	free(accepted);
	return 0;
broken:
	free(accepted);
	return -1;
}

/* Addresses no server takes are permanent failures, not a broken session. */
static void
refuse_long_addresses(struct delivery *d)
{
	struct reply long_addr = { .code = 553, .text = "553 5.1.3 address "
	    "longer than any SMTP server accepts" };
	int sender = strlen(d->q.sender) > ADDRESS_MAX;

	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (d->outcome[i] == RCPT_PENDING &&
		    (sender || strlen(d->q.rcpts[i].addr) > ADDRESS_MAX)) {
			d->outcome[i] = RCPT_REJECTED;
			snprintf(d->reject, sizeof(d->reject), "%s",
			    long_addr.text);
		}
}

int
smtp_deliver(struct worker *wk, struct delivery *d)
{
	char	 err[600];
	char	*sel = calloc(d->q.nrcpt ? d->q.nrcpt : 1, 1);

	if (sel == NULL)
		return -1;
	refuse_long_addresses(d);
	for (;;) {
		struct reply	 rep;
		size_t		 n = 0, naccepted = 0;
		int		 rc;

		/* At most RCPTS_PER_TXN: Postfix counts overshoot as errors. */
		for (size_t i = 0; i < d->q.nrcpt; i++)
			n += sel[i] = d->outcome[i] == RCPT_PENDING &&
			    n < RCPTS_PER_TXN;
		if (n == 0)
			break;
		/* After a finished DATA the session is clean again. */
		if (wk->smtp != NULL && !wk->smtp->idle) {
			if (net_write_all(wk->smtp->fd, "RSET\r\n", 6) == -1 ||
			    read_reply(wk->smtp, &rep) == -1 || rep.code != 250)
				smtp_close(wk);
			else
				wk->smtp->idle = 1;
		}
		if (wk->smtp == NULL && smtp_open(wk, &rep, err,
		    sizeof(err)) == -1) {
			d->connect_failed = rep.code == 0;
			/* A server that refuses us at the greeting or at
			 * EHLO/HELO is not the message's fault: retry. */
			outcome_all(d, sel, RCPT_DEFERRED, &rep);
			snprintf(d->reply, sizeof(d->reply), "%.*s",
			    (int)sizeof(d->reply) - 1, err);
			break;
		}
		if (needs_utf8(d) && !(wk->smtp->ext & EXT_SMTPUTF8)) {
			struct reply no = { .code = 553, .text = "553 5.6.7 "
			    "the relay did not offer SMTPUTF8" };

			outcome_all(d, sel, RCPT_REJECTED, &no);
			break;
		}
		wk->smtp->idle = 0;
		rc = transaction(wk->smtp, d, sel, &naccepted);
		/* Before anything else: a relay killed now must not resend. */
		if (naccepted > 0)
			settle_accepted(wk->r, d);
		if (rc == -1) {
			smtp_close(wk);
			for (size_t i = 0; i < d->q.nrcpt; i++)
				if (sel[i] && d->outcome[i] != RCPT_DELIVERED)
					d->outcome[i] = RCPT_DEFERRED;
			if (d->reply[0] == '\0')
				snprintf(d->reply, sizeof(d->reply),
				    "connection lost");
			break;
		}
		if (naccepted == 0)	/* all 452: nothing moves; later */
			for (size_t i = 0; i < d->q.nrcpt; i++)
				if (d->outcome[i] == RCPT_PENDING)
					d->outcome[i] = RCPT_DEFERRED;
	}
	free(sel);
	return 0;
}
