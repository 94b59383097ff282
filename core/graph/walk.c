/*
 * The one backward-walk engine. It visits nodes in reverse topological order
 * and hands each node's rule the quantity at its output; the rule adds what
 * belongs to each input. Where a node feeds several others their
 * contributions simply add up in the input's buffer. Which rule runs is the
 * rule set's choice: the gradient, LRP, DL-Backtrace, or a user's own.
 */
#include "config.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/threads.h>

int iap_rule_gradient(struct iap_rule_ctx *ctx)
{
	const struct iap_node *n = ctx->node;

	if (!n->ops->backward)
		return iap_error_set(ctx->err, IAP_EUNSUPPORTED, "op %s has no gradient",
				     iap_op_name(n->kind));
	return n->ops->backward(ctx);
}

static struct iap_ruleset gradient_ruleset = { IAP_RULESET_HEADER, .name = "gradient" };
static pthread_once_t gradient_once = PTHREAD_ONCE_INIT;

static void gradient_ruleset_init(void)
{
	for (int k = 0; k < IAP_OP_COUNT; k++)
		gradient_ruleset.rules[k] = iap_rule_gradient;
}

const struct iap_ruleset *iap_ruleset_gradient(void)
{
	pthread_once(&gradient_once, gradient_ruleset_init);
	return &gradient_ruleset;
}

static int has_trainable(const struct iap_node *n)
{
	for (int k = 0; k < n->n_params; k++)
		if (n->params[k].flags & IAP_PARAM_TRAINABLE)
			return 1;
	return 0;
}

/* Per-node buffers of the walk, kept in the graph so repeated walks reuse them. */
static int walk_buffers(struct iap_graph *g, struct iap_error *err)
{
	if (!g->r) {
		g->r = calloc((size_t)g->n_nodes, sizeof(*g->r));
		g->r_valid = calloc((size_t)g->n_nodes, 1);
		if (!g->r || !g->r_valid)
			return iap_error_set(err, IAP_ENOMEM, "cannot allocate the walk's buffers");
	}
	memset(g->r_valid, 0, (size_t)g->n_nodes);
	return IAP_OK;
}

int iap_graph_backward(struct iap_graph *g, const struct iap_ruleset *rs,
		       const struct iap_tensor *seed, const struct iap_walk_opts *opts,
		       struct iap_error *err)
{
	static const struct iap_walk_opts no_opts;
	const struct iap_tensor *out = iap_graph_output(g);
	unsigned char *need = NULL, *touched = NULL;
	char a[96], b[96];
	int rc = IAP_OK;

	if (!opts)
		opts = &no_opts;
	if (!out)
		return iap_error_set(err, IAP_EINVAL, "backward walk needs a forward pass first");
	/* size and n_rules are what make the rules[] array safe to read (IAP_RULESET_HEADER). */
	if (!rs || rs->size < offsetof(struct iap_ruleset, rules) || rs->n_rules == 0 ||
	    rs->size < offsetof(struct iap_ruleset, rules) + (size_t)rs->n_rules * sizeof(iap_rule_fn))
		return iap_error_set(err, IAP_EABI,
				     "rule set '%s' has size %u for %u rules: start it with IAP_RULESET_HEADER",
				     rs && rs->name ? rs->name : "?", rs ? rs->size : 0, rs ? rs->n_rules : 0);
	if (!iap_tensor_same_shape(seed, out))
		return iap_error_set(err, IAP_ESHAPE, "walk seed has shape %s, the output is %s",
				     iap_tensor_shape_str(seed, a, sizeof(a)),
				     iap_tensor_shape_str(out, b, sizeof(b)));
	rc = walk_buffers(g, err);
	if (rc)
		return rc;
	need = calloc((size_t)g->n_nodes, 1);
	touched = calloc((size_t)g->n_nodes, 1);
	if (!need || !touched) {
		rc = iap_error_set(err, IAP_ENOMEM, "cannot allocate the walk's bookkeeping");
		goto out_free;
	}
	/*
	 * need[i]: something upstream of node i's output wants what flows back
	 * (a trainable parameter, the input, or — with a hook — every node).
	 * Inputs nobody needs get r_in == NULL so rules can skip that work
	 * (the first conv's col2im, for instance).
	 */
	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *n = &g->nodes[i];
		int v = opts->hook != NULL || (opts->want_param_grads && has_trainable(n));

