/*
 * Batches of dataset samples (include/iaprune/batcher.h): one loader with
 * one label check for everything that reads a dataset in batches.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <iaprune/batcher.h>

int iap_batcher_init(struct iap_batcher *b, const struct iap_dataset *ds, int batch, struct iap_error *err)
{
	int64_t shape[IAP_MAX_DIMS];
	int ndim = ds->info.in_ndim, rc;

	memset(b, 0, sizeof(*b));
	if (ndim < 1 || ndim > IAP_MAX_DIMS - 1)
		return iap_error_set(err, IAP_ESHAPE, "dataset samples have %d dimensions", ndim);
	b->ds = ds;
	b->batch = batch < 1 ? 1 : batch;
	b->sample_numel = 1;
	shape[0] = b->batch;
	for (int k = 0; k < ndim; k++) {
		shape[k + 1] = ds->info.in_shape[k];
		b->sample_numel *= ds->info.in_shape[k];
	}
	rc = iap_tensor_alloc(&b->x, ndim + 1, shape, err);
	if (rc) {
		iap_error_prefix(err, "batch buffer");
		return rc;
	}
	b->labels = calloc((size_t)b->batch, sizeof(*b->labels));
	if (!b->labels) {
		iap_tensor_free(&b->x);
		return iap_error_set(err, IAP_ENOMEM, "out of memory for %d labels", b->batch);
	}
	b->view = b->x;
	b->view.owns = 0;
	return IAP_OK;
}

void iap_batcher_free(struct iap_batcher *b)
{
	iap_tensor_free(&b->x);
	free(b->labels);
	memset(b, 0, sizeof(*b));
}

int iap_batcher_load_sample(const struct iap_dataset *ds, int64_t index, float *dst, int *label,
			    struct iap_error *err)
{
	int rc = ds->ops->load(ds->state, index, dst, label, err);

	if (rc) {
		iap_error_prefix(err, "%s sample %lld", iap_split_name(ds->split), (long long)index);
		return rc;
	}
	if (*label < 0 || *label >= ds->info.n_classes)
		return iap_error_set(err, IAP_EINVAL, "%s sample %lld: label %d outside [0, %d)",
				     iap_split_name(ds->split), (long long)index, *label, ds->info.n_classes);
	return IAP_OK;
}

int iap_batcher_load(struct iap_batcher *b, int row, int64_t index, struct iap_error *err)
{
	return iap_batcher_load_sample(b->ds, index, b->x.data + row * b->sample_numel, &b->labels[row], err);
}

int iap_batcher_fill(struct iap_batcher *b, const int64_t *idx, int n, struct iap_error *err)
{
	int rc = IAP_OK;

	if (n > b->batch)
		return iap_error_set(err, IAP_EINVAL, "%d samples for a batch of %d", n, b->batch);
	for (int r = 0; r < n && !rc; r++)
		rc = iap_batcher_load(b, r, idx[r], err);
	return rc;
}

const struct iap_tensor *iap_batcher_view(struct iap_batcher *b, int n)
{
	b->view.shape[0] = n;
	return &b->view;
}
