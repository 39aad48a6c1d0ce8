/*
 * libmilter callbacks, one per SMTP stage, in the order Postfix calls them.
 * A connection (struct conn) may carry several transactions (struct txn).
 * Everything here is hostile input from the SMTP client, relayed by Postfix.
 *
 * Replies: DISCARD only after the spooler said "committed"; ACCEPT for a
 * loopback client when configured; everything else that goes wrong is
 * TEMPFAIL 451 4.3.0, so Postfix keeps or refuses the message and nothing
 * is lost.  Stages we asked not to answer (SMFIP_NR_*) cannot fail, so a
 * failure there is remembered and reported at DATA or end of message.
 * MAIL and RCPT are answered: an address the queue file cannot carry gets
 * a permanent 553 there (qfile_addr_ok), not a 451 at DATA that clients
 * would retry for days, nor a 250 for mail the relay would never send.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>

#include "capture.h"
#include "log.h"
#include "qfile.h"
#include "queueid.h"
#include "ruleset.h"

#define STAGING_SIZE	65536		/* one DATA record */
#define MAX_RECIPIENTS	100000		/* far above smtpd_recipient_limit */
#define MAX_PATH	256		/* RFC 5321 4.5.3.1.3, with the <> */
#define PUBLIC_TEMPFAIL	"Mail spool temporarily unavailable, try again later"
#define PATH_TOO_LONG	"longer than the 256 octets of an SMTP path"
#define LOG_INTERVAL	60		/* s between lines about a flood */

/*
 * The SMTP stages we ask Postfix not to wait for.  MAIL and RCPT are
 * answered: an address too long or an envelope too big is refused there.
 */
#define WANT_NOREPLY	(SMFIP_NR_HELO | SMFIP_NR_HDR | SMFIP_NR_EOH | \
			 SMFIP_NR_BODY)

struct txn {
	char		 queue_id[QUEUEID_MAX];
	char		*sender;
	char		*auth_type;
	struct qrcpt	*rcpts;
	size_t		 nrcpt, rcpt_cap;
	size_t		 envelope;	/* bytes kept for S, A, E, O lines */
	int		 envelope_full;	/* Milter Max Envelope Size reached */
	int		 begun;		/* the spooler holds a temp file */
	char		 error[IPC_REASON_MAX];	/* first failure, for logs */
	char		*out;		/* staging for the next DATA record */
	size_t		 outlen;
	int		 pending_cr;	/* a CR ended the previous chunk */
	int		 blacklisted;	/* Milter Scanner said REJECT */
	int		 esmtp_args;	/* MAIL or RCPT had ESMTP parameters */
	char		 rule[512];	/* the rule that decided, file:line */
};

struct conn {
	unsigned long	 proto;		/* negotiated SMFIP_* flags */
	char		 client_name[256];
	char		 client_addr[INET6_ADDRSTRLEN + 8];
	char		*helo;
	char		 by_host[256];
	char		*tls_version, *cipher, *cipher_bits;
	int		 client_cert;
	int		 chan;		/* session channel to the spooler */
	unsigned	 chan_gen;
	int		 slot;		/* counted in capture.sessions */
	struct txn	*txn;
	/* The idle reaper's: guarded by idle_lock. */
	int		 sd;		/* libmilter's socket, -1 unknown */
	time_t		 last;		/* CLOCK_MONOTONIC of the last stage */
	struct conn	*prev, *next;	/* in idle_list */
};

/* A kind of complaint that a hostile client can repeat at will. */
struct ratelimit {
	pthread_mutex_t	 lock;
	time_t		 last;
	unsigned long	 missed;
};

static struct ratelimit no_context_log = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };
static struct ratelimit session_cap_log = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };

/*
 * 1 when this line may be logged, with *missed set to how many were not
 * since the last one: at most one line a minute, whatever the flood.
 */
static int
ratelimit_ok(struct ratelimit *rl, unsigned long *missed)
{
	time_t	 now = time(NULL);
	int	 ok = 0;

	pthread_mutex_lock(&rl->lock);
	if (rl->last == 0 || now - rl->last >= LOG_INTERVAL || now < rl->last) {
		*missed = rl->missed;
		rl->missed = 0;
		rl->last = now;
		ok = 1;
	} else
		rl->missed++;
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

static pthread_mutex_t	 idle_lock = PTHREAD_MUTEX_INITIALIZER;
static struct conn	*idle_list;
static struct ratelimit	 idle_log = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };

static time_t
monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

/*
 * The socket of a session.  libmilter has no call for it, and its worker
 * pool looks for sessions past smfi_settimeout() only every 600 s, so a
 * silent session would hold its slot up to ten minutes longer than
 * Milter Idle Timeout.  libmilter.h's struct smfi_str has begun with
 * { sthread_t ctx_id; socket_t ctx_sd; } since 8.12; what we read there is
 * used only if it is a connected stream socket on our listening address,
 * that is one of libmilter's sessions.  Otherwise -1: libmilter's own
 * sweep is all there is, and we say so once.
 */
static int
session_socket(SMFICTX *ctx, int unix_socket, unsigned port)
{
	const struct { pthread_t id; int sd; } *head = (const void *)ctx;
	struct sockaddr_storage	 ss;
	socklen_t		 sl = sizeof(ss);
	struct stat		 st;
	int			 fd = head->sd, type = 0;
	socklen_t		 tl = sizeof(type);
	static int		 warned;

	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0 &&
	    type == SOCK_STREAM && getpeername(fd, (void *)&ss, &sl) == 0 &&
	    (sl = sizeof(ss), getsockname(fd, (void *)&ss, &sl)) == 0) {
		if (unix_socket && ss.ss_family == AF_UNIX)
			return fd;
		if (!unix_socket && ss.ss_family == AF_INET && ntohs(((struct
		    sockaddr_in *)(void *)&ss)->sin_port) == port)
			return fd;
		if (!unix_socket && ss.ss_family == AF_INET6 && ntohs(((struct
		    sockaddr_in6 *)(void *)&ss)->sin6_port) == port)
			return fd;
	}
	if (!warned++)
		log_warnx("cannot find libmilter's session socket: idle "
		    "sessions are closed up to 600 s after Milter Idle Timeout");
	return -1;
}

