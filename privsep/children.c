/*
 * Starting, watching and restarting the children.  A child that dies is
 * restarted after a delay that doubles with each quick death (Postfix's
 * master throttles the same way), so a child that cannot start never spins.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "audit_hooks.h"
#include "caps.h"
#include "ipc.h"
#include "log.h"
#include "parent.h"
#include "sandbox.h"

#define READY_TIMEOUT_MS	30000
#define QUICK_DEATH_SECONDS	10
#define MAX_BACKOFF_SECONDS	60

static const char *const child_names[CHILD_COUNT] = {
	[CHILD_SPOOLER] = "spooler",
	[CHILD_CAPTURE] = "capture",
	[CHILD_RELAY] = "relay",
};

/* Children sit beside the parent in build/, else under LIBEXECDIR. */
void
children_init(struct parent *p)
{
	char	 self[PATH_MAX], *slash;
	ssize_t	 n = readlink("/proc/self/exe", self, sizeof(self) - 1);

	if (n <= 0)
		self[0] = '\0';
	else
		self[n] = '\0';
	slash = strrchr(self, '/');
	for (int i = 0; i < CHILD_COUNT; i++) {
		struct child *c = &p->children[i];

		memset(c, 0, sizeof(*c));
		c->name = child_names[i];
		c->chan = -1;
		if (slash != NULL) {
			snprintf(c->path, sizeof(c->path), "%.*s/msmilter-%s",
			    (int)(slash - self), self, c->name);
			if (access(c->path, X_OK) == 0)
				continue;
		}
		snprintf(c->path, sizeof(c->path), "%s/msmilter-%s",
		    LIBEXECDIR, c->name);
	}
}

/* Only what the children need from our environment. */
static char **
child_environment(void)
{
	static const char *const keep[] = { "TZ", "ASAN_OPTIONS",
	    "UBSAN_OPTIONS", "LSAN_OPTIONS", NULL };
	static char *env[8];
	int n = 0;

	for (int i = 0; keep[i] != NULL; i++) {
		static char buf[8][1024];
		const char *v = getenv(keep[i]);

		if (v == NULL)
			continue;
		snprintf(buf[n], sizeof(buf[n]), "%s=%s", keep[i], v);
		env[n] = buf[n];
		n++;
	}
	env[n] = NULL;
	return env;
}

static void __attribute__((noreturn))
exec_child(struct child *c, int chan)
{
	sigset_t	 none;
	char		*argv[2], err[256];

	if (chan == IPC_PARENT_FD)
		fcntl(chan, F_SETFD, 0);
	else if (dup2(chan, IPC_PARENT_FD) == -1)
		_exit(127);
	sandbox_close_from(IPC_PARENT_FD + 1);
	for (int sig = 1; sig < NSIG; sig++)
		signal(sig, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	argv[0] = strrchr(c->path, '/') ? strrchr(c->path, '/') + 1 : c->path;
	argv[1] = NULL;
	/* A child started as root gets only what its own set-up needs. */
	if (caps_child_bound(c->name, err, sizeof(err)) == -1) {
		dprintf(STDERR_FILENO, "msmilter: %s: %s\n", c->name, err);
		_exit(127);
	}
	execve(c->path, argv, child_environment());
	dprintf(STDERR_FILENO, "msmilter: exec %s: %s\n", c->path,
	    strerror(errno));
	_exit(127);
}

/*
 * A log line from a child: we put its name in front, strip control
 * characters again, and never let it speak louder than LOG_CRIT (rsyslog
 * writes emergencies to every terminal).
 */
static int
child_log(struct child *c, struct ipc_msg *m)
{
	struct ipc_log	 lg;
	char		 line[LOG_LINE_MAX + 32];
	char		*text = (char *)m->data + sizeof(lg);
	size_t		 tlen;

	if (m->hdr.len <= sizeof(lg))
		return -1;
	memcpy(&lg, m->data, sizeof(lg));
	tlen = m->hdr.len - sizeof(lg);
	if (text[tlen - 1] != '\0' || lg.priority < LOG_EMERG ||
	    lg.priority > LOG_DEBUG)
		return -1;
	snprintf(line, sizeof(line), "%s: %s", c->name, text);
	for (char *p = line; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	log_emit(lg.priority < LOG_CRIT ? LOG_CRIT : lg.priority, line);
	return 0;
}

/* Set-up done: once per start, and nothing in it. */
static int
child_ready_record(struct child *c, struct ipc_msg *m)
{
	if (m->hdr.len != 0 || c->ready)
		return -1;
	c->ready = 1;
	return 0;
}

/*
 * The broker's table: which child may send us which record.  Anything
 * else is a broken or compromised child, killed by child_read and started
 * afresh by the restart policy; a capture cannot speak for the relay.
 */
static const struct {
	enum child_id	 from;
	uint32_t	 type;
	int		(*handle)(struct child *, struct ipc_msg *);
} broker[] = {
	{ CHILD_SPOOLER, MSG_CHILD_READY, child_ready_record },
	{ CHILD_SPOOLER, MSG_CHILD_LOG, child_log },
	{ CHILD_CAPTURE, MSG_CHILD_READY, child_ready_record },
	{ CHILD_CAPTURE, MSG_CHILD_LOG, child_log },
	{ CHILD_RELAY, MSG_CHILD_READY, child_ready_record },
	{ CHILD_RELAY, MSG_CHILD_LOG, child_log },
	/* audit events: each child its own kinds (privsep/audit.c) */
	{ CHILD_CAPTURE, MSG_CAPTURE_AUDIT, audit_child_record },
	{ CHILD_SPOOLER, MSG_SPOOLER_AUDIT, audit_child_record },
	{ CHILD_RELAY, MSG_RELAY_AUDIT, audit_child_record },
};

/* Handle one record from a child; -1 if the child broke the protocol. */
static int
child_record(const struct parent *p, struct child *c, struct ipc_msg *m)
{
	enum child_id from = (enum child_id)(c - p->children);

	for (size_t i = 0; i < sizeof(broker) / sizeof(broker[0]); i++)
		if (broker[i].from == from && broker[i].type == m->hdr.type)
			return broker[i].handle(c, m);
	return -1;
}

void
child_read(struct parent *p, struct child *c)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];	/* audit records */
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	int			 r = ipc_recv(c->chan, &m);

	if (r == 1 && child_record(p, c, &m) == 0)
		return;
	if (r == 1 || r == -1) {
		log_warnx("%s (pid %d) sent a bad record (%s); killing it",
		    c->name, (int)c->pid, r == 1 ?
		    ipc_type_name(m.hdr.type) : strerror(errno));
		child_stop(c, SIGKILL);
	}
	/* End of file: wait for SIGCHLD to tell us why. */
	close(c->chan);
	c->chan = -1;
}

