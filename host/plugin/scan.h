/*
 * Reading a plugin without trusting it, for the registry: checks made before
 * a file is ever opened (ELF tables inside the file, content hash), opening
 * and checking its descriptor, and the scanner child that reads a
 * descriptor where a crash cannot hurt the host. The records it fills are
 * in scan_rec.h, their on-disk cache in scan_cache.h.
 */
#ifndef IAP_PLUGIN_SCAN_H
#define IAP_PLUGIN_SCAN_H

#include <stdint.h>
#include <sys/stat.h>

#include <iaprune/plugin.h>

#include "scan_rec.h"

/* Seconds the scanner child may take for one file before it is killed (a hanging constructor). */
#define IAP_SCAN_TIMEOUT 30

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

#endif /* IAP_PLUGIN_SCAN_H */
