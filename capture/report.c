/*
 * What capture says of each committed message: the log line a person
 * greps for ("QID: from=<...>, size=..., nrcpt=..."), and, for the
 * Prometheus histogram msmilter_commit_seconds, the time Postfix waited
 * from the end of the message to our answer.  That wait is measured
 * here, not in the spooler: only capture sees the end of the message,
 * and the spooler's own clock misses the body still in flight, its
 * queue before the commit and the answer's way back.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "log.h"

static int
metrics_on(void)
{
	int on;

	pthread_mutex_lock(&capture.lock);
	on = capture.set.milter_metrics_file[0] != '\0';
	pthread_mutex_unlock(&capture.lock);
	return on;
}

void
capture_report_committed(const char *postfix_id,
    const struct ipc_committed *done, const char *sender, size_t nrcpt,
    uint64_t eom_us)
{
	struct ipc_commit_time	 t = { clock_now_us() - eom_us };
	int			 renamed = strcmp(done->queue_id,
				    postfix_id) != 0;

	/* Postfix's id first: the spooler named a fresh file if it had to. */
	log_info("%s: from=<%s>, size=%llu, nrcpt=%zu: discarded, "
	    "committed to milterin%s%s", postfix_id, sender,
	    (unsigned long long)done->size, nrcpt, renamed ? " as " : "",
	    renamed ? done->queue_id : "");
	if (metrics_on() && ipc_send(IPC_PARENT_FD, MSG_CAPTURE_COMMIT_TIME,
	    &t, sizeof(t), -1) == -1)
		log_warn("%s: sending the commit time", postfix_id);
}
