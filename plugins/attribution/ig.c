/*
 * The "ig" attribution plugin: Integrated Gradients along the straight path
 * from a baseline x' to the input x.
 *
 * Unit scores (score()) are conductances, Captum's LayerConductance recorded
 * at every unit group in ONE sweep of the path: with nodes α_0 < … < α_n
 * (the method's positions for n + 1 points) and x_k = x' + α_k (x − x'),
 *
 *     cond = Σ_{k=0}^{n-1} (h(x_{k+1}) − h(x_k)) ⊙ ∂F/∂h (x_k)
 *
 * where h is a group node's output and F the target logit. The gradient is
 * taken at the LEFT node of each segment and the quadrature weights are not
 * used, exactly as captum.attr.LayerConductance does. The sum telescopes:
 * Σ cond ≈ F(x_{α_n}) − F(x_{α_0}), which is F(x) − F(x') only when the nodes
 * include both ends — riemann-trapezoid (linspace(0, 1, n + 1)), the default.
 * riemann-right starts at 1/(n+1) and gauss-legendre stays strictly inside
 * (0, 1), so their gap shrinks with n but never vanishes.
 *
 * Input relevance (explain()) is captum.attr.IntegratedGradients with n
 * nodes and Captum's weights:  IG = (x − x') ⊙ Σ_k w_k ∇F(x' + α_k (x − x')).
 *
 * Positions α and weights w for m points (captum/attr/_utils/approximation_methods.py):
 *   riemann-left       α = linspace(0, 1 − 1/m, m)          w = 1/m
 *   riemann-right      α = linspace(1/m, 1, m)              w = 1/m
 *   riemann-middle     α = linspace(1/2m, 1 − 1/2m, m)      w = 1/m
 *   riemann-trapezoid  α = linspace(0, 1, m)                w = 1/m, first and last halved
 *   gauss-legendre     α = (1 + ξ)/2, w = ω/2 for numpy's leggauss(m) nodes ξ, weights ω
 * (Captum's trapezoid weights sum to (m − 1)/m, so its IG is biased low by
 * 1/m; kept for equality with Captum.)
 *
 * Every interpolation step of every sample is one row of an internal batch
 * whose size follows from the memory option, so a chunk of steps runs as
 * one forward and one backward walk; the chunks all have the same size
 * (the last is padded with ignored rows) so the graph's buffers are shaped
 * once per call. F(x) and F(x') for the completeness gap δ come from the
 * path's end nodes when it has them (trapezoid) or from one extra row each
 * (x itself, x'); δ is kept per sample (and per group for the conductances)
 * and read through the ops' completeness() (ABI 1.1), or the functions in
 * ig.h. unit_relevance() hands the host the conductance tensors themselves. The graph is left holding the last
 * internal batch's forward.
 *
 * Targets are the host's (predicted or label). The common `seed` option is
 * ignored: IG always integrates the gradient of the target logit F.
 * Baselines: zeros is 0 in the model's normalised input space (the dataset
 * mean colour when the data were normalised with their own statistics);
 * black is pixel 0, i.e. (0 − mean[c]) / std[c]; mean is the per-channel
 * pixel value baseline_mean[c] normalised the same way; blur is x convolved
 * with a Gaussian of the given sigma (kernel 2·ceil(3σ) + 1, reflect padding,
 * as torchvision's gaussian_blur), per channel in normalised space.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>
#include <iaprune/graph.h>
#include <iaprune/threads.h>
#include <iaprune/plugin.h>

#include "ig.h"

#define IG_MAX_CH 16

enum ig_method { IG_RIEMANN_TRAPEZOID = 0, IG_RIEMANN_RIGHT, IG_RIEMANN_LEFT, IG_RIEMANN_MIDDLE,
		 IG_GAUSS_LEGENDRE };
static const char *const ig_methods[] = { "riemann-trapezoid", "riemann-right", "riemann-left",
					  "riemann-middle", "gauss-legendre", NULL };

enum ig_baseline { IG_BASE_ZEROS = 0, IG_BASE_BLACK, IG_BASE_BLUR, IG_BASE_MEAN };
static const char *const ig_baselines[] = { "zeros", "black", "blur", "mean", NULL };

static const struct iap_option ig_options[] = {
	{ .name = "steps", .type = IAP_OPT_INT, .def = "32", .has_range = 1, .min = 2, .max = 4096,
	  .help = "n: path segments for unit conductance (n + 1 nodes), path nodes for input IG" },
	{ .name = "method", .type = IAP_OPT_ENUM, .def = "riemann-trapezoid", .choices = ig_methods,
	  .help = "node positions and weights, as Captum's approximation methods" },
	{ .name = "baseline", .type = IAP_OPT_ENUM, .def = "zeros", .choices = ig_baselines,
	  .help = "x': zeros (normalised space), black pixels, Gaussian blur of x, or a per-channel mean" },
	{ .name = "mean", .type = IAP_OPT_STRING, .def = "0.485,0.456,0.406",
	  .help = "per-channel mean the inputs were normalised with (black and mean baselines)" },
	{ .name = "std", .type = IAP_OPT_STRING, .def = "0.229,0.224,0.225",
	  .help = "per-channel std the inputs were normalised with (black and mean baselines)" },
	{ .name = "baseline_mean", .type = IAP_OPT_STRING, .def = "0.485,0.456,0.406",
	  .help = "mean baseline: per-channel dataset mean in pixel space [0, 1]" },
	{ .name = "sigma", .type = IAP_OPT_FLOAT, .def = "5", .has_range = 1, .min = 0.1, .max = 1000,
	  .help = "blur baseline: Gaussian sigma in pixels" },
	{ .name = "memory_mb", .type = IAP_OPT_INT, .def = "256", .has_range = 1, .min = 1,
	  .max = 1048576, .help = "memory bound of the internal batch of interpolated samples" },
	{ .name = "internal_batch", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0,
	  .max = 1048576, .help = "rows per internal batch (0: derived from memory_mb)" },
	IAP_ATTR_COMMON_OPTIONS,
	{ .name = NULL },
};

struct ig_state {
	struct iap_score_opts so;
	int steps;
	enum ig_method method;
	enum ig_baseline baseline;
	int n_mean, n_std, n_bmean;
	float mean[IG_MAX_CH], std[IG_MAX_CH], bmean[IG_MAX_CH];
	float sigma;
	size_t mem_bytes;
	int internal_batch;

	/* Path nodes of the current run (positions and weights), cap entries. */
	double *alpha, *weight;
	int cap_nodes;

	struct iap_tensor xb;        /* baseline, shaped like x */
	struct iap_tensor rows;      /* one internal batch of interpolated inputs */
	struct iap_tensor seed;      /* its one-hot seeds */
	struct iap_tensor grad_sum;  /* explain: Σ_k w_k ∇F(x_k), shaped like x */
	struct iap_tensor blur_tmp;  /* blur: one plane */
	float *blur_k;
	int blur_cap;

	/* Conductance per group: accumulator, previous node's h and ∂F/∂h. */
	int n_groups;
	struct iap_tensor *cond, *hprev, *gprev;

	/* Completeness bookkeeping of the last run. */
	int n_samples;
	float *fx, *fb, *gap;        /* F(x), F(x'), F(x) − F(x') per sample */
	float *in_delta;             /* [n] of the last explain() */
	int in_delta_n;
	float *unit_delta;           /* [n_groups][n] of the last score() */
	int unit_delta_n;
	int cap_samples;
};

