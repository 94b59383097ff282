/*
 * conv2d: torch.nn.Conv2d (NCHW, zero padding, stride, optional bias; no
 * groups, no dilation), weights [out_ch][in_ch][kh][kw].
 *
 * Every kernel works one sample at a time: im2col unfolds the sample into the
 * shared workspace as col[in_ch·kh·kw][out_h·out_w], and one sgemm does the
 * rest. The buffer is reused for every sample, so the workspace is one
 * sample's column matrix, independent of the batch size. A 1×1 stride-1
 * unpadded conv needs no unfolding at all: the sample itself is the column
 * matrix (workspace 0).
 *
 * The graph op's forward and input gradient go further when a layer's GEMM
 * is thin (few output positions, as in the last VGG/ResNet stages) and the
 * batch has several samples: they put several samples' columns side by side
 * into one wider GEMM, using only the shared workspace the graph already
 * holds for its largest layer (see conv_group_size); and when a batch has a
 * sample for every thread, they run whole samples per thread, one column
 * buffer each, again only inside the workspace already held
 * (conv_forward_by_sample, conv_backward_input_by_sample). The raw kernels
 * below stay per-sample, so their im2col workspace is one sample's columns.
 *
 *   forward       y_n   = W · col(x_n) + b
 *   input grad    dx_n += col2im(Wᵀ · dy_n)
 *   weight grad   dW   += Σ_n dy_n · col(x_n)ᵀ,   db += Σ_n,h,w dy_n
 *
 * 3×3 stride-1 convs with padding 0 or 1 and enough channels and tiles take
 * the Winograd path instead (winograd.c) for the forward and the input
 * gradient, both in the graph op and in the raw kernels: 2–4× fewer
 * multiplications and no 9× unfolding. Its workspace (transformed weights
 * and one chunk of tiles) is part of iap_conv2d_workspace; the weight
 * gradient and the masked forward stay im2col. The im2col kernels alone are
 * iap_conv2d_forward_im2col / iap_conv2d_backward_input_im2col (winograd.h),
 * for the tests and the benchmark to compare the two paths.
 *
 * The raw kernels are public (ops.h) so that attribution rules (LRP z⁺ re-runs
 * the conv with clamped weights) and the benchmark can call them on buffers of
 * their own.
 */
#include "config.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include <iaprune/blas.h>
#include <iaprune/ops.h>
#include <iaprune/threads.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "winograd.h"


static int conv_is_pointwise(const struct iap_conv_geom *cg)
{
	return cg->kh == 1 && cg->kw == 1 && cg->stride_h == 1 && cg->stride_w == 1 &&
	       cg->pad_h == 0 && cg->pad_w == 0;
}

/*
 * The output positions o in [*lo, *hi) (clipped to [0, out)) whose input
 * coordinate o·s − p + k falls inside [0, n). Outside that range the column
 * entry is padding. Computing the range once keeps the copy loops free of
 * bounds tests.
 */
static void valid_range(int out, int n, int s, int p, int k, int *lo, int *hi)
{
	int a = p - k;          /* need o·s >= a */
	int b = n + p - k;      /* need o·s <  b */

	*lo = a > 0 ? (a + s - 1) / s : 0;
	*hi = b > 0 ? (b + s - 1) / s : 0;
	if (*hi > out)
		*hi = out;
	if (*lo > *hi)
		*lo = *hi;
}

/*
 * col[(c·kh + i)·kw + j][oh·out_w + ow] = x[c][oh·sh − ph + i][ow·sw − pw + j], 0 in the padding.
 * Rows of col are ldc floats apart (ldc = out_h·out_w for one sample's own
 * matrix; wider when several samples share one column matrix side by side).
 */
static void im2col(const struct iap_conv_geom *cg, const float *x, float *col, size_t ldc)
{
	const int kk = cg->kh * cg->kw;
	const int64_t rows = (int64_t)cg->in_ch * kk;
	const size_t ohw = (size_t)cg->out_h * cg->out_w;
	const size_t plane = (size_t)cg->in_h * cg->in_w;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)((size_t)rows * ohw)))
	for (int64_t r = 0; r < rows; r++) {
		const int c = (int)(r / kk), i = (int)(r % kk) / cg->kw, j = (int)(r % kk) % cg->kw;
		const float *xc = x + (size_t)c * plane;
		float *dst = col + (size_t)r * ldc;
		int oh_lo, oh_hi, ow_lo, ow_hi;

		valid_range(cg->out_h, cg->in_h, cg->stride_h, cg->pad_h, i, &oh_lo, &oh_hi);
		valid_range(cg->out_w, cg->in_w, cg->stride_w, cg->pad_w, j, &ow_lo, &ow_hi);
		memset(dst, 0, (size_t)oh_lo * cg->out_w * sizeof(float));
		for (int oh = oh_lo; oh < oh_hi; oh++) {
			const float *xr = xc + (size_t)(oh * cg->stride_h - cg->pad_h + i) * cg->in_w;
			float *d = dst + (size_t)oh * cg->out_w;
			int iw = ow_lo * cg->stride_w - cg->pad_w + j;

			memset(d, 0, (size_t)ow_lo * sizeof(float));
			if (cg->stride_w == 1) {
				memcpy(d + ow_lo, xr + iw, (size_t)(ow_hi - ow_lo) * sizeof(float));
			} else {
				const int sw = cg->stride_w;
				const float *xs = xr + iw - (ptrdiff_t)ow_lo * sw;
#pragma omp simd
				for (int ow = ow_lo; ow < ow_hi; ow++)
					d[ow] = xs[(ptrdiff_t)ow * sw];
			}
			memset(d + ow_hi, 0, (size_t)(cg->out_w - ow_hi) * sizeof(float));
		}
		memset(dst + (size_t)oh_hi * cg->out_w, 0,
		       (size_t)(cg->out_h - oh_hi) * cg->out_w * sizeof(float));
	}
}

