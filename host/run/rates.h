/*
 * The rates a sweep evaluates: the pipeline's table rates (pruning.rates)
 * and, with pruning.curve, the fine curve 0, step, 2 step, ... up to 0.95;
 * sorted, duplicates (to 1e-9) removed. Internal to the host library.
 */
#ifndef IAP_RUN_RATES_H
#define IAP_RUN_RATES_H

#include <iaprune/error.h>

/* Into *out (malloc'd, *n_out entries); IAP_ENOMEM when out of memory. */
int iap_rate_grid(const double *table, int n_table, int curve, double step, double **out, int *n_out,
		  struct iap_error *err);

#endif
