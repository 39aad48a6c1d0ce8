/*
 * libFuzzer harness for the MailScanner.conf reader: any bytes as a
 * configuration file must give errors, never a crash or a hang.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
ignore(void *arg, int severity, const char *file, unsigned line,
    const char *key, const char *message)
{
	(void)arg; (void)severity; (void)file; (void)line; (void)key;
	(void)message;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct msm_settings	 s;
	char				 path[64];
	int				 fd = memfd_create("fuzz-config", 0);

	if (fd == -1)
		abort();
	if (write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (config_load(path, &s, ignore, NULL) == 0) {
		/* A configuration that loads must also validate and print. */
		if (config_validate(&s) != 0)
			abort();
		config_check(&s, ignore, NULL);
	}
	close(fd);
	return 0;
}
