/*
 * MailScanner rulesets (see ruleset.h): a port of Config.pm's Store1Rule,
 * RuleToRegexp, Value and FirstMatchValue for first-match yes/no settings.
 * Trusts nothing in rules files, pattern files or serialized text; the
 * addresses and names it matches come from SMTP clients, so every regular
 * expression runs under PCRE2 match limits.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "ruleset.h"
#include "ruleset_priv.h"

/*
 * Directions as Store1Rule shortens them: 'f', 't', "ft", 'b'.  A word
 * containing "and" is FromAndTo whatever else it contains.
 */
#define DIR_FROM	0x1
#define DIR_TO		0x2
#define DIR_AND		0x4	/* the sender and every recipient */
#define DIR_VIRUS	(-1)	/* MailScanner's "Virus:", not for these */

/* What RuleToRegexp returns for "*@*" and "default" ($DefaultAddressRegexp). */
#define DEFAULT_ADDRESS_RE	"^.*\\@.*\\.?$"

/* Per pcre2_match() call: ample for any sane rule, bounded for a bad one. */
#define MATCH_LIMIT		200000
#define DEPTH_LIMIT		10000
#define PATTERN_MAX		65536

#define SERIAL_MAGIC		"msmilter-ruleset 1"

enum atom_type {
	ATOM_ADDR,		/* 't': sender or recipient addresses */
	ATOM_IP,		/* 'd': regex against the client address text */
	ATOM_NET,		/* 'c': CIDR, address/netmask or a range */
	ATOM_HOST,		/* 'h': the client's host name */
};

struct net {
	int		 family;
	unsigned char	 lo[16], hi[16];	/* inclusive, network order */
};

/* One pattern: a rule's own, or one line of a pattern file. */
struct atom {
	char		*pattern;	/* as written */
	unsigned	 file;		/* where it is written: rs->files[] */
	unsigned	 line;
	enum atom_type	 type;
	int		 full;		/* ATOM_IP: a complete IPv4 address */
	int		 is_default;	/* "*@*", "default" and the like */
	int		 skip;		/* a default of a one-condition rule */
	pcre2_code	*re;
	struct net	 net;
};

struct cond {
	char		*dirword;	/* as written: "From:", "FromOrTo:" */
	char		*pattern;	/* a pattern or a pattern file's name */
	int		 dir;
	struct atom	*atoms;
	size_t		 natoms, cap;
};

struct rule {
	unsigned	 file, line;
	char		*value;		/* as written: "yes", "No," */
	int		 verdict;
	int		 is_default;	/* both conditions are defaults */
	struct cond	 cond[2];
	int		 ncond;
};

enum rs_kind { KIND_CONST, KIND_EXTERNAL, KIND_RULES };

struct ruleset {
	char		*setting;
	enum rs_kind	 kind;
	char		*value;		/* the configuration value */
	int		 default_yes;	/* the setting's own default */
	int		 constant;	/* KIND_CONST */
	char		**files;
	size_t		 nfiles;
	struct rule	*rules;
	size_t		 nrules, cap;
	/* The last default rule, MailScanner's $Defaults{$keyword}. */
	int		 has_default;
	int		 default_verdict;
	size_t		 default_rule;
	size_t		 default_atom;
	pcre2_match_context *mctx;
};

struct build {
	struct ruleset		*rs;
	const char		*setting;
	ruleset_report_fn	 report;
	void			*arg;
	ruleset_read_fn		 readfile;	/* NULL: open nothing */
	const char *const	*words;		/* no, yes; NULL: "no", "yes" */
	int			 quiet;		/* warnings were given in the parent */
	unsigned		 errors;
	size_t			 natoms;
	size_t			 nread;
	int			 too_many;
	pcre2_compile_context	*cctx;
};

struct sbuf {
	char	*p;
	size_t	 len, cap, max;
	int	 failed;
};

static void	say(struct build *, int, const char *, unsigned, const char *,
		    ...) __attribute__((format(printf, 5, 6)));

/* ASCII only, whatever the locale: MailScanner works on bytes. */
static int
is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' ||
	    c == '\v';
}

static int
is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static int
lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int
ci_prefix(const char *s, const char *prefix)
{
	for (; *prefix != '\0'; s++, prefix++)
		if (lower((unsigned char)*s) != *prefix)
			return 0;
	return 1;
}

static int
ci_contains(const char *hay, const char *needle)
{
	for (; *hay != '\0'; hay++)
		if (ci_prefix(hay, needle))
			return 1;
	return 0;
}

static char *
skip_space(char *s)
{
	while (*s != '\0' && is_space((unsigned char)*s))
		s++;
	return s;
}

static char *
skip_word(char *s)
{
	while (*s != '\0' && !is_space((unsigned char)*s))
		s++;
	return s;
}

/* s/#.*$//; s/^\s+//; s/\s+$// in place. */
static char *
clean_line(char *s)
{
	char	*hash = strchr(s, '#');
	size_t	 n;

	if (hash != NULL)
		*hash = '\0';
	s = skip_space(s);
	n = strlen(s);
	while (n > 0 && is_space((unsigned char)s[n - 1]))
		s[--n] = '\0';
	return s;
}

/* RuleToRegexp: m#^/.*[^/]$# is a file of patterns. */
static int
is_file_pattern(const char *p)
{
	size_t	 n = strlen(p);

	return n >= 2 && p[0] == '/' && p[n - 1] != '/';
}

static void
say(struct build *b, int severity, const char *file, unsigned line,
    const char *fmt, ...)
{
	char	 msg[1024];
	va_list	 ap;
	int	 n;

	if (severity == RULESET_ERROR)
		b->errors++;
	else if (b->quiet)
		return;
	if (b->report == NULL)
		return;
	n = snprintf(msg, sizeof(msg), "%.200s: ", b->setting);
	if (n < 0 || (size_t)n >= sizeof(msg))
		n = 0;
	va_start(ap, fmt);
	vsnprintf(msg + n, sizeof(msg) - (size_t)n, fmt, ap);
	va_end(ap);
	/* Patterns come from files: keep control characters out of logs. */
	for (char *p = msg; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p == 0x7f)
			*p = '?';
	b->report(b->arg, severity, file, line, msg);
}

/* String buffers: regexes being built and the serialized form. */

static void
sb_putn(struct sbuf *sb, const char *s, size_t n)
{
	if (sb->failed)
		return;
	if (n > sb->max || sb->len > sb->max - n) {
		sb->failed = 1;
		return;
	}
	if (sb->len + n + 1 > sb->cap) {
		size_t	 ncap = sb->cap ? sb->cap : 256;
		char	*np;

		while (ncap < sb->len + n + 1)
			ncap *= 2;
		if ((np = realloc(sb->p, ncap)) == NULL) {
			sb->failed = 1;
			return;
		}
		sb->p = np;
		sb->cap = ncap;
	}
	memcpy(sb->p + sb->len, s, n);
	sb->len += n;
	sb->p[sb->len] = '\0';
}

static void
sb_puts(struct sbuf *sb, const char *s)
{
	sb_putn(sb, s, strlen(s));
}

static void
sb_putc(struct sbuf *sb, char c)
{
	sb_putn(sb, &c, 1);
}

static void
sb_putu(struct sbuf *sb, unsigned long v)
{
	char	 buf[32];

	snprintf(buf, sizeof(buf), "%lu", v);
	sb_puts(sb, buf);
}

static void
sb_free(struct sbuf *sb)
{
	free(sb->p);
	sb->p = NULL;
	sb->len = sb->cap = 0;
}

/* Values, directions, setting values */

static const char *const yes_no[2] = { "no", "yes" };

/*
 * InternalDataValue for a yes/no setting whose %values are just
 * (no => 0, yes => 1), or two words of its own (words[0] for no, words[1]
 * for yes: Delivery Method's batch and queue): each word lower-cased, one
 * trailing comma dropped.  MailScanner would also take words containing
 * '@' and several words, which make no sense for a yes/no setting (and
 * would be true in Perl whatever they say); we refuse them.  Returns 1,
 * 0, or -1 with why set.
 */
