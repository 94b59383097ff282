/*
 * DL-Backtrace propagation rules, one per op kind, for the core's backward
 * walk. The rules and which reference code generation each follows are
 * described at the top of dlb.c; this file holds the arithmetic.
 *
 * Dense and conv layers use the identity Σ_j |W_ji x_i| c_j = |x_i| ·
 * (|W|ᵀ c)_i, so the default rule is two passes of the layer's own kernel
 * with |W| (one forward for the denominators, one transposed for the
 * shares) instead of a loop over every product. Contrast mode splits W and
 * x by sign the same way (z > 0 exactly when W and x share a sign).
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <iaprune/blas.h>
#include <iaprune/ops.h>
#include <iaprune/threads.h>

#include "dlb.h"

/*
 * Element-wise loops split by the engine's work rule (iap_par_nt(),
 * <iaprune/threads.h>): OpenBLAS runs on the OpenMP team's threads, so
 * there is no second pool to fight and no size threshold to tune.
 */

static int dlb_thread_num(void)
{
#ifdef _OPENMP
	return omp_get_thread_num();
#else
	return 0;
#endif
}

/* The attention stabiliser: DLBacktrace's launcher default. */
#define DLB_ATTN_EPS 1e-9f

/*
 * A dense/conv unit whose |contributions| sum to less than this is dead:
 * its relevance is dropped (as for D = 0) rather than divided by a
 * denormal, which could overflow to inf and then meet a zero (NaN).
 */
#define DLB_TINY 1e-30f

/*
 * v where cond holds, else +0, without a branch: the loops using it then
 * vectorise (a conditional multiply or divide would keep them scalar).
 */
static inline float keep_if(float v, int cond)
{
	uint32_t u;

	memcpy(&u, &v, sizeof(u));
	u &= -(uint32_t)(cond != 0);
	memcpy(&v, &u, sizeof(v));
	return v;
}

static const char *label(const struct iap_node *n)
{
	return n->name ? n->name : "";
}

float dlb_stab(float x, float eps)
{
	if (fabsf(x) >= eps)
		return x;
	return x < 0.0f ? -eps : eps;
}

static int size_error(struct iap_rule_ctx *ctx)
{
	return iap_error_set(ctx->err, IAP_ESHAPE, "dlb: %s '%s': relevance size does not match",
			     iap_op_name(ctx->node->kind), label(ctx->node));
}

static int ws_error(struct iap_rule_ctx *ctx)
{
	return iap_error_set(ctx->err, IAP_ENOMEM, "dlb: %s '%s': cannot grow the workspace",
			     iap_op_name(ctx->node->kind), label(ctx->node));
}

/* ---- pass-through and reshapes ---------------------------------------------- */

/* ReLU, GELU, BatchNorm, LayerNorm, dropout, softmax: R_in = R_out elementwise. */
static int rule_pass(struct iap_rule_ctx *ctx)
{
	struct iap_tensor *ri = ctx->r_in[0];

	if (!ri)
		return IAP_OK;
	const int64_t n = iap_tensor_numel(ri);
	if (iap_tensor_numel(ctx->r_out) != n)
		return size_error(ctx);
	const float *r = ctx->r_out->data;
	float *d = ri->data;

#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		d[i] += r[i];
	return IAP_OK;
}

/*
 * Flatten, tokens, class token, token select: pure index maps, so the
 * gradient moves relevance exactly (the class token's row goes to its
 * parameter and leaves the walk). Never into parameter gradients.
 */
static int rule_reshape(struct iap_rule_ctx *ctx)
{
	struct iap_rule_ctx sub = *ctx;

	sub.want_param_grads = 0;
	return iap_rule_gradient(&sub);
}

/* ---- residual add and position embedding ------------------------------------ */

/*
 * Share of R for operand a of a + b: ½ (equal, new engine) or |a|/(|a|+|b|)
 * (proportional, old engine; nothing when both are 0).
 */
static inline float add_share(enum dlb_add_rule rule, float a, float b)
{
	float s;

	if (rule == DLB_ADD_EQUAL)
		return 0.5f;
	s = fabsf(a) + fabsf(b);
	return s > 0.0f ? fabsf(a) / s : 0.0f;
}

static int rule_add(struct iap_rule_ctx *ctx)
{
	const struct dlb_rules *st = ctx->user;
	const int64_t n = iap_tensor_numel(ctx->r_out);

	if (iap_tensor_numel(ctx->in[0]) != n || iap_tensor_numel(ctx->in[1]) != n)
		return size_error(ctx);
	const enum dlb_add_rule rule = st->cfg.add_rule;
	const float *a = ctx->in[0]->data, *b = ctx->in[1]->data, *r = ctx->r_out->data;

	for (int k = 0; k < 2; k++) {
		if (!ctx->r_in[k])
			continue;
		float *d = ctx->r_in[k]->data;
		const float *self = k ? b : a, *other = k ? a : b;

		if (rule == DLB_ADD_EQUAL) {
			/* The default: halves, a plain vector loop. */
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
			for (int64_t i = 0; i < n; i++)
				d[i] += 0.5f * r[i];
			continue;
		}
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
		for (int64_t i = 0; i < n; i++)
			d[i] += add_share(rule, self[i], other[i]) * r[i];
	}
	return IAP_OK;
}

/* x + pos_embedding: an add whose second operand is a parameter (its share leaves the walk). */
static int rule_pos_embed(struct iap_rule_ctx *ctx)
{
	const struct dlb_rules *st = ctx->user;
	struct iap_tensor *ri = ctx->r_in[0];

	if (!ri)
		return IAP_OK;
	const struct iap_tensor *pe = &ctx->node->params[0].value;
	const int64_t n = iap_tensor_numel(ctx->r_out), per = iap_tensor_numel(pe);
	if (iap_tensor_numel(ri) != n || per <= 0 || n % per)
		return size_error(ctx);
	const enum dlb_add_rule rule = st->cfg.add_rule;
	const float *x = ctx->in[0]->data, *p = pe->data, *r = ctx->r_out->data;
	float *d = ri->data;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		d[i] += add_share(rule, x[i], p[i % per]) * r[i];
	return IAP_OK;
}

