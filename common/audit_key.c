/*
 * The audit log's keys (see audit.h): the key file, its evolution, what
 * each epoch's key yields (MAC key, Ed25519 pair), audit.pub, and the
 * digest a checkpoint signs.  The key file is trusted only as far as its
 * magic and sizes check out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "audit.h"

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t
get64(const unsigned char *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

void
audit_hash(const void *p, size_t len, unsigned char out[AUDIT_HASH])
{
	crypto_generichash(out, AUDIT_HASH, p, len, NULL, 0);
}

void
audit_mac(const unsigned char mac_key[AUDIT_HASH], const void *p, size_t len,
    unsigned char out[AUDIT_HASH])
{
	crypto_generichash(out, AUDIT_HASH, p, len, mac_key, AUDIT_HASH);
}

void
audit_hex(const unsigned char *p, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;		/* we write lower case only */
}

int
audit_unhex(const char *s, size_t slen, unsigned char *out, size_t n)
{
	if (slen != 2 * n)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* magic 8, start 8, seconds 4, reserved 4, leaves 8, epoch 8, root, key */
void
audit_key_encode(const struct audit_key *k,
    unsigned char out[AUDIT_KEY_FILE_SIZE])
{
	memset(out, 0, AUDIT_KEY_FILE_SIZE);
	memcpy(out, AUDIT_KEY_MAGIC, 8);
	put64(out + 8, k->start);
	put64(out + 16, k->seconds);	/* the upper half is reserved, 0 */
	put64(out + 24, k->leaves);
	put64(out + 32, k->epoch);
	memcpy(out + 40, k->root, AUDIT_HASH);
	memcpy(out + 72, k->key, AUDIT_HASH);
}

int
audit_key_decode(const unsigned char *in, size_t len, struct audit_key *k)
{
	uint64_t seconds;

	if (len != AUDIT_KEY_FILE_SIZE || memcmp(in, AUDIT_KEY_MAGIC, 8) != 0)
		return -1;
	seconds = get64(in + 16);
	if (seconds == 0 || seconds > UINT32_MAX)
		return -1;
	k->start = get64(in + 8);
	k->seconds = (uint32_t)seconds;
	k->leaves = get64(in + 24);
	k->epoch = get64(in + 32);
	memcpy(k->root, in + 40, AUDIT_HASH);
	memcpy(k->key, in + 72, AUDIT_HASH);
	return k->leaves == 0 || k->epoch > k->leaves ? -1 : 0;
}

int
audit_key_read(int fd, struct audit_key *k, char *why, size_t len)
{
	unsigned char	 buf[AUDIT_KEY_FILE_SIZE + 1];
	ssize_t		 n = pread(fd, buf, sizeof(buf), 0);
	int		 rc;

	if (n == -1) {
		snprintf(why, len, "read: %s", strerror(errno));
		return -1;
	}
	rc = audit_key_decode(buf, (size_t)n, k);
	sodium_memzero(buf, sizeof(buf));
	if (rc == -1)
		snprintf(why, len, "not an msmilter audit key (%zd bytes, "
		    "expected %d)", n, AUDIT_KEY_FILE_SIZE);
	return rc;
}

int
audit_key_write(int fd, const struct audit_key *k, char *why, size_t len)
{
	unsigned char	 buf[AUDIT_KEY_FILE_SIZE];
	ssize_t		 n;

	audit_key_encode(k, buf);
	n = pwrite(fd, buf, sizeof(buf), 0);
	sodium_memzero(buf, sizeof(buf));
	if (n != (ssize_t)sizeof(buf)) {
		snprintf(why, len, "write: %s", n == -1 ? strerror(errno) :
		    "short write");
		return -1;
	}
	if (fsync(fd) == -1) {
		snprintf(why, len, "fsync: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static void
derive(const unsigned char key[AUDIT_HASH], enum audit_subkey id,
    unsigned char out[AUDIT_HASH])
{
	crypto_kdf_derive_from_key(out, AUDIT_HASH, (uint64_t)id,
	    AUDIT_KDF_CONTEXT, key);
}

void
audit_key_evolve(struct audit_key *k)
{
	unsigned char next[AUDIT_HASH];

	derive(k->key, AUDIT_SUB_NEXT, next);
	memcpy(k->key, next, AUDIT_HASH);
	sodium_memzero(next, sizeof(next));
	k->epoch++;
}

void
audit_key_mac_key(const unsigned char key[AUDIT_HASH],
    unsigned char mac_key[AUDIT_HASH])
{
	derive(key, AUDIT_SUB_MAC, mac_key);
}

void
audit_key_sign_pair(const unsigned char key[AUDIT_HASH],
    unsigned char pk[AUDIT_HASH], unsigned char sk[64])
{
	unsigned char seed[crypto_sign_SEEDBYTES];

	derive(key, AUDIT_SUB_SIGN, seed);
	crypto_sign_seed_keypair(pk, sk, seed);
	sodium_memzero(seed, sizeof(seed));
}

void
audit_key_id(const unsigned char root[AUDIT_HASH], char out[17])
{
	audit_hex(root, 8, out);
}

uint64_t
audit_epoch_at(uint64_t start, uint32_t seconds, int64_t now)
{
	if (now < 0 || (uint64_t)now < start || seconds == 0)
		return 0;
	return ((uint64_t)now - start) / seconds;
}

int
audit_pub_format(const struct audit_pub *p, char *buf, size_t len)
{
	char	 root[AUDIT_HEX];
	int	 n;

	audit_hex(p->root, AUDIT_HASH, root);
	n = snprintf(buf, len, "msmilter-audit-pub 1\nroot %s\nleaves %" PRIu64
	    "\nstart %" PRIu64 "\nepoch_seconds %" PRIu32 "\n", root,
	    p->leaves, p->start, p->seconds);
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* "name value\n" at *pos: value as a string of at most vlen - 1. */
static int
pub_line(const char **pos, const char *end, const char *name, char *value,
    size_t vlen)
{
	size_t		 nlen = strlen(name);
	const char	*nl = memchr(*pos, '\n', (size_t)(end - *pos));
	size_t		 n;

	if (nl == NULL || (size_t)(nl - *pos) <= nlen + 1 ||
	    memcmp(*pos, name, nlen) != 0 || (*pos)[nlen] != ' ')
		return -1;
	n = (size_t)(nl - *pos) - nlen - 1;
	if (n >= vlen)
		return -1;
	memcpy(value, *pos + nlen + 1, n);
	value[n] = '\0';
	*pos = nl + 1;
	return 0;
}

static int
parse_u64(const char *s, uint64_t *v)
{
	char *end;

	if (s[0] < '0' || s[0] > '9')
		return -1;
	errno = 0;
	*v = strtoull(s, &end, 10);
	return errno != 0 || *end != '\0' ? -1 : 0;
}

int
audit_pub_parse(const char *text, size_t len, struct audit_pub *p,
    char *why, size_t whylen)
{
	const char	*pos = text, *end = text + len;
	char		 v[AUDIT_HEX + 8];
	uint64_t	 seconds;
	static const char head[] = "msmilter-audit-pub 1\n";

	if (len < sizeof(head) - 1 || memcmp(text, head, sizeof(head) - 1)) {
		snprintf(why, whylen, "not an msmilter audit.pub");
		return -1;
	}
	pos += sizeof(head) - 1;
	if (pub_line(&pos, end, "root", v, sizeof(v)) == -1 ||
	    audit_unhex(v, strlen(v), p->root, AUDIT_HASH) == -1 ||
	    pub_line(&pos, end, "leaves", v, sizeof(v)) == -1 ||
	    parse_u64(v, &p->leaves) == -1 || p->leaves == 0 ||
	    pub_line(&pos, end, "start", v, sizeof(v)) == -1 ||
	    parse_u64(v, &p->start) == -1 ||
	    pub_line(&pos, end, "epoch_seconds", v, sizeof(v)) == -1 ||
	    parse_u64(v, &seconds) == -1 || seconds == 0 ||
	    seconds > UINT32_MAX || pos != end) {
		snprintf(why, whylen, "audit.pub: malformed");
		return -1;
	}
	p->seconds = (uint32_t)seconds;
	return 0;
}

void
audit_checkpoint_digest(uint64_t epoch, uint64_t count,
    const unsigned char head[AUDIT_HASH], uint64_t leaves,
    const unsigned char pk[AUDIT_HASH],
    const unsigned char (*path)[AUDIT_HASH], size_t npath,
    unsigned char out[AUDIT_HASH])
{
	static const char		 domain[] = "msmilter-audit checkpoint v1";
	crypto_generichash_state	 st;
	unsigned char			 n[8];

	crypto_generichash_init(&st, NULL, 0, AUDIT_HASH);
	crypto_generichash_update(&st, (const unsigned char *)domain,
	    sizeof(domain));
	put64(n, epoch);
	crypto_generichash_update(&st, n, 8);
	put64(n, count);
	crypto_generichash_update(&st, n, 8);
	crypto_generichash_update(&st, head, AUDIT_HASH);
	put64(n, leaves);
	crypto_generichash_update(&st, n, 8);
	crypto_generichash_update(&st, pk, AUDIT_HASH);
	put64(n, npath);
	crypto_generichash_update(&st, n, 8);
	for (size_t i = 0; i < npath; i++)
		crypto_generichash_update(&st, path[i], AUDIT_HASH);
	crypto_generichash_final(&st, out, AUDIT_HASH);
}
