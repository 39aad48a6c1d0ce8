/*
 * The commit pool: steps 3 to 5 of spool.c's commit path and the answer,
 * off the event loop.  One worker at a time runs commit rounds: the
 * directory fsync for the files renamed in the round before (then
 * COMMITTED on their session channels), an fsync of each file handed
 * over since, and their renames.  Under load a round begins at most every
 * HOLD_US (commit.c), so that one journal commit serves several files
 * instead of each file and each directory fsync paying for its own.  The
 * other workers scan (Full Milter Scanner mode).  Finished jobs go back to
 * the event loop.  Trusts the event loop, and nothing else reaches it.
 */
#ifndef MSM_SPOOL_COMMIT_H
#define MSM_SPOOL_COMMIT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc.h"
#include "scan.h"
#include "spool.h"

/*
 * One message being made durable.  From commit_submit until commit_collect
 * hands it back, the job and its spool_file belong to the pool: the event
 * loop neither reads nor frees them (nor the session that holds them).
 */
struct commit_job {
	struct spool_file	*file;
	int			 chan;		/* the session's channel */
	void			*owner;		/* the event loop's session */
	int			 loop_answers;	/* 1: the event loop answers
						   (after the audit record) */
	/*
	 * Milter Full Scanner: instead of steps 3 to 5, clamd scans the
	 * file, the worker removes it and answers VERDICT (scan.h).
	 */
	int			 scan;
	struct scan_conf	 scan_conf;
	struct commit_job	*next;
	/* Filled by the pool: */
	int			 err;		/* 0: durable; else errno */
	int			 answered;	/* COMMITTED sent to capture */
	char			 reason[IPC_REASON_MAX];
	uint64_t		 t_fsync, t_rename;	/* us; 0 if not done */
	uint64_t		 t_answer;	/* clock_now_us() when answered */
	struct ipc_verdict	 verdict;	/* scan: what capture is told */
	uint64_t		 t_scan;	/* scan: us from connect to answer */
	/* On one job of each directory fsync, for the stats: */
	uint32_t		 round;		/* files it covered */
	uint64_t		 t_dirsync;	/* us */
};

struct commit_queue {
	struct commit_job	*head, **tail;
};

struct commit_pool {
	struct spool_dir	*dir;
	pthread_mutex_t		 lock;
	pthread_cond_t		 to_sync;	/* idle workers wait here */
	struct commit_queue	 todo;		/* waiting for a file fsync */
	struct commit_queue	 scans;		/* waiting for clamd */
	struct commit_queue	 renamed;	/* waiting for a directory fsync */
	struct commit_queue	 done;		/* for the event loop */
	int			 syncing;	/* a worker runs the rounds */
	uint64_t		 round_start_us;	/* the last round's */
	uint64_t		 last_submit_us, gap_us; /* between the last two */
	int			 wake;		/* eventfd: done is not empty */
};

/* Start the threads; 0, or -1 with errno.  dir must outlive the pool. */
int	commit_start(struct commit_pool *p, struct spool_dir *dir,
	    int workers);
/* Hand a message whose last byte is written to the pool. */
void	commit_submit(struct commit_pool *p, struct commit_job *j);
/* Event loop, after the audit record: send a scan job's VERDICT. */
void	commit_answer_verdict(struct commit_job *j);
/* Event loop, when p->wake is readable: the finished jobs, as a list. */
struct commit_job *commit_collect(struct commit_pool *p);

#endif
