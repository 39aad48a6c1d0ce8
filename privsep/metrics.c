/*
 * Prometheus textfile metrics (Milter Metrics File): the parent counts the
 * events the children report (privsep/audit.c hands each one here, and the
 * children send them when the audit log or the metrics are on), the child
 * restarts, and the queue files, and rewrites the file atomically (a temp
 * file in the same directory, then rename) every Milter Metrics Interval
 * seconds and at stop.
 *
 * The parent keeps no capability to read other users' directories
 * (common/caps.c), so it opens milterin and milterout at start, while it
 * is still fully root, and counts their entries through those descriptors
 * (reading an open directory needs no permission).  Looking a name up in
 * them would, so a file's age counts from the first scan that saw it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "audit_ipc.h"
#include "log.h"
#include "metrics.h"

static struct {
	const struct parent	*p;
	int			 on;
	struct metrics_counts	 c;
	time_t			 next;
	int			 qfd[2];
	char			 qpath[2][MSM_PATH_LEN];
	int			 failed;	/* said once */
} m = { .qfd = { -1, -1 } };

static const char *const message_results[] = { "committed", "rejected",
    "tempfailed", "accepted_loopback" };
static const char *const relay_results[] = { "delivered", "deferred",
    "requeued", "quarantined" };
static const char *const queue_names[] = { "milterin", "milterout" };
/*
 * Bucket bounds of msmilter_commit_seconds: a durable commit on an SSD or
 * a disk with a write cache takes well under a millisecond to a few (0.7
 * ms measured here, ext4 on a VM disk), on a plain disk some tens;
 * seconds mean trouble, and Milter Commit Timeout (60 s by default) ends
 * the wait.
 */
static const uint64_t commit_bounds_us[METRICS_COMMIT_BUCKETS] = {
	100, 250, 500,
	1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000, 60000000,
};
/* As spooler/scan.c names them in the scan event. */
static const char *const scan_results[] = { "clean", "virus", "tempfail",
    "oversize" };

static const char *
queue_path(int i)
{
	return i == 0 ? m.p->set.incoming_queue_dir :
	    m.p->set.outgoing_queue_dir;
}

static void
open_queues(void)
{
	for (int i = 0; i < 2; i++) {
		if (m.qfd[i] != -1 && strcmp(m.qpath[i], queue_path(i)) == 0)
			continue;
		if (m.qfd[i] != -1)
			close(m.qfd[i]);
		snprintf(m.qpath[i], sizeof(m.qpath[i]), "%s", queue_path(i));
		m.qfd[i] = open(m.qpath[i], O_RDONLY | O_DIRECTORY |
		    O_CLOEXEC);
	}
}

void
metrics_start(const struct parent *p)
{
	m.p = p;
	m.c.started = time(NULL);
	open_queues();	/* while we may still read any directory */
	m.on = p->set.milter_metrics_file[0] != '\0';
	m.next = 0;
	if (m.on)
		log_info("metrics: %s every %u s", p->set.milter_metrics_file,
		    p->set.milter_metrics_interval);
}

void
metrics_event(uint32_t event, const char *result)
{
	if (event == AUDIT_EV_SCAN) {
		for (int i = 0; i < 4; i++)
			if (strcmp(result, scan_results[i]) == 0)
				m.c.scan[i]++;
		return;
	}
	switch (event) {
	case AUDIT_EV_COMMIT:		m.c.messages[0]++; break;
	case AUDIT_EV_REJECT:		m.c.messages[1]++; break;
	case AUDIT_EV_TEMPFAIL:		m.c.messages[2]++; break;
	case AUDIT_EV_ACCEPT_LOOPBACK:	m.c.messages[3]++; break;
	case AUDIT_EV_DELIVERED:	m.c.relay[0]++; break;
	case AUDIT_EV_DEFERRED:		m.c.relay[1]++; break;
	case AUDIT_EV_REQUEUED:		m.c.relay[2]++; break;
	case AUDIT_EV_QUARANTINED:	m.c.relay[3]++; break;
	default: break;
	}
}

void
metrics_commit_time(uint64_t usec)
{
	size_t i = 0;

	while (i < METRICS_COMMIT_BUCKETS && usec > commit_bounds_us[i])
		i++;
	if (i < METRICS_COMMIT_BUCKETS)
		m.c.commit_le[i]++;
	m.c.commit_count++;
	m.c.commit_sum_us += usec;
}

uint64_t
metrics_commit_quantile(const struct metrics_counts *c, double q)
{
	uint64_t	 rank, cum = 0;

	if (c->commit_count == 0)
		return 0;
	/* The smallest bucket holding at least q of the commits. */
	rank = (uint64_t)(q * (double)c->commit_count + 0.999999);
	if (rank == 0)
		rank = 1;
	for (size_t i = 0; i < METRICS_COMMIT_BUCKETS; i++) {
		cum += c->commit_le[i];
		if (cum >= rank)
			return commit_bounds_us[i];
	}
	return UINT64_MAX;
}

