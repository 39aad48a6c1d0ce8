/*
 * msmilter-audit verify: every line of the log, in order, against the
 * chain (seq and prev), the epoch rules (each epoch closed, every close
 * followed by a checkpoint before the next epoch begins), the MACs (with
 * audit.k0) and the checkpoints (signatures, and with audit.pub the
 * Merkle path to its root).  Exit 0: every line verifies and the log is
 * sealed to its end; 1: something was altered, inserted, removed,
 * reordered, or a file is missing (the place is named); 2: the tail after
 * the last checkpoint is not sealed, or the log stops early.
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "tool.h"

#define MAX_NOTES	20

struct verifier {
	int		 have_pub, have_k0;
	struct audit_pub pub;
	struct audit_key k0, k;		/* k: K(k.epoch), from k0 */
	char		 anchor[17];	/* key id of audit.pub or audit.k0 */

	/* the chain */
	int		 started;
	uint64_t	 first_seq, next_seq, lines;
	unsigned char	 prev[AUDIT_HASH];
	const char	*prev_file;
	uint64_t	 prev_lineno;
	struct audit_line l;
	size_t		 nfiles;

	/* the segment (one key, one epoch length) and its epochs */
	int		 seg_keyed, seg_anchored;
	char		 seg_key[17];
	uint64_t	 epoch, epoch_lines;
	int		 closed, seal_pending;

	/* sealing */
	int		 have_cp;
	uint64_t	 cp_seq, checkpoints, macs, unanchored_cps;
	char		 cp_time[32], last_time[32];
	int		 last_was_stop, sealed_end, torn;

	/* downtime and restarts, told at the end */
	int		 saw_stop;
	char		 stop_time[32];
	uint64_t	 starts, closes_since_stop;
	char		*notes[MAX_NOTES];
	size_t		 nnotes, more_notes;
};

static int
fail(struct verifier *v, const char *file, uint64_t lineno, const char *fmt,
    ...)
{
	va_list ap;

	printf("FAILED: %s:%llu", file, (unsigned long long)lineno);
	if (v->l.nf > 0)
		printf(" (seq %llu)", (unsigned long long)v->l.seq);
	printf(": ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	return VERIFY_FAILED;
}

static void
note(struct verifier *v, const char *fmt, ...)
{
	va_list	 ap;
	char	*s;

	if (v->nnotes == MAX_NOTES) {
		v->more_notes++;
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) != -1)
		v->notes[v->nnotes++] = s;
	va_end(ap);
}

static const char *
base_name(const char *path)
{
	const char *slash = strrchr(path, '/');

	return slash ? slash + 1 : path;
}

static uint64_t
num(const struct audit_line *l, const char *key)
{
	const struct audit_field *f = audit_line_get(l, key);

	return f != NULL && f->kind == JK_NUM ? f->num : 0;
}

/* ---- trust anchors ---- */

static int
load_pub(struct verifier *v, const char *path)
{
	char	*text, why[128];
	size_t	 len;

	if ((text = read_small(path, 4096, &len)) == NULL)
		return -1;
	if (audit_pub_parse(text, len, &v->pub, why, sizeof(why)) == -1) {
		fprintf(stderr, "msmilter-audit: %s: %s\n", path, why);
		free(text);
		return -1;
	}
	free(text);
	v->have_pub = 1;
	audit_key_id(v->pub.root, v->anchor);
	return 0;
}

static int
load_k0(struct verifier *v, const char *path)
{
	char	*buf, id[17];
	size_t	 len;

	if ((buf = read_small(path, 4096, &len)) == NULL)
		return -1;
	if (audit_key_decode((unsigned char *)buf, len, &v->k0) == -1 ||
	    v->k0.epoch != 0) {
		fprintf(stderr, "msmilter-audit: %s: not an audit.k0\n", path);
		sodium_memzero(buf, len);
		free(buf);
		return -1;
	}
	sodium_memzero(buf, len);
	free(buf);
	audit_key_id(v->k0.root, id);
	if (v->have_pub && strcmp(id, v->anchor) != 0) {
		fprintf(stderr, "msmilter-audit: %s is key %s, audit.pub key "
		    "%s: not the same key\n", path, id, v->anchor);
		return -1;
	}
	snprintf(v->anchor, sizeof(v->anchor), "%s", id);
	v->have_k0 = 1;
	v->k = v->k0;
	return 0;
}

