/*
 * The run journal (host-internal; see journal.c): one record per finished
 * work item (a scoring job, an evaluation row) under the output folder, so
 * a run that was killed, or lost a rank, redoes only what is missing.
 */
#ifndef IAP_HOST_RUN_JOURNAL_H
#define IAP_HOST_RUN_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>

struct iap_journal;

/* The folder under the output folder that holds the records. */
#define IAP_JOURNAL_DIR "journal"

/*
 * An item's key: run_key holds what the item's result depends on (as the
 * score cache key does: the dataset's content, the plugins' binary hashes,
 * the options that reach this item), label names the item within it
 * ("row lrp/uniform@0.30"). A changed pipeline changes the keys of exactly
 * the items whose ingredients changed; the others' records stay valid.
 */
uint64_t iap_journal_key(uint64_t run_key, const char *label);

/*
 * Open (creating) OUT/journal and remove the temporary files writers that
 * were killed left there: call it only while holding the output folder's
 * lock (one process writes a journal; under MPI, rank 0).
 */
int iap_journal_open(struct iap_journal **j, const char *out, struct iap_error *err);
void iap_journal_close(struct iap_journal *j);

/*
 * Record an item's result: one file, written atomically (temporary file,
 * fsync, rename), whose header holds the key, the label, the length and a
 * checksum of all of them and the bytes. A record of the same key is
 * replaced.
 */
int iap_journal_put(struct iap_journal *j, uint64_t key, const char *label, const void *blob, size_t len,
		    struct iap_error *err);

/*
 * Look an item up. 1: found, *blob (malloc'd; NULL when *len is 0) holds
 * its bytes. 0: missing; when a record was there but unusable (truncated,
 * changed, made for another key), note says which file and why, and the
 * file has been removed. -1: out of memory (note says so).
 */
int iap_journal_get(struct iap_journal *j, uint64_t key, void **blob, size_t *len, struct iap_error *note);

/* The record's file name for key (for messages and tests): OUT/journal/<16 hex>.rec. */
int iap_journal_path(const struct iap_journal *j, uint64_t key, char *buf, size_t size);

#endif
