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

/* Channels the walk carries for rs (its n_channels, where 0 means 1). */
static int ruleset_channels(const struct iap_ruleset *rs)
{
	return rs->n_channels ? (int)rs->n_channels : 1;
}

/* Channel c (>= 1) of node id (id == n_nodes: the input). */
static struct iap_tensor *more_channel(struct iap_graph *g, int c, int id)
{
	return &g->r_more[(size_t)(c - 1) * (size_t)(g->n_nodes + 1) + (size_t)id];
}

/* Per-node buffers of the walk, kept in the graph so repeated walks reuse them. */
static int walk_buffers(struct iap_graph *g, int n_channels, struct iap_error *err)
{
	if (!g->r) {
		g->r = calloc((size_t)g->n_nodes, sizeof(*g->r));
		g->r_valid = calloc((size_t)g->n_nodes, 1);
		if (!g->r || !g->r_valid)
			return iap_error_set(err, IAP_ENOMEM, "cannot allocate the walk's buffers");
	}
	if (n_channels - 1 > g->r_more_channels) {
		/* Grown by whole channels: the tensors already there keep their place and storage. */
		size_t per = (size_t)g->n_nodes + 1, have = (size_t)g->r_more_channels * per;
		struct iap_tensor *m = realloc(g->r_more, (size_t)(n_channels - 1) * per * sizeof(*m));

		if (!m)
			return iap_error_set(err, IAP_ENOMEM, "cannot allocate the walk's channels");
		memset(m + have, 0, ((size_t)(n_channels - 1) * per - have) * sizeof(*m));
		g->r_more = m;
		g->r_more_channels = n_channels - 1;
	}
	memset(g->r_valid, 0, (size_t)g->n_nodes);
	return IAP_OK;
}

/* Shape every channel of node id (or of the input, id == n_nodes) like `like` and zero it. */
static int channels_zero(struct iap_graph *g, int n_channels, int id, const struct iap_tensor *like,
			 struct iap_error *err)
{
	for (int c = 0; c < n_channels; c++) {
		struct iap_tensor *t = c ? more_channel(g, c, id) : id == g->n_nodes ? &g->input_r : &g->r[id];
		int rc = iap_tensor_ensure(t, like->ndim, like->shape, err);

		if (rc)
			return rc;
		iap_par_zero(t->data, iap_tensor_numel(t));
	}
	return IAP_OK;
}

/* What one walk needs besides the graph's own buffers. */
struct walk {
	struct iap_graph *g;
	const struct iap_ruleset *rs;
	const struct iap_walk_opts *opts;
	int n_channels;
	unsigned char *need, *touched;
	struct iap_error *err;
};

/*
 * need[i]: something upstream of node i's output wants what flows back
 * (a trainable parameter, the input, or — with a hook — every node).
 * Inputs nobody needs get r_in == NULL so rules can skip that work
 * (the first conv's col2im, for instance).
 */
static void walk_need(struct walk *w)
{
	const struct iap_graph *g = w->g;

	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *n = &g->nodes[i];
		int v = w->opts->hook != NULL || (w->opts->want_param_grads && has_trainable(n));

		for (int k = 0; k < n->n_inputs && !v; k++)
			v = n->inputs[k] == IAP_GRAPH_INPUT ? w->opts->want_input : w->need[n->inputs[k]];
		w->need[i] = (unsigned char)v;
	}
}

/* Input relevance and parameter gradients, shaped (and zeroed) before the walk. */
static int walk_targets(struct walk *w)
{
	struct iap_graph *g = w->g;
	int rc;

	if (w->opts->want_input) {
		rc = channels_zero(g, w->n_channels, g->n_nodes, &g->input, w->err);
		if (rc)
			return rc;
	}
	if (!w->opts->want_param_grads)
		return IAP_OK;
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			struct iap_param *p = &g->nodes[i].params[k];

			if (!(p->flags & IAP_PARAM_TRAINABLE) || p->grad.data)
				continue;
			rc = iap_tensor_alloc(&p->grad, p->value.ndim, p->value.shape, w->err);
			if (rc)
				return rc;
		}
	return IAP_OK;
}