/* ---- pools --------------------------------------------------------------------- */

struct pool_dims {
	int64_t planes;
	int in_h, in_w, out_h, out_w;
};

static int pool_dims_of(struct iap_rule_ctx *ctx, struct pool_dims *pd)
{
	const struct iap_tensor *x = ctx->in[0], *y = ctx->out;

	if (x->ndim != 4 || y->ndim != 4 || !iap_tensor_same_shape(y, ctx->r_out) ||
	    (ctx->r_in[0] && !iap_tensor_same_shape(x, ctx->r_in[0])))
		return size_error(ctx);
	pd->planes = x->shape[0] * x->shape[1];
	pd->in_h = (int)x->shape[2];
	pd->in_w = (int)x->shape[3];
	pd->out_h = (int)y->shape[2];
	pd->out_w = (int)y->shape[3];
	return IAP_OK;
}

/* Window of a max/avg pool output cell, clipped to the real (unpadded) input. */
static void pool_window(const struct iap_pool_attr *a, const struct pool_dims *pd, int oh, int ow,
			int *h0, int *h1, int *w0, int *w1)
{
	const int sh = a->stride_h ? a->stride_h : a->kh, sw = a->stride_w ? a->stride_w : a->kw;
	int y0 = oh * sh - a->pad_h, x0 = ow * sw - a->pad_w;
	int y1 = y0 + a->kh, x1 = x0 + a->kw;

	*h0 = y0 < 0 ? 0 : y0;
	*w0 = x0 < 0 ? 0 : x0;
	*h1 = y1 > pd->in_h ? pd->in_h : y1;
	*w1 = x1 > pd->in_w ? pd->in_w : x1;
}

/* PyTorch's adaptive bins: [floor(i·n/out), ceil((i+1)·n/out)). */
static void adaptive_window(const struct pool_dims *pd, int oh, int ow, int *h0, int *h1, int *w0,
			    int *w1)
{
	*h0 = (int)(((int64_t)oh * pd->in_h) / pd->out_h);
	*h1 = (int)(((int64_t)(oh + 1) * pd->in_h + pd->out_h - 1) / pd->out_h);
	*w0 = (int)(((int64_t)ow * pd->in_w) / pd->out_w);
	*w1 = (int)(((int64_t)(ow + 1) * pd->in_w + pd->out_w - 1) / pd->out_w);
}

/*
 * Max pool, repeat (NEW's align_relevance on an exact size ratio): the
 * output map is upsampled by nearest neighbour, each cell repeated over an
 * rh × rw block with rh = H_in / H_out, rw = W_in / W_out, and divided by
 * rh·rw so the total is kept. The window (kernel, padding) plays no part,
 * so ResNet's 3×3/2 stem pool gives each cell a quarter of the output
 * cell above it, as the reference does. Sizes that are not an exact
 * multiple are refused: the reference would silently tile or average.
 */
static int maxpool_repeat(struct iap_rule_ctx *ctx, const struct pool_dims *pd)
{
	const float *r = ctx->r_out->data;
	float *d = ctx->r_in[0]->data;
	int rh, rw;
	float scale;

	if (pd->out_h <= 0 || pd->out_w <= 0 || pd->in_h % pd->out_h || pd->in_w % pd->out_w)
		return iap_error_set(ctx->err, IAP_EINVAL,
				     "dlb: %s: maxpool_rule=repeat needs the input size to be a multiple of the "
				     "output size (%dx%d -> %dx%d)", ctx->node->name, pd->in_h, pd->in_w,
				     pd->out_h, pd->out_w);
	rh = pd->in_h / pd->out_h;
	rw = pd->in_w / pd->out_w;
	scale = 1.0f / (float)(rh * rw);
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pd->planes * pd->in_h * pd->in_w)))
	for (int64_t p = 0; p < pd->planes; p++) {
		const float *rp = r + p * pd->out_h * pd->out_w;
		float *dp = d + p * pd->in_h * pd->in_w;

		for (int ih = 0; ih < pd->in_h; ih++)
			for (int iw = 0; iw < pd->in_w; iw++)
				dp[ih * pd->in_w + iw] += rp[(ih / rh) * pd->out_w + iw / rw] * scale;
	}
	return IAP_OK;
}

/*
 * Max pool. winner (old engine): a cell's R goes to the window positions
 * equal to its maximum, ties sharing equally. uniform (new engine): R is
 * spread evenly over the window's real cells. Overlapping windows add.
 */
static int rule_maxpool(struct iap_rule_ctx *ctx)
{
	const struct dlb_rules *st = ctx->user;
	struct pool_dims pd;
	int rc;

	if (!ctx->r_in[0])
		return IAP_OK;
	rc = pool_dims_of(ctx, &pd);
	if (rc)
		return rc;
	const struct iap_pool_attr *a = &ctx->node->attr.pool;
	const int winner = st->cfg.maxpool_rule == DLB_MAXPOOL_WINNER;
	const float *x = ctx->in[0]->data, *y = ctx->out->data, *r = ctx->r_out->data;
	float *d = ctx->r_in[0]->data;

	if (st->cfg.maxpool_rule == DLB_MAXPOOL_REPEAT)
		return maxpool_repeat(ctx, &pd);

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pd.planes * pd.in_h * pd.in_w)))
	for (int64_t p = 0; p < pd.planes; p++) {
		const float *xp = x + p * pd.in_h * pd.in_w;
		float *dp = d + p * pd.in_h * pd.in_w;

		for (int oh = 0; oh < pd.out_h; oh++)
			for (int ow = 0; ow < pd.out_w; ow++) {
				const int64_t o = (p * pd.out_h + oh) * pd.out_w + ow;
				const float m = y[o];
				int h0, h1, w0, w1, cnt = 0;
				float share;

				if (r[o] == 0.0f)
					continue;
				pool_window(a, &pd, oh, ow, &h0, &h1, &w0, &w1);
				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						cnt += !winner || xp[ih * pd.in_w + iw] == m;
				if (!cnt)
					continue; /* a NaN maximum: nothing equals it */
				share = r[o] / (float)cnt;
				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						if (!winner || xp[ih * pd.in_w + iw] == m)
							dp[ih * pd.in_w + iw] += share;
			}
	}
	return IAP_OK;
}

