/*
 * The "activation" attribution plugin: a unit's score is its mean activation
 * per sample (averaged over its positions: pixels, or tokens × columns),
 * summed over samples (or averaged, by the common reduce option).
 *
 * Where the activation is read: a unit group's node is the conv or linear
 * itself, before its BatchNorm and nonlinearity; with `where: post` (the
 * default) the value is read after the ReLU or GELU that directly follows
 * the group's mask node (the conv, or its BatchNorm), when there is one, so
 * the score is the mean firing of the unit; otherwise at the node itself.
 * Attention heads (units on the softmax weights, whose rows always sum to 1)
 * are scored by the head's slice of the attention context instead (its d_h
 * columns of the attn_context output). The common abs option applies as for
 * relevance: by default |mean| per sample.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>
#include <iaprune/graph.h>
#include <iaprune/plugin.h>

/* The `where` choices in the order of enum act_where (iap_opts_enum's index). */
enum act_where { ACT_POST, ACT_UNIT, ACT_WHERE_COUNT };
static const char *const where_choices[] = { [ACT_POST] = "post", [ACT_UNIT] = "unit", NULL };
_Static_assert(sizeof(where_choices) / sizeof(where_choices[0]) == ACT_WHERE_COUNT + 1,
	       "where_choices must match enum act_where");

static const struct iap_option activation_options[] = {
	{ .name = "where", .type = IAP_OPT_ENUM, .def = "post", .choices = where_choices,
	  .help = "read after the unit's nonlinearity (post) or at the unit's own node" },
	IAP_ATTR_COMMON_OPTIONS,
	{ .name = NULL },
};

struct activation_state {
	struct iap_score_opts so;
	int post;
	float *tmp;             /* one group's per-unit sums */
	int cap;
};

static int activation_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
			     struct iap_error *err)
{
	struct activation_state *st = calloc(1, sizeof(*st));

	if (!st)
		return iap_error_set(err, IAP_ENOMEM, "activation: out of memory");
	iap_score_opts_from(opts, &st->so);
	st->post = iap_opts_enum(opts, "where") != ACT_UNIT;
	for (int gi = 0; gi < g->n_groups; gi++)
		if (iap_graph_group(g, gi)->n_units > st->cap)
			st->cap = iap_graph_group(g, gi)->n_units;
	st->tmp = calloc((size_t)(st->cap ? st->cap : 1), sizeof(float));
	if (!st->tmp) {
		free(st);
		return iap_error_set(err, IAP_ENOMEM, "activation: out of memory");
	}
	*state = st;
	return IAP_OK;
}

static void activation_destroy(void *state)
{
	struct activation_state *st = state;

	if (!st)
		return;
	free(st->tmp);
	free(st);
}

/* The single consumer of node id with the given kind, or -1. */
static int consumer_of(const struct iap_graph *g, int id, enum iap_op_kind kind)
{
	if (id < 0 || iap_graph_node(g, id)->n_consumers != 1)
		return -1;
	for (int i = id + 1; i < g->n_nodes; i++)
		if (iap_graph_node(g, i)->n_inputs > 0 && iap_graph_node(g, i)->inputs[0] == id)
			return iap_graph_node(g, i)->kind == kind ? i : -1;
	return -1;
}

static int activation_score(void *state, struct iap_graph *g, const struct iap_tensor *x,
			    const int *targets, float *const *scores, struct iap_error *err)
{
	struct activation_state *st = state;
	int64_t batch = x->shape[0];

	(void)targets;
	for (int gi = 0; gi < g->n_groups; gi++) {
		struct iap_unit_group grp = *iap_graph_group(g, gi);
		const struct iap_node *n = iap_graph_node(g, grp.node);
		int64_t outer, axis, inner;
		double count;

		if (grp.n_units > st->cap)
			return iap_error_set(err, IAP_EINVAL, "activation: graph changed since create()");
		if (n->kind == IAP_OP_SOFTMAX) {
			int c = consumer_of(g, grp.node, IAP_OP_ATTN_CONTEXT);

			if (c < 0)
				return iap_error_set(err, IAP_EUNSUPPORTED,
						     "activation: heads of '%s' feed no attention context",
						     grp.name);
			n = iap_graph_node(g, c);
			/* The context is N×T×D, heads concatenated: d_h columns per head. */
			grp.unit_size = (int)(n->out_shape[n->out_ndim - 1] / grp.n_units);
		} else if (st->post) {
			int c = consumer_of(g, grp.mask_node, IAP_OP_RELU);

			if (c < 0)
				c = consumer_of(g, grp.mask_node, IAP_OP_GELU);
			if (c >= 0)
				n = iap_graph_node(g, c);
		}
		if (n->out.shape[0] != batch)
			return iap_error_set(err, IAP_EINVAL, "activation: the graph was not run on this batch");
		iap_unit_view(&n->out, &outer, &axis, &inner);
		/* Positions of one unit in one sample. */
		count = (double)(outer / batch) * grp.unit_size * inner;
		/* One sample at a time so abs "after" applies to each sample's mean. */
		for (int64_t s = 0; s < batch; s++) {
			struct iap_tensor view = n->out;
			int64_t per = iap_tensor_numel(&n->out) / batch;

			view.shape[0] = 1;
			view.data = n->out.data + s * per;
			view.owns = 0;
			memset(st->tmp, 0, (size_t)grp.n_units * sizeof(float));
			iap_unit_accumulate(&grp, &view, st->so.abs, st->tmp);
			for (int u = 0; u < grp.n_units; u++)
				scores[gi][u] += (float)(st->tmp[u] / count);
		}
	}
	return IAP_OK;
}

static const struct iap_attribution_ops activation_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = 0,
	.create = activation_create,
	.destroy = activation_destroy,
	.score = activation_score,
};

static const struct iap_plugin_desc activation_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "activation",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "baseline: mean activation of each unit",
	.options = activation_options,
	.ops.attribution = &activation_ops,
};

IAP_PLUGIN_DEFINE(activation_desc)
