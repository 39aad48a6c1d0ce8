/*
 * msmilter-audit keygen: a fresh K(0), every epoch's Ed25519 public key
 * for the key's lifetime, and the Merkle tree over them.  KEYDIR gets the
 * evolving secret (audit.key, 0600: the parent's Milter Audit Key Dir)
 * and the public tree (audit.tree); OUTDIR gets audit.pub (the root) and
 * audit.k0 (K(0)), which belong off the host.  Nothing is overwritten: a
 * lost key could no longer verify the log it sealed.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "tool.h"

#define DEFAULT_DAYS		365
#define DEFAULT_SECONDS		60
#define MAX_LEAVES		(1ULL << 26)	/* 2 GB of tree */

struct keygen {
	const char	*keydir, *outdir;
	double		 days;
	unsigned long	 seconds;
	uint64_t	 leaves;
};

static int
keygen_args(int argc, char **argv, struct keygen *g)
{
	static const struct option longopts[] = {
		{ "lifetime", required_argument, NULL, 'l' },
		{ "epoch", required_argument, NULL, 'e' },
		{ NULL, 0, NULL, 0 },
	};
	char	*end;
	int	 ch;

	g->days = DEFAULT_DAYS;
	g->seconds = DEFAULT_SECONDS;
	while ((ch = getopt_long(argc, argv, "k:o:", longopts, NULL)) != -1) {
		switch (ch) {
		case 'k': g->keydir = optarg; break;
		case 'o': g->outdir = optarg; break;
		case 'l': g->days = strtod(optarg, &end);
			if (*end != '\0' || !(g->days > 0))
				return -1;
			break;
		case 'e': g->seconds = strtoul(optarg, &end, 10);
			if (*end != '\0' || g->seconds == 0 ||
			    g->seconds > 86400)
				return -1;
			break;
		default: return -1;
		}
	}
	if (g->keydir == NULL || g->outdir == NULL || optind != argc)
		return -1;
	g->leaves = (uint64_t)(g->days * 86400 / (double)g->seconds + 0.999);
	if (g->leaves == 0 || g->leaves > MAX_LEAVES) {
		fprintf(stderr, "msmilter-audit: keygen: %g days of %lu s "
		    "epochs is %llu epochs; 1 to %llu allowed\n", g->days,
		    g->seconds, (unsigned long long)g->leaves, MAX_LEAVES);
		return -2;
	}
	return 0;
}

/* A directory of ours, made 0700 when missing. */
static int
make_dir(const char *dir)
{
	struct stat st;

	if (mkdir(dir, 0700) == -1 && errno != EEXIST) {
		fprintf(stderr, "msmilter-audit: mkdir %s: %s\n", dir,
		    strerror(errno));
		return -1;
	}
	if (stat(dir, &st) == -1 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, "msmilter-audit: %s is not a directory\n", dir);
		return -1;
	}
	return 0;
}

/* Nothing is written when any of the four files exists already. */
static int
refuse_existing(const struct keygen *g)
{
	const char	*dirs[] = { g->keydir, g->keydir, g->outdir, g->outdir };
	const char	*names[] = { AUDIT_KEY_NAME, AUDIT_TREE_NAME,
			    AUDIT_K0_NAME, AUDIT_PUB_NAME };
	char		 path[4096];
	struct stat	 st;

	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], names[i]);
		if (lstat(path, &st) == 0) {
			fprintf(stderr, "msmilter-audit: %s exists already: "
			    "move the old key away first (it still verifies "
			    "the log it sealed)\n", path);
			return -1;
		}
	}
	return 0;
}

/* Write a new file exclusively, fsync it; never replace one. */
static int
write_new(const char *dir, const char *name, mode_t mode, const void *p,
    size_t len)
{
	char	 path[4096];
	int	 fd;
	ssize_t	 n = -1;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
	    mode);
	if (fd != -1 && fchmod(fd, mode) == 0)
		n = write(fd, p, len);
	if (fd == -1 || n != (ssize_t)len || fsync(fd) == -1) {
		fprintf(stderr, "msmilter-audit: %s: %s\n", path, fd == -1 &&
		    errno == EEXIST ? "exists already (move the old key away "
		    "first: it still verifies the log it sealed)" :
		    strerror(errno));
		if (fd != -1) {
			close(fd);
			unlink(path);
		}
		return -1;
	}
	close(fd);
	return 0;
}

