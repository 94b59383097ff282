/*
 * The model architectures: parameter counts at torchvision's defaults must be
 * exact, and the prunable units must be the ones the paper prunes.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/ops.h>

#include "../plugins/models/arch.h"

static int64_t count_cnn(int (*build)(const struct iap_cnn_cfg *, struct iap_graph **, struct iap_error *),
			 int depth, int bn, int64_t *buffers, int64_t *units, uint64_t *macs)
{
	struct iap_cnn_cfg cfg = {
		.depth = depth, .batch_norm = bn, .num_classes = 1000, .in_channels = 3,
		.image_size = 224, .width = 1.0, .dropout = 0.5f, .shape_only = 1,
	};
	struct iap_graph *g;
	struct iap_error err;
	int64_t n;

	if (build(&cfg, &g, &err) != IAP_OK)
		fail_msg("%s", err.msg);
	n = iap_graph_param_count(g, buffers);
	if (units)
		*units = iap_graph_unit_count(g);
	if (macs)
		*macs = iap_graph_macs(g);
	iap_graph_free(g);
	return n;
}

static void test_vgg_counts(void **state)
{
	int64_t buffers, units;
	uint64_t macs;

	(void)state;
	assert_int_equal(count_cnn(iap_vgg_build, 19, 0, &buffers, &units, &macs), 143667240);
	assert_int_equal(buffers, 0);
	/* 16 convs (5504 channels) + two hidden layers of 4096; not the 1000 outputs. */
	assert_int_equal(units, 5504 + 8192);
	/* torchvision's reference: 19.63 GFLOPS (multiply-accumulates) at 224². */
	assert_true(macs > 19600000000ull && macs < 19700000000ull);
	assert_int_equal(count_cnn(iap_vgg_build, 16, 0, NULL, NULL, NULL), 138357544);
	assert_int_equal(count_cnn(iap_vgg_build, 11, 0, NULL, NULL, NULL), 132863336);
	assert_int_equal(count_cnn(iap_vgg_build, 13, 0, NULL, NULL, NULL), 133047848);
	assert_int_equal(count_cnn(iap_vgg_build, 19, 1, &buffers, NULL, NULL), 143678248);
	assert_int_equal(buffers, 2 * 5504);
	assert_int_equal(count_cnn(iap_vgg_build, 16, 1, NULL, NULL, NULL), 138365992);
}

static void test_resnet_counts(void **state)
{
	int64_t buffers, units;
	uint64_t macs;

	(void)state;
	assert_int_equal(count_cnn(iap_resnet_build, 50, 0, &buffers, &units, &macs), 25557032);
	assert_int_equal(buffers, 53120);
	/* Every conv's output channels are units (the BN channels: half the buffers). */
	assert_int_equal(units, 53120 / 2);
	/* torchvision's reference: 4.09 GFLOPS (multiply-accumulates) at 224². */
	assert_true(macs > 4080000000ull && macs < 4120000000ull);
	assert_int_equal(count_cnn(iap_resnet_build, 18, 0, NULL, NULL, NULL), 11689512);
	assert_int_equal(count_cnn(iap_resnet_build, 34, 0, NULL, NULL, NULL), 21797672);
	assert_int_equal(count_cnn(iap_resnet_build, 101, 0, NULL, NULL, NULL), 44549160);
	assert_int_equal(count_cnn(iap_resnet_build, 152, 0, NULL, NULL, NULL), 60192808);
}

static int64_t count_vit(const char *preset, int64_t *units)
{
	struct iap_vit_cfg cfg = { .image_size = 224, .in_channels = 3, .num_classes = 1000, .shape_only = 1 };
	struct iap_graph *g;
	struct iap_error err;
	int64_t n;

	assert_true(iap_vit_preset(preset, &cfg));
	if (iap_vit_build(&cfg, &g, &err) != IAP_OK)
		fail_msg("%s", err.msg);
	n = iap_graph_param_count(g, NULL);
	if (units)
		*units = iap_graph_unit_count(g);
	iap_graph_free(g);
	return n;
}

