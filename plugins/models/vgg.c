/* The "vgg" model plugin: torchvision vgg11/13/16/19 with or without BatchNorm. */
#include "config.h"

#include <iaprune/plugin.h>

#include "arch.h"
#include "common.h"

/* The `depth` choices and the weight-layer count each stands for, index for index. */
static const char *const depths[] = { "11", "13", "16", "19", NULL };
static const int depth_of[] = { 11, 13, 16, 19 };
_Static_assert(sizeof(depths) / sizeof(depths[0]) == sizeof(depth_of) / sizeof(depth_of[0]) + 1,
	       "depths must match depth_of");

static const struct iap_option vgg_options[] = {
	{ .name = "depth", .type = IAP_OPT_ENUM, .def = "19", .choices = depths,
	  .help = "number of weight layers (torchvision vgg11, vgg13, vgg16, vgg19)" },
	{ .name = "batch_norm", .type = IAP_OPT_BOOL, .def = "false",
	  .help = "BatchNorm after every conv (torchvision vgg*_bn)" },
	{ .name = "width", .type = IAP_OPT_FLOAT, .def = "1.0", .has_range = 1, .min = 0.01, .max = 4,
	  .help = "channel multiplier for small CPU-sized variants; key names stay torchvision's" },
	IAP_MODEL_INPUT_OPTIONS,
	{ .name = "dropout", .type = IAP_OPT_FLOAT, .def = "0.5", .has_range = 1, .min = 0, .max = 1,
	  .help = "dropout probability in the classifier" },
	{ .name = NULL },
};

static int vgg_build(const struct iap_opts *opts, const struct iap_dataset_info *data,
		     struct iap_graph **out, struct iap_error *err)
{
	/* Options read once per build (the model ABI has no create step). */
	struct iap_cnn_cfg cfg = {
		.depth = depth_of[iap_opts_enum(opts, "depth")],
		.batch_norm = iap_opts_bool(opts, "batch_norm"),
		.width = iap_opts_float(opts, "width"),
		.dropout = (float)iap_opts_float(opts, "dropout"),
	};
	int rc = iap_model_input("vgg", opts, data, &cfg.num_classes, &cfg.in_channels,
				 &cfg.image_size, err);

	return rc ? rc : iap_vgg_build(&cfg, out, err);
}

static int vgg_init_params(const struct iap_opts *opts, struct iap_graph *g, struct iap_rng *rng,
			   struct iap_error *err)
{
	(void)opts;
	(void)err;
	iap_vgg_init(g, iap_rng_next(rng));
	return IAP_OK;
}

static const struct iap_model_ops vgg_ops = {
	.size = sizeof(struct iap_model_ops),
	.build = vgg_build,
	.init_params = vgg_init_params,
};

static const struct iap_plugin_desc vgg_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_MODEL,
	.name = "vgg",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "torchvision VGG 11/13/16/19, optionally with BatchNorm",
	.options = vgg_options,
	.ops.model = &vgg_ops,
};

IAP_PLUGIN_DEFINE(vgg_desc)
