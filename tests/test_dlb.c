/*
 * DL-Backtrace (plugins/attribution/dlb*.c): the hand-worked vectors of the
 * reference note (../shared/reference/dlb_and_paper.md §3), contrast-mode
 * hand vectors, conservation at every node and every cut of small VGG,
 * ResNet and ViT nets with biases zeroed, non-negativity in CNNs, no NaN
 * with zero inputs and dead units, and per-unit scores through the plugin
 * (registry + iap_attribute_batch).
 *
 * The rules are compiled in (white box); the .so is loaded from
 * IAPRUNE_PLUGIN_PATH for the plugin test.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <iaprune/attribute.h>
#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "arch.h"
#include "dlb.h"
#include "testutil.h"

#define REL_TOL 1e-4

static const struct dlb_cfg cfg_new = {
	.mode = DLB_MODE_DEFAULT, .add_rule = DLB_ADD_EQUAL,
	.maxpool_rule = DLB_MAXPOOL_UNIFORM, .gap_rule = DLB_GAP_UNIFORM,
};
static const struct dlb_cfg cfg_old = {
	.mode = DLB_MODE_DEFAULT, .add_rule = DLB_ADD_PROPORTIONAL,
	.maxpool_rule = DLB_MAXPOOL_WINNER, .gap_rule = DLB_GAP_PROPORTIONAL,
};

static void assert_close(double got, double want, double rel)
{
	double tol = rel * fmax(1.0, fabs(want));

	if (!(fabs(got - want) <= tol))
		fail_msg("got %.9g, want %.9g (tolerance %.3g)", got, want, tol);
}

/* A graph on a tiny input with one op; returns it finalized. */
static struct iap_graph *tiny_graph(int ndim, const int64_t *shape)
{
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(ndim, shape, &err);

	assert_non_null(g);
	return g;
}

/* Forward x (values given), walk from seed (values given), return g->input_r. */
static const struct iap_tensor *walk_tiny(struct iap_graph *g, const struct dlb_cfg *cfg,
					  const float *xv, const float *seedv,
					  struct dlb_rules *rules)
{
	struct iap_error err = { 0 };
	struct iap_tensor x = { 0 }, seed = { 0 };
	int64_t xs[IAP_MAX_DIMS] = { 1 };
	struct iap_walk_opts wo = { .want_input = 1 };

	for (int d = 0; d < g->in_ndim; d++)
		xs[d + 1] = g->in_shape[d];
	assert_int_equal(iap_tensor_alloc(&x, g->in_ndim + 1, xs, &err), IAP_OK);
	memcpy(x.data, xv, (size_t)iap_tensor_numel(&x) * sizeof(float));
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	const struct iap_tensor *y = iap_graph_output(g);
	assert_int_equal(iap_tensor_alloc(&seed, y->ndim, y->shape, &err), IAP_OK);
	memcpy(seed.data, seedv, (size_t)iap_tensor_numel(&seed) * sizeof(float));
	memset(rules, 0, sizeof(*rules));
	dlb_rules_init(rules, cfg);
	if (iap_graph_backward(g, &rules->rs, &seed, &wo, &err) != IAP_OK)
		fail_msg("walk: %s", err.msg);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	return &g->input_r;
}