static int
parse_yesno(const char *value, const char *const *words, const char **why)
{
	char		 word[16];
	const char	*s = value, *e;
	size_t		 n;

	if (words == NULL)
		words = yes_no;

	while (*s != '\0' && is_space((unsigned char)*s))
		s++;
	if (*s == '\0') {
		*why = words == yes_no ? "no value (want yes or no)" :
		    "no value";
		return -1;
	}
	for (e = s; *e != '\0' && !is_space((unsigned char)*e); e++)
		;
	for (const char *t = e; *t != '\0'; t++)
		if (!is_space((unsigned char)*t)) {
			*why = words == yes_no ? "more than one word (want "
			    "yes or no)" : "more than one word";
			return -1;
		}
	n = (size_t)(e - s);
	if (n > 0 && s[n - 1] == ',')
		n--;
	if (n >= sizeof(word)) {
		*why = words == yes_no ? "not yes or no" : "not one of its "
		    "two values";
		return -1;
	}
	for (size_t i = 0; i < n; i++)
		word[i] = (char)lower((unsigned char)s[i]);
	word[n] = '\0';
	if (strcmp(word, words[1]) == 0)
		return 1;
	if (strcmp(word, words[0]) == 0)
		return 0;
	if (words != yes_no)
		*why = "not one of its two values";
	else if (strcmp(word, "1") == 0 || strcmp(word, "0") == 0)
		*why = "not yes or no (MailScanner accepts only yes or no for "
		    "this setting)";
	else
		*why = "not yes or no";
	return -1;
}

static int
parse_dir(const char *word)
{
	int	 dir = 0;

	if (ci_contains(word, "and"))
		return DIR_AND;
	if (ci_contains(word, "from"))
		dir |= DIR_FROM;
	if (ci_contains(word, "to"))
		dir |= DIR_TO;
	if (ci_contains(word, "virus"))
		dir = DIR_VIRUS;
	return dir;
}

/*
 * ReadYesNoValue and ReadRuleset: "&Function(params)" is a custom
 * function, "name.customise" (or .customize) an SQL ruleset, and a
 * ".RuleSet" that is not a file an LDAP one.
 */
static int
is_external(const char *v)
{
	size_t	 n = strlen(v);

	if (v[0] == '&')
		return 1;
	for (size_t i = 1; i + 10 <= n; i++)
		if (strncmp(v + i, ".customi", 8) == 0 &&
		    (v[i + 8] == 's' || v[i + 8] == 'z') && v[i + 9] == 'e')
			return 1;
	return v[0] != '/' && n >= 8 && strcmp(v + n - 8, ".RuleSet") == 0;
}

/* Files */

static long
file_index(struct build *b, const char *name, const char *rfile,
    unsigned rline)
{
	struct ruleset	*rs = b->rs;
	char		**nf;

	for (size_t i = 0; i < rs->nfiles; i++)
		if (strcmp(rs->files[i], name) == 0)
			return (long)i;
	if (rs->nfiles >= RULESET_FILES_MAX) {
		say(b, RULESET_ERROR, rfile, rline,
		    "more than %u rules and pattern files", RULESET_FILES_MAX);
		return -1;
	}
	if ((nf = realloc(rs->files, (rs->nfiles + 1) * sizeof(*nf))) == NULL)
		goto nomem;
	rs->files = nf;
	if ((rs->files[rs->nfiles] = strdup(name)) == NULL)
		goto nomem;
	return (long)rs->nfiles++;
nomem:
	say(b, RULESET_ERROR, rfile, rline, "out of memory");
	return -1;
}

/*
 * A whole rules or pattern file, NUL-terminated, through the reader the
 * caller gave (ruleset_read.c, the parent's only): this file opens
 * nothing, so the children that link it cannot read files through it.
 */
static char *
read_text(struct build *b, const char *path, const char *rfile,
    unsigned rline, size_t *lenp)
{
	char	 err[512];
	char	*buf;
	size_t	 len;

	if (b->readfile == NULL) {
		say(b, RULESET_ERROR, rfile, rline, "%s %s cannot be read here",
		    rline == 0 ? "rules file" : "pattern file", path);
		return NULL;
	}
	if ((buf = b->readfile(path, RULESET_FILE_MAX, &len, err,
	    sizeof(err))) == NULL) {
		say(b, RULESET_ERROR, rfile, rline, "%s", err);
		return NULL;
	}
	if (len > RULESET_READ_MAX - b->nread) {
		say(b, RULESET_ERROR, rfile, rline,
		    "reading %s: the ruleset's files add up to more than %u "
		    "bytes", path, RULESET_READ_MAX);
		free(buf);
		return NULL;
	}
	b->nread += len;
	*lenp = len;
	return buf;
}

/*
 * Calls fn for every line of text (without its LF) as a NUL-terminated
 * copy fn may modify; a line holding a NUL byte is an error.
 */
static void
for_each_line(struct build *b, const char *text, size_t len, const char *file,
    void (*fn)(struct build *, char *, unsigned, void *), void *ctx)
{
	const char	*p = text, *end = text + len, *nl;
	unsigned	 lineno = 0;
	char		*copy;
	size_t		 n;

	while (p < end) {
		nl = memchr(p, '\n', (size_t)(end - p));
		n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (lineno == UINT_MAX) {
			say(b, RULESET_ERROR, file, lineno, "too many lines");
			return;
		}
		lineno++;
		if (memchr(p, '\0', n) != NULL)
			say(b, RULESET_ERROR, file, lineno, "NUL byte in line");
		else if ((copy = strndup(p, n)) == NULL)
			say(b, RULESET_ERROR, file, lineno, "out of memory");
		else {
			fn(b, copy, lineno, ctx);
			free(copy);
		}
		p += n + (nl != NULL);
	}
}

/* Conditions and their patterns */

static struct atom *
add_atom(struct build *b, struct cond *c, const char *pattern, unsigned file,
    unsigned line)
{
	struct atom	*a;

	if (b->natoms >= RULESET_ATOMS_MAX) {
		if (!b->too_many)
			say(b, RULESET_ERROR, b->rs->files[file], line,
			    "more than %u patterns", RULESET_ATOMS_MAX);
		b->too_many = 1;
		return NULL;
	}
	if (c->natoms == c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 1;

		if ((a = realloc(c->atoms, ncap * sizeof(*a))) == NULL)
			goto nomem;
		c->atoms = a;
		c->cap = ncap;
	}
	a = &c->atoms[c->natoms];
	memset(a, 0, sizeof(*a));
	if ((a->pattern = strdup(pattern)) == NULL)
		goto nomem;
	a->file = file;
	a->line = line;
	c->natoms++;
	b->natoms++;
	return a;
nomem:
	say(b, RULESET_ERROR, b->rs->files[file], line, "out of memory");
	return NULL;
}

struct expand_ctx {
	struct cond	*cond;
	unsigned	 file;
	int		 depth;
};

static void	expand(struct build *, struct cond *, const char *, unsigned,
		    unsigned, int);

static void
pattern_file_line(struct build *b, char *line, unsigned lineno, void *arg)
{
	struct expand_ctx	*x = arg;
	char			*s = clean_line(line);

	if (*s != '\0')
		expand(b, x->cond, s, x->file, lineno, x->depth + 1);
}

/*
 * RuleToRegexp's first step: a pattern that is a file name stands for the
 * patterns in that file, one a line (comments and blank lines ignored),
 * which may name further files down to MailScanner's depth.
 */
static void
expand(struct build *b, struct cond *c, const char *pattern, unsigned file,
    unsigned line, int depth)
{
	struct expand_ctx	 x;
	const char		*rfile = b->rs->files[file];
	char			*text;
	size_t			 len;
	long			 fi;

	if (!is_file_pattern(pattern)) {
		add_atom(b, c, pattern, file, line);
		return;
	}
	if (depth > RULESET_NESTING_MAX) {
		say(b, RULESET_WARNING, rfile, line,
		    "pattern files nested deeper than %d: ignoring %s, as "
		    "MailScanner does", RULESET_NESTING_MAX, pattern);
		return;
	}
	if ((text = read_text(b, pattern, rfile, line, &len)) == NULL)
		return;
	if ((fi = file_index(b, pattern, rfile, line)) >= 0) {
		x.cond = c;
		x.file = (unsigned)fi;
		x.depth = depth;
		for_each_line(b, text, len, pattern, pattern_file_line, &x);
	}
	free(text);
}

/* Compiling patterns: RuleToRegexp */

