/*
 * Differential harness for the queue file envelope: a random envelope
 * (sender, SASL method, recipients with DSN parameters) is written by
 * capture's writer (received_head) or the requeue writer
 * (qfile_put_envelope), and also by a naive writer that checks nothing;
 * each file is read back with qfile_read.  The invariant: the shared
 * check says ok  <=>  the writers write it  <=>  it reads back exactly,
 * field by field; and whatever the reader accepts passes the check.
 *
 * Input: fields separated by NUL bytes.  Field 0 is control bits
 * (byte 0: 1 = has a SASL method, 2 = use received_head; byte 1+i: 1 =
 * recipient i has DSN parameters); then the sender, the method if any,
 * then each recipient and its DSN parameters if flagged.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qfile.h"
#include "../../capture/capture.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAXF	40
#define BODY	"Subject: x\n\nbody\n"
#define RCVD	"Received: from h.example (c.example [192.0.2.1])\n"

struct input {
	const char	*sender, *method;
	struct qrcpt	 r[MAXF];
	struct qrcpt	 cr[MAXF];
	size_t		 nrcpt;
	int		 use_capture;
};

static void
parse_input(char *buf, size_t size, struct input *in)
{
	char		*f[MAXF + 3];
	const char	*ctl;
	size_t		 nf = 0, k, ctllen;

	for (char *p = buf; nf < MAXF + 3 && p <= buf + size; ) {
		f[nf++] = p;
		p += strlen(p) + 1;
	}
	memset(in, 0, sizeof(*in));
	ctl = f[0];
	ctllen = strlen(ctl);
	in->sender = nf > 1 ? f[1] : "";
	k = 2;
	if (ctllen > 0 && (ctl[0] & 1) && k < nf)
		in->method = f[k++];
	in->use_capture = ctllen > 0 && (ctl[0] & 2);
	while (k < nf && in->nrcpt < MAXF) {
		size_t i = in->nrcpt++;

		in->r[i].addr = f[k++];
		if (1 + i < ctllen && (ctl[1 + i] & 1) && k < nf)
			in->r[i].dsn = f[k++];
		in->cr[i].addr = in->r[i].addr;
		in->cr[i].dsn = in->r[i].dsn;
	}
}

static int
check(const struct input *in)
{
	if (in->sender[0] != '\0' && !qfile_addr_ok(in->sender, NULL))
		return 0;
	if (in->method != NULL && !qfile_auth_ok(in->method, NULL))
		return 0;
	if (in->nrcpt == 0)
		return 0;
	for (size_t i = 0; i < in->nrcpt; i++)
		if (!qfile_addr_ok(in->r[i].addr, NULL) || (in->r[i].dsn !=
		    NULL && !qfile_dsn_ok(in->r[i].dsn, NULL)))
			return 0;
	return 1;
}

static int
same(const char *a, const char *b)
{
	return a == NULL ? b == NULL : b != NULL && strcmp(a, b) == 0;
}

/* Read buf back; 1 when every field is exactly the input's. */
static int
read_back(const struct input *in, const char *buf, size_t len,
    size_t envlen)
{
	struct qfile	 q;
	char		 err[128];
	int		 fd = memfd_create("fuzz-roundtrip", 0), exact;

	if (fd == -1 || write(fd, buf, len) != (ssize_t)len)
		abort();
	if (qfile_read(fd, &q, err, sizeof(err)) != 0) {
		close(fd);
		if (err[0] == '\0')
			abort();
		return 0;
	}
	close(fd);
	/* Whatever the reader lets through, the check accepts. */
	if ((q.sender[0] != '\0' && !qfile_addr_ok(q.sender, NULL)) ||
	    (q.auth != NULL && (strncmp(q.auth, QFILE_AUTH_PREFIX, 12) != 0 ||
	    !qfile_auth_ok(q.auth + 12, NULL))))
		abort();
	for (size_t i = 0; i < q.nrcpt; i++)
		if (!qfile_addr_ok(q.rcpts[i].addr, NULL) ||
		    (q.rcpts[i].dsn != NULL &&
		    !qfile_dsn_ok(q.rcpts[i].dsn, NULL)))
			abort();
	exact = strcmp(q.sender, in->sender) == 0 &&
	    (q.auth == NULL ? in->method == NULL : in->method != NULL &&
	    strcmp(q.auth + 12, in->method) == 0) &&
	    q.nrcpt == in->nrcpt && q.data_offset == (off_t)envlen;
	for (size_t i = 0; exact && i < q.nrcpt; i++)
		exact = strcmp(q.rcpts[i].addr, in->r[i].addr) == 0 &&
		    same(q.rcpts[i].dsn, in->r[i].dsn);
	qfile_free(&q);
	return exact;
}

