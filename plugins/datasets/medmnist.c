/*
 * The "medmnist" dataset plugin: a MedMNIST .npz (train_/val_/test_ images
 * and labels). Images are uint8 (N, H, W) or (N, H, W, 3); labels (N,) or
 * (N, 1) (multi-label sets such as ChestMNIST's (N, 14) are refused). The
 * class count is the largest label of all three splits + 1, or the number of
 * class_names. The arrays stay in memory as uint8; load converts, resizes
 * and normalises (and caches when resizing makes that worth it).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/image.h>
#include <iaprune/memory.h>
#include <iaprune/npz.h>
#include <iaprune/plugin.h>

#include "common.h"

static const struct iap_option medmnist_options[] = {
	{ .name = "path", .type = IAP_OPT_STRING, .def = NULL, .help = "the .npz file" },
	{ .name = "class_names", .type = IAP_OPT_STRING, .def = "",
	  .help = "comma-separated class names in label order (default: the label numbers)" },
	DS_IMAGE_OPTIONS,
	{ .name = NULL },
};

static const char *const prefixes[IAP_SPLIT_COUNT] = { "train", "val", "test" };

struct mm_src {
	struct iap_npy images;  /* uint8 [N, H, W] or [N, H, W, 3] */
	int h, w, c;
};

static void mm_free(void *p)
{
	struct mm_src *s = p;

	iap_npy_free(&s->images);
	free(s);
}

/* uint8 HWC → float CHW in [0, 1] with channels (0: the array's own) as image.h converts. */
static int mm_decode(struct ds *d, int64_t i, int channels, struct iap_tensor *out,
		     struct iap_error *err)
{
	const struct mm_src *s = d->src;
	const uint8_t *px = (const uint8_t *)s->images.data +
			    (size_t)d->src_index[i] * (size_t)s->h * (size_t)s->w * (size_t)s->c;
	int64_t shape[3] = { channels ? channels : s->c, s->h, s->w }, plane = (int64_t)s->h * s->w;
	int rc = iap_tensor_ensure(out, 3, shape, err);

	if (rc)
		return rc;
	for (int64_t p = 0; p < plane; p++) {
		const uint8_t *q = px + p * s->c;

		if (s->c == (int)shape[0]) {
			for (int c = 0; c < s->c; c++)
				out->data[c * plane + p] = q[c] / 255.0f;
		} else if (s->c == 1) {  /* gray replicated */
			for (int c = 0; c < 3; c++)
				out->data[c * plane + p] = q[0] / 255.0f;
		} else {  /* ITU-R 601-2 luma, as PIL's "L" (and iap_image_decode) */
			out->data[p] = (q[0] * 299.0f / 1000.0f + q[1] * 587.0f / 1000.0f +
					q[2] * 114.0f / 1000.0f) / 255.0f;
		}
	}
	return IAP_OK;
}

/*
 * Read <prefix>_labels as int32 and check its shape. lab may still hold an
 * earlier split's labels: iap_npz_read frees it first (npz.h), so reading
 * into it again leaks nothing (checked with ASan's leak detector).
 */
static int read_labels(struct iap_npz *npz, const char *path, const char *prefix, struct iap_npy *lab,
		       struct iap_error *err)
{
	char name[32];
	int rc;

	snprintf(name, sizeof(name), "%s_labels", prefix);
	if ((rc = iap_npz_read(npz, name, IAP_NPY_I4, lab, err)))
		return rc;
	if (!(lab->ndim == 1 || (lab->ndim == 2 && lab->shape[1] == 1)))
		return iap_error_set(err, IAP_EFORMAT,
				     "%s: %s has %d dimensions (%lld values per sample); expected (N,) or (N, 1) "
				     "(multi-label sets are not supported)",
				     path, name, lab->ndim, (long long)(lab->ndim == 2 ? lab->shape[1] : 0));
	for (int64_t k = 0; k < lab->numel; k++) {
		if (((const int32_t *)lab->data)[k] < 0)
			return iap_error_set(err, IAP_EFORMAT, "%s: %s[%lld] is negative (%d)", path, name,
					     (long long)k, ((const int32_t *)lab->data)[k]);
		/* The class count comes from the largest label: one stray value must not mean 10^8 classes. */
		if (((const int32_t *)lab->data)[k] >= IAP_MAX_CLASSES)
			return iap_error_set(err, IAP_ELIMIT, "%s: %s[%lld] is %d, beyond the limit of %d classes", path,
					     name, (long long)k, ((const int32_t *)lab->data)[k], IAP_MAX_CLASSES);
	}
	return IAP_OK;
}

