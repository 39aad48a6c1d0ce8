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
#include <sys/socket.h>

/* Fixed descriptor of a child's channel to the parent. */
#define IPC_PARENT_FD		3

/* A body chunk from libmilter is at most 64 KiB; a record carries one. */
#define IPC_MAX_PAYLOAD		(65536 + 1024)

#define QUEUEID_MAX		32	/* letters and digits, NUL included */
#define IPC_REASON_MAX		256

/*
 * The protocol's version, checked before anything else a child reads: the
 * settings record starts with struct ipc_settings_hdr, and a child whose
 * IPC_VERSION or sizeof(struct msm_settings) differs from the parent's
 * refuses to run (exit CHILD_EXIT_PROTOCOL) with a log line naming both.
 * This happens after an upgrade, when a running parent starts the new
 * children or a new parent finds old ones.
 *
 * Bump rule: add 1 to IPC_VERSION in the commit that changes any record's
 * type number, layout, size rule or meaning, or the layout of struct
 * msm_settings (a new field is also caught by the size check; a change of
 * meaning or order is not).  Never change, in any version: IPC_MAGIC,
 * struct ipc_settings_hdr, struct ipc_hdr, struct ipc_log and the numbers
 * of MSG_PARENT_SETTINGS, MSG_CHILD_READY and MSG_CHILD_LOG: they are how
 * peers of different versions still tell each other why they disagree.
 */
#define IPC_VERSION		6	/* 3: requeue tokens; 4: audit events, settings keys;
					 * 5: confinement, commit times, relay status;
					 * 6: Full Milter Scanner verdicts */
#define IPC_MAGIC		0x494d534dU	/* "MSMI" little-endian */

/* A child's exit status when it refuses the parent's protocol. */
#define CHILD_EXIT_PROTOCOL	78

struct ipc_settings_hdr {
	uint32_t	magic;		/* IPC_MAGIC */
	uint32_t	version;	/* IPC_VERSION */
	uint32_t	settings_size;	/* sizeof(struct msm_settings) */
	uint32_t	reserved;	/* 0 */
};

/*
 * Record types, numbered explicitly: the numbers are the protocol.  Each
 * names its sender (MSG_<SENDER>_<EVENT>), and the comment says who may
 * send it to whom and what rides along.  ipc_recv() enforces the size and
 * descriptor rules of ipc.c's table; receivers check the rest (state,
 * strings, which peer).  A descriptor rides only on the types marked fd:,
 * and on those it must.
 */
enum msg_type {
	MSG_NONE = 0,

	/* parent -> every child */
	MSG_PARENT_SETTINGS = 1,	/* ipc_settings_hdr + msm_settings */
	MSG_PARENT_STOP = 3,		/* empty: stop taking work, finish */

	/* parent -> one child: a fresh channel to the spooler and back */
	MSG_PARENT_SPOOLER_CHANNEL = 2,	/* -> capture; fd: its control
					 * channel to the spooler, empty */
	MSG_PARENT_CAPTURE_CHANNEL = 4,	/* -> spooler; fd: the other end,
					 * capture's control channel, empty */
	MSG_PARENT_RELAY_CHANNEL = 18,	/* -> spooler; fd: the relay's
					 * requeue channel, empty */
	MSG_PARENT_REQUEUE_CHANNEL = 19,/* -> relay; fd: the other end, its
					 * requeue channel to the spooler */
	MSG_PARENT_RULES = 5,		/* -> capture; struct ipc_rules + a
					 * piece of a serialized ruleset */

	/* every child -> parent */
	MSG_CHILD_READY = 6,		/* empty: set-up done, sandboxed */
	MSG_CHILD_LOG = 7,		/* struct ipc_log */
	MSG_CHILD_CONFINED = 24,	/* struct ipc_confined, just before
					 * READY: what Landlock applied
					 * (the parent reads seccomp from
					 * /proc itself) */

	/* capture -> spooler, on the control channel */
	MSG_CAPTURE_SESSION = 8,	/* fd: a new session channel, empty */