/* §3.1: x=[1,-2,3], W=[[1,1,1]], b=0.5, R=100 → [100, 200, 300]/6.5; the bias keeps 7.69. */
static void test_vector_linear(void **state)
{
	(void)state;
	const int64_t in[1] = { 3 };
	struct iap_graph *g = tiny_graph(1, in);
	struct iap_error err = { 0 };
	struct dlb_rules rules;
	const float x[3] = { 1, -2, 3 }, seed[1] = { 100 };
	int fc = iap_linear(g, "fc", IAP_GRAPH_INPUT, 1, 1);

	assert_true(fc >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	for (int i = 0; i < 3; i++)
		g->nodes[fc].params[0].value.data[i] = 1.0f;
	g->nodes[fc].params[1].value.data[0] = 0.5f;
	const struct iap_tensor *r = walk_tiny(g, &cfg_new, x, seed, &rules);
	assert_close(r->data[0], 100.0 / 6.5, 1e-6);
	assert_close(r->data[1], 200.0 / 6.5, 1e-6);
	assert_close(r->data[2], 300.0 / 6.5, 1e-6);
	assert_close(r->data[0] + r->data[1] + r->data[2], 600.0 / 6.5, 1e-6);
	assert_close(600.0 / 6.5, 92.3077, 1e-5); /* the note's rounded total */
	dlb_rules_release(&rules);
	iap_graph_free(g);
}

/* §3.2: a=[2,-1], b=[2,3], R=[10,10]: OLD a [5,2.5], b [5,7.5]; NEW [5,5] each. */
static void test_vector_add(void **state)
{
	(void)state;
	struct iap_error err = { 0 };
	const int64_t shp[2] = { 1, 2 };
	struct iap_tensor a = { 0 }, b = { 0 }, r = { 0 }, ra = { 0 }, rb = { 0 }, out = { 0 };
	struct iap_node node = { .id = 0, .kind = IAP_OP_ADD, .name = "add", .n_inputs = 2,
				 .mask_group = -1, .unit_group = -1 };
	const struct dlb_cfg *cfgs[2] = { &cfg_old, &cfg_new };
	const float want[2][4] = { { 5, 2.5f, 5, 7.5f }, { 5, 5, 5, 5 } };

	assert_int_equal(iap_tensor_alloc(&a, 2, shp, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&b, 2, shp, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&r, 2, shp, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&out, 2, shp, &err), IAP_OK);
	a.data[0] = 2, a.data[1] = -1, b.data[0] = 2, b.data[1] = 3;
	out.data[0] = 4, out.data[1] = 2, r.data[0] = 10, r.data[1] = 10;
	for (int c = 0; c < 2; c++) {
		struct dlb_rules rules = { 0 };

		/* Default mode needs no graph: the rules only read ctx. */
		dlb_rules_init(&rules, cfgs[c]);
		assert_int_equal(iap_tensor_alloc(&ra, 2, shp, &err), IAP_OK);
		assert_int_equal(iap_tensor_alloc(&rb, 2, shp, &err), IAP_OK);
		struct iap_rule_ctx ctx = {
			.node = &node, .in = { &a, &b }, .out = &out, .r_out = &r,
			.r_in = { &ra, &rb }, .user = &rules, .err = &err,
		};
		assert_int_equal(rules.rs.rules[IAP_OP_ADD](&ctx), IAP_OK);
		assert_close(ra.data[0], want[c][0], 1e-7);
		assert_close(ra.data[1], want[c][1], 1e-7);
		assert_close(rb.data[0], want[c][2], 1e-7);
		assert_close(rb.data[1], want[c][3], 1e-7);
		dlb_rules_release(&rules);
	}
	iap_tensor_free(&a);
	iap_tensor_free(&b);
	iap_tensor_free(&r);
	iap_tensor_free(&ra);
	iap_tensor_free(&rb);
	iap_tensor_free(&out);
}

/* §3.3: GAP of x_c=[1,3,0,0], R_c=8: OLD [2,6,0,0]; NEW [2,2,2,2]. */
static void test_vector_gap(void **state)
{
	(void)state;
	const int64_t in[3] = { 1, 2, 2 };
	const float x[4] = { 1, 3, 0, 0 }, seed[1] = { 8 };
	const float want[2][4] = { { 2, 6, 0, 0 }, { 2, 2, 2, 2 } };
	const struct dlb_cfg *cfgs[2] = { &cfg_old, &cfg_new };
	struct iap_error err = { 0 };

	for (int c = 0; c < 2; c++) {
		struct iap_graph *g = tiny_graph(3, in);
		struct dlb_rules rules;

		assert_true(iap_adaptive_avgpool2d(g, "gap", IAP_GRAPH_INPUT, 1, 1) >= 0);
		assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
		const struct iap_tensor *r = walk_tiny(g, cfgs[c], x, seed, &rules);
		for (int i = 0; i < 4; i++)
			assert_close(r->data[i], want[c][i], 1e-7);
		dlb_rules_release(&rules);
		iap_graph_free(g);
	}
}

/* §3.4: maxpool 2×2 on [[1,4],[4,2]], R=6: OLD [[0,3],[3,0]]; NEW 1.5 everywhere. */
static void test_vector_maxpool(void **state)
{
	(void)state;
	const int64_t in[3] = { 1, 2, 2 };
	const float x[4] = { 1, 4, 4, 2 }, seed[1] = { 6 };
	const float want[2][4] = { { 0, 3, 3, 0 }, { 1.5f, 1.5f, 1.5f, 1.5f } };
	const struct dlb_cfg *cfgs[2] = { &cfg_old, &cfg_new };
	struct iap_error err = { 0 };

	for (int c = 0; c < 2; c++) {
		struct iap_graph *g = tiny_graph(3, in);
		struct dlb_rules rules;

		assert_true(iap_maxpool2d(g, "pool", IAP_GRAPH_INPUT, 2, 2, 0, 0) >= 0);
		assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
		const struct iap_tensor *r = walk_tiny(g, cfgs[c], x, seed, &rules);
		for (int i = 0; i < 4; i++)
			assert_close(r->data[i], want[c][i], 1e-7);
		dlb_rules_release(&rules);
		iap_graph_free(g);
	}
}

/*
 * Contrast mode by hand (utils_contrast.py's calculate_start_wt,
 * calculate_base_wt, calculate_wt_fc), x=[1,-2,3]:
 * (a) one output, W=[1,1,1], b=-1.5: y=0.5<1 so R- = 1-0.5 rescaled to 100,
 *     R+ = 100. P=4, N=2, T=0.5>0 and R+ is not > R-, so the sign flips:
 *     R- goes over z>0 into the negative map [25,0,75], R+ over z<0 into
 *     the positive map [0,100,0].
 * (b) two outputs, W=[[1,1,1],[1,0,0]], b=0: y=[2,1], R+=[100,0], R-=[0,100].
 *     Unit 0 (T=2>0, R+>R-): positive map [25,0,75]; unit 1 has only
 *     positive contributions: R- spread ∝ z into the negative map [100,0,0].
 */
static void test_vector_contrast(void **state)
{
	(void)state;
	const int64_t in[1] = { 3 };
	const float x[3] = { 1, -2, 3 };
	struct iap_error err = { 0 };
	const enum dlb_contrast_score which[3] = { DLB_SCORE_POSITIVE, DLB_SCORE_NEGATIVE, DLB_SCORE_NET };
	const float want_a[3][3] = { { 0, 100, 0 }, { 25, 0, 75 }, { -25, 100, -75 } };
	const float want_b[3][3] = { { 25, 0, 75 }, { 100, 0, 0 }, { -75, 0, 75 } };

	for (int c = 0; c < 3; c++) {
		struct dlb_cfg cfg = cfg_new;

		cfg.mode = DLB_MODE_CONTRAST;
		cfg.contrast_score = which[c];
		for (int v = 0; v < 2; v++) {
			struct iap_graph *g = tiny_graph(1, in);
			struct dlb_rules rules;
			const float seed[2] = { 100, 0 };
			int fc = iap_linear(g, "fc", IAP_GRAPH_INPUT, v ? 2 : 1, 1);

			assert_true(fc >= 0);
			assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
			float *w = g->nodes[fc].params[0].value.data, *b = g->nodes[fc].params[1].value.data;
			w[0] = w[1] = w[2] = 1.0f;
			if (v)
				w[3] = 1.0f;
			else
				b[0] = -1.5f;
			const struct iap_tensor *r = walk_tiny(g, &cfg, x, seed, &rules);
			for (int i = 0; i < 3; i++)
				assert_close(r->data[i], v ? want_b[c][i] : want_a[c][i], 1e-6);
			dlb_rules_release(&rules);
			iap_graph_free(g);
		}
	}
}

/* The unit split itself on the remaining branches (T<0, T=0, nothing). */
static void test_contrast_coef(void **state)
{
	(void)state;
	double ap, bp, an, bn;

	/* T = 1 + 0 - 3 < 0 and R+ < R-: sign +, R+ over z>0, R- over z<0. */
	dlb_contrast_coef(1, 3, 0, 10, 30, &ap, &bp, &an, &bn);
	assert_close(ap, 10.0, 1e-12);
	assert_close(bn, 10.0, 1e-12);
	assert_true(bp == 0 && an == 0);
	/* T < 0 and R+ >= R-: sign -, R- over z>0 into negative, R+ over z<0 into positive. */
	dlb_contrast_coef(1, 3, 0, 30, 10, &ap, &bp, &an, &bn);
	assert_close(an, 10.0, 1e-12);
	assert_close(bp, 10.0, 1e-12);
	assert_true(ap == 0 && bn == 0);
	/* T = 0 exactly: both dropped. */
	dlb_contrast_coef(2, 3, 1, 30, 10, &ap, &bp, &an, &bn);
	assert_true(ap == 0 && bp == 0 && an == 0 && bn == 0);
	/* No contributions: nothing, and no division. */
	dlb_contrast_coef(0, 0, 1, 30, 10, &ap, &bp, &an, &bn);
	assert_true(ap == 0 && bp == 0 && an == 0 && bn == 0);
	/* The attention stabiliser: sign(0) = +1. */
	assert_true(dlb_stab(0.0f, 1e-9f) == 1e-9f);
	assert_true(dlb_stab(-1e-12f, 1e-9f) == -1e-9f);
	assert_true(dlb_stab(0.5f, 1e-9f) == 0.5f);
}

/* ---- conservation on model-shaped nets ------------------------------------------------ */

/* What one walk saw: Σ r at each node's output, and what each rule added to its inputs. */
struct audit {
	int n;
	double *sum_out;        /* Σ r_out per visited node (NAN: not visited) */
	double *added;          /* Σ over inputs of what the node's rule added */
	double min_r;           /* smallest relevance value seen anywhere */
	int nonfinite;          /* count of NaN/Inf values seen */
	const struct iap_ruleset *inner;
};

static struct audit *audit_now;

static void audit_values(struct audit *a, const struct iap_tensor *t)
{
	const int64_t n = iap_tensor_numel(t);

	for (int64_t i = 0; i < n; i++) {
		if (!isfinite(t->data[i]))
			a->nonfinite++;
		else if (t->data[i] < a->min_r)
			a->min_r = t->data[i];
	}
}

static double tensor_sum(const struct iap_tensor *t)
{
	double s = 0.0;

	for (int64_t i = 0; i < iap_tensor_numel(t); i++)
		s += t->data[i];
	return s;
}

static int audit_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		      const struct iap_tensor *r_out)
{
	struct audit *a = user;

	(void)g;
	a->sum_out[node->id] = tensor_sum(r_out);
	audit_values(a, r_out);
	return 0;
}

