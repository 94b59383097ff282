/*
 * The sampler plugins (random, confidence, clustering) loaded from the build
 * tree, run on small in-memory datasets whose right answers are known:
 * k per class, distinct, within class, in class order; determinism for a
 * seed; confidence's top-k on a linear model whose outputs are computed by
 * hand; clustering's pick of the sample at the centre of each of three tight
 * blobs per class; and short classes (all taken, reported).
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "testutil.h"

#ifndef IAP_SAMPLER_PLUGIN_DIR
#error "IAP_SAMPLER_PLUGIN_DIR must name the build tree's plugins/samplers/.libs"
#endif

static struct iap_registry *reg;

/* ---- an in-memory dataset ---------------------------------------------------- */

#define MAX_SAMPLES 256
#define MAX_DIM 4

struct mem_data {
	int n, dim, n_classes;
	float x[MAX_SAMPLES][MAX_DIM];
	int y[MAX_SAMPLES];
};

static int64_t mem_count(void *state)
{
	return ((struct mem_data *)state)->n;
}

static int mem_info(void *state, struct iap_dataset_info *info, struct iap_error *err)
{
	struct mem_data *d = state;

	(void)err;
	memset(info, 0, sizeof(*info));
	info->n_classes = d->n_classes;
	info->in_ndim = 1;
	info->in_shape[0] = d->dim;
	return IAP_OK;
}

static int mem_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	struct mem_data *d = state;

	if (i < 0 || i >= d->n)
		return iap_error_set(err, IAP_EINVAL, "sample %lld out of range", (long long)i);
	if (image)
		memcpy(image, d->x[i], (size_t)d->dim * sizeof(float));
	*label = d->y[i];
	return IAP_OK;
}

static const struct iap_dataset_ops mem_ops = {
	.size = sizeof(struct iap_dataset_ops),
	.count = mem_count,
	.info = mem_info,
	.load = mem_load,
};

static struct iap_dataset mem_dataset(struct mem_data *d)
{
	struct iap_dataset ds = { .ops = &mem_ops, .state = d, .split = IAP_SPLIT_TRAIN, .count = d->n };

	mem_info(d, &ds.info, NULL);
	return ds;
}

/* n samples of dim 1, x = index, class labels i % n_classes, except that sizes[] (if given) cap each class. */
static void fill_by_sizes(struct mem_data *d, int n_classes, const int *sizes)
{
	int left[8];

	memset(d, 0, sizeof(*d));
	d->dim = 1;
	d->n_classes = n_classes;
	memcpy(left, sizes, (size_t)n_classes * sizeof(int));
	/* Interleave the classes so that class membership is not contiguous. */
	for (int more = 1; more;) {
		more = 0;
		for (int c = 0; c < n_classes; c++) {
			if (!left[c])
				continue;
			left[c]--;
			d->x[d->n][0] = (float)d->n;
			d->y[d->n++] = c;
			more = 1;
		}
	}
}

/* ---- running a sampler --------------------------------------------------------- */

static int run(const char *name, const char *const *kv, const struct iap_dataset *ds, struct iap_graph *g,
	       uint64_t seed, int k, int64_t *out, int64_t *n, struct iap_error *err)
{
	const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_SAMPLER, name);
	struct iap_opts *o;
	struct iap_rng rng;
	int rc;

	assert_non_null(p);
	assert_int_equal(iap_opts_defaults(p->desc->options, &o, err), IAP_OK);
	for (int i = 0; kv && kv[i]; i += 2)
		assert_int_equal(iap_opts_set(o, "sampler", kv[i], kv[i + 1], err), IAP_OK);
	iap_rng_seed(&rng, seed);
	/* Poison the message: a successful select must leave it empty or a warning. */
	snprintf(err->msg, sizeof(err->msg), "stale");
	err->code = IAP_EIO;
	rc = p->desc->ops.sampler->select(o, ds, g, &rng, k, out, n, err);
	iap_opts_free(o);
	return rc;
}

/*
 * The guarantees every sampler gives: class 0's picks, then class 1's, ...,
 * ascending and distinct within a class, each really of its class, and
 * expect[c] of class c.
 */
