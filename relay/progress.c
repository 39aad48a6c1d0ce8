/*
 * Which recipients of a milterout file are done, kept on disk beside it
 * as ".progress.NAME" (a name neither MailScanner nor our own scan takes),
 * so that a relay killed at any point, restarted, neither delivers a
 * recipient twice nor loses one, and requeues a rejection once.
 *
 * The file is append-only: a first line naming the milterout file it
 * belongs to (device, inode, size, mtime, recipients: a new file under
 * an old name does not inherit it), then one line per step, each written
 * whole and fsynced before the step after it is taken:
 *
 *   D 0,2          delivered: the MTA accepted these recipients
 *   Q TOKEN 1 why  requeue asked of the spooler under TOKEN (why: the
 *                  MTA's reply, for the Relay-Reject header)
 *   q TOKEN ID     the spooler committed it as milterin/ID
 *   f TOKEN        the spooler refused it: the recipients are pending again
 *   X 1 why        rejected again although MailScanner already had it
 *                  quarantined: not requeued, the file goes to quarantine
 *
 * A Q without its q or f is asked again with the same token; the spooler
 * remembers the tokens it committed and answers a repeat without writing
 * a second file.  An incomplete last line is a write the kill cut short,
 * before anything relied on it: ignored.  Written only by us, so anything
 * else (a line we would not write, an index out of range) is damage: the
 * file is left alone and the message waits for the admin.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "relay.h"

#define MAGIC		"msmilter-relay-progress 1"
#define PROGRESS_MAX	(64u << 20)	/* 100000 recipients, many times */

/* ---- applying a line: the reader's and the writer's one parser ---- */

/* "0,2,17" -> indexes below nrcpt; NULL when malformed. */
static uint32_t *
parse_list(const char *s, size_t nrcpt, size_t *n, const char **end)
{
	uint32_t	*idx = NULL;
	size_t		 cap = 0;

	*n = 0;
	for (;;) {
		char		*e;
		unsigned long	 v;

		if (*s < '0' || *s > '9')
			break;
		errno = 0;
		v = strtoul(s, &e, 10);
		if (errno != 0 || v >= nrcpt)
			break;
		if (*n == cap) {
			size_t	 ncap = cap ? cap * 2 : 8;
			void	*p = reallocarray(idx, ncap, sizeof(*idx));

			if (p == NULL)
				break;
			idx = p;
			cap = ncap;
		}
		idx[(*n)++] = (uint32_t)v;
		if (*e != ',') {
			*end = e;
			return idx;
		}
		s = e + 1;
	}
	free(idx);
	return NULL;
}

static int
token_ok(const char *t)
{
	size_t n = strspn(t, "0123456789abcdef");

	return n == PROGRESS_TOKEN_LEN && (t[n] == ' ' || t[n] == '\0');
}

static struct intent *
find_intent(struct progress *pg, const char *token)
{
	for (size_t i = 0; i < pg->nopen; i++)
		if (memcmp(pg->open[i].token, token, PROGRESS_TOKEN_LEN) == 0)
			return &pg->open[i];
	return NULL;
}

static void
set_state(struct progress *pg, const uint32_t *idx, size_t n, int state)
{
	for (size_t i = 0; i < n; i++)
		pg->state[idx[i]] = (unsigned char)state;
}

/* "Q TOKEN LIST why": a requeue asked and not answered yet. */
static int
apply_intent(struct progress *pg, const char *s)
{
	struct intent	*in;
	const char	*end;
	void		*p;

	if (!token_ok(s) || find_intent(pg, s) != NULL)
		return -1;
	p = reallocarray(pg->open, pg->nopen + 1, sizeof(*pg->open));
	if (p == NULL)
		return -1;
	pg->open = p;
	in = &pg->open[pg->nopen];
	memset(in, 0, sizeof(*in));
	memcpy(in->token, s, PROGRESS_TOKEN_LEN);
	if ((in->idx = parse_list(s + PROGRESS_TOKEN_LEN + 1, pg->nrcpt,
	    &in->n, &end)) == NULL || *end != ' ')
		return -1;
	snprintf(in->reply, sizeof(in->reply), "%s", end + 1);
	pg->nopen++;
	return 0;
}

