/*
 * iaprune — the layer graph: nodes in topological order, a forward pass that
 * keeps every node's output, and ONE backward-walk engine driven by rule sets.
 *
 * Model plugins build graphs through the builder calls in <iaprune/ops.h>
 * (one call per op). Parameters carry torchvision's state_dict keys
 * ("features.0.weight"), so weights load by name.
 *
 * The backward walk visits nodes in reverse and, for each node, calls the rule
 * that a rule set gives for the node's op:  R_in += rule(node, inputs, output,
 * R_out). Contributions from several consumers are summed. The plain gradient
 * is the core's own rule set (iap_ruleset_gradient()); attribution plugins
 * bring theirs (LRP, DL-Backtrace). A rule set that lacks the rule for an op it
 * meets is an error, never a silent fallback.
 */
#ifndef IAPRUNE_GRAPH_H
#define IAPRUNE_GRAPH_H

#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/rng.h>
#include <iaprune/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Every op the core knows. Append new ops before IAP_OP_COUNT only: rule sets
 * are arrays indexed by this enum, so existing values never change.
 */
enum iap_op_kind {
	IAP_OP_CONV2D = 0,
	IAP_OP_LINEAR,
	IAP_OP_RELU,
	IAP_OP_GELU,
	IAP_OP_MAXPOOL2D,
	IAP_OP_AVGPOOL2D,
	IAP_OP_ADAPTIVE_AVGPOOL2D,
	IAP_OP_BATCHNORM2D,
	IAP_OP_LAYERNORM,
	IAP_OP_DROPOUT,
	IAP_OP_FLATTEN,
	IAP_OP_ADD,
	IAP_OP_SOFTMAX,         /* over the last axis */
	IAP_OP_TOKENS,          /* N×D×h×w → N×(h·w)×D (ViT patch sequence) */
	IAP_OP_CLASS_TOKEN,     /* N×T×D → N×(T+1)×D, learned token prepended */
	IAP_OP_POS_EMBED,       /* N×T×D + learned 1×T×D */
	IAP_OP_ATTN_SCORES,     /* packed qkv N×T×3D → N×H×T×T, (q_h k_hᵀ)/√d_h */
	IAP_OP_ATTN_CONTEXT,    /* (weights N×H×T×T, qkv N×T×3D) → N×T×D, heads concatenated */
	IAP_OP_TOKEN_SELECT,    /* N×T×D → N×D, one token (the class token) */
	IAP_OP_COUNT
};

/* "conv2d", "linear", ... (static strings); NULL for an out-of-range kind. */
const char *iap_op_name(int kind);

/* Special input id meaning "the graph's input tensor". */
#define IAP_GRAPH_INPUT (-1)

#define IAP_NODE_MAX_INPUTS 2
#define IAP_NODE_MAX_PARAMS 4
#define IAP_NODE_MAX_AUX 4

enum iap_param_flags {
	IAP_PARAM_TRAINABLE = 1u << 0, /* receives a gradient and is updated by training */
	IAP_PARAM_BUFFER = 1u << 1,    /* state such as BatchNorm running statistics */
};

struct iap_param {
	char *key;                  /* full state_dict key: "features.0.weight" */
	struct iap_tensor value;
	struct iap_tensor grad;     /* same shape as value once gradients are enabled */
	unsigned flags;
};

/* Op hyper-parameters. Which member is valid follows from the node's kind. */
struct iap_conv2d_attr {
	int in_ch, out_ch;
	int kh, kw;
	int stride_h, stride_w;
	int pad_h, pad_w;
	int has_bias;
};

struct iap_linear_attr {
	int in_features, out_features;
	int has_bias;
};

struct iap_pool_attr {
	int kh, kw;                 /* max/avg pool window */
	int stride_h, stride_w;
	int pad_h, pad_w;
	int ceil_mode;
	int count_include_pad;      /* avgpool: PyTorch default 1 */
	int out_h, out_w;           /* adaptive pool output size */
};

struct iap_norm_attr {
	int features;               /* channels (batchnorm) or last-axis size (layernorm) */
	float eps;
	float momentum;             /* batchnorm running-stat update, PyTorch default 0.1 */
	int affine;
	int64_t batches_tracked;    /* batchnorm: PyTorch's num_batches_tracked (training forwards; loaded, saved) */
};

struct iap_dropout_attr {
	float p;
};

struct iap_attn_attr {
	int dim;                    /* model width D */
	int num_heads;              /* H; head_dim = D / H */
};

