/*
 * The `lrp` plugin's per-walk plan (see lrp_plan.h). Convs in node order
 * are split into thirds (low, mid, high), linear layers are "dense", and
 * "first" is the composite's first layer: the first conv or linear node —
 * zennit's registration order — or, for epsilon-gamma-box, the first conv.
 * A conv whose only consumer is a BatchNorm reading it is canonised: the BN
 * is folded into it, y = γ·(conv(x) + b − μ)·istd + β being the conv with
 * W' = W·s, b' = (b − μ)·s + β, s = γ·istd, using the statistics the forward
 * actually used (BN aux[0]), so the fold is exact.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "lrp_plan.h"

/* The rule of conv/linear node nd, the ci-th of nconv convs (first: it is the composite's first layer). */
static enum lrp_rule rule_of(const struct lrp_layer_rules *lr, const struct iap_node *nd, int ci, int nconv,
			     int first)
{
	enum lrp_rule r = nd->kind == IAP_OP_LINEAR ? lr->dense
			  : lr->conv[ci * 3 < nconv ? 0 : ci * 3 < 2 * nconv ? 1 : 2];

	return first && lr->first != LRP_RULE_COMPOSITE ? lr->first : r;
}

/* The BN that conv node i feeds alone (its first reader, a BN reading it as input 0), or -1. */
static int bn_after(const struct iap_graph *g, int i)
{
	if (iap_graph_node(g, i)->n_consumers != 1)
		return -1;
	for (int j = i + 1; j < g->n_nodes; j++) {
		const struct iap_node *m = iap_graph_node(g, j);
		int reads = 0;

		for (int k = 0; k < m->n_inputs; k++)
			reads |= m->inputs[k] == i;
		if (reads)
			return m->kind == IAP_OP_BATCHNORM2D && m->inputs[0] == i ? j : -1;
	}
	return -1;
}

/* Scale and shift of BN node bn folded into conv node c, at dst (2 × channels). */
static void fold_into(const struct iap_graph *g, int c, int bn, float *dst)
{
	const struct iap_node *cv = iap_graph_node(g, c), *bnn = iap_graph_node(g, bn);
	const int out = cv->attr.conv.out_ch;
	const float *b = cv->attr.conv.has_bias ? cv->params[1].value.data : NULL;
	const float *mean = bnn->aux[0].data, *istd = mean + out;
	const float *gam = bnn->params[0].value.data, *bet = bnn->params[1].value.data;
	float *sc = dst, *bf = dst + out;

	for (int o = 0; o < out; o++) {
		sc[o] = gam[o] * istd[o];
		bf[o] = ((b ? b[o] : 0.0f) - mean[o]) * sc[o] + bet[o];
	}
}

/* 1 when BN node bn has the forward statistics of conv node c's channels. */
static int has_stats(const struct iap_graph *g, int c, int bn)
{
	const struct iap_tensor *a = &iap_graph_node(g, bn)->aux[0];

	return a->data && a->ndim >= 2 && a->shape[1] == iap_graph_node(g, c)->attr.conv.out_ch;
}

/* The rules and the folds' places; *fold_len receives the floats the folds need. */
static void plan_layers(struct lrp_plan *pl, const struct lrp_layer_rules *lr, const struct iap_graph *g,
			size_t *fold_len)
{
	int nconv = 0, ci = 0, first = -1;

	*fold_len = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *nd = iap_graph_node(g, i);

		pl->rule[i] = 0;
		pl->fold_bn[i] = pl->fold_at[i] = -1;
		pl->folded[i] = 0;
		nconv += nd->kind == IAP_OP_CONV2D;
		if (first < 0 && (nd->kind == IAP_OP_CONV2D || (nd->kind == IAP_OP_LINEAR && !lr->first_conv_only)))
			first = i;
	}
	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *nd = iap_graph_node(g, i);
		int bn;

		if (nd->kind != IAP_OP_CONV2D && nd->kind != IAP_OP_LINEAR)
			continue;
		pl->rule[i] = (signed char)rule_of(lr, nd, ci, nconv, i == first);
		if (nd->kind != IAP_OP_CONV2D)
			continue;
		ci++;
		bn = bn_after(g, i);
		if (bn < 0)
			continue;
		pl->fold_bn[i] = bn;
		pl->folded[bn] = 1;
		if (has_stats(g, i, bn)) {
			pl->fold_at[i] = (int)*fold_len;
			*fold_len += 2 * (size_t)nd->attr.conv.out_ch;
		}
	}
}

int lrp_plan_build(struct lrp_plan *pl, const struct lrp_layer_rules *layers, const struct iap_graph *g,
		   struct iap_error *err)
{
	const size_t n = g->n_nodes ? (size_t)g->n_nodes : 1;
	size_t fold_len;

	memset(pl, 0, sizeof(*pl));
	pl->rule = malloc(n * sizeof(*pl->rule));
	pl->fold_bn = malloc(n * sizeof(*pl->fold_bn));
	pl->folded = malloc(n);
	pl->fold_at = malloc(n * sizeof(*pl->fold_at));
	if (!pl->rule || !pl->fold_bn || !pl->folded || !pl->fold_at)
		goto out_nomem;
	plan_layers(pl, layers, g, &fold_len);
	pl->fold = malloc((fold_len ? fold_len : 1) * sizeof(float));
	if (!pl->fold)
		goto out_nomem;
	for (int i = 0; i < g->n_nodes; i++)
		if (pl->fold_at[i] >= 0)
			fold_into(g, i, pl->fold_bn[i], pl->fold + pl->fold_at[i]);
	return IAP_OK;
out_nomem:
	lrp_plan_free(pl);
	return iap_error_set(err, IAP_ENOMEM, "lrp: out of memory planning the rules");
}

void lrp_plan_free(struct lrp_plan *pl)
{
	free(pl->rule);
	free(pl->fold_bn);
	free(pl->folded);
	free(pl->fold_at);
	free(pl->fold);
	memset(pl, 0, sizeof(*pl));
}
