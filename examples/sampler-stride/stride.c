/*
 * An example third-party iaprune plugin: a sampler that takes every
 * stride-th sample of the split, starting at offset, until it has k of
 * each class. It is built outside the iaprune source tree, against the
 * installed headers and library only (see Makefile and iaprune-plugin(7)).
 */
#include <stdint.h>
#include <stdlib.h>

#include <iaprune/plugin.h>

static const struct iap_option stride_options[] = {
	{ .name = "stride", .type = IAP_OPT_INT, .def = "3", .has_range = 1, .min = 1, .max = 1000000,
	  .help = "distance between two samples looked at" },
	{ .name = "offset", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 1000000,
	  .help = "index of the first sample looked at" },
	{ .name = NULL },
};

static int stride_select(const struct iap_opts *opts, const struct iap_dataset *ds,
			 struct iap_graph *g, struct iap_rng *rng, int k, int64_t *out,
			 int64_t *n_out, struct iap_error *err)
{
	int64_t stride = iap_opts_int(opts, "stride");
	int64_t n = 0;
	int *have;
	int rc = IAP_OK;

	(void)g;    /* a model-aware sampler would run it forward */
	(void)rng;  /* deterministic: no randomness needed */
	have = calloc((size_t)ds->info.n_classes, sizeof(*have));
	if (!have)
		return iap_error_set(err, IAP_ENOMEM, "sampler 'stride': out of memory");
	for (int64_t i = iap_opts_int(opts, "offset"); i < ds->count; i += stride) {
		int label;

		/* A NULL image asks the dataset for the label only. */
		rc = ds->ops->load(ds->state, i, NULL, &label, err);
		if (rc)
			break;
		if (label >= 0 && label < ds->info.n_classes && have[label] < k) {
			have[label]++;
			out[n++] = i;
		}
	}
	free(have);
	*n_out = n;
	return rc;
}

static const struct iap_sampler_ops stride_ops = {
	.size = sizeof(struct iap_sampler_ops),
	.select = stride_select,
};

static const struct iap_plugin_desc stride_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_SAMPLER,
	.name = "stride",
	.version = "1.0",
	.license = "MIT",
	.summary = "every stride-th sample until k per class (example plugin)",
	.options = stride_options,
	.ops.sampler = &stride_ops,
};

IAP_PLUGIN_DEFINE(stride_desc)
