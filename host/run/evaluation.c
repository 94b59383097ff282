/*
 * Evaluation of the model as it is (masks included): plain metrics, and
 * metrics with per-image predictions and paired statistics against the
 * baseline for every report row. The baseline stage is here too.
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

/* small not NULL: the masks' compacted graph runs where compaction is exact, handed out in *small. */
int run_evaluate(struct run *r, struct iap_report_metrics *out, struct iap_metrics *full,
		 struct iap_graph **small)
{
	struct iap_metrics m = { 0 };
	int rc = small ? iap_evaluate_pruned(r->g, &r->split[r->eval_split], r->eval_batch, &m, small, r->err)
		       : iap_evaluate(r->g, &r->split[r->eval_split], r->eval_batch, &m, r->err);

	if (rc)
		return rc;
	out->accuracy = m.accuracy;
	out->balanced_accuracy = m.balanced_accuracy;
	out->macro_f1 = m.macro_f1;
	out->auroc = m.auroc_ok ? m.auroc : NAN;
	out->ece = m.ece;
	if (full)
		*full = m;
	else
		iap_metrics_free(&m);
	return IAP_OK;
}

/*
 * Evaluate with per-image predictions: metrics into out, the prediction and
 * its probability per image into pred and conf, per-class sensitivity and
 * specificity into sens and spec (all allocated here; NULL on failure).
 * With small (not NULL), a masked graph runs compacted where compaction
 * accepts its masks, as iap_evaluate_pruned does, and *small receives that
 * graph (or NULL) for the caller to free.
 */
int run_evaluate_paired(struct run *r, struct iap_report_metrics *out, int **pred, float **conf, double **sens,
			double **spec, struct iap_graph **small)
{
	struct iap_graph *cg = NULL;
	const struct iap_dataset *ds = &r->split[r->eval_split];
	int c = ds->info.n_classes, rc;
	float *probs = malloc((size_t)ds->count * (size_t)c * sizeof(float));
	int *labels = malloc((size_t)ds->count * sizeof(int));
	struct iap_metrics m = { 0 };

	*pred = malloc((size_t)ds->count * sizeof(int));
	*conf = malloc((size_t)ds->count * sizeof(float));
	*sens = malloc((size_t)c * sizeof(double));
	*spec = malloc((size_t)c * sizeof(double));
	if (!probs || !labels || !*pred || !*conf || !*sens || !*spec)
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory for %lld predictions", (long long)ds->count);
	else
		rc = IAP_OK;
	if (!rc && small) {
		struct iap_error cerr = { 0, "" };
		int masked = 0;

		*small = NULL;
		for (int gi = 0; gi < r->g->n_groups; gi++)
			masked |= r->g->groups[gi].mask != NULL;
		/* A refusal only means the masked graph runs (see eval_pruned.h). */
		if (masked && iap_graph_compact(r->g, 0, &cg, &cerr) != IAP_OK)
			cg = NULL;
	}
	rc = rc ? rc : iap_predict(cg ? cg : r->g, ds, r->eval_batch, probs, labels, r->err);
	rc = rc ? rc : iap_metrics_compute(&m, ds->count, c, labels, probs, r->err);
	if (!rc) {
		out->accuracy = m.accuracy;
		out->balanced_accuracy = m.balanced_accuracy;
		out->macro_f1 = m.macro_f1;
		out->auroc = m.auroc_ok ? m.auroc : NAN;
		out->ece = m.ece;
		memcpy(*sens, m.sensitivity, (size_t)c * sizeof(double));
		memcpy(*spec, m.specificity, (size_t)c * sizeof(double));
		iap_predict_argmax(probs, ds->count, c, *pred, *conf);
		if (!r->labels) {
			r->labels = labels;
			labels = NULL;
		}
	}
	iap_metrics_free(&m);
	free(probs);
	free(labels);
	if (small && !rc)
		*small = cg;
	else
		iap_graph_free(cg);
	if (rc) {
		free(*pred);
		free(*conf);
		free(*sens);
		free(*spec);
		*pred = NULL;
		*conf = NULL;
		*sens = *spec = NULL;
	}
	return rc;
}

/*
 * The row's metrics with its predictions and its paired statistics against
 * the baseline; small as evaluate_paired's.
 */
int run_evaluate_row(struct run *r, struct iap_report_row *row, struct iap_graph **small)
{
	int *pred;
	float *conf;
	double *sens, *spec;
	struct iap_paired p;
	int rc = run_evaluate_paired(r, &row->m, &pred, &conf, &sens, &spec, small);

	if (rc)
		return rc;
	row->pred = pred;
	row->confidence = conf;
	row->sensitivity = sens;
	row->specificity = spec;
	rc = iap_paired_compare(&r->bs, r->labels, r->base_pred, pred, &p, r->err);
	if (rc)
		return rc;
	row->has_stats = 1;
	row->acc_lo = p.acc_lo;
	row->acc_hi = p.acc_hi;
	row->drop_lo = p.drop_lo;
	row->drop_hi = p.drop_hi;
	row->lost = p.lost;
	row->gained = p.gained;
	row->mcnemar_p = p.p;
	return IAP_OK;
}

void run_row_free(struct iap_report_row *row)
{
	free((void *)row->pred);
	free((void *)row->confidence);
	free((void *)row->sensitivity);
	free((void *)row->specificity);
}

/* The baseline's metrics and predictions, and the bootstrap resamples (report.bootstrap, the run's seed). */
int run_stage_baseline(struct run *r)
{
	const struct iap_dataset *ds = &r->split[r->eval_split];
	double *correct;
	long n_boot = r->p->report.bootstrap;
	int rc = run_evaluate_paired(r, &r->baseline, &r->base_pred, &r->base_conf, &r->base_sens, &r->base_spec,
					       NULL);
	rc = rc ? rc : iap_bootstrap_init(&r->bs, ds->count, (int)n_boot, r->seed ^ 0xb0075ULL, r->err);
	if (rc)
		return rc;
	correct = malloc((size_t)ds->count * sizeof(double));
	if (!correct)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int64_t i = 0; i < ds->count; i++)
		correct[i] = r->base_pred[i] == r->labels[i];
	rc = iap_bootstrap_mean_ci(&r->bs, correct, &r->base_acc_lo, &r->base_acc_hi, r->err);
	free(correct);
	return rc;
}
