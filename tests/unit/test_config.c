/*
 * Unit tests for common/config.c: MailScanner.conf reading, checks,
 * printing and validation.  Each test writes its files into its own
 * mkdtemp directory; run with cwd tests/unit for the data/config sample.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"

#define MAX_REPORTS	32
#define PBUF		512	/* paths under a /tmp directory */

struct report {
	int		 severity;
	char		 file[PBUF];
	unsigned	 line;
	int		 has_key;
	char		 key[256];
	char		 msg[1024];
};

struct fixture {
	char			 dir[64];
	struct msm_settings	 s;
	struct report		 r[MAX_REPORTS];
	int			 n;
	int			 errors, warnings;
};

static void
collect(void *arg, int severity, const char *file, unsigned line,
    const char *key, const char *message)
{
	struct fixture	*f = arg;
	struct report	*r;

	if (severity > 0)
		f->errors++;
	else
		f->warnings++;
	if (f->n >= MAX_REPORTS)
		return;
	r = &f->r[f->n++];
	r->severity = severity;
	snprintf(r->file, sizeof r->file, "%s", file ? file : "(null)");
	r->line = line;
	r->has_key = key != NULL;
	snprintf(r->key, sizeof r->key, "%s", key ? key : "");
	snprintf(r->msg, sizeof r->msg, "%s", message);
}

static int
setup(void **state)
{
	struct fixture	*f = calloc(1, sizeof *f);

	if (f == NULL)
		return -1;
	snprintf(f->dir, sizeof f->dir, "/tmp/test_config.XXXXXX");
	if (mkdtemp(f->dir) == NULL) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st; (void)flag; (void)ftw;
	return remove(path);
}

static int
teardown(void **state)
{
	struct fixture	*f = *state;
	int		 rc = nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);

	free(f);
	return rc;
}

/* Writes dir/name (name may contain one subdirectory); path out. */
static void
write_file(struct fixture *f, const char *name, const char *text,
    char *path, size_t len)
{
	char	 sub[PBUF], *slash;
	FILE	*fp;

	snprintf(path, len, "%s/%s", f->dir, name);
	snprintf(sub, sizeof sub, "%s", path);
	slash = strrchr(sub, '/');
	if (slash != NULL && slash > sub + strlen(f->dir)) {
		*slash = '\0';
		assert_true(mkdir(sub, 0700) == 0 || errno == EEXIST);
	}
	fp = fopen(path, "w");
	assert_non_null(fp);
	assert_int_equal(fputs(text, fp) >= 0, 1);
	assert_int_equal(fclose(fp), 0);
}

/* Write text as main.conf and load it; returns the error count. */
static int
load_text(struct fixture *f, const char *text, char *path, size_t len)
{
	char	 p[PBUF];

	if (path == NULL) {
		path = p;
		len = sizeof p;
	}
	write_file(f, "main.conf", text, path, len);
	return config_load(path, &f->s, collect, f);
}

static void
assert_report(const struct fixture *f, int i, int severity,
    const char *file, unsigned line, const char *key)
{
	assert_true(i < f->n);
	assert_int_equal(f->r[i].severity, severity);
	assert_string_equal(f->r[i].file, file);
	assert_int_equal(f->r[i].line, line);
	if (key == NULL)
		assert_false(f->r[i].has_key);
	else {
		assert_true(f->r[i].has_key);
		assert_string_equal(f->r[i].key, key);
	}
	assert_true(f->r[i].msg[0] != '\0');
}

/* ---- tests ---- */

static void
test_defaults(void **state)
{
	struct msm_settings	*s = &((struct fixture *)*state)->s;

	memset(s, 0xa5, sizeof *s);
	config_defaults(s);
	assert_string_equal(s->config_file, MSM_DEFAULT_CONFIG);
	assert_string_equal(s->incoming_queue_dir, "/var/spool/mqueue.in");
	assert_string_equal(s->outgoing_queue_dir, "/var/spool/mqueue");
	assert_string_equal(s->mta, "sendmail");
	assert_int_equal(s->queue_type, MSM_QUEUE_SHORT);
	assert_int_equal(s->milter_scanner, 1);
	assert_int_equal(s->milter_ignore_loopback, 1);
	assert_string_equal(s->milter_bind, "127.0.0.1");
	assert_int_equal(s->milter_port, 33333);
	assert_string_equal(s->milter_pid_file, "/var/run/MSMilter.pid");
	assert_int_equal(s->milter_max_children, 200);	/* sessions */
	assert_string_equal(s->run_as_user, "");
	assert_string_equal(s->run_as_group, "");
	assert_string_equal(s->incoming_work_group, "");
	assert_int_equal(s->delivery_method, MSM_DELIVER_SMTP);
	assert_string_equal(s->relay_address, "127.0.0.1");
	assert_int_equal(s->relay_port, 25);
	assert_int_equal(s->socket_type, MSM_SOCKET_INET);
	assert_string_equal(s->socket_dir, "/var/spool/postfix/public/qmqp");
	assert_int_equal(s->debug, 0);
	assert_int_equal(s->run_in_foreground, 0);
	assert_string_equal(s->syslog_facility, "mail");
	assert_string_equal(s->org_name, "");
	assert_string_equal(s->spam_whitelist, "no");
	assert_string_equal(s->spam_blacklist, "no");
	assert_int_equal(s->whitelist_max_recips, 20);
	assert_string_equal(s->milter_socket, "");
	assert_string_equal(s->milter_socket_owner, "");
	assert_string_equal(s->milter_socket_group, "");
	assert_int_equal(s->milter_socket_mode, 0660);
	assert_string_equal(s->milter_user, "msmilter");
	assert_string_equal(s->milter_chroot, "/var/lib/msmilter/empty");
	assert_int_equal(s->milter_commit_timeout, 60);
	assert_int_equal(s->milter_idle_timeout, 600);	/* > Postfix's 300 */
	assert_int_equal(s->milter_max_envelope, 1024 * 1024);
	assert_int_equal(s->milter_seccomp_debug, 0);	/* kill, never log */
	assert_int_equal(config_validate(s), 0);
}

static void
test_empty_file_gives_defaults(void **state)
{
	struct fixture		*f = *state;
	struct msm_settings	 d;
	char			 path[PBUF];

	assert_int_equal(load_text(f, "\n# nothing\n   \n\t# more\n", path,
	    sizeof path), 0);
	assert_int_equal(f->n, 0);
	config_defaults(&d);
	snprintf(d.config_file, sizeof d.config_file, "%s", path);
	assert_memory_equal(&d, &f->s, sizeof d);
}

