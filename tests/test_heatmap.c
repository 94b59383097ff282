/*
 * Heatmaps: the colormap, the percentile scale, the PNG (decoded back with
 * libpng's simplified reader: size and the colours of chosen pixels, worked
 * out by hand) and the .npy file (header and data byte for byte).
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include <iaprune/heatmap.h>

#include "png_read.h"

static char dir[256];

static int setup(void **unused)
{
	const char *tmp = getenv("TMPDIR");

	(void)unused;
	snprintf(dir, sizeof(dir), "%s/iap-heatmap-XXXXXX", tmp && *tmp ? tmp : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **unused)
{
	char path[512];

	(void)unused;
	snprintf(path, sizeof(path), "%s/a.png", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/g.png", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/m.npy", dir);
	unlink(path);
	rmdir(dir);
	return 0;
}

static void expect_rgb(const uint8_t *px, int r, int g, int b)
{
	if (px[0] != r || px[1] != g || px[2] != b)
		fail_msg("pixel is (%d, %d, %d), expected (%d, %d, %d)", px[0], px[1], px[2], r, g, b);
}

static void test_colormap(void **unused)
{
	uint8_t c[3];

	(void)unused;
	iap_heatmap_color(1.0f, c);
	expect_rgb(c, 255, 0, 0);
	iap_heatmap_color(-1.0f, c);
	expect_rgb(c, 0, 0, 255);
	iap_heatmap_color(0.0f, c);
	expect_rgb(c, 255, 255, 255);
	/* Symmetric: ±0.6 fade the other channels to 0.4 · 255 = 102. */
	iap_heatmap_color(0.6f, c);
	expect_rgb(c, 255, 102, 102);
	iap_heatmap_color(-0.6f, c);
	expect_rgb(c, 102, 102, 255);
	/* Clipped beyond ±1, NaN drawn as 0. */
	iap_heatmap_color(7.0f, c);
	expect_rgb(c, 255, 0, 0);
	iap_heatmap_color(NAN, c);
	expect_rgb(c, 255, 255, 255);
}

static void test_scale(void **unused)
{
	float m[101], s;
	struct iap_error err = { 0 };

	(void)unused;
	/* |m| = 0, 1, ..., 100 with alternating signs: numpy.percentile's linear interpolation. */
	for (int i = 0; i <= 100; i++)
		m[i] = (i % 2 ? -1.0f : 1.0f) * (float)i;
	assert_int_equal(iap_heatmap_scale(m, 101, 50.0f, &s, &err), IAP_OK);
	assert_true(s == 50.0f);
	assert_int_equal(iap_heatmap_scale(m, 101, 99.5f, &s, &err), IAP_OK);
	assert_true(fabsf(s - 99.5f) < 1e-4f);
	assert_int_equal(iap_heatmap_scale(m, 101, 100.0f, &s, &err), IAP_OK);
	assert_true(s == 100.0f);
	m[3] = INFINITY;
	assert_int_equal(iap_heatmap_scale(m, 101, 99.0f, &s, &err), IAP_ENUMERIC);
	assert_int_equal(iap_heatmap_scale(m, 101, 0.0f, &s, &err), IAP_EINVAL);
}

static void test_png_rgb(void **unused)
{
	static const float mean[3] = { 0.485f, 0.456f, 0.406f }, std[3] = { 0.229f, 0.224f, 0.225f };
	enum { H = 4, W = 5 };
	float image[3 * H * W], map[H * W] = { 0 };
	struct iap_heatmap_opts o;
	struct iap_error err = { 0 };
	char path[512];
	uint8_t *px;
	int h, w;

	(void)unused;
	/* Pixels 0.4 in every channel except (0, 0) = (0.2, 0.4, 0.8), normalised as ImageNet. */
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < H * W; i++) {
			float p = i == 0 ? (c == 0 ? 0.2f : c == 1 ? 0.4f : 0.8f) : 0.4f;

			image[c * H * W + i] = (p - mean[c]) / std[c];
		}
	/* Relevance +8 at (1, 2), −8 at (3, 4), +4 at (2, 0); full scale 8 (100th percentile). */
	map[1 * W + 2] = 8.0f;
	map[3 * W + 4] = -8.0f;
	map[2 * W + 0] = 4.0f;
	iap_heatmap_opts_init(&o);
	o.mean = mean;
	o.std = std;
	o.percentile = 100.0f;
	o.alpha = 0.6f;
	snprintf(path, sizeof(path), "%s/a.png", dir);
	if (iap_heatmap_write_png(path, image, 3, H, W, map, &o, &err))
		fail_msg("%s", err.msg);
	px = tu_read_png(path, &h, &w);
	assert_int_equal(h, H);
	assert_int_equal(w, W);
	/* Zero relevance: the image itself, 0.4 · 255 = 102; (0, 0) = (51, 102, 204). */
	expect_rgb(px + 3 * (0 * W + 1), 102, 102, 102);
	expect_rgb(px + 3 * (0 * W + 0), 51, 102, 204);
	/* v = +1, weight 0.6: R = 0.4·0.4 + 0.6 = 0.76 → 194; G = B = 0.16 → 41. */
	expect_rgb(px + 3 * (1 * W + 2), 194, 41, 41);
	/* v = −1: the mirror image in blue. */
	expect_rgb(px + 3 * (3 * W + 4), 41, 41, 194);
	/*
	 * v = +0.5, weight 0.3, bwr(0.5) = (255, 128, 128):
	 * R = 0.7·0.4 + 0.3 = 0.58 → 148; G = B = 0.28 + 0.3·128/255 = 0.43059 → 110.
	 */
	expect_rgb(px + 3 * (2 * W + 0), 148, 110, 110);
	free(px);
}

