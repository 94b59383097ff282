/*
 * The `lrp` attribution plugin: every rule on hand-computed numbers,
 * conservation at every cut of VGG-, ResNet- and ViT-shaped nets, BatchNorm
 * canonisation against a net folded by hand, equality with zennit's rules
 * written in torch (tests/fixtures/lrp/gen_lrp_fixtures.py), per-unit
 * scores through the host path, and the shared object through the registry.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <iaprune/attribute.h>
#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "arch.h"
#include "fixture.h"
#include "lrp_rules.h"
#include "testutil.h"

/* ---- helpers ------------------------------------------------------------------ */

static const struct iap_attribution_ops *lrp_ops(void)
{
	return iap_plugin_descriptor()->ops.attribution;
}

/* Options from the schema's defaults plus name/value pairs (NULL-terminated). */
static struct iap_opts *opts_make(const char *first, ...)
{
	struct iap_error err = { 0 };
	struct iap_opts *o = NULL;
	va_list ap;

	assert_int_equal(iap_opts_defaults(iap_plugin_descriptor()->options, &o, &err), IAP_OK);
	va_start(ap, first);
	for (const char *k = first; k; k = va_arg(ap, const char *)) {
		const char *v = va_arg(ap, const char *);

		if (iap_opts_set(o, "attribution 'lrp'", k, v, &err) != IAP_OK)
			fail_msg("%s", err.msg);
	}
	va_end(ap);
	return o;
}

static void *state_make(struct iap_opts *o, struct iap_graph *g)
{
	struct iap_error err = { 0 };
	void *st = NULL;

	if (lrp_ops()->create(o, g, &st, &err) != IAP_OK)
		fail_msg("create: %s", err.msg);
	return st;
}

static struct lrp_params params_plain(float eps)
{
	return (struct lrp_params){ .epsilon = eps, .stabilizer = eps, .gamma = 0.25f,
				    .alpha = 2.0f, .beta = 1.0f };
}

static void assert_close(const float *got, const double *want, int n, double tol)
{
	for (int i = 0; i < n; i++)
		if (fabs(got[i] - want[i]) > tol)
			fail_msg("element %d: got %.7g, want %.7g", i, got[i], want[i]);
}

/* Largest |a − b| relative to the largest |b|. */
static double rel_err(const float *a, const float *b, int64_t n)
{
	double m = 0.0, d = 0.0;

	for (int64_t i = 0; i < n; i++) {
		d = fmax(d, fabs((double)a[i] - b[i]));
		m = fmax(m, fabs((double)b[i]));
	}
	return m > 0 ? d / m : d;
}

/* ---- hand-computed rules ----------------------------------------------------------- */

static void run_dense(enum lrp_rule rule, const struct lrp_params *p, int rows, int in, int out,
		      const float *x, const float *w, const float *b, const float *r, float *r_in)
{
	struct iap_error err = { 0 };

	memset(r_in, 0, (size_t)rows * in * sizeof(float));
	if (lrp_dense_raw(rule, p, rows, in, out, x, w, b, r, r_in, &err) != IAP_OK)
		fail_msg("%s", err.msg);
}

static void test_rule_epsilon(void **state)
{
	(void)state;
	struct lrp_params p = params_plain(1.0f);
	float ri[2];

	/* z = 2 + 2 + 1 = 5, stab = 6, s = 3/6: R_in = x·w·s = (1, 1). */
	{
		const float x[] = { 1, 2 }, w[] = { 2, 1 }, b[] = { 1 }, r[] = { 3 };
		const double want[] = { 1, 1 };

		run_dense(LRP_RULE_EPSILON, &p, 1, 2, 1, x, w, b, r, ri);
		assert_close(ri, want, 2, 1e-6);
	}
	/* z = −5 → stab −6 (ε follows the sign): again (1, 1). */
	{
		const float x[] = { 1, 2 }, w[] = { -2, -1 }, b[] = { -1 }, r[] = { 3 };
		const double want[] = { 1, 1 };

		run_dense(LRP_RULE_EPSILON, &p, 1, 2, 1, x, w, b, r, ri);
		assert_close(ri, want, 2, 1e-6);
	}
	/* z == 0 exactly: sign(0) = +1, stab = +0.5, R_in = x·w·1/0.5 = (2, −2). */
	{
		const float x[] = { 1, 1 }, w[] = { 1, -1 }, r[] = { 1 };
		const double want[] = { 2, -2 };

		p.epsilon = 0.5f;
		run_dense(LRP_RULE_EPSILON, &p, 1, 2, 1, x, w, NULL, r, ri);
		assert_close(ri, want, 2, 1e-6);
	}
	/* zero_bias: z = 4 (bias ignored), ε 0: R_in = x·w·R/4 = (2, 2) — conserved. */
	{
		const float x[] = { 1, 2 }, w[] = { 2, 1 }, b[] = { 100 }, r[] = { 4 };
		const double want[] = { 2, 2 };

		p.epsilon = 0.0f;
		p.zero_bias = 1;
		run_dense(LRP_RULE_EPSILON, &p, 1, 2, 1, x, w, b, r, ri);
		assert_close(ri, want, 2, 1e-6);
	}
}

