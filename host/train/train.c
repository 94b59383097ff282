/*
 * iaprune — the training loop (shuffled, augmented mini-batches; weighted
 * cross-entropy; Adam with StepLR; validation, best and resumable
 * checkpoints) and the evaluation loop.
 *
 * Reproducibility: every epoch draws its shuffling, augmentation and dropout
 * from generators seeded by (cfg->seed, epoch) alone, so an epoch does the
 * same thing whether the run was interrupted before it or not; with the
 * weights, buffers and Adam state restored from a checkpoint, a resumed run
 * equals an uninterrupted one.
 *
 * Buffers: one [B, sample...] batch tensor, its labels, the permutation and
 * the augmentation scratch are allocated once per call; a partial last batch
 * is a view over the first rows of the same tensor.
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <iaprune/atomic.h>
#include <iaprune/compact.h>
#include <iaprune/generation.h>
#include <iaprune/ops.h>
#include <iaprune/safetensors.h>
#include <iaprune/batcher.h>
#include <iaprune/train.h>
#include <iaprune/weights.h>

#define OPTIM_FORMAT "iaprune-adam-1"

void iap_train_cfg_defaults(struct iap_train_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->epochs = 30;
	cfg->batch_size = 32;
	cfg->adam = (struct iap_adam_cfg){
		.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0,
	};
	cfg->lr_step_size = 10;
	cfg->lr_gamma = 0.1;
	cfg->class_weights = 1;
	cfg->shuffle = 1;
	cfg->seed = 0;
	iap_augment_cfg_defaults(&cfg->augment);
}

/* ---- batches ----------------------------------------------------------------- */

/* Check that ds fits g: same sample shape, as many classes as g has outputs. */
static int check_dataset(const struct iap_graph *g, const struct iap_dataset *ds, const char *what,
			 struct iap_error *err)
{
	const struct iap_node *out;

	if (!ds || !ds->ops || !ds->ops->load)
		return iap_error_set(err, IAP_EINVAL, "%s dataset: not open", what);
	if (ds->count < 1)
		return iap_error_set(err, IAP_EINVAL, "%s dataset: no samples", what);
	if (ds->info.in_ndim != g->in_ndim)
		goto bad_shape;
	for (int k = 0; k < g->in_ndim; k++)
		if (ds->info.in_shape[k] != g->in_shape[k])
			goto bad_shape;
	out = &g->nodes[g->output];
	if (out->out_ndim != 1 || out->out_shape[0] != ds->info.n_classes)
		return iap_error_set(err, IAP_ESHAPE,
				     "%s dataset: %d classes, but the model's output is not [N, %d]",
				     what, ds->info.n_classes, ds->info.n_classes);
	return IAP_OK;

bad_shape:;
	char a[96], b[96];
	return iap_error_set(err, IAP_ESHAPE, "%s dataset: samples are %s, the model takes %s", what,
			     iap_shape_str(ds->info.in_ndim, ds->info.in_shape, a, sizeof(a)),
			     iap_shape_str(g->in_ndim, g->in_shape, b, sizeof(b)));
}

/* A batch of at most batch samples, never more rows than ds has (the SDK's batcher, labels checked). */
static int batcher_init(struct iap_batcher *b, const struct iap_dataset *ds, int batch, struct iap_error *err)
{
	return iap_batcher_init(b, ds, (int64_t)batch > ds->count ? (int)ds->count : batch, err);
}

/* ---- evaluation ----------------------------------------------------------------- */

/*
 * Evaluation-mode pass over ds in order: softmax probabilities into
 * probs[count][C], labels into labels[count], mean unweighted cross-entropy
 * into *loss.
 */
static int eval_pass(struct iap_graph *g, struct iap_batcher *b, float *probs, int *labels,
		     double *loss, struct iap_error *err)
{
	const struct iap_dataset *ds = b->ds;
	int c = ds->info.n_classes;
	double total = 0.0;
	int rc;

	for (int64_t start = 0; start < ds->count; start += b->batch) {
		int n = (int)(ds->count - start < b->batch ? ds->count - start : b->batch);
		const struct iap_tensor *out;
		float batch_loss;

		for (int j = 0; j < n; j++) {
			rc = iap_batcher_load(b, j, start + j, err);
			if (rc)
				return rc;
		}
		rc = iap_graph_forward(g, iap_batcher_view(b, n), err);
		if (rc)
			return rc;
		out = iap_graph_output(g);
		rc = iap_cross_entropy(out, b->labels, NULL, &batch_loss, NULL, err);
		if (rc) {
			iap_error_prefix(err, "%s samples %lld..%lld", iap_split_name(ds->split),
					 (long long)start, (long long)(start + n - 1));
			return rc;
		}
		total += (double)batch_loss * n;
		iap_softmax_rows(out->data, probs + start * c, n, c);
		memcpy(labels + start, b->labels, (size_t)n * sizeof(*labels));
	}
	*loss = total / (double)ds->count;
	return IAP_OK;
}

