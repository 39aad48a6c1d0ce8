/*
 * The capture process: libmilter callbacks turn an SMTP transaction into
 * queue file records for the spooler.  No file system access at all.
 */
#ifndef MSM_CAPTURE_H
#define MSM_CAPTURE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "clock.h"
#include "config.h"
#include "ipc.h"
#include "qfile.h"

/* Shared by every libmilter thread; guarded by lock. */
struct capture {
	pthread_mutex_t		 lock;
	struct msm_settings	 set;
	int			 control;	/* to the spooler, -1 if none */
	unsigned		 control_gen;	/* bumped on every new one */
	pthread_cond_t		 control_new;	/* signalled with the bump */
	unsigned		 transactions;	/* MAIL seen, not yet ended */
	unsigned		 sessions;	/* of Milter Max Children */
	int			 draining;	/* stopping: no new mail */
	char			 hostname[256];	/* when Postfix sends no j */

	/* Milter Scanner: swapped whole on reload, read by every thread. */
	pthread_rwlock_t	 rules_lock;
	struct ruleset		*whitelist;	/* Is Definitely Not Spam */
	struct ruleset		*blacklist;	/* Is Definitely Spam */
};

extern struct capture capture;

/* What the Received header and envelope lines are made from. */
struct envelope {
	const char	*queue_id;
	const char	*sender;	/* "" for the null sender */
	const char	*auth_type;	/* SASL method or NULL */
	struct qrcpt	*rcpts;		/* in SMTP order */
	size_t		 nrcpt;
	const char	*helo;		/* NULL when the client sent none */
	const char	*client_name;
	const char	*client_addr;	/* "192.0.2.1", "IPv6:2001:db8::1" */
	const char	*by_host;
	const char	*tls_version, *cipher, *cipher_bits;
	int		 client_cert;	/* a client certificate was shown */
	int		 ehlo;		/* the session was ESMTP (EHLO) */
	int64_t		 when;		/* time(2) for the date */
};

/*
 * The head of a queue file: S, A, E and O lines, then our Received header.
 * Returns a malloc'ed string (length in *len) or NULL.
 */
char	*received_head(const struct envelope *e, size_t *len);
/* The "with" word of the Received header (RFC 3848): "SMTP", "ESMTPSA"... */
const char *received_protocol(int ehlo, int tls, int auth);
/* RFC 5322 date in English whatever the locale: "Tue, 24 Nov 2026 ..." */
void	received_date(int64_t when, char *buf, size_t len);

/* Get a session channel to the spooler for this connection. */
int	capture_session_channel(unsigned *gen);
/* Count a transaction in or out; 0 when we are draining (refuse it). */
int	capture_transaction(int delta);

/* scanner.c: the Milter Scanner verdict at DATA. */
struct rule_query;
/* 1 when the message is blacklisted and must be rejected; rule names
 * the rule that decided ("file:line"). */
int	scanner_blacklisted(const char *queue_id, const struct rule_query *,
	    char *rule, size_t rulelen);
/* A piece of a serialized ruleset from the parent; -1 if malformed. */
int	scanner_piece(const void *data, size_t len);

/* audit.c: the decisions the parent records in the audit log. */
void	capture_audit_loopback(const char *client_addr);
void	capture_audit_reject(const char *client_addr, const char *client_name,
	    const char *helo, const char *sender, const struct qrcpt *rcpts,
	    size_t nrcpt, const char *rule);
void	capture_audit_tempfail(const char *queue_id, const char *reason);

/* report.c: the committed message's log line and commit time. */
void	capture_report_committed(const char *postfix_id,
	    const struct ipc_committed *done, const char *sender,
	    size_t nrcpt, uint64_t eom_us);

/* Start the thread that closes sessions silent for Milter Idle Timeout. */
int	capture_idle_reaper(void);

/* The libmilter description (milter.c). */
struct smfiDesc;
extern struct smfiDesc capture_milter;

#endif
