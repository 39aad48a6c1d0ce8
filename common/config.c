/*
 * The settings msmilter takes from MailScanner.conf: the key table that
 * drives parsing, printing and validation, the defaults, and the checks
 * of a value or of a whole struct.  No file is read here: the reader
 * (percent variables, include globs, last value wins) is config_read.c,
 * the parent's only, so the sandboxed children link none of it.  Trusts
 * nothing: every value is checked and every problem names its key.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "config_priv.h"

#define SHOW_LEN		64	/* bytes of a bad value quoted back */

enum ktype { KT_STR, KT_BOOL, KT_ENUM, KT_UINT, KT_MODE };

/* Checks a string value; returns what is wrong, or NULL when it is fine. */
typedef const char *(*str_check_fn)(const char *v);

/* One key msmilter uses: drives parsing, printing and validation. */
struct key {
	const char		*norm;	/* config_normalise_key(name) */
	const char		*name;	/* MailScanner's spelling */
	enum ktype		 type;
	size_t			 off;	/* offsetof the field */
	size_t			 size;	/* sizeof the field */
	unsigned long		 min, max;	/* KT_UINT, KT_MODE */
	const char *const	*words;	/* KT_ENUM, NULL-ended */
	str_check_fn		 check;	/* KT_STR: optional */
	int			 lower;	/* KT_STR: store lowercased */
	const char		*note;	/* config_print: a comment line */
	enum config_rules	 rules;	/* KT_BOOL, KT_ENUM: as a ruleset */
};

/* Where in which file we are. */
/* Where config_check's findings go. */
static const char *const queue_words[] = { "short", "long", NULL };
static const char *const delivery_words[] = { "SMTP", "QMQP", NULL };
static const char *const socket_words[] = { "inet", "unix", NULL };
static const char *const ms_delivery_words[] = { "batch", "queue", NULL };
static const char *const lock_words[] = { "flock", "posix", NULL };
static const char *const audit_sync_words[] = { "every", "epoch", NULL };

static const char *const facilities[] = {
	"auth", "authpriv", "cron", "daemon", "ftp", "kern", "lpr", "mail",
	"news", "syslog", "user", "uucp", "local0", "local1", "local2",
	"local3", "local4", "local5", "local6", "local7", NULL
};

static const char *check_absolute(const char *v);
static const char *check_absolute_or_empty(const char *v);
static const char *check_reply_text(const char *v);
static const char *check_socket_path(const char *v);
static const char *check_control_socket(const char *v);
static const char *check_syslog_socket(const char *v);
static const char *check_address(const char *v);
static const char *check_facility(const char *v);
static const char *check_nonempty(const char *v);

/* Offset of a member, failing to compile unless it has the expected type. */
#define MEMBER(f)	(((struct msm_settings *)0)->f)
#define OFF(f, type)	(offsetof(struct msm_settings, f) + \
			    _Generic(MEMBER(f), type: 0))
#define AT(f, type)	.off = OFF(f, type), .size = sizeof MEMBER(f)

#define KSTR(n, nm, f, chk, low) \
	{ .norm = n, .name = nm, .type = KT_STR, AT(f, char *), \
	  .check = chk, .lower = low }
#define KBOOL(n, nm, f) \
	{ .norm = n, .name = nm, .type = KT_BOOL, AT(f, int), \
	  .min = 0, .max = 1 }
#define KENUM(n, nm, f, w) \
	{ .norm = n, .name = nm, .type = KT_ENUM, AT(f, int), \
	  .words = w }
#define KUINT(n, nm, f, lo, hi) \
	{ .norm = n, .name = nm, .type = KT_UINT, AT(f, unsigned), \
	  .min = lo, .max = hi }
#define KMODE(n, nm, f, hi) \
	{ .norm = n, .name = nm, .type = KT_MODE, AT(f, unsigned), \
	  .min = 0, .max = hi }

