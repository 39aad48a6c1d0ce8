/*
 * msmilter: the privsep parent.  Runs as root (or, for development, as the
 * invoking user), holds no message data and never talks to the network;
 * it reads the configuration, starts and supervises the children and
 * writes their log lines.  Start-up errors are fatal; nothing a child or a
 * client sends can make it exit.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit_hooks.h"
#include "caps.h"
#include "control.h"
#include "doctor.h"
#include "ipc.h"
#include "landlock.h"
#include "log.h"
#include "metrics.h"
#include "parent.h"
#include "sandbox.h"
#include "syslog_out.h"

#define TERMINATE_SECONDS	40

static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: msmilter [-dFt] [-f config] [--postfix-config DIR] "
	    "[config]\n       msmilter -s [--json] [-f config] "
	    "[config]\n"
	    "       msmilter -t [-f config] --rule-test FROM TO[,TO...] IP "
	    "[NAME]\n"
	    "  -f FILE  MailScanner.conf to read (default %s)\n"
	    "  -F       stay in the foreground, log to stderr\n"
	    "  -d       debug logging\n"
	    "  -s       print the running msmilter's status (--json: as "
	    "JSON)\n"
	    "  -t       check the configuration, the machine and Postfix, "
	    "print the settings, exit\n"
	    "  --postfix-config DIR  with -t: the Postfix instance to check "
	    "(postconf -c DIR)\n",
	    MSM_DEFAULT_CONFIG);
	exit(2);
}

/* "error: FILE:LINE: KEY: message" — one line per problem. */
static void
report_line(void *arg, int severity, const char *file, unsigned line,
    const char *key, const char *message)
{
	char	 where[MSM_PATH_LEN + 32] = "";
	int	*errors = arg;

	if (severity > 0 && errors != NULL)
		(*errors)++;
	if (file != NULL && line > 0)
		snprintf(where, sizeof(where), "%s:%u: ", file, line);
	else if (file != NULL)
		snprintf(where, sizeof(where), "%s: ", file);
	if (severity > 0)
		log_warnx("error: %s%s%s%s", where, key ? key : "",
		    key ? ": " : "", message);
	else
		log_warnx("warning: %s%s%s%s", where, key ? key : "",
		    key ? ": " : "", message);
}

/* What Postfix needs to use us, printed by -t under the settings. */
static void
print_postfix_advice(const struct msm_settings *s, FILE *out)
{
	fputs("# Postfix main.cf for the smtpd that uses msmilter:\n", out);
	if (s->milter_socket[0] != '\0')
		fprintf(out, "#   smtpd_milters = unix:%s  (last in the list; "
		    "path as seen from smtpd's chroot)\n", s->milter_socket);
	else if (strchr(s->milter_bind, ':') != NULL)
		fprintf(out, "#   smtpd_milters = inet:[%s]:%u  (last in the "
		    "list)\n", s->milter_bind, s->milter_port);
	else
		fprintf(out, "#   smtpd_milters = inet:%s:%u  (last in the "
		    "list)\n", s->milter_bind, s->milter_port);
	fputs("#   milter_default_action = tempfail  (msmilter down: 4xx, "
	    "not unscanned mail)\n"
	    "#   in_flow_delay = 0  (discarded mail never returns smtpd's "
	    "flow-control token)\n", out);
}

/*
 * The accounts the children become must exist and must not be root (a
 * name such as "toor" can map to uid 0 too), and capture's own user is
 * neither root nor Run As User: falling back to a shared account would
 * hide a missing install step and give capture another daemon's uid.
 */
