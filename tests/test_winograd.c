/*
 * Winograd convolution (core/ops/winograd.c): F(4×4, 3×3) forwards up to 64
 * input channels, F(2×2, 3×3) forwards above and every input gradient.
 *
 * The forward and the input gradient are compared with a direct convolution
 * summed in double and with the im2col kernels on the same buffers: odd and
 * even planes from 1×1 to 28×28, padding 0 and 1, one and three samples,
 * channel counts that are not multiples of 8 or 16, with and without a bias,
 * and dx pre-filled to check that the input gradient adds. VGG-shaped layers
 * (He-initialised weights, ReLU'd normal inputs) check the accuracy the
 * library relies on: max |error| ≤ 1e-5 · max |y|. Then the dispatch: which
 * geometries take the Winograd path, that the public kernels and the graph op
 * do, and a finite-difference gradient check through a graph that uses it.
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

#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/rng.h>

#include "../core/ops/winograd.h"
#include "gradcheck.h"
#include "testutil.h"

static struct iap_conv_geom geom(int n, int c, int h, int w, int k, int pad)
{
	struct iap_conv_geom cg = {
		.n = n, .in_ch = c, .in_h = h, .in_w = w, .out_ch = k,
		.kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1, .pad_h = pad, .pad_w = pad,
	};

	cg.out_h = h + 2 * pad - 2;
	cg.out_w = w + 2 * pad - 2;
	return cg;
}

static size_t x_len(const struct iap_conv_geom *cg)
{
	return (size_t)cg->n * cg->in_ch * cg->in_h * cg->in_w;
}

static size_t y_len(const struct iap_conv_geom *cg)
{
	return (size_t)cg->n * cg->out_ch * cg->out_h * cg->out_w;
}

static float *falloc(size_t n)
{
	float *p = malloc((n ? n : 1) * sizeof(float));

	assert_non_null(p);
	return p;
}

static double *dalloc(size_t n)
{
	double *p = malloc((n ? n : 1) * sizeof(double));

	assert_non_null(p);
	return p;
}

/* ry = conv(x, w) + b and rdx = dx0 + conv_transpose(dy, w), both summed in double. */
static void direct(const struct iap_conv_geom *cg, const float *x, const float *w, const float *b,
		   const float *dy, const float *dx0, double *ry, double *rdx)
{
	const int oh = cg->out_h, ow = cg->out_w, ih = cg->in_h, iw = cg->in_w;

	if (rdx)
		for (size_t i = 0; i < x_len(cg); i++)
			rdx[i] = dx0[i];
	for (int n = 0; n < cg->n; n++)
		for (int o = 0; o < cg->out_ch; o++)
			for (int i = 0; i < oh; i++)
				for (int j = 0; j < ow; j++) {
					const size_t yi = (((size_t)n * cg->out_ch + o) * oh + i) * ow + j;
					double acc = b ? b[o] : 0.0;

					for (int c = 0; c < cg->in_ch; c++)
						for (int u = 0; u < 3; u++) {
							const int r = i - cg->pad_h + u;

							if (r < 0 || r >= ih)
								continue;
							for (int v = 0; v < 3; v++) {
								const int s = j - cg->pad_w + v;
								size_t xi, wi;

								if (s < 0 || s >= iw)
									continue;
								xi = (((size_t)n * cg->in_ch + c) * ih + r) * iw + s;
								wi = (((size_t)o * cg->in_ch + c) * 3 + u) * 3 + v;
								if (ry)
									acc += (double)x[xi] * w[wi];
								if (rdx)
									rdx[xi] += (double)dy[yi] * w[wi];
							}
						}
					if (ry)
						ry[yi] = acc;
				}
}

/* max |got − want| / max(max |want|, floor). */
static double rel_err(const float *got, const double *want, size_t n, double floor)
{
	double e = 0.0, m = floor;

	for (size_t i = 0; i < n; i++) {
		double d = fabs(got[i] - want[i]);

		if (!(d <= e))
			e = d;
		if (fabs(want[i]) > m)
			m = fabs(want[i]);
	}
	return e / m;
}

static double rel_err_f(const float *got, const float *want, size_t n)
{
	double e = 0.0, m = 1e-30;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)got[i] - want[i]);

		if (!(d <= e))
			e = d;
		if (fabs(want[i]) > m)
			m = fabs(want[i]);
	}
	return e / m;
}

/*
 * Both kernels of both paths on one geometry: Winograd against the direct
 * double sums within tol (relative to the largest magnitude), and against
 * im2col within 2·tol.
 */
