/*
 * Compaction: the compacted graph computes what the masked graph computes, is
 * smaller by exactly the pruned units, round-trips through safetensors with
 * its keep metadata, and refuses (or keeps) half-pruned residual couplings as
 * documented. Baked masks give the masked outputs without masks.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/compact.h>
#include <iaprune/ops.h>
#include <iaprune/rng.h>
#include <iaprune/safetensors.h>
#include <iaprune/weights.h>

#include "testutil.h"
#include "../plugins/models/arch.h"

#define REL_TOL 1e-5

/* ---- helpers ------------------------------------------------------------------ */

static void check_ok(int rc, const struct iap_error *err)
{
	if (rc != IAP_OK)
		fail_msg("status %d: %s", rc, err->msg);
}

/* Run g on x and return a malloc'ed copy of its output (*n floats). */
static float *run(struct iap_graph *g, const struct iap_tensor *x, size_t *n)
{
	struct iap_error err;
	const struct iap_tensor *y;
	float *copy;

	check_ok(iap_graph_forward(g, x, &err), &err);
	y = iap_graph_output(g);
	assert_non_null(y);
	*n = (size_t)iap_tensor_numel(y);
	copy = malloc(*n * sizeof(*copy));
	assert_non_null(copy);
	memcpy(copy, y->data, *n * sizeof(*copy));
	return copy;
}

static double max_abs(const float *a, size_t n)
{
	double m = 0.0;

	for (size_t i = 0; i < n; i++)
		m = (double)(a[i] < 0 ? -a[i] : a[i]) > m ? (double)(a[i] < 0 ? -a[i] : a[i]) : m;
	return m;
}

/* a and b agree to REL_TOL relative to the larger magnitude of a (which must not vanish). */
static void assert_close(const float *a, const float *b, size_t n, const char *what)
{
	double scale = max_abs(a, n), d = tu_max_abs_diff(a, b, n, NULL);

	if (!(scale > 1e-6))
		fail_msg("%s: reference output vanishes (max |y| = %g)", what, scale);
	if (!(d <= REL_TOL * scale))
		fail_msg("%s: max difference %g exceeds %g relative to %g", what, d, REL_TOL, scale);
}

/* Mask each group at random (about `rate` pruned, at least one unit kept); couplings share one mask. */
static void random_masks(struct iap_graph *g, uint64_t seed, double rate)
{
	struct iap_rng r;
	struct iap_error err;

	iap_rng_seed(&r, seed);
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];
		uint8_t *keep = malloc((size_t)grp->n_units);
		int kept = 0, prev = -1;

		assert_non_null(keep);
		for (int gj = 0; gj < gi && grp->coupling >= 0; gj++)
			if (g->groups[gj].coupling == grp->coupling)
				prev = gj;
		if (prev >= 0) {
			memcpy(keep, g->groups[prev].mask, (size_t)grp->n_units);
		} else {
			for (int u = 0; u < grp->n_units; u++) {
				keep[u] = iap_rng_uniform(&r) >= rate;
				kept += keep[u];
			}
			if (!kept)
				keep[iap_rng_uniform(&r) < 0.5 ? 0 : grp->n_units - 1] = 1;
		}
		check_ok(iap_graph_set_mask(g, gi, keep, &err), &err);
		free(keep);
	}
}

static void clear_masks(struct iap_graph *g)
{
	struct iap_error err;

	for (int gi = 0; gi < g->n_groups; gi++)
		check_ok(iap_graph_set_mask(g, gi, NULL, &err), &err);
}

static int64_t pruned_units(const struct iap_graph *g)
{
	int64_t n = 0;

	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; g->groups[gi].mask && u < g->groups[gi].n_units; u++)
			n += !g->groups[gi].mask[u];
	return n;
}

/*
 * The core property: compacting g (masked) gives a graph with the same
 * outputs, strictly fewer parameters and MACs, groups shrunk by exactly their
 * pruned units and no masks left. Returns the compacted graph.
 */
