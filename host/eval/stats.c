/*
 * Paired statistics for pruned-versus-unpruned comparisons (see
 * host/include/iaprune/stats.h): bootstrap resamples shared by every model,
 * percentile intervals, McNemar's exact test, the threshold rule, and
 * rank agreement of relevance maps.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/rng.h>
#include <iaprune/stats.h>

int iap_bootstrap_init(struct iap_bootstrap *bs, int64_t n, int n_boot, uint64_t seed,
		       struct iap_error *err)
{
	struct iap_rng rng;

	memset(bs, 0, sizeof(*bs));
	if (n < 1 || n_boot < 0)
		return iap_error_set(err, IAP_EINVAL, "bootstrap: need n >= 1 and B >= 0 (got %lld, %d)",
				     (long long)n, n_boot);
	bs->counts = calloc((size_t)n_boot * (size_t)n + 1, sizeof(*bs->counts));
	if (!bs->counts)
		return iap_error_set(err, IAP_ENOMEM, "bootstrap: out of memory for %d x %lld", n_boot,
				     (long long)n);
	bs->n_boot = n_boot;
	bs->n = n;
	iap_rng_seed(&rng, seed);
	/* Resample b is drawn right after b − 1, so B = 100 is a prefix of B = 1000. */
	for (int b = 0; b < n_boot; b++)
		for (int64_t i = 0; i < n; i++)
			bs->counts[(size_t)b * (size_t)n + iap_rng_below(&rng, (uint64_t)n)]++;
	return IAP_OK;
}

void iap_bootstrap_free(struct iap_bootstrap *bs)
{
	free(bs->counts);
	memset(bs, 0, sizeof(*bs));
}

void iap_bootstrap_means(const struct iap_bootstrap *bs, const double *x, double *out)
{
	for (int b = 0; b < bs->n_boot; b++) {
		const uint32_t *w = bs->counts + (size_t)b * (size_t)bs->n;
		double s = 0;

		for (int64_t i = 0; i < bs->n; i++)
			s += w[i] * x[i];
		out[b] = s / (double)bs->n;
	}
}

static int cmp_double(const void *pa, const void *pb)
{
	double a = *(const double *)pa, b = *(const double *)pb;

	return (a > b) - (a < b);
}

double iap_percentile(double *v, int64_t n, double q)
{
	double pos, frac;
	int64_t lo;

	if (n < 1)
		return NAN;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	pos = q / 100.0 * (double)(n - 1);
	lo = (int64_t)floor(pos);
	if (lo < 0)
		return v[0];
	if (lo >= n - 1)
		return v[n - 1];
	frac = pos - (double)lo;
	return v[lo] + frac * (v[lo + 1] - v[lo]);
}

int iap_bootstrap_diff_ci(const struct iap_bootstrap *bs, const double *a, const double *b, double *lo,
			  double *hi, struct iap_error *err)
{
	double *ma, *mb = NULL;

	*lo = *hi = NAN;
	if (bs->n_boot == 0)
		return IAP_OK;
	ma = malloc((size_t)bs->n_boot * sizeof(*ma));
	if (b)
		mb = malloc((size_t)bs->n_boot * sizeof(*mb));
	if (!ma || (b && !mb)) {
		free(ma);
		free(mb);
		return iap_error_set(err, IAP_ENOMEM, "bootstrap: out of memory");
	}
	iap_bootstrap_means(bs, a, ma);
	if (b) {
		iap_bootstrap_means(bs, b, mb);
		for (int k = 0; k < bs->n_boot; k++)
			ma[k] -= mb[k];
	}
	*lo = iap_percentile(ma, bs->n_boot, 2.5);
	*hi = iap_percentile(ma, bs->n_boot, 97.5);
	free(ma);
	free(mb);
	return IAP_OK;
}

double iap_mcnemar_exact(int64_t b, int64_t c)
{
	int64_t n = b + c, k = b < c ? b : c;
	double tail = 0, p;

	if (n <= 0)
		return 1.0;
	/* P(X <= k) for X ~ Bin(n, 1/2), term by term in log space (n may be thousands). */
	for (int64_t i = 0; i <= k; i++)
		tail += exp(lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1) -
			    (double)n * M_LN2);
	p = 2.0 * tail;
	return p > 1.0 ? 1.0 : p;
}

