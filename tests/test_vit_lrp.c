/*
 * ViT LRP (AttnLRP and CP-LRP) against a float64 reference of the rules:
 * tests/fixtures/lrp/gen_vit_lrp_fixtures.py writes them out module by
 * module in torch on a small torchvision VisionTransformer (2 layers, 2
 * heads, width 8, 16 x 16 inputs in 8 x 8 patches) and stores the relevance
 * at the input, at conv_proj's output, at every mlp.0 output and at every
 * layer's attention weights. The lrp plugin (compiled in) must reproduce
 * them through the core's walk, and the conv_proj unit group (the vit
 * model's conv_proj_units option) must score exactly the relevance there.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <iaprune/attribute.h>
#include <iaprune/graph.h>
#include <iaprune/plugin.h>

#include "arch.h"
#include "fixture.h"

#define LAYERS 2

static struct fx_file fx;

static const struct fx_tensor *need(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static const struct fx_tensor *need(const char *fmt, ...)
{
	char k[160];
	va_list ap;
	const struct fx_tensor *t;

	va_start(ap, fmt);
	vsnprintf(k, sizeof(k), fmt, ap);
	va_end(ap);
	t = fx_find(&fx, k);
	if (!t)
		fail_msg("fixture lacks %s", k);
	return t;
}

static int load_param(struct iap_node *node, struct iap_param *p, void *user)
{
	const struct fx_tensor *t = need("%s", p->key);

	(void)node;
	(void)user;
	if (t->numel != iap_tensor_numel(&p->value))
		fail_msg("%s: %lld values in the fixture", p->key, (long long)t->numel);
	memcpy(p->value.data, t->data, (size_t)t->numel * sizeof(float));
	return 0;
}

/* The relevance the walk brought to each node, copied by the hook. */
struct capture {
	struct iap_tensor *r;
	int n;
};

static int capture_hook(void *user, struct iap_graph *g, const struct iap_node *node,
			const struct iap_tensor *r_out)
{
	struct capture *c = user;
	struct iap_error err;

	(void)g;
	return iap_tensor_copy(&c->r[node->id], r_out, &err);
}

/* max |got - want| <= 2e-4 · max |want| (+ 1e-7): float32 against float64. */
static void check(const char *what, const float *got, const struct fx_tensor *want)
{
	double worst = 0.0, scale = 0.0;

	for (int64_t i = 0; i < want->numel; i++) {
		double d = fabs((double)got[i] - want->data[i]);

		worst = d > worst ? d : worst;
		scale = fabs(want->data[i]) > scale ? fabs(want->data[i]) : scale;
	}
	print_message("  %-40s max |R - ref| %.3g of max |ref| %.3g\n", what, worst, scale);
	if (!(scale > 0.0) && !strstr(what, "r_attn"))
		fail_msg("%s: the reference is all zero", what);
	if (!(worst <= 2e-4 * scale + 1e-7))
		fail_msg("%s: max |R - ref| %.3g exceeds 2e-4 of %.3g", what, worst, scale);
}

static int node_named(const struct iap_graph *g, const char *name, enum iap_op_kind kind)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].kind == kind && !strcmp(g->nodes[i].name, name))
			return i;
	fail_msg("no %s node '%s'", iap_op_name(kind), name);
	return -1;
}