static struct iap_graph *compact_and_compare(struct iap_graph *g, unsigned flags, uint64_t seed,
					     const char *what)
{
	struct iap_tensor x = tu_rand_tensor(seed, 4, (int64_t)3, g->in_shape[0], g->in_shape[1],
					     g->in_shape[2]);
	struct iap_graph *c = NULL;
	struct iap_error err;
	float *ym, *yc, *yfull;
	size_t nm, nc, nf;

	ym = run(g, &x, &nm);
	check_ok(iap_graph_compact(g, flags, &c, &err), &err);
	assert_non_null(c);
	yc = run(c, &x, &nc);
	assert_int_equal(nm, nc);
	assert_close(ym, yc, nm, what);

	assert_true(pruned_units(g) > 0);
	assert_int_equal(c->n_groups, g->n_groups);
	assert_int_equal(c->n_nodes, g->n_nodes);
	for (int gi = 0; gi < g->n_groups; gi++) {
		int kept = 0;

		for (int u = 0; u < g->groups[gi].n_units; u++)
			kept += g->groups[gi].mask ? g->groups[gi].mask[u] : 1;
		assert_string_equal(c->groups[gi].name, g->groups[gi].name);
		assert_int_equal(c->groups[gi].n_units, kept);
		assert_null(c->groups[gi].mask);
	}
	assert_true(iap_graph_param_count(c, NULL) < iap_graph_param_count(g, NULL));
	assert_true(iap_graph_macs(c) < iap_graph_macs(g));

	/* The masks matter here: without them the full graph computes something else. */
	{
		struct iap_graph *tmp = g;
		uint8_t **saved = calloc((size_t)g->n_groups, sizeof(*saved));

		assert_non_null(saved);
		for (int gi = 0; gi < g->n_groups; gi++) {
			saved[gi] = tmp->groups[gi].mask;
			tmp->groups[gi].mask = NULL;
		}
		yfull = run(tmp, &x, &nf);
		for (int gi = 0; gi < g->n_groups; gi++)
			tmp->groups[gi].mask = saved[gi];
		free(saved);
		assert_true(tu_max_abs_diff(ym, yfull, nm, NULL) > 1e-3 * max_abs(ym, nm));
		free(yfull);
	}
	free(ym);
	free(yc);
	iap_tensor_free(&x);
	return c;
}

static struct iap_graph *build_cnn(int (*build)(const struct iap_cnn_cfg *, struct iap_graph **,
						 struct iap_error *),
				   int depth, int bn, uint64_t seed)
{
	struct iap_cnn_cfg cfg = {
		.depth = depth, .batch_norm = bn, .num_classes = 5, .in_channels = 3,
		.image_size = 32, .width = 1.0 / 16, .dropout = 0.5f,
	};
	struct iap_graph *g;
	struct iap_error err;

	check_ok(build(&cfg, &g, &err), &err);
	tu_randomize_params(g, seed, 0.25f);
	return g;
}

static struct iap_graph *build_vit(uint64_t seed)
{
	struct iap_vit_cfg cfg = {
		.patch_size = 8, .image_size = 32, .in_channels = 3, .num_layers = 2,
		.num_heads = 4, .hidden_dim = 32, .mlp_dim = 48, .num_classes = 5,
	};
	struct iap_graph *g;
	struct iap_error err;

	check_ok(iap_vit_build(&cfg, &g, &err), &err);
	tu_randomize_params(g, seed, 0.3f);
	return g;
}

static int find_group(const struct iap_graph *g, const char *name)
{
	for (int gi = 0; gi < g->n_groups; gi++)
		if (strcmp(g->groups[gi].name, name) == 0)
			return gi;
	fail_msg("no unit group %s", name);
	return -1;
}

static int find_node(const struct iap_graph *g, const char *name, enum iap_op_kind kind)
{
	for (int i = 0; i < g->n_nodes; i++)
		if (g->nodes[i].kind == kind && strcmp(g->nodes[i].name, name) == 0)
			return i;
	fail_msg("no %s node %s", iap_op_name(kind), name);
	return -1;
}

/* ---- a hand-sized net ----------------------------------------------------------- */

/* input 2×8×8 → c1 conv 2→4 → relu → c2 conv 4→3 → relu → flatten → fc 192→5 */
static struct iap_graph *build_tiny(void)
{
	const int64_t in_shape[3] = { 2, 8, 8 };
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(3, in_shape, &err);
	int x, c1, c2;

