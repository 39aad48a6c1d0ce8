/*
 * Landlock for the children (see landlock.h).  Raw system calls and our own
 * copies of the kernel's structures: Debian 12's headers stop at ABI 3, and
 * what a newer kernel offers is asked of the kernel itself.  Every right
 * the ABI knows is handled, so what no rule grants is denied.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "landlock.h"
#include "log.h"

#define RULESET_VERSION		(1U << 0)
#define RULE_PATH_BENEATH	1
#define RULE_NET_PORT		2

#define NET_BIND_TCP		(1ULL << 0)
#define NET_CONNECT_TCP		(1ULL << 1)
#define SCOPE_ABSTRACT_UNIX	(1ULL << 0)
#define SCOPE_SIGNAL		(1ULL << 1)
#define FS_RESOLVE_UNIX		(1ULL << 16)	/* ABI 8 */

/* The newest ABI whose rights we know; a newer kernel gets these. */
#define ABI_KNOWN		8

struct ll_ruleset_attr {
	uint64_t	handled_access_fs;
	uint64_t	handled_access_net;	/* ABI 4 */
	uint64_t	scoped;			/* ABI 6 */
};

struct ll_path_beneath {
	uint64_t	allowed_access;
	int32_t		parent_fd;
} __attribute__((packed));

struct ll_net_port {
	uint64_t	allowed_access;
	uint64_t	port;
};

/* File system rights handled at each ABI: 13 at first, then one more. */
static uint64_t
fs_rights(int abi)
{
	static const uint64_t by_abi[ABI_KNOWN + 1] = {
		0, 0x1fff, 0x3fff, 0x7fff, 0x7fff, 0xffff, 0xffff, 0xffff,
		0x1ffff,
	};

	return by_abi[abi > ABI_KNOWN ? ABI_KNOWN : abi];
}

int
landlock_abi(void)
{
#ifdef SYS_landlock_create_ruleset
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0,
	    RULESET_VERSION);

	return abi < 0 ? 0 : (int)abi;
#else
	return 0;
#endif
}

#ifdef SYS_landlock_create_ruleset
static void
add_rule(int ruleset, int type, const void *attr, const char *what)
{
	if (syscall(SYS_landlock_add_rule, ruleset, type, attr, 0) == -1)
		fatal("landlock rule for %s", what);
}

/* Directories: a rule each; one that does not exist gets none. */
static void
add_dirs(int ruleset, struct landlock_policy *p, uint64_t handled)
{
	for (size_t i = 0; i < p->ndirs; i++) {
		struct landlock_dir	*d = &p->dirs[i];
		struct ll_path_beneath	 pb;

		pb.allowed_access = d->access & handled;
		pb.parent_fd = open(d->path, O_PATH | O_DIRECTORY | O_CLOEXEC);
		d->missing = pb.parent_fd == -1;
		if (d->missing) {
			log_warn("landlock: %s: no rule, nothing beneath it "
			    "is reachable", d->path);
			continue;
		}
		add_rule(ruleset, RULE_PATH_BENEATH, &pb, d->path);
		close(pb.parent_fd);
	}
}

/*
 * The QMQP socket (ABI 8): a rule on the socket itself where the kernel
 * takes one, else on its directory (Postfix's public/, whose other
 * sockets Run As User reaches by its group anyway).
 */
static void
add_unix_socket(int ruleset, const char *path)
{
	struct ll_path_beneath	 pb = { .allowed_access = FS_RESOLVE_UNIX };
	char			 dir[1024];
	const char		*slash = strrchr(path, '/');

	pb.parent_fd = open(path, O_PATH | O_CLOEXEC);
	if (pb.parent_fd != -1 && syscall(SYS_landlock_add_rule, ruleset,
	    RULE_PATH_BENEATH, &pb, 0) == 0) {
		close(pb.parent_fd);
		return;
	}
	if (pb.parent_fd != -1)
		close(pb.parent_fd);
	if (slash == NULL || slash == path)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if ((pb.parent_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC)) ==
	    -1) {
		log_warn("landlock: QMQP socket directory %s", dir);
		return;
	}
	add_rule(ruleset, RULE_PATH_BENEATH, &pb, dir);
	close(pb.parent_fd);
}