/*
 * x_c += fold(col) for input channel c alone: the adjoint of im2col on the
 * rows of that channel (rows of col ldc floats apart). The one fold, both
 * for col2im_add and for a thread that folds a whole sample itself.
 */
static void col2im_channel(const struct iap_conv_geom *cg, const float *col, size_t ldc, float *x, int c)
{
	const int kk = cg->kh * cg->kw;
	float *xc = x + (size_t)c * cg->in_h * cg->in_w;

	for (int i = 0; i < cg->kh; i++) {
		int oh_lo, oh_hi;

		valid_range(cg->out_h, cg->in_h, cg->stride_h, cg->pad_h, i, &oh_lo, &oh_hi);
		for (int j = 0; j < cg->kw; j++) {
			const float *src = col + ((size_t)c * kk + (size_t)i * cg->kw + j) * ldc;
			int ow_lo, ow_hi;

			valid_range(cg->out_w, cg->in_w, cg->stride_w, cg->pad_w, j, &ow_lo, &ow_hi);
			for (int oh = oh_lo; oh < oh_hi; oh++) {
				float *xr = xc + (size_t)(oh * cg->stride_h - cg->pad_h + i) * cg->in_w;
				const float *s = src + (size_t)oh * cg->out_w;
				int iw = ow_lo * cg->stride_w - cg->pad_w + j;

				for (int ow = ow_lo; ow < ow_hi; ow++, iw += cg->stride_w)
					xr[iw] += s[ow];
			}
		}
	}
}

/*
 * x += fold(col). Rows of one input channel overlap on the same pixels, so
 * threads split by channel, never within one: each pixel sums in the same
 * order on any thread count.
 */
static void col2im_add(const struct iap_conv_geom *cg, const float *col, size_t ldc, float *x)
{
	const int kk = cg->kh * cg->kw;
	const size_t ohw = (size_t)cg->out_h * cg->out_w;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)((size_t)cg->in_ch * kk * ohw)))
	for (int c = 0; c < cg->in_ch; c++)
		col2im_channel(cg, col, ldc, x, c);
}

void iap_conv_geom_from_node(struct iap_conv_geom *cg, const struct iap_node *node, int batch,
			     const int64_t *in_sample_shape)
{
	const struct iap_conv2d_attr *a = &node->attr.conv;

	cg->n = batch;
	cg->in_ch = (int)in_sample_shape[0];
	cg->in_h = (int)in_sample_shape[1];
	cg->in_w = (int)in_sample_shape[2];
	cg->out_ch = a->out_ch;
	cg->kh = a->kh;
	cg->kw = a->kw;
	cg->stride_h = a->stride_h;
	cg->stride_w = a->stride_w;
	cg->pad_h = a->pad_h;
	cg->pad_w = a->pad_w;
	cg->out_h = (cg->in_h + 2 * cg->pad_h - cg->kh) / cg->stride_h + 1;
	cg->out_w = (cg->in_w + 2 * cg->pad_w - cg->kw) / cg->stride_w + 1;
}

size_t iap_conv2d_im2col_workspace(const struct iap_conv_geom *cg)
{
	if (conv_is_pointwise(cg))
		return 0;
	return (size_t)cg->in_ch * cg->kh * cg->kw * cg->out_h * cg->out_w;
}

/* Enough for the im2col kernels (the weight gradient always uses them) and for Winograd when it runs. */
size_t iap_conv2d_workspace(const struct iap_conv_geom *cg)
{
	size_t n = iap_conv2d_im2col_workspace(cg);

	if (iap_winograd_applies(cg)) {
		size_t wn = iap_winograd_workspace(cg);

		if (wn > n)
			n = wn;
	}
	return n;
}

void iap_conv2d_forward_im2col(const struct iap_conv_geom *cg, const float *x, const float *w,
			       const float *b, float *y, float *ws)
{
	const int k = cg->in_ch * cg->kh * cg->kw;
	const int ohw = cg->out_h * cg->out_w;
	const size_t xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	const size_t ys = (size_t)cg->out_ch * ohw;
	const int pointwise = conv_is_pointwise(cg);

	for (int n = 0; n < cg->n; n++) {
		const float *xn = x + (size_t)n * xs;
		float *yn = y + (size_t)n * ys;
		const float *col = xn;

		if (!pointwise) {
			im2col(cg, xn, ws, (size_t)ohw);
			col = ws;
		}
		/* The bias goes in first so the sgemm adds onto it (beta 1): one pass over y. */
		if (b) {
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)cg->out_ch * ohw))
			for (int o = 0; o < cg->out_ch; o++)
				for (int p = 0; p < ohw; p++)
					yn[(size_t)o * ohw + p] = b[o];
		}
		iap_sgemm(0, 0, cg->out_ch, ohw, k,
			    1.0f, w, k, col, ohw, b ? 1.0f : 0.0f, yn, ohw);
	}
}