static double accuracy_of(const float *probs, const int *labels, int64_t n, int c)
{
	int64_t correct = 0;

	for (int64_t i = 0; i < n; i++) {
		const float *p = probs + i * c;
		int best = 0;

		for (int k = 1; k < c; k++)
			if (p[k] > p[best])
				best = k;
		correct += best == labels[i];
	}
	return (double)correct / (double)n;
}

int iap_evaluate(struct iap_graph *g, const struct iap_dataset *ds, int batch,
		 struct iap_metrics *m, struct iap_error *err)
{
	struct iap_batcher b;
	float *probs = NULL;
	int *labels = NULL;
	int training, rc;
	double loss;

	if (!g || !m || batch < 1)
		return iap_error_set(err, IAP_EINVAL, "evaluate: need a graph, metrics and batch >= 1");
	rc = check_dataset(g, ds, "evaluation", err);
	if (rc)
		return rc;
	rc = batcher_init(&b, ds, batch, err);
	if (rc)
		return rc;
	probs = malloc((size_t)ds->count * (size_t)ds->info.n_classes * sizeof(*probs));
	labels = malloc((size_t)ds->count * sizeof(*labels));
	if (!probs || !labels) {
		rc = iap_error_set(err, IAP_ENOMEM, "evaluate: out of memory for %lld predictions",
				   (long long)ds->count);
		goto out_free;
	}
	training = g->training;
	iap_graph_set_training(g, 0);
	rc = eval_pass(g, &b, probs, labels, &loss, err);
	iap_graph_set_training(g, training);
	if (rc)
		goto out_free;
	rc = iap_metrics_compute(m, ds->count, ds->info.n_classes, labels, probs, err);
	if (rc)
		goto out_free;
	m->has_loss = 1;
	m->loss = loss;

out_free:
	free(labels);
	free(probs);
	iap_batcher_free(&b);
	return rc;
}

/* ---- checkpoints ----------------------------------------------------------------- */

#define CKPT_LAST "last.safetensors"
#define CKPT_OPTIM "last.optim.safetensors"
#define CKPT_BEST "best.safetensors"
#define CKPT_SETTINGS "settings.txt"

struct ckpt {
	char *dir;
	char *settings;                     /* settings.txt's text */
	char *last, *optim, *best;          /* file paths in the visible generation */
	char **names;                       /* "m.<key>", "v.<key>" per trainable parameter */
	struct iap_st_entry *entries;       /* 2n, pointing into the optimizer */
};

static void ckpt_free(struct ckpt *ck)
{
	free(ck->dir);
	free(ck->settings);
	free(ck->last);
	free(ck->optim);
	free(ck->best);
	for (int i = 0; ck->names && ck->names[i]; i++)
		free(ck->names[i]);
	free(ck->names);
	free(ck->entries);
	memset(ck, 0, sizeof(*ck));
}

static char *join(const char *a, const char *b)
{
	size_t n = strlen(a) + strlen(b) + 2;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s/%s", a, b);
	return s;
}

/* One "key=value" line into a growing buffer. */
__attribute__((format(printf, 3, 4)))
static void line(FILE *f, const char *key, const char *fmt, ...)
{
	va_list ap;

	fprintf(f, "%s=", key);
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
}

char *iap_train_settings(const struct iap_train_cfg *cfg)
{
	const struct iap_augment_cfg *a = &cfg->augment;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return NULL;
	/* %.17g: a value that changes in its last bit still counts as changed. */
	line(f, "seed", "%llu", (unsigned long long)cfg->seed);
	line(f, "batch_size", "%d", cfg->batch_size);
	line(f, "lr", "%.17g", cfg->adam.lr);
	line(f, "betas", "%.17g,%.17g", cfg->adam.beta1, cfg->adam.beta2);
	line(f, "eps", "%.17g", cfg->adam.eps);
	line(f, "weight_decay", "%.17g", cfg->adam.weight_decay);
	line(f, "step_size", "%d", cfg->lr_step_size);
	line(f, "gamma", "%.17g", cfg->lr_gamma);
	line(f, "class_weights", "%d", cfg->class_weights);
	line(f, "shuffle", "%d", cfg->shuffle);
	line(f, "augment.crop", "%d,%.17g,%.17g,%.17g,%.17g", a->crop, a->crop_scale[0], a->crop_scale[1],
	     a->crop_ratio[0], a->crop_ratio[1]);
	line(f, "augment.flip", "%.17g,%.17g", a->hflip_p, a->vflip_p);
	line(f, "augment.rotate", "%.17g", a->rotate_deg);
	line(f, "augment.jitter", "%.17g,%.17g,%.17g", a->brightness, a->contrast, a->saturation);
	if (cfg->identity) {
		fputs(cfg->identity, f);
		if (*cfg->identity && cfg->identity[strlen(cfg->identity) - 1] != '\n')
			fputc('\n', f);
	}
	if (fclose(f) != 0) {
		free(text);
		return NULL;
	}
	return text;
}

