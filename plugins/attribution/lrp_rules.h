/*
 * The `lrp` attribution plugin's rule set (lrp_rules.c), with the plan of
 * lrp_plan.h made for each walk. lrp.c turns the options into these. Not
 * installed; the unit test compiles the files in for white-box checks.
 */
#ifndef IAP_PLUGIN_LRP_RULES_H
#define IAP_PLUGIN_LRP_RULES_H

#include <stdint.h>

#include <iaprune/graph.h>

#include "lrp_plan.h"

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
	float *low, *high;    /* owned by whoever filled the parameters */
};

/*
 * One LRP rule set: handed to the walk as rs (its user pointer is this
 * struct). Its prepare plans the graph about to be walked, its finish
 * frees the plan, so nothing outlives a walk.
 */
struct lrp_rules {
	struct iap_ruleset rs;
	struct lrp_params p;
	struct lrp_layer_rules layers;
	struct lrp_plan plan;                 /* the walk under way's (empty between walks) */
};

/* Fill r for the parameters and layer rules given (copied; p's bounds are borrowed). */
void lrp_rules_init(struct lrp_rules *r, const struct lrp_params *p, const struct lrp_layer_rules *layers);

/*
 * The dense/conv rule engine on raw buffers, exposed for the hand-computed
 * tests: relevance r_out at the output of a linear layer y = x·Wᵀ + b
 * ([rows, in] → [rows, out]) is redistributed by `rule` and ADDED to r_in.
 * low/high as in struct lrp_params. Returns IAP_OK or an error.
 */
int lrp_dense_raw(enum lrp_rule rule, const struct lrp_params *p, int64_t rows, int in, int out,
		  const float *x, const float *w, const float *b, const float *r_out, float *r_in,
		  struct iap_error *err);

#endif /* IAP_PLUGIN_LRP_RULES_H */