	/* capture -> spooler, on a session channel */
	MSG_CAPTURE_BEGIN = 9,		/* struct ipc_begin + envelope and
					 * Received */
	MSG_CAPTURE_DATA = 10,		/* message bytes, LF line ends */
	MSG_CAPTURE_COMMIT = 11,	/* empty: make it durable, answer */
	MSG_CAPTURE_ABORT = 12,		/* empty: forget the message */

	/* relay -> spooler, on the requeue channel */
	MSG_RELAY_REQUEUE = 13,		/* fd: the milterout file; struct
					 * ipc_requeue + nrcpt uint32_t
					 * recipient indexes */

	/* spooler -> capture, on a session channel */
	MSG_SPOOLER_BEGUN = 14,		/* empty: temp file made, head
					 * written */
	MSG_SPOOLER_COMMITTED = 15,	/* struct ipc_committed */
	/* spooler -> capture (session) or relay (requeue channel) */
	MSG_SPOOLER_FAILED = 16,	/* struct ipc_failed */
	/* spooler -> relay, on the requeue channel */
	MSG_SPOOLER_REQUEUED = 17,	/* struct ipc_committed */

	/*
	 * child -> parent: one audit event each (struct ipc_audit and its
	 * strings).  The type names the sender, and each sender has its own
	 * events (audit_ipc_parse checks both; the broker the pair).
	 */
	MSG_CAPTURE_AUDIT = 20,		/* accept_loopback, reject, tempfail */
	MSG_SPOOLER_AUDIT = 21,		/* commit */
	MSG_RELAY_AUDIT = 22,		/* delivered, deferred, requeued,
					 * quarantined */
	/* parent -> spooler: the event asked for AUDIT_F_ACK is on disk */
	MSG_PARENT_AUDIT_SYNCED = 23,	/* empty */

	/* capture -> parent: end of message to the spooler's COMMITTED */
	MSG_CAPTURE_COMMIT_TIME = 25,	/* struct ipc_commit_time */
	/* relay -> parent: its queue, when that changed (msmilter -s) */
	MSG_RELAY_STATUS = 26,		/* struct ipc_relay_status */

	/* spooler -> capture, on a session channel (Milter Full Scanner) */
	MSG_SPOOLER_VERDICT = 27,	/* struct ipc_verdict: the answer to
					 * COMMIT instead of COMMITTED */

