/*
 * The 2-D pools, NCHW, with PyTorch's exact semantics:
 *
 *   maxpool2d           torch.nn.MaxPool2d(k, stride, padding, ceil_mode)
 *   avgpool2d           torch.nn.AvgPool2d(k, stride, padding, ceil_mode, count_include_pad)
 *   adaptive_avgpool2d  torch.nn.AdaptiveAvgPool2d((oh, ow))
 *
 * Output size (max/avg): floor((H + 2p − k + (ceil_mode ? s − 1 : 0)) / s) + 1,
 * and in ceil mode one less when the last window would start beyond the input
 * and its left padding (PyTorch's pooling_output_shape). A stride of 0 means
 * "= kernel", PyTorch's stride=None. Padding may be at most half the kernel.
 *
 * maxpool2d keeps, in node->aux[0] (shaped like the output), the flat index
 * ih·W + iw of each output's maximum within its input plane, as int32 stored in
 * the float buffer's bytes; its gradient (and any rule set that wants to
 * route relevance through the winner) reads it back as int32. Ties go to the
 * first maximum in scan order and NaN wins, as in PyTorch, and so do ties up
 * to rounding: a later cell takes the argmax only when it exceeds the
 * current winner by more than POOL_TIE_REL of its magnitude. On a spatially
 * constant input (a zero IG baseline, a flat background) PyTorch's
 * convolutions give exactly equal values and its max-pool the first of them,
 * while a Winograd or blocked-GEMM conv leaves a few ulps of noise that
 * would otherwise pick an arbitrary winner and send the whole gradient
 * there. Only the argmax follows this rule: the pooled value is always the
 * exact maximum. aux[1] (shaped like the output) is the winners' values,
 * scratch for the vector kernel.
 *
 * MACs: pools multiply nothing, so .macs is NULL (0), as fvcore counts them.
 */
#include "config.h"

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <iaprune/ops.h>

_Static_assert(sizeof(int32_t) == sizeof(float), "maxpool argmax indices live in float buffers");

#include "parallel.h"
#include "vmath.h" /* IAP_VEC_CLONES */

/*
 * How much a later cell must exceed the current winner to take the argmax:
 * 2^-16 (1.5e-5) of its magnitude, about 128 float ulps. A VGG conv on a
 * constant map through Winograd F(4,3) was measured to leave up to 4.5e-6
 * (relative) between values PyTorch computes equal; real maxima that close
 * to the runner-up are a coin toss in float32 anyway.
 */
#define POOL_TIE_REL (1.0f / 65536.0f)

/* The value a cell must exceed to take the argmax from a winner worth a (−inf stays −inf). */
static inline float pool_tie_bar(float a)
{
	return a >= 0.0f ? a * (1.0f + POOL_TIE_REL) : a * (1.0f - POOL_TIE_REL);
}

struct pool_geom {
	int64_t planes;         /* N·C */
	int in_h, in_w, out_h, out_w;
	int kh, kw, sh, sw, ph, pw;
};

static void pool_geom_of(struct pool_geom *pg, const struct iap_node *node, const struct iap_tensor *x)
{
	const struct iap_pool_attr *a = &node->attr.pool;

	pg->planes = x->shape[0] * x->shape[1];
	pg->in_h = (int)x->shape[2];
	pg->in_w = (int)x->shape[3];
	pg->out_h = (int)node->out_shape[1];
	pg->out_w = (int)node->out_shape[2];
	pg->kh = a->kh;
	pg->kw = a->kw;
	pg->sh = a->stride_h;
	pg->sw = a->stride_w;
	pg->ph = a->pad_h;
	pg->pw = a->pad_w;
}