	assert_non_null(g);
	c1 = iap_conv2d(g, "c1", IAP_GRAPH_INPUT, 4, 3, 3, 1, 1, 1, 1, 1);
	x = iap_relu(g, "r1", c1);
	c2 = iap_conv2d(g, "c2", x, 3, 3, 3, 1, 1, 1, 1, 1);
	x = iap_relu(g, "r2", c2);
	x = iap_flatten(g, "flat", x);
	iap_linear(g, "fc", x, 5, 1);
	iap_graph_add_units(g, c1, 4, 1, -1);
	iap_graph_add_units(g, c2, 3, 1, -1);
	check_ok(iap_graph_finalize(g, &err), &err);
	tu_randomize_params(g, 7, 0.5f);
	return g;
}

static void test_tiny_exact(void **state)
{
	static const uint8_t keep1[4] = { 1, 0, 1, 1 }, keep2[3] = { 1, 0, 1 };
	struct iap_graph *g = build_tiny(), *c;
	struct iap_error err;
	struct iap_param *ow, *nw;
	char *meta;

	(void)state;
	check_ok(iap_graph_set_mask(g, 0, keep1, &err), &err);
	check_ok(iap_graph_set_mask(g, 1, keep2, &err), &err);
	/* c1 76 + c2 111 + fc 965; MACs 4·64·18 + 3·64·36 + 192·5. */
	assert_int_equal(iap_graph_param_count(g, NULL), 1152);
	assert_int_equal(iap_graph_macs(g), 12480);
	c = compact_and_compare(g, 0, 11, "tiny");
	/* c1 3·2·9+3, c2 2·3·9+2, fc 5·128+5; MACs 3·64·18 + 2·64·27 + 128·5. */
	assert_int_equal(iap_graph_param_count(c, NULL), 57 + 56 + 645);
	assert_int_equal(iap_graph_macs(c), 3456 + 3456 + 640);
	assert_int_equal(c->nodes[0].attr.conv.out_ch, 3);
	assert_int_equal(c->nodes[2].attr.conv.in_ch, 3);
	assert_int_equal(c->nodes[2].attr.conv.out_ch, 2);
	assert_int_equal(c->nodes[5].attr.linear.in_features, 128);

	/* New c2 filter 1, input 2 is old filter 2, input 3 (old input 1 and filter 1 are gone). */
	ow = iap_graph_find_param(g, "c2.weight");
	nw = iap_graph_find_param(c, "c2.weight");
	assert_non_null(nw);
	assert_int_equal(nw->value.shape[0], 2);
	assert_int_equal(nw->value.shape[1], 3);
	for (int k = 0; k < 9; k++)
		assert_true(nw->value.data[(1 * 3 + 2) * 9 + k] == ow->value.data[(2 * 4 + 3) * 9 + k]);
	assert_true(iap_graph_find_param(c, "c2.bias")->value.data[1] ==
		    iap_graph_find_param(g, "c2.bias")->value.data[2]);
	/* fc column of (new channel 1, position 5) is the old (channel 2, position 5). */
	ow = iap_graph_find_param(g, "fc.weight");
	nw = iap_graph_find_param(c, "fc.weight");
	assert_true(nw->value.data[4 * 128 + 64 + 5] == ow->value.data[4 * 192 + 128 + 5]);

	/* 1011 → b; 101(0) → a */
	meta = iap_graph_keep_metadata(g, &err);
	assert_non_null(meta);
	assert_string_equal(meta, "c1=4:b;c2=3:a");
	free(meta);
	clear_masks(g);
	meta = iap_graph_keep_metadata(g, &err);
	assert_string_equal(meta, "");
	free(meta);
	check_ok(iap_graph_apply_keep_metadata(g, "c2=3:a;c1=4:B", &err), &err);
	assert_memory_equal(g->groups[0].mask, keep1, 4);
	assert_memory_equal(g->groups[1].mask, keep2, 3);
	iap_graph_free(c);
	iap_graph_free(g);
}

