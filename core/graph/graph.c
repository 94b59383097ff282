/*
 * The layer graph: building it, its parameters and its shared workspace.
 * The forward pass lives in forward.c, the backward walk in walk.c, prunable
 * units and masks in units.c.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/memory.h>

/* iap_graph_planning (memory.h): graphs built meanwhile have no parameter storage. */
static int planning;

void iap_graph_planning(int on)
{
	planning = on != 0;
}

struct iap_node *iap_graph_node(const struct iap_graph *g, int i)
{
	return g && i >= 0 && i < g->n_nodes ? &g->nodes[i] : NULL;
}

struct iap_unit_group *iap_graph_group(const struct iap_graph *g, int i)
{
	return g && i >= 0 && i < g->n_groups ? &g->groups[i] : NULL;
}

struct iap_graph *iap_graph_new(int in_ndim, const int64_t *in_shape, struct iap_error *err)
{
	struct iap_graph *g;

	if (in_ndim < 1 || in_ndim > IAP_MAX_DIMS - 1) {
		iap_error_set(err, IAP_EINVAL, "graph input must have 1 to %d dimensions per sample, not %d",
			      IAP_MAX_DIMS - 1, in_ndim);
		return NULL;
	}
	for (int i = 0; i < in_ndim; i++) {
		if (in_shape[i] <= 0) {
			iap_error_set(err, IAP_EINVAL, "graph input dimension %d is %lld", i,
				      (long long)in_shape[i]);
			return NULL;
		}
	}
	g = calloc(1, sizeof(*g));
	if (!g) {
		iap_error_set(err, IAP_ENOMEM, "cannot allocate a graph");
		return NULL;
	}
	g->in_ndim = in_ndim;
	memcpy(g->in_shape, in_shape, (size_t)in_ndim * sizeof(*in_shape));
	g->output = -1;
	g->shape_only = planning;
	iap_rng_seed(&g->rng, 0);
	return g;
}

static void node_release(struct iap_node *n)
{
	free(n->name);
	for (int k = 0; k < n->n_params; k++) {
		free(n->params[k].key);
		iap_tensor_free(&n->params[k].value);
		iap_tensor_free(&n->params[k].grad);
	}
	iap_tensor_free(&n->out);
	for (int k = 0; k < IAP_NODE_MAX_AUX; k++)
		iap_tensor_free(&n->aux[k]);
}

void iap_graph_free(struct iap_graph *g)
{
	if (!g)
		return;
	for (int i = 0; i < g->n_nodes; i++)
		node_release(&g->nodes[i]);
	free(g->nodes);
	if (g->r) {
		for (int i = 0; i < g->n_nodes; i++)
			iap_tensor_free(&g->r[i]);
		free(g->r);
		free(g->r_valid);
	}
	for (int i = 0; g->r_more && i < g->r_more_channels * (g->n_nodes + 1); i++)
		iap_tensor_free(&g->r_more[i]);
	free(g->r_more);
	for (int i = 0; i < g->n_groups; i++) {
		free(g->groups[i].name);
		free(g->groups[i].mask);
	}
	free(g->groups);
	iap_tensor_free(&g->input);
	iap_tensor_free(&g->input_r);
	iap_free(g->workspace);
	free(g);
}

int iap_graph_fail(struct iap_graph *g, int code, const char *fmt, ...)
{
	va_list ap;

	if (g->build_failed)
		return -1;
	g->build_failed = 1;
	g->build_err.code = code;
	va_start(ap, fmt);
	vsnprintf(g->build_err.msg, sizeof(g->build_err.msg), fmt, ap);
	va_end(ap);
	return -1;
}

int iap_graph_sample_shape(const struct iap_graph *g, int id, int64_t *shape)
{
	if (id == IAP_GRAPH_INPUT) {
		memcpy(shape, g->in_shape, (size_t)g->in_ndim * sizeof(*shape));
		return g->in_ndim;
	}
	if (id < 0 || id >= g->n_nodes) {
		/* A failed earlier builder returns -1 (== IAP_GRAPH_INPUT is handled above
		 * only for the literal input): any other id is a programming error upstream
		 * that already set the sticky error, or a bad id we report now. */
		iap_graph_fail((struct iap_graph *)g, IAP_EINVAL, "node id %d does not exist", id);
		return -1;
	}
	memcpy(shape, g->nodes[id].out_shape, (size_t)g->nodes[id].out_ndim * sizeof(*shape));
	return g->nodes[id].out_ndim;
}

