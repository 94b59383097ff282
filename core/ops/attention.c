/*
 * iaprune — multi-head self-attention as torch.nn.MultiheadAttention computes
 * it (batch_first, self-attention, no dropout, need_weights=False):
 *
 *   qkv     = x · in_proj_weightᵀ + in_proj_bias            (linear, N×T×3D)
 *   scores  = q_h · k_hᵀ / √dh  per head                     (attn_scores, N×H×T×T)
 *   weights = softmax(scores) over keys                      (softmax node)
 *   context = weights_h · v_h, heads concatenated            (attn_context, N×T×D)
 *   out     = out_proj(context)                              (linear)
 *
 * q, k and v are read in place from the packed qkv rows through the GEMM
 * leading dimension (3D): head h of q is the T×dh block at column h·dh, of k
 * at D + h·dh, of v at 2D + h·dh. Nothing is copied and nothing saved in aux:
 * the gradients need only the forward inputs the walk hands back.
 *
 * The softmax stays a node of its own so that its output, the attention
 * weights, is where model plugins declare head units and rules see it.
 */
#include "config.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include <iaprune/blas.h>
#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/threads.h>

/* Dimensions of one attention node at the current batch. */
struct attn_dims {
	int64_t n;      /* batch */
	int t;          /* tokens */
	int d;          /* model width */
	int h;          /* heads */
	int dh;         /* head width */
};

static const char *node_label(const struct iap_node *n)
{
	return n->name ? n->name : "";
}

static void attn_dims_get(struct attn_dims *a, const struct iap_node *node,
			  const struct iap_tensor *qkv)
{
	a->n = qkv->shape[0];
	a->t = (int)qkv->shape[1];
	a->d = node->attr.attn.dim;
	a->h = node->attr.attn.num_heads;
	a->dh = a->d / a->h;
}

/*
 * Check a packed qkv sample shape T×3D against num_heads and fill D. The GEMMs
 * take int sizes and strides, so everything must fit an int.
 */
static int check_qkv(struct iap_graph *g, const char *op, const char *name, int ndim,
		     const int64_t *shp, int num_heads, int *dim)
{
	char buf[96];

	if (ndim != 2 || shp[1] % 3 != 0)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: %s needs packed qkv T x 3D, got %s",
				      name, op, iap_shape_str(ndim, shp, buf, sizeof(buf)));
	if (shp[0] > INT_MAX || shp[1] > INT_MAX)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: %s input %s is too large",
				      name, op, iap_shape_str(ndim, shp, buf, sizeof(buf)));
	if (num_heads <= 0 || (shp[1] / 3) % num_heads != 0)
		return iap_graph_fail(g, IAP_EINVAL, "%s: width %lld does not split into %d heads",
				      name, (long long)(shp[1] / 3), num_heads);
	*dim = (int)(shp[1] / 3);
	return 0;
}

/* Flops of one pass of either attention product over all samples and heads: 2·n·h·t²·dh. */
#define ATTN_FLOPS(a) (2.0 * (double)(a).n * (a).h * (double)(a).t * (a).t * (a).dh)

/* ---- attn_scores ------------------------------------------------------------ */

/*
 * Per (sample, head): S = (1/√dh) · Q_h · K_hᵀ, with Q_h and K_h read from the
 * packed rows (ld 3D). PyTorch scales q before the product; scaling the
 * product instead differs only by rounding.
 */
static int attn_scores_forward(struct iap_graph *g, struct iap_node *node,
			       const struct iap_tensor *const in[], struct iap_tensor *out,
			       struct iap_error *err)
{
	(void)g;
	(void)err;
	struct attn_dims a;

	attn_dims_get(&a, node, in[0]);
	const int ld = 3 * a.d;
	const float scale = (float)(1.0 / sqrt((double)a.dh));