/* Bad metadata is refused as a whole and leaves the masks alone. */
static void test_keep_metadata_errors(void **state)
{
	static const uint8_t keep1[4] = { 0, 1, 1, 1 };
	static const struct {
		const char *meta;
		int code;
	} bad[] = {
		{ "c1=4:b;nope=3:a", IAP_EINVAL },   /* unknown group */
		{ "c1=5:b8", IAP_EINVAL },           /* unit count */
		{ "c1=4:bb", IAP_EFORMAT },          /* digit count */
		{ "c1=4:g", IAP_EFORMAT },           /* not hex */
		{ "c2=3:b", IAP_EFORMAT },           /* padding bit set */
		{ "c1=4:b;c1=4:b", IAP_EFORMAT },    /* twice */
		{ "c1=4:b;", IAP_EFORMAT },          /* trailing ; */
		{ "c1", IAP_EFORMAT },
		{ "c1=:b", IAP_EFORMAT },
	};
	struct iap_graph *g = build_tiny();
	struct iap_error err;

	(void)state;
	check_ok(iap_graph_set_mask(g, 0, keep1, &err), &err);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = iap_graph_apply_keep_metadata(g, bad[i].meta, &err);

		if (rc != bad[i].code)
			fail_msg("'%s': status %d (%s), expected %d", bad[i].meta, rc, err.msg, bad[i].code);
		assert_memory_equal(g->groups[0].mask, keep1, 4);
		assert_null(g->groups[1].mask);
	}
	/* A group that prunes everything cannot be compacted. */
	{
		static const uint8_t none[3] = { 0, 0, 0 };
		struct iap_graph *c = (struct iap_graph *)1;

		check_ok(iap_graph_set_mask(g, 1, none, &err), &err);
		assert_int_equal(iap_graph_compact(g, 0, &c, &err), IAP_EUNSUPPORTED);
		assert_null(c);
		assert_non_null(strstr(err.msg, "'c2'"));
	}
	iap_graph_free(g);
}

/* ---- the architectures ------------------------------------------------------------ */

static void test_vgg(void **state)
{
	(void)state;
	for (int bn = 0; bn <= 1; bn++) {
		struct iap_graph *g = build_cnn(iap_vgg_build, 11, bn, 100 + (uint64_t)bn), *c;

		random_masks(g, 200 + (uint64_t)bn, 0.3);
		c = compact_and_compare(g, IAP_COMPACT_STRICT, 300, bn ? "vgg11_bn" : "vgg11");
		/* classifier.0 reads the kept channels' 7×7 blocks. */
		{
			int last = find_group(g, "features.18");
			int fc = find_node(c, "classifier.0", IAP_OP_LINEAR);

			if (bn)
				last = find_group(g, "features.25");
			assert_int_equal(c->nodes[fc].attr.linear.in_features,
					 (int64_t)c->groups[last].n_units * 49);
		}
		iap_graph_free(c);
		iap_graph_free(g);
	}
}

static void test_resnet(void **state)
{
	static const int depths[] = { 18, 50 };

	(void)state;
	for (size_t i = 0; i < 2; i++) {
		struct iap_graph *g = build_cnn(iap_resnet_build, depths[i], 0, 400 + i), *c;

		random_masks(g, 500 + i, 0.3);
		/* Coupled groups share their masks, so even the strict mode accepts them. */
		c = compact_and_compare(g, IAP_COMPACT_STRICT, 600 + i, depths[i] == 18 ? "resnet18" : "resnet50");
		iap_graph_free(c);
		iap_graph_free(g);
	}
}

