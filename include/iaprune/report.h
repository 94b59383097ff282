/*
 * iaprune — the experiment report: one row per sampler × attribution ×
 * policy × rate, written as results.csv, results.json, report.md (the paper's
 * Table 1 layout: accuracy drop from the baseline at each rate, the lossless
 * threshold per configuration, the best configuration, units pruned per
 * layer) and curves.svg (accuracy against pruning rate). Every file is
 * written atomically, so a failed run leaves the previous report intact.
 */
#ifndef IAPRUNE_REPORT_H
#define IAPRUNE_REPORT_H

#include <stdint.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The metrics of one evaluation (NaN where a metric is unavailable). */
struct iap_report_metrics {
	double accuracy;
	double balanced_accuracy;
	double macro_f1;
	double auroc;
	double ece;
};

struct iap_report_row {
	const char *sampler;        /* "-" for data-free criteria (magnitude, random) */
	const char *attribution;
	const char *policy;
	double rate;                /* requested fraction of units */
	double units_removed;       /* achieved fractions */
	double params_removed;
	double macs_removed;
	struct iap_report_metrics m;
};

/* Units pruned in one layer by the best configuration. */
struct iap_report_layer {
	const char *name;
	int units;
	int pruned;
};

/* A configuration's lossless threshold: the largest rate within tolerance. */
struct iap_report_threshold {
	const char *sampler;
	const char *attribution;
	const char *policy;
	double rate;                /* refined to 0.01; 0 when even the smallest rate fails */
};

struct iap_report {
	const char *title;                  /* pipeline name */
	const char *model;                  /* e.g. "vgg (depth 11, width 0.25)" */
	const char *dataset;                /* e.g. "medmnist data/breastmnist.npz, test split (156)" */
	int64_t params, macs;               /* of the unpruned model */
	double tolerance;                   /* accuracy drop that still counts as lossless */
	struct iap_report_metrics baseline;
	int n_rows;
	const struct iap_report_row *rows;
	int n_thresholds;
	const struct iap_report_threshold *thresholds;
	int n_table_rates;                  /* the columns of the Table 1 layout (e.g. 0.15 0.30 0.50 0.70) */
	const double *table_rates;
	int n_layers;                       /* per-layer table of the best configuration */
	const struct iap_report_layer *layers;
	const char *best;                   /* "lrp / clustering / global at 0.50" */
	const char *notes;                  /* free text appended (options, timings); may be NULL */
	/*
	 * The second set of rows: pruned models fine-tuned with their masks held
	 * fixed, each matching a row of rows by configuration and rate. In
	 * results.csv/json after the others, marked 1 / true in their finetuned
	 * column; report.md gives them a section of their own.
	 */
	int n_finetuned;
	const struct iap_report_row *finetuned;
	const char *finetune;               /* how they were fine-tuned, one sentence; may be NULL */
};

/* Write results.csv, results.json, report.md and curves.svg into dir (created if missing). */
int iap_report_write(const struct iap_report *r, const char *dir, struct iap_error *err);

/* Each file on its own (atomic), for callers that want only one. */
int iap_report_write_csv(const struct iap_report *r, const char *path, struct iap_error *err);
int iap_report_write_json(const struct iap_report *r, const char *path, struct iap_error *err);
int iap_report_write_markdown(const struct iap_report *r, const char *path, struct iap_error *err);
int iap_report_write_svg(const struct iap_report *r, const char *path, struct iap_error *err);

/* mkdir -p; an existing directory is fine. */
int iap_mkdir_p(const char *path, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_REPORT_H */
