/*
 * msmilter-relay: start-up as the privilege-drop checklist (settings from
 * the parent, Run As User, open milterout and the quarantine directory,
 * inotify), then a loop that waits for new files, due retries, the
 * periodic rescan and the parent, and delivers what is due.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "child.h"
#include "landlock.h"
#include "log.h"
#include "relay.h"
#include "sandbox.h"
#include "seccomp.h"

/*
 * The quarantine directory, which sits in MailScanner's directory: only
 * our own directory, not group or world writable, and not reached through
 * a link planted at its name (the parent refuses those too).  -1 with
 * why set when it is not fit.
 */
static int
open_quarantine(const struct relay *r, char *why, size_t len)
{
	struct stat	 st, at;
	int		 fd;

	if ((fd = open(r->badpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		snprintf(why, len, "%s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || fstatat(AT_FDCWD, r->badpath, &at,
	    AT_SYMLINK_NOFOLLOW) == -1)
		snprintf(why, len, "%s", strerror(errno));
	else if (at.st_ino != st.st_ino || at.st_dev != st.st_dev)
		snprintf(why, len, "a symbolic link or replaced");
	else if (st.st_uid != r->uid)
		snprintf(why, len, "owned by uid %ju, not %ju",
		    (uintmax_t)st.st_uid, (uintmax_t)r->uid);
	else if (st.st_mode & (S_IWGRP | S_IWOTH))
		snprintf(why, len, "group or world writable");
	else
		return fd;
	close(fd);
	return -1;
}

static void
open_dirs(struct relay *r)
{
	char	 why[128];

	if (r->outdir == -1 && (r->outdir = open(r->set.outgoing_queue_dir,
	    O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1) {
		/*
		 * It did not exist when Landlock confined us, so we have no
		 * rule for it: only a fresh relay can be confined to it.
		 */
		if (errno == EACCES && r->confined_without_outdir) {
			log_notice("Outgoing Queue Dir %s exists now; "
			    "restarting so that Landlock confines the relay "
			    "to it", r->set.outgoing_queue_dir);
			exit(0);
		}
		log_warn("cannot open Outgoing Queue Dir %s",
		    r->set.outgoing_queue_dir);
	}
	/* The parent created it for us at start-up. */
	config_quarantine_dir(&r->set, r->badpath, sizeof(r->badpath));
	if (r->badfd == -1 && (r->badfd = open_quarantine(r, why,
	    sizeof(why))) == -1 && !r->warned_bad) {
		log_warnx("cannot use %s (%s): unreadable files stay in "
		    "milterout", r->badpath, why);
		r->warned_bad = 1;
	}
}

static void
watch(struct relay *r)
{
	r->inotify = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (r->inotify == -1 || inotify_add_watch(r->inotify,
	    r->set.outgoing_queue_dir, IN_MOVED_TO | IN_CLOSE_WRITE) == -1)
		log_warn("inotify on %s (the periodic rescan still finds new "
		    "files)", r->set.outgoing_queue_dir);
}

static void
read_inotify(struct relay *r, time_t now)
{
	char	 buf[8192] __attribute__((aligned(8)));
	ssize_t	 n;

	while ((n = read(r->inotify, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			struct inotify_event *ev = (struct inotify_event *)p;

			if (ev->mask & IN_Q_OVERFLOW)
				r->next_scan = now;
			else if (ev->len > 0)
				queue_add(r, ev->name, now);
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void
parent_record(struct relay *r)
{
	static unsigned char	 buf[sizeof(struct ipc_settings_hdr) +
				    sizeof(struct msm_settings)];
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	struct msm_settings	 next;
	int			 n = ipc_recv(IPC_PARENT_FD, &m);

	if (n <= 0)
		fatalx("parent channel closed or broken");
	if (m.hdr.type == MSG_PARENT_REQUEUE_CHANNEL && m.fd != -1 &&
	    m.hdr.len == 0 &&
	    ipc_is_socket(m.fd, SOCK_SEQPACKET)) {
		pthread_mutex_lock(&r->spooler_lock);
		if (r->spooler != -1)
			close(r->spooler);
		r->spooler = m.fd;
		pthread_mutex_unlock(&r->spooler_lock);
	} else if (m.hdr.type == MSG_PARENT_STOP && m.hdr.len == 0)
		r->terminating = 1;
	else if (m.hdr.type == MSG_PARENT_SETTINGS &&
	    child_take_settings(m.data, m.hdr.len, &next) == 0)
		;	/* the workers read r->set: a change restarts us */
	else
		fatalx("unexpected %s from the parent",
		    ipc_type_name(m.hdr.type));
}

static void
relay_loop(struct relay *r)
{
	while (!r->terminating) {
		struct pollfd	 pfd[3] = {
			{ IPC_PARENT_FD, POLLIN, 0 },
			{ r->inotify, POLLIN, 0 },
			{ r->wake, POLLIN, 0 },
		};
		time_t		 now = time(NULL);

		if (poll(pfd, 3, relay_status_timeout(queue_next_timeout(r,
		    now))) == -1 &&
		    errno != EINTR)
			fatal("poll");
		now = time(NULL);
		if (pfd[0].revents)
			parent_record(r);
		if (pfd[1].revents)
			read_inotify(r, now);
		if (pfd[2].revents)
			queue_collect(r, now);
		if (now >= r->next_scan) {
			open_dirs(r);
			if (r->outdir != -1)
				queue_scan(r);
			r->next_scan = now + r->set.relay_scan_interval;
		}
		if (r->outdir != -1)
			queue_run(r, now);
		relay_status_report(r, now);
	}
	/* Let deliveries under way finish: a file is never left half done. */
	workers_stop(r);
}

/*
 * milterout: read, lock (fcntl locks need it open for writing), unlink,
 * keep progress files, and move entries out to the quarantine directory,
 * where they may land.  The network: the MTA's TCP port, or the QMQP
 * unix socket.
 */
static void
confine_by_path(struct relay *r)
{
	struct landlock_policy	 p = { .name = "relay", .ndirs = 2 };
	int			 qmqp_unix = r->set.delivery_method ==
				    MSM_DELIVER_QMQP &&
				    r->set.socket_type == MSM_SOCKET_UNIX;

	/*
	 * Landlock refuses a move that would give the moved entry rights it
	 * did not have, so milterout grants what the quarantine does (a
	 * directory or FIFO planted there is moved out whole).  Creating
	 * entries in milterout is what DESIGN.md allows the relay anyway.
	 */
	const uint64_t	 take_in = LL_MAKE_REG | LL_MAKE_FIFO | LL_MAKE_SOCK |
			    LL_MAKE_SYM | LL_MAKE_DIR | LL_REFER;

	/*
	 * Write: the progress files (relay/progress.c), and fcntl locks
	 * with Lock Type = posix.
	 */
	p.dirs[0].path = r->set.outgoing_queue_dir;
	p.dirs[0].access = LL_READ_FILE | LL_READ_DIR | LL_REMOVE_FILE |
	    LL_REMOVE_DIR | take_in | LL_WRITE_FILE;
	p.dirs[1].path = r->badpath;
	p.dirs[1].access = take_in;
	p.tcp_port = qmqp_unix ? 0 : r->set.relay_port;
	p.unix_socket = qmqp_unix ? r->set.socket_dir : NULL;
	if (sandbox_landlock(&p, r->set.milter_landlock) > 0)
		r->confined_without_outdir = p.dirs[0].missing;
}

int
main(void)
{
	static struct relay	 r;

	child_init("relay");
	child_get_settings(&r.set);
	if (sodium_init() == -1)
		fatalx("sodium_init failed");
	if (gethostname(r.hostname, sizeof(r.hostname) - 1) == -1)
		snprintf(r.hostname, sizeof(r.hostname), "localhost");
	child_become_run_as(&r.set);
	r.uid = geteuid();	/* MailScanner writes milterout as this user */
	signal(SIGPIPE, SIG_IGN);

	r.outdir = r.badfd = r.spooler = -1;
	pending_init(&r);
	open_dirs(&r);
	watch(&r);
	/* Before the first file or reply is read. */
	confine_by_path(&r);
	sandbox_seccomp(SANDBOX_RELAY, r.set.milter_seccomp_debug);
	log_info("ready, delivering %s by %s",
	    r.set.outgoing_queue_dir,
	    r.set.delivery_method == MSM_DELIVER_QMQP ? "QMQP" : "SMTP");
	if (workers_start(&r) == -1)
		fatal("starting the delivery threads");
	child_ready();
	relay_loop(&r);
	log_info("stopping");
	return 0;
}
