/*
 * Fine-tuning after pruning (see finetune.h). Each pruned model is trained
 * from the same trained weights, so the runner copies them once and puts
 * them back after every fine-tuned model; the masks are held fixed by the
 * training loop itself (iap_train_cfg.hold_masks).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include <iaprune/compact.h>

#include "finetune.h"

int iap_finetune_cfg_read(const struct iap_pipeline *p, const struct iap_train_cfg *recipe,
			  struct iap_finetune_cfg *cfg, struct iap_error *err)
{
	const struct iap_pipeline_finetune *ft = &p->pruning.finetune;

	memset(cfg, 0, sizeof(*cfg));
	if (!ft->enabled)
		return IAP_OK;
	cfg->enabled = 1;
	cfg->train = *recipe;
	cfg->train.epochs = ft->epochs;
	cfg->train.batch_size = ft->batch_size ? ft->batch_size : recipe->batch_size;
	cfg->train.adam.lr = ft->lr;
	cfg->train.adam.weight_decay = ft->has_weight_decay ? ft->weight_decay : recipe->adam.weight_decay;
	/* A short schedule at a small rate: no StepLR. */
	cfg->train.lr_step_size = 0;
	cfg->train.checkpoint_dir = NULL;
	cfg->train.resume = 0;
	cfg->train.hold_masks = 1;
	if (!ft->augment)
		iap_augment_cfg_none(&cfg->train.augment);
	cfg->best_only = ft->best_only;
	cfg->n_rates = ft->n_rates;
	cfg->rates = calloc((size_t)cfg->n_rates + 1, sizeof(*cfg->rates));
	if (!cfg->rates)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	memcpy(cfg->rates, ft->rates, (size_t)cfg->n_rates * sizeof(*cfg->rates));
	return IAP_OK;
}

void iap_finetune_cfg_free(struct iap_finetune_cfg *cfg)
{
	free(cfg->rates);
	memset(cfg, 0, sizeof(*cfg));
}

int iap_param_copy_take(struct iap_param_copy *c, const struct iap_graph *g, struct iap_error *err)
{
	int64_t at = 0;

	memset(c, 0, sizeof(*c));
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++)
			c->numel += iap_tensor_numel(&g->nodes[i].params[k].value);
	c->data = malloc(((size_t)c->numel + 1) * sizeof(float));
	if (!c->data)
		return iap_error_set(err, IAP_ENOMEM, "out of memory for a copy of %lld parameters",
				     (long long)c->numel);
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			const struct iap_tensor *v = &g->nodes[i].params[k].value;
			int64_t n = iap_tensor_numel(v);

			memcpy(c->data + at, v->data, (size_t)n * sizeof(float));
			at += n;
		}
	return IAP_OK;
}

void iap_param_copy_restore(const struct iap_param_copy *c, struct iap_graph *g)
{
	int64_t at = 0;

	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			struct iap_tensor *v = &g->nodes[i].params[k].value;
			int64_t n = iap_tensor_numel(v);

			memcpy(v->data, c->data + at, (size_t)n * sizeof(float));
			at += n;
		}
}

void iap_param_copy_free(struct iap_param_copy *c)
{
	free(c->data);
	memset(c, 0, sizeof(*c));
}

/*
 * 1 when g's masks are baked into its weights already: baking them again
 * changes nothing (every pruned unit's filter, bias and BatchNorm affine is
 * zero). before holds g's parameters.
 */
static int masks_baked(struct iap_graph *g, const struct iap_param_copy *before, struct iap_error *err)
{
	int64_t at = 0;

	if (iap_graph_bake_masks(g, err))
		return 0;
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			const struct iap_tensor *v = &g->nodes[i].params[k].value;
			int64_t n = iap_tensor_numel(v);

			if (memcmp(v->data, before->data + at, (size_t)n * sizeof(float)))
				return 0;
			at += n;
		}
	return 1;
}

int iap_finetune_masked(struct iap_graph *g, const struct iap_dataset *train, const struct iap_finetune_cfg *cfg,
			struct iap_error *err)
{
	struct iap_param_copy after = { 0 };
	int rc = iap_train(g, train, NULL, &cfg->train, NULL, err);

	iap_graph_set_training(g, 0);
	if (rc) {
		iap_error_prefix(err, "fine-tuning");
		return rc;
	}
	/* The promise the report makes, checked: no pruned unit came back. */
	rc = iap_param_copy_take(&after, g, err);
	if (!rc && !masks_baked(g, &after, err))
		rc = iap_error_set(err, IAP_ENUMERIC, "fine-tuning: a pruned unit's weights are no longer zero");
	iap_param_copy_free(&after);
	return rc;
}
