/*
 * Generation directories (see host/include/iaprune/generation.h): stage a whole
 * directory next to the visible one, then publish it with one rename.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <iaprune/atomic.h>
#include <iaprune/generation.h>

/* Split path into its parent folder and last component (both new strings). */
static int split(const char *path, char **parent, char **base, struct iap_error *err)
{
	size_t len = strlen(path);
	const char *slash;

	while (len > 1 && path[len - 1] == '/')
		len--;
	*parent = *base = NULL;
	if (len == 0)
		return iap_error_set(err, IAP_EINVAL, "empty directory name");
	slash = memrchr(path, '/', len);
	if (slash) {
		*parent = strndup(path, slash == path ? 1 : (size_t)(slash - path));
		*base = strndup(slash + 1, len - (size_t)(slash + 1 - path));
	} else {
		*parent = strdup(".");
		*base = strndup(path, len);
	}
	if (!*parent || !*base) {
		free(*parent);
		free(*base);
		*parent = *base = NULL;
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
	}
	if (!**base || !strcmp(*base, ".") || !strcmp(*base, "..")) {
		free(*parent);
		free(*base);
		*parent = *base = NULL;
		return iap_error_set(err, IAP_EINVAL, "%s: not a directory name a generation can replace", path);
	}
	return IAP_OK;
}

static char *fmt_path(const char *parent, const char *base, const char *tag)
{
	size_t n = strlen(parent) + strlen(base) + strlen(tag) + 16;
	char *s = malloc(n);

	if (s)
		snprintf(s, n, "%s/.%s.%s.XXXXXX", parent, base, tag);
	return s;
}

static void fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);

	if (fd >= 0) {
		/* Best effort: some file systems refuse fsync on directories. */
		(void)fsync(fd);
		close(fd);
	}
}

/* The process's umask (read by setting it back at once; the runner is single-threaded here). */
static mode_t current_umask(void)
{
	mode_t m = umask(022);

	umask(m);
	return m;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path) != 0 && errno != ENOENT ? -1 : 0;
}

int iap_remove_tree(const char *path, struct iap_error *err)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? IAP_OK
				       : iap_error_set(err, IAP_EWRITE, "%s: %s", path, strerror(errno));
	/* Depth first, never following links: a link in a stage removes the link, not its target. */
	if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return iap_error_set(err, IAP_EWRITE, "%s: cannot remove: %s", path, strerror(errno));
	return IAP_OK;
}

int iap_generation_begin(struct iap_generation *gen, const char *dir, struct iap_error *err)
{
	char *parent, *base;
	int rc = split(dir, &parent, &base, err);

	memset(gen, 0, sizeof(*gen));
	if (rc)
		return rc;
	gen->dir = strdup(dir);
	gen->stage = fmt_path(parent, base, "new");
	free(parent);
	free(base);
	if (!gen->dir || !gen->stage) {
		iap_generation_abort(gen);
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", dir);
	}
	if (!mkdtemp(gen->stage)) {
		int e = errno;

		free(gen->stage);
		gen->stage = NULL;
		iap_generation_abort(gen);
		return iap_error_set(err, IAP_EWRITE, "%s: cannot create a staging directory next to it: %s", dir,
				     strerror(e));
	}
	/* mkdtemp makes it private (0700); the published directory gets the usual mode. */
	(void)chmod(gen->stage, 0777 & ~current_umask());
	return IAP_OK;
}

const char *iap_generation_path(const struct iap_generation *gen, const char *name, char *buf, size_t len)
{
	int n = snprintf(buf, len, "%s/%s", gen->stage, name);

	return n < 0 || (size_t)n >= len ? NULL : buf;
}

static int copy_file(const char *from, const char *to, struct iap_error *err)
{
	struct iap_atomic_file af;
	char buf[65536];
	FILE *in = fopen(from, "rb");
	size_t n;
	int rc;

	if (!in)
		return iap_error_set(err, IAP_EIO, "%s: %s", from, strerror(errno));
	rc = iap_atomic_open(&af, to, err);
	if (rc) {
		fclose(in);
		return rc;
	}
	while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
		if (fwrite(buf, 1, n, af.fp) != n) {
			fclose(in);
			return iap_atomic_fail(&af, err);
		}
	if (ferror(in)) {
		int e = errno;

		fclose(in);
		iap_atomic_abort(&af);
		return iap_error_set(err, IAP_EIO, "%s: %s", from, strerror(e));
	}
	fclose(in);
	return iap_atomic_commit(&af, err);
}

int iap_generation_carry(const struct iap_generation *gen, const char *name, int *carried,
			 struct iap_error *err)
{
	size_t n = strlen(gen->dir) + strlen(name) + 2;
	char *from = malloc(n), to[4096];
	int rc = IAP_OK;

	*carried = 0;
	if (!from)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	snprintf(from, n, "%s/%s", gen->dir, name);
	if (!iap_generation_path(gen, name, to, sizeof(to))) {
		free(from);
		return iap_error_set(err, IAP_EINVAL, "%s: path too long", name);
	}
	if (access(from, F_OK) != 0) {
		free(from);
		return IAP_OK;
	}
	/* The visible generation never changes a file in place, so sharing its inode is safe. */
	if (link(from, to) != 0)
		rc = copy_file(from, to, err);
	if (!rc)
		*carried = 1;
	free(from);
	return rc;
}

