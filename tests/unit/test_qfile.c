/*
 * The queue file envelope: the shared checks, the writer, the strict
 * reader (envelope lines, where the envelope ends, E lines and orphans,
 * our Received header, what makes a file unreadable).  Each file is
 * written to a memfd.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qfile.h"

static int
mkfile(const char *data, size_t len)
{
	int fd = memfd_create("qfile", 0);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	return fd;
}

static int
read_str(const char *data, struct qfile *q, char *err)
{
	int fd = mkfile(data, strlen(data));
	int rc = qfile_read(fd, q, err, 128);

	close(fd);
	return rc;
}

#define HDR	"Received: from h.example (c.example [192.0.2.9])\n" \
		"\tby mx (MailScanner Milter) with ESMTP id X;\n" \
		"\tThu, 26 Nov 2026 07:00:00 +0000 (UTC)\n" \
		"Subject: s\n\nbody\n"

static void
basic(void **state)
{
	struct qfile	 q;
	char		 err[128];
	const char	*f = "S<a@example.org>\nA<sasl_method=PLAIN>\n"
	    "E<NOTIFY=NEVER>\nO<b@example.com>\nO<c@example.com>\n" HDR;

	(void)state;
	assert_int_equal(read_str(f, &q, err), 0);
	assert_string_equal(q.sender, "a@example.org");
	assert_string_equal(q.auth, "sasl_method=PLAIN");
	assert_int_equal(q.nrcpt, 2);
	assert_string_equal(q.rcpts[0].addr, "b@example.com");
	assert_string_equal(q.rcpts[0].dsn, "NOTIFY=NEVER");
	assert_null(q.rcpts[1].dsn);
	assert_int_equal(q.data_offset, strstr(f, "Received:") - f);
	assert_string_equal(q.helo, "h.example");
	assert_string_equal(q.client_name, "c.example");
	assert_string_equal(q.client_addr, "192.0.2.9");
	assert_int_equal(q.size, (off_t)strlen(f));
	qfile_free(&q);
}

static void
null_sender_ipv6(void **state)
{
	struct qfile	q;
	char		err[128];

	(void)state;
	assert_int_equal(read_str("S<>\nO<p@example.com>\n"
	    "Received: from [IPv6:2001:db8::1] (unknown [IPv6:2001:db8::1])\n"
	    "\n", &q, err), 0);
	assert_string_equal(q.sender, "");
	assert_string_equal(q.client_addr, "2001:db8::1");
	qfile_free(&q);
}

/* The first line that is not exactly an envelope line ends the envelope. */
static void
envelope_ends_at_first_other_line(void **state)
{
	struct qfile	q;
	char		err[128];

	(void)state;
	/* "Subject: <x>" is a header, never a sender. */
	assert_int_equal(read_str("O<b@example.com>\nSubject: <x@evil>\n\n",
	    &q, err), -1);
	assert_string_equal(err, "no S<sender> line");
	/* An S line after a header is message content, not a sender. */
	assert_int_equal(read_str("S<a@x>\nO<b@x>\nX-H: 1\nS<evil@x>\n\n",
	    &q, err), 0);
	assert_string_equal(q.sender, "a@x");
	qfile_free(&q);
	/* A line that starts like one must be one: MailScanner would read
	 * "O<c@x" as recipient c@x, so the file is refused, not cut short. */
	assert_int_equal(read_str("S<a@x>\nO<b@x>\nO<c@x\n\nbody\n", &q, err),
	    -1);
	assert_string_equal(err, "O line: no closing '>'");
	assert_int_equal(read_str("S<a@x>\nO<b@x>\r\n\nbody\n", &q, err), -1);
	assert_string_equal(err, "O line: no closing '>'");
}

