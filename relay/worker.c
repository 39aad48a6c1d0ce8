/*
 * The relay's workers: each takes one milterout file at a time, locks it,
 * reads it strictly, delivers it on its own SMTP connection (or by QMQP),
 * hands permanent rejections to the spooler, and unlinks the file only
 * when every recipient is delivered or requeued.  The main thread owns
 * the queue; a worker sees only its job.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "queueid.h"
#include "relay.h"

static int
lock_file(const struct relay *r, int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	if (r->set.lock_type == MSM_LOCK_POSIX)
		return fcntl(fd, F_SETLK, &fl);
	return flock(fd, LOCK_EX | LOCK_NB);
}

/*
 * What makes a milterout entry something we must not deliver, or NULL.
 * MailScanner writes each file as Run As User (our uid), under a temp-
 * name, and renames it in: one link, a regular file, ours.  Anything else
 * was put there by someone else: a link would deliver (and then unlink) a
 * file from elsewhere, a FIFO or device would block or act when opened.
 */
static const char *
odd_entry(const struct relay *r, const struct stat *st, char *buf,
    size_t len)
{
	if (S_ISLNK(st->st_mode))
		return "a symbolic link";
	if (S_ISDIR(st->st_mode))
		return "a directory";
	if (S_ISFIFO(st->st_mode))
		return "a FIFO";
	if (S_ISSOCK(st->st_mode))
		return "a socket";
	if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode))
		return "a device";
	if (!S_ISREG(st->st_mode))
		return "not a regular file";
	if (st->st_nlink != 1) {
		snprintf(buf, len, "%ju hard links, not 1",
		    (uintmax_t)st->st_nlink);
		return buf;
	}
	if (st->st_uid != r->uid) {
		snprintf(buf, len, "owned by uid %ju, not %ju",
		    (uintmax_t)st->st_uid, (uintmax_t)r->uid);
		return buf;
	}
	return NULL;
}

/*
 * Open and lock name, which fstatat found to be a plain file of ours.
 * 0 with *fdp set; 1 when it is gone, locked by someone else or was
 * replaced meanwhile (look again later); 2 when the locked file itself is
 * odd (why says how); -1 on other errors.
 */
