/* cfg: Postfix main.cf syntax over typed parameter tables. The line reader
 * (cfg_read_pairs_text) and the loader (cfg_load_text) work on text in
 * memory; only cfg_load, cfg_read_pairs and cfg_daemon_init touch files.
 * cfg owns the string values it stores into the callers' variables. */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "buf.h"
#include "cfg.h"

#define CFG_FILE_MAX    (4 * 1024 * 1024)   /* bytes in a config file */
#define CFG_VALUE_MAX   (64 * 1024)         /* bytes in an expanded value */
#define CFG_DEPTH_MAX   50                  /* nested $name expansions */
#define CFG_DEFFN_MAX   16

/* One parameter of the load in progress, or of the last load. */
struct cfg_ent {
	const struct cfg_param *p;
	char *raw;       /* text from the file; NULL = default */
	int line;        /* where raw starts */
	char *val;       /* expanded value; NULL until computed */
	int busy;        /* being expanded (loop detection) */
};

struct cfg_state {
	struct cfg_ent *ents;
	size_t n;
	char *file;
	int depth;
};

/* A string cfg stored into a caller's variable, so a reload frees it. */
struct cfg_owned {
	void *var;
	char *str;
};

static struct cfg_state cfg_last;            /* last successful load */
static struct cfg_state *cfg_loading;        /* load in progress */
static struct cfg_owned *cfg_owned;
static size_t cfg_nowned;
static struct {
	const char *name;
	const char *(*fn)(void);
} cfg_deffns[CFG_DEFFN_MAX];

/* ---- value converters ------------------------------------------------ */

