/*
 * MailScanner rulesets: every pattern form against addresses, IPs and host
 * names, directions with several recipients, default rules, pattern files,
 * errors with their file:line, and the serialized form's round trip.
 * Run from tests/unit (data/rules/...).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "ruleset.h"

#define WL	"Is Definitely Not Spam"
#define MAXREP	64

struct reports {
	char	 msg[MAXREP][600];
	int	 sev[MAXREP];
	size_t	 n;
	size_t	 errors, warnings;
};

static void
collect(void *arg, int severity, const char *file, unsigned line,
    const char *message)
{
	struct reports *r = arg;

	if (severity == RULESET_ERROR)
		r->errors++;
	else
		r->warnings++;
	if (r->n < MAXREP) {
		snprintf(r->msg[r->n], sizeof(r->msg[0]), "%s:%u: %s",
		    file ? file : "-", line, message);
		r->sev[r->n++] = severity;
	}
}

static void
print_reports(const struct reports *r)
{
	for (size_t i = 0; i < r->n; i++)
		print_message("  %s %s\n", r->sev[i] ? "error" : "warning",
		    r->msg[i]);
}

/* A report of this severity whose "file:line: message" contains s. */
static int
has_report(const struct reports *r, int sev, const char *s)
{
	for (size_t i = 0; i < r->n; i++)
		if (r->sev[i] == sev && strstr(r->msg[i], s) != NULL)
			return 1;
	return 0;
}

static char *
data_path(const char *rel)
{
	char *p = realpath(rel, NULL);

	assert_non_null(p);
	return p;
}

/* rcpts: space-separated, NULL for none. */
struct query {
	const char	*sender;
	const char	*rcpts;
	const char	*ip;
	const char	*host;
};

static int
eval_q(const struct ruleset *rs, const struct query *t, char *where,
    size_t wherelen)
{
	char			 buf[512], *save = NULL, *tok;
	const char		*rcpt[8];
	struct rule_query	 q;
	size_t			 n = 0;

	if (t->rcpts != NULL) {
		snprintf(buf, sizeof(buf), "%s", t->rcpts);
		for (tok = strtok_r(buf, " ", &save); tok != NULL && n < 8;
		    tok = strtok_r(NULL, " ", &save))
			rcpt[n++] = tok;
	}
	q.sender = t->sender;
	q.rcpts = rcpt;
	q.nrcpt = n;
	q.client_addr = t->ip;
	q.client_name = t->host;
	return ruleset_eval(rs, &q, where, wherelen);
}

static struct ruleset *
parse(const char *text, struct reports *rep)
{
	memset(rep, 0, sizeof(*rep));
	return ruleset_parse_text(WL, "t.rules", text, strlen(text), 0,
	    RULESET_NO_FILES, collect, rep);
}

/* Pattern forms */

struct mcase {
	const char	*dir;
	const char	*pattern;
	struct query	 q;
	int		 match;
};

#define S	"someone@nowhere.example"
#define IP	"198.51.100.7"