static const struct key keys[] = {
	KSTR("incomingqueuedir", "Incoming Queue Dir", incoming_queue_dir,
	    check_absolute, 0),
	KSTR("outgoingqueuedir", "Outgoing Queue Dir", outgoing_queue_dir,
	    check_absolute, 0),
	KSTR("mta", "MTA", mta, check_nonempty, 0),
	KENUM("msmailqueuetype", "MSMail Queue Type", queue_type, queue_words),
	KBOOL("milterscanner", "Milter Scanner", milter_scanner),
	KBOOL("milterignoreloopback", "Milter Ignore Loopback",
	    milter_ignore_loopback),
	KSTR("milterbind", "Milter Bind", milter_bind, check_address, 0),
	KUINT("milterport", "Milter Port", milter_port, 1, 65535),
	KSTR("milterpidfile", "Milter PID File", milter_pid_file,
	    check_absolute, 0),
	/*
	 * Concurrent milter sessions (MailScanner's Perl milter: processes,
	 * one session each).  The default leaves room above Postfix's
	 * default_process_limit of 100 smtpd processes, each holding one.
	 */
	{ .norm = "miltermaxchildren", .name = "Milter Max Children",
	  .type = KT_UINT, AT(milter_max_children, unsigned), .min = 1,
	  .max = 10000, .note = "concurrent milter sessions (not processes); "
	  "more get 451 4.3.2 at connect" },
	KSTR("runasuser", "Run As User", run_as_user, NULL, 0),
	KSTR("runasgroup", "Run As Group", run_as_group, NULL, 0),
	KSTR("incomingworkgroup", "Incoming Work Group", incoming_work_group,
	    NULL, 0),
	KENUM("msmaildeliverymethod", "MSMail Delivery Method",
	    delivery_method, delivery_words),
	KSTR("msmailrelayaddress", "MSMail Relay Address", relay_address,
	    check_address, 0),
	KUINT("msmailrelayport", "MSMail Relay Port", relay_port, 1, 65535),
	KENUM("msmailsockettype", "MSMail Socket Type", socket_type,
	    socket_words),
	KSTR("msmailsocketdir", "MSMail Socket Dir", socket_dir,
	    check_absolute, 0),
	KBOOL("debug", "Debug", debug),
	KBOOL("runinforeground", "Run In Foreground", run_in_foreground),
	KSTR("syslogfacility", "Syslog Facility", syslog_facility,
	    check_facility, 1),
	KSTR("isdefinitelynotspam", "Is Definitely Not Spam", spam_whitelist,
	    NULL, 0),
	KSTR("isdefinitelyspam", "Is Definitely Spam", spam_blacklist,
	    NULL, 0),
	KUINT("ignorespamwhitelistifrecipientsexceed",
	    "Ignore Spam Whitelist If Recipients Exceed", whitelist_max_recips,
	    0, INT_MAX),
	KSTR("miltersocket", "Milter Socket", milter_socket,
	    check_socket_path, 0),
	KSTR("miltersocketowner", "Milter Socket Owner", milter_socket_owner,
	    NULL, 0),
	KSTR("miltersocketgroup", "Milter Socket Group", milter_socket_group,
	    NULL, 0),
	KMODE("miltersocketmode", "Milter Socket Mode", milter_socket_mode,
	    0777),
	KSTR("milteruser", "Milter User", milter_user, check_nonempty, 0),
	KSTR("milterchroot", "Milter Chroot", milter_chroot, check_absolute, 0),
	/* Below Postfix's milter_content_timeout (300 s). */
	KUINT("miltercommittimeout", "Milter Commit Timeout",
	    milter_commit_timeout, 1, 250),
	/*
	 * libmilter closes a session silent this long.  Postfix may be
	 * silent 300 s (smtpd_timeout, milter_content_timeout) on a client
	 * that is thinking: keep it above that.
	 */
	KUINT("milteridletimeout", "Milter Idle Timeout", milter_idle_timeout,
	    1, 7210),
	/* Addresses and parameters of one transaction, in bytes. */
	KUINT("miltermaxenvelopesize", "Milter Max Envelope Size",
	    milter_max_envelope, 4096, 256 * 1024 * 1024),
	KSTR("milterrejecttext", "Milter Reject Text", milter_reject_text,
	    check_reply_text, 0),
	/*
	 * MailScanner yes/no settings that may be rulesets.  Two deliverers
	 * deliver twice: every message must go by queue.  Deliver Cleaned
	 * Messages is only warned about, so any yes in it counts.
	 */
	{ .norm = "deliverymethod", .name = "Delivery Method",
	  .type = KT_ENUM, AT(ms_delivery_method, int),
	  .words = ms_delivery_words, .rules = CONFIG_RULES_ALL_YES },
	{ .norm = "delivercleanedmessages", .name = "Deliver Cleaned Messages",
	  .type = KT_BOOL, AT(deliver_cleaned, int), .min = 0, .max = 1,
	  .rules = CONFIG_RULES_ANY_YES },
	KENUM("locktype", "Lock Type", lock_type, lock_words),
	KUINT("milterrelayminretry", "Milter Relay Min Retry", relay_min_retry,
	    1, 86400),
	KUINT("milterrelaymaxretry", "Milter Relay Max Retry", relay_max_retry,
	    1, 604800),
	KUINT("milterrelaytimeout", "Milter Relay Timeout", relay_timeout,
	    1, 3600),
	KUINT("milterrelayscaninterval", "Milter Relay Scan Interval",
	    relay_scan_interval, 1, 3600),
	KUINT("milterrelayconnections", "Milter Relay Connections",
	    relay_connections, 1, 64),
	KSTR("milterrelayquarantinedir", "Milter Relay Quarantine Dir",
	    relay_quarantine_dir, check_absolute_or_empty, 0),
	/* Debugging only: log and refuse forbidden system calls, not kill. */
	KBOOL("milterseccompdebug", "Milter Seccomp Debug",
	    milter_seccomp_debug),
	/* Confinement by path where the kernel has Landlock (landlock.h). */
	KBOOL("milterlandlock", "Milter Landlock", milter_landlock),
	/* The audit log: empty turns it off (SECURITY.md, Audit log). */
	KSTR("milterauditlog", "Milter Audit Log", milter_audit_log,
	    check_absolute_or_empty, 0),
	KSTR("milterauditkeydir", "Milter Audit Key Dir", milter_audit_key_dir,
	    check_absolute, 0),
	KUINT("milterauditepoch", "Milter Audit Epoch", milter_audit_epoch,
	    1, 86400),
	{ .norm = "milterauditsync", .name = "Milter Audit Sync",
	  .type = KT_ENUM, AT(milter_audit_sync, int), .words = audit_sync_words,
	  .note = "every: fsync each record and the commit path waits for it; "
	  "epoch: fsync when an epoch is sealed" },
	KUINT("milterauditrotatesize", "Milter Audit Rotate Size",
	    milter_audit_rotate_size, 0, 2147483647),
	/* Prometheus textfile metrics: empty turns them off. */
	KSTR("miltermetricsfile", "Milter Metrics File", milter_metrics_file,
	    check_absolute_or_empty, 0),
	KUINT("miltermetricsinterval", "Milter Metrics Interval",
	    milter_metrics_interval, 1, 3600),
	/* msmilter -s asks the parent here (root only). */
	KSTR("miltercontrolsocket", "Milter Control Socket",
	    milter_control_socket, check_control_socket, 0),
	/* Where the parent sends syslog records (a chroot, a container). */
	KSTR("miltersyslogsocket", "Milter Syslog Socket",
	    milter_syslog_socket, check_syslog_socket, 0),
};

