/*
 * The allowlists, as data: groups of rules, one comment for every call
 * that is not obvious, argument filters where they are cheap, and one
 * policy (a list of groups) per process.  Trusts nothing once loaded: a
 * call outside the policy kills the process (SCMP_ACT_KILL_PROCESS), or in
 * debug mode traps into on_sigsys, which names it through the parent's log.
 */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <ucontext.h>
#include <unistd.h>

#include <seccomp.h>

#include "ipc.h"
#include "log.h"
#include "seccomp.h"
#include "testhook.h"

/* One allowed (or refused) form of a call; args[] ends at op 0. */
struct sc_rule {
	int			 nr;	/* SCMP_SYS(name) */
	int			 err;	/* 0: allow; else fail with this errno */
	struct scmp_arg_cmp	 args[3];
};

struct sc_group {
	const char		*name;
	const struct sc_rule	*rules;
	size_t			 n;
};

/* Replaced by our pid at load time (tgkill may signal only us). */
#define SC_SELF		((scmp_datum_t)-2)

/* Equal in the low 32 bits: an int argument may carry junk above them. */
#define EQ(i, v)	{ .arg = (i), .op = SCMP_CMP_MASKED_EQ, \
			  .datum_a = 0xffffffffu, .datum_b = (scmp_datum_t)(v) }
/* (argument & mask) == v */
#define MASKED(i, m, v)	{ .arg = (i), .op = SCMP_CMP_MASKED_EQ, \
			  .datum_a = (scmp_datum_t)(m), \
			  .datum_b = (scmp_datum_t)(v) }
#define SELF(i)		{ .arg = (i), .op = SCMP_CMP_EQ, .datum_a = SC_SELF }

#define ALLOW(call, ...)	{ SCMP_SYS(call), 0, { __VA_ARGS__ } }
#define REFUSE(call, e, ...)	{ SCMP_SYS(call), (e), { __VA_ARGS__ } }

#define NOEXEC		MASKED(2, PROT_EXEC, 0)
#define STREAM_NB	(SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK)
#define SOL(opt)	EQ(1, SOL_SOCKET), EQ(2, opt)

/* Every child: memory, time, signals, exit, its channels. */
static const struct sc_rule sc_base[] = {
	/* malloc and thread stacks; never executable memory (W^X) */
	ALLOW(brk), ALLOW(mmap, NOEXEC), ALLOW(mprotect, NOEXEC),
	ALLOW(munmap), ALLOW(mremap), ALLOW(madvise),
	ALLOW(futex),
	ALLOW(clock_gettime), ALLOW(gettimeofday), ALLOW(time),
	ALLOW(clock_nanosleep), ALLOW(nanosleep),
	ALLOW(rt_sigaction), ALLOW(rt_sigprocmask), ALLOW(rt_sigreturn),
	ALLOW(restart_syscall),
	/* pthread_kill and abort(): signals to ourselves only */
	ALLOW(getpid), ALLOW(gettid), ALLOW(tgkill, SELF(0)),
	ALLOW(exit), ALLOW(exit_group),
	/* libsodium's randombytes (queue ids, temp names) */
	ALLOW(getrandom),
	ALLOW(read), ALLOW(write), ALLOW(writev), ALLOW(close),
	/* stdio looks at stderr when a fatal line falls back to it */
	ALLOW(lseek), ALLOW(fstat), ALLOW(newfstatat, MASKED(3, AT_EMPTY_PATH,
	    AT_EMPTY_PATH)),
	ALLOW(fcntl, EQ(1, F_GETFD)), ALLOW(fcntl, EQ(1, F_SETFD)),
	ALLOW(fcntl, EQ(1, F_GETFL)), ALLOW(fcntl, EQ(1, F_SETFL)),
	/* IPC records and the descriptors they carry */
	ALLOW(sendmsg), ALLOW(recvmsg), ALLOW(poll), ALLOW(ppoll),
	ALLOW(getsockopt, SOL(SO_TYPE)),	/* ipc_is_socket */
};

/*
 * Threads: libmilter's (capture), the relay's workers, the spooler's commit
 * pool.  Their waits and wake-ups are futex(2) (in sc_base), their stacks
 * mmap/mprotect without PROT_EXEC, their exit exit(2), madvise when glibc
 * frees a stack.
 */
