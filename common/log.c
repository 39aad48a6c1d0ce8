/*
 * Logging: see log.h.  A line is formatted once into a stack buffer and then
 * written with a single call, so lines from several threads never interleave.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ipc.h"
#include "log.h"

enum log_dest { LOG_TO_STDERR, LOG_TO_SYSLOG, LOG_TO_PARENT };

static struct {
	enum log_dest	dest;
	int		tagged;		/* stderr: "ident[pid]: " in front */
	const char	*ident;
	int		channel;
	int		debug;
	int		startup_fd;	/* see log_set_startup_fd */
	log_syslog_fn	syslog;		/* the parent's syslog writer */
} logstate = { LOG_TO_STDERR, 0, "msmilter", -1, 0, -1, NULL };

static const struct {
	const char	*name;
	int		 value;
} facilities[] = {
	{ "auth", LOG_AUTH }, { "authpriv", LOG_AUTHPRIV },
	{ "cron", LOG_CRON }, { "daemon", LOG_DAEMON },
	{ "ftp", LOG_FTP }, { "kern", LOG_KERN }, { "lpr", LOG_LPR },
	{ "mail", LOG_MAIL }, { "news", LOG_NEWS }, { "syslog", LOG_SYSLOG },
	{ "user", LOG_USER }, { "uucp", LOG_UUCP },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

int
log_facility(const char *name)
{
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcasecmp(name, facilities[i].name) == 0)
			return facilities[i].value;
	return -1;
}

void
log_init_parent(const char *ident, enum log_mode mode, int facility,
    int debug)
{
	logstate.ident = ident;
	logstate.debug = debug;
	logstate.dest = mode == LOG_MODE_SYSLOG ? LOG_TO_SYSLOG : LOG_TO_STDERR;
	logstate.tagged = mode == LOG_MODE_FOREGROUND;
	/*
	 * syslog(3) remains for records that are no log lines (the audit
	 * checkpoints) and where no writer of our own is installed.
	 */
	if (mode == LOG_MODE_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, facility);
}

void
log_set_syslog(log_syslog_fn fn)
{
	logstate.syslog = fn;
}

void
log_init_child(const char *ident, int channel_fd, int debug)
{
	logstate.ident = ident;
	logstate.debug = debug;
	logstate.channel = channel_fd;
	logstate.dest = LOG_TO_PARENT;
}

void
log_set_debug(int debug)
{
	logstate.debug = debug;
}

void
log_set_startup_fd(int fd)
{
	logstate.startup_fd = fd;
}

/* One line from the parent (child NULL) or a child, to where it goes. */
static void
emit(int priority, const char *child, long pid, const char *text)
{
	char tag[64];

	if (child != NULL)
		snprintf(tag, sizeof(tag), "%s/%s", logstate.ident, child);
	else
		snprintf(tag, sizeof(tag), "%s", logstate.ident);
	if (logstate.dest == LOG_TO_SYSLOG && logstate.syslog != NULL)
		logstate.syslog(priority, tag, pid, text);
	else if (logstate.dest == LOG_TO_SYSLOG)
		syslog(priority, "%s%s%s", child ? child : "", child ? ": " :
		    "", text);
	else if (logstate.tagged)
		dprintf(STDERR_FILENO, "%s[%ld]: %s\n", tag, pid, text);
	else
		dprintf(STDERR_FILENO, "%s: %s\n", tag, text);
	if (logstate.startup_fd != -1 && priority <= LOG_WARNING)
		dprintf(logstate.startup_fd, "%s[%ld]: %s\n", tag, pid, text);
}

void
log_emit_child(int priority, const char *child, long pid, const char *text)
{
	emit(priority, child, pid, text);
}

static void
log_vwrite(int priority, int with_errno, const char *fmt, va_list ap)
{
	char	 line[LOG_LINE_MAX];
	int	 saved_errno = errno;

	if (priority == LOG_DEBUG && !logstate.debug)
		return;
	/*
	 * No name in front: the parent puts its own and, on a child's
	 * line, the child's (a child cannot forge another's).
	 */
	vsnprintf(line, sizeof(line), fmt, ap);
	if (with_errno) {
		size_t used = strlen(line);
		snprintf(line + used, sizeof(line) - used, ": %s",
		    strerror(saved_errno));
	}
	/* A line from the network may carry control characters. */
	for (char *p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';

	if (logstate.dest == LOG_TO_PARENT) {
		struct ipc_log rec;

		rec.priority = priority;
		if (ipc_sendv2(logstate.channel, MSG_CHILD_LOG, &rec,
		    offsetof(struct ipc_log, text), line, strlen(line) + 1,
		    -1) == -1)	/* no parent to tag it: as it would */
			dprintf(STDERR_FILENO, "msmilter/%s[%ld]: %s\n",
			    logstate.ident, (long)getpid(), line);
	} else
		emit(priority, NULL, (long)getpid(), line);
	errno = saved_errno;
}

#define LOG_FUNC(name, prio, with_errno)			\
void								\
name(const char *fmt, ...)					\
{								\
	va_list ap;						\
	va_start(ap, fmt);					\
	log_vwrite(prio, with_errno, fmt, ap);			\
	va_end(ap);						\
}

LOG_FUNC(log_debug, LOG_DEBUG, 0)
LOG_FUNC(log_info, LOG_INFO, 0)
LOG_FUNC(log_notice, LOG_NOTICE, 0)
LOG_FUNC(log_warn, LOG_WARNING, 1)
LOG_FUNC(log_warnx, LOG_WARNING, 0)

void
fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, 1, fmt, ap);
	va_end(ap);
	exit(1);
}

void
fatalx(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vwrite(LOG_CRIT, 0, fmt, ap);
	va_end(ap);
	exit(1);
}
