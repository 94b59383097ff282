/*
 * The CNN ops: conv2d, linear, maxpool2d, avgpool2d, adaptive_avgpool2d.
 *
 * Forward values are checked against numbers worked out by hand (PyTorch's
 * window, padding, ceil-mode and divisor rules) and, for conv, against a naive
 * direct convolution in double; gradients against central finite differences
 * (gc_check_graph) on odd shapes; the raw conv kernels against naive double
 * references for the forward, input-gradient and weight-gradient.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/ops.h>
#include <iaprune/rng.h>

#include "gradcheck.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------- */

static struct iap_graph *new_graph(int ndim, int64_t d0, int64_t d1, int64_t d2)
{
	int64_t shape[3] = { d0, d1, d2 };
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(ndim, shape, &err);

	assert_non_null(g);
	return g;
}

static void finalize(struct iap_graph *g)
{
	struct iap_error err = { 0 };
	int rc = iap_graph_finalize(g, &err);

	if (rc)
		fail_msg("finalize: %s", err.msg);
}

static void forward(struct iap_graph *g, const struct iap_tensor *x)
{
	struct iap_error err = { 0 };
	int rc = iap_graph_forward(g, x, &err);

	if (rc)
		fail_msg("forward: %s", err.msg);
}

/* A tensor holding the given values (ndim dims follow, then the values come from vals). */
static struct iap_tensor tensor_of(const float *vals, int ndim, const int64_t *shape)
{
	struct iap_tensor t = { 0 };
	struct iap_error err;

	assert_int_equal(iap_tensor_alloc(&t, ndim, shape, &err), IAP_OK);
	if (vals)
		memcpy(t.data, vals, (size_t)iap_tensor_numel(&t) * sizeof(float));
	return t;
}

static void assert_close(const float *got, const double *want, size_t n, double tol)
{
	for (size_t i = 0; i < n; i++)
		if (!(fabs((double)got[i] - want[i]) <= tol))
			fail_msg("entry %zu: got %.8g, want %.8g", i, (double)got[i], want[i]);
}

/* Walk the plain gradient back from `seed` to the graph input (no parameter gradients). */
static void backward_to_input(struct iap_graph *g, const struct iap_tensor *seed)
{
	struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_error err = { 0 };
	int rc = iap_graph_backward(g, iap_ruleset_gradient(), seed, &wo, &err);

	if (rc)
		fail_msg("backward: %s", err.msg);
}

/* The 4×4 plane the pooling cases use. */
static const float plane4[16] = {
	1, 5, 2, 0,
	3, -1, 4, 7,
	6, 2, 8, 1,
	-2, 9, 0, 3,
};

/* ---- maxpool2d ------------------------------------------------------------------ */

/*
 * k3 s2 p1 on 4×4: floor mode gives 2×2, ceil mode 3×3 (the third window
 * starts on row 3, inside the input). Windows by hand:
 *   rows/cols {0,1}, {1,2,3}, {3}.
 */
static void test_maxpool_forward_hand(void **state)
{
	static const double want_ceil[9] = { 5, 7, 7, 9, 9, 7, 9, 9, 3 };
	static const double want_floor[4] = { 5, 7, 9, 9 };
	/* Argmax gradient with all-ones upstream: 5@1 once, 7@7 three times, 9@13 four times, 3@15 once. */
	static const double want_dx[16] = { 0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 4, 0, 1 };
	int64_t xs[4] = { 1, 1, 4, 4 }, ss[4] = { 1, 1, 3, 3 };
	struct iap_tensor x = tensor_of(plane4, 4, xs), seed = tensor_of(NULL, 4, ss);
	struct iap_graph *g;
	const struct iap_tensor *y;

	(void)state;
	g = new_graph(3, 1, 4, 4);
	assert_int_equal(iap_maxpool2d(g, "pool", IAP_GRAPH_INPUT, 3, 2, 1, 1), 0);
	finalize(g);
	forward(g, &x);
	y = iap_graph_output(g);
	assert_int_equal(y->shape[2], 3);
	assert_int_equal(y->shape[3], 3);
	assert_close(y->data, want_ceil, 9, 0.0);
	for (int i = 0; i < 9; i++)
		seed.data[i] = 1.0f;
	backward_to_input(g, &seed);
	assert_close(g->input_r.data, want_dx, 16, 0.0);
	iap_graph_free(g);

	g = new_graph(3, 1, 4, 4);
	assert_int_equal(iap_maxpool2d(g, "pool", IAP_GRAPH_INPUT, 3, 2, 1, 0), 0);
	finalize(g);
	forward(g, &x);
	y = iap_graph_output(g);
	assert_int_equal(y->shape[2], 2);
	assert_int_equal(y->shape[3], 2);
	assert_close(y->data, want_floor, 4, 0.0);
	iap_graph_free(g);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
}

/* Ties go to the first maximum in scan order (strict >), as in PyTorch. */
static void test_maxpool_ties(void **state)
{
	/* 1×1×2×3: k2 s1 → 1×2 outputs over {0,1,3,4} and {1,2,4,5}. */
	static const float xv[6] = { 2, 4, 4, 1, 4, 4 };
	static const double want_y[2] = { 4, 4 };
	/* Both windows' first 4 in scan order is index 1. */
	static const double want_dx[6] = { 0, 3, 0, 0, 0, 0 };
	int64_t xs[4] = { 1, 1, 2, 3 }, ss[4] = { 1, 1, 1, 2 };
	struct iap_tensor x = tensor_of(xv, 4, xs), seed = tensor_of(NULL, 4, ss);
	struct iap_graph *g = new_graph(3, 1, 2, 3);

	(void)state;
	assert_int_equal(iap_maxpool2d(g, "", IAP_GRAPH_INPUT, 2, 1, 0, 0), 0);
	finalize(g);
	forward(g, &x);
	assert_close(iap_graph_output(g)->data, want_y, 2, 0.0);
	seed.data[0] = 1.0f;
	seed.data[1] = 2.0f;
	backward_to_input(g, &seed);
	assert_close(g->input_r.data, want_dx, 6, 0.0);
	iap_graph_free(g);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
}

