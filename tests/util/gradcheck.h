/*
 * Finite-difference gradient checks for graphs built with the core builders.
 *
 * gc_check_graph draws a random input x and a random upstream vector s, and
 * takes L(x, θ) = Σ s ⊙ f(x; θ) (accumulated in double). The gradient rule
 * set's dL/dx and dL/dθ are compared with central differences
 * (L(v + ε) − L(v − ε)) / 2ε for up to max_checks entries of the input and of
 * every trainable parameter. An entry passes when
 *     |analytic − numeric| ≤ atol + rtol · max(|analytic|, |numeric|).
 * The graph is re-seeded before every forward so training-mode dropout draws
 * the same mask each time.
 */
#ifndef IAP_GRADCHECK_H
#define IAP_GRADCHECK_H

#include <stdint.h>

#include <iaprune/graph.h>

struct gc_opts {
	int batch;          /* samples in x (default 2) */
	uint64_t seed;      /* input, upstream and index choice (default 1) */
	double eps;         /* default 1e-2 */
	double rtol;        /* default 1e-2 */
	double atol;        /* default 1e-3 */
	int max_checks;     /* entries per tensor (default 48) */
	int skip_input;     /* do not check dL/dx */
	int skip_params;    /* do not check dL/dθ */
	float in_lo, in_hi; /* input range (default [-1, 1)) */
};

/*
 * Returns the number of entries that failed (each printed to stderr with the
 * tensor name, index, analytic and numeric values), or -1 if the graph could
 * not be run (message printed).
 */
int gc_check_graph(struct iap_graph *g, const struct gc_opts *opts);

#endif
