/*
 * Vectorisable exp and normal CDF for the element-wise kernels (library-internal).
 *
 * libm's expf and erf are scalar calls, and at ViT-B/16 sizes they were the
 * cost of GELU and of the attention softmax (55 and 36 ms of a 520 ms
 * forward, bench/NOTES.md). These are straight-line float code with selects
 * instead of branches, so a `#pragma omp simd` loop around them becomes
 * vector code, and IAP_VEC_CLONES builds each kernel for AVX-512, AVX2 and
 * the baseline, picked once when the library is loaded.
 *
 * Accuracy (checked against double-precision libm in tests/test_ops_elem.c):
 * iap_vexpf within 2 ulp over [-87, 88]; iap_vnormcdf within 6e-7 relative
 * everywhere, the far negative tail included (where 1 + erf would cancel).
 */
#ifndef IAP_CORE_OPS_VMATH_H
#define IAP_CORE_OPS_VMATH_H

#include <stdint.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__ELF__)
#define IAP_VEC_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define IAP_VEC_CLONES
#endif

/* Always inlined: a call in the loop body would stop the loop from being vectorised. */
#if defined(__GNUC__)
#define IAP_VINLINE static inline __attribute__((always_inline))
#else
#define IAP_VINLINE static inline
#endif

/*
 * e^x: x = k·ln2 + r with |r| ≤ ln2/2, e^r by its Taylor polynomial to r⁷
 * (truncation below 2e-9), 2^k put straight into the exponent bits. k comes
 * from the 1.5·2²³ rounding trick, which needs no rint call. Below −87.34
 * the result is 0 (float's smallest normal is e^−87.34, no denormals), and
 * above 127.5·ln2 ≈ 88.376 it is +inf (so a few finite values of e^x near
 * FLT_MAX are not reached: the callers take x ≤ 0); a NaN stays NaN.
 */
IAP_VINLINE float iap_vexpf(float x)
{
	const float big = 12582912.0f; /* 1.5·2²³: adding it rounds to an integer */
	float xc = x < -87.336544f ? -87.336544f : (x > 88.3762626f ? 88.3762626f : x);
	/* A NaN would reach the float → int conversion below (undefined); it is put back at the end. */
	xc = xc == xc ? xc : 0.0f;
	float t = xc * 1.44269504088896341f + big;
	float k = t - big;
	/* ln 2 split in two so k·ln2_hi is exact for |k| < 2¹² */
	float r = (xc - k * 0.693145751953125f) - k * 1.428606765330187e-06f;
	float p = 1.0f / 5040.0f;
	int32_t ki = (int32_t)k, bits;
	float scale;

	p = p * r + 1.0f / 720.0f;
	p = p * r + 1.0f / 120.0f;
	p = p * r + 1.0f / 24.0f;
	p = p * r + 1.0f / 6.0f;
	p = p * r + 0.5f;
	p = p * r + 1.0f;
	p = p * r + 1.0f;
	bits = (ki + 127) << 23;
	memcpy(&scale, &bits, sizeof(scale));
	p *= scale;
	/* The clamp kept k in range; the ends are put back here. */
	p = x < -87.336544f ? 0.0f : p;
	p = x > 88.3762626f ? __builtin_inff() : p;
	return x != x ? x : p;
}

/*
 * e^(−x²/2 + c), accurate where x²/2 is large. A float holding x²/2 = 32
 * (x = 8) is off by up to 2e-6, which the exponential turns into a 2e-6
 * relative error. So x is split into a head of 12 significant bits, whose
 * square is exact, and the rest:
 * e^(−x²/2 + c) = e^(−head²/2) · e^(c − (2·head + rest)·rest/2).
 */
IAP_VINLINE float iap_vgauss(float x, float c)
{
	float ax = x < 0.0f ? -x : x, head, rest;
	uint32_t bits;

	/* Beyond 20 the result is 0 anyway (e^−200); an infinity would make head − head a NaN. */
	ax = ax > 20.0f ? 20.0f : ax;

	memcpy(&bits, &ax, sizeof(bits));
	bits &= 0xfffff000u;
	memcpy(&head, &bits, sizeof(head));
	rest = ax - head;
	return iap_vexpf(-0.5f * head * head) * iap_vexpf(c - 0.5f * (2.0f * head + rest) * rest);
}

/*
 * Φ(x), the standard normal CDF, through erfc(z) for z = |x|/√2 ≥ 0 in the
 * Chebyshev-fitted form erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2), whose
 * fractional error is below 1.2e-7 for every z ≥ 0 (Press et al., Numerical
 * Recipes, §6.2). Φ(x) = erfc(z)/2 for x < 0 keeps full relative accuracy in
 * the tail; Φ(x) = 1 − erfc(z)/2 for x ≥ 0. e^(−z²) = e^(−x²/2) is
 * iap_vgauss's.
 */
IAP_VINLINE float iap_vnormcdf(float x)
{
	float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
	float t = 1.0f / (1.0f + 0.5f * z);
	float p = 0.17087277f, half_erfc;

	p = p * t - 0.82215223f;
	p = p * t + 1.48851587f;
	p = p * t - 1.13520398f;
	p = p * t + 0.27886807f;
	p = p * t - 0.18628806f;
	p = p * t + 0.09678418f;
	p = p * t + 0.37409196f;
	p = p * t + 1.00002368f;
	p = p * t - 1.26551223f;
	half_erfc = 0.5f * t * iap_vgauss(x, p);
	return x < 0.0f ? half_erfc : 1.0f - half_erfc;
}

#endif
