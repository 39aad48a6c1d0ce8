/*
 * Audit records as JSON Lines (see audit.h): the writer the parent uses,
 * and the strict reader msmilter-audit and the parent's start-up use.
 * Values in records come from SMTP clients and MTAs: the writer escapes
 * every byte that could break a line or a terminal, and the reader takes
 * back exactly what the writer produces, nothing looser (fuzzed by
 * tests/fuzz/fuzz_audit.c, which checks that a parsed line re-encodes to
 * the same bytes).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit.h"

/* ---- the writer ---- */

void
jb_reset(struct jbuf *b)
{
	b->len = 0;
	b->failed = 0;
	if (b->p != NULL)
		b->p[0] = '\0';
}

void
jb_free(struct jbuf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

static int
jb_room(struct jbuf *b, size_t n)
{
	char	*np;
	size_t	 ncap;

	if (b->failed)
		return -1;
	if (b->len + n + 1 <= b->cap)
		return 0;
	ncap = b->cap ? b->cap : 1024;
	while (ncap < b->len + n + 1)
		ncap *= 2;
	if ((np = realloc(b->p, ncap)) == NULL) {
		b->failed = 1;
		return -1;
	}
	b->p = np;
	b->cap = ncap;
	return 0;
}

void
jb_raw(struct jbuf *b, const char *s, size_t n)
{
	if (jb_room(b, n) == -1)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static int
cont(unsigned char c)
{
	return c >= 0x80 && c <= 0xbf;
}

/* Length of the well-formed UTF-8 sequence at p (2..4), 0 when none. */
static size_t
utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char	 c = p[0], lo = 0x80, hi = 0xbf;
	size_t		 k;

	if (c >= 0xc2 && c <= 0xdf)
		k = 2;
	else if (c >= 0xe0 && c <= 0xef)
		k = 3;
	else if (c >= 0xf0 && c <= 0xf4)
		k = 4;
	else
		return 0;
	/* No overlong forms, no surrogates, nothing above U+10FFFF. */
	if (c == 0xe0)
		lo = 0xa0;
	else if (c == 0xed)
		hi = 0x9f;
	else if (c == 0xf0)
		lo = 0x90;
	else if (c == 0xf4)
		hi = 0x8f;
	if (n < k || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < k; i++)
		if (!cont(p[i]))
			return 0;
	return k;
}

static void
jb_escape(struct jbuf *b, unsigned code)
{
	char esc[8];

	snprintf(esc, sizeof(esc), "\\u%04x", code);
	jb_raw(b, esc, 6);
}

void
jb_str(struct jbuf *b, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + n;

	jb_raw(b, "\"", 1);
	while (p < end) {
		size_t k;

		if (*p == '"' || *p == '\\') {
			jb_raw(b, *p == '"' ? "\\\"" : "\\\\", 2);
			p++;
		} else if (*p < 0x20 || *p == 0x7f)
			jb_escape(b, *p++);
		else if (*p < 0x80)
			jb_raw(b, (const char *)p++, 1);
		else if ((k = utf8_seq(p, (size_t)(end - p))) > 0) {
			jb_raw(b, (const char *)p, k);
			p += k;
		} else
			jb_escape(b, 0xdc00u | *p++);
	}
	jb_raw(b, "\"", 1);
}

void
jb_key(struct jbuf *b, const char *key)
{
	if (b->len > 0 && b->p[b->len - 1] != '{')
		jb_raw(b, ",", 1);
	jb_str(b, key, strlen(key));
	jb_raw(b, ":", 1);
}

void
jb_kstr(struct jbuf *b, const char *key, const char *s)
{
	jb_key(b, key);
	jb_str(b, s, strlen(s));
}

void
jb_ku64(struct jbuf *b, const char *key, uint64_t v)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%llu", (unsigned long long)v);

	jb_key(b, key);
	jb_raw(b, num, (size_t)n);
}

