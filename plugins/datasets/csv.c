/*
 * The "csv" dataset plugin: a manifest with one row per image. Columns (names
 * configurable): path (relative to the manifest's folder, or to `root`),
 * label (class names, sorted in byte order to indices, or integers 0..K-1),
 * and optionally split (train / val (valid, validation) / test) and patient.
 * A split missing from the split column, or every split when there is no
 * split column, is carved out of train with a seeded stratified split; rows
 * sharing a patient id always land in the same split.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/csv.h>
#include <iaprune/plugin.h>

#include "common.h"

/* The enum options' choices, each in the order of its C enum (iap_opts_enum's index). */
enum csv_labels { CSV_LABELS_AUTO, CSV_LABELS_NAMES, CSV_LABELS_INTEGERS, CSV_LABELS_COUNT };
static const char *const label_kinds[] = {
	[CSV_LABELS_AUTO] = "auto", [CSV_LABELS_NAMES] = "names", [CSV_LABELS_INTEGERS] = "integers", NULL,
};
_Static_assert(sizeof(label_kinds) / sizeof(label_kinds[0]) == CSV_LABELS_COUNT + 1,
	       "label_kinds must match enum csv_labels");

enum csv_delim { CSV_DELIM_AUTO, CSV_DELIM_COMMA, CSV_DELIM_SEMICOLON, CSV_DELIM_TAB, CSV_DELIM_COUNT };
static const char *const delimiters[] = {
	[CSV_DELIM_AUTO] = "auto", [CSV_DELIM_COMMA] = "comma", [CSV_DELIM_SEMICOLON] = "semicolon",
	[CSV_DELIM_TAB] = "tab", NULL,
};
/* The separator each choice stands for; 0: detect it (ds_csv_open). */
static const char delimiter_char[] = {
	[CSV_DELIM_AUTO] = 0, [CSV_DELIM_COMMA] = ',', [CSV_DELIM_SEMICOLON] = ';', [CSV_DELIM_TAB] = '\t',
};
_Static_assert(sizeof(delimiters) / sizeof(delimiters[0]) == CSV_DELIM_COUNT + 1 &&
	       sizeof(delimiter_char) == CSV_DELIM_COUNT, "delimiters must match enum csv_delim");

static const struct iap_option csv_options[] = {
	{ .name = "manifest", .type = IAP_OPT_STRING, .def = NULL, .help = "the CSV file" },
	{ .name = "root", .type = IAP_OPT_STRING, .def = "",
	  .help = "folder relative paths start from (default: the manifest's folder)" },
	{ .name = "path_column", .type = IAP_OPT_STRING, .def = "path", .help = "column with the image path" },
	{ .name = "label_column", .type = IAP_OPT_STRING, .def = "label", .help = "column with the class" },
	{ .name = "split_column", .type = IAP_OPT_STRING, .def = "split",
	  .help = "column with train/val/test (used when present; required when set)" },
	{ .name = "patient_column", .type = IAP_OPT_STRING, .def = "patient",
	  .help = "column with a patient id that keeps a patient's images in one split (optional)" },
	{ .name = "labels", .type = IAP_OPT_ENUM, .def = "auto", .choices = label_kinds,
	  .help = "class names (sorted to indices) or integers; auto: integers when every label is one" },
	{ .name = "class_names", .type = IAP_OPT_STRING, .def = "",
	  .help = "comma-separated class names in index order (integers: names them; names: fixes the order)" },
	{ .name = "delimiter", .type = IAP_OPT_ENUM, .def = "auto", .choices = delimiters,
	  .help = "field separator; auto: ';' or tab when the header has one and no comma" },
	DS_IMAGE_OPTIONS,
	DS_SPLIT_OPTIONS("0.1", "0.2"),
	{ .name = NULL },
};

/* 1 when s is a whole non-negative decimal integer (spaces around allowed). */
static int is_index(const char *s, long *v)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	if (!isdigit((unsigned char)*s))
		return 0;
	*v = strtol(s, &end, 10);
	while (isspace((unsigned char)*end))
		end++;
	return !*end && *v >= 0 && *v < 1000000;
}

static int parse_split(const char *s)
{
	if (!strcmp(s, "train"))
		return IAP_SPLIT_TRAIN;
	if (!strcmp(s, "val") || !strcmp(s, "valid") || !strcmp(s, "validation"))
		return IAP_SPLIT_VAL;
	if (!strcmp(s, "test"))
		return IAP_SPLIT_TEST;
	return -1;
}

/* The plugin's own options, read once at open. Strings stay valid while the opts live. */
struct csv_opts {
	const char *manifest, *root, *path_column, *label_column, *class_names;
	const char *split_column, *patient_column;
	int split_named, patient_named;   /* set in the pipeline: the column must exist */
	enum csv_labels labels;
	char delim;                       /* 0: detect */
};

