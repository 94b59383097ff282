/*
 * iaprune — the plugin ABI: one descriptor per shared object, an option
 * schema, and one vtable per plugin kind (model, attribution, sampler,
 * policy, dataset). See iaprune-plugin(7) and iap_plugin_descriptor(3).
 *
 * COMPATIBILITY PROMISE. Structures in this header grow by appending new
 * members at the END only; nothing is ever removed, reordered or retyped
 * within one ABI major version. Appending bumps IAP_PLUGIN_ABI_MINOR; any
 * other change bumps IAP_PLUGIN_ABI_MAJOR. Every structure a plugin hands
 * to the core begins with (or carries) its own size, so the core never reads
 * past what an older plugin compiled.
 *
 * A plugin exports exactly one symbol, iap_plugin_descriptor(), returning a
 * pointer to a static struct iap_plugin_desc. The host accepts it when
 * abi_major equals the core's and abi_minor is not above the core's.
 */
#ifndef IAPRUNE_PLUGIN_H
#define IAPRUNE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/graph.h>
#include <iaprune/rng.h>
#include <iaprune/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * 2.0: rule sets carry size and n_rules with rules[] last (IAP_RULESET_HEADER);
 * plugins reach graph nodes and groups through iap_graph_node() and
 * iap_graph_group(); struct iap_plugin gained hash, struct iap_plugin_diag signal.
 * What 1.1 added (iap_policy_input.prior_keep, the attribution ops'
 * unit_relevance and completeness) stays.
 * 2.1: the dataset ops' optional load_original (IAP_DATASET_OPS_HAS).
 * 3.0: rule sets gained n_channels, prepare and finish before rules[]
 * (the walk carries several tensors per node and owns the rule set's
 * per-walk set-up); struct iap_rule_ctx gained the channels at its end.
 * Everything 2.1 had stays.
 */
#define IAP_PLUGIN_ABI_MAJOR 3
#define IAP_PLUGIN_ABI_MINOR 0

/*
 * The ops (enum iap_op_kind) each minor of this major knows. Appending an op
 * changes what a rule set holds, so it takes a new minor: add its line here
 * and bump IAP_PLUGIN_ABI_MINOR. The assertion fails until both are done.
 */
#define IAP_PLUGIN_ABI_OPS_3_0 19
#define IAP_PLUGIN_ABI_CAT_(a, b) a##b
#define IAP_PLUGIN_ABI_CAT(a, b) IAP_PLUGIN_ABI_CAT_(a, b)
#define IAP_PLUGIN_ABI_OPS_OF(major) IAP_PLUGIN_ABI_CAT(IAP_PLUGIN_ABI_OPS_, IAP_PLUGIN_ABI_CAT(major, _))
#define IAP_PLUGIN_ABI_OPS IAP_PLUGIN_ABI_CAT(IAP_PLUGIN_ABI_OPS_OF(IAP_PLUGIN_ABI_MAJOR), IAP_PLUGIN_ABI_MINOR)
#ifdef __cplusplus
static_assert(IAP_OP_COUNT == IAP_PLUGIN_ABI_OPS, "a new op needs a new plugin ABI minor (plugin.h)");
#else
_Static_assert(IAP_OP_COUNT == IAP_PLUGIN_ABI_OPS, "a new op needs a new plugin ABI minor (plugin.h)");
#endif

/* The one symbol a plugin exports (the build keeps only '^iap_plugin_'). */
#define IAP_PLUGIN_SYMBOL "iap_plugin_descriptor"

/* Environment: user search path (colon-separated) and a replacement for the installed directory. */
#define IAP_PLUGIN_PATH_ENV "IAPRUNE_PLUGIN_PATH"
#define IAP_PLUGIN_SYSTEM_PATH_ENV "IAPRUNE_PLUGIN_SYSTEM_PATH"

enum iap_plugin_kind {
	IAP_PLUGIN_MODEL = 0,
	IAP_PLUGIN_ATTRIBUTION,
	IAP_PLUGIN_SAMPLER,
	IAP_PLUGIN_POLICY,
	IAP_PLUGIN_DATASET,
	IAP_PLUGIN_KIND_COUNT
};

/* "model", "attribution", ... (static strings); NULL when out of range. */
const char *iap_plugin_kind_name(int kind);
/* The kind for a name, or -1. */
int iap_plugin_kind_parse(const char *name);

/* ---- option schema --------------------------------------------------------- */

enum iap_opt_type {
	IAP_OPT_BOOL = 0,   /* true / false */
	IAP_OPT_INT,        /* decimal integer within [min, max] when has_range */
	IAP_OPT_FLOAT,      /* finite number within [min, max] when has_range */
	IAP_OPT_STRING,     /* any string (paths, names) */
	IAP_OPT_ENUM,       /* one of choices[] */
	IAP_OPT_TYPE_COUNT
};

