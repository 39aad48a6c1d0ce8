/*
 * milterout: which files to deliver and when.  A file is taken only when
 * its name is a MailScanner message id, it can be locked the way
 * MailScanner locks (Lock Type), and after locking it is still the file at
 * that name.  It is unlinked only after the MTA accepted every recipient,
 * or the spooler took the rejected ones back into milterin.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "queueid.h"
#include "relay.h"

/* A file someone else holds locked is looked at again this soon. */
#define LOCKED_RETRY	2

static struct pending *
find(struct relay *r, const char *name)
{
	for (size_t i = 0; i < r->nqueue; i++)
		if (strcmp(r->queue[i].name, name) == 0)
			return &r->queue[i];
	return NULL;
}

void
queue_add(struct relay *r, const char *name, time_t due)
{
	struct pending *p;

	if (!qfile_name_ok(name) || strlen(name) >= sizeof(p->name))
		return;
	if ((p = find(r, name)) != NULL) {
		if (p->backoff == 0 && due < p->due)
			p->due = due;
		return;
	}
	if (r->nqueue == r->qcap) {
		size_t	 ncap = r->qcap ? r->qcap * 2 : 64;
		void	*n = reallocarray(r->queue, ncap, sizeof(*r->queue));

		if (n == NULL) {
			log_warn("no memory for the queue; %s waits for the "
			    "next scan", name);
			return;
		}
		r->queue = n;
		r->qcap = ncap;
	}
	p = &r->queue[r->nqueue++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->due = due;
}

static void
forget(struct relay *r, struct pending *p)
{
	free(p->done);
	*p = r->queue[--r->nqueue];
}

void
queue_scan(struct relay *r)
{
	DIR		*dir;
	struct dirent	*de;
	int		 fd;
	time_t		 now = time(NULL);

	if ((fd = dup(r->outdir)) == -1 || (dir = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		log_warn("scanning %s", r->set.outgoing_queue_dir);
		return;
	}
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL)
		queue_add(r, de->d_name, now);
	closedir(dir);
}

static int
lock_file(const struct relay *r, int fd)
{
	struct flock fl = { .l_type = F_WRLCK, .l_whence = SEEK_SET };

	if (r->set.lock_type == MSM_LOCK_POSIX)
		return fcntl(fd, F_SETLK, &fl);
	return flock(fd, LOCK_EX | LOCK_NB);
}

/*
 * Open and lock name; 0 with *fdp set, 1 when it is gone or locked by
 * someone else (try later), -1 on other errors.
 */
static int
open_locked(struct relay *r, const char *name, int *fdp)
{
	struct stat	 st, now;
	int		 fd;

	/* fcntl write locks need a descriptor open for writing. */
	fd = openat(r->outdir, name, (r->set.lock_type == MSM_LOCK_POSIX ?
	    O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd == -1)
		return errno == ENOENT ? 1 : -1;
	if (lock_file(r, fd) == -1) {
		close(fd);
		return errno == EWOULDBLOCK || errno == EAGAIN ||
		    errno == EACCES ? 1 : -1;
	}
	/* Locked: is it still the file at that name, and still linked? */
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode) || st.st_nlink == 0 ||
	    fstatat(r->outdir, name, &now, AT_SYMLINK_NOFOLLOW) == -1 ||
	    now.st_ino != st.st_ino || now.st_dev != st.st_dev) {
		close(fd);
		return 1;
	}
	*fdp = fd;
	return 0;
}

/* Move an unreadable file aside: never deleted, never retried for ever. */
static void
quarantine(struct relay *r, const char *name, const char *why)
{
	char	 target[128];

	snprintf(target, sizeof(target), "%s", name);
	for (int i = 0; r->badfd != -1 && i < 100; i++) {
		if (renameat2(r->outdir, name, r->badfd, target,
		    RENAME_NOREPLACE) == 0) {
			log_warnx("%s: unreadable queue file (%s); moved to "
			    "%s/%s", name, why, r->badpath, target);
			return;
		}
		if (errno != EEXIST)
			break;
		snprintf(target, sizeof(target), "%s.%d", name, i + 1);
	}
	log_warn("%s: unreadable queue file (%s) and cannot move it to %s",
	    name, why, r->badpath);
}

static unsigned
next_backoff(const struct relay *r, unsigned cur)
{
	unsigned next = cur == 0 ? r->set.relay_min_retry : cur * 2;

	return next > r->set.relay_max_retry ? r->set.relay_max_retry : next;
}

