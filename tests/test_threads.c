/*
 * The engine's thread count (<iaprune/threads.h>) and the products split
 * over it (iap_sgemm & co., <iaprune/blas.h>): where the count comes from,
 * the work rule, and that results do not depend on the count beyond float
 * rounding — for the split products themselves and for whole models'
 * forward, LRP, DL-Backtrace and IG passes (plugins loaded from the build
 * tree, as the runner loads them).
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <iaprune/attribute.h>
#include <iaprune/blas.h>
#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/tensor.h>
#include <iaprune/threads.h>

#include "../host/eval/predict_split.h"
#include "../plugins/models/arch.h"
#include "testutil.h"

#ifndef IAP_ATTR_PLUGIN_DIR
#error "IAP_ATTR_PLUGIN_DIR must name the build tree's plugins/attribution/.libs"
#endif

/* ---- where the count comes from ------------------------------------------- */

static void test_configure_precedence(void **state)
{
	struct iap_error err = { 0, "" };

	(void)state;
	assert_true(iap_threads_available() >= 1);
	unsetenv("IAPRUNE_THREADS");
	assert_int_equal(iap_threads_configure(0, 0, &err), 0);
	assert_int_equal(iap_threads(), iap_threads_available());
	assert_int_equal(iap_threads_configure(0, 5, &err), 0);
	assert_int_equal(iap_threads(), 5);   /* the pipeline's key */
	setenv("IAPRUNE_THREADS", "3", 1);
	assert_int_equal(iap_threads_configure(0, 5, &err), 0);
	assert_int_equal(iap_threads(), 3);   /* the environment beats the pipeline */
	assert_int_equal(iap_threads_configure(2, 5, &err), 0);
	assert_int_equal(iap_threads(), 2);   /* the option beats both */
#ifdef _OPENMP
	assert_int_equal(omp_get_max_threads(), 2);
#endif
	/* One pool: OpenBLAS runs each call on its caller. */
	assert_int_equal(iap_threads_blas(), 1);
}

static void test_configure_bad_env(void **state)
{
	static const char *const bad[] = { "abc", "0", "-2", "2x", "1025", "99999999999999999999" };

	(void)state;
	unsetenv("IAPRUNE_THREADS");
	iap_threads_set(4);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct iap_error err = { 0, "" };

		setenv("IAPRUNE_THREADS", bad[i], 1);
		assert_int_equal(iap_threads_configure(0, 0, &err), IAP_EINVAL);
		assert_non_null(strstr(err.msg, "IAPRUNE_THREADS"));
		assert_non_null(strstr(err.msg, bad[i]));
		assert_int_equal(iap_threads(), 4);   /* nothing changed */
	}
	unsetenv("IAPRUNE_THREADS");
	iap_threads_set(0);
	assert_int_equal(iap_threads(), 1);     /* clamped */
	iap_threads_set(5000);
	assert_int_equal(iap_threads(), IAP_THREADS_MAX);
}

/* ---- the work rule --------------------------------------------------------------- */

static void test_par_threads(void **state)
{
	(void)state;
	iap_threads_set(8);
	assert_int_equal(iap_par_threads(100, 10), 8);
	assert_int_equal(iap_par_threads(35, 10), 3);
	assert_int_equal(iap_par_threads(19, 10), 1);
	assert_int_equal(iap_par_threads(0, 10), 1);
	assert_int_equal(iap_par_nt(IAP_PAR_GRAIN * 5), 5);
	assert_int_equal(iap_par_nt(IAP_PAR_GRAIN - 1), 1);
	/* It scales with the count: the same work on 64 threads uses more of them. */
	iap_threads_set(64);
	assert_int_equal(iap_par_nt(IAP_PAR_GRAIN * 40), 40);
	iap_threads_set(1);
	assert_int_equal(iap_par_nt(IAP_PAR_GRAIN * 40), 1);
#ifdef _OPENMP
	/* Inside a parallel region there is no second level. */
	iap_threads_set(4);
	{
		int inner = -1;

#pragma omp parallel num_threads(2)
		{
#pragma omp single
			inner = omp_in_parallel() ? iap_par_nt(IAP_PAR_GRAIN * 40) : 1;
		}
		assert_int_equal(inner, 1);
	}
#endif
}

/* ---- split products against a double reference ------------------------------ */

