/*
 * The pruning policies (global, layerwise) loaded from the build tree, on
 * chains of linear layers whose units carry hand-chosen or seeded scores:
 * exact counts at several rates, per-layer caps and min_units, ignore by
 * flag and by glob, normalisation changing the ranking, coupled groups
 * masked identically and counted per member (with the documented bound),
 * and layerwise's equal fraction per layer.
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

#include "testutil.h"

#ifndef IAP_POLICY_PLUGIN_DIR
#error "IAP_POLICY_PLUGIN_DIR must name the build tree's plugins/policies/.libs"
#endif

#define MAX_GROUPS 8
#define MAX_UNITS 64

static struct iap_registry *reg;

/* A chain of linear layers "<names[i]>" with sizes[i] units each (coupling ids from couplings, or -1). */
static struct iap_graph *chain(int n, const int *sizes, const int *couplings, const char *const *names)
{
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(1, (const int64_t[]){ 3 }, &err);
	int prev = IAP_GRAPH_INPUT;

	assert_non_null(g);
	for (int i = 0; i < n; i++) {
		prev = iap_linear(g, names[i], prev, sizes[i], 1);
		assert_true(prev >= 0);
		assert_int_equal(iap_graph_add_units(g, prev, sizes[i], 1, couplings ? couplings[i] : -1), i);
	}
	/* The classifier's outputs are never units. */
	assert_true(iap_linear(g, "fc", prev, 2, 1) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	return g;
}

static const char *const abcd[] = { "a", "b", "c", "d", "e", "f" };

struct run {
	float scores[MAX_GROUPS][MAX_UNITS];
	uint8_t keep[MAX_GROUPS][MAX_UNITS];
	uint8_t ignore[MAX_GROUPS];
	double max_layer_rate;
	int min_units;
};

static void run_defaults(struct run *r)
{
	memset(r, 0, sizeof(*r));
	r->max_layer_rate = 1.0;
	r->min_units = 1;
}

static int policy(const char *name, const char *const *kv, const struct iap_graph *g, struct run *r,
		  double rate, struct iap_error *err)
{
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_POLICY, name);
	const float *scores[MAX_GROUPS];
	uint8_t *keep[MAX_GROUPS];
	struct iap_policy_input in = {
		.graph = g, .scores = scores, .rate = rate, .max_layer_rate = r->max_layer_rate,
		.min_units = r->min_units, .ignore = r->ignore,
	};
	struct iap_opts *o;
	int rc;

	assert_non_null(p);
	for (int i = 0; i < MAX_GROUPS; i++) {
		scores[i] = r->scores[i];
		keep[i] = r->keep[i];
	}
	/* Garbage in keep: the policy must write every entry. */
	memset(r->keep, 0xAA, sizeof(r->keep));
	assert_int_equal(iap_opts_defaults(p->desc->options, &o, err), IAP_OK);
	for (int i = 0; kv && kv[i]; i += 2)
		assert_int_equal(iap_opts_set(o, "policy", kv[i], kv[i + 1], err), IAP_OK);
	rc = p->desc->ops.policy->mask(o, &in, keep, err);
	iap_opts_free(o);
	if (rc == IAP_OK)
		for (int gi = 0; gi < g->n_groups; gi++)
			for (int u = 0; u < g->groups[gi].n_units; u++)
				assert_true(r->keep[gi][u] == 0 || r->keep[gi][u] == 1);
	return rc;
}

static int pruned_in(const struct iap_graph *g, const struct run *r, int gi)
{
	int n = 0;

	for (int u = 0; u < g->groups[gi].n_units; u++)
		n += !r->keep[gi][u];
	return n;
}

static int pruned_total(const struct iap_graph *g, const struct run *r)
{
	int n = 0;

	for (int gi = 0; gi < g->n_groups; gi++)
		n += pruned_in(g, r, gi);
	return n;
}

