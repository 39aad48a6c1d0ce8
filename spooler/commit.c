/*
 * See commit.h; the durability argument is at the top of spool.c.  The
 * threads run under the spooler's seccomp filter (loaded with TSYNC before
 * they exist) and Landlock domain, and touch nothing but the files, the
 * directory descriptor and the session channels of the jobs they are
 * handed: no allocation; they send only COMMITTED and log lines.  In
 * Full Milter Scanner mode they also connect to clamd (scan.c), remove the
 * scanned file and send VERDICT instead.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "commit.h"
#include "log.h"
#include "stats.h"
#include "testhook.h"

/*
 * Under load, the least time between the starts of two commit rounds
 * (hold()).  Measured in make bench (4 KB, 20 sessions, journaled ext4):
 * journal commits per message 0.39-0.47 with 4 ms, against 1.26-1.48
 * for the pool of fsyncing threads before rounds (2 ms, before rounds
 * waited for their write-out: 0.9-1.15); end of message to COMMITTED
 * p50 7.7 ms against 2.3.
 */
#define HOLD_US		4000

/* Each thread needs a few kilobytes: log lines, snprintf. */
#define COMMIT_STACK	(256 * 1024)

static void
queue_init(struct commit_queue *q)
{
	q->head = NULL;
	q->tail = &q->head;
}

static void
queue_put(struct commit_queue *q, struct commit_job *j)
{
	j->next = NULL;
	*q->tail = j;
	q->tail = &j->next;
}

static struct commit_job *
queue_take_one(struct commit_queue *q)
{
	struct commit_job *j = q->head;

	if (j != NULL && (q->head = j->next) == NULL)
		q->tail = &q->head;
	return j;
}

static struct commit_job *
queue_take_all(struct commit_queue *q)
{
	struct commit_job *j = q->head;

	queue_init(q);
	return j;
}

/* With p->lock held: the event loop wakes up to collect. */
static void
finish(struct commit_pool *p, struct commit_job *list)
{
	struct commit_job	*j, *next;
	uint64_t		 one = 1;

	for (j = list; j != NULL; j = next) {
		next = j->next;
		queue_put(&p->done, j);
	}
	/* Only fails when the counter would overflow: it is read first. */
	if (write(p->wake, &one, sizeof(one)) != sizeof(one))
		log_warn("commit: waking the event loop");
}

