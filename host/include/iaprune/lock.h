/*
 * iaprune — one writer per output folder. A run holds an exclusive flock(2)
 * on <folder>/.lock from start to end; a second run on the same folder is
 * refused at once with the first one's process id, instead of both writing
 * (and one evaluating the other's model). The kernel drops the lock when the
 * process ends, however it ends, so a crash never leaves a stale lock.
 */
#ifndef IAPRUNE_LOCK_H
#define IAPRUNE_LOCK_H

#include <iaprune/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The lock file's name inside the folder. */
#define IAP_LOCK_FILE ".lock"

/*
 * Lock folder (which must exist) for writing; *fd receives the descriptor to
 * pass to iap_dir_unlock. IAP_EBUSY, naming the holder's pid, when another
 * process holds it.
 */
int iap_dir_lock(const char *folder, int *fd, struct iap_error *err);

/* Release a lock taken by iap_dir_lock (fd < 0: nothing). */
void iap_dir_unlock(int fd);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_LOCK_H */