void
jb_kbool(struct jbuf *b, const char *key, int v)
{
	jb_key(b, key);
	jb_raw(b, v ? "true" : "false", v ? 4 : 5);
}

void
jb_khex(struct jbuf *b, const char *key, const unsigned char *p, size_t n)
{
	char hex[2 * 64 + 1];

	if (n > 64) {
		b->failed = 1;
		return;
	}
	audit_hex(p, n, hex);
	jb_key(b, key);
	jb_raw(b, "\"", 1);
	jb_raw(b, hex, 2 * n);
	jb_raw(b, "\"", 1);
}

void
jb_kpacked(struct jbuf *b, const char *key, const char *packed, size_t n)
{
	jb_key(b, key);
	jb_raw(b, "[", 1);
	for (size_t i = 0; i < n; i++) {
		size_t len = strlen(packed);

		if (i > 0)
			jb_raw(b, ",", 1);
		jb_str(b, packed, len);
		packed += len + 1;
	}
	jb_raw(b, "]", 1);
}

/* ---- time: RFC 3339, UTC, microseconds ---- */

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t	 era, yoe, doy, doe;
	int64_t	 mp = (int64_t)m + (m > 2 ? -3 : 9);

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * mp + 2) / 5 + (int64_t)d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

void
audit_time_format(int64_t us, char out[32])
{
	time_t		 sec = (time_t)(us / 1000000);
	struct tm	 tm;

	if (us < 0) {
		sec = 0;
		us = 0;
	}
	gmtime_r(&sec, &tm);
	/* The moduli only tell the compiler the widths: gmtime's ranges. */
	snprintf(out, 32, "%04u-%02u-%02uT%02u:%02u:%02u.%06uZ",
	    (unsigned)(tm.tm_year + 1900) % 10000u,
	    (unsigned)(tm.tm_mon + 1) % 100u, (unsigned)tm.tm_mday % 100u,
	    (unsigned)tm.tm_hour % 100u, (unsigned)tm.tm_min % 100u,
	    (unsigned)tm.tm_sec % 100u, (unsigned)(us % 1000000));
}

