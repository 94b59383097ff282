/*
 * Image decoding, resizing and normalisation. The PNG and JPEG inputs are
 * written here with libpng / libjpeg into a temporary directory, so every
 * expected pixel value is known exactly.
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

#include <png.h>
#include <jpeglib.h>
#include <zlib.h>

#include <iaprune/image.h>

static char tmpdir[64];

static const char *tpath(const char *name)
{
	static char buf[4][256];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmpdir, name);
	return buf[k];
}

static int setup(void **state)
{
	(void)state;
	strcpy(tmpdir, "/tmp/iap-img-XXXXXX");
	return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	return system(cmd) == 0 ? 0 : -1;
}

/*
 * Write a PNG: pixels are packed rows as libpng wants them (16-bit samples
 * big-endian; sub-byte depths packed). Palette/tRNS optional.
 */
static void write_png(const char *path, int w, int h, int ctype, int depth, int interlace,
		      const unsigned char *pixels, const png_color *pal, int npal,
		      const unsigned char *trans, int ntrans)
{
	FILE *fp = fopen(path, "wb");
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	size_t rowbytes;
	int passes;

	assert_non_null(fp);
	assert_non_null(info);
	if (setjmp(png_jmpbuf(png)))
		fail_msg("libpng failed writing %s", path);
	png_init_io(png, fp);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, depth, ctype,
		     interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	if (pal)
		png_set_PLTE(png, info, pal, npal);
	if (trans)
		png_set_tRNS(png, info, trans, ntrans, NULL);
	png_write_info(png, info);
	rowbytes = png_get_rowbytes(png, info);
	passes = png_set_interlace_handling(png);
	for (int p = 0; p < passes; p++)
		for (int y = 0; y < h; y++)
			png_write_row(png, pixels + rowbytes * (size_t)y);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	fclose(fp);
}

static void write_jpeg(const char *path, int w, int h, int comps, const unsigned char *pixels,
		       int quality)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_stdio_dest(&ci, fp);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = comps;
	ci.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, quality, TRUE);
	jpeg_start_compress(&ci, TRUE);
	while (ci.next_scanline < ci.image_height) {
		JSAMPROW row = (JSAMPROW)(pixels + (size_t)ci.next_scanline * w * comps);

		jpeg_write_scanlines(&ci, &row, 1);
	}
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	fclose(fp);
}

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "rb");
	unsigned char *buf;
	long n;

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = malloc((size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	*len = (size_t)n;
	return buf;
}

static void spit(const char *path, const void *buf, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(buf, 1, len, fp), len);
	fclose(fp);
}

static void assert_shape(const struct iap_tensor *t, int c, int h, int w)
{
	assert_int_equal(t->ndim, 3);
	assert_int_equal(t->shape[0], c);
	assert_int_equal(t->shape[1], h);
	assert_int_equal(t->shape[2], w);
}

/* PIL's "L" luma of an 8-bit pixel, as the decoder computes it (no rounding to 8 bits). */
static float luma8(int r, int g, int b)
{
	return (float)(r * 299 + g * 587 + b * 114) / 255000.0f;
}

/* ---- PNG ------------------------------------------------------------------------ */

static void test_png_gray8(void **state)
{
	const unsigned char px[6] = { 0, 1, 127, 128, 254, 255 };
	struct iap_tensor t = { 0 };
	struct iap_error err;

	(void)state;
	write_png(tpath("g8.png"), 3, 2, PNG_COLOR_TYPE_GRAY, 8, 0, px, NULL, 0, NULL, 0);
	assert_int_equal(iap_image_load(tpath("g8.png"), 0, &t, &err), IAP_OK);
	assert_shape(&t, 1, 2, 3);
	for (int i = 0; i < 6; i++)
		assert_true(t.data[i] == (float)px[i] / 255.0f);
	assert_true(t.data[5] == 1.0f && t.data[0] == 0.0f);

	/* Gray asked for 3 channels: replicated. */
	assert_int_equal(iap_image_load(tpath("g8.png"), 3, &t, &err), IAP_OK);
	assert_shape(&t, 3, 2, 3);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 6; i++)
			assert_true(t.data[c * 6 + i] == (float)px[i] / 255.0f);
	iap_tensor_free(&t);
}

