/*
 * Milter Scanner: MailScanner's "Is Definitely Not Spam" and "Is
 * Definitely Spam" decided at DATA, when every recipient is known and no
 * body has been sent.  Whitelist first; the whitelist does not count above
 * "Ignore Spam Whitelist If Recipients Exceed"; then the blacklist.  The
 * rulesets were read and compiled from what the parent sent.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capture.h"
#include "log.h"
#include "ruleset.h"

/* The recipients as one log field, shortened for very long lists. */
static void
rcpt_list(const struct rule_query *q, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < q->nrcpt && used + 1 < len; i++) {
		int n = snprintf(buf + used, len - used, "%s<%s>",
		    i ? "," : "", q->rcpts[i]);

		if (n < 0 || (size_t)n >= len - used) {
			snprintf(buf + used, len - used, ",...");
			break;
		}
		used += (size_t)n;
	}
}

int
scanner_blacklisted(const char *queue_id, const struct rule_query *q,
    char *rule, size_t rulelen)
{
	char			 where[512], rcpts[400];
	int			 white = 0, black = 0, enabled;
	unsigned		 limit;

	pthread_mutex_lock(&capture.lock);
	enabled = capture.set.milter_scanner;
	limit = capture.set.whitelist_max_recips;
	pthread_mutex_unlock(&capture.lock);
	if (!enabled)
		return 0;

	snprintf(where, sizeof(where), "default");

	pthread_rwlock_rdlock(&capture.rules_lock);
	if (capture.whitelist != NULL)
		white = ruleset_eval(capture.whitelist, q, NULL, 0);
	/* MailScanner ignores the whitelist above the recipient limit. */
	if ((!white || (limit > 0 && q->nrcpt > limit)) &&
	    capture.blacklist != NULL)
		black = ruleset_eval(capture.blacklist, q, where,
		    sizeof(where));
	pthread_rwlock_unlock(&capture.rules_lock);

	snprintf(rule, rulelen, "%s", where);
	if (black) {
		rcpt_list(q, rcpts, sizeof(rcpts));
		log_notice("%s: REJECT blacklisted by %s: client=%s[%s] "
		    "from=<%s> to=%s%s", queue_id, where, q->client_name,
		    q->client_addr, q->sender, rcpts, white ?
		    " (whitelist ignored: too many recipients)" : "");
	}
	return black;
}

/* A serialized ruleset arriving in pieces from the parent. */
static struct {
	char		*buf;
	uint32_t	 total, have;
} incoming[2];

static void
report(void *arg, int severity, const char *file, unsigned line,
    const char *message)
{
	(void)arg;
	log_warnx("%s: %s:%u: %s", severity == RULESET_ERROR ? "error" :
	    "warning", file ? file : "rules", line, message);
}

/* Swap in a ruleset; evaluations in progress finish with the old one. */
static void
install_one(uint32_t which, struct ruleset *rs)
{
	struct ruleset **slot = which == RULES_WHITELIST ? &capture.whitelist :
	    &capture.blacklist;
	struct ruleset *old;

	pthread_rwlock_wrlock(&capture.rules_lock);
	old = *slot;
	*slot = rs;
	pthread_rwlock_unlock(&capture.rules_lock);
	if (old != NULL)
		ruleset_free(old);
}

/*
 * One piece; pieces of a ruleset come in order.  -1 when the parent sent
 * something that is not a piece of a well-formed ruleset.
 */
int
scanner_piece(const void *data, size_t len)
{
	struct ipc_rules	 h;
	struct ruleset		*rs;
	size_t			 n;

	if (len < sizeof(h))
		return -1;
	memcpy(&h, data, sizeof(h));
	n = len - sizeof(h);
	if (h.which > RULES_BLACKLIST || h.total > RULESET_SERIAL_MAX ||
	    (h.offset == 0) != (incoming[h.which].buf == NULL) ||
	    (h.offset != 0 && (h.total != incoming[h.which].total ||
	    h.offset != incoming[h.which].have)) || n > h.total - h.offset)
		return -1;
	if (h.offset == 0) {
		if ((incoming[h.which].buf = malloc(h.total + 1)) == NULL)
			return -1;
		incoming[h.which].total = h.total;
		incoming[h.which].have = 0;
	}
	memcpy(incoming[h.which].buf + h.offset, (const char *)data +
	    sizeof(h), n);
	incoming[h.which].have += (uint32_t)n;
	if (incoming[h.which].have < h.total)
		return 0;
	rs = ruleset_parse_serialized(incoming[h.which].buf, h.total, report,
	    NULL);
	free(incoming[h.which].buf);
	incoming[h.which].buf = NULL;
	if (rs == NULL)
		return -1;
	install_one(h.which, rs);
	log_info("%s rules installed", h.which == RULES_WHITELIST ?
	    "Is Definitely Not Spam" : "Is Definitely Spam");
	return 0;
}