struct iap_select_attr {
	int index;                  /* token index (0 = class token) */
};

union iap_op_attr {
	struct iap_conv2d_attr conv;
	struct iap_linear_attr linear;
	struct iap_pool_attr pool;
	struct iap_norm_attr norm;
	struct iap_dropout_attr dropout;
	struct iap_attn_attr attn;
	struct iap_select_attr select;
};

struct iap_graph;
struct iap_node;
struct iap_rule_ctx;

/*
 * What an op does. One static instance per op kind (iap_op_conv2d, ...).
 * Append new members at the end only.
 */
struct iap_op_ops {
	enum iap_op_kind kind;
	/*
	 * Compute node->out (already shaped for the batch) from in[]. May keep
	 * what its gradient needs in node->aux (allocated with iap_tensor_ensure,
	 * so steady-state passes do not allocate) and may use the graph's shared
	 * workspace (iap_graph_workspace). Training mode is g->training.
	 */
	int (*forward)(struct iap_graph *g, struct iap_node *node,
		       const struct iap_tensor *const in[], struct iap_tensor *out,
		       struct iap_error *err);
	/* The gradient rule (see struct iap_rule_ctx for the contract). */
	int (*backward)(struct iap_rule_ctx *ctx);
	/* Floats of shared workspace the forward or gradient needs at this batch size (may be NULL). */
	size_t (*workspace)(const struct iap_graph *g, const struct iap_node *node, int batch);
	/* Multiply-accumulates of one forward pass for one sample (may be NULL: 0). */
	uint64_t (*macs)(const struct iap_graph *g, const struct iap_node *node);
};

struct iap_node {
	int id;
	enum iap_op_kind kind;
	const struct iap_op_ops *ops;
	char *name;                           /* module path, e.g. "features.0"; may be "" */
	int n_inputs;
	int inputs[IAP_NODE_MAX_INPUTS];      /* node ids, or IAP_GRAPH_INPUT */
	int n_params;
	struct iap_param params[IAP_NODE_MAX_PARAMS];
	union iap_op_attr attr;
	/* Output shape of ONE sample (no batch axis): e.g. {64, 224, 224} or {197, 768}. */
	int out_ndim;
	int64_t out_shape[IAP_MAX_DIMS - 1];
	struct iap_tensor out;                /* forward output for the current batch */
	struct iap_tensor aux[IAP_NODE_MAX_AUX]; /* what the op saved for its backward */
	int n_consumers;                      /* how many nodes read this node's output */
	int unit_group;                       /* index into graph->groups whose units live here, or -1 */
	int mask_group;                       /* index of the group whose mask is applied to this output, or -1 */
};

/*
 * Prunable units. A unit is one conv output channel, one hidden neuron of a
 * linear/MLP layer, or one attention head. The units of a group live on one
 * axis of a node's output, viewed as [outer][n_units * unit_size][inner]:
 * axis 1 for 4-D outputs (NCHW channels, or N×H×T×T heads), the last axis
 * otherwise (N×D neurons, N×T×D MLP neurons). unit_size > 1 groups several
 * consecutive positions into one unit (a head's head_dim columns).
 *
 * The mask is applied to the output of mask_node, which is the node itself or
 * the BatchNorm that directly follows it, so that a masked unit is exactly
 * zero for every input (the BN shift would otherwise leave a constant).
 */
struct iap_unit_group {
	char *name;          /* layer name the units belong to (its parameters' prefix) */
	int node;            /* node whose output holds the units: scores are read here */
	int mask_node;       /* node whose output is zeroed for masked units */
	int n_units;
	int unit_size;
	int coupling;        /* groups sharing a coupling id share unit indices (ResNet residual channels); -1 none */
	uint8_t *mask;       /* n_units entries, 1 keep / 0 pruned; NULL means all kept */
};