static pcre2_code *
re_compile(struct build *b, const struct atom *a, const char *re, size_t len)
{
	PCRE2_UCHAR	 msg[256];
	PCRE2_SIZE	 off;
	pcre2_code	*code;
	int		 err;

	/* qr/$re/i on bytes: no UTF, caseless. */
	code = pcre2_compile((PCRE2_SPTR)re, len, PCRE2_CASELESS |
	    PCRE2_NEVER_UTF | PCRE2_NEVER_UCP, &err, &off, b->cctx);
	if (code == NULL) {
		pcre2_get_error_message(err, msg, sizeof(msg));
		say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
		    "bad regular expression in \"%.200s\": %s at offset %zu",
		    a->pattern, (const char *)msg, (size_t)off);
	}
	return code;
}

/*
 * FirstMatchValue: an IP rule whose regexp, stringified as (?^i:...),
 * matches /\d+\\\.\d+\\\.\d+\\\.\d+\)*$/ is a complete IPv4 address and must
 * match the whole client address; any other is a substring match.
 */
static int
complete_ipv4(const char *re)
{
	size_t	 n = strlen(re);

	while (n > 0 && re[n - 1] == ')')
		n--;
	for (int part = 0; part < 4; part++) {
		size_t digits = 0;

		while (n > 0 && is_digit((unsigned char)re[n - 1])) {
			n--;
			digits++;
		}
		if (digits == 0)
			return 0;
		if (part < 3) {
			if (n < 2 || re[n - 1] != '.' || re[n - 2] != '\\')
				return 0;
			n -= 2;
		}
	}
	return 1;
}

static int
compile_ip_re(struct build *b, struct atom *a, const char *re)
{
	struct sbuf	 sb = { .max = PATTERN_MAX };

	a->type = ATOM_IP;
	a->full = complete_ipv4(re);
	if (a->full) {
		/* $msg->{clientip} =~ /^$regexp$/ */
		sb_puts(&sb, "^(?:");
		sb_puts(&sb, re);
		sb_puts(&sb, ")$");
	} else
		sb_puts(&sb, re);
	if (sb.failed) {
		say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
		    "pattern too long");
		sb_free(&sb);
		return -1;
	}
	a->re = re_compile(b, a, sb.p, sb.len);
	sb_free(&sb);
	return a->re ? 0 : -1;
}

static size_t
span_ipchars(const char *s)
{
	size_t	 n = 0;

	while (is_digit((unsigned char)s[n]) || s[n] == '.' || s[n] == ':' ||
	    (lower((unsigned char)s[n]) >= 'a' &&
	    lower((unsigned char)s[n]) <= 'f'))
		n++;
	return n;
}

/* ^([.:\da-f]+)\s*SEP\s*([.:\da-f]+)$, upper-case hex allowed too. */
static int
split_ip_pair(const char *p, char sep, char *left, char *right, size_t size)
{
	size_t	 n1, n2;
	const char *q;

	n1 = span_ipchars(p);
	if (n1 == 0 || n1 >= size)
		return 0;
	q = p + n1;
	while (is_space((unsigned char)*q))
		q++;
	if (*q != sep)
		return 0;
	q++;
	while (is_space((unsigned char)*q))
		q++;
	n2 = span_ipchars(q);
	if (n2 == 0 || n2 >= size || q[n2] != '\0')
		return 0;
	memcpy(left, p, n1);
	left[n1] = '\0';
	memcpy(right, q, n2);
	right[n2] = '\0';
	return 1;
}

/* "152.78" is 152.78.0.0 (RuleToRegexp pads with '.0'); IPv6 as it is. */
static int
parse_network(const char *s, int *family, unsigned char *addr)
{
	unsigned	 part[4], nparts = 0;
	const char	*p = s;

	if (strchr(s, ':') != NULL) {
		*family = AF_INET6;
		return inet_pton(AF_INET6, s, addr) == 1 ? 0 : -1;
	}
	*family = AF_INET;
	for (;;) {
		unsigned v = 0, digits = 0;

		while (is_digit((unsigned char)*p) && digits < 4) {
			v = v * 10 + (unsigned)(*p++ - '0');
			digits++;
		}
		if (digits == 0 || digits > 3 || v > 255 || nparts == 4)
			return -1;
		part[nparts++] = v;
		if (*p == '\0')
			break;
		if (*p++ != '.')
			return -1;
	}
	memset(addr, 0, 4);
	for (unsigned i = 0; i < nparts; i++)
		addr[i] = (unsigned char)part[i];
	return 0;
}

/* A prefix length, or a contiguous netmask written as an address. */
static int
parse_mask(const char *s, int family, unsigned *bits)
{
	unsigned char	 m[16];
	unsigned	 max = family == AF_INET ? 32 : 128, n = 0;
	size_t		 len = family == AF_INET ? 4 : 16;
	int		 zero = 0;

	if (*s != '\0' && strspn(s, "0123456789") == strlen(s)) {
		if (strlen(s) > 3)
			return -1;
		*bits = (unsigned)atoi(s);
		return *bits <= max ? 0 : -1;
	}
	if (inet_pton(family, s, m) != 1)
		return -1;
	for (size_t i = 0; i < len * 8; i++) {
		int set = (m[i / 8] >> (7 - i % 8)) & 1;

		if (set && zero)
			return -1;
		if (set)
			n++;
		else
			zero = 1;
	}
	*bits = n;
	return 0;
}

static int
compile_cidr(struct build *b, struct atom *a, const char *netw,
    const char *mask)
{
	unsigned char	 addr[16];
	unsigned	 bits;
	size_t		 len;

	if (parse_network(netw, &a->net.family, addr) == -1) {
		say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
		    "bad network \"%.200s\" in \"%.200s\"", netw, a->pattern);
		return -1;
	}
	if (parse_mask(mask, a->net.family, &bits) == -1) {
		say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
		    "bad prefix length or netmask \"%.200s\" in \"%.200s\"",
		    mask, a->pattern);
		return -1;
	}
	len = a->net.family == AF_INET ? 4 : 16;
	for (size_t i = 0; i < len; i++) {
		unsigned keep = bits >= (i + 1) * 8 ? 8 :
		    bits > i * 8 ? bits - (unsigned)i * 8 : 0;
		unsigned char m = (unsigned char)(0xff00u >> keep);

		a->net.lo[i] = addr[i] & m;
		a->net.hi[i] = addr[i] | (unsigned char)~m;
	}
	a->type = ATOM_NET;
	return 0;
}

static int
compile_range(struct build *b, struct atom *a, const char *from,
    const char *to)
{
	int	 f1 = strchr(from, ':') ? AF_INET6 : AF_INET;
	int	 f2 = strchr(to, ':') ? AF_INET6 : AF_INET;

	if (f1 != f2 || inet_pton(f1, from, a->net.lo) != 1 ||
	    inet_pton(f2, to, a->net.hi) != 1) {
		say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
		    "bad address range \"%.200s\" (want two complete addresses "
		    "of one family)", a->pattern);
		return -1;
	}
	if (memcmp(a->net.lo, a->net.hi, f1 == AF_INET ? 4 : 16) > 0) {
		say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
		    "address range \"%.200s\" ends before it starts",
		    a->pattern);
		return -1;
	}
	a->net.family = f1;
	a->type = ATOM_NET;
	return 0;
}

static int
compile_host(struct build *b, struct atom *a, const char *rest)
{
	struct sbuf	 body = { .max = PATTERN_MAX };
	struct sbuf	 re = { .max = PATTERN_MAX };
	size_t		 n = strlen(rest);
	int		 rc = -1;

	a->type = ATOM_HOST;
	if (n >= 2 && rest[0] == '/' && rest[n - 1] == '/')
		sb_putn(&re, rest + 1, n - 2);	/* host:/regexp/ */
	else if (n == 0)
		sb_puts(&re, "^$");		/* host: no name at all */
	else {
		for (const char *p = rest; *p != '\0'; p++) {
			if (*p == '.')
				sb_puts(&body, "\\.");
			else if (*p == '*')
				sb_puts(&body, ".*");
			else
				sb_putc(&body, *p);
		}
		sb_putc(&body, '$');
		/*
		 * "Add a '.' on the front of their rule if there isn't
		 * already one" tests the escaped rule, so only a leading '*'
		 * counts; host:.example.com needs two dots and never matches.
		 */
		if (!body.failed && body.p[0] != '.')
			sb_puts(&re, "\\.");
		if (!body.failed)
			sb_putn(&re, body.p, body.len);
		if (rest[0] == '.')
			say(b, RULESET_WARNING, b->rs->files[a->file], a->line,
			    "\"%.200s\" never matches (MailScanner makes it "
			    "need two dots); write host:%.200s", a->pattern,
			    rest + 1);
	}
	if (body.failed || re.failed)
		say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
		    "pattern too long");
	else if ((a->re = re_compile(b, a, re.p ? re.p : "", re.len)) != NULL)
		rc = 0;
	sb_free(&body);
	sb_free(&re);
	return rc;
}

