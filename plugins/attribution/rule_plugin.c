/* The functions the rule-set attribution plugins share (see rule_plugin.h). */
#include "config.h"

#include "rule_plugin.h"

const struct iap_ruleset *rule_plugin_ruleset(void *state)
{
	return ((struct rule_plugin *)state)->rs;
}

int rule_plugin_seed(void *state, const struct iap_tensor *logits, const int *targets,
		     struct iap_tensor *seed, struct iap_error *err)
{
	return iap_seed_target(logits, targets, &((struct rule_plugin *)state)->so, seed, err);
}

int rule_plugin_explain(void *state, struct iap_graph *g, const struct iap_tensor *x, const int *targets,
			struct iap_tensor *relevance, struct iap_error *err)
{
	struct rule_plugin *rp = state;
	const struct iap_walk_opts wo = { .want_input = 1 };
	const struct iap_tensor *logits = iap_graph_output(g);
	struct iap_tensor seed = { 0 };
	int rc;

	(void)x;
	if (!logits)
		return iap_error_set(err, IAP_EINVAL, "%s: explain needs a forward pass first",
				     rp->rs->name ? rp->rs->name : "?");
	rc = iap_seed_target(logits, targets, &rp->so, &seed, err);
	if (!rc)
		rc = iap_graph_backward(g, rp->rs, &seed, &wo, err);
	if (!rc)
		rc = iap_tensor_copy(relevance, &g->input_r, err);
	iap_tensor_free(&seed);
	return rc;
}