/* Distinct seeded scores in [0, 1). */
static void random_scores(const struct iap_graph *g, struct run *r, uint64_t seed)
{
	struct iap_rng rng;

	iap_rng_seed(&rng, seed);
	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; u < g->groups[gi].n_units; u++)
			r->scores[gi][u] = iap_rng_uniform(&rng);
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

/* ---- exact counts -------------------------------------------------------------------- */

static const int four[] = { 10, 6, 4, 20 }; /* 40 units */
static const double rates[] = { 0.0, 0.15, 0.3, 0.5, 0.7, 0.9 };
static const int counts[] = { 0, 6, 12, 20, 28, 36 };

/*
 * Global: round(rate * 40) units at every rate, and they are the lowest
 * except where a layer is at its cap: no kept unit of a layer with room
 * left scores below a pruned unit. At 0.9, 36 is exactly what min_units = 1
 * leaves prunable, so every layer keeps just its best unit.
 */
static void test_global_exact_counts(void **state)
{
	struct iap_graph *g = chain(4, four, NULL, abcd);
	struct iap_error err;
	struct run r;

	(void)state;
	run_defaults(&r);
	random_scores(g, &r, 1);
	for (int i = 0; i < 6; i++) {
		float max_pruned = -1, min_kept = 2;
		int capped = 0;

		assert_int_equal(policy("global", NULL, g, &r, rates[i], &err), IAP_OK);
		assert_int_equal(pruned_total(g, &r), counts[i]);
		for (int gi = 0; gi < 4; gi++) {
			int full = pruned_in(g, &r, gi) == four[gi] - 1;

			capped += full;
			for (int u = 0; u < four[gi]; u++) {
				if (r.keep[gi][u] && !full && r.scores[gi][u] < min_kept)
					min_kept = r.scores[gi][u];
				if (!r.keep[gi][u] && r.scores[gi][u] > max_pruned)
					max_pruned = r.scores[gi][u];
			}
		}
		assert_true(max_pruned < min_kept);
		/* The invariant is not vacuous below 0.9: some layer still has room. */
		if (i < 5)
			assert_true(capped < 4);
	}
	for (int gi = 0; gi < 4; gi++) {
		int best = 0;

		for (int u = 1; u < four[gi]; u++)
			if (r.scores[gi][u] > r.scores[gi][best])
				best = u;
		assert_int_equal(pruned_in(g, &r, gi), four[gi] - 1);
		assert_int_equal(r.keep[gi][best], 1);
	}
	iap_graph_free(g);
}

/*
 * Layerwise at rate 0.3: shares 3, 1.8, 1.2, 6 → floors 3, 1, 1, 6 (11), and
 * the one left for round(12) goes to the largest remainder (1.8): 3, 2, 1, 6.
 * At 0.5 every share is whole. Within a layer the lowest units go.
 */
static void test_layerwise_same_fraction(void **state)
{
	static const int at30[] = { 3, 2, 1, 6 }, at50[] = { 5, 3, 2, 10 };
	struct iap_graph *g = chain(4, four, NULL, abcd);
	struct iap_error err;
	struct run r;

	(void)state;
	run_defaults(&r);
	random_scores(g, &r, 2);
	assert_int_equal(policy("layerwise", NULL, g, &r, 0.3, &err), IAP_OK);
	for (int gi = 0; gi < 4; gi++)
		assert_int_equal(pruned_in(g, &r, gi), at30[gi]);
	assert_int_equal(policy("layerwise", NULL, g, &r, 0.5, &err), IAP_OK);
	for (int gi = 0; gi < 4; gi++) {
		float max_pruned = -1, min_kept = 2;

		assert_int_equal(pruned_in(g, &r, gi), at50[gi]);
		for (int u = 0; u < four[gi]; u++) {
			if (r.keep[gi][u] && r.scores[gi][u] < min_kept)
				min_kept = r.scores[gi][u];
			if (!r.keep[gi][u] && r.scores[gi][u] > max_pruned)
				max_pruned = r.scores[gi][u];
		}
		assert_true(max_pruned < min_kept);
	}
	/*
	 * The network total is round(rate * 40) while no cap binds, each layer
	 * within one unit of rate * n. At 0.9 (shares 9, 5.4, 3.6, 18) b and c
	 * sit at their min_units caps (5, 3), so the ceilings cannot go there and
	 * the total is 35, not 36: layerwise never moves a cap's shortfall.
	 */
	for (int i = 0; i < 6; i++) {
		assert_int_equal(policy("layerwise", NULL, g, &r, rates[i], &err), IAP_OK);
		assert_int_equal(pruned_total(g, &r), i < 5 ? counts[i] : 35);
		for (int gi = 0; gi < 4; gi++) {
			double share = rates[i] * four[gi];

			assert_true(pruned_in(g, &r, gi) >= (int)floor(share + 1e-9));
			assert_true(pruned_in(g, &r, gi) <= (int)floor(share + 1e-9) + 1);
		}
	}
	iap_graph_free(g);
}

