/*
 * msmilter -t, the mandatory access control half: where SELinux enforces,
 * milterin and milterout must carry our module's types, or the spooler
 * and the relay are denied the queues (MailScanner's trackers are full of
 * "SELinux denying the queues"); where AppArmor is on, our four profiles
 * must be loaded and enforcing, and the queues configured must lie where
 * the children's profiles let them go.  Reads sysfs and file attributes
 * only; changes nothing.  A permissive or absent LSM is not checked.
 *
 * Test builds (make testhooks) read sysfs and /etc/apparmor.d under
 * MSM_TEST_MAC_ROOT, so that a test can present an enforcing SELinux or
 * AppArmor on a kernel that has neither.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/xattr.h>

#include "doctor.h"

/* The queues of the MailScanner Milter guide, as selinux/msmilter.fc and
 * apparmor/ name them. */
#define DEFAULT_IN	"/var/spool/MailScanner/milterin"
#define DEFAULT_OUT	"/var/spool/MailScanner/milterout"

struct queue {
	const char	*key;		/* "Incoming Queue Dir" */
	const char	*path;		/* as configured */
	const char	*dflt;		/* the policies' own path */
	const char	*type;		/* SELinux type of the module */
	const char	*profile;	/* AppArmor profile that writes it */
	const char	*rules;		/* its rules, for the local file */
};

static const char *
root(void)
{
#ifdef MSM_TESTHOOKS
	const char *r = getenv("MSM_TEST_MAC_ROOT");

	if (r != NULL && r[0] == '/')
		return r;
#endif
	return "";
}

