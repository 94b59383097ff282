/*
 * Per-sample unit scores for any attribution plugin (see
 * iap_attribute_samples in <iaprune/attribute.h>): what `iaprune attribute`
 * writes, so that users can compare every reduction with their own tools.
 *
 * Three ways in, cheapest first:
 *   rule set          one walk; the hook reduces each group's relevance per
 *                     sample, signed and absolute (the input relevance of
 *                     the same walk is kept when asked for);
 *   unit_relevance()  (ABI 1.1) the plugin hands over each group's
 *                     unreduced relevance from one pass (IG: one sweep);
 *   score() only      each sample alone through two fresh states, one with
 *                     abs=none and one with abs=before (twice the work, as
 *                     the plugin offers nothing finer).
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>
#include <iaprune/attribute_samples.h>
#include <iaprune/registry.h>

struct samples_ctx {
	const struct iap_graph *g;
	float *const *sum, *const *sum_abs;
};

/* Both reductions of one group's relevance, per sample. */
static int reduce_group(void *user, int group, const struct iap_tensor *r)
{
	struct samples_ctx *c = user;

	if (group < 0 || group >= c->g->n_groups)
		return IAP_EINVAL;
	iap_unit_reduce(&c->g->groups[group], r, 0, c->sum[group]);
	iap_unit_reduce(&c->g->groups[group], r, 1, c->sum_abs[group]);
	return IAP_OK;
}

static int samples_hook(void *user, struct iap_graph *g, const struct iap_node *node,
			const struct iap_tensor *r_out)
{
	(void)g;
	return node->unit_group >= 0 ? reduce_group(user, node->unit_group, r_out) : 0;
}

/* Options like opts with abs set to v (a fresh copy). */
static int opts_with_abs(const struct iap_plugin *p, const struct iap_opts *opts, const char *v,
			 struct iap_opts **out, struct iap_error *err)
{
	char what[128], val[512];
	int rc = iap_opts_defaults(p->desc->options, out, err);

	snprintf(what, sizeof(what), "attribution '%s'", p->desc->name);
	for (int i = 0; !rc && i < iap_opts_count(opts); i++) {
		if (!iap_opts_is_set(opts, iap_opts_name(opts, i)))
			continue;
		iap_opts_format(opts, i, val, sizeof(val));
		rc = iap_opts_set(*out, what, iap_opts_name(opts, i), val, err);
	}
	if (!rc)
		rc = iap_opts_set(*out, what, "abs", v, err);
	if (rc) {
		iap_opts_free(*out);
		*out = NULL;
	}
	return rc;
}

/* score() only: every sample alone, once with abs=none and once with abs=before. */
static int samples_by_score(const struct iap_plugin *p, const struct iap_opts *opts, struct iap_graph *g,
			    const struct iap_tensor *x, const int *targets, float *const *sum,
			    float *const *sum_abs, struct iap_error *err)
{
	const struct iap_attribution_ops *ops = p->desc->ops.attribution;
	const int64_t n = x->shape[0], per = iap_tensor_numel(x) / n;
	struct iap_opts *o[2] = { NULL, NULL };
	void *st[2] = { NULL, NULL };
	float **one = calloc((size_t)g->n_groups + 1, sizeof(*one));
	struct iap_tensor xi = { 0 };
	int64_t shape[IAP_MAX_DIMS];
	int rc = one ? IAP_OK : iap_error_set(err, IAP_ENOMEM, "out of memory");

	for (int k = 0; !rc && k < 2; k++) {
		rc = opts_with_abs(p, opts, k ? "before" : "none", &o[k], err);
		if (!rc)
			rc = ops->create(o[k], g, &st[k], err);
	}
	for (int gi = 0; !rc && gi < g->n_groups; gi++)
		if (!(one[gi] = calloc((size_t)g->groups[gi].n_units, sizeof(float))))
			rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
	memcpy(shape, x->shape, sizeof(shape));
	shape[0] = 1;
	if (!rc)
		rc = iap_tensor_alloc(&xi, x->ndim, shape, err);
	for (int64_t i = 0; !rc && i < n; i++) {
		memcpy(xi.data, x->data + i * per, (size_t)per * sizeof(float));
		for (int k = 0; !rc && k < 2; k++) {
			for (int gi = 0; gi < g->n_groups; gi++)
				memset(one[gi], 0, (size_t)g->groups[gi].n_units * sizeof(float));
			rc = iap_graph_forward(g, &xi, err);
			if (!rc)
				rc = ops->score(st[k], g, &xi, &targets[i], one, err);
			for (int gi = 0; !rc && gi < g->n_groups; gi++)
				memcpy((k ? sum_abs : sum)[gi] + i * g->groups[gi].n_units, one[gi],
				       (size_t)g->groups[gi].n_units * sizeof(float));
		}
	}
	for (int k = 0; k < 2; k++) {
		if (st[k])
			ops->destroy(st[k]);
		iap_opts_free(o[k]);
	}
	for (int gi = 0; one && gi < g->n_groups; gi++)
		free(one[gi]);
	free(one);
	iap_tensor_free(&xi);
	return rc;
}

int iap_attribute_samples(const struct iap_plugin *p, void *state, const struct iap_opts *opts,
			  struct iap_graph *g, const struct iap_tensor *x, const int *labels,
			  float *const *sum, float *const *sum_abs, int *targets,
			  struct iap_tensor *input_relevance, struct iap_error *err)
{
	const struct iap_attribution_ops *ops = p->desc->ops.attribution;
	struct samples_ctx c = { .g = g, .sum = sum, .sum_abs = sum_abs };
	struct iap_score_opts so;
	struct iap_tensor seed = { 0 };
	const struct iap_tensor *logits;
	int rc;

	if (ops->flags & IAP_ATTR_DATA_FREE)
		return iap_error_set(err, IAP_EUNSUPPORTED,
				     "attribution '%s' scores the weights alone: it has no per-sample scores",
				     p->desc->name);
	iap_score_opts_from(opts, &so);
	rc = iap_graph_forward(g, x, err);
	if (rc)
		return rc;
	logits = iap_graph_output(g);
	rc = iap_targets(logits, labels, &so, targets, err);
	if (rc)
		return rc;
	if (ops->ruleset) {
		struct iap_walk_opts wo = { .hook = samples_hook, .hook_user = &c,
					    .want_input = input_relevance != NULL };

		rc = ops->seed ? ops->seed(state, logits, targets, &seed, err)
			       : iap_seed_target(logits, targets, &so, &seed, err);
		if (!rc)
			rc = iap_graph_backward(g, ops->ruleset(state), &seed, &wo, err);
		if (!rc && input_relevance)
			rc = iap_tensor_copy(input_relevance, &g->input_r, err);
		iap_tensor_free(&seed);
		return rc;
	}
	if (IAP_ATTR_OPS_HAS(ops, unit_relevance))
		rc = ops->unit_relevance(state, g, x, targets, reduce_group, &c, err);
	else if (ops->score)
		rc = samples_by_score(p, opts, g, x, targets, sum, sum_abs, err);
	else
		rc = iap_error_set(err, IAP_EUNSUPPORTED, "attribution '%s' has neither a rule set nor a scorer",
				   p->desc->name);
	if (rc || !input_relevance)
		return rc;
	if (!ops->explain) {
		iap_tensor_free(input_relevance);
		return IAP_OK;
	}
	/* explain() wants the batch forward in the graph (the sweeps above left their own). */
	rc = iap_graph_forward(g, x, err);
	return rc ? rc : ops->explain(state, g, x, targets, input_relevance, err);
}
