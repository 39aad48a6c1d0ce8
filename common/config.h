/*
 * MailScanner.conf reader: the settings msmilter uses, with MailScanner's
 * defaults.  Trusts nothing in the file; every error names file, line, key.
 * struct msm_settings has no pointers so the parent can send it to a child
 * as one IPC message and the child can check it field by field.
 */
#ifndef MSM_CONFIG_H
#define MSM_CONFIG_H

#include <stddef.h>
#include <stdio.h>

#define MSM_PATH_LEN	1024
#define MSM_NAME_LEN	256

/* The Makefile passes its SYSCONFDIR, so the default follows `make install`. */
#ifndef MSM_SYSCONFDIR
#define MSM_SYSCONFDIR		"/etc"
#endif
#define MSM_DEFAULT_CONFIG	MSM_SYSCONFDIR "/MailScanner/MailScanner.conf"

enum msm_queue_type { MSM_QUEUE_SHORT = 0, MSM_QUEUE_LONG = 1 };
enum msm_delivery { MSM_DELIVER_SMTP = 0, MSM_DELIVER_QMQP = 1 };
enum msm_socket_type { MSM_SOCKET_INET = 0, MSM_SOCKET_UNIX = 1 };
enum msm_ms_delivery { MSM_MS_BATCH = 0, MSM_MS_QUEUE = 1 };
enum msm_lock_type { MSM_LOCK_FLOCK = 0, MSM_LOCK_POSIX = 1 };
enum msm_audit_sync { MSM_AUDIT_SYNC_EVERY = 0, MSM_AUDIT_SYNC_EPOCH = 1 };

struct msm_settings {
	char	config_file[MSM_PATH_LEN];

	/* MailScanner keys */
	char	incoming_queue_dir[MSM_PATH_LEN];	/* /var/spool/mqueue.in */
	char	outgoing_queue_dir[MSM_PATH_LEN];	/* /var/spool/mqueue */
	char	mta[MSM_NAME_LEN];			/* sendmail */
	int	queue_type;				/* short */
	int	milter_scanner;				/* yes */
	int	milter_ignore_loopback;			/* yes */
	char	milter_bind[MSM_NAME_LEN];		/* 127.0.0.1 */
	unsigned milter_port;				/* 33333 */
	char	milter_pid_file[MSM_PATH_LEN];		/* /var/run/MSMilter.pid */
	unsigned milter_max_children;			/* 200 concurrent milter sessions */
	char	run_as_user[MSM_NAME_LEN];		/* "" = root */
	char	run_as_group[MSM_NAME_LEN];		/* "" = root */
	char	incoming_work_group[MSM_NAME_LEN];	/* "" */
	int	delivery_method;			/* SMTP */
	char	relay_address[MSM_NAME_LEN];		/* 127.0.0.1 */
	unsigned relay_port;				/* 25 */
	int	socket_type;				/* inet */
	char	socket_dir[MSM_PATH_LEN];		/* /var/spool/postfix/public/qmqp */
	int	debug;					/* no */
	int	run_in_foreground;			/* no */
	char	syslog_facility[MSM_NAME_LEN];		/* mail */
	char	org_name[MSM_NAME_LEN];			/* %org-name%, "" */
	char	spam_whitelist[MSM_PATH_LEN];		/* Is Definitely Not Spam: no */
	char	spam_blacklist[MSM_PATH_LEN];		/* Is Definitely Spam: no */
	unsigned whitelist_max_recips;			/* 20 */
	int	ms_delivery_method;			/* Delivery Method: batch */
	int	lock_type;				/* flock */
	int	deliver_cleaned;			/* Deliver Cleaned Messages: yes */

	/* msmilter's own keys, all starting with "Milter" */
	char	milter_socket[MSM_PATH_LEN];		/* "" = listen on inet */
	char	milter_socket_owner[MSM_NAME_LEN];	/* "" = Run As User */
	char	milter_socket_group[MSM_NAME_LEN];	/* "" = Run As Group */
	unsigned milter_socket_mode;			/* 0660 */
	char	milter_user[MSM_NAME_LEN];		/* msmilter (capture) */
	char	milter_chroot[MSM_PATH_LEN];		/* /var/lib/msmilter/empty */
	unsigned milter_commit_timeout;			/* 60 s: capture waits for spooler */
	unsigned milter_idle_timeout;			/* 600 s: Postfix silent on a session */
	unsigned milter_max_envelope;			/* 1 MB of addresses per transaction */
	char	milter_reject_text[MSM_NAME_LEN];	/* Message Blacklisted */
	unsigned relay_min_retry;			/* 5 s */
	unsigned relay_max_retry;			/* 1800 s */
	unsigned relay_timeout;				/* 300 s per SMTP/QMQP step */
	unsigned relay_scan_interval;			/* 30 s */
	unsigned relay_connections;			/* 16 delivery threads */
	char	relay_quarantine_dir[MSM_PATH_LEN];	/* "" = <milterout>/../milterout-invalid */
	int	milter_seccomp_debug;			/* no: forbidden calls kill */
	int	milter_landlock;			/* yes: confine children by path */

	/* The audit log (privsep/audit.c; the key dir is the parent's only) */
	char	milter_audit_log[MSM_PATH_LEN];		/* /var/log/msmilter/audit.log, "" = off */
	char	milter_audit_key_dir[MSM_PATH_LEN];	/* /etc/msmilter/audit */
	unsigned milter_audit_epoch;			/* 60 s per key epoch */
	int	milter_audit_sync;			/* epoch: fsync at each seal */
	unsigned milter_audit_rotate_size;		/* 64m; 0 = only on SIGHUP */

	/* Operations (privsep/metrics.c, control.c) */
	char	milter_metrics_file[MSM_PATH_LEN];	/* "" = off */
	unsigned milter_metrics_interval;		/* 15 s */
	char	milter_control_socket[MSM_PATH_LEN];	/* /run/msmilter/control */
	char	milter_syslog_socket[MSM_PATH_LEN];	/* /dev/log */
};

/*
 * Called once per problem found.  file and key may be NULL when they do not
 * apply; line is 0 then.  severity: 0 warning, 1 error.
 */
typedef void (*config_report_fn)(void *arg, int severity, const char *file,
    unsigned line, const char *key, const char *message);

/* Fill *s with MailScanner's defaults. */
void	config_defaults(struct msm_settings *s);

/*
 * Read path (and its includes) over the defaults.  Returns the number of
 * errors reported; *s is only meaningful when it returns 0.
 */
int	config_load(const char *path, struct msm_settings *s,
	    config_report_fn report, void *arg);

/* Cross-key checks and advice (e.g. MTA != msmail, inet listener). */
int	config_check(const struct msm_settings *s, config_report_fn report,
	    void *arg);

/* Print the effective milter settings, one "Key = value" a line. */
void	config_print(const struct msm_settings *s, FILE *out);

/*
 * Check that every string field of a settings struct received over IPC is
 * NUL-terminated and every enum in range.  0 when sane.
 */
int	config_validate(const struct msm_settings *s);

/* Where the relay moves unreadable milterout files. */
void	config_quarantine_dir(const struct msm_settings *s, char *out,
	    size_t len);

/* "Milter Ignore Loopback" -> "milterignoreloopback" (MailScanner's rule). */
void	config_normalise_key(const char *in, char *out, size_t outlen);

#endif
