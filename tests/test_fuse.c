/*
 * Forward fusion (core/graph/fuse.c): a ReLU right after a batchnorm or an
 * add runs in that node's pass. Which pairs fuse, and that every node's
 * output is bit for bit what the ops give one after the other — masks,
 * training mode and thread counts included.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/threads.h>

#include "../core/graph/fuse.h"
#include "testutil.h"

/* Node ids of the test graph, in build order. */
enum { CONV_A, BN_A, RELU_A, CONV_B, BN_B, ADD, RELU_ADD, CONV_C, BN_C, RELU_C, RELU_AGAIN, NODES };

/*
 * conv → bn → relu, a residual block ending in add → relu, a masked
 * conv → bn → relu (the mask sits on the bn, so that pair must not fuse),
 * and a relu reading a node that is not the one before it.
 */
static struct iap_graph *fuse_graph(int *group)
{
	int64_t in_shape[3] = { 4, 16, 16 };
	struct iap_graph *g = iap_graph_new(3, in_shape, NULL);
	struct iap_error err = { 0, "" };

	assert_non_null(g);
	iap_conv2d(g, "a", IAP_GRAPH_INPUT, 8, 3, 3, 1, 1, 1, 1, 0);
	iap_batchnorm2d(g, "a.bn", CONV_A, 1e-5f, 0.1f);
	iap_relu(g, "a.relu", BN_A);
	iap_conv2d(g, "b", RELU_A, 8, 3, 3, 1, 1, 1, 1, 0);
	iap_batchnorm2d(g, "b.bn", CONV_B, 1e-5f, 0.1f);
	iap_add(g, "add", BN_B, RELU_A);
	iap_relu(g, "add.relu", ADD);
	iap_conv2d(g, "c", RELU_ADD, 8, 1, 1, 1, 1, 0, 0, 1);
	iap_batchnorm2d(g, "c.bn", CONV_C, 1e-5f, 0.1f);
	iap_relu(g, "c.relu", BN_C);
	assert_int_equal(iap_relu(g, "again", BN_B), RELU_AGAIN);
	*group = iap_graph_add_units(g, CONV_C, 8, 1, -1);
	assert_true(*group >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	/* Running statistics away from 0 / 1, and signs mixed, so the ReLUs cut. */
	tu_randomize_params(g, 17, 0.5f);
	for (int i = 0; i < NODES; i++) {
		struct iap_node *n = iap_graph_node(g, i);

		if (n->kind == IAP_OP_BATCHNORM2D)
			for (int c = 0; c < 8; c++)
				n->params[3].value.data[c] = 0.5f + 0.1f * (float)c;
	}
	/*
	 * c.bn shifts every channel up (mean 0, bias 0.3): a pruned channel, zero
	 * out of the conv, leaves the bn at 0.3 unless the mask zeroes it first.
	 */
	for (int c = 0; c < 8; c++) {
		iap_graph_node(g, BN_C)->params[1].value.data[c] = 0.3f;
		iap_graph_node(g, BN_C)->params[2].value.data[c] = 0.0f;
	}
	return g;
}

/* A graph's own op of the ReLU kind: it must run, not the stock ReLU in the add's pass. */
static int negate_forward(struct iap_graph *g, struct iap_node *node, const struct iap_tensor *const in[],
			  struct iap_tensor *out, struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)err;
	for (int64_t i = 0; i < iap_tensor_numel(out); i++)
		out->data[i] = -in[0]->data[i];
	return IAP_OK;
}

static const struct iap_op_ops negate_ops = { .kind = IAP_OP_RELU, .forward = negate_forward };

static void test_which_pairs_fuse(void **state)
{
	const uint8_t keep[8] = { 1, 0, 1, 1, 1, 1, 1, 1 };
	struct iap_error err = { 0, "" };
	int group, in[1] = { 1 };   /* the add of the second graph */
	struct iap_graph *g = fuse_graph(&group);

	(void)state;
	assert_ptr_equal(iap_graph_fused_relu(g, BN_A), iap_graph_node(g, RELU_A));
	assert_ptr_equal(iap_graph_fused_relu(g, ADD), iap_graph_node(g, RELU_ADD));
	/*
	 * Conv c's units keep their mask slot on its bn: without a mask set the
	 * pair fuses (every conv of the model plugins declares units), with one
	 * the relu must see the masked values, so it does not.
	 */
	assert_int_equal(iap_graph_node(g, BN_C)->mask_group, group);
	assert_ptr_equal(iap_graph_fused_relu(g, BN_C), iap_graph_node(g, RELU_C));
	assert_int_equal(iap_graph_set_mask(g, group, keep, &err), IAP_OK);
	assert_null(iap_graph_fused_relu(g, BN_C));
	assert_int_equal(iap_graph_set_mask(g, group, NULL, &err), IAP_OK);
	assert_ptr_equal(iap_graph_fused_relu(g, BN_C), iap_graph_node(g, RELU_C));
	/* A conv's relu is not fused (no such kernel), nor a relu of an earlier node, nor past the end. */
	assert_null(iap_graph_fused_relu(g, CONV_A));
	assert_null(iap_graph_fused_relu(g, RELU_C));
	assert_null(iap_graph_fused_relu(g, RELU_AGAIN));
	assert_null(iap_graph_fused_relu(g, -1));
	iap_graph_free(g);
	/* add → an op of the ReLU kind that is not the stock ReLU: not fused, and it runs. */
	{
		int64_t shape[3] = { 2, 2, 2 };
		struct iap_tensor x = tu_rand_tensor(4, 4, (int64_t)1, (int64_t)2, (int64_t)2, (int64_t)2);
		int neg;

		g = iap_graph_new(3, shape, NULL);
		assert_non_null(g);
		assert_int_equal(iap_relu(g, "r", IAP_GRAPH_INPUT), 0);
		assert_int_equal(iap_add(g, "add", 0, IAP_GRAPH_INPUT), 1);
		neg = iap_graph_add_node(g, &negate_ops, "neg", 1, in);
		assert_int_equal(neg, 2);
		g->nodes[neg].out_ndim = 3;
		memcpy(g->nodes[neg].out_shape, shape, sizeof(shape));
		assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
		assert_null(iap_graph_fused_relu(g, 1));
		assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
		for (int k = 0; k < 8; k++)
			assert_true(iap_graph_output(g)->data[k] == -iap_graph_node(g, 1)->out.data[k]);
		iap_tensor_free(&x);
		iap_graph_free(g);
	}
}

