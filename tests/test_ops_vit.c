/*
 * The ViT ops: token index maps checked element by element, attention checked
 * against hand-computed numbers (T = 2, D = 2, one and two heads, and the full
 * torch.nn.MultiheadAttention wiring with chosen projections), and every op's
 * gradient — and a whole small encoder block's — against finite differences.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "gradcheck.h"
#include "testutil.h"

/* Relative 1e-5 (PyTorch scales q before the product; we scale the product). */
#define assert_close(got, want) \
	assert_true(fabs((double)(got) - (double)(want)) <= 1e-5 * fmax(1.0, fabs((double)(want))))

static struct iap_graph *new_graph(int ndim, ...)
{
	int64_t shape[IAP_MAX_DIMS];
	struct iap_error err;
	struct iap_graph *g;
	va_list ap;

	va_start(ap, ndim);
	for (int i = 0; i < ndim; i++)
		shape[i] = va_arg(ap, int64_t);
	va_end(ap);
	g = iap_graph_new(ndim, shape, &err);
	assert_non_null(g);
	return g;
}

static void finalize_ok(struct iap_graph *g)
{
	struct iap_error err = { 0 };
	int rc = iap_graph_finalize(g, &err);

	if (rc)
		fprintf(stderr, "finalize: %s\n", err.msg);
	assert_int_equal(rc, IAP_OK);
}

static void forward_ok(struct iap_graph *g, const struct iap_tensor *x)
{
	struct iap_error err = { 0 };
	int rc = iap_graph_forward(g, x, &err);

	if (rc)
		fprintf(stderr, "forward: %s\n", err.msg);
	assert_int_equal(rc, IAP_OK);
}

static float *param(struct iap_graph *g, const char *key)
{
	struct iap_param *p = iap_graph_find_param(g, key);

	if (!p)
		fprintf(stderr, "no parameter '%s'\n", key);
	assert_non_null(p);
	return p->value.data;
}

/* x[i] = i, so every output value names the input position it came from. */
static struct iap_tensor iota_tensor(int ndim, const int64_t *shape)
{
	struct iap_tensor t = { 0 };
	struct iap_error err;

	assert_int_equal(iap_tensor_alloc(&t, ndim, shape, &err), IAP_OK);
	for (int64_t i = 0; i < iap_tensor_numel(&t); i++)
		t.data[i] = (float)i;
	return t;
}

/* ---- token index maps ------------------------------------------------------ */

/* x.reshape(n, D, h*w).permute(0, 2, 1): out[n, p, d] = x[n, d, p]. */
static void test_tokens_mapping(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, (int64_t)3, (int64_t)2, (int64_t)2);
	int tok = iap_tokens(g, "t", IAP_GRAPH_INPUT);
	const int64_t xs[4] = { 2, 3, 2, 2 };
	struct iap_tensor x = iota_tensor(4, xs);

	finalize_ok(g);
	assert_int_equal(g->nodes[tok].out_ndim, 2);
	assert_int_equal(g->nodes[tok].out_shape[0], 4);
	assert_int_equal(g->nodes[tok].out_shape[1], 3);
	forward_ok(g, &x);
	const struct iap_tensor *y = iap_graph_output(g);
	/* Sample 0, token 0 = pixel (0,0) of channels 0,1,2 = x 0, 4, 8. */
	assert_float_equal(y->data[0], 0.0f, 0.0f);
	assert_float_equal(y->data[1], 4.0f, 0.0f);
	assert_float_equal(y->data[2], 8.0f, 0.0f);
	/* Sample 0, token 3 = pixel (1,1): 3, 7, 11. */
	assert_float_equal(y->data[9], 3.0f, 0.0f);
	assert_float_equal(y->data[10], 7.0f, 0.0f);
	assert_float_equal(y->data[11], 11.0f, 0.0f);
	/* Sample 1, token 1 = pixel (0,1): 12 + 1, 12 + 5, 12 + 9. */
	assert_float_equal(y->data[12 + 3], 13.0f, 0.0f);
	assert_float_equal(y->data[12 + 4], 17.0f, 0.0f);
	assert_float_equal(y->data[12 + 5], 21.0f, 0.0f);
	for (int n = 0; n < 2; n++)
		for (int p = 0; p < 4; p++)
			for (int d = 0; d < 3; d++)
				assert_float_equal(y->data[(n * 4 + p) * 3 + d],
						   (float)(n * 12 + d * 4 + p), 0.0f);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* class_token prepends, pos_embed adds, token_select picks: exact values. */
