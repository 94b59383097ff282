/*
 * The elementwise, normalisation and loss ops: forward values computed by
 * hand (in double, to 9 digits) against PyTorch's definitions, and every
 * op's gradient against central finite differences.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/rng.h>

#include "../core/ops/vmath.h"
#include "gradcheck.h"
#include "testutil.h"

#define assert_near(a, b, tol)                                                            \
	do {                                                                               \
		double a_ = (a), b_ = (b);                                                 \
		if (!(fabs(a_ - b_) <= (tol)))                                             \
			fail_msg("%s = %.9g, expected %.9g (tol %g)", #a, a_, b_, (double)(tol)); \
	} while (0)

/* ---- helpers ---------------------------------------------------------------- */

/* New graph for samples of the given shape; fails the test on error. */
static struct iap_graph *new_graph(int ndim, int64_t d0, int64_t d1, int64_t d2)
{
	int64_t shape[3] = { d0, d1, d2 };
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(ndim, shape, &err);
	if (!g)
		fail_msg("iap_graph_new: %s", err.msg);
	return g;
}

static void finalize(struct iap_graph *g)
{
	struct iap_error err;
	if (iap_graph_finalize(g, &err))
		fail_msg("finalize: %s", err.msg);
}

/* A tensor of the given shape holding vals (numel values). */
static struct iap_tensor make_tensor(int ndim, const int64_t *shape, const float *vals)
{
	struct iap_tensor t = { 0 };
	struct iap_error err;
	if (iap_tensor_alloc(&t, ndim, shape, &err))
		fail_msg("alloc: %s", err.msg);
	memcpy(t.data, vals, (size_t)iap_tensor_numel(&t) * sizeof(float));
	return t;
}

/* Forward x and return the graph output; fails the test on error. */
static const struct iap_tensor *run(struct iap_graph *g, const struct iap_tensor *x)
{
	struct iap_error err;
	if (iap_graph_forward(g, x, &err))
		fail_msg("forward: %s", err.msg);
	return iap_graph_output(g);
}

/* Backward from an all-`v` seed to the input; returns g->input_r. */
static const struct iap_tensor *backward_const(struct iap_graph *g, float v)
{
	struct iap_tensor seed = { 0 };
	struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_error err;
	const struct iap_tensor *out = iap_graph_output(g);

	if (iap_tensor_alloc(&seed, out->ndim, out->shape, &err))
		fail_msg("alloc: %s", err.msg);
	for (int64_t i = 0; i < iap_tensor_numel(&seed); i++)
		seed.data[i] = v;
	if (iap_graph_backward(g, iap_ruleset_gradient(), &seed, &wo, &err))
		fail_msg("backward: %s", err.msg);
	iap_tensor_free(&seed);
	return &g->input_r;
}

static void check_grad(struct iap_graph *g, const struct gc_opts *o)
{
	assert_int_equal(gc_check_graph(g, o), 0);
}

/* ---- relu / gelu ------------------------------------------------------------- */

static void test_relu_forward_and_grad(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(1, 6, 0, 0);
	assert_true(iap_relu(g, "act", IAP_GRAPH_INPUT) >= 0);
	finalize(g);

	const float xv[6] = { -1.0f, 0.0f, 2.0f, -3.5f, 0.5f, 1e-3f };
	const float want[6] = { 0.0f, 0.0f, 2.0f, 0.0f, 0.5f, 1e-3f };
	int64_t shp[2] = { 1, 6 };
	struct iap_tensor x = make_tensor(2, shp, xv);
	const struct iap_tensor *y = run(g, &x);
	for (int i = 0; i < 6; i++)
		assert_near(y->data[i], want[i], 0.0);

	/* The gradient is 0 at x == 0, as in PyTorch. */
	const struct iap_tensor *gx = backward_const(g, 1.0f);
	const float gwant[6] = { 0, 0, 1, 0, 1, 1 };
	for (int i = 0; i < 6; i++)
		assert_near(gx->data[i], gwant[i], 0.0);
	iap_tensor_free(&x);

	struct gc_opts o = { .eps = 1e-3 };
	check_grad(g, &o);
	iap_graph_free(g);
}

