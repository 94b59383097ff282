/*
 * libFuzzer target: the CSV manifest reader. Reads every record, converts
 * every field as an integer and as a number, looks a column up by name and
 * reads the file a second time after a rewind (the reused row buffers).
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>

#include <iaprune/csv.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct iap_error err = { 0, "" };
	const struct iap_csv_row *row;
	struct iap_csv *csv = NULL;

	if (iap_csv_open_mem((const char *)data, size, "fuzz.csv", &csv, &err))
		return 0;
	if (iap_csv_columns(csv) > 0)
		iap_csv_column(csv, iap_csv_header(csv, 0), &err);
	iap_csv_column(csv, "label", &err);
	for (int pass = 0; pass < 2; pass++) {
		while (iap_csv_next(csv, &row, &err) == IAP_OK && row) {
			for (int i = 0; i < row->n_fields; i++) {
				long l;
				double d;

				iap_csv_long(csv, row, i, &l, &err);
				iap_csv_double(csv, row, i, &d, &err);
			}
		}
		iap_csv_rewind(csv);
	}
	iap_csv_close(csv);
	return 0;
}
