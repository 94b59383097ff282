/*
 * What the three sampler plugins (random, confidence, clustering) share:
 * reading every label of a split once, indexing samples by class, running
 * the model over a list of samples in fixed-size batches, and reporting
 * classes that are short of k samples.
 *
 * SHORT CLASSES. The sampler ABI has no warning channel, and a short class
 * is not an error (the sampler takes every sample the class has). So every
 * sampler here reports it in two ways the caller can read after IAP_OK:
 *   - *n_out is below k * n_classes, and
 *   - err (when not NULL) holds code IAP_OK and a one-line message naming
 *     each short class, e.g. "sampler 'random': fewer than 10 samples in
 *     class 1 (3), class 2 (0): took all".
 * On success without short classes err->msg is the empty string. The host
 * prints the message once (the library never prints).
 *
 * OUTPUT ORDER. Class 0's picks, then class 1's, ...; within a class the
 * dataset indices are ascending, whatever the ranking was.
 */
#ifndef IAP_SAMPLERS_COMMON_H
#define IAP_SAMPLERS_COMMON_H

#include <stdint.h>

#include <iaprune/plugin.h>

/*
 * Samples of a split grouped by class: the indices of class c are
 * idx[start[c] .. start[c + 1]), ascending. label[i] is sample i's class.
 */
struct iap_smp_classes {
	int n_classes;
	int64_t count;
	int *label;        /* [count] */
	int64_t *idx;      /* [count] */
	int64_t *start;    /* [n_classes + 1] */
	int64_t max_class; /* size of the largest class */
};

/*
 * Check the arguments every sampler gets (k >= 1, a dataset with classes,
 * room for the output) and read every label of ds (images are not loaded).
 * A label outside [0, n_classes) is an IAP_EFORMAT error naming the sample.
 */
int iap_smp_classes_load(const char *sampler, const struct iap_dataset *ds, int k,
			 const int64_t *out, const int64_t *n_out, struct iap_smp_classes *cl,
			 struct iap_error *err);
void iap_smp_classes_free(struct iap_smp_classes *cl);

/* Sort n dataset indices ascending (the within-class output order). */
void iap_smp_sort_idx(int64_t *v, int64_t n);

/*
 * Clear err, then, if any class has fewer than k samples available (avail[c],
 * or the class size when avail is NULL), leave the short-class message in it
 * (see above). Always returns IAP_OK.
 */
int iap_smp_report_short(const char *sampler, const struct iap_smp_classes *cl,
			 const int64_t *avail, int k, struct iap_error *err);

/*
 * Runs the model over chosen samples in batches of a fixed size, so the
 * graph's buffers are shaped once: a final partial batch is padded (the
 * padding rows are computed and ignored). Evaluation mode is forced for the
 * duration and the caller's mode restored by iap_smp_batcher_free.
 */
struct iap_smp_batcher {
	const struct iap_dataset *ds;
	struct iap_graph *g;
	int batch;
	int64_t sample_len;     /* floats per sample */
	struct iap_tensor x;    /* [batch, in_shape...] */
	int saved_training;
};

/*
 * g may be NULL when only images are wanted (pixel features): batches are
 * then loaded but not run. The dataset's sample shape must equal the graph's
 * input shape.
 */
int iap_smp_batcher_init(struct iap_smp_batcher *b, const char *sampler, const struct iap_dataset *ds,
			 struct iap_graph *g, int batch, struct iap_error *err);
void iap_smp_batcher_free(struct iap_smp_batcher *b);

/*
 * Load samples idx[0 .. n) (n <= b->batch) into b->x and, when the batcher
 * has a graph, run it forward. Row r of b->x and of every node output belongs
 * to idx[r].
 */
int iap_smp_batcher_run(struct iap_smp_batcher *b, const int64_t *idx, int n, struct iap_error *err);

#endif
