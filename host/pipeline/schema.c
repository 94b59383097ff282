/*
 * The pipeline schema (iaprune-pipeline(5) documents it key by key; keep the
 * two in step) and its validation: unknown keys, wrong types, ranges,
 * required keys, plugin names and plugin options, each reported at the
 * file:line:col where it was written. Validation also writes every default
 * into the tree, so the runner reads one complete tree and the defaults live
 * in exactly one place: the tables below.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/pipeline.h>
#include <iaprune/registry.h>
#include "cfg_internal.h"

enum ftype {
	T_MAP,          /* sub-fields in .sub */
	T_LIST,         /* list of maps, each with .sub (a plain string item is shorthand for {plugin: ...}) */
	T_INT,
	T_FLOAT,
	T_BOOL,
	T_STR,
	T_ENUM,
	T_FLOAT_LIST,
	T_STR_LIST,
	T_ENUM_LIST,
	T_OPTIONS,      /* a plugin's options: checked against the plugin's schema */
};

struct field {
	const char *key;
	enum ftype type;
	const char *def;                 /* YAML text written in when absent; NULL: none */
	int required;
	const struct field *sub;         /* T_MAP, T_LIST */
	int kind;                        /* T_MAP/T_LIST of plugin references: the plugin kind; else -1 */
	const char *const *choices;      /* T_ENUM, T_ENUM_LIST */
	int has_range;
	double min, max;
	int max_exclusive;
	int min_items;                   /* lists */
};

#define NOKIND .kind = -1

static const struct field plugin_ref[] = {
	{ .key = "plugin", .type = T_STR, .required = 1, NOKIND },
	{ .key = "options", .type = T_OPTIONS, .def = "{}", NOKIND },
	{ .key = NULL },
};

static const char *const optimizers[] = { "adam", NULL };
static const char *const class_weightings[] = { "none", "balanced", NULL };

/* The paper's recipe (appendix A): Adam, StepLR, class-weighted cross-entropy, augmentation. */
static const struct field train_fields[] = {
	{ .key = "epochs", .type = T_INT, .def = "30", NOKIND, .has_range = 1, .min = 1, .max = 100000 },
	{ .key = "batch_size", .type = T_INT, .def = "32", NOKIND, .has_range = 1, .min = 1, .max = 1 << 20 },
	{ .key = "optimizer", .type = T_ENUM, .def = "adam", NOKIND, .choices = optimizers },
	{ .key = "lr", .type = T_FLOAT, .def = "0.001", NOKIND, .has_range = 1, .min = 0, .max = 10 },
	{ .key = "weight_decay", .type = T_FLOAT, .def = "0", NOKIND, .has_range = 1, .min = 0, .max = 1 },
	{ .key = "step_size", .type = T_INT, .def = "10", NOKIND, .has_range = 1, .min = 1, .max = 100000 },
	{ .key = "gamma", .type = T_FLOAT, .def = "0.1", NOKIND, .has_range = 1, .min = 0, .max = 1 },
	{ .key = "class_weights", .type = T_ENUM, .def = "balanced", NOKIND, .choices = class_weightings },
	{ .key = "augment", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = "crop_scale", .type = T_FLOAT, .def = "0.7", NOKIND, .has_range = 1, .min = 0.05, .max = 1 },
	{ .key = "hflip", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = "vflip", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = "rotate", .type = T_FLOAT, .def = "30", NOKIND, .has_range = 1, .min = 0, .max = 180 },
	{ .key = "jitter", .type = T_FLOAT, .def = "0.2", NOKIND, .has_range = 1, .min = 0, .max = 1 },
	{ .key = "resume", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = NULL },
};

static const struct field dataset_fields[] = {
	{ .key = "plugin", .type = T_STR, .required = 1, NOKIND },
	{ .key = "options", .type = T_OPTIONS, .def = "{}", NOKIND },
	{ .key = NULL },
};

static const struct field model_fields[] = {
	{ .key = "plugin", .type = T_STR, .required = 1, NOKIND },
	{ .key = "options", .type = T_OPTIONS, .def = "{}", NOKIND },
	{ .key = "weights", .type = T_STR, NOKIND },
	{ .key = "train", .type = T_MAP, .def = "{}", .sub = train_fields, NOKIND },
	{ .key = NULL },
};

