/*
 * Training: Adam against hand-computed updates, the StepLR schedule, each
 * augmentation on tiny images with known results, and the loop itself on a
 * synthetic two-class dataset (class 0 bright top half, class 1 bright
 * bottom half): the loss falls, validation accuracy is far above chance,
 * progress is reported per batch (partial last batch included), and a run
 * interrupted after one epoch and resumed ends bit-identical to an
 * uninterrupted one.
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
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/graph.h>
#include <iaprune/metrics.h>
#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/rng.h>
#include <iaprune/train.h>

#define TOL 1e-6

/* ---- Adam and StepLR ------------------------------------------------------------ */

/* A graph with one linear layer: weight [1, 2] and bias [1] are the parameters under test. */
static struct iap_graph *one_linear(void)
{
	int64_t in[1] = { 2 };
	struct iap_graph *g = iap_graph_new(1, in, NULL);

	assert_non_null(g);
	assert_true(iap_linear(g, "fc", IAP_GRAPH_INPUT, 1, 1) >= 0);
	assert_int_equal(iap_graph_finalize(g, NULL), IAP_OK);
	return g;
}

/*
 * lr 0.1, betas 0.9 / 0.999, eps 1e-8. Weight 0 starts at 1 with gradients
 * 0.5 then −1:
 *   t=1: m = .05, v = .00025, m̂ = .5, √v̂ = .5 → θ = 1 − .1·.5/(.5 + 1e-8) = 0.900000002
 *   t=2: m = .045 − .1 = −.055, v = .00024975 + .001 = .00124975,
 *        θ = .9 + (.1/.19) · .055 / (√.00124975/√.001999 + 1e-8) = 0.93661035424
 * Weight 1 starts at −2 with gradients .25, .25: θ = −2.099999996, then
 *   m = .0475, v = .0001249375 → −2.199999992.
 * The bias (gradients 0) stays put: m = v = 0 gives 0/(0 + eps).
 */
static void test_adam_two_steps(void **state)
{
	struct iap_graph *g = one_linear();
	struct iap_param *w = iap_graph_find_param(g, "fc.weight");
	struct iap_param *b = iap_graph_find_param(g, "fc.bias");
	struct iap_adam_cfg cfg = { .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8 };
	struct iap_adam opt;
	struct iap_error err;

	(void)state;
	assert_non_null(w);
	assert_non_null(b);
	w->value.data[0] = 1.0f;
	w->value.data[1] = -2.0f;
	b->value.data[0] = 0.5f;
	assert_int_equal(iap_adam_init(&opt, g, &cfg, &err), IAP_OK);
	assert_int_equal(opt.n, 2);
	/* No gradient storage yet: refused, not a crash. */
	assert_int_equal(iap_adam_step(&opt, &err), IAP_EINVAL);
	assert_int_equal(iap_graph_zero_grads(g, &err), IAP_OK);

	w->grad.data[0] = 0.5f;
	w->grad.data[1] = 0.25f;
	assert_int_equal(iap_adam_step(&opt, &err), IAP_OK);
	assert_int_equal(opt.step, 1);
	assert_float_equal(opt.m[0].data[0], 0.05, TOL);
	assert_float_equal(opt.v[0].data[0], 0.00025, 1e-9);
	assert_float_equal(w->value.data[0], 0.900000002, TOL);
	assert_float_equal(w->value.data[1], -2.099999996, TOL);
	assert_float_equal(b->value.data[0], 0.5, 0.0);

	w->grad.data[0] = -1.0f;
	w->grad.data[1] = 0.25f;
	assert_int_equal(iap_adam_step(&opt, &err), IAP_OK);
	assert_float_equal(opt.m[0].data[0], -0.055, TOL);
	assert_float_equal(opt.v[0].data[0], 0.00124975, 1e-9);
	assert_float_equal(w->value.data[0], 0.9366103542, TOL);
	assert_float_equal(w->value.data[1], -2.199999992, TOL);
	assert_float_equal(b->value.data[0], 0.5, 0.0);
	iap_adam_free(&opt);
	iap_graph_free(g);
}

/*
 * Weight decay 0.1 is added to the gradient (torch.optim.Adam's L2):
 *   t=1: g = .5 + .1·1 = .6 → θ = 1 − .06/(.6 + 1e-8) = 0.9000000017
 *   t=2: g = −1 + .1·.9 = −.91, m = .054 − .091 = −.037,
 *        v = .00035964 + .0008281 = .00118774 → θ = 0.9252635194
 */
static void test_adam_weight_decay(void **state)
{
	struct iap_graph *g = one_linear();
	struct iap_param *w = iap_graph_find_param(g, "fc.weight");
	struct iap_adam_cfg cfg = { .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
				    .weight_decay = 0.1 };
	struct iap_adam opt;
	struct iap_error err;

	(void)state;
	w->value.data[0] = 1.0f;
	assert_int_equal(iap_adam_init(&opt, g, &cfg, &err), IAP_OK);
	assert_int_equal(iap_graph_zero_grads(g, &err), IAP_OK);
	w->grad.data[0] = 0.5f;
	assert_int_equal(iap_adam_step(&opt, &err), IAP_OK);
	assert_float_equal(w->value.data[0], 0.9000000017, TOL);
	w->grad.data[0] = -1.0f;
	assert_int_equal(iap_adam_step(&opt, &err), IAP_OK);
	assert_float_equal(opt.m[0].data[0], -0.037, TOL);
	assert_float_equal(opt.v[0].data[0], 0.00118774, 1e-9);
	assert_float_equal(w->value.data[0], 0.9252635194, TOL);
	iap_adam_free(&opt);

	cfg.beta2 = 1.0;
	assert_int_equal(iap_adam_init(&opt, g, &cfg, &err), IAP_EINVAL);
	iap_graph_free(g);
}

