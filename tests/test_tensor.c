/* Tensors, error slots and the random number generator. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/error.h>
#include <iaprune/rng.h>
#include <iaprune/tensor.h>

static void test_alloc_zeroed_and_aligned(void **state)
{
	struct iap_tensor t = { 0 };
	int64_t shape[4] = { 2, 3, 5, 7 };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_tensor_alloc(&t, 4, shape, &err), IAP_OK);
	assert_int_equal(iap_tensor_numel(&t), 210);
	assert_int_equal((uintptr_t)t.data % 64, 0);
	for (int i = 0; i < 210; i++)
		assert_true(t.data[i] == 0.0f);
	assert_int_equal(t.owns, 1);
	iap_tensor_free(&t);
	assert_null(t.data);
	assert_int_equal(t.ndim, 0);
}

static void test_ensure_reuses_buffer(void **state)
{
	struct iap_tensor t = { 0 };
	int64_t a[2] = { 4, 8 }, b[2] = { 8, 4 };
	float *first;

	(void)state;
	assert_int_equal(iap_tensor_ensure(&t, 2, a, NULL), IAP_OK);
	first = t.data;
	t.data[3] = 42.0f;
	assert_int_equal(iap_tensor_ensure(&t, 2, a, NULL), IAP_OK);
	assert_ptr_equal(t.data, first);
	assert_true(t.data[3] == 42.0f);
	/* Same element count, other shape: zeroed, in the same buffer. */
	assert_int_equal(iap_tensor_ensure(&t, 2, b, NULL), IAP_OK);
	assert_int_equal(t.shape[0], 8);
	assert_true(t.data[3] == 0.0f);
	assert_ptr_equal(t.data, first);
	/* Smaller (a last partial batch): still no new buffer. */
	b[0] = 2;
	t.data[1] = 5.0f;
	assert_int_equal(iap_tensor_ensure(&t, 2, b, NULL), IAP_OK);
	assert_ptr_equal(t.data, first);
	assert_int_equal(iap_tensor_numel(&t), 8);
	assert_true(t.data[1] == 0.0f);
	/* Larger: a new buffer. */
	b[0] = 16;
	assert_int_equal(iap_tensor_ensure(&t, 2, b, NULL), IAP_OK);
	assert_int_equal(t.cap, 64);
	iap_tensor_free(&t);
}

static void test_alloc_refuses_huge_and_negative(void **state)
{
	struct iap_tensor t = { 0 };
	int64_t huge[3] = { 1 << 20, 1 << 20, 1 << 20 };
	int64_t neg[2] = { 3, -1 };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_tensor_alloc(&t, 3, huge, &err), IAP_ENOMEM);
	assert_string_equal(err.msg,
			    "tensor shape [1048576, 1048576, 1048576] exceeds the limit of 8589934592 elements");
	assert_int_equal(iap_tensor_alloc(&t, 2, neg, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "tensor shape [3, -1] has a negative dimension");
	assert_int_equal(iap_tensor_alloc(&t, 5, neg, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "tensor rank 5 is outside 0..4");
	assert_null(t.data);
}

static void test_copy_and_shapes(void **state)
{
	struct iap_tensor a = { 0 }, b = { 0 };
	int64_t shape[3] = { 2, 2, 3 };
	char buf[64];

	(void)state;
	assert_int_equal(iap_tensor_alloc(&a, 3, shape, NULL), IAP_OK);
	for (int i = 0; i < 12; i++)
		a.data[i] = (float)i * 0.5f;
	assert_int_equal(iap_tensor_copy(&b, &a, NULL), IAP_OK);
	assert_true(iap_tensor_same_shape(&a, &b));
	assert_memory_equal(a.data, b.data, 12 * sizeof(float));
	assert_true(a.data != b.data);
	assert_string_equal(iap_tensor_shape_str(&b, buf, sizeof(buf)), "[2, 2, 3]");
	/* Truncation keeps the string terminated. */
	assert_string_equal(iap_tensor_shape_str(&b, buf, 5), "[2, ");
	iap_tensor_zero(&b);
	assert_true(b.data[11] == 0.0f);
	iap_tensor_free(&a);
	iap_tensor_free(&b);
}

static void test_error_slot(void **state)
{
	struct iap_error err;

	(void)state;
	/* Still one line, and the break is visible (names from files are escaped, issue #20). */
	assert_int_equal(iap_error_set(&err, IAP_EFORMAT, "bad %s\nline", "header"), IAP_EFORMAT);
	assert_string_equal(err.msg, "bad header\\nline");
	assert_int_equal(iap_error_prefix(&err, "%s", "model.safetensors"), IAP_EFORMAT);
	assert_string_equal(err.msg, "model.safetensors: bad header\\nline");
	/* A terminal escape (clear screen), a C1 CSI and DEL in a tensor name print as text; UTF-8 stays. */
	iap_error_set(&err, IAP_EFORMAT, "tensor '%s'", "a\033[2J\xc2\x9b\x7f\xc3\xa9");
	assert_string_equal(err.msg, "tensor 'a\\e[2J\\u009b\\x7f\xc3\xa9'");
	assert_int_equal(iap_error_set(NULL, IAP_EIO, "ignored"), IAP_EIO);
	/* Prefixing happens on failure paths only: never IAP_OK, with or without a slot. */
	assert_int_not_equal(iap_error_prefix(NULL, "ignored"), IAP_OK);
	iap_error_clear(&err);
	assert_int_not_equal(iap_error_prefix(&err, "no failure recorded"), IAP_OK);
	assert_string_equal(iap_status_name(IAP_ESHAPE), "shape mismatch");
	assert_string_equal(iap_status_name(99), "unknown error");
	iap_error_clear(&err);
	assert_int_equal(err.code, IAP_OK);
	assert_string_equal(err.msg, "");
}

static void test_rng_reproducible(void **state)
{
	struct iap_rng a, b;
	double sum = 0.0, sq = 0.0;
	int counts[3] = { 0 };

	(void)state;
	iap_rng_seed(&a, 42);
	iap_rng_seed(&b, 42);
	for (int i = 0; i < 1000; i++)
		assert_true(iap_rng_next(&a) == iap_rng_next(&b));
	iap_rng_seed(&b, 43);
	assert_true(iap_rng_next(&a) != iap_rng_next(&b));
	for (int i = 0; i < 30000; i++) {
		float u = iap_rng_uniform(&a);
		double z = iap_rng_normal(&a);
		uint64_t k = iap_rng_below(&a, 3);

		assert_true(u >= 0.0f && u < 1.0f);
		assert_true(k < 3);
		counts[k]++;
		sum += z;
		sq += z * z;
	}
	/* Loose statistical bounds (many sigmas): mean 0, variance 1, thirds. */
	assert_true(sum / 30000 > -0.05 && sum / 30000 < 0.05);
	assert_true(sq / 30000 > 0.95 && sq / 30000 < 1.05);
	for (int k = 0; k < 3; k++)
		assert_true(counts[k] > 9500 && counts[k] < 10500);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alloc_zeroed_and_aligned),
		cmocka_unit_test(test_ensure_reuses_buffer),
		cmocka_unit_test(test_alloc_refuses_huge_and_negative),
		cmocka_unit_test(test_copy_and_shapes),
		cmocka_unit_test(test_error_slot),
		cmocka_unit_test(test_rng_reproducible),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