static void csv_opts_parse(const struct iap_opts *opts, struct csv_opts *o)
{
	int labels = iap_opts_enum(opts, "labels"), delim = iap_opts_enum(opts, "delimiter");

	o->manifest = iap_opts_str(opts, "manifest");
	o->root = iap_opts_str(opts, "root");
	o->path_column = iap_opts_str(opts, "path_column");
	o->label_column = iap_opts_str(opts, "label_column");
	o->class_names = iap_opts_str(opts, "class_names");
	o->split_column = iap_opts_str(opts, "split_column");
	o->patient_column = iap_opts_str(opts, "patient_column");
	o->split_named = iap_opts_is_set(opts, "split_column");
	o->patient_named = iap_opts_is_set(opts, "patient_column");
	o->labels = labels >= 0 && labels < CSV_LABELS_COUNT ? (enum csv_labels)labels : CSV_LABELS_AUTO;
	o->delim = delim >= 0 && delim < CSV_DELIM_COUNT ? delimiter_char[delim] : 0;
}

/* What one open builds: the samples, with their label texts kept aside until the classes are known. */
struct csv_read {
	const struct csv_opts *o;
	struct ds *d;
	char **texts;                     /* [n_texts], one per sample */
	int64_t n_texts;
	char **names;                     /* class names, n_names */
	int n_names;
	int pcol, lcol, scol, gcol;       /* scol, gcol: -1 when absent */
	int present[IAP_SPLIT_COUNT];     /* splits the split column named */
};

/* An optional column: absent is fine unless the user named it. */
static int optional_column(struct iap_csv *csv, const char *name, int named, int *col, struct iap_error *err)
{
	*col = -1;
	if (!name || !name[0])
		return IAP_OK;
	if (!named) {
		*col = iap_csv_column(csv, name, NULL);
		return IAP_OK;
	}
	*col = iap_csv_column(csv, name, err);
	return *col < 0 ? IAP_EFORMAT : IAP_OK;
}

static int find_columns(struct iap_csv *csv, struct csv_read *r, struct iap_error *err)
{
	const struct csv_opts *o = r->o;
	int rc;

	if ((r->pcol = iap_csv_column(csv, o->path_column, err)) < 0 ||
	    (r->lcol = iap_csv_column(csv, o->label_column, err)) < 0)
		return IAP_EFORMAT;
	if ((rc = optional_column(csv, o->split_column, o->split_named, &r->scol, err)))
		return rc;
	return optional_column(csv, o->patient_column, o->patient_named, &r->gcol, err);
}

/* One row: its sample (path joined to base) and its label text. */
static int add_row(struct iap_csv *csv, const struct iap_csv_row *row, const char *base, struct csv_read *r,
		   struct iap_error *err)
{
	const char *manifest = r->o->manifest, *p = row->fields[r->pcol], *l = row->fields[r->lcol];
	int s = IAP_SPLIT_TRAIN, rc;
	char *full, **nt;

	if (!p[0] || !l[0])
		return iap_error_set(err, IAP_EFORMAT, "%s:%ld: empty %s", manifest, row->line,
				     !p[0] ? "path" : "label");
	if (r->scol >= 0 && (s = parse_split(row->fields[r->scol])) < 0)
		return iap_error_set(err, IAP_EFORMAT,
				     "%s:%ld: column '%s': unknown split '%s' (train, val or test)",
				     manifest, row->line, iap_csv_header(csv, r->scol), row->fields[r->scol]);
	r->present[s] = 1;
	full = ds_join(base, p);
	nt = realloc(r->texts, sizeof(*r->texts) * (size_t)(r->d->n + 1));
	if (nt)
		r->texts = nt;
	if (!full || !nt || !(r->texts[r->n_texts] = strdup(l))) {
		free(full);
		return iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
	}
	r->n_texts++;
	rc = ds_add(r->d, full, -1, s, r->gcol >= 0 && row->fields[r->gcol][0] ? row->fields[r->gcol] : NULL,
		    row->line, err);
	free(full);
	return rc;
}

/* Every row, in one pass. */
static int read_rows(struct iap_csv *csv, const char *base, struct csv_read *r, struct iap_error *err)
{
	const struct iap_csv_row *row;
	int rc;

	while (!(rc = iap_csv_next(csv, &row, err)) && row)
		if ((rc = add_row(csv, row, base, r, err)))
			return rc;
	if (rc)
		return rc;
	if (r->d->n == 0)
		return iap_error_set(err, IAP_EFORMAT, "%s: no rows", r->o->manifest);
	return IAP_OK;
}

/* Whether the labels are class indices: as the option says, or (auto) when every one is. */
static int labels_are_integers(const struct csv_read *r)
{
	long v;
	int integers = r->o->labels == CSV_LABELS_INTEGERS;

	if (r->o->labels == CSV_LABELS_AUTO) {
		integers = 1;
		for (int64_t i = 0; i < r->d->n && integers; i++)
			integers = is_index(r->texts[i], &v);
	}
	return integers;
}

/*
 * Labels from the texts: integers directly (below the class_names count
 * when given), names by their place in class_names. Without class_names,
 * names wait for name_classes(). *max_label: the largest integer label.
 */