static const struct sc_rule sc_threads[] = {
	/* clone3 hides its flags in memory: glibc falls back to clone(2) */
	REFUSE(clone3, ENOSYS),
	/* threads only: a clone without CLONE_THREAD would be a fork */
	ALLOW(clone, MASKED(0, CLONE_THREAD, CLONE_THREAD)),
	/* glibc registers each new thread's robust futex list and rseq */
	ALLOW(set_robust_list), ALLOW(rseq),
	ALLOW(sched_yield),
};

/* msmilter-capture: milter connections and channels, no file at all. */
static const struct sc_rule sc_capture[] = {
	ALLOW(accept), ALLOW(accept4),
	/* one AF_UNIX pair per SMTP session, passed to the spooler */
	ALLOW(socketpair, EQ(0, AF_UNIX)),
	/* libmilter's worker pool wakes its threads through a pipe */
	ALLOW(pipe2),
	/* our dup of the control channel (capture_session_channel) */
	ALLOW(fcntl, EQ(1, F_DUPFD_CLOEXEC)),
	/* libmilter: keepalive on Postfix's connection; ours: send timeouts */
	ALLOW(setsockopt, SOL(SO_KEEPALIVE)),
	ALLOW(setsockopt, SOL(SO_SNDTIMEO_OLD)),
	ALLOW(setsockopt, SOL(SO_SNDTIMEO_NEW)),
	/* the idle reaper: find a session's socket, end it (milter.c) */
	ALLOW(getsockname), ALLOW(getpeername), ALLOW(shutdown),
	/* libmilter's signal thread: sigwait() */
	ALLOW(rt_sigtimedwait),
	/* libmilter at stop: may it unlink its unix socket? (not as root) */
	ALLOW(geteuid),
	/*
	 * libmilter logs with syslog(3), which would open /dev/log: refused
	 * (the chroot has none anyway), so its rare lines are lost.  Any
	 * other socket(2) kills.
	 */
	REFUSE(socket, EACCES, EQ(0, AF_UNIX), EQ(1, SOCK_DGRAM | SOCK_CLOEXEC)),
	/* libmilter stats its unix socket's path at stop: "not there" */
	REFUSE(newfstatat, ENOENT, MASKED(3, AT_EMPTY_PATH, 0)),
};