#define NKEYS	(sizeof keys / sizeof keys[0])

/* ---- small helpers ---- */

static void *
field(struct msm_settings *s, const struct key *k)
{
	return (char *)s + k->off;
}

static const void *
cfield(const struct msm_settings *s, const struct key *k)
{
	return (const char *)s + k->off;
}

static int
nwords(const struct key *k)
{
	int	 n = 0;

	while (k->words[n] != NULL)
		n++;
	return n;
}

static void
set_default(char *dst, size_t size, const char *v)
{
	snprintf(dst, size, "%s", v);
}

/* Copy up to SHOW_LEN bytes of v for a message, control chars as '?'. */
static const char *
show(const char *v, char *buf, size_t len)
{
	size_t	 i;

	for (i = 0; v[i] != '\0' && i + 1 < len && i < SHOW_LEN; i++)
		buf[i] = iscntrl((unsigned char)v[i]) ? '?' : v[i];
	buf[i] = '\0';
	if (v[i] != '\0' && i >= 3)
		memcpy(buf + i - 3, "...", 3);
	return buf;
}

void
config_say(struct reporter *l, int sev, const struct pos *p, const char *key,
    const char *msg)
{
	if (sev > 0)
		l->errors++;
	if (l->report != NULL)
		l->report(l->arg, sev, p ? p->file : NULL, p ? p->line : 0,
		    key, msg);
}

void
config_sayf(struct reporter *l, int sev, const struct pos *p, const char *key,
    const char *fmt, ...)
{
	char	 msg[CONFIG_MSG_LEN];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	config_say(l, sev, p, key, msg);
}

