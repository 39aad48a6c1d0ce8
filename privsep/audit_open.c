/*
 * Where the audit log left off, at start: the key in Milter Audit Key Dir
 * (the parent's only: 0600, ours, never passed to a child), and the chain
 * from the last file written (its last line's seq and hash, the open
 * epoch and how many lines it has).  A log we cannot continue begins a
 * new segment, linked to whatever was last; verify shows the seam.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_hooks.h"
#include "audit_int.h"
#include "log.h"

/* What the last file says about the chain. */
struct scan {
	uint64_t	 lines, broken, first_broken;
	uint64_t	 last_seq, open_epoch, epoch_lines, closed_epoch;
	int		 closed;	/* closed_epoch is valid */
	unsigned char	 last_hash[AUDIT_HASH];
	char		 key_id[17];
	uint64_t	 seconds;
	off_t		 good_size;	/* through the last complete line */
	char		 why[128];	/* of the first line that did not parse */
};

void
audit_split(const char *path, char *dir, size_t dlen, const char **base)
{
	const char *slash = strrchr(path, '/');

	*base = slash ? slash + 1 : path;
	if (slash == NULL)
		snprintf(dir, dlen, ".");
	else if (slash == path)
		snprintf(dir, dlen, "/");
	else
		snprintf(dir, dlen, "%.*s", (int)(slash - path), path);
}

int
audit_last_rotated(const char *path, char *name, size_t len)
{
	char		 dir[MSM_PATH_LEN];
	const char	*base;
	size_t		 blen;
	DIR		*d;
	struct dirent	*de;

	audit_split(path, dir, sizeof(dir), &base);
	blen = strlen(base);
	name[0] = '\0';
	if ((d = opendir(dir)) == NULL)
		return -1;
	/* base.YYYYmmddTHHMMSSZ[-N]: the newest sorts last. */
	while ((de = readdir(d)) != NULL)
		if (strncmp(de->d_name, base, blen) == 0 &&
		    de->d_name[blen] == '.' && de->d_name[blen + 1] >= '0' &&
		    de->d_name[blen + 1] <= '9' && strcmp(de->d_name, name) > 0)
			snprintf(name, len, "%s", de->d_name);
	closedir(d);
	return name[0] ? 0 : -1;
}

/* ---- the key ---- */

static int
key_file_fit(int fd, const char *path)
{
	struct stat st;

	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		log_warnx("audit: %s is not a regular file: not used", path);
		return 0;
	}
	if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
		log_warnx("audit: %s must be ours and mode 0600 (it is uid %u, "
		    "mode %04o): not used", path, (unsigned)st.st_uid,
		    (unsigned)(st.st_mode & 07777));
		return 0;
	}
	return 1;
}

/* The public tree beside the key, checked against it; -1 when unfit. */
static int
open_tree(const char *dir, const struct audit_key *k)
{
	char		 path[MSM_PATH_LEN + 32];
	unsigned char	 h[AUDIT_TREE_HEADER];
	uint64_t	 leaves = 0;
	int		 fd;

	snprintf(path, sizeof(path), "%s/%s", dir, AUDIT_TREE_NAME);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		log_warn("audit: %s (checkpoints need it)", path);
		return -1;
	}
	if (pread(fd, h, sizeof(h), 0) == (ssize_t)sizeof(h))
		for (int i = 7; i >= 0; i--)
			leaves = leaves << 8 | h[8 + i];
	if (memcmp(h, AUDIT_TREE_MAGIC, 8) != 0 || leaves != k->leaves ||
	    memcmp(h + 16, k->root, AUDIT_HASH) != 0) {
		log_warnx("audit: %s does not belong to %s: no checkpoints",
		    path, AUDIT_KEY_NAME);
		close(fd);
		return -1;
	}
	return fd;
}

static void
say_unkeyed(struct audit *a, const struct msm_settings *s, const char *why)
{
	log_warnx("audit log %s: NOT KEYED (%s): records are chained but "
	    "carry no MAC or checkpoint; make a key with msmilter-audit "
	    "keygen -k %s -o DIR", a->path, why, s->milter_audit_key_dir);
}

