/*
 * The pruning sweep's evaluation, two ways (issue 14): every op split over
 * the threads, or a slice of the batch per thread (host/eval/predict.c).
 *
 * The default pipeline's model and test split, shaped as it runs them: VGG-11
 * with BatchNorm at width 1/8 on 1 × 32² images, 2 classes, 156 test images,
 * evaluation batch 128. For each rate (0, 0.15, …, 0.70) the units are masked
 * by seeded random scores per group, the masks compacted as the sweep does
 * (iap_evaluate_pruned), and the test split predicted: medians of --reps over
 * the rates, per way and thread count, interleaved rep by rep so the load of a
 * shared machine falls on both. Checks that both ways give the same bits.
 *
 *   bench/bench_eval [--threads 1,2] [--reps 7] [--batch 128] [--size 32] [--width 0.125]
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iaprune/blas.h>
#include <iaprune/compact.h>
#include <iaprune/graph.h>
#include <iaprune/rng.h>
#include <iaprune/threads.h>

#include "../host/eval/predict_split.h"
#include "arch.h"

#define MAX_T 16

struct mem {
	int n, side;
	float *img;
};

static int64_t mem_count(void *state)
{
	return ((struct mem *)state)->n;
}

static int mem_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	const struct mem *m = state;
	const size_t per = (size_t)m->side * m->side;

	(void)err;
	memcpy(image, m->img + i * per, per * sizeof(float));
	*label = (int)(i % 2);
	return IAP_OK;
}

static const struct iap_dataset_ops mem_ops = { .size = sizeof(struct iap_dataset_ops), .count = mem_count,
						.load = mem_load };

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Random scores per group, the lowest `rate` of each masked (at least one unit kept). */
static void mask_rate(struct iap_graph *g, double rate, uint64_t seed)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	for (int gi = 0; gi < g->n_groups; gi++) {
		const int nu = g->groups[gi].n_units;
		int drop = (int)(rate * nu);
		uint8_t *keep = malloc((size_t)nu);

		if (drop >= nu)
			drop = nu - 1;
		memset(keep, 1, (size_t)nu);
		for (int k = 0; k < drop;) {
			int u = (int)(iap_rng_next(&r) % (uint64_t)nu);

			if (keep[u]) {
				keep[u] = 0;
				k++;
			}
		}
		iap_graph_set_mask(g, gi, rate > 0 ? keep : NULL, NULL);
		free(keep);
	}
}

int main(int argc, char **argv)
{
	static const double rates[] = { 0, 0.15, 0.30, 0.50, 0.70 };
	enum { NR = sizeof(rates) / sizeof(rates[0]) };
	int threads[MAX_T] = { 1, 2 }, nt = 2, reps = 7, batch = 128, side = 32, count = 156;
	double width = 0.125;
	struct iap_error err = { 0, "" };
	struct iap_graph *g = NULL, *cg[NR];
	struct mem m;
	struct iap_dataset ds = { 0 };
	float *ref, *probs;
	int *labels, bad = 0, bad_any = 0;

	iap_blas_reexec(argv);
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
			char *p = argv[++i];

			for (nt = 0; *p && nt < MAX_T; nt++) {
				threads[nt] = (int)strtol(p, &p, 10);
				if (*p == ',')
					p++;
			}
		} else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
			reps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--batch") && i + 1 < argc) {
			batch = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--size") && i + 1 < argc) {
			side = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--width") && i + 1 < argc) {
			width = atof(argv[++i]);
		} else if (!strcmp(argv[i], "--count") && i + 1 < argc) {
			count = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: %s [--threads 1,2] [--reps N] [--batch N] [--size N] [--width W] [--count N]\n",
				argv[0]);
			return 2;
		}
	}
	struct iap_cnn_cfg vc = { .depth = 11, .batch_norm = 1, .num_classes = 2, .in_channels = 1,
				  .image_size = side, .width = width, .dropout = 0.5f };
	if (iap_vgg_build(&vc, &g, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	iap_vgg_init(g, 5);
	m.n = count;
	m.side = side;
	m.img = malloc(sizeof(float) * (size_t)count * side * side);
	{
		struct iap_rng r;

		iap_rng_seed(&r, 9);
		for (size_t i = 0; i < (size_t)count * side * side; i++)
			m.img[i] = (float)(iap_rng_uniform(&r) * 2 - 1);
	}
	ds.ops = &mem_ops;
	ds.state = &m;
	ds.count = count;
	ds.info = (struct iap_dataset_info){ .n_classes = 2, .in_ndim = 3, .in_shape = { 1, side, side } };
	/* The sweep's graphs: one compacted model per rate (the dense one at rate 0). */
	for (int k = 0; k < NR; k++) {
		mask_rate(g, rates[k], 100 + (uint64_t)k);
		if (rates[k] == 0)
			cg[k] = NULL;
		else if (iap_graph_compact(g, 0, &cg[k], &err)) {
			fprintf(stderr, "compact: %s\n", err.msg);
			return 1;
		}
	}
	mask_rate(g, 0, 0);
	probs = malloc(sizeof(float) * (size_t)count * 2);
	ref = malloc(sizeof(float) * (size_t)count * 2 * NR);
	labels = malloc(sizeof(int) * (size_t)count);
	printf("VGG-11-BN width %g, %d test images of 1x%dx%d, batch %d, rates 0..0.70 compacted; %d reps, ms per sweep of %d rates\n",
	       width, count, side, side, batch, reps, NR);
	printf("%-8s %12s %12s %8s\n", "threads", "ops split", "batch slices", "ops/slc");
	iap_threads_set(1);
	for (int k = 0; k < NR; k++)
		iap_predict_split(cg[k] ? cg[k] : g, &ds, batch, IAP_EVAL_SPLIT_OPS, ref + (size_t)k * count * 2, labels,
				  &err);
	for (int ti = 0; ti < nt; ti++) {
		double *t = malloc(sizeof(double) * 2 * reps);

		iap_threads_set(threads[ti]);
		for (int r = 0; r < reps; r++)
			for (int how = 0; how < 2; how++) {
				double t0 = now_ms();

				for (int k = 0; k < NR; k++) {
					if (iap_predict_split(cg[k] ? cg[k] : g, &ds, batch,
							      how ? IAP_EVAL_SPLIT_BATCH : IAP_EVAL_SPLIT_OPS, probs, labels,
							      &err)) {
						fprintf(stderr, "predict: %s\n", err.msg);
						return 1;
					}
					if (memcmp(probs, ref + (size_t)k * count * 2, sizeof(float) * (size_t)count * 2)) {
						if (!(bad & (1 << how)))
							fprintf(stderr, "DIFFERENT BITS: rate %.2f, %s, %d threads\n", rates[k],
								how ? "slices" : "ops split", threads[ti]);
						bad |= 1 << how;
					}
				}
				t[how * reps + r] = now_ms() - t0;
			}
		qsort(t, (size_t)reps, sizeof(double), cmp_d);
		qsort(t + reps, (size_t)reps, sizeof(double), cmp_d);
		printf("%-8d %12.2f %12.2f %8.2f\n", threads[ti], t[reps / 2], t[reps + reps / 2],
		       t[reps / 2] / t[reps + reps / 2]);
		free(t);
		bad_any |= bad;
		bad = 0;
	}
	printf("bits: %s\n", bad_any ? "DIFFERENT" : "identical in every way and thread count (against 1 thread, ops split)");
	for (int k = 0; k < NR; k++)
		iap_graph_free(cg[k]);
	iap_graph_free(g);
	free(m.img);
	free(probs);
	free(ref);
	free(labels);
	return bad_any != 0;
}