static void test_gelu_forward(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(1, 6, 0, 0);
	assert_true(iap_gelu(g, "act", IAP_GRAPH_INPUT) >= 0);
	finalize(g);

	const float xv[6] = { 1.0f, -0.5f, 0.0f, 3.0f, -3.0f, 2.0f };
	const double want[6] = { 0.841344746, -0.154268769, 0.0, 2.99595031, -0.00404969409,
				 1.95449974 };
	int64_t shp[2] = { 1, 6 };
	struct iap_tensor x = make_tensor(2, shp, xv);
	const struct iap_tensor *y = run(g, &x);
	for (int i = 0; i < 6; i++)
		assert_near(y->data[i], want[i], 1e-6 * fmax(1.0, fabs(want[i])));

	/* d/dx gelu at 0 is 0.5, at 1 it is Φ(1) + φ(1) = 0.841344746 + 0.241970725. */
	const struct iap_tensor *gx = backward_const(g, 1.0f);
	assert_near(gx->data[2], 0.5, 1e-6);
	assert_near(gx->data[0], 1.083315471, 1e-6);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/*
 * The vector exp and normal CDF behind GELU and softmax against double libm,
 * on a dense sweep: exp within 2 ulp over its whole normal range, Φ within 6e-7
 * relative everywhere, deep in the negative tail included.
 */
static void test_vmath_accuracy(void **state)
{
	double worst_exp = 0.0, worst_cdf = 0.0;

	(void)state;
	for (int i = 0; i <= 2000000; i++) {
		float x = -87.3f + (float)i * (88.3f + 87.3f) / 2000000.0f;
		double want = exp((double)x), got = iap_vexpf(x);
		double ulp = nextafterf((float)want, INFINITY) - (float)want;
		double e = fabs(got - want) / ulp;

		if (e > worst_exp)
			worst_exp = e;
	}
	assert_true(worst_exp <= 2.0);
	for (int i = 0; i <= 400000; i++) {
		float x = -13.0f + (float)i * 26.0f / 400000.0f;
		double want = 0.5 * erfc(-(double)x * M_SQRT1_2), got = iap_vnormcdf(x);
		double e = fabs(got - want) / want;

		if (e > worst_cdf)
			worst_cdf = e;
	}
	assert_true(worst_cdf <= 6e-7);
	/* The ends: underflow to 0, overflow to +inf, NaN kept. */
	assert_true(iap_vexpf(-88.0f) == 0.0f);
	assert_true(iap_vexpf(-1000.0f) == 0.0f);
	assert_true(isinf(iap_vexpf(1000.0f)) && iap_vexpf(1000.0f) > 0.0f);
	assert_true(isnan(iap_vexpf(NAN)));
	assert_true(iap_vexpf(0.0f) == 1.0f);
	assert_true(iap_vnormcdf(-40.0f) == 0.0f);
	assert_true(iap_vnormcdf(40.0f) == 1.0f);
	assert_true(isnan(iap_vnormcdf(NAN)));
	assert_true(iap_vnormcdf(INFINITY) == 1.0f && iap_vnormcdf(-INFINITY) == 0.0f);
	assert_true(isinf(iap_vexpf(INFINITY)) && iap_vexpf(-INFINITY) == 0.0f);
}

/* A long GELU (every vector lane and the tail of a chunk) against double libm, values and gradient. */
static void test_gelu_long(void **state)
{
	enum { N = 70001 };
	(void)state;
	struct iap_graph *g = new_graph(1, N, 0, 0);
	assert_true(iap_gelu(g, "act", IAP_GRAPH_INPUT) >= 0);
	finalize(g);
	static float xv[N];
	for (int i = 0; i < N; i++)
		xv[i] = -9.0f + 18.0f * (float)i / (float)(N - 1);
	int64_t shp[2] = { 1, N };
	struct iap_tensor x = make_tensor(2, shp, xv);
	const struct iap_tensor *y = run(g, &x);
	for (int i = 0; i < N; i++) {
		double v = xv[i], cdf = 0.5 * erfc(-v * M_SQRT1_2);
		assert_true(fabs(y->data[i] - v * cdf) <= 8e-7 * fabs(v * cdf) + 1e-30);
	}
	const struct iap_tensor *gx = backward_const(g, 1.0f);
	for (int i = 0; i < N; i++) {
		double v = xv[i], cdf = 0.5 * erfc(-v * M_SQRT1_2), pdf = exp(-0.5 * v * v) / sqrt(2.0 * M_PI);
		double want = cdf + v * pdf;
		/* Relative to the terms' size: the sum crosses 0 near x = −0.75, where it cancels. */
		assert_true(fabs(gx->data[i] - want) <= 1e-6 * (cdf + fabs(v) * pdf) + 1e-30);
	}
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_gelu_grad(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, 4, 5, 0);
	assert_true(iap_gelu(g, "act", IAP_GRAPH_INPUT) >= 0);
	finalize(g);
	struct gc_opts o = { .in_lo = -3.0f, .in_hi = 3.0f };
	check_grad(g, &o);
	iap_graph_free(g);
}

/* ---- batchnorm ---------------------------------------------------------------- */

/* One sample [2, 1, 2]: channel 0 = {1, 3}, channel 1 = {-2, 4}. */
static void test_batchnorm_eval(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, 2, 1, 2);
	int id = iap_batchnorm2d(g, "bn", IAP_GRAPH_INPUT, 1e-5f, 0.1f);
	assert_true(id >= 0);
	finalize(g);

	struct iap_node *n = &g->nodes[id];
	assert_int_equal(n->n_params, 4);
	assert_string_equal(n->params[0].key, "bn.weight");
	assert_string_equal(n->params[1].key, "bn.bias");
	assert_string_equal(n->params[2].key, "bn.running_mean");
	assert_string_equal(n->params[3].key, "bn.running_var");
	assert_true(n->params[2].flags & IAP_PARAM_BUFFER);
	assert_true(n->params[3].flags & IAP_PARAM_BUFFER);
	assert_false(n->params[3].flags & IAP_PARAM_TRAINABLE);
	/* Fresh BN: weight 1, bias 0, running var 1. */
	assert_near(n->params[0].value.data[1], 1.0, 0.0);
	assert_near(n->params[3].value.data[0], 1.0, 0.0);

	const float w[2] = { 2.0f, 0.5f }, b[2] = { 0.1f, -1.0f };
	const float rm[2] = { 1.0f, -1.0f }, rv[2] = { 4.0f, 0.25f };
	memcpy(n->params[0].value.data, w, sizeof(w));
	memcpy(n->params[1].value.data, b, sizeof(b));
	memcpy(n->params[2].value.data, rm, sizeof(rm));
	memcpy(n->params[3].value.data, rv, sizeof(rv));

	const float xv[4] = { 1.0f, 3.0f, -2.0f, 4.0f };
	int64_t shp[4] = { 1, 2, 1, 2 };
	struct iap_tensor x = make_tensor(4, shp, xv);
	const struct iap_tensor *y = run(g, &x);
	const double want[4] = { 0.1, 2.0999975, -1.99998, 3.9999 };
	for (int i = 0; i < 4; i++)
		assert_near(y->data[i], want[i], 1e-6);

	/* Eval gradient is the plain affine one: w / √(rv + eps). */
	const struct iap_tensor *gx = backward_const(g, 1.0f);
	assert_near(gx->data[0], 2.0 / sqrt(4.00001), 1e-6);
	assert_near(gx->data[3], 0.5 / sqrt(0.25001), 1e-6);
	/* Running stats untouched in eval. */
	assert_near(g->nodes[id].params[2].value.data[0], 1.0, 0.0);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* Two samples [2, 1, 2]: batch statistics, output and the running-stat update. */
static void test_batchnorm_train_stats(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, 2, 1, 2);
	int id = iap_batchnorm2d(g, "bn", IAP_GRAPH_INPUT, 1e-5f, 0.1f);
	assert_true(id >= 0);
	finalize(g);
	iap_graph_set_training(g, 1);

	struct iap_node *n = &g->nodes[id];
	const float w[2] = { 1.5f, -1.0f }, b[2] = { 0.5f, 0.25f };
	memcpy(n->params[0].value.data, w, sizeof(w));
	memcpy(n->params[1].value.data, b, sizeof(b));

	/* ch0 = {1, 2, 3, 6}: mean 3, var 3.5; ch1 = {0, -1, 2, 5}: mean 1.5, var 5.25. */
	const float xv[8] = { 1, 2, 0, -1, 3, 6, 2, 5 };
	int64_t shp[4] = { 2, 2, 1, 2 };
	struct iap_tensor x = make_tensor(4, shp, xv);
	const struct iap_tensor *y = run(g, &x);
	const double want[8] = { -1.10356516, -0.30178258, 0.904653047, 1.34108841,
				 0.5,         2.90534774,  0.0317823176, -1.27752378 };
	for (int i = 0; i < 8; i++)
		assert_near(y->data[i], want[i], 2e-6);

	/* rm = 0.9·0 + 0.1·mean, rv = 0.9·1 + 0.1·var·n/(n−1). */
	n = &g->nodes[id];
	assert_near(n->params[2].value.data[0], 0.3, 1e-7);
	assert_near(n->params[2].value.data[1], 0.15, 1e-7);
	assert_near(n->params[3].value.data[0], 1.36666667, 1e-6);
	assert_near(n->params[3].value.data[1], 1.6, 1e-6);

	/* A constant upstream gradient is annihilated by the batch statistics. */
	const struct iap_tensor *gx = backward_const(g, 1.0f);
	for (int i = 0; i < 8; i++)
		assert_near(gx->data[i], 0.0, 1e-6);

	/* A second step moves the running stats again (same batch). */
	run(g, &x);
	n = &g->nodes[id];
	assert_near(n->params[2].value.data[0], 0.9 * 0.3 + 0.1 * 3.0, 1e-6);
	iap_tensor_free(&x);

	/* One value per channel cannot be normalised in training (PyTorch refuses too). */
	int64_t one[4] = { 1, 2, 1, 1 };
	struct iap_graph *g1 = new_graph(3, 2, 1, 1);
	assert_true(iap_batchnorm2d(g1, "bn", IAP_GRAPH_INPUT, 1e-5f, 0.1f) >= 0);
	finalize(g1);
	iap_graph_set_training(g1, 1);
	const float x1v[2] = { 1, 2 };
	struct iap_tensor x1 = make_tensor(4, one, x1v);
	struct iap_error err;
	assert_int_equal(iap_graph_forward(g1, &x1, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "more than 1 value per channel"));
	iap_tensor_free(&x1);
	iap_graph_free(g1);
	iap_graph_free(g);
}

