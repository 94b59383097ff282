#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

void tu_fill_uniform(float *p, size_t n, struct iap_rng *r, float lo, float hi)
{
	for (size_t i = 0; i < n; i++)
		p[i] = lo + (hi - lo) * iap_rng_uniform(r);
}

void tu_randomize_params(struct iap_graph *g, uint64_t seed, float scale)
{
	struct iap_rng r;

	iap_rng_seed(&r, seed);
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			struct iap_param *p = &g->nodes[i].params[k];
			size_t n = (size_t)iap_tensor_numel(&p->value);
			const char *dot = strrchr(p->key, '.');
			const char *leaf = dot ? dot + 1 : p->key;

			if (strcmp(leaf, "running_var") == 0)
				tu_fill_uniform(p->value.data, n, &r, 0.5f, 1.5f);
			else if (strcmp(leaf, "running_mean") == 0)
				tu_fill_uniform(p->value.data, n, &r, -0.5f, 0.5f);
			else
				tu_fill_uniform(p->value.data, n, &r, -scale, scale);
		}
}

struct iap_tensor tu_rand_tensor(uint64_t seed, int ndim, ...)
{
	struct iap_tensor t = { 0 };
	int64_t shape[IAP_MAX_DIMS];
	struct iap_error err;
	struct iap_rng r;
	va_list ap;

	va_start(ap, ndim);
	for (int i = 0; i < ndim; i++)
		shape[i] = va_arg(ap, int64_t);
	va_end(ap);
	if (iap_tensor_alloc(&t, ndim, shape, &err)) {
		fprintf(stderr, "tu_rand_tensor: %s\n", err.msg);
		abort();
	}
	iap_rng_seed(&r, seed);
	tu_fill_uniform(t.data, (size_t)iap_tensor_numel(&t), &r, -1.0f, 1.0f);
	return t;
}

double tu_max_abs_diff(const float *a, const float *b, size_t n, size_t *where)
{
	double worst = 0.0;
	size_t at = 0;

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);

		if (d > worst || isnan(d)) {
			worst = isnan(d) ? INFINITY : d;
			at = i;
		}
	}
	if (where)
		*where = at;
	return worst;
}