static const struct mcase cases[] = {
	/* user@domain */
	{ "From:", "user@domain.com", { "user@domain.com", 0, 0, 0 }, 1 },
	{ "From:", "user@domain.com", { "USER@Domain.COM", 0, 0, 0 }, 1 },
	{ "From:", "USER@DOMAIN.COM", { "user@domain.com", 0, 0, 0 }, 1 },
	{ "From:", "user@domain.com", { "<user@domain.com>", 0, 0, 0 }, 1 },
	{ "From:", "user@domain.com", { "user@domain.com.", 0, 0, 0 }, 1 },
	{ "From:", "user@domain.com", { "xuser@domain.com", 0, 0, 0 }, 0 },
	{ "From:", "user@domain.com", { "user@sub.domain.com", 0, 0, 0 }, 0 },
	{ "From:", "user@domain.com", { "user@domain.com.au", 0, 0, 0 }, 0 },
	{ "From:", "user@domain.com", { "user@domainxcom", 0, 0, 0 }, 0 },
	{ "From:", "user@domain.com", { "", 0, 0, 0 }, 0 },
	/* user@*, user@ */
	{ "From:", "user@*", { "user@anything.example", 0, 0, 0 }, 1 },
	{ "From:", "user@*", { "user2@anything.example", 0, 0, 0 }, 0 },
	{ "From:", "user@", { "user@x.example", 0, 0, 0 }, 1 },
	/* *@domain, @domain, bare domain: that domain only */
	{ "From:", "*@domain.com", { "a@domain.com", 0, 0, 0 }, 1 },
	{ "From:", "*@domain.com", { "a@sub.domain.com", 0, 0, 0 }, 0 },
	{ "From:", "*@domain.com", { "a@xdomain.com", 0, 0, 0 }, 0 },
	{ "From:", "@domain.com", { "a@domain.com", 0, 0, 0 }, 1 },
	{ "From:", "domain.com", { "a@domain.com", 0, 0, 0 }, 1 },
	{ "From:", "domain.com", { "a@sub.domain.com", 0, 0, 0 }, 0 },
	{ "From:", "Domain.COM", { "a@DOMAIN.com", 0, 0, 0 }, 1 },
	/* *@*.domain, *.domain: subdomains only */
	{ "From:", "*@*.domain.com", { "a@sub.domain.com", 0, 0, 0 }, 1 },
	{ "From:", "*@*.domain.com", { "a@x.y.domain.com", 0, 0, 0 }, 1 },
	{ "From:", "*@*.domain.com", { "a@domain.com", 0, 0, 0 }, 0 },
	{ "From:", "*.domain.com", { "a@sub.domain.com", 0, 0, 0 }, 1 },
	{ "From:", "*.domain.com", { "a@domain.com", 0, 0, 0 }, 0 },
	/* wildcards anywhere */
	{ "From:", "user*@*.domain.com", { "user42@mx.domain.com", 0, 0, 0 }, 1 },
	{ "From:", "user*@domain.com", { "username@domain.com", 0, 0, 0 }, 1 },
	{ "From:", "user*@domain.com", { "auser@domain.com", 0, 0, 0 }, 0 },
	{ "From:", "bounce-opa-intelligence*@mailing.list.com",
	    { "bounce-opa-intelligence1234@mailing.list.com", 0, 0, 0 }, 1 },
	{ "From:", "**", { "a@b.example", 0, 0, 0 }, 1 },
	{ "From:", "**", { "", 0, 0, 0 }, 0 },
	/* + is escaped, as MailScanner does */
	{ "From:", "user+tag@x.example", { "user+tag@x.example", 0, 0, 0 }, 1 },
	{ "From:", "user+tag@x.example", { "userrtag@x.example", 0, 0, 0 }, 0 },
	/* /regexp/ (rules/EXAMPLES 9 and spam.whitelist.rules) */
	{ "From:", "/[\\@\\.]domain\\.com$/", { "user@domain.com", 0, 0, 0 }, 1 },
	{ "From:", "/[\\@\\.]domain\\.com$/", { "user@sub.domain.com", 0, 0, 0 }, 1 },
	{ "From:", "/[\\@\\.]domain\\.com$/",
	    { "foo-domain.com@spammer.com", 0, 0, 0 }, 0 },
	{ "From:", "/\\.gov$/", { "x@whitehouse.gov", 0, 0, 0 }, 1 },
	{ "From:", "/^$/", { "", 0, 0, 0 }, 1 },
	{ "From:", "/^$/", { "<>", 0, 0, 0 }, 1 },
	{ "From:", "/^$/", { NULL, 0, 0, 0 }, 1 },
	{ "From:", "/^$/", { "a@b.example", 0, 0, 0 }, 0 },
	{ "From:", "/^Admin@/", { "admin@x.example", 0, 0, 0 }, 1 },
	/* MailScanner lower-cases the regexp: \D is \d */
	{ "From:", "/^\\D+@x\\.example$/", { "abc@x.example", 0, 0, 0 }, 0 },
	{ "From:", "/^\\D+@x\\.example$/", { "123@x.example", 0, 0, 0 }, 1 },
	/* "From: _SPOOFED_" (EXAMPLES) is just an address pattern */
	{ "From:", "_SPOOFED_", { "a@_spoofed_", 0, 0, 0 }, 1 },

	/* Directions with several recipients */
	{ "To:", "*@domain.com", { S, "b@other.example c@domain.com", 0, 0 }, 1 },
	{ "To:", "*@domain.com", { "a@domain.com", "b@other.example", 0, 0 }, 0 },
	{ "To:", "*@domain.com", { "a@domain.com", NULL, 0, 0 }, 0 },
	{ "From:", "*@domain.com", { S, "b@domain.com", 0, 0 }, 0 },
	{ "FromOrTo:", "*@domain.com", { "a@domain.com", "b@x.example", 0, 0 }, 1 },
	{ "FromOrTo:", "*@domain.com",
	    { S, "b@x.example <c@domain.com>", 0, 0 }, 1 },
	{ "FromOrTo:", "*@domain.com", { S, "b@x.example", 0, 0 }, 0 },
	/* FromAndTo: the sender and every recipient */
	{ "FromAndTo:", "*@domain.com",
	    { "a@domain.com", "b@domain.com c@domain.com", 0, 0 }, 1 },
	{ "FromAndTo:", "*@domain.com",
	    { "a@domain.com", "b@domain.com c@x.example", 0, 0 }, 0 },
	{ "FromAndTo:", "*@domain.com", { S, "b@domain.com", 0, 0 }, 0 },
	{ "FromAndTo:", "*@domain.com", { "a@domain.com", NULL, 0, 0 }, 1 },
	/* Directions are matched loosely */
	{ "from", "*@domain.com", { "a@domain.com", 0, 0, 0 }, 1 },
	{ "Envelope-FROM", "*@domain.com", { "a@domain.com", 0, 0, 0 }, 1 },
	{ "to", "*@domain.com", { S, "a@domain.com", 0, 0 }, 1 },
	{ "ToOrFrom:", "*@domain.com", { "a@domain.com", 0, 0, 0 }, 1 },
	{ "ToOrFrom:", "*@domain.com", { S, "a@domain.com", 0, 0 }, 1 },
	/* any word containing "and" is FromAndTo */
	{ "Random:", "*@domain.com", { "a@domain.com", "b@x.example", 0, 0 }, 0 },
	{ "Random:", "*@domain.com", { "a@domain.com", "b@domain.com", 0, 0 }, 1 },

	/* IPv4 prefixes: MailScanner matches the start of the text */
	{ "From:", "192.168.21.", { S, 0, "192.168.21.5", 0 }, 1 },
	{ "From:", "192.168.21.", { S, 0, "192.168.210.5", 0 }, 0 },
	{ "From:", "192.168.21", { S, 0, "192.168.21.5", 0 }, 1 },
	{ "From:", "192.168.21", { S, 0, "192.168.210.5", 0 }, 1 },
	{ "From:", "192.168.21", { S, 0, "10.192.168.21", 0 }, 0 },
	{ "From:", "123.234.", { S, 0, "123.234.1.1", 0 }, 1 },
	{ "From:", "192.168.21.", { S, 0, NULL, 0 }, 0 },
	/* a complete address matches the whole address */
	{ "From:", "192.0.2.1", { S, 0, "192.0.2.1", 0 }, 1 },
	{ "From:", "192.0.2.1", { S, 0, "192.0.2.10", 0 }, 0 },
	/* CIDR, netmask, short networks */
	{ "From:", "192.168.21.0/255.255.255.0", { S, 0, "192.168.21.200", 0 }, 1 },
	{ "From:", "192.168.21.0/255.255.255.0", { S, 0, "192.168.22.1", 0 }, 0 },
	{ "From:", "192.168.21.0/24", { S, 0, "192.168.21.0", 0 }, 1 },
	{ "From:", "192.168.21.0/24", { S, 0, "192.168.21.255", 0 }, 1 },
	{ "From:", "192.168.21.0/24", { S, 0, "192.168.20.255", 0 }, 0 },
	{ "From:", "192.168.21.77/24", { S, 0, "192.168.21.5", 0 }, 1 },
	{ "From:", "152.78/16", { S, 0, "152.78.3.4", 0 }, 1 },
	{ "From:", "152.78/16", { S, 0, "152.79.0.1", 0 }, 0 },
	{ "From:", "10/8", { S, 0, "10.200.0.1", 0 }, 1 },
	{ "From:", "0.0.0.0/0", { S, 0, IP, 0 }, 1 },
	{ "From:", "0.0.0.0/0", { S, 0, "2001:db8::1", 0 }, 0 },
	{ "From:", "192.0.2.1/32", { S, 0, "192.0.2.1", 0 }, 1 },
	{ "From:", "192.0.2.1/32", { S, 0, "192.0.2.2", 0 }, 0 },
	/* regexps without letters are for the client address */
	{ "From:", "/^192\\.168\\.1[4567]\\./", { S, 0, "192.168.15.3", 0 }, 1 },
	{ "From:", "/^192\\.168\\.1[4567]\\./", { S, 0, "192.168.18.3", 0 }, 0 },
	{ "From:", "/^10\\.0\\.0\\.1$/", { S, 0, "10.0.0.1", 0 }, 1 },
	/* ranges */
	{ "From:", "192.0.2.10-192.0.2.20", { S, 0, "192.0.2.10", 0 }, 1 },
	{ "From:", "192.0.2.10-192.0.2.20", { S, 0, "192.0.2.20", 0 }, 1 },
	{ "From:", "192.0.2.10-192.0.2.20", { S, 0, "192.0.2.21", 0 }, 0 },
	{ "From:", "192.0.2.10-192.0.2.20", { S, 0, "192.0.2.9", 0 }, 0 },
	/* IPv6 */
	{ "From:", "2001:db8::/32", { S, 0, "2001:db8:1::5", 0 }, 1 },
	{ "From:", "2001:db8::/32", { S, 0, "2001:db9::1", 0 }, 0 },
	{ "From:", "2001:db8::/32", { S, 0, "192.0.2.1", 0 }, 0 },
	{ "From:", "2001:db8::/32", { S, 0, "IPv6:2001:db8::2", 0 }, 1 },
	{ "From:", "2001:DB8::/32", { S, 0, "2001:db8::5", 0 }, 1 },
	{ "From:", "2001:db8::/ffff:ffff::", { S, 0, "2001:db8:5::1", 0 }, 1 },
	{ "From:", "2001:db8::1-2001:db8::ff", { S, 0, "2001:db8::80", 0 }, 1 },
	{ "From:", "2001:db8::1-2001:db8::ff", { S, 0, "2001:db8::100", 0 }, 0 },
	{ "From:", "2001:db8:", { S, 0, "2001:db8:0:1::1", 0 }, 1 },
	{ "From:", "2001:db8:", { S, 0, "2001:DB8:0:1:0:0:0:1", 0 }, 1 },
	{ "From:", "2001:db8::", { S, 0, "2001:db8:1::1", 0 }, 0 },
	{ "From:", "::1", { S, 0, "::1", 0 }, 1 },
	/* client patterns need From (FromOrTo has it) */
	{ "To:", "192.168.21.", { S, "a@b.example", "192.168.21.5", 0 }, 0 },
	{ "FromOrTo:", "192.168.21.", { S, "a@b.example", "192.168.21.5", 0 }, 1 },
	{ "FromAndTo:", "192.168.21.", { S, "a@b.example", "192.168.21.5", 0 }, 0 },
	{ "To:", "10.0.0.0/8", { S, "a@b.example", "10.1.1.1", 0 }, 0 },
	{ "FromOrTo:", "10.0.0.0/8", { S, "a@b.example", "10.1.1.1", 0 }, 1 },

	/* host: the name, then each parent domain */
	{ "From:", "host:mail.example.com", { S, 0, IP, "mail.example.com" }, 1 },
	{ "From:", "host:mail.example.com", { S, 0, IP, "x.mail.example.com" }, 1 },
	{ "From:", "host:mail.example.com", { S, 0, IP, "ymail.example.com" }, 0 },
	{ "From:", "host:mail.example.com",
	    { S, 0, IP, "mail.example.com.evil.example" }, 0 },
	{ "From:", "host:example.com", { S, 0, IP, "example.com" }, 1 },
	{ "From:", "host:example.com", { S, 0, IP, "mx1.example.com" }, 1 },
	{ "From:", "host:example.com", { S, 0, IP, "badexample.com" }, 0 },
	{ "From:", "host:mail*.example.com", { S, 0, IP, "mail7.example.com" }, 1 },
	{ "From:", "host:mail*.example.com", { S, 0, IP, "mail.example.com" }, 1 },
	{ "From:", "host:mail*.example.com", { S, 0, IP, "smtp.example.com" }, 0 },
	{ "From:", "host:mail*.exam*ple.com",
	    { S, 0, IP, "mail2.examINGple.com" }, 1 },
	{ "From:", "host:*.example.com", { S, 0, IP, "a.example.com" }, 1 },
	/* the name is tested as ".example.com", so this matches it too */
	{ "From:", "host:*.example.com", { S, 0, IP, "example.com" }, 1 },
	{ "From:", "host:/(de|dk)$/", { S, 0, IP, "foo.example.de" }, 1 },
	{ "From:", "host:/(de|dk)$/", { S, 0, IP, "foo.example.com" }, 0 },
	{ "From:", "host:/^\\.example\\.com$/", { S, 0, IP, "a.b.example.com" }, 1 },
	{ "From:", "host:/^\\.example\\.com$/", { S, 0, IP, "example.org" }, 0 },
	/* the name MailScanner matches always starts with '.' */
	{ "From:", "host:/^mail\\./", { S, 0, IP, "mail.example.com" }, 0 },
	{ "From:", "HOST:Mail.Example.COM", { S, 0, IP, "MAIL.example.com" }, 1 },
	{ "From:", "host-nocheck:example.com", { S, 0, IP, "mx.example.com" }, 1 },
	{ "From:", "host:localhost.localdomain",
	    { S, 0, "127.0.0.1", "localhost.localdomain" }, 1 },
	/* host: alone is a client without a name */
	{ "From:", "host:", { S, 0, IP, "unknown" }, 1 },
	{ "From:", "host:", { S, 0, IP, NULL }, 1 },
	{ "From:", "host:", { S, 0, IP, "" }, 1 },
	{ "From:", "host:", { S, 0, IP, "mail.example.com" }, 0 },
	/* host:* is /.*$/, which matches no name at all as well */
	{ "From:", "host:*", { S, 0, IP, "unknown" }, 1 },
	{ "From:", "host:*", { S, 0, IP, "mail.example.com" }, 1 },
	/* MailScanner makes a leading dot need two */
	{ "From:", "host:.example.com", { S, 0, IP, "mx.example.com" }, 0 },
	/* only From: looks at the name */
	{ "To:", "host:example.com", { S, "a@example.com", IP, "mx.example.com" }, 0 },
	{ "FromOrTo:", "host:example.com", { S, 0, IP, "mx.example.com" }, 0 },
	{ "FromAndTo:", "host:example.com", { S, 0, IP, "mx.example.com" }, 0 },
};