/*
 * Average and adaptive average pools. uniform (new engine): R spread evenly
 * over the window's real cells. proportional (old engine): ∝ |x| within the
 * window; an all-zero window drops its R.
 */
static int rule_avgpool(struct iap_rule_ctx *ctx)
{
	const struct dlb_rules *st = ctx->user;
	struct pool_dims pd;
	int rc;

	if (!ctx->r_in[0])
		return IAP_OK;
	rc = pool_dims_of(ctx, &pd);
	if (rc)
		return rc;
	const struct iap_pool_attr *a = &ctx->node->attr.pool;
	const int adaptive = ctx->node->kind == IAP_OP_ADAPTIVE_AVGPOOL2D;
	const int prop = st->cfg.gap_rule == DLB_GAP_PROPORTIONAL;
	const float *x = ctx->in[0]->data, *r = ctx->r_out->data;
	float *d = ctx->r_in[0]->data;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(pd.planes * pd.in_h * pd.in_w)))
	for (int64_t p = 0; p < pd.planes; p++) {
		const float *xp = x + p * pd.in_h * pd.in_w;
		float *dp = d + p * pd.in_h * pd.in_w;

		for (int oh = 0; oh < pd.out_h; oh++)
			for (int ow = 0; ow < pd.out_w; ow++) {
				const float ro = r[(p * pd.out_h + oh) * pd.out_w + ow];
				int h0, h1, w0, w1;
				float s = 0.0f;

				if (ro == 0.0f)
					continue;
				if (adaptive)
					adaptive_window(&pd, oh, ow, &h0, &h1, &w0, &w1);
				else
					pool_window(a, &pd, oh, ow, &h0, &h1, &w0, &w1);
				if (h0 >= h1 || w0 >= w1)
					continue;
				if (!prop) {
					const float share = ro / (float)((h1 - h0) * (w1 - w0));

					for (int ih = h0; ih < h1; ih++)
						for (int iw = w0; iw < w1; iw++)
							dp[ih * pd.in_w + iw] += share;
					continue;
				}
				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						s += fabsf(xp[ih * pd.in_w + iw]);
				if (!(s > 0.0f))
					continue;
				for (int ih = h0; ih < h1; ih++)
					for (int iw = w0; iw < w1; iw++)
						dp[ih * pd.in_w + iw] += fabsf(xp[ih * pd.in_w + iw]) / s * ro;
			}
	}
	return IAP_OK;
}

/* ---- dense and conv ------------------------------------------------------------- */

/* A conv or linear node at the current batch, seen as y = x ⋆ W (no bias). */
struct lin_geom {
	int conv;
	struct iap_conv_geom cg;
	int64_t rows;           /* linear: rows of the [rows, in] input */
	int in, out;            /* linear: features */
	int64_t n_in, n_out, n_w;
	int64_t plane;          /* conv: out_h·out_w */
	int out_ch;
	size_t ws_len;          /* conv kernels' scratch */
	const float *w, *b;     /* b may be NULL */
	float *ws;
};

static int lin_geom_of(struct iap_rule_ctx *ctx, struct lin_geom *lg)
{
	const struct iap_node *node = ctx->node;
	const struct iap_tensor *x = ctx->in[0];

	memset(lg, 0, sizeof(*lg));
	lg->n_in = iap_tensor_numel(x);
	lg->n_out = iap_tensor_numel(ctx->out);
	lg->w = node->params[0].value.data;
	lg->n_w = iap_tensor_numel(&node->params[0].value);
	if (node->kind == IAP_OP_CONV2D) {
		if (x->ndim != 4)
			return size_error(ctx);
		lg->conv = 1;
		iap_conv_geom_from_node(&lg->cg, node, (int)x->shape[0], x->shape + 1);
		lg->b = node->attr.conv.has_bias ? node->params[1].value.data : NULL;
		lg->plane = (int64_t)lg->cg.out_h * lg->cg.out_w;
		lg->out_ch = lg->cg.out_ch;
		lg->ws_len = iap_conv2d_workspace(&lg->cg);
		if (lg->n_out != (int64_t)lg->cg.n * lg->out_ch * lg->plane)
			return size_error(ctx);
	} else {
		lg->in = node->attr.linear.in_features;
		lg->out = node->attr.linear.out_features;
		lg->b = node->attr.linear.has_bias ? node->params[1].value.data : NULL;
		if (lg->in <= 0 || lg->n_in % lg->in)
			return size_error(ctx);
		lg->rows = lg->n_in / lg->in;
		lg->plane = 1;
		lg->out_ch = lg->out;
		if (lg->n_out != lg->rows * lg->out)
			return size_error(ctx);
	}
	if (iap_tensor_numel(ctx->r_out) != lg->n_out ||
	    (ctx->r_in[0] && iap_tensor_numel(ctx->r_in[0]) != lg->n_in))
		return size_error(ctx);
	return IAP_OK;
}

/* y = x ⋆ w (overwrites y). */
static void lin_fwd(const struct lin_geom *lg, const float *x, const float *w, float *y)
{
	if (lg->conv)
		iap_conv2d_forward_raw(&lg->cg, x, w, NULL, y, lg->ws);
	else
		iap_linear_forward_raw(lg->rows, lg->in, lg->out, x, w, NULL, y);
}

/* dx += dy ⋆ᵀ w. */
static void lin_bwd(const struct lin_geom *lg, const float *dy, const float *w, float *dx)
{
	if (lg->conv)
		iap_conv2d_backward_input_raw(&lg->cg, dy, w, dx, lg->ws);
	else
		iap_linear_backward_input_raw(lg->rows, lg->in, lg->out, dy, w, dx);
}

static inline float lin_bias(const struct lin_geom *lg, int64_t j)
{
	return lg->b ? lg->b[(j / lg->plane) % lg->out_ch] : 0.0f;
}

/*
 * 1 when some entry of v is negative. Scanned in blocks so that a
 * mixed-sign input stops early; a ReLU output costs one vector pass.
 */
