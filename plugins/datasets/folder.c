/*
 * Folder datasets (imagefolder, kvasir, cpn): root/<class>/<image>, or
 * root/{train,val,test}/<class>/<image> when any of those split folders
 * exists. Classes are the class folder names sorted in byte order
 * (torchvision's ImageFolder rule; with split folders, the union over them);
 * images are the .png/.jpg/.jpeg files of a class folder and its
 * subfolders, files first then subfolders, each in name order. Names
 * starting with '.' are skipped. A split folder that is missing is carved
 * out of train (seeded, stratified: val_fraction / test_fraction of every
 * class); without split folders both val and test are carved.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common.h"

#define MAX_DEPTH 16

static const char *const split_dirs[IAP_SPLIT_COUNT][3] = {
	[IAP_SPLIT_TRAIN] = { "train", NULL },
	[IAP_SPLIT_VAL] = { "val", "valid", NULL },
	[IAP_SPLIT_TEST] = { "test", NULL },
};

static int is_image_name(const char *name)
{
	const char *dot = strrchr(name, '.');

	return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") ||
		       !strcasecmp(dot, ".jpeg"));
}

/* Sorted entries of dir: subfolders (want_dirs) or image files. */
static int list_dir(const char *dir, int want_dirs, char ***out, int *n, struct iap_error *err)
{
	DIR *dh = opendir(dir);
	struct dirent *e;
	char **v = NULL;
	int count = 0, cap = 0, rc = IAP_OK;

	*out = NULL;
	*n = 0;
	if (!dh)
		return iap_error_set(err, IAP_EIO, "%s: %s", dir, strerror(errno));
	while ((e = readdir(dh))) {
		char *full;
		int ok;

		if (e->d_name[0] == '.')
			continue;
		if (!want_dirs && !is_image_name(e->d_name))
			continue;
		full = ds_join(dir, e->d_name);
		if (!full)
			goto oom;
		ok = want_dirs ? ds_is_dir(full) : ds_is_file(full);
		free(full);
		if (!ok)
			continue;
		if (count == cap) {
			char **nv = realloc(v, sizeof(*v) * (size_t)(cap = cap ? 2 * cap : 16));

			if (!nv)
				goto oom;
			v = nv;
		}
		if (!(v[count] = strdup(e->d_name)))
			goto oom;
		count++;
	}
	closedir(dh);
	*n = ds_sort_unique(v, count);
	*out = v;
	return rc;
oom:
	closedir(dh);
	ds_free_strings(v, count);
	return iap_error_set(err, IAP_ENOMEM, "out of memory listing %s", dir);
}

/* Add the images under dir (files first, then subfolders) with one label and split. */
static int add_images(struct ds *d, const char *dir, int label, int split, int depth,
		      struct iap_error *err)
{
	char **names = NULL;
	int n = 0, rc;

	if ((rc = list_dir(dir, 0, &names, &n, err)))
		return rc;
	for (int k = 0; k < n && !rc; k++) {
		char *p = ds_join(dir, names[k]);

		rc = p ? ds_add(d, p, label, split, NULL, 0, err)
		       : iap_error_set(err, IAP_ENOMEM, "out of memory");
		free(p);
	}
	ds_free_strings(names, n);
	if (rc || depth >= MAX_DEPTH)
		return rc;
	if ((rc = list_dir(dir, 1, &names, &n, err)))
		return rc;
	for (int k = 0; k < n && !rc; k++) {
		char *p = ds_join(dir, names[k]);

		rc = p ? add_images(d, p, label, split, depth + 1, err)
		       : iap_error_set(err, IAP_ENOMEM, "out of memory");
		free(p);
	}
	ds_free_strings(names, n);
	return rc;
}

/* The layout a preset needs: exactly the expected class folders (any letter case). */
static int check_expected(struct ds *d, const char *root, const char *const *expected,
			  struct iap_error *err)
{
	char list[512] = "";
	int n_expected = 0;