static void check_geom(const struct iap_conv_geom *cg, int bias, uint64_t seed, double tol)
{
	const size_t nx = x_len(cg), ny = y_len(cg), nw = (size_t)cg->out_ch * cg->in_ch * 9;
	size_t nws = iap_winograd_workspace(cg), nwi = iap_conv2d_im2col_workspace(cg);
	float *x = falloc(nx), *w = falloc(nw), *b = falloc((size_t)cg->out_ch);
	float *y = falloc(ny), *y2 = falloc(ny), *dy = falloc(ny);
	float *dx0 = falloc(nx), *dx = falloc(nx), *dx2 = falloc(nx);
	float *ws = falloc(nws > nwi ? nws : nwi);
	double *ry = dalloc(ny), *rdx = dalloc(nx);
	struct iap_rng r;

	assert_true(iap_winograd_supports(cg));
	iap_rng_seed(&r, seed);
	tu_fill_uniform(x, nx, &r, -1, 1);
	tu_fill_uniform(w, nw, &r, -1, 1);
	tu_fill_uniform(b, (size_t)cg->out_ch, &r, -1, 1);
	tu_fill_uniform(dy, ny, &r, -1, 1);
	tu_fill_uniform(dx0, nx, &r, -1, 1);
	direct(cg, x, w, bias ? b : NULL, dy, dx0, ry, rdx);

	/* Stale values in y must not leak through (the forward stores, it does not add). */
	for (size_t i = 0; i < ny; i++)
		y[i] = 1e6f;
	iap_winograd_forward(cg, x, w, bias ? b : NULL, y, ws);
	iap_conv2d_forward_im2col(cg, x, w, bias ? b : NULL, y2, ws);
	if (rel_err(y, ry, ny, 1e-3) > tol || rel_err_f(y, y2, ny) > 2 * tol)
		fail_msg("forward n%d %d->%d %dx%d pad %d bias %d: %.3g vs direct, %.3g vs im2col",
			 cg->n, cg->in_ch, cg->out_ch, cg->in_h, cg->in_w, cg->pad_h, bias,
			 rel_err(y, ry, ny, 1e-3), rel_err_f(y, y2, ny));

	memcpy(dx, dx0, nx * sizeof(float));
	memcpy(dx2, dx0, nx * sizeof(float));
	iap_winograd_backward_input(cg, dy, w, dx, ws);
	iap_conv2d_backward_input_im2col(cg, dy, w, dx2, ws);
	if (rel_err(dx, rdx, nx, 1e-3) > tol || rel_err_f(dx, dx2, nx) > 2 * tol)
		fail_msg("input grad n%d %d->%d %dx%d pad %d: %.3g vs direct, %.3g vs im2col",
			 cg->n, cg->in_ch, cg->out_ch, cg->in_h, cg->in_w, cg->pad_h,
			 rel_err(dx, rdx, nx, 1e-3), rel_err_f(dx, dx2, nx));

	free(x); free(w); free(b); free(y); free(y2); free(dy); free(dx0); free(dx); free(dx2);
	free(ws); free(ry); free(rdx);
}

static void test_against_direct(void **state)
{
	static const int planes[][2] = { { 1, 1 }, { 2, 3 }, { 5, 7 }, { 13, 13 }, { 14, 14 }, { 28, 28 } };
	/* The last pair takes the F(2,3) forward (more than 64 input channels). */
	static const int chans[][2] = { { 3, 5 }, { 9, 13 }, { 17, 10 }, { 67, 6 } };
	uint64_t seed = 1;

	(void)state;
	for (size_t p = 0; p < sizeof(planes) / sizeof(planes[0]); p++)
		for (int pad = 0; pad <= 1; pad++) {
			/* A 3×3 kernel without padding needs at least 3×3. */
			if (pad == 0 && (planes[p][0] < 3 || planes[p][1] < 3))
				continue;
			for (int n = 1; n <= 3; n += 2)
				for (size_t c = 0; c < sizeof(chans) / sizeof(chans[0]); c++) {
					struct iap_conv_geom cg = geom(n, chans[c][0], planes[p][0],
								       planes[p][1], chans[c][1], pad);

					check_geom(&cg, (int)((seed + c) & 1), seed, 1e-5);
					seed++;
				}
		}
}

/* Non-square planes whose sides are not multiples of 4 on both axes, pad 0 (backward pad 2). */
static void test_ragged_planes(void **state)
{
	static const int planes[][2] = { { 3, 3 }, { 3, 11 }, { 10, 4 }, { 6, 9 }, { 31, 17 } };

	(void)state;
	for (size_t p = 0; p < sizeof(planes) / sizeof(planes[0]); p++)
		for (int pad = 0; pad <= 1; pad++) {
			struct iap_conv_geom cg = geom(2, 11, planes[p][0], planes[p][1], 7, pad);

			check_geom(&cg, 1, 100 + p, 1e-5);
		}
}

