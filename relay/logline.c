/*
 * The relay's lines about a message, in the shape Postfix gives its own
 * ("QID: to=<...>, relay=..., status=sent (250 ...)"), so that one grep
 * for the queue id follows a message from Postfix's first line through
 * msmilter's capture and spooler to its delivery.  The queue id is the
 * milterout name up to its dot: MailScanner names its output after the
 * milterin file, which the spooler named after Postfix's queue id.
 */
#include <stdio.h>
#include <string.h>

#include "queueid.h"
#include "relay.h"

void
relay_log_id(const char *name, char *qid, size_t len)
{
	size_t n = strcspn(name, ".");

	snprintf(qid, len, "%.*s", (int)n, name);
	if (n >= len || !queueid_valid(qid))
		snprintf(qid, len, "NOQUEUE");
}

void
relay_log_target(const struct relay *r, char *buf, size_t len)
{
	const struct msm_settings *s = &r->set;

	if (s->delivery_method == MSM_DELIVER_QMQP &&
	    s->socket_type == MSM_SOCKET_UNIX)
		snprintf(buf, len, "%s, method=QMQP", s->socket_dir);
	else if (strchr(s->relay_address, ':') != NULL)
		snprintf(buf, len, "[%s]:%u, method=%s", s->relay_address,
		    s->relay_port, s->delivery_method == MSM_DELIVER_QMQP ?
		    "QMQP" : "SMTP");
	else
		snprintf(buf, len, "%s:%u, method=%s", s->relay_address,
		    s->relay_port, s->delivery_method == MSM_DELIVER_QMQP ?
		    "QMQP" : "SMTP");
}

/* "<a>,<b>", shortened with ",..." when it does not fit. */
void
relay_log_rcpts(const struct delivery *d, const uint32_t *idx, size_t n,
    char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int k = snprintf(buf + used, len - used, "%s<%s>",
		    used ? "," : "", d->q.rcpts[idx[i]].addr);

		if (k < 0 || (size_t)k >= len - used) {
			/* Room for ",..." is kept by cutting back to a comma. */
			char *comma;

			buf[used] = '\0';
			while (used + 5 > len && (comma = strrchr(buf, ','))
			    != NULL) {
				*comma = '\0';
				used = (size_t)(comma - buf);
			}
			if (used + 5 <= len)
				snprintf(buf + used, len - used, "%s...",
				    used ? "," : "");
			return;
		}
		used += (size_t)k;
	}
}
