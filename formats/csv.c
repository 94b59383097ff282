/*
 * RFC 4180 CSV reader (see include/iaprune/csv.h).
 *
 * The whole file sits in one buffer; a record is unquoted into a text
 * buffer (fields separated by NULs) that grows to the longest record and is
 * then reused, so reading a file allocates a handful of times, not per row.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iaprune/csv.h>

#include "file.h"

struct iap_csv {
	char *name;
	char *buf;
	size_t len, pos;
	long line;                /* line of buf[pos] */
	size_t body_pos;          /* first byte after the header row */
	long body_line;

	int n_cols;
	char **headers;

	char *text;               /* current record, unquoted, NUL after each field */
	size_t text_len, text_cap;
	size_t *offs, *lens;
	const char **fields;
	int fields_cap;
	struct iap_csv_row row;
};

static int text_put(struct iap_csv *c, char ch, struct iap_error *err)
{
	if (c->text_len == c->text_cap) {
		size_t cap = c->text_cap ? c->text_cap * 2 : 256;
		char *t = realloc(c->text, cap);

		if (!t)
			return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", c->name);
		c->text = t;
		c->text_cap = cap;
	}
	c->text[c->text_len++] = ch;
	return IAP_OK;
}

static int field_begin(struct iap_csv *c, int nf, struct iap_error *err)
{
	if (nf >= IAP_CSV_MAX_COLUMNS)
		return iap_error_set(err, IAP_ELIMIT, "%s:%ld: more than %d fields", c->name,
				     c->row.line, IAP_CSV_MAX_COLUMNS);
	if (nf == c->fields_cap) {
		int cap = c->fields_cap ? c->fields_cap * 2 : 16;
		size_t *o = realloc(c->offs, sizeof(*o) * (size_t)cap);
		size_t *l;
		const char **f;

		if (o)
			c->offs = o;
		l = o ? realloc(c->lens, sizeof(*l) * (size_t)cap) : NULL;
		if (l)
			c->lens = l;
		f = l ? realloc(c->fields, sizeof(*f) * (size_t)cap) : NULL;
		if (!f)
			return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", c->name);
		c->fields = f;
		c->fields_cap = cap;
	}
	c->offs[nf] = c->text_len;
	return IAP_OK;
}

/* 1 when buf[pos] starts a line break (LF or CRLF). */
static int at_eol(const struct iap_csv *c, size_t pos)
{
	return c->buf[pos] == '\n' ||
	       (c->buf[pos] == '\r' && pos + 1 < c->len && c->buf[pos + 1] == '\n');
}

static void skip_eol(struct iap_csv *c)
{
	c->pos += c->buf[c->pos] == '\r' ? 2 : 1;
	c->line++;
}

