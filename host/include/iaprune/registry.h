/*
 * iaprune — the host's plugin registry: finding plugins on the search path
 * (each descriptor read by a forked scanner, cached on disk), loading one on
 * first use, and what went wrong with the files it skipped. Part of the host,
 * not of the SDK: plugins never see it.
 */
#ifndef IAPRUNE_REGISTRY_H
#define IAPRUNE_REGISTRY_H

#include <stdint.h>

#include <iaprune/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

struct iap_registry;

/*
 * One plugin found by the scan. Until the plugin is first used (found by
 * iap_registry_find or iap_registry_open) desc holds only what the scanner
 * read from its descriptor: abi, kind, name, version, license, summary and
 * options; init, fini and ops are NULL and none of its code has run in this
 * process. Once loaded, desc is the plugin's own descriptor.
 */
struct iap_plugin {
	const struct iap_plugin_desc *desc;
	char *path;                       /* the file it came from */
	uint64_t hash;                    /* 64-bit FNV-1a of the file's content */
};

/* Something wrong with one file or folder found while scanning (it was skipped). */
struct iap_plugin_diag {
	char *path;
	int code;                         /* enum iap_status */
	char *msg;                        /* "<path>: <reason>" */
	int signal;                       /* the plugin scanner died of this signal (0: it did not) */
};

struct iap_registry *iap_registry_new(struct iap_error *err);
/* Runs every plugin's fini, then closes them. */
void iap_registry_free(struct iap_registry *reg);

/* Append a directory to the command-line part of the search path (--plugin-path). */
int iap_registry_add_dir(struct iap_registry *reg, const char *dir, struct iap_error *err);

/*
 * Append a directory that stands in for the installed plugin directory (a
 * build tree's plugin folders): searched after $IAPRUNE_PLUGIN_PATH, and its
 * plugins count as built-in (see iap_registry_scan on shadowing).
 */
int iap_registry_add_system_dir(struct iap_registry *reg, const char *dir, struct iap_error *err);

/*
 * Find every plugin on the search path: the directories added with
 * iap_registry_add_dir, then $IAPRUNE_PLUGIN_PATH (colon-separated), then the
 * directories added with iap_registry_add_system_dir and the installed
 * directory's per-kind folders (<dir>/model/, <dir>/attribution/, ...),
 * where $IAPRUNE_PLUGIN_SYSTEM_PATH, when set (even empty), replaces the
 * installed directory. Within a directory only regular files ending in
 * ".so" are tried, in name order; missing directories are skipped.
 *
 * Nothing is loaded into this process: each file's descriptor is read by a
 * forked scanner child (a plugin that crashes it is reported "broken" with
 * the signal, and costs only itself), and the answer is cached on disk
 * keyed by path, size, mtime and content hash (see iaprune-plugin(7) for the
 * cache file). Before that, a world-writable directory or file is refused
 * (anyone could plant code there), and a file whose ELF tables or segments
 * do not fit in it (truncated) is refused without being mapped.
 *
 * A file that cannot be used is recorded as a diagnostic and skipped. When
 * two files provide the same kind and name, the first found wins: user
 * folders come before built-in ones, and a built-in plugin shadowed by a
 * user one is reported as such. Returns IAP_OK unless the registry itself
 * fails (out of memory). Call it once per registry.
 */
int iap_registry_scan(struct iap_registry *reg, struct iap_error *err);

/* Scan and load one file now (init included), failing with its diagnostic. */
int iap_registry_load(struct iap_registry *reg, const char *path, struct iap_error *err);

int iap_registry_count(const struct iap_registry *reg);
/* Plugin i as scanned (not loaded: see struct iap_plugin). */
const struct iap_plugin *iap_registry_get(const struct iap_registry *reg, int i);
/*
 * Plugin of that kind and name, loaded (dlopen, descriptor checks, init) on
 * first use; NULL when there is none or it failed to load (the failure is
 * then a diagnostic, and iap_registry_open returns it).
 */
const struct iap_plugin *iap_registry_find(const struct iap_registry *reg, int kind,
					   const char *name);
/*
 * The same, with the reason: IAP_OK and *out, IAP_EINVAL when there is no
 * such plugin, or the code and message of its load failure.
 */
int iap_registry_open(const struct iap_registry *reg, int kind, const char *name,
		      const struct iap_plugin **out, struct iap_error *err);

int iap_registry_diag_count(const struct iap_registry *reg);
const struct iap_plugin_diag *iap_registry_diag(const struct iap_registry *reg, int i);

/* The compiled-in installed plugin directory. */
const char *iap_plugin_dir(void);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_REGISTRY_H */
