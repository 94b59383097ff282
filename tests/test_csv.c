/* CSV reader: RFC 4180 quoting, line endings, columns by name, and every refusal's message. */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/csv.h>

static struct iap_csv *open_str(const char *text)
{
	struct iap_csv *csv = NULL;
	struct iap_error err;

	if (iap_csv_open_mem(text, strlen(text), "l.csv", &csv, &err))
		fail_msg("open failed: %s", err.msg);
	return csv;
}

static const struct iap_csv_row *next_row(struct iap_csv *csv)
{
	const struct iap_csv_row *row;
	struct iap_error err;

	if (iap_csv_next(csv, &row, &err))
		fail_msg("next failed: %s", err.msg);
	return row;
}

static void test_quoting_and_line_numbers(void **state)
{
	/* Quoted commas, "" escapes, an embedded line break, an empty field, a trailing empty one. */
	const char *text = "image,label,note\n"
			   "a.png,1,plain\n"
			   "\"b,c.png\",0,\"say \"\"hi\"\"\"\n"
			   "\n"
			   "d.png,2,\"two\nlines\"\n"
			   "e.png,,\n"
			   "\"\",3,x";  /* no final line break */
	struct iap_csv *csv = open_str(text);
	const struct iap_csv_row *row;

	(void)state;
	assert_int_equal(iap_csv_columns(csv), 3);
	assert_string_equal(iap_csv_header(csv, 1), "label");
	assert_null(iap_csv_header(csv, 3));

	row = next_row(csv);
	assert_int_equal(row->line, 2);
	assert_int_equal(row->n_fields, 3);
	assert_string_equal(row->fields[0], "a.png");
	assert_string_equal(row->fields[2], "plain");

	row = next_row(csv);
	assert_int_equal(row->line, 3);
	assert_string_equal(row->fields[0], "b,c.png");
	assert_string_equal(row->fields[1], "0");
	assert_string_equal(row->fields[2], "say \"hi\"");
	assert_int_equal(row->lengths[2], 8);

	row = next_row(csv);  /* the empty line 4 is skipped */
	assert_int_equal(row->line, 5);
	assert_string_equal(row->fields[2], "two\nlines");

	row = next_row(csv);
	assert_int_equal(row->line, 7);
	assert_string_equal(row->fields[0], "e.png");
	assert_string_equal(row->fields[1], "");
	assert_string_equal(row->fields[2], "");
	assert_int_equal(row->lengths[1], 0);

	row = next_row(csv);
	assert_int_equal(row->line, 8);
	assert_string_equal(row->fields[0], "");
	assert_string_equal(row->fields[2], "x");

	assert_null(next_row(csv));
	assert_null(next_row(csv));

	/* Rewind starts again after the header. */
	iap_csv_rewind(csv);
	row = next_row(csv);
	assert_int_equal(row->line, 2);
	assert_string_equal(row->fields[0], "a.png");
	iap_csv_close(csv);
}

