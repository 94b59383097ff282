/*
 * report.md's fine-tuning section (see finetune_md.h). The pruned accuracy
 * comes from the matching row of the main set, so the table shows what
 * fine-tuning bought at each configuration and rate.
 */
#include "config.h"

#include <math.h>
#include <string.h>

#include "finetune_md.h"

static const struct iap_report_row *plain_row(const struct iap_report *r, const struct iap_report_row *ft)
{
	for (int i = 0; i < r->n_rows; i++) {
		const struct iap_report_row *row = &r->rows[i];

		if (row->config == ft->config && fabs(row->rate - ft->rate) < 1e-9)
			return row;
	}
	return NULL;
}

static void value(FILE *f, double v, const char *fmt)
{
	if (isfinite(v))
		fprintf(f, fmt, v);
	else
		fputs("–", f);
}

void iap_report_md_finetuned(FILE *f, const struct iap_report *r)
{
	if (r->n_finetuned <= 0)
		return;
	fputs("\n## After fine-tuning\n\n", f);
	if (r->finetune)
		fprintf(f, "%s\n\n", r->finetune);
	fputs("Accuracy of each pruned model before and after fine-tuning, its change from the baseline in\n"
	      "points (positive numbers are gains), and its balanced accuracy before and after (a model that\n"
	      "collapsed to the majority class can lose accuracy while it learns the other classes again).\n\n"
	      "| attribution | sampler | policy | rate | accuracy, pruned | fine-tuned | change, pruned | "
	      "change, fine-tuned | balanced accuracy, pruned | fine-tuned |\n"
	      "|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n", f);
	for (int i = 0; i < r->n_finetuned; i++) {
		const struct iap_report_row *ft = &r->finetuned[i], *row = plain_row(r, ft);
		double before = row ? row->m.accuracy : NAN, bal = row ? row->m.balanced_accuracy : NAN;

		fprintf(f, "| %s | %s | %s | %.2f | ", ft->attribution, ft->sampler, ft->policy, ft->rate);
		value(f, before, "%.4f");
		fputs(" | ", f);
		value(f, ft->m.accuracy, "%.4f");
		fputs(" | ", f);
		value(f, 100.0 * (before - r->baseline.accuracy), "%+.1f");
		fputs(" | ", f);
		value(f, 100.0 * (ft->m.accuracy - r->baseline.accuracy), "%+.1f");
		fputs(" | ", f);
		value(f, bal, "%.4f");
		fputs(" | ", f);
		value(f, ft->m.balanced_accuracy, "%.4f");
		fputs(" |\n", f);
	}
}