/* ---- options --------------------------------------------------------------- */

/* "0.485, 0.456,0.406" → values; at most IG_MAX_CH of them, all finite. */
static int parse_list(const char *s, const char *name, float *v, int *n, struct iap_error *err)
{
	const char *p = s;

	*n = 0;
	while (*p) {
		char *end;
		float f;

		while (*p == ' ' || *p == ',')
			p++;
		if (!*p)
			break;
		if (*n == IG_MAX_CH)
			return iap_error_set(err, IAP_EINVAL, "ig: option '%s': more than %d values",
					     name, IG_MAX_CH);
		errno = 0;
		f = strtof(p, &end);
		if (end == p || errno || !isfinite(f))
			return iap_error_set(err, IAP_EINVAL,
					     "ig: option '%s': '%s' is not a list of numbers", name, s);
		v[(*n)++] = f;
		p = end;
		while (*p == ' ')
			p++;
		if (*p && *p != ',')
			return iap_error_set(err, IAP_EINVAL,
					     "ig: option '%s': '%s' is not a comma-separated list", name, s);
	}
	if (*n == 0)
		return iap_error_set(err, IAP_EINVAL, "ig: option '%s' is empty", name);
	return IAP_OK;
}

static void ig_destroy(void *state)
{
	struct ig_state *st = state;

	if (!st)
		return;
	free(st->alpha);
	free(st->weight);
	iap_tensor_free(&st->xb);
	iap_tensor_free(&st->rows);
	iap_tensor_free(&st->seed);
	iap_tensor_free(&st->grad_sum);
	iap_tensor_free(&st->blur_tmp);
	free(st->blur_k);
	for (int i = 0; i < st->n_groups; i++) {
		iap_tensor_free(&st->cond[i]);
		iap_tensor_free(&st->hprev[i]);
		iap_tensor_free(&st->gprev[i]);
	}
	free(st->cond);
	free(st->hprev);
	free(st->gprev);
	free(st->fx);
	free(st->fb);
	free(st->gap);
	free(st->in_delta);
	free(st->unit_delta);
	free(st);
}

static int ig_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
		     struct iap_error *err)
{
	struct ig_state *st = calloc(1, sizeof(*st));
	int rc;

