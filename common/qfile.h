/*
 * The strict reader of queue files (milterout, and files handed back for
 * requeueing).  MailScanner writes them; a file may be truncated, binary
 * junk or crafted, so nothing in it is trusted: envelope lines must match
 * ^[OSEA]<...>$ exactly, and the first line that does not ends the
 * envelope, so a header can never be taken for a sender.
 */
#ifndef MSM_QFILE_H
#define MSM_QFILE_H

#include <stddef.h>
#include <sys/types.h>

#define QFILE_LINE_MAX		4096	/* longest envelope line accepted */
#define QFILE_MAX_RCPTS		100000

struct qrcpt {
	char	*addr;		/* without the angle brackets */
	char	*dsn;		/* "NOTIFY=... ORCPT=..." or NULL */
};

struct qfile {
	char		*sender;	/* "" for the null sender */
	char		*auth;		/* A<...> contents or NULL */
	struct qrcpt	*rcpts;		/* in file order */
	size_t		 nrcpt;
	off_t		 data_offset;	/* first byte after the envelope */
	off_t		 size;		/* of the whole file */
	int		 dsn_ignored;	/* orphan E lines we could not place */
	/* From our own Received header, for XFORWARD; "" when absent. */
	char		 helo[256];
	char		 client_name[256];
	char		 client_addr[64];	/* "192.0.2.1" or "2001:db8::1" */
};

/*
 * Read the envelope of the queue file open on fd (from offset 0, with
 * pread: the file offset is not used).  0; -1 when the file is not a
 * readable queue file; -2 on a read error or no memory (the file may be
 * fine: try again).  On error the reason is in err and q is freed.
 */
int	qfile_read(int fd, struct qfile *q, char *err, size_t errlen);
void	qfile_free(struct qfile *q);

/* Is name a MailScanner message id: \w+ optionally "." \w+ ? */
int	qfile_name_ok(const char *name);

#endif
