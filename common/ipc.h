/*
 * Every message that crosses a process boundary in msmilter, and the framing
 * they share.  Channels are AF_UNIX SOCK_SEQPACKET socketpairs: one record is
 * one message, so a reader never reassembles or resynchronises.  Readers
 * trust nothing: the header length must equal the bytes received, payloads
 * must have the exact size of their type, strings must be terminated, and a
 * descriptor is accepted only on a type that carries one.
 */
#ifndef MSM_IPC_H
#define MSM_IPC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Fixed descriptor of a child's channel to the parent. */
#define IPC_PARENT_FD		3

/* A body chunk from libmilter is at most 64 KiB; a record carries one. */
#define IPC_MAX_PAYLOAD		(65536 + 1024)

#define QUEUEID_MAX		32	/* letters and digits, NUL included */
#define IPC_REASON_MAX		256

enum msg_type {
	MSG_NONE = 0,

	/* parent -> any child */
	MSG_PARENT_SETTINGS,	/* struct msm_settings */
	MSG_PARENT_PEER,	/* fd: a new capture<->spooler control channel */
	MSG_PARENT_STOP,	/* empty: stop taking work, finish, exit */
	MSG_PARENT_RELAY,	/* fd: a new relay<->spooler channel (spooler) */
	MSG_PARENT_RULES,	/* struct ipc_rules + a piece of a serialized
				 * ruleset (capture) */

	/* any child -> parent */
	MSG_CHILD_READY,	/* empty: set-up done, sandbox in place */
	MSG_CHILD_LOG,		/* struct ipc_log */

	/* capture -> spooler, on the control channel */
	MSG_CAPTURE_SESSION,	/* fd: a new session channel, empty payload */

	/* capture -> spooler, on a session channel */
	MSG_CAPTURE_BEGIN,	/* struct ipc_begin + envelope and Received */
	MSG_CAPTURE_DATA,	/* message bytes, LF line ends */
	MSG_CAPTURE_COMMIT,	/* empty: make it durable and answer */
	MSG_CAPTURE_ABORT,	/* empty: forget the message in progress */

	/* relay -> spooler */
	MSG_RELAY_REQUEUE,	/* fd: the milterout file; struct ipc_requeue
				 * + nrcpt uint32_t recipient indexes */

	/* spooler -> capture, on a session channel */
	MSG_SPOOLER_BEGUN,	/* empty: temp file made, head written */
	MSG_SPOOLER_COMMITTED,	/* struct ipc_committed */
	MSG_SPOOLER_FAILED,	/* struct ipc_failed */
	MSG_SPOOLER_REQUEUED,	/* struct ipc_committed, to the relay */

	MSG_TYPE_COUNT
};

struct ipc_hdr {
	uint32_t	type;
	uint32_t	len;		/* payload bytes after the header */
};

struct ipc_log {
	int32_t		priority;
	char		text[];		/* NUL-terminated, rest of the record */
};

struct ipc_begin {
	char		queue_id[QUEUEID_MAX];	/* preferred file name */
};

struct ipc_committed {
	char		queue_id[QUEUEID_MAX];	/* the name actually used */
	uint64_t	size;			/* bytes in the queue file */
};

#define IPC_REPLY_MAX		512

/* Which ruleset, how long in all, and where this piece goes. */
enum ipc_rules_which { RULES_WHITELIST = 0, RULES_BLACKLIST = 1 };
#define IPC_RULES_CHUNK		65536

struct ipc_rules {
	uint32_t	which;
	uint32_t	total;		/* bytes of the whole serialized text */
	uint32_t	offset;		/* of this piece */
};

struct ipc_requeue {
	char		queue_id[QUEUEID_MAX];	/* preferred milterin name */
	char		reply[IPC_REPLY_MAX];	/* the MTA's rejection */
	uint32_t	nrcpt;			/* indexes that follow */
};

struct ipc_failed {
	char		reason[IPC_REASON_MAX];
};

struct ipc_msg {
	struct ipc_hdr	hdr;
	int		fd;		/* passed descriptor or -1 */
	size_t		cap;		/* size of data[] */
	unsigned char	*data;		/* payload, hdr.len bytes */
};

const char	*ipc_type_name(uint32_t type);

/* A SOCK_SEQPACKET socketpair, close-on-exec on both ends. */
int	ipc_pair(int sv[2]);

/* Send one record; fd >= 0 is passed along.  0 or -1 with errno. */
int	ipc_send(int sock, uint32_t type, const void *p, size_t len, int fd);
/*
 * Send an answer to a peer that might not be reading: EAGAIN instead of
 * blocking, so a stuck or hostile reader cannot stop the sender.
 */
int	ipc_send_nowait(int sock, uint32_t type, const void *p, size_t len);
/* Same, payload in two pieces (fixed struct + variable part). */
int	ipc_sendv2(int sock, uint32_t type, const void *p1, size_t len1,
	    const void *p2, size_t len2, int fd);

/*
 * Receive one record into m (m->data of m->cap bytes).  1 on a message,
 * 0 on end of file, -1 with errno (EPROTO for a malformed record, whose
 * descriptor, if any, has been closed).
 */
int	ipc_recv(int sock, struct ipc_msg *m);

/* Strict payload checks for the receivers. */
int	ipc_expect_size(const struct ipc_msg *m, size_t size);
int	ipc_string_ok(const char *s, size_t size);

/* Is fd a socket of this type?  Children check their channels with it. */
int	ipc_is_socket(int fd, int type);

#endif
