/*
 * The control socket (Milter Control Socket) and msmilter -s.  The parent
 * listens on a unix socket, mode 0600 in a root-owned directory; it
 * answers only "status" or "status json" (common/control_req.c), only to
 * uid 0 (SO_PEERCRED; in unprivileged development mode, to its own uid),
 * reads at most CONTROL_REQ_MAX bytes within a short time and then
 * closes.  Nothing a client sends changes anything.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "control_req.h"
#include "log.h"
#include "metrics.h"

#define CONTROL_TIMEOUT_MS	500

static struct {
	const struct parent	*p;
	int			 fd;
	char			 path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	time_t			 started;
} ctl = { .fd = -1 };

static const char *const scan_results[] = { "clean", "virus", "tempfail",
    "oversize" };
static const char *const message_results[] = { "committed", "rejected",
    "tempfailed", "accepted_loopback" };
static const char *const relay_results[] = { "delivered", "deferred",
    "requeued", "quarantined" };
static const char *const queue_names[] = { "milterin", "milterout" };

void
control_start(const struct parent *p)
{
	struct sockaddr_un	 sun;
	struct stat		 st;
	const char		*path = p->set.milter_control_socket;
	char			 dir[sizeof(sun.sun_path)], *slash;
	mode_t			 old;

	ctl.p = p;
	ctl.started = time(NULL);
	if (path[0] == '\0' || strlen(path) >= sizeof(sun.sun_path))
		return;
	snprintf(dir, sizeof(dir), "%s", path);
	if ((slash = strrchr(dir, '/')) != NULL && slash != dir) {
		*slash = '\0';
		if (mkdir(dir, 0755) == -1 && errno != EEXIST)
			log_warn("control socket: mkdir %s", dir);
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			log_warnx("control socket: %s exists and is no socket; "
			    "msmilter -s will not work", path);
			return;
		}
		unlink(path);	/* ours from before: the pid file is locked */
	}
	if ((ctl.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
	    SOCK_CLOEXEC, 0)) == -1) {
		log_warn("control socket");
		return;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, path, strlen(path) + 1);
	old = umask(0177);		/* born 0600 */
	if (bind(ctl.fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chmod(path, 0600) == -1 || listen(ctl.fd, 4) == -1) {
		log_warn("control socket %s", path);
		close(ctl.fd);
		ctl.fd = -1;
	} else
		snprintf(ctl.path, sizeof(ctl.path), "%s", path);
	umask(old);
}

int
control_fd(void)
{
	return ctl.fd;
}

/*
 * A child's seccomp mode from /proc/PID/status (0 none, 1 strict, 2
 * filter), -1 when it cannot be read.  The kernel says it: the child's
 * word is not needed.
 */
static int
seccomp_mode(pid_t pid)
{
	char	 path[64], buf[4096], *at;
	ssize_t	 n;
	int	 fd, mode;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if ((at = strstr(buf, "\nSeccomp:")) == NULL ||
	    sscanf(at + 9, "%d", &mode) != 1)
		return -1;
	return mode;
}

static const char *
seccomp_word(int mode)
{
	switch (mode) {
	case 0:		return "NONE";
	case 1:		return "strict";
	case 2:		return "filter";
	default:	return "unknown";
	}
}

/* ", seccomp filter, landlock ABI 7 (TCP too)" for a running child. */
static void
confinement_text(FILE *f, const struct child *ch)
{
	fprintf(f, ", seccomp %s", seccomp_word(seccomp_mode(ch->pid)));
	if (!ch->confined)
		fputs(", landlock unknown", f);
	else if (ch->landlock_abi == 0)
		fputs(", landlock NONE", f);
	else
		fprintf(f, ", landlock ABI %d%s", ch->landlock_abi,
		    ch->landlock_tcp ? " (TCP too)" : "");
}

