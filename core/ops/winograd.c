/*
 * Winograd minimal filtering for 3×3 stride-1 convolutions: the forward with
 * F(4×4, 3×3) up to 64 input channels and F(2×2, 3×3) above, the input
 * gradient with F(2×2, 3×3) (NCHW, weights [out_ch][in_ch][3][3]).
 *
 * The 1-D algorithm F(m, 3) computes m outputs of a 3-tap correlation,
 * y_i = Σ_k d_{i+k} g_k (i = 0..m−1), from m + 2 inputs as
 *
 *   y = Aᵀ [ (G g) ⊙ (Bᵀ d) ]
 *
 * Derivation (Toom–Cook): read g as the polynomial g(t) = g0 + g1 t + g2 t²
 * and the correlation as its product with a data polynomial; a product of
 * degree m + 1 is fixed by its values at m + 2 points. F(4,3) uses the points
 * 0, 1, −1, 2, −2 and ∞ (the leading coefficient). G's row for a finite point
 * p evaluates g there, (1, p, p²), divided by the Lagrange denominator
 * Π_{q≠p} (p − q) over the finite points: 4, −6, −6, 24, 24, hence 1/4, −1/6,
 * −1/6, 1/24, 1/24; the ∞ row is (0, 0, 1). Bᵀ's row for p holds the
 * coefficients of the numerator Π_{q≠p} (t − q) (for p = 0: (t² − 1)(t² − 4) =
 * 4 − 5t² + t⁴), and for ∞ those of t·(t² − 1)(t² − 4). Aᵀ's row i holds p^i
 * for each finite point, plus 1 in the ∞ column of the last row:
 *
 *        | 4  0 -5  0  1  0 |        | 1/4    0     0   |
 *        | 0 -4 -4  1  1  0 |        | -1/6 -1/6  -1/6  |        | 1 1  1 1  1 0 |
 *   Bᵀ = | 0  4 -4 -1  1  0 |    G = | -1/6  1/6  -1/6  |   Aᵀ = | 0 1 -1 2 -2 0 |
 *        | 0 -2 -1  2  1  0 |        | 1/24  1/12  1/6  |        | 0 1  1 4  4 0 |
 *        | 0  2 -1 -2  1  0 |        | 1/24 -1/12  1/6  |        | 0 1 -1 8 -8 1 |
 *        | 0  4  0 -5  0  1 |        | 0     0     1    |
 *
 * F(2,3) the same at 0, 1, −1, ∞ (signs and the ½ moved between G and Bᵀ):
 *
 *        | 1  0 -1  0 |        | 1    0    0   |
 *   Bᵀ = | 0  1  1  0 |    G = | 1/2  1/2  1/2 |    Aᵀ = | 1 1  1  0 |
 *        | 0 -1  1  0 |        | 1/2 -1/2  1/2 |         | 0 1 -1 -1 |
 *        | 0  1  0 -1 |        | 0    0    1   |
 *
 * Both checked in exact rational arithmetic: Σ_x Aᵀ[i][x] G[x][k] Bᵀ[x][j] is 1
 * when j = i + k and 0 otherwise, for every i, j, k (the identity above on
 * basis vectors); tests/test_winograd.c compares against direct double sums.
 * In 2-D the transforms apply along rows and columns: a t×t input tile d
 * (t = m + 2) gives V = Bᵀ d B, a 3×3 filter g gives U = G g Gᵀ, and the m×m
 * outputs are Aᵀ [Σ_c U_c ⊙ V_c] A. The sum over input channels, for each of
 * the t² tile positions ξ separately, is a GEMM:
 * M_ξ[out][tile] = U_ξ[out][in] · V_ξ[in][tile].
 *
 * Which m: F(4,3) needs 36 products per 4×4 outputs (2.25 per output, against
 * 9 for the direct sum), F(2,3) 16 per 2×2 (4 per output), and F(4,3) also
 * moves less data at the transforms (36/16 floats per input against 16/4).
 * Its float32 error is larger (the ±2 points, the 1/24 factors) and grows
 * with the number of input channels summed. Measured against direct double
 * sums on VGG-shaped layers (He weights, ReLU'd inputs, OpenBLAS's SkylakeX
 * kernels, several seeds), in units of max |y|: F(4,3) 4.4–7.5e-6 at 64
 * input channels, but up to 1.02e-5 at 128 and 1.5e-5 at 256 and 512, over
 * the 1e-5 the library allows; F(2,3) stays below 8e-7 (im2col: 3–6e-7). The
 * input gradient, whose dy is zero-mean, reached 1.7e-5 with F(4,3) at 128
 * channels. So the forward uses F(4,3) up to 64 input channels and F(2,3)
 * above, and the input gradient always F(2,3).
 *
 * Memory: the transformed weights (t²·out·in floats) are built on every call
 * — there is no weight version to key a cache on, and LRP passes modified
 * copies — and the tiles go through in chunks of whole tile rows (across
 * samples, so small late layers still make wide GEMMs at batch > 1) of a
 * bounded size (WG_CHUNK_FLOATS), instead of materialising t² × channels ×
 * all tiles (for 64 channels at 224², 7.2 M floats, 29 MB, each way).
 *
 * The input gradient of a stride-1 conv is itself a stride-1 3×3 conv: of dy
 * padded by 2 − pad, with the filters turned by 180° and in/out swapped. The
 * same machinery runs it, the weight transform doing the turn and the swap,
 * and the output transform adding into dx instead of storing.
 */
