/*
 * What every child does first: make sure it was started by the parent
 * (channel on IPC_PARENT_FD), route its logs there, and take its settings.
 */
#ifndef MSM_CHILD_H
#define MSM_CHILD_H

#include "config.h"

/* Refuses to run (exit 2) when fd 3 is not our channel. */
void	child_init(const char *procname);
/* Wait for MSG_PARENT_SETTINGS; fatal when it does not come or is bad. */
void	child_get_settings(struct msm_settings *s);
/*
 * Become Run As User with Incoming Work Group (or Run As Group), as the
 * spooler and the relay do; fatal when the accounts are wrong.
 */
void	child_become_run_as(const struct msm_settings *s);
/* Tell the parent set-up is complete. */
void	child_ready(void);
/* Check and install settings the parent re-sent after a reload. */
int	child_take_settings(const void *data, size_t len,
	    struct msm_settings *s);

#endif