/*
 * Max pools (the vector kernel for windows inside the plane, the per-output
 * scan at the borders) against a direct scan with PyTorch's rule: the window
 * clipped to the plane, a larger value or a NaN takes it, row-major order.
 * Ties from values on a coarse grid, a few NaNs (two in one window: the later
 * one is the argmax), odd sizes, planes wide enough for every vector lane;
 * VGG's 2×2/2, ResNet's 3×3/2 pad 1, and stride 1 and ceil mode.
 */
static void test_maxpool_against_scan(void **state)
{
	enum { C = 3, H = 9, W = 37 };
	static const struct {
		int k, s, p, ceil;
	} cfg[] = { { 2, 2, 0, 0 }, { 3, 2, 1, 0 }, { 3, 1, 1, 0 }, { 3, 2, 0, 1 }, { 2, 2, 0, 1 } };

	(void)state;
	for (size_t ci = 0; ci < sizeof(cfg) / sizeof(cfg[0]); ci++) {
		int64_t xs[4] = { 2, C, H, W };
		struct iap_tensor x = tensor_of(NULL, 4, xs);
		struct iap_graph *g = new_graph(3, C, H, W);
		struct iap_node *n;
		const struct iap_tensor *in[IAP_NODE_MAX_INPUTS] = { &x };
		struct iap_error err;
		struct iap_rng rng;
		const int32_t *arg;
		int oh_n, ow_n;

		iap_rng_seed(&rng, 41 + ci);
		for (int64_t i = 0; i < iap_tensor_numel(&x); i++)
			x.data[i] = (float)(int)(iap_rng_uniform(&rng) * 4.0f) - 1.0f;
		assert_int_equal(iap_maxpool2d(g, "p", IAP_GRAPH_INPUT, cfg[ci].k, cfg[ci].s, cfg[ci].p,
					       cfg[ci].ceil), 0);
		finalize(g);
		forward(g, &x);
		/* The engine refuses NaN inputs, so the op itself is run again on them. */
		x.data[5] = NAN;
		x.data[W + 5] = NAN;
		x.data[H * W + 2 * W + 10] = NAN;
		n = &g->nodes[0];
		assert_int_equal(n->ops->forward(g, n, in, &n->out, &err), IAP_OK);
		arg = (const int32_t *)n->aux[0].data;
		oh_n = (int)n->out_shape[1];
		ow_n = (int)n->out_shape[2];
		for (int p = 0; p < 2 * C; p++)
			for (int oh = 0; oh < oh_n; oh++)
				for (int ow = 0; ow < ow_n; ow++) {
					const float *xp = x.data + (size_t)p * H * W;
					int h0 = oh * cfg[ci].s - cfg[ci].p, w0 = ow * cfg[ci].s - cfg[ci].p;
					int h1 = h0 + cfg[ci].k, w1 = w0 + cfg[ci].k;
					float m = -INFINITY, y = n->out.data[((size_t)p * oh_n + oh) * ow_n + ow];
					int mi;

					h0 = h0 < 0 ? 0 : h0;
					w0 = w0 < 0 ? 0 : w0;
					h1 = h1 > H ? H : h1;
					w1 = w1 > W ? W : w1;
					mi = h0 * W + w0;
					for (int ih = h0; ih < h1; ih++)
						for (int iw = w0; iw < w1; iw++)
							if (xp[ih * W + iw] > m || isnan(xp[ih * W + iw])) {
								m = xp[ih * W + iw];
								mi = ih * W + iw;
							}
					assert_int_equal(arg[((size_t)p * oh_n + oh) * ow_n + ow], mi);
					if (isnan(m))
						assert_true(isnan(y));
					else
						assert_true(y == m);
				}
		iap_graph_free(g);
		iap_tensor_free(&x);
	}
}