void
metrics_child_exit(const char *child)
{
	if (m.p == NULL || m.p->terminating)
		return;
	for (int i = 0; i < CHILD_COUNT; i++) {
		const struct child *c = &m.p->children[i];

		if (c->name != NULL && strcmp(c->name, child) == 0 &&
		    (!c->stopping || c->restart_now))
			m.c.restarts[i]++;
	}
}

/*
 * Queue files: names of word characters, regular files (d_type).  The
 * parent cannot stat them, so a file's age counts from the scan that
 * first saw it (within one interval of its arrival; a file already there
 * when msmilter started counts from then): the names seen are kept,
 * sorted, with that time.
 */
struct qent {
	char	*name;
	time_t	 seen;
};

static struct qent	*seen[2];
static size_t		 nseen[2];

static int
qent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct qent *)a)->name,
	    ((const struct qent *)b)->name);
}

static void
free_seen(int q)
{
	for (size_t i = 0; i < nseen[q]; i++)
		free(seen[q][i].name);
	free(seen[q]);
	seen[q] = NULL;
	nseen[q] = 0;
}

static int
is_word(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (!(*s == '_' || (*s >= '0' && *s <= '9') ||
		    (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
			return 0;
	return 1;
}

static void
scan_queue(int q, int fd, time_t now, long *files, long *oldest)
{
	struct qent	*v = NULL, *nv;
	size_t		 n = 0, cap = 0, j = 0;
	char		 buf[8192];
	long		 r;
	time_t		 first = now;

	*files = *oldest = -1;
	if (fd == -1 || lseek(fd, 0, SEEK_SET) == -1)
		return;
	while ((r = syscall(SYS_getdents64, fd, buf, sizeof(buf))) > 0) {
		for (long off = 0; off < r; ) {
			struct dirent64 *d = (struct dirent64 *)(buf + off);

			off += d->d_reclen;
			if (!is_word(d->d_name) || (d->d_type != DT_REG &&
			    d->d_type != DT_UNKNOWN))
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 256;
				if ((nv = realloc(v, cap * sizeof(*v))) == NULL)
					goto fail;
				v = nv;
			}
			if ((v[n].name = strdup(d->d_name)) == NULL)
				goto fail;
			v[n++].seen = now;
		}
	}
	if (r < 0)
		goto fail;
	if (n > 0)	/* an empty queue: v is NULL, which qsort may not take */
		qsort(v, n, sizeof(*v), qent_cmp);
	for (size_t i = 0; i < n; i++) {	/* carry the times over */
		while (j < nseen[q] && strcmp(seen[q][j].name, v[i].name) < 0)
			j++;
		if (j < nseen[q] && strcmp(seen[q][j].name, v[i].name) == 0)
			v[i].seen = seen[q][j].seen;
		if (v[i].seen < first)
			first = v[i].seen;
	}
	free_seen(q);
	seen[q] = v;
	nseen[q] = n;
	*files = (long)n;
	*oldest = (long)(now - first);
	return;
fail:
	while (n > 0)
		free(v[--n].name);
	free(v);
}

void
metrics_snapshot(struct metrics_counts *out)
{
	if (m.p != NULL) {
		open_queues();
		time_t now = time(NULL);

		for (int i = 0; i < 2; i++)
			scan_queue(i, m.qfd[i], now, &m.c.queue_files[i],
			    &m.c.queue_oldest[i]);
		for (int i = 0; i < CHILD_COUNT; i++)
			m.c.child_names[i] = m.p->children[i].name;
	}
	*out = m.c;
}

/* A Prometheus histogram: cumulative buckets, then sum and count. */
static void
format_commit(FILE *f, const struct metrics_counts *c)
{
	uint64_t cum = 0;

	fputs("# HELP msmilter_commit_seconds Time from the end of a message "
	    "to the spooler's commit reply, as capture waits for it.\n"
	    "# TYPE msmilter_commit_seconds histogram\n", f);
	for (int i = 0; i < METRICS_COMMIT_BUCKETS; i++) {
		cum += c->commit_le[i];
		fprintf(f, "msmilter_commit_seconds_bucket{le=\"%g\"} %" PRIu64
		    "\n", (double)commit_bounds_us[i] / 1e6, cum);
	}
	fprintf(f, "msmilter_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n",
	    c->commit_count);
	fprintf(f, "msmilter_commit_seconds_sum %.6f\n",
	    (double)c->commit_sum_us / 1e6);
	fprintf(f, "msmilter_commit_seconds_count %" PRIu64 "\n",
	    c->commit_count);
}

int
metrics_format(FILE *f, const struct metrics_counts *c, int up)
{
	fputs("# HELP msmilter_up 1 while msmilter runs, 0 once it stopped.\n"
	    "# TYPE msmilter_up gauge\n", f);
	fprintf(f, "msmilter_up %d\n", up);
	fputs("# HELP msmilter_messages_total Messages by capture's "
	    "decision (committed: in milterin).\n"
	    "# TYPE msmilter_messages_total counter\n", f);
	for (int i = 0; i < 4; i++)
		fprintf(f, "msmilter_messages_total{result=\"%s\"} %" PRIu64
		    "\n", message_results[i], c->messages[i]);
	fputs("# HELP msmilter_relay_total Relay attempts by outcome.\n"
	    "# TYPE msmilter_relay_total counter\n", f);
	for (int i = 0; i < 4; i++)
		fprintf(f, "msmilter_relay_total{result=\"%s\"} %" PRIu64 "\n",
		    relay_results[i], c->relay[i]);
	fputs("# HELP msmilter_scan_total Verdicts of Milter Full Scanner "
	    "mode (clamd).\n# TYPE msmilter_scan_total counter\n", f);
	for (int i = 0; i < 4; i++)
		fprintf(f, "msmilter_scan_total{result=\"%s\"} %" PRIu64 "\n",
		    scan_results[i], c->scan[i]);
	fputs("# HELP msmilter_queue_files Queue files in milterin and "
	    "milterout.\n# TYPE msmilter_queue_files gauge\n", f);
	for (int i = 0; i < 2; i++)
		if (c->queue_files[i] >= 0)
			fprintf(f, "msmilter_queue_files{queue=\"%s\"} %ld\n",
			    queue_names[i], c->queue_files[i]);
	fputs("# HELP msmilter_queue_oldest_seconds Age of the oldest queue "
	    "file, counted from the scan that first saw it.\n"
	    "# TYPE msmilter_queue_oldest_seconds gauge\n", f);
	for (int i = 0; i < 2; i++)
		if (c->queue_oldest[i] >= 0)
			fprintf(f, "msmilter_queue_oldest_seconds{queue=\"%s\"} "
			    "%ld\n", queue_names[i], c->queue_oldest[i]);
	fputs("# HELP msmilter_child_restarts_total Times a child died and "
	    "was started again.\n"
	    "# TYPE msmilter_child_restarts_total counter\n", f);
	for (int i = 0; i < CHILD_COUNT; i++)
		if (c->child_names[i] != NULL)
			fprintf(f, "msmilter_child_restarts_total{child=\"%s\"} "
			    "%" PRIu64 "\n", c->child_names[i], c->restarts[i]);
	format_commit(f, c);
	return ferror(f) ? -1 : 0;
}

/* The file, whole, or the old one stays. */
static void
write_file(int up)
{
	const char		*path = m.p->set.milter_metrics_file;
	struct metrics_counts	 c;
	char			 tmp[MSM_PATH_LEN + 32];
	FILE			*f;
	int			 fd;

	metrics_snapshot(&c);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
	    0644);
	if (fd == -1 || (f = fdopen(fd, "w")) == NULL) {
		if (fd != -1)
			close(fd);
		goto fail;
	}
	if (metrics_format(f, &c, up) == -1 || fflush(f) == EOF ||
	    fchmod(fd, 0644) == -1) {
		fclose(f);
		unlink(tmp);
		goto fail;
	}
	if (fclose(f) == EOF || rename(tmp, path) == -1) {
		unlink(tmp);
		goto fail;
	}
	m.failed = 0;
	return;
fail:
	if (!m.failed)
		log_warn("metrics: cannot write %s (via %s)", path, tmp);
	m.failed = 1;
}

int
metrics_poll_timeout(int timeout_ms)
{
	time_t	 now = time(NULL);
	int	 ours;

	if (!m.on)
		return timeout_ms;
	ours = m.next <= now ? 0 : (int)(m.next - now) * 1000;
	return timeout_ms < 0 || ours < timeout_ms ? ours : timeout_ms;
}

void
metrics_tick(void)
{
	time_t now = time(NULL);

	if (m.p == NULL)
		return;
	m.on = m.p->set.milter_metrics_file[0] != '\0';	/* after reload */
	if (!m.on || now < m.next)
		return;
	write_file(1);
	m.next = now + m.p->set.milter_metrics_interval;
}

void
metrics_stop(void)
{
	if (m.p != NULL && m.p->set.milter_metrics_file[0] != '\0')
		write_file(0);
	for (int i = 0; i < 2; i++) {
		if (m.qfd[i] != -1)
			close(m.qfd[i]);
		free_seen(i);
	}
	m.qfd[0] = m.qfd[1] = -1;
	m.on = 0;
}
