/*
 * Relevance heatmaps (see host/include/iaprune/heatmap.h): colormap, percentile
 * scale, PNG blend through libpng, raw .npy. Files are written through the
 * atomic writer, so a failed write never leaves half a picture behind.
 */
#include "config.h"

#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/atomic.h>
#include <iaprune/heatmap.h>
#include <iaprune/npz.h>

void iap_heatmap_opts_init(struct iap_heatmap_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->percentile = 99.5f;
	o->alpha = 0.7f;
}

void iap_heatmap_reduce(const float *relevance, int channels, int h, int w, float *map)
{
	int64_t plane = (int64_t)h * w;

	for (int64_t i = 0; i < plane; i++) {
		float s = 0.0f;

		for (int c = 0; c < channels; c++)
			s += relevance[c * plane + i];
		map[i] = s;
	}
}

static uint8_t to_byte(double v)
{
	if (!(v > 0.0))
		return 0;
	if (v >= 1.0)
		return 255;
	return (uint8_t)lround(v * 255.0);
}

void iap_heatmap_color(float v, uint8_t rgb[3])
{
	double a;

	if (!(v == v))
		v = 0.0f;
	if (v > 1.0f)
		v = 1.0f;
	if (v < -1.0f)
		v = -1.0f;
	a = 1.0 - fabs((double)v);
	/* bwr: white at 0, fading the other two channels towards pure red or blue. */
	rgb[0] = v >= 0.0f ? 255 : to_byte(a);
	rgb[1] = to_byte(a);
	rgb[2] = v <= 0.0f ? 255 : to_byte(a);
}

static int cmp_float(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;

	return (x > y) - (x < y);
}

int iap_heatmap_scale(const float *map, int64_t n, float percentile, float *scale,
		      struct iap_error *err)
{
	float *a;
	double pos, frac;
	int64_t lo;

	*scale = 0.0f;
	if (n <= 0)
		return IAP_OK;
	if (!(percentile > 0.0f && percentile <= 100.0f))
		return iap_error_set(err, IAP_EINVAL, "heatmap: percentile %g is not in (0, 100]",
				     (double)percentile);
	a = malloc((size_t)n * sizeof(*a));
	if (!a)
		return iap_error_set(err, IAP_ENOMEM, "heatmap: out of memory");
	for (int64_t i = 0; i < n; i++) {
		if (!isfinite(map[i])) {
			free(a);
			return iap_error_set(err, IAP_ENUMERIC, "heatmap: relevance %lld is not finite",
					     (long long)i);
		}
		a[i] = fabsf(map[i]);
	}
	qsort(a, (size_t)n, sizeof(*a), cmp_float);
	pos = (double)percentile / 100.0 * (double)(n - 1);
	lo = (int64_t)floor(pos);
	frac = pos - (double)lo;
	*scale = lo + 1 < n ? (float)(a[lo] + frac * (a[lo + 1] - a[lo])) : a[n - 1];
	free(a);
	return IAP_OK;
}

/* Render the blended RGB rows into px ([h][w][3]). */
static int render(const float *image, int channels, int h, int w, const float *map,
		  const struct iap_heatmap_opts *o, uint8_t *px, struct iap_error *err)
{
	int64_t plane = (int64_t)h * w;
	float scale;
	int rc = iap_heatmap_scale(map, plane, o->percentile, &scale, err);

	if (rc)
		return rc;
	for (int64_t i = 0; i < plane; i++) {
		double base[3], wgt;
		float v;
		uint8_t col[3];

		for (int c = 0; c < 3; c++) {
			int src = channels == 1 ? 0 : c;
			double p = image[src * plane + i];

			if (o->std)
				p *= o->std[src];
			if (o->mean)
				p += o->mean[src];
			base[c] = p < 0.0 ? 0.0 : p > 1.0 ? 1.0 : p;
		}
		if (o->gray && channels == 3) {
			double l = base[0] * 0.299 + base[1] * 0.587 + base[2] * 0.114;

			base[0] = base[1] = base[2] = l;
		}
		/* An all-zero map has no scale: show the image alone (never 0/0). */
		v = scale > 0.0f ? map[i] / scale : 0.0f;
		if (v > 1.0f)
			v = 1.0f;
		if (v < -1.0f)
			v = -1.0f;
		iap_heatmap_color(v, col);
		wgt = o->alpha * fabs((double)v);
		for (int c = 0; c < 3; c++)
			px[i * 3 + c] = to_byte((1.0 - wgt) * base[c] + wgt * (col[c] / 255.0));
	}
	return IAP_OK;
}

struct png_err {
	jmp_buf jb;
	char msg[256];
};

