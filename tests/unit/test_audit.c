/*
 * The audit log's pieces: key evolution (the key file forgets earlier
 * keys), the Merkle tree against RFC 6962's recursive definition written
 * out here independently, MACs and checkpoint signatures, JSON escaping
 * of hostile values and the strict reader, the children's event records,
 * and the spooler's digest taken while it writes.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <sodium.h>

#include "audit.h"
#include "audit_ipc.h"
#include "spool.h"

/* ---- key evolution ---- */

static int
temp_file(char *path, size_t len)
{
	snprintf(path, len, "/tmp/msm-audit-test-XXXXXX");
	return mkstemp(path);
}

static void
key_file_forgets_earlier_keys(void **state)
{
	struct audit_key	 k;
	unsigned char		 old[8][AUDIT_HASH], file[AUDIT_KEY_FILE_SIZE];
	char			 path[64], why[128];
	struct stat		 st0, st;
	int			 fd = temp_file(path, sizeof(path));

	(void)state;
	assert_true(fd >= 0);
	memset(&k, 0, sizeof(k));
	k.seconds = 60;
	k.leaves = 100;
	randombytes_buf(k.key, sizeof(k.key));
	assert_int_equal(audit_key_write(fd, &k, why, sizeof(why)), 0);
	assert_int_equal(fstat(fd, &st0), 0);
	for (int e = 0; e < 8; e++) {
		unsigned char next[AUDIT_HASH];

		memcpy(old[e], k.key, AUDIT_HASH);
		/* K(e+1) = KDF(K(e), 1, "msmaudit"), computed here too. */
		crypto_kdf_derive_from_key(next, sizeof(next), AUDIT_SUB_NEXT,
		    "msmaudit", old[e]);
		audit_key_evolve(&k);
		assert_memory_equal(k.key, next, AUDIT_HASH);
		assert_int_equal(k.epoch, e + 1);
		assert_int_equal(audit_key_write(fd, &k, why, sizeof(why)), 0);
		/* The same file, the same size: overwritten in place. */
		assert_int_equal(fstat(fd, &st), 0);
		assert_int_equal(st.st_ino, st0.st_ino);
		assert_int_equal(st.st_size, AUDIT_KEY_FILE_SIZE);
		assert_int_equal(pread(fd, file, sizeof(file), 0),
		    (ssize_t)sizeof(file));
		for (int j = 0; j <= e; j++)
			assert_null(memmem(file, sizeof(file), old[j],
			    AUDIT_HASH));
		assert_non_null(memmem(file, sizeof(file), k.key, AUDIT_HASH));
	}
	close(fd);
	unlink(path);
}

/* Nothing derived from K(e+1) gives K(e) back, nor any of its keys. */
static void
later_key_yields_no_earlier_one(void **state)
{
	struct audit_key	 k;
	unsigned char		 k0[AUDIT_HASH], mac0[AUDIT_HASH];
	unsigned char		 sub[AUDIT_HASH], pk[AUDIT_HASH], sk[64];

	(void)state;
	memset(&k, 0, sizeof(k));
	randombytes_buf(k.key, sizeof(k.key));
	memcpy(k0, k.key, sizeof(k0));
	audit_key_mac_key(k0, mac0);
	audit_key_evolve(&k);
	for (uint64_t id = 0; id < 64; id++) {
		crypto_kdf_derive_from_key(sub, sizeof(sub), id, "msmaudit",
		    k.key);
		assert_memory_not_equal(sub, k0, AUDIT_HASH);
		assert_memory_not_equal(sub, mac0, AUDIT_HASH);
	}
	audit_key_sign_pair(k.key, pk, sk);
	assert_memory_not_equal(pk, k0, AUDIT_HASH);
}

/* ---- the Merkle tree, against RFC 6962 section 2.1 ---- */

static void
h_leaf(const unsigned char *d, unsigned char out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const unsigned char *)"\0", 1);
	crypto_generichash_update(&st, d, 32);
	crypto_generichash_final(&st, out, 32);
}

static void
h_node(const unsigned char *l, const unsigned char *r, unsigned char out[32])
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, 32);
	crypto_generichash_update(&st, (const unsigned char *)"\1", 1);
	crypto_generichash_update(&st, l, 32);
	crypto_generichash_update(&st, r, 32);
	crypto_generichash_final(&st, out, 32);
}