/* One sample's sizes in the by-sample paths: K, output positions, input and output floats, column floats. */
struct conv_sample_dims {
	int k;
	size_t ohw, xs, ys, per;
};

/*
 * Threads for a layer run with whole samples per thread, in the forward or
 * the input gradient (the same FLOPs), and one sample's sizes in d: from
 * the layer's work (iap_par_threads over its FLOPs), at most one per
 * sample, and at most as many column buffers as the workspace the graph
 * already holds (avail floats). The workspace never grows for this:
 * conv_group_size reads its size, and a grouping that changed with the
 * thread count would change the rounding. Which of the two paths runs may
 * depend on the thread count; the bits do not, as both make each sample's
 * 1-thread call (the per-op path's split products keep them where the BLAS
 * kernels do: iap_blas(3)).
 * 0 when the split does not apply.
 */
static int conv_sample_plan(const struct iap_conv_geom *cg, size_t avail, struct conv_sample_dims *d)
{
	double flops;
	int nt;

	d->k = cg->in_ch * cg->kh * cg->kw;
	d->ohw = (size_t)cg->out_h * cg->out_w;
	d->xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	d->ys = (size_t)cg->out_ch * d->ohw;
	d->per = iap_conv2d_im2col_workspace(cg);
	flops = 2.0 * (double)cg->out_ch * (double)d->ohw * d->k * cg->n;
	nt = iap_par_threads(flops, IAP_GEMM_GRAIN);
	if (nt > cg->n)
		nt = cg->n;
	/* Fewer threads than the work asks for: the per-op split uses them all, so leave it that. */
	if (nt < 2 || (d->per && (size_t)nt * d->per > avail))
		return 0;
	return nt;
}

/* The calling team thread's column buffer in ws (ws itself when there is none: 1×1, ws may be NULL). */
static float *conv_thread_col(float *ws, size_t per)
{
#ifdef _OPENMP
	if (per)
		return ws + (size_t)omp_get_thread_num() * per;
#endif
	(void)per;
	return ws;
}

/*
 * The per-sample kernel with whole samples on each thread: one parallel
 * region for the layer instead of two (im2col, sgemm) per sample, and every
 * thread's product as wide as one sample's, run by one single-threaded
 * OpenBLAS call exactly as iap_conv2d_forward_im2col() runs it on one
 * thread, so the result is the same bits. Threads from conv_sample_plan.
 * Returns the samples done (a multiple of the thread count, from sample 0),
 * 0 when the split does not apply; the caller runs the rest per op.
 */
static int conv_forward_by_sample(const struct iap_conv_geom *cg, const float *x, const float *w,
				  const float *b, float *y, float *ws, size_t avail)
{
	struct conv_sample_dims d;
	const int nt = conv_sample_plan(cg, avail, &d);
	const int k = d.k, done = nt ? cg->n / nt * nt : 0;
	const size_t ohw = d.ohw, xs = d.xs, ys = d.ys, per = d.per;

	if (!nt)
		return 0;
#pragma omp parallel num_threads(nt)
	{
		float *col = conv_thread_col(ws, per);

#pragma omp for schedule(static)
		for (int n = 0; n < done; n++) {
			const float *xn = x + (size_t)n * xs, *cn = xn;
			float *yn = y + (size_t)n * ys;

			if (per) {
				im2col(cg, xn, col, ohw);
				cn = col;
			}
			if (b)
				for (int o = 0; o < cg->out_ch; o++)
					for (size_t p = 0; p < ohw; p++)
						yn[(size_t)o * ohw + p] = b[o];
			cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, cg->out_ch, (int)ohw, k, 1.0f,
				    w, k, cn, (int)ohw, b ? 1.0f : 0.0f, yn, (int)ohw);
		}
	}
	return done;
}

/*
 * Several samples per GEMM. One sample's GEMM is out_ch × (out_h·out_w) × K;
 * late layers have few output positions (VGG 14×14 = 196, ResNet 7×7 = 49),
 * and such thin products run far below the sgemm peak. Side by side, nb
 * samples' columns make one out_ch × (nb·out_h·out_w) × K product; its result
 * is [out_ch][nb·ohw] and is copied to NCHW with the bias added on the way.
 */
#define CONV_THIN_N 1024

/* Floats one group of nb samples needs: the columns and the GEMM result. */
static size_t conv_group_floats(const struct iap_conv_geom *cg, int nb)
{
	const size_t ohw = (size_t)cg->out_h * cg->out_w;

	return (size_t)nb * ohw * ((size_t)cg->in_ch * cg->kh * cg->kw + (size_t)cg->out_ch);
}

/*
 * Samples per GEMM: enough for a GEMM at least CONV_THIN_N wide, within the
 * batch, and within avail floats, which is the workspace the graph already
 * holds (sized for its largest op): grouping uses memory that is there
 * anyway and never grows it. 1 means the per-sample kernel.
 */