/* The old writer: lines as they come, no check at all. */
static char *
naive(const struct input *in, size_t *len, size_t *envlen)
{
	char	*buf = NULL;
	FILE	*f = open_memstream(&buf, len);

	if (f == NULL)
		abort();
	fprintf(f, "S<%s>\n", in->sender);
	for (size_t i = 0; i < in->nrcpt; i++) {
		if (in->r[i].dsn != NULL)
			fprintf(f, "E<%s>\n", in->r[i].dsn);
		fprintf(f, "O<%s>\n", in->r[i].addr);
	}
	/* A last, where MailScanner's body reader shows only it. */
	if (in->method != NULL)
		fprintf(f, "A<" QFILE_AUTH_PREFIX "%s>\n", in->method);
	fflush(f);
	*envlen = *len;
	fputs(RCVD BODY, f);
	if (fclose(f) != 0)
		abort();
	return buf;
}

/*
 * One of the real writers; NULL when it refuses.  What it writes must be
 * the naive envelope (nenv, nenvlen bytes) byte for byte, then our
 * Received header.
 */
static char *
real(const struct input *in, size_t *len, const char *nenv, size_t nenvlen)
{
	char	*buf = NULL, *full;
	size_t	 size = 0;

	if (in->use_capture) {
		struct envelope e;

		memset(&e, 0, sizeof(e));
		e.queue_id = "FUZZ1";
		e.sender = in->sender;
		e.auth_type = in->method;
		e.rcpts = (struct qrcpt *)in->cr;
		e.nrcpt = in->nrcpt;
		e.helo = "h.example";
		e.client_name = "c.example";
		e.client_addr = "192.0.2.1";
		e.by_host = "mx.example";
		e.when = 1795000000;
		if ((buf = received_head(&e, &size)) == NULL)
			return NULL;
	} else {
		struct qfile	 q;
		char		*auth = NULL;
		const char	*why;
		FILE		*f = open_memstream(&buf, &size);
		int		 rc;

		if (f == NULL)
			abort();
		memset(&q, 0, sizeof(q));
		q.sender = (char *)in->sender;
		if (in->method != NULL && asprintf(&auth, QFILE_AUTH_PREFIX
		    "%s", in->method) == -1)
			abort();
		q.auth = auth;
		q.rcpts = (struct qrcpt *)in->r;
		q.nrcpt = in->nrcpt;
		rc = qfile_put_envelope(f, &q, NULL, &why);
		fputs(RCVD, f);
		free(auth);
		if (fclose(f) != 0)
			abort();
		if (rc == -1 || in->nrcpt == 0) {
			free(buf);
			return NULL;
		}
	}
	if (size < nenvlen + 15 || memcmp(buf, nenv, nenvlen) != 0 ||
	    memcmp(buf + nenvlen, "Received: from ", 15) != 0)
		abort();		/* not the envelope lines we expect */
	if ((full = malloc(size + sizeof(BODY))) == NULL)
		abort();
	memcpy(full, buf, size);
	memcpy(full + size, BODY, sizeof(BODY));
	*len = size + sizeof(BODY) - 1;
	free(buf);
	return full;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input	 in;
	char		*buf = malloc(size + 1), *out, *nout;
	size_t		 len, nlen, envlen;
	int		 ok;

	if (buf == NULL)
		abort();
	memcpy(buf, data, size);
	buf[size] = '\0';
	parse_input(buf, size, &in);
	ok = check(&in);

	nout = naive(&in, &nlen, &envlen);
	if (read_back(&in, nout, nlen, envlen) != ok)
		abort();		/* the reader and the check disagree */

	out = real(&in, &len, nout, envlen);
	if ((out != NULL) != ok)
		abort();		/* the writer and the check disagree */
	if (out != NULL && !read_back(&in, out, len, envlen))
		abort();		/* written, but not read back exactly */
	free(out);
	free(nout);
	free(buf);
	return 0;
}
