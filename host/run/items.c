/*
 * Work items of the scoring and sweep stages run through the work
 * distribution (iaprune/dist.h) and recorded in the run journal
 * (journal.h): the items already journaled are preloaded, the others are
 * handed out (to MPI ranks, or run in order here), each result journaled on
 * rank 0 as it arrives. Results travel as little-endian bytes with a fixed
 * layout, so a record or a message means the same on every machine.
 */
#include "config.h"

#include <signal.h>
#include <time.h>

#include "items.h"

/* ---- little-endian bytes -------------------------------------------------------- */

static int buf_grow(struct run_buf *b, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 256;
		unsigned char *p;

		while (cap < b->len + n)
			cap *= 2;
		p = realloc(b->p, cap);
		if (!p)
			return b->bad = 1, -1;
		b->p = p;
		b->cap = cap;
	}
	return 0;
}

void run_buf_u64(struct run_buf *b, uint64_t v)
{
	if (b->bad || buf_grow(b, 8))
		return;
	for (int i = 0; i < 8; i++)
		b->p[b->len++] = (unsigned char)(v >> (8 * i));
}

void run_buf_f64(struct run_buf *b, double v)
{
	uint64_t u;

	memcpy(&u, &v, sizeof(u));
	run_buf_u64(b, u);
}

static void buf_u32(struct run_buf *b, uint32_t v)
{
	if (b->bad || buf_grow(b, 4))
		return;
	for (int i = 0; i < 4; i++)
		b->p[b->len++] = (unsigned char)(v >> (8 * i));
}

static void buf_f32(struct run_buf *b, float v)
{
	uint32_t u;

	memcpy(&u, &v, sizeof(u));
	buf_u32(b, u);
}

void run_buf_bytes(struct run_buf *b, const void *p, size_t n)
{
	/* n == 0 with p NULL is an empty blob (a bisection with no step): memcpy must not see NULL. */
	if (b->bad || !n || buf_grow(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
}

/* The reading side: a short record sets bad and reads zeros. */
uint64_t run_rd_u64(struct run_rd *d)
{
	uint64_t v = 0;

	if (d->bad || d->len - d->at < 8)
		return d->bad = 1, 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)d->p[d->at++] << (8 * i);
	return v;
}

double run_rd_f64(struct run_rd *d)
{
	uint64_t u = run_rd_u64(d);
	double v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

static uint32_t rd_u32(struct run_rd *d)
{
	uint32_t v = 0;

	if (d->bad || d->len - d->at < 4)
		return d->bad = 1, 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)d->p[d->at++] << (8 * i);
	return v;
}

static float rd_f32(struct run_rd *d)
{
	uint32_t u = rd_u32(d);
	float v;

	memcpy(&v, &u, sizeof(v));
	return v;
}

/* ---- scores, rows, parameters --------------------------------------------------- */

void run_put_scores(struct run_buf *b, const struct iap_graph *g, float *const *scores)
{
	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; u < g->groups[gi].n_units; u++)
			buf_f32(b, scores[gi][u]);
}

int run_get_scores(struct run_rd *d, const struct iap_graph *g, float *const *scores)
{
	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; u < g->groups[gi].n_units; u++)
			scores[gi][u] = rd_f32(d);
	return d->bad ? -1 : 0;
}

