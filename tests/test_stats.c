/*
 * Paired statistics (host/eval/stats.c) against values computed by hand:
 * McNemar's exact p-values from the binomial, percentiles, the bootstrap's
 * determinism under a seed, the threshold rule, Spearman's ρ with ties and
 * the top-k overlap.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/stats.h>

static void test_mcnemar_exact(void **state)
{
	(void)state;
	assert_true(iap_mcnemar_exact(0, 0) == 1.0);
	/* n = 1: P(X <= 0) = 1/2, doubled = 1. */
	assert_true(fabs(iap_mcnemar_exact(1, 0) - 1.0) < 1e-12);
	/* n = 5, k = 0: 2 / 32. */
	assert_true(fabs(iap_mcnemar_exact(5, 0) - 0.0625) < 1e-12);
	assert_true(fabs(iap_mcnemar_exact(0, 5) - 0.0625) < 1e-12);
	/* n = 10, k = 2: 2 (1 + 10 + 45) / 1024. */
	assert_true(fabs(iap_mcnemar_exact(2, 8) - 112.0 / 1024.0) < 1e-12);
	assert_true(fabs(iap_mcnemar_exact(8, 2) - 112.0 / 1024.0) < 1e-12);
	/* b = c: the doubled tail exceeds 1 and is capped. */
	assert_true(iap_mcnemar_exact(3, 3) == 1.0);
	/* n = 20, k = 0: 2 / 2^20. */
	assert_true(fabs(iap_mcnemar_exact(0, 20) / (2.0 / 1048576.0) - 1.0) < 1e-9);
	/* n = 50, k = 10: 2 Σ_{i<=10} C(50, i) / 2^50 = 2.3861331676755526e-05. */
	assert_true(fabs(iap_mcnemar_exact(10, 40) / 2.3861331676755526e-05 - 1) < 1e-9);
}

static void test_percentile(void **state)
{
	double v[] = { 4, 1, 3, 2 }, one[] = { 7 };

	(void)state;
	assert_true(fabs(iap_percentile(v, 4, 2.5) - 1.075) < 1e-12);
	assert_true(fabs(iap_percentile(v, 4, 97.5) - 3.925) < 1e-12);
	assert_true(fabs(iap_percentile(v, 4, 50) - 2.5) < 1e-12);
	assert_true(iap_percentile(one, 1, 2.5) == 7);
	assert_true(isnan(iap_percentile(v, 0, 50)));
}

static void test_bootstrap_seeded(void **state)
{
	struct iap_bootstrap a, b, c, small;
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_bootstrap_init(&a, 37, 1000, 42, &err), 0);
	assert_int_equal(iap_bootstrap_init(&b, 37, 1000, 42, &err), 0);
	assert_int_equal(iap_bootstrap_init(&c, 37, 1000, 43, &err), 0);
	assert_int_equal(iap_bootstrap_init(&small, 37, 100, 42, &err), 0);
	/* Same seed: the same resamples; another seed: others; B = 100 is a prefix of B = 1000. */
	assert_memory_equal(a.counts, b.counts, 1000 * 37 * sizeof(uint32_t));
	assert_true(memcmp(a.counts, c.counts, 1000 * 37 * sizeof(uint32_t)) != 0);
	assert_memory_equal(a.counts, small.counts, 100 * 37 * sizeof(uint32_t));
	for (int r = 0; r < 1000; r++) {
		uint32_t sum = 0;

		for (int i = 0; i < 37; i++)
			sum += a.counts[r * 37 + i];
		assert_int_equal(sum, 37);
	}
	iap_bootstrap_free(&a);
	iap_bootstrap_free(&b);
	iap_bootstrap_free(&c);
	iap_bootstrap_free(&small);
	assert_int_equal(iap_bootstrap_init(&a, 0, 10, 1, &err), IAP_EINVAL);
}

static void test_bootstrap_intervals(void **state)
{
	struct iap_bootstrap bs;
	struct iap_error err;
	double ones[40], zeros[40], half[40], x[40], lo, hi, lo2, hi2;

	(void)state;
	for (int i = 0; i < 40; i++) {
		ones[i] = 1;
		zeros[i] = 0;
		half[i] = i % 2;
		x[i] = i < 30;
	}
	assert_int_equal(iap_bootstrap_init(&bs, 40, 500, 7, &err), 0);
	/* Constant differences have a degenerate interval. */
	assert_int_equal(iap_bootstrap_diff_ci(&bs, ones, zeros, &lo, &hi, &err), 0);
	assert_true(lo == 1 && hi == 1);
	assert_int_equal(iap_bootstrap_diff_ci(&bs, half, half, &lo, &hi, &err), 0);
	assert_true(lo == 0 && hi == 0);
	/* Accuracy 0.75 on 40 images: the interval holds 0.75 and is about ±0.13 wide (normal ±1.96·0.068). */
	assert_int_equal(iap_bootstrap_mean_ci(&bs, x, &lo, &hi, &err), 0);
	assert_true(lo < 0.75 && hi > 0.75);
	assert_true(lo > 0.55 && lo < 0.67 && hi > 0.83 && hi < 0.95);
	/* The same call again: the same numbers (resamples are fixed). */
	assert_int_equal(iap_bootstrap_mean_ci(&bs, x, &lo2, &hi2, &err), 0);
	assert_true(lo == lo2 && hi == hi2);
	iap_bootstrap_free(&bs);
	/* One image: every resample is that image. */
	assert_int_equal(iap_bootstrap_init(&bs, 1, 20, 7, &err), 0);
	for (int r = 0; r < 20; r++)
		assert_int_equal(bs.counts[r], 1);
	iap_bootstrap_free(&bs);
	/* B = 0: no interval. */
	assert_int_equal(iap_bootstrap_init(&bs, 40, 0, 7, &err), 0);
	assert_int_equal(iap_bootstrap_mean_ci(&bs, x, &lo, &hi, &err), 0);
	assert_true(isnan(lo) && isnan(hi));
	iap_bootstrap_free(&bs);
}

