/* The "imagefolder" dataset plugin: torchvision's ImageFolder layout (see folder.c). */
#include "config.h"

#include <iaprune/plugin.h>

#include "common.h"

static const struct iap_option imagefolder_options[] = {
	{ .name = "root", .type = IAP_OPT_STRING, .def = NULL,
	  .help = "folder holding <class>/<image>, or train/, val/, test/ each holding <class>/<image>" },
	DS_IMAGE_OPTIONS,
	DS_SPLIT_OPTIONS("0.1", "0.2"),
	{ .name = NULL },
};

static int imagefolder_open(const struct iap_opts *opts, enum iap_split split, void **state,
			    struct iap_error *err)
{
	return ds_open_folder("imagefolder", opts, iap_opts_str(opts, "root"), NULL, split, state, err);
}

DS_DEFINE_OPS(imagefolder_ops, imagefolder_open)

static const struct iap_plugin_desc imagefolder_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_DATASET,
	.name = "imagefolder",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "root/<class>/<image> (optionally under train/ val/ test/), classes sorted by name",
	.options = imagefolder_options,
	.ops.dataset = &imagefolder_ops,
};

IAP_PLUGIN_DEFINE(imagefolder_desc)
