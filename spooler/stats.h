/*
 * Where the spooler's time goes: fixed-bucket histograms of the commit
 * path, kept in memory by the event loop (no locks, no allocation, no
 * file) and logged as one line on SIGUSR1 and at stop.  Always compiled:
 * a few additions per message.
 */
#ifndef MSM_SPOOL_STATS_H
#define MSM_SPOOL_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "clock.h"

/*
 * Values below 16 have a bucket each; above, every power of two is cut
 * into 8 buckets, so a percentile is exact to 1/8 (12.5 %) of its value.
 * The last bucket takes everything from 2^27 up (134 s in microseconds).
 */
#define HIST_SUB	8
#define HIST_BUCKETS	(16 + (27 - 4) * HIST_SUB + 1)

struct hist {
	uint64_t	n, sum, max;
	uint32_t	b[HIST_BUCKETS];
};

struct spool_stats {
	struct hist	commit;		/* COMMIT read -> answer sent, us */
	struct hist	create;		/* creating the temp file, us */
	struct hist	write;		/* write(2) time of one message, us */
	struct hist	fsync;		/* one file's fsync, us */
	struct hist	rename;		/* one rename into place, us */
	struct hist	dirsync;	/* one directory fsync, us */
	struct hist	round;		/* files per directory fsync */
	uint64_t	failed;		/* commits answered FAILED */
	uint64_t	withdrawn;	/* durable, but capture had gone */
	struct hist	scan;		/* Full Scanner: connect -> verdict, us */
	struct hist	verdict;	/* Full Scanner: COMMIT read -> verdict
					   sent, us (what commit is for DISCARD) */
	uint64_t	scanned[4];	/* clean virus tempfail oversize */
};

void		hist_add(struct hist *h, uint64_t v);
/* The upper bound of the bucket holding the pct-th percentile (0: none). */
uint64_t	hist_pct(const struct hist *h, unsigned pct);
/* "stats: ..." as one log line. */
void		stats_log(const struct spool_stats *st);

#endif
