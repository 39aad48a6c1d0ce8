/*
 * The queue file envelope (see qfile.h): the checks, the writer and the
 * strict reader.  The reader refuses exactly what the checks refuse, and
 * the writer writes only what they accept; tests/fuzz/
 * fuzz_qfile_roundtrip.c holds the three together.  E lines belong to the
 * O line after them; where MailScanner left E lines without one, we apply
 * them only when the answer is certain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "qfile.h"

struct reader {
	int	 fd;
	off_t	 off;			/* of buf[0] in the file */
	char	 buf[QFILE_LINE_MAX + 2];
	size_t	 len;			/* valid bytes in buf */
};

/*
 * The next line (without its LF) at r->off, NUL-terminated in line.
 * Returns its length, -1 at end of file with no line, -2 when the line is
 * longer than QFILE_LINE_MAX or has no LF, -3 on a read error.
 */
static ssize_t
next_line(struct reader *r, char *line)
{
	char	*nl;
	ssize_t	 n;

	n = pread(r->fd, r->buf, sizeof(r->buf) - 1, r->off);
	if (n < 0)
		return -3;
	if (n == 0)
		return -1;
	r->len = (size_t)n;
	nl = memchr(r->buf, '\n', r->len);
	if (nl == NULL)
		return -2;
	n = nl - r->buf;
	if (n > QFILE_LINE_MAX)
		return -2;
	memcpy(line, r->buf, (size_t)n);
	line[n] = '\0';
	return n;
}

/* Not strchr: strchr("OSEA", '\0') finds the terminator. */
static int
envelope_kind(char c)
{
	return c == 'O' || c == 'S' || c == 'E' || c == 'A';
}

/* Does the line claim to be an envelope line: [OSEA]< ? */
static int
envelope_start(const char *line, size_t len)
{
	return len >= 2 && envelope_kind(line[0]) && line[1] == '<';
}

/* Bytes in the well-formed UTF-8 sequence at p (NUL-terminated), or 0. */
static size_t
utf8_len(const unsigned char *p)
{
	unsigned	 lo = 0x80, hi = 0xbf;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		return (p[1] & 0xc0) == 0x80 ? 2 : 0;
	if (p[0] >= 0xe0 && p[0] <= 0xef) {
		/* No overlong forms, no UTF-16 surrogates. */
		lo = p[0] == 0xe0 ? 0xa0 : 0x80;
		hi = p[0] == 0xed ? 0x9f : 0xbf;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ?
		    3 : 0;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		lo = p[0] == 0xf0 ? 0x90 : 0x80;
		hi = p[0] == 0xf4 ? 0x8f : 0xbf;
		return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 &&
		    (p[3] & 0xc0) == 0x80 ? 4 : 0;
	}
	return 0;
}

/*
 * Printable text: no control character (a line break would forge a line,
 * a tab or a NUL is no SMTP), UTF-8 well formed (the relay then says
 * SMTPUTF8, and the MTA checks it).  NULL when fine.
 */
static const char *
text_problem(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p != '\0') {
		size_t n;

		if (*p == '\r' || *p == '\n')
			return "line break in an address";
		if (*p == '\t')
			return "tab in an address";
		if (*p < 0x20 || *p == 0x7f)
			return "control character in an address";
		if ((n = utf8_len(p)) == 0)
			return "malformed UTF-8 in an address";
		p += n;
	}
	return NULL;
}

static int
refuse(const char **why, const char *reason)
{
	if (why != NULL)
		*why = reason;
	return 0;
}

/*
 * "quoted"@domain: RFC 5321 qtextSMTP and quoted-pairSMTP, which the
 * control check has already narrowed to printable text.  An angle bracket
 * is legal there but not in the file (MailScanner cuts at it), escaped or
 * not.  Returns the index after the closing quote, or 0 with *why set.
 */
static size_t
quoted_local_part(const char *a, const char **why)
{
	size_t i;

	for (i = 1; a[i] != '"'; i++) {
		if (a[i] == '\0')
			return refuse(why, "unterminated quoted local part");
		if (a[i] == '\\' && a[++i] == '\0')
			return refuse(why,
			    "backslash at the end of an address");
		if (a[i] == '<' || a[i] == '>')
			return refuse(why, "angle bracket in an address");
	}
	i++;
	if (a[i] != '@' && a[i] != '\0')
		return refuse(why, "quoted local part not followed by @");
	return i;
}