void
audit_open_key(struct audit *a, const struct msm_settings *s)
{
	char	 path[MSM_PATH_LEN + 32], why[MSM_PATH_LEN + 300];
	int	 fd;

	audit_close_key(a);
	a->seconds = s->milter_audit_epoch;
	a->start = 0;
	snprintf(path, sizeof(path), "%s/%s", s->milter_audit_key_dir,
	    AUDIT_KEY_NAME);
	if ((fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC)) == -1) {
		snprintf(why, sizeof(why), "%s: %s", path, strerror(errno));
		say_unkeyed(a, s, why);
		return;
	}
	if (!key_file_fit(fd, path) ||
	    audit_key_read(fd, &a->key, why, sizeof(why)) == -1 ||
	    a->key.epoch >= a->key.leaves) {
		if (a->key.epoch >= a->key.leaves && a->key.leaves > 0)
			snprintf(why, sizeof(why), "the key expired");
		say_unkeyed(a, s, why);
		sodium_memzero(&a->key, sizeof(a->key));
		close(fd);
		return;
	}
	a->keyfd = fd;
	a->keyed = 1;
	a->treefd = open_tree(s->milter_audit_key_dir, &a->key);
	a->seconds = a->key.seconds;
	a->start = a->key.start;
	audit_key_id(a->key.root, a->key_id);
	audit_use_key(a);
	if (a->key.seconds != s->milter_audit_epoch)
		log_warnx("audit: Milter Audit Epoch is %u s but key %s was "
		    "made for %u s epochs: the key's epochs are used",
		    s->milter_audit_epoch, a->key_id, a->key.seconds);
	log_info("audit log %s: keyed (key %s, epoch %llu of %llu, %u s "
	    "epochs)", a->path, a->key_id, (unsigned long long)a->key.epoch,
	    (unsigned long long)a->key.leaves, a->key.seconds);
}

void
audit_close_key(struct audit *a)
{
	sodium_memzero(&a->key, sizeof(a->key));
	sodium_memzero(a->mac_key, sizeof(a->mac_key));
	if (a->keyfd != -1)
		close(a->keyfd);
	if (a->treefd != -1)
		close(a->treefd);
	a->keyfd = a->treefd = -1;
	a->keyed = 0;
	snprintf(a->key_id, sizeof(a->key_id), "none");
}

/* ---- the chain ---- */

static uint64_t
num(const struct audit_line *l, const char *key)
{
	const struct audit_field *f = audit_line_get(l, key);

	return f != NULL && f->kind == JK_NUM ? f->num : 0;
}

static void
scan_line(struct scan *sc, const struct audit_line *l)
{
	int first = sc->lines == 1;

	if (strcmp(l->event, "file_start") == 0 ||
	    strcmp(l->event, "start") == 0) {
		snprintf(sc->key_id, sizeof(sc->key_id), "%s",
		    audit_line_str(l, "key"));
		sc->seconds = num(l, "epoch_seconds");
	}
	sc->last_seq = l->seq;
	if (first && strcmp(l->event, "file_start") == 0) {
		sc->open_epoch = l->epoch;
		sc->epoch_lines = num(l, "epoch_lines") + 1;
	} else if (first || l->epoch > sc->open_epoch) {
		sc->open_epoch = l->epoch;
		sc->epoch_lines = 1;
	} else
		sc->epoch_lines++;
	if (strcmp(l->event, "epoch_close") == 0) {
		sc->closed = 1;
		sc->closed_epoch = l->epoch;
	}
}

static void
scan_text(struct scan *sc, struct audit_line *l, const char *line, size_t n)
{
	char why[128];

	sc->lines++;
	audit_hash(line, n, sc->last_hash);
	if (audit_line_parse(line, n, l, why, sizeof(why)) == 0) {
		scan_line(sc, l);
		return;
	}
	sc->last_seq++;
	if (sc->broken++ == 0) {
		sc->first_broken = sc->lines;
		snprintf(sc->why, sizeof(sc->why), "%s", why);
	}
}