static void
test_normalise_key(void **state)
{
	char	 out[64];

	(void)state;
	config_normalise_key("Milter Ignore Loopback", out, sizeof out);
	assert_string_equal(out, "milterignoreloopback");
	config_normalise_key("MILTER_IGNORE_LOOPBACK", out, sizeof out);
	assert_string_equal(out, "milterignoreloopback");
	config_normalise_key("  milter-ignore.loop back\t", out, sizeof out);
	assert_string_equal(out, "milterignoreloopback");
	config_normalise_key("%org-name%", out, sizeof out);
	assert_string_equal(out, "orgname");
	config_normalise_key("Local0 \xc3\xa9", out, sizeof out);
	assert_string_equal(out, "local0");
	config_normalise_key("", out, sizeof out);
	assert_string_equal(out, "");

	/* Truncated, always terminated, never written past outlen. */
	memset(out, 'X', sizeof out);
	config_normalise_key("Milter Port", out, 5);
	assert_string_equal(out, "milt");
	assert_int_equal(out[5], 'X');
	config_normalise_key("Milter Port", out, 1);
	assert_string_equal(out, "");
	out[0] = 'X';
	config_normalise_key("Milter Port", out, 0);
	assert_int_equal(out[0], 'X');
}

static void
test_key_spellings(void **state)
{
	struct fixture	*f = *state;

	assert_int_equal(load_text(f,
	    "milterignoreloopback = no\n"
	    "MILTER_PORT = 4000\n"
	    "  milter   bind\t=\t::1  \n"
	    "MSMail-Queue-Type = LONG\n"
	    "msmail delivery method = qmqp\n"
	    "MSMail Socket Type = UNIX\n"
	    "Syslog Facility = LOCAL3\n"
	    "Milter Scanner = No\n"
	    "debug=YES\n"
	    "milter-seccomp-debug = Yes\n"
	    "Run In Foreground = 1\n", NULL, 0), 0);
	assert_int_equal(f->s.milter_seccomp_debug, 1);
	assert_int_equal(f->s.milter_ignore_loopback, 0);
	assert_int_equal(f->s.milter_port, 4000);
	assert_string_equal(f->s.milter_bind, "::1");
	assert_int_equal(f->s.queue_type, MSM_QUEUE_LONG);
	assert_int_equal(f->s.delivery_method, MSM_DELIVER_QMQP);
	assert_int_equal(f->s.socket_type, MSM_SOCKET_UNIX);
	assert_string_equal(f->s.syslog_facility, "local3");
	assert_int_equal(f->s.milter_scanner, 0);
	assert_int_equal(f->s.debug, 1);
	assert_int_equal(f->s.run_in_foreground, 1);
}

static void
test_last_value_wins(void **state)
{
	struct fixture	*f = *state;

	assert_int_equal(load_text(f,
	    "Milter Port = 1000\n"
	    "MTA = sendmail\n"
	    "milter port = 2000\n"
	    "MTA = msmail\n"
	    "Milter Port = 3000\n", NULL, 0), 0);
	assert_int_equal(f->s.milter_port, 3000);
	assert_string_equal(f->s.mta, "msmail");
}

static void
test_percent_vars(void **state)
{
	struct fixture	*f = *state;

	assert_int_equal(load_text(f,
	    "%spool% = /var/spool/MailScanner\n"
	    "%Org-Name% = Example-Ltd\n"
	    "%in% = %SPOOL%/milterin\n"
	    "Incoming Queue Dir = %in%\n"
	    "Outgoing Queue Dir = %spool%/milterout\n"
	    "Is Definitely Spam = %rules%/spam.blacklist.rules\n"
	    "Is Definitely Not Spam = 50%off% 100% %%\n"
	    "%spool% = /elsewhere\n"
	    "MSMail Socket Dir = %spool%/qmqp\n", NULL, 0), 0);
	assert_string_equal(f->s.incoming_queue_dir,
	    "/var/spool/MailScanner/milterin");
	assert_string_equal(f->s.outgoing_queue_dir,
	    "/var/spool/MailScanner/milterout");
	assert_string_equal(f->s.org_name, "Example-Ltd");
	/* Unknown variables are left as they are. */
	assert_string_equal(f->s.spam_blacklist,
	    "%rules%/spam.blacklist.rules");
	assert_string_equal(f->s.spam_whitelist, "50%off% 100% %%");
	/* A redefinition applies to later lines only. */
	assert_string_equal(f->s.socket_dir, "/elsewhere/qmqp");
}

static void
test_percent_var_too_long(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];
	char		 text[4096];
	size_t		 n = 0;
	int		 i;

	/* Each line doubles the value: 2^20 bytes would be far too long. */
	n += (size_t)snprintf(text + n, sizeof text - n, "%%v0%% = xx\n");
	for (i = 1; i <= 20; i++)
		n += (size_t)snprintf(text + n, sizeof text - n,
		    "%%v%d%% = %%v%d%%%%v%d%%\n", i, i - 1, i - 1);
	assert_true(n < sizeof text);
	assert_true(load_text(f, text, path, sizeof path) > 0);
	/* 2 * 2^15 = 65536 bytes: first line over the limit is v15's. */
	assert_report(f, 0, 1, path, 16, "%v15%");
}

static void
test_org_name_too_long(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];
	char		 text[MSM_NAME_LEN + 64];

	snprintf(text, sizeof text, "%%org-name%% = %0*d\n", MSM_NAME_LEN, 0);
	assert_int_equal(load_text(f, text, path, sizeof path), 1);
	assert_report(f, 0, 1, path, 1, "%org-name%");
}

static void
test_org_name_header_safe(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	assert_int_equal(load_text(f,
	    "%org-name% = Example-Ltd\n"
	    "%org-name% = Example Ltd\n"
	    "%ORG-NAME% = Evil:\n"
	    "%org-name% = caf\xc3\xa9\n", path, sizeof path), 3);
	assert_report(f, 0, 1, path, 2, "%org-name%");
	assert_report(f, 1, 1, path, 3, "%ORG-NAME%");
	assert_report(f, 2, 1, path, 4, "%org-name%");
	assert_string_equal(f->s.org_name, "Example-Ltd");
}