static void test_batchnorm_grad(void **state)
{
	(void)state;
	for (int training = 0; training <= 1; training++) {
		struct iap_graph *g = new_graph(3, 3, 2, 2);
		assert_true(iap_batchnorm2d(g, "bn", IAP_GRAPH_INPUT, 1e-5f, 0.1f) >= 0);
		finalize(g);
		tu_randomize_params(g, 7, 1.0f);
		iap_graph_set_training(g, training);
		struct gc_opts o = { .batch = 3, .seed = 11 };
		check_grad(g, &o);
		iap_graph_free(g);
	}
}

/* ---- layernorm ------------------------------------------------------------------ */

static void test_layernorm_forward(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(1, 4, 0, 0);
	int id = iap_layernorm(g, "ln", IAP_GRAPH_INPUT, 1e-6f);
	assert_true(id >= 0);
	finalize(g);
	assert_string_equal(g->nodes[id].params[0].key, "ln.weight");
	assert_string_equal(g->nodes[id].params[1].key, "ln.bias");

	const float xv[8] = { 1, 2, 3, 4, 5, 5, 5, 5 };
	int64_t shp[2] = { 2, 4 };
	struct iap_tensor x = make_tensor(2, shp, xv);
	const struct iap_tensor *y = run(g, &x);
	const double want[4] = { -1.34164025, -0.447213417, 0.447213417, 1.34164025 };
	for (int i = 0; i < 4; i++)
		assert_near(y->data[i], want[i], 1e-6);
	/* A constant row has zero variance: eps keeps it finite, output = bias = 0. */
	for (int i = 4; i < 8; i++)
		assert_near(y->data[i], 0.0, 0.0);

	/* Affine: w = {1, 2, -1, 0.5}, b = {0, 1, 0, -1}. */
	const float w[4] = { 1, 2, -1, 0.5f }, b[4] = { 0, 1, 0, -1 };
	memcpy(g->nodes[id].params[0].value.data, w, sizeof(w));
	memcpy(g->nodes[id].params[1].value.data, b, sizeof(b));
	y = run(g, &x);
	const double wa[4] = { -1.34164025, 0.105573167, -0.447213417, -0.329179875 };
	for (int i = 0; i < 4; i++)
		assert_near(y->data[i], wa[i], 1e-6);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_layernorm_grad(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, 3, 6, 0);
	assert_true(iap_layernorm(g, "ln", IAP_GRAPH_INPUT, 1e-6f) >= 0);
	finalize(g);
	tu_randomize_params(g, 3, 1.0f);
	struct gc_opts o = { .seed = 5 };
	check_grad(g, &o);
	iap_graph_free(g);
}

