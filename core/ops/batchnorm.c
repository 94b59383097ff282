/*
 * iaprune — BatchNorm2d over NCHW (per channel), PyTorch semantics.
 *
 * Evaluation normalises with the running statistics. Training normalises with
 * the batch mean and the biased batch variance, updates the running
 * statistics with momentum (the variance update uses the unbiased estimate,
 * n/(n−1)), and its gradient flows through the batch statistics.
 *
 * aux[0] = [2, C]: the mean and 1/√(var+eps) the forward actually used, so the
 *          gradient matches the forward even after the running stats moved.
 * aux[1] = [1]:    1 when that forward ran in training mode.
 *
 * The sample shape may also be [C] or [C, L] (BatchNorm1d): the statistics
 * are per channel (sample axis 0) either way.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "fused.h"
#include "parallel.h"

enum { BN_WEIGHT, BN_BIAS, BN_RMEAN, BN_RVAR };

/* View of a [N, C, inner...] tensor: n samples, c channels, inner positions. */
static void bn_view(const struct iap_tensor *t, int64_t *n, int64_t *c, int64_t *inner)
{
	*n = t->shape[0];
	*c = t->shape[1];
	*inner = 1;
	for (int d = 2; d < t->ndim; d++)
		*inner *= t->shape[d];
}

/*
 * Channel ch's batch mean (*mu) and sum of squared deviations (returned),
 * in two passes in double: one-pass E[x²]−E[x]² cancels badly.
 */
static double bn_channel_stats(const float *x, int64_t n, int64_t c, int64_t inner, int64_t ch, double *mu)
{
	double s = 0.0, ss = 0.0;

	for (int64_t i = 0; i < n; i++) {
		const float *xp = x + (i * c + ch) * inner;
		for (int64_t k = 0; k < inner; k++)
			s += xp[k];
	}
	*mu = s / (double)(n * inner);
	for (int64_t i = 0; i < n; i++) {
		const float *xp = x + (i * c + ch) * inner;
		for (int64_t k = 0; k < inner; k++) {
			double d = xp[k] - *mu;
			ss += d * d;
		}
	}
	return ss;
}

/* Channel ch of every sample: y = x·scale + shift, and z = relu(y) when z is not NULL (fused.h). */
static void bn_apply_channel(const float *x, float *y, float *z, int64_t n, int64_t c, int64_t inner,
			     int64_t ch, float scale, float shift)
{
	for (int64_t i = 0; i < n; i++) {
		const float *xp = x + (i * c + ch) * inner;
		float *yp = y + (i * c + ch) * inner;

		if (!z) {
#pragma omp simd
			for (int64_t k = 0; k < inner; k++)
				yp[k] = xp[k] * scale + shift;
			continue;
		}
		float *zp = z + (i * c + ch) * inner;
#pragma omp simd
		for (int64_t k = 0; k < inner; k++) {
			float v = xp[k] * scale + shift;

			yp[k] = v;
			zp[k] = iap_relu1(v);
		}
	}
}

/* The forward; relu_out, when not NULL, also gets relu(out) in the same pass (fused.h). */
static int bn_forward_into(struct iap_graph *g, struct iap_node *node,
			   const struct iap_tensor *const in[], struct iap_tensor *out,
			   struct iap_tensor *relu_out, struct iap_error *err)
{
	int64_t n, c, inner;
	bn_view(in[0], &n, &c, &inner);
	int64_t count = n * inner;          /* values per channel */
	const char *nm = node->name ? node->name : "";
	int training = g->training;

	if (c != node->attr.norm.features)
		return iap_error_set(err, IAP_ESHAPE, "batchnorm '%s': expected %d channels, got %lld",
				     nm, node->attr.norm.features, (long long)c);
	if (training && count < 2)
		return iap_error_set(err, IAP_EINVAL,
				     "batchnorm '%s': training needs more than 1 value per channel (got %lld)",
				     nm, (long long)count);

