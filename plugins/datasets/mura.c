/*
 * The "mura" dataset plugin: the MURA-v1.1 release as published.
 * MURA-v1.1/train_image_paths.csv and valid_image_paths.csv (no header, one
 * path per line, relative to the folder holding MURA-v1.1/) list the images;
 * the label comes from the study folder name (studyN_positive → abnormal,
 * studyN_negative → normal), the same labels *_labeled_studies.csv gives per
 * study (1 = abnormal). Classes: 0 normal, 1 abnormal (so the positive
 * class is 1, as in the release's label files and the paper's metrics).
 * Splits: the published valid set is the test split (MURA's test set is not
 * public); val is carved from train by patient (val_fraction of each class's
 * patients, seeded), so no patient is in both.
 * root: the folder holding MURA-v1.1/, or MURA-v1.1/ itself.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/plugin.h>

#include "common.h"

static const struct iap_option mura_options[] = {
	{ .name = "root", .type = IAP_OPT_STRING, .def = NULL,
	  .help = "the folder holding MURA-v1.1/ (or MURA-v1.1/ itself)" },
	DS_IMAGE_OPTIONS,
	{ .name = "val_fraction", .type = IAP_OPT_FLOAT, .def = "0.1", .has_range = 1, .min = 0, .max = 0.9,
	  .help = "fraction of each class's train patients carved out for val" },
	{ .name = "seed", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 2147483647,
	  .help = "seed of the patient split" },
	{ .name = NULL },
};

/* Read a whole text file. */
static int read_text(const char *path, char **out, struct iap_error *err)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	size_t len = 0, cap = 0, got;

	*out = NULL;
	if (!f)
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(errno));
	do {
		if (cap - len < 65536) {
			char *nb = realloc(buf, (cap = cap ? 2 * cap : 65536) + 1);

			if (!nb) {
				free(buf);
				fclose(f);
				return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
			}
			buf = nb;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
	} while (got > 0);
	if (ferror(f)) {
		free(buf);
		fclose(f);
		return iap_error_set(err, IAP_EIO, "%s: read error", path);
	}
	fclose(f);
	buf[len] = 0;
	*out = buf;
	return IAP_OK;
}

/*
 * The patient folder and the label of one listed path
 * ("MURA-v1.1/train/XR_WRIST/patient00001/study1_positive/image1.png").
 * *patient points into p (up to the next '/'); -1 when no study folder says.
 */
static int parse_path(const char *p, const char **patient, int *label)
{
	const char *comp = p;

	*patient = NULL;
	*label = -1;
	while (comp && *comp) {
		const char *slash = strchr(comp, '/');
		size_t n = slash ? (size_t)(slash - comp) : strlen(comp);

		if (!strncmp(comp, "patient", 7))
			*patient = comp;
		else if (!strncmp(comp, "study", 5) && n >= 9 && !strncmp(comp + n - 9, "_positive", 9))
			*label = 1;
		else if (!strncmp(comp, "study", 5) && n >= 9 && !strncmp(comp + n - 9, "_negative", 9))
			*label = 0;
		comp = slash ? slash + 1 : NULL;
	}
	return *label >= 0 ? 0 : -1;
}

static int add_list(struct ds *d, const char *dir, const char *base, const char *file, int split,
		    struct iap_error *err)
{
	char *path = ds_join(dir, file), *text = NULL, *line, *next;
	long lineno = 0;
	int rc;

	if (!path)
		return iap_error_set(err, IAP_ENOMEM, "mura: out of memory");
	if ((rc = read_text(path, &text, err)))
		goto out;
	for (line = text; line; line = next) {
		char *end, *full, *pid = NULL;
		const char *patient;
		int label;

		next = strchr(line, '\n');
		if (next)
			*next++ = 0;
		lineno++;
		end = line + strlen(line);
		while (end > line && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == ','))
			*--end = 0;
		if (!*line)
			continue;
		if (parse_path(line, &patient, &label)) {
			rc = iap_error_set(err, IAP_EFORMAT,
					   "%s:%ld: '%s' has no study folder ending in _positive or _negative",
					   path, lineno, line);
			goto out;
		}
		full = ds_join(base, line);
		if (!full) {
			rc = iap_error_set(err, IAP_ENOMEM, "mura: out of memory");
			goto out;
		}
		/* the patient id ends at its folder's slash */
		if (patient && !(pid = strndup(patient, strcspn(patient, "/")))) {
			free(full);
			rc = iap_error_set(err, IAP_ENOMEM, "mura: out of memory");
			goto out;
		}
		rc = ds_add(d, full, label, split, pid, lineno, err);
		free(pid);
		free(full);
		if (rc)
			goto out;
	}
out:
	free(text);
	free(path);
	return rc;
}

static int mura_open(const struct iap_opts *opts, enum iap_split split, void **state,
		     struct iap_error *err)
{
	const char *root = iap_opts_str(opts, "root");
	char *dir = NULL, *base = NULL, *probe = NULL, **names = NULL;
	struct ds *d = NULL;
	int rc;

	*state = NULL;
	if ((rc = ds_new("mura", opts, &d, err)))
		return rc;
	/* root holds MURA-v1.1/, or is it (then the listed paths start from its parent) */
	dir = ds_join(root, "MURA-v1.1");
	probe = dir ? ds_join(dir, "train_image_paths.csv") : NULL;
	if (!probe) {
		rc = iap_error_set(err, IAP_ENOMEM, "mura: out of memory");
		goto out;
	}
	if (ds_is_file(probe)) {
		base = strdup(root);
	} else {
		free(dir);
		dir = strdup(root);
		base = ds_join(root, "..");
	}
	names = calloc(3, sizeof(*names));
	if (!dir || !base || !names || !(names[0] = strdup("normal")) ||
	    !(names[1] = strdup("abnormal"))) {
		ds_free_strings(names, 2);
		rc = iap_error_set(err, IAP_ENOMEM, "mura: out of memory");
		goto out;
	}
	ds_set_classes(d, names, 2);
	/* Samples from both lists: line numbers refer to the list each came from. */
	if ((rc = add_list(d, dir, base, "train_image_paths.csv", IAP_SPLIT_TRAIN, err)))
		goto out;
	if ((rc = add_list(d, dir, base, "valid_image_paths.csv", IAP_SPLIT_TEST, err)))
		goto out;
	/* "file:line" messages name the list the opened split came from */
	d->list_name = ds_join(dir, split == IAP_SPLIT_TEST ? "valid_image_paths.csv"
							    : "train_image_paths.csv");
	if (!d->list_name) {
		rc = iap_error_set(err, IAP_ENOMEM, "mura: out of memory");
		goto out;
	}
	if ((rc = ds_carve_opts(d, opts, 1, 0, err)) || (rc = ds_finish(d, split, err)))
		goto out;
	*state = d;
	d = NULL;
out:
	free(dir);
	free(base);
	free(probe);
	ds_close(d);
	return rc;
}

DS_DEFINE_OPS(mura_ops, mura_open)

static const struct iap_plugin_desc mura_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_DATASET,
	.name = "mura",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "MURA v1.1 musculoskeletal radiographs, normal/abnormal by study; valid = test",
	.options = mura_options,
	.ops.dataset = &mura_ops,
};

IAP_PLUGIN_DEFINE(mura_desc)