/* ---- dropout -------------------------------------------------------------------- */

static void test_dropout_forward(void **state)
{
	(void)state;
	enum { N = 4000 };
	const float p = 0.3f;
	struct iap_graph *g = new_graph(1, N, 0, 0);
	assert_true(iap_dropout(g, "drop", IAP_GRAPH_INPUT, p) >= 0);
	finalize(g);

	struct iap_tensor x = tu_rand_tensor(2, 2, (int64_t)1, (int64_t)N);
	/* Eval: the identity. */
	const struct iap_tensor *y = run(g, &x);
	assert_memory_equal(y->data, x.data, N * sizeof(float));

	/* Training: the mask is exactly what the seeded generator draws, in order. */
	iap_graph_set_training(g, 1);
	iap_graph_seed(g, 99);
	y = run(g, &x);
	struct iap_rng r;
	iap_rng_seed(&r, 99);
	const float scale = 1.0f / (1.0f - p);
	int dropped = 0;
	for (int i = 0; i < N; i++) {
		int drop = iap_rng_uniform(&r) < p;
		dropped += drop;
		assert_near(y->data[i], drop ? 0.0f : x.data[i] * scale, 1e-6);
	}
	assert_in_range(dropped, N * 0.27, N * 0.33);

	/* The gradient uses the same mask. */
	const struct iap_tensor *gx = backward_const(g, 1.0f);
	iap_rng_seed(&r, 99);
	for (int i = 0; i < N; i++)
		assert_near(gx->data[i], iap_rng_uniform(&r) < p ? 0.0 : scale, 1e-6);
	iap_tensor_free(&x);
	iap_graph_free(g);

	/* p = 1 drops everything (zeros, never NaN); bad p is a build error. */
	struct iap_graph *g1 = new_graph(1, 8, 0, 0);
	assert_true(iap_dropout(g1, "drop", IAP_GRAPH_INPUT, 1.0f) >= 0);
	finalize(g1);
	iap_graph_set_training(g1, 1);
	struct iap_tensor x1 = tu_rand_tensor(3, 2, (int64_t)2, (int64_t)8);
	y = run(g1, &x1);
	for (int i = 0; i < 16; i++)
		assert_near(y->data[i], 0.0, 0.0);
	iap_tensor_free(&x1);
	iap_graph_free(g1);

	struct iap_graph *g2 = new_graph(1, 8, 0, 0);
	struct iap_error err;
	assert_int_equal(iap_dropout(g2, "drop", IAP_GRAPH_INPUT, 1.5f), -1);
	assert_int_equal(iap_graph_finalize(g2, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "drop"));
	iap_graph_free(g2);
}