/* Test builds: wait as told, so that a test can act mid-commit. */
static void
stall(int which)
{
	unsigned	 ms = testhook_stall_ms(which);
	struct timespec	 ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000 };

	while (ms > 0 && nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/* Step 3 (fsync the file), or the failure a test build injects. */
static int
sync_file(struct commit_job *j)
{
	stall(TESTHOOK_STALL_COMMIT);
	if (testhook_fail(TESTHOOK_FAIL_FSYNC)) {
		errno = EIO;
		snprintf(j->reason, sizeof(j->reason), "fsync %s: %s "
		    "(test hook)", j->file->temp_name, strerror(errno));
		return -1;
	}
	return spool_sync_file(j->file, j->reason, sizeof(j->reason));
}

/* Step 5 (fsync the directory), or the failure a test build injects. */
static int
sync_dir(struct commit_pool *p, char *reason, size_t rlen)
{
	stall(TESTHOOK_STALL_DIRSYNC);
	if (testhook_fail(TESTHOOK_FAIL_DIRSYNC)) {
		errno = EIO;
		snprintf(reason, rlen, "fsync of the directory: %s (test "
		    "hook)", strerror(errno));
		return -1;
	}
	return spool_sync_dir(p->dir, reason, rlen);
}

/*
 * The file is durable: tell capture, which then says DISCARD.  Sent here,
 * not by the event loop, to spare a thread switch.  The channel stays open
 * while the job is ours (the event loop closes no committing session).
 * Not sent (capture closed the channel: it gave up and answered TEMPFAIL,
 * or it is not reading): answered stays 0 and the event loop removes the
 * file again.
 */
static void
answer(struct commit_job *j)
{
	struct ipc_committed c;

	memset(&c, 0, sizeof(c));
	snprintf(c.queue_id, sizeof(c.queue_id), "%s", j->file->queue_id);
	c.size = j->file->size;
	j->answered = ipc_send_nowait(j->chan, MSG_SPOOLER_COMMITTED, &c,
	    sizeof(c)) == 0;
	j->t_answer = clock_now_us();
}

/* The verdict for capture: the file is gone by now. */
static void
answer_verdict(struct commit_job *j)
{
	j->answered = ipc_send_nowait(j->chan, MSG_SPOOLER_VERDICT,
	    &j->verdict, sizeof(j->verdict)) == 0;
	j->t_answer = clock_now_us();
}

/*
 * Full Milter Scanner mode: clamd's verdict, then the file goes in every
 * case (Postfix keeps the message itself, or refuses it), then the
 * answer.  Removed before the answer, so that no file outlives the SMTP
 * reply.  clamd may still hold the descriptor after a time-out: the
 * unlinked file lives on only until it lets go.
 */
static void
scan_job(struct commit_pool *p, struct commit_job *j)
{
	struct clamd_reply	 r;
	struct spool_file	*f = j->file;
	uint64_t		 t0 = clock_now_us();

	scan_clamd(&j->scan_conf, f->fd, f->size, &r);
	j->t_scan = clock_now_us() - t0;
	if (unlinkat(p->dir->fd, f->temp_name, 0) == -1 && errno != ENOENT)
		log_warn("cannot remove %s/%s", p->dir->path, f->temp_name);
	f->temp_name[0] = '\0';
	memset(&j->verdict, 0, sizeof(j->verdict));
	j->verdict.result = (uint32_t)r.result;
	j->verdict.size = f->size;
	snprintf(j->verdict.queue_id, sizeof(j->verdict.queue_id), "%s",
	    f->queue_id);
	snprintf(j->verdict.signature, sizeof(j->verdict.signature), "%s",
	    r.detail);
	if (!j->loop_answers)
		answer_verdict(j);
}

void
commit_answer_verdict(struct commit_job *j)
{
	answer_verdict(j);
}

/*
 * Write a new file out (SYNC_FILE_RANGE_WRITE), or wait until that is done
 * (SYNC_FILE_RANGE_WAIT_BEFORE), for all of a round's files before their
 * fsyncs: their blocks, and ext4's conversion of them to written extents
 * when the write completes, are then in the transaction the round's
 * first fsync commits.  A failure fails the file: the wait hands a
 * write-back error to its caller and marks it seen for this descriptor,
 * so the fsync after it would return 0.
 */
static void
write_out(struct commit_job *j, unsigned int how)
{
	const char *hook = "";

	if (j->err != 0)
		return;
	if (how == SYNC_FILE_RANGE_WAIT_BEFORE &&
	    testhook_fail(TESTHOOK_FAIL_WRITEBACK)) {
		errno = EIO;
		hook = " (test hook)";
	} else if (sync_file_range(j->file->fd, 0, 0, how) == 0)
		return;
	j->err = errno != 0 ? errno : EIO;
	snprintf(j->reason, sizeof(j->reason), "writing %s out: %s%s",
	    j->file->temp_name, strerror(j->err), hook);
}

/*
 * Step 5 for the files r renamed in an earlier round, then COMMITTED for
 * each (or its error); all of them go on *finished.
 */
static void
sync_renamed(struct commit_pool *p, struct commit_job *r,
    struct commit_queue *finished)
{
	struct commit_job	*j, *next;
	char			 reason[IPC_REASON_MAX];
	uint64_t		 t0 = clock_now_us(), t;
	uint32_t		 n = 0;
	int			 err = 0;

	if (sync_dir(p, reason, sizeof(reason)) == -1)
		err = errno != 0 ? errno : EIO;
	t = clock_now_us() - t0;
	for (j = r; j != NULL; j = next, n++) {
		next = j->next;
		if (err != 0) {
			j->err = err;
			snprintf(j->reason, sizeof(j->reason), "%s", reason);
		} else if (!j->loop_answers)
			answer(j);
		queue_put(finished, j);
	}
	r->round = n;
	r->t_dirsync = t;
}

/*
 * Steps 3 and 4 for one new file, after write_out: onto *renamed, or
 * with its error onto *finished.
 */
static void
sync_and_rename(struct commit_pool *p, struct commit_job *j,
    struct commit_queue *renamed, struct commit_queue *finished)
{
	uint64_t t0;

	if (j->err == 0) {
		t0 = clock_now_us();
		if (sync_file(j) == -1)
			j->err = errno != 0 ? errno : EIO;
		j->t_fsync = clock_now_us() - t0;
	}
	if (j->err == 0) {
		t0 = clock_now_us();
		if (spool_rename(p->dir, j->file, j->reason,
		    sizeof(j->reason)) == -1)
			j->err = errno != 0 ? errno : EIO;
		j->t_rename = clock_now_us() - t0;
	}
	queue_put(j->err == 0 ? renamed : finished, j);
}

/*
 * One round: step 5 for the files r renamed in an earlier round, then
 * steps 3 and 4 for the new files w.  On a journaled file system the
 * first fsync commits the transaction that holds r's renames and, with w
 * written out before it (write_out), all of w's blocks: so the round
 * costs one journal commit, not one per file and one per directory
 * fsync, and the other fsyncs find their part already committed (a cache
 * flush each).  Each call still returns only when its own file or
 * directory is on disk; nothing here relies on how the file system
 * batches them.  Without the lock.
 */
static void
round_run(struct commit_pool *p, struct commit_job *w, struct commit_job *r,
    struct commit_queue *renamed, struct commit_queue *finished)
{
	struct commit_job *j, *next;

	for (j = w; j != NULL; j = j->next)
		write_out(j, SYNC_FILE_RANGE_WRITE);
	for (j = w; j != NULL; j = j->next)
		write_out(j, SYNC_FILE_RANGE_WAIT_BEFORE);
	if (r != NULL)
		sync_renamed(p, r, finished);
	for (j = w; j != NULL; j = next) {
		next = j->next;
		sync_and_rename(p, j, renamed, finished);
	}
}

/*
 * Under load (files come closer together than HOLD_US), start a round no
 * sooner than HOLD_US after the one before began: the files that arrive
 * meanwhile share its journal commit instead of each paying for one.
 * Files that come one at a time are not held up.  With p->lock held;
 * drops it while it waits.
 */
static void
hold(struct commit_pool *p)
{
	uint64_t	 until = p->round_start_us + HOLD_US;
	struct timespec	 ts = { (time_t)(until / 1000000),
			    (long)(until % 1000000) * 1000L };

	if (p->gap_us > HOLD_US || clock_now_us() >= until)
		return;
	pthread_mutex_unlock(&p->lock);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) ==
	    EINTR)
		;
	pthread_mutex_lock(&p->lock);
}

