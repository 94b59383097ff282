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
#include <iaprune/threads.h>
#include <iaprune/ops.h>

#include "lrp_rules.h"

/* Element-wise loops split by the engine's work rule (iap_par_nt(), <iaprune/threads.h>). */

/* R / stab(z): z pushed away from 0 by ε in its own direction (sign(0) = +1); 0 if still 0. */
static inline float stab_div(float r, float z, float eps)
{
	float d = z + (z >= 0.0f ? eps : -eps);
	/*
	 * Branch-free, so that the loops calling this vectorise: divide by d
	 * (or by 1 where d is 0) and clear the bits of the quotient where d is 0.
	 */
	uint32_t keep = -(uint32_t)(d != 0.0f), u;
	float q = r / (d + (float)(d == 0.0f));

	memcpy(&u, &q, sizeof(u));
	u &= keep;
	memcpy(&q, &u, sizeof(q));
	return q;
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
	const float *scale;        /* per output channel, or NULL: the weights are w·scale (a folded BN) */
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

static inline float bmod_apply(enum wmod m, float v, float gamma)
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

/*
 * dst = ρ(w·scale) for one modifier. The switch sits outside the loops so
 * each loop is a plain vectorisable map: for VGG's first linear layer this
 * runs over 103 M weights.
 */
static void wmod_fill(enum wmod m, float gamma, const struct lin_layer *L, const float *w, float *dst)
{
	const int64_t per = L->nw / L->out;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(L->nw)))
	for (int o = 0; o < L->out; o++) {
		const float s = L->scale ? L->scale[o] : 1.0f;
		const float *restrict src = w + o * per;
		float *restrict d = dst + o * per;

		switch (m) {
		case WM_ID:
#pragma omp simd
			for (int64_t k = 0; k < per; k++)
				d[k] = src[k] * s;
			break;
		case WM_POS:
#pragma omp simd
			for (int64_t k = 0; k < per; k++) {
				float v = src[k] * s;

				d[k] = v > 0.0f ? v : 0.0f;
			}
			break;
		case WM_NEG:
#pragma omp simd
			for (int64_t k = 0; k < per; k++) {
				float v = src[k] * s;

				d[k] = v < 0.0f ? v : 0.0f;
			}
			break;
		case WM_ONES:
#pragma omp simd
			for (int64_t k = 0; k < per; k++)
				d[k] = 1.0f;
			break;
		case WM_SQ:
#pragma omp simd
			for (int64_t k = 0; k < per; k++) {
				float v = src[k] * s;

				d[k] = v * v;
			}
			break;
		case WM_GPOS:
#pragma omp simd
			for (int64_t k = 0; k < per; k++) {
				float v = src[k] * s;

				d[k] = v + gamma * (v > 0.0f ? v : 0.0f);
			}
			break;
		case WM_GNEG:
#pragma omp simd
			for (int64_t k = 0; k < per; k++) {
				float v = src[k] * s;

				d[k] = v + gamma * (v < 0.0f ? v : 0.0f);
			}
			break;
		case WM_ZERO:
			memset(d, 0, (size_t)per * sizeof(float));
			break;
		}
	}
}

static inline float bound_at(const float *v, int nv, int64_t i, const struct lin_layer *L)
{
	return nv == 1 ? v[0] : v[(i / L->in_inner) % L->in_ch];
}

/* dst = the input modifier m applied to x (m is never XM_ID here). */
static void xmod_fill(enum xmod m, const struct lin_layer *L, const struct lrp_params *p,
		      const float *x, float *dst)
{
	const int64_t nx = L->nx;

	switch (m) {
	case XM_ID:
		memcpy(dst, x, (size_t)nx * sizeof(float));
		break;
	case XM_POS:
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(nx)))
		for (int64_t i = 0; i < nx; i++)
			dst[i] = x[i] > 0.0f ? x[i] : 0.0f;
		break;
	case XM_NEG:
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(nx)))
		for (int64_t i = 0; i < nx; i++)
			dst[i] = x[i] < 0.0f ? x[i] : 0.0f;
		break;
	case XM_ONES:
		for (int64_t i = 0; i < nx; i++)
			dst[i] = 1.0f;
		break;
	case XM_LOW:
		for (int64_t i = 0; i < nx; i++)
			dst[i] = bound_at(p->low, p->n_low, i, L);
		break;
	case XM_HIGH:
		for (int64_t i = 0; i < nx; i++)
			dst[i] = bound_at(p->high, p->n_high, i, L);
		break;
	}
}

