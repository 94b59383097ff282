/*
 * iap_attribute_samples: per-sample unit scores for every kind of
 * attribution plugin, loaded from the build tree as a user would. For a
 * rule set (lrp), a plugin with unit_relevance() (ig, taylor) and one with
 * score() only (activation), the per-sample Σ r and Σ |r| must equal what
 * the ordinary host path (iap_attribute_batch) scores for each sample alone
 * with abs=none and abs=before; ig's completeness() must be consistent with
 * them; the input relevance of lrp's walk must be its explain(); a
 * data-free plugin (magnitude) is refused.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/attribute.h>
#include <iaprune/attribute_samples.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "../plugins/models/arch.h"
#include "testutil.h"

static struct iap_registry *reg;

static struct iap_graph *tiny_vgg(void)
{
	struct iap_cnn_cfg cfg = { .depth = 11, .batch_norm = 1, .num_classes = 3, .in_channels = 3,
				   .image_size = 32, .width = 0.05, .dropout = 0.5f };
	struct iap_error err;
	struct iap_graph *g = NULL;

	assert_int_equal(iap_vgg_build(&cfg, &g, &err), IAP_OK);
	tu_randomize_params(g, 7, 0.3f);
	return g;
}

static struct iap_opts *opts_of(const struct iap_plugin *p, const char *abs)
{
	struct iap_opts *o = NULL;
	struct iap_error err;

	assert_int_equal(iap_opts_defaults(p->desc->options, &o, &err), IAP_OK);
	if (!strcmp(p->desc->name, "ig"))
		assert_int_equal(iap_opts_set(o, "ig", "steps", "8", &err), IAP_OK);
	if (abs)
		assert_int_equal(iap_opts_set(o, "t", "abs", abs, &err), IAP_OK);
	return o;
}

/* sum[g][n·U + u] against iap_attribute_batch on sample n alone with `abs`. */
static void check_against_host(const struct iap_plugin *p, struct iap_graph *g, const struct iap_tensor *x,
			       float *const *got, const char *abs)
{
	const struct iap_attribution_ops *ops = p->desc->ops.attribution;
	struct iap_opts *o = opts_of(p, abs);
	struct iap_tensor xi = { 0 };
	int64_t shape[4] = { 1, 3, 32, 32 }, per = 3 * 32 * 32;
	struct iap_error err;
	void *st = NULL;

	assert_int_equal(ops->create(o, g, &st, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&xi, 4, shape, &err), IAP_OK);
	for (int n = 0; n < 2; n++) {
		float **want = calloc((size_t)g->n_groups, sizeof(*want));

		memcpy(xi.data, x->data + n * per, (size_t)per * sizeof(float));
		for (int gi = 0; gi < g->n_groups; gi++)
			want[gi] = calloc((size_t)g->groups[gi].n_units, sizeof(float));
		if (iap_attribute_batch(ops, st, o, g, &xi, NULL, want, NULL, &err))
			fail_msg("%s", err.msg);
		for (int gi = 0; gi < g->n_groups; gi++) {
			int nu = g->groups[gi].n_units;
			double scale = 0.0;

			for (int u = 0; u < nu; u++)
				scale = fmax(scale, fabs(want[gi][u]));
			for (int u = 0; u < nu; u++)
				if (!(fabs(got[gi][n * nu + u] - want[gi][u]) <= 1e-4 * scale + 1e-6))
					fail_msg("%s abs=%s: %s unit %d sample %d: %g, alone %g", p->desc->name, abs,
						 g->groups[gi].name, u, n, got[gi][n * nu + u], want[gi][u]);
			free(want[gi]);
		}
		free(want);
	}
	ops->destroy(st);
	iap_opts_free(o);
	iap_tensor_free(&xi);
}