	if (!st)
		return iap_error_set(err, IAP_ENOMEM, "ig: out of memory");
	iap_score_opts_from(opts, &st->so);
	st->steps = (int)iap_opts_int(opts, "steps");
	/* The schema checked both against their choices: the indices follow the enums' order. */
	st->method = (enum ig_method)iap_opts_enum(opts, "method");
	st->baseline = (enum ig_baseline)iap_opts_enum(opts, "baseline");
	st->sigma = (float)iap_opts_float(opts, "sigma");
	st->mem_bytes = (size_t)iap_opts_int(opts, "memory_mb") << 20;
	st->internal_batch = (int)iap_opts_int(opts, "internal_batch");
	rc = parse_list(iap_opts_str(opts, "mean"), "mean", st->mean, &st->n_mean, err);
	if (!rc)
		rc = parse_list(iap_opts_str(opts, "std"), "std", st->std, &st->n_std, err);
	if (!rc)
		rc = parse_list(iap_opts_str(opts, "baseline_mean"), "baseline_mean", st->bmean,
				&st->n_bmean, err);
	for (int c = 0; !rc && c < st->n_std; c++)
		if (!(st->std[c] > 0.0f))
			rc = iap_error_set(err, IAP_EINVAL, "ig: option 'std': every value must be > 0");
	if (rc)
		goto out_free;
	st->n_groups = g->n_groups;
	if (st->n_groups) {
		st->cond = calloc((size_t)st->n_groups, sizeof(*st->cond));
		st->hprev = calloc((size_t)st->n_groups, sizeof(*st->hprev));
		st->gprev = calloc((size_t)st->n_groups, sizeof(*st->gprev));
		if (!st->cond || !st->hprev || !st->gprev) {
			rc = iap_error_set(err, IAP_ENOMEM, "ig: out of memory");
			goto out_free;
		}
	}
	*state = st;
	return IAP_OK;
out_free:
	ig_destroy(st);
	return rc;
}

/* ---- path nodes --------------------------------------------------------------- */

/*
 * numpy.polynomial.legendre.leggauss(m) by Newton's method on P_m in double:
 * nodes ascending, weights 2 / ((1 − ξ²) P_m'(ξ)²).
 */
static void gauss_legendre(int m, double *xi, double *w)
{
	for (int i = 0; i < m; i++) {
		double x = cos(M_PI * (i + 0.75) / (m + 0.5)), dp = 1.0;

		for (int it = 0; it < 100; it++) {
			double p0 = 1.0, p1 = x, dx;

			for (int j = 2; j <= m; j++) {
				double p2 = ((2.0 * j - 1.0) * x * p1 - (j - 1.0) * p0) / j;

				p0 = p1;
				p1 = p2;
			}
			if (m == 1)
				p0 = 1.0;
			dp = m * (x * p1 - p0) / (x * x - 1.0);
			dx = p1 / dp;
			x -= dx;
			if (fabs(dx) < 1e-16)
				break;
		}
		/* Recompute the derivative at the converged node for the weight. */
		{
			double p0 = 1.0, p1 = x;

			for (int j = 2; j <= m; j++) {
				double p2 = ((2.0 * j - 1.0) * x * p1 - (j - 1.0) * p0) / j;

				p0 = p1;
				p1 = p2;
			}
			if (m == 1)
				p0 = 1.0;
			dp = m * (x * p1 - p0) / (x * x - 1.0);
		}
		/* cos() walks from +1 down: store ascending. */
		xi[m - 1 - i] = x;
		w[m - 1 - i] = 2.0 / ((1.0 - x * x) * dp * dp);
	}
}

/* Fill st->alpha / st->weight with the method's m positions and weights. */
static int path_nodes(struct ig_state *st, int m, struct iap_error *err)
{
	if (m > st->cap_nodes) {
		double *a = realloc(st->alpha, (size_t)m * sizeof(*a));

		if (!a)
			return iap_error_set(err, IAP_ENOMEM, "ig: out of memory");
		st->alpha = a;
		a = realloc(st->weight, (size_t)m * sizeof(*a));
		if (!a)
			return iap_error_set(err, IAP_ENOMEM, "ig: out of memory");
		st->weight = a;
		st->cap_nodes = m;
	}
	if (st->method == IG_GAUSS_LEGENDRE) {
		gauss_legendre(m, st->alpha, st->weight);
		for (int k = 0; k < m; k++) {
			st->alpha[k] = 0.5 * (1.0 + st->alpha[k]);
			st->weight[k] *= 0.5;
		}
		return IAP_OK;
	}
	if (m < 2)
		return iap_error_set(err, IAP_EINVAL, "ig: Riemann methods need at least 2 steps");
	for (int k = 0; k < m; k++) {
		double lo = 0.0, hi = 1.0;

		switch (st->method) {
		case IG_RIEMANN_LEFT:
			hi = 1.0 - 1.0 / m;
			break;
		case IG_RIEMANN_RIGHT:
			lo = 1.0 / m;
			break;
		case IG_RIEMANN_MIDDLE:
			lo = 1.0 / (2.0 * m);
			hi = 1.0 - 1.0 / (2.0 * m);
			break;
		default:
			break;
		}
		/* The last node is exactly hi, so an end at 1 is recognised as x itself. */
		st->alpha[k] = k == m - 1 ? hi : lo + (hi - lo) * k / (m - 1);
		st->weight[k] = 1.0 / m;
	}
	if (st->method == IG_RIEMANN_TRAPEZOID) {
		st->weight[0] *= 0.5;
		st->weight[m - 1] *= 0.5;
	}
	return IAP_OK;
}

