/*
 * Strict queue file reader (see qfile.h).  Every byte of the envelope is
 * checked: no NUL, no control character, exactly one S line, at least one
 * O line.  E lines belong to the O line after them; where MailScanner left
 * E lines without one, we apply them only when the answer is certain.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* ^[OSEA]<...>$ with printable contents (UTF-8 allowed, no controls). */
static int
envelope_line(const char *line, size_t len)
{
	if (len < 3 || !envelope_kind(line[0]) || line[1] != '<' ||
	    line[len - 1] != '>')
		return 0;
	for (size_t i = 2; i + 1 < len; i++) {
		unsigned char c = (unsigned char)line[i];

		if (c < 0x20 || c == 0x7f)
			return 0;
	}
	return 1;
}

static char *
inner(const char *line, size_t len)
{
	return strndup(line + 2, len - 3);
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

int
qfile_read(int fd, struct qfile *q, char *err, size_t errlen)
{
	static __thread char	 line[QFILE_LINE_MAX + 1];
	struct reader		 r = { .fd = fd };
	struct stat		 st;
	char			*pending = NULL, *orphans[64];
	const char		*why;
	size_t			 norphans = 0, cap = 0;
	ssize_t			 n;

	memset(q, 0, sizeof(*q));
	if (fstat(fd, &st) == -1)
		return fail(q, err, errlen, strerror(errno));
	q->size = st.st_size;
	while ((n = next_line(&r, line)) >= 0) {
		char	*v;

		if (!envelope_line(line, (size_t)n))
			break;
		if ((v = inner(line, (size_t)n)) == NULL)
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
			free(q->auth);
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
