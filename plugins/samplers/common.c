/* Shared by the sampler plugins: labels by class, batched forward, short-class report. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/batcher.h>

#include "common.h"

int iap_smp_classes_load(const char *sampler, const struct iap_dataset *ds, int k,
			 const int64_t *out, const int64_t *n_out, struct iap_smp_classes *cl,
			 struct iap_error *err)
{
	int64_t *fill = NULL;
	int rc;

	memset(cl, 0, sizeof(*cl));
	if (!ds || !ds->ops || !ds->ops->load || !out || !n_out)
		return iap_error_set(err, IAP_EINVAL, "sampler '%s': missing dataset or output", sampler);
	if (k < 1)
		return iap_error_set(err, IAP_EINVAL, "sampler '%s': k must be at least 1, got %d", sampler, k);
	if (ds->info.n_classes < 1 || ds->count < 0)
		return iap_error_set(err, IAP_EINVAL, "sampler '%s': dataset has %d classes and %lld samples",
				     sampler, ds->info.n_classes, (long long)ds->count);
	cl->n_classes = ds->info.n_classes;
	cl->count = ds->count;
	/* +1: calloc(0) may return NULL, which is not a failure here. */
	cl->label = calloc((size_t)ds->count + 1, sizeof(*cl->label));
	cl->idx = calloc((size_t)ds->count + 1, sizeof(*cl->idx));
	cl->start = calloc((size_t)cl->n_classes + 1, sizeof(*cl->start));
	fill = calloc((size_t)cl->n_classes, sizeof(*fill));
	if (!cl->label || !cl->idx || !cl->start || !fill) {
		rc = iap_error_set(err, IAP_ENOMEM, "sampler '%s': out of memory for %lld labels", sampler,
				   (long long)ds->count);
		goto out_free;
	}
	for (int64_t i = 0; i < ds->count; i++) {
		rc = ds->ops->load(ds->state, i, NULL, &cl->label[i], err);
		if (rc) {
			iap_error_prefix(err, "sampler '%s': sample %lld", sampler, (long long)i);
			goto out_free;
		}
		if (cl->label[i] < 0 || cl->label[i] >= cl->n_classes) {
			rc = iap_error_set(err, IAP_EFORMAT, "sampler '%s': sample %lld has label %d, "
					   "outside the dataset's %d classes", sampler, (long long)i,
					   cl->label[i], cl->n_classes);
			goto out_free;
		}
		cl->start[cl->label[i] + 1]++;
	}
	/* Counting sort: a stable pass keeps each class's indices ascending. */
	for (int c = 0; c < cl->n_classes; c++) {
		int64_t size = cl->start[c + 1];

		if (size > cl->max_class)
			cl->max_class = size;
		cl->start[c + 1] += cl->start[c];
		fill[c] = cl->start[c];
	}
	for (int64_t i = 0; i < ds->count; i++)
		cl->idx[fill[cl->label[i]]++] = i;
	free(fill);
	return IAP_OK;

out_free:
	free(fill);
	iap_smp_classes_free(cl);
	return rc;
}

void iap_smp_classes_free(struct iap_smp_classes *cl)
{
	free(cl->label);
	free(cl->idx);
	free(cl->start);
	memset(cl, 0, sizeof(*cl));
}

static int cmp_idx(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

void iap_smp_sort_idx(int64_t *v, int64_t n)
{
	if (n > 1)
		qsort(v, (size_t)n, sizeof(*v), cmp_idx);
}

int iap_smp_report_short(const char *sampler, const struct iap_smp_classes *cl,
			 const int64_t *avail, int k, struct iap_error *err)
{
	size_t len;
	int n_short = 0;

	if (!err)
		return IAP_OK;
	iap_error_clear(err);
	len = (size_t)snprintf(err->msg, sizeof(err->msg), "sampler '%s': fewer than %d samples in",
			       sampler, k);
	for (int c = 0; c < cl->n_classes && len < sizeof(err->msg); c++) {
		int64_t have = avail ? avail[c] : cl->start[c + 1] - cl->start[c];

		if (have >= k)
			continue;
		len += (size_t)snprintf(err->msg + len, sizeof(err->msg) - len, "%s class %d (%lld)",
					n_short ? "," : "", c, (long long)have);
		n_short++;
	}
	if (!n_short)
		err->msg[0] = '\0';
	else if (len < sizeof(err->msg))
		snprintf(err->msg + len, sizeof(err->msg) - len, ": took all");
	return IAP_OK;
}

int iap_smp_batcher_init(struct iap_smp_batcher *b, const char *sampler, const struct iap_dataset *ds,
			 struct iap_graph *g, int batch, struct iap_error *err)
{
	int64_t shape[IAP_MAX_DIMS];
	int ndim = ds->info.in_ndim, rc;

	memset(b, 0, sizeof(*b));
	if (ndim < 1 || ndim > IAP_MAX_DIMS - 1)
		return iap_error_set(err, IAP_ESHAPE, "sampler '%s': dataset samples have %d dimensions",
				     sampler, ndim);
	if (g && (g->in_ndim != ndim ||
		  memcmp(g->in_shape, ds->info.in_shape, (size_t)ndim * sizeof(int64_t)) != 0)) {
		char got[96], want[96];

		return iap_error_set(err, IAP_ESHAPE, "sampler '%s': dataset samples are %s, the model expects %s",
				     sampler, iap_shape_str(ndim, ds->info.in_shape, got, sizeof(got)),
				     iap_shape_str(g->in_ndim, g->in_shape, want, sizeof(want)));
	}
	b->ds = ds;
	b->g = g;
	b->batch = batch < 1 ? 1 : batch;
	b->sample_len = 1;
	shape[0] = b->batch;
	for (int i = 0; i < ndim; i++) {
		shape[i + 1] = ds->info.in_shape[i];
		b->sample_len *= ds->info.in_shape[i];
	}
	rc = iap_tensor_alloc(&b->x, ndim + 1, shape, err);
	if (rc) {
		iap_error_prefix(err, "sampler '%s'", sampler);
		return rc;
	}
	if (g) {
		b->saved_training = g->training;
		iap_graph_set_training(g, 0);
	}
	return IAP_OK;
}

void iap_smp_batcher_free(struct iap_smp_batcher *b)
{
	if (b->g)
		iap_graph_set_training(b->g, b->saved_training);
	iap_tensor_free(&b->x);
	memset(b, 0, sizeof(*b));
}

int iap_smp_batcher_run(struct iap_smp_batcher *b, const int64_t *idx, int n, struct iap_error *err)
{
	int rc;

	for (int r = 0; r < n; r++) {
		int label;

		/* The SDK's loader: the label is checked here too. */
		rc = iap_batcher_load_sample(b->ds, idx[r], b->x.data + (int64_t)r * b->sample_len, &label, err);
		if (rc)
			return rc;
	}
	/*
	 * Padding rows keep whatever the previous batch left (zeros at first):
	 * evaluation mode has no cross-sample statistics, so they cannot
	 * change the real rows, and a steady batch size means no reallocation.
	 */
	if (!b->g)
		return IAP_OK;
	return iap_graph_forward(b->g, &b->x, err);
}
