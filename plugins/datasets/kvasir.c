/*
 * The "kvasir" dataset plugin: the Kvasir v2 release (kvasir-dataset-v2/
 * with eight class folders of JPEGs). root may be the extracted folder or
 * the folder holding it. There are no published splits: val and test are
 * carved per class with a seeded stratified split (folder.c).
 */
#include "config.h"

#include <stdlib.h>

#include <iaprune/plugin.h>

#include "common.h"

static const char *const kvasir_classes[] = {
	"dyed-lifted-polyps", "dyed-resection-margins", "esophagitis", "normal-cecum",
	"normal-pylorus", "normal-z-line", "polyps", "ulcerative-colitis", NULL,
};

static const struct iap_option kvasir_options[] = {
	{ .name = "root", .type = IAP_OPT_STRING, .def = NULL,
	  .help = "kvasir-dataset-v2/ (or the folder holding it) with the 8 class folders" },
	DS_IMAGE_OPTIONS,
	DS_SPLIT_OPTIONS("0.1", "0.2"),
	{ .name = NULL },
};

static int kvasir_open(const struct iap_opts *opts, enum iap_split split, void **state,
		       struct iap_error *err)
{
	const char *root = iap_opts_str(opts, "root");
	char *sub = ds_join(root, "kvasir-dataset-v2");
	int rc;

	if (!sub)
		return iap_error_set(err, IAP_ENOMEM, "kvasir: out of memory");
	rc = ds_open_folder("kvasir", opts, ds_is_dir(sub) ? sub : root, kvasir_classes, split,
			    state, err);
	free(sub);
	return rc;
}

DS_DEFINE_OPS(kvasir_ops, kvasir_open)

static const struct iap_plugin_desc kvasir_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_DATASET,
	.name = "kvasir",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "Kvasir v2 (8 classes of endoscopy JPEGs), seeded stratified split",
	.options = kvasir_options,
	.ops.dataset = &kvasir_ops,
};

IAP_PLUGIN_DEFINE(kvasir_desc)