static void test_class_pos_select_mapping(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)2, (int64_t)3);
	int cls = iap_class_token(g, "", "class_token", IAP_GRAPH_INPUT);
	int pos = iap_pos_embed(g, "encoder", "pos_embedding", cls);
	int sel_last = iap_token_select(g, "last", pos, -1);
	int sel = iap_token_select(g, "", pos, 0);
	const int64_t xs[3] = { 2, 2, 3 };
	struct iap_tensor x = iota_tensor(3, xs);

	/* A selection outside the sequence is a build error, not a crash later. */
	struct iap_graph *bad = new_graph(2, (int64_t)2, (int64_t)3);
	struct iap_error err = { 0 };
	assert_true(iap_token_select(bad, "bad", IAP_GRAPH_INPUT, 2) < 0);
	assert_int_equal(iap_graph_finalize(bad, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "bad"));
	iap_graph_free(bad);

	finalize_ok(g);
	assert_int_equal(g->nodes[cls].out_shape[0], 3);
	assert_int_equal(g->nodes[sel].out_ndim, 1);
	assert_int_equal(g->nodes[sel].out_shape[0], 3);
	const struct iap_param *cp = iap_graph_find_param(g, "class_token");
	const struct iap_param *pp = iap_graph_find_param(g, "encoder.pos_embedding");
	assert_non_null(cp);
	assert_non_null(pp);
	assert_int_equal(cp->value.ndim, 3);
	assert_int_equal(cp->value.shape[2], 3);
	assert_int_equal(pp->value.ndim, 3);
	assert_int_equal(pp->value.shape[1], 3);
	assert_int_equal(pp->value.shape[2], 3);

	float *c = param(g, "class_token");
	float *pe = param(g, "encoder.pos_embedding");
	c[0] = 100.0f, c[1] = 200.0f, c[2] = 300.0f;
	for (int i = 0; i < 9; i++)
		pe[i] = 0.5f * (float)(i + 1);
	forward_ok(g, &x);

	/* Sample 1: [cls; x rows 6..8; x rows 9..11]. */
	const float *yc = g->nodes[cls].out.data + 9;
	const float want_c[9] = { 100, 200, 300, 6, 7, 8, 9, 10, 11 };
	for (int i = 0; i < 9; i++)
		assert_float_equal(yc[i], want_c[i], 0.0f);
	/* Sample 0 after the embedding: token 2 = x[0, 1] + pe[2] = (3, 4, 5) + (3.5, 4, 4.5). */
	const float *yp = g->nodes[pos].out.data;
	assert_float_equal(yp[6], 6.5f, 0.0f);
	assert_float_equal(yp[7], 8.0f, 0.0f);
	assert_float_equal(yp[8], 9.5f, 0.0f);
	/* Sample 1, class token: (100, 200, 300) + (0.5, 1, 1.5). */
	const float *ys = g->nodes[sel].out.data;
	assert_float_equal(ys[3], 100.5f, 0.0f);
	assert_float_equal(ys[4], 201.0f, 0.0f);
	assert_float_equal(ys[5], 301.5f, 0.0f);
	/* Sample 1, last token: (9, 10, 11) + (3.5, 4, 4.5). */
	const float *yl = g->nodes[sel_last].out.data;
	assert_float_equal(yl[3], 12.5f, 0.0f);
	assert_float_equal(yl[4], 14.0f, 0.0f);
	assert_float_equal(yl[5], 15.5f, 0.0f);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* ---- attention by hand ------------------------------------------------------ */

/*
 * Packed q|k|v rows for two tokens of width 2:
 *   q0 = (1, 0), k0 = (1, 0), v0 = (1, 2)
 *   q1 = (0, 1), k1 = (0, 2), v1 = (3, 4)
 * Sample 1 has the two tokens swapped.
 */
static const float qkv_rows[2][6] = {
	{ 1, 0, 1, 0, 1, 2 },
	{ 0, 1, 0, 2, 3, 4 },
};

static struct iap_tensor qkv_input(void)
{
	const int64_t shape[3] = { 2, 2, 6 };
	struct iap_tensor t = { 0 };
	struct iap_error err;