/* ---- baselines ------------------------------------------------------------------ */

/* The value of channel c of a list of 1 (broadcast) or C values. */
static float per_channel(const float *v, int n, int c)
{
	return n == 1 ? v[0] : v[c];
}

/* Mirror index i into [0, n) the way torch's "reflect" padding does (edge not repeated). */
static int reflect(int i, int n)
{
	if (n == 1)
		return 0;
	while (i < 0 || i >= n) {
		if (i < 0)
			i = -i;
		if (i >= n)
			i = 2 * (n - 1) - i;
	}
	return i;
}

/* xb = separable Gaussian blur of x (NCHW), reflect padding, radius ceil(3σ). */
static int blur(struct ig_state *st, const struct iap_tensor *x, struct iap_error *err)
{
	int h = (int)x->shape[2], w = (int)x->shape[3];
	int r = (int)ceil(3.0 * st->sigma), len = 2 * r + 1;
	int64_t plane = (int64_t)h * w, planes = x->shape[0] * x->shape[1];
	int64_t shp[1] = { plane };
	double sum = 0.0;
	int rc;

	if (len > st->blur_cap) {
		float *k = realloc(st->blur_k, (size_t)len * sizeof(*k));

		if (!k)
			return iap_error_set(err, IAP_ENOMEM, "ig: out of memory");
		st->blur_k = k;
		st->blur_cap = len;
	}
	for (int i = -r; i <= r; i++)
		sum += exp(-0.5 * (double)i * i / ((double)st->sigma * st->sigma));
	for (int i = -r; i <= r; i++)
		st->blur_k[i + r] = (float)(exp(-0.5 * (double)i * i /
						((double)st->sigma * st->sigma)) / sum);
	rc = iap_tensor_ensure(&st->blur_tmp, 1, shp, err);
	if (rc)
		return rc;
	for (int64_t p = 0; p < planes; p++) {
		const float *src = x->data + p * plane;
		float *dst = st->xb.data + p * plane, *tmp = st->blur_tmp.data;

		for (int yy = 0; yy < h; yy++)
			for (int xx = 0; xx < w; xx++) {
				float s = 0.0f;

				for (int i = -r; i <= r; i++)
					s += st->blur_k[i + r] * src[(int64_t)yy * w + reflect(xx + i, w)];
				tmp[(int64_t)yy * w + xx] = s;
			}
		for (int yy = 0; yy < h; yy++)
			for (int xx = 0; xx < w; xx++) {
				float s = 0.0f;

				for (int i = -r; i <= r; i++)
					s += st->blur_k[i + r] * tmp[(int64_t)reflect(yy + i, h) * w + xx];
				dst[(int64_t)yy * w + xx] = s;
			}
	}
	return IAP_OK;
}

/* Fill st->xb, shaped like x, with the chosen baseline. */
static int make_baseline(struct ig_state *st, const struct iap_tensor *x, struct iap_error *err)
{
	int rc = iap_tensor_ensure(&st->xb, x->ndim, x->shape, err);
	int64_t c_n, plane;

	if (rc)
		return rc;
	if (st->baseline == IG_BASE_ZEROS) {
		iap_tensor_zero(&st->xb);
		return IAP_OK;
	}
	if (x->ndim != 4)
		return iap_error_set(err, IAP_EINVAL,
				     "ig: baseline '%s' needs image input (N x C x H x W)",
				     ig_baselines[st->baseline]);
	if (st->baseline == IG_BASE_BLUR)
		return blur(st, x, err);
	c_n = x->shape[1];
	plane = x->shape[2] * x->shape[3];
	if ((st->n_mean != 1 && st->n_mean != c_n) || (st->n_std != 1 && st->n_std != c_n) ||
	    (st->baseline == IG_BASE_MEAN && st->n_bmean != 1 && st->n_bmean != c_n))
		return iap_error_set(err, IAP_EINVAL,
				     "ig: baseline '%s': mean, std and baseline_mean need 1 or %lld values "
				     "(the input's channels)", ig_baselines[st->baseline], (long long)c_n);
	for (int64_t n = 0; n < x->shape[0]; n++)
		for (int c = 0; c < (int)c_n; c++) {
			/* A pixel value p in [0, 1] is p' = (p − mean) / std in the model's space. */
			float pix = st->baseline == IG_BASE_BLACK ? 0.0f : per_channel(st->bmean, st->n_bmean, c);
			float v = (pix - per_channel(st->mean, st->n_mean, c)) /
				  per_channel(st->std, st->n_std, c);
			float *p = st->xb.data + (n * c_n + c) * plane;

			for (int64_t i = 0; i < plane; i++)
				p[i] = v;
		}
	return IAP_OK;
}