/* "q TOKEN ID" or "f TOKEN": the spooler's answer to a Q. */
static int
apply_answer(struct progress *pg, const char *s, int committed)
{
	struct intent *in;

	if (!token_ok(s) || (in = find_intent(pg, s)) == NULL)
		return -1;
	if (committed)
		set_state(pg, in->idx, in->n, RS_REQUEUED);
	free(in->idx);
	*in = pg->open[--pg->nopen];
	return 0;
}

/* "D LIST" or "X LIST why". */
static int
apply_list(struct progress *pg, const char *s, int state)
{
	const char	*end;
	size_t		 n;
	uint32_t	*idx = parse_list(s, pg->nrcpt, &n, &end);

	if (idx == NULL || (state == RS_DELIVERED ? *end != '\0' :
	    *end != ' ')) {
		free(idx);
		return -1;
	}
	set_state(pg, idx, n, state);
	if (state == RS_REFUSED)
		snprintf(pg->refused, sizeof(pg->refused), "%s", end + 1);
	free(idx);
	return 0;
}

/* One complete line, without its LF.  -1 when we never write it so. */
static int
apply_line(struct progress *pg, const char *line)
{
	if (line[0] == '\0' || line[1] != ' ')
		return -1;
	switch (line[0]) {
	case 'D':
		return apply_list(pg, line + 2, RS_DELIVERED);
	case 'X':
		return apply_list(pg, line + 2, RS_REFUSED);
	case 'Q':
		return apply_intent(pg, line + 2);
	case 'q':
		return line[2 + PROGRESS_TOKEN_LEN] == ' ' &&
		    line[3 + PROGRESS_TOKEN_LEN] != '\0' ?
		    apply_answer(pg, line + 2, 1) : -1;
	case 'f':
		return line[2 + PROGRESS_TOKEN_LEN] == '\0' ?
		    apply_answer(pg, line + 2, 0) : -1;
	}
	return -1;
}

/* ---- reading ---- */

static void
header(const struct progress *pg, char *buf, size_t len)
{
	snprintf(buf, len, MAGIC " %ju %ju %jd %jd %ld %zu",
	    (uintmax_t)pg->of.st_dev, (uintmax_t)pg->of.st_ino,
	    (intmax_t)pg->of.st_size, (intmax_t)pg->of.st_mtim.tv_sec,
	    (long)pg->of.st_mtim.tv_nsec, pg->nrcpt);
}

/* Every complete line after the first; 0, or -1 with why. */
static int
apply_all(struct progress *pg, char *text, size_t len, char *why,
    size_t wlen)
{
	char	*line = text, *nl;
	size_t	 lineno = 1;

	while ((nl = memchr(line, '\n', len - (size_t)(line - text))) !=
	    NULL) {
		int bad;

		*nl = '\0';
		lineno++;
		bad = memchr(line, '\0', (size_t)(nl - line)) != NULL ||
		    apply_line(pg, line) == -1;
		*nl = '\n';
		if (bad) {
			snprintf(why, wlen, "line %zu is not one we write",
			    lineno);
			return -1;
		}
		line = nl + 1;
	}
	return 0;		/* what is left is a write cut short */
}

static char *
read_all(int fd, size_t size, char *why, size_t wlen)
{
	char	*buf = malloc(size + 1);
	size_t	 got = 0;

	if (buf == NULL) {
		snprintf(why, wlen, "out of memory");
		return NULL;
	}
	while (got < size) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);

		if (n <= 0) {
			snprintf(why, wlen, "read: %s", n == 0 ?
			    "shorter than it was" : strerror(errno));
			free(buf);
			return NULL;
		}
		got += (size_t)n;
	}
	buf[size] = '\0';
	return buf;
}

/*
 * Open what is at our name: a plain file of ours, or nothing.  1 with
 * *fdp, 0 when there is none, -1 with why.
 */
static int
open_progress(const struct relay *r, const struct progress *pg, int *fdp,
    struct stat *st, char *why, size_t wlen)
{
	int fd = openat(r->outdir, pg->file, O_RDONLY | O_NOFOLLOW |
	    O_CLOEXEC | O_NONBLOCK);

