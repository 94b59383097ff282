/*
 * The MPI backend of the work distribution (see host/include/iaprune/dist.h).
 *
 * One request-reply protocol on a private communicator:
 *   worker -> 0  ASK   [item, status, code] + result bytes or error text
 *                      (item -1: the first ask, nothing finished yet)
 *   0 -> worker  GIVE  next item, or -1: stop
 * then one broadcast of the run's outcome, so every rank returns the same.
 *
 * Rank 0's main thread only serves requests (MPI_THREAD_FUNNELED: every MPI
 * call stays on it) and a second thread works through the same queue. A
 * dispatcher that also worked would leave every rank that asks while it
 * computes an item idle for up to that item's whole cost; the items here
 * (a scoring job, a row at a low rate) take seconds to minutes. The serving
 * thread polls with short sleeps instead of blocking in MPI, whose progress
 * loop would spin and take a core from the computing thread.
 *
 * A rank that dies: Open MPI 4 has no fault tolerance, mpirun notices the
 * exit, names the rank and ends the job by sending the others SIGTERM. Rank 0
 * catches it for the length of the run and writes which item each rank held
 * (the lines are formatted at hand-out, so the handler only write(2)s them).
 * Where an MPI call fails instead (MPI_ERRORS_RETURN on the communicator),
 * the error names the peer and its item and iap_dist_finalize aborts the job.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <mpi.h>

#include <iaprune/threads.h>

#include "internal.h"

enum { TAG_ASK = 1, TAG_GIVE = 2 };

/* The head of an ASK message; result bytes or the error text follow. */
struct ask {
	int64_t item;
	int32_t status;          /* 0, or the item failed: code follows */
	int32_t code;
};

/* What every rank returns (broadcast from rank 0 at the end). */
struct outcome {
	int32_t code;
	char msg[IAP_ERROR_MSG_MAX];
};

/* How long the serving side sleeps when nothing arrived (a reply's worst extra latency). */
#define POLL_NS 200000L

int iap_dist_mpi_launched(void)
{
	static const char *const vars[] = { "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK" };

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		if (getenv(vars[i]))
			return 1;
	return 0;
}

static int mpi_fail(struct iap_error *err, int rc, const char *what)
{
	char s[MPI_MAX_ERROR_STRING];
	int n = 0;

	if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS)
		snprintf(s, sizeof(s), "error %d", rc);
	return iap_error_set(err, IAP_EIO, "MPI: %s: %s", what, s);
}

int iap_dist_mpi_init(struct iap_dist *d, int *argc, char ***argv, struct iap_error *err)
{
	MPI_Comm *comm = malloc(sizeof(*comm));
	int provided = 0, rc;

	if (!comm)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
	if (rc != MPI_SUCCESS) {
		free(comm);
		return mpi_fail(err, rc, "MPI_Init_thread");
	}
	d->mpi = 1;
	d->comm = comm;
	if (provided < MPI_THREAD_FUNNELED) {
		*comm = MPI_COMM_NULL;
		return iap_error_set(err, IAP_EUNSUPPORTED,
				     "MPI: the library gives thread level %d, iaprune needs MPI_THREAD_FUNNELED", provided);
	}
	/* Errors come back as codes, so rank 0 can say which rank and item before the job ends. */
	MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
	rc = MPI_Comm_dup(MPI_COMM_WORLD, comm);
	if (rc != MPI_SUCCESS) {
		*comm = MPI_COMM_NULL;
		return mpi_fail(err, rc, "MPI_Comm_dup");
	}
	MPI_Comm_set_errhandler(*comm, MPI_ERRORS_RETURN);
	MPI_Comm_rank(*comm, &d->rank);
	MPI_Comm_size(*comm, &d->size);
	return IAP_OK;
}

void iap_dist_mpi_finalize(struct iap_dist *d)
{
	MPI_Comm *comm = d->comm;

	/* A broken run: MPI_Finalize would wait for peers that are gone. */
	if (d->broken)
		MPI_Abort(MPI_COMM_WORLD, 1);
	if (comm && *comm != MPI_COMM_NULL)
		MPI_Comm_free(comm);
	free(comm);
	d->comm = NULL;
	MPI_Finalize();
	d->mpi = 0;
}

