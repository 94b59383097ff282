/*
 * Plugin discovery and loading (see include/iaprune/plugin.h).
 *
 * Every way a file can be unusable ends in a diagnostic naming the file and
 * the reason, and the file is skipped: a broken third-party plugin must
 * never take the host down or hide the other plugins.
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

#include <iaprune/plugin.h>

#ifndef IAP_PLUGINDIR
#define IAP_PLUGINDIR "/usr/local/lib/iaprune/plugins"
#endif

struct loaded {
	struct iap_plugin pub;
	void *handle;
	int initialised;      /* init succeeded: fini is owed */
};

struct iap_registry {
	int n_dirs, cap_dirs;
	char **dirs;          /* --plugin-path, in order */
	int n, cap;
	struct loaded *plugins;
	int n_diags, cap_diags;
	struct iap_plugin_diag *diags;
};

static const char *const kind_names[IAP_PLUGIN_KIND_COUNT] = {
	[IAP_PLUGIN_MODEL] = "model",
	[IAP_PLUGIN_ATTRIBUTION] = "attribution",
	[IAP_PLUGIN_SAMPLER] = "sampler",
	[IAP_PLUGIN_POLICY] = "policy",
	[IAP_PLUGIN_DATASET] = "dataset",
};

const char *iap_plugin_kind_name(int kind)
{
	if (kind < 0 || kind >= IAP_PLUGIN_KIND_COUNT)
		return NULL;
	return kind_names[kind];
}

int iap_plugin_kind_parse(const char *name)
{
	for (int k = 0; name && k < IAP_PLUGIN_KIND_COUNT; k++)
		if (strcmp(name, kind_names[k]) == 0)
			return k;
	return -1;
}

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

		if (l->initialised && l->pub.desc->fini)
			l->pub.desc->fini();
		dlclose(l->handle);
		free(l->pub.path);
	}
	for (int i = 0; i < reg->n_diags; i++) {
		free(reg->diags[i].path);
		free(reg->diags[i].msg);
	}
	for (int i = 0; i < reg->n_dirs; i++)
		free(reg->dirs[i]);
	free(reg->plugins);
	free(reg->diags);
	free(reg->dirs);
	free(reg);
}

