/*
 * The queue file envelope, in one place: the writer (capture's milterin
 * files, the spooler's requeued ones), the strict reader (milterout, and
 * files handed back for requeueing) and the one set of checks both apply,
 * so that nothing is written that the reader would refuse, and nothing is
 * read that could not have been written.  MailScanner writes milterout; a
 * file may be truncated, binary junk or crafted, so nothing in it is
 * trusted.  A line starting "S<", "O<", "E<" or "A<" is an envelope line
 * and must be exactly right, or the whole file is refused; the first line
 * that starts otherwise ends the envelope, so a header is never taken for
 * a sender.
 */
#ifndef MSM_QFILE_H
#define MSM_QFILE_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define QFILE_LINE_MAX		4096	/* longest envelope line accepted */
#define QFILE_MAX_RCPTS		100000
#define QFILE_ADDR_MAX		1000	/* RFC 5321 allows 256 per path */
#define QFILE_AUTH_PREFIX	"sasl_method="

struct qrcpt {
	char	*addr;		/* without the angle brackets */
	char	*dsn;		/* "NOTIFY=... ORCPT=..." or NULL */
};

struct qfile {
	char		*sender;	/* "" for the null sender */
	char		*auth;		/* "sasl_method=NAME" or NULL */
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

/*
 * The checks.  Each returns 1 when the value can be carried, else 0 with
 * a short reason (a constant string fit for an SMTP reply) in *why.
 *
 * qfile_addr_ok: a sender or recipient without angle brackets, not
 * empty (the null sender is the caller's business).  MailScanner takes an
 * address from after the last '<' to before the first '>', and the relay
 * sends it as MAIL FROM:<addr> / RCPT TO:<addr>, so an angle bracket, a
 * space outside quotes or a control character would change what is read
 * or add ESMTP parameters.  UTF-8 (SMTPUTF8) passes.  A quoted local part
 * ("john smith"@example.com, legal SMTP) passes when it is well formed
 * (RFC 5321 qtextSMTP / quoted-pairSMTP, no angle bracket): MailScanner's
 * reader keeps it whole, the file holds it as the client sent it, and the
 * relay sends it quoted exactly so.
 * qfile_dsn_ok: the contents of an E line, the relay's RCPT parameters:
 * NOTIFY=NEVER or NOTIFY=list of SUCCESS,FAILURE,DELAY, and/or
 * ORCPT=addr-type;xtext (RFC 3461; utf-8-addr-xtext for "utf-8", RFC
 * 6533), each at most once, one space apart, nothing else.
 * qfile_auth_ok: a SASL mechanism name, for A<sasl_method=NAME>.
 */
int	qfile_addr_ok(const char *addr, const char **why);
int	qfile_dsn_ok(const char *dsn, const char **why);
int	qfile_auth_ok(const char *method, const char **why);

/*
 * The writer: one line at a time, each checked as above.  0, or -1 with
 * the reason in *why (what was written before the bad line stays in f:
 * write to a buffer).  sender "" is the null sender; method is the bare
 * SASL mechanism.
 */
int	qfile_put_sender(FILE *f, const char *sender, const char **why);
int	qfile_put_auth(FILE *f, const char *method, const char **why);
int	qfile_put_rcpt(FILE *f, const char *addr, const char *dsn,
	    const char **why);
/*
 * A whole envelope, in the one order every writer uses: S, then each
 * recipient's E (if any) before its O, then A (method NULL: none) last.
 * MailScanner's ReadQf takes the lines in any order, but its body reader
 * (quarantine and archive copies) skips only S, O and E lines and keeps
 * everything from the first other line on: with A last, that line is the
 * only envelope line such a copy shows, never a recipient.  Only the
 * recipients i with chosen[i] (chosen NULL: all).
 */
int	qfile_put_lines(FILE *f, const char *sender, const char *method,
	    const struct qrcpt *rcpts, size_t nrcpt,
	    const unsigned char *chosen, const char **why);
/* q's envelope by qfile_put_lines (q->auth is "sasl_method=NAME"). */
int	qfile_put_envelope(FILE *f, const struct qfile *q,
	    const unsigned char *chosen, const char **why);

/*
 * An address as the file holds it ("john smith"@example.com, what SMTP
 * carries) in Postfix's internal form (john smith@example.com, what QMQP
 * carries: qmqpd does no unquoting).  addr passed qfile_addr_ok; out has
 * room for strlen(addr) + 1 bytes (unquoting only shortens).
 */
void	qfile_addr_internal(const char *addr, char *out);

/*
 * The header the spooler puts after the envelope of a message the MTA
 * refused for good (printf format, %s the %org-name%), and what
 * MailScanner renames it to when it quarantines the message.
 */
#define QFILE_REJECT_FIELD	"X-%s-MailScanner-Relay-Reject"
#define QFILE_QUARANTINE_FIELD	"X-%s-MailScanner-Relay-Quarantine"
#define QFILE_HEADERS_MAX	(16 << 20)	/* bytes of headers searched */

/*
 * Does the message of the queue file on fd (read with qfile_read into q)
 * have a header field called name (any case) before its first empty
 * line?  1, 0, or -1 on a read error.
 */
int	qfile_has_field(int fd, const struct qfile *q, const char *name);

/* Is name a MailScanner message id: \w+ optionally "." \w+ ? */
int	qfile_name_ok(const char *name);

#endif