/* Every node's output, unfused: each op's forward in order, masks after. */
static void forward_by_node(struct iap_graph *g, float **out)
{
	struct iap_error err = { 0, "" };

	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = iap_graph_node(g, i);
		const struct iap_tensor *in[IAP_NODE_MAX_INPUTS] = { NULL };

		for (int k = 0; k < n->n_inputs; k++)
			in[k] = iap_graph_node_input(g, n, k);
		assert_int_equal(n->ops->forward(g, n, in, &n->out, &err), IAP_OK);
		if (n->mask_group >= 0)
			iap_unit_apply_mask(iap_graph_group(g, n->mask_group), &n->out);
		memcpy(out[i], n->out.data, (size_t)iap_tensor_numel(&n->out) * sizeof(float));
	}
}

static void check_forward(struct iap_graph *g, const struct iap_tensor *x, int threads)
{
	struct iap_error err = { 0, "" };
	float *ref[NODES];
	int64_t zeros = 0, negatives = 0;

	iap_threads_set(threads);
	/* Once to shape the buffers, then the unfused reference, then the fused pass under test. */
	assert_int_equal(iap_graph_forward(g, x, &err), IAP_OK);
	for (int i = 0; i < NODES; i++) {
		ref[i] = malloc((size_t)iap_tensor_numel(&iap_graph_node(g, i)->out) * sizeof(float));
		assert_non_null(ref[i]);
	}
	forward_by_node(g, ref);
	for (int i = 0; i < NODES; i++)
		memset(iap_graph_node(g, i)->out.data, 0xff, /* NaN: a node the pass skips shows */
		       (size_t)iap_tensor_numel(&iap_graph_node(g, i)->out) * sizeof(float));
	assert_int_equal(iap_graph_forward(g, x, &err), IAP_OK);
	for (int i = 0; i < NODES; i++) {
		const struct iap_tensor *o = &iap_graph_node(g, i)->out;

		assert_memory_equal(ref[i], o->data, (size_t)iap_tensor_numel(o) * sizeof(float));
		free(ref[i]);
	}
	/* The fused pairs did cut something: the add's output has negatives its relu zeroed. */
	for (int64_t k = 0; k < iap_tensor_numel(&iap_graph_node(g, ADD)->out); k++) {
		negatives += iap_graph_node(g, ADD)->out.data[k] < 0.0f;
		zeros += iap_graph_node(g, RELU_ADD)->out.data[k] == 0.0f;
	}
	assert_true(negatives > 0);
	assert_int_equal(zeros, negatives);
}

/* The pruned channels of c.relu are 0. */
static void check_pruned(const struct iap_graph *g, const uint8_t *keep)
{
	const struct iap_tensor *o = &iap_graph_node(g, RELU_C)->out;

	for (int64_t n = 0; n < o->shape[0]; n++)
		for (int c = 0; c < 8; c++)
			for (int k = 0; k < 256; k++) {
				float v = o->data[(n * 8 + c) * 256 + k];

				if (!keep[c])
					assert_true(v == 0.0f);
			}
}

static void test_fused_forward_bits(void **state)
{
	/* 64 samples of 8 × 16²: 131k floats per node, so the element-wise loops split over 3 threads (32k each). */
	struct iap_tensor x = tu_rand_tensor(3, 4, (int64_t)64, (int64_t)4, (int64_t)16, (int64_t)16);
	const uint8_t keep[8] = { 1, 0, 1, 1, 0, 1, 1, 1 };
	struct iap_error err = { 0, "" };
	int group;
	struct iap_graph *g = fuse_graph(&group);

	(void)state;
	assert_int_equal(iap_graph_set_mask(g, group, keep, &err), IAP_OK);
	for (int t = 1; t <= 3; t++) {
		check_forward(g, &x, t);
		check_pruned(g, keep);
	}
	/* Training mode: batch statistics, computed in the fused pass as in the unfused one. */
	g->training = 1;
	check_forward(g, &x, 2);
	g->training = 0;
	iap_threads_set(2);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_which_pairs_fuse),
		cmocka_unit_test(test_fused_forward_bits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