static void test_vit_counts(void **state)
{
	int64_t units;

	(void)state;
	assert_int_equal(count_vit("b_16", &units), 86567656);
	/* 12 layers × (3072 MLP neurons + 12 heads). */
	assert_int_equal(units, 12 * (3072 + 12));
	assert_int_equal(count_vit("b_32", NULL), 88224232);
	assert_int_equal(count_vit("l_16", NULL), 304326632);
	assert_int_equal(count_vit("l_32", NULL), 306535400);
	assert_false(iap_vit_preset("h_14", &(struct iap_vit_cfg){ 0 }));
}

/* ResNet's residual coupling: channels that meet in an addition share an id. */
static void test_resnet_coupling(void **state)
{
	struct iap_cnn_cfg cfg = { .depth = 18, .num_classes = 10, .in_channels = 3, .image_size = 64,
				   .width = 0.25, .shape_only = 1 };
	struct iap_graph *g;
	struct iap_error err;
	int stem = -1, l1 = -1, l2down = -1, l2c2 = -1, l2c1 = -1;

	(void)state;
	assert_int_equal(iap_resnet_build(&cfg, &g, &err), IAP_OK);
	for (int i = 0; i < g->n_groups; i++) {
		const struct iap_unit_group *u = &g->groups[i];

		if (!strcmp(u->name, "conv1"))
			stem = u->coupling;
		if (!strcmp(u->name, "layer1.1.conv2"))
			l1 = u->coupling;
		if (!strcmp(u->name, "layer2.0.downsample.0"))
			l2down = u->coupling;
		if (!strcmp(u->name, "layer2.1.conv2"))
			l2c2 = u->coupling;
		if (!strcmp(u->name, "layer2.1.conv1"))
			l2c1 = u->coupling;
		/* Masks sit on the BatchNorm after each conv. */
		assert_int_equal(g->nodes[u->mask_node].kind, IAP_OP_BATCHNORM2D);
	}
	/* resnet18's layer1 adds onto the stem's output: same coupling. */
	assert_true(stem >= 0 && stem == l1);
	assert_true(l2down >= 0 && l2down != stem && l2down == l2c2);
	assert_int_equal(l2c1, -1);
	assert_int_equal(g->groups[0].n_units, 16);
	iap_graph_free(g);
}

