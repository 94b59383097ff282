/*
 * bench_models — whole-model speed: VGG19, ResNet50 and ViT-B/16 at 224²
 * against the machine's sgemm peak and against PyTorch (issue #8).
 *
 * The parent process measures the cblas_sgemm peak, then runs every
 * (model, batch) in a fresh child process (this program re-executed with
 * --child), so that each row's peak RSS (getrusage) is its own and not the
 * maximum of everything before it. A child builds the model with
 * torchvision's initialisation (ViT: a small random classifier head instead
 * of torchvision's zeros), and times on one random input:
 *
 *   fwd      iap_graph_forward
 *   grad     one gradient walk from the one-hot predicted class to the
 *            input, times the input (input×gradient), after a forward
 *   lrp/dlb  iap_attribute_batch with the plugin (forward + walk + unit scores)
 *   ig       iap_attribute_batch with IG (32 steps; fewer with --ig-steps,
 *            the time then scaled to 32 steps and marked as such)
 *   masked   forward with 50% of every unit group masked (random, seeded;
 *            coupled ResNet groups share one mask so compaction removes them)
 *   compact  forward of iap_graph_compact() of that masked graph; its output
 *            is checked against the masked graph's
 *
 * Each time is the median of --reps runs after one warm-up (IG: one run).
 * Then, when /usr/bin/python3 imports torch, bench/peer_torch.py runs the
 * same model and batch on the same thread count (forward under no_grad, and
 * forward + backward to the input for input×gradient); the table prints
 * iaprune time / PyTorch time per row (< 1: iaprune is faster).
 *
 * Output: a table on stdout and JSON (default bench/results.json).
 * OPENBLAS_NUM_THREADS / OPENBLAS_CORETYPE are never set here; the header
 * prints what OpenBLAS uses. Not a test: timings depend on the load.
 */
#include "config.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <iaprune/blas.h>
#include <iaprune/attribute.h>
#include <iaprune/compact.h>
#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/tensor.h>
#include <iaprune/threads.h>

#include "arch.h"

#ifndef IAP_BENCH_BUILDDIR
#define IAP_BENCH_BUILDDIR "."
#endif
#ifndef IAP_BENCH_SRCDIR
#define IAP_BENCH_SRCDIR "."
#endif

#define PYTHON "/usr/bin/python3"
#define IG_FULL_STEPS 32
#define MAX_BATCHES 4
#define MAX_THREADS 8

enum { T_FWD, T_GRAD, T_LRP, T_DLB, T_IG, T_MASKED, T_COMPACT, T_COUNT };
static const char *const t_names[T_COUNT] = { "fwd", "grad", "lrp", "dlb", "ig", "masked", "compact" };

/* One (model, batch) result, written by the child to the pipe as raw bytes. */
struct row {
	char model[16];
	int batch;
	int threads;                   /* the engine's (IAPRUNE_THREADS in the child) and the peer's */
	int ok;
	char err[256];
	double macs;                   /* per sample */
	double params;
	double t[T_COUNT];             /* seconds, median; < 0: not measured */
	char t_err[T_COUNT][96];       /* why a pass was not measured */
	int ig_steps;                  /* steps actually run (time scaled to 32) */
	double compact_macs;           /* per sample */
	double dense_paired;           /* dense forward timed alternately with masked/compact */
	double compact_maxdiff;        /* max |masked − compacted| / max |masked| */
	double rss_fwd_mb, rss_lrp_mb, rss_all_mb;
	double torch_fwd, torch_grad;  /* seconds; < 0: peer skipped */
};

struct bench_cfg {
	int reps;
	int ig_steps;
	int batches[MAX_BATCHES];
	int n_batches;
	const char *models[3];
	int n_models;
	int peer;                      /* 1: try the PyTorch peer */
	int threads[MAX_THREADS];      /* thread counts to run every row at (--threads) */
	int n_threads;
	const char *json;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static double rss_mb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* Deterministic fill in [-1, 1). */
static void fill(float *p, size_t n, uint64_t seed)
{
	uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;

	for (size_t i = 0; i < n; i++) {
		s = s * 6364136223846793005ull + 1442695040888963407ull;
		p[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
	}
}

/* ---- sgemm peak --------------------------------------------------------------- */

/* Best GFLOP/s of m×n×k products on the engine's threads (iap_sgemm), best of 4 after a warm-up. */
static double sgemm_gflops(int m, int n, int k)
{
	float *a = iap_alloc_floats((size_t)m * k), *b = iap_alloc_floats((size_t)k * n);
	float *c = iap_alloc_floats((size_t)m * n);
	double best = 0.0;

	if (!a || !b || !c)
		goto out;
	fill(a, (size_t)m * k, 1);
	fill(b, (size_t)k * n, 2);
	for (int r = 0; r < 5; r++) {
		double t0 = now_s(), dt;

		iap_sgemm(0, 0, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
		dt = now_s() - t0;
		if (r > 0 && 2.0 * m * n * k / dt / 1e9 > best)
			best = 2.0 * m * n * k / dt / 1e9;
	}
out:
	iap_free(a);
	iap_free(b);
	iap_free(c);
	return best;
}

static double sgemm_peak(char *what, size_t len)
{
	static const int shapes[][3] = {
		{ 1024, 1024, 1024 }, { 2048, 2048, 2048 }, { 256, 3136, 2304 }, { 512, 784, 4608 },
	};
	double peak = 0.0;

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		double gf = sgemm_gflops(shapes[i][0], shapes[i][1], shapes[i][2]);

		if (gf > peak) {
			peak = gf;
			snprintf(what, len, "%dx%dx%d", shapes[i][0], shapes[i][1], shapes[i][2]);
		}
	}
	return peak;
}

/* ---- the child: one model at one batch size ---------------------------------- */

struct attr_plugin {
	const struct iap_attribution_ops *ops;
	struct iap_opts *opts;
	void *state;
};

static int attr_open(struct iap_registry *reg, const char *name, struct iap_graph *g,
		     const char *const *kv, struct attr_plugin *ap, struct iap_error *err)
{
	char path[4096];
	const struct iap_plugin *pl;
	int rc;

	memset(ap, 0, sizeof(*ap));
	snprintf(path, sizeof(path), "%s/plugins/attribution/.libs/%s.so", IAP_BENCH_BUILDDIR, name);
	pl = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, name);
	if (!pl) {
		rc = iap_registry_load(reg, path, err);
		if (rc)
			return rc;
		pl = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, name);
		if (!pl)
			return iap_error_set(err, IAP_EINVAL, "%s: no attribution plugin '%s'", path, name);
	}
	ap->ops = pl->desc->ops.attribution;
	rc = iap_opts_defaults(pl->desc->options, &ap->opts, err);
	for (; !rc && kv && kv[0]; kv += 2)
		rc = iap_opts_set(ap->opts, name, kv[0], kv[1], err);
	if (!rc)
		rc = ap->ops->create(ap->opts, g, &ap->state, err);
	return rc;
}

static void attr_close(struct attr_plugin *ap)
{
	if (ap->state)
		ap->ops->destroy(ap->state);
	iap_opts_free(ap->opts);
	memset(ap, 0, sizeof(*ap));
}

static float **scores_new(const struct iap_graph *g)
{
	float **s = calloc((size_t)g->n_groups + 1, sizeof(*s));

	for (int i = 0; s && i < g->n_groups; i++) {
		s[i] = calloc((size_t)g->groups[i].n_units, sizeof(float));
		if (!s[i])
			return NULL; /* the child exits on failure; no cleanup needed */
	}
	return s;
}

static void scores_free(const struct iap_graph *g, float **s)
{
	for (int i = 0; s && i < g->n_groups; i++)
		free(s[i]);
	free(s);
}

