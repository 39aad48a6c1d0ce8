/*
 * msmilter-capture: speaks milter to Postfix.  Start-up is the privilege
 * drop checklist: take settings from the parent, open the listening socket,
 * load time zone data, chroot into an empty directory, become the milter
 * user, load the seccomp filter, tell the parent we are ready, then hand
 * over to libmilter.  After that it never opens a file; the spooler's
 * channel and new settings reach it from the parent through the
 * parent-reader thread.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <sodium.h>

#include "capture.h"
#include "child.h"
#include "landlock.h"
#include "log.h"
#include "sandbox.h"
#include "seccomp.h"

#define DRAIN_SECONDS	30
/*
 * How long a session at DATA waits for the parent to hand us a new
 * spooler when the one it reached has died: a restart takes milliseconds,
 * and a short wait turns it into a delay instead of a 451.
 */
#define SPOOLER_WAIT_MS	2000

struct capture capture = { .lock = PTHREAD_MUTEX_INITIALIZER,
    .control_new = PTHREAD_COND_INITIALIZER,
    .rules_lock = PTHREAD_RWLOCK_INITIALIZER, .control = -1 };
static pthread_t main_thread;

static void
on_wakeup(int sig)
{
	(void)sig;	/* only here to make select() return EINTR */
}

int
capture_transaction(int delta)
{
	int ok = 1;

	pthread_mutex_lock(&capture.lock);
	if (delta > 0 && capture.draining)
		ok = 0;
	else
		capture.transactions += delta;
	pthread_mutex_unlock(&capture.lock);
	return ok;
}

/*
 * The control channel to the spooler, duplicated so that no send happens
 * under the lock every libmilter thread needs; -1 when there is none.
 * With after_gen set, wait up to SPOOLER_WAIT_MS for a newer one than
 * that generation (the one we tried is dead; the parent is restarting
 * the spooler).
 */
static int
control_channel(unsigned *gen, const unsigned *after_gen, time_t *timeout)
{
	struct timespec	 until;
	int		 control;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += SPOOLER_WAIT_MS / 1000;
	until.tv_nsec += (SPOOLER_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&capture.lock);
	while (after_gen != NULL && capture.control_gen == *after_gen &&
	    !capture.draining &&
	    pthread_cond_timedwait(&capture.control_new, &capture.lock,
	    &until) == 0)
		;
	control = capture.control == -1 ? -1 :
	    fcntl(capture.control, F_DUPFD_CLOEXEC, 0);
	*gen = capture.control_gen;
	*timeout = (time_t)capture.set.milter_commit_timeout;
	pthread_mutex_unlock(&capture.lock);
	return control;
}

