/* Atomic output files: temp file in the same directory, fsync, rename. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iaprune/atomic.h>

int iap_atomic_open(struct iap_atomic_file *af, const char *path, struct iap_error *err)
{
	size_t len = strlen(path);
	int fd;

	memset(af, 0, sizeof(*af));
	af->path = strdup(path);
	af->tmp = malloc(len + 16);
	if (!af->path || !af->tmp) {
		free(af->path);
		free(af->tmp);
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
	}
	/* Same directory as the destination, so rename(2) never crosses a file system. */
	snprintf(af->tmp, len + 16, "%s.tmp.XXXXXX", path);
	fd = mkstemp(af->tmp);
	if (fd < 0) {
		int e = errno;

		free(af->path);
		free(af->tmp);
		memset(af, 0, sizeof(*af));
		return iap_error_set(err, IAP_EIO, "%s: cannot create a temporary file: %s", path,
				     strerror(e));
	}
	af->fp = fdopen(fd, "wb");
	if (!af->fp) {
		int e = errno;

		close(fd);
		unlink(af->tmp);
		free(af->path);
		free(af->tmp);
		memset(af, 0, sizeof(*af));
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(e));
	}
	return IAP_OK;
}

static void fsync_parent(const char *path)
{
	char *dir = strdup(path);
	char *slash;
	int fd;

	if (!dir)
		return;
	slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		strcpy(dir, ".");
	fd = open(dir, O_RDONLY | O_DIRECTORY);
	if (fd >= 0) {
		/* Best effort: some file systems refuse fsync on directories. */
		(void)fsync(fd);
		close(fd);
	}
	free(dir);
}

int iap_atomic_commit(struct iap_atomic_file *af, struct iap_error *err)
{
	int rc = IAP_OK;
	int e = 0;

	if (fflush(af->fp) != 0 || ferror(af->fp) || fsync(fileno(af->fp)) != 0)
		e = errno ? errno : EIO;
	if (fclose(af->fp) != 0 && !e)
		e = errno;
	af->fp = NULL;
	if (!e && rename(af->tmp, af->path) != 0)
		e = errno;
	if (e) {
		unlink(af->tmp);
		rc = iap_error_set(err, IAP_EIO, "%s: cannot write: %s", af->path, strerror(e));
	} else {
		fsync_parent(af->path);
	}
	free(af->path);
	free(af->tmp);
	memset(af, 0, sizeof(*af));
	return rc;
}

void iap_atomic_abort(struct iap_atomic_file *af)
{
	if (af->fp)
		fclose(af->fp);
	if (af->tmp)
		unlink(af->tmp);
	free(af->path);
	free(af->tmp);
	memset(af, 0, sizeof(*af));
}