static int any_negative(const float *v, int64_t n)
{
	int neg = 0;

	for (int64_t i0 = 0; i0 < n && !neg; i0 += 4096) {
		const int64_t i1 = n - i0 < 4096 ? n : i0 + 4096;

#pragma omp simd reduction(|:neg)
		for (int64_t i = i0; i < i1; i++)
			neg |= v[i] < 0.0f;
	}
	return neg;
}

/* dst = |src|, n elements. */
static void abs_fill(const float *restrict src, float *restrict dst, int64_t n)
{
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		dst[i] = fabsf(src[i]);
}

/* c_j ← R_j / den_j with den_j = c_j + |b_j|; units with den ≤ DLB_TINY get 0. */
static void lin_shares(const struct lin_geom *lg, const float *r, float *c)
{
	const int64_t blocks = lg->n_out / lg->plane;

	for (int64_t q = 0; q < blocks; q++) {
		const float ab = lg->b ? fabsf(lg->b[q % lg->out_ch]) : 0.0f;
		const float *rq = r + q * lg->plane;
		float *cq = c + q * lg->plane;

		/* Branch-free (so it vectorises): divide by a safe value, then clear. */
#pragma omp simd
		for (int64_t j = 0; j < lg->plane; j++) {
			const float den = cq[j] + ab;

			cq[j] = keep_if(rq[j] / (den > DLB_TINY ? den : DLB_TINY), den > DLB_TINY);
		}
	}
}

/* d += ax ⊙ t where ax ≠ 0 (a zero input takes nothing, even from an infinite share). */
static void lin_gather(const float *restrict ax, const float *restrict t, float *restrict d, int64_t n)
{
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		d[i] += keep_if(ax[i] * t[i], ax[i] != 0.0f);
}

/*
 * A linear layer on a few rows (VGG's classifier at batch 1: 103 M weights
 * for 1 row): each weight row is used right after it is read, for both the
 * denominator and the share, so W is read once and |W| never written out
 * (the two-product path reads W three times and writes |W| once).
 */
#define DLB_FUSED_ROWS 4

static int lin_rows_fused(struct iap_rule_ctx *ctx, const struct lin_geom *lg, const float *x,
			  int neg, const float *r, float *d)
{
	const int in = lg->in, out = lg->out, rows = (int)lg->rows;
	const int nt = iap_par_nt(lg->n_w);
	const int64_t per_t = (int64_t)rows * in;   /* = n_in */
	float *acc = iap_graph_workspace(ctx->graph, (size_t)((nt + neg) * per_t), ctx->err);
	const float *ax = x;

	if (!acc)
		return ws_error(ctx);
	if (neg) {
		abs_fill(x, acc + nt * per_t, per_t);
		ax = acc + nt * per_t;
	}
	memset(acc, 0, (size_t)(nt * per_t) * sizeof(float));
#pragma omp parallel num_threads(nt) if (nt > 1)
	{
		/* Each thread adds its rows' shares into its own copy; summed after. */
		float *t = acc + (int64_t)dlb_thread_num() * per_t;

#pragma omp for schedule(static)
		for (int j = 0; j < out; j++) {
			const float *restrict wj = lg->w + (int64_t)j * in;
			const float ab = lg->b ? fabsf(lg->b[j]) : 0.0f;

			for (int row = 0; row < rows; row++) {
				const float *restrict xr = ax + (int64_t)row * in;
				float *restrict tr = t + (int64_t)row * in;
				float den = 0.0f, s;

#pragma omp simd reduction(+:den)
				for (int i = 0; i < in; i++)
					den += fabsf(wj[i]) * xr[i];
				den += ab;
				if (!(den > DLB_TINY))
					continue;
				s = r[(int64_t)row * out + j] / den;
				if (s == 0.0f)
					continue;
#pragma omp simd
				for (int i = 0; i < in; i++)
					tr[i] += fabsf(wj[i]) * s;
			}
		}
	}
	for (int k = 1; k < nt; k++)
		for (int64_t i = 0; i < per_t; i++)
			acc[i] += acc[k * per_t + i];
	lin_gather(ax, acc, d, per_t);
	return IAP_OK;
}

/*
 * Default dense/conv rule: R_in_i = Σ_j |W_ji x_i| / (P_j + N_j + |b_j|) · R_j,
 * the bias share dropped; D_j = 0 drops R_j.
 */
static int rule_lin(struct iap_rule_ctx *ctx)
{
	struct lin_geom lg;
	float *buf, *aw, *ax, *c, *t;
	int neg, rc;

	if (!ctx->r_in[0])
		return IAP_OK;
	rc = lin_geom_of(ctx, &lg);
	if (rc)
		return rc;

	const float *x = ctx->in[0]->data, *r = ctx->r_out->data;
	float *d = ctx->r_in[0]->data;
	const int64_t n_w = lg.n_w, n_in = lg.n_in, n_out = lg.n_out;

	/* |x| is x itself after a ReLU: no copy then. */
	neg = any_negative(x, n_in);
	if (!lg.conv && lg.rows <= DLB_FUSED_ROWS)
		return lin_rows_fused(ctx, &lg, x, neg, r, d);
	buf = iap_graph_workspace(ctx->graph,
				  (size_t)(n_w + (neg ? 2 : 1) * n_in + n_out) + lg.ws_len, ctx->err);
	if (!buf)
		return ws_error(ctx);
	aw = buf;
	t = aw + n_w;
	c = t + n_in;
	lg.ws = c + n_out;
	ax = neg ? lg.ws + lg.ws_len : (float *)x;
	if (neg)
		abs_fill(x, ax, n_in);
	abs_fill(lg.w, aw, n_w);
	memset(t, 0, (size_t)n_in * sizeof(float));
	lin_fwd(&lg, ax, aw, c);        /* c = P + N per output */
	lin_shares(&lg, r, c);
	lin_bwd(&lg, c, aw, t);         /* t = |W|ᵀ c */
	lin_gather(ax, t, d, n_in);
	return IAP_OK;
}

