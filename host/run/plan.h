/* Will a run fit in memory? Checked before the model is built (library-internal; see plan.c). */
#ifndef IAP_CORE_RUN_PLAN_H
#define IAP_CORE_RUN_PLAN_H

#include <iaprune/error.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

struct iap_run_plan {
	const struct iap_plugin *model;
	const struct iap_opts *model_opts;
	const struct iap_dataset *splits;   /* IAP_SPLIT_COUNT open splits */
	int train_batch;                    /* 0: no training (weights are given) */
	int eval_batch;
	int score_batch;                    /* samples per attribution batch */
};

/*
 * Build the model without parameter storage, estimate the run's peak (the
 * decoded dataset, plus the largest of training, evaluation and
 * attribution at their batch sizes; memory.h) and refuse it above the
 * limit with IAP_ELIMIT. *need gets the estimate.
 */
int iap_run_plan_memory(const struct iap_run_plan *p, uint64_t *need, struct iap_error *err);

#endif
