/*
 * Iterative prune → rescore → prune (host/run/iterative.c) with the real
 * policy plugins on chains of linear layers and a rescoring callback that
 * plays the attribution: one step is the one-shot call exactly; N steps
 * prune exactly round(rate · total) units, each step's masks a superset of
 * the last, rescored between steps on the masked graph; rescoring changes
 * the result; the policies honour prior masks (layerwise's rounding included)
 * and refuse impossible ones; a policy that revives a unit is refused.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "iterative.h"
#include "testutil.h"

#ifndef IAP_POLICY_PLUGIN_DIR
#error "IAP_POLICY_PLUGIN_DIR must name the build tree's plugins/policies/.libs"
#endif

#define MAX_GROUPS 6
#define MAX_UNITS 48

static struct iap_registry *reg;

static struct iap_graph *chain(int n, const int *sizes)
{
	static const char *const names[] = { "a", "b", "c", "d", "e", "f" };
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(1, (const int64_t[]){ 3 }, &err);
	int prev = IAP_GRAPH_INPUT;

	assert_non_null(g);
	for (int i = 0; i < n; i++) {
		prev = iap_linear(g, names[i], prev, sizes[i], 1);
		assert_true(prev >= 0);
		assert_int_equal(iap_graph_add_units(g, prev, sizes[i], 1, -1), i);
	}
	assert_true(iap_linear(g, "fc", prev, 2, 1) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	return g;
}

struct masks {
	float scores[MAX_GROUPS][MAX_UNITS];
	uint8_t keep[MAX_GROUPS][MAX_UNITS];
	const float *srow[MAX_GROUPS];
	uint8_t *krow[MAX_GROUPS];
};

static void masks_init(struct masks *m, const struct iap_graph *g, uint64_t seed)
{
	struct iap_rng rng;

	memset(m, 0, sizeof(*m));
	iap_rng_seed(&rng, seed);
	for (int gi = 0; gi < MAX_GROUPS; gi++) {
		m->srow[gi] = m->scores[gi];
		m->krow[gi] = m->keep[gi];
		for (int u = 0; gi < g->n_groups && u < g->groups[gi].n_units; u++)
			m->scores[gi][u] = iap_rng_uniform(&rng);
	}
	memset(m->keep, 0xAA, sizeof(m->keep));
}

static struct iap_policy_input input(const struct iap_graph *g, const struct masks *m, double rate)
{
	return (struct iap_policy_input){
		.graph = g, .scores = m->srow, .rate = rate, .max_layer_rate = 0.9, .min_units = 1,
	};
}

static int pruned(const struct iap_graph *g, const uint8_t (*keep)[MAX_UNITS])
{
	int n = 0;

	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; u < g->groups[gi].n_units; u++)
			n += !keep[gi][u];
	return n;
}

/*
 * The rescoring callback: fresh seeded scores (a different ranking every
 * call, as relevance on a changed model has), zero for masked units as LRP
 * gives them; records what the graph's masks prune at each call.
 */
struct rescorer {
	uint64_t seed;
	int calls;
	int pruned_at[8];
	uint8_t seen[8][MAX_GROUPS][MAX_UNITS];
	int reverse;         /* scores rank opposite to the first step's */
	const struct masks *first;
};

static int rescore(void *user, struct iap_graph *g, float *const *scores, struct iap_error *err)
{
	struct rescorer *rs = user;
	struct iap_rng rng;
	int n = 0;

	(void)err;
	iap_rng_seed(&rng, rs->seed + 977u * (uint64_t)rs->calls);
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];

		for (int u = 0; u < grp->n_units; u++) {
			int off = grp->mask && !grp->mask[u];

			if (rs->calls < 8)
				rs->seen[rs->calls][gi][u] = (uint8_t)!off;
			n += off;
			/* Reversed: the pruned units rank highest now (a policy must still keep them off). */
			scores[gi][u] = rs->reverse ? 2.0f - rs->first->scores[gi][u]
				      : off	    ? 0.0f
						    : 0.01f + iap_rng_uniform(&rng);
		}
	}
	if (rs->calls < 8)
		rs->pruned_at[rs->calls] = n;
	rs->calls++;
	return IAP_OK;
}

static const struct iap_plugin *policy(const char *name)
{
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_POLICY, name);

	assert_non_null(p);
	return p;
}

static struct iap_opts *opts_of(const struct iap_plugin *p, const char *normalize)
{
	struct iap_opts *o;
	struct iap_error err;

