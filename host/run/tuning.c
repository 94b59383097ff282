/*
 * The fine-tuning stage (pruning.finetune): pruned models trained with
 * their masks held fixed, evaluated into a second set of rows.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "stages.h"

/*
 * pruning.finetune: every chosen configuration at every fine-tuning rate is
 * masked, trained with its masks held fixed (host/run/finetune.c) and
 * evaluated into the second set of rows; the trained weights are put back
 * after each, so every fine-tuned model starts from the same model.
 */
int run_stage_finetune(struct run *r)
{
	struct iap_finetune_cfg ft;
	struct iap_train_cfg recipe;
	struct iap_param_copy dense = { 0 };
	float mean[3] = { 0 }, std[3] = { 1, 1, 1 };
	const struct config *best = run_best_config(r);
	int rc, jobs, done = 0;

	rc = run_train_cfg(r, &recipe, mean, std);
	rc = rc ? rc : iap_finetune_cfg_read(r->p, &recipe, &ft, r->err);
	if (rc || !ft.enabled)
		goto out;
	/* One seed for all: the fine-tuned models see the same batches, so they compare pairwise. */
	ft.train.seed = r->seed ^ 0xF17E7ULL;
	jobs = (ft.best_only ? 1 : r->n_cfg) * ft.n_rates;
	r->ft_rows = calloc((size_t)jobs + 1, sizeof(*r->ft_rows));
	if (!r->ft_rows) {
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	snprintf(r->ft_note, sizeof(r->ft_note),
		 "Each pruned model was fine-tuned for %d epoch(s) on the train split (Adam, constant lr %g, batch %d, "
		 "weight decay %g, augmentation %s) with its masks held fixed: the pruned units' weights stay exactly "
		 "zero. Configurations: %s.",
		 ft.train.epochs, ft.train.adam.lr, ft.train.batch_size, ft.train.adam.weight_decay,
		 ft.train.augment.crop || ft.train.augment.hflip_p > 0 || ft.train.augment.vflip_p > 0 ||
				 ft.train.augment.rotate_deg > 0 || ft.train.augment.brightness > 0 ||
				 ft.train.augment.contrast > 0 || ft.train.augment.saturation > 0 ? "on" : "off",
		 ft.best_only ? "the best one" : "all");
	run_say(r, IAP_LOG_STAGE, "fine-tuning: %d pruned model(s), %d epoch(s) each", jobs, ft.train.epochs);
	rc = iap_param_copy_take(&dense, r->g, r->err);
	for (int i = 0; !rc && i < r->n_cfg; i++) {
		const struct config *c = &r->cfg[i];

		if (ft.best_only && c != best)
			continue;
		for (int k = 0; !rc && k < ft.n_rates; k++) {
			struct iap_report_row *plain = run_find_row(r, c, ft.rates[k]), *row = &r->ft_rows[r->n_ft_rows];

			/* A rate only fine-tuning asks for gets its plain row too, for the comparison. */
			if (!plain && (rc = run_add_row(r, c, ft.rates[k], &plain)))
				break;
			*row = *plain;
			/* Its own predictions and paired statistics, not the plain row's. */
			row->has_stats = row->has_expl = 0;
			row->pred = NULL;
			row->confidence = NULL;
			row->sensitivity = row->specificity = NULL;
			rc = run_apply_rate(r, c, ft.rates[k]);
			rc = rc ? rc : iap_finetune_masked(r->g, &r->split[IAP_SPLIT_TRAIN], &ft, r->err);
			rc = rc ? rc : run_evaluate_row(r, row, NULL);
			iap_param_copy_restore(&dense, r->g);
			run_clear_masks(r);
			if (rc) {
				iap_error_prefix(r->err, "%s / %s at rate %.2f", row->attribution, row->sampler, row->rate);
				break;
			}
			run_say(r, IAP_LOG_INFO, "%s / %s at %.2f: accuracy %.4f pruned, %.4f fine-tuned", row->attribution,
			    row->sampler, row->rate, plain->m.accuracy, row->m.accuracy);
			r->n_ft_rows++;
			run_progress(r, "fine-tuned models", ++done, jobs);
		}
	}
out:
	iap_param_copy_free(&dense);
	iap_finetune_cfg_free(&ft);
	return rc;
}
