/*
 * The BLAS underneath: which OpenBLAS kernel set runs, and the fix for a
 * known misdetection.
 *
 * OpenBLAS builds with DYNAMIC_ARCH pick their kernels from the CPU model
 * number. Releases before 0.3.22 do not know recent Intel models (Sapphire
 * and Emerald Rapids report family 6, models 143 and 207) and fall back to
 * the SSE3 "Prescott" kernels even when the CPU has AVX-512: sgemm then runs
 * at about a third of what the machine can do. The kernel set is chosen once,
 * when the library is loaded, from the OPENBLAS_CORETYPE environment
 * variable or the model; it cannot be changed afterwards. A program that
 * wants the right kernels therefore sets the variable and starts again:
 * iap_blas_reexec() does exactly that, and only when the variable is unset
 * and the detected set is an older one than the CPU's features allow.
 */
#ifndef IAPRUNE_BLAS_H
#define IAPRUNE_BLAS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Instruction-set features that decide the kernel set. */
enum iap_cpu_feature {
	IAP_CPU_AVX2 = 1u << 0,    /* AVX2 and FMA */
	IAP_CPU_AVX512 = 1u << 1,  /* AVX-512 F, CD, BW, DQ and VL */
};

/* This CPU's features (a mask of enum iap_cpu_feature). */
unsigned iap_cpu_features(void);

/* The kernel set OpenBLAS uses in this process, as it names it ("Haswell"). */
const char *iap_blas_core(void);

/*
 * The kernel set to ask for instead of DETECTED on a CPU with FEATURES, or
 * NULL when DETECTED is already right: "SkylakeX" for AVX-512, "Haswell" for
 * AVX2, and only when DETECTED is one of OpenBLAS's pre-AVX2 sets.
 */
const char *iap_blas_better_core(const char *detected, unsigned features);

/*
 * When OPENBLAS_CORETYPE is unset and iap_blas_better_core() names a better
 * set for this process, sets OPENBLAS_CORETYPE to it; when neither
 * GOMP_SPINCOUNT nor OMP_WAIT_POLICY is set, sets GOMP_SPINCOUNT to a short
 * spin (idle OpenMP threads sleep after tens of µs instead of ~1 ms, so a
 * busy machine does not lose a core to them). If it set either, execs the
 * running program again with ARGV (through /proc/self/exe): both are read
 * only when the libraries load. Returns only when nothing was done or the
 * exec failed; the caller goes on either way.
 */
void iap_blas_reexec(char **argv);

/*
 * Products split over the engine's threads (<iaprune/threads.h>): OpenBLAS
 * runs each block on the calling thread. Row-major, CBLAS argument order;
 * TRANS_A / TRANS_B are 0 (as stored) or 1 (transposed). A product with less
 * than IAP_GEMM_GRAIN flops per thread, or one called inside a parallel
 * region, is one OpenBLAS call. The split is a grid of row blocks × column
 * blocks chosen so each thread packs as little of A and B as it can; every
 * element of C is still one dot product over the whole of K, so the result
 * does not depend on the thread count beyond the kernel's own blocking.
 */
void iap_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *a, int lda,
	       const float *b, int ldb, float beta, float *c, int ldc);

/* y = alpha·op(A)·x + beta·y, A m×n row-major, unit strides; split over rows (or columns when TRANS). */
void iap_sgemv(int trans, int m, int n, float alpha, const float *a, int lda, const float *x, float beta,
	       float *y);

/* A += alpha·x·yᵀ, A m×n row-major, unit strides; split over rows. */
void iap_sger(int m, int n, float alpha, const float *x, const float *y, float *a, int lda);

#ifdef __cplusplus
}
#endif

#endif /* IAPRUNE_BLAS_H */
