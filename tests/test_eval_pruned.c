/*
 * iap_evaluate_pruned (the pruning sweep's evaluation): on the compacted
 * graph when compaction accepts the masks, with the same metrics as the
 * masked graph up to float rounding; on the masked graph when compaction
 * refuses; on the graph itself when nothing is masked.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <iaprune/eval_pruned.h>
#include <iaprune/graph.h>
#include <iaprune/metrics.h>
#include <iaprune/rng.h>
#include <iaprune/train.h>

#include "../plugins/models/arch.h"
#include "testutil.h"

#define SIDE 32
#define CLASSES 4
#define SAMPLES 40

struct mem {
	float *img;
	int label[SAMPLES];
};

static int64_t mem_count(void *state)
{
	(void)state;
	return SAMPLES;
}

static int mem_info(void *state, struct iap_dataset_info *info, struct iap_error *err)
{
	(void)state;
	(void)err;
	*info = (struct iap_dataset_info){ .n_classes = CLASSES, .in_ndim = 3, .in_shape = { 3, SIDE, SIDE } };
	return IAP_OK;
}

static int mem_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	struct mem *m = state;

	(void)err;
	if (image)
		memcpy(image, m->img + i * 3 * SIDE * SIDE, 3 * SIDE * SIDE * sizeof(float));
	*label = m->label[i];
	return IAP_OK;
}

static const struct iap_dataset_ops mem_ops = {
	.size = sizeof(struct iap_dataset_ops), .count = mem_count, .info = mem_info, .load = mem_load,
};

static void mem_make(struct mem *m, struct iap_dataset *ds)
{
	struct iap_rng r;

	iap_rng_seed(&r, 3);
	m->img = malloc(sizeof(float) * SAMPLES * 3 * SIDE * SIDE);
	assert_non_null(m->img);
	tu_fill_uniform(m->img, (size_t)SAMPLES * 3 * SIDE * SIDE, &r, -1, 1);
	for (int i = 0; i < SAMPLES; i++)
		m->label[i] = i % CLASSES;
	memset(ds, 0, sizeof(*ds));
	ds->ops = &mem_ops;
	ds->state = m;
	ds->split = IAP_SPLIT_TEST;
	mem_info(m, &ds->info, NULL);
	ds->count = SAMPLES;
}

static struct iap_graph *model(int k)
{
	struct iap_cnn_cfg vc = { .depth = 11, .num_classes = CLASSES, .in_channels = 3, .image_size = SIDE,
				  .width = 0.25, .dropout = 0.5f };
	struct iap_cnn_cfg rc = { .depth = 18, .num_classes = CLASSES, .in_channels = 3, .image_size = SIDE,
				  .width = 0.25 };
	struct iap_vit_cfg tc = { .patch_size = 8, .image_size = SIDE, .in_channels = 3, .num_layers = 2,
				  .num_heads = 4, .hidden_dim = 32, .mlp_dim = 64, .num_classes = CLASSES };
	struct iap_error err = { 0, "" };
	struct iap_graph *g = NULL;

	if ((k == 0 ? iap_vgg_build(&vc, &g, &err) : k == 1 ? iap_resnet_build(&rc, &g, &err)
							    : iap_vit_build(&tc, &g, &err)))
		fail_msg("%s", err.msg);
	/* Uniform weights large enough that the logits differ between samples (torchvision's init gives ~0 here). */
	tu_randomize_params(g, 9, k == 0 ? 0.15f : k == 1 ? 0.4f : 0.3f);
	return g;
}

/* Every group loses a random half of its units (at least one kept); coupled groups draw their own. */
static void mask_half(struct iap_graph *g, uint64_t seed)
{
	struct iap_rng r;
	struct iap_error err = { 0, "" };

	iap_rng_seed(&r, seed);
	for (int gi = 0; gi < g->n_groups; gi++) {
		const int n = g->groups[gi].n_units;
		uint8_t *keep = malloc((size_t)n);

		assert_non_null(keep);
		for (int u = 0; u < n; u++)
			keep[u] = iap_rng_uniform(&r) < 0.5;
		keep[iap_rng_below(&r, (uint64_t)n)] = 1;
		assert_int_equal(iap_graph_set_mask(g, gi, keep, &err), IAP_OK);
		free(keep);
	}
}

