/* The OpenBLAS kernel-set choice (<iaprune/blas.h>). */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/blas.h>

static void test_better_core_for_fallbacks(void **state)
{
	(void)state;
	/* The misdetection this exists for: an AVX-512 CPU given the SSE3 kernels. */
	assert_string_equal(iap_blas_better_core("Prescott", IAP_CPU_AVX2 | IAP_CPU_AVX512), "SkylakeX");
	assert_string_equal(iap_blas_better_core("prescott", IAP_CPU_AVX2 | IAP_CPU_AVX512), "SkylakeX");
	assert_string_equal(iap_blas_better_core("Nehalem", IAP_CPU_AVX2), "Haswell");
	assert_string_equal(iap_blas_better_core("Sandybridge", IAP_CPU_AVX2), "Haswell");
	assert_string_equal(iap_blas_better_core("Core2", IAP_CPU_AVX2 | IAP_CPU_AVX512), "SkylakeX");
}

static void test_better_core_leaves_good_choices(void **state)
{
	(void)state;
	/* A CPU without AVX2 keeps what OpenBLAS chose. */
	assert_null(iap_blas_better_core("Prescott", 0));
	assert_null(iap_blas_better_core("Sandybridge", 0));
	/* Sets OpenBLAS chose on purpose are never overridden. */
	assert_null(iap_blas_better_core("Haswell", IAP_CPU_AVX2 | IAP_CPU_AVX512));
	assert_null(iap_blas_better_core("SkylakeX", IAP_CPU_AVX2 | IAP_CPU_AVX512));
	assert_null(iap_blas_better_core("Cooperlake", IAP_CPU_AVX2 | IAP_CPU_AVX512));
	assert_null(iap_blas_better_core("Zen", IAP_CPU_AVX2));
	assert_null(iap_blas_better_core(NULL, IAP_CPU_AVX2));
}

static void test_features_consistent(void **state)
{
	unsigned f = iap_cpu_features();

	(void)state;
	/* AVX-512 is only reported together with AVX2. */
	if (f & IAP_CPU_AVX512)
		assert_true(f & IAP_CPU_AVX2);
	assert_non_null(iap_blas_core());
	assert_true(strlen(iap_blas_core()) > 0);
}

static void test_reexec_respects_the_variable(void **state)
{
	char *argv[] = { (char *)"/nonexistent/should-not-run", NULL };

	(void)state;
	/* Set by the user: nothing happens (returning is the proof: no exec). */
	setenv("OPENBLAS_CORETYPE", "Prescott", 1);
	setenv("GOMP_SPINCOUNT", "12345", 1);
	iap_blas_reexec(argv);
	assert_string_equal(getenv("OPENBLAS_CORETYPE"), "Prescott");
	assert_string_equal(getenv("GOMP_SPINCOUNT"), "12345");
	unsetenv("GOMP_SPINCOUNT");
	/* OMP_WAIT_POLICY is the user's choice of spinning too: kept, and GOMP_SPINCOUNT left unset. */
	setenv("OMP_WAIT_POLICY", "passive", 1);
	iap_blas_reexec(argv);
	assert_null(getenv("GOMP_SPINCOUNT"));
	unsetenv("OMP_WAIT_POLICY");
	unsetenv("OPENBLAS_CORETYPE");
	/* NULL argv is refused without touching the environment. */
	iap_blas_reexec(NULL);
	assert_null(getenv("OPENBLAS_CORETYPE"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_better_core_for_fallbacks),
		cmocka_unit_test(test_better_core_leaves_good_choices),
		cmocka_unit_test(test_features_consistent),
		cmocka_unit_test(test_reexec_respects_the_variable),
	};

	return cmocka_run_group_tests_name("blas", tests, NULL, NULL);
}
