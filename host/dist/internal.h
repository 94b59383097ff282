/* Shared by the two backends of the work distribution (host-internal). */
#ifndef IAP_HOST_DIST_INTERNAL_H
#define IAP_HOST_DIST_INTERNAL_H

#include <iaprune/dist.h>

struct iap_dist {
	int rank, size;
	int mpi;                 /* MPI_Init_thread was called by us */
	int broken;              /* an MPI call failed: finalize aborts the job */
	void *comm;              /* the MPI backend's communicator (an MPI_Comm *) */
};

/* "item N" or the queue's own name for it. */
void iap_dist_item_name(const struct iap_dist_queue *q, int64_t item, char *buf, size_t size);

/* The items in order, on this thread. */
int iap_dist_serial_run(const struct iap_dist_queue *q, struct iap_error *err);

#ifdef HAVE_MPI
/* Whether the environment says mpirun (or another MPI launcher) started us. */
int iap_dist_mpi_launched(void);
int iap_dist_mpi_init(struct iap_dist *d, int *argc, char ***argv, struct iap_error *err);
void iap_dist_mpi_finalize(struct iap_dist *d);
int iap_dist_mpi_run(struct iap_dist *d, const struct iap_dist_queue *q, struct iap_error *err);
int iap_dist_mpi_share(struct iap_dist *d, void **buf, size_t *len, struct iap_error *err);
void iap_dist_mpi_abort(struct iap_dist *d, int code);
#endif

#endif
