/*
 * iaprune — relevance heatmaps: the input image with a diverging colormap of
 * its relevance blended over it, written as an RGB PNG, and the raw map as a
 * NumPy .npy file (float32, format version 1.0).
 *
 * Colours: the map is scaled by s, a high percentile (default 99.5) of |R|
 * over the image, and clipped to v = R/s ∈ [−1, 1]. The colormap is
 * symmetric around 0: white at 0, pure red (255, 0, 0) at v = +1, pure blue
 * (0, 0, 255) at v = −1, linear in between (matplotlib's "bwr"). Each pixel
 * is blended with weight α·|v|:  out = (1 − α|v|)·image + α|v|·bwr(v), so
 * irrelevant pixels show the image unchanged and the most relevant ones are
 * α red or blue. An all-zero map (s = 0) leaves the image as it is.
 *
 * The image is de-normalised to pixels first: p = x·std[c] + mean[c] (mean
 * and std as the model's input was normalised with; NULL for an image
 * already in [0, 1]), clamped to [0, 1] and rounded to 8 bits; a 1-channel
 * image is drawn in gray. Which image to draw and at what size is the
 * explain service's (explain.h), which the report and the CLI share.
 */
#ifndef IAPRUNE_HEATMAP_H
#define IAPRUNE_HEATMAP_H

#include <stdint.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iap_heatmap_opts {
	const float *mean;     /* channels values, or NULL (no de-normalisation) */
	const float *std;      /* channels values, or NULL */
	float percentile;      /* of |R| used as full scale, in (0, 100]; 0 → 99.5 */
	float alpha;           /* colormap weight at full scale, in [0, 1]; < 0 → 0.7 */
	int gray;              /* draw an RGB image in gray (ITU-R 601 luma) under the map */
};

/* Default options: no de-normalisation, 99.5th percentile, α = 0.7, colour image. */
void iap_heatmap_opts_init(struct iap_heatmap_opts *o);

/* Sum a [channels][h][w] relevance over channels into map[h][w]. */
void iap_heatmap_reduce(const float *relevance, int channels, int h, int w, float *map);

/* The colormap: v in [−1, 1] (clipped) → rgb. */
void iap_heatmap_color(float v, uint8_t rgb[3]);

/*
 * The full-scale value s of a map: the percentile p of |map| (linear
 * interpolation between order statistics, as numpy.percentile), 0 for an
 * all-zero map. Non-finite entries are an IAP_ENUMERIC error.
 */
int iap_heatmap_scale(const float *map, int64_t n, float percentile, float *scale,
		      struct iap_error *err);

/*
 * Write the blend of image ([channels][h][w], channels 1 or 3, normalised as
 * opts says) and map ([h][w]) as an 8-bit RGB PNG at path, atomically.
 * opts may be NULL (defaults).
 */
int iap_heatmap_write_png(const char *path, const float *image, int channels, int h, int w,
			  const float *map, const struct iap_heatmap_opts *opts,
			  struct iap_error *err);

/* Write data (ndim ≤ 4 dims of shape) as a little-endian float32 .npy v1.0 file, atomically. */
int iap_heatmap_write_npy(const char *path, const float *data, int ndim, const int64_t *shape,
			  struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_HEATMAP_H */
