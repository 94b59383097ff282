/*
 * The "global" policy (the paper's): every prunable unit of the network is
 * ranked together by its (optionally per-layer normalised) score, and the
 * lowest are pruned until round(rate * total) units are gone. A layer at its
 * cap is passed over, so the rest of the network makes up the count. Ties go
 * to the lower layer (first member group), then the lower unit index. See
 * common.h for layers, coupling, ignore, the exactness bound and prior masks
 * (iterative pruning: the prior step's units stay pruned, the ranking picks
 * the rest).
 */
#include "config.h"

#include <stdlib.h>

#include <iaprune/plugin.h>

#include "common.h"

struct cand {
	double score;
	int layer;
	int unit;
};

/* Lowest score first, then lower layer, then lower unit: a total order. */
static int cmp_cand(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	if (x->layer != y->layer)
		return x->layer < y->layer ? -1 : 1;
	return (x->unit > y->unit) - (x->unit < y->unit);
}

static int global_mask(const struct iap_opts *opts, const struct iap_policy_input *in,
		       uint8_t *const *keep, struct iap_error *err)
{
	struct iap_pol_opts o;
	struct iap_pol_plan plan;
	struct cand *c = NULL;
	int *pruned = NULL;
	int64_t n = 0, left;
	int rc;

	iap_pol_opts_parse(opts, &o);
	rc = iap_pol_plan_build("global", &o, in, keep, &plan, err);
	if (rc)
		return rc;
	/* Units a prior step pruned stay pruned and count (common.h). */
	left = plan.target - plan.n_fixed;
	if (left <= 0)
		goto out_plan;
	for (int l = 0; l < plan.n_layers; l++)
		n += plan.layers[l].n_units;
	c = malloc(((size_t)n + 1) * sizeof(*c));
	pruned = calloc((size_t)plan.n_layers + 1, sizeof(*pruned));
	if (!c || !pruned) {
		rc = iap_error_set(err, IAP_ENOMEM, "policy 'global': out of memory for %lld units",
				   (long long)n);
		goto out_free;
	}
	n = 0;
	for (int l = 0; l < plan.n_layers; l++) {
		pruned[l] = plan.layers[l].n_fixed;
		for (int u = 0; u < plan.layers[l].n_units; u++)
			if (!plan.layers[l].fixed[u])
				c[n++] = (struct cand){ .score = plan.layers[l].score[u], .layer = l, .unit = u };
	}
	qsort(c, (size_t)n, sizeof(*c), cmp_cand);

	/*
	 * Greedy from the bottom of the ranking. A coupled unit that would
	 * overshoot the target is passed over in favour of later, lighter ones,
	 * which is what bounds the shortfall below one coupled unit.
	 */
	for (int64_t i = 0; i < n && left > 0; i++) {
		const struct iap_pol_layer *l = &plan.layers[c[i].layer];

		if (pruned[c[i].layer] >= l->max_prune || l->n_members > left)
			continue;
		iap_pol_prune(&plan, c[i].layer, c[i].unit, keep);
		pruned[c[i].layer]++;
		left -= l->n_members;
	}

out_free:
	free(pruned);
	free(c);
out_plan:
	iap_pol_plan_free(&plan);
	return rc;
}

static const struct iap_policy_ops global_ops = {
	.size = sizeof(struct iap_policy_ops),
	.mask = global_mask,
};

static const struct iap_plugin_desc global_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_POLICY,
	.name = "global",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "rank all units of the network together and prune the lowest",
	.options = iap_pol_options,
	.ops.policy = &global_ops,
};

IAP_PLUGIN_DEFINE(global_desc)
