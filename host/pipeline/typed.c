/*
 * The typed pipeline (iap_pipeline_load): the tree validated once, its
 * plugins resolved once, every key the runner reads copied into a field.
 *
 * The getters here take no defaults: validation has written every default
 * of schema.c's table into the tree, so a key that is missing here is a
 * schema bug, reported as one, and the defaults live in one place only.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg_internal.h"
#include "../run/ranking.h"

struct reader {
	const struct iap_cfg_node *root;
	struct iap_error *err;
};

static const struct iap_cfg_node *need(struct reader *R, const struct iap_cfg_node *at, const char *path)
{
	const struct iap_cfg_node *n = iap_cfg_get(at, path);

	if (!n)
		iap_error_set(R->err, IAP_EINVAL, "pipeline: '%s' has no value (a key without a default in the schema)",
			      path);
	return n;
}

static int get_int(struct reader *R, const struct iap_cfg_node *at, const char *path, int *out)
{
	const struct iap_cfg_node *n = need(R, at, path);
	long v;
	int rc = n ? iap_cfg_int(n, path, &v, R->err) : IAP_EINVAL;

	if (!rc)
		*out = (int)v;
	return rc;
}

static int get_float(struct reader *R, const struct iap_cfg_node *at, const char *path, double *out)
{
	const struct iap_cfg_node *n = need(R, at, path);

	return n ? iap_cfg_float(n, path, out, R->err) : IAP_EINVAL;
}

static int get_bool(struct reader *R, const struct iap_cfg_node *at, const char *path, int *out)
{
	const struct iap_cfg_node *n = need(R, at, path);

	return n ? iap_cfg_bool(n, path, out, R->err) : IAP_EINVAL;
}

static int get_str(struct reader *R, const struct iap_cfg_node *at, const char *path, const char **out)
{
	const struct iap_cfg_node *n = need(R, at, path);

	return n ? iap_cfg_str(n, path, out, R->err) : IAP_EINVAL;
}

/* The resolved plugin of reference node ref, taken out of refs (so it is freed once). */
static int take_ref(struct reader *R, struct cfgi_refs *refs, const struct iap_cfg_node *ref,
		    struct iap_pipeline_ref *out)
{
	for (int i = 0; ref && i < refs->n; i++)
		if (refs->items[i].node == ref && refs->items[i].plugin) {
			*out = refs->items[i];
			refs->items[i].opts = NULL;
			refs->items[i].plugin = NULL;
			return IAP_OK;
		}
	return iap_error_set(R->err, IAP_EINVAL, "pipeline: a plugin reference was not resolved (no registry?)");
}

static int read_train(struct reader *R, struct iap_pipeline_train *t)
{
	const struct iap_cfg_node *n = need(R, R->root, "model.train");
	const char *cw = NULL;
	int rc;

	if (!n)
		return IAP_EINVAL;
	rc = get_int(R, n, "epochs", &t->epochs);
	rc = rc ? rc : get_int(R, n, "batch_size", &t->batch_size);
	rc = rc ? rc : get_float(R, n, "lr", &t->lr);
	rc = rc ? rc : get_float(R, n, "weight_decay", &t->weight_decay);
	rc = rc ? rc : get_int(R, n, "step_size", &t->step_size);
	rc = rc ? rc : get_float(R, n, "gamma", &t->gamma);
	rc = rc ? rc : get_str(R, n, "class_weights", &cw);
	rc = rc ? rc : get_bool(R, n, "augment", &t->augment);
	rc = rc ? rc : get_bool(R, n, "resume", &t->resume);
	rc = rc ? rc : get_float(R, n, "crop_scale", &t->crop_scale);
	rc = rc ? rc : get_bool(R, n, "hflip", &t->hflip);
	rc = rc ? rc : get_bool(R, n, "vflip", &t->vflip);
	rc = rc ? rc : get_float(R, n, "rotate", &t->rotate);
	rc = rc ? rc : get_float(R, n, "jitter", &t->jitter);
	if (!rc)
		t->class_weights_balanced = strcmp(cw, "balanced") == 0;
	return rc;
}

