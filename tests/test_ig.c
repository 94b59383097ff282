/*
 * The `ig` attribution plugin (compiled in, white-box: the completeness gaps
 * are read through the functions of plugins/attribution/ig.h).
 *
 * - Reference equality with tests/fixtures/ig/ig_ref.safetensors, written by
 *   gen_ig_fixtures.py (Captum's IntegratedGradients and LayerConductance
 *   formulas in float64 torch): input IG and per-unit conductance scores
 *   for three methods and three baselines, within 1e-4 of each tensor's
 *   largest magnitude.
 * - Completeness on smooth (GELU) nets: |δ| shrinks from n = 8 to n = 64 and
 *   ends below a threshold, for input IG and for the conductance of cut
 *   layers; δ is printed.
 * - The internal batch (any size, padded chunks, sample sub-batches) does
 *   not change the result.
 * - VGG-, ViT- and ResNet-shaped nets: finite scores for every unit group.
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
#include <iaprune/safetensors.h>

#include "../plugins/attribution/ig.h"
#include "../plugins/models/arch.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------ */

struct ig_run {
	const struct iap_attribution_ops *ops;
	struct iap_opts *opts;
	void *state;
	float **scores;
	int n_groups;
};

/* Options from name/value pairs (NULL-terminated), the plugin created on g. */
static void ig_open(struct ig_run *r, struct iap_graph *g, ...)
{
	const struct iap_plugin_desc *d = iap_plugin_descriptor();
	struct iap_error err = { 0 };
	va_list ap;
	const char *k;

	memset(r, 0, sizeof(*r));
	r->ops = d->ops.attribution;
	assert_int_equal(iap_opts_defaults(d->options, &r->opts, &err), IAP_OK);
	va_start(ap, g);
	while ((k = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);

		if (iap_opts_set(r->opts, "attribution 'ig'", k, v, &err))
			fail_msg("%s", err.msg);
	}
	va_end(ap);
	if (r->ops->create(r->opts, g, &r->state, &err))
		fail_msg("create: %s", err.msg);
	r->n_groups = g->n_groups;
	r->scores = calloc((size_t)g->n_groups, sizeof(*r->scores));
	assert_non_null(r->scores);
	for (int i = 0; i < g->n_groups; i++) {
		r->scores[i] = calloc((size_t)g->groups[i].n_units, sizeof(float));
		assert_non_null(r->scores[i]);
	}
}

static void ig_close(struct ig_run *r)
{
	r->ops->destroy(r->state);
	iap_opts_free(r->opts);
	for (int i = 0; i < r->n_groups; i++)
		free(r->scores[i]);
	free(r->scores);
}

/* The host path: forward, predicted targets, score(). */
static void ig_scores(struct ig_run *r, struct iap_graph *g, const struct iap_tensor *x, int *targets)
{
	struct iap_error err = { 0 };

	for (int i = 0; i < r->n_groups; i++)
		memset(r->scores[i], 0, (size_t)g->groups[i].n_units * sizeof(float));
	if (iap_attribute_batch(r->ops, r->state, r->opts, g, x, NULL, r->scores, targets, &err))
		fail_msg("score: %s", err.msg);
}

static void ig_explain(struct ig_run *r, struct iap_graph *g, const struct iap_tensor *x,
		       const int *targets, struct iap_tensor *rel)
{
	struct iap_error err = { 0 };

	if (iap_graph_forward(g, x, &err) || r->ops->explain(r->state, g, x, targets, rel, &err))
		fail_msg("explain: %s", err.msg);
}

static struct iap_safetensors *fixtures(void)
{
	const char *src = getenv("IAP_TEST_SRCDIR");
	char path[4096];
	struct iap_safetensors *st = NULL;
	struct iap_error err = { 0 };

	snprintf(path, sizeof(path), "%s/tests/fixtures/ig/ig_ref.safetensors", src ? src : ".");
	if (iap_safetensors_open(path, &st, &err))
		fail_msg("%s", err.msg);
	return st;
}

