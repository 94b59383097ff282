/*
 * iaprune — a CSV reader for dataset label files (RFC 4180).
 *
 * Comma-separated fields; a field may be enclosed in double quotes, and then
 * holds commas, line breaks and "" (one quote). Lines end in LF or CRLF; the
 * last line's end is optional. The first record is the header row, naming
 * the columns; every later record must have as many fields. A UTF-8 byte
 * order mark at the start is skipped, empty lines are skipped. A quote
 * inside an unquoted field, anything but a comma or line end after a closing
 * quote, and a quote left open at the end of the file are errors naming the
 * file and line ("labels.csv:7: unterminated quoted field (opened here)").
 *
 * The file is read whole (at most IAP_CSV_MAX_FILE bytes); rows are parsed
 * one at a time into buffers that grow to the widest row and are reused.
 */
#ifndef IAPRUNE_CSV_H
#define IAPRUNE_CSV_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IAP_CSV_MAX_FILE ((size_t)1 << 30)
#define IAP_CSV_MAX_FIELD ((size_t)1 << 20)   /* bytes in one field */
#define IAP_CSV_MAX_COLUMNS 4096

struct iap_csv;  /* opaque */

/* One record. Valid until the next iap_csv_next or iap_csv_close. */
struct iap_csv_row {
	int n_fields;
	const char *const *fields;  /* NUL-terminated, quotes removed */
	const size_t *lengths;      /* bytes in each field (NUL bytes are refused, so = strlen) */
	long line;                  /* 1-based line on which the record starts */
};

/* Open a file and read its header row. */
int iap_csv_open(const char *path, struct iap_csv **out, struct iap_error *err);

/* The same over a copy of buf; name is used in messages. */
int iap_csv_open_mem(const char *buf, size_t len, const char *name, struct iap_csv **out,
		     struct iap_error *err);

void iap_csv_close(struct iap_csv *csv);

/* Number of columns and the header of column i (NULL when out of range). */
int iap_csv_columns(const struct iap_csv *csv);
const char *iap_csv_header(const struct iap_csv *csv, int i);

/*
 * Index of the column named name (exact match), or -1 with an error naming
 * the file, the column and the columns there are.
 */
int iap_csv_column(const struct iap_csv *csv, const char *name, struct iap_error *err);

/*
 * Read the next record into *row; *row is NULL at the end of the file.
 * Returns IAP_OK or an error (file:line in the message).
 */
int iap_csv_next(struct iap_csv *csv, const struct iap_csv_row **row, struct iap_error *err);

/* Start again at the first record after the header. */
void iap_csv_rewind(struct iap_csv *csv);

/*
 * Field col of row as a whole decimal integer / finite number (surrounding
 * spaces allowed). Errors say "file:line: column 'name': 'text' is not an
 * integer".
 */
int iap_csv_long(const struct iap_csv *csv, const struct iap_csv_row *row, int col, long *v,
		 struct iap_error *err);
int iap_csv_double(const struct iap_csv *csv, const struct iap_csv_row *row, int col, double *v,
		   struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_CSV_H */
