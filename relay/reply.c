/*
 * Parsers for what the MTA answers: SMTP reply lines and QMQP's answer
 * netstring.  Pure functions over bytes the relay has read, so that they
 * can be fuzzed on their own; the MTA is not trusted to be well-formed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

/*
 * Line number index of a reply into r.  1 when the reply is complete, 0
 * when more lines follow, -1 when the line is not a reply line or its
 * code differs from the earlier lines'.
 */
int
smtp_reply_line(struct reply *r, int index, const char *line)
{
	size_t	 used;
	int	 code;

	if (index == 0)
		memset(r, 0, sizeof(*r));
	used = strlen(r->all);
	if (strlen(line) < 3 || line[0] < '2' || line[0] > '5' ||
	    line[1] < '0' || line[1] > '9' || line[2] < '0' || line[2] > '9' ||
	    (line[3] != '\0' && line[3] != ' ' && line[3] != '-'))
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->code != 0 && code != r->code)
		return -1;
	r->code = code;
	if (index == 0)
		snprintf(r->text, sizeof(r->text), "%s", line);
	if (used < sizeof(r->all) - 1)
		snprintf(r->all + used, sizeof(r->all) - used, "%s\n",
		    line + (line[3] ? 4 : 3));
	return line[3] != '-';
}

/*
 * "12:Kok thanks," -> code 'K', text "ok thanks" (control characters
 * shown as '?').  1 when buf[0..got) holds a complete answer, 0 when more
 * bytes are needed, -1 when it cannot become one.
 */
int
qmqp_parse_answer(const char *buf, size_t got, char *code, char *text,
    size_t size)
{
	const char	*colon = memchr(buf, ':', got);
	size_t		 len = 0, digits;

	if (colon == NULL)
		return got > 10 ? -1 : 0;
	digits = (size_t)(colon - buf);
	if (digits == 0 || digits > 10)
		return -1;
	for (size_t i = 0; i < digits; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return -1;
		len = len * 10 + (size_t)(buf[i] - '0');
	}
	if (len == 0 || len > QMQP_REPLY_MAX)
		return -1;
	if (got < digits + len + 2)
		return 0;
	if (colon[1 + len] != ',')
		return -1;
	*code = colon[1];
	snprintf(text, size, "%.*s", (int)len - 1, colon + 2);
	for (char *p = text; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return 1;
}
