/*
 * The experiment runner (see host/include/iaprune/runner.h): the paper's
 * experiment on the user's model and data. Stages, in order:
 *
 *   model     load the weights, or train with the pipeline's recipe
 *   baseline  metrics of the unpruned model on the evaluation split
 *   samples   k per class from the training split, one set per sampler
 *   scores    per-unit importance for every attribution × sampler (cached)
 *   prune     for every configuration and rate: mask → evaluate → row
 *   lossless  the largest rate within tolerance, refined by bisection
 *   report    tables, curves, heatmaps, the best pruned model
 *
 * Everything the user sees goes through the log callback; files are written
 * atomically, so a failed run leaves an earlier report intact.
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

#include <iaprune/atomic.h>
#include <iaprune/attribute.h>
#include <iaprune/compact.h>
#include <iaprune/generation.h>
#include <iaprune/eval_pruned.h>
#include <iaprune/explain.h>
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
};

/* ---- messages ---------------------------------------------------------------------- */

__attribute__((format(printf, 3, 4)))
static void say(const struct run *r, enum iap_log_level level, const char *fmt, ...)
{
	va_list ap;

	if (!r->o->log)
		return;
	va_start(ap, fmt);
	r->o->log(r->o->log_user, level, fmt, ap);
	va_end(ap);
}

static void progress(const struct run *r, const char *stage, int64_t done, int64_t total)
{
	if (r->o->progress)
		r->o->progress(r->o->progress_user, stage, done, total);
}

static const char *outpath(struct run *r, const char *name)
{
	snprintf(r->path, sizeof(r->path), "%s/%s", r->out, name);
	return r->path;
}

/* ---- data --------------------------------------------------------------------------- */

static int open_split(struct run *r, enum iap_split s)
{
	struct iap_dataset *d = &r->split[s];
	int rc;

	if (r->split_open[s])
		return IAP_OK;
	memset(d, 0, sizeof(*d));
	d->split = s;
	rc = iap_call_dataset_open(r->ds_plugin, r->ds_opts, s, d, r->err);
	if (rc) {
		iap_error_prefix(r->err, "dataset '%s', %s split", r->ds_plugin->desc->name,
				 iap_split_name(s));
		return rc;
	}
	rc = d->ops->info(d->state, &d->info, r->err);
	if (rc) {
		d->ops->close(d->state);
		return rc;
	}
	d->count = d->ops->count(d->state);
	r->split_open[s] = 1;
	return IAP_OK;
}

/* Samples idx[0..n) of ds into x [n, C, H, W] and labels. */
static int load_batch(struct run *r, const struct iap_dataset *ds, const int64_t *idx, int n,
		      struct iap_tensor *x, int *labels)
{
	int64_t shape[IAP_MAX_DIMS], per = 1;
	int rc;

	shape[0] = n;
	for (int i = 0; i < ds->info.in_ndim; i++) {
		shape[i + 1] = ds->info.in_shape[i];
		per *= ds->info.in_shape[i];
	}
	rc = iap_tensor_ensure(x, ds->info.in_ndim + 1, shape, r->err);
	for (int i = 0; !rc && i < n; i++)
		rc = ds->ops->load(ds->state, idx[i], x->data + (int64_t)i * per, &labels[i], r->err);
	return rc;
}

/* ---- model -------------------------------------------------------------------------- */

/* Half-precision exports load as float32; the user is told (the file is already known to open). */
static void note_half_precision(struct run *r, const char *path)
{
	struct iap_safetensors *st;
	struct iap_error e;
	char note[512];

	if (iap_safetensors_open(path, &st, &e))
		return;
	if (iap_weights_half_note(st, note, sizeof(note)))
		say(r, IAP_LOG_INFO, "note: %s", note);
	iap_safetensors_close(st);
}

/* Save g with the model description and up to two more metadata entries (NULL keys: none). */
static int save_model2(struct run *r, struct iap_graph *g, const char *path, const char *extra_key,
		       const char *extra_value, const char *extra2_key, const char *extra2_value)
{
	struct iap_meta_list meta = { 0 };
	int rc = iap_model_meta(&meta, r->model_plugin, r->model_opts, g,
				r->split[IAP_SPLIT_TRAIN].info.n_classes, r->err);

	if (!rc && extra_key)
		rc = iap_meta_put(&meta, extra_key, extra_value, r->err);
	if (!rc && extra2_key)
		rc = iap_meta_put(&meta, extra2_key, extra2_value, r->err);
	if (!rc)
		rc = iap_graph_save_weights(g, path, meta.items, meta.n, r->err);
	iap_meta_free(&meta);
	return rc;
}

static int save_model(struct run *r, struct iap_graph *g, const char *path, const char *extra_key,
		      const char *extra_value)
{
	return save_model2(r, g, path, extra_key, extra_value, NULL, NULL);
}

struct train_ui {
	struct run *r;
};

static void on_epoch(void *user, const struct iap_epoch_report *e)
{
	struct run *r = ((struct train_ui *)user)->r;

	if (e->has_val)
		say(r, IAP_LOG_INFO, "epoch %d/%d: loss %.4f, train accuracy %.3f, val accuracy %.3f%s (%.1f s)",
		    e->epoch, e->n_epochs, e->train_loss, e->train_acc, e->val_acc, e->is_best ? " (best)" : "",
		    e->seconds);
	else
		say(r, IAP_LOG_INFO, "epoch %d/%d: loss %.4f, train accuracy %.3f (%.1f s)", e->epoch,
		    e->n_epochs, e->train_loss, e->train_acc, e->seconds);
}

static void on_batch(void *user, int epoch, int64_t batch, int64_t n_batches, double loss, double acc,
		     double eta)
{
	struct run *r = ((struct train_ui *)user)->r;
	char stage[64];

	(void)loss;
	(void)acc;
	(void)eta;
	snprintf(stage, sizeof(stage), "training epoch %d", epoch);
	progress(r, stage, batch, n_batches);
}

/*
 * The dataset's normalisation, when it uses the common dataset options, so
 * augmentation works in pixel space (rotation fills black, colour jitter
 * scales pixel values). Unknown: mean 0, std 1 (augmenting the values as given).
 */
static void dataset_stats(const struct run *r, int channels, float *mean, float *std)
{
	const char *norm = iap_opts_str(r->ds_opts, "normalize");

	for (int c = 0; c < channels; c++) {
		mean[c] = 0.0f;
		std[c] = 1.0f;
	}
	if (norm && strcmp(norm, "imagenet") == 0) {
		static const float m3[3] = { 0.485f, 0.456f, 0.406f }, s3[3] = { 0.229f, 0.224f, 0.225f };

		for (int c = 0; c < channels; c++) {
			mean[c] = channels == 3 ? m3[c] : 0.5f;
			std[c] = channels == 3 ? s3[c] : 0.5f;
		}
	} else if (norm && strcmp(norm, "custom") == 0) {
		const char *ms = iap_opts_str(r->ds_opts, "mean"), *ss = iap_opts_str(r->ds_opts, "std");
		char *end;

		for (int c = 0; c < channels && ms && ss && *ms && *ss; c++) {
			mean[c] = strtof(ms, &end);
			ms = *end == ',' ? end + 1 : end;
			std[c] = strtof(ss, &end);
			ss = *end == ',' ? end + 1 : end;
		}
	}
}

/*
 * model.train's recipe into cfg (no callbacks, no checkpoints); mean and std
 * (3 floats each) hold the normalisation the augmentation points at.
 */
static int read_train_cfg(struct run *r, struct iap_train_cfg *out, float *mean, float *std)
{
	const struct iap_pipeline_train *t = &r->p->train;
	struct iap_train_cfg cfg;
	int channels = (int)r->split[IAP_SPLIT_TRAIN].info.in_shape[0];

	iap_train_cfg_defaults(&cfg);
	cfg.epochs = t->epochs;
	cfg.batch_size = t->batch_size;
	cfg.adam.lr = t->lr;
	cfg.adam.weight_decay = t->weight_decay;
	cfg.lr_step_size = t->step_size;
	cfg.lr_gamma = t->gamma;
	cfg.class_weights = t->class_weights_balanced;
	cfg.seed = r->seed;
	if (t->augment) {
		cfg.augment.crop = t->crop_scale < 1.0;
		cfg.augment.crop_scale[0] = t->crop_scale;
		cfg.augment.hflip_p = t->hflip ? 0.5 : 0.0;
		cfg.augment.vflip_p = t->vflip ? 0.5 : 0.0;
		cfg.augment.rotate_deg = t->rotate;
		cfg.augment.brightness = cfg.augment.contrast = cfg.augment.saturation = t->jitter;
		if (channels >= 1 && channels <= 3) {
			dataset_stats(r, channels, mean, std);
			cfg.augment.mean = mean;
			cfg.augment.std = std;
		}
	} else {
		iap_augment_cfg_none(&cfg.augment);
	}
	cfg.resume = t->resume;
	*out = cfg;
	return IAP_OK;
}