static void nap(void)
{
	struct timespec ts = { 0, POLL_NS };

	nanosleep(&ts, NULL);
}

/* Complete req without spinning in MPI's progress loop. */
static int wait_quietly(MPI_Request *req, MPI_Status *st)
{
	for (;;) {
		int done = 0, rc = MPI_Test(req, &done, st);

		if (rc != MPI_SUCCESS || done)
			return rc;
		nap();
	}
}

/* ---- rank 0 --------------------------------------------------------------------- */

#define HELD_MAX 160

/* One line per rank, formatted at hand-out, for the signal handler. */
struct held {
	volatile sig_atomic_t valid;
	char line[HELD_MAX];
	size_t len;
};

struct server {
	struct iap_dist *d;
	const struct iap_dist_queue *q;
	MPI_Comm comm;
	pthread_mutex_t lock;
	int64_t cursor;          /* next item to look at */
	int64_t todo, done;
	int64_t *per_rank;
	int64_t *finished;       /* rank 0's thread: items it finished, not yet reported */
	int64_t n_finished;
	int local_over;          /* rank 0's thread has left its loop */
	int failed;
	struct iap_error why;    /* the first failure */
	struct held *held;       /* size entries */
};

static struct held *volatile sig_held;
static volatile sig_atomic_t sig_n;

static void sig_putn(const char *s, size_t n)
{
	while (n > 0) {
		ssize_t w = write(STDERR_FILENO, s, n);

		if (w <= 0 && errno != EINTR)
			return;
		if (w > 0) {
			s += w;
			n -= (size_t)w;
		}
	}
}

static void sig_put(const char *s)
{
	sig_putn(s, strlen(s));
}

static void on_stop_signal(int sig)
{
	struct held *h = sig_held;

	sig_put("iaprune: rank 0 was stopped (mpirun ends the job when a rank dies) while");
	if (h) {
		int any = 0;

		for (int r = 0; r < sig_n; r++)
			if (h[r].valid) {
				sig_put(any ? ";" : "");
				sig_putn(h[r].line, h[r].len);
				any = 1;
			}
		if (!any)
			sig_put(" no rank held an item");
	}
	sig_put("\n");
	signal(sig, SIG_DFL);
	raise(sig);
}

static void held_set(struct server *s, int rank, int64_t item)
{
	struct held *h = &s->held[rank];
	char name[128];
	int n;

	h->valid = 0;
	if (item < 0)
		return;
	iap_dist_item_name(s->q, item, name, sizeof(name));
	n = snprintf(h->line, sizeof(h->line), " rank %d held %s", rank, name);
	h->len = n < 0 ? 0 : (size_t)n >= sizeof(h->line) ? sizeof(h->line) - 1 : (size_t)n;
	h->valid = 1;
}

/* The next item to hand out, or -1. Call with the lock held. */
static int64_t next_item(struct server *s)
{
	const struct iap_dist_queue *q = s->q;

	if (s->failed)
		return -1;
	while (s->cursor < q->n_items && q->results[s->cursor].ready)
		s->cursor++;
	return s->cursor < q->n_items ? s->cursor++ : -1;
}

/* Record the first failure, prefixed with who and what. Call with the lock held. */
static void fail(struct server *s, int rank, int64_t item, const struct iap_error *e)
{
	char name[128];

	if (s->failed)
		return;
	s->failed = 1;
	s->why = *e;
	if (item >= 0) {
		iap_dist_item_name(s->q, item, name, sizeof(name));
		iap_error_prefix(&s->why, "rank %d, %s", rank, name);
	} else {
		iap_error_prefix(&s->why, "rank %d", rank);
	}
}

