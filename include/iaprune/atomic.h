/*
 * iaprune — atomic output files. Every report, weights file and cache is
 * written to a temporary file in the destination's directory, flushed to
 * disk, then renamed over the destination: a reader sees the old file or the
 * new one, never half of one, and a failed or killed run leaves the old one.
 */
#ifndef IAPRUNE_ATOMIC_H
#define IAPRUNE_ATOMIC_H

#include <stdio.h>

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iap_atomic_file {
	FILE *fp;        /* write here */
	char *path;      /* final name */
	char *tmp;       /* temporary name in the same directory */
};

/* Create the temporary file for `path`. */
int iap_atomic_open(struct iap_atomic_file *af, const char *path, struct iap_error *err);

/* Flush, fsync, close and rename into place (then fsync the directory). Frees af. */
int iap_atomic_commit(struct iap_atomic_file *af, struct iap_error *err);

/*
 * After a write to af->fp failed: abort (as iap_atomic_abort) and return
 * IAP_EWRITE with "<path>: cannot write: <strerror(errno)>", so a full disk
 * says "No space left on device". Call it before anything else touches errno.
 */
int iap_atomic_fail(struct iap_atomic_file *af, struct iap_error *err);

/*
 * Called just before every rename that publishes an output (atomic files,
 * generation directories). Test-only: with IAP_TEST_KILL_AT_RENAME=N set it
 * sends the process SIGKILL at the Nth call; otherwise it does nothing.
 */
void iap_atomic_kill_point(void);

/* Close and remove the temporary file; the destination is untouched. Frees af. */
void iap_atomic_abort(struct iap_atomic_file *af);

/*
 * Remove the temporary files killed writers left in dir (NAME.tmp.XXXXXX).
 * Only while no other process writes there (hold the folder's lock).
 * *removed (may be NULL) counts them.
 */
int iap_atomic_clean(const char *dir, int *removed, struct iap_error *err);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_ATOMIC_H */