static void test_steplr(void **state)
{
	(void)state;
	for (int e = 0; e < 10; e++)
		assert_float_equal(iap_steplr(1e-3, 10, 0.1, e), 1e-3, 1e-15);
	assert_float_equal(iap_steplr(1e-3, 10, 0.1, 10), 1e-4, 1e-15);
	assert_float_equal(iap_steplr(1e-3, 10, 0.1, 19), 1e-4, 1e-15);
	assert_float_equal(iap_steplr(1e-3, 10, 0.1, 20), 1e-5, 1e-16);
	assert_float_equal(iap_steplr(1e-3, 10, 0.1, 35), 1e-6, 1e-17);
	assert_float_equal(iap_steplr(0.5, 3, 0.5, 7), 0.125, 0.0);
	assert_float_equal(iap_steplr(0.5, 0, 0.5, 7), 0.5, 0.0);  /* step 0: constant */
}

/* ---- augmentations ------------------------------------------------------------------- */

static void test_flips(void **state)
{
	/* Two channels of 2×3. */
	float img[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
	const float h[12] = { 3, 2, 1, 6, 5, 4, 9, 8, 7, 12, 11, 10 };
	const float hv[12] = { 6, 5, 4, 3, 2, 1, 12, 11, 10, 9, 8, 7 };
	float odd[9] = { 1, 2, 3, 4, 5, 6, 7, 8, 9 };
	const float oddv[9] = { 7, 8, 9, 4, 5, 6, 1, 2, 3 };

	(void)state;
	iap_aug_hflip(img, 2, 2, 3);
	assert_memory_equal(img, h, sizeof(h));
	iap_aug_vflip(img, 2, 2, 3);
	assert_memory_equal(img, hv, sizeof(hv));
	iap_aug_vflip(odd, 1, 3, 3);
	assert_memory_equal(odd, oddv, sizeof(oddv));
}

static void test_rotation(void **state)
{
	float src[12], dst[12], zero[25] = { 0 }, out25[25];
	const float seven = 7.0f;

	(void)state;
	/* 90° counter-clockwise on 3×3: the right column becomes the top row. */
	for (int i = 0; i < 9; i++)
		src[i] = (float)(i + 1);
	iap_aug_rotate(src, dst, 1, 3, 3, 90.0, NULL);
	{
		const float want[9] = { 3, 6, 9, 2, 5, 8, 1, 4, 7 };
		for (int i = 0; i < 9; i++)
			assert_float_equal(dst[i], want[i], 1e-5);
	}
	/* −90° (clockwise): the left column becomes the top row, bottom first. */
	iap_aug_rotate(src, dst, 1, 3, 3, -90.0, NULL);
	{
		const float want[9] = { 7, 4, 1, 8, 5, 2, 9, 6, 3 };
		for (int i = 0; i < 9; i++)
			assert_float_equal(dst[i], want[i], 1e-5);
	}
	/* 180° on a non-square 2×3, two channels: reverse each plane. */
	for (int i = 0; i < 12; i++)
		src[i] = (float)i;
	iap_aug_rotate(src, dst, 2, 2, 3, 180.0, NULL);
	for (int ch = 0; ch < 2; ch++)
		for (int i = 0; i < 6; i++)
			assert_float_equal(dst[ch * 6 + i], src[ch * 6 + 5 - i], 1e-5);
	/* A constant image equal to the fill is unchanged by any angle. */
	for (int i = 0; i < 12; i++)
		src[i] = seven;
	iap_aug_rotate(src, dst, 1, 3, 4, 17.0, &seven);
	for (int i = 0; i < 12; i++)
		assert_float_equal(dst[i], 7.0, 1e-5);
	/*
	 * 45° on a zero 5×5 with fill 7: the corner pixel (offset (−2, −2) from the
	 * centre) samples x = 2, y = 2 − 2√2 ≈ −0.83, i.e. weight 2√2 − 2 on the
	 * row above the image (fill) and the rest on row 0 (zero). The centre stays 0.
	 */
	iap_aug_rotate(zero, out25, 1, 5, 5, 45.0, &seven);
	assert_float_equal(out25[0], 7.0 * (2.0 * sqrt(2.0) - 2.0), 1e-5);
	assert_float_equal(out25[12], 0.0, 1e-6);
}

static void test_crop_geometry(void **state)
{
	const double full[2] = { 1.0, 1.0 }, square[2] = { 1.0, 1.0 }, quarter[2] = { 0.25, 0.25 };
	const double scale[2] = { 0.7, 1.0 }, wide[2] = { 3.0, 4.0 }, paper_ratio[2] = { 0.75, 4.0 / 3.0 };
	struct iap_rng r, r2;
	int top, left, ch, cw;

	(void)state;
	/* Whole image: the only crop that fits. */
	iap_rng_seed(&r, 1);
	iap_aug_crop_params(&r, 12, 12, full, square, &top, &left, &ch, &cw);
	assert_int_equal(top, 0);
	assert_int_equal(left, 0);
	assert_int_equal(ch, 12);
	assert_int_equal(cw, 12);

	/*
	 * A quarter of 12×12 at ratio 1 is 6×6; after the two (scale, ratio)
	 * draws the position takes two uniform integers in [0, 6].
	 */
	iap_rng_seed(&r, 42);
	iap_aug_crop_params(&r, 12, 12, quarter, square, &top, &left, &ch, &cw);
	iap_rng_seed(&r2, 42);
	(void)iap_rng_uniform(&r2);
	(void)iap_rng_uniform(&r2);
	assert_int_equal(ch, 6);
	assert_int_equal(cw, 6);
	assert_int_equal(top, (int)iap_rng_below(&r2, 7));
	assert_int_equal(left, (int)iap_rng_below(&r2, 7));

	/*
	 * Ratio 3–4 never fits a square (w = √(area·r) ≥ √(100.8·3) > 12), so after
	 * ten attempts the fallback is the centre crop at ratio 3: w 12, h round(12/3) = 4.
	 */
	iap_rng_seed(&r, 7);
	iap_aug_crop_params(&r, 12, 12, scale, wide, &top, &left, &ch, &cw);
	assert_int_equal(cw, 12);
	assert_int_equal(ch, 4);
	assert_int_equal(top, 4);
	assert_int_equal(left, 0);

	/* The paper's ranges: every crop fits and covers 70–100 % of the area within rounding. */
	iap_rng_seed(&r, 3);
	for (int k = 0; k < 200; k++) {
		iap_aug_crop_params(&r, 12, 12, scale, paper_ratio, &top, &left, &ch, &cw);
		assert_true(ch >= 1 && cw >= 1 && top >= 0 && left >= 0);
		assert_true(top + ch <= 12 && left + cw <= 12);
		assert_true(ch * cw >= 0.7 * 144 * 0.8);
	}
}

/*
 * Bilinear (align_corners = False) of [[0, 1], [2, 3]] to 4×4: along each
 * axis the source positions are −.25 → 0, .25, .75, 1.25 → clamped, giving
 * weights 0, .25, .75, 1; out[i][j] = xv[j] + 2·yv[i].
 */
static void test_resize_crop(void **state)
{
	const float src[4] = { 0, 1, 2, 3 };
	const float v[4] = { 0.0f, 0.25f, 0.75f, 1.0f };
	float dst[16], big[36], same[36];

	(void)state;
	iap_aug_resize_crop(src, 1, 2, 2, 0, 0, 2, 2, dst, 4, 4);
	for (int i = 0; i < 4; i++)
		for (int j = 0; j < 4; j++)
			assert_float_equal(dst[i * 4 + j], v[j] + 2.0f * v[i], 1e-6);
	/* Full crop at the same size is a copy. */
	for (int i = 0; i < 36; i++)
		big[i] = (float)i * 0.5f;
	iap_aug_resize_crop(big, 1, 6, 6, 0, 0, 6, 6, same, 6, 6);
	assert_memory_equal(big, same, sizeof(big));
	/* A 1×1 crop at (2, 3) fills everything with that pixel. */
	iap_aug_resize_crop(big, 1, 6, 6, 2, 3, 1, 1, dst, 4, 4);
	for (int i = 0; i < 16; i++)
		assert_float_equal(dst[i], big[2 * 6 + 3], 0.0);
}

static void test_color(void **state)
{
	float b[2] = { 0.2f, 0.8f }, c[4] = { 0.0f, 1.0f, 0.0f, 1.0f };
	float rgb[3] = { 1.0f, 0.0f, 0.0f }, one[3] = { 0.3f, 0.6f, 0.9f };

	(void)state;
	iap_aug_brightness(b, 1, 1, 2, 1.5f);
	assert_float_equal(b[0], 0.3, 1e-6);
	assert_float_equal(b[1], 1.0, 0.0);  /* 1.2 clamped */
	/* Contrast .5 around the mean .5: 0 → .25, 1 → .75. */
	iap_aug_contrast(c, 1, 2, 2, 0.5f);
	assert_float_equal(c[0], 0.25, 1e-6);
	assert_float_equal(c[1], 0.75, 1e-6);
	/* Saturation 0 turns pure red into its grey 0.2989 in every channel. */
	iap_aug_saturation(rgb, 3, 1, 1, 0.0f);
	for (int k = 0; k < 3; k++)
		assert_float_equal(rgb[k], 0.2989, 1e-6);
	/* Factor 1 is the identity; saturation leaves one channel alone. */
	iap_aug_saturation(one, 3, 1, 1, 1.0f);
	iap_aug_contrast(one, 3, 1, 1, 1.0f);
	assert_float_equal(one[2], 0.9, 1e-6);
	iap_aug_saturation(one, 1, 1, 3, 0.0f);
	assert_float_equal(one[0], 0.3, 1e-6);
}

static void test_augment_pipeline(void **state)
{
	const float mean[1] = { 0.5f }, stdv[1] = { 0.25f };
	struct iap_augment_cfg cfg;
	struct iap_rng r;
	struct iap_error err;
	float img[144], copy[144], again[144], scratch[144 + 1];

	(void)state;
	assert_int_equal(iap_augment_scratch(1, 12, 12), 145);
	for (int i = 0; i < 144; i++)
		img[i] = copy[i] = (float)(i % 13) / 13.0f - 0.5f;
	/* Everything off: the identity, whatever the rng. */
	iap_augment_cfg_none(&cfg);
	iap_rng_seed(&r, 5);
	assert_int_equal(iap_augment(&cfg, &r, img, 1, 12, 12, scratch, &err), IAP_OK);
	assert_memory_equal(img, copy, sizeof(img));

	/* Rotation of a black image (normalised: (0 − .5)/.25 = −2) stays black. */
	cfg.rotate_deg = 30.0;
	cfg.mean = mean;
	cfg.std = stdv;
	for (int i = 0; i < 144; i++)
		img[i] = -2.0f;
	assert_int_equal(iap_augment(&cfg, &r, img, 1, 12, 12, scratch, &err), IAP_OK);
	for (int i = 0; i < 144; i++)
		assert_float_equal(img[i], -2.0, 1e-5);

	/* Brightness on a normalised mid-grey 0 (pixel .5), factor in [.8, 1.2] → pixel in [.4, .6]. */
	iap_augment_cfg_none(&cfg);
	cfg.brightness = 0.2;
	cfg.mean = mean;
	cfg.std = stdv;
	for (int i = 0; i < 144; i++)
		img[i] = 0.0f;
	assert_int_equal(iap_augment(&cfg, &r, img, 1, 12, 12, scratch, &err), IAP_OK);
	assert_true(img[0] >= -0.4f - 1e-6f && img[0] <= 0.4f + 1e-6f);
	for (int i = 1; i < 144; i++)
		assert_float_equal(img[i], img[0], 1e-6);

	/* Defaults are reproducible from the seed and do change the image. */
	iap_augment_cfg_defaults(&cfg);
	cfg.mean = mean;
	cfg.std = stdv;
	memcpy(img, copy, sizeof(img));
	memcpy(again, copy, sizeof(again));
	iap_rng_seed(&r, 9);
	assert_int_equal(iap_augment(&cfg, &r, img, 1, 12, 12, scratch, &err), IAP_OK);
	iap_rng_seed(&r, 9);
	assert_int_equal(iap_augment(&cfg, &r, again, 1, 12, 12, scratch, &err), IAP_OK);
	assert_memory_equal(img, again, sizeof(img));
	assert_memory_not_equal(img, copy, sizeof(img));

	cfg.std = NULL;
	assert_int_equal(iap_augment(&cfg, &r, img, 1, 12, 12, scratch, &err), IAP_EINVAL);
}

/* ---- the loop on a synthetic dataset ------------------------------------------------------ */

#define SIDE 12

struct synth {
	int64_t n;
	float *img;     /* n × 1 × SIDE × SIDE, normalised with mean .5, std .5 */
	int *label;
	int loads;
};

static int64_t synth_count(void *state)
{
	return ((struct synth *)state)->n;
}

static int synth_info(void *state, struct iap_dataset_info *info, struct iap_error *err)
{
	(void)state;
	(void)err;
	*info = (struct iap_dataset_info){ .n_classes = 2, .in_ndim = 3, .in_shape = { 1, SIDE, SIDE } };
	return IAP_OK;
}

static int synth_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	struct synth *s = state;

	if (i < 0 || i >= s->n)
		return iap_error_set(err, IAP_EINVAL, "synthetic sample %lld out of range", (long long)i);
	memcpy(image, s->img + i * SIDE * SIDE, SIDE * SIDE * sizeof(*image));
	*label = s->label[i];
	s->loads++;
	return IAP_OK;
}

