/*
 * Fine-tuning after pruning (pipeline key pruning.finetune): what to
 * fine-tune and how, read from the pipeline, and a copy of a model's
 * parameters so each pruned model starts from the same trained weights.
 * Internal to libiaprune (the runner uses it; tests call it directly).
 */
#ifndef IAP_RUN_FINETUNE_H
#define IAP_RUN_FINETUNE_H

#include <stdint.h>

#include <iaprune/graph.h>
#include <iaprune/pipeline.h>
#include <iaprune/train.h>

struct iap_finetune_cfg {
	int enabled;                  /* pruning.finetune is present */
	struct iap_train_cfg train;   /* the recipe: hold_masks on, constant rate, no checkpoints */
	double *rates;                /* owned; pruning.finetune.rates, else pruning.rates */
	int n_rates;
	int best_only;                /* configurations: best */
};

/*
 * pruning.finetune of the typed pipeline p, as a recipe. recipe is model.train's (batch size,
 * weight decay, class weights, augmentation), which batch_size,
 * weight_decay and augment override; epochs and lr are the section's own,
 * the rate stays constant (no StepLR) and nothing is checkpointed. Absent
 * section: cfg->enabled = 0. Free with iap_finetune_cfg_free.
 */
int iap_finetune_cfg_read(const struct iap_pipeline *p, const struct iap_train_cfg *recipe,
			  struct iap_finetune_cfg *cfg, struct iap_error *err);
void iap_finetune_cfg_free(struct iap_finetune_cfg *cfg);

/* Every parameter and buffer of a graph, in node order. */
struct iap_param_copy {
	int64_t numel;
	float *data;
};

int iap_param_copy_take(struct iap_param_copy *c, const struct iap_graph *g, struct iap_error *err);
/* Put the copy back into g (the graph it was taken from). */
void iap_param_copy_restore(const struct iap_param_copy *c, struct iap_graph *g);
void iap_param_copy_free(struct iap_param_copy *c);

/*
 * Train g, whose masks are set, on train with cfg's recipe and the masks
 * held fixed (iap_train_cfg.hold_masks), then leave it in evaluation mode.
 * Checks afterwards that every pruned unit's weights are still exactly zero
 * (IAP_ENUMERIC otherwise).
 */
int iap_finetune_masked(struct iap_graph *g, const struct iap_dataset *train, const struct iap_finetune_cfg *cfg,
			struct iap_error *err);

#endif