static void
pattern_table(void **state)
{
	char		 text[512], where[256];
	struct reports	 rep;
	struct ruleset	*rs;
	int		 failed = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct mcase *c = &cases[i];
		int got;

		snprintf(text, sizeof(text), "%s\t%s\tyes\n", c->dir,
		    c->pattern);
		rs = parse(text, &rep);
		if (rs == NULL || rep.errors != 0) {
			print_message("case %zu: %s", i, text);
			print_reports(&rep);
			fail();
		}
		got = eval_q(rs, &c->q, where, sizeof(where));
		if (got != c->match ||
		    strcmp(where, c->match ? "t.rules:1" : "default") != 0) {
			print_message("case %zu: %s %s sender=%s rcpts=%s "
			    "ip=%s host=%s: got %d (%s), want %d\n", i, c->dir,
			    c->pattern, c->q.sender, c->q.rcpts, c->q.ip,
			    c->q.host, got, where, c->match);
			failed++;
		}
		/* The same rule with "no" and a default of yes. */
		ruleset_free(rs);
		snprintf(text, sizeof(text), "%s\t%s\tNo\n", c->dir,
		    c->pattern);
		memset(&rep, 0, sizeof(rep));
		rs = ruleset_parse_text(WL, "t.rules", text, strlen(text), 1,
		    RULESET_NO_FILES, collect, &rep);
		assert_non_null(rs);
		if (eval_q(rs, &c->q, NULL, 0) != !c->match) {
			print_message("case %zu inverted: wrong\n", i);
			failed++;
		}
		ruleset_free(rs);
	}
	assert_int_equal(failed, 0);
}