/* msmilter-spooler: milterin through its directory descriptor only. */
static const struct sc_rule sc_spooler[] = {
	/* Incoming Queue Dir, by path, at start and after a reload */
	ALLOW(openat, EQ(2, O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
	/* temp files: create exclusively, never follow a link, no x/s/o bits */
	ALLOW(openat, EQ(2, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC),
	    MASKED(3, ~0660u, 0)),
	ALLOW(renameat2, EQ(4, RENAME_NOREPLACE)),
	/* link+unlink where the file system has no RENAME_NOREPLACE */
	ALLOW(linkat, EQ(4, 0)), ALLOW(unlinkat, EQ(2, 0)),
	ALLOW(fsync),
	/* a commit round starts write-back of its files (commit.c) */
	ALLOW(sync_file_range),
	/* the commit pool tells the event loop a commit is done (commit.c) */
	ALLOW(eventfd2),
	/* leftover temp files at start: fdopendir on a dup, readdir */
	ALLOW(getdents64), ALLOW(dup),
	/* a requeued file from the relay, read by its descriptor */
	ALLOW(pread64),
};

/*
 * The spooler in Full Milter Scanner mode only (spooler/scan.c): a
 * spooler that DISCARDs to milterin never gets these, so it still cannot
 * reach any socket.  Temp files read-write: INSTREAM preads them, FDPASS
 * hands them to clamd, which reads.  One unix stream socket per message
 * to clamd's LocalSocket (no TCP: an inet clamd is reached through a
 * local socket only); sendmsg (in sc_base) carries the bytes and, with
 * SCM_RIGHTS, the descriptor; read(2) and poll(2) the answer.
 */
static const struct sc_rule sc_spooler_clamd[] = {
	ALLOW(openat, EQ(2, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC),
	    MASKED(3, ~0660u, 0)),
	ALLOW(socket, EQ(0, AF_UNIX), EQ(1, STREAM_NB)),
	ALLOW(connect),
};

/* msmilter-relay: milterout by descriptor, connections to the MTA. */
static const struct sc_rule sc_relay[] = {
	/* Outgoing Queue Dir and the quarantine directory, by path */
	ALLOW(openat, EQ(2, O_RDONLY | O_DIRECTORY | O_CLOEXEC)),
	/* a message file: read-only, or read-write for fcntl locks */
	ALLOW(openat, EQ(2, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)),
	ALLOW(openat, EQ(2, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK)),
	ALLOW(flock, EQ(1, LOCK_EX | LOCK_NB)),
	ALLOW(fcntl, EQ(1, F_SETLK)),
	/*
	 * Its progress files beside them (relay/progress.c): created
	 * exclusively (mode without x, s or other bits) or opened to append,
	 * never through a link; synced, with the directory at creation.
	 */
	ALLOW(openat, EQ(2, O_WRONLY | O_CREAT | O_EXCL | O_APPEND |
	    O_NOFOLLOW | O_CLOEXEC), MASKED(3, ~0600u, 0)),
	ALLOW(openat, EQ(2, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC |
	    O_NONBLOCK)),
	ALLOW(fsync),
	/* is the locked file still the one at that name, still there? */
	ALLOW(newfstatat, EQ(3, AT_SYMLINK_NOFOLLOW)),
	ALLOW(faccessat2, EQ(2, F_OK), EQ(3, AT_SYMLINK_NOFOLLOW)),
	/*
	 * Is milterout writable, so that what the MTA takes can be recorded
	 * (relay/settle.c, writable)?  And a delivered file that cannot be
	 * removed is marked delivered with the sticky bit, on its descriptor
	 * (settle.c, mark).  The mode is not checked: it is the file's own
	 * plus S_ISVTX, which the filter cannot know; the descriptors the
	 * relay holds are milterout files of its own user anyway.
	 */
	ALLOW(faccessat2, EQ(2, W_OK), EQ(3, AT_EACCESS)),
	ALLOW(fchmod),
	ALLOW(renameat2, EQ(4, RENAME_NOREPLACE)), ALLOW(unlinkat, EQ(2, 0)),
	ALLOW(getdents64), ALLOW(dup), ALLOW(pread64),
	/* workers tell the main thread a job is done */
	ALLOW(eventfd2),
	/* SMTP or QMQP to the MTA: TCP or a unix stream socket (net.c) */
	ALLOW(socket, EQ(0, AF_INET), EQ(1, STREAM_NB)),
	ALLOW(socket, EQ(0, AF_INET6), EQ(1, STREAM_NB)),
	ALLOW(socket, EQ(0, AF_UNIX), EQ(1, STREAM_NB)),
	ALLOW(connect), ALLOW(sendto), ALLOW(recvfrom),
	ALLOW(getsockopt, SOL(SO_ERROR)),
	ALLOW(setsockopt, SOL(SO_RCVTIMEO_OLD)),
	ALLOW(setsockopt, SOL(SO_RCVTIMEO_NEW)),
	ALLOW(setsockopt, SOL(SO_SNDTIMEO_OLD)),
	ALLOW(setsockopt, SOL(SO_SNDTIMEO_NEW)),
};

/*
 * Sanitizer builds only (make SAN=1, gcc), never installed: the ASan/UBSan
 * runtime's own calls.
 */
#if defined(__SANITIZE_ADDRESS__)
static const struct sc_rule sc_sanitizer[] = {
	/* ASan gives each thread an alternate signal stack */
	ALLOW(sigaltstack),
	ALLOW(sched_yield),
	/* it reads the CPU mask as threads come and go */
	ALLOW(sched_getaffinity),
};
#define SC_SANITIZER	{ "sanitizer", sc_sanitizer, \
			  sizeof(sc_sanitizer) / sizeof(sc_sanitizer[0]) },

/*
 * LeakSanitizer's check at exit stops the world with ptrace and reads
 * /proc/self/task: the filter rightly kills that (and capture's chroot has
 * no /proc anyway).  Only the children link this file, so the parent and
 * the unit tests keep their leak checks; ASAN_OPTIONS still wins.
 */
const char *__asan_default_options(void);
const char *
__asan_default_options(void)
{
	return "detect_leaks=0";
}
#else
#define SC_SANITIZER
#endif

#define GROUP(g)	{ #g, g, sizeof(g) / sizeof(g[0]) }

static const struct sc_group capture_policy[] = {
	GROUP(sc_base), GROUP(sc_threads), GROUP(sc_capture), SC_SANITIZER
};
static const struct sc_group spooler_policy[] = {
	GROUP(sc_base), GROUP(sc_threads), GROUP(sc_spooler), SC_SANITIZER
};
static const struct sc_group clamd_extra = GROUP(sc_spooler_clamd);
static const struct sc_group relay_policy[] = {
	GROUP(sc_base), GROUP(sc_threads), GROUP(sc_relay), SC_SANITIZER
};

static const struct {
	const struct sc_group	*groups;
	size_t			 n;
} policies[SANDBOX_PROC_COUNT] = {
	[SANDBOX_CAPTURE] = { capture_policy, sizeof(capture_policy) /
	    sizeof(capture_policy[0]) },
	[SANDBOX_SPOOLER] = { spooler_policy, sizeof(spooler_policy) /
	    sizeof(spooler_policy[0]) },
	[SANDBOX_RELAY] = { relay_policy, sizeof(relay_policy) /
	    sizeof(relay_policy[0]) },
};

/* ---- debug mode: name the call instead of dying ---- */

#define SC_NAMES	512
static char *sc_names[SC_NAMES];	/* resolved before the filter */

/* Async-signal-safe: append s to buf (size len, used *n). */
static void
append(char *buf, size_t len, size_t *n, const char *s)
{
	while (*s != '\0' && *n + 1 < len)
		buf[(*n)++] = *s++;
	buf[*n] = '\0';
}

static void
append_int(char *buf, size_t len, size_t *n, int v)
{
	char	 digits[16];
	int	 i = (int)sizeof(digits) - 1;
	unsigned u = v < 0 ? 0u - (unsigned)v : (unsigned)v;

	digits[i] = '\0';
	do {
		digits[--i] = (char)('0' + u % 10);
		u /= 10;
	} while (u != 0 && i > 1);
	if (v < 0)
		digits[--i] = '-';
	append(buf, len, n, digits + i);
}

/*
 * SIGSYS from SCMP_ACT_TRAP: log "forbidden system call NAME (NR)" with a
 * single sendmsg and make the call return -ENOSYS.  Runs in any thread.
 */
static void
on_sigsys(int sig, siginfo_t *si, void *uctx)
{
	static const struct ipc_log	 rec = { .priority = LOG_ERR };
	char				 line[160];
	size_t				 n = 0;
	int				 nr = si->si_syscall, saved = errno;

	(void)sig;
	append(line, sizeof(line), &n, "forbidden system call ");
	append(line, sizeof(line), &n, nr >= 0 && nr < SC_NAMES &&
	    sc_names[nr] != NULL ? sc_names[nr] : "?");
	append(line, sizeof(line), &n, " (");
	append_int(line, sizeof(line), &n, nr);
	append(line, sizeof(line), &n, ") refused with ENOSYS: Milter "
	    "Seccomp Debug is on; without it this process would be killed");
	ipc_sendv2(IPC_PARENT_FD, MSG_CHILD_LOG, &rec,
	    offsetof(struct ipc_log, text), line, n + 1, -1);
#if defined(__x86_64__)
	((ucontext_t *)uctx)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
#elif defined(__aarch64__)
	((ucontext_t *)uctx)->uc_mcontext.regs[0] = (unsigned long)-ENOSYS;
#else
	(void)uctx;
#endif
	errno = saved;
}

static void
debug_prepare(void)
{
	struct sigaction sa;

	for (int nr = 0; nr < SC_NAMES; nr++)
		sc_names[nr] = seccomp_syscall_resolve_num_arch(
		    SCMP_ARCH_NATIVE, nr);
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigsys;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	if (sigaction(SIGSYS, &sa, NULL) == -1)
		fatal("sigaction SIGSYS");
	log_warnx("Milter Seccomp Debug is on: forbidden system calls are "
	    "logged and refused instead of killing the process; never use "
	    "this in production");
}

/* ---- loading ---- */

/*
 * glibc opens /sys and /proc files behind our back in two places: to
 * count CPUs when it creates its ninth malloc arena, and to read
 * vm.overcommit_memory the first time it shrinks a thread's heap.  Fix
 * the arena limit and never trim, so neither happens once open(2) kills.
 * (ASan's allocator ignores both.)  Capture runs a libmilter thread per
 * SMTP session, and glibc gives threads arenas of their own up to the
 * limit, each with heap pages of its own: one arena for all of them took
 * capture's peak RSS at 20 sessions from 4.7 to 3.8-4.2 MB (make bench,
 * 4 KB), with the same CPU per message; they allocate little, and
 * seldom.  The others keep glibc's own default, 8 per CPU.
 */
static void
malloc_prepare(enum sandbox_proc proc)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);

	if (ncpu < 1 || ncpu > 4096)
		ncpu = 1;
	mallopt(M_ARENA_MAX, proc == SANDBOX_CAPTURE ? 1 : 8 * (int)ncpu);
	mallopt(M_TRIM_THRESHOLD, INT32_MAX);
}