static double ref_at(int ta, int tb, int k, const float *a, int lda, const float *b, int ldb, int i, int j)
{
	double s = 0;

	for (int p = 0; p < k; p++)
		s += (double)(ta ? a[(size_t)p * lda + i] : a[(size_t)i * lda + p]) *
		     (double)(tb ? b[(size_t)j * ldb + p] : b[(size_t)p * ldb + j]);
	return s;
}

static void test_sgemm_split(void **state)
{
	/* m, n, k: square-ish, thin (a 7×7 layer), wide (a 56² layer), odd sizes and tails. */
	static const int shapes[][3] = { { 96, 100, 64 }, { 512, 49, 96 }, { 16, 3136, 72 },
					 { 37, 211, 129 }, { 1, 300, 300 }, { 300, 1, 300 } };
	struct iap_rng rng;

	(void)state;
	iap_rng_seed(&rng, 7);
	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (int tr = 0; tr < 4; tr++) {
			const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
			const int ta = tr & 1, tb = tr >> 1;
			const int lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2;
			float *a = malloc(sizeof(float) * (size_t)(ta ? k : m) * lda);
			float *b = malloc(sizeof(float) * (size_t)(tb ? n : k) * ldb);
			float *c0 = malloc(sizeof(float) * (size_t)m * ldc);
			float *c = malloc(sizeof(float) * (size_t)m * ldc);

			assert_non_null(a);
			assert_non_null(b);
			assert_non_null(c0);
			assert_non_null(c);
			tu_fill_uniform(a, (size_t)(ta ? k : m) * lda, &rng, -1, 1);
			tu_fill_uniform(b, (size_t)(tb ? n : k) * ldb, &rng, -1, 1);
			tu_fill_uniform(c0, (size_t)m * ldc, &rng, -1, 1);
			for (int t = 1; t <= 4; t++) {
				double worst = 0;

				iap_threads_set(t);
				memcpy(c, c0, sizeof(float) * (size_t)m * ldc);
				iap_sgemm(ta, tb, m, n, k, 0.5f, a, lda, b, ldb, 0.25f, c, ldc);
				for (int i = 0; i < m; i++) {
					for (int j = 0; j < n; j++) {
						double want = 0.5 * ref_at(ta, tb, k, a, lda, b, ldb, i, j) +
							      0.25 * c0[(size_t)i * ldc + j];
						double d = fabs(c[(size_t)i * ldc + j] - want);

						worst = d > worst ? d : worst;
					}
					/* The padding between rows is never written. */
					for (int j = n; j < ldc; j++)
						assert_true(c[(size_t)i * ldc + j] == c0[(size_t)i * ldc + j]);
				}
				if (worst > 1e-4 * sqrt((double)k))
					fail_msg("sgemm %dx%dx%d ta=%d tb=%d on %d threads: error %g", m, n, k, ta,
						 tb, t, worst);
			}
			free(a);
			free(b);
			free(c0);
			free(c);
		}
	iap_threads_set(2);
}

static void test_sgemv_sger_split(void **state)
{
	const int m = 700, n = 1300, lda = 1310;   /* 0.9M floats: splits from 2 threads on */
	float *a = malloc(sizeof(float) * (size_t)m * lda), *a2 = malloc(sizeof(float) * (size_t)m * lda);
	float *x = malloc(sizeof(float) * n), *y = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * n);
	struct iap_rng rng;

	(void)state;
	assert_true(a && a2 && x && y && out);
	iap_rng_seed(&rng, 11);
	tu_fill_uniform(a, (size_t)m * lda, &rng, -1, 1);
	tu_fill_uniform(x, (size_t)n, &rng, -1, 1);
	tu_fill_uniform(y, (size_t)n, &rng, -1, 1);
	for (int t = 1; t <= 4; t++) {
		iap_threads_set(t);
		assert_true(t == 1 || iap_par_threads((double)m * n, 8.0 * IAP_PAR_GRAIN) > 1);
		/* y = A x (rows split) */
		for (int i = 0; i < m; i++)
			out[i] = 1.0f;
		iap_sgemv(0, m, n, 2.0f, a, lda, x, 1.0f, out);
		for (int i = 0; i < m; i++) {
			double s = 0;

			for (int j = 0; j < n; j++)
				s += (double)a[(size_t)i * lda + j] * x[j];
			assert_true(fabs(out[i] - (2 * s + 1)) < 1e-3);
		}
		/* y = Aᵀ x (columns split) */
		iap_sgemv(1, m, n, 1.0f, a, lda, y, 0.0f, out);
		for (int j = 0; j < n; j++) {
			double s = 0;

			for (int i = 0; i < m; i++)
				s += (double)a[(size_t)i * lda + j] * y[i];
			assert_true(fabs(out[j] - s) < 1e-3);
		}
		/* A += 0.5 x yᵀ */
		memcpy(a2, a, sizeof(float) * (size_t)m * lda);
		iap_sger(m, n, 0.5f, y, x, a2, lda);
		for (int i = 0; i < m; i += 7)
			for (int j = 0; j < n; j += 3)
				assert_true(fabsf(a2[(size_t)i * lda + j] -
						  (a[(size_t)i * lda + j] + 0.5f * y[i] * x[j])) < 1e-6f);
	}
	free(a);
	free(a2);
	free(x);
	free(y);
	free(out);
	iap_threads_set(2);
}

