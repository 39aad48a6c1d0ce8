/*
 * libFuzzer harness for the relay's parsers of what the MTA answers: the
 * input is split into SMTP reply lines, and also read as a QMQP answer.
 * Never a crash; a complete reply has a code the classes allow.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "relay.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct reply	 r;
	char		 line[2048], code, text[400];
	size_t		 start = 0;
	int		 index = 0;

	memset(&r, 0, sizeof(r));
	for (size_t i = 0; i <= size; i++) {
		if (i < size && data[i] != '\n')
			continue;
		if (i - start < sizeof(line)) {
			int done;

			memcpy(line, data + start, i - start);
			line[i - start] = '\0';
			done = smtp_reply_line(&r, index, line);
			if (done == 1 && (r.code < 200 || r.code > 599))
				abort();
			index = done == 0 ? index + 1 : 0;
		}
		start = i + 1;
	}
	if (qmqp_parse_answer((const char *)data, size, &code, text,
	    sizeof(text)) == 1 && strlen(text) >= sizeof(text))
		abort();
	return 0;
}
