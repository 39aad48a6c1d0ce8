/*
 * The strict queue file reader: envelope lines, where the envelope ends,
 * E lines and orphans, our Received header, and what makes a file
 * unreadable.  Each case is a file written to a memfd.
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
	/* A line that starts like one but does not end with '>' ends it. */
	assert_int_equal(read_str("S<a@x>\nO<b@x>\nO<c@x\n\nbody\n", &q, err),
	    0);
	assert_int_equal(q.nrcpt, 1);
	qfile_free(&q);
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
		{ "S<a@x>\nO<c\x01@x>\n" HDR, "no O<recipient> line" },
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
		cmocka_unit_test(names),
	};

	return cmocka_run_group_tests_name("qfile", tests, NULL, NULL);
}
