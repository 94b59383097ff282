/*
 * Thin wrappers that call one plugin entry point inside a call record
 * (guard.h), so that a crash or an exit() there names the plugin, its file
 * and the entry point. Used by the runner and by the iaprune program's own
 * commands (explain, attribute); not installed: the symbols are libiaprune's
 * (iap_ prefix) but not part of its documented interface.
 */
#ifndef IAP_RUN_CALLS_H
#define IAP_RUN_CALLS_H

#include <stdint.h>

#include <iaprune/attribute.h>
#include <iaprune/attribute_samples.h>
#include <iaprune/guard.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

int iap_call_build(const struct iap_plugin *p, const struct iap_opts *opts,
		   const struct iap_dataset_info *data, struct iap_graph **out, struct iap_error *err);
int iap_call_init_params(const struct iap_plugin *p, const struct iap_opts *opts, struct iap_graph *g,
			 struct iap_rng *rng, struct iap_error *err);
int iap_call_select(const struct iap_plugin *p, const struct iap_opts *opts, const struct iap_dataset *ds,
		    struct iap_graph *g, struct iap_rng *rng, int k, int64_t *out, int64_t *n_out,
		    struct iap_error *err);
int iap_call_create(const struct iap_plugin *p, const struct iap_opts *opts, struct iap_graph *g,
		    void **state, struct iap_error *err);
void iap_call_destroy(const struct iap_plugin *p, void *state);
/* iap_attribute_batch (ruleset, seed, score) as entry point "score". */
int iap_call_attribute_batch(const struct iap_plugin *p, void *state, const struct iap_opts *opts,
			     struct iap_graph *g, const struct iap_tensor *x, const int *labels,
			     float *const *scores, int *targets_out, struct iap_error *err);
int iap_call_explain(const struct iap_plugin *p, void *state, struct iap_graph *g,
		     const struct iap_tensor *x, const int *targets, struct iap_tensor *relevance,
		     struct iap_error *err);
/* iap_attribute_samples (attribute.h) as entry point "score". */
int iap_call_attribute_samples(const struct iap_plugin *p, void *state, const struct iap_opts *opts,
			       struct iap_graph *g, const struct iap_tensor *x, const int *labels,
			       float *const *sum, float *const *sum_abs, int *targets,
			       struct iap_tensor *input_relevance, struct iap_error *err);
/* The attribution's completeness() (the caller checks IAP_ATTR_OPS_HAS first). */
const float *iap_call_completeness(const struct iap_plugin *p, void *state, int what, int *n_groups, int *n);
int iap_call_mask(const struct iap_plugin *p, const struct iap_opts *opts, const struct iap_policy_input *in,
		  uint8_t *const *keep, struct iap_error *err);
/* mask, with its answer checked (iap_contract_mask) before it reaches keep. */
int iap_call_mask_checked(const struct iap_plugin *p, const struct iap_opts *opts,
			  const struct iap_policy_input *in, uint8_t *const *keep, struct iap_error *err);
/*
 * Open split s of dataset plugin p into d (d->split set by the caller).
 * d->ops and d->state become a guard around the plugin's own, so that every
 * later info, count, load and close (by the runner, training, evaluation or
 * a sampler, from any thread) runs inside a call record.
 */
int iap_call_dataset_open(const struct iap_plugin *p, const struct iap_opts *opts, enum iap_split s,
			  struct iap_dataset *d, struct iap_error *err);

#endif /* IAP_RUN_CALLS_H */
