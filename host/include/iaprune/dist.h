/*
 * iaprune — work distribution: a list of independent work items (scoring
 * jobs, evaluation rows) run by one process or spread over MPI ranks.
 *
 * Two backends behind one call:
 *  - serial: no MPI in the build, or the program was not started by mpirun,
 *    or one rank: the items run in order, in this process, on this thread;
 *  - mpi: rank 0 hands item indices out one at a time to whichever rank
 *    asks (so cheap and expensive items balance themselves), works on items
 *    too, and gathers every result on rank 0 in item order.
 *
 * Nothing here includes <mpi.h>: callers and tests build without it.
 */
#ifndef IAPRUNE_DIST_H
#define IAPRUNE_DIST_H

#include <stddef.h>
#include <stdint.h>

#include <iaprune/error.h>

struct iap_dist;

/*
 * Start the distribution layer. Under mpirun (and with MPI in the build)
 * this calls MPI_Init_thread (MPI_THREAD_FUNNELED: only the main thread
 * calls MPI) and duplicates the world communicator with MPI_ERRORS_RETURN;
 * otherwise it only records rank 0 of 1. argc/argv may be NULL. Call it
 * before anything else installs signal handlers: Open MPI installs its own.
 */
int iap_dist_init(struct iap_dist **d, int *argc, char ***argv, struct iap_error *err);

/* MPI_Finalize when init started MPI; frees d (NULL is fine). */
void iap_dist_finalize(struct iap_dist *d);

int iap_dist_rank(const struct iap_dist *d);
int iap_dist_size(const struct iap_dist *d);
/* "mpi" or "serial": what iap_dist_run uses. */
const char *iap_dist_backend(const struct iap_dist *d);
/* Whether this build can use MPI at all (HAVE_MPI). */
int iap_dist_built_with_mpi(void);

/*
 * One item's work: fill *blob (malloc'd, may be NULL when *len is 0) with
 * its result. Runs on every rank; on rank 0 possibly on a second thread
 * (see iap_dist_run), so it must not touch MPI. A failure returns its code
 * and err; the run stops handing out items and reports it.
 */
typedef int (*iap_dist_work_fn)(void *ctx, int64_t item, void **blob, size_t *len, struct iap_error *err);

/* Rank 0: each result as it arrives (arrival order), e.g. to journal it. */
typedef int (*iap_dist_result_fn)(void *ctx, int64_t item, int rank, const void *blob, size_t len,
				  struct iap_error *err);

/* Rank 0: after each finished item. per_rank[r] = items rank r finished. */
struct iap_dist_progress {
	int64_t done;            /* items finished in this run */
	int64_t todo;            /* items this run hands out (preloaded ones excluded) */
	int n_ranks;
	const int64_t *per_rank;
	int64_t item;            /* the one just finished */
	int rank;                /* and who finished it */
};
typedef void (*iap_dist_progress_fn)(void *ctx, const struct iap_dist_progress *p);

/* Rank 0: a short name for an item in messages ("row vgg/lrp@0.30"). */
typedef void (*iap_dist_name_fn)(void *ctx, int64_t item, char *buf, size_t size);

/* One item's result on rank 0. */
struct iap_dist_result {
	void *blob;              /* malloc'd; the caller frees it */
	size_t len;
	int ready;               /* set: the result is here (preloaded ones are not handed out) */
	int rank;                /* who computed it; -1 for a preloaded one */
};

struct iap_dist_queue {
	iap_dist_work_fn work;          /* every rank */
	void *ctx;                      /* every rank, passed to work */
	/* Rank 0 only (ignored elsewhere): */
	int64_t n_items;
	struct iap_dist_result *results; /* n_items entries, zeroed or preloaded */
	iap_dist_result_fn on_result;   /* may be NULL */
	iap_dist_progress_fn progress;  /* may be NULL */
	iap_dist_name_fn name;          /* may be NULL: "item N" */
	void *cb_ctx;                   /* passed to the three callbacks */
};

/*
 * Run every item of q whose result is not ready. Collective: every rank
 * calls it (the others need only work and ctx: they ask rank 0 for items
 * until it says stop). On rank 0, on success every results[i] is ready.
 *
 * With MPI, rank 0's main thread serves requests (all MPI calls stay on it,
 * as FUNNELED requires) while a second thread works through items from the
 * same queue, so a rank asking never waits for rank 0 to finish an item.
 *
 * Failures: a failed item stops the hand-out; the error ("rank R, item I:
 * ...") is returned on every rank. A rank that dies makes mpirun stop the
 * job; rank 0 then writes, before it exits, which items were in flight on
 * which rank (mpirun names the rank that died), and the result callbacks
 * have seen every item that finished before.
 */
int iap_dist_run(struct iap_dist *d, const struct iap_dist_queue *q, struct iap_error *err);

/*
 * Rank 0's bytes on every rank: on rank 0 *buf and *len are its own (kept); on
 * the others *buf becomes a malloc'd copy (NULL when *len is 0) sent over
 * MPI, so no shared file system is assumed. Collective; serial: nothing to do.
 * While waiting, a rank sleeps between polls instead of spinning.
 */
int iap_dist_share(struct iap_dist *d, void **buf, size_t *len, struct iap_error *err);

/*
 * End the whole job after a failure on this rank that the others cannot
 * know about (they would wait forever in the next collective): MPI_Abort
 * under MPI; nothing otherwise (the caller exits as usual).
 */
void iap_dist_abort(struct iap_dist *d, int code);

#endif /* IAPRUNE_DIST_H */