static void test_rule_zplus(void **state)
{
	(void)state;
	struct lrp_params p = params_plain(0.0f);
	/* x⁺w⁺ = (1, 0, 6), x⁻w⁻ = (0, 2, 0), b⁺ = 0.5: D = 9.5, s = 19/9.5 = 2. */
	const float x[] = { 1, -2, 3 }, w[] = { 1, -1, 2 }, b[] = { 0.5f }, r[] = { 19 };
	const double want[] = { 2, 4, 12 };
	float ri[3];

	run_dense(LRP_RULE_ZPLUS, &p, 1, 3, 1, x, w, b, r, ri);
	assert_close(ri, want, 3, 1e-5);
}

static void test_rule_alpha_beta(void **state)
{
	(void)state;
	struct lrp_params p = params_plain(0.0f);
	/*
	 * P = x⁺w⁺ + x⁻w⁻ + b⁺ = 1 + 2 + 0.5 = 3.5 (s⁺ = 7/3.5 = 2),
	 * N = x⁺w⁻ + x⁻w⁺ + b⁻ = −6 (s⁻ = −7/6):
	 * R_in = 2·(1, 2, 0)·2 − 1·(0, 0, −6)·(−7/6) = (4, 8, −7).
	 */
	const float x[] = { 1, -2, 3 }, w[] = { 1, -1, -2 }, b[] = { 0.5f }, r[] = { 7 };
	const double want[] = { 4, 8, -7 };
	float ri[3];

	run_dense(LRP_RULE_ALPHABETA, &p, 1, 3, 1, x, w, b, r, ri);
	assert_close(ri, want, 3, 1e-5);
}

static void test_rule_gamma(void **state)
{
	(void)state;
	struct lrp_params p = params_plain(0.0f);
	/*
	 * γ = 0.5, w = (1, −1): w+γw⁺ = (1.5, −1), w+γw⁻ = (1, −1.5).
	 * Row 0: x = (2, 1), z = 1 > 0: D = 3 − 1 = 2, s = 2: (6, −2).
	 * Row 1: x = (1, 2), z = −1 < 0: D = 1 − 3 = −2, s = −2: (−2, 6).
	 * Row 2: x = (1, 1), z = 0: dropped.
	 */
	const float x[] = { 2, 1, 1, 2, 1, 1 }, w[] = { 1, -1 }, b[] = { 0 }, r[] = { 4, 4, 4 };
	const double want[] = { 6, -2, -2, 6, 0, 0 };
	float ri[6];

	p.gamma = 0.5f;
	run_dense(LRP_RULE_GAMMA, &p, 3, 2, 1, x, w, b, r, ri);
	assert_close(ri, want, 6, 1e-5);
}

static void test_rule_flat_wsquare_zbox(void **state)
{
	(void)state;
	struct lrp_params p = params_plain(0.0f);
	float ri[3];

	/* Flat: every output's R spread evenly over its 3 inputs: 3/3 + 6/3 = 3 each. */
	{
		const float x[] = { 5, -7, 0 }, w[] = { 1, 2, 3, -4, 5, 6 }, b[] = { 9, 9 }, r[] = { 3, 6 };
		const double want[] = { 3, 3, 3 };

		run_dense(LRP_RULE_FLAT, &p, 1, 3, 2, x, w, b, r, ri);
		assert_close(ri, want, 3, 1e-5);
	}
	/* WSquare: z = (1+4+1, 9+0+0) = (6, 9), s = (1, 1): R_in = Σ_j w_ji² = (10, 4). */
	{
		const float x[] = { 5, -7 }, w[] = { 1, 2, 3, 0 }, b[] = { 1, 0 }, r[] = { 6, 9 };
		const double want[] = { 10, 4 };

		run_dense(LRP_RULE_WSQUARE, &p, 1, 2, 2, x, w, b, r, ri);
		assert_close(ri, want, 2, 1e-5);
	}
	/*
	 * ZBox l = −1, h = 2: D = 2.3 − (−1 + 0.3) − (2·−2) = 7, s = 2:
	 * R_in = (1·2 + 1·2, 1·2 + 4·2) = (4, 10).
	 */
	{
		const float x[] = { 1, -0.5f }, w[] = { 1, -2 }, b[] = { 0.3f }, r[] = { 14 };
		const double want[] = { 4, 10 };
		float lo = -1.0f, hi = 2.0f;

		p.low = &lo;
		p.high = &hi;
		p.n_low = p.n_high = 1;
		run_dense(LRP_RULE_ZBOX, &p, 1, 2, 1, x, w, b, r, ri);
		assert_close(ri, want, 2, 1e-5);
	}
}

