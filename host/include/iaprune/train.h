/*
 * iaprune — training: Adam with a StepLR schedule, augmentations on float
 * CHW images, the training loop with validation and resumable checkpoints,
 * and the evaluation loop.
 *
 * Every default below is the paper's recipe and can be changed through
 * struct iap_train_cfg (fill it with iap_train_cfg_defaults first).
 */
#ifndef IAPRUNE_TRAIN_H
#define IAPRUNE_TRAIN_H

#include <stdint.h>
#include <stdio.h>

#include <iaprune/error.h>
#include <iaprune/graph.h>
#include <iaprune/metrics.h>
#include <iaprune/plugin.h>
#include <iaprune/rng.h>
#include <iaprune/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Adam ------------------------------------------------------------------ */

struct iap_adam_cfg {
	double lr;              /* 1e-3 (the base rate; StepLR scales it) */
	double beta1, beta2;    /* 0.9, 0.999 */
	double eps;             /* 1e-8 */
	double weight_decay;    /* 0: L2 added to the gradient, as torch.optim.Adam does */
};

/*
 * torch.optim.Adam's state for every trainable parameter of one graph:
 * first and second moments shaped like the parameter, and the step count.
 * The update (PyTorch's, bias correction included), per element:
 *   g ← grad + wd·θ;  m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;
 *   θ ← θ − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps).
 */
struct iap_adam {
	struct iap_adam_cfg cfg;
	double lr;                   /* the rate of the next step (set by the schedule) */
	int64_t step;                /* steps taken */
	int n;                       /* trainable parameters */
	struct iap_param **params;   /* into the graph; the graph must outlive the optimizer */
	struct iap_tensor *m, *v;
};

/* Set up moments (zero) for g's trainable parameters. */
int iap_adam_init(struct iap_adam *opt, struct iap_graph *g, const struct iap_adam_cfg *cfg,
		  struct iap_error *err);
/* One update from the parameters' current .grad (which must be allocated). */
int iap_adam_step(struct iap_adam *opt, struct iap_error *err);
void iap_adam_free(struct iap_adam *opt);

/*
 * torch.optim.lr_scheduler.StepLR: the rate for 0-based epoch e is
 * base·gamma^⌊e / step_size⌋, multiplied step by step as PyTorch's chained
 * form does. step_size < 1 means a constant rate.
 */
double iap_steplr(double base_lr, int step_size, double gamma, int epoch);

/* ---- augmentation on one float CHW image ---------------------------------- */

/*
 * Each switch is independent; the defaults are the paper's. Images arrive
 * normalised ((x − mean) / std per channel). mean and std (one value per
 * channel, both or neither) let colour jitter work in [0, 1] pixel space and
 * make rotation fill with black ((0 − mean) / std); without them images are
 * taken to be in [0, 1] pixel space already and the fill is 0.
 */
struct iap_augment_cfg {
	int crop;                /* RandomResizedCrop, on (1) */
	double crop_scale[2];    /* area fraction, 0.7 – 1.0 */
	double crop_ratio[2];    /* aspect ratio w/h, 3/4 – 4/3 */
	double hflip_p;          /* horizontal flip probability, 0.5 (0: off) */
	double vflip_p;          /* vertical flip probability, 0.5 (0: off) */
	double rotate_deg;       /* uniform angle in [−d, d], 30 (0: off) */
	double brightness;       /* ColorJitter factors uniform in [max(0, 1−s), 1+s]: 0.2 each (0: off) */
	double contrast;
	double saturation;       /* needs 3 channels; 1-channel images are left as they are */
	const float *mean;       /* per channel, or NULL */
	const float *std;
};

/* All augmentations off (identity). */
void iap_augment_cfg_none(struct iap_augment_cfg *cfg);
/* The paper's augmentations (the values above), no normalisation parameters. */
void iap_augment_cfg_defaults(struct iap_augment_cfg *cfg);