struct iap_graph {
	int n_nodes, cap_nodes;
	struct iap_node *nodes;
	int in_ndim;                          /* input shape of one sample, e.g. {3, 224, 224} */
	int64_t in_shape[IAP_MAX_DIMS - 1];
	int output;                           /* node id of the graph output (last node by default) */
	int batch;                            /* batch size the buffers are shaped for (0: none yet) */
	int training;                         /* 1: batchnorm uses batch statistics, dropout drops */
	struct iap_rng rng;                   /* dropout randomness, seeded by iap_graph_seed */
	struct iap_tensor input;              /* copy of the last forward input */
	struct iap_tensor input_r;            /* what the last backward walk brought to the input */
	struct iap_tensor *r;                 /* per-node quantity at the output from the last walk */
	unsigned char *r_valid;               /* r[i] was reached by the last walk */
	float *workspace;                     /* shared scratch for ops and rules */
	size_t workspace_len;                 /* floats */
	int n_groups, cap_groups;
	struct iap_unit_group *groups;
	int finalized;
	int shape_only;                       /* params get shapes but no storage (counting, planning) */
	struct iap_error build_err;           /* first builder error (sticky) */
	int build_failed;
	/*
	 * Channels 1.. of the last walk (struct iap_ruleset n_channels), kept
	 * so repeated walks reuse them: channel c of node i is
	 * r_more[(c - 1) * (n_nodes + 1) + i], and i = n_nodes is the input.
	 * Channel 0 is r[] (and input_r).
	 */
	struct iap_tensor *r_more;
	int r_more_channels;                  /* channels r_more has room for, beyond channel 0 */
};

/*
 * Plugins reach nodes and unit groups through these, never by indexing
 * g->nodes or g->groups: struct iap_node and struct iap_unit_group grow at
 * the end, which changes the arrays' stride but not these pointers. NULL
 * when i is out of range. (Like strchr, they take a const graph and give a
 * modifiable element: builders and initialisers write through them.)
 */
struct iap_node *iap_graph_node(const struct iap_graph *g, int i);
struct iap_unit_group *iap_graph_group(const struct iap_graph *g, int i);

/* ---- life cycle ---------------------------------------------------------- */

/* New empty graph taking input samples of the given shape (without batch axis). */
struct iap_graph *iap_graph_new(int in_ndim, const int64_t *in_shape, struct iap_error *err);
void iap_graph_free(struct iap_graph *g);

/*
 * Check the graph after building: reports the first builder error (builders
 * are sticky: after one fails, later calls return -1 and are no-ops), sets the
 * output to the last node unless iap_graph_set_output was called, counts
 * consumers and resolves unit groups' mask nodes.
 */
int iap_graph_finalize(struct iap_graph *g, struct iap_error *err);
int iap_graph_set_output(struct iap_graph *g, int node);

/* ---- builder internals (used by the op builders in <iaprune/ops.h>) ------ */

/*
 * Append a node of the given op reading the given inputs. Returns its id or -1
 * (the graph's sticky build error is set). The caller fills attr, out shape
 * and params.
 */
int iap_graph_add_node(struct iap_graph *g, const struct iap_op_ops *ops, const char *name,
		       int n_inputs, const int *inputs);

/* Shape of one sample of node id's output (id may be IAP_GRAPH_INPUT). */
int iap_graph_sample_shape(const struct iap_graph *g, int id, int64_t *shape);

/*
 * Add a zero-filled parameter to node id under key "<node name>.<suffix>"
 * (just "<suffix>" when the node name is empty). Returns its index or -1.
 */
int iap_graph_add_param(struct iap_graph *g, int id, const char *suffix, int ndim,
			const int64_t *shape, unsigned flags);

/*
 * Build without parameter storage: parameters get their shapes but no data,
 * so full-size architectures can be counted (parameters, MACs) cheaply. Such
 * a graph cannot run. Call before adding nodes.
 */
void iap_graph_set_shape_only(struct iap_graph *g, int on);

