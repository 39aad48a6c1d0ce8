/*
 * See testhook.h.  Compiled to nothing unless MSM_TESTHOOKS is defined.
 * Each action is one raw system call (or one IPC record), so what the
 * kernel sees is exactly what the test asked for.
 */
#include "testhook.h"

#ifdef MSM_TESTHOOKS
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "ipc.h"

static void
on_hook(int sig)
{
	static char *const	 argv[] = { "true", NULL };
	struct sockaddr_in	 sin;

	switch (sig - SIGRTMIN) {
	case TESTHOOK_OPEN:
		syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY);
		break;
	case TESTHOOK_EXEC:
		syscall(SYS_execve, "/bin/true", argv, argv + 1);
		break;
	case TESTHOOK_CONNECT:
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		sin.sin_port = htons(25);
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		syscall(SYS_connect, IPC_PARENT_FD, &sin, sizeof(sin));
		break;
	case TESTHOOK_SOCKET:
		syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
		break;
	case TESTHOOK_BAD_RECORD:
		/* A child never sends STOP; the parent must kill us for it. */
		ipc_send(IPC_PARENT_FD, MSG_PARENT_STOP, NULL, 0, -1);
		break;
	}
}

void
testhook_install(int proc)
{
	struct sigaction sa;

	(void)proc;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_hook;
	sa.sa_flags = SA_RESTART;
	for (int a = TESTHOOK_OPEN; a < TESTHOOK_COUNT; a++)
		sigaction(SIGRTMIN + a, &sa, NULL);
}
#else
/* ISO C wants something in every translation unit. */
typedef int testhook_unused;
#endif
