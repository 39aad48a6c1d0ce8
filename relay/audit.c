/*
 * The relay's audit events: what became of a milterout file (delivered,
 * deferred, requeued to milterin, quarantined), with the recipients each
 * applies to and the MTA's reply.  Sent by the worker that knows, on the
 * relay's own channel to the parent.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_ipc.h"
#include "log.h"
#include "relay.h"

static const char *
method(const struct relay *r)
{
	return r->set.delivery_method == MSM_DELIVER_QMQP ? "QMQP" : "SMTP";
}

static void
send_event(const struct relay *r, uint32_t event, const char *name,
    const char *const *rcpts, size_t n, const char *reply,
    const char *requeued_as)
{
	struct audit_msg m = { .event = event };

	if (r->set.milter_audit_log[0] == '\0' &&
	    r->set.milter_metrics_file[0] == '\0')
		return;		/* neither logged nor counted */
	m.str[0] = name;
	m.str[1] = method(r);
	m.str[2] = reply;
	m.str[3] = requeued_as;
	m.rcpts = rcpts;
	m.nrcpt = n;
	if (audit_ipc_send(IPC_PARENT_FD, MSG_RELAY_AUDIT, &m) == -1)
		log_warn("%s: audit: sending a %s record", name,
		    audit_event_name(event));
}

/* The recipients not done (done given), or of outcome want, in order. */
static const char **
pick_rcpts(const struct delivery *d, const unsigned char *done,
    enum rcpt_outcome want, size_t *n)
{
	const char **out = calloc(d->q.nrcpt ? d->q.nrcpt : 1, sizeof(*out));

	*n = 0;
	if (out == NULL) {
		log_warn("%s: audit: no memory for the recipients", d->name);
		return NULL;
	}
	for (size_t i = 0; i < d->q.nrcpt; i++)
		if (done != NULL ? !done[i] : d->outcome[i] == want)
			out[(*n)++] = d->q.rcpts[i].addr;
	return out;
}

void
relay_audit_delivered(const struct relay *r, const struct delivery *d)
{
	size_t		 n;
	const char	**rcpts = pick_rcpts(d, NULL, RCPT_DELIVERED, &n);

	if (rcpts != NULL)
		send_event(r, AUDIT_EV_DELIVERED, d->name, rcpts, n, d->reply,
		    "");
	free(rcpts);
}

void
relay_audit_deferred(const struct relay *r, const struct delivery *d,
    const unsigned char *done)
{
	size_t		 n;
	const char	**rcpts = pick_rcpts(d, done, RCPT_PENDING, &n);

	if (rcpts != NULL)
		send_event(r, AUDIT_EV_DEFERRED, d->name, rcpts, n, d->reply,
		    "");
	free(rcpts);
}

void
relay_audit_requeued(const struct relay *r, const struct delivery *d,
    const uint32_t *idx, size_t k, const char *reply, const char *newid)
{
	const char **rcpts = calloc(k ? k : 1, sizeof(*rcpts));

	if (rcpts == NULL) {
		log_warn("%s: audit: no memory for the recipients", d->name);
		return;
	}
	for (size_t i = 0; i < k; i++)
		rcpts[i] = d->q.rcpts[idx[i]].addr;
	send_event(r, AUDIT_EV_REQUEUED, d->name, rcpts, k, reply, newid);
	free(rcpts);
}

void
relay_audit_quarantined(const struct relay *r, const char *name,
    const char *what, const char *why)
{
	char reply[600];

	snprintf(reply, sizeof(reply), "%s (%s)", what, why);
	send_event(r, AUDIT_EV_QUARANTINED, name, NULL, 0, reply, "");
}
