/*
 * The .npz writer: archives read back by the library's own reader (which
 * checks every CRC and size) with the same dtypes, shapes and values;
 * numpy's layout (members "<name>.npy", data 64-byte aligned in the .npy);
 * scalars and empty arrays; and atomicity: an aborted writer, or one whose
 * member failed, leaves the old file untouched.
 */
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

#include <iaprune/npz.h>

static char dir[] = "/tmp/iap-npzw-XXXXXX";

static void read_all(const char *path, char *buf, size_t cap, size_t *len)
{
	FILE *f = fopen(path, "rb");

	assert_non_null(f);
	*len = fread(buf, 1, cap, f);
	fclose(f);
}

static void test_roundtrip(void **state)
{
	const float a[6] = { 1.5f, -2.0f, 0.0f, 3.25f, 1e-30f, -7.0f };
	const int32_t b[4] = { 0, -1, 2147483647, 42 };
	const float s = 2.5f;
	const int64_t sa[2] = { 2, 3 }, sb[1] = { 4 }, se[2] = { 0, 5 };
	struct iap_npz_writer *w;
	struct iap_npz *z;
	struct iap_npy arr = { 0 };
	struct iap_error err;
	char path[256];

	(void)state;
	snprintf(path, sizeof(path), "%s/t.npz", dir);
	assert_int_equal(iap_npz_writer_open(&w, path, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_add_f32(w, "scores/features.0/sum", 2, sa, a, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_add(w, "targets", IAP_NPY_I4, 1, sb, b, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_add_f32(w, "scalar", 0, NULL, &s, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_add_f32(w, "empty", 2, se, a, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_commit(w, &err), IAP_OK);

	assert_int_equal(iap_npz_open(path, &z, &err), IAP_OK);
	assert_int_equal(z->n_members, 4);
	assert_string_equal(z->members[0].name, "scores/features.0/sum.npy");
	assert_int_equal(z->members[0].method, 0);
	assert_int_equal(iap_npz_read(z, "scores/features.0/sum", IAP_NPY_NONE, &arr, &err), IAP_OK);
	assert_int_equal(arr.dtype, IAP_NPY_F4);
	assert_int_equal(arr.ndim, 2);
	assert_int_equal(arr.shape[0], 2);
	assert_int_equal(arr.shape[1], 3);
	assert_memory_equal(arr.data, a, sizeof(a));
	assert_int_equal(iap_npz_read(z, "targets", IAP_NPY_NONE, &arr, &err), IAP_OK);
	assert_int_equal(arr.dtype, IAP_NPY_I4);
	assert_int_equal(arr.numel, 4);
	assert_memory_equal(arr.data, b, sizeof(b));
	assert_int_equal(iap_npz_read(z, "scalar", IAP_NPY_F4, &arr, &err), IAP_OK);
	assert_int_equal(arr.ndim, 0);
	assert_true(((float *)arr.data)[0] == 2.5f);
	assert_int_equal(iap_npz_read(z, "empty", IAP_NPY_F4, &arr, &err), IAP_OK);
	assert_int_equal(arr.numel, 0);
	assert_int_equal(arr.shape[1], 5);
	/* numpy's .npy 1.0 layout: magic, then the data at a multiple of 64. */
	{
		const unsigned char *p = z->data + z->members[1].local_offset;
		size_t name_len = (size_t)(p[26] | p[27] << 8), hdr;

		p += 30 + name_len;
		assert_memory_equal(p, "\x93NUMPY\x01\x00", 8);
		hdr = (size_t)(p[8] | p[9] << 8);
		assert_int_equal((10 + hdr) % 64, 0);
		assert_non_null(memmem(p + 10, hdr, "'descr': '<i4'", 14));
		assert_non_null(memmem(p + 10, hdr, "'shape': (4,)", 13));
	}
	iap_npy_free(&arr);
	iap_npz_close(z);
}

static void test_atomic(void **state)
{
	const float a[2] = { 1, 2 };
	const int64_t sh[1] = { 2 };
	struct iap_npz_writer *w;
	struct iap_error err;
	char path[256], before[4096], after[4096], bad[300];
	size_t nb, na;

	(void)state;
	snprintf(path, sizeof(path), "%s/keep.npz", dir);
	assert_int_equal(iap_npz_writer_open(&w, path, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_add_f32(w, "a", 1, sh, a, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_commit(w, &err), IAP_OK);
	read_all(path, before, sizeof(before), &nb);

	/* Abandoned: the old archive stays. */
	assert_int_equal(iap_npz_writer_open(&w, path, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_add_f32(w, "b", 1, sh, a, &err), IAP_OK);
	iap_npz_writer_abort(w);
	read_all(path, after, sizeof(after), &na);
	assert_int_equal(na, nb);
	assert_memory_equal(after, before, nb);

	/* A bad member (an unsupported dtype) makes commit fail: the old archive stays. */
	assert_int_equal(iap_npz_writer_open(&w, path, &err), IAP_OK);
	assert_int_not_equal(iap_npz_writer_add(w, "c", IAP_NPY_NONE, 1, sh, a, &err), IAP_OK);
	assert_int_equal(iap_npz_writer_add_f32(w, "d", 1, sh, a, &err), IAP_OK);
	iap_npz_writer_abort(w);
	read_all(path, after, sizeof(after), &na);
	assert_memory_equal(after, before, nb);

	/* A directory that does not exist: one error naming the path. */
	snprintf(bad, sizeof(bad), "%s/no/such/x.npz", dir);
	assert_int_not_equal(iap_npz_writer_open(&w, bad, &err), IAP_OK);
	assert_non_null(strstr(err.msg, "no/such"));
}

static int setup(void **state)
{
	(void)state;
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	char path[300];

	(void)state;
	snprintf(path, sizeof(path), "%s/t.npz", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/keep.npz", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_atomic),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