/* Relay: the files backing off and the earliest retry. */
static void
relay_queue_text(FILE *f, const struct child *relay, time_t now)
{
	const struct ipc_relay_status *st = &relay->status;

	if (!relay->has_status) {
		fputs("relay queue: unknown\n", f);
		return;
	}
	fprintf(f, "relay queue: %u files, %u deferred", st->files,
	    st->deferred);
	if (st->next_retry != 0)
		fprintf(f, ", next retry in %lld s", (long long)
		    (st->next_retry > now ? st->next_retry - now : 0));
	if (st->mta_down_until > now)
		fprintf(f, ", MTA unreachable: no delivery for %lld s",
		    (long long)(st->mta_down_until - now));
	fputc('\n', f);
}

/* "relay_queue":{...}, retry times as epoch seconds and seconds from now. */
static void
relay_queue_json(FILE *f, const struct child *relay, time_t now)
{
	const struct ipc_relay_status *st = &relay->status;

	if (!relay->has_status) {
		fputs("\"relay_queue\":null", f);
		return;
	}
	fprintf(f, "\"relay_queue\":{\"files\":%u,\"deferred\":%u,",
	    st->files, st->deferred);
	if (st->next_retry != 0)
		fprintf(f, "\"next_retry\":%lld,\"next_retry_in\":%lld,",
		    (long long)st->next_retry, (long long)
		    (st->next_retry > now ? st->next_retry - now : 0));
	else
		fputs("\"next_retry\":null,\"next_retry_in\":null,", f);
	if (st->mta_down_until > now)
		fprintf(f, "\"mta_down_until\":%lld}",
		    (long long)st->mta_down_until);
	else
		fputs("\"mta_down_until\":null}", f);
}

/* A bucket bound as "<= 2.5 ms"; past the last one, "> 60 s". */
static void
bound_text(FILE *f, uint64_t us)
{
	if (us == UINT64_MAX)
		fputs("> 60 s", f);
	else
		fprintf(f, "<= %g ms", (double)us / 1000.0);
}

/*
 * Capture's end of message to COMMITTED (msmilter_commit_seconds): what
 * durability adds to every DISCARD, as the histogram's buckets bound it.
 */
static void
commit_text(FILE *f, const struct metrics_counts *c)
{
	/* Capture reports the times only for the metrics file. */
	if (ctl.p->set.milter_metrics_file[0] == '\0') {
		fputs("commit: not measured (no Milter Metrics File)\n", f);
		return;
	}
	if (c->commit_count == 0) {
		fputs("commit: none yet\n", f);
		return;
	}
	fprintf(f, "commit: %" PRIu64 " messages, mean %.1f ms, p50 ",
	    c->commit_count, (double)c->commit_sum_us / 1000.0 /
	    (double)c->commit_count);
	bound_text(f, metrics_commit_quantile(c, 0.5));
	fputs(", p99 ", f);
	bound_text(f, metrics_commit_quantile(c, 0.99));
	fputs(" (end of message to COMMITTED)\n", f);
}

/* The same in microseconds; null where there is no bound. */
static void
commit_json(FILE *f, const struct metrics_counts *c)
{
	static const double qs[] = { 0.5, 0.99 };
	static const char *const names[] = { "p50_le_us", "p99_le_us" };

	if (ctl.p->set.milter_metrics_file[0] == '\0') {
		fputs("\"commit\":null,", f);
		return;
	}
	fprintf(f, "\"commit\":{\"count\":%" PRIu64 ",\"sum_us\":%" PRIu64,
	    c->commit_count, c->commit_sum_us);
	for (size_t i = 0; i < 2; i++) {
		uint64_t us = metrics_commit_quantile(c, qs[i]);

		if (us == 0 || us == UINT64_MAX)
			fprintf(f, ",\"%s\":null", names[i]);
		else
			fprintf(f, ",\"%s\":%" PRIu64, names[i], us);
	}
	fputs("},", f);
}