void
config_normalise_key(const char *in, char *out, size_t outlen)
{
	size_t	 n = 0;

	if (outlen == 0)
		return;
	for (; *in != '\0' && n + 1 < outlen; in++) {
		int c = tolower((unsigned char)*in);

		if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
			out[n++] = (char)c;
	}
	out[n] = '\0';
}

static const struct key *
find_key(const char *written)
{
	char	 norm[128];	/* a truncated name matches no key */
	size_t	 i;

	config_normalise_key(written, norm, sizeof norm);
	for (i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].norm, norm) == 0)
			return &keys[i];
	return NULL;
}

/* ---- string checks ---- */

static const char *
check_absolute(const char *v)
{
	return v[0] == '/' ? NULL : "expected an absolute path (starting "
	    "with '/')";
}

/* An SMTP reply text: printable ASCII, no '%' (libmilter formats it). */
static const char *
check_reply_text(const char *v)
{
	if (v[0] == '\0')
		return "expected a reply text, for example Message Blacklisted";
	for (; *v != '\0'; v++)
		if (*v < 0x20 || *v > 0x7e || *v == '%')
			return "expected printable ASCII without '%'";
	return NULL;
}

static const char *
check_absolute_or_empty(const char *v)
{
	return v[0] == '\0' ? NULL : check_absolute(v);
}

static const char *
check_socket_path(const char *v)
{
	if (v[0] == '\0')
		return NULL;
	if (v[0] != '/')
		return "expected an absolute path for the milter's unix "
		    "socket, or nothing to listen on Milter Bind/Milter Port";
	if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return "path too long for a unix socket (at most 107 bytes)";
	return NULL;
}

static const char *
check_control_socket(const char *v)
{
	if (v[0] == '\0')
		return NULL;	/* no control socket: msmilter -s cannot ask */
	if (v[0] != '/')
		return "expected an absolute path for the control socket, or "
		    "nothing for none";
	if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return "path too long for a unix socket (at most 107 bytes)";
	return NULL;
}

static const char *
check_syslog_socket(const char *v)
{
	if (v[0] != '/')
		return "expected the absolute path of the syslog daemon's unix "
		    "socket, such as /dev/log";
	if (strlen(v) >= sizeof(((struct sockaddr_un *)0)->sun_path))
		return "path too long for a unix socket (at most 107 bytes)";
	return NULL;
}

static const char *
check_address(const char *v)
{
	unsigned char	 a[sizeof(struct in6_addr)];

	if (inet_pton(AF_INET, v, a) == 1 || inet_pton(AF_INET6, v, a) == 1)
		return NULL;
	return "expected a numeric IPv4 or IPv6 address such as 127.0.0.1";
}

static const char *
check_facility(const char *v)
{
	size_t	 i;

	for (i = 0; facilities[i] != NULL; i++)
		if (strcasecmp(v, facilities[i]) == 0)
			return NULL;
	return "expected a syslog facility: mail, daemon, user, local0 .. "
	    "local7, auth, authpriv, cron, ftp, kern, lpr, news, syslog or "
	    "uucp";
}

static const char *
check_nonempty(const char *v)
{
	return v[0] != '\0' ? NULL : "expected a non-empty value";
}

/* ---- value parsers: 0 or -1 with a message in msg ---- */

static int
set_string(const struct key *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	const char	*why;
	size_t		 n = strlen(v), i;
	char		*out = dst, b[SHOW_LEN + 1];

	if (n >= k->size) {
		snprintf(msg, msglen, "value is %zu bytes long, at most %zu "
		    "allowed", n, k->size - 1);
		return -1;
	}
	for (i = 0; i < n; i++)
		if (iscntrl((unsigned char)v[i]) && v[i] != '\t') {
			snprintf(msg, msglen, "value contains a control "
			    "character");
			return -1;
		}
	if (k->check != NULL && (why = k->check(v)) != NULL) {
		snprintf(msg, msglen, "'%s' is not allowed: %s",
		    show(v, b, sizeof b), why);
		return -1;
	}
	for (i = 0; i <= n; i++)
		out[i] = k->lower ? (char)tolower((unsigned char)v[i]) : v[i];
	return 0;
}

