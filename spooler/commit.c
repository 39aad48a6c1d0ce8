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

/* The longest a directory fsync waits for files still being fsynced. */
#define GATHER_US	2000

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

/*
 * Before a directory fsync, wait (a little) for the files other workers
 * are fsyncing now: their renames then ride on the same directory fsync
 * instead of paying for the next one.  On a machine whose cores are
 * busy, each fsync's CPU (block layer, journal, device) is what bounds
 * throughput, and a round covered 1.2 files without this.  Bounded by
 * GATHER_US: a stuck fsync must not hold up the files already renamed.
 * With p->lock held.
 */
static void
gather(struct commit_pool *p)
{
	struct timespec	 deadline;

	if (p->in_flight == 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_nsec += GATHER_US * 1000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	while (p->in_flight > 0 && pthread_cond_timedwait(&p->renamed_one,
	    &p->lock, &deadline) != ETIMEDOUT)
		;
}

/*
 * Step 5 for every file renamed so far, then the answers; again while
 * more were renamed meanwhile.  With p->lock held and p->syncing set by
 * the caller.  A job is on the renamed queue only after its rename
 * returned, and the queue is taken before the fsync begins, so the fsync
 * covers every rename in the batch; renames that finish during it wait
 * for the next round.
 */
static void
sync_rounds(struct commit_pool *p)
{
	struct commit_job	*batch, *j;
	char			 reason[IPC_REASON_MAX];
	uint64_t		 t0, t;
	uint32_t		 n;
	int			 err;

	for (;;) {
		gather(p);
		if ((batch = queue_take_all(&p->renamed)) == NULL)
			break;
		pthread_mutex_unlock(&p->lock);
		t0 = clock_now_us();
		err = sync_dir(p, reason, sizeof(reason)) == 0 ? 0 :
		    errno != 0 ? errno : EIO;
		t = clock_now_us() - t0;
		n = 0;
		for (j = batch; j != NULL; j = j->next, n++) {
			if (err != 0) {
				j->err = err;
				snprintf(j->reason, sizeof(j->reason), "%s",
				    reason);
			} else if (!j->loop_answers)
				answer(j);
		}
		batch->round = n;
		batch->t_dirsync = t;
		pthread_mutex_lock(&p->lock);
		finish(p, batch);
	}
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
 * Workers: fsync one file, rename it into place.  Many at once: the file
 * system commits concurrent fsyncs together, which one thread cannot ask
 * for.  A failure goes straight back (the event loop removes the file and
 * answers FAILED).  A renamed file waits for a directory fsync: the worker
 * that finds none running does it; the others go on with their next file.
 */
static void *
worker(void *arg)
{
	struct commit_pool	*p = arg;
	struct commit_job	*j;
	uint64_t		 t0, t1;
	int			 r;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		while ((j = queue_take_one(&p->todo)) == NULL)
			pthread_cond_wait(&p->to_sync, &p->lock);
		if (!j->scan)
			p->in_flight++;
		pthread_mutex_unlock(&p->lock);

		if (j->scan) {
			scan_job(p, j);
			pthread_mutex_lock(&p->lock);
			j->next = NULL;
			finish(p, j);
			continue;
		}

		t0 = clock_now_us();
		r = sync_file(j);
		t1 = clock_now_us();
		j->t_fsync = t1 - t0;
		if (r == 0) {
			r = spool_rename(p->dir, j->file, j->reason,
			    sizeof(j->reason));
			j->t_rename = clock_now_us() - t1;
		}
		j->err = r == 0 ? 0 : errno != 0 ? errno : EIO;

		pthread_mutex_lock(&p->lock);
		p->in_flight--;
		pthread_cond_signal(&p->renamed_one);
		if (r != 0) {
			j->next = NULL;
			finish(p, j);
			continue;
		}
		queue_put(&p->renamed, j);
		if (!p->syncing) {
			p->syncing = 1;
			sync_rounds(p);
			p->syncing = 0;
		}
	}
	return NULL;
}

int
commit_start(struct commit_pool *p, struct spool_dir *dir, int workers)
{
	pthread_attr_t	 attr;
	pthread_condattr_t cattr;
	pthread_t	 t;
	sigset_t	 all, old;
	static const int sync_signals[] = { SIGSYS, SIGSEGV, SIGBUS, SIGFPE,
	    SIGILL, SIGTRAP, SIGABRT };
	int		 r = 0;

	memset(p, 0, sizeof(*p));
	p->dir = dir;
	queue_init(&p->todo);
	queue_init(&p->renamed);
	queue_init(&p->done);
	if ((p->wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) == -1)
		return -1;
	if ((r = pthread_mutex_init(&p->lock, NULL)) != 0 ||
	    (r = pthread_cond_init(&p->to_sync, NULL)) != 0 ||
	    (r = pthread_condattr_init(&cattr)) != 0 ||
	    (r = pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC)) != 0 ||
	    (r = pthread_cond_init(&p->renamed_one, &cattr)) != 0 ||
	    (r = pthread_attr_init(&attr)) != 0) {
		errno = r;
		return -1;
	}
	pthread_condattr_destroy(&cattr);
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
	j->err = 0;
	j->answered = 0;
	j->reason[0] = '\0';
	j->t_fsync = j->t_rename = j->t_dirsync = j->t_answer = 0;
	j->t_scan = 0;
	j->round = 0;
	pthread_mutex_lock(&p->lock);
	queue_put(&p->todo, j);
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