static int
compile_address(struct build *b, struct atom *a)
{
	struct sbuf	 l = { .max = PATTERN_MAX };
	struct sbuf	 rule = { .max = PATTERN_MAX };
	struct sbuf	 re = { .max = PATTERN_MAX };
	const char	*p;
	int		 rc = -1;

	a->type = ATOM_ADDR;
	for (p = a->pattern; *p != '\0'; p++)
		sb_putc(&l, (char)lower((unsigned char)*p));
	sb_puts(&l, "");
	if (l.failed)
		goto toolong;
	if (l.len >= 2 && l.p[0] == '/' && l.p[l.len - 1] == '/') {
		/* An arbitrary regexp, lower-cased first as MailScanner does. */
		for (p = a->pattern; *p != '\0'; p++)
			if (p[0] == '\\' && p[1] >= 'A' && p[1] <= 'Z') {
				say(b, RULESET_WARNING, b->rs->files[a->file],
				    a->line, "MailScanner lower-cases address "
				    "patterns, so \\%c in \"%.200s\" means "
				    "\\%c", p[1], a->pattern, lower(p[1]));
				break;
			}
		sb_putn(&re, l.p + 1, l.len - 2);
		sb_puts(&re, "");	/* allocated even when empty */
	} else {
		/* default and * are *@*; domain is *@domain; @d is *@d; u@ is u@* */
		if (strcmp(l.p, "default") == 0 || strcmp(l.p, "*") == 0)
			sb_puts(&rule, "*@*");
		else {
			if (strchr(l.p, '@') == NULL)
				sb_puts(&rule, "*@");
			else if (l.p[0] == '@')
				sb_putc(&rule, '*');
			sb_putn(&rule, l.p, l.len);
		}
		if (!rule.failed && rule.p[rule.len - 1] == '@')
			sb_putc(&rule, '*');
		if (rule.failed)
			goto toolong;
		/* . @ + escaped, * is .*, an optional trailing dot, anchored */
		sb_putc(&re, '^');
		for (p = rule.p; *p != '\0'; p++) {
			if (*p == '@' || *p == '.' || *p == '+')
				sb_putc(&re, '\\');
			if (*p == '*')
				sb_putc(&re, '.');
			sb_putc(&re, *p);
		}
		sb_puts(&re, "\\.?$");
	}
	if (re.failed)
		goto toolong;
	a->is_default = strcmp(re.p, DEFAULT_ADDRESS_RE) == 0;
	if ((a->re = re_compile(b, a, re.p, re.len)) != NULL)
		rc = 0;
	sb_free(&l);
	sb_free(&rule);
	sb_free(&re);
	return rc;
toolong:
	say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
	    "pattern too long");
	sb_free(&l);
	sb_free(&rule);
	sb_free(&re);
	return -1;
}

/* RuleToRegexp, in its order of tests. */
static int
compile_atom(struct build *b, struct atom *a)
{
	const char	*p = a->pattern;
	size_t		 n = strlen(p);
	char		 left[128], right[128];
	int		 letters = 0;

	if (ci_prefix(p, "host:"))
		return compile_host(b, a, p + 5);
	if (ci_prefix(p, "host-nocheck:"))
		return compile_host(b, a, p + 13);

	/* /^[.:\dabcdef]+$/: the start of an address, IPv4 or IPv6. */
	if (n > 0 && strspn(p, ".:0123456789abcdef") == n) {
		struct sbuf	 sb = { .max = PATTERN_MAX };
		int		 rc = -1;

		sb_putc(&sb, '^');
		for (const char *q = p; *q != '\0'; q++) {
			if (*q == '.')
				sb_putc(&sb, '\\');
			sb_putc(&sb, *q);
			letters |= *q >= 'a' && *q <= 'f';
		}
		if (letters && strchr(p, ':') == NULL)
			say(b, RULESET_WARNING, b->rs->files[a->file], a->line,
			    "\"%.200s\" looks like a domain but MailScanner "
			    "reads it as the start of an IP address; write "
			    "*@%.200s for the domain", p, p);
		if (sb.failed)
			say(b, RULESET_ERROR, b->rs->files[a->file], a->line,
			    "pattern too long");
		else
			rc = compile_ip_re(b, a, sb.p);
		sb_free(&sb);
		return rc;
	}

	/* s#^/([^a-z]+)/$#$1#: a regexp with no letters is for IPs. */
	if (strcmp(p, "/^$/") != 0 && n >= 3 && p[0] == '/' &&
	    p[n - 1] == '/') {
		int lowercase = 0;

		for (size_t i = 1; i + 1 < n; i++)
			lowercase |= p[i] >= 'a' && p[i] <= 'z';
		if (!lowercase) {
			char *inner = strndup(p + 1, n - 2);
			int rc;

			if (inner == NULL) {
				say(b, RULESET_ERROR, b->rs->files[a->file],
				    a->line, "out of memory");
				return -1;
			}
			rc = compile_ip_re(b, a, inner);
			free(inner);
			return rc;
		}
	}

	if (split_ip_pair(p, '/', left, right, sizeof(left)))
		return compile_cidr(b, a, left, right);
	if (split_ip_pair(p, '-', left, right, sizeof(left)))
		return compile_range(b, a, left, right);
	return compile_address(b, a);
}

/*
 * Store1Rule once the fields are known: directions, value, patterns, and
 * MailScanner's treatment of default rules.  file:line of the rule.
 */
static void
compile_rule(struct build *b, size_t ri)
{
	struct ruleset	*rs = b->rs;
	struct rule	*r = &rs->rules[ri];
	const char	*file = rs->files[r->file];
	const char	*why;
	int		 bad = 0;

	for (int i = 0; i < r->ncond; i++) {
		struct cond *c = &r->cond[i];

		c->dir = parse_dir(c->dirword);
		if (c->dir == DIR_VIRUS) {
			say(b, RULESET_ERROR, file, r->line, "\"%.200s\" is a "
			    "virus rule, which does not apply to this setting",
			    c->dirword);
			bad = 1;
		} else if (c->dir == 0) {
			say(b, RULESET_ERROR, file, r->line, "unknown direction "
			    "\"%.200s\" (want From:, To:, FromOrTo: or "
			    "FromAndTo:)", c->dirword);
			bad = 1;
		}
	}
	if ((r->verdict = parse_yesno(r->value, b->words, &why)) == -1) {
		if (b->words != NULL)
			say(b, RULESET_ERROR, file, r->line, "value \"%.200s\": "
			    "%s (want %s or %s)", r->value, why, b->words[0],
			    b->words[1]);
		else
			say(b, RULESET_ERROR, file, r->line, "value \"%.200s\": "
			    "%s", r->value, why);
		bad = 1;
	}
	for (int i = 0; i < r->ncond; i++) {
		struct cond	*c = &r->cond[i];
		int		 client = 0, host = 0;

		for (size_t k = 0; k < c->natoms; k++) {
			struct atom *a = &c->atoms[k];

			if (compile_atom(b, a) == -1) {
				bad = 1;
				continue;
			}
			client |= a->type == ATOM_IP || a->type == ATOM_NET;
			host |= a->type == ATOM_HOST;
		}
		if (bad || c->dir <= 0)
			continue;
		/* FirstMatchValue only looks at the client for 'f'. */
		if (client && !(c->dir & DIR_FROM))
			say(b, RULESET_WARNING, file, r->line, "IP address "
			    "patterns match only the SMTP client, so with "
			    "\"%.200s\" they never match", c->dirword);
		if (host && c->dir != DIR_FROM)
			say(b, RULESET_WARNING, file, r->line, "host: patterns "
			    "match only with From: (MailScanner ignores them "
			    "with \"%.200s\")", c->dirword);
	}
	if (bad)
		return;

	/*
	 * A default pattern is not stored in the ruleset "as it will always
	 * match, whereas we want it to be used only if nothing else
	 * matches": it sets the value used when no rule matches, the last
	 * one winning, wherever it is in the file.
	 */
	if (r->ncond == 1) {
		for (size_t k = 0; k < r->cond[0].natoms; k++) {
			struct atom *a = &r->cond[0].atoms[k];

			if (!a->is_default)
				continue;
			a->skip = 1;
			rs->has_default = 1;
			rs->default_verdict = r->verdict;
			rs->default_rule = ri;
			rs->default_atom = k;
		}
	} else if (r->cond[0].natoms == 1 && r->cond[1].natoms == 1 &&
	    r->cond[0].atoms[0].is_default && r->cond[1].atoms[0].is_default) {
		r->is_default = 1;
		rs->has_default = 1;
		rs->default_verdict = r->verdict;
		rs->default_rule = ri;
		rs->default_atom = 0;
	}
}