	assert_int_equal(iap_tensor_alloc(&t, 3, shape, &err), IAP_OK);
	memcpy(t.data, qkv_rows, sizeof(qkv_rows));
	memcpy(t.data + 12, qkv_rows[1], sizeof(qkv_rows[1]));
	memcpy(t.data + 18, qkv_rows[0], sizeof(qkv_rows[0]));
	return t;
}

/*
 * One head, dh = 2, scale 1/√2. q·k: q0k0 = 1, q0k1 = 0, q1k0 = 0, q1k1 = 2, so
 *   S = [[1/√2, 0], [0, √2]]
 *   W = [[e^{1/√2}/(e^{1/√2}+1), 1/(e^{1/√2}+1)], [1/(1+e^{√2}), e^{√2}/(1+e^{√2})]]
 *     = [[0.66976155, 0.33023845], [0.19557032, 0.80442968]]
 *   C = W · [[1, 2], [3, 4]] = [[1.66047690, 2.66047690], [2.60885937, 3.60885937]]
 */
static void test_attention_one_head_by_hand(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)2, (int64_t)6);
	int sc = iap_attn_scores(g, "a", IAP_GRAPH_INPUT, 1);
	int sm = iap_softmax(g, "a", sc);
	int cx = iap_attn_context(g, "a", sm, IAP_GRAPH_INPUT, 1);
	struct iap_tensor x = qkv_input();
	const float s[4] = { 0.70710678f, 0.0f, 0.0f, 1.41421356f };
	const float w[4] = { 0.66976155f, 0.33023845f, 0.19557032f, 0.80442968f };
	const float c[4] = { 1.66047690f, 2.66047690f, 2.60885937f, 3.60885937f };

	finalize_ok(g);
	assert_int_equal(g->nodes[sc].out_ndim, 3);
	assert_int_equal(g->nodes[sc].out_shape[0], 1);
	assert_int_equal(g->nodes[sc].out_shape[1], 2);
	assert_int_equal(g->nodes[cx].out_shape[0], 2);
	assert_int_equal(g->nodes[cx].out_shape[1], 2);
	/* T·T·D per sample for each of the two products. */
	assert_int_equal(iap_op_attn_scores.macs(g, &g->nodes[sc]), 8);
	assert_int_equal(iap_op_attn_context.macs(g, &g->nodes[cx]), 8);
	forward_ok(g, &x);
	for (int i = 0; i < 4; i++) {
		assert_close(g->nodes[sc].out.data[i], s[i]);
		assert_close(g->nodes[sm].out.data[i], w[i]);
		assert_close(g->nodes[cx].out.data[i], c[i]);
	}
	/* Sample 1 (tokens swapped): everything is the same permuted, index i ↦ 3 − i. */
	for (int i = 0; i < 4; i++) {
		assert_close(g->nodes[sc].out.data[4 + i], s[3 - i]);
		assert_close(g->nodes[sm].out.data[4 + i], w[3 - i]);
	}
	assert_close(g->nodes[cx].out.data[4], c[2]);
	assert_close(g->nodes[cx].out.data[5], c[3]);
	assert_close(g->nodes[cx].out.data[6], c[0]);
	assert_close(g->nodes[cx].out.data[7], c[1]);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/*
 * Two heads, dh = 1, scale 1. Head 0 reads column 0 of q, k, v; head 1 column 1.
 *   head 0: q = (1, 0), k = (1, 0): S0 = [[1, 0], [0, 0]]
 *           W0 = [[e/(e+1), 1/(e+1)], [1/2, 1/2]] = [[0.73105858, 0.26894142], [0.5, 0.5]]
 *           v = (1, 3): C[:, 0] = (0.73105858 + 3·0.26894142, 2) = (1.53788284, 2)
 *   head 1: q = (0, 1), k = (0, 2): S1 = [[0, 0], [0, 2]]
 *           W1 = [[1/2, 1/2], [1/(1+e²), e²/(1+e²)]] = [[0.5, 0.5], [0.11920292, 0.88079708]]
 *           v = (2, 4): C[:, 1] = (3, 2·0.11920292 + 4·0.88079708) = (3, 3.76159416)
 */