	int64_t stat_shape[2] = { 2, c };
	int64_t flag_shape[1] = { 1 };
	int rc = iap_tensor_ensure(&node->aux[0], 2, stat_shape, err);
	if (rc)
		return rc;
	rc = iap_tensor_ensure(&node->aux[1], 1, flag_shape, err);
	if (rc)
		return rc;

	float *mean = node->aux[0].data;
	float *invstd = node->aux[0].data + c;
	float *rmean = node->params[BN_RMEAN].value.data;
	float *rvar = node->params[BN_RVAR].value.data;
	const float *w = node->params[BN_WEIGHT].value.data;
	const float *b = node->params[BN_BIAS].value.data;
	const float *x = in[0]->data;
	float *y = out->data;
	float *z = relu_out ? relu_out->data : NULL;
	float eps = node->attr.norm.eps;
	float mom = node->attr.norm.momentum;

	node->aux[1].data[0] = training ? 1.0f : 0.0f;
	/* As PyTorch's num_batches_tracked: one per training forward (saved with the weights). */
	if (training)
		node->attr.norm.batches_tracked++;

	/* One channel per iteration: the statistics are independent per channel. */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n * c * inner)))
	for (int64_t ch = 0; ch < c; ch++) {
		double mu, var;
		if (training) {
			double ss = bn_channel_stats(x, n, c, inner, ch, &mu);

			var = ss / (double)count;
			double unbiased = ss / (double)(count - 1);
			rmean[ch] = (float)((1.0 - mom) * rmean[ch] + mom * mu);
			rvar[ch] = (float)((1.0 - mom) * rvar[ch] + mom * unbiased);
		} else {
			mu = rmean[ch];
			var = rvar[ch];
		}
		double is = 1.0 / sqrt(var + (double)eps);
		mean[ch] = (float)mu;
		invstd[ch] = (float)is;

		/* y = x·scale + shift with the affine folded in. */
		bn_apply_channel(x, y, z, n, c, inner, ch, (float)(w[ch] * is), (float)(b[ch] - mu * w[ch] * is));
	}
	return IAP_OK;
}

static int bn_forward(struct iap_graph *g, struct iap_node *node,
		      const struct iap_tensor *const in[], struct iap_tensor *out,
		      struct iap_error *err)
{
	return bn_forward_into(g, node, in, out, NULL, err);
}

int iap_batchnorm_forward_relu(struct iap_graph *g, struct iap_node *node,
			       const struct iap_tensor *const in[], struct iap_tensor *out,
			       struct iap_tensor *relu_out, struct iap_error *err)
{
	return bn_forward_into(g, node, in, out, relu_out, err);
}

/*
 * With x̂ = (x−μ)·σ⁻¹ and dy the upstream gradient, per channel:
 *   d bias = Σ dy,  d weight = Σ dy·x̂,
 *   training: dx = w·σ⁻¹/m · (m·dy − Σ dy − x̂·Σ dy·x̂)   (m values per channel)
 *   eval:     dx = w·σ⁻¹·dy   (running statistics are constants).
 */