	/* Heads are independent products into disjoint outputs: one per thread, OpenBLAS serial inside. */
#pragma omp parallel for schedule(static) num_threads(iap_par_threads(ATTN_FLOPS(a), IAP_GEMM_GRAIN))
	for (int64_t nh = 0; nh < a.n * a.h; nh++) {
		const int64_t n = nh / a.h;
		const int h = (int)(nh % a.h);
		const float *base = in[0]->data + n * a.t * ld;

		const float *q = base + h * a.dh;
		const float *k = base + a.d + h * a.dh;
		float *s = out->data + (n * a.h + h) * a.t * a.t;

		iap_sgemm(0, 1, a.t, a.t, a.dh,
			    scale, q, ld, k, ld, 0.0f, s, a.t);
	}
	return IAP_OK;
}

/*
 * dQ_h += scale · dS · K_h and dK_h += scale · dSᵀ · Q_h; the v columns get
 * nothing from this node (their gradient comes through attn_context).
 */
static int attn_scores_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0])
		return IAP_OK;
	if (iap_tensor_numel(ctx->r_out) != iap_tensor_numel(ctx->out) ||
	    iap_tensor_numel(ctx->r_in[0]) != iap_tensor_numel(ctx->in[0]))
		return iap_error_set(ctx->err, IAP_ESHAPE, "attn_scores '%s': gradient size does not match",
				     node_label(ctx->node));
	struct attn_dims a;

	attn_dims_get(&a, ctx->node, ctx->in[0]);
	const int ld = 3 * a.d;
	const float scale = (float)(1.0 / sqrt((double)a.dh));

	/* Heads are independent products into disjoint outputs: one per thread, OpenBLAS serial inside. */
#pragma omp parallel for schedule(static) num_threads(iap_par_threads(ATTN_FLOPS(a), IAP_GEMM_GRAIN))
	for (int64_t nh = 0; nh < a.n * a.h; nh++) {
		const int64_t n = nh / a.h;
		const int h = (int)(nh % a.h);
		const float *base = ctx->in[0]->data + n * a.t * ld;
		float *dbase = ctx->r_in[0]->data + n * a.t * ld;

		const float *ds = ctx->r_out->data + (n * a.h + h) * a.t * a.t;
		const float *q = base + h * a.dh;
		const float *k = base + a.d + h * a.dh;

		iap_sgemm(0, 0, a.t, a.dh, a.t,
			    scale, ds, a.t, k, ld, 1.0f, dbase + h * a.dh, ld);
		iap_sgemm(1, 0, a.t, a.dh, a.t,
			    scale, ds, a.t, q, ld, 1.0f, dbase + a.d + h * a.dh, ld);
	}
	return IAP_OK;
}

/* T·T·D multiply-accumulates per sample: each head is a T×T×dh product. */
static uint64_t attn_scores_macs(const struct iap_graph *g, const struct iap_node *node)
{
	(void)g;
	const uint64_t t = (uint64_t)node->out_shape[1];

	return t * t * (uint64_t)node->attr.attn.dim;
}

const struct iap_op_ops iap_op_attn_scores = {
	.kind = IAP_OP_ATTN_SCORES,
	.forward = attn_scores_forward,
	.backward = attn_scores_backward,
	.workspace = NULL,
	.macs = attn_scores_macs,
};

int iap_attn_scores(struct iap_graph *g, const char *name, int qkv, int num_heads)
{
	int64_t shp[IAP_MAX_DIMS];
	int dim;
	int nd = iap_graph_sample_shape(g, qkv, shp);
	if (nd < 0)
		return -1;
	if (check_qkv(g, "attn_scores", name ? name : "", nd, shp, num_heads, &dim))
		return -1;
	int id = iap_graph_add_node(g, &iap_op_attn_scores, name, 1, &qkv);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->attr.attn.dim = dim;
	n->attr.attn.num_heads = num_heads;
	n->out_ndim = 3;
	n->out_shape[0] = num_heads;
	n->out_shape[1] = shp[0];
	n->out_shape[2] = shp[0];
	return id;
}

/* ---- attn_context ----------------------------------------------------------- */

/* Per (sample, head): C[:, h·dh : (h+1)·dh] = W_h · V_h (C has ld D, V ld 3D). */
static int attn_context_forward(struct iap_graph *g, struct iap_node *node,
				const struct iap_tensor *const in[], struct iap_tensor *out,
				struct iap_error *err)
{
	(void)g;
	(void)err;
	struct attn_dims a;

	attn_dims_get(&a, node, in[1]);
	const int ld = 3 * a.d;