/* The value of key in a settings text ("" when absent), into out. */
static void settings_value(const char *text, const char *key, size_t klen, char *out, size_t len)
{
	out[0] = '\0';
	for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			const char *v = p + klen + 1, *e = strchr(v, '\n');
			size_t n = e ? (size_t)(e - v) : strlen(v);

			snprintf(out, len, "%.*s", (int)n, v);
			return;
		}
}

/* First line of a that b lacks or has with another value; 1 when found. */
static int settings_diff(const char *a, const char *b, int a_is_new, char *what, size_t len)
{
	for (const char *p = a; *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : p + strlen(p)) {
		const char *eq = strchr(p, '='), *nl = strchr(p, '\n');
		char va[256], vb[256];

		if (!eq || (nl && eq > nl))
			continue;
		settings_value(a, p, (size_t)(eq - p), va, sizeof(va));
		settings_value(b, p, (size_t)(eq - p), vb, sizeof(vb));
		if (strcmp(va, vb)) {
			snprintf(what, len, "%.*s=%s (now %s)", (int)(eq - p), p, a_is_new ? vb : va,
				 a_is_new ? va : vb);
			return 1;
		}
	}
	return 0;
}

int iap_train_checkpoint_differs(const char *dir, const struct iap_train_cfg *cfg, char *what, size_t len)
{
	char *last = join(dir, CKPT_LAST), *optim = join(dir, CKPT_OPTIM), *path = join(dir, CKPT_SETTINGS);
	char *now = iap_train_settings(cfg), *old = NULL;
	size_t n = 0;
	int rc = 0;
	FILE *f;

	snprintf(what, len, "%s", "");
	if (!last || !optim || !path || !now) {
		rc = -1;
		goto out;
	}
	if (access(last, F_OK) != 0 && access(optim, F_OK) != 0)
		goto out;
	f = fopen(path, "r");
	if (!f) {
		snprintf(what, len, "no record of the settings it was made with");
		rc = 1;
		goto out;
	}
	if (getdelim(&old, &n, '\0', f) < 0) {
		free(old);
		old = strdup("");
	}
	fclose(f);
	if (!old) {
		rc = -1;
		goto out;
	}
	rc = settings_diff(now, old, 1, what, len) || settings_diff(old, now, 0, what, len);
out:
	free(old);
	free(now);
	free(path);
	free(optim);
	free(last);
	return rc;
}

static int ckpt_init(struct ckpt *ck, const char *dir, const struct iap_train_cfg *cfg,
		     const struct iap_adam *opt, struct iap_error *err)
{
	int rc;

	memset(ck, 0, sizeof(*ck));
	if (mkdir(dir, 0777) != 0 && errno != EEXIST)
		return iap_error_set(err, IAP_EWRITE, "%s: cannot create checkpoint directory: %s", dir,
				     strerror(errno));
	/* A run killed while saving left a staging directory: never used, removed now. */
	rc = iap_generation_clean(dir, NULL, err);
	if (rc)
		return rc;
	ck->dir = strdup(dir);
	ck->settings = iap_train_settings(cfg);
	ck->last = join(dir, CKPT_LAST);
	ck->optim = join(dir, CKPT_OPTIM);
	ck->best = join(dir, CKPT_BEST);
	ck->names = calloc(2 * (size_t)opt->n + 1, sizeof(*ck->names));
	ck->entries = calloc(2 * (size_t)opt->n + 1, sizeof(*ck->entries));
	if (!ck->dir || !ck->settings || !ck->last || !ck->optim || !ck->best || !ck->names || !ck->entries)
		goto out_nomem;
	for (int i = 0; i < opt->n; i++) {
		const char *key = opt->params[i]->key;

		ck->names[2 * i] = malloc(strlen(key) + 3);
		if (!ck->names[2 * i])
			goto out_nomem;
		sprintf(ck->names[2 * i], "m.%s", key);
		ck->names[2 * i + 1] = malloc(strlen(key) + 3);
		if (!ck->names[2 * i + 1])
			goto out_nomem;
		sprintf(ck->names[2 * i + 1], "v.%s", key);
		ck->entries[2 * i] = (struct iap_st_entry){ ck->names[2 * i], &opt->m[i] };
		ck->entries[2 * i + 1] = (struct iap_st_entry){ ck->names[2 * i + 1], &opt->v[i] };
	}
	return IAP_OK;

out_nomem:
	ckpt_free(ck);
	return iap_error_set(err, IAP_ENOMEM, "checkpoints: out of memory");
}