double iap_threshold_rule(int n, const double *rates, const double *drops, double tolerance)
{
	double ok = 0;

	for (int i = 0; i < n; i++) {
		/* The epsilon: a drop of exactly the tolerance (e.g. 0.05 from 0.85 - 0.80) passes. */
		if (!(drops[i] <= tolerance + 1e-12))
			break;
		ok = rates[i];
	}
	return ok;
}

int iap_bootstrap_threshold_ci(const struct iap_bootstrap *bs, int n_rates, const double *rates,
			       const double *base, const double *const *correct, double tolerance,
			       double *lo, double *hi, struct iap_error *err)
{
	double *mb, *mk, *drops, *th;
	int rc = IAP_OK;

	*lo = *hi = NAN;
	if (bs->n_boot == 0 || n_rates < 1)
		return IAP_OK;
	mb = malloc((size_t)bs->n_boot * sizeof(*mb));
	mk = malloc((size_t)bs->n_boot * (size_t)n_rates * sizeof(*mk));
	drops = malloc((size_t)n_rates * sizeof(*drops));
	th = malloc((size_t)bs->n_boot * sizeof(*th));
	if (!mb || !mk || !drops || !th) {
		rc = iap_error_set(err, IAP_ENOMEM, "bootstrap: out of memory");
		goto out;
	}
	iap_bootstrap_means(bs, base, mb);
	for (int k = 0; k < n_rates; k++)
		iap_bootstrap_means(bs, correct[k], mk + (size_t)k * (size_t)bs->n_boot);
	for (int b = 0; b < bs->n_boot; b++) {
		for (int k = 0; k < n_rates; k++)
			drops[k] = mb[b] - mk[(size_t)k * (size_t)bs->n_boot + (size_t)b];
		th[b] = iap_threshold_rule(n_rates, rates, drops, tolerance);
	}
	*lo = iap_percentile(th, bs->n_boot, 2.5);
	*hi = iap_percentile(th, bs->n_boot, 97.5);
out:
	free(mb);
	free(mk);
	free(drops);
	free(th);
	return rc;
}

int iap_paired_compare(const struct iap_bootstrap *bs, const int *labels, const int *base_pred, const int *pred,
		       struct iap_paired *out, struct iap_error *err)
{
	double *a = malloc((size_t)bs->n * sizeof(*a)), *b = malloc((size_t)bs->n * sizeof(*b));
	int rc;

	memset(out, 0, sizeof(*out));
	if (!a || !b) {
		free(a);
		free(b);
		return iap_error_set(err, IAP_ENOMEM, "paired comparison: out of memory");
	}
	for (int64_t i = 0; i < bs->n; i++) {
		a[i] = base_pred[i] == labels[i];
		b[i] = pred[i] == labels[i];
		out->lost += a[i] > b[i];
		out->gained += b[i] > a[i];
	}
	out->p = iap_mcnemar_exact(out->lost, out->gained);
	rc = iap_bootstrap_mean_ci(bs, b, &out->acc_lo, &out->acc_hi, err);
	rc = rc ? rc : iap_bootstrap_diff_ci(bs, a, b, &out->drop_lo, &out->drop_hi, err);
	free(a);
	free(b);
	return rc;
}

/* ---- relevance maps ---------------------------------------------------------------- */

struct ranked {
	float v;
	int64_t i;
};

/* Larger |value| first, then the lower index: a total order. */
static int cmp_ranked_desc(const void *pa, const void *pb)
{
	const struct ranked *a = pa, *b = pb;

	if (a->v != b->v)
		return a->v > b->v ? -1 : 1;
	return (a->i > b->i) - (a->i < b->i);
}

