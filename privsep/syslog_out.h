/* The parent's own syslog writer (privsep/syslog.c). */
#ifndef MSM_SYSLOG_OUT_H
#define MSM_SYSLOG_OUT_H

/* Milter Syslog Socket and Syslog Facility; again after a reload. */
void	syslog_out_init(const char *path, int facility);
/*
 * One record, "TAG[PID]: text"; pri may carry its own facility
 * (LOG_AUTHPRIV for the audit checkpoints), else Syslog Facility's.
 */
void	syslog_out_send(int pri, const char *tag, long pid, const char *text);
void	syslog_out_close(void);

#endif