/* "bool", "int", ... ; NULL when out of range. */
const char *iap_opt_type_name(int type);

/*
 * One option a plugin accepts. A schema is an array ended by an entry whose
 * name is NULL. def is the default written as it would be in YAML ("0.25",
 * "true", "epsilon"); NULL makes the option required.
 */
struct iap_option {
	const char *name;
	enum iap_opt_type type;
	const char *def;
	const char *const *choices; /* IAP_OPT_ENUM: NULL-terminated list */
	int has_range;              /* IAP_OPT_INT / IAP_OPT_FLOAT: min and max apply */
	double min, max;            /* inclusive */
	const char *help;           /* one line */
};

/*
 * Resolved option values handed to a plugin: every schema entry has a value
 * (from the pipeline or its default), already checked against the schema.
 */
struct iap_opts;

/*
 * Values from the schema's defaults alone. Required options (def NULL) are
 * left unset (iap_opts_is_set() is 0); the pipeline validation reports them.
 */
int iap_opts_defaults(const struct iap_option *schema, struct iap_opts **out,
		      struct iap_error *err);
/*
 * Set one option from its YAML text; err names what (e.g. "attribution 'lrp'")
 * and the option on failure: "attribution 'lrp': option 'epsilon': expected a
 * number, got 'abc'".
 */
int iap_opts_set(struct iap_opts *o, const char *what, const char *name, const char *text,
		 struct iap_error *err);
void iap_opts_free(struct iap_opts *o);

/*
 * Getters. The name must be in the plugin's own schema with the matching
 * type (a programmer error otherwise: 0, 0.0, false or NULL is returned).
 * Strings stay valid while o lives.
 */
int iap_opts_bool(const struct iap_opts *o, const char *name);
long iap_opts_int(const struct iap_opts *o, const char *name);
double iap_opts_float(const struct iap_opts *o, const char *name);
const char *iap_opts_str(const struct iap_opts *o, const char *name); /* STRING and ENUM */
/*
 * IAP_OPT_ENUM: the index of the value in the schema's choices[], so a plugin
 * switches on it instead of comparing strings again; -1 for any other type
 * or an unset required option.
 */
int iap_opts_enum(const struct iap_opts *o, const char *name);
/* 1 when the value came from the pipeline rather than the default. */
int iap_opts_is_set(const struct iap_opts *o, const char *name);

/* Number of options, and the name and value text (as YAML would write it) of option i. */
int iap_opts_count(const struct iap_opts *o);
const char *iap_opts_name(const struct iap_opts *o, int i);
/* Writes the value of option i into buf (always terminated); "" for an unset required option. */
void iap_opts_format(const struct iap_opts *o, int i, char *buf, size_t len);

/* ---- data handed between plugins ------------------------------------------ */

enum iap_split {
	IAP_SPLIT_TRAIN = 0,
	IAP_SPLIT_VAL,
	IAP_SPLIT_TEST,
	IAP_SPLIT_COUNT
};

/* "train", "val", "test"; NULL when out of range. */
const char *iap_split_name(int split);

/* What an open dataset split holds. Filled by the dataset's info(). */
struct iap_dataset_info {
	int n_classes;
	int in_ndim;                          /* sample shape without batch axis, e.g. {1, 28, 28} */
	int64_t in_shape[IAP_MAX_DIMS - 1];
	const char *const *class_names;       /* n_classes entries, or NULL; owned by the dataset */
};

struct iap_dataset_ops;

/* An open dataset split as the host hands it to samplers and the runner. */
struct iap_dataset {
	const struct iap_dataset_ops *ops;
	void *state;                          /* the dataset plugin's own */
	enum iap_split split;
	struct iap_dataset_info info;
	int64_t count;
};

/* ---- vtables (each begins with its size; append only) ---------------------- */

/*
 * model: build the network for the dataset's input shape and class count.
 * build() returns a finalized graph whose prunable units are declared with
 * iap_graph_add_units, parameters named as torchvision names them so that
 * weights load by key. Parameters are left zeroed; init_params() (optional)
 * gives them their training initialisation from rng.
 */
struct iap_model_ops {
	uint32_t size;  /* sizeof(struct iap_model_ops) the plugin was built with */
	int (*build)(const struct iap_opts *opts, const struct iap_dataset_info *data,
		     struct iap_graph **out, struct iap_error *err);
	int (*init_params)(const struct iap_opts *opts, struct iap_graph *g, struct iap_rng *rng,
			   struct iap_error *err);
};

