/*
 * Capture's audit events: the decisions it takes in the SMTP session
 * (ACCEPT for a loopback client, REJECT by the blacklist, TEMPFAIL).  The
 * parent writes them; capture only says what it decided, on its own
 * channel, and the parent takes nothing else from it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "audit_ipc.h"
#include "capture.h"
#include "log.h"

static int
audit_on(void)
{
	int on;

	pthread_mutex_lock(&capture.lock);
	on = capture.set.milter_audit_log[0] != '\0' ||
	    capture.set.milter_metrics_file[0] != '\0';	/* counted */
	pthread_mutex_unlock(&capture.lock);
	return on;
}

static void
send_event(struct audit_msg *m)
{
	if (audit_ipc_send(IPC_PARENT_FD, MSG_CAPTURE_AUDIT, m) == -1)
		log_warn("audit: sending a %s record",
		    audit_event_name(m->event));
}

void
capture_audit_loopback(const char *client_addr)
{
	struct audit_msg m = { .event = AUDIT_EV_ACCEPT_LOOPBACK };

	if (!audit_on())
		return;
	m.str[0] = client_addr;
	send_event(&m);
}

void
capture_audit_reject(const char *client_addr, const char *client_name,
    const char *helo, const char *sender, const struct qrcpt *rcpts,
    size_t nrcpt, const char *rule)
{
	struct audit_msg	 m = { .event = AUDIT_EV_REJECT };
	const char		**addrs;

	if (!audit_on())
		return;
	if ((addrs = calloc(nrcpt ? nrcpt : 1, sizeof(*addrs))) == NULL) {
		log_warn("audit: no memory for a reject record");
		return;
	}
	for (size_t i = 0; i < nrcpt; i++)
		addrs[i] = rcpts[i].addr;
	m.str[0] = client_addr;
	m.str[1] = client_name;
	m.str[2] = helo != NULL ? helo : "";
	m.str[3] = sender != NULL ? sender : "";
	m.str[4] = rule;
	m.rcpts = addrs;
	m.nrcpt = nrcpt;
	send_event(&m);
	free(addrs);
}

void
capture_audit_tempfail(const char *queue_id, const char *reason)
{
	struct audit_msg m = { .event = AUDIT_EV_TEMPFAIL };

	if (!audit_on())
		return;
	m.str[0] = queue_id;
	m.str[1] = reason[0] != '\0' ? reason : "temporary failure";
	send_event(&m);
}
