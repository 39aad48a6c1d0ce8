/*
 * libFuzzer harness for msmilter-audit's line parser (common/audit_json.c),
 * which reads logs an attacker may have edited: any bytes must be parsed
 * or refused with a reason, never crash; a line it accepts must be the
 * exact bytes the writer would make from the values it read (so no two
 * spellings of one record exist), and the MAC must cover a prefix of it.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The fields again, as the parent's writer would put them. */
static void
encode(const struct audit_line *l, struct jbuf *b)
{
	jb_raw(b, "{", 1);
	for (size_t i = 0; i < l->nf; i++) {
		const struct audit_field *f = &l->f[i];

		switch (f->kind) {
		case JK_STR:
			jb_key(b, f->key);
			jb_str(b, f->str, f->len);
			break;
		case JK_NUM:
			jb_ku64(b, f->key, f->num);
			break;
		case JK_BOOL:
			jb_kbool(b, f->key, (int)f->num);
			break;
		case JK_ARRAY:
			jb_kpacked(b, f->key, f->str, f->len);
			break;
		}
	}
	jb_raw(b, "}", 1);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct audit_line	 l;
	struct jbuf			 b = { 0 };
	char				 why[128];

	why[0] = '\0';
	if (audit_line_parse((const char *)data, size, &l, why,
	    sizeof(why)) == -1) {
		if (why[0] == '\0')
			abort();
		return 0;
	}
	if (l.nf < 5 || l.event == NULL || !audit_event_known(l.event) ||
	    (l.has_mac && (l.mac_at == 0 || l.mac_at >= size)))
		abort();
	encode(&l, &b);
	if (b.failed || b.len != size || memcmp(b.p, data, size) != 0)
		abort();
	jb_free(&b);
	return 0;
}