static int conv_group_size(const struct iap_conv_geom *cg, size_t avail)
{
	const size_t ohw = (size_t)cg->out_h * cg->out_w;
	size_t nb, per;

	if (cg->n <= 1 || ohw >= CONV_THIN_N / 2)
		return 1;
	nb = (CONV_THIN_N + ohw - 1) / ohw;
	if (nb > (size_t)cg->n)
		nb = (size_t)cg->n;
	per = conv_group_floats(cg, 1);
	if (nb * per > avail)
		nb = avail / per;
	/* The GEMM's int sizes. */
	if (nb * ohw > INT_MAX)
		nb = INT_MAX / ohw;
	return nb < 2 ? 1 : (int)nb;
}

/* Forward of the whole batch, nb samples per GEMM; ws holds conv_group_floats(cg, nb). */
static void conv_forward_grouped(const struct iap_conv_geom *cg, int nb, const float *x,
				 const float *w, const float *b, float *y, float *ws)
{
	const int k = cg->in_ch * cg->kh * cg->kw;
	const size_t ohw = (size_t)cg->out_h * cg->out_w;
	const size_t xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	const size_t ys = (size_t)cg->out_ch * ohw;
	const int pointwise = conv_is_pointwise(cg);

	for (int n0 = 0; n0 < cg->n; n0 += nb) {
		const int m = cg->n - n0 < nb ? cg->n - n0 : nb;
		const size_t ldc = (size_t)m * ohw;
		float *col = ws, *yg = ws + (size_t)k * ldc;

		if (!pointwise) {
			for (int j = 0; j < m; j++)
				im2col(cg, x + (size_t)(n0 + j) * xs, col + (size_t)j * ohw, ldc);
		} else {
			/* 1×1: each sample is its own column matrix; place their rows side by side. */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)((size_t)k * ldc)))
			for (int c = 0; c < k; c++)
				for (int j = 0; j < m; j++)
					memcpy(col + (size_t)c * ldc + (size_t)j * ohw,
					       x + (size_t)(n0 + j) * xs + (size_t)c * ohw, ohw * sizeof(float));
		}
		iap_sgemm(0, 0, cg->out_ch, (int)ldc, k,
			    1.0f, w, k, col, (int)ldc, 0.0f, yg, (int)ldc);
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)((size_t)cg->out_ch * ldc)))
		for (int o = 0; o < cg->out_ch; o++) {
			const float bo = b ? b[o] : 0.0f;

			for (int j = 0; j < m; j++) {
				const float *src = yg + (size_t)o * ldc + (size_t)j * ohw;
				float *dst = y + (size_t)(n0 + j) * ys + (size_t)o * ohw;

				for (size_t p = 0; p < ohw; p++)
					dst[p] = src[p] + bo;
			}
		}
	}
}

void iap_conv2d_backward_input_im2col(const struct iap_conv_geom *cg, const float *dy,
				      const float *w, float *dx, float *ws)
{
	const int k = cg->in_ch * cg->kh * cg->kw;
	const int ohw = cg->out_h * cg->out_w;
	const size_t xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	const size_t ys = (size_t)cg->out_ch * ohw;
	const int pointwise = conv_is_pointwise(cg);

	for (int n = 0; n < cg->n; n++) {
		const float *dyn = dy + (size_t)n * ys;
		float *dxn = dx + (size_t)n * xs;

		if (pointwise) {
			/* The column matrix is the input itself: accumulate straight into dx. */
			iap_sgemm(1, 0, k, ohw, cg->out_ch,
				    1.0f, w, k, dyn, ohw, 1.0f, dxn, ohw);
			continue;
		}
		iap_sgemm(1, 0, k, ohw, cg->out_ch,
			    1.0f, w, k, dyn, ohw, 0.0f, ws, ohw);
		col2im_add(cg, ws, (size_t)ohw, dxn);
	}
}

/*
 * The input gradient with whole samples on each thread, the mirror of
 * conv_forward_by_sample: one parallel region for the layer instead of two
 * (sgemm, col2im) per sample. Each thread makes the single-threaded
 * OpenBLAS call iap_sgemm() makes on one thread (same sizes, operands and
 * beta) into its own column buffer and folds that sample itself, channel by
 * channel as col2im_add does, so dx has the 1-thread bits; 1×1 convs
 * accumulate their product straight into dx (beta 1), as the per-op path
 * does. Threads from conv_sample_plan; returns the samples done (from
 * sample 0), 0 when the split does not apply; the caller runs the rest.
 */
static int conv_backward_input_by_sample(const struct iap_conv_geom *cg, const float *dy,
					 const float *w, float *dx, float *ws, size_t avail)
{
	struct conv_sample_dims d;
	const int nt = conv_sample_plan(cg, avail, &d);
	const int k = d.k, done = nt ? cg->n / nt * nt : 0;
	const size_t ohw = d.ohw, xs = d.xs, ys = d.ys, per = d.per;

	if (!nt)
		return 0;
#pragma omp parallel num_threads(nt)
	{
		float *col = conv_thread_col(ws, per);

#pragma omp for schedule(static)
		for (int n = 0; n < done; n++) {
			const float *dyn = dy + (size_t)n * ys;
			float *dxn = dx + (size_t)n * xs;

			if (!per) {
				cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, (int)ohw, cg->out_ch,
					    1.0f, w, k, dyn, (int)ohw, 1.0f, dxn, (int)ohw);
				continue;
			}
			cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, k, (int)ohw, cg->out_ch,
				    1.0f, w, k, dyn, (int)ohw, 0.0f, col, (int)ohw);
			for (int c = 0; c < cg->in_ch; c++)
				col2im_channel(cg, col, ohw, dxn, c);
		}
	}
	return done;
}

