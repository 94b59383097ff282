/*
 * iaprune — the token-sequence ops of torchvision's VisionTransformer:
 *
 *   tokens        conv output N×D×h×w → N×(h·w)×D
 *                 (x.reshape(n, D, h*w).permute(0, 2, 1) in _process_input)
 *   class_token   N×T×D → N×(T+1)×D, learned [1, 1, D] token prepended
 *   pos_embed     N×T×D + learned [1, T, D] (Encoder.pos_embedding)
 *   token_select  N×T×D → N×D, one token (x[:, 0]: the class token)
 *
 * and the patch-embedding builder (conv k = s = patch, then tokens).
 *
 * All four are pure index maps or additions: their gradients route r_out back
 * through the same map, and none needs anything saved in aux.
 */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "parallel.h"

/* Node name for messages (builders always store a string, maybe ""). */
static const char *node_label(const struct iap_node *n)
{
	return n->name ? n->name : "";
}

/* The walk hands r_out shaped like the output; refuse anything else rather than read past it. */
static int check_r_out(struct iap_rule_ctx *ctx, const char *op)
{
	if (iap_tensor_numel(ctx->r_out) != iap_tensor_numel(ctx->out))
		return iap_error_set(ctx->err, IAP_ESHAPE, "%s '%s': gradient size does not match output",
				     op, node_label(ctx->node));
	return IAP_OK;
}

/* ---- tokens ---------------------------------------------------------------- */

static int tokens_forward(struct iap_graph *g, struct iap_node *node,
			  const struct iap_tensor *const in[], struct iap_tensor *out,
			  struct iap_error *err)
{
	(void)g;
	(void)node;
	(void)err;
	const int64_t n_batch = in[0]->shape[0], dim = in[0]->shape[1];
	const int64_t hw = in[0]->shape[2] * in[0]->shape[3];
	const float *x = in[0]->data;
	float *y = out->data;
	const int64_t rows = n_batch * hw;

	/* One output row (token) per iteration: writes are contiguous, reads strided by h·w. */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(rows * dim)))
	for (int64_t r = 0; r < rows; r++) {
		const int64_t n = r / hw, p = r % hw;
		const float *src = x + n * dim * hw + p;
		float *dst = y + r * dim;

		for (int64_t d = 0; d < dim; d++)
			dst[d] = src[d * hw];
	}
	return IAP_OK;
}

