/*
 * The checks the runner makes on what plugins hand back (host/run/contracts.c),
 * each against hand-made answers with the exact message: sample indices
 * (count, range, duplicates, k per class and the documented shortfall),
 * score rows (finite, no overrun), masks (0/1, overrun, ignored groups,
 * caps and min_units, coupled groups alike, never more than round(rate x
 * units), fewer only where a cap binds), heatmap shapes. Also the graph
 * accessors and the walk's refusal of a rule set without its header.
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

#include "host/run/run_internal.h"
#include "testutil.h"

static const struct iap_plugin_desc pol_desc = { .kind = IAP_PLUGIN_POLICY, .name = "p" };
static const struct iap_plugin pol = { .desc = &pol_desc, .path = "/x/p.so" };
static const struct iap_plugin_desc smp_desc = { .kind = IAP_PLUGIN_SAMPLER, .name = "s" };
static const struct iap_plugin smp = { .desc = &smp_desc, .path = "/x/s.so" };

/* fc1 (4 units) and fc2 (4 units) coupled (id 0), fc3 (10 units) alone: 18 units in all. */
static struct iap_graph *coupled_graph(void)
{
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(1, (const int64_t[]){ 4 }, &err);
	int x;

	assert_non_null(g);
	x = iap_linear(g, "fc1", IAP_GRAPH_INPUT, 4, 1);
	iap_graph_add_units(g, x, 4, 1, 0);
	x = iap_relu(g, "r1", x);
	x = iap_linear(g, "fc2", x, 4, 1);
	iap_graph_add_units(g, x, 4, 1, 0);
	x = iap_relu(g, "r2", x);
	x = iap_linear(g, "fc3", x, 10, 1);
	iap_graph_add_units(g, x, 10, 1, -1);
	x = iap_relu(g, "r3", x);
	iap_linear(g, "out", x, 2, 1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	return g;
}

struct masks {
	uint8_t rows[3][11];
	uint8_t *keep[3];
};

/* Everything kept, sentinels armed. */
static void masks_init(struct masks *m, const struct iap_graph *g)
{
	for (int i = 0; i < 3; i++) {
		memset(m->rows[i], 1, sizeof(m->rows[i]));
		m->keep[i] = m->rows[i];
	}
	iap_contract_mask_arm(g, m->keep);
}

static struct iap_policy_input input(const struct iap_graph *g, double rate)
{
	struct iap_policy_input in = { .graph = g, .rate = rate, .max_layer_rate = 0.9, .min_units = 1 };

	return in;
}

static void test_masks(void **state)
{
	struct iap_graph *g = coupled_graph();
	struct iap_policy_input in = input(g, 0.5);
	struct iap_error err;
	uint8_t ignore[3] = { 0, 0, 1 };
	struct masks m;

	(void)state;
	/* round(0.5 x 18) = 9: coupled unit 0 (two units) and seven of fc3. */
	masks_init(&m, g);
	m.rows[0][0] = m.rows[1][0] = 0;
	for (int u = 0; u < 7; u++)
		m.rows[2][u] = 0;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_OK);