/* The warnings MailScanner's quirks deserve, each at its line. */
static void
quirk_warnings(void **state)
{
	struct reports	 rep;
	struct ruleset	*rs;

	(void)state;
	rs = parse("From: host:.example.com yes\n"
	    "To: 10.0.0.0/8 yes\n"
	    "FromOrTo: host:example.com yes\n"
	    "From: /^\\S+@x$/ yes\n"
	    "From: cafe.de yes\n"
	    "FromOrTo: 10.0.0.0/8 yes\n", &rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);
	assert_true(has_report(&rep, RULESET_WARNING, "t.rules:1: "));
	assert_true(has_report(&rep, RULESET_WARNING, "t.rules:2: "));
	assert_true(has_report(&rep, RULESET_WARNING, "t.rules:3: "));
	assert_true(has_report(&rep, RULESET_WARNING, "t.rules:4: "));
	assert_true(has_report(&rep, RULESET_WARNING, "t.rules:5: "));
	assert_false(has_report(&rep, RULESET_WARNING, "t.rules:6: "));
	assert_int_equal(rep.warnings, 5);
	ruleset_free(rs);
}

/* and: both conditions, each with its own direction (EXAMPLES 8) */
static void
two_conditions(void **state)
{
	static const struct {
		struct query	 q;
		int		 want;
		const char	*where;
	} t[] = {
		{ { "x@trapme.com", "abuse@me.example", 0, 0 }, 1, "t.rules:1" },
		{ { "x@trapme.com", "a@me.example abuse@me.example", 0, 0 }, 1,
		    "t.rules:1" },
		{ { "x@trapme.com", "a@me.example", 0, 0 }, 0, "t.rules:3" },
		{ { "x@other.example", "abuse@me.example", 0, 0 }, 0,
		    "t.rules:3" },
		{ { "a@domain.com", "b@domain2.com", 0, 0 }, 1, "t.rules:2" },
		{ { "a@domain2.com", "b@domain.com", 0, 0 }, 1, "t.rules:2" },
		{ { "a@domain.com", "b@domain.com", 0, 0 }, 0, "t.rules:3" },
		/* an IP and an address */
		{ { "a@x.example", 0, "10.9.9.9", 0 }, 1, "t.rules:4" },
		{ { "a@y.example", 0, "10.9.9.9", 0 }, 0, "t.rules:3" },
	};
	char		 where[256];
	struct reports	 rep;
	struct ruleset	*rs;

	(void)state;
	rs = parse("From: trapme.com and To: abuse@*\tyes\n"
	    "FromOrTo: domain.com AND FromOrTo: domain2.com\tyes\n"
	    "FromOrTo:\tdefault\tno\n"
	    "From: 10.9.9. and From: *@x.example yes\n", &rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(eval_q(rs, &t[i].q, where, sizeof(where)),
		    t[i].want);
		assert_string_equal(where, t[i].where);
	}
	ruleset_free(rs);
}

/* Defaults */

static void
first_match_and_defaults(void **state)
{
	char		 where[256], want[PATH_MAX + 16];
	char		*path = data_path("data/rules/first.rules");
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs;
	struct query	 q = { "bad@example.com", NULL, IP, NULL };

	(void)state;
	rs = ruleset_load(WL, path, 1, collect, &rep);
	print_reports(&rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);

	/* The default rule on line 2 does not match first. */
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
	snprintf(want, sizeof(want), "%s:3", path);
	assert_string_equal(where, want);
	/* First match wins over a later contrary rule. */
	q.sender = "x@example.com";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:4", path);
	assert_string_equal(where, want);
	q.sender = "y@other.example";
	q.rcpts = "a@b.example POSTMASTER@b.example";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:6", path);
	assert_string_equal(where, want);
	/* Nothing matches: the last default rule (line 7), not line 2. */
	q.rcpts = NULL;
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
	snprintf(want, sizeof(want), "%s:7", path);
	assert_string_equal(where, want);
	/* Even for the null sender, which *@* itself would not match. */
	q.sender = "";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
	assert_string_equal(where, want);
	ruleset_free(rs);
	free(path);
}

static void
default_forms(void **state)
{
	static const char *const forms[] = {
		"From: default yes\n", "To: DEFAULT yes\n",
		"FromOrTo: *@* yes\n", "From: * yes\n", "From: @ yes\n",
		"From: *@ yes\n", "From: @* yes\n",
		"From: default and To: *@* yes\n",
	};
	char		 where[64];
	struct reports	 rep;
	struct ruleset	*rs;
	struct query	 q = { "", NULL, NULL, NULL };

	(void)state;
	for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
		rs = parse(forms[i], &rep);
		assert_non_null(rs);
		/* A default, so it decides even for the null sender. */
		assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
		assert_string_equal(where, "t.rules:1");
		ruleset_free(rs);
	}
	/* Without lower-case letters, MailScanner's own default regexp
	 * is an IP regexp, not a default. */
	rs = parse("From: /^.*\\@.*\\.?$/ yes\n", &rep);
	assert_non_null(rs);
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
	assert_string_equal(where, "default");
	ruleset_free(rs);
	/* No rule at all: the setting's default. */
	rs = parse("# nothing\n\n", &rep);
	assert_non_null(rs);
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
	assert_string_equal(where, "default");
	ruleset_free(rs);
	memset(&rep, 0, sizeof(rep));
	rs = ruleset_parse_text(WL, "t.rules", "", 0, 1, 0, collect, &rep);
	assert_non_null(rs);
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	assert_string_equal(where, "default");
	ruleset_free(rs);
	/* A default with a real second condition is an ordinary rule. */
	rs = parse("From: default and To: a@b.example yes\n", &rep);
	assert_non_null(rs);
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
	q.sender = "x@y.example";
	q.rcpts = "a@b.example";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	assert_string_equal(where, "t.rules:1");
	ruleset_free(rs);
}

/* MailScanner's own example files */

