/*
 * Lookups over a report's rows, by configuration key, and the number
 * formats every section shares. Below report.c and tables.c both, so the
 * sections and the file writers do not call each other in a circle.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>

#include "internal.h"

/* Row of cfg's configuration (its config key) at (to rounding) rate, or NULL. */
const struct iap_report_row *iap_report_find_row(const struct iap_report *r, const struct iap_report_row *cfg,
						 double rate)
{
	for (int i = 0; i < r->n_rows; i++) {
		const struct iap_report_row *row = &r->rows[i];

		if (row->config == cfg->config && fabs(row->rate - rate) < 1e-9)
			return row;
	}
	return NULL;
}

/* Index of the first row of each distinct configuration, in first-seen order. */
int iap_report_configs(const struct iap_report *r, int *first)
{
	int n = 0;

	for (int i = 0; i < r->n_rows; i++) {
		int seen = 0;

		for (int k = 0; k < n && !seen; k++) {
			const struct iap_report_row *a = &r->rows[first[k]], *b = &r->rows[i];

			seen = a->config == b->config;
		}
		if (!seen)
			first[n++] = i;
	}
	return n;
}

const struct iap_report_threshold *iap_report_threshold_of(const struct iap_report *r,
							     const struct iap_report_row *cfg)
{
	for (int i = 0; i < r->n_thresholds; i++) {
		const struct iap_report_threshold *t = &r->thresholds[i];

		if (t->config == cfg->config)
			return t;
	}
	return NULL;
}

void iap_report_md_value(FILE *f, double v, const char *fmt)
{
	if (isfinite(v))
		fprintf(f, fmt, v);
	else
		fputs("n/a", f);
}

void iap_report_human(char *buf, size_t len, double v)
{
	if (v >= 1e9)
		snprintf(buf, len, "%.2f G", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, len, "%.2f M", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.1f k", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
}