static uint64_t
split(uint64_t n)		/* the largest power of two below n */
{
	uint64_t k = 1;

	while (k * 2 < n)
		k *= 2;
	return k;
}

/* MTH(D[n]) */
static void
mth(unsigned char (*d)[32], uint64_t n, unsigned char out[32])
{
	unsigned char l[32], r[32];
	uint64_t k;

	if (n == 1) {
		h_leaf(d[0], out);
		return;
	}
	k = split(n);
	mth(d, k, l);
	mth(d + k, n - k, r);
	h_node(l, r, out);
}

/* PATH(m, D[n]), bottom up as RFC 6962 lists it */
static size_t
rfc_path(unsigned char (*d)[32], uint64_t n, uint64_t m,
    unsigned char out[][32])
{
	uint64_t	 k;
	size_t		 len;

	if (n == 1)
		return 0;
	k = split(n);
	if (m < k) {
		len = rfc_path(d, k, m, out);
		mth(d + k, n - k, out[len]);
	} else {
		len = rfc_path(d + k, n - k, m - k, out);
		mth(d, k, out[len]);
	}
	return len + 1;
}

struct nodes {
	unsigned char (*n)[AUDIT_HASH];
};

static int
node_at(void *arg, uint64_t index, unsigned char out[AUDIT_HASH])
{
	memcpy(out, ((struct nodes *)arg)->n[index], AUDIT_HASH);
	return 0;
}

static void
merkle_matches_rfc6962(void **state)
{
	(void)state;
	for (uint64_t n = 1; n <= 40; n++) {
		unsigned char	 (*data)[32] = calloc(n, 32);
		unsigned char	 (*tree)[AUDIT_HASH] = calloc(2 * n + 64, 32);
		unsigned char	 root[32], want[AUDIT_PATH_MAX][32];
		unsigned char	 got[AUDIT_PATH_MAX][AUDIT_HASH];
		uint64_t	 counts[65], offsets[65];
		unsigned	 levels = audit_merkle_levels(n, counts, offsets);
		struct nodes	 nd = { tree };
		size_t		 npath, nwant;

		for (uint64_t i = 0; i < n; i++) {
			randombytes_buf(data[i], 32);
			audit_merkle_leaf(data[i], 32, tree[i]);
		}
		audit_merkle_build(tree, n);
		mth(data, n, root);
		assert_memory_equal(tree[offsets[levels - 1]], root, 32);
		for (uint64_t m = 0; m < n; m++) {
			nwant = rfc_path(data, n, m, want);
			assert_int_equal(audit_merkle_path(n, m, node_at, &nd,
			    got, &npath), 0);
			assert_int_equal(npath, nwant);
			assert_memory_equal(got, want, npath * 32);
			assert_true(audit_merkle_verify(n, m, tree[m],
			    (const unsigned char (*)[32])got, npath, root));
			/* Another index, a wrong size, an altered sibling. */
			if (n > 1) {
				assert_false(audit_merkle_verify(n, (m + 1) % n,
				    tree[m], (const unsigned char (*)[32])got,
				    npath, root));
				got[0][5] ^= 1;
				assert_false(audit_merkle_verify(n, m, tree[m],
				    (const unsigned char (*)[32])got, npath,
				    root));
			}
		}
		free(data);
		free(tree);
	}
}

/* ---- MACs and checkpoint signatures ---- */

