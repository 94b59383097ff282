/*
 * iaprune — the op builders (one call per op) and the raw kernels that rule
 * writers and benchmarks may call directly.
 *
 * Builders append a node to the graph and return its id, or -1 when the graph
 * is already in a failed state or this call fails (shape mismatch, bad
 * argument); the first failure is reported by iap_graph_finalize. `in` is a
 * node id or IAP_GRAPH_INPUT. `name` is the module path that prefixes the
 * node's parameter keys, exactly as torchvision names it ("features.0").
 * All semantics follow PyTorch's.
 */
#ifndef IAPRUNE_OPS_H
#define IAPRUNE_OPS_H

#include <stdint.h>

#include <iaprune/graph.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- op vtables ----------------------------------------------------------- */
extern const struct iap_op_ops iap_op_conv2d;
extern const struct iap_op_ops iap_op_linear;
extern const struct iap_op_ops iap_op_relu;
extern const struct iap_op_ops iap_op_gelu;
extern const struct iap_op_ops iap_op_maxpool2d;
extern const struct iap_op_ops iap_op_avgpool2d;
extern const struct iap_op_ops iap_op_adaptive_avgpool2d;
extern const struct iap_op_ops iap_op_batchnorm2d;
extern const struct iap_op_ops iap_op_layernorm;
extern const struct iap_op_ops iap_op_dropout;
extern const struct iap_op_ops iap_op_flatten;
extern const struct iap_op_ops iap_op_add;
extern const struct iap_op_ops iap_op_softmax;
extern const struct iap_op_ops iap_op_tokens;
extern const struct iap_op_ops iap_op_class_token;
extern const struct iap_op_ops iap_op_pos_embed;
extern const struct iap_op_ops iap_op_attn_scores;
extern const struct iap_op_ops iap_op_attn_context;
extern const struct iap_op_ops iap_op_token_select;

/* ---- builders ------------------------------------------------------------- */

/* Params "<name>.weight" [out_ch, in_ch, kh, kw] and, with bias, "<name>.bias" [out_ch]. */
int iap_conv2d(struct iap_graph *g, const char *name, int in, int out_ch, int kh, int kw,
	       int stride_h, int stride_w, int pad_h, int pad_w, int bias);

/* Over the last axis of any input ([N, in] or [N, T, in]). "<name>.weight" [out, in], "<name>.bias" [out]. */
int iap_linear(struct iap_graph *g, const char *name, int in, int out_features, int bias);

int iap_relu(struct iap_graph *g, const char *name, int in);
/* GELU, exact erf form: x·Φ(x). */
int iap_gelu(struct iap_graph *g, const char *name, int in);

int iap_maxpool2d(struct iap_graph *g, const char *name, int in, int k, int stride, int pad, int ceil_mode);
int iap_avgpool2d(struct iap_graph *g, const char *name, int in, int k, int stride, int pad,
		  int ceil_mode, int count_include_pad);
/* PyTorch's bins: start = floor(i·H/oh), end = ceil((i+1)·H/oh). */
int iap_adaptive_avgpool2d(struct iap_graph *g, const char *name, int in, int out_h, int out_w);

/* "<name>.weight", ".bias" (trainable), ".running_mean", ".running_var" (buffers, var = 1). */
int iap_batchnorm2d(struct iap_graph *g, const char *name, int in, float eps, float momentum);
/* Over the last axis. "<name>.weight" (= 1), "<name>.bias". */
int iap_layernorm(struct iap_graph *g, const char *name, int in, float eps);

int iap_dropout(struct iap_graph *g, const char *name, int in, float p);
/* Everything after the batch axis into one axis. */
int iap_flatten(struct iap_graph *g, const char *name, int in);
/* Elementwise a + b of equal shapes (residual connections). */
int iap_add(struct iap_graph *g, const char *name, int a, int b);
/* Over the last axis. */
int iap_softmax(struct iap_graph *g, const char *name, int in);

