/*
 * Resolved plugin options: one typed value per schema entry, parsed from the
 * YAML text of the pipeline (or the schema's default) and checked against the
 * schema, so plugins read them with plain getters that cannot fail.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/plugin.h>

struct optval {
	const struct iap_option *opt;
	int is_set;
	int choice; /* IAP_OPT_ENUM: index into opt->choices */
	union {
		int b;
		long i;
		double f;
		char *s;
	} v;
};

struct iap_opts {
	int n;
	struct optval vals[];
};

static const char *const type_names[IAP_OPT_TYPE_COUNT] = {
	[IAP_OPT_BOOL] = "bool",
	[IAP_OPT_INT] = "int",
	[IAP_OPT_FLOAT] = "float",
	[IAP_OPT_STRING] = "string",
	[IAP_OPT_ENUM] = "enum",
};

static const char *const split_names[IAP_SPLIT_COUNT] = {
	[IAP_SPLIT_TRAIN] = "train",
	[IAP_SPLIT_VAL] = "val",
	[IAP_SPLIT_TEST] = "test",
};

const char *iap_opt_type_name(int type)
{
	if (type < 0 || type >= IAP_OPT_TYPE_COUNT)
		return NULL;
	return type_names[type];
}

const char *iap_split_name(int split)
{
	if (split < 0 || split >= IAP_SPLIT_COUNT)
		return NULL;
	return split_names[split];
}

static struct optval *find(const struct iap_opts *o, const char *name)
{
	if (!o || !name)
		return NULL;
	for (int i = 0; i < o->n; i++)
		if (strcmp(o->vals[i].opt->name, name) == 0)
			return (struct optval *)&o->vals[i];
	return NULL;
}

/* Parse text as the option's type into v; on failure err says what was expected. */
static int parse_value(const struct iap_option *opt, const char *what, const char *text,
		       struct optval *v, struct iap_error *err)
{
	char *end;

	switch (opt->type) {
	case IAP_OPT_BOOL:
		if (!strcmp(text, "true") || !strcmp(text, "yes") || !strcmp(text, "on"))
			v->v.b = 1;
		else if (!strcmp(text, "false") || !strcmp(text, "no") || !strcmp(text, "off"))
			v->v.b = 0;
		else
			return iap_error_set(err, IAP_EINVAL, "%s: option '%s': expected true or false, got '%s'",
					     what, opt->name, text);
		return IAP_OK;
	case IAP_OPT_INT: {
		long x;

		errno = 0;
		x = strtol(text, &end, 10);
		if (!*text || *end || errno)
			return iap_error_set(err, IAP_EINVAL, "%s: option '%s': expected an integer, got '%s'",
					     what, opt->name, text);
		if (opt->has_range && ((double)x < opt->min || (double)x > opt->max))
			return iap_error_set(err, IAP_EINVAL, "%s: option '%s': %ld is out of range [%g, %g]",
					     what, opt->name, x, opt->min, opt->max);
		v->v.i = x;
		return IAP_OK;
	}
	case IAP_OPT_FLOAT: {
		double x;

		errno = 0;
		x = strtod(text, &end);
		/* strtod also takes "nan", "inf" and hex; a finite decimal is what users mean. */
		if (!*text || *end || errno || !isfinite(x) || strpbrk(text, "xXnNiI"))
			return iap_error_set(err, IAP_EINVAL, "%s: option '%s': expected a number, got '%s'",
					     what, opt->name, text);
		if (opt->has_range && (x < opt->min || x > opt->max))
			return iap_error_set(err, IAP_EINVAL, "%s: option '%s': %g is out of range [%g, %g]",
					     what, opt->name, x, opt->min, opt->max);
		v->v.f = x;
		return IAP_OK;
	}
	case IAP_OPT_ENUM: {
		char list[512] = "";
		size_t len = 0;

		for (const char *const *c = opt->choices; *c; c++)
			if (!strcmp(*c, text)) {
				v->choice = (int)(c - opt->choices);
				goto take_string;
			}
		for (const char *const *c = opt->choices; *c && len < sizeof(list); c++)
			len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s",
						c == opt->choices ? "" : ", ", *c);
		return iap_error_set(err, IAP_EINVAL, "%s: option '%s': '%s' is not one of: %s",
				     what, opt->name, text, list);
	}
	case IAP_OPT_STRING:
	take_string: {
		char *s = strdup(text);

		if (!s)
			return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", what);
		free(v->v.s);
		v->v.s = s;
		return IAP_OK;
	}
	default:
		return iap_error_set(err, IAP_EINVAL, "%s: option '%s': unknown type", what, opt->name);
	}
}