/* K(epoch) from audit.k0; 0, or -1 beyond the key's lifetime. */
static int
key_at(struct verifier *v, uint64_t epoch)
{
	if (epoch >= v->k0.leaves)
		return -1;
	if (v->k.epoch > epoch)
		v->k = v->k0;
	while (v->k.epoch < epoch)
		audit_key_evolve(&v->k);
	return 0;
}

/* ---- the chain ---- */

static int
check_file_start(struct verifier *v, const char *file, uint64_t lineno)
{
	int		 is_start = strcmp(v->l.event, "file_start") == 0;
	const char	*previous = audit_line_str(&v->l, "previous");

	if (lineno == 1 && !is_start)
		return fail(v, file, lineno, "the file does not begin with "
		    "file_start");
	if (lineno > 1 && is_start)
		return fail(v, file, lineno, "file_start in the middle of a "
		    "file");
	if (is_start && v->started && previous[0] != '\0' &&
	    strcmp(previous, base_name(v->prev_file)) != 0)
		return fail(v, file, lineno, "this file follows %s, which is "
		    "not among the files given (the file before it is %s): a "
		    "file of the sequence is missing", previous,
		    base_name(v->prev_file));
	return 0;
}

static int
check_seq(struct verifier *v, const char *file, uint64_t lineno)
{
	uint64_t seq = v->l.seq;

	if (!v->started || seq == v->next_seq)
		return 0;
	if (lineno == 1)
		return fail(v, file, lineno, "the file begins at seq %llu, "
		    "but %s ends at seq %llu: a file of the sequence is "
		    "missing, or lines were removed", (unsigned long long)seq,
		    v->prev_file, (unsigned long long)(v->next_seq - 1));
	if (seq > v->next_seq)
		return fail(v, file, lineno, "seq %llu where %llu was expected: "
		    "%llu line%s removed before this one, or lines moved",
		    (unsigned long long)seq, (unsigned long long)v->next_seq,
		    (unsigned long long)(seq - v->next_seq),
		    seq - v->next_seq == 1 ? "" : "s");
	return fail(v, file, lineno, "seq %llu where %llu was expected: a "
	    "line was inserted, duplicated or moved here",
	    (unsigned long long)seq, (unsigned long long)v->next_seq);
}

static int
check_prev(struct verifier *v, const char *file, uint64_t lineno)
{
	static const unsigned char zero[AUDIT_HASH];

	if (!v->started) {
		if (v->l.seq == 1 && sodium_memcmp(v->l.prev, zero,
		    AUDIT_HASH) != 0)
			return fail(v, file, lineno, "the first line of the "
			    "log must have prev 000...0");
		if (v->l.seq != 1)
			note(v, "the log given begins at seq %llu (%s): the "
			    "files before it were not given, and its link to "
			    "them is not checked", (unsigned long long)v->l.seq,
			    file);
		return 0;
	}
	if (sodium_memcmp(v->l.prev, v->prev, AUDIT_HASH) == 0)
		return 0;
	return fail(v, file, lineno, "prev is not the hash of the line before "
	    "(%s:%llu, seq %llu): that line was altered, or this one was "
	    "moved or inserted", v->prev_file,
	    (unsigned long long)v->prev_lineno,
	    (unsigned long long)(v->l.seq - 1));
}

/* file_start with another key begins a segment (*seg set). */
static int
segment(struct verifier *v, const char *file, uint64_t lineno, int *seg)
{
	const char *key = audit_line_str(&v->l, "key");

	*seg = 0;
	if (strcmp(v->l.event, "file_start") != 0 || (v->started &&
	    strcmp(key, v->seg_key) == 0))
		return 0;
	*seg = 1;
	if (v->started)
		note(v, "seq %llu (%s): a new segment begins, key %s (was %s)",
		    (unsigned long long)v->l.seq, file, key, v->seg_key);
	snprintf(v->seg_key, sizeof(v->seg_key), "%s", key);
	v->seg_keyed = strcmp(key, "none") != 0;
	v->seg_anchored = v->seg_keyed && (v->have_pub || v->have_k0) &&
	    strcmp(key, v->anchor) == 0;
	if (v->seg_keyed && (v->have_pub || v->have_k0) && !v->seg_anchored)
		return fail(v, file, lineno, "sealed with key %s, but the key "
		    "given is %s", key, v->anchor);
	v->epoch = v->l.epoch;
	v->epoch_lines = num(&v->l, "epoch_lines");
	v->closed = v->seal_pending = 0;
	return 0;
}