/* The public kernels: Winograd for the 3×3 stride-1 layers it pays off on, im2col otherwise. */
void iap_conv2d_forward_raw(const struct iap_conv_geom *cg, const float *x, const float *w,
			    const float *b, float *y, float *ws)
{
	if (iap_winograd_applies(cg))
		iap_winograd_forward(cg, x, w, b, y, ws);
	else
		iap_conv2d_forward_im2col(cg, x, w, b, y, ws);
}

void iap_conv2d_backward_input_raw(const struct iap_conv_geom *cg, const float *dy,
				   const float *w, float *dx, float *ws)
{
	if (iap_winograd_applies(cg))
		iap_winograd_backward_input(cg, dy, w, dx, ws);
	else
		iap_conv2d_backward_input_im2col(cg, dy, w, dx, ws);
}

/*
 * Input gradient of the whole batch, nb samples per GEMM (see
 * conv_forward_grouped): dy of nb samples side by side, one
 * K × (nb·ohw) × out_ch product Wᵀ·dy, then each sample's slice folded back.
 * ws holds conv_group_floats(cg, nb).
 */
static void conv_backward_input_grouped(const struct iap_conv_geom *cg, int nb, const float *dy,
					const float *w, float *dx, float *ws)
{
	const int k = cg->in_ch * cg->kh * cg->kw;
	const size_t ohw = (size_t)cg->out_h * cg->out_w;
	const size_t xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	const size_t ys = (size_t)cg->out_ch * ohw;
	const int pointwise = conv_is_pointwise(cg);

	for (int n0 = 0; n0 < cg->n; n0 += nb) {
		const int m = cg->n - n0 < nb ? cg->n - n0 : nb;
		const size_t ldc = (size_t)m * ohw;
		float *dcol = ws, *dyg = ws + (size_t)k * ldc;

#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)((size_t)cg->out_ch * ldc)))
		for (int o = 0; o < cg->out_ch; o++)
			for (int j = 0; j < m; j++)
				memcpy(dyg + (size_t)o * ldc + (size_t)j * ohw,
				       dy + (size_t)(n0 + j) * ys + (size_t)o * ohw, ohw * sizeof(float));
		iap_sgemm(1, 0, k, (int)ldc, cg->out_ch,
			    1.0f, w, k, dyg, (int)ldc, 0.0f, dcol, (int)ldc);
		if (!pointwise) {
			for (int j = 0; j < m; j++)
				col2im_add(cg, dcol + (size_t)j * ohw, ldc, dx + (size_t)(n0 + j) * xs);
			continue;
		}
		/* 1×1: each (channel, sample) row adds onto its own row of dx, so any split is exact. */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)((size_t)k * ldc)))
		for (int c = 0; c < k; c++)
			for (int j = 0; j < m; j++) {
				const float *src = dcol + (size_t)c * ldc + (size_t)j * ohw;
				float *dst = dx + (size_t)(n0 + j) * xs + (size_t)c * ohw;

#pragma omp simd
				for (size_t p = 0; p < ohw; p++)
					dst[p] += src[p];
			}
	}
}

/* dw may be NULL too (only the bias wants a gradient); then no unfolding is done. */
void iap_conv2d_backward_params_raw(const struct iap_conv_geom *cg, const float *x,
				    const float *dy, float *dw, float *db, float *ws)
{
	const int k = cg->in_ch * cg->kh * cg->kw;
	const int ohw = cg->out_h * cg->out_w;
	const size_t xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	const size_t ys = (size_t)cg->out_ch * ohw;
	const int pointwise = conv_is_pointwise(cg);

	for (int n = 0; n < cg->n; n++) {
		const float *xn = x + (size_t)n * xs;
		const float *dyn = dy + (size_t)n * ys;

		if (dw) {
			const float *col = xn;

			if (!pointwise) {
				im2col(cg, xn, ws, (size_t)ohw);
				col = ws;
			}
			iap_sgemm(0, 1, cg->out_ch, k, ohw,
				    1.0f, dyn, ohw, col, ohw, 1.0f, dw, k);
		}
		if (db) {
			for (int o = 0; o < cg->out_ch; o++) {
				const float *d = dyn + (size_t)o * ohw;
				float s = 0.0f;

				for (int p = 0; p < ohw; p++)
					s += d[p];
				db[o] += s;
			}
		}
	}
}

/* Floats the masked forward needs: one sample's columns, the kept filters and their outputs. */
static size_t conv_masked_floats(const struct iap_conv_geom *cg, int kept)
{
	const size_t k = (size_t)cg->in_ch * cg->kh * cg->kw;

	return iap_conv2d_im2col_workspace(cg) + (size_t)kept * (k + (size_t)cg->out_h * cg->out_w);
}