/* One plugin's name, version and options as "prefix.key=value" lines (newlines in values flattened). */
static void identity_plugin(FILE *f, const char *prefix, const struct iap_plugin *p, const struct iap_opts *o)
{
	char v[512];

	fprintf(f, "%s=%s %s\n", prefix, p->desc->name, p->desc->version ? p->desc->version : "");
	for (int i = 0; i < iap_opts_count(o); i++) {
		iap_opts_format(o, i, v, sizeof(v));
		for (char *c = v; *c; c++)
			if (*c == '\n' || *c == '\r')
				*c = ' ';
		fprintf(f, "%s.%s=%s\n", prefix, iap_opts_name(o, i), v);
	}
}

/*
 * What a checkpoint was trained on, beyond the training recipe: the dataset
 * (plugin, options, split sizes, classes, and the content of the training
 * and validation samples as loaded, so a file changed under the same size
 * and time is not taken for the old one) and the model (plugin, options and
 * the plugin file's content hash, so a rebuilt .so trains afresh). Into
 * *out; the status of the loads.
 */
static int train_identity(const struct run *r, char **out)
{
	const struct iap_dataset_info *info = &r->split[IAP_SPLIT_TRAIN].info;
	uint64_t content[2] = { 0xcbf29ce484222325ULL, 0xcbf29ce484222325ULL };
	char *text = NULL;
	size_t len = 0;
	FILE *f;
	int rc = IAP_OK;

	*out = NULL;
	for (int s = IAP_SPLIT_TRAIN; s <= IAP_SPLIT_VAL && !rc; s++)
		rc = iap_key_samples(&content[s - IAP_SPLIT_TRAIN], &r->split[s], NULL, r->split[s].count, r->err);
	if (rc) {
		iap_error_prefix(r->err, "hashing the dataset for the checkpoint settings");
		return rc;
	}
	f = open_memstream(&text, &len);
	if (!f)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	identity_plugin(f, "dataset", r->ds_plugin, r->ds_opts);
	fprintf(f, "dataset.splits=%" PRId64 ",%" PRId64 ",%" PRId64 "\n", r->split[0].count, r->split[1].count,
		r->split[2].count);
	fprintf(f, "dataset.classes=%d\n", info->n_classes);
	fprintf(f, "dataset.content=%016" PRIx64 ",%016" PRIx64 "\n", content[0], content[1]);
	identity_plugin(f, "model", r->model_plugin, r->model_opts);
	fprintf(f, "model.binary=%016" PRIx64 "\n", r->model_plugin->hash);
	if (fclose(f) != 0) {
		free(text);
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	*out = text;
	return IAP_OK;
}

static int train_model(struct run *r)
{
	struct iap_train_cfg cfg;
	struct iap_train_result res;
	struct train_ui ui = { r };
	char ckpt[4096];
	char *identity;
	int rc;
	struct iap_rng rng;
	float mean[3] = { 0 }, std[3] = { 1, 1, 1 };

	rc = read_train_cfg(r, &cfg, mean, std);
	if (rc)
		return rc;
	snprintf(ckpt, sizeof(ckpt), "%s/checkpoints", r->out);
	rc = iap_mkdir_p(ckpt, r->err);
	if (rc)
		return rc;
	cfg.checkpoint_dir = ckpt;
	rc = train_identity(r, &identity);
	if (rc)
		return rc;
	cfg.identity = identity;
	if (cfg.resume) {
		char what[600];
		int d = iap_train_checkpoint_differs(ckpt, &cfg, what, sizeof(what));

		if (d < 0) {
			free(identity);
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		}
		if (d) {
			/* Resuming would continue another training; the next epoch replaces the old checkpoint. */
			say(r, IAP_LOG_WARN, "%s holds a checkpoint made with other settings (%s): training starts fresh",
			    ckpt, what);
			cfg.resume = 0;
		}
	}
	cfg.on_epoch = on_epoch;
	cfg.epoch_user = &ui;
	cfg.progress = on_batch;
	cfg.progress_user = &ui;
	iap_rng_seed(&rng, r->seed ^ 0x1417ULL);
	if (r->model_plugin->desc->ops.model->init_params) {
		rc = iap_call_init_params(r->model_plugin, r->model_opts, r->g, &rng, r->err);
		if (rc) {
			free(identity);
			return rc;
		}
	}
	say(r, IAP_LOG_STAGE, "training %s for %d epochs on %" PRId64 " images", r->model_plugin->desc->name,
	    cfg.epochs, r->split[IAP_SPLIT_TRAIN].count);
	rc = iap_train(r->g, &r->split[IAP_SPLIT_TRAIN],
		       r->split[IAP_SPLIT_VAL].count > 0 ? &r->split[IAP_SPLIT_VAL] : NULL, &cfg, &res, r->err);
	free(identity);
	if (rc) {
		iap_error_prefix(r->err, "training");
		return rc;
	}
	/* The best epoch's weights (by validation accuracy) are the model. */
	snprintf(ckpt, sizeof(ckpt), "%s/checkpoints/best.safetensors", r->out);
	if (res.best_epoch > 0) {
		rc = iap_graph_load_weights_file(r->g, ckpt, 0, r->err);
		if (rc)
			return rc;
		say(r, IAP_LOG_INFO, "using epoch %d (best validation accuracy %.3f)", res.best_epoch,
		    res.best_score);
	}
	return IAP_OK;
}

/* Refuse a pipeline that would not fit in memory (plan.h), before anything large is allocated. */
static int plan_memory(struct run *r)
{
	struct iap_run_plan p = { .model = r->model_plugin, .model_opts = r->model_opts, .splits = r->split,
				  .eval_batch = r->eval_batch, .score_batch = SCORE_BATCH };
	uint64_t need;
	long batch = r->p->train.batch_size;
	int rc;

	p.train_batch = r->p->weights ? 0 : (int)batch;
	/* Fine-tuning after pruning trains too, at its own batch size (the recipe's by default). */
	if (r->p->pruning.finetune) {
		long ft = batch;

		rc = iap_cfg_get_int(r->p->pruning.finetune, "batch_size", batch, &ft, r->err);
		if (rc)
			return rc;
		p.train_batch = (int)(ft > p.train_batch ? ft : p.train_batch);
	}
	return iap_run_plan_memory(&p, &need, r->err);
}

static int prepare_model(struct run *r)
{
	const char *weights = r->p->weights;
	int rc;

	r->model_plugin = r->p->model.plugin;
	r->model_opts = r->p->model.opts;
	rc = plan_memory(r);
	if (rc)
		return rc;
	rc = iap_call_build(r->model_plugin, r->model_opts, &r->split[IAP_SPLIT_TRAIN].info, &r->g, r->err);
	if (rc)
		return rc;
	r->params = iap_graph_param_count(r->g, NULL);
	r->macs = (int64_t)iap_graph_macs(r->g);
	if (weights) {
		say(r, IAP_LOG_STAGE, "loading %s", weights);
		rc = iap_graph_load_weights_file(r->g, weights, 0, r->err);
		if (rc)
			return rc;
		note_half_precision(r, weights);
	} else {
		rc = train_model(r);
		if (rc)
			return rc;
	}
	return save_model(r, r->g, outpath(r, "model.safetensors"), NULL, NULL);
}

/* ---- evaluation ---------------------------------------------------------------------- */

/* small not NULL: the masks' compacted graph runs where compaction is exact, handed out in *small. */
static int evaluate(struct run *r, struct iap_report_metrics *out, struct iap_metrics *full,
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
static int evaluate_paired(struct run *r, struct iap_report_metrics *out, int **pred, float **conf, double **sens,
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

/* ---- samples and scores ------------------------------------------------------------------ */

static int run_samplers(struct run *r)
{
	const struct iap_dataset *train = &r->split[IAP_SPLIT_TRAIN];
	int rc;

	for (int i = 0; i < r->p->n_samplers && i < 16; i++) {
		const struct iap_pipeline_sampler *ps = &r->p->samplers[i];
		struct sampling *s = &r->smp[r->n_smp];
		struct iap_rng rng;
		struct iap_error warn;

		memset(s, 0, sizeof(*s));
		s->plugin = ps->ref.plugin;
		s->opts = ps->ref.opts;
		r->n_smp++;
		snprintf(s->name, sizeof(s->name), "%s", ps->name);
		s->per_class = ps->per_class;
		s->idx = calloc((size_t)s->per_class * (size_t)train->info.n_classes + 1, sizeof(*s->idx));
		if (!s->idx)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		iap_rng_seed(&rng, r->seed + 101u * (uint64_t)(i + 1));
		iap_error_clear(&warn);
		say(r, IAP_LOG_STAGE, "sampling %d per class with '%s'", s->per_class, s->name);
		rc = iap_call_select(s->plugin, s->opts, train, r->g, &rng, s->per_class, s->idx, &s->n, &warn);
		if (rc) {
			*r->err = warn;
			iap_error_prefix(r->err, "sampler '%s'", s->name);
			return rc;
		}
		rc = iap_contract_samples(s->plugin, train, s->per_class, s->idx, s->n, r->err);
		if (rc)
			return rc;
		if (warn.msg[0])
			say(r, IAP_LOG_WARN, "%s", warn.msg);
	}
	return IAP_OK;
}

/* What the scores depend on: the weights, the method and its options, the samples. */
static uint64_t score_key(const struct run *r, const struct config *c)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	char buf[512];

	for (int i = 0; i < r->g->n_nodes; i++)
		for (int k = 0; k < r->g->nodes[i].n_params; k++) {
			const struct iap_param *p = &r->g->nodes[i].params[k];

			h = iap_key_bytes(h, p->key, strlen(p->key));
			h = iap_key_bytes(h, p->value.data, (size_t)iap_tensor_numel(&p->value) * sizeof(float));
		}
	h = iap_key_plugin(h, c->attr->plugin);
	h = iap_key_bytes(h, c->attr->plugin->desc->name, strlen(c->attr->plugin->desc->name));
	h = iap_key_bytes(h, c->attr->plugin->desc->version, strlen(c->attr->plugin->desc->version));
	for (int i = 0; i < iap_opts_count(c->attr->opts); i++) {
		const char *n = iap_opts_name(c->attr->opts, i);

		iap_opts_format(c->attr->opts, i, buf, sizeof(buf));
		h = iap_key_bytes(h, n, strlen(n));
		h = iap_key_bytes(h, buf, strlen(buf));
	}
	if (c->smp)
		h = iap_key_bytes(h, c->smp->idx, (size_t)c->smp->n * sizeof(int64_t));
	return h;
}

static int alloc_scores(struct run *r, struct config *c)
{
	c->scores = calloc((size_t)r->g->n_groups + 1, sizeof(*c->scores));
	if (!c->scores)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int gi = 0; gi < r->g->n_groups; gi++) {
		c->scores[gi] = calloc((size_t)r->g->groups[gi].n_units + 1, sizeof(float));
		if (!c->scores[gi])
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	iap_contract_scores_arm(r->g, c->scores);
	return IAP_OK;
}

/*
 * Cached scores for key (score_cache.h); 1 when found and verified. A file
 * that fails verification is named, removed and recomputed.
 */
static int load_cached(struct run *r, struct config *c, const char *path, uint64_t key)
{
	struct iap_error why;
	int got;

	iap_error_clear(&why);
	got = iap_score_cache_load(path, key, r->g, c->scores, &why);
	if (got < 0) {
		say(r, IAP_LOG_WARN, "%s; discarded, the scores are computed again", why.msg);
		if (unlink(path) != 0)
			say(r, IAP_LOG_WARN, "%s: cannot remove: %s", path, strerror(errno));
	}
	return got == 1;
}

static int save_cached(struct run *r, struct config *c, const char *path, uint64_t key)
{
	return iap_score_cache_save(path, key, r->g, c->scores, r->err);
}

/*
 * c's attribution over its samples on the model as it is (masks included),
 * into scores[g][u] (zeroed first); every score checked finite.
 */
static int score_units(struct run *r, const struct config *c, float *const *scores)
{
	const struct iap_dataset *train = &r->split[IAP_SPLIT_TRAIN];
	struct iap_tensor x = { 0 };
	int labels[SCORE_BATCH];
	void *state = NULL;
	int rc;

	for (int gi = 0; gi < r->g->n_groups; gi++)
		memset(scores[gi], 0, (size_t)r->g->groups[gi].n_units * sizeof(float));
	iap_contract_scores_arm(r->g, scores);
	rc = iap_call_create(c->attr->plugin, c->attr->opts, r->g, &state, r->err);
	if (rc) {
		iap_error_prefix(r->err, "attribution '%s'", c->attr->name);
		return rc;
	}
	iap_graph_set_training(r->g, 0);
	if (!c->smp) {
		/* Data-free criteria: one call on one sample so the graph has run once. */
		int64_t first = 0;

		rc = load_batch(r, train, &first, 1, &x, labels);
		if (!rc)
			rc = iap_call_attribute_batch(c->attr->plugin, state, c->attr->opts, r->g, &x, labels, scores, NULL,
						      r->err);
	} else {
		for (int64_t s = 0; !rc && s < c->smp->n; s += SCORE_BATCH) {
			int n = (int)(c->smp->n - s < SCORE_BATCH ? c->smp->n - s : SCORE_BATCH);

			rc = load_batch(r, train, c->smp->idx + s, n, &x, labels);
			if (!rc)
				rc = iap_call_attribute_batch(c->attr->plugin, state, c->attr->opts, r->g, &x, labels,
							      scores, NULL, r->err);
			progress(r, c->attr->name, s + n, c->smp->n);
		}
		if (!rc)
			iap_scores_finish(r->g, c->attr->opts, c->smp->n, scores);
	}
	iap_call_destroy(c->attr->plugin, state);
	iap_tensor_free(&x);
	if (rc) {
		iap_error_prefix(r->err, "attribution '%s'", c->attr->name);
		return rc;
	}
	return iap_contract_scores(c->attr->plugin, r->g, scores, r->err);
}

static int compute_scores(struct run *r, struct config *c)
{
	const struct iap_dataset *train = &r->split[IAP_SPLIT_TRAIN];
	char name[128];
	uint64_t key = score_key(r, c);
	int rc;

	rc = alloc_scores(r, c);
	/* The samples' content too: the same indices into a changed file are other samples. */
	if (!rc && c->smp)
		rc = iap_key_samples(&key, train, c->smp->idx, c->smp->n, r->err);
	if (rc)
		return rc;
	snprintf(name, sizeof(name), "cache/scores-%016" PRIx64 ".safetensors", key);
	if (load_cached(r, c, outpath(r, name), key)) {
		say(r, IAP_LOG_INFO, "scores of %s / %s: from the cache", c->attr->name, c->smp ? c->smp->name : "-");
		return IAP_OK;
	}
	say(r, IAP_LOG_STAGE, "scoring units with %s on %s", c->attr->name,
	    c->smp ? c->smp->name : "the weights alone");
	rc = score_units(r, c, c->scores);
	rc = rc ? rc : iap_mkdir_p(outpath(r, "cache"), r->err);
	return rc ? rc : save_cached(r, c, outpath(r, name), key);
}

static int run_attributions(struct run *r)
{
	int rc;

	if (r->p->n_attributions == 0)
		return iap_error_set(r->err, IAP_EINVAL,
				     "the pipeline has no 'attribution' list (run and prune need at least one method)");
	r->ranking = r->p->pruning.baseline_ranking;
	for (int i = 0; i < r->p->n_attributions && i < 16; i++) {
		const struct iap_pipeline_attribution *pa = &r->p->attributions[i];
		struct attribution *a = &r->attr[r->n_attr];

		memset(a, 0, sizeof(*a));
		a->plugin = pa->ref.plugin;
		a->opts = pa->ref.opts;
		r->n_attr++;
		snprintf(a->name, sizeof(a->name), "%s", pa->name);
	}
	for (int i = 0; i < r->n_attr; i++) {
		int data_free = (r->attr[i].plugin->desc->ops.attribution->flags & IAP_ATTR_DATA_FREE) != 0;
		int n = data_free ? 1 : r->n_smp;

		if (!data_free && r->n_smp == 0)
			return iap_error_set(r->err, IAP_EINVAL,
					     "attribution '%s' needs samples, but the pipeline has no 'sampling' list",
					     r->attr[i].name);
		for (int s = 0; s < n; s++) {
			struct config *c = &r->cfg[r->n_cfg];

			if (r->n_cfg == MAX_CONFIGS)
				return iap_error_set(r->err, IAP_EINVAL, "more than %d attribution × sampler configurations",
						     MAX_CONFIGS);
			memset(c, 0, sizeof(*c));
			c->attr = &r->attr[i];
			c->smp = data_free ? NULL : &r->smp[s];
			c->th_lo = c->th_hi = NAN;
			r->n_cfg++;
			rc = compute_scores(r, c);
			if (rc)
				return rc;
			if (data_free && r->ranking != IAP_RANK_RAW) {
				int *n_units = malloc(((size_t)r->g->n_groups + 1) * sizeof(int));

				if (!n_units)
					return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
				for (int gi = 0; gi < r->g->n_groups; gi++)
					n_units[gi] = r->g->groups[gi].n_units;
				iap_scores_normalize((enum iap_ranking)r->ranking, r->g->n_groups, n_units, c->scores);
				free(n_units);
			}
		}
	}
	return IAP_OK;
}

/* ---- pruning ------------------------------------------------------------------------------ */

static int prepare_policy(struct run *r)
{
	const struct iap_pipeline *p = r->p;

	r->policy = p->pruning.policy.plugin;
	r->policy_opts = p->pruning.policy.opts;
	r->max_layer_rate = p->pruning.max_layer_rate;
	r->min_units = p->pruning.min_units;
	r->tolerance = p->pruning.tolerance;
	r->iterations = p->pruning.iterations;
	r->ignore = calloc((size_t)r->g->n_groups + 1, 1);
	if (!r->ignore)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	/* pruning.ignore: exact group names here; the policies also take glob patterns. */
	for (int i = 0; i < p->pruning.n_ignore; i++)
		for (int gi = 0; gi < r->g->n_groups; gi++)
			if (!strcmp(p->pruning.ignore[i], r->g->groups[gi].name))
				r->ignore[gi] = 1;
	return IAP_OK;
}

struct rescore_ctx {
	struct run *r;
	const struct config *c;
};

/* iap_rescore_fn: c's scores on the masked model, uncached (the cache key ignores masks). */
static int rescore(void *user, struct iap_graph *g, float *const *scores, struct iap_error *err)
{
	struct rescore_ctx *x = user;

	(void)g;
	(void)err;
	return score_units(x->r, x->c, scores);
}

/* Masks for c at rate, in pruning.iterations steps when c's scores come from samples. */
static int apply_rate(struct run *r, const struct config *c, double rate)
{
	uint8_t **keep = calloc((size_t)r->g->n_groups + 1, sizeof(*keep));
	struct iap_policy_input in = {
		.graph = r->g, .scores = (const float *const *)c->scores, .rate = rate,
		.max_layer_rate = r->max_layer_rate, .min_units = r->min_units, .ignore = r->ignore,
	};
	int rc = IAP_OK;

	if (!keep)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int gi = 0; gi < r->g->n_groups && !rc; gi++) {
		keep[gi] = malloc((size_t)r->g->groups[gi].n_units);
		if (!keep[gi])
			rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	/* Data-free criteria do not see the masks: rescoring would change nothing. */
	if (!rc) {
		struct rescore_ctx ctx = { r, c };
		int steps = c->smp ? r->iterations : 1;

		rc = iap_prune_iterative(r->policy, r->policy_opts, &in, r->g, steps, rescore, &ctx, keep, r->err);
	}
	for (int gi = 0; gi < r->g->n_groups && !rc; gi++)
		rc = iap_graph_set_mask(r->g, gi, keep[gi], r->err);
	for (int gi = 0; gi < r->g->n_groups; gi++)
		free(keep[gi]);
	free(keep);
	return rc;
}

static void clear_masks(struct run *r)
{
	for (int gi = 0; gi < r->g->n_groups; gi++)
		iap_graph_set_mask(r->g, gi, NULL, NULL);
}

/* Fractions of units, parameters and MACs the current masks remove (from the compacted graph, made here when NULL). */
static int removed(struct run *r, struct iap_graph *small, double *units, double *params, double *macs)
{
	int64_t total = 0, off = 0;
	int rc, own = !small;

	for (int gi = 0; gi < r->g->n_groups; gi++) {
		const struct iap_unit_group *grp = &r->g->groups[gi];

		total += grp->n_units;
		for (int u = 0; grp->mask && u < grp->n_units; u++)
			off += !grp->mask[u];
	}
	*units = total ? (double)off / (double)total : 0;
	rc = own ? iap_graph_compact(r->g, 0, &small, r->err) : IAP_OK;
	if (rc)
		return rc;
	*params = 1.0 - (double)iap_graph_param_count(small, NULL) / (double)r->params;
	*macs = 1.0 - (double)iap_graph_macs(small) / (double)r->macs;
	if (own)
		iap_graph_free(small);
	return IAP_OK;
}

/*
 * The row's metrics with its predictions and its paired statistics against
 * the baseline; small as evaluate_paired's.
 */
static int evaluate_row(struct run *r, struct iap_report_row *row, struct iap_graph **small)
{
	int *pred;
	float *conf;
	double *sens, *spec;
	struct iap_paired p;
	int rc = evaluate_paired(r, &row->m, &pred, &conf, &sens, &spec, small);

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

static void free_row(struct iap_report_row *row)
{
	free((void *)row->pred);
	free((void *)row->confidence);
	free((void *)row->sensitivity);
	free((void *)row->specificity);
}

static int add_row(struct run *r, const struct config *c, double rate, struct iap_report_row **out)
{
	struct iap_report_row *row;
	struct iap_graph *small = NULL;
	int rc;

	if (r->n_rows == r->cap_rows) {
		int cap = r->cap_rows ? 2 * r->cap_rows : 64;
		struct iap_report_row *rows = realloc(r->rows, (size_t)cap * sizeof(*rows));

		if (!rows)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		r->rows = rows;
		r->cap_rows = cap;
	}
	row = &r->rows[r->n_rows];
	memset(row, 0, sizeof(*row));
	row->sampler = c->smp ? c->smp->name : "-";
	row->attribution = c->attr->name;
	row->policy = r->policy->desc->name;
	row->rate = rate;
	rc = apply_rate(r, c, rate);
	rc = rc ? rc : evaluate_row(r, row, &small);
	rc = rc ? rc : removed(r, small, &row->units_removed, &row->params_removed, &row->macs_removed);
	iap_graph_free(small);
	clear_masks(r);
	if (rc) {
		free_row(row);
		iap_error_prefix(r->err, "%s / %s at rate %.2f", row->attribution, row->sampler, rate);
		return rc;
	}
	r->n_rows++;
	if (out)
		*out = row;
	return IAP_OK;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The rates to evaluate: the pipeline's, plus the fine curve; sorted, unique. */
static int rate_list(struct run *r, double **out, int *n_out, double **table, int *n_table)
{
	double step = r->p->pruning.curve_step;
	int curve = r->p->pruning.curve, n = 0;
	double *v;

	*n_table = r->p->pruning.n_rates;
	*table = calloc((size_t)*n_table + 1, sizeof(double));
	v = calloc((size_t)*n_table + 64, sizeof(double));
	if (!*table || !v) {
		free(v);
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	for (int i = 0; i < *n_table; i++) {
		(*table)[i] = r->p->pruning.rates[i];
		v[n++] = (*table)[i];
	}
	if (curve && step > 0)
		for (int k = 0; k * step < 0.96 && n < *n_table + 60; k++)
			v[n++] = round(k * step * 1e6) / 1e6;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	{
		int m = 0;

		for (int i = 0; i < n; i++)
			if (m == 0 || fabs(v[i] - v[m - 1]) > 1e-9)
				v[m++] = v[i];
		n = m;
	}
	*out = v;
	*n_out = n;
	return IAP_OK;
}

/*
 * The threshold's bootstrap interval: the same rule on every resample, over
 * the configuration's evaluated rates (grid and bisection) in rate order.
 */
static int threshold_ci(struct run *r, struct config *c)
{
	const int64_t n = r->bs.n;
	const char *smp = c->smp ? c->smp->name : "-";
	double *rates = malloc(((size_t)r->n_rows + 1) * sizeof(double)), *base = malloc((size_t)n * sizeof(double));
	double **correct = calloc((size_t)r->n_rows + 1, sizeof(double *));
	const struct iap_report_row **rows = calloc((size_t)r->n_rows + 1, sizeof(*rows));
	int k = 0, rc = IAP_OK;

	if (!rates || !base || !correct || !rows) {
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < r->n_rows; i++) {
		const struct iap_report_row *row = &r->rows[i];
		int at;

		if (row->attribution != c->attr->name || strcmp(row->sampler, smp) || !row->pred)
			continue;
		/* Insertion in rate order. */
		for (at = k; at > 0 && rows[at - 1]->rate > row->rate; at--)
			rows[at] = rows[at - 1];
		rows[at] = row;
		k++;
	}
	for (int64_t i = 0; i < n; i++)
		base[i] = r->base_pred[i] == r->labels[i];
	for (int j = 0; j < k && !rc; j++) {
		rates[j] = rows[j]->rate;
		correct[j] = malloc((size_t)n * sizeof(double));
		if (!correct[j]) {
			rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
			break;
		}
		for (int64_t i = 0; i < n; i++)
			correct[j][i] = rows[j]->pred[i] == r->labels[i];
	}
	if (!rc)
		rc = iap_bootstrap_threshold_ci(&r->bs, k, rates, base, (const double *const *)correct, r->tolerance,
						&c->th_lo, &c->th_hi, r->err);
out:
	for (int j = 0; correct && j < k; j++)
		free(correct[j]);
	free(correct);
	free(rows);
	free(rates);
	free(base);
	return rc;
}

/* Largest rate within tolerance, refined to 0.01 between the last passing and first failing rate. */
static int lossless(struct run *r, struct config *c, const double *rates, int n_rates)
{
	double ok = 0, bad = -1;
	int rc;

	for (int i = 0; i < n_rates; i++) {
		const struct iap_report_row *row = NULL;

		for (int k = 0; k < r->n_rows && !row; k++)
			if (r->rows[k].attribution == c->attr->name &&
			    r->rows[k].sampler == (c->smp ? c->smp->name : "-") && fabs(r->rows[k].rate - rates[i]) < 1e-9)
				row = &r->rows[k];
		if (!row)
			continue;
		if (r->baseline.accuracy - row->m.accuracy <= r->tolerance + 1e-12) {
			if (bad < 0)
				ok = rates[i];
		} else if (bad < 0) {
			bad = rates[i];
		}
	}
	/* Bisection on the accuracy drop; extra evaluations are recorded as rows too. */
	while (bad > 0 && bad - ok > 0.01 + 1e-9) {
		double mid = round((ok + bad) * 50.0) / 100.0;
		struct iap_report_row *row;

		if (mid <= ok || mid >= bad)
			break;
		rc = add_row(r, c, mid, &row);
		if (rc)
			return rc;
		if (r->baseline.accuracy - row->m.accuracy <= r->tolerance + 1e-12)
			ok = mid;
		else
			bad = mid;
	}
	c->threshold = ok;
	return threshold_ci(r, c);
}

/* ---- report -------------------------------------------------------------------------------- */

/*
 * The first per_class images of every class of the evaluation split, explained
 * by every method that has input relevance and drawn by the explain service:
 * over the stored image where the dataset has one, else over the model's
 * input with the dataset's normalisation undone; small inputs enlarged.
 */
static int write_heatmaps(struct run *r, int per_class)
{
	const struct iap_dataset *ds = &r->split[r->eval_split];
	const struct iap_explain_write_opts wo = { .enlarge = 1 };
	int classes = ds->info.n_classes, rc = IAP_OK;
	int64_t *pick = calloc((size_t)per_class * (size_t)classes + 1, sizeof(*pick));
	int *taken = calloc((size_t)classes + 1, sizeof(int));
	struct iap_tensor x = { 0 }, rel = { 0 };
	struct iap_explain_norm norm;
	int64_t n = 0;
	char dir[4096], file[4200];

	if (!pick || !taken) {
		free(pick);
		free(taken);
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	rc = iap_explain_norm_from_opts(r->ds_opts, (int)ds->info.in_shape[0], &norm, r->err);
	/* The first per_class images of every class in the evaluation split. */
	for (int64_t i = 0; !rc && i < ds->count && n < (int64_t)per_class * classes; i++) {
		int label;
		int64_t one = i;

		rc = load_batch(r, ds, &one, 1, &x, &label);
		if (rc)
			goto out;
		if (label >= 0 && label < classes && taken[label] < per_class) {
			taken[label]++;
			pick[n++] = i;
		}
	}
	snprintf(dir, sizeof(dir), "%s/heatmaps", r->report_dir);
	rc = rc ? rc : iap_mkdir_p(dir, r->err);
	for (int a = 0; !rc && a < r->n_attr; a++) {
		const struct iap_attribution_ops *ops = r->attr[a].plugin->desc->ops.attribution;
		void *state = NULL;

		if (!ops->explain)
			continue;
		rc = iap_call_create(r->attr[a].plugin, r->attr[a].opts, r->g, &state, r->err);
		for (int64_t i = 0; !rc && i < n; i++) {
			int label, target;
			struct iap_score_opts so;
			struct iap_explain_view v = { 0 };

			rc = load_batch(r, ds, &pick[i], 1, &x, &label);
			rc = rc ? rc : iap_graph_forward(r->g, &x, r->err);
			if (!rc) {
				iap_score_opts_from(r->attr[a].opts, &so);
				rc = iap_targets(iap_graph_output(r->g), &label, &so, &target, r->err);
			}
			rc = rc ? rc : iap_explain_relevance(r->attr[a].plugin, state, r->g, &x, target, &rel, r->err);
			rc = rc ? rc : iap_explain_view_sample(ds, pick[i], &x, &norm, &v, r->err);
			snprintf(file, sizeof(file), "%s/%s-class%d-%03" PRId64 ".png", dir, r->attr[a].name, label, i);
			rc = rc ? rc : iap_explain_write(file, &rel, &v, &wo, r->err);
			iap_explain_view_free(&v);
		}
		iap_call_destroy(r->attr[a].plugin, state);
	}
out:
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
	free(pick);
	free(taken);
	return rc;
}

static int save_pruned(struct run *r, const struct config *best, double rate, const char *masked_path,
		       const char *compact_path)
{
	struct iap_graph *small = NULL;
	char *keep = NULL;
	char note[512];
	int rc = apply_rate(r, best, rate);

	if (rc)
		return rc;
	snprintf(note, sizeof(note), "%s / %s / %s at %.2f", best->attr->name, best->smp ? best->smp->name : "-",
		 r->policy->desc->name, rate);
	if (compact_path) {
		rc = iap_graph_compact(r->g, 0, &small, r->err);
		keep = rc ? NULL : iap_graph_keep_metadata(r->g, r->err);
		if (!rc && !keep)
			rc = r->err ? r->err->code : IAP_ENOMEM;
		rc = rc ? rc : save_model(r, small, compact_path, IAP_KEEP_META_KEY, keep);
		iap_graph_free(small);
		free(keep);
	}
	if (!rc && masked_path) {
		/*
		 * The masked model as plain weights with the original shapes: a copy
		 * of the graph with the zeros baked in (filters, biases and the
		 * following BatchNorm), so any loader reproduces the masked outputs.
		 */
		struct iap_graph *copy = NULL;

		rc = iap_call_build(r->model_plugin, r->model_opts, &r->split[IAP_SPLIT_TRAIN].info, &copy, r->err);
		for (int i = 0; !rc && i < copy->n_nodes; i++)
			for (int k = 0; k < copy->nodes[i].n_params; k++)
				memcpy(copy->nodes[i].params[k].value.data, r->g->nodes[i].params[k].value.data,
				       (size_t)iap_tensor_numel(&copy->nodes[i].params[k].value) * sizeof(float));
		for (int gi = 0; !rc && gi < r->g->n_groups; gi++)
			rc = iap_graph_set_mask(copy, gi, r->g->groups[gi].mask, r->err);
		rc = rc ? rc : iap_graph_bake_masks(copy, r->err);
		for (int gi = 0; !rc && gi < copy->n_groups; gi++)
			rc = iap_graph_set_mask(copy, gi, NULL, r->err);
		/* Which units are pruned, so 'iaprune info' counts them (the graph is not compacted on load). */
		keep = rc ? NULL : iap_graph_keep_metadata(r->g, r->err);
		if (!rc && !keep)
			rc = r->err ? r->err->code : IAP_ENOMEM;
		rc = rc ? rc : save_model2(r, copy, masked_path, "iaprune.pruning", note, IAP_MASK_META_KEY, keep);
		free(keep);
		keep = NULL;
		iap_graph_free(copy);
	}
	clear_masks(r);
	return rc;
}

/* What the report's optional parts hold on to until the report is written. */
struct extras {
	struct iap_preserve pv;
	int have_pv;
	float *maps;                          /* pruned maps of the preservation images at the gallery's rate */
	int *pred;
	struct iap_report_gallery_item *items;
	struct iap_tensor *natives;           /* [gallery.n] the items' stored images (native.h) */
	struct iap_report_gallery gallery;
	char expl_config[256], gallery_text[300], ranking[512];
};

static int pv_apply(void *user, double rate)
{
	struct run *r = ((void **)user)[0];
	const struct config *c = ((void **)user)[1];

	return apply_rate(r, c, rate);
}

static void pv_clear(void *user)
{
	clear_masks(((void **)user)[0]);
}

/*
 * Explanation preservation on the best configuration whose method gives
 * input relevance (the best one, unless it is data-free): every evaluated
 * rate of it gets ρ and the top-k overlap, and the gallery shows its maps
 * at its lossless threshold against the dense model's.
 */
static int explanation_extras(struct run *r, struct iap_report *rep, struct extras *x, int per_class_maps,
			      const double *table, int n_table)
{
	const struct config *c = NULL;
	long per_class = r->p->report.explain_images;
	double rate;
	void *user[2];
	int rc;

	if (per_class < 1)
		return IAP_OK;
	for (int i = 0; i < r->n_cfg; i++) {
		const struct config *k = &r->cfg[i];

		if (k->attr->plugin->desc->ops.attribution->explain && (!c || k->threshold > c->threshold + 1e-12))
			c = k;
	}
	if (!c || r->split[r->eval_split].info.in_ndim != 3)
		return IAP_OK;
	user[0] = r;
	user[1] = (void *)c;
	x->pv.g = r->g;
	x->pv.ds = &r->split[r->eval_split];
	x->pv.plugin = c->attr->plugin;
	x->pv.opts = c->attr->opts;
	x->pv.per_class = (int)(per_class > per_class_maps ? per_class : per_class_maps);
	x->pv.topk_frac = 0.1;
	x->pv.apply = pv_apply;
	x->pv.clear = pv_clear;
	x->pv.user = user;
	say(r, IAP_LOG_STAGE, "explanation preservation: %s / %s, %d images per class", c->attr->name,
	    c->smp ? c->smp->name : "-", x->pv.per_class);
	x->have_pv = 1;
	rc = iap_preserve_init(&x->pv, r->err);
	for (int i = 0; !rc && i < r->n_rows; i++) {
		struct iap_report_row *row = &r->rows[i];

		int wanted = fabs(row->rate - c->threshold) < 1e-9;

		if (row->attribution != c->attr->name || strcmp(row->sampler, c->smp ? c->smp->name : "-"))
			continue;
		/* The paper's rates and the threshold: explaining at every curve rate costs too much on big models. */
		for (int j = 0; j < n_table; j++)
			wanted |= fabs(row->rate - table[j]) < 1e-9;
		if (!wanted)
			continue;
		rc = iap_preserve_measure(&x->pv, row->rate, &row->expl_rho, &row->expl_topk, NULL, NULL, r->err);
		row->has_expl = !rc;
	}
	if (rc) {
		iap_error_prefix(r->err, "explanation preservation");
		return rc;
	}
	snprintf(x->expl_config, sizeof(x->expl_config), "%s / %s / %s", c->attr->name, c->smp ? c->smp->name : "-",
		 r->policy->desc->name);
	rep->expl_method = c->attr->name;
	rep->expl_config = x->expl_config;
	rep->expl_images = x->pv.n;
	rep->expl_topk_frac = x->pv.topk_frac;
	if (per_class_maps < 1)
		return IAP_OK;
	/* The gallery: the first report.heatmaps images per class, at the threshold (or the first rate). */
	rate = c->threshold > 0 ? c->threshold : r->n_rows ? r->rows[0].rate : 0;
	x->maps = malloc((size_t)x->pv.n * (size_t)x->pv.h * (size_t)x->pv.w * sizeof(float));
	x->pred = malloc((size_t)x->pv.n * sizeof(int));
	x->items = calloc((size_t)x->pv.n, sizeof(*x->items));
	x->natives = calloc((size_t)x->pv.n, sizeof(*x->natives));
	if (!x->maps || !x->pred || !x->items || !x->natives)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	{
		double rho, topk;
		int *taken = calloc((size_t)x->pv.ds->info.n_classes + 1, sizeof(int));

		if (!taken)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		rc = iap_preserve_measure(&x->pv, rate, &rho, &topk, x->maps, x->pred, r->err);
		for (int i = 0; !rc && i < x->pv.n; i++) {
			struct iap_report_gallery_item *it = &x->items[x->gallery.n];
			const int64_t plane = (int64_t)x->pv.h * x->pv.w;

			if (taken[x->pv.labels[i]]++ >= per_class_maps)
				continue;
			it->image = x->pv.images + i * x->pv.c * plane;
			it->dense_map = x->pv.dense_maps + i * plane;
			it->pruned_map = x->maps + i * plane;
			it->label = x->pv.labels[i];
			it->dense_pred = x->pv.dense_pred[i];
			it->pruned_pred = x->pred[i];
			it->index = x->pv.idx[i];
			x->gallery.n++;
			rc = iap_native_item(x->pv.ds, it, &x->natives[x->gallery.n - 1], r->err);
		}
		free(taken);
	}
	if (rc) {
		iap_error_prefix(r->err, "heatmap gallery");
		return rc;
	}
	snprintf(x->gallery_text, sizeof(x->gallery_text), "%s at %.2f", x->expl_config, rate);
	x->gallery.channels = x->pv.c;
	x->gallery.h = x->pv.h;
	x->gallery.w = x->pv.w;
	x->gallery.method = c->attr->name;
	x->gallery.pruned = x->gallery_text;
	x->gallery.items = x->items;
	rep->gallery = &x->gallery;
	return IAP_OK;
}

static void extras_free(struct extras *x)
{
	if (x->have_pv)
		iap_preserve_free(&x->pv);
	free(x->maps);
	free(x->pred);
	free(x->items);
	for (int i = 0; x->natives && i < x->gallery.n; i++)
		iap_tensor_free(&x->natives[i]);
	free(x->natives);
}

/*
 * Forward latency at batch 1 and 16 of the dense model and of the compacted
 * best configuration at its threshold (report.latency).
 */
static int latency_extras(struct run *r, struct iap_report *rep, const struct config *best)
{
	const struct iap_dataset *ds = &r->split[r->eval_split];
	static const int batches[2] = { 1, 16 };
	struct iap_graph *small = NULL;
	struct iap_tensor x = { 0 };
	int64_t idx[16];
	int labels[16], rc;

	if (!r->p->report.latency || !best || best->threshold <= 0)
		return IAP_OK;
	rc = apply_rate(r, best, best->threshold);
	rc = rc ? rc : iap_graph_compact(r->g, 0, &small, r->err);
	clear_masks(r);
	for (int i = 0; i < 16; i++)
		idx[i] = i % ds->count;
	rep->latency.repeats = 10;
	for (int k = 0; !rc && k < 2; k++) {
		rep->latency.batch[k] = batches[k];
		rc = load_batch(r, ds, idx, batches[k], &x, labels);
		rc = rc ? rc : iap_forward_latency(r->g, &x, rep->latency.repeats, &rep->latency.dense_ms[k], r->err);
		rc = rc ? rc : iap_forward_latency(small, &x, rep->latency.repeats, &rep->latency.compact_ms[k], r->err);
	}
	rep->latency.has = !rc;
	if (!rc)
		say(r, IAP_LOG_INFO, "latency batch 1: dense %.2f ms, compacted %.2f ms; batch 16: %.2f ms, %.2f ms",
		    rep->latency.dense_ms[0], rep->latency.compact_ms[0], rep->latency.dense_ms[1], rep->latency.compact_ms[1]);
	iap_tensor_free(&x);
	iap_graph_free(small);
	return rc;
}

static int write_report(struct run *r, const double *table, int n_table, int per_class_maps)
{
	struct extras x;
	struct iap_report rep = { 0 };
	struct iap_report_threshold *th = calloc((size_t)r->n_cfg + 1, sizeof(*th));
	struct iap_report_layer *layers = NULL;
	const struct config *best = NULL;
	char best_text[256] = "", model_text[512], data_text[512], notes[1024];
	const char *title = r->p->name, *dsname = r->ds_plugin->desc->name;
	struct iap_generation gen;
	int save = r->p->report.save_pruned, rc;

	memset(&x, 0, sizeof(x));
	if (!th)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int i = 0; i < r->n_cfg; i++) {
		const struct config *c = &r->cfg[i];

		th[i].sampler = c->smp ? c->smp->name : "-";
		th[i].attribution = c->attr->name;
		th[i].policy = r->policy->desc->name;
		th[i].rate = c->threshold;
		th[i].has_ci = r->bs.n_boot > 0;
		th[i].lo = c->th_lo;
		th[i].hi = c->th_hi;
		if (!best || c->threshold > best->threshold + 1e-12)
			best = c;
	}
	snprintf(model_text, sizeof(model_text), "%s", r->model_plugin->desc->name);
	for (int i = 0; i < iap_opts_count(r->model_opts); i++) {
		char v[128];
		size_t used = strlen(model_text);

		if (!iap_opts_is_set(r->model_opts, iap_opts_name(r->model_opts, i)))
			continue;
		iap_opts_format(r->model_opts, i, v, sizeof(v));
		snprintf(model_text + used, sizeof(model_text) - used, "%s%s=%s", strchr(model_text, '(') ? ", " : " (",
			 iap_opts_name(r->model_opts, i), v);
	}
	if (strchr(model_text, '('))
		strncat(model_text, ")", sizeof(model_text) - strlen(model_text) - 1);
	snprintf(data_text, sizeof(data_text), "%s, %s split (%" PRId64 " images, %d classes); samples from the train split (%" PRId64 ")",
		 dsname, iap_split_name(r->eval_split), r->split[r->eval_split].count,
		 r->split[r->eval_split].info.n_classes, r->split[IAP_SPLIT_TRAIN].count);
	if (best) {
		snprintf(best_text, sizeof(best_text), "%s / %s / %s: lossless up to %.2f", best->attr->name,
			 best->smp ? best->smp->name : "-", r->policy->desc->name, best->threshold);
		/* Units pruned per layer at the best configuration's threshold. */
		layers = calloc((size_t)r->g->n_groups + 1, sizeof(*layers));
		if (layers && apply_rate(r, best, best->threshold) == IAP_OK) {
			for (int gi = 0; gi < r->g->n_groups; gi++) {
				const struct iap_unit_group *grp = &r->g->groups[gi];

				layers[gi].name = grp->name;
				layers[gi].units = grp->n_units;
				for (int u = 0; grp->mask && u < grp->n_units; u++)
					layers[gi].pruned += !grp->mask[u];
			}
			rep.n_layers = r->g->n_groups;
		}
		clear_masks(r);
	}
	{
		char popts[256] = "";

		for (int i = 0; i < iap_opts_count(r->policy_opts); i++) {
			char v[96];
			size_t used = strlen(popts);

			iap_opts_format(r->policy_opts, i, v, sizeof(v));
			snprintf(popts + used, sizeof(popts) - used, "%s%s=%s", used ? ", " : "",
				 iap_opts_name(r->policy_opts, i), v[0] ? v : "\"\"");
		}
		snprintf(notes, sizeof(notes),
			 "Rates are fractions of all prunable units (conv channels, hidden neurons, attention heads), "
			 "ranked by the '%s' policy (%s) with at most %.0f%% of any layer pruned and at least %d "
			 "unit(s) kept per layer. Unit scores are cached under cache/ keyed by the model's weights, "
			 "the method, its options and the samples.",
			 r->policy->desc->name, popts[0] ? popts : "no options", 100 * r->max_layer_rate, r->min_units);
		if (r->iterations > 1) {
			size_t used = strlen(notes);

			snprintf(notes + used, sizeof(notes) - used,
				 " Iterative pruning: each rate reached in %d equal steps, the scores recomputed on the "
				 "masked model before each step after the first (data-free criteria in one step).",
				 r->iterations);
		}
	}
	rep.title = title;
	rep.model = model_text;
	rep.dataset = data_text;
	rep.params = r->params;
	rep.macs = r->macs;
	rep.tolerance = r->tolerance;
	rep.baseline = r->baseline;
	rep.n_rows = r->n_rows;
	rep.rows = r->rows;
	rep.n_thresholds = r->n_cfg;
	rep.thresholds = th;
	rep.n_table_rates = n_table;
	rep.table_rates = table;
	rep.layers = layers;
	rep.best = best ? best_text : NULL;
	rep.notes = notes;
	rep.n_finetuned = r->n_ft_rows;
	rep.finetuned = r->ft_rows;
	rep.finetune = r->ft_note[0] ? r->ft_note : NULL;
	rep.n_classes = r->split[r->eval_split].info.n_classes;
	rep.class_names = r->split[r->eval_split].info.class_names;
	rep.has_stats = 1;
	rep.n_boot = r->bs.n_boot;
	rep.boot_seed = r->seed ^ 0xb0075ULL;
	rep.baseline_acc_lo = r->base_acc_lo;
	rep.baseline_acc_hi = r->base_acc_hi;
	rep.baseline_sensitivity = r->base_sens;
	rep.baseline_specificity = r->base_spec;
	rep.n_images = r->split[r->eval_split].count;
	rep.labels = r->labels;
	rep.baseline_pred = r->base_pred;
	rep.baseline_confidence = r->base_conf;
	snprintf(x.ranking, sizeof(x.ranking), "%s",
		 r->ranking == IAP_RANK_RAW ?
		 "magnitude and random scores ranked globally as they are, unnormalised "
		 "(pruning.baseline_ranking: raw); small-norm layers go first." :
		 r->ranking == IAP_RANK_L2 ?
		 "magnitude and random scores divided by their layer's L2 norm before the global ranking "
		 "(pruning.baseline_ranking: l2, the layer-wise normalisation of Molchanov et al. 2017); "
		 "the attribution methods are ranked as the policy says." :
		 "magnitude and random scores divided by their layer's mean |score| before the global ranking "
		 "(pruning.baseline_ranking: mean); the attribution methods are ranked as the policy says.");
	rep.ranking = x.ranking;
	rc = explanation_extras(r, &rep, &x, per_class_maps, table, n_table);
	rc = rc ? rc : latency_extras(r, &rep, best);
	if (rc) {
		extras_free(&x);
		free(th);
		free(layers);
		return rc;
	}
	/* Every report file is staged and the whole set published with one rename (generation.h). */
	rc = iap_generation_begin(&gen, outpath(r, "report"), r->err);
	if (rc) {
		extras_free(&x);
		free(th);
		free(layers);
		return rc;
	}
	r->report_dir = gen.stage;
	rc = iap_report_write(&rep, r->report_dir, r->err);
	if (!rc && per_class_maps > 0) {
		say(r, IAP_LOG_STAGE, "heatmaps: %d per class", per_class_maps);
		rc = write_heatmaps(r, per_class_maps);
	}
	if (!rc && save && best && best->threshold > 0) {
		char masked[4096], compact[4096];

		snprintf(masked, sizeof(masked), "%s/pruned-masked.safetensors", r->report_dir);
		snprintf(compact, sizeof(compact), "%s/pruned-compact.safetensors", r->report_dir);
		rc = save_pruned(r, best, best->threshold, masked, compact);
	}
	r->report_dir = NULL;
	if (rc)
		iap_generation_abort(&gen);
	else
		rc = iap_generation_commit(&gen, r->err);
	extras_free(&x);
	free(th);
	free(layers);
	return rc;
}

/* ---- fine-tuning after pruning ---------------------------------------------------------------- */

/* The configuration with the largest lossless threshold (the report's best), or NULL. */
static const struct config *best_config(const struct run *r)
{
	const struct config *best = NULL;

	for (int i = 0; i < r->n_cfg; i++)
		if (!best || r->cfg[i].threshold > best->threshold + 1e-12)
			best = &r->cfg[i];
	return best;
}

/*
 * pruning.finetune: every chosen configuration at every fine-tuning rate is
 * masked, trained with its masks held fixed (host/run/finetune.c) and
 * evaluated into the second set of rows; the trained weights are put back
 * after each, so every fine-tuned model starts from the same model.
 */
static int finetune_rows(struct run *r)
{
	struct iap_finetune_cfg ft;
	struct iap_train_cfg recipe;
	struct iap_param_copy dense = { 0 };
	float mean[3] = { 0 }, std[3] = { 1, 1, 1 };
	const struct config *best = best_config(r);
	int rc, jobs, done = 0;

	rc = read_train_cfg(r, &recipe, mean, std);
	rc = rc ? rc : iap_finetune_cfg_read(r->p->root, &recipe, &ft, r->err);
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
	say(r, IAP_LOG_STAGE, "fine-tuning: %d pruned model(s), %d epoch(s) each", jobs, ft.train.epochs);
	rc = iap_param_copy_take(&dense, r->g, r->err);
	for (int i = 0; !rc && i < r->n_cfg; i++) {
		const struct config *c = &r->cfg[i];

		if (ft.best_only && c != best)
			continue;
		for (int k = 0; !rc && k < ft.n_rates; k++) {
			struct iap_report_row *plain = NULL, *row = &r->ft_rows[r->n_ft_rows];

			for (int j = 0; j < r->n_rows && !plain; j++)
				if (r->rows[j].attribution == c->attr->name &&
				    r->rows[j].sampler == (c->smp ? c->smp->name : "-") &&
				    fabs(r->rows[j].rate - ft.rates[k]) < 1e-9)
					plain = &r->rows[j];
			/* A rate only fine-tuning asks for gets its plain row too, for the comparison. */
			if (!plain && (rc = add_row(r, c, ft.rates[k], &plain)))
				break;
			*row = *plain;
			/* Its own predictions and paired statistics, not the plain row's. */
			row->has_stats = row->has_expl = 0;
			row->pred = NULL;
			row->confidence = NULL;
			row->sensitivity = row->specificity = NULL;
			rc = apply_rate(r, c, ft.rates[k]);
			rc = rc ? rc : iap_finetune_masked(r->g, &r->split[IAP_SPLIT_TRAIN], &ft, r->err);
			rc = rc ? rc : evaluate_row(r, row, NULL);
			iap_param_copy_restore(&dense, r->g);
			clear_masks(r);
			if (rc) {
				iap_error_prefix(r->err, "%s / %s at rate %.2f", row->attribution, row->sampler, row->rate);
				break;
			}
			say(r, IAP_LOG_INFO, "%s / %s at %.2f: accuracy %.4f pruned, %.4f fine-tuned", row->attribution,
			    row->sampler, row->rate, plain->m.accuracy, row->m.accuracy);
			r->n_ft_rows++;
			progress(r, "fine-tuned models", ++done, jobs);
		}
	}
out:
	iap_param_copy_free(&dense);
	iap_finetune_cfg_free(&ft);
	return rc;
}

/* ---- the whole run --------------------------------------------------------------------------- */

static int run_experiment(struct run *r)
{
	double *rates = NULL, *table = NULL;
	int n_rates = 0, n_table = 0, total, done = 0, rc;

	rc = run_samplers(r);
	rc = rc ? rc : run_attributions(r);
	rc = rc ? rc : prepare_policy(r);
	rc = rc ? rc : rate_list(r, &rates, &n_rates, &table, &n_table);
	if (rc)
		goto out;
	total = r->n_cfg * n_rates;
	say(r, IAP_LOG_STAGE, "pruning: %d configurations × %d rates", r->n_cfg, n_rates);
	if (r->iterations > 1)
		say(r, IAP_LOG_INFO, "each rate in %d steps, rescoring the masked model between them "
		    "(data-free criteria in one)", r->iterations);
	for (int i = 0; i < r->n_cfg && !rc; i++) {
		for (int k = 0; k < n_rates && !rc; k++) {
			rc = add_row(r, &r->cfg[i], rates[k], NULL);
			progress(r, "pruned evaluations", ++done, total);
		}
		rc = rc ? rc : lossless(r, &r->cfg[i], rates, n_rates);
		if (!rc) {
			char ci[64] = "";

			if (isfinite(r->cfg[i].th_lo))
				snprintf(ci, sizeof(ci), " (95%% interval %.2f to %.2f)", r->cfg[i].th_lo, r->cfg[i].th_hi);
			say(r, IAP_LOG_INFO, "%s / %s: lossless up to %.2f%s", r->cfg[i].attr->name,
			    r->cfg[i].smp ? r->cfg[i].smp->name : "-", r->cfg[i].threshold, ci);
		}
	}
	rc = rc ? rc : finetune_rows(r);
	rc = rc ? rc : write_report(r, table, n_table, r->p->report.heatmaps);
	if (!rc)
		say(r, IAP_LOG_STAGE, "report written to %s/report", r->out);
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

	rc = run_samplers(r);
	rc = rc ? rc : run_attributions(r);
	rc = rc ? rc : prepare_policy(r);
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
	snprintf(path, sizeof(path), "%s", r->o->out_path ? r->o->out_path : outpath(r, "pruned.safetensors"));
	{
		char compact[4200];
		size_t len = strlen(path);

		if (len > 12 && !strcmp(path + len - 12, ".safetensors"))
			snprintf(compact, sizeof(compact), "%.*s-compact.safetensors", (int)(len - 12), path);
		else
			snprintf(compact, sizeof(compact), "%s-compact", path);
		rc = save_pruned(r, c, r->o->prune_rate, path, r->o->compact ? compact : NULL);
		if (!rc)
			say(r, IAP_LOG_STAGE, "pruned %.0f%% of units with %s / %s: %s%s%s", 100 * r->o->prune_rate,
			    c->attr->name, c->smp ? c->smp->name : "-", path, r->o->compact ? " and " : "",
			    r->o->compact ? compact : "");
	}
	return rc;
}

/* The baseline's metrics and predictions, and the bootstrap resamples (report.bootstrap, the run's seed). */
static int baseline_stats(struct run *r)
{
	const struct iap_dataset *ds = &r->split[r->eval_split];
	double *correct;
	long n_boot = r->p->report.bootstrap;
	int rc = evaluate_paired(r, &r->baseline, &r->base_pred, &r->base_conf, &r->base_sens, &r->base_spec,
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

int iap_run(const struct iap_pipeline *p, const struct iap_run_opts *o, struct iap_error *err)
{
	struct run *r = calloc(1, sizeof(*r));
	const char *split;
	int rc = IAP_OK;

	if (!r)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	r->p = p;
	r->lock_fd = -1;
	r->o = o;
	r->err = err;
	r->seed = p->seed;
	r->out = p->output;
	r->eval_split = p->evaluation.split;
	r->eval_batch = p->evaluation.batch_size;
	split = iap_split_name((enum iap_split)r->eval_split);
	{
		int leftovers = 0;

		rc = iap_outdir_prepare(r->out, &r->lock_fd, &leftovers, err);
		if (!rc && leftovers)
			say(r, IAP_LOG_INFO, "%s: removed %d unfinished file(s) of an interrupted run", r->out, leftovers);
	}
	r->ds_plugin = p->dataset.plugin;
	r->ds_opts = p->dataset.opts;
	for (int s = 0; !rc && s < IAP_SPLIT_COUNT; s++)
		rc = open_split(r, (enum iap_split)s);
	if (rc)
		goto out;
	if (r->split[IAP_SPLIT_TRAIN].count == 0) {
		rc = iap_error_set(err, IAP_EINVAL, "dataset '%s': the train split is empty", r->ds_plugin->desc->name);
		goto out;
	}
	if (r->split[r->eval_split].count == 0) {
		rc = iap_error_set(err, IAP_EINVAL, "dataset '%s': the %s split (evaluation.split) is empty",
				   r->ds_plugin->desc->name, split);
		goto out;
	}
	say(r, IAP_LOG_STAGE, "data: %s, %" PRId64 " train / %" PRId64 " val / %" PRId64 " test images, %d classes",
	    r->ds_plugin->desc->name, r->split[0].count, r->split[1].count, r->split[2].count,
	    r->split[0].info.n_classes);
	rc = prepare_model(r);
	if (rc || o->mode == IAP_RUN_TRAIN)
		goto out;
	if (o->mode == IAP_RUN_EVAL) {
		struct iap_metrics m = { 0 };
		struct iap_report_metrics rm;
		char *json = NULL;

		rc = evaluate(r, &rm, &m, NULL);
		if (!rc)
			rc = iap_metrics_json_string(&m, r->split[r->eval_split].info.class_names, &json, err);
		if (!rc) {
			FILE *fp;
			struct iap_atomic_file af;

			rc = iap_atomic_open(&af, outpath(r, "metrics.json"), err);
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
					say(r, IAP_LOG_INFO, "%s", text);
					free(text);
				}
			}
		}
		free(json);
		iap_metrics_free(&m);
		goto out;
	}
	say(r, IAP_LOG_STAGE, "baseline on the %s split", split);
	rc = baseline_stats(r);
	if (rc)
		goto out;
	say(r, IAP_LOG_INFO, "baseline accuracy %.4f, balanced accuracy %.4f", r->baseline.accuracy,
	    r->baseline.balanced_accuracy);
	rc = o->mode == IAP_RUN_PRUNE ? run_prune(r) : run_experiment(r);
out:
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
		free_row(&r->rows[i]);
	free(r->rows);
	for (int i = 0; r->ft_rows && i < r->n_ft_rows; i++)
		free_row(&r->ft_rows[i]);
	free(r->ft_rows);
	iap_dir_unlock(r->lock_fd);
	iap_bootstrap_free(&r->bs);
	free(r->labels);
	free(r->base_pred);
	free(r->base_conf);
	free(r->base_sens);
	free(r->base_spec);
	free(r);
	return rc;
}
