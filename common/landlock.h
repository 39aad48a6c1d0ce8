/*
 * Confinement by path (Landlock).  seccomp decides which system calls a
 * child may make but cannot see the paths they name; Landlock closes that
 * gap: once a child has opened what it needs, it keeps only the file
 * hierarchies and the TCP port its job needs, whatever its uid could
 * reach.  Each child applies the best ABI the kernel offers; a kernel
 * without Landlock still runs, and says so loudly.
 */
#ifndef MSM_LANDLOCK_H
#define MSM_LANDLOCK_H

#include <stddef.h>
#include <stdint.h>

/* What a child may do beneath one directory (our names, the kernel's bits). */
#define LL_READ_FILE	(1ULL << 2)
#define LL_WRITE_FILE	(1ULL << 1)
#define LL_READ_DIR	(1ULL << 3)
#define LL_REMOVE_DIR	(1ULL << 4)
#define LL_REMOVE_FILE	(1ULL << 5)
#define LL_MAKE_DIR	(1ULL << 7)
#define LL_MAKE_REG	(1ULL << 8)
#define LL_MAKE_SOCK	(1ULL << 9)
#define LL_MAKE_FIFO	(1ULL << 10)
#define LL_MAKE_SYM	(1ULL << 12)
#define LL_REFER	(1ULL << 13)	/* ABI 2: rename across directories */

#define LANDLOCK_MAX_DIRS	3

struct landlock_dir {
	const char	*path;
	uint64_t	 access;
	int		 missing;	/* set: it did not exist, no rule made */
};

struct landlock_policy {
	const char		*name;		/* "spooler", for the log */
	struct landlock_dir	 dirs[LANDLOCK_MAX_DIRS];
	size_t			 ndirs;
	unsigned		 tcp_port;	/* may connect to it; 0: none */
	const char		*unix_socket;	/* may connect to it, or NULL */
};

/* The kernel's Landlock ABI version, 0 when it has none (or it is off). */
int	landlock_abi(void);

/*
 * Restrict the calling thread (call it before any other thread exists),
 * and so every thread it starts, to p; needs no_new_privs (sandbox_enter
 * sets it).  Returns the ABI applied, 0 when the kernel has no Landlock
 * or enabled is 0 (both logged); fatal when the kernel has Landlock and
 * refuses the ruleset.  A line in the log says what is still allowed.
 */
int	sandbox_landlock(struct landlock_policy *p, int enabled);
/*
 * The ABI sandbox_landlock applied in this process (0: none), and
 * whether TCP is confined too; reported to the parent for msmilter -s.
 */
int	landlock_applied(int *tcp_rules);

#endif
