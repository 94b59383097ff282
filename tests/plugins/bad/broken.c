/*
 * Plugins that misbehave at run time or break a promise, one per shared
 * object: each library compiles this file with one BAD_* macro defined.
 * tests/test_plugin_host.sh links them, one at a time, into a scratch
 * plugin folder next to the good test plugins and checks what the host says.
 */
#include "config.h"

#include <stdlib.h>
#include <sys/mman.h>

#include <iaprune/attribute.h>
#include <iaprune/ops.h>
#include <iaprune/plugin.h>

/*
 * A real fault that is not undefined behaviour in C (a NULL store would be
 * caught by UBSan in sanitizer builds before it faulted): a store to a
 * read-only page.
 */
static void __attribute__((unused)) crash(void)
{
	volatile int *ro = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (ro != MAP_FAILED)
		*ro = 1;
	abort();   /* no page at all: still a crash */
}

#if defined(BAD_CTOR)
#include <stdio.h>
#include <unistd.h>

/* Logs which process ran it: the scanner child's parent is iaprune, iaprune's is the test shell. */
__attribute__((constructor)) static void log_ctor(void)
{
	const char *path = getenv("IAP_TEST_CTOR_LOG");
	FILE *f = path ? fopen(path, "a") : NULL;

	if (f) {
		fprintf(f, "%ld %ld\n", (long)getpid(), (long)getppid());
		fclose(f);
	}
}
#endif

#if defined(BAD_SCORE_SEGV)
/* ---- attribution whose score() and explain() fault ------------------------------- */
static int a_create(const struct iap_opts *opts, struct iap_graph *g, void **state, struct iap_error *err)
{
	(void)opts; (void)g; (void)err;
	*state = NULL;
	return IAP_OK;
}

static void a_destroy(void *state)
{
	(void)state;
}

static int a_score(void *state, struct iap_graph *g, const struct iap_tensor *x, const int *targets,
		   float *const *scores, struct iap_error *err)
{
	(void)state; (void)g; (void)x; (void)targets; (void)scores; (void)err;
	crash();
	return IAP_OK;
}

/* explain() faults too: `iaprune explain` must name the plugin as the runner does. */
static int a_explain(void *state, struct iap_graph *g, const struct iap_tensor *x, const int *targets,
		     struct iap_tensor *relevance, struct iap_error *err)
{
	(void)state; (void)g; (void)x; (void)targets; (void)relevance; (void)err;
	crash();
	return IAP_OK;
}

static const struct iap_attribution_ops b_ops = {
	.size = sizeof(struct iap_attribution_ops),
	.create = a_create, .destroy = a_destroy, .score = a_score, .explain = a_explain,
};
/* The options every attribution offers (attribute.h), so `iaprune attribute` takes it. */
static const struct iap_option b_options[] = {
	IAP_ATTR_COMMON_OPTIONS,
	{ .name = NULL },
};
#define B_KIND IAP_PLUGIN_ATTRIBUTION
#define B_NAME "crash-score"
#define B_OPS .ops.attribution = &b_ops, .options = b_options

#elif defined(BAD_OVERPRUNE) || defined(BAD_UNCOUPLED)
/* ---- policies ------------------------------------------------------------------------ */
static int p_mask(const struct iap_opts *opts, const struct iap_policy_input *in, uint8_t *const *keep,
		  struct iap_error *err)
{
	(void)opts; (void)err;
	for (int gi = 0; gi < in->graph->n_groups; gi++) {
		const struct iap_unit_group *grp = iap_graph_group(in->graph, gi);

		for (int u = 0; u < grp->n_units; u++)
#if defined(BAD_OVERPRUNE)
			/* All but the first unit, whatever the rate and the caps. */
			keep[gi][u] = u == 0;
#else
			/* Coupled groups share their units; this prunes a different one in each. */
			keep[gi][u] = u != gi % grp->n_units;
#endif
	}
	return IAP_OK;
}