static void test_attention_two_heads_by_hand(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)2, (int64_t)6);
	int sc = iap_attn_scores(g, "a", IAP_GRAPH_INPUT, 2);
	int sm = iap_softmax(g, "a", sc);
	int cx = iap_attn_context(g, "a", sm, IAP_GRAPH_INPUT, 2);
	struct iap_tensor x = qkv_input();
	const float s[8] = { 1, 0, 0, 0, 0, 0, 0, 2 };
	const float w[8] = { 0.73105858f, 0.26894142f, 0.5f, 0.5f,
			     0.5f, 0.5f, 0.11920292f, 0.88079708f };
	const float c[4] = { 1.53788284f, 3.0f, 2.0f, 3.76159416f };

	finalize_ok(g);
	assert_int_equal(g->nodes[sc].out_shape[0], 2);
	forward_ok(g, &x);
	for (int i = 0; i < 8; i++) {
		assert_close(g->nodes[sc].out.data[i], s[i]);
		assert_close(g->nodes[sm].out.data[i], w[i]);
	}
	for (int i = 0; i < 4; i++)
		assert_close(g->nodes[cx].out.data[i], c[i]);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/*
 * iap_mha (D = 2, two heads) with projections chosen so that x0 = (1, 0),
 * x1 = (0, 1) give the packed qkv above: W_q = I, W_k = diag(1, 2),
 * W_v = [[1, 3], [2, 4]], biases 0 except v's (0.25, -0.25). The weights are
 * those of the two-head case; rows of W sum to 1, so the context shifts by
 * exactly the v bias. Then out_proj: W_o = [[1, 1], [0, 2]], b_o = (0.5, -0.5).
 */
static void test_mha_wiring_by_hand(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)2, (int64_t)2);
	int wnode = -1;
	int out = iap_mha(g, "enc.self_attention", IAP_GRAPH_INPUT, 2, &wnode);
	const int64_t xs[3] = { 1, 2, 2 };
	struct iap_tensor x = { 0 };
	struct iap_error err;

	finalize_ok(g);
	assert_true(out >= 0);
	assert_true(wnode >= 0);
	assert_int_equal(g->nodes[wnode].kind, IAP_OP_SOFTMAX);
	assert_int_equal(g->nodes[out].kind, IAP_OP_LINEAR);
	assert_null(iap_graph_find_param(g, "enc.self_attention.weight"));
	assert_null(iap_graph_find_param(g, "enc.self_attention.bias"));
	const struct iap_param *ipw = iap_graph_find_param(g, "enc.self_attention.in_proj_weight");
	assert_non_null(ipw);
	assert_int_equal(ipw->value.shape[0], 6);
	assert_int_equal(ipw->value.shape[1], 2);

	float *wi = param(g, "enc.self_attention.in_proj_weight");
	float *bi = param(g, "enc.self_attention.in_proj_bias");
	float *wo = param(g, "enc.self_attention.out_proj.weight");
	float *bo = param(g, "enc.self_attention.out_proj.bias");
	const float win[12] = { 1, 0, 0, 1,   1, 0, 0, 2,   1, 3, 2, 4 };
	memcpy(wi, win, sizeof(win));
	memset(bi, 0, 6 * sizeof(float));
	bi[4] = 0.25f, bi[5] = -0.25f;
	wo[0] = 1, wo[1] = 1, wo[2] = 0, wo[3] = 2;
	bo[0] = 0.5f, bo[1] = -0.5f;

	assert_int_equal(iap_tensor_alloc(&x, 3, xs, &err), IAP_OK);
	x.data[0] = 1, x.data[1] = 0, x.data[2] = 0, x.data[3] = 1;
	forward_ok(g, &x);
	/* Weights as in the two-head case. */
	const float w[8] = { 0.73105858f, 0.26894142f, 0.5f, 0.5f,
			     0.5f, 0.5f, 0.11920292f, 0.88079708f };
	for (int i = 0; i < 8; i++)
		assert_close(g->nodes[wnode].out.data[i], w[i]);
	/* Context = two-head context + (0.25, -0.25); then y = C · W_oᵀ + b_o. */
	const float c[4] = { 1.78788284f, 2.75f, 2.25f, 3.51159416f };
	const float *y = g->nodes[out].out.data;
	assert_close(y[0], c[0] + c[1] + 0.5f);
	assert_close(y[1], 2.0f * c[1] - 0.5f);
	assert_close(y[2], c[2] + c[3] + 0.5f);
	assert_close(y[3], 2.0f * c[3] - 0.5f);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* Widths that do not split into heads, and mismatched weights, fail at build time. */
