/*
 * iaprune — torch.optim.Adam (no amsgrad) and the StepLR schedule.
 *
 * The update follows PyTorch's single-tensor implementation operation by
 * operation (float32 elementwise, bias corrections in double as Python
 * computes them), so a run reproduces PyTorch's to rounding.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/train.h>

static int count_trainable(struct iap_node *node, struct iap_param *p, void *user)
{
	(void)node;
	if (p->flags & IAP_PARAM_TRAINABLE)
		(*(int *)user)++;
	return 0;
}

struct collect {
	struct iap_param **params;
	int n;
};

static int collect_trainable(struct iap_node *node, struct iap_param *p, void *user)
{
	struct collect *c = user;

	(void)node;
	if (p->flags & IAP_PARAM_TRAINABLE)
		c->params[c->n++] = p;
	return 0;
}

int iap_adam_init(struct iap_adam *opt, struct iap_graph *g, const struct iap_adam_cfg *cfg,
		  struct iap_error *err)
{
	struct collect c = { 0 };
	int n = 0, rc;

	memset(opt, 0, sizeof(*opt));
	if (!g || !cfg)
		return iap_error_set(err, IAP_EINVAL, "adam: need a graph and a configuration");
	if (!(cfg->lr >= 0.0) || !(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0) ||
	    !(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0) || !(cfg->eps >= 0.0) ||
	    !(cfg->weight_decay >= 0.0))
		return iap_error_set(err, IAP_EINVAL,
				     "adam: lr %g, betas (%g, %g), eps %g, weight decay %g out of range",
				     cfg->lr, cfg->beta1, cfg->beta2, cfg->eps, cfg->weight_decay);
	iap_graph_foreach_param(g, count_trainable, &n);
	opt->cfg = *cfg;
	opt->lr = cfg->lr;
	opt->n = n;
	c.params = calloc((size_t)n + 1, sizeof(*c.params));
	opt->m = calloc((size_t)n + 1, sizeof(*opt->m));
	opt->v = calloc((size_t)n + 1, sizeof(*opt->v));
	if (!c.params || !opt->m || !opt->v) {
		free(c.params);
		rc = iap_error_set(err, IAP_ENOMEM, "adam: out of memory");
		goto out_free;
	}
	opt->params = c.params;
	iap_graph_foreach_param(g, collect_trainable, &c);
	for (int i = 0; i < n; i++) {
		const struct iap_tensor *val = &opt->params[i]->value;

		if (!val->data) {
			rc = iap_error_set(err, IAP_EINVAL, "adam: parameter %s has no storage",
					   opt->params[i]->key);
			goto out_free;
		}
		rc = iap_tensor_alloc(&opt->m[i], val->ndim, val->shape, err);
		if (!rc)
			rc = iap_tensor_alloc(&opt->v[i], val->ndim, val->shape, err);
		if (rc) {
			iap_error_prefix(err, "adam state of %s", opt->params[i]->key);
			goto out_free;
		}
	}
	return IAP_OK;

out_free:
	iap_adam_free(opt);
	return rc;
}

void iap_adam_free(struct iap_adam *opt)
{
	if (!opt)
		return;
	for (int i = 0; opt->m && opt->v && i < opt->n; i++) {
		iap_tensor_free(&opt->m[i]);
		iap_tensor_free(&opt->v[i]);
	}
	free(opt->m);
	free(opt->v);
	free(opt->params);
	memset(opt, 0, sizeof(*opt));
}

int iap_adam_step(struct iap_adam *opt, struct iap_error *err)
{
	const float b2 = (float)opt->cfg.beta2;
	const float wd = (float)opt->cfg.weight_decay, eps = (float)opt->cfg.eps;
	const float one_m_b1 = (float)(1.0 - opt->cfg.beta1), one_m_b2 = (float)(1.0 - opt->cfg.beta2);
	double bc1, bc2;
	float step_size, bc2_sqrt;

	for (int i = 0; i < opt->n; i++) {
		struct iap_param *p = opt->params[i];

		if (!p->grad.data || !iap_tensor_same_shape(&p->grad, &p->value))
			return iap_error_set(err, IAP_EINVAL, "adam: %s has no gradient (zero_grads first)",
					     p->key);
	}
	opt->step++;
	/* Python floats: beta ** step in double, then used as float scalars by the kernels. */
	bc1 = 1.0 - pow(opt->cfg.beta1, (double)opt->step);
	bc2 = 1.0 - pow(opt->cfg.beta2, (double)opt->step);
	step_size = (float)(opt->lr / bc1);
	bc2_sqrt = (float)sqrt(bc2);

	for (int i = 0; i < opt->n; i++) {
		struct iap_param *p = opt->params[i];
		float *theta = p->value.data, *m = opt->m[i].data, *v = opt->v[i].data;
		const float *grad = p->grad.data;
		int64_t n = iap_tensor_numel(&p->value);

#pragma omp parallel for schedule(static) if(n > 32768)
		for (int64_t k = 0; k < n; k++) {
			float gk = grad[k];

			if (wd != 0.0f)
				gk += wd * theta[k];
			/* exp_avg.lerp_(grad, 1 − β1): for weights below 0.5, m + w·(g − m). */
			m[k] = m[k] + one_m_b1 * (gk - m[k]);
			v[k] = v[k] * b2 + one_m_b2 * gk * gk;
			float denom = sqrtf(v[k]) / bc2_sqrt + eps;
			theta[k] -= step_size * (m[k] / denom);
		}
	}
	return IAP_OK;
}

double iap_steplr(double base_lr, int step_size, double gamma, int epoch)
{
	double lr = base_lr;

	if (step_size < 1 || epoch < 0)
		return lr;
	/* PyTorch's chained form multiplies by gamma at every step boundary. */
	for (int k = step_size; k <= epoch; k += step_size)
		lr *= gamma;
	return lr;
}