static int
set_bool(const struct key *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char	 b[SHOW_LEN + 1];
	int	 val;

	(void)k;
	if (strcasecmp(v, "yes") == 0 || strcmp(v, "1") == 0)
		val = 1;
	else if (strcasecmp(v, "no") == 0 || strcmp(v, "0") == 0)
		val = 0;
	else {
		snprintf(msg, msglen, "'%s' is not a boolean: expected yes, "
		    "no, 1 or 0", show(v, b, sizeof b));
		return -1;
	}
	memcpy(dst, &val, sizeof val);
	return 0;
}

static int
set_enum(const struct key *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	char	 b[SHOW_LEN + 1];
	int	 i;

	for (i = 0; k->words[i] != NULL; i++)
		if (strcasecmp(v, k->words[i]) == 0) {
			memcpy(dst, &i, sizeof i);
			return 0;
		}
	snprintf(msg, msglen, "'%s' is not allowed: expected %s or %s",
	    show(v, b, sizeof b), k->words[0], k->words[1]);
	return -1;
}

/* Decimal with an optional k/m/g suffix (1024 multipliers). */
static int
parse_number(const char *v, unsigned long long *out)
{
	unsigned long long	 n = 0;
	const char		*p = v;
	int			 shift = 0;

	if (!isdigit((unsigned char)*p))
		return -1;
	for (; isdigit((unsigned char)*p); p++) {
		if (n > (1ULL << 40))
			n = 1ULL << 41;	/* saturate: out of range */
		else
			n = n * 10 + (unsigned)(*p - '0');
	}
	switch (tolower((unsigned char)*p)) {
	case 'k': shift = 10; p++; break;
	case 'm': shift = 20; p++; break;
	case 'g': shift = 30; p++; break;
	default: break;
	}
	if (*p != '\0')
		return -1;
	*out = n << shift;
	return 0;
}

static int
set_uint(const struct key *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	unsigned long long	 n;
	unsigned		 val;
	char			 b[SHOW_LEN + 1];

	if (parse_number(v, &n) == -1) {
		snprintf(msg, msglen, "'%s' is not a number: expected decimal "
		    "digits with an optional k, m or g suffix",
		    show(v, b, sizeof b));
		return -1;
	}
	if (n < k->min || n > k->max) {
		snprintf(msg, msglen, "%s is out of range: expected %lu to %lu",
		    show(v, b, sizeof b), k->min, k->max);
		return -1;
	}
	val = (unsigned)n;
	memcpy(dst, &val, sizeof val);
	return 0;
}

static int
set_mode(const struct key *k, const char *v, void *dst, char *msg,
    size_t msglen)
{
	unsigned long	 n = 0;
	const char	*p;
	unsigned	 val;
	char		 b[SHOW_LEN + 1];

	for (p = v; *p >= '0' && *p <= '7' && n <= k->max; p++)
		n = n * 8 + (unsigned)(*p - '0');
	if (p == v || *p != '\0' || n > k->max) {
		snprintf(msg, msglen, "'%s' is not a file mode: expected octal "
		    "digits no greater than 0%lo, such as 0660",
		    show(v, b, sizeof b), k->max);
		return -1;
	}
	val = (unsigned)n;
	memcpy(dst, &val, sizeof val);
	return 0;
}

static int
set_value(const struct key *k, const char *v, struct msm_settings *s,
    char *msg, size_t msglen)
{
	void	*dst = field(s, k);

	switch (k->type) {
	case KT_STR:  return set_string(k, v, dst, msg, msglen);
	case KT_BOOL: return set_bool(k, v, dst, msg, msglen);
	case KT_ENUM: return set_enum(k, v, dst, msg, msglen);
	case KT_UINT: return set_uint(k, v, dst, msg, msglen);
	case KT_MODE: return set_mode(k, v, dst, msg, msglen);
	}
	snprintf(msg, msglen, "internal error: unknown key type");
	return -1;
}

/* ---- for the reader, config_read.c ---- */

int
config_key_known(const char *key)
{
	return find_key(key) != NULL;
}

/* MailScanner's rule for a key set to nothing: its default stands. */
static void
set_key_default(const struct key *k, struct msm_settings *s)
{
	struct msm_settings d;

	config_defaults(&d);
	memcpy(field(s, k), cfield(&d, k), k->size);
}

static int
empty_is_a_setting(const struct key *k)
{
	return k->type == KT_STR && k->check != NULL && k->check("") == NULL;
}

