/*
 * The MPI tests' program (tests/test_dist_mpi.sh): N items whose results
 * are byte strings of different lengths and costs; rank 0 prints them in
 * item order on stdout, so a run under mpirun can be compared with a
 * serial one byte for byte. DIST_DIE_RANK=r makes rank r _exit(3) in the
 * middle of its second item, after saying on stderr which item it held.
 *   dist_prog N       run
 *   dist_prog --mpi   print 1 when the build has MPI, else 0
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <iaprune/dist.h>

struct ctx {
	int rank, die_rank, taken;
};

static int work(void *arg, int64_t item, void **blob, size_t *len, struct iap_error *err)
{
	struct ctx *c = arg;
	size_t n = (size_t)(item * 37 % 101);
	unsigned char *b = malloc(n ? n : 1);
	uint64_t h = 0x9e3779b97f4a7c15ULL ^ (uint64_t)item;
	struct timespec ts = { 0, (long)(item % 5) * 2000000L };

	if (!b)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	/* Uneven costs, so the ranks take items in no fixed pattern. */
	nanosleep(&ts, NULL);
	if (c->rank == c->die_rank && ++c->taken == 2) {
		fprintf(stderr, "dist_prog: rank %d dies holding item %" PRId64 "\n", c->rank, item);
		fflush(stderr);
		_exit(3);
	}
	for (size_t i = 0; i < n; i++) {
		h ^= h >> 31;
		h *= 0xbf58476d1ce4e5b9ULL;
		b[i] = (unsigned char)(h >> 56);
	}
	*blob = b;
	*len = n;
	return IAP_OK;
}

static void progress(void *arg, const struct iap_dist_progress *p)
{
	(void)arg;
	if (p->done == p->todo) {
		fprintf(stderr, "dist_prog: %" PRId64 " items:", p->done);
		for (int r = 0; r < p->n_ranks; r++)
			fprintf(stderr, " rank %d: %" PRId64, r, p->per_rank[r]);
		fprintf(stderr, "\n");
	}
}

int main(int argc, char **argv)
{
	struct iap_error err = { 0 };
	struct iap_dist *d;
	struct ctx c = { .die_rank = -1 };
	struct iap_dist_queue q = { .work = work, .ctx = &c, .progress = progress };
	int rc;

	if (argc == 2 && !strcmp(argv[1], "--mpi")) {
		printf("%d\n", iap_dist_built_with_mpi());
		return 0;
	}
	if (argc != 2 || iap_dist_init(&d, &argc, &argv, &err)) {
		fprintf(stderr, "dist_prog: %s\n", argc != 2 ? "usage: dist_prog N | --mpi" : err.msg);
		return 2;
	}
	c.rank = iap_dist_rank(d);
	if (getenv("DIST_DIE_RANK"))
		c.die_rank = atoi(getenv("DIST_DIE_RANK"));
	if (c.rank == 0) {
		q.n_items = atoll(argv[1]);
		q.results = calloc((size_t)q.n_items, sizeof(*q.results));
		if (!q.results)
			return 2;
	}
	fprintf(stderr, "dist_prog: rank %d of %d, %s\n", c.rank, iap_dist_size(d), iap_dist_backend(d));
	rc = iap_dist_run(d, &q, &err);
	if (rc)
		fprintf(stderr, "dist_prog: rank %d: %s\n", c.rank, err.msg);
	else if (c.rank == 0)
		for (int64_t i = 0; i < q.n_items; i++) {
			printf("%" PRId64 " %zu ", i, q.results[i].len);
			for (size_t k = 0; k < q.results[i].len; k++)
				printf("%02x", ((unsigned char *)q.results[i].blob)[k]);
			printf("\n");
		}
	if (c.rank == 0)
		for (int64_t i = 0; i < q.n_items; i++)
			free(q.results[i].blob);
	free(q.results);
	iap_dist_finalize(d);
	return rc ? 1 : 0;
}