static int
digits(const char *s, int n, long *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

int
audit_time_parse(const char *s, int64_t *us)
{
	long	 y, mo, d, h, mi, se, frac;
	char	 back[32];

	if (strlen(s) != 27 || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
	    s[13] != ':' || s[16] != ':' || s[19] != '.' || s[26] != 'Z' ||
	    digits(s, 4, &y) || digits(s + 5, 2, &mo) ||
	    digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
	    digits(s + 14, 2, &mi) || digits(s + 17, 2, &se) ||
	    digits(s + 20, 6, &frac) || y < 1970 || mo < 1 || mo > 12 ||
	    d < 1 || d > 31 || h > 23 || mi > 59 || se > 59)
		return -1;
	*us = ((days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 +
	    h * 3600 + mi * 60 + se) * 1000000) + frac;
	/* 31 February and friends do not come back the same. */
	audit_time_format(*us, back);
	return strcmp(back, s) == 0 ? 0 : -1;
}

/* ---- the reader ---- */

struct parser {
	const char	*p, *end, *start;
	struct audit_line *l;
	size_t		 used;		/* of l->arena */
	const char	*why;
};

static int
fail(struct parser *ps, const char *why)
{
	if (ps->why == NULL)
		ps->why = why;
	return -1;
}

static int
arena_put(struct parser *ps, char c)
{
	if (ps->used == ps->l->arena_cap)
		return fail(ps, "internal: arena full");
	ps->l->arena[ps->used++] = c;
	return 0;
}

static int
hex4(const char *p, unsigned *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		char c = p[i];

		if (c >= '0' && c <= '9')
			*v = *v << 4 | (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			*v = *v << 4 | (unsigned)(c - 'a' + 10);
		else
			return -1;
	}
	return 0;
}

/* \uXXXX as the writer makes it: a control byte, DEL, or one raw byte. */
static int
unicode_escape(struct parser *ps)
{
	unsigned v;

	if (ps->end - ps->p < 5 || hex4(ps->p + 1, &v) == -1)
		return fail(ps, "bad \\u escape");
	ps->p += 5;
	if ((v >= 1 && v < 0x20) || v == 0x7f)
		return arena_put(ps, (char)v);
	if (v >= 0xdc80 && v <= 0xdcff)
		return arena_put(ps, (char)(v & 0xff));
	return fail(ps, "\\u escape the writer never makes");
}

/* A string at ps->p (its opening quote), decoded into the arena. */
static int
parse_string(struct parser *ps, const char **out, size_t *len)
{
	size_t start;

	if (ps->p == ps->end || *ps->p != '"')
		return fail(ps, "expected a string");
	ps->p++;
	start = ps->used;
	while (ps->p < ps->end && *ps->p != '"') {
		unsigned char	 c = (unsigned char)*ps->p;
		size_t		 k = 1;

		if (c == '\\') {
			if (++ps->p == ps->end)
				return fail(ps, "string ends in a backslash");
			if (*ps->p == '"' || *ps->p == '\\') {
				if (arena_put(ps, *ps->p++) == -1)
					return -1;
			} else if (*ps->p != 'u' || unicode_escape(ps) == -1)
				return fail(ps, "bad escape");
			continue;
		}
		if (c < 0x20 || c == 0x7f)
			return fail(ps, "raw control character in a string");
		if (c >= 0x80 && (k = utf8_seq((const unsigned char *)ps->p,
		    (size_t)(ps->end - ps->p))) == 0)
			return fail(ps, "invalid UTF-8");
		while (k-- > 0)
			if (arena_put(ps, *ps->p++) == -1)
				return -1;
	}
	if (ps->p == ps->end)
		return fail(ps, "unterminated string");
	ps->p++;
	*len = ps->used - start;
	*out = ps->l->arena + start;
	return arena_put(ps, '\0');
}

static int
parse_number(struct parser *ps, uint64_t *v)
{
	const char *s = ps->p;

	*v = 0;
	while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9') {
		unsigned d = (unsigned)(*ps->p - '0');

		if (*v > (UINT64_MAX - d) / 10)
			return fail(ps, "number too large");
		*v = *v * 10 + d;
		ps->p++;
	}
	if (ps->p == s)
		return fail(ps, "expected a value");
	if (*s == '0' && ps->p - s > 1)
		return fail(ps, "number with a leading zero");
	return 0;
}

static int
parse_word(struct parser *ps, const char *w, size_t n)
{
	if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, w, n) != 0)
		return fail(ps, "expected a value");
	ps->p += n;
	return 0;
}

/* [ "a", "b" ]: strings only, packed NUL-terminated into the arena. */
static int
parse_array(struct parser *ps, struct audit_field *f)
{
	const char	*item;
	size_t		 len;

	ps->p++;
	f->kind = JK_ARRAY;
	f->str = ps->l->arena + ps->used;
	f->len = 0;
	if (ps->p < ps->end && *ps->p == ']') {
		ps->p++;
		return 0;
	}
	for (;;) {
		if (parse_string(ps, &item, &len) == -1)
			return -1;
		if (memchr(item, '\0', len) != NULL)
			return fail(ps, "NUL in an array item");
		f->len++;
		if (ps->p < ps->end && *ps->p == ']') {
			ps->p++;
			return 0;
		}
		if (ps->p == ps->end || *ps->p++ != ',')
			return fail(ps, "expected , or ] in an array");
	}
}

static int
parse_value(struct parser *ps, struct audit_field *f)
{
	if (ps->p == ps->end)
		return fail(ps, "expected a value");
	switch (*ps->p) {
	case '"':
		f->kind = JK_STR;
		return parse_string(ps, &f->str, &f->len);
	case '[':
		return parse_array(ps, f);
	case 't':
		f->kind = JK_BOOL;
		f->num = 1;
		return parse_word(ps, "true", 4);
	case 'f':
		f->kind = JK_BOOL;
		f->num = 0;
		return parse_word(ps, "false", 5);
	default:
		f->kind = JK_NUM;
		return parse_number(ps, &f->num);
	}
}