static int build_model(const char *model, struct iap_graph **g, struct iap_error *err)
{
	struct iap_cnn_cfg cc = {
		.num_classes = 1000, .in_channels = 3, .image_size = 224, .width = 1.0, .dropout = 0.5f,
	};
	struct iap_vit_cfg vc = { 0 }; /* iap_vit_preset leaves shape_only alone: it must be 0 */
	int rc;

	if (!strcmp(model, "vgg19")) {
		cc.depth = 19;
		rc = iap_vgg_build(&cc, g, err);
		if (!rc)
			iap_vgg_init(*g, 1);
	} else if (!strcmp(model, "resnet50")) {
		cc.depth = 50;
		rc = iap_resnet_build(&cc, g, err);
		if (!rc)
			iap_resnet_init(*g, 1);
	} else if (!strcmp(model, "vit_b_16")) {
		if (!iap_vit_preset("b_16", &vc))
			return iap_error_set(err, IAP_EINVAL, "no vit preset b_16");
		vc.num_classes = 1000;
		vc.image_size = 224;
		vc.in_channels = 3;
		rc = iap_vit_build(&vc, g, err);
		if (!rc) {
			/*
			 * torchvision starts the classifier head at zero, which makes
			 * every logit 0: the target, the relevance and the compaction
			 * check would then mean nothing. A small random head instead.
			 */
			struct iap_param *hw = NULL;

			iap_vit_init(*g, 1);
			hw = iap_graph_find_param(*g, "heads.head.weight");
			if (hw && hw->value.data) {
				int64_t m = iap_tensor_numel(&hw->value);

				fill(hw->value.data, (size_t)m, 3);
				for (int64_t i = 0; i < m; i++)
					hw->value.data[i] *= 0.05f;
			}
		}
	} else {
		rc = iap_error_set(err, IAP_EINVAL, "unknown model '%s' (vgg19, resnet50, vit_b_16)", model);
	}
	return rc;
}

/* The model and a seeded input batch of its shape. */
static int model_and_input(const char *model, int batch, struct iap_graph **g, struct iap_tensor *x,
			   struct iap_error *err)
{
	int64_t shape[IAP_MAX_DIMS];
	int rc = build_model(model, g, err);

	if (rc)
		return rc;
	shape[0] = batch;
	for (int d = 0; d < (*g)->in_ndim; d++)
		shape[d + 1] = (*g)->in_shape[d];
	rc = iap_tensor_alloc(x, (*g)->in_ndim + 1, shape, err);
	if (!rc)
		fill(x->data, (size_t)iap_tensor_numel(x), 7);
	return rc;
}

/* input×gradient: a gradient walk from the one-hot argmax to the input, times x. */
static int input_x_grad(struct iap_graph *g, const struct iap_tensor *x, struct iap_tensor *seed,
			struct iap_tensor *ixg, struct iap_error *err)
{
	const struct iap_tensor *y = iap_graph_output(g);
	const struct iap_walk_opts wo = { .want_input = 1 };
	int64_t n = y->shape[0], c = y->shape[1], m;
	int rc;

	rc = iap_tensor_ensure(seed, y->ndim, y->shape, err);
	if (rc)
		return rc;
	iap_tensor_zero(seed);
	for (int64_t i = 0; i < n; i++) {
		const float *yi = y->data + i * c;
		int64_t best = 0;

		for (int64_t j = 1; j < c; j++)
			if (yi[j] > yi[best])
				best = j;
		seed->data[i * c + best] = 1.0f;
	}
	rc = iap_graph_backward(g, iap_ruleset_gradient(), seed, &wo, err);
	if (!rc)
		rc = iap_tensor_ensure(ixg, x->ndim, x->shape, err);
	if (rc)
		return rc;
	m = iap_tensor_numel(x);
	for (int64_t i = 0; i < m; i++)
		ixg->data[i] = x->data[i] * g->input_r.data[i];
	return IAP_OK;
}

/* 50% of every unit group pruned at random; groups sharing a coupling id share the mask. */
static int mask_half(struct iap_graph *g, struct iap_error *err)
{
	uint64_t s = 12345;
	int rc = IAP_OK;

	for (int gi = 0; gi < g->n_groups && !rc; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];
		int nu = grp->n_units, *perm;
		uint8_t *keep;

		if (grp->coupling >= 0) {
			int first = -1;

			for (int j = 0; j < gi; j++)
				if (g->groups[j].coupling == grp->coupling) {
					first = j;
					break;
				}
			if (first >= 0) {
				rc = iap_graph_set_mask(g, gi, g->groups[first].mask, err);
				continue;
			}
		}
		perm = malloc((size_t)nu * sizeof(*perm));
		keep = malloc((size_t)nu);
		if (!perm || !keep) {
			free(perm);
			free(keep);
			return iap_error_set(err, IAP_ENOMEM, "mask");
		}
		for (int u = 0; u < nu; u++) {
			perm[u] = u;
			keep[u] = 1;
		}
		for (int u = nu - 1; u > 0; u--) {
			int j, t;

			s = s * 6364136223846793005ull + 1442695040888963407ull;
			j = (int)((s >> 33) % (uint64_t)(u + 1));
			t = perm[u];
			perm[u] = perm[j];
			perm[j] = t;
		}
		for (int u = 0; u < nu / 2; u++)
			keep[perm[u]] = 0;
		rc = iap_graph_set_mask(g, gi, keep, err);
		free(perm);
		free(keep);
	}
	return rc;
}

typedef int (*pass_fn)(void *ctx, struct iap_error *err);

/* Median of reps timed calls after one warm-up (reps 0: one untimed-warm-up-free call). */
static int time_pass(pass_fn fn, void *ctx, int reps, double *out, struct iap_error *err)
{
	double v[64];
	int rc;

	if (reps > 64)
		reps = 64;
	if (reps > 0) {
		rc = fn(ctx, err);
		if (rc)
			return rc;
	} else {
		reps = 1;
	}
	for (int r = 0; r < reps; r++) {
		double t0 = now_s();

		rc = fn(ctx, err);
		if (rc)
			return rc;
		v[r] = now_s() - t0;
	}
	*out = median(v, reps);
	return IAP_OK;
}

struct pass_ctx {
	struct iap_graph *g;
	const struct iap_tensor *x;
	struct iap_tensor seed, ixg;
	struct attr_plugin *ap;
	float **scores;
};

static int pass_fwd(void *p, struct iap_error *err)
{
	struct pass_ctx *c = p;

	return iap_graph_forward(c->g, c->x, err);
}

/* The walk only: the forward of the same input was run just before. */
static int pass_grad(void *p, struct iap_error *err)
{
	struct pass_ctx *c = p;

	return input_x_grad(c->g, c->x, &c->seed, &c->ixg, err);
}

static int pass_attr(void *p, struct iap_error *err)
{
	struct pass_ctx *c = p;

	return iap_attribute_batch(c->ap->ops, c->ap->state, c->ap->opts, c->g, c->x, NULL,
				   c->scores, NULL, err);
}

static void progress(const char *model, int batch, const char *what)
{
	fprintf(stderr, "  [%s b%d] %s\n", model, batch, what);
}

static void run_attr(struct row *rw, int slot, struct iap_registry *reg, const char *name,
		     const char *const *kv, struct pass_ctx *pc, int reps)
{
	struct iap_error err = { 0 };
	struct attr_plugin ap;

	progress(rw->model, rw->batch, name);
	if (attr_open(reg, name, pc->g, kv, &ap, &err) == IAP_OK) {
		pc->ap = &ap;
		if (time_pass(pass_attr, pc, reps, &rw->t[slot], &err) != IAP_OK)
			rw->t[slot] = -1.0;
		pc->ap = NULL;
	}
	if (rw->t[slot] < 0)
		snprintf(rw->t_err[slot], sizeof(rw->t_err[slot]), "%.95s", err.msg);
	attr_close(&ap);
}