int
config_set_key(struct msm_settings *s, const char *key, const char *value,
    char *msg, size_t msglen)
{
	const struct key *k = find_key(key);

	if (k == NULL)
		return 1;
	/*
	 * MailScanner's rule: a key set to nothing takes its default.  Not
	 * where nothing is itself a setting (Milter Audit Log = turns the
	 * log off): those keys' checks accept the empty value.
	 */
	if (value[0] == '\0' && !empty_is_a_setting(k)) {
		set_key_default(k, s);
		return 0;
	}
	return set_value(k, value, s, msg, msglen);
}

enum config_rules
config_key_rules(const char *key, const char **name,
    const char *const **words)
{
	const struct key *k = find_key(key);

	if (k == NULL || k->rules == CONFIG_RULES_NO)
		return CONFIG_RULES_NO;
	*name = k->name;
	*words = k->type == KT_ENUM ? k->words : NULL;
	return k->rules;
}

int
config_set_verdict(struct msm_settings *s, const char *key, int yes)
{
	const struct key	*k = find_key(key);
	int			 v = yes != 0;

	if (k == NULL || k->rules == CONFIG_RULES_NO)
		return -1;
	memcpy(field(s, k), &v, sizeof(v));
	return 0;
}

const char *
config_show(const char *v, char *buf, size_t len)
{
	return show(v, buf, len);
}

/* ---- interface ---- */

void
config_defaults(struct msm_settings *s)
{
	memset(s, 0, sizeof *s);
#define SET(f, v)	set_default(s->f, sizeof s->f, v)
	SET(config_file, MSM_DEFAULT_CONFIG);
	SET(incoming_queue_dir, "/var/spool/mqueue.in");
	SET(outgoing_queue_dir, "/var/spool/mqueue");
	SET(mta, "sendmail");
	s->queue_type = MSM_QUEUE_SHORT;
	s->milter_scanner = 1;
	s->milter_ignore_loopback = 1;
	SET(milter_bind, "127.0.0.1");
	s->milter_port = 33333;
	SET(milter_pid_file, "/var/run/MSMilter.pid");
	s->milter_max_children = 200;
	s->delivery_method = MSM_DELIVER_SMTP;
	SET(relay_address, "127.0.0.1");
	s->relay_port = 25;
	s->socket_type = MSM_SOCKET_INET;
	SET(socket_dir, "/var/spool/postfix/public/qmqp");
	s->debug = 0;
	s->run_in_foreground = 0;
	SET(syslog_facility, "mail");
	SET(spam_whitelist, "no");
	SET(spam_blacklist, "no");
	s->whitelist_max_recips = 20;
	s->milter_socket_mode = 0660;
	SET(milter_user, "msmilter");
	SET(milter_chroot, "/var/lib/msmilter/empty");
	s->milter_commit_timeout = 60;
	s->milter_idle_timeout = 600;
	s->milter_max_envelope = 1024 * 1024;
	SET(milter_reject_text, "Message Blacklisted");
	s->ms_delivery_method = MSM_MS_BATCH;
	s->lock_type = MSM_LOCK_FLOCK;
	s->deliver_cleaned = 1;
	s->relay_min_retry = 5;
	s->relay_max_retry = 1800;
	s->relay_timeout = 300;
	s->relay_scan_interval = 30;
	s->relay_connections = 16;
	s->milter_seccomp_debug = 0;
	s->milter_landlock = 1;
	SET(milter_audit_log, "/var/log/msmilter/audit.log");
	SET(milter_audit_key_dir, "/etc/msmilter/audit");
	s->milter_audit_epoch = 60;
	s->milter_audit_sync = MSM_AUDIT_SYNC_EPOCH;
	s->milter_audit_rotate_size = 64 * 1024 * 1024;
	SET(milter_metrics_file, "");
	s->milter_metrics_interval = 15;
	SET(milter_control_socket, "/run/msmilter/control");
	SET(milter_syslog_socket, "/dev/log");
#undef SET
}

