/*
 * The ranking of the data-free baselines (magnitude, random). A global
 * ranking of raw scores compares numbers on different scales: a filter's
 * weight norm grows with its fan-in, so the first layers' filters rank
 * lowest and go first, and the baseline collapses for a reason that has
 * nothing to do with the criterion. By default each layer's scores are
 * divided by their layer's L2 norm before the global ranking ("l2", the
 * layer-wise normalisation of Molchanov et al., 2017, used for Taylor and
 * magnitude criteria); "mean" divides by the layer's mean |score| instead
 * (scale-free, without favouring wide layers); "raw" keeps the
 * unnormalised ranking.
 */
#ifndef IAP_RUN_RANKING_H
#define IAP_RUN_RANKING_H

enum iap_ranking { IAP_RANK_RAW = 0, IAP_RANK_L2, IAP_RANK_MEAN };

/* "raw", "l2", "mean" → the enum; -1 for anything else. */
int iap_ranking_parse(const char *name);

/* scores[g][u] /= the layer's L2 norm or mean |score|, for every group with a non-zero one. */
void iap_scores_normalize(enum iap_ranking how, int n_groups, const int *n_units, float *const *scores);

#endif
