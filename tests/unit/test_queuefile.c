/*
 * The queue file writer: the head capture builds (golden files under
 * data/queuefile/) and the spooler's commit path in a scratch directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "capture.h"
#include "spool.h"

#define WHEN	1795000000	/* Wed, 18 Nov 2026 11:06:40 UTC */

static char *
slurp(const char *path, size_t *len)
{
	FILE	*f = fopen(path, "rb");
	char	*buf;
	long	 n;

	assert_non_null(f);
	assert_int_equal(fseek(f, 0, SEEK_END), 0);
	n = ftell(f);
	rewind(f);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
	buf[n] = '\0';
	fclose(f);
	*len = (size_t)n;
	return buf;
}

static void
check_golden(const struct envelope *e, const char *name)
{
	char	 path[256];
	size_t	 len, want_len;
	char	*got = received_head(e, &len);
	char	*want;

	snprintf(path, sizeof(path), "data/queuefile/%s", name);
	want = slurp(path, &want_len);
	assert_non_null(got);
	assert_string_equal(got, want);
	assert_int_equal(len, want_len);
	free(got);
	free(want);
}

static struct envelope
base_envelope(struct qrcpt *r, size_t n)
{
	struct envelope e;

	memset(&e, 0, sizeof(e));
	e.queue_id = "4F2A1B3C";
	e.sender = "sender@example.org";
	e.rcpts = r;
	e.nrcpt = n;
	e.helo = "helo.example.org";
	e.client_name = "client.example.org";
	e.client_addr = "192.0.2.1";
	e.by_host = "mx.example.com";
	e.ehlo = 1;
	e.when = WHEN;
	return e;
}

