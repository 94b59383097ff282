/*
 * Weights as PyTorch users exchange them: every BatchNorm's
 * num_batches_tracked is written as torchvision writes it (an I64 scalar,
 * so a strict load_state_dict finds every key), its value counts training
 * forwards and survives a load/save; a torchvision export saved back has
 * exactly torchvision's keys and dtypes; F16 and BF16 exports load as
 * float32 with a note saying so.
 */
#include "config.h"

#include <math.h>
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

#include "../plugins/models/arch.h"
#include "testutil.h"

static void check_ok(int rc, const struct iap_error *err)
{
	if (rc != IAP_OK)
		fail_msg("%s", err->msg);
}

static struct iap_graph *vgg11_bn(void)
{
	struct iap_cnn_cfg cfg = { .depth = 11, .batch_norm = 1, .num_classes = 3, .in_channels = 3,
				   .image_size = 32, .width = 0.025, .dropout = 0.5f };
	struct iap_graph *g;
	struct iap_error err;

	check_ok(iap_vgg_build(&cfg, &g, &err), &err);
	return g;
}

static void fixture(char *buf, size_t len, const char *stem)
{
	const char *srcdir = getenv("IAP_TEST_SRCDIR");

	if (!srcdir)
		fail_msg("IAP_TEST_SRCDIR is not set");
	snprintf(buf, len, "%s/tests/fixtures/models/%s.safetensors", srcdir, stem);
}

static int64_t counter_in_file(const char *path, const char *key)
{
	struct iap_safetensors *st;
	struct iap_error err;
	const struct iap_st_tensor *t;
	int64_t v = -1;

	check_ok(iap_safetensors_open(path, &st, &err), &err);
	t = iap_safetensors_find(st, key);
	if (!t)
		fail_msg("%s: no '%s'", path, key);
	assert_int_equal(t->dtype, IAP_ST_I64);
	assert_int_equal(t->ndim, 0);
	check_ok(iap_safetensors_read_i64(st, t, &v, &err), &err);
	iap_safetensors_close(st);
	return v;
}

/* Three training forwards: every BatchNorm says 3, in the file and after loading it again. */
static void test_counter_roundtrip(void **state)
{
	struct iap_graph *g = vgg11_bn(), *h = vgg11_bn();
	struct iap_tensor x = tu_rand_tensor(5, 4, (int64_t)2, (int64_t)3, (int64_t)32, (int64_t)32);
	char path[] = "/tmp/iap-export.XXXXXX";
	struct iap_error err;
	int fd = mkstemp(path), n_bn = 0;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	tu_randomize_params(g, 6, 0.2f);
	iap_graph_set_training(g, 1);
	for (int i = 0; i < 3; i++)
		check_ok(iap_graph_forward(g, &x, &err), &err);
	iap_graph_set_training(g, 0);
	check_ok(iap_graph_forward(g, &x, &err), &err);   /* eval forwards do not count */
	check_ok(iap_graph_save_weights(g, path, NULL, 0, &err), &err);
	assert_int_equal(counter_in_file(path, "features.1.num_batches_tracked"), 3);
	assert_int_equal(counter_in_file(path, "features.26.num_batches_tracked"), 3);
	check_ok(iap_graph_load_weights_file(h, path, 0, &err), &err);
	for (int i = 0; i < h->n_nodes; i++)
		if (h->nodes[i].kind == IAP_OP_BATCHNORM2D) {
			assert_int_equal(h->nodes[i].attr.norm.batches_tracked, 3);
			n_bn++;
		}
	assert_int_equal(n_bn, 8);
	unlink(path);
	iap_tensor_free(&x);
	iap_graph_free(g);
	iap_graph_free(h);
}