static void test_crlf_bom_and_numbers(void **state)
{
	const char *text = "\xef\xbb\xbfid,score\r\n 7 ,0.25\r\n\"12\",-1e3\r\n8x,nan\r\n";
	struct iap_csv *csv = open_str(text);
	const struct iap_csv_row *row;
	struct iap_error err;
	long id;
	double score;

	(void)state;
	/* The byte order mark is not part of the first column's name; CR is not part of the last. */
	assert_int_equal(iap_csv_column(csv, "id", &err), 0);
	assert_int_equal(iap_csv_column(csv, "score", &err), 1);

	row = next_row(csv);
	assert_int_equal(row->line, 2);
	assert_string_equal(row->fields[1], "0.25");
	assert_int_equal(iap_csv_long(csv, row, 0, &id, &err), IAP_OK);
	assert_int_equal(id, 7);
	assert_int_equal(iap_csv_double(csv, row, 1, &score, &err), IAP_OK);
	assert_true(score == 0.25);

	row = next_row(csv);
	assert_int_equal(iap_csv_long(csv, row, 0, &id, &err), IAP_OK);
	assert_int_equal(id, 12);
	assert_int_equal(iap_csv_double(csv, row, 1, &score, &err), IAP_OK);
	assert_true(score == -1000.0);

	row = next_row(csv);
	assert_int_equal(row->line, 4);
	assert_int_equal(iap_csv_long(csv, row, 0, &id, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:4: column 'id': '8x' is not an integer");
	assert_int_equal(iap_csv_double(csv, row, 1, &score, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:4: column 'score': 'nan' is not a finite number");
	assert_null(next_row(csv));
	iap_csv_close(csv);
}

static void test_missing_column_and_file(void **state)
{
	char dir[] = "/tmp/iap-csv-XXXXXX", path[256], want[512];
	struct iap_csv *csv;
	const struct iap_csv_row *row;
	struct iap_error err;
	FILE *fp;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/labels.csv", dir);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	fputs("image,label\nx.png,1\n", fp);
	fclose(fp);
	assert_int_equal(iap_csv_open(path, &csv, &err), IAP_OK);
	assert_int_equal(iap_csv_column(csv, "diagnosis", &err), -1);
	snprintf(want, sizeof(want), "%s: no column 'diagnosis' (columns: 'image', 'label')", path);
	assert_string_equal(err.msg, want);
	assert_int_equal(iap_csv_next(csv, &row, &err), IAP_OK);
	assert_string_equal(row->fields[0], "x.png");
	iap_csv_close(csv);
	unlink(path);

	assert_int_equal(iap_csv_open(path, &csv, &err), IAP_EIO);
	snprintf(want, sizeof(want), "%s: No such file or directory", path);
	assert_string_equal(err.msg, want);
	assert_null(csv);
	assert_int_equal(iap_csv_open(dir, &csv, &err), IAP_EIO);
	snprintf(want, sizeof(want), "%s: not a regular file", dir);
	assert_string_equal(err.msg, want);
	rmdir(dir);
}

/* Open text and read rows until an error; return the error code (message in err). */
static int first_error(const char *text, struct iap_error *err)
{
	struct iap_csv *csv;
	const struct iap_csv_row *row;
	int rc;

	rc = iap_csv_open_mem(text, strlen(text), "l.csv", &csv, err);
	if (rc)
		return rc;
	do
		rc = iap_csv_next(csv, &row, err);
	while (!rc && row);
	iap_csv_close(csv);
	return rc;
}

static void test_bad_input(void **state)
{
	struct iap_error err;

	(void)state;
	assert_int_equal(first_error("a,b\n1,2\n3,\"oops\n4,5\n", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:3: unterminated quoted field (opened here)");

	assert_int_equal(first_error("a,b\n1,2\n3,ab\"c\n", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:3: quote inside unquoted field 2");

	assert_int_equal(first_error("a,b\r\n1,\"x\"y\r\n", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:2: unexpected 'y' after closing quote of field 2");

	/* Line numbers count the breaks inside quoted fields. */
	assert_int_equal(first_error("a,b\n\"1\n2\",3\n4\n", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:4: 1 field, expected 2 (as in the header)");
	assert_int_equal(first_error("a,b\n1,2,3\n", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:2: 3 fields, expected 2 (as in the header)");

	assert_int_equal(first_error("", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv: empty file (no header row)");
	assert_int_equal(first_error("\n\r\n", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv: empty file (no header row)");
	assert_int_equal(first_error("a,b,a\n", &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "l.csv:1: duplicate column 'a' (columns 1 and 3)");
	{
		struct iap_csv *csv;
		const char nul[] = "a,b\n1,\0\n";

		assert_int_equal(iap_csv_open_mem(nul, sizeof(nul) - 1, "l.csv", &csv, &err), IAP_OK);
		{
			const struct iap_csv_row *row;

			assert_int_equal(iap_csv_next(csv, &row, &err), IAP_EFORMAT);
			assert_string_equal(err.msg, "l.csv:2: NUL byte");
		}
		iap_csv_close(csv);
	}
}

static void test_limits(void **state)
{
	size_t n = IAP_CSV_MAX_FIELD + 16, cols = IAP_CSV_MAX_COLUMNS + 1;
	char *text = malloc(n + 8 > cols * 2 + 8 ? n + 8 : cols * 2 + 8);
	struct iap_error err;

	(void)state;
	assert_non_null(text);
	/* A field over the size limit. */
	memcpy(text, "a\n", 2);
	memset(text + 2, 'x', n);
	text[n + 2] = '\0';
	assert_int_equal(first_error(text, &err), IAP_ELIMIT);
	assert_string_equal(err.msg, "l.csv:2: field 1 longer than 1048576 bytes");
	/* A header with more columns than allowed. */
	for (size_t i = 0; i < cols; i++) {
		text[2 * i] = 'c';
		text[2 * i + 1] = ',';
	}
	text[2 * cols - 1] = '\0';
	assert_int_equal(first_error(text, &err), IAP_ELIMIT);
	assert_string_equal(err.msg, "l.csv:1: more than 4096 fields");
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_quoting_and_line_numbers),
		cmocka_unit_test(test_crlf_bom_and_numbers),
		cmocka_unit_test(test_missing_column_and_file),
		cmocka_unit_test(test_bad_input),
		cmocka_unit_test(test_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
