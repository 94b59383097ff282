/*
 * LRP rules, one per op kind, for the core's backward walk. What flows
 * backwards is the relevance itself (as in zennit: R, not R/x); each rule
 * ADDS the relevance of its inputs into ctx->r_in[].
 *
 * Conv and linear layers share one engine that follows zennit's BasicHook:
 * a rule is a list of terms, each re-running the layer on a modified input
 * x⁽ᵏ⁾ with modified parameters θ⁽ᵏ⁾. Terms are summed (with a sign) into one
 * or two denominators D, and the relevance returned is
 *     R_in = Σ_k c_k · x⁽ᵏ⁾ ⊙ J_kᵀ (R / stab(D_group(k))),
 * where stab(z) = z + ε·sign(z) with sign(0) = +1. A BatchNorm directly after
 * a conv is folded into the conv's weights and bias here (exactly: with the
 * statistics the forward used), and the BN node itself passes relevance on.
 *
 * Other ops: ReLU/GELU/dropout/flatten/token plumbing pass or route like the
 * gradient, maxpool is winner-take-all (its gradient), average pools and the
 * residual add split in proportion to their inputs (zennit's Norm), and the
 * transformer pieces follow AttnLRP (LayerNorm linear in x with the std held
 * constant, softmax R_i = x_i (R_i − s_i ΣR), QKᵀ and A·V split uniformly over
 * their two operands) or CP-LRP (A·V treated as linear in V alone).
 *
 * No division ever yields NaN: a zero denominator sends no relevance.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "lrp.h"

#define LRP_OMP_MIN 32768

/* R / stab(z): z pushed away from 0 by ε in its own direction (sign(0) = +1); 0 if still 0. */
static inline float stab_div(float r, float z, float eps)
{
	float d = z + (z >= 0.0f ? eps : -eps);

	return d != 0.0f ? r / d : 0.0f;
}

/* A view of n floats of scratch as a tensor shaped like t. */
static struct iap_tensor view_like(const struct iap_tensor *t, float *data)
{
	struct iap_tensor v = *t;

	v.data = data;
	v.owns = 0;
	return v;
}

/* ---- the conv/linear engine ---------------------------------------------------- */

enum xmod { XM_ID, XM_POS, XM_NEG, XM_ONES, XM_LOW, XM_HIGH };
enum wmod { WM_ID, WM_POS, WM_NEG, WM_ONES, WM_SQ, WM_GPOS, WM_GNEG, WM_ZERO };
enum gmask { GM_NONE, GM_ZPOS, GM_ZNEG };

struct term {
	enum xmod x;
	enum wmod w, b;        /* modifier of the weight and of the bias */
	int grp;               /* which denominator */
	float dcoef;           /* sign in the denominator sum */
	float rcoef;           /* weight in the relevance sum */
};

#define MAX_TERMS 4

struct rule_terms {
	int n, n_groups;
	struct term t[MAX_TERMS];
	enum gmask mask[2];
	float eps;
};

/* zennit's rules as term lists (rules.py: Epsilon, ZPlus, AlphaBeta, Gamma, Flat, WSquare, ZBox). */
static int rule_terms_of(enum lrp_rule rule, const struct lrp_params *p, struct rule_terms *rt,
			 struct iap_error *err)
{
	const float a = p->alpha, b = p->beta;

