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
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "ipc.h"
#include "qfile.h"


/* A milterout file we know of, waiting for its next attempt. */
struct pending {
	char		 name[72];
	time_t		 due;		/* next attempt */
	unsigned	 backoff;	/* seconds; 0 before the first failure */
	int		 busy;		/* a worker has it */
	int		 stuck;		/* cannot be moved aside; said so once */
	unsigned char	*done;		/* per recipient: delivered or requeued */
	size_t		 ndone;
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
	unsigned char	*done;		/* the pending's, lent to the worker */
	size_t		 ndone;
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
	struct pending		*queue;
	size_t			 nqueue, qcap;
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
	struct qfile		 q;
	enum rcpt_outcome	*outcome;	/* per recipient */
	char			 reply[512];	/* last relevant reply */
	char			 reject[512];	/* first permanent reply */
	int			 connect_failed;
};

/* smtp.c */
struct smtp_conn;
int	smtp_deliver(struct worker *, struct delivery *);
void	smtp_close(struct worker *);

/* qmqp.c */
int	qmqp_deliver(struct worker *, struct delivery *);

/* net.c: connect to the configured MTA, with timeouts. */
int	net_connect(const struct msm_settings *, char *err, size_t errlen);
int	net_write_all(int fd, const void *p, size_t len);

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
	    const uint32_t *idx, size_t k, const char *newid);
void	relay_audit_quarantined(const struct relay *, const char *name,
	    const char *what, const char *why);

/* worker.c: the deliveries. */
int	workers_start(struct relay *);
void	workers_stop(struct relay *);
void	worker_submit(struct relay *, struct job *);
struct job *worker_results(struct relay *);

#endif
