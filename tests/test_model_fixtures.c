/*
 * The model architectures against PyTorch: reduced-width torchvision VGG11,
 * VGG11_bn, ResNet18, ResNet50 and a small VisionTransformer, randomised and
 * exported by tests/fixtures/models/gen_model_fixtures.py. Each case builds
 * the same architecture with the arch builders, loads torchvision's
 * state_dict strictly, and must reproduce PyTorch's logits (computed in
 * float64) within 1e-4 of the largest logit. Two more files are real exports
 * the loader must tolerate: ViT's legacy mlp.linear_1/2 names and a
 * DataParallel "module." prefix.
 *
 * Fixtures are found in $IAP_TEST_SRCDIR/tests/fixtures/models/ (set by the
 * harness).
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

#include <iaprune/safetensors.h>
#include <iaprune/weights.h>

#include "../plugins/models/arch.h"

/* The generator's widths (see gen_model_fixtures.py for why they are these). */
#define VGG_WIDTH 0.025
#define RESNET18_WIDTH (1.0 / 16)
#define RESNET50_WIDTH (1.0 / 32)

enum family { FAM_VGG, FAM_RESNET, FAM_VIT };

struct model_case {
	const char *weights;        /* file stem of the state_dict */
	const char *io;             /* file stem of input + reference logits */
	enum family fam;
	struct iap_cnn_cfg cnn;
	struct iap_vit_cfg vit;
};

static const struct model_case vgg11_case = {
	.weights = "vgg11", .io = "vgg11", .fam = FAM_VGG,
	.cnn = { .depth = 11, .batch_norm = 0, .num_classes = 3, .in_channels = 3,
		 .image_size = 32, .width = VGG_WIDTH, .dropout = 0.5f },
};

static const struct model_case vgg11_bn_case = {
	.weights = "vgg11_bn", .io = "vgg11_bn", .fam = FAM_VGG,
	.cnn = { .depth = 11, .batch_norm = 1, .num_classes = 3, .in_channels = 3,
		 .image_size = 32, .width = VGG_WIDTH, .dropout = 0.5f },
};

static const struct model_case resnet18_case = {
	.weights = "resnet18", .io = "resnet18", .fam = FAM_RESNET,
	.cnn = { .depth = 18, .num_classes = 5, .in_channels = 3, .image_size = 32,
		 .width = RESNET18_WIDTH },
};

static const struct model_case resnet50_case = {
	.weights = "resnet50", .io = "resnet50", .fam = FAM_RESNET,
	.cnn = { .depth = 50, .num_classes = 5, .in_channels = 3, .image_size = 32,
		 .width = RESNET50_WIDTH },
};

static const struct model_case vit_case = {
	.weights = "vit", .io = "vit", .fam = FAM_VIT,
	.vit = { .patch_size = 8, .image_size = 32, .in_channels = 3, .num_layers = 2,
		 .num_heads = 2, .hidden_dim = 16, .mlp_dim = 32, .num_classes = 4 },
};

/* "$IAP_TEST_SRCDIR/tests/fixtures/models/<stem><suffix>" into buf. */
static void fixture_path(char *buf, size_t len, const char *stem, const char *suffix)
{
	const char *srcdir = getenv("IAP_TEST_SRCDIR");

	if (!srcdir)
		fail_msg("IAP_TEST_SRCDIR is not set (run through make check, or export it "
			 "to the source tree)");
	snprintf(buf, len, "%s/tests/fixtures/models/%s%s", srcdir, stem, suffix);
}

static int build_case(const struct model_case *c, struct iap_graph **g, struct iap_error *err)
{
	switch (c->fam) {
	case FAM_VGG:
		return iap_vgg_build(&c->cnn, g, err);
	case FAM_RESNET:
		return iap_resnet_build(&c->cnn, g, err);
	case FAM_VIT:
		return iap_vit_build(&c->vit, g, err);
	}
	return IAP_EINVAL;
}

/* Tensor `name` of st into t (allocated to the file's shape). */
static void read_tensor(const struct iap_safetensors *st, const char *name, struct iap_tensor *t)
{
	const struct iap_st_tensor *s = iap_safetensors_find(st, name);
	struct iap_error err;

	if (!s)
		fail_msg("%s: no tensor '%s'", st->path, name);
	assert_true(s->ndim >= 1 && s->ndim <= IAP_MAX_DIMS);
	if (iap_tensor_alloc(t, s->ndim, s->shape, &err) != IAP_OK ||
	    iap_safetensors_read_f32(st, s, t->data, &err) != IAP_OK)
		fail_msg("%s", err.msg);
}

/*
 * Build c's architecture, load `weights_stem` strictly, run the stored input
 * and compare with the stored logits: max|a - b| <= 1e-4 * max|ref| + 1e-6.
 */