	memset(rt, 0, sizeof(*rt));
	rt->n_groups = 1;
	rt->eps = p->stabilizer;
	switch (rule) {
	case LRP_RULE_EPSILON:
		rt->eps = p->epsilon;
		rt->t[rt->n++] = (struct term){ XM_ID, WM_ID, WM_ID, 0, 1, 1 };
		break;
	case LRP_RULE_ZPLUS:
		rt->t[rt->n++] = (struct term){ XM_POS, WM_POS, WM_POS, 0, 1, 1 };
		rt->t[rt->n++] = (struct term){ XM_NEG, WM_NEG, WM_ZERO, 0, 1, 1 };
		break;
	case LRP_RULE_ALPHABETA:
		rt->n_groups = 2;
		rt->t[rt->n++] = (struct term){ XM_POS, WM_POS, WM_POS, 0, 1, a };
		rt->t[rt->n++] = (struct term){ XM_NEG, WM_NEG, WM_ZERO, 0, 1, a };
		rt->t[rt->n++] = (struct term){ XM_POS, WM_NEG, WM_NEG, 1, 1, -b };
		rt->t[rt->n++] = (struct term){ XM_NEG, WM_POS, WM_ZERO, 1, 1, -b };
		break;
	case LRP_RULE_GAMMA:
		/* Outputs with z > 0 use the first pair, z < 0 the second; z == 0 is dropped. */
		rt->n_groups = 2;
		rt->mask[0] = GM_ZPOS;
		rt->mask[1] = GM_ZNEG;
		rt->t[rt->n++] = (struct term){ XM_POS, WM_GPOS, WM_GPOS, 0, 1, 1 };
		rt->t[rt->n++] = (struct term){ XM_NEG, WM_GNEG, WM_ZERO, 0, 1, 1 };
		rt->t[rt->n++] = (struct term){ XM_POS, WM_GNEG, WM_GNEG, 1, 1, 1 };
		rt->t[rt->n++] = (struct term){ XM_NEG, WM_GPOS, WM_ZERO, 1, 1, 1 };
		break;
	case LRP_RULE_FLAT:
		rt->t[rt->n++] = (struct term){ XM_ONES, WM_ONES, WM_ZERO, 0, 1, 1 };
		break;
	case LRP_RULE_WSQUARE:
		rt->t[rt->n++] = (struct term){ XM_ONES, WM_SQ, WM_SQ, 0, 1, 1 };
		break;
	case LRP_RULE_ZBOX:
		if (!p->low || !p->high)
			return iap_error_set(err, IAP_EINVAL, "zbox rule needs low and high bounds");
		rt->t[rt->n++] = (struct term){ XM_ID, WM_ID, WM_ID, 0, 1, 1 };
		rt->t[rt->n++] = (struct term){ XM_LOW, WM_POS, WM_POS, 0, -1, -1 };
		rt->t[rt->n++] = (struct term){ XM_HIGH, WM_NEG, WM_NEG, 0, -1, -1 };
		break;
	default:
		return iap_error_set(err, IAP_EINVAL, "no such LRP rule (%d)", (int)rule);
	}
	return IAP_OK;
}

/* A conv or a linear layer on raw buffers. */
struct lin_layer {
	int is_conv;
	struct iap_conv_geom cg;
	int64_t rows;
	int in, out;
	int64_t nx, ny, nw;     /* input, output, weight elements */
	int64_t in_ch, in_inner;   /* input element i has channel (i / in_inner) % in_ch */
	int64_t out_inner;         /* output element j has channel (j / out_inner) % out */
	float *cws;                /* conv scratch (iap_conv2d_workspace floats) */
};

static void lin_fwd(const struct lin_layer *L, const float *x, const float *w, const float *b, float *y)
{
	if (L->is_conv)
		iap_conv2d_forward_raw(&L->cg, x, w, b, y, L->cws);
	else
		iap_linear_forward_raw(L->rows, L->in, L->out, x, w, b, y);
}

/* dx += Jᵀ dy for weights w. */
static void lin_bwd(const struct lin_layer *L, const float *dy, const float *w, float *dx)
{
	if (L->is_conv)
		iap_conv2d_backward_input_raw(&L->cg, dy, w, dx, L->cws);
	else
		iap_linear_backward_input_raw(L->rows, L->in, L->out, dy, w, dx);
}

static size_t lin_scratch(const struct lin_layer *L)
{
	/* xm, tmp | D0, D1, z, yt | wm, bm | conv scratch */
	return (size_t)(2 * L->nx + 4 * L->ny + L->nw + L->out) +
	       (L->is_conv ? iap_conv2d_workspace(&L->cg) : 0);
}

static inline float wmod_apply(enum wmod m, float v, float gamma)
{
	switch (m) {
	case WM_ID: return v;
	case WM_POS: return v > 0.0f ? v : 0.0f;
	case WM_NEG: return v < 0.0f ? v : 0.0f;
	case WM_ONES: return 1.0f;
	case WM_SQ: return v * v;
	case WM_GPOS: return v + gamma * (v > 0.0f ? v : 0.0f);
	case WM_GNEG: return v + gamma * (v < 0.0f ? v : 0.0f);
	case WM_ZERO: return 0.0f;
	}
	return 0.0f;
}