/* The output's channels: seed in channel 0, the others zero, then the rule set's prepare. */
static int walk_seed(struct walk *w, const struct iap_tensor *seed)
{
	struct iap_graph *g = w->g;
	struct iap_tensor *chan[IAP_WALK_MAX_CHANNELS];
	int rc = iap_tensor_copy(&g->r[g->output], seed, w->err);

	if (rc)
		return rc;
	w->touched[g->output] = 1;
	chan[0] = &g->r[g->output];
	for (int c = 1; c < w->n_channels; c++) {
		chan[c] = more_channel(g, c, g->output);
		rc = iap_tensor_ensure(chan[c], seed->ndim, seed->shape, w->err);
		if (rc)
			return rc;
		iap_par_zero(chan[c]->data, iap_tensor_numel(chan[c]));
	}
	return w->rs->prepare ? w->rs->prepare(w->rs->user, g, chan, w->err) : IAP_OK;
}

/* Point ctx's channels of input k at node src's buffers, zeroing them at their first contribution. */
static int walk_input(struct walk *w, struct iap_rule_ctx *ctx, int k, int src)
{
	struct iap_graph *g = w->g;
	int rc;

	if (src == IAP_GRAPH_INPUT) {
		if (!w->opts->want_input)
			return IAP_OK;
		src = g->n_nodes;
	} else if (!w->need[src]) {
		return IAP_OK;
	} else if (!w->touched[src]) {
		/* First contribution: start from zero (later ones add up). */
		rc = channels_zero(g, w->n_channels, src, &g->nodes[src].out, w->err);
		if (rc)
			return rc;
		w->touched[src] = 1;
	}
	for (int c = 0; c < w->n_channels; c++)
		ctx->r_in_ch[c][k] = c ? more_channel(g, c, src) : src == g->n_nodes ? &g->input_r : &g->r[src];
	ctx->r_in[k] = ctx->r_in_ch[0][k];
	return IAP_OK;
}

/* Visit node i: mask, hook, then its rule into the inputs' buffers. */
static int walk_node(struct walk *w, int i)
{
	struct iap_graph *g = w->g;
	const struct iap_ruleset *rs = w->rs;
	struct iap_node *n = &g->nodes[i];
	struct iap_rule_ctx ctx = {
		.graph = g,
		.node = n,
		.out = &n->out,
		.r_out = &g->r[i],
		.want_param_grads = w->opts->want_param_grads,
		.user = rs->user,
		.err = w->err,
		.n_channels = w->n_channels,
	};
	iap_rule_fn rule;
	int rc;

	for (int c = 0; c < w->n_channels; c++) {
		struct iap_tensor *t = c ? more_channel(g, c, i) : &g->r[i];

		if (n->mask_group >= 0)
			iap_unit_apply_mask(&g->groups[n->mask_group], t);
		ctx.r_out_ch[c] = t;
	}
	if (w->opts->hook) {
		rc = w->opts->hook(w->opts->hook_user, g, n, &g->r[i]);
		if (rc)
			return rc;
	}
	/* An older (shorter) rule set has no rule for ops appended after it was built. */
	rule = (unsigned)n->kind < rs->n_rules ? rs->rules[n->kind] : NULL;
	if (!rule)
		return iap_error_set(w->err, IAP_EUNSUPPORTED, "rule set '%s' has no rule for op %s (node '%s')",
				     rs->name ? rs->name : "?", iap_op_name(n->kind), n->name);
	for (int k = 0; k < n->n_inputs; k++) {
		ctx.in[k] = iap_graph_node_input(g, n, k);
		rc = walk_input(w, &ctx, k, n->inputs[k]);
		if (rc)
			return rc;
	}
	rc = rule(&ctx);
	if (rc)
		iap_error_prefix(w->err, "%s rule at '%s' (%s)", rs->name ? rs->name : "?", n->name,
				 iap_op_name(n->kind));
	return rc;
}