static void
unreadable_files(void **state)
{
	struct qfile	 q;
	char		 err[128], big[QFILE_LINE_MAX + 64];
	static const struct {
		const char *data, *why;
	} cases[] = {
		{ "", "no S<sender> line" },
		{ "S<a@x>\n" HDR, "no O<recipient> line" },
		{ "O<b@x>\n" HDR, "no S<sender> line" },
		{ "S<a@x>\nS<b@x>\nO<c@x>\n" HDR, "two S lines" },
		{ "S<a@x>\nO<c@x>\n", "no message after the envelope" },
		{ "S<a@x>\nO<c\x01@x>\n" HDR,
		    "O line: control character in an address" },
		{ "S<a@x>\nO<>\n" HDR, "O line: empty address" },
		{ "S<a@x>\nA<sasl_method=PLAIN>\nA<sasl_method=PLAIN>\n"
		    "O<b@x>\n" HDR, "A line: two A lines" },
		{ "S<a@x>\nA<PLAIN>\nO<b@x>\n" HDR,
		    "A line: not sasl_method=NAME" },
		{ "S<a@x>\nE<>\nO<b@x>\n" HDR, "E line: not NOTIFY= or ORCPT=" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(read_str(cases[i].data, &q, err), -1);
		assert_string_equal(err, cases[i].why);
	}
	/* Binary junk after a valid envelope. */
	{
		const char junk[] = "S<a@x>\nO<b@x>\n\0\0\0\xff";
		int fd = mkfile(junk, sizeof(junk) - 1);

		assert_int_equal(qfile_read(fd, &q, err, sizeof(err)), -1);
		assert_string_equal(err, "binary data after the envelope");
		close(fd);
	}
	/* A NUL where the kind letter goes is not an envelope line (the
	 * fuzzer found strchr("OSEA", '\0') taking it for one). */
	{
		const char nul[] = "S<a@x>\nO<b@x>\n\0<c@x>\nX: y\n\nz\n";
		int fd = mkfile(nul, sizeof(nul) - 1);

		assert_int_equal(qfile_read(fd, &q, err, sizeof(err)), -1);
		assert_string_equal(err, "NUL byte in the first header");
		close(fd);
	}
	/* A NUL inside an envelope line would cut the address short. */
	{
		const char nul[] = "S<a@x>\nO<b@x\0>\n" HDR;
		int fd = mkfile(nul, sizeof(nul) - 1);

		assert_int_equal(qfile_read(fd, &q, err, sizeof(err)), -1);
		assert_string_equal(err, "O line: NUL byte");
		close(fd);
	}
	/* An envelope line longer than we accept. */
	memset(big, 'x', sizeof(big));
	memcpy(big, "S<a@x>\nO<", 9);
	big[sizeof(big) - 2] = '>';
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(read_str(big, &q, err), -1);
	assert_string_equal(err, "envelope line too long");
}

/* E lines MailScanner left after the O lines. */
static void
orphan_dsn(void **state)
{
	struct qfile	q;
	char		err[128];

	(void)state;
	/* One recipient: the orphan is its. */
	assert_int_equal(read_str("S<a@x>\nO<b@x>\nE<NOTIFY=NEVER>\n" HDR, &q,
	    err), 0);
	assert_string_equal(q.rcpts[0].dsn, "NOTIFY=NEVER");
	assert_int_equal(q.dsn_ignored, 0);
	qfile_free(&q);
	/* All orphans equal: every recipient without one gets it. */
	assert_int_equal(read_str("S<a@x>\nE<NOTIFY=DELAY>\nO<b@x>\nO<c@x>\n"
	    "E<NOTIFY=NEVER>\nE<NOTIFY=NEVER>\n" HDR, &q, err), 0);
	assert_string_equal(q.rcpts[0].dsn, "NOTIFY=DELAY");
	assert_string_equal(q.rcpts[1].dsn, "NOTIFY=NEVER");
	qfile_free(&q);
	/* Different orphans: never guess. */
	assert_int_equal(read_str("S<a@x>\nO<b@x>\nO<c@x>\nE<NOTIFY=NEVER>\n"
	    "E<NOTIFY=SUCCESS>\n" HDR, &q, err), 0);
	assert_null(q.rcpts[0].dsn);
	assert_null(q.rcpts[1].dsn);
	assert_int_equal(q.dsn_ignored, 2);
	qfile_free(&q);
}

/* The one check: what the format can carry, and why not. */
static void
addresses(void **state)
{
	static const struct {
		const char *addr, *why;	/* why NULL: accepted */
	} cases[] = {
		{ "a@example.com", NULL },
		{ "postmaster", NULL },
		{ "a@[192.0.2.1]", NULL },
		{ "a@[IPv6:2001:db8::1]", NULL },
		{ "j\xc3\xb6rg@b\xc3\xbc" "cher.example", NULL },
		{ "\xf0\x9f\x93\xa7@example.com", NULL },
		{ "\"john smith\"@example.com", NULL },
		{ "\"a\\\"b\"@example.com", NULL },
		{ "\"a\\ b\"@example.com", NULL },
		{ "\"ab\"", NULL },
		{ "", "empty address" },
		{ "a\x01" "b@x", "control character in an address" },
		{ "a\x7f" "b@x", "control character in an address" },
		{ "\"a\tb\"@x", "tab in an address" },
		{ "a@x\r\nO<b@x", "line break in an address" },
		{ "a@x\n", "line break in an address" },
		{ "j\xffrg@x", "malformed UTF-8 in an address" },
		{ "\xc0\xaf@x", "malformed UTF-8 in an address" },	/* overlong */
		{ "\xed\xa0\x80@x", "malformed UTF-8 in an address" },	/* surrogate */
		{ "\xf4\x90\x80\x80@x", "malformed UTF-8 in an address" },
		{ "\xe2\x82@x", "malformed UTF-8 in an address" },	/* cut */
		{ "a@x> RET=HDRS ENVID=zz", "angle bracket in an address" },
		{ "a@x RET=HDRS", "space outside a quoted local part" },
		{ "a b@x", "space outside a quoted local part" },
		{ "\"a b\"@x y", "space outside a quoted local part" },
		{ "a<b@x", "angle bracket in an address" },
		{ "a>b@x", "angle bracket in an address" },
		{ "\"a<b\"@x", "angle bracket in an address" },
		{ "\"a\\>b\"@x", "angle bracket in an address" },
		{ "a\"b@x", "quote outside a quoted local part" },
		{ "\"ab@x", "unterminated quoted local part" },
		{ "\"ab\\", "backslash at the end of an address" },
		{ "\"a\"b@x", "quoted local part not followed by @" },
	};
	char long_addr[QFILE_ADDR_MAX + 2];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = NULL;

		if (cases[i].why == NULL) {
			if (!qfile_addr_ok(cases[i].addr, &why))
				fail_msg("%zu refused: %s", i, why);
		} else {
			assert_false(qfile_addr_ok(cases[i].addr, &why));
			assert_string_equal(why, cases[i].why);
		}
	}
	memset(long_addr, 'a', sizeof(long_addr));
	long_addr[QFILE_ADDR_MAX] = '\0';
	assert_true(qfile_addr_ok(long_addr, NULL));
	long_addr[QFILE_ADDR_MAX] = 'a';
	long_addr[QFILE_ADDR_MAX + 1] = '\0';
	assert_false(qfile_addr_ok(long_addr, NULL));
}

