/*
 * clamd's answers to zINSTREAM, zFILDES and zPING, read strictly
 * (clamd_reply.c).  A pure function of the bytes clamd sent: no I/O, so
 * the unit test and the fuzzer drive it alone.  Trusts nothing: clamd
 * may be another host's (INSTREAM over a forwarded socket) or broken.
 */
#ifndef MSM_CLAMD_REPLY_H
#define MSM_CLAMD_REPLY_H

#include <stddef.h>

#include "ipc.h"

/* Most bytes of one exchange's answer we read; more is an error. */
#define CLAMD_REPLY_MAX		4096
/* "FOUND" records one answer may hold (AllMatchScanning). */
#define CLAMD_REPLY_RECORDS	16

struct clamd_reply {
	int	result;				/* enum ipc_scan_result */
	/* VIRUS: the first signature; OVERSIZE: the limit clamd named;
	 * TEMPFAIL: clamd's error, or what was wrong with the answer. */
	char	detail[IPC_SIGNATURE_MAX];
};

/*
 * The answer of one scan: records ended by NUL (z-commands) or a newline,
 * each "stream: OK" or "fd[N]: OK", "stream: <signature> FOUND" (or
 * fd[N]: ...), or "[stream: |fd[N]: ]<text> ERROR".  0 with r filled for a well-formed answer (any
 * result), -1 with r->result SCAN_TEMPFAIL and the reason in r->detail
 * for anything else: never CLEAN unless clamd clearly said OK.
 */
int	clamd_reply_parse(const char *buf, size_t len, struct clamd_reply *r);

/* Is buf (len bytes) clamd's answer to zPING? */
int	clamd_reply_pong(const char *buf, size_t len);

#endif