/* The checks before anything is touched: a forward, a well-formed rule set, a seed of the output's shape. */
static int walk_check(const struct iap_graph *g, const struct iap_ruleset *rs, const struct iap_tensor *seed,
		      struct iap_error *err)
{
	const struct iap_tensor *out = iap_graph_output(g);
	char a[96], b[96];

	if (!out)
		return iap_error_set(err, IAP_EINVAL, "backward walk needs a forward pass first");
	/* size and n_rules are what make the rules[] array safe to read (IAP_RULESET_HEADER). */
	if (!rs || rs->size < offsetof(struct iap_ruleset, rules) || rs->n_rules == 0 ||
	    rs->size < offsetof(struct iap_ruleset, rules) + (size_t)rs->n_rules * sizeof(iap_rule_fn))
		return iap_error_set(err, IAP_EABI,
				     "rule set '%s' has size %u for %u rules: start it with IAP_RULESET_HEADER",
				     rs && rs->name ? rs->name : "?", rs ? rs->size : 0, rs ? rs->n_rules : 0);
	if (rs->n_channels > IAP_WALK_MAX_CHANNELS)
		return iap_error_set(err, IAP_EINVAL, "rule set '%s' asks for %u channels, the walk carries at most %d",
				     rs->name ? rs->name : "?", rs->n_channels, IAP_WALK_MAX_CHANNELS);
	if (!iap_tensor_same_shape(seed, out))
		return iap_error_set(err, IAP_ESHAPE, "walk seed has shape %s, the output is %s",
				     iap_tensor_shape_str(seed, a, sizeof(a)),
				     iap_tensor_shape_str(out, b, sizeof(b)));
	return IAP_OK;
}

int iap_graph_backward(struct iap_graph *g, const struct iap_ruleset *rs,
		       const struct iap_tensor *seed, const struct iap_walk_opts *opts,
		       struct iap_error *err)
{
	static const struct iap_walk_opts no_opts;
	struct walk w = { .g = g, .rs = rs, .opts = opts ? opts : &no_opts, .err = err };
	int rc, prepared = 0;

	rc = walk_check(g, rs, seed, err);
	if (rc)
		return rc;
	w.n_channels = ruleset_channels(rs);
	rc = walk_buffers(g, w.n_channels, err);
	if (rc)
		return rc;
	w.need = calloc((size_t)g->n_nodes, 1);
	w.touched = calloc((size_t)g->n_nodes, 1);
	if (!w.need || !w.touched) {
		rc = iap_error_set(err, IAP_ENOMEM, "cannot allocate the walk's bookkeeping");
		goto out_free;
	}
	walk_need(&w);
	rc = walk_targets(&w);
	if (rc)
		goto out_free;
	rc = walk_seed(&w, seed);
	if (rc)
		goto out_free;
	prepared = 1;
	for (int i = g->output; i >= 0 && !rc; i--)
		if (w.touched[i] && w.need[i])
			rc = walk_node(&w, i);
	if (rc)
		goto out_finish;
	/* What this walk reached; iap_graph_node_r reports the rest as absent. */
	for (int i = 0; i < g->n_nodes; i++)
		g->r_valid[i] = (unsigned char)(w.touched[i] && w.need[i]);
out_finish:
	if (prepared && rs->finish)
		rs->finish(rs->user, g);
out_free:
	free(w.need);
	free(w.touched);
	return rc;
}

const struct iap_tensor *iap_graph_node_r(const struct iap_graph *g, int id)
{
	if (!g->r || id < 0 || id >= g->n_nodes || !g->r_valid[id])
		return NULL;
	return &g->r[id];
}
