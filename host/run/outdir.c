/*
 * The output folder of a run (see outdir.h). Clean-up happens only after
 * the lock is held: a staging directory in a folder another run holds may be
 * that run's work in progress.
 */
#include "config.h"

#include <stdio.h>

#include <iaprune/atomic.h>
#include <iaprune/generation.h>
#include <iaprune/lock.h>
#include <iaprune/report.h>

#include "outdir.h"

int iap_outdir_prepare(const char *out, int *lock_fd, int *removed, struct iap_error *err)
{
	static const char *const gens[] = { "report", "checkpoints" };
	static const char *const dirs[] = { "", "/cache", "/checkpoints" };
	char path[4096];
	int rc, n;

	*removed = 0;
	*lock_fd = -1;
	rc = iap_mkdir_p(out, err);
	rc = rc ? rc : iap_dir_lock(out, lock_fd, err);
	for (size_t i = 0; !rc && i < sizeof(gens) / sizeof(gens[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", out, gens[i]);
		rc = iap_generation_clean(path, &n, err);
		*removed += n;
	}
	for (size_t i = 0; !rc && i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s%s", out, dirs[i]);
		rc = iap_atomic_clean(path, &n, err);
		*removed += n;
	}
	if (rc) {
		iap_dir_unlock(*lock_fd);
		*lock_fd = -1;
	}
	return rc;
}
