/*
 * xoshiro256** (Blackman & Vigna) seeded through splitmix64: small, fast and
 * the same sequence on every platform, so seeds in a pipeline reproduce runs.
 */
#include "config.h"

#include <math.h>

#include <iaprune/rng.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

void iap_rng_seed(struct iap_rng *r, uint64_t seed)
{
	uint64_t x = seed;

	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&x);
}

uint64_t iap_rng_next(struct iap_rng *r)
{
	uint64_t *s = r->s;
	const uint64_t result = rotl(s[1] * 5, 7) * 9;
	const uint64_t t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

float iap_rng_uniform(struct iap_rng *r)
{
	return (float)(iap_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

uint64_t iap_rng_below(struct iap_rng *r, uint64_t n)
{
	/* Rejection sampling: drop the top partial range so every value is equally likely. */
	uint64_t limit = UINT64_MAX - UINT64_MAX % n;
	uint64_t v;

	do
		v = iap_rng_next(r);
	while (v >= limit);
	return v % n;
}

double iap_rng_normal(struct iap_rng *r)
{
	double u1, u2;

	do
		u1 = (double)(iap_rng_next(r) >> 11) * 0x1.0p-53;
	while (u1 <= 0.0);
	u2 = (double)(iap_rng_next(r) >> 11) * 0x1.0p-53;
	return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}
