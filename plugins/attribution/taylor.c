/*
 * The "taylor" attribution plugin: first-order Taylor importance (Molchanov
 * et al. 2017), the activation times its gradient at every unit group's node,
 * a ⊙ ∂F/∂a, with F the target logit (one-hot seed) or the logit-scaled seed.
 * The product is reduced like every other relevance (iap_unit_accumulate):
 * by default |Σ_positions a·g| per sample, summed over samples — Molchanov's
 * criterion up to his division by the position count; abs "before" gives
 * Σ |a·g|. One gradient walk per batch, on the forward the host already ran.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>
#include <iaprune/graph.h>
#include <iaprune/threads.h>
#include <iaprune/plugin.h>

static const struct iap_option taylor_options[] = {
	IAP_ATTR_COMMON_OPTIONS,
	{ .name = NULL },
};

struct taylor_state {
	struct iap_score_opts so;
	struct iap_tensor seed;
	float *prod;            /* a ⊙ g of one group (grown to the largest) */
	int64_t cap;
	float *const *scores;   /* of the current call */
	iap_unit_relevance_fn fn; /* unit_relevance(): hand a ⊙ g over instead */
	void *fn_user;
	struct iap_error *err;
};

static int taylor_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
			 struct iap_error *err)
{
	struct taylor_state *st = calloc(1, sizeof(*st));

	(void)g;
	if (!st)
		return iap_error_set(err, IAP_ENOMEM, "taylor: out of memory");
	iap_score_opts_from(opts, &st->so);
	*state = st;
	return IAP_OK;
}

static void taylor_destroy(void *state)
{
	struct taylor_state *st = state;

	if (!st)
		return;
	iap_tensor_free(&st->seed);
	iap_free(st->prod);
	free(st);
}

/* Walk hook: at a unit group's node, score a ⊙ (what arrived from the output). */
static int taylor_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		       const struct iap_tensor *r_out)
{
	struct taylor_state *st = user;
	int64_t n = iap_tensor_numel(r_out);
	struct iap_tensor view;

	if (node->unit_group < 0)
		return 0;
	if (n > st->cap) {
		iap_free(st->prod);
		st->prod = iap_alloc_floats((size_t)n);
		st->cap = st->prod ? n : 0;
		if (!st->prod)
			return iap_error_set(st->err, IAP_ENOMEM, "taylor: out of memory");
	}
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)(n)))
	for (int64_t i = 0; i < n; i++)
		st->prod[i] = node->out.data[i] * r_out->data[i];
	view = *r_out;
	view.data = st->prod;
	view.owns = 0;
	if (st->fn)
		return st->fn(st->fn_user, node->unit_group, &view);
	iap_unit_accumulate(iap_graph_group(g, node->unit_group), &view, st->so.abs,
			    st->scores[node->unit_group]);
	return 0;
}

static int taylor_score(void *state, struct iap_graph *g, const struct iap_tensor *x,
			const int *targets, float *const *scores, struct iap_error *err)
{
	struct taylor_state *st = state;
	const struct iap_tensor *logits = iap_graph_output(g);
	struct iap_walk_opts wo = { .hook = taylor_hook, .hook_user = st };
	int rc;

	if (!logits || logits->shape[0] != x->shape[0])
		return iap_error_set(err, IAP_EINVAL, "taylor: the graph was not run on this batch");
	rc = iap_seed_target(logits, targets, &st->so, &st->seed, err);
	if (rc)
		return rc;
	st->scores = scores;
	st->err = err;
	rc = iap_graph_backward(g, iap_ruleset_gradient(), &st->seed, &wo, err);
	st->scores = NULL;
	st->err = NULL;
	return rc;
}

/* a ⊙ ∂F/∂a of every group, unreduced, to the host (ABI 1.1), in walk order. */
static int taylor_unit_relevance(void *state, struct iap_graph *g, const struct iap_tensor *x,
				 const int *targets, iap_unit_relevance_fn fn, void *user,
				 struct iap_error *err)
{
	struct taylor_state *st = state;
	int rc;

	st->fn = fn;
	st->fn_user = user;
	rc = taylor_score(state, g, x, targets, NULL, err);
	st->fn = NULL;
	st->fn_user = NULL;
	return rc;
}

static const struct iap_attribution_ops taylor_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = 0,
	.create = taylor_create,
	.destroy = taylor_destroy,
	.score = taylor_score,
	.unit_relevance = taylor_unit_relevance,
};

static const struct iap_plugin_desc taylor_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "taylor",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "baseline: first-order Taylor criterion |activation x gradient| per unit",
	.options = taylor_options,
	.ops.attribution = &taylor_ops,
};

IAP_PLUGIN_DEFINE(taylor_desc)
