/*
 * The MailScanner.conf reader, with MailScanner's rules (percent
 * variables, include globs, last value wins): the parent's only, kept out
 * of config.c so that no child links code that opens, globs or reads a
 * configuration file.  Values go through config.c's key table.  Trusts
 * nothing in the files it reads: every problem names file, line and key.
 */
#include <sys/stat.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "config_priv.h"
#include "ruleset.h"

#define MAX_INCLUDE_DEPTH	8	/* include nesting limit */
#define MAX_EXPANDED		65536	/* after %var% expansion */
#define MAX_VARS		4096	/* percent variables */
#define ORG_NAME_VAR		"org-name"

/* Where in which file we are. */
struct pvar {
	char	*name;		/* lowercased, without the % signs */
	char	*value;
};

struct file_id {
	dev_t	dev;
	ino_t	ino;
};

/* Everything one config_load() call needs; no global mutable state. */
struct loader {
	struct msm_settings	*s;
	struct reporter		 rep;
	struct pvar		*vars;
	size_t			 nvars, capvars;
	struct file_id		 open[MAX_INCLUDE_DEPTH + 1];
	int			 depth;		/* files in open[] */
};

/* Growing string for %var% substitution. */
struct sbuf {
	char	*p;
	size_t	 len, cap;
	int	 err;		/* ENOMEM or E2BIG */
};

static void	read_file(struct loader *, const char *, const struct pos *);

/* ---- small helpers ---- */

static char *
trim(char *p)
{
	size_t	 n;

	while (isspace((unsigned char)*p))
		p++;
	n = strlen(p);
	while (n > 0 && isspace((unsigned char)p[n - 1]))
		p[--n] = '\0';
	return p;
}

/* ---- percent variables ---- */