/* Floats of scratch iap_augment needs for a c×h×w image. */
size_t iap_augment_scratch(int c, int h, int w);

/*
 * Apply the enabled augmentations in torchvision's usual order —
 * RandomResizedCrop, horizontal flip, vertical flip, rotation, colour jitter —
 * to img (c×h×w, in place), drawing every random choice from rng.
 */
int iap_augment(const struct iap_augment_cfg *cfg, struct iap_rng *rng, float *img, int c, int h,
		int w, float *scratch, struct iap_error *err);

/* The pieces, for tests and for callers composing their own pipeline. */
void iap_aug_hflip(float *img, int c, int h, int w);
void iap_aug_vflip(float *img, int c, int h, int w);
/*
 * Rotate src by deg degrees counter-clockwise about the image centre
 * (torchvision's F.rotate: bilinear, same size) into dst; samples from
 * outside the image take fill[channel] (fill may be NULL: 0).
 */
void iap_aug_rotate(const float *src, float *dst, int c, int h, int w, double deg,
		    const float *fill);
/*
 * torchvision RandomResizedCrop.get_params: up to 10 draws of an area
 * fraction in scale and a log-uniform aspect ratio in ratio, w and h rounded
 * half to even; the first crop that fits is placed uniformly; otherwise the
 * centre crop clamped to ratio.
 */
void iap_aug_crop_params(struct iap_rng *rng, int h, int w, const double scale[2],
			 const double ratio[2], int *top, int *left, int *ch, int *cw);
/*
 * Bilinear resize (align_corners = False, as torch's interpolate) of the
 * crop [top, top+ch) × [left, left+cw) of src (c×h×w) to dst of size oh×ow.
 */
void iap_aug_resize_crop(const float *src, int c, int h, int w, int top, int left, int ch, int cw,
			 float *dst, int oh, int ow);
/*
 * ColorJitter's three adjustments on a [0, 1] pixel-space image (c = 1 or 3;
 * saturation needs 3 channels), each result clamped to [0, 1]; the factor
 * 1 leaves the image unchanged.
 */
void iap_aug_brightness(float *img, int c, int h, int w, float factor);
void iap_aug_contrast(float *img, int c, int h, int w, float factor);
void iap_aug_saturation(float *img, int c, int h, int w, float factor);

/* ---- the training loop ----------------------------------------------------- */

/*
 * Called after every batch: 1-based epoch, 1-based batch of n_batches, the
 * epoch's running mean loss and accuracy so far, and the estimated seconds
 * left in the whole run.
 */
typedef void (*iap_progress_fn)(void *user, int epoch, int64_t batch, int64_t n_batches,
				double loss, double acc, double eta_seconds);

/* What one finished epoch achieved (handed to on_epoch). */
struct iap_epoch_report {
	int epoch;              /* 1-based */
	int n_epochs;
	double lr;              /* rate used during the epoch */
	double train_loss;      /* mean over samples of the (class-weighted) batch losses */
	double train_acc;       /* on the augmented training batches, training mode */
	int has_val;
	double val_loss;        /* unweighted mean cross-entropy, evaluation mode */
	double val_acc;
	int is_best;            /* this epoch improved the best score */
	double seconds;
};

typedef void (*iap_epoch_fn)(void *user, const struct iap_epoch_report *r);