/* Every line of the file on fd (from its start), without changing it. */
static int
scan_file(int fd, struct scan *sc)
{
	struct audit_line	 l = { 0 };
	char			*line = NULL;
	size_t			 cap = 0;
	ssize_t			 n;
	int			 dupfd = dup(fd);
	FILE			*f;

	memset(sc, 0, sizeof(*sc));
	snprintf(sc->key_id, sizeof(sc->key_id), "none");
	if (dupfd == -1 || lseek(dupfd, 0, SEEK_SET) == -1 ||
	    (f = fdopen(dupfd, "r")) == NULL) {
		if (dupfd != -1)
			close(dupfd);
		return -1;
	}
	while ((n = getline(&line, &cap, f)) > 0) {
		if (line[n - 1] != '\n')
			break;		/* a torn last line: not part of it */
		scan_text(sc, &l, line, (size_t)n - 1);
		sc->good_size += n;
	}
	free(line);
	audit_line_free(&l);
	fclose(f);
	if (sc->closed && sc->closed_epoch == sc->open_epoch) {
		sc->open_epoch++;	/* only its checkpoint may follow */
		sc->epoch_lines = 0;
	}
	return 0;
}

/* A fresh chain: this moment's epoch; keys we never used are wiped. */
static void
fresh_epoch(struct audit *a)
{
	uint64_t now = audit_epoch_at(a->start, a->seconds,
	    audit_now_us() / 1000000);

	a->epoch = a->keyed && a->key.epoch > now ? a->key.epoch : now;
	a->epoch_lines = 0;
	while (a->keyed && a->key.epoch < a->epoch)
		audit_key_evolve(&a->key);
	if (a->keyed)
		audit_use_key(a);
}

/* The key must be the open epoch's; evolve it, or say the log is behind. */
static void
align_key(struct audit *a)
{
	if (!a->keyed)
		return;
	while (a->key.epoch < a->epoch && a->key.epoch + 1 < a->key.leaves)
		audit_key_evolve(&a->key);
	if (a->key.epoch != a->epoch) {
		log_warnx("AUDIT LOG BEHIND ITS KEY: the log's open epoch is "
		    "%llu, the key's %llu: sealed records are missing from %s "
		    "(restored from a backup?); continuing at epoch %llu",
		    (unsigned long long)a->epoch,
		    (unsigned long long)a->key.epoch, a->path,
		    (unsigned long long)a->key.epoch);
		a->epoch = a->key.epoch;
		a->epoch_lines = 0;
	}
	audit_use_key(a);
}

/* Take the chain from sc: the next record continues it. */
static void
take_chain(struct audit *a, const struct scan *sc)
{
	a->seq = sc->last_seq + 1;
	memcpy(a->prev, sc->last_hash, AUDIT_HASH);
	a->epoch = sc->open_epoch;
	a->epoch_lines = sc->epoch_lines;
}

/* Another key, epoch length or a broken last file: a segment of its own. */
static int
same_segment(const struct audit *a, const struct scan *sc, const char *file)
{
	if (sc->broken > 0) {
		log_warnx("AUDIT LOG DAMAGED: %s: %llu line%s do not parse "
		    "(first: line %llu: %s); a new file begins", file,
		    (unsigned long long)sc->broken, sc->broken == 1 ? "" : "s",
		    (unsigned long long)sc->first_broken, sc->why);
		return 0;
	}
	if (strcmp(sc->key_id, a->key_id) != 0 || sc->seconds != a->seconds) {
		log_notice("audit: %s was written with key %s and %llu s "
		    "epochs, now key %s and %u s: a new segment begins", file,
		    sc->key_id, (unsigned long long)sc->seconds, a->key_id,
		    a->seconds);
		return 0;
	}
	return 1;
}

static void
make_dir(const char *path)
{
	char		 dir[MSM_PATH_LEN];
	const char	*base;

	audit_split(path, dir, sizeof(dir), &base);
	if (mkdir(dir, 0750) == 0)
		log_info("audit: created %s", dir);
}

/* No current file: continue from the newest rotated one, if any. */
static int
open_after_rotated(struct audit *a)
{
	char		 name[256], dir[MSM_PATH_LEN], path[MSM_PATH_LEN + 300];
	const char	*base;
	struct scan	 sc;
	int		 fd;

	if (audit_last_rotated(a->path, name, sizeof(name)) == -1) {
		fresh_epoch(a);
		return audit_new_file(a, "");
	}
	audit_split(a->path, dir, sizeof(dir), &base);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1 ||
	    scan_file(fd, &sc) == -1) {
		log_warn("audit: cannot read %s; a new chain begins", path);
		if (fd != -1)
			close(fd);
		fresh_epoch(a);
		return audit_new_file(a, "");
	}
	close(fd);
	take_chain(a, &sc);
	if (same_segment(a, &sc, path))
		align_key(a);
	else
		fresh_epoch(a);
	return audit_new_file(a, name);
}