/*
 * Dense, masked and compacted forwards timed in turn, rep after rep, so the
 * speedup compares runs made under the same load: on a shared machine two
 * medians taken minutes apart differed by up to 1.6x for the same graph.
 * Dense is the masked graph with its masks cleared, then put back.
 */
static int time_dense_masked_compact(struct iap_graph *g, struct iap_graph *cg,
				     const struct iap_tensor *x, int reps, struct row *rw,
				     struct iap_error *err)
{
	uint8_t **saved = calloc((size_t)g->n_groups, sizeof(*saved));
	double vd[64], vm[64], vc[64];
	int rc = IAP_OK;

	if (!saved)
		return iap_error_set(err, IAP_ENOMEM, "mask copies");
	for (int gi = 0; gi < g->n_groups && !rc; gi++)
		if (g->groups[gi].mask) {
			saved[gi] = malloc((size_t)g->groups[gi].n_units);
			if (!saved[gi])
				rc = iap_error_set(err, IAP_ENOMEM, "mask copies");
			else
				memcpy(saved[gi], g->groups[gi].mask, (size_t)g->groups[gi].n_units);
		}
	reps = reps < 1 ? 1 : reps > 64 ? 64 : reps;
	for (int r = -1; r < reps && !rc; r++) { /* r = -1: warm-up */
		double t0;

		for (int gi = 0; gi < g->n_groups && !rc; gi++)
			rc = iap_graph_set_mask(g, gi, NULL, err);
		t0 = now_s();
		if (!rc)
			rc = iap_graph_forward(g, x, err);
		if (r >= 0)
			vd[r] = now_s() - t0;
		for (int gi = 0; gi < g->n_groups && !rc; gi++)
			rc = iap_graph_set_mask(g, gi, saved[gi], err);
		t0 = now_s();
		if (!rc)
			rc = iap_graph_forward(g, x, err);
		if (r >= 0)
			vm[r] = now_s() - t0;
		t0 = now_s();
		if (!rc)
			rc = iap_graph_forward(cg, x, err);
		if (r >= 0)
			vc[r] = now_s() - t0;
	}
	if (!rc) {
		rw->dense_paired = median(vd, reps);
		rw->t[T_MASKED] = median(vm, reps);
		rw->t[T_COMPACT] = median(vc, reps);
	}
	for (int gi = 0; gi < g->n_groups; gi++)
		free(saved[gi]);
	free(saved);
	return rc;
}

static void child_run(const char *model, int batch, const struct bench_cfg *bc, struct row *rw)
{
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL, *cg = NULL;
	struct iap_registry *reg = NULL;
	struct iap_tensor x = { 0 }, ymask = { 0 };
	struct pass_ctx pc = { 0 };
	char steps[16];
	const char *ig_kv[] = { "steps", steps, NULL };
	int rc;

	for (int i = 0; i < T_COUNT; i++)
		rw->t[i] = -1.0;
	rw->torch_fwd = rw->torch_grad = -1.0;
	snprintf(rw->model, sizeof(rw->model), "%s", model);
	rw->batch = batch;

	rc = model_and_input(model, batch, &g, &x, &err);
	if (rc)
		goto fail;
	rw->macs = (double)iap_graph_macs(g);
	rw->params = (double)iap_graph_param_count(g, NULL);
	pc.g = g;
	pc.x = &x;
	pc.scores = scores_new(g);
	if (!pc.scores) {
		rc = iap_error_set(&err, IAP_ENOMEM, "scores");
		goto fail;
	}

	progress(model, batch, "forward");
	rc = time_pass(pass_fwd, &pc, bc->reps, &rw->t[T_FWD], &err);
	if (rc)
		goto fail;
	progress(model, batch, "input x gradient");
	rc = time_pass(pass_grad, &pc, bc->reps, &rw->t[T_GRAD], &err);
	if (rc)
		goto fail;
	rw->rss_fwd_mb = rss_mb();

	reg = iap_registry_new(&err);
	if (!reg) {
		rc = IAP_ENOMEM;
		goto fail;
	}
	run_attr(rw, T_LRP, reg, "lrp", NULL, &pc, bc->reps);
	rw->rss_lrp_mb = rss_mb();
	run_attr(rw, T_DLB, reg, "dlb", NULL, &pc, bc->reps);
	snprintf(steps, sizeof(steps), "%d", bc->ig_steps);
	rw->ig_steps = bc->ig_steps;
	run_attr(rw, T_IG, reg, "ig", ig_kv, &pc, 0);
	if (rw->t[T_IG] > 0)
		rw->t[T_IG] *= (double)IG_FULL_STEPS / bc->ig_steps;

	/* Masked and compacted at 50%. */
	progress(model, batch, "masked / compacted");
	rc = mask_half(g, &err);
	if (rc)
		goto fail;
	rc = iap_graph_forward(g, &x, &err);
	if (!rc)
		rc = iap_tensor_copy(&ymask, iap_graph_output(g), &err);
	if (!rc)
		rc = iap_graph_compact(g, 0, &cg, &err);
	if (rc)
		goto fail;
	rw->compact_macs = (double)iap_graph_macs(cg);
	rc = time_dense_masked_compact(g, cg, &x, bc->reps, rw, &err);
	if (rc)
		goto fail;
	{
		const struct iap_tensor *yc = iap_graph_output(cg);
		double dmax = 0.0, ymax = 0.0;

		for (int64_t i = 0; i < iap_tensor_numel(&ymask); i++) {
			double d = fabs((double)ymask.data[i] - yc->data[i]);

			if (d > dmax)
				dmax = d;
			if (fabs(ymask.data[i]) > ymax)
				ymax = fabs(ymask.data[i]);
		}
		rw->compact_maxdiff = ymax > 0 ? dmax / ymax : dmax;
	}
	rw->rss_all_mb = rss_mb();
	rw->ok = 1;
	goto out;
fail:
	snprintf(rw->err, sizeof(rw->err), "%.255s", err.msg[0] ? err.msg : iap_status_name(rc));
out:
	iap_tensor_free(&pc.seed);
	iap_tensor_free(&pc.ixg);
	if (g)
		scores_free(g, pc.scores);
	iap_tensor_free(&ymask);
	iap_tensor_free(&x);
	iap_graph_free(cg);
	iap_graph_free(g);
	iap_registry_free(reg);
}

/*
 * --profile MODEL [BATCH]: where one forward spends its time. Every node's
 * forward is re-run on its own (inputs from a full forward before), median
 * of reps; printed per op kind and for the slowest nodes, with GFLOP/s for
 * the ops that report MACs. For finding what to optimise, not for the table.
 */
