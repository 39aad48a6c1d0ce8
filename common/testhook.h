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
	 * Report another child's audit event: sigqueue value 0 in that
	 * child's record type, 1 in our own type (the parent must refuse
	 * both, log it, and write nothing).
	 */
	TESTHOOK_FOREIGN_AUDIT,
	TESTHOOK_COUNT
};

#ifdef MSM_TESTHOOKS
/* Install the handlers; proc is an enum sandbox_proc. */
void	testhook_install(int proc);
/* Where TESTHOOK_CREATE_OUTSIDE creates its file. */
void	testhook_set_probe(const char *path);
#else
#define testhook_install(proc)		((void)(proc))
#define testhook_set_probe(path)	((void)(path))
#endif

#endif
