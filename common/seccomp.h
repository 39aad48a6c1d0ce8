/*
 * The system calls each child may make (libseccomp).  Loaded last in a
 * child's privilege-drop checklist, before it reads any untrusted input;
 * after that the kernel, not our code, decides what the process can do.
 */
#ifndef MSM_SECCOMP_H
#define MSM_SECCOMP_H

#include <stddef.h>

enum sandbox_proc { SANDBOX_CAPTURE, SANDBOX_SPOOLER, SANDBOX_RELAY,
	SANDBOX_PROC_COUNT };

/*
 * Load proc's allowlist, plus the extras the configuration enables, for
 * every thread of the process (TSYNC).  Any other call kills the whole process with SIGSYS; with debug (Milter
 * Seccomp Debug = yes) it fails with ENOSYS instead and is logged by name.
 * Fatal when the filter cannot be loaded: we never run unconfined.
 */
void	sandbox_seccomp(enum sandbox_proc proc, unsigned extras, int debug);

/* extras: rules only some configurations need */
#define SANDBOX_CLAMD	0x1	/* spooler, Milter Full Scanner = yes */

/* Number of rules in proc's allowlist (for reports and tests). */
size_t	sandbox_seccomp_rules(enum sandbox_proc proc);

#endif