static void
examples_whitelist(void **state)
{
	static const struct {
		struct query	 q;
		int		 want;
		unsigned	 line;
	} t[] = {
		{ { "user@good.domain.com", 0, IP, 0 }, 1, 2 },
		{ { "x@friendly.domain.com", 0, IP, 0 }, 1, 3 },
		{ { "bounce-opa-intelligence99@mailing.list.com", 0, IP, 0 }, 1, 5 },
		{ { S, 0, "123.234.5.6", 0 }, 1, 7 },
		{ { S, 0, "192.168.135.1", 0 }, 1, 8 },
		{ { S, 0, "192.168.138.1", 0 }, 0, 13 },
		{ { S, 0, "127.0.0.1", "localhost.localdomain" }, 1, 10 },
		{ { S, "user@good.domain.com", IP, 0 }, 0, 13 },
	};
	char		 where[256], want[PATH_MAX + 16];
	char		*path = data_path("data/rules/whitelist.rules");
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs;

	(void)state;
	rs = ruleset_load(WL, path, 0, collect, &rep);
	print_reports(&rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(eval_q(rs, &t[i].q, where, sizeof(where)),
		    t[i].want);
		snprintf(want, sizeof(want), "%s:%u", path, t[i].line);
		assert_string_equal(where, want);
	}
	ruleset_free(rs);
	free(path);
}

static void
examples_blacklist_and_readme(void **state)
{
	char		 where[256], want[PATH_MAX + 16];
	char		*bl = data_path("data/rules/blacklist.rules");
	char		*rd = data_path("data/rules/readme.rules");
	char		*crlf = data_path("data/rules/crlf.rules");
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs;
	struct query	 q = { "x@spammers.com", NULL, IP, NULL };

	(void)state;
	rs = ruleset_load("Is Definitely Spam", bl, 0, collect, &rep);
	assert_non_null(rs);
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:3", bl);
	assert_string_equal(where, want);
	q.sender = "x@friends.example";
	q.ip = "123.231.3.99";
	assert_int_equal(eval_q(rs, &q, NULL, 0), 1);
	q.ip = "123.231.30.99";
	assert_int_equal(eval_q(rs, &q, NULL, 0), 0);
	ruleset_free(rs);

	/* Every pattern form in rules/README loads without a word. */
	memset(&rep, 0, sizeof(rep));
	rs = ruleset_load(WL, rd, 0, collect, &rep);
	print_reports(&rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors + rep.warnings, 0);
	q.sender = "spammer@domain.com";
	q.rcpts = "abuse@you";
	q.ip = IP;
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:3", rd);
	assert_string_equal(where, want);
	q.rcpts = "abuse@me.example";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:8", rd);	/* *@domain.com */
	assert_string_equal(where, want);
	q.sender = "a@b.example";
	q.host = "unknown";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:20", rd);	/* host: */
	assert_string_equal(where, want);
	q.host = "mx.nowhere.example";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
	snprintf(want, sizeof(want), "%s:23", rd);	/* last default */
	assert_string_equal(where, want);
	ruleset_free(rs);

	/* CRLF lines and "Yes," */
	memset(&rep, 0, sizeof(rep));
	rs = ruleset_load(WL, crlf, 0, collect, &rep);
	assert_non_null(rs);
	q.sender = "CRLF@example.com";
	q.rcpts = NULL;
	assert_int_equal(eval_q(rs, &q, NULL, 0), 1);
	q.sender = S;
	q.rcpts = "x@example.com";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:2", crlf);
	assert_string_equal(where, want);
	ruleset_free(rs);
	free(bl);
	free(rd);
	free(crlf);
}

/* Errors */

static void
bad_rules(void **state)
{
	static const unsigned want[] = {
		2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 16, 17, 18
	};
	char		 prefix[PATH_MAX + 16];
	char		*path = data_path("data/rules/bad.rules");
	struct reports	 rep = { .n = 0 };
	size_t		 k = 0;

	(void)state;
	assert_null(ruleset_load(WL, path, 0, collect, &rep));
	/* Exactly one error per bad line, in order, none for line 15. */
	if (rep.errors != sizeof(want) / sizeof(want[0]))
		print_reports(&rep);
	assert_int_equal(rep.errors, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < rep.n; i++) {
		if (rep.sev[i] != RULESET_ERROR)
			continue;
		snprintf(prefix, sizeof(prefix), "%s:%u: " WL ": ", path,
		    want[k++]);
		if (strncmp(rep.msg[i], prefix, strlen(prefix)) != 0) {
			print_message("want %s\n got %s\n", prefix, rep.msg[i]);
			fail();
		}
	}
	assert_true(has_report(&rep, RULESET_ERROR, ":2: " WL ": \"Virus:\""));
	assert_true(has_report(&rep, RULESET_ERROR, "unknown direction \"Frm:\""));
	assert_true(has_report(&rep, RULESET_ERROR, ":4: " WL ": value \"\": no value"));
	assert_true(has_report(&rep, RULESET_ERROR, "bad regular expression"));
	assert_true(has_report(&rep, RULESET_ERROR, "MailScanner accepts only yes or no"));
	assert_true(has_report(&rep, RULESET_ERROR, "ends before it starts"));
	free(path);
}

static void
setting_values(void **state)
{
	char		 where[64];
	struct reports	 rep;
	struct ruleset	*rs;
	struct query	 q = { S, NULL, IP, NULL };
	static const char *const good[][2] = {
		{ "yes", "1" }, { "no", "0" }, { "Yes", "1" }, { "NO", "0" },
		{ " yes ", "1" }, { "yes,", "1" },
	};
	static const char *const bad[] = {
		"", "1", "0", "maybe", "yes no", "/etc/MailScanner/x.txt",
		"/etc/MailScanner/x.html", "rules/whitelist.rules", NULL,
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(&rep, 0, sizeof(rep));
		rs = ruleset_load(WL, good[i][0], 0, collect, &rep);
		assert_non_null(rs);
		assert_int_equal(rep.n, 0);
		assert_int_equal(eval_q(rs, &q, where, sizeof(where)),
		    good[i][1][0] - '0');
		assert_string_equal(where, "config");
		ruleset_free(rs);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&rep, 0, sizeof(rep));
		assert_null(ruleset_load(WL, bad[i], 0, collect, &rep));
		assert_int_equal(rep.errors, 1);
		assert_true(has_report(&rep, RULESET_ERROR, "-:0: " WL ": "));
	}
	/* A rules file that is not there. */
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_load(WL, "/nonexistent/x.rules", 0, collect,
	    &rep));
	assert_true(has_report(&rep, RULESET_ERROR,
	    "/nonexistent/x.rules:0: " WL ": cannot open"));
	/* Nor is a directory or a device. */
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_load(WL, "/dev/null", 0, collect, &rep));
	assert_true(has_report(&rep, RULESET_ERROR, "not a regular file"));
}

