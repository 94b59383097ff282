/*
 * What the runner uses from its helper files: thin wrappers that mark each
 * call into a plugin (calls.c and calls.h, for the crash and exit guard), the checks of
 * what plugins hand back (contracts.c), and the score cache key's
 * ingredients (cache_key.c). Internal to libiaprune.
 */
#ifndef IAP_RUN_INTERNAL_H
#define IAP_RUN_INTERNAL_H

#include <stdint.h>

#include <iaprune/attribute.h>
#include <iaprune/guard.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "calls.h"

/* ---- contracts.c: what a plugin promised, checked where its answer comes back --------- */

/*
 * A sampler's answer for k per class: 0 <= n <= k * classes, every index in
 * range and distinct, every class with exactly min(k, its size) samples.
 */
int iap_contract_samples(const struct iap_plugin *p, const struct iap_dataset *ds, int k,
			 const int64_t *idx, int64_t n, struct iap_error *err);

/*
 * Score and mask rows are allocated one entry longer than the group; arm
 * writes a sentinel there, and the checks fail when a plugin wrote past the
 * end of a row.
 */
void iap_contract_scores_arm(const struct iap_graph *g, float *const *scores);
/* Every score finite, no row overrun. */
int iap_contract_scores(const struct iap_plugin *p, const struct iap_graph *g, float *const *scores,
			struct iap_error *err);
void iap_contract_mask_arm(const struct iap_graph *g, uint8_t *const *keep);
/*
 * A policy's masks for in: entries 0 or 1, no row overrun, ignored groups
 * whole, no layer past its cap (max_layer_rate, min_units), coupled groups
 * identical, and round(rate * units) pruned: never more, and fewer only
 * where caps bind, by less than one coupled unit, or where the policy left
 * layers whole (its own ignore list).
 */
int iap_contract_mask(const struct iap_plugin *p, const struct iap_policy_input *in, uint8_t *const *keep,
		      struct iap_error *err);
/* A heatmap's relevance has x's shape and is finite. */
int iap_contract_heatmap(const struct iap_plugin *p, const struct iap_tensor *x, const struct iap_tensor *rel,
			 struct iap_error *err);

/* ---- cache_key.c: FNV-1a ingredients of the score cache key ------------------------------ */

uint64_t iap_key_bytes(uint64_t h, const void *p, size_t n);
/* The plugin's file content hash: a rebuilt .so gets new scores. */
uint64_t iap_key_plugin(uint64_t h, const struct iap_plugin *p);
/* The content of samples idx[0..n) of ds (idx NULL: samples 0..n-1): every pixel and the label. */
int iap_key_samples(uint64_t *h, const struct iap_dataset *ds, const int64_t *idx, int64_t n,
		    struct iap_error *err);

#endif /* IAP_RUN_INTERNAL_H */