#include "config.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <iaprune/threads.h>

#include "parallel.h"
#include "winograd.h"

/*
 * Floats of one chunk's transformed inputs and products (xi·T·(in + out)):
 * 4M floats = 16 MB. Measured on VGG19 shapes (bench/NOTES.md): 1M and 2M
 * were slower at batch 8 (64 → 64 at 224²: 209 and 171 ms against 146 ms),
 * 4M to 32M level within the noise, whole 224² images slower at batch 1.
 */
#ifndef WG_CHUNK_FLOATS
#define WG_CHUNK_FLOATS ((size_t)1 << 22)
#endif

/* But at least this many tiles per chunk: fewer make the GEMMs thin. */
#ifndef WG_MIN_T
#define WG_MIN_T 256
#endif

/*
 * Smallest layer worth it. Below 8 channels on either side the GEMMs are too
 * small (conv1_1 with 3 inputs stays im2col). The weight transform writes
 * t²·out·in floats on every call, as many as the GEMMs read: with fewer than
 * 64 tiles per call (of the forward's size: 512 → 512 at 14×14 has 49 2×2
 * tiles per sample) it costs as much as it saves and im2col was as fast
 * (bench/NOTES.md).
 */
#ifndef WG_MIN_CH
#define WG_MIN_CH 8
#endif
#ifndef WG_MIN_TILES
#define WG_MIN_TILES 64
#endif

/*
 * The forward uses F(4,3) up to this many input channels (the length of the
 * GEMMs' sums) and F(2,3) above: F(4,3)'s error grows with it (see the top of
 * the file).
 */
#ifndef WG_F4_MAX_IN
#define WG_F4_MAX_IN 64
#endif

/*
 * One run of the tiled algorithm F(m×m, 3×3): a stride-1 3×3 correlation of a
 * source (cs channels of hs × wsrc, zero-padded by pad) into a destination
 * (cd channels of hd × wd, hd = hs + 2·pad − 2), tiles of m×m outputs from
 * (m+2)×(m+2) inputs. The forward is x → y with m = 4 or 2; the input
 * gradient is dy → dx with pad 2 − pad and m = 2 (see the top of the file).
 */
struct wg_plan {
	int m, t, xi;   /* outputs per tile edge, inputs per tile edge, t² GEMMs */
	int n;
	int cs, hs, wsrc;
	int cd, hd, wd;
	int pad;
	int th, tw;     /* tiles down and across one destination plane */
	int rows;       /* tile rows per chunk (over the whole batch) */
};

static void wg_plan_init(struct wg_plan *p, int m, int n, int cs, int hs, int wsrc, int cd, int pad)
{
	size_t per_row;

	p->m = m;
	p->t = m + 2;
	p->xi = p->t * p->t;
	p->n = n;
	p->cs = cs;
	p->hs = hs;
	p->wsrc = wsrc;
	p->cd = cd;
	p->pad = pad;
	p->hd = hs + 2 * pad - 2;
	p->wd = wsrc + 2 * pad - 2;
	p->th = (p->hd + m - 1) / m;
	p->tw = (p->wd + m - 1) / m;
	per_row = (size_t)p->xi * p->tw * ((size_t)cs + cd);
	p->rows = per_row >= WG_CHUNK_FLOATS ? 1 : (int)(WG_CHUNK_FLOATS / per_row);
	if ((size_t)p->rows * p->tw < WG_MIN_T)
		p->rows = (int)((WG_MIN_T + p->tw - 1) / p->tw);
	if ((int64_t)p->rows > (int64_t)n * p->th)
		p->rows = (int)((int64_t)n * p->th);
}

