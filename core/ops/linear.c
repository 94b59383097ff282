/*
 * linear: torch.nn.Linear over the LAST axis of an input of any rank, so the
 * same op serves a classifier head ([N, in]) and a transformer MLP ([N, T, in]):
 * the input is viewed as rows = numel / in rows of in features, and
 *
 *   y = x · Wᵀ + b        (W is [out][in], as PyTorch stores it)
 *   dx += dy · W,  dW += dyᵀ · x,  db += Σ_rows dy
 *
 * each as one sgemm (rows are split only past INT_MAX, cblas's size type).
 * When the layer's own output units are masked, the forward computes only the
 * kept outputs (the engine zeroes the others right after anyway).
 */
#include "config.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include <iaprune/blas.h>
#include <iaprune/ops.h>

#include "parallel.h"

/* Rows per sgemm call: cblas takes int sizes. */
#define LINEAR_MAX_ROWS ((int64_t)(INT_MAX / 2))

void iap_linear_forward_raw(int64_t rows, int in, int out, const float *x, const float *w,
			    const float *b, float *y)
{
	/* The bias goes in first so the sgemm adds onto it (beta 1): one pass over y. */
	if (b) {
		for (int64_t r = 0; r < rows; r++)
			for (int o = 0; o < out; o++)
				y[r * out + o] = b[o];
	}
	/*
	 * One row (a CNN classifier at batch 1) is a matrix-vector product:
	 * OpenBLAS's sgemm with M = 1 streamed VGG19's 411 MB classifier weight
	 * at a third of sgemv's speed (bench/NOTES.md). Not for a one-row slice
	 * of a larger batch (parallel.h): it sums as the batch's sgemm does.
	 */
	if (rows == 1 && iap_plan_batch(1) == 1) {
		iap_sgemv(0, out, in, 1.0f, w, in, x, b ? 1.0f : 0.0f, y);
		return;
	}
	for (int64_t r0 = 0; r0 < rows; r0 += LINEAR_MAX_ROWS) {
		int m = (int)(rows - r0 < LINEAR_MAX_ROWS ? rows - r0 : LINEAR_MAX_ROWS);

		iap_sgemm(0, 1, m, out, in, 1.0f,
			    x + r0 * in, in, w, in, b ? 1.0f : 0.0f, y + r0 * out, out);
	}
}

void iap_linear_backward_input_raw(int64_t rows, int in, int out, const float *dy,
				   const float *w, float *dx)
{
	if (rows == 1) { /* dx += wᵀ·dy, as in the forward */
		iap_sgemv(1, out, in, 1.0f, w, in, dy, 1.0f, dx);
		return;
	}
	for (int64_t r0 = 0; r0 < rows; r0 += LINEAR_MAX_ROWS) {
		int m = (int)(rows - r0 < LINEAR_MAX_ROWS ? rows - r0 : LINEAR_MAX_ROWS);

		iap_sgemm(0, 0, m, in, out, 1.0f,
			    dy + r0 * out, out, w, in, 1.0f, dx + r0 * in, in);
	}
}

/* dw may be NULL too (only the bias wants a gradient). */
void iap_linear_backward_params_raw(int64_t rows, int in, int out, const float *x,
				    const float *dy, float *dw, float *db)
{
	if (dw && rows == 1) { /* a rank-one update */
		iap_sger(out, in, 1.0f, dy, x, dw, in);
	} else if (dw) {
		for (int64_t r0 = 0; r0 < rows; r0 += LINEAR_MAX_ROWS) {
			int m = (int)(rows - r0 < LINEAR_MAX_ROWS ? rows - r0 : LINEAR_MAX_ROWS);

			iap_sgemm(1, 0, out, in, m, 1.0f,
				    dy + r0 * out, out, x + r0 * in, in, 1.0f, dw, in);
		}
	}
	if (db) {
		/* Row-major walk (cache friendly); rows are few next to in·out MACs. */
		for (int64_t r = 0; r < rows; r++)
			for (int o = 0; o < out; o++)
				db[o] += dy[r * out + o];
	}
}

/* ---- the graph op ---------------------------------------------------------- */

static int linear_rows(const struct iap_node *node, const struct iap_tensor *x, int64_t *rows,
		       struct iap_error *err)
{
	const struct iap_linear_attr *a = &node->attr.linear;

	if (x->ndim < 2 || x->shape[x->ndim - 1] != a->in_features) {
		char buf[96];

		return iap_error_set(err, IAP_ESHAPE, "%s: linear with %d input features cannot take %s",
				     node->name, a->in_features, iap_tensor_shape_str(x, buf, sizeof(buf)));
	}
	*rows = iap_tensor_numel(x) / a->in_features;
	return IAP_OK;
}

/*
 * Forward computing only the kept outputs: their weight rows gathered into
 * ws (kept × in), one rows × kept × in GEMM into ws after them, the columns
 * scattered back with the bias; pruned outputs are written as 0.
 */
static void linear_forward_masked(int64_t rows, int in, int out, const uint8_t *keep, int kept,
				  const float *x, const float *w, const float *b, float *y,
				  float *ws)
{
	float *wk = ws, *yk = ws + (size_t)kept * in, *bk = yk + (size_t)rows * kept;
	int *idx = malloc((size_t)kept * sizeof(*idx));

	if (!idx) {
		/* No memory for the index list: the dense product, pruned outputs zeroed. */
		iap_linear_forward_raw(rows, in, out, x, w, b, y);
		for (int64_t r = 0; r < rows; r++)
			for (int o = 0; o < out; o++)
				y[r * out + o] = keep[o] ? y[r * out + o] : 0.0f;
		return;
	}
	for (int o = 0, r = 0; o < out; o++)
		if (keep[o]) {
			idx[r] = o;
			bk[r] = b ? b[o] : 0.0f;
			memcpy(wk + (size_t)(r++) * in, w + (size_t)o * in, (size_t)in * sizeof(float));
		}
	iap_sgemm(0, 1, (int)rows, kept, in, 1.0f, x, in, wk,
		    in, 0.0f, yk, kept);
	/* Scatter through the index list: a branch per output on a random mask was mispredicted half the time. */
	for (int64_t r = 0; r < rows; r++) {
		const float *src = yk + r * kept;
		float *dst = y + r * out;

		memset(dst, 0, (size_t)out * sizeof(*dst));
		for (int j = 0; j < kept; j++)
			dst[idx[j]] = src[j] + bk[j];
	}
	free(idx);
}