static void
status_text(FILE *f, const struct metrics_counts *c, time_t now)
{
	const struct parent *p = ctl.p;

	fprintf(f, "msmilter pid %d up %lld s\n", (int)getpid(),
	    (long long)(now - ctl.started));
	for (int i = 0; i < CHILD_COUNT; i++) {
		const struct child *ch = &p->children[i];

		if (ch->pid > 0) {
			fprintf(f, "%-8s pid %d up %lld s restarts %" PRIu64
			    "%s", ch->name, (int)ch->pid,
			    (long long)(now - ch->started), c->restarts[i],
			    ch->ready ? "" : " (starting)");
			confinement_text(f, ch);
			fputc('\n', f);
		} else
			fprintf(f, "%-8s not running (restarts %" PRIu64 ")\n",
			    ch->name, c->restarts[i]);
	}
	fputs("messages:", f);
	for (int i = 0; i < 4; i++)
		fprintf(f, " %s %" PRIu64, message_results[i], c->messages[i]);
	fputs("\nrelay:", f);
	for (int i = 0; i < 4; i++)
		fprintf(f, " %s %" PRIu64, relay_results[i], c->relay[i]);
	fputc('\n', f);
	if (p->set.milter_full_scanner) {
		fputs("scan:", f);
		for (int i = 0; i < 4; i++)
			fprintf(f, " %s %" PRIu64, scan_results[i], c->scan[i]);
		fputc('\n', f);
	}
	commit_text(f, c);
	relay_queue_text(f, &p->children[CHILD_RELAY], now);
	for (int i = 0; i < 2; i++)
		if (c->queue_files[i] >= 0)
			fprintf(f, "%s: %ld files, oldest %ld s\n",
			    queue_names[i], c->queue_files[i],
			    c->queue_oldest[i]);
		else
			fprintf(f, "%s: unknown\n", queue_names[i]);
}

static void
status_json(FILE *f, const struct metrics_counts *c, time_t now)
{
	const struct parent *p = ctl.p;

	fprintf(f, "{\"pid\":%d,\"uptime\":%lld,\"children\":[",
	    (int)getpid(), (long long)(now - ctl.started));
	for (int i = 0; i < CHILD_COUNT; i++) {
		const struct child *ch = &p->children[i];

		int sc = ch->pid > 0 ? seccomp_mode(ch->pid) : -1;

		fprintf(f, "%s{\"name\":\"%s\",\"pid\":%d,\"running\":%s,"
		    "\"ready\":%s,\"uptime\":%lld,\"restarts\":%" PRIu64,
		    i ? "," : "", ch->name, (int)ch->pid,
		    ch->pid > 0 ? "true" : "false",
		    ch->ready ? "true" : "false",
		    ch->pid > 0 ? (long long)(now - ch->started) : 0LL,
		    c->restarts[i]);
		/* null: not known (not running, or not reported yet) */
		if (sc >= 0)
			fprintf(f, ",\"seccomp\":%d", sc);
		else
			fputs(",\"seccomp\":null", f);
		if (ch->pid > 0 && ch->confined)
			fprintf(f, ",\"landlock_abi\":%d,\"landlock_tcp\":%s}",
			    ch->landlock_abi, ch->landlock_tcp ? "true" :
			    "false");
		else
			fputs(",\"landlock_abi\":null,\"landlock_tcp\":null}",
			    f);
	}
	fputs("],\"messages\":{", f);
	for (int i = 0; i < 4; i++)
		fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "",
		    message_results[i], c->messages[i]);
	fputs("},\"relay\":{", f);
	for (int i = 0; i < 4; i++)
		fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "", relay_results[i],
		    c->relay[i]);
	fputs("},", f);
	/* Full Milter Scanner mode only: clamd's verdicts. */
	if (p->set.milter_full_scanner) {
		fputs("\"scan\":{", f);
		for (int i = 0; i < 4; i++)
			fprintf(f, "%s\"%s\":%" PRIu64, i ? "," : "",
			    scan_results[i], c->scan[i]);
		fputs("},", f);
	}
	commit_json(f, c);
	relay_queue_json(f, &p->children[CHILD_RELAY], now);
	fputs(",\"queues\":{", f);
	for (int i = 0; i < 2; i++)
		if (c->queue_files[i] >= 0)
			fprintf(f, "%s\"%s\":{\"files\":%ld,"
			    "\"oldest_seconds\":%ld}", i ? "," : "",
			    queue_names[i], c->queue_files[i],
			    c->queue_oldest[i]);
		else
			fprintf(f, "%s\"%s\":{\"files\":null,"
			    "\"oldest_seconds\":null}", i ? "," : "",
			    queue_names[i]);
	fputs("}}\n", f);
}