static void check_picks(const struct mem_data *d, const int64_t *out, int64_t n, const int *expect)
{
	int64_t pos = 0;

	for (int c = 0; c < d->n_classes; c++) {
		for (int j = 0; j < expect[c]; j++, pos++) {
			assert_true(pos < n);
			assert_true(out[pos] >= 0 && out[pos] < d->n);
			assert_int_equal(d->y[out[pos]], c);
			if (j)
				assert_true(out[pos] > out[pos - 1]);
		}
	}
	assert_int_equal(n, pos);
}

static int setup(void **state)
{
	static const char *const names[] = { "random", "confidence", "clustering" };

	(void)state;
	reg = tu_registry_load(IAP_SAMPLER_PLUGIN_DIR, names, 3);
	return reg ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	iap_registry_free(reg);
	return 0;
}

/* ---- random ------------------------------------------------------------------------ */

static void test_random_k_per_class(void **state)
{
	static const int sizes[] = { 20, 15, 12 }, expect[] = { 5, 5, 5 };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	int64_t out[64], n;

	(void)state;
	fill_by_sizes(&d, 3, sizes);
	ds = mem_dataset(&d);
	assert_int_equal(run("random", NULL, &ds, NULL, 7, 5, out, &n, &err), IAP_OK);
	check_picks(&d, out, n, expect);
	assert_int_equal(err.code, IAP_OK);
	assert_string_equal(err.msg, "");
}

static void test_random_seeded(void **state)
{
	static const int sizes[] = { 20, 15, 12 };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	int64_t a[64], b[64], c[64], na, nb, nc;

	(void)state;
	fill_by_sizes(&d, 3, sizes);
	ds = mem_dataset(&d);
	assert_int_equal(run("random", NULL, &ds, NULL, 42, 5, a, &na, &err), IAP_OK);
	assert_int_equal(run("random", NULL, &ds, NULL, 42, 5, b, &nb, &err), IAP_OK);
	assert_int_equal(run("random", NULL, &ds, NULL, 43, 5, c, &nc, &err), IAP_OK);
	assert_int_equal(na, 15);
	assert_int_equal(nb, 15);
	assert_int_equal(nc, 15);
	assert_memory_equal(a, b, sizeof(int64_t) * 15);
	assert_memory_not_equal(a, c, sizeof(int64_t) * 15);
}

/*
 * Uniform within a class: over 3000 seeds, each of a class's 10 samples is
 * picked (k = 3) about 900 times; the binomial SD is about 25, so [800, 1000]
 * fails only for a biased sampler (the seeds are fixed, so never by chance).
 */
static void test_random_uniform(void **state)
{
	static const int sizes[] = { 10 };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	int hits[10] = { 0 };
	int64_t out[3], n;

	(void)state;
	fill_by_sizes(&d, 1, sizes);
	ds = mem_dataset(&d);
	for (uint64_t s = 0; s < 3000; s++) {
		assert_int_equal(run("random", NULL, &ds, NULL, s, 3, out, &n, &err), IAP_OK);
		assert_int_equal(n, 3);
		for (int j = 0; j < 3; j++)
			hits[out[j]]++;
	}
	for (int i = 0; i < 10; i++) {
		assert_in_range(hits[i], 800, 1000);
	}
}

/* ---- short classes (every sampler) ------------------------------------------------------ */

