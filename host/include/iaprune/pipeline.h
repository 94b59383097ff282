/*
 * iaprune — pipelines: a YAML file parsed (by libyaml) into a small config
 * tree that remembers where every node was written, typed getters that
 * report "file:line:col: ..." on a wrong type, command-line overrides
 * (--set path.to.key=value), and validation of the pipeline schema and of
 * each plugin's options. See iaprune-pipeline(5) for the format.
 *
 * YAML is read as plain data: anchors, aliases and "<<" merge keys work;
 * tags other than the YAML core schema's are refused; nothing is ever
 * executed or instantiated from a tag.
 */
#ifndef IAPRUNE_PIPELINE_H
#define IAPRUNE_PIPELINE_H

#include <stdint.h>
#include <stdio.h>

#include <iaprune/error.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The pipeline format version this library reads (the "version:" key). */
#define IAP_PIPELINE_VERSION 1

enum iap_cfg_kind {
	IAP_CFG_SCALAR = 0,
	IAP_CFG_MAP,
	IAP_CFG_SEQ
};

struct iap_cfg_node {
	enum iap_cfg_kind kind;
	const char *file;             /* owned by the tree; "--set" for overrides, "<default>" for filled defaults */
	int line, col;                /* 1-based position of the value */
	char *key;                    /* entry of a map: its key; NULL otherwise */
	int key_line, key_col;        /* where the key was written (map entries) */
	char *value;                  /* scalar text; NULL for a YAML null (~, null, nothing) */
	int n_items, cap_items;
	struct iap_cfg_node **items;  /* map entries (key set) or sequence items, in order */
};

struct iap_cfg;

/*
 * Parse a YAML file (one document) into a tree. Syntax errors come back as
 * "file:line:col: <libyaml's problem> (<context>)"; so do duplicate keys,
 * unsupported tags, and alias expansions past a size limit.
 */
int iap_cfg_load_file(const char *path, struct iap_cfg **out, struct iap_error *err);
/* The same from memory; name is used as the file name in messages. */
int iap_cfg_load_string(const char *text, size_t len, const char *name, struct iap_cfg **out,
			struct iap_error *err);
void iap_cfg_free(struct iap_cfg *cfg);

/* The document's root (a map for a pipeline; NULL for an empty document). */
const struct iap_cfg_node *iap_cfg_root(const struct iap_cfg *cfg);

/* Entry key of a map, or NULL. */
const struct iap_cfg_node *iap_cfg_child(const struct iap_cfg_node *map, const char *key);
/*
 * Node at a dotted path below node: "model.train.epochs"; a segment of
 * digits indexes a sequence ("attribution.0.plugin"). NULL when absent.
 */
const struct iap_cfg_node *iap_cfg_get(const struct iap_cfg_node *node, const char *path);

/*
 * Typed values of one node. On a wrong kind or text the message is
 * "file:line:col: <what>: expected an integer, got 'x'" (what names the key
 * path, or is the node's key when NULL).
 */
int iap_cfg_str(const struct iap_cfg_node *n, const char *what, const char **out, struct iap_error *err);
int iap_cfg_int(const struct iap_cfg_node *n, const char *what, long *out, struct iap_error *err);
int iap_cfg_float(const struct iap_cfg_node *n, const char *what, double *out, struct iap_error *err);
int iap_cfg_bool(const struct iap_cfg_node *n, const char *what, int *out, struct iap_error *err);

/* The same at a dotted path below node; a missing node gives def (not an error). */
int iap_cfg_get_str(const struct iap_cfg_node *node, const char *path, const char *def,
		    const char **out, struct iap_error *err);
int iap_cfg_get_int(const struct iap_cfg_node *node, const char *path, long def, long *out,
		    struct iap_error *err);
int iap_cfg_get_float(const struct iap_cfg_node *node, const char *path, double def, double *out,
		      struct iap_error *err);
int iap_cfg_get_bool(const struct iap_cfg_node *node, const char *path, int def, int *out,
		     struct iap_error *err);

/*
 * Apply one command-line override "path.to.key=value" (the index-th --set,
 * 1-based, used as the line in messages). The value is YAML, so
 * "pruning.rates=[0.1, 0.5]" sets a list. Missing maps on the path are
 * created; a digit segment must index an existing item or append one.
 */
int iap_cfg_set(struct iap_cfg *cfg, const char *assignment, int index, struct iap_error *err);

/* Write node (and below) as block-style YAML. */
int iap_cfg_dump(const struct iap_cfg_node *node, FILE *f);