/* A fixture tensor into t (allocated with its shape). */
static void fx_get(struct iap_safetensors *st, const char *name, struct iap_tensor *t)
{
	const struct iap_st_tensor *e = iap_safetensors_find(st, name);
	struct iap_error err = { 0 };

	if (!e)
		fail_msg("fixture has no tensor '%s'", name);
	assert_int_equal(iap_tensor_alloc(t, e->ndim, e->shape, &err), IAP_OK);
	assert_int_equal(iap_safetensors_read_f32(st, e, t->data, &err), IAP_OK);
}

/*
 * got matches the reference within rel × the reference's largest magnitude
 * (elementwise relative error is meaningless where the reference is ~0).
 */
static void expect_close(const char *what, const float *got, const float *ref, size_t n, double rel)
{
	double scale = 0.0, worst = 0.0;
	size_t at = 0;

	for (size_t i = 0; i < n; i++)
		if (fabs(ref[i]) > scale)
			scale = fabs(ref[i]);
	worst = tu_max_abs_diff(got, ref, n, &at);
	if (!(worst <= rel * scale + 1e-7))
		fail_msg("%s: entry %zu is %.8g, reference %.8g (max |ref| %.4g)", what, at,
			 (double)got[at], (double)ref[at], scale);
}

/* The fixture net: conv(3→4) gelu avgpool flatten fc1(36→6) gelu fc2(6→3); units conv, fc1. */
static struct iap_graph *fixture_net(void)
{
	const int64_t in[3] = { 3, 6, 6 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(3, in, &err);
	int x;

	assert_non_null(g);
	x = iap_conv2d(g, "conv", IAP_GRAPH_INPUT, 4, 3, 3, 1, 1, 1, 1, 1);
	iap_graph_add_units(g, x, 4, 1, -1);
	x = iap_gelu(g, "act1", x);
	x = iap_avgpool2d(g, "pool", x, 2, 2, 0, 0, 1);
	x = iap_flatten(g, "flatten", x);
	x = iap_linear(g, "fc1", x, 6, 1);
	iap_graph_add_units(g, x, 6, 1, -1);
	x = iap_gelu(g, "act2", x);
	iap_linear(g, "fc2", x, 3, 1);
	if (iap_graph_finalize(g, &err))
		fail_msg("%s", err.msg);
	return g;
}

static void load_fixture_params(struct iap_graph *g, struct iap_safetensors *st)
{
	static const char *const keys[] = { "conv.weight", "conv.bias", "fc1.weight", "fc1.bias",
					    "fc2.weight", "fc2.bias" };
	struct iap_error err = { 0 };
	char name[64];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		struct iap_param *p = iap_graph_find_param(g, keys[i]);
		const struct iap_st_tensor *e;

		snprintf(name, sizeof(name), "param.%s", keys[i]);
		e = iap_safetensors_find(st, name);
		assert_non_null(p);
		assert_non_null(e);
		assert_int_equal(e->numel, iap_tensor_numel(&p->value));
		assert_int_equal(iap_safetensors_read_f32(st, e, p->value.data, &err), IAP_OK);
	}
}

struct fixture_ctx {
	struct iap_safetensors *st;
	struct iap_graph *g;
	struct iap_tensor x;
	int targets[2];
};

static void fixture_setup(struct fixture_ctx *f)
{
	struct iap_tensor logits = { 0 }, tgt = { 0 };
	struct iap_error err = { 0 };

	memset(f, 0, sizeof(*f));
	f->st = fixtures();
	f->g = fixture_net();
	load_fixture_params(f->g, f->st);
	fx_get(f->st, "x", &f->x);
	fx_get(f->st, "logits", &logits);
	fx_get(f->st, "target", &tgt);
	/* The graph computes the reference net. */
	assert_int_equal(iap_graph_forward(f->g, &f->x, &err), IAP_OK);
	expect_close("logits", iap_graph_output(f->g)->data, logits.data, 6, 1e-5);
	for (int i = 0; i < 2; i++)
		f->targets[i] = (int)tgt.data[i];
	iap_tensor_free(&logits);
	iap_tensor_free(&tgt);
}