static void test_short_classes_take_all(void **state)
{
	static const int sizes[] = { 20, 3, 0 }, expect[] = { 5, 3, 0 };
	static const char *const pixels[] = { "features", "pixels", NULL };
	static const char *const names[] = { "random", "confidence", "clustering" };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	struct iap_graph *g;
	int64_t out[64], n;
	int fc;

	(void)state;
	fill_by_sizes(&d, 3, sizes);
	ds = mem_dataset(&d);
	/* A model for confidence: 1 input, 3 logits (all zero weights: every class 1/3). */
	g = iap_graph_new(1, (const int64_t[]){ 1 }, &err);
	assert_non_null(g);
	fc = iap_linear(g, "fc", IAP_GRAPH_INPUT, 3, 1);
	assert_true(fc >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	for (int s = 0; s < 3; s++) {
		assert_int_equal(run(names[s], s == 2 ? pixels : NULL, &ds, g, 3, 5, out, &n, &err), IAP_OK);
		check_picks(&d, out, n, expect);
		/* Class 1 has 3 samples: all of them. */
		assert_int_equal(out[5], 1);
		assert_int_equal(out[6], 3);
		assert_int_equal(out[7], 5);
		assert_int_equal(err.code, IAP_OK);
		assert_non_null(strstr(err.msg, "class 1 (3)"));
		assert_non_null(strstr(err.msg, "class 2 (0)"));
		assert_null(strstr(err.msg, "class 0"));
		assert_non_null(strstr(err.msg, names[s]));
	}
	iap_graph_free(g);
}

/* ---- confidence ---------------------------------------------------------------------------- */

/*
 * Logits (x, -x): p(class 0) = σ(2x), p(class 1) = σ(-2x). So by the true
 * class, class 0 ranks by largest x and class 1 by smallest x; by the
 * predicted class both rank by largest |x|.
 */
static struct iap_graph *sign_model(void)
{
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(1, (const int64_t[]){ 1 }, &err);
	struct iap_param *w, *b;

	assert_non_null(g);
	assert_true(iap_linear(g, "fc", IAP_GRAPH_INPUT, 2, 1) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	w = iap_graph_find_param(g, "fc.weight");
	b = iap_graph_find_param(g, "fc.bias");
	assert_non_null(w);
	assert_non_null(b);
	w->value.data[0] = 1;
	w->value.data[1] = -1;
	b->value.data[0] = b->value.data[1] = 0;
	return g;
}

static const float conf_x[] = {
	/* class 0 */ 0.1f, 2.0f, -1.0f, 3.0f, 0.5f, -4.0f, 1.5f,
	/* class 1 */ -0.2f, 2.5f, -3.0f, 0.3f, -0.5f, 5.0f,
};
static const int conf_y[] = { 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1 };

static void conf_data(struct mem_data *d)
{
	memset(d, 0, sizeof(*d));
	d->dim = 1;
	d->n_classes = 2;
	d->n = (int)(sizeof(conf_x) / sizeof(conf_x[0]));
	for (int i = 0; i < d->n; i++) {
		d->x[i][0] = conf_x[i];
		d->y[i] = conf_y[i];
	}
}

static void test_confidence_top_k_true_class(void **state)
{
	static const char *const batch3[] = { "batch", "3", NULL };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	struct iap_graph *g = sign_model();
	int64_t out[8], n;

	(void)state;
	conf_data(&d);
	ds = mem_dataset(&d);
	iap_graph_set_training(g, 1);
	/* Batches of 3 over 13 samples: the padded last batch must not matter. */
	assert_int_equal(run("confidence", batch3, &ds, g, 0, 2, out, &n, &err), IAP_OK);
	assert_int_equal(n, 4);
	/* Class 0: x = 3.0 (index 3), 2.0 (index 1). Class 1: x = -3.0 (9), -0.5 (11). */
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 3);
	assert_int_equal(out[2], 9);
	assert_int_equal(out[3], 11);
	assert_string_equal(err.msg, "");
	/* The caller's training mode is restored. */
	assert_int_equal(g->training, 1);
	iap_graph_free(g);
}

static void test_confidence_predicted_and_correct_only(void **state)
{
	static const char *const pred[] = { "by", "predicted", NULL };
	static const char *const correct[] = { "correct_only", "true", NULL };
	static const char *const both[] = { "by", "predicted", "correct_only", "true", NULL };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	struct iap_graph *g = sign_model();
	int64_t out[16], n;

	(void)state;
	conf_data(&d);
	ds = mem_dataset(&d);
	/* Predicted-class probability ranks by |x|: class 0 -4.0 (5), 3.0 (3); class 1 5.0 (12), -3.0 (9). */
	assert_int_equal(run("confidence", pred, &ds, g, 0, 2, out, &n, &err), IAP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(out[0], 3);
	assert_int_equal(out[1], 5);
	assert_int_equal(out[2], 9);
	assert_int_equal(out[3], 12);
	/* Correct only, by predicted: index 5 (x = -4 in class 0) and 12 (x = 5 in class 1) are wrong. */
	assert_int_equal(run("confidence", both, &ds, g, 0, 2, out, &n, &err), IAP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 3);
	assert_int_equal(out[2], 9);
	assert_int_equal(out[3], 11);
	/* k = 5, correct only: class 0 has 5 correct (x > 0), class 1 only 3 (x < 0): short. */
	assert_int_equal(run("confidence", correct, &ds, g, 0, 5, out, &n, &err), IAP_OK);
	assert_int_equal(n, 8);
	assert_int_equal(out[0], 0);
	assert_int_equal(out[1], 1);
	assert_int_equal(out[2], 3);
	assert_int_equal(out[3], 4);
	assert_int_equal(out[4], 6);
	assert_int_equal(out[5], 7);
	assert_int_equal(out[6], 9);
	assert_int_equal(out[7], 11);
	assert_non_null(strstr(err.msg, "class 1 (3)"));
	assert_null(strstr(err.msg, "class 0"));
	iap_graph_free(g);
}

static void test_confidence_ties_lower_index(void **state)
{
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	struct iap_graph *g = sign_model();
	int64_t out[4], n;

	(void)state;
	memset(&d, 0, sizeof(d));
	d.dim = 1;
	d.n_classes = 2;
	d.n = 7;
	/* Class 0: three samples at x = 1 (indices 1, 2, 4), one at 0 (index 0). */
	d.x[0][0] = 0;
	d.x[1][0] = d.x[2][0] = d.x[4][0] = 1;
	/* Class 1: x = -1 (index 3), then a tie at x = 1 (indices 5, 6). */
	d.x[3][0] = -1;
	d.x[5][0] = d.x[6][0] = 1;
	d.y[3] = d.y[5] = d.y[6] = 1;
	ds = mem_dataset(&d);
	assert_int_equal(run("confidence", NULL, &ds, g, 0, 2, out, &n, &err), IAP_OK);
	assert_int_equal(n, 4);
	assert_int_equal(out[0], 1);
	assert_int_equal(out[1], 2);
	/* Class 1: x = -1 (index 3), then index 5 wins the tie with 6. */
	assert_int_equal(out[2], 3);
	assert_int_equal(out[3], 5);
	iap_graph_free(g);
}

static void test_confidence_needs_model(void **state)
{
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	int64_t out[4], n;

	(void)state;
	conf_data(&d);
	ds = mem_dataset(&d);
	assert_int_equal(run("confidence", NULL, &ds, NULL, 0, 2, out, &n, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "confidence"));
}

/* ---- clustering ------------------------------------------------------------------------------ */

/*
 * Two classes, three tight blobs each, 7 points per blob: the centre and
 * centre ± 0.1 on each axis ± (0.05, 0.05), so each blob's mean is its
 * centre point exactly and that point is the nearest to it. Samples are
 * spread over the indices by a fixed permutation. A third coordinate z
 * (when dim is 3) is large and mixes the blobs, so clustering the raw
 * pixels groups by z instead. centre[c][b] receives the centre's index.
 */
static void blob_data(struct mem_data *d, int dim, int64_t centre[2][3])
{
	static const float off[7][2] = {
		{ 0, 0 }, { 0.1f, 0 }, { -0.1f, 0 }, { 0, 0.1f }, { 0, -0.1f }, { 0.05f, 0.05f }, { -0.05f, -0.05f },
	};
	static const float ctr[2][3][2] = {
		{ { 1, 1 }, { 11, 1 }, { 1, 11 } },
		{ { 11, 11 }, { 21, 1 }, { 1, 21 } },
	};

	memset(d, 0, sizeof(*d));
	d->dim = dim;
	d->n_classes = 2;
	d->n = 42;
	for (int i = 0; i < 42; i++) {
		int pos = (i * 17) % 42, c = i / 21, b = (i / 7) % 3, j = i % 7;

		d->x[pos][0] = ctr[c][b][0] + off[j][0];
		d->x[pos][1] = ctr[c][b][1] + off[j][1];
		if (dim == 3)
			d->x[pos][2] = 100.0f * (float)((j + b) % 3);
		d->y[pos] = c;
		if (j == 0)
			centre[c][b] = pos;
	}
}

/* The three centres of class c, ascending (the sampler's within-class order). */
static void sorted_centres(int64_t centre[2][3], int c, int64_t *v)
{
	memcpy(v, centre[c], 3 * sizeof(int64_t));
	for (int i = 0; i < 3; i++)
		for (int j = i + 1; j < 3; j++)
			if (v[j] < v[i]) {
				int64_t t = v[i];

				v[i] = v[j];
				v[j] = t;
			}
}

static void test_clustering_pixels_picks_centres(void **state)
{
	static const char *const pixels[] = { "features", "pixels", NULL };
	static const int expect[] = { 3, 3 };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	int64_t centre[2][3], want[3], out[8], again[8], n, n2;

	(void)state;
	blob_data(&d, 2, centre);
	ds = mem_dataset(&d);
	assert_int_equal(run("clustering", pixels, &ds, NULL, 11, 3, out, &n, &err), IAP_OK);
	check_picks(&d, out, n, expect);
	for (int c = 0; c < 2; c++) {
		sorted_centres(centre, c, want);
		assert_memory_equal(out + 3 * c, want, sizeof(want));
	}
	assert_string_equal(err.msg, "");
	/* Deterministic for a seed. */
	assert_int_equal(run("clustering", pixels, &ds, NULL, 11, 3, again, &n2, &err), IAP_OK);
	assert_int_equal(n2, n);
	assert_memory_equal(out, again, sizeof(int64_t) * 6);
}

/*
 * Penultimate features: proj keeps (x, y) and drops z, relu leaves the
 * positive coordinates alone, head is the classifier. In feature space the
 * blobs are as above, so the centres are picked; in pixel space z dominates
 * and they are not.
 */
static void test_clustering_penultimate(void **state)
{
	static const char *const pixels[] = { "features", "pixels", NULL };
	static const char *const small_batch[] = { "batch", "4", "restarts", "3", NULL };
	static const int expect[] = { 3, 3 };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	struct iap_graph *g;
	struct iap_param *w;
	int64_t centre[2][3], want[6], out[8], again[8], n, n2;
	int proj, act;

	(void)state;
	blob_data(&d, 3, centre);
	ds = mem_dataset(&d);
	g = iap_graph_new(1, (const int64_t[]){ 3 }, &err);
	assert_non_null(g);
	proj = iap_linear(g, "proj", IAP_GRAPH_INPUT, 2, 0);
	act = iap_relu(g, "act", proj);
	assert_true(iap_linear(g, "head", act, 2, 1) >= 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	w = iap_graph_find_param(g, "proj.weight");
	assert_non_null(w);
	memset(w->value.data, 0, 6 * sizeof(float));
	w->value.data[0] = 1; /* row 0: x */
	w->value.data[4] = 1; /* row 1: y */

	sorted_centres(centre, 0, want);
	sorted_centres(centre, 1, want + 3);
	assert_int_equal(run("clustering", small_batch, &ds, g, 5, 3, out, &n, &err), IAP_OK);
	check_picks(&d, out, n, expect);
	assert_memory_equal(out, want, sizeof(want));
	assert_int_equal(run("clustering", small_batch, &ds, g, 5, 3, again, &n2, &err), IAP_OK);
	assert_memory_equal(out, again, sizeof(want));

	/* The same data clustered on pixels picks other samples (z decides there). */
	assert_int_equal(run("clustering", pixels, &ds, g, 5, 3, out, &n, &err), IAP_OK);
	check_picks(&d, out, n, expect);
	assert_memory_not_equal(out, want, sizeof(want));
	iap_graph_free(g);
}

static void test_clustering_exactly_k(void **state)
{
	static const char *const pixels[] = { "features", "pixels", NULL };
	static const int sizes[] = { 4, 9 }, expect[] = { 4, 4 };
	struct mem_data d;
	struct iap_dataset ds;
	struct iap_error err;
	int64_t out[8], n;

	(void)state;
	fill_by_sizes(&d, 2, sizes);
	ds = mem_dataset(&d);
	/* Class 0 has exactly k: all of it, and no warning. Class 1 (1-D points 1, 3, 5, ...): 4 distinct. */
	assert_int_equal(run("clustering", pixels, &ds, NULL, 1, 4, out, &n, &err), IAP_OK);
	check_picks(&d, out, n, expect);
	assert_string_equal(err.msg, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_k_per_class),
		cmocka_unit_test(test_random_seeded),
		cmocka_unit_test(test_random_uniform),
		cmocka_unit_test(test_short_classes_take_all),
		cmocka_unit_test(test_confidence_top_k_true_class),
		cmocka_unit_test(test_confidence_predicted_and_correct_only),
		cmocka_unit_test(test_confidence_ties_lower_index),
		cmocka_unit_test(test_confidence_needs_model),
		cmocka_unit_test(test_clustering_pixels_picks_centres),
		cmocka_unit_test(test_clustering_penultimate),
		cmocka_unit_test(test_clustering_exactly_k),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
