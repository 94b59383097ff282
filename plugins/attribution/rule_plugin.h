/*
 * What the rule-set attribution plugins (lrp, dlb) share. Their state
 * begins with struct rule_plugin: the rule set they hand the walk and the
 * common options read once at create. Seeding, the rule set and the input
 * heatmap are then the same functions for both; only the rule set differs.
 * Not installed.
 */
#ifndef IAP_PLUGIN_RULE_PLUGIN_H
#define IAP_PLUGIN_RULE_PLUGIN_H

#include <iaprune/attribute.h>
#include <iaprune/graph.h>

struct rule_plugin {
	const struct iap_ruleset *rs;
	struct iap_score_opts so;        /* the common options (seed_scale as the plugin sets it) */
};

/* The attribution ops' ruleset(): the state's rule set. */
const struct iap_ruleset *rule_plugin_ruleset(void *state);

/* The attribution ops' seed(): one-hot on the targets × seed_scale (or × the target logit). */
int rule_plugin_seed(void *state, const struct iap_tensor *logits, const int *targets,
		     struct iap_tensor *seed, struct iap_error *err);

/* The attribution ops' explain(): one walk from that seed, relevance kept at the input. */
int rule_plugin_explain(void *state, struct iap_graph *g, const struct iap_tensor *x, const int *targets,
			struct iap_tensor *relevance, struct iap_error *err);

#endif /* IAP_PLUGIN_RULE_PLUGIN_H */
