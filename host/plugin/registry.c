/*
 * Plugin discovery and loading (see include/iaprune/plugin.h).
 *
 * Every way a file can be unusable ends in a diagnostic naming the file and
 * the reason, and the file is skipped: a broken third-party plugin must
 * never take the host down or hide the other plugins. Discovery reads
 * descriptors in a scanner child (scan.c) and caches the answers
 * (scan_cache.c); this process dlopens a plugin only when it is first used.
 */
#include "config.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <iaprune/guard.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "scan.h"
#include "scan_cache.h"
#include "scan_rec.h"

#ifndef IAP_PLUGINDIR
#define IAP_PLUGINDIR "/usr/local/lib/iaprune/plugins"
#endif

struct loaded {
	struct iap_plugin pub;   /* pub.desc: &rec->desc until loaded, then the plugin's own */
	struct iap_scan_rec *rec;
	void *handle;            /* NULL until loaded */
	int initialised;         /* init succeeded: fini is owed */
	int failed;              /* loading was tried and failed; fail_code/fail_msg say why */
	int fail_code;
	char *fail_msg;
	int builtin;             /* found in a system (built-in) directory */
	dev_t dev;
	ino_t ino;
};

struct iap_registry {
	int n_dirs, cap_dirs;
	char **dirs;             /* --plugin-path, in order */
	int n_sys, cap_sys;
	char **sys;              /* stand-ins for the installed directory */
	int n, cap;
	struct loaded *plugins;
	int n_diags, cap_diags;
	struct iap_plugin_diag *diags;
	struct iap_scan_cache cache;
	int cache_loaded;
};

const char *iap_plugin_dir(void)
{
	return IAP_PLUGINDIR;
}

/* Grow an array of elem-sized items so one more fits. */
static int grow(void **arr, int *cap, int n, size_t elem)
{
	void *p;
	int ncap;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	p = realloc(*arr, (size_t)ncap * elem);
	if (!p)
		return -1;
	*arr = p;
	*cap = ncap;
	return 0;
}

struct iap_registry *iap_registry_new(struct iap_error *err)
{
	struct iap_registry *reg = calloc(1, sizeof(*reg));

	if (!reg)
		iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
	return reg;
}

void iap_registry_free(struct iap_registry *reg)
{
	if (!reg)
		return;
	/* Last loaded first, so a plugin never outlives one loaded before it. */
	for (int i = reg->n - 1; i >= 0; i--) {
		struct loaded *l = &reg->plugins[i];

		if (l->handle) {
			struct iap_plugin_call call;

			iap_plugin_call_enter(&call, &l->pub, "fini");
			if (l->initialised && l->pub.desc->fini)
				l->pub.desc->fini();
			dlclose(l->handle);
			iap_plugin_call_leave(&call);
		}
		iap_scan_rec_clear(l->rec);
		free(l->rec);
		free(l->fail_msg);
		free(l->pub.path);
	}
	for (int i = 0; i < reg->n_diags; i++) {
		free(reg->diags[i].path);
		free(reg->diags[i].msg);
	}
	for (int i = 0; i < reg->n_dirs; i++)
		free(reg->dirs[i]);
	for (int i = 0; i < reg->n_sys; i++)
		free(reg->sys[i]);
	iap_scan_cache_free(&reg->cache);
	free(reg->plugins);
	free(reg->diags);
	free(reg->dirs);
	free(reg->sys);
	free(reg);
}

static int add_to(char ***list, int *n, int *cap, const char *dir, struct iap_error *err)
{
	char *copy;

	if (!dir || !*dir)
		return iap_error_set(err, IAP_EINVAL, "empty plugin directory");
	copy = strdup(dir);
	if (!copy || grow((void **)list, cap, *n, sizeof(char *))) {
		free(copy);
		return iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
	}
	(*list)[(*n)++] = copy;
	return IAP_OK;
}

int iap_registry_add_dir(struct iap_registry *reg, const char *dir, struct iap_error *err)
{
	return add_to(&reg->dirs, &reg->n_dirs, &reg->cap_dirs, dir, err);
}

int iap_registry_add_system_dir(struct iap_registry *reg, const char *dir, struct iap_error *err)
{
	return add_to(&reg->sys, &reg->n_sys, &reg->cap_sys, dir, err);
}

int iap_registry_count(const struct iap_registry *reg)
{
	return reg->n;
}

const struct iap_plugin *iap_registry_get(const struct iap_registry *reg, int i)
{
	if (i < 0 || i >= reg->n)
		return NULL;
	return &reg->plugins[i].pub;
}

int iap_registry_diag_count(const struct iap_registry *reg)
{
	return reg->n_diags;
}