/* A torchvision state_dict (gen_model_fixtures.py) loaded and saved back: the same keys, dtypes, shapes and counters. */
static void test_torchvision_keys_survive(void **state)
{
	struct iap_cnn_cfg cfg = { .depth = 18, .num_classes = 5, .in_channels = 3, .image_size = 32,
				   .width = 1.0 / 16 };
	struct iap_safetensors *a, *b;
	struct iap_graph *g;
	struct iap_error err;
	char src[4096], path[] = "/tmp/iap-export.XXXXXX";
	int fd = mkstemp(path), counters = 0;

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	fixture(src, sizeof(src), "resnet18");
	check_ok(iap_resnet_build(&cfg, &g, &err), &err);
	check_ok(iap_graph_load_weights_file(g, src, 0, &err), &err);
	check_ok(iap_graph_save_weights(g, path, NULL, 0, &err), &err);
	check_ok(iap_safetensors_open(src, &a, &err), &err);
	check_ok(iap_safetensors_open(path, &b, &err), &err);
	assert_int_equal(a->n_tensors, b->n_tensors);
	for (int i = 0; i < a->n_tensors; i++) {
		const struct iap_st_tensor *ta = &a->tensors[i], *tb = iap_safetensors_find(b, ta->name);

		if (!tb)
			fail_msg("saved file lacks '%s'", ta->name);
		assert_int_equal(ta->dtype, tb->dtype);
		assert_int_equal(ta->ndim, tb->ndim);
		for (int d = 0; d < ta->ndim; d++)
			assert_int_equal(ta->shape[d], tb->shape[d]);
		if (ta->dtype == IAP_ST_I64) {
			int64_t va, vb;

			check_ok(iap_safetensors_read_i64(a, ta, &va, &err), &err);
			check_ok(iap_safetensors_read_i64(b, tb, &vb, &err), &err);
			assert_int_equal(va, vb);
			counters++;
		}
	}
	assert_int_equal(counters, 20);   /* resnet18: bn1, 16 block BNs, 3 downsample BNs */
	iap_safetensors_close(a);
	iap_safetensors_close(b);
	unlink(path);
	iap_graph_free(g);
}