/* RFC 3848: ESMTP iff EHLO; S and A only with ESMTP, as Postfix says. */
static void
protocol_words(void **state)
{
	static const struct {
		int		 ehlo, tls, auth;
		const char	*word;
	} t[] = {
		{ 0, 0, 0, "SMTP" }, { 0, 1, 0, "SMTP" }, { 0, 0, 1, "SMTP" },
		{ 0, 1, 1, "SMTP" }, { 1, 0, 0, "ESMTP" }, { 1, 1, 0, "ESMTPS" },
		{ 1, 0, 1, "ESMTPA" }, { 1, 1, 1, "ESMTPSA" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++)
		assert_string_equal(received_protocol(t[i].ehlo, t[i].tls,
		    t[i].auth), t[i].word);
}

/* A plain HELO session: "with SMTP", not ESMTP. */
static void
helo_says_smtp(void **state)
{
	struct qrcpt	 r[] = { { "rcpt@example.com", NULL } };
	struct envelope	 e = base_envelope(r, 1);
	size_t		 len;
	char		*got;

	(void)state;
	e.ehlo = 0;
	got = received_head(&e, &len);
	assert_non_null(got);
	assert_non_null(strstr(got, "(MailScanner Milter) with SMTP id "
	    "4F2A1B3C\n"));
	free(got);
}

static void
golden_basic(void **state)
{
	struct qrcpt	r[] = { { "rcpt@example.com", NULL } };
	struct envelope	e = base_envelope(r, 1);

	(void)state;
	check_golden(&e, "basic.ref");
}

static void
golden_tls_auth_dsn(void **state)
{
	struct qrcpt r[] = {
		{ "a@example.com",
		  "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;orig@example.com" },
		{ "b@example.com", NULL },
		{ "c@example.com", "NOTIFY=NEVER" },
	};
	struct envelope e = base_envelope(r, 3);

	(void)state;
	e.queue_id = "4Xk2Lm5pQzJ3F9";
	e.auth_type = "PLAIN";
	e.tls_version = "TLSv1.3";
	e.cipher = "TLS_AES_256_GCM_SHA384";
	e.cipher_bits = "256";
	check_golden(&e, "tls-auth-dsn.ref");
}

static void
golden_null_sender_ipv6(void **state)
{
	struct qrcpt	r[] = { { "postmaster@example.com", NULL } };
	struct envelope	e = base_envelope(r, 1);

	(void)state;
	e.queue_id = "4F2A1B3D";
	e.sender = "";
	e.helo = NULL;		/* the client never said HELO */
	e.client_name = "unknown";
	e.client_addr = "IPv6:2001:db8::25";
	check_golden(&e, "null-sender-ipv6.ref");
}

static void
golden_tls_with_client_cert(void **state)
{
	struct qrcpt	r[] = { { "r@example.com", NULL } };
	struct envelope	e = base_envelope(r, 1);

	(void)state;
	e.queue_id = "4F2A1B3E";
	e.sender = "s@example.org";
	e.tls_version = "TLSv1.2";
	e.cipher = "ECDHE-RSA-AES128-GCM-SHA256";
	e.cipher_bits = "128";
	e.client_cert = 1;
	check_golden(&e, "tls-client-cert.ref");
}

/* A line break anywhere would forge an envelope line or a header. */
static void
line_breaks_refused(void **state)
{
	struct qrcpt	r[] = { { "rcpt@example.com", NULL } };
	struct envelope	e;
	size_t		len;

	(void)state;
	e = base_envelope(r, 1);
	e.sender = "a@b\nO<evil@example.net>";
	assert_null(received_head(&e, &len));
	e = base_envelope(r, 1);
	e.helo = "x\r\nX-Injected: yes";
	assert_null(received_head(&e, &len));
	r[0].dsn = "NOTIFY=NEVER\nO<evil@example.net>";
	e = base_envelope(r, 1);
	assert_null(received_head(&e, &len));
	r[0].dsn = NULL;
	e = base_envelope(r, 0);	/* no recipient, no queue file */
	assert_null(received_head(&e, &len));
}

/* --- the spooler's commit path ---------------------------------------- */

struct scratch {
	char		 path[64];
	struct spool_dir dir;
};

static int
scratch_setup(void **state)
{
	struct scratch *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return -1;
	snprintf(s->path, sizeof(s->path), "/tmp/msm-unit-XXXXXX");
	if (mkdtemp(s->path) == NULL)
		return -1;
	snprintf(s->dir.path, sizeof(s->dir.path), "%s", s->path);
	s->dir.fd = -1;
	s->dir.mode = 0600;
	s->dir.queue_type = MSM_QUEUE_SHORT;
	*state = s;
	return 0;
}

static int
scratch_teardown(void **state)
{
	struct scratch	*s = *state;
	DIR		*d = opendir(s->path);
	struct dirent	*de;

	while (d != NULL && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			unlinkat(dirfd(d), de->d_name, 0);
	if (d != NULL)
		closedir(d);
	rmdir(s->path);
	if (s->dir.fd != -1)
		close(s->dir.fd);
	free(s);
	return 0;
}

static int
count_entries(const char *path, const char *prefix)
{
	DIR		*d = opendir(path);
	struct dirent	*de;
	int		 n = 0;

	assert_non_null(d);
	while ((de = readdir(d)) != NULL)
		if (de->d_name[0] != '.' &&
		    strncmp(de->d_name, prefix, strlen(prefix)) == 0)
			n++;
	closedir(d);
	return n;
}

static void
commit_path(void **state)
{
	struct scratch		*s = *state;
	struct spool_file	 f;
	char			 reason[256], path[128];
	struct stat		 st;
	size_t			 len;
	char			*data;

	assert_int_equal(spool_create(&s->dir, &f, "ABC123", reason,
	    sizeof(reason)), 0);
	assert_int_equal(count_entries(s->path, SPOOL_TEMP_PREFIX), 1);
	assert_int_equal(spool_write(&f, "S<a@b>\n", 7, reason,
	    sizeof(reason)), 0);
	assert_int_equal(spool_write(&f, "O<c@d>\n", 7, reason,
	    sizeof(reason)), 0);
	/* Nothing visible under the queue id until it is published. */
	snprintf(path, sizeof(path), "%s/ABC123", s->path);
	assert_int_equal(stat(path, &st), -1);
	assert_int_equal(spool_publish(&s->dir, &f, reason, sizeof(reason)), 0);
	assert_int_equal(spool_sync_dir(&s->dir, reason, sizeof(reason)), 0);
	spool_done(&f);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(count_entries(s->path, SPOOL_TEMP_PREFIX), 0);
	data = slurp(path, &len);
	assert_string_equal(data, "S<a@b>\nO<c@d>\n");
	free(data);
}

/* A name that is taken is never overwritten: a fresh id is used. */
static void
taken_name_gets_fresh_id(void **state)
{
	struct scratch		*s = *state;
	struct spool_file	 f;
	char			 reason[256], path[128];
	size_t			 len;
	char			*data;
	int			 fd;

	snprintf(path, sizeof(path), "%s/TAKEN1", s->path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "old\n", 4), 4);
	close(fd);
	assert_int_equal(spool_create(&s->dir, &f, "TAKEN1", reason,
	    sizeof(reason)), 0);
	assert_int_equal(spool_write(&f, "new\n", 4, reason, sizeof(reason)),
	    0);
	assert_int_equal(spool_publish(&s->dir, &f, reason, sizeof(reason)), 0);
	assert_string_not_equal(f.queue_id, "TAKEN1");
	spool_done(&f);
	data = slurp(path, &len);
	assert_string_equal(data, "old\n");
	free(data);
	snprintf(path, sizeof(path), "%s/%s", s->path, f.queue_id);
	data = slurp(path, &len);
	assert_string_equal(data, "new\n");
	free(data);
}

static void
discard_and_cleanup(void **state)
{
	struct scratch		*s = *state;
	struct spool_file	 f, g;
	char			 reason[256];

	assert_int_equal(spool_create(&s->dir, &f, "GONE1", reason,
	    sizeof(reason)), 0);
	spool_discard(&s->dir, &f);
	assert_int_equal(count_entries(s->path, ""), 0);
	/* A crashed spooler's temp file is removed at the next start. */
	assert_int_equal(spool_create(&s->dir, &g, "LEFT1", reason,
	    sizeof(reason)), 0);
	close(g.fd);
	assert_int_equal(spool_clean_temp(&s->dir), 1);
	assert_int_equal(count_entries(s->path, ""), 0);
}

static void
missing_directory_reports(void **state)
{
	struct scratch		*s = *state;
	struct spool_file	 f;
	char			 reason[256];

	(void)s;
	struct spool_dir d = { .fd = -1, .path = "/nonexistent/milterin",
	    .mode = 0600 };
	assert_int_equal(spool_create(&d, &f, "X1", reason, sizeof(reason)),
	    -1);
	assert_non_null(strstr(reason, "/nonexistent/milterin"));
	assert_non_null(strstr(reason, "No such file"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(protocol_words),
		cmocka_unit_test(helo_says_smtp),
		cmocka_unit_test(golden_basic),
		cmocka_unit_test(golden_tls_auth_dsn),
		cmocka_unit_test(golden_null_sender_ipv6),
		cmocka_unit_test(golden_tls_with_client_cert),
		cmocka_unit_test(line_breaks_refused),
		cmocka_unit_test_setup_teardown(commit_path, scratch_setup,
		    scratch_teardown),
		cmocka_unit_test_setup_teardown(taken_name_gets_fresh_id,
		    scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(discard_and_cleanup,
		    scratch_setup, scratch_teardown),
		cmocka_unit_test_setup_teardown(missing_directory_reports,
		    scratch_setup, scratch_teardown),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	if (sodium_init() == -1)
		return 1;
	return cmocka_run_group_tests_name("queuefile", tests, NULL, NULL);
}