int iap_graph_add_node(struct iap_graph *g, const struct iap_op_ops *ops, const char *name,
		       int n_inputs, const int *inputs)
{
	struct iap_node *n;

	if (g->build_failed)
		return -1;
	if (g->finalized)
		return iap_graph_fail(g, IAP_EINVAL, "%s: graph is already finalized", name ? name : "");
	if (n_inputs < 0 || n_inputs > IAP_NODE_MAX_INPUTS)
		return iap_graph_fail(g, IAP_EINVAL, "%s: %d inputs", name ? name : "", n_inputs);
	for (int i = 0; i < n_inputs; i++)
		if (inputs[i] != IAP_GRAPH_INPUT && (inputs[i] < 0 || inputs[i] >= g->n_nodes))
			return iap_graph_fail(g, IAP_EINVAL, "%s: input %d refers to node %d, which does not exist",
					      name ? name : "", i, inputs[i]);
	if (g->n_nodes == g->cap_nodes) {
		int cap = g->cap_nodes ? 2 * g->cap_nodes : 64;
		struct iap_node *nodes = realloc(g->nodes, (size_t)cap * sizeof(*nodes));

		if (!nodes)
			return iap_graph_fail(g, IAP_ENOMEM, "cannot grow the graph to %d nodes", cap);
		g->nodes = nodes;
		g->cap_nodes = cap;
	}
	n = &g->nodes[g->n_nodes];
	memset(n, 0, sizeof(*n));
	n->name = strdup(name ? name : "");
	if (!n->name)
		return iap_graph_fail(g, IAP_ENOMEM, "out of memory");
	n->id = g->n_nodes;
	n->kind = ops->kind;
	n->ops = ops;
	n->n_inputs = n_inputs;
	for (int i = 0; i < n_inputs; i++)
		n->inputs[i] = inputs[i];
	n->unit_group = -1;
	n->mask_group = -1;
	return g->n_nodes++;
}

int iap_graph_add_param(struct iap_graph *g, int id, const char *suffix, int ndim,
			const int64_t *shape, unsigned flags)
{
	struct iap_node *n;
	struct iap_param *p;
	struct iap_error err;
	size_t len;

	if (g->build_failed || id < 0 || id >= g->n_nodes)
		return g->build_failed ? -1 : iap_graph_fail(g, IAP_EINVAL, "parameter for missing node %d", id);
	n = &g->nodes[id];
	if (n->n_params == IAP_NODE_MAX_PARAMS)
		return iap_graph_fail(g, IAP_EINVAL, "%s: more than %d parameters", n->name,
				      IAP_NODE_MAX_PARAMS);
	p = &n->params[n->n_params];
	memset(p, 0, sizeof(*p));
	len = strlen(n->name) + strlen(suffix) + 2;
	p->key = malloc(len);
	if (!p->key)
		return iap_graph_fail(g, IAP_ENOMEM, "out of memory");
	if (n->name[0])
		snprintf(p->key, len, "%s.%s", n->name, suffix);
	else
		snprintf(p->key, len, "%s", suffix);
	if (g->shape_only) {
		int64_t numel = 1;

		for (int d = 0; d < ndim; d++) {
			if (shape[d] < 0 || (shape[d] > 0 && numel > IAP_TENSOR_MAX_ELEMS / shape[d])) {
				free(p->key);
				p->key = NULL;
				return iap_graph_fail(g, IAP_EINVAL, "%s.%s: bad shape", n->name, suffix);
			}
			numel *= shape[d];
		}
		p->value.ndim = ndim;
		memcpy(p->value.shape, shape, (size_t)ndim * sizeof(*shape));
	} else if (iap_tensor_alloc(&p->value, ndim, shape, &err)) {
		free(p->key);
		p->key = NULL;
		return iap_graph_fail(g, err.code, "%s.%s: %s", n->name, suffix, err.msg);
	}
	p->flags = flags;
	return n->n_params++;
}

void iap_graph_set_shape_only(struct iap_graph *g, int on)
{
	g->shape_only = on || planning ? 1 : 0;
}

int iap_graph_set_output(struct iap_graph *g, int node)
{
	if (node < 0 || node >= g->n_nodes)
		return iap_graph_fail(g, IAP_EINVAL, "output node %d does not exist", node);
	g->output = node;
	return node;
}