static inline float bound_at(const float *v, int nv, int64_t i, const struct lin_layer *L)
{
	return nv == 1 ? v[0] : v[(i / L->in_inner) % L->in_ch];
}

static inline float xmod_apply(enum xmod m, float v, int64_t i, const struct lin_layer *L,
			       const struct lrp_params *p)
{
	switch (m) {
	case XM_ID: return v;
	case XM_POS: return v > 0.0f ? v : 0.0f;
	case XM_NEG: return v < 0.0f ? v : 0.0f;
	case XM_ONES: return 1.0f;
	case XM_LOW: return bound_at(p->low, p->n_low, i, L);
	case XM_HIGH: return bound_at(p->high, p->n_high, i, L);
	}
	return 0.0f;
}

/*
 * One rule on one layer. x, w, b (b may be NULL) are the layer's input and
 * (possibly BN-folded) parameters, r_out the relevance at its output;
 * the result is added to r_in. ws holds lin_scratch(L) floats.
 */
static int lin_rule(enum lrp_rule rule, const struct lrp_params *p, const struct lin_layer *L,
		    const float *x, const float *w, const float *b, const float *r_out, float *r_in,
		    float *ws, struct iap_error *err)
{
	struct rule_terms rt;
	float *xm = ws, *tmp = xm + L->nx;
	float *D[2] = { tmp + L->nx, tmp + L->nx + L->ny };
	float *z = D[1] + L->ny, *yt = z + L->ny;
	float *wm = yt + L->ny, *bm = wm + L->nw;
	struct lin_layer Lc = *L;
	int has_pos = 0, has_neg = 0;
	int rc;

	rc = rule_terms_of(rule, p, &rt, err);
	if (rc)
		return rc;
	if (rule == LRP_RULE_ZBOX &&
	    ((p->n_low != 1 && p->n_low != L->in_ch) || (p->n_high != 1 && p->n_high != L->in_ch)))
		return iap_error_set(err, IAP_EINVAL,
				     "zbox bounds have %d/%d values, the layer has %lld input channels",
				     p->n_low, p->n_high, (long long)L->in_ch);
	Lc.cws = bm + L->out;
	L = &Lc;
	for (int64_t i = 0; i < L->nx; i++) {
		has_pos |= x[i] > 0.0f;
		has_neg |= x[i] < 0.0f;
	}
	for (int gi = 0; gi < rt.n_groups; gi++)
		memset(D[gi], 0, (size_t)L->ny * sizeof(float));
	if (rt.mask[0] != GM_NONE || rt.mask[1] != GM_NONE)
		lin_fwd(L, x, w, b, z);  /* zennit's NoMod term: real bias even with zero_bias */

	/* Denominators: Σ_k dcoef_k · layer(x⁽ᵏ⁾; θ⁽ᵏ⁾). */
	for (int k = 0; k < rt.n; k++) {
		const struct term *t = &rt.t[k];
		int empty = (t->x == XM_POS && !has_pos) || (t->x == XM_NEG && !has_neg);
		int any_bias = 0;
		const float *xk = x, *wk = w;
		float *Dg = D[t->grp];

		for (int o = 0; o < L->out; o++) {
			bm[o] = (b && !p->zero_bias) ? wmod_apply(t->b, b[o], p->gamma) : 0.0f;
			any_bias |= bm[o] != 0.0f;
		}
		if (empty) {
			/* The input part is all zero: only the bias reaches the output. */
			if (any_bias)
				for (int64_t j = 0; j < L->ny; j++)
					Dg[j] += t->dcoef * bm[(j / L->out_inner) % L->out];
			continue;
		}
		if (t->x != XM_ID) {
#pragma omp parallel for schedule(static) if (L->nx > LRP_OMP_MIN)
			for (int64_t i = 0; i < L->nx; i++)
				xm[i] = xmod_apply(t->x, x[i], i, L, p);
			xk = xm;
		}
		if (t->w != WM_ID) {
			for (int64_t i = 0; i < L->nw; i++)
				wm[i] = wmod_apply(t->w, w[i], p->gamma);
			wk = wm;
		}
		lin_fwd(L, xk, wk, any_bias ? bm : NULL, yt);
#pragma omp parallel for schedule(static) if (L->ny > LRP_OMP_MIN)
		for (int64_t j = 0; j < L->ny; j++)
			Dg[j] += t->dcoef * yt[j];
	}
	/* s_g = R / stab(D_g), masked by the sign of z where the rule says so. */
	for (int gi = 0; gi < rt.n_groups; gi++) {
		float *Dg = D[gi];
		enum gmask m = rt.mask[gi];

#pragma omp parallel for schedule(static) if (L->ny > LRP_OMP_MIN)
		for (int64_t j = 0; j < L->ny; j++) {
			int keep = m == GM_NONE || (m == GM_ZPOS && z[j] > 0.0f) ||
				   (m == GM_ZNEG && z[j] < 0.0f);

			Dg[j] = keep ? stab_div(r_out[j], Dg[j], rt.eps) : 0.0f;
		}
	}
	/* R_in += Σ_k rcoef_k · x⁽ᵏ⁾ ⊙ J_kᵀ s_g. */
	for (int k = 0; k < rt.n; k++) {
		const struct term *t = &rt.t[k];
		const float *wk = w;
		const float rc_k = t->rcoef;

		if ((t->x == XM_POS && !has_pos) || (t->x == XM_NEG && !has_neg) || rc_k == 0.0f)
			continue;
		if (t->w != WM_ID) {
			for (int64_t i = 0; i < L->nw; i++)
				wm[i] = wmod_apply(t->w, w[i], p->gamma);
			wk = wm;
		}
		memset(tmp, 0, (size_t)L->nx * sizeof(float));
		lin_bwd(L, D[t->grp], wk, tmp);
#pragma omp parallel for schedule(static) if (L->nx > LRP_OMP_MIN)
		for (int64_t i = 0; i < L->nx; i++)
			r_in[i] += rc_k * xmod_apply(t->x, x[i], i, L, p) * tmp[i];
	}
	return IAP_OK;
}