/*
 * Rounds until nothing waits for one.  One thread at a time (p->syncing,
 * set by the caller), with p->lock held.  A job joins r only after its
 * rename returned, and r is taken before its directory fsync begins: so
 * that fsync covers every rename in r.  A file fsynced in this round is
 * renamed after the directory fsync, and waits for the next round's.
 */
static void
rounds(struct commit_pool *p)
{
	struct commit_queue	 renamed, finished;
	struct commit_job	*w, *r, *j;

	while (p->todo.head != NULL || p->renamed.head != NULL) {
		hold(p);
		p->round_start_us = clock_now_us();
		w = queue_take_all(&p->todo);
		r = queue_take_all(&p->renamed);
		pthread_mutex_unlock(&p->lock);
		queue_init(&renamed);
		queue_init(&finished);
		round_run(p, w, r, &renamed, &finished);
		pthread_mutex_lock(&p->lock);
		while ((j = queue_take_one(&renamed)) != NULL)
			queue_put(&p->renamed, j);
		if (finished.head != NULL)
			finish(p, finished.head);
	}
}

/*
 * Workers: scans (Full Milter Scanner mode), one each, many at once; and
 * commit rounds, one worker at a time, which batch the files themselves.
 */
static void *
worker(void *arg)
{
	struct commit_pool	*p = arg;
	struct commit_job	*j;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (!p->syncing && p->todo.head != NULL) {
			p->syncing = 1;
			rounds(p);
			p->syncing = 0;
		} else if ((j = queue_take_one(&p->scans)) != NULL) {
			pthread_mutex_unlock(&p->lock);
			scan_job(p, j);
			pthread_mutex_lock(&p->lock);
			j->next = NULL;
			finish(p, j);
		} else
			pthread_cond_wait(&p->to_sync, &p->lock);
	}
	return NULL;
}