static int bn_backward(struct iap_rule_ctx *ctx)
{
	struct iap_node *node = ctx->node;
	const struct iap_tensor *xt = ctx->in[0];
	int64_t n, c, inner;
	bn_view(xt, &n, &c, &inner);
	int64_t count = n * inner;

	if (!node->aux[0].data || node->aux[0].shape[1] != c || !node->aux[1].data)
		return iap_error_set(ctx->err, IAP_EINVAL,
				     "batchnorm '%s': gradient without a matching forward pass",
				     node->name ? node->name : "");

	const float *mean = node->aux[0].data;
	const float *invstd = node->aux[0].data + c;
	int training = node->aux[1].data[0] != 0.0f;
	const float *w = node->params[BN_WEIGHT].value.data;
	const float *x = xt->data;
	const float *dy = ctx->r_out->data;
	float *dx = ctx->r_in[0] ? ctx->r_in[0]->data : NULL;
	float *dw = NULL, *db = NULL;
	if (ctx->want_param_grads) {
		dw = node->params[BN_WEIGHT].grad.data;
		db = node->params[BN_BIAS].grad.data;
	}
	if (!dx && !dw && !db)
		return IAP_OK;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n * c * inner)))
	for (int64_t ch = 0; ch < c; ch++) {
		double mu = mean[ch], is = invstd[ch];
		double sdy = 0.0, sdyx = 0.0;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * inner;
			const float *gp = dy + (i * c + ch) * inner;
			for (int64_t k = 0; k < inner; k++) {
				sdy += gp[k];
				sdyx += gp[k] * ((xp[k] - mu) * is);
			}
		}
		if (dw)
			dw[ch] += (float)sdyx;
		if (db)
			db[ch] += (float)sdy;
		if (!dx)
			continue;

		double k0 = w[ch] * is;
		for (int64_t i = 0; i < n; i++) {
			const float *xp = x + (i * c + ch) * inner;
			const float *gp = dy + (i * c + ch) * inner;
			float *dp = dx + (i * c + ch) * inner;
			if (training) {
				double mdy = sdy / (double)count, mdyx = sdyx / (double)count;
				for (int64_t k = 0; k < inner; k++) {
					double xh = (xp[k] - mu) * is;
					dp[k] += (float)(k0 * (gp[k] - mdy - xh * mdyx));
				}
			} else {
				for (int64_t k = 0; k < inner; k++)
					dp[k] += (float)(k0 * gp[k]);
			}
		}
	}
	return IAP_OK;
}

const struct iap_op_ops iap_op_batchnorm2d = {
	.kind = IAP_OP_BATCHNORM2D,
	.forward = bn_forward,
	.backward = bn_backward,
	.workspace = NULL,
	.macs = NULL,   /* like the usual MAC counts, only conv/linear count */
};

int iap_batchnorm2d(struct iap_graph *g, const char *name, int in, float eps, float momentum)
{
	int64_t shp[IAP_MAX_DIMS];
	int nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	const char *nm = name ? name : "";
	if (nd < 1 || nd > 3 || shp[0] < 1 || shp[0] > INT32_MAX)
		return iap_graph_fail(g, IAP_ESHAPE,
				      "%s: batchnorm expects a [C, H, W] sample, got %d dims", nm, nd);
	if (!(eps > 0.0f) || !(momentum >= 0.0f && momentum <= 1.0f))
		return iap_graph_fail(g, IAP_EINVAL,
				      "%s: batchnorm needs eps > 0 and momentum in [0, 1] (got %g, %g)",
				      nm, (double)eps, (double)momentum);

	int id = iap_graph_add_node(g, &iap_op_batchnorm2d, name, 1, &in);
	if (id < 0)
		return -1;
	struct iap_node *n = &g->nodes[id];
	n->attr.norm.features = (int)shp[0];
	n->attr.norm.eps = eps;
	n->attr.norm.momentum = momentum;
	n->attr.norm.affine = 1;
	n->out_ndim = nd;
	for (int d = 0; d < nd; d++)
		n->out_shape[d] = shp[d];

	/* Order matters: bn_forward indexes params by the BN_* enum. */
	int64_t pc[1] = { shp[0] };
	if (iap_graph_add_param(g, id, "weight", 1, pc, IAP_PARAM_TRAINABLE) != BN_WEIGHT ||
	    iap_graph_add_param(g, id, "bias", 1, pc, IAP_PARAM_TRAINABLE) != BN_BIAS ||
	    iap_graph_add_param(g, id, "running_mean", 1, pc, IAP_PARAM_BUFFER) != BN_RMEAN ||
	    iap_graph_add_param(g, id, "running_var", 1, pc, IAP_PARAM_BUFFER) != BN_RVAR)
		return -1;

	n = &g->nodes[id];
	/* A shape-only graph (parameter counting) has no storage to fill. */
	for (int64_t ch = 0; n->params[BN_WEIGHT].value.data && ch < shp[0]; ch++) {
		n->params[BN_WEIGHT].value.data[ch] = 1.0f;
		n->params[BN_RVAR].value.data[ch] = 1.0f;
	}
	return id;
}
