/*
 * The graph engine on its own: builder bookkeeping, the forward pass, the
 * backward walk (summing over consumers, hooks, NULL inputs, missing rules),
 * units and masks. It uses tiny ops defined here so it depends on no kernel.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/graph.h>

#include "gradcheck.h"
#include "testutil.h"

/* ---- test ops ------------------------------------------------------------- */

/* y = x ⊙ w with w shaped like one sample ("<name>.weight"). Labelled as linear. */
static int mul_forward(struct iap_graph *g, struct iap_node *node, const struct iap_tensor *const in[],
		       struct iap_tensor *out, struct iap_error *err)
{
	int64_t per = iap_tensor_numel(&node->params[0].value);
	const float *w = node->params[0].value.data;

	(void)g;
	(void)err;
	for (int64_t i = 0; i < iap_tensor_numel(out); i++)
		out->data[i] = in[0]->data[i] * w[i % per];
	return IAP_OK;
}

static int r_in_was_null;

static int mul_backward(struct iap_rule_ctx *ctx)
{
	const struct iap_param *p = &ctx->node->params[0];
	int64_t per = iap_tensor_numel(&p->value);

	r_in_was_null += ctx->r_in[0] == NULL;
	for (int64_t i = 0; i < iap_tensor_numel(ctx->r_out); i++) {
		if (ctx->r_in[0])
			ctx->r_in[0]->data[i] += ctx->r_out->data[i] * p->value.data[i % per];
		if (ctx->want_param_grads)
			p->grad.data[i % per] += ctx->r_out->data[i] * ctx->in[0]->data[i];
	}
	return IAP_OK;
}

static const struct iap_op_ops test_mul = {
	.kind = IAP_OP_LINEAR, .forward = mul_forward, .backward = mul_backward,
};

static int sum_forward(struct iap_graph *g, struct iap_node *node, const struct iap_tensor *const in[],
		       struct iap_tensor *out, struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)err;
	for (int64_t i = 0; i < iap_tensor_numel(out); i++)
		out->data[i] = in[0]->data[i] + in[1]->data[i];
	return IAP_OK;
}

static int sum_backward(struct iap_rule_ctx *ctx)
{
	for (int k = 0; k < 2; k++)
		if (ctx->r_in[k])
			for (int64_t i = 0; i < iap_tensor_numel(ctx->r_out); i++)
				ctx->r_in[k]->data[i] += ctx->r_out->data[i];
	return IAP_OK;
}

static const struct iap_op_ops test_sum = {
	.kind = IAP_OP_ADD, .forward = sum_forward, .backward = sum_backward,
};

/* y = x + 1: stands in for a BatchNorm's shift (labelled batchnorm2d). */
static int shift_forward(struct iap_graph *g, struct iap_node *node, const struct iap_tensor *const in[],
			 struct iap_tensor *out, struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)err;
	for (int64_t i = 0; i < iap_tensor_numel(out); i++)
		out->data[i] = in[0]->data[i] + 1.0f;
	return IAP_OK;
}

static int pass_backward(struct iap_rule_ctx *ctx)
{
	if (ctx->r_in[0])
		for (int64_t i = 0; i < iap_tensor_numel(ctx->r_out); i++)
			ctx->r_in[0]->data[i] += ctx->r_out->data[i];
	return IAP_OK;
}

static const struct iap_op_ops test_shift = {
	.kind = IAP_OP_BATCHNORM2D, .forward = shift_forward, .backward = pass_backward,
};

static int add_unary(struct iap_graph *g, const struct iap_op_ops *ops, const char *name, int in)
{
	int64_t shape[IAP_MAX_DIMS];
	int nd = iap_graph_sample_shape(g, in, shape);
	int id;

	if (nd < 0)
		return -1;
	id = iap_graph_add_node(g, ops, name, 1, &in);
	if (id < 0)
		return -1;
	g->nodes[id].out_ndim = nd;
	memcpy(g->nodes[id].out_shape, shape, (size_t)nd * sizeof(*shape));
	if (ops == &test_mul && iap_graph_add_param(g, id, "weight", nd, shape, IAP_PARAM_TRAINABLE) < 0)
		return -1;
	return id;
}

