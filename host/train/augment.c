/*
 * iaprune — training augmentations on one float CHW image, following
 * torchvision's transforms: RandomResizedCrop, RandomHorizontalFlip,
 * RandomVerticalFlip, RandomRotation and ColorJitter (brightness, contrast,
 * saturation). Every random choice comes from the caller's struct iap_rng, so
 * a seed reproduces the whole augmentation stream.
 *
 * Crop, flips and rotation are affine combinations of pixels with weights
 * that sum to one, so they commute with per-channel normalisation and run on
 * the normalised image directly; only the fill value of rotation and the
 * colour jitter (which clamps to [0, 1]) need the pixel-space view.
 */
#include "config.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include <iaprune/train.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

void iap_augment_cfg_none(struct iap_augment_cfg *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->crop_scale[0] = 0.7;
	cfg->crop_scale[1] = 1.0;
	cfg->crop_ratio[0] = 3.0 / 4.0;
	cfg->crop_ratio[1] = 4.0 / 3.0;
}

void iap_augment_cfg_defaults(struct iap_augment_cfg *cfg)
{
	iap_augment_cfg_none(cfg);
	cfg->crop = 1;
	cfg->hflip_p = 0.5;
	cfg->vflip_p = 0.5;
	cfg->rotate_deg = 30.0;
	cfg->brightness = 0.2;
	cfg->contrast = 0.2;
	cfg->saturation = 0.2;
}

size_t iap_augment_scratch(int c, int h, int w)
{
	/* One image for crop/rotation results, plus the per-channel rotation fill. */
	return (size_t)c * (size_t)h * (size_t)w + (size_t)c;
}

void iap_aug_hflip(float *img, int c, int h, int w)
{
	for (int64_t row = 0; row < (int64_t)c * h; row++) {
		float *p = img + row * w;

		for (int x = 0, y = w - 1; x < y; x++, y--) {
			float t = p[x];

			p[x] = p[y];
			p[y] = t;
		}
	}
}

void iap_aug_vflip(float *img, int c, int h, int w)
{
	for (int ch = 0; ch < c; ch++) {
		float *plane = img + (int64_t)ch * h * w;

		for (int a = 0, b = h - 1; a < b; a++, b--)
			for (int x = 0; x < w; x++) {
				float t = plane[(int64_t)a * w + x];

				plane[(int64_t)a * w + x] = plane[(int64_t)b * w + x];
				plane[(int64_t)b * w + x] = t;
			}
	}
}

/*
 * Inverse mapping: an output pixel centre, relative to the image centre
 * (w/2, h/2) in corner coordinates as torchvision's affine grid has it, is
 * rotated back by the angle to find where it samples the input. With y
 * pointing down, a counter-clockwise rotation by θ sends (x, y) to
 * (x cos θ + y sin θ, −x sin θ + y cos θ); its inverse is used here.
 * Bilinear weights of neighbours outside the image go to the fill value.
 */