/*
 * Forward computing only the kept output channels: their filters gathered
 * into one kept × K matrix, one kept × ohw × K GEMM per sample, the rows
 * scattered back with the bias; pruned channels are written as 0 (what the
 * mask makes of them anyway).
 */
static void conv_forward_masked(const struct iap_conv_geom *cg, const uint8_t *keep, int kept,
				const float *x, const float *w, const float *b, float *y, float *ws)
{
	const int k = cg->in_ch * cg->kh * cg->kw;
	const size_t ohw = (size_t)cg->out_h * cg->out_w;
	const size_t xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	const size_t ys = (size_t)cg->out_ch * ohw;
	const int pointwise = conv_is_pointwise(cg);
	float *col = ws, *wk = ws + iap_conv2d_im2col_workspace(cg), *yk = wk + (size_t)kept * k;

	/* Row r of wk / yk is output channel kidx[r]; without the list (no memory) the loops run serially. */
	int *kidx = malloc((size_t)(kept > 0 ? kept : 1) * sizeof(*kidx));
	const int nt = kidx ? iap_par_nt((int64_t)kept * k) : 1;
	const int nts = kidx ? iap_par_nt((int64_t)cg->out_ch * (int64_t)ohw) : 1;

	if (kidx)
		for (int o = 0, r = 0; o < cg->out_ch; o++)
			if (keep[o])
				kidx[r++] = o;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
	for (int r = 0; r < kept; r++)
		memcpy(wk + (size_t)r * k, w + (size_t)kidx[r] * k, (size_t)k * sizeof(float));
	if (!kidx)
		for (int o = 0, r = 0; o < cg->out_ch; o++)
			if (keep[o])
				memcpy(wk + (size_t)(r++) * k, w + (size_t)o * k, (size_t)k * sizeof(float));
	for (int n = 0; n < cg->n; n++) {
		const float *xn = x + (size_t)n * xs;
		float *yn = y + (size_t)n * ys;

		const float *cm = xn; /* 1×1: the sample is its own column matrix */

		if (!pointwise) {
			im2col(cg, xn, col, ohw);
			cm = col;
		}
		iap_sgemm(0, 0, kept, (int)ohw, k, 1.0f, wk, k,
			    cm, (int)ohw, 0.0f, yk, (int)ohw);
		if (!kidx) {
			for (int o = 0, r = 0; o < cg->out_ch; o++) {
				float *dst = yn + (size_t)o * ohw;

				if (!keep[o]) {
					memset(dst, 0, ohw * sizeof(float));
					continue;
				}
				const float *src = yk + (size_t)(r++) * ohw;
				const float bo = b ? b[o] : 0.0f;

				for (size_t p = 0; p < ohw; p++)
					dst[p] = src[p] + bo;
			}
			continue;
		}
		/* Pruned channels to 0, then the kept rows scattered with their bias: disjoint rows, any order. */
		for (int o = 0; o < cg->out_ch; o++)
			if (!keep[o])
				memset(yn + (size_t)o * ohw, 0, ohw * sizeof(float));
#pragma omp parallel for schedule(static) num_threads(nts) if (nts > 1)
		for (int r = 0; r < kept; r++) {
			const int o = kidx[r];
			const float *src = yk + (size_t)r * ohw;
			float *dst = yn + (size_t)o * ohw;
			const float bo = b ? b[o] : 0.0f;

			for (size_t p = 0; p < ohw; p++)
				dst[p] = src[p] + bo;
		}
	}
	free(kidx);
}

/* ---- the graph op ---------------------------------------------------------- */

static int conv2d_geom(struct iap_conv_geom *cg, const struct iap_node *node,
		       const struct iap_tensor *x, struct iap_error *err)
{
	const struct iap_conv2d_attr *a = &node->attr.conv;

	if (x->ndim != 4 || x->shape[1] != a->in_ch || x->shape[2] + 2 * a->pad_h < a->kh ||
	    x->shape[3] + 2 * a->pad_w < a->kw) {
		char buf[96];

		return iap_error_set(err, IAP_ESHAPE, "%s: conv2d with %d input channels cannot take %s",
				     node->name, a->in_ch, iap_tensor_shape_str(x, buf, sizeof(buf)));
	}
	iap_conv_geom_from_node(cg, node, (int)x->shape[0], x->shape + 1);
	return IAP_OK;
}

static int conv2d_forward(struct iap_graph *g, struct iap_node *node,
			  const struct iap_tensor *const in[], struct iap_tensor *out,
			  struct iap_error *err)
{
	const struct iap_param *b = node->attr.conv.has_bias ? &node->params[1] : NULL;
	struct iap_conv_geom cg;
	const uint8_t *keep;
	size_t need;
	float *ws = NULL;
	int rc, nb, kept = 0;

