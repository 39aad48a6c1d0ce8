/*
 * clamd's answers, read strictly (see clamd_reply.h).  What clamd says
 * decides whether a message is delivered, so anything we do not fully
 * understand is a temporary failure, never a pass: a CLEAN needs exactly
 * one record saying exactly OK.
 */
#include <stdio.h>
#include <string.h>

#include "clamd_reply.h"

/* Signatures clamd reports when its size or recursion limits cut a scan
 * short (AlertExceedsMax yes): not a virus, not clean either. */
#define LIMITS_PREFIX	"Heuristics.Limits.Exceeded"

static int
bad(struct clamd_reply *r, const char *why)
{
	r->result = SCAN_TEMPFAIL;
	snprintf(r->detail, sizeof(r->detail), "unparseable answer from "
	    "clamd: %s", why);
	return -1;
}

/* "stream: " or "fd[N]: " (N 1 to 10 digits); how many bytes, or 0. */
static size_t
prefix_len(const char *p, size_t n)
{
	size_t i;

	if (n >= 8 && memcmp(p, "stream: ", 8) == 0)
		return 8;
	if (n < 3 || memcmp(p, "fd[", 3) != 0)
		return 0;
	for (i = 3; i < n && i < 13 && p[i] >= '0' && p[i] <= '9'; i++)
		;
	if (i == 3 || n - i < 3 || memcmp(p + i, "]: ", 3) != 0)
		return 0;
	return i + 3;
}

/* Ends with " WORD"?  The text before it, its length in *tlen. */
static int
ends_with(const char *p, size_t n, const char *word, size_t *tlen)
{
	size_t w = strlen(word);

	if (n < w + 2 || p[n - w - 1] != ' ' || memcmp(p + n - w, word, w) != 0)
		return 0;
	*tlen = n - w - 1;
	return 1;
}

/* A signature name: printable ASCII without blanks, bounded. */
static int
signature_ok(const char *p, size_t n)
{
	if (n == 0 || n >= IPC_SIGNATURE_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (p[i] <= ' ' || p[i] > '~')
			return 0;
	return 1;
}

/* Printable text of an ERROR, which may hold blanks. */
static int
text_ok(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] < ' ' || p[i] > '~')
			return 0;
	return 1;
}

enum kind { K_OK, K_FOUND, K_LIMIT, K_ERROR, K_BAD };

/* One record, without its terminator.  The interesting text in *t, *tn. */
static enum kind
record(const char *p, size_t n, const char **t, size_t *tn)
{
	size_t pre = prefix_len(p, n);

	p += pre;
	n -= pre;
	*t = p;
	*tn = n;
	/* A scan result names what was scanned; only errors may not
	 * ("INSTREAM size limit exceeded. ERROR"). */
	if (pre == 0)
		return ends_with(p, n, "ERROR", tn) && text_ok(p, *tn) ?
		    K_ERROR : K_BAD;
	if (n == 2 && memcmp(p, "OK", 2) == 0)
		return K_OK;
	if (ends_with(p, n, "FOUND", tn))
		return !signature_ok(p, *tn) ? K_BAD :
		    *tn >= sizeof(LIMITS_PREFIX) - 1 && memcmp(p, LIMITS_PREFIX,
		    sizeof(LIMITS_PREFIX) - 1) == 0 ? K_LIMIT : K_FOUND;
	if (ends_with(p, n, "ERROR", tn))
		return text_ok(p, *tn) ? K_ERROR : K_BAD;
	return K_BAD;
}

/* clamd's own words for a stream longer than StreamMaxLength. */
static int
size_error(const char *t, size_t n)
{
	static const char limit[] = "size limit exceeded";

	for (size_t i = 0; i + sizeof(limit) - 1 <= n; i++)
		if (memcmp(t + i, limit, sizeof(limit) - 1) == 0)
			return 1;
	return 0;
}

static void
set(struct clamd_reply *r, int result, const char *t, size_t n)
{
	r->result = result;
	if (n >= sizeof(r->detail))
		n = sizeof(r->detail) - 1;
	memcpy(r->detail, t, n);
	r->detail[n] = '\0';
}

int
clamd_reply_parse(const char *buf, size_t len, struct clamd_reply *r)
{
	const char	*p = buf, *end = buf + len, *t;
	size_t		 nrec = 0, tn;
	int		 found = 0, ok = 0, limit = 0;

	memset(r, 0, sizeof(*r));
	if (len == 0)
		return bad(r, "nothing (clamd closed the connection)");
	if (len > CLAMD_REPLY_MAX)
		return bad(r, "too long");
	if (end[-1] != '\0' && end[-1] != '\n')
		return bad(r, "not terminated");
	while (p < end) {
		const char	*e = p;
		enum kind	 k;

		while (*e != '\0' && *e != '\n')
			e++;	/* stops at the terminator checked above */
		if (++nrec > CLAMD_REPLY_RECORDS)
			return bad(r, "too many records");
		switch ((k = record(p, (size_t)(e - p), &t, &tn))) {
		case K_OK:
			ok++;
			break;
		case K_FOUND:
			if (!found++)
				set(r, SCAN_VIRUS, t, tn);
			break;
		case K_LIMIT:
			if (!limit++ && !found)
				set(r, SCAN_OVERSIZE, t, tn);
			break;
		case K_ERROR:
			/* One error is the whole answer. */
			if (nrec != 1 || e + 1 != end)
				return bad(r, "an ERROR among other records");
			set(r, size_error(t, tn) ? SCAN_OVERSIZE :
			    SCAN_TEMPFAIL, t, tn);
			return 0;
		case K_BAD:
			return bad(r, "neither OK, FOUND nor ERROR");
		}
		p = e + 1;
	}
	if (found) {
		if (ok)
			return bad(r, "both OK and FOUND");
		return 0;		/* a virus, whatever else was said */
	}
	if (limit)
		return ok ? bad(r, "both OK and FOUND") : 0;
	if (ok == 1 && nrec == 1) {
		set(r, SCAN_CLEAN, "", 0);
		return 0;
	}
	return bad(r, "more than one OK");
}

int
clamd_reply_pong(const char *buf, size_t len)
{
	return (len == 5 && memcmp(buf, "PONG", 4) == 0 &&
	    (buf[4] == '\0' || buf[4] == '\n'));
}
