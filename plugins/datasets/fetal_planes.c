/*
 * The "fetal_planes" dataset plugin: FETAL_PLANES_DB as published.
 * root/FETAL_PLANES_DB_data.csv (semicolon-separated in the release; commas
 * and tabs are accepted too) with the columns Image_name, Patient_num,
 * Plane and Train (1 train, 0 test); images are root/Images/<Image_name>.png.
 * Classes: the Plane values sorted in byte order (the release has six:
 * Fetal abdomen, Fetal brain, Fetal femur, Fetal thorax, Maternal cervix,
 * Other). The published Train column gives train and test; val is carved
 * from train by patient (val_fraction of each class's patients, seeded).
 */
#include "config.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <iaprune/csv.h>
#include <iaprune/plugin.h>

#include "common.h"

static const struct iap_option fetal_options[] = {
	{ .name = "root", .type = IAP_OPT_STRING, .def = NULL,
	  .help = "folder with FETAL_PLANES_DB_data.csv and Images/" },
	DS_IMAGE_OPTIONS,
	{ .name = "val_fraction", .type = IAP_OPT_FLOAT, .def = "0.1", .has_range = 1, .min = 0, .max = 0.9,
	  .help = "fraction of each class's train patients carved out for val" },
	{ .name = "seed", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 2147483647,
	  .help = "seed of the patient split" },
	{ .name = NULL },
};

/* A copy of s without surrounding spaces (the release pads some fields). */
static char *trimmed(const char *s)
{
	const char *e = s + strlen(s);

	while (isspace((unsigned char)*s))
		s++;
	while (e > s && isspace((unsigned char)e[-1]))
		e--;
	return strndup(s, (size_t)(e - s));
}

/* Column `name`, ignoring spaces around header names (the release has "Train "). */
static int column(struct iap_csv *csv, const char *name, struct iap_error *err)
{
	size_t n = strlen(name);

	for (int c = 0; c < iap_csv_columns(csv); c++) {
		const char *h = iap_csv_header(csv, c);
		size_t len;

		while (isspace((unsigned char)*h))
			h++;
		len = strlen(h);
		while (len > 0 && isspace((unsigned char)h[len - 1]))
			len--;
		if (len == n && !memcmp(h, name, n))
			return c;
	}
	return iap_csv_column(csv, name, err);  /* its message lists the columns there are */
}

static int fetal_open(const struct iap_opts *opts, enum iap_split split, void **state,
		      struct iap_error *err)
{
	const char *root = iap_opts_str(opts, "root");
	char *csv_path = ds_join(root, "FETAL_PLANES_DB_data.csv"), *images = ds_join(root, "Images");
	char **planes = NULL;
	int64_t n_planes = 0;
	struct iap_csv *csv = NULL;
	const struct iap_csv_row *row;
	struct ds *d = NULL;
	int c_name, c_patient, c_plane, c_train, n_classes = 0, rc;

	*state = NULL;
	if (!csv_path || !images) {
		rc = iap_error_set(err, IAP_ENOMEM, "fetal_planes: out of memory");
		goto out;
	}
	if ((rc = ds_new("fetal_planes", opts, &d, err)))
		goto out;
	if (!(d->list_name = strdup(csv_path))) {
		rc = iap_error_set(err, IAP_ENOMEM, "fetal_planes: out of memory");
		goto out;
	}
	if ((rc = ds_csv_open(csv_path, 0, &csv, err)))
		goto out;
	if ((c_name = column(csv, "Image_name", err)) < 0 ||
	    (c_patient = column(csv, "Patient_num", err)) < 0 ||
	    (c_plane = column(csv, "Plane", err)) < 0 ||
	    (c_train = column(csv, "Train", err)) < 0) {
		rc = IAP_EFORMAT;
		goto out;
	}
	while (!(rc = iap_csv_next(csv, &row, err)) && row) {
		char *name = trimmed(row->fields[c_name]), *file = NULL, *full = NULL, **np;
		char *patient = trimmed(row->fields[c_patient]);
		size_t len = name ? strlen(name) : 0;
		long train;

		np = realloc(planes, sizeof(*planes) * (size_t)(n_planes + 1));
		if (np)
			planes = np;
		if (!name || !patient || !np || !(planes[n_planes] = trimmed(row->fields[c_plane]))) {
			free(name);
			free(patient);
			rc = iap_error_set(err, IAP_ENOMEM, "fetal_planes: out of memory");
			goto out;
		}
		n_planes++;
		if ((rc = iap_csv_long(csv, row, c_train, &train, err)) == IAP_OK && train != 0 && train != 1)
			rc = iap_error_set(err, IAP_EFORMAT, "%s:%ld: column 'Train': expected 1 or 0, got %ld",
					   csv_path, row->line, train);
		if (!rc && (!name[0] || !planes[n_planes - 1][0]))
			rc = iap_error_set(err, IAP_EFORMAT, "%s:%ld: empty %s", csv_path, row->line,
					   !name[0] ? "Image_name" : "Plane");
		if (!rc) {
			/* Image_name has no extension in the release */
			int has_ext = len > 4 && !strcasecmp(name + len - 4, ".png");

			file = malloc(len + 5);
			if (file) {
				memcpy(file, name, len + 1);
				if (!has_ext)
					memcpy(file + len, ".png", 5);
			}
			full = file ? ds_join(images, file) : NULL;
			rc = full ? ds_add(d, full, -1, train ? IAP_SPLIT_TRAIN : IAP_SPLIT_TEST,
					   patient[0] ? patient : NULL, row->line, err)
				  : iap_error_set(err, IAP_ENOMEM, "fetal_planes: out of memory");
		}
		free(name);
		free(patient);
		free(file);
		free(full);
		if (rc)
			goto out;
	}
	if (rc)
		goto out;
	if (d->n == 0) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: no rows", csv_path);
		goto out;
	}
	{
		/* classes: the planes, sorted; the per-row copies give each row its index */
		char **v = malloc(sizeof(*v) * (size_t)n_planes);

		if (!v) {
			rc = iap_error_set(err, IAP_ENOMEM, "fetal_planes: out of memory");
			goto out;
		}
		for (int64_t i = 0; i < n_planes; i++) {
			if (!(v[i] = strdup(planes[i]))) {
				ds_free_strings(v, (int)i);
				rc = iap_error_set(err, IAP_ENOMEM, "fetal_planes: out of memory");
				goto out;
			}
		}
		n_classes = ds_sort_unique(v, (int)n_planes);
		ds_set_classes(d, v, n_classes);
		for (int64_t i = 0; i < d->n; i++)
			d->labels[i] = ds_find_name(d->class_names, n_classes, planes[i]);
	}
	if ((rc = ds_check_duplicates(d, err)) || (rc = ds_carve_opts(d, opts, 1, 0, err)) ||
	    (rc = ds_finish(d, split, err)))
		goto out;
	*state = d;
	d = NULL;
out:
	ds_free_strings(planes, (int)n_planes);
	iap_csv_close(csv);
	ds_close(d);
	free(csv_path);
	free(images);
	return rc;
}

DS_DEFINE_OPS(fetal_ops, fetal_open)

static const struct iap_plugin_desc fetal_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_DATASET,
	.name = "fetal_planes",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "FETAL_PLANES_DB ultrasound planes; published train/test, val carved by patient",
	.options = fetal_options,
	.ops.dataset = &fetal_ops,
};

IAP_PLUGIN_DEFINE(fetal_desc)
