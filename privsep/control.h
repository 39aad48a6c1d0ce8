/* The control socket and msmilter -s (privsep/control.c). */
#ifndef MSM_CONTROL_H
#define MSM_CONTROL_H

#include "config.h"
#include "parent.h"

/* Listen on Milter Control Socket (nothing when it is empty). */
void	control_start(const struct parent *);
/* The listening socket for the parent's poll, or -1. */
int	control_fd(void);
/* It is readable: answer the clients waiting. */
void	control_handle(void);
/* Close and remove the socket. */
void	control_stop(void);
/* msmilter -s [--json]: print the status; the exit code. */
int	control_client(const struct msm_settings *, int json);

#endif
