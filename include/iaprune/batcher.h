/*
 * iaprune — batches of dataset samples: one buffer [batch, sample shape...]
 * filled row by row from a dataset plugin's load(), with every label
 * checked against the dataset's classes. The host's training, evaluation
 * and scoring and the sampler plugins all load their batches through it.
 */
#ifndef IAPRUNE_BATCHER_H
#define IAPRUNE_BATCHER_H

#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/plugin.h>
#include <iaprune/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iap_batcher {
	const struct iap_dataset *ds;
	int batch;                /* rows of x */
	int64_t sample_numel;     /* floats per sample */
	struct iap_tensor x;      /* [batch, sample...], owned */
	struct iap_tensor view;   /* the first n rows of x (iap_batcher_view; not owned) */
	int *labels;              /* [batch] */
};

/*
 * A batcher of batch rows (at least 1) for ds's samples. IAP_ESHAPE when
 * the samples' shape does not fit a tensor, IAP_ENOMEM when out of memory.
 */
int iap_batcher_init(struct iap_batcher *b, const struct iap_dataset *ds, int batch, struct iap_error *err);
void iap_batcher_free(struct iap_batcher *b);

/*
 * The loader under every batch: sample index of ds into dst (NULL: the
 * label only) and its label into *label, checked as iap_batcher_load says.
 * For callers that keep their own buffer.
 */
int iap_batcher_load_sample(const struct iap_dataset *ds, int64_t index, float *dst, int *label,
			    struct iap_error *err);

/*
 * Sample index into row row of x and its label into labels[row]. A failed
 * load is prefixed "<split> sample <index>"; a label outside [0, classes)
 * is IAP_EINVAL "<split> sample <index>: label <l> outside [0, <classes>)".
 */
int iap_batcher_load(struct iap_batcher *b, int row, int64_t index, struct iap_error *err);

/* Samples idx[0 .. n) (n <= batch) into rows 0 .. n-1, as iap_batcher_load. */
int iap_batcher_fill(struct iap_batcher *b, const int64_t *idx, int n, struct iap_error *err);

/* x shaped to its first n rows (no copy, no allocation). */
const struct iap_tensor *iap_batcher_view(struct iap_batcher *b, int n);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_BATCHER_H */