/*
 * What one rule needs on one layer, after looking at the input: each term's
 * effective input modifier (x⁺ is x itself when x has no negative entry, as
 * after a ReLU, so no copy is made), which terms see an all-zero input, and
 * the distinct modified weights and inputs to materialise — each once per
 * call, not once per product.
 */
struct lin_plan {
	int empty[MAX_TERMS];
	int wslot[MAX_TERMS], xslot[MAX_TERMS];   /* -1: the unmodified w / x */
	enum wmod wmods[MAX_TERMS];
	enum xmod xmods[MAX_TERMS];
	int n_w, n_x;
	int reuse_z;      /* the single Epsilon term's denominator is the forward's own output */
	int need_z;       /* the sign mask needs z and the forward's output is not at hand */
	int need_yt;      /* a group sums several products */
};

static void lin_plan_make(const struct rule_terms *rt, const struct lrp_params *p,
			  const struct lin_layer *L, const float *x, const float *b, const float *zfwd,
			  struct lin_plan *pl)
{
	int has_pos = 0, has_neg = 0, scan = 0, first[2] = { 1, 1 };

	memset(pl, 0, sizeof(*pl));
	for (int k = 0; k < rt->n; k++)
		scan |= rt->t[k].x == XM_POS || rt->t[k].x == XM_NEG;
	/* In blocks, so that a mixed-sign input stops early and a ReLU output is one vector pass. */
	for (int64_t i0 = 0; scan && i0 < L->nx && !(has_pos && has_neg); i0 += 4096) {
		const int64_t i1 = L->nx - i0 < 4096 ? L->nx : i0 + 4096;

#pragma omp simd reduction(|:has_pos, has_neg)
		for (int64_t i = i0; i < i1; i++) {
			has_pos |= x[i] > 0.0f;
			has_neg |= x[i] < 0.0f;
		}
	}
	for (int k = 0; k < rt->n; k++) {
		const struct term *t = &rt->t[k];
		enum xmod xe = t->x;
		int j;

		if (xe == XM_POS) {
			pl->empty[k] = !has_pos;
			if (!has_neg)
				xe = XM_ID;
		} else if (xe == XM_NEG) {
			pl->empty[k] = !has_neg;
			if (!has_pos)
				xe = XM_ID;
		}
		pl->wslot[k] = pl->xslot[k] = -1;
		if (pl->empty[k]) {
			first[t->grp] = 0;  /* its bias still starts the group's sum */
			continue;
		}
		if (t->w != WM_ID || L->scale) {
			for (j = 0; j < pl->n_w && pl->wmods[j] != t->w; j++)
				;
			if (j == pl->n_w)
				pl->wmods[pl->n_w++] = t->w;
			pl->wslot[k] = j;
		}
		if (xe != XM_ID) {
			for (j = 0; j < pl->n_x && pl->xmods[j] != xe; j++)
				;
			if (j == pl->n_x)
				pl->xmods[pl->n_x++] = xe;
			pl->xslot[k] = j;
		}
		if (!first[t->grp] || t->dcoef != 1.0f)
			pl->need_yt = 1;
		first[t->grp] = 0;
	}
	/*
	 * Epsilon's z is the layer's own output, which the forward kept: no
	 * product needed (unless biases are to count as zero).
	 */
	pl->reuse_z = zfwd && rt->n == 1 && rt->t[0].x == XM_ID && rt->t[0].w == WM_ID &&
		      rt->t[0].b == WM_ID && (!b || !p->zero_bias);
	pl->need_z = (rt->mask[0] != GM_NONE || rt->mask[1] != GM_NONE) && !zfwd;
	if (pl->need_z && L->scale) {
		/* z = layer(x; w·scale): the folded weights themselves. */
		int j;

		for (j = 0; j < pl->n_w && pl->wmods[j] != WM_ID; j++)
			;
		if (j == pl->n_w)
			pl->wmods[pl->n_w++] = WM_ID;
	}
}