/* ---- the path sweep ------------------------------------------------------------------ */

/*
 * One internal batch: rows [j][i] for steps k0 + j (j < n_steps) of samples
 * s0 + i (i < bs). Virtual step k < P is path node k; after the path come
 * the extra rows for x and x' when the path lacks them, then padding.
 */
struct chunk {
	struct ig_state *st;
	int P;
	int s0, bs;
	int k0, n_steps;
};

/* Element-wise loops split by the engine's work rule (iap_par_nt(), <iaprune/threads.h>). */

/* Elements per block of a per-sample loop whose steps must run in order (16 KB of floats). */
#define IG_BLOCK ((int64_t)4096)

/* Walk hook: fold this chunk's h and ∂F/∂h at every unit group into the conductances. */
static int cond_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		     const struct iap_tensor *r_out)
{
	const struct chunk *ch = user;
	struct ig_state *st = ch->st;
	int gi = node->unit_group;
	int64_t per;

	if (gi < 0 || gi >= st->n_groups)
		return 0;
	(void)g;
	per = iap_tensor_numel(&node->out) / node->out.shape[0];
	const int steps = ch->P - ch->k0 < ch->n_steps ? ch->P - ch->k0 : ch->n_steps;
	/*
	 * Step j of a sample needs its step j − 1 (hprev/gprev), so the steps run
	 * in order inside each (sample, element block), and those blocks split
	 * over the team in one region for the whole chunk.
	 */
#pragma omp parallel for collapse(2) schedule(static) \
	num_threads(iap_par_nt((int64_t)ch->bs * per * (steps > 0 ? steps : 1)))
	for (int i = 0; i < ch->bs; i++) {
		for (int64_t e0 = 0; e0 < per; e0 += IG_BLOCK) {
			const int64_t e1 = per - e0 < IG_BLOCK ? per : e0 + IG_BLOCK, s = ch->s0 + i;
			float *hp = st->hprev[gi].data + s * per, *gp = st->gprev[gi].data + s * per;
			float *c = st->cond[gi].data + s * per;

			for (int j = 0; j < steps; j++) {
				const int64_t row = (int64_t)j * ch->bs + i;
				const float *h = node->out.data + row * per, *gr = r_out->data + row * per;

				/* Segment (k−1, k): Δh times the gradient at its left node. */
				if (ch->k0 + j > 0) {
#pragma omp simd
					for (int64_t e = e0; e < e1; e++)
						c[e] += (h[e] - hp[e]) * gp[e];
				}
				memcpy(hp + e0, h + e0, (size_t)(e1 - e0) * sizeof(float));
				memcpy(gp + e0, gr + e0, (size_t)(e1 - e0) * sizeof(float));
			}
		}
	}
	return 0;
}

/* Floats one row of the internal batch keeps alive: outputs, walk buffers, input copies. */
static int64_t row_floats(const struct iap_graph *g)
{
	int64_t s = 0, in = 1;

	for (int i = 0; i < g->n_nodes; i++) {
		int64_t e = 1;

		for (int d = 0; d < iap_graph_node(g, i)->out_ndim; d++)
			e *= iap_graph_node(g, i)->out_shape[d];
		s += e;
	}
	for (int d = 0; d < g->in_ndim; d++)
		in *= g->in_shape[d];
	/* out + r per node, ~1 more for saved aux (argmax, GELU input, norms); input ×3. */
	return 3 * s + 3 * in;
}

static int ensure_samples(struct ig_state *st, int n, struct iap_error *err)
{
	if (n <= st->cap_samples)
		return IAP_OK;
	float *a = realloc(st->fx, (size_t)n * sizeof(float));

	if (!a)
		goto oom;
	st->fx = a;
	if (!(a = realloc(st->fb, (size_t)n * sizeof(float))))
		goto oom;
	st->fb = a;
	if (!(a = realloc(st->gap, (size_t)n * sizeof(float))))
		goto oom;
	st->gap = a;
	if (!(a = realloc(st->in_delta, (size_t)n * sizeof(float))))
		goto oom;
	st->in_delta = a;
	if (st->n_groups) {
		if (!(a = realloc(st->unit_delta, (size_t)n * st->n_groups * sizeof(float))))
			goto oom;
		st->unit_delta = a;
	}
	st->cap_samples = n;
	return IAP_OK;
oom:
	return iap_error_set(err, IAP_ENOMEM, "ig: out of memory");
}

/*
 * How a run lays out the path: T virtual steps (the P path nodes, then the
 * rows for x and x' when the path lacks them), vx and vb the steps that give
 * F(x) and F(x'), internal batches of bs_max samples × S steps.
 */
struct sweep_plan {
	int P, T, vx, vb;
	int bs_max, S;
};