/* Runs the real rule and records how much it added to its inputs. */
static int audit_rule(struct iap_rule_ctx *ctx)
{
	struct audit *a = audit_now;
	double before[2] = { 0, 0 }, after = 0.0;
	int distinct = ctx->node->n_inputs == 2 && ctx->r_in[1] && ctx->r_in[1] != ctx->r_in[0] ? 2 : 1;
	int rc;

	for (int k = 0; k < distinct; k++)
		if (ctx->r_in[k])
			before[k] = tensor_sum(ctx->r_in[k]);
	rc = a->inner->rules[ctx->node->kind](ctx);
	for (int k = 0; k < distinct; k++)
		if (ctx->r_in[k])
			after += tensor_sum(ctx->r_in[k]) - before[k];
	a->added[ctx->node->id] = after;
	return rc;
}

/* Zero the bias of every conv and linear node (BN shifts do not touch relevance). */
static void zero_biases(struct iap_graph *g)
{
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = &g->nodes[i];
		int has = (n->kind == IAP_OP_CONV2D && n->attr.conv.has_bias) ||
			  (n->kind == IAP_OP_LINEAR && n->attr.linear.has_bias);

		if (has)
			iap_tensor_zero(&n->params[1].value);
	}
}

/* Node i is a cut when no edge jumps over it: every later node reads from i or after. */
static int is_cut(const struct iap_graph *g, int i)
{
	for (int j = i + 1; j <= g->output; j++)
		for (int k = 0; k < g->nodes[j].n_inputs; k++)
			if (g->nodes[j].inputs[k] < i)
				return 0;
	return 1;
}