static void
mac_and_signature(void **state)
{
	unsigned char	 key[32], mk[32], mac[32], want[32], pk[32], sk[64];
	unsigned char	 head[32], digest[32], sig[64], path[2][32];
	const char	 line[] = "{\"seq\":1,\"prev\":\"00\"";

	(void)state;
	randombytes_buf(key, sizeof(key));
	audit_key_mac_key(key, mk);
	crypto_kdf_derive_from_key(want, 32, AUDIT_SUB_MAC, "msmaudit", key);
	assert_memory_equal(mk, want, 32);
	audit_mac(mk, line, strlen(line), mac);
	crypto_generichash(want, 32, (const unsigned char *)line,
	    strlen(line), mk, 32);
	assert_memory_equal(mac, want, 32);
	audit_mac(mk, "{\"seq\":2,\"prev\":\"00\"", strlen(line), want);
	assert_memory_not_equal(mac, want, 32);

	audit_key_sign_pair(key, pk, sk);
	randombytes_buf(head, sizeof(head));
	randombytes_buf(path, sizeof(path));
	audit_checkpoint_digest(7, 100, head, 1000, pk,
	    (const unsigned char (*)[32])path, 2, digest);
	crypto_sign_detached(sig, NULL, digest, 32, sk);
	assert_int_equal(crypto_sign_verify_detached(sig, digest, 32, pk), 0);
	/* Another count, epoch or head: another digest, a bad signature. */
	audit_checkpoint_digest(7, 101, head, 1000, pk,
	    (const unsigned char (*)[32])path, 2, digest);
	assert_int_not_equal(crypto_sign_verify_detached(sig, digest, 32, pk),
	    0);
	audit_checkpoint_digest(8, 100, head, 1000, pk,
	    (const unsigned char (*)[32])path, 2, digest);
	assert_int_not_equal(crypto_sign_verify_detached(sig, digest, 32, pk),
	    0);
	/* The next epoch's key is another key pair. */
	audit_key_mac_key(key, mk);
	{
		struct audit_key k = { .leaves = 10 };

		memcpy(k.key, key, 32);
		audit_key_evolve(&k);
		audit_key_sign_pair(k.key, want, sk);
		assert_memory_not_equal(want, pk, 32);
	}
}

/* ---- JSON ---- */

static char *
escaped(const char *s, size_t n)
{
	struct jbuf	 b = { 0 };
	char		*out;

	jb_str(&b, s, n);
	assert_false(b.failed);
	out = strdup(b.p);
	jb_free(&b);
	return out;
}

static void
json_escapes_hostile_values(void **state)
{
	/* quote, backslash, C0, DEL, bad byte, UTF-8, a surrogate, overlong */
	static const char in[] = "a\"b\\c\x01\n\x7f\xff\xc3\xbc\xed\xa0\x80"
	    "\xc0\xaf\xf4\x90\x80\x80<x@y>";
	static const char want[] = "\"a\\\"b\\\\c\\u0001\\u000a\\u007f"
	    "\\udcff\xc3\xbc\\udced\\udca0\\udc80\\udcc0\\udcaf\\udcf4\\udc90"
	    "\\udc80\\udc80<x@y>\"";
	char *out = escaped(in, sizeof(in) - 1);

	(void)state;
	assert_string_equal(out, want);
	for (const char *p = out; *p; p++)
		assert_true((unsigned char)*p >= 0x20 && *p != 0x7f);
	free(out);
	/* Four-byte UTF-8 passes whole. */
	out = escaped("\xf0\x9f\x93\xa7", 4);
	assert_string_equal(out, "\"\xf0\x9f\x93\xa7\"");
	free(out);
}

/* A record as the parent writes one, with hostile fields. */
static char *
record(const char *sender, const char *helo, int with_mac,
    const unsigned char mk[32])
{
	struct jbuf	 b = { 0 };
	unsigned char	 prev[32] = { 0 }, mac[32];
	char		*out;
	const char	 rcpts[] = "\"q\\\"@x\0r\xff@y";

	jb_raw(&b, "{", 1);
	jb_ku64(&b, "seq", 5);
	jb_kstr(&b, "time", "2026-11-24T10:00:00.123456Z");
	jb_ku64(&b, "epoch", 3);
	jb_kstr(&b, "event", "reject");
	jb_kstr(&b, "client_addr", "192.0.2.1");
	jb_kstr(&b, "client_name", "unknown");
	jb_kstr(&b, "helo", helo);
	jb_kstr(&b, "sender", sender);
	jb_kpacked(&b, "rcpts", rcpts, 2);
	jb_kstr(&b, "rule", "/etc/rules:12");
	jb_khex(&b, "prev", prev, 32);
	if (with_mac) {
		audit_mac(mk, b.p, b.len, mac);
		jb_khex(&b, "mac", mac, 32);
	}
	jb_raw(&b, "}", 1);
	assert_false(b.failed);
	out = strdup(b.p);
	jb_free(&b);
	return out;
}

