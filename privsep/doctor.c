/*
 * msmilter -t as the doctor: after the configuration, the machine (queue
 * directories, chroot, their SELinux labels and AppArmor profiles:
 * doctor_mac.c) and Postfix as postconf reports it (smtpd_milters,
 * milter_default_action, in_flow_delay, the HOLD header check, a relay
 * that loops back into a filtered smtpd, qmqpd_authorized_clients), a
 * try of the relay target, and in Full Milter Scanner mode clamd's PING.  Each finding is one "error: ..." or
 * "warning: ..." line with the fix.
 *
 * Postfix is read only when postconf can be run for the instance; with no
 * --postfix-config, a default instance where no smtpd uses msmilter is
 * only a warning (a host under test, a package check), with
 * --postfix-config it is an error.  Nothing here changes anything.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clamd_reply.h"
#include "doctor.h"
#include "ipc.h"
#include "log.h"
#include "sandbox.h"

#define POSTCONF_MAX	(1024 * 1024)
#define DOCTOR_TIMEOUT_MS 5000

struct doctor {
	const struct msm_settings	*s;
	const char			*pfdir;		/* NULL: default */
	const char			*pfname;	/* for messages */
	int				 errors;
	char				*main;		/* postconf -x output */
	char				*master;	/* postconf -M */
	char				*overrides;	/* postconf -P */
};

static void __attribute__((format(printf, 3, 4)))
say(struct doctor *d, int error, const char *fmt, ...)
{
	char	 buf[2048];
	va_list	 ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (error)
		d->errors++;
	log_warnx("%s: %s", error ? "error" : "warning", buf);
}

/* Run postconf [-c DIR] ARGS; its stdout in a malloc'd string, or NULL. */
static char *
postconf(const struct doctor *d, const char *a1, const char *a2)
{
	char	*argv[8], *buf;
	size_t	 len = 0;
	ssize_t	 n;
	pid_t	 pid;
	int	 pfd[2], status, i = 0;

	argv[i++] = (char *)"postconf";
	if (d->pfdir != NULL) {
		argv[i++] = (char *)"-c";
		argv[i++] = (char *)d->pfdir;
	}
	argv[i++] = (char *)a1;
	if (a2 != NULL)
		argv[i++] = (char *)a2;
	argv[i] = NULL;
	if (pipe2(pfd, O_CLOEXEC) == -1)
		return NULL;
	if ((pid = fork()) == -1) {
		close(pfd[0]);
		close(pfd[1]);
		return NULL;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		if (null != -1) {
			dup2(null, 0);
			dup2(null, 2);
		}
		dup2(pfd[1], 1);
		execvp("postconf", argv);
		execv("/usr/sbin/postconf", argv);
		_exit(127);
	}
	close(pfd[1]);
	if ((buf = malloc(POSTCONF_MAX + 1)) == NULL) {
		close(pfd[0]);
		waitpid(pid, &status, 0);
		return NULL;
	}
	while (len < POSTCONF_MAX &&
	    ((n = read(pfd[0], buf + len, POSTCONF_MAX - len)) > 0 ||
	    (n == -1 && errno == EINTR)))
		if (n > 0)
			len += (size_t)n;
	buf[len] = '\0';
	close(pfd[0]);
	while (waitpid(pid, &status, 0) == -1 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		free(buf);
		return NULL;
	}
	return buf;
}

/* The value of "KEY = value" in postconf output; NULL when absent. */
static int
lookup(const char *text, const char *key, char *out, size_t outlen)
{
	size_t		 klen = strlen(key);
	const char	*p = text, *eol;

	while (p != NULL && *p != '\0') {
		eol = strchr(p, '\n');
		if (strncmp(p, key, klen) == 0 && strncmp(p + klen, " =", 2)
		    == 0) {
			const char *v = p + klen + 2;
			size_t n;

			while (*v == ' ')
				v++;
			n = eol ? (size_t)(eol - v) : strlen(v);
			if (n >= outlen)
				n = outlen - 1;
			memcpy(out, v, n);
			out[n] = '\0';
			return 1;
		}
		p = eol ? eol + 1 : NULL;
	}
	return 0;
}