/* r_in[n, d, p] += r_out[n, p, d]: the inverse permutation. */
static int tokens_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0])
		return IAP_OK;
	int rc = check_r_out(ctx, "tokens");
	if (rc)
		return rc;
	const struct iap_tensor *x = ctx->in[0];
	const int64_t n_batch = x->shape[0], dim = x->shape[1];
	const int64_t hw = x->shape[2] * x->shape[3];
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0]->data;
	const int64_t rows = n_batch * dim;

	/* One input channel row per iteration, so no two threads touch the same dx. */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(rows * hw)))
	for (int64_t r = 0; r < rows; r++) {
		const int64_t n = r / dim, d = r % dim;
		const float *src = dy + n * hw * dim + d;
		float *dst = dx + r * hw;

		for (int64_t p = 0; p < hw; p++)
			dst[p] += src[p * dim];
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_tokens = {
	.kind = IAP_OP_TOKENS,
	.forward = tokens_forward,
	.backward = tokens_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_tokens(struct iap_graph *g, const char *name, int in)
{
	int64_t shp[IAP_MAX_DIMS];
	char buf[96];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 3)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: tokens needs a D x h x w input, got %s",
				      name ? name : "", iap_shape_str(nd, shp, buf, sizeof(buf)));
	int id = iap_graph_add_node(g, &iap_op_tokens, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->out_ndim = 2;
	n->out_shape[0] = shp[1] * shp[2];
	n->out_shape[1] = shp[0];
	return id;
}

/* ---- class_token ----------------------------------------------------------- */

static int class_token_forward(struct iap_graph *g, struct iap_node *node,
			       const struct iap_tensor *const in[], struct iap_tensor *out,
			       struct iap_error *err)
{
	(void)g;
	(void)err;
	const int64_t n_batch = in[0]->shape[0], t = in[0]->shape[1], dim = in[0]->shape[2];
	const float *cls = node->params[0].value.data;

	for (int64_t n = 0; n < n_batch; n++) {
		float *dst = out->data + n * (t + 1) * dim;

		memcpy(dst, cls, (size_t)dim * sizeof(float));
		memcpy(dst + dim, in[0]->data + n * t * dim, (size_t)(t * dim) * sizeof(float));
	}
	return IAP_OK;
}

/* r_in gets rows 1..T of r_out; the token's gradient is row 0 summed over the batch. */
static int class_token_backward(struct iap_rule_ctx *ctx)
{
	int rc = check_r_out(ctx, "class_token");
	if (rc)
		return rc;
	const struct iap_tensor *x = ctx->in[0];
	const int64_t n_batch = x->shape[0], t = x->shape[1], dim = x->shape[2];
	const float *dy = ctx->r_out->data;
	struct iap_param *p = &ctx->node->params[0];

	if (ctx->r_in[0]) {
		float *dx = ctx->r_in[0]->data;

		for (int64_t n = 0; n < n_batch; n++) {
			const float *src = dy + n * (t + 1) * dim + dim;
			float *dst = dx + n * t * dim;

			for (int64_t i = 0; i < t * dim; i++)
				dst[i] += src[i];
		}
	}
	if (ctx->want_param_grads && (p->flags & IAP_PARAM_TRAINABLE) && p->grad.data) {
		for (int64_t n = 0; n < n_batch; n++) {
			const float *src = dy + n * (t + 1) * dim;

			for (int64_t d = 0; d < dim; d++)
				p->grad.data[d] += src[d];
		}
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_class_token = {
	.kind = IAP_OP_CLASS_TOKEN,
	.forward = class_token_forward,
	.backward = class_token_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_class_token(struct iap_graph *g, const char *name, const char *key, int in)
{
	int64_t shp[IAP_MAX_DIMS];
	char buf[96];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 2)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: class_token needs a T x D input, got %s",
				      name ? name : "", iap_shape_str(nd, shp, buf, sizeof(buf)));
	if (!key || !key[0])
		return iap_graph_fail(g, IAP_EINVAL, "%s: class_token needs a parameter key",
				      name ? name : "");
	int id = iap_graph_add_node(g, &iap_op_class_token, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->out_ndim = 2;
	n->out_shape[0] = shp[0] + 1;
	n->out_shape[1] = shp[1];
	const int64_t pshape[3] = { 1, 1, shp[1] };
	if (iap_graph_add_param(g, id, key, 3, pshape, IAP_PARAM_TRAINABLE) < 0)
		return -1;
	return id;
}

/* ---- pos_embed ------------------------------------------------------------- */

static int pos_embed_forward(struct iap_graph *g, struct iap_node *node,
			     const struct iap_tensor *const in[], struct iap_tensor *out,
			     struct iap_error *err)
{
	(void)g;
	(void)err;
	const int64_t per = iap_tensor_numel(&node->params[0].value);
	const int64_t total = iap_tensor_numel(in[0]);
	const float *x = in[0]->data, *pos = node->params[0].value.data;
	float *y = out->data;

	/* Sample by sample, so the embedding index is the loop index (no modulo per element). */
	for (int64_t off = 0; off < total; off += per) {
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(per)))
		for (int64_t i = 0; i < per; i++)
			y[off + i] = x[off + i] + pos[i];
	}
	return IAP_OK;
}

/* An addition: r_in += r_out; the embedding's gradient is r_out summed over the batch. */
static int pos_embed_backward(struct iap_rule_ctx *ctx)
{
	int rc = check_r_out(ctx, "pos_embed");
	if (rc)
		return rc;
	struct iap_param *p = &ctx->node->params[0];
	const int64_t per = iap_tensor_numel(&p->value);
	const int64_t total = iap_tensor_numel(ctx->in[0]);
	const float *dy = ctx->r_out->data;

	if (ctx->r_in[0]) {
		float *dx = ctx->r_in[0]->data;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
		for (int64_t i = 0; i < total; i++)
			dx[i] += dy[i];
	}
	if (ctx->want_param_grads && (p->flags & IAP_PARAM_TRAINABLE) && p->grad.data) {
		float *dp = p->grad.data;

		/* Parallel over embedding positions; each thread sums its column of samples. */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
		for (int64_t i = 0; i < per; i++) {
			float s = 0.0f;

			for (int64_t j = i; j < total; j += per)
				s += dy[j];
			dp[i] += s;
		}
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_pos_embed = {
	.kind = IAP_OP_POS_EMBED,
	.forward = pos_embed_forward,
	.backward = pos_embed_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_pos_embed(struct iap_graph *g, const char *name, const char *key, int in)
{
	int64_t shp[IAP_MAX_DIMS];
	char buf[96];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 2)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: pos_embed needs a T x D input, got %s",
				      name ? name : "", iap_shape_str(nd, shp, buf, sizeof(buf)));
	if (!key || !key[0])
		return iap_graph_fail(g, IAP_EINVAL, "%s: pos_embed needs a parameter key",
				      name ? name : "");
	int id = iap_graph_add_node(g, &iap_op_pos_embed, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->out_ndim = 2;
	n->out_shape[0] = shp[0];
	n->out_shape[1] = shp[1];
	const int64_t pshape[3] = { 1, shp[0], shp[1] };
	if (iap_graph_add_param(g, id, key, 3, pshape, IAP_PARAM_TRAINABLE) < 0)
		return -1;
	return id;
}

/* ---- token_select ---------------------------------------------------------- */

static int token_select_forward(struct iap_graph *g, struct iap_node *node,
				const struct iap_tensor *const in[], struct iap_tensor *out,
				struct iap_error *err)
{
	(void)g;
	(void)err;
	const int64_t n_batch = in[0]->shape[0], t = in[0]->shape[1], dim = in[0]->shape[2];
	const int64_t idx = node->attr.select.index;

	for (int64_t n = 0; n < n_batch; n++)
		memcpy(out->data + n * dim, in[0]->data + (n * t + idx) * dim,
		       (size_t)dim * sizeof(float));
	return IAP_OK;
}

/* Only the selected token receives anything; the others get nothing from this node. */
static int token_select_backward(struct iap_rule_ctx *ctx)
{
	if (!ctx->r_in[0])
		return IAP_OK;
	int rc = check_r_out(ctx, "token_select");
	if (rc)
		return rc;
	const struct iap_tensor *x = ctx->in[0];
	const int64_t n_batch = x->shape[0], t = x->shape[1], dim = x->shape[2];
	const int64_t idx = ctx->node->attr.select.index;
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0]->data;

	for (int64_t n = 0; n < n_batch; n++) {
		float *dst = dx + (n * t + idx) * dim;
		const float *src = dy + n * dim;

		for (int64_t d = 0; d < dim; d++)
			dst[d] += src[d];
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_token_select = {
	.kind = IAP_OP_TOKEN_SELECT,
	.forward = token_select_forward,
	.backward = token_select_backward,
	.workspace = NULL,
	.macs = NULL,
};

/* index may be negative and then counts from the end, as in x[:, -1]. */
int iap_token_select(struct iap_graph *g, const char *name, int in, int index)
{
	int64_t shp[IAP_MAX_DIMS];
	char buf[96];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 2)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: token_select needs a T x D input, got %s",
				      name ? name : "", iap_shape_str(nd, shp, buf, sizeof(buf)));
	int64_t idx = index < 0 ? shp[0] + index : index;
	if (idx < 0 || idx >= shp[0])
		return iap_graph_fail(g, IAP_EINVAL, "%s: token index %d is out of range for %lld tokens",
				      name ? name : "", index, (long long)shp[0]);
	int id = iap_graph_add_node(g, &iap_op_token_select, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->attr.select.index = (int)idx;
	n->out_ndim = 1;
	n->out_shape[0] = shp[1];
	return id;
}

/* ---- patch embedding ------------------------------------------------------- */

/*
 * torchvision's conv_proj (Conv2d(3, D, kernel_size=patch, stride=patch)) and
 * the reshape/permute of _process_input. The tokens node carries the conv's
 * name too (it has no parameters), so messages name the module.
 */
int iap_patch_embed(struct iap_graph *g, const char *name, int in, int dim, int patch)
{
	int64_t shp[IAP_MAX_DIMS];
	char buf[96];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 3)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: patch embedding needs a C x H x W input, got %s",
				      name ? name : "", iap_shape_str(nd, shp, buf, sizeof(buf)));
	if (dim <= 0 || patch <= 0)
		return iap_graph_fail(g, IAP_EINVAL, "%s: patch embedding width %d and patch %d must be positive",
				      name ? name : "", dim, patch);
	/* torchvision asserts the image divides into whole patches. */
	if (shp[1] % patch || shp[2] % patch)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: image %s does not divide into %dx%d patches",
				      name ? name : "", iap_shape_str(nd, shp, buf, sizeof(buf)),
				      patch, patch);
	int conv = iap_conv2d(g, name, in, dim, patch, patch, patch, patch, 0, 0, 1);
	if (conv < 0)
		return -1;
	return iap_tokens(g, name, conv);
}