static void
custom_functions(void **state)
{
	static const char *const ext[] = {
		"&SQLWhitelist", "&LDAPWhitelist(a,b)", "spam.whitelist.customize",
		"spamwhitelist.customise", "Whitelist.RuleSet",
	};
	char		 where[64], *s;
	size_t		 len;
	struct reports	 rep;
	struct ruleset	*rs, *rs2;
	struct query	 q = { S, "a@b.example", IP, "mx.example.com" };

	(void)state;
	for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
		memset(&rep, 0, sizeof(rep));
		rs = ruleset_load(WL, ext[i], 0, collect, &rep);
		assert_non_null(rs);
		/* Said once, at load, without a file. */
		assert_int_equal(rep.warnings, 1);
		assert_int_equal(rep.errors, 0);
		assert_true(has_report(&rep, RULESET_WARNING, "-:0: " WL ": \""));
		assert_true(has_report(&rep, RULESET_WARNING, "cannot evaluate"));
		assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
		assert_string_equal(where, "default");
		assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 0);
		/* The child neither warns again nor decides otherwise. */
		assert_non_null(s = ruleset_serialize(rs, &len));
		memset(&rep, 0, sizeof(rep));
		assert_non_null(rs2 = ruleset_parse_serialized(s, len, collect,
		    &rep));
		assert_int_equal(rep.n, 0);
		assert_int_equal(eval_q(rs2, &q, where, sizeof(where)), 0);
		free(s);
		ruleset_free(rs);
		ruleset_free(rs2);
	}
	/* With a default of yes, yes. */
	memset(&rep, 0, sizeof(rep));
	rs = ruleset_load(WL, "&Foo", 1, collect, &rep);
	assert_non_null(rs);
	assert_int_equal(eval_q(rs, &q, NULL, 0), 1);
	ruleset_free(rs);
	/* "/x/customize.rules" is a file name, not an SQL ruleset. */
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_load(WL, "/nonexistent/customize.rules", 0,
	    collect, &rep));
	assert_true(has_report(&rep, RULESET_ERROR, "cannot open"));
	/* A &Function as a rule's value is just a bad value. */
	rs = parse("From: a@b.example &SQLWhitelist\n", &rep);
	assert_null(rs);
	assert_true(has_report(&rep, RULESET_ERROR, "t.rules:1: "));
}

/* Pattern files */

static void
pattern_files(void **state)
{
	char		 text[PATH_MAX * 2], where[PATH_MAX * 2], want[PATH_MAX * 2];
	char		*list = data_path("data/rules/patterns.list");
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs;
	static const struct {
		struct query	 q;
		int		 want;
		unsigned	 line;	/* in patterns.list, 0: the default */
	} t[] = {
		{ { "friend@example.org", 0, IP, 0 }, 1, 2 },
		{ { "x@trusted.example", 0, IP, 0 }, 1, 3 },
		{ { S, 0, "10.1.2.3", 0 }, 1, 5 },
		{ { S, 0, IP, "a.relay.example.net" }, 1, 6 },
		{ { S, 0, "2001:db8:77:1::1", 0 }, 1, 7 },
		{ { S, "friend@example.org", IP, 0 }, 0, 0 },
		{ { S, 0, "10.1.20.3", 0 }, 0, 0 },
	};

	(void)state;
	snprintf(text, sizeof(text), "From:\t%s\tyes\nFromOrTo: default no\n",
	    list);
	rs = ruleset_parse_text(WL, "t.rules", text, strlen(text), 0, 0,
	    collect, &rep);
	print_reports(&rep);
	assert_non_null(rs);
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		assert_int_equal(eval_q(rs, &t[i].q, where, sizeof(where)),
		    t[i].want);
		if (t[i].line)
			snprintf(want, sizeof(want), "t.rules:1 via %s:%u",
			    list, t[i].line);
		else
			snprintf(want, sizeof(want), "t.rules:2");
		assert_string_equal(where, want);
	}
	ruleset_free(rs);

	/* In an "and" rule: any pattern of the file for that condition. */
	snprintf(text, sizeof(text), "To: *@me.example and From: %s yes\n",
	    list);
	memset(&rep, 0, sizeof(rep));
	rs = ruleset_parse_text(WL, "t.rules", text, strlen(text), 0, 0,
	    collect, &rep);
	assert_non_null(rs);
	{
		struct query q = { "x@trusted.example", "a@me.example", IP, 0 };

		assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
		snprintf(want, sizeof(want), "t.rules:1 via %s:3", list);
		assert_string_equal(where, want);
		q.rcpts = "a@you.example";
		assert_int_equal(eval_q(rs, &q, NULL, 0), 0);
	}
	ruleset_free(rs);

	/* The child cannot open files. */
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_parse_text(WL, "t.rules", text, strlen(text), 0,
	    RULESET_NO_FILES, collect, &rep));
	assert_true(has_report(&rep, RULESET_ERROR, "t.rules:1: "));
	free(list);
}

static char tmpdir[] = "/tmp/test_ruleset.XXXXXX";

static void
write_file(const char *name, const char *text)
{
	char	 path[PATH_MAX];
	FILE	*f;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	assert_non_null(f = fopen(path, "w"));
	fputs(text, f);
	assert_int_equal(fclose(f), 0);
}

static void
nested_pattern_files(void **state)
{
	char		 text[PATH_MAX * 4], path[PATH_MAX], where[PATH_MAX * 2];
	char		 want[PATH_MAX * 2];
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs;
	struct query	 q = { "b@b.example", NULL, IP, NULL };

	(void)state;
	/* a.list names b.list, which holds a default: the fallback. */
	snprintf(text, sizeof(text), "a@a.example\n%s/b.list\n", tmpdir);
	write_file("a.list", text);
	write_file("b.list", "b@b.example\n  default  # everyone else\n");
	snprintf(text, sizeof(text), "# rules\nFrom: %s/a.list yes\n"
	    "From: c@c.example no\n", tmpdir);
	write_file("x.rules", text);
	snprintf(path, sizeof(path), "%s/x.rules", tmpdir);
	rs = ruleset_load(WL, path, 0, collect, &rep);
	print_reports(&rep);
	assert_non_null(rs);
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:2 via %s/b.list:1", path, tmpdir);
	assert_string_equal(where, want);
	q.sender = "c@c.example";
	assert_int_equal(eval_q(rs, &q, NULL, 0), 0);
	q.sender = "d@d.example";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	snprintf(want, sizeof(want), "%s:2 via %s/b.list:2", path, tmpdir);
	assert_string_equal(where, want);
	ruleset_free(rs);

	/* A file that names itself stops at MailScanner's depth. */
	snprintf(text, sizeof(text), "loop@x.example\n%s/loop.list\n", tmpdir);
	write_file("loop.list", text);
	snprintf(text, sizeof(text), "From: %s/loop.list yes\n", tmpdir);
	write_file("loop.rules", text);
	snprintf(path, sizeof(path), "%s/loop.rules", tmpdir);
	memset(&rep, 0, sizeof(rep));
	rs = ruleset_load(WL, path, 0, collect, &rep);
	assert_non_null(rs);
	assert_int_equal(rep.errors, 0);
	assert_int_equal(rep.warnings, 1);
	assert_true(has_report(&rep, RULESET_WARNING, "nested deeper than 4"));
	q.sender = "loop@x.example";
	assert_int_equal(eval_q(rs, &q, where, sizeof(where)), 1);
	ruleset_free(rs);

	/* A missing pattern file is an error at the rule that names it. */
	snprintf(text, sizeof(text), "From: ok@x.example yes\n"
	    "From: %s/missing.list yes\n", tmpdir);
	write_file("missing.rules", text);
	snprintf(path, sizeof(path), "%s/missing.rules", tmpdir);
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_load(WL, path, 0, collect, &rep));
	snprintf(want, sizeof(want), "%s:2: " WL ": cannot open %s/missing.list",
	    path, tmpdir);
	assert_true(has_report(&rep, RULESET_ERROR, want));
	/* A bad pattern in a pattern file: its own file and line. */
	write_file("bad.list", "ok@x.example\n\n10.0.0.0/40\n");
	snprintf(text, sizeof(text), "From: %s/bad.list yes\n", tmpdir);
	write_file("bad.rules", text);
	snprintf(path, sizeof(path), "%s/bad.rules", tmpdir);
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_load(WL, path, 0, collect, &rep));
	snprintf(want, sizeof(want), "%s/bad.list:3: ", tmpdir);
	assert_true(has_report(&rep, RULESET_ERROR, want));
}

