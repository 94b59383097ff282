/*
 * The `lrp` attribution plugin: Layer-wise Relevance Propagation as a rule
 * set for the core's backward walk (rules in lrp_rules.c).
 *
 * Which rule a conv or linear layer gets is a plan made once per graph from
 * the composite (named as zennit names them) and the per-group overrides of
 * Pruning-by-eXplaining: convs in node order are split into thirds (low, mid,
 * high), linear layers are "dense", and "first" is the composite's first
 * layer (the first conv or linear node — zennit's registration order — or,
 * for epsilon-gamma-box, the first conv). The plan also marks which
 * BatchNorm is folded into the conv before it.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>
#include <iaprune/plugin.h>

#include "lrp.h"

const char *const lrp_rule_names[] = {
	"composite", "epsilon", "zplus", "alpha-beta", "gamma", "flat", "wsquare", "zbox", NULL
};

struct composite {
	const char *name;
	enum lrp_rule conv, dense;
	enum lrp_rule first;       /* LRP_RULE_COMPOSITE: no special first layer */
	int first_conv_only;       /* "first" is the first conv (EpsilonGammaBox), not any layer */
};

/* zennit's composites (composites.py), then uniform ones (one rule everywhere). */
static const struct composite composites[] = {
	{ "epsilon-plus-flat", LRP_RULE_ZPLUS, LRP_RULE_EPSILON, LRP_RULE_FLAT, 0 },
	{ "epsilon-plus", LRP_RULE_ZPLUS, LRP_RULE_EPSILON, LRP_RULE_COMPOSITE, 0 },
	{ "epsilon-gamma-box", LRP_RULE_GAMMA, LRP_RULE_EPSILON, LRP_RULE_ZBOX, 1 },
	{ "epsilon-alpha2-beta1", LRP_RULE_ALPHABETA, LRP_RULE_EPSILON, LRP_RULE_COMPOSITE, 0 },
	{ "epsilon-alpha2-beta1-flat", LRP_RULE_ALPHABETA, LRP_RULE_EPSILON, LRP_RULE_FLAT, 0 },
	{ "epsilon", LRP_RULE_EPSILON, LRP_RULE_EPSILON, LRP_RULE_COMPOSITE, 0 },
	{ "zplus", LRP_RULE_ZPLUS, LRP_RULE_ZPLUS, LRP_RULE_COMPOSITE, 0 },
	{ "alpha-beta", LRP_RULE_ALPHABETA, LRP_RULE_ALPHABETA, LRP_RULE_COMPOSITE, 0 },
	{ "gamma", LRP_RULE_GAMMA, LRP_RULE_GAMMA, LRP_RULE_COMPOSITE, 0 },
	{ "flat", LRP_RULE_FLAT, LRP_RULE_FLAT, LRP_RULE_COMPOSITE, 0 },
	{ "wsquare", LRP_RULE_WSQUARE, LRP_RULE_WSQUARE, LRP_RULE_COMPOSITE, 0 },
};
#define N_COMPOSITES ((int)(sizeof(composites) / sizeof(composites[0])))

static const char *const composite_names[] = {
	"epsilon-plus-flat", "epsilon-plus", "epsilon-gamma-box", "epsilon-alpha2-beta1",
	"epsilon-alpha2-beta1-flat", "epsilon", "zplus", "alpha-beta", "gamma", "flat", "wsquare", NULL
};
_Static_assert(sizeof(composite_names) / sizeof(composite_names[0]) == N_COMPOSITES + 1,
	       "composite_names matches composites");

static const char *const vit_rule_names[] = { "attnlrp", "cplrp", NULL };

#define RULE_OPTION(nm, what) \
	{ .name = nm, .type = IAP_OPT_ENUM, .def = "composite", .choices = lrp_rule_names, \
	  .help = "rule for " what " (composite: as the composite says)" }

static const struct iap_option lrp_options[] = {
	{ .name = "composite", .type = IAP_OPT_ENUM, .def = "epsilon-plus-flat", .choices = composite_names,
	  .help = "rules per layer type, as zennit's composites (or one rule everywhere)" },
	{ .name = "epsilon", .type = IAP_OPT_FLOAT, .def = "1e-6", .has_range = 1, .min = 0, .max = 1e6,
	  .help = "epsilon of the Epsilon rule (also LayerNorm, attention products, position embedding)" },
	{ .name = "stabilizer", .type = IAP_OPT_FLOAT, .def = "1e-6", .has_range = 1, .min = 0, .max = 1,
	  .help = "denominator stabiliser of the other rules and of the proportional splits" },
	{ .name = "gamma", .type = IAP_OPT_FLOAT, .def = "0.25", .has_range = 1, .min = 0, .max = 1e6,
	  .help = "gamma of the Gamma rule" },
	{ .name = "alpha", .type = IAP_OPT_FLOAT, .def = "2", .has_range = 1, .min = 0, .max = 1e6,
	  .help = "alpha of the AlphaBeta rule (alpha - beta must be 1)" },
	{ .name = "beta", .type = IAP_OPT_FLOAT, .def = "1", .has_range = 1, .min = 0, .max = 1e6,
	  .help = "beta of the AlphaBeta rule" },
	{ .name = "zbox_low", .type = IAP_OPT_STRING, .def = "-3",
	  .help = "ZBox lowest input value: one number or one per input channel, comma-separated" },
	{ .name = "zbox_high", .type = IAP_OPT_STRING, .def = "3",
	  .help = "ZBox highest input value: one number or one per input channel, comma-separated" },
	{ .name = "zero_bias", .type = IAP_OPT_BOOL, .def = "false",
	  .help = "treat biases (and folded BatchNorm shifts) as zero inside the rules" },
	RULE_OPTION("rule_first", "the composite's first layer"),
	RULE_OPTION("rule_low", "the first third of the convolutions"),
	RULE_OPTION("rule_mid", "the middle third of the convolutions"),
	RULE_OPTION("rule_high", "the last third of the convolutions"),
	RULE_OPTION("rule_dense", "linear layers"),
	{ .name = "vit_rule", .type = IAP_OPT_ENUM, .def = "attnlrp", .choices = vit_rule_names,
	  .help = "attention: AttnLRP, or CP-LRP (weights constant: heads then score 0)" },
	IAP_ATTR_COMMON_OPTIONS,
	{ .name = NULL },
};

