/*
 * How many threads the engine uses, and the one pool that runs them.
 *
 * Threading model: the OpenMP team is the only pool. OpenBLAS is told to
 * run every call on the calling thread (openblas_set_num_threads(1)) and
 * the engine partitions large matrix products itself across the team
 * (iap_sgemm(), <iaprune/blas.h>), so a GEMM, the element-wise loop after
 * it and the Winograd transforms around it run on the same threads. Two
 * pools busy at once (OpenMP threads started while OpenBLAS's pthread
 * workers still spin after a product) cost ResNet50 up to 2× on two cores
 * (bench/NOTES.md); with one pool that cannot happen.
 *
 * A loop or product uses more than one thread only when each thread gets
 * at least a grain of work (iap_par_threads()), so the split scales with
 * the thread count instead of switching on at a size tuned for one machine.
 */
#ifndef IAPRUNE_THREADS_H
#define IAPRUNE_THREADS_H

#include <stdint.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The largest thread count accepted anywhere (CLI, environment, pipeline). */
#define IAP_THREADS_MAX 1024

/*
 * Element-wise work per thread below which a loop does not split: 32k
 * floats (128 KB read and written, some 10 µs of memory traffic) against a
 * fork/join of a warm team of about 1–5 µs.
 */
#define IAP_PAR_GRAIN ((int64_t)1 << 15)

/* Floating-point operations per thread below which a product does not split (~50 µs of sgemm). */
#define IAP_GEMM_GRAIN ((double)(1 << 23))

/* CPUs this process may run on (sched_getaffinity), at least 1. */
int iap_threads_available(void);

/* The thread count in use; the first call applies the default (iap_threads_configure(0, 0)). */
int iap_threads(void);

/*
 * Sets the thread count, in this order of precedence: CLI_N when > 0 (the
 * --threads option), else IAPRUNE_THREADS when set, else CFG_N when > 0
 * (the pipeline's threads: key), else iap_threads_available(). A malformed
 * IAPRUNE_THREADS (not an integer from 1 to IAP_THREADS_MAX) is IAP_EINVAL,
 * naming the variable, and nothing changes. Applies the count to OpenMP and
 * puts OpenBLAS on one thread per call. Returns 0 or an error code.
 */
int iap_threads_configure(long cli_n, long cfg_n, struct iap_error *err);

/* Sets the thread count directly (1..IAP_THREADS_MAX; others are clamped); tests and benchmarks. */
void iap_threads_set(int n);

/* The threads OpenBLAS itself runs a call on (1 under this model). */
int iap_threads_blas(void);

/*
 * Threads for a piece of work of WORK units that wants at least GRAIN units
 * per thread: min(iap_threads(), WORK / GRAIN), at least 1; 1 when already
 * inside a parallel region (no nesting).
 */
int iap_par_threads(double work, double grain);

/* iap_par_threads(n, IAP_PAR_GRAIN): for memory-bound loops over N elements. */
int iap_par_nt(int64_t n);

/* p[0..n) = 0, split over the threads like any memory-bound loop (a tensor's zeroing is no serial step). */
void iap_par_zero(float *p, int64_t n);

/*
 * The batch an op chooses its algorithm for. A few choices depend on the
 * batch size (Winograd needs enough tiles, a one-row linear layer is a
 * matrix-vector product), and each algorithm rounds differently. When a
 * batch is evaluated as slices on several threads at once (host/eval),
 * each thread declares the whole batch's size here, so every slice is
 * computed exactly as it would be inside the whole batch: the result does
 * not depend on how the batch was split. Per thread; 0 (the default)
 * means the op's own batch.
 */
void iap_plan_batch_set(int whole);

/* max(n, the declared whole batch): the size to choose the algorithm for. */
int iap_plan_batch(int n);

#ifdef __cplusplus
}
#endif

#endif /* IAPRUNE_THREADS_H */