/* A torn last line (a crash during a write) is not part of the chain. */
static int
cut_torn(struct audit *a, int fd, off_t good)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return -1;
	if (st.st_size <= good)
		return 0;
	log_warnx("audit: removing a torn last line of %lld bytes from %s (a "
	    "crash during a write)", (long long)(st.st_size - good), a->path);
	return ftruncate(fd, good);
}

/* The current file: continue it, or move it aside for a new segment. */
static int
continue_file(struct audit *a, int fd)
{
	struct scan	 sc;
	char		 name[256] = "";

	if (scan_file(fd, &sc) == -1 || cut_torn(a, fd, sc.good_size) == -1) {
		log_warn("audit: cannot read %s", a->path);
		close(fd);
		fresh_epoch(a);
		return -1;
	}
	if (sc.lines == 0) {		/* empty: as if new */
		fresh_epoch(a);
		audit_last_rotated(a->path, name, sizeof(name));
		return audit_start_file(a, fd, name);
	}
	a->fd = fd;
	a->size = (uint64_t)sc.good_size;
	take_chain(a, &sc);
	if (same_segment(a, &sc, a->path)) {
		align_key(a);
		return 0;
	}
	close(fd);
	a->fd = -1;
	fresh_epoch(a);
	if (audit_rename_aside(a, name, sizeof(name)) == -1) {
		log_warn("audit: cannot move %s aside", a->path);
		return -1;
	}
	return audit_new_file(a, name);
}

int
audit_open_log(struct audit *a)
{
	struct stat	 st;
	int		 fd;

	make_dir(a->path);
	fd = open(a->path, O_RDWR | O_APPEND | O_NOFOLLOW | O_NONBLOCK |
	    O_CLOEXEC);
	if (fd == -1 && errno == ENOENT)
		return open_after_rotated(a);
	if (fd != -1 && (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode))) {
		log_warnx("audit: %s is not a regular file: not used", a->path);
		close(fd);
		fd = -1;
	} else if (fd == -1)
		log_warn("audit: cannot open %s", a->path);
	if (fd == -1) {
		fresh_epoch(a);
		return -1;
	}
	return continue_file(a, fd);
}

/* msmilter -t: where the log goes and whether it is keyed. */
void
audit_doctor(const struct msm_settings *s, FILE *out)
{
	struct audit_key	 k;
	char			 path[MSM_PATH_LEN + 32], why[MSM_PATH_LEN + 300] = "";
	int			 fd;

	if (s->milter_audit_log[0] == '\0') {
		fprintf(out, "# audit log: off (Milter Audit Log is empty)\n");
		return;
	}
	snprintf(path, sizeof(path), "%s/%s", s->milter_audit_key_dir,
	    AUDIT_KEY_NAME);
	if ((fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)) == -1)
		snprintf(why, sizeof(why), "%s: %s", path, strerror(errno));
	else if (!key_file_fit(fd, path))
		snprintf(why, sizeof(why), "%s: not mode 0600 or not ours",
		    path);
	else if (audit_key_read(fd, &k, why, sizeof(why)) == 0) {
		char id[17];

		audit_key_id(k.root, id);
		fprintf(out, "# audit log: %s, keyed: key %s, epoch %llu of "
		    "%llu (%u s epochs)\n", s->milter_audit_log, id,
		    (unsigned long long)k.epoch, (unsigned long long)k.leaves,
		    k.seconds);
		sodium_memzero(&k, sizeof(k));
	}
	if (fd != -1)
		close(fd);
	if (why[0] != '\0')
		fprintf(out, "# audit log: %s, NOT KEYED (%s): records are "
		    "chained but carry no MAC or checkpoint; make a key with "
		    "msmilter-audit keygen -k %s -o DIR\n", s->milter_audit_log,
		    why, s->milter_audit_key_dir);
}