static const struct field sampler_fields[] = {
	{ .key = "plugin", .type = T_STR, .required = 1, NOKIND },
	{ .key = "options", .type = T_OPTIONS, .def = "{}", NOKIND },
	{ .key = "per_class", .type = T_INT, .def = "10", NOKIND, .has_range = 1, .min = 1, .max = 1000000 },
	{ .key = "name", .type = T_STR, NOKIND },
	{ .key = NULL },
};

static const struct field attribution_fields[] = {
	{ .key = "plugin", .type = T_STR, .required = 1, NOKIND },
	{ .key = "options", .type = T_OPTIONS, .def = "{}", NOKIND },
	{ .key = "name", .type = T_STR, NOKIND },
	{ .key = NULL },
};

static const struct field caps_fields[] = {
	{ .key = "max_layer_rate", .type = T_FLOAT, .def = "0.9", NOKIND, .has_range = 1, .min = 0, .max = 1 },
	{ .key = "min_units", .type = T_INT, .def = "1", NOKIND, .has_range = 1, .min = 0, .max = 1e9 },
	{ .key = NULL },
};

static const char *const ft_configurations[] = { "all", "best", NULL };

/* Absent: no fine-tuning. batch_size, weight_decay and augment default to model.train's. */
static const struct field finetune_fields[] = {
	{ .key = "epochs", .type = T_INT, .def = "1", NOKIND, .has_range = 1, .min = 1, .max = 100000 },
	{ .key = "lr", .type = T_FLOAT, .def = "0.0001", NOKIND, .has_range = 1, .min = 0, .max = 10 },
	{ .key = "batch_size", .type = T_INT, NOKIND, .has_range = 1, .min = 1, .max = 1 << 20 },
	{ .key = "weight_decay", .type = T_FLOAT, NOKIND, .has_range = 1, .min = 0, .max = 1 },
	{ .key = "augment", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = "rates", .type = T_FLOAT_LIST, NOKIND, .has_range = 1, .min = 0, .max = 1, .max_exclusive = 1,
	  .min_items = 1 },
	{ .key = "configurations", .type = T_ENUM, .def = "all", NOKIND, .choices = ft_configurations },
	{ .key = NULL },
};

/* How magnitude and random are ranked: scores divided by their layer's L2 norm or mean, or as they are. */
static const char *const baseline_rankings[] = { "l2", "mean", "raw", NULL };

static const struct field pruning_fields[] = {
	{ .key = "policy", .type = T_MAP, .def = "{plugin: global}", .sub = plugin_ref,
	  .kind = IAP_PLUGIN_POLICY },
	{ .key = "rates", .type = T_FLOAT_LIST, .def = "[0.15, 0.30, 0.50, 0.70]", NOKIND, .has_range = 1,
	  .min = 0, .max = 1, .max_exclusive = 1, .min_items = 1 },
	{ .key = "caps", .type = T_MAP, .def = "{}", .sub = caps_fields, NOKIND },
	{ .key = "ignore", .type = T_STR_LIST, .def = "[]", NOKIND },
	{ .key = "tolerance", .type = T_FLOAT, .def = "0.05", NOKIND, .has_range = 1, .min = 0, .max = 1 },
	{ .key = "curve", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = "curve_step", .type = T_FLOAT, .def = "0.05", NOKIND, .has_range = 1, .min = 0.01, .max = 0.5 },
	{ .key = "iterations", .type = T_INT, .def = "1", NOKIND, .has_range = 1, .min = 1, .max = 100 },
	{ .key = "finetune", .type = T_MAP, .sub = finetune_fields, NOKIND },
	{ .key = "baseline_ranking", .type = T_ENUM, .def = "l2", NOKIND, .choices = baseline_rankings },
	{ .key = NULL },
};

static const char *const splits[] = { "train", "val", "test", NULL };

static const struct field evaluation_fields[] = {
	{ .key = "split", .type = T_ENUM, .def = "test", NOKIND, .choices = splits },
	{ .key = "batch_size", .type = T_INT, .def = "128", NOKIND, .has_range = 1, .min = 1, .max = 1 << 20 },
	{ .key = NULL },
};