int lrp_dense_raw(enum lrp_rule rule, const struct lrp_params *p, int64_t rows, int in, int out,
		  const float *x, const float *w, const float *b, const float *r_out, float *r_in,
		  struct iap_error *err)
{
	struct lin_layer L = {
		.is_conv = 0, .rows = rows, .in = in, .out = out,
		.nx = rows * in, .ny = rows * out, .nw = (int64_t)in * out,
		.in_ch = in, .in_inner = 1, .out_inner = 1,
	};
	float *ws = malloc(lin_scratch(&L) * sizeof(float));
	int rc;

	if (!ws)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	rc = lin_rule(rule, p, &L, x, w, b, r_out, r_in, ws, err);
	free(ws);
	return rc;
}

/* ---- rules per op ------------------------------------------------------------ */

static int plan_ready(struct lrp_state *st, struct iap_rule_ctx *ctx)
{
	if (st->g == ctx->graph && st->n_nodes == ctx->graph->n_nodes)
		return IAP_OK;
	return lrp_plan(st, ctx->graph, ctx->err);
}

/* Conv and linear: the planned rule, with a following BatchNorm folded in. */
static int rule_linear_type(struct iap_rule_ctx *ctx)
{
	struct lrp_state *st = ctx->user;
	const struct iap_node *n = ctx->node;
	const struct iap_tensor *x = ctx->in[0];
	const float *w = n->params[0].value.data, *b = NULL;
	struct lin_layer L = { 0 };
	int has_bias, bn, rc;
	size_t need;
	float *ws;

	if (!ctx->r_in[0])
		return IAP_OK;
	rc = plan_ready(st, ctx);
	if (rc)
		return rc;
	if (n->kind == IAP_OP_CONV2D) {
		L.is_conv = 1;
		iap_conv_geom_from_node(&L.cg, n, (int)x->shape[0], x->shape + 1);
		L.out = n->attr.conv.out_ch;
		L.nw = (int64_t)L.out * L.cg.in_ch * L.cg.kh * L.cg.kw;
		L.in_ch = L.cg.in_ch;
		L.in_inner = (int64_t)L.cg.in_h * L.cg.in_w;
		L.out_inner = (int64_t)L.cg.out_h * L.cg.out_w;
		has_bias = n->attr.conv.has_bias;
	} else {
		L.in = n->attr.linear.in_features;
		L.out = n->attr.linear.out_features;
		L.rows = iap_tensor_numel(x) / L.in;
		L.nw = (int64_t)L.in * L.out;
		L.in_ch = L.in;
		L.in_inner = 1;
		L.out_inner = 1;
		has_bias = n->attr.linear.has_bias;
	}
	L.nx = iap_tensor_numel(x);
	L.ny = iap_tensor_numel(ctx->r_out);
	if (L.ny != iap_tensor_numel(ctx->out))
		return iap_error_set(ctx->err, IAP_ESHAPE, "relevance does not match the output");
	if (has_bias)
		b = n->params[1].value.data;
	bn = L.is_conv ? st->fold_bn[n->id] : -1;
	need = lin_scratch(&L) + (bn >= 0 ? (size_t)(L.nw + L.out) : 0);
	ws = iap_graph_workspace(ctx->graph, need, ctx->err);
	if (!ws)
		return ctx->err ? ctx->err->code : IAP_ENOMEM;
	if (bn >= 0) {
		/*
		 * Canonise: y = γ·(conv(x) + b − μ)·istd + β is the conv with
		 * W' = W·s, b' = (b − μ)·s + β, s = γ·istd, using the statistics
		 * the forward actually used (BN aux[0]), so the fold is exact.
		 */
		const struct iap_node *bnn = &ctx->graph->nodes[bn];
		const float *mean = bnn->aux[0].data, *istd = mean + L.out;
		const float *gam = bnn->params[0].value.data, *bet = bnn->params[1].value.data;
		float *wf = ws + lin_scratch(&L), *bf = wf + L.nw;
		const int64_t per = L.nw / L.out;

		if (!bnn->aux[0].data || bnn->aux[0].shape[1] != L.out)
			return iap_error_set(ctx->err, IAP_EINVAL, "batchnorm '%s' has no forward statistics",
					     bnn->name);
		for (int o = 0; o < L.out; o++) {
			float s = gam[o] * istd[o];

			for (int64_t k = 0; k < per; k++)
				wf[o * per + k] = w[o * per + k] * s;
			bf[o] = ((b ? b[o] : 0.0f) - mean[o]) * s + bet[o];
		}
		w = wf;
		b = bf;
	}
	return lin_rule((enum lrp_rule)st->rule[n->id], &st->p, &L, x->data, w, b,
			ctx->r_out->data, ctx->r_in[0]->data, ws, ctx->err);
}