/*
 * Check a pipeline against the schema of iaprune-pipeline(5) and fill in
 * every default it leaves out, so later readers need not know them. With a
 * registry, also check that each named plugin exists and that its options
 * match its schema: "pipeline.yaml:12:5: attribution 'lrp': unknown option
 * 'epsilonn' (known: composite, epsilon, ...)". Returns IAP_EINVAL (or
 * IAP_EFORMAT for a non-map document) with the first problem found.
 */
int iap_pipeline_validate(struct iap_cfg *cfg, const struct iap_registry *reg, struct iap_error *err);

/*
 * Write a validated pipeline as it would run (iaprune run --dry-run): every
 * key, each plugin's unset options with their defaults as "# name: value"
 * comments (written as keys they could change what the plugin does, e.g. a
 * ViT size overriding its preset), and no model.train when model.weights is
 * given. reg may be NULL (no option comments). IAP_EIO when f fails.
 */
int iap_pipeline_dump(const struct iap_cfg *cfg, const struct iap_registry *reg, FILE *f);

/*
 * Resolve one plugin reference (a map with "plugin:" and optional
 * "options:", e.g. an item of "attribution:") of the given kind: the
 * plugin and its option values (free with iap_opts_free).
 */
int iap_pipeline_plugin(const struct iap_cfg_node *ref, int kind, const struct iap_registry *reg,
			const struct iap_plugin **plugin, struct iap_opts **opts, struct iap_error *err);

/* ---- the typed pipeline: validated once, read by the runner ------------------------------ */

/* One plugin reference of the pipeline, resolved: where it was written, the plugin, its parsed options. */
struct iap_pipeline_ref {
	const struct iap_cfg_node *node;
	const struct iap_plugin *plugin;
	struct iap_opts *opts;
};

struct iap_pipeline_sampler {
	struct iap_pipeline_ref ref;
	const char *name;             /* its "name:", or else its plugin's name */
	int per_class;
};

struct iap_pipeline_attribution {
	struct iap_pipeline_ref ref;
	const char *name;
};

/* model.train (iaprune-pipeline(5) gives each key's meaning and default). */
struct iap_pipeline_train {
	int epochs, batch_size, step_size;
	double lr, weight_decay, gamma;
	int class_weights_balanced;
	int augment, hflip, vflip, resume;
	double crop_scale, rotate, jitter;
};

/* pruning.finetune (absent: enabled 0). */
struct iap_pipeline_finetune {
	int enabled;
	int epochs, augment, best_only;
	double lr;
	int batch_size;                 /* 0: model.train's */
	int has_weight_decay;           /* else model.train's */
	double weight_decay;
	int n_rates;
	double *rates;                  /* its own, else pruning.rates */
};

struct iap_pipeline {
	struct iap_cfg *cfg;                    /* the validated tree, every default filled in */
	const struct iap_cfg_node *root;
	const char *name, *output;
	uint64_t seed;
	int threads;
	struct iap_pipeline_ref dataset, model;
	const char *weights;                    /* model.weights; NULL: train with .train */
	struct iap_pipeline_train train;
	int n_samplers, n_attributions;
	struct iap_pipeline_sampler *samplers;
	struct iap_pipeline_attribution *attributions;
	int has_attribution;                    /* the "attribution:" key was given */
	struct {
		struct iap_pipeline_ref policy;
		int n_rates;
		double *rates;                  /* as written, in order */
		double max_layer_rate, tolerance, curve_step;
		int min_units, curve, iterations;
		int n_ignore;
		const char **ignore;
		int baseline_ranking;           /* enum iap_ranking: l2, mean, raw */
		struct iap_pipeline_finetune finetune;
	} pruning;
	struct {
		int split;                      /* enum iap_split */
		int batch_size;
	} evaluation;
	struct {
		int heatmaps, save_pruned, bootstrap, explain_images, latency;
	} report;
};

/*
 * Validate cfg (as iap_pipeline_validate, with a registry: every plugin is
 * resolved and its options parsed, once) and read it into a typed pipeline
 * that takes cfg over: iap_pipeline_free frees both. On failure cfg is
 * still the caller's and *out is NULL; the message names file:line:col.
 */
int iap_pipeline_load(struct iap_cfg *cfg, const struct iap_registry *reg, struct iap_pipeline **out,
		      struct iap_error *err);
void iap_pipeline_free(struct iap_pipeline *p);

/*
 * The schema's defaults, the only table of them: fn is called for every key
 * with a default, with its dotted path ("report.heatmaps"; list items as
 * "sampling.*.per_class") and its YAML text ("2").
 */
void iap_pipeline_defaults(void (*fn)(const char *path, const char *def, void *user), void *user);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_PIPELINE_H */