/* Write all of buf within the time limit. */
static void
send_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		struct pollfd pfd = { fd, POLLOUT, 0 };
		ssize_t n;

		if (poll(&pfd, 1, CONTROL_TIMEOUT_MS) != 1)
			return;
		if ((n = write(fd, buf, len)) == -1) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return;
		}
		buf += n;
		len -= (size_t)n;
	}
}

static void
serve(int fd)
{
	struct ucred		 cred;
	socklen_t		 cl = sizeof(cred);
	char			 req[CONTROL_REQ_MAX];
	size_t			 len = 0;
	enum control_req	 r = CONTROL_REQ_MORE;
	uid_t			 allowed = geteuid() == 0 ? 0 : geteuid();

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == -1 ||
	    cred.uid != allowed) {
		log_warnx("control socket: refused a client (uid %d)",
		    cl == sizeof(cred) ? (int)cred.uid : -1);
		return;
	}
	while (r == CONTROL_REQ_MORE) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t n;

		if (poll(&pfd, 1, CONTROL_TIMEOUT_MS) != 1)
			return;
		n = read(fd, req + len, sizeof(req) - len);
		if (n == -1 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n <= 0)
			return;
		len += (size_t)n;
		r = control_request(req, len);
	}
	if (r == CONTROL_REQ_BAD) {
		static const char no[] = "error: only \"status\" or "
		    "\"status json\"\n";

		send_all(fd, no, sizeof(no) - 1);
		return;
	}
	{
		struct metrics_counts	 c;
		char			*buf = NULL;
		size_t			 blen = 0;
		FILE			*f = open_memstream(&buf, &blen);
		time_t			 now = time(NULL);

		if (f == NULL)
			return;
		metrics_snapshot(&c);
		if (r == CONTROL_REQ_STATUS_JSON)
			status_json(f, &c, now);
		else
			status_text(f, &c, now);
		if (fclose(f) == 0)
			send_all(fd, buf, blen);
		free(buf);
	}
}

void
control_handle(void)
{
	int fd;

	/* One client at a time, a few per wake-up: status is cheap. */
	for (int i = 0; i < 4; i++) {
		if ((fd = accept4(ctl.fd, NULL, NULL, SOCK_NONBLOCK |
		    SOCK_CLOEXEC)) == -1)
			return;
		serve(fd);
		close(fd);
	}
}

void
control_stop(void)
{
	if (ctl.fd != -1) {
		close(ctl.fd);
		unlink(ctl.path);
	}
	ctl.fd = -1;
}

int
control_client(const struct msm_settings *s, int json)
{
	struct sockaddr_un	 sun;
	const char		*path = s->milter_control_socket;
	const char		*req = json ? "status json\n" : "status\n";
	char			 buf[4096];
	size_t			 total = 0;
	ssize_t			 n;
	int			 fd;

	if (path[0] == '\0') {
		fprintf(stderr, "msmilter: Milter Control Socket is empty: no "
		    "status to ask for\n");
		return 1;
	}
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "msmilter: %s: path too long\n", path);
		return 1;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		fprintf(stderr, "msmilter: %s: %s (is msmilter running? "
		    "status is for root only)\n", path, strerror(errno));
		if (fd != -1)
			close(fd);
		return 1;
	}
	/* A refused client may find the socket closed: no SIGPIPE. */
	if (send(fd, req, strlen(req), MSG_NOSIGNAL) != (ssize_t)strlen(req) &&
	    errno != EPIPE && errno != ECONNRESET) {
		fprintf(stderr, "msmilter: %s: %s\n", path, strerror(errno));
		close(fd);
		return 1;
	}
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		fwrite(buf, 1, (size_t)n, stdout);
		total += (size_t)n;
	}
	close(fd);
	if (total == 0) {
		fprintf(stderr, "msmilter: %s: no answer (status is for root "
		    "only)\n", path);
		return 1;
	}
	return fflush(stdout) == EOF || n < 0 ? 1 : 0;
}
