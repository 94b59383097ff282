/*
 * The `ig` attribution plugin's extra entry points: the completeness gaps of
 * its last runs. Hosts reach the same numbers through the public plugin
 * interface, struct iap_attribution_ops's completeness() (ABI 1.1, see
 * <iaprune/plugin.h>); these functions stay for the white-box tests, which
 * compile ig.c in. `state` is what the plugin's create() returned. Not
 * installed.
 */
#ifndef IAP_PLUGIN_IG_H
#define IAP_PLUGIN_IG_H

/*
 * Per sample of the last explain(): δ_n = Σ_i attr_n,i − (F(x_n) − F(x'_n)),
 * where F is the target logit and x' the baseline. *n receives the sample
 * count (0 before the first explain()). The array lives until the next call.
 */
const float *iap_plugin_ig_input_delta(const void *state, int *n);

/*
 * Per unit group and sample of the last score(): δ_g,n = Σ_u cond_g,n,u −
 * (F(x_n) − F(x'_n)), the signed conductance summed over the whole group
 * (before any abs), laid out [n_groups][n]. *n_groups and *n receive the
 * sizes.
 */
const float *iap_plugin_ig_unit_delta(const void *state, int *n_groups, int *n);

/* F(x_n) − F(x'_n) of the last score() or explain() (n entries). */
const float *iap_plugin_ig_output_gap(const void *state, int *n);

#endif
