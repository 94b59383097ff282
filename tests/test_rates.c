/*
 * The sweep's rates: the table rates and the fine curve, sorted and unique;
 * the curve reaches 0.95 at every step iaprune-pipeline(5) allows (it used
 * to stop after 60 points: at 0.59 for a 0.01 step).
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "../host/run/rates.h"

static const double table[] = { 0.15, 0.30, 0.50, 0.70 };

static void test_fine_step_reaches_095(void **state)
{
	struct iap_error err;
	double *v = NULL;
	int n = 0;

	(void)state;
	assert_int_equal(iap_rate_grid(table, 4, 1, 0.01, &v, &n, &err), IAP_OK);
	/* 0.00 .. 0.95 in steps of 0.01; the table rates are on that grid. */
	assert_int_equal(n, 96);
	for (int i = 0; i < n; i++)
		assert_true(fabs(v[i] - i * 0.01) < 1e-9);
	free(v);
}

static void test_default_step(void **state)
{
	struct iap_error err;
	double *v = NULL;
	int n = 0;

	(void)state;
	assert_int_equal(iap_rate_grid(table, 4, 1, 0.05, &v, &n, &err), IAP_OK);
	/* 0.00 .. 0.95 by 0.05 (20 rates) with 0.15, 0.30, 0.50, 0.70 among them. */
	assert_int_equal(n, 20);
	assert_true(v[0] == 0 && fabs(v[19] - 0.95) < 1e-12);
	free(v);
	/* A step that does not divide 0.95: 0 .. 0.91 (14 rates), 0.70 among them, and 0.15, 0.30, 0.50. */
	assert_int_equal(iap_rate_grid(table, 4, 1, 0.07, &v, &n, &err), IAP_OK);
	assert_true(fabs(v[n - 1] - 0.91) < 1e-12);
	assert_int_equal(n, 14 + 3);
	free(v);
}

static void test_no_curve(void **state)
{
	const double unsorted[] = { 0.5, 0.1, 0.5 };
	struct iap_error err;
	double *v = NULL;
	int n = 0;

	(void)state;
	assert_int_equal(iap_rate_grid(unsorted, 3, 0, 0.05, &v, &n, &err), IAP_OK);
	assert_int_equal(n, 2);
	assert_true(v[0] == 0.1 && v[1] == 0.5);
	free(v);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fine_step_reaches_095),
		cmocka_unit_test(test_default_step),
		cmocka_unit_test(test_no_curve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