	m.rows[2][7] = 0;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): pruned 10 of 18 units (55.6%) at rate 0.50: "
			    "more than round(rate x units) = 9");

	in.max_layer_rate = 0.5;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): pruned 8 of the 10 units of 'fc3' at rate 0.50; "
			    "its cap is 5 (max_layer_rate 0.50, min_units 1)");
	in.max_layer_rate = 0.9;
	in.min_units = 3;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): pruned 8 of the 10 units of 'fc3' at rate 0.50; "
			    "its cap is 7 (max_layer_rate 0.90, min_units 3)");
	in.min_units = 1;

	masks_init(&m, g);
	m.rows[0][1] = 0;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): masks of the coupled groups 'fc1' and 'fc2' differ "
			    "(they share their units, so they must be pruned alike)");

	masks_init(&m, g);
	m.rows[2][3] = 2;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): mask entry 3 of 'fc3' is 2 (1 keeps, 0 prunes)");

	masks_init(&m, g);
	m.rows[2][10] = 0;     /* one past fc3's 10 entries */
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): wrote past the 10 mask entries of 'fc3'");

	masks_init(&m, g);
	m.rows[2][0] = 0;
	in.ignore = ignore;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): pruned 1 units of 'fc3', which the pipeline ignores");
	in.ignore = NULL;

	/* Too few with no cap binding: fc3 alone calls for round(0.5 x 10) = 5, less one coupled unit's slack. */
	masks_init(&m, g);
	m.rows[2][0] = m.rows[2][1] = 0;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "policy 'p' (/x/p.so): pruned 2 units at rate 0.50, fewer than the 5 its "
			    "layers' 10 units call for, and no cap binds");
	/* The same two are all a cap of 0.2 allows: fine. */
	in.max_layer_rate = 0.2;
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_OK);
	/* Layers left whole count as the policy's own ignore list: nothing pruned is not a shortfall. */
	in.max_layer_rate = 0.9;
	masks_init(&m, g);
	assert_int_equal(iap_contract_mask(&pol, &in, m.keep, &err), IAP_OK);
	iap_graph_free(g);
}