void dlb_contrast_coef(double P, double N, double b, double rp, double rn,
		       double *ap, double *bp, double *an, double *bn)
{
	double pagg, nagg, t;
	int sign = 1;

	*ap = *bp = *an = *bn = 0.0;
	if (P > 0.0 && !(N > 0.0)) {            /* only positive contributions */
		*ap = rp / P;
		*an = rn / P;
		return;
	}
	if (N > 0.0 && !(P > 0.0)) {            /* only negative contributions */
		*bp = rp / N;
		*bn = rn / N;
		return;
	}
	if (!(P > 0.0))                         /* nothing contributes */
		return;
	t = P + b - N;
	if (t > 0.0) {
		if (rp > rn) {
			pagg = rp;
			nagg = rn;
		} else {
			pagg = rn;
			nagg = rp;
			sign = -1;
		}
	} else if (t < 0.0) {
		if (rp < rn) {
			pagg = rp;
			nagg = rn;
		} else {
			pagg = rn;
			nagg = rp;
			sign = -1;
		}
	} else {
		return;                         /* T = 0: both dropped */
	}
	if (sign > 0) {
		*ap = pagg / P;                 /* positive map from z > 0 */
		*bn = nagg / N;                 /* negative map from z < 0 */
	} else {
		*an = pagg / P;                 /* negative map from z > 0 */
		*bp = nagg / N;                 /* positive map from z < 0 */
	}
}

/*
 * Contrast dense/conv rule: (R+, R-) at the output → positive and negative
 * maps at the input (added to out_p, out_n). With Wp = max(W,0),
 * Wm = max(-W,0), xp = max(x,0), xm = max(-x,0):
 *   P = Wp⋆xp + Wm⋆xm,  N = Wp⋆xm + Wm⋆xp,
 *   Σ_j [z_ji > 0] z_ji a_j + [z_ji < 0] |z_ji| b_j
 *     = xp ⊙ (Wpᵀa + Wmᵀb) + xm ⊙ (Wmᵀa + Wpᵀb).
 */
static int lin_contrast(struct iap_rule_ctx *ctx, const float *rp, const float *rn, float *out_p,
			float *out_n)
{
	struct lin_geom lg;
	float *buf, *wp, *wm, *xp, *xm, *P, *N, *tmp, *co[4], *u, *v;
	int rc;

	rc = lin_geom_of(ctx, &lg);
	if (rc)
		return rc;
	const int64_t n_w = lg.n_w, n_in = lg.n_in, n_out = lg.n_out;

	buf = iap_graph_workspace(ctx->graph, (size_t)(2 * n_w + 4 * n_in + 7 * n_out) + lg.ws_len,
				  ctx->err);
	if (!buf)
		return ws_error(ctx);
	wp = buf;
	wm = wp + n_w;
	xp = wm + n_w;
	xm = xp + n_in;
	u = xm + n_in;
	v = u + n_in;
	P = v + n_in;
	N = P + n_out;
	tmp = N + n_out;
	for (int k = 0; k < 4; k++)
		co[k] = tmp + (k + 1) * n_out;
	lg.ws = co[3] + n_out;

	const float *x = ctx->in[0]->data;

	for (int64_t i = 0; i < n_w; i++) {
		wp[i] = lg.w[i] > 0.0f ? lg.w[i] : 0.0f;
		wm[i] = lg.w[i] < 0.0f ? -lg.w[i] : 0.0f;
	}
	for (int64_t i = 0; i < n_in; i++) {
		xp[i] = x[i] > 0.0f ? x[i] : 0.0f;
		xm[i] = x[i] < 0.0f ? -x[i] : 0.0f;
	}
	lin_fwd(&lg, xp, wp, P);
	lin_fwd(&lg, xm, wm, tmp);
	for (int64_t j = 0; j < n_out; j++)
		P[j] += tmp[j];
	lin_fwd(&lg, xm, wp, N);
	lin_fwd(&lg, xp, wm, tmp);
	for (int64_t j = 0; j < n_out; j++) {
		double ap, bp, an, bn;

		N[j] += tmp[j];
		dlb_contrast_coef(P[j] > DLB_TINY ? P[j] : 0.0, N[j] > DLB_TINY ? N[j] : 0.0,
				  lin_bias(&lg, j), rp[j], rn[j], &ap, &bp, &an, &bn);
		co[0][j] = (float)ap;
		co[1][j] = (float)bp;
		co[2][j] = (float)an;
		co[3][j] = (float)bn;
	}
	for (int m = 0; m < 2; m++) {
		const float *a = co[2 * m], *b = co[2 * m + 1];
		float *o = m ? out_n : out_p;

		memset(u, 0, (size_t)n_in * sizeof(float));
		memset(v, 0, (size_t)n_in * sizeof(float));
		lin_bwd(&lg, a, wp, u);
		lin_bwd(&lg, b, wm, u);
		lin_bwd(&lg, a, wm, v);
		lin_bwd(&lg, b, wp, v);
		for (int64_t i = 0; i < n_in; i++)
			o[i] += xp[i] * u[i] + xm[i] * v[i];
	}
	return IAP_OK;
}

/* ---- attention --------------------------------------------------------------------- */

struct attn_dims {
	int64_t n;
	int t, d, h, dh;
};

static void attn_dims_of(const struct iap_node *node, const struct iap_tensor *qkv,
			 struct attn_dims *a)
{
	a->n = qkv->shape[0];
	a->t = (int)qkv->shape[1];
	a->d = node->attr.attn.dim;
	a->h = node->attr.attn.num_heads;
	a->dh = a->d / a->h;
}

/*
 * At O = A V (DLBacktrace's calculate_wt_self_attention, first half):
 *   Rn = R_O / stab(2·O),  R_A = (Rn Vᵀ) ⊙ A,  R_V = (Aᵀ Rn) ⊙ V,
 * so Σ R_A = Σ R_V = ½ Σ R_O up to the stabiliser.
 */
