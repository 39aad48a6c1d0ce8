/*
 * Counters for Prometheus textfile metrics and msmilter -s
 * (privsep/metrics.c): fed by the events the children report.
 */
#ifndef MSM_METRICS_H
#define MSM_METRICS_H

#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "parent.h"

/* msmilter_commit_seconds' upper bounds, microseconds; +Inf after. */
#define METRICS_COMMIT_BUCKETS	18

struct metrics_counts {
	uint64_t	 messages[4];	/* committed rejected tempfailed
					   accepted_loopback */
	uint64_t	 relay[4];	/* delivered deferred requeued
					   quarantined */
	uint64_t	 scan[4];	/* Milter Full Scanner: clean virus
					   tempfail oversize */
	uint64_t	 restarts[CHILD_COUNT];
	const char	*child_names[CHILD_COUNT];
	long		 queue_files[2];	/* milterin milterout; -1 */
	long		 queue_oldest[2];	/* seconds, from first seen; -1 */
	time_t		 started;
	/* end of message to COMMITTED, as capture measured it */
	uint64_t	 commit_le[METRICS_COMMIT_BUCKETS];	/* not
							   cumulative */
	uint64_t	 commit_count;
	uint64_t	 commit_sum_us;
};

/* After audit_start, before the parent gives up its capabilities. */
void	metrics_start(const struct parent *);
/*
 * Every event a child reported (enum ipc_audit_event); result is the
 * scan event's "result" field ("" for the others).
 */
void	metrics_event(uint32_t event, const char *result);
/* Capture's time from end of message to the spooler's COMMITTED. */
void	metrics_commit_time(uint64_t usec);
/*
 * Upper bound, microseconds, of the msmilter_commit_seconds bucket that
 * holds quantile q (0.5, 0.99): 0 before the first commit, UINT64_MAX
 * when it is past the last bound.
 */
uint64_t metrics_commit_quantile(const struct metrics_counts *, double q);
/* A child exited (audit_child_exit): a restart unless we stopped it. */
void	metrics_child_exit(const char *child);
/* The counters now, with the queues counted. */
void	metrics_snapshot(struct metrics_counts *);
/* Prometheus text format. */
int	metrics_format(FILE *, const struct metrics_counts *, int up);
/* The parent's poll timeout, shortened to the next write. */
int	metrics_poll_timeout(int timeout_ms);
/* After every poll: write the file when due. */
void	metrics_tick(void);
/* At stop: msmilter_up 0, written once more. */
void	metrics_stop(void);

#endif
