/*
 * The audit log writer (DESIGN.md, Audit log).  The parent alone appends
 * one JSON line per event: what the children report over their channels
 * (each only its own kinds, checked by audit_ipc_parse and the broker),
 * and its own start, stop, reload, child exits, file starts, epoch closes
 * and checkpoints.  Each line carries the hash of the line before it and,
 * with a key, a MAC under the epoch's key, which evolves one way when the
 * epoch is sealed.  Nothing here may stop mail: a record that cannot be
 * written is lost, counted and said loudly, and a "lost" record tells the
 * log once writing works again.  Only Milter Audit Sync = every makes the
 * commit path wait, for the spooler's commit records.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_int.h"
#include "audit_ipc.h"
#include "log.h"
#include "audit_hooks.h"
#include "metrics.h"

#define REOPEN_SECONDS	1	/* between tries to open a log we lost */
#define LOST_LOG_SECONDS 60	/* between loud lines while nothing is written */

static struct audit the_audit = { .fd = -1, .keyfd = -1, .treefd = -1 };

int64_t
audit_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* ---- one line ---- */

/* Loud, but at most once a minute while the log stays unwritable. */
static void
complain(struct audit *a, int err)
{
	time_t now = time(NULL);

	if (a->lost_logged != 0 && now - a->lost_logged < LOST_LOG_SECONDS)
		return;
	a->lost_logged = now;
	log_warnx("AUDIT LOG NOT WRITTEN: %s: %s; %llu record%s lost so far "
	    "(mail still flows)", a->path, strerror(err),
	    (unsigned long long)a->lost_total, a->lost_total == 1 ? "" : "s");
}

/* The whole line or nothing: a partial line (disk full) is cut off. */
static int
write_line(struct audit *a, const char *p, size_t len)
{
	ssize_t	 n;
	int	 err;

	if (a->fd == -1) {
		errno = EBADF;
		return -1;
	}
	do {
		n = write(a->fd, p, len);
	} while (n == -1 && errno == EINTR);
	if (n == (ssize_t)len) {
		a->size += len;
		return 0;
	}
	err = n == -1 ? errno : ENOSPC;
	if (n > 0 && ftruncate(a->fd, (off_t)a->size) == -1)
		log_warn("audit: cannot cut a partial line off %s", a->path);
	errno = err;
	return -1;
}

/* {"seq":..,"time":..,"epoch":..,"event":..,<fields>,"prev":..,"mac":..} */
static void
build(struct audit *a, const char *event, const struct jbuf *fields)
{
	char		 t[32];
	unsigned char	 mac[AUDIT_HASH];

	jb_reset(&a->rec);
	jb_raw(&a->rec, "{", 1);
	jb_ku64(&a->rec, "seq", a->seq);
	audit_time_format(audit_now_us(), t);
	jb_kstr(&a->rec, "time", t);
	jb_ku64(&a->rec, "epoch", a->epoch);
	jb_kstr(&a->rec, "event", event);
	if (fields != NULL && fields->len > 0) {
		jb_raw(&a->rec, ",", 1);
		jb_raw(&a->rec, fields->p, fields->len);
	}
	jb_khex(&a->rec, "prev", a->prev, AUDIT_HASH);
	if (a->keyed) {
		audit_mac(a->mac_key, a->rec.p, a->rec.len, mac);
		jb_khex(&a->rec, "mac", mac, AUDIT_HASH);
	}
	jb_raw(&a->rec, "}", 1);
}

int
audit_emit(struct audit *a, const char *event, const struct jbuf *fields)
{
	unsigned char hash[AUDIT_HASH];

	build(a, event, fields);
	if (a->rec.failed || (fields != NULL && fields->failed)) {
		errno = ENOMEM;
		return -1;
	}
	audit_hash(a->rec.p, a->rec.len, hash);
	jb_raw(&a->rec, "\n", 1);
	if (a->rec.failed || write_line(a, a->rec.p, a->rec.len) == -1)
		return -1;
	memcpy(a->prev, hash, AUDIT_HASH);
	a->seq++;
	a->epoch_lines++;
	if (a->sync_every && fdatasync(a->fd) == -1)
		log_warn("audit: fsync %s", a->path);
	return 0;
}