/*
 * VGG-shaped layers as in a trained network: He-initialised weights
 * (N(0, 2/(9·in))) and ReLU'd N(0, 1) inputs; the bound the library ships
 * with is max |error| ≤ 1e-5 · max |y| for the forward and the input gradient.
 */
static void check_vgg_layer(int c, int k, int hw, uint64_t seed)
{
	struct iap_conv_geom cg = geom(1, c, hw, hw, k, 1);
	const size_t nx = x_len(&cg), ny = y_len(&cg), nw = (size_t)k * c * 9;
	float *x = falloc(nx), *w = falloc(nw), *y = falloc(ny), *dy = falloc(ny), *dx = falloc(nx);
	float *ws = falloc(iap_winograd_workspace(&cg));
	double *ry = dalloc(ny), *rdx = dalloc(nx), sd = sqrt(2.0 / (9.0 * c)), ey, edx;
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	for (size_t i = 0; i < nx; i++) {
		double v = iap_rng_normal(&r);

		x[i] = v > 0 ? (float)v : 0.0f;
	}
	for (size_t i = 0; i < nw; i++)
		w[i] = (float)(sd * iap_rng_normal(&r));
	for (size_t i = 0; i < ny; i++)
		dy[i] = (float)iap_rng_normal(&r);
	memset(dx, 0, nx * sizeof(float));
	direct(&cg, x, w, NULL, dy, dx, ry, rdx);
	iap_winograd_forward(&cg, x, w, NULL, y, ws);
	iap_winograd_backward_input(&cg, dy, w, dx, ws);
	ey = rel_err(y, ry, ny, 1e-30);
	edx = rel_err(dx, rdx, nx, 1e-30);
	print_message("# %d->%d @ %dx%d: max |error| / max |y| = %.2e forward, %.2e input grad\n",
		      c, k, hw, hw, ey, edx);
	assert_true(ey <= 1e-5);
	assert_true(edx <= 1e-5);
	free(x); free(w); free(y); free(dy); free(dx); free(ws); free(ry); free(rdx);
}

static void test_vgg_accuracy(void **state)
{
	(void)state;
	/* F(4,3) forwards (64 input channels), then F(2,3) ones. */
	check_vgg_layer(64, 64, 56, 11);
	check_vgg_layer(64, 128, 28, 15);
	check_vgg_layer(128, 128, 28, 12);
	check_vgg_layer(256, 256, 14, 13);
	check_vgg_layer(512, 512, 14, 14);
}

static void test_applies(void **state)
{
	struct iap_conv_geom cg = geom(1, 64, 224, 224, 64, 1);

	(void)state;
	assert_true(iap_winograd_applies(&cg));
	cg = geom(1, 128, 112, 112, 128, 1);
	assert_true(iap_winograd_applies(&cg));
	cg = geom(1, 256, 34, 34, 256, 0);
	assert_true(iap_winograd_applies(&cg));
	/* conv1_1: 3 input channels stay im2col. */
	cg = geom(1, 3, 224, 224, 64, 1);
	assert_false(iap_winograd_applies(&cg));
	assert_true(iap_winograd_supports(&cg));
	/*
	 * 512 → 512 at 14×14, one sample: 49 tiles of 2×2 (the forward's F(2,3)), too
	 * few for the weight transform to pay; two samples are enough, and so is
	 * one sample at 28×28.
	 */
	cg = geom(1, 512, 14, 14, 512, 1);
	assert_false(iap_winograd_applies(&cg));
	cg.n = 2;
	assert_true(iap_winograd_applies(&cg));
	cg = geom(1, 512, 28, 28, 512, 1);
	assert_true(iap_winograd_applies(&cg));
	/* 64 input channels (F(4,3)): tiles of 4×4, so 28×28 (49) is too small. */
	cg = geom(1, 64, 28, 28, 64, 1);
	assert_false(iap_winograd_applies(&cg));
	cg = geom(1, 64, 32, 32, 64, 1);
	assert_true(iap_winograd_applies(&cg));
	/* Not 3×3 stride 1 with equal padding 0 or 1. */
	cg = geom(1, 64, 56, 56, 64, 1);
	cg.stride_h = cg.stride_w = 2;
	cg.out_h = cg.out_w = 28;
	assert_false(iap_winograd_supports(&cg));
	cg = geom(1, 64, 56, 56, 64, 1);
	cg.pad_w = 0;
	cg.out_w = 54;
	assert_false(iap_winograd_supports(&cg));
	cg = geom(1, 64, 56, 56, 64, 2);
	assert_false(iap_winograd_supports(&cg));
	cg = geom(1, 64, 56, 56, 64, 1);
	cg.kh = cg.kw = 5;
	cg.out_h = cg.out_w = 54;
	assert_false(iap_winograd_supports(&cg));
}

