/*
 * msmilter-spooler: the only writer of milterin.  Runs as Run As User.
 * Trusts capture for nothing but the bytes of the message: records arrive
 * on one channel per SMTP session and must follow BEGIN DATA* COMMIT|ABORT.
 *
 * The event loop reads the records of every ready session and writes them
 * to the session's temp file.  A COMMIT hands the file to the commit pool
 * (commit.c): its threads fsync files concurrently, one directory fsync
 * covers every file renamed before it (group commit), and then they answer
 * COMMITTED, while the loop goes on reading other sessions.  The loop
 * takes the finished jobs back: it closes the files, answers failures,
 * and removes a durable file that capture can no longer be told about.
 * In Full Milter Scanner mode (scan.h) the same threads have clamd scan
 * the file instead, remove it and answer VERDICT: nothing is renamed.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "child.h"
#include "commit.h"
#include "landlock.h"
#include "ipc.h"
#include "log.h"
#include "queueid.h"
#include "sandbox.h"
#include "scan.h"
#include "seccomp.h"
#include "spool.h"
#include "stats.h"
#include "testhook.h"

/* Sessions at once: each holds a descriptor, maybe two. */
#define MAX_SESSIONS		4096
/* How long a stopping spooler waits for messages in progress. */
#define DRAIN_SECONDS		30

/* How many records one session may hand us per round: fairness. */
#define RECORDS_PER_ROUND	8

/* The commit pool: one runs the commit rounds, the others scan. */
#define COMMIT_WORKERS		8

/* Our descriptors in front of the sessions' in pfds[]. */
enum { PFD_PARENT, PFD_CONTROL, PFD_RELAY, PFD_COMMIT, PFD_SESSIONS };

/*
 * S_COMMITTING: the file and the job are the commit pool's until it hands
 * the job back; the session is not freed before (see commit_done).
 */
enum session_state { S_IDLE, S_WRITING, S_FAILED, S_COMMITTING };

struct session {
	int			 chan;
	enum session_state	 state;
	int			 broken;	/* capture stopped reading */
	int			 hangup;	/* capture closed mid-commit */
	struct spool_file	 file;
	struct commit_job	 job;
	char			 reason[IPC_REASON_MAX];
	uint64_t		 t_write;	/* us in write(2), this message */
	uint64_t		 t_commit;	/* when COMMIT was read */
	char			 postfix_id[QUEUEID_MAX];	/* for the log:
						   the file may get another */
};

/*
 * Requeues committed lately, by the relay's token: a relay killed while
 * it waited for our answer asks again with the same token once it is
 * restarted, and gets the first answer instead of a second milterin
 * file.  In memory only: if the spooler dies in that same moment too, a
 * rejection may be requeued twice (never lost).
 */
#define REQUEUE_MEMORY	1024

struct requeued {
	char			 token[IPC_TOKEN_LEN];
	struct ipc_committed	 done;
};

struct spooler {
	struct msm_settings	 set;
	struct requeued		 requeued[REQUEUE_MEMORY];
	unsigned		 requeued_next;	/* oldest, overwritten next */
	struct spool_dir	 dir;
	int			 control;	/* from capture, -1 if none */
	int			 relay;		/* from the relay, -1 if none */
	struct session		**sessions;
	size_t			 nsessions, cap;
	struct pollfd		*pfds;
	struct commit_pool	 pool;
	struct ipc_msg		 msg;
	int			 confined_without_dir;	/* see on_begin */
	struct spool_stats	 stats;
	volatile sig_atomic_t	 terminating;
	volatile sig_atomic_t	 report;	/* SIGUSR1: log the stats */
};

static struct spooler *the_spooler;	/* for the signal handler only */

static void
on_signal(int sig)
{
	if (sig == SIGUSR1)
		the_spooler->report = 1;
	else
		the_spooler->terminating = 1;
}