/* The input must be what the builder saw (the engine shapes it; this guards raw misuse). */
static int pool_check_input(const struct iap_graph *g, const struct iap_node *node,
			    const struct iap_tensor *x, struct iap_error *err)
{
	int64_t shp[IAP_MAX_DIMS];
	char buf[96];

	if (iap_graph_sample_shape(g, node->inputs[0], shp) == 3 && x->ndim == 4 &&
	    x->shape[1] == shp[0] && x->shape[2] == shp[1] && x->shape[3] == shp[2])
		return IAP_OK;
	return iap_error_set(err, IAP_ESHAPE, "%s: %s built for another input shape cannot take %s",
			     node->name, iap_op_name(node->kind), iap_tensor_shape_str(x, buf, sizeof(buf)));
}

/* ---- maxpool2d --------------------------------------------------------------- */

/*
 * One window cell (row offset fixed) for a run of outputs whose windows lie
 * wholly inside the plane: y and arg hold each output's running maximum and
 * its index. Called for the cells in the generic scan order (row-major), it
 * picks the same winner as the per-output scan below, but as selects over a
 * row of outputs, which the compiler turns into vector code.
 */
IAP_VEC_CLONES
static void maxpool_cell_run(const float *restrict xrow, int32_t rowbase, int sw, int off, int ow0,
			     int ow1, float *restrict y, int32_t *restrict arg, float *restrict win)
{
#pragma omp simd
	for (int ow = ow0; ow < ow1; ow++) {
		int iw = ow * sw + off;
		float v = xrow[iw];
		int take = (v > y[ow]) | (v != v);
		int wins = (v > pool_tie_bar(win[ow])) | (v != v);

		y[ow] = take ? v : y[ow];
		arg[ow] = wins ? rowbase + iw : arg[ow];
		win[ow] = wins ? v : win[ow];
	}
}

/* Max and argmax of output (oh, ow), its window clipped to the plane (padding is −inf and never wins). */
static void maxpool_one(const struct pool_geom *pg, const float *xp, int oh, int ow, float *y,
			int32_t *arg)
{
	int h0 = oh * pg->sh - pg->ph, h1 = h0 + pg->kh, w0 = ow * pg->sw - pg->pw, w1 = w0 + pg->kw;
	float m = -INFINITY, win = -INFINITY;
	int32_t mi;

	h1 = h1 > pg->in_h ? pg->in_h : h1;
	h0 = h0 < 0 ? 0 : h0;
	w1 = w1 > pg->in_w ? pg->in_w : w1;
	w0 = w0 < 0 ? 0 : w0;
	mi = h0 * pg->in_w + w0;
	/*
	 * Selects, not branches: after a ReLU which cell wins is unpredictable,
	 * and a mispredicted branch per cell cost more than the loads. A NaN
	 * wins, as in PyTorch.
	 */
	for (int ih = h0; ih < h1; ih++)
		for (int iw = w0; iw < w1; iw++) {
			float v = xp[ih * pg->in_w + iw];
			int take = (v > m) | (v != v);
			int wins = (v > pool_tie_bar(win)) | (v != v);

			m = take ? v : m;
			mi = wins ? ih * pg->in_w + iw : mi;
			win = wins ? v : win;
		}
	*y = m;
	*arg = mi;
}

static int maxpool2d_forward(struct iap_graph *g, struct iap_node *node,
			     const struct iap_tensor *const in[], struct iap_tensor *out,
			     struct iap_error *err)
{
	const struct iap_tensor *x = in[0];
	struct pool_geom pg;
	int32_t *arg;
	int rc;

	rc = pool_check_input(g, node, x, err);
	if (rc)
		return rc;
	rc = iap_tensor_ensure(&node->aux[0], out->ndim, out->shape, err);
	if (!rc)
		rc = iap_tensor_ensure(&node->aux[1], out->ndim, out->shape, err);
	if (rc)
		return rc;
	pool_geom_of(&pg, node, x);
	/* Written and read only as int32 (the buffer is allocated storage, never read as float). */
	arg = (int32_t *)node->aux[0].data;

	/* Outputs whose windows are wholly inside horizontally: ow in [ow_lo, ow_hi). */
	int ow_lo = (pg.pw + pg.sw - 1) / pg.sw;
	int ow_hi = pg.in_w + pg.pw >= pg.kw ? (pg.in_w + pg.pw - pg.kw) / pg.sw + 1 : 0;