/* ---- whole models: 1 vs 2 (and 3) threads ------------------------------------ */

static struct iap_graph *model(int k)
{
	/* 64² at width 1/4: convs of 16+ channels on ≥ 64 Winograd tiles, loops large enough to split. */
	struct iap_cnn_cfg vc = { .depth = 11, .num_classes = 10, .in_channels = 3, .image_size = 64,
				  .width = 0.25, .dropout = 0.5f };
	struct iap_cnn_cfg rc = { .depth = 18, .num_classes = 10, .in_channels = 3, .image_size = 64,
				  .width = 0.25 };
	/* 257 tokens of 2 heads × 64: the attention products split over heads from 2 threads on. */
	struct iap_vit_cfg tc = { .patch_size = 4, .image_size = 64, .in_channels = 3, .num_layers = 2,
				  .num_heads = 2, .hidden_dim = 128, .mlp_dim = 256, .num_classes = 10 };
	struct iap_error err = { 0, "" };
	struct iap_graph *g = NULL;

	if ((k == 0 ? iap_vgg_build(&vc, &g, &err) : k == 1 ? iap_resnet_build(&rc, &g, &err)
							    : iap_vit_build(&tc, &g, &err)))
		fail_msg("%s", err.msg);
	if (k == 0)
		iap_vgg_init(g, 5);
	else if (k == 1)
		iap_resnet_init(g, 5);
	else
		tu_randomize_params(g, 5, 0.2f);   /* torchvision's zero head would make every target 0 */
	return g;
}

static const char *const model_names[] = { "vgg11", "resnet18", "vit" };

static void test_forward_threads(void **state)
{
	char what[160];
	struct iap_tensor x = tu_rand_tensor(21, 4, (int64_t)3, (int64_t)3, (int64_t)64, (int64_t)64);

	(void)state;
	for (int k = 0; k < 3; k++) {
		struct iap_graph *g = model(k);
		struct iap_error err = { 0, "" };
		float *ref = NULL;
		size_t n = 0;

		for (int t = 1; t <= 3; t++) {
			const struct iap_tensor *y;

			iap_threads_set(t);
			assert_int_equal(iap_graph_forward(g, &x, &err), 0);
			y = iap_graph_output(g);
			if (!ref) {
				n = (size_t)iap_tensor_numel(y);
				ref = malloc(n * sizeof(float));
				assert_non_null(ref);
				memcpy(ref, y->data, n * sizeof(float));
				continue;
			}
			snprintf(what, sizeof(what), "%s forward, %d vs 1 thread", model_names[k], t);
			/* Every split keeps each output's arithmetic: the same bits where the kernels allow. */
			assert_true(tu_thread_match(ref, y->data, n, 1e-5, what));
		}
		free(ref);
		iap_graph_free(g);
	}
	iap_tensor_free(&x);
	iap_threads_set(2);
}

/*
 * The im2col convs with whole samples per thread (conv2d.c,
 * conv_forward_by_sample): a batch of 7 on 2 and 3 threads runs 6 samples
 * split by sample and the last one split inside its product; every node's
 * output must be the bits one thread gives. conv1 (3×3 on 4 channels, too
 * few for Winograd) fits its column buffers in the workspace conv2 (5×5 on
 * 64 channels) sized; conv2 does not and stays split per op; conv3 is 1×1
 * (no buffer at all).
 */
