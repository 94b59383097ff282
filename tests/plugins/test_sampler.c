/*
 * A well-formed sampler used by the tests: takes the first k samples of
 * every class. Its schema has one option of every type so option
 * validation can be tested against a real loaded plugin.
 */
#include "config.h"

#include <stdlib.h>

#include <iaprune/plugin.h>

static const char *const order_choices[] = { "first", "last", NULL };

static const struct iap_option first_options[] = {
	{ .name = "order", .type = IAP_OPT_ENUM, .def = "first", .choices = order_choices,
	  .help = "take the first or the last k samples of each class" },
	{ .name = "stride", .type = IAP_OPT_INT, .def = "1", .has_range = 1, .min = 1, .max = 1000,
	  .help = "take every stride-th sample" },
	{ .name = "threshold", .type = IAP_OPT_FLOAT, .def = "0.5", .has_range = 1, .min = 0, .max = 1,
	  .help = "unused; exercises float options" },
	{ .name = "shuffle", .type = IAP_OPT_BOOL, .def = "false", .help = "unused; exercises bools" },
	{ .name = "tag", .type = IAP_OPT_STRING, .def = "", .help = "free text" },
	{ .name = NULL },
};

/* Walks the split once, keeping up to k indices per class. */
static int first_select(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
			struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err)
{
	int64_t stride = iap_opts_int(opts, "stride"), n = 0;
	int *taken;
	int rc = IAP_OK;

	(void)g;
	(void)rng;
	taken = calloc((size_t)ds->info.n_classes, sizeof(*taken));
	if (!taken)
		return iap_error_set(err, IAP_ENOMEM, "test-first: out of memory");
	for (int64_t i = 0; i < ds->count; i += stride) {
		int label;

		rc = ds->ops->load(ds->state, i, NULL, &label, err);
		if (rc)
			break;
		if (label >= 0 && label < ds->info.n_classes && taken[label] < k) {
			taken[label]++;
			out[n++] = i;
		}
	}
	free(taken);
	*n_out = n;
	return rc;
}

static const struct iap_sampler_ops first_ops = {
	.size = sizeof(struct iap_sampler_ops),
	.select = first_select,
};

static const struct iap_plugin_desc first_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_SAMPLER,
	.name = "test-first",
	.version = "1.0",
	.license = "MIT",
	.summary = "first k samples of each class (test plugin)",
	.options = first_options,
	.ops.sampler = &first_ops,
};

IAP_PLUGIN_DEFINE(first_desc)