static void test_attention_shape_errors(void **state)
{
	(void)state;
	struct iap_error err = { 0 };
	struct iap_graph *g = new_graph(2, (int64_t)3, (int64_t)12);

	/* D = 4 does not split into 3 heads. */
	assert_true(iap_attn_scores(g, "s", IAP_GRAPH_INPUT, 3) < 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "3 heads"));
	iap_graph_free(g);

	g = new_graph(2, (int64_t)3, (int64_t)12);
	int sc = iap_attn_scores(g, "s", IAP_GRAPH_INPUT, 2);
	assert_true(sc >= 0);
	/* Weights for 2 heads, context asked for 4. */
	assert_true(iap_attn_context(g, "c", sc, IAP_GRAPH_INPUT, 4) < 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_ESHAPE);
	iap_graph_free(g);

	g = new_graph(2, (int64_t)3, (int64_t)10);
	assert_true(iap_attn_scores(g, "s", IAP_GRAPH_INPUT, 1) < 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_ESHAPE);
	iap_graph_free(g);

	g = new_graph(3, (int64_t)3, (int64_t)6, (int64_t)8);
	assert_true(iap_patch_embed(g, "conv_proj", IAP_GRAPH_INPUT, 4, 4) < 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_ESHAPE);
	iap_graph_free(g);
}

/* ---- gradients -------------------------------------------------------------- */

static void gradcheck(struct iap_graph *g, uint64_t seed)
{
	struct gc_opts o = { .seed = seed };

	finalize_ok(g);
	tu_randomize_params(g, seed, 0.5f);
	assert_int_equal(gc_check_graph(g, &o), 0);
}

static void test_grad_tokens(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, (int64_t)3, (int64_t)2, (int64_t)3);

	/* The pos_embed after tokens makes the upstream position dependent. */
	int t = iap_tokens(g, "t", IAP_GRAPH_INPUT);
	iap_pos_embed(g, "e", "pos", t);
	gradcheck(g, 11);
	iap_graph_free(g);
}

/* Big enough (64×16×40 > 32768 elements) that the OpenMP branches of tokens and pos_embed run. */
static void test_grad_tokens_large(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, (int64_t)64, (int64_t)16, (int64_t)40);
	int t = iap_tokens(g, "t", IAP_GRAPH_INPUT);

	iap_pos_embed(g, "e", "pos", t);
	gradcheck(g, 19);
	iap_graph_free(g);
}

static void test_grad_class_token(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)3, (int64_t)4);

	iap_class_token(g, "", "class_token", IAP_GRAPH_INPUT);
	gradcheck(g, 12);
	iap_graph_free(g);
}

static void test_grad_pos_embed_and_select(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)3, (int64_t)4);
	int p = iap_pos_embed(g, "encoder", "pos_embedding", IAP_GRAPH_INPUT);
	int s = iap_token_select(g, "", p, 1);

	gradcheck(g, 13);
	/* Only token 1's rows of the embedding can have a gradient. */
	const struct iap_param *pp = iap_graph_find_param(g, "encoder.pos_embedding");
	for (int i = 0; i < 12; i++) {
		if (i >= 4 && i < 8)
			assert_true(pp->grad.data[i] != 0.0f);
		else
			assert_float_equal(pp->grad.data[i], 0.0f, 0.0f);
	}
	assert_int_equal(g->nodes[s].out_shape[0], 4);
	iap_graph_free(g);
}

/* Scores alone: gradient into the q and k columns, zero into v. */
static void test_grad_attn_scores(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)3, (int64_t)12);

	iap_attn_scores(g, "s", IAP_GRAPH_INPUT, 2);
	gradcheck(g, 14);
	for (int n = 0; n < 2; n++)
		for (int t = 0; t < 3; t++)
			for (int j = 8; j < 12; j++)
				assert_float_equal(g->input_r.data[(n * 3 + t) * 12 + j], 0.0f, 0.0f);
	iap_graph_free(g);
}

/*
 * Context with raw scores as weights (no softmax), so both of its inputs
 * depend on x: checks the weights path and the v path together.
 */
static void test_grad_attn_context(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)3, (int64_t)12);
	int sc = iap_attn_scores(g, "s", IAP_GRAPH_INPUT, 2);

	iap_attn_context(g, "c", sc, IAP_GRAPH_INPUT, 2);
	gradcheck(g, 15);
	iap_graph_free(g);
}

