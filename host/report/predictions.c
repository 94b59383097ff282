/*
 * predictions.csv: what every model said about every evaluation image, so
 * any paired test (McNemar, a bootstrap, per-class counts) can be redone
 * outside iaprune. Long format, one line per model and image:
 *
 *   row,sampler,attribution,policy,rate,image,label,prediction,confidence,correct
 *
 * row is "baseline" for the unpruned model, else the 0-based data line of
 * results.csv; image is the index in the evaluation split; confidence the
 * softmax probability of the predicted class.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include <iaprune/atomic.h>
#include <iaprune/report.h>

#include "internal.h"

static void lines(FILE *f, const struct iap_report *r, const char *row, const char *sampler, const char *attr,
		  const char *policy, double rate, const int *pred, const float *conf)
{
	for (int64_t i = 0; i < r->n_images; i++) {
		fputs(row, f);
		fputc(',', f);
		iap_report_csv_field(f, sampler);
		fputc(',', f);
		iap_report_csv_field(f, attr);
		fputc(',', f);
		iap_report_csv_field(f, policy);
		fprintf(f, ",%.4g,%lld,%d,%d,", rate, (long long)i, r->labels[i], pred[i]);
		if (conf)
			fprintf(f, "%.6g", (double)conf[i]);
		fprintf(f, ",%d\n", pred[i] == r->labels[i]);
	}
}

int iap_report_write_predictions(const struct iap_report *r, const char *path, struct iap_error *err)
{
	struct iap_atomic_file af;
	char id[32];
	int rc;

	if (!r->labels || !r->baseline_pred || r->n_images < 1)
		return iap_error_set(err, IAP_EINVAL, "%s: the report has no per-image predictions", path);
	rc = iap_atomic_open(&af, path, err);
	if (rc)
		return rc;
	fputs("row,sampler,attribution,policy,rate,image,label,prediction,confidence,correct\n", af.fp);
	lines(af.fp, r, "baseline", "-", "unpruned", "-", 0.0, r->baseline_pred, r->baseline_confidence);
	for (int k = 0; k < r->n_rows; k++) {
		const struct iap_report_row *row = &r->rows[k];

		if (!row->pred)
			continue;
		snprintf(id, sizeof(id), "%d", k);
		lines(af.fp, r, id, row->sampler, row->attribution, row->policy, row->rate, row->pred, row->confidence);
	}
	if (ferror(af.fp)) {
		iap_atomic_abort(&af);
		return iap_error_set(err, IAP_EIO, "%s: write failed", path);
	}
	return iap_atomic_commit(&af, err);
}
