/*
 * Between ruleset.c (compiling, serializing, evaluating: linked into
 * capture) and ruleset_read.c (reading rules and pattern files: the
 * parent's only).  The compiler reads files only through the reader it is
 * given, so a child, which links no reader, cannot open one through it.
 */
#ifndef MSM_RULESET_PRIV_H
#define MSM_RULESET_PRIV_H

#include <stddef.h>

#include "ruleset.h"

/*
 * A whole file of at most max bytes, NUL-terminated, *len without the
 * NUL; NULL with the reason (naming path) in err.
 */
typedef char *(*ruleset_read_fn)(const char *path, size_t max, size_t *len,
    char *err, size_t errlen);

/* ruleset_load() and ruleset_parse_text(), reading files with readfile. */
struct ruleset	*ruleset_from_setting(const char *setting_name,
		    const char *setting_value, int default_yes,
		    const char *const *words, ruleset_read_fn readfile,
		    ruleset_report_fn report, void *arg);
struct ruleset	*ruleset_from_text(const char *setting_name,
		    const char *file, const char *text, size_t len,
		    int default_yes, ruleset_read_fn readfile,
		    ruleset_report_fn report, void *arg);

#endif