/* Retry later, with jitter so that a queue does not retry in lockstep. */
static void
defer(struct relay *r, struct pending *p, time_t now)
{
	p->backoff = next_backoff(r, p->backoff);
	p->due = now + p->backoff + (time_t)randombytes_uniform(p->backoff /
	    4 + 1);
}

/*
 * Hand rejected recipients back to the spooler, which writes them into
 * milterin with the reject header (only it writes there).  0 when the
 * spooler has committed them.
 */
static int
requeue(struct relay *r, struct delivery *d, const uint32_t *idx, size_t n,
    char *newid, size_t idlen)
{
	struct ipc_requeue	 rq;
	union {
		struct ipc_committed	ok;
		struct ipc_failed	failed;
	} reply;
	struct ipc_msg		 m = { .data = (void *)&reply,
	    .cap = sizeof(reply) };
	struct pollfd		 pfd = { r->spooler, POLLIN, 0 };

	if (r->spooler == -1) {
		log_warnx("%s: spooler not available for the requeue",
		    d->name);
		return -1;
	}
	memset(&rq, 0, sizeof(rq));
	snprintf(rq.queue_id, sizeof(rq.queue_id), "%s", d->queue_id);
	snprintf(rq.reply, sizeof(rq.reply), "%s", d->reject);
	rq.nrcpt = (uint32_t)n;
	if (ipc_sendv2(r->spooler, MSG_RELAY_REQUEUE, &rq, sizeof(rq), idx,
	    n * sizeof(*idx), d->fd) == -1 ||
	    poll(&pfd, 1, (int)r->set.milter_commit_timeout * 1000) != 1 ||
	    ipc_recv(r->spooler, &m) != 1) {
		log_warn("%s: requeue through the spooler", d->name);
		close(r->spooler);
		r->spooler = -1;
		return -1;
	}
	if (m.hdr.type == MSG_SPOOLER_REQUEUED &&
	    m.hdr.len == sizeof(reply.ok) &&
	    ipc_string_ok(reply.ok.queue_id, sizeof(reply.ok.queue_id)) == 0) {
		snprintf(newid, idlen, "%s", reply.ok.queue_id);
		return 0;
	}
	if (m.hdr.type == MSG_SPOOLER_FAILED &&
	    m.hdr.len == sizeof(reply.failed) &&
	    ipc_string_ok(reply.failed.reason, sizeof(reply.failed.reason)) ==
	    0)
		log_warnx("%s: requeue failed: %s", d->name,
		    reply.failed.reason);
	else
		log_warnx("%s: bad answer from the spooler", d->name);
	return -1;
}

/* Requeue the recipients rejected in this attempt; mark them done. */
static int
requeue_rejected(struct relay *r, struct delivery *d, struct pending *p)
{
	uint32_t	*idx = calloc(d->q.nrcpt, sizeof(*idx));
	char		 newid[QUEUEID_MAX];
	size_t		 n = 0;
	int		 rc = 0;

	if (idx == NULL)
		return -1;
	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (d->outcome[i] == RCPT_REJECTED)
			idx[n++] = (uint32_t)i;
	if (n > 0 && (rc = requeue(r, d, idx, n, newid, sizeof(newid))) == 0) {
		for (size_t i = 0; i < n; i++)
			p->done[idx[i]] = 1;
		log_notice("%s: %zu recipient%s rejected (%s); requeued to "
		    "%s/%s for MailScanner to quarantine", d->name, n,
		    n == 1 ? "" : "s", d->reject, r->set.incoming_queue_dir,
		    newid);
	}
	free(idx);
	return rc;
}