static void test_png_gray16_and_low_depths(void **state)
{
	const uint16_t v[6] = { 0, 1, 256, 65535, 32768, 12345 };
	unsigned char px[12], bits[2];
	struct iap_tensor t = { 0 };
	struct iap_error err;

	(void)state;
	for (int i = 0; i < 6; i++) {
		px[2 * i] = (unsigned char)(v[i] >> 8);
		px[2 * i + 1] = (unsigned char)v[i];
	}
	write_png(tpath("g16.png"), 2, 3, PNG_COLOR_TYPE_GRAY, 16, 0, px, NULL, 0, NULL, 0);
	assert_int_equal(iap_image_load(tpath("g16.png"), 1, &t, &err), IAP_OK);
	assert_shape(&t, 1, 3, 2);
	for (int i = 0; i < 6; i++)
		assert_true(t.data[i] == (float)v[i] / 65535.0f);

	/* 1-bit gray, 4 pixels wide, 2 rows: 1010 / 0111 (MSB first) -> 0 or 1.0. */
	bits[0] = 0xa0;
	bits[1] = 0x70;
	write_png(tpath("g1.png"), 4, 2, PNG_COLOR_TYPE_GRAY, 1, 0, bits, NULL, 0, NULL, 0);
	assert_int_equal(iap_image_load(tpath("g1.png"), 0, &t, &err), IAP_OK);
	assert_shape(&t, 1, 2, 4);
	{
		const float want[8] = { 1, 0, 1, 0, 0, 1, 1, 1 };

		for (int i = 0; i < 8; i++)
			assert_true(t.data[i] == want[i]);
	}

	/* gray+alpha: alpha dropped, gray kept. */
	{
		const unsigned char ga[4] = { 10, 0, 200, 255 };

		write_png(tpath("ga.png"), 2, 1, PNG_COLOR_TYPE_GRAY_ALPHA, 8, 0, ga, NULL, 0, NULL,
			  0);
		assert_int_equal(iap_image_load(tpath("ga.png"), 0, &t, &err), IAP_OK);
		assert_shape(&t, 1, 1, 2);
		assert_true(t.data[0] == 10.0f / 255.0f);
		assert_true(t.data[1] == 200.0f / 255.0f);
	}
	iap_tensor_free(&t);
}

static void test_png_rgb_rgba_and_luma(void **state)
{
	/* 2x2: red, green / blue, (10, 20, 30) */
	const unsigned char rgb[12] = { 255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30 };
	unsigned char rgba[16];
	struct iap_tensor t = { 0 };
	struct iap_error err;

	(void)state;
	write_png(tpath("rgb.png"), 2, 2, PNG_COLOR_TYPE_RGB, 8, 0, rgb, NULL, 0, NULL, 0);
	assert_int_equal(iap_image_load(tpath("rgb.png"), 0, &t, &err), IAP_OK);
	assert_shape(&t, 3, 2, 2);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 4; i++)
			assert_true(t.data[c * 4 + i] == (float)rgb[i * 3 + c] / 255.0f);

	/* To gray: ITU-R 601-2 luma, 0.299 / 0.587 / 0.114 of full scale for pure colours. */
	assert_int_equal(iap_image_load(tpath("rgb.png"), 1, &t, &err), IAP_OK);
	assert_shape(&t, 1, 2, 2);
	assert_float_equal(t.data[0], 0.299, 1e-7);
	assert_float_equal(t.data[1], 0.587, 1e-7);
	assert_float_equal(t.data[2], 0.114, 1e-7);
	/* (10*299 + 20*587 + 30*114) / 1000 = 18.15 -> 18.15/255 */
	assert_float_equal(t.data[3], 18.15 / 255.0, 1e-7);
	assert_true(t.data[3] == luma8(10, 20, 30));

	/* RGBA: alpha dropped, not composited (alpha 0 keeps its colour). */
	for (int i = 0; i < 4; i++) {
		memcpy(rgba + 4 * i, rgb + 3 * i, 3);
		rgba[4 * i + 3] = (unsigned char)(i * 60);
	}
	write_png(tpath("rgba.png"), 2, 2, PNG_COLOR_TYPE_RGBA, 8, 0, rgba, NULL, 0, NULL, 0);
	assert_int_equal(iap_image_load(tpath("rgba.png"), 0, &t, &err), IAP_OK);
	assert_shape(&t, 3, 2, 2);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 4; i++)
			assert_true(t.data[c * 4 + i] == (float)rgb[i * 3 + c] / 255.0f);
	iap_tensor_free(&t);
}

