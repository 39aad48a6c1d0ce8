/*
 * msmilter-audit: make the audit key, verify the log, show and count its
 * records.  Runs without privilege on a copy of the log anywhere; trusts
 * only audit.pub and audit.k0, which the operator keeps off the host.
 */
#ifndef MSM_AUDIT_TOOL_H
#define MSM_AUDIT_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "audit.h"

/* verify's exit codes (DESIGN.md). */
enum { VERIFY_OK = 0, VERIFY_FAILED = 1, VERIFY_UNSEALED = 2 };

int	cmd_keygen(int argc, char **argv);
int	cmd_verify(int argc, char **argv);
int	cmd_show(int argc, char **argv);
int	cmd_stats(int argc, char **argv);

/* The log's files, in the order of their first seq. */
struct logfile {
	const char	*path;
	uint64_t	 first_seq;
};

/* Sort paths by their first record's seq; -1 with a message printed. */
int	logs_order(char **paths, size_t n, struct logfile *out);

/*
 * Every line of every file, in order: fn(arg, file, lineno, line, len,
 * complete) with complete 0 for a last line without its newline.
 * Stops when fn returns non-zero and returns that; -1 on a read error.
 */
typedef int (*line_fn)(void *arg, const char *file, uint64_t lineno,
	    const char *line, size_t len, int complete);
int	logs_each(const struct logfile *files, size_t n, line_fn fn,
	    void *arg);

/* A value from the log for a terminal: non-printable bytes as \xHH. */
void	print_safe(FILE *out, const char *s, size_t len);
/* Read a whole small file (audit.pub, audit.k0); NULL with a message. */
char	*read_small(const char *path, size_t max, size_t *len);
/* "2026-11-24", "2026-11-24T10:00", "...:SS", RFC 3339 with Z; -1. */
int	parse_when(const char *s, int64_t *us);

#endif