static const struct iap_dataset_ops synth_ops = {
	.size = sizeof(struct iap_dataset_ops),
	.count = synth_count,
	.info = synth_info,
	.load = synth_load,
};

/* n samples, the first n0 of class 0 (bright top half), the rest class 1 (bright bottom). */
static void synth_make(struct synth *s, struct iap_dataset *ds, int64_t n, int64_t n0, uint64_t seed,
		       enum iap_split split)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	s->n = n;
	s->loads = 0;
	s->img = malloc((size_t)n * SIDE * SIDE * sizeof(*s->img));
	s->label = malloc((size_t)n * sizeof(*s->label));
	assert_non_null(s->img);
	assert_non_null(s->label);
	for (int64_t i = 0; i < n; i++) {
		int cls = i < n0 ? 0 : 1;

		s->label[i] = cls;
		for (int y = 0; y < SIDE; y++)
			for (int x = 0; x < SIDE; x++) {
				int bright = (y < SIDE / 2) == (cls == 0);
				double px = (bright ? 0.8 : 0.2) + 0.15 * iap_rng_normal(&r);

				px = px < 0.0 ? 0.0 : px > 1.0 ? 1.0 : px;
				s->img[(i * SIDE + y) * SIDE + x] = (float)((px - 0.5) / 0.5);
			}
	}
	*ds = (struct iap_dataset){ .ops = &synth_ops, .state = s, .split = split, .count = n };
	assert_int_equal(synth_info(s, &ds->info, NULL), IAP_OK);
}

