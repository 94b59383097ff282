/*
 * Image decoding: PNG through libpng, JPEG through libjpeg(-turbo), both from
 * memory (see include/iaprune/image.h for the conversions).
 *
 * Both libraries report fatal errors through a callback that must not
 * return; ours longjmp back to the decoder. To keep longjmp from clobbering
 * anything, each decoder is split in two: the outer function owns every
 * resource (in a context struct it passes by pointer) and releases it on one
 * cleanup path; the inner function holds the setjmp and the library calls,
 * and keeps no state of its own in local variables.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <png.h>
#include <jpeglib.h>
#include <jerror.h>

#include <iaprune/image.h>

#include "file.h"

/* A progressive JPEG may carry any number of scans; each one re-walks the whole
 * coefficient buffer, so a small hostile file could keep us busy for minutes.
 * libjpeg-turbo's own tools refuse more than 500. */
#define JPEG_MAX_SCANS 500

enum iap_image_format iap_image_detect(const void *buf, size_t len)
{
	static const unsigned char png_magic[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
	const unsigned char *p = buf;

	if (len >= 8 && !memcmp(p, png_magic, 8))
		return IAP_IMAGE_PNG;
	if (len >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff)
		return IAP_IMAGE_JPEG;
	return IAP_IMAGE_UNKNOWN;
}

/* ---- shared: limits and the row converter ----------------------------------- */

static int check_size(const char *name, const char *fmt, uint64_t w, uint64_t h,
		      struct iap_error *err)
{
	if (w == 0 || h == 0)
		return iap_error_set(err, IAP_EFORMAT, "%s: corrupt %s: zero-size image (%llux%llu)",
				     name, fmt, (unsigned long long)w, (unsigned long long)h);
	if (w > IAP_IMAGE_MAX_SIDE || h > IAP_IMAGE_MAX_SIDE ||
	    w * h > (uint64_t)IAP_IMAGE_MAX_PIXELS)
		return iap_error_set(err, IAP_ELIMIT,
				     "%s: %s image too large (%llux%llu; limit %d per side, %lld pixels)",
				     name, fmt, (unsigned long long)w, (unsigned long long)h,
				     IAP_IMAGE_MAX_SIDE, (long long)IAP_IMAGE_MAX_PIXELS);
	return IAP_OK;
}

/* Shape out as [dc, h, w]. */
static int ensure_out(struct iap_tensor *out, int dc, int h, int w, struct iap_error *err)
{
	int64_t shape[3] = { dc, h, w };

	return iap_tensor_ensure(out, 3, shape, err);
}

/*
 * Convert one decoded row (sc interleaved samples per pixel, 8-bit or
 * big-endian 16-bit; a 2nd or 4th sample is alpha and ignored) into row y of
 * the dc-channel CHW float image out.
 */
static void put_row(float *out, int dc, int h, int w, int y, const unsigned char *row, int sc,
		    int sixteen)
{
	const size_t plane = (size_t)h * w;
	const float maxv = sixteen ? 65535.0f : 255.0f;
	const int colour = sc >= 3, bps = sixteen ? 2 : 1;
	float *o = out + (size_t)y * w;

	for (int x = 0; x < w; x++) {
		const unsigned char *p = row + (size_t)x * sc * bps;
		int32_t r, g, b;

		if (sixteen) {
			r = p[0] << 8 | p[1];
			g = colour ? p[2] << 8 | p[3] : r;
			b = colour ? p[4] << 8 | p[5] : r;
		} else {
			r = p[0];
			g = colour ? p[1] : r;
			b = colour ? p[2] : r;
		}
		if (dc == 1) {
			/* Integer weights keep gray pixels exact: v*1000 / (1000*max) == v / max. */
			o[x] = colour ? (float)(r * 299 + g * 587 + b * 114) / (1000.0f * maxv)
				      : (float)r / maxv;
		} else {
			o[x] = (float)r / maxv;
			o[x + plane] = (float)g / maxv;
			o[x + 2 * plane] = (float)b / maxv;
		}
	}
}

/* ---- PNG ------------------------------------------------------------------------ */

struct png_ctx {
	jmp_buf jb;
	const char *name;
	const unsigned char *buf;
	size_t len, pos;
	int truncated;
	int code;                   /* set when we, not libpng, refuse the image */
	char msg[256];              /* libpng's message */
	png_structp png;
	png_infop info;
	unsigned char *pixels;      /* one row, or the whole image when interlaced */
	png_bytep *rows;
	int channels;
	struct iap_tensor *out;
	struct iap_error *err;
};

static void png_read_cb(png_structp png, png_bytep data, size_t n)
{
	struct png_ctx *c = png_get_io_ptr(png);

	if (n > c->len - c->pos) {
		c->truncated = 1;
		png_error(png, "unexpected end of data");
	}
	memcpy(data, c->buf + c->pos, n);
	c->pos += n;
}

static void png_error_cb(png_structp png, png_const_charp msg)
{
	struct png_ctx *c = png_get_error_ptr(png);

	snprintf(c->msg, sizeof(c->msg), "%s", msg);
	longjmp(c->jb, 1);
}

/* Warnings (bad ancillary chunk CRC, odd ICC profile, ...) do not stop decoding; we never print. */
static void png_warning_cb(png_structp png, png_const_charp msg)
{
	(void)png;
	(void)msg;
}

/* Runs under setjmp; everything it allocates hangs off c. Returns 0 or 1 (failed). */
static int png_run(struct png_ctx *c)
{
	png_uint_32 w, h;
	int depth, ctype, interlace, passes, sc, sixteen;
	size_t rowbytes;

	if (setjmp(c->jb))
		return 1;
	png_set_read_fn(c->png, c, png_read_cb);
	png_read_info(c->png, c->info);
	png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
	if (check_size(c->name, "PNG", w, h, c->err)) {
		c->code = c->err ? c->err->code : IAP_EFORMAT;
		return 1;
	}
	if (ctype == PNG_COLOR_TYPE_PALETTE)
		png_set_palette_to_rgb(c->png);
	if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8)
		png_set_expand_gray_1_2_4_to_8(c->png);
	passes = png_set_interlace_handling(c->png);
	png_read_update_info(c->png, c->info);

