/* safetensors: round trip, dtype conversion, and every malformed-file refusal. */
#include "config.h"

#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/safetensors.h>

/* Build "8-byte length + header + data" in memory. */
static size_t build(unsigned char *buf, const char *header, const void *data, size_t dlen)
{
	size_t h = strlen(header);

	for (int i = 0; i < 8; i++)
		buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
	memcpy(buf + 8, header, h);
	memcpy(buf + 8 + h, data, dlen);
	return 8 + h + dlen;
}

static int open_mem(const char *header, const void *data, size_t dlen, struct iap_safetensors **st,
		    struct iap_error *err)
{
	unsigned char buf[4096];
	size_t n = build(buf, header, data, dlen);

	return iap_safetensors_open_mem(buf, n, "w.safetensors", st, err);
}

static void test_roundtrip_with_metadata(void **state)
{
	char dir[] = "/tmp/iap-st-XXXXXX", path[256];
	struct iap_tensor a = { 0 }, b = { 0 };
	int64_t sa[2] = { 2, 3 }, sb[1] = { 1 };
	struct iap_st_meta meta[2] = { { "format", "pt" }, { "note", "quote \" and \\ and \n" } };
	struct iap_st_entry entries[2] = { { "features.0.weight", &a }, { "features.0.bias", &b } };
	struct iap_safetensors *st;
	const struct iap_st_tensor *t;
	struct iap_error err;
	float got[6];
	FILE *fp;
	unsigned char len8[8];
	uint64_t hlen = 0;
	struct dirent *de;
	DIR *d;
	int files = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	iap_tensor_alloc(&a, 2, sa, NULL);
	iap_tensor_alloc(&b, 1, sb, NULL);
	for (int i = 0; i < 6; i++)
		a.data[i] = (float)i - 2.5f;
	b.data[0] = 1e-30f;
	assert_int_equal(iap_safetensors_write(path, entries, 2, meta, 2, &err), IAP_OK);

	/* Header padded so the data starts 8-byte aligned. */
	fp = fopen(path, "rb");
	assert_non_null(fp);
	assert_int_equal(fread(len8, 1, 8, fp), 8);
	fclose(fp);
	for (int i = 7; i >= 0; i--)
		hlen = hlen << 8 | len8[i];
	assert_int_equal(hlen % 8, 0);

	assert_int_equal(iap_safetensors_open(path, &st, &err), IAP_OK);
	assert_int_equal(st->n_tensors, 2);
	assert_string_equal(iap_safetensors_meta(st, "format"), "pt");
	assert_string_equal(iap_safetensors_meta(st, "note"), "quote \" and \\ and \n");
	assert_null(iap_safetensors_meta(st, "absent"));
	t = iap_safetensors_find(st, "features.0.weight");
	assert_non_null(t);
	assert_int_equal(t->ndim, 2);
	assert_int_equal(t->shape[1], 3);
	assert_int_equal(iap_safetensors_read_f32(st, t, got, &err), IAP_OK);
	assert_memory_equal(got, a.data, sizeof(got));
	t = iap_safetensors_find(st, "features.0.bias");
	assert_int_equal(iap_safetensors_read_f32(st, t, got, &err), IAP_OK);
	assert_true(got[0] == 1e-30f);
	iap_safetensors_close(st);

	/* Nothing but the file itself is left in the directory (no temporaries). */
	d = opendir(dir);
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			files++;
	closedir(d);
	assert_int_equal(files, 1);
	unlink(path);
	rmdir(dir);
	iap_tensor_free(&a);
	iap_tensor_free(&b);
}

static void test_half_types_and_i64(void **state)
{
	/* F16: 1, -2, 0.5, 2^-24 (smallest subnormal), 65504 (max); BF16: 1, -3; I64 scalar 7. */
	const unsigned char data[] = {
		0x00, 0x3c, 0x00, 0xc0, 0x00, 0x38, 0x01, 0x00, 0xff, 0x7b,
		0x80, 0x3f, 0x40, 0xc0,
		7, 0, 0, 0, 0, 0, 0, 0,
	};
	const char *h = "{\"a\":{\"dtype\":\"F16\",\"shape\":[5],\"data_offsets\":[0,10]},"
			"\"b\":{\"dtype\":\"BF16\",\"shape\":[2],\"data_offsets\":[10,14]},"
			"\"layer1.0.bn1.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[14,22]}}";
	struct iap_safetensors *st;
	struct iap_error err;
	float f[5];

	(void)state;
	assert_int_equal(open_mem(h, data, sizeof(data), &st, &err), IAP_OK);
	assert_int_equal(iap_safetensors_read_f32(st, iap_safetensors_find(st, "a"), f, &err), IAP_OK);
	assert_true(f[0] == 1.0f && f[1] == -2.0f && f[2] == 0.5f);
	assert_true(f[3] == 0x1p-24f);
	assert_true(f[4] == 65504.0f);
	assert_int_equal(iap_safetensors_read_f32(st, iap_safetensors_find(st, "b"), f, &err), IAP_OK);
	assert_true(f[0] == 1.0f && f[1] == -3.0f);
	assert_int_equal(iap_safetensors_find(st, "layer1.0.bn1.num_batches_tracked")->numel, 1);
	assert_int_equal(iap_safetensors_read_f32(st, iap_safetensors_find(st, "layer1.0.bn1.num_batches_tracked"), f, &err),
			 IAP_EFORMAT);
	assert_string_equal(err.msg, "w.safetensors: tensor 'layer1.0.bn1.num_batches_tracked' is I64, not a float type");
	iap_safetensors_close(st);
}