enum iap_attribution_flags {
	/* Scores depend on the parameters only (magnitude, random): no samples needed. */
	IAP_ATTR_DATA_FREE = 1u << 0,
	/* The per-unit reduction sums |r| rather than r (the host's reduce for rule sets). */
	IAP_ATTR_ABS = 1u << 1,
};

/*
 * What unit_relevance() hands the host: the per-element relevance of unit
 * group `group`, batch first, shaped like that group's node output. Valid
 * during the call only. Non-zero stops the plugin, which returns it.
 */
typedef int (*iap_unit_relevance_fn)(void *user, int group, const struct iap_tensor *relevance);

/* Which completeness gaps completeness() returns (ABI 1.1). */
enum iap_delta_kind {
	/* [n] per sample of the last explain(): Σ input relevance − (F(x) − F(x')) */
	IAP_DELTA_INPUT = 0,
	/* [n_groups][n] of the last score()/unit_relevance(): Σ over a group − (F(x) − F(x')) */
	IAP_DELTA_UNITS,
	/* [n] F(x) − F(x') of the last call (F the target logit, x' the baseline) */
	IAP_DELTA_GAP,
};

/*
 * attribution: per-unit importance scores, and input-level relevance for
 * heatmaps. Either ruleset() supplies a struct iap_ruleset that the host
 * drives through iap_graph_backward (seeded by seed(), or by the target
 * logit when seed is NULL) and reduces at every unit group with
 * iap_unit_reduce, or score() computes the scores itself (IG, magnitude,
 * random). One of the two must be present.
 *
 * scores[g] has g->groups[g].n_units entries; score() ADDS the batch's
 * contribution (the host sums over batches and zeroes before the first).
 * x has already been run through the graph (iap_graph_forward) when
 * score()/explain() are called; targets are class indices, one per sample.
 */
struct iap_attribution_ops {
	uint32_t size;
	unsigned flags;                   /* enum iap_attribution_flags */
	int (*create)(const struct iap_opts *opts, struct iap_graph *g, void **state,
		      struct iap_error *err);
	void (*destroy)(void *state);
	const struct iap_ruleset *(*ruleset)(void *state);
	int (*seed)(void *state, const struct iap_tensor *logits, const int *targets,
		    struct iap_tensor *seed, struct iap_error *err);
	int (*score)(void *state, struct iap_graph *g, const struct iap_tensor *x, const int *targets,
		     float *const *scores, struct iap_error *err);
	/* Relevance of each input element, shaped like x (optional). */
	int (*explain)(void *state, struct iap_graph *g, const struct iap_tensor *x, const int *targets,
		       struct iap_tensor *relevance, struct iap_error *err);

	/* ---- ABI 1.1 (read only when size covers them; both optional) ---- */

	/*
	 * What score() computes for the batch, before any reduction: instead
	 * of adding reduced scores it calls fn once per unit group (in any
	 * order) with that group's per-element relevance (IG: the
	 * conductance; taylor: a ⊙ ∂F/∂a). A host can then reduce per sample
	 * and in every way (Σ r, |Σ r|, Σ |r|) from one pass. It also
	 * updates what completeness() reports, as score() does.
	 */
	int (*unit_relevance)(void *state, struct iap_graph *g, const struct iap_tensor *x,
			      const int *targets, iap_unit_relevance_fn fn, void *user,
			      struct iap_error *err);
	/*
	 * Completeness of the last call (enum iap_delta_kind): a pointer to
	 * (*n_groups) × (*n) floats (n_groups is 1 except for IAP_DELTA_UNITS),
	 * valid until the next call on state; NULL with *n = 0 when the method
	 * has no such quantity or has not run yet.
	 */
	const float *(*completeness)(void *state, int what, int *n_groups, int *n);
};

/* 1 when an attribution plugin's ops (built with ops->size) have member m. */
#define IAP_ATTR_OPS_HAS(ops, m) \
	((ops)->size >= offsetof(struct iap_attribution_ops, m) + sizeof((ops)->m) && (ops)->m)

/*
 * sampler: choose up to k samples of every class of ds (indices into ds,
 * written to out, which has room for k * n_classes) using the model g (which
 * the sampler may run forward, e.g. to rank by confidence). *n_out receives
 * how many were chosen; a class with fewer than k samples gives all it has.
 */
struct iap_sampler_ops {
	uint32_t size;
	int (*select)(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
		      struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err);
};

/*
 * What a policy sees: per-group scores (higher = more important), the
 * fraction of ALL units to prune, and the limits every policy honours.
 */