	sc = png_get_channels(c->png, c->info);
	sixteen = png_get_bit_depth(c->png, c->info) == 16;
	rowbytes = png_get_rowbytes(c->png, c->info);
	if (sc < 1 || sc > 4 || rowbytes != (size_t)w * sc * (sixteen ? 2 : 1))
		png_error(c->png, "unexpected row layout after transformations");
	if (!c->channels)
		c->channels = sc >= 3 ? 3 : 1;
	if (ensure_out(c->out, c->channels, (int)h, (int)w, c->err)) {
		c->code = c->err ? c->err->code : IAP_ENOMEM;
		return 1;
	}

	if (passes == 1) {
		/* Row by row: only one row of scratch, whatever the image size. */
		c->pixels = malloc(rowbytes);
		if (!c->pixels)
			goto nomem;
		for (png_uint_32 y = 0; y < h; y++) {
			png_read_row(c->png, c->pixels, NULL);
			put_row(c->out->data, c->channels, (int)h, (int)w, (int)y, c->pixels, sc,
				sixteen);
		}
	} else {
		/* Adam7 fills rows over seven passes: the whole image must be held. */
		c->pixels = malloc(rowbytes * h);
		c->rows = malloc(sizeof(*c->rows) * h);
		if (!c->pixels || !c->rows)
			goto nomem;
		for (png_uint_32 y = 0; y < h; y++)
			c->rows[y] = c->pixels + rowbytes * y;
		png_read_image(c->png, c->rows);
		for (png_uint_32 y = 0; y < h; y++)
			put_row(c->out->data, c->channels, (int)h, (int)w, (int)y, c->rows[y], sc,
				sixteen);
	}
	/* Reads up to IEND, so a file cut after the pixel data is still caught. */
	png_read_end(c->png, NULL);
	return 0;

nomem:
	c->code = iap_error_set(c->err, IAP_ENOMEM, "%s: out of memory decoding %ux%u PNG",
				c->name, (unsigned)w, (unsigned)h);
	return 1;
}