/* ---- keys ---- */

void
audit_use_key(struct audit *a)
{
	audit_key_mac_key(a->key.key, a->mac_key);
}

/* After the log is on disk: the key file forgets every earlier key. */
int
audit_save_key(struct audit *a)
{
	char why[256];

	if (!a->keyed || a->keyfd == -1)
		return 0;
	if (audit_key_write(a->keyfd, &a->key, why, sizeof(why)) == -1) {
		log_warnx("AUDIT KEY NOT UPDATED: %s/%s: %s; an earlier key "
		    "stays on disk", "Milter Audit Key Dir", AUDIT_KEY_NAME, why);
		return -1;
	}
	return 0;
}

static int
read_node(void *arg, uint64_t index, unsigned char out[AUDIT_HASH])
{
	struct audit	*a = arg;
	off_t		 off = AUDIT_TREE_HEADER + (off_t)index * AUDIT_HASH;

	return pread(a->treefd, out, AUDIT_HASH, off) == AUDIT_HASH ? 0 : -1;
}

/* The path as packed hex strings for jb_kpacked. */
static void
packed_hex(const unsigned char (*path)[AUDIT_HASH], size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		audit_hex(path[i], AUDIT_HASH, out + i * AUDIT_HEX);
}

static void
checkpoint_fields(struct audit *a, const unsigned char pk[AUDIT_HASH],
    const unsigned char (*path)[AUDIT_HASH], size_t npath,
    const unsigned char sig[AUDIT_SIG])
{
	char packed[AUDIT_PATH_MAX * AUDIT_HEX];

	packed_hex(path, npath, packed);
	jb_reset(&a->aux);
	jb_ku64(&a->aux, "count", a->seq - 1);
	jb_khex(&a->aux, "head", a->prev, AUDIT_HASH);
	jb_ku64(&a->aux, "leaves", a->key.leaves);
	jb_khex(&a->aux, "pubkey", pk, AUDIT_HASH);
	jb_kpacked(&a->aux, "path", packed, npath);
	jb_khex(&a->aux, "sig", sig, AUDIT_SIG);
}

/*
 * Sign the chain so far with this epoch's Ed25519 key, whose public half
 * audit.pub's Merkle root vouches for; a copy goes to syslog authpriv.
 * A tree file we cannot read costs the checkpoint, never the epoch.
 */
static int
checkpoint(struct audit *a)
{
	unsigned char	 pk[AUDIT_HASH], sk[64], digest[AUDIT_HASH];
	unsigned char	 path[AUDIT_PATH_MAX][AUDIT_HASH], sig[AUDIT_SIG];
	size_t		 npath;

	if (audit_merkle_path(a->key.leaves, a->key.epoch, read_node, a, path,
	    &npath) == -1) {
		log_warnx("AUDIT CHECKPOINT SKIPPED: cannot read the Merkle "
		    "path of epoch %llu from %s", (unsigned long long)
		    a->key.epoch, AUDIT_TREE_NAME);
		return 0;
	}
	audit_key_sign_pair(a->key.key, pk, sk);
	audit_checkpoint_digest(a->key.epoch, a->seq - 1, a->prev,
	    a->key.leaves, pk, (const unsigned char (*)[AUDIT_HASH])path,
	    npath, digest);
	crypto_sign_detached(sig, NULL, digest, sizeof(digest), sk);
	sodium_memzero(sk, sizeof(sk));
	checkpoint_fields(a, pk, (const unsigned char (*)[AUDIT_HASH])path,
	    npath, sig);
	if (audit_emit(a, "checkpoint", &a->aux) == -1)
		return -1;
	syslog(LOG_AUTHPRIV | LOG_NOTICE, "msmilter audit checkpoint: %.*s",
	    (int)(a->rec.len - 1), a->rec.p);
	return 0;
}