/* ---- caps ---------------------------------------------------------------------------------- */

/*
 * Layer a holds the 10 lowest scores. Uncapped, global at 0.3 (12 units)
 * would take 9 of them (min_units 1 keeps one); max_layer_rate 0.5 stops a
 * at 5 and the other layers' lowest make up the 12; min_units 8 stops a at 2.
 * When caps bind everywhere the total falls short of the target.
 */
static void test_caps_and_min_units(void **state)
{
	struct iap_graph *g = chain(4, four, NULL, abcd);
	struct iap_error err;
	struct run r;

	(void)state;
	run_defaults(&r);
	random_scores(g, &r, 3);
	for (int u = 0; u < 10; u++)
		r.scores[0][u] = -1.0f + 0.01f * (float)u;
	assert_int_equal(policy("global", NULL, g, &r, 0.3, &err), IAP_OK);
	assert_int_equal(pruned_in(g, &r, 0), 9);
	assert_int_equal(r.keep[0][9], 1);
	assert_int_equal(pruned_total(g, &r), 12);

	r.max_layer_rate = 0.5;
	assert_int_equal(policy("global", NULL, g, &r, 0.3, &err), IAP_OK);
	assert_int_equal(pruned_in(g, &r, 0), 5);
	for (int u = 0; u < 10; u++)
		assert_int_equal(r.keep[0][u], u >= 5);
	assert_int_equal(pruned_total(g, &r), 12);

	r.max_layer_rate = 1.0;
	r.min_units = 8;
	assert_int_equal(policy("global", NULL, g, &r, 0.3, &err), IAP_OK);
	assert_int_equal(pruned_in(g, &r, 0), 2);
	assert_int_equal(pruned_total(g, &r), 12);
	/* Layer c has 4 units: min_units 8 protects all of it. */
	assert_int_equal(pruned_in(g, &r, 2), 0);

	/* Caps everywhere: 0.9 wants 36, max_layer_rate 0.5 allows 5 + 3 + 2 + 10 = 20. */
	r.min_units = 1;
	r.max_layer_rate = 0.5;
	assert_int_equal(policy("global", NULL, g, &r, 0.9, &err), IAP_OK);
	assert_int_equal(pruned_total(g, &r), 20);
	assert_int_equal(policy("layerwise", NULL, g, &r, 0.9, &err), IAP_OK);
	for (int gi = 0; gi < 4; gi++)
		assert_int_equal(pruned_in(g, &r, gi), four[gi] / 2);
	/* Layerwise honours min_units too: layer c (4 units) keeps 3 at rate 0.5 with min_units 3. */
	r.max_layer_rate = 1.0;
	r.min_units = 3;
	assert_int_equal(policy("layerwise", NULL, g, &r, 0.5, &err), IAP_OK);
	assert_int_equal(pruned_in(g, &r, 2), 1);
	assert_int_equal(pruned_in(g, &r, 0), 5);
	iap_graph_free(g);
}

/* ---- ignore ----------------------------------------------------------------------------------- */