	MSG_TYPE_COUNT = 28
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

#define IPC_TOKEN_LEN		33	/* 32 hex digits and the NUL */

struct ipc_requeue {
	char		queue_id[QUEUEID_MAX];	/* preferred milterin name */
	char		reply[IPC_REPLY_MAX];	/* the MTA's rejection */
	char		token[IPC_TOKEN_LEN];	/* the relay's name for this
						 * requeue: asked again after a
						 * restart, it is answered, not
						 * written a second time */
	uint32_t	nrcpt;			/* indexes that follow */
};

struct ipc_failed {
	char		reason[IPC_REASON_MAX];
};

/* What a child's Landlock ruleset is (0: none in force). */
struct ipc_confined {
	int32_t		landlock_abi;	/* applied; 0 none */
	uint32_t	flags;		/* IPC_CONFINED_* */
};
#define IPC_CONFINED_LL_TCP	0x1u	/* TCP connect rules (ABI >= 4) */

struct ipc_commit_time {
	uint64_t	usec;		/* end of message -> COMMITTED */
};

/* The relay's queue as it stands; times are time(2), 0 for none. */
struct ipc_relay_status {
	uint32_t	files;		/* milterout files it knows of */
	uint32_t	deferred;	/* of those, backing off after a
					 * temporary failure */
	int64_t		next_retry;	/* earliest retry of a deferred one */
	int64_t		mta_down_until;	/* no connection before this */
};

/*
 * Full Milter Scanner mode: what clamd said about a message.  The temp
 * file is gone before this is sent, whatever the result.
 */
enum ipc_scan_result {
	SCAN_CLEAN = 0,		/* capture answers ACCEPT */
	SCAN_VIRUS = 1,		/* 554 5.7.1 naming the signature */
	SCAN_TEMPFAIL = 2,	/* clamd down, slow, erring: 451 4.7.1 */
	SCAN_OVERSIZE = 3,	/* clamd's size limits: Milter Clamd Oversize */
	SCAN_RESULT_COUNT = 4
};

#define IPC_SIGNATURE_MAX	128

struct ipc_verdict {
	uint32_t	result;			/* enum ipc_scan_result */
	uint32_t	reserved;		/* 0 */
	uint64_t	size;			/* bytes scanned */
	char		queue_id[QUEUEID_MAX];
	char		signature[IPC_SIGNATURE_MAX];	/* VIRUS: its name;
						 * OVERSIZE: the limit; else "" */
};

/* The audit events children report; which child may send which. */
enum ipc_audit_event {
	AUDIT_EV_NONE = 0,
	AUDIT_EV_ACCEPT_LOOPBACK = 1,	/* capture */
	AUDIT_EV_REJECT = 2,		/* capture */
	AUDIT_EV_TEMPFAIL = 3,		/* capture */
	AUDIT_EV_COMMIT = 4,		/* spooler */
	AUDIT_EV_DELIVERED = 5,		/* relay */
	AUDIT_EV_DEFERRED = 6,		/* relay */
	AUDIT_EV_REQUEUED = 7,		/* relay */
	AUDIT_EV_QUARANTINED = 8,	/* relay */
	AUDIT_EV_SCAN = 9,		/* spooler, Milter Full Scanner */
	AUDIT_EV_COUNT = 10
};

/* Answer with MSG_PARENT_AUDIT_SYNCED once the record is on disk. */
#define AUDIT_F_ACK		0x1u
/* Most strings one event carries (common/audit_ipc.c has the lists). */
#define AUDIT_IPC_MAX_STRINGS	7

/*
 * struct ipc_audit, then exactly the NUL-terminated strings of its event
 * (audit_ipc_fields), then nrcpt recipients, each NUL-terminated, and
 * nothing after.  Recipients that did not fit the record are counted in
 * omitted.  size and digest only for commit and scan (else 0).
 */
struct ipc_audit {
	uint32_t	event;		/* enum ipc_audit_event */
	uint32_t	flags;		/* AUDIT_F_* */
	uint32_t	nrcpt;
	uint32_t	omitted;
	uint64_t	size;
	unsigned char	digest[32];	/* BLAKE2b-256 of the committed or
					   scanned file */
};

struct ipc_msg {
	struct ipc_hdr	hdr;
	int		fd;		/* passed descriptor or -1 */
	size_t		cap;		/* size of data[] */
	unsigned char	*data;		/* payload, hdr.len bytes */
};

const char	*ipc_type_name(uint32_t type);

/* Control data with room for one descriptor (SCM_RIGHTS). */
union ipc_fdroom {
	struct cmsghdr	align;
	char		buf[CMSG_SPACE(sizeof(int))];
};

/* Make msg carry fd (SCM_RIGHTS), its control data in room. */
void	ipc_attach_fd(struct msghdr *msg, union ipc_fdroom *room, int fd);

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

/* MSG_PARENT_SETTINGS: the version header, then the settings. */
int	ipc_send_settings(int sock, const void *settings, size_t len);
/*
 * Check the version header of a settings payload.  0 with *body and *len
 * the settings after it; -1 with why (naming both versions or sizes) when
 * the sender speaks another protocol.
 */
int	ipc_settings_open(const void *data, size_t *len, size_t settings_size,
	    const void **body, char *why, size_t whylen);

/* Strict payload checks for the receivers. */
int	ipc_expect_size(const struct ipc_msg *m, size_t size);
int	ipc_string_ok(const char *s, size_t size);

/* Is fd a socket of this type?  Children check their channels with it. */
int	ipc_is_socket(int fd, int type);

#endif
