/*
 * iaprune — what a model says about every image of a split, and how long a
 * forward pass takes. The report's paired statistics need the per-image
 * predictions (iap_evaluate keeps only the metrics); latency compares the
 * dense model with the compacted pruned one.
 */
#ifndef IAPRUNE_PREDICT_H
#define IAPRUNE_PREDICT_H

#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/graph.h>
#include <iaprune/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Evaluation-mode forward over ds in order, batch images at a time:
 * softmax probabilities into probs[count][n_classes] and the labels into
 * labels[count]. The graph's training flag is restored afterwards.
 */
int iap_predict(struct iap_graph *g, const struct iap_dataset *ds, int batch, float *probs, int *labels,
		struct iap_error *err);

/* argmax of probs[n][c] (ties: the lowest index, as numpy) into pred[n] and its probability into conf[n] (may be NULL). */
void iap_predict_argmax(const float *probs, int64_t n, int c, int *pred, float *conf);

/*
 * Median wall-clock milliseconds of one evaluation-mode iap_graph_forward
 * on x over `repeats` timed calls, after one untimed warm-up.
 */
int iap_forward_latency(struct iap_graph *g, const struct iap_tensor *x, int repeats, double *median_ms,
			struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_PREDICT_H */
