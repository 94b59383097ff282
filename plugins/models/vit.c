/* The "vit" model plugin: torchvision VisionTransformer (b_16, b_32, l_16, l_32 or custom). */
#include "config.h"

#include <iaprune/plugin.h>

#include "arch.h"
#include "common.h"

/* The `variant` choices in the order of enum vit_variant; all but custom are torchvision presets. */
enum vit_variant { VIT_B_16, VIT_B_32, VIT_L_16, VIT_L_32, VIT_CUSTOM, VIT_VARIANT_COUNT };
static const char *const variants[] = {
	[VIT_B_16] = "b_16", [VIT_B_32] = "b_32", [VIT_L_16] = "l_16", [VIT_L_32] = "l_32",
	[VIT_CUSTOM] = "custom", NULL,
};
_Static_assert(sizeof(variants) / sizeof(variants[0]) == VIT_VARIANT_COUNT + 1,
	       "variants must match enum vit_variant");

static const struct iap_option vit_options[] = {
	{ .name = "variant", .type = IAP_OPT_ENUM, .def = "b_16", .choices = variants,
	  .help = "torchvision preset; 'custom' takes the sizes below" },
	{ .name = "patch_size", .type = IAP_OPT_INT, .def = "16", .has_range = 1, .min = 1, .max = 1024,
	  .help = "patch side (custom; overrides the preset when set)" },
	{ .name = "hidden_dim", .type = IAP_OPT_INT, .def = "768", .has_range = 1, .min = 1, .max = 65536,
	  .help = "token width D (custom; overrides the preset when set)" },
	{ .name = "depth", .type = IAP_OPT_INT, .def = "12", .has_range = 1, .min = 1, .max = 1024,
	  .help = "encoder layers (custom; overrides the preset when set)" },
	{ .name = "num_heads", .type = IAP_OPT_INT, .def = "12", .has_range = 1, .min = 1, .max = 1024,
	  .help = "attention heads; must divide hidden_dim (custom; overrides the preset when set)" },
	{ .name = "mlp_dim", .type = IAP_OPT_INT, .def = "3072", .has_range = 1, .min = 1, .max = 1048576,
	  .help = "MLP hidden width (custom; overrides the preset when set)" },
	{ .name = "conv_proj_units", .type = IAP_OPT_BOOL, .def = "false",
	  .help = "also declare conv_proj's output channels a unit group (scored like any layer; "
		  "residual-stream dimensions: put conv_proj in pruning.ignore to score without pruning)" },
	IAP_MODEL_INPUT_OPTIONS,
	{ .name = NULL },
};

static int vit_build(const struct iap_opts *opts, const struct iap_dataset_info *data,
		     struct iap_graph **out, struct iap_error *err)
{
	/* Options read once per build (the model ABI has no create step). */
	struct iap_vit_cfg cfg = { 0 };
	int variant = iap_opts_enum(opts, "variant");
	int custom = variant == VIT_CUSTOM;
	int rc;

	if (!custom)
		iap_vit_preset(variants[variant], &cfg);
	/* A size set in the pipeline overrides the preset; 'custom' takes all of them. */
	if (custom || iap_opts_is_set(opts, "patch_size"))
		cfg.patch_size = (int)iap_opts_int(opts, "patch_size");
	if (custom || iap_opts_is_set(opts, "hidden_dim"))
		cfg.hidden_dim = (int)iap_opts_int(opts, "hidden_dim");
	if (custom || iap_opts_is_set(opts, "depth"))
		cfg.num_layers = (int)iap_opts_int(opts, "depth");
	if (custom || iap_opts_is_set(opts, "num_heads"))
		cfg.num_heads = (int)iap_opts_int(opts, "num_heads");
	if (custom || iap_opts_is_set(opts, "mlp_dim"))
		cfg.mlp_dim = (int)iap_opts_int(opts, "mlp_dim");
	cfg.conv_proj_units = iap_opts_bool(opts, "conv_proj_units");
	rc = iap_model_input("vit", opts, data, &cfg.num_classes, &cfg.in_channels, &cfg.image_size, err);
	return rc ? rc : iap_vit_build(&cfg, out, err);
}

static int vit_init_params(const struct iap_opts *opts, struct iap_graph *g, struct iap_rng *rng,
			   struct iap_error *err)
{
	(void)opts;
	(void)err;
	iap_vit_init(g, iap_rng_next(rng));
	return IAP_OK;
}

static const struct iap_model_ops vit_ops = {
	.size = sizeof(struct iap_model_ops),
	.build = vit_build,
	.init_params = vit_init_params,
};

static const struct iap_plugin_desc vit_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_MODEL,
	.name = "vit",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "torchvision VisionTransformer (b_16, b_32, l_16, l_32 or custom sizes)",
	.options = vit_options,
	.ops.model = &vit_ops,
};

IAP_PLUGIN_DEFINE(vit_desc)