static void
reader_takes_back_what_was_written(void **state)
{
	struct audit_line		 l = { 0 };
	const struct audit_field	*f;
	unsigned char			 mk[32], mac[32];
	const char			*helo = "he\"lo\\\x01\x7f\xfe";
	char				 why[128];
	char				*line;

	(void)state;
	randombytes_buf(mk, sizeof(mk));
	line = record("\"a\\\\b\"@example.org", helo, 1, mk);
	assert_int_equal(audit_line_parse(line, strlen(line), &l, why,
	    sizeof(why)), 0);
	assert_int_equal(l.seq, 5);
	assert_int_equal(l.epoch, 3);
	assert_string_equal(l.event, "reject");
	assert_string_equal(audit_line_str(&l, "helo"), helo);
	assert_string_equal(audit_line_str(&l, "sender"),
	    "\"a\\\\b\"@example.org");
	f = audit_line_get(&l, "rcpts");
	assert_non_null(f);
	assert_int_equal(f->len, 2);
	assert_string_equal(f->str, "\"q\\\"@x");
	assert_string_equal(f->str + strlen(f->str) + 1, "r\xff@y");
	/* The MAC covers the line up to ,"mac": */
	assert_true(l.has_mac);
	audit_mac(mk, line, l.mac_at, mac);
	assert_memory_equal(mac, l.mac, 32);
	free(line);
	line = record("s@x", "h", 0, mk);
	assert_int_equal(audit_line_parse(line, strlen(line), &l, why,
	    sizeof(why)), 0);
	assert_false(l.has_mac);
	free(line);
	audit_line_free(&l);
}

/* tmpl with each %s as 64 zeros and %.62s as 62 (no printf: -Wformat). */
static void
fill(char *out, size_t len, const char *tmpl, const char *zeros)
{
	size_t n = 0;

	while (*tmpl != '\0' && n + 65 < len) {
		if (strncmp(tmpl, "%s", 2) == 0 || strncmp(tmpl, "%.62s", 5) == 0) {
			size_t z = tmpl[1] == 's' ? 64 : 62;

			memcpy(out + n, zeros, z);
			n += z;
			tmpl += tmpl[1] == 's' ? 2 : 5;
		} else
			out[n++] = *tmpl++;
	}
	out[n] = '\0';
}

static void
reader_refuses_what_the_writer_never_writes(void **state)
{
	static const char *const bad[] = {
		"",
		"{}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%s\"} ",
		"{\"seq\":01,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%s\"}",
		"{\"time\":\"2026-11-24T10:00:00.000000Z\",\"seq\":1,"
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24 10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-02-30T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"explode\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"x\":1,\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%s\","
		    "\"prev\":\"%s\"}",
		"{\"seq\":1, \"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"accept_loopback\","
		    "\"client_addr\":\"a\\nb\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"accept_loopback\","
		    "\"client_addr\":\"a\\ud800b\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"accept_loopback\","
		    "\"client_addr\":\"a\\u0000b\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"accept_loopback\","
		    "\"client_addr\":\"a\x01" "b\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"accept_loopback\","
		    "\"client_addr\":\"a\xff" "b\",\"prev\":\"%s\"}",
		"{\"seq\":18446744073709551616,\"time\":"
		    "\"2026-11-24T10:00:00.000000Z\",\"epoch\":0,\"event\":"
		    "\"stop\",\"prev\":\"%s\"}",
		"{\"seq\":1,\"time\":\"2026-11-24T10:00:00.000000Z\","
		    "\"epoch\":0,\"event\":\"stop\",\"prev\":\"%.62s\"}",
	};
	struct audit_line	 l = { 0 };
	char			 zeros[65], line[1024], why[128];

	(void)state;
	memset(zeros, '0', 64);
	zeros[64] = '\0';
	snprintf(line, sizeof(line), "{\"seq\":1,\"time\":"
	    "\"2026-11-24T10:00:00.000000Z\",\"epoch\":0,\"event\":\"stop\","
	    "\"prev\":\"%s\"}", zeros);
	assert_int_equal(audit_line_parse(line, strlen(line), &l, why,
	    sizeof(why)), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		fill(line, sizeof(line), bad[i], zeros);
		if (audit_line_parse(line, strlen(line), &l, why,
		    sizeof(why)) == 0)
			fail_msg("accepted: %s", line);
	}
	audit_line_free(&l);
}