/* The row's measured fields in a fixed order; names and the configuration come from its config. */
void run_put_row(struct run_buf *b, const struct run *r, const struct iap_report_row *row)
{
	int64_t n_cls = row->sensitivity ? r->split[r->eval_split].info.n_classes : 0;
	int64_t n_img = row->pred ? r->split[r->eval_split].count : 0;
	const double f[] = { row->rate, row->units_removed, row->params_removed, row->macs_removed,
			     row->m.accuracy, row->m.balanced_accuracy, row->m.macro_f1, row->m.auroc, row->m.ece,
			     row->acc_lo, row->acc_hi, row->drop_lo, row->drop_hi, row->mcnemar_p,
			     row->expl_rho, row->expl_topk };

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		run_buf_f64(b, f[i]);
	run_buf_u64(b, (uint64_t)row->has_stats);
	run_buf_u64(b, (uint64_t)row->has_expl);
	run_buf_u64(b, (uint64_t)row->lost);
	run_buf_u64(b, (uint64_t)row->gained);
	run_buf_u64(b, (uint64_t)n_cls);
	for (int64_t i = 0; i < n_cls; i++)
		run_buf_f64(b, row->sensitivity[i]);
	for (int64_t i = 0; i < n_cls; i++)
		run_buf_f64(b, row->specificity[i]);
	run_buf_u64(b, (uint64_t)n_img);
	for (int64_t i = 0; i < n_img; i++)
		buf_u32(b, (uint32_t)row->pred[i]);
	for (int64_t i = 0; i < n_img; i++)
		buf_f32(b, row->confidence[i]);
}

int run_get_row(struct run_rd *d, struct run *r, const struct config *c, struct iap_report_row *row)
{
	double *f[] = { &row->rate, &row->units_removed, &row->params_removed, &row->macs_removed,
			&row->m.accuracy, &row->m.balanced_accuracy, &row->m.macro_f1, &row->m.auroc, &row->m.ece,
			&row->acc_lo, &row->acc_hi, &row->drop_lo, &row->drop_hi, &row->mcnemar_p,
			&row->expl_rho, &row->expl_topk };
	uint64_t n_cls, n_img;
	double *sens = NULL, *spec = NULL;
	int *pred = NULL;
	float *conf = NULL;

	memset(row, 0, sizeof(*row));
	row->sampler = c->smp ? c->smp->name : "-";
	row->attribution = c->attr->name;
	row->policy = r->policy->desc->name;
	row->config = c->index;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		*f[i] = run_rd_f64(d);
	row->has_stats = (int)run_rd_u64(d);
	row->has_expl = (int)run_rd_u64(d);
	row->lost = (int64_t)run_rd_u64(d);
	row->gained = (int64_t)run_rd_u64(d);
	n_cls = run_rd_u64(d);
	/*
	 * Only what run_put_row writes for this run: none, or one per class of the
	 * evaluation split (and below one per image). The sweep reads pred[] for
	 * every image, so a record from another split (a rank whose dataset at the
	 * same path differs) must not pass for a shorter row.
	 */
	if (d->bad || (n_cls && n_cls != (uint64_t)r->split[r->eval_split].info.n_classes) ||
	    n_cls > (uint64_t)(d->len - d->at) / 16)
		return -1;
	if (n_cls) {
		sens = malloc(n_cls * sizeof(double));
		spec = malloc(n_cls * sizeof(double));
	}
	for (uint64_t i = 0; sens && spec && i < n_cls; i++)
		sens[i] = run_rd_f64(d);
	for (uint64_t i = 0; sens && spec && i < n_cls; i++)
		spec[i] = run_rd_f64(d);
	n_img = run_rd_u64(d);
	if (n_img && n_img != (uint64_t)r->split[r->eval_split].count)
		d->bad = 1;
	if (!d->bad && n_img <= (uint64_t)(d->len - d->at) / 8 && n_img) {
		pred = malloc(n_img * sizeof(int));
		conf = malloc(n_img * sizeof(float));
	}
	for (uint64_t i = 0; pred && conf && i < n_img; i++)
		pred[i] = (int)rd_u32(d);
	for (uint64_t i = 0; pred && conf && i < n_img; i++)
		conf[i] = rd_f32(d);
	row->sensitivity = sens;
	row->specificity = spec;
	row->pred = pred;
	row->confidence = conf;
	if (d->bad || (n_cls && (!sens || !spec)) || (n_img && (!pred || !conf))) {
		run_row_free(row);
		memset(row, 0, sizeof(*row));
		return -1;
	}
	return 0;
}