static void run_case(const char *name, const char *vit_rule, const char *composite, const char *epsilon)
{
	const struct iap_vit_cfg cfg = { .patch_size = 8, .image_size = 16, .in_channels = 3,
					 .num_layers = LAYERS, .num_heads = 2, .hidden_dim = 8, .mlp_dim = 16,
					 .num_classes = 3, .conv_proj_units = 1 };
	const struct iap_plugin_desc *desc = iap_plugin_descriptor();
	const struct iap_attribution_ops *ops = desc->ops.attribution;
	const struct fx_tensor *fxx = need("x"), *fl = need("logits"), *ref;
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_opts *opts = NULL;
	struct iap_tensor x = { 0 }, seed = { 0 };
	struct iap_score_opts so;
	struct capture cap = { 0 };
	struct iap_walk_opts wo = { .want_input = 1, .hook = capture_hook, .hook_user = &cap };
	void *st = NULL;
	float **scores;
	int targets[2], proj, gi_proj = -1;
	char key[160];

	print_message("%s (composite %s, vit_rule %s, epsilon %s)\n", name, composite, vit_rule, epsilon);
	assert_int_equal(iap_vit_build(&cfg, &g, &err), IAP_OK);
	iap_graph_foreach_param(g, load_param, NULL);
	assert_int_equal(iap_tensor_alloc(&x, fxx->ndim, fxx->shape, &err), IAP_OK);
	memcpy(x.data, fxx->data, (size_t)fxx->numel * sizeof(float));
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	for (int i = 0; i < 6; i++)
		assert_true(fabs(iap_graph_output(g)->data[i] - fl->data[i]) < 1e-5);

	assert_int_equal(iap_opts_defaults(desc->options, &opts, &err), IAP_OK);
	assert_int_equal(iap_opts_set(opts, "lrp", "vit_rule", vit_rule, &err), IAP_OK);
	assert_int_equal(iap_opts_set(opts, "lrp", "composite", composite, &err), IAP_OK);
	assert_int_equal(iap_opts_set(opts, "lrp", "epsilon", epsilon, &err), IAP_OK);
	assert_int_equal(iap_opts_set(opts, "lrp", "abs", "none", &err), IAP_OK);
	assert_int_equal(ops->create(opts, g, &st, &err), IAP_OK);
	iap_score_opts_from(opts, &so);
	assert_int_equal(iap_targets(iap_graph_output(g), NULL, &so, targets, &err), IAP_OK);
	assert_int_equal(iap_seed_target(iap_graph_output(g), targets, &so, &seed, &err), IAP_OK);

	cap.n = g->n_nodes;
	cap.r = calloc((size_t)g->n_nodes, sizeof(*cap.r));
	assert_non_null(cap.r);
	assert_int_equal(iap_graph_backward(g, ops->ruleset(st), &seed, &wo, &err), IAP_OK);

	snprintf(key, sizeof(key), "%s.r_input", name);
	check(key, g->input_r.data, need("%s", key));
	proj = node_named(g, "conv_proj", IAP_OP_CONV2D);
	snprintf(key, sizeof(key), "%s.r_conv_proj", name);
	check(key, cap.r[proj].data, need("%s", key));
	for (int l = 0; l < LAYERS; l++) {
		char nm[128];
		int m0, w;

		snprintf(nm, sizeof(nm), "encoder.layers.encoder_layer_%d.mlp.0", l);
		m0 = node_named(g, nm, IAP_OP_LINEAR);
		snprintf(key, sizeof(key), "%s.r_mlp0.%d", name, l);
		check(key, cap.r[m0].data, need("%s", key));
		snprintf(nm, sizeof(nm), "encoder.layers.encoder_layer_%d.self_attention", l);
		w = node_named(g, nm, IAP_OP_SOFTMAX);
		snprintf(key, sizeof(key), "%s.r_attn.%d", name, l);
		ref = need("%s", key);
		if (!strcmp(vit_rule, "cplrp")) {
			/* CP-LRP holds the weights constant: nothing reaches them. */
			for (int64_t i = 0; i < ref->numel; i++)
				assert_true(cap.r[w].data[i] == 0.0f && ref->data[i] == 0.0f);
		} else {
			check(key, cap.r[w].data, ref);
		}
	}

	/* The conv_proj group scores Σ over positions and samples of the relevance there (abs none). */
	for (int gi = 0; gi < g->n_groups; gi++)
		if (g->groups[gi].node == proj)
			gi_proj = gi;
	assert_true(gi_proj >= 0);
	assert_string_equal(g->groups[gi_proj].name, "conv_proj");
	assert_int_equal(g->groups[gi_proj].n_units, 8);
	scores = calloc((size_t)g->n_groups, sizeof(*scores));
	for (int gi = 0; gi < g->n_groups; gi++)
		scores[gi] = calloc((size_t)g->groups[gi].n_units, sizeof(float));
	assert_int_equal(iap_attribute_batch(ops, st, opts, g, &x, NULL, scores, NULL, &err), IAP_OK);
	ref = need("%s.r_conv_proj", name);
	for (int u = 0; u < 8; u++) {
		double want = 0.0;

		for (int n = 0; n < 2; n++)
			for (int p = 0; p < 4; p++)
				want += ref->data[(n * 8 + u) * 4 + p];
		assert_true(fabs(scores[gi_proj][u] - want) <= 1e-3 * fabs(want) + 1e-5);
	}

	for (int gi = 0; gi < g->n_groups; gi++)
		free(scores[gi]);
	free(scores);
	for (int i = 0; i < cap.n; i++)
		iap_tensor_free(&cap.r[i]);
	free(cap.r);
	ops->destroy(st);
	iap_opts_free(opts);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

static void test_attnlrp(void **state)
{
	(void)state;
	run_case("attnlrp", "attnlrp", "epsilon", "0.01");
}

static void test_cplrp(void **state)
{
	(void)state;
	run_case("cplrp", "cplrp", "epsilon", "1e-6");
}

static void test_attnlrp_flat(void **state)
{
	(void)state;
	run_case("attnlrp-flat", "attnlrp", "epsilon-plus-flat", "1e-6");
}

/* conv_proj is a unit group only on request; the default graph has none there. */
static void test_conv_proj_group_optional(void **state)
{
	struct iap_vit_cfg cfg = { .patch_size = 8, .image_size = 16, .in_channels = 3, .num_layers = LAYERS,
				   .num_heads = 2, .hidden_dim = 8, .mlp_dim = 16, .num_classes = 3 };
	struct iap_error err;
	struct iap_graph *g;
	int with, without = 0;

	(void)state;
	assert_int_equal(iap_vit_build(&cfg, &g, &err), IAP_OK);
	for (int gi = 0; gi < g->n_groups; gi++)
		without += !strcmp(g->groups[gi].name, "conv_proj");
	with = g->n_groups;
	iap_graph_free(g);
	cfg.conv_proj_units = 1;
	assert_int_equal(iap_vit_build(&cfg, &g, &err), IAP_OK);
	assert_int_equal(without, 0);
	assert_int_equal(g->n_groups, with + 1);
	assert_string_equal(g->groups[0].name, "conv_proj");
	assert_int_equal(g->nodes[g->groups[0].node].kind, IAP_OP_CONV2D);
	iap_graph_free(g);
}

static int setup(void **state)
{
	const char *src = getenv("IAP_TEST_SRCDIR");
	struct iap_error err = { 0 };
	char path[1024];

	(void)state;
	snprintf(path, sizeof(path), "%s/tests/fixtures/lrp/vit_lrp.iapfx", src ? src : ".");
	if (fx_load(&fx, path, &err) != IAP_OK) {
		fprintf(stderr, "%s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	fx_free(&fx);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_conv_proj_group_optional),
		cmocka_unit_test(test_attnlrp),
		cmocka_unit_test(test_cplrp),
		cmocka_unit_test(test_attnlrp_flat),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
