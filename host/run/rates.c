/* The sweep's rates (see rates.h). */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include "rates.h"

/* The curve's last rate is 0.95 (iaprune-pipeline(5)); 0.96 leaves room for rounding. */
#define CURVE_END 0.96

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int iap_rate_grid(const double *table, int n_table, int curve, double step, double **out, int *n_out,
		  struct iap_error *err)
{
	int n_curve = curve && step > 0 ? (int)ceil(CURVE_END / step) + 1 : 0, n = 0, m = 0;
	double *v = calloc((size_t)n_table + (size_t)n_curve + 1, sizeof(double));

	*out = NULL;
	*n_out = 0;
	if (!v)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (int i = 0; i < n_table; i++)
		v[n++] = table[i];
	for (int k = 0; k < n_curve && k * step < CURVE_END; k++)
		v[n++] = round(k * step * 1e6) / 1e6;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	for (int i = 0; i < n; i++)
		if (m == 0 || fabs(v[i] - v[m - 1]) > 1e-9)
			v[m++] = v[i];
	*out = v;
	*n_out = m;
	return IAP_OK;
}