static void expect_same_metrics(const char *what, const struct iap_metrics *a, const struct iap_metrics *b)
{
	printf("# %s: accuracy %.4f / %.4f, loss %.9g / %.9g, ece %.6g / %.6g\n", what, a->accuracy,
	       b->accuracy, a->loss, b->loss, a->ece, b->ece);
	/* The logits must carry information, or the comparison proves nothing. */
	assert_true(fabs(a->loss - log((double)CLASSES)) > 1e-3);
	assert_true(a->accuracy == b->accuracy);
	assert_true(a->macro_f1 == b->macro_f1);
	assert_true(fabs(a->loss - b->loss) <= 1e-5 * (fabs(a->loss) + 1e-6));
	assert_true(fabs(a->ece - b->ece) <= 1e-5);
	assert_int_equal(a->auroc_ok, b->auroc_ok);
	/* AUROC ranks probabilities: a rounding-level change may swap one near-tied pair (1/(10·30) here). */
	if (a->auroc_ok) {
		printf("# %s: auroc %.6f / %.6f\n", what, a->auroc, b->auroc);
		assert_true(fabs(a->auroc - b->auroc) <= 0.01);
	}
	for (int i = 0; i < a->n_classes * a->n_classes; i++)
		assert_true(a->confusion[i] == b->confusion[i]);
}

static void test_compacted_matches_masked(void **state)
{
	static const char *const names[] = { "vgg11", "resnet18", "vit" };
	struct mem mem;
	struct iap_dataset ds;

	(void)state;
	mem_make(&mem, &ds);
	for (int k = 0; k < 3; k++) {
		struct iap_graph *g = model(k), *small = NULL;
		struct iap_metrics dense = { 0 }, masked = { 0 }, pruned = { 0 };
		struct iap_error err = { 0, "" };

		/* Nothing masked: the graph itself runs, nothing handed out. */
		assert_int_equal(iap_evaluate_pruned(g, &ds, 16, &dense, &small, &err), IAP_OK);
		assert_null(small);
		mask_half(g, 17 + (uint64_t)k);
		assert_int_equal(iap_evaluate(g, &ds, 16, &masked, &err), IAP_OK);
		assert_int_equal(iap_evaluate_pruned(g, &ds, 16, &pruned, &small, &err), IAP_OK);
		/* It ran the compacted graph: fewer MACs, no masks; g itself keeps its masks. */
		assert_non_null(small);
		printf("# %s: compacted graph has %.1f%% of the MACs\n", names[k],
		       100.0 * (double)iap_graph_macs(small) / (double)iap_graph_macs(g));
		assert_true(iap_graph_macs(small) < iap_graph_macs(g));
		for (int gi = 0; gi < small->n_groups; gi++)
			assert_null(small->groups[gi].mask);
		assert_non_null(g->groups[0].mask);
		expect_same_metrics(names[k], &masked, &pruned);
		iap_metrics_free(&dense);
		iap_metrics_free(&masked);
		iap_metrics_free(&pruned);
		iap_graph_free(small);
		iap_graph_free(g);
	}
	free(mem.img);
}

static void test_refused_compaction_runs_masked(void **state)
{
	struct mem mem;
	struct iap_dataset ds;
	struct iap_graph *g, *small = (struct iap_graph *)&small;
	struct iap_metrics masked = { 0 }, pruned = { 0 };
	struct iap_error err = { 0, "" };
	uint8_t *none;

	(void)state;
	mem_make(&mem, &ds);
	g = model(0);
	mask_half(g, 5);
	/* A group that loses every unit cannot be compacted; the mask still evaluates. */
	none = calloc((size_t)g->groups[1].n_units, 1);
	assert_non_null(none);
	assert_int_equal(iap_graph_set_mask(g, 1, none, &err), IAP_OK);
	assert_int_equal(iap_evaluate(g, &ds, 16, &masked, &err), IAP_OK);
	assert_int_equal(iap_evaluate_pruned(g, &ds, 16, &pruned, &small, &err), IAP_OK);
	assert_null(small);
	expect_same_metrics("vgg11, one group wholly pruned", &masked, &pruned);
	iap_metrics_free(&masked);
	iap_metrics_free(&pruned);
	free(none);
	iap_graph_free(g);
	free(mem.img);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_compacted_matches_masked),
		cmocka_unit_test(test_refused_compaction_runs_masked),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