/* ViT pieces. */
int iap_tokens(struct iap_graph *g, const char *name, int in);
/* Param "<name>.<key>" or just "<key>" for an empty name: shape [1, 1, D] ("class_token" in torchvision). */
int iap_class_token(struct iap_graph *g, const char *name, const char *key, int in);
/* Param [1, T, D] under "<name>.<key>" ("encoder" + "pos_embedding"). */
int iap_pos_embed(struct iap_graph *g, const char *name, const char *key, int in);
int iap_attn_scores(struct iap_graph *g, const char *name, int qkv, int num_heads);
int iap_attn_context(struct iap_graph *g, const char *name, int weights, int qkv, int num_heads);
int iap_token_select(struct iap_graph *g, const char *name, int in, int index);

/*
 * torch.nn.MultiheadAttention (self-attention, batch_first, no dropout) as
 * four nodes: packed q|k|v projection ("<name>.in_proj_weight" [3D, D],
 * "<name>.in_proj_bias"), scores, softmax (the attention weights: head units
 * are declared here), context, and "<name>.out_proj" linear. Returns the id of
 * the output projection; *weights_node (if not NULL) receives the softmax node.
 */
int iap_mha(struct iap_graph *g, const char *name, int in, int num_heads, int *weights_node);

/* Patch embedding: conv k = s = patch ("<name>.weight"/".bias"), then tokens. */
int iap_patch_embed(struct iap_graph *g, const char *name, int in, int dim, int patch);

/* ---- loss (not a graph node) ----------------------------------------------- */

/*
 * PyTorch cross_entropy(logits [N, C], labels, weight=class_weights, reduction
 * mean): Σ_n w[y_n]·(−log softmax(x_n)[y_n]) / Σ_n w[y_n]. class_weights may
 * be NULL (all 1). When grad is not NULL it receives d loss / d logits
 * (allocated to [N, C]).
 */
int iap_cross_entropy(const struct iap_tensor *logits, const int *labels,
		      const float *class_weights, float *loss, struct iap_tensor *grad,
		      struct iap_error *err);

/* Row-wise softmax over the last axis of an [rows, cols] block (in may equal out). */
void iap_softmax_rows(const float *in, float *out, int64_t rows, int64_t cols);

/* ---- raw kernels for rule writers and benchmarks ----------------------------- */

/*
 * Convolution geometry, everything needed to run the kernels below on raw
 * buffers (NCHW, weights [out_ch][in_ch][kh][kw]).
 */
struct iap_conv_geom {
	int n, in_ch, in_h, in_w;
	int out_ch, out_h, out_w;
	int kh, kw, stride_h, stride_w, pad_h, pad_w;
};

/* Fill geometry from a conv node and a batch size. */
void iap_conv_geom_from_node(struct iap_conv_geom *cg, const struct iap_node *node, int batch,
			     const int64_t *in_sample_shape);

/* Floats of workspace the three kernels need for this geometry. */
size_t iap_conv2d_workspace(const struct iap_conv_geom *cg);

/* y = conv(x, w) + b (b may be NULL). ws: iap_conv2d_workspace floats. */
void iap_conv2d_forward_raw(const struct iap_conv_geom *cg, const float *x, const float *w,
			    const float *b, float *y, float *ws);
/* dx += conv_transpose(dy, w). */
void iap_conv2d_backward_input_raw(const struct iap_conv_geom *cg, const float *dy,
				   const float *w, float *dx, float *ws);
/* dw += dy ⋆ x, db += Σ dy (db may be NULL). */
void iap_conv2d_backward_params_raw(const struct iap_conv_geom *cg, const float *x,
				    const float *dy, float *dw, float *db, float *ws);

/* y[rows][out] = x[rows][in] · wᵀ + b (b may be NULL). */
void iap_linear_forward_raw(int64_t rows, int in, int out, const float *x, const float *w,
			    const float *b, float *y);
/* dx[rows][in] += dy · w. */
void iap_linear_backward_input_raw(int64_t rows, int in, int out, const float *dy,
				   const float *w, float *dx);
/* dw[out][in] += dyᵀ · x, db += Σ_rows dy (db may be NULL). */
void iap_linear_backward_params_raw(int64_t rows, int in, int out, const float *x,
				    const float *dy, float *dw, float *db);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_OPS_H */
