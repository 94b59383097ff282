/* Reading input files whole (see file.h): one place for open/fstat/limit/read. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "file.h"

int iap_file_open(const char *path, int *fd, struct stat *st, struct iap_error *err)
{
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0)
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(errno));
	if (fstat(*fd, st) < 0) {
		int e = errno;

		close(*fd);
		*fd = -1;
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(e));
	}
	if (!S_ISREG(st->st_mode)) {
		close(*fd);
		*fd = -1;
		return iap_error_set(err, IAP_EIO, "%s: not a regular file", path);
	}
	return IAP_OK;
}

int iap_file_read(const char *path, size_t limit, const char *what, unsigned char **buf, size_t *len,
		  struct iap_error *err)
{
	struct stat st;
	size_t size, got = 0;
	int fd, rc = iap_file_open(path, &fd, &st, err);

	*buf = NULL;
	*len = 0;
	if (rc)
		return rc;
	if ((uint64_t)st.st_size > limit) {
		rc = iap_error_set(err, IAP_ELIMIT, "%s: %s too large (%lld bytes; limit %zu)", path, what,
				   (long long)st.st_size, limit);
		goto out_close;
	}
	size = (size_t)st.st_size;
	*buf = malloc(size ? size : 1);
	if (!*buf) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
		goto out_close;
	}
	while (got < size) {
		ssize_t n = read(fd, *buf + got, size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(errno));
			free(*buf);
			*buf = NULL;
			goto out_close;
		}
		if (n == 0)
			break;  /* shrank under us: the caller's parser will say truncated */
		got += (size_t)n;
	}
	*len = got;
out_close:
	close(fd);
	return rc;
}
