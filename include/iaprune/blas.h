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
 * set for this process, sets OPENBLAS_CORETYPE to it and execs the running
 * program again with ARGV (through /proc/self/exe). Returns only when nothing
 * was done or the exec failed; the caller goes on either way.
 */
void iap_blas_reexec(char **argv);

#ifdef __cplusplus
}
#endif

#endif /* IAPRUNE_BLAS_H */
