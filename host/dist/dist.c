/*
 * Work distribution (see host/include/iaprune/dist.h): the common entry
 * points and the serial backend. The MPI backend is in mpi.c, built only
 * with MPI; without it, or when the program was not started by mpirun,
 * everything here runs in one process exactly as a plain loop would.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int iap_dist_built_with_mpi(void)
{
#ifdef HAVE_MPI
	return 1;
#else
	return 0;
#endif
}

int iap_dist_init(struct iap_dist **dp, int *argc, char ***argv, struct iap_error *err)
{
	struct iap_dist *d = calloc(1, sizeof(*d));

	(void)argc;
	(void)argv;
	*dp = NULL;
	if (!d)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	d->size = 1;
#ifdef HAVE_MPI
	/*
	 * Not under a launcher: stay serial. Open MPI would otherwise start a
	 * singleton runtime (slow, and it fails where no network is set up) for
	 * a run that has nobody to share work with.
	 */
	if (iap_dist_mpi_launched()) {
		int rc = iap_dist_mpi_init(d, argc, argv, err);

		if (rc) {
			free(d);
			return rc;
		}
	}
#endif
	*dp = d;
	return IAP_OK;
}

void iap_dist_finalize(struct iap_dist *d)
{
	if (!d)
		return;
#ifdef HAVE_MPI
	if (d->mpi)
		iap_dist_mpi_finalize(d);
#endif
	free(d);
}

int iap_dist_rank(const struct iap_dist *d)
{
	return d ? d->rank : 0;
}

int iap_dist_size(const struct iap_dist *d)
{
	return d ? d->size : 1;
}

const char *iap_dist_backend(const struct iap_dist *d)
{
	return d && d->mpi && d->size > 1 ? "mpi" : "serial";
}

void iap_dist_item_name(const struct iap_dist_queue *q, int64_t item, char *buf, size_t size)
{
	buf[0] = '\0';
	if (q->name)
		q->name(q->cb_ctx, item, buf, size);
	if (!buf[0])
		snprintf(buf, size, "item %" PRId64, item);
}

int iap_dist_serial_run(const struct iap_dist_queue *q, struct iap_error *err)
{
	int64_t todo = 0, done = 0, per_rank[1] = { 0 };

	for (int64_t i = 0; i < q->n_items; i++)
		todo += !q->results[i].ready;
	for (int64_t i = 0; i < q->n_items; i++) {
		struct iap_dist_result *r = &q->results[i];
		void *blob = NULL;
		size_t len = 0;
		int rc;

		if (r->ready)
			continue;
		rc = q->work(q->ctx, i, &blob, &len, err);
		if (!rc && q->on_result)
			rc = q->on_result(q->cb_ctx, i, 0, blob, len, err);
		if (rc) {
			char name[128];

			free(blob);
			iap_dist_item_name(q, i, name, sizeof(name));
			iap_error_prefix(err, "%s", name);
			return rc;
		}
		r->blob = blob;
		r->len = len;
		r->ready = 1;
		r->rank = 0;
		done++;
		per_rank[0]++;
		if (q->progress) {
			struct iap_dist_progress p = { .done = done, .todo = todo, .n_ranks = 1,
						       .per_rank = per_rank, .item = i, .rank = 0 };

			q->progress(q->cb_ctx, &p);
		}
	}
	return IAP_OK;
}

int iap_dist_run(struct iap_dist *d, const struct iap_dist_queue *q, struct iap_error *err)
{
#ifdef HAVE_MPI
	if (d && d->mpi && d->size > 1)
		return iap_dist_mpi_run(d, q, err);
#else
	(void)d;
#endif
	return iap_dist_serial_run(q, err);
}

int iap_dist_share(struct iap_dist *d, void **buf, size_t *len, struct iap_error *err)
{
#ifdef HAVE_MPI
	if (d && d->mpi && d->size > 1)
		return iap_dist_mpi_share(d, buf, len, err);
#else
	(void)d;
#endif
	(void)buf;
	(void)len;
	(void)err;
	return IAP_OK;
}

void iap_dist_abort(struct iap_dist *d, int code)
{
#ifdef HAVE_MPI
	if (d && d->mpi)
		iap_dist_mpi_abort(d, code);
#else
	(void)d;
	(void)code;
#endif
}
