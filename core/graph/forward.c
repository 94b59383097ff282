/* The forward pass: every node in order, every output kept for the backward walk. */
#include "config.h"

#include <string.h>

#include <iaprune/graph.h>

/*
 * Shape every node's output buffer for `batch` samples and size the shared
 * workspace for the largest need of any op, so the pass itself allocates
 * nothing once the batch size is steady.
 */
static int graph_reshape(struct iap_graph *g, int batch, struct iap_error *err)
{
	size_t ws = 0;

	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = &g->nodes[i];
		int64_t shape[IAP_MAX_DIMS];
		int rc;

		shape[0] = batch;
		memcpy(shape + 1, n->out_shape, (size_t)n->out_ndim * sizeof(*shape));
		rc = iap_tensor_ensure(&n->out, n->out_ndim + 1, shape, err);
		if (rc)
			return iap_error_prefix(err, "node '%s' (%s)", n->name, iap_op_name(n->kind));
		if (n->ops->workspace) {
			size_t need = n->ops->workspace(g, n, batch);

			if (need > ws)
				ws = need;
		}
	}
	if (ws && !iap_graph_workspace(g, ws, err))
		return err ? err->code : IAP_ENOMEM;
	g->batch = batch;
	return IAP_OK;
}

int iap_graph_forward(struct iap_graph *g, const struct iap_tensor *x, struct iap_error *err)
{
	char got[96], want[96];
	int rc;

	if (!g->finalized)
		return iap_error_set(err, IAP_EINVAL, "graph must be finalized before the forward pass");
	if (g->shape_only)
		return iap_error_set(err, IAP_EINVAL, "graph was built without parameter storage and cannot run");
	if (x->ndim != g->in_ndim + 1 || x->shape[0] < 1 ||
	    memcmp(x->shape + 1, g->in_shape, (size_t)g->in_ndim * sizeof(int64_t)) != 0)
		return iap_error_set(err, IAP_ESHAPE, "input has shape %s, the model expects N x %s",
				     iap_tensor_shape_str(x, got, sizeof(got)),
				     iap_shape_str(g->in_ndim, g->in_shape, want, sizeof(want)));
	if (x->shape[0] > (int64_t)1 << 30)
		return iap_error_set(err, IAP_EINVAL, "batch of %lld samples is too large",
				     (long long)x->shape[0]);
	if (g->batch != (int)x->shape[0]) {
		rc = graph_reshape(g, (int)x->shape[0], err);
		if (rc)
			return rc;
	}
	rc = iap_tensor_copy(&g->input, x, err);
	if (rc)
		return rc;
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = &g->nodes[i];
		const struct iap_tensor *in[IAP_NODE_MAX_INPUTS] = { NULL };

		for (int k = 0; k < n->n_inputs; k++)
			in[k] = iap_graph_node_input(g, n, k);
		rc = n->ops->forward(g, n, in, &n->out, err);
		if (rc)
			return iap_error_prefix(err, "forward of '%s' (%s)", n->name, iap_op_name(n->kind));
		if (n->mask_group >= 0)
			iap_unit_apply_mask(&g->groups[n->mask_group], &n->out);
	}
	return IAP_OK;
}

const struct iap_tensor *iap_graph_output(const struct iap_graph *g)
{
	if (!g->finalized || g->output < 0 || g->batch == 0)
		return NULL;
	return &g->nodes[g->output].out;
}
