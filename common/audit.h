/*
 * The audit log's format and cryptography, shared by the parent's writer
 * (privsep/audit.c), msmilter-audit (audit/) and the tests: JSON Lines
 * records (audit_json.c), the evolving key and what is derived from it
 * (audit_key.c), the Merkle tree over every epoch's public key
 * (audit_merkle.c).  Nothing in a record is trusted by the reader; the
 * key functions are the only ones that touch disk.
 *
 * Key evolution: K(e+1) = KDF(K(e), AUDIT_SUB_NEXT); the MAC key of epoch
 * e is KDF(K(e), AUDIT_SUB_MAC), its Ed25519 seed KDF(K(e), AUDIT_SUB_SIGN)
 * (crypto_kdf_derive_from_key, context AUDIT_KDF_CONTEXT).  Hashes are
 * BLAKE2b-256 throughout.
 */
#ifndef MSM_AUDIT_H
#define MSM_AUDIT_H

#include <stddef.h>
#include <stdint.h>

#define AUDIT_HASH		32	/* BLAKE2b-256, keys, seeds */
#define AUDIT_HEX		(2 * AUDIT_HASH + 1)
#define AUDIT_SIG		64	/* Ed25519 */
#define AUDIT_KDF_CONTEXT	"msmaudit"
#define AUDIT_PATH_MAX		64	/* Merkle path entries: 2^64 leaves */

enum audit_subkey { AUDIT_SUB_NEXT = 1, AUDIT_SUB_MAC = 2, AUDIT_SUB_SIGN = 3 };

/* File names in Milter Audit Key Dir and keygen's OUTDIR. */
#define AUDIT_KEY_NAME		"audit.key"	/* K(e), 0600, rewritten in place */
#define AUDIT_TREE_NAME		"audit.tree"	/* public: the Merkle tree */
#define AUDIT_PUB_NAME		"audit.pub"	/* the root: keep it off the host */
#define AUDIT_K0_NAME		"audit.k0"	/* K(0): keep it off the host */

/* ---- hashes, MACs, keys (audit_key.c) ---- */

void	audit_hash(const void *p, size_t len, unsigned char out[AUDIT_HASH]);
void	audit_mac(const unsigned char mac_key[AUDIT_HASH], const void *p,
	    size_t len, unsigned char out[AUDIT_HASH]);
/* Lower-case hex of n bytes into out (2n + 1). */
void	audit_hex(const unsigned char *p, size_t n, char *out);
/* Exactly 2n hex digits into n bytes; 0 or -1. */
int	audit_unhex(const char *s, size_t slen, unsigned char *out, size_t n);

/*
 * The evolving secret, as the key file holds it (AUDIT_KEY_FILE_SIZE
 * bytes, little-endian, fixed size so that each epoch's key overwrites
 * the last one in place).  audit.k0 has the same format with epoch 0.
 */
#define AUDIT_KEY_MAGIC		"MSMAUDK1"
#define AUDIT_KEY_FILE_SIZE	104
struct audit_key {
	uint64_t	 start;		/* unix time epoch 0 begins */
	uint32_t	 seconds;	/* epoch length */
	uint64_t	 leaves;	/* epochs in the key's lifetime */
	uint64_t	 epoch;		/* whose key this is */
	unsigned char	 root[AUDIT_HASH];	/* of the epochs' public keys */
	unsigned char	 key[AUDIT_HASH];	/* K(epoch) */
};

void	audit_key_encode(const struct audit_key *k,
	    unsigned char out[AUDIT_KEY_FILE_SIZE]);
int	audit_key_decode(const unsigned char *in, size_t len,
	    struct audit_key *k);
/* Read the key open on fd (pread at 0); -1 with why. */
int	audit_key_read(int fd, struct audit_key *k, char *why, size_t len);
/*
 * Overwrite the key file open on fd in place (pwrite at 0, the same
 * size) and fsync it: the previous key's bytes are gone from the file.
 */
int	audit_key_write(int fd, const struct audit_key *k, char *why,
	    size_t len);
/* K(e) -> K(e+1) in place; the old key is wiped (sodium_memzero). */
void	audit_key_evolve(struct audit_key *k);
void	audit_key_mac_key(const unsigned char key[AUDIT_HASH],
	    unsigned char mac_key[AUDIT_HASH]);
/* Epoch e's Ed25519 pair; the caller wipes sk. */
void	audit_key_sign_pair(const unsigned char key[AUDIT_HASH],
	    unsigned char pk[AUDIT_HASH], unsigned char sk[64]);
/* "1a2b3c4d5e6f7a8b": the first 8 bytes of the root, naming a key. */
void	audit_key_id(const unsigned char root[AUDIT_HASH], char out[17]);
/* The epoch at unix time now (0 before start). */
uint64_t audit_epoch_at(uint64_t start, uint32_t seconds, int64_t now);

/* audit.pub: the root and the parameters, as text. */
struct audit_pub {
	unsigned char	 root[AUDIT_HASH];
	uint64_t	 leaves;
	uint64_t	 start;
	uint32_t	 seconds;
};
int	audit_pub_format(const struct audit_pub *p, char *buf, size_t len);
int	audit_pub_parse(const char *text, size_t len, struct audit_pub *p,
	    char *why, size_t whylen);

/*
 * What a checkpoint's signature covers: a BLAKE2b-256 digest of the
 * domain string, epoch, line count, chain head, tree size, public key
 * and Merkle path.
 */
void	audit_checkpoint_digest(uint64_t epoch, uint64_t count,
	    const unsigned char head[AUDIT_HASH], uint64_t leaves,
	    const unsigned char pk[AUDIT_HASH],
	    const unsigned char (*path)[AUDIT_HASH], size_t npath,
	    unsigned char out[AUDIT_HASH]);

