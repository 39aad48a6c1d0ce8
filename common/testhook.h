/*
 * Test-only triggers (make TESTHOOKS=1, -DMSM_TESTHOOKS; never in an
 * installed build): a test sends a child SIGRTMIN+n and the child tries
 * something its sandbox forbids, to prove the sandbox stops it.
 */
#ifndef MSM_TESTHOOK_H
#define MSM_TESTHOOK_H

/* What SIGRTMIN+n makes a child try (tests/integration/test_confinement.py). */
enum testhook_action {
	TESTHOOK_OPEN = 1,	/* open /etc/passwd */
	TESTHOOK_EXEC,		/* execve /bin/true */
	TESTHOOK_CONNECT,	/* connect its channel to 127.0.0.1:25 */
	TESTHOOK_SOCKET,	/* socket(AF_INET, SOCK_STREAM) */
	TESTHOOK_BAD_RECORD,	/* send the parent a type it may not send */
	/*
	 * Calls seccomp lets through, so that only Landlock can refuse them;
	 * the child logs "testhook: <what>: <result>".
	 */
	TESTHOOK_CREATE_OUTSIDE, /* create the probe file (spooler's flags) */
	TESTHOOK_READ_OUTSIDE,	/* open /etc/passwd as the relay opens files */
	TESTHOOK_CONNECT_PORT,	/* TCP connect to 127.0.0.1:<sigqueue value> */
	/*
	 * Faults in the spooler's commit path (tests/integration/
	 * test_commit.py); the sigqueue value says how long or how many, 0
	 * turns the fault off.
	 */
	TESTHOOK_STALL_COMMIT,	/* wait <value> ms before each file fsync */
	TESTHOOK_STALL_DIRSYNC,	/* wait <value> ms before each directory fsync */
	TESTHOOK_FAIL_FSYNC,	/* the next <value> file fsyncs fail, EIO */
	TESTHOOK_FAIL_DIRSYNC,	/* the next <value> directory fsyncs fail, EIO */
	TESTHOOK_COUNT
};

#ifdef MSM_TESTHOOKS
/* Install the handlers; proc is an enum sandbox_proc. */
void	testhook_install(int proc);
/* Where TESTHOOK_CREATE_OUTSIDE creates its file. */
void	testhook_set_probe(const char *path);
/* TESTHOOK_STALL_*: milliseconds to wait now (any thread). */
unsigned testhook_stall_ms(int action);
/* TESTHOOK_FAIL_*: 1 if this call is to fail (counts one down). */
int	testhook_fail(int action);
#else
#define testhook_install(proc)		((void)(proc))
#define testhook_set_probe(path)	((void)(path))
#define testhook_stall_ms(action)	((void)(action), 0u)
#define testhook_fail(action)		((void)(action), 0)
#endif

#endif
