/*
 * The baseline criteria plugins (magnitude, random, taylor, activation),
 * loaded from the plugin path as the runner loads them, on tiny nets whose
 * scores are worked out by hand in the comments.
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
#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/rng.h>

#include "../plugins/models/arch.h"
#include "testutil.h"

static struct iap_registry *reg;

static int setup(void **unused)
{
	struct iap_error err = { 0 };

	(void)unused;
	reg = iap_registry_new(&err);
	if (!reg || iap_registry_scan(reg, &err)) {
		fprintf(stderr, "registry: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int teardown(void **unused)
{
	(void)unused;
	iap_registry_free(reg);
	return 0;
}

struct run {
	const struct iap_plugin *p;
	const struct iap_attribution_ops *ops;
	struct iap_opts *opts;
	void *state;
	float *scores[4];
};

/* Find plugin `name`, set name/value option pairs (NULL-terminated), create it on g. */
static void open_plugin(struct run *r, const char *name, struct iap_graph *g, ...)
{
	struct iap_error err = { 0 };
	va_list ap;
	const char *k;

	memset(r, 0, sizeof(*r));
	r->p = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, name);
	if (!r->p)
		fail_msg("attribution plugin '%s' not found on the plugin path (IAPRUNE_PLUGIN_PATH)", name);
	r->ops = r->p->desc->ops.attribution;
	assert_int_equal(iap_opts_defaults(r->p->desc->options, &r->opts, &err), IAP_OK);
	va_start(ap, g);
	while ((k = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);

		if (iap_opts_set(r->opts, name, k, v, &err))
			fail_msg("%s", err.msg);
	}
	va_end(ap);
	if (r->ops->create(r->opts, g, &r->state, &err))
		fail_msg("%s: create: %s", name, err.msg);
	assert_true(g->n_groups <= 4);
	for (int i = 0; i < g->n_groups; i++) {
		r->scores[i] = calloc((size_t)g->groups[i].n_units, sizeof(float));
		assert_non_null(r->scores[i]);
	}
}

static void close_plugin(struct run *r)
{
	r->ops->destroy(r->state);
	iap_opts_free(r->opts);
	for (int i = 0; i < 4; i++)
		free(r->scores[i]);
}

static void set_param(struct iap_graph *g, const char *key, const float *v, size_t n)
{
	struct iap_param *p = iap_graph_find_param(g, key);

	assert_non_null(p);
	assert_int_equal(iap_tensor_numel(&p->value), (int64_t)n);
	memcpy(p->value.data, v, n * sizeof(float));
}

static void expect_scores(const float *got, const double *want, int n)
{
	for (int i = 0; i < n; i++)
		if (fabs(got[i] - want[i]) > 1e-5 * (1.0 + fabs(want[i])))
			fail_msg("score %d is %.8g, expected %.8g", i, (double)got[i], want[i]);
}

/* All five of this area's plugins load, with the data-free flag where no data is needed. */
static void test_plugins_load(void **unused)
{
	static const struct { const char *name; unsigned flags; } want[] = {
		{ "ig", 0 }, { "magnitude", IAP_ATTR_DATA_FREE }, { "random", IAP_ATTR_DATA_FREE },
		{ "taylor", 0 }, { "activation", 0 },
	};

	(void)unused;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, want[i].name);

		if (!p)
			fail_msg("plugin '%s' not found", want[i].name);
		assert_int_equal(p->desc->ops.attribution->flags & IAP_ATTR_DATA_FREE, want[i].flags);
		assert_non_null(p->desc->ops.attribution->score);
	}
}

/* ---- magnitude -------------------------------------------------------------------- */

/*
 * conv "conv" 1→2 channels, 1×2 kernel on a 1×2×2 input (output 2×2×1), then
 * flatten (4) and linear "fc" 4→2. Filters [3, −4] and [1, −1]; fc rows
 * [1, 2, 2, −4] and [0, 0, 0, −1]; biases (ignored) 100.
 */