/* ---- the Merkle tree (audit_merkle.c): RFC 6962 shape, BLAKE2b-256 ---- */

/* H(0x00 || data), H(0x01 || left || right) */
void	audit_merkle_leaf(const void *data, size_t len,
	    unsigned char out[AUDIT_HASH]);
void	audit_merkle_node(const unsigned char l[AUDIT_HASH],
	    const unsigned char r[AUDIT_HASH], unsigned char out[AUDIT_HASH]);
/*
 * The tree as levels: level 0 the leaf hashes, level i+1 node j the node
 * of level i's 2j and 2j+1, or level i's 2j alone when it has no right
 * sibling (the same root and paths as RFC 6962's recursive split).
 * Returns the number of levels; counts[i] nodes on level i, offsets[i]
 * the index of its first node when the levels are stored one after the
 * other.
 */
unsigned audit_merkle_levels(uint64_t leaves, uint64_t counts[65],
	    uint64_t offsets[65]);
/* Every level from the leaf hashes in nodes[0..leaves); room for all. */
void	audit_merkle_build(unsigned char (*nodes)[AUDIT_HASH],
	    uint64_t leaves);
/* Reads node index of the stored levels; 0 or -1. */
typedef int (*audit_node_fn)(void *arg, uint64_t index,
	    unsigned char out[AUDIT_HASH]);
/* The audit path of leaf m (bottom up); -1 when a node cannot be read. */
int	audit_merkle_path(uint64_t leaves, uint64_t m, audit_node_fn node,
	    void *arg, unsigned char path[AUDIT_PATH_MAX][AUDIT_HASH],
	    size_t *npath);
/* RFC 9162 2.1.3.2: 1 when path proves leaf hash at m under root. */
int	audit_merkle_verify(uint64_t leaves, uint64_t m,
	    const unsigned char leaf[AUDIT_HASH],
	    const unsigned char (*path)[AUDIT_HASH], size_t npath,
	    const unsigned char root[AUDIT_HASH]);

/* audit.tree: a header, then the levels one after the other. */
#define AUDIT_TREE_MAGIC	"MSMAUDT1"
#define AUDIT_TREE_HEADER	64	/* magic, leaves, root, reserved */

/* ---- records (audit_json.c) ---- */

/* A growing buffer for one record; out of memory sticks in failed. */
struct jbuf {
	char	*p;
	size_t	 len, cap;
	int	 failed;
};

void	jb_reset(struct jbuf *b);
void	jb_free(struct jbuf *b);
void	jb_raw(struct jbuf *b, const char *s, size_t n);
/*
 * A JSON string: quotes and backslashes escaped, control characters and
 * DEL as \u00XX, valid UTF-8 kept, every byte of invalid UTF-8 as a lone
 * surrogate \udc80..\udcff (Python's surrogateescape), so the exact bytes
 * can be recovered and the line stays valid UTF-8.
 */
void	jb_str(struct jbuf *b, const char *s, size_t n);
/* ,"key":value pieces (the first key of an object adds no comma). */
void	jb_key(struct jbuf *b, const char *key);
void	jb_kstr(struct jbuf *b, const char *key, const char *s);
void	jb_ku64(struct jbuf *b, const char *key, uint64_t v);
void	jb_kbool(struct jbuf *b, const char *key, int v);
void	jb_khex(struct jbuf *b, const char *key, const unsigned char *p,
	    size_t n);
/* An array of n NUL-terminated strings packed one after the other. */
void	jb_kpacked(struct jbuf *b, const char *key, const char *packed,
	    size_t n);

/* "2026-11-24T10:00:00.123456Z" from microseconds since 1970 (UTC). */
void	audit_time_format(int64_t us, char out[32]);
/* The reverse, strictly that shape; -1 otherwise. */
int	audit_time_parse(const char *s, int64_t *us);

enum jkind { JK_STR, JK_NUM, JK_BOOL, JK_ARRAY };

struct audit_field {
	const char	*key;
	enum jkind	 kind;
	uint64_t	 num;		/* JK_NUM, JK_BOOL */
	const char	*str;		/* JK_STR decoded; JK_ARRAY packed */
	size_t		 len;		/* JK_STR bytes; JK_ARRAY items */
};

#define AUDIT_MAX_FIELDS	24

/* One parsed line; strings point into arena (owned, see audit_line_free). */
struct audit_line {
	uint64_t		 seq, epoch;
	int64_t			 time_us;
	const char		*time;
	const char		*event;
	struct audit_field	 f[AUDIT_MAX_FIELDS];
	size_t			 nf;
	unsigned char		 prev[AUDIT_HASH];
	int			 has_mac;
	unsigned char		 mac[AUDIT_HASH];
	size_t			 mac_at;	/* bytes the MAC covers */
	char			*arena;
	size_t			 arena_cap;
};

/*
 * Parse one record (without its newline) strictly: one object, no
 * whitespace, keys in the order DESIGN.md gives for its event, known
 * events only, each value of its key's type, no duplicate, nothing
 * after.  0, or -1 with why.
 */
int	audit_line_parse(const char *line, size_t len, struct audit_line *l,
	    char *why, size_t whylen);
void	audit_line_free(struct audit_line *l);
const struct audit_field *audit_line_get(const struct audit_line *l,
	    const char *key);
/* A field's string (JK_STR), or "" when absent or of another kind. */
const char *audit_line_str(const struct audit_line *l, const char *key);
/* 1 when the event names a record of that kind. */
int	audit_event_known(const char *event);

#endif