static int rotate(struct audit *, const char *);

/* ---- epochs ---- */

/* The key's lifetime is over: chain only, in a segment of its own. */
static void
expire_key(struct audit *a)
{
	log_warnx("AUDIT KEY EXPIRED after %llu epochs: records are now "
	    "chained only, without MAC or checkpoint; run msmilter-audit "
	    "keygen and restart msmilter", (unsigned long long)a->key.leaves);
	audit_close_key(a);
	a->start = 0;
	a->epoch = audit_epoch_at(0, a->seconds, audit_now_us() / 1000000);
	a->epoch_lines = 0;
	rotate(a, "the audit key expired");
}

static void
next_epoch(struct audit *a)
{
	if (a->keyed && a->key.epoch + 1 >= a->key.leaves) {
		expire_key(a);
		return;
	}
	if (a->keyed) {
		audit_key_evolve(&a->key);	/* K(e) wiped */
		audit_use_key(a);
	}
	a->epoch++;
	a->epoch_lines = 0;
}

/* epoch_close for the open epoch, a checkpoint when asked, the next key. */
static int
close_epoch(struct audit *a, int with_checkpoint, int *closed_already)
{
	if (!*closed_already) {
		jb_reset(&a->aux);
		jb_ku64(&a->aux, "count", a->epoch_lines);
		jb_khex(&a->aux, "head", a->prev, AUDIT_HASH);
		if (audit_emit(a, "epoch_close", &a->aux) == -1)
			return -1;
		*closed_already = 1;
	}
	if (a->keyed && with_checkpoint && checkpoint(a) == -1)
		return -1;
	*closed_already = 0;
	next_epoch(a);
	return 0;
}

/* The log first, then the key: a key on disk never outruns the log. */
static void
seal_disk(struct audit *a)
{
	if (a->fd != -1 && fdatasync(a->fd) == -1) {
		log_warn("audit: fsync %s; the key is not evolved on disk",
		    a->path);
		return;
	}
	audit_save_key(a);
}

/*
 * Seal every epoch that has ended, empty ones and those that passed
 * while we were down included; the last one gets a checkpoint.  -1 when
 * a record could not be written (tried again with the next record).
 */
static int
advance(struct audit *a)
{
	int64_t		 now = audit_now_us() / 1000000;
	int		 sealed = 0, rc = 0;

	while (a->fd != -1 &&
	    a->epoch < audit_epoch_at(a->start, a->seconds, now)) {
		int last = a->epoch + 1 ==
		    audit_epoch_at(a->start, a->seconds, now);

		if (close_epoch(a, last, &a->close_written) == -1) {
			rc = -1;
			break;
		}
		sealed = 1;
	}
	if (sealed)
		seal_disk(a);
	return rc;
}

/* ---- files ---- */

/* path.YYYYmmddTHHMMSSZ (a -N suffix when taken), never replacing. */
int
audit_rename_aside(struct audit *a, char *base, size_t len)
{
	char		 stamp[32], target[MSM_PATH_LEN + 48];
	time_t		 now = time(NULL);
	struct tm	 tm;
	const char	*slash;

	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm);
	for (int i = 0; i < 100; i++) {
		snprintf(target, sizeof(target), i ? "%s.%s-%d" : "%s.%s",
		    a->path, stamp, i);
		if (renameat2(AT_FDCWD, a->path, AT_FDCWD, target,
		    RENAME_NOREPLACE) == 0) {
			slash = strrchr(target, '/');
			snprintf(base, len, "%s", slash ? slash + 1 : target);
			return 0;
		}
		if (errno != EEXIST)
			return -1;
	}
	return -1;
}

static void
sync_dir(const char *path)
{
	char		 dir[MSM_PATH_LEN];
	const char	*base;
	int		 fd;

	audit_split(path, dir, sizeof(dir), &base);
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) == -1)
		return;
	if (fsync(fd) == -1)
		log_warn("audit: fsync %s", dir);
	close(fd);
}