static void
idle_track(struct conn *c, int sd)
{
	pthread_mutex_lock(&idle_lock);
	c->sd = sd;
	c->last = monotonic();
	c->prev = NULL;
	c->next = idle_list;
	if (idle_list != NULL)
		idle_list->prev = c;
	idle_list = c;
	pthread_mutex_unlock(&idle_lock);
}

static void
idle_forget(struct conn *c)
{
	pthread_mutex_lock(&idle_lock);
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (idle_list == c)
		idle_list = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	pthread_mutex_unlock(&idle_lock);
}

/*
 * Shut down sessions silent for Milter Idle Timeout.  libmilter then reads
 * end of file, calls mlfi_close (which frees the slot) and closes the
 * socket; that cannot happen before mlfi_close took c off the list under
 * idle_lock, so every sd shut here is still the session's.
 */
static void *
idle_reaper(void *arg)
{
	(void)arg;
	for (;;) {
		time_t		 now = monotonic();
		unsigned	 timeout, shut = 0;
		int		 draining;
		unsigned long	 missed;

		pthread_mutex_lock(&capture.lock);
		timeout = capture.set.milter_idle_timeout;
		draining = capture.draining;
		pthread_mutex_unlock(&capture.lock);
		if (draining)
			return NULL;	/* libmilter closes sockets itself now */
		pthread_mutex_lock(&idle_lock);
		for (struct conn *c = idle_list; c != NULL; c = c->next)
			if (c->sd != -1 && now - c->last >= (time_t)timeout) {
				shutdown(c->sd, SHUT_RDWR);
				c->sd = -1;
				shut++;
			}
		pthread_mutex_unlock(&idle_lock);
		if (shut > 0 && ratelimit_ok(&idle_log, &missed))
			log_info("closed %u milter session%s idle for %u s (%lu "
			    "more not logged)", shut, shut == 1 ? "" : "s",
			    timeout, missed);
		sleep(1);
	}
	return NULL;
}

int
capture_idle_reaper(void)
{
	pthread_t	 t;
	int		 r;

	if ((r = pthread_create(&t, NULL, idle_reaper, NULL)) != 0)
		return r;
	return pthread_detach(t);
}

/*
 * The connection of a callback, or NULL when there is none to work with:
 * the caller answers TEMPFAIL.  libmilter calls every stage even when the
 * MTA skipped option negotiation, where struct conn is made (one packet
 * 'H' or 'M' as the first of a connection); a connection over the session
 * cap has one but was refused at connect.
 */
static struct conn *
conn_of(SMFICTX *ctx, const char *stage)
{
	struct conn	*c = smfi_getpriv(ctx);
	unsigned long	 missed;

	if (c != NULL) {
		pthread_mutex_lock(&idle_lock);
		c->last = monotonic();
		pthread_mutex_unlock(&idle_lock);
	}
	if (c != NULL && c->slot)
		return c;
	if (c == NULL && ratelimit_ok(&no_context_log, &missed))
		log_warnx("milter %s before option negotiation: temporary "
		    "failure (not Postfix, or an attack; %lu more not logged)",
		    stage, missed);
	return NULL;
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

static void
txn_free(struct txn *t)
{
	if (t == NULL)
		return;
	capture_transaction(-1);
	for (size_t i = 0; i < t->nrcpt; i++) {
		free(t->rcpts[i].addr);
		free(t->rcpts[i].dsn);
	}
	free(t->rcpts);
	free(t->sender);
	free(t->auth_type);
	free(t->out);
	free(t);
}

static int await_reply(struct conn *, uint32_t, void *, size_t, uint32_t *);
static int blacklisted(struct conn *);
static sfsistat reject_blacklisted(SMFICTX *, struct conn *);
static void txn_fail(struct txn *, const char *, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Remember the first failure; the client hears of it at DATA or EOM, and
 * the log line with the queue id is written then.
 */
static void
txn_fail(struct txn *t, const char *fmt, ...)
{
	va_list ap;

	if (t->error[0] != '\0')
		return;
	va_start(ap, fmt);
	vsnprintf(t->error, sizeof(t->error), fmt, ap);
	va_end(ap);
}

static void
conn_drop_channel(struct conn *c)
{
	if (c->chan != -1)
		close(c->chan);
	c->chan = -1;
}

/* Tell the spooler to forget an uncommitted message. */
static void
txn_abort(struct conn *c)
{
	struct txn *t = c->txn;

	if (t == NULL)
		return;
	if (t->begun && c->chan != -1 &&
	    ipc_send(c->chan, MSG_CAPTURE_ABORT, NULL, 0, -1) == -1)
		conn_drop_channel(c);	/* the spooler removes it on close */
	txn_free(t);
	c->txn = NULL;
}

/* A failure because the spooler hung up (it died): worth a new channel. */
#define HUNG_UP		(-2)

/* 0, HUNG_UP, or -1 for any other failure. */
static int
txn_send(struct conn *c, uint32_t type, const void *p1, size_t l1,
    const void *p2, size_t l2)
{
	int err;

	if (ipc_sendv2(c->chan, type, p1, l1, p2, l2, -1) == -1) {
		err = errno;
		txn_fail(c->txn, "spooler channel: %s", strerror(err));
		conn_drop_channel(c);
		return err == EPIPE || err == ECONNRESET ? HUNG_UP : -1;
	}
	return 0;
}

static void
txn_flush(struct conn *c)
{
	struct txn *t = c->txn;

	if (t->outlen > 0 && t->begun && t->error[0] == '\0')
		txn_send(c, MSG_CAPTURE_DATA, t->out, t->outlen, NULL, 0);
	t->outlen = 0;
}

static void
txn_putc(struct conn *c, char ch)
{
	struct txn *t = c->txn;

	if (t->outlen == STAGING_SIZE)
		txn_flush(c);
	t->out[t->outlen++] = ch;
}

/* Append bytes as they are, flushing full records as we go. */
static void
txn_put(struct conn *c, const unsigned char *p, size_t len)
{
	struct txn *t = c->txn;

	while (len > 0) {
		size_t room = STAGING_SIZE - t->outlen;
		size_t n = len < room ? len : room;

		memcpy(t->out + t->outlen, p, n);
		t->outlen += n;
		p += n;
		len -= n;
		if (t->outlen == STAGING_SIZE)
			txn_flush(c);
	}
}

/*
 * Append bytes, turning CRLF into LF, also across chunk boundaries.  Runs
 * without a CR are copied whole: this is the per-byte hot path of a body.
 */
static void
txn_put_lf(struct conn *c, const unsigned char *p, size_t len)
{
	struct txn		*t = c->txn;
	const unsigned char	*end = p + len;

	while (p < end) {
		const unsigned char *cr;

		if (t->pending_cr) {
			t->pending_cr = 0;
			if (*p == '\n') {
				txn_putc(c, '\n');
				p++;
				continue;
			}
			txn_putc(c, '\r');
		}
		cr = memchr(p, '\r', (size_t)(end - p));
		if (cr == NULL) {
			txn_put(c, p, (size_t)(end - p));
			return;
		}
		txn_put(c, p, (size_t)(cr - p));
		t->pending_cr = 1;
		p = cr + 1;
	}
}

/* A CR that no LF followed is data, not a line end. */
static void
txn_put_pending(struct conn *c)
{
	if (c->txn->pending_cr) {
		c->txn->pending_cr = 0;
		txn_putc(c, '\r');
	}
}

static int
is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const void *)sa;

		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const void *)sa;
		const uint8_t *b = in6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && b[12] == 127;
	}
	return 0;
}