static void test_ignore_flag_and_glob(void **state)
{
	static const char *const names[] = { "features.0", "features.3", "classifier.0", "classifier.3" };
	static const char *const glob[] = { "ignore", "classifier.*", NULL };
	static const char *const glob2[] = { "ignore", " nothing , features.3 ", NULL };
	static const char *const pols[] = { "global", "layerwise" };
	struct iap_graph *g = chain(4, four, NULL, names);
	struct iap_error err;
	struct run r;

	(void)state;
	for (int p = 0; p < 2; p++) {
		run_defaults(&r);
		random_scores(g, &r, 4);
		/* Flag: group 1 (6 units) out; 34 left, round(0.5 * 34) = 17. */
		r.ignore[1] = 1;
		assert_int_equal(policy(pols[p], NULL, g, &r, 0.5, &err), IAP_OK);
		assert_int_equal(pruned_in(g, &r, 1), 0);
		assert_int_equal(pruned_total(g, &r), 17);
		/* Glob: classifier.* (4 + 20 units) out, plus the flag: 10 left → 5, all from features.0. */
		assert_int_equal(policy(pols[p], glob, g, &r, 0.5, &err), IAP_OK);
		assert_int_equal(pruned_in(g, &r, 0), 5);
		assert_int_equal(pruned_total(g, &r), 5);
		/* Glob alone, with blanks and a pattern that matches nothing: 34 left → 17, none in features.3. */
		r.ignore[1] = 0;
		assert_int_equal(policy(pols[p], glob2, g, &r, 0.5, &err), IAP_OK);
		assert_int_equal(pruned_in(g, &r, 1), 0);
		assert_int_equal(pruned_total(g, &r), 17);
	}
	iap_graph_free(g);
}

/* ---- normalisation ------------------------------------------------------------------------------ */

/*
 * Four layers, one unit to prune (round(0.1 * 11) = 1). Normalised scores:
 *   none: a [5 9]        b [8 5 8]          c [4 3]      d [7 7 6 8]        → c.1 (3)
 *   l1:   a [.357 .643]  b [.381 .238 .381] c [.571 .429] d [.25 .25 .214 .286] → d.2
 *   l2:   a [.486 .874]  b [.647 .404 .647] c [.8 .6]    d [.498 .498 .426 .569] → b.1
 *   max:  a [.556 1]     b [1 .625 1]       c [1 .75]    d [.875 .875 .75 1]   → a.0
 */
static void test_normalisation_changes_ranking(void **state)
{
	static const int sizes[] = { 2, 3, 2, 4 };
	static const float s[4][4] = { { 5, 9 }, { 8, 5, 8 }, { 4, 3 }, { 7, 7, 6, 8 } };
	static const char *const norms[] = { "none", "l1", "l2", "max" };
	static const int want_group[] = { 2, 3, 1, 0 }, want_unit[] = { 1, 2, 1, 0 };
	struct iap_graph *g = chain(4, sizes, NULL, abcd);
	struct iap_error err;
	struct run r;

	(void)state;
	run_defaults(&r);
	for (int gi = 0; gi < 4; gi++)
		memcpy(r.scores[gi], s[gi], sizeof(s[gi]));
	for (int i = 0; i < 4; i++) {
		const char *kv[] = { "normalize", norms[i], NULL };

		assert_int_equal(policy("global", kv, g, &r, 0.1, &err), IAP_OK);
		assert_int_equal(pruned_total(g, &r), 1);
		assert_int_equal(r.keep[want_group[i]][want_unit[i]], 0);
	}
	iap_graph_free(g);
}

