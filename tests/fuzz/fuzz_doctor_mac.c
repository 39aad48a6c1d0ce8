/*
 * libFuzzer harness for the doctor's readers of what SELinux and
 * AppArmor say (privsep/doctor_mac.c): a security.selinux context and
 * the kernel's profile list.  Both come from the kernel, but a reader
 * must still take any bytes: never a crash, never a read or write past
 * a buffer, and what it returns is inside what it was given.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The readers are static: take them with the file. */
#include "../../privsep/doctor_mac.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		*text, type[128], mode[32];
	const char	*name, *got;
	size_t		 nlen;

	if ((text = malloc(size + 1)) == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';

	/* A context, up to its first NUL. */
	context_type(text, type, sizeof(type));
	if (strlen(type) >= sizeof(type) || (type[0] != '\0' &&
	    strstr(text, type) == NULL))
		abort();

	/* A profile list, and a name after its first NUL (or a fixed one). */
	nlen = strlen(text);
	name = nlen < size ? (const char *)data + nlen + 1 : "msmilter";
	if (nlen < size && memchr(name, '\0', size - nlen - 1) == NULL)
		name = "msmilter-relay";
	got = profile_mode(text, name, mode, sizeof(mode));
	if (got != NULL && (got != mode || strlen(mode) >= sizeof(mode)))
		abort();
	free(text);
	return 0;
}
