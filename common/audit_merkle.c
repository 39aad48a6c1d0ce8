/*
 * The Merkle tree over every epoch's public key (see audit.h): RFC 6962's
 * shape with BLAKE2b-256, stored level by level so that the parent reads
 * an audit path with a few preads and keeps nothing in memory.  The
 * verifier side (audit_merkle_verify) trusts nothing it is given.
 */
#include <string.h>

#include <sodium.h>

#include "audit.h"

void
audit_merkle_leaf(const void *data, size_t len, unsigned char out[AUDIT_HASH])
{
	crypto_generichash_state	st;
	const unsigned char		zero = 0x00;

	crypto_generichash_init(&st, NULL, 0, AUDIT_HASH);
	crypto_generichash_update(&st, &zero, 1);
	crypto_generichash_update(&st, data, len);
	crypto_generichash_final(&st, out, AUDIT_HASH);
}

void
audit_merkle_node(const unsigned char l[AUDIT_HASH],
    const unsigned char r[AUDIT_HASH], unsigned char out[AUDIT_HASH])
{
	crypto_generichash_state	st;
	const unsigned char		one = 0x01;

	crypto_generichash_init(&st, NULL, 0, AUDIT_HASH);
	crypto_generichash_update(&st, &one, 1);
	crypto_generichash_update(&st, l, AUDIT_HASH);
	crypto_generichash_update(&st, r, AUDIT_HASH);
	crypto_generichash_final(&st, out, AUDIT_HASH);
}

unsigned
audit_merkle_levels(uint64_t leaves, uint64_t counts[65], uint64_t offsets[65])
{
	unsigned	 n = 0;
	uint64_t	 c = leaves, off = 0;

	if (leaves == 0)
		return 0;
	for (;;) {
		counts[n] = c;
		offsets[n] = off;
		n++;
		if (c == 1)
			return n;
		off += c;
		c = c / 2 + (c & 1);
	}
}

void
audit_merkle_build(unsigned char (*nodes)[AUDIT_HASH], uint64_t leaves)
{
	uint64_t	 counts[65], offsets[65];
	unsigned	 levels = audit_merkle_levels(leaves, counts, offsets);

	for (unsigned i = 0; i + 1 < levels; i++) {
		unsigned char (*below)[AUDIT_HASH] = nodes + offsets[i];
		unsigned char (*above)[AUDIT_HASH] = nodes + offsets[i + 1];

		for (uint64_t j = 0; j < counts[i + 1]; j++) {
			if (2 * j + 1 < counts[i])
				audit_merkle_node(below[2 * j], below[2 * j + 1],
				    above[j]);
			else	/* no right sibling: promoted as it is */
				memcpy(above[j], below[2 * j], AUDIT_HASH);
		}
	}
}

int
audit_merkle_path(uint64_t leaves, uint64_t m, audit_node_fn node, void *arg,
    unsigned char path[AUDIT_PATH_MAX][AUDIT_HASH], size_t *npath)
{
	uint64_t	 counts[65], offsets[65];
	unsigned	 levels = audit_merkle_levels(leaves, counts, offsets);

	*npath = 0;
	if (m >= leaves)
		return -1;
	for (unsigned i = 0; i + 1 < levels; i++, m >>= 1) {
		uint64_t sib = m ^ 1;

		if (sib >= counts[i])
			continue;	/* promoted: nothing to hash with */
		if (*npath == AUDIT_PATH_MAX ||
		    node(arg, offsets[i] + sib, path[*npath]) == -1)
			return -1;
		(*npath)++;
	}
	return 0;
}

int
audit_merkle_verify(uint64_t leaves, uint64_t m,
    const unsigned char leaf[AUDIT_HASH],
    const unsigned char (*path)[AUDIT_HASH], size_t npath,
    const unsigned char root[AUDIT_HASH])
{
	unsigned char	 r[AUDIT_HASH];
	uint64_t	 fn = m, sn = leaves - 1;

	if (leaves == 0 || m >= leaves)
		return 0;
	memcpy(r, leaf, AUDIT_HASH);
	for (size_t i = 0; i < npath; i++) {
		if (sn == 0)
			return 0;
		if ((fn & 1) || fn == sn) {
			audit_merkle_node(path[i], r, r);
			while (!(fn & 1) && fn != 0) {
				fn >>= 1;
				sn >>= 1;
			}
		} else
			audit_merkle_node(r, path[i], r);
		fn >>= 1;
		sn >>= 1;
	}
	return sn == 0 && sodium_memcmp(r, root, AUDIT_HASH) == 0;
}