static int profile_model(const char *model, int batch, int reps)
{
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_tensor x = { 0 };
	double kind_t[IAP_OP_COUNT] = { 0 }, kind_f[IAP_OP_COUNT] = { 0 }, total = 0.0, *nt = NULL;
	int *order = NULL, rc;

	rc = model_and_input(model, batch, &g, &x, &err);
	if (rc)
		goto out;
	rc = iap_graph_forward(g, &x, &err);
	if (rc)
		goto out;
	nt = calloc((size_t)g->n_nodes, sizeof(*nt));
	order = calloc((size_t)g->n_nodes, sizeof(*order));
	if (!nt || !order) {
		rc = iap_error_set(&err, IAP_ENOMEM, "profile");
		goto out;
	}
	for (int i = 0; i < g->n_nodes && !rc; i++) {
		struct iap_node *n = &g->nodes[i];
		const struct iap_tensor *in[IAP_NODE_MAX_INPUTS] = { NULL };
		double v[64];
		int r;

		for (int k = 0; k < n->n_inputs; k++)
			in[k] = iap_graph_node_input(g, n, k);
		for (r = 0; r <= reps && r < 64 && !rc; r++) {
			double t0 = now_s();

			rc = n->ops->forward(g, n, in, &n->out, &err);
			v[r] = now_s() - t0;
		}
		nt[i] = median(v + 1, r - 1);
		order[i] = i;
		kind_t[n->kind] += nt[i];
		kind_f[n->kind] += n->ops->macs ? 2.0 * (double)n->ops->macs(g, n) * batch : 0.0;
		total += nt[i];
	}
	if (rc)
		goto out;
	{
		/* The whole pass too: what it costs beyond the ops is the engine's own work. */
		double v[64];
		int r;

		for (r = 0; r < reps && r < 64 && !rc; r++) {
			double t0 = now_s();

			rc = iap_graph_forward(g, &x, &err);
			v[r] = now_s() - t0;
		}
		if (rc)
			goto out;
		printf("%s batch %d: iap_graph_forward %.1f ms (median); the ops alone %.1f ms\n",
		       model, batch, median(v, r) * 1e3, total * 1e3);
	}
	printf("forward by op kind (sum of per-node medians):\n");
	for (int k = 0; k < IAP_OP_COUNT; k++)
		if (kind_t[k] > 0)
			printf("  %-18s %9.2f ms %5.1f%%  %7.1f GF/s\n", iap_op_name(k), kind_t[k] * 1e3,
			       100.0 * kind_t[k] / total, kind_f[k] / kind_t[k] / 1e9);
	for (int i = 1; i < g->n_nodes; i++) /* insertion sort, slowest first */
		for (int j = i; j > 0 && nt[order[j]] > nt[order[j - 1]]; j--) {
			int t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	printf("slowest nodes:\n");
	for (int i = 0; i < g->n_nodes && i < 20; i++) {
		const struct iap_node *n = &g->nodes[order[i]];
		double f = n->ops->macs ? 2.0 * (double)n->ops->macs(g, n) * batch : 0.0;
		char buf[96];

		printf("  %-28s %-12s %-20s %8.2f ms %7.1f GF/s\n", n->name, iap_op_name(n->kind),
		       iap_tensor_shape_str(&n->out, buf, sizeof(buf)), nt[order[i]] * 1e3,
		       f / nt[order[i]] / 1e9);
	}
out:
	if (rc)
		fprintf(stderr, "bench_models: profile: %s\n", err.msg);
	free(nt);
	free(order);
	iap_tensor_free(&x);
	iap_graph_free(g);
	return rc ? 1 : 0;
}

/*
 * --profile-walk MODEL METHOD [BATCH [REPS]]: where one attribution pass
 * (iap_attribute_batch with the plugin's default options) spends its time.
 * The plugin's rule set is wrapped so that every rule call is timed; the
 * table puts each op kind's rule time next to its forward time (per-node
 * forwards, as --profile) and lists the nodes whose rules cost the most
 * relative to their forward. What the pass costs beyond forward + rules is
 * the walk's own work (buffers, the score hook). For finding what to
 * optimise, not for the table.
 */
struct walk_prof {
	const struct iap_ruleset *inner;     /* the plugin's rule set */
	struct iap_ruleset outer;            /* every rule: timed_rule */
	double *node_t;                      /* per node: rule seconds, summed over reps */
};

static struct walk_prof walk_prof;

static int timed_rule(struct iap_rule_ctx *ctx)
{
	double t0 = now_s();
	int rc = walk_prof.inner->rules[ctx->node->kind](ctx);

	walk_prof.node_t[ctx->node->id] += now_s() - t0;
	return rc;
}

static const struct iap_ruleset *timed_ruleset(void *state)
{
	(void)state;
	return &walk_prof.outer;
}

static int profile_walk(const char *model, const char *method, int batch, int reps)
{
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_registry *reg = NULL;
	struct iap_tensor x = { 0 };
	struct attr_plugin ap = { 0 };
	struct iap_attribution_ops wops;
	double kind_f[IAP_OP_COUNT] = { 0 }, kind_r[IAP_OP_COUNT] = { 0 }, *fwd_t = NULL;
	double vf[64], vp[64], sum_r = 0.0, sum_f = 0.0, tf, tp;
	float **scores = NULL;
	int *order = NULL, rc;

	if (reps < 1)
		reps = 1;
	if (reps > 64)
		reps = 64;
	rc = model_and_input(model, batch, &g, &x, &err);
	if (rc)
		goto out;
	reg = iap_registry_new(&err);
	scores = scores_new(g);
	fwd_t = calloc((size_t)g->n_nodes, sizeof(*fwd_t));
	walk_prof.node_t = calloc((size_t)g->n_nodes, sizeof(double));
	order = calloc((size_t)g->n_nodes, sizeof(*order));
	if (!reg || !scores || !fwd_t || !walk_prof.node_t || !order) {
		rc = iap_error_set(&err, IAP_ENOMEM, "profile-walk");
		goto out;
	}
	rc = attr_open(reg, method, g, NULL, &ap, &err);
	if (rc)
		goto out;
	if (!ap.ops->ruleset) {
		rc = iap_error_set(&err, IAP_EINVAL, "%s has no rule set", method);
		goto out;
	}
	walk_prof.inner = ap.ops->ruleset(ap.state);
	walk_prof.outer = *walk_prof.inner;
	for (int k = 0; k < IAP_OP_COUNT; k++)
		walk_prof.outer.rules[k] = walk_prof.inner->rules[k] ? timed_rule : NULL;
	wops = *ap.ops;
	wops.ruleset = timed_ruleset;
	/* Warm-up, then forward and pass alternating (the load changes slowly). */
	rc = iap_attribute_batch(&wops, ap.state, ap.opts, g, &x, NULL, scores, NULL, &err);
	memset(walk_prof.node_t, 0, (size_t)g->n_nodes * sizeof(double));
	for (int r = 0; r < reps && !rc; r++) {
		double t0 = now_s();

		rc = iap_graph_forward(g, &x, &err);
		vf[r] = now_s() - t0;
		if (rc)
			break;
		t0 = now_s();
		rc = iap_attribute_batch(&wops, ap.state, ap.opts, g, &x, NULL, scores, NULL, &err);
		vp[r] = now_s() - t0;
	}
	if (rc)
		goto out;
	tf = median(vf, reps);
	tp = median(vp, reps);
	/* Per-node forwards (inputs from the last forward), median of reps. */
	for (int i = 0; i < g->n_nodes && !rc; i++) {
		struct iap_node *n = &g->nodes[i];
		const struct iap_tensor *in[IAP_NODE_MAX_INPUTS] = { NULL };
		double v[64];

		for (int k = 0; k < n->n_inputs; k++)
			in[k] = iap_graph_node_input(g, n, k);
		for (int r = 0; r < reps && !rc; r++) {
			double t0 = now_s();

			rc = n->ops->forward(g, n, in, &n->out, &err);
			v[r] = now_s() - t0;
		}
		fwd_t[i] = median(v, reps);
		walk_prof.node_t[i] /= reps;
		kind_f[n->kind] += fwd_t[i];
		kind_r[n->kind] += walk_prof.node_t[i];
		sum_f += fwd_t[i];
		sum_r += walk_prof.node_t[i];
		order[i] = i;
	}
	if (rc)
		goto out;
	printf("%s %s batch %d: forward %.1f ms, pass %.1f ms (%.2f x forward), medians of %d\n",
	       model, method, batch, tf * 1e3, tp * 1e3, tp / tf, reps);
	printf("  rules %.1f ms (%.2f x forward); pass - forward - rules = %.1f ms (walk, hook, seed)\n",
	       sum_r * 1e3, sum_r / tf, (tp - tf - sum_r) * 1e3);
	printf("by op kind: rule ms, forward ms (per-node sum), rule/forward\n");
	for (int k = 0; k < IAP_OP_COUNT; k++)
		if (kind_r[k] > 0 || kind_f[k] > 0)
			printf("  %-18s %9.2f %9.2f %6.2f\n", iap_op_name(k), kind_r[k] * 1e3,
			       kind_f[k] * 1e3, kind_f[k] > 0 ? kind_r[k] / kind_f[k] : 0.0);
	printf("  %-18s %9.2f %9.2f %6.2f\n", "all", sum_r * 1e3, sum_f * 1e3,
	       sum_f > 0 ? sum_r / sum_f : 0.0);
	for (int i = 1; i < g->n_nodes; i++) /* insertion sort, costliest rule first */
		for (int j = i; j > 0 && walk_prof.node_t[order[j]] > walk_prof.node_t[order[j - 1]]; j--) {
			int t = order[j];

			order[j] = order[j - 1];
			order[j - 1] = t;
		}
	printf("costliest rules: rule ms, forward ms, rule/forward\n");
	for (int i = 0; i < g->n_nodes && i < 20; i++) {
		const struct iap_node *n = &g->nodes[order[i]];
		char buf[96];

		printf("  %-34s %-12s %-18s %8.2f %8.2f %6.2f\n", n->name, iap_op_name(n->kind),
		       iap_tensor_shape_str(&n->out, buf, sizeof(buf)), walk_prof.node_t[order[i]] * 1e3,
		       fwd_t[order[i]] * 1e3,
		       fwd_t[order[i]] > 0 ? walk_prof.node_t[order[i]] / fwd_t[order[i]] : 0.0);
	}
out:
	if (rc)
		fprintf(stderr, "bench_models: profile-walk: %s\n", err.msg);
	attr_close(&ap);
	if (g)
		scores_free(g, scores);
	free(walk_prof.node_t);
	walk_prof.node_t = NULL;
	free(fwd_t);
	free(order);
	iap_tensor_free(&x);
	iap_graph_free(g);
	iap_registry_free(reg);
	return rc ? 1 : 0;
}

/* ---- the parent ------------------------------------------------------------- */

static int parse_list(char *s, const char **out, int max);

/* This thread's CPU time. */
static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/*
 * The CPU time of each of the n team threads over reps runs of fn. With
 * OMP_WAIT_POLICY=passive idle threads sleep instead of spinning, so CPU
 * time is work: the master's excess over the mean of the others is the
 * serial (or unbalanced) part, and Amdahl bounds the speed-up by it.
 */
static int cpu_split(const char *what, int n, int (*fn)(void *, struct iap_error *), void *ctx, int reps,
		     struct iap_error *err)
{
	int rc = 0;
#ifdef _OPENMP
	static double c0[IAP_THREADS_MAX], c1[IAP_THREADS_MAX];
	double others = 0, serial, total;

	rc = fn(ctx, err);   /* warm: buffers shaped for this pass */
#pragma omp parallel num_threads(n)
	c0[omp_get_thread_num()] = thread_cpu_s();
	for (int r = 0; r < reps && !rc; r++)
		rc = fn(ctx, err);
#pragma omp parallel num_threads(n)
	c1[omp_get_thread_num()] = thread_cpu_s();
	for (int t = 1; t < n; t++)
		others += c1[t] - c0[t];
	total = (c1[0] - c0[0]) + others;
	serial = n > 1 ? (c1[0] - c0[0]) - others / (n - 1) : total;
	if (!rc && n > 1 && total > 0)
		printf("  %s CPU time on %d threads: master %.1f ms, others %.1f ms each per pass; "
		       "serial+imbalance %.1f%% -> Amdahl bound x%.2f%s\n", what, n, (c1[0] - c0[0]) * 1e3 / reps,
		       others * 1e3 / reps / (n - 1), 100.0 * serial / total,
		       1.0 / (serial / total + (1.0 - serial / total) / n),
		       getenv("OMP_WAIT_POLICY") ? "" : " (set OMP_WAIT_POLICY=passive: spinning counts as work)");
#else
	(void)what;
	(void)n;
	(void)fn;
	(void)ctx;
	(void)reps;
	(void)err;
#endif
	return rc;
}

/*
 * --threads-ab: the forward (and input×gradient) of one model at several
 * thread counts, interleaved rep by rep in one process (same weights, same
 * memory, the load shared alike), so a busy machine biases no count. Prints
 * the median per count and each count's speed-up over the first.
 */
static int threads_ab(const char *model, int batch, int reps, const char *list, int fwd_only)
{
	struct iap_error err = { 0 };
	struct iap_graph *g = NULL;
	struct iap_tensor x = { 0 }, seed = { 0 }, ixg = { 0 };
	const char *tok[MAX_THREADS];
	char buf[256];
	int th[MAX_THREADS], nth, rc;
	static double tf[MAX_THREADS][64], tg[MAX_THREADS][64];
	double mf[MAX_THREADS], mg[MAX_THREADS];

	snprintf(buf, sizeof(buf), "%s", list);
	nth = parse_list(buf, tok, MAX_THREADS);
	for (int t = 0; t < nth; t++) {
		th[t] = atoi(tok[t]);
		if (th[t] < 1 || th[t] > IAP_THREADS_MAX)
			return 2;
	}
	if (nth < 1 || reps < 1 || reps > 64)
		return 2;
	rc = model_and_input(model, batch, &g, &x, &err);
	/* Warm-up at every count (buffers, OpenMP teams, page faults). */
	for (int t = 0; t < nth && !rc; t++) {
		iap_threads_set(th[t]);
		rc = iap_graph_forward(g, &x, &err);
		rc = rc || fwd_only ? rc : input_x_grad(g, &x, &seed, &ixg, &err);
	}
	for (int r = 0; r < reps && !rc; r++)
		for (int t = 0; t < nth && !rc; t++) {
			double t0, t1;

			iap_threads_set(th[t]);
			t0 = now_s();
			rc = iap_graph_forward(g, &x, &err);
			t1 = now_s();
			rc = rc || fwd_only ? rc : input_x_grad(g, &x, &seed, &ixg, &err);
			tf[t][r] = t1 - t0;
			tg[t][r] = now_s() - t1;
		}
	if (rc) {
		fprintf(stderr, "bench_models: %s\n", err.msg);
		goto out;
	}
	{
		FILE *la = fopen("/proc/loadavg", "r");
		char l[64] = "?";

		if (la) {
			if (!fgets(l, sizeof(l), la))
				snprintf(l, sizeof(l), "?");
			fclose(la);
			l[strcspn(l, "\n")] = '\0';
		}
		printf("%s batch %d, %d reps interleaved (loadavg after: %s):\n", model, batch, reps, l);
	}
	/* The sgemm peak at each count, after the runs: the same machine state the times saw. */
	for (int t = 0; t < nth; t++) {
		char what[64] = "";
		double pk;

		iap_threads_set(th[t]);
		pk = sgemm_peak(what, sizeof(what));
		printf("  %2d threads: sgemm peak %.1f GFLOP/s (%s)\n", th[t], pk, what);
	}
	for (int t = 0; t < nth; t++) {
		mf[t] = median(tf[t], reps);
		mg[t] = median(tg[t], reps);
		double lo = tf[t][0], hi = tf[t][0];

		for (int r = 1; r < reps; r++) {
			lo = tf[t][r] < lo ? tf[t][r] : lo;
			hi = tf[t][r] > hi ? tf[t][r] : hi;
		}
		printf("  %2d threads: forward %8.1f ms (x%.2f; %.1f-%.1f)", th[t], mf[t] * 1e3, mf[0] / mf[t],
		       lo * 1e3, hi * 1e3);
		if (!fwd_only)
			printf("   input x gradient %8.1f ms (x%.2f)", mg[t] * 1e3, mg[0] / mg[t]);
		printf("\n");
	}
	/*
	 * Where the work runs, independent of the load: the CPU time of each team
	 * thread over reps passes at the last count (see cpu_split).
	 */
	{
		struct pass_ctx pc = { .g = g, .x = &x };
		struct iap_registry *reg = iap_registry_new(&err);
		struct attr_plugin ap = { 0 };

		iap_threads_set(th[nth - 1]);
		rc = cpu_split("forward", th[nth - 1], pass_fwd, &pc, reps, &err);
		if (fwd_only)
			goto done;
		rc = rc ? rc : cpu_split("input x gradient walk", th[nth - 1], pass_grad, &pc, reps, &err);
		if (!rc && reg && attr_open(reg, "lrp", g, NULL, &ap, &err) == IAP_OK) {
			pc.ap = &ap;
			pc.scores = scores_new(g);
			rc = pc.scores ? cpu_split("LRP pass", th[nth - 1], pass_attr, &pc, reps, &err)
				       : iap_error_set(&err, IAP_ENOMEM, "scores");
			scores_free(g, pc.scores);
		}
		attr_close(&ap);
done:
		iap_registry_free(reg);
		iap_tensor_free(&pc.seed);
		iap_tensor_free(&pc.ixg);
		if (rc)
			fprintf(stderr, "bench_models: %s\n", err.msg);
	}
out:
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_tensor_free(&ixg);
	iap_graph_free(g);
	return rc ? 1 : 0;
}

/* Re-execute this program as a child for one row; read its struct row from a pipe. */
static int spawn_row(const char *self, const char *model, int batch, const struct bench_cfg *bc,
		     struct row *rw)
{
	int fd[2], status;
	pid_t pid;
	size_t got = 0;

	memset(rw, 0, sizeof(*rw));
	snprintf(rw->model, sizeof(rw->model), "%s", model);
	rw->batch = batch;
	if (pipe(fd))
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		char b[16], r[16], s[16], wfd[16];

		close(fd[0]);
		snprintf(b, sizeof(b), "%d", batch);
		snprintf(r, sizeof(r), "%d", bc->reps);
		snprintf(s, sizeof(s), "%d", bc->ig_steps);
		snprintf(wfd, sizeof(wfd), "%d", fd[1]);
		execl(self, self, "--child", model, b, r, s, wfd, (char *)NULL);
		_exit(127);
	}
	close(fd[1]);
	while (got < sizeof(*rw)) {
		ssize_t k = read(fd[0], (char *)rw + got, sizeof(*rw) - got);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	close(fd[0]);
	waitpid(pid, &status, 0);
	if (got != sizeof(*rw)) {
		memset(rw, 0, sizeof(*rw));
		snprintf(rw->model, sizeof(rw->model), "%s", model);
		rw->batch = batch;
		snprintf(rw->err, sizeof(rw->err), "child died (status %d)", status);
		for (int i = 0; i < T_COUNT; i++)
			rw->t[i] = -1.0;
		rw->torch_fwd = rw->torch_grad = -1.0;
	}
	return 0;
}

static int peer_available(void)
{
	return access(PYTHON, X_OK) == 0 &&
	       system(PYTHON " -c 'import torch, torchvision' >/dev/null 2>&1") == 0;
}

/* bench/peer_torch.py prints one line: "fwd <s> grad <s>". */
static void run_peer(struct row *rw, int threads, int reps)
{
	char cmd[8192], line[256];
	FILE *p;
	double f, gr;

	snprintf(cmd, sizeof(cmd), PYTHON " %s/peer_torch.py --model %s --batch %d --threads %d --reps %d",
		 IAP_BENCH_SRCDIR, rw->model, rw->batch, threads, reps);
	fflush(NULL);
	p = popen(cmd, "r");
	if (!p)
		return;
	while (fgets(line, sizeof(line), p))
		if (sscanf(line, "fwd %lf grad %lf", &f, &gr) == 2) {
			rw->torch_fwd = f;
			rw->torch_grad = gr;
		}
	pclose(p);
}

static void fmt_ms(char *buf, size_t len, double t)
{
	if (t < 0)
		snprintf(buf, len, "%9s", "-");
	else
		snprintf(buf, len, "%9.1f", t * 1e3);
}

static void fmt_ratio(char *buf, size_t len, double a, double b)
{
	if (a < 0 || b <= 0)
		snprintf(buf, len, "%6s", "-");
	else
		snprintf(buf, len, "%6.2f", a / b);
}

static void print_table(const struct row *rows, int n, double peak, int peer)
{
	char a[32], b[32];

	printf("\nTimes in ms (median). GF/s = 2*MACs/time; %%pk = fraction of the sgemm peak.\n");
	printf("ratio columns: time / forward time, or iaprune / PyTorch (< 1: iaprune faster).\n\n");
	printf("%-9s %3s %9s %7s %5s %9s %9s %9s %9s %9s %6s %6s %6s %7s\n", "model", "N", "fwd",
	       "GF/s", "%pk", "grad", "lrp", "dlb", "ig32", "torchfwd", "f/pt", "fg/pt", "lrp/f",
	       "ig/32fg");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		double gf = r->t[T_FWD] > 0 ? 2.0 * r->macs * r->batch / r->t[T_FWD] / 1e9 : 0.0;

		if (!r->ok && r->t[T_FWD] < 0) {
			printf("%-9s %3d  FAILED: %s\n", r->model, r->batch, r->err);
			continue;
		}
		printf("%-9s %3d", r->model, r->batch);
		fmt_ms(a, sizeof(a), r->t[T_FWD]);
		printf(" %s %7.1f %5.2f", a, gf, peak > 0 ? gf / peak : 0.0);
		fmt_ms(a, sizeof(a), r->t[T_GRAD]);
		printf(" %s", a);
		fmt_ms(a, sizeof(a), r->t[T_LRP]);
		printf(" %s", a);
		fmt_ms(a, sizeof(a), r->t[T_DLB]);
		printf(" %s", a);
		fmt_ms(a, sizeof(a), r->t[T_IG]);
		printf(" %s", a);
		fmt_ms(a, sizeof(a), r->torch_fwd);
		printf(" %s", peer ? a : "  skipped");
		fmt_ratio(a, sizeof(a), r->t[T_FWD], r->torch_fwd);
		fmt_ratio(b, sizeof(b), r->t[T_FWD] + r->t[T_GRAD],
			  r->torch_grad);
		printf(" %s %s", a, b);
		fmt_ratio(a, sizeof(a), r->t[T_LRP], r->t[T_FWD]);
		fmt_ratio(b, sizeof(b), r->t[T_IG], 32.0 * (r->t[T_FWD] + r->t[T_GRAD]));
		printf(" %s %7s\n", a, b);
	}
	printf("\n%-9s %3s %6s %9s %9s %9s %7s %9s %8s %8s %8s\n", "model", "N", "dlb/f", "masked",
	       "compact", "speedup", "macs%", "maxdiff", "rss_fwd", "rss_lrp", "rss_all");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];

		if (!r->ok && r->t[T_FWD] < 0)
			continue;
		printf("%-9s %3d", r->model, r->batch);
		fmt_ratio(a, sizeof(a), r->t[T_DLB], r->t[T_FWD]);
		printf(" %s", a);
		fmt_ms(a, sizeof(a), r->t[T_MASKED]);
		printf(" %s", a);
		fmt_ms(a, sizeof(a), r->t[T_COMPACT]);
		printf(" %s", a);
		fmt_ratio(a, sizeof(a), r->dense_paired, r->t[T_COMPACT]);
		printf("    %s %6.1f%% %9.2e %7.0fM %7.0fM %7.0fM\n", a,
		       r->macs > 0 ? 100.0 * r->compact_macs / r->macs : 0.0, r->compact_maxdiff,
		       r->rss_fwd_mb, r->rss_lrp_mb, r->rss_all_mb);
	}
	for (int i = 0; i < n; i++) {
		if (rows[i].err[0])
			printf("note: %s b%d: %s\n", rows[i].model, rows[i].batch, rows[i].err);
		for (int k = 0; k < T_COUNT; k++)
			if (rows[i].t_err[k][0])
				printf("note: %s b%d %s: %s\n", rows[i].model, rows[i].batch, t_names[k],
				       rows[i].t_err[k]);
		if (rows[i].ig_steps && rows[i].ig_steps != IG_FULL_STEPS && rows[i].t[T_IG] > 0)
			printf("note: %s b%d: IG ran %d steps, time scaled to 32\n", rows[i].model,
			       rows[i].batch, rows[i].ig_steps);
	}
}