static void synth_free(struct synth *s)
{
	free(s->img);
	free(s->label);
}

/* PyTorch's default init: uniform ±1/√fan_in for conv/linear, BN weight 1 and bias 0. */
static void init_params(struct iap_graph *g, uint64_t seed)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *nd = &g->nodes[i];
		double fan_in = 0.0;

		if (nd->kind == IAP_OP_CONV2D)
			fan_in = (double)nd->attr.conv.in_ch * nd->attr.conv.kh * nd->attr.conv.kw;
		else if (nd->kind == IAP_OP_LINEAR)
			fan_in = nd->attr.linear.in_features;
		for (int k = 0; k < nd->n_params; k++) {
			struct iap_param *p = &nd->params[k];
			int64_t n = iap_tensor_numel(&p->value);

			for (int64_t j = 0; j < n; j++) {
				if (fan_in > 0.0)
					p->value.data[j] = (float)((2.0 * iap_rng_uniform(&r) - 1.0) / sqrt(fan_in));
				else if (strstr(p->key, "running_var") || strstr(p->key, ".weight"))
					p->value.data[j] = 1.0f;
				else
					p->value.data[j] = 0.0f;
			}
		}
	}
}

/* conv 1→4 + BN + ReLU + maxpool 2, conv 4→8 + ReLU, global average, dropout, linear 8→2. */
static struct iap_graph *tiny_cnn(uint64_t seed)
{
	int64_t in[3] = { 1, SIDE, SIDE };
	struct iap_graph *g = iap_graph_new(3, in, NULL);
	int x;