/* Floats of scratch lin_rule needs for this plan. */
static size_t lin_scratch(const struct lin_layer *L, const struct lin_plan *pl, int n_groups)
{
	return (size_t)((pl->n_x + 1) * L->nx + (n_groups + pl->need_z + pl->need_yt) * L->ny +
			pl->n_w * L->nw + L->out) +
	       (L->is_conv ? iap_conv2d_workspace(&L->cg) : 0);
}

/* lin_rule's scratch, carved out of one block, and each term's operands. */
struct lin_work {
	float *tmp;                      /* nx: one term's Jᵀ s */
	float *D[2];                     /* ny each: the groups' denominators, then their shares */
	float *z;                        /* ny: layer(x; w·scale) + b when the plan needs it */
	float *yt;                       /* ny: one product when a group sums several */
	float *bm;                       /* out: one term's modified bias */
	float *wsl[MAX_TERMS], *xsl[MAX_TERMS];      /* the distinct modified weights / inputs */
	const float *wk_of[MAX_TERMS], *xk_of[MAX_TERMS];   /* per term: its weights and input */
};

/* Lay lin_scratch() floats at ws out as wk (and the conv kernels' scratch as L->cws). */
static void lin_carve(struct lin_layer *L, const struct lin_plan *pl, const struct rule_terms *rt,
		      float *ws, struct lin_work *wk)
{
	float *cur = ws;

	for (int j = 0; j < pl->n_x; j++, cur += L->nx)
		wk->xsl[j] = cur;
	wk->tmp = cur;
	cur += L->nx;
	wk->D[0] = cur;
	wk->D[1] = rt->n_groups > 1 ? cur + L->ny : NULL;
	cur += rt->n_groups * L->ny;
	wk->z = pl->need_z ? cur : NULL;
	cur += pl->need_z * L->ny;
	wk->yt = pl->need_yt ? cur : NULL;
	cur += pl->need_yt * L->ny;
	for (int j = 0; j < pl->n_w; j++, cur += L->nw)
		wk->wsl[j] = cur;
	wk->bm = cur;
	L->cws = wk->bm + L->out;
}

/*
 * Modified weights and inputs, once each, and each term's operands; where
 * the sign masks need z and the forward's is not at hand, z itself. Returns
 * the z the masks read (zfwd, wk->z, or NULL when no mask needs one).
 */
static const float *lin_operands(const struct rule_terms *rt, const struct lin_plan *pl,
				 const struct lrp_params *p, const struct lin_layer *L, const float *x,
				 const float *w, const float *b, const float *zfwd, struct lin_work *wk)
{
	for (int j = 0; j < pl->n_w; j++)
		wmod_fill(pl->wmods[j], p->gamma, L, w, wk->wsl[j]);
	for (int j = 0; j < pl->n_x; j++)
		xmod_fill(pl->xmods[j], L, p, x, wk->xsl[j]);
	for (int k = 0; k < rt->n; k++) {
		wk->wk_of[k] = pl->wslot[k] < 0 ? w : wk->wsl[pl->wslot[k]];
		wk->xk_of[k] = pl->xslot[k] < 0 ? x : wk->xsl[pl->xslot[k]];
	}
	if (pl->need_z) {
		const float *wz = w;

		for (int j = 0; j < pl->n_w; j++)
			if (L->scale && pl->wmods[j] == WM_ID)
				wz = wk->wsl[j];
		lin_fwd(L, x, wz, b, wk->z);  /* zennit's NoMod term: real bias even with zero_bias */
		return wk->z;
	}
	return zfwd;
}

