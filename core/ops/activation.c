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

#include "fused.h"
#include "parallel.h"
#include "vmath.h"

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

	/* iap_relu1 (fused.h): NaN kept, no branch; the fused kernels use it too. */
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		y[i] = iap_relu1(x[i]);
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

#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		dx[i] += x[i] > 0.0f ? dy[i] : 0.0f; /* no branch, as in the forward */
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
 * GELU(x) = x·Φ(x), Φ the standard normal CDF (PyTorch's exact, erf form).
 * Φ comes from iap_vnormcdf, which keeps its relative accuracy in the far
 * negative tail, where x·Φ(x) is tiny but still matters for the gradient.
 * The loops run in chunks so that each chunk is one vector kernel call and
 * only very large tensors are split across threads (parallel.h).
 */
#define GELU_CHUNK 65536

IAP_VEC_CLONES
static void gelu_range(const float *restrict x, float *restrict y, int64_t n)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++)
		y[i] = x[i] * iap_vnormcdf(x[i]);
}

/* d/dx x·Φ(x) = Φ(x) + x·φ(x), φ(x) = e^(−x²/2)/√(2π) the standard normal density. */
IAP_VEC_CLONES
static void gelu_grad_range(const float *restrict x, const float *restrict dy, float *restrict dx,
			    int64_t n)
{
#pragma omp simd
	for (int64_t i = 0; i < n; i++) {
		float v = x[i];
		float pdf = 0.398942280401432678f * iap_vgauss(v, 0.0f);

		dx[i] += dy[i] * (iap_vnormcdf(v) + v * pdf);
	}
}

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
	int64_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t c = 0; c < chunks; c++) {
		int64_t i0 = c * GELU_CHUNK, len = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;

		gelu_range(x + i0, y + i0, len);
	}
	return IAP_OK;
}

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
	int64_t chunks = (n + GELU_CHUNK - 1) / GELU_CHUNK;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t c = 0; c < chunks; c++) {
		int64_t i0 = c * GELU_CHUNK, len = n - i0 < GELU_CHUNK ? n - i0 : GELU_CHUNK;

		gelu_grad_range(x + i0, dy + i0, dx + i0, len);
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