/*
 * Forward a random batch, seed one-hot × 100 on the predicted class, walk
 * with the audit. Fills a (caller frees) and returns the seed total.
 */
static double audited_walk(struct iap_graph *g, const struct dlb_cfg *cfg, struct audit *a,
			   float in_scale, struct dlb_rules *rules)
{
	struct iap_error err = { 0 };
	struct iap_tensor x, seed = { 0 };
	struct iap_score_opts so = { .seed_scale = 100.0f };
	struct iap_ruleset wrap = { IAP_RULESET_HEADER, .name = "audit" };
	int targets[2];

	x = tu_rand_tensor(7, 4, (int64_t)2, g->in_shape[0], g->in_shape[1], g->in_shape[2]);
	for (int64_t i = 0; i < iap_tensor_numel(&x); i++)
		x.data[i] *= in_scale;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_int_equal(iap_targets(iap_graph_output(g), NULL, &so, targets, &err), IAP_OK);
	assert_int_equal(iap_seed_target(iap_graph_output(g), targets, &so, &seed, &err), IAP_OK);
	memset(rules, 0, sizeof(*rules));
	dlb_rules_init(rules, cfg);
	a->n = g->n_nodes;
	a->sum_out = malloc((size_t)g->n_nodes * sizeof(double));
	a->added = malloc((size_t)g->n_nodes * sizeof(double));
	assert_non_null(a->sum_out);
	assert_non_null(a->added);
	for (int i = 0; i < g->n_nodes; i++)
		a->sum_out[i] = a->added[i] = NAN;
	a->min_r = 0.0;
	a->nonfinite = 0;
	a->inner = &rules->rs;
	for (int k = 0; k < IAP_OP_COUNT; k++)
		wrap.rules[k] = audit_rule;
	/* The wrapper walks as the rule set would: its channels and its per-walk set-up. */
	wrap.user = rules->rs.user;
	wrap.n_channels = rules->rs.n_channels;
	wrap.prepare = rules->rs.prepare;
	wrap.finish = rules->rs.finish;
	audit_now = a;
	struct iap_walk_opts wo = { .hook = audit_hook, .hook_user = a, .want_input = 1 };
	if (iap_graph_backward(g, &wrap, &seed, &wo, &err) != IAP_OK)
		fail_msg("walk: %s", err.msg);
	audit_values(a, &g->input_r);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	return 100.0 * 2;
}