static int medmnist_open(const struct iap_opts *opts, enum iap_split split, void **state,
			 struct iap_error *err)
{
	const char *path = iap_opts_str(opts, "path");
	struct iap_npz *npz = NULL;
	struct iap_npy lab = { 0 };
	struct mm_src *src = NULL;
	struct ds *d = NULL;
	char **names = NULL, name[32];
	int n_names = 0, max_label = -1, rc;

	*state = NULL;
	if ((int)split < 0 || split >= IAP_SPLIT_COUNT)
		return iap_error_set(err, IAP_EINVAL, "medmnist: unknown split %d", (int)split);
	if ((rc = ds_new("medmnist", opts, &d, err)))
		return rc;
	if (!(src = calloc(1, sizeof(*src)))) {
		rc = iap_error_set(err, IAP_ENOMEM, "medmnist: out of memory");
		goto out;
	}
	d->src = src;
	d->src_free = mm_free;
	d->decode = mm_decode;
	if ((rc = iap_npz_open(path, &npz, err)))
		goto out;

	/* Class count over every split present, so all splits agree. */
	for (int s = 0; s < IAP_SPLIT_COUNT; s++) {
		snprintf(name, sizeof(name), "%s_labels", prefixes[s]);
		if (s != (int)split && !iap_npz_find(npz, name))
			continue;
		if ((rc = read_labels(npz, path, prefixes[s], &lab, err)))
			goto out;
		for (int64_t k = 0; k < lab.numel; k++)
			if (((const int32_t *)lab.data)[k] > max_label)
				max_label = ((const int32_t *)lab.data)[k];
	}
	if ((rc = read_labels(npz, path, prefixes[split], &lab, err)))
		goto out;
	snprintf(name, sizeof(name), "%s_images", prefixes[split]);
	if ((rc = iap_npz_read(npz, name, IAP_NPY_U1, &src->images, err)))
		goto out;
	if (!(src->images.ndim == 3 || (src->images.ndim == 4 && src->images.shape[3] == 3)) ||
	    src->images.shape[0] != lab.shape[0] || src->images.shape[1] <= 0 ||
	    src->images.shape[2] <= 0) {
		rc = iap_error_set(err, IAP_EFORMAT,
				   "%s: %s must be (N, H, W) or (N, H, W, 3) with N = %lld labels",
				   path, name, (long long)lab.shape[0]);
		goto out;
	}
	/* Sides beyond an image's limit would not fit the int the decoder uses. */
	if (src->images.shape[1] > IAP_IMAGE_MAX_SIDE || src->images.shape[2] > IAP_IMAGE_MAX_SIDE) {
		rc = iap_error_set(err, IAP_ELIMIT, "%s: %s are %lldx%lld pixels (limit %d per side)", path, name,
				   (long long)src->images.shape[2], (long long)src->images.shape[1], IAP_IMAGE_MAX_SIDE);
		goto out;
	}
	src->h = (int)src->images.shape[1];
	src->w = (int)src->images.shape[2];
	src->c = src->images.ndim == 4 ? 3 : 1;

	if ((rc = ds_split_list(iap_opts_str(opts, "class_names"), &names, &n_names, err)))
		goto out;
	if (n_names && max_label >= n_names) {
		rc = iap_error_set(err, IAP_EINVAL, "%s: label %d out of range for %d class_names", path,
				   max_label, n_names);
		goto out;
	}
	if (!n_names) {
		n_names = max_label + 1;
		if (!(names = calloc((size_t)n_names + 1, sizeof(*names)))) {
			n_names = 0;
			rc = iap_error_set(err, IAP_ENOMEM, "medmnist: out of memory");
			goto out;
		}
		for (int k = 0; k < n_names; k++) {
			snprintf(name, sizeof(name), "%d", k);
			if (!(names[k] = strdup(name))) {
				rc = iap_error_set(err, IAP_ENOMEM, "medmnist: out of memory");
				goto out;
			}
		}
	}
	ds_set_classes(d, names, n_names);
	names = NULL;
	for (int64_t k = 0; k < lab.shape[0]; k++)
		if ((rc = ds_add(d, NULL, ((const int32_t *)lab.data)[k], (int)split, NULL, 0, err)))
			goto out;
	if ((rc = ds_finish(d, split, err)))
		goto out;
	*state = d;
	d = NULL;
out:
	ds_free_strings(names, n_names);
	iap_npy_free(&lab);
	iap_npz_close(npz);
	ds_close(d);
	return rc;
}

DS_DEFINE_OPS(medmnist_ops, medmnist_open)

static const struct iap_plugin_desc medmnist_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_DATASET,
	.name = "medmnist",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "a MedMNIST .npz (train/val/test images and labels)",
	.options = medmnist_options,
	.ops.dataset = &medmnist_ops,
};

IAP_PLUGIN_DEFINE(medmnist_desc)