/* What is saved besides tensors; everything resume needs to continue exactly. */
struct ckpt_state {
	int epoch;          /* epochs completed */
	int64_t step;
	double best_score;
	int best_epoch;
};

static int ckpt_save(struct ckpt *ck, struct iap_graph *g, const struct iap_adam *opt,
		     const struct ckpt_state *cs, int is_best, struct iap_error *err)
{
	char epoch[32], step[32], best[40], best_epoch[32], path[4096];
	struct iap_generation gen;
	struct iap_atomic_file af;
	struct iap_st_meta wmeta[] = { { "format", "pt" }, { "iaprune.epoch", epoch } };
	struct iap_st_meta ometa[] = {
		{ "format", OPTIM_FORMAT }, { "epoch", epoch }, { "step", step },
		{ "best_score", best },     { "best_epoch", best_epoch },
	};
	int rc;

	snprintf(epoch, sizeof(epoch), "%d", cs->epoch);
	snprintf(step, sizeof(step), "%lld", (long long)cs->step);
	snprintf(best, sizeof(best), "%.17g", cs->best_score);
	snprintf(best_epoch, sizeof(best_epoch), "%d", cs->best_epoch);
	/*
	 * The optimizer state, the weights, the best weights and the settings
	 * become visible together: a run killed at any point resumes from one
	 * complete epoch (both files still carry the epoch, checked on load).
	 */
	rc = iap_generation_begin(&gen, ck->dir, err);
	if (rc)
		return rc;
	if (iap_generation_path(&gen, CKPT_OPTIM, path, sizeof(path)))
		rc = iap_safetensors_write(path, ck->entries, 2 * opt->n, ometa,
					   (int)(sizeof(ometa) / sizeof(ometa[0])), err);
	else
		rc = iap_error_set(err, IAP_EINVAL, "%s: path too long", ck->dir);
	if (!rc && iap_generation_path(&gen, CKPT_LAST, path, sizeof(path)))
		rc = iap_graph_save_weights(g, path, wmeta, (int)(sizeof(wmeta) / sizeof(wmeta[0])), err);
	if (!rc && is_best && iap_generation_path(&gen, CKPT_BEST, path, sizeof(path)))
		rc = iap_graph_save_weights(g, path, wmeta, (int)(sizeof(wmeta) / sizeof(wmeta[0])), err);
	if (!rc && !is_best) {
		int carried;

		rc = iap_generation_carry(&gen, CKPT_BEST, &carried, err);
		if (!rc && !carried && cs->best_epoch > 0)
			rc = iap_error_set(err, IAP_EFORMAT, "%s: missing (the best epoch %d's weights)", ck->best,
					   cs->best_epoch);
	}
	if (!rc && iap_generation_path(&gen, CKPT_SETTINGS, path, sizeof(path))) {
		rc = iap_atomic_open(&af, path, err);
		if (!rc) {
			fputs(ck->settings, af.fp);
			rc = ferror(af.fp) ? iap_atomic_fail(&af, err) : iap_atomic_commit(&af, err);
		}
	}
	if (rc) {
		iap_generation_abort(&gen);
		return rc;
	}
	return iap_generation_commit(&gen, err);
}

static int meta_long(const struct iap_safetensors *st, const char *key, long long *v,
		     struct iap_error *err)
{
	const char *s = iap_safetensors_meta(st, key);
	char *end;

	if (!s)
		return iap_error_set(err, IAP_EFORMAT, "%s: metadata '%s' missing", st->path, key);
	errno = 0;
	*v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return iap_error_set(err, IAP_EFORMAT, "%s: metadata '%s' = '%s' is not an integer",
				     st->path, key, s);
	return IAP_OK;
}

/* Read tensor name into t, which must have exactly its shape. */
static int read_state(const struct iap_safetensors *st, const char *name, struct iap_tensor *t,
		      struct iap_error *err)
{
	const struct iap_st_tensor *e = iap_safetensors_find(st, name);

