/*
 * The plugin scan cache (see scan_cache.h): one text file of scan records, so a
 * plugin's descriptor is read in a child process once per build of that
 * plugin rather than once per command. A record is reused only when the
 * file's path, size, mtime AND content hash all match; the file starts with
 * a line naming the iaprune version and ABI, and a file from another one is
 * ignored. It is rewritten atomically, so concurrent iaprune processes see
 * an old or a new cache, never half of one.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <iaprune/atomic.h>
#include <iaprune/report.h>

#include "scan_cache.h"

#define CACHE_NAME "plugins.cache"

static void cache_header(char *buf, size_t len)
{
	snprintf(buf, len, "iaprune-plugin-cache 1 %s ABI %d.%d\n", PACKAGE_VERSION, IAP_PLUGIN_ABI_MAJOR,
		 IAP_PLUGIN_ABI_MINOR);
}

/* The cache directory from the environment (see scan_cache.h); NULL when caching is off. */
static char *cache_dir(void)
{
	const char *env = getenv("IAPRUNE_CACHE_DIR");
	char buf[4096];

	if (env)
		return *env ? strdup(env) : NULL;
	env = getenv("XDG_CACHE_HOME");
	if (env && *env == '/') {
		snprintf(buf, sizeof(buf), "%s/iaprune", env);
		return strdup(buf);
	}
	env = getenv("HOME");
	if (env && *env == '/') {
		snprintf(buf, sizeof(buf), "%s/.cache/iaprune", env);
		return strdup(buf);
	}
	return NULL;
}

void iap_scan_cache_load(struct iap_scan_cache *c)
{
	char *dir = cache_dir(), *buf = NULL, *pos, header[128];
	size_t len = 0;
	FILE *f;

	memset(c, 0, sizeof(*c));
	if (!dir)
		return;
	c->file = malloc(strlen(dir) + sizeof(CACHE_NAME) + 2);
	if (c->file)
		sprintf(c->file, "%s/%s", dir, CACHE_NAME);
	free(dir);
	if (!c->file)
		return;
	f = fopen(c->file, "rb");
	if (!f)
		return;
	{
		long n;

		if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && n < (64L << 20) && fseek(f, 0, SEEK_SET) == 0) {
			buf = malloc((size_t)n + 1);
			if (buf && fread(buf, 1, (size_t)n, f) == (size_t)n) {
				len = (size_t)n;
				buf[len] = '\0';
			}
		}
	}
	fclose(f);
	if (!len) {
		free(buf);
		return;
	}
	cache_header(header, sizeof(header));
	if (strncmp(buf, header, strlen(header)) != 0) {
		free(buf);
		c->dirty = 1;          /* another version's cache: replace it */
		return;
	}
	pos = buf + strlen(header);
	for (;;) {
		struct iap_scan_rec rec;
		int got = iap_scan_rec_parse(&pos, &rec);

		if (got == 0)
			break;
		if (got < 0) {
			c->dirty = 1;  /* a damaged record: the file is rewritten without it */
			break;
		}
		if (c->n == c->cap) {
			int ncap = c->cap ? 2 * c->cap : 64;
			struct iap_scan_rec *g = realloc(c->recs, (size_t)ncap * sizeof(*g));

			if (!g) {
				iap_scan_rec_clear(&rec);
				break;
			}
			c->recs = g;
			c->cap = ncap;
		}
		c->recs[c->n++] = rec;
	}
	free(buf);
}

const struct iap_scan_rec *iap_scan_cache_find(const struct iap_scan_cache *c, const struct iap_scan_rec *id)
{
	for (int i = 0; i < c->n; i++) {
		const struct iap_scan_rec *r = &c->recs[i];

		if (r->size == id->size && r->mtime_sec == id->mtime_sec && r->mtime_nsec == id->mtime_nsec &&
		    r->hash == id->hash && !strcmp(r->path, id->path))
			return r;
	}
	return NULL;
}

int iap_scan_cache_put(struct iap_scan_cache *c, const struct iap_scan_rec *rec)
{
	struct iap_scan_rec copy;
	int slot = -1;

	if (!c->file)
		return IAP_OK;
	if (iap_scan_rec_copy(&copy, rec))
		return IAP_ENOMEM;
	for (int i = 0; i < c->n && slot < 0; i++)
		if (!strcmp(c->recs[i].path, rec->path))
			slot = i;
	if (slot >= 0) {
		iap_scan_rec_clear(&c->recs[slot]);
	} else {
		if (c->n == c->cap) {
			int ncap = c->cap ? 2 * c->cap : 64;
			struct iap_scan_rec *g = realloc(c->recs, (size_t)ncap * sizeof(*g));

			if (!g) {
				iap_scan_rec_clear(&copy);
				return IAP_ENOMEM;
			}
			c->recs = g;
			c->cap = ncap;
		}
		slot = c->n++;
	}
	c->recs[slot] = copy;
	c->dirty = 1;
	return IAP_OK;
}

/* The record still describes the file on disk (same size and mtime). */
static int still_there(const struct iap_scan_rec *r)
{
	struct stat st;

	return stat(r->path, &st) == 0 && (int64_t)st.st_size == r->size && (int64_t)st.st_mtim.tv_sec == r->mtime_sec &&
	       (int64_t)st.st_mtim.tv_nsec == r->mtime_nsec;
}

void iap_scan_cache_save(struct iap_scan_cache *c)
{
	struct iap_atomic_file af;
	struct iap_error ignore;
	char header[128], *slash;

	if (!c->file || !c->dirty)
		return;
	slash = strrchr(c->file, '/');
	if (slash) {
		*slash = '\0';
		/* A cache that cannot be written is no cache: never an error. */
		if (iap_mkdir_p(c->file, &ignore) != IAP_OK) {
			*slash = '/';
			return;
		}
		*slash = '/';
	}
	if (iap_atomic_open(&af, c->file, &ignore) != IAP_OK)
		return;
	cache_header(header, sizeof(header));
	fputs(header, af.fp);
	for (int i = 0; i < c->n; i++)
		if (still_there(&c->recs[i]))
			iap_scan_rec_write(af.fp, &c->recs[i]);
	if (iap_atomic_commit(&af, &ignore) == IAP_OK)
		c->dirty = 0;
}

void iap_scan_cache_free(struct iap_scan_cache *c)
{
	for (int i = 0; i < c->n; i++)
		iap_scan_rec_clear(&c->recs[i]);
	free(c->recs);
	free(c->file);
	memset(c, 0, sizeof(*c));
}