/* Serialization */

static const struct query matrix_senders[] = {
	{ "user@good.domain.com", 0, 0, 0 }, { "x@friendly.domain.com", 0, 0, 0 },
	{ "", 0, 0, 0 }, { "bad@example.com", 0, 0, 0 },
	{ "x@example.com", 0, 0, 0 }, { "friend@example.org", 0, 0, 0 },
	{ "x@trusted.example", 0, 0, 0 }, { "spammer@domain.com", 0, 0, 0 },
	{ "b@b.example", 0, 0, 0 }, { "c@c.example", 0, 0, 0 },
};
static const char *const matrix_rcpts[] = {
	NULL, "abuse@you", "postmaster@x.example a@me.example",
};
static const char *const matrix_ips[] = {
	"192.0.2.1", "123.234.5.6", "192.168.21.9", "10.1.2.3",
	"2001:db8:77::1", NULL,
};
static const char *const matrix_hosts[] = {
	"unknown", "localhost.localdomain", "mail.example.com",
	"a.relay.example.net",
};

/* serialize, parse, serialize: same bytes, same answers everywhere */
static void
check_round_trip(const struct ruleset *rs)
{
	char		*s1, *s2, w1[PATH_MAX * 2], w2[PATH_MAX * 2];
	size_t		 l1 = 0, l2 = 0;
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs2;

	assert_non_null(s1 = ruleset_serialize(rs, &l1));
	assert_int_equal(strlen(s1), l1);
	rs2 = ruleset_parse_serialized(s1, l1, collect, &rep);
	print_reports(&rep);
	assert_non_null(rs2);
	assert_int_equal(rep.n, 0);
	assert_non_null(s2 = ruleset_serialize(rs2, &l2));
	assert_int_equal(l1, l2);
	assert_memory_equal(s1, s2, l1);
	for (size_t a = 0; a < sizeof(matrix_senders) / sizeof(matrix_senders[0]); a++)
	for (size_t b = 0; b < sizeof(matrix_rcpts) / sizeof(matrix_rcpts[0]); b++)
	for (size_t c = 0; c < sizeof(matrix_ips) / sizeof(matrix_ips[0]); c++)
	for (size_t d = 0; d < sizeof(matrix_hosts) / sizeof(matrix_hosts[0]); d++) {
		struct query q = { matrix_senders[a].sender, matrix_rcpts[b],
		    matrix_ips[c], matrix_hosts[d] };

		assert_int_equal(eval_q(rs, &q, w1, sizeof(w1)),
		    eval_q(rs2, &q, w2, sizeof(w2)));
		assert_string_equal(w1, w2);
	}
	free(s1);
	free(s2);
	ruleset_free(rs2);
}

static void
round_trip(void **state)
{
	static const char *const files[] = {
		"data/rules/whitelist.rules", "data/rules/blacklist.rules",
		"data/rules/readme.rules", "data/rules/first.rules",
		"data/rules/crlf.rules",
	};
	static const char *const values[] = {
		"yes", "no", "Yes,", "&SQLWhitelist(a, b)", "x.customize",
	};
	char		 text[PATH_MAX * 2], path[PATH_MAX];
	char		*list = data_path("data/rules/patterns.list");
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs;

	(void)state;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char *p = data_path(files[i]);

		assert_non_null(rs = ruleset_load(WL, p, (int)(i & 1), collect,
		    &rep));
		check_round_trip(rs);
		ruleset_free(rs);
		free(p);
	}
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		assert_non_null(rs = ruleset_load(WL, values[i], 0, collect,
		    &rep));
		check_round_trip(rs);
		ruleset_free(rs);
	}
	/* Pattern files, nested ones, "and" rules, odd bytes in names. */
	snprintf(text, sizeof(text), "From:\t%s\tyes\n"
	    "To: *@me.example and From: %s no\n"
	    "From: %s/a.list yes\nFromOrTo: default no\n", list, list, tmpdir);
	rs = ruleset_parse_text("Is Definitely Spam", "odd name\t%\n\x7f.rules",
	    text, strlen(text), 1, 0, collect, &rep);
	assert_non_null(rs);
	check_round_trip(rs);
	ruleset_free(rs);
	snprintf(path, sizeof(path), "%s/x.rules", tmpdir);
	assert_non_null(rs = ruleset_load(WL, path, 0, collect, &rep));
	check_round_trip(rs);
	ruleset_free(rs);
	free(list);
}

static char *
replace_first(const char *s, const char *old, const char *new, size_t *len)
{
	const char	*p = strstr(s, old);
	char		*r;

	assert_non_null(p);
	assert_non_null(r = malloc(strlen(s) - strlen(old) + strlen(new) + 1));
	memcpy(r, s, (size_t)(p - s));
	strcpy(r + (p - s), new);
	strcat(r, p + strlen(old));
	*len = strlen(r);
	return r;
}

