/*
 * iaprune — classification metrics from predicted probabilities.
 *
 * Everything is computed from N true labels and the softmax probabilities
 * [N][C]. The predicted class of a sample is the first index of its largest
 * probability (numpy/torch argmax). Conventions, chosen to match
 * scikit-learn:
 *
 *   - precision of a class that is never predicted is 0 (sklearn's
 *     zero_division=0), and so is its F1; recall/specificity of a class with
 *     no positives/negatives is 0 as well. Macro F1 and balanced accuracy
 *     average over all C classes, such classes included (balanced accuracy
 *     averages over the classes present in the labels, like sklearn's
 *     balanced_accuracy_score);
 *   - AUROC uses the Mann–Whitney statistic with average ranks for ties, so a
 *     tie between a positive and a negative counts one half. For C == 2 it is
 *     the binary AUROC of class 1 scored by p[:,1]; for C > 2 it is the
 *     unweighted mean of the one-vs-rest AUROCs. An AUROC is undefined when
 *     the positive or the negative set is empty: it is then marked unavailable
 *     (auroc_ok = 0, value 0), never NaN. The macro AUROC is available only
 *     when every class's one-vs-rest AUROC is (sklearn raises otherwise);
 *   - expected calibration error (Guo et al., 2017): 15 equal-width bins
 *     (lo, hi] over the confidence max_c p[n][c],
 *     ECE = Σ_b (n_b / N) · |accuracy_b − mean confidence_b|.
 */
#ifndef IAPRUNE_METRICS_H
#define IAPRUNE_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IAP_ECE_BINS 15

struct iap_metrics {
	int n_classes;
	int64_t n_samples;
	double accuracy;
	double balanced_accuracy;     /* mean recall over classes present in the labels */
	double macro_f1;
	int has_loss;                 /* loss below is set (iap_evaluate sets it; compute does not) */
	double loss;                  /* mean unweighted cross-entropy */
	/* Per class, n_classes entries each. */
	int64_t *support;             /* true samples of the class */
	int64_t *predicted;           /* samples predicted as the class */
	double *sensitivity;          /* recall = TP / (TP + FN) */
	double *specificity;          /* TN / (TN + FP) */
	double *precision;            /* TP / (TP + FP), 0 when never predicted */
	double *f1;
	int64_t *confusion;           /* [true][pred], n_classes² entries */
	/* AUROC: binary (C == 2) or macro one-vs-rest (C > 2). */
	int auroc_ok;
	double auroc;
	int *auroc_class_ok;          /* one-vs-rest per class (for C == 2 class 1 is the binary one) */
	double *auroc_class;
	/* Calibration. */
	double ece;
	int64_t ece_count[IAP_ECE_BINS];
	double ece_confidence[IAP_ECE_BINS];  /* mean confidence in the bin (0 when empty) */
	double ece_accuracy[IAP_ECE_BINS];    /* accuracy in the bin (0 when empty) */
};

/*
 * Fill m from labels[n] (in [0, c)) and probs[n][c] (finite). m must be
 * zeroed before its first use; its arrays are reused when c is unchanged, so
 * repeated evaluations do not allocate. Free with iap_metrics_free.
 * Returns IAP_EINVAL for n < 1, c < 2 or a bad label, IAP_ENUMERIC for a
 * non-finite probability.
 */
int iap_metrics_compute(struct iap_metrics *m, int64_t n, int c, const int *labels,
			const float *probs, struct iap_error *err);

/* Free m's arrays and zero it. Safe on a zeroed struct. */
void iap_metrics_free(struct iap_metrics *m);

/*
 * AUROC of scores[n] for binary labels pos[n] (1 positive, 0 negative) by
 * the Mann–Whitney rank formula with average ranks for ties. Returns 0 and
 * sets *auc, or IAP_EINVAL when there are no positives or no negatives
 * (undefined AUROC; err may be NULL), IAP_ENOMEM.
 */
int iap_auroc(int64_t n, const float *scores, const unsigned char *pos, double *auc,
	      struct iap_error *err);

/*
 * Class weights w_c = N / (C · n_c) from labels (sklearn's 'balanced'). A
 * class without samples gets weight 0 (it never contributes to the loss).
 */
int iap_class_weights(int64_t n, const int *labels, int c, float *weights, struct iap_error *err);

/*
 * One JSON object with every value (unavailable AUROCs are null), in a
 * malloc'd NUL-terminated string (*out; free() it). class_names (c entries)
 * may be NULL: classes are then "0", "1", ...
 */
int iap_metrics_json_string(const struct iap_metrics *m, const char *const *class_names,
			    char **out, struct iap_error *err);

/* A readable table: summary lines, per-class rows, the confusion matrix. */
int iap_metrics_write_text(const struct iap_metrics *m, const char *const *class_names, FILE *fp,
			   struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_METRICS_H */
