/*
 * What a delivery attempt leaves done, made durable step by step so that
 * a relay killed anywhere neither delivers a recipient twice nor loses
 * one (progress.c keeps the steps on disk):
 *
 *   1. before: read the progress file; a requeue recorded but never
 *      answered is asked again (same token: the spooler answers it
 *      without writing twice); recipients done are skipped;
 *   2. after the MTA answered: the delivered ones, and each requeue to
 *      come, recorded in one write (the common case, every recipient
 *      delivered at once, records nothing: removing the file says it);
 *   3. each requeue asked of the spooler, its answer recorded;
 *   4. all done: the file removed (or, rejected again, quarantined),
 *      then its progress file.
 *
 * The one window left is the MTA's: a relay killed after the MTA said
 * 250 and before step 2 delivers those recipients again, as any MTA
 * killed at that moment does.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "relay.h"
#include "testhook.h"

/* Recipient indexes per requeue record, well inside IPC_MAX_PAYLOAD. */
#define REQUEUE_BATCH	8192

/*
 * The descriptor the spooler gets: read-only, so that it can never write
 * milterout (nor need the right to, under SELinux or AppArmor).  With
 * fcntl locks ours is open for writing; a fresh read-only open of the
 * same name must be the inode we hold locked.  -1 when it is not; the
 * caller closes what it gets unless it is d->fd.
 */
static int
requeue_fd(const struct relay *r, const struct delivery *d)
{
	struct stat	 held, now;
	int		 fd;

	if ((fcntl(d->fd, F_GETFL) & O_ACCMODE) == O_RDONLY)
		return d->fd;
	fd = openat(r->outdir, d->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK);
	if (fd == -1)
		return -1;
	if (fstat(d->fd, &held) == -1 || fstat(fd, &now) == -1 ||
	    held.st_ino != now.st_ino || held.st_dev != now.st_dev) {
		close(fd);
		errno = ESTALE;
		return -1;
	}
	return fd;
}

/* One requeue round trip; the channel is shared by the workers. */
static int
requeue_call(struct relay *r, struct delivery *d, const struct intent *in,
    struct ipc_msg *m)
{
	struct ipc_requeue	 rq;
	struct pollfd		 pfd = { r->spooler, POLLIN, 0 };
	int			 fd;

	memset(&rq, 0, sizeof(rq));
	snprintf(rq.queue_id, sizeof(rq.queue_id), "%s", d->queue_id);
	snprintf(rq.reply, sizeof(rq.reply), "%s", in->reply);
	memcpy(rq.token, in->token, PROGRESS_TOKEN_LEN);
	rq.nrcpt = (uint32_t)in->n;
	if (r->spooler == -1)
		return -1;
	if ((fd = requeue_fd(r, d)) == -1) {
		log_warn("%s: no read-only descriptor for the requeue", d->name);
		return -1;
	}
	if (ipc_sendv2(r->spooler, MSG_RELAY_REQUEUE, &rq, sizeof(rq), in->idx,
	    in->n * sizeof(*in->idx), fd) == -1)
		fatal("%s: requeue to the spooler", d->name);
	if (fd != d->fd)
		close(fd);
	/*
	 * Wait for the answer however long the spooler takes (its own steps
	 * are bounded).  A channel that breaks makes us exit; the parent
	 * starts a relay with a fresh one, which asks again (same token).
	 */
	while (poll(&pfd, 1, -1) == -1)
		;
	if (ipc_recv(r->spooler, m) != 1)
		fatalx("%s: the spooler's channel broke during a requeue",
		    d->name);
	return 0;
}

/*
 * Hand rejected recipients back to the spooler, which writes them into
 * milterin with the reject header (only it writes there).  0 with newid
 * when the spooler has committed them, 1 when it refused them (nothing
 * written), -1 when it could not be asked or its answer makes no sense
 * (committed or not: unknown, so the question stays open).
 */