static int index_of(const char *const *names, const char *v)
{
	for (int i = 0; v && names[i]; i++)
		if (strcmp(names[i], v) == 0)
			return i;
	return -1;
}

/* "a,b,c" → floats (malloc'd); at most 64 values. */
static int parse_list(const char *opt, const char *s, float **out, int *n, struct iap_error *err)
{
	float buf[64];
	int k = 0;
	const char *p = s;

	for (;;) {
		char *end;
		double v;

		if (k == 64)
			return iap_error_set(err, IAP_EINVAL, "lrp: option '%s': more than 64 values", opt);
		v = strtod(p, &end);
		if (end == p || !isfinite(v))
			return iap_error_set(err, IAP_EINVAL,
					     "lrp: option '%s': expected numbers separated by commas, got '%s'",
					     opt, s);
		buf[k++] = (float)v;
		while (*end == ' ')
			end++;
		if (*end == '\0')
			break;
		if (*end != ',')
			return iap_error_set(err, IAP_EINVAL,
					     "lrp: option '%s': expected numbers separated by commas, got '%s'",
					     opt, s);
		p = end + 1;
	}
	*out = malloc((size_t)k * sizeof(float));
	if (!*out)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	memcpy(*out, buf, (size_t)k * sizeof(float));
	*n = k;
	return IAP_OK;
}

int lrp_plan(struct lrp_state *st, const struct iap_graph *g, struct iap_error *err)
{
	const struct composite *c = &composites[st->composite];
	int n = g->n_nodes, nconv = 0, ci = 0, first = -1;
	signed char *rule;
	int *fold;
	unsigned char *folded;

	rule = realloc(st->rule, (size_t)(n ? n : 1) * sizeof(*rule));
	if (rule)
		st->rule = rule;
	fold = realloc(st->fold_bn, (size_t)(n ? n : 1) * sizeof(*fold));
	if (fold)
		st->fold_bn = fold;
	folded = realloc(st->folded, (size_t)(n ? n : 1));
	if (folded)
		st->folded = folded;
	if (!rule || !fold || !folded)
		return iap_error_set(err, IAP_ENOMEM, "lrp: out of memory planning the rules");
	for (int i = 0; i < n; i++) {
		const struct iap_node *nd = iap_graph_node(g, i);

		rule[i] = 0;
		fold[i] = -1;
		folded[i] = 0;
		if (nd->kind == IAP_OP_CONV2D)
			nconv++;
		if (first < 0 && (nd->kind == IAP_OP_CONV2D ||
				  (nd->kind == IAP_OP_LINEAR && !c->first_conv_only)))
			first = i;
	}
	for (int i = 0; i < n; i++) {
		const struct iap_node *nd = iap_graph_node(g, i);
		enum lrp_rule r;

		if (nd->kind == IAP_OP_CONV2D) {
			enum lrp_rule over = ci * 3 < nconv ? st->over_low
					     : ci * 3 < 2 * nconv ? st->over_mid : st->over_high;

			r = over != LRP_RULE_COMPOSITE ? over : c->conv;
			ci++;
		} else if (nd->kind == IAP_OP_LINEAR) {
			r = st->over_dense != LRP_RULE_COMPOSITE ? st->over_dense : c->dense;
		} else {
			continue;
		}
		if (i == first) {
			if (st->over_first != LRP_RULE_COMPOSITE)
				r = st->over_first;
			else if (c->first != LRP_RULE_COMPOSITE)
				r = c->first;
		}
		rule[i] = (signed char)r;
		/* Canonise conv → BN: the conv's only consumer is a BN reading it. */
		if (nd->kind != IAP_OP_CONV2D || nd->n_consumers != 1)
			continue;
		for (int j = i + 1; j < n; j++) {
			const struct iap_node *m = iap_graph_node(g, j);
			int reads = 0;

			for (int k = 0; k < m->n_inputs; k++)
				reads |= m->inputs[k] == i;
			if (!reads)
				continue;
			if (m->kind == IAP_OP_BATCHNORM2D && m->inputs[0] == i) {
				fold[i] = j;
				folded[j] = 1;
			}
			break;
		}
	}
	st->g = g;
	st->n_nodes = n;
	return IAP_OK;
}