static void test_png_gray(void **unused)
{
	enum { H = 3, W = 2 };
	/* A gray image already in [0, 1] (no de-normalisation), values out of range clamped. */
	float image[H * W] = { 0.2f, 0.4f, 1.5f, -1.0f, 0.6f, 0.8f };
	float map[H * W] = { 0, 0, 0, 0, -2.0f, 0 };
	struct iap_error err = { 0 };
	char path[512];
	uint8_t *px;
	int h, w;

	(void)unused;
	snprintf(path, sizeof(path), "%s/g.png", dir);
	/* Default options: α = 0.7, scale = the 99.5th percentile of (0,0,0,0,2,0) = 2. */
	if (iap_heatmap_write_png(path, image, 1, H, W, map, NULL, &err))
		fail_msg("%s", err.msg);
	px = tu_read_png(path, &h, &w);
	assert_int_equal(h, H);
	assert_int_equal(w, W);
	expect_rgb(px + 0, 51, 51, 51);
	expect_rgb(px + 3, 102, 102, 102);
	expect_rgb(px + 6, 255, 255, 255);
	expect_rgb(px + 9, 0, 0, 0);
	/* v = −1 over 0.6: R = G = 0.3·0.6 = 0.18 → 46; B = 0.18 + 0.7 = 0.88 → 224. */
	expect_rgb(px + 12, 46, 46, 224);
	free(px);
	/* A 2-channel image is refused; nothing is left behind in a failed write. */
	assert_int_equal(iap_heatmap_write_png(path, image, 2, H, W, map, NULL, &err), IAP_EINVAL);
}

static void test_npy(void **unused)
{
	static const float data[6] = { 1.5f, -2.0f, 0.0f, 3.25f, 1e-3f, -7.0f };
	const int64_t shape[2] = { 2, 3 };
	struct iap_error err = { 0 };
	unsigned char buf[256];
	char path[512];
	size_t n, hlen;
	FILE *f;

	(void)unused;
	snprintf(path, sizeof(path), "%s/m.npy", dir);
	if (iap_heatmap_write_npy(path, data, 2, shape, &err))
		fail_msg("%s", err.msg);
	f = fopen(path, "rb");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf), f);
	fclose(f);
	assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
	hlen = buf[8] | (size_t)buf[9] << 8;
	/* numpy pads the header so the data starts on a 64-byte boundary, ending in '\n'. */
	assert_int_equal((10 + hlen) % 64, 0);
	assert_int_equal(buf[10 + hlen - 1], '\n');
	assert_int_equal(n, 10 + hlen + sizeof(data));
	buf[10 + hlen - 1] = '\0';
	assert_non_null(strstr((char *)buf + 10,
			       "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"));
	assert_memory_equal(buf + 10 + hlen, data, sizeof(data)); /* little-endian host */
	/* One dimension is written as a 1-tuple. */
	if (iap_heatmap_write_npy(path, data, 1, shape + 1, &err))
		fail_msg("%s", err.msg);
	f = fopen(path, "rb");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	assert_non_null(strstr((char *)buf + 10, "'shape': (3,), }"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_colormap),
		cmocka_unit_test(test_scale),
		cmocka_unit_test(test_png_rgb),
		cmocka_unit_test(test_png_gray),
		cmocka_unit_test(test_npy),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