/* A main.cf parameter, or SERVICE/TYPE's -o override of it. */
static void
param(const struct doctor *d, const char *service, const char *type,
    const char *key, char *out, size_t outlen)
{
	char	 k[1024];

	if (service != NULL && d->overrides != NULL) {
		snprintf(k, sizeof(k), "%s/%s/%s", service, type, key);
		if (lookup(d->overrides, k, out, outlen))
			return;
	}
	if (d->main == NULL || !lookup(d->main, key, out, outlen))
		out[0] = '\0';
}

static int
loopback(const char *addr)
{
	struct in6_addr	 a6;
	struct in_addr	 a4;

	if (strcasecmp(addr, "localhost") == 0)
		return 1;
	if (inet_pton(AF_INET, addr, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	if (inet_pton(AF_INET6, addr, &a6) == 1)
		return IN6_IS_ADDR_LOOPBACK(&a6) || (IN6_IS_ADDR_V4MAPPED(&a6)
		    && a6.s6_addr[12] == 127);
	return 0;
}

static int
same_host(const char *a, const char *b)
{
	if (strcasecmp(a, b) == 0)
		return 1;
	if (loopback(a) && loopback(b))
		return 1;
	return strcmp(a, "0.0.0.0") == 0 || strcmp(a, "::") == 0 ||
	    strcmp(b, "0.0.0.0") == 0 || strcmp(b, "::") == 0;
}

/* Is this milter list entry msmilter (by the settings)? */
static int
is_msmilter(const struct msm_settings *s, const char *m)
{
	const char	*colon;
	char		 host[256];
	size_t		 n;

	if (s->milter_socket[0] != '\0') {
		const char *path = m;
		size_t pl, sl = strlen(s->milter_socket);

		if (strncmp(m, "unix:", 5) == 0 || strncmp(m, "local:", 6) == 0)
			path = strchr(m, ':') + 1;
		if (strcmp(path, s->milter_socket) == 0)
			return 1;
		/* relative to smtpd's chroot (the queue directory) */
		pl = strlen(path);
		return path[0] != '/' && pl > 0 && pl < sl &&
		    strcmp(s->milter_socket + sl - pl, path) == 0 &&
		    s->milter_socket[sl - pl - 1] == '/';
	}
	if (strncmp(m, "inet:", 5) != 0)
		return 0;
	m += 5;
	if ((colon = strrchr(m, ':')) == NULL ||
	    (unsigned)atoi(colon + 1) != s->milter_port)
		return 0;
	n = (size_t)(colon - m);
	if (n > 0 && m[0] == '[' && m[n - 1] == ']') {
		m++;
		n -= 2;
	}
	if (n >= sizeof(host))
		return 0;
	memcpy(host, m, n);
	host[n] = '\0';
	return same_host(host, s->milter_bind);
}

/*
 * The milters of a smtpd_milters value, in order: commas and spaces
 * separate, "{ inet:...:port, default_action=... }" is one milter.
 * Returns the count; *has is the index of msmilter or -1.
 */
static int
milters(const struct msm_settings *s, const char *value, int *has)
{
	char	 buf[4096], *tok, *save = NULL;
	int	 count = 0;

	*has = -1;
	snprintf(buf, sizeof(buf), "%s", value);
	for (char *p = buf; *p != '\0'; p++)
		if (*p == ',' || *p == '{' || *p == '}' || isspace(
		    (unsigned char)*p))
			*p = ' ';
	for (tok = strtok_r(buf, " ", &save); tok != NULL;
	    tok = strtok_r(NULL, " ", &save)) {
		if (strchr(tok, '=') != NULL)
			continue;	/* a per-milter setting */
		if (is_msmilter(s, tok))
			*has = count;
		count++;
	}
	return count;
}

/* Port of a master.cf inet service name ("smtp", "2525", "1.2.3.4:25"). */
static int
service_addr(const char *name, char *host, size_t hostlen, unsigned *port)
{
	const char	*colon = strrchr(name, ':'), *p;
	struct servent	*se;

	host[0] = '\0';
	if (colon != NULL) {
		size_t n = (size_t)(colon - name);

		if (n > 1 && name[0] == '[' && name[n - 1] == ']') {
			name++;
			n -= 2;
		}
		if (n >= hostlen)
			return -1;
		memcpy(host, name, n);
		host[n] = '\0';
		p = colon + 1;
	} else
		p = name;
	if (*p >= '0' && *p <= '9') {
		*port = (unsigned)atoi(p);
		return 0;
	}
	if ((se = getservbyname(p, "tcp")) == NULL)
		return -1;
	*port = ntohs((uint16_t)se->s_port);
	return 0;
}

/* One parsed line of postconf -M. */
struct service {
	char	name[256], type[256], command[256];
};

static int
next_service(char **cursor, struct service *sv)
{
	char	*line, *eol;

	while (**cursor != '\0') {
		line = *cursor;
		eol = strchr(line, '\n');
		*cursor = eol ? eol + 1 : line + strlen(line);
		char	 tmp[1024];
		size_t	 n = eol ? (size_t)(eol - line) : strlen(line);
		char	 f[8][256];
		int	 k;

		if (n >= sizeof(tmp))
			n = sizeof(tmp) - 1;
		memcpy(tmp, line, n);
		tmp[n] = '\0';
		k = sscanf(tmp, "%255s %255s %255s %255s %255s %255s %255s "
		    "%255s", f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7]);
		if (k < 8 || f[0][0] == '#')
			continue;
		snprintf(sv->name, sizeof(sv->name), "%s", f[0]);
		snprintf(sv->type, sizeof(sv->type), "%s", f[1]);
		snprintf(sv->command, sizeof(sv->command), "%s", f[7]);
		return 1;
	}
	return 0;
}

/* Does the HOLD rule for Received: appear in this regexp/pcre file? */
static void
check_header_file(struct doctor *d, const char *path)
{
	FILE	*f;
	char	 line[4096];
	unsigned lineno = 0;

	if ((f = fopen(path, "r")) == NULL)
		return;
	while (fgets(line, sizeof(line), f) != NULL) {
		char *p = line, *end, low[4096];
		size_t i;

		lineno++;
		while (isspace((unsigned char)*p))
			p++;
		if (*p != '/')
			continue;
		/* the pattern ends at the next unescaped '/' */
		for (end = p + 1; *end != '\0' && *end != '/'; end++)
			if (*end == '\\' && end[1] != '\0')
				end++;
		if (*end != '/')
			continue;
		for (i = 0; p + i < end && i < sizeof(low) - 1; i++)
			low[i] = (char)tolower((unsigned char)p[i]);
		low[i] = '\0';
		end++;
		while (isalpha((unsigned char)*end))
			end++;	/* flags */
		while (isspace((unsigned char)*end))
			end++;
		if (strstr(low, "received") != NULL &&
		    strncasecmp(end, "hold", 4) == 0 &&
		    (end[4] == '\0' || isspace((unsigned char)end[4])))
			say(d, 1, "Postfix header_checks %s:%u: \"%.*s\" puts "
			    "every message on hold (MailScanner's old Postfix "
			    "recipe); with msmilter Postfix must not hold mail: "
			    "remove the line and postfix reload", path, lineno,
			    (int)strcspn(p, "\r\n"), p);
	}
	fclose(f);
}

static void
check_header_checks(struct doctor *d, const char *value)
{
	char	 buf[4096], *tok, *save = NULL;

	snprintf(buf, sizeof(buf), "%s", value);
	for (char *p = buf; *p != '\0'; p++)
		if (*p == ',')
			*p = ' ';
	for (tok = strtok_r(buf, " \t", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t", &save)) {
		if (strncmp(tok, "regexp:", 7) == 0)
			check_header_file(d, tok + 7);
		else if (strncmp(tok, "pcre:", 5) == 0)
			check_header_file(d, tok + 5);
	}
}

/* Does a qmqpd_authorized_clients value admit addr?  -1: cannot tell. */
static int
admits(const char *value, const char *addr)
{
	char		 buf[4096], *tok, *save = NULL;
	struct in_addr	 a, net;
	struct in6_addr	 a6;
	int		 unknown = 0;

	if (inet_pton(AF_INET, addr, &a) != 1)
		return -1;
	snprintf(buf, sizeof(buf), "%s", value);
	for (char *p = buf; *p != '\0'; p++)
		if (*p == ',')
			*p = ' ';
	for (tok = strtok_r(buf, " \t", &save); tok != NULL;
	    tok = strtok_r(NULL, " \t", &save)) {
		char *slash = strchr(tok, '/');
		int bits = 32;

		if (tok[0] == '[') {
			char *e = strchr(tok, ']');

			tok++;
			if (e != NULL)
				memmove(e, e + 1, strlen(e + 1) + 1);
			slash = strchr(tok, '/');
		}
		if (slash != NULL) {
			*slash = '\0';
			bits = atoi(slash + 1);
		}
		if (inet_pton(AF_INET6, tok, &a6) == 1)
			continue;	/* IPv6: not the relay's IPv4 address */
		if (inet_pton(AF_INET, tok, &net) != 1 || bits < 0 ||
		    bits > 32) {
			unknown = 1;	/* a name, a map, IPv6 */
			continue;
		}
		uint32_t mask = bits == 0 ? 0 : 0xffffffffu << (32 - bits);

		if ((ntohl(a.s_addr) & mask) == (ntohl(net.s_addr) & mask))
			return 1;
	}
	return unknown ? -1 : 0;
}

/* The Postfix half. */
static void
check_postfix(struct doctor *d)
{
	const struct msm_settings *s = d->s;
	struct service	 sv;
	char		 v[4096], want[MSM_PATH_LEN + 16], host[256], queue_dir[1024];
	char		*cur;
	int		 filtered = 0, target = 0, qmqp_target = 0;
	unsigned	 port;

	if (s->milter_socket[0] != '\0')
		snprintf(want, sizeof(want), "unix:%s", s->milter_socket);
	else
		snprintf(want, sizeof(want), "inet:%s:%u", s->milter_bind,
		    s->milter_port);
	param(d, NULL, NULL, "queue_directory", queue_dir, sizeof(queue_dir));

	for (cur = d->master; next_service(&cur, &sv); ) {
		int has, count;

		if (strcmp(sv.command, "smtpd") != 0)
			continue;
		param(d, sv.name, sv.type, "smtpd_milters", v, sizeof(v));
		count = milters(s, v, &has);
		if (has < 0)
			continue;
		filtered++;
		if (has != count - 1)
			say(d, 1, "Postfix %s: smtpd service %s: msmilter (%s) "
			    "is not last in smtpd_milters = %s: a milter after "
			    "it changes mail that msmilter already committed; "
			    "move %s to the end", d->pfname, sv.name, want, v,
			    want);
		param(d, sv.name, sv.type, "milter_default_action", v,
		    sizeof(v));
		if (strcmp(v, "tempfail") != 0)
			say(d, 1, "Postfix %s: smtpd service %s: "
			    "milter_default_action = %s: with msmilter down "
			    "mail would %s; set milter_default_action = "
			    "tempfail", d->pfname, sv.name, v[0] ? v : "(unset)",
			    strcmp(v, "accept") == 0 ? "pass unscanned" :
			    "be lost or refused");
		param(d, sv.name, sv.type, "in_flow_delay", v, sizeof(v));
		if (strcmp(v, "0") != 0 && strcmp(v, "0s") != 0)
			say(d, 0, "Postfix %s: smtpd service %s: in_flow_delay "
			    "= %s: mail msmilter takes in is discarded in "
			    "Postfix and never returns its flow-control token, "
			    "so smtpd slows to a crawl under load; set "
			    "in_flow_delay = 0", d->pfname, sv.name,
			    v[0] ? v : "(unset)");
		/* smtpd -o header_checks= reaches cleanup via its service */
		{
			char o[4096];

			param(d, NULL, NULL, "header_checks", o, sizeof(o));
			param(d, sv.name, sv.type, "header_checks", v,
			    sizeof(v));
			if (strcmp(o, v) != 0)
				check_header_checks(d, v);
		}
	}
	if (filtered == 0)
		say(d, d->pfdir != NULL, "Postfix %s: no smtpd service has "
		    "msmilter (%s) in smtpd_milters: no mail reaches it; set "
		    "smtpd_milters = %s (last in the list) in main.cf or with "
		    "-o on the smtpd in master.cf%s", d->pfname, want, want,
		    d->pfdir != NULL ? "" : " (or name the instance with "
		    "--postfix-config DIR)");
	param(d, NULL, NULL, "header_checks", v, sizeof(v));
	check_header_checks(d, v);
	for (cur = d->master; next_service(&cur, &sv); )
		if (strcmp(sv.command, "cleanup") == 0) {
			char o[4096];

			param(d, sv.name, sv.type, "header_checks", o,
			    sizeof(o));
			if (strcmp(o, v) != 0)
				check_header_checks(d, o);
		}

	/* Where the relay delivers. */
	for (cur = d->master; next_service(&cur, &sv); ) {
		int has;

		if (s->delivery_method == MSM_DELIVER_SMTP &&
		    strcmp(sv.command, "smtpd") == 0 &&
		    strcmp(sv.type, "inet") == 0 &&
		    service_addr(sv.name, host, sizeof(host), &port) == 0 &&
		    port == s->relay_port && (host[0] == '\0' ||
		    same_host(host, s->relay_address))) {
			target++;
			param(d, sv.name, sv.type, "smtpd_milters", v,
			    sizeof(v));
			milters(s, v, &has);
			if (has >= 0 && (!s->milter_ignore_loopback ||
			    !loopback(s->relay_address)))
				say(d, 1, "Postfix %s: mail loop: the relay "
				    "delivers to %s:%u, smtpd service %s, which "
				    "runs msmilter again%s; give that service "
				    "-o smtpd_milters= in master.cf (a listener "
				    "for re-injection) and point MSMail Relay "
				    "Address/Port at it", d->pfname,
				    s->relay_address, s->relay_port, sv.name,
				    s->milter_ignore_loopback ? " (the relay "
				    "address is not loopback)" : " and Milter "
				    "Ignore Loopback is no");
		}
		if (s->delivery_method == MSM_DELIVER_QMQP &&
		    strcmp(sv.command, "qmqpd") == 0) {
			const char *client = NULL;

			if (s->socket_type == MSM_SOCKET_UNIX &&
			    strcmp(sv.type, "unix") == 0) {
				char path[2048];

				snprintf(path, sizeof(path), "%s/public/%s",
				    queue_dir, sv.name);
				if (strcmp(path, s->socket_dir) != 0)
					continue;
				client = "127.0.0.1";	/* qmqpd's view */
			} else if (s->socket_type == MSM_SOCKET_INET &&
			    strcmp(sv.type, "inet") == 0 &&
			    service_addr(sv.name, host, sizeof(host), &port)
			    == 0 && port == s->relay_port && (host[0] == '\0'
			    || same_host(host, s->relay_address))) {
				if (loopback(s->relay_address))
					client = "127.0.0.1";
			} else
				continue;
			qmqp_target++;
			if (client == NULL)
				continue;
			param(d, sv.name, sv.type, "qmqpd_authorized_clients",
			    v, sizeof(v));
			if (admits(v, client) == 0)
				say(d, 1, "Postfix %s: qmqpd service %s: "
				    "qmqpd_authorized_clients = %s does not "
				    "admit the relay (%s): every delivery is "
				    "refused; add %s to qmqpd_authorized_clients",
				    d->pfname, sv.name, v[0] ? v : "(empty)",
				    client, client);
		}
	}
	if (s->delivery_method == MSM_DELIVER_SMTP && target == 0 &&
	    loopback(s->relay_address))
		say(d, 0, "Postfix %s: no smtpd service listens on %s:%u, "
		    "where the relay delivers (MSMail Relay Address/Port); add "
		    "a listener without milters for re-injection to master.cf",
		    d->pfname, s->relay_address, s->relay_port);
	if (s->delivery_method == MSM_DELIVER_QMQP && qmqp_target == 0 &&
	    (s->socket_type == MSM_SOCKET_UNIX || loopback(s->relay_address)))
		say(d, 0, "Postfix %s: no qmqpd service where the relay "
		    "delivers (%s); add one to master.cf", d->pfname,
		    s->socket_type == MSM_SOCKET_UNIX ? s->socket_dir :
		    s->relay_address);
}

/* Read one line (up to a newline) within the deadline; 0 on success. */
static int
read_line(int fd, char *buf, size_t len)
{
	size_t	 n = 0;

	while (n + 1 < len) {
		struct pollfd pfd = { fd, POLLIN, 0 };
		ssize_t r;

		if (poll(&pfd, 1, DOCTOR_TIMEOUT_MS) <= 0)
			return -1;
		if ((r = read(fd, buf + n, len - 1 - n)) <= 0)
			return -1;
		n += (size_t)r;
		buf[n] = '\0';
		if (strchr(buf, '\n') != NULL)
			return 0;
	}
	return 0;
}

/* Connect with a time limit; the socket or -1 (errno set). */
static int
connect_to(const char *host, unsigned port)
{
	struct addrinfo	 hints, *res, *ai;
	char		 serv[16];
	int		 fd = -1, err = ECONNREFUSED;

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST;
	snprintf(serv, sizeof(serv), "%u", port);
	if (getaddrinfo(host, serv, &hints, &res) != 0) {
		errno = EINVAL;
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		struct pollfd pfd;
		socklen_t sl = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK |
		    SOCK_CLOEXEC, 0);
		if (fd == -1)
			continue;
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		err = errno;
		if (errno == EINPROGRESS) {
			pfd = (struct pollfd){ fd, POLLOUT, 0 };
			if (poll(&pfd, 1, DOCTOR_TIMEOUT_MS) == 1 &&
			    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &sl)
			    == 0 && err == 0)
				break;
			if (err == EINPROGRESS)
				err = ETIMEDOUT;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd == -1)
		errno = err;
	return fd;
}

static void
try_relay(struct doctor *d)
{
	const struct msm_settings *s = d->s;
	char	 line[1024];
	int	 fd;

	if (s->delivery_method == MSM_DELIVER_QMQP &&
	    s->socket_type == MSM_SOCKET_UNIX)
		return;		/* config_check stats the socket */
	if ((fd = connect_to(s->relay_address, s->relay_port)) == -1) {
		say(d, 0, "relay target %s:%u (%s) is unreachable: %s; mail "
		    "stays in milterout until it answers: start it or fix "
		    "MSMail Relay Address/Port", s->relay_address,
		    s->relay_port, s->delivery_method == MSM_DELIVER_QMQP ?
		    "QMQP" : "SMTP", strerror(errno));
		return;
	}
	if (s->delivery_method == MSM_DELIVER_SMTP) {
		if (read_line(fd, line, sizeof(line)) == -1 ||
		    strncmp(line, "220", 3) != 0)
			say(d, 0, "relay target %s:%u answered no SMTP 220 "
			    "banner (%.*s): is it an SMTP server?",
			    s->relay_address, s->relay_port,
			    (int)strcspn(line, "\r\n"), line);
		else {
			(void)!write(fd, "QUIT\r\n", 6);
			(void)read_line(fd, line, sizeof(line));
		}
	}
	close(fd);
}

/*
 * Full Milter Scanner mode: clamd must answer zPING on Milter Clamd
 * Socket now (the spooler asks it for every message), and MailScanner
 * must not still be set to read milterin: with MTA = msmail in the same
 * MailScanner.conf it takes milterin as its incoming queue, where
 * nothing arrives any more, while the administrator may believe it still
 * scans (and spam-checks) this mail.  A MailScanner process running
 * makes the mistake live; either way it is an error, since the config
 * alone starts MailScanner that way at the next boot.
 */
static int
mailscanner_running(void)
{
	DIR		*proc = opendir("/proc");
	struct dirent	*e;
	int		 found = 0;

	while (proc != NULL && !found && (e = readdir(proc)) != NULL) {
		char	 path[64], cmd[256];
		ssize_t	 n;
		int	 fd;

		if (strspn(e->d_name, "0123456789") != strlen(e->d_name))
			continue;
		snprintf(path, sizeof(path), "/proc/%.20s/cmdline", e->d_name);
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1)
			continue;
		n = read(fd, cmd, sizeof(cmd) - 1);
		close(fd);
		if (n <= 0)
			continue;
		for (ssize_t i = 0; i < n; i++)
			if (cmd[i] == '\0')
				cmd[i] = ' ';
		cmd[n] = '\0';
		found = strstr(cmd, "MailScanner") != NULL &&
		    strstr(cmd, "msmilter") == NULL;
	}
	if (proc != NULL)
		closedir(proc);
	return found;
}

