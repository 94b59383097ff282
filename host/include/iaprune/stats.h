/*
 * iaprune — statistics for comparing a pruned model with the unpruned one on
 * the same test images: a paired bootstrap over images, McNemar's exact
 * test, the lossless threshold rule, and the agreement of two relevance maps.
 *
 * BOOTSTRAP. B resamples of the N test images, drawn with replacement by the
 * project's seeded generator (iap_rng_below), stored as multiplicities
 * counts[b][i]. Every statistic of every model is computed on the SAME
 * resamples, so a drop (baseline minus pruned) is paired image by image and
 * two runs with one seed give identical intervals. An interval is the
 * percentile interval: the 2.5th and 97.5th percentiles (linear interpolation
 * between order statistics, as numpy.percentile) of the B values.
 *
 * McNEMAR. b = images the baseline gets right and the pruned model wrong,
 * c = the reverse. Under H0 (both models equally accurate) b ~ Bin(b + c, ½);
 * the two-sided exact p-value is min(1, 2 · P(X ≤ min(b, c))), and 1 when
 * b + c = 0.
 *
 * THRESHOLD. Given one configuration's rates in increasing order and the
 * accuracy drop at each, the lossless threshold is the largest rate before
 * the first rate whose drop exceeds the tolerance (0 when the first one
 * does) — the rule the runner applies to the point estimates.
 *
 * MAPS. Two relevance maps of one image are compared on |R| (how much a
 * pixel matters, whatever its sign): Spearman's rank correlation with
 * average ranks for ties, and the top-k overlap |top_k(a) ∩ top_k(b)| / k,
 * ties in the ranking broken by the lower pixel index.
 */
#ifndef IAPRUNE_STATS_H
#define IAPRUNE_STATS_H

#include <stdint.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iap_bootstrap {
	int n_boot;          /* B */
	int64_t n;           /* N */
	uint32_t *counts;    /* [B][N] multiplicities; each row sums to N */
};

/* Draw B resamples of n items from seed. B = 0 is allowed (no intervals). */
int iap_bootstrap_init(struct iap_bootstrap *bs, int64_t n, int n_boot, uint64_t seed,
		       struct iap_error *err);
void iap_bootstrap_free(struct iap_bootstrap *bs);

/* out[b] = mean of x over resample b (x has n entries). */
void iap_bootstrap_means(const struct iap_bootstrap *bs, const double *x, double *out);

/* The q-th percentile (0..100) of v[n] (sorted in place). NAN for n = 0. */
double iap_percentile(double *v, int64_t n, double q);

/*
 * Paired interval of mean(a) − mean(b) over the resamples (a, b: n entries,
 * e.g. 1/0 correctness of the baseline and of a pruned model): *lo, *hi the
 * 2.5th and 97.5th percentiles; NAN when B = 0.
 */
int iap_bootstrap_diff_ci(const struct iap_bootstrap *bs, const double *a, const double *b, double *lo,
			  double *hi, struct iap_error *err);

/* Interval of mean(a) (pass b = NULL), as above. */
#define iap_bootstrap_mean_ci(bs, a, lo, hi, err) iap_bootstrap_diff_ci((bs), (a), NULL, (lo), (hi), (err))

/* Two-sided exact McNemar p-value for discordant counts b and c. */
double iap_mcnemar_exact(int64_t b, int64_t c);

/* The lossless threshold of rates[n] (increasing) with drops[n]; see above. */
double iap_threshold_rule(int n, const double *rates, const double *drops, double tolerance);

/*
 * Interval of the lossless threshold: for every resample b, the rule applied
 * to the drops on that resample. base[i] and correct[k][i] are the 1/0
 * correctness of the baseline and of the model at rates[k] (n_rates models,
 * rates increasing). NAN, NAN when B = 0.
 */
int iap_bootstrap_threshold_ci(const struct iap_bootstrap *bs, int n_rates, const double *rates,
			       const double *base, const double *const *correct, double tolerance,
			       double *lo, double *hi, struct iap_error *err);

/* A pruned model against the baseline on the same images. */
struct iap_paired {
	double acc_lo, acc_hi;      /* 95 % interval of the pruned accuracy */
	double drop_lo, drop_hi;    /* 95 % interval of baseline − pruned accuracy */
	int64_t lost, gained;       /* baseline right / pruned wrong, and the reverse */
	double p;                   /* McNemar's exact p-value on lost and gained */
};

/*
 * Compare pred with base_pred (n = bs->n images, labels the truth) on the
 * resamples of bs. Intervals are NAN when B = 0.
 */
int iap_paired_compare(const struct iap_bootstrap *bs, const int *labels, const int *base_pred, const int *pred,
		       struct iap_paired *out, struct iap_error *err);

/* Spearman's ρ of |a| and |b| (n entries, average ranks); 0 when either is constant. */
int iap_spearman_abs(const float *a, const float *b, int64_t n, double *rho, struct iap_error *err);

/* |top_k(|a|) ∩ top_k(|b|)| / k for 1 <= k <= n. */
int iap_topk_overlap_abs(const float *a, const float *b, int64_t n, int64_t k, double *overlap,
			 struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_STATS_H */
