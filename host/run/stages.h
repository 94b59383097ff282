/*
 * The runner's stages (the files of host/run/): the run's state, shared by every
 * stage, and each stage's entry point. Internal to the host library.
 */
#ifndef IAP_RUN_STAGES_H
#define IAP_RUN_STAGES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <iaprune/atomic.h>
#include <iaprune/attribute.h>
#include <iaprune/compact.h>
#include <iaprune/generation.h>
#include <iaprune/eval_pruned.h>
#include <iaprune/heatmap.h>
#include <iaprune/image.h>
#include <iaprune/lock.h>
#include <iaprune/metrics.h>
#include <iaprune/model.h>
#include <iaprune/registry.h>
#include <iaprune/report.h>
#include <iaprune/runner.h>
#include <iaprune/safetensors.h>
#include <iaprune/train.h>
#include <iaprune/weights.h>
#include <iaprune/predict.h>
#include <iaprune/stats.h>
#include "native.h"
#include "preserve.h"
#include "ranking.h"
#include "finetune.h"
#include "iterative.h"
#include "outdir.h"
#include "plan.h"
#include "score_cache.h"
#include "run_internal.h"

#define MAX_CONFIGS 64
#define SCORE_BATCH 8

struct sampling {
	const struct iap_plugin *plugin;
	const struct iap_opts *opts;
	char name[64];
	int per_class;
	int64_t *idx;
	int64_t n;
};

struct attribution {
	const struct iap_plugin *plugin;
	const struct iap_opts *opts;
	char name[64];
};

/* One attribution × sampler: its unit scores. */
struct config {
	struct attribution *attr;
	struct sampling *smp;       /* NULL for data-free criteria */
	float **scores;             /* [n_groups][n_units] */
	double threshold;
	double th_lo, th_hi;        /* its bootstrap interval (NaN without) */
	int index;                  /* its place in run.cfg: the report's configuration key */
	uint64_t key;               /* its scores' key (score cache, scoring job) */
};

struct run {
	const struct iap_pipeline *p;
	const struct iap_run_opts *o;
	struct iap_error *err;
	uint64_t seed;
	const char *out;
	char path[4096];
	int lock_fd;                /* the output folder's lock (outdir.h) */
	const char *report_dir;     /* where report files go: the report generation being staged */

	const struct iap_plugin *ds_plugin;
	const struct iap_opts *ds_opts;
	struct iap_dataset split[IAP_SPLIT_COUNT];
	int split_open[IAP_SPLIT_COUNT];

	const struct iap_plugin *model_plugin;
	const struct iap_opts *model_opts;
	struct iap_graph *g;
	int64_t params, macs;
	int eval_split, eval_batch;
	struct iap_report_metrics baseline;

	int n_smp, n_attr, n_cfg;
	struct sampling smp[16];
	struct attribution attr[16];
	struct config cfg[MAX_CONFIGS];

	const struct iap_plugin *policy;
	const struct iap_opts *policy_opts;
	double max_layer_rate, tolerance;
	int min_units;
	uint8_t *ignore;

	struct iap_report_row *rows;
	int n_rows, cap_rows;

	int iterations;             /* pruning.iterations: steps to each rate, rescoring between them */
	struct iap_report_row *ft_rows;   /* pruning.finetune: the fine-tuned set */
	int n_ft_rows;
	char ft_note[512];
	/* Paired statistics: the baseline's answer per image and the resamples every row shares. */
	struct iap_bootstrap bs;
	int *labels, *base_pred;
	float *base_conf;
	double *base_sens, *base_spec, base_acc_lo, base_acc_hi;
	int ranking;                /* pruning.baseline_ranking (enum iap_ranking) */
	/* Work spread over MPI ranks (iaprune/dist.h): only rank 0 writes anything. */
	int rank;
	struct iap_dist *dist;      /* run's opts' dist for IAP_RUN_ALL, else NULL */
	struct iap_journal *journal; /* rank 0: the finished items (journal.h) */
};

/*
 * The work items of the scoring and sweep stages, each with a stable key
 * (what its result depends on), run by a loop over the items: a scoring
 * job is one attribution × sampler, keyed like the score cache (weights,
 * method, options, plugin binary, samples' content); an evaluation item is
 * one configuration at one rate, keyed by its scores' key, the policy with
 * its options, the caps, pruning.iterations and the rate.
 */
struct run_score_job {
	int config;                 /* index into run.cfg */
	uint64_t key;
};

struct run_eval_item {
	int config;
	double rate;
	uint64_t key;
};

/* output.c: messages, progress and output paths for every stage */
__attribute__((format(printf, 3, 4)))
void run_say(const struct run *r, enum iap_log_level level, const char *fmt, ...);
void run_progress(const struct run *r, const char *stage, int64_t done, int64_t total);
const char *run_outpath(struct run *r, const char *name);

/* data.c */
int run_open_split(struct run *r, enum iap_split s);
int run_load_batch(struct run *r, const struct iap_dataset *ds, const int64_t *idx, int n,
		   struct iap_tensor *x, int *labels);

/* model.c */
int run_save_model_meta(struct run *r, struct iap_graph *g, const char *path, const char *extra_key,
			const char *extra_value, const char *extra2_key, const char *extra2_value);
int run_save_model(struct run *r, struct iap_graph *g, const char *path, const char *extra_key,
		   const char *extra_value);
int run_train_cfg(struct run *r, struct iap_train_cfg *out, float *mean, float *std);
int run_stage_model(struct run *r);

/* evaluation.c */
int run_evaluate(struct run *r, struct iap_report_metrics *out, struct iap_metrics *full,
		 struct iap_graph **small);
int run_evaluate_paired(struct run *r, struct iap_report_metrics *out, int **pred, float **conf, double **sens,
			double **spec, struct iap_graph **small);
int run_evaluate_row(struct run *r, struct iap_report_row *row, struct iap_graph **small);
void run_row_free(struct iap_report_row *row);
int run_stage_baseline(struct run *r);

/* sampling.c */
int run_stage_sampling(struct run *r);

/* scoring.c */
int run_score_units(struct run *r, const struct config *c, float *const *scores);
int run_stage_scoring(struct run *r);

/* sweep.c */
int run_policy_prepare(struct run *r);
int run_apply_rate(struct run *r, const struct config *c, double rate);
void run_clear_masks(struct run *r);
int run_add_row(struct run *r, const struct config *c, double rate, struct iap_report_row **out);
int run_rate_list(struct run *r, double **out, int *n_out, double **table, int *n_table);
int run_stage_sweep(struct run *r, const double *rates, int n_rates);
const struct config *run_best_config(const struct run *r);
struct iap_report_row *run_find_row(struct run *r, const struct config *c, double rate);

/* heatmaps.c */
int run_write_heatmaps(struct run *r, int per_class);

/* report_stage.c */
int run_save_pruned(struct run *r, const struct config *best, double rate, const char *masked_path,
		    const char *compact_path);
int run_stage_report(struct run *r, const double *table, int n_table, int per_class_maps);

/* tuning.c */
int run_stage_finetune(struct run *r);

#endif /* IAP_RUN_STAGES_H */