static void test_vit(void **state)
{
	struct iap_graph *g = build_vit(700), *c;
	struct iap_error err;
	static const uint8_t heads[4] = { 1, 0, 0, 1 };
	int hg, sc, cx, q;

	(void)state;
	random_masks(g, 800, 0.3);
	hg = find_group(g, "encoder.layers.encoder_layer_1.self_attention");
	check_ok(iap_graph_set_mask(g, hg, heads, &err), &err);
	c = compact_and_compare(g, 0, 900, "vit");
	sc = find_node(c, "encoder.layers.encoder_layer_1.self_attention", IAP_OP_ATTN_SCORES);
	cx = find_node(c, "encoder.layers.encoder_layer_1.self_attention", IAP_OP_ATTN_CONTEXT);
	q = find_node(c, "encoder.layers.encoder_layer_1.self_attention", IAP_OP_LINEAR);
	assert_int_equal(c->nodes[sc].attr.attn.num_heads, 2);
	assert_int_equal(c->nodes[cx].attr.attn.dim, 16);
	assert_int_equal(c->nodes[cx].out_shape[1], 16);
	/* in_proj keeps heads 0 and 3 of q, k and v: rows 0-7, 24-31, 32-39, 56-63, ... */
	{
		struct iap_param *nw = iap_graph_find_param(c, "encoder.layers.encoder_layer_1.self_attention.in_proj_weight");
		struct iap_param *ow = iap_graph_find_param(g, "encoder.layers.encoder_layer_1.self_attention.in_proj_weight");
		struct iap_param *nb = iap_graph_find_param(c, "encoder.layers.encoder_layer_1.self_attention.in_proj_bias");
		struct iap_param *ob = iap_graph_find_param(g, "encoder.layers.encoder_layer_1.self_attention.in_proj_bias");
		struct iap_param *no = iap_graph_find_param(c, "encoder.layers.encoder_layer_1.self_attention.out_proj.weight");
		struct iap_param *oo = iap_graph_find_param(g, "encoder.layers.encoder_layer_1.self_attention.out_proj.weight");

		assert_ptr_equal(nw, &c->nodes[q].params[0]);
		assert_int_equal(nw->value.shape[0], 48);
		assert_int_equal(nw->value.shape[1], 32);
		/* new row 8 + j = old q row 24 + j; new row 40 + j = old v row 64 + 24 + j */
		assert_memory_equal(nw->value.data + 8 * 32, ow->value.data + 24 * 32, 8 * 32 * sizeof(float));
		assert_memory_equal(nw->value.data + 40 * 32, ow->value.data + 88 * 32, 8 * 32 * sizeof(float));
		assert_true(nb->value.data[16] == ob->value.data[32]);
		/* out_proj [32, 16]: new column 8 + j = old column 24 + j */
		assert_int_equal(no->value.shape[1], 16);
		for (int r = 0; r < 32; r++)
			assert_true(no->value.data[r * 16 + 9] == oo->value.data[r * 32 + 25]);
	}
	iap_graph_free(c);
	iap_graph_free(g);
}

/* ---- couplings ------------------------------------------------------------------ */