static void audit_free(struct audit *a)
{
	free(a->sum_out);
	free(a->added);
}

/*
 * Biases zeroed: every node hands on exactly what reaches it (local
 * conservation, which telescopes to every cut of the DAG), every cut node
 * and the input carry the seed total, and (CNN) nothing is negative.
 */
static void check_cnn_conservation(struct iap_graph *g, const struct dlb_cfg *cfg)
{
	struct audit a;
	struct dlb_rules rules;
	double total;
	int cuts = 0;

	zero_biases(g);
	total = audited_walk(g, cfg, &a, 1.0f, &rules);
	assert_int_equal(a.nonfinite, 0);
	assert_true(a.min_r >= 0.0);
	for (int i = 0; i <= g->output; i++) {
		if (isnan(a.sum_out[i]))
			fail_msg("node %d '%s' was not visited", i, g->nodes[i].name);
		if (fabs(a.added[i] - a.sum_out[i]) > REL_TOL * total)
			fail_msg("node %d '%s' (%s): got %.7g, handed on %.7g", i, g->nodes[i].name,
				 iap_op_name(g->nodes[i].kind), a.sum_out[i], a.added[i]);
		if (is_cut(g, i)) {
			assert_close(a.sum_out[i], total, REL_TOL);
			cuts++;
		}
	}
	assert_true(cuts >= 3);
	assert_close(tensor_sum(&g->input_r), total, REL_TOL);
	audit_free(&a);
	dlb_rules_release(&rules);
}

static struct iap_graph *small_cnn(int resnet, int depth, double width)
{
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_cnn_cfg cfg = {
		.depth = depth, .batch_norm = 0, .num_classes = 10, .in_channels = 3,
		.image_size = 32, .width = width, .dropout = 0.5f,
	};

	if ((resnet ? iap_resnet_build : iap_vgg_build)(&cfg, &g, &err) != IAP_OK)
		fail_msg("build: %s", err.msg);
	tu_randomize_params(g, 11 + (uint64_t)depth, 0.5f);
	return g;
}

static void test_conservation_vgg(void **state)
{
	(void)state;
	struct iap_graph *g = small_cnn(0, 11, 1.0 / 16);

	check_cnn_conservation(g, &cfg_new);
	check_cnn_conservation(g, &cfg_old);
	iap_graph_free(g);
}

static void test_conservation_resnet(void **state)
{
	(void)state;
	const int depths[2] = { 18, 50 };

	for (int d = 0; d < 2; d++) {
		struct iap_graph *g = small_cnn(1, depths[d], 1.0 / 8);

		check_cnn_conservation(g, &cfg_new);
		check_cnn_conservation(g, &cfg_old);
		iap_graph_free(g);
	}
}

static struct iap_graph *small_vit(void)
{
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_vit_cfg cfg = {
		.patch_size = 8, .image_size = 32, .in_channels = 3, .num_layers = 2,
		.num_heads = 2, .hidden_dim = 16, .mlp_dim = 32, .num_classes = 10,
	};

	if (iap_vit_build(&cfg, &g, &err) != IAP_OK)
		fail_msg("build: %s", err.msg);
	tu_randomize_params(g, 5, 0.5f);
	return g;
}

/*
 * ViT, biases zeroed. What holds: every node but the two that read a
 * parameter hands on exactly what reaches it (attention up to its 1e-9
 * stabiliser), so every cut from the output down to the position
 * embedding carries the seed total. The position embedding keeps its
 * operand's share (half with the equal add rule), and the class token
 * keeps its row: the input total is therefore smaller. Values may be
 * negative (products with signed q, k, v).
 */