/* file_start in the empty file fd: linked to the last line of the last. */
int
audit_start_file(struct audit *a, int fd, const char *previous)
{
	struct jbuf	 f = { 0 };
	int		 rc;

	a->fd = fd;
	a->size = 0;
	jb_kstr(&f, "previous", previous);
	jb_kstr(&f, "key", a->key_id);
	jb_ku64(&f, "epoch_seconds", a->seconds);
	jb_ku64(&f, "epoch_lines", a->epoch_lines);
	rc = audit_emit(a, "file_start", &f);
	jb_free(&f);
	sync_dir(a->path);
	return rc;
}

int
audit_new_file(struct audit *a, const char *previous)
{
	int fd = open(a->path, O_WRONLY | O_APPEND | O_CREAT | O_EXCL |
	    O_NOFOLLOW | O_CLOEXEC, 0600);

	return fd == -1 ? -1 : audit_start_file(a, fd, previous);
}

static int
rotate(struct audit *a, const char *why)
{
	char base[256];

	if (a->fd == -1)
		return -1;
	if (fdatasync(a->fd) == -1)
		log_warn("audit: fsync %s", a->path);
	if (audit_rename_aside(a, base, sizeof(base)) == -1) {
		log_warn("audit: cannot rotate %s (%s); writing on", a->path,
		    why);
		return -1;
	}
	close(a->fd);
	a->fd = -1;
	if (audit_new_file(a, base) == -1) {
		log_warn("audit: cannot start a new %s after rotating it",
		    a->path);
		return -1;
	}
	log_info("audit: %s rotated to %s (%s)", a->path, base, why);
	return 0;
}

/* A log we lost (or never had): try again, at most once a second. */
static int
reopen(struct audit *a)
{
	char	 previous[256] = "";
	time_t	 now = time(NULL);

	if (now < a->reopen_at)
		return -1;
	a->reopen_at = now + REOPEN_SECONDS;
	if (audit_new_file(a, "") == 0)
		return 0;
	if (errno == EEXIST && audit_rename_aside(a, previous,
	    sizeof(previous)) == 0) {
		log_warnx("audit: %s appeared meanwhile; moved aside to %s",
		    a->path, previous);
		return audit_new_file(a, previous);
	}
	return -1;
}

/* ---- records ---- */

/* What was lost while the log could not be written, said in it. */
static int
write_lost(struct audit *a)
{
	jb_reset(&a->aux);
	jb_ku64(&a->aux, "count", a->lost);
	if (audit_emit(a, "lost", &a->aux) == -1)
		return -1;
	log_warnx("audit: %s is written again; %llu record%s could not be "
	    "written meanwhile", a->path, (unsigned long long)a->lost,
	    a->lost == 1 ? " was" : "s were");
	a->lost = 0;
	a->lost_logged = 0;
	return 0;
}

/* Any event: seal what ended, say what was lost, then the record. */
static int
record(struct audit *a, const char *event, const struct jbuf *fields)
{
	if (!a->on)
		return 0;
	if ((a->fd == -1 && reopen(a) == -1) || advance(a) == -1 ||
	    (a->lost > 0 && write_lost(a) == -1) ||
	    audit_emit(a, event, fields) == -1) {
		int err = errno;

		a->lost++;
		a->lost_total++;
		complain(a, err);
		return -1;
	}
	if (a->rotate_size > 0 && a->size >= a->rotate_size)
		rotate(a, "Milter Audit Rotate Size reached");
	return 0;
}

/* ---- events from the children ---- */

static const char *
ev_str(const struct audit_event *ev, const char *key)
{
	const char *const	*keys;
	size_t			 n = audit_ipc_fields(ev->event, &keys);

	for (size_t i = 0; i < n; i++)
		if (strcmp(keys[i], key) == 0)
			return ev->str[i];
	return "";
}

