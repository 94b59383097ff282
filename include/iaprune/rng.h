/*
 * iaprune — a small seeded random number generator (xoshiro256** seeded by
 * splitmix64), so every random choice (dropout, samplers, random pruning,
 * augmentation) is reproducible from one seed on every platform.
 */
#ifndef IAPRUNE_RNG_H
#define IAPRUNE_RNG_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iap_rng {
	uint64_t s[4];
};

void iap_rng_seed(struct iap_rng *r, uint64_t seed);
uint64_t iap_rng_next(struct iap_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float iap_rng_uniform(struct iap_rng *r);
/* Uniform integer in [0, n) without modulo bias (n > 0). */
uint64_t iap_rng_below(struct iap_rng *r, uint64_t n);
/* Standard normal (Box–Muller). */
double iap_rng_normal(struct iap_rng *r);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_RNG_H */