/* Pruning one member of a coupling alone: kept (zeroed) by default, refused when strict. */
static void test_resnet_half_coupling(void **state)
{
	struct iap_graph *g = build_cnn(iap_resnet_build, 18, 0, 1000), *c = NULL;
	struct iap_error err;
	uint8_t keep[16];
	int a = -1, b = -1, inner;
	struct iap_tensor x = tu_rand_tensor(1001, 4, (int64_t)2, (int64_t)3, (int64_t)32, (int64_t)32);
	float *ym, *yc;
	size_t nm, nc;

	(void)state;
	a = find_group(g, "layer1.0.conv2");
	b = find_group(g, "conv1");
	inner = find_group(g, "layer1.0.conv1");
	assert_int_equal(g->groups[a].coupling, g->groups[b].coupling);
	assert_int_equal(g->groups[a].n_units, 4);
	memset(keep, 1, sizeof(keep));
	keep[1] = 0;
	check_ok(iap_graph_set_mask(g, a, keep, &err), &err);
	keep[1] = 1;
	keep[2] = 0;
	check_ok(iap_graph_set_mask(g, inner, keep, &err), &err);

	assert_int_equal(iap_graph_compact(g, IAP_COMPACT_STRICT, &c, &err), IAP_EINVAL);
	assert_null(c);
	assert_non_null(strstr(err.msg, "'layer1.0.conv2'"));
	assert_non_null(strstr(err.msg, "'conv1'"));
	assert_non_null(strstr(err.msg, "coupling 0"));

	ym = run(g, &x, &nm);
	check_ok(iap_graph_compact(g, 0, &c, &err), &err);
	/* The residual channel stays (its conv2 filter and bn2 zeroed); the inner one goes. */
	assert_int_equal(c->groups[a].n_units, 4);
	assert_int_equal(c->groups[inner].n_units, 3);
	{
		struct iap_param *w = iap_graph_find_param(c, "layer1.0.conv2.weight");
		struct iap_param *bw = iap_graph_find_param(c, "layer1.0.bn2.weight");
		struct iap_param *bb = iap_graph_find_param(c, "layer1.0.bn2.bias");
		int64_t row = w->value.shape[1] * 9;

		assert_int_equal(w->value.shape[1], 3);
		for (int64_t k = 0; k < row; k++)
			assert_true(w->value.data[row + k] == 0.0f);
		assert_true(bw->value.data[1] == 0.0f && bb->value.data[1] == 0.0f);
		assert_true(bw->value.data[0] != 0.0f);
	}
	yc = run(c, &x, &nc);
	assert_close(ym, yc, nm, "resnet18, half-pruned coupling");
	free(ym);
	free(yc);
	iap_graph_free(c);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/*
 * Residual units without a coupling id: the add that cannot match is named.
 * And a BatchNorm after the mask would turn the removed channel into a constant.
 */
static void test_add_mismatch(void **state)
{
	const int64_t in_shape[3] = { 2, 6, 6 };
	static const uint8_t keep[3] = { 1, 0, 1 };
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(3, in_shape, &err), *c = NULL;
	int a, b;

	(void)state;
	a = iap_conv2d(g, "a", IAP_GRAPH_INPUT, 3, 1, 1, 1, 1, 0, 0, 1);
	b = iap_conv2d(g, "b", IAP_GRAPH_INPUT, 3, 1, 1, 1, 1, 0, 0, 1);
	iap_add(g, "res.add", a, b);
	iap_graph_add_units(g, a, 3, 1, -1);
	iap_graph_add_units(g, b, 3, 1, -1);
	check_ok(iap_graph_finalize(g, &err), &err);
	check_ok(iap_graph_set_mask(g, 0, keep, &err), &err);
	assert_int_equal(iap_graph_compact(g, 0, &c, &err), IAP_EINVAL);
	assert_null(c);
	assert_non_null(strstr(err.msg, "'res.add'"));
	assert_non_null(strstr(err.msg, "'a'"));
	iap_graph_free(g);

	/* A BatchNorm that is not where the mask sits would shift the pruned channel: refused. */
	g = iap_graph_new(3, in_shape, &err);
	a = iap_conv2d(g, "a", IAP_GRAPH_INPUT, 3, 1, 1, 1, 1, 0, 0, 1);
	b = iap_batchnorm2d(g, "a_bn", a, 1e-5f, 0.1f);
	iap_add(g, "res.add", b, iap_relu(g, "a_relu", a));
	iap_graph_add_units(g, a, 3, 1, -1);
	check_ok(iap_graph_finalize(g, &err), &err);
	assert_int_equal(g->groups[0].mask_node, a);
	check_ok(iap_graph_set_mask(g, 0, keep, &err), &err);
	assert_int_equal(iap_graph_compact(g, 0, &c, &err), IAP_EUNSUPPORTED);
	assert_null(c);
	assert_non_null(strstr(err.msg, "'a_bn'"));
	iap_graph_free(g);
}

/* ---- saving and rebuilding -------------------------------------------------------- */

/*
 * Save the compacted weights with the keep metadata, rebuild from a fresh
 * full-size graph (other weights), apply the metadata, compact, load: the
 * outputs are the first compacted graph's.
 */
static void roundtrip(struct iap_graph *g, struct iap_graph *fresh, const char *what)
{
	struct iap_tensor x = tu_rand_tensor(77, 4, (int64_t)2, g->in_shape[0], g->in_shape[1], g->in_shape[2]);
	struct iap_graph *c, *c2;
	struct iap_safetensors *st;
	struct iap_st_meta meta;
	struct iap_error err;
	char path[64];
	float *y1, *y2;
	size_t n1, n2;

	snprintf(path, sizeof(path), "/tmp/iap_compact_%ld.safetensors", (long)getpid());
	check_ok(iap_graph_compact(g, 0, &c, &err), &err);
	meta.key = IAP_KEEP_META_KEY;
	meta.value = iap_graph_keep_metadata(g, &err);
	assert_non_null(meta.value);
	check_ok(iap_graph_save_weights(c, path, &meta, 1, &err), &err);
	free(meta.value);

	check_ok(iap_safetensors_open(path, &st, &err), &err);
	check_ok(iap_graph_apply_keep_metadata(fresh, iap_safetensors_meta(st, IAP_KEEP_META_KEY), &err), &err);
	check_ok(iap_graph_compact(fresh, 0, &c2, &err), &err);
	/* Loading is strict: every key present, every shape equal. */
	check_ok(iap_graph_load_weights(c2, st, 0, &err), &err);
	iap_safetensors_close(st);
	unlink(path);

	y1 = run(c, &x, &n1);
	y2 = run(c2, &x, &n2);
	assert_int_equal(n1, n2);
	assert_memory_equal(y1, y2, n1 * sizeof(float));
	assert_int_equal(iap_graph_param_count(c2, NULL), iap_graph_param_count(c, NULL));
	free(y1);
	free(y2);
	iap_graph_free(c);
	iap_graph_free(c2);
	iap_tensor_free(&x);
	(void)what;
}

static void test_roundtrip(void **state)
{
	struct iap_graph *g, *fresh;

	(void)state;
	g = build_cnn(iap_vgg_build, 11, 1, 1100);
	fresh = build_cnn(iap_vgg_build, 11, 1, 1101);
	random_masks(g, 1102, 0.4);
	roundtrip(g, fresh, "vgg11_bn");
	iap_graph_free(g);
	iap_graph_free(fresh);

	g = build_cnn(iap_resnet_build, 18, 0, 1200);
	fresh = build_cnn(iap_resnet_build, 18, 0, 1201);
	random_masks(g, 1202, 0.4);
	roundtrip(g, fresh, "resnet18");
	iap_graph_free(g);
	iap_graph_free(fresh);

	g = build_vit(1300);
	fresh = build_vit(1301);
	random_masks(g, 1302, 0.4);
	roundtrip(g, fresh, "vit");
	iap_graph_free(g);
	iap_graph_free(fresh);
}

/* ---- baking -------------------------------------------------------------------------- */

/* After baking, the graph without masks computes what it computed with them. */
static void bake_and_compare(struct iap_graph *g, const char *what)
{
	struct iap_tensor x = tu_rand_tensor(99, 4, (int64_t)2, g->in_shape[0], g->in_shape[1], g->in_shape[2]);
	struct iap_error err;
	float *ym, *yb;
	size_t nm, nb;
	int64_t before = iap_graph_param_count(g, NULL);

	ym = run(g, &x, &nm);
	check_ok(iap_graph_bake_masks(g, &err), &err);
	clear_masks(g);
	yb = run(g, &x, &nb);
	assert_close(ym, yb, nm, what);
	assert_int_equal(iap_graph_param_count(g, NULL), before);
	free(ym);
	free(yb);
	iap_tensor_free(&x);
}

static void test_bake(void **state)
{
	struct iap_graph *g;

	(void)state;
	g = build_cnn(iap_vgg_build, 11, 0, 1400);
	random_masks(g, 1401, 0.3);
	bake_and_compare(g, "vgg11 baked");
	iap_graph_free(g);

	g = build_cnn(iap_vgg_build, 11, 1, 1500);
	random_masks(g, 1501, 0.3);
	bake_and_compare(g, "vgg11_bn baked");
	iap_graph_free(g);

	/* Independent masks in coupled groups: baking needs no consistency. */
	g = build_cnn(iap_resnet_build, 50, 0, 1600);
	for (int gi = 0; gi < g->n_groups; gi++)
		g->groups[gi].coupling = -1;
	random_masks(g, 1601, 0.3);
	bake_and_compare(g, "resnet50 baked");
	iap_graph_free(g);

	g = build_vit(1700);
	random_masks(g, 1701, 0.3);
	bake_and_compare(g, "vit baked");
	iap_graph_free(g);
}

/* A shape-only graph compacts to the same sizes as a real one. */
static void test_shape_only(void **state)
{
	struct iap_cnn_cfg cfg = {
		.depth = 18, .num_classes = 5, .in_channels = 3, .image_size = 32,
		.width = 1.0 / 16, .shape_only = 1,
	};
	struct iap_graph *s, *g, *cs, *cg;
	struct iap_error err;

	(void)state;
	check_ok(iap_resnet_build(&cfg, &s, &err), &err);
	g = build_cnn(iap_resnet_build, 18, 0, 1800);
	random_masks(s, 1801, 0.5);
	random_masks(g, 1801, 0.5);
	check_ok(iap_graph_compact(s, 0, &cs, &err), &err);
	check_ok(iap_graph_compact(g, 0, &cg, &err), &err);
	assert_true(cs->shape_only);
	assert_int_equal(iap_graph_param_count(cs, NULL), iap_graph_param_count(cg, NULL));
	assert_int_equal(iap_graph_macs(cs), iap_graph_macs(cg));
	assert_true(iap_graph_macs(cs) < iap_graph_macs(s));
	iap_graph_free(cs);
	iap_graph_free(cg);
	iap_graph_free(s);
	iap_graph_free(g);
}


/* ---- baking the consumers' side ----------------------------------------------------- */

static struct iap_param *param_of(struct iap_graph *g, const char *key)
{
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++)
			if (!strcmp(g->nodes[i].params[k].key, key))
				return &g->nodes[i].params[k];
	fail_msg("no parameter '%s'", key);
	return NULL;
}

