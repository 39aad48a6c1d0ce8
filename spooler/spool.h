/*
 * The milterin writer: one temp file per message in progress, made durable
 * and renamed into place on commit.  Knows nothing about IPC.
 */
#ifndef MSM_SPOOL_H
#define MSM_SPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "ipc.h"

#define SPOOL_TEMP_PREFIX	"temp-msm-"

struct spool_dir {
	int	 fd;			/* milterin, O_DIRECTORY; -1 if not open */
	char	 path[MSM_PATH_LEN];
	int	 queue_type;
	unsigned mode;			/* 0600, or 0640 with a work group */
	int	 audit;			/* SPOOL_AUDIT_*: commit records */
	int	 scan;			/* Milter Full Scanner: files are
					   opened read-write (clamd reads
					   them through FDPASS, we through
					   pread for INSTREAM) and never
					   renamed */
};

struct spool_tap;

struct spool_file {
	int	 fd;			/* temp file; -1 when none */
	char	 temp_name[64];
	char	 queue_id[QUEUEID_MAX];
	uint64_t size;
	int	 renamed;		/* visible under queue_id, not yet synced */
	struct spool_tap *tap;		/* digest and envelope, for the audit */
};

/* (Re)open the directory; 0 or -1 with errno. */
int	spool_open_dir(struct spool_dir *d);
/* Remove temp files a previous spooler left behind; returns how many. */
int	spool_clean_temp(struct spool_dir *d);

/* Create the temp file for queue_id.  0, or -1 with reason set. */
int	spool_create(struct spool_dir *d, struct spool_file *f,
	    const char *queue_id, char *reason, size_t rlen);
int	spool_write(struct spool_file *f, const void *p, size_t len,
	    char *reason, size_t rlen);
/*
 * fsync the file and rename it into place under its queue id (or a fresh
 * one when the name is taken).  The caller then syncs the directory with
 * spool_sync_dir once for every file it renamed, before anyone is told.
 */
int	spool_publish(struct spool_dir *d, struct spool_file *f,
	    char *reason, size_t rlen);
/* The two halves of spool_publish: step 3, then step 4. */
int	spool_sync_file(struct spool_file *f, char *reason, size_t rlen);
int	spool_rename(struct spool_dir *d, struct spool_file *f,
	    char *reason, size_t rlen);
int	spool_sync_dir(struct spool_dir *d, char *reason, size_t rlen);
/* Undo: remove the temp file, or the published name if not yet synced. */
void	spool_discard(struct spool_dir *d, struct spool_file *f);
/* Forget a file that is now durable (closes its descriptor). */
void	spool_done(struct spool_file *f);

/*
 * requeue.c: write the recipients idx[0..rq->nrcpt) of the queue file open
 * on fd into the spool with the relay's reject header.  0 with done
 * filled, or -1 with a reason.
 */
int	spool_requeue(struct spool_dir *d, const char *org, int fd,
	    const struct ipc_requeue *rq, const uint32_t *idx,
	    struct ipc_committed *done, char *reason, size_t rlen);

/*
 * audit.c: the commit record.  A tap follows what spool_write writes
 * (digest, envelope, Received header); spool_audit_commit sends the
 * record for a file that is durable, and with SPOOL_AUDIT_ACK (Milter
 * Audit Sync = every) waits until the parent has it on disk, handling the
 * parent's other records with the function given to spool_audit_init.
 */
enum { SPOOL_AUDIT_OFF, SPOOL_AUDIT_ON, SPOOL_AUDIT_ACK };
int	spool_audit_mode(const struct msm_settings *s);
void	spool_audit_init(int (*parent_record)(void *), void *arg);
void	spool_audit_acked(void);
struct spool_tap *spool_tap_new(void);
void	spool_tap_update(struct spool_tap *t, const void *p, size_t len);
void	spool_tap_free(struct spool_tap *t);
void	spool_audit_commit(const struct spool_dir *d, struct spool_file *f);
/*
 * Full Milter Scanner mode: the envelope and Received header capture
 * sends with BEGIN go to the tap only, not into the file, so that clamd
 * sees a mail message from its first byte (envelope lines in front would
 * hide it from clamd's mail parser and its attachments with it).
 */
void	spool_tap_head(struct spool_tap *t, const void *p, size_t len);
/* The scan record: what was scanned (digest, size) and clamd's verdict. */
void	spool_audit_scan(const struct spool_dir *d, struct spool_file *f,
	    const struct ipc_verdict *v);

#endif
