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

/* One finding: error 1, warning 0; text is the whole line's message. */
typedef void (*doctor_say_fn)(void *arg, int error, const char *text);
/*
 * doctor_mac.c: the labels of milterin and milterout where SELinux
 * enforces; msmilter's profiles and the queue paths where AppArmor is on.
 */
void	doctor_mac(const struct msm_settings *, doctor_say_fn, void *arg);

#endif
