/*
 * Start-up shared by the children (see child.h).  The parent is trusted
 * to the extent that it started us, but its records are still checked.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "child.h"
#include "ipc.h"
#include "landlock.h"
#include "log.h"
#include "sandbox.h"

#define SETTINGS_TIMEOUT_MS	30000

void
child_init(const char *procname)
{
	if (!ipc_is_socket(IPC_PARENT_FD, SOCK_SEQPACKET)) {
		fprintf(stderr, "%s: not started by msmilter (no channel on "
		    "descriptor %d); run msmilter instead\n", procname,
		    IPC_PARENT_FD);
		exit(2);
	}
	log_init_child(procname, IPC_PARENT_FD, 0);
}

int
child_take_settings(const void *data, size_t len, struct msm_settings *s)
{
	struct msm_settings	 tmp;
	const void		*body;
	char			 why[256];

	if (ipc_settings_open(data, &len, sizeof(tmp), &body, why,
	    sizeof(why)) == -1)
		return -1;
	memcpy(&tmp, body, sizeof(tmp));
	if (config_validate(&tmp) != 0)
		return -1;
	*s = tmp;
	log_set_debug(s->debug);
	return 0;
}

/*
 * A parent of another protocol version (an upgrade under a running
 * msmilter) is refused before anything it sent is interpreted; the exit
 * status tells the parent why, in case it cannot read our log line.
 */
static void
check_protocol(const struct ipc_msg *m)
{
	const void	*body;
	size_t		 len = m->hdr.len;
	char		 why[256];

	if (ipc_settings_open(m->data, &len, sizeof(struct msm_settings),
	    &body, why, sizeof(why)) == 0)
		return;
	log_warnx("refusing to run: %s; restart msmilter after an upgrade so "
	    "that parent and children are the same version", why);
	exit(CHILD_EXIT_PROTOCOL);
}

void
child_get_settings(struct msm_settings *s)
{
	/* Room for any record: an older parent's may be larger. */
	static unsigned char	 buf[IPC_MAX_PAYLOAD];
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	struct pollfd		 pfd = { IPC_PARENT_FD, POLLIN, 0 };
	int			 r;

	r = poll(&pfd, 1, SETTINGS_TIMEOUT_MS);
	if (r <= 0)
		fatalx("no settings from the parent within %d s",
		    SETTINGS_TIMEOUT_MS / 1000);
	r = ipc_recv(IPC_PARENT_FD, &m);
	if (r <= 0)
		fatal("reading settings from the parent");
	if (m.hdr.type == MSG_PARENT_SETTINGS)
		check_protocol(&m);
	if (m.hdr.type != MSG_PARENT_SETTINGS ||
	    child_take_settings(m.data, m.hdr.len, s) != 0)
		fatalx("bad first record from the parent: %s, %u bytes",
		    ipc_type_name(m.hdr.type), m.hdr.len);
}

void
child_become_run_as(const struct msm_settings *s)
{
	struct sandbox_creds	 creds;
	char			 err[512];
	const char		*group = s->incoming_work_group[0] ?
				    s->incoming_work_group : s->run_as_group;

	if (sandbox_lookup(s->run_as_user, group, &creds, err,
	    sizeof(err)) == -1)
		fatalx("Run As User/Group: %s", err);
	/* The parent refuses root too; this is the last line of defence. */
	if (sandbox_privileged() && (creds.uid == 0 || creds.gid == 0))
		fatalx("Run As User/Group %s resolves to root (%u:%u); refusing "
		    "to run as root", creds.user, (unsigned)creds.uid,
		    (unsigned)creds.gid);
	if (sandbox_enter(&creds, NULL, err, sizeof(err)) == -1)
		fatalx("%s", err);
	log_info("running as %s", creds.user);
}

void
child_ready(void)
{
	struct ipc_confined	 conf;
	int			 tcp;

	/* What Landlock holds us to: /proc does not show it the parent. */
	memset(&conf, 0, sizeof(conf));
	conf.landlock_abi = landlock_applied(&tcp);
	conf.flags = tcp ? IPC_CONFINED_LL_TCP : 0;
	if (ipc_send(IPC_PARENT_FD, MSG_CHILD_CONFINED, &conf, sizeof(conf),
	    -1) == -1)
		fatal("telling the parent how we are confined");
	if (ipc_send(IPC_PARENT_FD, MSG_CHILD_READY, NULL, 0, -1) == -1)
		fatal("telling the parent we are ready");
}