/* Equal scores: the lower group, then the lower unit goes first. */
static void test_ties_deterministic(void **state)
{
	static const int sizes[] = { 4, 4 };
	struct iap_graph *g = chain(2, sizes, NULL, abcd);
	struct iap_error err;
	struct run r;

	(void)state;
	run_defaults(&r);
	for (int gi = 0; gi < 2; gi++)
		for (int u = 0; u < 4; u++)
			r.scores[gi][u] = 1.0f;
	/* round(0.375 * 8) = 3: a.0, a.1, a.2 (a keeps one). */
	assert_int_equal(policy("global", NULL, g, &r, 0.375, &err), IAP_OK);
	assert_int_equal(r.keep[0][0] + r.keep[0][1] + r.keep[0][2], 0);
	assert_int_equal(r.keep[0][3], 1);
	assert_int_equal(pruned_in(g, &r, 1), 0);
	/* A fourth: a is at min_units, so b.0. */
	assert_int_equal(policy("global", NULL, g, &r, 0.5, &err), IAP_OK);
	assert_int_equal(r.keep[1][0], 0);
	assert_int_equal(pruned_in(g, &r, 1), 1);
	iap_graph_free(g);
}

/* ---- coupled groups --------------------------------------------------------------------------------- */

/*
 * a (6 units) and b, c, d coupled (4 shared units, 3 members: each coupled
 * unit counts 3, total 6 + 12 = 18). Coupled sums: b [1 5 1 9] + c [1 1 6 0]
 * + d [0 1 1 0] = [2 7 8 9]; a = [3 4 2.5 10 11 12]. Ranking: cu0 (2), a2,
 * a0, a1, cu1 (7), cu2 (8), cu3 (9), a3, ...
 */
static void coupled_case(struct iap_graph **g, struct run *r)
{
	static const int sizes[] = { 6, 4, 4, 4 }, coupling[] = { -1, 0, 0, 0 };
	static const float s[4][6] = {
		{ 3, 4, 2.5f, 10, 11, 12 }, { 1, 5, 1, 9 }, { 1, 1, 6, 0 }, { 0, 1, 1, 0 },
	};

	*g = chain(4, sizes, coupling, abcd);
	run_defaults(r);
	for (int gi = 0; gi < 4; gi++)
		memcpy(r->scores[gi], s[gi], sizeof(s[gi]));
}

static void assert_members_equal(const struct run *r)
{
	assert_memory_equal(r->keep[1], r->keep[2], 4);
	assert_memory_equal(r->keep[1], r->keep[3], 4);
}

static void test_coupled_global(void **state)
{
	struct iap_graph *g;
	struct iap_error err;
	struct run r;

	(void)state;
	coupled_case(&g, &r);
	/* 1/3 of 18 = 6: cu0 (3) + a2, a0, a1. */
	assert_int_equal(policy("global", NULL, g, &r, 1.0 / 3, &err), IAP_OK);
	assert_members_equal(&r);
	assert_int_equal(r.keep[1][0], 0);
	assert_int_equal(pruned_in(g, &r, 1), 1);
	assert_int_equal(pruned_in(g, &r, 0), 3);
	assert_int_equal(r.keep[0][3], 1);
	assert_int_equal(pruned_total(g, &r), 6);
	/* 0.5 of 18 = 9: cu0, a2, a0, a1, cu1 — the coupled sum (7) ranks cu1 below a3 (10). */
	assert_int_equal(policy("global", NULL, g, &r, 0.5, &err), IAP_OK);
	assert_members_equal(&r);
	assert_int_equal(r.keep[1][0] + r.keep[1][1], 0);
	assert_int_equal(pruned_total(g, &r), 9);
	/* round(0.45 * 18) = 8: after cu0, a2, a0, a1 two are left; cu1 (3) does not fit, a3 and a4 do. */
	assert_int_equal(policy("global", NULL, g, &r, 0.45, &err), IAP_OK);
	assert_members_equal(&r);
	assert_int_equal(pruned_in(g, &r, 1), 1);
	assert_int_equal(pruned_in(g, &r, 0), 5);
	assert_int_equal(pruned_total(g, &r), 8);
	/* Ignoring one member ignores the set: 6 left → 3, all from a. */
	{
		static const char *const ign[] = { "ignore", "c", NULL };

		assert_int_equal(policy("global", ign, g, &r, 0.5, &err), IAP_OK);
		assert_int_equal(pruned_in(g, &r, 1) + pruned_in(g, &r, 2) + pruned_in(g, &r, 3), 0);
		assert_int_equal(pruned_in(g, &r, 0), 3);
	}
	iap_graph_free(g);
}