struct iap_train_cfg {
	int epochs;                  /* 30 */
	int batch_size;              /* 32; the last partial batch is kept */
	struct iap_adam_cfg adam;    /* lr 1e-3, betas 0.9/0.999, eps 1e-8, weight decay 0 */
	int lr_step_size;            /* StepLR step, 10 epochs */
	double lr_gamma;             /* StepLR factor, 0.1 */
	int class_weights;           /* 1: cross-entropy weights N / (C·n_c) from the training labels */
	int shuffle;                 /* 1: reshuffle every epoch */
	uint64_t seed;               /* shuffling, augmentation and dropout; 0 is a valid seed */
	struct iap_augment_cfg augment;  /* the paper's; iap_augment_cfg_none() to switch all off */
	/*
	 * Directory for checkpoints (NULL: none): last.safetensors (weights),
	 * last.optim.safetensors (Adam moments, step, epoch, best score),
	 * best.safetensors (the epoch with the best score: val accuracy; train
	 * accuracy without a val set) and settings.txt (what the training was
	 * made with, see identity). After every epoch the four are written as one
	 * generation (host/include/iaprune/generation.h): a crash leaves the previous
	 * epoch's complete set, never a mix of two epochs.
	 */
	const char *checkpoint_dir;
	/*
	 * 1: continue from checkpoint_dir's last checkpoint when there is one
	 * (weights, optimizer state and epoch restored, so the result equals an
	 * uninterrupted run); start fresh when the directory has none.
	 */
	int resume;
	iap_progress_fn progress;    /* may be NULL */
	void *progress_user;
	iap_epoch_fn on_epoch;       /* may be NULL */
	void *epoch_user;
	/*
	 * 1: fine-tune with g's unit masks held fixed (0 by default). The masks
	 * are baked into the weights before the first step (iap_graph_bake_masks)
	 * and again after every Adam step, so a pruned unit's filter, bias and
	 * BatchNorm affine stay exactly zero whatever weight decay, momentum or a
	 * zero eps would make of them; the masks themselves stay set, so the
	 * pruned outputs stay zero in the forward and their gradients in the
	 * backward. Needs a graph with parameter storage.
	 */
	int hold_masks;
	/*
	 * What the training data and model are (dataset, its options and size,
	 * model and its options), one "key=value" per line, or NULL. Recorded in
	 * settings.txt with this configuration's own values (seed, lr, batch
	 * size, schedule, augmentation; not the epoch count, so a run can be
	 * extended), for iap_train_checkpoint_differs.
	 */
	const char *identity;
};

void iap_train_cfg_defaults(struct iap_train_cfg *cfg);

struct iap_train_result {
	int epochs_done;             /* total, resumed ones included */
	int start_epoch;             /* epochs already done when this call began (resume) */
	double last_train_loss;
	double last_val_acc;
	int best_epoch;              /* 1-based, 0 when none */
	double best_score;           /* best val accuracy (train accuracy without val) */
};

/*
 * Train g on train (val may be NULL) with cfg. g ends with the last epoch's
 * weights in evaluation mode; the best ones are in best.safetensors when
 * checkpointing. The datasets' samples must match g's input shape and their
 * labels lie in [0, n_classes). res may be NULL.
 */
int iap_train(struct iap_graph *g, const struct iap_dataset *train, const struct iap_dataset *val,
	      const struct iap_train_cfg *cfg, struct iap_train_result *res,
	      struct iap_error *err);

/*
 * The settings text cfg's checkpoints record (cfg's values and its identity);
 * free() it. NULL when out of memory.
 */
char *iap_train_settings(const struct iap_train_cfg *cfg);

/*
 * 1 when dir holds a checkpoint made with other settings than cfg's (or one
 * that records none), with the first difference in what ("lr=0.001 (now
 * 0.01)"); 0 when there is no checkpoint or it matches; -1 when out of memory.
 * A caller starts fresh (resume = 0) on 1.
 */
int iap_train_checkpoint_differs(const char *dir, const struct iap_train_cfg *cfg, char *what, size_t len);

/*
 * Evaluation-mode forward over all of ds in batches of `batch`, softmax, and
 * every metric (m zeroed before first use; see iap_metrics_compute); also
 * sets m->loss (mean unweighted cross-entropy). g's training flag is restored.
 */
int iap_evaluate(struct iap_graph *g, const struct iap_dataset *ds, int batch,
		 struct iap_metrics *m, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_TRAIN_H */
