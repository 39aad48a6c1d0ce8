/*
 * The head of a queue file as MailScanner's MSMail reader expects it: the
 * envelope lines, then a Received header like Postfix's own, whose
 * "(name [addr])" MailScanner reads the client address from.  Input comes
 * from Postfix macros and SMTP arguments.  The envelope lines are written
 * by common/qfile.c, which refuses what the relay's reader would refuse
 * (capture has already answered 5xx at MAIL/RCPT for those); a CR or LF
 * in any other value would forge a header, so such values are refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "capture.h"
#include "qfile.h"

static const char *const day_names[] =
    { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char *const month_names[] =
    { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

void
received_date(int64_t when, char *buf, size_t len)
{
	time_t		 t = (time_t)when;
	struct tm	 tm;
	char		 zone[16], abbr[16];

	localtime_r(&t, &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	strftime(abbr, sizeof(abbr), "%Z", &tm);
	snprintf(buf, len, "%s, %d %s %d %02d:%02d:%02d %s (%s)",
	    day_names[tm.tm_wday % 7], tm.tm_mday, month_names[tm.tm_mon % 12],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec, zone, abbr);
}

static int
clean(const char *s)
{
	return s == NULL || strpbrk(s, "\r\n") == NULL;
}

/*
 * The HELO argument is the client's free text.  MailScanner reads the
 * client address from the first "(... [addr])" of our Received header, so
 * a HELO of "x (y [127.0.0.1])" would forge it: keep only what a host name
 * or an address literal can hold.
 */
static void
safe_helo(const char *helo, char *out, size_t size)
{
	size_t n = 0;

	for (; *helo != '\0' && n + 1 < size; helo++) {
		char c = *helo;

		out[n++] = ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || strchr(".-_:[]", c) != NULL) ?
		    c : '_';
	}
	out[n] = '\0';
}

/* What goes into the Received header; the envelope is qfile.c's. */
static int
received_clean(const struct envelope *e)
{
	return clean(e->helo) && clean(e->client_name) &&
	    clean(e->client_addr) && clean(e->by_host) &&
	    clean(e->tls_version) && clean(e->cipher) &&
	    clean(e->cipher_bits) && clean(e->queue_id);
}

static int
put_envelope(FILE *f, const struct envelope *e)
{
	const char *why;

	return qfile_put_lines(f, e->sender, e->auth_type, e->rcpts, e->nrcpt,
	    NULL, &why);
}

/*
 * SMTP after HELO, ESMTP after EHLO.  RFC 3848 defines the S (TLS) and A
 * (authenticated) suffixes for ESMTP only, and Postfix writes its own
 * Received header so: after HELO it is SMTP whatever else was used.
 */
const char *
received_protocol(int ehlo, int tls, int auth)
{
	if (!ehlo)
		return "SMTP";
	return tls && auth ? "ESMTPSA" : tls ? "ESMTPS" : auth ? "ESMTPA" :
	    "ESMTP";
}

static void
put_received(FILE *f, const struct envelope *e)
{
	char date[96], helo[256], name[256];

	/* Postfix checks client names, but a PTR record is the client's. */
	safe_helo(e->client_name, name, sizeof(name));
	safe_helo(e->helo != NULL && e->helo[0] ? e->helo : e->client_name,
	    helo, sizeof(helo));
	fprintf(f, "Received: from %s", helo);
	if (e->client_addr[0] != '\0')
		fprintf(f, " (%s [%s])\n", name, e->client_addr);
	else
		fprintf(f, " (%s)\n", name);
	if (e->tls_version != NULL) {
		fprintf(f, "\t(using %s with cipher %s (%s/%s bits))\n",
		    e->tls_version, e->cipher ? e->cipher : "unknown",
		    e->cipher_bits ? e->cipher_bits : "0",
		    e->cipher_bits ? e->cipher_bits : "0");
		if (!e->client_cert)
			fputs("\t(no client certificate requested)\n", f);
	}
	fprintf(f, "\tby %s (MailScanner Milter) with %s id %s", e->by_host,
	    received_protocol(e->ehlo, e->tls_version != NULL,
	    e->auth_type != NULL), e->queue_id);
	received_date(e->when, date, sizeof(date));
	if (e->nrcpt == 1)
		fprintf(f, "\n\tfor <%s>; %s\n", e->rcpts[0].addr, date);
	else
		fprintf(f, ";\n\t%s\n", date);
}

char *
received_head(const struct envelope *e, size_t *len)
{
	char	*buf = NULL;
	size_t	 size = 0;
	FILE	*f;
	int	 bad;

	if (!received_clean(e) || e->nrcpt == 0)
		return NULL;
	if ((f = open_memstream(&buf, &size)) == NULL)
		return NULL;
	bad = put_envelope(f, e) == -1;
	put_received(f, e);
	bad |= ferror(f);
	if (fclose(f) != 0 || bad) {
		free(buf);
		return NULL;
	}
	*len = size;
	return buf;
}
