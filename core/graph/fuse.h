/*
 * Which consecutive nodes the forward runs as one pass (library-internal).
 *
 * A ReLU that reads the node just before it is computed by that node's
 * kernel when the kernel can (batchnorm and add, the pairs every ResNet
 * block has): one pass over memory and one fork/join for the two, instead
 * of the ReLU reading back what the previous node just wrote. Nothing
 * changes for anything that reads the graph: both nodes' outputs are
 * written, with the values they have unfused (core/ops/fused.h).
 */
#ifndef IAP_CORE_GRAPH_FUSE_H
#define IAP_CORE_GRAPH_FUSE_H

#include <iaprune/graph.h>

#include "../util/visibility.h"

/*
 * Node i + 1 when it runs the stock ReLU on node i alone and node i's
 * kernel (the stock batchnorm or add) can write it in its own pass; NULL
 * otherwise. Not while a unit mask is set on node i: the mask zeroes its
 * output after the forward, and the ReLU has to see the masked values.
 * Decided on every forward, as masks come and go.
 */
IAP_INTERNAL
struct iap_node *iap_graph_fused_relu(const struct iap_graph *g, int i);

/* Node n's forward and relu into relu->out, in one pass (relu from iap_graph_fused_relu). */
IAP_INTERNAL
int iap_graph_forward_fused(struct iap_graph *g, struct iap_node *n,
			    const struct iap_tensor *const in[], struct iap_node *relu,
			    struct iap_error *err);

#endif