static int
check_accounts(const struct msm_settings *s)
{
	struct sandbox_creds	 run_as, milter;
	char			 err[512], msg[1024];
	const char		*group = s->incoming_work_group[0] ?
				    s->incoming_work_group : s->run_as_group;
	int			 errors = 0;

	if (sandbox_lookup(s->run_as_user, group, &run_as, err,
	    sizeof(err)) == -1) {
		report_line(&errors, 1, s->config_file, 0, "Run As User", err);
	} else if (run_as.uid == 0 || run_as.gid == 0) {
		snprintf(msg, sizeof(msg), "%s resolves to uid %u gid %u: the "
		    "spooler and the relay must not run as root",
		    run_as.user, (unsigned)run_as.uid, (unsigned)run_as.gid);
		report_line(&errors, 1, s->config_file, 0, "Run As User", msg);
	}
	if (sandbox_lookup(s->milter_user, NULL, &milter, err,
	    sizeof(err)) == -1) {
		snprintf(msg, sizeof(msg), "%s: capture needs an unprivileged "
		    "account of its own; create it (useradd --system "
		    "--no-create-home --shell /usr/sbin/nologin %s) or set "
		    "Milter User", err, s->milter_user);
		report_line(&errors, 1, s->config_file, 0, "Milter User", msg);
	} else if (milter.uid == 0) {
		report_line(&errors, 1, s->config_file, 0, "Milter User",
		    "Milter User is root: capture must run as an unprivileged "
		    "user of its own");
	} else if (errors == 0 && milter.uid == run_as.uid) {
		report_line(NULL, 0, s->config_file, 0, "Milter User",
		    "Milter User is Run As User: a compromised capture could "
		    "signal the spooler and the relay; give it its own user");
	}
	return errors;
}

/* The configuration and, with Milter Scanner on, its rulesets. */
static int
load_config(const char *path, struct msm_settings *s,
    struct parent_rules *rules)
{
	int errors = 0;

	config_defaults(s);
	errors = config_load(path, s, report_line, NULL);
	if (errors == 0)
		errors = config_check(s, report_line, NULL);
	snprintf(s->config_file, sizeof(s->config_file), "%s", path);
	if (errors == 0)
		errors = check_accounts(s);
	if (errors == 0 && s->milter_scanner)
		errors = rules_load(s, rules);
	return errors;
}

static void
write_pidfile(struct parent *p)
{
	char	 buf[32];
	int	 fd, n;

	fd = open(p->set.milter_pid_file, O_WRONLY | O_CREAT | O_NOFOLLOW |
	    O_CLOEXEC, 0644);
	if (fd == -1)
		fatal("Milter PID File %s", p->set.milter_pid_file);
	if (flock(fd, LOCK_EX | LOCK_NB) == -1)
		fatalx("Milter PID File %s is locked: is msmilter already "
		    "running?", p->set.milter_pid_file);
	n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(fd, 0) == -1 || write(fd, buf, (size_t)n) != n)
		fatal("writing %s", p->set.milter_pid_file);
	p->pidfd = fd;	/* the lock lives as long as we do */
}

/* "/a/b/c" into "/a/b" and "c"; -1 when there is no last component. */
static int
split_path(const char *path, char *dir, size_t dirlen, char *base,
    size_t baselen)
{
	char	 buf[MSM_PATH_LEN];
	char	*slash;
	size_t	 n;

	if (strlen(path) >= sizeof(buf))
		return -1;
	memcpy(buf, path, strlen(path) + 1);
	n = strlen(buf);
	while (n > 1 && buf[n - 1] == '/')
		buf[--n] = '\0';
	if ((slash = strrchr(buf, '/')) == NULL || strcmp(slash, "/") == 0 ||
	    strcmp(slash, "/.") == 0 || strcmp(slash, "/..") == 0)
		return -1;
	snprintf(base, baselen, "%s", slash + 1);
	if (slash == buf)
		slash++;	/* "/c": the directory is "/" */
	*slash = '\0';
	snprintf(dir, dirlen, "%s", buf);
	return 0;
}

