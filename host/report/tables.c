/*
 * The Markdown tables of report.md that carry the statistics: Table 1 (drop
 * with its paired interval and the parameters / MACs removed), the paper's
 * averages by method and by sampler, per-row statistics at the paper's rates
 * (per-class sensitivity and specificity, McNemar), explanation preservation
 * and latency. Each section is skipped when the report lacks its data, so
 * a report built from point estimates alone still reads as before.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* A fraction in points, with what rounds to zero printed as 0.0 (not "-0.0"). */
static double points(double v)
{
	v *= 100.0;
	return fabs(v) < 0.05 ? 0.0 : v;
}

/* "1.3 [−1.9, 4.5]" in points, or just "1.3" without an interval. */
static void drop_cell(FILE *f, double drop, int has_ci, double lo, double hi)
{
	if (!isfinite(drop)) {
		fputs("n/a", f);
		return;
	}
	fprintf(f, "%.1f", points(drop));
	if (has_ci && isfinite(lo) && isfinite(hi))
		fprintf(f, " [%.1f, %.1f]", points(lo), points(hi));
}

static void class_name(const struct iap_report *r, int k, char *buf, size_t len)
{
	if (r->class_names && r->class_names[k])
		snprintf(buf, len, "%s", r->class_names[k]);
	else
		snprintf(buf, len, "%d", k);
}

void iap_report_md_baseline_stats(const struct iap_report *r, FILE *f)
{
	if (!r->has_stats)
		return;
	fprintf(f, "\nAccuracy 95 %% interval: [%.4f, %.4f] (bootstrap over the %lld evaluation images, %d resamples, "
		   "seed %llu).\n", r->baseline_acc_lo, r->baseline_acc_hi, (long long)r->n_images, r->n_boot,
		(unsigned long long)r->boot_seed);
	if (r->baseline_sensitivity && r->baseline_specificity && r->n_classes > 0) {
		fputs("\n| class | sensitivity | specificity |\n|---|---:|---:|\n", f);
		for (int k = 0; k < r->n_classes; k++) {
			char name[64];

			class_name(r, k, name, sizeof(name));
			fprintf(f, "| %s | %.4f | %.4f |\n", name, r->baseline_sensitivity[k], r->baseline_specificity[k]);
		}
	}
}

void iap_report_md_table1(const struct iap_report *r, FILE *f, const int *first, int n_cfg)
{
	fputs("\n## Table 1: accuracy drop from the baseline (points), by pruning rate\n\n", f);
	fputs("Drop = baseline accuracy − pruned accuracy, in points (negative: a gain)", f);
	if (r->has_stats)
		fprintf(f, ", with its 95 %% paired bootstrap interval over the %lld evaluation images (%d resamples)",
			(long long)r->n_images, r->n_boot);
	fputs("; after the · the parameters / multiply-accumulates removed. The last column is the largest\n"
	      "rate whose drop stays within the tolerance (refined to 0.01)", f);
	if (r->has_stats)
		fputs(", with the bootstrap interval of that threshold (the same rule on every resample, so its ends\n"
		      "are evaluated rates and the upper one cannot pass the largest rate evaluated)", f);
	fputs(".\n\n| attribution | sampler | policy |", f);
	for (int j = 0; j < r->n_table_rates; j++)
		fprintf(f, " %.2f |", r->table_rates[j]);
	fputs(" lossless up to |\n|---|---|---|", f);
	for (int j = 0; j < r->n_table_rates; j++)
		fputs("---:|", f);
	fputs("---:|\n", f);
	for (int c = 0; c < n_cfg; c++) {
		const struct iap_report_row *cfg = &r->rows[first[c]];
		const struct iap_report_threshold *t = iap_report_threshold_of(r, cfg);

		fprintf(f, "| %s | %s | %s |", cfg->attribution, cfg->sampler, cfg->policy);
		for (int j = 0; j < r->n_table_rates; j++) {
			const struct iap_report_row *row = iap_report_find_row(r, cfg, r->table_rates[j]);

			fputc(' ', f);
			if (row) {
				drop_cell(f, r->baseline.accuracy - row->m.accuracy, row->has_stats, row->drop_lo,
					  row->drop_hi);
				fprintf(f, " · %.0f%% / %.0f%%", 100.0 * row->params_removed, 100.0 * row->macs_removed);
			} else {
				fputs("–", f);
			}
			fputs(" |", f);
		}
		fputc(' ', f);
		iap_report_md_value(f, t ? t->rate : NAN, "%.2f");
		if (t && t->has_ci && isfinite(t->lo) && isfinite(t->hi))
			fprintf(f, " [%.2f, %.2f]", t->lo, t->hi);
		fputs(" |\n", f);
	}
}