/* spool_write, timed for the stats. */
static int
session_write(struct session *s, const void *p, size_t len, char *reason,
    size_t rlen)
{
	uint64_t	 t0 = clock_now_us();
	int		 r = spool_write(&s->file, p, len, reason, rlen);

	s->t_write += clock_now_us() - t0;
	return r;
}

static void
session_add(struct spooler *sp, int chan)
{
	struct session *s;

	if (sp->nsessions == sp->cap) {
		size_t ncap = sp->cap ? sp->cap * 2 : 16;
		void *n1 = reallocarray(sp->sessions, ncap, sizeof(*sp->sessions));
		void *n2;

		if (n1 == NULL)
			goto fail;
		sp->sessions = n1;
		n2 = reallocarray(sp->pfds, ncap + PFD_SESSIONS,
		    sizeof(*sp->pfds));
		if (n2 == NULL)
			goto fail;
		sp->pfds = n2;
		sp->cap = ncap;
	}
	if ((s = calloc(1, sizeof(*s))) == NULL)
		goto fail;
	s->chan = chan;
	s->state = S_IDLE;
	s->file.fd = -1;
	sp->sessions[sp->nsessions++] = s;
	return;
fail:
	/* capture sees the channel close and answers TEMPFAIL. */
	log_warn("no memory for a new session");
	close(chan);
}

/* Close a session; whatever it had not committed is removed. */
static void
session_close(struct spooler *sp, size_t i)
{
	struct session *s = sp->sessions[i];

	/* The pool still holds its file: freeing it here would be a bug. */
	if (s->state == S_COMMITTING) {
		log_warnx("session_close: session still committing");
		abort();
	}
	if (s->file.fd != -1 || s->file.renamed)
		spool_discard(&sp->dir, &s->file);
	close(s->chan);
	free(s);
	sp->sessions[i] = sp->sessions[--sp->nsessions];
}

/*
 * A write failed: the details (paths) go to our log, the client only hears
 * the errno text through capture's 451.  Call with errno still set.
 */
static void
session_fail(struct session *s, struct spooler *sp, const char *detail)
{
	int err = errno;

	/* The message's line: Postfix keeps it and the client retries. */
	log_warnx("%s: tempfail (%s)", s->postfix_id[0] ? s->postfix_id :
	    "NOQUEUE", detail);
	if (s->file.fd != -1 || s->file.renamed)
		spool_discard(&sp->dir, &s->file);
	snprintf(s->reason, sizeof(s->reason), "queue file not written: %s",
	    strerror(err));
	s->state = S_FAILED;
}

/*
 * Answers never block: a capture that does not read its answers (stuck or
 * hostile) loses its session instead of stopping the spooler.
 */
static void
answer(struct session *s, uint32_t type, const void *p, size_t len)
{
	if (ipc_send_nowait(s->chan, type, p, len) == -1) {
		log_warn("answering capture; closing the session");
		s->broken = 1;
	}
}

static void
reply_failed(struct session *s)
{
	struct ipc_failed f;

	memset(&f, 0, sizeof(f));
	snprintf(f.reason, sizeof(f.reason), "%s",
	    s->reason[0] ? s->reason : "queue file not written");
	answer(s, MSG_SPOOLER_FAILED, &f, sizeof(f));
	s->state = S_IDLE;
}

/*
 * Landlock gave us no rule for an Incoming Queue Dir that did not exist at
 * start; once it does, only a fresh spooler can be confined to it.  Until
 * then capture answers 451, as it does while the directory is missing.
 */
static void
restart_if_dir_appeared(struct spooler *sp)
{
	if (!sp->confined_without_dir || spool_open_dir(&sp->dir) == 0 ||
	    errno != EACCES)
		return;
	log_notice("Incoming Queue Dir %s exists now; restarting so that "
	    "Landlock confines the spooler to it", sp->dir.path);
	exit(0);
}