static void test_conv_sample_split(void **state)
{
	char what[160];
	const int64_t in[3] = { 4, 32, 32 };
	struct iap_error err = { 0, "" };
	struct iap_graph *g = iap_graph_new(3, in, &err);
	struct iap_tensor x = tu_rand_tensor(22, 4, (int64_t)7, (int64_t)4, (int64_t)32, (int64_t)32);
	float *ref[16] = { NULL };
	int v;

	(void)state;
	assert_non_null(g);
	v = iap_conv2d(g, "conv1", IAP_GRAPH_INPUT, 64, 3, 3, 1, 1, 1, 1, 1);
	v = iap_relu(g, "relu1", v);
	v = iap_conv2d(g, "conv2", v, 16, 5, 5, 1, 1, 2, 2, 0);
	v = iap_conv2d(g, "conv3", v, 128, 1, 1, 1, 1, 0, 0, 1);
	v = iap_flatten(g, "flatten", v);
	iap_linear(g, "fc", v, 10, 1);
	assert_int_equal(iap_graph_finalize(g, &err), 0);
	assert_true(g->n_nodes <= 16);
	tu_randomize_params(g, 6, 0.2f);
	for (int t = 1; t <= 3; t++) {
		iap_threads_set(t);
		assert_int_equal(iap_graph_forward(g, &x, &err), 0);
		for (int i = 0; i < g->n_nodes; i++) {
			const struct iap_tensor *y = &g->nodes[i].out;
			size_t bytes = (size_t)iap_tensor_numel(y) * sizeof(float);

			if (t == 1) {
				ref[i] = malloc(bytes);
				assert_non_null(ref[i]);
				memcpy(ref[i], y->data, bytes);
				continue;
			}
			snprintf(what, sizeof(what), "node '%s' on %d threads", g->nodes[i].name, t);
			assert_true(tu_thread_match(ref[i], y->data, bytes / sizeof(float), 1e-5, what));
		}
	}
	for (int i = 0; i < 16; i++)
		free(ref[i]);
	iap_tensor_free(&x);
	iap_graph_free(g);
	iap_threads_set(2);
}

/* A hook that only makes the walk keep every node's quantity (iap_graph_node_r). */
static int keep_r(void *user, struct iap_graph *g, const struct iap_node *node, const struct iap_tensor *r_out)
{
	(void)user;
	(void)g;
	(void)node;
	(void)r_out;
	return 0;
}

/*
 * Adds to sum the input gradient of conv node id for dy, by a direct
 * transposed conv in double, and to mag the magnitudes of its terms.
 */
static void conv_dx_ref(const struct iap_graph *g, int id, const float *dy, int batch, double *sum, double *mag)
{
	const struct iap_node *nd = &g->nodes[id];
	const struct iap_conv2d_attr *a = &nd->attr.conv;
	const float *w = nd->params[0].value.data;
	const int64_t *is = iap_graph_node_input(g, nd, 0)->shape;
	const int ih = (int)is[2], iw = (int)is[3], oh = (int)nd->out_shape[1], ow = (int)nd->out_shape[2];

	for (int n = 0; n < batch; n++)
		for (int o = 0; o < a->out_ch; o++)
			for (int y = 0; y < oh; y++)
				for (int x = 0; x < ow; x++) {
					const double d = dy[(((size_t)n * a->out_ch + o) * oh + y) * ow + x];

					for (int c = 0; c < a->in_ch; c++)
						for (int i = 0; i < a->kh; i++)
							for (int j = 0; j < a->kw; j++) {
								const int r = y * a->stride_h - a->pad_h + i;
								const int q = x * a->stride_w - a->pad_w + j;
								size_t at;
								double t;

								if (r < 0 || r >= ih || q < 0 || q >= iw)
									continue;
								at = (((size_t)n * a->in_ch + c) * ih + r) * iw + q;
								t = d * w[(((size_t)o * a->in_ch + c) * a->kh + i) * a->kw + j];
								sum[at] += t;
								mag[at] += fabs(t);
							}
				}
}

/*
 * Fails unless dx (n_dx floats) is the sum of the input gradients of the
 * n_conv conv nodes ids[] that read it, each for what the walk brought to
 * its output (r[id]), to float rounding: every element within
 * (out_ch + kh·kw + n_conv)·FLT_EPSILON of the sum of its terms'
 * magnitudes, a bound on the rounding of the GEMM, the fold and the sum.
 */