static struct rule *
new_rule(struct build *b, unsigned file, unsigned line)
{
	struct ruleset	*rs = b->rs;
	struct rule	*r;

	if (rs->nrules >= RULESET_ATOMS_MAX) {
		if (!b->too_many)
			say(b, RULESET_ERROR, rs->files[file], line,
			    "more than %u rules", RULESET_ATOMS_MAX);
		b->too_many = 1;
		return NULL;
	}
	if (rs->nrules == rs->cap) {
		size_t ncap = rs->cap ? rs->cap * 2 : 16;

		if ((r = realloc(rs->rules, ncap * sizeof(*r))) == NULL) {
			say(b, RULESET_ERROR, rs->files[file], line,
			    "out of memory");
			return NULL;
		}
		rs->rules = r;
		rs->cap = ncap;
	}
	r = &rs->rules[rs->nrules++];
	memset(r, 0, sizeof(*r));
	r->file = file;
	r->line = line;
	return r;
}

static int
set_cond(struct build *b, struct cond *c, const char *dirword,
    const char *pattern)
{
	c->dirword = strdup(dirword);
	c->pattern = strdup(pattern);
	if (c->dirword == NULL || c->pattern == NULL) {
		say(b, RULESET_ERROR, NULL, 0, "out of memory");
		return -1;
	}
	return 0;
}

/*
 * One line of a rules file, Store1Rule's way:
 *   ^(\S+)\s+(\S+)(\s+(.*))?$  with an optional  ^and\s+(\S+)\s+(\S+)(\s+(.+))?$
 * at the start of the value.
 */
static void
rules_line(struct build *b, char *line, unsigned lineno, void *arg)
{
	unsigned	 file = *(unsigned *)arg;
	const char	*fname = b->rs->files[file];
	char		*s = clean_line(line);
	char		*dir1, *pat1, *value, *dir2 = NULL, *pat2 = NULL;
	struct rule	*r;

	if (*s == '\0')
		return;
	dir1 = s;
	s = skip_word(s);
	if (*s == '\0') {
		say(b, RULESET_ERROR, fname, lineno, "syntax error (want "
		    "Direction Pattern Value)");
		return;
	}
	*s++ = '\0';
	pat1 = s = skip_space(s);
	s = skip_word(s);
	if (*s != '\0')
		*s++ = '\0';
	value = skip_space(s);

	if (ci_prefix(value, "and") && is_space((unsigned char)value[3])) {
		char *d2 = skip_space(value + 3), *d2e = skip_word(d2);

		if (d2e != d2 && *d2e != '\0') {
			char *p2 = skip_space(d2e), *p2e = skip_word(p2);

			if (p2e != p2) {
				char *v = *p2e != '\0' ? skip_space(p2e) : p2e;

				*d2e = '\0';
				*p2e = '\0';
				dir2 = d2;
				pat2 = p2;
				value = v;
			}
		}
	}

	if ((r = new_rule(b, file, lineno)) == NULL)
		return;
	if ((r->value = strdup(value)) == NULL) {
		say(b, RULESET_ERROR, fname, lineno, "out of memory");
		return;
	}
	r->ncond = dir2 != NULL ? 2 : 1;
	if (set_cond(b, &r->cond[0], dir1, pat1) == -1)
		return;
	expand(b, &r->cond[0], pat1, file, lineno, 0);
	if (dir2 != NULL) {
		if (set_cond(b, &r->cond[1], dir2, pat2) == -1)
			return;
		expand(b, &r->cond[1], pat2, file, lineno, 0);
	}
	compile_rule(b, b->rs->nrules - 1);
}

/* Building and freeing */

static void
free_cond(struct cond *c)
{
	for (size_t k = 0; k < c->natoms; k++) {
		free(c->atoms[k].pattern);
		pcre2_code_free(c->atoms[k].re);
	}
	free(c->atoms);
	free(c->dirword);
	free(c->pattern);
}

void
ruleset_free(struct ruleset *rs)
{
	if (rs == NULL)
		return;
	for (size_t i = 0; i < rs->nrules; i++) {
		free_cond(&rs->rules[i].cond[0]);
		free_cond(&rs->rules[i].cond[1]);
		free(rs->rules[i].value);
	}
	free(rs->rules);
	for (size_t i = 0; i < rs->nfiles; i++)
		free(rs->files[i]);
	free(rs->files);
	free(rs->setting);
	free(rs->value);
	pcre2_match_context_free(rs->mctx);
	free(rs);
}

static int
build_start(struct build *b, const char *setting, const char *value,
    enum rs_kind kind, int default_yes, ruleset_report_fn report, void *arg)
{
	memset(b, 0, sizeof(*b));
	b->setting = setting != NULL && *setting != '\0' ? setting : "ruleset";
	b->report = report;
	b->arg = arg;
	if ((b->rs = calloc(1, sizeof(*b->rs))) == NULL ||
	    (b->rs->setting = strdup(b->setting)) == NULL ||
	    (b->rs->value = strdup(value)) == NULL ||
	    (b->cctx = pcre2_compile_context_create(NULL)) == NULL ||
	    (b->rs->mctx = pcre2_match_context_create(NULL)) == NULL) {
		say(b, RULESET_ERROR, NULL, 0, "out of memory");
		return -1;
	}
	pcre2_set_max_pattern_length(b->cctx, PATTERN_MAX);
	pcre2_set_match_limit(b->rs->mctx, MATCH_LIMIT);
	pcre2_set_depth_limit(b->rs->mctx, DEPTH_LIMIT);
	b->rs->kind = kind;
	b->rs->default_yes = default_yes != 0;
	return 0;
}

static char	*serialize(const struct ruleset *, size_t *);

/* Frees what went wrong; a good ruleset must also fit its serialized form. */
static struct ruleset *
build_finish(struct build *b)
{
	struct ruleset	*rs = b->rs;
	size_t		 len;
	char		*text;

	pcre2_compile_context_free(b->cctx);
	b->cctx = NULL;
	if (b->errors == 0 && rs != NULL && rs->kind == KIND_RULES) {
		if ((text = serialize(rs, &len)) == NULL)
			say(b, RULESET_ERROR, rs->files[0], 0, "the compiled "
			    "ruleset is larger than %u bytes (or out of "
			    "memory)", RULESET_SERIAL_MAX);
		free(text);
	}
	if (b->errors != 0) {
		ruleset_free(rs);
		return NULL;
	}
	return rs;
}

/* A rules file: its text, or read from file when text is NULL. */
static struct ruleset *
build_text(const char *setting, const char *value, const char *file,
    const char *text, size_t len, int default_yes, ruleset_read_fn readfile,
    const char *const *words, ruleset_report_fn report, void *arg)
{
	struct build	 b;
	unsigned	 fi = 0;
	char		*owned = NULL;

	if (build_start(&b, setting, value, KIND_RULES, default_yes, report,
	    arg) == 0) {
		b.readfile = readfile;
		b.words = words;
		if (text == NULL)
			text = owned = read_text(&b, file, file, 0, &len);
		if (text == NULL)
			;				/* reported */
		else if (len > RULESET_FILE_MAX)
			say(&b, RULESET_ERROR, file, 0, "larger than %u bytes",
			    RULESET_FILE_MAX);
		else if (file_index(&b, file, file, 0) == 0)
			for_each_line(&b, text, len, file, rules_line, &fi);
	}
	free(owned);
	return build_finish(&b);
}

struct ruleset *
ruleset_from_text(const char *setting_name, const char *file,
    const char *text, size_t len, int default_yes, ruleset_read_fn readfile,
    ruleset_report_fn report, void *arg)
{
	if (file == NULL || *file == '\0')
		file = "(rules)";
	return build_text(setting_name, file, file, text ? text : "",
	    text ? len : 0, default_yes, readfile, NULL, report, arg);
}

