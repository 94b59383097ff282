/*
 * The data-free baselines' per-layer normalisation: scores divided by their
 * layer's L2 norm or mean |score|, so a layer of small-norm filters no
 * longer ranks below every other layer.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "../host/run/ranking.h"

static void test_normalize_mean(void **state)
{
	/* Layer 0: small filters; layer 1: large; layer 2: all zero. */
	float a[] = { 0.1f, 0.2f, 0.3f }, b[] = { 2.0f, -6.0f }, z[] = { 0, 0 };
	float *scores[] = { a, b, z };
	const int n[] = { 3, 2, 2 };

	(void)state;
	iap_scores_normalize(IAP_RANK_MEAN, 3, n, scores);
	/* mean |a| = 0.2, mean |b| = 4. */
	assert_true(fabsf(a[0] - 0.5f) < 1e-6f && fabsf(a[1] - 1.0f) < 1e-6f && fabsf(a[2] - 1.5f) < 1e-6f);
	assert_true(fabsf(b[0] - 0.5f) < 1e-6f && fabsf(b[1] + 1.5f) < 1e-6f);
	assert_true(z[0] == 0 && z[1] == 0);
}

static void test_normalize_l2(void **state)
{
	/* |a| = sqrt(0.01 + 0.04 + 0.04) = 0.3; |b| = sqrt(9 + 16) = 5. */
	float a[] = { 0.1f, 0.2f, -0.2f }, b[] = { 3.0f, 4.0f };
	float *scores[] = { a, b };
	const int n[] = { 3, 2 };

	(void)state;
	iap_scores_normalize(IAP_RANK_L2, 2, n, scores);
	assert_true(fabsf(a[0] - 1.0f / 3) < 1e-6f && fabsf(a[1] - 2.0f / 3) < 1e-6f && fabsf(a[2] + 2.0f / 3) < 1e-6f);
	assert_true(fabsf(b[0] - 0.6f) < 1e-6f && fabsf(b[1] - 0.8f) < 1e-6f);
	/* Raw: untouched. */
	iap_scores_normalize(IAP_RANK_RAW, 2, n, scores);
	assert_true(fabsf(b[0] - 0.6f) < 1e-6f);
}

static void test_parse(void **state)
{
	(void)state;
	assert_int_equal(iap_ranking_parse("raw"), IAP_RANK_RAW);
	assert_int_equal(iap_ranking_parse("l2"), IAP_RANK_L2);
	assert_int_equal(iap_ranking_parse("mean"), IAP_RANK_MEAN);
	assert_int_equal(iap_ranking_parse("normalized"), -1);
	assert_int_equal(iap_ranking_parse(NULL), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize_mean),
		cmocka_unit_test(test_normalize_l2),
		cmocka_unit_test(test_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