/* Mean drop at rate over the configurations whose attribution (by_method) or sampler equals key. */
static double mean_drop(const struct iap_report *r, const int *first, int n_cfg, int by_method, const char *key,
			double rate, double *threshold)
{
	double s = 0, th = 0;
	int n = 0, nt = 0;

	for (int c = 0; c < n_cfg; c++) {
		const struct iap_report_row *cfg = &r->rows[first[c]], *row;
		const struct iap_report_threshold *t;

		if (strcmp(by_method ? cfg->attribution : cfg->sampler, key))
			continue;
		t = iap_report_threshold_of(r, cfg);
		if (t) {
			th += t->rate;
			nt++;
		}
		row = iap_report_find_row(r, cfg, rate);
		if (row && isfinite(row->m.accuracy)) {
			s += r->baseline.accuracy - row->m.accuracy;
			n++;
		}
	}
	*threshold = nt ? th / nt : NAN;
	return n ? s / n : NAN;
}

/* One summary table: rows are the distinct methods (or samplers), in first-seen order. */
static void summary_table(const struct iap_report *r, FILE *f, const int *first, int n_cfg, int by_method)
{
	const char **keys = calloc((size_t)n_cfg + 1, sizeof(*keys));
	int n_keys = 0;

	if (!keys)
		return;
	for (int c = 0; c < n_cfg; c++) {
		const struct iap_report_row *cfg = &r->rows[first[c]];
		const char *k = by_method ? cfg->attribution : cfg->sampler;
		int seen = 0;

		/* The data-free baselines have no sampler: they are not a sampler's average. */
		if (!by_method && !strcmp(k, "-"))
			continue;
		for (int i = 0; i < n_keys && !seen; i++)
			seen = !strcmp(keys[i], k);
		if (!seen)
			keys[n_keys++] = k;
	}
	fprintf(f, "\n| %s | configurations |", by_method ? "attribution" : "sampler");
	for (int j = 0; j < r->n_table_rates; j++)
		fprintf(f, " %.2f |", r->table_rates[j]);
	fputs(" mean lossless up to |\n|---|---:|", f);
	for (int j = 0; j < r->n_table_rates; j++)
		fputs("---:|", f);
	fputs("---:|\n", f);
	for (int i = 0; i < n_keys; i++) {
		double th = NAN;
		int count = 0;

		for (int c = 0; c < n_cfg; c++) {
			const struct iap_report_row *cfg = &r->rows[first[c]];

			count += !strcmp(by_method ? cfg->attribution : cfg->sampler, keys[i]);
		}
		fprintf(f, "| %s | %d |", keys[i], count);
		for (int j = 0; j < r->n_table_rates; j++) {
			fputc(' ', f);
			drop_cell(f, mean_drop(r, first, n_cfg, by_method, keys[i], r->table_rates[j], &th), 0, 0, 0);
			fputs(" |", f);
		}
		if (r->n_table_rates == 0)
			mean_drop(r, first, n_cfg, by_method, keys[i], -1, &th);
		fputc(' ', f);
		iap_report_md_value(f, th, "%.2f");
		fputs(" |\n", f);
	}
	free(keys);
}

void iap_report_md_summary(const struct iap_report *r, FILE *f, const int *first, int n_cfg)
{
	if (n_cfg == 0)
		return;
	fputs("\n## Averages (the paper's summary): mean drop (points) by method and by sampler\n\n"
	      "By method: over that method's samplers; by sampler: over the attribution methods that used it\n"
	      "(the data-free baselines have none).\n", f);
	summary_table(r, f, first, n_cfg, 1);
	summary_table(r, f, first, n_cfg, 0);
}

