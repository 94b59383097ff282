/*
 * Evaluating a pruned model on its compacted graph (issue 14).
 *
 * A masked graph still runs every pruned unit's weights and zeroes the
 * result; iap_graph_compact() builds the graph without them, which computes
 * the same outputs up to float rounding (its GEMMs are shorter) and at 50 %
 * pruning measures 2–3× faster for VGG19 and ResNet50 (bench/NOTES.md). The
 * pruning sweep evaluates every rate this way.
 */
#ifndef IAPRUNE_EVAL_PRUNED_H
#define IAPRUNE_EVAL_PRUNED_H

#include <iaprune/graph.h>
#include <iaprune/metrics.h>
#include <iaprune/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * iap_evaluate() of g as its masks prune it: on iap_graph_compact(g, 0) when
 * compaction accepts g (it is then exact: a half-pruned residual coupling
 * keeps zeroed channels, as the mask did), else on g itself, masks and all.
 * *small (may be NULL) receives the compacted graph, or NULL when g was
 * evaluated; the caller frees it (its parameter and MAC counts are what
 * the pruning removed). g is not changed.
 */
int iap_evaluate_pruned(struct iap_graph *g, const struct iap_dataset *ds, int batch,
			struct iap_metrics *m, struct iap_graph **small, struct iap_error *err);

#ifdef __cplusplus
}
#endif

#endif /* IAPRUNE_EVAL_PRUNED_H */