	if (!e)
		return iap_error_set(err, IAP_EFORMAT, "%s: tensor '%s' missing", st->path, name);
	if (e->ndim != t->ndim)
		goto bad_shape;
	for (int k = 0; k < t->ndim; k++)
		if (e->shape[k] != t->shape[k])
			goto bad_shape;
	return iap_safetensors_read_f32(st, e, t->data, err);

bad_shape:
	return iap_error_set(err, IAP_ESHAPE, "%s: tensor '%s' does not match the model's shape",
			     st->path, name);
}

/*
 * Restore weights and optimizer state from the last checkpoint. *found is 0
 * when the directory holds neither file (a fresh start).
 */
static int ckpt_load(struct ckpt *ck, struct iap_graph *g, struct iap_adam *opt,
		     struct ckpt_state *cs, int *found, struct iap_error *err)
{
	struct iap_safetensors *ws = NULL, *os = NULL;
	int have_w = access(ck->last, F_OK) == 0, have_o = access(ck->optim, F_OK) == 0;
	long long wepoch, v;
	const char *fmt;
	char *end;
	int rc;

	*found = 0;
	if (!have_w && !have_o)
		return IAP_OK;
	if (!have_w || !have_o)
		return iap_error_set(err, IAP_EFORMAT, "cannot resume: only one of %s and %s exists",
				     ck->last, ck->optim);
	rc = iap_safetensors_open(ck->optim, &os, err);
	if (rc)
		return rc;
	fmt = iap_safetensors_meta(os, "format");
	if (!fmt || strcmp(fmt, OPTIM_FORMAT) != 0) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: not an iaprune optimizer state (format %s)",
				   ck->optim, fmt ? fmt : "missing");
		goto out_close;
	}
	if ((rc = meta_long(os, "epoch", &v, err)))
		goto out_close;
	cs->epoch = (int)v;
	if ((rc = meta_long(os, "step", &v, err)))
		goto out_close;
	cs->step = v;
	if ((rc = meta_long(os, "best_epoch", &v, err)))
		goto out_close;
	cs->best_epoch = (int)v;
	fmt = iap_safetensors_meta(os, "best_score");
	cs->best_score = fmt ? strtod(fmt, &end) : 0.0;
	if (!fmt || end == fmt || *end) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: metadata 'best_score' missing or malformed",
				   ck->optim);
		goto out_close;
	}
	for (int i = 0; i < opt->n; i++) {
		rc = read_state(os, ck->names[2 * i], &opt->m[i], err);
		if (!rc)
			rc = read_state(os, ck->names[2 * i + 1], &opt->v[i], err);
		if (rc)
			goto out_close;
	}
	if (os->n_tensors != 2 * opt->n) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: %d tensors, the model needs %d", ck->optim,
				   os->n_tensors, 2 * opt->n);
		goto out_close;
	}
	opt->step = cs->step;

	rc = iap_safetensors_open(ck->last, &ws, err);
	if (rc)
		goto out_close;
	if ((rc = meta_long(ws, "iaprune.epoch", &wepoch, err)))
		goto out_close;
	if (wepoch != cs->epoch) {
		rc = iap_error_set(err, IAP_EFORMAT,
				   "%s: weights are from epoch %lld but the optimizer state from epoch %d "
				   "(interrupted while saving?)", ck->last, wepoch, cs->epoch);
		goto out_close;
	}
	rc = iap_graph_load_weights(g, ws, 0, err);
	if (rc)
		goto out_close;
	*found = 1;

out_close:
	if (ws)
		iap_safetensors_close(ws);
	iap_safetensors_close(os);
	return rc;
}

/* ---- the loop ---------------------------------------------------------------------- */

static double now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int augment_enabled(const struct iap_augment_cfg *a)
{
	return a->crop || a->hflip_p > 0.0 || a->vflip_p > 0.0 || a->rotate_deg > 0.0 ||
	       a->brightness > 0.0 || a->contrast > 0.0 || a->saturation > 0.0;
}

/* Per-epoch seeds: distinct streams from (seed, epoch), independent of earlier epochs. */
static uint64_t epoch_seed(uint64_t seed, int epoch, uint64_t stream)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed ^ (0x9E3779B97F4A7C15ull * (uint64_t)(epoch + 1)) ^ stream);
	return iap_rng_next(&r);
}