static int
on_begin(struct spooler *sp, struct session *s, const struct ipc_msg *m)
{
	struct ipc_begin	 b;
	char			 reason[IPC_REASON_MAX];
	uint64_t		 t0;
	int			 r;

	if (s->state != S_IDLE || m->hdr.len < sizeof(b))
		return -1;
	if (sp->dir.fd == -1)
		restart_if_dir_appeared(sp);
	memcpy(&b, m->data, sizeof(b));
	if (ipc_string_ok(b.queue_id, sizeof(b.queue_id)) != 0 ||
	    !queueid_valid(b.queue_id))
		return -1;
	s->reason[0] = '\0';
	s->t_write = 0;
	snprintf(s->postfix_id, sizeof(s->postfix_id), "%s", b.queue_id);
	t0 = clock_now_us();
	r = spool_create(&sp->dir, &s->file, b.queue_id, reason,
	    sizeof(reason));
	hist_add(&sp->stats.create, clock_now_us() - t0);
	if (r == 0 && sp->dir.scan)
		spool_tap_head(s->file.tap, m->data + sizeof(b),
		    m->hdr.len - sizeof(b));	/* see spool.h */
	if (r == -1 || (!sp->dir.scan && session_write(s, m->data + sizeof(b),
	    m->hdr.len - sizeof(b), reason, sizeof(reason)) == -1)) {
		session_fail(s, sp, reason);
		reply_failed(s);	/* capture answers 451 at DATA */
		return 0;
	}
	s->state = S_WRITING;
	/* Answered, so a full disk is refused before the body is sent. */
	answer(s, MSG_SPOOLER_BEGUN, NULL, 0);
	return 0;
}

/* One record from a session; -1 means the peer broke the protocol. */
static int
session_record(struct spooler *sp, struct session *s, const struct ipc_msg *m)
{
	char reason[IPC_REASON_MAX];

	switch (m->hdr.type) {
	case MSG_CAPTURE_BEGIN:
		return on_begin(sp, s, m);
	case MSG_CAPTURE_DATA:
		if (s->state == S_FAILED)
			return 0;	/* reported at COMMIT */
		if (s->state != S_WRITING)
			return -1;
		if (session_write(s, m->data, m->hdr.len, reason,
		    sizeof(reason)) == -1)
			session_fail(s, sp, reason);
		return 0;
	case MSG_CAPTURE_COMMIT:
		if (m->hdr.len != 0 ||
		    (s->state != S_WRITING && s->state != S_FAILED))
			return -1;
		if (s->state == S_FAILED || s->file.fd == -1) {
			sp->stats.failed++;
			reply_failed(s);
			return 0;
		}
		s->state = S_COMMITTING;
		s->t_commit = clock_now_us();
		s->job.file = &s->file;
		s->job.chan = s->chan;
		s->job.owner = s;
		s->job.loop_answers = sp->dir.audit == SPOOL_AUDIT_ACK;
		s->job.scan = sp->dir.scan;
		if (s->job.scan)
			scan_conf_set(&s->job.scan_conf, &sp->set,
			    s->t_commit);
		commit_submit(&sp->pool, &s->job);
		return 0;
	case MSG_CAPTURE_ABORT:
		if (m->hdr.len != 0)
			return -1;
		if (s->file.fd != -1)
			spool_discard(&sp->dir, &s->file);
		s->state = S_IDLE;
		return 0;
	default:
		return -1;
	}
}

/*
 * The file is durable but capture can no longer hear so: it closed the
 * channel (its commit timeout, or it died) and answered TEMPFAIL, so
 * Postfix kept the message.  Take the file back: "either the complete file
 * or no file plus a TEMPFAIL".  The removal is not fsynced; should the
 * name come back after a crash, that is a duplicate, never a loss.
 */
static void
withdraw(struct spooler *sp, struct session *s)
{
	log_notice("%s: capture gave up while the file was committed; "
	    "removed it (the client was told to retry)", s->file.queue_id);
	spool_discard(&sp->dir, &s->file);
	sp->stats.withdrawn++;
	s->broken = 1;
}

