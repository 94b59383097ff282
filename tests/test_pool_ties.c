/*
 * The max-pool tie rule on real networks: torchvision VGG11 and VGG11_bn at
 * an all-zero input, IG's α = 0 node with the zeros baseline. There every
 * map after the first conv is spatially constant, so most max-pool windows
 * hold exactly tied maxima in PyTorch, which sends each window's gradient to
 * the first tied cell. iaprune's Winograd and GEMM convolutions leave a few
 * ulps of rounding noise on those maps; the pool must still pick the first
 * cell, or the gradient at α = 0 (and with it IG's trapezoid end and the
 * conductance's first segment) goes to other pixels entirely.
 *
 * The reference is tests/fixtures/ig/gen_zero_baseline.py: PyTorch's
 * gradient in float64 for VGG11 at width 1/8 on 64 x 64 inputs (conv 2
 * takes the Winograd path), its parameters filled by a hash-seeded LCG that
 * this file repeats exactly (fill()), every features.* bias positive so the
 * constant maps survive the ReLUs.
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
#include <iaprune/safetensors.h>
#include <iaprune/weights.h>

#include "../plugins/models/arch.h"

static void path_of(char *buf, size_t len, const char *rel)
{
	const char *srcdir = getenv("IAP_TEST_SRCDIR");

	snprintf(buf, len, "%s/%s", srcdir ? srcdir : ".", rel);
}

static void read_ref(const struct iap_safetensors *st, const char *name, struct iap_tensor *t)
{
	const struct iap_st_tensor *s = iap_safetensors_find(st, name);
	struct iap_error err;

	if (!s)
		fail_msg("%s: no tensor '%s'", st->path, name);
	if (iap_tensor_alloc(t, s->ndim, s->shape, &err) || iap_safetensors_read_f32(st, s, t->data, &err))
		fail_msg("%s", err.msg);
}

/* The generator's fill(): an LCG seeded by the FNV-1a hash of SALT + key, k / 2^24 - 1/2. */
static int fill(struct iap_node *node, struct iap_param *p, void *user)
{
	const char *k = p->key;
	size_t len = strlen(k);
	uint64_t x = 0xcbf29ce484222325ull;
	int64_t n = iap_tensor_numel(&p->value);
	double scale = 0.0;

	(void)node;
	(void)user;
	/* The generator's SALT ("1"), then the key. */
	x = (x ^ (unsigned char)'1') * 0x100000001b3ull;
	for (const char *c = k; *c; c++)
		x = (x ^ (unsigned char)*c) * 0x100000001b3ull;
	if (p->value.ndim > 1)
		scale = sqrt(6.0 / (double)(n / p->value.shape[0]));
#define ENDS(s) (len >= strlen(s) && !strcmp(k + len - strlen(s), s))
	for (int64_t i = 0; i < n; i++) {
		double u, v;

		x = x * 6364136223846793005ull + 1442695040888963407ull;
		u = (double)(x >> 40) / 16777216.0 - 0.5;
		if (ENDS("running_mean"))
			v = 0.4 * u;
		else if (ENDS("running_var"))
			v = 0.5 + 1.5 * (u + 0.5);
		else if (ENDS("bias"))
			v = !strncmp(k, "features.", 9) ? 0.05 + 0.2 * fabs(u) : 0.2 * u;
		else if (p->value.ndim == 1)
			v = 0.5 + (u + 0.5);
		else
			v = scale * u;
		p->value.data[i] = (float)v;
	}
#undef ENDS
	return 0;
}

/* Windows of every max-pool whose two largest values differ by a little (rounding), not 0. */
static double worst_rel;

static int noisy_windows(const struct iap_graph *g)
{
	int noisy = 0;

	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *n = &g->nodes[i];
		const struct iap_tensor *x;
		int oh_n, ow_n, h, w, k, s;

		if (n->kind != IAP_OP_MAXPOOL2D)
			continue;
		x = iap_graph_node_input(g, n, 0);
		h = (int)x->shape[2];
		w = (int)x->shape[3];
		k = n->attr.pool.kh;
		s = n->attr.pool.stride_h;
		oh_n = (int)n->out_shape[1];
		ow_n = (int)n->out_shape[2];
		for (int64_t p = 0; p < x->shape[1]; p++)
			for (int oh = 0; oh < oh_n; oh++)
				for (int ow = 0; ow < ow_n; ow++) {
					float a = -INFINITY, b = -INFINITY;

					for (int i2 = 0; i2 < k; i2++)
						for (int j = 0; j < k; j++) {
							float v = x->data[(p * h + oh * s + i2) * w + ow * s + j];

							if (v > a) {
								b = a;
								a = v;
							} else if (v > b) {
								b = v;
							}
						}
					if (a != b && a - b < 1e-5f * fabsf(a)) {
						noisy++;
						if ((a - b) / fabsf(a) > worst_rel)
							worst_rel = (a - b) / fabsf(a);
					}
				}
	}
	return noisy;
}