static void fixture_teardown(struct fixture_ctx *f)
{
	iap_tensor_free(&f->x);
	iap_graph_free(f->g);
	iap_safetensors_close(f->st);
}

static const char *const methods[][2] = {
	/* plugin name, fixture name */
	{ "riemann-trapezoid", "riemann_trapezoid" },
	{ "riemann-right", "riemann_right" },
	{ "gauss-legendre", "gausslegendre" },
};

/* ---- reference equality --------------------------------------------------------- */

/* Input IG (explain) and its δ against Captum's IntegratedGradients formula, n = 8. */
static void test_reference_input_ig(void **unused)
{
	struct fixture_ctx f;

	(void)unused;
	fixture_setup(&f);
	for (size_t m = 0; m < 3; m++) {
		struct ig_run r;
		struct iap_tensor rel = { 0 }, ref = { 0 }, dref = { 0 };
		char name[128];
		const float *delta;
		int n;

		ig_open(&r, f.g, "steps", "8", "method", methods[m][0], NULL);
		ig_explain(&r, f.g, &f.x, f.targets, &rel);
		snprintf(name, sizeof(name), "ig.zeros.%s", methods[m][1]);
		fx_get(f.st, name, &ref);
		expect_close(name, rel.data, ref.data, (size_t)iap_tensor_numel(&ref), 1e-4);
		snprintf(name, sizeof(name), "ig.zeros.%s.delta", methods[m][1]);
		fx_get(f.st, name, &dref);
		delta = iap_plugin_ig_input_delta(r.state, &n);
		assert_int_equal(n, 2);
		for (int i = 0; i < 2; i++) {
			printf("# input IG %-18s n=8: delta[%d] = % .6g (torch % .6g)\n", methods[m][0], i,
			       (double)delta[i], (double)dref.data[i]);
			assert_true(fabs(delta[i] - dref.data[i]) <= 1e-4 * (1.0 + fabs(dref.data[i])));
		}
		iap_tensor_free(&rel);
		iap_tensor_free(&ref);
		iap_tensor_free(&dref);
		ig_close(&r);
	}
	fixture_teardown(&f);
}

/* Unit scores against Captum's LayerConductance at conv and fc1, every abs mode. */
static void test_reference_conductance(void **unused)
{
	static const char *const abs_modes[] = { "none", "before", "after" };
	struct fixture_ctx f;

	(void)unused;
	fixture_setup(&f);
	for (size_t m = 0; m < 3; m++)
		for (size_t a = 0; a < 3; a++) {
			struct ig_run r;
			int targets[2];

			ig_open(&r, f.g, "steps", "8", "method", methods[m][0], "abs", abs_modes[a], NULL);
			ig_scores(&r, f.g, &f.x, targets);
			assert_int_equal(targets[0], f.targets[0]);
			assert_int_equal(targets[1], f.targets[1]);
			for (int gi = 0; gi < 2; gi++) {
				struct iap_tensor ref = { 0 };
				char name[128];

				snprintf(name, sizeof(name), "cond.zeros.%s.%s.%s", methods[m][1],
					 gi ? "fc1" : "conv", abs_modes[a]);
				fx_get(f.st, name, &ref);
				assert_int_equal(iap_tensor_numel(&ref), f.g->groups[gi].n_units);
				expect_close(name, r.scores[gi], ref.data, (size_t)iap_tensor_numel(&ref), 1e-4);
				iap_tensor_free(&ref);
			}
			ig_close(&r);
		}
	fixture_teardown(&f);
}