/* Denominators: Σ_k dcoef_k · layer(x⁽ᵏ⁾; θ⁽ᵏ⁾), the first product of a group written in place. */
static void lin_denominators(const struct rule_terms *rt, const struct lin_plan *pl,
			     const struct lrp_params *p, const struct lin_layer *L, const float *b,
			     struct lin_work *wk, int init[2])
{
	for (int k = 0; k < rt->n && !pl->reuse_z; k++) {
		const struct term *t = &rt->t[k];
		float *Dg = wk->D[t->grp], *bm = wk->bm, *yt = wk->yt;
		int any_bias = 0;

		for (int o = 0; o < L->out; o++) {
			bm[o] = (b && !p->zero_bias) ? bmod_apply(t->b, b[o], p->gamma) : 0.0f;
			any_bias |= bm[o] != 0.0f;
		}
		if (pl->empty[k]) {
			/* The input part is all zero: only the bias reaches the output. */
			if (!init[t->grp])
				memset(Dg, 0, (size_t)L->ny * sizeof(float));
			init[t->grp] = 1;
			if (any_bias)
				for (int64_t j = 0; j < L->ny; j++)
					Dg[j] += t->dcoef * bm[(j / L->out_inner) % L->out];
			continue;
		}
		if (!init[t->grp] && t->dcoef == 1.0f) {
			lin_fwd(L, wk->xk_of[k], wk->wk_of[k], any_bias ? bm : NULL, Dg);
			init[t->grp] = 1;
			continue;
		}
		lin_fwd(L, wk->xk_of[k], wk->wk_of[k], any_bias ? bm : NULL, yt);
		if (!init[t->grp]) {
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(L->ny)))
			for (int64_t j = 0; j < L->ny; j++)
				Dg[j] = t->dcoef * yt[j];
		} else {
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(L->ny)))
			for (int64_t j = 0; j < L->ny; j++)
				Dg[j] += t->dcoef * yt[j];
		}
		init[t->grp] = 1;
	}
}

/* s_g = R / stab(D_g), masked by the sign of z where the rule says so (in place of D_g). */
static void lin_group_shares(const struct rule_terms *rt, const struct lin_plan *pl,
			     const struct lin_layer *L, const float *zfwd, const float *r_out,
			     struct lin_work *wk, const int init[2])
{
	for (int gi = 0; gi < rt->n_groups; gi++) {
		float *Dg = wk->D[gi];
		const float *den = pl->reuse_z ? zfwd : Dg;
		const float eps = rt->eps;
		enum gmask m = rt->mask[gi];

		if (!pl->reuse_z && !init[gi])
			memset(Dg, 0, (size_t)L->ny * sizeof(float));
		if (m == GM_NONE) {
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(L->ny)))
			for (int64_t j = 0; j < L->ny; j++)
				Dg[j] = stab_div(r_out[j], den[j], eps);
		} else {
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(L->ny)))
			for (int64_t j = 0; j < L->ny; j++) {
				int keep = (m == GM_ZPOS && zfwd[j] > 0.0f) || (m == GM_ZNEG && zfwd[j] < 0.0f);

				Dg[j] = keep ? stab_div(r_out[j], den[j], eps) : 0.0f;
			}
		}
	}
}

/* R_in += Σ_k rcoef_k · x⁽ᵏ⁾ ⊙ J_kᵀ s_g. */
static void lin_redistribute(const struct rule_terms *rt, const struct lin_plan *pl,
			     const struct lin_layer *L, float *r_in, struct lin_work *wk)
{
	float *tmp = wk->tmp;

	for (int k = 0; k < rt->n; k++) {
		const struct term *t = &rt->t[k];
		const float rc_k = t->rcoef;
		const float *xk = wk->xk_of[k];

		if (pl->empty[k] || rc_k == 0.0f)
			continue;
		memset(tmp, 0, (size_t)L->nx * sizeof(float));
		lin_bwd(L, wk->D[t->grp], wk->wk_of[k], tmp);
		if (rc_k == 1.0f) {
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(L->nx)))
			for (int64_t i = 0; i < L->nx; i++)
				r_in[i] += xk[i] * tmp[i];
		} else {
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(L->nx)))
			for (int64_t i = 0; i < L->nx; i++)
				r_in[i] += rc_k * xk[i] * tmp[i];
		}
	}
}

/*
 * One rule on one layer. x, w, b (b may be NULL) are the layer's input and
 * parameters (b already folded when L->scale is set), r_out the relevance at
 * its output; the result is added to r_in. zfwd, when not NULL, is what the
 * forward computed for layer(x; w·scale) + b (the layer's or its folded BN's
 * output). The scratch comes from iap_graph_workspace of g, or is malloc'd
 * when g is NULL.
 */