static void
test_include_glob(void **state)
{
	struct fixture	*f = *state;
	char		 main[PBUF], a[PBUF], b[PBUF], text[1024];

	write_file(f, "conf.d/20-b.conf",
	    "Milter Port = 2222\nMTA = msmail\nMilter Debug Thing = 7\n",
	    b, sizeof b);
	write_file(f, "conf.d/10-a.conf",
	    "Milter Port = 1111\nMilter Max Children = 3\n"
	    "Run As User = %user%\n", a, sizeof a);
	write_file(f, "conf.d/notes.txt", "this has no equals sign\n",
	    text, sizeof text);
	/* A directory matched by the glob is skipped; so is an empty glob. */
	snprintf(text, sizeof text, "%s/conf.d/sub.conf", f->dir);
	assert_int_equal(mkdir(text, 0700), 0);
	snprintf(text, sizeof text, "%s/empty.d", f->dir);
	assert_int_equal(mkdir(text, 0700), 0);
	snprintf(text, sizeof text,
	    "%%user%% = mail\n"
	    "%%confdir%% = %s/conf.d\n"
	    "Milter Port = 1\n"
	    "INCLUDE %%confdir%%/*.conf\n"
	    "include %s/empty.d/*\n"
	    "Milter Max Children = 4\n", f->dir, f->dir);
	assert_int_equal(load_text(f, text, main, sizeof main), 0);
	assert_int_equal(f->n, 0);
	/* Sorted: 10-a then 20-b, so b's port wins; later main line wins. */
	assert_int_equal(f->s.milter_port, 2222);
	assert_string_equal(f->s.mta, "msmail");
	assert_int_equal(f->s.milter_max_children, 4);
	assert_string_equal(f->s.run_as_user, "mail");
	assert_string_equal(f->s.config_file, main);
}

static void
test_include_errors_name_included_file(void **state)
{
	struct fixture	*f = *state;
	char		 main[PBUF], inc[PBUF], text[1024];

	write_file(f, "inc.conf", "\n\nMilter Port = 99999\n", inc,
	    sizeof inc);
	snprintf(text, sizeof text, "include %s\nMilter Port = 7\n", inc);
	assert_int_equal(load_text(f, text, main, sizeof main), 1);
	assert_int_equal(f->n, 1);
	assert_report(f, 0, 1, inc, 3, "Milter Port");
	assert_int_equal(f->s.milter_port, 7);
}

static void
test_include_missing_file_warns(void **state)
{
	struct fixture	*f = *state;
	char		 main[PBUF], text[1024];

	snprintf(text, sizeof text, "\ninclude %s/nonexistent.conf\n", f->dir);
	assert_int_equal(load_text(f, text, main, sizeof main), 0);
	assert_int_equal(f->n, 1);
	assert_report(f, 0, 0, main, 2, NULL);
}

static void
test_include_loop(void **state)
{
	struct fixture	*f = *state;
	char		 a[PBUF], b[PBUF], text[1024];

	snprintf(text, sizeof text, "# b\nMilter Port = 2\ninclude %s/a.conf\n",
	    f->dir);
	write_file(f, "b.conf", text, b, sizeof b);
	snprintf(text, sizeof text, "include %s/b.conf\nMTA = msmail\n",
	    f->dir);
	write_file(f, "a.conf", text, a, sizeof a);
	assert_int_equal(config_load(a, &f->s, collect, f), 1);
	assert_int_equal(f->n, 1);
	assert_report(f, 0, 1, b, 3, NULL);
	assert_non_null(strstr(f->r[0].msg, "loop"));
	/* Reading went on around the loop. */
	assert_int_equal(f->s.milter_port, 2);
	assert_string_equal(f->s.mta, "msmail");
}

static void
test_include_self(void **state)
{
	struct fixture	*f = *state;
	char		 main[PBUF], text[1024];

	snprintf(text, sizeof text, "include %s/*.conf\n", f->dir);
	assert_int_equal(load_text(f, text, main, sizeof main), 1);
	assert_report(f, 0, 1, main, 1, NULL);
}

static void
test_include_too_deep(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF], text[1024], name[32];
	int		 i;

	/* f0 includes f1 ... f9 includes f10: nine levels below f0. */
	for (i = 0; i <= 10; i++) {
		snprintf(name, sizeof name, "f%d.conf", i);
		snprintf(text, sizeof text, "include %s/f%d.conf\n", f->dir,
		    i + 1);
		write_file(f, name, i < 10 ? text : "Milter Port = 10\n",
		    path, sizeof path);
	}
	snprintf(path, sizeof path, "%s/f0.conf", f->dir);
	assert_int_equal(config_load(path, &f->s, collect, f), 1);
	snprintf(path, sizeof path, "%s/f8.conf", f->dir);
	assert_report(f, 0, 1, path, 1, NULL);
	assert_int_equal(f->s.milter_port, 33333);
}

static void
test_bad_boolean(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	assert_int_equal(load_text(f, "# x\n\n  Milter Ignore Loopback = "
	    "maybe  \n", path, sizeof path), 1);
	assert_int_equal(f->n, 1);
	assert_report(f, 0, 1, path, 3, "Milter Ignore Loopback");
	assert_non_null(strstr(f->r[0].msg, "maybe"));
	assert_non_null(strstr(f->r[0].msg, "yes"));
}

static void
test_bad_port(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	assert_int_equal(load_text(f,
	    "milter_port = 0\n"
	    "Milter Port = 65536\n"
	    "Milter Port = 25x\n"
	    "Milter Port = -1\n"
	    "Milter Port =\n"	/* MailScanner's rule: the default */
	    "MSMail Relay Port = 99999999999999999999999999\n"
	    "Milter Port = 65535\n", path, sizeof path), 5);
	assert_int_equal(f->n, 5);
	assert_report(f, 0, 1, path, 1, "milter_port");
	assert_report(f, 1, 1, path, 2, "Milter Port");
	assert_report(f, 2, 1, path, 3, "Milter Port");
	assert_report(f, 3, 1, path, 4, "Milter Port");
	assert_report(f, 4, 1, path, 6, "MSMail Relay Port");
	assert_non_null(strstr(f->r[1].msg, "1 to 65535"));
	assert_int_equal(f->s.milter_port, 65535);
}

static void
test_bad_queue_type(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	assert_int_equal(load_text(f, "MSMail Queue Type = medium\n", path,
	    sizeof path), 1);
	assert_report(f, 0, 1, path, 1, "MSMail Queue Type");
	assert_non_null(strstr(f->r[0].msg, "short"));
	assert_non_null(strstr(f->r[0].msg, "long"));
}

