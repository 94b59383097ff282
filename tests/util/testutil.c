#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/blas.h>
#include <iaprune/threads.h>

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

/* One probe product: 1 when 2 and 3 threads give the 1-thread bits. */
static int split_exact_on(int m, int n, int k, int ta, int tb)
{
	float *a = malloc((size_t)m * k * sizeof(float)), *b = malloc((size_t)k * n * sizeof(float));
	float *ref = malloc((size_t)m * n * sizeof(float)), *c = malloc((size_t)m * n * sizeof(float));
	struct iap_rng r;
	int same = a && b && ref && c;

	iap_rng_seed(&r, 77);
	if (same) {
		tu_fill_uniform(a, (size_t)m * k, &r, -0.5f, 0.5f);
		tu_fill_uniform(b, (size_t)k * n, &r, -0.5f, 0.5f);
	}
	for (int t = 1; t <= 3 && same; t++) {
		iap_threads_set(t);
		iap_sgemm(ta, tb, m, n, k, 1.0f, a, ta ? m : k, b, tb ? k : n, 0.0f, t == 1 ? ref : c, n);
		if (t > 1)
			same = memcmp(ref, c, (size_t)m * n * sizeof(float)) == 0;
	}
	free(a);
	free(b);
	free(ref);
	free(c);
	return same;
}

int tu_blas_split_exact(void)
{
	static int known = -1;

	if (known < 0) {
		const int before = iap_threads();

		known = split_exact_on(771, 384, 128, 0, 1) && split_exact_on(203, 517, 96, 1, 0) &&
			split_exact_on(1000, 61, 300, 0, 1);
		iap_threads_set(before);
		printf("# OpenBLAS kernels %s: %s\n", iap_blas_core(),
		       known ? "split products keep their bits (thread counts compared bit for bit)"
			     : "split products round differently (thread counts compared within float rounding)");
	}
	return known;
}

int tu_thread_match(const float *ref, const float *got, size_t n, double tol, const char *what)
{
	double big = 0.0, d;
	size_t at = 0;

	for (size_t i = 0; i < n; i++)
		if (fabs(ref[i]) > big)
			big = fabs(ref[i]);
	d = tu_max_abs_diff(ref, got, n, &at);
	printf("# %s: max difference %.3g (%.3g of the largest |value| %.3g)\n", what, d,
	       big > 0 ? d / big : d, big);
	if (tu_blas_split_exact())
		return memcmp(ref, got, n * sizeof(float)) == 0;
	return d <= tol * (big > 0 ? big : 1.0);
}
