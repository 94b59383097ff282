/*
 * Ingredients of the score cache key beyond the weights and the options:
 * the attribution plugin's binary (its content hash from the scan, so a
 * rebuilt .so never gets the old scores) and the content of the samples the
 * scores come from (pixels and labels as the dataset plugin loads them, so
 * a changed file under the same path and indices is not mistaken for the old).
 * Training checkpoints record the same two for the model plugin and for the
 * whole training and validation splits.
 */
#include "config.h"

#include <stdlib.h>

#include "run_internal.h"
#include <iaprune/registry.h>

uint64_t iap_key_bytes(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

uint64_t iap_key_plugin(uint64_t h, const struct iap_plugin *p)
{
	return iap_key_bytes(h, &p->hash, sizeof(p->hash));
}

int iap_key_samples(uint64_t *h, const struct iap_dataset *ds, const int64_t *idx, int64_t n,
		    struct iap_error *err)
{
	int64_t per = 1;
	float *buf;
	int rc = IAP_OK;

	for (int d = 0; d < ds->info.in_ndim; d++)
		per *= ds->info.in_shape[d];
	buf = malloc((size_t)(per > 0 ? per : 1) * sizeof(float));
	if (!buf)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (int64_t i = 0; i < n && !rc; i++) {
		int label = -1;

		rc = ds->ops->load(ds->state, idx ? idx[i] : i, buf, &label, err);
		if (!rc) {
			*h = iap_key_bytes(*h, buf, (size_t)per * sizeof(float));
			*h = iap_key_bytes(*h, &label, sizeof(label));
		}
	}
	free(buf);
	return rc;
}
