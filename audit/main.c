/*
 * msmilter-audit: the audit log's key maker, verifier and reader
 * (msmilter-audit(8)).  Each command is its own file.
 */
#include <stdio.h>
#include <string.h>

#include <sodium.h>

#include "tool.h"

static int
usage(void)
{
	fprintf(stderr, "usage: msmilter-audit keygen -k KEYDIR -o OUTDIR "
	    "[--lifetime DAYS] [--epoch SECONDS]\n"
	    "       msmilter-audit verify [-p audit.pub] [-K audit.k0] "
	    "LOG...\n"
	    "       msmilter-audit show [--queue-id ID] [--sender A] "
	    "[--rcpt A] [--client IP]\n"
	    "                 [--event E] [--since T] [--until T] [--json] "
	    "LOG...\n"
	    "       msmilter-audit stats LOG...\n");
	return 64;
}

int
main(int argc, char **argv)
{
	static const struct {
		const char	*name;
		int		(*run)(int, char **);
	} cmds[] = {
		{ "keygen", cmd_keygen }, { "verify", cmd_verify },
		{ "show", cmd_show }, { "stats", cmd_stats },
	};

	if (sodium_init() == -1) {
		fprintf(stderr, "msmilter-audit: sodium_init failed\n");
		return 70;
	}
	if (argc < 2)
		return usage();
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (strcmp(argv[1], cmds[i].name) == 0)
			return cmds[i].run(argc - 1, argv + 1);
	return usage();
}
