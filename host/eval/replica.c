/* Forward-only replicas of a graph that share its parameters (replica.h). */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <iaprune/tensor.h>

#include "replica.h"

struct iap_graph *iap_eval_replica_new(const struct iap_graph *g, struct iap_error *err)
{
	struct iap_graph *r;

	if (!g || !g->finalized || g->shape_only) {
		iap_error_set(err, IAP_EINVAL, "replica: needs a finalized graph with parameters");
		return NULL;
	}
	r = malloc(sizeof(*r));
	if (!r) {
		iap_error_set(err, IAP_ENOMEM, "replica: out of memory");
		return NULL;
	}
	*r = *g;
	r->nodes = malloc((size_t)g->n_nodes * sizeof(*r->nodes));
	if (!r->nodes) {
		free(r);
		iap_error_set(err, IAP_ENOMEM, "replica: out of memory for %d nodes", g->n_nodes);
		return NULL;
	}
	/*
	 * Node by node: names, attributes and parameter tensors (the weights'
	 * pointers) are the original's; everything a forward writes starts empty.
	 */
	memcpy(r->nodes, g->nodes, (size_t)g->n_nodes * sizeof(*r->nodes));
	for (int i = 0; i < g->n_nodes; i++) {
		memset(&r->nodes[i].out, 0, sizeof(r->nodes[i].out));
		memset(r->nodes[i].aux, 0, sizeof(r->nodes[i].aux));
	}
	r->cap_nodes = g->n_nodes;
	r->batch = 0;
	memset(&r->input, 0, sizeof(r->input));
	memset(&r->input_r, 0, sizeof(r->input_r));
	r->r = NULL;
	r->r_valid = NULL;
	r->r_more = NULL;          /* a walk on a replica must not write into g's channels */
	r->r_more_channels = 0;
	r->workspace = NULL;
	r->workspace_len = 0;
	return r;
}

void iap_eval_replica_free(struct iap_graph *r)
{
	if (!r)
		return;
	for (int i = 0; i < r->n_nodes; i++) {
		iap_tensor_free(&r->nodes[i].out);
		for (int k = 0; k < IAP_NODE_MAX_AUX; k++)
			iap_tensor_free(&r->nodes[i].aux[k]);
	}
	free(r->nodes);
	iap_tensor_free(&r->input);
	iap_tensor_free(&r->input_r);
	iap_free(r->workspace);
	free(r);
}
