/*
 * iaprune — elementwise a + b of equal shapes (residual connections).
 * The gradient reaches both inputs unchanged.
 */
#include "config.h"

#include <stdint.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "fused.h"
#include "parallel.h"

/* The forward; relu_out, when not NULL, also gets relu(out) in the same pass (fused.h). */
static int add_forward_into(struct iap_node *node, const struct iap_tensor *const in[],
			    struct iap_tensor *out, struct iap_tensor *relu_out, struct iap_error *err)
{
	int64_t n = iap_tensor_numel(out);
	if (iap_tensor_numel(in[0]) != n || iap_tensor_numel(in[1]) != n)
		return iap_error_set(err, IAP_ESHAPE, "add '%s': input sizes do not match the output",
				     node->name ? node->name : "");
	const float *a = in[0]->data;
	const float *b = in[1]->data;
	float *y = out->data;
	float *z = relu_out ? relu_out->data : NULL;

	if (!z) {
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
		for (int64_t i = 0; i < n; i++)
			y[i] = a[i] + b[i];
		return IAP_OK;
	}
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++) {
		float v = a[i] + b[i];

		y[i] = v;
		z[i] = iap_relu1(v);
	}
	return IAP_OK;
}

static int add_forward(struct iap_graph *g, struct iap_node *node,
		       const struct iap_tensor *const in[], struct iap_tensor *out,
		       struct iap_error *err)
{
	(void)g;
	return add_forward_into(node, in, out, NULL, err);
}

int iap_add_forward_relu(struct iap_graph *g, struct iap_node *node,
			 const struct iap_tensor *const in[], struct iap_tensor *out,
			 struct iap_tensor *relu_out, struct iap_error *err)
{
	(void)g;
	return add_forward_into(node, in, out, relu_out, err);
}

static int add_backward(struct iap_rule_ctx *ctx)
{
	const float *dy = ctx->r_out->data;
	int64_t n = iap_tensor_numel(ctx->r_out);

	for (int k = 0; k < 2; k++) {
		if (!ctx->r_in[k])
			continue;
		if (iap_tensor_numel(ctx->r_in[k]) != n)
			return iap_error_set(ctx->err, IAP_ESHAPE,
					     "add '%s': gradient size does not match input %d",
					     ctx->node->name ? ctx->node->name : "", k);
		float *dx = ctx->r_in[k]->data;
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
		for (int64_t i = 0; i < n; i++)
			dx[i] += dy[i];
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_add = {
	.kind = IAP_OP_ADD,
	.forward = add_forward,
	.backward = add_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_add(struct iap_graph *g, const char *name, int a, int b)
{
	int64_t sa[IAP_MAX_DIMS], sb[IAP_MAX_DIMS];
	int na = iap_graph_sample_shape(g, a, sa);
	if (na < 0)
		return -1;
	int nb = iap_graph_sample_shape(g, b, sb);
	if (nb < 0)
		return -1;

	int same = na == nb;
	for (int d = 0; same && d < na; d++)
		same = sa[d] == sb[d];
	if (!same) {
		char bufa[96], bufb[96];
		return iap_graph_fail(g, IAP_ESHAPE, "%s: add expects equal shapes, got %s and %s",
				      name ? name : "", iap_shape_str(na, sa, bufa, sizeof(bufa)),
				      iap_shape_str(nb, sb, bufb, sizeof(bufb)));
	}

	int inputs[2] = { a, b };
	int id = iap_graph_add_node(g, &iap_op_add, name, 2, inputs);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->out_ndim = na;
	for (int d = 0; d < na; d++)
		n->out_shape[d] = sa[d];
	return id;
}