/*
 * Scratch slots: one per thread that may run a chunk. The workspace is
 * sized when the op asks for it, so it covers at least WG_MIN_SLOTS threads
 * (a slot is a few thousand floats) and the thread count of that moment.
 */
#define WG_MIN_SLOTS 64

static int wg_slots(void)
{
	int t = iap_threads();

	return t > WG_MIN_SLOTS ? t : WG_MIN_SLOTS;
}

/*
 * Scratch floats: t source rows split into m column phases, and xi rows of
 * row transforms (the output side needs m·(t + 1) rows, fewer).
 */
static size_t wg_scratch_floats(const struct wg_plan *p)
{
	return (size_t)p->t * p->m * (p->tw + 1) + (size_t)p->xi * p->tw;
}

static size_t wg_plan_floats(const struct wg_plan *p)
{
	const size_t t = (size_t)p->rows * p->tw;

	return (size_t)p->xi * p->cd * p->cs + (size_t)p->xi * t * ((size_t)p->cs + p->cd) +
	       wg_scratch_floats(p) * (size_t)wg_slots();
}

/* Output tile edge of the forward: 4 while F(4,3) is accurate enough, else 2. */
static int wg_forward_m(const struct iap_conv_geom *cg)
{
	return cg->in_ch <= WG_F4_MAX_IN ? 4 : 2;
}

static void wg_plan_forward(struct wg_plan *p, const struct iap_conv_geom *cg)
{
	wg_plan_init(p, wg_forward_m(cg), cg->n, cg->in_ch, cg->in_h, cg->in_w, cg->out_ch,
		     cg->pad_h);
}

static void wg_plan_backward(struct wg_plan *p, const struct iap_conv_geom *cg)
{
	wg_plan_init(p, 2, cg->n, cg->out_ch, cg->out_h, cg->out_w, cg->in_ch, 2 - cg->pad_h);
}

int iap_winograd_supports(const struct iap_conv_geom *cg)
{
	return cg->kh == 3 && cg->kw == 3 && cg->stride_h == 1 && cg->stride_w == 1 &&
	       cg->pad_h == cg->pad_w && (cg->pad_h == 0 || cg->pad_h == 1) && cg->n >= 1 &&
	       cg->in_ch >= 1 && cg->out_ch >= 1 && cg->out_h >= 1 && cg->out_w >= 1 &&
	       cg->out_h == cg->in_h + 2 * cg->pad_h - 2 && cg->out_w == cg->in_w + 2 * cg->pad_w - 2;
}

/*
 * Tiles are counted at the forward's size; the input gradient's 2×2 tiles are
 * as many or more, so one answer serves both.
 */
int iap_winograd_applies(const struct iap_conv_geom *cg)
{
	int64_t tiles;
	int m;

	if (!iap_winograd_supports(cg) || cg->in_ch < WG_MIN_CH || cg->out_ch < WG_MIN_CH)
		return 0;
	m = wg_forward_m(cg);
	/* Counted for the whole batch when this is one slice of it (parallel.h), so a slice rounds as the batch. */
	tiles = (int64_t)iap_plan_batch(cg->n) * ((cg->out_h + m - 1) / m) * ((cg->out_w + m - 1) / m);
	return tiles >= WG_MIN_TILES;
}

size_t iap_winograd_workspace(const struct iap_conv_geom *cg)
{
	struct wg_plan f, b;
	size_t nf, nb;

	if (!iap_winograd_supports(cg))
		return 0;
	wg_plan_forward(&f, cg);
	wg_plan_backward(&b, cg);
	nf = wg_plan_floats(&f);
	nb = wg_plan_floats(&b);
	return nf > nb ? nf : nb;
}

/* Source channels per block of the weight transform: their taps sit in a small tap-major buffer. */
#define WG_WBLK 64

/*
 * g[tap][s] for WG_WBLK source channels from s0: forward g = w[d][s],
 * input gradient (turn) g[i][j] = w[s][d][2 − i][2 − j], the 180° turn and the
 * in/out swap of the transposed conv. Tap-major, so the transforms below run
 * over s with unit stride.
 */