int iap_graph_finalize(struct iap_graph *g, struct iap_error *err)
{
	if (g->build_failed) {
		iap_error_set(err, g->build_err.code, "%s", g->build_err.msg);
		return g->build_err.code;
	}
	if (g->n_nodes == 0)
		return iap_error_set(err, IAP_EINVAL, "graph has no nodes");
	if (g->output < 0)
		g->output = g->n_nodes - 1;
	for (int i = 0; i < g->n_nodes; i++)
		g->nodes[i].n_consumers = 0;
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_inputs; k++)
			if (g->nodes[i].inputs[k] >= 0)
				g->nodes[g->nodes[i].inputs[k]].n_consumers++;
	/*
	 * A unit's mask goes on the BatchNorm that directly (and solely) consumes
	 * the unit's node, so the BN shift cannot leave a pruned channel non-zero.
	 */
	for (int gi = 0; gi < g->n_groups; gi++) {
		struct iap_unit_group *grp = &g->groups[gi];
		int mask_node = grp->node;

		if (g->nodes[grp->node].n_consumers == 1) {
			for (int j = grp->node + 1; j < g->n_nodes; j++) {
				const struct iap_node *c = &g->nodes[j];

				if (c->n_inputs >= 1 && c->inputs[0] == grp->node) {
					if (c->kind == IAP_OP_BATCHNORM2D)
						mask_node = j;
					break;
				}
			}
		}
		if (g->nodes[mask_node].mask_group >= 0 && g->nodes[mask_node].mask_group != gi)
			return iap_error_set(err, IAP_EINVAL, "node '%s' carries two unit groups",
					     g->nodes[mask_node].name);
		grp->mask_node = mask_node;
		g->nodes[mask_node].mask_group = gi;
	}
	g->finalized = 1;
	return IAP_OK;
}

struct iap_param *iap_graph_find_param(struct iap_graph *g, const char *key)
{
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++)
			if (strcmp(g->nodes[i].params[k].key, key) == 0)
				return &g->nodes[i].params[k];
	return NULL;
}

int iap_graph_foreach_param(struct iap_graph *g,
			    int (*fn)(struct iap_node *node, struct iap_param *p, void *user),
			    void *user)
{
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			int rc = fn(&g->nodes[i], &g->nodes[i].params[k], user);

			if (rc)
				return rc;
		}
	return 0;
}

int64_t iap_graph_param_count(const struct iap_graph *g, int64_t *buffers)
{
	int64_t params = 0, bufs = 0;

	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			const struct iap_param *p = &g->nodes[i].params[k];

			if (p->flags & IAP_PARAM_BUFFER)
				bufs += iap_tensor_numel(&p->value);
			else
				params += iap_tensor_numel(&p->value);
		}
	if (buffers)
		*buffers = bufs;
	return params;
}

int iap_param_grad(const struct iap_node *node, int k, float **grad, struct iap_error *err)
{
	const struct iap_param *p = &node->params[k];

	*grad = NULL;
	if (!(p->flags & IAP_PARAM_TRAINABLE))
		return IAP_OK;
	if (!p->grad.data || !iap_tensor_same_shape(&p->grad, &p->value))
		return iap_error_set(err, IAP_EINVAL,
				     "%s: gradient buffer missing (call iap_graph_zero_grads first)",
				     p->key);
	*grad = p->grad.data;
	return IAP_OK;
}

uint64_t iap_graph_macs(const struct iap_graph *g)
{
	uint64_t total = 0;

	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].ops->macs)
			total += g->nodes[i].ops->macs(g, &g->nodes[i]);
	return total;
}

int iap_graph_zero_grads(struct iap_graph *g, struct iap_error *err)
{
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			struct iap_param *p = &g->nodes[i].params[k];
			int rc;

			if (!(p->flags & IAP_PARAM_TRAINABLE))
				continue;
			if (p->grad.data && iap_tensor_same_shape(&p->grad, &p->value)) {
				iap_tensor_zero(&p->grad);
				continue;
			}
			rc = iap_tensor_alloc(&p->grad, p->value.ndim, p->value.shape, err);
			if (rc) {
				iap_error_prefix(err, "gradient of %s", p->key);
				return rc;
			}
		}
	return IAP_OK;
}

void iap_graph_set_training(struct iap_graph *g, int training)
{
	g->training = training ? 1 : 0;
}

void iap_graph_seed(struct iap_graph *g, uint64_t seed)
{
	iap_rng_seed(&g->rng, seed);
}

const struct iap_tensor *iap_graph_node_input(const struct iap_graph *g, const struct iap_node *node,
					      int i)
{
	int src = node->inputs[i];

	return src == IAP_GRAPH_INPUT ? &g->input : &g->nodes[src].out;
}

float *iap_graph_workspace(struct iap_graph *g, size_t n, struct iap_error *err)
{
	if (n <= g->workspace_len && g->workspace)
		return g->workspace;
	iap_free(g->workspace);
	g->workspace = iap_alloc_floats(n ? n : 1);
	g->workspace_len = g->workspace ? n : 0;
	if (!g->workspace)
		iap_error_set(err, IAP_ENOMEM, "cannot allocate %zu floats of workspace", n);
	return g->workspace;
}
