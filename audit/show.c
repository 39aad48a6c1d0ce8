/*
 * msmilter-audit show and stats: the records that match, as a table or
 * as the JSON lines themselves, and counts per event and per hour.  They
 * read, they do not verify (that is verify's job); a line that is not a
 * record is reported and skipped.  Values came from SMTP clients: the
 * table prints them with non-printable bytes escaped.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tool.h"

/* The events about mail (the rest are the log's own records). */
#define NMAIL	9

struct filter {
	const char	*queue_id, *sender, *rcpt, *client, *event;
	int64_t		 since, until;	/* microseconds; until 0: none */
	int		 json;
};

/* Records that keep the log sealed: shown only when asked for. */
static int
seal_record(const char *event)
{
	return strcmp(event, "epoch_close") == 0 ||
	    strcmp(event, "checkpoint") == 0 ||
	    strcmp(event, "file_start") == 0;
}

static int
has_rcpt(const struct audit_line *l, const char *want)
{
	const struct audit_field	*f = audit_line_get(l, "rcpts");
	const char			*r;

	if (f == NULL || f->kind != JK_ARRAY)
		return 0;
	r = f->str;
	for (size_t i = 0; i < f->len; i++, r += strlen(r) + 1)
		if (strcasecmp(r, want) == 0)
			return 1;
	return 0;
}

static int
matches(const struct filter *fl, const struct audit_line *l)
{
	if (fl->event != NULL ? strcmp(l->event, fl->event) != 0 :
	    seal_record(l->event))
		return 0;
	if (fl->queue_id != NULL &&
	    strcmp(audit_line_str(l, "queue_id"), fl->queue_id) != 0 &&
	    strcmp(audit_line_str(l, "requeued_as"), fl->queue_id) != 0)
		return 0;
	if (fl->sender != NULL &&
	    strcasecmp(audit_line_str(l, "sender"), fl->sender) != 0)
		return 0;
	if (fl->client != NULL &&
	    strcmp(audit_line_str(l, "client_addr"), fl->client) != 0)
		return 0;
	if (fl->rcpt != NULL && !has_rcpt(l, fl->rcpt))
		return 0;
	return l->time_us >= fl->since && (fl->until == 0 ||
	    l->time_us < fl->until);
}

static void
print_field(const struct audit_line *l, const char *key)
{
	const char *s = audit_line_str(l, key);

	print_safe(stdout, s, strlen(s));
}

/* What a record says beyond the envelope, in a few words. */
static void
print_detail(const struct audit_line *l)
{
	static const char *const keys[] = { "rule", "reason", "reply",
	    "requeued_as", "status", "child", "result", "signature", "digest",
	    NULL };

	for (int i = 0; keys[i] != NULL; i++)
		if (audit_line_str(l, keys[i])[0] != '\0') {
			printf(" %s=", keys[i]);
			print_field(l, keys[i]);
		}
}

static void
print_row(const struct audit_line *l)
{
	const struct audit_field	*f = audit_line_get(l, "rcpts");
	const char			*r;

	printf("%s %6llu %-15s %-14s ", l->time, (unsigned long long)l->seq,
	    l->event, audit_line_str(l, "queue_id")[0] ?
	    audit_line_str(l, "queue_id") : "-");
	print_field(l, "client_addr");
	if (audit_line_get(l, "sender") != NULL) {
		printf(" <");
		print_field(l, "sender");
		printf(">");
	}
	if (f != NULL && f->kind == JK_ARRAY) {
		r = f->str;
		printf(" ->");
		for (size_t i = 0; i < f->len; i++, r += strlen(r) + 1) {
			printf(" <");
			print_safe(stdout, r, strlen(r));
			printf(">");
		}
	}
	print_detail(l);
	printf("\n");
}

struct reader {
	struct filter	 fl;
	struct audit_line l;
	int		 bad;
	/* stats */
	char		 (*events)[32];
	uint64_t	*counts;
	size_t		 nevents;
	char		 hour[14];	/* "2026-11-24T10" */
	uint64_t	 hour_mail[NMAIL];	/* by mail_events[] */
};

static int
parse(struct reader *r, const char *file, uint64_t lineno, const char *line,
    size_t len, int complete)
{
	char why[128];

	if (complete && audit_line_parse(line, len, &r->l, why,
	    sizeof(why)) == 0)
		return 0;
	fprintf(stderr, "msmilter-audit: %s:%llu: skipped: %s\n", file,
	    (unsigned long long)lineno, complete ? why : "incomplete line");
	r->bad++;
	return -1;
}

static int
show_line(void *arg, const char *file, uint64_t lineno, const char *line,
    size_t len, int complete)
{
	struct reader *r = arg;

	if (parse(r, file, lineno, line, len, complete) == -1 ||
	    !matches(&r->fl, &r->l))
		return 0;
	if (r->fl.json) {
		fwrite(line, 1, len, stdout);
		putchar('\n');
	} else
		print_row(&r->l);
	return 0;
}