static void
describe(const struct landlock_policy *p, int abi, char *buf, size_t len)
{
	size_t	 n = 0;

	n += (size_t)snprintf(buf + n, len - n, "landlock: ABI %d, %s:", abi,
	    abi >= 4 ? "file system and TCP rules" : "file system rules");
	if (p->ndirs == 0)
		n += (size_t)snprintf(buf + n, len - n, " no file system access");
	for (size_t i = 0; i < p->ndirs && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, " %s%s%s",
		    i ? "and " : "beneath ", p->dirs[i].path,
		    p->dirs[i].missing ? " (missing: none)" : "");
	if (n < len && abi >= 4)
		n += (size_t)snprintf(buf + n, len - n, p->tcp_port ?
		    "; TCP: connect to port %u only" : "; no TCP%.0u",
		    p->tcp_port);
	if (n < len && p->unix_socket != NULL)
		n += (size_t)snprintf(buf + n, len - n, abi >= 8 ?
		    "; unix socket %s only" : "; unix socket %s: not "
		    "confinable before ABI 8", p->unix_socket);
	if (n < len && abi >= 6)
		snprintf(buf + n, len - n, "; signals and abstract sockets "
		    "scoped");
}
#endif

/* What this process applied, for child_ready's report to the parent. */
static struct {
	int	abi;
	int	tcp;
} applied;

int
landlock_applied(int *tcp_rules)
{
	if (tcp_rules != NULL)
		*tcp_rules = applied.tcp;
	return applied.abi;
}

int
sandbox_landlock(struct landlock_policy *p, int enabled)
{
#ifdef SYS_landlock_create_ruleset
	struct ll_ruleset_attr	 attr;
	size_t			 attr_size;
	char			 line[1024];
	int			 abi = landlock_abi(), ruleset;

	if (!enabled) {
		log_warnx("landlock: off (Milter Landlock = no): confined by "
		    "seccomp and ids only, not by path");
		return 0;
	}
	if (abi == 0) {
		log_warnx("landlock: NOT AVAILABLE in this kernel: %s can "
		    "reach every path its uid can (seccomp and ids still "
		    "apply)", p->name);
		return 0;
	}
	memset(&attr, 0, sizeof(attr));
	attr.handled_access_fs = fs_rights(abi);
	attr_size = sizeof(attr.handled_access_fs);
	if (abi >= 4) {
		attr.handled_access_net = NET_BIND_TCP | NET_CONNECT_TCP;
		attr_size += sizeof(attr.handled_access_net);
	}
	if (abi >= 6) {
		attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL;
		attr_size += sizeof(attr.scoped);
	}
	ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size,
	    0);
	if (ruleset == -1)
		fatal("landlock_create_ruleset (ABI %d)", abi);
	add_dirs(ruleset, p, attr.handled_access_fs);
	if (abi >= 4 && p->tcp_port != 0) {
		struct ll_net_port np = { NET_CONNECT_TCP, p->tcp_port };

		add_rule(ruleset, RULE_NET_PORT, &np, "the MTA's port");
	}
	if (abi >= 8 && p->unix_socket != NULL)
		add_unix_socket(ruleset, p->unix_socket);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == -1 ||
	    syscall(SYS_landlock_restrict_self, ruleset, 0) == -1)
		fatal("landlock_restrict_self");
	close(ruleset);
	applied.abi = abi;
	applied.tcp = abi >= 4;		/* TCP handled: only rules pass */
	describe(p, abi, line, sizeof(line));
	log_info("%s", line);
	return abi;
#else
	(void)enabled;
	log_warnx("landlock: not built in (no system call numbers): %s is "
	    "not confined by path", p->name);
	return 0;
#endif
}
