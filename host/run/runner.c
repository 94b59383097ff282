/*
 * The experiment runner (see host/include/iaprune/runner.h): orchestration
 * only. Each stage is a file of its own with one entry point (stages.h):
 *
 *   data      open the dataset's splits                       data.c
 *   model     load the weights, or train with the recipe       model.c
 *   baseline  metrics of the unpruned model                    evaluation.c
 *   sampling  k per class from the train split, per sampler    sampling.c
 *   scoring   unit scores per attribution x sampler (cached)   scoring.c
 *   sweep     every configuration x rate, lossless bisection   sweep.c
 *   finetune  pruned models trained with their masks fixed     tuning.c
 *   report    tables, curves, heatmaps, the best pruned model  report_stage.c
 *
 * Everything the user sees goes through the log callback; files are written
 * atomically, so a failed run leaves an earlier report intact.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "items.h"
#include "stages.h"

static int run_experiment(struct run *r)
{
	double *rates = NULL, *table = NULL;
	int n_rates = 0, n_table = 0, rc;

	rc = run_stage_sampling(r);
	rc = rc ? rc : run_stage_scoring(r);
	rc = rc ? rc : run_policy_prepare(r);
	rc = rc ? rc : run_rate_list(r, &rates, &n_rates, &table, &n_table);
	if (rc)
		goto out;
	rc = run_stage_sweep(r, rates, n_rates);
	if (rc || r->rank != 0)
		goto out;
	rc = run_stage_finetune(r);
	rc = rc ? rc : run_stage_report(r, table, n_table, r->p->report.heatmaps);
	if (!rc)
		run_say(r, IAP_LOG_STAGE, "report written to %s/report", r->out);
out:
	free(rates);
	free(table);
	return rc;
}

static int run_prune(struct run *r)
{
	const struct config *c = NULL;
	char path[4096];
	int rc;

	rc = run_stage_sampling(r);
	rc = rc ? rc : run_stage_scoring(r);
	rc = rc ? rc : run_policy_prepare(r);
	if (rc)
		return rc;
	for (int i = 0; i < r->n_cfg && !c; i++) {
		const struct config *x = &r->cfg[i];

		if (r->o->prune_attribution && strcmp(x->attr->name, r->o->prune_attribution) &&
		    strcmp(x->attr->plugin->desc->name, r->o->prune_attribution))
			continue;
		if (x->smp && r->o->prune_sampler && strcmp(x->smp->name, r->o->prune_sampler))
			continue;
		c = x;
	}
	if (!c)
		return iap_error_set(r->err, IAP_EINVAL, "no attribution '%s' with sampler '%s' in the pipeline",
				     r->o->prune_attribution ? r->o->prune_attribution : "(any)",
				     r->o->prune_sampler ? r->o->prune_sampler : "(any)");
	snprintf(path, sizeof(path), "%s", r->o->out_path ? r->o->out_path : run_outpath(r, "pruned.safetensors"));
	{
		char compact[4200];
		size_t len = strlen(path);

		if (len > 12 && !strcmp(path + len - 12, ".safetensors"))
			snprintf(compact, sizeof(compact), "%.*s-compact.safetensors", (int)(len - 12), path);
		else
			snprintf(compact, sizeof(compact), "%s-compact", path);
		rc = run_save_pruned(r, c, r->o->prune_rate, path, r->o->compact ? compact : NULL);
		if (!rc)
			run_say(r, IAP_LOG_STAGE, "pruned %.0f%% of units with %s / %s: %s%s%s", 100 * r->o->prune_rate,
			    c->attr->name, c->smp ? c->smp->name : "-", path, r->o->compact ? " and " : "",
			    r->o->compact ? compact : "");
	}
	return rc;
}

/* The output folder (locked, an interrupted run's leftovers removed) and the dataset's splits. */
static int run_open_data(struct run *r)
{
	const char *split = iap_split_name((enum iap_split)r->eval_split);
	int leftovers = 0, rc;

	/* The other ranks write nothing: no lock, no journal (rank 0 keeps both). */
	rc = r->rank ? IAP_OK : iap_outdir_prepare(r->out, &r->lock_fd, &leftovers, r->err);
	if (!rc && leftovers)
		run_say(r, IAP_LOG_INFO, "%s: removed %d unfinished file(s) of an interrupted run", r->out, leftovers);
	if (!rc && !r->rank)
		rc = iap_journal_open(&r->journal, r->out, r->err);
	for (int s = 0; !rc && s < IAP_SPLIT_COUNT; s++)
		rc = run_open_split(r, (enum iap_split)s);
	if (rc)
		return rc;
	if (r->split[IAP_SPLIT_TRAIN].count == 0)
		return iap_error_set(r->err, IAP_EINVAL, "dataset '%s': the train split is empty", r->ds_plugin->desc->name);
	if (r->split[r->eval_split].count == 0)
		return iap_error_set(r->err, IAP_EINVAL, "dataset '%s': the %s split (evaluation.split) is empty",
				     r->ds_plugin->desc->name, split);
	run_say(r, IAP_LOG_STAGE, "data: %s, %" PRId64 " train / %" PRId64 " val / %" PRId64 " test images, %d classes",
		r->ds_plugin->desc->name, r->split[0].count, r->split[1].count, r->split[2].count,
		r->split[0].info.n_classes);
	return IAP_OK;
}