static void
test_line_without_equals(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	assert_int_equal(load_text(f,
	    "Milter Port = 4000\n"
	    "Milter Port 5000\n"
	    "include\n"
	    "   = value\n"
	    "includefoo\n", path, sizeof path), 4);
	assert_int_equal(f->n, 4);
	assert_report(f, 0, 1, path, 2, NULL);
	assert_report(f, 1, 1, path, 3, NULL);
	assert_report(f, 2, 1, path, 4, NULL);
	assert_report(f, 3, 1, path, 5, NULL);
	assert_non_null(strstr(f->r[0].msg, "'='"));
	assert_int_equal(f->s.milter_port, 4000);
}

static void
test_bad_values(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	assert_int_equal(load_text(f,
	    "Milter Bind = localhost\n"			/* 1 */
	    "Milter Bind = 127.0.0.1:25\n"		/* 2 */
	    "Incoming Queue Dir = var/spool/in\n"	/* 3 */
	    "Outgoing Queue Dir =\n"			/* 4: default */
	    "Milter Socket = run/milter.sock\n"		/* 5 */
	    "Milter Socket Mode = 0999\n"		/* 6 */
	    "Milter Socket Mode = 01000\n"		/* 7 */
	    "Milter Socket Mode = 0x1ff\n"		/* 8 */
	    "Syslog Facility = local8\n"		/* 9 */
	    "MSMail Delivery Method = LMTP\n"		/* 10 */
	    "MSMail Socket Type = tcp\n"		/* 11 */
	    "Milter Commit Timeout = 0\n"		/* 12 */
	    "Milter Commit Timeout = 3601\n"		/* 13 */
	    "Milter User =\n"				/* 14: default */
	    "Milter Chroot = empty\n"			/* 15 */
	    "MTA = ms\x01mail\n"			/* 16 */
	    "Milter Socket = /run/msmilter/"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n" /* 17 */
	    "Milter Idle Timeout = 0\n"		/* 18 */
	    "Milter Idle Timeout = 7211\n"		/* 19 */
	    "Milter Max Envelope Size = 4095\n"		/* 20 */
	    "Milter Max Envelope Size = 257m\n"	/* 21 */
	    "Milter Max Children = 0\n"		/* 22 */
	    "Milter Max Envelope Size = 2m\n"		/* ok */
	    "Milter Idle Timeout = 30\n"		/* ok */
	    "Milter Socket Mode = 640\n"		/* ok */
	    "Milter Bind = 0.0.0.0\n", path, sizeof path), 20);
	assert_int_equal(f->n, 20);
	assert_report(f, 0, 1, path, 1, "Milter Bind");
	assert_report(f, 1, 1, path, 2, "Milter Bind");
	assert_report(f, 2, 1, path, 3, "Incoming Queue Dir");
	assert_report(f, 3, 1, path, 5, "Milter Socket");
	assert_report(f, 4, 1, path, 6, "Milter Socket Mode");
	assert_report(f, 5, 1, path, 7, "Milter Socket Mode");
	assert_report(f, 6, 1, path, 8, "Milter Socket Mode");
	assert_report(f, 7, 1, path, 9, "Syslog Facility");
	assert_report(f, 8, 1, path, 10, "MSMail Delivery Method");
	assert_report(f, 9, 1, path, 11, "MSMail Socket Type");
	assert_report(f, 10, 1, path, 12, "Milter Commit Timeout");
	assert_report(f, 11, 1, path, 13, "Milter Commit Timeout");
	assert_report(f, 12, 1, path, 15, "Milter Chroot");
	assert_report(f, 13, 1, path, 16, "MTA");
	assert_report(f, 14, 1, path, 17, "Milter Socket");
	assert_report(f, 15, 1, path, 18, "Milter Idle Timeout");
	assert_report(f, 16, 1, path, 19, "Milter Idle Timeout");
	assert_report(f, 17, 1, path, 20, "Milter Max Envelope Size");
	assert_report(f, 18, 1, path, 21, "Milter Max Envelope Size");
	assert_report(f, 19, 1, path, 22, "Milter Max Children");
	/* Set to nothing: MailScanner's (and our) defaults, not errors. */
	assert_string_equal(f->s.outgoing_queue_dir, "/var/spool/mqueue");
	assert_string_equal(f->s.milter_user, "msmilter");
	assert_int_equal(f->s.milter_max_envelope, 2u << 20);
	assert_int_equal(f->s.milter_idle_timeout, 30);
	assert_int_equal(f->s.milter_socket_mode, 0640);
	assert_string_equal(f->s.milter_bind, "0.0.0.0");
	assert_string_equal(f->s.milter_socket, "");
}

static void
test_number_suffixes(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	assert_int_equal(load_text(f,
	    "Milter Max Children = 2k\n"
	    "Ignore Spam Whitelist If Recipients Exceed = 3M\n"
	    "Milter Port = 63K\n"
	    "Milter Commit Timeout = 0003\n"
	    "MSMail Relay Port = 64k\n"
	    "Milter Max Children = 1g\n"
	    "Milter Port = 1kb\n", path, sizeof path), 3);
	assert_int_equal(f->s.milter_max_children, 2048);
	assert_int_equal(f->s.whitelist_max_recips, 3u << 20);
	assert_int_equal(f->s.milter_port, 63 * 1024);
	assert_int_equal(f->s.milter_commit_timeout, 3);
	assert_report(f, 0, 1, path, 5, "MSMail Relay Port");
	assert_report(f, 1, 1, path, 6, "Milter Max Children");
	assert_report(f, 2, 1, path, 7, "Milter Port");

	f->n = 0;
	assert_int_equal(load_text(f,
	    "Ignore Spam Whitelist If Recipients Exceed = 1g\n", path,
	    sizeof path), 0);
	assert_int_equal(f->s.whitelist_max_recips, 1u << 30);
}

static void
test_unknown_keys_ignored(void **state)
{
	struct fixture	*f = *state;

	assert_int_equal(load_text(f,
	    "Max Children = banana\n"
	    "Virus Scanners = clamd\n"
	    "Milter Portx = 1\n"
	    "Spam Actions = deliver header \"X-Spam-Status: Yes\"\n"
	    "include = not an include\n"
	    "%malformed = x\n"
	    "Milter Port = 2525\n", NULL, 0), 0);
	assert_int_equal(f->n, 0);
	assert_int_equal(f->s.milter_port, 2525);
}

