/* Forward fusion: a node and the ReLU after it in one pass (see fuse.h). */
#include "config.h"

#include <stddef.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "../ops/fused.h"
#include "fuse.h"

struct iap_node *iap_graph_fused_relu(const struct iap_graph *g, int i)
{
	struct iap_node *n, *next;

	if (i < 0 || i + 1 >= g->n_nodes)
		return NULL;
	n = &g->nodes[i];
	next = &g->nodes[i + 1];
	/* By the ops the nodes run, not their kind: a graph may carry its own op of a stock kind. */
	if (next->ops != &iap_op_relu || next->n_inputs != 1 || next->inputs[0] != i)
		return NULL;
	/*
	 * Every conv's unit group puts its mask slot on the batchnorm after it,
	 * set or not: only a mask actually set has to reach the ReLU first.
	 */
	if (n->mask_group >= 0 && g->groups[n->mask_group].mask)
		return NULL;
	return n->ops == &iap_op_batchnorm2d || n->ops == &iap_op_add ? next : NULL;
}

int iap_graph_forward_fused(struct iap_graph *g, struct iap_node *n,
			    const struct iap_tensor *const in[], struct iap_node *relu,
			    struct iap_error *err)
{
	if (iap_tensor_numel(&relu->out) != iap_tensor_numel(&n->out))
		return iap_error_set(err, IAP_ESHAPE, "the fused relu '%s' does not match its input's size",
				     relu->name);
	if (n->ops == &iap_op_batchnorm2d)
		return iap_batchnorm_forward_relu(g, n, in, &n->out, &relu->out, err);
	if (n->ops == &iap_op_add)
		return iap_add_forward_relu(g, n, in, &n->out, &relu->out, err);
	return iap_error_set(err, IAP_EINVAL, "node '%s' (%s) has no fused ReLU kernel", n->name,
			     iap_op_name(n->kind));
}
