/*
 * Privilege drop shared by the children: resolve accounts while /etc is
 * still visible, then chroot, change ids, empty every capability set
 * (caps.c) and lock the process down.  The seccomp filter (seccomp.h)
 * comes last, in each child's main().
 */
#ifndef MSM_SANDBOX_H
#define MSM_SANDBOX_H

#include <sys/types.h>

struct sandbox_creds {
	uid_t	uid;
	gid_t	gid;
	char	user[256];
};

/* 1 when running as root (privileged mode), 0 in unprivileged mode. */
int	sandbox_privileged(void);

/*
 * Look up user (and group, or the user's primary group when group is empty)
 * into c.  An empty user means root, as in MailScanner.conf.
 * 0, or -1 with a reason in err.
 */
int	sandbox_lookup(const char *user, const char *group,
	    struct sandbox_creds *c, char *err, size_t errlen);

/*
 * Empty the bounding and ambient sets, chroot to root_dir (when not
 * NULL), chdir("/"), drop every supplementary group, set real/effective/
 * saved ids to c, clear every capability (even when c is root), then
 * no_new_privs, not dumpable, no core files.  In unprivileged mode only
 * the capability clearing and the last three happen.  0, or -1 with a
 * reason in err.
 */
int	sandbox_enter(const struct sandbox_creds *c, const char *root_dir,
	    char *err, size_t errlen);

/* Close every descriptor >= lowfd (children start with only channels). */
void	sandbox_close_from(int lowfd);

#endif