static void test_scores(void **state)
{
	struct iap_graph *g = coupled_graph();
	float rows[3][11] = { { 0 } };
	float *scores[3] = { rows[0], rows[1], rows[2] };
	const struct iap_plugin_desc d = { .kind = IAP_PLUGIN_ATTRIBUTION, .name = "a" };
	const struct iap_plugin a = { .desc = &d, .path = "/x/a.so" };
	struct iap_error err;

	(void)state;
	iap_contract_scores_arm(g, scores);
	assert_int_equal(iap_contract_scores(&a, g, scores, &err), IAP_OK);
	rows[1][2] = NAN;
	assert_int_equal(iap_contract_scores(&a, g, scores, &err), IAP_ENUMERIC);
	assert_string_equal(err.msg, "attribution 'a' (/x/a.so): score of unit 2 of 'fc2' is not finite (nan)");
	rows[1][2] = 1;
	rows[0][4] = 0;        /* fc1 has 4 units: index 4 is the sentinel */
	assert_int_equal(iap_contract_scores(&a, g, scores, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "attribution 'a' (/x/a.so): wrote past the 4 scores of 'fc1'");
	iap_graph_free(g);
}

static void test_heatmap_shape(void **state)
{
	struct iap_tensor x = tu_rand_tensor(1, 4, (int64_t)1, (int64_t)3, (int64_t)4, (int64_t)4);
	struct iap_tensor rel = tu_rand_tensor(2, 4, (int64_t)1, (int64_t)1, (int64_t)4, (int64_t)4);
	const struct iap_plugin_desc d = { .kind = IAP_PLUGIN_ATTRIBUTION, .name = "a" };
	const struct iap_plugin a = { .desc = &d, .path = "/x/a.so" };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_contract_heatmap(&a, &x, &x, &err), IAP_OK);
	assert_int_equal(iap_contract_heatmap(&a, &x, &rel, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "attribution 'a' (/x/a.so): explained an input of shape [1, 3, 4, 4] "
			    "with relevance of shape [1, 1, 4, 4]");
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
}

/* Ten samples of label i mod 3: class 0 is 0, 3, 6, 9; class 1 is 1, 4, 7; class 2 is 2, 5, 8. */
static int64_t ds_count(void *s)
{
	(void)s;
	return 10;
}

static int ds_load(void *s, int64_t i, float *image, int *label, struct iap_error *err)
{
	(void)s; (void)image; (void)err;
	*label = (int)(i % 3);
	return IAP_OK;
}

static void test_samples(void **state)
{
	static const struct iap_dataset_ops ops = { .size = sizeof(ops), .count = ds_count, .load = ds_load };
	struct iap_dataset ds = { .ops = &ops, .split = IAP_SPLIT_TRAIN, .info = { .n_classes = 3 }, .count = 10 };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_contract_samples(&smp, &ds, 2, (const int64_t[]){ 0, 3, 1, 4, 2, 5 }, 6, &err), IAP_OK);
	/* k = 4: class 0 has 4, classes 1 and 2 give all their 3. */
	assert_int_equal(iap_contract_samples(&smp, &ds, 4,
					      (const int64_t[]){ 0, 3, 6, 9, 1, 4, 7, 2, 5, 8 }, 10, &err), IAP_OK);
	assert_int_equal(iap_contract_samples(&smp, &ds, 1, (const int64_t[]){ 0, 1, 2, 3 }, 4, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "sampler 's' (/x/s.so): returned 4 samples, but 1 per class of 3 classes "
			    "allow at most 3");
	assert_int_equal(iap_contract_samples(&smp, &ds, 1, (const int64_t[]){ 0, 10, 2 }, 3, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "sampler 's' (/x/s.so): returned sample 10, but the train split has 10 "
			    "samples (0 to 9)");
	assert_int_equal(iap_contract_samples(&smp, &ds, 1, (const int64_t[]){ 0, -1, 2 }, 3, &err), IAP_EPLUGIN);
	assert_int_equal(iap_contract_samples(&smp, &ds, 2, (const int64_t[]){ 0, 1, 1, 2 }, 4, &err), IAP_EPLUGIN);
	assert_string_equal(err.msg, "sampler 's' (/x/s.so): returned sample 1 more than once");
	assert_int_equal(iap_contract_samples(&smp, &ds, 2, (const int64_t[]){ 0, 3, 6, 1, 2, 5 }, 6, &err),
			 IAP_EPLUGIN);
	assert_string_equal(err.msg, "sampler 's' (/x/s.so): returned 3 samples of class 0, but a sampler gives "
			    "2 per class (all of a class with fewer; class 0 has 4)");
	assert_int_equal(iap_contract_samples(&smp, &ds, 2, (const int64_t[]){ 0, 3, 1, 2, 5 }, 5, &err),
			 IAP_EPLUGIN);
	assert_string_equal(err.msg, "sampler 's' (/x/s.so): returned 1 samples of class 1, but a sampler gives "
			    "2 per class (all of a class with fewer; class 1 has 3)");
}

static void test_accessors(void **state)
{
	struct iap_graph *g = coupled_graph();

	(void)state;
	assert_ptr_equal(iap_graph_node(g, 0), &g->nodes[0]);
	assert_ptr_equal(iap_graph_node(g, g->n_nodes - 1), &g->nodes[g->n_nodes - 1]);
	assert_null(iap_graph_node(g, g->n_nodes));
	assert_null(iap_graph_node(g, -1));
	assert_ptr_equal(iap_graph_group(g, 2), &g->groups[2]);
	assert_string_equal(iap_graph_group(g, 2)->name, "fc3");
	assert_null(iap_graph_group(g, 3));
	assert_null(iap_graph_node(NULL, 0));
	iap_graph_free(g);
}

/* A rule set without IAP_RULESET_HEADER, and one built before an op existed. */
static void test_ruleset_header(void **state)
{
	struct iap_graph *g = coupled_graph();
	struct iap_tensor x = tu_rand_tensor(1, 2, (int64_t)1, (int64_t)4);
	struct iap_tensor seed = tu_rand_tensor(2, 2, (int64_t)1, (int64_t)2);
	struct iap_ruleset rs = *iap_ruleset_gradient();
	struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_OK);
	rs.size = 0;
	rs.n_rules = 0;
	rs.name = "bare";
	assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_EABI);
	assert_string_equal(err.msg, "rule set 'bare' has size 0 for 0 rules: start it with IAP_RULESET_HEADER");
	/* As if compiled when only conv2d and linear existed: relu is past its rules (the walk starts at 'out'). */
	rs.size = (uint32_t)(offsetof(struct iap_ruleset, rules) + 2 * sizeof(iap_rule_fn));
	rs.n_rules = 2;
	rs.name = "old";
	assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_EUNSUPPORTED);
	assert_string_equal(err.msg, "rule set 'old' has no rule for op relu (node 'r3')");
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_masks),
		cmocka_unit_test(test_scores),
		cmocka_unit_test(test_heatmap_shape),
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_accessors),
		cmocka_unit_test(test_ruleset_header),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
