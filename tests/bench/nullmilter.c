/*
 * The ceiling of any discarding milter, for `make bench`: registers every
 * callback (DATA included, or Postfix stalls on each reply), keeps nothing,
 * and DISCARDs at end of message.  Not part of msmilter.
 */
#include <stdio.h>
#include <stdlib.h>

#include <libmilter/mfapi.h>

static sfsistat
null_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *addr)
{
	return SMFIS_CONTINUE;
}

static sfsistat
null_helo(SMFICTX *ctx, char *helo)
{
	return SMFIS_CONTINUE;
}

static sfsistat
null_args(SMFICTX *ctx, char **argv)
{
	return SMFIS_CONTINUE;
}

static sfsistat
null_header(SMFICTX *ctx, char *name, char *value)
{
	return SMFIS_CONTINUE;
}

static sfsistat
null_stage(SMFICTX *ctx)
{
	return SMFIS_CONTINUE;
}

static sfsistat
null_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
	return SMFIS_CONTINUE;
}

static sfsistat
null_eom(SMFICTX *ctx)
{
	return SMFIS_DISCARD;
}

static struct smfiDesc null_milter = {
	.xxfi_name = "nullmilter",
	.xxfi_version = SMFI_VERSION,
	.xxfi_connect = null_connect,
	.xxfi_helo = null_helo,
	.xxfi_envfrom = null_args,
	.xxfi_envrcpt = null_args,
	.xxfi_header = null_header,
	.xxfi_eoh = null_stage,
	.xxfi_body = null_body,
	.xxfi_eom = null_eom,
	.xxfi_abort = null_stage,
	.xxfi_close = null_stage,
	.xxfi_data = null_stage,
};

int
main(int argc, char *argv[])
{
	if (argc != 2) {
		fprintf(stderr, "usage: nullmilter inet:PORT@127.0.0.1\n");
		return 2;
	}
	if (smfi_setconn(argv[1]) == MI_FAILURE ||
	    smfi_register(null_milter) == MI_FAILURE)
		return 1;
	return smfi_main() == MI_SUCCESS ? 0 : 1;
}
