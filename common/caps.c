/*
 * See caps.h.  Trusts only the kernel: every change is read back (capget,
 * PR_CAPBSET_READ, PR_CAP_AMBIENT_IS_SET) and compared with what we asked
 * for, because a libcap-ng call that silently did less must stop us.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cap-ng.h>
#include <linux/capability.h>

#include "caps.h"

#define BIT(c)		(UINT64_C(1) << (c))
#define MAX_CAPS	8

/*
 * What each child may hold while it sets itself up as root; it drops all
 * of it before it reads a byte of input.  CAP_SETPCAP is there so that
 * the child can empty its own bounding set and lock its securebits.
 */
static const struct {
	const char	*child;
	int		 caps[MAX_CAPS];	/* ends with -1 */
} child_caps[] = {
	/* chroot, become Milter User, lchown the unix socket */
	{ "capture", { CAP_SYS_CHROOT, CAP_SETUID, CAP_SETGID, CAP_SETPCAP,
	    CAP_CHOWN, -1 } },
	/* become Run As User (and stay root with no capability if it is) */
	{ "spooler", { CAP_SETUID, CAP_SETGID, CAP_SETPCAP, -1 } },
	{ "relay", { CAP_SETUID, CAP_SETGID, CAP_SETPCAP, -1 } },
};
#define NCHILD	(sizeof(child_caps) / sizeof(child_caps[0]))

/* A child we do not know gets the spooler's set. */
static const int base_caps[] = { CAP_SETUID, CAP_SETGID, CAP_SETPCAP, -1 };

/* Set by caps_parent_limit, inherited by the fork that runs capture. */
static int capture_low_port;
/* Set by caps_child_prepare: the bounding set must now read empty. */
static int bounding_cleared;

struct capsets {
	uint64_t	eff, prm, inh, bnd, amb;
};

static int
fail(char *err, size_t errlen, const char *what)
{
	snprintf(err, errlen, "capabilities: %s: %s", what,
	    errno ? strerror(errno) : "libcap-ng refused");
	return -1;
}

/* The kernel's view of our five sets, independent of libcap-ng. */
static int
caps_read(struct capsets *cs)
{
	struct __user_cap_header_struct	 hdr = {
		.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct	 d[2];

	memset(cs, 0, sizeof(*cs));
	if (syscall(SYS_capget, &hdr, d) == -1)
		return -1;
	cs->eff = d[0].effective | (uint64_t)d[1].effective << 32;
	cs->prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	cs->inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	for (int c = 0; c < 64; c++) {
		int in = prctl(PR_CAPBSET_READ, c, 0, 0, 0);

		if (in == -1)
			break;		/* past the kernel's last capability */
		if (in)
			cs->bnd |= BIT(c);
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1)
			cs->amb |= BIT(c);
	}
	errno = 0;
	return 0;
}

static const int *
caps_of(const char *child)
{
	for (size_t i = 0; i < NCHILD; i++)
		if (strcmp(child_caps[i].child, child) == 0)
			return child_caps[i].caps;
	return base_caps;
}

static uint64_t
mask_of(const int *caps)
{
	uint64_t m = 0;

	for (int i = 0; caps[i] != -1; i++)
		m |= BIT(caps[i]);
	return m;
}

/* Put mask into the libcap-ng state for the sets in type. */
static int
state_add(capng_type_t type, uint64_t mask)
{
	for (unsigned c = 0; c < 64; c++)
		if ((mask & BIT(c)) && capng_update(CAPNG_ADD, type, c) != 0)
			return -1;
	return 0;
}

/* libcap-ng cannot clear the ambient set in every version: do it here. */
static int
clear_ambient(void)
{
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) == -1 &&
	    errno != EINVAL)	/* EINVAL: a kernel without ambient sets */
		return -1;
	errno = 0;
	return 0;
}

