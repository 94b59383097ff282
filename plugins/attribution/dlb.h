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
 * One rule set instance. In contrast mode every node carries (R+, R-): the
 * two maps live here (slot i for node i, slot n_nodes for the graph input)
 * because the walk has room for one tensor per node; the walk's own tensor
 * receives the combination chosen by contrast_score.
 */
struct dlb_rules {
	struct dlb_cfg cfg;
	struct iap_ruleset rs;          /* rs.user points back here */
	struct iap_graph *g;
	struct iap_tensor *pos, *neg;   /* contrast: n_slots maps each */
	int n_slots;
	float *tmp;                     /* contrast: two input-sized scratch maps */
	size_t tmp_len;
};

/* Fill r (zeroed by the caller) for graph g; the rule set is r->rs. */
int dlb_rules_init(struct dlb_rules *r, const struct dlb_cfg *cfg, struct iap_graph *g,
		   struct iap_error *err);
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
