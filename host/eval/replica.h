/*
 * Replicas of a graph for batch-parallel evaluation (library-internal).
 *
 * A replica shares the original's parameters, unit groups and masks (read
 * only, never freed through it) and has its own activations, saved aux
 * tensors, input copy and workspace, so several threads can each run an
 * evaluation-mode forward of their own slice of a batch at once. It is only
 * good for forwards (no walk buffers) and only while the original lives and
 * its parameters, masks and structure do not change.
 */
#ifndef IAP_CORE_EVAL_REPLICA_H
#define IAP_CORE_EVAL_REPLICA_H

#include <iaprune/error.h>
#include <iaprune/graph.h>

/* A forward-only replica of the finalized graph g, or NULL (err set). */
struct iap_graph *iap_eval_replica_new(const struct iap_graph *g, struct iap_error *err);

/* Frees what the replica owns (its buffers), none of what it shares. NULL is a no-op. */
void iap_eval_replica_free(struct iap_graph *r);

#endif