static int wg_gather_taps(const struct wg_plan *p, const float *w, int turn, int d, int s0,
			  float g[9][WG_WBLK])
{
	const int ns = p->cs - s0 < WG_WBLK ? p->cs - s0 : WG_WBLK;

	for (int s = 0; s < ns; s++) {
		const float *f = turn ? w + ((size_t)(s0 + s) * p->cd + d) * 9 :
					w + ((size_t)d * p->cs + s0 + s) * 9;

		if (turn)
			for (int k = 0; k < 9; k++)
				g[k][s] = f[8 - k];
		else
			for (int k = 0; k < 9; k++)
				g[k][s] = f[k];
	}
	return ns;
}

/* U[ξ][d][s] = (G g Gᵀ)[ξ], F(4,3), for the filter from source channel s to destination d. */
static void wg4_weights(const struct wg_plan *p, const float *w, int turn, float *u)
{
	const size_t plane = (size_t)p->cd * p->cs;

	/* Filters are independent: split by destination channel (xi·cd·cs floats written). */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)p->xi * (int64_t)plane))
	for (int d = 0; d < p->cd; d++) {
		float g[9][WG_WBLK], h[18][WG_WBLK];

		for (int s0 = 0; s0 < p->cs; s0 += WG_WBLK) {
			const int ns = wg_gather_taps(p, w, turn, d, s0, g);
			float *o = u + (size_t)d * p->cs + s0;

			/* h = G g (6×3), h[y·3 + j]. */
			for (int j = 0; j < 3; j++) {
#pragma omp simd
				for (int s = 0; s < ns; s++) {
					const float g0 = g[j][s], g1 = g[3 + j][s], g2 = g[6 + j][s];

					h[0 + j][s] = g0 * 0.25f;
					h[3 + j][s] = -(g0 + g1 + g2) * (1.0f / 6.0f);
					h[6 + j][s] = -(g0 - g1 + g2) * (1.0f / 6.0f);
					h[9 + j][s] = g0 * (1.0f / 24.0f) + g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
					h[12 + j][s] = g0 * (1.0f / 24.0f) - g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
					h[15 + j][s] = g2;
				}
			}
			/* U = h Gᵀ (6×6), row y to U[y·6 + 0..5]: each a contiguous run over s. */
			for (int y = 0; y < 6; y++) {
				float *r0 = o + (size_t)y * 6 * plane, *r1 = r0 + plane, *r2 = r1 + plane;
				float *r3 = r2 + plane, *r4 = r3 + plane, *r5 = r4 + plane;

#pragma omp simd
				for (int s = 0; s < ns; s++) {
					const float g0 = h[3 * y][s], g1 = h[3 * y + 1][s], g2 = h[3 * y + 2][s];

					r0[s] = g0 * 0.25f;
					r1[s] = -(g0 + g1 + g2) * (1.0f / 6.0f);
					r2[s] = -(g0 - g1 + g2) * (1.0f / 6.0f);
					r3[s] = g0 * (1.0f / 24.0f) + g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
					r4[s] = g0 * (1.0f / 24.0f) - g1 * (1.0f / 12.0f) + g2 * (1.0f / 6.0f);
					r5[s] = g2;
				}
			}
		}
	}
}

/* The same for F(2,3): G's rows are (1,0,0), (½,½,½), (½,−½,½), (0,0,1). */
static void wg2_weights(const struct wg_plan *p, const float *w, int turn, float *u)
{
	const size_t plane = (size_t)p->cd * p->cs;

	/* Filters are independent: split by destination channel (xi·cd·cs floats written). */
#pragma omp parallel for schedule(static) num_threads(iap_par_nt((int64_t)p->xi * (int64_t)plane))
	for (int d = 0; d < p->cd; d++) {
		float g[9][WG_WBLK], h[12][WG_WBLK];

		for (int s0 = 0; s0 < p->cs; s0 += WG_WBLK) {
			const int ns = wg_gather_taps(p, w, turn, d, s0, g);
			float *o = u + (size_t)d * p->cs + s0;

			for (int j = 0; j < 3; j++) {
#pragma omp simd
				for (int s = 0; s < ns; s++) {
					const float g0 = g[j][s], g1 = g[3 + j][s], g2 = g[6 + j][s];

					h[0 + j][s] = g0;
					h[3 + j][s] = 0.5f * (g0 + g1 + g2);
					h[6 + j][s] = 0.5f * (g0 - g1 + g2);
					h[9 + j][s] = g2;
				}
			}
			for (int y = 0; y < 4; y++) {
				float *r0 = o + (size_t)y * 4 * plane, *r1 = r0 + plane, *r2 = r1 + plane;
				float *r3 = r2 + plane;

#pragma omp simd
				for (int s = 0; s < ns; s++) {
					const float g0 = h[3 * y][s], g1 = h[3 * y + 1][s], g2 = h[3 * y + 2][s];

					r0[s] = g0;
					r1[s] = 0.5f * (g0 + g1 + g2);
					r2[s] = 0.5f * (g0 - g1 + g2);
					r3[s] = g2;
				}
			}
		}
	}
}

