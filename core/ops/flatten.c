/*
 * iaprune — Flatten: [N, d1, d2, ...] → [N, d1·d2·...] (torch.flatten(x, 1)).
 *
 * The output is a copy rather than a view: every node owns its output tensor,
 * and a memcpy is negligible next to the layers around it.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "parallel.h"

static int flatten_forward(struct iap_graph *g, struct iap_node *node,
			   const struct iap_tensor *const in[], struct iap_tensor *out,
			   struct iap_error *err)
{
	(void)g;
	int64_t n = iap_tensor_numel(in[0]);
	if (iap_tensor_numel(out) != n)
		return iap_error_set(err, IAP_ESHAPE, "flatten '%s': output size does not match input",
				     node->name ? node->name : "");
	if (out->data != in[0]->data)
		memcpy(out->data, in[0]->data, (size_t)n * sizeof(*out->data));
	return IAP_OK;
}

/* Same element order on both sides: the gradient is a plain add. */
static int flatten_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0])
		return IAP_OK;
	int64_t n = iap_tensor_numel(ctx->in[0]);
	if (iap_tensor_numel(ctx->r_out) != n || iap_tensor_numel(ctx->r_in[0]) != n)
		return iap_error_set(ctx->err, IAP_ESHAPE, "flatten '%s': gradient size does not match input",
				     ctx->node->name ? ctx->node->name : "");
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0]->data;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		dx[i] += dy[i];
	return IAP_OK;
}

const struct iap_op_ops iap_op_flatten = {
	.kind = IAP_OP_FLATTEN,
	.forward = flatten_forward,
	.backward = flatten_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_flatten(struct iap_graph *g, const char *name, int in)
{
	int64_t shp[IAP_MAX_DIMS];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	int64_t total = 1;
	for (int d = 0; d < nd; d++)
		total *= shp[d];

	int id = iap_graph_add_node(g, &iap_op_flatten, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->out_ndim = 1;
	n->out_shape[0] = total;
	return id;
}