/* Pass the spooler one end of a new session channel; -1 with errno. */
static int
offer_session(int control, time_t timeout_s, int *mine)
{
	struct timeval	 timeout = { timeout_s, 0 };
	int		 sv[2], rc, err;

	if (ipc_pair(sv) == -1) {
		log_warn("socketpair");
		return -1;
	}
	/* A stuck spooler must not hold an SMTP session for ever. */
	setsockopt(control, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	setsockopt(sv[0], SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	rc = ipc_send(control, MSG_CAPTURE_SESSION, NULL, 0, sv[1]);
	err = errno;
	close(sv[1]);
	if (rc == -1) {
		close(sv[0]);
		errno = err;
		return -1;
	}
	*mine = sv[0];
	return 0;
}

/*
 * A new session channel: one end stays with the connection's thread, the
 * other goes to the spooler over the control channel.  A spooler that
 * died (its control channel hung up) is waited for once, briefly.
 */
int
capture_session_channel(unsigned *gen)
{
	time_t	 timeout;
	int	 control, chan = -1;
	unsigned dead;

	control = control_channel(gen, NULL, &timeout);
	if (control != -1 && offer_session(control, timeout, &chan) == 0) {
		close(control);
		return chan;
	}
	if (control != -1 && errno != EPIPE && errno != ECONNRESET) {
		log_warn("passing a session channel to the spooler");
		close(control);
		return -1;
	}
	if (control != -1)
		close(control);
	dead = *gen;
	control = control_channel(gen, &dead, &timeout);
	if (control == -1 || *gen == dead) {
		if (control != -1)
			close(control);
		return -1;
	}
	if (offer_session(control, timeout, &chan) == -1) {
		log_warn("passing a session channel to the new spooler");
		chan = -1;
	}
	close(control);
	return chan;
}

static void
take_peer(int fd)
{
	pthread_mutex_lock(&capture.lock);
	if (capture.control != -1)
		close(capture.control);
	capture.control = fd;
	capture.control_gen++;
	pthread_cond_broadcast(&capture.control_new);
	pthread_mutex_unlock(&capture.lock);
	log_debug("new spooler channel");
}

/*
 * Interrupt libmilter's select() until the stop has gone through:
 * smfi_stop() needs the listener's lock, which select() holds for up to
 * 5 s at a time, and the listener only looks at the stop flag after a
 * select() that returned.
 */
static void *
kicker(void *arg)
{
	volatile int *done = arg;

	while (!*done) {
		pthread_kill(main_thread, SIGUSR1);
		usleep(20000);
	}
	return NULL;
}

/*
 * Stop without losing anything: refuse new transactions (451), let the
 * ones in progress finish within a bound, then stop libmilter.  Stopping
 * libmilter first would freeze the sessions in flight: its worker pool
 * stops serving them once the stop flag is set.
 */
static void
stop_listener(void)
{
	static volatile int	 done;
	pthread_t		 t;
	unsigned		 left = 0;

	pthread_mutex_lock(&capture.lock);
	capture.draining = 1;
	pthread_cond_broadcast(&capture.control_new);
	pthread_mutex_unlock(&capture.lock);
	log_info("stopping: no new transactions");
	for (int i = 0; i < DRAIN_SECONDS * 20; i++) {
		pthread_mutex_lock(&capture.lock);
		left = capture.transactions;
		pthread_mutex_unlock(&capture.lock);
		if (left == 0)
			break;
		if (i == 0)
			log_info("waiting for %u transaction%s to finish", left,
			    left == 1 ? "" : "s");
		usleep(50000);
	}
	if (left != 0)
		log_warnx("%u transaction%s still open after %d s; their "
		    "clients get a temporary failure", left,
		    left == 1 ? "" : "s", DRAIN_SECONDS);
	if (pthread_create(&t, NULL, kicker, (void *)&done) != 0) {
		smfi_stop();	/* slower, but it still stops */
		return;
	}
	smfi_stop();
	done = 1;
	pthread_join(t, NULL);
}

/* Records from the parent after start-up: settings and spooler channels. */
static void *
parent_reader(void *arg)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];	/* settings, rules */
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	struct msm_settings	 s;

	(void)arg;
	for (;;) {
		int r = ipc_recv(IPC_PARENT_FD, &m);

		if (r == 0)
			fatalx("parent went away");
		if (r == -1)
			fatal("parent channel");
		if (m.hdr.type == MSG_PARENT_SPOOLER_CHANNEL && m.fd != -1 &&
		    m.hdr.len == 0 && ipc_is_socket(m.fd, SOCK_SEQPACKET)) {
			take_peer(m.fd);
			continue;
		}
		if (m.hdr.type == MSG_PARENT_RULES &&
		    scanner_piece(m.data, m.hdr.len) == 0)
			continue;
		if (m.hdr.type == MSG_PARENT_STOP && m.hdr.len == 0) {
			stop_listener();
			continue;
		}
		if (m.hdr.type == MSG_PARENT_SETTINGS &&
		    child_take_settings(m.data, m.hdr.len, &s) == 0) {
			pthread_mutex_lock(&capture.lock);
			capture.set = s;
			pthread_mutex_unlock(&capture.lock);
			/* A plain int libmilter reads at accept(). */
			smfi_settimeout((int)s.milter_idle_timeout);
			log_info("settings reloaded");
			continue;
		}
		fatalx("unexpected %s from the parent",
		    ipc_type_name(m.hdr.type));
	}
	return NULL;
}

static void
listen_spec(const struct msm_settings *s, char *buf, size_t len)
{
	if (s->milter_socket[0] != '\0')
		snprintf(buf, len, "unix:%s", s->milter_socket);
	else if (strchr(s->milter_bind, ':') != NULL)
		snprintf(buf, len, "inet6:%u@%s", s->milter_port,
		    s->milter_bind);
	else
		snprintf(buf, len, "inet:%u@%s", s->milter_port, s->milter_bind);
}

/* Owner, group and mode of a unix listening socket, from the config. */
static void
set_socket_access(const struct msm_settings *s)
{
	struct sandbox_creds	 owner;
	char			 err[256];
	const char		*user, *group;

	if (s->milter_socket[0] == '\0')
		return;
	user = s->milter_socket_owner[0] ? s->milter_socket_owner :
	    s->run_as_user;
	group = s->milter_socket_group[0] ? s->milter_socket_group :
	    s->run_as_group;
	/* lchown: a symlink swapped in for the socket is not followed. */
	if (sandbox_privileged()) {
		if (sandbox_lookup(user, group, &owner, err, sizeof(err)) == -1)
			fatalx("Milter Socket Owner/Group: %s", err);
		if (lchown(s->milter_socket, owner.uid, owner.gid) == -1)
			fatal("chown %s", s->milter_socket);
	}
}

