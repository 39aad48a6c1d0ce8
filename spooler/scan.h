/*
 * Full Milter Scanner mode: clamd scans a message the spooler holds, on
 * one of the commit pool's threads (scan.c), and capture is told the
 * verdict instead of COMMITTED.  Trusts clamd for the verdict only: its
 * answer is read bounded and strictly (clamd_reply.c) and anything else
 * is a temporary failure.
 */
#ifndef MSM_SPOOL_SCAN_H
#define MSM_SPOOL_SCAN_H

#include <stdint.h>
#include <sys/un.h>

#include "clamd_reply.h"
#include "config.h"

/* What one scan needs, copied per job: a reload never changes it midway. */
struct scan_conf {
	char		 socket[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int		 method;		/* MSM_CLAMD_* */
	uint64_t	 deadline_us;		/* clock_now_us() clock */
};

void	scan_conf_set(struct scan_conf *c, const struct msm_settings *s,
	    uint64_t now_us);

/*
 * Have clamd scan the file open (readable) on fd, size bytes, before the
 * deadline.  Always fills r: a connection, protocol or time-out failure
 * is SCAN_TEMPFAIL with the reason in r->detail.
 */
void	scan_clamd(const struct scan_conf *c, int fd, uint64_t size,
	    struct clamd_reply *r);

/* The result's name in the audit record and the metrics. */
const char *scan_result_name(int result);

#endif
