/*
 * Minimal but working plugins of the other kinds, so a whole pipeline can be
 * validated against real loaded plugins in the tests. Built three times, with
 * STUB_DATASET, STUB_MODEL or STUB_POLICY defined (one descriptor per .so).
 */
#include "config.h"

#include <stdlib.h>

#include <iaprune/ops.h>
#include <iaprune/plugin.h>

#if defined(STUB_DATASET)
/* n synthetic 1×2×2 samples; sample i has label i mod classes and pixels i + 0.1·j. */
static const struct iap_option data_options[] = {
	{ .name = "n", .type = IAP_OPT_INT, .def = "8", .has_range = 1, .min = 1, .max = 1000,
	  .help = "number of samples" },
	{ .name = "classes", .type = IAP_OPT_INT, .def = "2", .has_range = 1, .min = 2, .max = 10,
	  .help = "number of classes" },
	{ .name = NULL },
};

struct data {
	long n, classes;
};

static int data_open(const struct iap_opts *opts, enum iap_split split, void **state,
		     struct iap_error *err)
{
	struct data *d = malloc(sizeof(*d));

	(void)split;
	if (!d)
		return iap_error_set(err, IAP_ENOMEM, "test-data: out of memory");
	d->n = iap_opts_int(opts, "n");
	d->classes = iap_opts_int(opts, "classes");
	*state = d;
	return IAP_OK;
}

static void data_close(void *state)
{
	free(state);
}

static int64_t data_count(void *state)
{
	return ((struct data *)state)->n;
}

static int data_info(void *state, struct iap_dataset_info *info, struct iap_error *err)
{
	(void)err;
	info->n_classes = (int)((struct data *)state)->classes;
	info->in_ndim = 3;
	info->in_shape[0] = 1;
	info->in_shape[1] = 2;
	info->in_shape[2] = 2;
	info->class_names = NULL;
	return IAP_OK;
}

static int data_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	struct data *d = state;

	if (i < 0 || i >= d->n)
		return iap_error_set(err, IAP_EINVAL, "test-data: no sample %lld", (long long)i);
	for (int j = 0; image && j < 4; j++)
		image[j] = (float)i + 0.1f * (float)j;
	*label = (int)(i % d->classes);
	return IAP_OK;
}

static const struct iap_dataset_ops stub_ops = {
	.size = sizeof(struct iap_dataset_ops),
	.open = data_open, .close = data_close, .count = data_count,
	.info = data_info, .load = data_load,
};
#define STUB_KIND IAP_PLUGIN_DATASET
#define STUB_NAME "test-data"
#define STUB_OPTIONS data_options
#define STUB_OPS .ops.dataset = &stub_ops

#elif defined(STUB_MODEL)
/* flatten → linear(hidden) → relu → linear(classes); the hidden neurons are prunable units. */
static const struct iap_option model_options[] = {
	{ .name = "hidden", .type = IAP_OPT_INT, .def = "4", .has_range = 1, .min = 1, .max = 4096,
	  .help = "hidden neurons" },
	{ .name = NULL },
};

static int model_build(const struct iap_opts *opts, const struct iap_dataset_info *data,
		       struct iap_graph **out, struct iap_error *err)
{
	struct iap_graph *g = iap_graph_new(data->in_ndim, data->in_shape, err);
	int hidden = (int)iap_opts_int(opts, "hidden"), x, h, rc;

	if (!g)
		return err ? err->code : IAP_ENOMEM;
	x = iap_flatten(g, "flatten", IAP_GRAPH_INPUT);
	h = iap_linear(g, "fc1", x, hidden, 1);
	iap_graph_add_units(g, h, hidden, 1, -1);
	x = iap_relu(g, "relu", h);
	iap_linear(g, "fc2", x, data->n_classes, 1);
	rc = iap_graph_finalize(g, err);
	if (rc) {
		iap_graph_free(g);
		return rc;
	}
	*out = g;
	return IAP_OK;
}

static const struct iap_model_ops stub_ops = {
	.size = sizeof(struct iap_model_ops),
	.build = model_build,
};
#define STUB_KIND IAP_PLUGIN_MODEL
#define STUB_NAME "test-mlp"
#define STUB_OPTIONS model_options
#define STUB_OPS .ops.model = &stub_ops

#elif defined(STUB_POLICY)
/* Per group, prune the round(rate·n) lowest-scoring units, keeping at least min_units. */
static int policy_mask(const struct iap_opts *opts, const struct iap_policy_input *in,
		       uint8_t *const *keep, struct iap_error *err)
{
	(void)opts;
	(void)err;
	for (int gi = 0; gi < in->graph->n_groups; gi++) {
		int n = iap_graph_group(in->graph, gi)->n_units;
		int prune = (int)(in->rate * n + 0.5);

		if (in->ignore && in->ignore[gi])
			prune = 0;
		if (n - prune < in->min_units)
			prune = n - in->min_units < 0 ? 0 : n - in->min_units;
		for (int u = 0; u < n; u++)
			keep[gi][u] = 1;
		for (int k = 0; k < prune; k++) {
			int lo = -1;

			for (int u = 0; u < n; u++)
				if (keep[gi][u] && (lo < 0 || in->scores[gi][u] < in->scores[gi][lo]))
					lo = u;
			keep[gi][lo] = 0;
		}
	}
	return IAP_OK;
}

static const struct iap_policy_ops stub_ops = {
	.size = sizeof(struct iap_policy_ops),
	.mask = policy_mask,
};
#define STUB_KIND IAP_PLUGIN_POLICY
#define STUB_NAME "test-lowest"
#define STUB_OPTIONS NULL
#define STUB_OPS .ops.policy = &stub_ops

#else
#error "define STUB_DATASET, STUB_MODEL or STUB_POLICY"
#endif

static const struct iap_plugin_desc stub_desc = {
	IAP_PLUGIN_HEADER,
	.kind = STUB_KIND,
	.name = STUB_NAME,
	.version = "1.0",
	.license = "MIT",
	.summary = "test stub",
	.options = STUB_OPTIONS,
	STUB_OPS,
};

IAP_PLUGIN_DEFINE(stub_desc)