static void
test_comments(void **state)
{
	struct fixture	*f = *state;

	assert_int_equal(load_text(f,
	    "# Milter Port = 1\n"
	    "   # MTA = indented comment\n"
	    "Milter Port = 2 # trailing comment\n"
	    "Incoming Work Group = grp#1\n"
	    "Run As User = a #b #c\n"
	    "Run As Group = x\t# tab comment\n"
	    "Is Definitely Spam = #nothing\n"		/* the default, no */
	    "Milter Chroot = /var/empty\r\n", NULL, 0), 0);
	assert_int_equal(f->s.milter_port, 2);
	assert_string_equal(f->s.mta, "sendmail");
	assert_string_equal(f->s.incoming_work_group, "grp#1");
	assert_string_equal(f->s.run_as_user, "a");
	assert_string_equal(f->s.run_as_group, "x");
	assert_string_equal(f->s.spam_blacklist, "no");
	assert_string_equal(f->s.milter_chroot, "/var/empty");
}

static void
test_value_too_long(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];
	size_t		 len = 200000, n;
	char		*text = malloc(len), *p;

	assert_non_null(text);
	/* A huge unknown line is fine; a value one byte too long is not. */
	p = text;
	p += sprintf(p, "Unknown Key = ");
	memset(p, 'x', 150000);
	p += 150000;
	p += sprintf(p, "\nMTA = ");
	memset(p, 'm', MSM_NAME_LEN - 1);
	p += MSM_NAME_LEN - 1;
	p += sprintf(p, "\nRun As User = ");
	memset(p, 'u', MSM_NAME_LEN);
	p += MSM_NAME_LEN;
	p += sprintf(p, "\nMilter PID File = /");
	memset(p, 'p', MSM_PATH_LEN);
	p += MSM_PATH_LEN;
	sprintf(p, "\n");
	assert_int_equal(load_text(f, text, path, sizeof path), 2);
	assert_report(f, 0, 1, path, 3, "Run As User");
	assert_report(f, 1, 1, path, 4, "Milter PID File");
	n = strlen(f->s.mta);
	assert_int_equal(n, MSM_NAME_LEN - 1);
	assert_string_equal(f->s.run_as_user, "");
	assert_string_equal(f->s.milter_pid_file, "/var/run/MSMilter.pid");
	free(text);
}

static void
test_nul_byte(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];
	FILE		*fp;

	snprintf(path, sizeof path, "%s/nul.conf", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fwrite("MTA = msmail\nMTA = ms\0x\nMilter Port = 9\n", 1, 40, fp);
	assert_int_equal(fclose(fp), 0);
	assert_int_equal(config_load(path, &f->s, collect, f), 1);
	assert_report(f, 0, 1, path, 2, NULL);
	assert_string_equal(f->s.mta, "msmail");
	assert_int_equal(f->s.milter_port, 9);
}

static void
test_open_failure(void **state)
{
	struct fixture	*f = *state;
	char		 path[PBUF];

	snprintf(path, sizeof path, "%s/missing.conf", f->dir);
	assert_int_equal(config_load(path, &f->s, collect, f), 1);
	assert_int_equal(f->n, 1);
	assert_report(f, 0, 1, path, 0, NULL);
	assert_string_equal(f->r[0].msg, strerror(ENOENT));

	/* A directory is not a configuration file. */
	f->n = 0;
	assert_int_equal(config_load(f->dir, &f->s, collect, f), 1);
	assert_report(f, 0, 1, f->dir, 0, NULL);

	/* A NULL report function only counts. */
	assert_int_equal(config_load(path, &f->s, NULL, NULL), 1);
}

static void
test_validate(void **state)
{
	struct msm_settings	*s = &((struct fixture *)*state)->s;

	config_defaults(s);
	assert_int_equal(config_validate(s), 0);

	memset(s->milter_bind, 'A', sizeof s->milter_bind);
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	memset(s->milter_chroot, 'A', sizeof s->milter_chroot);
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	memset(s->config_file, 'A', sizeof s->config_file);
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	memset(s->org_name, 'A', sizeof s->org_name);
	assert_int_equal(config_validate(s), -1);
	/* Terminated at the very last byte is fine. */
	s->org_name[sizeof s->org_name - 1] = '\0';
	assert_int_equal(config_validate(s), 0);

	config_defaults(s);
	s->queue_type = 2;
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	s->delivery_method = -1;
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	s->socket_type = 7;
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	s->milter_scanner = 2;
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	s->debug = -1;
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	s->milter_port = 0;
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	s->relay_port = 65536;
	assert_int_equal(config_validate(s), -1);
	config_defaults(s);
	s->milter_socket_mode = 01000;
	assert_int_equal(config_validate(s), -1);
}

static char *
print_to_string(const struct msm_settings *s)
{
	char	*buf = NULL;
	size_t	 len = 0;
	FILE	*fp = open_memstream(&buf, &len);

	assert_non_null(fp);
	config_print(s, fp);
	assert_int_equal(fclose(fp), 0);
	return buf;
}

static void
test_print(void **state)
{
	struct msm_settings	*s = &((struct fixture *)*state)->s;
	char			*out;

	config_defaults(s);
	out = print_to_string(s);
	assert_non_null(strstr(out, "\nMilter Port = 33333\n"));
	assert_non_null(strstr(out, "\nMSMail Queue Type = short\n"));
	assert_non_null(strstr(out, "\nMSMail Delivery Method = SMTP\n"));
	assert_non_null(strstr(out, "\nMSMail Socket Type = inet\n"));
	assert_non_null(strstr(out, "\nMilter Scanner = yes\n"));
	assert_non_null(strstr(out, "\nDebug = no\n"));
	assert_non_null(strstr(out, "\nMilter Socket Mode = 0660\n"));
	assert_non_null(strstr(out, "\nIncoming Queue Dir = "
	    "/var/spool/mqueue.in\n"));
	assert_non_null(strstr(out, "\nMilter PID File = "
	    "/var/run/MSMilter.pid\n"));
	assert_non_null(strstr(out, "\nIgnore Spam Whitelist If Recipients "
	    "Exceed = 20\n"));
	assert_non_null(strstr(out, "\nRun As User = \n"));
	assert_non_null(strstr(out, "\n# Milter Max Children: concurrent "
	    "milter sessions (not processes); more get 451 4.3.2 at connect\n"
	    "Milter Max Children = 200\n"));
	assert_non_null(strstr(out, "\nMilter Idle Timeout = 600\n"));
	assert_non_null(strstr(out, "\nMilter Max Envelope Size = 1048576\n"));
	free(out);

	s->queue_type = MSM_QUEUE_LONG;
	s->delivery_method = MSM_DELIVER_QMQP;
	s->socket_type = MSM_SOCKET_UNIX;
	s->milter_socket_mode = 0600;
	s->milter_ignore_loopback = 0;
	out = print_to_string(s);
	assert_non_null(strstr(out, "\nMSMail Queue Type = long\n"));
	assert_non_null(strstr(out, "\nMSMail Delivery Method = QMQP\n"));
	assert_non_null(strstr(out, "\nMSMail Socket Type = unix\n"));
	assert_non_null(strstr(out, "\nMilter Socket Mode = 0600\n"));
	assert_non_null(strstr(out, "\nMilter Ignore Loopback = no\n"));
	free(out);
}