static int
requeue(struct relay *r, struct delivery *d, const struct intent *in,
    char *newid, size_t idlen)
{
	union {
		struct ipc_committed	ok;
		struct ipc_failed	failed;
	} reply;
	struct ipc_msg	 m = { .data = (void *)&reply, .cap = sizeof(reply) };
	int		 rc;

	pthread_mutex_lock(&r->spooler_lock);
	rc = requeue_call(r, d, in, &m);
	pthread_mutex_unlock(&r->spooler_lock);
	if (rc == -1)
		return -1;
	if (m.hdr.type == MSG_SPOOLER_REQUEUED &&
	    m.hdr.len == sizeof(reply.ok) &&
	    ipc_string_ok(reply.ok.queue_id, sizeof(reply.ok.queue_id)) == 0) {
		snprintf(newid, idlen, "%s", reply.ok.queue_id);
		return 0;
	}
	if (m.hdr.type == MSG_SPOOLER_FAILED &&
	    m.hdr.len == sizeof(reply.failed) &&
	    ipc_string_ok(reply.failed.reason, sizeof(reply.failed.reason)) ==
	    0) {
		log_warnx("%s: requeue failed: %s", d->name,
		    reply.failed.reason);
		return 1;
	}
	log_warnx("%s: bad answer from the spooler", d->name);
	return -1;
}

/* Append and sync lines; when the disk will not take them, say so. */
static void
commit(const struct relay *r, struct delivery *d, struct progress *pg,
    struct progress_rec *w)
{
	char why[300];

	if (progress_commit(r, pg, w, why, sizeof(why)) == -1)
		log_warnx("%s: cannot record what is done (%s): a restart now "
		    "may deliver or requeue it again", d->name, why);
}

static void
log_requeued(const struct relay *r, const struct delivery *d,
    const struct intent *in, const char *newid)
{
	char	 qid[QUEUEID_MAX], target[MSM_PATH_LEN + 32], to[300];

	relay_log_id(d->name, qid, sizeof(qid));
	relay_log_target(r, target, sizeof(target));
	relay_log_rcpts(d, in->idx, in->n, to, sizeof(to));
	log_notice("%s: to=%s, relay=%s, nrcpt=%zu, file=%s, status=requeued "
	    "(%s), into %s/%s for MailScanner to quarantine", qid, to, target,
	    in->n, d->name, in->reply, r->set.incoming_queue_dir, newid);
}

/*
 * Ask the spooler about the newest open requeue and record its answer:
 * 0 committed, 1 refused (its recipients are pending again), -1 not
 * asked (it stays open).
 */
static int
ask_spooler(struct relay *r, struct delivery *d, struct progress *pg)
{
	const struct intent	*in = &pg->open[pg->nopen - 1];
	struct progress_rec	 w = { 0 };
	char			 newid[QUEUEID_MAX];
	char			 token[PROGRESS_TOKEN_LEN];
	int			 rc = requeue(r, d, in, newid, sizeof(newid));

	if (rc == -1)
		return -1;
	if (rc == 0) {
		testhook_at(TESTHOOK_AT_REQUEUED, "requeued");
		log_requeued(r, d, in, newid);
		relay_audit_requeued(r, d, in->idx, in->n, in->reply, newid);
	}
	memcpy(token, in->token, sizeof(token));
	progress_put(&w, rc == 0 ? 'q' : 'f', token, NULL, 0, rc == 0 ?
	    newid : NULL);
	commit(r, d, pg, &w);
	return rc;
}

/* Every requeue recorded and not answered; 0 when none is left open. */
static int
run_intents(struct relay *r, struct delivery *d, struct progress *pg)
{
	while (pg->nopen > 0) {
		size_t was = pg->nopen;

		if (ask_spooler(r, d, pg) != 0 || pg->nopen == was)
			return -1;
	}
	return 0;
}

/* "QID: to=<...>, relay=..., status=sent (250 ...)", as Postfix says it. */
static void
log_delivery(const struct relay *r, const struct delivery *d,
    const uint32_t *idx, size_t n, time_t mtime)
{
	char	 qid[QUEUEID_MAX], target[MSM_PATH_LEN + 32], to[300];

	relay_log_id(d->name, qid, sizeof(qid));
	relay_log_target(r, target, sizeof(target));
	relay_log_rcpts(d, idx, n, to, sizeof(to));
	log_info("%s: to=%s, relay=%s, delay=%lld, size=%lld, nrcpt=%zu, "
	    "file=%s, status=sent (%s)", qid, to, target,
	    (long long)(time(NULL) - mtime),
	    (long long)(d->q.size - d->q.data_offset), n, d->name, d->reply);
}

