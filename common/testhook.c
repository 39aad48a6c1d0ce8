/*
 * See testhook.h.  Compiled to nothing unless MSM_TESTHOOKS is defined.
 * Each action is one raw system call (or one IPC record), so what the
 * kernel sees is exactly what the test asked for.
 */
#include "testhook.h"

#ifdef MSM_TESTHOOKS
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <syslog.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc.h"

static char probe_path[1024];
static volatile sig_atomic_t armed;	/* a testhook_point, or 0 */
static int my_proc = -1;	/* enum sandbox_proc */

/* Set by the signal handler, read by any thread: lock-free atomics. */
static atomic_uint faults[TESTHOOK_COUNT];

unsigned
testhook_stall_ms(int action)
{
	return action > 0 && action < TESTHOOK_COUNT ?
	    atomic_load(&faults[action]) : 0;
}

int
testhook_fail(int action)
{
	unsigned n;

	if (action <= 0 || action >= TESTHOOK_COUNT)
		return 0;
	n = atomic_load(&faults[action]);
	while (n > 0)
		if (atomic_compare_exchange_weak(&faults[action], &n, n - 1))
			return 1;
	return 0;
}

void
testhook_set_probe(const char *path)
{
	snprintf(probe_path, sizeof(probe_path), "%s", path);
}

/* A log record, straight to the parent (no locks). */
static void __attribute__((format(printf, 1, 2)))
say(const char *fmt, ...)
{
	struct {
		struct ipc_log	lg;
		char		text[1200];
	} rec;
	va_list	ap;
	int	n;

	memset(&rec, 0, sizeof(rec));
	rec.lg.priority = LOG_INFO;
	va_start(ap, fmt);
	n = vsnprintf(rec.text, sizeof(rec.text), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(rec.text))
		n = (int)sizeof(rec.text) - 1;
	ipc_send(IPC_PARENT_FD, MSG_CHILD_LOG, &rec,
	    sizeof(rec.lg) + (size_t)n + 1, -1);
}

/* What came of a forbidden attempt. */
static void
report(const char *what, long rc, int err)
{
	say("testhook: %s: %s", what, rc >= 0 ? "allowed" : strerror(err));
}

static void
connect_port(int port)
{
	struct sockaddr_in	 sin;
	char			 what[64];
	long			 fd, rc;
	int			 err;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	snprintf(what, sizeof(what), "connect 127.0.0.1:%d", port);
	fd = syscall(SYS_socket, AF_INET, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0);
	if (fd == -1) {
		report(what, -1, errno);
		return;
	}
	rc = syscall(SYS_connect, fd, &sin, sizeof(sin));
	err = errno;
	/* In progress means the kernel let it go out. */
	report(what, rc == -1 && err == EINPROGRESS ? 0 : rc, err);
	close((int)fd);
}

/*
 * A commit, a delivery or a reject that is not ours to report, with the
 * fields it needs and nothing else wrong (one sendmsg, no malloc).
 */
static void
foreign_audit(int own_type)
{
	static const uint32_t	 types[] = { MSG_CAPTURE_AUDIT,
				    MSG_SPOOLER_AUDIT, MSG_RELAY_AUDIT };
	static const uint32_t	 events[] = { AUDIT_EV_REJECT,
				    AUDIT_EV_COMMIT, AUDIT_EV_DELIVERED };
	/* queue_id or client_addr first; 4 strings for the relay, else 5 */
	static const char	 strings[] = "FOREIGN0\0a\0b\0c\0d";
	struct ipc_audit	 h;
	int			 other = (my_proc + 1) % 3;

	if (my_proc < 0 || my_proc > 2)
		return;
	memset(&h, 0, sizeof(h));
	h.event = events[other];
	ipc_sendv2(IPC_PARENT_FD, own_type ? types[my_proc] : types[other],
	    &h, sizeof(h), strings, events[other] == AUDIT_EV_DELIVERED ?
	    sizeof(strings) - 2 : sizeof(strings), -1);
}

static void
on_hook(int sig, siginfo_t *si, void *uctx)
{
	static char *const	 argv[] = { "true", NULL };
	struct sockaddr_in	 sin;
	long			 rc;
	char			 what[1100];

	(void)uctx;
	switch (sig - SIGRTMIN) {
	case TESTHOOK_OPEN:
		syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
		break;
	case TESTHOOK_EXEC:
		syscall(SYS_execve, "/bin/true", argv, argv + 1);
		break;
	case TESTHOOK_CONNECT:
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(25);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		syscall(SYS_connect, IPC_PARENT_FD, &sin, sizeof(sin));
		break;
	case TESTHOOK_SOCKET:
		syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
		break;
	case TESTHOOK_BAD_RECORD:
		/* A child never sends STOP; the parent must kill us for it. */
		ipc_send(IPC_PARENT_FD, MSG_PARENT_STOP, NULL, 0, -1);
		break;
	case TESTHOOK_CREATE_OUTSIDE:
		rc = syscall(SYS_openat, AT_FDCWD, probe_path, O_WRONLY |
		    O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		snprintf(what, sizeof(what), "create %s", probe_path);
		report(what, rc, errno);
		if (rc >= 0)
			close((int)rc);
		break;
	case TESTHOOK_READ_OUTSIDE:
		rc = syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY |
		    O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		report("read /etc/passwd", rc, errno);
		if (rc >= 0)
			close((int)rc);
		break;
	case TESTHOOK_CONNECT_PORT:
		connect_port(si->si_value.sival_int);
		break;
	case TESTHOOK_STOP_AT:
		armed = si->si_value.sival_int;
		break;
	case TESTHOOK_FOREIGN_AUDIT:
		foreign_audit(si->si_value.sival_int);
		break;
	case TESTHOOK_STALL_COMMIT:
	case TESTHOOK_STALL_DIRSYNC:
	case TESTHOOK_FAIL_FSYNC:
	case TESTHOOK_FAIL_DIRSYNC:
	case TESTHOOK_FAIL_WRITEBACK:
		atomic_store(&faults[sig - SIGRTMIN],
		    si->si_value.sival_int > 0 ?
		    (unsigned)si->si_value.sival_int : 0u);
		rc = 0;
		snprintf(what, sizeof(what), "fault %d set to %d",
		    sig - SIGRTMIN, si->si_value.sival_int);
		report(what, rc, 0);
		break;
	}
}

void
testhook_at(int point, const char *name)
{
	if (armed != point)
		return;
	armed = 0;
	say("testhook: stopped at %s", name);
	raise(SIGSTOP);
}

void
testhook_install(int proc)
{
	struct sigaction sa;

	my_proc = proc;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_hook;
	sa.sa_flags = SA_RESTART | SA_SIGINFO;
	for (int a = TESTHOOK_OPEN; a < TESTHOOK_COUNT; a++)
		sigaction(SIGRTMIN + a, &sa, NULL);
}
#else
/* ISO C wants something in every translation unit. */
typedef int testhook_unused;
#endif