/*
 * The scaling table: one line per thread count, forward ms of iaprune /
 * PyTorch per (model, batch), then each side's speed-up from the first
 * thread count to the last.
 */
static void print_scaling(const struct row *rows, int n, const double *peaks, const struct bench_cfg *bc)
{
	const int per = n / bc->n_threads;   /* rows per thread count, same order each time */
	char a[32], b[32];

	printf("\nScaling (forward ms, iaprune / PyTorch, same threads; sgemm peak on the engine's threads):\n");
	printf("%7s %9s", "threads", "peak GF/s");
	for (int i = 0; i < per; i++)
		printf(" | %8s b%-3d %-8s", rows[i].model, rows[i].batch, "");
	printf("\n");
	for (int t = 0; t < bc->n_threads; t++) {
		printf("%7d %9.1f", bc->threads[t], peaks[t]);
		for (int i = 0; i < per; i++) {
			const struct row *r = &rows[t * per + i];

			fmt_ms(a, sizeof(a), r->t[T_FWD]);
			fmt_ms(b, sizeof(b), r->torch_fwd);
			printf(" | %s / %s", a, b);
		}
		printf("\n");
	}
	if (bc->n_threads < 2)
		return;
	printf("%7s %9s", "speedup", "");
	for (int i = 0; i < per; i++) {
		const struct row *r0 = &rows[i], *r1 = &rows[(bc->n_threads - 1) * per + i];

		fmt_ratio(a, sizeof(a), r0->t[T_FWD], r1->t[T_FWD]);
		fmt_ratio(b, sizeof(b), r0->torch_fwd, r1->torch_fwd);
		printf(" |    %s /    %s", a, b);
	}
	printf("   (%d -> %d threads)\n", bc->threads[0], bc->threads[bc->n_threads - 1]);
}

