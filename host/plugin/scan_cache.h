/*
 * The on-disk cache of scan records, so a plugin's descriptor is read in a
 * child process once per build of that plugin rather than once per command.
 */
#ifndef IAP_PLUGIN_SCAN_CACHE_H
#define IAP_PLUGIN_SCAN_CACHE_H

#include "scan_rec.h"

struct iap_scan_cache {
	char *file;                   /* NULL: caching is off */
	int n, cap;
	struct iap_scan_rec *recs;
	int dirty;                    /* something to write back */
};

/*
 * The cache file: $IAPRUNE_CACHE_DIR/plugins.cache when that is set (set
 * but empty turns caching off), else $XDG_CACHE_HOME/iaprune/plugins.cache,
 * else ~/.cache/iaprune/plugins.cache. A missing, unreadable or foreign file
 * (another iaprune version or ABI) is an empty cache.
 */
void iap_scan_cache_load(struct iap_scan_cache *c);
/* The record with the same path, size, mtime and hash, or NULL. */
const struct iap_scan_rec *iap_scan_cache_find(const struct iap_scan_cache *c, const struct iap_scan_rec *id);
/* Replace the path's record by a copy of rec; IAP_OK or IAP_ENOMEM. */
int iap_scan_cache_put(struct iap_scan_cache *c, const struct iap_scan_rec *rec);
/* Write it back atomically when dirty, dropping records whose file changed or vanished; failures are ignored. */
void iap_scan_cache_save(struct iap_scan_cache *c);
void iap_scan_cache_free(struct iap_scan_cache *c);

#endif /* IAP_PLUGIN_SCAN_CACHE_H */