/* IAP_RUN_EVAL: the model's metrics into <output>/metrics.json, and as text for the log. */
static int run_eval_mode(struct run *r)
{
	struct iap_error *err = r->err;
	struct iap_metrics m = { 0 };
	struct iap_report_metrics rm;
	char *json = NULL;
	int rc;

	rc = run_evaluate(r, &rm, &m, NULL);
	if (!rc)
		rc = iap_metrics_json_string(&m, r->split[r->eval_split].info.class_names, &json, err);
	if (!rc) {
		FILE *fp;
		struct iap_atomic_file af;

		rc = iap_atomic_open(&af, run_outpath(r, "metrics.json"), err);
		if (!rc) {
			fp = af.fp;
			fputs(json, fp);
			rc = iap_atomic_commit(&af, err);
		}
		if (!rc && r->o->log) {
			char *text = NULL;
			size_t len = 0;
			FILE *mem = open_memstream(&text, &len);

			if (mem) {
				iap_metrics_write_text(&m, r->split[r->eval_split].info.class_names, mem, err);
				fclose(mem);
				run_say(r, IAP_LOG_INFO, "%s", text);
				free(text);
			}
		}
	}
	free(json);
	iap_metrics_free(&m);
	return rc;
}

/* Everything the run holds: scores, samples, splits, the model, the rows, the lock. */
static void run_free(struct run *r)
{
	for (int i = 0; i < r->n_cfg; i++) {
		for (int gi = 0; r->cfg[i].scores && gi < r->g->n_groups; gi++)
			free(r->cfg[i].scores[gi]);
		free(r->cfg[i].scores);
	}
	for (int i = 0; i < r->n_smp; i++)
		free(r->smp[i].idx);
	for (int s = 0; s < IAP_SPLIT_COUNT; s++)
		if (r->split_open[s])
			r->split[s].ops->close(r->split[s].state);
	iap_graph_free(r->g);
	free(r->ignore);
	for (int i = 0; i < r->n_rows; i++)
		run_row_free(&r->rows[i]);
	free(r->rows);
	for (int i = 0; r->ft_rows && i < r->n_ft_rows; i++)
		run_row_free(&r->ft_rows[i]);
	free(r->ft_rows);
	iap_journal_close(r->journal);
	iap_dir_unlock(r->lock_fd);
	iap_bootstrap_free(&r->bs);
	free(r->labels);
	free(r->base_pred);
	free(r->base_conf);
	free(r->base_sens);
	free(r->base_spec);
	free(r);
}

int iap_run(const struct iap_pipeline *p, const struct iap_run_opts *o, struct iap_error *err)
{
	struct run *r = calloc(1, sizeof(*r));
	int rc;

	if (!r)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	/* Only a full run is spread over ranks; train, eval and prune run on rank 0 alone. */
	if (o->mode == IAP_RUN_ALL) {
		r->dist = o->dist;
		r->rank = iap_dist_rank(o->dist);
	} else if (iap_dist_rank(o->dist) != 0) {
		free(r);
		return IAP_OK;
	}
	r->p = p;
	r->lock_fd = -1;
	r->o = o;
	r->err = err;
	r->seed = p->seed;
	r->out = p->output;
	r->eval_split = p->evaluation.split;
	r->eval_batch = p->evaluation.batch_size;
	r->ds_plugin = p->dataset.plugin;
	r->ds_opts = p->dataset.opts;
	rc = run_open_data(r);
	rc = rc ? rc : run_stage_model(r);
	if (rc || o->mode == IAP_RUN_TRAIN)
		goto out;
	if (o->mode == IAP_RUN_EVAL) {
		rc = run_eval_mode(r);
		goto out;
	}
	run_say(r, IAP_LOG_STAGE, "baseline on the %s split", iap_split_name(r->eval_split));
	rc = run_stage_baseline(r);
	if (rc)
		goto out;
	run_say(r, IAP_LOG_INFO, "baseline accuracy %.4f, balanced accuracy %.4f", r->baseline.accuracy,
	    r->baseline.balanced_accuracy);
	rc = o->mode == IAP_RUN_PRUNE ? run_prune(r) : run_experiment(r);
out:
	run_free(r);
	return rc;
}