	assert_non_null(g);
	x = iap_conv2d(g, "features.0", IAP_GRAPH_INPUT, 4, 3, 3, 1, 1, 1, 1, 0);
	x = iap_batchnorm2d(g, "features.1", x, 1e-5f, 0.1f);
	x = iap_relu(g, "features.2", x);
	x = iap_maxpool2d(g, "features.3", x, 2, 2, 0, 0);
	x = iap_conv2d(g, "features.4", x, 8, 3, 3, 1, 1, 1, 1, 1);
	x = iap_relu(g, "features.5", x);
	x = iap_adaptive_avgpool2d(g, "avgpool", x, 1, 1);
	x = iap_flatten(g, "flatten", x);
	x = iap_dropout(g, "classifier.0", x, 0.1f);
	x = iap_linear(g, "classifier.1", x, 2, 1);
	assert_true(x >= 0);
	assert_int_equal(iap_graph_finalize(g, NULL), IAP_OK);
	init_params(g, seed);
	return g;
}

struct record {
	int n_epochs;
	double loss[16], val_acc[16], lr[16];
	int best[16];
	int64_t calls, last_batch, n_batches;
	double last_eta;
	int bad_eta;
};

static void on_epoch(void *user, const struct iap_epoch_report *rep)
{
	struct record *rec = user;

	assert_true(rep->epoch >= 1 && rep->epoch <= 16);
	rec->loss[rep->epoch - 1] = rep->train_loss;
	rec->val_acc[rep->epoch - 1] = rep->val_acc;
	rec->lr[rep->epoch - 1] = rep->lr;
	rec->best[rep->epoch - 1] = rep->is_best;
	rec->n_epochs++;
}

static void on_progress(void *user, int epoch, int64_t batch, int64_t n_batches, double loss,
			double acc, double eta)
{
	struct record *rec = user;

	(void)epoch;
	rec->calls++;
	rec->last_batch = batch;
	rec->n_batches = n_batches;
	if (!(eta >= 0.0) || !isfinite(loss) || acc < 0.0 || acc > 1.0)
		rec->bad_eta = 1;
	rec->last_eta = eta;
}

static const float norm_mean[1] = { 0.5f }, norm_std[1] = { 0.5f };

static void loop_cfg(struct iap_train_cfg *cfg, struct record *rec)
{
	iap_train_cfg_defaults(cfg);
	cfg->epochs = 10;
	cfg->batch_size = 24;          /* 64 samples: 24 + 24 + 16 */
	cfg->adam.lr = 1e-2;
	cfg->lr_step_size = 8;
	cfg->seed = 1234;
	/* A vertical flip would swap the classes; everything else keeps them. */
	cfg->augment.vflip_p = 0.0;
	cfg->augment.rotate_deg = 10.0;
	cfg->augment.mean = norm_mean;
	cfg->augment.std = norm_std;
	cfg->on_epoch = on_epoch;
	cfg->epoch_user = rec;
	cfg->progress = on_progress;
	cfg->progress_user = rec;
}