static void check_conv_dx(const struct iap_graph *g, const int *ids, int n_conv, float *const *r, const float *dx,
			  size_t n_dx, int batch)
{
	double *sum = calloc(n_dx, sizeof(double)), *mag = calloc(n_dx, sizeof(double)), worst = 0;
	int terms = n_conv;

	assert_true(sum && mag);
	for (int k = 0; k < n_conv; k++) {
		const struct iap_conv2d_attr *a = &g->nodes[ids[k]].attr.conv;

		conv_dx_ref(g, ids[k], r[ids[k]], batch, sum, mag);
		terms += a->out_ch + a->kh * a->kw;
	}
	for (size_t i = 0; i < n_dx; i++) {
		const double e = fabs(dx[i] - sum[i]);

		if (e > terms * FLT_EPSILON * mag[i] + FLT_MIN)
			fail_msg("%s: dx[%zu] = %.9g, want %.9g (terms' magnitude %.3g)", g->nodes[ids[0]].name, i,
				 dx[i], sum[i], mag[i]);
		worst = e > worst ? e : worst;
	}
	printf("# dx of %s%s against the double reference: worst %.3g\n", g->nodes[ids[0]].name,
	       n_conv > 1 ? " and the others reading its input" : "", worst);
	free(sum);
	free(mag);
}

/*
 * The input gradient with whole samples per thread (conv2d.c,
 * conv_backward_input_by_sample), the forward test's mirror: a batch of 7
 * on 2 and 3 threads runs 6 samples split by sample and the last one per
 * op, and what the gradient walk brings to every node and to the input must
 * be the bits one thread gives, and match a double-precision reference.
 * conv1 (3×3 on 4 channels, no Winograd) fits its column buffers in the
 * workspace conv2 (5×5 on 96 channels) sized; conv2 does not and stays per
 * op; conv3 is 1×1 (its product accumulates straight into dx, onto what
 * conv5, the other reader of its input, put there); conv4 is a 3×3 with
 * stride 1×2 (512 positions: too wide to be grouped), whose three buffers
 * fit; conv5 is too small to split. (conv2's 96 channels were chosen
 * when iap_sgemm's row blocks were not yet 16-aligned: its 2400-row product
 * then split into whole 16s anyway.)
 */
static void test_conv_backward_sample_split(void **state)
{
	char what[160];
	const int64_t in[3] = { 4, 32, 32 };
	struct iap_error err = { 0, "" };
	struct iap_graph *g = iap_graph_new(3, in, &err);
	struct iap_tensor x = tu_rand_tensor(24, 4, (int64_t)7, (int64_t)4, (int64_t)32, (int64_t)32);
	struct iap_tensor seed = tu_rand_tensor(25, 2, (int64_t)7, (int64_t)10);
	const struct iap_walk_opts wo = { .hook = keep_r, .want_input = 1 };
	float *ref[17] = { NULL };
	size_t len[17] = { 0 };
	int c1, c2, c35[2], c4, v, b;

	(void)state;
	assert_non_null(g);
	v = c1 = iap_conv2d(g, "conv1", IAP_GRAPH_INPUT, 96, 3, 3, 1, 1, 1, 1, 1);
	v = iap_relu(g, "relu1", v);
	b = c2 = iap_conv2d(g, "conv2", v, 16, 5, 5, 1, 1, 2, 2, 0);
	v = c35[0] = iap_conv2d(g, "conv3", b, 128, 1, 1, 1, 1, 0, 0, 1);
	v = c4 = iap_conv2d(g, "conv4", v, 8, 3, 3, 1, 2, 1, 1, 1);
	c35[1] = iap_conv2d(g, "conv5", b, 8, 3, 3, 1, 2, 1, 1, 0);
	v = iap_add(g, "add", v, c35[1]);
	v = iap_flatten(g, "flatten", v);
	iap_linear(g, "fc", v, 10, 1);
	assert_int_equal(iap_graph_finalize(g, &err), 0);
	assert_true(g->n_nodes < 17);
	tu_randomize_params(g, 7, 0.2f);
	for (int t = 1; t <= 3; t++) {
		iap_threads_set(t);
		assert_int_equal(iap_graph_forward(g, &x, &err), 0);
		assert_int_equal(iap_graph_backward(g, iap_ruleset_gradient(), &seed, &wo, &err), 0);
		/* Every node's quantity, and the input's last (index n_nodes). */
		for (int i = 0; i <= g->n_nodes; i++) {
			const struct iap_tensor *r = i < g->n_nodes ? iap_graph_node_r(g, i) : &g->input_r;

			assert_non_null(r);
			if (t == 1) {
				len[i] = (size_t)iap_tensor_numel(r);
				ref[i] = malloc(len[i] * sizeof(float));
				assert_non_null(ref[i]);
				memcpy(ref[i], r->data, len[i] * sizeof(float));
				continue;
			}
			snprintf(what, sizeof(what), "walk at node %d on %d threads", i, t);
			assert_true(tu_thread_match(ref[i], r->data, len[i], 1e-5, what));
		}
	}
	/* A conv's dx is what arrives at its input: the graph input for conv1, relu1 for conv2, ... */
	check_conv_dx(g, &c1, 1, ref, ref[g->n_nodes], len[g->n_nodes], 7);
	check_conv_dx(g, &c2, 1, ref, ref[g->nodes[c2].inputs[0]], len[g->nodes[c2].inputs[0]], 7);
	check_conv_dx(g, c35, 2, ref, ref[c2], len[c2], 7);
	check_conv_dx(g, &c4, 1, ref, ref[c35[0]], len[c35[0]], 7);
	for (int i = 0; i < 17; i++)
		free(ref[i]);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
	iap_threads_set(2);
}