static struct iap_graph *magnitude_cnn(void)
{
	static const float cw[] = { 3, -4, 1, -1 }, cb[] = { 100, 100 };
	static const float fw[] = { 1, 2, 2, -4, 0, 0, 0, -1 }, fb[] = { 100, 100 };
	const int64_t in[3] = { 1, 2, 2 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(3, in, &err);
	int x;

	assert_non_null(g);
	x = iap_conv2d(g, "conv", IAP_GRAPH_INPUT, 2, 1, 2, 1, 1, 0, 0, 1);
	iap_graph_add_units(g, x, 2, 1, -1);
	x = iap_flatten(g, "flatten", x);
	x = iap_linear(g, "fc", x, 2, 1);
	iap_graph_add_units(g, x, 2, 1, -1);
	iap_linear(g, "out", x, 2, 1);
	if (iap_graph_finalize(g, &err))
		fail_msg("%s", err.msg);
	set_param(g, "conv.weight", cw, 4);
	set_param(g, "conv.bias", cb, 2);
	set_param(g, "fc.weight", fw, 8);
	set_param(g, "fc.bias", fb, 2);
	return g;
}

/*
 * Attention over a 2×4 token input, 2 heads (d_h = 2): in_proj_weight [12, 4]
 * with every entry of row r equal to r. Head 0 takes rows 0,1 (q), 4,5 (k),
 * 8,9 (v); head 1 rows 2,3, 6,7, 10,11.
 *   L1: head 0 = 4·(0+1+4+5+8+9) = 108, head 1 = 4·(2+3+6+7+10+11) = 156
 *   L2: head 0 = √(4·(0+1+16+25+64+81)) = √748, head 1 = √(4·(4+9+36+49+100+121)) = √1276
 */
static struct iap_graph *magnitude_attn(void)
{
	const int64_t in[2] = { 2, 4 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(2, in, &err);
	struct iap_param *p;
	int x, w = -1;

	assert_non_null(g);
	x = iap_mha(g, "attn", IAP_GRAPH_INPUT, 2, &w);
	iap_graph_add_units(g, w, 2, 1, -1);
	x = iap_token_select(g, "select", x, 0);
	iap_linear(g, "head", x, 2, 1);
	if (iap_graph_finalize(g, &err))
		fail_msg("%s", err.msg);
	p = iap_graph_find_param(g, "attn.in_proj_weight");
	assert_non_null(p);
	assert_int_equal(p->value.shape[0], 12);
	for (int r = 0; r < 12; r++)
		for (int c = 0; c < 4; c++)
			p->value.data[r * 4 + c] = (float)r;
	return g;
}

static void test_magnitude(void **unused)
{
	struct iap_graph *cnn = magnitude_cnn(), *attn = magnitude_attn();
	struct iap_error err = { 0 };
	struct run r;

	(void)unused;
	/* L1 (the default): conv |3|+|−4| = 7, |1|+|−1| = 2; fc 1+2+2+4 = 9, 1. No data needed. */
	open_plugin(&r, "magnitude", cnn, NULL);
	assert_int_equal(r.ops->score(r.state, cnn, NULL, NULL, r.scores, &err), IAP_OK);
	expect_scores(r.scores[0], (const double[]){ 7, 2 }, 2);
	expect_scores(r.scores[1], (const double[]){ 9, 1 }, 2);
	close_plugin(&r);
	/* L2: √(9+16) = 5, √2; √(1+4+4+16) = 5, 1. */
	open_plugin(&r, "magnitude", cnn, "norm", "l2", NULL);
	assert_int_equal(r.ops->score(r.state, cnn, NULL, NULL, r.scores, &err), IAP_OK);
	expect_scores(r.scores[0], (const double[]){ 5, sqrt(2.0) }, 2);
	expect_scores(r.scores[1], (const double[]){ 5, 1 }, 2);
	close_plugin(&r);
	/* Heads: the q, k, v rows of in_proj. */
	open_plugin(&r, "magnitude", attn, NULL);
	assert_int_equal(r.ops->score(r.state, attn, NULL, NULL, r.scores, &err), IAP_OK);
	expect_scores(r.scores[0], (const double[]){ 108, 156 }, 2);
	close_plugin(&r);
	open_plugin(&r, "magnitude", attn, "norm", "l2", NULL);
	assert_int_equal(r.ops->score(r.state, attn, NULL, NULL, r.scores, &err), IAP_OK);
	expect_scores(r.scores[0], (const double[]){ sqrt(748.0), sqrt(1276.0) }, 2);
	close_plugin(&r);
	iap_graph_free(cnn);
	iap_graph_free(attn);
}

/* ---- random -------------------------------------------------------------------------- */

static void test_random(void **unused)
{
	struct iap_graph *g = magnitude_cnn();
	struct iap_error err = { 0 };
	struct iap_rng rng;
	struct run a, b, c;

	(void)unused;
	open_plugin(&a, "random", g, "seed", "42", NULL);
	open_plugin(&b, "random", g, "seed", "42", NULL);
	open_plugin(&c, "random", g, "seed", "43", NULL);
	assert_int_equal(a.ops->score(a.state, g, NULL, NULL, a.scores, &err), IAP_OK);
	assert_int_equal(b.ops->score(b.state, g, NULL, NULL, b.scores, &err), IAP_OK);
	assert_int_equal(c.ops->score(c.state, g, NULL, NULL, c.scores, &err), IAP_OK);
	/* The scores are the seeded generator's draws, groups then units in order. */
	iap_rng_seed(&rng, 42);
	for (int gi = 0; gi < 2; gi++)
		for (int u = 0; u < 2; u++) {
			float want = iap_rng_uniform(&rng);

			assert_true(a.scores[gi][u] == want);
			assert_true(a.scores[gi][u] >= 0.0f && a.scores[gi][u] < 1.0f);
		}
	assert_memory_equal(a.scores[0], b.scores[0], 2 * sizeof(float));
	assert_memory_equal(a.scores[1], b.scores[1], 2 * sizeof(float));
	assert_true(memcmp(a.scores[0], c.scores[0], 2 * sizeof(float)) != 0);
	/* A second call adds the very same draws (re-seeded each call). */
	assert_int_equal(b.ops->score(b.state, g, NULL, NULL, b.scores, &err), IAP_OK);
	for (int u = 0; u < 2; u++)
		assert_true(b.scores[1][u] == 2.0f * a.scores[1][u]);
	close_plugin(&a);
	close_plugin(&b);
	close_plugin(&c);
	iap_graph_free(g);
}

/* ---- taylor and activation ----------------------------------------------------------- */

/*
 * x ∈ R² → l1 (identity 2×2, bias 0; units) → [relu] → l2 [[3, −1], [2, 5]] → logits.
 * Samples x₁ = (1, 2), x₂ = (−1, 1).
 */
static struct iap_graph *two_layer(int relu)
{
	static const float w1[] = { 1, 0, 0, 1 }, b1[] = { 0, 0 };
	static const float w2[] = { 3, -1, 2, 5 }, b2[] = { 0, 0 };
	const int64_t in[1] = { 2 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(1, in, &err);
	int x;

	assert_non_null(g);
	x = iap_linear(g, "l1", IAP_GRAPH_INPUT, 2, 1);
	iap_graph_add_units(g, x, 2, 1, -1);
	if (relu)
		x = iap_relu(g, "relu", x);
	iap_linear(g, "l2", x, 2, 1);
	if (iap_graph_finalize(g, &err))
		fail_msg("%s", err.msg);
	set_param(g, "l1.weight", w1, 4);
	set_param(g, "l1.bias", b1, 2);
	set_param(g, "l2.weight", w2, 4);
	set_param(g, "l2.bias", b2, 2);
	return g;
}

static struct iap_tensor two_samples(void)
{
	static const float v[] = { 1, 2, -1, 1 };
	const int64_t shape[2] = { 2, 2 };
	struct iap_tensor x = { 0 };

