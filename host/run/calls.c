/*
 * Thin wrappers around every call the runner makes into a plugin: each sets
 * the thread's call record (guard.h) for the length of the call, so a crash
 * or an exit() inside it names the plugin, its file and the entry point.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "run_internal.h"
#include <iaprune/attribute_samples.h>
#include <iaprune/registry.h>

#define CALL(p, entry, expr) \
	do { \
		struct iap_plugin_call call_; \
		iap_plugin_call_enter(&call_, (p), (entry)); \
		rc = (expr); \
		iap_plugin_call_leave(&call_); \
	} while (0)

int iap_call_build(const struct iap_plugin *p, const struct iap_opts *opts,
		   const struct iap_dataset_info *data, struct iap_graph **out, struct iap_error *err)
{
	int rc;

	CALL(p, "build", p->desc->ops.model->build(opts, data, out, err));
	return rc;
}

int iap_call_init_params(const struct iap_plugin *p, const struct iap_opts *opts, struct iap_graph *g,
			 struct iap_rng *rng, struct iap_error *err)
{
	int rc;

	CALL(p, "init_params", p->desc->ops.model->init_params(opts, g, rng, err));
	return rc;
}

int iap_call_select(const struct iap_plugin *p, const struct iap_opts *opts, const struct iap_dataset *ds,
		    struct iap_graph *g, struct iap_rng *rng, int k, int64_t *out, int64_t *n_out,
		    struct iap_error *err)
{
	int rc;

	CALL(p, "select", p->desc->ops.sampler->select(opts, ds, g, rng, k, out, n_out, err));
	return rc;
}

int iap_call_create(const struct iap_plugin *p, const struct iap_opts *opts, struct iap_graph *g,
		    void **state, struct iap_error *err)
{
	int rc;

	CALL(p, "create", p->desc->ops.attribution->create(opts, g, state, err));
	return rc;
}

void iap_call_destroy(const struct iap_plugin *p, void *state)
{
	struct iap_plugin_call call;

	iap_plugin_call_enter(&call, p, "destroy");
	p->desc->ops.attribution->destroy(state);
	iap_plugin_call_leave(&call);
}

int iap_call_attribute_batch(const struct iap_plugin *p, void *state, const struct iap_opts *opts,
			     struct iap_graph *g, const struct iap_tensor *x, const int *labels,
			     float *const *scores, int *targets_out, struct iap_error *err)
{
	int rc;

	CALL(p, "score", iap_attribute_batch(p->desc->ops.attribution, state, opts, g, x, labels, scores,
					     targets_out, err));
	return rc;
}

int iap_call_explain(const struct iap_plugin *p, void *state, struct iap_graph *g,
		     const struct iap_tensor *x, const int *targets, struct iap_tensor *relevance,
		     struct iap_error *err)
{
	int rc;

	CALL(p, "explain", p->desc->ops.attribution->explain(state, g, x, targets, relevance, err));
	return rc;
}

int iap_call_attribute_samples(const struct iap_plugin *p, void *state, const struct iap_opts *opts,
			       struct iap_graph *g, const struct iap_tensor *x, const int *labels,
			       float *const *sum, float *const *sum_abs, int *targets,
			       struct iap_tensor *input_relevance, struct iap_error *err)
{
	int rc;

	CALL(p, "score", iap_attribute_samples(p, state, opts, g, x, labels, sum, sum_abs, targets,
					       input_relevance, err));
	return rc;
}

const float *iap_call_completeness(const struct iap_plugin *p, void *state, int what, int *n_groups, int *n)
{
	struct iap_plugin_call call;
	const float *d;

	iap_plugin_call_enter(&call, p, "completeness");
	d = p->desc->ops.attribution->completeness(state, what, n_groups, n);
	iap_plugin_call_leave(&call);
	return d;
}

int iap_call_mask(const struct iap_plugin *p, const struct iap_opts *opts, const struct iap_policy_input *in,
		  uint8_t *const *keep, struct iap_error *err)
{
	int rc;

	CALL(p, "mask", p->desc->ops.policy->mask(opts, in, keep, err));
	return rc;
}

int iap_call_mask_checked(const struct iap_plugin *p, const struct iap_opts *opts,
			  const struct iap_policy_input *in, uint8_t *const *keep, struct iap_error *err)
{
	const struct iap_graph *g = in->graph;
	uint8_t **rows = calloc((size_t)g->n_groups + 1, sizeof(*rows));
	int rc = rows ? IAP_OK : IAP_ENOMEM;

	/* Rows of our own, one entry longer (the overrun sentinel), whatever the caller allocated. */
	for (int gi = 0; gi < g->n_groups && !rc; gi++) {
		rows[gi] = malloc((size_t)iap_graph_group(g, gi)->n_units + 1);
		if (!rows[gi])
			rc = IAP_ENOMEM;
	}
	if (rc) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	for (int gi = 0; gi < g->n_groups; gi++)
		memcpy(rows[gi], keep[gi], (size_t)iap_graph_group(g, gi)->n_units);
	iap_contract_mask_arm(g, rows);
	rc = iap_call_mask(p, opts, in, rows, err);
	rc = rc ? rc : iap_contract_mask(p, in, rows, err);
	for (int gi = 0; !rc && gi < g->n_groups; gi++)
		memcpy(keep[gi], rows[gi], (size_t)iap_graph_group(g, gi)->n_units);