	if (fd == -1 && errno == ENOENT)
		return 0;
	if (fd == -1 || fstat(fd, st) == -1) {
		snprintf(why, wlen, "%s", strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode) || st->st_uid != r->uid ||
	    st->st_nlink != 1 || (size_t)st->st_size > PROGRESS_MAX) {
		snprintf(why, wlen, "not a plain file of ours");
		close(fd);
		return -1;
	}
	*fdp = fd;
	return 1;
}

int
progress_load(const struct relay *r, const char *name, const struct stat *of,
    size_t nrcpt, struct progress *pg, char *why, size_t wlen)
{
	struct stat	 st;
	char		 want[160], *text, *nl;
	int		 fd, rc;

	memset(pg, 0, sizeof(*pg));
	pg->fd = -1;
	pg->of = *of;
	pg->nrcpt = nrcpt;
	snprintf(pg->file, sizeof(pg->file), PROGRESS_PREFIX "%s", name);
	if ((pg->state = calloc(nrcpt ? nrcpt : 1, 1)) == NULL) {
		snprintf(why, wlen, "out of memory");
		return -1;
	}
	if ((rc = open_progress(r, pg, &fd, &st, why, wlen)) <= 0)
		return rc;
	text = read_all(fd, (size_t)st.st_size, why, wlen);
	close(fd);
	if (text == NULL)
		return -1;
	header(pg, want, sizeof(want));
	nl = strchr(text, '\n');
	if (nl == NULL || (size_t)(nl - text) != strlen(want) ||
	    memcmp(text, want, strlen(want)) != 0) {
		/*
		 * Cut short before anything was recorded, or left by an
		 * earlier file of this name: nothing in it is about this one.
		 */
		free(text);
		if (unlinkat(r->outdir, pg->file, 0) == -1 && errno != ENOENT) {
			snprintf(why, wlen, "stale, and cannot remove it: %s",
			    strerror(errno));
			return -1;
		}
		log_info("%s: removed %s, left by an earlier file of that name",
		    name, pg->file);
		return 0;
	}
	pg->exists = 1;
	rc = apply_all(pg, nl + 1, (size_t)st.st_size - (size_t)(nl + 1 -
	    text), why, wlen);
	free(text);
	return rc;
}

/* ---- writing ---- */

/* A reply as the rest of a line: printable ASCII only. */
static void
put_reply(FILE *f, const char *reply)
{
	fputc(' ', f);
	for (; *reply != '\0'; reply++)
		fputc(*reply >= 0x20 && *reply < 0x7f ? *reply : ' ', f);
}

static void
put_list(FILE *f, const uint32_t *idx, size_t n)
{
	for (size_t i = 0; i < n; i++)
		fprintf(f, "%s%" PRIu32, i ? "," : "", idx[i]);
}

void
progress_token(char token[PROGRESS_TOKEN_LEN + 1])
{
	unsigned char raw[PROGRESS_TOKEN_LEN / 2];

	randombytes_buf(raw, sizeof(raw));
	sodium_bin2hex(token, PROGRESS_TOKEN_LEN + 1, raw, sizeof(raw));
}

void
progress_put(struct progress_rec *w, int kind, const char *token,
    const uint32_t *idx, size_t n, const char *text)
{
	if (w->f == NULL && (w->f = open_memstream(&w->buf, &w->len)) ==
	    NULL) {
		w->failed = 1;
		return;
	}
	fprintf(w->f, "%c", kind);
	if (token != NULL)
		fprintf(w->f, " %.*s", PROGRESS_TOKEN_LEN, token);
	if (idx != NULL) {
		fputc(' ', w->f);
		put_list(w->f, idx, n);
	}
	if (text != NULL)
		put_reply(w->f, text);
	fputc('\n', w->f);
}

static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n == -1)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/*
 * Created with its first line, the directory synced so that it stays; a
 * half-made one is removed (nothing relied on it yet).
 */
