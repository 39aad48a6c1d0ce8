/*
 * Starting, watching and restarting the children, without ever waiting
 * on one of them: a child's set-up runs while the event loop keeps
 * serving the others' channels and signals.  As Postfix's master does, a
 * child that had become ready is restarted at once when it dies (it
 * served: killing it must cost as little mail as possible); only one that
 * dies, or does not report ready within SETUP_TIMEOUT_MS, before it ever
 * became ready is throttled, 1, 2, 4 ... 60 s, so a child that cannot
 * start never spins.
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
#include "metrics.h"
#include "parent.h"
#include "sandbox.h"

#define SETUP_TIMEOUT_MS	30000
#define MAX_BACKOFF_SECONDS	60
/* A record to a child that does not read it: it is stuck or broken. */
#define SEND_TIMEOUT_SECONDS	2

static const char *const child_names[CHILD_COUNT] = {
	[CHILD_SPOOLER] = "spooler",
	[CHILD_CAPTURE] = "capture",
	[CHILD_RELAY] = "relay",
};

/*
 * The set-up bound.  Test builds (make testhooks) take a shorter one from
 * MSM_TEST_SETUP_TIMEOUT_MS, so that a test can wait it out.
 */
static long long
setup_timeout_ms(void)
{
#ifdef MSM_TESTHOOKS
	const char *v = getenv("MSM_TEST_SETUP_TIMEOUT_MS");

	if (v != NULL && atoi(v) > 0)
		return atoi(v);
#endif
	return SETUP_TIMEOUT_MS;
}

long long
parent_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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
 * A log line from a child: we put its name and pid in front, strip control
 * characters again, and never let it speak louder than LOG_CRIT (rsyslog
 * writes emergencies to every terminal).
 */