static int check_cfg(const struct iap_train_cfg *cfg, struct iap_error *err)
{
	if (cfg->epochs < 1 || cfg->batch_size < 1)
		return iap_error_set(err, IAP_EINVAL, "train: epochs (%d) and batch size (%d) must be >= 1",
				     cfg->epochs, cfg->batch_size);
	if (cfg->lr_step_size < 0 || !(cfg->lr_gamma > 0.0))
		return iap_error_set(err, IAP_EINVAL, "train: StepLR step %d / gamma %g out of range",
				     cfg->lr_step_size, cfg->lr_gamma);
	if (cfg->resume && !cfg->checkpoint_dir)
		return iap_error_set(err, IAP_EINVAL, "train: resume needs a checkpoint directory");
	return IAP_OK;
}

/* Train-set labels (one pass over the data) and the inverse-frequency weights. */
static int train_class_weights(struct iap_batcher *b, float *weights, struct iap_error *err)
{
	const struct iap_dataset *ds = b->ds;
	int *labels = malloc((size_t)ds->count * sizeof(*labels));
	int rc = IAP_OK;

	if (!labels)
		return iap_error_set(err, IAP_ENOMEM, "train: out of memory for %lld labels",
				     (long long)ds->count);
	for (int64_t i = 0; i < ds->count; i++) {
		rc = iap_batcher_load(b, 0, i, err);
		if (rc)
			goto out_free;
		labels[i] = b->labels[0];
	}
	rc = iap_class_weights(ds->count, labels, ds->info.n_classes, weights, err);
out_free:
	free(labels);
	return rc;
}

/* What one training run holds from setup to the last epoch (iap_train's steps). */
struct trainer {
	struct iap_graph *g;
	const struct iap_dataset *train, *val;
	const struct iap_train_cfg *cfg;
	struct iap_train_result *res;
	struct iap_batcher tb, vb;
	struct iap_adam opt;
	struct ckpt ck;
	struct ckpt_state cs;
	struct iap_tensor dlogits;
	struct iap_rng rng;
	float *weights, *scratch, *vprobs;
	int64_t *perm, n_batches, done_batches, total_batches;
	int *vlabels, c, augment;
	double t_start;
};

/* Arguments, datasets and the augmentation's sample shape checked before anything is allocated. */
static int trainer_check(const struct trainer *T, struct iap_error *err)
{
	int rc;

	if ((rc = check_cfg(T->cfg, err)))
		return rc;
	if ((rc = check_dataset(T->g, T->train, "training", err)))
		return rc;
	if (T->val && (rc = check_dataset(T->g, T->val, "validation", err)))
		return rc;
	if (augment_enabled(&T->cfg->augment) && T->g->in_ndim != 3)
		return iap_error_set(err, IAP_EINVAL,
				     "train: augmentations need C×H×W samples (%d axes given); switch them off",
				     T->g->in_ndim);
	return IAP_OK;
}

/* Batchers, the loop's buffers, the class weights, the optimiser and zeroed gradients. */
static int trainer_setup(struct trainer *T, struct iap_error *err)
{
	const struct iap_graph *g = T->g;
	int rc;

	if ((rc = batcher_init(&T->tb, T->train, T->cfg->batch_size, err)))
		return rc;
	if (T->val && (rc = batcher_init(&T->vb, T->val, T->cfg->batch_size, err)))
		return rc;
	T->perm = malloc((size_t)T->train->count * sizeof(*T->perm));
	T->weights = malloc((size_t)T->c * sizeof(*T->weights));
	if (T->augment)
		T->scratch = iap_alloc_floats(iap_augment_scratch((int)g->in_shape[0], (int)g->in_shape[1],
								  (int)g->in_shape[2]));
	if (T->val) {
		T->vprobs = malloc((size_t)T->val->count * (size_t)T->c * sizeof(*T->vprobs));
		T->vlabels = malloc((size_t)T->val->count * sizeof(*T->vlabels));
	}
	if (!T->perm || !T->weights || (T->augment && !T->scratch) || (T->val && (!T->vprobs || !T->vlabels)))
		return iap_error_set(err, IAP_ENOMEM, "train: out of memory for the loop's buffers");
	if (T->cfg->class_weights && (rc = train_class_weights(&T->tb, T->weights, err)))
		return rc;
	if ((rc = iap_adam_init(&T->opt, T->g, &T->cfg->adam, err)))
		return rc;
	return iap_graph_zero_grads(T->g, err);
}

/* The checkpoint folder, and the state of an earlier run of the same settings when resuming. */
static int trainer_resume(struct trainer *T, struct iap_error *err)
{
	int found, rc;

	T->cs = (struct ckpt_state){ .best_score = -1.0 };
	if (!T->cfg->checkpoint_dir)
		return IAP_OK;
	if ((rc = ckpt_init(&T->ck, T->cfg->checkpoint_dir, T->cfg, &T->opt, err)))
		return rc;
	if (!T->cfg->resume)
		return IAP_OK;
	rc = ckpt_load(&T->ck, T->g, &T->opt, &T->cs, &found, err);
	if (rc) {
		iap_error_prefix(err, "resume");
		return rc;
	}
	if (!found)
		T->cs = (struct ckpt_state){ .best_score = -1.0 };
	return IAP_OK;
}