static void *local_worker(void *arg)
{
	struct server *s = arg;
	const struct iap_dist_queue *q = s->q;

	/* OpenMP's thread count is per thread: give this one the process's. */
	iap_threads_set(iap_threads());
	for (;;) {
		struct iap_error e = { 0 };
		void *blob = NULL;
		size_t len = 0;
		int64_t item;
		int rc;

		pthread_mutex_lock(&s->lock);
		item = next_item(s);
		held_set(s, 0, item);
		pthread_mutex_unlock(&s->lock);
		if (item < 0)
			break;
		rc = q->work(q->ctx, item, &blob, &len, &e);
		pthread_mutex_lock(&s->lock);
		if (rc) {
			free(blob);
			fail(s, 0, item, &e);
		} else {
			q->results[item].blob = blob;
			q->results[item].len = len;
			q->results[item].rank = 0;
			s->finished[s->n_finished++] = item;
		}
		pthread_mutex_unlock(&s->lock);
	}
	pthread_mutex_lock(&s->lock);
	s->local_over = 1;
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

/* A result is in results[item]: hand it to the callbacks (main thread only). */
static void finish(struct server *s, int64_t item, int rank)
{
	const struct iap_dist_queue *q = s->q;
	struct iap_dist_result *r = &q->results[item];
	struct iap_error e = { 0 };

	if (q->on_result && q->on_result(q->cb_ctx, item, rank, r->blob, r->len, &e)) {
		pthread_mutex_lock(&s->lock);
		fail(s, rank, item, &e);
		pthread_mutex_unlock(&s->lock);
		return;
	}
	r->ready = 1;
	s->done++;
	s->per_rank[rank]++;
	if (q->progress) {
		struct iap_dist_progress p = { .done = s->done, .todo = s->todo, .n_ranks = s->d->size,
					       .per_rank = s->per_rank, .item = item, .rank = rank };

		q->progress(q->cb_ctx, &p);
	}
}

/* Report what rank 0's thread finished since the last call. 1: it has also left its loop. */
static int drain_local(struct server *s)
{
	int64_t buf[64];
	int64_t n;
	int over;

	do {
		pthread_mutex_lock(&s->lock);
		n = s->n_finished < 64 ? s->n_finished : 64;
		memcpy(buf, s->finished + s->n_finished - n, (size_t)n * sizeof(*buf));
		s->n_finished -= n;
		over = s->local_over && s->n_finished == 0;
		pthread_mutex_unlock(&s->lock);
		for (int64_t i = 0; i < n; i++)
			finish(s, buf[i], 0);
	} while (n > 0 && !over);
	return over;
}

/* One ASK from a worker: take its result, answer with its next item. */
static int serve(struct server *s, MPI_Status *probe, int *stopped, struct iap_error *err)
{
	int src = probe->MPI_SOURCE, count = 0, rc;
	int64_t got = -1;
	struct ask a;
	char *msg;
	int64_t next;

	rc = MPI_Get_count(probe, MPI_BYTE, &count);
	if (rc != MPI_SUCCESS || count < (int)sizeof(a))
		return rc != MPI_SUCCESS ? mpi_fail(err, rc, "MPI_Get_count")
					 : iap_error_set(err, IAP_EFORMAT, "MPI: rank %d sent %d bytes", src, count);
	msg = malloc((size_t)count);
	if (!msg)
		return iap_error_set(err, IAP_ENOMEM, "out of memory for rank %d's result (%d bytes)", src, count);
	rc = MPI_Recv(msg, count, MPI_BYTE, src, TAG_ASK, s->comm, MPI_STATUS_IGNORE);
	if (rc != MPI_SUCCESS) {
		free(msg);
		return mpi_fail(err, rc, "receiving a result");
	}
	memcpy(&a, msg, sizeof(a));
	if (a.item < -1 || a.item >= s->q->n_items || (a.item >= 0 && s->q->results[a.item].ready)) {
		free(msg);
		return iap_error_set(err, IAP_EFORMAT, "MPI: rank %d returned item %" PRId64 ", not one it was given",
				     src, a.item);
	}
	if (a.item >= 0 && a.status) {
		struct iap_error e = { .code = a.code };
		size_t n = (size_t)count - sizeof(a);

		if (n >= sizeof(e.msg))
			n = sizeof(e.msg) - 1;
		memcpy(e.msg, msg + sizeof(a), n);
		e.msg[n] = '\0';
		pthread_mutex_lock(&s->lock);
		fail(s, src, a.item, &e);
		pthread_mutex_unlock(&s->lock);
	} else if (a.item >= 0) {
		struct iap_dist_result *r = &s->q->results[a.item];
		size_t n = (size_t)count - sizeof(a);

		r->blob = NULL;
		if (n) {
			r->blob = malloc(n);
			if (!r->blob) {
				free(msg);
				return iap_error_set(err, IAP_ENOMEM, "out of memory");
			}
			memcpy(r->blob, msg + sizeof(a), n);
		}
		r->len = n;
		r->rank = src;
		got = a.item;
	}
	free(msg);
	pthread_mutex_lock(&s->lock);
	next = next_item(s);
	held_set(s, src, next);
	pthread_mutex_unlock(&s->lock);
	rc = MPI_Send(&next, 1, MPI_INT64_T, src, TAG_GIVE, s->comm);
	if (rc != MPI_SUCCESS) {
		char name[128];

		iap_dist_item_name(s->q, next, name, sizeof(name));
		mpi_fail(err, rc, "handing out work");
		iap_error_prefix(err, "rank %d (given %s)", src, next >= 0 ? name : "stop");
		return rc;
	}
	if (next < 0)
		(*stopped)++;
	/* After the reply: the callbacks (a journal record's fsync) do not hold the rank up. */
	if (got >= 0)
		finish(s, got, src);
	return IAP_OK;
}

static int run_server(struct iap_dist *d, const struct iap_dist_queue *q, struct iap_error *err)
{
	struct server s = { .d = d, .q = q, .comm = *(MPI_Comm *)d->comm };
	struct sigaction sa, old_term, old_int;
	pthread_t th;
	int stopped = 0, local_over = 0, rc = IAP_OK;

	s.per_rank = calloc((size_t)d->size, sizeof(*s.per_rank));
	s.finished = malloc((size_t)(q->n_items > 0 ? q->n_items : 1) * sizeof(*s.finished));
	s.held = calloc((size_t)d->size, sizeof(*s.held));
	if (!s.per_rank || !s.finished || !s.held) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out_free;
	}
	for (int64_t i = 0; i < q->n_items; i++)
		s.todo += !q->results[i].ready;
	pthread_mutex_init(&s.lock, NULL);
	sig_n = d->size;
	sig_held = s.held;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGINT, &sa, &old_int);
	if (pthread_create(&th, NULL, local_worker, &s) != 0) {
		rc = iap_error_set(err, IAP_ENOMEM, "cannot start rank 0's work thread");
		goto out_signals;
	}
	while (!rc && (stopped < d->size - 1 || !local_over)) {
		MPI_Status st;
		int flag = 0, r;

		if (!local_over)
			local_over = drain_local(&s);
		r = MPI_Iprobe(MPI_ANY_SOURCE, TAG_ASK, s.comm, &flag, &st);
		if (r != MPI_SUCCESS)
			rc = mpi_fail(err, r, "waiting for the ranks");
		else if (flag)
			rc = serve(&s, &st, &stopped, err);
		else
			nap();
	}
	if (rc) {
		/* The communicator is broken: say what was in flight and let finalize abort. */
		d->broken = 1;
		pthread_mutex_lock(&s.lock);
		s.failed = 1;
		pthread_mutex_unlock(&s.lock);
		for (int r = 1; r < d->size; r++)
			if (s.held[r].valid)
				iap_error_prefix(err, "%.*s", (int)s.held[r].len - 1, s.held[r].line + 1);
	}
	pthread_join(th, NULL);
	if (!rc)
		drain_local(&s);