static void
log_delivery(const struct relay *r, const struct delivery *d, size_t n,
    time_t mtime)
{
	log_info("%s: delivered by %s to %s, nrcpt=%zu size=%lld delay=%llds "
	    "reply=\"%s\"", d->name,
	    r->set.delivery_method == MSM_DELIVER_QMQP ? "QMQP" : "SMTP",
	    r->set.delivery_method == MSM_DELIVER_QMQP &&
	    r->set.socket_type == MSM_SOCKET_UNIX ? r->set.socket_dir :
	    r->set.relay_address, n,
	    (long long)(d->q.size - d->q.data_offset),
	    (long long)(time(NULL) - mtime), d->reply);
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

/* Per-recipient memory of what is done, kept across attempts. */
static int
prepare_outcomes(struct pending *p, struct delivery *d)
{
	if (p->done != NULL && p->ndone != d->q.nrcpt) {
		/* The file was rewritten meanwhile: start afresh. */
		free(p->done);
		p->done = NULL;
	}
	if (p->done == NULL && (p->done = calloc(d->q.nrcpt, 1)) == NULL)
		return -1;
	p->ndone = d->q.nrcpt;
	if ((d->outcome = calloc(d->q.nrcpt, sizeof(*d->outcome))) == NULL)
		return -1;
	for (size_t i = 0; i < d->q.nrcpt; i++)
		d->outcome[i] = p->done[i] ? RCPT_SKIP : RCPT_PENDING;
	return 0;
}

static void
note_mta(struct relay *r, const struct delivery *d, time_t now)
{
	if (!d->connect_failed) {
		r->mta_backoff = 0;
		return;
	}
	r->mta_backoff = next_backoff(r, r->mta_backoff);
	r->mta_down_until = now + r->mta_backoff;
	log_warnx("cannot reach the MTA (%s); no delivery for %u s",
	    d->reply, r->mta_backoff);
}

/* After an attempt: 1 when every recipient is done and the file is gone. */
static int
settle(struct relay *r, struct pending *p, struct delivery *d, time_t mtime)
{
	size_t	 delivered = 0, left = 0;

	for (size_t i = 0; i < d->q.nrcpt; i++) {
		if (d->outcome[i] == RCPT_DELIVERED) {
			p->done[i] = 1;
			delivered++;
		}
	}
	if (delivered > 0)
		log_delivery(r, d, delivered, mtime);
	if (d->reject[0] != '\0')
		requeue_rejected(r, d, p);
	for (size_t i = 0; i < d->q.nrcpt; i++)
		left += !p->done[i];
	if (left > 0)
		return 0;
	/* Every recipient is delivered or requeued: only now unlink. */
	if (unlinkat(r->outdir, d->name, 0) == -1)
		log_warn("%s: delivered but cannot unlink it", d->name);
	return 1;
}

/* One attempt at queue[i]; 1 when it left the queue. */
static int
attempt(struct relay *r, size_t i, time_t now)
{
	struct pending	*p = &r->queue[i];
	struct delivery	 d;
	struct stat	 st;
	char		 err[256];
	int		 fd, rc, gone;

	if ((rc = open_locked(r, p->name, &fd)) != 0) {
		if (faccessat(r->outdir, p->name, F_OK, AT_SYMLINK_NOFOLLOW)
		    == -1 && errno == ENOENT) {
			forget(r, p);
			return 1;
		}
		if (rc == -1)
			log_warn("%s: cannot open it", p->name);
		p->due = now + (rc == 1 ? LOCKED_RETRY : r->set.relay_min_retry);
		return 0;
	}
	memset(&d, 0, sizeof(d));
	d.name = p->name;
	d.fd = fd;
	if (qfile_read(fd, &d.q, err, sizeof(err)) == -1) {
		quarantine(r, p->name, err);
		close(fd);
		forget(r, p);
		return 1;
	}
	if (d.q.dsn_ignored)
		log_warnx("%s: %d E line(s) without a recipient we can tell; "
		    "their DSN parameters are not passed on", p->name,
		    d.q.dsn_ignored);
	choose_queue_id(&d, r->set.queue_type);
	if (prepare_outcomes(p, &d) == -1 || fstat(fd, &st) == -1) {
		log_warn("%s", p->name);
		gone = 0;
		defer(r, p, now);
		goto out;
	}
	if (r->set.delivery_method == MSM_DELIVER_QMQP)
		qmqp_deliver(r, &d);
	else
		smtp_deliver(r, &d);
	note_mta(r, &d, now);
	if ((gone = settle(r, p, &d, st.st_mtime)) != 0)
		forget(r, p);
	else {
		defer(r, p, now);
		log_info("%s: deferred, next attempt in %u s: %s", p->name,
		    p->backoff, d.reply);
	}
out:
	free(d.outcome);
	qfile_free(&d.q);
	close(fd);	/* releases the lock */
	return gone;
}

void
queue_run(struct relay *r, time_t now)
{
	size_t i = 0;

	while (i < r->nqueue && !r->terminating) {
		if (r->queue[i].due > now || r->mta_down_until > now) {
			i++;
			continue;
		}
		if (attempt(r, i, now) == 0)
			i++;
	}
	/* Keep the SMTP connection only while there is work for it. */
	if (r->smtp != NULL && queue_next_timeout(r, now) != 0)
		smtp_close(r);
}

/* Milliseconds until something is due (-1: nothing, but the rescan). */
int
queue_next_timeout(const struct relay *r, time_t now)
{
	time_t next = r->next_scan;

	for (size_t i = 0; i < r->nqueue; i++) {
		time_t due = r->queue[i].due;

		if (due < r->mta_down_until)
			due = r->mta_down_until;
		if (due < next)
			next = due;
	}
	return next <= now ? 0 : (int)(next - now) * 1000;
}
