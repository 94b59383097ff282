/*
 * Antialiased bilinear resizing (see include/iaprune/image.h).
 *
 * This follows PIL's ImagingResample (libImaging/Resample.c,
 * precompute_coeffs) for the BILINEAR filter, which torchvision's
 * antialiased tensor resize reproduces: for output sample i,
 *     scale   = in / out
 *     fscale  = max(scale, 1)              the filter widens only when shrinking
 *     support = 1 * fscale                 the triangle's half-width in input pixels
 *     center  = (i + 0.5) * scale
 *     first   = max((int)(center - support + 0.5), 0)
 *     last    = min((int)(center + support + 0.5), in)      (exclusive)
 *     w[j]    = tri((first + j - center + 0.5) / fscale),  tri(t) = max(1 - |t|, 0)
 * and the weights are divided by their sum, which at the borders is the
 * same as clamping. Weights are computed in double and stored as float.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/image.h>

static double triangle(double t)
{
	if (t < 0)
		t = -t;
	return t < 1.0 ? 1.0 - t : 0.0;
}

static void axis_free(struct iap_resize_axis *a)
{
	free(a->first);
	free(a->count);
	free(a->w);
	memset(a, 0, sizeof(*a));
}

/* (Re)build the weight table of one axis unless it already maps in -> out. */
static int axis_build(struct iap_resize_axis *a, int in, int out, struct iap_error *err)
{
	const double scale = (double)in / out;
	const double fscale = scale > 1.0 ? scale : 1.0;
	const double support = fscale;
	int taps;

	if (a->w && a->in == in && a->out == out)
		return IAP_OK;
	axis_free(a);
	taps = (int)ceil(support) * 2 + 1;
	a->first = malloc(sizeof(*a->first) * (size_t)out);
	a->count = malloc(sizeof(*a->count) * (size_t)out);
	a->w = calloc((size_t)out * (size_t)taps, sizeof(*a->w));
	if (!a->first || !a->count || !a->w) {
		axis_free(a);
		return iap_error_set(err, IAP_ENOMEM, "resize: out of memory for %d -> %d weights",
				     in, out);
	}
	for (int i = 0; i < out; i++) {
		const double center = (i + 0.5) * scale;
		int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
		double sum = 0.0;

		if (lo < 0)
			lo = 0;
		if (hi > in)
			hi = in;
		a->first[i] = lo;
		a->count[i] = hi - lo;
		for (int j = 0; j < hi - lo; j++)
			sum += triangle((lo + j - center + 0.5) / fscale);
		for (int j = 0; j < hi - lo; j++) {
			double wj = triangle((lo + j - center + 0.5) / fscale);

			a->w[(size_t)i * taps + j] = sum != 0.0 ? (float)(wj / sum) : 0.0f;
		}
	}
	a->in = in;
	a->out = out;
	a->taps = taps;
	return IAP_OK;
}

/* dst[r][i] = sum_j w[i][j] * src[r][first[i] + j] for nrows rows. */
static void pass_horizontal(const struct iap_resize_axis *a, const float *src, float *dst,
			    int64_t nrows)
{
	const int in = a->in, out = a->out, taps = a->taps;

#pragma omp parallel for schedule(static) if(nrows * out > 32768)
	for (int64_t r = 0; r < nrows; r++) {
		const float *s = src + r * in;
		float *d = dst + r * out;

		for (int i = 0; i < out; i++) {
			const float *w = a->w + (size_t)i * taps;
			const float *si = s + a->first[i];
			float acc = 0.0f;

			for (int j = 0; j < a->count[i]; j++)
				acc += w[j] * si[j];
			d[i] = acc;
		}
	}
}

/* Vertical pass over planes of (a->in x width): rows are accumulated whole, so the inner loop is contiguous. */
static void pass_vertical(const struct iap_resize_axis *a, const float *src, float *dst,
			  int planes, int width)
{
	const int in = a->in, out = a->out, taps = a->taps;
	const int64_t nrows = (int64_t)planes * out;

#pragma omp parallel for schedule(static) if(nrows * width > 32768)
	for (int64_t r = 0; r < nrows; r++) {
		const int64_t c = r / out;
		const int i = (int)(r % out);
		const float *s = src + (c * in + a->first[i]) * width;
		const float *w = a->w + (size_t)i * taps;
		float *d = dst + r * width;

		for (int x = 0; x < width; x++)
			d[x] = 0.0f;
		for (int j = 0; j < a->count[i]; j++) {
			const float wj = w[j];
			const float *sj = s + (int64_t)j * width;

			for (int x = 0; x < width; x++)
				d[x] += wj * sj[x];
		}
	}
}

int iap_image_resize(struct iap_resizer *rs, const float *src, int channels, int in_h, int in_w,
		     float *dst, int out_h, int out_w, struct iap_error *err)
{
	struct iap_resizer local = { 0 };
	const float *mid;
	int rc;

	if (channels < 1 || in_h < 1 || in_w < 1 || out_h < 1 || out_w < 1 ||
	    in_h > IAP_IMAGE_MAX_SIDE || in_w > IAP_IMAGE_MAX_SIDE ||
	    out_h > IAP_IMAGE_MAX_SIDE || out_w > IAP_IMAGE_MAX_SIDE || !src || !dst)
		return iap_error_set(err, IAP_EINVAL, "resize: cannot resize %dx%dx%d to %dx%d",
				     channels, in_h, in_w, out_h, out_w);
	if (!rs)
		rs = &local;
	rc = axis_build(&rs->x, in_w, out_w, err);
	if (!rc)
		rc = axis_build(&rs->y, in_h, out_h, err);
	if (rc)
		goto out;

	/* A pass whose size does not change is the identity; skip it. */
	if (in_w != out_w) {
		size_t need = (size_t)channels * in_h * out_w;

		if (in_h == out_h) {
			pass_horizontal(&rs->x, src, dst, (int64_t)channels * in_h);
			goto out;
		}
		if (rs->tmp_cap < need) {
			free(rs->tmp);
			rs->tmp = malloc(need * sizeof(float));
			rs->tmp_cap = rs->tmp ? need : 0;
			if (!rs->tmp) {
				rc = iap_error_set(err, IAP_ENOMEM, "resize: out of memory");
				goto out;
			}
		}
		pass_horizontal(&rs->x, src, rs->tmp, (int64_t)channels * in_h);
		mid = rs->tmp;
	} else {
		mid = src;
	}
	if (in_h != out_h)
		pass_vertical(&rs->y, mid, dst, channels, out_w);
	else
		memmove(dst, mid, (size_t)channels * out_h * out_w * sizeof(float));
out:
	if (rs == &local)
		iap_resizer_free(&local);
	return rc;
}

void iap_resizer_free(struct iap_resizer *rs)
{
	if (!rs)
		return;
	axis_free(&rs->x);
	axis_free(&rs->y);
	free(rs->tmp);
	memset(rs, 0, sizeof(*rs));
}
