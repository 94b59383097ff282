/*
 * Per-image predictions and forward latency (see host/include/iaprune/predict.h).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <iaprune/ops.h>
#include <iaprune/predict.h>
#include <iaprune/stats.h>

int iap_predict(struct iap_graph *g, const struct iap_dataset *ds, int batch, float *probs, int *labels,
		struct iap_error *err)
{
	struct iap_tensor x = { 0 };
	int64_t shape[IAP_MAX_DIMS], per = 1;
	int c = ds->info.n_classes, training = g->training, rc = IAP_OK;

	if (batch < 1)
		return iap_error_set(err, IAP_EINVAL, "predict: batch must be >= 1 (got %d)", batch);
	for (int i = 0; i < ds->info.in_ndim; i++) {
		shape[i + 1] = ds->info.in_shape[i];
		per *= ds->info.in_shape[i];
	}
	iap_graph_set_training(g, 0);
	for (int64_t start = 0; !rc && start < ds->count; start += batch) {
		int n = (int)(ds->count - start < batch ? ds->count - start : batch);
		const struct iap_tensor *out;

		shape[0] = n;
		rc = iap_tensor_ensure(&x, ds->info.in_ndim + 1, shape, err);
		for (int j = 0; !rc && j < n; j++)
			rc = ds->ops->load(ds->state, start + j, x.data + (int64_t)j * per, &labels[start + j], err);
		rc = rc ? rc : iap_graph_forward(g, &x, err);
		if (rc)
			break;
		out = iap_graph_output(g);
		if (out->ndim != 2 || out->shape[0] != n || out->shape[1] != c) {
			rc = iap_error_set(err, IAP_EINVAL, "predict: the model gives %lld outputs per image, the dataset has %d classes",
					   (long long)(out->ndim == 2 ? out->shape[1] : -1), c);
			break;
		}
		iap_softmax_rows(out->data, probs + start * c, n, c);
	}
	iap_graph_set_training(g, training);
	iap_tensor_free(&x);
	return rc;
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
