/* msmilter -t: the machine and Postfix checks (privsep/doctor.c). */
#ifndef MSM_DOCTOR_H
#define MSM_DOCTOR_H

#include "config.h"

/*
 * Check the machine, the Postfix instance in postfix_dir (NULL: the
 * default instance, checked only when postconf can read it) and the relay
 * target; one "error:" or "warning:" line each.  Returns the errors.
 */
int	doctor_run(const struct msm_settings *, const char *postfix_dir);

#endif