int
qfile_addr_ok(const char *a, const char **why)
{
	const char	*p;
	size_t		 i = 0;

	if (a[0] == '\0')
		return refuse(why, "empty address");
	if (strlen(a) > QFILE_ADDR_MAX)
		return refuse(why, "address longer than 1000 bytes");
	if ((p = text_problem(a)) != NULL)
		return refuse(why, p);
	if (a[0] == '"' && (i = quoted_local_part(a, why)) == 0)
		return 0;
	for (; a[i] != '\0'; i++) {
		if (a[i] == ' ')
			return refuse(why, "space outside a quoted local part");
		if (a[i] == '<' || a[i] == '>')
			return refuse(why, "angle bracket in an address");
		if (a[i] == '"')
			return refuse(why, "quote outside a quoted local part");
	}
	return 1;
}

void
qfile_addr_internal(const char *a, char *out)
{
	if (*a == '"') {
		for (a++; *a != '"' && *a != '\0'; a++) {
			if (*a == '\\' && a[1] != '\0')
				a++;
			*out++ = *a;
		}
		if (*a == '"')
			a++;
	}
	strcpy(out, a);
}

/* NOTIFY=NEVER, or SUCCESS, FAILURE and DELAY, each at most once. */
static const char *
notify_problem(const char *v, size_t len)
{
	static const char *const words[] = { "SUCCESS", "FAILURE", "DELAY" };
	unsigned	 seen = 0;

	if (len == 5 && strncasecmp(v, "NEVER", 5) == 0)
		return NULL;
	for (;;) {
		const char	*comma = memchr(v, ',', len);
		size_t		 n = comma ? (size_t)(comma - v) : len, w;

		if (n == 5 && strncasecmp(v, "NEVER", 5) == 0)
			return "NOTIFY=NEVER with another value";
		for (w = 0; w < 3; w++)
			if (strlen(words[w]) == n &&
			    strncasecmp(v, words[w], n) == 0)
				break;
		if (w == 3)
			return "NOTIFY= is not NEVER or SUCCESS,FAILURE,DELAY";
		if (seen & (1u << w))
			return "NOTIFY= names a value twice";
		seen |= 1u << w;
		if (comma == NULL)
			return NULL;
		v += n + 1;
		len -= n + 1;
	}
}

/*
 * ORCPT=addr-type;value.  xtext (RFC 3461): '!' to '~' but '+' and '=',
 * which are written "+HH".  For the "utf-8" type (RFC 6533) UTF-8 is
 * allowed and escapes are "\x{HEX}", so '+' and '=' never appear bare.
 */
static const char *
orcpt_problem(const char *v, size_t len)
{
	const char	*semi = memchr(v, ';', len);
	size_t		 tlen = semi ? (size_t)(semi - v) : 0, i;
	int		 utf8 = tlen == 5 && strncasecmp(v, "utf-8", 5) == 0;
	static const char hex[] = "0123456789ABCDEFabcdef";

	if (tlen == 0 || tlen + 1 == len)
		return "ORCPT= is not addr-type;xtext";
	for (i = 0; i < tlen; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' &&
		    v[i] <= 'Z') || (v[i] >= '0' && v[i] <= '9') ||
		    v[i] == '-'))
			return "ORCPT= is not addr-type;xtext";
	for (i = tlen + 1; i < len; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c == '+' && !utf8 && i + 2 < len &&
		    strchr(hex, v[i + 1]) && strchr(hex, v[i + 2])) {
			i += 2;
			continue;
		}
		if (c >= 0x80 && utf8)
			continue;	/* well formed: text_problem said so */
		if (c < 0x21 || c > 0x7e || c == '+' || c == '=')
			return "ORCPT= is not addr-type;xtext";
	}
	return NULL;
}

