/*
 * Postfix queue ids (mail_queue.h): short = five hex digits of microseconds
 * then the inode number in hex; long = seconds in base 52 (six digits),
 * microseconds in base 52 (four), 'z', inode in base 51.  We have no inode
 * yet, so a random number stands in for it, as MailScanner's milter does.
 */
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include <sodium.h>

#include "config.h"
#include "ipc.h"
#include "queueid.h"

/* Base 52 digits; base 51 uses all but the final 'z', the separator. */
static const char base52[] =
    "0123456789BCDFGHJKLMNPQRSTVWXYZbcdfghjklmnpqrstvwxyz";

/* Write v in the given base, at least pad digits; returns chars written. */
static size_t
encode(uint64_t v, unsigned base, size_t pad, char *out, size_t room)
{
	char	 tmp[32];
	size_t	 n = 0;

	do {
		tmp[n++] = base52[v % base];
		v /= base;
	} while (v != 0 && n < sizeof(tmp));
	while (n < pad && n < sizeof(tmp))
		tmp[n++] = '0';
	if (n >= room)
		return 0;
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return n;
}

int
queueid_format(int type, uint64_t sec, uint32_t usec, uint32_t unique,
    char *buf, size_t len)
{
	size_t	 n, m, k;

	if (unique == 0)
		unique = 1;
	if (type == MSM_QUEUE_SHORT) {
		int r = snprintf(buf, len, "%05X%X", usec % 1000000, unique);
		return (r < 0 || (size_t)r >= len) ? -1 : 0;
	}
	if ((n = encode(sec, 52, 6, buf, len)) == 0)
		return -1;
	if ((m = encode(usec % 1000000, 52, 4, buf + n, len - n)) == 0)
		return -1;
	if (n + m + 1 >= len)
		return -1;
	buf[n + m] = 'z';
	k = encode(unique, 51, 1, buf + n + m + 1, len - n - m - 1);
	return k == 0 ? -1 : 0;
}

int
queueid_new(int type, char *buf, size_t len)
{
	struct timeval	tv;

	gettimeofday(&tv, NULL);
	/* 30 bits, like an inode number on a busy queue file system. */
	return queueid_format(type, (uint64_t)tv.tv_sec, (uint32_t)tv.tv_usec,
	    randombytes_uniform(1u << 30) + 1, buf, len);
}

int
queueid_valid(const char *s)
{
	size_t	 n = strnlen(s, QUEUEID_MAX);

	if (n == 0 || n >= QUEUEID_MAX)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') ||
		    (c >= 'a' && c <= 'z')))
			return 0;
	}
	return 1;
}