/* ---- epochs ---- */

static int
check_close(struct verifier *v, const char *file, uint64_t lineno)
{
	char head[AUDIT_HEX];

	if (!v->closed && v->l.epoch != v->epoch)
		return fail(v, file, lineno, "epoch_close of epoch %llu while "
		    "epoch %llu is open", (unsigned long long)v->l.epoch,
		    (unsigned long long)v->epoch);
	if (v->closed && v->l.epoch != v->epoch + 1)
		return fail(v, file, lineno, "epoch_close of epoch %llu after "
		    "epoch %llu: the epochs between were never closed",
		    (unsigned long long)v->l.epoch,
		    (unsigned long long)v->epoch);
	if (v->closed) {	/* an epoch that passed while msmilter was down */
		v->epoch = v->l.epoch;
		v->epoch_lines = 0;
		v->closes_since_stop++;
	}
	audit_hex(v->prev, AUDIT_HASH, head);
	if (num(&v->l, "count") != v->epoch_lines ||
	    strcmp(audit_line_str(&v->l, "head"), head) != 0)
		return fail(v, file, lineno, "epoch_close says %llu lines, "
		    "head %.16s..., but the epoch has %llu, head %.16s...",
		    (unsigned long long)num(&v->l, "count"),
		    audit_line_str(&v->l, "head"),
		    (unsigned long long)v->epoch_lines, head);
	v->closed = 1;
	v->seal_pending = v->seg_keyed;
	return 0;
}

/* Records of an epoch follow its predecessor's close and checkpoint. */
static int
check_open(struct verifier *v, const char *file, uint64_t lineno)
{
	uint64_t e = v->l.epoch;

	if (v->closed) {
		if (v->seal_pending)
			return fail(v, file, lineno, "epoch %llu was closed "
			    "without a checkpoint before epoch %llu began",
			    (unsigned long long)v->epoch,
			    (unsigned long long)e);
		if (e != v->epoch + 1)
			return fail(v, file, lineno, "epoch %llu follows the "
			    "close of epoch %llu: the epochs between were "
			    "never closed", (unsigned long long)e,
			    (unsigned long long)v->epoch);
		v->epoch = e;
		v->epoch_lines = 0;
		v->closed = 0;
	} else if (e != v->epoch)
		return fail(v, file, lineno, e > v->epoch ? "epoch jumps from "
		    "%llu to %llu without epoch_close (a line sealed with "
		    "another epoch's key?)" : "epoch goes back from %llu to "
		    "%llu", (unsigned long long)v->epoch,
		    (unsigned long long)e);
	if (strcmp(v->l.event, "file_start") == 0 &&
	    num(&v->l, "epoch_lines") != v->epoch_lines)
		return fail(v, file, lineno, "file_start counts %llu earlier "
		    "lines of epoch %llu, the log has %llu",
		    (unsigned long long)num(&v->l, "epoch_lines"),
		    (unsigned long long)e, (unsigned long long)v->epoch_lines);
	return 0;
}

static int
check_epoch(struct verifier *v, const char *file, uint64_t lineno, int seg)
{
	int rc = 0;

	if (seg)
		;	/* the segment's first line sets the epoch */
	else if (strcmp(v->l.event, "epoch_close") == 0)
		rc = check_close(v, file, lineno);
	else if (strcmp(v->l.event, "checkpoint") == 0) {
		if (v->l.epoch != v->epoch)
			rc = fail(v, file, lineno, "checkpoint of epoch %llu "
			    "in epoch %llu", (unsigned long long)v->l.epoch,
			    (unsigned long long)v->epoch);
	} else
		rc = check_open(v, file, lineno);
	v->epoch_lines++;
	return rc;
}