/* ---- before the attempt ---- */

/* The memo (what this relay saw done) counts for this very file only. */
static void
apply_memo(struct job *j, const struct delivery *d, struct progress *pg)
{
	const struct memo *m = j->memo;

	if (m == NULL || m->n != d->q.nrcpt || m->of.st_ino != d->st.st_ino ||
	    m->of.st_dev != d->st.st_dev ||
	    m->of.st_mtim.tv_sec != d->st.st_mtim.tv_sec ||
	    m->of.st_mtim.tv_nsec != d->st.st_mtim.tv_nsec)
		return;
	for (size_t i = 0; i < m->n; i++)
		if (pg->state[i] == RS_PENDING)
			pg->state[i] = m->state[i];
}

int
settle_begin(struct relay *r, struct job *j, struct delivery *d,
    struct progress *pg)
{
	char why[300];

	if (progress_load(r, d->name, &d->st, d->q.nrcpt, pg, why,
	    sizeof(why)) == -1) {
		snprintf(j->reply, sizeof(j->reply), "its progress file %s%s "
		    "cannot be used (%s): which recipients are done is not "
		    "known; remove it to deliver to all of them",
		    PROGRESS_PREFIX, d->name, why);
		j->result = JOB_STUCK;
		return -1;
	}
	apply_memo(j, d, pg);
	if (run_intents(r, d, pg) == -1)
		return -1;		/* deferred */
	if ((d->outcome = calloc(d->q.nrcpt, sizeof(*d->outcome))) == NULL) {
		log_warn("%s", d->name);
		return -1;
	}
	for (size_t i = 0; i < d->q.nrcpt; i++)
		d->outcome[i] = pg->state[i] != RS_PENDING ? RCPT_SKIP :
		    RCPT_PENDING;
	return 0;
}

/* ---- after the attempt ---- */

/* Indexes of the recipients with this outcome; their count. */
static size_t
pick(const struct delivery *d, enum rcpt_outcome o, uint32_t *idx)
{
	size_t n = 0;

	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (d->outcome[i] == o)
			idx[n++] = (uint32_t)i;
	return n;
}

/*
 * MailScanner quarantined this message once already (our Relay-Reject
 * header, or the name MailScanner gives it then) and sent its cleaned
 * copy on (Deliver Cleaned Messages): a second requeue would loop.
 */
static int
rejected_before(const struct relay *r, const struct delivery *d)
{
	char reject[MSM_NAME_LEN + 40], quarantined[MSM_NAME_LEN + 40];

	snprintf(reject, sizeof(reject), QFILE_REJECT_FIELD, r->set.org_name);
	snprintf(quarantined, sizeof(quarantined), QFILE_QUARANTINE_FIELD,
	    r->set.org_name);
	return qfile_has_field(d->fd, &d->q, reject) == 1 ||
	    qfile_has_field(d->fd, &d->q, quarantined) == 1;
}

/* The rejected: requeued (one intent per batch), or refused again. */
static void
put_rejected(const struct relay *r, const struct delivery *d,
    struct progress_rec *w, const uint32_t *idx, size_t n)
{
	char token[PROGRESS_TOKEN_LEN + 1];

	if (rejected_before(r, d)) {
		progress_put(w, 'X', NULL, idx, n, d->reject);
		return;
	}
	for (size_t off = 0; off < n; off += REQUEUE_BATCH) {
		progress_token(token);
		progress_put(w, 'Q', token, idx + off, n - off < REQUEUE_BATCH ?
		    n - off : REQUEUE_BATCH, d->reject);
	}
}