static void json_num(FILE *js, const char *key, double v, int last)
{
	if (v < 0 || !isfinite(v))
		fprintf(js, "\"%s\": null%s", key, last ? "" : ", ");
	else
		fprintf(js, "\"%s\": %.6g%s", key, v, last ? "" : ", ");
}

static int write_json(const char *path, const struct row *rows, int n, const double *peaks,
		      const char *peak_what, int peer, const struct bench_cfg *bc)
{
	FILE *js = fopen(path, "w");
	double peak = peaks[0];

	if (!js)
		return -1;
	fprintf(js, "{\n  \"openblas_threads\": %d,\n  \"openblas_core\": \"%s\",\n", iap_threads_blas(),
		openblas_get_corename());
	fprintf(js, "  \"threads\": [");
	for (int t = 0; t < bc->n_threads; t++)
		fprintf(js, "%d%s", bc->threads[t], t + 1 < bc->n_threads ? ", " : "");
	fprintf(js, "],\n  \"sgemm_peak_gflops_per_threads\": [");
	for (int t = 0; t < bc->n_threads; t++)
		fprintf(js, "%.2f%s", peaks[t], t + 1 < bc->n_threads ? ", " : "");
	fprintf(js, "],\n");
	fprintf(js, "  \"openblas_coretype_env\": \"%s\",\n",
		getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "");
	fprintf(js, "  \"sgemm_peak_gflops\": %.2f,\n  \"sgemm_peak_shape\": \"%s\",\n", peak, peak_what);
	fprintf(js, "  \"reps\": %d,\n  \"ig_steps_run\": %d,\n  \"torch_peer\": %s,\n  \"rows\": [\n",
		bc->reps, bc->ig_steps, peer ? "true" : "false");
	for (int i = 0; i < n; i++) {
		const struct row *r = &rows[i];
		double gf = r->t[T_FWD] > 0 ? 2.0 * r->macs * r->batch / r->t[T_FWD] / 1e9 : -1.0;

		for (int t = 0; t < bc->n_threads; t++)
			if (bc->threads[t] == r->threads)
				peak = peaks[t];
		fprintf(js, "    {\"model\": \"%s\", \"batch\": %d, \"threads\": %d, \"ok\": %s, ", r->model,
			r->batch, r->threads, r->ok ? "true" : "false");
		json_num(js, "macs_per_sample", r->macs, 0);
		json_num(js, "params", r->params, 0);
		for (int k = 0; k < T_COUNT; k++) {
			char key[32];

			snprintf(key, sizeof(key), "%s_ms", t_names[k]);
			json_num(js, key, r->t[k] >= 0 ? r->t[k] * 1e3 : -1.0, 0);
		}
		json_num(js, "fwd_gflops", gf, 0);
		json_num(js, "fwd_peak_fraction", gf > 0 && peak > 0 ? gf / peak : -1.0, 0);
		json_num(js, "torch_fwd_ms", r->torch_fwd >= 0 ? r->torch_fwd * 1e3 : -1.0, 0);
		json_num(js, "torch_fwd_grad_ms", r->torch_grad >= 0 ? r->torch_grad * 1e3 : -1.0, 0);
		json_num(js, "fwd_ratio_vs_torch", r->torch_fwd > 0 && r->t[T_FWD] > 0 ?
			 r->t[T_FWD] / r->torch_fwd : -1.0, 0);
		json_num(js, "fwd_grad_ratio_vs_torch", r->torch_grad > 0 && r->t[T_GRAD] > 0 ?
			 (r->t[T_FWD] + r->t[T_GRAD]) / r->torch_grad : -1.0, 0);
		json_num(js, "compact_macs_per_sample", r->compact_macs, 0);
		json_num(js, "dense_forward_paired_s", r->dense_paired, 0);
		json_num(js, "compact_speedup", r->t[T_COMPACT] > 0 ? r->dense_paired / r->t[T_COMPACT] : -1.0, 0);
		json_num(js, "compact_max_rel_diff", r->compact_maxdiff, 0);
		json_num(js, "rss_fwd_mb", r->rss_fwd_mb, 0);
		json_num(js, "rss_lrp_mb", r->rss_lrp_mb, 0);
		json_num(js, "rss_all_mb", r->rss_all_mb, 1);
		fprintf(js, "}%s\n", i + 1 < n ? "," : "");
	}
	fprintf(js, "  ]\n}\n");
	return fclose(js);
}