	assert_int_equal(iap_opts_defaults(p->desc->options, &o, &err), IAP_OK);
	if (normalize)
		assert_int_equal(iap_opts_set(o, "policy", "normalize", normalize, &err), IAP_OK);
	return o;
}

/* One step is one plain policy call: the same masks byte for byte, and no rescoring. */
static void test_one_step_is_one_shot(void **state)
{
	static const int sizes[] = { 7, 16, 11, 30 };
	static const char *const names[] = { "global", "layerwise" };
	static const double rates[] = { 0.0, 0.13, 0.3, 0.5, 0.77 };
	struct iap_graph *g = chain(4, sizes);

	(void)state;
	for (int p = 0; p < 2; p++)
		for (int norm = 0; norm < 2; norm++)
			for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
				const struct iap_plugin *pl = policy(names[p]);
				struct iap_opts *o = opts_of(pl, norm ? "l2" : NULL);
				struct masks a, b;
				struct rescorer rs = { .seed = 5 };
				struct iap_policy_input in;
				struct iap_error err;

				masks_init(&a, g, 40 + k);
				masks_init(&b, g, 40 + k);
				in = input(g, &a, rates[k]);
				assert_int_equal(pl->desc->ops.policy->mask(o, &in, a.krow, &err), IAP_OK);
				in = input(g, &b, rates[k]);
				assert_int_equal(iap_prune_iterative(pl, o, &in, g, 1, rescore, &rs, b.krow, &err),
						 IAP_OK);
				assert_memory_equal(a.keep, b.keep, sizeof(a.keep));
				assert_int_equal(rs.calls, 0);
				iap_opts_free(o);
			}
	iap_graph_free(g);
}

/*
 * N steps reach exactly the unit count one call would, through the
 * intermediate rates, with every step's masks kept by the next, and the
 * graph's masks cleared at the end.
 */
static void test_steps_exact_count(void **state)
{
	static const int sizes[] = { 7, 16, 11, 30, 5 };
	static const char *const names[] = { "global", "layerwise" };
	static const double rates[] = { 0.1, 0.25, 0.4, 0.55, 0.7 };
	struct iap_graph *g = chain(5, sizes);
	int total = 7 + 16 + 11 + 30 + 5;

	(void)state;
	for (int p = 0; p < 2; p++)
		for (int steps = 2; steps <= 5; steps++)
			for (size_t k = 0; k < sizeof(rates) / sizeof(rates[0]); k++) {
				const struct iap_plugin *pl = policy(names[p]);
				struct iap_opts *o = opts_of(pl, p ? NULL : "max");
				struct masks m, one;
				struct rescorer rs = { .seed = 900 + (uint64_t)steps };
				struct iap_policy_input in;
				struct iap_error err;

				masks_init(&m, g, 7 * k + (uint64_t)steps);
				masks_init(&one, g, 7 * k + (uint64_t)steps);
				in = input(g, &m, rates[k]);
				if (iap_prune_iterative(pl, o, &in, g, steps, rescore, &rs, m.krow, &err))
					fail_msg("%s, %d steps, rate %g: %s", names[p], steps, rates[k], err.msg);
				in = input(g, &one, rates[k]);
				assert_int_equal(pl->desc->ops.policy->mask(o, &in, one.krow, &err), IAP_OK);
				/* No cap binds at these rates: exactly round(rate * total), as in one shot. */
				assert_int_equal(pruned(g, (const uint8_t(*)[MAX_UNITS])m.keep), (int)lround(rates[k] * total));
				assert_int_equal(pruned(g, (const uint8_t(*)[MAX_UNITS])m.keep),
						 pruned(g, (const uint8_t(*)[MAX_UNITS])one.keep));
				assert_int_equal(rs.calls, steps - 1);
				for (int c = 0; c < rs.calls; c++) {
					/* The masked graph of step c + 1 prunes its intermediate count. */
					assert_int_equal(rs.pruned_at[c],
							 (int)lround(rates[k] * (c + 1) / steps * total));
					for (int gi = 0; gi < g->n_groups; gi++)
						for (int u = 0; u < sizes[gi]; u++) {
							if (!rs.seen[c][gi][u])
								assert_int_equal(m.keep[gi][u], 0);
							if (c + 1 < rs.calls && !rs.seen[c][gi][u])
								assert_int_equal(rs.seen[c + 1][gi][u], 0);
						}
				}
				for (int gi = 0; gi < g->n_groups; gi++)
					assert_null(g->groups[gi].mask);
				iap_opts_free(o);
			}
	iap_graph_free(g);
}

