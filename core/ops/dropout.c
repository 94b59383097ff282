/*
 * iaprune — Dropout(p), PyTorch semantics: the identity in evaluation; in
 * training each value is zeroed with probability p and survivors are scaled
 * by 1/(1−p). Randomness comes from the graph's seeded generator, so a seed
 * reproduces the mask.
 *
 * aux[0] = the training mask (0 or 1/(1−p), input shape), aux[1] = [1]: 1 when
 * the last forward ran in training mode (the gradient follows that forward,
 * not the current mode).
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/rng.h>

#include "parallel.h"

static int dropout_forward(struct iap_graph *g, struct iap_node *node,
			   const struct iap_tensor *const in[], struct iap_tensor *out,
			   struct iap_error *err)
{
	const float *x = in[0]->data;
	float *y = out->data;
	int64_t n = iap_tensor_numel(in[0]);
	float p = node->attr.dropout.p;
	int active = g->training && p > 0.0f;

	int64_t flag_shape[1] = { 1 };
	int rc = iap_tensor_ensure(&node->aux[1], 1, flag_shape, err);
	if (rc)
		return rc;
	node->aux[1].data[0] = active ? 1.0f : 0.0f;

	if (!active) {
		if (y != x)
			memcpy(y, x, (size_t)n * sizeof(*y));
		return IAP_OK;
	}

	rc = iap_tensor_ensure(&node->aux[0], in[0]->ndim, in[0]->shape, err);
	if (rc)
		return rc;
	float *mask = node->aux[0].data;
	/* p == 1 drops everything (PyTorch returns zeros, not 0·inf). */
	float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;

	/* The generator is sequential: draw the mask in one thread, in order. */
	for (int64_t i = 0; i < n; i++)
		mask[i] = iap_rng_uniform(&g->rng) < p ? 0.0f : scale;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * mask[i];
	return IAP_OK;
}

static int dropout_backward(struct iap_rule_ctx *ctx)
{
	struct iap_node *node = ctx->node;
	if (!ctx->r_in[0])
		return IAP_OK;
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0]->data;
	int64_t n = iap_tensor_numel(ctx->in[0]);
	int active = node->aux[1].data && node->aux[1].data[0] != 0.0f;

	if (active) {
		if (!node->aux[0].data || iap_tensor_numel(&node->aux[0]) != n)
			return iap_error_set(ctx->err, IAP_EINVAL,
					     "dropout '%s': gradient without a matching forward pass",
					     node->name ? node->name : "");
		const float *mask = node->aux[0].data;
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
		for (int64_t i = 0; i < n; i++)
			dx[i] += dy[i] * mask[i];
	} else {
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
		for (int64_t i = 0; i < n; i++)
			dx[i] += dy[i];
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_dropout = {
	.kind = IAP_OP_DROPOUT,
	.forward = dropout_forward,
	.backward = dropout_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_dropout(struct iap_graph *g, const char *name, int in, float p)
{
	int64_t shp[IAP_MAX_DIMS];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (!(p >= 0.0f && p <= 1.0f))
		return iap_graph_fail(g, IAP_EINVAL, "%s: dropout probability has to be in [0, 1], got %g",
				      name ? name : "", (double)p);

	int id = iap_graph_add_node(g, &iap_op_dropout, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->attr.dropout.p = p;
	n->out_ndim = nd;
	for (int d = 0; d < nd; d++)
		n->out_shape[d] = shp[d];
	return id;
}