/* A decoded row appended to r->rows. */
int run_append_row(struct run *r, const struct iap_report_row *row)
{
	if (r->n_rows == r->cap_rows) {
		int cap = r->cap_rows ? 2 * r->cap_rows : 64;
		struct iap_report_row *rows = realloc(r->rows, (size_t)cap * sizeof(*rows));

		if (!rows)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		r->rows = rows;
		r->cap_rows = cap;
	}
	r->rows[r->n_rows++] = *row;
	return IAP_OK;
}

/*
 * The model's parameters from rank 0 on every rank (rank 0 trained or
 * loaded them; the others built the same graph and take its bytes).
 */
int run_share_params(struct run *r)
{
	struct run_buf b = { 0 };
	struct run_rd d;
	void *p;
	size_t len;
	int rc;

	if (iap_dist_size(r->dist) < 2)
		return IAP_OK;
	for (int i = 0; r->rank == 0 && i < r->g->n_nodes; i++)
		for (int k = 0; k < r->g->nodes[i].n_params; k++) {
			const struct iap_tensor *t = &r->g->nodes[i].params[k].value;

			for (int64_t e = 0; e < iap_tensor_numel(t); e++)
				buf_f32(&b, t->data[e]);
		}
	if (b.bad)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	p = b.p;
	len = b.len;
	rc = iap_dist_share(r->dist, &p, &len, r->err);
	if (rc || r->rank == 0) {
		free(b.p);
		return rc;
	}
	d = (struct run_rd){ p, len, 0, 0 };
	for (int i = 0; i < r->g->n_nodes; i++)
		for (int k = 0; k < r->g->nodes[i].n_params; k++) {
			struct iap_tensor *t = &r->g->nodes[i].params[k].value;

			for (int64_t e = 0; e < iap_tensor_numel(t); e++)
				t->data[e] = rd_f32(&d);
		}
	free(p);
	if (d.bad || d.at != d.len)
		return iap_error_set(r->err, IAP_EIO, "the model's parameters from rank 0 do not fit this rank's model");
	return IAP_OK;
}

/* ---- the journaled, distributed loop ------------------------------------------------- */

/* IAP_TEST_KILL_AFTER_ITEMS=N (tests only): SIGKILL right after the N-th record of this process. */
static void kill_hook(void)
{
	static long n_put, limit = -1;

	if (limit < 0) {
		const char *s = getenv("IAP_TEST_KILL_AFTER_ITEMS");

		limit = s && *s ? strtol(s, NULL, 10) : 0;
	}
	if (limit > 0 && ++n_put >= limit)
		raise(SIGKILL);
}