	/* Heads are independent products into disjoint outputs: one per thread, OpenBLAS serial inside. */
#pragma omp parallel for schedule(static) num_threads(iap_par_threads(ATTN_FLOPS(a), IAP_GEMM_GRAIN))
	for (int64_t nh = 0; nh < a.n * a.h; nh++) {
		const int64_t n = nh / a.h;
		const int h = (int)(nh % a.h);
		const float *v = in[1]->data + n * a.t * ld + 2 * a.d;
		float *c = out->data + n * a.t * a.d;

		const float *w = in[0]->data + (n * a.h + h) * a.t * a.t;

		iap_sgemm(0, 0, a.t, a.dh, a.t,
			    1.0f, w, a.t, v + h * a.dh, ld, 0.0f, c + h * a.dh, a.d);
	}
	return IAP_OK;
}

/*
 * dW_h += dC_h · V_hᵀ into the weights' gradient, dV_h += W_hᵀ · dC_h into the
 * v columns of the qkv gradient; q and k columns get nothing from this node.
 */
static int attn_context_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0] && !ctx->r_in[1])
		return IAP_OK;
	if (iap_tensor_numel(ctx->r_out) != iap_tensor_numel(ctx->out) ||
	    (ctx->r_in[0] && iap_tensor_numel(ctx->r_in[0]) != iap_tensor_numel(ctx->in[0])) ||
	    (ctx->r_in[1] && iap_tensor_numel(ctx->r_in[1]) != iap_tensor_numel(ctx->in[1])))
		return iap_error_set(ctx->err, IAP_ESHAPE, "attn_context '%s': gradient size does not match",
				     node_label(ctx->node));
	struct attn_dims a;

	attn_dims_get(&a, ctx->node, ctx->in[1]);
	const int ld = 3 * a.d;

	/* Heads are independent products into disjoint outputs: one per thread, OpenBLAS serial inside. */
#pragma omp parallel for schedule(static) num_threads(iap_par_threads(ATTN_FLOPS(a), IAP_GEMM_GRAIN))
	for (int64_t nh = 0; nh < a.n * a.h; nh++) {
		const int64_t n = nh / a.h;
		const int h = (int)(nh % a.h);
		const float *v = ctx->in[1]->data + n * a.t * ld + 2 * a.d;
		const float *dc = ctx->r_out->data + n * a.t * a.d;

		const int64_t woff = (n * a.h + h) * a.t * a.t;

		if (ctx->r_in[0])
			iap_sgemm(0, 1, a.t, a.t, a.dh,
				    1.0f, dc + h * a.dh, a.d, v + h * a.dh, ld, 1.0f,
				    ctx->r_in[0]->data + woff, a.t);
		if (ctx->r_in[1]) {
			float *dv = ctx->r_in[1]->data + n * a.t * ld + 2 * a.d;

			iap_sgemm(1, 0, a.t, a.dh, a.t,
				    1.0f, ctx->in[0]->data + woff, a.t, dc + h * a.dh, a.d,
				    1.0f, dv + h * a.dh, ld);
		}
	}
	return IAP_OK;
}

/* T·T·D multiply-accumulates per sample, like the scores. */
static uint64_t attn_context_macs(const struct iap_graph *g, const struct iap_node *node)
{
	(void)g;
	const uint64_t t = (uint64_t)node->out_shape[0];

	return t * t * (uint64_t)node->attr.attn.dim;
}

const struct iap_op_ops iap_op_attn_context = {
	.kind = IAP_OP_ATTN_CONTEXT,
	.forward = attn_context_forward,
	.backward = attn_context_backward,
	.workspace = NULL,
	.macs = attn_context_macs,
};

