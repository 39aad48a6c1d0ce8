/*
 * libFuzzer harness for the strict queue file reader: any bytes in
 * milterout must be read or refused with a reason, never crash, and what
 * is read must hold together (offsets inside the file, recipients there).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "qfile.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct qfile	 q;
	char		 err[128];
	int		 fd = memfd_create("fuzz-qfile", 0);

	if (fd == -1 || write(fd, data, size) != (ssize_t)size)
		abort();
	if (qfile_read(fd, &q, err, sizeof(err)) == 0) {
		if (q.sender == NULL || q.nrcpt == 0 || q.data_offset < 0 ||
		    q.data_offset >= (off_t)size)
			abort();
		for (size_t i = 0; i < q.nrcpt; i++)
			if (strpbrk(q.rcpts[i].addr, "\r\n") != NULL)
				abort();
		qfile_free(&q);
	} else if (err[0] == '\0')
		abort();
	close(fd);
	return 0;
}