/* Softmax (AttnLRP): x = (0, ln 3), s = (¼, ¾), R = (1, 2): R_in = (0, ln3·(2 − ¾·3)). */
static void test_rule_softmax(void **state)
{
	(void)state;
	const int64_t shp[1] = { 2 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(1, shp, &err);
	struct iap_opts *o = opts_make(NULL);
	struct iap_tensor x = { 0 }, seed = { 0 };
	const int64_t xs[2] = { 1, 2 };
	const struct iap_walk_opts wo = { .want_input = 1 };
	void *st;

	assert_non_null(g);
	assert_true(iap_softmax(g, "sm", IAP_GRAPH_INPUT) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&x, 2, xs, &err), IAP_OK);
	assert_int_equal(iap_tensor_alloc(&seed, 2, xs, &err), IAP_OK);
	x.data[1] = (float)log(3.0);
	seed.data[0] = 1;
	seed.data[1] = 2;
	st = state_make(o, g);
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_int_equal(iap_graph_backward(g, lrp_ops()->ruleset(st), &seed, &wo, &err), IAP_OK);
	assert_float_equal(g->input_r.data[0], 0.0, 1e-7);
	assert_float_equal(g->input_r.data[1], log(3.0) * (2.0 - 0.75 * 3.0), 1e-6);
	lrp_ops()->destroy(st);
	iap_opts_free(o);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

static void test_alpha_beta_refused(void **state)
{
	(void)state;
	struct iap_opts *o = opts_make("alpha", "3", "beta", "1", NULL);
	struct iap_error err = { 0 };
	void *st = NULL;

	assert_int_equal(lrp_ops()->create(o, NULL, &st, &err), IAP_EINVAL);
	assert_null(st);
	assert_non_null(strstr(err.msg, "alpha - beta must equal 1"));
	iap_opts_free(o);
	o = opts_make("zbox_low", "-1,x", NULL);
	assert_int_equal(lrp_ops()->create(o, NULL, &st, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "zbox_low"));
	iap_opts_free(o);
}

/* ---- conservation ------------------------------------------------------------------ */

#define MAXB 2

struct sums {
	int n_nodes;
	double (*s)[MAXB];     /* per node, per sample: Σ R at its output */
	unsigned char *seen;
};

static int sum_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		    const struct iap_tensor *r)
{
	struct sums *S = user;
	int64_t per = iap_tensor_numel(r) / r->shape[0];

	(void)g;
	for (int64_t n = 0; n < r->shape[0] && n < MAXB; n++) {
		double s = 0;

		for (int64_t k = 0; k < per; k++)
			s += r->data[n * per + k];
		S->s[node->id][n] = s;
	}
	S->seen[node->id] = 1;
	return 0;
}

/* Node i's output is a cut when no edge jumps over it (and the input feeds nothing later). */
static int is_cut(const struct iap_graph *g, int i)
{
	for (int j = i + 1; j < g->n_nodes; j++)
		for (int k = 0; k < g->nodes[j].n_inputs; k++) {
			int src = g->nodes[j].inputs[k];

			if (src != i && src < i)
				return 0;
		}
	return 1;
}

/* Biases, shifts and learned additive constants to 0 (forward included). */
static int zero_shift(struct iap_node *node, struct iap_param *p, void *user)
{
	size_t l = strlen(p->key);

	(void)node;
	(void)user;
	if ((l >= 4 && strcmp(p->key + l - 4, "bias") == 0) || strstr(p->key, "running_mean") ||
	    strstr(p->key, "class_token") || strstr(p->key, "pos_embedding"))
		memset(p->value.data, 0, (size_t)iap_tensor_numel(&p->value) * sizeof(float));
	return 0;
}

/*
 * Walk g from a one-hot seed and require Σ R per sample to equal 1 at every
 * cut and at the input, within 1e-4 relative. Returns the number of cuts.
 */
static int check_conservation(struct iap_graph *g, struct iap_opts *o, int c, int h, int w)
{
	struct iap_error err = { 0 };
	struct iap_tensor x = tu_rand_tensor(11, 4, (int64_t)MAXB, (int64_t)c, (int64_t)h, (int64_t)w), seed = { 0 };
	struct sums S = { .n_nodes = g->n_nodes };
	struct iap_walk_opts wo = { .hook = sum_hook, .hook_user = &S, .want_input = 1 };
	struct iap_score_opts so = { .seed_scale = 1.0f };
	int targets[MAXB], cuts = 0;
	void *st = state_make(o, g);

	S.s = calloc((size_t)g->n_nodes, sizeof(*S.s));
	S.seen = calloc((size_t)g->n_nodes, 1);
	assert_non_null(S.s);
	assert_non_null(S.seen);
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	assert_int_equal(iap_targets(iap_graph_output(g), NULL, &so, targets, &err), IAP_OK);
	assert_int_equal(iap_seed_target(iap_graph_output(g), targets, &so, &seed, &err), IAP_OK);
	if (iap_graph_backward(g, lrp_ops()->ruleset(st), &seed, &wo, &err) != IAP_OK)
		fail_msg("walk: %s", err.msg);
	for (int i = 0; i < g->n_nodes; i++) {
		if (!S.seen[i] || !is_cut(g, i))
			continue;
		cuts++;
		for (int n = 0; n < MAXB; n++)
			if (fabs(S.s[i][n] - 1.0) > 1e-4)
				fail_msg("cut at node %d '%s' (%s), sample %d: sum R = %.8f", i,
					 g->nodes[i].name, iap_op_name(g->nodes[i].kind), n, S.s[i][n]);
	}
	{
		int64_t per = iap_tensor_numel(&g->input_r) / MAXB;

		for (int n = 0; n < MAXB; n++) {
			double s = 0;

			for (int64_t k = 0; k < per; k++)
				s += g->input_r.data[n * per + k];
			if (fabs(s - 1.0) > 1e-4)
				fail_msg("input, sample %d: sum R = %.8f", n, s);
		}
	}
	lrp_ops()->destroy(st);
	free(S.s);
	free(S.seen);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	return cuts;
}