/* The report always has results.csv, results.json, report.md and curves.svg. */
static const struct field report_fields[] = {
	{ .key = "heatmaps", .type = T_INT, .def = "2", NOKIND, .has_range = 1, .min = 0, .max = 10000 },
	{ .key = "save_pruned", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = "bootstrap", .type = T_INT, .def = "1000", NOKIND, .has_range = 1, .min = 0, .max = 100000 },
	{ .key = "explain_images", .type = T_INT, .def = "8", NOKIND, .has_range = 1, .min = 0, .max = 10000 },
	{ .key = "latency", .type = T_BOOL, .def = "true", NOKIND },
	{ .key = NULL },
};

static const struct field top_fields[] = {
	{ .key = "version", .type = T_INT, .required = 1, NOKIND },
	{ .key = "name", .type = T_STR, .def = "pipeline", NOKIND },
	{ .key = "seed", .type = T_INT, .def = "0", NOKIND, .has_range = 1, .min = 0, .max = 4294967295.0 },
	{ .key = "output", .type = T_STR, .def = "results", NOKIND },
	{ .key = "dataset", .type = T_MAP, .required = 1, .sub = dataset_fields, .kind = IAP_PLUGIN_DATASET },
	{ .key = "model", .type = T_MAP, .required = 1, .sub = model_fields, .kind = IAP_PLUGIN_MODEL },
	{ .key = "sampling", .type = T_LIST, .def = "[]", .sub = sampler_fields, .kind = IAP_PLUGIN_SAMPLER },
	/* Optional: train and eval need none; run and prune check they have one (iap_run). */
	{ .key = "attribution", .type = T_LIST, .sub = attribution_fields, .kind = IAP_PLUGIN_ATTRIBUTION,
	  .min_items = 1 },
	{ .key = "pruning", .type = T_MAP, .def = "{}", .sub = pruning_fields, NOKIND },
	{ .key = "evaluation", .type = T_MAP, .def = "{}", .sub = evaluation_fields, NOKIND },
	{ .key = "report", .type = T_MAP, .def = "{}", .sub = report_fields, NOKIND },
	{ .key = "threads", .type = T_INT, .def = "0", NOKIND, .has_range = 1, .min = 0, .max = 1024 },
	{ .key = NULL },
};

struct validator {
	struct iap_cfg *cfg;
	const struct iap_registry *reg;
	const char *deffile;   /* "<default>" */
	struct iap_error *err;
	struct cfgi_refs *refs; /* NULL: resolved plugins are checked and let go */
};

/* "a, b, c" into buf (truncated with "…" when long). */
static void join_names(char *buf, size_t len, const char *const *names, int n)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);

		if (w < 0 || (size_t)w >= len - used) {
			snprintf(buf + (len > 8 ? len - 8 : 0), len > 8 ? 8 : len, ", ...");
			return;
		}
		used += (size_t)w;
	}
}

static void field_names(char *buf, size_t len, const struct field *fields)
{
	const char *names[32];
	int n = 0;

	while (fields[n].key && n < 32) {
		names[n] = fields[n].key;
		n++;
	}
	join_names(buf, len, names, n);
}

static void path_join(char *out, size_t len, const char *path, const char *key)
{
	snprintf(out, len, "%s%s%s", path, *path ? "." : "", key);
}

static void relocate_default(struct iap_cfg_node *n, const char *file)
{
	n->file = file;
	n->line = 0;
	n->col = 0;
	for (int i = 0; i < n->n_items; i++)
		relocate_default(n->items[i], file);
}

/* Parse f->def and append it to map under f->key. */
static int add_default(struct validator *V, struct iap_cfg_node *map, const struct field *f,
		       struct iap_cfg_node **added)
{
	struct iap_cfg *d = NULL;
	struct iap_cfg_node *n;
	int rc;

	rc = iap_cfg_load_string(f->def, strlen(f->def), V->deffile, &d, V->err);
	if (rc)
		return rc;
	n = cfgi_root_mut(d);
	cfgi_set_root(d, NULL);
	iap_cfg_free(d);
	if (!n)
		n = cfgi_node_new(IAP_CFG_SCALAR, V->deffile, 0, 0);
	if (!n)
		return iap_error_set(V->err, IAP_ENOMEM, "out of memory");
	relocate_default(n, V->deffile);
	n->key = strdup(f->key);
	if (!n->key || cfgi_append(map, n)) {
		cfgi_node_free(n);
		return iap_error_set(V->err, IAP_ENOMEM, "out of memory");
	}
	*added = n;
	return IAP_OK;
}