/* Black (ImageNet mean/std) and blur (σ = 1) baselines, trapezoid, n = 8. */
static void test_reference_baselines(void **unused)
{
	static const char *const bases[] = { "black", "blur" };
	struct fixture_ctx f;

	(void)unused;
	fixture_setup(&f);
	for (int b = 0; b < 2; b++) {
		struct ig_run r;
		struct iap_tensor rel = { 0 }, ref = { 0 };
		char name[128];
		int targets[2];

		ig_open(&r, f.g, "steps", "8", "baseline", bases[b], "sigma", "1", "abs", "none", NULL);
		ig_explain(&r, f.g, &f.x, f.targets, &rel);
		snprintf(name, sizeof(name), "ig.%s.riemann_trapezoid", bases[b]);
		fx_get(f.st, name, &ref);
		expect_close(name, rel.data, ref.data, (size_t)iap_tensor_numel(&ref), 1e-4);
		iap_tensor_free(&ref);
		ig_scores(&r, f.g, &f.x, targets);
		snprintf(name, sizeof(name), "cond.%s.riemann_trapezoid.conv.none", bases[b]);
		fx_get(f.st, name, &ref);
		expect_close(name, r.scores[0], ref.data, 4, 1e-4);
		iap_tensor_free(&ref);
		iap_tensor_free(&rel);
		ig_close(&r);
	}
	fixture_teardown(&f);
}

/* ---- completeness ---------------------------------------------------------------- */