static const struct iap_policy_ops b_ops = { .size = sizeof(struct iap_policy_ops), .mask = p_mask };
#define B_KIND IAP_PLUGIN_POLICY
#if defined(BAD_OVERPRUNE)
#define B_NAME "over-prune"
#else
#define B_NAME "uncoupled"
#endif
#define B_OPS .ops.policy = &b_ops

#elif defined(BAD_COUPLED_MODEL)
/* ---- a model with two coupled groups (as ResNet's residual channels are) -------------- */
static int m_build(const struct iap_opts *opts, const struct iap_dataset_info *data, struct iap_graph **out,
		   struct iap_error *err)
{
	struct iap_graph *g = iap_graph_new(data->in_ndim, data->in_shape, err);
	int x, h1, h2, rc;

	(void)opts;
	if (!g)
		return err ? err->code : IAP_ENOMEM;
	x = iap_flatten(g, "flatten", IAP_GRAPH_INPUT);
	h1 = iap_linear(g, "fc1", x, 4, 1);
	iap_graph_add_units(g, h1, 4, 1, 0);
	x = iap_relu(g, "relu1", h1);
	h2 = iap_linear(g, "fc2", x, 4, 1);
	iap_graph_add_units(g, h2, 4, 1, 0);
	x = iap_relu(g, "relu2", h2);
	iap_linear(g, "fc3", x, data->n_classes, 1);
	rc = iap_graph_finalize(g, err);
	if (rc) {
		iap_graph_free(g);
		return rc;
	}
	*out = g;
	return IAP_OK;
}

static const struct iap_model_ops b_ops = { .size = sizeof(struct iap_model_ops), .build = m_build };
#define B_KIND IAP_PLUGIN_MODEL
#define B_NAME "test-coupled"
#define B_OPS .ops.model = &b_ops

#else
/* ---- samplers -------------------------------------------------------------------------- */
/* The first k samples of every class (the test-first sampler's answer), then spoiled. */
static int s_select(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
		    struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err)
{
	int64_t n = 0;
	int taken[64] = { 0 };

	(void)opts; (void)g; (void)rng;
#if defined(BAD_SELECT_SEGV)
	crash();
#elif defined(BAD_SELECT_ABORT)
	abort();
#elif defined(BAD_EXIT)
	exit(0);
#endif
	for (int64_t i = 0; i < ds->count; i++) {
		int label, rc = ds->ops->load(ds->state, i, NULL, &label, err);

		if (rc)
			return rc;
#if defined(BAD_ONECLASS)
		if (label != 0)
			continue;
#endif
		if (label >= 0 && label < 64 && taken[label] < k) {
			taken[label]++;
			out[n++] = i;
		}
	}
#if defined(BAD_RANGE)
	out[0] = ds->count + 5;
#elif defined(BAD_DUPIDX)
	if (n > 1)
		out[1] = out[0];
#endif
	*n_out = n;
	return IAP_OK;
}

static const struct iap_sampler_ops b_ops = {
#if !defined(BAD_ZEROSIZE)
	.size = sizeof(struct iap_sampler_ops),
#endif
	.select = s_select,
};
#define B_KIND IAP_PLUGIN_SAMPLER
#define B_NAME "bad-sampler"
#define B_OPS .ops.sampler = &b_ops
#endif

static const struct iap_plugin_desc b_desc = {
#if !defined(BAD_NOHEADER)
	IAP_PLUGIN_HEADER,
#endif
	.kind = B_KIND,
	.name = B_NAME,
	.version = "0.0",
	.license = "MIT",
	.summary = "misbehaves on purpose",
	B_OPS,
};

#if defined(BAD_DESC_SEGV)
IAP_PLUGIN_EXPORT const struct iap_plugin_desc *iap_plugin_descriptor(void)
{
	crash();
	return &b_desc;
}
#else
IAP_PLUGIN_DEFINE(b_desc)
#endif