static int check_range(struct validator *V, const struct field *f, const struct iap_cfg_node *n,
		       const char *what, double x)
{
	if (!f->has_range)
		return IAP_OK;
	if (x < f->min || x > f->max || (f->max_exclusive && x >= f->max))
		return cfgi_at(V->err, IAP_EINVAL, n, "%s: %s is out of range [%g, %g%c", what, n->value,
			       f->min, f->max, f->max_exclusive ? ')' : ']');
	return IAP_OK;
}

static int check_choice(struct validator *V, const char *const *choices, const struct iap_cfg_node *n,
			const char *what)
{
	const char *v = n->value ? n->value : "";
	char list[512];
	int k = 0;

	if (n->kind != IAP_CFG_SCALAR)
		return cfgi_at(V->err, IAP_EINVAL, n, "%s: expected one value, got a %s", what,
			       n->kind == IAP_CFG_MAP ? "mapping" : "list");
	for (k = 0; choices[k]; k++)
		if (!strcmp(choices[k], v))
			return IAP_OK;
	join_names(list, sizeof(list), choices, k);
	return cfgi_at(V->err, IAP_EINVAL, n, "%s: '%s' is not one of: %s", what, v, list);
}

/* One scalar of a list or field, by type. */
static int check_scalar(struct validator *V, const struct field *f, enum ftype t,
			const struct iap_cfg_node *n, const char *what)
{
	const char *s;
	double x;
	long i;
	int b, rc;

	switch (t) {
	case T_INT:
		rc = iap_cfg_int(n, what, &i, V->err);
		return rc ? rc : check_range(V, f, n, what, (double)i);
	case T_FLOAT:
		rc = iap_cfg_float(n, what, &x, V->err);
		return rc ? rc : check_range(V, f, n, what, x);
	case T_BOOL:
		return iap_cfg_bool(n, what, &b, V->err);
	case T_STR:
		return iap_cfg_str(n, what, &s, V->err);
	case T_ENUM:
		return check_choice(V, f->choices, n, what);
	default:
		return iap_error_set(V->err, IAP_EINVAL, "%s: bad schema type", what);
	}
}

static int check_list(struct validator *V, const struct field *f, const struct iap_cfg_node *n,
		      const char *what, enum ftype item)
{
	char ipath[256];
	int rc;

	if (n->kind != IAP_CFG_SEQ)
		return cfgi_at(V->err, IAP_EINVAL, n, "%s: expected a list", what);
	if (n->n_items < f->min_items)
		return cfgi_at(V->err, IAP_EINVAL, n, "%s: needs at least %d item(s)", what, f->min_items);
	for (int i = 0; i < n->n_items; i++) {
		snprintf(ipath, sizeof(ipath), "%s.%d", what, i);
		rc = check_scalar(V, f, item, n->items[i], ipath);
		if (rc)
			return rc;
	}
	return IAP_OK;
}

/*
 * "policy: global" (or a list item "- lrp") is shorthand for {plugin: ...}:
 * rewrite it into the long form so readers see one shape.
 */
static int expand_shorthand(struct validator *V, struct iap_cfg_node *n)
{
	struct iap_cfg_node *p;

	if (n->kind != IAP_CFG_SCALAR || !n->value)
		return IAP_OK;
	p = cfgi_node_new(IAP_CFG_SCALAR, n->file, n->line, n->col);
	if (!p)
		return iap_error_set(V->err, IAP_ENOMEM, "out of memory");
	p->key = strdup("plugin");
	p->key_line = n->line;
	p->key_col = n->col;
	p->value = n->value;
	n->value = NULL;
	n->kind = IAP_CFG_MAP;
	if (!p->key || cfgi_append(n, p)) {
		cfgi_node_free(p);
		return iap_error_set(V->err, IAP_ENOMEM, "out of memory");
	}
	return IAP_OK;
}

static int check_map(struct validator *V, struct iap_cfg_node *map, const struct field *fields,
		     const char *path, int kind);

/* A resolved plugin reference kept for the typed pipeline (it takes o over). */
static int keep_ref(struct validator *V, const struct iap_cfg_node *map, const struct iap_plugin *p,
		    struct iap_opts *o)
{
	struct cfgi_refs *R = V->refs;