/* The epoch's sample order: 0 .. count-1, shuffled (Fisher-Yates) when the recipe says so. */
static void epoch_order(struct trainer *T)
{
	for (int64_t i = 0; i < T->train->count; i++)
		T->perm[i] = i;
	if (!T->cfg->shuffle)
		return;
	for (int64_t i = T->train->count - 1; i > 0; i--) {
		int64_t j = (int64_t)iap_rng_below(&T->rng, (uint64_t)i + 1), t = T->perm[i];

		T->perm[i] = T->perm[j];
		T->perm[j] = t;
	}
}

/* Batch bi's samples loaded and augmented into the batcher (n of them). */
static int load_train_batch(struct trainer *T, int64_t bi, int n, struct iap_error *err)
{
	const struct iap_graph *g = T->g;
	int64_t start = bi * T->tb.batch;
	int rc;

	for (int j = 0; j < n; j++) {
		if ((rc = iap_batcher_load(&T->tb, j, T->perm[start + j], err)))
			return rc;
		if (T->augment &&
		    (rc = iap_augment(&T->cfg->augment, &T->rng, T->tb.x.data + j * T->tb.sample_numel,
				      (int)g->in_shape[0], (int)g->in_shape[1], (int)g->in_shape[2], T->scratch, err)))
			return rc;
	}
	return IAP_OK;
}

/* One optimiser step on the loaded batch: its loss into *loss, its correct predictions added to *correct. */
static int train_step(struct trainer *T, int n, float *loss, int64_t *correct, struct iap_error *err)
{
	static const struct iap_walk_opts wopts = { .want_param_grads = 1 };
	const struct iap_tensor *out;
	int rc;

	if ((rc = iap_graph_forward(T->g, iap_batcher_view(&T->tb, n), err)))
		return rc;
	out = iap_graph_output(T->g);
	rc = iap_cross_entropy(out, T->tb.labels, T->cfg->class_weights ? T->weights : NULL, loss, &T->dlogits, err);
	if (rc)
		return rc;
	for (int j = 0; j < n; j++) {
		const float *p = out->data + (int64_t)j * T->c;
		int best = 0;

		for (int k = 1; k < T->c; k++)
			if (p[k] > p[best])
				best = k;
		*correct += best == T->tb.labels[j];
	}
	if ((rc = iap_graph_zero_grads(T->g, err)) ||
	    (rc = iap_graph_backward(T->g, iap_ruleset_gradient(), &T->dlogits, &wopts, err)) ||
	    (rc = iap_adam_step(&T->opt, err)) ||
	    (T->cfg->hold_masks && (rc = iap_graph_bake_masks(T->g, err))))
		return rc;
	return IAP_OK;
}

/* One pass over the shuffled train split: the epoch's mean loss and accuracy into rep. */
static int train_epoch(struct trainer *T, int epoch, struct iap_epoch_report *rep, struct iap_error *err)
{
	const struct iap_train_cfg *cfg = T->cfg;
	double loss_sum = 0.0;
	int64_t correct = 0, seen = 0;
	int rc;

	iap_rng_seed(&T->rng, epoch_seed(cfg->seed, epoch, 0));
	iap_graph_seed(T->g, epoch_seed(cfg->seed, epoch, 0xD1B54A32D192ED03ull));
	T->opt.lr = iap_steplr(cfg->adam.lr, cfg->lr_step_size, cfg->lr_gamma, epoch);
	rep->lr = T->opt.lr;
	epoch_order(T);
	iap_graph_set_training(T->g, 1);
	for (int64_t bi = 0; bi < T->n_batches; bi++) {
		int64_t start = bi * T->tb.batch;
		int n = (int)(T->train->count - start < T->tb.batch ? T->train->count - start : T->tb.batch);
		float loss;

		if ((rc = load_train_batch(T, bi, n, err)))
			return rc;
		if ((rc = train_step(T, n, &loss, &correct, err))) {
			iap_error_prefix(err, "training");
			return rc;
		}
		loss_sum += (double)loss * n;
		seen += n;
		T->done_batches++;
		if (cfg->progress) {
			double el = now_seconds() - T->t_start;
			double eta = el / (double)T->done_batches * (double)(T->total_batches - T->done_batches);

			cfg->progress(cfg->progress_user, epoch + 1, bi + 1, T->n_batches, loss_sum / (double)seen,
				      (double)correct / (double)seen, eta);
		}
	}
	iap_graph_set_training(T->g, 0);
	rep->train_loss = loss_sum / (double)seen;
	rep->train_acc = (double)correct / (double)seen;
	return IAP_OK;
}