/* R_in = R_out (activations, and a BatchNorm folded into its conv). */
static int rule_pass(struct iap_rule_ctx *ctx)
{
	int64_t nel = iap_tensor_numel(ctx->r_out);
	const float *r = ctx->r_out->data;
	float *ri;

	if (!ctx->r_in[0])
		return IAP_OK;
	if (iap_tensor_numel(ctx->r_in[0]) != nel)
		return iap_error_set(ctx->err, IAP_ESHAPE, "pass rule: input and output sizes differ");
	ri = ctx->r_in[0]->data;
#pragma omp parallel for schedule(static) if (nel > LRP_OMP_MIN)
	for (int64_t i = 0; i < nel; i++)
		ri[i] += r[i];
	return IAP_OK;
}

/*
 * Proportional split through an op without parameters (zennit's Norm, for
 * average pools): R_in = x ⊙ Jᵀ (R / stab(y)), Jᵀ being the op's gradient.
 */
static int rule_norm(struct iap_rule_ctx *ctx)
{
	struct lrp_state *st = ctx->user;
	const int64_t ny = iap_tensor_numel(ctx->out), nx = iap_tensor_numel(ctx->in[0]);
	const float *y = ctx->out->data, *r = ctx->r_out->data, *x = ctx->in[0]->data;
	struct iap_rule_ctx c2 = *ctx;
	struct iap_tensor s_t, tmp_t;
	float *ws, *s, *tmp, *ri;
	int rc;

	if (!ctx->r_in[0])
		return IAP_OK;
	ws = iap_graph_workspace(ctx->graph, (size_t)(ny + nx), ctx->err);
	if (!ws)
		return ctx->err ? ctx->err->code : IAP_ENOMEM;
	s = ws;
	tmp = ws + ny;
	for (int64_t j = 0; j < ny; j++)
		s[j] = stab_div(r[j], y[j], st->p.stabilizer);
	memset(tmp, 0, (size_t)nx * sizeof(float));
	s_t = view_like(ctx->out, s);
	tmp_t = view_like(ctx->in[0], tmp);
	c2.r_out = &s_t;
	c2.r_in[0] = &tmp_t;
	c2.want_param_grads = 0;
	rc = iap_rule_gradient(&c2);
	if (rc)
		return rc;
	ri = ctx->r_in[0]->data;
#pragma omp parallel for schedule(static) if (nx > LRP_OMP_MIN)
	for (int64_t i = 0; i < nx; i++)
		ri[i] += x[i] * tmp[i];
	return IAP_OK;
}

