/*
 * Per-image predictions and forward latency (see host/include/iaprune/predict.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <iaprune/ops.h>
#include <iaprune/predict.h>
#include <iaprune/stats.h>
#include <iaprune/threads.h>

#include "predict_split.h"
#include "replica.h"

/*
 * Two ways to use the threads on a batch. Splitting each op (the default
 * everywhere else) forks and joins the team once or more per op; a small
 * model (the default pipeline's VGG-11 at 1/8 width on 32² images) has ops
 * of a few microseconds, so the joins and the loops too small to split
 * leave cores idle. Slicing the batch (one slice per thread, each through a
 * replica of the graph with its own activations, ops single-threaded
 * inside) joins once per batch. Every op chooses its algorithm for the
 * whole batch (iap_plan_batch_set, threads.h), and the products sum each output in the same
 * order whatever their width, so both ways give the same bits.
 */

/* Samples a slice must have at least: fewer and the slices' products get too thin to run at speed. */
#define SLICE_MIN_SAMPLES 16
#define SLICE_ALIGN 16

/* Slices for a batch of n: one per thread, each with enough work (a grain of products) and samples. */
static int slices_for(const struct iap_graph *g, int n, enum iap_eval_split how)
{
	double flop = 2.0 * (double)iap_graph_macs(g) * n;
	int t;

	if (how == IAP_EVAL_SPLIT_OPS)
		return 1;
	t = iap_par_threads(flop, IAP_GEMM_GRAIN);
	if (t > n / SLICE_MIN_SAMPLES)
		t = n / SLICE_MIN_SAMPLES;
	return t < 1 ? 1 : t;
}

/* The replicas for ns slices: slice 0 runs on g itself; made once per call and kept for every batch. */
static int slices_ensure(struct iap_graph *g, struct iap_graph ***reps, int *n_reps, int ns, struct iap_error *err)
{
	struct iap_graph **r;

	if (ns <= *n_reps)
		return IAP_OK;
	r = realloc(*reps, (size_t)ns * sizeof(*r));
	if (!r)
		return iap_error_set(err, IAP_ENOMEM, "predict: out of memory");
	*reps = r;
	if (*n_reps == 0)
		r[(*n_reps)++] = g;
	while (*n_reps < ns) {
		r[*n_reps] = iap_eval_replica_new(g, err);
		if (!r[*n_reps])
			return err ? err->code : IAP_ENOMEM;
		(*n_reps)++;
	}
	return IAP_OK;
}

static void slices_free(struct iap_graph **reps, int n_reps)
{
	for (int i = 1; i < n_reps; i++)
		iap_eval_replica_free(reps[i]);
	free(reps);
}

/* The model's logits for one batch (or slice) x, checked against c classes, as softmax rows into probs. */
static int forward_rows(struct iap_graph *g, const struct iap_tensor *x, int c, float *probs, struct iap_error *err)
{
	const struct iap_tensor *out;
	int n = (int)x->shape[0];
	int rc = iap_graph_forward(g, x, err);

	if (rc)
		return rc;
	out = iap_graph_output(g);
	if (out->ndim != 2 || out->shape[0] != n || out->shape[1] != c)
		return iap_error_set(err, IAP_EINVAL, "predict: the model gives %lld outputs per image, the dataset has %d classes",
				     (long long)(out->ndim == 2 ? out->shape[1] : -1), c);
	iap_softmax_rows(out->data, probs, n, c);
	return IAP_OK;
}

/*
 * First sample of slice s of ns: slices of ⌈n / ns⌉ rounded up to SLICE_ALIGN
 * samples, the last one shorter. Aligned starts keep every sample in the
 * same vector lanes of a product as in the whole batch (OpenBLAS sums a
 * column in another order when it falls elsewhere: bench/NOTES.md).
 */
static int slice_start(int n, int ns, int s)
{
	const int64_t len = ((int64_t)n + ns - 1) / ns, step = (len + SLICE_ALIGN - 1) / SLICE_ALIGN * SLICE_ALIGN;

	return (int64_t)s * step < n ? (int)((int64_t)s * step) : n;
}