/* After an epoch: validation, the best epoch so far, the checkpoint, the result and the callback. */
static int finish_epoch(struct trainer *T, int epoch, struct iap_epoch_report *rep, double t_epoch,
			struct iap_error *err)
{
	double score;
	int rc;

	if (T->val) {
		if ((rc = eval_pass(T->g, &T->vb, T->vprobs, T->vlabels, &rep->val_loss, err))) {
			iap_error_prefix(err, "epoch %d validation", epoch + 1);
			return rc;
		}
		rep->has_val = 1;
		rep->val_acc = accuracy_of(T->vprobs, T->vlabels, T->val->count, T->c);
	}
	/* The first epoch always sets the best; later ones must beat it. */
	score = T->val ? rep->val_acc : rep->train_acc;
	rep->is_best = score > T->cs.best_score;
	if (rep->is_best) {
		T->cs.best_score = score;
		T->cs.best_epoch = epoch + 1;
	}
	T->cs.epoch = epoch + 1;
	T->cs.step = T->opt.step;
	if (T->cfg->checkpoint_dir && (rc = ckpt_save(&T->ck, T->g, &T->opt, &T->cs, rep->is_best, err))) {
		iap_error_prefix(err, "epoch %d checkpoint", epoch + 1);
		return rc;
	}
	rep->seconds = now_seconds() - t_epoch;
	if (T->res) {
		T->res->epochs_done = epoch + 1;
		T->res->last_train_loss = rep->train_loss;
		T->res->last_val_acc = rep->val_acc;
		T->res->best_epoch = T->cs.best_epoch;
		T->res->best_score = T->cs.best_score;
	}
	if (T->cfg->on_epoch)
		T->cfg->on_epoch(T->cfg->epoch_user, rep);
	return IAP_OK;
}

static void trainer_free(struct trainer *T)
{
	iap_graph_set_training(T->g, 0);
	ckpt_free(&T->ck);
	iap_adam_free(&T->opt);
	iap_tensor_free(&T->dlogits);
	free(T->vlabels);
	free(T->vprobs);
	iap_free(T->scratch);
	free(T->weights);
	free(T->perm);
	iap_batcher_free(&T->vb);
	iap_batcher_free(&T->tb);
}

int iap_train(struct iap_graph *g, const struct iap_dataset *train, const struct iap_dataset *val,
	      const struct iap_train_cfg *cfg, struct iap_train_result *res,
	      struct iap_error *err)
{
	struct trainer T = { .g = g, .train = train, .val = val, .cfg = cfg, .res = res };
	int rc;

	if (!g || !train || !cfg)
		return iap_error_set(err, IAP_EINVAL, "train: need a graph, a training set and a configuration");
	if ((rc = trainer_check(&T, err)))
		return rc;
	T.c = train->info.n_classes;
	T.augment = augment_enabled(&cfg->augment);
	rc = trainer_setup(&T, err);
	rc = rc ? rc : trainer_resume(&T, err);
	if (rc)
		goto out_free;
	if (res)
		*res = (struct iap_train_result){ .start_epoch = T.cs.epoch, .epochs_done = T.cs.epoch,
						  .best_epoch = T.cs.best_epoch,
						  .best_score = T.cs.best_score < 0 ? 0.0 : T.cs.best_score };
	/* Held masks: the pruned units' parameters are zero from the first step on (after a resume too). */
	if (cfg->hold_masks && (rc = iap_graph_bake_masks(g, err)))
		goto out_free;
	T.n_batches = (train->count + T.tb.batch - 1) / T.tb.batch;
	T.total_batches = cfg->epochs > T.cs.epoch ? (int64_t)(cfg->epochs - T.cs.epoch) * T.n_batches : 0;
	T.t_start = now_seconds();
	for (int epoch = T.cs.epoch; epoch < cfg->epochs && !rc; epoch++) {
		struct iap_epoch_report rep = { .epoch = epoch + 1, .n_epochs = cfg->epochs };
		double t_epoch = now_seconds();

		rc = train_epoch(&T, epoch, &rep, err);
		rc = rc ? rc : finish_epoch(&T, epoch, &rep, t_epoch, err);
	}
out_free:
	trainer_free(&T);
	return rc;
}
