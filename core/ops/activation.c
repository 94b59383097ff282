/*
 * iaprune — pointwise activations: ReLU and GELU (exact erf form).
 *
 * Both keep nothing in aux: their gradients only need the forward input,
 * which the walk hands to the rule in ctx->in[0].
 */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "parallel.h"

/* Append a shape-preserving one-input node; shared by relu and gelu. */
static int pointwise_build(struct iap_graph *g, const struct iap_op_ops *ops,
			   const char *name, int in)
{
	int64_t shp[IAP_MAX_DIMS];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	int id = iap_graph_add_node(g, ops, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->out_ndim = nd;
	for (int d = 0; d < nd; d++)
		n->out_shape[d] = shp[d];
	return id;
}

/* The walk promises r_out and r_in[0] have the input's shape; check it anyway. */
static int pointwise_check(struct iap_rule_ctx *ctx, const char *op)
{
	if (iap_tensor_numel(ctx->r_out) != iap_tensor_numel(ctx->in[0]) ||
	    iap_tensor_numel(ctx->r_in[0]) != iap_tensor_numel(ctx->in[0]))
		return iap_error_set(ctx->err, IAP_ESHAPE, "%s '%s': gradient size does not match input",
				     op, ctx->node->name ? ctx->node->name : "");
	return IAP_OK;
}

/* ---- relu ------------------------------------------------------------------ */

static int relu_forward(struct iap_graph *g, struct iap_node *node,
			const struct iap_tensor *const in[], struct iap_tensor *out,
			struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)err;
	const float *x = in[0]->data;
	float *y = out->data;
	int64_t n = iap_tensor_numel(in[0]);

#pragma omp parallel for schedule(static) if(n > IAP_OMP_MIN)
	for (int64_t i = 0; i < n; i++)
		y[i] = (x[i] > 0.0f || x[i] != x[i]) ? x[i] : 0.0f; /* NaN propagates, as in PyTorch */
	return IAP_OK;
}

/* PyTorch's relu gradient is 0 at x == 0 (threshold_backward uses x > 0). */
static int relu_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0])
		return IAP_OK;
	int rc = pointwise_check(ctx, "relu");
	if (rc)
		return rc;
	const float *x = ctx->in[0]->data;
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0]->data;
	int64_t n = iap_tensor_numel(ctx->in[0]);

#pragma omp parallel for schedule(static) if(n > IAP_OMP_MIN)
	for (int64_t i = 0; i < n; i++)
		if (x[i] > 0.0f)
			dx[i] += dy[i];
	return IAP_OK;
}

const struct iap_op_ops iap_op_relu = {
	.kind = IAP_OP_RELU,
	.forward = relu_forward,
	.backward = relu_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_relu(struct iap_graph *g, const char *name, int in)
{
	return pointwise_build(g, &iap_op_relu, name, in);
}

/* ---- gelu ------------------------------------------------------------------ */

/*
 * GELU(x) = x·Φ(x) = 0.5·x·(1 + erf(x/√2)), evaluated in double: erff loses
 * relative accuracy in the far negative tail, where the product is tiny but
 * still matters for the gradient check.
 */
static int gelu_forward(struct iap_graph *g, struct iap_node *node,
			const struct iap_tensor *const in[], struct iap_tensor *out,
			struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)err;
	const float *x = in[0]->data;
	float *y = out->data;
	int64_t n = iap_tensor_numel(in[0]);

#pragma omp parallel for schedule(static) if(n > IAP_OMP_MIN)
	for (int64_t i = 0; i < n; i++) {
		double v = x[i];
		y[i] = (float)(0.5 * v * (1.0 + erf(v * M_SQRT1_2)));
	}
	return IAP_OK;
}

/* d/dx x·Φ(x) = Φ(x) + x·φ(x), φ the standard normal density. */
static int gelu_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0])
		return IAP_OK;
	int rc = pointwise_check(ctx, "gelu");
	if (rc)
		return rc;
	const float *x = ctx->in[0]->data;
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0]->data;
	int64_t n = iap_tensor_numel(ctx->in[0]);
	const double inv_sqrt_2pi = 0.5 * M_2_SQRTPI * M_SQRT1_2;  /* 1/√(2π) */

#pragma omp parallel for schedule(static) if(n > IAP_OMP_MIN)
	for (int64_t i = 0; i < n; i++) {
		double v = x[i];
		double cdf = 0.5 * (1.0 + erf(v * M_SQRT1_2));
		double pdf = inv_sqrt_2pi * exp(-0.5 * v * v);
		dx[i] += (float)((double)dy[i] * (cdf + v * pdf));
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_gelu = {
	.kind = IAP_OP_GELU,
	.forward = gelu_forward,
	.backward = gelu_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_gelu(struct iap_graph *g, const char *name, int in)
{
	return pointwise_build(g, &iap_op_gelu, name, in);
}