out_signals:
	sig_held = NULL;
	sigaction(SIGTERM, &old_term, NULL);
	sigaction(SIGINT, &old_int, NULL);
	pthread_mutex_destroy(&s.lock);
	if (!rc && s.failed)
		rc = iap_error_set(err, s.why.code ? s.why.code : IAP_EIO, "%s", s.why.msg);
out_free:
	free(s.per_rank);
	free(s.finished);
	free(s.held);
	return rc;
}

/* ---- other ranks ------------------------------------------------------------------ */

static int send_ask(MPI_Comm comm, int64_t item, int status, const struct iap_error *e, const void *blob,
		    size_t len, struct iap_error *err)
{
	struct ask a = { .item = item, .status = status, .code = status ? e->code : 0 };
	size_t n = status ? strlen(e->msg) : len;
	char *msg;
	int rc;

	if (n > (size_t)INT_MAX - sizeof(a))
		return iap_error_set(err, IAP_ELIMIT, "a result of %zu bytes is more than MPI can send at once", n);
	msg = malloc(sizeof(a) + n);
	if (!msg)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	memcpy(msg, &a, sizeof(a));
	if (n)
		memcpy(msg + sizeof(a), status ? (const void *)e->msg : blob, n);
	rc = MPI_Send(msg, (int)(sizeof(a) + n), MPI_BYTE, 0, TAG_ASK, comm);
	free(msg);
	return rc == MPI_SUCCESS ? IAP_OK : mpi_fail(err, rc, "returning a result to rank 0");
}

