/*
 * Iterative pruning (Yeom et al. 2021, "Pruning by explaining"): a rate is
 * reached in N equal steps, and before every step after the first the unit
 * scores are recomputed on the model with the previous step's masks, so the
 * relevance of what is left is measured without the units already gone.
 * Internal to libiaprune (the runner uses it; tests call it directly).
 */
#ifndef IAP_RUN_ITERATIVE_H
#define IAP_RUN_ITERATIVE_H

#include <stdint.h>

#include <iaprune/plugin.h>
#include <iaprune/registry.h>

/*
 * Fill scores[g][u] for every group of g, which carries the masks of the
 * previous step, exactly as the first step's scores were computed on the
 * unmasked model.
 */
typedef int (*iap_rescore_fn)(void *user, struct iap_graph *g, float *const *scores, struct iap_error *err);

/*
 * Masks for in->rate in `steps` steps: step k (1-based) asks the policy for
 * rate·k/steps (exactly in->rate at the last), with the scores of in for the
 * first step and rescore()'s on the masked g for the others, and the
 * previous step's masks as in->prior_keep, so no unit comes back and the
 * last step prunes what one call at in->rate would count. steps = 1 is one
 * plain policy call with in as given. keep[g] has n_units entries per group;
 * g's masks are cleared on return. A policy that revives a prior unit (one
 * that ignores prior_keep) is refused.
 */
int iap_prune_iterative(const struct iap_plugin *policy, const struct iap_opts *opts,
			const struct iap_policy_input *in, struct iap_graph *g, int steps,
			iap_rescore_fn rescore, void *user, uint8_t *const *keep, struct iap_error *err);

#endif