static int assign_labels(struct csv_read *r, int integers, long *max_label, struct iap_error *err)
{
	const char *manifest = r->o->manifest;
	struct ds *d = r->d;

	*max_label = -1;
	for (int64_t i = 0; i < d->n; i++) {
		long v;

		if (integers) {
			if (!is_index(r->texts[i], &v))
				return iap_error_set(err, IAP_EFORMAT, "%s:%ld: label '%s' is not a class index",
						     manifest, d->lines[i], r->texts[i]);
			if (r->n_names && v >= r->n_names)
				return iap_error_set(err, IAP_EFORMAT,
						     "%s:%ld: label %ld out of range (%d class_names)",
						     manifest, d->lines[i], v, r->n_names);
			d->labels[i] = (int)v;
			*max_label = v > *max_label ? v : *max_label;
		} else if (r->n_names) {
			int c = -1;

			for (int k = 0; k < r->n_names && c < 0; k++)
				if (!strcmp(r->names[k], r->texts[i]))
					c = k;
			if (c < 0)
				return iap_error_set(err, IAP_EFORMAT,
						     "%s:%ld: label '%s' is not one of class_names", manifest,
						     d->lines[i], r->texts[i]);
			d->labels[i] = c;
		}
	}
	return IAP_OK;
}

/* Without class_names, name labels become classes sorted in byte order, as ImageFolder sorts its folders. */
static int name_classes(struct csv_read *r, struct iap_error *err)
{
	struct ds *d = r->d;
	char **v = malloc(sizeof(*v) * (size_t)d->n);

	if (!v)
		return iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
	for (int64_t i = 0; i < d->n; i++) {
		if (!(v[i] = strdup(r->texts[i]))) {
			ds_free_strings(v, (int)i);
			return iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
		}
	}
	r->n_names = ds_sort_unique(v, (int)d->n);
	r->names = v;
	for (int64_t i = 0; i < d->n; i++)
		d->labels[i] = ds_find_name(r->names, r->n_names, r->texts[i]);
	return IAP_OK;
}

/* Without class_names, integer labels 0..max_label are named "0", "1", ... */
static int number_classes(struct csv_read *r, long max_label, struct iap_error *err)
{
	int n = (int)max_label + 1;
	char **names = calloc((size_t)n, sizeof(*names));

	for (int k = 0; names && k < n; k++) {
		char buf[24];

		snprintf(buf, sizeof(buf), "%d", k);
		if (!(names[k] = strdup(buf))) {
			ds_free_strings(names, k);
			names = NULL;
		}
	}
	if (!names)
		return iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
	r->names = names;
	r->n_names = n;
	return IAP_OK;
}

/* Every sample's class, and the class names handed to the dataset. */
static int resolve_classes(struct csv_read *r, struct iap_error *err)
{
	long max_label;
	int integers, rc;

	if ((rc = ds_split_list(r->o->class_names, &r->names, &r->n_names, err)))
		return rc;
	integers = labels_are_integers(r);
	if ((rc = assign_labels(r, integers, &max_label, err)))
		return rc;
	if (!integers && !r->n_names)
		rc = name_classes(r, err);
	else if (integers && !r->n_names)
		rc = number_classes(r, max_label, err);
	if (rc)
		return rc;
	ds_set_classes(r->d, r->names, r->n_names);
	r->names = NULL;
	r->n_names = 0;
	return IAP_OK;
}

static int csv_open(const struct iap_opts *opts, enum iap_split split, void **state,
		    struct iap_error *err)
{
	struct csv_opts o;
	struct csv_read r = { .o = &o };
	struct iap_csv *csv = NULL;
	char *base = NULL;
	int rc;

	*state = NULL;
	csv_opts_parse(opts, &o);
	if ((rc = ds_new("csv", opts, &r.d, err)))
		return rc;
	if (!(r.d->list_name = strdup(o.manifest)) ||
	    !(base = o.root[0] ? strdup(o.root) : ds_dirname(o.manifest))) {
		rc = iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
		goto out;
	}
	if ((rc = ds_csv_open(o.manifest, o.delim, &csv, err)) ||
	    (rc = find_columns(csv, &r, err)) ||
	    (rc = read_rows(csv, base, &r, err)) ||
	    (rc = resolve_classes(&r, err)))
		goto out;
	if ((rc = ds_check_duplicates(r.d, err)) ||
	    (rc = ds_carve_opts(r.d, opts, !r.present[IAP_SPLIT_VAL],
				r.scol < 0 || !r.present[IAP_SPLIT_TEST], err)) ||
	    (rc = ds_finish(r.d, split, err)))
		goto out;
	*state = r.d;
	r.d = NULL;
out:
	for (int64_t i = 0; i < r.n_texts; i++)
		free(r.texts[i]);
	free(r.texts);
	ds_free_strings(r.names, r.n_names);
	free(base);
	iap_csv_close(csv);
	ds_close(r.d);
	return rc;
}

DS_DEFINE_OPS(csv_ops, csv_open)

static const struct iap_plugin_desc csv_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_DATASET,
	.name = "csv",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "images listed in a CSV manifest (path, label, optional split and patient columns)",
	.options = csv_options,
	.ops.dataset = &csv_ops,
};

IAP_PLUGIN_DEFINE(csv_desc)