static float **scores_new(const struct iap_graph *g)
{
	float **s = calloc((size_t)g->n_groups + 1, sizeof(*s));

	assert_non_null(s);
	for (int i = 0; i < g->n_groups; i++) {
		s[i] = calloc((size_t)g->groups[i].n_units, sizeof(float));
		assert_non_null(s[i]);
	}
	return s;
}

static void scores_free(const struct iap_graph *g, float **s)
{
	for (int i = 0; i < g->n_groups; i++)
		free(s[i]);
	free(s);
}

/* Unit scores of one attribution pass on t threads; relative to the largest score. */
static void attribute_on(const struct iap_plugin *pl, struct iap_graph *g, const struct iap_tensor *x,
			 const char *const *kv, int t, float **scores)
{
	const struct iap_attribution_ops *ops = pl->desc->ops.attribution;
	struct iap_error err = { 0, "" };
	struct iap_opts *o = NULL;
	void *st = NULL;

	iap_threads_set(t);
	assert_int_equal(iap_opts_defaults(pl->desc->options, &o, &err), 0);
	for (; kv && kv[0]; kv += 2)
		assert_int_equal(iap_opts_set(o, pl->desc->name, kv[0], kv[1], &err), 0);
	if (ops->create(o, g, &st, &err))
		fail_msg("%s: %s", pl->desc->name, err.msg);
	if (iap_attribute_batch(ops, st, o, g, x, NULL, scores, NULL, &err))
		fail_msg("%s: %s", pl->desc->name, err.msg);
	ops->destroy(st);
	iap_opts_free(o);
}

static void test_attribution_threads(void **state)
{
	static const char *const names[] = { "lrp", "dlb", "ig" };
	static const char *const ig_opts[] = { "steps", "8", NULL };
	struct iap_registry *reg = tu_registry_load(IAP_ATTR_PLUGIN_DIR, names, 3);
	struct iap_tensor x = tu_rand_tensor(22, 4, (int64_t)2, (int64_t)3, (int64_t)64, (int64_t)64);

	(void)state;
	assert_non_null(reg);
	for (int k = 0; k < 3; k++) {
		struct iap_graph *g = model(k);

		for (int a = 0; a < 3; a++) {
			const struct iap_plugin *pl = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, names[a]);
			float **s1 = scores_new(g), **s2 = scores_new(g);
			double worst = 0, top = 0;

			assert_non_null(pl);
			attribute_on(pl, g, &x, a == 2 ? ig_opts : NULL, 1, s1);
			attribute_on(pl, g, &x, a == 2 ? ig_opts : NULL, 2, s2);
			for (int gi = 0; gi < g->n_groups; gi++)
				for (int u = 0; u < g->groups[gi].n_units; u++) {
					double d = fabs((double)s1[gi][u] - s2[gi][u]);

					assert_true(isfinite(s1[gi][u]));
					worst = d > worst ? d : worst;
					top = fabs(s1[gi][u]) > top ? fabs(s1[gi][u]) : top;
				}
			printf("# %s %s scores, 2 vs 1 thread: %.3g of the largest (%.3g)\n", model_names[k],
			       names[a], top > 0 ? worst / top : worst, top);
			assert_true(top > 0);
			assert_true(worst <= 1e-4 * top);
			scores_free(g, s1);
			scores_free(g, s2);
		}
		iap_graph_free(g);
	}
	iap_tensor_free(&x);
	iap_registry_free(reg);
	iap_threads_set(2);
}