/* Parse one record into c->row; *got = 0 at the end of the file. */
static int parse_record(struct iap_csv *c, int *got, struct iap_error *err)
{
	int nf = 0, rc;

	*got = 0;
	while (c->pos < c->len && at_eol(c, c->pos))
		skip_eol(c);  /* empty lines */
	if (c->pos >= c->len)
		return IAP_OK;
	c->row.line = c->line;
	c->text_len = 0;
	for (;;) {
		rc = field_begin(c, nf, err);
		if (rc)
			return rc;
		if (c->pos < c->len && c->buf[c->pos] == '"') {
			long opened = c->line;

			c->pos++;
			for (;;) {
				char ch;

				if (c->pos >= c->len)
					return iap_error_set(err, IAP_EFORMAT,
							     "%s:%ld: unterminated quoted field (opened here)",
							     c->name, opened);
				ch = c->buf[c->pos++];
				if (ch == '"') {
					if (c->pos < c->len && c->buf[c->pos] == '"')
						c->pos++;  /* "" is one quote */
					else
						break;
				} else if (ch == '\n') {
					c->line++;
				} else if (ch == '\0') {
					return iap_error_set(err, IAP_EFORMAT, "%s:%ld: NUL byte", c->name,
							     c->line);
				}
				rc = text_put(c, ch, err);
				if (rc)
					return rc;
			}
			if (c->pos < c->len && c->buf[c->pos] != ',' && !at_eol(c, c->pos))
				return iap_error_set(err, IAP_EFORMAT,
						     "%s:%ld: unexpected '%c' after closing quote of field %d",
						     c->name, c->line, c->buf[c->pos], nf + 1);
		} else {
			while (c->pos < c->len && c->buf[c->pos] != ',' && !at_eol(c, c->pos)) {
				char ch = c->buf[c->pos++];

				if (ch == '"')
					return iap_error_set(err, IAP_EFORMAT,
							     "%s:%ld: quote inside unquoted field %d",
							     c->name, c->line, nf + 1);
				if (ch == '\0')
					return iap_error_set(err, IAP_EFORMAT, "%s:%ld: NUL byte", c->name,
							     c->line);
				rc = text_put(c, ch, err);
				if (rc)
					return rc;
			}
		}
		c->lens[nf] = c->text_len - c->offs[nf];
		if (c->lens[nf] > IAP_CSV_MAX_FIELD)
			return iap_error_set(err, IAP_ELIMIT, "%s:%ld: field %d longer than %zu bytes",
					     c->name, c->row.line, nf + 1, IAP_CSV_MAX_FIELD);
		rc = text_put(c, '\0', err);
		if (rc)
			return rc;
		nf++;
		if (c->pos < c->len && c->buf[c->pos] == ',') {
			c->pos++;
			continue;  /* a trailing comma makes one more (empty) field */
		}
		if (c->pos < c->len)
			skip_eol(c);
		break;
	}
	/* The text buffer may have moved while growing: point into it only now. */
	for (int i = 0; i < nf; i++)
		c->fields[i] = c->text + c->offs[i];
	c->row.n_fields = nf;
	c->row.fields = c->fields;
	c->row.lengths = c->lens;
	*got = 1;
	return IAP_OK;
}

static int read_header(struct iap_csv *c, struct iap_error *err)
{
	int got, rc;

	rc = parse_record(c, &got, err);
	if (rc)
		return rc;
	if (!got)
		return iap_error_set(err, IAP_EFORMAT, "%s: empty file (no header row)", c->name);
	c->headers = calloc((size_t)c->row.n_fields, sizeof(*c->headers));
	if (!c->headers)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", c->name);
	for (int i = 0; i < c->row.n_fields; i++) {
		for (int j = 0; j < i; j++)
			if (!strcmp(c->headers[j], c->row.fields[i]))
				return iap_error_set(err, IAP_EFORMAT,
						     "%s:%ld: duplicate column '%s' (columns %d and %d)",
						     c->name, c->row.line, c->headers[j], j + 1, i + 1);
		c->headers[i] = strdup(c->row.fields[i]);
		if (!c->headers[i])
			return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", c->name);
		c->n_cols = i + 1;
	}
	c->body_pos = c->pos;
	c->body_line = c->line;
	return IAP_OK;
}

/* Takes ownership of buf (malloc'd, len bytes). */
static int csv_start(char *buf, size_t len, const char *name, struct iap_csv **out,
		     struct iap_error *err)
{
	struct iap_csv *c = calloc(1, sizeof(*c));
	int rc;

	if (!c || !(c->name = strdup(name))) {
		free(c);
		free(buf);
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	}
	c->buf = buf;
	c->len = len;
	c->line = 1;
	if (len >= 3 && !memcmp(buf, "\xef\xbb\xbf", 3))
		c->pos = 3;  /* UTF-8 byte order mark, as spreadsheet exports write */
	rc = read_header(c, err);
	if (rc) {
		iap_csv_close(c);
		return rc;
	}
	*out = c;
	return IAP_OK;
}

int iap_csv_open_mem(const char *buf, size_t len, const char *name, struct iap_csv **out,
		     struct iap_error *err)
{
	char *copy;

	*out = NULL;
	if (!name)
		name = "<memory>";
	if (len > IAP_CSV_MAX_FILE)
		return iap_error_set(err, IAP_ELIMIT, "%s: CSV too large (%zu bytes; limit %zu)", name,
				     len, IAP_CSV_MAX_FILE);
	copy = malloc(len ? len : 1);
	if (!copy)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	if (len)
		memcpy(copy, buf, len);
	return csv_start(copy, len, name, out, err);
}