static void
open_listener(const struct msm_settings *s)
{
	char	 spec[MSM_PATH_LEN + 16];
	mode_t	 old_umask;

	listen_spec(s, spec, sizeof(spec));
	if (smfi_register(capture_milter) == MI_FAILURE)
		fatalx("smfi_register failed");
	if (smfi_setconn(spec) == MI_FAILURE)
		fatalx("smfi_setconn %s failed", spec);
	if (smfi_setbacklog(128) == MI_FAILURE)
		fatalx("smfi_setbacklog failed");
	/* libmilter's default would keep a silent session for 7210 s. */
	if (smfi_settimeout((int)s->milter_idle_timeout) == MI_FAILURE)
		fatalx("smfi_settimeout failed");
	/*
	 * The socket gets its mode from the umask at bind(): no chmod on a
	 * path afterwards.  A stale socket from a previous run is removed.
	 */
	old_umask = umask(~s->milter_socket_mode & 0777);
	if (smfi_opensocket(true) == MI_FAILURE)
		fatalx("cannot listen on %s (in use, or no permission?)", spec);
	umask(old_umask);
	set_socket_access(s);
	log_info("listening on %s", spec);
}

static void
drop_privileges(const struct msm_settings *s)
{
	struct sandbox_creds	 creds;
	char			 err[512];
	struct stat		 st;
	const char		*user = s->milter_user;

	/* The parent checked the account; it may have gone since. */
	if (sandbox_privileged() &&
	    sandbox_lookup(user, NULL, &creds, err, sizeof(err)) == -1)
		fatalx("Milter User: %s", err);
	if (sandbox_privileged() && creds.uid == 0)
		fatalx("Milter User %s is root: capture must run as an "
		    "unprivileged user of its own", user);
	if (!sandbox_privileged()) {
		memset(&creds, 0, sizeof(creds));
		log_warnx("UNPRIVILEGED MODE: no chroot, no change of user");
	} else {
		/* An empty, root-owned root: nothing to read or write. */
		if (stat(s->milter_chroot, &st) == -1)
			fatal("Milter Chroot %s", s->milter_chroot);
		if (!S_ISDIR(st.st_mode) || st.st_uid != 0 ||
		    (st.st_mode & 022) != 0)
			fatalx("Milter Chroot %s must be a directory owned by "
			    "root and writable by nobody else",
			    s->milter_chroot);
	}
	if (sandbox_enter(&creds, sandbox_privileged() ? s->milter_chroot :
	    NULL, err, sizeof(err)) == -1)
		fatalx("%s", err);
}

/* Chrooted into an empty directory already; Landlock takes the rest. */
static void
confine_by_path(const struct msm_settings *s)
{
	struct landlock_policy p = { .name = "capture" };

	sandbox_landlock(&p, s->milter_landlock);
}

int
main(void)
{
	pthread_t	 reader;
	struct sigaction sa;
	sigset_t	 mask;
	int		 r;

	child_init("capture");
	child_get_settings(&capture.set);
	if (sodium_init() == -1)
		fatalx("sodium_init failed");
	/* Time zone data must be loaded before the chroot hides it. */
	tzset();
	if (gethostname(capture.hostname, sizeof(capture.hostname) - 1) == -1)
		snprintf(capture.hostname, sizeof(capture.hostname), "localhost");
	signal(SIGPIPE, SIG_IGN);

	open_listener(&capture.set);
	drop_privileges(&capture.set);
	/* Before libmilter's threads and any byte from Postfix. */
	confine_by_path(&capture.set);
	sandbox_seccomp(SANDBOX_CAPTURE, 0, capture.set.milter_seccomp_debug);

	/*
	 * libmilter's own signal thread turns SIGTERM into smfi_stop(); that
	 * only works if no other thread can take the signal first.
	 */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	main_thread = pthread_self();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_wakeup;	/* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	if ((r = pthread_create(&reader, NULL, parent_reader, NULL)) != 0 ||
	    (r = capture_idle_reaper()) != 0) {
		errno = r;
		fatal("pthread_create");
	}
	child_ready();

	r = smfi_main();
	log_info("no longer accepting connections (smfi_main returned %d)",
	    r);
	return 0;
}