/* Step 2: one write for what the MTA said (nothing when all is done). */
static void
record_attempt(struct relay *r, struct delivery *d, struct progress *pg,
    time_t mtime)
{
	struct progress_rec	 w = { 0 };
	uint32_t		*idx = calloc(d->q.nrcpt, sizeof(*idx));
	size_t			 ndel, nrej, nleft = 0;

	if (idx == NULL) {
		log_warn("%s: cannot record what is done", d->name);
		return;
	}
	if ((ndel = pick(d, RCPT_DELIVERED, idx)) > 0)
		progress_put(&w, 'D', NULL, idx, ndel, NULL);
	if ((nrej = pick(d, RCPT_REJECTED, idx)) > 0) {
		if (d->reject[0] == '\0')
			snprintf(d->reject, sizeof(d->reject),
			    "permanent failure without a reason");
		put_rejected(r, d, &w, idx, nrej);
	}
	for (size_t i = 0; i < d->q.nrcpt; i++)
		nleft += pg->state[i] == RS_PENDING &&
		    d->outcome[i] != RCPT_DELIVERED;
	if (nrej > 0 || nleft > 0 || pg->exists)
		commit(r, d, pg, &w);
	else
		progress_note(pg, &w);	/* removing the file will say it */
	if (ndel > 0) {
		log_delivery(r, d, idx, pick(d, RCPT_DELIVERED, idx), mtime);
		relay_audit_delivered(r, d);
	}
	free(idx);
}

/* Step 4: every recipient done; j->result says what came of the file. */
static void
finish(struct relay *r, struct job *j, struct delivery *d,
    struct progress *pg)
{
	char	 why[IPC_REPLY_MAX + 200];
	size_t	 refused = 0;

	for (size_t i = 0; i < d->q.nrcpt; i++)
		refused += pg->state[i] == RS_REFUSED;
	testhook_at(TESTHOOK_AT_DONE, "done");
	if (refused > 0) {
		snprintf(why, sizeof(why), "%zu recipient%s refused again: %s; "
		    "MailScanner quarantined it once already, so it is not "
		    "requeued a second time", refused, refused == 1 ? "" : "s",
		    pg->refused);
		relay_quarantine(r, j, "rejected again", why);
		if (j->result != JOB_GONE)
			return;		/* retried with backoff, as it is */
	} else if (unlinkat(r->outdir, d->name, 0) == -1) {
		/*
		 * The file stays ours: the next attempt sends nothing (every
		 * recipient is done) and only tries the unlink again.
		 */
		log_warn("%s: delivered but cannot unlink it", d->name);
		return;
	}
	j->result = JOB_GONE;
	testhook_at(TESTHOOK_AT_REMOVED, "removed");
	progress_remove(r, pg);
}

/* What this relay saw done, for the next attempt if the disk lost it. */
static void
save_memo(struct job *j, const struct delivery *d, const struct progress *pg)
{
	struct memo *m = realloc(j->memo, sizeof(*m) + d->q.nrcpt);

	if (m == NULL)
		return;		/* the old memo stays: it is still true */
	m->of = d->st;
	m->n = d->q.nrcpt;
	memcpy(m->state, pg->state, m->n);
	j->memo = m;
}

/* The recipients still pending after this attempt, for the audit log. */
static void
audit_deferred(const struct relay *r, const struct delivery *d,
    const struct progress *pg)
{
	unsigned char *done = calloc(d->q.nrcpt ? d->q.nrcpt : 1, 1);

	if (done == NULL)
		return;
	for (size_t i = 0; i < d->q.nrcpt; i++)
		done[i] = pg->state[i] != RS_PENDING;
	relay_audit_deferred(r, d, done);
	free(done);
}

void
settle_end(struct relay *r, struct job *j, struct delivery *d,
    struct progress *pg)
{
	size_t left = 0;

	record_attempt(r, d, pg, d->st.st_mtime);
	testhook_at(TESTHOOK_AT_RECORDED, "recorded");
	if (run_intents(r, d, pg) == 0) {
		for (size_t i = 0; i < d->q.nrcpt; i++)
			left += pg->state[i] == RS_PENDING;
		if (left == 0)
			finish(r, j, d, pg);
		else
			audit_deferred(r, d, pg);
	}
	if (j->result != JOB_GONE)
		save_memo(j, d, pg);
}
