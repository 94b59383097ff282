/*
 * The `lrp` attribution plugin: Layer-wise Relevance Propagation as a rule
 * set for the core's backward walk (rules in lrp_rules.c, the per-walk
 * plan in lrp_plan.c). Here the options become, once at create, the rule
 * parameters and the rule of each kind of layer: the composite (named as
 * zennit names them) with the per-group overrides of Pruning-by-eXplaining.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>
#include <iaprune/plugin.h>

#include "lrp_rules.h"
#include "rule_plugin.h"

static const char *const lrp_rule_names[] = {
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

/* The plugin's state: the shared rule-plugin part first (rule_plugin.h). */
struct lrp_state {
	struct rule_plugin base;
	struct lrp_rules rules;
	float *low, *high;                    /* the ZBox bounds the rules borrow */
};

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

static void lrp_destroy(void *state)
{
	struct lrp_state *st = state;

	if (!st)
		return;
	free(st->low);
	free(st->high);
	free(st);
}

/* An override option: its rule, or LRP_RULE_COMPOSITE (keep what the composite says). */
static enum lrp_rule rule_opt(const struct iap_opts *opts, const char *name)
{
	int i = iap_opts_enum(opts, name);

	return i < 0 ? LRP_RULE_COMPOSITE : (enum lrp_rule)i;
}

/* The composite with the options' overrides applied. */
static void layer_rules_from(const struct iap_opts *opts, const struct composite *c,
			     struct lrp_layer_rules *lr)
{
	static const char *const thirds[3] = { "rule_low", "rule_mid", "rule_high" };
	enum lrp_rule over;

	for (int k = 0; k < 3; k++) {
		over = rule_opt(opts, thirds[k]);
		lr->conv[k] = over != LRP_RULE_COMPOSITE ? over : c->conv;
	}
	over = rule_opt(opts, "rule_dense");
	lr->dense = over != LRP_RULE_COMPOSITE ? over : c->dense;
	over = rule_opt(opts, "rule_first");
	lr->first = over != LRP_RULE_COMPOSITE ? over : c->first;
	lr->first_conv_only = c->first_conv_only;
}

/* The rule parameters (ZBox bounds parsed into st->low / st->high). */
static int params_from(const struct iap_opts *opts, struct lrp_state *st, struct lrp_params *p,
		       struct iap_error *err)
{
	double alpha = iap_opts_float(opts, "alpha"), beta = iap_opts_float(opts, "beta");
	int rc;

	/* zennit refuses the same: only α − β = 1 keeps the rule conservative. */
	if (alpha < 0 || beta < 0 || fabs(alpha - beta - 1.0) > 1e-6)
		return iap_error_set(err, IAP_EINVAL,
				     "lrp: alpha - beta must equal 1 with both >= 0 (got alpha %g, beta %g)",
				     alpha, beta);
	*p = (struct lrp_params){
		.epsilon = (float)iap_opts_float(opts, "epsilon"),
		.stabilizer = (float)iap_opts_float(opts, "stabilizer"),
		.gamma = (float)iap_opts_float(opts, "gamma"),
		.alpha = (float)alpha,
		.beta = (float)beta,
		.zero_bias = iap_opts_bool(opts, "zero_bias"),
		.vit = iap_opts_enum(opts, "vit_rule") == 1 ? LRP_VIT_CPLRP : LRP_VIT_ATTNLRP,
	};
	rc = parse_list("zbox_low", iap_opts_str(opts, "zbox_low"), &st->low, &p->n_low, err);
	if (!rc)
		rc = parse_list("zbox_high", iap_opts_str(opts, "zbox_high"), &st->high, &p->n_high, err);
	p->low = st->low;
	p->high = st->high;
	return rc;
}

static int lrp_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
		      struct iap_error *err)
{
	struct lrp_state *st;
	struct lrp_params p;
	struct lrp_layer_rules layers;
	int composite, rc;

	(void)g; /* the plan is made for each walk (lrp_rules.c's prepare) */
	*state = NULL;
	if (!opts)
		return iap_error_set(err, IAP_EINVAL, "lrp: no options given");
	composite = iap_opts_enum(opts, "composite");
	if (composite < 0 || composite >= N_COMPOSITES)
		return iap_error_set(err, IAP_EINVAL, "lrp: unknown composite '%s'",
				     iap_opts_str(opts, "composite"));
	st = calloc(1, sizeof(*st));
	if (!st)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	rc = params_from(opts, st, &p, err);
	if (rc) {
		lrp_destroy(st);
		return rc;
	}
	layer_rules_from(opts, &composites[composite], &layers);
	lrp_rules_init(&st->rules, &p, &layers);
	st->base.rs = &st->rules.rs;
	iap_score_opts_from(opts, &st->base.so);
	*state = st;
	return IAP_OK;
}

static const struct iap_attribution_ops lrp_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = 0,
	.create = lrp_create,
	.destroy = lrp_destroy,
	.ruleset = rule_plugin_ruleset,
	.seed = rule_plugin_seed,
	.score = NULL,
	.explain = rule_plugin_explain,
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
