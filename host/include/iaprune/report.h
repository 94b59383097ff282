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
#include <stdio.h>

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
	/*
	 * Paired statistics against the baseline on the same images (set when
	 * has_stats): the accuracy's and the drop's 95 % bootstrap intervals,
	 * McNemar's exact test on the discordant images, per-class sensitivity
	 * and specificity (n_classes each), and the prediction per image.
	 */
	int has_stats;
	double acc_lo, acc_hi;
	double drop_lo, drop_hi;          /* of baseline − pruned accuracy */
	int64_t lost, gained;             /* right → wrong, wrong → right */
	double mcnemar_p;
	const double *sensitivity, *specificity;
	const int *pred;                  /* n_images predicted classes */
	const float *confidence;          /* n_images probabilities of the predicted class */
	/* Explanation preservation (set when has_expl): mean over the held-out images. */
	int has_expl;
	double expl_rho;                  /* Spearman's ρ of |R| pruned vs dense */
	double expl_topk;                 /* top-k overlap of |R| */
	/*
	 * Which configuration (attribution × sampler × policy) the row is of:
	 * the rows, fine-tuned rows and threshold of one configuration carry the
	 * same number (the producer's index of it), which the report compares
	 * instead of the three names.
	 */
	int config;
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
	int has_ci;                 /* lo, hi: 95 % bootstrap interval of the threshold */
	double lo, hi;
	int config;                 /* as iap_report_row's */
};

/* Forward latency of the dense and the compacted best model (median milliseconds per call). */
struct iap_report_latency {
	int has;
	int batch[2];               /* e.g. 1 and 16 */
	double dense_ms[2], compact_ms[2];
	int repeats;
};

/*
 * Heatmaps for report.html: images of the evaluation split explained by one
 * method on the dense model and on the pruned one, drawn side by side.
 */
struct iap_report_gallery_item {
	const float *image;         /* [channels][h][w], normalised as the model saw it */
	const float *dense_map;     /* [h][w] input relevance of the dense model */
	const float *pruned_map;    /* [h][w] of the pruned model */
	int label, dense_pred, pruned_pred;
	int64_t index;              /* in the evaluation split */
	/*
	 * The image as stored ([channels][native_h][native_w] in [0, 1]), or NULL:
	 * then the maps are drawn over image at the model's resolution. With it,
	 * the maps are resampled to the stored size and drawn over it.
	 */
	const float *native;
	int native_h, native_w;
};

struct iap_report_gallery {
	int channels, h, w;
	const char *method;         /* attribution that drew the maps */
	const char *pruned;         /* "lrp / random / global at 0.78" */
	int n;
	const struct iap_report_gallery_item *items;
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
	/* Optional (zero: absent). */
	int n_classes;
	const char *const *class_names;     /* n_classes, or NULL ("0", "1", ...) */
	int has_stats;                      /* the rows carry paired statistics */
	int n_boot;                         /* bootstrap resamples behind every interval */
	uint64_t boot_seed;
	double baseline_acc_lo, baseline_acc_hi;
	const double *baseline_sensitivity, *baseline_specificity;
	int64_t n_images;                   /* evaluation images (predictions.csv) */
	const int *labels;                  /* n_images true classes */
	const int *baseline_pred;
	const float *baseline_confidence;
	const char *ranking;                /* how the data-free baselines were ranked (a sentence) */
	const char *expl_method;            /* explanation preservation: method, images, k */
	const char *expl_config;            /* the configuration it was measured on */
	int expl_images;
	double expl_topk_frac;
	struct iap_report_latency latency;
	const struct iap_report_gallery *gallery;
};

/*
 * Write results.csv, results.json, report.md, curves.svg, report.html and,
 * when the rows carry predictions, predictions.csv into dir (created if
 * missing).
 */
int iap_report_write(const struct iap_report *r, const char *dir, struct iap_error *err);

/* Each file on its own (atomic), for callers that want only one. */
int iap_report_write_csv(const struct iap_report *r, const char *path, struct iap_error *err);
int iap_report_write_json(const struct iap_report *r, const char *path, struct iap_error *err);
int iap_report_write_markdown(const struct iap_report *r, const char *path, struct iap_error *err);
int iap_report_write_svg(const struct iap_report *r, const char *path, struct iap_error *err);
/* The curves as one <svg> element on fp (curves.svg holds exactly this). */
int iap_report_svg_stream(const struct iap_report *r, FILE *fp, struct iap_error *err);
/* predictions.csv: one line per model (baseline and each row) and image. */
int iap_report_write_predictions(const struct iap_report *r, const char *path, struct iap_error *err);
/* report.html: one self-contained page (inline CSS and SVG, images as PNG data: URIs). */
int iap_report_write_html(const struct iap_report *r, const char *path, struct iap_error *err);

/* mkdir -p; an existing directory is fine. */
int iap_mkdir_p(const char *path, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_REPORT_H */