/*
 * F(x) and F(x') come from the path rows at α = 1 and α = 0 when the method
 * has those nodes (trapezoid), else from one extra row each. Internal batch:
 * rows from the option, else from the memory bound, but never fewer than
 * the batch being explained: the graph already holds that many rows (the
 * caller's forward), and fewer made a batch of 16 run as 16 passes of one
 * row, far below the GEMMs' speed at 16. The chunks are equal (the last
 * padded) so the graph is shaped once per run.
 */
static void sweep_plan(const struct ig_state *st, const struct iap_graph *g, int B, int P, struct sweep_plan *pl)
{
	int64_t m_rows;
	int s_max, n_chunks;

	pl->P = P;
	pl->vx = pl->vb = -1;
	for (int k = 0; k < P; k++) {
		if (st->alpha[k] == 1.0)
			pl->vx = k;
		if (st->alpha[k] == 0.0)
			pl->vb = k;
	}
	pl->T = P;
	if (pl->vx < 0)
		pl->vx = pl->T++;
	if (pl->vb < 0)
		pl->vb = pl->T++;
	m_rows = st->internal_batch;
	if (m_rows <= 0) {
		int64_t per_row = row_floats(g) * (int64_t)sizeof(float);

		m_rows = per_row > 0 ? (int64_t)(st->mem_bytes / (size_t)per_row) : 1;
		if (m_rows < B)
			m_rows = B;
	}
	if (m_rows < 1)
		m_rows = 1;
	pl->bs_max = m_rows < B ? (int)m_rows : B;
	s_max = (int)(m_rows / pl->bs_max);
	if (s_max > pl->T)
		s_max = pl->T;
	if (s_max < 1)
		s_max = 1;
	n_chunks = (pl->T + s_max - 1) / s_max;
	pl->S = (pl->T + n_chunks - 1) / n_chunks;
}

/* Zeroed accumulators: per-group conductances with their h / ∂F/∂h carry (cond), else the input-gradient sum. */
static int sweep_accumulators(struct ig_state *st, const struct iap_graph *g, const struct iap_tensor *x, int cond,
			      struct iap_error *err)
{
	int64_t shape[IAP_MAX_DIMS];
	int rc;

	if (!cond) {
		rc = iap_tensor_ensure(&st->grad_sum, x->ndim, x->shape, err);
		if (!rc)
			iap_tensor_zero(&st->grad_sum);
		return rc;
	}
	for (int gi = 0; gi < st->n_groups; gi++) {
		const struct iap_node *node = iap_graph_node(g, iap_graph_group(g, gi)->node);

		shape[0] = x->shape[0];
		memcpy(shape + 1, node->out_shape, (size_t)node->out_ndim * sizeof(*shape));
		rc = iap_tensor_ensure(&st->cond[gi], node->out_ndim + 1, shape, err);
		if (!rc)
			rc = iap_tensor_ensure(&st->hprev[gi], node->out_ndim + 1, shape, err);
		if (!rc)
			rc = iap_tensor_ensure(&st->gprev[gi], node->out_ndim + 1, shape, err);
		if (rc)
			return rc;
		iap_tensor_zero(&st->cond[gi]);
	}
	return IAP_OK;
}

/* The chunk's rows: row (j, i) = x' + α (x − x'); beyond the path x (α = 1), x', then padding rows (x'). */
static void interpolate(struct ig_state *st, const struct iap_tensor *x, const struct sweep_plan *pl,
			const struct chunk *ch)
{
	const int64_t in_per = iap_tensor_numel(x) / x->shape[0];
	const int S = ch->n_steps, bs = ch->bs, s0 = ch->s0, k0 = ch->k0;

	/* Rows are independent: one region for the whole internal batch. */
#pragma omp parallel for collapse(2) schedule(static) num_threads(iap_par_nt((int64_t)S * bs * in_per))
	for (int j = 0; j < S; j++) {
		for (int i = 0; i < bs; i++) {
			const int k = k0 + j;
			const double a = k < pl->P ? st->alpha[k] : k == pl->vx ? 1.0 : 0.0;
			const float *xv = x->data + (int64_t)(s0 + i) * in_per;
			const float *bv = st->xb.data + (int64_t)(s0 + i) * in_per;
			float *rv = st->rows.data + ((int64_t)j * bs + i) * in_per;
			float af = (float)a;

			if (k >= pl->P && k == pl->vx) {
				memcpy(rv, xv, (size_t)in_per * sizeof(float));
				continue;
			}
			for (int64_t e = 0; e < in_per; e++)
				rv[e] = bv[e] + af * (xv[e] - bv[e]);
		}
	}
}

