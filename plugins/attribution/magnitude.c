/*
 * The "magnitude" attribution plugin: a unit's score is the L1 or L2 norm of
 * the weights coming into it (Li et al. 2017 use L1 on conv filters). No
 * data is needed.
 *
 * What "incoming" means per kind of unit group node:
 *   conv2d   filter u: weight[u, :, :, :] (in_ch × kh × kw)
 *   linear   neuron u: weight row u (an MLP neuron of ViT is its mlp.0 row)
 *   softmax  attention head u (the attention weights node of iap_mha): the
 *            q, k and v rows of the packed in_proj_weight [3D, D] that feed
 *            the head, rows [u·d_h, (u+1)·d_h) of each of the three blocks
 *            (3·d_h·D weights); attn_scores nodes are handled the same way.
 * Biases are not counted. A unit of unit_size > 1 covers that many
 * consecutive rows (filters).
 */
#include "config.h"

#include <math.h>

#include <iaprune/attribute.h>
#include <iaprune/graph.h>
#include <iaprune/plugin.h>

/* The `norm` choices in the order of enum mag_norm (iap_opts_enum's index). */
enum mag_norm { MAG_L1, MAG_L2, MAG_NORM_COUNT };
static const char *const norm_choices[] = { [MAG_L1] = "l1", [MAG_L2] = "l2", NULL };
_Static_assert(sizeof(norm_choices) / sizeof(norm_choices[0]) == MAG_NORM_COUNT + 1,
	       "norm_choices must match enum mag_norm");

static const struct iap_option magnitude_options[] = {
	{ .name = "norm", .type = IAP_OPT_ENUM, .def = "l1", .choices = norm_choices,
	  .help = "norm of each unit's incoming weights" },
	/* No common options: no samples, so no relevance to reduce, target or seed (norms are never negative). */
	{ .name = NULL },
};

/* The state is just the norm choice (1 for L2), kept in the pointer itself. */
static int magnitude_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
			    struct iap_error *err)
{
	static const int l1 = 0, l2 = 1;

	(void)g;
	(void)err;
	*state = (void *)(iap_opts_enum(opts, "norm") == MAG_L2 ? &l2 : &l1);
	return IAP_OK;
}

static void magnitude_destroy(void *state)
{
	(void)state;
}

/* Norm of rows [r0, r0 + nr) of a row-major matrix with `cols` columns, added into *acc. */
static void rows_norm(const float *w, int64_t cols, int64_t r0, int64_t nr, int l2, double *acc)
{
	const float *p = w + r0 * cols;

	for (int64_t i = 0; i < nr * cols; i++)
		*acc += l2 ? (double)p[i] * p[i] : fabs((double)p[i]);
}

/* The weight matrix of a conv or linear node viewed as [rows][cols]. */
static int weight_of(const struct iap_node *n, const float **w, int64_t *rows, int64_t *cols,
		     struct iap_error *err)
{
	const struct iap_tensor *t;

	if (n->n_params < 1 || !n->params[0].value.data)
		return iap_error_set(err, IAP_EINVAL, "magnitude: node '%s' has no weights", n->name);
	t = &n->params[0].value;
	*w = t->data;
	*rows = t->shape[0];
	*cols = iap_tensor_numel(t) / t->shape[0];
	return IAP_OK;
}

static int magnitude_score(void *state, struct iap_graph *g, const struct iap_tensor *x,
			   const int *targets, float *const *scores, struct iap_error *err)
{
	int l2 = *(const int *)state;

	(void)x;
	(void)targets;
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = iap_graph_group(g, gi);
		const struct iap_node *n = iap_graph_node(g, grp->node);
		const float *w = NULL;
		int64_t rows = 0, cols = 0;
		int head = 0, rc;

		if (n->kind == IAP_OP_SOFTMAX && n->inputs[0] >= 0)
			n = iap_graph_node(g, n->inputs[0]);
		if (n->kind == IAP_OP_ATTN_SCORES && n->inputs[0] >= 0) {
			n = iap_graph_node(g, n->inputs[0]);
			head = 1;
		}
		if (n->kind != IAP_OP_CONV2D && n->kind != IAP_OP_LINEAR)
			return iap_error_set(err, IAP_EUNSUPPORTED,
					     "magnitude: units of '%s' sit on a %s node, not conv, linear or attention",
					     grp->name, iap_op_name(n->kind));
		rc = weight_of(n, &w, &rows, &cols, err);
		if (rc)
			return rc;
		for (int u = 0; u < grp->n_units; u++) {
			double acc = 0.0;

			if (head) {
				/* Packed q|k|v: three blocks of D rows; the head's d_h rows in each. */
				int64_t d = rows / 3, dh = d / grp->n_units;

				for (int b = 0; b < 3; b++)
					rows_norm(w, cols, b * d + u * dh, dh, l2, &acc);
			} else {
				int64_t span = grp->unit_size;

				if ((int64_t)grp->n_units * span != rows)
					return iap_error_set(err, IAP_ESHAPE,
							     "magnitude: '%s' has %d units of %d, weight has %lld rows",
							     grp->name, grp->n_units, grp->unit_size,
							     (long long)rows);
				rows_norm(w, cols, u * span, span, l2, &acc);
			}
			scores[gi][u] += (float)(l2 ? sqrt(acc) : acc);
		}
	}
	return IAP_OK;
}

static const struct iap_attribution_ops magnitude_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = IAP_ATTR_DATA_FREE,
	.create = magnitude_create,
	.destroy = magnitude_destroy,
	.score = magnitude_score,
};

static const struct iap_plugin_desc magnitude_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "magnitude",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "baseline: L1 or L2 norm of each unit's incoming weights",
	.options = magnitude_options,
	.ops.attribution = &magnitude_ops,
};

IAP_PLUGIN_DEFINE(magnitude_desc)