static int decode_png(const unsigned char *buf, size_t len, const char *name, int channels,
		      struct iap_tensor *out, struct iap_error *err)
{
	struct png_ctx *c;
	int rc = IAP_OK;

	/* On the heap: jmp_buf plus the message are a few hundred bytes we need not keep on the stack. */
	/*
	 * IHDR must come first, at a fixed place: read the size from it directly so
	 * a zero or huge size gets our message (libpng only says "Invalid IHDR data").
	 */
	if (len >= 24 && !memcmp(buf + 12, "IHDR", 4)) {
		uint32_t w = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 |
			     (uint32_t)buf[18] << 8 | buf[19];
		uint32_t h = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 |
			     (uint32_t)buf[22] << 8 | buf[23];

		rc = check_size(name, "PNG", w, h, err);
		if (rc)
			return rc;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	c->name = name;
	c->buf = buf;
	c->len = len;
	c->channels = channels;
	c->out = out;
	c->err = err;
	c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_error_cb, png_warning_cb);
	if (!c->png) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: cannot create PNG reader", name);
		goto out_free_ctx;
	}
	c->info = png_create_info_struct(c->png);
	if (!c->info) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: cannot create PNG reader", name);
		goto out_destroy;
	}
	if (png_run(c)) {
		if (c->code)
			rc = c->code;
		else if (c->truncated)
			rc = iap_error_set(err, IAP_EFORMAT, "%s: truncated PNG (%zu bytes)", name,
					   len);
		else
			rc = iap_error_set(err, IAP_EFORMAT, "%s: corrupt PNG: %s", name, c->msg);
	}
out_destroy:
	png_destroy_read_struct(&c->png, c->info ? &c->info : NULL, NULL);
	free(c->rows);
	free(c->pixels);
out_free_ctx:
	free(c);
	return rc;
}

/* ---- JPEG ----------------------------------------------------------------------- */

struct jpeg_ctx {
	struct jpeg_error_mgr pub;  /* first: libjpeg hands us a pointer to it */
	struct jpeg_progress_mgr progress;
	jmp_buf jb;
	const char *name;
	int truncated;
	int code;
	char msg[JMSG_LENGTH_MAX];
	struct jpeg_decompress_struct cinfo;
	int created;
	unsigned char *row;
	int channels;
	struct iap_tensor *out;
	struct iap_error *err;
};

static void jpeg_error_exit_cb(j_common_ptr cinfo)
{
	struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;

	(*cinfo->err->format_message)(cinfo, c->msg);
	longjmp(c->jb, 1);
}

/*
 * libjpeg reports damaged data as warnings and carries on with grey blocks;
 * a training set with silently grey images is worse than a refused file, so
 * the warnings that mean "this data is damaged" become errors. Harmless
 * ones (unknown JFIF version, stray bytes before a marker, ...) are ignored.
 */
static void jpeg_emit_message_cb(j_common_ptr cinfo, int level)
{
	struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;

	if (level >= 0)
		return;  /* trace messages */
	switch (cinfo->err->msg_code) {
	case JWRN_JPEG_EOF:
		c->truncated = 1;
		jpeg_error_exit_cb(cinfo);
		break;
	case JWRN_HUFF_BAD_CODE:
	case JWRN_HIT_MARKER:
	case JWRN_MUST_RESYNC:
	case JWRN_NOT_SEQUENTIAL:
	case JWRN_BOGUS_PROGRESSION:
	case JWRN_ARITH_BAD_CODE:
		jpeg_error_exit_cb(cinfo);
		break;
	default:
		break;
	}
}