/* The walk's seed (one-hot on the target for path rows, zero elsewhere), and F(x), F(x') from their rows. */
static int seed_and_ends(struct ig_state *st, const struct iap_tensor *logits, const int *targets,
			 const struct sweep_plan *pl, const struct chunk *ch, struct iap_error *err)
{
	int64_t n_cls;
	int rc;

	if (logits->ndim != 2)
		return iap_error_set(err, IAP_ESHAPE, "ig: needs [N, classes] logits");
	n_cls = logits->shape[1];
	rc = iap_tensor_ensure(&st->seed, 2, logits->shape, err);
	if (rc)
		return rc;
	iap_tensor_zero(&st->seed);
	for (int j = 0; j < ch->n_steps; j++)
		for (int i = 0; i < ch->bs; i++) {
			int k = ch->k0 + j, t = targets[ch->s0 + i];
			int64_t row = (int64_t)j * ch->bs + i;

			if (t < 0 || t >= n_cls)
				return iap_error_set(err, IAP_EINVAL, "ig: target %d is not a class index", t);
			if (k < pl->P)
				st->seed.data[row * n_cls + t] = 1.0f;
			if (k == pl->vx)
				st->fx[ch->s0 + i] = logits->data[row * n_cls + t];
			if (k == pl->vb)
				st->fb[ch->s0 + i] = logits->data[row * n_cls + t];
		}
	return IAP_OK;
}

/* explain(): the chunk's weighted input gradients into grad_sum; each sample's steps in order. */
static void add_input_grads(struct ig_state *st, const struct iap_graph *g, const struct sweep_plan *pl,
			    const struct chunk *ch)
{
	const int64_t in_per = iap_tensor_numel(&st->grad_sum) / st->grad_sum.shape[0];
	const int steps = pl->P - ch->k0 < ch->n_steps ? pl->P - ch->k0 : ch->n_steps, bs = ch->bs;

	/* Samples and element blocks split over the team. */
#pragma omp parallel for collapse(2) schedule(static) num_threads(iap_par_nt((int64_t)steps * bs * in_per))
	for (int i = 0; i < bs; i++) {
		for (int64_t e0 = 0; e0 < in_per; e0 += IG_BLOCK) {
			const int64_t e1 = in_per - e0 < IG_BLOCK ? in_per : e0 + IG_BLOCK;
			float *acc = st->grad_sum.data + (int64_t)(ch->s0 + i) * in_per;

			for (int j = 0; j < steps; j++) {
				const float w = (float)st->weight[ch->k0 + j];
				const float *gr = g->input_r.data + ((int64_t)j * bs + i) * in_per;

#pragma omp simd
				for (int64_t e = e0; e < e1; e++)
					acc[e] += w * gr[e];
			}
		}
	}
}

/* One internal batch: interpolate, forward, seed, and (for path rows) the walk and its sums. */
static int run_chunk(struct ig_state *st, struct iap_graph *g, const struct iap_tensor *x, const int *targets,
		     const struct sweep_plan *pl, struct chunk *ch, int cond, const struct iap_walk_opts *wo,
		     struct iap_error *err)
{
	int rc;

	interpolate(st, x, pl, ch);
	rc = iap_graph_forward(g, &st->rows, err);
	if (rc) {
		iap_error_prefix(err, "ig");
		return rc;
	}
	rc = seed_and_ends(st, iap_graph_output(g), targets, pl, ch, err);
	if (rc || ch->k0 >= pl->P)
		return rc; /* only the end rows: nothing to walk */
	rc = iap_graph_backward(g, iap_ruleset_gradient(), &st->seed, wo, err);
	if (rc) {
		iap_error_prefix(err, "ig");
		return rc;
	}
	if (!cond)
		add_input_grads(st, g, pl, ch);
	return IAP_OK;
}

/*
 * Run the whole path for the batch x: conductance at every unit group (when
 * cond) or the weighted input-gradient sum (otherwise), plus F(x), F(x').
 */
static int sweep(struct ig_state *st, struct iap_graph *g, const struct iap_tensor *x,
		 const int *targets, int cond, struct iap_error *err)
{
	const int B = (int)x->shape[0];
	struct sweep_plan pl;
	struct chunk ch = { .st = st };
	struct iap_walk_opts wo = { 0 };
	int64_t shape[IAP_MAX_DIMS];
	int rc;

	ch.P = cond ? st->steps + 1 : st->steps;
	rc = path_nodes(st, ch.P, err);
	if (!rc)
		rc = ensure_samples(st, B, err);
	if (!rc)
		rc = make_baseline(st, x, err);
	if (rc)
		return rc;
	sweep_plan(st, g, B, ch.P, &pl);
	rc = sweep_accumulators(st, g, x, cond, err);
	if (rc)
		return rc;
	if (cond) {
		wo.hook = cond_hook;
		wo.hook_user = &ch;
	} else {
		wo.want_input = 1;
	}
	for (int s0 = 0; s0 < B; s0 += pl.bs_max) {
		ch.s0 = s0;
		ch.bs = B - s0 < pl.bs_max ? B - s0 : pl.bs_max;
		memcpy(shape, x->shape, (size_t)x->ndim * sizeof(*shape));
		shape[0] = (int64_t)pl.S * ch.bs;
		rc = iap_tensor_ensure(&st->rows, x->ndim, shape, err);
		if (rc)
			return rc;
		for (int k0 = 0; k0 < pl.T; k0 += pl.S) {
			ch.k0 = k0;
			ch.n_steps = pl.S;
			rc = run_chunk(st, g, x, targets, &pl, &ch, cond, &wo, err);
			if (rc)
				return rc;
		}
	}
	st->n_samples = B;
	for (int i = 0; i < B; i++)
		st->gap[i] = st->fx[i] - st->fb[i];
	return IAP_OK;
}

