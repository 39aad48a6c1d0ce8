/*
 * The relay's queue as msmilter -s shows it: how many milterout files it
 * knows, how many are backing off after a temporary failure, the
 * earliest of their retries, and until when the MTA is left alone.  Sent
 * to the parent when it changed, at most once a second (counting the
 * waiting files walks the heap; a big backlog must not pay it for every
 * delivery).
 */
#include <string.h>
#include <time.h>

#include "log.h"
#include "relay.h"

static struct {
	struct ipc_relay_status	 sent;
	time_t			 at;
	int			 ever;
	int			 later;	/* skipped this second: look again */
} st;

static void
measure(const struct relay *r, time_t now, struct ipc_relay_status *s)
{
	memset(s, 0, sizeof(*s));
	s->files = r->nqueue > UINT32_MAX ? UINT32_MAX : (uint32_t)r->nqueue;
	for (size_t i = 0; i < r->nheap; i++) {
		const struct pending *p = r->heap[i];

		if (p->backoff == 0)
			continue;
		if (s->deferred < UINT32_MAX)
			s->deferred++;
		if (s->next_retry == 0 || p->due < s->next_retry)
			s->next_retry = p->due;
	}
	if (s->deferred > s->files)
		s->deferred = s->files;
	s->mta_down_until = r->mta_down_until > now ? r->mta_down_until : 0;
}

void
relay_status_report(struct relay *r, time_t now)
{
	struct ipc_relay_status s;

	if (st.ever && now == st.at) {
		st.later = 1;
		return;
	}
	st.later = 0;
	measure(r, now, &s);
	if (st.ever && memcmp(&s, &st.sent, sizeof(s)) == 0)
		return;
	if (ipc_send(IPC_PARENT_FD, MSG_RELAY_STATUS, &s, sizeof(s), -1) ==
	    -1) {
		log_warn("sending the queue status to the parent");
		return;
	}
	st.sent = s;
	st.at = now;
	st.ever = 1;
}

int
relay_status_timeout(int timeout_ms)
{
	/* A change in the second just sent goes out in the next one. */
	if (!st.later)
		return timeout_ms;
	return timeout_ms < 0 || timeout_ms > 1000 ? 1000 : timeout_ms;
}