static void
sbuf_add(struct sbuf *b, const char *p, size_t n)
{
	size_t	 want;
	char	*np;

	if (b->err)
		return;
	if (b->len + n >= MAX_EXPANDED) {
		b->err = E2BIG;
		return;
	}
	want = b->len + n + 1;
	if (want > b->cap) {
		size_t cap = b->cap ? b->cap : 64;

		while (cap < want)
			cap *= 2;
		if ((np = realloc(b->p, cap)) == NULL) {
			b->err = ENOMEM;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static const char *
var_lookup(const struct loader *l, const char *name, size_t n)
{
	size_t	 i;

	for (i = 0; i < l->nvars; i++)
		if (strlen(l->vars[i].name) == n &&
		    strncasecmp(l->vars[i].name, name, n) == 0)
			return l->vars[i].value;
	return NULL;
}

/*
 * MailScanner's s/%([^%\s]+)%/.../g: known variables are replaced, unknown
 * ones kept.  Returns a malloc'd string or NULL with errno set.
 */
static char *
substitute(const struct loader *l, const char *v)
{
	struct sbuf	 b = { NULL, 0, 0, 0 };
	const char	*pc, *val;
	size_t		 n;

	sbuf_add(&b, "", 0);
	while ((pc = strchr(v, '%')) != NULL) {
		sbuf_add(&b, v, (size_t)(pc - v));
		n = strcspn(pc + 1, "% \t\r\n\v\f");
		if (n > 0 && pc[1 + n] == '%') {
			val = var_lookup(l, pc + 1, n);
			if (val != NULL)
				sbuf_add(&b, val, strlen(val));
			else
				sbuf_add(&b, pc, n + 2);
			v = pc + n + 2;
		} else {
			sbuf_add(&b, pc, 1);
			v = pc + 1;
		}
	}
	sbuf_add(&b, v, strlen(v));
	if (b.err) {
		free(b.p);
		errno = b.err;
		return NULL;
	}
	return b.p;
}

/* "%name%" with no % or space inside: returns length of name, else 0. */
static size_t
var_name_len(const char *key)
{
	size_t	 n = strlen(key);

	if (n < 3 || key[0] != '%' || key[n - 1] != '%')
		return 0;
	if (strcspn(key + 1, "% \t\r\n\v\f") != n - 2)
		return 0;
	return n - 2;
}

static int
define_var(struct loader *l, const char *name, size_t n, char *value)
{
	struct pvar	*nv;
	size_t		 i;

	for (i = 0; i < l->nvars; i++)
		if (strlen(l->vars[i].name) == n &&
		    strncasecmp(l->vars[i].name, name, n) == 0) {
			free(l->vars[i].value);
			l->vars[i].value = value;
			return 0;
		}
	if (l->nvars >= MAX_VARS)
		return -1;
	if (l->nvars == l->capvars) {
		size_t cap = l->capvars ? l->capvars * 2 : 16;

		if ((nv = realloc(l->vars, cap * sizeof *nv)) == NULL)
			return -1;
		l->vars = nv;
		l->capvars = cap;
	}
	nv = &l->vars[l->nvars];
	if ((nv->name = strndup(name, n)) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		nv->name[i] = (char)tolower((unsigned char)nv->name[i]);
	nv->value = value;
	l->nvars++;
	return 0;
}

static void
free_vars(struct loader *l)
{
	size_t	 i;

	for (i = 0; i < l->nvars; i++) {
		free(l->vars[i].name);
		free(l->vars[i].value);
	}
	free(l->vars);
	l->vars = NULL;
	l->nvars = l->capvars = 0;
}

/* ---- lines ---- */

/* %org-name% goes into header names (X-<org-name>-MailScanner-...). */
static void
org_name(struct loader *l, const struct pos *p, const char *key,
    const char *v)
{
	size_t	 n = strlen(v), i;
	char	 b[CONFIG_SHOW_BUF];

	for (i = 0; i < n; i++)
		if (v[i] <= ' ' || v[i] >= 127 || v[i] == ':') {
			config_sayf(&l->rep, 1, p, key, "'%s' is not allowed: it becomes "
			    "part of a header name, so no spaces, ':' or "
			    "non-ASCII characters", config_show(v, b, sizeof b));
			return;
		}
	if (n >= sizeof l->s->org_name)
		config_sayf(&l->rep, 1, p, key, "value is %zu bytes long, at most %zu "
		    "allowed", n, sizeof l->s->org_name - 1);
	else
		memcpy(l->s->org_name, v, n + 1);
}

static void
do_var(struct loader *l, const struct pos *p, const char *key,
    const char *raw)
{
	size_t	 n = var_name_len(key);
	char	*v;

	if ((v = substitute(l, raw)) == NULL) {
		config_sayf(&l->rep, 1, p, key, "value too long after %%var%% substitution "
		    "(at most %d bytes)", MAX_EXPANDED - 1);
		return;
	}
	if (n == strlen(ORG_NAME_VAR) &&
	    strncasecmp(key + 1, ORG_NAME_VAR, n) == 0)
		org_name(l, p, key, v);
	if (define_var(l, key + 1, n, v) == -1) {
		free(v);
		config_sayf(&l->rep, 1, p, key, "cannot define percent variable: out of "
		    "memory or more than %d variables", MAX_VARS);
	}
}

/* ---- settings that may be rulesets ---- */

/* Where a ruleset key's value came from, and what its rules say. */
struct verdicts {
	struct loader		*l;
	const struct pos	*at;	/* the key's line in MailScanner.conf */
	const char		*name;	/* the key, as MailScanner spells it */
	const char *const	*words;	/* no, yes; NULL: "no", "yes" */
	enum config_rules	 need;
	const char		*file;	/* the rules file, or NULL */
	int			 any_yes, any_no;
};

/* The ruleset's own problems, at its file:line or at the key's line. */
static void
ruleset_said(void *arg, int severity, const char *file, unsigned line,
    const char *message)
{
	struct verdicts	*v = arg;
	size_t		 n = strlen(v->name);

	/* Its messages start with the setting's name: so do ours. */
	if (strncmp(message, v->name, n) == 0 && message[n] == ':')
		message += n + 2;
	config_say(&v->l->rep, severity == RULESET_ERROR, file != NULL ?
	    &(struct pos){ file, line } : v->at, v->name, message);
}

static void
one_verdict(void *arg, const char *file, unsigned line, int yes)
{
	struct verdicts	*v = arg;
	const char	*no = v->words ? v->words[0] : "no";
	const char	*want = v->words ? v->words[1] : "yes";

	v->any_yes |= yes;
	v->any_no |= !yes;
	if (yes || v->need != CONFIG_RULES_ALL_YES || v->file == NULL)
		return;		/* a plain value: config_check's business */
	if (file != NULL)
		config_sayf(&v->l->rep, 1, &(struct pos){ file, line },
		    v->name, "this rule says %s: every message must get %s",
		    no, want);
	else
		config_sayf(&v->l->rep, 1, &(struct pos){ v->file, 0 },
		    v->name, "no default rule: a message no rule matches gets "
		    "MailScanner's default, %s (add \"FromOrTo: default %s\")",
		    no, want);
}

/*
 * MailScanner reads a yes/no setting as a rules file when its value is a
 * path (not ending in txt or html), and as a custom function after '&':
 * check it as a ruleset, then keep the one value msmilter acts on.
 */
static void
set_by_ruleset(struct loader *l, const struct pos *p, const char *key,
    const char *value)
{
	struct verdicts	 v = { .l = l, .at = p,
			    .file = value[0] == '/' ? value : NULL };
	struct ruleset	*rs;
	int		 errors = l->rep.errors;

	v.need = config_key_rules(key, &v.name, &v.words);
	rs = ruleset_load_words(v.name, value, v.words ? v.words :
	    (const char *const[2]){ "no", "yes" }, 0, ruleset_said, &v);
	if (rs == NULL) {
		if (l->rep.errors == errors)
			config_say(&l->rep, 1, p, v.name, "cannot read its "
			    "ruleset (out of memory)");
		return;
	}
	ruleset_verdicts(rs, one_verdict, &v);
	ruleset_free(rs);
	config_set_verdict(l->s, key, v.need == CONFIG_RULES_ALL_YES ?
	    !v.any_no : v.any_yes);
}

static void
do_setting(struct loader *l, const struct pos *p, const char *key,
    const char *raw)
{
	char			 msg[CONFIG_MSG_LEN];
	char			*v;
	const char		*name;
	const char *const	*words;

	if (!config_key_known(key))
		return;	/* MailScanner has hundreds we do not use */
	if ((v = substitute(l, raw)) == NULL) {
		config_sayf(&l->rep, 1, p, key, "value too long after %%var%% substitution "
		    "(at most %d bytes)", MAX_EXPANDED - 1);
		return;
	}
	if (v[0] != '\0' && config_key_rules(key, &name, &words) !=
	    CONFIG_RULES_NO)
		set_by_ruleset(l, p, key, v);
	else if (config_set_key(l->s, key, v, msg, sizeof msg) == -1)
		config_say(&l->rep, 1, p, key, msg);
	free(v);
}

/* Each file matching the glob, sorted; matching nothing is fine. */
static void
do_include(struct loader *l, const struct pos *p, const char *raw)
{
	glob_t	 g;
	char	*pat, b[CONFIG_SHOW_BUF];
	size_t	 i;
	int	 rc;

	if ((pat = substitute(l, raw)) == NULL) {
		config_sayf(&l->rep, 1, p, NULL, "include pattern too long after %%var%% "
		    "substitution");
		return;
	}
	memset(&g, 0, sizeof g);
	rc = glob(pat, 0, NULL, &g);
	if (rc == GLOB_NOMATCH && strpbrk(pat, "*?[") == NULL)
		config_sayf(&l->rep, 0, p, NULL, "include: %s not found, ignored",
		    config_show(pat, b, sizeof b));
	else if (rc != 0 && rc != GLOB_NOMATCH)
		config_say(&l->rep, 1, p, NULL, rc == GLOB_NOSPACE ? "include: out of "
		    "memory" : "include: read error while matching the glob");
	for (i = 0; rc == 0 && i < g.gl_pathc; i++)
		read_file(l, g.gl_pathv[i], p);
	globfree(&g);
	free(pat);
}

/* "include" then whitespace; returns the pattern or NULL. */
static char *
include_pattern(char *line)
{
	if (strncasecmp(line, "include", 7) != 0 ||
	    !isspace((unsigned char)line[7]))
		return NULL;
	return trim(line + 8);
}

/* A '#' at line start or after whitespace starts a comment. */
static void
strip_comment(char *line)
{
	char	*h;

	for (h = line; (h = strchr(h, '#')) != NULL; h++)
		if (h == line || isspace((unsigned char)h[-1])) {
			*h = '\0';
			return;
		}
}

static void
do_line(struct loader *l, const struct pos *p, char *line)
{
	char	*eq, *key, *val, *pat;

	strip_comment(line);
	line = trim(line);
	if (*line == '\0')
		return;
	if ((eq = strchr(line, '=')) == NULL) {
		if ((pat = include_pattern(line)) != NULL)
			do_include(l, p, pat);
		else
			config_say(&l->rep, 1, p, NULL, "line has no '=': expected "
			    "'Key = value', 'include FILE-GLOB' or a comment");
		return;
	}
	*eq = '\0';
	key = trim(line);
	val = trim(eq + 1);
	if (*key == '\0')
		config_say(&l->rep, 1, p, NULL, "nothing before '=': expected "
		    "'Key = value'");
	else if (var_name_len(key) > 0)
		do_var(l, p, key, val);
	else
		do_setting(l, p, key, val);
}

/* ---- files ---- */

/* Open a regular file; directories matched by a glob are skipped. */
static FILE *
open_conf(struct loader *l, const char *path, int included, struct stat *st)
{
	FILE	*fp;
	int	 fd, e;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1 || fstat(fd, st) == -1) {
		e = errno;
		if (fd != -1)
			close(fd);
		config_say(&l->rep, 1, &(struct pos){ path, 0 }, NULL, strerror(e));
		return NULL;
	}
	if (!S_ISREG(st->st_mode)) {
		if (!(included && S_ISDIR(st->st_mode)))
			config_say(&l->rep, 1, &(struct pos){ path, 0 }, NULL,
			    "not a regular file");
		close(fd);
		return NULL;
	}
	if ((fp = fdopen(fd, "r")) == NULL) {
		e = errno;
		close(fd);
		config_say(&l->rep, 1, &(struct pos){ path, 0 }, NULL, strerror(e));
	}
	return fp;
}

/* 0 when the file may be read; reports loops and excessive depth. */
static int
enter_file(struct loader *l, const char *path, const struct stat *st,
    const struct pos *from)
{
	int	 i;

	for (i = 0; i < l->depth; i++)
		if (l->open[i].dev == st->st_dev &&
		    l->open[i].ino == st->st_ino) {
			config_sayf(&l->rep, 1, from, NULL, "include loop: this includes "
			    "%s, which is already being read", path);
			return -1;
		}
	if (l->depth > MAX_INCLUDE_DEPTH) {
		config_sayf(&l->rep, 1, from, NULL, "includes nested more than %d deep "
		    "(an include loop?)", MAX_INCLUDE_DEPTH);
		return -1;
	}
	l->open[l->depth].dev = st->st_dev;
	l->open[l->depth].ino = st->st_ino;
	l->depth++;
	return 0;
}

static void
read_lines(struct loader *l, FILE *fp, const char *path)
{
	struct pos	 p = { path, 0 };
	char		*line = NULL;
	size_t		 cap = 0;
	ssize_t		 n;
	int		 e;

	while ((errno = 0, n = getline(&line, &cap, fp)) != -1) {
		p.line++;
		if (memchr(line, '\0', (size_t)n) != NULL) {
			config_say(&l->rep, 1, &p, NULL, "line contains a NUL byte");
			continue;
		}
		do_line(l, &p, line);
	}
	e = errno;
	if (ferror(fp) || e == ENOMEM)
		config_say(&l->rep, 1, &(struct pos){ path, 0 }, NULL, strerror(e));
	free(line);
}

/* from: the include line that names path, NULL for the main file. */
static void
read_file(struct loader *l, const char *path, const struct pos *from)
{
	struct stat	 st;
	FILE		*fp;

	if ((fp = open_conf(l, path, from != NULL, &st)) == NULL)
		return;
	if (enter_file(l, path, &st, from) == -1) {
		fclose(fp);
		return;
	}
	read_lines(l, fp, path);
	fclose(fp);
	l->depth--;
}

/* ---- interface ---- */

int
config_load(const char *path, struct msm_settings *s,
    config_report_fn report, void *arg)
{
	struct loader	 l;

	memset(&l, 0, sizeof l);
	l.s = s;
	l.rep.report = report;
	l.rep.arg = arg;
	config_defaults(s);
	if (strlen(path) >= sizeof s->config_file) {
		config_say(&l.rep, 1, &(struct pos){ path, 0 }, NULL,
		    "configuration file name too long");
		return l.rep.errors;
	}
	memcpy(s->config_file, path, strlen(path) + 1);
	read_file(&l, path, NULL);
	free_vars(&l);
	return l.rep.errors;
}