static void
time_round_trip(void **state)
{
	int64_t	 us;
	char	 s[32];

	(void)state;
	audit_time_format(1795000000123456LL, s);
	assert_string_equal(s, "2026-11-18T11:06:40.123456Z");
	assert_int_equal(audit_time_parse(s, &us), 0);
	assert_int_equal(us, 1795000000123456LL);
	assert_int_equal(audit_time_parse("2024-02-29T23:59:59.999999Z", &us),
	    0);
	assert_int_not_equal(audit_time_parse("2023-02-29T00:00:00.000000Z",
	    &us), 0);
}

/* ---- the children's records ---- */

static int
pair(int sv[2])
{
	return socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv);
}

static void
event_records(void **state)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	struct audit_msg	 am = { .event = AUDIT_EV_REJECT };
	struct audit_event	 ev;
	const char		*why, *rcpts[3] = { "a@x", "b@x", "c@x" };
	int			 sv[2];

	(void)state;
	assert_int_equal(pair(sv), 0);
	am.str[0] = "192.0.2.1";
	am.str[1] = "name";
	am.str[2] = NULL;		/* sent as "" */
	am.str[3] = "s@x";
	am.str[4] = "f:1";
	am.rcpts = rcpts;
	am.nrcpt = 3;
	assert_int_equal(audit_ipc_send(sv[0], MSG_CAPTURE_AUDIT, &am), 0);
	assert_int_equal(ipc_recv(sv[1], &m), 1);
	assert_int_equal(audit_ipc_parse(m.hdr.type, m.data, m.hdr.len, &ev,
	    &why), 0);
	assert_string_equal(ev.str[0], "192.0.2.1");
	assert_string_equal(ev.str[2], "");
	assert_int_equal(ev.nrcpt, 3);
	assert_string_equal(ev.rcpts + 8, "c@x");
	/* The same record as another child's type: refused. */
	assert_int_equal(audit_ipc_parse(MSG_SPOOLER_AUDIT, m.data,
	    m.hdr.len, &ev, &why), -1);
	/* One byte more, one less: refused. */
	assert_int_equal(audit_ipc_parse(MSG_CAPTURE_AUDIT, m.data,
	    m.hdr.len - 1, &ev, &why), -1);
	buf[m.hdr.len] = 'x';
	assert_int_equal(audit_ipc_parse(MSG_CAPTURE_AUDIT, m.data,
	    m.hdr.len + 1, &ev, &why), -1);
	/* An ack is for commits only. */
	am.flags = AUDIT_F_ACK;
	assert_int_equal(audit_ipc_send(sv[0], MSG_CAPTURE_AUDIT, &am), 0);
	assert_int_equal(ipc_recv(sv[1], &m), 1);
	assert_int_equal(audit_ipc_parse(m.hdr.type, m.data, m.hdr.len, &ev,
	    &why), -1);
	close(sv[0]);
	close(sv[1]);
}

static void
too_many_recipients_are_counted(void **state)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	struct audit_msg	 am = { .event = AUDIT_EV_DELIVERED };
	struct audit_event	 ev;
	const char		*why, **rcpts = calloc(20000, sizeof(*rcpts));
	int			 sv[2];

	(void)state;
	assert_int_equal(pair(sv), 0);
	for (int i = 0; i < 20000; i++)
		rcpts[i] = "someone-with-a-long-name@example.com";
	am.str[0] = "Q.A";
	am.str[1] = "SMTP";
	am.str[2] = "250 ok";
	am.rcpts = rcpts;
	am.nrcpt = 20000;
	assert_int_equal(audit_ipc_send(sv[0], MSG_RELAY_AUDIT, &am), 0);
	assert_int_equal(ipc_recv(sv[1], &m), 1);
	assert_int_equal(audit_ipc_parse(m.hdr.type, m.data, m.hdr.len, &ev,
	    &why), 0);
	assert_true(ev.nrcpt > 1000);
	assert_int_equal(ev.nrcpt + ev.omitted, 20000);
	free(rcpts);
	close(sv[0]);
	close(sv[1]);
}