static struct iap_opts *opts_conserve(const char *composite)
{
	return opts_make("composite", composite, "epsilon", "1e-9", "stabilizer", "1e-9",
			 "zero_bias", "true", "vit_rule", "cplrp", NULL);
}

static void test_conservation_vgg(void **state)
{
	(void)state;
	struct iap_cnn_cfg cfg = { .depth = 11, .batch_norm = 1, .num_classes = 5, .in_channels = 3,
				   .image_size = 32, .width = 1.0 / 16, .dropout = 0.5f };
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	const char *comps[] = { "epsilon-plus-flat", "epsilon-alpha2-beta1-flat", "epsilon" };

	assert_int_equal(iap_vgg_build(&cfg, &g, &err), IAP_OK);
	tu_randomize_params(g, 3, 0.5f);
	iap_graph_foreach_param(g, zero_shift, NULL);
	for (size_t k = 0; k < sizeof(comps) / sizeof(comps[0]); k++) {
		struct iap_opts *o = opts_conserve(comps[k]);

		assert_true(check_conservation(g, o, 3, 32, 32) > 20);
		iap_opts_free(o);
	}
	iap_graph_free(g);
}

/*
 * ResNets: LRP-0 everywhere, and ZPlus on the convs of ResNet-18. (ZPlus is
 * not conservative in general ResNets: the residual split hands a conv
 * output with z < 0 negative relevance, and where Σ x⁺w⁺ = 0 that relevance
 * has nowhere to go — zennit behaves the same.)
 */
static void test_conservation_resnet(void **state)
{
	(void)state;
	const struct { int depth; const char *composite; } cases[] = {
		{ 18, "epsilon" }, { 50, "epsilon" }, { 18, "epsilon-plus-flat" },
	};

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		struct iap_cnn_cfg cfg = { .depth = cases[c].depth, .num_classes = 4, .in_channels = 3,
					   .image_size = 32, .width = 1.0 / 8 };
		struct iap_error err = { 0 };
		struct iap_graph *g = NULL;
		struct iap_opts *o = opts_conserve(cases[c].composite);

		assert_int_equal(iap_resnet_build(&cfg, &g, &err), IAP_OK);
		tu_randomize_params(g, 5, 0.5f);
		iap_graph_foreach_param(g, zero_shift, NULL);
		assert_true(check_conservation(g, o, 3, 32, 32) > 10);
		iap_opts_free(o);
		iap_graph_free(g);
	}
}

static void test_conservation_vit(void **state)
{
	(void)state;
	struct iap_vit_cfg cfg = { .patch_size = 8, .image_size = 32, .in_channels = 3, .num_layers = 2,
				   .num_heads = 2, .hidden_dim = 16, .mlp_dim = 32, .num_classes = 4 };
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_opts *o = opts_conserve("epsilon");

	assert_int_equal(iap_vit_build(&cfg, &g, &err), IAP_OK);
	tu_randomize_params(g, 9, 0.5f);
	iap_graph_foreach_param(g, zero_shift, NULL);
	assert_true(check_conservation(g, o, 3, 32, 32) > 5);
	iap_opts_free(o);

	/*
	 * AttnLRP (not conservative through the softmax, by design): the walk
	 * runs, stays finite, and the heads — scored at the attention weights —
	 * receive relevance, which CP-LRP by construction never gives them.
	 */
	for (int cp = 0; cp < 2; cp++) {
		struct iap_opts *oa = opts_make("composite", "epsilon", "vit_rule", cp ? "cplrp" : "attnlrp",
						NULL);
		void *st = state_make(oa, g);
		float **scores = calloc((size_t)g->n_groups, sizeof(*scores));
		struct iap_tensor x = tu_rand_tensor(41, 4, (int64_t)2, (int64_t)3, (int64_t)32, (int64_t)32);
		struct iap_tensor rel = { 0 };
		int targets[2] = { 1, 3 };
		double head_total = 0;

		tu_randomize_params(g, 10, 0.5f);
		for (int gi = 0; gi < g->n_groups; gi++)
			scores[gi] = calloc((size_t)g->groups[gi].n_units, sizeof(float));
		if (iap_attribute_batch(lrp_ops(), st, oa, g, &x, NULL, scores, NULL, &err) != IAP_OK)
			fail_msg("%s", err.msg);
		for (int gi = 0; gi < g->n_groups; gi++)
			for (int u = 0; u < g->groups[gi].n_units; u++) {
				assert_true(isfinite(scores[gi][u]));
				if (g->nodes[g->groups[gi].node].kind == IAP_OP_SOFTMAX)
					head_total += scores[gi][u];
			}
		if (cp)
			assert_true(head_total == 0.0);
		else
			assert_true(head_total > 0.0);
		assert_int_equal(lrp_ops()->explain(st, g, &x, targets, &rel, &err), IAP_OK);
		for (int64_t i = 0; i < iap_tensor_numel(&rel); i++)
			assert_true(isfinite(rel.data[i]));
		for (int gi = 0; gi < g->n_groups; gi++)
			free(scores[gi]);
		free(scores);
		iap_tensor_free(&rel);
		iap_tensor_free(&x);
		lrp_ops()->destroy(st);
		iap_opts_free(oa);
	}
	iap_graph_free(g);
}

