/* Shared inside host/report: lookups over the rows (rows.c) and the Markdown sections (tables.c). */
#ifndef IAP_REPORT_INTERNAL_H
#define IAP_REPORT_INTERNAL_H

#include <stdio.h>

#include <iaprune/report.h>

/* ---- rows.c ---- */
/* Row with the same configuration and (to rounding) the same rate, or NULL. */
const struct iap_report_row *iap_report_find_row(const struct iap_report *r, const struct iap_report_row *cfg,
						 double rate);
/* Index of the first row of each distinct configuration, in first-seen order; returns the count. */
int iap_report_configs(const struct iap_report *r, int *first);
/* The configuration's lossless threshold entry, or NULL. */
const struct iap_report_threshold *iap_report_threshold_of(const struct iap_report *r,
							     const struct iap_report_row *cfg);
/* v with fmt, or "n/a" when not finite. */
void iap_report_md_value(FILE *f, double v, const char *fmt);
/* 1234567 → "1.23 M". */
void iap_report_human(char *buf, size_t len, double v);
/* ---- report.c ---- */
/* A CSV field, quoted when it holds a comma, quote or newline. */
void iap_report_csv_field(FILE *f, const char *s);
/* 1 for the data-free baselines (magnitude, random). */
int iap_report_is_baseline(const char *attribution);

/* Markdown sections (tables.c). */
void iap_report_md_baseline_stats(const struct iap_report *r, FILE *f);
void iap_report_md_table1(const struct iap_report *r, FILE *f, const int *first, int n_cfg);
void iap_report_md_summary(const struct iap_report *r, FILE *f, const int *first, int n_cfg);
void iap_report_md_row_stats(const struct iap_report *r, FILE *f, const int *first, int n_cfg);
void iap_report_md_explanation(const struct iap_report *r, FILE *f);
void iap_report_md_latency(const struct iap_report *r, FILE *f);
/* The whole of report.md on f (report.html converts it). */
int iap_report_md_stream(const struct iap_report *r, FILE *f, struct iap_error *err);

#endif