static void test_dropout_grad(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, 4, 5, 0);
	int d = iap_dropout(g, "drop", IAP_GRAPH_INPUT, 0.4f);
	assert_true(d >= 0);
	assert_true(iap_gelu(g, "act", d) >= 0);
	finalize(g);
	iap_graph_set_training(g, 1);
	check_grad(g, NULL);
	/* The check was meaningful: the mask dropped something and kept something. */
	int zeros = 0;
	for (int64_t i = 0; i < iap_tensor_numel(&g->nodes[d].aux[0]); i++)
		zeros += g->nodes[d].aux[0].data[i] == 0.0f;
	assert_true(zeros > 0 && zeros < iap_tensor_numel(&g->nodes[d].aux[0]));
	iap_graph_free(g);
}

/* ---- flatten / add ------------------------------------------------------------- */

static void test_flatten(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, 2, 3, 4);
	int f = iap_flatten(g, "flat", IAP_GRAPH_INPUT);
	assert_true(f >= 0);
	assert_int_equal(g->nodes[f].out_ndim, 1);
	assert_int_equal(g->nodes[f].out_shape[0], 24);
	/* Softmax over the flattened axis makes the element order matter for the check. */
	assert_true(iap_softmax(g, "sm", f) >= 0);
	finalize(g);

	struct iap_tensor x = tu_rand_tensor(4, 4, (int64_t)2, (int64_t)2, (int64_t)3, (int64_t)4);
	run(g, &x);
	const struct iap_tensor *fo = &g->nodes[f].out;
	assert_int_equal(fo->ndim, 2);
	assert_int_equal(fo->shape[0], 2);
	assert_int_equal(fo->shape[1], 24);
	assert_memory_equal(fo->data, x.data, 48 * sizeof(float));
	iap_tensor_free(&x);

	check_grad(g, NULL);
	iap_graph_free(g);
}

