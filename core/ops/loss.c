/*
 * iaprune — the training loss: PyTorch's cross_entropy with optional class
 * weights and mean reduction,
 *   L = Σ_n w[y_n]·(−log softmax(x_n)[y_n]) / Σ_n w[y_n],
 *   dL/dx_n = (softmax(x_n) − onehot(y_n))·w[y_n] / Σ_n w[y_n].
 * The log-softmax is computed stably (log-sum-exp around the row maximum) in
 * double.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>

#include <iaprune/ops.h>
#include <iaprune/tensor.h>

int iap_cross_entropy(const struct iap_tensor *logits, const int *labels,
		      const float *class_weights, float *loss, struct iap_tensor *grad,
		      struct iap_error *err)
{
	if (!logits || !logits->data || !labels || !loss)
		return iap_error_set(err, IAP_EINVAL, "cross_entropy: logits, labels and loss are required");
	if (logits->ndim != 2 || logits->shape[0] < 1 || logits->shape[1] < 1) {
		char buf[96];
		return iap_error_set(err, IAP_ESHAPE, "cross_entropy: logits must be [N, C], got %s",
				     iap_tensor_shape_str(logits, buf, sizeof(buf)));
	}
	int64_t n = logits->shape[0], c = logits->shape[1];
	const float *x = logits->data;

	/* Validate every label before touching *loss or grad. */
	double wsum = 0.0;
	for (int64_t i = 0; i < n; i++) {
		if (labels[i] < 0 || labels[i] >= c)
			return iap_error_set(err, IAP_EINVAL,
					     "cross_entropy: sample %lld has label %d, outside [0, %lld)",
					     (long long)i, labels[i], (long long)c);
		wsum += class_weights ? class_weights[labels[i]] : 1.0;
	}
	/* PyTorch would return 0/0 = NaN here; refuse instead of training on it. */
	if (wsum == 0.0)
		return iap_error_set(err, IAP_EINVAL,
				     "cross_entropy: the class weights of the batch's labels sum to 0");

	if (grad) {
		int rc = iap_tensor_ensure(grad, 2, logits->shape, err);
		if (rc)
			return rc;
	}

	double total = 0.0;
	for (int64_t i = 0; i < n; i++) {
		const float *xp = x + i * c;
		int y = labels[i];
		double w = class_weights ? class_weights[y] : 1.0;
		double mx = xp[0];
		for (int64_t k = 1; k < c; k++)
			if (xp[k] > mx)
				mx = xp[k];
		double se = 0.0;
		for (int64_t k = 0; k < c; k++)
			se += exp((double)xp[k] - mx);
		double lse = mx + log(se);
		total += w * (lse - xp[y]);

		if (grad) {
			float *gp = grad->data + i * c;
			double scale = w / wsum;
			for (int64_t k = 0; k < c; k++) {
				double p = exp((double)xp[k] - lse);
				gp[k] = (float)((p - (k == y ? 1.0 : 0.0)) * scale);
			}
		}
	}
	*loss = (float)(total / wsum);
	if (!isfinite(*loss))
		return iap_error_set(err, IAP_ENUMERIC, "cross_entropy: loss is not finite (%g)",
				     (double)*loss);
	return IAP_OK;
}