static int lin_rule(enum lrp_rule rule, const struct lrp_params *p, const struct lin_layer *L0,
		    const float *x, const float *w, const float *b, const float *zfwd,
		    const float *r_out, float *r_in, struct iap_graph *g, struct iap_error *err)
{
	struct rule_terms rt;
	struct lin_plan pl;
	struct lin_layer L = *L0;
	struct lin_work wk;
	float *ws, *own = NULL;
	int init[2] = { 0, 0 };
	size_t need;
	int rc;

	rc = rule_terms_of(rule, p, &rt, err);
	if (rc)
		return rc;
	if (rule == LRP_RULE_ZBOX &&
	    ((p->n_low != 1 && p->n_low != L.in_ch) || (p->n_high != 1 && p->n_high != L.in_ch)))
		return iap_error_set(err, IAP_EINVAL,
				     "zbox bounds have %d/%d values, the layer has %lld input channels",
				     p->n_low, p->n_high, (long long)L.in_ch);
	lin_plan_make(&rt, p, &L, x, b, zfwd, &pl);
	need = lin_scratch(&L, &pl, rt.n_groups);
	if (g) {
		ws = iap_graph_workspace(g, need, err);
		if (!ws)
			return err ? err->code : IAP_ENOMEM;
	} else {
		ws = own = malloc(need * sizeof(float));
		if (!ws)
			return iap_error_set(err, IAP_ENOMEM, "out of memory");
	}
	lin_carve(&L, &pl, &rt, ws, &wk);
	zfwd = lin_operands(&rt, &pl, p, &L, x, w, b, zfwd, &wk);
	lin_denominators(&rt, &pl, p, &L, b, &wk, init);
	lin_group_shares(&rt, &pl, &L, zfwd, r_out, &wk, init);
	lin_redistribute(&rt, &pl, &L, r_in, &wk);
	free(own);
	return IAP_OK;
}

int lrp_dense_raw(enum lrp_rule rule, const struct lrp_params *p, int64_t rows, int in, int out,
		  const float *x, const float *w, const float *b, const float *r_out, float *r_in,
		  struct iap_error *err)
{
	const struct lin_layer L = {
		.is_conv = 0, .rows = rows, .in = in, .out = out,
		.nx = rows * in, .ny = rows * out, .nw = (int64_t)in * out,
		.in_ch = in, .in_inner = 1, .out_inner = 1,
	};

	return lin_rule(rule, p, &L, x, w, b, NULL, r_out, r_in, NULL, err);
}

/* ---- rules per op ------------------------------------------------------------ */

/*
 * Whether the node's kept output is, bit for bit, what lin_fwd would give
 * for its own weights and bias: true for an unmasked linear layer (the op
 * runs the same iap_linear_forward_raw). Not for a conv, whose op may take
 * another route to the same sums (Winograd, batched GEMMs), nor for a
 * folded BN's output, nor under a unit mask (the op then multiplies only the
 * kept rows): the Epsilon rule divides by z, and near z = 0 a last-bit
 * difference would show in the relevance.
 */
static int linear_out_is_z(const struct iap_graph *g, const struct iap_node *n, int64_t ny)
{
	if (n->kind != IAP_OP_LINEAR || !n->out.data || iap_tensor_numel(&n->out) != ny)
		return 0;
	for (int gi = 0; gi < g->n_groups; gi++)
		if ((iap_graph_group(g, gi)->node == n->id || iap_graph_group(g, gi)->mask_node == n->id) &&
		    iap_graph_group(g, gi)->mask)
			return 0;
	return 1;
}