/* ---- the spooler's digest, taken while it writes ---- */

static void
commit_digest_while_writing(void **state)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	struct spool_dir	 d = { .fd = -1, .mode = 0600,
				    .audit = SPOOL_AUDIT_ON };
	struct spool_file	 f;
	struct audit_event	 ev;
	const char		 head[] = "S<a@example.org>\nO<b@example.com>\n"
	    "O<c@example.com>\nReceived: from helo.example (client.example "
	    "[192.0.2.7])\n\tby mx;\n\tThu, 1 Jan 1970\nSubject: x\n\nbody\n";
	unsigned char		 want[32], file[512];
	char			 reason[256], path[MSM_PATH_LEN + 16];
	const char		*why;
	int			 sv[2], saved = dup(IPC_PARENT_FD);
	ssize_t			 n;

	(void)state;
	snprintf(d.path, sizeof(d.path), "/tmp/msm-audit-spool-XXXXXX");
	assert_non_null(mkdtemp(d.path));
	assert_int_equal(pair(sv), 0);
	assert_int_equal(dup2(sv[0], IPC_PARENT_FD), IPC_PARENT_FD);
	assert_int_equal(spool_create(&d, &f, "QID1", reason,
	    sizeof(reason)), 0);
	/* In odd pieces: lines cut anywhere. */
	for (size_t off = 0; off < sizeof(head) - 1; off += 7) {
		size_t k = sizeof(head) - 1 - off < 7 ? sizeof(head) - 1 - off :
		    7;

		assert_int_equal(spool_write(&f, head + off, k, reason,
		    sizeof(reason)), 0);
	}
	assert_int_equal(spool_publish(&d, &f, reason, sizeof(reason)), 0);
	assert_int_equal(spool_sync_dir(&d, reason, sizeof(reason)), 0);
	spool_audit_commit(&d, &f);
	spool_done(&f);
	assert_int_equal(ipc_recv(sv[1], &m), 1);
	assert_int_equal(audit_ipc_parse(m.hdr.type, m.data, m.hdr.len, &ev,
	    &why), 0);
	assert_int_equal(ev.event, AUDIT_EV_COMMIT);
	assert_string_equal(ev.str[0], "QID1");
	assert_string_equal(ev.str[1], "192.0.2.7");
	assert_string_equal(ev.str[2], "client.example");
	assert_string_equal(ev.str[3], "helo.example");
	assert_string_equal(ev.str[4], "a@example.org");
	assert_int_equal(ev.nrcpt, 2);
	assert_string_equal(ev.rcpts, "b@example.com");
	snprintf(path, sizeof(path), "%s/QID1", d.path);
	{
		FILE *fp = fopen(path, "rb");

		assert_non_null(fp);
		n = (ssize_t)fread(file, 1, sizeof(file), fp);
		fclose(fp);
	}
	assert_int_equal(n, sizeof(head) - 1);
	assert_int_equal(ev.size, (uint64_t)n);
	crypto_generichash(want, 32, file, (size_t)n, NULL, 0);
	assert_memory_equal(ev.digest, want, 32);
	unlink(path);
	rmdir(d.path);
	close(d.fd);
	dup2(saved, IPC_PARENT_FD);
	close(saved);
	close(sv[0]);
	close(sv[1]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(key_file_forgets_earlier_keys),
		cmocka_unit_test(later_key_yields_no_earlier_one),
		cmocka_unit_test(merkle_matches_rfc6962),
		cmocka_unit_test(mac_and_signature),
		cmocka_unit_test(json_escapes_hostile_values),
		cmocka_unit_test(reader_takes_back_what_was_written),
		cmocka_unit_test(reader_refuses_what_the_writer_never_writes),
		cmocka_unit_test(time_round_trip),
		cmocka_unit_test(event_records),
		cmocka_unit_test(too_many_recipients_are_counted),
		cmocka_unit_test(commit_digest_while_writing),
	};

	if (sodium_init() == -1)
		return 1;
	return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