	for (; expected[n_expected]; n_expected++) {
		if (n_expected)
			strncat(list, ", ", sizeof(list) - strlen(list) - 1);
		strncat(list, expected[n_expected], sizeof(list) - strlen(list) - 1);
	}
	for (int k = 0; k < n_expected; k++) {
		int found = 0;

		for (int c = 0; c < d->n_classes; c++)
			found |= !strcasecmp(d->class_names[c], expected[k]);
		if (!found)
			return iap_error_set(err, IAP_EFORMAT, "%s: missing class folder '%s' (%s expects %s)",
					     root, expected[k], d->plugin, list);
	}
	for (int c = 0; c < d->n_classes; c++) {
		int known = 0;

		for (int k = 0; k < n_expected; k++)
			known |= !strcasecmp(d->class_names[c], expected[k]);
		if (!known)
			return iap_error_set(err, IAP_EFORMAT,
					     "%s: unexpected class folder '%s' (%s expects %s)", root,
					     d->class_names[c], d->plugin, list);
	}
	return IAP_OK;
}

int ds_open_folder(const char *plugin, const struct iap_opts *opts, const char *root,
		   const char *const *expected, enum iap_split split, void **state,
		   struct iap_error *err)
{
	char *sdir[IAP_SPLIT_COUNT] = { NULL };
	char **classes = NULL;
	int n_classes = 0, have_split_dirs = 0, rc;
	struct ds *d = NULL;
	struct stat st;

	*state = NULL;
	if (stat(root, &st))
		return iap_error_set(err, IAP_EIO, "%s: %s", root, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return iap_error_set(err, IAP_EIO, "%s: not a directory", root);
	if ((rc = ds_new(plugin, opts, &d, err)))
		return rc;

	for (int s = 0; s < IAP_SPLIT_COUNT; s++) {
		for (int k = 0; split_dirs[s][k] && !sdir[s]; k++) {
			char *p = ds_join(root, split_dirs[s][k]);

			if (!p) {
				rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
				goto fail;
			}
			if (ds_is_dir(p))
				sdir[s] = p;
			else
				free(p);
		}
		have_split_dirs |= sdir[s] != NULL;
	}
	if (!have_split_dirs && !(sdir[IAP_SPLIT_TRAIN] = strdup(root))) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto fail;
	}

	/* Classes: the union of the class folders of every split folder, sorted. */
	for (int s = 0; s < IAP_SPLIT_COUNT; s++) {
		char **names;
		int n;

		if (!sdir[s])
			continue;
		if ((rc = list_dir(sdir[s], 1, &names, &n, err)))
			goto fail;
		if (n) {
			char **nv = realloc(classes, sizeof(*classes) * (size_t)(n_classes + n));

			if (!nv) {
				ds_free_strings(names, n);
				rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
				goto fail;
			}
			classes = nv;
			memcpy(classes + n_classes, names, sizeof(*names) * (size_t)n);
			n_classes += n;
		}
		free(names);
	}
	n_classes = ds_sort_unique(classes, n_classes);
	ds_set_classes(d, classes, n_classes);
	classes = NULL;
	if (n_classes == 0) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: no class folders", root);
		goto fail;
	}
	if (expected && (rc = check_expected(d, root, expected, err)))
		goto fail;

	for (int s = 0; s < IAP_SPLIT_COUNT; s++) {
		if (!sdir[s])
			continue;
		for (int c = 0; c < n_classes; c++) {
			char *cdir = ds_join(sdir[s], d->class_names[c]);
			int64_t before = d->n;

			if (!cdir) {
				rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
				goto fail;
			}
			if (!ds_is_dir(cdir)) {  /* a class absent from one split folder is fine */
				free(cdir);
				continue;
			}
			rc = add_images(d, cdir, c, s, 0, err);
			if (!rc && d->n == before)
				rc = iap_error_set(err, IAP_EFORMAT,
						   "%s: empty class folder (no .png, .jpg or .jpeg images)",
						   cdir);
			free(cdir);
			if (rc)
				goto fail;
		}
	}
	if ((rc = ds_carve_opts(d, opts, !sdir[IAP_SPLIT_VAL], !sdir[IAP_SPLIT_TEST], err)) ||
	    (rc = ds_finish(d, split, err)))
		goto fail;
	for (int s = 0; s < IAP_SPLIT_COUNT; s++)
		free(sdir[s]);
	*state = d;
	return IAP_OK;
fail:
	for (int s = 0; s < IAP_SPLIT_COUNT; s++)
		free(sdir[s]);
	ds_free_strings(classes, n_classes);
	ds_close(d);
	return rc;
}