	rc = conv2d_geom(&cg, node, in[0], err);
	if (rc)
		return rc;
	/* Masked channels are zeroed by the engine after the forward (here or at the BatchNorm after): skip them. */
	keep = iap_unit_own_keep(g, node, node->attr.conv.out_ch, &kept);
	if (keep && kept > 0) {
		/* May grow the shared workspace once, by the kept filters and their outputs. */
		ws = iap_graph_workspace(g, conv_masked_floats(&cg, kept), err);
		if (!ws)
			return IAP_ENOMEM;
		conv_forward_masked(&cg, keep, kept, in[0]->data, node->params[0].value.data,
				    b ? b->value.data : NULL, out->data, ws);
		return IAP_OK;
	}
	if (iap_winograd_applies(&cg)) {
		/* Winograd batches the tiles of several samples itself: no grouping needed. */
		ws = iap_graph_workspace(g, iap_winograd_workspace(&cg), err);
		if (!ws)
			return IAP_ENOMEM;
		iap_winograd_forward(&cg, in[0]->data, node->params[0].value.data,
				     b ? b->value.data : NULL, out->data, ws);
		return IAP_OK;
	}
	nb = conv_group_size(&cg, g->workspace ? g->workspace_len : 0);
	need = nb > 1 ? conv_group_floats(&cg, nb) : iap_conv2d_im2col_workspace(&cg);
	if (need) {
		ws = iap_graph_workspace(g, need, err);
		if (!ws)
			return IAP_ENOMEM;
	}
	if (nb > 1) {
		conv_forward_grouped(&cg, nb, in[0]->data, node->params[0].value.data,
				     b ? b->value.data : NULL, out->data, ws);
	} else {
		/* Whole samples per thread where the batch covers the team; the rest split per op. */
		int done = conv_forward_by_sample(&cg, in[0]->data, node->params[0].value.data,
						  b ? b->value.data : NULL, out->data, g->workspace,
						  g->workspace ? g->workspace_len : 0);
		struct iap_conv_geom rest = cg;

		rest.n = cg.n - done;
		if (rest.n > 0)
			iap_conv2d_forward_im2col(&rest,
						  in[0]->data + (size_t)done * cg.in_ch * cg.in_h * cg.in_w,
						  node->params[0].value.data, b ? b->value.data : NULL,
						  out->data + (size_t)done * cg.out_ch * cg.out_h * cg.out_w, ws);
	}
	return IAP_OK;
}

/*
 * The per-sample input gradient of the graph op: whole samples per thread
 * where the batch covers the team and their column buffers fit the
 * workspace g holds (as the forward), the rest split per op; ws holds one
 * sample's columns.
 */
static void conv_backward_input_per_sample(const struct iap_conv_geom *cg, const struct iap_graph *g,
					   const float *dy, const float *w, float *dx, float *ws)
{
	const size_t xs = (size_t)cg->in_ch * cg->in_h * cg->in_w;
	const size_t ys = (size_t)cg->out_ch * cg->out_h * cg->out_w;
	struct iap_conv_geom rest = *cg;
	int done = conv_backward_input_by_sample(cg, dy, w, dx, g->workspace,
						 g->workspace ? g->workspace_len : 0);

	rest.n = cg->n - done;
	if (rest.n > 0)
		iap_conv2d_backward_input_im2col(&rest, dy + (size_t)done * ys, w, dx + (size_t)done * xs, ws);
}

static int conv2d_backward(struct iap_rule_ctx *ctx)
{
	const struct iap_node *node = ctx->node;
	struct iap_conv_geom cg;
	float *dw = NULL, *db = NULL, *ws = NULL;
	size_t need;
	int rc, nb, wino;

	rc = conv2d_geom(&cg, node, ctx->in[0], ctx->err);
	if (rc)
		return rc;
	if (ctx->want_param_grads) {
		rc = iap_param_grad(node, 0, &dw, ctx->err);
		if (!rc && node->attr.conv.has_bias)
			rc = iap_param_grad(node, 1, &db, ctx->err);
		if (rc)
			return rc;
	}
	if (!ctx->r_in[0] && !dw && !db)
		return IAP_OK;
	/*
	 * Input gradient by Winograd when it applies, else in groups when the
	 * workspace the graph holds has room, else per sample with whole samples
	 * per thread where their buffers fit (see the forward).
	 */
	wino = ctx->r_in[0] && iap_winograd_applies(&cg);
	nb = ctx->r_in[0] && !wino ?
		conv_group_size(&cg, ctx->graph->workspace ? ctx->graph->workspace_len : 0) : 1;
	need = iap_conv2d_im2col_workspace(&cg);
	if (nb > 1 && conv_group_floats(&cg, nb) > need)
		need = conv_group_floats(&cg, nb);
	if (wino && iap_winograd_workspace(&cg) > need)
		need = iap_winograd_workspace(&cg);
	if (need && (ctx->r_in[0] || dw)) {
		ws = iap_graph_workspace(ctx->graph, need, ctx->err);
		if (!ws)
			return IAP_ENOMEM;
	}
	if (dw || db)
		iap_conv2d_backward_params_raw(&cg, ctx->in[0]->data, ctx->r_out->data, dw, db, ws);
	/* The first conv usually has nobody upstream: skipping its col2im is the point of NULL. */
	if (wino)
		iap_winograd_backward_input(&cg, ctx->r_out->data, node->params[0].value.data,
					    ctx->r_in[0]->data, ws);
	else if (ctx->r_in[0] && nb > 1)
		conv_backward_input_grouped(&cg, nb, ctx->r_out->data, node->params[0].value.data,
					    ctx->r_in[0]->data, ws);
	else if (ctx->r_in[0])
		conv_backward_input_per_sample(&cg, ctx->graph, ctx->r_out->data, node->params[0].value.data,
					       ctx->r_in[0]->data, ws);
	return IAP_OK;
}