void iap_report_md_row_stats(const struct iap_report *r, FILE *f, const int *first, int n_cfg)
{
	if (!r->has_stats)
		return;
	fputs("\n## Statistics at the paper's rates\n\n"
	      "Accuracy with its 95 % bootstrap interval; lost / gained = test images the baseline classified\n"
	      "correctly and the pruned model not, and the reverse; McNemar = two-sided exact p-value on those\n"
	      "discordant images (small p: the pruned model's accuracy differs from the baseline's);\n"
	      "sensitivity / specificity per class (one-vs-rest).\n\n"
	      "| attribution | sampler | rate | accuracy [95 % CI] | lost / gained | McNemar p |", f);
	for (int k = 0; k < r->n_classes; k++) {
		char name[64];

		class_name(r, k, name, sizeof(name));
		fprintf(f, " %s sens / spec |", name);
	}
	fputs("\n|---|---|---:|---:|---:|---:|", f);
	for (int k = 0; k < r->n_classes; k++)
		fputs("---:|", f);
	fprintf(f, "\n| unpruned | – | 0.00 | %.4f [%.4f, %.4f] | – | – |", r->baseline.accuracy, r->baseline_acc_lo,
		r->baseline_acc_hi);
	for (int k = 0; k < r->n_classes; k++) {
		if (r->baseline_sensitivity && r->baseline_specificity)
			fprintf(f, " %.3f / %.3f |", r->baseline_sensitivity[k], r->baseline_specificity[k]);
		else
			fputs(" – |", f);
	}
	fputc('\n', f);
	for (int c = 0; c < n_cfg; c++) {
		const struct iap_report_row *cfg = &r->rows[first[c]];

		for (int j = 0; j < r->n_table_rates; j++) {
			const struct iap_report_row *row = iap_report_find_row(r, cfg, r->table_rates[j]);

			if (!row || !row->has_stats)
				continue;
			fprintf(f, "| %s | %s | %.2f | %.4f [%.4f, %.4f] | %lld / %lld | ", row->attribution, row->sampler,
				row->rate, row->m.accuracy, row->acc_lo, row->acc_hi, (long long)row->lost,
				(long long)row->gained);
			iap_report_md_value(f, row->mcnemar_p, row->mcnemar_p < 0.001 ? "%.1e" : "%.3f");
			fputs(" |", f);
			for (int k = 0; k < r->n_classes; k++) {
				if (row->sensitivity && row->specificity)
					fprintf(f, " %.3f / %.3f |", row->sensitivity[k], row->specificity[k]);
				else
					fputs(" – |", f);
			}
			fputc('\n', f);
		}
	}
}

void iap_report_md_explanation(const struct iap_report *r, FILE *f)
{
	int any = 0;

	for (int i = 0; i < r->n_rows && !any; i++)
		any = r->rows[i].has_expl;
	if (!any || !r->expl_method)
		return;
	fprintf(f, "\n## Explanation preservation\n\n"
		   "Input relevance maps (%s) of the pruned model against the dense model's on the same %d held-out\n"
		   "images of the evaluation split, for %s: Spearman's rank correlation of |R| and the overlap of the\n"
		   "top %.0f %% most relevant pixels, averaged over the images (1 = the same explanation).\n\n"
		   "| rate | Spearman ρ | top-%.0f %% overlap | accuracy drop (points) |\n|---:|---:|---:|---:|\n",
		r->expl_method, r->expl_images, r->expl_config ? r->expl_config : "the best configuration",
		100.0 * r->expl_topk_frac, 100.0 * r->expl_topk_frac);
	/* Every measured rate (the paper's and the threshold), in rate order. */
	for (double last = -1;;) {
		const struct iap_report_row *next = NULL;

		for (int i = 0; i < r->n_rows; i++) {
			const struct iap_report_row *row = &r->rows[i];

			if (row->has_expl && row->rate > last + 1e-9 && (!next || row->rate < next->rate))
				next = row;
		}
		if (!next)
			break;
		fprintf(f, "| %.2f | %.3f | %.3f | ", next->rate, next->expl_rho, next->expl_topk);
		drop_cell(f, r->baseline.accuracy - next->m.accuracy, next->has_stats, next->drop_lo, next->drop_hi);
		fputs(" |\n", f);
		last = next->rate;
	}
}

void iap_report_md_latency(const struct iap_report *r, FILE *f)
{
	const struct iap_report_latency *l = &r->latency;

	if (!l->has)
		return;
	fprintf(f, "\n## Latency of the best pruned model\n\n"
		   "Forward pass of the dense model and of the compacted pruned model (physically smaller layers),\n"
		   "median of %d timed calls after one warm-up, milliseconds per call, on this machine.\n\n"
		   "| batch | dense (ms) | compacted (ms) | speed-up |\n|---:|---:|---:|---:|\n", l->repeats);
	for (int k = 0; k < 2; k++)
		fprintf(f, "| %d | %.3f | %.3f | %.2f× |\n", l->batch[k], l->dense_ms[k], l->compact_ms[k],
			l->compact_ms[k] > 0 ? l->dense_ms[k] / l->compact_ms[k] : NAN);
}
