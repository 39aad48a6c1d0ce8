/*
 * MailScanner rulesets for the yes/no settings msmilter evaluates ("Is
 * Definitely Not Spam", "Is Definitely Spam"), matched exactly as
 * MailScanner's Config.pm matches them.  The parent reads the rules and
 * pattern files; capture gets the serialized form over its channel and
 * compiles that without touching the file system.  Neither text is trusted.
 * No globals: a compiled ruleset is read-only and may be evaluated from
 * several threads at once.
 */
#ifndef MSM_RULESET_H
#define MSM_RULESET_H

#include <stddef.h>

#define RULESET_WARNING		0
#define RULESET_ERROR		1

/* Bounds.  Anything beyond them is an error, never a truncation. */
#define RULESET_FILE_MAX	(16u << 20)	/* bytes in one rules/pattern file */
#define RULESET_READ_MAX	(64u << 20)	/* bytes read for one ruleset */
#define RULESET_FILES_MAX	1024		/* rules file + pattern files */
#define RULESET_ATOMS_MAX	200000		/* patterns, pattern files expanded */
#define RULESET_SERIAL_MAX	(32u << 20)	/* a serialized ruleset */
#define RULESET_NESTING_MAX	4		/* MailScanner's pattern file depth */

/* ruleset_parse_text() flags */
#define RULESET_NO_FILES	0x1	/* a pattern file is an error; open nothing */

struct ruleset;					/* opaque, compiled */

/*
 * Called once per problem.  severity: RULESET_WARNING or RULESET_ERROR.
 * file is NULL and line 0 when the problem is not in a file (the setting's
 * value itself); a serialized ruleset's framing is file "<serialized>" and
 * its line there.  Messages start with the setting's name.
 */
typedef void (*ruleset_report_fn)(void *arg, int severity, const char *file,
    unsigned line, const char *message);

/*
 * setting_value is the configuration value as MailScanner reads it:
 *   "yes" / "no"                 a constant (case-insensitive; a trailing
 *                                comma is allowed; 1/0 are not, MailScanner
 *                                refuses them for these settings)
 *   "/path/to/file.rules"        a rules file (not ending in txt or html)
 *   "&Function" or "x.customise" a custom function or SQL/LDAP ruleset: the
 *                                milter cannot evaluate it, warns once and
 *                                answers the default
 * setting_name is used in messages.  default_yes is the setting's default
 * when no rule matches (0 for both spam settings).  Returns NULL after
 * reporting every error.
 */
struct ruleset	*ruleset_load(const char *setting_name,
		    const char *setting_value, int default_yes,
		    ruleset_report_fn report, void *arg);

/*
 * The same for a MailScanner yes/no setting whose two values have names
 * of their own (Delivery Method: batch and queue): words[0] stands for no,
 * words[1] for yes.  For the parent's checks of settings it does not
 * evaluate per message.
 */
struct ruleset	*ruleset_load_words(const char *setting_name,
		    const char *setting_value, const char *const words[2],
		    int default_yes, ruleset_report_fn report, void *arg);

/*
 * Every verdict rs can give and where it is written: each rule's (file,
 * line, verdict) in file order, then, unless a default rule decides what
 * no other rule matches, (NULL, 0, the setting's default).  A constant
 * setting gives (NULL, 0, its value), a custom function or database
 * ruleset (NULL, 0, the default it is answered with).
 */
typedef void (*ruleset_verdict_fn)(void *arg, const char *file,
    unsigned line, int verdict);
void		 ruleset_verdicts(const struct ruleset *rs,
		    ruleset_verdict_fn fn, void *arg);

/*
 * The same from a rules file's text already read; file names it for
 * messages and for "where".  Pattern files named in it are read unless
 * flags has RULESET_NO_FILES.
 */
struct ruleset	*ruleset_parse_text(const char *setting_name, const char *file,
		    const char *text, size_t len, int default_yes, int flags,
		    ruleset_report_fn report, void *arg);

/*
 * Self-contained text (pattern files included, file:line provenance kept)
 * that ruleset_parse_serialized() turns back into an identical ruleset;
 * serializing that again gives the same bytes.  NUL-terminated, *len
 * excludes the NUL; at most RULESET_SERIAL_MAX.  NULL when out of memory.
 */
char		*ruleset_serialize(const struct ruleset *rs, size_t *len);

/* Strict: any deviation from what ruleset_serialize() writes is an error. */
struct ruleset	*ruleset_parse_serialized(const char *text, size_t len,
		    ruleset_report_fn report, void *arg);

/*
 * One message.  Addresses may be given bare or in angle brackets
 * ("<a@b>"; "" and "<>" are the null sender).  client_addr is the SMTP
 * client's address as text ("192.0.2.1", "2001:db8::1"; an "IPv6:" prefix
 * is accepted); client_name is the verified name Postfix reports, "unknown"
 * (or NULL or "") when there is none.
 */
struct rule_query {
	const char		 *sender;
	const char *const	 *rcpts;
	size_t			  nrcpt;
	const char		 *client_addr;
	const char		 *client_name;
};

/*
 * 1 yes, 0 no.  If where is not NULL it gets "file:line" of the deciding
 * rule (with " via file:line" when the matching pattern came from a pattern
 * file), "config" for a constant setting, or "default".
 */
int		 ruleset_eval(const struct ruleset *rs,
		    const struct rule_query *q, char *where, size_t wherelen);

void		 ruleset_free(struct ruleset *rs);

#endif
