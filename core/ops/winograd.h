/*
 * Winograd minimal filtering for 3×3, stride-1 convolutions
 * (library-internal, not installed).
 *
 * F(4×4, 3×3): every 4×4 block of outputs comes from a 6×6 block of inputs
 * with 36 multiplications per (input channel, output channel) pair instead of
 * 144, and those 36 products are 36 independent GEMMs over the channels;
 * F(2×2, 3×3) likewise with 16 for 36, and more accurate (the input gradient
 * and forwards summing over more than 64 channels use it). The transforms,
 * the choice between them and the chunking are in winograd.c; conv2d.c
 * decides when to use it (iap_winograd_applies) and sizes the workspace with
 * iap_winograd_workspace.
 *
 * The im2col kernels are declared here too, so the tests and the benchmark
 * can run both paths on the same geometry.
 */
#ifndef IAP_CORE_OPS_WINOGRAD_H
#define IAP_CORE_OPS_WINOGRAD_H

#include <stddef.h>

#include <iaprune/ops.h>

#include "../util/visibility.h"

/*
 * 1 when the geometry is a 3×3, stride-1 conv with equal padding 0 or 1 on
 * both axes and is large enough (channels and tiles) for the Winograd path to
 * beat im2col; 0 otherwise.
 */
IAP_INTERNAL
int iap_winograd_applies(const struct iap_conv_geom *cg);

/*
 * 1 for any 3×3, stride-1 geometry with equal padding 0 or 1, whatever its
 * size: the kernels below are correct for all of these (the tests use it; the
 * library dispatches on iap_winograd_applies).
 */
IAP_INTERNAL
int iap_winograd_supports(const struct iap_conv_geom *cg);

/* Floats of workspace iap_winograd_forward and iap_winograd_backward_input need. */
IAP_INTERNAL
size_t iap_winograd_workspace(const struct iap_conv_geom *cg);

/* y = conv(x, w) + b (b may be NULL), as iap_conv2d_forward_raw. */
IAP_INTERNAL
void iap_winograd_forward(const struct iap_conv_geom *cg, const float *x, const float *w,
			  const float *b, float *y, float *ws);

/* dx += conv_transpose(dy, w), as iap_conv2d_backward_input_raw. */
IAP_INTERNAL
void iap_winograd_backward_input(const struct iap_conv_geom *cg, const float *dy, const float *w,
				 float *dx, float *ws);

/* The im2col + sgemm kernels alone (conv2d.c); ws: iap_conv2d_im2col_workspace floats. */
IAP_INTERNAL
size_t iap_conv2d_im2col_workspace(const struct iap_conv_geom *cg);
IAP_INTERNAL
void iap_conv2d_forward_im2col(const struct iap_conv_geom *cg, const float *x, const float *w,
			       const float *b, float *y, float *ws);
IAP_INTERNAL
void iap_conv2d_backward_input_im2col(const struct iap_conv_geom *cg, const float *dy,
				      const float *w, float *dx, float *ws);

#endif