static int
check_mac(struct verifier *v, const char *file, uint64_t lineno,
    const char *line)
{
	unsigned char mk[AUDIT_HASH], mac[AUDIT_HASH];

	if (!v->seg_keyed)
		return v->l.has_mac ? fail(v, file, lineno, "a MAC in a "
		    "segment without key") : 0;
	if (!v->l.has_mac)
		return fail(v, file, lineno, "no MAC in a segment sealed with "
		    "key %s", v->seg_key);
	if (!v->have_k0 || !v->seg_anchored)
		return 0;
	if (key_at(v, v->l.epoch) == -1)
		return fail(v, file, lineno, "epoch %llu is beyond the key's "
		    "%llu epochs", (unsigned long long)v->l.epoch,
		    (unsigned long long)v->k0.leaves);
	audit_key_mac_key(v->k.key, mk);
	audit_mac(mk, line, v->l.mac_at, mac);
	sodium_memzero(mk, sizeof(mk));
	if (sodium_memcmp(mac, v->l.mac, AUDIT_HASH) != 0)
		return fail(v, file, lineno, "the MAC does not verify under "
		    "epoch %llu's key: the line was altered, or sealed with "
		    "another epoch's key", (unsigned long long)v->l.epoch);
	v->macs++;
	return 0;
}

/* ---- checkpoints ---- */

struct cp {
	unsigned char	 pk[AUDIT_HASH], sig[AUDIT_SIG], head[AUDIT_HASH];
	unsigned char	 path[AUDIT_PATH_MAX][AUDIT_HASH];
	size_t		 npath;
	uint64_t	 count, leaves;
};

static int
read_cp(const struct audit_line *l, struct cp *c)
{
	const struct audit_field	*path = audit_line_get(l, "path");
	const char			*item;

	c->count = num(l, "count");
	c->leaves = num(l, "leaves");
	if (path == NULL || path->len > AUDIT_PATH_MAX ||
	    audit_unhex(audit_line_str(l, "pubkey"), strlen(audit_line_str(l,
	    "pubkey")), c->pk, AUDIT_HASH) == -1 ||
	    audit_unhex(audit_line_str(l, "sig"), strlen(audit_line_str(l,
	    "sig")), c->sig, AUDIT_SIG) == -1 ||
	    audit_unhex(audit_line_str(l, "head"), strlen(audit_line_str(l,
	    "head")), c->head, AUDIT_HASH) == -1)
		return -1;
	item = path->str;
	for (c->npath = 0; c->npath < path->len; c->npath++) {
		if (audit_unhex(item, strlen(item), c->path[c->npath],
		    AUDIT_HASH) == -1)
			return -1;
		item += strlen(item) + 1;
	}
	return 0;
}

/* The public key is epoch e's: under audit.pub's root, or from K(e). */
static const char *
cp_key_problem(struct verifier *v, const struct cp *c, uint64_t e)
{
	unsigned char leaf[AUDIT_HASH], pk[AUDIT_HASH], sk[64];

	if (v->have_pub) {
		audit_merkle_leaf(c->pk, AUDIT_HASH, leaf);
		if (c->leaves != v->pub.leaves || !audit_merkle_verify(
		    v->pub.leaves, e, leaf,
		    (const unsigned char (*)[AUDIT_HASH])c->path, c->npath,
		    v->pub.root))
			return "its public key is not epoch's leaf under the "
			    "root in audit.pub";
	}
	if (v->have_k0) {
		if (key_at(v, e) == -1)
			return "its epoch is beyond the key's lifetime";
		audit_key_sign_pair(v->k.key, pk, sk);
		sodium_memzero(sk, sizeof(sk));
		if (sodium_memcmp(pk, c->pk, AUDIT_HASH) != 0)
			return "its public key is not the one audit.k0 gives "
			    "for its epoch";
	}
	return NULL;
}

