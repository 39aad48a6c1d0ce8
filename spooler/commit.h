/*
 * The commit pool: steps 3 to 5 of spool.c's commit path and the answer,
 * off the event loop.  Worker threads fsync files concurrently (the
 * journal batches them) and rename each into place; whichever worker
 * finds no directory fsync running does one for every file renamed so far
 * (group commit), answers COMMITTED on their session channels, and hands
 * the jobs back to the event loop.  Trusts the event loop, and nothing
 * else reaches it.
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
	pthread_cond_t		 to_sync;	/* workers wait on todo */
	struct commit_queue	 todo;		/* waiting for a file fsync */
	struct commit_queue	 renamed;	/* waiting for a directory fsync */
	struct commit_queue	 done;		/* for the event loop */
	int			 syncing;	/* a directory fsync is running */
	int			 in_flight;	/* files between todo and renamed */
	pthread_cond_t		 renamed_one;	/* in_flight went down */
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