/* ---- batch evaluation: slices of the batch per thread against the per-op split -------- */

#define PRED_N 44   /* slices [0, 16), [16, 32), [32, 44) on 3 threads: a tail slice too */

static int64_t pred_count(void *state)
{
	(void)state;
	return PRED_N;
}

static int pred_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	const struct iap_tensor *x = state;
	const int64_t per = iap_tensor_numel(x) / x->shape[0];

	(void)err;
	memcpy(image, x->data + i * per, (size_t)per * sizeof(float));
	*label = (int)(i % 10);
	return IAP_OK;
}

static const struct iap_dataset_ops pred_ops = { .size = sizeof(struct iap_dataset_ops), .count = pred_count,
						 .load = pred_load };

static void test_predict_slices(void **state)
{
	char what[160];
	struct iap_tensor x = tu_rand_tensor(23, 4, (int64_t)PRED_N, (int64_t)3, (int64_t)64, (int64_t)64);
	struct iap_dataset ds = { .ops = &pred_ops, .state = &x, .split = IAP_SPLIT_TEST, .count = PRED_N,
				  .info = { .n_classes = 10, .in_ndim = 3, .in_shape = { 3, 64, 64 } } };
	float *ref = malloc(sizeof(float) * PRED_N * 10), *p = malloc(sizeof(float) * PRED_N * 10);
	int labels[PRED_N];

	(void)state;
	assert_true(ref && p);
	for (int k = 0; k < 3; k++) {
		struct iap_graph *g = model(k);
		struct iap_error err = { 0, "" };

		for (int masked = 0; masked < 2; masked++) {
			if (masked) {
				/* Every third unit of every group pruned: the masked convs' and linears' own paths. */
				for (int gi = 0; gi < g->n_groups; gi++) {
					uint8_t keep[4096];

					assert_true(g->groups[gi].n_units <= 4096);
					for (int u = 0; u < g->groups[gi].n_units; u++)
						keep[u] = u % 3 != 1;
					assert_int_equal(iap_graph_set_mask(g, gi, keep, &err), 0);
				}
			}
			iap_threads_set(1);
			assert_int_equal(iap_predict_split(g, &ds, PRED_N, IAP_EVAL_SPLIT_OPS, ref, labels, &err), 0);
			for (int t = 1; t <= 3; t++) {
				iap_threads_set(t);
				assert_int_equal(iap_predict_split(g, &ds, PRED_N, IAP_EVAL_SPLIT_BATCH, p, labels, &err), 0);
				snprintf(what, sizeof(what), "%s%s: %d threads in slices against the whole batch",
					 model_names[k], masked ? " masked" : "", t);
				assert_true(tu_thread_match(ref, p, PRED_N * 10, 1e-5, what));
				assert_int_equal(iap_predict_split(g, &ds, PRED_N, IAP_EVAL_SPLIT_OPS, p, labels, &err), 0);
				snprintf(what, sizeof(what), "%s%s: the per-op split on %d threads against 1 thread",
					 model_names[k], masked ? " masked" : "", t);
				assert_true(tu_thread_match(ref, p, PRED_N * 10, 1e-5, what));
			}
			/* The graph still runs whole batches afterwards (slice 0 ran on it). */
			assert_int_equal(iap_predict_split(g, &ds, 7, IAP_EVAL_SPLIT_AUTO, p, labels, &err), 0);
			assert_int_equal(labels[PRED_N - 1], (PRED_N - 1) % 10);
		}
		iap_graph_free(g);
	}
	free(ref);
	free(p);
	iap_tensor_free(&x);
	iap_threads_set(2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_configure_precedence),
		cmocka_unit_test(test_configure_bad_env),
		cmocka_unit_test(test_par_threads),
		cmocka_unit_test(test_sgemm_split),
		cmocka_unit_test(test_sgemv_sger_split),
		cmocka_unit_test(test_forward_threads),
		cmocka_unit_test(test_conv_sample_split),
		cmocka_unit_test(test_conv_backward_sample_split),
		cmocka_unit_test(test_attribution_threads),
		cmocka_unit_test(test_predict_slices),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