/* Line by line, s prints differently from the defaults (bar the header). */
static void
assert_all_lines_differ(const struct msm_settings *s)
{
	struct msm_settings	 d;
	char			*a, *b, *la, *lb, *sa, *sb;
	int			 lines = 0;

	config_defaults(&d);
	a = print_to_string(&d);
	b = print_to_string(s);
	la = strtok_r(a, "\n", &sa);
	lb = strtok_r(b, "\n", &sb);
	while ((la = strtok_r(NULL, "\n", &sa)) != NULL) {
		lb = strtok_r(NULL, "\n", &sb);
		assert_non_null(lb);
		if (la[0] == '#' && strcmp(la, lb) == 0)
			continue;	/* a key's comment line */
		if (strcmp(la, lb) == 0)
			fail_msg("same as the default: %s", la);
		lines++;
	}
	assert_int_equal(lines, 55);	/* %org-name% and 54 keys */
	free(a);
	free(b);
}

/*
 * MailScanner takes a key set to nothing as its default (its stock
 * MailScanner.conf says "Lock Type =", which -t refused): every key we
 * read, written empty, leaves the defaults exactly as they are.
 */
static void
test_empty_values_take_defaults(void **state)
{
	struct fixture		*f = *state;
	struct msm_settings	 want;
	char			 path[PBUF], *printed, *text, *line, *save;
	size_t			 n = 0;
	int			 keys = 0;

	config_defaults(&want);
	printed = print_to_string(&want);
	text = calloc(1, strlen(printed) + 1);
	assert_non_null(text);
	/* "Key = value" lines of the print, as "Key =". */
	for (line = strtok_r(printed, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char *eq = strstr(line, " = ");

		if (line[0] == '#' || line[0] == '%' || eq == NULL)
			continue;
		n += (size_t)sprintf(text + n, "%.*s =\n", (int)(eq - line),
		    line);
		keys++;
	}
	assert_true(keys > 40);
	assert_int_equal(load_text(f, text, path, sizeof path), 0);
	assert_int_equal(f->n, 0);
	snprintf(want.config_file, MSM_PATH_LEN, "%s", path);
	/* Where nothing is itself a setting, it stays nothing: no audit log. */
	want.milter_audit_log[0] = '\0';
	want.milter_control_socket[0] = '\0';
	assert_memory_equal(&want, &f->s, sizeof want);
	/* Over a value set before, too: the last (empty) one wins. */
	assert_int_equal(load_text(f, "Lock Type = posix\nLock Type =\n"
	    "Milter Port = 25\nMilter Port =   \n", NULL, 0), 0);
	assert_int_equal(f->s.lock_type, MSM_LOCK_FLOCK);
	assert_int_equal(f->s.milter_port, 33333);
	free(printed);
	free(text);
}

/* Delivery Method as MailScanner documents it: a ruleset. */
static void
test_delivery_method_ruleset(void **state)
{
	struct fixture	*f = *state;
	char		 rules[PBUF], conf[PBUF], text[PBUF * 2];

	write_file(f, "delivery.rules", "# every message by queue\n"
	    "From:\t*@example.com\tqueue\n"
	    "To: /^x/ and From: 192.0.2. queue\n"
	    "FromOrTo: default queue\n", rules, sizeof rules);
	snprintf(text, sizeof text, "Delivery Method = %s\n", rules);
	assert_int_equal(load_text(f, text, conf, sizeof conf), 0);
	assert_int_equal(f->n, 0);
	assert_int_equal(f->s.ms_delivery_method, MSM_MS_QUEUE);

	/* One rule says batch: refused at its file:line. */
	f->n = 0;
	write_file(f, "delivery.rules", "From: *@example.com queue\n"
	    "\n"
	    "To: *@example.net batch\n"
	    "FromOrTo: default queue\n", rules, sizeof rules);
	assert_int_equal(load_text(f, text, conf, sizeof conf), 1);
	assert_report(f, 0, 1, rules, 3, "Delivery Method");
	assert_non_null(strstr(f->r[0].msg, "batch"));

	/* No default rule: what matches nothing gets batch. */
	f->n = 0;
	write_file(f, "delivery.rules", "From: *@example.com queue\n", rules,
	    sizeof rules);
	assert_int_equal(load_text(f, text, conf, sizeof conf), 1);
	assert_report(f, 0, 1, rules, 0, "Delivery Method");
	assert_non_null(strstr(f->r[0].msg, "default"));

	/* A value that is neither word, and a missing file. */
	f->n = 0;
	write_file(f, "delivery.rules", "From: *@example.com deliver\n"
	    "FromOrTo: default queue\n", rules, sizeof rules);
	assert_int_equal(load_text(f, text, conf, sizeof conf), 1);
	assert_report(f, 0, 1, rules, 1, "Delivery Method");
	f->n = 0;
	snprintf(text, sizeof text, "Delivery Method = %s/none.rules\n",
	    f->dir);
	assert_int_equal(load_text(f, text, conf, sizeof conf), 1);
	assert_int_equal(f->r[0].severity, 1);
	assert_string_equal(f->r[0].key, "Delivery Method");

	/* Plain words as before, in either case. */
	f->n = 0;
	assert_int_equal(load_text(f, "Delivery Method = Queue\n", NULL, 0),
	    0);
	assert_int_equal(f->s.ms_delivery_method, MSM_MS_QUEUE);
	assert_int_equal(load_text(f, "Delivery Method = batch\n", NULL, 0),
	    0);
	assert_int_equal(f->s.ms_delivery_method, MSM_MS_BATCH);
}

/*
 * MailScanner's shipped Deliver Cleaned Messages = yes sends the cleaned
 * copy of a relay-rejected message back to milterout: -t says what the
 * relay does then.  A ruleset counts as yes when any of it says yes.
 */
static void
test_deliver_cleaned_messages(void **state)
{
	struct fixture	*f = *state;
	char		 rules[PBUF], text[PBUF * 2];
	int		 found = 0;

	assert_int_equal(load_text(f, "Delivery Method = queue\n"
	    "MTA = msmail\nRun As User = postfix\n"
	    "Milter Socket = /run/m.sock\n", NULL, 0), 0);
	assert_int_equal(f->s.deliver_cleaned, 1);	/* MailScanner's */
	assert_int_equal(config_check(&f->s, collect, f), 0);
	for (int i = 0; i < f->n; i++)
		if (strcmp(f->r[i].key, "Deliver Cleaned Messages") == 0) {
			assert_int_equal(f->r[i].severity, 0);
			assert_non_null(strstr(f->r[i].msg, "once"));
			assert_non_null(strstr(f->r[i].msg, "quarantine"));
			found++;
		}
	assert_int_equal(found, 1);

	f->n = 0;
	assert_int_equal(load_text(f, "Deliver Cleaned Messages = no\n",
	    NULL, 0), 0);
	assert_int_equal(f->s.deliver_cleaned, 0);
	write_file(f, "clean.rules", "To: *@example.com yes\n"
	    "FromOrTo: default no\n", rules, sizeof rules);
	snprintf(text, sizeof text, "Deliver Cleaned Messages = %s\n", rules);
	assert_int_equal(load_text(f, text, NULL, 0), 0);
	assert_int_equal(f->s.deliver_cleaned, 1);
}

/* What config_print writes, config_load reads back to the same settings. */
static void
test_print_round_trip(void **state)
{
	struct fixture		*f = *state;
	struct msm_settings	 want;
	char			 path[PBUF];
	char			*out;

	config_defaults(&want);
	snprintf(want.incoming_queue_dir, MSM_PATH_LEN, "/q/in");
	snprintf(want.outgoing_queue_dir, MSM_PATH_LEN, "/q/out");
	snprintf(want.mta, MSM_NAME_LEN, "msmail");
	snprintf(want.milter_bind, MSM_NAME_LEN, "::1");
	snprintf(want.org_name, MSM_NAME_LEN, "Example-Org");
	snprintf(want.run_as_user, MSM_NAME_LEN, "postfix");
	snprintf(want.milter_socket, MSM_PATH_LEN, "/run/m.sock");
	snprintf(want.syslog_facility, MSM_NAME_LEN, "local7");
	snprintf(want.spam_whitelist, MSM_PATH_LEN, "/etc/wl.rules");
	want.queue_type = MSM_QUEUE_LONG;
	want.delivery_method = MSM_DELIVER_QMQP;
	want.socket_type = MSM_SOCKET_UNIX;
	want.milter_scanner = 0;
	want.debug = 1;
	want.milter_port = 1234;
	want.relay_port = 10025;
	want.milter_max_children = 77;
	want.whitelist_max_recips = 0;
	want.milter_socket_mode = 0640;
	want.milter_commit_timeout = 250;
	want.milter_idle_timeout = 7210;
	want.milter_max_envelope = 4096;
	/* Every field differs from its default, so every key is exercised. */
	want.milter_ignore_loopback = 0;
	want.run_in_foreground = 1;
	snprintf(want.milter_pid_file, MSM_PATH_LEN, "/run/ms.pid");
	snprintf(want.run_as_group, MSM_NAME_LEN, "mtagroup");
	snprintf(want.incoming_work_group, MSM_NAME_LEN, "work");
	snprintf(want.relay_address, MSM_NAME_LEN, "192.0.2.80");
	snprintf(want.socket_dir, MSM_PATH_LEN, "/run/qmqp");
	snprintf(want.spam_blacklist, MSM_PATH_LEN, "&Custom");
	snprintf(want.milter_socket_owner, MSM_NAME_LEN, "postfix");
	snprintf(want.milter_socket_group, MSM_NAME_LEN, "postdrop");
	snprintf(want.milter_user, MSM_NAME_LEN, "capture");
	snprintf(want.milter_chroot, MSM_PATH_LEN, "/var/empty");
	want.ms_delivery_method = MSM_MS_QUEUE;
	want.lock_type = MSM_LOCK_POSIX;
	want.deliver_cleaned = 0;
	want.relay_min_retry = 2;
	want.relay_max_retry = 99;
	want.relay_timeout = 17;
	want.relay_scan_interval = 3;
	want.relay_connections = 2;
	snprintf(want.relay_quarantine_dir, MSM_PATH_LEN, "/q/bad");
	snprintf(want.milter_reject_text, MSM_NAME_LEN, "Go away");
	want.milter_seccomp_debug = 1;
	want.milter_landlock = 0;
	snprintf(want.milter_audit_log, MSM_PATH_LEN, "/var/log/a.log");
	snprintf(want.milter_audit_key_dir, MSM_PATH_LEN, "/etc/a-keys");
	want.milter_audit_epoch = 3600;
	want.milter_audit_sync = MSM_AUDIT_SYNC_EVERY;
	want.milter_audit_rotate_size = 0;
	snprintf(want.milter_metrics_file, MSM_PATH_LEN, "/m/ms.prom");
	want.milter_metrics_interval = 60;
	snprintf(want.milter_control_socket, MSM_PATH_LEN, "/run/c");
	snprintf(want.milter_syslog_socket, MSM_PATH_LEN, "/run/log");
	assert_all_lines_differ(&want);
	out = print_to_string(&want);
	assert_int_equal(load_text(f, out, path, sizeof path), 0);
	free(out);
	snprintf(want.config_file, MSM_PATH_LEN, "%s", path);
	assert_memory_equal(&want, &f->s, sizeof want);
}

static void
test_check(void **state)
{
	struct fixture	*f = *state;

	/*
	 * Defaults: warnings for MTA and the inet listener (a loopback bind
	 * is not warned), and an error: MailScanner's Delivery Method = batch
	 * would deliver milterout a second time.
	 */
	config_defaults(&f->s);
	f->s.deliver_cleaned = 0;	/* test_deliver_cleaned_messages */
	assert_int_equal(config_check(&f->s, collect, f), 2);
	assert_int_equal(f->n, 4);
	assert_int_equal(f->warnings, 2);
	assert_int_equal(f->r[0].severity, 0);
	assert_string_equal(f->r[0].key, "MTA");
	assert_non_null(strstr(f->r[0].msg, "msmail"));
	assert_string_equal(f->r[1].key, "Milter Socket");
	assert_non_null(strstr(f->r[1].msg, "peer authentication"));
	/* MailScanner's default Run As User (empty: root) is refused. */
	assert_int_equal(f->r[2].severity, 1);
	assert_string_equal(f->r[2].key, "Run As User");
	assert_non_null(strstr(f->r[2].msg, "root"));

	/* root by name, and group root, are refused as well. */
	f->n = f->warnings = 0;
	snprintf(f->s.run_as_user, MSM_NAME_LEN, "root");
	assert_int_equal(config_check(&f->s, collect, f), 2);
	assert_string_equal(f->r[2].key, "Run As User");
	f->n = f->warnings = 0;
	snprintf(f->s.run_as_user, MSM_NAME_LEN, "postfix");
	snprintf(f->s.run_as_group, MSM_NAME_LEN, "root");
	assert_int_equal(config_check(&f->s, collect, f), 2);
	assert_string_equal(f->r[2].key, "Run As Group");
	f->s.run_as_group[0] = '\0';

	/* Non-loopback bind and the same queue twice. */
	f->n = f->warnings = 0;
	f->s.ms_delivery_method = MSM_MS_QUEUE;
	snprintf(f->s.milter_bind, MSM_NAME_LEN, "192.0.2.1");
	snprintf(f->s.mta, MSM_NAME_LEN, "MSMail");
	snprintf(f->s.outgoing_queue_dir, MSM_PATH_LEN,
	    "/var/spool/mqueue.in/");
	assert_int_equal(config_check(&f->s, collect, f), 1);
	assert_int_equal(f->n, 3);
	assert_string_equal(f->r[0].key, "Milter Socket");
	assert_int_equal(f->r[1].severity, 0);
	assert_string_equal(f->r[1].key, "Milter Bind");
	assert_int_equal(f->r[2].severity, 1);

	/* IPv6 and v4-mapped loopback are loopback. */
	f->n = 0;
	snprintf(f->s.outgoing_queue_dir, MSM_PATH_LEN, "/var/spool/out");
	snprintf(f->s.milter_bind, MSM_NAME_LEN, "::ffff:127.0.0.2");
	assert_int_equal(config_check(&f->s, collect, f), 0);
	assert_int_equal(f->n, 1);
	snprintf(f->s.milter_bind, MSM_NAME_LEN, "::1");
	assert_int_equal(config_check(&f->s, NULL, NULL), 0);

	/* msmail and a unix socket: nothing to say. */
	f->n = 0;
	snprintf(f->s.milter_socket, MSM_PATH_LEN, "/run/msmilter.sock");
	snprintf(f->s.milter_bind, MSM_NAME_LEN, "0.0.0.0");
	assert_int_equal(config_check(&f->s, collect, f), 0);
	assert_int_equal(f->n, 0);

	/* MailScanner's 10 (Perl milter processes) is 10 sessions here. */
	f->s.milter_max_children = 10;
	assert_int_equal(config_check(&f->s, collect, f), 0);
	assert_int_equal(f->n, 1);
	assert_int_equal(f->r[0].severity, 0);
	assert_string_equal(f->r[0].key, "Milter Max Children");
	assert_non_null(strstr(f->r[0].msg, "concurrent milter sessions"));
}

/* The MailScanner.conf-shaped sample in data/config (cwd tests/unit). */
static void
test_sample_file(void **state)
{
	struct fixture	*f = *state;
	const char	*path = "data/config/MailScanner.conf";

	assert_int_equal(config_load(path, &f->s, collect, f), 0);
	assert_int_equal(f->n, 0);
	assert_string_equal(f->s.org_name, "yoursite");
	assert_string_equal(f->s.run_as_user, "postfix");
	assert_string_equal(f->s.run_as_group, "mtagroup");
	assert_string_equal(f->s.incoming_queue_dir,
	    "/var/spool/MailScanner/milterin");
	assert_string_equal(f->s.mta, "msmail");
	assert_int_equal(f->s.milter_ignore_loopback, 0);
	assert_int_equal(f->s.queue_type, MSM_QUEUE_LONG);
	assert_int_equal(f->s.delivery_method, MSM_DELIVER_QMQP);
	assert_int_equal(f->s.socket_type, MSM_SOCKET_UNIX);
	assert_int_equal(f->s.relay_port, 28025);
	assert_string_equal(f->s.spam_whitelist,
	    "/etc/MailScanner/rules/spam.whitelist.rules");
	assert_string_equal(f->s.milter_socket, "/run/msmilter/milter.sock");
	assert_string_equal(f->s.milter_socket_owner, "postfix");
	assert_int_equal(f->s.milter_commit_timeout, 120);
	/* QMQP over a unix socket: the socket must exist to pass. */
	f->s.deliver_cleaned = 0;	/* test_deliver_cleaned_messages */
	snprintf(f->s.socket_dir, MSM_PATH_LEN, "/nonexistent/qmqp");
	assert_int_equal(config_check(&f->s, collect, f), 1);
	assert_non_null(strstr(f->r[0].msg, "QMQP socket"));
	f->n = f->warnings = 0;
	{
		struct sockaddr_un	sun = { .sun_family = AF_UNIX };
		int			fd = socket(AF_UNIX, SOCK_STREAM, 0);

		snprintf(sun.sun_path, sizeof sun.sun_path,
		    "/tmp/msm-unit-qmqp-%d", (int)getpid());
		unlink(sun.sun_path);
		assert_int_equal(bind(fd, (struct sockaddr *)&sun,
		    sizeof sun), 0);
		snprintf(f->s.socket_dir, MSM_PATH_LEN, "%s", sun.sun_path);
		assert_int_equal(config_check(&f->s, collect, f), 0);
		unlink(sun.sun_path);
		close(fd);
	}
	assert_int_equal(f->n, 0);
}

#define T(fn)	cmocka_unit_test_setup_teardown(fn, setup, teardown)

int
main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_defaults),
		T(test_empty_file_gives_defaults),
		T(test_normalise_key),
		T(test_key_spellings),
		T(test_last_value_wins),
		T(test_percent_vars),
		T(test_percent_var_too_long),
		T(test_org_name_too_long),
		T(test_org_name_header_safe),
		T(test_include_glob),
		T(test_include_errors_name_included_file),
		T(test_include_missing_file_warns),
		T(test_include_loop),
		T(test_include_self),
		T(test_include_too_deep),
		T(test_bad_boolean),
		T(test_bad_port),
		T(test_bad_queue_type),
		T(test_line_without_equals),
		T(test_bad_values),
		T(test_number_suffixes),
		T(test_unknown_keys_ignored),
		T(test_comments),
		T(test_value_too_long),
		T(test_nul_byte),
		T(test_open_failure),
		T(test_validate),
		T(test_print),
		T(test_print_round_trip),
		T(test_empty_values_take_defaults),
		T(test_delivery_method_ruleset),
		T(test_deliver_cleaned_messages),
		T(test_check),
		T(test_sample_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