int iap_attn_context(struct iap_graph *g, const char *name, int weights, int qkv, int num_heads)
{
	int64_t wshp[IAP_MAX_DIMS], shp[IAP_MAX_DIMS];
	char buf[96];
	int dim;
	const char *label = name ? name : "";
	int wnd = iap_graph_sample_shape(g, weights, wshp);
	if (wnd < 0)
		return -1;
	int nd = iap_graph_sample_shape(g, qkv, shp);
	if (nd < 0)
		return -1;
	if (check_qkv(g, "attn_context", label, nd, shp, num_heads, &dim))
		return -1;
	if (wnd != 3 || wshp[0] != num_heads || wshp[1] != shp[0] || wshp[2] != shp[0])
		return iap_graph_fail(g, IAP_ESHAPE,
				      "%s: attention weights must be %d x %lld x %lld for qkv %lld x %lld, got %s",
				      label, num_heads, (long long)shp[0], (long long)shp[0],
				      (long long)shp[0], (long long)shp[1],
				      iap_shape_str(wnd, wshp, buf, sizeof(buf)));
	const int inputs[2] = { weights, qkv };
	int id = iap_graph_add_node(g, &iap_op_attn_context, name, 2, inputs);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->attr.attn.dim = dim;
	n->attr.attn.num_heads = num_heads;
	n->out_ndim = 2;
	n->out_shape[0] = shp[0];
	n->out_shape[1] = dim;
	return id;
}

/* ---- multi-head attention --------------------------------------------------- */

/*
 * Give node id's parameter "<name>.<from>" the key "<name>.<to>" (the packed
 * projection is a linear node, but torch stores its tensors on the
 * MultiheadAttention module as in_proj_weight / in_proj_bias).
 */
static int rename_param(struct iap_graph *g, int id, const char *name, const char *from,
			const char *to)
{
	struct iap_node *n = &g->nodes[id];
	size_t len = strlen(name) + strlen(to) + 2;
	char *key;

	for (int k = 0; k < n->n_params; k++) {
		const char *old = n->params[k].key;
		size_t nl = strlen(name);

		if (strncmp(old, name, nl) != 0 || old[nl] != '.' || strcmp(old + nl + 1, from) != 0)
			continue;
		key = malloc(len);
		if (!key)
			return iap_graph_fail(g, IAP_ENOMEM, "%s: out of memory", name);
		snprintf(key, len, "%s.%s", name, to);
		free(n->params[k].key);
		n->params[k].key = key;
		return 0;
	}
	return iap_graph_fail(g, IAP_EINVAL, "%s: projection has no parameter '%s'", name, from);
}

int iap_mha(struct iap_graph *g, const char *name, int in, int num_heads, int *weights_node)
{
	int64_t shp[IAP_MAX_DIMS];
	char buf[96], *out_name;
	const char *label = name ? name : "";
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 2)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: attention needs a T x D input, got %s",
				      label, iap_shape_str(nd, shp, buf, sizeof(buf)));
	if (num_heads <= 0 || shp[1] % num_heads != 0)
		return iap_graph_fail(g, IAP_EINVAL, "%s: width %lld does not split into %d heads",
				      label, (long long)shp[1], num_heads);
	/* The packed keys need a module name to hang on ("in_proj_weight" alone is not torch's). */
	if (!label[0])
		return iap_graph_fail(g, IAP_EINVAL, "multi-head attention needs a module name");
	if (3 * shp[1] > INT_MAX)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: width %lld is too large", label,
				      (long long)shp[1]);
	const int dim = (int)shp[1];

	int qkv = iap_linear(g, label, in, 3 * dim, 1);
	if (qkv < 0)
		return -1;
	if (rename_param(g, qkv, label, "weight", "in_proj_weight") ||
	    rename_param(g, qkv, label, "bias", "in_proj_bias"))
		return -1;
	int scores = iap_attn_scores(g, label, qkv, num_heads);
	if (scores < 0)
		return -1;
	int weights = iap_softmax(g, label, scores);
	if (weights < 0)
		return -1;
	int ctx = iap_attn_context(g, label, weights, qkv, num_heads);
	if (ctx < 0)
		return -1;
	size_t len = strlen(label) + sizeof(".out_proj");
	out_name = malloc(len);
	if (!out_name)
		return iap_graph_fail(g, IAP_ENOMEM, "%s: out of memory", label);
	snprintf(out_name, len, "%s.out_proj", label);
	int out = iap_linear(g, out_name, ctx, dim, 1);
	free(out_name);
	if (out < 0)
		return -1;
	if (weights_node)
		*weights_node = weights;
	return out;
}
