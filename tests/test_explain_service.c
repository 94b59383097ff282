/*
 * The explain service (host/explain/explain.c) as the runner and the CLI
 * reach it: the image under a map is the image the user gave (a stored
 * original as it is, else the model's input with its normalisation undone,
 * not stretched to its own range), the dataset's normalisation read from
 * its options, the PNG size cap, and the relevance contract.
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
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/explain.h>
#include <iaprune/image.h>

#include "host/run/run_internal.h"

#include "png_read.h"

static char dir[] = "/tmp/iap-explain-XXXXXX";

/* A dataset with no load_original (ops built before ABI 2.1). */
static const struct iap_dataset_ops old_ops = { .size = offsetof(struct iap_dataset_ops, load_original) };

/* Pixels 0.2 .. 0.6, normalised with ImageNet's statistics: drawn back as those pixels, not stretched. */
static void test_model_input_denormalised(void **unused)
{
	enum { H = 2, W = 3 };
	const float pix[H * W] = { 0.2f, 0.3f, 0.35f, 0.4f, 0.5f, 0.6f };
	int64_t shape[4] = { 1, 3, H, W };
	struct iap_tensor x = { 0 }, rel = { 0 };
	struct iap_explain_norm norm;
	struct iap_explain_view v;
	struct iap_dataset ds = { .ops = &old_ops };
	struct iap_error err;
	char path[256];
	uint8_t *px;
	int h, w;

	(void)unused;
	iap_explain_norm_default(3, &norm);
	assert_int_equal(iap_tensor_alloc(&x, 4, shape, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&rel, 4, shape, &err), IAP_OK);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < H * W; i++)
			x.data[c * H * W + i] = (pix[i] - norm.mean[c]) / norm.std[c];
	iap_tensor_zero(&rel);  /* no relevance: the image alone */
	assert_int_equal(iap_explain_view_sample(&ds, 0, &x, &norm, &v, &err), IAP_OK);
	assert_ptr_equal(v.image, x.data);
	assert_ptr_equal(v.norm, &norm);
	snprintf(path, sizeof(path), "%s/x.png", dir);
	assert_int_equal(iap_explain_write(path, &rel, &v, NULL, &err), IAP_OK);
	px = tu_read_png(path, &h, &w);
	assert_int_equal(h, H);
	assert_int_equal(w, W);
	for (int i = 0; i < H * W; i++)
		for (int c = 0; c < 3; c++)
			assert_in_range(px[i * 3 + c], (int)lroundf(pix[i] * 255.0f) - 1, (int)lroundf(pix[i] * 255.0f) + 1);
	free(px);
	iap_explain_view_free(&v);
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
}

/* A stored original: drawn as stored (0.25 stays 64), the map resampled to it, enlarged by a whole factor. */
static int orig_load(void *state, int64_t i, struct iap_tensor *image, struct iap_error *err)
{
	int64_t shape[3] = { 1, 4, 4 };
	int rc = iap_tensor_ensure(image, 3, shape, err);

	(void)state;
	(void)i;
	for (int k = 0; !rc && k < 16; k++)
		image->data[k] = 0.25f + 0.5f * (float)(k % 2);
	return rc;
}

static const struct iap_dataset_ops new_ops = { .size = sizeof(struct iap_dataset_ops), .load_original = orig_load };

static void test_original_as_stored(void **unused)
{
	int64_t shape[4] = { 1, 1, 2, 2 };
	struct iap_tensor x = { 0 }, rel = { 0 };
	struct iap_explain_norm norm;
	struct iap_explain_view v;
	struct iap_dataset ds = { .ops = &new_ops, .info = { .in_ndim = 3, .in_shape = { 1, 2, 2 } } };
	struct iap_explain_write_opts wo = { .enlarge = 1 };
	struct iap_error err;
	char path[256];
	uint8_t *px;
	int h, w;

	(void)unused;
	iap_explain_norm_default(1, &norm);
	assert_int_equal(iap_tensor_alloc(&x, 4, shape, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&rel, 4, shape, &err), IAP_OK);
	iap_tensor_zero(&x);
	iap_tensor_zero(&rel);
	assert_int_equal(iap_explain_view_sample(&ds, 0, &x, &norm, &v, &err), IAP_OK);
	assert_null(v.norm);
	assert_int_equal(v.h, 4);
	snprintf(path, sizeof(path), "%s/o.png", dir);
	assert_int_equal(iap_explain_write(path, &rel, &v, &wo, &err), IAP_OK);
	px = tu_read_png(path, &h, &w);
	assert_int_equal(h, 224);  /* 4 × 56 */
	assert_int_equal(w, 224);
	assert_int_equal(px[0], 64);          /* 0.25, not stretched to 0 */
	assert_in_range(px[84 * 3], 188, 192); /* the middle of the next stored pixel, 0.75 (bilinear) */
	free(px);
	iap_explain_view_free(&v);
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
}

