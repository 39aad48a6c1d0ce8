/*
 * See sandbox.h.  Every step is checked and verified afterwards: a process
 * that believes it dropped privileges but did not is worse than one that
 * refuses to start.
 */
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "caps.h"
#include "sandbox.h"

int
sandbox_privileged(void)
{
	return geteuid() == 0;
}

int
sandbox_lookup(const char *user, const char *group, struct sandbox_creds *c,
    char *err, size_t errlen)
{
	struct passwd	*pw;
	struct group	*gr;

	memset(c, 0, sizeof(*c));
	if (user[0] == '\0')
		user = "root";
	snprintf(c->user, sizeof(c->user), "%s", user);
	errno = 0;
	if ((pw = getpwnam(user)) == NULL) {
		snprintf(err, errlen, "unknown user \"%s\"", user);
		return -1;
	}
	c->uid = pw->pw_uid;
	c->gid = pw->pw_gid;
	if (group != NULL && group[0] != '\0') {
		if ((gr = getgrnam(group)) == NULL) {
			snprintf(err, errlen, "unknown group \"%s\"", group);
			return -1;
		}
		c->gid = gr->gr_gid;
	}
	return 0;
}

static int
lock_down(char *err, size_t errlen)
{
	struct rlimit	 nocore = { 0, 0 };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1) {
		snprintf(err, errlen, "PR_SET_NO_NEW_PRIVS: %s",
		    strerror(errno));
		return -1;
	}
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == -1) {
		snprintf(err, errlen, "PR_SET_DUMPABLE: %s", strerror(errno));
		return -1;
	}
	if (setrlimit(RLIMIT_CORE, &nocore) == -1) {
		snprintf(err, errlen, "RLIMIT_CORE: %s", strerror(errno));
		return -1;
	}
	return 0;
}

int
sandbox_enter(const struct sandbox_creds *c, const char *root_dir,
    char *err, size_t errlen)
{
	uid_t	 ru, eu, su;
	gid_t	 rg, eg, sg;

	if (!sandbox_privileged())
		return caps_drop_all(err, errlen) == -1 ? -1 :
		    lock_down(err, errlen);

	if (caps_child_prepare(err, errlen) == -1)
		return -1;
	if (root_dir != NULL) {
		if (chroot(root_dir) == -1 || chdir("/") == -1) {
			snprintf(err, errlen, "chroot %s: %s", root_dir,
			    strerror(errno));
			return -1;
		}
	}
	if (setgroups(0, NULL) == -1 ||
	    setresgid(c->gid, c->gid, c->gid) == -1 ||
	    setresuid(c->uid, c->uid, c->uid) == -1) {
		snprintf(err, errlen, "cannot become %s (%u:%u): %s", c->user,
		    (unsigned)c->uid, (unsigned)c->gid, strerror(errno));
		return -1;
	}
	if (getresuid(&ru, &eu, &su) == -1 || getresgid(&rg, &eg, &sg) == -1 ||
	    ru != c->uid || eu != c->uid || su != c->uid ||
	    rg != c->gid || eg != c->gid || sg != c->gid ||
	    getgroups(0, NULL) != 0) {
		snprintf(err, errlen, "ids did not change as asked for %s",
		    c->user);
		return -1;
	}
	if (caps_drop_all(err, errlen) == -1)
		return -1;
	/* Callers refuse uid 0; should one slip through, it keeps nothing. */
	if (c->uid != 0 && (setuid(0) != -1 || seteuid(0) != -1)) {
		snprintf(err, errlen, "could regain root after dropping it");
		return -1;
	}
	return lock_down(err, errlen);
}

void
sandbox_close_from(int lowfd)
{
#ifdef SYS_close_range
	if (syscall(SYS_close_range, (unsigned)lowfd, ~0u, 0) == 0)
		return;
#endif
	long max = sysconf(_SC_OPEN_MAX);

	for (long fd = lowfd; fd < max; fd++)
		close((int)fd);
}