/* float32 -> IEEE half, round to nearest even (normal and subnormal range; the fixture has no overflow). */
static uint16_t to_f16(float f)
{
	uint32_t x;
	uint32_t sign, mant;
	int exp;

	memcpy(&x, &f, 4);
	sign = (x >> 16) & 0x8000u;
	exp = (int)((x >> 23) & 0xff) - 127 + 15;
	mant = x & 0x7fffffu;
	if ((x & 0x7fffffffu) == 0)
		return (uint16_t)sign;
	if (exp <= 0) {
		/* Subnormal: shift the implicit bit in, then round. */
		uint32_t m = mant | 0x800000u, shift = (uint32_t)(14 - exp);
		uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);

		if (shift > 24)
			return (uint16_t)sign;
		if (rem > half || (rem == half && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
	assert_true(exp < 31);
	{
		uint32_t r = ((uint32_t)exp << 10) | (mant >> 13), rem = mant & 0x1fffu;

		if (rem > 0x1000u || (rem == 0x1000u && (r & 1)))
			r++;
		return (uint16_t)(sign | r);
	}
}

static uint16_t to_bf16(float f)
{
	uint32_t x;

	memcpy(&x, &f, 4);
	x += 0x7fffu + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

/* The F32 file src rewritten with every float tensor as F16 (or BF16); I64 tensors as they are. */
static void write_half(const char *src, const char *dst, int bf16)
{
	struct iap_safetensors *st;
	struct iap_error err;
	char *h = malloc(1 << 20);
	size_t hl = 0;
	uint64_t off = 0, hlen;
	FILE *f;

	assert_non_null(h);
	check_ok(iap_safetensors_open(src, &st, &err), &err);
	hl += (size_t)sprintf(h + hl, "{");
	for (int i = 0; i < st->n_tensors; i++) {
		const struct iap_st_tensor *t = &st->tensors[i];
		uint64_t bytes = (uint64_t)t->numel * (t->dtype == IAP_ST_I64 ? 8 : 2);

		hl += (size_t)sprintf(h + hl, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t->name,
				      t->dtype == IAP_ST_I64 ? "I64" : bf16 ? "BF16" : "F16");
		for (int d = 0; d < t->ndim; d++)
			hl += (size_t)sprintf(h + hl, "%s%lld", d ? "," : "", (long long)t->shape[d]);
		hl += (size_t)sprintf(h + hl, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)off,
				      (unsigned long long)(off + bytes));
		off += bytes;
	}
	hl += (size_t)sprintf(h + hl, "}");
	while ((hl + 8) % 8)
		h[hl++] = ' ';
	f = fopen(dst, "wb");
	assert_non_null(f);
	hlen = hl;
	for (int k = 0; k < 8; k++)
		fputc((int)((hlen >> (8 * k)) & 0xff), f);
	fwrite(h, 1, hl, f);
	for (int i = 0; i < st->n_tensors; i++) {
		const struct iap_st_tensor *t = &st->tensors[i];

		if (t->dtype == IAP_ST_I64) {
			fwrite(st->data + t->begin, 1, (size_t)(t->end - t->begin), f);
			continue;
		}
		{
			float *v = malloc((size_t)t->numel * sizeof(float) + 4);

			assert_non_null(v);
			check_ok(iap_safetensors_read_f32(st, t, v, &err), &err);
			for (int64_t k = 0; k < t->numel; k++) {
				uint16_t b = bf16 ? to_bf16(v[k]) : to_f16(v[k]);

				fputc(b & 0xff, f);
				fputc(b >> 8, f);
			}
			free(v);
		}
	}
	assert_int_equal(fclose(f), 0);
	iap_safetensors_close(st);
	free(h);
}

/* Largest |a - b| / max(|b|, floor) over every parameter of two graphs of one architecture. */
static double worst_rel(const struct iap_graph *a, const struct iap_graph *b)
{
	double worst = 0;

	for (int i = 0; i < a->n_nodes; i++)
		for (int k = 0; k < a->nodes[i].n_params; k++) {
			const struct iap_tensor *ta = &a->nodes[i].params[k].value, *tb = &b->nodes[i].params[k].value;

			for (int64_t e = 0; e < iap_tensor_numel(ta); e++) {
				double d = fabs((double)ta->data[e] - tb->data[e]) / fmax(fabs(tb->data[e]), 1e-3);

				worst = fmax(worst, d);
			}
		}
	return worst;
}

static void test_half_precision_exports(void **state)
{
	struct iap_cnn_cfg cfg = { .depth = 18, .num_classes = 5, .in_channels = 3, .image_size = 32,
				   .width = 1.0 / 16 };
	struct iap_graph *ref, *g;
	struct iap_safetensors *st;
	struct iap_error err;
	char src[4096], path[] = "/tmp/iap-half.XXXXXX", note[512], want[600];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	fixture(src, sizeof(src), "resnet18");
	check_ok(iap_resnet_build(&cfg, &ref, &err), &err);
	check_ok(iap_graph_load_weights_file(ref, src, 0, &err), &err);
	check_ok(iap_safetensors_open(src, &st, &err), &err);
	assert_int_equal(iap_weights_half_note(st, note, sizeof(note)), 0);
	iap_safetensors_close(st);
	for (int bf16 = 0; bf16 <= 1; bf16++) {
		write_half(src, path, bf16);
		check_ok(iap_resnet_build(&cfg, &g, &err), &err);
		check_ok(iap_graph_load_weights_file(g, path, 0, &err), &err);
		/* Half: 11 significant bits; bfloat16: 8 (round to nearest: half an ulp). */
		assert_true(worst_rel(g, ref) <= (bf16 ? 1.0 / 256 : 1.0 / 2048) * 1.01);
		assert_true(worst_rel(g, ref) > 0);
		check_ok(iap_safetensors_open(path, &st, &err), &err);
		assert_int_equal(iap_weights_half_note(st, note, sizeof(note)), 1);
		/* resnet18: 20 conv weights, 20 BatchNorms x 4, fc weight and bias = 102 float tensors (and 20 counters). */
		snprintf(want, sizeof(want), "%s: 102 %s tensors converted to float32", path, bf16 ? "BF16" : "F16");
		assert_string_equal(note, want);
		iap_safetensors_close(st);
		iap_graph_free(g);
	}
	unlink(path);
	iap_graph_free(ref);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_counter_roundtrip),
		cmocka_unit_test(test_torchvision_keys_survive),
		cmocka_unit_test(test_half_precision_exports),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