static void jpeg_output_message_cb(j_common_ptr cinfo)
{
	(void)cinfo;  /* library code never prints */
}

static void jpeg_progress_cb(j_common_ptr cinfo)
{
	struct jpeg_ctx *c = (struct jpeg_ctx *)cinfo->err;

	if (cinfo->is_decompressor &&
	    ((j_decompress_ptr)cinfo)->input_scan_number > JPEG_MAX_SCANS) {
		snprintf(c->msg, sizeof(c->msg), "more than %d progressive scans", JPEG_MAX_SCANS);
		longjmp(c->jb, 1);
	}
}

static int jpeg_run(struct jpeg_ctx *c, const unsigned char *buf, size_t len)
{
	struct jpeg_decompress_struct *ci = &c->cinfo;
	int sc;

	if (setjmp(c->jb))
		return 1;
	jpeg_create_decompress(ci);
	c->created = 1;
	ci->progress = &c->progress;
	jpeg_mem_src(ci, buf, (unsigned long)len);
	jpeg_read_header(ci, TRUE);
	if (check_size(c->name, "JPEG", ci->image_width, ci->image_height, c->err)) {
		c->code = c->err ? c->err->code : IAP_EFORMAT;
		return 1;
	}
	switch (ci->jpeg_color_space) {
	case JCS_GRAYSCALE:
		ci->out_color_space = JCS_GRAYSCALE;
		sc = 1;
		break;
	case JCS_YCbCr:
	case JCS_RGB:
		/* Gray output also decodes to RGB first so the luma matches PIL's convert("L"). */
		ci->out_color_space = JCS_RGB;
		sc = 3;
		break;
	default:
		c->code = iap_error_set(c->err, IAP_EUNSUPPORTED,
					"%s: unsupported JPEG colour space (%d components; CMYK/YCCK are not read)",
					c->name, ci->num_components);
		return 1;
	}
	jpeg_start_decompress(ci);
	if (ci->output_components != sc)
		ERREXIT(ci, JERR_BAD_J_COLORSPACE);
	if (!c->channels)
		c->channels = sc;
	if (ensure_out(c->out, c->channels, (int)ci->output_height, (int)ci->output_width,
		       c->err)) {
		c->code = c->err ? c->err->code : IAP_ENOMEM;
		return 1;
	}
	c->row = malloc((size_t)ci->output_width * sc);
	if (!c->row) {
		c->code = iap_error_set(c->err, IAP_ENOMEM, "%s: out of memory", c->name);
		return 1;
	}
	while (ci->output_scanline < ci->output_height) {
		JSAMPROW rows[1] = { c->row };
		int y = (int)ci->output_scanline;

		/* The memory source never suspends; 0 lines would loop forever. */
		if (jpeg_read_scanlines(ci, rows, 1) != 1)
			ERREXIT(ci, JERR_INPUT_EMPTY);
		put_row(c->out->data, c->channels, (int)ci->output_height, (int)ci->output_width,
			y, c->row, sc, 0);
	}
	jpeg_finish_decompress(ci);
	return 0;
}

static int decode_jpeg(const unsigned char *buf, size_t len, const char *name, int channels,
		       struct iap_tensor *out, struct iap_error *err)
{
	struct jpeg_ctx *c;
	int rc = IAP_OK;