/* The first line of ROOT/path, without its newline; -1 if unreadable. */
static int
read_first_line(const char *path, char *buf, size_t len)
{
	char	 full[PATH_MAX];
	FILE	*f;

	snprintf(full, sizeof(full), "%s%s", root(), path);
	if ((f = fopen(full, "re")) == NULL)
		return -1;
	if (fgets(buf, (int)len, f) == NULL)
		buf[0] = '\0';
	fclose(f);
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

/* The configured path resolved (AppArmor and restorecon see that one). */
static void
resolved(const char *path, char *out, size_t len)
{
	char buf[PATH_MAX];

	if (realpath(path, buf) != NULL)
		snprintf(out, len, "%s", buf);
	else
		snprintf(out, len, "%s", path);
}

/* ---- SELinux ---- */

/* The type field of a context "user:role:type:level"; "" if none. */
static void
context_type(const char *ctx, char *out, size_t len)
{
	const char	*a = strchr(ctx, ':');
	const char	*b = a != NULL ? strchr(a + 1, ':') : NULL;
	const char	*c;

	out[0] = '\0';
	if (b == NULL)
		return;
	c = strchr(b + 1, ':');
	snprintf(out, len, "%.*s", (int)(c != NULL ? c - b - 1 :
	    (ptrdiff_t)strlen(b + 1)), b + 1);
}

static void
selinux_queue(const struct queue *q, doctor_say_fn say, void *arg)
{
	char	 ctx[512], type[128], path[PATH_MAX], fix[PATH_MAX * 2 + 128];
	char	 msg[PATH_MAX * 4 + 1024];
	ssize_t	 n;

	resolved(q->path, path, sizeof(path));
	n = getxattr(path, "security.selinux", ctx, sizeof(ctx) - 1);
	if (n == -1 && errno == ENOENT)
		return;		/* missing: the machine check says so */
	if (n >= 0) {
		ctx[n] = '\0';	/* the kernel's value may end in a NUL */
		context_type(ctx, type, sizeof(type));
		if (strcmp(type, q->type) == 0)
			return;
	}
	if (strcmp(path, q->dflt) == 0)
		snprintf(fix, sizeof(fix), "restorecon -R -v %s", path);
	else
		snprintf(fix, sizeof(fix), "semanage fcontext -a -t %s "
		    "'%s(/.*)?' && restorecon -R -v %s", q->type, path, path);
	if (n >= 0)
		snprintf(msg, sizeof(msg), "%s %s is labelled %s, not %s: "
		    "SELinux enforces and denies msmilter-%s its queue; fix "
		    "the label: %s", q->key, path, ctx, q->type, q->profile +
		    sizeof("msmilter-") - 1, fix);
	else
		snprintf(msg, sizeof(msg), "%s %s: no SELinux label (%s) "
		    "while SELinux enforces: msmilter-%s will be denied its "
		    "queue; fix the label: %s", q->key, path, strerror(errno),
		    q->profile + sizeof("msmilter-") - 1, fix);
	say(arg, 1, msg);
}

static void
check_selinux(const struct queue *qs, size_t nq, doctor_say_fn say,
    void *arg)
{
	char enforce[16];

	/* Permissive, disabled or absent: nothing is denied, no check. */
	if (read_first_line("/sys/fs/selinux/enforce", enforce,
	    sizeof(enforce)) == -1 || strcmp(enforce, "1") != 0)
		return;
	for (size_t i = 0; i < nq; i++)
		selinux_queue(&qs[i], say, arg);
}

/* ---- AppArmor ---- */

static const char *const profiles[] = { "msmilter", "msmilter-capture",
    "msmilter-spooler", "msmilter-relay" };
static const char *const profile_files[] = { "usr.sbin.msmilter",
    "usr.libexec.msmilter.msmilter-capture",
    "usr.libexec.msmilter.msmilter-spooler",
    "usr.libexec.msmilter.msmilter-relay" };

/* "name (mode)" lines of the kernel's profile list: mode, or NULL. */
static const char *
profile_mode(const char *list, const char *name, char *mode, size_t len)
{
	size_t		 n = strlen(name);
	const char	*p = list;

	while (p != NULL && *p != '\0') {
		if (strncmp(p, name, n) == 0 && strncmp(p + n, " (", 2) == 0) {
			const char *end = strchr(p + n + 2, ')');

			if (end == NULL)
				return NULL;
			snprintf(mode, len, "%.*s", (int)(end - p - n - 2),
			    p + n + 2);
			return mode;
		}
		if ((p = strchr(p, '\n')) != NULL)
			p++;
	}
	return NULL;
}

static char *
read_all(const char *path)
{
	char	 full[PATH_MAX], *buf = NULL;
	size_t	 len = 0, cap = 0, n;
	FILE	*f;

	snprintf(full, sizeof(full), "%s%s", root(), path);
	if ((f = fopen(full, "re")) == NULL)
		return NULL;
	do {
		char *nb;

		if (len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			if (cap > 16 * 1024 * 1024 ||
			    (nb = realloc(buf, cap)) == NULL) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, 4096, f);
		len += n;
	} while (n > 0);
	fclose(f);
	if (buf == NULL && (buf = malloc(1)) == NULL)
		return NULL;
	buf[len] = '\0';
	return buf;
}

static void
apparmor_profiles(const char *list, doctor_say_fn say, void *arg)
{
	char mode[32], msg[1024];

	for (size_t i = 0; i < sizeof(profiles) / sizeof(profiles[0]); i++) {
		if (profile_mode(list, profiles[i], mode, sizeof(mode)) ==
		    NULL) {
			snprintf(msg, sizeof(msg), "AppArmor profile %s is not "
			    "loaded: install apparmor/%s into /etc/apparmor.d "
			    "and load it: apparmor_parser -r /etc/apparmor.d/%s",
			    profiles[i], profile_files[i], profile_files[i]);
			say(arg, 1, msg);
		} else if (strcmp(mode, "enforce") != 0) {
			snprintf(msg, sizeof(msg), "AppArmor profile %s is in "
			    "%s mode, not enforce: it confines nothing; aa-enforce "
			    "/etc/apparmor.d/%s", profiles[i], mode,
			    profile_files[i]);
			say(arg, 0, msg);
		}
	}
}

/*
 * The profiles allow the guide's queue paths; another path must be added
 * to the child's local include (apparmor/README.md).  Said unless the
 * local file names it.
 */
static void
apparmor_queue(const struct queue *q, doctor_say_fn say, void *arg)
{
	char	 path[PATH_MAX], local[PATH_MAX], want[PATH_MAX + 2];
	char	 msg[PATH_MAX * 4 + 512], *text;

	resolved(q->path, path, sizeof(path));
	if (strcmp(path, q->dflt) == 0)
		return;
	snprintf(local, sizeof(local), "/etc/apparmor.d/local/usr.libexec."
	    "msmilter.%s", q->profile);
	snprintf(want, sizeof(want), "%s/", path);
	text = read_all(local);
	if (text != NULL && strstr(text, want) != NULL) {
		free(text);
		return;
	}
	free(text);
	snprintf(msg, sizeof(msg), "%s %s lies outside what the AppArmor "
	    "profile %s allows (%s): add \"%s/ r, %s/* %s,\" to %s and "
	    "reload it: apparmor_parser -r /etc/apparmor.d/usr.libexec."
	    "msmilter.%s", q->key, path, q->profile, q->dflt, path, path,
	    q->rules, local, q->profile);
	say(arg, 1, msg);
}

static void
check_apparmor(const struct queue *qs, size_t nq, doctor_say_fn say,
    void *arg)
{
	char	 enabled[16];
	char	*list;

	if (read_first_line("/sys/module/apparmor/parameters/enabled",
	    enabled, sizeof(enabled)) == -1 || enabled[0] != 'Y')
		return;
	if ((list = read_all("/sys/kernel/security/apparmor/profiles")) ==
	    NULL) {
		say(arg, 0, "AppArmor is on but its profile list "
		    "(/sys/kernel/security/apparmor/profiles) cannot be read: "
		    "msmilter's profiles were not checked (is securityfs "
		    "mounted? run -t as root)");
		return;
	}
	apparmor_profiles(list, say, arg);
	free(list);
	for (size_t i = 0; i < nq; i++)
		apparmor_queue(&qs[i], say, arg);
}

void
doctor_mac(const struct msm_settings *s, doctor_say_fn say, void *arg)
{
	const struct queue qs[] = {
		{ "Incoming Queue Dir", s->incoming_queue_dir, DEFAULT_IN,
		  "msmilter_spool_in_t", "msmilter-spooler", "rwl" },
		{ "Outgoing Queue Dir", s->outgoing_queue_dir, DEFAULT_OUT,
		  "msmilter_spool_out_t", "msmilter-relay", "rwk" },
	};

	check_selinux(qs, sizeof(qs) / sizeof(qs[0]), say, arg);
	check_apparmor(qs, sizeof(qs) / sizeof(qs[0]), say, arg);
}