static void test_grad_mha(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(2, (int64_t)5, (int64_t)8);

	iap_mha(g, "attn", IAP_GRAPH_INPUT, 2, NULL);
	gradcheck(g, 16);
	iap_graph_free(g);
}

static void test_grad_patch_embed(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, (int64_t)3, (int64_t)8, (int64_t)8);
	int pe = iap_patch_embed(g, "conv_proj", IAP_GRAPH_INPUT, 8, 4);

	assert_true(pe >= 0);
	assert_int_equal(g->nodes[pe].kind, IAP_OP_TOKENS);
	assert_int_equal(g->nodes[pe].out_shape[0], 4);
	assert_int_equal(g->nodes[pe].out_shape[1], 8);
	assert_non_null(iap_graph_find_param(g, "conv_proj.weight"));
	assert_non_null(iap_graph_find_param(g, "conv_proj.bias"));
	gradcheck(g, 17);
	iap_graph_free(g);
}

/*
 * A whole (tiny) torchvision ViT: 3×8×8 image, patch 4 → 4 tokens + class
 * token, D = 8, 2 heads, MLP 16, one encoder block, head of 3 classes.
 */
static void test_grad_vit_block(void **state)
{
	(void)state;
	struct iap_graph *g = new_graph(3, (int64_t)3, (int64_t)8, (int64_t)8);
	const char *blk = "encoder.layers.encoder_layer_0";
	char name[128];
	int x, h, y, wnode = -1;

	x = iap_patch_embed(g, "conv_proj", IAP_GRAPH_INPUT, 8, 4);
	x = iap_class_token(g, "", "class_token", x);
	x = iap_pos_embed(g, "encoder", "pos_embedding", x);
	snprintf(name, sizeof(name), "%s.ln_1", blk);
	h = iap_layernorm(g, name, x, 1e-6f);
	snprintf(name, sizeof(name), "%s.self_attention", blk);
	h = iap_mha(g, name, h, 2, &wnode);
	x = iap_add(g, "", x, h);
	snprintf(name, sizeof(name), "%s.ln_2", blk);
	y = iap_layernorm(g, name, x, 1e-6f);
	snprintf(name, sizeof(name), "%s.mlp.0", blk);
	y = iap_linear(g, name, y, 16, 1);
	y = iap_gelu(g, "", y);
	snprintf(name, sizeof(name), "%s.mlp.3", blk);
	y = iap_linear(g, name, y, 8, 1);
	x = iap_add(g, "", x, y);
	x = iap_layernorm(g, "encoder.ln", x, 1e-6f);
	x = iap_token_select(g, "", x, 0);
	x = iap_linear(g, "heads.head", x, 3, 1);

	finalize_ok(g);
	assert_int_equal(g->nodes[wnode].out_shape[0], 2);
	assert_int_equal(g->nodes[wnode].out_shape[1], 5);
	assert_int_equal(g->nodes[x].out_shape[0], 3);
	assert_non_null(iap_graph_find_param(g, "encoder.layers.encoder_layer_0.self_attention.in_proj_bias"));
	assert_non_null(iap_graph_find_param(g, "encoder.layers.encoder_layer_0.self_attention.out_proj.weight"));
	tu_randomize_params(g, 18, 0.5f);
	struct gc_opts o = { .seed = 18, .batch = 2 };
	assert_int_equal(gc_check_graph(g, &o), 0);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tokens_mapping),
		cmocka_unit_test(test_class_pos_select_mapping),
		cmocka_unit_test(test_attention_one_head_by_hand),
		cmocka_unit_test(test_attention_two_heads_by_hand),
		cmocka_unit_test(test_mha_wiring_by_hand),
		cmocka_unit_test(test_attention_shape_errors),
		cmocka_unit_test(test_grad_tokens),
		cmocka_unit_test(test_grad_tokens_large),
		cmocka_unit_test(test_grad_class_token),
		cmocka_unit_test(test_grad_pos_embed_and_select),
		cmocka_unit_test(test_grad_attn_scores),
		cmocka_unit_test(test_grad_attn_context),
		cmocka_unit_test(test_grad_mha),
		cmocka_unit_test(test_grad_patch_embed),
		cmocka_unit_test(test_grad_vit_block),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