static int rule_attn_context(struct iap_rule_ctx *ctx)
{
	struct attn_dims a;
	float *buf, *rn, *m0;

	if (!ctx->r_in[0] && !ctx->r_in[1])
		return IAP_OK;
	attn_dims_of(ctx->node, ctx->in[1], &a);
	if (iap_tensor_numel(ctx->r_out) != iap_tensor_numel(ctx->out) ||
	    iap_tensor_numel(ctx->in[0]) != a.n * a.h * a.t * a.t)
		return size_error(ctx);
	const int64_t n_o = iap_tensor_numel(ctx->out);
	const int ld = 3 * a.d;
	/* Heads split over the team, each thread with its own product scratch (heads write disjoint outputs). */
	const int64_t per_t = (int64_t)a.t * a.t + (int64_t)a.t * a.dh;
	const int nt = iap_par_threads(4.0 * a.n * a.h * (double)a.t * a.t * a.dh, IAP_GEMM_GRAIN);

	buf = iap_graph_workspace(ctx->graph, (size_t)(n_o + nt * per_t), ctx->err);
	if (!buf)
		return ws_error(ctx);
	rn = buf;
	m0 = rn + n_o;

	const float *o = ctx->out->data, *r = ctx->r_out->data;

#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt(n_o))
	for (int64_t i = 0; i < n_o; i++)
		rn[i] = r[i] / dlb_stab(2.0f * o[i], DLB_ATTN_EPS);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
	for (int64_t nh = 0; nh < a.n * a.h; nh++) {
		const int64_t n = nh / a.h;
		const int h = (int)(nh % a.h);
		const float *v = ctx->in[1]->data + n * a.t * ld + 2 * a.d;
		const float *rnn = rn + n * a.t * a.d;
		float *m = m0 + (int64_t)dlb_thread_num() * per_t;

		{
			const int64_t woff = (n * a.h + h) * a.t * a.t;
			const float *w = ctx->in[0]->data + woff;

			if (ctx->r_in[0]) {
				float *ra = ctx->r_in[0]->data + woff;

				iap_sgemm(0, 1, a.t, a.t, a.dh, 1.0f,
					    rnn + h * a.dh, a.d, v + h * a.dh, ld, 0.0f, m, a.t);
#pragma omp simd
				for (int64_t i = 0; i < (int64_t)a.t * a.t; i++)
					ra[i] += m[i] * w[i];
			}
			if (ctx->r_in[1]) {
				float *rv = ctx->r_in[1]->data + n * a.t * ld + 2 * a.d + h * a.dh;

				iap_sgemm(1, 0, a.t, a.dh, a.t, 1.0f,
					    w, a.t, rnn + h * a.dh, a.d, 0.0f, m, a.dh);
				for (int s = 0; s < a.t; s++)
					for (int k = 0; k < a.dh; k++)
						rv[(int64_t)s * ld + k] += m[s * a.dh + k] * v[(int64_t)s * ld + h * a.dh + k];
			}
		}
	}
	return IAP_OK;
}

/*
 * At S = Q Kᵀ (second half; the softmax between is passed through, as the
 * reference uses R on A as R on S): with S unscaled,
 *   Rn2 = R_S / stab(2·S),  R_Q = (Rn2 K) ⊙ Q,  R_K = (Rn2ᵀ Q) ⊙ K,
 * so Σ R_Q = Σ R_K = ½ Σ R_S. The node's output is S/√dh; it is unscaled here.
 */
static int rule_attn_scores(struct iap_rule_ctx *ctx)
{
	struct attn_dims a;
	float *buf;

	if (!ctx->r_in[0])
		return IAP_OK;
	attn_dims_of(ctx->node, ctx->in[0], &a);
	if (iap_tensor_numel(ctx->r_out) != iap_tensor_numel(ctx->out) ||
	    iap_tensor_numel(ctx->out) != a.n * a.h * a.t * a.t ||
	    iap_tensor_numel(ctx->r_in[0]) != iap_tensor_numel(ctx->in[0]))
		return size_error(ctx);
	const int ld = 3 * a.d;
	const float unscale = sqrtf((float)a.dh);
	const int64_t tt = (int64_t)a.t * a.t;
	/* As at the context: heads over the team, scratch per thread, disjoint q and k columns per head. */
	const int64_t per_t = tt + (int64_t)a.t * a.dh;
	const int nt = iap_par_threads(4.0 * a.n * a.h * (double)tt * a.dh, IAP_GEMM_GRAIN);

	buf = iap_graph_workspace(ctx->graph, (size_t)(nt * per_t), ctx->err);
	if (!buf)
		return ws_error(ctx);
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
	for (int64_t nh = 0; nh < a.n * a.h; nh++) {
		const int64_t n = nh / a.h;
		const int h = (int)(nh % a.h);
		const float *base = ctx->in[0]->data + n * a.t * ld;
		float *rbase = ctx->r_in[0]->data + n * a.t * ld;
		float *rn2 = buf + (int64_t)dlb_thread_num() * per_t, *m = rn2 + tt;

		{
			const int64_t soff = (n * a.h + h) * tt;
			const float *s = ctx->out->data + soff, *r = ctx->r_out->data + soff;
			const float *q = base + h * a.dh, *k = base + a.d + h * a.dh;

#pragma omp simd
			for (int64_t i = 0; i < tt; i++)
				rn2[i] = r[i] / dlb_stab(2.0f * s[i] * unscale, DLB_ATTN_EPS);
			iap_sgemm(0, 0, a.t, a.dh, a.t, 1.0f,
				    rn2, a.t, k, ld, 0.0f, m, a.dh);
			for (int t = 0; t < a.t; t++)
				for (int c = 0; c < a.dh; c++)
					rbase[(int64_t)t * ld + h * a.dh + c] += m[t * a.dh + c] * q[(int64_t)t * ld + c];
			iap_sgemm(1, 0, a.t, a.dh, a.t, 1.0f,
				    rn2, a.t, q, ld, 0.0f, m, a.dh);
			for (int t = 0; t < a.t; t++)
				for (int c = 0; c < a.dh; c++)
					rbase[(int64_t)t * ld + a.d + h * a.dh + c] +=
						m[t * a.dh + c] * k[(int64_t)t * ld + c];
		}
	}
	return IAP_OK;
}

/* ---- the rule table ------------------------------------------------------------------ */

