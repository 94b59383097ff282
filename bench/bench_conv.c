/*
 * bench_conv — how close iap_conv2d_forward_raw gets to the machine's GEMM.
 *
 * In one run: (1) the sgemm peak of this machine and thread count (best
 * GFLOP/s over large square and conv-shaped products, best of a few
 * repetitions), then (2) every distinct VGG19 conv layer shape at 224x224
 * input, batch 1 and batch 8, through iap_conv2d_forward_raw (Winograd where
 * it applies, im2col otherwise) and, alternating with it, through the im2col
 * kernel alone: time, GFLOP/s and fraction of that peak for both. FLOPs =
 * 2 * MACs of the direct convolution (the bias add is not counted), so a
 * Winograd layer's GFLOP/s are effective ones and may exceed the peak.
 * The table also goes to a JSON file (argv[1], default bench/results.json).
 *
 * Threads: the engine's (IAPRUNE_THREADS, else every CPU; <iaprune/threads.h>);
 * the peak is iap_sgemm on them, as the convs run. OPENBLAS_CORETYPE is
 * respected as found.
 *
 * Not a test: timings depend on the machine and its load.
 */
#include "config.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iaprune/blas.h>
#include <iaprune/threads.h>
#include <iaprune/ops.h>
#include <iaprune/tensor.h>

#include "../core/ops/winograd.h"

/* Timed repetitions per measurement: best-of, stop early past the budget. */
#define GEMM_REPS 4
#define CONV_MAX_REPS 3
#define CONV_BUDGET_S 2.0

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Deterministic fill in [-1, 1) (the values only need to be ordinary floats). */
static void fill(float *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
	}
}

static float *alloc_filled(size_t n, uint64_t seed)
{
	float *p = iap_alloc_floats(n ? n : 1);

	if (!p) {
		fprintf(stderr, "bench_conv: cannot allocate %zu floats\n", n);
		exit(1);
	}
	fill(p, n, seed);
	return p;
}

struct gemm_shape {
	const char *what;
	int m, n, k;
};

/* Best GFLOP/s of C[m][n] = A[m][k] B[k][n] over GEMM_REPS runs (after one warm-up). */
static double gemm_gflops(const struct gemm_shape *s)
{
	float *a = alloc_filled((size_t)s->m * s->k, 1);
	float *b = alloc_filled((size_t)s->k * s->n, 2);
	float *c = alloc_filled((size_t)s->m * s->n, 3);
	double best = INFINITY;

	for (int r = 0; r <= GEMM_REPS; r++) {
		double t0 = now_s(), dt;

		iap_sgemm(0, 0, s->m, s->n, s->k, 1.0f, a, s->k, b, s->n, 0.0f, c, s->n);
		dt = now_s() - t0;
		if (r > 0 && dt < best)
			best = dt;
	}
	iap_free(a);
	iap_free(b);
	iap_free(c);
	return 2.0 * s->m * s->n * (double)s->k / best * 1e-9;
}

/* Best GFLOP/s over all shapes; *what names the shape that reached it. */
static double measure_peak(const struct gemm_shape *shapes, size_t n, int verbose,
			   const char **what)
{
	double peak = 0.0;

	if (verbose)
		printf("\nsgemm peak, iap_sgemm on the engine's threads (best of %d):\n", GEMM_REPS);
	for (size_t i = 0; i < n; i++) {
		double gf = gemm_gflops(&shapes[i]);

		if (verbose)
			printf("  %-26s %8.1f GFLOP/s\n", shapes[i].what, gf);
		if (gf > peak) {
			peak = gf;
			*what = shapes[i].what;
		}
	}
	if (verbose)
		printf("  peak                       %8.1f GFLOP/s (%s)\n", peak, *what);
	return peak;
}

struct vgg_layer {
	const char *name;     /* first VGG19 layer with this shape */
	int in_ch, out_ch, hw;
	int count;            /* how many VGG19 conv layers have this shape */
};