/* The JSON keys of each event in DESIGN.md's order; "?" when optional. */
#define RELAY_ORDER	"queue_id", "method", "rcpts", "reply"
static const char *const order[AUDIT_EV_COUNT][12] = {
	[AUDIT_EV_ACCEPT_LOOPBACK] = { "client_addr" },
	[AUDIT_EV_REJECT] = { "client_addr", "client_name", "helo", "sender",
	    "rcpts", "rule" },
	[AUDIT_EV_TEMPFAIL] = { "?queue_id", "reason" },
	[AUDIT_EV_COMMIT] = { "queue_id", "client_addr", "client_name",
	    "helo", "sender", "rcpts", "size", "digest" },
	[AUDIT_EV_DELIVERED] = { RELAY_ORDER },
	[AUDIT_EV_DEFERRED] = { RELAY_ORDER },
	[AUDIT_EV_REQUEUED] = { RELAY_ORDER, "?requeued_as" },
	[AUDIT_EV_QUARANTINED] = { RELAY_ORDER },
	[AUDIT_EV_SCAN] = { "queue_id", "client_addr", "client_name", "helo",
	    "sender", "rcpts", "size", "digest", "result", "?signature" },
};

static void
event_field(struct jbuf *b, const struct audit_event *ev, const char *key)
{
	int optional = key[0] == '?';

	key += optional;
	if (strcmp(key, "rcpts") == 0) {
		jb_kpacked(b, "rcpts", ev->rcpts, ev->nrcpt);
		if (ev->omitted > 0)
			jb_ku64(b, "rcpts_omitted", ev->omitted);
	} else if (strcmp(key, "size") == 0)
		jb_ku64(b, "size", ev->size);
	else if (strcmp(key, "digest") == 0)
		jb_khex(b, "digest", ev->digest, sizeof(ev->digest));
	else if (!optional || ev_str(ev, key)[0] != '\0')
		jb_kstr(b, key, ev_str(ev, key));
}

int
audit_child_record(struct child *c, struct ipc_msg *m)
{
	struct audit		*a = &the_audit;
	struct audit_event	 ev;
	const char		*why;

	if (audit_ipc_parse(m->hdr.type, m->data, m->hdr.len, &ev, &why)) {
		log_warnx("%s (pid %d): audit record refused: %s", c->name,
		    (int)c->pid, why);
		return -1;
	}
	metrics_event(ev.event, ev_str(&ev, "result"));
	jb_reset(&a->fields);
	for (size_t i = 0; i < 12 && order[ev.event][i] != NULL; i++)
		event_field(&a->fields, &ev, order[ev.event][i]);
	record(a, audit_event_name(ev.event), &a->fields);
	/* On disk, or lost and counted: the commit path waits no longer. */
	if ((ev.flags & AUDIT_F_ACK) &&
	    ipc_send(c->chan, MSG_PARENT_AUDIT_SYNCED, NULL, 0, -1) == -1)
		log_warn("audit: answering %s", c->name);
	return 0;
}

/* ---- the parent's own events ---- */

/* BLAKE2b-256 of the settings as msmilter -t prints them. */
static void
config_digest(const struct msm_settings *s, char out[AUDIT_HEX])
{
	char		*buf = NULL;
	size_t		 len = 0;
	FILE		*f = open_memstream(&buf, &len);
	unsigned char	 h[AUDIT_HASH];

	out[0] = '\0';
	if (f == NULL)
		return;
	config_print(s, f);
	if (fclose(f) == 0) {
		audit_hash(buf, len, h);
		audit_hex(h, AUDIT_HASH, out);
	}
	free(buf);
}

void
audit_start(const struct msm_settings *s)
{
	struct audit	*a = &the_audit;
	struct jbuf	 f = { 0 };

	if (s->milter_audit_log[0] == '\0') {
		log_notice("audit log: off (Milter Audit Log is empty)");
		return;
	}
	a->on = 1;
	a->seq = 1;		/* a new log; audit_open_log continues an old one */
	snprintf(a->path, sizeof(a->path), "%s", s->milter_audit_log);
	a->sync_every = s->milter_audit_sync == MSM_AUDIT_SYNC_EVERY;
	a->rotate_size = s->milter_audit_rotate_size;
	config_digest(s, a->config_digest);
	audit_open_key(a, s);
	if (audit_open_log(a) == -1)
		log_warnx("AUDIT LOG UNAVAILABLE: %s; records are lost until "
		    "it can be written (mail still flows)", a->path);
	jb_kstr(&f, "config_digest", a->config_digest);
	jb_kstr(&f, "key", a->key_id);
	jb_ku64(&f, "epoch_seconds", a->seconds);
	record(a, "start", &f);
	jb_free(&f);
	seal_disk(a);
}