struct ruleset *
ruleset_from_setting(const char *setting_name, const char *setting_value,
    int default_yes, const char *const *words, ruleset_read_fn readfile,
    ruleset_report_fn report, void *arg)
{
	struct build	 b;
	struct ruleset	*rs;
	const char	*why;
	char		*v;
	size_t		 n;
	int		 verdict;

	if (setting_value == NULL)
		setting_value = "";
	/* The configuration reader trims; be sure. */
	while (is_space((unsigned char)*setting_value))
		setting_value++;
	n = strlen(setting_value);
	while (n > 0 && is_space((unsigned char)setting_value[n - 1]))
		n--;
	if ((v = strndup(setting_value, n)) == NULL)
		return NULL;

	if (*v != '\0' && is_external(v)) {
		if (build_start(&b, setting_name, v, KIND_EXTERNAL, default_yes,
		    report, arg) == 0)
			say(&b, RULESET_WARNING, NULL, 0, "\"%.200s\" is a %s "
			    "that the milter cannot evaluate: it answers %s "
			    "(the default) and leaves the decision to "
			    "MailScanner", v, v[0] == '&' ? "custom function" :
			    "database or LDAP ruleset",
			    (words ? words : yes_no)[default_yes != 0]);
		rs = build_finish(&b);
	} else if (v[0] == '/' && !(n >= 3 && strcmp(v + n - 3, "txt") == 0) &&
	    !(n >= 4 && strcmp(v + n - 4, "html") == 0)) {
		/* "Rules ain't called .txt" */
		rs = build_text(setting_name, v, v, NULL, 0, default_yes,
		    readfile, words, report, arg);
	} else {
		if (build_start(&b, setting_name, v, KIND_CONST, default_yes,
		    report, arg) == 0) {
			if ((verdict = parse_yesno(v, words, &why)) == -1)
				say(&b, RULESET_ERROR, NULL, 0, "value "
				    "\"%.200s\": %s%s", v, why, v[0] == '/' ?
				    " (a file ending in txt or html is not "
				    "read as a ruleset)" : "");
			else
				b.rs->constant = verdict;
		}
		rs = build_finish(&b);
	}
	free(v);
	return rs;
}

void
ruleset_verdicts(const struct ruleset *rs, ruleset_verdict_fn fn, void *arg)
{
	if (rs->kind == KIND_CONST) {
		fn(arg, NULL, 0, rs->constant);
		return;
	}
	for (size_t i = 0; rs->kind == KIND_RULES && i < rs->nrules; i++)
		fn(arg, rs->files[rs->rules[i].file], rs->rules[i].line,
		    rs->rules[i].verdict);
	if (!rs->has_default)
		fn(arg, NULL, 0, rs->default_yes);
}

/* Serialization */

static int
needs_escape(unsigned char c)
{
	return c <= 0x20 || c >= 0x7f || c == '%';
}

static void
put_field(struct sbuf *sb, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char	 esc[3];

	sb_putc(sb, ' ');
	if (*s == '\0') {
		sb_putc(sb, '%');
		return;
	}
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (needs_escape(*p)) {
			esc[0] = '%';
			esc[1] = hex[*p >> 4];
			esc[2] = hex[*p & 0xf];
			sb_putn(sb, esc, 3);
		} else
			sb_putc(sb, (char)*p);
	}
}

static const char *
kind_name(enum rs_kind k)
{
	return k == KIND_CONST ? "const" : k == KIND_EXTERNAL ? "external" :
	    "rules";
}

static char *
serialize(const struct ruleset *rs, size_t *lenp)
{
	struct sbuf	 sb = { .max = RULESET_SERIAL_MAX };

	sb_puts(&sb, SERIAL_MAGIC "\nsetting");
	put_field(&sb, rs->setting);
	sb_puts(&sb, rs->default_yes ? "\ndefault 1\nkind " :
	    "\ndefault 0\nkind ");
	sb_puts(&sb, kind_name(rs->kind));
	put_field(&sb, rs->value);
	sb_putc(&sb, '\n');
	if (rs->kind == KIND_RULES) {
		sb_puts(&sb, "files ");
		sb_putu(&sb, rs->nfiles);
		sb_putc(&sb, '\n');
		for (size_t i = 0; i < rs->nfiles; i++) {
			sb_puts(&sb, "file");
			put_field(&sb, rs->files[i]);
			sb_putc(&sb, '\n');
		}
		sb_puts(&sb, "rules ");
		sb_putu(&sb, rs->nrules);
		sb_putc(&sb, '\n');
		for (size_t i = 0; i < rs->nrules && !sb.failed; i++) {
			const struct rule *r = &rs->rules[i];

			sb_puts(&sb, "rule ");
			sb_putu(&sb, r->file);
			sb_putc(&sb, ' ');
			sb_putu(&sb, r->line);
			sb_putc(&sb, ' ');
			sb_putu(&sb, (unsigned long)r->ncond);
			put_field(&sb, r->value);
			sb_putc(&sb, '\n');
			for (int k = 0; k < r->ncond; k++) {
				const struct cond *c = &r->cond[k];

				sb_puts(&sb, "cond");
				put_field(&sb, c->dirword);
				put_field(&sb, c->pattern);
				sb_putc(&sb, ' ');
				sb_putu(&sb, c->natoms);
				sb_putc(&sb, '\n');
				for (size_t j = 0; j < c->natoms; j++) {
					sb_puts(&sb, "atom ");
					sb_putu(&sb, c->atoms[j].file);
					sb_putc(&sb, ' ');
					sb_putu(&sb, c->atoms[j].line);
					put_field(&sb, c->atoms[j].pattern);
					sb_putc(&sb, '\n');
				}
			}
		}
	}
	sb_puts(&sb, "end\n");
	if (sb.failed) {
		sb_free(&sb);
		return NULL;
	}
	*lenp = sb.len;
	return sb.p;
}

char *
ruleset_serialize(const struct ruleset *rs, size_t *len)
{
	size_t	 n;
	char	*s;

	if (rs == NULL)
		return NULL;
	s = serialize(rs, &n);
	if (s != NULL && len != NULL)
		*len = n;
	return s;
}

struct reader {
	struct build	*b;
	const char	*p, *end;
	unsigned	 lineno;
	char		*buf;
	char		*f[6];		/* f[0] is the keyword */
	size_t		 nf;
};

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The inverse of put_field, accepting only its canonical output. */
static int
decode_field(char *f)
{
	char	*w = f;

	if (strcmp(f, "%") == 0) {
		f[0] = '\0';
		return 0;
	}
	if (*f == '\0')
		return -1;
	while (*f != '\0') {
		unsigned char c = (unsigned char)*f;

		if (c == '%') {
			int hi = hexval(f[1]), lo = hi < 0 ? -1 : hexval(f[2]);

			if (lo < 0)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0 || !needs_escape(c))
				return -1;
			*w++ = (char)c;
			f += 3;
		} else if (needs_escape(c))
			return -1;
		else
			*w++ = *f++;
	}
	*w = '\0';
	return 0;
}

static void
bad_serial(struct reader *rd, const char *what)
{
	say(rd->b, RULESET_ERROR, "<serialized>", rd->lineno, "%s", what);
}

/* The next line: keyword kw and exactly nargs fields after it. */
static int
next_record(struct reader *rd, const char *kw, size_t nargs)
{
	const char	*nl;
	char		*s, *nb;
	size_t		 n;

	if (rd->p >= rd->end) {
		bad_serial(rd, "truncated");
		return -1;
	}
	rd->lineno++;
	if ((nl = memchr(rd->p, '\n', (size_t)(rd->end - rd->p))) == NULL) {
		bad_serial(rd, "last line has no newline");
		return -1;
	}
	n = (size_t)(nl - rd->p);
	if ((nb = realloc(rd->buf, n + 1)) == NULL) {
		bad_serial(rd, "out of memory");
		return -1;
	}
	rd->buf = nb;
	memcpy(rd->buf, rd->p, n);
	rd->buf[n] = '\0';
	rd->p = nl + 1;
	if (strlen(rd->buf) != n) {
		bad_serial(rd, "NUL byte");
		return -1;
	}
	rd->nf = 0;
	for (s = rd->buf;;) {
		if (rd->nf == sizeof(rd->f) / sizeof(rd->f[0])) {
			bad_serial(rd, "too many fields");
			return -1;
		}
		rd->f[rd->nf++] = s;
		if ((s = strchr(s, ' ')) == NULL)
			break;
		*s++ = '\0';
	}
	if (strcmp(rd->f[0], kw) != 0) {
		char msg[64];

		snprintf(msg, sizeof(msg), "expected \"%s\"", kw);
		bad_serial(rd, msg);
		return -1;
	}
	if (rd->nf != nargs + 1) {
		bad_serial(rd, "wrong number of fields");
		return -1;
	}
	for (size_t i = 1; i < rd->nf; i++)
		if (decode_field(rd->f[i]) == -1) {
			bad_serial(rd, "badly encoded field");
			return -1;
		}
	return 0;
}

