/* The engine's thread count and the work-based split rule (<iaprune/threads.h>). */
#define _GNU_SOURCE
#include "config.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cblas.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <iaprune/threads.h>

#include "../ops/parallel.h"

/* 0 until configured; read from every op, so atomic (set from the main thread, read anywhere). */
static atomic_int threads_n;

int iap_threads_available(void)
{
	cpu_set_t set;

	/* The CPUs this process may use, not the machine's: a container or taskset limit counts. */
	if (sched_getaffinity(0, sizeof(set), &set) == 0) {
		int n = CPU_COUNT(&set);

		if (n > 0)
			return n > IAP_THREADS_MAX ? IAP_THREADS_MAX : n;
	}
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > IAP_THREADS_MAX ? IAP_THREADS_MAX : (int)n;
}

void iap_threads_set(int n)
{
	if (n < 1)
		n = 1;
	if (n > IAP_THREADS_MAX)
		n = IAP_THREADS_MAX;
	atomic_store(&threads_n, n);
	/* One pool: OpenBLAS runs each call on its caller; iap_sgemm() splits products over the team. */
	openblas_set_num_threads(1);
#ifdef _OPENMP
	omp_set_num_threads(n);
#endif
}

int iap_threads_configure(long cli_n, long cfg_n, struct iap_error *err)
{
	const char *env = getenv("IAPRUNE_THREADS");
	long n = 0;

	if (env && *env) {
		char *end;
		long v;

		errno = 0;
		v = strtol(env, &end, 10);
		if (errno || *end || v < 1 || v > IAP_THREADS_MAX)
			return iap_error_set(err, IAP_EINVAL,
					     "IAPRUNE_THREADS: wants a thread count from 1 to %d, not '%s'",
					     IAP_THREADS_MAX, env);
		n = v;
	}
	if (cli_n > 0)
		n = cli_n;
	else if (n <= 0 && cfg_n > 0)
		n = cfg_n;
	if (n <= 0)
		n = iap_threads_available();
	iap_threads_set((int)(n > IAP_THREADS_MAX ? IAP_THREADS_MAX : n));
	return 0;
}

int iap_threads(void)
{
	int n = atomic_load(&threads_n);

	if (n > 0)
		return n;
	/* Library use without configuration: the environment, then every CPU; a bad variable is ignored here. */
	if (iap_threads_configure(0, 0, NULL))
		iap_threads_set(iap_threads_available());
	return atomic_load(&threads_n);
}

int iap_threads_blas(void)
{
	return openblas_get_num_threads();
}

int iap_par_threads(double work, double grain)
{
	int t = iap_threads();
	double n;

#ifdef _OPENMP
	if (t == 1 || omp_in_parallel())
		return 1;
#else
	return 1;
#endif
	n = grain > 0 ? work / grain : (double)t;
	if (!(n >= 2))
		return 1;
	return n < (double)t ? (int)n : t;
}

int iap_par_nt(int64_t n)
{
	return iap_par_threads((double)n, (double)IAP_PAR_GRAIN);
}

void iap_par_zero(float *p, int64_t n)
{
	const int nt = p && n > 0 ? iap_par_nt(n) : 1;
	const int64_t blk = (n + nt - 1) / nt;

	if (!p || n <= 0)
		return;
#pragma omp parallel for schedule(static) num_threads(nt) if (nt > 1)
	for (int t = 0; t < nt; t++) {
		const int64_t lo = t * blk, hi = n - lo < blk ? n : lo + blk;

		if (hi > lo)
			memset(p + lo, 0, (size_t)(hi - lo) * sizeof(float));
	}
}

/* Set by a thread that runs one slice of a batch (host/eval/predict.c); see <iaprune/threads.h>. */
static _Thread_local int plan_whole;

void iap_plan_batch_set(int whole)
{
	plan_whole = whole > 0 ? whole : 0;
}

int iap_plan_batch(int n)
{
	return plan_whole > n ? plan_whole : n;
}