/* Residual add: each operand gets its share a·R/stab(a + b). */
static int rule_add(struct iap_rule_ctx *ctx)
{
	struct lrp_state *st = ctx->user;
	const int64_t n = iap_tensor_numel(ctx->out);
	const float *y = ctx->out->data, *r = ctx->r_out->data;

	for (int k = 0; k < 2; k++) {
		const float *a = ctx->in[k]->data;
		float *ri;

		if (!ctx->r_in[k])
			continue;
		ri = ctx->r_in[k]->data;
#pragma omp parallel for schedule(static) if (n > LRP_OMP_MIN)
		for (int64_t i = 0; i < n; i++)
			ri[i] += a[i] * stab_div(r[i], y[i], st->p.stabilizer);
	}
	return IAP_OK;
}

/*
 * Position embedding y = x + p: p acts as a bias and keeps its share
 * (x·R/stab(y) goes on); with zero_bias the embedding counts as 0: a pass.
 */
static int rule_pos_embed(struct iap_rule_ctx *ctx)
{
	struct lrp_state *st = ctx->user;
	const int64_t n = iap_tensor_numel(ctx->out);
	const float *y = ctx->out->data, *r = ctx->r_out->data, *x = ctx->in[0]->data;
	float *ri;

	if (!ctx->r_in[0])
		return IAP_OK;
	if (st->p.zero_bias)
		return rule_pass(ctx);
	ri = ctx->r_in[0]->data;
#pragma omp parallel for schedule(static) if (n > LRP_OMP_MIN)
	for (int64_t i = 0; i < n; i++)
		ri[i] += x[i] * stab_div(r[i], y[i], st->p.epsilon);
	return IAP_OK;
}

/*
 * BatchNorm: folded into the conv before it → pass. A BN that no conv
 * absorbs is the per-channel affine map y = a·x + c, given the Epsilon rule.
 */
static int rule_batchnorm(struct iap_rule_ctx *ctx)
{
	struct lrp_state *st = ctx->user;
	const struct iap_node *n = ctx->node;
	const struct iap_tensor *x = ctx->in[0];
	int rc;

	if (!ctx->r_in[0])
		return IAP_OK;
	rc = plan_ready(st, ctx);
	if (rc)
		return rc;
	if (st->folded[n->id])
		return rule_pass(ctx);

	const int64_t c = x->shape[1], nel = iap_tensor_numel(x);
	const int64_t inner = nel / (x->shape[0] * c);
	const float *mean = n->aux[0].data, *istd = mean + c;
	const float *gam = n->params[0].value.data, *bet = n->params[1].value.data;
	const float *r = ctx->r_out->data;
	float *ri = ctx->r_in[0]->data;

	if (!n->aux[0].data)
		return iap_error_set(ctx->err, IAP_EINVAL, "batchnorm without forward statistics");
	for (int64_t i = 0; i < nel; i++) {
		int64_t ch = (i / inner) % c;
		float a = gam[ch] * istd[ch];
		float z = a * x->data[i] + (st->p.zero_bias ? 0.0f : bet[ch] - mean[ch] * a);

		ri[i] += a * x->data[i] * stab_div(r[i], z, st->p.epsilon);
	}
	return IAP_OK;
}