		for (int k = 0; k < n->n_inputs && !v; k++)
			v = n->inputs[k] == IAP_GRAPH_INPUT ? opts->want_input : need[n->inputs[k]];
		need[i] = (unsigned char)v;
	}
	if (opts->want_input) {
		rc = iap_tensor_ensure(&g->input_r, g->input.ndim, g->input.shape, err);
		if (rc)
			goto out_free;
		iap_par_zero(g->input_r.data, iap_tensor_numel(&g->input_r));
	}
	if (opts->want_param_grads) {
		for (int i = 0; i < g->n_nodes; i++)
			for (int k = 0; k < g->nodes[i].n_params; k++) {
				struct iap_param *p = &g->nodes[i].params[k];

				if (!(p->flags & IAP_PARAM_TRAINABLE) || p->grad.data)
					continue;
				rc = iap_tensor_alloc(&p->grad, p->value.ndim, p->value.shape, err);
				if (rc)
					goto out_free;
			}
	}
	rc = iap_tensor_copy(&g->r[g->output], seed, err);
	if (rc)
		goto out_free;
	touched[g->output] = 1;

	for (int i = g->output; i >= 0; i--) {
		struct iap_node *n = &g->nodes[i];
		struct iap_rule_ctx ctx = {
			.graph = g,
			.node = n,
			.out = &n->out,
			.r_out = &g->r[i],
			.want_param_grads = opts->want_param_grads,
			.user = rs->user,
			.err = err,
		};
		iap_rule_fn rule;

		if (!touched[i] || !need[i])
			continue;
		if (n->mask_group >= 0)
			iap_unit_apply_mask(&g->groups[n->mask_group], &g->r[i]);
		if (opts->hook) {
			rc = opts->hook(opts->hook_user, g, n, &g->r[i]);
			if (rc)
				goto out_free;
		}
		/* An older (shorter) rule set has no rule for ops appended after it was built. */
		rule = (unsigned)n->kind < rs->n_rules ? rs->rules[n->kind] : NULL;
		if (!rule) {
			rc = iap_error_set(err, IAP_EUNSUPPORTED,
					   "rule set '%s' has no rule for op %s (node '%s')",
					   rs->name ? rs->name : "?", iap_op_name(n->kind), n->name);
			goto out_free;
		}
		for (int k = 0; k < n->n_inputs; k++) {
			int src = n->inputs[k];

			ctx.in[k] = iap_graph_node_input(g, n, k);
			if (src == IAP_GRAPH_INPUT) {
				ctx.r_in[k] = opts->want_input ? &g->input_r : NULL;
				continue;
			}
			if (!need[src])
				continue;
			if (!touched[src]) {
				/* First contribution: start from zero (later ones add up). */
				rc = iap_tensor_ensure(&g->r[src], g->nodes[src].out.ndim,
						       g->nodes[src].out.shape, err);
				if (rc)
					goto out_free;
				iap_par_zero(g->r[src].data, iap_tensor_numel(&g->r[src]));
				touched[src] = 1;
			}
			ctx.r_in[k] = &g->r[src];
		}
		rc = rule(&ctx);
		if (rc) {
			iap_error_prefix(err, "%s rule at '%s' (%s)", rs->name ? rs->name : "?",
					 n->name, iap_op_name(n->kind));
			goto out_free;
		}
	}
	/* What this walk reached; iap_graph_node_r reports the rest as absent. */
	for (int i = 0; i < g->n_nodes; i++)
		g->r_valid[i] = (unsigned char)(touched[i] && need[i]);
out_free:
	free(need);
	free(touched);
	return rc;
}

const struct iap_tensor *iap_graph_node_r(const struct iap_graph *g, int id)
{
	if (!g->r || id < 0 || id >= g->n_nodes || !g->r_valid[id])
		return NULL;
	return &g->r[id];
}