/* Record a builder failure (first one wins); returns -1 for `return iap_graph_fail(...)`. */
int iap_graph_fail(struct iap_graph *g, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* ---- parameters ---------------------------------------------------------- */

/* Find a parameter by its full key; NULL when absent. */
struct iap_param *iap_graph_find_param(struct iap_graph *g, const char *key);

/* Visit every parameter in node order; stops at and returns the first non-zero callback result. */
int iap_graph_foreach_param(struct iap_graph *g,
			    int (*fn)(struct iap_node *node, struct iap_param *p, void *user),
			    void *user);

/* Number of parameter elements; buffers (running stats) are counted separately. */
int64_t iap_graph_param_count(const struct iap_graph *g, int64_t *buffers);

/* Multiply-accumulates of one forward pass for one sample (sum of the ops' counts). */
uint64_t iap_graph_macs(const struct iap_graph *g);

/*
 * For gradient rules: the .grad buffer of node->params[k] when that
 * parameter should receive a gradient (trainable), NULL otherwise. A
 * trainable parameter without a matching buffer is an IAP_EINVAL naming it
 * (the walk allocates them when param grads are wanted).
 */
int iap_param_grad(const struct iap_node *node, int k, float **grad, struct iap_error *err);

/* Allocate (zeroed) or zero the .grad of every trainable parameter. */
int iap_graph_zero_grads(struct iap_graph *g, struct iap_error *err);

/* ---- forward ------------------------------------------------------------- */

/*
 * Run the graph on x (shape [N, in_shape...]). Every node's output is kept for
 * the backward walk until the next forward. Buffers are (re)shaped only when N
 * changes. A ReLU right after an unmasked batchnorm or an add runs in that
 * node's pass (core/graph/fuse.h); its output is still its own, bit for bit.
 */
int iap_graph_forward(struct iap_graph *g, const struct iap_tensor *x, struct iap_error *err);

/* The graph output of the last forward. */
const struct iap_tensor *iap_graph_output(const struct iap_graph *g);

/* Switch between evaluation (default) and training behaviour of batchnorm and dropout. */
void iap_graph_set_training(struct iap_graph *g, int training);
void iap_graph_seed(struct iap_graph *g, uint64_t seed);

/* The node's input tensor i of the last forward (the graph input for IAP_GRAPH_INPUT). */
const struct iap_tensor *iap_graph_node_input(const struct iap_graph *g, const struct iap_node *node, int i);

/*
 * The shared workspace, grown to at least n floats. Contents are undefined
 * on return; valid until the next call that may grow it.
 */
float *iap_graph_workspace(struct iap_graph *g, size_t n, struct iap_error *err);

/* ---- the backward walk --------------------------------------------------- */

/* The most tensors per node a walk carries (struct iap_ruleset n_channels). */
#define IAP_WALK_MAX_CHANNELS 4

/*
 * Everything a rule sees for one node. Contract: a rule ADDS its contribution
 * to each non-NULL r_in[i] (same shape as in[i]); r_in[i] is NULL when nothing
 * upstream needs input i. The gradient rule also adds parameter gradients to
 * node->params[k].grad when want_param_grads is set. A rule must not keep
 * pointers past its return.
 *
 * A rule set with several channels sees them all: channel c at the output
 * is r_out_ch[c] and into input i goes r_in_ch[c][i] (NULL exactly where
 * r_in[i] is); channel 0 is r_out / r_in itself, the one hooks, unit scores
 * and input_r see. The walk shapes, zeroes, masks and sums every channel as
 * it does channel 0.
 */
struct iap_rule_ctx {
	struct iap_graph *graph;
	struct iap_node *node;
	const struct iap_tensor *in[IAP_NODE_MAX_INPUTS];  /* forward inputs */
	const struct iap_tensor *out;                      /* forward output */
	const struct iap_tensor *r_out;                    /* quantity arriving at the output */
	struct iap_tensor *r_in[IAP_NODE_MAX_INPUTS];      /* accumulate into these */
	int want_param_grads;
	void *user;                                        /* the rule set's user pointer */
	struct iap_error *err;
	int n_channels;                                    /* 1 unless the rule set asks for more */
	const struct iap_tensor *r_out_ch[IAP_WALK_MAX_CHANNELS];
	struct iap_tensor *r_in_ch[IAP_WALK_MAX_CHANNELS][IAP_NODE_MAX_INPUTS];
};

typedef int (*iap_rule_fn)(struct iap_rule_ctx *ctx);

/*
 * Called by the walk once before it visits any node, with the graph run
 * forward and seed[c] (c < n_channels) the quantity each channel starts
 * from at the output: seed[0] holds the walk's seed, the others are zero
 * and shaped like it, and prepare may write any of them. Here a rule set
 * builds what it needs for this graph and batch (plans, folded weights,
 * scratch). Non-zero stops the walk before it starts and is returned.
 */
typedef int (*iap_ruleset_prepare_fn)(void *user, struct iap_graph *g, struct iap_tensor *const *seed,
				      struct iap_error *err);
/* Called once after a walk whose prepare succeeded, whether the walk did: free what prepare made. */
typedef void (*iap_ruleset_finish_fn)(void *user, struct iap_graph *g);

/*
 * A rule per op kind. NULL entries are ops this rule set cannot handle.
 * size and n_rules say what the builder compiled: rules[] is the last
 * member, so ops appended to enum iap_op_kind later make the array (and
 * the struct) longer without moving anything, and an older rule set simply
 * has no rule for the new ops (a clear error when the walk meets one).
 * Start a rule set with IAP_RULESET_HEADER. What a walk with this rule set
 * needs beyond its rules (channels, prepare, finish; ABI 3.0) sits before
 * rules[], so growing it is a major ABI change.
 */
struct iap_ruleset {
	uint32_t size;                    /* sizeof(struct iap_ruleset) as compiled */
	uint32_t n_rules;                 /* entries in rules[]: IAP_OP_COUNT as compiled */
	const char *name;
	void *user;
	uint32_t n_channels;              /* tensors per node, 1..IAP_WALK_MAX_CHANNELS (0 means 1) */
	iap_ruleset_prepare_fn prepare;   /* may be NULL */
	iap_ruleset_finish_fn finish;     /* may be NULL */
	iap_rule_fn rules[IAP_OP_COUNT];
};

#define IAP_RULESET_HEADER .size = sizeof(struct iap_ruleset), .n_rules = IAP_OP_COUNT

/* The plain gradient: each op's own backward. Always complete. */
const struct iap_ruleset *iap_ruleset_gradient(void);

/* The gradient rule for whatever op ctx->node is; rule sets may reuse it (e.g. flatten, dropout). */
int iap_rule_gradient(struct iap_rule_ctx *ctx);

/*
 * Called for every visited node with the quantity at its output, after the
 * node's mask has been applied and before its rule runs. Non-zero stops the
 * walk and is returned.
 */
typedef int (*iap_walk_hook_fn)(void *user, struct iap_graph *g, const struct iap_node *node,
				const struct iap_tensor *r_out);

struct iap_walk_opts {
	iap_walk_hook_fn hook;
	void *hook_user;
	int want_param_grads;   /* gradient rule set: accumulate into params' .grad */
	int want_input;         /* fill g->input_r (heatmaps, input×gradient) */
};

/*
 * Walk the graph backwards from its output, starting with seed (same shape
 * as the output of the last forward). Nodes that reach neither a trainable
 * parameter (when param grads are wanted), a hook, nor the input (when wanted)
 * are still visited so hooks see every node; inputs nobody needs get r_in NULL.
 * The rule set's prepare runs before the first node and its finish after
 * the last (see iap_ruleset_prepare_fn).
 */
int iap_graph_backward(struct iap_graph *g, const struct iap_ruleset *rs,
		       const struct iap_tensor *seed, const struct iap_walk_opts *opts,
		       struct iap_error *err);

/*
 * What the last walk brought to node id's output, where the walk kept it:
 * every visited node when it ran with a hook, otherwise only nodes on a path
 * to what it computed (input relevance, parameter gradients); else NULL.
 */
const struct iap_tensor *iap_graph_node_r(const struct iap_graph *g, int id);

/* ---- units and masks ----------------------------------------------------- */

/*
 * Declare the output of node id as n_units prunable units of unit_size
 * positions each (see struct iap_unit_group). Returns the group index or -1.
 */
int iap_graph_add_units(struct iap_graph *g, int node, int n_units, int unit_size, int coupling);

/*
 * View of tensor t (batch axis included) along a group's unit axis:
 * t = [outer][axis_len][inner] with axis_len = n_units * unit_size.
 */
void iap_unit_view(const struct iap_tensor *t, int64_t *outer, int64_t *axis_len, int64_t *inner);

/* Set a group's mask (copied; n_units entries, 1 keep / 0 prune). NULL clears it. */
int iap_graph_set_mask(struct iap_graph *g, int group, const uint8_t *keep, struct iap_error *err);

/*
 * The mask of node's own output units, when a group declared on that node
 * has one unit per output feature (n_out of them) and its mask prunes
 * something; else NULL. *kept receives the kept count. Ops use it to skip
 * the pruned outputs' work in a masked forward.
 */
const uint8_t *iap_unit_own_keep(const struct iap_graph *g, const struct iap_node *node, int n_out,
				 int *kept);

/* Zero, in t, the units that the group's mask prunes. */
void iap_unit_apply_mask(const struct iap_unit_group *grp, struct iap_tensor *t);

/*
 * Sum of sample n's values of unit u in t (batch first, the group's node
 * output shape), in double; with abs_first, of their absolute values.
 */
double iap_unit_sample_sum(const struct iap_unit_group *grp, const struct iap_tensor *t, int64_t n,
			   int u, int abs_first);

/*
 * Sum t over everything but the unit axis, per sample: scores has
 * [N][n_units] entries. With abs_first, |t| is summed instead of t.
 */
void iap_unit_reduce(const struct iap_unit_group *grp, const struct iap_tensor *t,
		     int abs_first, float *scores);

/* Total number of units across all groups. */
int64_t iap_graph_unit_count(const struct iap_graph *g);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_GRAPH_H */
