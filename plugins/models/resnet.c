/* The "resnet" model plugin: torchvision resnet18/34/50/101/152. */
#include "config.h"

#include <iaprune/plugin.h>

#include "arch.h"
#include "common.h"

/* The `depth` choices and the layer count each stands for, index for index. */
static const char *const depths[] = { "18", "34", "50", "101", "152", NULL };
static const int depth_of[] = { 18, 34, 50, 101, 152 };
_Static_assert(sizeof(depths) / sizeof(depths[0]) == sizeof(depth_of) / sizeof(depth_of[0]) + 1,
	       "depths must match depth_of");

static const struct iap_option resnet_options[] = {
	{ .name = "depth", .type = IAP_OPT_ENUM, .def = "50", .choices = depths,
	  .help = "torchvision resnet18/34 (basic blocks) or 50/101/152 (bottlenecks)" },
	{ .name = "width", .type = IAP_OPT_FLOAT, .def = "1.0", .has_range = 1, .min = 0.01, .max = 4,
	  .help = "channel multiplier for small CPU-sized variants; key names stay torchvision's" },
	IAP_MODEL_INPUT_OPTIONS,
	{ .name = NULL },
};

static int resnet_build(const struct iap_opts *opts, const struct iap_dataset_info *data,
			struct iap_graph **out, struct iap_error *err)
{
	/* Options read once per build (the model ABI has no create step). */
	struct iap_cnn_cfg cfg = {
		.depth = depth_of[iap_opts_enum(opts, "depth")],
		.width = iap_opts_float(opts, "width"),
	};
	int rc = iap_model_input("resnet", opts, data, &cfg.num_classes, &cfg.in_channels,
				 &cfg.image_size, err);

	return rc ? rc : iap_resnet_build(&cfg, out, err);
}

static int resnet_init_params(const struct iap_opts *opts, struct iap_graph *g, struct iap_rng *rng,
			      struct iap_error *err)
{
	(void)opts;
	(void)err;
	iap_resnet_init(g, iap_rng_next(rng));
	return IAP_OK;
}

static const struct iap_model_ops resnet_ops = {
	.size = sizeof(struct iap_model_ops),
	.build = resnet_build,
	.init_params = resnet_init_params,
};

static const struct iap_plugin_desc resnet_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_MODEL,
	.name = "resnet",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "torchvision ResNet 18/34/50/101/152 with residual channel coupling",
	.options = resnet_options,
	.ops.model = &resnet_ops,
};

IAP_PLUGIN_DEFINE(resnet_desc)