static void check_vit(const struct dlb_cfg *cfg)
{
	struct iap_graph *g = small_vit();
	struct audit a;
	struct dlb_rules rules;
	double total;
	int pe = -1, cls = -1, cuts = 0;

	zero_biases(g);
	total = audited_walk(g, cfg, &a, 1.0f, &rules);
	assert_int_equal(a.nonfinite, 0);
	for (int i = 0; i <= g->output; i++) {
		const struct iap_node *n = &g->nodes[i];

		if (n->kind == IAP_OP_POS_EMBED)
			pe = i;
		if (n->kind == IAP_OP_CLASS_TOKEN)
			cls = i;
		if (n->kind == IAP_OP_POS_EMBED || n->kind == IAP_OP_CLASS_TOKEN)
			continue;
		if (fabs(a.added[i] - a.sum_out[i]) > REL_TOL * total)
			fail_msg("node %d '%s' (%s): got %.7g, handed on %.7g", i, n->name,
				 iap_op_name(n->kind), a.sum_out[i], a.added[i]);
	}
	assert_true(pe > cls && cls >= 0);
	for (int i = pe; i <= g->output; i++)
		if (is_cut(g, i)) {
			assert_close(a.sum_out[i], total, REL_TOL);
			cuts++;
		}
	assert_true(cuts >= 5); /* pos_embed, both blocks' adds, final LN, select, head */
	if (cfg->add_rule == DLB_ADD_EQUAL)
		assert_close(a.sum_out[cls], 0.5 * total, REL_TOL);
	else
		assert_true(a.sum_out[cls] < total * (1.0 + REL_TOL));
	/* The class token keeps row 0 of what reached it; the rest goes on. */
	assert_close(a.added[cls], tensor_sum(&g->input_r), REL_TOL);
	audit_free(&a);
	dlb_rules_release(&rules);
	iap_graph_free(g);
}

static void test_conservation_vit(void **state)
{
	(void)state;
	check_vit(&cfg_new);
	check_vit(&cfg_old);
}

/*
 * Contrast mode, biases zeroed: R+ and R- are each conserved (calculate_base_wt
 * hands each to one map), so walking with contrast_score positive (negative)
 * gives the R+ (R-) seed total at every cut. R- is built from the logits.
 */
static void test_contrast_conservation(void **state)
{
	(void)state;
	struct iap_graph *g = small_cnn(0, 11, 1.0 / 16);
	struct iap_error err = { 0 };
	double totals[2];

	zero_biases(g);
	for (int s = 0; s < 2; s++) {
		struct dlb_cfg cfg = cfg_new;
		struct audit a;
		struct dlb_rules rules;
		double total;

		cfg.mode = DLB_MODE_CONTRAST;
		cfg.contrast_score = s ? DLB_SCORE_NEGATIVE : DLB_SCORE_POSITIVE;
		audited_walk(g, &cfg, &a, 1.0f, &rules);
		/* R+ sums to 100 per sample; R- to 100 when the other logits sum > 0, else to their sum. */
		total = a.sum_out[g->output];
		if (s == 0)
			assert_close(total, 200.0, 1e-6);
		else {
			const struct iap_tensor *y = iap_graph_output(g);
			double want = 0.0;

			for (int n = 0; n < 2; n++) {
				const float *row = y->data + n * 10;
				int t = 0;
				double rest = 0.0;

				for (int k = 1; k < 10; k++)
					if (row[k] > row[t])
						t = k;
				for (int k = 0; k < 10; k++)
					rest += k == t ? 0.0 : row[k];
				want += rest > 0 ? 100.0 : rest;
			}
			/* The walk starts from the seed (R+) at the output; the head hands on R-. */
			total = want;
		}
		totals[s] = total;
		assert_int_equal(a.nonfinite, 0);
		for (int i = 0; i < g->output; i++)
			if (is_cut(g, i))
				assert_close(a.sum_out[i], total, REL_TOL);
		assert_close(tensor_sum(&g->input_r), total, REL_TOL);
		audit_free(&a);
		dlb_rules_release(&rules);
	}
	assert_true(totals[0] > 0);
	(void)err;
	iap_graph_free(g);
}

/* ---- no NaN ------------------------------------------------------------------------------ */