static int add_sum(struct iap_graph *g, const char *name, int a, int b)
{
	int in[2] = { a, b };
	int id = iap_graph_add_node(g, &test_sum, name, 2, in);

	if (id < 0)
		return -1;
	g->nodes[id].out_ndim = iap_graph_sample_shape(g, a, g->nodes[id].out_shape);
	return id;
}

/* x → m1 → {m2, m3} → sum: m1's output feeds two nodes. */
static struct iap_graph *diamond(void)
{
	int64_t in_shape[1] = { 3 };
	struct iap_graph *g = iap_graph_new(1, in_shape, NULL);
	int m1, m2, m3;

	m1 = add_unary(g, &test_mul, "m1", IAP_GRAPH_INPUT);
	m2 = add_unary(g, &test_mul, "m2", m1);
	m3 = add_unary(g, &test_mul, "m3", m1);
	add_sum(g, "sum", m2, m3);
	assert_int_equal(iap_graph_finalize(g, NULL), IAP_OK);
	for (int k = 0; k < 3; k++) {
		iap_graph_find_param(g, "m1.weight")->value.data[k] = 1.0f + k;   /* 1 2 3 */
		iap_graph_find_param(g, "m2.weight")->value.data[k] = 0.5f;
		iap_graph_find_param(g, "m3.weight")->value.data[k] = -2.0f + k; /* -2 -1 0 */
	}
	return g;
}

/* ---- tests ----------------------------------------------------------------- */