/* A deeper smooth net: two convs and two linears, all GELU; every unit layer is a cut. */
static struct iap_graph *smooth_net(void)
{
	const int64_t in[3] = { 2, 8, 8 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(3, in, &err);
	int x;

	assert_non_null(g);
	x = iap_conv2d(g, "c1", IAP_GRAPH_INPUT, 6, 3, 3, 1, 1, 1, 1, 1);
	iap_graph_add_units(g, x, 6, 1, -1);
	x = iap_gelu(g, "a1", x);
	x = iap_conv2d(g, "c2", x, 5, 3, 3, 2, 2, 1, 1, 1);
	iap_graph_add_units(g, x, 5, 1, -1);
	x = iap_gelu(g, "a2", x);
	x = iap_adaptive_avgpool2d(g, "pool", x, 2, 2);
	x = iap_flatten(g, "flatten", x);
	x = iap_linear(g, "l1", x, 7, 1);
	iap_graph_add_units(g, x, 7, 1, -1);
	x = iap_gelu(g, "a3", x);
	iap_linear(g, "l2", x, 4, 1);
	if (iap_graph_finalize(g, &err))
		fail_msg("%s", err.msg);
	tu_randomize_params(g, 7, 0.6f);
	return g;
}

/* Largest |δ| over samples (and groups) for one n. */
static void completeness_at(struct iap_graph *g, const struct iap_tensor *x, const char *method,
			    const char *steps, double *in_delta, double *unit_delta, double *gap)
{
	struct ig_run r;
	struct iap_tensor rel = { 0 };
	const float *d;
	int targets[3], n, ng;

	ig_open(&r, g, "steps", steps, "method", method, NULL);
	ig_scores(&r, g, x, targets);
	d = iap_plugin_ig_unit_delta(r.state, &ng, &n);
	assert_int_equal(ng, g->n_groups);
	assert_int_equal(n, 3);
	*unit_delta = 0.0;
	for (int i = 0; i < ng * n; i++) {
		assert_true(isfinite(d[i]));
		if (fabs(d[i]) > *unit_delta)
			*unit_delta = fabs(d[i]);
	}
	ig_explain(&r, g, x, targets, &rel);
	d = iap_plugin_ig_input_delta(r.state, &n);
	*in_delta = 0.0;
	for (int i = 0; i < n; i++)
		if (fabs(d[i]) > *in_delta)
			*in_delta = fabs(d[i]);
	d = iap_plugin_ig_output_gap(r.state, &n);
	*gap = 0.0;
	for (int i = 0; i < n; i++)
		if (fabs(d[i]) > *gap)
			*gap = fabs(d[i]);
	iap_tensor_free(&rel);
	ig_close(&r);
}

static void test_completeness_shrinks(void **unused)
{
	static const char *const ms[] = { "riemann-trapezoid", "riemann-right", "gauss-legendre" };
	struct iap_graph *g = smooth_net();
	struct iap_tensor x = tu_rand_tensor(11, 4, (int64_t)3, (int64_t)2, (int64_t)8, (int64_t)8);

	(void)unused;
	for (int m = 0; m < 3; m++) {
		double in8, u8, gap8, in64, u64, gap64;

		completeness_at(g, &x, ms[m], "8", &in8, &u8, &gap8);
		completeness_at(g, &x, ms[m], "64", &in64, &u64, &gap64);
		printf("# %-18s max|F(x)-F(x')| %.4g  input IG max|delta| n=8 %.3e n=64 %.3e  "
		       "conductance max|delta| n=8 %.3e n=64 %.3e\n",
		       ms[m], gap8, in8, in64, u8, u64);
		assert_true(gap8 > 0.1); /* a non-trivial explanation */
		assert_true(u64 < u8);
		/* Gauss–Legendre input IG is exact to float rounding at both n: no order to test. */
		if (m != 2)
			assert_true(in64 < in8);
		/* Both sums telescope up to O(1/n) quadrature error (trapezoid IG: Captum's 1/n bias). */
		assert_true(in64 < 0.03 * gap8);
		assert_true(u64 < 0.03 * gap8);
		if (m == 2) /* Gauss–Legendre integrates the input path almost exactly */
			assert_true(in64 < 1e-3 * gap8);
	}
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* ---- batching ----------------------------------------------------------------------- */

/* Scores and input IG of one method under several internal batch sizes. */
static void batch_invariance(const char *method)
{
	/* 1 row, 4 rows (3 samples → 1 step per chunk, sample sub-batches), 7 rows (padding), memory-derived. */
	static const char *const sizes[] = { "1", "4", "7", "0" };
	struct iap_graph *g = smooth_net();
	struct iap_tensor x = tu_rand_tensor(12, 4, (int64_t)3, (int64_t)2, (int64_t)8, (int64_t)8);
	float *ref[3] = { NULL };
	struct iap_tensor rel_ref = { 0 };

	for (int s = 0; s < 4; s++) {
		struct ig_run r;
		struct iap_tensor rel = { 0 };
		int targets[3];

		ig_open(&r, g, "steps", "10", "internal_batch", sizes[s], "abs", "none",
			"method", method, NULL);
		ig_scores(&r, g, &x, targets);
		ig_explain(&r, g, &x, targets, &rel);
		for (int gi = 0; gi < 3; gi++) {
			size_t n = (size_t)g->groups[gi].n_units;

			if (!ref[gi]) {
				ref[gi] = malloc(n * sizeof(float));
				memcpy(ref[gi], r.scores[gi], n * sizeof(float));
				continue;
			}
			expect_close("scores vs internal batch", r.scores[gi], ref[gi], n, 1e-5);
		}
		if (!rel_ref.data)
			assert_int_equal(iap_tensor_copy(&rel_ref, &rel, NULL), IAP_OK);
		else
			expect_close("input IG vs internal batch", rel.data, rel_ref.data,
				     (size_t)iap_tensor_numel(&rel), 1e-5);
		iap_tensor_free(&rel);
		ig_close(&r);
	}
	for (int gi = 0; gi < 3; gi++)
		free(ref[gi]);
	iap_tensor_free(&rel_ref);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_internal_batch_invariance(void **unused)
{
	(void)unused;
	batch_invariance("riemann-trapezoid"); /* F(x), F(x') from the path's end nodes */
	batch_invariance("gauss-legendre");    /* from two extra rows */
}

/* ---- model-shaped nets ------------------------------------------------------------------ */

static void expect_finite_scores(const struct ig_run *r, const struct iap_graph *g)
{
	int nonzero = 0;

	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; u < g->groups[gi].n_units; u++) {
			assert_true(isfinite(r->scores[gi][u]));
			nonzero += r->scores[gi][u] != 0.0f;
		}
	assert_true(nonzero > 0);
}

static void test_vgg_vit(void **unused)
{
	struct iap_cnn_cfg vc = { .depth = 11, .num_classes = 5, .in_channels = 3, .image_size = 32,
				  .width = 1.0 / 16, .dropout = 0.5f };
	struct iap_vit_cfg tc = { .patch_size = 8, .image_size = 32, .in_channels = 3, .num_layers = 2,
				  .num_heads = 2, .hidden_dim = 16, .mlp_dim = 32, .num_classes = 5 };
	struct iap_cnn_cfg rc = { .depth = 18, .num_classes = 5, .in_channels = 3, .image_size = 32,
				  .width = 1.0 / 8 };
	struct iap_tensor x = tu_rand_tensor(13, 4, (int64_t)2, (int64_t)3, (int64_t)32, (int64_t)32);
	static const char *const names[] = { "vgg11", "vit", "resnet18" };
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;

	(void)unused;
	for (int k = 0; k < 3; k++) {
		struct ig_run r;
		struct iap_tensor rel = { 0 };
		const float *d;
		int targets[2], n;

		if ((k == 0 ? iap_vgg_build(&vc, &g, &err) : k == 1 ? iap_vit_build(&tc, &g, &err)
								    : iap_resnet_build(&rc, &g, &err)))
			fail_msg("%s", err.msg);
		/* torchvision zero-initialises the ViT head: random parameters instead. */
		if (k == 0)
			iap_vgg_init(g, 3);
		else if (k == 1)
			tu_randomize_params(g, 3, 0.3f);
		else
			iap_resnet_init(g, 3);
		ig_open(&r, g, "steps", "16", "memory_mb", "1", NULL);
		ig_scores(&r, g, &x, targets);
		expect_finite_scores(&r, g);
		ig_explain(&r, g, &x, targets, &rel);
		d = iap_plugin_ig_input_delta(r.state, &n);
		for (int i = 0; i < n; i++) {
			printf("# %s input IG n=16 delta[%d] = % .4g\n", names[k], i, (double)d[i]);
			assert_true(isfinite(d[i]));
		}
		for (int64_t i = 0; i < iap_tensor_numel(&rel); i++)
			assert_true(isfinite(rel.data[i]));
		iap_tensor_free(&rel);
		ig_close(&r);
		iap_graph_free(g);
		g = NULL;
	}
	iap_tensor_free(&x);
}

/* Bad option values are refused at create() with a message naming the option. */
static void test_bad_options(void **unused)
{
	const struct iap_plugin_desc *d = iap_plugin_descriptor();
	struct iap_graph *g = smooth_net();
	struct iap_opts *o = NULL;
	struct iap_error err = { 0 };
	void *state = NULL;

	(void)unused;
	assert_int_equal(iap_opts_defaults(d->options, &o, &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "attribution 'ig'", "std", "0.2,zero", &err), IAP_OK);
	assert_int_equal(d->ops.attribution->create(o, g, &state, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "'std'"));
	assert_int_equal(iap_opts_set(o, "attribution 'ig'", "std", "0.2,0,0.3", &err), IAP_OK);
	assert_int_equal(d->ops.attribution->create(o, g, &state, &err), IAP_EINVAL);
	/* black needs image input with 1 or C channel statistics: 2 channels here, 3 values given. */
	assert_int_equal(iap_opts_set(o, "attribution 'ig'", "std", "0.2", &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "attribution 'ig'", "baseline", "black", &err), IAP_OK);
	assert_int_equal(d->ops.attribution->create(o, g, &state, &err), IAP_OK);
	{
		struct iap_tensor x = tu_rand_tensor(1, 4, (int64_t)1, (int64_t)2, (int64_t)8, (int64_t)8);
		struct iap_tensor rel = { 0 };
		int t = 0;

		assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
		assert_int_equal(d->ops.attribution->explain(state, g, &x, &t, &rel, &err), IAP_EINVAL);
		assert_non_null(strstr(err.msg, "mean"));
		iap_tensor_free(&x);
		iap_tensor_free(&rel);
	}
	d->ops.attribution->destroy(state);
	iap_opts_free(o);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reference_input_ig),
		cmocka_unit_test(test_reference_conductance),
		cmocka_unit_test(test_reference_baselines),
		cmocka_unit_test(test_completeness_shrinks),
		cmocka_unit_test(test_internal_batch_invariance),
		cmocka_unit_test(test_vgg_vit),
		cmocka_unit_test(test_bad_options),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
