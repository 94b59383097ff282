/* Which OpenBLAS kernel set runs, the re-exec that fixes a misdetection, and products split over the threads (<iaprune/blas.h>). */
#include "config.h"

#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

#include <iaprune/blas.h>
#include <iaprune/threads.h>

unsigned iap_cpu_features(void)
{
	unsigned f = 0;

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		f |= IAP_CPU_AVX2;
	if ((f & IAP_CPU_AVX2) && __builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
		f |= IAP_CPU_AVX512;
#endif
	return f;
}

const char *iap_blas_core(void)
{
	const char *name = openblas_get_corename();

	return name ? name : "unknown";
}

const char *iap_blas_better_core(const char *detected, unsigned features)
{
	/* OpenBLAS's x86 kernel sets older than AVX2: what it falls back to for a model it does not know. */
	static const char *const old[] = { "unknown", "prescott", "core2", "penryn", "dunnington",
					   "nehalem", "atom", "sandybridge", "katmai", "coppermine",
					   "northwood", "banias", "opteron", "barcelona", "bobcat" };
	int is_old = 0;

	if (!detected)
		return NULL;
	for (size_t i = 0; i < sizeof(old) / sizeof(old[0]); i++)
		if (strcasecmp(detected, old[i]) == 0)
			is_old = 1;
	if (!is_old)
		return NULL;
	if (features & IAP_CPU_AVX512)
		return "SkylakeX";
	if (features & IAP_CPU_AVX2)
		return "Haswell";
	return NULL;
}

/*
 * How long an idle OpenMP thread spins before it sleeps (libgomp's
 * GOMP_SPINCOUNT, read once when libgomp loads). libgomp's default, 300000
 * pauses (milliseconds), is right on an idle machine and ruinous on a busy
 * one: ResNet50's batch-1 forward on two threads took 1103–1811 ms against
 * 101 ms on one thread while other jobs held a core, because the spinning
 * worker took the master's core. Too short a spin costs a sleep and a
 * wake-up at nearly every gap between two parallel loops: with 1000 pauses
 * the same forward on an idle 2-core Xeon made ~250 context switches per
 * pass and took 71–88 ms, with 10000 ~35 and 59–67 ms (100000: 54–71 ms);
 * under two busy-looping jobs 10000 was no worse than 1000 (166–198 against
 * 162–204 ms) and 30000 was (149–331 ms). bench/NOTES.md has the runs.
 */
#define IAP_GOMP_SPINCOUNT "10000"

void iap_blas_reexec(char **argv)
{
	const char *better;
	int core = 0, spin = 0;

	if (!argv || !argv[0])
		return;
	better = getenv("OPENBLAS_CORETYPE") ? NULL : iap_blas_better_core(iap_blas_core(), iap_cpu_features());
	/* Set before the exec, so the new image's libraries read them, and the loop cannot recur. */
	if (better && setenv("OPENBLAS_CORETYPE", better, 1) == 0)
		core = 1;
	if (!getenv("GOMP_SPINCOUNT") && !getenv("OMP_WAIT_POLICY") &&
	    setenv("GOMP_SPINCOUNT", IAP_GOMP_SPINCOUNT, 1) == 0)
		spin = 1;
	if (!core && !spin)
		return;
	execv("/proc/self/exe", argv);
	/* No /proc, or the binary is gone: go on with what we have. */
	if (core)
		unsetenv("OPENBLAS_CORETYPE");
	if (spin)
		unsetenv("GOMP_SPINCOUNT");
}

/*
 * len split in parts, each block rounded up to 16 (why: iap_sgemm); 0 when
 * that leaves a part empty or a part would be under 16 before rounding.
 */
static int block16(int len, int parts)
{
	const int share = (len + parts - 1) / parts, blk = (share + 15) / 16 * 16;

	if (parts > 1 && (share < 16 || (len + blk - 1) / blk < parts))
		return 0;
	return blk;
}

/*
 * The grid for an m×n product on p threads: pm row blocks × pn column
 * blocks, pm·pn = p. Each thread packs its rows of A (mb·k) and its columns
 * of B (k·nb), so the grid that minimises mb + nb moves the least memory;
 * blocks under 16 rows or columns are not worth a thread. Also the block
 * sizes (mb, nb) the grid gives; 1 × 1 when no split applies.
 */
static void gemm_grid(int m, int n, int p, int *pm, int *pn, int *mb, int *nb)
{
	int best = -1;

	*pm = *pn = 1;
	*mb = m;
	*nb = n;
	for (int i = 1; i <= p; i++) {
		const int j = p / i, bm = block16(m, i), bn = block16(n, j);

		if (p % i || !bm || !bn)
			continue;
		if (best < 0 || bm + bn < best) {
			best = bm + bn;
			*pm = i;
			*pn = j;
			*mb = bm;
			*nb = bn;
		}
	}
}

void iap_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
	       const float *b, int ldb, float beta, float *c, int ldc)
{
	const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans;
	const enum CBLAS_TRANSPOSE tb = trans_b ? CblasTrans : CblasNoTrans;
	int p = m > 0 && n > 0 ? iap_par_threads(2.0 * m * n * (k > 0 ? k : 1), IAP_GEMM_GRAIN) : 1;
	int pm, pn, mb, nb;

	if (p > 1)
		gemm_grid(m, n, p, &pm, &pn, &mb, &nb);
	if (p <= 1 || pm * pn <= 1) {
		cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
		return;
	}
	/*
	 * Blocks start at multiples of 16 rows and 16 columns: OpenBLAS's
	 * kernels walk C in fixed-width strips with other code for the leftover
	 * rows and columns, and that code may sum in another order (ViT's q/k/v
	 * product, 771 × 384 × 128, split into three row blocks of 257 under
	 * the Prescott kernels, gave other bits than the whole product). From a
	 * multiple of 16, every strip and the leftover of the last block are those
	 * of the whole product, so the bits do not depend on the split. (Not with
	 * the Haswell and Zen kernels, which sum a block in an order set by its
	 * size: there the split agrees to rounding only; tests/util/testutil.h.)
	 * Columns in whole cache lines of C also keep two threads from writing
	 * one line. (gemm_grid chose mb and nb so.)
	 */
#pragma omp parallel for schedule(static) num_threads(pm * pn)
	for (int blk = 0; blk < pm * pn; blk++) {
		int i0 = (blk / pn) * mb, j0 = (blk % pn) * nb;
		int mi = m - i0 < mb ? m - i0 : mb, nj = n - j0 < nb ? n - j0 : nb;
		const float *ab, *bb;

		if (mi <= 0 || nj <= 0)
			continue;
		ab = trans_a ? a + i0 : a + (size_t)i0 * lda;
		bb = trans_b ? b + (size_t)j0 * ldb : b + j0;
		cblas_sgemm(CblasRowMajor, ta, tb, mi, nj, k, alpha, ab, lda, bb, ldb, beta,
			    c + (size_t)i0 * ldc + j0, ldc);
	}
}

