/*
 * libFuzzer harness for the IPC reader: any bytes as one record on a
 * SOCK_SEQPACKET channel must be accepted as a well-formed message or
 * refused with EPROTO, and a settings record must validate or be refused.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "child.h"
#include "config.h"
#include "ipc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static unsigned char	 buf[IPC_MAX_PAYLOAD];
	static int		 sv[2] = { -1, -1 };
	struct ipc_msg		 m = { .data = buf, .cap = sizeof(buf) };
	struct msm_settings	 s;
	int			 r;

	if (sv[0] == -1 && ipc_pair(sv) == -1)
		abort();
	if (size > IPC_MAX_PAYLOAD + 64)
		return 0;
	if (send(sv[0], data, size, 0) != (ssize_t)size)
		return 0;
	r = ipc_recv(sv[1], &m);
	if (r == 1) {
		if (m.hdr.len != size - sizeof(struct ipc_hdr))
			abort();	/* the length field was not checked */
		if (m.hdr.type == MSG_PARENT_SETTINGS &&
		    child_take_settings(m.data, m.hdr.len, &s) == 0 &&
		    config_validate(&s) != 0)
			abort();
	} else if (r == -1 && errno != EPROTO)
		abort();
	return 0;
}
