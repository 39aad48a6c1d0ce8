/*
 * The spooler's audit event: "commit", for every file it makes durable
 * in milterin (capture's messages and the relay's requeues).  What it
 * reports is what it wrote: a tap on spool_write hashes the bytes as they
 * go to the file (BLAKE2b-256, no second read) and reads the envelope
 * lines and our Received header from them.  Trusts nothing it taps: the
 * lines are capture's, and only copied, bounded, into the event.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "audit_ipc.h"
#include "log.h"
#include "spool.h"

#define TAP_LINE_MAX	4096		/* longer lines are skipped */
#define TAP_HEAD_MAX	(1024 * 1024)	/* no Received header after this */
#define TAP_RCPT_BYTES	(IPC_MAX_PAYLOAD - 8192)	/* the rest: omitted */
#define ACK_TIMEOUT_MS	5000

enum tap_state { TAP_ENVELOPE, TAP_HEADERS, TAP_DONE };

struct spool_tap {
	crypto_generichash_state hash;
	enum tap_state	 state;
	char		 line[TAP_LINE_MAX];
	size_t		 llen;
	int		 overlong;	/* skipping to the end of a long line */
	uint64_t	 seen;		/* bytes read while not done */
	char		 sender[1024], helo[256], client_name[256];
	char		 client_addr[64];
	char		*rcpts;		/* packed, NUL-terminated each */
	size_t		 rlen, rcap, nrcpt;
	uint32_t	 omitted;
};

static int (*parent_record)(void *);
static void *parent_arg;
static unsigned acks;

int
spool_audit_mode(const struct msm_settings *s)
{
	if (s->milter_audit_log[0] == '\0')	/* metrics count commits */
		return s->milter_metrics_file[0] != '\0' ? SPOOL_AUDIT_ON :
		    SPOOL_AUDIT_OFF;
	return s->milter_audit_sync == MSM_AUDIT_SYNC_EVERY ?
	    SPOOL_AUDIT_ACK : SPOOL_AUDIT_ON;
}

void
spool_audit_init(int (*record)(void *), void *arg)
{
	parent_record = record;
	parent_arg = arg;
}

void
spool_audit_acked(void)
{
	acks++;
}

struct spool_tap *
spool_tap_new(void)
{
	struct spool_tap *t = calloc(1, sizeof(*t));

	if (t == NULL) {
		log_warn("audit: no memory to follow a queue file; it gets no "
		    "commit record");
		return NULL;
	}
	crypto_generichash_init(&t->hash, NULL, 0, 32);
	return t;
}

void
spool_tap_free(struct spool_tap *t)
{
	if (t == NULL)
		return;
	free(t->rcpts);
	free(t);
}

