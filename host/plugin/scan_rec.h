/*
 * The record of one plugin file's scan: what the scanner child answers and
 * what the cache file keeps, with their shared text form. Below both the
 * scanner (scan.h) and the cache (scan_cache.h).
 */
#ifndef IAP_PLUGIN_SCAN_REC_H
#define IAP_PLUGIN_SCAN_REC_H

#include <stdint.h>
#include <stdio.h>

#include <iaprune/plugin.h>

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

#endif /* IAP_PLUGIN_SCAN_REC_H */