/* The documented cap: the longer side IAP_EXPLAIN_MAX_SIDE, the aspect kept; small ones enlarged whole. */
static void test_size_cap(void **unused)
{
	const struct iap_explain_write_opts big = { .enlarge = 1 };
	int64_t shape[4] = { 1, 1, 3000, 10 };
	struct iap_tensor img = { 0 }, rel = { 0 };
	struct iap_explain_view v = { 0 };
	struct iap_error err;
	char path[256];
	uint8_t *px;
	int oh, ow;

	(void)unused;
	iap_explain_drawn_size(28, 28, &big, &oh, &ow);
	assert_int_equal(oh, 224);
	assert_int_equal(ow, 224);
	iap_explain_drawn_size(100, 50, &big, &oh, &ow);
	assert_int_equal(oh, 300);
	assert_int_equal(ow, 150);
	iap_explain_drawn_size(28, 28, NULL, &oh, &ow);
	assert_int_equal(oh, 28);
	iap_explain_drawn_size(4096, 2048, NULL, &oh, &ow);
	assert_int_equal(oh, IAP_EXPLAIN_MAX_SIDE);
	assert_int_equal(ow, IAP_EXPLAIN_MAX_SIDE / 2);
	/* Written: a 3000 × 10 original becomes 1024 × 3. */
	assert_int_equal(iap_tensor_alloc(&img, 3, shape + 1, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&rel, 4, (int64_t[]){ 1, 1, 30, 10 }, &err), IAP_OK);
	for (int64_t i = 0; i < iap_tensor_numel(&img); i++)
		img.data[i] = 0.5f;
	for (int64_t i = 0; i < iap_tensor_numel(&rel); i++)
		rel.data[i] = (float)(i % 7) - 3.0f;
	v = (struct iap_explain_view){ .image = img.data, .channels = 1, .h = 3000, .w = 10 };
	snprintf(path, sizeof(path), "%s/big.png", dir);
	assert_int_equal(iap_explain_write(path, &rel, &v, NULL, &err), IAP_OK);
	px = tu_read_png(path, &oh, &ow);
	assert_int_equal(oh, IAP_EXPLAIN_MAX_SIDE);
	assert_int_equal(ow, 3);
	free(px);
	iap_tensor_free(&img);
	iap_tensor_free(&rel);
}

/* A dataset's normalize / mean / std options, as the runner reads them. */
static void test_norm_from_opts(void **unused)
{
	static const char *const choices[] = { "imagenet", "none", "custom", NULL };
	static const struct iap_option schema[] = {
		{ .name = "normalize", .type = IAP_OPT_ENUM, .def = "imagenet", .choices = choices },
		{ .name = "mean", .type = IAP_OPT_STRING, .def = "" },
		{ .name = "std", .type = IAP_OPT_STRING, .def = "" },
		{ .name = NULL },
	};
	struct iap_opts *o = NULL;
	struct iap_explain_norm n;
	struct iap_error err;

	(void)unused;
	assert_int_equal(iap_opts_defaults(schema, &o, &err), IAP_OK);
	assert_int_equal(iap_explain_norm_from_opts(o, 1, &n, &err), IAP_OK);
	assert_true(n.mean[0] == 0.5f && n.std[0] == 0.5f);
	assert_int_equal(iap_opts_set(o, "t", "normalize", "none", &err), IAP_OK);
	assert_int_equal(iap_explain_norm_from_opts(o, 3, &n, &err), IAP_OK);
	assert_true(n.mean[2] == 0.0f && n.std[2] == 1.0f);
	assert_int_equal(iap_opts_set(o, "t", "normalize", "custom", &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "t", "mean", "0.1,0.2,0.3", &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "t", "std", "0.4, 0.5,0.6", &err), IAP_OK);
	assert_int_equal(iap_explain_norm_from_opts(o, 3, &n, &err), IAP_OK);
	assert_true(n.mean[1] == 0.2f && n.std[2] == 0.6f);
	assert_int_equal(iap_explain_norm_from_opts(o, 1, &n, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "mean"));
	/* Four numbers for a four-channel input: refused, not written past mean[3]. */
	assert_int_equal(iap_opts_set(o, "t", "mean", "0.1,0.2,0.3,0.4", &err), IAP_OK);
	assert_int_equal(iap_opts_set(o, "t", "std", "1,1,1,1", &err), IAP_OK);
	assert_int_equal(iap_explain_norm_from_opts(o, 4, &n, &err), IAP_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "4 channels"));
	iap_opts_free(o);
	/* No normalize option at all: the default. */
	assert_int_equal(iap_explain_norm_from_opts(NULL, 3, &n, &err), IAP_OK);
	assert_true(n.mean[0] == iap_imagenet_mean[0]);
}

/* Relevance of the wrong shape or not finite is the plugin's error, named. */
static void test_contract(void **unused)
{
	static const struct iap_plugin_desc desc = { .kind = IAP_PLUGIN_ATTRIBUTION, .name = "bad" };
	const struct iap_plugin p = { .desc = &desc, .path = "bad.so" };
	struct iap_tensor x = { 0 }, rel = { 0 };
	struct iap_error err;

	(void)unused;
	assert_int_equal(iap_tensor_alloc(&x, 4, (int64_t[]){ 1, 1, 2, 2 }, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&rel, 4, (int64_t[]){ 1, 1, 2, 2 }, &err), IAP_OK);
	iap_tensor_zero(&rel);
	assert_int_equal(iap_contract_heatmap(&p, &x, &rel, &err), IAP_OK);
	rel.data[3] = NAN;
	assert_int_equal(iap_contract_heatmap(&p, &x, &rel, &err), IAP_ENUMERIC);
	assert_non_null(strstr(err.msg, "'bad' (bad.so)"));
	iap_tensor_free(&rel);
	assert_int_equal(iap_tensor_alloc(&rel, 4, (int64_t[]){ 1, 1, 2, 3 }, &err), IAP_OK);
	assert_int_equal(iap_contract_heatmap(&p, &x, &rel, &err), IAP_EPLUGIN);
	iap_tensor_free(&rel);
	iap_tensor_free(&x);
}

static int setup(void **unused)
{
	(void)unused;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **unused)
{
	const char *names[] = { "x.png", "o.png", "big.png" };
	char path[256];

	(void)unused;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	return rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_model_input_denormalised),
		cmocka_unit_test(test_original_as_stored),
		cmocka_unit_test(test_size_cap),
		cmocka_unit_test(test_norm_from_opts),
		cmocka_unit_test(test_contract),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
