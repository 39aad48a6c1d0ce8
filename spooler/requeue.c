/*
 * Requeue: the relay hands back a milterout file that the MTA rejected
 * permanently, as an open descriptor.  We write its rejected recipients
 * into milterin with MailScanner's X-<org-name>-MailScanner-Relay-Reject
 * header right after the envelope (where MailScanner looks for it), so
 * that MailScanner quarantines it.  The relay is not trusted: the file is
 * re-read with the strict reader and every index is checked.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "qfile.h"
#include "queueid.h"
#include "spool.h"

/* The reply as a header value: printable ASCII only, one line. */
static void
clean_reply(const char *in, char *out, size_t size)
{
	size_t n = 0;

	for (; *in != '\0' && n + 1 < size; in++)
		out[n++] = (*in >= 0x20 && *in < 0x7f) ? *in : ' ';
	out[n] = '\0';
}

static char *
build_head(const struct qfile *q, const char *org, const char *reply,
    const unsigned char *chosen, size_t *len)
{
	char	*buf = NULL;
	FILE	*f = open_memstream(&buf, len);
	char		 clean[IPC_REPLY_MAX];
	const char	*why;
	int		 bad;

	if (f == NULL)
		return NULL;
	/* What qfile_read accepted, qfile_put_envelope writes back. */
	bad = qfile_put_envelope(f, q, chosen, &why) == -1;
	clean_reply(reply, clean, sizeof(clean));
	fprintf(f, QFILE_REJECT_FIELD ": %s\n", org, clean);
	bad |= ferror(f);
	if (fclose(f) != 0 || bad) {
		free(buf);
		return NULL;
	}
	return buf;
}

static int
copy_rest(int fd, off_t off, struct spool_file *sf, char *reason,
    size_t rlen)
{
	char	 buf[65536];
	ssize_t	 n;

	while ((n = pread(fd, buf, sizeof(buf), off)) > 0) {
		if (spool_write(sf, buf, (size_t)n, reason, rlen) == -1)
			return -1;
		off += n;
	}
	if (n < 0) {
		snprintf(reason, rlen, "reading the rejected file: %s",
		    strerror(errno));
		return -1;
	}
	return 0;
}

int
spool_requeue(struct spool_dir *d, const char *org, int fd,
    const struct ipc_requeue *rq, const uint32_t *idx,
    struct ipc_committed *done, char *reason, size_t rlen)
{
	struct qfile		 q;
	struct spool_file	 sf;
	unsigned char		*chosen = NULL;
	char			 qid[QUEUEID_MAX], *head = NULL;
	size_t			 hlen;

	if (qfile_read(fd, &q, reason, rlen) != 0)
		return -1;
	if (rq->nrcpt == 0 || (chosen = calloc(q.nrcpt, 1)) == NULL)
		goto bad_list;
	for (uint32_t i = 0; i < rq->nrcpt; i++) {
		if (idx[i] >= q.nrcpt || chosen[idx[i]])
			goto bad_list;
		chosen[idx[i]] = 1;
	}
	snprintf(qid, sizeof(qid), "%s", rq->queue_id);
	if (!queueid_valid(qid) && queueid_new(d->queue_type, qid,
	    sizeof(qid)) == -1)
		goto bad_list;
	if ((head = build_head(&q, org, rq->reply, chosen, &hlen)) == NULL) {
		snprintf(reason, rlen, "cannot build the envelope (out of "
		    "memory, or a value qfile_read should have refused)");
		goto fail;
	}
	if (spool_create(d, &sf, qid, reason, rlen) == -1)
		goto fail;
	if (spool_write(&sf, head, hlen, reason, rlen) == -1 ||
	    copy_rest(fd, q.data_offset, &sf, reason, rlen) == -1 ||
	    spool_publish(d, &sf, reason, rlen) == -1 ||
	    spool_sync_dir(d, reason, rlen) == -1) {
		spool_discard(d, &sf);
		goto fail;
	}
	memset(done, 0, sizeof(*done));
	snprintf(done->queue_id, sizeof(done->queue_id), "%s", sf.queue_id);
	done->size = sf.size;
	spool_audit_commit(d, &sf);		/* audit.c */
	spool_done(&sf);
	free(head);
	free(chosen);
	qfile_free(&q);
	return 0;
bad_list:
	snprintf(reason, rlen, "bad recipient list from the relay");
fail:
	free(head);
	free(chosen);
	qfile_free(&q);
	return -1;
}
