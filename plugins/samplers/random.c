/*
 * The "random" sampler: k samples of every class, uniform within the class
 * and without replacement, drawn from the rng the host passes in (so a seed
 * fixes the choice). The model is not used.
 */
#include "config.h"

#include <stdlib.h>

#include <iaprune/plugin.h>

#include "common.h"

/*
 * Per class, a partial Fisher–Yates shuffle of the class's indices: the
 * first min(k, n) positions are a uniform sample without replacement. The
 * classes are drawn in order from one stream, so the result depends on the
 * seed alone (not on thread count or platform).
 */
static int random_select(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
			 struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err)
{
	struct iap_smp_classes cl;
	int64_t n = 0;
	int rc;

	(void)opts;
	(void)g;
	if (!rng)
		return iap_error_set(err, IAP_EINVAL, "sampler 'random': no random number generator");
	rc = iap_smp_classes_load("random", ds, k, out, n_out, &cl, err);
	if (rc)
		return rc;
	for (int c = 0; c < cl.n_classes; c++) {
		int64_t *v = cl.idx + cl.start[c];
		int64_t size = cl.start[c + 1] - cl.start[c];
		int64_t take = size < k ? size : k;

		for (int64_t i = 0; i < take; i++) {
			int64_t j = i + (int64_t)iap_rng_below(rng, (uint64_t)(size - i));
			int64_t t = v[i];

			v[i] = v[j];
			v[j] = t;
		}
		for (int64_t i = 0; i < take; i++)
			out[n + i] = v[i];
		iap_smp_sort_idx(out + n, take);
		n += take;
	}
	*n_out = n;
	rc = iap_smp_report_short("random", &cl, NULL, k, err);
	iap_smp_classes_free(&cl);
	return rc;
}

static const struct iap_sampler_ops random_ops = {
	.size = sizeof(struct iap_sampler_ops),
	.select = random_select,
};

static const struct iap_plugin_desc random_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_SAMPLER,
	.name = "random",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "k samples per class, uniform within each class (seeded)",
	.options = NULL,
	.ops.sampler = &random_ops,
};

IAP_PLUGIN_DEFINE(random_desc)
