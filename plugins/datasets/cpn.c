/*
 * The "cpn" dataset plugin: the COVID-19 / Pneumonia / Normal chest X-ray
 * set as published (class folders COVID, Normal, Pneumonia; any letter
 * case). No published splits: val and test are carved per class with a
 * seeded stratified split (folder.c). Classes in byte order: COVID, Normal,
 * Pneumonia (as spelled on disk).
 */
#include "config.h"

#include <iaprune/plugin.h>

#include "common.h"

static const char *const cpn_classes[] = { "COVID", "Normal", "Pneumonia", NULL };

static const struct iap_option cpn_options[] = {
	{ .name = "root", .type = IAP_OPT_STRING, .def = NULL,
	  .help = "folder with the COVID, Normal and Pneumonia class folders" },
	DS_IMAGE_OPTIONS,
	DS_SPLIT_OPTIONS("0.1", "0.2"),
	{ .name = NULL },
};

static int cpn_open(const struct iap_opts *opts, enum iap_split split, void **state,
		    struct iap_error *err)
{
	return ds_open_folder("cpn", opts, iap_opts_str(opts, "root"), cpn_classes, split, state, err);
}

DS_DEFINE_OPS(cpn_ops, cpn_open)

static const struct iap_plugin_desc cpn_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_DATASET,
	.name = "cpn",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "COVID-19 / Pneumonia / Normal chest X-rays (class folders), seeded stratified split",
	.options = cpn_options,
	.ops.dataset = &cpn_ops,
};

IAP_PLUGIN_DEFINE(cpn_desc)