int
caps_parent_limit(const struct msm_settings *s, char *err, size_t errlen)
{
	struct capsets	 cs;
	uint64_t	 keep = BIT(CAP_KILL) | BIT(CAP_SETPCAP), bound = 0;

	errno = 0;
	capture_low_port = s->milter_socket[0] == '\0' && s->milter_port < 1024;
	if (geteuid() != 0)
		return caps_drop_all(err, errlen);
	for (size_t i = 0; i < NCHILD; i++)
		bound |= mask_of(child_caps[i].caps);
	if (capture_low_port)
		bound |= BIT(CAP_NET_BIND_SERVICE);
	/*
	 * A container may have given us less: keep what there is, and let
	 * the child that misses something fail with its own clear error.
	 */
	if (caps_read(&cs) == -1)
		return fail(err, errlen, "capget");
	keep &= cs.prm;
	bound &= cs.bnd;
	capng_clear(CAPNG_SELECT_BOTH);
	if (state_add(CAPNG_EFFECTIVE | CAPNG_PERMITTED, keep) == -1 ||
	    state_add(CAPNG_BOUNDING_SET, bound) == -1)
		return fail(err, errlen, "building the parent's sets");
	/* Bounding set first: dropping it takes the CAP_SETPCAP we keep. */
	if (capng_apply(CAPNG_SELECT_BOUNDS) != 0)
		return fail(err, errlen, "bounding set");
	if (capng_apply(CAPNG_SELECT_CAPS) != 0)
		return fail(err, errlen, "effective/permitted sets");
	if (clear_ambient() == -1)
		return fail(err, errlen, "ambient set");
	if (caps_read(&cs) == -1)
		return fail(err, errlen, "capget");
	if (cs.eff != keep || cs.prm != keep || cs.inh != 0 ||
	    cs.bnd != bound || cs.amb != 0) {
		errno = 0;
		return fail(err, errlen, "the parent's sets are not as set");
	}
	return 0;
}

int
caps_child_bound(const char *child, char *err, size_t errlen)
{
	struct capsets	 cs;
	uint64_t	 bound = mask_of(caps_of(child));

	errno = 0;
	if (geteuid() != 0)
		return 0;
	if (strcmp(child, "capture") == 0 && capture_low_port)
		bound |= BIT(CAP_NET_BIND_SERVICE);
	if (caps_read(&cs) == -1)
		return fail(err, errlen, "capget");
	bound &= cs.bnd;
	capng_clear(CAPNG_SELECT_BOUNDS);
	if (state_add(CAPNG_BOUNDING_SET, bound) == -1 ||
	    capng_apply(CAPNG_SELECT_BOUNDS) != 0)
		return fail(err, errlen, "bounding set for the child");
	if (caps_read(&cs) == -1 || cs.bnd != bound) {
		errno = 0;
		return fail(err, errlen, "the child's bounding set is not as "
		    "set");
	}
	return 0;
}

int
caps_child_prepare(char *err, size_t errlen)
{
	errno = 0;
	capng_clear(CAPNG_SELECT_BOUNDS);
	if (capng_apply(CAPNG_SELECT_BOUNDS) != 0)
		return fail(err, errlen, "emptying the bounding set (no "
		    "CAP_SETPCAP?)");
	if (clear_ambient() == -1)
		return fail(err, errlen, "ambient set");
	/*
	 * SECBIT_NOROOT and SECBIT_NO_SETUID_FIXUP, locked: a uid of 0 (Run
	 * As User = root) gives nothing at exec, and the kernel does not
	 * touch capabilities at setuid; caps_drop_all clears them itself.
	 */
	if (capng_lock() != 0)
		return fail(err, errlen, "locking the securebits");
	bounding_cleared = 1;
	return 0;
}

int
caps_drop_all(char *err, size_t errlen)
{
	struct capsets cs;

	errno = 0;
	capng_clear(CAPNG_SELECT_CAPS);
	if (capng_apply(CAPNG_SELECT_CAPS) != 0)
		return fail(err, errlen, "clearing effective/permitted");
	if (clear_ambient() == -1)
		return fail(err, errlen, "ambient set");
	if (caps_read(&cs) == -1)
		return fail(err, errlen, "capget");
	/*
	 * Without CAP_SETPCAP (unprivileged mode) the bounding set cannot
	 * shrink; no_new_privs then keeps exec from using it.
	 */
	if (cs.eff != 0 || cs.prm != 0 || cs.inh != 0 || cs.amb != 0 ||
	    (bounding_cleared && cs.bnd != 0)) {
		errno = 0;
		return fail(err, errlen, "a capability is still there");
	}
	return 0;
}