static void check_plugin(const char *name)
{
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, name);
	const struct iap_attribution_ops *ops;
	struct iap_graph *g = tiny_vgg();
	struct iap_tensor x = tu_rand_tensor(11, 4, 2, 3, 32, 32), rin = { 0 };
	struct iap_opts *o;
	struct iap_error err;
	float **sum, **sum_abs;
	void *st = NULL;
	int targets[2];

	assert_non_null(p);
	ops = p->desc->ops.attribution;
	o = opts_of(p, NULL);
	assert_int_equal(ops->create(o, g, &st, &err), IAP_OK);
	sum = calloc((size_t)g->n_groups, sizeof(*sum));
	sum_abs = calloc((size_t)g->n_groups, sizeof(*sum_abs));
	for (int gi = 0; gi < g->n_groups; gi++) {
		sum[gi] = calloc((size_t)(2 * g->groups[gi].n_units), sizeof(float));
		sum_abs[gi] = calloc((size_t)(2 * g->groups[gi].n_units), sizeof(float));
	}
	if (iap_attribute_samples(p, st, o, g, &x, NULL, sum, sum_abs, targets, &rin, &err))
		fail_msg("%s: %s", name, err.msg);
	/* Σ|r| ≥ |Σ r| everywhere, and not all zero. */
	{
		double tot = 0.0;

		for (int gi = 0; gi < g->n_groups; gi++)
			for (int k = 0; k < 2 * g->groups[gi].n_units; k++) {
				assert_true(sum_abs[gi][k] + 1e-6f >= fabsf(sum[gi][k]));
				tot += sum_abs[gi][k];
			}
		assert_true(tot > 0.0);
	}
	check_against_host(p, g, &x, sum, "none");
	check_against_host(p, g, &x, sum_abs, "before");

	if (!strcmp(name, "lrp")) {
		struct iap_tensor want = { 0 };

		assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
		assert_int_equal(ops->explain(st, g, &x, targets, &want, &err), IAP_OK);
		assert_int_equal(iap_tensor_numel(&rin), iap_tensor_numel(&want));
		assert_true(tu_max_abs_diff(rin.data, want.data, (size_t)iap_tensor_numel(&want), NULL) < 1e-6);
		iap_tensor_free(&want);
	}
	if (!strcmp(name, "ig")) {
		int ng, n, n_gap, one;
		const float *d = ops->completeness(st, IAP_DELTA_UNITS, &ng, &n);
		const float *gap = ops->completeness(st, IAP_DELTA_GAP, &one, &n_gap);

		/* The unit deltas belong to the conductance sweep: Σ_u cond − gap, per group and sample. */
		assert_non_null(d);
		assert_int_equal(ng, g->n_groups);
		assert_int_equal(n, 2);
		assert_non_null(gap);
		for (int gi = 0; gi < ng; gi++)
			for (int s = 0; s < 2; s++) {
				double t = 0.0;

				(void)gap;
				for (int u = 0; u < g->groups[gi].n_units; u++)
					t += sum[gi][s * g->groups[gi].n_units + u];
				assert_true(fabs(d[gi * 2 + s] - (t - ops->completeness(st, IAP_DELTA_GAP, &one,
											&n_gap)[s])) < 1e-4);
			}
		/* The input map came from explain(): its δ is there too. */
		assert_non_null(ops->completeness(st, IAP_DELTA_INPUT, &one, &n));
		assert_int_equal(n, 2);
		assert_int_equal(iap_tensor_numel(&rin), 2 * 3 * 32 * 32);
	}
	for (int gi = 0; gi < g->n_groups; gi++) {
		free(sum[gi]);
		free(sum_abs[gi]);
	}
	free(sum);
	free(sum_abs);
	ops->destroy(st);
	iap_opts_free(o);
	iap_tensor_free(&x);
	iap_tensor_free(&rin);
	iap_graph_free(g);
}

static void test_lrp(void **state)
{
	(void)state;
	check_plugin("lrp");
}

static void test_ig(void **state)
{
	(void)state;
	check_plugin("ig");
}

static void test_taylor(void **state)
{
	(void)state;
	check_plugin("taylor");
}

static void test_activation(void **state)
{
	(void)state;
	check_plugin("activation");
}

static void test_data_free_refused(void **state)
{
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, "magnitude");
	struct iap_graph *g = tiny_vgg();
	struct iap_tensor x = tu_rand_tensor(3, 4, 1, 3, 32, 32);
	struct iap_opts *o = opts_of(p, NULL);
	struct iap_error err;
	float *dummy[64] = { NULL };
	int t[1];
	void *st = NULL;

	(void)state;
	assert_int_equal(p->desc->ops.attribution->create(o, g, &st, &err), IAP_OK);
	assert_int_equal(iap_attribute_samples(p, st, o, g, &x, NULL, dummy, dummy, t, NULL, &err),
			 IAP_EUNSUPPORTED);
	assert_non_null(strstr(err.msg, "magnitude"));
	p->desc->ops.attribution->destroy(st);
	iap_opts_free(o);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static int setup(void **state)
{
	static const char *const names[] = { "lrp", "ig", "taylor", "activation", "magnitude" };

	(void)state;
	reg = tu_registry_load(IAP_ATTR_PLUGIN_DIR, names, 5);
	return reg ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	iap_registry_free(reg);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lrp),
		cmocka_unit_test(test_ig),
		cmocka_unit_test(test_taylor),
		cmocka_unit_test(test_activation),
		cmocka_unit_test(test_data_free_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