static void test_train_loop(void **state)
{
	struct synth ts, vs;
	struct iap_dataset train, val;
	struct iap_graph *g = tiny_cnn(11);
	struct iap_train_cfg cfg;
	struct iap_train_result res;
	struct record rec = { 0 };
	struct iap_metrics m = { 0 };
	struct iap_error err;

	(void)state;
	/* Imbalanced (40 / 24), so the class weights matter. */
	synth_make(&ts, &train, 64, 40, 100, IAP_SPLIT_TRAIN);
	synth_make(&vs, &val, 32, 16, 200, IAP_SPLIT_VAL);
	loop_cfg(&cfg, &rec);
	if (iap_train(g, &train, &val, &cfg, &res, &err) != IAP_OK)
		fail_msg("train: %s", err.msg);
	assert_int_equal(res.epochs_done, 10);
	assert_int_equal(res.start_epoch, 0);
	assert_int_equal(rec.n_epochs, 10);
	/* Progress every batch: 3 per epoch, the last one the partial batch of 16. */
	assert_int_equal(rec.calls, 30);
	assert_int_equal(rec.n_batches, 3);
	assert_int_equal(rec.last_batch, 3);
	assert_false(rec.bad_eta);
	assert_float_equal(rec.last_eta, 0.0, 1e-9);
	/* StepLR with step 8: 1e-2 for epochs 1–8, 1e-3 after. */
	assert_float_equal(rec.lr[7], 1e-2, 1e-12);
	assert_float_equal(rec.lr[8], 1e-3, 1e-12);
	assert_true(rec.best[0]);

	print_message("# train loss per epoch: %.4f %.4f %.4f ... %.4f, val acc %.3f\n", rec.loss[0],
		      rec.loss[1], rec.loss[2], rec.loss[9], rec.val_acc[9]);
	assert_true(rec.loss[9] < 0.6 * rec.loss[0]);
	assert_true(rec.val_acc[9] >= 0.9);
	assert_float_equal(res.last_val_acc, rec.val_acc[9], 0.0);
	assert_true(res.best_score >= rec.val_acc[9]);
	assert_false(g->training);

	/* The evaluation loop agrees with the last validation (eval mode, same data). */
	assert_int_equal(iap_evaluate(g, &val, 5, &m, &err), IAP_OK);
	assert_int_equal(m.n_samples, 32);
	assert_float_equal(m.accuracy, rec.val_acc[9], 1e-12);
	assert_true(m.has_loss);
	assert_true(m.loss > 0.0 && m.loss < rec.loss[0]);
	assert_true(m.auroc_ok && m.auroc >= 0.9);
	iap_metrics_free(&m);

	synth_free(&ts);
	synth_free(&vs);
	iap_graph_free(g);
}

static int params_equal(struct iap_graph *a, struct iap_graph *b, double *maxdiff)
{
	*maxdiff = 0.0;
	for (int i = 0; i < a->n_nodes; i++)
		for (int k = 0; k < a->nodes[i].n_params; k++) {
			const struct iap_tensor *x = &a->nodes[i].params[k].value;
			const struct iap_tensor *y = &b->nodes[i].params[k].value;

			if (!iap_tensor_same_shape(x, y))
				return 0;
			for (int64_t j = 0; j < iap_tensor_numel(x); j++)
				*maxdiff = fmax(*maxdiff, fabs((double)x->data[j] - y->data[j]));
		}
	return 1;
}

static void rm_ckpt(const char *dir)
{
	const char *files[3] = { "last.safetensors", "last.optim.safetensors", "best.safetensors" };
	char path[512];

	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		unlink(path);
	}
	rmdir(dir);
}

/*
 * Two epochs straight vs one epoch, stop, resume for the second in a fresh
 * graph (different initial weights, which the checkpoint must overwrite):
 * the parameters and BN buffers end identical. StepLR steps every epoch so
 * the resumed epoch must pick the right rate too.
 */