/* COMMITTED from the event loop (Milter Audit Sync = every); 0 if sent. */
static int
send_committed(struct session *s)
{
	struct ipc_committed c;

	memset(&c, 0, sizeof(c));
	snprintf(c.queue_id, sizeof(c.queue_id), "%s", s->file.queue_id);
	c.size = s->file.size;
	return ipc_send_nowait(s->chan, MSG_SPOOLER_COMMITTED, &c, sizeof(c));
}

/*
 * A scanned message the pool handed back: its file is already removed
 * (commit.c), the verdict sent unless the audit record had to come
 * first.  Capture gone before the verdict: it answered 451 itself, and
 * there is nothing to take back.
 */
static void
scan_done(struct spooler *sp, struct session *s, struct commit_job *j)
{
	const struct ipc_verdict *v = &j->verdict;

	s->state = S_IDLE;
	if (s->hangup)
		s->broken = 1;
	sp->stats.scanned[v->result < SCAN_RESULT_COUNT ? v->result :
	    SCAN_TEMPFAIL]++;
	hist_add(&sp->stats.scan, j->t_scan);
	hist_add(&sp->stats.write, s->t_write);
	spool_audit_scan(&sp->dir, &s->file, v);
	if (j->loop_answers && !s->broken)
		commit_answer_verdict(j);
	if (v->result == SCAN_CLEAN || v->result == SCAN_VIRUS)
		log_info("%s: scanned by clamd, size=%llu, %llu ms: %s%s%s",
		    s->file.queue_id, (unsigned long long)v->size,
		    (unsigned long long)(j->t_scan / 1000),
		    v->result == SCAN_CLEAN ? "clean" : "virus ",
		    v->signature, v->result == SCAN_CLEAN ? "" : " FOUND");
	else
		log_warnx("%s: not scanned (%s): %s", s->file.queue_id,
		    scan_result_name((int)v->result), v->signature);
	if (!j->answered) {
		log_notice("%s: capture gave up before the verdict (it "
		    "answered 451)", s->file.queue_id);
		s->broken = 1;
	} else
		hist_add(&sp->stats.verdict, j->t_answer - s->t_commit);
	spool_discard(&sp->dir, &s->file);	/* the name is gone already */
}

/*
 * A job the pool handed back.  The pool answered COMMITTED only for a file
 * whose fsync, rename and directory fsync all succeeded.  A failure
 * removes the file (temp or renamed) and capture answers 451; a durable
 * file whose answer could not be sent is withdrawn.  Whether the answer
 * went out decides, not a hang-up seen meanwhile: capture may have read
 * COMMITTED, said DISCARD and closed the session since.
 */
static void
commit_done(struct spooler *sp, struct commit_job *j)
{
	struct session *s = j->owner;

	if (j->scan) {
		scan_done(sp, s, j);
		return;
	}
	if (j->t_fsync)
		hist_add(&sp->stats.fsync, j->t_fsync);
	if (j->t_rename)
		hist_add(&sp->stats.rename, j->t_rename);
	if (j->round) {
		hist_add(&sp->stats.round, j->round);
		hist_add(&sp->stats.dirsync, j->t_dirsync);
	}
	s->state = S_IDLE;
	if (s->hangup)
		s->broken = 1;		/* closed after this */
	if (j->err != 0) {
		/*
		 * Not durable: take it back, Postfix keeps its copy.
		 * MailScanner may have seen the name already; then the
		 * client's retry makes a duplicate, never a loss.
		 */
		sp->stats.failed++;
		errno = j->err;
		session_fail(s, sp, j->reason);
		if (!s->broken)
			reply_failed(s);
		return;
	}
	/*
	 * The audit record of a durable file.  With Milter Audit Sync =
	 * every the pool left the answer to us: the record is on disk (the
	 * parent acknowledged it) before capture hears COMMITTED.
	 */
	spool_audit_commit(&sp->dir, &s->file);
	if (j->loop_answers && !s->broken)
		j->answered = send_committed(s) == 0;
	if (!j->answered) {
		withdraw(sp, s);
		return;
	}
	/* Durable, and capture has been told: one line per message. */
	log_info("%s: committed as %s/%s, size=%llu", s->postfix_id,
	    sp->dir.path, s->file.queue_id, (unsigned long long)s->file.size);
	spool_done(&s->file);
	hist_add(&sp->stats.commit, j->t_answer - s->t_commit);
	hist_add(&sp->stats.write, s->t_write);
}

