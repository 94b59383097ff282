/* Small helpers shared by the unit tests (not part of the library). */
#ifndef IAP_TESTUTIL_H
#define IAP_TESTUTIL_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/graph.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/rng.h>

/* Fill p[0..n) with uniform values in [lo, hi). */
void tu_fill_uniform(float *p, size_t n, struct iap_rng *r, float lo, float hi);

/*
 * Give every parameter of g random values: trainable ones uniform in
 * [-scale, scale), BatchNorm running means in [-0.5, 0.5) and running
 * variances in [0.5, 1.5) (so normalisation stays well conditioned).
 */
void tu_randomize_params(struct iap_graph *g, uint64_t seed, float scale);

/* A [d0, d1, ...] tensor (ndim values follow), uniform in [-1, 1) from seed; aborts on failure. */
struct iap_tensor tu_rand_tensor(uint64_t seed, int ndim, ...);

/* Largest |a[i] - b[i]| and its index. */
double tu_max_abs_diff(const float *a, const float *b, size_t n, size_t *where);

/*
 * 1 when the BLAS kernels this process runs give iap_sgemm's split products
 * the bits of the whole product, 0 when they sum a block differently by its
 * size. Probed once (1 against 2 and 3 threads on shapes that differed):
 * OpenBLAS's SkylakeX, Cooperlake, SandyBridge and Prescott kernels keep the
 * bits, its Haswell and Zen kernels do not. The library promises the same
 * bits on any thread count only where the kernels allow it, results within
 * float rounding everywhere.
 */
int tu_blas_split_exact(void);

/*
 * Whether got (a run on more threads) matches ref (one thread): the same
 * bits when tu_blas_split_exact(), else max |got - ref| within tol of ref's
 * largest magnitude. Prints the difference, labelled with what, as a TAP
 * comment; 1 when it matches.
 */
int tu_thread_match(const float *ref, const float *got, size_t n, double tol, const char *what);

/*
 * A registry holding dir/NAME.so for each of the n names, or NULL after
 * printing the first load error on stderr.
 */
struct iap_registry *tu_registry_load(const char *dir, const char *const *names, int n);

#endif