int iap_registry_add_dir(struct iap_registry *reg, const char *dir, struct iap_error *err)
{
	char *copy;

	if (!dir || !*dir)
		return iap_error_set(err, IAP_EINVAL, "empty plugin directory");
	copy = strdup(dir);
	if (!copy || grow((void **)&reg->dirs, &reg->cap_dirs, reg->n_dirs, sizeof(char *))) {
		free(copy);
		return iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
	}
	reg->dirs[reg->n_dirs++] = copy;
	return IAP_OK;
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

const struct iap_plugin *iap_registry_find(const struct iap_registry *reg, int kind,
					   const char *name)
{
	for (int i = 0; i < reg->n; i++) {
		const struct iap_plugin_desc *d = reg->plugins[i].pub.desc;

		if ((int)d->kind == kind && strcmp(d->name, name) == 0)
			return &reg->plugins[i].pub;
	}
	return NULL;
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

/* Keep a copy of the failure in err as the registry's diagnostic for path. */
static int record_diag(struct iap_registry *reg, const char *path, const struct iap_error *e)
{
	struct iap_plugin_diag *d;

	if (grow((void **)&reg->diags, &reg->cap_diags, reg->n_diags, sizeof(*d)))
		return -1;
	d = &reg->diags[reg->n_diags];
	d->path = strdup(path);
	d->msg = strdup(e->msg);
	d->code = e->code;
	if (!d->path || !d->msg) {
		free(d->path);
		free(d->msg);
		return -1;
	}
	reg->n_diags++;
	return 0;
}

static int valid_name(const char *s)
{
	if (!s || !((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9')))
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

/*
 * The first required vtable member a descriptor lacks, or NULL when it is
 * complete. Sizes are checked first: a vtable smaller than the members we
 * need would make us read past the plugin's struct.
 */
static const char *missing_entry(const struct iap_plugin_desc *d)
{
#define NEED(ops, member) \
	do { \
		if ((ops)->size < offsetof(__typeof__(*(ops)), member) + sizeof((ops)->member) || \
		    !(ops)->member) \
			return #member; \
	} while (0)
	if (!d->ops.any)
		return "ops";
	switch (d->kind) {
	case IAP_PLUGIN_MODEL:
		NEED(d->ops.model, build);
		break;
	case IAP_PLUGIN_ATTRIBUTION: {
		const struct iap_attribution_ops *a = d->ops.attribution;

		NEED(a, create);
		NEED(a, destroy);
		if (a->size < offsetof(struct iap_attribution_ops, score) + sizeof(a->score) ||
		    (!a->ruleset && !a->score))
			return "ruleset or score";
		break;
	}
	case IAP_PLUGIN_SAMPLER:
		NEED(d->ops.sampler, select);
		break;
	case IAP_PLUGIN_POLICY:
		NEED(d->ops.policy, mask);
		break;
	case IAP_PLUGIN_DATASET:
		NEED(d->ops.dataset, open);
		NEED(d->ops.dataset, close);
		NEED(d->ops.dataset, count);
		NEED(d->ops.dataset, info);
		NEED(d->ops.dataset, load);
		break;
	default:
		return "kind";
	}
#undef NEED
	return NULL;
}

/* Check the schema once at load so later validation can trust it. */
static int check_schema(const struct iap_plugin_desc *d, const char *path, struct iap_error *err)
{
	const char *kn = kind_names[d->kind];

	for (const struct iap_option *o = d->options; o && o->name; o++) {
		if (!valid_name(o->name))
			return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': invalid option name '%s'",
					     path, kn, d->name, o->name);
		if ((unsigned)o->type >= IAP_OPT_TYPE_COUNT)
			return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': option '%s' has unknown type %d",
					     path, kn, d->name, o->name, (int)o->type);
		for (const struct iap_option *q = d->options; q < o; q++)
			if (strcmp(q->name, o->name) == 0)
				return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': option '%s' is declared twice",
						     path, kn, d->name, o->name);
		if (o->type == IAP_OPT_ENUM && (!o->choices || !o->choices[0]))
			return iap_error_set(err, IAP_EINVAL, "%s: %s plugin '%s': enum option '%s' has no choices",
					     path, kn, d->name, o->name);
		if (o->def) {
			struct iap_opts *tmp;
			const struct iap_option one[2] = { *o, { .name = NULL } };
			int rc = iap_opts_defaults(one, &tmp, err);

			if (rc)
				return iap_error_prefix(err, "%s: %s plugin '%s': bad default", path, kn, d->name);
			iap_opts_free(tmp);
		}
	}
	return IAP_OK;
}

/*
 * Open path and validate its descriptor. On success *out is filled; on
 * failure err holds "<path>: <reason>" and nothing stays open.
 */
static int open_plugin(const char *path, struct loaded *out, struct iap_error *err)
{
	const struct iap_plugin_desc *d;
	iap_plugin_descriptor_fn fn;
	const char *missing, *why;
	void *h;
	int rc;

	dlerror();
	h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		why = dlerror();
		return iap_error_set(err, IAP_EIO, "%s: cannot load: %s", path, why ? why : "unknown error");
	}
	dlerror();
	/* dlsym returns void *; going through a union avoids the ISO C object/function cast warning. */
	{
		union { void *obj; iap_plugin_descriptor_fn fn; } u;

		u.obj = dlsym(h, IAP_PLUGIN_SYMBOL);
		fn = u.fn;
	}
	if (!fn) {
		why = dlerror();
		rc = iap_error_set(err, IAP_EFORMAT, "%s: not an iaprune plugin: no '%s' symbol (%s)",
				   path, IAP_PLUGIN_SYMBOL, why ? why : "symbol is NULL");
		goto out_close;
	}
	d = fn();
	if (!d) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: %s() returned NULL", path, IAP_PLUGIN_SYMBOL);
		goto out_close;
	}
	if (d->abi_major != IAP_PLUGIN_ABI_MAJOR) {
		rc = iap_error_set(err, IAP_EABI,
				   "%s: plugin ABI %u.%u is incompatible with this iaprune (ABI %d.%d): "
				   "major versions differ, rebuild the plugin",
				   path, d->abi_major, d->abi_minor, IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
		goto out_close;
	}
	if (d->abi_minor > IAP_PLUGIN_ABI_MINOR) {
		rc = iap_error_set(err, IAP_EABI,
				   "%s: plugin needs ABI %u.%u but this iaprune provides ABI %d.%d: "
				   "upgrade iaprune",
				   path, d->abi_major, d->abi_minor, IAP_PLUGIN_ABI_MAJOR, IAP_PLUGIN_ABI_MINOR);
		goto out_close;
	}
	/* Same major, minor ≤ ours: the struct may be older (shorter) but never shorter than 1.0's. */
	if (d->size < offsetof(struct iap_plugin_desc, ops) + sizeof(d->ops)) {
		rc = iap_error_set(err, IAP_EABI, "%s: descriptor size %u is too small (expected %zu)",
				   path, d->size, sizeof(struct iap_plugin_desc));
		goto out_close;
	}
	if ((unsigned)d->kind >= IAP_PLUGIN_KIND_COUNT) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: unknown plugin kind %d", path, (int)d->kind);
		goto out_close;
	}
	if (!valid_name(d->name)) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: invalid plugin name '%s' (want [a-z0-9][a-z0-9_-]*)",
				   path, d->name ? d->name : "(null)");
		goto out_close;
	}
	missing = missing_entry(d);
	if (missing) {
		rc = iap_error_set(err, IAP_EFORMAT, "%s: %s plugin '%s' lacks required entry point '%s'",
				   path, kind_names[d->kind], d->name, missing);
		goto out_close;
	}
	rc = check_schema(d, path, err);
	if (rc)
		goto out_close;
	out->pub.desc = d;
	out->handle = h;
	out->initialised = 0;
	return IAP_OK;