static void test_walk_sums_over_consumers(void **state)
{
	struct iap_graph *g = diamond();
	struct iap_tensor x = tu_rand_tensor(7, 2, (int64_t)2, (int64_t)3);
	struct iap_tensor seed = tu_rand_tensor(8, 2, (int64_t)2, (int64_t)3);
	struct iap_walk_opts wo = { .want_input = 1, .want_param_grads = 1 };
	const float w1[3] = { 1, 2, 3 }, w3[3] = { -2, -1, 0 };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	for (int i = 0; i < 6; i++)
		assert_float_equal(iap_graph_output(g)->data[i],
				   x.data[i] * w1[i % 3] * (0.5f + w3[i % 3]), 1e-6);
	assert_int_equal(iap_graph_zero_grads(g, &err), IAP_OK);
	assert_int_equal(iap_graph_backward(g, iap_ruleset_gradient(), &seed, &wo, &err), IAP_OK);
	/* dL/dx = s · w1 · (w2 + w3): both branches' contributions added at m1. */
	for (int i = 0; i < 6; i++)
		assert_float_equal(g->input_r.data[i], seed.data[i] * w1[i % 3] * (0.5f + w3[i % 3]), 1e-6);
	/* dL/dw1 = Σ_n s · x · (w2 + w3). */
	for (int k = 0; k < 3; k++) {
		float want = 0.0f;

		for (int n = 0; n < 2; n++)
			want += seed.data[n * 3 + k] * x.data[n * 3 + k] * (0.5f + w3[k]);
		assert_float_equal(iap_graph_find_param(g, "m1.weight")->grad.data[k], want, 1e-6);
	}
	/* The relevance at m1's output is the sum of what m2 and m3 sent. */
	assert_non_null(iap_graph_node_r(g, 0));
	assert_float_equal(iap_graph_node_r(g, 0)->data[4], seed.data[4] * (0.5f + w3[1]), 1e-6);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

static void test_gradcheck_harness_on_diamond(void **state)
{
	struct iap_graph *g = diamond();

	(void)state;
	assert_int_equal(gc_check_graph(g, &(struct gc_opts){ .batch = 3 }), 0);
	iap_graph_free(g);
}

/* A rule that doubles the gradient of mul: the harness must report it. */
static int wrong_backward(struct iap_rule_ctx *ctx)
{
	int rc = mul_backward(ctx);

	if (ctx->r_in[0])
		for (int64_t i = 0; i < iap_tensor_numel(ctx->r_in[0]); i++)
			ctx->r_in[0]->data[i] *= 2.0f;
	return rc;
}

static const struct iap_op_ops test_wrong = {
	.kind = IAP_OP_LINEAR, .forward = mul_forward, .backward = wrong_backward,
};

static void test_gradcheck_catches_wrong_gradient(void **state)
{
	int64_t in_shape[1] = { 4 };
	struct iap_graph *g = iap_graph_new(1, in_shape, NULL);
	int id;

	(void)state;
	id = add_unary(g, &test_mul, "m", IAP_GRAPH_INPUT);
	g->nodes[id].ops = &test_wrong;
	assert_int_equal(iap_graph_finalize(g, NULL), IAP_OK);
	tu_randomize_params(g, 3, 1.0f);
	assert_true(gc_check_graph(g, &(struct gc_opts){ .skip_params = 1 }) > 0);
	iap_graph_free(g);
}

static void test_missing_rule_is_an_error(void **state)
{
	struct iap_graph *g = diamond();
	struct iap_tensor x = tu_rand_tensor(1, 2, (int64_t)1, (int64_t)3);
	struct iap_tensor seed = tu_rand_tensor(2, 2, (int64_t)1, (int64_t)3);
	struct iap_ruleset partial = *iap_ruleset_gradient();
	struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_error err;

	(void)state;
	partial.name = "partial";
	partial.rules[IAP_OP_ADD] = NULL;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_int_equal(iap_graph_backward(g, &partial, &seed, &wo, &err), IAP_EUNSUPPORTED);
	assert_string_equal(err.msg, "rule set 'partial' has no rule for op add (node 'sum')");
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

struct visit_log {
	int order[8];
	int n;
	float at_m1;
};

static int record_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		       const struct iap_tensor *r_out)
{
	struct visit_log *log = user;

	(void)g;
	log->order[log->n++] = node->id;
	if (strcmp(node->name, "m1") == 0)
		log->at_m1 = r_out->data[0];
	return 0;
}

static void test_hook_sees_every_node_in_reverse(void **state)
{
	struct iap_graph *g = diamond();
	struct iap_tensor x = tu_rand_tensor(1, 2, (int64_t)1, (int64_t)3);
	struct iap_tensor seed = tu_rand_tensor(2, 2, (int64_t)1, (int64_t)3);
	struct visit_log log = { .n = 0 };
	struct iap_walk_opts wo = { .hook = record_hook, .hook_user = &log };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	r_in_was_null = 0;
	assert_int_equal(iap_graph_backward(g, iap_ruleset_gradient(), &seed, &wo, &err), IAP_OK);
	assert_int_equal(log.n, 4);
	assert_int_equal(log.order[0], 3);
	assert_int_equal(log.order[1], 2);
	assert_int_equal(log.order[2], 1);
	assert_int_equal(log.order[3], 0);
	assert_float_equal(log.at_m1, seed.data[0] * (0.5f - 2.0f), 1e-6);
	/* The input was not wanted, so m1's rule was told so (r_in NULL). */
	assert_int_equal(r_in_was_null, 1);
	assert_null(g->input_r.data);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

static void test_forward_checks_input_and_reuses_buffers(void **state)
{
	struct iap_graph *g = diamond();
	struct iap_tensor x = tu_rand_tensor(1, 2, (int64_t)2, (int64_t)3);
	struct iap_tensor bad = tu_rand_tensor(1, 2, (int64_t)2, (int64_t)4);
	struct iap_error err;
	const float *first;

	(void)state;
	assert_int_equal(iap_graph_forward(g, &bad, &err), IAP_ESHAPE);
	assert_string_equal(err.msg, "input has shape [2, 4], the model expects N x [3]");
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	first = iap_graph_output(g)->data;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_ptr_equal(iap_graph_output(g)->data, first);
	iap_tensor_free(&x);
	iap_tensor_free(&bad);
	iap_graph_free(g);
}

/* An op whose forward fails with a code no other check gives (ENUMERIC would come from the finite check). */
static int fail_forward(struct iap_graph *g, struct iap_node *node, const struct iap_tensor *const in[],
			struct iap_tensor *out, struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)in;
	(void)out;
	return iap_error_set(err, IAP_EUNSUPPORTED, "cannot");
}

static const struct iap_op_ops test_fail = {
	.kind = IAP_OP_RELU, .forward = fail_forward, .backward = pass_backward,
};

/*
 * A failing op's code comes back whether or not the caller passed an error
 * slot: adding context to a message that is not kept must not turn the
 * failure into IAP_OK.
 */
static void test_forward_failure_without_error_slot(void **state)
{
	int64_t in_shape[1] = { 3 };
	struct iap_graph *g = iap_graph_new(1, in_shape, NULL);
	struct iap_tensor x = tu_rand_tensor(1, 2, (int64_t)2, (int64_t)3);
	struct iap_error err;

	(void)state;
	assert_true(add_unary(g, &test_fail, "broken", IAP_GRAPH_INPUT) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_EUNSUPPORTED);
	assert_string_equal(err.msg, "forward of 'broken' (relu): cannot");
	assert_int_equal(iap_graph_forward(g, &x, NULL), IAP_EUNSUPPORTED);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_builder_errors_are_sticky(void **state)
{
	int64_t in_shape[1] = { 3 };
	struct iap_graph *g = iap_graph_new(1, in_shape, NULL);
	struct iap_error err;
	int a;

	(void)state;
	a = add_unary(g, &test_mul, "a", IAP_GRAPH_INPUT);
	assert_int_equal(add_sum(g, "bad", a, 17), -1);
	/* Later calls are no-ops; the first failure is what finalize reports. */
	assert_int_equal(add_unary(g, &test_mul, "b", a), -1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "bad: input 1 refers to node 17, which does not exist");
	iap_graph_free(g);

	g = iap_graph_new(1, in_shape, NULL);
	a = add_unary(g, &test_mul, "a", IAP_GRAPH_INPUT);
	assert_int_equal(iap_graph_add_units(g, a, 2, 1, -1), -1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_ESHAPE);
	assert_string_equal(err.msg, "a: 2 units of size 1 do not tile an axis of 3");
	iap_graph_free(g);
	assert_null(iap_graph_new(0, in_shape, &err));
	assert_string_equal(err.msg, "graph input must have 1 to 3 dimensions per sample, not 0");
}

/* conv-like node (4 channels of 2×2) followed by a "batchnorm" shift. */
static void test_mask_zeroes_unit_after_shift(void **state)
{
	int64_t in_shape[3] = { 4, 2, 2 };
	struct iap_graph *g = iap_graph_new(3, in_shape, NULL);
	struct iap_tensor x = tu_rand_tensor(5, 4, (int64_t)2, (int64_t)4, (int64_t)2, (int64_t)2);
	struct iap_tensor seed = tu_rand_tensor(6, 4, (int64_t)2, (int64_t)4, (int64_t)2, (int64_t)2);
	struct iap_walk_opts wo = { .want_input = 1, .want_param_grads = 1 };
	const uint8_t keep[4] = { 1, 0, 1, 0 };
	struct iap_error err;
	int conv, grp;
	const struct iap_tensor *out;

	(void)state;
	conv = add_unary(g, &test_mul, "conv", IAP_GRAPH_INPUT);
	add_unary(g, &test_shift, "bn", conv);
	grp = iap_graph_add_units(g, conv, 4, 1, -1);
	assert_int_equal(grp, 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	/* The mask moved to the BatchNorm so its shift cannot leak through. */
	assert_int_equal(g->groups[0].node, 0);
	assert_int_equal(g->groups[0].mask_node, 1);
	assert_int_equal(iap_graph_unit_count(g), 4);
	tu_randomize_params(g, 9, 1.0f);
	assert_int_equal(iap_graph_set_mask(g, grp, keep, &err), IAP_OK);
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	out = iap_graph_output(g);
	for (int n = 0; n < 2; n++)
		for (int c = 0; c < 4; c++)
			for (int k = 0; k < 4; k++) {
				float v = out->data[(n * 4 + c) * 4 + k];

				if (keep[c])
					assert_true(v != 0.0f);
				else
					assert_true(v == 0.0f);
			}
	assert_int_equal(iap_graph_zero_grads(g, &err), IAP_OK);
	assert_int_equal(iap_graph_backward(g, iap_ruleset_gradient(), &seed, &wo, &err), IAP_OK);
	/* Nothing flows back through a pruned unit. */
	for (int n = 0; n < 2; n++)
		for (int k = 0; k < 4; k++) {
			assert_true(g->input_r.data[(n * 4 + 1) * 4 + k] == 0.0f);
			assert_true(g->input_r.data[(n * 4 + 0) * 4 + k] != 0.0f);
		}
	/* Clearing the mask restores the unit. */
	assert_int_equal(iap_graph_set_mask(g, grp, NULL, &err), IAP_OK);
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_true(iap_graph_output(g)->data[4] != 0.0f);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

static void test_unit_reduce_and_view(void **state)
{
	struct iap_unit_group heads = { .n_units = 2, .unit_size = 2 };
	struct iap_unit_group chans = { .n_units = 2, .unit_size = 1 };
	/* Tokens: N=2, T=2, D=4 with 2 heads of 2 columns. */
	struct iap_tensor t = { .ndim = 3, .shape = { 2, 2, 4 } };
	float data[16], scores[4];
	int64_t outer, axis, inner;

	(void)state;
	for (int i = 0; i < 16; i++)
		data[i] = (float)(i % 2 ? -i : i);   /* 0 -1 2 -3 4 -5 ... */
	t.data = data;
	iap_unit_view(&t, &outer, &axis, &inner);
	assert_int_equal(outer, 4);
	assert_int_equal(axis, 4);
	assert_int_equal(inner, 1);
	iap_unit_reduce(&heads, &t, 0, scores);
	/* sample 0: head 0 = 0-1+4-5 = -2, head 1 = 2-3+6-7 = -2; sample 1: 8-9+12-13, 10-11+14-15 */
	assert_float_equal(scores[0], -2.0f, 0);
	assert_float_equal(scores[1], -2.0f, 0);
	assert_float_equal(scores[2], -2.0f, 0);
	assert_float_equal(scores[3], -2.0f, 0);
	iap_unit_reduce(&heads, &t, 1, scores);
	assert_float_equal(scores[0], 10.0f, 0);
	assert_float_equal(scores[1], 18.0f, 0);
	assert_float_equal(scores[2], 42.0f, 0);
	assert_float_equal(scores[3], 50.0f, 0);
	/* NCHW: N=2, C=2, 2×2. */
	t.ndim = 4;
	t.shape[0] = 2; t.shape[1] = 2; t.shape[2] = 2; t.shape[3] = 2;
	iap_unit_view(&t, &outer, &axis, &inner);
	assert_int_equal(outer, 2);
	assert_int_equal(axis, 2);
	assert_int_equal(inner, 4);
	iap_unit_reduce(&chans, &t, 0, scores);
	assert_float_equal(scores[0], 0 - 1 + 2 - 3, 0);
	assert_float_equal(scores[1], 4 - 5 + 6 - 7, 0);
	assert_float_equal(scores[2], 8 - 9 + 10 - 11, 0);
	assert_float_equal(scores[3], 12 - 13 + 14 - 15, 0);
}

static void test_param_bookkeeping(void **state)
{
	struct iap_graph *g = diamond();
	int64_t buffers = -1;

	(void)state;
	assert_int_equal(iap_graph_param_count(g, &buffers), 9);
	assert_int_equal(buffers, 0);
	assert_null(iap_graph_find_param(g, "m4.weight"));
	assert_string_equal(iap_op_name(IAP_OP_ADAPTIVE_AVGPOOL2D), "adaptive_avgpool2d");
	assert_string_equal(iap_op_name(IAP_OP_TOKEN_SELECT), "token_select");
	assert_null(iap_op_name(IAP_OP_COUNT));
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_walk_sums_over_consumers),
		cmocka_unit_test(test_gradcheck_harness_on_diamond),
		cmocka_unit_test(test_gradcheck_catches_wrong_gradient),
		cmocka_unit_test(test_missing_rule_is_an_error),
		cmocka_unit_test(test_hook_sees_every_node_in_reverse),
		cmocka_unit_test(test_forward_checks_input_and_reuses_buffers),
		cmocka_unit_test(test_forward_failure_without_error_slot),
		cmocka_unit_test(test_builder_errors_are_sticky),
		cmocka_unit_test(test_mask_zeroes_unit_after_shift),
		cmocka_unit_test(test_unit_reduce_and_view),
		cmocka_unit_test(test_param_bookkeeping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