	c = calloc(1, sizeof(*c));
	if (!c)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", name);
	c->name = name;
	c->channels = channels;
	c->out = out;
	c->err = err;
	c->cinfo.err = jpeg_std_error(&c->pub);
	c->pub.error_exit = jpeg_error_exit_cb;
	c->pub.emit_message = jpeg_emit_message_cb;
	c->pub.output_message = jpeg_output_message_cb;
	c->progress.progress_monitor = jpeg_progress_cb;
	if (jpeg_run(c, buf, len)) {
		if (c->code)
			rc = c->code;
		else if (c->truncated)
			rc = iap_error_set(err, IAP_EFORMAT, "%s: truncated JPEG (%zu bytes)", name,
					   len);
		else
			rc = iap_error_set(err, IAP_EFORMAT, "%s: corrupt JPEG: %s", name, c->msg);
	}
	if (c->created)
		jpeg_destroy_decompress(&c->cinfo);
	free(c->row);
	free(c);
	return rc;
}

/* ---- entry points ---------------------------------------------------------------- */

int iap_image_decode(const void *buf, size_t len, const char *name, int channels,
		     struct iap_tensor *out, struct iap_error *err)
{
	if (!name)
		name = "<memory>";
	if (!out || (!buf && len))
		return iap_error_set(err, IAP_EINVAL, "%s: no buffer or output tensor", name);
	if (channels != 0 && channels != 1 && channels != 3)
		return iap_error_set(err, IAP_EINVAL, "%s: cannot decode to %d channels (1 or 3)",
				     name, channels);
	if (len == 0)
		return iap_error_set(err, IAP_EFORMAT, "%s: empty file", name);
	switch (iap_image_detect(buf, len)) {
	case IAP_IMAGE_PNG:
		return decode_png(buf, len, name, channels, out, err);
	case IAP_IMAGE_JPEG:
		return decode_jpeg(buf, len, name, channels, out, err);
	default:
		return iap_error_set(err, IAP_EFORMAT, "%s: not a PNG or JPEG image", name);
	}
}

int iap_image_load(const char *path, int channels, struct iap_tensor *out,
		   struct iap_error *err)
{
	unsigned char *buf;
	size_t len;
	int rc = iap_file_read(path, IAP_IMAGE_MAX_FILE, "image file", &buf, &len, err);

	if (rc)
		return rc;
	rc = iap_image_decode(buf, len, path, channels, out, err);
	free(buf);
	return rc;
}

/* ---- normalisation ---------------------------------------------------------------- */

const float iap_imagenet_mean[3] = { 0.485f, 0.456f, 0.406f };
const float iap_imagenet_std[3] = { 0.229f, 0.224f, 0.225f };

int iap_image_normalize(float *data, int channels, int64_t plane, const float *mean,
			const float *std, struct iap_error *err)
{
	if (channels < 1 || plane < 0 || (!data && plane))
		return iap_error_set(err, IAP_EINVAL, "normalize: bad image (%d channels, %lld pixels)",
				     channels, (long long)plane);
	if (!mean && !std) {
		if (channels != 3)
			return iap_error_set(err, IAP_EINVAL,
					     "normalize: ImageNet statistics need 3 channels, image has %d",
					     channels);
		mean = iap_imagenet_mean;
		std = iap_imagenet_std;
	} else if (!mean || !std) {
		return iap_error_set(err, IAP_EINVAL, "normalize: mean and std go together");
	}
	/* All statistics are checked before the image is touched, so a refusal leaves it as it was. */
	for (int c = 0; c < channels; c++) {
		const float m = mean[c], s = std[c];

		if (!(s > 0.0f) || s > 3.4e38f || m != m || m - m != 0.0f)
			return iap_error_set(err, IAP_EINVAL,
					     "normalize: channel %d: mean %g / std %g (std must be finite and > 0)",
					     c, (double)m, (double)s);
	}
	for (int c = 0; c < channels; c++) {
		/* A division, as torchvision's Normalize does, not a multiply by 1/s (bit-identical results). */
		const float m = mean[c], s = std[c];
		float *p = data + (size_t)c * (size_t)plane;

#pragma omp parallel for schedule(static) if(plane > 32768)
		for (int64_t i = 0; i < plane; i++)
			p[i] = (p[i] - m) / s;
	}
	return IAP_OK;
}