/*
 * The t source rows of tile row r, the padding made explicit and split by
 * column phase: ph[a][k][j] = row 4r − pad + a (m·r for F(m,3)), column
 * m·j + k − pad, 0 outside the plane. Tile j's t columns are then
 * ph[a][0..m−1][j] and ph[a][0..1][j + 1], and every transform loop runs over
 * j with unit stride (and vectorises).
 */
static void wg_split_rows(const struct wg_plan *p, const float *plane, int r, float *ph)
{
	const int m = p->m, pw = p->tw + 1;

	for (int a = 0; a < p->t; a++) {
		const int ih = m * r - p->pad + a;
		float *pa = ph + (size_t)a * m * pw;

		if (ih < 0 || ih >= p->hs) {
			memset(pa, 0, (size_t)m * pw * sizeof(float));
			continue;
		}
		const float *row = plane + (size_t)ih * p->wsrc;

		for (int k = 0; k < m; k++) {
			/* Columns m·j + off inside the row for j in [lo, hi); zeros around them. */
			const int off = k - p->pad;
			int lo = off >= 0 ? 0 : (-off + m - 1) / m;
			int hi = p->wsrc - off > 0 ? (p->wsrc - off + m - 1) / m : 0;
			float *dst = pa + (size_t)k * pw;
			const float *src = row + off;

			if (hi > pw)
				hi = pw;
			if (lo > hi)
				lo = hi;
			for (int j = 0; j < lo; j++)
				dst[j] = 0.0f;
			for (int j = lo; j < hi; j++)
				dst[j] = src[m * j];
			for (int j = hi; j < pw; j++)
				dst[j] = 0.0f;
		}
	}
}

/*
 * V for one source channel and one row of tiles, F(4,3):
 * v[ξ·vstride + j] = (Bᵀ d_j B)[ξ] for the tw tiles j of tile row r.
 */
static void wg4_in_row(const struct wg_plan *p, const float *plane, int r, float *scratch,
		       float *v, size_t vstride)
{
	const int tw = p->tw, pw = tw + 1;
	float *ph = scratch, *hrow = scratch + (size_t)6 * 4 * pw;

	wg_split_rows(p, plane, r, ph);
	/* Along the row: hrow[a·6 + x][j] = (d_j B)[a][x]. */
	for (int a = 0; a < 6; a++) {
		const float *p0 = ph + (size_t)a * 4 * pw, *p1 = p0 + pw, *p2 = p1 + pw, *p3 = p2 + pw;
		float *h = hrow + (size_t)a * 6 * tw;

#pragma omp simd
		for (int j = 0; j < tw; j++) {
			const float d0 = p0[j], d1 = p1[j], d2 = p2[j], d3 = p3[j];
			const float d4 = p0[j + 1], d5 = p1[j + 1];

			h[0 * tw + j] = 4.0f * d0 - 5.0f * d2 + d4;
			h[1 * tw + j] = -4.0f * (d1 + d2) + d3 + d4;
			h[2 * tw + j] = 4.0f * (d1 - d2) - d3 + d4;
			h[3 * tw + j] = 2.0f * (d3 - d1) - d2 + d4;
			h[4 * tw + j] = 2.0f * (d1 - d3) - d2 + d4;
			h[5 * tw + j] = 4.0f * d1 - 5.0f * d3 + d5;
		}
	}
	/* Down the columns: V[y·6 + x] = Σ_a Bᵀ[y][a] hrow[a·6 + x]. */
	for (int x = 0; x < 6; x++) {
		const float *h0 = hrow + (size_t)x * tw, *h1 = h0 + 6 * (size_t)tw;
		const float *h2 = h1 + 6 * (size_t)tw, *h3 = h2 + 6 * (size_t)tw;
		const float *h4 = h3 + 6 * (size_t)tw, *h5 = h4 + 6 * (size_t)tw;
		float *o = v + (size_t)x * vstride;

#pragma omp simd
		for (int j = 0; j < tw; j++) {
			const float d0 = h0[j], d1 = h1[j], d2 = h2[j], d3 = h3[j], d4 = h4[j], d5 = h5[j];

			o[0 * 6 * vstride + j] = 4.0f * d0 - 5.0f * d2 + d4;
			o[1 * 6 * vstride + j] = -4.0f * (d1 + d2) + d3 + d4;
			o[2 * 6 * vstride + j] = 4.0f * (d1 - d2) - d3 + d4;
			o[3 * 6 * vstride + j] = 2.0f * (d3 - d1) - d2 + d4;
			o[4 * 6 * vstride + j] = 2.0f * (d1 - d3) - d2 + d4;
			o[5 * 6 * vstride + j] = 4.0f * d1 - 5.0f * d3 + d5;
		}
	}
}

