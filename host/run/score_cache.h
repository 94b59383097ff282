/* The unit-score cache file (library-internal; see score_cache.c). */
#ifndef IAP_CORE_RUN_SCORE_CACHE_H
#define IAP_CORE_RUN_SCORE_CACHE_H

#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/graph.h>

/*
 * Read the scores cached for key into scores[group][unit] (g's groups).
 * 1: loaded. 0: no such file. -1: the file is there but unusable (made for
 * another key, another model, checksum or values wrong, unreadable): why
 * says how, scores are left zero, and the caller discards the file.
 */
int iap_score_cache_load(const char *path, uint64_t key, const struct iap_graph *g, float **scores,
			 struct iap_error *why);

/* Write scores with their key and checksum (atomically). */
int iap_score_cache_save(const char *path, uint64_t key, const struct iap_graph *g, float *const *scores,
			 struct iap_error *err);

#endif
