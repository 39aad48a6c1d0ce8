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

/*
 * Keys MailScanner lets be a ruleset (yes/no settings, some with two
 * words of their own) and what msmilter needs of the ruleset.
 */
enum config_rules {
	CONFIG_RULES_NO,	/* a plain value only */
	CONFIG_RULES_ALL_YES,	/* every message must get the second word */
	CONFIG_RULES_ANY_YES,	/* yes when any message may get yes */
};

/*
 * How key takes a ruleset; *name gets its spelling in messages, *words
 * its two words (no, yes), NULL for yes and no.  CONFIG_RULES_NO for keys
 * that take none.
 */
enum config_rules config_key_rules(const char *key, const char **name,
		    const char *const **words);
/* Set a ruleset key to its second word (yes) or its first; -1 if none. */
int		 config_set_verdict(struct msm_settings *, const char *key,
		    int yes);

/* v for a message: at most 64 bytes, control characters as '?'. */
const char	*config_show(const char *v, char *buf, size_t len);

#endif
