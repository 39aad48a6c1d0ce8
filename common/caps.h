/*
 * Capabilities with libcap-ng: the parent keeps only what starting the
 * children takes, each child starts with the few its set-up needs and ends
 * with none at all.  Trusts the kernel's answers, checked after each step.
 */
#ifndef MSM_CAPS_H
#define MSM_CAPS_H

#include <stddef.h>

#include "config.h"

/*
 * Parent, once, as root, before the first child: effective and permitted
 * shrink to CAP_KILL and CAP_SETPCAP, the bounding set (what a child
 * started as root can have) to the union of what the children need.
 * Not root: clear whatever we were given.  0, or -1 with a reason in err.
 */
int	caps_parent_limit(const struct msm_settings *s, char *err,
	    size_t errlen);

/* Parent's fork, just before execve: bound the child to its own needs. */
int	caps_child_bound(const char *child, char *err, size_t errlen);

/*
 * Child, as root, before changing ids: empty the bounding and ambient sets
 * and lock the securebits so that uid 0 means nothing to exec and setuid.
 */
int	caps_child_prepare(char *err, size_t errlen);

/* Child, after changing ids: no capability left in any set, verified. */
int	caps_drop_all(char *err, size_t errlen);

#endif
