/*
 * The parent's audit log writer (privsep/audit.c, audit_open.c): the
 * hooks msmilter.c and children.c call.  Nothing here can stop mail: a
 * log that cannot be written is logged loudly and its records counted.
 */
#ifndef MSM_AUDIT_HOOKS_H
#define MSM_AUDIT_HOOKS_H

#include <stdio.h>
#include <time.h>

#include "config.h"
#include "ipc.h"
#include "parent.h"

/* At start, before the children: open or continue the log, seal the
 * epochs that passed while we were down, write "start". */
void	audit_start(const struct msm_settings *s);
/* At stop, after the children: "stop" and a checkpoint, fsynced. */
void	audit_stop(void);
/* SIGHUP: a new file, linked to the last one. */
void	audit_rotate(void);
/* After a reload was tried; s is the configuration now in force. */
void	audit_reload(const struct msm_settings *s, int ok);
void	audit_child_exit(const char *child, int status);
/* A MSG_*_AUDIT record from a child (the broker's handler); -1 refuses. */
int	audit_child_record(struct child *c, struct ipc_msg *m);
/* poll timeout combined with ours (the next epoch boundary). */
int	audit_poll_timeout(int timeout_ms);
/* Seal the epochs that ended; called after every poll. */
void	audit_tick(void);
/* msmilter -t: where the log goes and whether it is keyed. */
void	audit_doctor(const struct msm_settings *s, FILE *out);

#endif