static void
serialized_is_strict(void **state)
{
	static const char *const mutations[][2] = {
		{ "msmilter-ruleset 1", "msmilter-ruleset 2" },
		{ "msmilter-ruleset 1", "msmilter-ruleset  1" },
		{ "default 0", "default 00" },
		{ "default 0", "default 2" },
		{ "kind rules", "kind rulez" },
		{ "Is%20Definitely", "Is%41Definitely" },
		{ "Is%20Definitely", "Is%2Definitely" },
		{ "Is%20Definitely", "Is Definitely" },
		{ "setting Is", "setting % Is" },
		{ "files 2", "files 3" },
		{ "files 2", "files 1" },
		{ "rules 3", "rules 4" },
		{ "rules 3", "rules 2" },
		{ "rule 0 1 1 yes", "rule 1 1 1 yes" },
		{ "rule 0 1 1 yes", "rule 0 0 1 yes" },
		{ "rule 0 1 1 yes", "rule 0 1 3 yes" },
		{ "rule 0 1 1 yes", "rule 0 1 1 maybe" },
		{ "rule 0 1 1 yes", "rule 0 1 1 %" },
		{ "cond From: ", "cond Frm: " },
		{ "cond From: ", "cond Virus: " },
		{ "atom 1 2 friend@example.org", "atom 1 2 /etc/passwd" },
		{ "atom 1 2 friend@example.org", "atom 2 2 friend@example.org" },
		{ "atom 1 2 friend@example.org", "atom 1 0 friend@example.org" },
		{ "atom 1 2 friend@example.org", "atom 1 2 friend@example.org#" },
		{ "atom 0 3 other@x.example", "atom 0 4 other@x.example" },
		{ "atom 0 3 other@x.example", "atom 0 3 another@x.example" },
		{ "other@x.example\nend", "other@x.example\n"
		    "atom 0 3 other@x.example\nend" },
		{ "cond To: other@x.example 1", "cond To: /a(b/ 1" },
		{ "other@x.example 1\natom 0 3 other@x.example",
		    "/a(b/ 1\natom 0 3 /a(b/" },
		{ "end\n", "end\nend\n" },
		{ "end\n", "end" },
		{ "end\n", "" },
		{ "end\n", "end\n\n" },
	};
	char		 text[PATH_MAX * 2], *s, *m;
	char		*list = data_path("data/rules/patterns.list");
	size_t		 len, mlen;
	struct reports	 rep = { .n = 0 };
	struct ruleset	*rs, *rs2;

	(void)state;
	snprintf(text, sizeof(text), "From: %s yes\nFromOrTo: default no\n"
	    "To: other@x.example yes\n", list);
	rs = ruleset_parse_text(WL, "t.rules", text, strlen(text), 0, 0,
	    collect, &rep);
	assert_non_null(rs);
	assert_non_null(s = ruleset_serialize(rs, &len));
	assert_non_null(rs2 = ruleset_parse_serialized(s, len, collect, &rep));
	ruleset_free(rs2);
	for (size_t i = 0; i < sizeof(mutations) / sizeof(mutations[0]); i++) {
		m = replace_first(s, mutations[i][0], mutations[i][1], &mlen);
		memset(&rep, 0, sizeof(rep));
		rs2 = ruleset_parse_serialized(m, mlen, collect, &rep);
		if (rs2 != NULL || rep.errors == 0) {
			print_message("mutation %zu accepted: %s -> %s\n", i,
			    mutations[i][0], mutations[i][1]);
			fail();
		}
		free(m);
	}
	/* A NUL byte anywhere, a length past the text, a huge length. */
	m = strdup(s);
	m[10] = '\0';
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_parse_serialized(m, len, collect, &rep));
	assert_true(rep.errors > 0);
	free(m);
	assert_null(ruleset_parse_serialized(s, len - 1, collect, &rep));
	assert_null(ruleset_parse_serialized(s, 0, collect, &rep));
	assert_null(ruleset_parse_serialized(s, (size_t)RULESET_SERIAL_MAX + 1,
	    collect, &rep));
	assert_null(ruleset_parse_serialized(NULL, 0, collect, &rep));
	/* Constants must be yes or no. */
	m = strdup("msmilter-ruleset 1\nsetting x\ndefault 0\nkind const maybe\n"
	    "end\n");
	assert_null(ruleset_parse_serialized(m, strlen(m), collect, &rep));
	free(m);
	m = strdup("msmilter-ruleset 1\nsetting x\ndefault 0\nkind const YES\n"
	    "end\n");
	assert_non_null(rs2 = ruleset_parse_serialized(m, strlen(m), collect,
	    &rep));
	assert_int_equal(ruleset_eval(rs2, NULL, NULL, 0), 1);
	ruleset_free(rs2);
	free(m);
	/* "external" only for what is external. */
	m = strdup("msmilter-ruleset 1\nsetting x\ndefault 1\nkind external yes\n"
	    "end\n");
	assert_null(ruleset_parse_serialized(m, strlen(m), collect, &rep));
	free(m);
	free(s);
	ruleset_free(rs);
	free(list);
}

static void
limits(void **state)
{
	struct reports	 rep;
	struct ruleset	*rs;
	char		*text;
	size_t		 n = 0, cap = (size_t)RULESET_ATOMS_MAX * 32 + 64;

	(void)state;
	/* One pattern too many is an error, not a truncation. */
	assert_non_null(text = malloc(cap));
	for (unsigned i = 0; i <= RULESET_ATOMS_MAX; i++)
		n += (size_t)snprintf(text + n, cap - n, "From: a%u@x yes\n", i);
	memset(&rep, 0, sizeof(rep));
	rs = ruleset_parse_text(WL, "t.rules", text, n, 0, RULESET_NO_FILES,
	    collect, &rep);
	assert_null(rs);
	assert_true(has_report(&rep, RULESET_ERROR, "more than"));
	free(text);
	/* A NUL byte in a rules file. */
	memset(&rep, 0, sizeof(rep));
	assert_null(ruleset_parse_text(WL, "t.rules", "From: a@b yes\n\0x\n",
	    17, 0, 0, collect, &rep));
	assert_true(has_report(&rep, RULESET_ERROR, "t.rules:2: "));
	/* A catastrophic regexp against a hostile address ends, no match. */
	rs = parse("From: /^(a+)+$/ yes\n", &rep);
	assert_non_null(rs);
	{
		char		 addr[4096];
		struct query	 q = { addr, NULL, IP, NULL };

		memset(addr, 'a', sizeof(addr) - 2);
		addr[sizeof(addr) - 2] = '!';
		addr[sizeof(addr) - 1] = '\0';
		assert_int_equal(eval_q(rs, &q, NULL, 0), 0);
	}
	ruleset_free(rs);
}

static int
setup(void **state)
{
	(void)state;
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	static const char *const names[] = {
		"a.list", "b.list", "x.rules", "loop.list", "loop.rules",
		"missing.rules", "bad.list", "bad.rules",
	};
	char path[PATH_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		unlink(path);
	}
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(pattern_table),
		cmocka_unit_test(quirk_warnings),
		cmocka_unit_test(two_conditions),
		cmocka_unit_test(first_match_and_defaults),
		cmocka_unit_test(default_forms),
		cmocka_unit_test(examples_whitelist),
		cmocka_unit_test(examples_blacklist_and_readme),
		cmocka_unit_test(bad_rules),
		cmocka_unit_test(setting_values),
		cmocka_unit_test(custom_functions),
		cmocka_unit_test(pattern_files),
		cmocka_unit_test(nested_pattern_files),
		cmocka_unit_test(round_trip),
		cmocka_unit_test(serialized_is_strict),
		cmocka_unit_test(limits),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