static void
commit_collect_all(struct spooler *sp)
{
	struct commit_job *j, *next;

	for (j = commit_collect(&sp->pool); j != NULL; j = next) {
		next = j->next;
		commit_done(sp, j);
	}
}

/* Read what a session has for us; returns -1 when it must be closed. */
static int
session_read(struct spooler *sp, struct session *s)
{
	for (int n = 0; n < RECORDS_PER_ROUND && s->state != S_COMMITTING;
	    n++) {
		int r;

		if (n > 0) {
			struct pollfd p = { s->chan, POLLIN, 0 };

			if (poll(&p, 1, 0) != 1)
				break;
		}
		r = ipc_recv(s->chan, &sp->msg);
		if (r == 0)
			return -1;
		if (r == -1) {
			if (errno == EAGAIN || errno == EINTR)
				break;
			log_warn("session channel");
			return -1;
		}
		if (session_record(sp, s, &sp->msg) == -1) {
			log_warnx("protocol error from capture: %s in state %d",
			    ipc_type_name(sp->msg.hdr.type), s->state);
			return -1;
		}
		if (s->broken)
			return -1;
	}
	return 0;
}

/*
 * Settings from the parent.  A new Incoming Queue Dir or identity makes
 * the parent restart us instead, so messages in progress keep their
 * directory; leftover temp files are only removed at start-up, never
 * while sessions may own them.
 */
static void
apply_settings(struct spooler *sp, int at_start)
{
	sp->dir.queue_type = sp->set.queue_type;
	sp->dir.mode = sp->set.incoming_work_group[0] ? 0640 : 0600;
	sp->dir.audit = spool_audit_mode(&sp->set);
	if (!at_start)
		return;
	/* Only at start: the parent restarts us when it changes. */
	sp->dir.scan = sp->set.milter_full_scanner;
	snprintf(sp->dir.path, sizeof(sp->dir.path), "%s",
	    sp->set.incoming_queue_dir);
	if (spool_open_dir(&sp->dir) == -1)
		log_warn("cannot open Incoming Queue Dir %s (mail will be "
		    "refused with 451 until it can)", sp->dir.path);
	else if (at_start && spool_clean_temp(&sp->dir) == -1)
		log_warn("cannot scan %s for leftover temp files", sp->dir.path);
}

static int
parent_record(void *arg)
{
	struct spooler *sp = arg;
	int r = ipc_recv(IPC_PARENT_FD, &sp->msg);

	if (r <= 0)
		return -1;
	switch (sp->msg.hdr.type) {
	case MSG_PARENT_SETTINGS:
		if (child_take_settings(sp->msg.data, sp->msg.hdr.len,
		    &sp->set) != 0)
			return -1;
		apply_settings(sp, 0);
		return 0;
	case MSG_PARENT_STOP:
		if (sp->msg.hdr.len != 0)
			return -1;
		sp->terminating = 1;
		return 0;
	case MSG_PARENT_AUDIT_SYNCED:	/* see spool_audit_commit */
		if (sp->msg.hdr.len != 0)
			return -1;
		spool_audit_acked();
		return 0;
	case MSG_PARENT_CAPTURE_CHANNEL:
	case MSG_PARENT_RELAY_CHANNEL:
		if (sp->msg.fd == -1 || sp->msg.hdr.len != 0 ||
		    !ipc_is_socket(sp->msg.fd, SOCK_SEQPACKET))
			return -1;
		if (sp->msg.hdr.type == MSG_PARENT_CAPTURE_CHANNEL) {
			if (sp->control != -1)
				close(sp->control);
			sp->control = sp->msg.fd;
		} else {
			if (sp->relay != -1)
				close(sp->relay);
			sp->relay = sp->msg.fd;
		}
		return 0;
	default:
		return -1;
	}
}