static void test_resume(void **state)
{
	char base[] = "/tmp/iap-train-XXXXXX", da[300], db[300], path[400];
	struct synth ts;
	struct iap_dataset train;
	struct iap_graph *ga = tiny_cnn(21), *gb = tiny_cnn(21), *gc = tiny_cnn(99);
	struct iap_train_cfg cfg;
	struct iap_train_result res;
	struct record rec = { 0 };
	struct iap_error err;
	double diff;

	(void)state;
	assert_non_null(mkdtemp(base));
	snprintf(da, sizeof(da), "%s/a", base);
	snprintf(db, sizeof(db), "%s/b", base);
	synth_make(&ts, &train, 40, 20, 300, IAP_SPLIT_TRAIN);
	loop_cfg(&cfg, &rec);
	cfg.batch_size = 16;
	cfg.lr_step_size = 1;
	cfg.lr_gamma = 0.5;

	cfg.epochs = 2;
	cfg.checkpoint_dir = da;
	if (iap_train(ga, &train, NULL, &cfg, &res, &err) != IAP_OK)
		fail_msg("train a: %s", err.msg);

	cfg.epochs = 1;
	cfg.checkpoint_dir = db;
	cfg.resume = 1;     /* nothing there yet: a fresh start */
	if (iap_train(gb, &train, NULL, &cfg, &res, &err) != IAP_OK)
		fail_msg("train b: %s", err.msg);
	assert_int_equal(res.start_epoch, 0);
	assert_int_equal(res.epochs_done, 1);

	assert_true(params_equal(ga, gc, &diff));
	assert_true(diff > 0.0);
	cfg.epochs = 2;
	if (iap_train(gc, &train, NULL, &cfg, &res, &err) != IAP_OK)
		fail_msg("resume: %s", err.msg);
	assert_int_equal(res.start_epoch, 1);
	assert_int_equal(res.epochs_done, 2);
	assert_true(params_equal(ga, gc, &diff));
	print_message("# resume: largest parameter difference %g\n", diff);
	assert_true(diff <= 1e-6);

	/* Resuming a finished run does nothing. */
	if (iap_train(gc, &train, NULL, &cfg, &res, &err) != IAP_OK)
		fail_msg("resume finished: %s", err.msg);
	assert_int_equal(res.start_epoch, 2);
	assert_true(params_equal(ga, gc, &diff));
	assert_true(diff <= 1e-6);

	/* The best checkpoint exists; a lone weights file is refused. */
	snprintf(path, sizeof(path), "%s/best.safetensors", db);
	assert_int_equal(access(path, F_OK), 0);
	snprintf(path, sizeof(path), "%s/last.optim.safetensors", db);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(iap_train(gc, &train, NULL, &cfg, &res, &err), IAP_EFORMAT);
	assert_non_null(strstr(err.msg, "resume"));

	rm_ckpt(da);
	rm_ckpt(db);
	rmdir(base);
	synth_free(&ts);
	iap_graph_free(ga);
	iap_graph_free(gb);
	iap_graph_free(gc);
}

static void test_refusals(void **state)
{
	struct synth ts;
	struct iap_dataset train;
	struct iap_graph *g = tiny_cnn(1);
	struct iap_train_cfg cfg;
	struct iap_metrics m = { 0 };
	struct iap_error err;

	(void)state;
	synth_make(&ts, &train, 8, 4, 1, IAP_SPLIT_TRAIN);
	iap_train_cfg_defaults(&cfg);
	cfg.epochs = 0;
	assert_int_equal(iap_train(g, &train, NULL, &cfg, NULL, &err), IAP_EINVAL);
	iap_train_cfg_defaults(&cfg);
	cfg.resume = 1;
	assert_int_equal(iap_train(g, &train, NULL, &cfg, NULL, &err), IAP_EINVAL);
	/* Three classes in the data, two outputs in the model. */
	train.info.n_classes = 3;
	iap_train_cfg_defaults(&cfg);
	assert_int_equal(iap_train(g, &train, NULL, &cfg, NULL, &err), IAP_ESHAPE);
	assert_int_equal(iap_evaluate(g, &train, 4, &m, &err), IAP_ESHAPE);
	train.info.n_classes = 2;
	train.info.in_shape[1] = 10;
	assert_int_equal(iap_train(g, &train, NULL, &cfg, NULL, &err), IAP_ESHAPE);
	assert_non_null(strstr(err.msg, "[1, 10, 12]"));
	train.info.in_shape[1] = SIDE;
	/* A label outside the classes is named. */
	ts.label[5] = 7;
	cfg.epochs = 1;
	assert_int_equal(iap_train(g, &train, NULL, &cfg, NULL, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "sample 5"));
	iap_metrics_free(&m);
	synth_free(&ts);
	iap_graph_free(g);
}

/* ---- fine-tuning with masks held fixed ------------------------------------------------------ */

/* tiny_cnn with its two convs declared as unit groups (group 0: features.0, 4 units; group 1: features.4, 8). */
static struct iap_graph *tiny_cnn_units(uint64_t seed)
{
	int64_t in[3] = { 1, SIDE, SIDE };
	struct iap_graph *g = iap_graph_new(3, in, NULL);
	int x, c0, c1;

	assert_non_null(g);
	c0 = iap_conv2d(g, "features.0", IAP_GRAPH_INPUT, 4, 3, 3, 1, 1, 1, 1, 0);
	x = iap_batchnorm2d(g, "features.1", c0, 1e-5f, 0.1f);
	x = iap_relu(g, "features.2", x);
	x = iap_maxpool2d(g, "features.3", x, 2, 2, 0, 0);
	c1 = iap_conv2d(g, "features.4", x, 8, 3, 3, 1, 1, 1, 1, 1);
	x = iap_relu(g, "features.5", c1);
	x = iap_adaptive_avgpool2d(g, "avgpool", x, 1, 1);
	x = iap_flatten(g, "flatten", x);
	x = iap_dropout(g, "classifier.0", x, 0.1f);
	x = iap_linear(g, "classifier.1", x, 2, 1);
	assert_true(x >= 0);
	assert_int_equal(iap_graph_add_units(g, c0, 4, 1, -1), 0);
	assert_int_equal(iap_graph_add_units(g, c1, 8, 1, -1), 1);
	assert_int_equal(iap_graph_finalize(g, NULL), IAP_OK);
	init_params(g, seed);
	return g;
}

static const struct iap_param *param_of(struct iap_graph *g, const char *key)
{
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++)
			if (!strcmp(g->nodes[i].params[k].key, key))
				return &g->nodes[i].params[k];
	fail_msg("no parameter %s", key);
	return NULL;
}