/* ---- the vtable ---------------------------------------------------------------------- */

/* The conductance sweep for the batch, and every group's completeness gap per sample. */
static int conductances(struct ig_state *st, struct iap_graph *g, const struct iap_tensor *x,
			const int *targets, struct iap_error *err)
{
	int B = (int)x->shape[0];
	int rc;

	if (g->n_groups != st->n_groups)
		return iap_error_set(err, IAP_EINVAL, "ig: graph has %d unit groups, %d at create()",
				     g->n_groups, st->n_groups);
	rc = sweep(st, g, x, targets, 1, err);
	if (rc)
		return rc;
	for (int gi = 0; gi < st->n_groups; gi++) {
		const struct iap_tensor *c = &st->cond[gi];
		int64_t per = iap_tensor_numel(c) / B;

		for (int i = 0; i < B; i++) {
			double s = 0.0;

			for (int64_t e = 0; e < per; e++)
				s += c->data[i * per + e];
			st->unit_delta[(int64_t)gi * B + i] = (float)(s - st->gap[i]);
		}
	}
	st->unit_delta_n = B;
	return IAP_OK;
}

static int ig_score(void *state, struct iap_graph *g, const struct iap_tensor *x,
		    const int *targets, float *const *scores, struct iap_error *err)
{
	struct ig_state *st = state;
	int rc = conductances(st, g, x, targets, err);

	for (int gi = 0; !rc && gi < st->n_groups; gi++)
		iap_unit_accumulate(iap_graph_group(g, gi), &st->cond[gi], st->so.abs, scores[gi]);
	return rc;
}

/* The conductance of every unit group, unreduced, to the host (ABI 1.1). */
static int ig_unit_relevance(void *state, struct iap_graph *g, const struct iap_tensor *x,
			     const int *targets, iap_unit_relevance_fn fn, void *user,
			     struct iap_error *err)
{
	struct ig_state *st = state;
	int rc = conductances(st, g, x, targets, err);

	for (int gi = 0; !rc && gi < st->n_groups; gi++)
		rc = fn(user, gi, &st->cond[gi]);
	return rc;
}

static const float *ig_completeness(void *state, int what, int *n_groups, int *n)
{
	*n_groups = 1;
	switch (what) {
	case IAP_DELTA_INPUT:
		return iap_plugin_ig_input_delta(state, n);
	case IAP_DELTA_UNITS:
		return iap_plugin_ig_unit_delta(state, n_groups, n);
	case IAP_DELTA_GAP:
		return iap_plugin_ig_output_gap(state, n);
	default:
		*n = 0;
		return NULL;
	}
}

static int ig_explain(void *state, struct iap_graph *g, const struct iap_tensor *x,
		      const int *targets, struct iap_tensor *relevance, struct iap_error *err)
{
	struct ig_state *st = state;
	int B = (int)x->shape[0];
	int64_t per = iap_tensor_numel(x) / B;
	int rc = sweep(st, g, x, targets, 0, err);

	if (!rc)
		rc = iap_tensor_ensure(relevance, x->ndim, x->shape, err);
	if (rc)
		return rc;
	for (int i = 0; i < B; i++) {
		double s = 0.0;

		for (int64_t e = 0; e < per; e++) {
			int64_t q = i * per + e;
			float r = (x->data[q] - st->xb.data[q]) * st->grad_sum.data[q];

			relevance->data[q] = r;
			s += r;
		}
		st->in_delta[i] = (float)(s - st->gap[i]);
	}
	st->in_delta_n = B;
	return IAP_OK;
}

const float *iap_plugin_ig_input_delta(const void *state, int *n)
{
	const struct ig_state *st = state;

	*n = st->in_delta_n;
	return st->in_delta;
}

const float *iap_plugin_ig_unit_delta(const void *state, int *n_groups, int *n)
{
	const struct ig_state *st = state;

	*n_groups = st->n_groups;
	*n = st->unit_delta_n;
	return st->unit_delta;
}

const float *iap_plugin_ig_output_gap(const void *state, int *n)
{
	const struct ig_state *st = state;

	*n = st->n_samples;
	return st->gap;
}

static const struct iap_attribution_ops ig_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = 0,
	.create = ig_create,
	.destroy = ig_destroy,
	.score = ig_score,
	.explain = ig_explain,
	.unit_relevance = ig_unit_relevance,
	.completeness = ig_completeness,
};

static const struct iap_plugin_desc ig_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "ig",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "Integrated Gradients: unit conductance along the input path, input IG for heatmaps",
	.options = ig_options,
	.ops.attribution = &ig_ops,
};

IAP_PLUGIN_DEFINE(ig_desc)