static int
control_record(struct spooler *sp)
{
	int r = ipc_recv(sp->control, &sp->msg);

	if (r == 0) {
		close(sp->control);
		sp->control = -1;
		return 0;
	}
	if (r == -1 && (errno == EAGAIN || errno == EINTR))
		return 0;
	/*
	 * A broken control channel (or one we could not read a descriptor
	 * from) would leave capture talking into the void: exit, and the
	 * parent restarts us with fresh channels.
	 */
	if (r == -1 || sp->msg.hdr.type != MSG_CAPTURE_SESSION ||
	    sp->msg.fd == -1 || sp->msg.hdr.len != 0 ||
	    !ipc_is_socket(sp->msg.fd, SOCK_SEQPACKET))
		fatalx("control channel from capture broken (%s)",
		    r == -1 ? strerror(errno) : ipc_type_name(sp->msg.hdr.type));
	if (sp->nsessions >= MAX_SESSIONS) {
		log_warnx("%d sessions open; refusing another (capture "
		    "answers 451)", MAX_SESSIONS);
		close(sp->msg.fd);
		return 0;
	}
	session_add(sp, sp->msg.fd);
	return 0;
}

/* 32 lower-case hex digits, as the relay makes them. */
static int
token_ok(const char *t)
{
	return ipc_string_ok(t, IPC_TOKEN_LEN) == 0 &&
	    strspn(t, "0123456789abcdef") == IPC_TOKEN_LEN - 1;
}

static const struct ipc_committed *
requeued_before(const struct spooler *sp, const char *token)
{
	for (unsigned i = 0; i < REQUEUE_MEMORY; i++)
		if (strcmp(sp->requeued[i].token, token) == 0)
			return &sp->requeued[i].done;
	return NULL;
}

/* Commit the requeue (or find it committed); the relay hears either way. */
static int
answer_requeue(struct spooler *sp, const struct ipc_requeue *rq,
    const uint32_t *idx, int fd)
{
	const struct ipc_committed	*before = requeued_before(sp, rq->token);
	struct requeued			*slot;
	struct ipc_committed		 done;
	struct ipc_failed		 f;
	char				 reason[IPC_REASON_MAX];

	if (before != NULL) {
		log_info("%s: requeued before as %s; the relay asked again",
		    rq->queue_id, before->queue_id);
		return ipc_send(sp->relay, MSG_SPOOLER_REQUEUED, before,
		    sizeof(*before), -1);
	}
	if (spool_requeue(&sp->dir, sp->set.org_name, fd, rq, idx, &done,
	    reason, sizeof(reason)) == 0) {
		slot = &sp->requeued[sp->requeued_next];
		memcpy(slot->token, rq->token, IPC_TOKEN_LEN);
		slot->done = done;
		sp->requeued_next = (sp->requeued_next + 1) % REQUEUE_MEMORY;
		log_info("%s: requeued from the relay, %llu bytes",
		    done.queue_id, (unsigned long long)done.size);
		return ipc_send(sp->relay, MSG_SPOOLER_REQUEUED, &done,
		    sizeof(done), -1);
	}
	log_warnx("%s: requeue refused: %s", rq->queue_id, reason);
	memset(&f, 0, sizeof(f));
	snprintf(f.reason, sizeof(f.reason), "%s", reason);
	return ipc_send(sp->relay, MSG_SPOOLER_FAILED, &f, sizeof(f), -1);
}

/*
 * A requeue from the relay: the payload is the fixed struct followed by
 * exactly nrcpt indexes, and the descriptor must be a regular file open
 * read-only (we never write milterout).
 */