	if (R->n == R->cap) {
		int cap = R->cap ? 2 * R->cap : 16;
		struct iap_pipeline_ref *items = realloc(R->items, (size_t)cap * sizeof(*items));

		if (!items) {
			iap_opts_free(o);
			return iap_error_set(V->err, IAP_ENOMEM, "out of memory");
		}
		R->items = items;
		R->cap = cap;
	}
	R->items[R->n].node = map;
	R->items[R->n].plugin = p;
	R->items[R->n].opts = o;
	R->n++;
	return IAP_OK;
}

/* An item's label in reports: its name, or else its plugin. */
static const char *item_label(const struct iap_cfg_node *item)
{
	const struct iap_cfg_node *n = iap_cfg_child(item, "name");

	if (!n || !n->value)
		n = iap_cfg_child(item, "plugin");
	return n && n->value ? n->value : "";
}

/* Results are keyed by label, so two items of one list must not share one. */
static int check_labels(struct validator *V, const struct iap_cfg_node *list, const char *what)
{
	for (int j = 1; j < list->n_items; j++)
		for (int i = 0; i < j; i++)
			if (!strcmp(item_label(list->items[i]), item_label(list->items[j])))
				return cfgi_at(V->err, IAP_EINVAL, list->items[j],
					       "%s.%d: '%s' is already the name of %s.%d; give one of them "
					       "a different 'name:'", what, j, item_label(list->items[j]), what, i);
	return IAP_OK;
}

static int check_field(struct validator *V, const struct field *f, struct iap_cfg_node *n,
		       const char *what, const char *path)
{
	int rc;

	(void)path;
	switch (f->type) {
	case T_MAP:
		if (f->kind >= 0 && (rc = expand_shorthand(V, n)))
			return rc;
		return check_map(V, n, f->sub, what, f->kind);
	case T_LIST:
		if (n->kind != IAP_CFG_SEQ)
			return cfgi_at(V->err, IAP_EINVAL, n, "%s: expected a list", what);
		if (n->n_items < f->min_items)
			return cfgi_at(V->err, IAP_EINVAL, n, "%s: needs at least %d item(s)", what, f->min_items);
		for (int i = 0; i < n->n_items; i++) {
			char ipath[256];

			snprintf(ipath, sizeof(ipath), "%s.%d", what, i);
			if (f->kind >= 0 && (rc = expand_shorthand(V, n->items[i])))
				return rc;
			rc = check_map(V, n->items[i], f->sub, ipath, f->kind);
			if (rc)
				return rc;
		}
		return check_labels(V, n, what);
	case T_FLOAT_LIST:
		return check_list(V, f, n, what, T_FLOAT);
	case T_STR_LIST:
		return check_list(V, f, n, what, T_STR);
	case T_ENUM_LIST:
		return check_list(V, f, n, what, T_ENUM);
	case T_OPTIONS:
		/* Checked against the plugin's schema by the enclosing map (needs the plugin name). */
		if (n->kind != IAP_CFG_MAP && !(n->kind == IAP_CFG_SCALAR && !n->value))
			return cfgi_at(V->err, IAP_EINVAL, n, "%s: expected a mapping", what);
		if (n->kind == IAP_CFG_SCALAR)
			n->kind = IAP_CFG_MAP;  /* "options:" with nothing after it: no options */
		return IAP_OK;
	default:
		return check_scalar(V, f, f->type, n, what);
	}
}