static void test_png_palette_trns(void **state)
{
	const png_color pal[3] = { { 255, 0, 0 }, { 0, 128, 0 }, { 7, 8, 9 } };
	const unsigned char trans[1] = { 0 };  /* index 0 fully transparent */
	/* 4-bit indices, 3 wide x 2 high: row0 = 0 1 2, row1 = 2 1 0 */
	const unsigned char px[4] = { 0x01, 0x20, 0x21, 0x00 };
	const int idx[6] = { 0, 1, 2, 2, 1, 0 };
	struct iap_tensor t = { 0 };
	struct iap_error err;

	(void)state;
	write_png(tpath("pal.png"), 3, 2, PNG_COLOR_TYPE_PALETTE, 4, 0, px, pal, 3, trans, 1);
	assert_int_equal(iap_image_load(tpath("pal.png"), 0, &t, &err), IAP_OK);
	assert_shape(&t, 3, 2, 3);
	for (int i = 0; i < 6; i++) {
		assert_true(t.data[i] == (float)pal[idx[i]].red / 255.0f);
		assert_true(t.data[6 + i] == (float)pal[idx[i]].green / 255.0f);
		assert_true(t.data[12 + i] == (float)pal[idx[i]].blue / 255.0f);
	}
	assert_int_equal(iap_image_load(tpath("pal.png"), 1, &t, &err), IAP_OK);
	assert_shape(&t, 1, 2, 3);
	assert_true(t.data[2] == luma8(7, 8, 9));
	iap_tensor_free(&t);
}

static void test_png_interlaced_rgb16(void **state)
{
	enum { W = 5, H = 7 };
	unsigned char px[W * H * 6];
	struct iap_tensor t = { 0 };
	struct iap_error err;

	(void)state;
	for (int i = 0; i < W * H * 3; i++) {
		uint16_t v = (uint16_t)(i * 1871 + 13);

		px[2 * i] = (unsigned char)(v >> 8);
		px[2 * i + 1] = (unsigned char)v;
	}
	write_png(tpath("i16.png"), W, H, PNG_COLOR_TYPE_RGB, 16, 1, px, NULL, 0, NULL, 0);
	assert_int_equal(iap_image_load(tpath("i16.png"), 3, &t, &err), IAP_OK);
	assert_shape(&t, 3, H, W);
	for (int p = 0; p < W * H; p++)
		for (int c = 0; c < 3; c++) {
			uint16_t v = (uint16_t)((p * 3 + c) * 1871 + 13);

			assert_true(t.data[c * W * H + p] == (float)v / 65535.0f);
		}
	iap_tensor_free(&t);
}

