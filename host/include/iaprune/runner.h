/*
 * iaprune — the experiment runner: a validated pipeline (see
 * iaprune-pipeline(5)) executed end to end. Load or train the model,
 * evaluate the baseline, pick samples with every sampler, score the units
 * with every attribution method (cached on disk), prune at every rate with
 * the policy, evaluate each pruned model, find the lossless threshold, and
 * write the report, heatmaps and the best pruned model.
 */
#ifndef IAPRUNE_RUNNER_H
#define IAPRUNE_RUNNER_H

#include <stdarg.h>

#include <iaprune/pipeline.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

struct iap_dist;

#ifdef __cplusplus
extern "C" {
#endif

enum iap_run_mode {
	IAP_RUN_ALL = 0,    /* the whole experiment and its report */
	IAP_RUN_TRAIN,      /* train (or load) the model and save it; nothing else */
	IAP_RUN_EVAL,       /* the model's metrics on the evaluation split */
	IAP_RUN_PRUNE,      /* scores of one attribution × sampler, one rate: pruned weights */
};

enum iap_log_level { IAP_LOG_INFO = 0, IAP_LOG_WARN, IAP_LOG_STAGE };

struct iap_run_opts {
	enum iap_run_mode mode;
	/* Messages (stages, warnings) for the user; NULL: silent. */
	void (*log)(void *user, enum iap_log_level level, const char *fmt, va_list ap);
	void *log_user;
	/* Progress of long loops (training batches, evaluations); NULL: none. */
	void (*progress)(void *user, const char *stage, int64_t done, int64_t total);
	void *progress_user;
	/* IAP_RUN_PRUNE */
	double prune_rate;
	const char *prune_attribution;   /* name (or plugin name); NULL: the first */
	const char *prune_sampler;       /* NULL: the first; ignored by data-free criteria */
	int compact;                     /* write the compacted model too */
	const char *out_path;            /* pruned (masked) weights; NULL: <output>/pruned.safetensors */
	/*
	 * IAP_RUN_ALL: the scoring jobs and evaluation rows spread over the
	 * ranks of d (iaprune/dist.h; every rank calls iap_run, rank 0 alone
	 * writes the output folder); NULL: one process.
	 */
	struct iap_dist *dist;
};

/* Run a typed pipeline (iap_pipeline_load); it stays the caller's. */
int iap_run(const struct iap_pipeline *p, const struct iap_run_opts *o, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_RUNNER_H */
