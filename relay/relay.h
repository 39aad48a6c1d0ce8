/*
 * msmilter-relay: delivers what MailScanner wrote to milterout back to
 * Postfix by SMTP or QMQP, and hands permanent rejections to the spooler.
 * Trusts neither the files (read with the strict reader) nor the MTA's
 * replies (parsed strictly, every step under a timeout).
 */
#ifndef MSM_RELAY_H
#define MSM_RELAY_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <sodium.h>

#include "config.h"
#include "ipc.h"
#include "qfile.h"


/*
 * What the last attempt left done, per recipient (enum rcpt_state), for
 * the file with that identity only.  The progress file on disk is what
 * counts; this covers a milterout where it cannot be written (it then
 * lasts as long as the relay does).
 */
struct memo {
	struct stat	 of;
	size_t		 n;
	unsigned char	 state[];
};

/*
 * A milterout file we know of: waiting for its next attempt (in the heap
 * by due time) or with a worker; always in the hash table by name.
 */
struct pending {
	struct pending	*hnext;		/* hash chain */
	size_t		 heap_at;	/* place in the heap while waiting */
	time_t		 due;		/* next attempt */
	unsigned	 backoff;	/* seconds; 0 before the first failure */
	int		 stuck;		/* cannot be moved aside; said so once */
	struct memo	*memo;		/* or NULL */
	char		 name[72];
};

enum job_result {
	JOB_GONE,		/* delivered, requeued or quarantined */
	JOB_LATER,		/* locked or vanishing: look again soon */
	JOB_DEFERRED,		/* temporary failure: back off */
	JOB_STUCK,		/* must not be delivered, cannot be moved aside:
				   reply says why, logged once, retried rarely */
};

/* One file handed to a worker, and what came of it. */
struct job {
	struct job	*next;
	char		 name[72];
	struct memo	*memo;		/* the pending's, lent to the worker */
	time_t		 submitted;
	enum job_result	 result;
	int		 connect_failed;
	char		 reply[512];
};

struct relay;

struct worker {
	struct relay		*r;
	pthread_t		 thread;
	struct smtp_conn	*smtp;	/* kept open between messages */
};

struct relay {
	struct msm_settings	 set;
	int			 outdir;	/* milterout, O_DIRECTORY */
	uid_t			 uid;		/* ours: milterout files' owner */
	int			 badfd;		/* quarantine dir, or -1 */
	char			 badpath[MSM_PATH_LEN];
	int			 warned_bad;
	int			 confined_without_outdir;
	int			 inotify;
	int			 spooler;	/* channel for requeues, or -1 */
	/* The queue (pending.c): by name, and the waiting ones by due. */
	struct pending		**buckets;
	size_t			 nbuckets, nqueue;
	struct pending		**heap;
	size_t			 nheap, heapcap;
	unsigned char		 hashkey[crypto_shorthash_KEYBYTES];
	time_t			 next_scan;
	time_t			 mta_down_until; /* no connects before this */
	unsigned		 mta_backoff;
	int			 terminating;
	char			 hostname[256];	/* for EHLO */

	/*
	 * Workers.  Settings, descriptors and hostname above do not change
	 * once they run (a new configuration restarts the relay); the job
	 * lists and the spooler channel are shared under the locks.
	 */
	pthread_mutex_t		 lock;
	pthread_cond_t		 work;
	struct job		*todo, *results;
	unsigned		 busy;		/* jobs handed out */
	int			 wake;		/* eventfd: results wait */
	int			 stop_workers;
	pthread_mutex_t		 spooler_lock;
	struct worker		*workers;	/* Milter Relay Connections */
	unsigned		 nworkers;
};

/* progress.c: which recipients are done, on disk beside the file. */
#define PROGRESS_PREFIX		".progress."
#define PROGRESS_TOKEN_LEN	32	/* hex: 128 random bits */

enum rcpt_state { RS_PENDING, RS_DELIVERED, RS_REQUEUED, RS_REFUSED };

/* A requeue asked of the spooler and not answered yet. */
struct intent {
	char		 token[PROGRESS_TOKEN_LEN];
	uint32_t	*idx;
	size_t		 n;
	char		 reply[IPC_REPLY_MAX];
};

struct progress {
	int		 fd;		/* for appending, or -1 */
	int		 exists;	/* on disk */
	char		 file[sizeof(PROGRESS_PREFIX) + 72];
	struct stat	 of;		/* the milterout file it is about */
	unsigned char	*state;		/* enum rcpt_state, per recipient */
	size_t		 nrcpt;
	struct intent	*open;
	size_t		 nopen;
	char		 refused[IPC_REPLY_MAX];	/* last X line's reply */
};

/* Lines to append in one write (progress_put), then progress_commit. */
struct progress_rec {
	FILE		*f;
	char		*buf;
	size_t		 len;
	int		 failed;
};

/* 0 (pg empty when there is none), -1 with why when it is damaged. */
int	progress_load(const struct relay *, const char *name,
	    const struct stat *of, size_t nrcpt, struct progress *pg,
	    char *why, size_t wlen);
void	progress_token(char token[PROGRESS_TOKEN_LEN + 1]);
/* kind 'D', 'X', 'Q', 'q', 'f'; NULL for the parts it has none of. */
void	progress_put(struct progress_rec *, int kind, const char *token,
	    const uint32_t *idx, size_t n, const char *text);