static int
check_checkpoint(struct verifier *v, const char *file, uint64_t lineno)
{
	struct cp	 c;
	unsigned char	 digest[AUDIT_HASH];
	const char	*why;

	if (!v->seg_keyed)
		return fail(v, file, lineno, "a checkpoint in a segment "
		    "without key");
	if (read_cp(&v->l, &c) == -1)
		return fail(v, file, lineno, "a malformed checkpoint");
	if (c.count != v->l.seq - 1 ||
	    sodium_memcmp(c.head, v->prev, AUDIT_HASH) != 0)
		return fail(v, file, lineno, "the checkpoint does not cover "
		    "the lines before it (count %llu, head mismatch or not)",
		    (unsigned long long)c.count);
	audit_checkpoint_digest(v->l.epoch, c.count, c.head, c.leaves, c.pk,
	    (const unsigned char (*)[AUDIT_HASH])c.path, c.npath, digest);
	if (crypto_sign_verify_detached(c.sig, digest, sizeof(digest),
	    c.pk) != 0)
		return fail(v, file, lineno, "the checkpoint's signature does "
		    "not verify");
	if (v->seg_anchored && (why = cp_key_problem(v, &c,
	    v->l.epoch)) != NULL)
		return fail(v, file, lineno, "checkpoint of epoch %llu: %s",
		    (unsigned long long)v->l.epoch, why);
	v->seal_pending = 0;
	v->checkpoints++;
	if (!v->seg_anchored) {
		v->unanchored_cps++;
		return 0;
	}
	v->have_cp = 1;
	v->cp_seq = v->l.seq;
	snprintf(v->cp_time, sizeof(v->cp_time), "%s", v->l.time);
	return 0;
}

/* stop ... start: when msmilter was down; start without stop: a crash. */
static void
track_restarts(struct verifier *v)
{
	const char *ev = v->l.event;

	if (strcmp(ev, "stop") == 0) {
		v->saw_stop = 1;
		v->closes_since_stop = 0;
		snprintf(v->stop_time, sizeof(v->stop_time), "%s", v->l.time);
	} else if (strcmp(ev, "start") == 0) {
		if (v->saw_stop)
			note(v, "msmilter was down from %s to %s (seq %llu); "
			    "%llu epoch%s that passed meanwhile closed at "
			    "restart", v->stop_time, v->l.time,
			    (unsigned long long)v->l.seq,
			    (unsigned long long)v->closes_since_stop,
			    v->closes_since_stop == 1 ? "" : "s");
		else if (v->starts > 0)
			note(v, "restart at %s (seq %llu) without a stop "
			    "record: msmilter crashed or was killed; its "
			    "last records were sealed at restart", v->l.time,
			    (unsigned long long)v->l.seq);
		v->starts++;
		v->saw_stop = 0;
	}
}

/* ---- one line ---- */

static int
check_line(struct verifier *v, const char *file, uint64_t lineno,
    const char *line, size_t len)
{
	char	 why[128];
	int	 seg, rc;

	if (audit_line_parse(line, len, &v->l, why, sizeof(why)) == -1) {
		v->l.nf = 0;	/* no seq to name */
		return fail(v, file, lineno, "not a valid audit record (%s)",
		    why);
	}
	if ((rc = check_file_start(v, file, lineno)) ||
	    (rc = check_seq(v, file, lineno)) ||
	    (rc = check_prev(v, file, lineno)) ||
	    (rc = segment(v, file, lineno, &seg)) ||
	    (rc = check_epoch(v, file, lineno, seg)) ||
	    (rc = check_mac(v, file, lineno, line)))
		return rc;
	if (strcmp(v->l.event, "checkpoint") == 0 &&
	    (rc = check_checkpoint(v, file, lineno)))
		return rc;
	track_restarts(v);
	return 0;
}

static int
on_line(void *arg, const char *file, uint64_t lineno, const char *line,
    size_t len, int complete)
{
	struct verifier	*v = arg;
	int		 rc;

	if (v->torn)
		return fail(v, v->prev_file, v->prev_lineno, "an incomplete "
		    "line with more records after it");
	if (!complete) {	/* what a crash during a write leaves */
		v->torn = 1;
		v->prev_file = file;
		v->prev_lineno = lineno;
		return 0;
	}
	if ((rc = check_line(v, file, lineno, line, len)) != 0)
		return rc;
	if (!v->started)
		v->first_seq = v->l.seq;
	v->started = 1;
	v->sealed_end = strcmp(v->l.event, "checkpoint") == 0 &&
	    v->last_was_stop && v->seg_anchored;
	v->last_was_stop = strcmp(v->l.event, "stop") == 0;
	audit_hash(line, len, v->prev);
	v->next_seq = v->l.seq + 1;
	v->prev_file = file;
	v->prev_lineno = lineno;
	v->lines++;
	snprintf(v->last_time, sizeof(v->last_time), "%s", v->l.time);
	return 0;
}

/* ---- the verdict ---- */

