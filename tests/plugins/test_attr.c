/*
 * A well-formed attribution used by the tests: the plain gradient through
 * the core's rule set. init/fini count their calls in an environment
 * variable-free way: through a file named by IAP_TEST_LIFECYCLE, when set,
 * so a test can see that the host ran both.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>

#include <iaprune/plugin.h>

static const char *const rule_choices[] = { "gradient", "epsilon", NULL };

static const struct iap_option grad_options[] = {
	{ .name = "rule", .type = IAP_OPT_ENUM, .def = "gradient", .choices = rule_choices,
	  .help = "propagation rule" },
	{ .name = "epsilon", .type = IAP_OPT_FLOAT, .def = "1e-6", .has_range = 1, .min = 0, .max = 1,
	  .help = "stabiliser" },
	{ .name = "steps", .type = IAP_OPT_INT, .def = NULL, .has_range = 1, .min = 1, .max = 512,
	  .help = "required: exercises required options" },
	{ .name = NULL },
};

static void note(const char *what)
{
	const char *path = getenv("IAP_TEST_LIFECYCLE");
	FILE *f;

	if (!path)
		return;
	f = fopen(path, "a");
	if (f) {
		fprintf(f, "%s\n", what);
		fclose(f);
	}
}

static int grad_init(struct iap_error *err)
{
	(void)err;
	note("init");
	return IAP_OK;
}

static void grad_fini(void)
{
	note("fini");
}

static int grad_create(const struct iap_opts *opts, struct iap_graph *g, void **state,
		       struct iap_error *err)
{
	(void)opts;
	(void)g;
	(void)err;
	*state = NULL;
	return IAP_OK;
}

static void grad_destroy(void *state)
{
	(void)state;
}

static const struct iap_ruleset *grad_ruleset(void *state)
{
	(void)state;
	return iap_ruleset_gradient();
}

static const struct iap_attribution_ops grad_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.create = grad_create,
	.destroy = grad_destroy,
	.ruleset = grad_ruleset,
};

static const struct iap_plugin_desc grad_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_ATTRIBUTION,
	.name = "test-grad",
	.version = "1.0",
	.license = "MIT",
	.summary = "plain gradient (test plugin)",
	.options = grad_options,
	.init = grad_init,
	.fini = grad_fini,
	.ops.attribution = &grad_ops,
};

IAP_PLUGIN_DEFINE(grad_desc)