/* "192.0.2.1" or "IPv6:2001:db8::1", as Postfix writes them. */
static void
format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char tmp[INET6_ADDRSTRLEN];

	buf[0] = '\0';
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET &&
	    inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)
	    ->sin_addr, tmp, sizeof(tmp)) != NULL)
		snprintf(buf, len, "%s", tmp);
	else if (sa->sa_family == AF_INET6 &&
	    inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)
	    ->sin6_addr, tmp, sizeof(tmp)) != NULL)
		snprintf(buf, len, "IPv6:%s", tmp);
}

static void
set_reply(SMFICTX *ctx, const char *text)
{
	if (smfi_setreply(ctx, "451", "4.3.0", (char *)text) != MI_SUCCESS)
		log_warnx("could not set the 451 reply text");
}

/* A refusal with its own code: rcode "4xx" for TEMPFAIL, "5xx" REJECT. */
static sfsistat
refuse(SMFICTX *ctx, const char *rcode, const char *xcode, const char *text)
{
	if (smfi_setreply(ctx, (char *)rcode, (char *)xcode, (char *)text) !=
	    MI_SUCCESS)
		log_warnx("could not set the %s reply text", rcode);
	return rcode[0] == '4' ? SMFIS_TEMPFAIL : SMFIS_REJECT;
}

static sfsistat
tempfail(SMFICTX *ctx, const char *text)
{
	set_reply(ctx, text);
	return SMFIS_TEMPFAIL;
}

/* The answer for a stage we may have asked not to reply to. */
static sfsistat
carry_on(struct conn *c, unsigned long noreply_flag)
{
	return (c->proto & noreply_flag) ? SMFIS_NOREPLY : SMFIS_CONTINUE;
}

static sfsistat
mlfi_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
    unsigned long f2, unsigned long f3, unsigned long *pf0,
    unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	struct conn	*c = smfi_getpriv(ctx);
	int		 unix_socket;
	unsigned	 port;

	/* Only once per connection in libmilter's state table; be sure. */
	if (c != NULL)
		return SMFIS_TEMPFAIL;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		return SMFIS_TEMPFAIL;
	c->chan = -1;
	/* Byte-exact headers keep DKIM signatures valid. */
	c->proto = f1 & (WANT_NOREPLY | SMFIP_HDR_LEADSPC | SMFIP_NOUNKNOWN);
	pthread_mutex_lock(&capture.lock);
	unix_socket = capture.set.milter_socket[0] != '\0';
	port = capture.set.milter_port;
	if (capture.sessions < capture.set.milter_max_children) {
		capture.sessions++;
		c->slot = 1;
	}
	pthread_mutex_unlock(&capture.lock);
	idle_track(c, session_socket(ctx, unix_socket, port));
	/* Over the cap: refused at connect, and every stage answered. */
	if (!c->slot)
		c->proto &= ~(unsigned long)WANT_NOREPLY;
	smfi_setpriv(ctx, c);
	/* We never modify the message; we only ask for our macros. */
	*pf0 = f0 & SMFIF_SETSYMLIST;
	*pf1 = c->proto;
	*pf2 = 0;
	*pf3 = 0;
	smfi_setsymlist(ctx, SMFIM_CONNECT, "j");
	smfi_setsymlist(ctx, SMFIM_HELO,
	    "{tls_version} {cipher} {cipher_bits} {cert_subject}");
	smfi_setsymlist(ctx, SMFIM_ENVFROM, "i {auth_type}");
	smfi_setsymlist(ctx, SMFIM_DATA, "i");
	return SMFIS_CONTINUE;
}

