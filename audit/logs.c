/*
 * Reading the log's files for every command: put them in the order of
 * their first record (rotated names need not sort), hand out whole lines
 * with the file and line number, and print what came from the log
 * without letting it drive the terminal.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool.h"

/* The seq of the first record of path; -1 with a message printed. */
static int
first_seq(const char *path, uint64_t *seq)
{
	struct audit_line	 l = { 0 };
	FILE			*f = fopen(path, "r");
	char			*line = NULL, why[128];
	size_t			 cap = 0;
	ssize_t			 n;
	int			 rc = -1;

	if (f == NULL) {
		fprintf(stderr, "msmilter-audit: %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	if ((n = getline(&line, &cap, f)) <= 0)
		fprintf(stderr, "msmilter-audit: %s: empty\n", path);
	else if (audit_line_parse(line, (size_t)n - (line[n - 1] == '\n'),
	    &l, why, sizeof(why)) == -1)
		fprintf(stderr, "msmilter-audit: %s:1: not an audit record "
		    "(%s)\n", path, why);
	else {
		*seq = l.seq;
		rc = 0;
	}
	free(line);
	audit_line_free(&l);
	fclose(f);
	return rc;
}

static int
by_seq(const void *a, const void *b)
{
	const struct logfile *x = a, *y = b;

	return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

int
logs_order(char **paths, size_t n, struct logfile *out)
{
	for (size_t i = 0; i < n; i++) {
		out[i].path = paths[i];
		if (first_seq(paths[i], &out[i].first_seq) == -1)
			return -1;
	}
	qsort(out, n, sizeof(*out), by_seq);
	return 0;
}

static int
each_line(const char *path, line_fn fn, void *arg)
{
	FILE		*f = fopen(path, "r");
	char		*line = NULL;
	size_t		 cap = 0;
	ssize_t		 n;
	uint64_t	 lineno = 0;
	int		 rc = 0;

	if (f == NULL) {
		fprintf(stderr, "msmilter-audit: %s: %s\n", path,
		    strerror(errno));
		return -1;
	}
	while (rc == 0 && (n = getline(&line, &cap, f)) > 0) {
		int complete = line[n - 1] == '\n';

		rc = fn(arg, path, ++lineno, line, (size_t)n - complete,
		    complete);
	}
	if (rc == 0 && ferror(f)) {
		fprintf(stderr, "msmilter-audit: %s: read error\n", path);
		rc = -1;
	}
	free(line);
	fclose(f);
	return rc;
}

int
logs_each(const struct logfile *files, size_t n, line_fn fn, void *arg)
{
	for (size_t i = 0; i < n; i++) {
		int rc = each_line(files[i].path, fn, arg);

		if (rc != 0)
			return rc;
	}
	return 0;
}

void
print_safe(FILE *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c == 0x7f || c == '\\')
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
}

char *
read_small(const char *path, size_t max, size_t *len)
{
	char	*buf = malloc(max + 1);
	int	 fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t	 n = -1;

	if (buf != NULL && fd != -1)
		n = read(fd, buf, max + 1);
	if (fd != -1)
		close(fd);
	if (n < 0 || (size_t)n > max) {
		fprintf(stderr, "msmilter-audit: %s: %s\n", path, n < 0 ?
		    strerror(errno) : "too large");
		free(buf);
		return NULL;
	}
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

int
parse_when(const char *s, int64_t *us)
{
	static const char tail[] = "T00:00:00.000000Z";
	char full[32];
	size_t n = strlen(s);

	if (n > 0 && s[n - 1] == 'Z' && n != 27)
		n--;		/* "...:SSZ": the zone is always UTC */
	if (n == 27)
		return audit_time_parse(s, us);
	if (n != 10 && n != 16 && n != 19)
		return -1;
	memcpy(full, s, n);
	memcpy(full + n, tail + (n - 10), sizeof(tail) - (n - 10));
	return audit_time_parse(full, us);
}