void iap_aug_rotate(const float *src, float *dst, int c, int h, int w, double deg,
		    const float *fill)
{
	double th = deg * M_PI / 180.0, cs = cos(th), sn = sin(th);
	int64_t plane = (int64_t)h * w;

	for (int i = 0; i < h; i++)
		for (int j = 0; j < w; j++) {
			double xo = j + 0.5 - w * 0.5, yo = i + 0.5 - h * 0.5;
			double sx = cs * xo - sn * yo + w * 0.5 - 0.5;
			double sy = sn * xo + cs * yo + h * 0.5 - 0.5;
			double fx0 = floor(sx), fy0 = floor(sy);
			int x0 = (int)fx0, y0 = (int)fy0;
			double ax = sx - fx0, ay = sy - fy0;
			double wt[4] = { (1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay };
			int xs[4] = { x0, x0 + 1, x0, x0 + 1 }, ys[4] = { y0, y0, y0 + 1, y0 + 1 };

			/* Far outside (angles that leave corners empty): all fill. */
			if (sx < -1.0 || sy < -1.0 || sx > w || sy > h) {
				for (int ch = 0; ch < c; ch++)
					dst[ch * plane + (int64_t)i * w + j] = fill ? fill[ch] : 0.0f;
				continue;
			}
			for (int ch = 0; ch < c; ch++) {
				const float *sp = src + ch * plane;
				double acc = 0.0;

				for (int k = 0; k < 4; k++) {
					if (wt[k] == 0.0)
						continue;
					if (xs[k] >= 0 && xs[k] < w && ys[k] >= 0 && ys[k] < h)
						acc += wt[k] * sp[(int64_t)ys[k] * w + xs[k]];
					else
						acc += wt[k] * (fill ? fill[ch] : 0.0f);
				}
				dst[ch * plane + (int64_t)i * w + j] = (float)acc;
			}
		}
}

/* A uniform draw in [lo, hi), as torch's uniform_ on one element. */
static double uniform(struct iap_rng *rng, double lo, double hi)
{
	return lo + (hi - lo) * (double)iap_rng_uniform(rng);
}

void iap_aug_crop_params(struct iap_rng *rng, int h, int w, const double scale[2],
			 const double ratio[2], int *top, int *left, int *ch, int *cw)
{
	double area = (double)h * w;
	double lr0 = log(ratio[0]), lr1 = log(ratio[1]);
	double in_ratio, rmin = fmin(ratio[0], ratio[1]), rmax = fmax(ratio[0], ratio[1]);

	for (int attempt = 0; attempt < 10; attempt++) {
		double target = area * uniform(rng, scale[0], scale[1]);
		double aspect = exp(uniform(rng, lr0, lr1));
		/* Python's round(): half to even, which nearbyint does in the default mode. */
		int cwi = (int)nearbyint(sqrt(target * aspect));
		int chi = (int)nearbyint(sqrt(target / aspect));

		if (cwi > 0 && cwi <= w && chi > 0 && chi <= h) {
			*top = (int)iap_rng_below(rng, (uint64_t)(h - chi + 1));
			*left = (int)iap_rng_below(rng, (uint64_t)(w - cwi + 1));
			*ch = chi;
			*cw = cwi;
			return;
		}
	}
	/* Fallback: the centre crop, its aspect ratio clamped into the range. */
	in_ratio = (double)w / h;
	if (in_ratio < rmin) {
		*cw = w;
		*ch = (int)nearbyint(w / rmin);
	} else if (in_ratio > rmax) {
		*ch = h;
		*cw = (int)nearbyint(h * rmax);
	} else {
		*cw = w;
		*ch = h;
	}
	*top = (h - *ch) / 2;
	*left = (w - *cw) / 2;
}

/* Source index and weight along one axis, as upsample_bilinear2d (align_corners = False). */
static void bilinear_axis(int out_i, int in_len, int out_len, int *i0, int *i1, float *l1)
{
	float scale = (float)in_len / (float)out_len;
	float s = scale * ((float)out_i + 0.5f) - 0.5f;

	if (s < 0.0f)
		s = 0.0f;
	*i0 = (int)s;
	if (*i0 > in_len - 1)
		*i0 = in_len - 1;
	*i1 = *i0 + (*i0 < in_len - 1 ? 1 : 0);
	*l1 = s - (float)*i0;
}

void iap_aug_resize_crop(const float *src, int c, int h, int w, int top, int left, int ch, int cw,
			 float *dst, int oh, int ow)
{
	for (int i = 0; i < oh; i++) {
		int y0, y1;
		float ly;

		bilinear_axis(i, ch, oh, &y0, &y1, &ly);
		for (int j = 0; j < ow; j++) {
			int x0, x1;
			float lx;

			bilinear_axis(j, cw, ow, &x0, &x1, &lx);
			for (int k = 0; k < c; k++) {
				const float *p = src + (int64_t)k * h * w + (int64_t)top * w + left;
				float a = p[(int64_t)y0 * w + x0], b = p[(int64_t)y0 * w + x1];
				float d = p[(int64_t)y1 * w + x0], e = p[(int64_t)y1 * w + x1];

				dst[(int64_t)k * oh * ow + (int64_t)i * ow + j] =
					(1.0f - ly) * ((1.0f - lx) * a + lx * b) +
					ly * ((1.0f - lx) * d + lx * e);
			}
		}
	}
}

static float clamp01(float x)
{
	return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
}

void iap_aug_brightness(float *img, int c, int h, int w, float factor)
{
	int64_t n = (int64_t)c * h * w;

	for (int64_t i = 0; i < n; i++)
		img[i] = clamp01(img[i] * factor);
}

/* torchvision's rgb_to_grayscale weights. */
static float gray_at(const float *img, int64_t plane, int64_t i)
{
	return 0.2989f * img[i] + 0.587f * img[plane + i] + 0.114f * img[2 * plane + i];
}

void iap_aug_contrast(float *img, int c, int h, int w, float factor)
{
	int64_t plane = (int64_t)h * w, n = (int64_t)c * plane;
	double mean = 0.0;

	/* The blend target is the mean of the grayscale image (of all values when not RGB). */
	if (c == 3) {
		for (int64_t i = 0; i < plane; i++)
			mean += gray_at(img, plane, i);
		mean /= (double)plane;
	} else {
		for (int64_t i = 0; i < n; i++)
			mean += img[i];
		mean /= (double)n;
	}
	for (int64_t i = 0; i < n; i++)
		img[i] = clamp01(factor * img[i] + (1.0f - factor) * (float)mean);
}

void iap_aug_saturation(float *img, int c, int h, int w, float factor)
{
	int64_t plane = (int64_t)h * w;

	/* Grayscale images have no saturation (torchvision leaves them unchanged too). */
	if (c != 3)
		return;
	for (int64_t i = 0; i < plane; i++) {
		float g = gray_at(img, plane, i);

		for (int k = 0; k < 3; k++)
			img[k * plane + i] = clamp01(factor * img[k * plane + i] + (1.0f - factor) * g);
	}
}

/* ColorJitter: factors drawn first, then applied in a random order (as torchvision). */
static void color_jitter(const struct iap_augment_cfg *cfg, struct iap_rng *rng, float *img, int c,
			 int h, int w)
{
	double s[3] = { cfg->brightness, cfg->contrast, cfg->saturation };
	float f[3];
	int order[3] = { 0, 1, 2 };
	int64_t plane = (int64_t)h * w;

	for (int k = 0; k < 3; k++)
		f[k] = s[k] > 0.0 ? (float)uniform(rng, fmax(0.0, 1.0 - s[k]), 1.0 + s[k]) : 1.0f;
	for (int k = 2; k > 0; k--) {
		int j = (int)iap_rng_below(rng, (uint64_t)k + 1), t = order[k];

		order[k] = order[j];
		order[j] = t;
	}
	/* To [0, 1] pixel space and back around the adjustments. */
	if (cfg->mean && cfg->std)
		for (int k = 0; k < c; k++)
			for (int64_t i = 0; i < plane; i++)
				img[k * plane + i] = img[k * plane + i] * cfg->std[k] + cfg->mean[k];
	for (int k = 0; k < 3; k++) {
		if (s[order[k]] <= 0.0)
			continue;
		if (order[k] == 0)
			iap_aug_brightness(img, c, h, w, f[0]);
		else if (order[k] == 1)
			iap_aug_contrast(img, c, h, w, f[1]);
		else
			iap_aug_saturation(img, c, h, w, f[2]);
	}
	if (cfg->mean && cfg->std)
		for (int k = 0; k < c; k++)
			for (int64_t i = 0; i < plane; i++)
				img[k * plane + i] = (img[k * plane + i] - cfg->mean[k]) / cfg->std[k];
}

int iap_augment(const struct iap_augment_cfg *cfg, struct iap_rng *rng, float *img, int c, int h,
		int w, float *scratch, struct iap_error *err)
{
	size_t n = (size_t)c * (size_t)h * (size_t)w;

	if (!cfg || !rng || !img || !scratch || c < 1 || h < 1 || w < 1)
		return iap_error_set(err, IAP_EINVAL, "augment: need a configuration, rng, image and scratch");
	if (!cfg->mean != !cfg->std)
		return iap_error_set(err, IAP_EINVAL, "augment: give both mean and std, or neither");
	for (int k = 0; cfg->std && k < c; k++)
		if (!(cfg->std[k] > 0.0f))
			return iap_error_set(err, IAP_EINVAL, "augment: std[%d] = %g is not positive", k,
					     (double)cfg->std[k]);

	if (cfg->crop) {
		int top, left, ch, cw;

		if (!(cfg->crop_scale[0] > 0.0 && cfg->crop_scale[0] <= cfg->crop_scale[1]) ||
		    !(cfg->crop_ratio[0] > 0.0 && cfg->crop_ratio[0] <= cfg->crop_ratio[1]))
			return iap_error_set(err, IAP_EINVAL,
					     "augment: crop scale (%g, %g) or ratio (%g, %g) invalid",
					     cfg->crop_scale[0], cfg->crop_scale[1], cfg->crop_ratio[0],
					     cfg->crop_ratio[1]);
		iap_aug_crop_params(rng, h, w, cfg->crop_scale, cfg->crop_ratio, &top, &left, &ch, &cw);
		iap_aug_resize_crop(img, c, h, w, top, left, ch, cw, scratch, h, w);
		memcpy(img, scratch, n * sizeof(*img));
	}
	if (cfg->hflip_p > 0.0 && iap_rng_uniform(rng) < cfg->hflip_p)
		iap_aug_hflip(img, c, h, w);
	if (cfg->vflip_p > 0.0 && iap_rng_uniform(rng) < cfg->vflip_p)
		iap_aug_vflip(img, c, h, w);
	if (cfg->rotate_deg > 0.0) {
		float *fill = scratch + n;
		double deg = uniform(rng, -cfg->rotate_deg, cfg->rotate_deg);

		/* Black in pixel space is (0 − mean) / std once normalised. */
		for (int k = 0; k < c; k++)
			fill[k] = cfg->mean ? (0.0f - cfg->mean[k]) / cfg->std[k] : 0.0f;
		iap_aug_rotate(img, scratch, c, h, w, deg, fill);
		memcpy(img, scratch, n * sizeof(*img));
	}
	if (cfg->brightness > 0.0 || cfg->contrast > 0.0 || cfg->saturation > 0.0)
		color_jitter(cfg, rng, img, c, h, w);
	return IAP_OK;
}