/* The same for F(2,3), Bᵀ rows (1,0,−1,0), (0,1,1,0), (0,−1,1,0), (0,1,0,−1). */
static void wg2_in_row(const struct wg_plan *p, const float *plane, int r, float *scratch,
		       float *v, size_t vstride)
{
	const int tw = p->tw, pw = tw + 1;
	float *ph = scratch, *hrow = scratch + (size_t)4 * 2 * pw;

	wg_split_rows(p, plane, r, ph);
	for (int a = 0; a < 4; a++) {
		const float *p0 = ph + (size_t)a * 2 * pw, *p1 = p0 + pw;
		float *h = hrow + (size_t)a * 4 * tw;

#pragma omp simd
		for (int j = 0; j < tw; j++) {
			const float d0 = p0[j], d1 = p1[j], d2 = p0[j + 1], d3 = p1[j + 1];

			h[0 * tw + j] = d0 - d2;
			h[1 * tw + j] = d1 + d2;
			h[2 * tw + j] = d2 - d1;
			h[3 * tw + j] = d1 - d3;
		}
	}
	for (int x = 0; x < 4; x++) {
		const float *h0 = hrow + (size_t)x * tw, *h1 = h0 + 4 * (size_t)tw;
		const float *h2 = h1 + 4 * (size_t)tw, *h3 = h2 + 4 * (size_t)tw;
		float *o = v + (size_t)x * vstride;

#pragma omp simd
		for (int j = 0; j < tw; j++) {
			const float d0 = h0[j], d1 = h1[j], d2 = h2[j], d3 = h3[j];

			o[0 * 4 * vstride + j] = d0 - d2;
			o[1 * 4 * vstride + j] = d1 + d2;
			o[2 * 4 * vstride + j] = d2 - d1;
			o[3 * 4 * vstride + j] = d1 - d3;
		}
	}
}

/* One output row of m·tw values (o) to the plane, cropped: stored with the bias, or added. */
static void wg_put_row(const struct wg_plan *p, const float *o, float *dst, float bias,
		       int accumulate)
{
	if (accumulate) {
#pragma omp simd
		for (int c = 0; c < p->wd; c++)
			dst[c] += o[c];
	} else {
#pragma omp simd
		for (int c = 0; c < p->wd; c++)
			dst[c] = o[c] + bias;
	}
}

/*
 * The 4×4 outputs of one destination channel and one row of tiles from the
 * products m[ξ·mstride + j]: Aᵀ m_j A, cropped to the plane, stored with the
 * bias added (accumulate 0) or added to what is there (accumulate 1).
 */