static void test_one_by_one_and_reuse(void **state)
{
	const unsigned char px[3] = { 1, 2, 3 };
	struct iap_tensor t = { 0 };
	struct iap_error err;
	unsigned char *buf;
	float *first;
	size_t len;

	(void)state;
	write_png(tpath("1x1.png"), 1, 1, PNG_COLOR_TYPE_RGB, 8, 0, px, NULL, 0, NULL, 0);
	buf = slurp(tpath("1x1.png"), &len);
	assert_int_equal(iap_image_detect(buf, len), IAP_IMAGE_PNG);
	assert_int_equal(iap_image_decode(buf, len, "m.png", 3, &t, &err), IAP_OK);
	assert_shape(&t, 3, 1, 1);
	assert_true(t.data[0] == 1.0f / 255.0f && t.data[1] == 2.0f / 255.0f &&
		    t.data[2] == 3.0f / 255.0f);
	/* Same size again: the tensor's buffer is reused, not reallocated. */
	first = t.data;
	assert_int_equal(iap_image_decode(buf, len, "m.png", 3, &t, &err), IAP_OK);
	assert_ptr_equal(t.data, first);
	free(buf);
	iap_tensor_free(&t);
}

/* ---- JPEG ----------------------------------------------------------------------- */

static void test_jpeg_flat_gray_and_rgb(void **state)
{
	enum { W = 16, H = 16 };
	unsigned char gray[W * H], rgb[W * H * 3];
	struct iap_tensor t = { 0 };
	struct iap_error err;
	unsigned char *buf;
	size_t len;

	(void)state;
	memset(gray, 100, sizeof(gray));
	for (int i = 0; i < W * H; i++) {
		rgb[3 * i] = 200;
		rgb[3 * i + 1] = 50;
		rgb[3 * i + 2] = 30;
	}
	write_jpeg(tpath("gray.jpg"), W, H, 1, gray, 95);
	write_jpeg(tpath("rgb.jpg"), W, H, 3, rgb, 95);

	buf = slurp(tpath("gray.jpg"), &len);
	assert_int_equal(iap_image_detect(buf, len), IAP_IMAGE_JPEG);
	free(buf);
	assert_int_equal(iap_image_load(tpath("gray.jpg"), 0, &t, &err), IAP_OK);
	assert_shape(&t, 1, H, W);
	/* A flat block survives JPEG almost exactly: within 1/255 of the encoded value. */
	for (int i = 0; i < W * H; i++)
		assert_float_equal(t.data[i], 100.0 / 255.0, 1.01 / 255.0);

	assert_int_equal(iap_image_load(tpath("rgb.jpg"), 0, &t, &err), IAP_OK);
	assert_shape(&t, 3, H, W);
	/* YCbCr round trip adds a few levels of error per channel. */
	for (int i = 0; i < W * H; i++) {
		assert_float_equal(t.data[i], 200.0 / 255.0, 3.01 / 255.0);
		assert_float_equal(t.data[W * H + i], 50.0 / 255.0, 3.01 / 255.0);
		assert_float_equal(t.data[2 * W * H + i], 30.0 / 255.0, 3.01 / 255.0);
	}
	/* Colour JPEG to gray: the luma of the colour (99.22), same tolerance. */
	assert_int_equal(iap_image_load(tpath("rgb.jpg"), 1, &t, &err), IAP_OK);
	assert_shape(&t, 1, H, W);
	for (int i = 0; i < W * H; i++)
		assert_float_equal(t.data[i], luma8(200, 50, 30), 3.01 / 255.0);
	/* Gray JPEG to 3 channels: three equal planes. */
	assert_int_equal(iap_image_load(tpath("gray.jpg"), 3, &t, &err), IAP_OK);
	assert_shape(&t, 3, H, W);
	for (int i = 0; i < W * H; i++)
		assert_true(t.data[i] == t.data[W * H + i] && t.data[i] == t.data[2 * W * H + i]);
	iap_tensor_free(&t);
}

/* ---- refusals -------------------------------------------------------------------- */

