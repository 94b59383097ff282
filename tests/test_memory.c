/* Memory limits and estimates: size parsing, the refusal message, a storage-free planning build. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/memory.h>
#include <iaprune/ops.h>

static void test_parse_and_format(void **state)
{
	struct iap_error err;
	uint64_t b = 0;
	char buf[32];

	(void)state;
	assert_int_equal(iap_memory_parse("8G", &b, &err), IAP_OK);
	assert_true(b == (uint64_t)8 << 30);
	assert_int_equal(iap_memory_parse("1.5GiB", &b, &err), IAP_OK);
	assert_true(b == (uint64_t)3 << 29);
	assert_int_equal(iap_memory_parse("512m", &b, &err), IAP_OK);
	assert_true(b == (uint64_t)512 << 20);
	assert_int_equal(iap_memory_parse("4096", &b, &err), IAP_OK);
	assert_true(b == 4096);
	assert_int_equal(iap_memory_parse("50%", &b, &err), IAP_OK);
	assert_true(b > 0 && b <= iap_memory_physical() / 2 + 1);
	/* Zero, junk, overflow (2^64 bytes), NaN and hex are refused. */
	assert_int_equal(iap_memory_parse("0", &b, &err), IAP_EINVAL);
	assert_int_equal(iap_memory_parse("8Q", &b, &err), IAP_EINVAL);
	assert_int_equal(iap_memory_parse("16777216T", &b, &err), IAP_EINVAL);
	assert_int_equal(iap_memory_parse("nan", &b, &err), IAP_EINVAL);
	assert_int_equal(iap_memory_parse("0x10", &b, &err), IAP_EINVAL);
	assert_int_equal(iap_memory_parse("101%", &b, &err), IAP_EINVAL);
	iap_memory_format(100, buf, sizeof(buf));
	assert_string_equal(buf, "100 bytes");
	iap_memory_format((uint64_t)3 << 29, buf, sizeof(buf));
	assert_string_equal(buf, "1.5 GiB");
	iap_memory_format((uint64_t)640 << 20, buf, sizeof(buf));
	assert_string_equal(buf, "640 MiB");
}

static void test_limit_and_check(void **state)
{
	struct iap_error err;

	(void)state;
	/* The default is three quarters of physical memory. */
	assert_true(iap_memory_limit() == iap_memory_physical() / 4 * 3);
	iap_memory_limit_set((uint64_t)1 << 30);
	assert_int_equal(iap_memory_check("x", (uint64_t)1 << 30, &err), IAP_OK);
	assert_int_equal(iap_memory_check("model 'm'", (uint64_t)3 << 30, &err), IAP_ELIMIT);
	assert_string_equal(err.msg, "model 'm' needs about 3.0 GiB of memory, more than the limit of 1.0 GiB "
				     "(--max-memory; the default is 3/4 of physical memory)");
	iap_memory_limit_set(0);
}

/* A classifier of 10^6 outputs on 4096 features (16 GB of weights) is measured without allocating it. */
static void test_planning_build(void **state)
{
	int64_t in[1] = { 4096 };
	struct iap_graph *g;
	uint64_t w, t;

	(void)state;
	iap_graph_planning(1);
	g = iap_graph_new(1, in, NULL);
	assert_non_null(g);
	iap_graph_set_shape_only(g, 0);   /* a plugin's own "no" does not undo planning */
	assert_true(iap_graph_set_output(g, iap_linear(g, "fc", IAP_GRAPH_INPUT, 1000000, 1)) == 0);
	iap_graph_planning(0);
	assert_null(g->nodes[0].params[0].value.data);
	assert_true(iap_graph_param_count(g, NULL) == (int64_t)4096 * 1000000 + 1000000);
	w = iap_graph_memory(g, 1, 0, 0);
	/* Weights plus the input and output of one sample, in float32. */
	assert_true(w == 4 * ((uint64_t)4097 * 1000000 + 4096 + 1000000));
	/* Training: gradients and both Adam moments; backward: three times the activations. */
	t = iap_graph_memory(g, 8, 1, 1);
	assert_true(t == 4 * (4 * ((uint64_t)4097 * 1000000) + 3 * 8 * ((uint64_t)4096 + 1000000)));
	iap_graph_free(g);
	/* Planning off again: storage is back. */
	g = iap_graph_new(1, in, NULL);
	iap_linear(g, "fc", IAP_GRAPH_INPUT, 2, 1);
	assert_non_null(g->nodes[0].params[0].value.data);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_and_format),
		cmocka_unit_test(test_limit_and_check),
		cmocka_unit_test(test_planning_build),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