static void check_zero_baseline(const char *name, int batch_norm)
{
	struct iap_cnn_cfg cfg = { .depth = 11, .batch_norm = batch_norm, .num_classes = 3, .in_channels = 3,
				   .image_size = 64, .width = 0.125, .dropout = 0.5f };
	struct iap_tensor grad = { 0 }, tgt = { 0 }, logits = { 0 }, x = { 0 }, seed = { 0 };
	struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_safetensors *ref;
	struct iap_graph *g = NULL;
	struct iap_error err;
	int64_t xs[4] = { 1, 3, 64, 64 }, ss[2] = { 1, 3 };
	char path[4096], key[64];
	double worst = 0.0, scale = 0.0;
	int target, noisy;

	path_of(path, sizeof(path), "tests/fixtures/ig/zero_baseline.safetensors");
	if (iap_safetensors_open(path, &ref, &err))
		fail_msg("%s", err.msg);
	snprintf(key, sizeof(key), "%s.grad", name);
	read_ref(ref, key, &grad);
	snprintf(key, sizeof(key), "%s.target", name);
	read_ref(ref, key, &tgt);
	target = (int)tgt.data[0];
	snprintf(key, sizeof(key), "%s.logits", name);
	read_ref(ref, key, &logits);

	assert_int_equal(iap_vgg_build(&cfg, &g, &err), IAP_OK);
	iap_graph_foreach_param(g, fill, NULL);

	assert_int_equal(iap_tensor_alloc(&x, 4, xs, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&seed, 2, ss, &err), IAP_OK);
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	for (int k = 0; k < 3; k++)
		assert_true(fabs(iap_graph_output(g)->data[k] - logits.data[k]) < 1e-5);
	seed.data[target] = 1.0f;
	assert_int_equal(iap_graph_backward(g, iap_ruleset_gradient(), &seed, &wo, &err), IAP_OK);
	noisy = noisy_windows(g);
	for (int64_t i = 0; i < iap_tensor_numel(&grad); i++) {
		double d = fabs((double)g->input_r.data[i] - grad.data[i]);

		worst = d > worst ? d : worst;
		scale = fabs(grad.data[i]) > scale ? fabs(grad.data[i]) : scale;
	}
	print_message("%s at x = 0: %d pool windows with maxima tied up to rounding here, "
		      "(largest relative gap %.3g), max |grad - torch| %.3g (max |torch| %.3g)\n", name, noisy,
		      worst_rel, worst, scale);
	assert_true(scale > 0.0);
	assert_true(worst <= 1e-4 * scale);

	iap_graph_free(g);
	iap_tensor_free(&grad);
	iap_tensor_free(&tgt);
	iap_tensor_free(&logits);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_safetensors_close(ref);
}

static void test_vgg11_zero_baseline(void **state)
{
	(void)state;
	check_zero_baseline("vgg11", 0);
}

static void test_vgg11_bn_zero_baseline(void **state)
{
	(void)state;
	check_zero_baseline("vgg11_bn", 1);
}

/*
 * The rule itself on one 1 x 4 window pair (k 2, stride 2): maxima within
 * 2^-16 of the first cell's value go to the first cell, the pooled value
 * is still the exact maximum, and a clear maximum wins as before.
 */
static void test_tie_rule_hand(void **state)
{
	const float up = 1.0f + 1.0f / 131072.0f; /* 1 + 2^-17: within the tolerance */
	float xv[8] = { 1.0f, up, 0.5f, 1.0f - 1.0f / 262144.0f, 1.0f, 1.001f, 0.25f, 0.0f };
	int64_t in_shape[3] = { 1, 2, 4 }, xs[4] = { 1, 1, 2, 4 };
	struct iap_graph *g;
	struct iap_tensor x = { 0 };
	struct iap_error err;
	const int32_t *arg;

	(void)state;
	g = iap_graph_new(3, in_shape, &err);
	assert_non_null(g);
	assert_int_equal(iap_maxpool2d(g, "p", IAP_GRAPH_INPUT, 2, 2, 0, 0), 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&x, 4, xs, &err), IAP_OK);
	memcpy(x.data, xv, sizeof(xv));
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	arg = (const int32_t *)g->nodes[0].aux[0].data;
	/* Window 0: cells 0, 1, 4, 5 = {1, up, 1, 1.001}: 1.001 is clear. */
	assert_true(iap_graph_output(g)->data[0] == 1.001f);
	assert_int_equal(arg[0], 5);
	/* Window 1: cells 2, 3, 6, 7 = {0.5, 1 - 2^-18, 0.25, 0}: a clear maximum. */
	assert_int_equal(arg[1], 3);
	/* Now without the clear 1.001: {1, up, 1, 1} ties up to rounding, first cell. */
	x.data[5] = 1.0f;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_true(iap_graph_output(g)->data[0] == up);
	assert_int_equal(arg[0], 0);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tie_rule_hand),
		cmocka_unit_test(test_vgg11_zero_baseline),
		cmocka_unit_test(test_vgg11_bn_zero_baseline),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