/* A conv or linear node at the current batch as lin_rule sees it; *bias receives whether it has one. */
static int lin_layer_of(const struct iap_rule_ctx *ctx, struct lin_layer *L, int *has_bias)
{
	const struct iap_node *n = ctx->node;
	const struct iap_tensor *x = ctx->in[0];

	memset(L, 0, sizeof(*L));
	if (n->kind == IAP_OP_CONV2D) {
		L->is_conv = 1;
		iap_conv_geom_from_node(&L->cg, n, (int)x->shape[0], x->shape + 1);
		L->out = n->attr.conv.out_ch;
		L->nw = (int64_t)L->out * L->cg.in_ch * L->cg.kh * L->cg.kw;
		L->in_ch = L->cg.in_ch;
		L->in_inner = (int64_t)L->cg.in_h * L->cg.in_w;
		L->out_inner = (int64_t)L->cg.out_h * L->cg.out_w;
		*has_bias = n->attr.conv.has_bias;
	} else {
		L->in = n->attr.linear.in_features;
		L->out = n->attr.linear.out_features;
		L->rows = iap_tensor_numel(x) / L->in;
		L->nw = (int64_t)L->in * L->out;
		L->in_ch = L->in;
		L->in_inner = 1;
		L->out_inner = 1;
		*has_bias = n->attr.linear.has_bias;
	}
	L->nx = iap_tensor_numel(x);
	L->ny = iap_tensor_numel(ctx->r_out);
	if (L->ny != iap_tensor_numel(ctx->out))
		return iap_error_set(ctx->err, IAP_ESHAPE, "relevance does not match the output");
	return IAP_OK;
}

/*
 * Conv and linear: the planned rule, with a following BatchNorm folded in
 * (the plan's scale and shift: W' = W·s is never formed on its own, the
 * rules apply their weight modifier to W·s as they copy, lin_rule's scale).
 */
static int rule_linear_type(struct iap_rule_ctx *ctx)
{
	struct lrp_rules *st = ctx->user;
	const struct iap_node *n = ctx->node;
	const float *w = n->params[0].value.data, *b = NULL, *zfwd = n->out.data;
	struct lin_layer L;
	int has_bias, rc;

	if (!ctx->r_in[0])
		return IAP_OK;
	rc = lin_layer_of(ctx, &L, &has_bias);
	if (rc)
		return rc;
	if (has_bias)
		b = n->params[1].value.data;
	if (L.is_conv && st->plan.fold_bn[n->id] >= 0) {
		if (st->plan.fold_at[n->id] < 0)
			return iap_error_set(ctx->err, IAP_EINVAL, "batchnorm '%s' has no forward statistics",
					     iap_graph_node(ctx->graph, st->plan.fold_bn[n->id])->name);
		L.scale = st->plan.fold + st->plan.fold_at[n->id];
		b = L.scale + L.out;
	}
	if (!linear_out_is_z(ctx->graph, n, L.ny))
		zfwd = NULL;
	return lin_rule((enum lrp_rule)st->plan.rule[n->id], &st->p, &L, ctx->in[0]->data, w, b, zfwd,
			ctx->r_out->data, ctx->r_in[0]->data, ctx->graph, ctx->err);
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
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(nel)))
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
	struct lrp_rules *st = ctx->user;
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
#pragma omp simd
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
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(nx)))
	for (int64_t i = 0; i < nx; i++)
		ri[i] += x[i] * tmp[i];
	return IAP_OK;
}

/* Residual add: each operand gets its share a·R/stab(a + b). */
static int rule_add(struct iap_rule_ctx *ctx)
{
	struct lrp_rules *st = ctx->user;
	const int64_t n = iap_tensor_numel(ctx->out);
	const float *y = ctx->out->data, *r = ctx->r_out->data;
	const float *a = ctx->in[0]->data, *b = ctx->in[1]->data;
	const float eps = st->p.stabilizer;
	float *ra = ctx->r_in[0] ? ctx->r_in[0]->data : NULL;
	float *rb = ctx->r_in[1] ? ctx->r_in[1]->data : NULL;

	if (!ra || !rb) {
		const float *v = ra ? a : b;
		float *rv = ra ? ra : rb;

		if (!rv)
			return IAP_OK;
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
		for (int64_t i = 0; i < n; i++)
			rv[i] += v[i] * stab_div(r[i], y[i], eps);
		return IAP_OK;
	}
	/* Both operands in one pass: R/stab(y) is computed once per element. */
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++) {
		const float s = stab_div(r[i], y[i], eps);

		ra[i] += a[i] * s;
		rb[i] += b[i] * s;
	}
	return IAP_OK;
}

/*
 * Position embedding y = x + p: p acts as a bias and keeps its share
 * (x·R/stab(y) goes on); with zero_bias the embedding counts as 0: a pass.
 */
