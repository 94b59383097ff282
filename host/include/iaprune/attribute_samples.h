/*
 * iaprune — per-sample unit scores for any attribution plugin, what
 * `iaprune attribute` writes (host side: it takes a registry's plugin).
 */
#ifndef IAPRUNE_ATTRIBUTE_SAMPLES_H
#define IAPRUNE_ATTRIBUTE_SAMPLES_H

#include <iaprune/attribute.h>
#include <iaprune/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Per-sample unit scores of one batch, whatever the plugin p (with state
 * from its create() and its options): forward x, pick the targets (written
 * to targets, x->shape[0] entries), then for every unit group write, per
 * sample n and unit u, sum[g][n * n_units + u] = Σ r and sum_abs[g][...] =
 * Σ |r| over the unit's positions (|Σ r| is fabs of the first). Relevance
 * comes from one rule-set walk, from unit_relevance() (ABI 1.1) in one
 * pass, or, for a plugin with only score(), from each sample alone through
 * two fresh states (abs none and before). When input_relevance is not NULL
 * it receives the input-level relevance (the same walk's for a rule set,
 * else explain()'s; left empty when the plugin has none). Data-free
 * plugins have no per-sample scores: IAP_EUNSUPPORTED.
 */
int iap_attribute_samples(const struct iap_plugin *p, void *state, const struct iap_opts *opts,
			  struct iap_graph *g, const struct iap_tensor *x, const int *labels,
			  float *const *sum, float *const *sum_abs, int *targets,
			  struct iap_tensor *input_relevance, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_ATTRIBUTE_SAMPLES_H */