/* PyTorch's output sizes, including the ceil-mode "last window starts inside" rule. */
static void test_pool_output_sizes(void **state)
{
	static const struct {
		int h, k, s, p, ceil, want;
	} cases[] = {
		{ 4, 3, 2, 1, 0, 2 },
		{ 4, 3, 2, 1, 1, 3 },
		{ 6, 3, 2, 1, 1, 4 },
		/* (5+2−3+2)/3+1 = 3, but window 2 would start at 6−1 = 5 ≥ H: dropped. */
		{ 5, 3, 3, 1, 1, 2 },
		{ 5, 2, 2, 0, 0, 2 },
		{ 5, 2, 2, 0, 1, 3 },
		{ 7, 3, 2, 0, 1, 3 },
		{ 8, 3, 2, 0, 1, 4 },
		/* stride 0 is PyTorch's stride=None: the kernel size. */
		{ 6, 2, 0, 0, 0, 3 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct iap_graph *g = new_graph(3, 2, cases[i].h, cases[i].h);
		int m = iap_maxpool2d(g, "m", IAP_GRAPH_INPUT, cases[i].k, cases[i].s, cases[i].p,
				      cases[i].ceil);
		int a = iap_avgpool2d(g, "a", IAP_GRAPH_INPUT, cases[i].k, cases[i].s, cases[i].p,
				      cases[i].ceil, 1);

		assert_int_equal(m, 0);
		assert_int_equal(a, 1);
		if (g->nodes[m].out_shape[1] != cases[i].want || g->nodes[a].out_shape[2] != cases[i].want)
			fail_msg("case %zu (H %d k %d s %d p %d ceil %d): got %lld/%lld, want %d", i,
				 cases[i].h, cases[i].k, cases[i].s, cases[i].p, cases[i].ceil,
				 (long long)g->nodes[m].out_shape[1], (long long)g->nodes[a].out_shape[2],
				 cases[i].want);
		assert_int_equal(g->nodes[m].out_shape[0], 2);
		iap_graph_free(g);
	}
}

/* ---- avgpool2d ------------------------------------------------------------------ */

/*
 * k3 s2 p1 ceil on 4×4. Window sums (same windows as the maxpool case):
 *   8 17 7 / 17 33 11 / 7 12 3.
 * count_include_pad divisors count padding but stop at the padded edge
 * (rows −1..1, 1..3, 3..4 → 3, 3, 2 cells): 9 9 6 / 9 9 6 / 6 6 4.
 * Without it, real cells only: 4 6 2 / 6 9 3 / 2 3 1.
 */
static void test_avgpool_forward_hand(void **state)
{
	static const double want_cip[9] = {
		8.0 / 9, 17.0 / 9, 7.0 / 6, 17.0 / 9, 33.0 / 9, 11.0 / 6, 7.0 / 6, 12.0 / 6, 3.0 / 4,
	};
	static const double want_nocip[9] = {
		8.0 / 4, 17.0 / 6, 7.0 / 2, 17.0 / 6, 33.0 / 9, 11.0 / 3, 7.0 / 2, 12.0 / 3, 3.0 / 1,
	};
	/* Gradient of Σ y (cip) at x[3][3]: windows (1,1) /9, (1,2) /6, (2,1) /6, (2,2) /4. */
	const double want_dx33 = 1.0 / 9 + 1.0 / 6 + 1.0 / 6 + 1.0 / 4;
	/* x[0][0] is only in window (0,0). */
	const double want_dx00 = 1.0 / 9;
	int64_t xs[4] = { 1, 1, 4, 4 }, ss[4] = { 1, 1, 3, 3 };
	struct iap_tensor x = tensor_of(plane4, 4, xs), seed = tensor_of(NULL, 4, ss);

	(void)state;
	for (int cip = 1; cip >= 0; cip--) {
		struct iap_graph *g = new_graph(3, 1, 4, 4);

		assert_int_equal(iap_avgpool2d(g, "pool", IAP_GRAPH_INPUT, 3, 2, 1, 1, cip), 0);
		finalize(g);
		forward(g, &x);
		assert_close(iap_graph_output(g)->data, cip ? want_cip : want_nocip, 9, 1e-6);
		if (cip) {
			for (int i = 0; i < 9; i++)
				seed.data[i] = 1.0f;
			backward_to_input(g, &seed);
			assert_true(fabs(g->input_r.data[15] - want_dx33) < 1e-6);
			assert_true(fabs(g->input_r.data[0] - want_dx00) < 1e-6);
		}
		iap_graph_free(g);
	}
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
}

/* ---- adaptive_avgpool2d -------------------------------------------------------- */

/*
 * H 5 → 3: bins [0,2) [1,4) [3,5); W 3 → 7: [0,1) [0,1) [0,2) [1,2) [1,3)
 * [2,3) [2,3) (overlapping and repeated). With x[h][w] = 10h + w every bin's
 * mean is 10·mean(h) + mean(w).
 */
static void test_adaptive_forward_hand(void **state)
{
	static const double mh[3] = { 0.5, 2.0, 3.5 };
	static const double mw[7] = { 0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 2.0 };
	int64_t xs[4] = { 1, 2, 5, 3 };
	struct iap_tensor x = tensor_of(NULL, 4, xs);
	double want[2 * 21];
	struct iap_graph *g = new_graph(3, 2, 5, 3);
	const struct iap_tensor *y;

	(void)state;
	for (int c = 0; c < 2; c++)
		for (int h = 0; h < 5; h++)
			for (int w = 0; w < 3; w++)
				x.data[(c * 5 + h) * 3 + w] = (float)(10 * h + w + 100 * c);
	for (int c = 0; c < 2; c++)
		for (int i = 0; i < 3; i++)
			for (int j = 0; j < 7; j++)
				want[(c * 3 + i) * 7 + j] = 10 * mh[i] + mw[j] + 100 * c;
	assert_int_equal(iap_adaptive_avgpool2d(g, "avgpool", IAP_GRAPH_INPUT, 3, 7), 0);
	finalize(g);
	forward(g, &x);
	y = iap_graph_output(g);
	assert_int_equal(y->shape[1], 2);
	assert_int_equal(y->shape[2], 3);
	assert_int_equal(y->shape[3], 7);
	assert_close(y->data, want, 42, 1e-5);
	iap_graph_free(g);
	iap_tensor_free(&x);

	/* VGG's 7×7 head on a 1×1 map: every output is the one input value. */
	{
		int64_t s1[4] = { 1, 1, 1, 1 };
		static const float v = 2.5f;
		struct iap_tensor x1 = tensor_of(&v, 4, s1);
		double want49[49];

		for (int i = 0; i < 49; i++)
			want49[i] = 2.5;
		g = new_graph(3, 1, 1, 1);
		assert_int_equal(iap_adaptive_avgpool2d(g, "", IAP_GRAPH_INPUT, 7, 7), 0);
		finalize(g);
		forward(g, &x1);
		assert_close(iap_graph_output(g)->data, want49, 49, 0.0);
		iap_graph_free(g);
		iap_tensor_free(&x1);
	}
}

/* ---- conv2d and linear forward ---------------------------------------------------- */

/*
 * 3×3 input 1..9, 2×2 all-ones kernel, stride 2, padding 1, bias 0.5:
 * windows {1}, {2,3}, {4,7}, {5,6,8,9} → 1.5 5.5 11.5 28.5.
 */
static void test_conv_forward_hand(void **state)
{
	static const float xv[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	static const double want[4] = { 1.5, 5.5, 11.5, 28.5 };
	int64_t xs[4] = { 1, 1, 3, 3 };
	struct iap_tensor x = tensor_of(xv, 4, xs);
	struct iap_graph *g = new_graph(3, 1, 3, 3);
	struct iap_param *w, *b;

	(void)state;
	assert_int_equal(iap_conv2d(g, "features.0", IAP_GRAPH_INPUT, 1, 2, 2, 2, 2, 1, 1, 1), 0);
	finalize(g);
	w = iap_graph_find_param(g, "features.0.weight");
	b = iap_graph_find_param(g, "features.0.bias");
	assert_non_null(w);
	assert_non_null(b);
	assert_int_equal(w->value.ndim, 4);
	assert_int_equal(w->value.shape[0], 1);
	assert_int_equal(w->value.shape[2], 2);
	for (int i = 0; i < 4; i++)
		w->value.data[i] = 1.0f;
	b->value.data[0] = 0.5f;
	forward(g, &x);
	assert_int_equal(iap_graph_output(g)->shape[2], 2);
	assert_int_equal(iap_graph_output(g)->shape[3], 2);
	assert_close(iap_graph_output(g)->data, want, 4, 1e-6);
	iap_graph_free(g);
	iap_tensor_free(&x);
}

/* Naive direct convolution in double: y[n][o][i][j] = b[o] + Σ w·x (zero padding). */
static void naive_conv(const struct iap_conv_geom *cg, const float *x, const float *w,
		       const float *b, double *y)
{
	for (int n = 0; n < cg->n; n++)
		for (int o = 0; o < cg->out_ch; o++)
			for (int i = 0; i < cg->out_h; i++)
				for (int j = 0; j < cg->out_w; j++) {
					double s = b ? b[o] : 0.0;

					for (int c = 0; c < cg->in_ch; c++)
						for (int u = 0; u < cg->kh; u++)
							for (int v = 0; v < cg->kw; v++) {
								int ih = i * cg->stride_h - cg->pad_h + u;
								int iw = j * cg->stride_w - cg->pad_w + v;

								if (ih < 0 || ih >= cg->in_h || iw < 0 || iw >= cg->in_w)
									continue;
								s += (double)w[((o * cg->in_ch + c) * cg->kh + u) * cg->kw + v] *
								     x[((n * cg->in_ch + c) * cg->in_h + ih) * cg->in_w + iw];
							}
					y[((n * cg->out_ch + o) * cg->out_h + i) * cg->out_w + j] = s;
				}
}

/* Stride 2×1, padding 1×2, 3×2 kernel, batch 2 through the graph, against naive_conv. */
static void test_conv_forward_naive(void **state)
{
	struct iap_graph *g = new_graph(3, 3, 7, 6);
	struct iap_tensor x = tu_rand_tensor(11, 4, (int64_t)2, (int64_t)3, (int64_t)7, (int64_t)6);
	struct iap_conv_geom cg;
	const struct iap_tensor *y;
	double *want;
	int id;

	(void)state;
	id = iap_conv2d(g, "c", IAP_GRAPH_INPUT, 4, 3, 2, 2, 1, 1, 2, 1);
	assert_int_equal(id, 0);
	finalize(g);
	tu_randomize_params(g, 5, 0.5f);
	forward(g, &x);
	y = iap_graph_output(g);
	iap_conv_geom_from_node(&cg, &g->nodes[id], 2, g->in_shape);
	/* (7+2−3)/2+1 = 4, (6+4−2)/1+1 = 9 */
	assert_int_equal(cg.out_h, 4);
	assert_int_equal(cg.out_w, 9);
	assert_int_equal(y->shape[2], 4);
	assert_int_equal(y->shape[3], 9);
	want = malloc(2 * 4 * 4 * 9 * sizeof(double));
	assert_non_null(want);
	naive_conv(&cg, x.data, g->nodes[id].params[0].value.data, g->nodes[id].params[1].value.data, want);
	assert_close(y->data, want, 2 * 4 * 4 * 9, 1e-5);
	free(want);
	iap_graph_free(g);
	iap_tensor_free(&x);
}

/* W [[1,2],[3,4],[5,6]], b [.1,.2,.3] applied to each of two tokens. */
static void test_linear_forward_hand(void **state)
{
	static const float xv[4] = { 1, -1, 2, 0.5f };
	static const float wv[6] = { 1, 2, 3, 4, 5, 6 };
	static const float bv[3] = { 0.1f, 0.2f, 0.3f };
	static const double want[6] = { -0.9, -0.8, -0.7, 3.1, 8.2, 13.3 };
	int64_t xs[3] = { 1, 2, 2 };
	struct iap_tensor x = tensor_of(xv, 3, xs);
	struct iap_graph *g = new_graph(2, 2, 2, 0);
	const struct iap_tensor *y;
	struct iap_param *w, *b;

	(void)state;
	assert_int_equal(iap_linear(g, "head", IAP_GRAPH_INPUT, 3, 1), 0);
	finalize(g);
	w = iap_graph_find_param(g, "head.weight");
	b = iap_graph_find_param(g, "head.bias");
	assert_non_null(w);
	assert_non_null(b);
	assert_int_equal(w->value.shape[0], 3);
	assert_int_equal(w->value.shape[1], 2);
	memcpy(w->value.data, wv, sizeof(wv));
	memcpy(b->value.data, bv, sizeof(bv));
	forward(g, &x);
	y = iap_graph_output(g);
	assert_int_equal(y->ndim, 3);
	assert_int_equal(y->shape[1], 2);
	assert_int_equal(y->shape[2], 3);
	assert_close(y->data, want, 6, 1e-6);
	iap_graph_free(g);
	iap_tensor_free(&x);
}

/*
 * The raw linear kernels by hand. x [[1,−1],[2,.5]], W [[1,2],[3,4],[5,6]],
 * dy [[1,0,−1],[.5,2,1]]; the gradient kernels add onto what is there.
 *   y = x·Wᵀ = [[−1,−1,−1],[3,8,13]]
 *   dy·W = [[−4,−4],[11.5,15]]            (dx starts at 1)
 *   dyᵀ·x = [[2,−.75],[4,1],[1,1.5]]      (dW starts at .5)
 *   Σ_rows dy = [1.5,2,0]                 (db starts at 1)
 */
static void test_linear_raw_hand(void **state)
{
	static const float x[4] = { 1, -1, 2, 0.5f }, w[6] = { 1, 2, 3, 4, 5, 6 };
	static const float dy[6] = { 1, 0, -1, 0.5f, 2, 1 };
	static const double want_y[6] = { -1, -1, -1, 3, 8, 13 };
	static const double want_dx[4] = { -3, -3, 12.5, 16 };
	static const double want_dw[6] = { 2.5, -0.25, 4.5, 1.5, 1.5, 2.0 };
	static const double want_db[3] = { 2.5, 3, 1 };
	float y[6], dx[4] = { 1, 1, 1, 1 }, dw[6] = { 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f };
	float db[3] = { 1, 1, 1 };

	(void)state;
	iap_linear_forward_raw(2, 2, 3, x, w, NULL, y);
	assert_close(y, want_y, 6, 1e-6);
	iap_linear_backward_input_raw(2, 2, 3, dy, w, dx);
	assert_close(dx, want_dx, 4, 1e-6);
	iap_linear_backward_params_raw(2, 2, 3, x, dy, dw, db);
	assert_close(dw, want_dw, 6, 1e-6);
	assert_close(db, want_db, 3, 1e-6);

	/* One row takes the matrix-vector path: the first rows of the sums above, bias on. */
	{
		static const float b[3] = { 0.5f, -1, 2 };
		static const double want_y1[3] = { -0.5, -2, 1 }, want_dx1[2] = { -3, -3 };
		static const double want_dw1[6] = { 1.5, -0.5, 0.5, 0.5, -0.5, 1.5 }, want_db1[3] = { 2, 1, 0 };
		float y1[3], dx1[2] = { 1, 1 }, dw1[6] = { 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f };
		float db1[3] = { 1, 1, 1 };

		iap_linear_forward_raw(1, 2, 3, x, w, b, y1);
		assert_close(y1, want_y1, 3, 1e-6);
		iap_linear_backward_input_raw(1, 2, 3, dy, w, dx1);
		assert_close(dx1, want_dx1, 2, 1e-6);
		iap_linear_backward_params_raw(1, 2, 3, x, dy, dw1, db1);
		assert_close(dw1, want_dw1, 6, 1e-6);
		assert_close(db1, want_db1, 3, 1e-6);
	}
}

/* ---- raw conv kernels against naive double references ------------------------------ */

static void check_raw_conv(const struct iap_conv_geom *cg, uint64_t seed)
{
	size_t xn = (size_t)cg->n * cg->in_ch * cg->in_h * cg->in_w;
	size_t yn = (size_t)cg->n * cg->out_ch * cg->out_h * cg->out_w;
	size_t wn = (size_t)cg->out_ch * cg->in_ch * cg->kh * cg->kw;
	size_t wsn = iap_conv2d_workspace(cg);
	float *x = malloc(xn * sizeof(float)), *w = malloc(wn * sizeof(float));
	float *b = malloc((size_t)cg->out_ch * sizeof(float)), *y = malloc(yn * sizeof(float));
	float *dy = malloc(yn * sizeof(float)), *dx = malloc(xn * sizeof(float));
	float *dw = malloc(wn * sizeof(float)), *db = malloc((size_t)cg->out_ch * sizeof(float));
	float *ws = wsn ? malloc(wsn * sizeof(float)) : NULL;
	double *ry = malloc(yn * sizeof(double)), *rdx = malloc(xn * sizeof(double));
	double *rdw = malloc(wn * sizeof(double)), *rdb = malloc((size_t)cg->out_ch * sizeof(double));
	struct iap_rng r;

	assert_true(x && w && b && y && dy && dx && dw && db && ry && rdx && rdw && rdb);
	assert_true(wsn == 0 || ws);
	iap_rng_seed(&r, seed);
	tu_fill_uniform(x, xn, &r, -1, 1);
	tu_fill_uniform(w, wn, &r, -1, 1);
	tu_fill_uniform(b, (size_t)cg->out_ch, &r, -1, 1);
	tu_fill_uniform(dy, yn, &r, -1, 1);
	/* The gradient kernels add: start from non-zero values to check that. */
	tu_fill_uniform(dx, xn, &r, -1, 1);
	tu_fill_uniform(dw, wn, &r, -1, 1);
	tu_fill_uniform(db, (size_t)cg->out_ch, &r, -1, 1);
	for (size_t i = 0; i < xn; i++)
		rdx[i] = dx[i];
	for (size_t i = 0; i < wn; i++)
		rdw[i] = dw[i];
	for (int o = 0; o < cg->out_ch; o++)
		rdb[o] = db[o];

	/* Every (output, tap) pair once: y's reference, and the adjoints of the same sum. */
	naive_conv(cg, x, w, b, ry);
	for (int n = 0; n < cg->n; n++)
		for (int o = 0; o < cg->out_ch; o++)
			for (int i = 0; i < cg->out_h; i++)
				for (int j = 0; j < cg->out_w; j++) {
					double g = dy[((n * cg->out_ch + o) * cg->out_h + i) * cg->out_w + j];

					rdb[o] += g;
					for (int c = 0; c < cg->in_ch; c++)
						for (int u = 0; u < cg->kh; u++)
							for (int v = 0; v < cg->kw; v++) {
								int ih = i * cg->stride_h - cg->pad_h + u;
								int iw = j * cg->stride_w - cg->pad_w + v;
								size_t wi = (size_t)((o * cg->in_ch + c) * cg->kh + u) * cg->kw + v;
								size_t xi;

								if (ih < 0 || ih >= cg->in_h || iw < 0 || iw >= cg->in_w)
									continue;
								xi = (size_t)((n * cg->in_ch + c) * cg->in_h + ih) * cg->in_w + iw;
								rdx[xi] += g * w[wi];
								rdw[wi] += g * x[xi];
							}
				}

	iap_conv2d_forward_raw(cg, x, w, b, y, ws);
	assert_close(y, ry, yn, 1e-4);
	iap_conv2d_backward_input_raw(cg, dy, w, dx, ws);
	assert_close(dx, rdx, xn, 1e-4);
	iap_conv2d_backward_params_raw(cg, x, dy, dw, db, ws);
	assert_close(dw, rdw, wn, 1e-4);
	for (int o = 0; o < cg->out_ch; o++)
		assert_true(fabs(db[o] - rdb[o]) < 1e-4);
	/* Without a bias the forward is the same minus b. */
	iap_conv2d_forward_raw(cg, x, w, NULL, y, ws);
	for (size_t i = 0; i < yn; i++) {
		int o = (int)(i / ((size_t)cg->out_h * cg->out_w) % (size_t)cg->out_ch);

		assert_true(fabs(y[i] - (ry[i] - b[o])) < 1e-4);
	}

	free(x); free(w); free(b); free(y); free(dy); free(dx); free(dw); free(db); free(ws);
	free(ry); free(rdx); free(rdw); free(rdb);
}

static void test_conv_raw_kernels(void **state)
{
	static const struct iap_conv_geom geoms[] = {
		/* n  C  H  W   O oh ow kh kw sh sw ph pw   (oh/ow filled below) */
		{ 2, 3, 6, 5, 4, 0, 0, 3, 2, 2, 2, 1, 1 },
		{ 3, 2, 7, 7, 3, 0, 0, 3, 3, 3, 1, 2, 0 },
		{ 2, 5, 4, 3, 3, 0, 0, 1, 1, 1, 1, 0, 0 },   /* 1×1: no workspace */
		{ 1, 2, 5, 6, 2, 0, 0, 1, 1, 2, 2, 1, 0 },   /* 1×1 but strided and padded: im2col */
		{ 2, 8, 24, 23, 4, 0, 0, 3, 3, 1, 1, 1, 1 }, /* big enough for the threaded im2col/col2im */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(geoms) / sizeof(geoms[0]); i++) {
		struct iap_conv_geom cg = geoms[i];

		cg.out_h = (cg.in_h + 2 * cg.pad_h - cg.kh) / cg.stride_h + 1;
		cg.out_w = (cg.in_w + 2 * cg.pad_w - cg.kw) / cg.stride_w + 1;
		if (i == 2)
			assert_int_equal(iap_conv2d_workspace(&cg), 0);
		else
			assert_int_equal(iap_conv2d_workspace(&cg),
					 (size_t)cg.in_ch * cg.kh * cg.kw * cg.out_h * cg.out_w);
		check_raw_conv(&cg, 100 + i);
	}
}

/* ---- finite-difference gradient checks ---------------------------------------------- */

static void gradcheck(struct iap_graph *g, const struct gc_opts *o)
{
	finalize(g);
	tu_randomize_params(g, 3, 0.5f);
	assert_int_equal(gc_check_graph(g, o), 0);
	iap_graph_free(g);
}

static void test_grad_conv(void **state)
{
	struct gc_opts o = { .batch = 3, .max_checks = 64 };
	struct iap_graph *g;

	(void)state;
	/* Non-square kernel, stride 2×1, padding 1×2, bias. */
	g = new_graph(3, 3, 7, 6);
	iap_conv2d(g, "a", IAP_GRAPH_INPUT, 4, 3, 2, 2, 1, 1, 2, 1);
	gradcheck(g, &o);
	/* 1×1 stride 1: the no-im2col path. */
	g = new_graph(3, 5, 4, 3);
	iap_conv2d(g, "b", IAP_GRAPH_INPUT, 3, 1, 1, 1, 1, 0, 0, 1);
	gradcheck(g, &o);
	/* No bias, stride 1×3, padding 0×1, kernel wider than tall. */
	g = new_graph(3, 2, 5, 8);
	iap_conv2d(g, "c", IAP_GRAPH_INPUT, 3, 2, 3, 1, 3, 0, 1, 0);
	gradcheck(g, &o);
}

/* Two convs with nothing wanting the input: the first conv's r_in is NULL (no col2im). */
static void test_grad_conv_chain_no_input(void **state)
{
	struct gc_opts o = { .batch = 3, .skip_input = 1, .max_checks = 64 };
	struct iap_graph *g = new_graph(3, 2, 6, 5);
	int a;

	(void)state;
	a = iap_conv2d(g, "a", IAP_GRAPH_INPUT, 3, 3, 3, 1, 1, 1, 1, 1);
	iap_conv2d(g, "b", a, 2, 2, 2, 2, 2, 0, 0, 1);
	gradcheck(g, &o);
}

static void test_grad_linear(void **state)
{
	struct gc_opts o = { .batch = 3, .max_checks = 64 };
	struct iap_graph *g;

	(void)state;
	g = new_graph(1, 7, 0, 0);
	iap_linear(g, "fc", IAP_GRAPH_INPUT, 5, 1);
	gradcheck(g, &o);
	/* One sample: the matrix-vector kernels. */
	o.batch = 1;
	g = new_graph(1, 7, 0, 0);
	iap_linear(g, "fc1", IAP_GRAPH_INPUT, 5, 1);
	gradcheck(g, &o);
	o.batch = 3;
	/* Token input [N, 4, 6], no bias. */
	g = new_graph(2, 4, 6, 0);
	iap_linear(g, "mlp", IAP_GRAPH_INPUT, 5, 0);
	gradcheck(g, &o);
	/* Over the last axis of a C×H×W map. */
	g = new_graph(3, 2, 3, 5);
	iap_linear(g, "w", IAP_GRAPH_INPUT, 4, 1);
	gradcheck(g, &o);
}

/*
 * Max pool is piecewise linear: a step larger than the gap between two values
 * of a window flips the argmax and the difference quotient is meaningless.
 * The output is a copy of one input, so even a 1e-6 step is measured exactly
 * (the helper divides by the step actually taken in float), and at that step
 * near-ties are rare enough that 60 seeds in a row pass.
 */
static void test_grad_maxpool(void **state)
{
	struct gc_opts o = { .batch = 3, .eps = 1e-6, .max_checks = 128 };
	struct iap_graph *g;

	(void)state;
	g = new_graph(3, 2, 7, 6);
	iap_maxpool2d(g, "p", IAP_GRAPH_INPUT, 3, 2, 1, 1);
	gradcheck(g, &o);
	g = new_graph(3, 2, 5, 7);
	iap_maxpool2d(g, "p", IAP_GRAPH_INPUT, 2, 2, 0, 1);
	gradcheck(g, &o);
}

static void test_grad_avgpool(void **state)
{
	struct gc_opts o = { .batch = 3, .max_checks = 128 };
	struct iap_graph *g;

	(void)state;
	for (int cip = 0; cip <= 1; cip++) {
		g = new_graph(3, 2, 7, 6);
		iap_avgpool2d(g, "p", IAP_GRAPH_INPUT, 3, 2, 1, 1, cip);
		gradcheck(g, &o);
		g = new_graph(3, 2, 5, 5);
		iap_avgpool2d(g, "p", IAP_GRAPH_INPUT, 2, 2, 1, 0, cip);
		gradcheck(g, &o);
	}
}

static void test_grad_adaptive(void **state)
{
	struct gc_opts o = { .batch = 3, .max_checks = 128 };
	struct iap_graph *g;

	(void)state;
	g = new_graph(3, 2, 5, 3);
	iap_adaptive_avgpool2d(g, "p", IAP_GRAPH_INPUT, 3, 7);
	gradcheck(g, &o);
	g = new_graph(3, 2, 7, 7);
	iap_adaptive_avgpool2d(g, "p", IAP_GRAPH_INPUT, 2, 3);
	gradcheck(g, &o);
}

/* Inputs above the threading threshold (N·C·H·W > 32768): the parallel loops. */
static void test_grad_pools_threaded(void **state)
{
	struct gc_opts o = { .batch = 2, .eps = 1e-6, .max_checks = 24 };
	struct iap_graph *g;

	(void)state;
	g = new_graph(3, 4, 67, 66);
	iap_maxpool2d(g, "p", IAP_GRAPH_INPUT, 3, 2, 1, 1);
	gradcheck(g, &o);
	o.eps = 1e-2;
	g = new_graph(3, 4, 67, 66);
	iap_avgpool2d(g, "p", IAP_GRAPH_INPUT, 3, 2, 1, 1, 0);
	gradcheck(g, &o);
	g = new_graph(3, 4, 67, 66);
	iap_adaptive_avgpool2d(g, "p", IAP_GRAPH_INPUT, 7, 5);
	gradcheck(g, &o);
}

/*
 * A small VGG-like stack: conv → avgpool (ceil) → conv 1×1 → avgpool →
 * adaptive → linear. No max pool here: behind a conv, a parameter step moves
 * every value of a window at once, and no step is both small enough to keep
 * the argmaxes and large enough to rise above float noise through the stack.
 */
static void test_grad_stack(void **state)
{
	struct gc_opts o = { .batch = 3, .max_checks = 48 };
	struct iap_graph *g = new_graph(3, 2, 9, 8);
	int n;

	(void)state;
	n = iap_conv2d(g, "features.0", IAP_GRAPH_INPUT, 3, 3, 3, 1, 1, 1, 1, 1);
	n = iap_avgpool2d(g, "features.1", n, 2, 2, 0, 1, 1);
	n = iap_conv2d(g, "features.2", n, 4, 1, 1, 1, 1, 0, 0, 1);
	n = iap_avgpool2d(g, "features.3", n, 3, 1, 1, 0, 0);
	n = iap_adaptive_avgpool2d(g, "avgpool", n, 3, 2);
	n = iap_linear(g, "classifier", n, 3, 1);
	assert_int_equal(n, 5);
	gradcheck(g, &o);
}

/* ---- builders, bookkeeping ------------------------------------------------------------ */

static void test_builder_errors(void **state)
{
	struct iap_error err = { 0 };
	struct iap_graph *g;

	(void)state;
	/* conv on a flat input */
	g = new_graph(1, 10, 0, 0);
	assert_int_equal(iap_conv2d(g, "c", IAP_GRAPH_INPUT, 2, 3, 3, 1, 1, 0, 0, 1), -1);
	/* sticky: later builders are no-ops */
	assert_int_equal(iap_linear(g, "fc", IAP_GRAPH_INPUT, 2, 1), -1);
	assert_int_equal(g->n_nodes, 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_ESHAPE);
	assert_non_null(strstr(err.msg, "c: conv2d"));
	iap_graph_free(g);

	/* kernel larger than the padded input */
	g = new_graph(3, 1, 2, 2);
	assert_int_equal(iap_conv2d(g, "c", IAP_GRAPH_INPUT, 2, 5, 1, 1, 1, 1, 0, 1), -1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_ESHAPE);
	iap_graph_free(g);

	/* pool padding more than half the kernel (PyTorch refuses it too) */
	g = new_graph(3, 1, 8, 8);
	assert_int_equal(iap_maxpool2d(g, "p", IAP_GRAPH_INPUT, 2, 2, 2, 0), -1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_EINVAL);
	iap_graph_free(g);

	g = new_graph(3, 1, 8, 8);
	assert_int_equal(iap_adaptive_avgpool2d(g, "p", IAP_GRAPH_INPUT, 0, 3), -1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_EINVAL);
	iap_graph_free(g);

	g = new_graph(2, 4, 6, 0);
	assert_int_equal(iap_linear(g, "fc", IAP_GRAPH_INPUT, 0, 1), -1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_EINVAL);
	iap_graph_free(g);
}

/* MACs per sample, the workspace callback, no bias parameter when asked for none. */
static void test_macs_and_workspace(void **state)
{
	struct iap_graph *g = new_graph(3, 3, 8, 8);
	int c, p, c1, l;

	(void)state;
	c = iap_conv2d(g, "c", IAP_GRAPH_INPUT, 4, 3, 3, 2, 2, 1, 1, 0);   /* → 4×4×4 */
	p = iap_maxpool2d(g, "p", c, 2, 2, 0, 0);                          /* → 4×2×2 */
	c1 = iap_conv2d(g, "c1", p, 6, 1, 1, 1, 1, 0, 0, 1);                /* → 6×2×2 */
	l = iap_linear(g, "l", c1, 5, 1);                                  /* → 6×2×5 */
	finalize(g);
	assert_int_equal(g->nodes[c].n_params, 1);
	assert_int_equal(g->nodes[c1].n_params, 2);
	assert_int_equal(g->nodes[c].ops->macs(g, &g->nodes[c]), 4 * 4 * 4 * 3 * 3 * 3);
	assert_int_equal(g->nodes[c1].ops->macs(g, &g->nodes[c1]), 6 * 2 * 2 * 4);
	assert_int_equal(g->nodes[l].ops->macs(g, &g->nodes[l]), 6 * 2 * 2 * 5);
	assert_null(g->nodes[p].ops->macs);
	/* One sample's columns, whatever the batch: 27 rows × 16 positions; 1×1 needs none. */
	assert_int_equal(g->nodes[c].ops->workspace(g, &g->nodes[c], 5), 27 * 16);
	assert_int_equal(g->nodes[c1].ops->workspace(g, &g->nodes[c1], 5), 0);
	assert_int_equal(g->nodes[l].out_shape[2], 5);
	iap_graph_free(g);
}

/* A second forward at the same batch size reuses the maxpool's saved indices. */
static void test_steady_state(void **state)
{
	struct iap_graph *g = new_graph(3, 2, 6, 6);
	struct iap_tensor x = tu_rand_tensor(7, 4, (int64_t)2, (int64_t)2, (int64_t)6, (int64_t)6);
	const float *aux;

	(void)state;
	iap_maxpool2d(g, "p", IAP_GRAPH_INPUT, 2, 2, 0, 0);
	finalize(g);
	forward(g, &x);
	aux = g->nodes[0].aux[0].data;
	assert_non_null(aux);
	x.data[0] = 5.0f;
	forward(g, &x);
	assert_ptr_equal(g->nodes[0].aux[0].data, aux);
	assert_true(iap_graph_output(g)->data[0] == 5.0f);
	iap_graph_free(g);
	iap_tensor_free(&x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_maxpool_forward_hand),
		cmocka_unit_test(test_maxpool_ties),
		cmocka_unit_test(test_maxpool_against_scan),
		cmocka_unit_test(test_pool_output_sizes),
		cmocka_unit_test(test_avgpool_forward_hand),
		cmocka_unit_test(test_adaptive_forward_hand),
		cmocka_unit_test(test_conv_forward_hand),
		cmocka_unit_test(test_conv_forward_naive),
		cmocka_unit_test(test_linear_forward_hand),
		cmocka_unit_test(test_linear_raw_hand),
		cmocka_unit_test(test_conv_raw_kernels),
		cmocka_unit_test(test_grad_conv),
		cmocka_unit_test(test_grad_conv_chain_no_input),
		cmocka_unit_test(test_grad_linear),
		cmocka_unit_test(test_grad_maxpool),
		cmocka_unit_test(test_grad_avgpool),
		cmocka_unit_test(test_grad_adaptive),
		cmocka_unit_test(test_grad_pools_threaded),
		cmocka_unit_test(test_grad_stack),
		cmocka_unit_test(test_builder_errors),
		cmocka_unit_test(test_macs_and_workspace),
		cmocka_unit_test(test_steady_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
