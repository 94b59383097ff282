/*
 * The `lrp` plugin's per-walk plan: which rule each conv/linear node gets
 * and which BatchNorm is folded into the conv before it, with the folded
 * scale and shift. The rule set's prepare builds it for the graph it is
 * about to walk and its finish frees it (lrp_rules.c); lrp.c resolves the
 * options into struct lrp_layer_rules. Not installed.
 */
#ifndef IAP_PLUGIN_LRP_PLAN_H
#define IAP_PLUGIN_LRP_PLAN_H

#include <iaprune/error.h>
#include <iaprune/graph.h>

/* Rules for linear-type layers (conv2d, linear), as zennit defines them. */
enum lrp_rule {
	LRP_RULE_COMPOSITE = 0,  /* "use what the composite says" (overrides only) */
	LRP_RULE_EPSILON,
	LRP_RULE_ZPLUS,
	LRP_RULE_ALPHABETA,
	LRP_RULE_GAMMA,
	LRP_RULE_FLAT,
	LRP_RULE_WSQUARE,
	LRP_RULE_ZBOX,
	LRP_RULE_COUNT
};

/* Which rule each kind of layer gets: the composite with the options' overrides applied. */
struct lrp_layer_rules {
	enum lrp_rule conv[3];       /* convolutions in node order, split into thirds: low, mid, high */
	enum lrp_rule dense;         /* linear layers */
	enum lrp_rule first;         /* the first layer's own rule; LRP_RULE_COMPOSITE: it has none */
	int first_conv_only;         /* the first layer is the first conv (EpsilonGammaBox), not any layer */
};

struct lrp_plan {
	signed char *rule;           /* per node: enum lrp_rule for conv/linear, else 0 */
	int *fold_bn;                /* per conv node: id of the BN folded into it, or -1 */
	unsigned char *folded;       /* per BN node: 1 when a conv absorbs it */
	int *fold_at;                /* per conv node with a folded BN: its scale and shift in fold, or -1 */
	float *fold;                 /* scale (channels) then shift (channels), per folded conv */
};

/*
 * Plan g (run forward: the fold uses the statistics that forward used) for
 * layers. A folded BN without forward statistics gets fold_at -1, which its
 * conv's rule reports. On failure the plan is left empty.
 */
int lrp_plan_build(struct lrp_plan *pl, const struct lrp_layer_rules *layers, const struct iap_graph *g,
		   struct iap_error *err);
void lrp_plan_free(struct lrp_plan *pl);

#endif /* IAP_PLUGIN_LRP_PLAN_H */