static void test_bad_configs(void **state)
{
	struct iap_cnn_cfg cfg = { .depth = 17, .num_classes = 2, .in_channels = 3, .image_size = 64, .width = 1 };
	struct iap_vit_cfg vit = { .patch_size = 5, .image_size = 32, .in_channels = 3, .num_layers = 1,
				   .num_heads = 2, .hidden_dim = 8, .mlp_dim = 8, .num_classes = 2 };
	struct iap_graph *g;
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_vgg_build(&cfg, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "vgg: depth must be 11, 13, 16 or 19, not 17");
	assert_int_equal(iap_resnet_build(&cfg, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "resnet: depth must be 18, 34, 50, 101 or 152, not 17");
	cfg.depth = 11;
	cfg.image_size = 28;
	assert_int_equal(iap_vgg_build(&cfg, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "vgg: image_size 28 is too small for five 2x2 max pools (minimum 32)");
	assert_int_equal(iap_vit_build(&vit, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "vit: image_size 32 is not divisible by patch_size 5");
	assert_null(g);
}

/*
 * The smallest images torchvision's architectures take (checked with
 * torchvision 0.14): ResNet any size from 1 (padded stride-2 stages, adaptive
 * pool), VGG 32 (five floor-halving pools; 31 ends at 0 pixels), ViT one
 * patch. One below each is refused with the minimum in the message.
 */
static void test_smallest_images(void **state)
{
	struct iap_cnn_cfg cnn = { .depth = 18, .num_classes = 2, .in_channels = 3, .width = 0.0625 };
	struct iap_vit_cfg vit = { .patch_size = 16, .in_channels = 3, .num_layers = 1, .num_heads = 2,
				   .hidden_dim = 8, .mlp_dim = 8, .num_classes = 2 };
	static const int resnet_ok[] = { 1, 2, 3, 7, 28, 31 };
	struct iap_graph *g;
	struct iap_error err;

	(void)state;
	for (size_t i = 0; i < sizeof(resnet_ok) / sizeof(resnet_ok[0]); i++) {
		struct iap_tensor x = { 0 };
		int64_t shape[4] = { 1, 3, resnet_ok[i], resnet_ok[i] };

		cnn.image_size = resnet_ok[i];
		if (iap_resnet_build(&cnn, &g, &err))
			fail_msg("resnet18 at %d: %s", resnet_ok[i], err.msg);
		assert_int_equal(iap_tensor_alloc(&x, 4, shape, &err), IAP_OK);
		for (int64_t k = 0; k < iap_tensor_numel(&x); k++)
			x.data[k] = (float)(k % 7) - 3.0f;
		if (iap_graph_forward(g, &x, &err))
			fail_msg("resnet18 forward at %d: %s", resnet_ok[i], err.msg);
		assert_int_equal(iap_graph_output(g)->shape[1], 2);
		iap_tensor_free(&x);
		iap_graph_free(g);
	}
	cnn.image_size = 0;
	assert_int_equal(iap_resnet_build(&cnn, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "resnet: image_size 0 is too small (minimum 1)");
	cnn.depth = 11;
	cnn.image_size = 32;
	assert_int_equal(iap_vgg_build(&cnn, &g, &err), IAP_OK);
	iap_graph_free(g);
	cnn.image_size = 31;
	assert_int_equal(iap_vgg_build(&cnn, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "vgg: image_size 31 is too small for five 2x2 max pools (minimum 32)");
	vit.image_size = 16;
	assert_int_equal(iap_vit_build(&vit, &g, &err), IAP_OK);
	iap_graph_free(g);
	vit.image_size = 0;
	assert_int_equal(iap_vit_build(&vit, &g, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "vit: image_size 0 is smaller than one patch (minimum 16)");
}

/* A small VGG runs, and a masked channel is exactly zero after its BatchNorm. */
static void test_small_vgg_runs_and_masks(void **state)
{
	struct iap_cnn_cfg cfg = { .depth = 11, .batch_norm = 1, .num_classes = 3, .in_channels = 3,
				   .image_size = 32, .width = 0.125, .dropout = 0.5f };
	struct iap_graph *g;
	struct iap_error err;
	struct iap_tensor x = { 0 };
	int64_t shape[4] = { 2, 3, 32, 32 };
	uint8_t keep[8] = { 1, 1, 0, 1, 1, 1, 1, 0 };
	const struct iap_tensor *bn;

	(void)state;
	assert_int_equal(iap_vgg_build(&cfg, &g, &err), IAP_OK);
	iap_vgg_init(g, 1);
	/* Make BN shifts non-zero so a mask before the BN would leak. */
	for (int64_t c = 0; c < 8; c++)
		iap_graph_find_param(g, "features.1.bias")->value.data[c] = 0.5f;
	assert_int_equal(iap_tensor_alloc(&x, 4, shape, &err), IAP_OK);
	for (int64_t i = 0; i < iap_tensor_numel(&x); i++)
		x.data[i] = (float)((i * 7919) % 13) / 13.0f - 0.5f;
	assert_string_equal(g->groups[0].name, "features.0");
	assert_int_equal(iap_graph_set_mask(g, 0, keep, &err), IAP_OK);
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	bn = &g->nodes[1].out;
	assert_string_equal(g->nodes[1].name, "features.1");
	for (int n = 0; n < 2; n++)
		for (int k = 0; k < 32 * 32; k++) {
			assert_true(bn->data[(n * 8 + 2) * 1024 + k] == 0.0f);
			assert_true(bn->data[(n * 8 + 7) * 1024 + k] == 0.0f);
		}
	assert_int_equal(iap_graph_output(g)->shape[1], 3);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vgg_counts),
		cmocka_unit_test(test_resnet_counts),
		cmocka_unit_test(test_vit_counts),
		cmocka_unit_test(test_resnet_coupling),
		cmocka_unit_test(test_bad_configs),
		cmocka_unit_test(test_smallest_images),
		cmocka_unit_test(test_small_vgg_runs_and_masks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