static void
dsn_parameters(void **state)
{
	static const struct {
		const char *dsn, *why;
	} cases[] = {
		{ "NOTIFY=NEVER", NULL },
		{ "notify=never", NULL },
		{ "NOTIFY=SUCCESS,FAILURE,DELAY", NULL },
		{ "NOTIFY=DELAY ORCPT=rfc822;orig@example.com", NULL },
		{ "ORCPT=rfc822;a+3Db@example.com NOTIFY=FAILURE", NULL },
		{ "ORCPT=utf-8;j\xc3\xb6rg\\x{3D}@example.com", NULL },
		{ "", "not NOTIFY= or ORCPT=" },
		{ "NOTIFY=NEVER RET=HDRS", "not NOTIFY= or ORCPT=" },
		{ "ORCPT=rfc822;a@x ENVID=zz", "not NOTIFY= or ORCPT=" },
		{ "NOTIFY=NEVER ", "not NOTIFY= or ORCPT=" },
		{ "NOTIFY=NEVER  ORCPT=rfc822;a@x", "not NOTIFY= or ORCPT=" },
		{ "NOTIFY=", "not NOTIFY= or ORCPT=" },
		{ "NOTIFY=NEVER,SUCCESS", "NOTIFY=NEVER with another value" },
		{ "NOTIFY=SUCCESS,NEVER", "NOTIFY=NEVER with another value" },
		{ "NOTIFY=SUCCESS,SUCCESS", "NOTIFY= names a value twice" },
		{ "NOTIFY=SUCCESS,", "NOTIFY= is not NEVER or SUCCESS,FAILURE,DELAY" },
		{ "NOTIFY=NEVER>", "NOTIFY= is not NEVER or SUCCESS,FAILURE,DELAY" },
		{ "NOTIFY=NEVER NOTIFY=DELAY", "NOTIFY= twice" },
		{ "ORCPT=rfc822;a@x ORCPT=rfc822;b@x", "ORCPT= twice" },
		{ "ORCPT=rfc822;a=b@x", "ORCPT= is not addr-type;xtext" },
		{ "ORCPT=rfc822;a+b@x", "ORCPT= is not addr-type;xtext" },
		{ "ORCPT=rfc822;a+3", "ORCPT= is not addr-type;xtext" },
		{ "ORCPT=rfc822;", "ORCPT= is not addr-type;xtext" },
		{ "ORCPT=;a@x", "ORCPT= is not addr-type;xtext" },
		{ "ORCPT=a@x", "ORCPT= is not addr-type;xtext" },
		{ "ORCPT=rfc822;j\xc3\xb6rg@x", "ORCPT= is not addr-type;xtext" },
		{ "ORCPT=utf-8;a=b@x", "ORCPT= is not addr-type;xtext" },
		{ "NOTIFY=NEVER\tORCPT=rfc822;a@x",
		    "control character or bad UTF-8 in DSN parameters" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *why = NULL;

		if (cases[i].why == NULL) {
			if (!qfile_dsn_ok(cases[i].dsn, &why))
				fail_msg("%zu refused: %s", i, why);
		} else {
			assert_false(qfile_dsn_ok(cases[i].dsn, &why));
			assert_string_equal(why, cases[i].why);
		}
	}
	assert_true(qfile_auth_ok("PLAIN", NULL));
	assert_true(qfile_auth_ok("scram-sha-256", NULL));
	assert_false(qfile_auth_ok("", NULL));
	assert_false(qfile_auth_ok("PLAIN>", NULL));
	assert_false(qfile_auth_ok("A B", NULL));
	assert_false(qfile_auth_ok("ABCDEFGHIJKLMNOPQRSTU", NULL));
}

/* What the writer writes, the reader reads back field by field. */
static void
writer_reader_round_trip(void **state)
{
	struct qfile	 q, back;
	struct qrcpt	 rcpts[3] = {
		{ "\"john smith\"@example.com", "NOTIFY=SUCCESS,FAILURE "
		    "ORCPT=rfc822;+22john+20smith+22@example.com" },
		{ "j\xc3\xb6rg@example.com", NULL },
		{ "c@example.com", "NOTIFY=NEVER" },
	};
	unsigned char	 chosen[3] = { 1, 0, 1 };
	char		*buf = NULL, err[128];
	size_t		 len = 0;
	const char	*why = NULL;
	FILE		*f = open_memstream(&buf, &len);
	int		 fd;

	(void)state;
	memset(&q, 0, sizeof(q));
	q.sender = "";
	q.auth = "sasl_method=CRAM-MD5";
	q.rcpts = rcpts;
	q.nrcpt = 3;
	assert_non_null(f);
	assert_int_equal(qfile_put_envelope(f, &q, chosen, &why), 0);
	fputs(HDR, f);
	assert_int_equal(fclose(f), 0);
	/* A last: see auth_line_is_all_that_leaks. */
	assert_string_equal(buf, "S<>\n"
	    "E<NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;+22john+20smith+22"
	    "@example.com>\nO<\"john smith\"@example.com>\n"
	    "E<NOTIFY=NEVER>\nO<c@example.com>\nA<sasl_method=CRAM-MD5>\n"
	    HDR);
	fd = mkfile(buf, len);
	assert_int_equal(qfile_read(fd, &back, err, sizeof(err)), 0);
	close(fd);
	assert_string_equal(back.sender, "");
	assert_string_equal(back.auth, "sasl_method=CRAM-MD5");
	assert_int_equal(back.nrcpt, 2);
	assert_string_equal(back.rcpts[0].addr, rcpts[0].addr);
	assert_string_equal(back.rcpts[0].dsn, rcpts[0].dsn);
	assert_string_equal(back.rcpts[1].addr, rcpts[2].addr);
	assert_string_equal(back.rcpts[1].dsn, rcpts[2].dsn);
	assert_int_equal(back.data_offset, strstr(buf, "Received:") - buf);
	qfile_free(&back);
	free(buf);
}

/*
 * MailScanner's body reader (the one that makes quarantine and archive
 * copies) skips only lines starting "S<", "O<" or "E<" and keeps the
 * rest, from the first other line on.  With the A line anywhere but
 * last, recipients after it would land in those copies: the A line must
 * be the only envelope line it keeps.
 */
static const char *
mailscanner_body(const char *file)
{
	while ((file[0] == 'S' || file[0] == 'O' || file[0] == 'E') &&
	    file[1] == '<')
		file = strchr(file, '\n') + 1;
	return file;
}

static void
auth_line_is_all_that_leaks(void **state)
{
	struct qfile	 q;
	struct qrcpt	 rcpts[2] = {
		{ "a@example.com", "NOTIFY=NEVER" },
		{ "b@example.com", NULL },
	};
	char		*buf = NULL;
	size_t		 len = 0;
	const char	*why = NULL;
	FILE		*f = open_memstream(&buf, &len);

	(void)state;
	memset(&q, 0, sizeof(q));
	q.sender = "s@example.org";
	q.auth = "sasl_method=PLAIN";
	q.rcpts = rcpts;
	q.nrcpt = 2;
	assert_non_null(f);
	assert_int_equal(qfile_put_envelope(f, &q, NULL, &why), 0);
	fputs(HDR, f);
	assert_int_equal(fclose(f), 0);
	assert_string_equal(mailscanner_body(buf),
	    "A<sasl_method=PLAIN>\n" HDR);
	free(buf);
}

/* Header fields of the message, found in any case, never in the body. */
static void
has_field(void **state)
{
	struct qfile	 q;
	char		 err[128], *big, *f;
	size_t		 n = 20000;
	int		 fd;

	(void)state;
	big = malloc(n + 512);
	assert_non_null(big);
	/* A header line longer than a read, then the field, then the body. */
	f = big + sprintf(big, "S<a@x>\nO<b@x>\nReceived: from h (c [192.0.2.9])"
	    "\nX-Long: ");
	memset(f, 'x', n);
	f += n;
	sprintf(f, "\nx-org-mailscanner-relay-reject: 550 no\n"
	    "Subject: s\n\nX-Body-MailScanner: not a header\n");
	fd = mkfile(big, strlen(big));
	assert_int_equal(qfile_read(fd, &q, err, sizeof(err)), 0);
	assert_int_equal(qfile_has_field(fd, &q,
	    "X-Org-MailScanner-Relay-Reject"), 1);
	assert_int_equal(qfile_has_field(fd, &q, "X-Org-MailScanner"), 0);
	assert_int_equal(qfile_has_field(fd, &q, "X-Body-MailScanner"), 0);
	assert_int_equal(qfile_has_field(fd, &q, "Subject"), 1);
	assert_int_equal(qfile_has_field(fd, &q, "xxxxxxxx"), 0);
	qfile_free(&q);
	close(fd);
	free(big);
}

/* The writer refuses what the reader would refuse, with the reason. */
static void
writer_refuses(void **state)
{
	char		*buf = NULL;
	size_t		 len = 0;
	const char	*why = NULL;
	FILE		*f = open_memstream(&buf, &len);

	(void)state;
	assert_non_null(f);
	assert_int_equal(qfile_put_sender(f, "", &why), 0);
	assert_int_equal(qfile_put_sender(f, "s@x> RET=HDRS", &why), -1);
	assert_string_equal(why, "angle bracket in an address");
	assert_int_equal(qfile_put_rcpt(f, "\"a\tb\"@x", NULL, &why), -1);
	assert_string_equal(why, "tab in an address");
	assert_int_equal(qfile_put_rcpt(f, "r@x", "NOTIFY=NEVER RET=HDRS",
	    &why), -1);
	assert_string_equal(why, "not NOTIFY= or ORCPT=");
	assert_int_equal(qfile_put_auth(f, "PLAIN>\nO<evil@x", &why), -1);
	assert_string_equal(why, "SASL method name not A-Z 0-9 - _");
	assert_int_equal(fclose(f), 0);
	/* Nothing of a refused line was written. */
	assert_string_equal(buf, "S<>\n");
	free(buf);
}

/* QMQP's internal form: the quoted local part unquoted, nothing else. */
static void
internal_form(void **state)
{
	static const char *const cases[][2] = {
		{ "\"john smith\"@example.com", "john smith@example.com" },
		{ "\"a\\\"b\"@x", "a\"b@x" },
		{ "\"a\\ b\\\\\"@x", "a b\\@x" },
		{ "\"ab\"", "ab" },
		{ "plain@example.com", "plain@example.com" },
		{ "j\xc3\xb6rg@x", "j\xc3\xb6rg@x" },
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(qfile_addr_ok(cases[i][0], NULL));
		qfile_addr_internal(cases[i][0], out);
		assert_string_equal(out, cases[i][1]);
	}
}

/* ESMTP parameters smuggled into milterout (issue 13): refused. */
static void
injection_refused(void **state)
{
	struct qfile	 q;
	char		 err[128];
	static const struct {
		const char *data, *why;
	} cases[] = {
		{ "S<s@x> RET=HDRS ENVID=zz>\nO<r@x>\n" HDR,
		    "S line: angle bracket in an address" },
		{ "S<s@x>\nO<r@x NOTIFY=NEVER>\n" HDR,
		    "O line: space outside a quoted local part" },
		{ "S<s@x>\nE<NOTIFY=NEVER RET=HDRS>\nO<r@x>\n" HDR,
		    "E line: not NOTIFY= or ORCPT=" },
		{ "S<s@x>\nE<ORCPT=rfc822;a=b@x>\nO<r@x>\n" HDR,
		    "E line: ORCPT= is not addr-type;xtext" },
		{ "S<s@x>\nO<r@x>\nE<NOTIFY=NEVER ENVID=x>\n" HDR,
		    "E line: not NOTIFY= or ORCPT=" },
		{ "S<<s@x>\nO<r@x>\n" HDR,
		    "S line: angle bracket in an address" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(read_str(cases[i].data, &q, err), -1);
		assert_string_equal(err, cases[i].why);
	}
}

static void
names(void **state)
{
	(void)state;
	assert_true(qfile_name_ok("40269A720F2.AAEE6"));
	assert_true(qfile_name_ok("4Xk2Lm5pQzJ3F9"));
	assert_true(qfile_name_ok("a_b.c_d"));
	assert_false(qfile_name_ok("temp-40269A720F2"));
	assert_false(qfile_name_ok("a.b.c"));
	assert_false(qfile_name_ok(".a"));
	assert_false(qfile_name_ok("a."));
	assert_false(qfile_name_ok(""));
	assert_false(qfile_name_ok("a b"));
	assert_false(qfile_name_ok("../x"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(basic),
		cmocka_unit_test(null_sender_ipv6),
		cmocka_unit_test(envelope_ends_at_first_other_line),
		cmocka_unit_test(unreadable_files),
		cmocka_unit_test(orphan_dsn),
		cmocka_unit_test(addresses),
		cmocka_unit_test(dsn_parameters),
		cmocka_unit_test(writer_reader_round_trip),
		cmocka_unit_test(auth_line_is_all_that_leaks),
		cmocka_unit_test(has_field),
		cmocka_unit_test(writer_refuses),
		cmocka_unit_test(injection_refused),
		cmocka_unit_test(internal_form),
		cmocka_unit_test(names),
	};

	return cmocka_run_group_tests_name("qfile", tests, NULL, NULL);
}