static const iap_rule_fn default_rules[IAP_OP_COUNT] = {
	[IAP_OP_CONV2D] = rule_lin,
	[IAP_OP_LINEAR] = rule_lin,
	[IAP_OP_RELU] = rule_pass,
	[IAP_OP_GELU] = rule_pass,
	[IAP_OP_MAXPOOL2D] = rule_maxpool,
	[IAP_OP_AVGPOOL2D] = rule_avgpool,
	[IAP_OP_ADAPTIVE_AVGPOOL2D] = rule_avgpool,
	[IAP_OP_BATCHNORM2D] = rule_pass,
	[IAP_OP_LAYERNORM] = rule_pass,
	[IAP_OP_DROPOUT] = rule_pass,
	[IAP_OP_FLATTEN] = rule_reshape,
	[IAP_OP_ADD] = rule_add,
	[IAP_OP_SOFTMAX] = rule_pass,
	[IAP_OP_TOKENS] = rule_reshape,
	[IAP_OP_CLASS_TOKEN] = rule_reshape,
	[IAP_OP_POS_EMBED] = rule_pos_embed,
	[IAP_OP_ATTN_SCORES] = rule_attn_scores,
	[IAP_OP_ATTN_CONTEXT] = rule_attn_context,
	[IAP_OP_TOKEN_SELECT] = rule_reshape,
};

/* ---- contrast mode ---------------------------------------------------------------------- */

/*
 * The walk's prepare in contrast mode, before any node is visited: size the
 * scratch for the largest map, and seed the (R+, R-) channels at the output.
 * R+ is the walk's seed (one-hot × start); R- is the output with the target
 * zeroed (1 − m for a single output below 1), rescaled to sum to the seed's
 * value when its sum is positive, as utils_contrast.py's
 * calculate_start_wt does.
 */
static int contrast_prepare(void *user, struct iap_graph *g, struct iap_tensor *const *seed,
			    struct iap_error *err)
{
	struct dlb_rules *st = user;
	const struct iap_tensor *y = iap_graph_output(g);
	const int mg = iap_graph_node(g, g->output)->mask_group;
	int64_t most = iap_tensor_numel(&g->input);

	for (int i = 0; i < g->n_nodes; i++)
		if (iap_tensor_numel(&iap_graph_node(g, i)->out) > most)
			most = iap_tensor_numel(&iap_graph_node(g, i)->out);
	if ((size_t)(4 * most) > st->tmp_len) {
		float *t = iap_alloc_floats((size_t)(4 * most));

		if (!t)
			return iap_error_set(err, IAP_ENOMEM, "dlb: cannot allocate contrast scratch");
		iap_free(st->tmp);
		st->tmp = t;
		st->tmp_len = (size_t)(4 * most);
	}
	if (y->ndim != 2)
		return iap_error_set(err, IAP_EUNSUPPORTED, "dlb: contrast mode needs [N, classes] outputs");
	/* The masked seed, as the output node's rule will see it, is what both maps start from. */
	if (mg >= 0)
		iap_unit_apply_mask(iap_graph_group(g, mg), seed[DLB_CH_WALK]);

	const int64_t nb = y->shape[0], nc = y->shape[1];

	memcpy(seed[DLB_CH_POS]->data, seed[DLB_CH_WALK]->data, (size_t)(nb * nc) * sizeof(float));
	for (int64_t n = 0; n < nb; n++) {
		const float *s = seed[DLB_CH_WALK]->data + n * nc, *yr = y->data + n * nc;
		float *neg = seed[DLB_CH_NEG]->data + n * nc;
		int64_t t = 0;
		double sum = 0.0;

		for (int64_t k = 1; k < nc; k++)
			if (fabsf(s[k]) > fabsf(s[t]))
				t = k;
		if (s[t] == 0.0f)
			continue; /* nothing to explain in this sample */
		for (int64_t k = 0; k < nc; k++)
			neg[k] = yr[k];
		neg[t] = nc == 1 && yr[t] < 1.0f ? 1.0f - yr[t] : 0.0f;
		for (int64_t k = 0; k < nc; k++)
			sum += neg[k];
		if (sum > 0.0)
			for (int64_t k = 0; k < nc; k++)
				neg[k] = (float)(neg[k] * (s[t] / sum));
	}
	return IAP_OK;
}

/* A view of st->tmp block k shaped like like. */
static struct iap_tensor tmp_view(const struct dlb_rules *st, int k, const struct iap_tensor *like)
{
	struct iap_tensor t = *like;
	const size_t quarter = st->tmp_len / 4;

	t.owns = 0;
	t.data = st->tmp + (size_t)k * quarter;
	memset(t.data, 0, (size_t)iap_tensor_numel(like) * sizeof(float));
	return t;
}

/* Add a map contribution to its (R+ or R-) slot and, weighted, to the walk's tensor. */
static void contrast_scatter(struct iap_tensor *slot, struct iap_tensor *walk, const float *src,
			     float weight)
{
	const int64_t n = iap_tensor_numel(slot);

	for (int64_t i = 0; i < n; i++)
		slot->data[i] += src[i];
	if (walk && weight != 0.0f)
		for (int64_t i = 0; i < n; i++)
			walk->data[i] += weight * src[i];
}

/*
 * Contrast add (proportional): per element the operands are the "inputs" of
 * a unit with unit weights and no bias, split as the dense contrast rule
 * (utils_contrast.py calculate_wt_add). For pos_embed the second operand is
 * the parameter, whose share leaves the walk.
 */
static void contrast_add(const struct iap_rule_ctx *ctx, const float *rp, const float *rn,
			 float *const out[4])
{
	const int pe = ctx->node->kind == IAP_OP_POS_EMBED;
	const int64_t n = iap_tensor_numel(ctx->out);
	const int64_t per = pe ? iap_tensor_numel(&ctx->node->params[0].value) : n;
	const float *a = ctx->in[0]->data, *b = pe ? ctx->node->params[0].value.data : ctx->in[1]->data;

	for (int64_t i = 0; i < n; i++) {
		const float v[2] = { a[i], b[i % per] };
		double P = 0.0, N = 0.0, ap, bp, an, bn;

		for (int k = 0; k < 2; k++) {
			if (v[k] > 0.0f)
				P += v[k];
			else
				N -= v[k];
		}
		dlb_contrast_coef(P, N, 0.0, rp[i], rn[i], &ap, &bp, &an, &bn);
		for (int k = 0; k < 2; k++) {
			if (!out[k])
				continue;
			if (v[k] > 0.0f) {
				out[k][i] += (float)(v[k] * ap);
				out[2 + k][i] += (float)(v[k] * an);
			} else if (v[k] < 0.0f) {
				out[k][i] += (float)(-v[k] * bp);
				out[2 + k][i] += (float)(-v[k] * bn);
			}
		}
	}
}