/* The object into l->f[], noting where ,"mac": starts. */
static int
parse_object(struct parser *ps)
{
	struct audit_line *l = ps->l;

	if (ps->p == ps->end || *ps->p++ != '{')
		return fail(ps, "not a JSON object");
	for (;;) {
		struct audit_field	*f;
		const char		*comma = ps->p - 1;
		size_t			 klen;

		if (l->nf == AUDIT_MAX_FIELDS)
			return fail(ps, "too many fields");
		f = &l->f[l->nf++];
		if (parse_string(ps, &f->key, &klen) == -1)
			return -1;
		if (strcmp(f->key, "mac") == 0)
			l->mac_at = (size_t)(comma - ps->start);
		if (ps->p == ps->end || *ps->p++ != ':' ||
		    parse_value(ps, f) == -1)
			return fail(ps, "expected \"key\":value");
		if (ps->p == ps->end)
			return fail(ps, "unterminated object");
		if (*ps->p == '}')
			break;
		if (*ps->p++ != ',')
			return fail(ps, "expected , or }");
	}
	if (++ps->p != ps->end)
		return fail(ps, "bytes after the object");
	return 0;
}

/* ---- what each event carries, in order (DESIGN.md, Audit log) ---- */

struct fdef {
	const char	*key;
	enum jkind	 kind;
	int		 optional;
};

#define S(k)	{ k, JK_STR, 0 }
#define N(k)	{ k, JK_NUM, 0 }
#define A(k)	{ k, JK_ARRAY, 0 }
#define OPT(k, t) { k, t, 1 }
#define RELAY_FIELDS	S("queue_id"), S("method"), A("rcpts"), \
	OPT("rcpts_omitted", JK_NUM), S("reply")

static const struct {
	const char	*event;
	struct fdef	 f[12];
} schema[] = {
	{ "file_start", { S("previous"), S("key"), N("epoch_seconds"),
	    N("epoch_lines") } },
	{ "start", { S("config_digest"), S("key"), N("epoch_seconds") } },
	{ "stop", { { NULL, JK_STR, 0 } } },
	{ "reload", { S("config_digest"), { "ok", JK_BOOL, 0 } } },
	{ "child_exit", { S("child"), S("status") } },
	{ "epoch_close", { N("count"), S("head") } },
	{ "checkpoint", { N("count"), S("head"), N("leaves"), S("pubkey"),
	    A("path"), S("sig") } },
	{ "lost", { N("count") } },
	{ "accept_loopback", { S("client_addr") } },
	{ "reject", { S("client_addr"), S("client_name"), S("helo"),
	    S("sender"), A("rcpts"), OPT("rcpts_omitted", JK_NUM),
	    S("rule") } },
	{ "tempfail", { OPT("queue_id", JK_STR), S("reason") } },
	{ "commit", { S("queue_id"), S("client_addr"), S("client_name"),
	    S("helo"), S("sender"), A("rcpts"), OPT("rcpts_omitted", JK_NUM),
	    N("size"), S("digest") } },
	{ "delivered", { RELAY_FIELDS } },
	{ "deferred", { RELAY_FIELDS } },
	{ "requeued", { RELAY_FIELDS, OPT("requeued_as", JK_STR) } },
	{ "quarantined", { RELAY_FIELDS } },
	{ "scan", { S("queue_id"), S("client_addr"), S("client_name"),
	    S("helo"), S("sender"), A("rcpts"), OPT("rcpts_omitted", JK_NUM),
	    N("size"), S("digest"), S("result"), OPT("signature", JK_STR) } },
};

