/* Output folder lock (see host/include/iaprune/lock.h). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include <iaprune/lock.h>

int iap_dir_lock(const char *folder, int *fd, struct iap_error *err)
{
	char path[4096], text[32];
	int n, lfd;

	*fd = -1;
	if ((size_t)snprintf(path, sizeof(path), "%s/%s", folder, IAP_LOCK_FILE) >= sizeof(path))
		return iap_error_set(err, IAP_EINVAL, "%s: path too long", folder);
	lfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0666);
	if (lfd < 0)
		return iap_error_set(err, IAP_EWRITE, "%s: cannot create the lock file: %s", path, strerror(errno));
	if (flock(lfd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		long pid = 0;

		if (e == EWOULDBLOCK) {
			/* The holder wrote its pid after locking; it may still be writing it. */
			n = (int)pread(lfd, text, sizeof(text) - 1, 0);
			if (n > 0) {
				text[n] = '\0';
				pid = strtol(text, NULL, 10);
			}
			close(lfd);
			if (pid > 0)
				return iap_error_set(err, IAP_EBUSY,
						     "%s: output folder in use by another iaprune (pid %ld); wait for it "
						     "to finish or choose another 'output'", folder, pid);
			return iap_error_set(err, IAP_EBUSY,
					     "%s: output folder in use by another iaprune; wait for it to finish or "
					     "choose another 'output'", folder);
		}
		close(lfd);
		return iap_error_set(err, IAP_EWRITE, "%s: cannot lock: %s", path, strerror(e));
	}
	n = snprintf(text, sizeof(text), "%ld\n", (long)getpid());
	/* The pid is only for the message: a failure to record it does not stop the run. */
	if (ftruncate(lfd, 0) == 0)
		(void)!pwrite(lfd, text, (size_t)n, 0);
	*fd = lfd;
	return IAP_OK;
}

void iap_dir_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}