out:
	for (int gi = 0; rows && gi < g->n_groups; gi++)
		free(rows[gi]);
	free(rows);
	return rc;
}

/* ---- the dataset guard --------------------------------------------------------------- */

struct guarded {
	const struct iap_plugin *p;
	const struct iap_dataset_ops *ops;   /* the plugin's own */
	void *state;
};

static void guarded_close(void *state)
{
	struct guarded *gd = state;
	struct iap_plugin_call call;

	iap_plugin_call_enter(&call, gd->p, "close");
	gd->ops->close(gd->state);
	iap_plugin_call_leave(&call);
	free(gd);
}

static int64_t guarded_count(void *state)
{
	struct guarded *gd = state;
	struct iap_plugin_call call;
	int64_t n;

	iap_plugin_call_enter(&call, gd->p, "count");
	n = gd->ops->count(gd->state);
	iap_plugin_call_leave(&call);
	return n;
}

static int guarded_info(void *state, struct iap_dataset_info *info, struct iap_error *err)
{
	struct guarded *gd = state;
	int rc;

	CALL(gd->p, "info", gd->ops->info(gd->state, info, err));
	return rc;
}

static int guarded_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	struct guarded *gd = state;
	int rc;

	CALL(gd->p, "load", gd->ops->load(gd->state, i, image, label, err));
	return rc;
}

static int guarded_load_original(void *state, int64_t i, struct iap_tensor *image, struct iap_error *err)
{
	struct guarded *gd = state;
	int rc;

	CALL(gd->p, "load_original", gd->ops->load_original(gd->state, i, image, err));
	return rc;
}

static const struct iap_dataset_ops guarded_ops = {
	.size = sizeof(struct iap_dataset_ops),
	.open = NULL,   /* the split is already open */
	.close = guarded_close,
	.count = guarded_count,
	.info = guarded_info,
	.load = guarded_load,
};

/* The same with load_original, for plugins that have it (IAP_DATASET_OPS_HAS stays truthful). */
static const struct iap_dataset_ops guarded_ops_original = {
	.size = sizeof(struct iap_dataset_ops),
	.open = NULL,
	.close = guarded_close,
	.count = guarded_count,
	.info = guarded_info,
	.load = guarded_load,
	.load_original = guarded_load_original,
};

int iap_call_dataset_open(const struct iap_plugin *p, const struct iap_opts *opts, enum iap_split s,
			  struct iap_dataset *d, struct iap_error *err)
{
	struct guarded *gd = malloc(sizeof(*gd));
	int rc;

	if (!gd)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	gd->p = p;
	gd->ops = p->desc->ops.dataset;
	gd->state = NULL;
	CALL(p, "open", gd->ops->open(opts, s, &gd->state, err));
	if (rc) {
		free(gd);
		return rc;
	}
	d->ops = IAP_DATASET_OPS_HAS(gd->ops, load_original) ? &guarded_ops_original : &guarded_ops;
	d->state = gd;
	return IAP_OK;
}
