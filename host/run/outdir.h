/* The output folder of a run: one writer, no leftovers (library-internal; see outdir.c). */
#ifndef IAP_CORE_RUN_OUTDIR_H
#define IAP_CORE_RUN_OUTDIR_H

#include <iaprune/error.h>

/*
 * Create out, lock it for this process (*lock_fd; IAP_EBUSY naming the other
 * process when it is taken) and remove what interrupted runs left there:
 * staging directories of the report and the checkpoints, temporary files
 * of atomic writes. *removed counts them.
 */
int iap_outdir_prepare(const char *out, int *lock_fd, int *removed, struct iap_error *err);

#endif