/* sampling: and attribution: items, each with its resolved plugin and its label. */
static int read_lists(struct reader *R, struct cfgi_refs *refs, struct iap_pipeline *p)
{
	const struct iap_cfg_node *smp = iap_cfg_child(R->root, "sampling");
	const struct iap_cfg_node *attr = iap_cfg_child(R->root, "attribution");
	int rc = IAP_OK;

	p->has_attribution = attr != NULL;
	p->samplers = calloc((size_t)(smp ? smp->n_items : 0) + 1, sizeof(*p->samplers));
	p->attributions = calloc((size_t)(attr ? attr->n_items : 0) + 1, sizeof(*p->attributions));
	if (!p->samplers || !p->attributions)
		return iap_error_set(R->err, IAP_ENOMEM, "out of memory");
	for (int i = 0; !rc && smp && i < smp->n_items; i++) {
		struct iap_pipeline_sampler *s = &p->samplers[i];

		rc = take_ref(R, refs, smp->items[i], &s->ref);
		if (rc)
			break;
		p->n_samplers++;   /* counted once it owns its options, so iap_pipeline_free frees them */
		rc = get_int(R, smp->items[i], "per_class", &s->per_class);
		if (rc)
			break;
		s->name = s->ref.plugin->desc->name;
		rc = iap_cfg_get_str(smp->items[i], "name", s->name, &s->name, R->err);
	}
	for (int i = 0; !rc && attr && i < attr->n_items; i++) {
		struct iap_pipeline_attribution *a = &p->attributions[i];

		rc = take_ref(R, refs, attr->items[i], &a->ref);
		if (rc)
			break;
		p->n_attributions++;
		a->name = a->ref.plugin->desc->name;
		rc = iap_cfg_get_str(attr->items[i], "name", a->name, &a->name, R->err);
	}
	return rc;
}

/* pruning.finetune: absent, or every key (its optional ones falling back to model.train's and pruning.rates). */
static int read_finetune(struct reader *R, struct iap_pipeline *p)
{
	const struct iap_cfg_node *ft = iap_cfg_get(R->root, "pruning.finetune"), *rates;
	const char *which = NULL;
	int rc;

	if (!ft)
		return IAP_OK;
	p->pruning.finetune.enabled = 1;
	rc = get_int(R, ft, "epochs", &p->pruning.finetune.epochs);
	rc = rc ? rc : get_float(R, ft, "lr", &p->pruning.finetune.lr);
	rc = rc ? rc : get_bool(R, ft, "augment", &p->pruning.finetune.augment);
	rc = rc ? rc : get_str(R, ft, "configurations", &which);
	if (!rc && iap_cfg_child(ft, "batch_size"))
		rc = get_int(R, ft, "batch_size", &p->pruning.finetune.batch_size);
	if (!rc && iap_cfg_child(ft, "weight_decay")) {
		p->pruning.finetune.has_weight_decay = 1;
		rc = get_float(R, ft, "weight_decay", &p->pruning.finetune.weight_decay);
	}
	if (rc)
		return rc;
	p->pruning.finetune.best_only = !strcmp(which, "best");
	rates = iap_cfg_child(ft, "rates");
	if (!rates) {
		p->pruning.finetune.rates = calloc((size_t)p->pruning.n_rates + 1, sizeof(double));
		if (!p->pruning.finetune.rates)
			return iap_error_set(R->err, IAP_ENOMEM, "out of memory");
		memcpy(p->pruning.finetune.rates, p->pruning.rates, (size_t)p->pruning.n_rates * sizeof(double));
		p->pruning.finetune.n_rates = p->pruning.n_rates;
		return IAP_OK;
	}
	p->pruning.finetune.rates = calloc((size_t)rates->n_items + 1, sizeof(double));
	if (!p->pruning.finetune.rates)
		return iap_error_set(R->err, IAP_ENOMEM, "out of memory");
	for (int i = 0; !rc && i < rates->n_items; i++)
		rc = iap_cfg_float(rates->items[i], "pruning.finetune.rates",
				   &p->pruning.finetune.rates[p->pruning.finetune.n_rates++], R->err);
	return rc;
}

static int read_pruning(struct reader *R, struct cfgi_refs *refs, struct iap_pipeline *p)
{
	const struct iap_cfg_node *rates = need(R, R->root, "pruning.rates");
	const struct iap_cfg_node *ignore = need(R, R->root, "pruning.ignore");
	const char *ranking = NULL;
	int rc;

	if (!rates || !ignore)
		return IAP_EINVAL;
	rc = take_ref(R, refs, iap_cfg_get(R->root, "pruning.policy"), &p->pruning.policy);
	rc = rc ? rc : get_float(R, R->root, "pruning.caps.max_layer_rate", &p->pruning.max_layer_rate);
	rc = rc ? rc : get_int(R, R->root, "pruning.caps.min_units", &p->pruning.min_units);
	rc = rc ? rc : get_float(R, R->root, "pruning.tolerance", &p->pruning.tolerance);
	rc = rc ? rc : get_int(R, R->root, "pruning.iterations", &p->pruning.iterations);
	rc = rc ? rc : get_bool(R, R->root, "pruning.curve", &p->pruning.curve);
	rc = rc ? rc : get_float(R, R->root, "pruning.curve_step", &p->pruning.curve_step);
	rc = rc ? rc : get_str(R, R->root, "pruning.baseline_ranking", &ranking);
	if (rc)
		return rc;
	p->pruning.baseline_ranking = iap_ranking_parse(ranking);
	p->pruning.rates = calloc((size_t)rates->n_items + 1, sizeof(double));
	p->pruning.ignore = calloc((size_t)ignore->n_items + 1, sizeof(char *));
	if (!p->pruning.rates || !p->pruning.ignore)
		return iap_error_set(R->err, IAP_ENOMEM, "out of memory");
	for (int i = 0; !rc && i < rates->n_items; i++)
		rc = iap_cfg_float(rates->items[i], "pruning.rates", &p->pruning.rates[p->pruning.n_rates++], R->err);
	for (int i = 0; !rc && i < ignore->n_items; i++)
		if (ignore->items[i]->value)
			p->pruning.ignore[p->pruning.n_ignore++] = ignore->items[i]->value;
	return rc ? rc : read_finetune(R, p);
}