int iap_opts_defaults(const struct iap_option *schema, struct iap_opts **out,
		      struct iap_error *err)
{
	struct iap_opts *o;
	int n = 0, rc;

	*out = NULL;
	while (schema && schema[n].name)
		n++;
	o = calloc(1, sizeof(*o) + (size_t)n * sizeof(o->vals[0]));
	if (!o)
		return iap_error_set(err, IAP_ENOMEM, "options: out of memory");
	o->n = n;
	for (int i = 0; i < n; i++) {
		o->vals[i].opt = &schema[i];
		if (!schema[i].def)
			continue;  /* required: the pipeline must set it (checked by the caller) */
		rc = parse_value(&schema[i], "default", schema[i].def, &o->vals[i], err);
		if (rc) {
			iap_opts_free(o);
			return rc;
		}
	}
	*out = o;
	return IAP_OK;
}

int iap_opts_set(struct iap_opts *o, const char *what, const char *name, const char *text,
		 struct iap_error *err)
{
	struct optval *v = find(o, name);
	int rc;

	if (!v)
		return iap_error_set(err, IAP_EINVAL, "%s: unknown option '%s'", what, name);
	rc = parse_value(v->opt, what, text, v, err);
	if (rc == IAP_OK)
		v->is_set = 1;
	return rc;
}

void iap_opts_free(struct iap_opts *o)
{
	if (!o)
		return;
	for (int i = 0; i < o->n; i++)
		if (o->vals[i].opt->type == IAP_OPT_STRING || o->vals[i].opt->type == IAP_OPT_ENUM)
			free(o->vals[i].v.s);
	free(o);
}

int iap_opts_bool(const struct iap_opts *o, const char *name)
{
	const struct optval *v = find(o, name);

	return v && v->opt->type == IAP_OPT_BOOL ? v->v.b : 0;
}

long iap_opts_int(const struct iap_opts *o, const char *name)
{
	const struct optval *v = find(o, name);

	return v && v->opt->type == IAP_OPT_INT ? v->v.i : 0;
}

double iap_opts_float(const struct iap_opts *o, const char *name)
{
	const struct optval *v = find(o, name);

	return v && v->opt->type == IAP_OPT_FLOAT ? v->v.f : 0.0;
}

const char *iap_opts_str(const struct iap_opts *o, const char *name)
{
	const struct optval *v = find(o, name);

	return v && (v->opt->type == IAP_OPT_STRING || v->opt->type == IAP_OPT_ENUM) ? v->v.s : NULL;
}

int iap_opts_enum(const struct iap_opts *o, const char *name)
{
	const struct optval *v = find(o, name);

	return v && v->opt->type == IAP_OPT_ENUM && v->v.s ? v->choice : -1;
}

int iap_opts_is_set(const struct iap_opts *o, const char *name)
{
	const struct optval *v = find(o, name);

	return v ? v->is_set : 0;
}

int iap_opts_count(const struct iap_opts *o)
{
	return o ? o->n : 0;
}

const char *iap_opts_name(const struct iap_opts *o, int i)
{
	return o && i >= 0 && i < o->n ? o->vals[i].opt->name : NULL;
}

void iap_opts_format(const struct iap_opts *o, int i, char *buf, size_t len)
{
	const struct optval *v;

	if (!len)
		return;
	buf[0] = '\0';
	if (!o || i < 0 || i >= o->n)
		return;
	v = &o->vals[i];
	switch (v->opt->type) {
	case IAP_OPT_BOOL:
		snprintf(buf, len, "%s", v->v.b ? "true" : "false");
		break;
	case IAP_OPT_INT:
		snprintf(buf, len, "%ld", v->v.i);
		break;
	case IAP_OPT_FLOAT:
		/* Shortest text that reads back to the same double. */
		snprintf(buf, len, "%.17g", v->v.f);
		for (int p = 1; p < 17; p++) {
			char t[64];

			snprintf(t, sizeof(t), "%.*g", p, v->v.f);
			if (strtod(t, NULL) == v->v.f) {
				snprintf(buf, len, "%s", t);
				break;
			}
		}
		break;
	default:
		snprintf(buf, len, "%s", v->v.s ? v->v.s : "");
		break;
	}
}