static int check_map(struct validator *V, struct iap_cfg_node *map, const struct field *fields,
		     const char *path, int kind)
{
	char known[512], sub[256];
	int rc;

	if (map->kind != IAP_CFG_MAP)
		return cfgi_at(V->err, IAP_EINVAL, map, "%s: expected a mapping", *path ? path : "pipeline");
	for (int i = 0; i < map->n_items; i++) {
		struct iap_cfg_node *e = map->items[i];
		const struct field *f = NULL;

		for (const struct field *g = fields; g->key; g++)
			if (!strcmp(g->key, e->key)) {
				f = g;
				break;
			}
		if (!f) {
			field_names(known, sizeof(known), fields);
			if (*path)
				return cfgi_at_key(V->err, IAP_EINVAL, e, "%s: unknown key '%s' (known: %s)",
						   path, e->key, known);
			return cfgi_at_key(V->err, IAP_EINVAL, e, "unknown key '%s' (known: %s)", e->key, known);
		}
		path_join(sub, sizeof(sub), path, e->key);
		rc = check_field(V, f, e, sub, path);
		if (rc)
			return rc;
	}
	for (const struct field *f = fields; f->key; f++) {
		struct iap_cfg_node *added = NULL;

		if (iap_cfg_child(map, f->key))
			continue;
		if (f->required) {
			if (*path)
				return cfgi_at(V->err, IAP_EINVAL, map, "%s: missing required key '%s'", path, f->key);
			return cfgi_at(V->err, IAP_EINVAL, map, "missing required key '%s'", f->key);
		}
		if (!f->def)
			continue;
		rc = add_default(V, map, f, &added);
		if (rc)
			return rc;
		path_join(sub, sizeof(sub), path, f->key);
		/* Defaults of nested maps get their own defaults filled (their plugins are checked too). */
		rc = check_field(V, f, added, sub, path);
		if (rc)
			return rc;
	}
	if (kind >= 0 && V->reg) {
		const struct iap_plugin *p;
		struct iap_opts *o;

		rc = iap_pipeline_plugin(map, kind, V->reg, &p, &o, V->err);
		if (rc)
			return rc;
		if (!V->refs) {
			iap_opts_free(o);
			return IAP_OK;
		}
		return keep_ref(V, map, p, o);
	}
	return IAP_OK;
}

/* Why plugin name of kind is not there: it failed to load (why), or the ones of that kind that are. */
static int plugin_refused(const struct iap_registry *reg, int kind, const char *name, const struct iap_cfg_node *pn,
			  const struct iap_error *why, struct iap_error *err)
{
	const char *kn = iap_plugin_kind_name(kind), *names[64] = { NULL };
	char list[512];
	int n = 0;

	for (int i = 0; i < iap_registry_count(reg) && n < 64; i++) {
		const struct iap_plugin *q = iap_registry_get(reg, i);

		if ((int)q->desc->kind == kind && !strcmp(q->desc->name, name))
			return cfgi_at(err, why->code, pn, "%s plugin '%s' cannot be used: %s", kn, name, why->msg);
		if ((int)q->desc->kind == kind)
			names[n++] = q->desc->name;
	}
	join_names(list, sizeof(list), names, n);
	return cfgi_at(err, IAP_EINVAL, pn, "unknown %s plugin '%s' (%s%s)", kn, name,
		       n ? "available: " : "none found on the plugin path", list);
}

/* One entry e of a plugin reference's options: a known option, one value, valid for its schema. */
static int set_option(const struct iap_plugin *p, struct iap_opts *o, const char *what, const struct iap_cfg_node *e,
		      struct iap_error *err)
{
	const struct iap_option *opt = NULL;
	char list[512];
	int rc;

	for (const struct iap_option *s = p->desc->options; s && s->name; s++)
		if (!strcmp(s->name, e->key)) {
			opt = s;
			break;
		}
	if (!opt) {
		const char *names[64] = { NULL };
		int n = 0;

		for (const struct iap_option *s = p->desc->options; s && s->name && n < 64; s++)
			names[n++] = s->name;
		join_names(list, sizeof(list), names, n);
		return cfgi_at_key(err, IAP_EINVAL, e, "%s: unknown option '%s' (%s%s)", what, e->key,
				   n ? "known: " : "it takes no options", list);
	}
	if (e->kind != IAP_CFG_SCALAR)
		return cfgi_at(err, IAP_EINVAL, e, "%s: option '%s': expected one value, got a %s", what, e->key,
			       e->kind == IAP_CFG_MAP ? "mapping" : "list");
	rc = iap_opts_set(o, what, e->key, e->value ? e->value : "", err);
	if (rc)
		iap_error_prefix(err, "%s:%d:%d", e->file, e->line, e->col);
	return rc;
}

