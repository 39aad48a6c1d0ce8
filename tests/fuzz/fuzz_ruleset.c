/*
 * libFuzzer harness for rulesets: any bytes as a rules file and as a
 * serialized ruleset.  Never a crash or a hang; a rules file that compiles
 * must survive serialize -> parse with the same bytes and the same answers;
 * a serialized ruleset is accepted only in exactly the form we write.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ruleset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
ignore(void *arg, int severity, const char *file, unsigned line,
    const char *message)
{
	(void)arg; (void)severity; (void)file; (void)line; (void)message;
}

/* Fixed messages, and one whose sender and host name are the input. */
static void
ask_all(const struct ruleset *a, const struct ruleset *b, const char *text)
{
	static const char *const rcpts[] = {
		"postmaster@example.com", "<a@b.example>", "abuse@you",
	};
	const struct rule_query q[] = {
		{ "user@example.com", rcpts, 3, "192.0.2.1", "mail.example.com" },
		{ "", rcpts, 1, "2001:db8::1", "unknown" },
		{ "<x@y.example>", NULL, 0, "10.1.2.3", NULL },
		{ text, rcpts + 2, 1, text, text },
	};
	char	 w1[512], w2[512];

	for (size_t i = 0; i < sizeof(q) / sizeof(q[0]); i++) {
		int v1 = ruleset_eval(a, &q[i], w1, sizeof(w1));

		if (v1 != 0 && v1 != 1)
			abort();
		if (b != NULL && (ruleset_eval(b, &q[i], w2, sizeof(w2)) != v1 ||
		    strcmp(w1, w2) != 0))
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char	*text = (const char *)data;
	struct ruleset	*rs, *rs2;
	char		*s1, *s2, short_text[128];
	size_t		 l1, l2;

	/* A query field made of the input's first bytes, NUL-terminated. */
	l1 = size < sizeof(short_text) - 1 ? size : sizeof(short_text) - 1;
	memcpy(short_text, data, l1);
	short_text[l1] = '\0';

	/* As a rules file (the fuzzer must not open files it names). */
	rs = ruleset_parse_text("fuzz", "fuzz.rules", text, size, 0,
	    RULESET_NO_FILES, ignore, NULL);
	if (rs != NULL) {
		if ((s1 = ruleset_serialize(rs, &l1)) == NULL)
			abort();
		if ((rs2 = ruleset_parse_serialized(s1, l1, ignore, NULL)) == NULL)
			abort();
		if ((s2 = ruleset_serialize(rs2, &l2)) == NULL || l1 != l2 ||
		    memcmp(s1, s2, l1) != 0)
			abort();
		ask_all(rs, rs2, short_text);
		free(s1);
		free(s2);
		ruleset_free(rs2);
		ruleset_free(rs);
	}

	/* As a serialized ruleset: canonical, so it serializes back as is. */
	rs = ruleset_parse_serialized(text, size, ignore, NULL);
	if (rs != NULL) {
		if ((s1 = ruleset_serialize(rs, &l1)) == NULL || l1 != size ||
		    memcmp(s1, data, size) != 0)
			abort();
		ask_all(rs, NULL, short_text);
		free(s1);
		ruleset_free(rs);
	}
	return 0;
}
