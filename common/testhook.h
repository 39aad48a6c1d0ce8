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
	 * Arm the point numbered by the sigqueue value: the next thread to
	 * reach it logs "testhook: stopped at <name>" and stops the process
	 * (SIGSTOP), for the test to kill it exactly there.
	 */
	TESTHOOK_STOP_AT,
	/*
	 * Report another child's audit event: sigqueue value 0 in that
	 * child's record type, 1 in our own type (the parent must refuse
	 * both, log it, and write nothing).
	 */
	TESTHOOK_FOREIGN_AUDIT,
	/*
	 * Faults in the spooler's commit path (tests/integration/
	 * test_commit.py); the sigqueue value says how long or how many, 0
	 * turns the fault off.
	 */
	TESTHOOK_STALL_COMMIT,	/* wait <value> ms before each file fsync */
	TESTHOOK_STALL_DIRSYNC,	/* wait <value> ms before each directory fsync */
	TESTHOOK_FAIL_FSYNC,	/* the next <value> file fsyncs fail, EIO */
	TESTHOOK_FAIL_DIRSYNC,	/* the next <value> directory fsyncs fail, EIO */
	TESTHOOK_FAIL_WRITEBACK, /* the next <value> waits for a commit round's
				    write-back fail, EIO */
	TESTHOOK_COUNT
};

/* Named points in the children's work (tests/integration/test_relay_kill.py). */
enum testhook_point {
	TESTHOOK_AT_RECORDED = 1,	/* relay: delivered recipients and the
					   requeue to come recorded; the
					   spooler not asked yet */
	TESTHOOK_AT_REQUEUED,		/* relay: the spooler committed the
					   requeue; not recorded yet */
	TESTHOOK_AT_DONE,		/* relay: every recipient done; the
					   file not removed yet */
	TESTHOOK_AT_REMOVED,		/* relay: the file removed; its
					   progress file not yet */
	/* Issue 15's range: 20-29. */
	TESTHOOK_AT_ACCEPTED = 20,	/* relay: the MTA said 250 and that is
					   recorded (a whole file: removed or
					   marked); nothing logged yet */
	TESTHOOK_AT_REQUEUE_SENT = 21,	/* relay: a requeue sent to the
					   spooler, its answer not read yet */
	TESTHOOK_AT_SENDING = 22,	/* relay: milterout found writable,
					   the MTA not contacted yet */
};

#ifdef MSM_TESTHOOKS
/* Install the handlers; proc is an enum sandbox_proc. */
void	testhook_install(int proc);
/* Where TESTHOOK_CREATE_OUTSIDE creates its file. */
void	testhook_set_probe(const char *path);
/* A named point (enum testhook_point): stop here when armed. */
void	testhook_at(int point, const char *name);
/* TESTHOOK_STALL_*: milliseconds to wait now (any thread). */
unsigned testhook_stall_ms(int action);
/* TESTHOOK_FAIL_*: 1 if this call is to fail (counts one down). */
int	testhook_fail(int action);
#else
#define testhook_install(proc)		((void)(proc))
#define testhook_set_probe(path)	((void)(path))
#define testhook_at(point, name)	((void)(point), (void)(name))
#define testhook_stall_ms(action)	((void)(action), 0u)
#define testhook_fail(action)		((void)(action), 0)
#endif

#endif