void
audit_stop(void)
{
	struct audit *a = &the_audit;

	if (!a->on)
		return;
	if (record(a, "stop", NULL) == 0 && a->keyed)
		checkpoint(a);
	seal_disk(a);
	if (a->fd != -1)
		close(a->fd);
	a->fd = -1;
	audit_close_key(a);
	if (a->lost_total > 0)
		log_warnx("audit: %llu record%s could not be written while "
		    "msmilter ran", (unsigned long long)a->lost_total,
		    a->lost_total == 1 ? "" : "s");
	jb_free(&a->rec);
	jb_free(&a->fields);
	jb_free(&a->aux);
	a->on = 0;
}

void
audit_rotate(void)
{
	struct audit *a = &the_audit;

	if (a->on && a->fd != -1)
		rotate(a, "SIGHUP");
}

void
audit_reload(const struct msm_settings *s, int ok)
{
	struct audit	*a = &the_audit;
	struct jbuf	 f = { 0 };

	if (!a->on && ok && s->milter_audit_log[0] != '\0')
		log_warnx("audit: Milter Audit Log takes effect when msmilter "
		    "restarts");
	if (!a->on)
		return;
	if (ok) {
		config_digest(s, a->config_digest);
		a->sync_every = s->milter_audit_sync == MSM_AUDIT_SYNC_EVERY;
		a->rotate_size = s->milter_audit_rotate_size;
		if (strcmp(s->milter_audit_log, a->path) != 0)
			log_warnx("audit: a new Milter Audit Log takes effect "
			    "when msmilter restarts; still writing %s", a->path);
	}
	jb_kstr(&f, "config_digest", a->config_digest);
	jb_kbool(&f, "ok", ok);
	record(a, "reload", &f);
	jb_free(&f);
}

void
audit_child_exit(const char *child, int status)
{
	struct audit	*a = &the_audit;
	struct jbuf	 f = { 0 };
	char		 how[32];

	metrics_child_exit(child);
	if (!a->on)
		return;
	if (WIFSIGNALED(status))
		snprintf(how, sizeof(how), "signal %d", WTERMSIG(status));
	else
		snprintf(how, sizeof(how), "exit %d", WEXITSTATUS(status));
	jb_kstr(&f, "child", child);
	jb_kstr(&f, "status", how);
	record(a, "child_exit", &f);
	jb_free(&f);
}

/* Milliseconds to the next epoch boundary (a little after it). */
int
audit_poll_timeout(int timeout_ms)
{
	struct audit	*a = &the_audit;
	int64_t		 now, next;
	int		 ours;

	if (!a->on)
		return timeout_ms;
	now = audit_now_us();
	next = ((int64_t)a->start + (int64_t)(audit_epoch_at(a->start,
	    a->seconds, now / 1000000) + 1) * a->seconds) * 1000000;
	ours = next - now > 3600 * 1000000LL ? 3600 * 1000 :
	    (int)((next - now) / 1000) + 5;
	if (a->fd == -1 && ours > REOPEN_SECONDS * 1000)
		ours = REOPEN_SECONDS * 1000;
	return timeout_ms < 0 || ours < timeout_ms ? ours : timeout_ms;
}

void
audit_tick(void)
{
	struct audit *a = &the_audit;

	if (!a->on)
		return;
	if (a->fd == -1 && reopen(a) == -1)
		return;
	if (advance(a) == 0 && a->lost > 0)
		write_lost(a);
}