/* The public kernels take the Winograd path when it applies, with enough workspace for it. */
static void test_raw_dispatch(void **state)
{
	struct iap_conv_geom cg = geom(2, 12, 30, 27, 9, 1);
	const size_t nx = x_len(&cg), ny = y_len(&cg), nw = (size_t)9 * 12 * 9;
	size_t nws = iap_conv2d_workspace(&cg);
	float *x = falloc(nx), *w = falloc(nw), *b = falloc(9), *y = falloc(ny), *y2 = falloc(ny);
	float *dy = falloc(ny), *dx = falloc(nx), *dx2 = falloc(nx), *ws = falloc(nws);
	struct iap_rng r;

	(void)state;
	assert_true(iap_winograd_applies(&cg));
	assert_true(nws >= iap_winograd_workspace(&cg));
	assert_true(nws >= iap_conv2d_im2col_workspace(&cg));
	iap_rng_seed(&r, 5);
	tu_fill_uniform(x, nx, &r, -1, 1);
	tu_fill_uniform(w, nw, &r, -1, 1);
	tu_fill_uniform(b, 9, &r, -1, 1);
	tu_fill_uniform(dy, ny, &r, -1, 1);
	tu_fill_uniform(dx, nx, &r, -1, 1);
	memcpy(dx2, dx, nx * sizeof(float));
	iap_conv2d_forward_raw(&cg, x, w, b, y, ws);
	iap_winograd_forward(&cg, x, w, b, y2, ws);
	assert_memory_equal(y, y2, ny * sizeof(float));
	iap_conv2d_backward_input_raw(&cg, dy, w, dx, ws);
	iap_winograd_backward_input(&cg, dy, w, dx2, ws);
	assert_memory_equal(dx, dx2, nx * sizeof(float));
	free(x); free(w); free(b); free(y); free(y2); free(dy); free(dx); free(dx2); free(ws);
}

static struct iap_graph *conv_graph(int batch_c, int h, int w, int out_ch, int pad, int bias)
{
	int64_t shape[3] = { batch_c, h, w };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(3, shape, &err);

	assert_non_null(g);
	assert_true(iap_conv2d(g, "c", IAP_GRAPH_INPUT, out_ch, 3, 3, 1, 1, pad, pad, bias) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), 0);
	return g;
}

/* The graph op's forward through Winograd equals the im2col kernel within float rounding. */
static void test_graph_forward(void **state)
{
	struct iap_graph *g = conv_graph(10, 17, 33, 12, 1, 1);
	struct iap_tensor x = tu_rand_tensor(3, 4, (int64_t)3, (int64_t)10, (int64_t)17, (int64_t)33);
	struct iap_conv_geom cg = geom(3, 10, 17, 33, 12, 1);
	struct iap_error err = { 0 };
	const struct iap_node *node;
	float *y2 = falloc(y_len(&cg)), *ws = falloc(iap_conv2d_im2col_workspace(&cg));

	(void)state;
	assert_true(iap_winograd_applies(&cg));
	tu_randomize_params(g, 4, 0.5f);
	assert_int_equal(iap_graph_forward(g, &x, &err), 0);
	node = &g->nodes[0];
	iap_conv2d_forward_im2col(&cg, x.data, node->params[0].value.data, node->params[1].value.data,
				  y2, ws);
	assert_true(rel_err_f(iap_graph_output(g)->data, y2, y_len(&cg)) < 2e-5);
	free(y2);
	free(ws);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* Finite differences through graphs whose convs take the Winograd path (pad 1 and pad 0). */
static void test_graph_gradcheck(void **state)
{
	struct gc_opts o = { .batch = 2, .max_checks = 48 };
	struct iap_conv_geom cg = geom(2, 8, 30, 29, 9, 1);
	struct iap_graph *g;

	(void)state;
	assert_true(iap_winograd_applies(&cg));
	g = conv_graph(8, 30, 29, 9, 1, 1);
	tu_randomize_params(g, 3, 0.5f);
	assert_int_equal(gc_check_graph(g, &o), 0);
	iap_graph_free(g);
	cg = geom(2, 9, 34, 32, 8, 0);
	assert_true(iap_winograd_applies(&cg));
	g = conv_graph(9, 34, 32, 8, 0, 0);
	tu_randomize_params(g, 5, 0.5f);
	assert_int_equal(gc_check_graph(g, &o), 0);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_against_direct),
		cmocka_unit_test(test_ragged_planes),
		cmocka_unit_test(test_vgg_accuracy),
		cmocka_unit_test(test_applies),
		cmocka_unit_test(test_raw_dispatch),
		cmocka_unit_test(test_graph_forward),
		cmocka_unit_test(test_graph_gradcheck),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