/* Largest |value| in rows [u] of parameter key (one row = numel / shape[0] values). */
static double row_max(struct iap_graph *g, const char *key, int u)
{
	const struct iap_param *p = param_of(g, key);
	int64_t per = iap_tensor_numel(&p->value) / p->value.shape[0];
	double mx = 0;

	for (int64_t j = 0; j < per; j++)
		mx = fmax(mx, fabs((double)p->value.data[u * per + j]));
	return mx;
}

/*
 * Fine-tuning a masked model with weight decay: with hold_masks the pruned
 * units' filters, biases and BatchNorm affines end exactly zero (weight decay
 * and Adam would otherwise move them: the run without hold_masks shows they
 * are non-zero), the kept units train, and the fine-tuned model's accuracy is
 * measured and far above chance with three of four first-layer channels gone.
 */
static void test_train_hold_masks(void **state)
{
	static const uint8_t keep0[4] = { 1, 0, 1, 0 }, keep1[8] = { 0, 1, 1, 1, 1, 0, 0, 1 };
	static const char *const rows0[] = { "features.0.weight", "features.1.weight", "features.1.bias" };
	static const char *const rows1[] = { "features.4.weight", "features.4.bias" };
	struct synth ts, vs;
	struct iap_dataset train, val;
	struct iap_graph *g = tiny_cnn_units(11), *free_g = tiny_cnn_units(11);
	struct iap_train_cfg cfg;
	struct iap_metrics m = { 0 };
	struct iap_error err;
	double before = row_max(g, "features.0.weight", 0), moved = 0;
	float kept0 = param_of(g, "features.0.weight")->value.data[0];

	(void)state;
	synth_make(&ts, &train, 64, 40, 100, IAP_SPLIT_TRAIN);
	synth_make(&vs, &val, 32, 16, 200, IAP_SPLIT_VAL);
	for (int pass = 0; pass < 2; pass++) {
		struct iap_graph *x = pass ? free_g : g;

		assert_int_equal(iap_graph_set_mask(x, 0, keep0, &err), IAP_OK);
		assert_int_equal(iap_graph_set_mask(x, 1, keep1, &err), IAP_OK);
		iap_train_cfg_defaults(&cfg);
		cfg.epochs = 10;
		cfg.batch_size = 16;
		cfg.adam.lr = 1e-2;
		cfg.adam.weight_decay = 0.01;
		cfg.lr_step_size = 0;
		cfg.seed = 77;
		iap_augment_cfg_none(&cfg.augment);
		cfg.hold_masks = !pass;
		if (iap_train(x, &train, NULL, &cfg, NULL, &err) != IAP_OK)
			fail_msg("train: %s", err.msg);
	}
	assert_true(before > 0);
	for (int u = 0; u < 4; u++)
		for (size_t k = 0; k < sizeof(rows0) / sizeof(rows0[0]); k++) {
			if (keep0[u])
				continue;
			assert_true(row_max(g, rows0[k], u) == 0.0);
			moved = fmax(moved, row_max(free_g, rows0[k], u));
		}
	for (int u = 0; u < 8; u++)
		for (size_t k = 0; k < sizeof(rows1) / sizeof(rows1[0]); k++) {
			if (keep1[u])
				continue;
			assert_true(row_max(g, rows1[k], u) == 0.0);
			moved = fmax(moved, row_max(free_g, rows1[k], u));
		}
	/* Without hold_masks the pruned rows are not zero (only the forward masks them). */
	assert_true(moved > 0);
	/* The kept units did train. */
	assert_true(param_of(g, "features.0.weight")->value.data[0] != kept0);
	/* The masks are still set, and the pruned channels' outputs are exactly zero. */
	assert_non_null(g->groups[0].mask);
	assert_int_equal(g->groups[0].mask[1], 0);
	assert_int_equal(iap_evaluate(g, &val, 8, &m, &err), IAP_OK);
	print_message("# fine-tuned with masks held: val accuracy %.3f\n", m.accuracy);
	assert_true(m.accuracy >= 0.8);
	{
		const struct iap_tensor *bn = &g->nodes[1].out;
		int64_t hw = bn->shape[2] * bn->shape[3];

		for (int64_t n = 0; n < bn->shape[0]; n++)
			for (int64_t j = 0; j < hw; j++) {
				assert_true(bn->data[(n * 4 + 1) * hw + j] == 0.0f);
				assert_true(bn->data[(n * 4 + 3) * hw + j] == 0.0f);
			}
	}
	iap_metrics_free(&m);
	synth_free(&ts);
	synth_free(&vs);
	iap_graph_free(g);
	iap_graph_free(free_g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_adam_two_steps),
		cmocka_unit_test(test_adam_weight_decay),
		cmocka_unit_test(test_steplr),
		cmocka_unit_test(test_flips),
		cmocka_unit_test(test_rotation),
		cmocka_unit_test(test_crop_geometry),
		cmocka_unit_test(test_resize_crop),
		cmocka_unit_test(test_color),
		cmocka_unit_test(test_augment_pipeline),
		cmocka_unit_test(test_train_loop),
		cmocka_unit_test(test_resume),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_train_hold_masks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
