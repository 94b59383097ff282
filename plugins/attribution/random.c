/*
 * The "random" attribution plugin: every unit gets a score drawn uniformly
 * from [0, 1) by the project's seeded generator, groups in graph order and
 * units in index order. The generator is re-seeded on every call, so the
 * same seed gives the same scores however often (and on whatever data) the
 * host calls; no data is needed.
 */
#include "config.h"

#include <stdlib.h>

#include <iaprune/attribute.h>
#include <iaprune/graph.h>
#include <iaprune/plugin.h>
#include <iaprune/rng.h>

static const struct iap_option random_options[] = {
	{ .name = "seed", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0,
	  .max = 2147483647.0, .help = "random seed of the scores" },
	/* No common options: random scores have no relevance to reduce or target to seed. */
	{ .name = NULL },
};

struct random_state {
	uint64_t seed;
};

static int random_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
			 struct iap_error *err)
{
	struct random_state *st = malloc(sizeof(*st));

	(void)g;
	if (!st)
		return iap_error_set(err, IAP_ENOMEM, "random: out of memory");
	st->seed = (uint64_t)iap_opts_int(opts, "seed");
	*state = st;
	return IAP_OK;
}

static void random_destroy(void *state)
{
	free(state);
}

static int random_score(void *state, struct iap_graph *g, const struct iap_tensor *x,
			const int *targets, float *const *scores, struct iap_error *err)
{
	const struct random_state *st = state;
	struct iap_rng rng;

	(void)x;
	(void)targets;
	(void)err;
	iap_rng_seed(&rng, st->seed);
	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; u < iap_graph_group(g, gi)->n_units; u++)
			scores[gi][u] += iap_rng_uniform(&rng);
	return IAP_OK;
}

static const struct iap_attribution_ops random_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.flags = IAP_ATTR_DATA_FREE,
	.create = random_create,
	.destroy = random_destroy,
	.score = random_score,
};

static const struct iap_plugin_desc random_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "random",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "baseline: seeded uniform random scores",
	.options = random_options,
	.ops.attribution = &random_ops,
};

IAP_PLUGIN_DEFINE(random_desc)