int
qfile_dsn_ok(const char *dsn, const char **why)
{
	const char	*p = dsn, *bad;
	int		 notify = 0, orcpt = 0;

	if (strlen(dsn) > QFILE_LINE_MAX - 3)
		return refuse(why, "DSN parameters too long");
	if ((bad = text_problem(dsn)) != NULL)
		return refuse(why, "control character or bad UTF-8 in DSN "
		    "parameters");
	do {
		size_t len = strcspn(p, " ");

		if (len > 7 && strncasecmp(p, "NOTIFY=", 7) == 0) {
			if (notify++)
				return refuse(why, "NOTIFY= twice");
			bad = notify_problem(p + 7, len - 7);
		} else if (len > 6 && strncasecmp(p, "ORCPT=", 6) == 0) {
			if (orcpt++)
				return refuse(why, "ORCPT= twice");
			bad = orcpt_problem(p + 6, len - 6);
		} else
			bad = "not NOTIFY= or ORCPT=";
		if (bad != NULL)
			return refuse(why, bad);
		p += len;
	} while (*p++ == ' ');
	return 1;
}

/* RFC 4422 sasl-mech, in either case (clients send "plain" too). */
int
qfile_auth_ok(const char *m, const char **why)
{
	size_t n = strlen(m);

	if (n == 0 || n > 20)
		return refuse(why, "SASL method name empty or too long");
	for (size_t i = 0; i < n; i++)
		if (!((m[i] >= 'a' && m[i] <= 'z') || (m[i] >= 'A' &&
		    m[i] <= 'Z') || (m[i] >= '0' && m[i] <= '9') ||
		    m[i] == '-' || m[i] == '_'))
			return refuse(why, "SASL method name not A-Z 0-9 - _");
	return 1;
}

int
qfile_put_sender(FILE *f, const char *sender, const char **why)
{
	if (sender[0] != '\0' && !qfile_addr_ok(sender, why))
		return -1;
	fprintf(f, "S<%s>\n", sender);
	return 0;
}

int
qfile_put_auth(FILE *f, const char *method, const char **why)
{
	if (!qfile_auth_ok(method, why))
		return -1;
	fprintf(f, "A<" QFILE_AUTH_PREFIX "%s>\n", method);
	return 0;
}

int
qfile_put_rcpt(FILE *f, const char *addr, const char *dsn, const char **why)
{
	if (!qfile_addr_ok(addr, why) ||
	    (dsn != NULL && !qfile_dsn_ok(dsn, why)))
		return -1;
	if (dsn != NULL)
		fprintf(f, "E<%s>\n", dsn);
	fprintf(f, "O<%s>\n", addr);
	return 0;
}

int
qfile_put_lines(FILE *f, const char *sender, const char *method,
    const struct qrcpt *rcpts, size_t nrcpt, const unsigned char *chosen,
    const char **why)
{
	if (qfile_put_sender(f, sender, why) == -1)
		return -1;
	for (size_t i = 0; i < nrcpt; i++)
		if ((chosen == NULL || chosen[i]) && qfile_put_rcpt(f,
		    rcpts[i].addr, rcpts[i].dsn, why) == -1)
			return -1;
	/* Last: see qfile.h. */
	if (method != NULL && qfile_put_auth(f, method, why) == -1)
		return -1;
	return 0;
}

int
qfile_put_envelope(FILE *f, const struct qfile *q,
    const unsigned char *chosen, const char **why)
{
	const size_t plen = sizeof(QFILE_AUTH_PREFIX) - 1;

	/* The reader let only "sasl_method=NAME" through. */
	if (q->auth != NULL && strncmp(q->auth, QFILE_AUTH_PREFIX, plen) != 0) {
		refuse(why, "A line is not " QFILE_AUTH_PREFIX "NAME");
		return -1;
	}
	return qfile_put_lines(f, q->sender, q->auth != NULL ? q->auth + plen :
	    NULL, q->rcpts, q->nrcpt, chosen, why);
}

static int
add_rcpt(struct qfile *q, char *addr, char *dsn, size_t *cap)
{
	if (q->nrcpt == *cap) {
		size_t		 ncap = *cap ? *cap * 2 : 8;
		struct qrcpt	*n;

		if (ncap > QFILE_MAX_RCPTS)
			ncap = QFILE_MAX_RCPTS;
		if (q->nrcpt >= ncap ||
		    (n = reallocarray(q->rcpts, ncap, sizeof(*n))) == NULL)
			return -1;
		q->rcpts = n;
		*cap = ncap;
	}
	q->rcpts[q->nrcpt].addr = addr;
	q->rcpts[q->nrcpt].dsn = dsn;
	q->nrcpt++;
	return 0;
}