static int run_worker(struct iap_dist *d, const struct iap_dist_queue *q, struct iap_error *err)
{
	MPI_Comm comm = *(MPI_Comm *)d->comm;
	int rc = send_ask(comm, -1, 0, NULL, NULL, 0, err);

	while (!rc) {
		MPI_Request req;
		struct iap_error e = { 0 };
		void *blob = NULL;
		size_t len = 0;
		int64_t item = -1;
		int st;

		rc = MPI_Irecv(&item, 1, MPI_INT64_T, 0, TAG_GIVE, comm, &req);
		if (rc == MPI_SUCCESS)
			rc = wait_quietly(&req, MPI_STATUS_IGNORE);
		if (rc != MPI_SUCCESS) {
			rc = mpi_fail(err, rc, "asking rank 0 for work");
			break;
		}
		if (item < 0)
			break;
		st = q->work(q->ctx, item, &blob, &len, &e);
		rc = send_ask(comm, item, st, &e, blob, len, err);
		free(blob);
	}
	if (rc)
		d->broken = 1;
	return rc;
}

int iap_dist_mpi_run(struct iap_dist *d, const struct iap_dist_queue *q, struct iap_error *err)
{
	struct outcome out = { 0 };
	int rc = d->rank == 0 ? run_server(d, q, err) : run_worker(d, q, err);

	if (d->broken)
		return rc;
	/* Every rank returns rank 0's verdict (a failed item is reported once, by rank 0's caller too). */
	if (d->rank == 0 && rc) {
		out.code = err->code;
		snprintf(out.msg, sizeof(out.msg), "%s", err->msg);
	}
	if (MPI_Bcast(&out, (int)sizeof(out), MPI_BYTE, 0, *(MPI_Comm *)d->comm) != MPI_SUCCESS) {
		d->broken = 1;
		return rc ? rc : iap_error_set(err, IAP_EIO, "MPI: the ranks could not agree on the run's outcome");
	}
	if (d->rank != 0 && out.code)
		return iap_error_set(err, out.code, "%s", out.msg);
	return rc;
}

/* One broadcast from rank 0, completed by polling (a waiting rank leaves its core to the busy ones). */
static int bcast_quietly(MPI_Comm comm, void *p, int n, struct iap_error *err)
{
	MPI_Request req;
	int rc = MPI_Ibcast(p, n, MPI_BYTE, 0, comm, &req);

	if (rc == MPI_SUCCESS)
		rc = wait_quietly(&req, MPI_STATUS_IGNORE);
	return rc == MPI_SUCCESS ? IAP_OK : mpi_fail(err, rc, "MPI_Ibcast");
}

int iap_dist_mpi_share(struct iap_dist *d, void **buf, size_t *len, struct iap_error *err)
{
	MPI_Comm comm = *(MPI_Comm *)d->comm;
	uint64_t n = d->rank == 0 ? (uint64_t)*len : 0;
	unsigned char *p;
	int rc = bcast_quietly(comm, &n, (int)sizeof(n), err);

	if (rc) {
		d->broken = 1;
		return rc;
	}
	if (d->rank != 0) {
		*buf = NULL;
		*len = (size_t)n;
		if (n == 0)
			return IAP_OK;
		*buf = malloc((size_t)n);
		if (!*buf) {
			d->broken = 1;
			return iap_error_set(err, IAP_ENOMEM, "out of memory");
		}
	}
	p = *buf;
	/* MPI counts are int: the bytes in pieces below INT_MAX. */
	for (uint64_t off = 0; off < n; off += (uint64_t)1 << 30) {
		uint64_t k = n - off < ((uint64_t)1 << 30) ? n - off : (uint64_t)1 << 30;

		rc = bcast_quietly(comm, p + off, (int)k, err);
		if (rc) {
			d->broken = 1;
			return rc;
		}
	}
	return IAP_OK;
}

void iap_dist_mpi_abort(struct iap_dist *d, int code)
{
	if (d->size > 1)
		MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
}