static void
summary(const struct verifier *v)
{
	printf("%llu line%s, seq %llu..%llu in %zu file%s; %llu checkpoint%s",
	    (unsigned long long)v->lines, v->lines == 1 ? "" : "s",
	    (unsigned long long)v->first_seq,
	    (unsigned long long)(v->next_seq - 1), v->nfiles,
	    v->nfiles == 1 ? "" : "s", (unsigned long long)v->checkpoints,
	    v->checkpoints == 1 ? "" : "s");
	if (v->have_k0)
		printf(", %llu MAC%s checked with audit.k0",
		    (unsigned long long)v->macs, v->macs == 1 ? "" : "s");
	if (v->have_pub)
		printf(", checkpoints checked against audit.pub");
	printf("\n");
	for (size_t i = 0; i < v->nnotes; i++)
		printf("note: %s\n", v->notes[i]);
	if (v->more_notes)
		printf("note: ... and %zu more\n", v->more_notes);
}

static int
verdict(const struct verifier *v)
{
	if (!v->have_pub && !v->have_k0) {
		printf("NOT VERIFIED: the chain is intact, but no key was given "
		    "(-p audit.pub, -K audit.k0): anyone could have written "
		    "and signed it\n");
		return VERIFY_UNSEALED;
	}
	if (v->sealed_end && !v->torn) {
		printf("OK: every line verifies and the log is sealed to its "
		    "end (seq %llu, %s)\n", (unsigned long long)(v->next_seq -
		    1), v->last_time);
		return VERIFY_OK;
	}
	if (v->torn)
		printf("NOT SEALED: %s:%llu is incomplete (a crash during a "
		    "write)\n", v->prev_file, (unsigned long long)v->prev_lineno);
	else if (v->have_cp && v->cp_seq + 1 < v->next_seq)
		printf("NOT SEALED: seq %llu..%llu come after the last "
		    "checkpoint\n", (unsigned long long)(v->cp_seq + 1),
		    (unsigned long long)(v->next_seq - 1));
	else
		printf("NOT SEALED: the log stops at seq %llu without a stop "
		    "record (msmilter still running, or a suffix removed)\n",
		    (unsigned long long)(v->next_seq - 1));
	if (v->have_cp)
		printf("last trusted seq %llu (%s)\n",
		    (unsigned long long)v->cp_seq, v->cp_time);
	else
		printf("no checkpoint under the key given: nothing is "
		    "sealed\n");
	return VERIFY_UNSEALED;
}

static int
verify_args(int argc, char **argv, struct verifier *v)
{
	const char	*pub = NULL, *k0 = NULL;
	int		 ch;

	optind = 1;
	while ((ch = getopt(argc, argv, "p:K:")) != -1) {
		switch (ch) {
		case 'p': pub = optarg; break;
		case 'K': k0 = optarg; break;
		default: return -1;
		}
	}
	if (optind == argc)
		return -1;
	if ((pub != NULL && load_pub(v, pub) == -1) ||
	    (k0 != NULL && load_k0(v, k0) == -1))
		return -2;
	return 0;
}

int
cmd_verify(int argc, char **argv)
{
	struct verifier	*v = calloc(1, sizeof(*v));
	struct logfile	*files;
	int		 rc;

	if (v == NULL)
		return 70;
	if ((rc = verify_args(argc, argv, v)) != 0) {
		if (rc == -1)
			fprintf(stderr, "usage: msmilter-audit verify "
			    "[-p audit.pub] [-K audit.k0] LOG...\n");
		free(v);
		return rc == -1 ? 64 : 66;
	}
	v->nfiles = (size_t)(argc - optind);
	if ((files = calloc(v->nfiles, sizeof(*files))) == NULL ||
	    logs_order(argv + optind, v->nfiles, files) == -1)
		rc = 66;
	else if ((rc = logs_each(files, v->nfiles, on_line, v)) == 0) {
		summary(v);
		rc = verdict(v);
	} else if (rc == -1)
		rc = 66;
	for (size_t i = 0; i < v->nnotes; i++)
		free(v->notes[i]);
	audit_line_free(&v->l);
	sodium_memzero(&v->k, sizeof(v->k));
	sodium_memzero(&v->k0, sizeof(v->k0));
	free(files);
	free(v);
	return rc;
}
