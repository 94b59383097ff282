/*
 * iaprune — softmax over the last axis: the graph node (attention weights)
 * and iap_softmax_rows, the row kernel that the loss and rule writers share.
 *
 * Numerically stable: each row's maximum is subtracted before exp, and the
 * normaliser is summed in double.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "parallel.h"
#include "vmath.h"

/*
 * One row: max, exponentials and their sum (in double), scale. The
 * exponential is iap_vexpf and the row loops are vector loops: libm's
 * scalar expf was most of the cost of attention's softmax.
 */
IAP_VEC_CLONES
static void softmax_row(const float *xp, float *yp, int64_t cols)
{
	float mx = xp[0];
	double sum = 0.0;
	float inv;

#pragma omp simd reduction(max : mx)
	for (int64_t k = 1; k < cols; k++)
		mx = xp[k] > mx ? xp[k] : mx;
#pragma omp simd reduction(+ : sum)
	for (int64_t k = 0; k < cols; k++) {
		float e = iap_vexpf(xp[k] - mx);

		yp[k] = e;
		sum += e;
	}
	inv = (float)(1.0 / sum);
#pragma omp simd
	for (int64_t k = 0; k < cols; k++)
		yp[k] *= inv;
}

/* in may equal out: each row is read completely (max) before it is written. */
void iap_softmax_rows(const float *in, float *out, int64_t rows, int64_t cols)
{
	if (rows <= 0 || cols <= 0)
		return;
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(rows * cols)))
	for (int64_t r = 0; r < rows; r++)
		softmax_row(in + r * cols, out + r * cols, cols);
}

static int softmax_forward(struct iap_graph *g, struct iap_node *node,
			   const struct iap_tensor *const in[], struct iap_tensor *out,
			   struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)err;
	int64_t cols = in[0]->shape[in[0]->ndim - 1];
	int64_t rows = cols > 0 ? iap_tensor_numel(in[0]) / cols : 0;
	iap_softmax_rows(in[0]->data, out->data, rows, cols);
	return IAP_OK;
}

/* Per row, with s the forward output and g the upstream gradient: dx = s ⊙ (g − Σ s·g). */
static int softmax_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0])
		return IAP_OK;
	const struct iap_tensor *st = ctx->out;
	int64_t total = iap_tensor_numel(st);
	int64_t cols = st->shape[st->ndim - 1];
	int64_t rows = cols > 0 ? total / cols : 0;
	if (iap_tensor_numel(ctx->r_out) != total || iap_tensor_numel(ctx->r_in[0]) != total)
		return iap_error_set(ctx->err, IAP_ESHAPE, "softmax '%s': gradient size does not match",
				     ctx->node->name ? ctx->node->name : "");
	const float *s = st->data;
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0]->data;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
	for (int64_t r = 0; r < rows; r++) {
		const float *sp = s + r * cols;
		const float *gp = dy + r * cols;
		float *dp = dx + r * cols;
		double dot = 0.0;
		for (int64_t k = 0; k < cols; k++)
			dot += (double)sp[k] * gp[k];
		for (int64_t k = 0; k < cols; k++)
			dp[k] += (float)(sp[k] * (gp[k] - dot));
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_softmax = {
	.kind = IAP_OP_SOFTMAX,
	.forward = softmax_forward,
	.backward = softmax_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_softmax(struct iap_graph *g, const char *name, int in)
{
	int64_t shp[IAP_MAX_DIMS];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd < 1 || shp[nd - 1] < 1)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: softmax needs a non-empty last axis",
				      name ? name : "");

	int id = iap_graph_add_node(g, &iap_op_softmax, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->out_ndim = nd;
	for (int d = 0; d < nd; d++)
		n->out_shape[d] = shp[d];
	return id;
}