	ow_hi = ow_hi > pg.out_w ? pg.out_w : ow_hi;
	ow_lo = ow_lo > ow_hi ? ow_hi : ow_lo;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pg.planes * pg.in_h * pg.in_w)))
	for (int64_t p = 0; p < pg.planes; p++) {
		const float *xp = x->data + (size_t)p * pg.in_h * pg.in_w;
		float *yp = out->data + (size_t)p * pg.out_h * pg.out_w;
		int32_t *ap = arg + (size_t)p * pg.out_h * pg.out_w;
		float *wp = node->aux[1].data + (size_t)p * pg.out_h * pg.out_w;

		for (int oh = 0; oh < pg.out_h; oh++) {
			int h0 = oh * pg.sh - pg.ph;
			float *yr = yp + (size_t)oh * pg.out_w, *wr = wp + (size_t)oh * pg.out_w;
			int32_t *ar = ap + (size_t)oh * pg.out_w;
			int inside = h0 >= 0 && h0 + pg.kh <= pg.in_h && ow_lo < ow_hi;

			if (!inside) {
				for (int ow = 0; ow < pg.out_w; ow++)
					maxpool_one(&pg, xp, oh, ow, yr + ow, ar + ow);
				continue;
			}
			for (int ow = 0; ow < ow_lo; ow++)
				maxpool_one(&pg, xp, oh, ow, yr + ow, ar + ow);
			for (int ow = ow_lo; ow < ow_hi; ow++) {
				yr[ow] = -INFINITY;
				wr[ow] = -INFINITY;
				ar[ow] = h0 * pg.in_w + ow * pg.sw - pg.pw;
			}
			for (int i = 0; i < pg.kh; i++)
				for (int j = 0; j < pg.kw; j++)
					maxpool_cell_run(xp + (size_t)(h0 + i) * pg.in_w, (h0 + i) * pg.in_w, pg.sw,
							 j - pg.pw, ow_lo, ow_hi, yr, ar, wr);
			for (int ow = ow_hi; ow < pg.out_w; ow++)
				maxpool_one(&pg, xp, oh, ow, yr + ow, ar + ow);
		}
	}
	return IAP_OK;
}