static int
is_loopback(const char *addr)
{
	unsigned char	 a[sizeof(struct in6_addr)];
	static const unsigned char v4mapped[12] =
	    { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	if (inet_pton(AF_INET, addr, a) == 1)
		return a[0] == 127;
	if (inet_pton(AF_INET6, addr, a) != 1)
		return 0;
	if (memcmp(a, v4mapped, sizeof v4mapped) == 0)
		return a[12] == 127;
	return memcmp(a, &in6addr_loopback, sizeof a) == 0;
}

/* Paths equal but for trailing slashes. */
static int
same_dir(const char *a, const char *b)
{
	size_t	 na = strlen(a), nb = strlen(b);

	while (na > 1 && a[na - 1] == '/')
		na--;
	while (nb > 1 && b[nb - 1] == '/')
		nb--;
	return na == nb && memcmp(a, b, na) == 0;
}

/* QMQP over a unix socket: it must exist and be a socket. */
static void
check_qmqp_socket(struct reporter *l, const char *path)
{
	struct stat st;

	if (stat(path, &st) == -1)
		config_sayf(l, 1, NULL, "MSMail Socket Dir", "QMQP socket %s: %s "
		    "(is the qmqp service in Postfix's master.cf?)", path,
		    strerror(errno));
	else if (!S_ISSOCK(st.st_mode))
		config_sayf(l, 1, NULL, "MSMail Socket Dir", "%s is not a socket",
		    path);
}

/*
 * MailScanner quarantines what the relay requeued with the Relay-Reject
 * header and, with Deliver Cleaned Messages, sends the cleaned copy on
 * into milterout: the MTA will most likely refuse it again.
 */
static void
warn_deliver_cleaned(struct reporter *l, const struct msm_settings *s)
{
	char	 bad[MSM_PATH_LEN];

	config_quarantine_dir(s, bad, sizeof(bad));
	config_sayf(l, 0, NULL, "Deliver Cleaned Messages", "Deliver Cleaned "
	    "Messages is yes (MailScanner's default): a message the MTA "
	    "refuses for good is requeued once, with an X-%.64s-MailScanner-"
	    "Relay-Reject header, for MailScanner to quarantine, and "
	    "MailScanner then sends its cleaned copy back to milterout; if "
	    "the MTA refuses that copy too, the relay moves it to %.900s "
	    "with a log line instead of requeueing it again (one requeue per "
	    "rejection).  Set Deliver Cleaned Messages = no to keep such "
	    "messages in MailScanner's quarantine only", s->org_name, bad);
}

int
config_check(const struct msm_settings *s, config_report_fn report,
    void *arg)
{
	struct reporter	 l;

	memset(&l, 0, sizeof l);
	l.report = report;
	l.arg = arg;
	if (strcasecmp(s->mta, "msmail") != 0)
		config_sayf(&l, 0, NULL, "MTA", "MTA is %.*s, not msmail: MailScanner "
		    "will not read the milterin queue; set MTA = msmail",
		    (int)sizeof s->mta, s->mta);
	if (s->milter_socket[0] == '\0') {
		config_sayf(&l, 0, NULL, "Milter Socket", "listening on inet %.*s "
		    "port %u: libmilter has no peer authentication, so any "
		    "local user who can reach the port can inject mail; prefer "
		    "Milter Socket = /path/to/socket",
		    (int)sizeof s->milter_bind, s->milter_bind, s->milter_port);
		if (!is_loopback(s->milter_bind))
			config_sayf(&l, 0, NULL, "Milter Bind", "Milter Bind %.*s is "
			    "not a loopback address: hosts on the network can "
			    "inject mail", (int)sizeof s->milter_bind,
			    s->milter_bind);
	}
	/*
	 * MailScanner's default, but a spooler or relay running as root with
	 * a broad open(2) is one bug away from owning the host.  A name that
	 * maps to uid 0 is caught where the accounts are looked up.
	 */
	if (s->run_as_user[0] == '\0' || strcmp(s->run_as_user, "root") == 0)
		config_say(&l, 1, NULL, "Run As User", "Run As User is empty or root: "
		    "the spooler and the relay would run as root; set it to "
		    "the user MailScanner runs as (postfix, or mail on Debian)");
	if (strcmp(s->run_as_group, "root") == 0 ||
	    strcmp(s->incoming_work_group, "root") == 0)
		config_say(&l, 1, NULL, "Run As Group", "Run As Group or Incoming Work "
		    "Group is root: the spooler and the relay would hold "
		    "group root; use the group MailScanner runs as");
	if (same_dir(s->incoming_queue_dir, s->outgoing_queue_dir))
		config_say(&l, 1, NULL, "Outgoing Queue Dir", "Incoming Queue Dir and "
		    "Outgoing Queue Dir are the same directory: MailScanner "
		    "would rescan its own output");
	/* Two deliverers on one queue deliver every message twice. */
	if (s->ms_delivery_method != MSM_MS_QUEUE)
		config_say(&l, 1, NULL, "Delivery Method", "Delivery Method must be "
		    "queue: otherwise MailScanner delivers milterout itself "
		    "and msmilter's relay delivers it again");
	if (s->deliver_cleaned)
		warn_deliver_cleaned(&l, s);
	if (s->relay_min_retry > s->relay_max_retry)
		config_say(&l, 1, NULL, "Milter Relay Min Retry", "Milter Relay Min "
		    "Retry is longer than Milter Relay Max Retry");
	/* MailScanner's sample says 10, meaning Perl milter processes. */
	if (s->milter_max_children < 100)
		config_say(&l, 0, NULL, "Milter Max Children", "Milter Max Children "
		    "counts concurrent milter sessions: below 100, Postfix's "
		    "default smtpd process limit, busy times get 451 4.3.2");
	if (s->delivery_method == MSM_DELIVER_QMQP &&
	    s->socket_type == MSM_SOCKET_UNIX)
		check_qmqp_socket(&l, s->socket_dir);
	return l.errors;
}

static void
print_key(const struct msm_settings *s, const struct key *k, FILE *out)
{
	const void	*f = cfield(s, k);
	unsigned	 u;
	int		 i;

	if (k->note != NULL)
		fprintf(out, "# %s: %s\n", k->name, k->note);
	switch (k->type) {
	case KT_STR:
		fprintf(out, "%s = %.*s\n", k->name, (int)k->size,
		    (const char *)f);
		return;
	case KT_BOOL:
		memcpy(&i, f, sizeof i);
		fprintf(out, "%s = %s\n", k->name, i ? "yes" : "no");
		return;
	case KT_ENUM:
		memcpy(&i, f, sizeof i);
		fprintf(out, "%s = %s\n", k->name, i >= 0 && i < nwords(k) ?
		    k->words[i] : "?");
		return;
	case KT_UINT:
		memcpy(&u, f, sizeof u);
		fprintf(out, "%s = %u\n", k->name, u);
		return;
	case KT_MODE:
		memcpy(&u, f, sizeof u);
		fprintf(out, "%s = 0%o\n", k->name, u);
		return;
	}
}

void
config_print(const struct msm_settings *s, FILE *out)
{
	size_t	 i;

	fprintf(out, "# settings from %.*s\n", (int)sizeof s->config_file,
	    s->config_file);
	fprintf(out, "%%org-name%% = %.*s\n", (int)sizeof s->org_name,
	    s->org_name);
	for (i = 0; i < NKEYS; i++)
		print_key(s, &keys[i], out);
}

static int
key_sane(const struct msm_settings *s, const struct key *k)
{
	const void	*f = cfield(s, k);
	unsigned	 u;
	int		 i;

	switch (k->type) {
	case KT_STR:
		return memchr(f, '\0', k->size) != NULL;
	case KT_BOOL:
		memcpy(&i, f, sizeof i);
		return i == 0 || i == 1;
	case KT_ENUM:
		memcpy(&i, f, sizeof i);
		return i >= 0 && i < nwords(k);
	case KT_UINT:
	case KT_MODE:
		memcpy(&u, f, sizeof u);
		return u >= k->min && u <= k->max;
	}
	return 0;
}

int
config_validate(const struct msm_settings *s)
{
	size_t	 i;

	if (memchr(s->config_file, '\0', sizeof s->config_file) == NULL ||
	    memchr(s->org_name, '\0', sizeof s->org_name) == NULL)
		return -1;
	for (i = 0; i < NKEYS; i++)
		if (!key_sane(s, &keys[i]))
			return -1;
	return 0;
}

/* Milter Relay Quarantine Dir, or "milterout-invalid" beside milterout. */
void
config_quarantine_dir(const struct msm_settings *s, char *out, size_t len)
{
	char	 dir[MSM_PATH_LEN];
	char	*slash;
	size_t	 n;

	if (s->relay_quarantine_dir[0] != '\0') {
		snprintf(out, len, "%s", s->relay_quarantine_dir);
		return;
	}
	snprintf(dir, sizeof(dir), "%s", s->outgoing_queue_dir);
	n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		dir[--n] = '\0';
	/* Outgoing Queue Dir is absolute: there is a slash. */
	if ((slash = strrchr(dir, '/')) == NULL || slash == dir)
		snprintf(out, len, "/milterout-invalid");
	else {
		*slash = '\0';
		snprintf(out, len, "%s/milterout-invalid", dir);
	}
}