static void test_add(void **state)
{
	(void)state;
	/* Two branches from the input, joined, plus a residual from the input itself. */
	struct iap_graph *g = new_graph(2, 3, 4, 0);
	int a = iap_gelu(g, "a", IAP_GRAPH_INPUT);
	int b = iap_softmax(g, "b", IAP_GRAPH_INPUT);
	int s = iap_add(g, "sum", a, b);
	assert_true(s >= 0);
	assert_true(iap_add(g, "res", s, IAP_GRAPH_INPUT) >= 0);
	finalize(g);

	/* x = 1 everywhere: gelu(1) + 1/4 + 1. */
	float ones[12];
	for (int i = 0; i < 12; i++)
		ones[i] = 1.0f;
	int64_t shp[3] = { 1, 3, 4 };
	struct iap_tensor x = make_tensor(3, shp, ones);
	const struct iap_tensor *y = run(g, &x);
	for (int i = 0; i < 12; i++)
		assert_near(y->data[i], 0.841344746 + 0.25 + 1.0, 1e-6);
	/* All-ones upstream: gelu'(1) + 0 (softmax rows sum to 1) + 1 from the residual. */
	const struct iap_tensor *gx = backward_const(g, 1.0f);
	for (int i = 0; i < 12; i++)
		assert_near(gx->data[i], 1.083315471 + 1.0, 1e-6);
	iap_tensor_free(&x);

	struct gc_opts o = { .seed = 9 };
	check_grad(g, &o);
	iap_graph_free(g);

	/* Unequal shapes are a build error naming both. */
	struct iap_graph *g2 = new_graph(2, 2, 3, 0);
	int f = iap_flatten(g2, "flat", IAP_GRAPH_INPUT);
	struct iap_error err;
	assert_int_equal(iap_add(g2, "bad", IAP_GRAPH_INPUT, f), -1);
	assert_int_equal(iap_graph_finalize(g2, &err), IAP_ESHAPE);
	assert_non_null(strstr(err.msg, "bad"));
	assert_non_null(strstr(err.msg, "[2, 3]"));
	assert_non_null(strstr(err.msg, "[6]"));
	iap_graph_free(g2);
}

/* ---- softmax ------------------------------------------------------------------- */