static void test_threshold(void **state)
{
	const double rates[] = { 0.1, 0.2, 0.3 };
	const double drops_a[] = { 0.01, 0.06, 0.0 }, drops_b[] = { 0.2, 0.0, 0.0 },
		     drops_c[] = { 0.0, 0.05, 0.05 };
	double base[10], good[10], bad[10], lo, hi;
	const double *models[3] = { good, good, bad };
	struct iap_bootstrap bs;
	struct iap_error err;

	(void)state;
	assert_true(iap_threshold_rule(3, rates, drops_a, 0.05) == 0.1);
	assert_true(iap_threshold_rule(3, rates, drops_b, 0.05) == 0.0);
	assert_true(iap_threshold_rule(3, rates, drops_c, 0.05) == 0.3);
	for (int i = 0; i < 10; i++) {
		base[i] = good[i] = 1;
		bad[i] = 0;
	}
	/* The third model gets nothing right: every resample stops at 0.2. */
	assert_int_equal(iap_bootstrap_init(&bs, 10, 200, 3, &err), 0);
	assert_int_equal(iap_bootstrap_threshold_ci(&bs, 3, rates, base, models, 0.05, &lo, &hi, &err), 0);
	assert_true(lo == 0.2 && hi == 0.2);
	iap_bootstrap_free(&bs);
}

static void test_spearman_topk(void **state)
{
	const float a[] = { 1, 2, 3, 4 }, rev[] = { 4, 3, 2, 1 }, sgn[] = { -1, 2, -3, 4 };
	const float tie[] = { 1, 1, 2, 3 }, flat[] = { 2, 2, 2, 2 };
	const float d5[] = { 5, 4, 3, 2, 1 }, u5[] = { 1, 2, 3, 4, 5 };
	struct iap_error err;
	double rho, ov;

	(void)state;
	assert_int_equal(iap_spearman_abs(a, a, 4, &rho, &err), 0);
	assert_true(fabs(rho - 1) < 1e-12);
	assert_int_equal(iap_spearman_abs(a, rev, 4, &rho, &err), 0);
	assert_true(fabs(rho + 1) < 1e-12);
	assert_int_equal(iap_spearman_abs(a, sgn, 4, &rho, &err), 0);
	assert_true(fabs(rho - 1) < 1e-12);
	/* Ties: ranks (3.5, 3.5, 2, 1) against (4, 3, 2, 1): 4.5 / sqrt(4.5 · 5) (scipy: 0.9486833). */
	assert_int_equal(iap_spearman_abs(tie, a, 4, &rho, &err), 0);
	assert_true(fabs(rho - 0.9486832980505138) < 1e-12);
	assert_int_equal(iap_spearman_abs(flat, a, 4, &rho, &err), 0);
	assert_true(rho == 0);
	assert_int_equal(iap_spearman_abs(a, a, 1, &rho, &err), IAP_EINVAL);

	assert_int_equal(iap_topk_overlap_abs(d5, u5, 5, 2, &ov, &err), 0);
	assert_true(ov == 0);
	assert_int_equal(iap_topk_overlap_abs(d5, u5, 5, 3, &ov, &err), 0);
	assert_true(fabs(ov - 1.0 / 3.0) < 1e-12);
	assert_int_equal(iap_topk_overlap_abs(d5, d5, 5, 2, &ov, &err), 0);
	assert_true(ov == 1);
	/* All tied: both pick the lowest indices. */
	assert_int_equal(iap_topk_overlap_abs(flat, flat, 4, 2, &ov, &err), 0);
	assert_true(ov == 1);
	assert_int_equal(iap_topk_overlap_abs(d5, u5, 5, 0, &ov, &err), IAP_EINVAL);
}

/* Six images: the pruned model loses images 0 and 1 and gains image 5. */
static void test_paired_compare(void **state)
{
	const int labels[] = { 0, 1, 0, 1, 0, 1 }, base[] = { 0, 1, 0, 1, 0, 0 }, pruned[] = { 1, 0, 0, 1, 0, 1 };
	struct iap_bootstrap bs;
	struct iap_paired p;
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_bootstrap_init(&bs, 6, 300, 11, &err), 0);
	assert_int_equal(iap_paired_compare(&bs, labels, base, pruned, &p, &err), 0);
	assert_int_equal(p.lost, 2);
	assert_int_equal(p.gained, 1);
	/* n = 3, k = 1: 2 (1 + 3) / 8 = 1. */
	assert_true(p.p == 1.0);
	/* Accuracy 4/6, drop 1/6: both intervals hold the point estimate. */
	assert_true(p.acc_lo <= 4.0 / 6 && p.acc_hi >= 4.0 / 6);
	assert_true(p.drop_lo <= 1.0 / 6 && p.drop_hi >= 1.0 / 6);
	assert_true(p.drop_lo >= -1 && p.drop_hi <= 1);
	iap_bootstrap_free(&bs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mcnemar_exact),
		cmocka_unit_test(test_percentile),
		cmocka_unit_test(test_bootstrap_seeded),
		cmocka_unit_test(test_bootstrap_intervals),
		cmocka_unit_test(test_threshold),
		cmocka_unit_test(test_spearman_topk),
		cmocka_unit_test(test_paired_compare),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