/* Every epoch's public key as a leaf hash, then the levels above them. */
static unsigned char (*build_tree(const struct audit_key *k0,
    uint64_t *total))[AUDIT_HASH]
{
	uint64_t	 counts[65], offsets[65];
	unsigned	 levels = audit_merkle_levels(k0->leaves, counts, offsets);
	unsigned char	 (*nodes)[AUDIT_HASH], pk[AUDIT_HASH], sk[64];
	struct audit_key k = *k0;

	*total = offsets[levels - 1] + 1;
	if ((nodes = calloc(*total, AUDIT_HASH)) == NULL)
		return NULL;
	for (uint64_t e = 0; e < k0->leaves; e++) {
		audit_key_sign_pair(k.key, pk, sk);
		audit_merkle_leaf(pk, sizeof(pk), nodes[e]);
		audit_key_evolve(&k);
	}
	sodium_memzero(sk, sizeof(sk));
	sodium_memzero(&k, sizeof(k));
	audit_merkle_build(nodes, k0->leaves);
	return nodes;
}

static int
write_tree(const char *dir, const struct audit_key *k,
    unsigned char (*nodes)[AUDIT_HASH], uint64_t total)
{
	size_t		 len = AUDIT_TREE_HEADER + total * AUDIT_HASH;
	unsigned char	*buf = calloc(1, len);
	int		 rc;

	if (buf == NULL)
		return -1;
	memcpy(buf, AUDIT_TREE_MAGIC, 8);
	for (int i = 0; i < 8; i++)
		buf[8 + i] = (unsigned char)(k->leaves >> (8 * i));
	memcpy(buf + 16, k->root, AUDIT_HASH);
	memcpy(buf + AUDIT_TREE_HEADER, nodes, total * AUDIT_HASH);
	rc = write_new(dir, AUDIT_TREE_NAME, 0644, buf, len);
	free(buf);
	return rc;
}

static int
write_keys(const struct keygen *g, const struct audit_key *k0)
{
	unsigned char	 enc[AUDIT_KEY_FILE_SIZE];
	char		 pub[512];
	struct audit_pub p = { .leaves = k0->leaves, .start = k0->start,
			    .seconds = k0->seconds };
	int		 rc;

	memcpy(p.root, k0->root, AUDIT_HASH);
	if (audit_pub_format(&p, pub, sizeof(pub)) == -1)
		return -1;
	audit_key_encode(k0, enc);
	rc = write_new(g->keydir, AUDIT_KEY_NAME, 0600, enc, sizeof(enc)) ||
	    write_new(g->outdir, AUDIT_K0_NAME, 0600, enc, sizeof(enc)) ||
	    write_new(g->outdir, AUDIT_PUB_NAME, 0644, pub, strlen(pub));
	sodium_memzero(enc, sizeof(enc));
	return rc ? -1 : 0;
}

static void
report(const struct keygen *g, const struct audit_key *k)
{
	char id[17];

	audit_key_id(k->root, id);
	printf("key %s: %llu epochs of %lu s from %llu (about %g days)\n"
	    "  %s/%s (the evolving secret, 0600) and %s/%s (public)\n"
	    "  %s/%s and %s/%s: copy both off this host, then delete them "
	    "here;\n  verify with msmilter-audit verify -p audit.pub "
	    "[-K audit.k0] LOG...\n", id, (unsigned long long)k->leaves,
	    g->seconds, (unsigned long long)k->start, g->days, g->keydir,
	    AUDIT_KEY_NAME, g->keydir, AUDIT_TREE_NAME, g->outdir,
	    AUDIT_PUB_NAME, g->outdir, AUDIT_K0_NAME);
}

int
cmd_keygen(int argc, char **argv)
{
	struct keygen		 g = { 0 };
	struct audit_key	 k0 = { 0 };
	unsigned char		 (*nodes)[AUDIT_HASH];
	uint64_t		 total;
	int			 rc;

	if ((rc = keygen_args(argc, argv, &g)) != 0) {
		if (rc == -1)
			fprintf(stderr, "usage: msmilter-audit keygen -k KEYDIR "
			    "-o OUTDIR [--lifetime DAYS] [--epoch SECONDS]\n");
		return 64;
	}
	if (make_dir(g.keydir) == -1 || make_dir(g.outdir) == -1 ||
	    refuse_existing(&g) == -1)
		return 1;
	umask(077);
	k0.start = (uint64_t)time(NULL);
	k0.seconds = (uint32_t)g.seconds;
	k0.leaves = g.leaves;
	randombytes_buf(k0.key, sizeof(k0.key));
	if ((nodes = build_tree(&k0, &total)) == NULL) {
		fprintf(stderr, "msmilter-audit: keygen: out of memory\n");
		return 1;
	}
	memcpy(k0.root, nodes[total - 1], AUDIT_HASH);
	rc = write_tree(g.keydir, &k0, nodes, total) == -1 ||
	    write_keys(&g, &k0) == -1;
	free(nodes);
	if (rc == 0)
		report(&g, &k0);
	sodium_memzero(&k0, sizeof(k0));
	return rc ? 1 : 0;
}
