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

static const char *const label_kinds[] = { "auto", "names", "integers", NULL };
static const char *const delimiters[] = { "auto", "comma", "semicolon", "tab", NULL };

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

/* An optional column: absent is fine unless the user named it. */
static int optional_column(struct iap_csv *csv, const struct iap_opts *opts, const char *opt,
			   int *col, struct iap_error *err)
{
	const char *name = iap_opts_str(opts, opt);

	*col = -1;
	if (!name || !name[0])
		return IAP_OK;
	if (!iap_opts_is_set(opts, opt)) {
		*col = iap_csv_column(csv, name, NULL);
		return IAP_OK;
	}
	*col = iap_csv_column(csv, name, err);
	return *col < 0 ? IAP_EFORMAT : IAP_OK;
}

static int csv_open(const struct iap_opts *opts, enum iap_split split, void **state,
		    struct iap_error *err)
{
	const char *manifest = iap_opts_str(opts, "manifest"), *kind = iap_opts_str(opts, "labels");
	const char *dl = iap_opts_str(opts, "delimiter");
	char delim = !strcmp(dl, "comma") ? ',' : !strcmp(dl, "semicolon") ? ';' : !strcmp(dl, "tab") ? '\t' : 0;
	struct iap_csv *csv = NULL;
	const struct iap_csv_row *row;
	struct ds *d = NULL;
	char *base = NULL, **texts = NULL, **names = NULL;
	int pcol, lcol, scol, gcol, n_names = 0, integers, rc;
	int present[IAP_SPLIT_COUNT] = { 0 };
	long max_label = -1;
	int64_t n_texts = 0;

	*state = NULL;
	if ((rc = ds_new("csv", opts, &d, err)))
		return rc;
	if (!(d->list_name = strdup(manifest)) ||
	    !(base = iap_opts_str(opts, "root")[0] ? strdup(iap_opts_str(opts, "root"))
						   : ds_dirname(manifest))) {
		rc = iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
		goto out;
	}
	if ((rc = ds_csv_open(manifest, delim, &csv, err)))
		goto out;
	if ((pcol = iap_csv_column(csv, iap_opts_str(opts, "path_column"), err)) < 0 ||
	    (lcol = iap_csv_column(csv, iap_opts_str(opts, "label_column"), err)) < 0) {
		rc = IAP_EFORMAT;
		goto out;
	}
	if ((rc = optional_column(csv, opts, "split_column", &scol, err)) ||
	    (rc = optional_column(csv, opts, "patient_column", &gcol, err)))
		goto out;

	/* One pass: samples with their label text kept aside until the classes are known. */
	while (!(rc = iap_csv_next(csv, &row, err)) && row) {
		const char *p = row->fields[pcol], *l = row->fields[lcol];
		int s = IAP_SPLIT_TRAIN;
		char *full, **nt;

		if (!p[0] || !l[0]) {
			rc = iap_error_set(err, IAP_EFORMAT, "%s:%ld: empty %s", manifest, row->line,
					   !p[0] ? "path" : "label");
			goto out;
		}
		if (scol >= 0 && (s = parse_split(row->fields[scol])) < 0) {
			rc = iap_error_set(err, IAP_EFORMAT,
					   "%s:%ld: column '%s': unknown split '%s' (train, val or test)",
					   manifest, row->line, iap_csv_header(csv, scol), row->fields[scol]);
			goto out;
		}
		present[s] = 1;
		full = ds_join(base, p);
		nt = realloc(texts, sizeof(*texts) * (size_t)(d->n + 1));
		if (nt)
			texts = nt;
		if (!full || !nt || !(texts[n_texts] = strdup(l))) {
			free(full);
			rc = iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
			goto out;
		}
		n_texts++;
		rc = ds_add(d, full, -1, s, gcol >= 0 && row->fields[gcol][0] ? row->fields[gcol] : NULL,
			    row->line, err);
		free(full);
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	if (d->n == 0) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: no rows", manifest);
		goto out;
	}

	/* Classes. */
	if ((rc = ds_split_list(iap_opts_str(opts, "class_names"), &names, &n_names, err)))
		goto out;
	integers = !strcmp(kind, "integers");
	if (!strcmp(kind, "auto")) {
		long v;

		integers = 1;
		for (int64_t i = 0; i < d->n && integers; i++)
			integers = is_index(texts[i], &v);
	}
	for (int64_t i = 0; i < d->n; i++) {
		long v;

		if (integers) {
			if (!is_index(texts[i], &v)) {
				rc = iap_error_set(err, IAP_EFORMAT, "%s:%ld: label '%s' is not a class index",
						   manifest, d->lines[i], texts[i]);
				goto out;
			}
			if (n_names && v >= n_names) {
				rc = iap_error_set(err, IAP_EFORMAT,
						   "%s:%ld: label %ld out of range (%d class_names)",
						   manifest, d->lines[i], v, n_names);
				goto out;
			}
			d->labels[i] = (int)v;
			max_label = v > max_label ? v : max_label;
		} else if (n_names) {
			int c = -1;

			for (int k = 0; k < n_names && c < 0; k++)
				if (!strcmp(names[k], texts[i]))
					c = k;
			if (c < 0) {
				rc = iap_error_set(err, IAP_EFORMAT,
						   "%s:%ld: label '%s' is not one of class_names", manifest,
						   d->lines[i], texts[i]);
				goto out;
			}
			d->labels[i] = c;
		}
	}
	if (!integers && !n_names) {
		/* names sorted in byte order, as ImageFolder sorts its folders */
		char **v = malloc(sizeof(*v) * (size_t)d->n);

		if (!v) {
			rc = iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
			goto out;
		}
		for (int64_t i = 0; i < d->n; i++) {
			if (!(v[i] = strdup(texts[i]))) {
				ds_free_strings(v, (int)i);
				rc = iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
				goto out;
			}
		}
		n_names = ds_sort_unique(v, (int)d->n);
		names = v;
		for (int64_t i = 0; i < d->n; i++)
			d->labels[i] = ds_find_name(names, n_names, texts[i]);
	} else if (integers && !n_names) {
		n_names = (int)max_label + 1;
		names = calloc((size_t)n_names, sizeof(*names));
		for (int k = 0; names && k < n_names; k++) {
			char buf[24];

			snprintf(buf, sizeof(buf), "%d", k);
			if (!(names[k] = strdup(buf))) {
				ds_free_strings(names, k);
				names = NULL;
			}
		}
		if (!names) {
			n_names = 0;
			rc = iap_error_set(err, IAP_ENOMEM, "csv: out of memory");
			goto out;
		}
	}
	ds_set_classes(d, names, n_names);
	names = NULL;

	if ((rc = ds_check_duplicates(d, err)) ||
	    (rc = ds_carve_opts(d, opts, !present[IAP_SPLIT_VAL], scol < 0 || !present[IAP_SPLIT_TEST],
				err)) ||
	    (rc = ds_finish(d, split, err)))
		goto out;
	*state = d;
	d = NULL;
out:
	for (int64_t i = 0; i < n_texts; i++)
		free(texts[i]);
	free(texts);
	ds_free_strings(names, n_names);
	free(base);
	iap_csv_close(csv);
	ds_close(d);
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