static int cfg_digits(const char *s, long *val_r, const char **end_r)
{
	long v = 0;

	if (!isdigit((unsigned char)*s))
		return -1;
	for (; isdigit((unsigned char)*s); s++) {
		int d = *s - '0';

		if (v > (LONG_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*val_r = v;
	*end_r = s;
	return 0;
}

int cfg_parse_int(const char *s, long *val_r)
{
	int neg = 0;
	const char *end;
	long v;

	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (cfg_digits(s, &v, &end) < 0 || *end != '\0')
		return -1;
	*val_r = neg ? -v : v;
	return 0;
}

/* Postfix time units (postconf(5), "Time units"): s m h d w, none = s. */
int cfg_parse_time(const char *s, long *val_r)
{
	const char *end;
	long v, mul;

	if (cfg_digits(s, &v, &end) < 0)
		return -1;
	switch (*end) {
	case '\0': case 's': mul = 1; break;
	case 'm': mul = 60; break;
	case 'h': mul = 3600; break;
	case 'd': mul = 86400; break;
	case 'w': mul = 604800; break;
	default: return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	if (v > LONG_MAX / mul)
		return -1;
	*val_r = v * mul;
	return 0;
}

int cfg_parse_bool(const char *s, int *val_r)
{
	if (strcasecmp(s, "yes") == 0 || strcasecmp(s, "true") == 0 ||
	    strcmp(s, "1") == 0) {
		*val_r = 1;
		return 0;
	}
	if (strcasecmp(s, "no") == 0 || strcasecmp(s, "false") == 0 ||
	    strcmp(s, "0") == 0) {
		*val_r = 0;
		return 0;
	}
	return -1;
}

/* ---- line reader ----------------------------------------------------- */

static int cfg_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

static int cfg_name_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

/* Split one logical line "name = value" (trimmed) and hand it to fn. */
static int cfg_pair(char *text, size_t len, const char *file, int line,
		    cfg_pair_fn *fn, void *arg, struct err *err)
{
	size_t i = 0, nend, v;

	while (i < len && cfg_name_char(text[i]))
		i++;
	nend = i;
	while (i < len && cfg_is_space(text[i]))
		i++;
	if (nend == 0 || i >= len || text[i] != '=')
		return err_set(err, 0, "%s, line %d: syntax error: expected \"name = value\"",
			       file, line);
	v = i + 1;
	while (v < len && cfg_is_space(text[v]))
		v++;
	while (len > v && cfg_is_space(text[len - 1]))
		len--;
	text[len] = '\0';
	text[nend] = '\0';
	return fn(arg, text, text + v, file, line, err);
}

int cfg_read_pairs_text(const char *text, size_t len, const char *filename,
			cfg_pair_fn *fn, void *arg, struct err *err)
{
	struct buf lg;          /* logical line being assembled */
	size_t pos = 0;
	int lineno = 0, start = 0, rc = 0;

	buf_init(&lg, CFG_VALUE_MAX);
	if (memchr(text, '\0', len) != NULL)
		return err_set(err, 0, "%s: NUL byte in file", filename);
	while (rc == 0 && pos < len) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t ll = nl != NULL ? (size_t)(nl - (text + pos)) : len - pos;
		const char *l = text + pos;
		size_t i = 0;

		pos += ll + (nl != NULL);
		lineno++;
		while (i < ll && cfg_is_space(l[i]))
			i++;
		/* postconf(5): blank lines and lines whose first non-space
		 * character is # are ignored, even inside a continued line. */
		if (i == ll || l[i] == '#')
			continue;
		if (i > 0) {
			if (start == 0) {
				rc = err_set(err, 0, "%s, line %d: continuation line without a parameter before it",
					     filename, lineno);
				break;
			}
			if (buf_putc(&lg, ' ') < 0 || buf_append(&lg, l + i, ll - i) < 0)
				rc = err_set(err, 0, "%s, line %d: line too long", filename, start);
			continue;
		}
		if (start != 0)
			rc = cfg_pair(lg.p, lg.len, filename, start, fn, arg, err);
		buf_reset(&lg);
		start = lineno;
		if (rc == 0 && buf_append(&lg, l, ll) < 0)
			rc = err_set(err, 0, "%s, line %d: line too long", filename, start);
	}
	if (rc == 0 && start != 0)
		rc = cfg_pair(lg.p, lg.len, filename, start, fn, arg, err);
	buf_free(&lg);
	return rc;
}

static char *cfg_read_file(const char *path, size_t *len_r, struct err *err)
{
	struct buf b;
	FILE *f = fopen(path, "r");
	char chunk[8192];
	size_t n;

	if (f == NULL) {
		err_set(err, 0, "open %s: %s", path, strerror(errno));
		return NULL;
	}
	buf_init(&b, CFG_FILE_MAX);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		if (buf_append(&b, chunk, n) < 0) {
			err_set(err, 0, "%s: file too large or out of memory", path);
			fclose(f);
			buf_free(&b);
			return NULL;
		}
	}
	if (ferror(f)) {
		err_set(err, 0, "read %s: %s", path, strerror(errno));
		fclose(f);
		buf_free(&b);
		return NULL;
	}
	fclose(f);
	*len_r = b.len;
	if (b.p == NULL)
		return strdup("");
	return buf_steal(&b);
}

int cfg_read_pairs(const char *path, cfg_pair_fn *fn, void *arg, struct err *err)
{
	size_t len;
	char *text = cfg_read_file(path, &len, err);
	int rc;

	if (text == NULL)
		return -1;
	rc = cfg_read_pairs_text(text, len, path, fn, arg, err);
	free(text);
	return rc;
}

/* ---- state ----------------------------------------------------------- */

static void cfg_state_free(struct cfg_state *st)
{
	size_t i;

	for (i = 0; i < st->n; i++) {
		free(st->ents[i].raw);
		free(st->ents[i].val);
	}
	free(st->ents);
	free(st->file);
	memset(st, 0, sizeof(*st));
}

static struct cfg_ent *cfg_state_find(struct cfg_state *st, const char *name)
{
	size_t i;

	for (i = 0; i < st->n; i++)
		if (strcmp(st->ents[i].p->name, name) == 0)
			return &st->ents[i];
	return NULL;
}

static int cfg_state_init(struct cfg_state *st, const struct cfg_param *const *tabs,
			  const char *file, struct err *err)
{
	const struct cfg_param *const *t;
	const struct cfg_param *p;
	size_t n = 0;

	memset(st, 0, sizeof(*st));
	for (t = tabs; t != NULL && *t != NULL; t++)
		for (p = *t; p->name != NULL; p++)
			n++;
	st->ents = calloc(n ? n : 1, sizeof(*st->ents));
	st->file = strdup(file);
	if (st->ents == NULL || st->file == NULL) {
		cfg_state_free(st);
		return err_set(err, 1, "out of memory");
	}
	for (t = tabs; t != NULL && *t != NULL; t++)
		for (p = *t; p->name != NULL; p++)
			if (cfg_state_find(st, p->name) == NULL)
				st->ents[st->n++].p = p;
	return 0;
}

static int cfg_state_set(void *arg, const char *name, const char *value,
			 const char *file, int line, struct err *err)
{
	struct cfg_ent *e = cfg_state_find(arg, name);
	char *copy;

	if (e == NULL)
		return err_set(err, 0, "%s, line %d: unknown parameter \"%.60s\"", file, line, name);
	if ((copy = strdup(value)) == NULL)
		return err_set(err, 1, "out of memory");
	free(e->raw);      /* as in Postfix, the last setting wins */
	e->raw = copy;
	e->line = line;
	return 0;
}

/* ---- expansion ------------------------------------------------------- */

static int cfg_value(struct cfg_state *st, struct cfg_ent *e, struct err *err);

static int cfg_where(struct cfg_state *st, struct cfg_ent *e, char *out, size_t n)
{
	if (e->raw != NULL)
		return snprintf(out, n, "%s, line %d", st->file, e->line);
	return snprintf(out, n, "default for %s", e->p->name);
}

static int cfg_fail(struct cfg_state *st, struct cfg_ent *e, struct err *err,
		    const char *what, const char *arg)
{
	char where[120];

	cfg_where(st, e, where, sizeof(where));
	return err_set(err, 0, "%s: %s%.60s", where, what, arg);
}

static const char *cfg_default_text(const struct cfg_param *p)
{
	int i;

	for (i = 0; i < CFG_DEFFN_MAX && cfg_deffns[i].name != NULL; i++)
		if (strcmp(cfg_deffns[i].name, p->name) == 0)
			return cfg_deffns[i].fn();
	return p->def != NULL ? p->def : "";
}

static int cfg_expand(struct cfg_state *st, struct cfg_ent *e, const char *in,
		      size_t len, struct buf *out, struct err *err);

/* The expanded value of the parameter a reference names. */
static struct cfg_ent *cfg_ref(struct cfg_state *st, struct cfg_ent *e,
			       const char *name, size_t n, struct err *err)
{
	char tmp[128];
	struct cfg_ent *ref;

	if (n == 0 || n >= sizeof(tmp)) {
		cfg_fail(st, e, err, "bad $ in value", "");
		return NULL;
	}
	memcpy(tmp, name, n);
	tmp[n] = '\0';
	if ((ref = cfg_state_find(st, tmp)) == NULL) {
		cfg_fail(st, e, err, "unknown parameter in expansion: $", tmp);
		return NULL;
	}
	return cfg_value(st, ref, err) < 0 ? NULL : ref;
}

/* One reference after a '$' at in[0..len): $name, ${name}, $(name),
 * ${name?text} (text if name is non-empty), ${name:text} (text if it is
 * empty), as in Postfix's mac_expand. Returns the bytes used, or -1. */
static long cfg_expand_ref(struct cfg_state *st, struct cfg_ent *e, const char *in,
			   size_t len, struct buf *out, struct err *err)
{
	size_t i = 0, ns, ne, ts, nest = 0;
	char close = 0, op = 0;
	struct cfg_ent *ref;

	if (len > 0 && (in[0] == '{' || in[0] == '('))
		close = in[i++] == '{' ? '}' : ')';
	for (ns = i; i < len && (isalnum((unsigned char)in[i]) || in[i] == '_'); i++)
		;
	ne = i;
	if (close != 0 && i < len && (in[i] == '?' || in[i] == ':'))
		op = in[i++];
	for (ts = i; close != 0 && i < len; i++) {
		if (in[i] == '{' || in[i] == '(')
			nest++;
		else if ((in[i] == '}' || in[i] == ')') && nest-- == 0)
			break;
	}
	if (close != 0 && (i >= len || in[i] != close || (op == 0 && i != ts)))
		return cfg_fail(st, e, err, "bad ${...} in value", "");
	if ((ref = cfg_ref(st, e, in + ns, ne - ns, err)) == NULL)
		return -1;
	if (op == 0) {
		if (buf_puts(out, ref->val) < 0)
			return cfg_fail(st, e, err, "value too long", "");
	} else if ((op == '?') == (ref->val[0] != '\0')) {
		if (cfg_expand(st, e, in + ts, i - ts, out, err) < 0)
			return -1;
	}
	return (long)(close != 0 ? i + 1 : i);
}

/* Expand in[0..len) into out for entry e; $$ is a literal $. */
static int cfg_expand(struct cfg_state *st, struct cfg_ent *e, const char *in,
		      size_t len, struct buf *out, struct err *err)
{
	size_t i = 0;

	while (i < len) {
		const char *d = memchr(in + i, '$', len - i);
		size_t stop = d != NULL ? (size_t)(d - in) : len;
		long n;

		if (buf_append(out, in + i, stop - i) < 0)
			return cfg_fail(st, e, err, "value too long", "");
		if (d == NULL)
			break;
		i = stop + 1;
		if (i < len && in[i] == '$') {
			if (buf_putc(out, '$') < 0)
				return cfg_fail(st, e, err, "value too long", "");
			i++;
			continue;
		}
		if ((n = cfg_expand_ref(st, e, in + i, len - i, out, err)) < 0)
			return -1;
		i += (size_t)n;
	}
	return 0;
}

/* Compute e->val (expanded) once. */
static int cfg_value(struct cfg_state *st, struct cfg_ent *e, struct err *err)
{
	struct buf out;
	const char *text;

	if (e->val != NULL)
		return 0;
	if (e->busy || st->depth >= CFG_DEPTH_MAX)
		return cfg_fail(st, e, err, "expansion loop in the value of ", e->p->name);
	e->busy = 1;
	st->depth++;
	text = e->raw != NULL ? e->raw : cfg_default_text(e->p);
	buf_init(&out, CFG_VALUE_MAX);
	if (cfg_expand(st, e, text, strlen(text), &out, err) < 0) {
		buf_free(&out);
		st->depth--;
		e->busy = 0;
		return -1;
	}
	st->depth--;
	e->busy = 0;
	e->val = out.p != NULL ? buf_steal(&out) : strdup("");
	if (e->val == NULL)
		return err_set(err, 1, "out of memory");
	return 0;
}

/* ---- typed values ---------------------------------------------------- */

union cfg_typed {
	long l;
	int b;
};

static int cfg_bounds(struct cfg_state *st, struct cfg_ent *e, long v, struct err *err)
{
	const struct cfg_param *p = e->p;
	const char *unit = p->type == CFG_TIME ? "s" : "";
	const char *what = p->type == CFG_TIME ? "time" : "number";
	char where[120];

	if (p->min == 0 && p->max == 0)
		return 0;
	if (v >= p->min && (p->max == 0 || v <= p->max))
		return 0;
	cfg_where(st, e, where, sizeof(where));
	if (p->max == 0)
		return err_set(err, 0, "%s: bad value \"%.60s\" for %s: expected a %s of at least %ld%s",
			       where, e->val, p->name, what, p->min, unit);
	return err_set(err, 0, "%s: bad value \"%.60s\" for %s: expected a %s between %ld%s and %ld%s",
		       where, e->val, p->name, what, p->min, unit, p->max, unit);
}

static int cfg_convert(struct cfg_state *st, struct cfg_ent *e, union cfg_typed *t,
		       struct err *err)
{
	const struct cfg_param *p = e->p;
	const char *expect = NULL;
	char where[120];

	switch (p->type) {
	case CFG_STR:
		return 0;
	case CFG_INT:
		if (cfg_parse_int(e->val, &t->l) < 0)
			expect = "a number";
		break;
	case CFG_TIME:
		if (cfg_parse_time(e->val, &t->l) < 0)
			expect = "a time like 300s";
		break;
	case CFG_BOOL:
		if (cfg_parse_bool(e->val, &t->b) < 0)
			expect = "yes or no";
		break;
	default:
		return err_set(err, 0, "parameter %s: bad type in table", p->name);
	}
	if (expect != NULL) {
		cfg_where(st, e, where, sizeof(where));
		return err_set(err, 0, "%s: bad value \"%.60s\" for %s: expected %s",
			       where, e->val, p->name, expect);
	}
	if (p->type == CFG_BOOL)
		return 0;
	return cfg_bounds(st, e, t->l, err);
}

/* ---- ownership of stored strings ------------------------------------- */

static struct cfg_owned *cfg_owned_find(void *var)
{
	size_t i;

	for (i = 0; i < cfg_nowned; i++)
		if (cfg_owned[i].var == var)
			return &cfg_owned[i];
	return NULL;
}

/* Make room for every string variable first, so the commit cannot fail. */
static int cfg_owned_reserve(struct cfg_state *st)
{
	size_t i, need = cfg_nowned;
	struct cfg_owned *n;

	for (i = 0; i < st->n; i++)
		if (st->ents[i].p->type == CFG_STR && cfg_owned_find(st->ents[i].p->var) == NULL)
			need++;
	if (need == cfg_nowned)
		return 0;
	if ((n = realloc(cfg_owned, need * sizeof(*n))) == NULL)
		return -1;
	cfg_owned = n;
	return 0;
}

static void cfg_owned_store(void *var, char *str)
{
	struct cfg_owned *o = cfg_owned_find(var);

	if (o == NULL) {
		o = &cfg_owned[cfg_nowned++];
		o->var = var;
	} else {
		free(o->str);
	}
	o->str = str;
	*(char **)var = str;
}

/* ---- loading --------------------------------------------------------- */

static int cfg_compute(struct cfg_state *st, union cfg_typed *typed, char **strs,
		       struct err *err)
{
	size_t i;

	for (i = 0; i < st->n; i++) {
		struct cfg_ent *e = &st->ents[i];

		if (e->p->var == NULL)
			return err_set(err, 0, "parameter %s: no variable in table", e->p->name);
		if (cfg_value(st, e, err) < 0 || cfg_convert(st, e, &typed[i], err) < 0)
			return -1;
		if (e->p->type == CFG_STR && (strs[i] = strdup(e->val)) == NULL)
			return err_set(err, 1, "out of memory");
	}
	return 0;
}

static void cfg_commit(struct cfg_state *st, union cfg_typed *typed, char **strs)
{
	size_t i;

	for (i = 0; i < st->n; i++) {
		const struct cfg_param *p = st->ents[i].p;

		switch (p->type) {
		case CFG_STR:
			cfg_owned_store(p->var, strs[i]);
			strs[i] = NULL;
			break;
		case CFG_INT:
		case CFG_TIME:
			*(long *)p->var = typed[i].l;
			break;
		case CFG_BOOL:
			*(int *)p->var = typed[i].b;
			break;
		}
	}
}

int cfg_load_text(const struct cfg_param *const *tabs, const char *text,
		  size_t len, const char *filename, struct err *err)
{
	struct cfg_state st;
	union cfg_typed *typed = NULL;
	char **strs = NULL;
	size_t i;
	int rc = -1;

	if (cfg_loading != NULL)
		return err_set(err, 0, "cfg_load called during a load");
	if (cfg_state_init(&st, tabs, filename, err) < 0)
		return -1;
	if (cfg_read_pairs_text(text, len, filename, cfg_state_set, &st, err) < 0)
		goto out;
	typed = calloc(st.n ? st.n : 1, sizeof(*typed));
	strs = calloc(st.n ? st.n : 1, sizeof(*strs));
	if (typed == NULL || strs == NULL || cfg_owned_reserve(&st) < 0) {
		err_set(err, 1, "out of memory");
		goto out;
	}
	cfg_loading = &st;
	rc = cfg_compute(&st, typed, strs, err);
	cfg_loading = NULL;
	if (rc == 0) {
		cfg_commit(&st, typed, strs);
		cfg_state_free(&cfg_last);
		cfg_last = st;
		memset(&st, 0, sizeof(st));
	}
out:
	for (i = 0; strs != NULL && i < st.n; i++)
		free(strs[i]);
	free(strs);
	free(typed);
	cfg_state_free(&st);
	return rc;
}

int cfg_load(const struct cfg_param *const *tabs, const char *path, struct err *err)
{
	size_t len;
	char *text;
	int rc;

	if (path == NULL)
		return cfg_load_text(tabs, "", 0, "(defaults)", err);
	if ((text = cfg_read_file(path, &len, err)) == NULL)
		return -1;
	rc = cfg_load_text(tabs, text, len, path, err);
	free(text);
	return rc;
}

void cfg_free(const struct cfg_param *const *tabs)
{
	const struct cfg_param *const *t;
	const struct cfg_param *p;

	for (t = tabs; t != NULL && *t != NULL; t++) {
		for (p = *t; p->name != NULL; p++) {
			struct cfg_owned *o;

			if (p->type != CFG_STR || (o = cfg_owned_find(p->var)) == NULL)
				continue;
			free(o->str);
			*(char **)p->var = NULL;
			*o = cfg_owned[--cfg_nowned];
		}
	}
	if (cfg_nowned == 0) {
		free(cfg_owned);
		cfg_owned = NULL;
	}
	cfg_state_free(&cfg_last);
}

void cfg_default_fn(const char *name, const char *(*fn)(void))
{
	int i;

	for (i = 0; i < CFG_DEFFN_MAX; i++) {
		if (cfg_deffns[i].name == NULL || strcmp(cfg_deffns[i].name, name) == 0) {
			cfg_deffns[i].name = name;
			cfg_deffns[i].fn = fn;
			return;
		}
	}
}

const char *cfg_get(const char *name)
{
	struct cfg_state *st = cfg_loading != NULL ? cfg_loading : &cfg_last;
	struct cfg_ent *e = cfg_state_find(st, name);

	if (e == NULL || cfg_value(st, e, NULL) < 0)
		return NULL;
	return e->val;
}

static int cfg_ent_cmp(const void *a, const void *b)
{
	const struct cfg_ent *const *x = a, *const *y = b;

	return strcmp((*x)->p->name, (*y)->p->name);
}

void cfg_print_nondefault(const struct cfg_param *const *tabs, FILE *out)
{
	const struct cfg_ent **v;
	size_t i, n = 0;

	if (cfg_last.n == 0 || (v = calloc(cfg_last.n, sizeof(*v))) == NULL)
		return;
	for (i = 0; i < cfg_last.n; i++) {
		const struct cfg_param *const *t;
		const struct cfg_param *p;
		int listed = 0;

		for (t = tabs; !listed && t != NULL && *t != NULL; t++)
			for (p = *t; !listed && p->name != NULL; p++)
				listed = strcmp(p->name, cfg_last.ents[i].p->name) == 0;
		if (listed && cfg_last.ents[i].raw != NULL)
			v[n++] = &cfg_last.ents[i];
	}
	if (n > 1)
		qsort(v, n, sizeof(*v), cfg_ent_cmp);
	for (i = 0; i < n; i++)
		fprintf(out, "%s = %s\n", v[i]->p->name, v[i]->raw);
	free(v);
}

/* ---- lists ----------------------------------------------------------- */

static int cfg_list_sep(char c)
{
	return c == ',' || cfg_is_space(c) || c == '\n';
}

char **cfg_list_split(const char *value)
{
	size_t n = 0, i = 0;
	const char *s;
	char **v;

	for (s = value; *s != '\0'; ) {
		while (cfg_list_sep(*s))
			s++;
		if (*s == '\0')
			break;
		n++;
		while (*s != '\0' && !cfg_list_sep(*s))
			s++;
	}
	if ((v = calloc(n + 1, sizeof(*v))) == NULL)
		return NULL;
	for (s = value; i < n; i++) {
		size_t l;

		while (cfg_list_sep(*s))
			s++;
		for (l = 0; s[l] != '\0' && !cfg_list_sep(s[l]); l++)
			;
		if ((v[i] = strndup(s, l)) == NULL) {
			cfg_list_free(v);
			return NULL;
		}
		s += l;
	}
	return v;
}

void cfg_list_free(char **v)
{
	size_t i;

	if (v == NULL)
		return;
	for (i = 0; v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

int cfg_list_contains(const char *list, const char *word)
{
	size_t wl = strlen(word);
	const char *s = list;

	if (list == NULL)
		return 0;
	while (*s != '\0') {
		size_t l;

		while (cfg_list_sep(*s))
			s++;
		for (l = 0; s[l] != '\0' && !cfg_list_sep(s[l]); l++)
			;
		if (l > 0 && l == wl && strncasecmp(s, word, l) == 0)
			return 1;
		s += l;
	}
	return 0;
}

/* ---- daemon start-up ------------------------------------------------- */

const char *cfg_daemon_init(const char *name, int argc, char **argv,
			    const struct cfg_param *const *tabs, const char *help)
{
	const char *dir = "/etc/mailpair";
	int c, print = 0;
	struct err err;
	char path[4096];

	optind = 1;
	while ((c = getopt(argc, argv, "c:nh")) != -1) {
		switch (c) {
		case 'c':
			dir = optarg;
			break;
		case 'n':
			print = 1;
			break;
		case 'h':
			fputs(help != NULL ? help : "", stdout);
			exit(0);
		default:
			fprintf(stderr, "usage: %s [-c config_dir] [-n] [-h]\n", name);
			exit(1);
		}
	}
	if (optind < argc) {
		fprintf(stderr, "usage: %s [-c config_dir] [-n] [-h]\n", name);
		exit(1);
	}
	err_clear(&err);
	if ((size_t)snprintf(path, sizeof(path), "%s/%s.cf", dir, name) >= sizeof(path)) {
		fprintf(stderr, "%s: fatal: config directory name too long\n", name);
		exit(1);
	}
	if (cfg_load(tabs, path, &err) < 0) {
		fprintf(stderr, "%s: fatal: %s\n", name, err.msg);
		exit(1);
	}
	if (print) {
		cfg_print_nondefault(tabs, stdout);
		exit(0);
	}
	return dir;
}
