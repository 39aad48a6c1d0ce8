/*
 * Between privsep/audit.c (writing records, sealing epochs) and
 * privsep/audit_open.c (finding where the log left off at start).  The
 * state is the parent's alone; children never see the key.
 */
#ifndef MSM_PRIVSEP_AUDIT_INT_H
#define MSM_PRIVSEP_AUDIT_INT_H

#include <stdint.h>
#include <time.h>

#include "audit.h"
#include "config.h"

struct audit {
	int		 on;		/* Milter Audit Log is set */
	char		 path[MSM_PATH_LEN];
	int		 fd;		/* O_APPEND, -1 while it cannot be */
	uint64_t	 size;		/* of the current file */
	int		 sync_every;
	uint64_t	 rotate_size;	/* 0: only on SIGHUP */

	/* The chain: what the next record continues. */
	uint64_t	 seq;		/* of the next record */
	unsigned char	 prev[AUDIT_HASH];	/* hash of the last line */
	uint64_t	 epoch;		/* open epoch: records go here */
	uint64_t	 epoch_lines;	/* lines of it written so far */
	uint64_t	 start;		/* unix time of epoch 0 (0 unkeyed) */
	uint32_t	 seconds;	/* epoch length */

	/* The key; keyed only. */
	int		 keyed;
	int		 keyfd, treefd;
	struct audit_key key;		/* K(key.epoch) */
	unsigned char	 mac_key[AUDIT_HASH];
	char		 key_id[17];	/* or "none" */

	/* Records that could not be written (full disk), and when we said so. */
	uint64_t	 lost, lost_total;
	time_t		 lost_logged;
	time_t		 reopen_at;

	int		 close_written;	/* epoch_close of the open epoch */
	struct jbuf	 rec, fields, aux;
	char		 config_digest[AUDIT_HEX];
};

/* audit.c */
int	 audit_emit(struct audit *a, const char *event,
	    const struct jbuf *fields);
int	 audit_new_file(struct audit *a, const char *previous);
int	 audit_start_file(struct audit *a, int fd, const char *previous);
/* Move path aside as path.YYYYmmddTHHMMSSZ; its base name into base. */
int	 audit_rename_aside(struct audit *a, char *base, size_t len);
void	 audit_use_key(struct audit *a);
int	 audit_save_key(struct audit *a);
int64_t	 audit_now_us(void);

/* audit_open.c: 0 when the chain continues (or starts) in a->fd. */
int	 audit_open_log(struct audit *a);
void	 audit_open_key(struct audit *a, const struct msm_settings *s);
void	 audit_close_key(struct audit *a);
/* The newest rotated file beside path, into name (its base name). */
int	 audit_last_rotated(const char *path, char *name, size_t len);
void	 audit_split(const char *path, char *dir, size_t dlen,
	    const char **base);

#endif