static void
relay_record(struct spooler *sp)
{
	struct ipc_requeue	 rq;
	struct stat		 st;
	int			 r = ipc_recv(sp->relay, &sp->msg);

	if (r == -1 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r != 1 || sp->msg.hdr.type != MSG_RELAY_REQUEUE ||
	    sp->msg.fd == -1 || sp->msg.hdr.len < sizeof(rq) ||
	    (memcpy(&rq, sp->msg.data, sizeof(rq)),
	    (sp->msg.hdr.len - sizeof(rq)) / sizeof(uint32_t) != rq.nrcpt) ||
	    (sp->msg.hdr.len - sizeof(rq)) % sizeof(uint32_t) != 0 ||
	    ipc_string_ok(rq.queue_id, sizeof(rq.queue_id)) != 0 ||
	    ipc_string_ok(rq.reply, sizeof(rq.reply)) != 0 ||
	    !token_ok(rq.token) ||
	    fstat(sp->msg.fd, &st) == -1 || !S_ISREG(st.st_mode) ||
	    (fcntl(sp->msg.fd, F_GETFL) & O_ACCMODE) != O_RDONLY) {
		if (r == 1 && sp->msg.fd != -1)
			close(sp->msg.fd);
		if (r != 0)
			log_warnx("protocol error on the relay's channel");
		close(sp->relay);
		sp->relay = -1;
		return;
	}
	r = answer_requeue(sp, &rq, (const uint32_t *)(const void *)
	    (sp->msg.data + sizeof(rq)), sp->msg.fd);
	close(sp->msg.fd);
	if (r == -1)
		log_warn("answering the relay");
}

/*
 * Stopping: take no new sessions, drop the idle ones, and give the ones
 * in the middle of a message a bounded time to finish.  1 when done.
 */
static int
drain(struct spooler *sp, time_t *deadline)
{
	int busy = 0;

	if (*deadline == 0) {
		*deadline = time(NULL) + DRAIN_SECONDS;
		log_info("stopping: no new sessions");
	}
	if (sp->control != -1) {
		close(sp->control);
		sp->control = -1;
	}
	for (size_t i = sp->nsessions; i-- > 0;) {
		if (sp->sessions[i]->state == S_IDLE)
			session_close(sp, i);
		else
			busy++;
	}
	if (busy > 0 && time(NULL) >= *deadline) {
		log_warnx("%d message%s still in progress after %d s; their "
		    "clients get a temporary failure", busy, busy == 1 ? "" :
		    "s", DRAIN_SECONDS);
		return 1;
	}
	return busy == 0;
}

static void
spooler_loop(struct spooler *sp, const sigset_t *waitmask)
{
	struct timespec	 second = { 1, 0 };
	time_t		 deadline = 0;

	for (;;) {
		size_t	 n;

		if (sp->report) {
			sp->report = 0;
			stats_log(&sp->stats);
		}
		if (sp->terminating && drain(sp, &deadline))
			return;
		n = sp->nsessions;
		sp->pfds[PFD_PARENT] = (struct pollfd){ IPC_PARENT_FD, POLLIN,
		    0 };
		sp->pfds[PFD_CONTROL] = (struct pollfd){ sp->control, POLLIN,
		    0 };
		sp->pfds[PFD_RELAY] = (struct pollfd){ sp->relay, POLLIN, 0 };
		sp->pfds[PFD_COMMIT] = (struct pollfd){ sp->pool.wake, POLLIN,
		    0 };
		for (size_t i = 0; i < n; i++) {
			struct session *s = sp->sessions[i];

			/*
			 * While its file is committed a session is only
			 * watched for a hang-up (poll reports it unasked),
			 * and once seen, no longer: it stays until the pool
			 * is done with it.
			 */
			sp->pfds[i + PFD_SESSIONS] = (struct pollfd){
			    s->hangup ? -1 : s->chan,
			    s->state == S_COMMITTING ? 0 : POLLIN, 0 };
		}
		if (ppoll(sp->pfds, n + PFD_SESSIONS, sp->terminating ?
		    &second : NULL, waitmask) == -1) {
			if (errno == EINTR)
				continue;
			fatal("poll");
		}
		if (sp->pfds[PFD_PARENT].revents && parent_record(sp) == -1)
			fatalx("parent channel closed or broken");
		if (sp->pfds[PFD_CONTROL].revents && sp->control != -1)
			control_record(sp);
		if (sp->pfds[PFD_RELAY].revents && sp->relay != -1)
			relay_record(sp);
		/* Walk backwards: session_close moves the last one here. */
		for (size_t i = n; i-- > 0;) {
			struct session *s = sp->sessions[i];

			if (sp->pfds[i + PFD_SESSIONS].revents == 0)
				continue;
			if (s->state == S_COMMITTING)
				s->hangup = 1;
			else if (session_read(sp, s) == -1)
				session_close(sp, i);
		}
		if (sp->pfds[PFD_COMMIT].revents)
			commit_collect_all(sp);
		for (size_t i = sp->nsessions; i-- > 0;)
			if (sp->sessions[i]->broken &&
			    sp->sessions[i]->state != S_COMMITTING)
				session_close(sp, i);
	}
}