/* Average ranks (1-based) of |x| into rank[n]; tied values share the mean of their positions. */
static int abs_ranks(const float *x, int64_t n, double *rank, struct iap_error *err)
{
	struct ranked *t = malloc((size_t)n * sizeof(*t));

	if (!t)
		return iap_error_set(err, IAP_ENOMEM, "ranks: out of memory for %lld values", (long long)n);
	for (int64_t i = 0; i < n; i++) {
		if (!isfinite(x[i])) {
			free(t);
			return iap_error_set(err, IAP_ENUMERIC, "ranks: value %lld is not finite", (long long)i);
		}
		t[i] = (struct ranked){ fabsf(x[i]), i };
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_ranked_desc);
	for (int64_t s = 0; s < n;) {
		int64_t e = s + 1;

		while (e < n && t[e].v == t[s].v)
			e++;
		/* Positions s..e-1 (0-based, descending) get the mean 1-based rank. */
		for (int64_t k = s; k < e; k++)
			rank[t[k].i] = (double)(s + e + 1) / 2.0;
		s = e;
	}
	free(t);
	return IAP_OK;
}

int iap_spearman_abs(const float *a, const float *b, int64_t n, double *rho, struct iap_error *err)
{
	double *ra, *rb, ma = 0, mb = 0, sab = 0, saa = 0, sbb = 0;
	int rc;

	*rho = NAN;
	if (n < 2)
		return iap_error_set(err, IAP_EINVAL, "spearman: need at least 2 values (got %lld)", (long long)n);
	ra = malloc((size_t)n * sizeof(*ra));
	rb = malloc((size_t)n * sizeof(*rb));
	if (!ra || !rb) {
		free(ra);
		free(rb);
		return iap_error_set(err, IAP_ENOMEM, "spearman: out of memory");
	}
	rc = abs_ranks(a, n, ra, err);
	rc = rc ? rc : abs_ranks(b, n, rb, err);
	if (!rc) {
		/* Pearson's r of the ranks: the tie-correct form of Spearman's ρ. */
		for (int64_t i = 0; i < n; i++) {
			ma += ra[i];
			mb += rb[i];
		}
		ma /= (double)n;
		mb /= (double)n;
		for (int64_t i = 0; i < n; i++) {
			sab += (ra[i] - ma) * (rb[i] - mb);
			saa += (ra[i] - ma) * (ra[i] - ma);
			sbb += (rb[i] - mb) * (rb[i] - mb);
		}
		*rho = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : 0.0;
	}
	free(ra);
	free(rb);
	return rc;
}

int iap_topk_overlap_abs(const float *a, const float *b, int64_t n, int64_t k, double *overlap,
			 struct iap_error *err)
{
	struct ranked *t;
	unsigned char *in_a;
	int64_t shared = 0;

	*overlap = NAN;
	if (k < 1 || k > n)
		return iap_error_set(err, IAP_EINVAL, "top-k overlap: k = %lld is not in [1, %lld]", (long long)k,
				     (long long)n);
	t = malloc((size_t)n * sizeof(*t));
	in_a = calloc((size_t)n, 1);
	if (!t || !in_a) {
		free(t);
		free(in_a);
		return iap_error_set(err, IAP_ENOMEM, "top-k overlap: out of memory");
	}
	for (int64_t i = 0; i < n; i++) {
		if (!isfinite(a[i]) || !isfinite(b[i])) {
			free(t);
			free(in_a);
			return iap_error_set(err, IAP_ENUMERIC, "top-k overlap: value %lld is not finite",
					     (long long)i);
		}
		t[i] = (struct ranked){ fabsf(a[i]), i };
	}
	qsort(t, (size_t)n, sizeof(*t), cmp_ranked_desc);
	for (int64_t i = 0; i < k; i++)
		in_a[t[i].i] = 1;
	for (int64_t i = 0; i < n; i++)
		t[i] = (struct ranked){ fabsf(b[i]), i };
	qsort(t, (size_t)n, sizeof(*t), cmp_ranked_desc);
	for (int64_t i = 0; i < k; i++)
		shared += in_a[t[i].i];
	*overlap = (double)shared / (double)k;
	free(t);
	free(in_a);
	return IAP_OK;
}