static int
open_locked(const struct relay *r, const char *name, int *fdp, char *why,
    size_t len)
{
	struct stat	 st, now;
	const char	*odd;
	int		 fd;

	/*
	 * Never follow a link; O_NONBLOCK so that a FIFO swapped in after
	 * the fstatat cannot hang us (and fcntl write locks need a
	 * descriptor open for writing).
	 */
	fd = openat(r->outdir, name, (r->set.lock_type == MSM_LOCK_POSIX ?
	    O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1)
		return errno == ENOENT || errno == ELOOP ? 1 : -1;
	if (lock_file(r, fd) == -1) {
		close(fd);
		return errno == EWOULDBLOCK || errno == EAGAIN ||
		    errno == EACCES ? 1 : -1;
	}
	/*
	 * Locked: is it still the file at that name?  And is what we hold
	 * (not what the name showed a moment ago) a plain file of ours?
	 */
	if (fstat(fd, &st) == -1 ||
	    fstatat(r->outdir, name, &now, AT_SYMLINK_NOFOLLOW) == -1 ||
	    now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
		close(fd);
		return 1;
	}
	if ((odd = odd_entry(r, &st, why, len)) != NULL) {
		if (odd != why)
			snprintf(why, len, "%s", odd);
		close(fd);
		return 2;
	}
	*fdp = fd;
	return 0;
}

#define REFUSED	"not a queue file we may deliver"

/* renameat2 to base, or base.1 ... base.99 when taken; never replaces. */
static int
rename_free(int from, const char *name, int to, const char *base,
    char *target, size_t len)
{
	snprintf(target, len, "%s", base);
	for (int i = 0; i < 100; i++) {
		if (renameat2(from, name, to, target, RENAME_NOREPLACE) == 0)
			return 0;
		if (errno != EEXIST)
			return -1;
		snprintf(target, len, "%s.%d", base, i + 1);
	}
	return -1;
}

/*
 * Move what must not be delivered aside: never deleted, never opened
 * again, never retried in a loop.  Into the quarantine directory; where
 * that cannot take it (another file system, a directory we may not
 * re-parent) to a dot name in milterout, which the relay ignores.  Sets
 * j->result: JOB_GONE when moved (or gone), else JOB_STUCK with the reason
 * in j->reply for the main thread to log once (a worker would log it at
 * each look).
 */
void
relay_quarantine(const struct relay *r, struct job *j, const char *what,
    const char *why)
{
	char	 target[128], hidden[128], qid[QUEUEID_MAX];
	int	 e;

	relay_log_id(j->name, qid, sizeof(qid));
	j->result = JOB_GONE;
	if (r->badfd == -1) {
		snprintf(j->reply, sizeof(j->reply), "%s (%s): no quarantine "
		    "directory (%.200s)", what, why, r->badpath);
		j->result = JOB_STUCK;
		return;
	}
	if (rename_free(r->outdir, j->name, r->badfd, j->name, target,
	    sizeof(target)) == 0) {
		log_warnx("%s: file=%s, status=quarantined (%s: %s), moved to "
		    "%s/%s", qid, j->name, what, why, r->badpath, target);
		relay_audit_quarantined(r, j->name, what, why);
		return;
	}
	e = errno;
	snprintf(hidden, sizeof(hidden), ".invalid.%s", j->name);
	if (rename_free(r->outdir, j->name, r->outdir, hidden, target,
	    sizeof(target)) == 0) {
		log_warnx("%s: file=%s, status=quarantined (%s: %s), cannot "
		    "go to %s (%s): renamed to %s in %s", qid, j->name, what,
		    why, r->badpath, strerror(e), target,
		    r->set.outgoing_queue_dir);
		relay_audit_quarantined(r, j->name, what, why);
		return;
	}
	/* Gone meanwhile?  Only if the name is gone: else it is not done. */
	if (errno == ENOENT && faccessat(r->outdir, j->name, F_OK,
	    AT_SYMLINK_NOFOLLOW) == -1 && errno == ENOENT)
		return;
	snprintf(j->reply, sizeof(j->reply), "%s (%s): cannot move it to %.200s "
	    "(%s) nor rename it (%s)", what, why, r->badpath, strerror(e),
	    strerror(errno));
	j->result = JOB_STUCK;
}

static void
choose_queue_id(struct delivery *d, int type)
{
	size_t len = strcspn(d->name, ".");

	snprintf(d->queue_id, sizeof(d->queue_id), "%.*s", (int)len, d->name);
	if (!queueid_valid(d->queue_id) &&
	    queueid_new(type, d->queue_id, sizeof(d->queue_id)) == -1)
		d->queue_id[0] = '\0';
}

/* Anything left for the MTA this time? */
static int
any_pending(const struct delivery *d)
{
	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (d->outcome[i] == RCPT_PENDING)
			return 1;
	return 0;
}

static void
deliver_locked(struct worker *w, struct job *j, int fd)
{
	struct relay	*r = w->r;
	struct delivery	 d;
	struct progress	 pg = { .fd = -1 };
	char		 err[256];

	memset(&d, 0, sizeof(d));
	d.name = j->name;
	d.fd = fd;
	j->result = JOB_DEFERRED;
	if (fstat(fd, &d.st) == -1) {
		log_warn("%s", j->name);
		return;
	}
	if (settle_marked(r, j, &d.st))
		return;		/* delivered before: only removed */
	switch (qfile_read(fd, &d.q, err, sizeof(err))) {
	case 0:
		break;
	case -1:
		relay_quarantine(r, j, "unreadable queue file", err);
		return;
	default:
		/* A read error or no memory says nothing about the file. */
		log_warnx("%s: %s; trying again later", j->name, err);
		return;
	}
	if (d.q.dsn_ignored)
		log_warnx("%s: %d E line(s) without a recipient we can tell; "
		    "their DSN parameters are not passed on", j->name,
		    d.q.dsn_ignored);
	choose_queue_id(&d, r->set.queue_type);
	if (settle_begin(r, j, &d, &pg) == -1)
		goto out;
	if (any_pending(&d) && r->set.delivery_method == MSM_DELIVER_QMQP)
		qmqp_deliver(w, &d);
	else if (any_pending(&d))
		smtp_deliver(w, &d);
	j->connect_failed = d.connect_failed;
	snprintf(j->reply, sizeof(j->reply), "%s", d.reply);
	settle_end(r, j, &d, &pg);
out:
	progress_free(&pg);
	free(d.outcome);
	qfile_free(&d.q);
}

static void
run_job(struct worker *w, struct job *j)
{
	struct relay	*r = w->r;
	struct stat	 st;
	const char	*odd;
	char		 why[64];
	int		 fd, rc;

	/* Look before opening: a link, FIFO or device is never opened. */
	if (fstatat(r->outdir, j->name, &st, AT_SYMLINK_NOFOLLOW) == -1) {
		if (errno == ENOENT)
			j->result = JOB_GONE;
		else {
			log_warn("%s", j->name);
			j->result = JOB_DEFERRED;
		}
		return;
	}
	if ((odd = odd_entry(r, &st, why, sizeof(why))) != NULL) {
		relay_quarantine(r, j, REFUSED, odd);
		return;
	}
	switch ((rc = open_locked(r, j->name, &fd, why, sizeof(why)))) {
	case 0:
		deliver_locked(w, j, fd);
		close(fd);	/* releases the lock */
		return;
	case 2:
		relay_quarantine(r, j, REFUSED, why);
		return;
	default:
		if (faccessat(r->outdir, j->name, F_OK, AT_SYMLINK_NOFOLLOW)
		    == -1 && errno == ENOENT)
			j->result = JOB_GONE;
		else {
			if (rc == -1)
				log_warn("%s: cannot open it", j->name);
			j->result = rc == 1 ? JOB_LATER : JOB_DEFERRED;
		}
		return;
	}
}

static void *
worker_main(void *arg)
{
	struct worker	*w = arg;
	struct relay	*r = w->r;
	uint64_t	 one = 1;

	pthread_mutex_lock(&r->lock);
	for (;;) {
		struct job *j;

		while (r->todo == NULL && !r->stop_workers) {
			/* Idle: do not keep a session open at the MTA. */
			if (w->smtp != NULL) {
				pthread_mutex_unlock(&r->lock);
				smtp_close(w);
				pthread_mutex_lock(&r->lock);
				continue;
			}
			pthread_cond_wait(&r->work, &r->lock);
		}
		if (r->stop_workers)
			break;
		j = r->todo;
		r->todo = j->next;
		pthread_mutex_unlock(&r->lock);
		run_job(w, j);
		pthread_mutex_lock(&r->lock);
		j->next = r->results;
		r->results = j;
		if (write(r->wake, &one, sizeof(one)) != sizeof(one))
			log_warn("waking the main thread");
	}
	pthread_mutex_unlock(&r->lock);
	smtp_close(w);
	return NULL;
}

int
workers_start(struct relay *r)
{
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->spooler_lock, NULL);
	pthread_cond_init(&r->work, NULL);
	if ((r->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		return -1;
	/* Deliveries in parallel: Postfix takes more from several sessions. */
	r->nworkers = r->set.relay_connections;
	if ((r->workers = calloc(r->nworkers, sizeof(*r->workers))) == NULL)
		return -1;
	for (unsigned i = 0; i < r->nworkers; i++) {
		r->workers[i].r = r;
		if ((errno = pthread_create(&r->workers[i].thread, NULL,
		    worker_main, &r->workers[i])) != 0)
			return -1;
	}
	return 0;
}

/* Finish the deliveries under way, then let the workers go. */
void
workers_stop(struct relay *r)
{
	pthread_mutex_lock(&r->lock);
	r->stop_workers = 1;
	pthread_cond_broadcast(&r->work);
	pthread_mutex_unlock(&r->lock);
	for (unsigned i = 0; i < r->nworkers; i++)
		pthread_join(r->workers[i].thread, NULL);
}

void
worker_submit(struct relay *r, struct job *j)
{
	pthread_mutex_lock(&r->lock);
	j->next = r->todo;
	r->todo = j;
	r->busy++;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
}

struct job *
worker_results(struct relay *r)
{
	struct job	*list;
	uint64_t	 n;

	if (read(r->wake, &n, sizeof(n)) == -1 && errno != EAGAIN)
		log_warn("eventfd");
	pthread_mutex_lock(&r->lock);
	list = r->results;
	r->results = NULL;
	for (struct job *j = list; j != NULL; j = j->next)
		r->busy--;
	pthread_mutex_unlock(&r->lock);
	return list;
}