int
commit_start(struct commit_pool *p, struct spool_dir *dir, int workers)
{
	pthread_attr_t	 attr;
	pthread_t	 t;
	sigset_t	 all, old;
	static const int sync_signals[] = { SIGSYS, SIGSEGV, SIGBUS, SIGFPE,
	    SIGILL, SIGTRAP, SIGABRT };
	int		 r = 0;

	memset(p, 0, sizeof(*p));
	p->dir = dir;
	queue_init(&p->todo);
	queue_init(&p->scans);
	queue_init(&p->renamed);
	queue_init(&p->done);
	if ((p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		return -1;
	if ((r = pthread_mutex_init(&p->lock, NULL)) != 0 ||
	    (r = pthread_cond_init(&p->to_sync, NULL)) != 0 ||
	    (r = pthread_attr_init(&attr)) != 0) {
		errno = r;
		return -1;
	}
	pthread_attr_setstacksize(&attr, COMMIT_STACK);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	/*
	 * Signals (SIGTERM, SIGUSR1, test hooks) are for the event loop;
	 * faults stay deliverable, or seccomp's debug trap would kill.
	 */
	sigfillset(&all);
	for (size_t i = 0; i < sizeof(sync_signals) / sizeof(sync_signals[0]);
	    i++)
		sigdelset(&all, sync_signals[i]);
	pthread_sigmask(SIG_BLOCK, &all, &old);
	for (int i = 0; i < workers && r == 0; i++)
		r = pthread_create(&t, &attr, worker, p);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&attr);
	if (r != 0) {
		errno = r;
		return -1;
	}
	return 0;
}

void
commit_submit(struct commit_pool *p, struct commit_job *j)
{
	uint64_t	 now;

	j->err = 0;
	j->answered = 0;
	j->reason[0] = '\0';
	j->t_fsync = j->t_rename = j->t_dirsync = j->t_answer = 0;
	j->t_scan = 0;
	j->round = 0;
	now = clock_now_us();
	pthread_mutex_lock(&p->lock);
	p->gap_us = now - p->last_submit_us;
	p->last_submit_us = now;
	queue_put(j->scan ? &p->scans : &p->todo, j);
	/* A round under way takes the file when it ends: wake nobody. */
	if (j->scan || !p->syncing)
		pthread_cond_signal(&p->to_sync);
	pthread_mutex_unlock(&p->lock);
}

struct commit_job *
commit_collect(struct commit_pool *p)
{
	struct commit_job	*list;
	uint64_t		 n;

	/* Read first: a job finished after this read wakes us again. */
	if (read(p->wake, &n, sizeof(n)) == -1 && errno != EAGAIN)
		log_warn("commit: reading the wake-up counter");
	pthread_mutex_lock(&p->lock);
	list = queue_take_all(&p->done);
	pthread_mutex_unlock(&p->lock);
	return list;
}