/* The distinct 3x3, stride 1, pad 1 conv shapes of VGG19 at 224x224. */
static const struct vgg_layer vgg19[] = {
	{ "conv1_1", 3, 64, 224, 1 },
	{ "conv1_2", 64, 64, 224, 1 },
	{ "conv2_1", 64, 128, 112, 1 },
	{ "conv2_2", 128, 128, 112, 1 },
	{ "conv3_1", 128, 256, 56, 1 },
	{ "conv3_2", 256, 256, 56, 3 },
	{ "conv4_1", 256, 512, 28, 1 },
	{ "conv4_2", 512, 512, 28, 3 },
	{ "conv5_1", 512, 512, 14, 4 },
};
#define N_VGG ((int)(sizeof(vgg19) / sizeof(vgg19[0])))

struct conv_result {
	const struct vgg_layer *l;
	int batch;
	int winograd;         /* the default path is Winograd */
	double ms, gflops, frac;              /* iap_conv2d_forward_raw */
	double i2c_ms, i2c_gflops, i2c_frac;  /* im2col alone */
	double gflop;         /* work of one call (direct convolution) */
	double max_rel_err;   /* spot check against a direct sum, worse of the two paths */
};

/*
 * Direct double-precision value of a few outputs, compared with y, so a
 * kernel that is fast because it is wrong does not go unnoticed.
 */
static double spot_check(const struct iap_conv_geom *cg, const float *x, const float *w,
			 const float *b, const float *y)
{
	double worst = 0.0;

	for (int t = 0; t < 4; t++) {
		int n = t % cg->n, oc = (t * 37) % cg->out_ch;
		int oh = t == 0 ? 0 : (t * cg->out_h) / 4, ow = t == 3 ? cg->out_w - 1 : (t * 7) % cg->out_w;
		double acc = b[oc], mag = fabs(b[oc]), got, err;

		for (int c = 0; c < cg->in_ch; c++)
			for (int i = 0; i < cg->kh; i++)
				for (int j = 0; j < cg->kw; j++) {
					int ih = oh * cg->stride_h - cg->pad_h + i;
					int iw = ow * cg->stride_w - cg->pad_w + j;
					double p;

					if (ih < 0 || ih >= cg->in_h || iw < 0 || iw >= cg->in_w)
						continue;
					p = (double)x[(((size_t)n * cg->in_ch + c) * cg->in_h + ih) * cg->in_w + iw] *
					    w[(((size_t)oc * cg->in_ch + c) * cg->kh + i) * cg->kw + j];
					acc += p;
					mag += fabs(p);
				}
		got = y[(((size_t)n * cg->out_ch + oc) * cg->out_h + oh) * cg->out_w + ow];
		err = fabs(got - acc) / (mag > 0 ? mag : 1.0);
		if (!(err <= worst))
			worst = isnan(err) ? INFINITY : err;
	}
	return worst;
}

static void bench_layer(const struct vgg_layer *l, int batch, struct conv_result *res)
{
	struct iap_conv_geom cg = {
		.n = batch, .in_ch = l->in_ch, .in_h = l->hw, .in_w = l->hw,
		.out_ch = l->out_ch, .out_h = l->hw, .out_w = l->hw,
		.kh = 3, .kw = 3, .stride_h = 1, .stride_w = 1, .pad_h = 1, .pad_w = 1,
	};
	size_t nx = (size_t)batch * l->in_ch * l->hw * l->hw;
	size_t ny = (size_t)batch * l->out_ch * l->hw * l->hw;
	size_t nw = (size_t)l->out_ch * l->in_ch * 9;
	float *x = alloc_filled(nx, 11), *w = alloc_filled(nw, 12), *b = alloc_filled(l->out_ch, 13);
	float *y = alloc_filled(ny, 14), *y2 = alloc_filled(ny, 16);
	/* iap_conv2d_workspace covers whichever path the raw kernel takes, and im2col's. */
	float *ws = alloc_filled(iap_conv2d_workspace(&cg), 15);
	double best = INFINITY, best_i2c = INFINITY, spent = 0.0, e2;

	/* One untimed warm-up each (page faults, OpenBLAS thread start-up), then best-of, alternating. */
	iap_conv2d_forward_raw(&cg, x, w, b, y, ws);
	iap_conv2d_forward_im2col(&cg, x, w, b, y2, ws);
	for (int r = 0; r < CONV_MAX_REPS && (r == 0 || spent < CONV_BUDGET_S); r++) {
		double t0 = now_s(), t1, t2;

		iap_conv2d_forward_raw(&cg, x, w, b, y, ws);
		t1 = now_s();
		iap_conv2d_forward_im2col(&cg, x, w, b, y2, ws);
		t2 = now_s();
		spent += t2 - t0;
		if (t1 - t0 < best)
			best = t1 - t0;
		if (t2 - t1 < best_i2c)
			best_i2c = t2 - t1;
	}
	res->l = l;
	res->batch = batch;
	res->winograd = iap_winograd_applies(&cg);
	res->gflop = 2.0 * batch * (double)l->out_ch * l->in_ch * 9 * l->hw * l->hw * 1e-9;
	res->ms = best * 1e3;
	res->gflops = res->gflop / best;
	res->i2c_ms = best_i2c * 1e3;
	res->i2c_gflops = res->gflop / best_i2c;
	res->max_rel_err = spot_check(&cg, x, w, b, y);
	e2 = spot_check(&cg, x, w, b, y2);
	if (!(e2 <= res->max_rel_err))
		res->max_rel_err = e2;
	iap_free(x);
	iap_free(w);
	iap_free(b);
	iap_free(y);
	iap_free(y2);
	iap_free(ws);
}

