/* Iterative prune → rescore → prune (see iterative.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "iterative.h"
#include "run_internal.h"
#include <iaprune/registry.h>

static void free_rows(void **rows, int n)
{
	for (int i = 0; rows && i < n; i++)
		free(rows[i]);
	free(rows);
}

int iap_prune_iterative(const struct iap_plugin *policy, const struct iap_opts *opts,
			const struct iap_policy_input *in, struct iap_graph *g, int steps,
			iap_rescore_fn rescore, void *user, uint8_t *const *keep, struct iap_error *err)
{
	const char *name = policy->desc->name;
	int ng = g->n_groups, rc = IAP_OK;
	uint8_t **prior = NULL;
	float **scores = NULL;

	if (steps < 1)
		return iap_error_set(err, IAP_EINVAL, "iterative pruning: %d steps (need at least 1)", steps);
	if (steps == 1)
		return iap_call_mask_checked(policy, opts, in, keep, err);
	if (!rescore)
		return iap_error_set(err, IAP_EINVAL, "iterative pruning: no way to rescore the masked model");
	prior = calloc((size_t)ng + 1, sizeof(*prior));
	scores = calloc((size_t)ng + 1, sizeof(*scores));
	if (!prior || !scores) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	for (int gi = 0; gi < ng; gi++) {
		prior[gi] = malloc((size_t)g->groups[gi].n_units);
		scores[gi] = calloc((size_t)g->groups[gi].n_units + 1, sizeof(float));
		if (!prior[gi] || !scores[gi]) {
			rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
			goto out;
		}
	}
	for (int k = 1; k <= steps && !rc; k++) {
		struct iap_policy_input step = *in;

		/* The last step asks for the rate itself, not a product that may round differently. */
		step.rate = k == steps ? in->rate : in->rate * (double)k / (double)steps;
		if (k > 1) {
			step.scores = (const float *const *)scores;
			step.prior_keep = (const uint8_t *const *)prior;
		}
		rc = iap_call_mask_checked(policy, opts, &step, keep, err);
		if (rc) {
			iap_error_prefix(err, "iterative step %d of %d (rate %.4g)", k, steps, step.rate);
			break;
		}
		for (int gi = 0; k > 1 && gi < ng && !rc; gi++)
			for (int u = 0; u < g->groups[gi].n_units; u++)
				if (!prior[gi][u] && keep[gi][u]) {
					rc = iap_error_set(err, IAP_EINVAL, "policy '%s' (ABI %u.%u) brought back unit %d "
							   "of '%s' at iterative step %d; iterative pruning needs a "
							   "policy that honours prior masks (prior_keep, part of "
							   "plugin ABI %d.%d)", name, policy->desc->abi_major,
							   policy->desc->abi_minor, u, g->groups[gi].name, k,
							   IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
					break;
				}
		if (rc || k == steps)
			break;
		/* Rescore the model as this step leaves it. */
		for (int gi = 0; gi < ng && !rc; gi++) {
			memcpy(prior[gi], keep[gi], (size_t)g->groups[gi].n_units);
			rc = iap_graph_set_mask(g, gi, prior[gi], err);
		}
		if (!rc)
			rc = rescore(user, g, scores, err);
		if (rc)
			iap_error_prefix(err, "rescoring after iterative step %d of %d", k, steps);
	}
	for (int gi = 0; gi < ng; gi++)
		iap_graph_set_mask(g, gi, NULL, NULL);
out:
	free_rows((void **)prior, ng);
	free_rows((void **)scores, ng);
	return rc;
}
