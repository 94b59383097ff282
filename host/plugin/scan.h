/*
 * Plugin discovery internals shared by the registry: checks made before a
 * file is ever opened (ELF tables inside the file, content hash), the
 * scanner child that reads a descriptor where a crash cannot hurt the host,
 * the records it produces, and their on-disk cache.
 */
#ifndef IAP_PLUGIN_SCAN_H
#define IAP_PLUGIN_SCAN_H

#include <stdint.h>
#include <stdio.h>
#include <sys/stat.h>

#include <iaprune/plugin.h>

/* Seconds the scanner child may take for one file before it is killed (a hanging constructor). */
#define IAP_SCAN_TIMEOUT 30

/*
 * What the scan of one file found. The identity (path, size, mtime, hash)
 * is the cache key; status, signal and msg are the verdict; desc holds the
 * descriptor's metadata (heap copies of its strings and option schema, no
 * code: init, fini and ops are NULL) when status is IAP_OK.
 */
struct iap_scan_rec {
	char *path;
	int64_t size, mtime_sec, mtime_nsec;
	uint64_t hash;
	int status;                   /* IAP_OK, or the enum iap_status of the refusal */
	int signal;                   /* the scanner died of this signal; 0 when it did not */
	char *msg;                    /* "<path>: <reason>" when refused, else NULL */
	struct iap_plugin_desc desc;  /* metadata when status is IAP_OK */
};

/* Free what rec owns and zero it. */
void iap_scan_rec_clear(struct iap_scan_rec *rec);
/* Deep copy; IAP_OK or IAP_ENOMEM. */
int iap_scan_rec_copy(struct iap_scan_rec *dst, const struct iap_scan_rec *src);

/* One record as text lines (the scanner's answer and the cache file's entries). */
void iap_scan_rec_write(FILE *f, const struct iap_scan_rec *rec);
/*
 * Parse one record starting at *pos (lines ended by '\n', modified in
 * place). Returns 1 with rec filled, 0 at the end, -1 on a malformed record
 * (rec cleared).
 */
int iap_scan_rec_parse(char **pos, struct iap_scan_rec *rec);

/*
 * The file is an ELF shared object of this machine's class whose program
 * and section header tables, and every loadable segment, lie inside its
 * st->st_size bytes: a truncated library would otherwise be mapped past
 * its end and fault (SIGBUS) on first touch.
 */
int iap_scan_check_elf(const char *path, const struct stat *st, struct iap_error *err);

/* 64-bit FNV-1a of the file's bytes. */
int iap_scan_hash_file(const char *path, uint64_t *hash, struct iap_error *err);

/*
 * dlopen path, call its entry point and validate the descriptor (ABI,
 * header, sizes, kind, name, vtable, option schema). On success *handle and
 * *desc are set; on failure err holds "<path>: <reason>" and nothing stays open.
 */
int iap_scan_open(const char *path, void **handle, const struct iap_plugin_desc **desc,
		  struct iap_error *err);

/*
 * Scan rec->path in a child process (its identity fields already set): the
 * verdict and metadata come back through a pipe; a child that dies of a
 * signal or exits without answering makes a refusal naming that. Returns
 * IAP_OK (rec filled, usable or not) or IAP_ENOMEM/IAP_EIO when the host
 * itself fails (no pipe, no fork, out of memory).
 */
int iap_scan_in_child(struct iap_scan_rec *rec, struct iap_error *err);

/* ---- the cache ------------------------------------------------------------ */

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

/* "SIGSEGV", "SIGBUS", ...; "signal N" style text is the caller's for unknown ones (NULL). */
const char *iap_signal_name(int sig);

#endif /* IAP_PLUGIN_SCAN_H */