	assert_int_equal(iap_tensor_alloc(&x, 2, shape, NULL), IAP_OK);
	memcpy(x.data, v, sizeof(v));
	return x;
}

static void score_batch(struct run *r, struct iap_graph *g, const struct iap_tensor *x)
{
	struct iap_error err = { 0 };
	int targets[2];

	if (iap_attribute_batch(r->ops, r->state, r->opts, g, x, NULL, r->scores, targets, &err))
		fail_msg("%s", err.msg);
	/* Both samples predict class 1 (logits (1, 12) and (−4, 3)). */
	assert_int_equal(targets[0], 1);
	assert_int_equal(targets[1], 1);
}

static void test_taylor(void **unused)
{
	struct iap_graph *g = two_layer(0);
	struct iap_tensor x = two_samples();
	struct run r;

	(void)unused;
	/*
	 * h = x; ∂F/∂h = row 1 of l2 = (2, 5) for both samples;
	 * a·g: x₁ (2, 10), x₂ (−2, 5).
	 *   abs after (default): |2| + |−2| = 4, 10 + 5 = 15
	 *   none:                2 − 2 = 0,      15
	 *   logit seed (F scaled by the logits 12 and 3): |24| + |−6| = 30, 120 + 15 = 135
	 */
	open_plugin(&r, "taylor", g, NULL);
	score_batch(&r, g, &x);
	expect_scores(r.scores[0], (const double[]){ 4, 15 }, 2);
	close_plugin(&r);
	open_plugin(&r, "taylor", g, "abs", "none", NULL);
	score_batch(&r, g, &x);
	expect_scores(r.scores[0], (const double[]){ 0, 15 }, 2);
	close_plugin(&r);
	open_plugin(&r, "taylor", g, "seed", "logit", NULL);
	score_batch(&r, g, &x);
	expect_scores(r.scores[0], (const double[]){ 30, 135 }, 2);
	close_plugin(&r);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* A conv unit: the spatial sum makes abs before and after differ. */
static void test_taylor_conv(void **unused)
{
	/* 1×1×3 input → conv 1→1 (1×1 kernel, weight 1, bias 0; unit) → flatten → linear [1, −2, 1]. */
	static const float cw[] = { 1 }, cb[] = { 0 }, lw[] = { 1, -2, 1 }, lb[] = { 0 };
	static const float xv[] = { 1, 2, 4 };
	const int64_t in[3] = { 1, 1, 3 }, xs[4] = { 1, 1, 1, 3 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(3, in, &err);
	struct iap_tensor x = { 0 };
	struct run r;
	int c, t[1];

	(void)unused;
	c = iap_conv2d(g, "conv", IAP_GRAPH_INPUT, 1, 1, 1, 1, 1, 0, 0, 1);
	iap_graph_add_units(g, c, 1, 1, -1);
	iap_linear(g, "fc", iap_flatten(g, "flatten", c), 1, 1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	set_param(g, "conv.weight", cw, 1);
	set_param(g, "conv.bias", cb, 1);
	set_param(g, "fc.weight", lw, 3);
	set_param(g, "fc.bias", lb, 1);
	assert_int_equal(iap_tensor_alloc(&x, 4, xs, NULL), IAP_OK);
	memcpy(x.data, xv, sizeof(xv));
	/* a = (1, 2, 4), g = (1, −2, 1): a·g = (1, −4, 4); after |Σ| = 1, before Σ|·| = 9. */
	open_plugin(&r, "taylor", g, NULL);
	assert_int_equal(iap_attribute_batch(r.ops, r.state, r.opts, g, &x, NULL, r.scores, t, &err), IAP_OK);
	expect_scores(r.scores[0], (const double[]){ 1 }, 1);
	close_plugin(&r);
	open_plugin(&r, "taylor", g, "abs", "before", NULL);
	assert_int_equal(iap_attribute_batch(r.ops, r.state, r.opts, g, &x, NULL, r.scores, t, &err), IAP_OK);
	expect_scores(r.scores[0], (const double[]){ 9 }, 1);
	close_plugin(&r);
	/* activation: mean of (1, 2, 4) = 7/3 (no nonlinearity follows: read at the conv). */
	open_plugin(&r, "activation", g, NULL);
	assert_int_equal(iap_attribute_batch(r.ops, r.state, r.opts, g, &x, NULL, r.scores, t, &err), IAP_OK);
	expect_scores(r.scores[0], (const double[]){ 7.0 / 3.0 }, 1);
	close_plugin(&r);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_activation(void **unused)
{
	struct iap_graph *g = two_layer(1);
	struct iap_tensor x = two_samples();
	struct run r;

	(void)unused;
	/*
	 * Unit outputs h: x₁ (1, 2), x₂ (−1, 1); after the ReLU (1, 2), (0, 1).
	 *   post (default): 1 + 0 = 1, 2 + 1 = 3
	 *   unit, abs after: |1| + |−1| = 2, 3;  unit, none: 0, 3
	 *   post, reduce mean: the host divides by the 2 samples: 0.5, 1.5
	 */
	open_plugin(&r, "activation", g, NULL);
	score_batch(&r, g, &x);
	expect_scores(r.scores[0], (const double[]){ 1, 3 }, 2);
	close_plugin(&r);
	open_plugin(&r, "activation", g, "where", "unit", NULL);
	score_batch(&r, g, &x);
	expect_scores(r.scores[0], (const double[]){ 2, 3 }, 2);
	close_plugin(&r);
	open_plugin(&r, "activation", g, "where", "unit", "abs", "none", NULL);
	score_batch(&r, g, &x);
	expect_scores(r.scores[0], (const double[]){ 0, 3 }, 2);
	close_plugin(&r);
	open_plugin(&r, "activation", g, "reduce", "mean", NULL);
	score_batch(&r, g, &x);
	iap_scores_finish(g, r.opts, 2, r.scores);
	expect_scores(r.scores[0], (const double[]){ 0.5, 1.5 }, 2);
	close_plugin(&r);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* Every criterion on VGG-, ViT- and ResNet-shaped nets: finite scores for every group, some non-zero. */
static void test_models(void **unused)
{
	static const char *const names[] = { "magnitude", "random", "taylor", "activation" };
	struct iap_cnn_cfg vc = { .depth = 11, .num_classes = 4, .in_channels = 3, .image_size = 32,
				  .width = 1.0 / 16, .dropout = 0.5f };
	struct iap_cnn_cfg rc = { .depth = 18, .num_classes = 4, .in_channels = 3, .image_size = 32,
				  .width = 1.0 / 8 };
	struct iap_vit_cfg tc = { .patch_size = 8, .image_size = 32, .in_channels = 3, .num_layers = 2,
				  .num_heads = 2, .hidden_dim = 16, .mlp_dim = 32, .num_classes = 4 };
	struct iap_tensor x = tu_rand_tensor(5, 4, (int64_t)2, (int64_t)3, (int64_t)32, (int64_t)32);
	struct iap_error err = { 0 };

	(void)unused;
	for (int m = 0; m < 3; m++) {
		struct iap_graph *g = NULL;

		if (m == 0 ? iap_vgg_build(&vc, &g, &err) : m == 1 ? iap_vit_build(&tc, &g, &err)
								  : iap_resnet_build(&rc, &g, &err))
			fail_msg("%s", err.msg);
		tu_randomize_params(g, 9, 0.3f);
		for (int k = 0; k < 4; k++) {
			float **scores = calloc((size_t)g->n_groups, sizeof(*scores));
			struct iap_opts *opts = NULL;
			const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, names[k]);
			void *state = NULL;
			int nonzero = 0, targets[2];

			assert_non_null(p);
			assert_non_null(scores);
			for (int gi = 0; gi < g->n_groups; gi++)
				assert_non_null(scores[gi] = calloc((size_t)g->groups[gi].n_units, sizeof(float)));
			assert_int_equal(iap_opts_defaults(p->desc->options, &opts, &err), IAP_OK);
			if (p->desc->ops.attribution->create(opts, g, &state, &err) ||
			    iap_attribute_batch(p->desc->ops.attribution, state, opts, g, &x, NULL, scores,
						targets, &err))
				fail_msg("%s on model %d: %s", names[k], m, err.msg);
			for (int gi = 0; gi < g->n_groups; gi++) {
				int group_nonzero = 0;

				for (int u = 0; u < g->groups[gi].n_units; u++) {
					assert_true(isfinite(scores[gi][u]));
					group_nonzero += scores[gi][u] != 0.0f;
				}
				nonzero += group_nonzero > 0;
				free(scores[gi]);
			}
			/* Every group gets a signal (heads included). */
			if (nonzero != g->n_groups)
				fail_msg("%s on model %d: %d of %d groups scored all zero", names[k], m,
					 g->n_groups - nonzero, g->n_groups);
			free(scores);
			p->desc->ops.attribution->destroy(state);
			iap_opts_free(opts);
		}
		iap_graph_free(g);
	}
	iap_tensor_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plugins_load),
		cmocka_unit_test(test_magnitude),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_taylor),
		cmocka_unit_test(test_taylor_conv),
		cmocka_unit_test(test_activation),
		cmocka_unit_test(test_models),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
