/*
 * The data stage: the dataset plugin's three splits opened, and batches of
 * samples loaded for the other stages.
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

#include <iaprune/batcher.h>

#include "stages.h"

int run_open_split(struct run *r, enum iap_split s)
{
	struct iap_dataset *d = &r->split[s];
	int rc;

	if (r->split_open[s])
		return IAP_OK;
	memset(d, 0, sizeof(*d));
	d->split = s;
	rc = iap_call_dataset_open(r->ds_plugin, r->ds_opts, s, d, r->err);
	if (rc) {
		iap_error_prefix(r->err, "dataset '%s', %s split", r->ds_plugin->desc->name,
				 iap_split_name(s));
		return rc;
	}
	rc = d->ops->info(d->state, &d->info, r->err);
	if (rc) {
		d->ops->close(d->state);
		return rc;
	}
	d->count = d->ops->count(d->state);
	r->split_open[s] = 1;
	return IAP_OK;
}

/* Samples idx[0..n) of ds into x [n, C, H, W] and labels. */
int run_load_batch(struct run *r, const struct iap_dataset *ds, const int64_t *idx, int n,
		   struct iap_tensor *x, int *labels)
{
	int64_t shape[IAP_MAX_DIMS], per = 1;
	int rc;

	shape[0] = n;
	for (int i = 0; i < ds->info.in_ndim; i++) {
		shape[i + 1] = ds->info.in_shape[i];
		per *= ds->info.in_shape[i];
	}
	rc = iap_tensor_ensure(x, ds->info.in_ndim + 1, shape, r->err);
	for (int i = 0; !rc && i < n; i++)
		rc = iap_batcher_load_sample(ds, idx[i], x->data + (int64_t)i * per, &labels[i], r->err);
	return rc;
}