/* Rescoring matters: with the ranking reversed after the first step, the masks differ from one shot. */
static void test_rescoring_changes_masks(void **state)
{
	static const int sizes[] = { 20, 20 };
	struct iap_graph *g = chain(2, sizes);
	const struct iap_plugin *pl = policy("global");
	struct iap_opts *o = opts_of(pl, NULL);
	struct masks m, one;
	struct rescorer rs = { .reverse = 1 };
	struct iap_policy_input in;
	struct iap_error err;
	int differ = 0;

	(void)state;
	masks_init(&m, g, 3);
	masks_init(&one, g, 3);
	rs.first = &m;
	in = input(g, &m, 0.5);
	assert_int_equal(iap_prune_iterative(pl, o, &in, g, 2, rescore, &rs, m.krow, &err), IAP_OK);
	in = input(g, &one, 0.5);
	assert_int_equal(pl->desc->ops.policy->mask(o, &in, one.krow, &err), IAP_OK);
	assert_int_equal(pruned(g, (const uint8_t(*)[MAX_UNITS])m.keep), 20);
	/*
	 * Step 1 takes the 10 lowest; step 2, ranking the rest in reverse, takes
	 * the 10 highest: one shot takes the 20 lowest, so 10 units differ.
	 */
	for (int gi = 0; gi < 2; gi++)
		for (int u = 0; u < 20; u++)
			differ += m.keep[gi][u] != one.keep[gi][u];
	assert_int_equal(differ, 20);
	iap_opts_free(o);
	iap_graph_free(g);
}

/*
 * Layerwise with a prior mask that holds a lower rate's ceiling: 3 layers of
 * 10 at rate 0.05 prune 2 units (the two largest remainders, layers a and b);
 * at rate 0.1 every layer's floor is 1 and the total 3: the prior units stay
 * and c takes one. Then rate 0.085 (total 3 = round(2.55), floors 0): a
 * and b keep their prior unit, c gets the remaining one. Then layers of 10,
 * 10 and 30 where the prior ceilings would overshoot.
 */
static void test_layerwise_prior(void **state)
{
	static const int sizes[] = { 10, 10, 10 };
	struct iap_graph *g = chain(3, sizes);
	const struct iap_plugin *pl = policy("layerwise");
	struct iap_opts *o = opts_of(pl, NULL);
	struct masks m;
	uint8_t prior[MAX_GROUPS][MAX_UNITS];
	const uint8_t *prow[MAX_GROUPS];
	struct iap_policy_input in;
	struct iap_error err;

	(void)state;
	masks_init(&m, g, 8);
	in = input(g, &m, 0.05);
	assert_int_equal(pl->desc->ops.policy->mask(o, &in, m.krow, &err), IAP_OK);
	assert_int_equal(pruned(g, (const uint8_t(*)[MAX_UNITS])m.keep), 2);
	memcpy(prior, m.keep, sizeof(prior));
	for (int gi = 0; gi < MAX_GROUPS; gi++)
		prow[gi] = prior[gi];
	/* New scores rank the prior units highest: they must stay pruned anyway. */
	for (int gi = 0; gi < 3; gi++)
		for (int u = 0; u < 10; u++)
			m.scores[gi][u] = prior[gi][u] ? (float)u * 0.01f : 5.0f;
	for (int t = 0; t < 2; t++) {
		in = input(g, &m, t ? 0.085 : 0.1);
		in.prior_keep = prow;
		assert_int_equal(pl->desc->ops.policy->mask(o, &in, m.krow, &err), IAP_OK);
		assert_int_equal(pruned(g, (const uint8_t(*)[MAX_UNITS])m.keep), 3);
		for (int gi = 0; gi < 3; gi++) {
			int n = 0;

			for (int u = 0; u < 10; u++) {
				if (!prior[gi][u])
					assert_int_equal(m.keep[gi][u], 0);
				n += !m.keep[gi][u];
			}
			assert_int_equal(n, 1);
		}
		/* c's new unit is its lowest-scoring one, unit 0. */
		assert_int_equal(m.keep[2][0], 0);
	}
	/* A prior mask above the target, or in an ignored group, is refused. */
	in = input(g, &m, 0.03);
	in.prior_keep = prow;
	assert_int_equal(pl->desc->ops.policy->mask(o, &in, m.krow, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "more than rate"));
	{
		uint8_t ign[3] = { 1, 0, 0 };

		in = input(g, &m, 0.3);
		in.prior_keep = prow;
		in.ignore = ign;
		assert_int_equal(policy("global")->desc->ops.policy->mask(o, &in, m.krow, &err), IAP_EINVAL);
		assert_non_null(strstr(err.msg, "ignored group 'a'"));
	}
	iap_graph_free(g);
	{
		/*
		 * Rate 0.05 on 10/10/30: floors 0/0/1, total round(2.5) = 3, so a and
		 * b take the ceilings. Rate 0.0667: floors 0/0/2 and the total
		 * round(3.33) = 3, but a and b keep their prior unit: c, with the
		 * smallest remainder, gives one back (1 + 1 + 1, not 1 + 1 + 2).
		 */
		static const int sz[] = { 10, 10, 30 };

		g = chain(3, sz);
		masks_init(&m, g, 9);
		in = input(g, &m, 0.05);
		assert_int_equal(pl->desc->ops.policy->mask(o, &in, m.krow, &err), IAP_OK);
		memcpy(prior, m.keep, sizeof(prior));
		assert_int_equal(pruned(g, (const uint8_t(*)[MAX_UNITS])prior), 3);
		assert_int_equal(prior[0][0] & prior[0][1] & prior[0][2] & prior[0][3] & prior[0][4] & prior[0][5] &
				 prior[0][6] & prior[0][7] & prior[0][8] & prior[0][9], 0);
		in = input(g, &m, 0.0667);
		in.prior_keep = prow;
		assert_int_equal(pl->desc->ops.policy->mask(o, &in, m.krow, &err), IAP_OK);
		assert_int_equal(pruned(g, (const uint8_t(*)[MAX_UNITS])m.keep), 3);
		for (int gi = 0; gi < 3; gi++) {
			int n = 0;

			for (int u = 0; u < sz[gi]; u++) {
				if (!prior[gi][u])
					assert_int_equal(m.keep[gi][u], 0);
				n += !m.keep[gi][u];
			}
			assert_int_equal(n, 1);
		}
	}
	iap_opts_free(o);
	iap_graph_free(g);
}

