/*
 * The `lrp` attribution plugin's internals: the rules (lrp_rules.c) and the
 * plan that says which rule each conv/linear node gets (lrp.c). Not
 * installed; the unit test compiles both files in for white-box checks.
 */
#ifndef IAP_PLUGIN_LRP_H
#define IAP_PLUGIN_LRP_H

#include <stdint.h>

#include <iaprune/attribute.h>
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

/* Option spellings of enum lrp_rule, NULL-terminated. */
extern const char *const lrp_rule_names[];

enum lrp_vit_rule { LRP_VIT_ATTNLRP = 0, LRP_VIT_CPLRP };

/* Numbers the rules read. */
struct lrp_params {
	float epsilon;        /* Epsilon rule's ε (zennit default 1e-6) */
	float stabilizer;     /* every other rule's stabiliser (zennit's stabilize() default 1e-6) */
	float gamma;
	float alpha, beta;
	int zero_bias;        /* biases count as 0 inside every rule (zennit zero_params=['bias']) */
	enum lrp_vit_rule vit;
	int n_low, n_high;    /* ZBox bounds: 1 value (broadcast) or one per input channel */
	float *low, *high;
};

/*
 * Plugin state: the rule set handed to the walk (its user pointer is the
 * state itself), the options, and a per-node plan for the graph it serves.
 */
struct lrp_state {
	struct iap_ruleset rs;
	struct lrp_params p;
	struct iap_score_opts so;
	int composite;                        /* index into the composite table (lrp.c) */
	enum lrp_rule over_first, over_low, over_mid, over_high, over_dense;
	/* The plan, rebuilt when a walk meets another graph. */
	const struct iap_graph *g;
	int n_nodes;
	signed char *rule;                    /* per node: enum lrp_rule for conv/linear, else 0 */
	int *fold_bn;                         /* per conv node: id of the BN folded into it, or -1 */
	unsigned char *folded;                /* per BN node: 1 when a conv absorbs it */
	float *fold;                          /* a folded BN's scale and shift (2 × channels), reused */
	int fold_len;
};

/* Build (or rebuild) st's plan for g. */
int lrp_plan(struct lrp_state *st, const struct iap_graph *g, struct iap_error *err);

/* Fill rs->rules with the LRP rule of every op kind. */
void lrp_ruleset_fill(struct iap_ruleset *rs);

/*
 * The dense/conv rule engine on raw buffers, exposed for the hand-computed
 * tests: relevance r_out at the output of a linear layer y = x·Wᵀ + b
 * ([rows, in] → [rows, out]) is redistributed by `rule` and ADDED to r_in.
 * low/high as in struct lrp_params. Returns IAP_OK or an error.
 */
int lrp_dense_raw(enum lrp_rule rule, const struct lrp_params *p, int64_t rows, int in, int out,
		  const float *x, const float *w, const float *b, const float *r_out, float *r_in,
		  struct iap_error *err);

#endif /* IAP_PLUGIN_LRP_H */
