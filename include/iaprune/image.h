/*
 * iaprune — image decoding, resizing and normalisation for dataset plugins.
 *
 * Decoding: PNG (libpng) and JPEG (libjpeg-turbo through the libjpeg API),
 * recognised by their magic bytes, never by the file name. PNGs of every
 * colour type are read: 1/2/4/8/16-bit grayscale, gray+alpha, RGB, RGBA and
 * palette (with or without tRNS); JPEGs in grayscale or YCbCr/RGB. The result
 * is float CHW in [0, 1] (8-bit samples / 255, 16-bit samples / 65535) with
 * the channel count the caller asks for:
 *   - alpha is dropped (not composited), as PIL's convert("RGB") does;
 *   - grayscale is replicated when 3 channels are wanted;
 *   - colour becomes gray by ITU-R 601-2 luma, as PIL's "L":
 *     L = R * 299/1000 + G * 587/1000 + B * 114/1000, computed in float
 *     (PIL rounds L to 8 bits; we keep the fraction, at most 0.5/255 apart).
 * A corrupt, truncated or oversized file is refused with a one-line message
 * naming it ("scan.png: corrupt PNG: ...", "x.jpg: truncated JPEG ..."); the
 * dimensions are checked against IAP_IMAGE_MAX_SIDE / IAP_IMAGE_MAX_PIXELS
 * before anything is allocated for the pixels. Decoders never print.
 *
 * Resizing: separable antialiased bilinear, exactly the algorithm of PIL's
 * Image.resize(BILINEAR) on float ("F") images and of torchvision's
 * F.resize(antialias=True) on tensors (aten's _upsample_bilinear2d_aa, which
 * was ported from PIL): a triangle filter whose support grows with the shrink
 * factor, output pixel centres at (i + 0.5) * in/out, weights renormalised at
 * the borders. When enlarging this is plain bilinear with half-pixel centres
 * (align_corners=False) and edge clamping. PIL's 8-bit path additionally
 * quantises weights to fixed point and rounds to uint8; we do not.
 *
 * Normalisation: x' = (x - mean[c]) / std[c].
 */
#ifndef IAPRUNE_IMAGE_H
#define IAPRUNE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest image side and pixel count accepted (checked before allocating). */
#define IAP_IMAGE_MAX_SIDE 32768
#define IAP_IMAGE_MAX_PIXELS ((int64_t)1 << 28)
/* Largest image file iap_image_load reads into memory. */
#define IAP_IMAGE_MAX_FILE ((size_t)1 << 30)

enum iap_image_format {
	IAP_IMAGE_UNKNOWN = 0,
	IAP_IMAGE_PNG,
	IAP_IMAGE_JPEG,
};

/* The format announced by the first bytes of buf (IAP_IMAGE_UNKNOWN if none). */
enum iap_image_format iap_image_detect(const void *buf, size_t len);

/*
 * Decode an image held in memory into out as a [channels, H, W] float tensor
 * in [0, 1]. channels is 1 or 3, or 0 for the file's own (1 for grayscale and
 * gray+alpha, 3 otherwise). out is (re)allocated with iap_tensor_ensure, so
 * decoding images of one size into the same tensor allocates only once.
 * name is used in messages only (a file name, or "<memory>").
 */
int iap_image_decode(const void *buf, size_t len, const char *name, int channels,
		     struct iap_tensor *out, struct iap_error *err);

/* The same for a file (read whole, at most IAP_IMAGE_MAX_FILE bytes). */
int iap_image_load(const char *path, int channels, struct iap_tensor *out,
		   struct iap_error *err);

/*
 * Precomputed resampling weights for one (in, out) size pair. Start from a
 * zeroed struct; iap_image_resize recomputes the tables only when the sizes
 * change, so resizing a stream of same-sized images never allocates.
 */
struct iap_resize_axis {
	int in, out;
	int taps;          /* weights per output sample (max over the axis) */
	int *first;        /* [out]: first input index */
	int *count;        /* [out]: number of taps used (<= taps) */
	float *w;          /* [out * taps] normalised weights */
};

struct iap_resizer {
	struct iap_resize_axis x, y;
	float *tmp;        /* horizontal pass output, C * in_h * out_w floats */
	size_t tmp_cap;
};

/*
 * Resize C planes of in_h x in_w floats at src into out_h x out_w planes at
 * dst (both CHW, not overlapping). rs may be NULL (weights built and freed
 * in the call). Horizontal pass first, then vertical, as PIL does; a pass
 * whose size does not change is a copy.
 */
int iap_image_resize(struct iap_resizer *rs, const float *src, int channels, int in_h, int in_w,
		     float *dst, int out_h, int out_w, struct iap_error *err);

/* Free the tables and scratch of rs and zero it. */
void iap_resizer_free(struct iap_resizer *rs);

/* ImageNet statistics used by torchvision's pretrained models. */
extern const float iap_imagenet_mean[3];
extern const float iap_imagenet_std[3];

/*
 * In place: data[c][i] = (data[c][i] - mean[c]) / std[c] for channels planes
 * of plane floats each. mean and std hold `channels` values (one for a gray
 * image); NULL for both selects the ImageNet statistics (3 channels only).
 * Every std must be finite and > 0.
 */
int iap_image_normalize(float *data, int channels, int64_t plane, const float *mean,
			const float *std, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_IMAGE_H */