static void test_softmax_rows(void **state)
{
	(void)state;
	float v[12] = { 1, 2, 3, 0, 0, 0, 1000, 1000, 0, -1, 0.5f, 2 };
	const double want[12] = { 0.0900305732, 0.244728471, 0.665240956,
				  1.0 / 3, 1.0 / 3, 1.0 / 3,
				  0.5, 0.5, 0.0,
				  0.0391125733, 0.175290392, 0.785597035 };
	float out[12];
	iap_softmax_rows(v, out, 4, 3);
	for (int i = 0; i < 12; i++)
		assert_near(out[i], want[i], 1e-7);
	/* In place gives the same, and large logits do not overflow. */
	iap_softmax_rows(v, v, 4, 3);
	assert_memory_equal(v, out, sizeof(out));

	/* The node: softmax over the last axis of [2, 3] samples. */
	struct iap_graph *g = new_graph(2, 2, 3, 0);
	assert_true(iap_softmax(g, "sm", IAP_GRAPH_INPUT) >= 0);
	finalize(g);
	const float xv[6] = { 1, 2, 3, -1, 0.5f, 2 };
	int64_t shp[3] = { 1, 2, 3 };
	struct iap_tensor x = make_tensor(3, shp, xv);
	const struct iap_tensor *y = run(g, &x);
	const double wn[6] = { 0.0900305732, 0.244728471, 0.665240956,
			       0.0391125733, 0.175290392, 0.785597035 };
	for (int i = 0; i < 6; i++)
		assert_near(y->data[i], wn[i], 1e-7);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_softmax_grad(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, 3, 5, 0);
	assert_true(iap_softmax(g, "sm", IAP_GRAPH_INPUT) >= 0);
	finalize(g);
	struct gc_opts o = { .in_lo = -2.0f, .in_hi = 2.0f };
	check_grad(g, &o);
	iap_graph_free(g);
}

/* ---- cross-entropy ------------------------------------------------------------ */

static void test_cross_entropy_values(void **state)
{
	(void)state;
	const float lv[6] = { 1, 2, 3, 1, 0, -1 };
	int64_t shp[2] = { 2, 3 };
	struct iap_tensor logits = make_tensor(2, shp, lv);
	struct iap_tensor grad = { 0 };
	struct iap_error err;
	float loss = 0.0f;
	const int labels[2] = { 2, 1 };

	/* Unweighted: mean of 0.40760596 and 1.40760596. */
	assert_int_equal(iap_cross_entropy(&logits, labels, NULL, &loss, &grad, &err), IAP_OK);
	assert_near(loss, 0.907605964, 1e-6);
	const double g0[6] = { 0.0450152866, 0.122364236, -0.167379522,
			       0.332620478, -0.377635764, 0.0450152866 };
	assert_int_equal(grad.ndim, 2);
	assert_int_equal(grad.shape[0], 2);
	assert_int_equal(grad.shape[1], 3);
	for (int i = 0; i < 6; i++)
		assert_near(grad.data[i], g0[i], 1e-7);

	/* Weighted: (0.5·0.40760596 + 2·1.40760596) / 2.5. */
	const float cw[3] = { 1.0f, 2.0f, 0.5f };
	assert_int_equal(iap_cross_entropy(&logits, labels, cw, &loss, &grad, &err), IAP_OK);
	assert_near(loss, 1.20760596, 1e-6);
	const double g1[6] = { 0.0180061146, 0.0489456942, -0.0669518088,
			       0.532192765, -0.604217223, 0.0720244585 };
	for (int i = 0; i < 6; i++)
		assert_near(grad.data[i], g1[i], 1e-7);

	/* Loss only (grad NULL) gives the same number. */
	float l2 = 0.0f;
	assert_int_equal(iap_cross_entropy(&logits, labels, cw, &l2, NULL, &err), IAP_OK);
	assert_near(l2, loss, 0.0);

	/* Huge logits stay finite (log-sum-exp). */
	const float big[3] = { 1000, 0, -1000 };
	int64_t shp1[2] = { 1, 3 };
	struct iap_tensor lb = make_tensor(2, shp1, big);
	const int l0[1] = { 1 };
	assert_int_equal(iap_cross_entropy(&lb, l0, NULL, &loss, NULL, &err), IAP_OK);
	assert_near(loss, 1000.0, 1e-3);
	iap_tensor_free(&lb);

	/* Out-of-range labels name the sample and the label. */
	const int bad[2] = { 0, 3 };
	assert_int_equal(iap_cross_entropy(&logits, bad, NULL, &loss, &grad, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "sample 1"));
	assert_non_null(strstr(err.msg, "label 3"));
	const int neg[2] = { -1, 0 };
	assert_int_equal(iap_cross_entropy(&logits, neg, NULL, &loss, &grad, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "sample 0"));
	assert_non_null(strstr(err.msg, "label -1"));

	iap_tensor_free(&grad);
	iap_tensor_free(&logits);
}

