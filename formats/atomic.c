/* Atomic output files: temp file in the same directory, fsync, rename. */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iaprune/atomic.h>

/*
 * Test-only crash injection: with IAP_TEST_KILL_AT_RENAME=N in the
 * environment the process kills itself (SIGKILL, no clean-up at all) just
 * before its Nth publishing rename, so the kill test can interrupt a run at
 * every point where an output becomes visible. Unset (always, outside the
 * test suite) this costs one getenv per process.
 */
void iap_atomic_kill_point(void)
{
	static long at = -1, count;

	if (at < 0) {
		const char *s = getenv("IAP_TEST_KILL_AT_RENAME");
		char *end;

		at = 0;
		if (s && *s) {
			long v = strtol(s, &end, 10);

			at = *end == '\0' && v > 0 ? v : 0;
		}
	}
	if (at > 0 && ++count == at)
		raise(SIGKILL);
}

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
		return iap_error_set(err, IAP_EWRITE, "%s: cannot create a temporary file: %s", path,
				     strerror(e));
	}
	/* mkstemp makes the file private (0600); outputs get the mode open(2) would give them. */
	{
		mode_t m = umask(022);

		umask(m);
		(void)fchmod(fd, 0666 & ~m);
	}
	af->fp = fdopen(fd, "wb");
	if (!af->fp) {
		int e = errno;

		close(fd);
		unlink(af->tmp);
		free(af->path);
		free(af->tmp);
		memset(af, 0, sizeof(*af));
		return iap_error_set(err, IAP_EWRITE, "%s: %s", path, strerror(e));
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

	/* errno of the write that failed earlier survives: the stream's later calls fail the same way. */
	if (ferror(af->fp))
		e = errno ? errno : EIO;
	errno = 0;
	if (!e && (fflush(af->fp) != 0 || fsync(fileno(af->fp)) != 0))
		e = errno ? errno : EIO;
	if (fclose(af->fp) != 0 && !e)
		e = errno;
	af->fp = NULL;
	if (!e) {
		iap_atomic_kill_point();
		if (rename(af->tmp, af->path) != 0)
			e = errno;
	}
	if (e) {
		unlink(af->tmp);
		rc = iap_error_set(err, IAP_EWRITE, "%s: cannot write: %s", af->path, strerror(e));
	} else {
		fsync_parent(af->path);
	}
	free(af->path);
	free(af->tmp);
	memset(af, 0, sizeof(*af));
	return rc;
}

int iap_atomic_fail(struct iap_atomic_file *af, struct iap_error *err)
{
	int e = errno ? errno : EIO;
	char path[4096];

	snprintf(path, sizeof(path), "%s", af->path ? af->path : "?");
	iap_atomic_abort(af);
	return iap_error_set(err, e == ENOMEM ? IAP_ENOMEM : IAP_EWRITE, "%s: cannot write: %s", path,
			     strerror(e));
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

int iap_atomic_clean(const char *dir, int *removed, struct iap_error *err)
{
	static const char tag[] = ".tmp.";
	struct dirent *de;
	DIR *d = opendir(dir);

	if (removed)
		*removed = 0;
	if (!d)
		return errno == ENOENT ? IAP_OK : iap_error_set(err, IAP_EIO, "%s: %s", dir, strerror(errno));
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		char path[4096];

		/* Exactly what iap_atomic_open makes: NAME.tmp.XXXXXX, and only regular files. */
		if (n < sizeof(tag) + 6 || memcmp(de->d_name + n - 6 - (sizeof(tag) - 1), tag, sizeof(tag) - 1) ||
		    (de->d_type != DT_REG && de->d_type != DT_UNKNOWN))
			continue;
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= sizeof(path))
			continue;
		if (unlink(path) == 0 && removed)
			(*removed)++;
	}
	closedir(d);
	return IAP_OK;
}