const struct iap_plugin_diag *iap_registry_diag(const struct iap_registry *reg, int i)
{
	if (i < 0 || i >= reg->n_diags)
		return NULL;
	return &reg->diags[i];
}

/* Keep a diagnostic for path; -1 when out of memory. */
static int record_diag(struct iap_registry *reg, const char *path, int code, const char *msg, int sig)
{
	struct iap_plugin_diag *d;

	if (grow((void **)&reg->diags, &reg->cap_diags, reg->n_diags, sizeof(*d)))
		return -1;
	d = &reg->diags[reg->n_diags];
	d->path = strdup(path);
	d->msg = strdup(msg);
	d->code = code;
	d->signal = sig;
	if (!d->path || !d->msg) {
		free(d->path);
		free(d->msg);
		return -1;
	}
	reg->n_diags++;
	return 0;
}

/*
 * dlopen a scanned plugin in this process, check that it is still what the
 * scanner saw, and run its init. The first failure is kept: a second use
 * gets the same answer without trying again.
 */
static int load_now(struct iap_registry *reg, struct loaded *l, struct iap_error *err)
{
	const struct iap_plugin_desc *d = NULL;
	struct iap_plugin_call call;
	struct stat st;
	void *h = NULL;
	int rc;

	if (l->handle)
		return IAP_OK;
	if (l->failed)
		return iap_error_set(err, l->fail_code, "%s", l->fail_msg ? l->fail_msg : "plugin failed to load");
	if (stat(l->pub.path, &st) != 0 || (int64_t)st.st_size != l->rec->size ||
	    (int64_t)st.st_mtim.tv_sec != l->rec->mtime_sec || (int64_t)st.st_mtim.tv_nsec != l->rec->mtime_nsec) {
		rc = iap_error_set(err, IAP_EIO, "%s: changed since the plugin scan; run the command again",
				   l->pub.path);
		goto fail;
	}
	/* The scanner read this descriptor without harm; still, a constructor may differ in this process. */
	iap_plugin_call_enter(&call, &l->pub, "its descriptor");
	rc = iap_scan_open(l->pub.path, &h, &d, err);
	iap_plugin_call_leave(&call);
	if (rc)
		goto fail;
	if (d->kind != l->rec->desc.kind || strcmp(d->name, l->rec->desc.name) != 0) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: is %s plugin '%s' now, but the scan found %s plugin '%s'",
				   l->pub.path, iap_plugin_kind_name(d->kind), d->name, iap_plugin_kind_name(l->rec->desc.kind),
				   l->rec->desc.name);
		dlclose(h);
		goto fail;
	}
	if (d->init) {
		struct iap_error ie = { 0, "" };

		l->pub.desc = d;
		iap_plugin_call_enter(&call, &l->pub, "init");
		rc = d->init(&ie);
		iap_plugin_call_leave(&call);
		l->pub.desc = &l->rec->desc;
		if (rc) {
			rc = iap_error_set(err, rc, "%s: %s plugin '%s' failed to initialise: %s", l->pub.path,
					   iap_plugin_kind_name(l->rec->desc.kind), l->rec->desc.name,
					   ie.msg[0] ? ie.msg : iap_status_name(rc));
			dlclose(h);
			goto fail;
		}
		l->initialised = 1;
	}
	l->handle = h;
	l->pub.desc = d;
	return IAP_OK;

fail:
	l->failed = 1;
	l->fail_code = rc;
	l->fail_msg = strdup(err->msg);
	if (record_diag(reg, l->pub.path, rc, err->msg, 0))
		return iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
	return rc;
}

static struct loaded *lookup(const struct iap_registry *reg, int kind, const char *name)
{
	for (int i = 0; name && i < reg->n; i++) {
		const struct iap_plugin_desc *d = reg->plugins[i].pub.desc;

		if ((int)d->kind == kind && strcmp(d->name, name) == 0)
			return &reg->plugins[i];
	}
	return NULL;
}

int iap_registry_open(const struct iap_registry *creg, int kind, const char *name,
		      const struct iap_plugin **out, struct iap_error *err)
{
	/*
	 * Loading on first use changes the registry behind a const pointer: the
	 * set of plugins and their metadata stay the same, only the code is
	 * brought in (a cache, as far as callers can tell).
	 */
	struct iap_registry *reg = (struct iap_registry *)creg;
	struct loaded *l = lookup(reg, kind, name);
	int rc;

	*out = NULL;
	if (!l)
		return iap_error_set(err, IAP_EINVAL, "no %s plugin '%s'",
				     iap_plugin_kind_name(kind) ? iap_plugin_kind_name(kind) : "?", name ? name : "");
	rc = load_now(reg, l, err);
	if (rc)
		return rc;
	*out = &l->pub;
	return IAP_OK;
}

