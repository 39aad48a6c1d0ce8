/*
 * Between config.c (the key table, defaults, checks: linked into every
 * process) and config_read.c (reading MailScanner.conf: the parent's
 * only).  Not for anything else.
 */
#ifndef MSM_CONFIG_PRIV_H
#define MSM_CONFIG_PRIV_H

#include <stddef.h>

#include "config.h"

#define CONFIG_MSG_LEN		512	/* one problem's text */
#define CONFIG_SHOW_BUF		65	/* a bad value quoted back, NUL */

/* Where a problem was found, and who hears of it (config_report_fn). */
struct pos {
	const char	*file;
	unsigned	 line;
};

struct reporter {
	config_report_fn	 report;
	void			*arg;
	int			 errors;
};

/* Report one problem; severity > 0 counts as an error. */
void		 config_say(struct reporter *, int sev, const struct pos *,
		    const char *key, const char *msg);
void		 config_sayf(struct reporter *, int sev, const struct pos *,
		    const char *key, const char *fmt, ...)
		    __attribute__((format(printf, 5, 6)));

/* Is key (any case and spacing) one msmilter uses? */
int		 config_key_known(const char *key);

/*
 * Set the key written as key (any case and spacing) from value.  0 when
 * set, 1 when msmilter does not use the key, -1 with msg when the value
 * is refused.
 */
int		 config_set_key(struct msm_settings *s, const char *key,
		    const char *value, char *msg, size_t msglen);

/* v for a message: at most 64 bytes, control characters as '?'. */
const char	*config_show(const char *v, char *buf, size_t len);

#endif