/*
 * Only coupled groups (3 members × 4 units = 12): round(0.35 * 12) = 4, but
 * units come in threes, so 3 are pruned — short by 1, less than one coupled
 * unit (3), and never over the target. Layerwise gives the same.
 */
static void test_coupled_bound(void **state)
{
	static const int sizes[] = { 4, 4, 4 }, coupling[] = { 5, 5, 5 };
	static const char *const pols[] = { "global", "layerwise" };
	struct iap_graph *g = chain(3, sizes, coupling, abcd);
	struct iap_error err;
	struct run r;

	(void)state;
	run_defaults(&r);
	random_scores(g, &r, 9);
	for (int p = 0; p < 2; p++) {
		for (int i = 0; i < 6; i++) {
			int64_t target = llround(rates[i] * 12);
			int got;

			assert_int_equal(policy(pols[p], NULL, g, &r, rates[i], &err), IAP_OK);
			assert_memory_equal(r.keep[0], r.keep[1], 4);
			assert_memory_equal(r.keep[0], r.keep[2], 4);
			got = pruned_total(g, &r);
			assert_true(got % 3 == 0);
			assert_true(got <= target);
			assert_true(target - got < 3);
		}
		assert_int_equal(policy(pols[p], NULL, g, &r, 0.35, &err), IAP_OK);
		assert_int_equal(pruned_total(g, &r), 3);
	}
	iap_graph_free(g);
}

/* Layerwise with coupling: a loses 3 of 6, the coupled layer 2 of 4 in every member (3 + 2 × 3 = 9). */
static void test_coupled_layerwise(void **state)
{
	struct iap_graph *g;
	struct iap_error err;
	struct run r;

	(void)state;
	coupled_case(&g, &r);
	assert_int_equal(policy("layerwise", NULL, g, &r, 0.5, &err), IAP_OK);
	assert_members_equal(&r);
	/* The two lowest coupled sums (2, 7) and a's three lowest (2.5, 3, 4). */
	assert_int_equal(r.keep[1][0] + r.keep[1][1], 0);
	assert_int_equal(r.keep[1][2] + r.keep[1][3], 2);
	assert_int_equal(r.keep[0][0] + r.keep[0][1] + r.keep[0][2], 0);
	assert_int_equal(pruned_total(g, &r), 9);
	iap_graph_free(g);
}

/* ---- bad input ------------------------------------------------------------------------------------------ */

static void test_bad_input(void **state)
{
	static const int sizes[] = { 4, 3 }, coupling[] = { 1, 1 };
	struct iap_graph *g = chain(2, sizes, coupling, abcd);
	struct iap_error err;
	struct run r;

	(void)state;
	run_defaults(&r);
	random_scores(g, &r, 5);
	assert_int_equal(policy("global", NULL, g, &r, 0.5, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "coupled"));
	iap_graph_free(g);

	g = chain(2, sizes, NULL, abcd);
	r.scores[1][2] = NAN;
	assert_int_equal(policy("layerwise", NULL, g, &r, 0.5, &err), IAP_ENUMERIC);
	assert_non_null(strstr(err.msg, "'b'"));
	r.scores[1][2] = 0;
	assert_int_equal(policy("global", NULL, g, &r, 1.5, &err), IAP_EINVAL);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_global_exact_counts),
		cmocka_unit_test(test_layerwise_same_fraction),
		cmocka_unit_test(test_caps_and_min_units),
		cmocka_unit_test(test_ignore_flag_and_glob),
		cmocka_unit_test(test_normalisation_changes_ranking),
		cmocka_unit_test(test_ties_deterministic),
		cmocka_unit_test(test_coupled_global),
		cmocka_unit_test(test_coupled_bound),
		cmocka_unit_test(test_coupled_layerwise),
		cmocka_unit_test(test_bad_input),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