static int
child_log(struct child *c, struct ipc_msg *m)
{
	struct ipc_log	 lg;
	char		*text = (char *)m->data + sizeof(lg);
	size_t		 tlen;

	if (m->hdr.len <= sizeof(lg))
		return -1;
	memcpy(&lg, m->data, sizeof(lg));
	tlen = m->hdr.len - sizeof(lg);
	if (text[tlen - 1] != '\0' || lg.priority < LOG_EMERG ||
	    lg.priority > LOG_DEBUG)
		return -1;
	for (char *p = text; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	/* Its name and pid are ours to say: "msmilter/relay[PID]". */
	log_emit_child(lg.priority < LOG_CRIT ? LOG_CRIT : lg.priority,
	    c->name, (long)c->pid, text);
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

/* Landlock as the child applied it; once, before READY. */
static int
child_confined_record(struct child *c, struct ipc_msg *m)
{
	struct ipc_confined conf;

	if (c->ready || c->confined || ipc_expect_size(m, sizeof(conf)) != 0)
		return -1;
	memcpy(&conf, m->data, sizeof(conf));
	if (conf.landlock_abi < 0 || conf.landlock_abi > 255 ||
	    (conf.flags & ~IPC_CONFINED_LL_TCP) != 0)
		return -1;
	c->confined = 1;
	c->landlock_abi = conf.landlock_abi;
	c->landlock_tcp = (conf.flags & IPC_CONFINED_LL_TCP) != 0;
	return 0;
}

/* The relay's queue for msmilter -s; any time after READY. */
static int
relay_status_record(struct child *c, struct ipc_msg *m)
{
	struct ipc_relay_status st;

	if (!c->ready || ipc_expect_size(m, sizeof(st)) != 0)
		return -1;
	memcpy(&st, m->data, sizeof(st));
	if (st.deferred > st.files || st.next_retry < 0 ||
	    st.mta_down_until < 0)
		return -1;
	c->status = st;
	c->has_status = 1;
	return 0;
}

/* Capture's end of message to COMMITTED, for msmilter_commit_seconds. */
static int
commit_time_record(struct child *c, struct ipc_msg *m)
{
	struct ipc_commit_time t;

	if (!c->ready || ipc_expect_size(m, sizeof(t)) != 0)
		return -1;
	memcpy(&t, m->data, sizeof(t));
	metrics_commit_time(t.usec);
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
	{ CHILD_SPOOLER, MSG_CHILD_CONFINED, child_confined_record },
	{ CHILD_CAPTURE, MSG_CHILD_CONFINED, child_confined_record },
	{ CHILD_RELAY, MSG_CHILD_CONFINED, child_confined_record },
	{ CHILD_RELAY, MSG_RELAY_STATUS, relay_status_record },
	{ CHILD_CAPTURE, MSG_CAPTURE_COMMIT_TIME, commit_time_record },
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

/*
 * Set-up done: the child is sandboxed and serving.  It gets its channels
 * to the spooler (and capture its rules) now, not before.
 */
static void
child_up(struct parent *p, struct child *c)
{
	c->failures = 0;
	c->ready_by = 0;
	log_info("%s started, pid %d, ready in %lld ms", c->name, (int)c->pid,
	    parent_now() - c->started);
	children_link(p, (enum child_id)(c - p->children));
}

void
child_read(struct parent *p, struct child *c)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];	/* audit records */
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	int			 was_ready = c->ready;
	int			 r = ipc_recv(c->chan, &m);

	if (r == 1 && child_record(p, c, &m) == 0) {
		if (!was_ready && c->ready)
			child_up(p, c);
		return;
	}
	if (r == -1 && errno == EAGAIN)
		return;
	/* A child that exits with records of ours unread resets. */
	if (r == 1 || (r == -1 && errno != ECONNRESET)) {
		log_warnx("%s (pid %d) sent a bad record (%s); killing it",
		    c->name, (int)c->pid, r == 1 ?
		    ipc_type_name(m.hdr.type) : strerror(errno));
		child_stop(c, SIGKILL);
	}
	/*
	 * End of file: wait for SIGCHLD to tell us why.  A child that hangs
	 * up during set-up is exiting on its own (it refused our protocol
	 * version, say): its own exit status is the one to log.
	 */
	close(c->chan);
	c->chan = -1;
}

/* fork+exec, hand over the settings; its READY comes to the event loop. */
int
child_start(struct parent *p, struct child *c)
{
	struct timeval	 tv = { SEND_TIMEOUT_SECONDS, 0 };
	int		 sv[2];
	pid_t		 pid;

	c->restart_at = 0;
	c->ready = c->stopping = c->restart_now = c->setup_expired = 0;
	c->confined = c->landlock_abi = c->landlock_tcp = c->has_status = 0;
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
	c->started = parent_now();
	c->ready_by = c->started + setup_timeout_ms();
	/* The parent must never block for long on a child that does not read. */
	if (setsockopt(c->chan, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) == -1)
		log_warn("SO_SNDTIMEO on the channel to %s", c->name);
	if (ipc_send_settings(c->chan, &p->set, sizeof(p->set)) == -1) {
		/* Reaped as a child that never became ready: throttled. */
		log_warn("sending settings to %s (pid %d); killing it",
		    c->name, (int)pid);
		kill(pid, SIGKILL);
	}
	log_debug("%s: pid %d setting up", c->name, (int)pid);
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

int
children_ready(const struct parent *p)
{
	int n = 0;

	for (int i = 0; i < CHILD_COUNT; i++)
		n += p->children[i].pid > 0 && p->children[i].ready;
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
describe_death(const struct child *c, int status, char *buf, size_t len)
{
	if (c->setup_expired)
		snprintf(buf, len, "did not finish set-up in %lld s",
		    setup_timeout_ms() / 1000);
	else if (WIFSIGNALED(status))
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

/* 1, 2, 4 ... MAX_BACKOFF_SECONDS after the nth death before ready. */
static unsigned
throttle_seconds(unsigned failures)
{
	if (failures == 0)
		return 0;
	if (failures > 6)
		return MAX_BACKOFF_SECONDS;
	return 1u << (failures - 1) < MAX_BACKOFF_SECONDS ?
	    1u << (failures - 1) : MAX_BACKOFF_SECONDS;
}

/* When to start a child again that has just died. */
static void
schedule_restart(struct child *c, int had_served, long long now)
{
	unsigned delay;

	if (c->restart_now || had_served) {
		/* It served: Postfix's master restarts such a one at once. */
		c->failures = 0;
		c->restart_at = now;
		if (!c->restart_now)
			log_notice("restarting %s at once", c->name);
		return;
	}
	delay = throttle_seconds(++c->failures);
	c->restart_at = now + (long long)delay * 1000;
	log_notice("restarting %s in %u s", c->name, delay);
}

void
child_reaped(struct parent *p, pid_t pid, int status)
{
	for (int i = 0; i < CHILD_COUNT; i++) {
		struct child	*c = &p->children[i];
		char		 why[256];
		int		 had_served = c->ready;

		if (c->pid != pid)
			continue;
		describe_death(c, status, why, sizeof(why));
		audit_child_exit(c->name, status);
		if (!had_served && !c->restart_now)
			log_warnx("%s (pid %d) %s; it failed to start",
			    c->name, (int)pid, why);
		else if (c->stopping && !c->restart_now)
			log_info("%s (pid %d) %s", c->name, (int)pid, why);
		else if (!c->restart_now)
			log_warnx("%s (pid %d) %s", c->name, (int)pid, why);
		if (c->chan != -1)
			close(c->chan);
		c->chan = -1;
		c->pid = 0;
		c->ready = 0;
		c->ready_by = 0;
		c->has_status = 0;	/* its queue is the next one's to say */
		if (p->terminating)
			return;
		/* At start-up a child that cannot start stops us: fatal. */
		if (p->starting && !had_served && !c->restart_now)
			fatalx("cannot start %s (%s): %s", c->name, c->path,
			    why);
		schedule_restart(c, had_served, parent_now());
		return;
	}
}

/* Set-up deadlines and restarts that are due. */
void
children_timers(struct parent *p, long long now)
{
	for (int i = 0; i < CHILD_COUNT; i++) {
		struct child *c = &p->children[i];

		if (c->pid > 0 && !c->ready && c->ready_by != 0 &&
		    now >= c->ready_by) {
			log_warnx("%s (pid %d) did not finish set-up in %lld "
			    "s; killing it", c->name, (int)c->pid,
			    setup_timeout_ms() / 1000);
			c->setup_expired = 1;
			c->ready_by = 0;
			kill(c->pid, SIGKILL);
		}
		if (p->terminating || c->pid != 0 || c->restart_at == 0 ||
		    c->restart_at > now)
			continue;
		if (child_start(p, c) == -1)
			schedule_restart(c, 0, now);
	}
}

/* The next set-up deadline or restart, 0 when there is none. */
long long
children_next_timer(const struct parent *p)
{
	long long next = 0;

	for (int i = 0; i < CHILD_COUNT; i++) {
		const struct child *c = &p->children[i];
		long long at = c->pid > 0 ? c->ready_by : c->restart_at;

		if (at != 0 && (next == 0 || at < next))
			next = at;
	}
	return next;
}