/* Decimal, no sign, no leading zero, at most max. */
static int
parse_num(struct reader *rd, const char *s, unsigned long min,
    unsigned long max, unsigned long *out)
{
	unsigned long	 v = 0;
	size_t		 n = strlen(s);

	if (n == 0 || n > 10 || strspn(s, "0123456789") != n ||
	    (n > 1 && s[0] == '0'))
		goto bad;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (unsigned long)(s[i] - '0');
	if (v < min || v > max)
		goto bad;
	*out = v;
	return 0;
bad:
	bad_serial(rd, "bad number");
	return -1;
}

/* A \S+ field of a rules line: non-empty, no white space, no comment. */
static int
valid_token(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (is_space((unsigned char)*s) || *s == '#')
			return 0;
	return 1;
}

/* Trimmed text from one line with its comment removed. */
static int
valid_text(const char *s)
{
	size_t	 n = strlen(s);

	if (n == 0 || is_space((unsigned char)s[0]) ||
	    is_space((unsigned char)s[n - 1]))
		return 0;
	return strchr(s, '#') == NULL && strchr(s, '\n') == NULL;
}

static int
read_cond(struct reader *rd, struct rule *r, struct cond *c)
{
	struct build	*b = rd->b;
	unsigned long	 natoms, file, line;
	int		 is_file;

	if (next_record(rd, "cond", 3) == -1)
		return -1;
	if (!valid_token(rd->f[1]) || !valid_token(rd->f[2])) {
		bad_serial(rd, "bad direction or pattern");
		return -1;
	}
	if (parse_num(rd, rd->f[3], 0, RULESET_ATOMS_MAX - b->natoms,
	    &natoms) == -1 || set_cond(b, c, rd->f[1], rd->f[2]) == -1)
		return -1;
	is_file = is_file_pattern(c->pattern);
	if (!is_file && natoms != 1) {
		bad_serial(rd, "a pattern that is not a file is one atom");
		return -1;
	}
	for (unsigned long i = 0; i < natoms; i++) {
		if (next_record(rd, "atom", 3) == -1 ||
		    parse_num(rd, rd->f[1], 0, b->rs->nfiles - 1, &file) == -1 ||
		    parse_num(rd, rd->f[2], 1, UINT_MAX, &line) == -1)
			return -1;
		if (is_file ? !valid_text(rd->f[3]) ||
		    is_file_pattern(rd->f[3]) :
		    file != r->file || line != r->line ||
		    strcmp(rd->f[3], c->pattern) != 0) {
			bad_serial(rd, "atom does not fit its condition");
			return -1;
		}
		if (add_atom(b, c, rd->f[3], (unsigned)file,
		    (unsigned)line) == NULL)
			return -1;
	}
	return 0;
}

static int
read_rules(struct reader *rd)
{
	struct build	*b = rd->b;
	struct ruleset	*rs = b->rs;
	unsigned long	 nfiles, nrules, line, ncond;

	if (next_record(rd, "files", 1) == -1 ||
	    parse_num(rd, rd->f[1], 1, RULESET_FILES_MAX, &nfiles) == -1)
		return -1;
	for (unsigned long i = 0; i < nfiles; i++) {
		if (next_record(rd, "file", 1) == -1)
			return -1;
		if (rd->f[1][0] == '\0') {
			bad_serial(rd, "empty file name");
			return -1;
		}
		for (size_t k = 0; k < rs->nfiles; k++)
			if (strcmp(rs->files[k], rd->f[1]) == 0) {
				bad_serial(rd, "file named twice");
				return -1;
			}
		if (file_index(b, rd->f[1], NULL, 0) == -1)
			return -1;
	}
	if (next_record(rd, "rules", 1) == -1 ||
	    parse_num(rd, rd->f[1], 0, RULESET_ATOMS_MAX, &nrules) == -1)
		return -1;
	for (unsigned long i = 0; i < nrules; i++) {
		struct rule *r;

		/* Rules come from the rules file, files[0]. */
		if (next_record(rd, "rule", 4) == -1)
			return -1;
		if (strcmp(rd->f[1], "0") != 0) {
			bad_serial(rd, "a rule not in the rules file");
			return -1;
		}
		if (parse_num(rd, rd->f[2], 1, UINT_MAX, &line) == -1 ||
		    parse_num(rd, rd->f[3], 1, 2, &ncond) == -1)
			return -1;
		if (!valid_text(rd->f[4])) {
			bad_serial(rd, "bad value");
			return -1;
		}
		if ((r = new_rule(b, 0, (unsigned)line)) == NULL)
			return -1;
		if ((r->value = strdup(rd->f[4])) == NULL) {
			bad_serial(rd, "out of memory");
			return -1;
		}
		r->ncond = (int)ncond;
		for (int k = 0; k < r->ncond; k++)
			if (read_cond(rd, r, &r->cond[k]) == -1)
				return -1;
		compile_rule(b, rs->nrules - 1);
		if (b->errors != 0)
			return -1;
	}
	return 0;
}

struct ruleset *
ruleset_parse_serialized(const char *text, size_t len,
    ruleset_report_fn report, void *arg)
{
	struct build	 pre, b;
	struct reader	 rd;
	struct ruleset	*rs = NULL;
	enum rs_kind	 kind;
	const char	*why;
	char		*setting = NULL, *value = NULL;
	unsigned long	 dflt;
	int		 verdict;

	/* Until the setting's name is known, messages say what this is. */
	memset(&pre, 0, sizeof(pre));
	pre.setting = "serialized ruleset";
	pre.report = report;
	pre.arg = arg;
	memset(&rd, 0, sizeof(rd));
	rd.b = &pre;
	if (text == NULL || len > RULESET_SERIAL_MAX) {
		bad_serial(&rd, "missing or larger than the limit");
		return NULL;
	}
	rd.p = text;
	rd.end = text + len;

	if (next_record(&rd, "msmilter-ruleset", 1) == -1)
		goto out;
	if (strcmp(rd.f[1], "1") != 0) {
		bad_serial(&rd, "unknown version");
		goto out;
	}
	if (next_record(&rd, "setting", 1) == -1)
		goto out;
	if (rd.f[1][0] == '\0') {
		bad_serial(&rd, "empty setting name");
		goto out;
	}
	if ((setting = strdup(rd.f[1])) == NULL) {
		bad_serial(&rd, "out of memory");
		goto out;
	}
	if (next_record(&rd, "default", 1) == -1 ||
	    parse_num(&rd, rd.f[1], 0, 1, &dflt) == -1 ||
	    next_record(&rd, "kind", 2) == -1)
		goto out;
	if (strcmp(rd.f[1], "const") == 0)
		kind = KIND_CONST;
	else if (strcmp(rd.f[1], "external") == 0)
		kind = KIND_EXTERNAL;
	else if (strcmp(rd.f[1], "rules") == 0)
		kind = KIND_RULES;
	else {
		bad_serial(&rd, "unknown kind");
		goto out;
	}
	if ((value = strdup(rd.f[2])) == NULL) {
		bad_serial(&rd, "out of memory");
		goto out;
	}
	if (*value == '\0' || (kind == KIND_EXTERNAL) != is_external(value)) {
		bad_serial(&rd, "value does not fit the kind");
		goto out;
	}

	/* The warnings were the parent's to give; errors still count. */
	if (build_start(&b, setting, value, kind, (int)dflt, report,
	    arg) == 0) {
		b.quiet = 1;
		b.readfile = NULL;	/* self-contained: open nothing */
		rd.b = &b;
		if (kind == KIND_CONST) {
			if ((verdict = parse_yesno(value, NULL, &why)) == -1)
				bad_serial(&rd, "constant is not yes or no");
			else
				b.rs->constant = verdict;
		} else if (kind == KIND_RULES)
			(void)read_rules(&rd);
		if (b.errors == 0 && next_record(&rd, "end", 0) == 0 &&
		    rd.p != rd.end)
			bad_serial(&rd, "data after the end");
	}
	rs = build_finish(&b);
out:
	free(rd.buf);
	free(setting);
	free(value);
	return rs;
}