static int
add_rule(scmp_filter_ctx ctx, const struct sc_rule *r, scmp_datum_t self)
{
	struct scmp_arg_cmp	 args[3];
	unsigned		 n = 0;
	uint32_t		 action = r->err ? SCMP_ACT_ERRNO(r->err) :
	    SCMP_ACT_ALLOW;

	/* A call this architecture does not have (pseudo number). */
	if (r->nr < 0)
		return 0;
	for (; n < 3 && r->args[n].op != 0; n++) {
		args[n] = r->args[n];
		if (args[n].datum_a == SC_SELF)
			args[n].datum_a = self;
	}
	return seccomp_rule_add_array(ctx, action, r->nr, n, args);
}

void
sandbox_seccomp(enum sandbox_proc proc, unsigned extras, int debug)
{
	scmp_filter_ctx	 ctx;
	scmp_datum_t	 self = (scmp_datum_t)getpid();
	int		 rc;

	if ((unsigned)proc >= SANDBOX_PROC_COUNT)
		fatalx("sandbox_seccomp: no policy %d", (int)proc);
	malloc_prepare(proc);
	if (debug)
		debug_prepare();
	testhook_install((int)proc);
	ctx = seccomp_init(debug ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS);
	if (ctx == NULL)
		fatalx("seccomp_init failed");
	/* Every thread, present and future; no other ABI (i386, x32). */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1)) != 0 ||
	    (rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
	    SCMP_ACT_KILL_PROCESS)) != 0)
		fatalx("seccomp_attr_set: %s", strerror(-rc));
	for (size_t g = 0; g < policies[proc].n; g++) {
		const struct sc_group *grp = &policies[proc].groups[g];

		for (size_t i = 0; i < grp->n; i++)
			if ((rc = add_rule(ctx, &grp->rules[i], self)) != 0)
				fatalx("seccomp rule %zu of %s: %s", i,
				    grp->name, strerror(-rc));
	}
	for (size_t i = 0; (extras & SANDBOX_CLAMD) &&
	    proc == SANDBOX_SPOOLER && i < clamd_extra.n; i++)
		if ((rc = add_rule(ctx, &clamd_extra.rules[i], self)) != 0)
			fatalx("seccomp rule %zu of %s: %s", i,
			    clamd_extra.name, strerror(-rc));
	if ((rc = seccomp_load(ctx)) != 0)
		fatalx("seccomp_load: %s", strerror(-rc));
	seccomp_release(ctx);
}

size_t
sandbox_seccomp_rules(enum sandbox_proc proc)
{
	size_t n = 0;

	if ((unsigned)proc >= SANDBOX_PROC_COUNT)
		return 0;
	for (size_t g = 0; g < policies[proc].n; g++)
		n += policies[proc].groups[g].n;
	return n;
}
