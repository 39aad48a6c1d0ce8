/*
 * milterout, as the main thread sees it: which files exist, when each is
 * due, and which a worker has.  A file is handed to one worker at a time;
 * its result comes back here and decides whether it is forgotten, looked
 * at again soon, or retried after a backoff.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"
#include "relay.h"

/* A file someone else holds locked is looked at again this soon. */
#define LOCKED_RETRY	2
/* One we must not deliver and cannot move aside waits for the admin. */
#define STUCK_RETRY	600

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

static void
note_mta(struct relay *r, const struct job *j, time_t now)
{
	if (!j->connect_failed) {
		r->mta_backoff = 0;
		return;
	}
	/* Jobs already under way when the MTA went away count once. */
	if (j->submitted < r->mta_down_until)
		return;
	r->mta_backoff = next_backoff(r, r->mta_backoff);
	r->mta_down_until = now + r->mta_backoff;
	log_warnx("cannot reach the MTA (%s); no delivery for %u s",
	    j->reply, r->mta_backoff);
}

/* Said once per file, not at each look; a rescan does not hurry it. */
static void
stuck(const struct relay *r, struct pending *p, const struct job *j,
    time_t now)
{
	if (!p->stuck)
		log_warnx("%s: %s; left in place (quarantine directory %s), "
		    "looking again every %d s", p->name, j->reply, r->badpath,
		    STUCK_RETRY);
	p->stuck = 1;
	p->backoff = STUCK_RETRY;
	p->due = now + STUCK_RETRY;
}

/* Results of finished jobs: the worker's verdict on each file. */
void
queue_collect(struct relay *r, time_t now)
{
	struct job *j = worker_results(r);

	while (j != NULL) {
		struct job	*next = j->next;
		struct pending	*p = find(r, j->name);

		if (p != NULL) {
			p->busy = 0;
			p->done = j->done;
			p->ndone = j->ndone;
			j->done = NULL;
			if (j->result == JOB_GONE)
				forget(r, p);
			else if (j->result == JOB_LATER)
				p->due = now + LOCKED_RETRY;
			else if (j->result == JOB_STUCK)
				stuck(r, p, j, now);
			else {
				note_mta(r, j, now);
				defer(r, p, now);
				log_info("%s: deferred, next attempt in %u s: %s",
				    p->name, p->backoff, j->reply);
			}
		}
		free(j->done);
		free(j);
		j = next;
	}
}

/* Hand what is due to the workers, a few more than they can take. */
void
queue_run(struct relay *r, time_t now)
{
	for (size_t i = 0; i < r->nqueue && !r->terminating; i++) {
		struct pending	*p = &r->queue[i];
		struct job	*j;

		if (r->busy >= 2 * r->nworkers)
			return;
		if (p->busy || p->due > now || r->mta_down_until > now)
			continue;
		if ((j = calloc(1, sizeof(*j))) == NULL)
			return;
		snprintf(j->name, sizeof(j->name), "%s", p->name);
		j->submitted = now;
		/* Lend the worker what is already done for this file. */
		j->done = p->done;
		j->ndone = p->ndone;
		p->done = NULL;
		p->busy = 1;
		worker_submit(r, j);
	}
}

/* Milliseconds until something is due (the rescan at the latest). */
int
queue_next_timeout(const struct relay *r, time_t now)
{
	time_t next = r->next_scan;

	if (r->busy >= 2 * r->nworkers)
		return (int)(next <= now ? 0 : next - now) * 1000;
	for (size_t i = 0; i < r->nqueue; i++) {
		time_t due = r->queue[i].due;

		if (r->queue[i].busy)
			continue;
		if (due < r->mta_down_until)
			due = r->mta_down_until;
		if (due < next)
			next = due;
	}
	return next <= now ? 0 : (int)(next - now) * 1000;
}