/* Whose the quarantine directory must be: the relay's. */
static int
quarantine_owner(const struct msm_settings *s, struct sandbox_creds *owner)
{
	char	 err[256];

	if (!sandbox_privileged()) {
		owner->uid = geteuid();
		owner->gid = getegid();
		return 0;
	}
	if (sandbox_lookup(s->run_as_user, s->run_as_group, owner, err,
	    sizeof(err)) == -1) {
		log_warnx("quarantine directory: Run As User/Group: %s", err);
		return -1;
	}
	return 0;
}

/* An entry at the quarantine path that we did not make: fit to use? */
static const char *
quarantine_unfit(const struct stat *st, const struct sandbox_creds *owner,
    char *buf, size_t len)
{
	if (!S_ISDIR(st->st_mode))
		return "not a directory";
	if (st->st_uid != owner->uid) {
		snprintf(buf, len, "owned by uid %ju, not %ju",
		    (uintmax_t)st->st_uid, (uintmax_t)owner->uid);
		return buf;
	}
	if (st->st_mode & (S_IWGRP | S_IWOTH))
		return "group or world writable";
	return NULL;
}

static void
refuse_quarantine(const char *path, const char *why)
{
	log_warnx("REFUSING %s as the quarantine directory: %s; unreadable "
	    "milterout files stay where they are until it is the Run As "
	    "User's own directory", path, why);
}

/*
 * The relay moves unreadable files aside; it cannot create the directory
 * next to milterout itself (the parent directory is MailScanner's).  We
 * are root in a directory the Run As User may write: only by descriptor
 * from the parent directory on, never through a link (the user could
 * plant one at the name, or swap the directory we made for one, to have
 * root create or chown elsewhere), and an entry we did not make must
 * already be the relay's own directory, or we leave it alone and say so.
 */
static void
prepare_quarantine(const struct msm_settings *s)
{
	struct sandbox_creds	 owner;
	struct stat		 st;
	char			 path[MSM_PATH_LEN], dir[MSM_PATH_LEN];
	char			 base[MSM_PATH_LEN], buf[64];
	const char		*why;
	int			 dfd, fd, made;

	config_quarantine_dir(s, path, sizeof(path));
	if (quarantine_owner(s, &owner) == -1)
		return;
	if (split_path(path, dir, sizeof(dir), base, sizeof(base)) == -1) {
		refuse_quarantine(path, "no directory name");
		return;
	}
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW |
	    O_CLOEXEC)) == -1) {
		log_warn("cannot open %s to create %s in it (never through "
		    "a symbolic link)", dir, base);
		return;
	}
	made = mkdirat(dfd, base, 0700) == 0;
	if (!made && errno != EEXIST) {
		log_warn("cannot create %s", path);
		close(dfd);
		return;
	}
	fd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	close(dfd);
	if (fd == -1) {
		refuse_quarantine(path, errno == ELOOP || errno == ENOTDIR ?
		    "a symbolic link or not a directory" : strerror(errno));
		return;
	}
	if (fstat(fd, &st) == -1)
		refuse_quarantine(path, strerror(errno));
	else if (made && (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()))
		refuse_quarantine(path, "replaced while we made it");
	else if (made) {
		if (fchmod(fd, 0750) == -1 || (sandbox_privileged() &&
		    fchown(fd, owner.uid, owner.gid) == -1))
			log_warn("cannot give %s to the Run As User", path);
		else
			log_info("created %s for unreadable milterout files",
			    path);
	} else if ((why = quarantine_unfit(&st, &owner, buf,
	    sizeof(buf))) != NULL)
		refuse_quarantine(path, why);
	close(fd);
}

/* What confinement by path the children will get; loud when none. */
static void
report_landlock(const struct msm_settings *s)
{
	int abi = landlock_abi();

	if (!s->milter_landlock)
		log_warnx("landlock: off (Milter Landlock = no): the children "
		    "are not confined by path");
	else if (abi == 0)
		log_warnx("landlock: NOT AVAILABLE in this kernel: the "
		    "children are not confined by path (seccomp, ids and the "
		    "chroot still apply)");
	else
		log_info("landlock: ABI %d, %s", abi, abi >= 4 ?
		    "file system and TCP rules" : "file system rules (no TCP "
		    "rules before ABI 4)");
}