/*
 * Beneath milterin only: create, write and remove files (rename within the
 * directory needs no more), list it for leftover temp files.  Nothing to
 * read: a requeued file arrives as an open descriptor.  No TCP at all.
 */
static void
confine_by_path(struct spooler *sp)
{
	struct landlock_policy	 p = { .name = "spooler", .ndirs = 1 };
	char			 probe[MSM_PATH_LEN + 32];

	p.dirs[0].path = sp->set.incoming_queue_dir;
	p.dirs[0].access = LL_MAKE_REG | LL_WRITE_FILE | LL_REMOVE_FILE |
	    LL_READ_DIR;
	/*
	 * Full Milter Scanner: our temp files are opened read-write (for
	 * pread and for clamd through FDPASS), and clamd's socket is
	 * reached by path: a rule of its own from ABI 8; before that
	 * Landlock does not govern connecting to a pathname socket.
	 */
	if (sp->set.milter_full_scanner) {
		p.dirs[0].access |= LL_READ_FILE;
		p.unix_socket = sp->set.milter_clamd_socket;
	}
	snprintf(probe, sizeof(probe), "%s-landlock-probe",
	    sp->set.incoming_queue_dir);
	testhook_set_probe(probe);
	if (sandbox_landlock(&p, sp->set.milter_landlock) > 0)
		sp->confined_without_dir = p.dirs[0].missing;
}

int
main(void)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];
	static struct spooler	 sp;
	struct sigaction	 sa;
	sigset_t		 block, waitmask;

	child_init("spooler");
	child_get_settings(&sp.set);
	if (sodium_init() == -1)
		fatalx("sodium_init failed");

	umask(0);	/* the spool files get exactly the mode we ask for */
	child_become_run_as(&sp.set);
	confine_by_path(&sp);
	sandbox_seccomp(SANDBOX_SPOOLER, sp.set.milter_full_scanner ?
	    SANDBOX_CLAMD : 0, sp.set.milter_seccomp_debug);

	sp.msg.data = buf;
	sp.msg.cap = sizeof(buf);
	sp.control = -1;
	sp.dir.fd = -1;
	sp.relay = -1;
	if ((sp.pfds = calloc(PFD_SESSIONS, sizeof(*sp.pfds))) == NULL)
		fatal("calloc");
	apply_settings(&sp, 1);
	spool_audit_init(parent_record, &sp);
	/* After seccomp (TSYNC) and Landlock: the threads are born confined. */
	if (commit_start(&sp.pool, &sp.dir, COMMIT_WORKERS) == -1)
		fatal("starting the commit threads");

	the_spooler = &sp;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGUSR1);
	sigprocmask(SIG_BLOCK, &block, &waitmask);
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGUSR1);

	log_info("ready, writing %s", sp.dir.path);
	child_ready();
	spooler_loop(&sp, &waitmask);
	stats_log(&sp.stats);
	log_info("stopped");
	return 0;
}