static int on_result(void *ctx, int64_t item, int rank, const void *blob, size_t len, struct iap_error *err)
{
	struct run_items *it = ctx;

	(void)rank;
	if (!it->r->journal)
		return IAP_OK;
	if (iap_journal_put(it->r->journal, it->keys[item], it->labels[item], blob, len, err))
		return err->code;
	kill_hook();
	return IAP_OK;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Progress: the bar; with several ranks also a line per second and at the end, items per rank. */
static void on_progress(void *ctx, const struct iap_dist_progress *p)
{
	struct run_items *it = ctx;
	char line[512];
	size_t at;

	run_progress(it->r, it->stage, p->done, p->todo);
	if (p->n_ranks < 2 || (p->done < p->todo && now_s() - it->last_line < 1.0))
		return;
	it->last_line = now_s();
	at = (size_t)snprintf(line, sizeof(line), "%s: %" PRId64 "/%" PRId64 ", per rank", it->stage, p->done, p->todo);
	for (int k = 0; k < p->n_ranks && at < sizeof(line); k++)
		at += (size_t)snprintf(line + at, sizeof(line) - at, " %" PRId64, p->per_rank[k]);
	run_say(it->r, IAP_LOG_INFO, "%s", line);
}

static void on_name(void *ctx, int64_t item, char *buf, size_t size)
{
	struct run_items *it = ctx;

	snprintf(buf, size, "%s", it->labels[item]);
}

int run_items_init(struct run_items *it, struct run *r, const char *stage, int64_t n)
{
	memset(it, 0, sizeof(*it));
	it->r = r;
	it->stage = stage;
	it->n = n;
	it->keys = calloc((size_t)n + 1, sizeof(*it->keys));
	it->labels = calloc((size_t)n + 1, sizeof(*it->labels));
	it->res = calloc((size_t)n + 1, sizeof(*it->res));
	if (!it->keys || !it->labels || !it->res)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	return IAP_OK;
}

void run_items_free(struct run_items *it)
{
	for (int64_t i = 0; it->res && i < it->n; i++)
		free(it->res[i].blob);
	free(it->res);
	free(it->keys);
	free(it->labels);
}

/* Rank 0: the journaled results of items not ready yet (a damaged record is named and recomputed). */
void run_items_preload(struct run_items *it)
{
	struct run *r = it->r;

	if (!r->journal)
		return;
	for (int64_t i = 0; i < it->n; i++) {
		struct iap_error note;
		int got;

		if (it->res[i].ready)
			continue;
		iap_error_clear(&note);
		got = iap_journal_get(r->journal, it->keys[i], &it->res[i].blob, &it->res[i].len, &note);
		if (got == 1) {
			it->res[i].ready = 1;
			it->res[i].rank = -1;
			it->from_journal++;
		} else if (note.msg[0]) {
			run_say(r, IAP_LOG_WARN, "%s; computed again", note.msg);
		}
	}
}

/* IAP_TEST_DIE_RANK=R (tests only): rank R (R > 0) dies by SIGKILL as it starts its first item. */
static int work_or_die(void *ctx, int64_t item, void **blob, size_t *len, struct iap_error *err)
{
	struct run_items *it = ctx;
	const char *s = getenv("IAP_TEST_DIE_RANK");

	if (s && *s && it->r->rank > 0 && atoi(s) == it->r->rank) {
		fprintf(stderr, "iaprune: rank %d dies holding item %" PRId64 " (IAP_TEST_DIE_RANK)\n", it->r->rank, item);
		raise(SIGKILL);
	}
	return it->work(it->work_ctx, item, blob, len, err);
}

int run_items_run(struct run_items *it, iap_dist_work_fn work, void *ctx)
{
	struct iap_dist_queue q = { .work = work_or_die, .ctx = it, .n_items = it->n, .results = it->res,
				    .on_result = on_result, .progress = on_progress, .name = on_name, .cb_ctx = it };

	if (it->r->rank == 0 && it->from_journal)
		run_say(it->r, IAP_LOG_INFO, "%s: %" PRId64 " of %" PRId64 " items from the journal", it->stage,
			it->from_journal, it->n);
	struct iap_error e = { 0, "" };
	int rc;

	it->last_line = now_s();
	it->work = work;
	it->work_ctx = ctx;
	/*
	 * The distribution reports into its own slot: on rank 0 the items run on
	 * a work thread whose stage code writes r->err, while the main thread
	 * hands out work and journals results; r->err gets the outcome once
	 * both are done.
	 */
	rc = iap_dist_run(it->r->dist, &q, &e);
	if (rc)
		*it->r->err = e;
	return rc;
}

/* Rank 0's results of every item, in item order, on every rank (each prefixed by its length). */
int run_items_share(struct run_items *it, struct run_buf *all)
{
	struct run *r = it->r;
	void *p;
	size_t len;
	int rc;

	memset(all, 0, sizeof(*all));
	for (int64_t i = 0; r->rank == 0 && i < it->n; i++) {
		run_buf_u64(all, (uint64_t)it->res[i].len);
		run_buf_bytes(all, it->res[i].blob, it->res[i].len);
	}
	if (all->bad)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	p = all->p;
	len = all->len;
	rc = iap_dist_share(r->dist, &p, &len, r->err);
	if (rc || r->rank == 0)
		return rc;
	all->p = p;
	all->len = all->cap = len;
	return IAP_OK;
}
