/* Forward fusion: a node and the ReLU after it in one pass (see fuse.h). */
#include "config.h"

#include <stddef.h>

#include <iaprune/graph.h>

#include "../ops/fused.h"
#include "fuse.h"

struct iap_node *iap_graph_fused_relu(const struct iap_graph *g, int i)
{
	struct iap_node *n, *next;

	if (i < 0 || i + 1 >= g->n_nodes)
		return NULL;
	n = &g->nodes[i];
	next = &g->nodes[i + 1];
	if (next->kind != IAP_OP_RELU || next->n_inputs != 1 || next->inputs[0] != i)
		return NULL;
	if (n->mask_group >= 0)
		return NULL;
	return n->kind == IAP_OP_BATCHNORM2D || n->kind == IAP_OP_ADD ? next : NULL;
}

int iap_graph_forward_fused(struct iap_graph *g, struct iap_node *n,
			    const struct iap_tensor *const in[], struct iap_node *relu,
			    struct iap_error *err)
{
	if (n->kind == IAP_OP_BATCHNORM2D)
		return iap_batchnorm_forward_relu(g, n, in, &n->out, &relu->out, err);
	return iap_add_forward_relu(g, n, in, &n->out, &relu->out, err);
}