/* ---- BatchNorm canonisation vs a net folded by hand ------------------------------------ */

struct grab {
	int node;
	struct iap_tensor t;
};

static int grab_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		     const struct iap_tensor *r)
{
	struct grab *gr = user;

	(void)g;
	for (; gr->node >= 0; gr++)
		if (gr->node == node->id && iap_tensor_copy(&gr->t, r, NULL) != IAP_OK)
			return -1;
	return 0;
}

/* conv(3→4, bias) → [BN] → relu → conv(4→5) → [BN] → relu → flatten → linear(→3). */
static struct iap_graph *bn_net(int with_bn, int *c1, int *c2)
{
	const int64_t shp[3] = { 3, 6, 6 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(3, shp, &err);
	int x;

	*c1 = x = iap_conv2d(g, "c1", IAP_GRAPH_INPUT, 4, 3, 3, 1, 1, 1, 1, 1);
	if (with_bn)
		x = iap_batchnorm2d(g, "b1", x, 1e-5f, 0.1f);
	x = iap_relu(g, "r1", x);
	*c2 = x = iap_conv2d(g, "c2", x, 5, 3, 3, 2, 2, 1, 1, !with_bn);
	if (with_bn)
		x = iap_batchnorm2d(g, "b2", x, 1e-5f, 0.1f);
	x = iap_relu(g, "r2", x);
	x = iap_flatten(g, "f", x);
	iap_linear(g, "fc", x, 3, 1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	return g;
}

/* Fold BN `bn` of g into conv `cv` of h (weight and bias), the way zennit merges. */
static void fold_into(struct iap_graph *g, const char *conv, const char *bn, struct iap_graph *h)
{
	char k[64];
	struct iap_param *w, *b, *gw, *gb, *mu, *var, *hw, *hb;

	snprintf(k, sizeof(k), "%s.weight", conv);
	w = iap_graph_find_param(g, k);
	hw = iap_graph_find_param(h, k);
	snprintf(k, sizeof(k), "%s.bias", conv);
	b = iap_graph_find_param(g, k);
	hb = iap_graph_find_param(h, k);
	snprintf(k, sizeof(k), "%s.weight", bn);
	gw = iap_graph_find_param(g, k);
	snprintf(k, sizeof(k), "%s.bias", bn);
	gb = iap_graph_find_param(g, k);
	snprintf(k, sizeof(k), "%s.running_mean", bn);
	mu = iap_graph_find_param(g, k);
	snprintf(k, sizeof(k), "%s.running_var", bn);
	var = iap_graph_find_param(g, k);
	assert_true(w && hw && hb && gw && gb && mu && var);
	int64_t co = w->value.shape[0], per = iap_tensor_numel(&w->value) / co;

	for (int64_t o = 0; o < co; o++) {
		double s = gw->value.data[o] / sqrt((double)var->value.data[o] + 1e-5);

		for (int64_t i = 0; i < per; i++)
			hw->value.data[o * per + i] = (float)(w->value.data[o * per + i] * s);
		hb->value.data[o] = (float)(((b ? b->value.data[o] : 0.0) - mu->value.data[o]) * s +
					    gb->value.data[o]);
	}
}

static void test_bn_canonisation(void **state)
{
	(void)state;
	const char *comps[] = { "epsilon-gamma-box", "epsilon-alpha2-beta1", "epsilon-plus" };
	struct iap_error err = { 0 };
	int a1, a2, h1, h2;
	struct iap_graph *g = bn_net(1, &a1, &a2), *h = bn_net(0, &h1, &h2);
	struct iap_tensor x = tu_rand_tensor(21, 4, (int64_t)2, (int64_t)3, (int64_t)6, (int64_t)6);

	tu_randomize_params(g, 17, 0.6f);
	tu_randomize_params(h, 18, 0.6f);
	fold_into(g, "c1", "b1", h);
	fold_into(g, "c2", "b2", h);
	memcpy(iap_graph_find_param(h, "fc.weight")->value.data,
	       iap_graph_find_param(g, "fc.weight")->value.data, 3 * 5 * 3 * 3 * sizeof(float));
	memcpy(iap_graph_find_param(h, "fc.bias")->value.data,
	       iap_graph_find_param(g, "fc.bias")->value.data, 3 * sizeof(float));
	for (size_t k = 0; k < sizeof(comps) / sizeof(comps[0]); k++) {
		struct iap_opts *o = opts_make("composite", comps[k], NULL);
		struct grab ga[] = { { a1, { 0 } }, { a2, { 0 } }, { -1, { 0 } } };
		struct grab gh[] = { { h1, { 0 } }, { h2, { 0 } }, { -1, { 0 } } };
		struct iap_tensor ra = { 0 }, rh = { 0 };
		int targets[2] = { 0, 2 };
		void *sa = state_make(o, g), *sh = state_make(o, h);
		struct iap_walk_opts wa = { .hook = grab_hook, .hook_user = ga };
		struct iap_walk_opts wh = { .hook = grab_hook, .hook_user = gh };
		struct iap_tensor seed = { 0 };
		struct iap_score_opts so = { .seed_scale = 1.0f };

		assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
		assert_int_equal(lrp_ops()->explain(sa, g, &x, targets, &ra, &err), IAP_OK);
		assert_int_equal(iap_graph_forward(h, &x, &err), IAP_OK);
		assert_true(rel_err(iap_graph_output(g)->data, iap_graph_output(h)->data, 6) < 1e-5);
		assert_int_equal(lrp_ops()->explain(sh, h, &x, targets, &rh, &err), IAP_OK);
		assert_true(iap_tensor_same_shape(&ra, &x));
		if (rel_err(ra.data, rh.data, iap_tensor_numel(&ra)) > 1e-4)
			fail_msg("%s: input relevance differs by %g", comps[k],
				 rel_err(ra.data, rh.data, iap_tensor_numel(&ra)));
		/* Relevance at the conv outputs (where unit scores are read) agrees too. */
		assert_int_equal(iap_seed_target(iap_graph_output(g), targets, &so, &seed, &err), IAP_OK);
		assert_int_equal(iap_graph_backward(g, lrp_ops()->ruleset(sa), &seed, &wa, &err), IAP_OK);
		assert_int_equal(iap_graph_backward(h, lrp_ops()->ruleset(sh), &seed, &wh, &err), IAP_OK);
		for (int i = 0; i < 2; i++)
			assert_true(rel_err(ga[i].t.data, gh[i].t.data, iap_tensor_numel(&gh[i].t)) < 1e-4);
		for (int i = 0; i < 2; i++) {
			iap_tensor_free(&ga[i].t);
			iap_tensor_free(&gh[i].t);
		}
		iap_tensor_free(&seed);
		iap_tensor_free(&ra);
		iap_tensor_free(&rh);
		lrp_ops()->destroy(sa);
		lrp_ops()->destroy(sh);
		iap_opts_free(o);
	}
	iap_tensor_free(&x);
	iap_graph_free(g);
	iap_graph_free(h);
}

/* ---- reference equality with zennit's rules (torch) -------------------------------------- */

struct ref_net {
	struct iap_graph *g;
	int conv1, conv2, conv3, fc1;
};

/* The generator's net: see tests/fixtures/lrp/gen_lrp_fixtures.py. */
static void ref_net_build(struct ref_net *r)
{
	const int64_t shp[3] = { 3, 8, 8 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(3, shp, &err);
	int x, m1, a3;

	r->conv1 = x = iap_conv2d(g, "conv1", IAP_GRAPH_INPUT, 4, 3, 3, 1, 1, 1, 1, 0);
	x = iap_batchnorm2d(g, "bn1", x, 1e-5f, 0.1f);
	x = iap_relu(g, "relu1", x);
	m1 = iap_maxpool2d(g, "pool1", x, 2, 2, 0, 0);
	r->conv2 = x = iap_conv2d(g, "conv2", m1, 4, 3, 3, 1, 1, 1, 1, 1);
	x = iap_relu(g, "relu2", x);
	r->conv3 = x = iap_conv2d(g, "conv3", x, 4, 3, 3, 1, 1, 1, 1, 0);
	a3 = iap_batchnorm2d(g, "bn3", x, 1e-5f, 0.1f);
	x = iap_add(g, "add", a3, m1);
	x = iap_relu(g, "relu3", x);
	x = iap_avgpool2d(g, "pool2", x, 2, 2, 0, 0, 1);
	x = iap_flatten(g, "flat", x);
	r->fc1 = x = iap_linear(g, "fc1", x, 8, 1);
	x = iap_relu(g, "relu4", x);
	iap_linear(g, "fc2", x, 3, 1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	r->g = g;
}

static int load_param(struct iap_node *node, struct iap_param *p, void *user)
{
	const struct fx_tensor *t = fx_find(user, p->key);

	(void)node;
	if (!t || t->numel != iap_tensor_numel(&p->value))
		fail_msg("fixture lacks %s", p->key);
	memcpy(p->value.data, t->data, (size_t)t->numel * sizeof(float));
	return 0;
}

static const struct fx_tensor *fx_need(const struct fx_file *f, const char *comp, const char *what)
{
	char k[128];
	const struct fx_tensor *t;

	snprintf(k, sizeof(k), "%s%s%s", comp ? comp : "", comp ? "." : "", what);
	t = fx_find(f, k);
	if (!t)
		fail_msg("fixture lacks %s", k);
	return t;
}

static void test_reference_zennit(void **state)
{
	(void)state;
	const char *comps[] = { "epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1" };
	const char *src = getenv("IAP_TEST_SRCDIR");
	struct iap_error err = { 0 };
	struct fx_file f = { 0 };
	struct ref_net r;
	struct iap_tensor x = { 0 };
	char path[1024];
	const struct fx_tensor *fx;

	snprintf(path, sizeof(path), "%s/tests/fixtures/lrp/lrp_cnn.iapfx", src ? src : ".");
	if (fx_load(&f, path, &err) != IAP_OK)
		fail_msg("%s", err.msg);
	ref_net_build(&r);
	iap_graph_foreach_param(r.g, load_param, &f);
	fx = fx_need(&f, NULL, "x");
	assert_int_equal(iap_tensor_alloc(&x, fx->ndim, fx->shape, &err), IAP_OK);
	memcpy(x.data, fx->data, (size_t)fx->numel * sizeof(float));
	assert_int_equal(iap_graph_forward(r.g, &x, &err), IAP_OK);
	fx = fx_need(&f, NULL, "logits");
	assert_true(rel_err(iap_graph_output(r.g)->data, fx->data, fx->numel) < 1e-5);

	for (size_t k = 0; k < sizeof(comps) / sizeof(comps[0]); k++) {
		struct iap_opts *o = opts_make("composite", comps[k], "zbox_low", "-2,-2.5,-3",
					       "zbox_high", "2,2.5,3", NULL);
		void *st = state_make(o, r.g);
		struct grab gr[] = { { r.conv1, { 0 } }, { r.conv2, { 0 } }, { r.conv3, { 0 } },
				     { r.fc1, { 0 } }, { -1, { 0 } } };
		const char *names[] = { "r_conv1", "r_conv2", "r_conv3", "r_fc1" };
		struct iap_walk_opts wo = { .hook = grab_hook, .hook_user = gr, .want_input = 1 };
		struct iap_score_opts so = { .seed_scale = 1.0f };
		struct iap_tensor seed = { 0 };
		int targets[2];

		assert_int_equal(iap_targets(iap_graph_output(r.g), NULL, &so, targets, &err), IAP_OK);
		assert_int_equal(iap_seed_target(iap_graph_output(r.g), targets, &so, &seed, &err), IAP_OK);
		if (iap_graph_backward(r.g, lrp_ops()->ruleset(st), &seed, &wo, &err) != IAP_OK)
			fail_msg("%s: %s", comps[k], err.msg);
		fx = fx_need(&f, comps[k], "r_input");
		assert_int_equal(fx->numel, iap_tensor_numel(&r.g->input_r));
		if (rel_err(r.g->input_r.data, fx->data, fx->numel) > 1e-4)
			fail_msg("%s: input relevance off by %g (relative)", comps[k],
				 rel_err(r.g->input_r.data, fx->data, fx->numel));
		for (int i = 0; i < 4; i++) {
			fx = fx_need(&f, comps[k], names[i]);
			assert_int_equal(fx->numel, iap_tensor_numel(&gr[i].t));
			if (rel_err(gr[i].t.data, fx->data, fx->numel) > 1e-4)
				fail_msg("%s: %s off by %g (relative)", comps[k], names[i],
					 rel_err(gr[i].t.data, fx->data, fx->numel));
			iap_tensor_free(&gr[i].t);
		}
		iap_tensor_free(&seed);
		lrp_ops()->destroy(st);
		iap_opts_free(o);
	}
	iap_tensor_free(&x);
	iap_graph_free(r.g);
	fx_free(&f);
}

/* ---- per-unit scores through the host ------------------------------------------------------ */

struct keep_all {
	struct iap_tensor *t;  /* per node */
};

static int keep_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		     const struct iap_tensor *r)
{
	struct keep_all *K = user;

	(void)g;
	return iap_tensor_copy(&K->t[node->id], r, NULL) == IAP_OK ? 0 : -1;
}

static void test_scores_host_path(void **state)
{
	(void)state;
	struct iap_cnn_cfg cfg = { .depth = 11, .num_classes = 5, .in_channels = 3, .image_size = 32,
				   .width = 1.0 / 16, .dropout = 0.5f };
	const char *abs_modes[] = { "after", "before" };
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_tensor x = tu_rand_tensor(31, 4, (int64_t)2, (int64_t)3, (int64_t)32, (int64_t)32);

	assert_int_equal(iap_vgg_build(&cfg, &g, &err), IAP_OK);
	tu_randomize_params(g, 4, 0.5f);
	assert_true(g->n_groups >= 8);
	for (int am = 0; am < 2; am++) {
		struct iap_opts *o = opts_make("abs", abs_modes[am], "reduce", "sum", NULL);
		void *st = state_make(o, g);
		float **scores = calloc((size_t)g->n_groups, sizeof(*scores));
		struct keep_all K = { .t = calloc((size_t)g->n_nodes, sizeof(struct iap_tensor)) };
		struct iap_walk_opts wo = { .hook = keep_hook, .hook_user = &K };
		struct iap_score_opts so = { .seed_scale = 1.0f };
		struct iap_tensor seed = { 0 };
		int targets[2], t2[2];
		double total = 0;

		assert_non_null(scores);
		assert_non_null(K.t);
		for (int gi = 0; gi < g->n_groups; gi++)
			scores[gi] = calloc((size_t)g->groups[gi].n_units, sizeof(float));
		if (iap_attribute_batch(lrp_ops(), st, o, g, &x, NULL, scores, targets, &err) != IAP_OK)
			fail_msg("%s", err.msg);
		/* The same walk by hand: relevance kept at every node, reduced here. */
		assert_int_equal(iap_targets(iap_graph_output(g), NULL, &so, t2, &err), IAP_OK);
		assert_memory_equal(targets, t2, sizeof(t2));
		assert_int_equal(iap_seed_target(iap_graph_output(g), targets, &so, &seed, &err), IAP_OK);
		assert_int_equal(iap_graph_backward(g, lrp_ops()->ruleset(st), &seed, &wo, &err), IAP_OK);
		for (int gi = 0; gi < g->n_groups; gi++) {
			const struct iap_unit_group *grp = &g->groups[gi];
			const struct iap_tensor *r = &K.t[grp->node];
			int64_t per = iap_tensor_numel(r) / r->shape[0] / grp->n_units;

			/* VGG units: NCHW channels or N×D neurons, unit_size 1. */
			for (int u = 0; u < grp->n_units; u++) {
				double want = 0;

				for (int64_t n = 0; n < 2; n++) {
					double s = 0;

					for (int64_t k = 0; k < per; k++) {
						float v = r->data[(n * grp->n_units + u) * per + k];

						s += am ? fabs(v) : v;
					}
					want += am ? s : fabs(s);
				}
				total += want;
				if (fabs(scores[gi][u] - want) > 1e-5 * fmax(1.0, fabs(want)))
					fail_msg("group %d unit %d: score %g, by hand %g", gi, u,
						 scores[gi][u], want);
			}
		}
		assert_true(total > 0);
		for (int i = 0; i < g->n_nodes; i++)
			iap_tensor_free(&K.t[i]);
		free(K.t);
		for (int gi = 0; gi < g->n_groups; gi++)
			free(scores[gi]);
		free(scores);
		iap_tensor_free(&seed);
		lrp_ops()->destroy(st);
		iap_opts_free(o);
	}
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/* ---- the shared object ---------------------------------------------------------------------- */

static void test_registry_load(void **state)
{
	(void)state;
	const char *bld = getenv("IAP_TEST_BUILDDIR");
	struct iap_error err = { 0 };
	struct iap_registry *reg = iap_registry_new(&err);
	const struct iap_plugin *pl;
	char path[1024];

	snprintf(path, sizeof(path), "%s/plugins/attribution/.libs/lrp.so", bld ? bld : ".");
	assert_non_null(reg);
	if (iap_registry_load(reg, path, &err) != IAP_OK)
		fail_msg("%s", err.msg);
	pl = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, "lrp");
	assert_non_null(pl);
	assert_non_null(pl->desc->ops.attribution->ruleset);
	assert_non_null(pl->desc->ops.attribution->explain);
	assert_string_equal(pl->desc->options[0].name, "composite");
	assert_string_equal(pl->desc->options[0].def, "epsilon-plus-flat");
	iap_registry_free(reg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rule_epsilon),
		cmocka_unit_test(test_rule_zplus),
		cmocka_unit_test(test_rule_alpha_beta),
		cmocka_unit_test(test_rule_gamma),
		cmocka_unit_test(test_rule_flat_wsquare_zbox),
		cmocka_unit_test(test_rule_softmax),
		cmocka_unit_test(test_alpha_beta_refused),
		cmocka_unit_test(test_conservation_vgg),
		cmocka_unit_test(test_conservation_resnet),
		cmocka_unit_test(test_conservation_vit),
		cmocka_unit_test(test_bn_canonisation),
		cmocka_unit_test(test_reference_zennit),
		cmocka_unit_test(test_scores_host_path),
		cmocka_unit_test(test_registry_load),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