/* Append a PNG chunk (length, type, data, CRC) to buf at *n. */
static void put_chunk(unsigned char *buf, size_t *n, const char *type, const unsigned char *data,
		      uint32_t len)
{
	uint32_t crc;

	buf[*n] = (unsigned char)(len >> 24);
	buf[*n + 1] = (unsigned char)(len >> 16);
	buf[*n + 2] = (unsigned char)(len >> 8);
	buf[*n + 3] = (unsigned char)len;
	memcpy(buf + *n + 4, type, 4);
	if (len)
		memcpy(buf + *n + 8, data, len);
	crc = (uint32_t)crc32(0, buf + *n + 4, 4 + len);
	*n += 8 + len;
	buf[*n] = (unsigned char)(crc >> 24);
	buf[*n + 1] = (unsigned char)(crc >> 16);
	buf[*n + 2] = (unsigned char)(crc >> 8);
	buf[*n + 3] = (unsigned char)crc;
	*n += 4;
}

/* A PNG with only signature + IHDR (w x h, 8-bit gray) + IEND: enough to reach the size checks. */
static size_t header_only_png(unsigned char *buf, uint32_t w, uint32_t h)
{
	static const unsigned char sig[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	unsigned char ihdr[13] = { 0 };
	size_t n = 8;

	memcpy(buf, sig, 8);
	for (int i = 0; i < 4; i++) {
		ihdr[i] = (unsigned char)(w >> (24 - 8 * i));
		ihdr[4 + i] = (unsigned char)(h >> (24 - 8 * i));
	}
	ihdr[8] = 8;  /* depth */
	ihdr[9] = 0;  /* gray */
	put_chunk(buf, &n, "IHDR", ihdr, 13);
	put_chunk(buf, &n, "IEND", NULL, 0);
	return n;
}

static void test_refusals(void **state)
{
	enum { W = 40, H = 40 };
	unsigned char px[W * H * 3], hdr[64];
	struct iap_tensor t = { 0 };
	struct iap_error err;
	unsigned char *buf;
	char want[512];
	size_t len, n;

	(void)state;
	for (int i = 0; i < W * H * 3; i++)
		px[i] = (unsigned char)((i * 37) ^ (i >> 3));
	write_png(tpath("scan.png"), W, H, PNG_COLOR_TYPE_RGB, 8, 0, px, NULL, 0, NULL, 0);
	write_jpeg(tpath("x.jpg"), W, H, 3, px, 90);

	/* Truncated PNG: cut in the middle of the pixel data. */
	buf = slurp(tpath("scan.png"), &len);
	spit(tpath("cut.png"), buf, len / 2);
	assert_int_equal(iap_image_load(tpath("cut.png"), 3, &t, &err), IAP_EFORMAT);
	snprintf(want, sizeof(want), "%s: truncated PNG (%zu bytes)", tpath("cut.png"), len / 2);
	assert_string_equal(err.msg, want);
	/* Cut just before IEND: the pixels are all there but the file is still incomplete. */
	assert_int_equal(iap_image_decode(buf, len - 12, "end.png", 3, &t, &err), IAP_EFORMAT);
	snprintf(want, sizeof(want), "end.png: truncated PNG (%zu bytes)", len - 12);
	assert_string_equal(err.msg, want);
	/* A flipped byte in IHDR: the chunk CRC catches it. */
	buf[24] ^= 0x55;
	assert_int_equal(iap_image_decode(buf, len, "scan.png", 3, &t, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "scan.png: corrupt PNG: IHDR: CRC error");
	buf[24] ^= 0x55;
	/* One near the end of the compressed pixels: zlib's checksum catches it first. */
	buf[len - 30] ^= 0x55;
	assert_int_equal(iap_image_decode(buf, len, "scan.png", 3, &t, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "scan.png: corrupt PNG: IDAT: incorrect data check");
	free(buf);

	/* Truncated JPEG. */
	buf = slurp(tpath("x.jpg"), &len);
	assert_int_equal(iap_image_decode(buf, len / 2, "x.jpg", 3, &t, &err), IAP_EFORMAT);
	snprintf(want, sizeof(want), "x.jpg: truncated JPEG (%zu bytes)", len / 2);
	assert_string_equal(err.msg, want);
	/* Only the SOI marker and a bit: truncated in the header. */
	assert_int_equal(iap_image_decode(buf, 20, "x.jpg", 3, &t, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "x.jpg: truncated JPEG (20 bytes)");
	/* Zeros over the first marker segment (its length too): a clear error, one line. */
	memset(buf + 4, 0x00, 30);
	assert_int_equal(iap_image_decode(buf, len, "x.jpg", 3, &t, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "x.jpg: corrupt JPEG: Quantization table 0x00 was not defined");
	assert_null(strchr(err.msg, '\n'));
	free(buf);

	/* Wrong magic (the extension does not matter), empty file, missing file. */
	spit(tpath("junk.png"), "GIF89a....", 10);
	assert_int_equal(iap_image_load(tpath("junk.png"), 3, &t, &err), IAP_EFORMAT);
	snprintf(want, sizeof(want), "%s: not a PNG or JPEG image", tpath("junk.png"));
	assert_string_equal(err.msg, want);
	spit(tpath("empty.jpg"), "", 0);
	assert_int_equal(iap_image_load(tpath("empty.jpg"), 3, &t, &err), IAP_EFORMAT);
	snprintf(want, sizeof(want), "%s: empty file", tpath("empty.jpg"));
	assert_string_equal(err.msg, want);
	assert_int_equal(iap_image_load(tpath("nope.png"), 3, &t, &err), IAP_EIO);
	snprintf(want, sizeof(want), "%s: No such file or directory", tpath("nope.png"));
	assert_string_equal(err.msg, want);
	/* A PNG named .jpg is still read as PNG. */
	write_png(tpath("really-png.jpg"), W, H, PNG_COLOR_TYPE_RGB, 8, 0, px, NULL, 0, NULL, 0);
	assert_int_equal(iap_image_load(tpath("really-png.jpg"), 3, &t, &err), IAP_OK);
	assert_true(t.data[0] == (float)px[0] / 255.0f);

	/* Zero width, zero height: refused. */
	n = header_only_png(hdr, 0, 5);
	assert_int_equal(iap_image_decode(hdr, n, "z.png", 3, &t, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "z.png: corrupt PNG: zero-size image (0x5)");
	n = header_only_png(hdr, 3, 0);
	assert_int_equal(iap_image_decode(hdr, n, "z.png", 3, &t, &err), IAP_EFORMAT);
	assert_string_equal(err.msg, "z.png: corrupt PNG: zero-size image (3x0)");
	/* Above the limits: refused from the header, before any pixel buffer exists. */
	n = header_only_png(hdr, 40000, 1);
	assert_int_equal(iap_image_decode(hdr, n, "wide.png", 3, &t, &err), IAP_ELIMIT);
	assert_string_equal(err.msg, "wide.png: PNG image too large (40000x1; limit 32768 per side, "
				     "268435456 pixels)");
	n = header_only_png(hdr, 20000, 20000);
	assert_int_equal(iap_image_decode(hdr, n, "big.png", 3, &t, &err), IAP_ELIMIT);
	assert_string_equal(err.msg, "big.png: PNG image too large (20000x20000; limit 32768 per "
				     "side, 268435456 pixels)");
	/* A wide JPEG (libjpeg can write 40000 x 1) is refused the same way. */
	{
		unsigned char *wide = calloc(40000, 1);

		assert_non_null(wide);
		write_jpeg(tpath("wide.jpg"), 40000, 1, 1, wide, 50);
		free(wide);
		assert_int_equal(iap_image_load(tpath("wide.jpg"), 1, &t, &err), IAP_ELIMIT);
		snprintf(want, sizeof(want),
			 "%s: JPEG image too large (40000x1; limit 32768 per side, 268435456 pixels)",
			 tpath("wide.jpg"));
		assert_string_equal(err.msg, want);
	}

	/* Bad arguments. */
	assert_int_equal(iap_image_load(tpath("scan.png"), 2, &t, &err), IAP_EINVAL);
	snprintf(want, sizeof(want), "%s: cannot decode to 2 channels (1 or 3)", tpath("scan.png"));
	assert_string_equal(err.msg, want);
	iap_tensor_free(&t);
}

/* ---- resize ----------------------------------------------------------------------- */

static void test_resize_hand_computed(void **state)
{
	const float row4[4] = { 0, 1, 2, 3 }, row2[2] = { 0, 1 }, row3[3] = { 0, 1, 2 };
	float out[16];
	struct iap_error err;

	(void)state;
	/*
	 * 4 -> 2: scale 2, support 2. Output 0 has centre 1.0 and covers inputs 0..2 with
	 * triangle weights 0.75, 0.75, 0.25 (at distances 0.5, 0.5, 1.5 scaled by 1/2),
	 * i.e. 3/7, 3/7, 1/7 after normalising; output 1 mirrors it on inputs 1..3.
	 */
	assert_int_equal(iap_image_resize(NULL, row4, 1, 1, 4, out, 1, 2, &err), IAP_OK);
	assert_float_equal(out[0], 5.0 / 7.0, 1e-6);
	assert_float_equal(out[1], 16.0 / 7.0, 1e-6);
	/* Same along the vertical axis. */
	assert_int_equal(iap_image_resize(NULL, row4, 1, 4, 1, out, 2, 1, &err), IAP_OK);
	assert_float_equal(out[0], 5.0 / 7.0, 1e-6);
	assert_float_equal(out[1], 16.0 / 7.0, 1e-6);

	/* 3 -> 2: weights 5/8, 3/8 and 3/8, 5/8 (PIL gives 0.375, 1.625). */
	assert_int_equal(iap_image_resize(NULL, row3, 1, 1, 3, out, 1, 2, &err), IAP_OK);
	assert_float_equal(out[0], 0.375, 1e-6);
	assert_float_equal(out[1], 1.625, 1e-6);

	/* 3 -> 1: support 3 covers all three with 2/7, 3/7, 2/7. */
	assert_int_equal(iap_image_resize(NULL, row3, 1, 1, 3, out, 1, 1, &err), IAP_OK);
	assert_float_equal(out[0], 1.0, 1e-6);
	{
		const float r[3] = { 7, 0, 0 };

		assert_int_equal(iap_image_resize(NULL, r, 1, 1, 3, out, 1, 1, &err), IAP_OK);
		assert_float_equal(out[0], 2.0, 1e-6);
	}

	/* 2 -> 4 enlarges: half-pixel bilinear, clamped at the edges: 0, .25, .75, 1. */
	assert_int_equal(iap_image_resize(NULL, row2, 1, 1, 2, out, 1, 4, &err), IAP_OK);
	assert_float_equal(out[0], 0.0, 1e-7);
	assert_float_equal(out[1], 0.25, 1e-7);
	assert_float_equal(out[2], 0.75, 1e-7);
	assert_float_equal(out[3], 1.0, 1e-7);

	/* 2x2 -> 4x4 is separable: out[y][x] = v[y] * u[x] for an outer-product input. */
	{
		const float img[2 * 2 * 2] = { 0, 0, 0, 1, /* plane 2: */ 1, 1, 1, 1 };
		const float f[4] = { 0, 0.25f, 0.75f, 1 };
		float o[2 * 16];

		assert_int_equal(iap_image_resize(NULL, img, 2, 2, 2, o, 4, 4, &err), IAP_OK);
		for (int y = 0; y < 4; y++)
			for (int x = 0; x < 4; x++) {
				assert_float_equal(o[y * 4 + x], f[y] * f[x], 1e-7);
				assert_float_equal(o[16 + y * 4 + x], 1.0, 1e-7);
			}
	}
}

static void test_resize_properties(void **state)
{
	enum { C = 3, H = 7, W = 5, OH = 3, OW = 11 };
	float src[C * H * W], dst[C * OH * OW], same[C * H * W];
	struct iap_resizer rs = { 0 };
	struct iap_error err;
	const float *wx, *wy;

	(void)state;
	/* A constant image stays constant (weights sum to 1), per channel. */
	for (int c = 0; c < C; c++)
		for (int i = 0; i < H * W; i++)
			src[c * H * W + i] = 0.3f + 0.2f * c;
	assert_int_equal(iap_image_resize(&rs, src, C, H, W, dst, OH, OW, &err), IAP_OK);
	for (int c = 0; c < C; c++)
		for (int i = 0; i < OH * OW; i++)
			assert_float_equal(dst[c * OH * OW + i], 0.3 + 0.2 * c, 1e-6);
	/* Same sizes again: the weight tables are kept, not rebuilt. */
	wx = rs.x.w;
	wy = rs.y.w;
	assert_int_equal(iap_image_resize(&rs, src, C, H, W, dst, OH, OW, &err), IAP_OK);
	assert_ptr_equal(rs.x.w, wx);
	assert_ptr_equal(rs.y.w, wy);
	/* Identity size is an exact copy. */
	for (int i = 0; i < C * H * W; i++)
		src[i] = (float)i * 0.01f;
	assert_int_equal(iap_image_resize(&rs, src, C, H, W, same, H, W, &err), IAP_OK);
	assert_memory_equal(same, src, sizeof(src));
	iap_resizer_free(&rs);
	assert_null(rs.x.w);

	assert_int_equal(iap_image_resize(NULL, src, C, 0, W, dst, OH, OW, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "resize: cannot resize 3x0x5 to 3x11");
}

/* ---- normalize -------------------------------------------------------------------- */

static void test_normalize(void **state)
{
	float img[3 * 2] = { 0.0f, 1.0f, 0.5f, 0.25f, 0.485f, 0.406f };
	float orig[6], gray[2] = { 0.0f, 1.0f };
	const float half = 0.5f, bad_std[3] = { 0.2f, 0.0f, 0.2f }, m3[3] = { 0, 0, 0 };
	struct iap_error err;

	(void)state;
	memcpy(orig, img, sizeof(img));
	assert_int_equal(iap_image_normalize(img, 3, 2, NULL, NULL, &err), IAP_OK);
	assert_float_equal(img[0], (0.0 - 0.485) / 0.229, 1e-6);
	assert_float_equal(img[1], (1.0 - 0.485) / 0.229, 1e-6);
	assert_float_equal(img[2], (0.5 - 0.456) / 0.224, 1e-6);
	assert_float_equal(img[3], (0.25 - 0.456) / 0.224, 1e-6);
	assert_float_equal(img[4], (0.485 - 0.406) / 0.225, 1e-6);
	assert_float_equal(img[5], 0.0, 1e-7);

	/* One channel: one mean / std. */
	assert_int_equal(iap_image_normalize(gray, 1, 2, &half, &half, &err), IAP_OK);
	assert_true(gray[0] == -1.0f && gray[1] == 1.0f);
	assert_int_equal(iap_image_normalize(gray, 1, 2, NULL, NULL, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "normalize: ImageNet statistics need 3 channels, image has 1");

	/* A zero std is refused and the image is left untouched. */
	memcpy(img, orig, sizeof(img));
	assert_int_equal(iap_image_normalize(img, 3, 2, m3, bad_std, &err), IAP_EINVAL);
	assert_string_equal(err.msg,
			    "normalize: channel 1: mean 0 / std 0 (std must be finite and > 0)");
	assert_memory_equal(img, orig, sizeof(img));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_png_gray8),
		cmocka_unit_test(test_png_gray16_and_low_depths),
		cmocka_unit_test(test_png_rgb_rgba_and_luma),
		cmocka_unit_test(test_png_palette_trns),
		cmocka_unit_test(test_png_interlaced_rgb16),
		cmocka_unit_test(test_one_by_one_and_reuse),
		cmocka_unit_test(test_jpeg_flat_gray_and_rgb),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_resize_hand_computed),
		cmocka_unit_test(test_resize_properties),
		cmocka_unit_test(test_normalize),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