static int
wait_ready(struct parent *p, struct child *c)
{
	struct timespec	 t0, t1;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!c->ready && c->chan != -1) {
		struct pollfd	 pfd = { c->chan, POLLIN, 0 };
		long		 left;

		clock_gettime(CLOCK_MONOTONIC, &t1);
		left = READY_TIMEOUT_MS - ((t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&pfd, 1, (int)left) == 0) {
			log_warnx("%s did not finish set-up in %d s", c->name,
			    READY_TIMEOUT_MS / 1000);
			return -1;
		}
		child_read(p, c);
	}
	return c->ready ? 0 : -1;
}

/*
 * A child that closed its channel during set-up is exiting on its own
 * (e.g. it refused our protocol version): give it a moment, so that the
 * status we log is its own and not our SIGKILL.  It stays unreaped.
 */
static void
await_exit(const struct child *c)
{
	for (int i = 0; i < 100; i++) {
		siginfo_t si;

		memset(&si, 0, sizeof(si));
		if (waitid(P_PID, (id_t)c->pid, &si, WEXITED | WNOHANG |
		    WNOWAIT) == -1 || si.si_pid == c->pid)
			return;
		usleep(10000);
	}
}

int
child_start(struct parent *p, struct child *c)
{
	int	 sv[2];
	pid_t	 pid;

	c->restart_at = 0;
	c->ready = c->stopping = c->restart_now = 0;
	if (ipc_pair(sv) == -1) {
		log_warn("socketpair for %s", c->name);
		return -1;
	}
	if ((pid = fork()) == -1) {
		log_warn("fork %s", c->name);
		close(sv[0]);
		close(sv[1]);
		return -1;
	}
	if (pid == 0)
		exec_child(c, sv[1]);
	close(sv[1]);
	c->pid = pid;
	c->chan = sv[0];
	{
		/*
		 * The parent must never block for good on a child that does
		 * not read (it would stop reading that child's logs too).
		 */
		struct timeval tv = { 10, 0 };

		setsockopt(c->chan, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
	c->started = time(NULL);
	if (ipc_send_settings(c->chan, &p->set, sizeof(p->set)) == -1 ||
	    wait_ready(p, c) == -1) {
		log_warnx("%s failed to start", c->name);
		if (c->chan == -1)
			await_exit(c);
		child_stop(c, SIGKILL);
		return -1;
	}
	log_info("%s started, pid %d", c->name, (int)pid);
	return 0;
}

/*
 * SIGTERM becomes a STOP record when the channel is up: libmilter only
 * notices a SIGTERM at its next 5 s select timeout, a record wakes it now.
 */
void
child_stop(struct child *c, int sig)
{
	if (c->pid <= 0)
		return;
	c->stopping = 1;
	if (sig == SIGTERM && c->chan != -1 &&
	    ipc_send(c->chan, MSG_PARENT_STOP, NULL, 0, -1) == 0)
		return;
	kill(c->pid, sig);
}

int
children_running(const struct parent *p)
{
	int n = 0;

	for (int i = 0; i < CHILD_COUNT; i++)
		n += p->children[i].pid > 0;
	return n;
}

/*
 * A fresh channel between the spooler and one of its clients; each end
 * goes with the type that names it, so neither can take it for another.
 */
static void
link_pair(struct child *client, struct child *spo, uint32_t spooler_type,
    uint32_t client_type)
{
	int sv[2];

	if (!client->ready || !spo->ready || client->chan == -1 ||
	    spo->chan == -1)
		return;
	if (ipc_pair(sv) == -1) {
		log_warn("socketpair %s<->spooler", client->name);
		return;
	}
	if (ipc_send(spo->chan, spooler_type, NULL, 0, sv[0]) == -1 ||
	    ipc_send(client->chan, client_type, NULL, 0, sv[1]) == -1)
		log_warn("passing the %s<->spooler channel", client->name);
	close(sv[0]);
	close(sv[1]);
}

/*
 * After a child (re)started: capture and the relay each get a new channel
 * to the spooler when they or the spooler are new.
 */
void
children_link(struct parent *p, enum child_id started)
{
	struct child *spo = &p->children[CHILD_SPOOLER];

	if (started == CHILD_SPOOLER || started == CHILD_CAPTURE ||
	    started == CHILD_COUNT)
		link_pair(&p->children[CHILD_CAPTURE], spo,
		    MSG_PARENT_CAPTURE_CHANNEL, MSG_PARENT_SPOOLER_CHANNEL);
	/* A new capture has no rules yet: it cannot read them itself. */
	if ((started == CHILD_CAPTURE || started == CHILD_COUNT) &&
	    p->set.milter_scanner)
		rules_send(p);
	if (started == CHILD_SPOOLER || started == CHILD_RELAY ||
	    started == CHILD_COUNT)
		link_pair(&p->children[CHILD_RELAY], spo,
		    MSG_PARENT_RELAY_CHANNEL, MSG_PARENT_REQUEUE_CHANNEL);
}

void
children_send_settings(struct parent *p)
{
	for (int i = 0; i < CHILD_COUNT; i++) {
		struct child *c = &p->children[i];

		if (c->ready && c->chan != -1 &&
		    ipc_send_settings(c->chan, &p->set, sizeof(p->set)) == -1)
			log_warn("sending settings to %s", c->name);
	}
}

static void
describe_death(int status, char *buf, size_t len)
{
	if (WIFSIGNALED(status))
		snprintf(buf, len, "killed by signal %d (%s)%s",
		    WTERMSIG(status), strsignal(WTERMSIG(status)),
		    WTERMSIG(status) == SIGSYS ?
		    ": a forbidden system call (seccomp; the kernel audit log "
		    "names it, type=1326, or set Milter Seccomp Debug = yes to "
		    "have it logged)" : "");
	else if (WEXITSTATUS(status) == CHILD_EXIT_PROTOCOL)
		snprintf(buf, len, "exited with status %d: it refused our IPC "
		    "protocol version %u (a binary from another msmilter "
		    "version; its log line above names both; restart msmilter "
		    "after an upgrade)", WEXITSTATUS(status), IPC_VERSION);
	else
		snprintf(buf, len, "exited with status %d",
		    WEXITSTATUS(status));
}

void
child_reaped(struct parent *p, pid_t pid, int status)
{
	for (int i = 0; i < CHILD_COUNT; i++) {
		struct child	*c = &p->children[i];
		char		 why[256];
		time_t		 now = time(NULL);
		unsigned	 delay;

		if (c->pid != pid)
			continue;
		describe_death(status, why, sizeof(why));
		audit_child_exit(c->name, status);
		if (c->stopping && !c->restart_now)
			log_info("%s (pid %d) %s", c->name, (int)pid, why);
		else if (!c->restart_now)
			log_warnx("%s (pid %d) %s", c->name, (int)pid, why);
		if (c->chan != -1)
			close(c->chan);
		c->chan = -1;
		c->pid = 0;
		c->ready = 0;
		if (p->terminating)
			return;
		if (c->restart_now) {
			c->failures = 0;
			c->restart_at = now;
			return;
		}
		if (now - c->started < QUICK_DEATH_SECONDS)
			c->failures++;
		else
			c->failures = 0;
		delay = c->failures == 0 ? 1 :
		    c->failures >= 6 ? MAX_BACKOFF_SECONDS :
		    (1u << c->failures);
		if (delay > MAX_BACKOFF_SECONDS)
			delay = MAX_BACKOFF_SECONDS;
		c->restart_at = now + delay;
		log_notice("restarting %s in %u s", c->name, delay);
		return;
	}
}

void
children_restart_due(struct parent *p, time_t now)
{
	for (int i = 0; i < CHILD_COUNT; i++) {
		struct child *c = &p->children[i];

		if (c->pid != 0 || c->restart_at == 0 || c->restart_at > now)
			continue;
		if (child_start(p, c) == 0)
			children_link(p, (enum child_id)i);
		else if (c->pid == 0) {
			c->failures++;
			c->restart_at = now + (c->failures >= 6 ?
			    MAX_BACKOFF_SECONDS : (1u << c->failures));
		}
	}
}
