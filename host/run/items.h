/*
 * The scoring and sweep stages' work items through the work distribution
 * and the run journal (items.c; host-internal): keys and labels per item,
 * journaled results preloaded on rank 0, the rest handed out; results as
 * little-endian bytes of a fixed layout.
 */
#ifndef IAP_HOST_RUN_ITEMS_H
#define IAP_HOST_RUN_ITEMS_H

#include <iaprune/dist.h>

#include "journal.h"
#include "stages.h"

/* Bytes being written (bad: out of memory) and being read (bad: too short). */
struct run_buf {
	unsigned char *p;
	size_t len, cap;
	int bad;
};

struct run_rd {
	const unsigned char *p;
	size_t len, at;
	int bad;
};

void run_buf_u64(struct run_buf *b, uint64_t v);
void run_buf_f64(struct run_buf *b, double v);
void run_buf_bytes(struct run_buf *b, const void *p, size_t n);
uint64_t run_rd_u64(struct run_rd *d);
double run_rd_f64(struct run_rd *d);

/* Scores: n_units float32 per group, in group order (the score cache's values). */
void run_put_scores(struct run_buf *b, const struct iap_graph *g, float *const *scores);
int run_get_scores(struct run_rd *d, const struct iap_graph *g, float *const *scores);
/* A report row's measured fields; reading gives it c's names and index (malloc'd arrays: run_row_free). */
void run_put_row(struct run_buf *b, const struct run *r, const struct iap_report_row *row);
int run_get_row(struct run_rd *d, struct run *r, const struct config *c, struct iap_report_row *row);
int run_append_row(struct run *r, const struct iap_report_row *row);

/* Every rank's model takes rank 0's parameters (a no-op with one process). */
int run_share_params(struct run *r);

struct run_items {
	struct run *r;
	const char *stage;          /* for progress and the journal line */
	int64_t n;
	uint64_t *keys;             /* journal keys (iap_journal_key) */
	char (*labels)[192];        /* "row lrp/random@0.500000": messages and records */
	struct iap_dist_result *res;
	int64_t from_journal;
	double last_line;
	iap_dist_work_fn work;      /* run_items_run's */
	void *work_ctx;
};

int run_items_init(struct run_items *it, struct run *r, const char *stage, int64_t n);
void run_items_free(struct run_items *it);
/* Rank 0, keys and labels set: results found in the journal become ready. */
void run_items_preload(struct run_items *it);
/* Collective: every item not ready is computed by work somewhere; rank 0 journals each as it arrives. */
int run_items_run(struct run_items *it, iap_dist_work_fn work, void *ctx);
/* Collective: every item's result in order (u64 length, bytes), on every rank; all->p is the caller's to free. */
int run_items_share(struct run_items *it, struct run_buf *all);

#endif
