/*
 * torchvision's parameter initialisation for the three families, so a model
 * trained from scratch here starts where PyTorch's would (not bit-identical:
 * the random streams differ, the distributions do not).
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include <iaprune/ops.h>
#include <iaprune/rng.h>

#include "arch.h"

int iap_scaled(int c, double width)
{
	long v = lround((double)c * width);

	return v < 1 ? 1 : (int)v;
}

static void fill_const(struct iap_param *p, float v)
{
	for (int64_t i = 0; i < iap_tensor_numel(&p->value); i++)
		p->value.data[i] = v;
}

static void fill_normal(struct iap_param *p, struct iap_rng *r, double std, double trunc)
{
	for (int64_t i = 0; i < iap_tensor_numel(&p->value); i++) {
		double z;

		do
			z = iap_rng_normal(r) * std;
		while (trunc > 0 && fabs(z) > trunc);
		p->value.data[i] = (float)z;
	}
}

static void fill_uniform(struct iap_param *p, struct iap_rng *r, double bound)
{
	for (int64_t i = 0; i < iap_tensor_numel(&p->value); i++)
		p->value.data[i] = (float)((2.0 * iap_rng_uniform(r) - 1.0) * bound);
}

static int is_leaf(const struct iap_param *p, const char *leaf)
{
	const char *dot = strrchr(p->key, '.');

	return strcmp(dot ? dot + 1 : p->key, leaf) == 0;
}

/* Norm layers: weight 1, bias 0, running mean 0, running variance 1. */
static void init_norm(struct iap_node *n)
{
	for (int k = 0; k < n->n_params; k++) {
		struct iap_param *p = &n->params[k];

		fill_const(p, is_leaf(p, "weight") || is_leaf(p, "running_var") ? 1.0f : 0.0f);
	}
}

/* kaiming_normal_(mode="fan_out", nonlinearity="relu") and a zero bias. */
static void init_conv_fan_out(struct iap_node *n, struct iap_rng *r)
{
	const struct iap_conv2d_attr *c = &n->attr.conv;

	fill_normal(&n->params[0], r, sqrt(2.0 / (double)(c->out_ch * c->kh * c->kw)), 0);
	if (n->n_params > 1)
		fill_const(&n->params[1], 0.0f);
}

/* torch.nn.Linear's default: U(±1/√fan_in) for weight and bias. */
static void init_linear_default(struct iap_node *n, struct iap_rng *r)
{
	double bound = 1.0 / sqrt((double)n->attr.linear.in_features);

	fill_uniform(&n->params[0], r, bound);
	if (n->n_params > 1)
		fill_uniform(&n->params[1], r, bound);
}

void iap_vgg_init(struct iap_graph *g, uint64_t seed)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = iap_graph_node(g, i);

		if (n->kind == IAP_OP_CONV2D) {
			init_conv_fan_out(n, &r);
		} else if (n->kind == IAP_OP_BATCHNORM2D) {
			init_norm(n);
		} else if (n->kind == IAP_OP_LINEAR) {
			fill_normal(&n->params[0], &r, 0.01, 0);
			fill_const(&n->params[1], 0.0f);
		}
	}
}

void iap_resnet_init(struct iap_graph *g, uint64_t seed)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = iap_graph_node(g, i);

		if (n->kind == IAP_OP_CONV2D)
			init_conv_fan_out(n, &r);
		else if (n->kind == IAP_OP_BATCHNORM2D)
			init_norm(n);
		else if (n->kind == IAP_OP_LINEAR)
			init_linear_default(n, &r);
	}
}

void iap_vit_init(struct iap_graph *g, uint64_t seed)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = iap_graph_node(g, i);

		for (int k = 0; k < n->n_params; k++) {
			struct iap_param *p = &n->params[k];
			const char *key = p->key;

			if (n->kind == IAP_OP_LAYERNORM) {
				init_norm(n);
				break;
			} else if (n->kind == IAP_OP_CONV2D) {
				/* conv_proj: trunc_normal(std = √(1/fan_in)), zero bias. */
				const struct iap_conv2d_attr *c = &n->attr.conv;

				if (k == 0)
					fill_normal(p, &r, sqrt(1.0 / (double)(c->in_ch * c->kh * c->kw)), 2.0);
				else
					fill_const(p, 0.0f);
			} else if (strcmp(key, "class_token") == 0) {
				fill_const(p, 0.0f);
			} else if (n->kind == IAP_OP_POS_EMBED) {
				fill_normal(p, &r, 0.02, 0);
			} else if (strstr(key, ".in_proj_weight")) {
				/* xavier_uniform over [3D, D]. */
				fill_uniform(p, &r, sqrt(6.0 / (double)(p->value.shape[0] + p->value.shape[1])));
			} else if (strstr(key, ".in_proj_bias") || (strstr(key, ".out_proj.") && is_leaf(p, "bias"))) {
				fill_const(p, 0.0f);
			} else if (strstr(key, ".out_proj.")) {
				fill_uniform(p, &r, 1.0 / sqrt((double)p->value.shape[1]));
			} else if (strstr(key, ".mlp.")) {
				/* MLPBlock: xavier_uniform weights, N(0, 1e-6) biases. */
				if (is_leaf(p, "weight"))
					fill_uniform(p, &r, sqrt(6.0 / (double)(p->value.shape[0] + p->value.shape[1])));
				else
					fill_normal(p, &r, 1e-6, 0);
			} else if (strncmp(key, "heads.", 6) == 0) {
				fill_const(p, 0.0f);
			}
		}
	}
}