/* The walk's weights of R+ and R- in its own channel (contrast_score). */
static void contrast_weights(const struct dlb_rules *st, float *wp, float *wn)
{
	*wp = st->cfg.contrast_score == DLB_SCORE_NEGATIVE ? 0.0f : 1.0f;
	*wn = st->cfg.contrast_score == DLB_SCORE_NET ? -1.0f
	      : st->cfg.contrast_score == DLB_SCORE_NEGATIVE ? 1.0f : 0.0f;
}

/* Contrast dense/conv: (R+, R-) split jointly into both input maps. */
static int contrast_lin(struct dlb_rules *st, struct iap_rule_ctx *ctx, float wp, float wn)
{
	struct iap_tensor tv[2];
	int rc;

	if (!ctx->r_in[0])
		return IAP_OK;
	tv[0] = tmp_view(st, 0, ctx->in[0]);
	tv[1] = tmp_view(st, 1, ctx->in[0]);
	rc = lin_contrast(ctx, ctx->r_out_ch[DLB_CH_POS]->data, ctx->r_out_ch[DLB_CH_NEG]->data,
			  tv[0].data, tv[1].data);
	if (rc)
		return rc;
	contrast_scatter(ctx->r_in_ch[DLB_CH_POS][0], ctx->r_in[0], tv[0].data, wp);
	contrast_scatter(ctx->r_in_ch[DLB_CH_NEG][0], ctx->r_in[0], tv[1].data, wn);
	return IAP_OK;
}

/* Contrast proportional add / position embedding: the operands split (R+, R-) jointly. */
static int contrast_add_rule(struct dlb_rules *st, struct iap_rule_ctx *ctx, float wp, float wn)
{
	const struct iap_node *node = ctx->node;
	struct iap_tensor tv[4];
	float *out[4] = { NULL, NULL, NULL, NULL };

	if (iap_tensor_numel(ctx->r_out) != iap_tensor_numel(ctx->in[0]))
		return size_error(ctx);
	for (int k = 0; k < node->n_inputs; k++)
		if (ctx->r_in[k]) {
			tv[k] = tmp_view(st, k, ctx->in[k]);
			tv[2 + k] = tmp_view(st, 2 + k, ctx->in[k]);
			out[k] = tv[k].data;
			out[2 + k] = tv[2 + k].data;
		}
	contrast_add(ctx, ctx->r_out_ch[DLB_CH_POS]->data, ctx->r_out_ch[DLB_CH_NEG]->data, out);
	for (int k = 0; k < node->n_inputs; k++)
		if (ctx->r_in[k]) {
			contrast_scatter(ctx->r_in_ch[DLB_CH_POS][k], ctx->r_in[k], out[k], wp);
			contrast_scatter(ctx->r_in_ch[DLB_CH_NEG][k], ctx->r_in[k], out[2 + k], wn);
		}
	return IAP_OK;
}

/*
 * Every op in contrast mode. The node's (R+, R-) travel through the walk as
 * channels DLB_CH_POS and DLB_CH_NEG; dense/conv (and the proportional add)
 * split them jointly, every other op is linear in R and moves R+ and R-
 * separately with its default rule. The walk's own channel gets the
 * combination contrast_score asks for.
 */
static int rule_contrast(struct iap_rule_ctx *ctx)
{
	struct dlb_rules *st = ctx->user;
	const struct iap_node *node = ctx->node;
	const enum iap_op_kind kind = node->kind;
	struct iap_tensor tv[2];
	float wp, wn;
	int rc;

	if (ctx->n_channels != DLB_CHANNELS || !iap_tensor_same_shape(ctx->r_out_ch[DLB_CH_POS], ctx->out))
		return size_error(ctx);
	contrast_weights(st, &wp, &wn);
	if (kind == IAP_OP_CONV2D || kind == IAP_OP_LINEAR)
		return contrast_lin(st, ctx, wp, wn);
	if ((kind == IAP_OP_ADD || kind == IAP_OP_POS_EMBED) && st->cfg.add_rule == DLB_ADD_PROPORTIONAL)
		return contrast_add_rule(st, ctx, wp, wn);
	for (int m = 0; m < 2; m++) {
		const int ch = m ? DLB_CH_NEG : DLB_CH_POS;
		struct iap_rule_ctx sub = *ctx;

		sub.r_out = ctx->r_out_ch[ch];
		for (int k = 0; k < node->n_inputs; k++)
			if (ctx->r_in[k]) {
				tv[k] = tmp_view(st, k, ctx->in[k]);
				sub.r_in[k] = &tv[k];
			}
		rc = default_rules[kind](&sub);
		if (rc)
			return rc;
		for (int k = 0; k < node->n_inputs; k++)
			if (ctx->r_in[k])
				contrast_scatter(ctx->r_in_ch[ch][k], ctx->r_in[k], tv[k].data, m ? wn : wp);
	}
	return IAP_OK;
}

/* ---- set-up ------------------------------------------------------------------------------- */

void dlb_rules_init(struct dlb_rules *r, const struct dlb_cfg *cfg)
{
	const int contrast = cfg->mode == DLB_MODE_CONTRAST;

	memset(r, 0, sizeof(*r));
	r->cfg = *cfg;
	r->rs.size = sizeof(r->rs);
	r->rs.n_rules = IAP_OP_COUNT;
	r->rs.name = contrast ? "dlb-contrast" : "dlb";
	r->rs.user = r;
	r->rs.n_channels = contrast ? DLB_CHANNELS : 1;
	r->rs.prepare = contrast ? contrast_prepare : NULL;
	for (int k = 0; k < IAP_OP_COUNT; k++)
		r->rs.rules[k] = contrast && default_rules[k] ? rule_contrast : default_rules[k];
}

void dlb_rules_release(struct dlb_rules *r)
{
	iap_free(r->tmp);
	r->tmp = NULL;
	r->tmp_len = 0;
}