/* Central differences of the loss against the returned gradient, weighted. */
static void test_cross_entropy_grad(void **state)
{
	(void)state;
	struct iap_tensor logits = tu_rand_tensor(21, 2, (int64_t)4, (int64_t)5);
	struct iap_tensor grad = { 0 };
	struct iap_error err;
	const int labels[4] = { 0, 3, 4, 1 };
	const float cw[5] = { 0.5f, 1.0f, 2.0f, 0.25f, 1.5f };
	float loss;

	for (int i = 0; i < 20; i++)
		logits.data[i] *= 3.0f;
	assert_int_equal(iap_cross_entropy(&logits, labels, cw, &loss, &grad, &err), IAP_OK);

	for (int i = 0; i < 20; i++) {
		float keep = logits.data[i], lp, lm;
		const float h = 1e-2f;
		logits.data[i] = keep + h;
		assert_int_equal(iap_cross_entropy(&logits, labels, cw, &lp, NULL, &err), IAP_OK);
		logits.data[i] = keep - h;
		assert_int_equal(iap_cross_entropy(&logits, labels, cw, &lm, NULL, &err), IAP_OK);
		logits.data[i] = keep;
		double num = ((double)lp - lm) / ((double)(keep + h) - (double)(keep - h));
		assert_near(grad.data[i], num, 2e-4 + 1e-2 * fabs(num));
	}
	/* Each row of the gradient sums to 0 (softmax minus one-hot). */
	for (int r = 0; r < 4; r++) {
		double s = 0.0;
		for (int k = 0; k < 5; k++)
			s += grad.data[r * 5 + k];
		assert_near(s, 0.0, 1e-6);
	}
	iap_tensor_free(&grad);
	iap_tensor_free(&logits);
}

/*
 * Sizes above the OpenMP threshold (32768 values), so the parallel loops and
 * the blocked layernorm parameter reduction are the ones checked.
 */
static void test_parallel_sizes(void **state)
{
	(void)state;
	struct gc_opts o = { .batch = 5, .seed = 17, .max_checks = 24 };

	struct iap_graph *g = new_graph(3, 8, 32, 32);
	assert_true(iap_batchnorm2d(g, "bn", IAP_GRAPH_INPUT, 1e-5f, 0.1f) >= 0);
	finalize(g);
	tu_randomize_params(g, 7, 1.0f);
	iap_graph_set_training(g, 1);
	check_grad(g, &o);
	iap_graph_free(g);

	g = new_graph(2, 100, 72, 0);
	int ln = iap_layernorm(g, "ln", IAP_GRAPH_INPUT, 1e-6f);
	int d = iap_dropout(g, "drop", ln, 0.2f);
	assert_true(iap_softmax(g, "sm", d) >= 0);
	finalize(g);
	tu_randomize_params(g, 8, 1.0f);
	iap_graph_set_training(g, 1);
	check_grad(g, &o);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_relu_forward_and_grad),
		cmocka_unit_test(test_gelu_forward),
		cmocka_unit_test(test_gelu_grad),
		cmocka_unit_test(test_vmath_accuracy),
		cmocka_unit_test(test_gelu_long),
		cmocka_unit_test(test_batchnorm_eval),
		cmocka_unit_test(test_batchnorm_train_stats),
		cmocka_unit_test(test_batchnorm_grad),
		cmocka_unit_test(test_layernorm_forward),
		cmocka_unit_test(test_layernorm_grad),
		cmocka_unit_test(test_dropout_forward),
		cmocka_unit_test(test_dropout_grad),
		cmocka_unit_test(test_flatten),
		cmocka_unit_test(test_add),
		cmocka_unit_test(test_softmax_rows),
		cmocka_unit_test(test_softmax_grad),
		cmocka_unit_test(test_cross_entropy_values),
		cmocka_unit_test(test_cross_entropy_grad),
		cmocka_unit_test(test_parallel_sizes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
