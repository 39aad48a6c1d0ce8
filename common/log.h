/*
 * Logging for every process.  The parent writes syslog or stderr; a child
 * sends each line to the parent as one MSG_CHILD_LOG record, so a child
 * needs no /dev/log and no file.  Safe to call from several threads.
 *
 * Every line carries a Postfix-style tag, its writer's name and pid:
 * "msmilter[PID]: ..." for the parent, "msmilter/capture[PID]: ..." for a
 * child (the child's own pid, put there by the parent, which knows it),
 * in syslog and on stderr alike, so that one grep for a queue id follows
 * a message from Postfix's lines through capture, spooler and relay.
 */
#ifndef MSM_LOG_H
#define MSM_LOG_H

#include <stdarg.h>
#include <syslog.h>

#define LOG_LINE_MAX	1024

/*
 * Parent: LOG_MODE_CLI (stderr, "msmilter: " in front: -t, -s),
 * LOG_MODE_FOREGROUND (stderr, tagged lines: -F) or LOG_MODE_SYSLOG
 * (through the sink log_set_syslog installed, else syslog(3)).
 */
enum log_mode { LOG_MODE_CLI, LOG_MODE_FOREGROUND, LOG_MODE_SYSLOG };
void	log_init_parent(const char *ident, enum log_mode mode, int facility,
	    int debug);
/*
 * Parent: the function that writes one syslog record (privsep/syslog.c);
 * pri is a priority, tag and pid name the writer.
 */
typedef void (*log_syslog_fn)(int pri, const char *tag, long pid,
    const char *text);
void	log_set_syslog(log_syslog_fn fn);
/* Child: every line goes to the parent over channel_fd. */
void	log_init_child(const char *ident, int channel_fd, int debug);
void	log_set_debug(int debug);
/*
 * Parent, while starting in the background: warnings and errors are also
 * written to fd, one per line, for the process that started us.  -1 ends
 * it.
 */
void	log_set_startup_fd(int fd);
/* Parent: emit a line a child (name, pid) sent, already checked. */
void	log_emit_child(int priority, const char *child, long pid,
	    const char *text);

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