/*
 * LayerNorm, AttnLRP's identity on 1/std: with σ held constant the layer is
 * linear in x, y_i = Σ_j w_i (δ_ij − 1/D) x_j / σ + b_i, and gets the Epsilon
 * rule: g = R / stab(y), R_in_j = x_j · (w_j g_j − mean_i(w_i g_i)) / σ.
 */
static int rule_layernorm(struct iap_rule_ctx *ctx)
{
	struct lrp_state *st = ctx->user;
	const struct iap_node *n = ctx->node;
	const struct iap_tensor *xt = ctx->in[0];
	const int64_t d = xt->shape[xt->ndim - 1], total = iap_tensor_numel(xt);
	const int64_t rows = d > 0 ? total / d : 0;
	const float *stats = n->aux[0].data;
	const float *w = n->params[0].value.data, *b = n->params[1].value.data;
	const float *x = xt->data, *r = ctx->r_out->data;
	const float eps = st->p.epsilon;
	const int zb = st->p.zero_bias;
	float *ri, *g;

	if (!ctx->r_in[0])
		return IAP_OK;
	if (!stats || n->aux[0].shape[0] != rows)
		return iap_error_set(ctx->err, IAP_EINVAL, "layernorm without forward statistics");
	g = iap_graph_workspace(ctx->graph, (size_t)total, ctx->err);
	if (!g)
		return ctx->err ? ctx->err->code : IAP_ENOMEM;
	ri = ctx->r_in[0]->data;
#pragma omp parallel for schedule(static) if (total > LRP_OMP_MIN)
	for (int64_t row = 0; row < rows; row++) {
		const float mu = stats[2 * row], is = stats[2 * row + 1];
		const float *xp = x + row * d, *rp = r + row * d;
		float *gp = g + row * d, *op = ri + row * d;
		double m = 0.0;

		for (int64_t k = 0; k < d; k++) {
			float z = (xp[k] - mu) * is * w[k] + (zb ? 0.0f : b[k]);

			gp[k] = w[k] * stab_div(rp[k], z, eps);
			m += gp[k];
		}
		m /= (double)d;
		for (int64_t k = 0; k < d; k++)
			op[k] += xp[k] * is * (float)(gp[k] - m);
	}
	return IAP_OK;
}

/* Softmax (AttnLRP): R_in_i = x_i (R_i − s_i Σ_j R_j) per row, x the scores, s the weights. */
static int rule_softmax(struct iap_rule_ctx *ctx)
{
	const struct iap_tensor *st = ctx->out;
	const int64_t total = iap_tensor_numel(st), cols = st->shape[st->ndim - 1];
	const int64_t rows = cols > 0 ? total / cols : 0;
	const float *s = st->data, *x = ctx->in[0]->data, *r = ctx->r_out->data;
	float *ri;

	if (!ctx->r_in[0])
		return IAP_OK;
	ri = ctx->r_in[0]->data;
#pragma omp parallel for schedule(static) if (total > LRP_OMP_MIN)
	for (int64_t row = 0; row < rows; row++) {
		const float *sp = s + row * cols, *xp = x + row * cols, *rp = r + row * cols;
		float *op = ri + row * cols;
		double sum = 0.0;

		for (int64_t k = 0; k < cols; k++)
			sum += rp[k];
		for (int64_t k = 0; k < cols; k++)
			op[k] += xp[k] * (float)(rp[k] - sp[k] * sum);
	}
	return IAP_OK;
}

/*
 * A bilinear product y = f(A, B) (QKᵀ or A·V): with N = R / stab(share · y),
 * input k receives in_k ⊙ J_kᵀ N. share 2 splits R uniformly over both
 * operands (AttnLRP); CP-LRP gives the whole of A·V to V (share 1, A skipped).
 */