int iap_generation_commit(struct iap_generation *gen, struct iap_error *err)
{
	char *parent = NULL, *base = NULL, *old = NULL;
	struct stat st;
	int rc, e;

	rc = split(gen->dir, &parent, &base, err);
	if (rc)
		goto out;
	fsync_dir(gen->stage);
	if (lstat(gen->dir, &st) != 0) {
		if (errno != ENOENT) {
			rc = iap_error_set(err, IAP_EWRITE, "%s: %s", gen->dir, strerror(errno));
			goto out;
		}
		iap_atomic_kill_point();
		if (rename(gen->stage, gen->dir) != 0) {
			rc = iap_error_set(err, IAP_EWRITE, "%s: cannot rename %s into place: %s", gen->dir, gen->stage,
					   strerror(errno));
			goto out;
		}
		goto out_sync;
	}
	if (!S_ISDIR(st.st_mode)) {
		rc = iap_error_set(err, IAP_EINVAL, "%s: exists and is not a directory", gen->dir);
		goto out;
	}
#ifdef RENAME_EXCHANGE
	/* Test-only: IAP_TEST_NO_EXCHANGE takes the path of file systems without the exchange. */
	if (getenv("IAP_TEST_NO_EXCHANGE"))
		goto no_exchange;
	iap_atomic_kill_point();
	if (renameat2(AT_FDCWD, gen->stage, AT_FDCWD, gen->dir, RENAME_EXCHANGE) == 0) {
		/*
		 * The stage's name now holds the previous generation. The new one is
		 * published whatever happens next; what cannot be removed now is
		 * removed by the next start's clean-up.
		 */
		fsync_dir(parent);
		(void)iap_remove_tree(gen->stage, NULL);
		goto out;
	}
	e = errno;
	if (e != EINVAL && e != ENOSYS && e != ENOTSUP && e != EOPNOTSUPP) {
		rc = iap_error_set(err, IAP_EWRITE, "%s: cannot exchange it with %s: %s", gen->dir, gen->stage,
				   strerror(e));
		goto out;
	}
no_exchange:
#endif
	/* No atomic exchange here: move the old one aside (clean() puts it back after a crash). */
	old = fmt_path(parent, base, "old");
	if (!old) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	if (!mkdtemp(old)) {
		rc = iap_error_set(err, IAP_EWRITE, "%s: cannot create %s: %s", gen->dir, old, strerror(errno));
		goto out;
	}
	iap_atomic_kill_point();
	if (rename(gen->dir, old) != 0) {
		rc = iap_error_set(err, IAP_EWRITE, "%s: cannot move it aside: %s", gen->dir, strerror(errno));
		rmdir(old);
		goto out;
	}
	iap_atomic_kill_point();
	if (rename(gen->stage, gen->dir) != 0) {
		e = errno;
		(void)rename(old, gen->dir);
		rc = iap_error_set(err, IAP_EWRITE, "%s: cannot rename %s into place: %s", gen->dir, gen->stage,
				   strerror(e));
		goto out;
	}
	fsync_dir(parent);
	(void)iap_remove_tree(old, NULL);
	goto out;
out_sync:
	fsync_dir(parent);
out:
	if (rc)
		(void)iap_remove_tree(gen->stage, NULL);
	free(old);
	free(parent);
	free(base);
	free(gen->dir);
	free(gen->stage);
	memset(gen, 0, sizeof(*gen));
	return rc;
}

void iap_generation_abort(struct iap_generation *gen)
{
	if (gen->stage)
		(void)iap_remove_tree(gen->stage, NULL);
	free(gen->dir);
	free(gen->stage);
	memset(gen, 0, sizeof(*gen));
}

int iap_generation_clean(const char *dir, int *removed, struct iap_error *err)
{
	char *parent, *base, new_prefix[300], old_prefix[300];
	struct dirent *de;
	DIR *d;
	int rc = split(dir, &parent, &base, err), visible;

	if (removed)
		*removed = 0;
	if (rc)
		return rc;
	snprintf(new_prefix, sizeof(new_prefix), ".%s.new.", base);
	snprintf(old_prefix, sizeof(old_prefix), ".%s.old.", base);
	visible = access(dir, F_OK) == 0;
	d = opendir(parent);
	if (!d) {
		rc = errno == ENOENT ? IAP_OK : iap_error_set(err, IAP_EIO, "%s: %s", parent, strerror(errno));
		goto out;
	}
	while (!rc && (de = readdir(d))) {
		int is_new = !strncmp(de->d_name, new_prefix, strlen(new_prefix));
		int is_old = !strncmp(de->d_name, old_prefix, strlen(old_prefix));
		char path[4096];

		if ((!is_new && !is_old) || strlen(de->d_name) != strlen(new_prefix) + 6)
			continue;
		snprintf(path, sizeof(path), "%s/%s", parent, de->d_name);
		if (is_old && !visible) {
			/* A commit moved the previous generation aside and died: it is still the current one. */
			if (rename(path, dir) != 0)
				rc = iap_error_set(err, IAP_EWRITE, "%s: cannot restore it from %s: %s", dir, path,
						   strerror(errno));
			visible = 1;
			continue;
		}
		rc = iap_remove_tree(path, err);
		if (!rc && removed)
			(*removed)++;
	}
	closedir(d);
out:
	free(parent);
	free(base);
	return rc;
}