/* How many of weight w's input columns [c0, c1) (all rows, all kernel taps) are not zero. */
static int64_t nonzero_columns(const struct iap_param *w, int64_t c0, int64_t c1)
{
	const int64_t n_out = w->value.shape[0], n_in = w->value.shape[1];
	const int64_t inner = iap_tensor_numel(&w->value) / (n_out * n_in);
	int64_t nz = 0;

	for (int64_t o = 0; o < n_out; o++)
		for (int64_t i = c0; i < c1; i++)
			for (int64_t t = 0; t < inner; t++)
				nz += w->value.data[(o * n_in + i) * inner + t] != 0.0f;
	return nz;
}

/* Prune unit u of the group named name (every other unit kept). */
static void prune_one(struct iap_graph *g, const char *name, int u)
{
	struct iap_error err;

	for (int gi = 0; gi < g->n_groups; gi++) {
		uint8_t keep[4096];

		if (strcmp(g->groups[gi].name, name))
			continue;
		assert_true(g->groups[gi].n_units <= (int)sizeof(keep));
		memset(keep, 1, sizeof(keep));
		keep[u] = 0;
		check_ok(iap_graph_set_mask(g, gi, keep, &err), &err);
		return;
	}
	fail_msg("no unit group '%s'", name);
}

/*
 * A baked unit is zero on both sides: the next conv's input channel, the
 * classifier's block of columns after flatten (7x7 per channel), out_proj's
 * columns of a pruned head; outputs are unchanged, other columns untouched.
 */