static int linear_forward(struct iap_graph *g, struct iap_node *node,
			  const struct iap_tensor *const in[], struct iap_tensor *out,
			  struct iap_error *err)
{
	const struct iap_linear_attr *a = &node->attr.linear;
	const uint8_t *keep;
	int64_t rows;
	int rc, kept = 0;

	rc = linear_rows(node, in[0], &rows, err);
	if (rc)
		return rc;
	/* The engine zeroes masked features right after the forward: skip them. */
	keep = iap_unit_own_keep(g, node, a->out_features, &kept);
	if (keep && kept > 0 && rows <= LINEAR_MAX_ROWS) {
		/* May grow the shared workspace once, by the kept rows and their outputs. */
		float *ws = iap_graph_workspace(g, (size_t)kept * ((size_t)a->in_features + (size_t)rows + 1),
						err);

		if (!ws)
			return IAP_ENOMEM;
		linear_forward_masked(rows, a->in_features, a->out_features, keep, kept, in[0]->data,
				      node->params[0].value.data,
				      a->has_bias ? node->params[1].value.data : NULL, out->data, ws);
		return IAP_OK;
	}
	iap_linear_forward_raw(rows, a->in_features, a->out_features, in[0]->data,
			       node->params[0].value.data,
			       a->has_bias ? node->params[1].value.data : NULL, out->data);
	return IAP_OK;
}

static int linear_backward(struct iap_rule_ctx *ctx)
{
	const struct iap_node *node = ctx->node;
	const struct iap_linear_attr *a = &node->attr.linear;
	float *dw = NULL, *db = NULL;
	int64_t rows;
	int rc;

	rc = linear_rows(node, ctx->in[0], &rows, ctx->err);
	if (rc)
		return rc;
	if (ctx->want_param_grads) {
		rc = iap_param_grad(node, 0, &dw, ctx->err);
		if (!rc && a->has_bias)
			rc = iap_param_grad(node, 1, &db, ctx->err);
		if (rc)
			return rc;
	}
	if (dw || db)
		iap_linear_backward_params_raw(rows, a->in_features, a->out_features, ctx->in[0]->data,
					       ctx->r_out->data, dw, db);
	if (ctx->r_in[0])
		iap_linear_backward_input_raw(rows, a->in_features, a->out_features, ctx->r_out->data,
					      node->params[0].value.data, ctx->r_in[0]->data);
	return IAP_OK;
}

/* rows·in·out per sample, rows = the per-sample positions the layer is applied at (bias not counted). */
static uint64_t linear_macs(const struct iap_graph *g, const struct iap_node *node)
{
	const struct iap_linear_attr *a = &node->attr.linear;
	uint64_t rows = 1;

	(void)g;
	for (int i = 0; i < node->out_ndim - 1; i++)
		rows *= (uint64_t)node->out_shape[i];
	return rows * (uint64_t)a->in_features * (uint64_t)a->out_features;
}

const struct iap_op_ops iap_op_linear = {
	.kind = IAP_OP_LINEAR,
	.forward = linear_forward,
	.backward = linear_backward,
	.workspace = NULL,      /* the sgemms work in place */
	.macs = linear_macs,
};

/* ---- builder ----------------------------------------------------------------- */

int iap_linear(struct iap_graph *g, const char *name, int in, int out_features, int bias)
{
	const char *nm = name ? name : "";
	int64_t shp[IAP_MAX_DIMS], wshape[2], bshape[1];
	struct iap_node *n;
	char buf[96];
	int nd, id;

	if (!g || g->build_failed)
		return -1;
	nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd < 1)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: linear needs at least one axis per sample", nm);
	if (out_features <= 0)
		return iap_graph_fail(g, IAP_EINVAL, "%s: linear needs out_features > 0, got %d", nm,
				      out_features);
	if (shp[nd - 1] > INT_MAX)
		return iap_graph_fail(g, IAP_ENOMEM, "%s: linear input %s has too many features", nm,
				      iap_shape_str(nd, shp, buf, sizeof(buf)));

	id = iap_graph_add_node(g, &iap_op_linear, name, 1, &in);
	if (id < 0)
		return -1;
	n = &g->nodes[id];
	n->attr.linear = (struct iap_linear_attr){
		.in_features = (int)shp[nd - 1],
		.out_features = out_features,
		.has_bias = bias ? 1 : 0,
	};
	n->out_ndim = nd;
	for (int i = 0; i < nd - 1; i++)
		n->out_shape[i] = shp[i];
	n->out_shape[nd - 1] = out_features;

	wshape[0] = out_features;
	wshape[1] = shp[nd - 1];
	if (iap_graph_add_param(g, id, "weight", 2, wshape, IAP_PARAM_TRAINABLE) < 0)
		return -1;
	if (bias) {
		bshape[0] = out_features;
		if (iap_graph_add_param(g, id, "bias", 1, bshape, IAP_PARAM_TRAINABLE) < 0)
			return -1;
	}
	return id;
}