/* Apply the lines to pg, append and fsync them; -1 with why if not on disk. */
int	progress_commit(const struct relay *, struct progress *,
	    struct progress_rec *, char *why, size_t wlen);
/* Apply them to pg only: the step after them records it on disk. */
void	progress_note(struct progress *, struct progress_rec *);
void	progress_remove(const struct relay *, struct progress *);
void	progress_drop_open(struct progress *, size_t keep);
void	progress_free(struct progress *);
void	progress_sweep(struct relay *, const char *entry);

/* One SMTP reply, all its lines. */
struct reply {
	int		 code;		/* 0 when none could be read */
	char		 text[512];	/* first line, for logs and headers */
	char		 all[1024];	/* every line, for EHLO keywords */
};

#define QMQP_REPLY_MAX	1024

/* reply.c: the MTA's answers, parsed strictly. */
int	smtp_reply_line(struct reply *, int index, const char *line);
int	qmqp_parse_answer(const char *buf, size_t got, char *code,
	    char *text, size_t size);

/* What happened to one recipient (or to the whole QMQP message). */
enum rcpt_outcome { RCPT_PENDING, RCPT_SKIP, RCPT_DELIVERED,
    RCPT_DEFERRED, RCPT_REJECTED };

/* One delivery attempt of one file. */
struct delivery {
	const char		*name;	/* milterout file name */
	char			 queue_id[QUEUEID_MAX];
	int			 fd;
	struct stat		 st;	/* of the locked file */
	struct qfile		 q;
	enum rcpt_outcome	*outcome;	/* per recipient */
	char			 reply[512];	/* last relevant reply */
	char			 reject[512];	/* first permanent reply */
	int			 connect_failed;
	struct progress		*pg;	/* what is done, on disk */
	int			 removed;	/* delivered whole: unlinked */
	int			 unrecorded;	/* a 250 we could not record */
};

/* settle.c: before and after a delivery attempt (see there). */
int	settle_begin(struct relay *, struct job *, struct delivery *,
	    struct progress *);
void	settle_end(struct relay *, struct job *, struct delivery *,
	    struct progress *);
/* Right after the MTA's 250 (smtp.c, qmqp.c), before anything else. */
void	settle_accepted(struct relay *, struct delivery *);
/* A file marked delivered by an earlier attempt: 1 when j->result says. */
int	settle_marked(struct relay *, struct job *, const struct stat *);

/* worker.c: move a file aside that must not be delivered (j->result). */
void	relay_quarantine(const struct relay *, struct job *, const char *what,
	    const char *why);

/* smtp.c */
struct smtp_conn;
int	smtp_deliver(struct worker *, struct delivery *);
void	smtp_close(struct worker *);

/* qmqp.c */
int	qmqp_deliver(struct worker *, struct delivery *);

/* net.c: connect to the configured MTA, with timeouts. */
int	net_connect(const struct msm_settings *, char *err, size_t errlen);
int	net_write_all(int fd, const void *p, size_t len);

/*
 * net.c: what goes to the MTA, gathered into few writes (each one wakes
 * the reader).  failed stays set after a write failed; later output is
 * dropped.
 */
#define WBUF_SIZE	65536
struct wbuf {
	int		 fd;
	size_t		 len;
	int		 failed;
	char		 data[WBUF_SIZE];
};
void	wbuf_put(struct wbuf *, const void *, size_t);
void	wbuf_flush(struct wbuf *);

/* pending.c: the queue's two indexes (the main thread's). */
void	pending_init(struct relay *);
struct pending *pending_find(const struct relay *, const char *name);
struct pending *pending_new(struct relay *, const char *name, time_t due);
void	pending_free(struct relay *, struct pending *);
void	pending_take(struct relay *, struct pending *);
int	pending_waiting(const struct pending *);
int	pending_set_due(struct relay *, struct pending *, time_t due);
struct pending *pending_first(const struct relay *);

/* queue.c: the main thread's bookkeeping. */
void	queue_scan(struct relay *);
void	queue_add(struct relay *, const char *name, time_t due);
void	queue_run(struct relay *, time_t now);
void	queue_collect(struct relay *, time_t now);
int	queue_next_timeout(const struct relay *, time_t now);

/* audit.c: what became of each file, for the parent's audit log. */
void	relay_audit_delivered(const struct relay *, const struct delivery *);
void	relay_audit_deferred(const struct relay *, const struct delivery *,
	    const unsigned char *done);
void	relay_audit_requeued(const struct relay *, const struct delivery *,
	    const uint32_t *idx, size_t k, const char *reply, const char *newid);
void	relay_audit_quarantined(const struct relay *, const char *name,
	    const char *what, const char *why);

/* logline.c: the pieces of the lines about a message. */
void	relay_log_id(const char *name, char *qid, size_t len);
void	relay_log_target(const struct relay *, char *buf, size_t len);
void	relay_log_rcpts(const struct delivery *, const uint32_t *idx,
	    size_t n, char *buf, size_t len);

/* status.c: the queue as msmilter -s shows it, sent when it changed. */
void	relay_status_report(struct relay *, time_t now);
/* The main loop's poll timeout, so that a change waits at most 1 s. */
int	relay_status_timeout(int timeout_ms);

/* worker.c: the deliveries. */
int	workers_start(struct relay *);
void	workers_stop(struct relay *);
void	worker_submit(struct relay *, struct job *);
struct job *worker_results(struct relay *);

#endif
