/*
 * The library readers that no iaprune command reaches yet (images, npz
 * archives, CSV label files), driven from the command line the way the CLI
 * would: on failure exactly one line "iaprune: <message>" on stderr and
 * exit status 2; on success one summary line on stdout and status 0.
 *
 *   badread image FILE [CHANNELS]
 *   badread npz FILE MEMBER [f4|u1|i8]
 *   badread csv FILE [COLUMN]
 *
 * Used by tests/bad_inputs/run.sh only; never installed.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/csv.h>
#include <iaprune/image.h>
#include <iaprune/npz.h>

static int fail(const struct iap_error *err)
{
	fprintf(stderr, "iaprune: %s\n", err->msg);
	return 2;
}

static int read_image(const char *path, int channels)
{
	struct iap_error err = { 0, "" };
	struct iap_tensor t = { 0 };
	float lo, hi;

	/* out belongs to the caller even when decoding fails after sizing it. */
	if (iap_image_load(path, channels, &t, &err)) {
		iap_tensor_free(&t);
		return fail(&err);
	}
	lo = hi = t.data[0];
	for (int64_t i = 1; i < iap_tensor_numel(&t); i++) {
		lo = t.data[i] < lo ? t.data[i] : lo;
		hi = t.data[i] > hi ? t.data[i] : hi;
	}
	printf("%lldx%lldx%lld min %.6f max %.6f\n", (long long)t.shape[0], (long long)t.shape[1],
	       (long long)t.shape[2], lo, hi);
	iap_tensor_free(&t);
	return 0;
}

static int read_npz(const char *path, const char *member, const char *type)
{
	enum iap_npy_dtype want = IAP_NPY_NONE;
	struct iap_error err = { 0, "" };
	struct iap_npy arr = { 0 };
	struct iap_npz *npz;
	int rc = 0;

	if (type)
		want = !strcmp(type, "f4") ? IAP_NPY_F4 : !strcmp(type, "u1") ? IAP_NPY_U1 : IAP_NPY_I8;
	if (iap_npz_open(path, &npz, &err))
		return fail(&err);
	if (iap_npz_read(npz, member, want, &arr, &err))
		rc = fail(&err);
	else
		printf("%s: %s, %lld elements\n", member, iap_npy_dtype_name(arr.dtype), (long long)arr.numel);
	iap_npy_free(&arr);
	iap_npz_close(npz);
	return rc;
}

static int read_csv(const char *path, const char *column)
{
	struct iap_error err = { 0, "" };
	const struct iap_csv_row *row;
	struct iap_csv *csv;
	long rows = 0, v;
	int col = -1, rc = 0;

	if (iap_csv_open(path, &csv, &err))
		return fail(&err);
	if (column && (col = iap_csv_column(csv, column, &err)) < 0) {
		rc = fail(&err);
		goto out;
	}
	for (;;) {
		if (iap_csv_next(csv, &row, &err)) {
			rc = fail(&err);
			goto out;
		}
		if (!row)
			break;
		if (col >= 0 && iap_csv_long(csv, row, col, &v, &err)) {
			rc = fail(&err);
			goto out;
		}
		rows++;
	}
	printf("%d columns, %ld rows\n", iap_csv_columns(csv), rows);
out:
	iap_csv_close(csv);
	return rc;
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "image"))
		return read_image(argv[2], argc > 3 ? atoi(argv[3]) : 0);
	if (argc >= 4 && !strcmp(argv[1], "npz"))
		return read_npz(argv[2], argv[3], argc > 4 ? argv[4] : NULL);
	if (argc >= 3 && !strcmp(argv[1], "csv"))
		return read_csv(argv[2], argc > 3 ? argv[3] : NULL);
	fprintf(stderr, "usage: badread image FILE [CH] | npz FILE MEMBER [TYPE] | csv FILE [COLUMN]\n");
	return 2;
}