static int
setup_signals(void)
{
	sigset_t	 mask;
	int		 fd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGCHLD);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) == -1)
		fatal("sigprocmask");
	if ((fd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK)) == -1)
		fatal("signalfd");
	signal(SIGPIPE, SIG_IGN);
	return fd;
}

/* Did a reload change something a running child cannot adopt? */
static int
capture_needs_restart(const struct msm_settings *a,
    const struct msm_settings *b)
{
	return strcmp(a->milter_bind, b->milter_bind) != 0 ||
	    a->milter_port != b->milter_port ||
	    strcmp(a->milter_socket, b->milter_socket) != 0 ||
	    strcmp(a->milter_socket_owner, b->milter_socket_owner) != 0 ||
	    strcmp(a->milter_socket_group, b->milter_socket_group) != 0 ||
	    a->milter_socket_mode != b->milter_socket_mode ||
	    strcmp(a->milter_user, b->milter_user) != 0 ||
	    strcmp(a->milter_chroot, b->milter_chroot) != 0;
}

static int
spooler_needs_restart(const struct msm_settings *a,
    const struct msm_settings *b)
{
	return strcmp(a->run_as_user, b->run_as_user) != 0 ||
	    strcmp(a->run_as_group, b->run_as_group) != 0 ||
	    strcmp(a->incoming_work_group, b->incoming_work_group) != 0 ||
	    strcmp(a->incoming_queue_dir, b->incoming_queue_dir) != 0;
}

static int
relay_needs_restart(const struct msm_settings *a,
    const struct msm_settings *b)
{
	struct msm_settings x = *a, y = *b;

	/*
	 * Its delivery threads read the settings, so it takes them only at
	 * start: a change to anything but capture's own keys restarts it.
	 */
	for (struct msm_settings *s = &x; s != NULL; s = s == &x ? &y : NULL) {
		s->milter_scanner = s->milter_ignore_loopback = 0;
		s->whitelist_max_recips = s->milter_max_children = 0;
		memset(s->spam_whitelist, 0, sizeof(s->spam_whitelist));
		memset(s->spam_blacklist, 0, sizeof(s->spam_blacklist));
		memset(s->milter_reject_text, 0,
		    sizeof(s->milter_reject_text));
	}
	return memcmp(&x, &y, sizeof(x)) != 0;
}

static void
restart_child(struct child *c)
{
	if (c->pid > 0) {
		c->restart_now = 1;
		child_stop(c, SIGTERM);
	}
}

static void
reload(struct parent *p)
{
	struct msm_settings	 next;
	struct parent_rules	 rules = { { NULL, NULL }, { 0, 0 } };
	int			 errors;

	log_info("SIGHUP: reloading %s", p->config_path);
	audit_rotate();		/* a new file; the reload record goes there */
	if ((errors = load_config(p->config_path, &next, &rules)) != 0) {
		rules_free(&rules);
		log_warnx("reload refused: %d error%s in %s; the running "
		    "configuration stays in force", errors,
		    errors == 1 ? "" : "s", p->config_path);
		audit_reload(&p->set, 0);
		return;
	}
	if (p->cmdline_debug)
		next.debug = 1;
	if (capture_needs_restart(&p->set, &next))
		restart_child(&p->children[CHILD_CAPTURE]);
	if (spooler_needs_restart(&p->set, &next))
		restart_child(&p->children[CHILD_SPOOLER]);
	if (relay_needs_restart(&p->set, &next))
		restart_child(&p->children[CHILD_RELAY]);
	p->set = next;
	log_set_debug(p->set.debug);
	syslog_out_init(p->set.milter_syslog_socket,
	    log_facility(p->set.syslog_facility));
	children_send_settings(p);
	if (next.milter_scanner) {
		rules_free(&p->rules);
		p->rules = rules;
		rules_send(p);
	} else
		rules_free(&rules);
	log_info("configuration reloaded");
	audit_reload(&p->set, 1);
}