static void usage(void)
{
	fprintf(stderr,
		"usage: bench_models [--quick] [--reps N] [--ig-steps N] [--batch N[,N]]\n"
		"                    [--models vgg19,resnet50,vit_b_16] [--no-peer] [--json PATH]\n"
		"                    [--threads N[,N...]]   (every row at each count; scaling table)\n"
		"       bench_models --profile MODEL [BATCH [REPS]]   (per-node forward times)\n"
		"       bench_models --profile-walk MODEL lrp|dlb [BATCH [REPS]]   (rule times of one pass)\n"
		"       bench_models --threads-ab MODEL [BATCH [REPS [T1,T2,...] [fwd]]]   (thread counts interleaved;\n"
		"                    fwd: the forward alone, no gradient or LRP pass)\n"
		"  --quick: batch 1 only, IG with 4 steps (time scaled to 32); also IAP_BENCH_QUICK=1\n");
}

static int parse_list(char *s, const char **out, int max)
{
	int n = 0;

	for (char *tok = strtok(s, ","); tok && n < max; tok = strtok(NULL, ","))
		out[n++] = tok;
	return n;
}

int main(int argc, char **argv)
{
	struct bench_cfg bc = {
		.reps = 3, .ig_steps = IG_FULL_STEPS, .batches = { 1, 16 }, .n_batches = 2,
		.models = { "vgg19", "resnet50", "vit_b_16" }, .n_models = 3, .peer = 1,
		.json = "bench/results.json",
	};
	static struct row rows[MAX_THREADS * 3 * MAX_BATCHES];
	char peak_what[64] = "", peak2_what[64] = "", self[4096];
	const char *q = getenv("IAP_BENCH_QUICK");
	int n = 0, peer, failed = 0;
	double peaks[MAX_THREADS];
	ssize_t sl;

	/* The kernels iaprune itself runs with (see <iaprune/blas.h>); children inherit the choice. */
	iap_blas_reexec(argv);
	if (argc == 7 && !strcmp(argv[1], "--child")) {
		struct row rw;
		size_t off = 0;
		int wfd = atoi(argv[6]);

		memset(&rw, 0, sizeof(rw));
		bc.reps = atoi(argv[4]);
		bc.ig_steps = atoi(argv[5]);
		child_run(argv[2], atoi(argv[3]), &bc, &rw);
		while (off < sizeof(rw)) {
			ssize_t k = write(wfd, (char *)&rw + off, sizeof(rw) - off);

			if (k <= 0)
				return 1;
			off += (size_t)k;
		}
		return rw.ok ? 0 : 1;
	}
	if (argc >= 3 && !strcmp(argv[1], "--profile"))
		return profile_model(argv[2], argc > 3 ? atoi(argv[3]) : 1, argc > 4 ? atoi(argv[4]) : 5);
	if (argc >= 3 && !strcmp(argv[1], "--threads-ab"))
		return threads_ab(argv[2], argc > 3 ? atoi(argv[3]) : 1, argc > 4 ? atoi(argv[4]) : 5,
				  argc > 5 ? argv[5] : "1,2", argc > 6 && !strcmp(argv[6], "fwd"));
	if (argc >= 4 && !strcmp(argv[1], "--profile-walk"))
		return profile_walk(argv[2], argv[3], argc > 4 ? atoi(argv[4]) : 1,
				    argc > 5 ? atoi(argv[5]) : 3);
	if (q && q[0] && strcmp(q, "0")) {
		bc.n_batches = 1;
		bc.ig_steps = 4;
	}
	for (int i = 1; i < argc; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(argv[i], "--quick")) {
			bc.n_batches = 1;
			bc.batches[0] = 1;
			bc.ig_steps = 4;
		} else if (!strcmp(argv[i], "--no-peer")) {
			bc.peer = 0;
		} else if (!strcmp(argv[i], "--reps") && v) {
			bc.reps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--ig-steps") && v) {
			bc.ig_steps = atoi(argv[++i]);
		} else if (!strcmp(argv[i], "--json") && v) {
			bc.json = argv[++i];
		} else if (!strcmp(argv[i], "--batch") && v) {
			const char *b[MAX_BATCHES];

			bc.n_batches = parse_list(argv[++i], b, MAX_BATCHES);
			for (int k = 0; k < bc.n_batches; k++)
				bc.batches[k] = atoi(b[k]);
		} else if (!strcmp(argv[i], "--models") && v) {
			bc.n_models = parse_list(argv[++i], bc.models, 3);
		} else if (!strcmp(argv[i], "--threads") && v) {
			const char *t[MAX_THREADS];

			bc.n_threads = parse_list(argv[++i], t, MAX_THREADS);
			for (int k = 0; k < bc.n_threads; k++) {
				bc.threads[k] = atoi(t[k]);
				if (bc.threads[k] < 1 || bc.threads[k] > IAP_THREADS_MAX) {
					usage();
					return 2;
				}
			}
		} else {
			usage();
			return 2;
		}
	}
	if (bc.reps < 1 || bc.reps > 64 || bc.ig_steps < 2) {
		usage();
		return 2;
	}
	sl = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (sl <= 0) {
		fprintf(stderr, "bench_models: cannot find /proc/self/exe\n");
		return 1;
	}
	self[sl] = '\0';

	/* The engine's default (IAPRUNE_THREADS, else every CPU); also puts OpenBLAS on one thread per call. */
	if (bc.n_threads == 0) {
		bc.threads[0] = iap_threads();
		bc.n_threads = 1;
	}
	iap_threads_set(bc.threads[0]);
	printf("bench_models: OpenBLAS %s, core %s (OPENBLAS_CORETYPE=%s), %d thread per call\n",
	       openblas_get_config(), openblas_get_corename(),
	       getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset", iap_threads_blas());
	printf("engine threads:");
	for (int t = 0; t < bc.n_threads; t++)
		printf(" %d", bc.threads[t]);
	printf(" (of %d CPUs available; GOMP_SPINCOUNT=%s)\n", iap_threads_available(),
	       getenv("GOMP_SPINCOUNT") ? getenv("GOMP_SPINCOUNT") : "unset");
	peer = bc.peer && peer_available();
	printf("PyTorch peer: %s\n", peer ? "torch (same thread count)" :
	       bc.peer ? "skipped (no torch/torchvision for " PYTHON ")" : "skipped (--no-peer)");
	fflush(stdout);

	for (int t = 0; t < bc.n_threads; t++) {
		char tv[16];

		/* The children read it when their engine starts (iap_threads()). */
		snprintf(tv, sizeof(tv), "%d", bc.threads[t]);
		setenv("IAPRUNE_THREADS", tv, 1);
		iap_threads_set(bc.threads[t]);
		peaks[t] = sgemm_peak(peak_what, sizeof(peak_what));
		printf("threads %d: sgemm peak %.1f GFLOP/s (%s)\n", bc.threads[t], peaks[t], peak_what);
		fflush(stdout);
		for (int m = 0; m < bc.n_models; m++)
			for (int b = 0; b < bc.n_batches; b++) {
				struct row *rw = &rows[n++];

				fprintf(stderr, "bench_models: %s batch %d, %d threads\n", bc.models[m],
					bc.batches[b], bc.threads[t]);
				if (spawn_row(self, bc.models[m], bc.batches[b], &bc, rw)) {
					fprintf(stderr, "bench_models: fork: %s\n", strerror(errno));
					return 1;
				}
				rw->threads = bc.threads[t];
				if (!rw->ok)
					failed = 1;
				if (peer)
					run_peer(rw, bc.threads[t], bc.reps);
			}
	}
	/* Measured again after the models: a peak taken while someone compiled does not count. */
	for (int t = 0; t < bc.n_threads; t++) {
		double peak2;

		iap_threads_set(bc.threads[t]);
		peak2 = sgemm_peak(peak2_what, sizeof(peak2_what));
		if (peak2 > peaks[t])
			peaks[t] = peak2;
	}
	for (int t = 0; t < bc.n_threads; t++) {
		const int per = n / bc.n_threads;

		printf("\n== %d threads: sgemm peak (best of before/after) %.1f GFLOP/s ==\n", bc.threads[t],
		       peaks[t]);
		print_table(rows + t * per, per, peaks[t], peer);
	}
	print_scaling(rows, n, peaks, &bc);
	if (write_json(bc.json, rows, n, peaks, peak_what, peer, &bc)) {
		fprintf(stderr, "bench_models: cannot write %s\n", bc.json);
		return 1;
	}
	printf("\nJSON: %s\n", bc.json);
	return failed;
}
