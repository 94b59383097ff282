/*
 * iaprune — from relevance to per-unit scores: the host side of the
 * attribution plugins (see struct iap_attribution_ops in <iaprune/plugin.h>).
 *
 * A unit's score is the relevance at its output, reduced over space (conv
 * channels) or tokens (ViT), then over samples. How: per sample, sum r over
 * the unit's positions (abs "after": |Σ r|, the default, as
 * Pruning-by-eXplaining does for conv channels; abs "before": Σ |r|; "none":
 * Σ r), then sum (or average) over samples.
 */
#ifndef IAPRUNE_ATTRIBUTE_H
#define IAPRUNE_ATTRIBUTE_H

#include <iaprune/graph.h>
#include <iaprune/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

enum iap_abs_mode { IAP_ABS_AFTER = 0, IAP_ABS_BEFORE, IAP_ABS_NONE };
enum iap_reduce_mode { IAP_REDUCE_SUM = 0, IAP_REDUCE_MEAN };
enum iap_target_mode { IAP_TARGET_PREDICTED = 0, IAP_TARGET_LABEL };
enum iap_seed_mode { IAP_SEED_ONEHOT = 0, IAP_SEED_LOGIT };

struct iap_score_opts {
	enum iap_abs_mode abs;
	enum iap_reduce_mode reduce;
	enum iap_target_mode target;
	enum iap_seed_mode seed;
	float seed_scale;          /* one-hot value (1; DL-Backtrace starts at 100) */
};

extern const char *const iap_attr_abs_choices[];     /* "after", "before", "none" */
extern const char *const iap_attr_reduce_choices[];  /* "sum", "mean" */
extern const char *const iap_attr_target_choices[];  /* "predicted", "label" */
extern const char *const iap_attr_seed_choices[];    /* "onehot", "logit" */

/* The options every attribution plugin offers; put them in its schema. */
#define IAP_ATTR_COMMON_OPTIONS \
	{ .name = "abs", .type = IAP_OPT_ENUM, .def = "after", .choices = iap_attr_abs_choices, \
	  .help = "absolute value after the spatial sum, before it, or none" }, \
	{ .name = "reduce", .type = IAP_OPT_ENUM, .def = "sum", .choices = iap_attr_reduce_choices, \
	  .help = "combine samples by sum or mean" }, \
	{ .name = "target", .type = IAP_OPT_ENUM, .def = "predicted", .choices = iap_attr_target_choices, \
	  .help = "explain the predicted class or the true label" }, \
	{ .name = "seed", .type = IAP_OPT_ENUM, .def = "onehot", .choices = iap_attr_seed_choices, \
	  .help = "start relevance: one-hot on the target, or the target's logit" }

/* Read the common options (absent ones keep their defaults). */
void iap_score_opts_from(const struct iap_opts *opts, struct iap_score_opts *so);

/* targets[n]: argmax of logits (ties: lowest index) or labels[n], by so->target. */
int iap_targets(const struct iap_tensor *logits, const int *labels, const struct iap_score_opts *so,
		int *targets, struct iap_error *err);

/* seed = one-hot on targets × seed_scale (or × the target logit), shaped like logits. */
int iap_seed_target(const struct iap_tensor *logits, const int *targets,
		    const struct iap_score_opts *so, struct iap_tensor *seed, struct iap_error *err);

/*
 * Add one batch's relevance at a unit group (t: the group's node output
 * shape, batch first) to scores (n_units entries), applying so->abs.
 */
void iap_unit_accumulate(const struct iap_unit_group *grp, const struct iap_tensor *t,
			 enum iap_abs_mode abs, float *scores);

/*
 * Walk g (already run forward on the batch) backwards with rs from seed and
 * add every unit group's reduced relevance to scores[group]. When
 * input_relevance is not NULL it receives the relevance at the input.
 */
int iap_ruleset_scores(struct iap_graph *g, const struct iap_ruleset *rs,
		       const struct iap_tensor *seed, const struct iap_score_opts *so,
		       float *const *scores, struct iap_tensor *input_relevance,
		       struct iap_error *err);

/*
 * The whole host path for one batch: forward x, pick targets, then either
 * drive the plugin's rule set (seeded by its seed() or by iap_seed_target)
 * or call its score(). Adds to scores (zero them before the first batch).
 * targets_out (may be NULL) receives the targets used.
 */
int iap_attribute_batch(const struct iap_attribution_ops *ops, void *state,
			const struct iap_opts *opts, struct iap_graph *g,
			const struct iap_tensor *x, const int *labels, float *const *scores,
			int *targets_out, struct iap_error *err);

/* After the last batch: divide by the sample count when the reduction is a mean. */
void iap_scores_finish(const struct iap_graph *g, const struct iap_opts *opts, int64_t n_samples,
		       float *const *scores);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_ATTRIBUTE_H */