/* Zero input (biases kept, then zeroed: D = 0 everywhere) and dead units stay finite. */
static void test_no_nan(void **state)
{
	(void)state;
	struct dlb_cfg cfgs[3] = { cfg_new, cfg_old, cfg_new };

	cfgs[2].mode = DLB_MODE_CONTRAST;
	for (int m = 0; m < 3; m++) {
		struct iap_graph *nets[3] = { small_cnn(0, 11, 1.0 / 16), small_cnn(1, 18, 1.0 / 8),
					      small_vit() };

		for (int k = 0; k < 3; k++) {
			struct iap_graph *g = nets[k];

			for (int zb = 0; zb < 2; zb++) {
				struct audit a;
				struct dlb_rules rules;

				if (zb)
					zero_biases(g);
				audited_walk(g, &cfgs[m], &a, 0.0f, &rules);
				assert_int_equal(a.nonfinite, 0);
				if (zb && k < 2 && m < 2) /* nothing flows into a zero input without biases */
					assert_true(tensor_sum(&g->input_r) == 0.0);
				audit_free(&a);
				dlb_rules_release(&rules);
			}
			/* Dead units: the first conv's weights zeroed, so its outputs are all 0. */
			for (int i = 0; i < g->n_nodes; i++)
				if (g->nodes[i].kind == IAP_OP_CONV2D) {
					iap_tensor_zero(&g->nodes[i].params[0].value);
					break;
				}
			struct audit a;
			struct dlb_rules rules;

			audited_walk(g, &cfgs[m], &a, 1.0f, &rules);
			assert_int_equal(a.nonfinite, 0);
			assert_true(tensor_sum(&g->input_r) == 0.0);
			audit_free(&a);
			dlb_rules_release(&rules);
			iap_graph_free(g);
		}
	}
}

/* ---- the plugin ------------------------------------------------------------------------- */

/*
 * Through the registry: options, seed × 100, and per-unit scores from
 * iap_attribute_batch. With biases zeroed every VGG conv group's scores
 * (Σ over space, |·| after, summed over samples) add up to 100 × batch,
 * and they equal the white-box walk's relevance at each group's node.
 */
static void test_plugin_scores(void **state)
{
	(void)state;
	struct iap_error err = { 0 };
	struct iap_registry *reg = iap_registry_new(&err);
	struct iap_opts *o = NULL;
	void *st = NULL;

	assert_non_null(reg);
	assert_int_equal(iap_registry_scan(reg, &err), IAP_OK);
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, "dlb");
	if (!p) {
		for (int i = 0; i < iap_registry_diag_count(reg); i++)
			print_message("diag: %s\n", iap_registry_diag(reg, i)->msg);
		fail_msg("dlb plugin not found on IAPRUNE_PLUGIN_PATH");
	}
	const struct iap_attribution_ops *ops = p->desc->ops.attribution;
	assert_int_equal(iap_opts_defaults(p->desc->options, &o, &err), IAP_OK);
	assert_true(iap_opts_float(o, "start") == 100.0);
	assert_string_equal(iap_opts_str(o, "add_rule"), "equal");
	assert_string_equal(iap_opts_str(o, "maxpool_rule"), "uniform");
	assert_string_equal(iap_opts_str(o, "gap_rule"), "uniform");
	assert_string_equal(iap_opts_str(o, "mode"), "default");
	assert_int_not_equal(iap_opts_set(o, "attribution 'dlb'", "mode", "sideways", &err), IAP_OK);

	struct iap_graph *g = small_cnn(0, 11, 1.0 / 16);
	zero_biases(g);
	assert_int_equal(ops->create(o, g, &st, &err), IAP_OK);

	float **scores = calloc((size_t)g->n_groups, sizeof(*scores));
	assert_non_null(scores);
	for (int k = 0; k < g->n_groups; k++)
		assert_non_null(scores[k] = calloc((size_t)g->groups[k].n_units, sizeof(float)));
	struct iap_tensor x = tu_rand_tensor(7, 4, (int64_t)2, (int64_t)3, (int64_t)32, (int64_t)32);
	int targets[2];

	if (iap_attribute_batch(ops, st, o, g, &x, NULL, scores, targets, &err) != IAP_OK)
		fail_msg("attribute: %s", err.msg);
	for (int k = 0; k < g->n_groups; k++) {
		const struct iap_unit_group *grp = &g->groups[k];
		const struct iap_tensor *r = iap_graph_node_r(g, grp->node);
		double s = 0.0;
		float *mine = calloc((size_t)grp->n_units, sizeof(float));

		assert_non_null(r);
		iap_unit_accumulate(grp, r, IAP_ABS_AFTER, mine);
		for (int u = 0; u < grp->n_units; u++) {
			assert_true(scores[k][u] >= 0.0f);
			assert_close(scores[k][u], mine[u], 1e-6);
			s += scores[k][u];
		}
		if (g->nodes[grp->node].kind == IAP_OP_CONV2D)
			assert_close(s, 200.0, REL_TOL);
		free(mine);
	}
	/* explain: the input relevance of the same walk, also summing to 100 per sample. */
	struct iap_tensor rel = { 0 };
	assert_int_equal(ops->explain(st, g, &x, targets, &rel, &err), IAP_OK);
	assert_close(tensor_sum(&rel), 200.0, REL_TOL);

	iap_tensor_free(&rel);
	iap_tensor_free(&x);
	for (int k = 0; k < g->n_groups; k++)
		free(scores[k]);
	free(scores);
	ops->destroy(st);
	iap_opts_free(o);
	iap_graph_free(g);
	iap_registry_free(reg);
}