static int maxpool2d_backward(struct iap_rule_ctx *ctx)
{
	const struct iap_node *node = ctx->node;
	const struct iap_tensor *dy = ctx->r_out;
	const int32_t *arg = (const int32_t *)node->aux[0].data;
	struct iap_tensor *dx = ctx->r_in[0];
	struct pool_geom pg;

	if (!dx)
		return IAP_OK;
	if (!arg || !iap_tensor_same_shape(&node->aux[0], dy))
		return iap_error_set(ctx->err, IAP_EINVAL, "%s: maxpool2d gradient without a matching forward",
				     node->name);
	pool_geom_of(&pg, node, ctx->in[0]);

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pg.planes * pg.in_h * pg.in_w)))
	for (int64_t p = 0; p < pg.planes; p++) {
		const float *dyp = dy->data + (size_t)p * pg.out_h * pg.out_w;
		const int32_t *ap = arg + (size_t)p * pg.out_h * pg.out_w;
		float *dxp = dx->data + (size_t)p * pg.in_h * pg.in_w;

		for (int o = 0; o < pg.out_h * pg.out_w; o++)
			dxp[ap[o]] += dyp[o];
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_maxpool2d = {
	.kind = IAP_OP_MAXPOOL2D,
	.forward = maxpool2d_forward,
	.backward = maxpool2d_backward,
	.workspace = NULL,
	.macs = NULL,
};

/* ---- avgpool2d --------------------------------------------------------------- */

/*
 * The window of output (oh, ow) clipped to the input, and PyTorch's divisor:
 * with count_include_pad the window clipped to the PADDED input (so ceil-mode
 * cells past the padding do not count), else the real cells only. Returns 0
 * for an empty window (output 0, no gradient).
 */
static int avg_window(const struct pool_geom *pg, int count_include_pad, int oh, int ow,
		      int *h0, int *h1, int *w0, int *w1)
{
	int a0 = oh * pg->sh - pg->ph, b0 = ow * pg->sw - pg->pw;
	int a1 = a0 + pg->kh, b1 = b0 + pg->kw;
	int padded;

	if (a1 > pg->in_h + pg->ph)
		a1 = pg->in_h + pg->ph;
	if (b1 > pg->in_w + pg->pw)
		b1 = pg->in_w + pg->pw;
	padded = (a1 - a0) * (b1 - b0);
	*h0 = a0 < 0 ? 0 : a0;
	*w0 = b0 < 0 ? 0 : b0;
	*h1 = a1 > pg->in_h ? pg->in_h : a1;
	*w1 = b1 > pg->in_w ? pg->in_w : b1;
	if (*h0 >= *h1 || *w0 >= *w1)
		return 0;
	return count_include_pad ? padded : (*h1 - *h0) * (*w1 - *w0);
}

static int avgpool2d_forward(struct iap_graph *g, struct iap_node *node,
			     const struct iap_tensor *const in[], struct iap_tensor *out,
			     struct iap_error *err)
{
	const struct iap_tensor *x = in[0];
	const int cip = node->attr.pool.count_include_pad;
	struct pool_geom pg;
	int rc;

	rc = pool_check_input(g, node, x, err);
	if (rc)
		return rc;
	pool_geom_of(&pg, node, x);

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pg.planes * pg.in_h * pg.in_w)))
	for (int64_t p = 0; p < pg.planes; p++) {
		const float *xp = x->data + (size_t)p * pg.in_h * pg.in_w;
		float *yp = out->data + (size_t)p * pg.out_h * pg.out_w;

		for (int oh = 0; oh < pg.out_h; oh++)
			for (int ow = 0; ow < pg.out_w; ow++) {
				int h0, h1, w0, w1;
				int div = avg_window(&pg, cip, oh, ow, &h0, &h1, &w0, &w1);
				float s = 0.0f;

				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						s += xp[ih * pg.in_w + iw];
				yp[oh * pg.out_w + ow] = div ? s / (float)div : 0.0f;
			}
	}
	return IAP_OK;
}

static int avgpool2d_backward(struct iap_rule_ctx *ctx)
{
	const struct iap_node *node = ctx->node;
	const int cip = node->attr.pool.count_include_pad;
	const struct iap_tensor *dy = ctx->r_out;
	struct iap_tensor *dx = ctx->r_in[0];
	struct pool_geom pg;

	if (!dx)
		return IAP_OK;
	pool_geom_of(&pg, node, ctx->in[0]);

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pg.planes * pg.in_h * pg.in_w)))
	for (int64_t p = 0; p < pg.planes; p++) {
		const float *dyp = dy->data + (size_t)p * pg.out_h * pg.out_w;
		float *dxp = dx->data + (size_t)p * pg.in_h * pg.in_w;

		for (int oh = 0; oh < pg.out_h; oh++)
			for (int ow = 0; ow < pg.out_w; ow++) {
				int h0, h1, w0, w1;
				int div = avg_window(&pg, cip, oh, ow, &h0, &h1, &w0, &w1);
				float d;

				if (!div)
					continue;
				d = dyp[oh * pg.out_w + ow] / (float)div;
				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						dxp[ih * pg.in_w + iw] += d;
			}
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_avgpool2d = {
	.kind = IAP_OP_AVGPOOL2D,
	.forward = avgpool2d_forward,
	.backward = avgpool2d_backward,
	.workspace = NULL,
	.macs = NULL,
};

/* ---- adaptive_avgpool2d ------------------------------------------------------- */

/* PyTorch's bins: [floor(i·n/out), ceil((i+1)·n/out)); they overlap when n % out != 0 or out > n. */
static int bin_start(int i, int n, int out)
{
	return (int)(((int64_t)i * n) / out);
}

static int bin_end(int i, int n, int out)
{
	return (int)(((int64_t)(i + 1) * n + out - 1) / out);
}

static int adaptive_avgpool2d_forward(struct iap_graph *g, struct iap_node *node,
				      const struct iap_tensor *const in[], struct iap_tensor *out,
				      struct iap_error *err)
{
	const struct iap_tensor *x = in[0];
	struct pool_geom pg;
	int rc;

	rc = pool_check_input(g, node, x, err);
	if (rc)
		return rc;
	pool_geom_of(&pg, node, x);

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pg.planes * pg.in_h * pg.in_w)))
	for (int64_t p = 0; p < pg.planes; p++) {
		const float *xp = x->data + (size_t)p * pg.in_h * pg.in_w;
		float *yp = out->data + (size_t)p * pg.out_h * pg.out_w;

		for (int oh = 0; oh < pg.out_h; oh++) {
			int h0 = bin_start(oh, pg.in_h, pg.out_h), h1 = bin_end(oh, pg.in_h, pg.out_h);

			for (int ow = 0; ow < pg.out_w; ow++) {
				int w0 = bin_start(ow, pg.in_w, pg.out_w), w1 = bin_end(ow, pg.in_w, pg.out_w);
				float s = 0.0f;

				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						s += xp[ih * pg.in_w + iw];
				yp[oh * pg.out_w + ow] = s / (float)((h1 - h0) * (w1 - w0));
			}
		}
	}
	return IAP_OK;
}