int iap_csv_open(const char *path, struct iap_csv **out, struct iap_error *err)
{
	unsigned char *buf;
	size_t len;
	int rc;

	*out = NULL;
	rc = iap_file_read(path, IAP_CSV_MAX_FILE, "CSV", &buf, &len, err);
	if (rc)
		return rc;
	return csv_start((char *)buf, len, path, out, err);
}

void iap_csv_close(struct iap_csv *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n_cols; i++)
		free(c->headers[i]);
	free(c->headers);
	free(c->text);
	free(c->offs);
	free(c->lens);
	free(c->fields);
	free(c->buf);
	free(c->name);
	free(c);
}

int iap_csv_columns(const struct iap_csv *c)
{
	return c->n_cols;
}

const char *iap_csv_header(const struct iap_csv *c, int i)
{
	return i >= 0 && i < c->n_cols ? c->headers[i] : NULL;
}

int iap_csv_column(const struct iap_csv *c, const char *name, struct iap_error *err)
{
	char list[512];
	size_t used = 0;

	for (int i = 0; i < c->n_cols; i++)
		if (!strcmp(c->headers[i], name))
			return i;
	list[0] = '\0';
	for (int i = 0; i < c->n_cols; i++) {
		int n = snprintf(list + used, sizeof(list) - used, "%s'%s'", i ? ", " : "",
				 c->headers[i]);

		if (n < 0 || (size_t)n >= sizeof(list) - used) {
			strcpy(list + sizeof(list) - 4, "...");
			break;
		}
		used += (size_t)n;
	}
	iap_error_set(err, IAP_EINVAL, "%s: no column '%s' (columns: %s)", c->name, name, list);
	return -1;
}

int iap_csv_next(struct iap_csv *c, const struct iap_csv_row **row, struct iap_error *err)
{
	int got, rc;

	*row = NULL;
	rc = parse_record(c, &got, err);
	if (rc || !got)
		return rc;
	if (c->row.n_fields != c->n_cols)
		return iap_error_set(err, IAP_EFORMAT, "%s:%ld: %d field%s, expected %d (as in the header)",
				     c->name, c->row.line, c->row.n_fields,
				     c->row.n_fields == 1 ? "" : "s", c->n_cols);
	*row = &c->row;
	return IAP_OK;
}

void iap_csv_rewind(struct iap_csv *c)
{
	c->pos = c->body_pos;
	c->line = c->body_line;
}

static int field_check(const struct iap_csv *c, const struct iap_csv_row *row, int col,
		       struct iap_error *err)
{
	if (!row || col < 0 || col >= row->n_fields)
		return iap_error_set(err, IAP_EINVAL, "%s: no field %d in this row", c->name, col);
	return IAP_OK;
}

/* strto* leave trailing text; spaces around the number are fine, anything else is not. */
static int only_spaces(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return *s == '\0';
}

int iap_csv_long(const struct iap_csv *c, const struct iap_csv_row *row, int col, long *v,
		 struct iap_error *err)
{
	const char *s;
	char *end;
	int rc = field_check(c, row, col, err);

	if (rc)
		return rc;
	s = row->fields[col];
	errno = 0;
	*v = strtol(s, &end, 10);
	if (end == s || !only_spaces(end) || errno)
		return iap_error_set(err, IAP_EFORMAT, "%s:%ld: column '%s': '%s' is not an integer%s",
				     c->name, row->line, c->headers[col], s,
				     errno == ERANGE ? " in range" : "");
	return IAP_OK;
}

int iap_csv_double(const struct iap_csv *c, const struct iap_csv_row *row, int col, double *v,
		   struct iap_error *err)
{
	const char *s;
	char *end;
	int rc = field_check(c, row, col, err);

	if (rc)
		return rc;
	s = row->fields[col];
	errno = 0;
	*v = strtod(s, &end);
	if (end == s || !only_spaces(end) || !isfinite(*v))
		return iap_error_set(err, IAP_EFORMAT, "%s:%ld: column '%s': '%s' is not a finite number",
				     c->name, row->line, c->headers[col], s);
	return IAP_OK;
}