/*
 * E lines with no O line after them (MailScanner moves recipient lines
 * when it rewrites them): with one recipient they are its; if they all say
 * the same they belong to every recipient that has none; otherwise we
 * cannot know and ignore them.
 */
static void
place_orphans(struct qfile *q, char **orphans, size_t n)
{
	int same = 1;

	for (size_t i = 1; i < n; i++)
		same &= strcmp(orphans[i], orphans[0]) == 0;
	if (n > 0 && (q->nrcpt == 1 || same)) {
		for (size_t i = 0; i < q->nrcpt; i++)
			if (q->rcpts[i].dsn == NULL)
				q->rcpts[i].dsn = strdup(orphans[0]);
	} else if (n > 0)
		q->dsn_ignored = (int)n;
}

/* "Received: from HELO (NAME [ADDR])" -> helo, name, addr; best effort. */
static void
parse_received(struct qfile *q, const char *line)
{
	char	 helo[256], name[256], addr[64];

	if (sscanf(line, "Received: from %255s (%255s [%63[^]]])", helo, name,
	    addr) == 3) {
		const char *a = strncmp(addr, "IPv6:", 5) == 0 ? addr + 5 : addr;

		snprintf(q->helo, sizeof(q->helo), "%s", helo);
		snprintf(q->client_name, sizeof(q->client_name), "%s", name);
		snprintf(q->client_addr, sizeof(q->client_addr), "%s", a);
	}
}

static int
fail(struct qfile *q, char *err, size_t errlen, const char *why)
{
	snprintf(err, errlen, "%s", why);
	qfile_free(q);
	return -1;
}

/*
 * An envelope line's contents (between "X<" and the final '>'), held to
 * the checks the writer applies.  NULL when fine.
 */
static const char *
contents_problem(char kind, const char *v, const struct qfile *q)
{
	const char	*why = NULL;
	const size_t	 plen = sizeof(QFILE_AUTH_PREFIX) - 1;

	switch (kind) {
	case 'S':
		if (v[0] != '\0')
			qfile_addr_ok(v, &why);
		break;
	case 'O':
		qfile_addr_ok(v, &why);
		break;
	case 'E':
		qfile_dsn_ok(v, &why);
		break;
	case 'A':
		if (q->auth != NULL)
			why = "two A lines";
		else if (strncmp(v, QFILE_AUTH_PREFIX, plen) != 0)
			why = "not " QFILE_AUTH_PREFIX "NAME";
		else
			qfile_auth_ok(v + plen, &why);
		break;
	}
	return why;
}

