/*
 * libFuzzer harness for the control socket's request reader: any bytes,
 * fed whole and in every split a reader could see them in.  Never a
 * crash; an answer is one of the four; past the cap never "more"; a
 * request once refused stays refused as more bytes arrive.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "control_req.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int refused = 0;

	for (size_t n = 0; n <= size; n++) {
		enum control_req r = control_request(data, n);

		if (r != CONTROL_REQ_BAD && r != CONTROL_REQ_MORE &&
		    r != CONTROL_REQ_STATUS && r != CONTROL_REQ_STATUS_JSON)
			abort();
		if (n >= CONTROL_REQ_MAX && r == CONTROL_REQ_MORE)
			abort();
		if (refused && r != CONTROL_REQ_BAD)
			abort();
		if (r == CONTROL_REQ_BAD)
			refused = 1;
		if (r == CONTROL_REQ_STATUS || r == CONTROL_REQ_STATUS_JSON)
			refused = 1;	/* a complete request: more is junk */
	}
	return 0;
}