struct iap_policy_input {
	const struct iap_graph *graph;
	const float *const *scores;       /* [n_groups][n_units] */
	double rate;                      /* in [0, 1) */
	double max_layer_rate;            /* no group loses more than this fraction */
	int min_units;                    /* no group keeps fewer than this */
	const uint8_t *ignore;            /* [n_groups]: 1 = never prune this group */
	/*
	 * ABI 1.1: the masks an earlier step of iterative pruning left
	 * ([n_groups][n_units], 1 keep / 0 pruned; NULL, or a NULL row: nothing
	 * pruned yet). A policy keeps those units pruned and counts them towards
	 * the rate and the caps; the runner refuses a mask that revives one.
	 */
	const uint8_t *const *prior_keep;
};

/* policy: scores + rate (+ caps, ignore list) → keep[g][u] (1 keep, 0 prune). */
struct iap_policy_ops {
	uint32_t size;
	int (*mask)(const struct iap_opts *opts, const struct iap_policy_input *in,
		    uint8_t *const *keep, struct iap_error *err);
};

/*
 * dataset: open one split, describe it, load sample i. load() writes one
 * sample (info.in_shape, float, normalised as the model expects) to image and
 * its class to *label (image may be NULL when only the label is wanted, as
 * samplers do); it may be called from several threads with distinct i.
 */
struct iap_dataset_ops {
	uint32_t size;
	int (*open)(const struct iap_opts *opts, enum iap_split split, void **state,
		    struct iap_error *err);
	void (*close)(void *state);
	int64_t (*count)(void *state);
	int (*info)(void *state, struct iap_dataset_info *info, struct iap_error *err);
	int (*load)(void *state, int64_t i, float *image, int *label, struct iap_error *err);

	/* ---- ABI 2.1 (read only when size covers it; optional) ---- */

	/*
	 * Sample i as stored, before any resizing or normalisation, for display
	 * (report heatmaps): resizes image (iap_tensor_ensure) to [C, h, w] with
	 * C = info.in_shape[0] and h, w the image's own size, values in [0, 1].
	 * The caller owns image (iap_tensor_free). Thread-safe as load() is.
	 */
	int (*load_original)(void *state, int64_t i, struct iap_tensor *image, struct iap_error *err);
};

/* 1 when a dataset plugin's ops (built with ops->size) have member m. */
#define IAP_DATASET_OPS_HAS(ops, m) \
	((ops)->size >= offsetof(struct iap_dataset_ops, m) + sizeof((ops)->m) && (ops)->m)

/* ---- the descriptor ---------------------------------------------------------- */

struct iap_plugin_desc {
	/* These three stay first forever: the host reads them before anything else. */
	uint32_t abi_major;
	uint32_t abi_minor;
	uint32_t size;                    /* sizeof(struct iap_plugin_desc) as compiled */

	enum iap_plugin_kind kind;
	const char *name;                 /* [a-z0-9][a-z0-9_-]*, unique within its kind */
	const char *version;
	const char *license;              /* SPDX identifier */
	const char *summary;              /* one line */
	const struct iap_option *options; /* ended by a NULL name; may be NULL (no options) */
	/* Called once after the host accepts the plugin, and before dlclose (both optional). */
	int (*init)(struct iap_error *err);
	void (*fini)(void);
	union {
		const struct iap_model_ops *model;
		const struct iap_attribution_ops *attribution;
		const struct iap_sampler_ops *sampler;
		const struct iap_policy_ops *policy;
		const struct iap_dataset_ops *dataset;
		const void *any;
	} ops;
};

typedef const struct iap_plugin_desc *(*iap_plugin_descriptor_fn)(void);

/*
 * Plugins built with -fvisibility=hidden (out of tree, without libtool's
 * -export-symbols-regex) still export their entry point.
 */
#if defined(__GNUC__)
#define IAP_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define IAP_PLUGIN_EXPORT
#endif

/* The plugin's entry point (declared here so plugins get a prototype). */
IAP_PLUGIN_EXPORT const struct iap_plugin_desc *iap_plugin_descriptor(void);

/*
 * Define the entry point for a static descriptor, at file scope and
 * without a trailing semicolon:
 *   IAP_PLUGIN_DEFINE(my_desc)
 */
#define IAP_PLUGIN_DEFINE(desc) \
	IAP_PLUGIN_EXPORT const struct iap_plugin_desc *iap_plugin_descriptor(void) { return &(desc); }

/* Fill the three header fields of a descriptor (designated initialisers). */
#define IAP_PLUGIN_HEADER \
	.abi_major = IAP_PLUGIN_ABI_MAJOR, .abi_minor = IAP_PLUGIN_ABI_MINOR, \
	.size = sizeof(struct iap_plugin_desc)

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_PLUGIN_H */
