/* Evaluate a masked graph on its compacted form when compaction is exact (<iaprune/eval_pruned.h>). */
#include "config.h"

#include <stddef.h>

#include <iaprune/compact.h>
#include <iaprune/eval_pruned.h>
#include <iaprune/train.h>

int iap_evaluate_pruned(struct iap_graph *g, const struct iap_dataset *ds, int batch,
			struct iap_metrics *m, struct iap_graph **small, struct iap_error *err)
{
	struct iap_error cerr = { 0, "" };
	struct iap_graph *cg = NULL;
	int masked = 0, rc;

	if (small)
		*small = NULL;
	if (!g)
		return iap_error_set(err, IAP_EINVAL, "evaluate: need a graph");
	for (int gi = 0; gi < g->n_groups; gi++)
		masked |= g->groups[gi].mask != NULL;
	/*
	 * Refusals (a layernorm over pruned channels, a BatchNorm away from the
	 * mask, …) only mean the masked graph must run; they are not errors here.
	 */
	if (masked && iap_graph_compact(g, 0, &cg, &cerr) != IAP_OK)
		cg = NULL;
	rc = iap_evaluate(cg ? cg : g, ds, batch, m, err);
	if (rc == IAP_OK && small)
		*small = cg;
	else
		iap_graph_free(cg);
	return rc;
}
