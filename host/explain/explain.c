/*
 * The explain service (see host/include/iaprune/explain.h): input images,
 * the plugin's relevance checked, the shown image chosen, the map drawn
 * over it at a bounded size. The runner's report and the CLI both call it,
 * so a heatmap means the same thing wherever it was made.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/explain.h>
#include <iaprune/heatmap.h>
#include <iaprune/image.h>

#include "../run/calls.h"
#include "../run/native.h"
#include "../run/run_internal.h"

void iap_explain_norm_default(int channels, struct iap_explain_norm *n)
{
	n->channels = channels;
	for (int c = 0; c < 3; c++) {
		n->mean[c] = channels == 3 ? iap_imagenet_mean[c] : 0.5f;
		n->std[c] = channels == 3 ? iap_imagenet_std[c] : 0.5f;
	}
}

/* "0.5" or "0.485,0.456,0.406": exactly channels numbers (positive ones where positive) into v. */
static int parse_list(const char *text, int channels, int positive, float *v, const char *name,
		      struct iap_error *err)
{
	const char *s = text ? text : "";
	int n = 0;

	while (*s) {
		char *end;
		double d = strtod(s, &end);

		if (end == s || !isfinite(d) || (positive && !(d > 0)) || n == channels)
			return iap_error_set(err, IAP_EINVAL, "dataset option '%s': '%s' is not %d %s number%s", name,
					     text, channels, positive ? "positive" : "", channels == 1 ? "" : "s");
		v[n++] = (float)d;
		s = end;
		while (*s == ' ')
			s++;
		if (*s == ',')
			s++;
	}
	if (n != channels)
		return iap_error_set(err, IAP_EINVAL, "dataset option '%s': '%s' is not %d number%s", name, text,
				     channels, channels == 1 ? "" : "s");
	return IAP_OK;
}

int iap_explain_norm_from_opts(const struct iap_opts *ds_opts, int channels, struct iap_explain_norm *n,
			       struct iap_error *err)
{
	const char *norm = ds_opts ? iap_opts_str(ds_opts, "normalize") : NULL;
	int rc;

	/* A normalisation holds at most three channels (gray or RGB): more would overrun mean[] and std[]. */
	if (channels < 1 || channels > 3)
		return iap_error_set(err, IAP_EUNSUPPORTED, "heatmaps: images of %d channels (1 or 3 wanted)",
				     channels);
	iap_explain_norm_default(channels, n);
	if (!norm || !strcmp(norm, "imagenet"))
		return IAP_OK;
	if (!strcmp(norm, "none")) {
		for (int c = 0; c < 3; c++) {
			n->mean[c] = 0.0f;
			n->std[c] = 1.0f;
		}
		return IAP_OK;
	}
	rc = parse_list(iap_opts_str(ds_opts, "mean"), channels, 0, n->mean, "mean", err);
	return rc ? rc : parse_list(iap_opts_str(ds_opts, "std"), channels, 1, n->std, "std", err);
}

int iap_explain_load_image(const char *path, const struct iap_graph *g, const struct iap_explain_norm *norm,
			   struct iap_tensor *orig, float *x, struct iap_error *err)
{
	const int ch = (int)g->in_shape[0], h = (int)g->in_shape[1], w = (int)g->in_shape[2];
	struct iap_tensor img = { 0 };
	int rc;

	if (ch < 1 || ch > 3 || ch != norm->channels)
		return iap_error_set(err, IAP_EUNSUPPORTED, "%s: the model takes %d channels; images have 1 or 3",
				     path, ch);
	rc = iap_image_load(path, ch, &img, err);

	if (!rc)
		rc = iap_image_resize(NULL, img.data, ch, (int)img.shape[1], (int)img.shape[2], x, h, w, err);
	if (!rc)
		rc = iap_image_normalize(x, ch, (int64_t)h * w, norm->mean, norm->std, err);
	if (!rc && orig) {
		iap_tensor_free(orig);
		*orig = img;
		return IAP_OK;
	}
	iap_tensor_free(&img);
	return rc;
}

int iap_explain_relevance(const struct iap_plugin *p, void *state, struct iap_graph *g,
			  const struct iap_tensor *x, int target, struct iap_tensor *rel, struct iap_error *err)
{
	int rc = iap_call_explain(p, state, g, x, &target, rel, err);

	return rc ? rc : iap_contract_heatmap(p, x, rel, err);
}