static void wg4_out_row(const struct wg_plan *p, const float *m, size_t mstride, int r,
			float *scratch, float *plane, float bias, int accumulate)
{
	const int tw = p->tw;
	float *s = scratch, *o = scratch + (size_t)4 * 6 * tw;

	/* Down the columns: s[i·6 + x][j] = Σ_y Aᵀ[i][y] m[y·6 + x][j], i = 0..3. */
	for (int x = 0; x < 6; x++) {
		const float *m0 = m + (size_t)x * mstride, *m1 = m0 + 6 * mstride;
		const float *m2 = m1 + 6 * mstride, *m3 = m2 + 6 * mstride;
		const float *m4 = m3 + 6 * mstride, *m5 = m4 + 6 * mstride;
		float *sx = s + (size_t)x * tw;

#pragma omp simd
		for (int j = 0; j < tw; j++) {
			const float a1 = m1[j] + m2[j], b1 = m1[j] - m2[j];
			const float a3 = m3[j] + m4[j], b3 = m3[j] - m4[j];

			sx[0 * 6 * tw + j] = m0[j] + a1 + a3;
			sx[1 * 6 * tw + j] = b1 + 2.0f * b3;
			sx[2 * 6 * tw + j] = a1 + 4.0f * a3;
			sx[3 * 6 * tw + j] = b1 + 8.0f * b3 + m5[j];
		}
	}
	/* Along the rows, one output row at a time: o[4j + q] = Σ_x s[i·6 + x][j] Aᵀ[q][x]. */
	for (int i = 0; i < 4; i++) {
		const int oh = 4 * r + i;
		const float *s0 = s + (size_t)i * 6 * tw, *s1 = s0 + tw, *s2 = s1 + tw;
		const float *s3 = s2 + tw, *s4 = s3 + tw, *s5 = s4 + tw;

		if (oh >= p->hd)
			break;
#pragma omp simd
		for (int j = 0; j < tw; j++) {
			const float a1 = s1[j] + s2[j], b1 = s1[j] - s2[j];
			const float a3 = s3[j] + s4[j], b3 = s3[j] - s4[j];

			o[4 * j + 0] = s0[j] + a1 + a3;
			o[4 * j + 1] = b1 + 2.0f * b3;
			o[4 * j + 2] = a1 + 4.0f * a3;
			o[4 * j + 3] = b1 + 8.0f * b3 + s5[j];
		}
		wg_put_row(p, o, plane + (size_t)oh * p->wd, bias, accumulate);
	}
}

/* The same for F(2,3), Aᵀ rows (1,1,1,0) and (0,1,−1,−1). */
static void wg2_out_row(const struct wg_plan *p, const float *m, size_t mstride, int r,
			float *scratch, float *plane, float bias, int accumulate)
{
	const int tw = p->tw;
	float *s = scratch, *o = scratch + (size_t)2 * 4 * tw;

	for (int x = 0; x < 4; x++) {
		const float *m0 = m + (size_t)x * mstride, *m1 = m0 + 4 * mstride;
		const float *m2 = m1 + 4 * mstride, *m3 = m2 + 4 * mstride;
		float *sx = s + (size_t)x * tw;

#pragma omp simd
		for (int j = 0; j < tw; j++) {
			sx[0 * 4 * tw + j] = m0[j] + m1[j] + m2[j];
			sx[1 * 4 * tw + j] = m1[j] - m2[j] - m3[j];
		}
	}
	for (int i = 0; i < 2; i++) {
		const int oh = 2 * r + i;
		const float *s0 = s + (size_t)i * 4 * tw, *s1 = s0 + tw, *s2 = s1 + tw, *s3 = s2 + tw;

		if (oh >= p->hd)
			break;
#pragma omp simd
		for (int j = 0; j < tw; j++) {
			o[2 * j + 0] = s0[j] + s1[j] + s2[j];
			o[2 * j + 1] = s1[j] - s2[j] - s3[j];
		}
		wg_put_row(p, o, plane + (size_t)oh * p->wd, bias, accumulate);
	}
}

/*
 * dst (n × cd planes) = conv(src, the filters transformed into u), or += when
 * accumulating; bias (cd floats) only when storing, may be NULL. ws: the
 * chunk's V and M, then one scratch slot per thread.
 *
 * One team runs each chunk end to end: the input transforms split by
 * (channel, tile row), the xi independent GEMMs (in column blocks when xi
 * alone does not divide among the threads) each on one thread with OpenBLAS
 * single-threaded, then the output transforms by (channel, tile row). With
 * OpenBLAS's own pool the transforms had to stay serial (they were 30–40 %
 * of a 224² layer); now no second pool competes for the cores.
 */
