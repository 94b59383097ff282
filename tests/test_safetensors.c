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
#include <iaprune/weights.h>

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
	buf[0] = 200; /* header claims 200 bytes, file has 64 (a truncated file: the JSON starts) */
	buf[8] = '{';
	assert_int_equal(iap_safetensors_open_mem(buf, 64, "t.safetensors", &st, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "t.safetensors: header length 200 runs past the end of the file (64 bytes)");
	memset(buf, 0xff, 8);
	buf[8] = '{';
	assert_int_equal(iap_safetensors_open_mem(buf, 64, "t.safetensors", &st, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "t.safetensors: header length 18446744073709551615 exceeds the 100 MB limit");
	/* A PNG (or any other format) is named as not a safetensors file, not as a header that is too long. */
	memcpy(buf, "\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16);
	assert_int_equal(iap_safetensors_open_mem(buf, 64, "scan.png", &st, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "scan.png: not a safetensors file (no JSON header after the 8-byte length)");
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
	assert_int_equal(iap_safetensors_write("/nonexistent-dir/m.safetensors", &e, 1, NULL, 0, &err), IAP_EWRITE);
	assert_string_equal(err.msg,
			    "/nonexistent-dir/m.safetensors: cannot create a temporary file: No such file or directory");
	iap_tensor_free(&a);
}


/* ---- loading onto a graph ------------------------------------------------------ */

static int no_forward(struct iap_graph *g, struct iap_node *node, const struct iap_tensor *const in[],
		      struct iap_tensor *out, struct iap_error *err)
{
	(void)g; (void)node; (void)in; (void)out;
	return iap_error_set(err, IAP_EUNSUPPORTED, "not run");
}

static const struct iap_op_ops holder = { .kind = IAP_OP_LINEAR, .forward = no_forward };

/* Parameters only: "features.0" weight [2,3] + bias [2], a ViT MLP linear, a BN's running mean. */
static struct iap_graph *param_graph(void)
{
	int64_t in_shape[1] = { 3 }, w[2] = { 2, 3 }, b[1] = { 2 }, m[2] = { 4, 2 };
	struct iap_graph *g = iap_graph_new(1, in_shape, NULL);
	int in = IAP_GRAPH_INPUT, id;

	id = iap_graph_add_node(g, &holder, "features.0", 1, &in);
	iap_graph_add_param(g, id, "weight", 2, w, IAP_PARAM_TRAINABLE);
	iap_graph_add_param(g, id, "bias", 1, b, IAP_PARAM_TRAINABLE);
	id = iap_graph_add_node(g, &holder, "encoder.layers.encoder_layer_0.mlp.0", 1, &in);
	iap_graph_add_param(g, id, "weight", 2, m, IAP_PARAM_TRAINABLE);
	id = iap_graph_add_node(g, &holder, "bn", 1, &in);
	iap_graph_add_param(g, id, "running_mean", 1, b, IAP_PARAM_BUFFER);
	assert_int_equal(iap_graph_finalize(g, NULL), IAP_OK);
	return g;
}

static void test_graph_weights_roundtrip(void **state)
{
	char dir[] = "/tmp/iap-w-XXXXXX", path[256];
	struct iap_graph *a = param_graph(), *b = param_graph();
	struct iap_st_meta meta = { "iaprune_version", PACKAGE_VERSION };
	struct iap_safetensors *st;
	struct iap_error err;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/w.safetensors", dir);
	for (int i = 0; i < a->n_nodes; i++)
		for (int k = 0; k < a->nodes[i].n_params; k++)
			for (int64_t e = 0; e < iap_tensor_numel(&a->nodes[i].params[k].value); e++)
				a->nodes[i].params[k].value.data[e] = (float)(i * 100 + k * 10) + (float)e * 0.25f;
	assert_int_equal(iap_graph_save_weights(a, path, &meta, 1, &err), IAP_OK);
	assert_int_equal(iap_graph_load_weights_file(b, path, 0, &err), IAP_OK);
	for (int i = 0; i < a->n_nodes; i++)
		for (int k = 0; k < a->nodes[i].n_params; k++)
			assert_memory_equal(a->nodes[i].params[k].value.data, b->nodes[i].params[k].value.data,
					    (size_t)iap_tensor_numel(&a->nodes[i].params[k].value) * sizeof(float));
	assert_int_equal(iap_safetensors_open(path, &st, &err), IAP_OK);
	assert_string_equal(iap_safetensors_meta(st, "iaprune_version"), PACKAGE_VERSION);
	iap_safetensors_close(st);
	unlink(path);
	rmdir(dir);
	iap_graph_free(a);
	iap_graph_free(b);
}

/* Append one F32 tensor to a header under construction. */
static void add_f32(char *h, size_t hl, unsigned char *data, size_t *off, const char *name,
		    const char *shape, const float *v, int n)
{
	size_t len = strlen(h);

	snprintf(h + len, hl - len, "%s\"%s\":{\"dtype\":\"F32\",\"shape\":%s,\"data_offsets\":[%zu,%zu]}",
		 len > 1 ? "," : "", name, shape, *off, *off + 4 * (size_t)n);
	memcpy(data + *off, v, 4 * (size_t)n);
	*off += 4 * (size_t)n;
}

static void test_graph_weights_tolerates_real_exports(void **state)
{
	const float w[6] = { 1, 2, 3, 4, 5, 6 }, mask[6] = { 1, 0, 1, 0, 1, 1 }, b[2] = { -1, 1 };
	const float m[8] = { 8, 7, 6, 5, 4, 3, 2, 1 }, rm[2] = { 0.5f, 0.25f };
	char h[2048] = "{";
	unsigned char data[512];
	size_t off = 0;
	struct iap_graph *g = param_graph();
	struct iap_safetensors *st;
	struct iap_error err;
	const float *got;

	(void)state;
	add_f32(h, sizeof(h), data, &off, "module.features.0.weight_orig", "[2,3]", w, 6);
	add_f32(h, sizeof(h), data, &off, "module.features.0.weight_mask", "[2,3]", mask, 6);
	add_f32(h, sizeof(h), data, &off, "module.features.0.bias", "[2]", b, 2);
	add_f32(h, sizeof(h), data, &off, "module.encoder.layers.encoder_layer_0.mlp.linear_1.weight", "[4,2]", m, 8);
	add_f32(h, sizeof(h), data, &off, "module.bn.running_mean", "[2]", rm, 2);
	{
		size_t len = strlen(h);
		const int64_t one = 1;

		snprintf(h + len, sizeof(h) - len,
			 ",\"module.bn.num_batches_tracked\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[%zu,%zu]}}",
			 off, off + 8);
		memcpy(data + off, &one, 8);
		off += 8;
	}
	assert_int_equal(open_mem(h, data, off, &st, &err), IAP_OK);
	assert_int_equal(iap_graph_load_weights(g, st, 0, &err), IAP_OK);
	got = iap_graph_find_param(g, "features.0.weight")->value.data;
	assert_true(got[0] == 1 && got[1] == 0 && got[2] == 3 && got[3] == 0 && got[5] == 6);
	assert_true(iap_graph_find_param(g, "encoder.layers.encoder_layer_0.mlp.0.weight")->value.data[7] == 1);
	assert_true(iap_graph_find_param(g, "bn.running_mean")->value.data[1] == 0.25f);
	iap_safetensors_close(st);
	iap_graph_free(g);
}

static void test_graph_weights_lists_every_problem(void **state)
{
	const float v[16] = { 0 };
	char h[2048] = "{";
	unsigned char data[512];
	size_t off = 0;
	struct iap_graph *g = param_graph();
	struct iap_safetensors *st;
	struct iap_error err;

	(void)state;
	add_f32(h, sizeof(h), data, &off, "features.0.weight", "[3,2]", v, 6);
	add_f32(h, sizeof(h), data, &off, "classifier.weight", "[2]", v, 2);
	add_f32(h, sizeof(h), data, &off, "extra", "[1]", v, 1);
	strcat(h, "}");
	assert_int_equal(open_mem(h, data, off, &st, &err), IAP_OK);
	assert_int_equal(iap_graph_load_weights(g, st, 0, &err), IAP_ESHAPE);
	assert_string_equal(err.msg,
		"w.safetensors: does not fit the model: missing keys features.0.bias, "
		"encoder.layers.encoder_layer_0.mlp.0.weight, bn.running_mean; unexpected keys "
		"classifier.weight, extra; shape mismatch features.0.weight: file [3, 2], model [2, 3]");
	/* Allowing missing and unexpected keys still refuses a wrong shape. */
	assert_int_equal(iap_graph_load_weights(g, st, IAP_LOAD_ALLOW_MISSING | IAP_LOAD_ALLOW_UNEXPECTED, &err),
			 IAP_ESHAPE);
	assert_string_equal(err.msg, "w.safetensors: does not fit the model: shape mismatch "
			    "features.0.weight: file [3, 2], model [2, 3]");
	iap_safetensors_close(st);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip_with_metadata),
		cmocka_unit_test(test_half_types_and_i64),
		cmocka_unit_test(test_malformed_files),
		cmocka_unit_test(test_header_length_lies),
		cmocka_unit_test(test_write_failure_leaves_nothing),
		cmocka_unit_test(test_graph_weights_roundtrip),
		cmocka_unit_test(test_graph_weights_tolerates_real_exports),
		cmocka_unit_test(test_graph_weights_lists_every_problem),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