struct bad_case {
	const char *header;
	size_t data_len;
	const char *message;
};

static void test_malformed_files(void **state)
{
	static const struct bad_case cases[] = {
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
		  "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
		  "w.safetensors: tensor 'b' overlaps the previous tensor at byte 4 (expected 8)" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		  "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
		  "w.safetensors: tensor 'b' leaves a hole at byte 8 (expected 4)" },
		{ "{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8,
		  "w.safetensors: tensor 'a' has dtype F64 (supported: F32, F16, BF16, I64)" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 12,
		  "w.safetensors: tensor 'a' ends at byte 16 past the data (12 bytes; file truncated?)" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16,
		  "w.safetensors: tensor 'a': data_offsets [0, 16] do not hold 12 bytes of F32" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
		  "w.safetensors: 4 bytes after the last tensor are not described by the header" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
		  "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
		  "w.safetensors: tensor 'a' appears twice" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
		  "w.safetensors: tensor 'a' lacks data_offsets" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4,
		  "w.safetensors: malformed header: expected '}' at byte 61" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
		  "w.safetensors: malformed header: expected a non-negative integer at byte 37" },
		{ "{\"__metadata__\":{\"k\":1}}", 0,
		  "w.safetensors: __metadata__ value of 'k' is not a string" },
		{ "[]", 0, "w.safetensors: header is not a JSON object" },
		{ "{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999,99999999999],\"data_offsets\":[0,4]}}", 4,
		  "w.safetensors: tensor 'a' is too large" },
	};
	unsigned char zeros[64] = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct iap_safetensors *st = (void *)1;
		struct iap_error err;

		assert_int_not_equal(open_mem(cases[i].header, zeros, cases[i].data_len, &st, &err), IAP_OK);
		assert_null(st);
		if (strcmp(err.msg, cases[i].message) != 0)
			fail_msg("case %zu: got \"%s\", want \"%s\"", i, err.msg, cases[i].message);
	}
}

static void test_header_length_lies(void **state)
{
	unsigned char buf[64] = { 0 };
	struct iap_safetensors *st;
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_safetensors_open_mem(buf, 5, "t.safetensors", &st, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "t.safetensors: 5 bytes is too short for a safetensors file");
	buf[0] = 200; /* header claims 200 bytes, file has 64 */
	assert_int_equal(iap_safetensors_open_mem(buf, 64, "t.safetensors", &st, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "t.safetensors: header length 200 runs past the end of the file (64 bytes)");
	memset(buf, 0xff, 8);
	assert_int_equal(iap_safetensors_open_mem(buf, 64, "t.safetensors", &st, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "t.safetensors: header length 18446744073709551615 exceeds the 100 MB limit");
	assert_int_equal(iap_safetensors_open("/nonexistent/x.safetensors", &st, &err), IAP_EIO);
	assert_string_equal(err.msg, "/nonexistent/x.safetensors: No such file or directory");
}

static void test_write_failure_leaves_nothing(void **state)
{
	struct iap_tensor a = { 0 };
	int64_t s[1] = { 2 };
	struct iap_st_entry e = { "w", &a };
	struct iap_error err;

	(void)state;
	iap_tensor_alloc(&a, 1, s, NULL);
	assert_int_equal(iap_safetensors_write("/nonexistent-dir/m.safetensors", &e, 1, NULL, 0, &err), IAP_EIO);
	assert_string_equal(err.msg,
			    "/nonexistent-dir/m.safetensors: cannot create a temporary file: No such file or directory");
	iap_tensor_free(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_with_metadata),
		cmocka_unit_test(test_half_types_and_i64),
		cmocka_unit_test(test_malformed_files),
		cmocka_unit_test(test_header_length_lies),
		cmocka_unit_test(test_write_failure_leaves_nothing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