const struct iap_plugin *iap_registry_find(const struct iap_registry *reg, int kind,
					   const char *name)
{
	const struct iap_plugin *p;
	struct iap_error ignore;

	return iap_registry_open(reg, kind, name, &p, &ignore) == IAP_OK ? p : NULL;
}

static void ensure_cache(struct iap_registry *reg)
{
	if (!reg->cache_loaded) {
		iap_scan_cache_load(&reg->cache);
		reg->cache_loaded = 1;
	}
}

/*
 * Look at one file. Returns IAP_OK (added, or skipped as the very file seen
 * before), IAP_ENOMEM, or a refusal with err set; *why_sig receives the
 * scanner's signal for a broken plugin. With load, the plugin is loaded at
 * once and a refusal leaves nothing behind.
 */
static int consider(struct iap_registry *reg, const char *path, int builtin, int load, int *why_sig,
		    struct iap_error *err)
{
	struct iap_scan_rec id = { 0 }, *rec;
	const struct iap_scan_rec *hit;
	struct loaded *dup, *l;
	struct stat st;
	int rc;

	*why_sig = 0;
	if (stat(path, &st) != 0)
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return iap_error_set(err, IAP_EINVAL, "%s: not a regular file", path);
	/* As ssh does with its keys: a file anyone may rewrite is code anyone may run here. */
	if (st.st_mode & S_IWOTH)
		return iap_error_set(err, IAP_EINVAL,
				     "%s: refusing a world-writable plugin file (anyone could replace it; chmod o-w it)",
				     path);
	for (int i = 0; i < reg->n; i++)
		if (reg->plugins[i].dev == st.st_dev && reg->plugins[i].ino == st.st_ino)
			return IAP_OK;   /* the same file reached twice (a directory listed twice, a link) */
	rc = iap_scan_check_elf(path, &st, err);
	if (rc)
		return rc;
	id.path = (char *)path;
	id.size = (int64_t)st.st_size;
	id.mtime_sec = (int64_t)st.st_mtim.tv_sec;
	id.mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
	rc = iap_scan_hash_file(path, &id.hash, err);
	if (rc)
		return rc;
	rec = calloc(1, sizeof(*rec));
	if (!rec)
		return iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
	ensure_cache(reg);
	hit = iap_scan_cache_find(&reg->cache, &id);
	if (hit) {
		rc = iap_scan_rec_copy(rec, hit);
	} else {
		rc = iap_scan_rec_copy(rec, &id);
		rc = rc ? rc : iap_scan_in_child(rec, err);
		rc = rc ? rc : iap_scan_cache_put(&reg->cache, rec);
	}
	if (rc) {
		iap_scan_rec_clear(rec);
		free(rec);
		return rc == IAP_ENOMEM ? iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory") : rc;
	}
	if (rec->status != IAP_OK) {
		rc = iap_error_set(err, rec->status, "%s", rec->msg);
		*why_sig = rec->signal;
		goto out_rec;
	}
	dup = lookup(reg, rec->desc.kind, rec->desc.name);
	if (dup) {
		if (builtin && !dup->builtin)
			rc = iap_error_set(err, IAP_EINVAL,
					   "%s: built-in %s plugin '%s' is shadowed by %s (user plugin folders come "
					   "first; rename the user plugin to use both)",
					   path, iap_plugin_kind_name(rec->desc.kind), rec->desc.name, dup->pub.path);
		else
			rc = iap_error_set(err, IAP_EINVAL, "%s: duplicate %s plugin '%s' (already loaded from %s); skipped",
					   path, iap_plugin_kind_name(rec->desc.kind), rec->desc.name, dup->pub.path);
		goto out_rec;
	}
	if (grow((void **)&reg->plugins, &reg->cap, reg->n, sizeof(*l))) {
		rc = iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
		goto out_rec;
	}
	l = &reg->plugins[reg->n];
	memset(l, 0, sizeof(*l));
	l->rec = rec;
	l->pub.desc = &rec->desc;
	l->pub.path = strdup(path);
	l->pub.hash = rec->hash;
	l->builtin = builtin;
	l->dev = st.st_dev;
	l->ino = st.st_ino;
	if (!l->pub.path) {
		rc = iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
		goto out_rec;
	}
	reg->n++;
	if (load) {
		int diags = reg->n_diags;

		rc = load_now(reg, l, err);
		if (rc) {
			/* An explicit load reports its failure directly: no diagnostic, no entry. */
			while (reg->n_diags > diags) {
				reg->n_diags--;
				free(reg->diags[reg->n_diags].path);
				free(reg->diags[reg->n_diags].msg);
			}
			reg->n--;
			free(l->pub.path);
			free(l->fail_msg);
			goto out_rec;
		}
	}
	return IAP_OK;

out_rec:
	iap_scan_rec_clear(rec);
	free(rec);
	return rc;
}