static const struct fdef *
event_fields(const char *event)
{
	for (size_t i = 0; i < sizeof(schema) / sizeof(schema[0]); i++)
		if (strcmp(schema[i].event, event) == 0)
			return schema[i].f;
	return NULL;
}

int
audit_event_known(const char *event)
{
	return event_fields(event) != NULL;
}

static int
field_is(const struct audit_field *f, const char *key, enum jkind kind)
{
	return strcmp(f->key, key) == 0 && f->kind == kind;
}

static int
hex_field(struct parser *ps, const struct audit_field *f, const char *key,
    unsigned char out[AUDIT_HASH])
{
	if (!field_is(f, key, JK_STR) ||
	    audit_unhex(f->str, f->len, out, AUDIT_HASH) == -1)
		return fail(ps, key[0] == 'p' ? "expected \"prev\" (64 hex "
		    "digits)" : "expected \"mac\" (64 hex digits) last");
	return 0;
}

/* seq, time, epoch, event; the event's own; prev; mac if keyed. */
static int
check_schema(struct parser *ps)
{
	struct audit_line	*l = ps->l;
	const struct fdef	*want;
	size_t			 i = 4;

	if (l->nf < 5 || !field_is(&l->f[0], "seq", JK_NUM) ||
	    !field_is(&l->f[1], "time", JK_STR) ||
	    !field_is(&l->f[2], "epoch", JK_NUM) ||
	    !field_is(&l->f[3], "event", JK_STR))
		return fail(ps, "expected seq, time, epoch, event first");
	l->seq = l->f[0].num;
	l->time = l->f[1].str;
	l->epoch = l->f[2].num;
	l->event = l->f[3].str;
	if (audit_time_parse(l->time, &l->time_us) == -1)
		return fail(ps, "time is not YYYY-MM-DDTHH:MM:SS.uuuuuuZ");
	if ((want = event_fields(l->event)) == NULL)
		return fail(ps, "unknown event");
	for (; want->key != NULL; want++) {
		if (i < l->nf && field_is(&l->f[i], want->key, want->kind))
			i++;
		else if (!want->optional)
			return fail(ps, "a field of the event is missing, out "
			    "of order or of the wrong type");
	}
	if (i == l->nf || hex_field(ps, &l->f[i], "prev", l->prev) == -1)
		return fail(ps, "expected \"prev\" after the event's fields");
	l->has_mac = ++i < l->nf;
	if (l->has_mac && (hex_field(ps, &l->f[i], "mac", l->mac) == -1 ||
	    ++i != l->nf))
		return fail(ps, "expected nothing but \"mac\" after \"prev\"");
	return 0;
}

int
audit_line_parse(const char *line, size_t len, struct audit_line *l,
    char *why, size_t whylen)
{
	struct parser	 ps = { line, line + len, line, l, 0, NULL };
	size_t		 need = 2 * len + 64;

	if (l->arena_cap < need) {
		char *np = realloc(l->arena, need);

		if (np == NULL) {
			snprintf(why, whylen, "out of memory");
			return -1;
		}
		l->arena = np;
		l->arena_cap = need;
	}
	l->nf = 0;
	l->mac_at = 0;
	l->has_mac = 0;
	if (parse_object(&ps) == -1 || check_schema(&ps) == -1) {
		snprintf(why, whylen, "%s", ps.why ? ps.why : "malformed");
		return -1;
	}
	return 0;
}

void
audit_line_free(struct audit_line *l)
{
	free(l->arena);
	l->arena = NULL;
	l->arena_cap = 0;
}

const struct audit_field *
audit_line_get(const struct audit_line *l, const char *key)
{
	for (size_t i = 0; i < l->nf; i++)
		if (strcmp(l->f[i].key, key) == 0)
			return &l->f[i];
	return NULL;
}

const char *
audit_line_str(const struct audit_line *l, const char *key)
{
	const struct audit_field *f = audit_line_get(l, key);

	return f != NULL && f->kind == JK_STR ? f->str : "";
}