static int
create(const struct relay *r, struct progress *pg)
{
	char	 first[200];
	size_t	 n;
	int	 e;

	pg->fd = openat(r->outdir, pg->file, O_WRONLY | O_CREAT | O_EXCL |
	    O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (pg->fd == -1)
		return -1;
	header(pg, first, sizeof(first) - 1);
	n = strlen(first);
	first[n++] = '\n';
	if (write_all(pg->fd, first, n) == 0 && fsync(pg->fd) == 0 &&
	    fsync(r->outdir) == 0) {
		pg->exists = 1;
		return 0;
	}
	e = errno;
	unlinkat(r->outdir, pg->file, 0);
	close(pg->fd);
	pg->fd = -1;
	errno = e;
	return -1;
}

static int
open_for_append(const struct relay *r, struct progress *pg)
{
	if (!pg->exists)
		return create(r, pg);
	pg->fd = openat(r->outdir, pg->file, O_WRONLY | O_APPEND | O_NOFOLLOW |
	    O_CLOEXEC | O_NONBLOCK);
	return pg->fd == -1 ? -1 : 0;
}

/*
 * The lines as one buffer, applied to pg: what we could not read back,
 * we do not write.
 */
static int
rec_apply(struct progress *pg, struct progress_rec *w, char *why,
    size_t wlen)
{
	int bad = w->failed;

	if (w->f == NULL && w->buf == NULL)
		return 0;		/* nothing put */
	if (w->f != NULL)
		bad |= fclose(w->f) != 0;
	w->f = NULL;
	if (bad) {
		snprintf(why, wlen, "out of memory");
		return -1;
	}
	return apply_all(pg, w->buf, w->len, why, wlen);
}

static void
rec_free(struct progress_rec *w)
{
	if (w->f != NULL)
		fclose(w->f);
	free(w->buf);
	memset(w, 0, sizeof(*w));
}

int
progress_commit(const struct relay *r, struct progress *pg,
    struct progress_rec *w, char *why, size_t wlen)
{
	int rc = -1;

	if (w->f == NULL && w->buf == NULL)
		return 0;
	if (rec_apply(pg, w, why, wlen) == -1)
		;
	else if ((pg->fd == -1 && open_for_append(r, pg) == -1) ||
	    write_all(pg->fd, w->buf, w->len) == -1 || fsync(pg->fd) == -1)
		snprintf(why, wlen, "%s: %s", pg->file, strerror(errno));
	else
		rc = 0;
	rec_free(w);
	return rc;
}

void
progress_note(struct progress *pg, struct progress_rec *w)
{
	char why[64];

	if (rec_apply(pg, w, why, sizeof(why)) == -1)
		log_warnx("%s: %s", pg->file, why);
	rec_free(w);
}

/* After the milterout file went: its progress goes too. */
void
progress_remove(const struct relay *r, struct progress *pg)
{
	if (pg->exists && unlinkat(r->outdir, pg->file, 0) == -1 &&
	    errno != ENOENT)
		log_warn("%s: cannot remove it (the next rescan tries again)",
		    pg->file);
	pg->exists = 0;
}

/*
 * Forget the requeues after the first keep (applied in memory, never
 * written): their recipients are pending again.
 */
void
progress_drop_open(struct progress *pg, size_t keep)
{
	while (pg->nopen > keep)
		free(pg->open[--pg->nopen].idx);
}

void
progress_free(struct progress *pg)
{
	if (pg->fd != -1)
		close(pg->fd);
	for (size_t i = 0; i < pg->nopen; i++)
		free(pg->open[i].idx);
	free(pg->open);
	free(pg->state);
	memset(pg, 0, sizeof(*pg));
	pg->fd = -1;
}

/*
 * A rescan found entry: if it is a progress file whose milterout file is
 * gone (the relay died between removing one and the other) and no worker
 * has that name, remove it.  The main thread's, so no worker starts on
 * the name meanwhile.
 */
void
progress_sweep(struct relay *r, const char *entry)
{
	const char	*base = entry + strlen(PROGRESS_PREFIX);
	struct pending	*p;

	if (strncmp(entry, PROGRESS_PREFIX, strlen(PROGRESS_PREFIX)) != 0 ||
	    !qfile_name_ok(base))
		return;
	if ((p = pending_find(r, base)) != NULL && !pending_waiting(p))
		return;
	if (faccessat(r->outdir, base, F_OK, AT_SYMLINK_NOFOLLOW) == 0 ||
	    errno != ENOENT)
		return;
	if (unlinkat(r->outdir, entry, 0) == 0)
		log_info("%s: removed %s, whose file is gone", base, entry);
	else if (errno != ENOENT)
		log_warn("cannot remove %s", entry);
}