int iap_registry_load(struct iap_registry *reg, const char *path, struct iap_error *err)
{
	int sig, rc = consider(reg, path, 0, 1, &sig, err);

	iap_scan_cache_save(&reg->cache);
	return rc;
}

static int has_so_suffix(const char *name)
{
	size_t n = strlen(name);

	return n > 3 && strcmp(name + n - 3, ".so") == 0;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Consider the .so files of one directory in name order (readdir order
 * differs between file systems; the first of two duplicates must not depend on it).
 */
static int scan_dir(struct iap_registry *reg, const char *dir, int builtin, struct iap_error *err)
{
	char **names = NULL;
	int n = 0, cap = 0, rc = IAP_OK;
	struct dirent *de;
	struct stat dst;
	DIR *dp;

	if (stat(dir, &dst) != 0 || !S_ISDIR(dst.st_mode))
		return IAP_OK;   /* a missing directory on a search path is normal */
	if (dst.st_mode & S_IWOTH) {
		char msg[IAP_ERROR_MSG_MAX];

		snprintf(msg, sizeof(msg), "%s: refusing a world-writable plugin directory "
			 "(anyone could plant a plugin there; chmod o-w it)", dir);
		if (record_diag(reg, dir, IAP_EINVAL, msg, 0))
			return iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
		return IAP_OK;
	}
	dp = opendir(dir);
	if (!dp)
		return IAP_OK;
	while ((de = readdir(dp))) {
		if (!has_so_suffix(de->d_name))
			continue;
		if (grow((void **)&names, &cap, n, sizeof(char *)) || !(names[n] = strdup(de->d_name))) {
			rc = iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
			goto out;
		}
		n++;
	}
	qsort(names, (size_t)n, sizeof(char *), cmp_str);
	for (int i = 0; i < n; i++) {
		struct iap_error e = { 0, "" };
		char path[PATH_MAX];
		struct stat st;
		int lrc, sig;

		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path))
			continue;
		/* stat, not lstat: a symlink to a plugin is fine, a directory named x.so is not. */
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		lrc = consider(reg, path, builtin, 0, &sig, &e);
		if (lrc == IAP_ENOMEM) {
			rc = iap_error_set(err, IAP_ENOMEM, "%s", e.msg);
			goto out;
		}
		if (lrc && record_diag(reg, path, lrc, e.msg, sig)) {
			rc = iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
			goto out;
		}
	}
out:
	for (int i = 0; i < n; i++)
		free(names[i]);
	free(names);
	closedir(dp);
	return rc;
}

/* Scan each element of a colon-separated list; empty elements are ignored. */
static int scan_list(struct iap_registry *reg, const char *list, int per_kind, int builtin,
		     struct iap_error *err)
{
	char *copy, *save = NULL, *tok;
	int rc = IAP_OK;

	copy = strdup(list);
	if (!copy)
		return iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
	for (tok = strtok_r(copy, ":", &save); tok && !rc; tok = strtok_r(NULL, ":", &save)) {
		if (!per_kind) {
			rc = scan_dir(reg, tok, builtin, err);
			continue;
		}
		for (int k = 0; k < IAP_PLUGIN_KIND_COUNT && !rc; k++) {
			char sub[PATH_MAX];

			if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", tok, iap_plugin_kind_name(k)) < sizeof(sub))
				rc = scan_dir(reg, sub, builtin, err);
		}
	}
	free(copy);
	return rc;
}

static int scan_all(struct iap_registry *reg, struct iap_error *err)
{
	const char *env;
	int rc;

	for (int i = 0; i < reg->n_dirs; i++) {
		rc = scan_dir(reg, reg->dirs[i], 0, err);
		if (rc)
			return rc;
	}
	env = getenv(IAP_PLUGIN_PATH_ENV);
	if (env) {
		rc = scan_list(reg, env, 0, 0, err);
		if (rc)
			return rc;
	}
	for (int i = 0; i < reg->n_sys; i++) {
		rc = scan_dir(reg, reg->sys[i], 1, err);
		if (rc)
			return rc;
	}
	/* Set, even to "", it replaces the installed directory: tests must not see installed plugins. */
	env = getenv(IAP_PLUGIN_SYSTEM_PATH_ENV);
	return scan_list(reg, env ? env : IAP_PLUGINDIR, 1, 1, err);
}

int iap_registry_scan(struct iap_registry *reg, struct iap_error *err)
{
	int rc = scan_all(reg, err);

	iap_scan_cache_save(&reg->cache);
	return rc;
}