int iap_pipeline_plugin(const struct iap_cfg_node *ref, int kind, const struct iap_registry *reg,
			const struct iap_plugin **plugin, struct iap_opts **opts, struct iap_error *err)
{
	const char *kn = iap_plugin_kind_name(kind), *name;
	const struct iap_cfg_node *pn, *on;
	const struct iap_plugin *p;
	struct iap_error why = { 0, "" };
	char what[160];
	struct iap_opts *o;
	int rc;

	*plugin = NULL;
	*opts = NULL;
	if (!kn || !reg)
		return iap_error_set(err, IAP_EINVAL, "iap_pipeline_plugin: bad kind or no registry");
	pn = iap_cfg_child(ref, "plugin");
	if (!pn)
		return cfgi_at(err, IAP_EINVAL, ref, "missing required key 'plugin'");
	rc = iap_cfg_str(pn, "plugin", &name, err);
	if (rc)
		return rc;
	/* Loaded on first use: a plugin that is there but fails to load says why. */
	if (iap_registry_open(reg, kind, name, &p, &why) != IAP_OK)
		return plugin_refused(reg, kind, name, pn, &why, err);
	snprintf(what, sizeof(what), "%s '%s'", kn, name);
	rc = iap_opts_defaults(p->desc->options, &o, err);
	if (rc) {
		iap_error_prefix(err, "%s", what);
		return rc;
	}
	on = iap_cfg_child(ref, "options");
	for (int i = 0; on && on->kind == IAP_CFG_MAP && i < on->n_items; i++) {
		rc = set_option(p, o, what, on->items[i], err);
		if (rc)
			goto out_free;
	}
	for (const struct iap_option *s = p->desc->options; s && s->name; s++)
		if (!s->def && !iap_opts_is_set(o, s->name)) {
			rc = cfgi_at(err, IAP_EINVAL, on && on->kind == IAP_CFG_MAP && on->line ? on : ref,
				     "%s: missing required option '%s'", what, s->name);
			goto out_free;
		}
	*plugin = p;
	*opts = o;
	return IAP_OK;

out_free:
	iap_opts_free(o);
	return rc;
}

int iap_pipeline_validate(struct iap_cfg *cfg, const struct iap_registry *reg, struct iap_error *err)
{
	struct cfgi_refs refs = { 0 };
	int rc = cfgi_validate(cfg, reg, reg ? &refs : NULL, err);

	cfgi_refs_free(&refs);
	return rc;
}

void cfgi_refs_free(struct cfgi_refs *refs)
{
	for (int i = 0; i < refs->n; i++)
		iap_opts_free(refs->items[i].opts);
	free(refs->items);
	memset(refs, 0, sizeof(*refs));
}

static void defaults_below(const struct field *fields, const char *path,
			   void (*fn)(const char *path, const char *def, void *user), void *user)
{
	char sub[256];

	for (const struct field *f = fields; f->key; f++) {
		path_join(sub, sizeof(sub), path, f->key);
		/* A map's own default ("{}") is only there to hold its keys' defaults. */
		if (f->def && f->type != T_MAP && f->type != T_LIST)
			fn(sub, f->def, user);
		if (f->type == T_MAP && f->sub)
			defaults_below(f->sub, sub, fn, user);
		if (f->type == T_LIST && f->sub) {
			char items[272];

			path_join(items, sizeof(items), sub, "*");
			defaults_below(f->sub, items, fn, user);
		}
	}
}

void iap_pipeline_defaults(void (*fn)(const char *path, const char *def, void *user), void *user)
{
	defaults_below(top_fields, "", fn, user);
}

int cfgi_validate(struct iap_cfg *cfg, const struct iap_registry *reg, struct cfgi_refs *refs,
		  struct iap_error *err)
{
	struct validator V = { cfg, reg, NULL, err, refs };
	struct iap_cfg_node *root = cfgi_root_mut(cfg);
	const struct iap_cfg_node *vn;
	long version;
	int rc;

	if (!root)
		return iap_error_set(err, IAP_EFORMAT, "%s: empty pipeline", cfgi_name(cfg));
	if (root->kind != IAP_CFG_MAP)
		return cfgi_at(err, IAP_EFORMAT, root, "a pipeline must be a mapping (key: value lines)");
	/* The version first: a newer file should say so rather than fail on its new keys. */
	vn = iap_cfg_child(root, "version");
	if (!vn)
		return cfgi_at(err, IAP_EINVAL, root, "missing required key 'version' (this iaprune reads version %d)",
			       IAP_PIPELINE_VERSION);
	rc = iap_cfg_int(vn, "version", &version, err);
	if (rc)
		return rc;
	if (version != IAP_PIPELINE_VERSION)
		return cfgi_at(err, IAP_EINVAL, vn, "version: unsupported pipeline version %ld (this iaprune reads version %d)",
			       version, IAP_PIPELINE_VERSION);
	V.deffile = cfgi_file(cfg, "<default>");
	if (!V.deffile)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	return check_map(&V, root, top_fields, "", -1);
}
