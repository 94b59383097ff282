/*
 * The "layerwise" policy: the same rate in every layer. A layer of n units
 * prunes floor(rate * n) or ceil(rate * n) of its lowest-scoring units (ties
 * to the lower unit index). The ceilings go to the layers with the largest
 * remainders rate * n - floor(rate * n) (lower layer on ties) until the
 * network total reaches round(rate * total), so the overall rate is as exact
 * as the global policy's when no cap binds (see common.h for the bound with
 * coupled layers). A capped layer stops at its cap and what it could not
 * prune is NOT moved to other layers: that would break the equal rate.
 * With a prior mask (iterative pruning) a layer keeps its prior units pruned
 * even where a lower rate's rounding gave it one more than its floor now;
 * layers with the smallest remainders then give a unit back, so the total
 * stays round(rate * total).
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include <iaprune/plugin.h>

#include "common.h"

struct share {
	double frac;
	int layer;
};

/* Largest remainder first, then lower layer. */
static int cmp_share(const void *a, const void *b)
{
	const struct share *x = a, *y = b;

	if (x->frac != y->frac)
		return x->frac > y->frac ? -1 : 1;
	return (x->layer > y->layer) - (x->layer < y->layer);
}

struct unit_score {
	double score;
	int unit;
};

static int cmp_unit(const void *a, const void *b)
{
	const struct unit_score *x = a, *y = b;

	if (x->score != y->score)
		return x->score < y->score ? -1 : 1;
	return (x->unit > y->unit) - (x->unit < y->unit);
}

/*
 * How many units each layer prunes (count[l]): every layer's floor share
 * first (the target is counted against the uncapped floors, so a cap's
 * shortfall stays a shortfall), then one more unit for the layers with the
 * largest remainders. sh, floor_of: scratch of n_layers entries.
 */
static void allot_counts(const struct iap_pol_plan *plan, double rate, struct share *sh, int *floor_of,
			 int *count)
{
	int64_t left = plan->target;

	for (int l = 0; l < plan->n_layers; l++) {
		const struct iap_pol_layer *layer = &plan->layers[l];
		double q = rate * layer->n_units;
		double base = floor(q + 1e-9);

		count[l] = base < layer->max_prune ? (int)base : layer->max_prune;
		/*
		 * A prior step's units stay pruned: an earlier, lower rate may have
		 * given this layer its ceiling already, which then is its count.
		 */
		if (layer->n_fixed > count[l])
			count[l] = layer->n_fixed;
		sh[l] = (struct share){ .frac = q - base > 0 ? q - base : 0, .layer = l };
		left -= (int64_t)(layer->n_fixed > base ? layer->n_fixed : base) * layer->n_members;
		floor_of[l] = (int)base;
	}
	qsort(sh, (size_t)plan->n_layers, sizeof(*sh), cmp_share);
	for (int i = 0; i < plan->n_layers && left > 0 && sh[i].frac > 0; i++) {
		int l = sh[i].layer;
		const struct iap_pol_layer *layer = &plan->layers[l];

		if (count[l] >= layer->max_prune || count[l] > floor_of[l] || layer->n_members > left)
			continue;
		count[l]++;
		left -= layer->n_members;
	}
	/*
	 * Prior ceilings can overshoot the total: the layers with the smallest
	 * remainders that prune more than their prior units give one back.
	 */
	for (int i = plan->n_layers - 1; i >= 0 && left < 0; i--) {
		int l = sh[i].layer;

		if (count[l] > plan->layers[l].n_fixed && count[l] > 0) {
			count[l]--;
			left += plan->layers[l].n_members;
		}
	}
}

/* Prune the count[l] lowest-scoring units of every layer (its prior units among them). us: scratch. */
static void prune_lowest(const struct iap_pol_plan *plan, const int *count, struct unit_score *us,
			 uint8_t *const *keep)
{
	for (int l = 0; l < plan->n_layers; l++) {
		const struct iap_pol_layer *layer = &plan->layers[l];
		int n = 0;

		if (count[l] <= layer->n_fixed)
			continue;
		for (int u = 0; u < layer->n_units; u++)
			if (!layer->fixed[u])
				us[n++] = (struct unit_score){ .score = layer->score[u], .unit = u };
		qsort(us, (size_t)n, sizeof(*us), cmp_unit);
		for (int i = 0; i < count[l] - layer->n_fixed; i++)
			iap_pol_prune(plan, l, us[i].unit, keep);
	}
}

static int layerwise_mask(const struct iap_opts *opts, const struct iap_policy_input *in,
			  uint8_t *const *keep, struct iap_error *err)
{
	struct iap_pol_opts o;
	struct iap_pol_plan plan;
	struct share *sh = NULL;
	struct unit_score *us = NULL;
	int *count = NULL, *floor_of = NULL, max_units = 1;
	int rc;

	iap_pol_opts_parse(opts, &o);
	rc = iap_pol_plan_build("layerwise", &o, in, keep, &plan, err);
	if (rc)
		return rc;
	for (int l = 0; l < plan.n_layers; l++)
		if (plan.layers[l].n_units > max_units)
			max_units = plan.layers[l].n_units;
	sh = calloc((size_t)plan.n_layers + 1, sizeof(*sh));
	count = calloc((size_t)plan.n_layers + 1, sizeof(*count));
	floor_of = calloc((size_t)plan.n_layers + 1, sizeof(*floor_of));
	us = malloc((size_t)max_units * sizeof(*us));
	if (!sh || !count || !floor_of || !us) {
		rc = iap_error_set(err, IAP_ENOMEM, "policy 'layerwise': out of memory");
		goto out_free;
	}
	allot_counts(&plan, in->rate, sh, floor_of, count);
	prune_lowest(&plan, count, us, keep);

out_free:
	free(us);
	free(floor_of);
	free(count);
	free(sh);
	iap_pol_plan_free(&plan);
	return rc;
}

static const struct iap_policy_ops layerwise_ops = {
	.size = sizeof(struct iap_policy_ops),
	.mask = layerwise_mask,
};

static const struct iap_plugin_desc layerwise_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_POLICY,
	.name = "layerwise",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "prune the same fraction of every layer",
	.options = iap_pol_options,
	.ops.policy = &layerwise_ops,
};

IAP_PLUGIN_DEFINE(layerwise_desc)