static void png_error_fn(png_structp png, png_const_charp msg)
{
	struct png_err *pe = png_get_error_ptr(png);

	snprintf(pe->msg, sizeof(pe->msg), "%s", msg);
	longjmp(pe->jb, 1);
}

static void png_warning_fn(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg; /* libpng warnings are not failures; the library never prints */
}

/* Encode px as an RGB PNG into fp; libpng's errors come back through pe. */
static int encode_png(FILE *fp, const uint8_t *px, int h, int w, const char *path,
		      struct iap_error *err)
{
	struct png_err pe = { .msg = "" };
	png_structp png;
	png_infop info = NULL;

	png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &pe, png_error_fn, png_warning_fn);
	if (!png)
		return iap_error_set(err, IAP_ENOMEM, "%s: cannot create a PNG writer", path);
	info = png_create_info_struct(png);
	if (!info) {
		png_destroy_write_struct(&png, NULL);
		return iap_error_set(err, IAP_ENOMEM, "%s: cannot create a PNG writer", path);
	}
	if (setjmp(pe.jb)) {
		png_destroy_write_struct(&png, &info);
		return iap_error_set(err, IAP_EWRITE, "%s: PNG encoding failed: %s", path, pe.msg);
	}
	png_init_io(png, fp);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB,
		     PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int y = 0; y < h; y++)
		png_write_row(png, (png_const_bytep)(px + (size_t)y * (size_t)w * 3));
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	return IAP_OK;
}

int iap_heatmap_write_png(const char *path, const float *image, int channels, int h, int w,
			  const float *map, const struct iap_heatmap_opts *opts,
			  struct iap_error *err)
{
	struct iap_heatmap_opts o;
	struct iap_atomic_file af;
	uint8_t *px;
	int rc;

	if (channels != 1 && channels != 3)
		return iap_error_set(err, IAP_EINVAL, "%s: heatmap images have 1 or 3 channels, not %d",
				     path, channels);
	if (h < 1 || w < 1 || h > 32768 || w > 32768)
		return iap_error_set(err, IAP_EINVAL, "%s: heatmap size %dx%d out of range", path, h, w);
	iap_heatmap_opts_init(&o);
	if (opts) {
		o = *opts;
		if (o.percentile <= 0.0f)
			o.percentile = 99.5f;
		if (o.alpha < 0.0f)
			o.alpha = 0.7f;
		if (o.alpha > 1.0f)
			o.alpha = 1.0f;
	}
	px = malloc((size_t)h * (size_t)w * 3);
	if (!px)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
	rc = render(image, channels, h, w, map, &o, px, err);
	if (rc)
		goto out_free;
	rc = iap_atomic_open(&af, path, err);
	if (rc)
		goto out_free;
	rc = encode_png(af.fp, px, h, w, path, err);
	if (rc) {
		iap_atomic_abort(&af);
		goto out_free;
	}
	rc = iap_atomic_commit(&af, err);
out_free:
	free(px);
	return rc;
}

int iap_heatmap_write_npy(const char *path, const float *data, int ndim, const int64_t *shape,
			  struct iap_error *err)
{
	struct iap_atomic_file af;
	unsigned char hdr[IAP_NPY_HEADER_MAX];
	const uint16_t one = 1;
	int64_t n = 1;
	size_t len;
	int rc;

	if (ndim < 1 || ndim > 4)
		return iap_error_set(err, IAP_EINVAL, "%s: .npy of %d dims is not supported", path, ndim);
	for (int i = 0; i < ndim; i++) {
		if (shape[i] < 0)
			return iap_error_set(err, IAP_EINVAL, "%s: negative dimension", path);
		n *= shape[i];
	}
	len = iap_npy_header(IAP_NPY_F4, ndim, shape, hdr, sizeof(hdr));
	rc = iap_atomic_open(&af, path, err);
	if (rc)
		return rc;
	if (fwrite(hdr, 1, len, af.fp) != len)
		goto io_fail;
	if (*(const unsigned char *)&one == 1) {
		if (n && fwrite(data, sizeof(float), (size_t)n, af.fp) != (size_t)n)
			goto io_fail;
	} else {
		/* Big-endian host: the file is little-endian ('<f4'). */
		for (int64_t i = 0; i < n; i++) {
			unsigned char b[4], s[4];

			memcpy(b, &data[i], 4);
			s[0] = b[3], s[1] = b[2], s[2] = b[1], s[3] = b[0];
			if (fwrite(s, 1, 4, af.fp) != 4)
				goto io_fail;
		}
	}
	return iap_atomic_commit(&af, err);
io_fail:
	return iap_atomic_fail(&af, err);
}