out_close:
	dlclose(h);
	return rc;
}

/* Load one file; returns IAP_OK, a failure (recorded as err), or IAP_ENOMEM. */
static int load_file(struct iap_registry *reg, const char *path, struct iap_error *err)
{
	struct loaded l = { { NULL, NULL }, NULL, 0 };
	const struct iap_plugin *dup;
	int rc;

	rc = open_plugin(path, &l, err);
	if (rc)
		return rc;
	/* The same object reached twice (a directory listed twice): already ours, nothing to say. */
	for (int i = 0; i < reg->n; i++)
		if (reg->plugins[i].handle == l.handle) {
			dlclose(l.handle);
			return IAP_OK;
		}
	dup = iap_registry_find(reg, l.pub.desc->kind, l.pub.desc->name);
	if (dup) {
		rc = iap_error_set(err, IAP_EINVAL, "%s: duplicate %s plugin '%s' (already loaded from %s); skipped",
				   path, kind_names[l.pub.desc->kind], l.pub.desc->name, dup->path);
		goto out_close;
	}
	if (l.pub.desc->init) {
		struct iap_error ie = { 0, "" };

		rc = l.pub.desc->init(&ie);
		if (rc) {
			rc = iap_error_set(err, rc, "%s: %s plugin '%s' failed to initialise: %s", path,
					   kind_names[l.pub.desc->kind], l.pub.desc->name,
					   ie.msg[0] ? ie.msg : iap_status_name(rc));
			goto out_close;
		}
		l.initialised = 1;
	}
	l.pub.path = strdup(path);
	if (!l.pub.path || grow((void **)&reg->plugins, &reg->cap, reg->n, sizeof(l))) {
		rc = iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
		goto out_fini;
	}
	reg->plugins[reg->n++] = l;
	return IAP_OK;

out_fini:
	free(l.pub.path);
	if (l.initialised && l.pub.desc->fini)
		l.pub.desc->fini();
out_close:
	dlclose(l.handle);
	return rc;
}

int iap_registry_load(struct iap_registry *reg, const char *path, struct iap_error *err)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return iap_error_set(err, IAP_EINVAL, "%s: not a regular file", path);
	return load_file(reg, path, err);
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
 * Load the .so files of one directory in name order (readdir order differs
 * between file systems; the first of two duplicates must not depend on it).
 */
static int scan_dir(struct iap_registry *reg, const char *dir, struct iap_error *err)
{
	char **names = NULL;
	int n = 0, cap = 0, rc = IAP_OK;
	struct dirent *de;
	DIR *dp;

	dp = opendir(dir);
	if (!dp)
		return IAP_OK;   /* a missing directory on a search path is normal */
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
		int lrc;

		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, names[i]) >= sizeof(path))
			continue;
		/* stat, not lstat: a symlink to a plugin is fine, a directory named x.so is not. */
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		lrc = load_file(reg, path, &e);
		if (lrc == IAP_ENOMEM) {
			rc = iap_error_set(err, IAP_ENOMEM, "%s", e.msg);
			goto out;
		}
		if (lrc && record_diag(reg, path, &e)) {
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
static int scan_list(struct iap_registry *reg, const char *list, int per_kind, struct iap_error *err)
{
	char *copy, *save = NULL, *tok;
	int rc = IAP_OK;

	copy = strdup(list);
	if (!copy)
		return iap_error_set(err, IAP_ENOMEM, "plugin registry: out of memory");
	for (tok = strtok_r(copy, ":", &save); tok && !rc; tok = strtok_r(NULL, ":", &save)) {
		if (!per_kind) {
			rc = scan_dir(reg, tok, err);
			continue;
		}
		for (int k = 0; k < IAP_PLUGIN_KIND_COUNT && !rc; k++) {
			char sub[PATH_MAX];

			if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", tok, kind_names[k]) < sizeof(sub))
				rc = scan_dir(reg, sub, err);
		}
	}
	free(copy);
	return rc;
}

int iap_registry_scan(struct iap_registry *reg, struct iap_error *err)
{
	const char *env;
	int rc;

	for (int i = 0; i < reg->n_dirs; i++) {
		rc = scan_dir(reg, reg->dirs[i], err);
		if (rc)
			return rc;
	}
	env = getenv(IAP_PLUGIN_PATH_ENV);
	if (env) {
		rc = scan_list(reg, env, 0, err);
		if (rc)
			return rc;
	}
	/* Set, even to "", it replaces the installed directory: tests must not see installed plugins. */
	env = getenv(IAP_PLUGIN_SYSTEM_PATH_ENV);
	return scan_list(reg, env ? env : IAP_PLUGINDIR, 1, err);
}