static int adaptive_avgpool2d_backward(struct iap_rule_ctx *ctx)
{
	const struct iap_node *node = ctx->node;
	const struct iap_tensor *dy = ctx->r_out;
	struct iap_tensor *dx = ctx->r_in[0];
	struct pool_geom pg;

	if (!dx)
		return IAP_OK;
	pool_geom_of(&pg, node, ctx->in[0]);

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pg.planes * pg.in_h * pg.in_w)))
	for (int64_t p = 0; p < pg.planes; p++) {
		const float *dyp = dy->data + (size_t)p * pg.out_h * pg.out_w;
		float *dxp = dx->data + (size_t)p * pg.in_h * pg.in_w;

		for (int oh = 0; oh < pg.out_h; oh++) {
			int h0 = bin_start(oh, pg.in_h, pg.out_h), h1 = bin_end(oh, pg.in_h, pg.out_h);

			for (int ow = 0; ow < pg.out_w; ow++) {
				int w0 = bin_start(ow, pg.in_w, pg.out_w), w1 = bin_end(ow, pg.in_w, pg.out_w);
				float d = dyp[oh * pg.out_w + ow] / (float)((h1 - h0) * (w1 - w0));

				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						dxp[ih * pg.in_w + iw] += d;
			}
		}
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_adaptive_avgpool2d = {
	.kind = IAP_OP_ADAPTIVE_AVGPOOL2D,
	.forward = adaptive_avgpool2d_forward,
	.backward = adaptive_avgpool2d_backward,
	.workspace = NULL,
	.macs = NULL,
};

/* ---- builders ------------------------------------------------------------------ */

/* Shape of one sample of `in`, which must be C×H×W with H·W indexable by int32; -1 on failure. */
static int pool_input(struct iap_graph *g, const char *nm, const char *op, int in, int64_t *shp)
{
	char buf[96];
	int nd;

	if (!g || g->build_failed)
		return -1;
	nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 3)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: %s expects a C×H×W input per sample, got %s",
				      nm, op, iap_shape_str(nd, shp, buf, sizeof(buf)));
	if (shp[1] * shp[2] > INT32_MAX)
		return iap_graph_fail(g, IAP_ENOMEM, "%s: %s input %s is too large", nm, op,
				      iap_shape_str(nd, shp, buf, sizeof(buf)));
	return 0;
}

/* PyTorch's pooling_output_shape for dilation 1 (caller ensures n + 2p >= k). */
static int64_t pool_out_size(int64_t n, int k, int s, int p, int ceil_mode)
{
	int64_t out = (n + 2 * (int64_t)p - k + (ceil_mode ? s - 1 : 0)) / s + 1;

	/* The last window must start inside the input or its left padding. */
	if (ceil_mode && (out - 1) * s >= n + p)
		out--;
	return out;
}

