/*
 * no-landlock PROGRAM [ARG...]: run PROGRAM as on a kernel without
 * Landlock.  A seccomp filter makes the three landlock system calls fail
 * with ENOSYS for PROGRAM and everything it starts; all else is allowed.
 * Test-only (tests/integration/test_landlock.py).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <seccomp.h>

int
main(int argc, char *argv[])
{
	static const char *const calls[] = { "landlock_create_ruleset",
	    "landlock_add_rule", "landlock_restrict_self" };
	scmp_filter_ctx	 ctx;
	int		 rc;

	if (argc < 2) {
		fprintf(stderr, "usage: no-landlock PROGRAM [ARG...]\n");
		return 2;
	}
	if ((ctx = seccomp_init(SCMP_ACT_ALLOW)) == NULL) {
		fprintf(stderr, "no-landlock: seccomp_init failed\n");
		return 1;
	}
	/*
	 * No no_new_privs: msmilter's children must regain root's set-up
	 * capabilities by exec, as they do under a real kernel (we are root,
	 * so loading the filter needs no NNP).
	 */
	if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) != 0) {
		fprintf(stderr, "no-landlock: %s\n", strerror(-rc));
		return 1;
	}
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		int nr = seccomp_syscall_resolve_name(calls[i]);

		if (nr == __NR_SCMP_ERROR)
			continue;	/* libseccomp too old to know it */
		if ((rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr,
		    0)) != 0) {
			fprintf(stderr, "no-landlock: %s: %s\n", calls[i],
			    strerror(-rc));
			return 1;
		}
	}
	if ((rc = seccomp_load(ctx)) != 0) {
		fprintf(stderr, "no-landlock: seccomp_load: %s\n",
		    strerror(-rc));
		return 1;
	}
	seccomp_release(ctx);
	execv(argv[1], argv + 1);
	fprintf(stderr, "no-landlock: %s: %s\n", argv[1], strerror(errno));
	return 127;
}
