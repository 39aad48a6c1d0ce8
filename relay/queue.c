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

void
queue_add(struct relay *r, const char *name, time_t due)
{
	struct pending *p;

	if (!qfile_name_ok(name) || strlen(name) >= sizeof(p->name))
		return;
	if ((p = pending_find(r, name)) != NULL) {
		/* Seen again: sooner, unless it is backing off or busy. */
		if (p->backoff == 0 && due < p->due && pending_waiting(p))
			pending_set_due(r, p, due);
		return;
	}
	if (pending_new(r, name, due) == NULL)
		log_warn("no memory for the queue; %s waits for the next scan",
		    name);
}

static void
forget(struct relay *r, struct pending *p)
{
	free(p->memo);
	pending_free(r, p);
}

/* Waiting again, due then; forgotten when even that fails (ENOMEM). */
static void
wait_until(struct relay *r, struct pending *p, time_t due)
{
	if (pending_set_due(r, p, due) == -1) {
		log_warn("no memory for the queue; %s waits for the next scan",
		    p->name);
		forget(r, p);
	}
}

void
queue_scan(struct relay *r)
{
	DIR		*dir;
	struct dirent	*de;
	int		 fd;
	size_t		 names = 0;
	time_t		 now = time(NULL);

	if ((fd = dup(r->outdir)) == -1 || (dir = fdopendir(fd)) == NULL) {
		if (fd != -1)
			close(fd);
		log_warn("scanning %s", r->set.outgoing_queue_dir);
		return;
	}
	rewinddir(dir);
	while ((de = readdir(dir)) != NULL) {
		if (de->d_name[0] == '.')
			progress_sweep(r, de->d_name);
		else
			queue_add(r, de->d_name, now);
		names++;
	}
	closedir(dir);
	log_debug("rescanned %s: %zu names, %zu queued",
	    r->set.outgoing_queue_dir, names, r->nqueue);
}

static unsigned
next_backoff(const struct relay *r, unsigned cur)
{
	unsigned next = cur == 0 ? r->set.relay_min_retry : cur * 2;

	return next > r->set.relay_max_retry ? r->set.relay_max_retry : next;
}

/*
 * Retry later, with jitter so that a queue does not retry in lockstep.
 * Returns the seconds until then (p may be gone after: ENOMEM).
 */
static unsigned
defer(struct relay *r, struct pending *p, time_t now)
{
	unsigned wait;

	p->backoff = next_backoff(r, p->backoff);
	wait = p->backoff + randombytes_uniform(p->backoff / 4 + 1);
	wait_until(r, p, now + wait);
	return wait;
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

/*
 * Must not be delivered and cannot be moved aside (or which recipients
 * are done cannot be told): left in place, and tried again with the
 * backoff of a deferral, so that it goes soon once the cause is fixed
 * and costs next to nothing until then.  Said once per file, not at each
 * look; a rescan does not hurry it.
 */
static void
stuck(struct relay *r, struct pending *p, const struct job *j,
    time_t now)
{
	p->backoff = next_backoff(r, p->backoff);
	if (!p->stuck)
		log_warnx("%s: %s; left in place, trying again in %u s, then "
		    "backing off to at most every %u s", p->name, j->reply,
		    p->backoff, r->set.relay_max_retry);
	p->stuck = 1;
	wait_until(r, p, now + p->backoff +
	    (time_t)randombytes_uniform(p->backoff / 4 + 1));
}

static void
log_deferred(const struct relay *r, const struct job *j, unsigned wait)
{
	char	 qid[QUEUEID_MAX], target[MSM_PATH_LEN + 32];

	relay_log_id(j->name, qid, sizeof(qid));
	relay_log_target(r, target, sizeof(target));
	log_info("%s: relay=%s, file=%s, status=deferred (%s), next attempt "
	    "in %u s", qid, target, j->name, j->reply, wait);
}

/* Results of finished jobs: the worker's verdict on each file. */
void
queue_collect(struct relay *r, time_t now)
{
	struct job *j = worker_results(r);

	while (j != NULL) {
		struct job	*next = j->next;
		struct pending	*p = pending_find(r, j->name);

		if (p != NULL) {
			p->memo = j->memo;
			j->memo = NULL;
			if (j->result == JOB_GONE)
				forget(r, p);
			else if (j->result == JOB_LATER)
				wait_until(r, p, now + LOCKED_RETRY);
			else if (j->result == JOB_STUCK)
				stuck(r, p, j, now);
			else {
				note_mta(r, j, now);
				log_deferred(r, j, defer(r, p, now));
			}
		}
		free(j->memo);
		free(j);
		j = next;
	}
}

/* Hand what is due to the workers, a few more than they can take. */
void
queue_run(struct relay *r, time_t now)
{
	struct pending *p;

	while (!r->terminating && r->busy < 2 * r->nworkers &&
	    r->mta_down_until <= now && (p = pending_first(r)) != NULL &&
	    p->due <= now) {
		struct job *j = calloc(1, sizeof(*j));

		if (j == NULL)
			return;
		snprintf(j->name, sizeof(j->name), "%s", p->name);
		j->submitted = now;
		/* Lend the worker what is already done for this file. */
		j->memo = p->memo;
		p->memo = NULL;
		pending_take(r, p);
		worker_submit(r, j);
	}
}

/* Milliseconds until something is due (the rescan at the latest). */
int
queue_next_timeout(const struct relay *r, time_t now)
{
	const struct pending	*p = pending_first(r);
	time_t			 next = r->next_scan;

	if (p != NULL && r->busy < 2 * r->nworkers) {
		time_t due = p->due < r->mta_down_until ? r->mta_down_until :
		    p->due;

		if (due < next)
			next = due;
	}
	return next <= now ? 0 : (int)(next - now) * 1000;
}
