/* Per-layer normalisation of the data-free baselines' scores (see ranking.h). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "ranking.h"

int iap_ranking_parse(const char *name)
{
	if (!name)
		return -1;
	if (!strcmp(name, "raw"))
		return IAP_RANK_RAW;
	if (!strcmp(name, "l2"))
		return IAP_RANK_L2;
	if (!strcmp(name, "mean"))
		return IAP_RANK_MEAN;
	return -1;
}

void iap_scores_normalize(enum iap_ranking how, int n_groups, const int *n_units, float *const *scores)
{
	if (how == IAP_RANK_RAW)
		return;
	for (int g = 0; g < n_groups; g++) {
		double s = 0;

		for (int u = 0; u < n_units[g]; u++) {
			double a = fabs((double)scores[g][u]);

			s += how == IAP_RANK_L2 ? a * a : a;
		}
		/* An all-zero layer stays zero (nothing to compare it with). */
		if (n_units[g] < 1 || !(s > 0))
			continue;
		s = how == IAP_RANK_L2 ? sqrt(s) : s / n_units[g];
		for (int u = 0; u < n_units[g]; u++)
			scores[g][u] = (float)(scores[g][u] / s);
	}
}