static int rule_pos_embed(struct iap_rule_ctx *ctx)
{
	struct lrp_rules *st = ctx->user;
	const int64_t n = iap_tensor_numel(ctx->out);
	const float *y = ctx->out->data, *r = ctx->r_out->data, *x = ctx->in[0]->data;
	float *ri;

	if (!ctx->r_in[0])
		return IAP_OK;
	if (st->p.zero_bias)
		return rule_pass(ctx);
	ri = ctx->r_in[0]->data;
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(n)))
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
	struct lrp_rules *st = ctx->user;
	const struct iap_node *n = ctx->node;
	const struct iap_tensor *x = ctx->in[0];

	if (!ctx->r_in[0])
		return IAP_OK;
	if (st->plan.folded[n->id])
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
	struct lrp_rules *st = ctx->user;
	const struct iap_node *n = ctx->node;
	const struct iap_tensor *xt = ctx->in[0];
	const int64_t d = xt->shape[xt->ndim - 1], total = iap_tensor_numel(xt);
	const int64_t rows = d > 0 ? total / d : 0;
	const float *stats = n->aux[0].data;
	const float *w = n->params[0].value.data, *b = n->params[1].value.data;
	const float *x = xt->data, *r = ctx->r_out->data;
	const float eps = st->p.epsilon;
	/* 0 or 1 times the shift, rather than a branch: the row loops then vectorise. */
	const float bsel = st->p.zero_bias ? 0.0f : 1.0f;
	float *ri, *g;

	if (!ctx->r_in[0])
		return IAP_OK;
	if (!stats || n->aux[0].shape[0] != rows)
		return iap_error_set(ctx->err, IAP_EINVAL, "layernorm without forward statistics");
	g = iap_graph_workspace(ctx->graph, (size_t)total, ctx->err);
	if (!g)
		return ctx->err ? ctx->err->code : IAP_ENOMEM;
	ri = ctx->r_in[0]->data;
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
	for (int64_t row = 0; row < rows; row++) {
		const float mu = stats[2 * row], is = stats[2 * row + 1];
		const float *xp = x + row * d, *rp = r + row * d;
		float *gp = g + row * d, *op = ri + row * d;
		double m = 0.0;

#pragma omp simd reduction(+:m)
		for (int64_t k = 0; k < d; k++) {
			float z = (xp[k] - mu) * is * w[k] + bsel * b[k];

			gp[k] = w[k] * stab_div(rp[k], z, eps);
			m += gp[k];
		}
		m /= (double)d;
#pragma omp simd
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
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
	for (int64_t row = 0; row < rows; row++) {
		const float *sp = s + row * cols, *xp = x + row * cols, *rp = r + row * cols;
		float *op = ri + row * cols;
		double sum = 0.0;

#pragma omp simd reduction(+:sum)
		for (int64_t k = 0; k < cols; k++)
			sum += rp[k];
#pragma omp simd
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
	struct lrp_rules *st = ctx->user;
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
#pragma omp simd
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
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt((int64_t)(nin[k])))
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
	struct lrp_rules *st = ctx->user;

	if (st->p.vit == LRP_VIT_CPLRP)
		return rule_bilinear(ctx, 1.0f, 1);
	return rule_bilinear(ctx, 2.0f, 0);
}

/* The walk's prepare: plan the graph about to be walked (its forward has run). */
static int lrp_prepare(void *user, struct iap_graph *g, struct iap_tensor *const *seed, struct iap_error *err)
{
	struct lrp_rules *r = user;

	(void)seed;
	return lrp_plan_build(&r->plan, &r->layers, g, err);
}

static void lrp_finish(void *user, struct iap_graph *g)
{
	struct lrp_rules *r = user;

	(void)g;
	lrp_plan_free(&r->plan);
}

void lrp_rules_init(struct lrp_rules *r, const struct lrp_params *p, const struct lrp_layer_rules *layers)
{
	struct iap_ruleset *rs = &r->rs;

	memset(r, 0, sizeof(*r));
	r->p = *p;
	r->layers = *layers;
	rs->size = sizeof(*rs);
	rs->n_rules = IAP_OP_COUNT;
	rs->name = "lrp";
	rs->user = r;
	rs->n_channels = 1;
	rs->prepare = lrp_prepare;
	rs->finish = lrp_finish;
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