static int rule_bilinear(struct iap_rule_ctx *ctx, float share, int skip_first)
{
	struct lrp_state *st = ctx->user;
	const int64_t ny = iap_tensor_numel(ctx->out);
	int64_t nin[IAP_NODE_MAX_INPUTS] = { 0 };
	struct iap_rule_ctx c2 = *ctx;
	struct iap_tensor n_t, t_in[IAP_NODE_MAX_INPUTS];
	size_t need = (size_t)ny;
	float *ws, *nb, *tmp[IAP_NODE_MAX_INPUTS] = { 0 };
	int any = 0, rc;

	for (int k = 0; k < ctx->node->n_inputs; k++) {
		c2.r_in[k] = NULL;
		if (!ctx->r_in[k] || (k == 0 && skip_first))
			continue;
		nin[k] = iap_tensor_numel(ctx->in[k]);
		need += (size_t)nin[k];
		any = 1;
	}
	if (!any)
		return IAP_OK;
	ws = iap_graph_workspace(ctx->graph, need, ctx->err);
	if (!ws)
		return ctx->err ? ctx->err->code : IAP_ENOMEM;
	nb = ws;
	ws += ny;
	for (int64_t j = 0; j < ny; j++)
		nb[j] = stab_div(ctx->r_out->data[j], share * ctx->out->data[j], st->p.epsilon);
	n_t = view_like(ctx->out, nb);
	for (int k = 0; k < ctx->node->n_inputs; k++) {
		if (!nin[k])
			continue;
		tmp[k] = ws;
		ws += nin[k];
		memset(tmp[k], 0, (size_t)nin[k] * sizeof(float));
		t_in[k] = view_like(ctx->in[k], tmp[k]);
		c2.r_in[k] = &t_in[k];
	}
	c2.r_out = &n_t;
	c2.want_param_grads = 0;
	rc = iap_rule_gradient(&c2);
	if (rc)
		return rc;
	for (int k = 0; k < ctx->node->n_inputs; k++) {
		const float *x = ctx->in[k]->data;
		float *ri;

		if (!nin[k])
			continue;
		ri = ctx->r_in[k]->data;
#pragma omp parallel for schedule(static) if (nin[k] > LRP_OMP_MIN)
		for (int64_t i = 0; i < nin[k]; i++)
			ri[i] += x[i] * tmp[k][i];
	}
	return IAP_OK;
}

static int rule_attn_scores(struct iap_rule_ctx *ctx)
{
	return rule_bilinear(ctx, 2.0f, 0);
}

static int rule_attn_context(struct iap_rule_ctx *ctx)
{
	struct lrp_state *st = ctx->user;

	if (st->p.vit == LRP_VIT_CPLRP)
		return rule_bilinear(ctx, 1.0f, 1);
	return rule_bilinear(ctx, 2.0f, 0);
}

void lrp_ruleset_fill(struct iap_ruleset *rs)
{
	for (int k = 0; k < IAP_OP_COUNT; k++)
		rs->rules[k] = NULL;
	rs->rules[IAP_OP_CONV2D] = rule_linear_type;
	rs->rules[IAP_OP_LINEAR] = rule_linear_type;
	rs->rules[IAP_OP_RELU] = rule_pass;
	rs->rules[IAP_OP_GELU] = rule_pass;
	/* Winner-take-all through the recorded argmax: exactly the gradient. */
	rs->rules[IAP_OP_MAXPOOL2D] = iap_rule_gradient;
	rs->rules[IAP_OP_AVGPOOL2D] = rule_norm;
	rs->rules[IAP_OP_ADAPTIVE_AVGPOOL2D] = rule_norm;
	rs->rules[IAP_OP_BATCHNORM2D] = rule_batchnorm;
	rs->rules[IAP_OP_LAYERNORM] = rule_layernorm;
	/* Identity in evaluation; copies, reshapes and token routing move R like the gradient. */
	rs->rules[IAP_OP_DROPOUT] = iap_rule_gradient;
	rs->rules[IAP_OP_FLATTEN] = iap_rule_gradient;
	rs->rules[IAP_OP_ADD] = rule_add;
	rs->rules[IAP_OP_SOFTMAX] = rule_softmax;
	rs->rules[IAP_OP_TOKENS] = iap_rule_gradient;
	/* The class token's own share stays with it (it is a learned constant). */
	rs->rules[IAP_OP_CLASS_TOKEN] = iap_rule_gradient;
	rs->rules[IAP_OP_POS_EMBED] = rule_pos_embed;
	rs->rules[IAP_OP_ATTN_SCORES] = rule_attn_scores;
	rs->rules[IAP_OP_ATTN_CONTEXT] = rule_attn_context;
	rs->rules[IAP_OP_TOKEN_SELECT] = iap_rule_gradient;
}