static sfsistat
mlfi_connect(SMFICTX *ctx, char *hostname, _SOCK_ADDR *hostaddr)
{
	struct conn	*c = conn_of(ctx, "connect");
	const char	*j = smfi_getsymval(ctx, "j");
	int		 ignore_loopback;
	unsigned long	 missed;

	if (c == NULL && smfi_getpriv(ctx) != NULL) {
		if (ratelimit_ok(&session_cap_log, &missed))
			log_warnx("Milter Max Children sessions reached: new "
			    "connections get a temporary failure (%lu more not "
			    "logged)", missed);
		return refuse(ctx, "451", "4.3.2",
		    "Too many concurrent sessions, try again later");
	}
	if (c == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	pthread_mutex_lock(&capture.lock);
	ignore_loopback = capture.set.milter_ignore_loopback;
	snprintf(c->by_host, sizeof(c->by_host), "%s",
	    j != NULL && j[0] != '\0' ? j : capture.hostname);
	pthread_mutex_unlock(&capture.lock);

	format_addr(hostaddr, c->client_addr, sizeof(c->client_addr));
	if (hostaddr != NULL && ignore_loopback && is_loopback(hostaddr)) {
		log_info("NOQUEUE: accept: loopback client %s[%s] (Milter "
		    "Ignore Loopback = yes): not spooled", hostname != NULL ?
		    hostname : "unknown", c->client_addr);
		capture_audit_loopback(c->client_addr);
		return SMFIS_ACCEPT;
	}
	/* Postfix sends "[addr]" when the client has no verified name. */
	snprintf(c->client_name, sizeof(c->client_name), "%s",
	    hostname == NULL || hostname[0] == '[' || hostname[0] == '\0' ?
	    "unknown" : hostname);
	return SMFIS_CONTINUE;
}

static sfsistat
mlfi_helo(SMFICTX *ctx, char *helo)
{
	struct conn *c = conn_of(ctx, "HELO");
	const char *subject = smfi_getsymval(ctx, "{cert_subject}");

	if (c == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	/* HELO may come again (after STARTTLS) or never. */
	free(c->helo);
	free(c->tls_version);
	free(c->cipher);
	free(c->cipher_bits);
	c->helo = dup_or_null(helo);
	c->tls_version = dup_or_null(smfi_getsymval(ctx, "{tls_version}"));
	c->cipher = dup_or_null(smfi_getsymval(ctx, "{cipher}"));
	c->cipher_bits = dup_or_null(smfi_getsymval(ctx, "{cipher_bits}"));
	c->client_cert = subject != NULL && subject[0] != '\0';
	return carry_on(c, SMFIP_NR_HELO);
}

/* "<a@b>" -> "a@b"; anything else is kept as Postfix gave it. */
static char *
strip_brackets(const char *s)
{
	size_t n = strlen(s);

	if (n >= 2 && s[0] == '<' && s[n - 1] == '>')
		return strndup(s + 1, n - 2);
	return strdup(s);
}

/*
 * A permanent refusal of an address (or its DSN parameters) that the
 * queue file cannot carry.  The reply and the log name the problem,
 * never the address: its bytes are the client's.
 */
static sfsistat
refuse_address(SMFICTX *ctx, struct conn *c, const char *code,
    const char *xcode, const char *what, const char *why)
{
	const char	*i = smfi_getsymval(ctx, "i");
	char		 text[160];

	snprintf(text, sizeof(text), "%s refused: %s", what, why);
	if (smfi_setreply(ctx, (char *)code, (char *)xcode, text) !=
	    MI_SUCCESS)
		log_warnx("could not set the %s reply text", code);
	/* Postfix has no queue id yet at MAIL; the client says who. */
	log_info("%s: %s %s %s (client %s[%s])",
	    i != NULL && queueid_valid(i) ? i : "NOQUEUE", code, xcode, text,
	    c->client_name, c->client_addr);
	return SMFIS_REJECT;
}

static sfsistat
mlfi_envfrom(SMFICTX *ctx, char **argv)
{
	struct conn	*c = conn_of(ctx, "MAIL");
	struct txn	*t;
	const char	*auth = smfi_getsymval(ctx, "{auth_type}");
	const char	*why;

	if (c == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	/* MAIL starts a new transaction, whatever came before. */
	txn_abort(c);
	if (argv[0] != NULL && strlen(argv[0]) > MAX_PATH)
		return refuse_address(ctx, c, "553", "5.1.7", "Sender address",
		    PATH_TOO_LONG);
	if (!capture_transaction(1)) {
		/* Shutting down: DATA will answer TEMPFAIL. */
		return carry_on(c, SMFIP_NR_MAIL);
	}
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->sender = strip_brackets(argv[0] ? argv[0] : "")) == NULL ||
	    (auth != NULL && auth[0] != '\0' &&
	    (t->auth_type = strdup(auth)) == NULL)) {
		if (t != NULL)
			txn_free(t);
		else
			capture_transaction(-1);
		/* No transaction: DATA will answer TEMPFAIL. */
		log_warnx("out of memory at MAIL FROM");
		return carry_on(c, SMFIP_NR_MAIL);
	}
	if (t->sender[0] != '\0' && !qfile_addr_ok(t->sender, &why)) {
		txn_free(t);
		return refuse_address(ctx, c, "553", "5.1.7", "Sender address",
		    why);
	}
	t->envelope = strlen(t->sender) + (t->auth_type ?
	    strlen(t->auth_type) : 0);
	t->esmtp_args = argv[0] != NULL && argv[1] != NULL;
	c->txn = t;
	return carry_on(c, SMFIP_NR_MAIL);
}

/* Keep NOTIFY= and ORCPT= parameters for the E line of this recipient. */
static char *
dsn_params(char **argv)
{
	char	*buf = NULL;
	size_t	 size = 0;
	FILE	*f;
	int	 n = 0, bad;

	for (char **a = argv; *a != NULL; a++) {
		if (strncasecmp(*a, "NOTIFY=", 7) != 0 &&
		    strncasecmp(*a, "ORCPT=", 6) != 0)
			continue;
		if (n == 0 && (f = open_memstream(&buf, &size)) == NULL)
			return NULL;
		fprintf(f, "%s%s", n++ ? " " : "", *a);
	}
	if (n == 0)
		return NULL;
	bad = ferror(f);
	if (fclose(f) != 0 || bad) {
		free(buf);
		return NULL;
	}
	return buf;
}

/*
 * What a recipient costs the envelope budget: its address and parameters
 * (we keep NOTIFY and ORCPT; count them all) and its struct qrcpt.
 */
static size_t
rcpt_cost(char **argv)
{
	size_t n = sizeof(struct qrcpt);

	for (char **a = argv; *a != NULL; a++)
		n += strlen(*a) + 1;
	return n;
}

/*
 * 1 when this recipient still fits Milter Max Envelope Size.  Past it the
 * client hears 452 4.5.3 and sends the rest in a later transaction
 * (RFC 5321 4.5.3.1.10), so no envelope costs capture unbounded memory.
 */
static int
envelope_fits(struct txn *t, size_t cost)
{
	size_t max;

	pthread_mutex_lock(&capture.lock);
	max = capture.set.milter_max_envelope;
	pthread_mutex_unlock(&capture.lock);
	if (t->envelope <= max && cost <= max - t->envelope) {
		t->envelope += cost;
		return 1;
	}
	if (!t->envelope_full)
		log_info("envelope reached Milter Max Envelope Size (%zu bytes) "
		    "at %zu recipients: 452 to the rest", max, t->nrcpt);
	t->envelope_full = 1;
	return 0;
}

/* A recipient refused after it was counted: it costs the budget nothing. */
static sfsistat
refuse_rcpt(SMFICTX *ctx, struct conn *c, char **argv, const char *code,
    const char *xcode, const char *what, const char *why)
{
	struct qrcpt *r = &c->txn->rcpts[c->txn->nrcpt];

	free(r->addr);
	free(r->dsn);
	c->txn->envelope -= rcpt_cost(argv);
	return refuse_address(ctx, c, code, xcode, what, why);
}

static sfsistat
mlfi_envrcpt(SMFICTX *ctx, char **argv)
{
	struct conn	*c = conn_of(ctx, "RCPT");
	struct txn	*t;
	struct qrcpt	*r;
	const char	*why;

	if (c == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	t = c->txn;
	if (t == NULL || argv[0] == NULL)
		return carry_on(c, SMFIP_NR_RCPT);
	if (strlen(argv[0]) > MAX_PATH)
		return refuse_address(ctx, c, "553", "5.1.3",
		    "Recipient address", PATH_TOO_LONG);
	if (!envelope_fits(t, rcpt_cost(argv)))
		return refuse(ctx, "452", "4.5.3", "Too many recipients");
	if (t->nrcpt == t->rcpt_cap) {
		size_t ncap = t->rcpt_cap ? t->rcpt_cap * 2 : 4;

		if (ncap > MAX_RECIPIENTS ||
		    (r = reallocarray(t->rcpts, ncap, sizeof(*r))) == NULL) {
			txn_fail(t, "cannot keep %zu recipients", ncap);
			return carry_on(c, SMFIP_NR_RCPT);
		}
		t->rcpts = r;
		t->rcpt_cap = ncap;
	}
	t->esmtp_args |= argv[1] != NULL;
	r = &t->rcpts[t->nrcpt];
	r->addr = strip_brackets(argv[0]);
	r->dsn = dsn_params(argv + 1);
	if (r->addr == NULL) {
		free(r->dsn);
		txn_fail(t, "out of memory at RCPT TO");
	} else if (!qfile_addr_ok(r->addr, &why)) {
		/* The other recipients of this transaction are unaffected. */
		return refuse_rcpt(ctx, c, argv, "553", "5.1.3",
		    "Recipient address", why);
	} else if (r->dsn != NULL && !qfile_dsn_ok(r->dsn, &why)) {
		return refuse_rcpt(ctx, c, argv, "501", "5.5.4",
		    "DSN parameters", why);
	} else
		t->nrcpt++;
	return carry_on(c, SMFIP_NR_RCPT);
}

/* The queue id: Postfix's {i} if it is a safe file name, else a new one. */
static void
choose_queue_id(SMFICTX *ctx, struct txn *t)
{
	const char	*i = smfi_getsymval(ctx, "i");
	int		 type;

	if (i != NULL && queueid_valid(i)) {
		snprintf(t->queue_id, sizeof(t->queue_id), "%s", i);
		return;
	}
	pthread_mutex_lock(&capture.lock);
	type = capture.set.queue_type;
	pthread_mutex_unlock(&capture.lock);
	if (queueid_new(type, t->queue_id, sizeof(t->queue_id)) == -1)
		t->queue_id[0] = '\0';
	else
		log_info("%s: no usable queue id from Postfix (%s), using a "
		    "new one", t->queue_id, i ? "unsafe" : "missing");
}

/* Make sure this connection has a live channel to the current spooler. */
static int
conn_channel(struct conn *c)
{
	unsigned gen;

	pthread_mutex_lock(&capture.lock);
	gen = capture.control_gen;
	pthread_mutex_unlock(&capture.lock);
	if (c->chan != -1 && c->chan_gen == gen) {
		/* A restarting spooler hangs up idle sessions: notice. */
		struct pollfd pfd = { c->chan, POLLIN, 0 };

		if (poll(&pfd, 1, 0) == 0)
			return 0;
	}
	conn_drop_channel(c);
	c->chan = capture_session_channel(&c->chan_gen);
	return c->chan == -1 ? -1 : 0;
}

static char *
make_head(struct conn *c, size_t *len)
{
	struct txn	*t = c->txn;
	struct envelope	 e;

	memset(&e, 0, sizeof(e));
	e.queue_id = t->queue_id;
	e.sender = t->sender;
	e.auth_type = t->auth_type;
	e.rcpts = t->rcpts;
	e.nrcpt = t->nrcpt;
	e.helo = c->helo;
	e.client_name = c->client_name;
	e.client_addr = c->client_addr;
	e.by_host = c->by_host;
	e.tls_version = c->tls_version;
	e.cipher = c->cipher;
	e.cipher_bits = c->cipher_bits;
	e.client_cert = c->client_cert;
	/*
	 * Postfix tells a milter the HELO or EHLO argument but not which
	 * command carried it (its esmtp flag stops short of milter8.c).  EHLO
	 * it was when the client used what only EHLO offers: an ESMTP
	 * parameter on MAIL or RCPT, STARTTLS or AUTH.  A client that sent
	 * EHLO and used none of them reads as SMTP.
	 */
	e.ehlo = t->esmtp_args || c->tls_version != NULL ||
	    t->auth_type != NULL;
	e.when = time(NULL);
	return received_head(&e, len);
}

/*
 * Open the queue file: BEGIN carries the first part of the head (a
 * thousand recipients do not fit one record), the rest follows as DATA.
 * The spooler answers, so a spool that cannot take the message is
 * refused before the client sends the body.
 */
static int
txn_begin(SMFICTX *ctx, struct conn *c)
{
	struct txn	*t = c->txn;
	struct ipc_begin b;
	char		*head;
	size_t		 len, first;

	if (t->queue_id[0] == '\0')
		choose_queue_id(ctx, t);
	if (t->queue_id[0] == '\0') {
		txn_fail(t, "no queue id");
		return -1;
	}
	if ((head = make_head(c, &len)) == NULL) {
		txn_fail(t, "envelope not writable (no recipient, a SASL "
		    "method or a macro the queue file cannot carry)");
		return -1;
	}
	if ((t->out = malloc(STAGING_SIZE)) == NULL) {
		free(head);
		txn_fail(t, "out of memory");
		return -1;
	}
	memset(&b, 0, sizeof(b));
	snprintf(b.queue_id, sizeof(b.queue_id), "%s", t->queue_id);
	first = len < IPC_MAX_PAYLOAD - sizeof(b) ? len :
	    IPC_MAX_PAYLOAD - sizeof(b);
	/*
	 * A channel that broke before the spooler took the message (it was
	 * restarted) is replaced once: nothing of this message was written.
	 */
	for (int tries = 0, r = HUNG_UP; tries < 2 && r == HUNG_UP; tries++) {
		t->error[0] = '\0';
		if (conn_channel(c) == -1) {
			txn_fail(t, "spooler not available");
			break;
		}
		if ((r = txn_send(c, MSG_CAPTURE_BEGIN, &b, sizeof(b), head,
		    first)) == 0)
			r = await_reply(c, MSG_SPOOLER_BEGUN, NULL, 0, NULL);
		t->begun = r == 0;
	}
	if (!t->begun) {
		free(head);
		return -1;
	}
	txn_put(c, (const unsigned char *)head + first, len - first);
	free(head);
	return 0;
}

/*
 * Postfix with milter_protocol < 4 sends no DATA: open the queue file at
 * the first header instead.  Failures then surface at end of message.
 */
static int
txn_ready(SMFICTX *ctx, struct conn *c)
{
	struct txn *t = c->txn;

	if (t == NULL || t->error[0] != '\0' || t->blacklisted)
		return 0;
	if (!t->begun) {
		choose_queue_id(ctx, t);
		/* No DATA stage to refuse at: refuse at end of message. */
		if (blacklisted(c)) {
			t->blacklisted = 1;
			return 0;
		}
		if (txn_begin(ctx, c) == -1)
			return 0;
	}
	return t->begun;
}

/* Milter Scanner: is this transaction's sender, client or recipient on
 * MailScanner's blacklist (and not whitelisted)? */
static int
blacklisted(struct conn *c)
{
	struct txn		*t = c->txn;
	struct rule_query	 q;
	const char		**rcpts = calloc(t->nrcpt ? t->nrcpt : 1,
				    sizeof(*rcpts));
	int			 black;

	if (rcpts == NULL)
		return 0;	/* MailScanner still applies its rules */
	for (size_t i = 0; i < t->nrcpt; i++)
		rcpts[i] = t->rcpts[i].addr;
	memset(&q, 0, sizeof(q));
	q.sender = t->sender;
	q.rcpts = rcpts;
	q.nrcpt = t->nrcpt;
	q.client_addr = c->client_addr;
	q.client_name = c->client_name;
	black = scanner_blacklisted(t->queue_id[0] ? t->queue_id : "-", &q,
	    t->rule, sizeof(t->rule));
	free(rcpts);
	return black;
}

static sfsistat
reject_blacklisted(SMFICTX *ctx, struct conn *c)
{
	char text[MSM_NAME_LEN];

	pthread_mutex_lock(&capture.lock);
	snprintf(text, sizeof(text), "%s", capture.set.milter_reject_text);
	pthread_mutex_unlock(&capture.lock);
	if (smfi_setreply(ctx, "554", "5.7.1", text) != MI_SUCCESS)
		log_warnx("could not set the 554 reply text");
	capture_audit_reject(c->client_addr, c->client_name, c->helo,
	    c->txn->sender, c->txn->rcpts, c->txn->nrcpt, c->txn->rule);
	txn_abort(c);
	return SMFIS_REJECT;
}

/* All recipients are known and the body has not been sent yet. */
static sfsistat
mlfi_data(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx, "DATA");

	if (c == NULL || c->txn == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	choose_queue_id(ctx, c->txn);
	if (c->txn->error[0] == '\0' && blacklisted(c))
		return reject_blacklisted(ctx, c);
	if (c->txn->error[0] != '\0' || txn_begin(ctx, c) == -1) {
		log_warnx("%s: tempfail at DATA (%s)", c->txn->queue_id[0] ?
		    c->txn->queue_id : "-", c->txn->error);
		capture_audit_tempfail(c->txn->queue_id, c->txn->error);
		txn_abort(c);
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	}
	return SMFIS_CONTINUE;
}

static sfsistat
mlfi_header(SMFICTX *ctx, char *name, char *value)
{
	struct conn *c = conn_of(ctx, "header");

	if (c == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	if (txn_ready(ctx, c)) {
		txn_put_lf(c, (const unsigned char *)name, strlen(name));
		txn_putc(c, ':');
		if (!(c->proto & SMFIP_HDR_LEADSPC))
			txn_putc(c, ' ');
		txn_put_lf(c, (const unsigned char *)value, strlen(value));
		txn_put_pending(c);
		txn_putc(c, '\n');
	}
	return carry_on(c, SMFIP_NR_HDR);
}

static sfsistat
mlfi_eoh(SMFICTX *ctx)
{
	struct conn *c = conn_of(ctx, "end of headers");

	if (c == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	if (txn_ready(ctx, c))
		txn_putc(c, '\n');
	return carry_on(c, SMFIP_NR_EOH);
}

static sfsistat
mlfi_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	struct conn *c = conn_of(ctx, "body");

	if (c == NULL)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	if (txn_ready(ctx, c))
		txn_put_lf(c, chunk, len);
	return carry_on(c, SMFIP_NR_BODY);
}

/* What the spooler may answer to COMMIT. */
union spooler_answer {
	struct ipc_committed	ok;
	struct ipc_verdict	verdict;
	struct ipc_failed	failed;
};

/*
 * Wait for the spooler's answer to BEGIN or COMMIT: want (BEGUN or
 * COMMITTED, with want_size bytes into out; or, for COMMITTED, a
 * VERDICT in Full Milter Scanner mode, in out->verdict with *got set to
 * its type) or FAILED with a reason.  0, HUNG_UP when the spooler went
 * away, -1 otherwise.  A scan gets Milter Clamd Timeout on top of the
 * commit bound: the spooler's own bound on clamd runs out first.
 */
static int
await_reply(struct conn *c, uint32_t want, void *out, size_t want_size,
    uint32_t *got)
{
	union spooler_answer reply;
	struct ipc_msg	 m = { .data = (void *)&reply, .cap = sizeof(reply) };
	struct pollfd	 pfd = { c->chan, POLLIN, 0 };
	int		 timeout, r;

	pthread_mutex_lock(&capture.lock);
	timeout = (int)capture.set.milter_commit_timeout * 1000;
	if (want == MSG_SPOOLER_COMMITTED && capture.set.milter_full_scanner)
		timeout += (int)capture.set.milter_clamd_timeout * 1000;
	pthread_mutex_unlock(&capture.lock);

	if (poll(&pfd, 1, timeout) != 1) {
		txn_fail(c->txn, "no answer from the spooler within %d s",
		    timeout / 1000);
		conn_drop_channel(c);
		return -1;
	}
	if ((r = ipc_recv(c->chan, &m)) != 1) {
		int err = errno;

		txn_fail(c->txn, "spooler channel %s",
		    r == 0 ? "closed" : strerror(err));
		conn_drop_channel(c);
		return r == 0 || err == ECONNRESET ? HUNG_UP : -1;
	}
	if (m.hdr.type == want && ipc_expect_size(&m, want_size) == 0) {
		if (want_size > 0)
			memcpy(out, &reply, want_size);
		if (got != NULL)
			*got = want;
		return 0;
	}
	if (m.hdr.type == MSG_SPOOLER_VERDICT && got != NULL &&
	    ipc_expect_size(&m, sizeof(reply.verdict)) == 0 &&
	    reply.verdict.result < SCAN_RESULT_COUNT &&
	    reply.verdict.reserved == 0 &&
	    ipc_string_ok(reply.verdict.queue_id,
	    sizeof(reply.verdict.queue_id)) == 0 &&
	    ipc_string_ok(reply.verdict.signature,
	    sizeof(reply.verdict.signature)) == 0) {
		memcpy(out, &reply.verdict, sizeof(reply.verdict));
		*got = MSG_SPOOLER_VERDICT;
		return 0;
	}
	if (m.hdr.type == MSG_SPOOLER_FAILED &&
	    ipc_expect_size(&m, sizeof(reply.failed)) == 0 &&
	    ipc_string_ok(reply.failed.reason, sizeof(reply.failed.reason)) ==
	    0) {
		txn_fail(c->txn, "%s", reply.failed.reason);
		return -1;
	}
	txn_fail(c->txn, "unexpected %s from the spooler",
	    ipc_type_name(m.hdr.type));
	conn_drop_channel(c);
	return -1;
}

/*
 * Full Milter Scanner mode: clamd's verdict is the SMTP reply.  The
 * spooler removed the file before it answered, so whatever we say,
 * nothing of this message stays with us: ACCEPT hands it back to
 * Postfix, which delivers it itself.
 */
static sfsistat
answer_verdict(SMFICTX *ctx, struct conn *c, const struct ipc_verdict *v)
{
	struct txn	*t = c->txn;
	char		 text[IPC_SIGNATURE_MAX + 64];
	int		 reject_oversize;
	sfsistat	 r;

	pthread_mutex_lock(&capture.lock);
	reject_oversize = capture.set.milter_clamd_oversize ==
	    MSM_OVERSIZE_REJECT;
	pthread_mutex_unlock(&capture.lock);
	switch (v->result) {
	case SCAN_CLEAN:
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu: accepted, clean "
		    "(clamd): Postfix delivers it", t->queue_id, t->sender,
		    (unsigned long long)v->size, t->nrcpt);
		r = SMFIS_ACCEPT;
		break;
	case SCAN_VIRUS:
		/* clamd_reply.c let only printable ASCII through; no % */
		snprintf(text, sizeof(text), "Virus found: %s", v->signature);
		for (char *p = text; *p != '\0'; p++)
			if (*p == '%' || *p == '\\')
				*p = '_';
		log_info("%s: from=<%s>, size=%llu, nrcpt=%zu: reject: 554 "
		    "5.7.1 virus %s", t->queue_id, t->sender,
		    (unsigned long long)v->size, t->nrcpt, v->signature);
		r = refuse(ctx, "554", "5.7.1", text);
		break;
	case SCAN_OVERSIZE:
		log_warnx("%s: from=<%s>, size=%llu, nrcpt=%zu: %s: too large "
		    "for clamd's limits (%s)", t->queue_id, t->sender,
		    (unsigned long long)v->size, t->nrcpt, reject_oversize ?
		    "reject: 552 5.3.4" : "tempfail: 451 4.7.1", v->signature);
		r = reject_oversize ? refuse(ctx, "552", "5.3.4", "Message too "
		    "large to be scanned") : refuse(ctx, "451", "4.7.1",
		    "Message too large to be scanned, try again later");
		break;
	default:
		log_warnx("%s: tempfail (not scanned: %s)", t->queue_id,
		    v->signature);
		r = refuse(ctx, "451", "4.7.1", "Virus scanner temporarily "
		    "unavailable, try again later");
		break;
	}
	txn_free(t);	/* the spooler holds nothing: no abort to send */
	c->txn = NULL;
	return r;
}

static sfsistat
mlfi_eom(SMFICTX *ctx)
{
	struct conn		*c = conn_of(ctx, "end of message");
	struct txn		*t = c != NULL ? c->txn : NULL;
	union spooler_answer	 a;
	struct ipc_committed	 done;
	uint64_t		 eom_us = clock_now_us();
	uint32_t		 got = MSG_NONE;

	memset(&a, 0, sizeof(a));
	if (t != NULL && t->blacklisted)
		return reject_blacklisted(ctx, c);
	if (t == NULL || !t->begun)
		return tempfail(ctx, PUBLIC_TEMPFAIL);
	txn_put_pending(c);
	txn_flush(c);
	if (t->error[0] == '\0' &&
	    txn_send(c, MSG_CAPTURE_COMMIT, NULL, 0, NULL, 0) == 0 &&
	    await_reply(c, MSG_SPOOLER_COMMITTED, &a, sizeof(a.ok), &got) ==
	    0 && got == MSG_SPOOLER_VERDICT)
		return answer_verdict(ctx, c, &a.verdict);
	memcpy(&done, &a.ok, sizeof(done));
	if (got == MSG_SPOOLER_COMMITTED &&
	    ipc_string_ok(done.queue_id, sizeof(done.queue_id)) == 0) {
		capture_report_committed(t->queue_id, &done, t->sender,
		    t->nrcpt, eom_us);
		txn_free(t);	/* committed: a later abort must not touch it */
		c->txn = NULL;
		return SMFIS_DISCARD;
	}
	log_warnx("%s: tempfail (%s)", t->queue_id, t->error);
	capture_audit_tempfail(t->queue_id, t->error);
	txn_abort(c);
	return tempfail(ctx, PUBLIC_TEMPFAIL);
}

static sfsistat
mlfi_abort(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);	/* nothing to answer */

	if (c != NULL) {
		pthread_mutex_lock(&idle_lock);
		c->last = monotonic();		/* RSET is a sign of life */
		pthread_mutex_unlock(&idle_lock);
		txn_abort(c);
	}
	return SMFIS_CONTINUE;
}

static sfsistat
mlfi_close(SMFICTX *ctx)
{
	struct conn *c = smfi_getpriv(ctx);	/* every path ends here */

	if (c == NULL)
		return SMFIS_CONTINUE;
	idle_forget(c);
	if (c->slot) {
		pthread_mutex_lock(&capture.lock);
		capture.sessions--;
		pthread_mutex_unlock(&capture.lock);
	}
	txn_abort(c);
	conn_drop_channel(c);
	free(c->helo);
	free(c->tls_version);
	free(c->cipher);
	free(c->cipher_bits);
	free(c);
	smfi_setpriv(ctx, NULL);
	return SMFIS_CONTINUE;
}

struct smfiDesc capture_milter = {
	.xxfi_name = "msmilter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = 0,		/* we never change a message */
	.xxfi_connect = mlfi_connect,
	.xxfi_helo = mlfi_helo,
	.xxfi_envfrom = mlfi_envfrom,
	.xxfi_envrcpt = mlfi_envrcpt,
	.xxfi_header = mlfi_header,
	.xxfi_eoh = mlfi_eoh,
	.xxfi_body = mlfi_body,
	.xxfi_eom = mlfi_eom,
	.xxfi_abort = mlfi_abort,
	.xxfi_close = mlfi_close,
	.xxfi_unknown = NULL,
	/* Without a DATA callback Postfix's replies stall ~43 ms on TCP. */
	.xxfi_data = mlfi_data,
	.xxfi_negotiate = mlfi_negotiate,
};