/* Stop accepting mail first, then let the spooler finish and go. */
static void
terminate_step(struct parent *p)
{
	struct child *cap = &p->children[CHILD_CAPTURE];
	struct child *rel = &p->children[CHILD_RELAY];
	struct child *spo = &p->children[CHILD_SPOOLER];

	if (cap->pid > 0 && !cap->stopping)
		child_stop(cap, SIGTERM);
	if (rel->pid > 0 && !rel->stopping)
		child_stop(rel, SIGTERM);
	/* The spooler last: capture and the relay may still need it. */
	if (cap->pid == 0 && rel->pid == 0 && spo->pid > 0 && !spo->stopping)
		child_stop(spo, SIGTERM);
	if (time(NULL) >= p->terminate_deadline)
		for (int i = 0; i < CHILD_COUNT; i++)
			if (p->children[i].pid > 0) {
				log_warnx("%s did not stop in %d s; killing it",
				    p->children[i].name, TERMINATE_SECONDS);
				kill(p->children[i].pid, SIGKILL);
			}
}

static void
handle_signals(struct parent *p)
{
	struct signalfd_siginfo	 si;
	pid_t			 pid;
	int			 status;

	while (read(p->sigfd, &si, sizeof(si)) == sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGTERM:
		case SIGINT:
			if (!p->terminating) {
				log_info("signal %d: shutting down",
				    (int)si.ssi_signo);
				p->terminating = 1;
				p->terminate_deadline = time(NULL) +
				    TERMINATE_SECONDS;
			}
			break;
		case SIGHUP:
			if (!p->terminating)
				reload(p);
			break;
		default:
			break;
		}
	}
	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		child_reaped(p, pid, status);
	if (p->terminating)
		terminate_step(p);
}

/* Until the next child timer, or a second while we stop. */
static int
poll_timeout(const struct parent *p)
{
	long long next = children_next_timer(p), now = parent_now();

	if (p->terminating)
		return 1000;
	if (next == 0)
		return -1;
	return next <= now ? 0 : next - now > 60000 ? 60000 : (int)(next - now);
}

/*
 * Every child ready for the first time: msmilter is up.  The process
 * that started us (without -F) has waited for this line to exit 0.
 */
static void
announce_ready(struct parent *p)
{
	p->starting = 0;
	log_info("msmilter ready (config %s)", p->config_path);
	if (p->ready_fd == -1)
		return;
	log_set_startup_fd(-1);
	if (write(p->ready_fd, "ready\n", 6) != 6)
		log_warn("telling the starting process we are ready");
	close(p->ready_fd);
	p->ready_fd = -1;
}

/*
 * The supervisor's loop: the children's channels, signals, and the child
 * timers (set-up deadlines, restarts).  Nothing in it waits on one child.
 */
static void
parent_loop(struct parent *p)
{
	struct pollfd pfd[2 + CHILD_COUNT];	/* + the control socket */

	while (!p->terminating || children_running(p) > 0) {
		pfd[0] = (struct pollfd){ p->sigfd, POLLIN, 0 };
		for (int i = 0; i < CHILD_COUNT; i++)
			pfd[i + 1] = (struct pollfd){ p->children[i].chan,
			    POLLIN, 0 };
		pfd[1 + CHILD_COUNT] = (struct pollfd){ control_fd(), POLLIN,
		    0 };
		if (poll(pfd, 2 + CHILD_COUNT,
		    metrics_poll_timeout(audit_poll_timeout(poll_timeout(p)))) ==
		    -1 && errno != EINTR)
			fatal("poll");
		audit_tick();
		metrics_tick();
		if (pfd[1 + CHILD_COUNT].revents)
			control_handle();
		for (int i = 0; i < CHILD_COUNT; i++)
			if (pfd[i + 1].revents && p->children[i].chan != -1)
				child_read(p, &p->children[i]);
		if (pfd[0].revents)
			handle_signals(p);
		else if (p->terminating)
			terminate_step(p);
		children_timers(p, parent_now());
		if (p->starting && !p->terminating &&
		    children_ready(p) == CHILD_COUNT)
			announce_ready(p);
	}
}