static void lrp_destroy(void *state)
{
	struct lrp_state *st = state;

	if (!st)
		return;
	free(st->rule);
	free(st->fold_bn);
	free(st->folded);
	free(st->fold);
	free(st->p.low);
	free(st->p.high);
	free(st);
}

static enum lrp_rule rule_opt(const struct iap_opts *opts, const char *name)
{
	int i = index_of(lrp_rule_names, iap_opts_str(opts, name));

	return i < 0 ? LRP_RULE_COMPOSITE : (enum lrp_rule)i;
}

static int lrp_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
		      struct iap_error *err)
{
	struct lrp_state *st;
	double alpha, beta;
	int rc;

	*state = NULL;
	if (!opts)
		return iap_error_set(err, IAP_EINVAL, "lrp: no options given");
	st = calloc(1, sizeof(*st));
	if (!st)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	st->rs.name = "lrp";
	st->rs.user = st;
	lrp_ruleset_fill(&st->rs);
	st->composite = index_of(composite_names, iap_opts_str(opts, "composite"));
	if (st->composite < 0) {
		rc = iap_error_set(err, IAP_EINVAL, "lrp: unknown composite '%s'",
				   iap_opts_str(opts, "composite"));
		goto out_free;
	}
	alpha = iap_opts_float(opts, "alpha");
	beta = iap_opts_float(opts, "beta");
	/* zennit refuses the same: only α − β = 1 keeps the rule conservative. */
	if (alpha < 0 || beta < 0 || fabs(alpha - beta - 1.0) > 1e-6) {
		rc = iap_error_set(err, IAP_EINVAL,
				   "lrp: alpha - beta must equal 1 with both >= 0 (got alpha %g, beta %g)",
				   alpha, beta);
		goto out_free;
	}
	st->p = (struct lrp_params){
		.epsilon = (float)iap_opts_float(opts, "epsilon"),
		.stabilizer = (float)iap_opts_float(opts, "stabilizer"),
		.gamma = (float)iap_opts_float(opts, "gamma"),
		.alpha = (float)alpha,
		.beta = (float)beta,
		.zero_bias = iap_opts_bool(opts, "zero_bias"),
		.vit = index_of(vit_rule_names, iap_opts_str(opts, "vit_rule")) == 1 ? LRP_VIT_CPLRP
										       : LRP_VIT_ATTNLRP,
	};
	rc = parse_list("zbox_low", iap_opts_str(opts, "zbox_low"), &st->p.low, &st->p.n_low, err);
	if (!rc)
		rc = parse_list("zbox_high", iap_opts_str(opts, "zbox_high"), &st->p.high,
				&st->p.n_high, err);
	if (rc)
		goto out_free;
	st->over_first = rule_opt(opts, "rule_first");
	st->over_low = rule_opt(opts, "rule_low");
	st->over_mid = rule_opt(opts, "rule_mid");
	st->over_high = rule_opt(opts, "rule_high");
	st->over_dense = rule_opt(opts, "rule_dense");
	iap_score_opts_from(opts, &st->so);
	if (g) {
		rc = lrp_plan(st, g, err);
		if (rc)
			goto out_free;
	}
	*state = st;
	return IAP_OK;
out_free:
	lrp_destroy(st);
	return rc;
}

static const struct iap_ruleset *lrp_ruleset(void *state)
{
	struct lrp_state *st = state;

	return &st->rs;
}

/* Input heatmap: one walk from the targets' seed, relevance read at the input. */
static int lrp_explain(void *state, struct iap_graph *g, const struct iap_tensor *x,
		       const int *targets, struct iap_tensor *relevance, struct iap_error *err)
{
	struct lrp_state *st = state;
	const struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_tensor seed = { 0 };
	const struct iap_tensor *logits = iap_graph_output(g);
	int rc;

	(void)x;
	if (!logits)
		return iap_error_set(err, IAP_EINVAL, "lrp: explain needs a forward pass first");
	rc = iap_seed_target(logits, targets, &st->so, &seed, err);
	if (!rc)
		rc = iap_graph_backward(g, &st->rs, &seed, &wo, err);
	if (!rc)
		rc = iap_tensor_copy(relevance, &g->input_r, err);
	iap_tensor_free(&seed);
	return rc;
}

static const struct iap_attribution_ops lrp_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = 0,
	.create = lrp_create,
	.destroy = lrp_destroy,
	.ruleset = lrp_ruleset,
	.seed = NULL,
	.score = NULL,
	.explain = lrp_explain,
};

static const struct iap_plugin_desc lrp_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "lrp",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "Layer-wise Relevance Propagation (zennit composites, BN canonised, AttnLRP/CP-LRP for ViT)",
	.options = lrp_options,
	.init = NULL,
	.fini = NULL,
	.ops.attribution = &lrp_ops,
};

IAP_PLUGIN_DEFINE(lrp_desc)