/* Matrix–vector products stream A once: split when each thread reads ≥ 8 grains (1 MB) of it. */
#define GEMV_GRAIN (8 * IAP_PAR_GRAIN)

void iap_sgemv(int trans, int m, int n, float alpha, const float *a, int lda, const float *x, float beta,
	       float *y)
{
	int p = iap_par_threads((double)m * n, (double)GEMV_GRAIN);
	int len = trans ? n : m, blk;

	if (p <= 1 || len < 32 * p) {
		cblas_sgemv(CblasRowMajor, trans ? CblasTrans : CblasNoTrans, m, n, alpha, a, lda, x, 1, beta, y, 1);
		return;
	}
	blk = ((len + p - 1) / p + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(p)
	for (int t = 0; t < p; t++) {
		int i0 = t * blk, cnt = len - i0 < blk ? len - i0 : blk;

		if (cnt <= 0)
			continue;
		if (trans)   /* y[i0..] = A[:, i0..]ᵀ x */
			cblas_sgemv(CblasRowMajor, CblasTrans, m, cnt, alpha, a + i0, lda, x, 1, beta, y + i0, 1);
		else
			cblas_sgemv(CblasRowMajor, CblasNoTrans, cnt, n, alpha, a + (size_t)i0 * lda, lda, x, 1,
				    beta, y + i0, 1);
	}
}

void iap_sger(int m, int n, float alpha, const float *x, const float *y, float *a, int lda)
{
	int p = iap_par_threads((double)m * n, (double)GEMV_GRAIN);
	int blk;

	if (p <= 1 || m < 8 * p) {
		cblas_sger(CblasRowMajor, m, n, alpha, x, 1, y, 1, a, lda);
		return;
	}
	blk = (m + p - 1) / p;
#pragma omp parallel for schedule(static) num_threads(p)
	for (int t = 0; t < p; t++) {
		int i0 = t * blk, cnt = m - i0 < blk ? m - i0 : blk;

		if (cnt > 0)
			cblas_sger(CblasRowMajor, cnt, n, alpha, x + i0, 1, y, 1, a + (size_t)i0 * lda, lda);
	}
}