static void check_logits(const struct model_case *c, const char *weights_stem)
{
	char wpath[4096], iopath[4096], shp[64], rshp[64];
	struct iap_graph *g;
	struct iap_safetensors *io;
	struct iap_error err;
	struct iap_tensor x = { 0 }, ref = { 0 };
	const struct iap_tensor *y;
	double worst = 0.0, refmax = 0.0;
	int64_t worst_at = 0, n;

	fixture_path(wpath, sizeof(wpath), weights_stem, ".safetensors");
	fixture_path(iopath, sizeof(iopath), c->io, ".io.safetensors");
	if (build_case(c, &g, &err) != IAP_OK)
		fail_msg("%s: %s", c->weights, err.msg);
	if (iap_graph_load_weights_file(g, wpath, 0, &err) != IAP_OK)
		fail_msg("%s", err.msg);
	if (iap_safetensors_open(iopath, &io, &err) != IAP_OK)
		fail_msg("%s", err.msg);
	read_tensor(io, "input", &x);
	read_tensor(io, "logits", &ref);
	iap_safetensors_close(io);

	if (iap_graph_forward(g, &x, &err) != IAP_OK)
		fail_msg("%s: forward: %s", c->weights, err.msg);
	y = iap_graph_output(g);
	if (!iap_tensor_same_shape(y, &ref))
		fail_msg("%s: output %s, reference %s", c->weights,
			 iap_tensor_shape_str(y, shp, sizeof(shp)),
			 iap_tensor_shape_str(&ref, rshp, sizeof(rshp)));
	n = iap_tensor_numel(&ref);
	for (int64_t i = 0; i < n; i++) {
		double d = fabs((double)y->data[i] - (double)ref.data[i]);

		assert_true(isfinite(y->data[i]));
		if (d > worst) {
			worst = d;
			worst_at = i;
		}
		if (fabs((double)ref.data[i]) > refmax)
			refmax = fabs((double)ref.data[i]);
	}
	/* The fixtures are randomised so that logits are far from zero. */
	assert_true(refmax > 0.1);
	if (worst > 1e-4 * refmax + 1e-6)
		fail_msg("%s (weights %s): logits differ from PyTorch: worst at [%lld][%lld]: "
			 "iaprune %.7g, torch %.7g (|diff| %.3g, max|ref| %.4g)",
			 c->weights, weights_stem, (long long)(worst_at / ref.shape[1]),
			 (long long)(worst_at % ref.shape[1]), (double)y->data[worst_at],
			 (double)ref.data[worst_at], worst, refmax);
	iap_tensor_free(&x);
	iap_tensor_free(&ref);
	iap_graph_free(g);
}

static void test_vgg11(void **state)
{
	(void)state;
	check_logits(&vgg11_case, "vgg11");
}

static void test_vgg11_bn(void **state)
{
	(void)state;
	check_logits(&vgg11_bn_case, "vgg11_bn");
}

/* The same ResNet18 weights on 28x28 (MedMNIST) and 1x1 images (gen_small_images.py). */
static void test_resnet18_small_images(void **state)
{
	struct model_case c = resnet18_case;

	(void)state;
	c.cnn.image_size = 28;
	c.io = "resnet18_28";
	check_logits(&c, "resnet18");
	c.cnn.image_size = 1;
	c.io = "resnet18_1";
	check_logits(&c, "resnet18");
}

static void test_resnet18(void **state)
{
	(void)state;
	check_logits(&resnet18_case, "resnet18");
}

static void test_resnet50(void **state)
{
	(void)state;
	check_logits(&resnet50_case, "resnet50");
}

static void test_vit(void **state)
{
	(void)state;
	check_logits(&vit_case, "vit");
}

/* The same ViT weights under torchvision's pre-0.13 MLP names load and agree. */
static void test_vit_legacy_names(void **state)
{
	(void)state;
	check_logits(&vit_case, "vit_legacy");
}

/* A DataParallel checkpoint ("module." on every key) of the ResNet50 loads and agrees. */
static void test_resnet50_module_prefix(void **state)
{
	(void)state;
	check_logits(&resnet50_case, "resnet50_module");
}

/* Load `stem` into c's architecture: must fail with `code`, naming every needle. */
static void expect_load_error(const struct model_case *c, const char *stem, int code,
			      const char *const *needles)
{
	char path[4096];
	struct iap_graph *g;
	struct iap_error err;

	fixture_path(path, sizeof(path), stem, ".safetensors");
	if (build_case(c, &g, &err) != IAP_OK)
		fail_msg("%s", err.msg);
	assert_int_equal(iap_graph_load_weights_file(g, path, 0, &err), code);
	assert_int_equal(err.code, code);
	assert_non_null(strstr(err.msg, path));
	for (int i = 0; needles[i]; i++)
		if (!strstr(err.msg, needles[i]))
			fail_msg("message lacks \"%s\": %s", needles[i], err.msg);
	iap_graph_free(g);
}

/* Wrong configurations are refused with the mismatching keys and both shapes named. */
static void test_wrong_configs(void **state)
{
	struct model_case c = resnet18_case;
	static const char *const fc[] = {
		"shape mismatches", "fc.weight: file [5, 32], model [6, 32]",
		"fc.bias: file [5], model [6]", NULL,
	};
	static const char *const width[] = {
		"features.0.weight: file [2, 3, 3, 3], model [4, 3, 3, 3]",
		"features.3.weight: file [3, 2, 3, 3], model [8, 4, 3, 3]", NULL,
	};
	static const char *const bn[] = {
		"unexpected keys", "features.1.running_var", NULL,
	};

	(void)state;
	c.cnn.num_classes = 6;
	expect_load_error(&c, "resnet18", IAP_ESHAPE, fc);
	/* VGG at torchvision-fraction width 1/16 instead of the fixture's 0.025. */
	c = vgg11_case;
	c.cnn.width = 1.0 / 16;
	expect_load_error(&c, "vgg11", IAP_ESHAPE, width);
	/* vgg11 (no BN) given vgg11_bn weights: the BN layers are unexpected keys. */
	expect_load_error(&vgg11_case, "vgg11_bn", IAP_ESHAPE, bn);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vgg11),
		cmocka_unit_test(test_vgg11_bn),
		cmocka_unit_test(test_resnet18),
		cmocka_unit_test(test_resnet18_small_images),
		cmocka_unit_test(test_resnet50),
		cmocka_unit_test(test_vit),
		cmocka_unit_test(test_vit_legacy_names),
		cmocka_unit_test(test_resnet50_module_prefix),
		cmocka_unit_test(test_wrong_configs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