/* Evaluation: Value() and FirstMatchValue() for one message */

struct subject {
	const char	*p;
	size_t		 len;
};

struct eval {
	const struct ruleset	*rs;
	const struct rule_query	*q;
	pcre2_match_data	*md;
	struct subject		 from;
	char			 ip[INET6_ADDRSTRLEN + 8];
	size_t			 iplen;
	int			 family;	/* 0: not an address */
	unsigned char		 ipbin[16];
	const char		*host;		/* "." name, or "" */
	size_t			 hostlen;
	char			*hostbuf;
};

/* MSMilter: s/^\<//; s/\>.*$// */
static struct subject
address(const char *s)
{
	struct subject	 sub;
	const char	*gt;

	if (s == NULL)
		s = "";
	if (*s == '<')
		s++;
	sub.p = s;
	gt = strchr(s, '>');
	sub.len = gt ? (size_t)(gt - s) : strlen(s);
	return sub;
}

static int
re_match(const struct eval *ev, const pcre2_code *re, const char *s,
    size_t len)
{
	/* Errors, the match limit among them, count as no match. */
	return pcre2_match(re, (PCRE2_SPTR)s, len, 0, 0, ev->md,
	    ev->rs->mctx) >= 0;
}

static int
match_host(const struct eval *ev, const struct atom *a)
{
	const char	*h = ev->host;
	size_t		 n = ev->hostlen;

	/*
	 * The name with a '.' in front, then with its labels knocked off
	 * one by one: s/^\.[^.]+//.
	 */
	for (;;) {
		size_t k = 1;

		if (re_match(ev, a->re, h, n))
			return 1;
		if (n < 2 || h[0] != '.' || h[1] == '.')
			return 0;
		while (k < n && h[k] != '.')
			k++;
		h += k;
		n -= k;
		if (n == 0)
			return 0;
	}
}

static int
match_atom(const struct eval *ev, const struct atom *a, int dir)
{
	const struct rule_query	*q = ev->q;
	struct subject		 to;

	switch (a->type) {
	case ATOM_ADDR:
		if (dir == DIR_AND) {
			/* The sender and every recipient. */
			if (!re_match(ev, a->re, ev->from.p, ev->from.len))
				return 0;
			for (size_t i = 0; i < q->nrcpt; i++) {
				to = address(q->rcpts ? q->rcpts[i] : NULL);
				if (!re_match(ev, a->re, to.p, to.len))
					return 0;
			}
			return 1;
		}
		if ((dir & DIR_FROM) &&
		    re_match(ev, a->re, ev->from.p, ev->from.len))
			return 1;
		if (dir & DIR_TO)
			for (size_t i = 0; i < q->nrcpt; i++) {
				to = address(q->rcpts ? q->rcpts[i] : NULL);
				if (re_match(ev, a->re, to.p, to.len))
					return 1;
			}
		return 0;
	case ATOM_IP:
		return (dir & DIR_FROM) &&
		    re_match(ev, a->re, ev->ip, ev->iplen);
	case ATOM_NET:
		if (!(dir & DIR_FROM) || ev->family != a->net.family)
			return 0;
		{
			size_t n = a->net.family == AF_INET ? 4 : 16;

			return memcmp(a->net.lo, ev->ipbin, n) <= 0 &&
			    memcmp(ev->ipbin, a->net.hi, n) <= 0;
		}
	case ATOM_HOST:
		return dir == DIR_FROM && match_host(ev, a);
	}
	return 0;
}

/* The index of the first atom that matches, or -1. */
static long
match_cond(const struct eval *ev, const struct cond *c)
{
	for (size_t k = 0; k < c->natoms; k++)
		if (!c->atoms[k].skip && match_atom(ev, &c->atoms[k], c->dir))
			return (long)k;
	return -1;
}

static void
set_where(const struct ruleset *rs, const struct rule *r, const long *atom,
    char *where, size_t wherelen)
{
	size_t	 n;

	if (where == NULL || wherelen == 0)
		return;
	snprintf(where, wherelen, "%s:%u", rs->files[r->file], r->line);
	for (int k = 0; k < r->ncond; k++) {
		const struct atom *a;

		if (atom[k] < 0)
			continue;
		a = &r->cond[k].atoms[atom[k]];
		if (a->file == r->file && a->line == r->line)
			continue;
		n = strlen(where);
		snprintf(where + n, wherelen - n, " via %s:%u",
		    rs->files[a->file], a->line);
	}
}

static void
set_word(char *where, size_t wherelen, const char *word)
{
	if (where != NULL && wherelen > 0)
		snprintf(where, wherelen, "%s", word);
}

static void
prepare_client(struct eval *ev)
{
	const char	*a = ev->q->client_addr ? ev->q->client_addr : "";
	const char	*name = ev->q->client_name;
	size_t		 n;

	if (ci_prefix(a, "ipv6:"))
		a += 5;
	if (inet_pton(AF_INET, a, ev->ipbin) == 1)
		ev->family = AF_INET;
	else if (inet_pton(AF_INET6, a, ev->ipbin) == 1)
		ev->family = AF_INET6;
	/* Canonical text, as MSMilter gets it from inet_ntop(). */
	if (ev->family != 0 &&
	    inet_ntop(ev->family, ev->ipbin, ev->ip, sizeof(ev->ip)) != NULL)
		ev->iplen = strlen(ev->ip);
	else {
		ev->family = 0;
		n = strlen(a);
		if (n >= sizeof(ev->ip))
			n = sizeof(ev->ip) - 1;
		memcpy(ev->ip, a, n);
		ev->ip[n] = '\0';
		ev->iplen = n;
	}

	/* No name: Postfix says "unknown"; MailScanner then has "". */
	if (name == NULL || *name == '\0' || *name == '[' ||
	    (ci_prefix(name, "unknown") && name[7] == '\0'))
		return;
	n = strlen(name);
	if ((ev->hostbuf = malloc(n + 2)) == NULL) {
		ev->host = NULL;
		return;
	}
	ev->hostbuf[0] = '.';
	for (size_t i = 0; i < n; i++)
		ev->hostbuf[i + 1] = (char)lower((unsigned char)name[i]);
	ev->hostbuf[n + 1] = '\0';
	ev->host = ev->hostbuf;
	ev->hostlen = n + 1;
}

int
ruleset_eval(const struct ruleset *rs, const struct rule_query *q,
    char *where, size_t wherelen)
{
	static const struct rule_query empty;
	struct eval	 ev;
	long		 atom[2];
	int		 verdict;

	if (rs == NULL) {
		set_word(where, wherelen, "default");
		return 0;
	}
	if (rs->kind == KIND_CONST) {
		set_word(where, wherelen, "config");
		return rs->constant;
	}
	if (rs->kind == KIND_EXTERNAL)
		goto dflt;
	memset(&ev, 0, sizeof(ev));
	ev.rs = rs;
	ev.q = q != NULL ? q : &empty;
	ev.from = address(ev.q->sender);
	ev.host = "";
	prepare_client(&ev);
	if (ev.host == NULL ||
	    (ev.md = pcre2_match_data_create(1, NULL)) == NULL) {
		/* Out of memory: the setting's default, as if nothing matched. */
		free(ev.hostbuf);
		goto dflt;
	}
	verdict = -1;
	for (size_t i = 0; i < rs->nrules && verdict == -1; i++) {
		const struct rule *r = &rs->rules[i];

		if (r->is_default)
			continue;
		atom[1] = -1;
		if ((atom[0] = match_cond(&ev, &r->cond[0])) < 0)
			continue;
		if (r->ncond == 2 && (atom[1] = match_cond(&ev, &r->cond[1])) < 0)
			continue;
		verdict = r->verdict;
		set_where(rs, r, atom, where, wherelen);
	}
	pcre2_match_data_free(ev.md);
	free(ev.hostbuf);
	if (verdict != -1)
		return verdict;
	if (rs->has_default) {
		const struct rule *r = &rs->rules[rs->default_rule];

		atom[0] = r->ncond == 1 ? (long)rs->default_atom : -1;
		atom[1] = -1;
		set_where(rs, r, atom, where, wherelen);
		return rs->default_verdict;
	}
dflt:
	set_word(where, wherelen, "default");
	return rs->default_yes;
}
