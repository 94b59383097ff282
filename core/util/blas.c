/* Which OpenBLAS kernel set runs, and the re-exec that fixes a misdetection (<iaprune/blas.h>). */
#include "config.h"

#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <cblas.h>

#include <iaprune/blas.h>

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

void iap_blas_reexec(char **argv)
{
	const char *better;

	if (!argv || !argv[0] || getenv("OPENBLAS_CORETYPE"))
		return;
	better = iap_blas_better_core(iap_blas_core(), iap_cpu_features());
	if (!better)
		return;
	/* Set before the exec, so the new image's OpenBLAS reads it, and the loop cannot recur. */
	if (setenv("OPENBLAS_CORETYPE", better, 1) != 0)
		return;
	execv("/proc/self/exe", argv);
	/* No /proc, or the binary is gone: go on with the kernels we have. */
	unsetenv("OPENBLAS_CORETYPE");
}