/* Slice s of ns of the batch x runs on reps[s]; one parallel region for the batch. */
static int forward_sliced(struct iap_graph **reps, int ns, const struct iap_tensor *x, int64_t per, int c,
			  float *probs, struct iap_error *err)
{
	const int n = (int)x->shape[0];
	struct iap_error *errs = calloc((size_t)ns, sizeof(*errs));
	int *rcs = calloc((size_t)ns, sizeof(*rcs));
	int rc = IAP_OK;

	if (!errs || !rcs) {
		free(errs);
		free(rcs);
		return iap_error_set(err, IAP_ENOMEM, "predict: out of memory");
	}
#pragma omp parallel num_threads(ns)
	{
		int t0 = 0, step = 1;

#ifdef _OPENMP
		t0 = omp_get_thread_num();
		step = omp_get_num_threads();
#endif
		/* Every slice is run even when the runtime gave fewer threads than asked. */
		for (int s = t0; s < ns; s += step) {
			const int lo = slice_start(n, ns, s), hi = slice_start(n, ns, s + 1);
			struct iap_tensor v = *x;

			if (hi <= lo)
				continue;
			v.shape[0] = hi - lo;
			v.data = x->data + (int64_t)lo * per;
			v.owns = 0;
			v.cap = 0;
			iap_plan_batch_set(n);
			rcs[s] = forward_rows(reps[s], &v, c, probs + (int64_t)lo * c, &errs[s]);
			iap_plan_batch_set(0);
		}
	}
	for (int s = 0; s < ns && !rc; s++)
		if (rcs[s]) {
			rc = rcs[s];
			if (err)
				*err = errs[s];
		}
	free(errs);
	free(rcs);
	return rc;
}

int iap_predict_split(struct iap_graph *g, const struct iap_dataset *ds, int batch, enum iap_eval_split how,
		      float *probs, int *labels, struct iap_error *err)
{
	struct iap_tensor x = { 0 };
	struct iap_graph **reps = NULL;
	int64_t shape[IAP_MAX_DIMS], per = 1;
	int c = ds->info.n_classes, training = g->training, rc = IAP_OK, n_reps = 0;

	if (batch < 1)
		return iap_error_set(err, IAP_EINVAL, "predict: batch must be >= 1 (got %d)", batch);
	for (int i = 0; i < ds->info.in_ndim; i++) {
		shape[i + 1] = ds->info.in_shape[i];
		per *= ds->info.in_shape[i];
	}
	iap_graph_set_training(g, 0);
	for (int64_t start = 0; !rc && start < ds->count; start += batch) {
		int n = (int)(ds->count - start < batch ? ds->count - start : batch);
		int ns = slices_for(g, n, how);

		if (how == IAP_EVAL_SPLIT_BATCH && ns < 2 && n >= 2 * SLICE_MIN_SAMPLES)
			ns = 2;   /* asked for: the tests compare the two ways on small models */
		shape[0] = n;
		rc = iap_tensor_ensure(&x, ds->info.in_ndim + 1, shape, err);
		/* The dataset is read on this thread: plugins need not be thread-safe. */
		for (int j = 0; !rc && j < n; j++)
			rc = ds->ops->load(ds->state, start + j, x.data + (int64_t)j * per, &labels[start + j], err);
		if (!rc && ns > 1)
			rc = slices_ensure(g, &reps, &n_reps, ns, err);
		if (rc)
			break;
		rc = ns > 1 ? forward_sliced(reps, ns, &x, per, c, probs + start * c, err)
			    : forward_rows(g, &x, c, probs + start * c, err);
	}
	slices_free(reps, n_reps);
	iap_graph_set_training(g, training);
	iap_tensor_free(&x);
	return rc;
}

int iap_predict(struct iap_graph *g, const struct iap_dataset *ds, int batch, float *probs, int *labels,
		struct iap_error *err)
{
	return iap_predict_split(g, ds, batch, IAP_EVAL_SPLIT_AUTO, probs, labels, err);
}

void iap_predict_argmax(const float *probs, int64_t n, int c, int *pred, float *conf)
{
	for (int64_t i = 0; i < n; i++) {
		const float *p = probs + i * c;
		int best = 0;

		for (int k = 1; k < c; k++)
			if (p[k] > p[best])
				best = k;
		pred[i] = best;
		if (conf)
			conf[i] = p[best];
	}
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int iap_forward_latency(struct iap_graph *g, const struct iap_tensor *x, int repeats, double *median_ms,
			struct iap_error *err)
{
	double *t;
	int training = g->training, rc;

	if (repeats < 1)
		return iap_error_set(err, IAP_EINVAL, "latency: repeats must be >= 1 (got %d)", repeats);
	t = malloc((size_t)repeats * sizeof(*t));
	if (!t)
		return iap_error_set(err, IAP_ENOMEM, "latency: out of memory");
	iap_graph_set_training(g, 0);
	/* The warm-up allocates the activations and faults in the weights. */
	rc = iap_graph_forward(g, x, err);
	for (int i = 0; !rc && i < repeats; i++) {
		double t0 = now_ms();

		rc = iap_graph_forward(g, x, err);
		t[i] = now_ms() - t0;
	}
	iap_graph_set_training(g, training);
	if (!rc)
		*median_ms = iap_percentile(t, repeats, 50);
	free(t);
	return rc;
}