static void
copy(char *dst, size_t size, const char *s, size_t n)
{
	if (n >= size)
		n = size - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static void
add_rcpt(struct spool_tap *t, const char *s, size_t n)
{
	size_t ncap;

	if (t->omitted > 0 || t->rlen + n + 1 > TAP_RCPT_BYTES) {
		t->omitted++;
		return;
	}
	if (t->rlen + n + 1 > t->rcap) {
		char *np;

		ncap = t->rcap ? t->rcap * 2 : 1024;
		while (ncap < t->rlen + n + 1)
			ncap *= 2;
		if ((np = realloc(t->rcpts, ncap)) == NULL) {
			t->omitted++;
			return;
		}
		t->rcpts = np;
		t->rcap = ncap;
	}
	memcpy(t->rcpts + t->rlen, s, n);
	t->rcpts[t->rlen + n] = '\0';
	t->rlen += n + 1;
	t->nrcpt++;
}

/* "Received: from HELO (NAME [ADDR])" or "... (NAME)", as received.c. */
static void
received(struct spool_tap *t, const char *p, size_t n)
{
	const char *end = p + n, *sp, *close;

	p += strlen("Received: from ");
	if ((sp = memchr(p, ' ', (size_t)(end - p))) == NULL)
		sp = end;
	copy(t->helo, sizeof(t->helo), p, (size_t)(sp - p));
	if (end - sp < 3 || sp[1] != '(' || end[-1] != ')')
		return;
	p = sp + 2;
	close = end - 1;
	if ((sp = memchr(p, ' ', (size_t)(close - p))) == NULL) {
		copy(t->client_name, sizeof(t->client_name), p,
		    (size_t)(close - p));
		return;
	}
	copy(t->client_name, sizeof(t->client_name), p, (size_t)(sp - p));
	if (close - sp >= 3 && sp[1] == '[' && close[-1] == ']')
		copy(t->client_addr, sizeof(t->client_addr), sp + 2,
		    (size_t)(close - 1 - (sp + 2)));
}

static void
tap_line(struct spool_tap *t, const char *p, size_t n)
{
	static const char rcvd[] = "Received: from ";

	if (t->state == TAP_ENVELOPE && n >= 3 && p[0] != '\0' && p[1] == '<' &&
	    p[n - 1] == '>' && strchr("SOEA", p[0]) != NULL) {
		if (p[0] == 'S')
			copy(t->sender, sizeof(t->sender), p + 2, n - 3);
		else if (p[0] == 'O')
			add_rcpt(t, p + 2, n - 3);
		return;
	}
	t->state = TAP_HEADERS;
	if (n == 0)
		t->state = TAP_DONE;	/* end of headers: none of ours */
	else if (n > sizeof(rcvd) - 1 && memcmp(p, rcvd,
	    sizeof(rcvd) - 1) == 0) {
		received(t, p, n);
		t->state = TAP_DONE;
	}
}

/* Whole lines out of the bytes as they pass. */
static void
tap_lines(struct spool_tap *t, const char *p, size_t len)
{
	const char *end = p + len;

	while (p < end && t->state != TAP_DONE) {
		const char	*nl = memchr(p, '\n', (size_t)(end - p));
		size_t		 n = (size_t)((nl ? nl : end) - p);

		if (!t->overlong && t->llen + n <= sizeof(t->line)) {
			memcpy(t->line + t->llen, p, n);
			t->llen += n;
		} else
			t->overlong = 1;
		if (nl == NULL)
			return;
		if (!t->overlong)
			tap_line(t, t->line, t->llen);
		else if (t->state == TAP_ENVELOPE)
			t->state = TAP_HEADERS;
		t->llen = 0;
		t->overlong = 0;
		p = nl + 1;
	}
}

void
spool_tap_update(struct spool_tap *t, const void *p, size_t len)
{
	if (t == NULL)
		return;
	crypto_generichash_update(&t->hash, p, len);
	if (t->state == TAP_DONE)
		return;
	t->seen += len;
	tap_lines(t, p, len);
	if (t->seen > TAP_HEAD_MAX)
		t->state = TAP_DONE;
}

void
spool_tap_head(struct spool_tap *t, const void *p, size_t len)
{
	if (t == NULL || t->state == TAP_DONE)
		return;
	t->seen += len;
	tap_lines(t, p, len);
	/* The file's first byte is a header: nothing after is ours. */
	t->state = TAP_DONE;
}

/* Until the parent says the record is on disk, or ACK_TIMEOUT_MS. */
static void
wait_ack(void)
{
	struct timespec	 t0, t1;
	long		 left = ACK_TIMEOUT_MS;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (acks == 0 && left > 0) {
		struct pollfd pfd = { IPC_PARENT_FD, POLLIN, 0 };

		if (poll(&pfd, 1, (int)left) == 1 &&
		    parent_record(parent_arg) == -1)
			fatalx("parent channel closed or broken");
		clock_gettime(CLOCK_MONOTONIC, &t1);
		left = ACK_TIMEOUT_MS - ((t1.tv_sec - t0.tv_sec) * 1000 +
		    (t1.tv_nsec - t0.tv_nsec) / 1000000);
	}
	if (acks == 0)
		log_warnx("audit: the parent did not confirm a commit record "
		    "within %d s; the commit goes on", ACK_TIMEOUT_MS / 1000);
	else
		acks--;
}

/* The event of a commit or a scan, strings after the sender left to us. */
static void
audit_send(const struct spool_dir *d, struct spool_file *f,
    struct audit_msg *m)
{
	struct spool_tap *t = f->tap;

	m->flags = d->audit == SPOOL_AUDIT_ACK && parent_record != NULL ?
	    AUDIT_F_ACK : 0;
	m->size = f->size;
	crypto_generichash_final(&t->hash, m->digest, sizeof(m->digest));
	m->str[0] = f->queue_id;
	m->str[1] = t->client_addr;
	m->str[2] = t->client_name;
	m->str[3] = t->helo;
	m->str[4] = t->sender;
	m->packed = t->rcpts;
	m->nrcpt = t->nrcpt;
	m->omitted = t->omitted;
	if (audit_ipc_send(IPC_PARENT_FD, MSG_SPOOLER_AUDIT, m) == -1) {
		log_warn("%s: audit: sending the %s record", f->queue_id,
		    audit_event_name(m->event));
		return;
	}
	if (m->flags & AUDIT_F_ACK)
		wait_ack();
}

void
spool_audit_scan(const struct spool_dir *d, struct spool_file *f,
    const struct ipc_verdict *v)
{
	static const char *const results[SCAN_RESULT_COUNT] = { "clean",
	    "virus", "tempfail", "oversize" };
	struct audit_msg m;

	if (f->tap == NULL || d->audit == SPOOL_AUDIT_OFF)
		return;
	memset(&m, 0, sizeof(m));
	m.event = AUDIT_EV_SCAN;
	m.str[5] = v->result < SCAN_RESULT_COUNT ? results[v->result] :
	    "tempfail";
	m.str[6] = v->signature;
	audit_send(d, f, &m);
}

void
spool_audit_commit(const struct spool_dir *d, struct spool_file *f)
{
	struct spool_tap	*t = f->tap;
	struct audit_msg	 m;

	if (t == NULL || d->audit == SPOOL_AUDIT_OFF)
		return;
	memset(&m, 0, sizeof(m));
	m.event = AUDIT_EV_COMMIT;
	audit_send(d, f, &m);
}
