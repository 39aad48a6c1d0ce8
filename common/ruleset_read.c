/*
 * The parent's side of rulesets: reading rules and pattern files (see
 * ruleset_priv.h).  Kept out of ruleset.c so that capture, which compiles
 * only the serialized text the parent sends, links no code that opens a
 * file.  Only regular files: a FIFO or a device must not hang or flood
 * the parent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ruleset.h"
#include "ruleset_priv.h"

/* Read all of fd, at most max bytes; NULL with err. */
static char *
read_all(int fd, const char *path, size_t max, size_t *lenp, char *err,
    size_t errlen)
{
	char	*buf = NULL, *nb;
	size_t	 len = 0, cap = 0;
	ssize_t	 n;

	for (;;) {
		if (len == cap) {
			size_t ncap = cap ? cap * 2 : 8192;

			if (ncap > max + 1)
				ncap = max + 1;
			if (ncap == cap) {
				snprintf(err, errlen, "%s is larger than %zu "
				    "bytes", path, max);
				goto fail;
			}
			if ((nb = realloc(buf, ncap + 1)) == NULL) {
				snprintf(err, errlen, "out of memory reading "
				    "%s", path);
				goto fail;
			}
			buf = nb;
			cap = ncap;
		}
		n = read(fd, buf + len, cap - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			snprintf(err, errlen, "cannot read %s: %s", path,
			    strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	if (buf == NULL && (buf = malloc(1)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	buf[len] = '\0';
	*lenp = len;
	return buf;
fail:
	free(buf);
	return NULL;
}

static char *
read_file(const char *path, size_t max, size_t *lenp, char *err,
    size_t errlen)
{
	struct stat	 st;
	char		*buf = NULL;
	int		 fd;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		snprintf(err, errlen, "cannot open %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) == -1)
		snprintf(err, errlen, "cannot stat %s: %s", path,
		    strerror(errno));
	else if (!S_ISREG(st.st_mode))
		snprintf(err, errlen, "%s is not a regular file", path);
	else
		buf = read_all(fd, path, max, lenp, err, errlen);
	close(fd);
	return buf;
}

struct ruleset *
ruleset_load(const char *setting_name, const char *setting_value,
    int default_yes, ruleset_report_fn report, void *arg)
{
	return ruleset_from_setting(setting_name, setting_value, default_yes,
	    NULL, read_file, report, arg);
}

struct ruleset *
ruleset_load_words(const char *setting_name, const char *setting_value,
    const char *const words[2], int default_yes, ruleset_report_fn report,
    void *arg)
{
	return ruleset_from_setting(setting_name, setting_value, default_yes,
	    words, read_file, report, arg);
}

struct ruleset *
ruleset_parse_text(const char *setting_name, const char *file,
    const char *text, size_t len, int default_yes, int flags,
    ruleset_report_fn report, void *arg)
{
	return ruleset_from_text(setting_name, file, text, len, default_yes,
	    (flags & RULESET_NO_FILES) ? NULL : read_file, report, arg);
}
