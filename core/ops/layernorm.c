/*
 * iaprune — LayerNorm over the last axis (PyTorch semantics: biased variance,
 * eps inside the square root, elementwise affine weight and bias).
 *
 * aux[0] = [rows, 2]: each row's mean and 1/√(var+eps), kept for the gradient.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "parallel.h"

enum { LN_WEIGHT, LN_BIAS };

/* Features per thread block in the parameter-gradient reduction. */
#define LN_COLS 64

static int ln_forward(struct iap_graph *g, struct iap_node *node,
		      const struct iap_tensor *const in[], struct iap_tensor *out,
		      struct iap_error *err)
{
	(void)g;
	const struct iap_tensor *xt = in[0];
	int64_t d = xt->shape[xt->ndim - 1];
	int64_t total = iap_tensor_numel(xt);
	int64_t rows = d > 0 ? total / d : 0;

	if (d != node->attr.norm.features)
		return iap_error_set(err, IAP_ESHAPE, "layernorm '%s': expected last axis %d, got %lld",
				     node->name ? node->name : "", node->attr.norm.features,
				     (long long)d);

	int64_t stat_shape[2] = { rows, 2 };
	int rc = iap_tensor_ensure(&node->aux[0], 2, stat_shape, err);
	if (rc)
		return rc;

	float *stats = node->aux[0].data;
	const float *w = node->params[LN_WEIGHT].value.data;
	const float *b = node->params[LN_BIAS].value.data;
	const float *x = xt->data;
	float *y = out->data;
	double eps = node->attr.norm.eps;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
	for (int64_t r = 0; r < rows; r++) {
		const float *xp = x + r * d;
		float *yp = y + r * d;
		/* Two passes in double: one-pass E[x²]−E[x]² cancels badly. */
		double s = 0.0;
#pragma omp simd reduction(+ : s)
		for (int64_t k = 0; k < d; k++)
			s += xp[k];
		double mu = s / (double)d;
		double ss = 0.0;
#pragma omp simd reduction(+ : ss)
		for (int64_t k = 0; k < d; k++) {
			double t = xp[k] - mu;
			ss += t * t;
		}
		double is = 1.0 / sqrt(ss / (double)d + eps);
		stats[2 * r] = (float)mu;
		stats[2 * r + 1] = (float)is;
#pragma omp simd
		for (int64_t k = 0; k < d; k++)
			yp[k] = (float)((xp[k] - mu) * is * w[k] + b[k]);
	}
	return IAP_OK;
}

/*
 * With x̂ = (x−μ)·σ⁻¹ and g = dy·w per row of D values:
 *   dx = σ⁻¹ · (g − mean(g) − x̂·mean(g·x̂)),
 *   d weight += Σ_rows dy·x̂,  d bias += Σ_rows dy.
 */
static int ln_backward(struct iap_rule_ctx *ctx)
{
	struct iap_node *node = ctx->node;
	const struct iap_tensor *xt = ctx->in[0];
	int64_t d = xt->shape[xt->ndim - 1];
	int64_t total = iap_tensor_numel(xt);
	int64_t rows = d > 0 ? total / d : 0;

	if (!node->aux[0].data || node->aux[0].shape[0] != rows)
		return iap_error_set(ctx->err, IAP_EINVAL,
				     "layernorm '%s': gradient without a matching forward pass",
				     node->name ? node->name : "");

	const float *stats = node->aux[0].data;
	const float *w = node->params[LN_WEIGHT].value.data;
	const float *x = xt->data;
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0] ? ctx->r_in[0]->data : NULL;

	if (dx) {
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
		for (int64_t r = 0; r < rows; r++) {
			const float *xp = x + r * d;
			const float *gp = dy + r * d;
			float *dp = dx + r * d;
			double mu = stats[2 * r], is = stats[2 * r + 1];
			double sg = 0.0, sgx = 0.0;
			for (int64_t k = 0; k < d; k++) {
				double gk = (double)gp[k] * w[k];
				sg += gk;
				sgx += gk * ((xp[k] - mu) * is);
			}
			sg /= (double)d;
			sgx /= (double)d;
			for (int64_t k = 0; k < d; k++) {
				double xh = (xp[k] - mu) * is;
				dp[k] += (float)(is * ((double)gp[k] * w[k] - sg - xh * sgx));
			}
		}
	}

	if (ctx->want_param_grads) {
		float *dw = node->params[LN_WEIGHT].grad.data;
		float *db = node->params[LN_BIAS].grad.data;
		if (!dw && !db)
			return IAP_OK;
		/*
		 * Reduce over rows per feature. Threads own blocks of LN_COLS
		 * features and walk the rows in memory order, summing in double
		 * on the stack: no scratch, no races, cache-friendly.
		 */
		int64_t nblk = (d + LN_COLS - 1) / LN_COLS;
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(total)))
		for (int64_t blk = 0; blk < nblk; blk++) {
			int64_t k0 = blk * LN_COLS;
			int64_t kn = d - k0 < LN_COLS ? d - k0 : LN_COLS;
			double sw[LN_COLS] = { 0 }, sb[LN_COLS] = { 0 };
			for (int64_t r = 0; r < rows; r++) {
				double mu = stats[2 * r], is = stats[2 * r + 1];
				const float *xp = x + r * d + k0;
				const float *gp = dy + r * d + k0;
				for (int64_t k = 0; k < kn; k++) {
					sw[k] += (double)gp[k] * ((xp[k] - mu) * is);
					sb[k] += gp[k];
				}
			}
			for (int64_t k = 0; k < kn; k++) {
				if (dw)
					dw[k0 + k] += (float)sw[k];
				if (db)
					db[k0 + k] += (float)sb[k];
			}
		}
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_layernorm = {
	.kind = IAP_OP_LAYERNORM,
	.forward = ln_forward,
	.backward = ln_backward,
	.workspace = NULL,
	.macs = NULL,
};

int iap_layernorm(struct iap_graph *g, const char *name, int in, float eps)
{
	int64_t shp[IAP_MAX_DIMS];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	const char *nm = name ? name : "";
	if (nd < 1 || shp[nd - 1] < 1 || shp[nd - 1] > INT32_MAX)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: layernorm needs a non-empty last axis", nm);
	if (!(eps > 0.0f))
		return iap_graph_fail(g, IAP_EINVAL, "%s: layernorm needs eps > 0 (got %g)", nm,
				      (double)eps);

	int id = iap_graph_add_node(g, &iap_op_layernorm, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->attr.norm.features = (int)shp[nd - 1];
	n->attr.norm.eps = eps;
	n->attr.norm.momentum = 0.0f;
	n->attr.norm.affine = 1;
	n->out_ndim = nd;
	for (int k = 0; k < nd; k++)
		n->out_shape[k] = shp[k];

	/* Order matters: ln_forward indexes params by the LN_* enum. */
	int64_t pd[1] = { shp[nd - 1] };
	if (iap_graph_add_param(g, id, "weight", 1, pd, IAP_PARAM_TRAINABLE) != LN_WEIGHT ||
	    iap_graph_add_param(g, id, "bias", 1, pd, IAP_PARAM_TRAINABLE) != LN_BIAS)
		return -1;

	n = &g->nodes[id];
	/* A shape-only graph (parameter counting) has no storage to fill. */
	for (int64_t k = 0; n->params[LN_WEIGHT].value.data && k < shp[nd - 1]; k++)
		n->params[LN_WEIGHT].value.data[k] = 1.0f;
	return id;
}
