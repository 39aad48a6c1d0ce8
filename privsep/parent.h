/*
 * The privsep parent: reads the configuration, starts each child by
 * fork+exec with its channel on descriptor 3, introduces capture to the
 * spooler, relays their logs and restarts them when they die.
 */
#ifndef MSM_PARENT_H
#define MSM_PARENT_H

#include <signal.h>
#include <sys/types.h>
#include <time.h>

#include "config.h"
#include "ipc.h"

/* Started in this order: the spooler must be there for the others. */
enum child_id { CHILD_SPOOLER, CHILD_CAPTURE, CHILD_RELAY, CHILD_COUNT };

/* Times are milliseconds of CLOCK_MONOTONIC (parent_now()); 0: none. */
struct child {
	const char	*name;		/* "spooler", "capture" */
	char		 path[MSM_PATH_LEN];	/* executable */
	pid_t		 pid;		/* 0 when not running */
	int		 chan;		/* our end of its channel, -1 if none */
	int		 ready;		/* it sent MSG_CHILD_READY */
	int		 stopping;	/* we asked it to exit */
	int		 restart_now;	/* intentional restart: no backoff */
	int		 setup_expired;	/* killed for not getting ready */
	unsigned	 failures;	/* deaths before ready, in a row */
	long long	 started;
	long long	 ready_by;	/* set-up deadline while not ready */
	long long	 restart_at;	/* when to start it again */
	/* What it said of itself (MSG_CHILD_CONFINED, MSG_RELAY_STATUS). */
	int		 confined;	/* it reported, this start */
	int		 landlock_abi;	/* 0: no Landlock in force */
	int		 landlock_tcp;
	int		 has_status;	/* relay: status below is set */
	struct ipc_relay_status status;
};

/* Milter Scanner rulesets, serialized for capture. */
struct parent_rules {
	char	*text[2];	/* by enum ipc_rules_which */
	size_t	 len[2];
};

struct parent {
	struct msm_settings	 set;
	char			 config_path[MSM_PATH_LEN];
	int			 foreground, debug, cmdline_debug;
	struct child		 children[CHILD_COUNT];
	int			 starting;	/* not every child ready yet */
	int			 ready_fd;	/* -F not given: tell the
						 * process that started us */
	int			 sigfd;
	int			 terminating;
	time_t			 terminate_deadline;
	int			 pidfd;
	struct parent_rules	 rules;
};

/* rules.c */
int	rules_load(const struct msm_settings *, struct parent_rules *);
void	rules_free(struct parent_rules *);
void	rules_send(struct parent *);
int	rules_test(const struct msm_settings *, int argc, char **argv);

/* children.c */
long long parent_now(void);
void	children_init(struct parent *);
int	child_start(struct parent *, struct child *);
void	child_reaped(struct parent *, pid_t, int status);
void	child_read(struct parent *, struct child *);
void	children_link(struct parent *, enum child_id started);
void	children_timers(struct parent *, long long now);
long long children_next_timer(const struct parent *);
void	child_stop(struct child *, int sig);
int	children_running(const struct parent *);
int	children_ready(const struct parent *);
void	children_send_settings(struct parent *);

#endif