static void test_bake_consumers(void **state)
{
	struct iap_graph *g;
	struct iap_param *w;
	int64_t before;

	(void)state;
	g = build_cnn(iap_vgg_build, 11, 1, 1900);
	prune_one(g, "features.0", 1);
	prune_one(g, "features.25", 2);
	w = param_of(g, "features.4.weight");
	before = nonzero_columns(w, 0, w->value.shape[1]);
	assert_true(nonzero_columns(w, 1, 2) > 0);
	assert_true(nonzero_columns(param_of(g, "classifier.0.weight"), 2 * 49, 3 * 49) > 0);
	bake_and_compare(g, "vgg11_bn consumers baked");
	assert_int_equal(nonzero_columns(w, 1, 2), 0);
	assert_int_equal(nonzero_columns(w, 0, w->value.shape[1]),
			 before - w->value.shape[0] * 9);
	assert_int_equal(nonzero_columns(param_of(g, "classifier.0.weight"), 2 * 49, 3 * 49), 0);
	assert_true(nonzero_columns(param_of(g, "classifier.0.weight"), 3 * 49, 4 * 49) > 0);
	iap_graph_free(g);

	g = build_vit(2000);
	prune_one(g, "encoder.layers.encoder_layer_0.self_attention", 1);
	w = param_of(g, "encoder.layers.encoder_layer_0.self_attention.out_proj.weight");
	assert_true(nonzero_columns(w, 8, 16) > 0);
	bake_and_compare(g, "vit head consumers baked");
	assert_int_equal(nonzero_columns(w, 8, 16), 0);
	assert_true(nonzero_columns(w, 0, 8) > 0);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tiny_exact),
		cmocka_unit_test(test_keep_metadata_errors),
		cmocka_unit_test(test_vgg),
		cmocka_unit_test(test_resnet),
		cmocka_unit_test(test_vit),
		cmocka_unit_test(test_resnet_half_coupling),
		cmocka_unit_test(test_add_mismatch),
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_bake),
		cmocka_unit_test(test_bake_consumers),
		cmocka_unit_test(test_shape_only),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