static size_t conv2d_workspace(const struct iap_graph *g, const struct iap_node *node, int batch)
{
	struct iap_conv_geom cg;
	int64_t shp[IAP_MAX_DIMS];

	if (iap_graph_sample_shape(g, node->inputs[0], shp) != 3)
		return 0;
	iap_conv_geom_from_node(&cg, node, batch, shp);
	/*
	 * Forward and both gradient kernels share one buffer: a sample's columns
	 * for im2col, or Winograd's transformed weights and tile chunk when it runs.
	 */
	return iap_conv2d_workspace(&cg);
}

/* out_ch·oh·ow·in_ch·kh·kw: one MAC per weight per output position (the bias add is not counted). */
static uint64_t conv2d_macs(const struct iap_graph *g, const struct iap_node *node)
{
	const struct iap_conv2d_attr *a = &node->attr.conv;

	(void)g;
	return (uint64_t)a->out_ch * (uint64_t)node->out_shape[1] * (uint64_t)node->out_shape[2] *
	       (uint64_t)a->in_ch * (uint64_t)a->kh * (uint64_t)a->kw;
}

const struct iap_op_ops iap_op_conv2d = {
	.kind = IAP_OP_CONV2D,
	.forward = conv2d_forward,
	.backward = conv2d_backward,
	.workspace = conv2d_workspace,
	.macs = conv2d_macs,
};

/* ---- builder ----------------------------------------------------------------- */

int iap_conv2d(struct iap_graph *g, const char *name, int in, int out_ch, int kh, int kw,
	       int stride_h, int stride_w, int pad_h, int pad_w, int bias)
{
	const char *nm = name ? name : "";
	int64_t shp[IAP_MAX_DIMS], oh, ow, wshape[4], bshape[1];
	struct iap_node *n;
	char buf[96];
	int nd, id;

	if (!g || g->build_failed)
		return -1;
	nd = iap_graph_sample_shape(g, in, shp);
	if (nd < 0)
		return -1;
	if (nd != 3)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: conv2d expects a C×H×W input per sample, got %s",
				      nm, iap_shape_str(nd, shp, buf, sizeof(buf)));
	if (out_ch <= 0 || kh <= 0 || kw <= 0 || stride_h <= 0 || stride_w <= 0 || pad_h < 0 ||
	    pad_w < 0)
		return iap_graph_fail(g, IAP_EINVAL,
				      "%s: conv2d needs positive out_ch, kernel and stride and non-negative padding "
				      "(got out_ch %d, kernel %dx%d, stride %dx%d, padding %dx%d)",
				      nm, out_ch, kh, kw, stride_h, stride_w, pad_h, pad_w);
	if (shp[1] + 2 * (int64_t)pad_h < kh || shp[2] + 2 * (int64_t)pad_w < kw)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: conv2d kernel %dx%d is larger than the padded input %s",
				      nm, kh, kw, iap_shape_str(nd, shp, buf, sizeof(buf)));
	oh = (shp[1] + 2 * (int64_t)pad_h - kh) / stride_h + 1;
	ow = (shp[2] + 2 * (int64_t)pad_w - kw) / stride_w + 1;
	/* The kernels index with int and hand int sizes to cblas. */
	if (shp[0] * kh * kw > INT_MAX || oh * ow > INT_MAX || shp[1] + 2 * (int64_t)pad_h > INT_MAX ||
	    shp[2] + 2 * (int64_t)pad_w > INT_MAX || (int64_t)out_ch * oh * ow > INT_MAX)
		return iap_graph_fail(g, IAP_ENOMEM, "%s: conv2d on %s with kernel %dx%d is too large",
				      nm, iap_shape_str(nd, shp, buf, sizeof(buf)), kh, kw);

	id = iap_graph_add_node(g, &iap_op_conv2d, name, 1, &in);
	if (id < 0)
		return -1;
	n = &g->nodes[id];
	n->attr.conv = (struct iap_conv2d_attr){
		.in_ch = (int)shp[0],
		.out_ch = out_ch,
		.kh = kh,
		.kw = kw,
		.stride_h = stride_h,
		.stride_w = stride_w,
		.pad_h = pad_h,
		.pad_w = pad_w,
		.has_bias = bias ? 1 : 0,
	};
	n->out_ndim = 3;
	n->out_shape[0] = out_ch;
	n->out_shape[1] = oh;
	n->out_shape[2] = ow;

	wshape[0] = out_ch;
	wshape[1] = shp[0];
	wshape[2] = kh;
	wshape[3] = kw;
	if (iap_graph_add_param(g, id, "weight", 4, wshape, IAP_PARAM_TRAINABLE) < 0)
		return -1;
	if (bias) {
		bshape[0] = out_ch;
		if (iap_graph_add_param(g, id, "bias", 1, bshape, IAP_PARAM_TRAINABLE) < 0)
			return -1;
	}
	return id;
}
