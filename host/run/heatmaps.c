/*
 * Per-image heatmaps of every attribution with an explain function
 * (report.heatmaps per class), written into the report being staged. The
 * block below is kept as it was in runner.c (a shared explain service is to
 * replace it); run_write_heatmaps is its entry point.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stages.h"

/* The block's name for the data stage's loader. */
static int load_batch(struct run *r, const struct iap_dataset *ds, const int64_t *idx, int n,
		      struct iap_tensor *x, int *labels)
{
	return run_load_batch(r, ds, idx, n, x, labels);
}

/*
 * Small inputs (MedMNIST's 28 pixels) are enlarged for viewing: image and map
 * resized together to about 224 pixels on the longer side.
 */
static int write_heatmap_scaled(const char *file, const float *img, int c, int h, int w, const float *map,
				const struct iap_heatmap_opts *ho, struct iap_error *err)
{
	int scale = (h > w ? h : w) >= 224 ? 1 : (223 + (h > w ? h : w)) / (h > w ? h : w);
	int oh = h * scale, ow = w * scale, rc;
	float *big_img, *big_map;

	if (scale == 1)
		return iap_heatmap_write_png(file, img, c, h, w, map, ho, err);
	big_img = malloc((size_t)c * (size_t)oh * (size_t)ow * sizeof(float));
	big_map = malloc((size_t)oh * (size_t)ow * sizeof(float));
	if (!big_img || !big_map) {
		free(big_img);
		free(big_map);
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	}
	rc = iap_image_resize(NULL, img, c, h, w, big_img, oh, ow, err);
	rc = rc ? rc : iap_image_resize(NULL, map, 1, h, w, big_map, oh, ow, err);
	rc = rc ? rc : iap_heatmap_write_png(file, big_img, c, oh, ow, big_map, ho, err);
	free(big_img);
	free(big_map);
	return rc;
}

static int write_heatmaps(struct run *r, int per_class)
{
	const struct iap_dataset *ds = &r->split[r->eval_split];
	int classes = ds->info.n_classes, rc = IAP_OK;
	int64_t *pick = calloc((size_t)per_class * (size_t)classes + 1, sizeof(*pick));
	int *taken = calloc((size_t)classes + 1, sizeof(int));
	struct iap_tensor x = { 0 }, rel = { 0 };
	int64_t n = 0;
	char dir[4096], file[4200];

	if (!pick || !taken) {
		free(pick);
		free(taken);
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	/* The first per_class images of every class in the evaluation split. */
	for (int64_t i = 0; i < ds->count && n < (int64_t)per_class * classes; i++) {
		int label;
		int64_t one = i;

		rc = load_batch(r, ds, &one, 1, &x, &label);
		if (rc)
			goto out;
		if (label >= 0 && label < classes && taken[label] < per_class) {
			taken[label]++;
			pick[n++] = i;
		}
	}
	snprintf(dir, sizeof(dir), "%s/heatmaps", r->report_dir);
	rc = iap_mkdir_p(dir, r->err);
	for (int a = 0; !rc && a < r->n_attr; a++) {
		const struct iap_attribution_ops *ops = r->attr[a].plugin->desc->ops.attribution;
		void *state = NULL;

		if (!ops->explain)
			continue;
		rc = iap_call_create(r->attr[a].plugin, r->attr[a].opts, r->g, &state, r->err);
		for (int64_t i = 0; !rc && i < n; i++) {
			int label, target;
			const int c = (int)ds->info.in_shape[0], h = (int)ds->info.in_shape[1], w = (int)ds->info.in_shape[2];
			float *map = malloc((size_t)h * (size_t)w * sizeof(float));
			float lo[3] = { 0 }, span[3] = { 1, 1, 1 };
			struct iap_heatmap_opts ho;
			struct iap_score_opts so;
			struct iap_native nv = { 0 };
			const float *im = NULL, *mp = map;
			int vh = h, vw = w;

			if (!map) {
				rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
				break;
			}
			rc = load_batch(r, ds, &pick[i], 1, &x, &label);
			im = x.data;
			rc = rc ? rc : iap_graph_forward(r->g, &x, r->err);
			if (!rc) {
				iap_score_opts_from(r->attr[a].opts, &so);
				rc = iap_targets(iap_graph_output(r->g), &label, &so, &target, r->err);
			}
			rc = rc ? rc : iap_call_explain(r->attr[a].plugin, state, r->g, &x, &target, &rel, r->err);
			rc = rc ? rc : iap_contract_heatmap(r->attr[a].plugin, &x, &rel, r->err);
			if (!rc) {
				iap_heatmap_reduce(rel.data, c, h, w, map);
				/* The stored image with the map resampled to it, where the dataset can give it. */
				rc = iap_native_view(ds, pick[i], &im, &mp, &vh, &vw, &nv, r->err);
			}
			if (!rc) {
				/* Show the image stretched to its own range: the normalisation is the dataset's. */
				for (int ch = 0; ch < c && ch < 3; ch++) {
					float mn = INFINITY, mx = -INFINITY;

					for (int k = 0; k < vh * vw; k++) {
						mn = fminf(mn, im[ch * vh * vw + k]);
						mx = fmaxf(mx, im[ch * vh * vw + k]);
					}
					lo[ch] = mn;
					span[ch] = mx > mn ? mx - mn : 1;
				}
				iap_heatmap_opts_init(&ho);
				ho.mean = lo;
				ho.std = span;
				snprintf(file, sizeof(file), "%s/%s-class%d-%03" PRId64 ".png", dir, r->attr[a].name, label, i);
				rc = write_heatmap_scaled(file, im, c, vh, vw, mp, &ho, r->err);
			}
			iap_native_free(&nv);
			free(map);
		}
		iap_call_destroy(r->attr[a].plugin, state);
	}
out:
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
	free(pick);
	free(taken);
	return rc;
}

int run_write_heatmaps(struct run *r, int per_class)
{
	return write_heatmaps(r, per_class);
}