static const char *env_or(const char *name, const char *dflt)
{
	const char *v = getenv(name);

	return v && *v ? v : dflt;
}

int main(int argc, char **argv)
{
	static const struct gemm_shape gemms[] = {
		{ "square 1024", 1024, 1024, 1024 },
		{ "square 2048", 2048, 2048, 2048 },
		{ "conv-like 64x12544x576", 64, 12544, 576 },
		{ "conv-like 256x3136x2304", 256, 3136, 2304 },
		{ "conv-like 512x784x4608", 512, 784, 4608 },
	};
	const int batches[] = { 1, 8 };
	struct conv_result res[2 * N_VGG];
	const char *json_path = argc > 1 ? argv[1] : "bench/results.json";

	/* Its one argument is the JSON path: an option-looking one (--help) is not written as a file. */
	if (argc > 2 || (argc > 1 && argv[1][0] == '-')) {
		fprintf(stderr, "usage: bench_conv [JSON-PATH]   (default bench/results.json)\n");
		return strcmp(argv[1], "--help") == 0 ? 0 : 2;
	}
	double peak, peak2;
	const char *peak_what = "", *peak2_what = "";
	int threads = iap_threads();
	int nres = 0, bad = 0;
	FILE *js;

	/* The kernels iaprune itself runs with (see <iaprune/blas.h>); children inherit the choice. */
	iap_blas_reexec(argv);
	printf("bench_conv: OpenBLAS %s, core %s, %d engine thread(s), OpenBLAS %d per call "
	       "(IAPRUNE_THREADS=%s, OPENBLAS_CORETYPE=%s)\n",
	       openblas_get_config(), openblas_get_corename(), threads, iap_threads_blas(),
	       env_or("IAPRUNE_THREADS", "unset"), env_or("OPENBLAS_CORETYPE", "unset"));

	peak = measure_peak(gemms, sizeof(gemms) / sizeof(gemms[0]), 1, &peak_what);
	/* Progress goes to stderr; the table is printed once the peak is final. */
	fprintf(stderr, "\nconv layers:");
	for (int bi = 0; bi < 2; bi++) {
		for (int i = 0; i < N_VGG; i++) {
			struct conv_result *r = &res[nres++];

			bench_layer(&vgg19[i], batches[bi], r);
			fprintf(stderr, " %s/%d", r->l->name, r->batch);
			if (r->max_rel_err > 1e-4)
				bad = 1;
		}
	}
	fprintf(stderr, "\n");

	/*
	 * Measure the peak again: on a shared machine the first measurement may
	 * have run under load, and a peak below what the convs reached would make
	 * the fractions meaningless. The fractions use the best of both.
	 */
	peak2 = measure_peak(gemms, sizeof(gemms) / sizeof(gemms[0]), 0, &peak2_what);
	if (peak2 > peak) {
		peak = peak2;
		peak_what = peak2_what;
	}
	printf("  re-measured after the convs %8.1f GFLOP/s; using %.1f GFLOP/s (%s)\n", peak2,
	       peak, peak_what);

	printf("\niap_conv2d_forward_raw (path: wino = Winograd, F(4x4,3x3) up to 64 input channels, "
	       "F(2x2,3x3) above; im2col) and the im2col "
	       "kernel alone,\nVGG19 conv shapes (3x3, stride 1, pad 1), best of <= %d, alternating; "
	       "GFLOP/s and of peak\non 2*MACs of the direct convolution:\n", CONV_MAX_REPS);
	printf("  %-8s %-22s %5s %-6s %9s %9s %7s | %9s %7s %7s\n", "layer", "shape (in->out @ HxW)",
	       "batch", "path", "ms", "GFLOP/s", "of peak", "im2col ms", "of peak", "speedup");
	for (int i = 0; i < nres; i++) {
		struct conv_result *r = &res[i];
		char shape[64];

		r->frac = r->gflops / peak;
		r->i2c_frac = r->i2c_gflops / peak;
		snprintf(shape, sizeof(shape), "%d->%d @ %dx%d", r->l->in_ch, r->l->out_ch,
			 r->l->hw, r->l->hw);
		printf("  %-8s %-22s %5d %-6s %9.2f %9.1f %6.1f%% | %9.2f %6.1f%% %6.2fx%s\n",
		       r->l->name, shape, r->batch, r->winograd ? "wino" : "im2col", r->ms, r->gflops,
		       100.0 * r->frac, r->i2c_ms, 100.0 * r->i2c_frac, r->i2c_ms / r->ms,
		       r->max_rel_err > 1e-4 ? "  WRONG RESULT" : "");
	}

	printf("\ntotals (default path; im2col alone in brackets):\n");
	for (int bi = 0; bi < 2; bi++) {
		double ms = 0, gflop = 0, vms = 0, vgflop = 0, ims = 0, ivms = 0;

		for (int i = 0; i < nres; i++) {
			if (res[i].batch != batches[bi])
				continue;
			ms += res[i].ms;
			ims += res[i].i2c_ms;
			gflop += res[i].gflop;
			vms += res[i].ms * res[i].l->count;
			ivms += res[i].i2c_ms * res[i].l->count;
			vgflop += res[i].gflop * res[i].l->count;
		}
		printf("  batch %d: distinct shapes %8.1f ms [%8.1f] %7.1f GFLOP/s %5.1f%% of peak "
		       "[%5.1f%%]; all 16 VGG19 convs %8.1f ms [%8.1f] (%.1f GFLOP)\n", batches[bi], ms,
		       ims, gflop / ms * 1e3, 100.0 * gflop / ms * 1e3 / peak,
		       100.0 * gflop / ims * 1e3 / peak, vms, ivms, vgflop);
	}

	js = fopen(json_path, "w");
	if (!js) {
		perror(json_path);
		return 1;
	}
	fprintf(js, "{\n  \"openblas_threads\": %d,\n  \"openblas_core\": \"%s\",\n"
		"  \"peak_gflops\": %.2f,\n  \"peak_shape\": \"%s\",\n  \"layers\": [\n",
		threads, openblas_get_corename(), peak, peak_what);
	for (int i = 0; i < nres; i++)
		fprintf(js, "    {\"layer\": \"%s\", \"in_ch\": %d, \"out_ch\": %d, \"hw\": %d, "
			"\"batch\": %d, \"vgg19_count\": %d, \"path\": \"%s\", \"ms\": %.3f, "
			"\"gflops\": %.2f, \"frac_peak\": %.4f, \"im2col_ms\": %.3f, "
			"\"im2col_gflops\": %.2f, \"im2col_frac_peak\": %.4f}%s\n", res[i].l->name,
			res[i].l->in_ch, res[i].l->out_ch, res[i].l->hw, res[i].batch, res[i].l->count,
			res[i].winograd ? "winograd" : "im2col", res[i].ms, res[i].gflops, res[i].frac,
			res[i].i2c_ms, res[i].i2c_gflops, res[i].i2c_frac, i + 1 < nres ? "," : "");
	fprintf(js, "  ]\n}\n");
	if (fclose(js)) {
		perror(json_path);
		return 1;
	}
	printf("\nwrote %s\n", json_path);
	if (bad)
		fprintf(stderr, "bench_conv: a conv result disagreed with the direct sum\n");
	return bad;
}