static void wg_run(const struct wg_plan *p, const float *u, const float *src, const float *bias,
		   float *dst, int accumulate, float *ws)
{
	const int tw = p->tw;
	const int64_t total = (int64_t)p->n * p->th;
	const size_t tmax = (size_t)p->rows * tw;
	const size_t src_plane = (size_t)p->hs * p->wsrc, dst_plane = (size_t)p->hd * p->wd;
	const size_t slot = wg_scratch_floats(p);
	float *v = ws, *m = v + (size_t)p->xi * p->cs * tmax;
	float *scratch = m + (size_t)p->xi * p->cd * tmax;
	int nt = iap_par_threads(2.0 * p->xi * p->cd * p->cs * (double)tmax, IAP_GEMM_GRAIN);

	if (nt > wg_slots())
		nt = wg_slots();
	for (int64_t g0 = 0; g0 < total; g0 += p->rows) {
		const int rows = (int)(total - g0 < p->rows ? total - g0 : p->rows);
		const size_t t = (size_t)rows * tw;
		/* Tile position ξ's matrices: V_ξ = v + ξ·vs (cs × t), M_ξ = m + ξ·ms (cd × t). */
		const size_t vs = (size_t)p->cs * t, ms = (size_t)p->cd * t;
		/* GEMM tasks: xi × q column blocks, q the least that balances the team (or gives ≥ 4 per thread). */
		int q = 1, qb;

		while (nt > 1 && (p->xi * q) % nt && p->xi * q < 4 * nt && (size_t)(q + 1) * 16 <= t)
			q++;
		qb = (int)(((t + (size_t)q - 1) / q + 15) / 16 * 16);
#pragma omp parallel num_threads(nt) if (nt > 1)
		{
			float *sc = scratch;

#ifdef _OPENMP
			sc += (size_t)omp_get_thread_num() * slot;
#endif
#pragma omp for collapse(2) schedule(static)
			for (int c = 0; c < p->cs; c++) {
				for (int k = 0; k < rows; k++) {
					const int64_t g = g0 + k;
					const float *plane = src + ((size_t)(g / p->th) * p->cs + c) * src_plane;
					float *vo = v + (size_t)c * t + (size_t)k * tw;

					if (p->m == 4)
						wg4_in_row(p, plane, (int)(g % p->th), sc, vo, vs);
					else
						wg2_in_row(p, plane, (int)(g % p->th), sc, vo, vs);
				}
			}
#pragma omp for schedule(static)
			for (int task = 0; task < p->xi * q; task++) {
				const int xi = task / q, j0 = (task % q) * qb;
				const int nj = (int)t - j0 < qb ? (int)t - j0 : qb;

				if (nj > 0)
					cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, p->cd, nj, p->cs, 1.0f,
						    u + (size_t)xi * p->cd * p->cs, p->cs, v + (size_t)xi * vs + j0,
						    (int)t, 0.0f, m + (size_t)xi * ms + j0, (int)t);
			}
#pragma omp for collapse(2) schedule(static)
			for (int d = 0; d < p->cd; d++) {
				for (int k = 0; k < rows; k++) {
					const float b = bias ? bias[d] : 0.0f;
					const int64_t g = g0 + k;
					float *plane = dst + ((size_t)(g / p->th) * p->cd + d) * dst_plane;
					const float *mi = m + (size_t)d * t + (size_t)k * tw;

					if (p->m == 4)
						wg4_out_row(p, mi, ms, (int)(g % p->th), sc, plane, b, accumulate);
					else
						wg2_out_row(p, mi, ms, (int)(g % p->th), sc, plane, b, accumulate);
				}
			}
		}
	}
}

void iap_winograd_forward(const struct iap_conv_geom *cg, const float *x, const float *w,
			  const float *b, float *y, float *ws)
{
	struct wg_plan p;
	float *u = ws;

	wg_plan_forward(&p, cg);
	if (p.m == 4)
		wg4_weights(&p, w, 0, u);
	else
		wg2_weights(&p, w, 0, u);
	wg_run(&p, u, x, b, y, 0, u + (size_t)p.xi * p.cd * p.cs);
}

void iap_winograd_backward_input(const struct iap_conv_geom *cg, const float *dy, const float *w,
				 float *dx, float *ws)
{
	struct wg_plan p;
	float *u = ws;

	wg_plan_backward(&p, cg);
	wg2_weights(&p, w, 1, u);
	wg_run(&p, u, dy, NULL, dx, 1, u + (size_t)p.xi * p.cd * p.cs);
}