/* A policy that ignores prior masks (built for ABI 1.0) is caught when it brings a unit back. */
static int forgetful_mask(const struct iap_opts *opts, const struct iap_policy_input *in, uint8_t *const *keep,
			  struct iap_error *err)
{
	(void)opts;
	(void)err;
	/* Prunes the lowest-scoring unit of the first group, whatever came before. */
	int low = 0;

	for (int u = 0; u < in->graph->groups[0].n_units; u++) {
		keep[0][u] = 1;
		if (in->scores[0][u] < in->scores[0][low])
			low = u;
	}
	for (int gi = 1; gi < in->graph->n_groups; gi++)
		memset(keep[gi], 1, (size_t)in->graph->groups[gi].n_units);
	keep[0][low] = 0;
	return IAP_OK;
}

static void test_revival_refused(void **state)
{
	static const int sizes[] = { 6, 6 };
	static const struct iap_policy_ops ops = { .size = sizeof(ops), .mask = forgetful_mask };
	static const struct iap_plugin_desc desc = {
		.abi_major = 1, .abi_minor = 0, .size = sizeof(desc), .kind = IAP_PLUGIN_POLICY,
		.name = "forgetful", .version = "0", .ops.policy = &ops,
	};
	const struct iap_plugin pl = { .desc = &desc, .path = (char *)"test" };
	struct iap_graph *g = chain(2, sizes);
	struct masks m;
	struct rescorer rs = { .reverse = 1 };
	struct iap_policy_input in;
	struct iap_error err;
	char want[64];

	(void)state;
	masks_init(&m, g, 1);
	rs.first = &m;
	in = input(g, &m, 0.2);
	assert_int_equal(iap_prune_iterative(&pl, NULL, &in, g, 2, rescore, &rs, m.krow, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "brought back unit"));
	assert_non_null(strstr(err.msg, "ABI 1.0"));
	/* The host's ABI comes from the macros, not a literal that outlives a bump. */
	snprintf(want, sizeof(want), "plugin ABI %d.%d)", IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
	assert_non_null(strstr(err.msg, want));
	assert_null(g->groups[0].mask);
	iap_graph_free(g);
}

static int setup(void **state)
{
	static const char *const names[] = { "global", "layerwise" };

	(void)state;
	reg = tu_registry_load(IAP_POLICY_PLUGIN_DIR, names, 2);
	return reg ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	iap_registry_free(reg);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_step_is_one_shot),
		cmocka_unit_test(test_steps_exact_count),
		cmocka_unit_test(test_rescoring_changes_masks),
		cmocka_unit_test(test_layerwise_prior),
		cmocka_unit_test(test_revival_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