/* Shared by max and avg pool: validate, add the node, fill attr and shape. */
static int pool_add(struct iap_graph *g, const struct iap_op_ops *ops, const char *op,
		    const char *name, int in, int k, int stride, int pad, int ceil_mode,
		    int count_include_pad)
{
	const char *nm = name ? name : "";
	int64_t shp[IAP_MAX_DIMS], oh, ow;
	struct iap_node *n;
	char buf[96];
	int id;

	if (pool_input(g, nm, op, in, shp) < 0)
		return -1;
	if (stride == 0)
		stride = k;     /* PyTorch's stride=None */
	if (k <= 0 || stride <= 0 || pad < 0)
		return iap_graph_fail(g, IAP_EINVAL, "%s: %s needs kernel > 0, stride >= 0, padding >= 0 "
				      "(got kernel %d, stride %d, padding %d)", nm, op, k, stride, pad);
	if (pad > k / 2)
		return iap_graph_fail(g, IAP_EINVAL, "%s: %s padding %d is more than half the kernel %d",
				      nm, op, pad, k);
	if (shp[1] + 2 * (int64_t)pad < k || shp[2] + 2 * (int64_t)pad < k)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: %s kernel %d is larger than the padded input %s",
				      nm, op, k, iap_shape_str(3, shp, buf, sizeof(buf)));
	oh = pool_out_size(shp[1], k, stride, pad, ceil_mode);
	ow = pool_out_size(shp[2], k, stride, pad, ceil_mode);

	id = iap_graph_add_node(g, ops, name, 1, &in);
	if (id < 0)
		return -1;
	n = &g->nodes[id];
	n->attr.pool = (struct iap_pool_attr){
		.kh = k,
		.kw = k,
		.stride_h = stride,
		.stride_w = stride,
		.pad_h = pad,
		.pad_w = pad,
		.ceil_mode = ceil_mode ? 1 : 0,
		.count_include_pad = count_include_pad ? 1 : 0,
		.out_h = (int)oh,
		.out_w = (int)ow,
	};
	n->out_ndim = 3;
	n->out_shape[0] = shp[0];
	n->out_shape[1] = oh;
	n->out_shape[2] = ow;
	return id;
}

int iap_maxpool2d(struct iap_graph *g, const char *name, int in, int k, int stride, int pad, int ceil_mode)
{
	return pool_add(g, &iap_op_maxpool2d, "maxpool2d", name, in, k, stride, pad, ceil_mode, 0);
}

int iap_avgpool2d(struct iap_graph *g, const char *name, int in, int k, int stride, int pad,
		  int ceil_mode, int count_include_pad)
{
	return pool_add(g, &iap_op_avgpool2d, "avgpool2d", name, in, k, stride, pad, ceil_mode,
			count_include_pad);
}

int iap_adaptive_avgpool2d(struct iap_graph *g, const char *name, int in, int out_h, int out_w)
{
	const char *nm = name ? name : "";
	int64_t shp[IAP_MAX_DIMS];
	struct iap_node *n;
	int id;

	if (pool_input(g, nm, "adaptive_avgpool2d", in, shp) < 0)
		return -1;
	if (out_h <= 0 || out_w <= 0)
		return iap_graph_fail(g, IAP_EINVAL, "%s: adaptive_avgpool2d needs a positive output size, got %dx%d",
				      nm, out_h, out_w);

	id = iap_graph_add_node(g, &iap_op_adaptive_avgpool2d, name, 1, &in);
	if (id < 0)
		return -1;
	n = &g->nodes[id];
	n->attr.pool = (struct iap_pool_attr){
		.out_h = out_h,
		.out_w = out_w,
	};
	n->out_ndim = 3;
	n->out_shape[0] = shp[0];
	n->out_shape[1] = out_h;
	n->out_shape[2] = out_w;
	return id;
}