static int
show_args(int argc, char **argv, struct filter *fl)
{
	static const struct option longopts[] = {
		{ "queue-id", required_argument, NULL, 'q' },
		{ "sender", required_argument, NULL, 's' },
		{ "rcpt", required_argument, NULL, 'r' },
		{ "client", required_argument, NULL, 'c' },
		{ "event", required_argument, NULL, 'e' },
		{ "since", required_argument, NULL, 'S' },
		{ "until", required_argument, NULL, 'U' },
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (ch) {
		case 'q': fl->queue_id = optarg; break;
		case 's': fl->sender = optarg; break;
		case 'r': fl->rcpt = optarg; break;
		case 'c': fl->client = optarg; break;
		case 'e': fl->event = optarg;
			if (!audit_event_known(optarg))
				return -1;
			break;
		case 'S': if (parse_when(optarg, &fl->since) == -1)
				return -1;
			break;
		case 'U': if (parse_when(optarg, &fl->until) == -1)
				return -1;
			break;
		case 'j': fl->json = 1; break;
		default: return -1;
		}
	}
	return optind < argc ? 0 : -1;
}

static int
run(int argc, char **argv, struct reader *r, line_fn fn)
{
	size_t		 n = (size_t)(argc - optind);
	struct logfile	*files = calloc(n, sizeof(*files));
	int		 rc;

	if (files == NULL || logs_order(argv + optind, n, files) == -1)
		rc = 66;
	else
		rc = logs_each(files, n, fn, r) == 0 ? 0 : 66;
	free(files);
	audit_line_free(&r->l);
	return rc;
}

int
cmd_show(int argc, char **argv)
{
	struct reader r;

	memset(&r, 0, sizeof(r));
	if (show_args(argc, argv, &r.fl) == -1) {
		fprintf(stderr, "usage: msmilter-audit show [--queue-id ID] "
		    "[--sender A] [--rcpt A] [--client IP] [--event E]\n"
		    "       [--since T] [--until T] [--json] LOG...\n"
		    "  T: YYYY-MM-DD[THH:MM[:SS]] in UTC\n");
		return 64;
	}
	return run(argc, argv, &r, show_line);
}

/* ---- stats ---- */

static void
count_event(struct reader *r, const char *event)
{
	for (size_t i = 0; i < r->nevents; i++)
		if (strcmp(r->events[i], event) == 0) {
			r->counts[i]++;
			return;
		}
	r->events = realloc(r->events, (r->nevents + 1) * sizeof(*r->events));
	r->counts = realloc(r->counts, (r->nevents + 1) * sizeof(*r->counts));
	if (r->events == NULL || r->counts == NULL) {
		fprintf(stderr, "msmilter-audit: out of memory\n");
		exit(70);
	}
	snprintf(r->events[r->nevents], sizeof(r->events[0]), "%s", event);
	r->counts[r->nevents++] = 1;
}

static const char *const mail_events[NMAIL] = { "accept_loopback",
    "reject", "tempfail", "commit", "delivered", "deferred", "requeued",
    "quarantined", "scan" };

/* Index in mail_events, or -1 for the log's own records. */
static int
mail_event(const char *event)
{
	for (int i = 0; i < NMAIL; i++)
		if (strcmp(event, mail_events[i]) == 0)
			return i;
	return -1;
}

static void
flush_hour(struct reader *r)
{
	int any = 0;

	for (int i = 0; i < NMAIL; i++)
		any |= r->hour_mail[i] > 0;
	if (r->hour[0] != '\0' && any) {
		printf("  %.10s %.2s:00 ", r->hour, r->hour + 11);
		for (int i = 0; i < NMAIL; i++)
			if (r->hour_mail[i] > 0)
				printf(" %s %llu", mail_events[i],
				    (unsigned long long)r->hour_mail[i]);
		printf("\n");
	}
	memset(r->hour_mail, 0, sizeof(r->hour_mail));
}

static int
stats_line(void *arg, const char *file, uint64_t lineno, const char *line,
    size_t len, int complete)
{
	struct reader	*r = arg;
	int		 i;

	if (parse(r, file, lineno, line, len, complete) == -1)
		return 0;
	count_event(r, r->l.event);
	if ((i = mail_event(r->l.event)) == -1)
		return 0;
	if (strncmp(r->hour, r->l.time, 13) != 0) {
		flush_hour(r);
		snprintf(r->hour, sizeof(r->hour), "%.13s", r->l.time);
	}
	r->hour_mail[i]++;
	return 0;
}

int
cmd_stats(int argc, char **argv)
{
	struct reader	 r;
	int		 rc;

	memset(&r, 0, sizeof(r));
	optind = 1;
	if (argc < 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: msmilter-audit stats LOG...\n");
		return 64;
	}
	printf("mail records per hour (UTC):\n");
	rc = run(argc, argv, &r, stats_line);
	flush_hour(&r);
	printf("records per event:\n");
	for (size_t i = 0; i < r.nevents; i++)
		printf("  %-16s %llu\n", r.events[i],
		    (unsigned long long)r.counts[i]);
	if (r.bad > 0)
		printf("  (%d line%s not read)\n", r.bad, r.bad == 1 ? "" : "s");
	free(r.events);
	free(r.counts);
	return rc;
}