static int read_rest(struct reader *R, struct iap_pipeline *p)
{
	const struct iap_cfg_node *seed = need(R, R->root, "seed");
	const char *split = NULL;
	long seed_l = 0;
	int rc;

	rc = get_str(R, R->root, "name", &p->name);
	rc = rc ? rc : get_str(R, R->root, "output", &p->output);
	rc = rc ? rc : get_int(R, R->root, "threads", &p->threads);
	rc = rc ? rc : iap_cfg_get_str(R->root, "model.weights", NULL, &p->weights, R->err);
	rc = rc ? rc : get_str(R, R->root, "evaluation.split", &split);
	rc = rc ? rc : get_int(R, R->root, "evaluation.batch_size", &p->evaluation.batch_size);
	rc = rc ? rc : get_int(R, R->root, "report.heatmaps", &p->report.heatmaps);
	rc = rc ? rc : get_bool(R, R->root, "report.save_pruned", &p->report.save_pruned);
	rc = rc ? rc : get_int(R, R->root, "report.bootstrap", &p->report.bootstrap);
	rc = rc ? rc : get_int(R, R->root, "report.explain_images", &p->report.explain_images);
	rc = rc ? rc : get_bool(R, R->root, "report.latency", &p->report.latency);
	/* The seed spans 0 .. 2^32 - 1: wider than an int. */
	rc = rc ? rc : seed ? iap_cfg_int(seed, "seed", &seed_l, R->err) : IAP_EINVAL;
	if (rc)
		return rc;
	p->seed = (uint64_t)seed_l;
	p->evaluation.split = !strcmp(split, "train") ? IAP_SPLIT_TRAIN :
			      !strcmp(split, "val") ? IAP_SPLIT_VAL : IAP_SPLIT_TEST;
	return IAP_OK;
}

static void free_ref(struct iap_pipeline_ref *r)
{
	iap_opts_free(r->opts);
	r->opts = NULL;
}

void iap_pipeline_free(struct iap_pipeline *p)
{
	if (!p)
		return;
	free_ref(&p->dataset);
	free_ref(&p->model);
	free_ref(&p->pruning.policy);
	for (int i = 0; i < p->n_samplers; i++)
		free_ref(&p->samplers[i].ref);
	for (int i = 0; i < p->n_attributions; i++)
		free_ref(&p->attributions[i].ref);
	free(p->samplers);
	free(p->attributions);
	free(p->pruning.rates);
	free(p->pruning.ignore);
	free(p->pruning.finetune.rates);
	iap_cfg_free(p->cfg);
	free(p);
}

int iap_pipeline_load(struct iap_cfg *cfg, const struct iap_registry *reg, struct iap_pipeline **out,
		      struct iap_error *err)
{
	struct cfgi_refs refs = { 0 };
	struct iap_pipeline *p;
	struct reader R = { NULL, err };
	int rc;

	*out = NULL;
	if (!reg)
		return iap_error_set(err, IAP_EINVAL, "iap_pipeline_load: no registry");
	rc = cfgi_validate(cfg, reg, &refs, err);
	if (rc) {
		cfgi_refs_free(&refs);
		return rc;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		cfgi_refs_free(&refs);
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	}
	R.root = iap_cfg_root(cfg);
	p->root = R.root;
	rc = take_ref(&R, &refs, iap_cfg_child(R.root, "dataset"), &p->dataset);
	rc = rc ? rc : take_ref(&R, &refs, iap_cfg_child(R.root, "model"), &p->model);
	rc = rc ? rc : read_train(&R, &p->train);
	rc = rc ? rc : read_lists(&R, &refs, p);
	rc = rc ? rc : read_pruning(&R, &refs, p);
	rc = rc ? rc : read_rest(&R, p);
	cfgi_refs_free(&refs);
	if (rc) {
		iap_pipeline_free(p);   /* cfg stays the caller's */
		return rc;
	}
	p->cfg = cfg;
	*out = p;
	return IAP_OK;
}
