/*
 * Logging for every process.  The parent writes syslog or stderr; a child
 * sends each line to the parent as one MSG_CHILD_LOG record, so a child
 * needs no /dev/log and no file.  Safe to call from several threads.
 */
#ifndef MSM_LOG_H
#define MSM_LOG_H

#include <stdarg.h>
#include <syslog.h>

#define LOG_LINE_MAX	1024

/* Parent: to stderr when foreground, otherwise syslog(facility). */
void	log_init_parent(const char *ident, int foreground, int facility,
	    int debug);
/* Child: every line goes to the parent over channel_fd. */
void	log_init_child(const char *ident, int channel_fd, int debug);
void	log_set_debug(int debug);
/*
 * Parent, while starting in the background: warnings and errors are also
 * written to fd, one per line, for the process that started us.  -1 ends
 * it.
 */
void	log_set_startup_fd(int fd);
/* Parent: emit a line a child sent (already prefixed by the child). */
void	log_emit(int priority, const char *line);

void	log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_notice(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_warn appends ": strerror(errno)"; log_warnx does not. */
void	log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void	log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Start-up failures and broken IPC peers only, never input. */
void	fatal(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));
void	fatalx(const char *fmt, ...)
	    __attribute__((format(printf, 1, 2), noreturn));

/* Syslog facility by name ("mail", "local3"), -1 when unknown. */
int	log_facility(const char *name);

#endif