int iap_explain_view_sample(const struct iap_dataset *ds, int64_t i, const struct iap_tensor *x,
			    const struct iap_explain_norm *norm, struct iap_explain_view *v,
			    struct iap_error *err)
{
	int have, rc;

	memset(v, 0, sizeof(*v));
	rc = iap_native_image(ds, i, &v->own, &have, err);
	if (rc)
		return rc;
	if (have) {
		/* The original, as stored: already pixels, nothing to undo. */
		v->image = v->own.data;
		v->channels = (int)v->own.shape[0];
		v->h = (int)v->own.shape[1];
		v->w = (int)v->own.shape[2];
		return IAP_OK;
	}
	v->image = x->data;
	v->channels = (int)x->shape[1];
	v->h = (int)x->shape[2];
	v->w = (int)x->shape[3];
	v->norm = norm;
	return IAP_OK;
}

void iap_explain_view_free(struct iap_explain_view *v)
{
	iap_tensor_free(&v->own);
	v->image = NULL;
}

void iap_explain_drawn_size(int h, int w, const struct iap_explain_write_opts *opts, int *oh, int *ow)
{
	int side = h > w ? h : w, cap = opts && opts->max_side > 0 ? opts->max_side : IAP_EXPLAIN_MAX_SIDE;

	/* Small inputs (MedMNIST's 28 pixels) enlarged for viewing, by a whole factor so pixels stay square. */
	if (opts && opts->enlarge && side < IAP_EXPLAIN_MIN_SIDE) {
		int k = (IAP_EXPLAIN_MIN_SIDE - 1 + side) / side;

		h *= k;
		w *= k;
		side *= k;
	}
	if (side > cap) {
		double s = (double)cap / side;

		h = h == side ? cap : (int)lround(h * s);
		w = w == side ? cap : (int)lround(w * s);
	}
	*oh = h < 1 ? 1 : h;
	*ow = w < 1 ? 1 : w;
}

/* src (c planes of h × w) resampled to oh × ow into *dst (allocated; src itself when the size is the same). */
static int resample(const float *src, int c, int h, int w, int oh, int ow, float **dst, float **owned,
		    struct iap_error *err)
{
	*owned = NULL;
	if (oh == h && ow == w) {
		*dst = (float *)src;
		return IAP_OK;
	}
	*owned = malloc((size_t)c * (size_t)oh * (size_t)ow * sizeof(float));
	if (!*owned)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	*dst = *owned;
	return iap_image_resize(NULL, src, c, h, w, *owned, oh, ow, err);
}

int iap_explain_write(const char *png, const struct iap_tensor *rel, const struct iap_explain_view *v,
		      const struct iap_explain_write_opts *opts, struct iap_error *err)
{
	float *map = NULL, *vmap, *vmap_own = NULL, *dmap, *dmap_own = NULL, *dimg, *dimg_own = NULL;
	struct iap_heatmap_opts ho;
	int c, h, w, oh, ow, rc;

	if (rel->ndim != 4 || rel->shape[0] != 1)
		return iap_error_set(err, IAP_ESHAPE, "%s: relevance of one sample [1][C][H][W] wanted", png);
	c = (int)rel->shape[1];
	h = (int)rel->shape[2];
	w = (int)rel->shape[3];
	map = malloc((size_t)h * (size_t)w * sizeof(float));
	if (!map)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	iap_heatmap_reduce(rel->data, c, h, w, map);
	/* The map follows the picture: resampled to the view, then both drawn at one size. */
	iap_explain_drawn_size(v->h, v->w, opts, &oh, &ow);
	rc = resample(map, 1, h, w, v->h, v->w, &vmap, &vmap_own, err);
	rc = rc ? rc : resample(v->image, v->channels, v->h, v->w, oh, ow, &dimg, &dimg_own, err);
	rc = rc ? rc : resample(vmap, 1, v->h, v->w, oh, ow, &dmap, &dmap_own, err);
	if (!rc) {
		iap_heatmap_opts_init(&ho);
		if (v->norm) {
			ho.mean = v->norm->mean;
			ho.std = v->norm->std;
		}
		rc = iap_heatmap_write_png(png, dimg, v->channels, oh, ow, dmap, &ho, err);
	}
	if (!rc && opts && opts->npy)
		rc = iap_heatmap_write_npy(opts->npy, rel->data, 3, rel->shape + 1, err);
	free(dmap_own);
	free(dimg_own);
	free(vmap_own);
	free(map);
	return rc;
}