/* Connected to clamd's socket, or -1 with why. */
static int
clamd_dial(const char *path, char *why, size_t whylen)
{
	struct sockaddr_un	 sun;
	int			 fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%.107s", path);
	if ((fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) == -1 ||
	    connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
		snprintf(why, whylen, "cannot connect: %s", strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	return fd;
}

/* clamd's answer until it closes or ends a record; bytes read. */
static size_t
clamd_read(int fd, char *buf, size_t len)
{
	size_t n = 0;

	while (n < len) {
		struct pollfd	 pfd = { fd, POLLIN, 0 };
		ssize_t		 r;

		if (poll(&pfd, 1, DOCTOR_TIMEOUT_MS) != 1 ||
		    (r = read(fd, buf + n, len - n)) <= 0)
			break;
		n += (size_t)r;
		if (buf[n - 1] == '\0')
			break;
	}
	return n;
}

/*
 * FDPASS as the spooler uses it: a small clean file of our own (unnamed,
 * O_TMPFILE) handed over with zFILDES must come back "fd[N]: OK".  A clamd
 * on another host, behind a forwarded socket, cannot take a descriptor.
 */
static int
clamd_fdpass(const char *path, char *why, size_t whylen)
{
	static const char	 text[] = "Subject: msmilter -t\n\nclean\n";
	union ipc_fdroom	 u;
	struct iovec		 iov = { (void *)(uintptr_t)"", 1 };
	struct msghdr		 msg;
	struct clamd_reply	 r;
	char			 buf[CLAMD_REPLY_MAX + 1];
	size_t			 n;
	int			 s, f;

	if ((f = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600)) == -1 ||
	    write(f, text, sizeof(text) - 1) != (ssize_t)sizeof(text) - 1) {
		snprintf(why, whylen, "cannot make a test file in /tmp: %s",
		    strerror(errno));
		if (f != -1)
			close(f);
		return 0;	/* our problem, not clamd's: no finding */
	}
	if ((s = clamd_dial(path, why, whylen)) == -1) {
		close(f);
		return -1;
	}
	memset(&msg, 0, sizeof(msg));
	msg.msg_iov = &iov;
	msg.msg_iovlen = 1;
	ipc_attach_fd(&msg, &u, f);
	if (write(s, "zFILDES", 8) != 8 || sendmsg(s, &msg, 0) != 1) {
		snprintf(why, whylen, "cannot pass it a descriptor: %s",
		    strerror(errno));
		close(s);
		close(f);
		return -1;
	}
	n = clamd_read(s, buf, sizeof(buf));
	close(s);
	close(f);
	if (clamd_reply_parse(buf, n, &r) == 0 && r.result == SCAN_CLEAN)
		return 0;
	snprintf(why, whylen, "a file passed with FDPASS came back as \"%.*s\"",
	    (int)strcspn(buf, "\n"), n > 0 ? buf : "");
	return -1;
}

/* zPING on clamd's socket; 0 on PONG, else -1 with why. */
static int
clamd_ping(const char *path, char *why, size_t whylen)
{
	char	 buf[64];
	size_t	 n;
	int	 fd;

	if ((fd = clamd_dial(path, why, whylen)) == -1)
		return -1;
	if (write(fd, "zPING", 6) != 6) {
		snprintf(why, whylen, "cannot send PING: %s", strerror(errno));
		close(fd);
		return -1;
	}
	n = clamd_read(fd, buf, sizeof(buf));
	close(fd);
	if (clamd_reply_pong(buf, n))
		return 0;
	snprintf(why, whylen, n == 0 ? "no answer to PING within %d s" :
	    "answered \"%.*s\" to PING, not PONG", n == 0 ?
	    DOCTOR_TIMEOUT_MS / 1000 : (int)strcspn(buf, "\n"),
	    n == 0 ? "" : buf);
	return -1;
}

static void
check_full_scanner(struct doctor *d)
{
	const struct msm_settings *s = d->s;
	char	 why[256];

	if (!s->milter_full_scanner)
		return;
	if (clamd_ping(s->milter_clamd_socket, why, sizeof(why)) == -1)
		say(d, 1, "Milter Full Scanner: clamd at Milter Clamd Socket "
		    "%s: %s; every message would get 451 4.7.1: start clamd "
		    "(its LocalSocket) or fix Milter Clamd Socket",
		    s->milter_clamd_socket, why);
	else if (s->milter_clamd_method == MSM_CLAMD_FDPASS &&
	    clamd_fdpass(s->milter_clamd_socket, why, sizeof(why)) == -1)
		say(d, 1, "Milter Full Scanner: clamd at Milter Clamd Socket "
		    "%s answers PING but %s; every message would get 451 "
		    "4.7.1: is clamd on another host? Set Milter Clamd "
		    "Method = instream", s->milter_clamd_socket, why);
	if (strcasecmp(s->mta, "msmail") == 0)
		say(d, 1, "Milter Full Scanner = yes, but MTA = msmail: "
		    "MailScanner is set to read milterin (%s), where nothing "
		    "arrives in this mode, and does not scan this mail%s; turn "
		    "MailScanner off (run_mailscanner=0 in "
		    "/etc/MailScanner/defaults) and set MTA to your MTA's "
		    "name, or set Milter Full Scanner = no",
		    s->incoming_queue_dir, mailscanner_running() ?
		    " (a MailScanner process is running now)" : "");
}

/* milterin and milterout, and the chroot. */
static void
check_machine(struct doctor *d)
{
	const struct msm_settings *s = d->s;
	struct sandbox_creds	 run_as;
	struct stat		 st;
	char			 err[256];
	const char		*dirs[2] = { s->incoming_queue_dir,
				    s->outgoing_queue_dir };
	const char		*keys[2] = { "Incoming Queue Dir",
				    "Outgoing Queue Dir" };

	if (!sandbox_privileged())
		return;		/* unprivileged: the children are us */
	if (sandbox_lookup(s->run_as_user, s->incoming_work_group[0] ?
	    s->incoming_work_group : s->run_as_group, &run_as, err,
	    sizeof(err)) == 0)
		for (int i = 0; i < 2; i++) {
			if (stat(dirs[i], &st) == -1)
				say(d, 0, "%s %s: %s: create it: install -d -o "
				    "%s -g %s -m 0750 %s", keys[i], dirs[i],
				    strerror(errno), run_as.user,
				    s->run_as_group[0] ? s->run_as_group :
				    run_as.user, dirs[i]);
			else if (!S_ISDIR(st.st_mode))
				say(d, 1, "%s %s is not a directory", keys[i],
				    dirs[i]);
			else if (st.st_uid != run_as.uid)
				say(d, 1, "%s %s belongs to uid %u, not Run As "
				    "User %s (uid %u): the spooler and the relay "
				    "cannot use it; chown %s %s", keys[i],
				    dirs[i], (unsigned)st.st_uid, run_as.user,
				    (unsigned)run_as.uid, run_as.user, dirs[i]);
		}
	if (stat(s->milter_chroot, &st) == -1) {
		say(d, 0, "Milter Chroot %s: %s: capture cannot start without "
		    "it; create it: install -d -o root -g root -m 0755 %s",
		    s->milter_chroot, strerror(errno), s->milter_chroot);
		return;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != 0 ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)))
		say(d, 1, "Milter Chroot %s must be a directory owned by root "
		    "and writable only by root (it is uid %u mode %04o): "
		    "chown root:root %s; chmod 0755 %s", s->milter_chroot,
		    (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
		    s->milter_chroot, s->milter_chroot);
	else {
		DIR *dir = opendir(s->milter_chroot);
		struct dirent *e;
		int n = 0;

		while (dir != NULL && (e = readdir(dir)) != NULL)
			if (strcmp(e->d_name, ".") != 0 &&
			    strcmp(e->d_name, "..") != 0)
				n++;
		if (dir != NULL)
			closedir(dir);
		if (n > 0)
			say(d, 1, "Milter Chroot %s is not empty (%d "
			    "entr%s): capture must find nothing there; empty "
			    "it or choose an empty directory", s->milter_chroot,
			    n, n == 1 ? "y" : "ies");
	}
}

static void
mac_say(void *arg, int error, const char *text)
{
	say(arg, error, "%s", text);
}

int
doctor_run(const struct msm_settings *s, const char *postfix_dir)
{
	struct doctor	 d;

	memset(&d, 0, sizeof(d));
	d.s = s;
	d.pfdir = postfix_dir;
	d.pfname = postfix_dir ? postfix_dir : "(default instance)";
	check_machine(&d);
	doctor_mac(s, mac_say, &d);
	check_full_scanner(&d);
	d.main = postconf(&d, "-x", NULL);
	if (d.main != NULL) {
		d.master = postconf(&d, "-M", NULL);
		d.overrides = postconf(&d, "-P", NULL);
	}
	if (d.main != NULL && d.master != NULL)
		check_postfix(&d);
	else if (postfix_dir != NULL)
		say(&d, 1, "Postfix %s: postconf -c %s cannot read it: is it a "
		    "Postfix configuration directory (main.cf, master.cf)?",
		    postfix_dir, postfix_dir);
	try_relay(&d);
	free(d.main);
	free(d.master);
	free(d.overrides);
	return d.errors;
}
