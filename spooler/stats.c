/*
 * See stats.h.  Only the event loop touches these: the commit threads hand
 * their timings back with the finished job.
 */
#include <stdio.h>
#include <time.h>

#include "log.h"
#include "stats.h"

static unsigned
bucket(uint64_t v)
{
	unsigned e;

	if (v < 16)
		return (unsigned)v;
	e = 63u - (unsigned)__builtin_clzll(v);
	if (e >= 27)
		return HIST_BUCKETS - 1;
	return 16 + (e - 4) * HIST_SUB + (unsigned)((v >> (e - 3)) & 7);
}

static uint64_t
bucket_top(const struct hist *h, unsigned i)
{
	unsigned	 e, sub;
	uint64_t	 top;

	if (i < 16)
		return i;
	if (i == HIST_BUCKETS - 1)
		return h->max;
	e = 4 + (i - 16) / HIST_SUB;
	sub = (i - 16) % HIST_SUB;
	top = ((uint64_t)(9 + sub) << (e - 3)) - 1;
	return top < h->max ? top : h->max;
}

void
hist_add(struct hist *h, uint64_t v)
{
	h->n++;
	h->sum += v;
	if (v > h->max)
		h->max = v;
	h->b[bucket(v)]++;
}

uint64_t
hist_pct(const struct hist *h, unsigned pct)
{
	uint64_t want, seen = 0;

	if (h->n == 0)
		return 0;
	/* The smallest bucket with at least pct % of the values at or below. */
	want = (h->n * pct + 99) / 100;
	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->b[i];
		if (seen >= want)
			return bucket_top(h, i);
	}
	return h->max;
}

static int
put(char *buf, size_t len, size_t *off, const char *name,
    const struct hist *h)
{
	int n = snprintf(buf + *off, len - *off, "; %s n=%llu p50=%llu "
	    "p99=%llu max=%llu", name, (unsigned long long)h->n,
	    (unsigned long long)hist_pct(h, 50),
	    (unsigned long long)hist_pct(h, 99),
	    (unsigned long long)h->max);

	if (n < 0 || (size_t)n >= len - *off)
		return -1;
	*off += (size_t)n;
	return 0;
}

void
stats_log(const struct spool_stats *st)
{
	char	 line[LOG_LINE_MAX - 64];
	size_t	 off = 0;
	int	 n;

	n = snprintf(line, sizeof(line), "stats: %llu committed, %llu failed, "
	    "%llu withdrawn (us)", (unsigned long long)st->commit.n,
	    (unsigned long long)st->failed,
	    (unsigned long long)st->withdrawn);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	off = (size_t)n;
	if (put(line, sizeof(line), &off, "commit", &st->commit) == -1 ||
	    put(line, sizeof(line), &off, "create", &st->create) == -1 ||
	    put(line, sizeof(line), &off, "write", &st->write) == -1 ||
	    put(line, sizeof(line), &off, "fsync", &st->fsync) == -1 ||
	    put(line, sizeof(line), &off, "rename", &st->rename) == -1 ||
	    put(line, sizeof(line), &off, "dirsync", &st->dirsync) == -1 ||
	    put(line, sizeof(line), &off, "round", &st->round) == -1)
		return;
	n = snprintf(line + off, sizeof(line) - off, " mean=%.1f",
	    st->round.n ? (double)st->round.sum / (double)st->round.n : 0.0);
	if (n > 0 && (size_t)n < sizeof(line) - off && st->scan.n > 0) {
		off += (size_t)n;
		n = snprintf(line + off, sizeof(line) - off, "; scanned "
		    "clean=%llu virus=%llu tempfail=%llu oversize=%llu",
		    (unsigned long long)st->scanned[0],
		    (unsigned long long)st->scanned[1],
		    (unsigned long long)st->scanned[2],
		    (unsigned long long)st->scanned[3]);
		if (n > 0 && (size_t)n < sizeof(line) - off) {
			off += (size_t)n;
			if (put(line, sizeof(line), &off, "scan", &st->scan) ==
			    0)
				(void)put(line, sizeof(line), &off, "verdict",
				    &st->verdict);
		}
	}
	log_info("%s", line);
}