/*
 * Each milter session costs capture Postfix's socket and a spooler channel,
 * and the spooler that channel and a temp file; the children inherit our
 * limit at exec.  Raised while we are still root: nothing can later.
 */
static void
raise_nofile(const struct msm_settings *s)
{
	rlim_t		 need = 2 * (rlim_t)s->milter_max_children + 64;
	struct rlimit	 rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur >= need)
		return;
	if (rl.rlim_max < need) {
		struct rlimit want = { need, need };

		if (setrlimit(RLIMIT_NOFILE, &want) == 0)
			return;
		log_warnx("open files hard limit %llu is below the %llu that "
		    "Milter Max Children = %u needs: sessions past it get a "
		    "temporary failure", (unsigned long long)rl.rlim_max,
		    (unsigned long long)need, s->milter_max_children);
		need = rl.rlim_max;
	}
	rl.rlim_cur = need;
	if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
		log_warn("setrlimit RLIMIT_NOFILE %llu",
		    (unsigned long long)need);
}

/*
 * Into the background, but report first: the process that started us
 * (an init script, start-stop-daemon) waits on a pipe and exits 0 only
 * once we hold the pid file lock and every child is ready, or non-zero
 * with our reason (every warning and error we log until then is copied
 * to it).  Returns the pipe's write end, in the daemon.
 */
