/*
 * The parent's side of Milter Scanner: read and compile MailScanner's
 * rulesets (capture cannot open files), refuse a configuration whose
 * rules do not parse, and send capture the serialized rules in pieces.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ipc.h"
#include "log.h"
#include "parent.h"
#include "ruleset.h"

static void
report(void *arg, int severity, const char *file, unsigned line,
    const char *message)
{
	int *errors = arg;

	if (severity == RULESET_ERROR) {
		(*errors)++;
		if (file != NULL)
			log_warnx("error: %s:%u: %s", file, line, message);
		else
			log_warnx("error: %s", message);
	} else if (file != NULL)
		log_warnx("warning: %s:%u: %s", file, line, message);
	else
		log_warnx("warning: %s", message);
}

/* Compile one setting's ruleset and keep its serialized text. */
static int
load_one(const char *name, const char *value, char **text, size_t *len)
{
	struct ruleset	*rs;
	int		 errors = 0;

	rs = ruleset_load(name, value, 0, report, &errors);
	if (rs == NULL || errors > 0) {
		if (rs != NULL)
			ruleset_free(rs);
		return errors > 0 ? errors : 1;
	}
	*text = ruleset_serialize(rs, len);
	ruleset_free(rs);
	if (*text == NULL || *len > UINT32_MAX) {
		log_warnx("error: %s: out of memory", name);
		return 1;
	}
	return 0;
}

int
rules_load(const struct msm_settings *s, struct parent_rules *out)
{
	struct parent_rules	 next;
	int			 errors;

	memset(&next, 0, sizeof(next));
	errors = load_one("Is Definitely Not Spam", s->spam_whitelist,
	    &next.text[RULES_WHITELIST], &next.len[RULES_WHITELIST]);
	errors += load_one("Is Definitely Spam", s->spam_blacklist,
	    &next.text[RULES_BLACKLIST], &next.len[RULES_BLACKLIST]);
	if (errors > 0) {
		rules_free(&next);
		return errors;
	}
	rules_free(out);
	*out = next;
	return 0;
}

void
rules_free(struct parent_rules *r)
{
	for (int i = 0; i < 2; i++)
		free(r->text[i]);
	memset(r, 0, sizeof(*r));
}

/* Both rulesets to capture, each in pieces that fit a record. */
void
rules_send(struct parent *p)
{
	struct child	*c = &p->children[CHILD_CAPTURE];

	if (!c->ready || c->chan == -1)
		return;
	for (uint32_t which = 0; which < 2; which++) {
		const char	*text = p->rules.text[which];
		uint32_t	 total = (uint32_t)p->rules.len[which];
		uint32_t	 off = 0;

		if (text == NULL)
			continue;
		do {
			struct ipc_rules h = { which, total, off };
			uint32_t n = total - off < IPC_RULES_CHUNK ?
			    total - off : IPC_RULES_CHUNK;

			if (ipc_sendv2(c->chan, MSG_PARENT_RULES, &h, sizeof(h),
			    text + off, n, -1) == -1) {
				/* Half a ruleset is no ruleset: start afresh. */
				log_warn("sending rules to capture; restarting it");
				child_stop(c, SIGKILL);
				return;
			}
			off += n;
		} while (off < total);
	}
}

/*
 * msmilter -t --rule-test FROM TO[,TO...] IP [NAME]: what Milter Scanner
 * would decide, and which rule decided, without sending mail.
 */
int
rules_test(const struct msm_settings *s, int argc, char **argv)
{
	struct ruleset		*white, *black;
	struct rule_query	 q;
	char			*tos, *tok, *save = NULL;
	const char		*rcpts[1000];
	char			 wwhere[512], bwhere[512];
	int			 errors = 0, w, b;
	size_t			 n = 0;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: msmilter -t [-f config] --rule-test "
		    "FROM TO[,TO...] IP [NAME]\n");
		return 2;
	}
	if ((tos = strdup(argv[1])) == NULL)
		return 1;
	for (tok = strtok_r(tos, ",", &save); tok != NULL && n < 1000;
	    tok = strtok_r(NULL, ",", &save))
		rcpts[n++] = tok;
	white = ruleset_load("Is Definitely Not Spam", s->spam_whitelist, 0,
	    report, &errors);
	black = ruleset_load("Is Definitely Spam", s->spam_blacklist, 0,
	    report, &errors);
	if (white == NULL || black == NULL || errors > 0) {
		fprintf(stderr, "rulesets have errors; nothing tested\n");
		free(tos);
		return 1;
	}
	memset(&q, 0, sizeof(q));
	q.sender = argv[0];
	q.rcpts = rcpts;
	q.nrcpt = n;
	q.client_addr = argv[2];
	q.client_name = argc == 4 ? argv[3] : "unknown";
	w = ruleset_eval(white, &q, wwhere, sizeof(wwhere));
	b = ruleset_eval(black, &q, bwhere, sizeof(bwhere));
	printf("Is Definitely Not Spam: %s (%s)\n", w ? "yes" : "no", wwhere);
	printf("Is Definitely Spam: %s (%s)\n", b ? "yes" : "no", bwhere);
	if (!s->milter_scanner)
		printf("verdict: spooled (Milter Scanner = no)\n");
	else if (b && (!w || (s->whitelist_max_recips > 0 &&
	    n > s->whitelist_max_recips)))
		printf("verdict: REJECT 554 5.7.1 %s (rule %s%s)\n",
		    s->milter_reject_text, bwhere, w ? "; whitelist ignored: "
		    "more recipients than Ignore Spam Whitelist If Recipients "
		    "Exceed" : "");
	else
		printf("verdict: spooled%s\n", w ? " (whitelisted)" : "");
	ruleset_free(white);
	ruleset_free(black);
	free(tos);
	return 0;
}