/*
 * maxpool_rule=repeat on ResNet's stem pool (3×3, stride 2, pad 1: 4×6 →
 * 2×3): each input cell gets R of the output cell above it in the 2×2
 * block grid, divided by 4, whatever the window or the values; the total is
 * kept. uniform on the same pool differs (overlapping windows). A size that
 * is not a multiple (5×6 → 3×3) is refused by name.
 */
static void test_vector_maxpool_repeat(void **state)
{
	(void)state;
	const int64_t in[3] = { 1, 4, 6 }, odd[3] = { 1, 5, 6 };
	float x[30], seed[9] = { 4, 8, 12, 16, 20, 24, 28, 32, 36 };
	const float want[24] = { 1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3,
				 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6 };
	struct dlb_cfg cfg = cfg_new;
	struct iap_error err = { 0 };
	struct iap_graph *g = tiny_graph(3, in);
	struct dlb_rules rules;
	const struct iap_tensor *r;
	double sum = 0.0;
	int same = 1;

	for (int i = 0; i < 30; i++)
		x[i] = (float)((i * 7) % 11) - 3.0f;
	cfg.maxpool_rule = DLB_MAXPOOL_REPEAT;
	assert_true(iap_maxpool2d(g, "maxpool", IAP_GRAPH_INPUT, 3, 2, 1, 0) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	r = walk_tiny(g, &cfg, x, seed, &rules);
	for (int i = 0; i < 24; i++) {
		assert_true(r->data[i] == want[i]);
		sum += r->data[i];
	}
	assert_true(sum == 4 + 8 + 12 + 16 + 20 + 24);
	dlb_rules_release(&rules);
	r = walk_tiny(g, &cfg_new, x, seed, &rules);
	for (int i = 0; i < 24; i++)
		same &= r->data[i] == want[i];
	assert_false(same);
	dlb_rules_release(&rules);
	iap_graph_free(g);

	/* 5×6 → 3×3: not a multiple. */
	g = tiny_graph(3, odd);
	assert_true(iap_maxpool2d(g, "maxpool", IAP_GRAPH_INPUT, 3, 2, 1, 0) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	{
		struct iap_tensor xt = { 0 }, st = { 0 };
		int64_t xs[4] = { 1, 1, 5, 6 }, ss[4] = { 1, 1, 3, 3 };

		assert_int_equal(iap_tensor_alloc(&xt, 4, xs, &err), IAP_OK);
		assert_int_equal(iap_tensor_alloc(&st, 4, ss, &err), IAP_OK);
		memcpy(xt.data, x, sizeof(float) * 30);
		memcpy(st.data, seed, sizeof(seed));
		memset(&rules, 0, sizeof(rules));
		dlb_rules_init(&rules, &cfg);
		assert_int_equal(iap_graph_forward(g, &xt, &err), IAP_OK);
		assert_int_equal(iap_graph_backward(g, &rules.rs, &st, &(struct iap_walk_opts){ .want_input = 1 },
						    &err), IAP_EINVAL);
		assert_non_null(strstr(err.msg, "maxpool_rule=repeat"));
		assert_non_null(strstr(err.msg, "5x6 -> 3x3"));
		dlb_rules_release(&rules);
		iap_tensor_free(&xt);
		iap_tensor_free(&st);
	}
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector_linear),
		cmocka_unit_test(test_vector_add),
		cmocka_unit_test(test_vector_gap),
		cmocka_unit_test(test_vector_maxpool),
		cmocka_unit_test(test_vector_maxpool_repeat),
		cmocka_unit_test(test_vector_contrast),
		cmocka_unit_test(test_contrast_coef),
		cmocka_unit_test(test_conservation_vgg),
		cmocka_unit_test(test_conservation_resnet),
		cmocka_unit_test(test_conservation_vit),
		cmocka_unit_test(test_contrast_conservation),
		cmocka_unit_test(test_no_nan),
		cmocka_unit_test(test_plugin_scores),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
