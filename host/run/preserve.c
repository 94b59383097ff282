/*
 * Explanation preservation: does the pruned model still look where the
 * dense one looked? See preserve.h.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>
#include <iaprune/heatmap.h>
#include <iaprune/stats.h>

#include "calls.h"
#include "preserve.h"

/* Explained in chunks so a large model's relevance tensors stay small. */
#define CHUNK 8

/*
 * Forward the images (the masks as set), predictions into pred, and the maps
 * for targets (NULL: pick them by the attribution's target rule into
 * p->targets) into maps.
 */
static int explain_all(struct iap_preserve *p, int pick_targets, float *maps, int *pred, struct iap_error *err)
{
	const int64_t per = (int64_t)p->c * p->h * p->w, plane = (int64_t)p->h * p->w;
	struct iap_tensor x = { 0 }, rel = { 0 };
	struct iap_score_opts so;
	int rc = IAP_OK;

	iap_score_opts_from(p->opts, &so);
	iap_graph_set_training(p->g, 0);
	for (int s = 0; !rc && s < p->n; s += CHUNK) {
		int n = p->n - s < CHUNK ? p->n - s : CHUNK;
		int64_t shape[4] = { n, p->c, p->h, p->w };
		const struct iap_tensor *out;

		rc = iap_tensor_ensure(&x, 4, shape, err);
		if (rc)
			break;
		memcpy(x.data, p->images + s * per, (size_t)(n * per) * sizeof(float));
		rc = iap_graph_forward(p->g, &x, err);
		if (rc)
			break;
		out = iap_graph_output(p->g);
		for (int i = 0; i < n; i++) {
			const float *o = out->data + (int64_t)i * out->shape[1];
			int best = 0;

			for (int k = 1; k < out->shape[1]; k++)
				if (o[k] > o[best])
					best = k;
			pred[s + i] = best;
		}
		if (pick_targets)
			rc = iap_targets(out, p->labels + s, &so, p->targets + s, err);
		rc = rc ? rc : iap_call_explain(p->plugin, p->state, p->g, &x, p->targets + s, &rel, err);
		for (int i = 0; !rc && i < n; i++)
			iap_heatmap_reduce(rel.data + i * per, p->c, p->h, p->w, maps + (s + i) * plane);
	}
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
	return rc;
}

int iap_preserve_init(struct iap_preserve *p, struct iap_error *err)
{
	const struct iap_dataset *ds = p->ds;
	int classes = ds->info.n_classes, *taken;
	int64_t per, cap;
	int rc = IAP_OK;

	if (ds->info.in_ndim != 3 || !p->plugin->desc->ops.attribution->explain || p->per_class < 1)
		return iap_error_set(err, IAP_EINVAL, "explanation preservation needs images and an attribution with input relevance");
	p->c = (int)ds->info.in_shape[0];
	p->h = (int)ds->info.in_shape[1];
	p->w = (int)ds->info.in_shape[2];
	per = (int64_t)p->c * p->h * p->w;
	cap = (int64_t)p->per_class * classes;
	taken = calloc((size_t)classes + 1, sizeof(*taken));
	p->idx = calloc((size_t)cap + 1, sizeof(*p->idx));
	p->images = malloc(((size_t)cap + 1) * (size_t)per * sizeof(float));
	p->labels = calloc((size_t)cap + 1, sizeof(int));
	p->targets = calloc((size_t)cap + 1, sizeof(int));
	p->dense_pred = calloc((size_t)cap + 1, sizeof(int));
	p->dense_maps = malloc(((size_t)cap + 1) * (size_t)p->h * (size_t)p->w * sizeof(float));
	if (!taken || !p->idx || !p->images || !p->labels || !p->targets || !p->dense_pred || !p->dense_maps) {
		free(taken);
		return iap_error_set(err, IAP_ENOMEM, "explanation preservation: out of memory");
	}
	/* The first per_class images of every class: held out (evaluation split), in index order. */
	p->n = 0;
	for (int64_t i = 0; !rc && i < ds->count && p->n < cap; i++) {
		int label;

		rc = ds->ops->load(ds->state, i, p->images + p->n * per, &label, err);
		if (!rc && label >= 0 && label < classes && taken[label] < p->per_class) {
			taken[label]++;
			p->labels[p->n] = label;
			p->idx[p->n++] = i;
		}
	}
	free(taken);
	if (rc)
		return rc;
	if (p->n == 0)
		return iap_error_set(err, IAP_EINVAL, "explanation preservation: the evaluation split has no images");
	rc = iap_call_create(p->plugin, p->opts, p->g, &p->state, err);
	if (rc)
		return rc;
	return explain_all(p, 1, p->dense_maps, p->dense_pred, err);
}

int iap_preserve_measure(struct iap_preserve *p, double rate, double *rho, double *topk, float *maps, int *pred,
			 struct iap_error *err)
{
	const int64_t plane = (int64_t)p->h * p->w;
	int64_t k = (int64_t)llround(p->topk_frac * (double)plane);
	float *m = maps ? maps : malloc((size_t)p->n * (size_t)plane * sizeof(float));
	int *pr = pred ? pred : malloc((size_t)p->n * sizeof(int));
	double srho = 0, stop = 0;
	int rc;

	if (!m || !pr) {
		if (!maps)
			free(m);
		if (!pred)
			free(pr);
		return iap_error_set(err, IAP_ENOMEM, "explanation preservation: out of memory");
	}
	if (k < 1)
		k = 1;
	rc = p->apply(p->user, rate);
	rc = rc ? rc : explain_all(p, 0, m, pr, err);
	p->clear(p->user);
	for (int i = 0; !rc && i < p->n; i++) {
		double a, b;

		rc = iap_spearman_abs(p->dense_maps + i * plane, m + i * plane, plane, &a, err);
		rc = rc ? rc : iap_topk_overlap_abs(p->dense_maps + i * plane, m + i * plane, plane, k, &b, err);
		srho += a;
		stop += b;
	}
	if (!rc) {
		*rho = srho / p->n;
		*topk = stop / p->n;
	}
	if (!maps)
		free(m);
	if (!pred)
		free(pr);
	return rc;
}

void iap_preserve_free(struct iap_preserve *p)
{
	if (p->state)
		iap_call_destroy(p->plugin, p->state);
	free(p->idx);
	free(p->images);
	free(p->labels);
	free(p->targets);
	free(p->dense_pred);
	free(p->dense_maps);
	p->state = NULL;
	p->idx = NULL;
	p->images = p->dense_maps = NULL;
	p->labels = p->targets = p->dense_pred = NULL;
}
