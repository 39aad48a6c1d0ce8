/*
 * The milterout files the relay knows of, indexed twice so that nothing
 * costs time in proportion to the backlog: a hash table by name (a rescan
 * of n files is n lookups) and a binary heap by due time of those no
 * worker has (what is due next is at the top).  Names come from a
 * directory the Run As User can write, so the hash is keyed SipHash
 * (libsodium's crypto_shorthash) with a key of our own: nobody can
 * choose names that all land in one chain.  The main thread's only.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "relay.h"

#define NOT_WAITING	SIZE_MAX	/* heap_at of a file a worker has */
#define MIN_BUCKETS	1024

static size_t
bucket_of(const struct relay *r, const char *name, size_t nbuckets)
{
	unsigned char	 h[crypto_shorthash_BYTES];
	uint64_t	 v;

	crypto_shorthash(h, (const unsigned char *)name, strlen(name),
	    r->hashkey);
	memcpy(&v, h, sizeof(v));
	return (size_t)(v & (nbuckets - 1));	/* a power of two */
}

/* Twice as many chains once there are more files than chains. */
static void
grow_buckets(struct relay *r)
{
	size_t		 n = r->nbuckets ? r->nbuckets * 2 : MIN_BUCKETS;
	struct pending	**b = calloc(n, sizeof(*b));

	if (b == NULL)
		return;		/* longer chains, still correct */
	for (size_t i = 0; i < r->nbuckets; i++)
		while (r->buckets[i] != NULL) {
			struct pending	*p = r->buckets[i];
			size_t		 k = bucket_of(r, p->name, n);

			r->buckets[i] = p->hnext;
			p->hnext = b[k];
			b[k] = p;
		}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = n;
}

struct pending *
pending_find(const struct relay *r, const char *name)
{
	struct pending *p;

	if (r->nbuckets == 0)
		return NULL;
	for (p = r->buckets[bucket_of(r, name, r->nbuckets)]; p != NULL;
	    p = p->hnext)
		if (strcmp(p->name, name) == 0)
			return p;
	return NULL;
}

/* ---- the heap: heap[0] is due first; each knows its place ---- */

static int
earlier(const struct pending *a, const struct pending *b)
{
	return a->due < b->due;
}

static void
put_at(struct relay *r, struct pending *p, size_t i)
{
	r->heap[i] = p;
	p->heap_at = i;
}

static void
sift_up(struct relay *r, size_t i)
{
	struct pending *p = r->heap[i];

	while (i > 0 && earlier(p, r->heap[(i - 1) / 2])) {
		put_at(r, r->heap[(i - 1) / 2], i);
		i = (i - 1) / 2;
	}
	put_at(r, p, i);
}

static void
sift_down(struct relay *r, size_t i)
{
	struct pending *p = r->heap[i];

	for (;;) {
		size_t c = 2 * i + 1;

		if (c >= r->nheap)
			break;
		if (c + 1 < r->nheap && earlier(r->heap[c + 1], r->heap[c]))
			c++;
		if (!earlier(r->heap[c], p))
			break;
		put_at(r, r->heap[c], i);
		i = c;
	}
	put_at(r, p, i);
}

static int
heap_push(struct relay *r, struct pending *p)
{
	if (r->nheap == r->heapcap) {
		size_t	 n = r->heapcap ? r->heapcap * 2 : MIN_BUCKETS;
		void	*h = reallocarray(r->heap, n, sizeof(*r->heap));

		if (h == NULL)
			return -1;
		r->heap = h;
		r->heapcap = n;
	}
	put_at(r, p, r->nheap++);
	sift_up(r, p->heap_at);
	return 0;
}

/* Out of the heap (a worker takes it, or it is forgotten). */
static void
heap_remove(struct relay *r, struct pending *p)
{
	size_t		 i = p->heap_at;
	struct pending	*last = r->heap[--r->nheap];

	p->heap_at = NOT_WAITING;
	if (i == r->nheap)
		return;
	put_at(r, last, i);
	sift_up(r, i);
	sift_down(r, last->heap_at);
}

/* ---- interface ---- */

void
pending_init(struct relay *r)
{
	crypto_shorthash_keygen(r->hashkey);
}

struct pending *
pending_new(struct relay *r, const char *name, time_t due)
{
	struct pending	*p = calloc(1, sizeof(*p));
	size_t		 k;

	if (p == NULL)
		return NULL;
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->due = due;
	if (heap_push(r, p) == -1) {
		free(p);
		return NULL;
	}
	if (r->nqueue >= r->nbuckets)
		grow_buckets(r);
	if (r->nbuckets == 0) {
		heap_remove(r, p);
		free(p);
		return NULL;
	}
	k = bucket_of(r, name, r->nbuckets);
	p->hnext = r->buckets[k];
	r->buckets[k] = p;
	r->nqueue++;
	return p;
}

void
pending_free(struct relay *r, struct pending *p)
{
	struct pending **pp = &r->buckets[bucket_of(r, p->name, r->nbuckets)];

	while (*pp != p)
		pp = &(*pp)->hnext;
	*pp = p->hnext;
	if (p->heap_at != NOT_WAITING)
		heap_remove(r, p);
	r->nqueue--;
	free(p);
}

/* A worker has it: out of the heap until its result comes back. */
void
pending_take(struct relay *r, struct pending *p)
{
	heap_remove(r, p);
}

int
pending_waiting(const struct pending *p)
{
	return p->heap_at != NOT_WAITING;
}

/*
 * Due at this time, waiting again if a worker had it.  -1 (with the
 * file no longer waiting) only when the heap cannot grow: the caller
 * forgets it and the next rescan finds the file again.
 */
int
pending_set_due(struct relay *r, struct pending *p, time_t due)
{
	time_t old = p->due;

	p->due = due;
	if (p->heap_at == NOT_WAITING)
		return heap_push(r, p);
	if (due < old)
		sift_up(r, p->heap_at);
	else
		sift_down(r, p->heap_at);
	return 0;
}

/* The waiting file due first, or NULL. */
struct pending *
pending_first(const struct relay *r)
{
	return r->nheap > 0 ? r->heap[0] : NULL;
}
