/*
 * DL-Backtrace rule set: shared between the plugin glue (dlb.c) and the
 * white-box tests, which compile dlb_rules.c in directly. Not installed.
 * See the comment block at the top of dlb.c for what each rule does and
 * which reference code generation it follows.
 */
#ifndef IAP_DLB_H
#define IAP_DLB_H

#include <stddef.h>

#include <iaprune/graph.h>

enum dlb_mode { DLB_MODE_DEFAULT = 0, DLB_MODE_CONTRAST };
enum dlb_add_rule { DLB_ADD_EQUAL = 0, DLB_ADD_PROPORTIONAL };
enum dlb_maxpool_rule { DLB_MAXPOOL_UNIFORM = 0, DLB_MAXPOOL_WINNER, DLB_MAXPOOL_REPEAT };
enum dlb_gap_rule { DLB_GAP_UNIFORM = 0, DLB_GAP_PROPORTIONAL };
/* What the walk's own tensor (and so every unit score) carries in contrast mode. */
enum dlb_contrast_score { DLB_SCORE_NET = 0, DLB_SCORE_POSITIVE, DLB_SCORE_NEGATIVE };

struct dlb_cfg {
	enum dlb_mode mode;
	enum dlb_add_rule add_rule;
	enum dlb_maxpool_rule maxpool_rule;
	enum dlb_gap_rule gap_rule;
	enum dlb_contrast_score contrast_score;
};

/*
 * The walk's channels in contrast mode: every node carries (R+, R-) as
 * channels 1 and 2; channel 0, the one hooks, unit scores and the input
 * heatmap see, receives the combination chosen by contrast_score.
 */
enum { DLB_CH_WALK = 0, DLB_CH_POS, DLB_CH_NEG, DLB_CHANNELS };

/* One rule set instance: rs (its user pointer is this struct) and the contrast scratch. */
struct dlb_rules {
	struct dlb_cfg cfg;
	struct iap_ruleset rs;
	float *tmp;                     /* contrast: four scratch maps of the largest node's size */
	size_t tmp_len;
};

/* Fill r for cfg; the rule set is r->rs. */
void dlb_rules_init(struct dlb_rules *r, const struct dlb_cfg *cfg);
/* Free r's scratch (r stays usable). */
void dlb_rules_release(struct dlb_rules *r);

/* DL-Backtrace's attention stabiliser: x, or ±eps where |x| < eps (sign(0) = +1). */
float dlb_stab(float x, float eps);

/*
 * The contrast-mode share of one unit with positive contributions summing
 * to P, negative ones to N (both >= 0), bias b and relevance (rp, rn):
 * coefficients per unit of z (> 0) and of |z| (z < 0) for the positive map
 * (ap, bp) and the negative map (an, bn). Follows utils_contrast.py's
 * calculate_wt_fc / calculate_base_wt.
 */
void dlb_contrast_coef(double P, double N, double b, double rp, double rn,
		       double *ap, double *bp, double *an, double *bn);

#endif
