/*
 * The model stage: the model built, its weights loaded or trained with the
 * pipeline's recipe (checkpointed, resumed only with the same settings and
 * data), and saved as <output>/model.safetensors.
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

#include "items.h"
#include "stages.h"

/* Half-precision exports load as float32; the user is told (the file is already known to open). */
static void note_half_precision(struct run *r, const char *path)
{
	struct iap_safetensors *st;
	struct iap_error e;
	char note[512];

	if (iap_safetensors_open(path, &st, &e))
		return;
	if (iap_weights_half_note(st, note, sizeof(note)))
		run_say(r, IAP_LOG_INFO, "note: %s", note);
	iap_safetensors_close(st);
}

/* Save g with the model description and up to two more metadata entries (NULL keys: none). */
int run_save_model_meta(struct run *r, struct iap_graph *g, const char *path, const char *extra_key,
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

int run_save_model(struct run *r, struct iap_graph *g, const char *path, const char *extra_key,
		   const char *extra_value)
{
	return run_save_model_meta(r, g, path, extra_key, extra_value, NULL, NULL);
}

struct train_ui {
	struct run *r;
};

static void on_epoch(void *user, const struct iap_epoch_report *e)
{
	struct run *r = ((struct train_ui *)user)->r;

	if (e->has_val)
		run_say(r, IAP_LOG_INFO, "epoch %d/%d: loss %.4f, train accuracy %.3f, val accuracy %.3f%s (%.1f s)",
		    e->epoch, e->n_epochs, e->train_loss, e->train_acc, e->val_acc, e->is_best ? " (best)" : "",
		    e->seconds);
	else
		run_say(r, IAP_LOG_INFO, "epoch %d/%d: loss %.4f, train accuracy %.3f (%.1f s)", e->epoch,
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
	run_progress(r, stage, batch, n_batches);
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
int run_train_cfg(struct run *r, struct iap_train_cfg *out, float *mean, float *std)
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

	rc = run_train_cfg(r, &cfg, mean, std);
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
			run_say(r, IAP_LOG_WARN, "%s holds a checkpoint made with other settings (%s): training starts fresh",
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
	run_say(r, IAP_LOG_STAGE, "training %s for %d epochs on %" PRId64 " images", r->model_plugin->desc->name,
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
		run_say(r, IAP_LOG_INFO, "using epoch %d (best validation accuracy %.3f)", res.best_epoch,
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

	p.train_batch = r->p->weights ? 0 : (int)batch;
	/* Fine-tuning after pruning trains too, at its own batch size (the recipe's by default). */
	if (r->p->pruning.finetune.enabled) {
		long ft = r->p->pruning.finetune.batch_size ? r->p->pruning.finetune.batch_size : batch;

		p.train_batch = (int)(ft > p.train_batch ? ft : p.train_batch);
	}
	return iap_run_plan_memory(&p, &need, r->err);
}

int run_stage_model(struct run *r)
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
	/* The other ranks take rank 0's parameters: trained or loaded once, the same bytes everywhere. */
	if (r->rank != 0)
		return run_share_params(r);
	if (weights) {
		run_say(r, IAP_LOG_STAGE, "loading %s", weights);
		rc = iap_graph_load_weights_file(r->g, weights, 0, r->err);
		if (rc)
			return rc;
		note_half_precision(r, weights);
	} else {
		rc = train_model(r);
		if (rc)
			return rc;
	}
	rc = run_save_model(r, r->g, run_outpath(r, "model.safetensors"), NULL, NULL);
	return rc ? rc : run_share_params(r);
}