int
qfile_read(int fd, struct qfile *q, char *err, size_t errlen)
{
	static __thread char	 line[QFILE_LINE_MAX + 1];
	struct reader		 r = { .fd = fd };
	struct stat		 st;
	char			*pending = NULL, *orphans[64], whybuf[128];
	const char		*why;
	size_t			 norphans = 0, cap = 0;
	ssize_t			 n;

	memset(q, 0, sizeof(*q));
	if (fstat(fd, &st) == -1)
		return fail(q, err, errlen, strerror(errno));
	q->size = st.st_size;
	while ((n = next_line(&r, line)) >= 0) {
		char	*v;

		if (!envelope_start(line, (size_t)n))
			break;
		/* It says it is an envelope line: it must be exactly one. */
		if (n < 3 || line[n - 1] != '>')
			why = "no closing '>'";
		else if (memchr(line, '\0', (size_t)n) != NULL)
			why = "NUL byte";
		else {
			line[n - 1] = '\0';
			why = contents_problem(line[0], line + 2, q);
		}
		if (why != NULL) {
			snprintf(whybuf, sizeof(whybuf), "%c line: %s", line[0],
			    why);
			why = whybuf;
			goto bad;
		}
		if ((v = strdup(line + 2)) == NULL)
			goto nomem;
		switch (line[0]) {
		case 'S':
			if (q->sender != NULL) {
				free(v);
				why = "two S lines";
				goto bad;
			}
			q->sender = v;
			break;
		case 'A':
			q->auth = v;
			break;
		case 'E':
			if (pending != NULL && norphans < 64)
				orphans[norphans++] = pending;
			else
				free(pending);
			pending = v;
			break;
		case 'O':
			if (add_rcpt(q, v, pending, &cap) == -1) {
				free(v);
				why = "too many recipients";
				goto bad;
			}
			pending = NULL;
			break;
		}
		r.off += n + 1;
	}
	if (pending != NULL && norphans < 64)
		orphans[norphans++] = pending;
	else
		free(pending);
	place_orphans(q, orphans, norphans);
	for (size_t i = 0; i < norphans; i++)
		free(orphans[i]);
	q->data_offset = r.off;

	if (n == -3) {
		fail(q, err, errlen, "read error");
		return -2;
	}
	if (n == -2 && r.len >= 2 && envelope_kind(r.buf[0]) &&
	    r.buf[1] == '<')
		return fail(q, err, errlen, "envelope line too long");
	if (q->sender == NULL)
		return fail(q, err, errlen, "no S<sender> line");
	if (q->nrcpt == 0)
		return fail(q, err, errlen, "no O<recipient> line");
	if (n == -1)
		return fail(q, err, errlen, "no message after the envelope");
	if (n == -2 && r.len > 0 && memchr(r.buf, '\0', r.len) != NULL)
		return fail(q, err, errlen, "binary data after the envelope");
	if (n >= 0 && memchr(line, '\0', (size_t)n) != NULL)
		return fail(q, err, errlen, "NUL byte in the first header");
	if (n > 0 && strncmp(line, "Received: from ", 15) == 0)
		parse_received(q, line);
	return 0;
nomem:
	free(pending);
	for (size_t i = 0; i < norphans; i++)
		free(orphans[i]);
	fail(q, err, errlen, "out of memory");
	return -2;
bad:
	free(pending);
	for (size_t i = 0; i < norphans; i++)
		free(orphans[i]);
	return fail(q, err, errlen, why);
}

void
qfile_free(struct qfile *q)
{
	for (size_t i = 0; i < q->nrcpt; i++) {
		free(q->rcpts[i].addr);
		free(q->rcpts[i].dsn);
	}
	free(q->rcpts);
	free(q->sender);
	free(q->auth);
	memset(q, 0, sizeof(*q));
}

/* Does the line at p (n bytes available) start with "name:"? */
static int
field_at(const char *p, size_t n, const char *name, size_t len)
{
	return n > len && strncasecmp(p, name, len) == 0 && p[len] == ':';
}

/*
 * One read at each line start (only rejected messages are searched, and
 * their headers are a few dozen lines): a line longer than the buffer is
 * skipped to its end, never taken for the next line's start.
 */
int
qfile_has_field(int fd, const struct qfile *q, const char *name)
{
	char	 buf[4096];
	size_t	 len = strlen(name);
	off_t	 off = q->data_offset;
	int	 start = 1;		/* off is at the start of a line */

	while (off - q->data_offset < QFILE_HEADERS_MAX) {
		ssize_t	 n = pread(fd, buf, sizeof(buf), off);
		char	*nl;

		if (n <= 0)
			return n == 0 ? 0 : -1;
		if (start && buf[0] == '\n')
			return 0;	/* the empty line: the body follows */
		if (start && field_at(buf, (size_t)n, name, len))
			return 1;
		nl = memchr(buf, '\n', (size_t)n);
		start = nl != NULL;
		off += nl != NULL ? nl - buf + 1 : n;
	}
	return 0;
}

int
qfile_name_ok(const char *name)
{
	int	 dots = 0;
	size_t	 len = strlen(name);

	if (len == 0 || len > 64 || name[0] == '.' || name[len - 1] == '.')
		return 0;
	for (size_t i = 0; i < len; i++) {
		char c = name[i];

		if (c == '.') {
			if (++dots > 1)
				return 0;
		} else if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		    (c >= 'a' && c <= 'z') || c == '_'))
			return 0;
	}
	return 1;
}