static int
detach(void)
{
	char	 buf[LOG_LINE_MAX + 2];
	int	 fds[2], null, ready = 0;
	FILE	*in;

	if (pipe2(fds, O_CLOEXEC) == -1)
		fatal("pipe");
	switch (fork()) {
	case -1:
		fatal("fork");
	case 0:
		close(fds[0]);
		/* Our errors from here on reach the waiting process too. */
		log_set_startup_fd(fds[1]);
		signal(SIGPIPE, SIG_IGN);
		if (setsid() == -1)
			fatal("setsid");
		if (chdir("/") == -1)
			fatal("chdir /");
		if ((null = open("/dev/null", O_RDWR)) == -1)
			fatal("/dev/null");
		if (dup2(null, STDIN_FILENO) == -1 ||
		    dup2(null, STDOUT_FILENO) == -1 ||
		    dup2(null, STDERR_FILENO) == -1)
			fatal("dup2 /dev/null");
		if (null > STDERR_FILENO)
			close(null);
		return fds[1];
	default:
		break;
	}
	close(fds[1]);
	if ((in = fdopen(fds[0], "r")) == NULL)
		fatal("fdopen");
	while (fgets(buf, sizeof(buf), in) != NULL) {
		if (strcmp(buf, "ready\n") == 0)
			ready = 1;
		else
			fputs(buf, stderr);
	}
	if (!ready)
		fprintf(stderr, "msmilter: not started (the lines above say "
		    "why; the rest is in the mail log)\n");
	exit(ready ? 0 : 1);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "rule-test", no_argument, NULL, 'R' },
		{ "postfix-config", required_argument, NULL, 'P' },
		{ "json", no_argument, NULL, 'J' },
		{ NULL, 0, NULL, 0 },
	};
	static struct parent	 p;
	int			 ch, test_only = 0, rule_test = 0, errors;
	int			 status = 0, json = 0;
	const char		*path = MSM_DEFAULT_CONFIG;
	const char		*postfix_dir = NULL;

	log_init_parent("msmilter", LOG_MODE_CLI, LOG_MAIL, 0);
	while ((ch = getopt_long(argc, argv, "dFf:sth", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd': p.cmdline_debug = 1; break;
		case 'F': p.foreground = 1; break;
		case 'f': path = optarg; break;
		case 't': test_only = 1; break;
		case 'R': rule_test = 1; break;
		case 'P': postfix_dir = optarg; break;
		case 's': status = 1; break;
		case 'J': json = 1; break;
		default: usage();
		}
	}
	if (rule_test && !test_only)
		usage();
	if (!rule_test && argc - optind == 1)
		path = argv[optind];	/* "msmilter FILE", like MSMilter */
	else if (!rule_test && argc - optind > 1)
		usage();
	snprintf(p.config_path, sizeof(p.config_path), "%s", path);

	if (json && !status)
		usage();
	/* A daemon in the foreground tags its lines from the first one. */
	if (p.foreground && !status && !test_only)
		log_init_parent("msmilter", LOG_MODE_FOREGROUND, LOG_MAIL, 0);
	if (status) {
		config_defaults(&p.set);
		if (config_load(path, &p.set, report_line, NULL) != 0)
			return 1;
		return control_client(&p.set, json);
	}
	errors = load_config(path, &p.set, &p.rules);
	if (rule_test) {
		if (errors)
			fatalx("%d error%s in %s", errors, errors == 1 ? "" :
			    "s", path);
		return rules_test(&p.set, argc - optind, argv + optind);
	}
	if (test_only) {
		config_print(&p.set, stdout);
		print_postfix_advice(&p.set, stdout);
		audit_doctor(&p.set, stdout);
		if (errors == 0)
			errors = doctor_run(&p.set, postfix_dir);
		if (errors)
			fprintf(stderr, "%s: %d error%s\n", path, errors,
			    errors == 1 ? "" : "s");
		return errors ? 1 : 0;
	}
	if (errors)
		fatalx("%d error%s in %s; not starting", errors,
		    errors == 1 ? "" : "s", path);
	if (p.cmdline_debug)
		p.set.debug = 1;
	p.foreground |= p.set.run_in_foreground;

	if (!sandbox_privileged())
		log_warnx("UNPRIVILEGED MODE (not started as root): children "
		    "keep your user id and no chroot is used; for "
		    "development and tests only");
	p.ready_fd = p.foreground ? -1 : detach();
	syslog_out_init(p.set.milter_syslog_socket,
	    log_facility(p.set.syslog_facility));
	log_set_syslog(syslog_out_send);
	log_init_parent("msmilter", p.foreground ? LOG_MODE_FOREGROUND :
	    LOG_MODE_SYSLOG, log_facility(p.set.syslog_facility),
	    p.set.debug);
	report_landlock(&p.set);

	p.pidfd = -1;
	p.sigfd = setup_signals();
	/* Before any child: a second instance must not touch our spool. */
	write_pidfile(&p);
	prepare_quarantine(&p.set);
	audit_start(&p.set);	/* before any child can report an event */
	metrics_start(&p);	/* opens the queues while we are root */
	control_start(&p);
	raise_nofile(&p.set);
	{
		/* Root's own work is done: keep what starting children takes. */
		char err[256];

		if (caps_parent_limit(&p.set, err, sizeof(err)) == -1)
			fatalx("%s", err);
	}
	children_init(&p);
	/* They set up in parallel; parent_loop() sees them become ready. */
	p.starting = 1;
	for (int i = 0; i < CHILD_COUNT; i++)
		if (child_start(&p, &p.children[i]) == -1)
			fatalx("cannot start %s (%s)", p.children[i].name,
			    p.children[i].path);

	parent_loop(&p);
	control_stop();
	metrics_stop();
	audit_stop();
	if (p.pidfd != -1)
		unlink(p.set.milter_pid_file);
	log_info("msmilter stopped");
	return 0;
}
