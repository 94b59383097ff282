/*
 * The sweep stage: masks for a configuration at a rate (the policy, in
 * pruning.iterations steps), one evaluated report row per configuration x
 * rate, and the lossless threshold refined by bisection with its bootstrap
 * interval.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rates.h"
#include "items.h"
#include "stages.h"

int run_policy_prepare(struct run *r)
{
	const struct iap_pipeline *p = r->p;

	r->policy = p->pruning.policy.plugin;
	r->policy_opts = p->pruning.policy.opts;
	r->max_layer_rate = p->pruning.max_layer_rate;
	r->min_units = p->pruning.min_units;
	r->tolerance = p->pruning.tolerance;
	r->iterations = p->pruning.iterations;
	r->ignore = calloc((size_t)r->g->n_groups + 1, 1);
	if (!r->ignore)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	/* pruning.ignore: exact group names here; the policies also take glob patterns. */
	for (int i = 0; i < p->pruning.n_ignore; i++)
		for (int gi = 0; gi < r->g->n_groups; gi++)
			if (!strcmp(p->pruning.ignore[i], r->g->groups[gi].name))
				r->ignore[gi] = 1;
	return IAP_OK;
}

struct rescore_ctx {
	struct run *r;
	const struct config *c;
};

/* iap_rescore_fn: c's scores on the masked model, uncached (the cache key ignores masks). */
static int rescore(void *user, struct iap_graph *g, float *const *scores, struct iap_error *err)
{
	struct rescore_ctx *x = user;

	(void)g;
	(void)err;
	return run_score_units(x->r, x->c, scores);
}

/* Masks for c at rate, in pruning.iterations steps when c's scores come from samples. */
int run_apply_rate(struct run *r, const struct config *c, double rate)
{
	uint8_t **keep = calloc((size_t)r->g->n_groups + 1, sizeof(*keep));
	struct iap_policy_input in = {
		.graph = r->g, .scores = (const float *const *)c->scores, .rate = rate,
		.max_layer_rate = r->max_layer_rate, .min_units = r->min_units, .ignore = r->ignore,
	};
	int rc = IAP_OK;

	if (!keep)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int gi = 0; gi < r->g->n_groups && !rc; gi++) {
		keep[gi] = malloc((size_t)r->g->groups[gi].n_units);
		if (!keep[gi])
			rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	/* Data-free criteria do not see the masks: rescoring would change nothing. */
	if (!rc) {
		struct rescore_ctx ctx = { r, c };
		int steps = c->smp ? r->iterations : 1;

		rc = iap_prune_iterative(r->policy, r->policy_opts, &in, r->g, steps, rescore, &ctx, keep, r->err);
	}
	for (int gi = 0; gi < r->g->n_groups && !rc; gi++)
		rc = iap_graph_set_mask(r->g, gi, keep[gi], r->err);
	for (int gi = 0; gi < r->g->n_groups; gi++)
		free(keep[gi]);
	free(keep);
	return rc;
}

void run_clear_masks(struct run *r)
{
	for (int gi = 0; gi < r->g->n_groups; gi++)
		iap_graph_set_mask(r->g, gi, NULL, NULL);
}

/* Fractions of units, parameters and MACs the current masks remove (from the compacted graph, made here when NULL). */
static int removed(struct run *r, struct iap_graph *small, double *units, double *params, double *macs)
{
	int64_t total = 0, off = 0;
	int rc, own = !small;

	for (int gi = 0; gi < r->g->n_groups; gi++) {
		const struct iap_unit_group *grp = &r->g->groups[gi];

		total += grp->n_units;
		for (int u = 0; grp->mask && u < grp->n_units; u++)
			off += !grp->mask[u];
	}
	*units = total ? (double)off / (double)total : 0;
	rc = own ? iap_graph_compact(r->g, 0, &small, r->err) : IAP_OK;
	if (rc)
		return rc;
	*params = 1.0 - (double)iap_graph_param_count(small, NULL) / (double)r->params;
	*macs = 1.0 - (double)iap_graph_macs(small) / (double)r->macs;
	if (own)
		iap_graph_free(small);
	return IAP_OK;
}

int run_add_row(struct run *r, const struct config *c, double rate, struct iap_report_row **out)
{
	struct iap_report_row *row;
	struct iap_graph *small = NULL;
	int rc;

	if (r->n_rows == r->cap_rows) {
		int cap = r->cap_rows ? 2 * r->cap_rows : 64;
		struct iap_report_row *rows = realloc(r->rows, (size_t)cap * sizeof(*rows));

		if (!rows)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		r->rows = rows;
		r->cap_rows = cap;
	}
	row = &r->rows[r->n_rows];
	memset(row, 0, sizeof(*row));
	row->sampler = c->smp ? c->smp->name : "-";
	row->attribution = c->attr->name;
	row->policy = r->policy->desc->name;
	row->config = c->index;
	row->rate = rate;
	rc = run_apply_rate(r, c, rate);
	rc = rc ? rc : run_evaluate_row(r, row, &small);
	rc = rc ? rc : removed(r, small, &row->units_removed, &row->params_removed, &row->macs_removed);
	iap_graph_free(small);
	run_clear_masks(r);
	if (rc) {
		run_row_free(row);
		iap_error_prefix(r->err, "%s / %s at rate %.2f", row->attribution, row->sampler, rate);
		return rc;
	}
	r->n_rows++;
	if (out)
		*out = row;
	return IAP_OK;
}

/* c's row at rate (to 1e-9), or NULL. */
struct iap_report_row *run_find_row(struct run *r, const struct config *c, double rate)
{
	for (int k = 0; k < r->n_rows; k++)
		if (r->rows[k].config == c->index && fabs(r->rows[k].rate - rate) < 1e-9)
			return &r->rows[k];
	return NULL;
}

/* The rates to evaluate (rates.h); table: pruning.rates as written. */
int run_rate_list(struct run *r, double **out, int *n_out, double **table, int *n_table)
{
	*n_table = r->p->pruning.n_rates;
	*table = calloc((size_t)*n_table + 1, sizeof(double));
	if (!*table)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	memcpy(*table, r->p->pruning.rates, (size_t)*n_table * sizeof(double));
	return iap_rate_grid(*table, *n_table, r->p->pruning.curve, r->p->pruning.curve_step, out, n_out, r->err);
}

/*
 * The threshold's bootstrap interval: the same rule on every resample, over
 * the configuration's evaluated rates (grid and bisection) in rate order.
 */
static int threshold_ci(struct run *r, struct config *c)
{
	const int64_t n = r->bs.n;
	double *rates = malloc(((size_t)r->n_rows + 1) * sizeof(double)), *base = malloc((size_t)n * sizeof(double));
	double **correct = calloc((size_t)r->n_rows + 1, sizeof(double *));
	const struct iap_report_row **rows = calloc((size_t)r->n_rows + 1, sizeof(*rows));
	int k = 0, rc = IAP_OK;

	if (!rates || !base || !correct || !rows) {
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	for (int i = 0; i < r->n_rows; i++) {
		const struct iap_report_row *row = &r->rows[i];
		int at;

		if (row->config != c->index || !row->pred)
			continue;
		/* Insertion in rate order. */
		for (at = k; at > 0 && rows[at - 1]->rate > row->rate; at--)
			rows[at] = rows[at - 1];
		rows[at] = row;
		k++;
	}
	for (int64_t i = 0; i < n; i++)
		base[i] = r->base_pred[i] == r->labels[i];
	for (int j = 0; j < k && !rc; j++) {
		rates[j] = rows[j]->rate;
		correct[j] = malloc((size_t)n * sizeof(double));
		if (!correct[j]) {
			rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
			break;
		}
		for (int64_t i = 0; i < n; i++)
			correct[j][i] = rows[j]->pred[i] == r->labels[i];
	}
	if (!rc)
		rc = iap_bootstrap_threshold_ci(&r->bs, k, rates, base, (const double *const *)correct, r->tolerance,
						&c->th_lo, &c->th_hi, r->err);
out:
	for (int j = 0; correct && j < k; j++)
		free(correct[j]);
	free(correct);
	free(rows);
	free(rates);
	free(base);
	return rc;
}

/* What an evaluation row depends on beyond its scores: the policy, its options, the caps, the steps, the rate. */
static uint64_t eval_key(const struct run *r, const struct config *c, double rate)
{
	int64_t micro = (int64_t)llround(rate * 1e6);
	uint64_t h = iap_key_plugin(c->key, r->policy);
	char buf[512];

	h = iap_key_bytes(h, r->policy->desc->name, strlen(r->policy->desc->name));
	for (int i = 0; i < iap_opts_count(r->policy_opts); i++) {
		const char *n = iap_opts_name(r->policy_opts, i);

		iap_opts_format(r->policy_opts, i, buf, sizeof(buf));
		h = iap_key_bytes(h, n, strlen(n));
		h = iap_key_bytes(h, buf, strlen(buf));
	}
	h = iap_key_bytes(h, &r->max_layer_rate, sizeof(r->max_layer_rate));
	h = iap_key_bytes(h, &r->min_units, sizeof(r->min_units));
	h = iap_key_bytes(h, r->ignore, (size_t)r->g->n_groups);
	h = iap_key_bytes(h, &r->iterations, sizeof(r->iterations));
	return iap_key_bytes(h, &micro, sizeof(micro));
}

static struct run_eval_item eval_item(const struct run *r, const struct config *c, double rate)
{
	struct run_eval_item it = { c->index, rate, eval_key(r, c, rate) };

	return it;
}

/* 1 when row's accuracy is within tolerance of the baseline's. */
static int within(const struct run *r, const struct iap_report_row *row)
{
	return r->baseline.accuracy - row->m.accuracy <= r->tolerance + 1e-12;
}

static void say_threshold(struct run *r, const struct config *c)
{
	char ci[64] = "";

	if (isfinite(c->th_lo))
		snprintf(ci, sizeof(ci), " (95%% interval %.2f to %.2f)", c->th_lo, c->th_hi);
	run_say(r, IAP_LOG_INFO, "%s / %s: lossless up to %.2f%s", c->attr->name, c->smp ? c->smp->name : "-",
		c->threshold, ci);
}

/* The sweep's work items and what every rank needs to compute them. */
struct sweep {
	struct run *r;
	const double *rates;
	int n_rates;
	double *start;              /* bisection: per configuration, ok and bad after its grid rows */
};

/* c's row at rate computed here and taken off the run's rows as bytes. */
static int row_bytes(struct run *r, const struct config *c, double rate, struct run_buf *b, int *ok)
{
	struct iap_report_row *row;
	int rc = run_add_row(r, c, rate, &row);

	if (rc)
		return rc;
	if (ok)
		*ok = within(r, row);
	run_put_row(b, r, row);
	run_row_free(row);
	r->n_rows--;
	return b->bad ? iap_error_set(r->err, IAP_ENOMEM, "out of memory") : IAP_OK;
}

static int work_done(struct run *r, int rc, struct run_buf *b, void **blob, size_t *len, struct iap_error *err)
{
	if (rc) {
		free(b->p);
		if (err != r->err)
			*err = *r->err;
		return rc;
	}
	*blob = b->p;
	*len = b->len;
	return IAP_OK;
}

/* A grid item, on any rank: configuration item / n_rates at rate item % n_rates. */
static int grid_work(void *ctx, int64_t item, void **blob, size_t *len, struct iap_error *err)
{
	struct sweep *s = ctx;
	struct run_buf b = { 0 };
	int rc = row_bytes(s->r, &s->r->cfg[item / s->n_rates], s->rates[item % s->n_rates], &b, NULL);

	return work_done(s->r, rc, &b, blob, len, err);
}

/*
 * A configuration's lossless threshold, refined to 0.01 between its last
 * passing and first failing grid rate by bisection (sequential: each step
 * depends on the last; each step a row too),
 * on any rank: u64 count, f64 threshold, then each row (u64 length, bytes).
 */
static int bisect_work(void *ctx, int64_t item, void **blob, size_t *len, struct iap_error *err)
{
	struct sweep *s = ctx;
	struct run *r = s->r;
	const struct config *c = &r->cfg[item];
	double ok = s->start[2 * item], bad = s->start[2 * item + 1];
	struct run_buf rows = { 0 }, b = { 0 };
	uint64_t n = 0;
	int rc = IAP_OK;

	while (!rc && bad > 0 && bad - ok > 0.01 + 1e-9) {
		double mid = round((ok + bad) * 50.0) / 100.0;
		struct run_buf one = { 0 };
		int pass = 0;

		if (mid <= ok || mid >= bad)
			break;
		rc = row_bytes(r, c, mid, &one, &pass);
		run_buf_u64(&rows, (uint64_t)one.len);
		run_buf_bytes(&rows, one.p, one.len);
		free(one.p);
		n++;
		if (pass)
			ok = mid;
		else
			bad = mid;
	}
	run_buf_u64(&b, n);
	run_buf_f64(&b, ok);
	run_buf_bytes(&b, rows.p, rows.len);
	free(rows.p);
	if (!rc && (rows.bad || b.bad))
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	return work_done(r, rc, &b, blob, len, err);
}

/* What a row depends on beyond its item's key: the evaluation data and options (labels, baseline answers, batch, resamples). */
static uint64_t eval_context(const struct run *r)
{
	const int64_t n = r->split[r->eval_split].count;
	uint64_t h = iap_key_bytes(0xcbf29ce484222325ULL, &n, sizeof(n));
	long boot = r->p->report.bootstrap;

	h = iap_key_bytes(h, r->labels, (size_t)n * sizeof(int));
	h = iap_key_bytes(h, r->base_pred, (size_t)n * sizeof(int));
	h = iap_key_bytes(h, r->base_conf, (size_t)n * sizeof(float));
	h = iap_key_bytes(h, &r->eval_split, sizeof(r->eval_split));
	h = iap_key_bytes(h, &r->eval_batch, sizeof(r->eval_batch));
	h = iap_key_bytes(h, &boot, sizeof(boot));
	return iap_key_bytes(h, &r->seed, sizeof(r->seed));
}

/* One row from d (u64 length, bytes) appended to the run's rows. */
static int take_row(struct run *r, struct run_rd *d, const struct config *c, const char *label)
{
	uint64_t n = run_rd_u64(d);
	struct run_rd one = { d->p + d->at, d->bad || n > d->len - d->at ? 0 : (size_t)n, 0, 0 };
	struct iap_report_row row;
	int rc;

	d->at += one.len;
	if (d->bad || one.len != n || run_get_row(&one, r, c, &row) || one.at != one.len)
		return iap_error_set(r->err, IAP_EIO, "%s: a damaged result", label);
	rc = run_append_row(r, &row);
	if (rc)
		run_row_free(&row);
	return rc;
}

/* Rank 0: after the grid, each configuration's bisection bracket (as run_lossless finds it). */
static void bisect_start(struct run *r, const struct run_items *grid, const struct sweep *s, double *start)
{
	for (int i = 0; i < r->n_cfg; i++) {
		double ok = 0, bad = -1;

		for (int k = 0; k < s->n_rates; k++) {
			const struct iap_dist_result *res = &grid->res[(int64_t)i * s->n_rates + k];
			struct run_rd d = { res->blob, res->len, 0, 0 };
			struct iap_report_row row = { 0 };
			double acc;

			/* The accuracy is the row's fifth field (run_put_row). */
			for (int f = 0; f < 5; f++)
				acc = run_rd_f64(&d);
			row.m.accuracy = acc;
			if (within(r, &row)) {
				if (bad < 0)
					ok = s->rates[k];
			} else if (bad < 0) {
				bad = s->rates[k];
			}
		}
		start[2 * i] = ok;
		start[2 * i + 1] = bad;
	}
}

/* Rank 0: the rows in the order a single loop makes them (per configuration its grid, then its bisection). */
static int assemble(struct run *r, const struct run_items *grid, const struct run_items *bis, int n_rates)
{
	int rc = IAP_OK;

	for (int i = 0; !rc && i < r->n_cfg; i++) {
		struct config *c = &r->cfg[i];
		struct run_rd d = { bis->res[i].blob, bis->res[i].len, 0, 0 };
		uint64_t n;

		for (int k = 0; !rc && k < n_rates; k++) {
			const struct iap_dist_result *res = &grid->res[(int64_t)i * n_rates + k];
			struct run_buf b = { 0 };
			struct run_rd one;

			run_buf_u64(&b, (uint64_t)res->len);
			run_buf_bytes(&b, res->blob, res->len);
			one = (struct run_rd){ b.p, b.len, 0, b.bad };
			rc = take_row(r, &one, c, grid->labels[(int64_t)i * n_rates + k]);
			free(b.p);
		}
		n = run_rd_u64(&d);
		c->threshold = run_rd_f64(&d);
		for (uint64_t k = 0; !rc && k < n; k++)
			rc = take_row(r, &d, c, bis->labels[i]);
		if (!rc && (d.bad || d.at != d.len))
			rc = iap_error_set(r->err, IAP_EIO, "%s: a damaged result", bis->labels[i]);
		rc = rc ? rc : threshold_ci(r, c);
		if (!rc)
			say_threshold(r, c);
	}
	return rc;
}

/*
 * The sweep stage: one evaluation item per configuration × rate, then one
 * per configuration for its bisection (each step needs the last), through
 * the journal and the work distribution; rank 0 puts the rows together in
 * configuration order and finds each lossless threshold.
 */
int run_stage_sweep(struct run *r, const double *rates, int n_rates)
{
	int n = r->n_cfg * n_rates, rc;
	struct sweep s = { r, rates, n_rates, calloc(2 * (size_t)r->n_cfg + 1, sizeof(double)) };
	struct run_items grid = { 0 }, bis = { 0 };
	uint64_t ctx = eval_context(r);
	struct run_buf all = { 0 };

	rc = run_items_init(&grid, r, "pruned evaluations", n);
	rc = rc ? rc : run_items_init(&bis, r, "lossless bisection", r->n_cfg);
	if (!rc && !s.start)
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int j = 0; !rc && j < n; j++) {
		const struct config *c = &r->cfg[j / n_rates];
		struct run_eval_item it = eval_item(r, c, rates[j % n_rates]);

		snprintf(grid.labels[j], sizeof(grid.labels[j]), "row %s/%s@%.6f", c->attr->name,
			 c->smp ? c->smp->name : "-", it.rate);
		grid.keys[j] = iap_journal_key(iap_key_bytes(it.key, &ctx, sizeof(ctx)), grid.labels[j]);
	}
	if (rc)
		goto out;
	run_say(r, IAP_LOG_STAGE, "pruning: %d configurations × %d rates", r->n_cfg, n_rates);
	if (r->iterations > 1)
		run_say(r, IAP_LOG_INFO, "each rate in %d steps, rescoring the masked model between them "
			"(data-free criteria in one)", r->iterations);
	if (r->rank == 0)
		run_items_preload(&grid);
	rc = run_items_run(&grid, grid_work, &s);
	if (!rc && r->rank == 0)
		bisect_start(r, &grid, &s, s.start);
	/* The brackets on every rank (8 little-endian bytes each). */
	for (int i = 0; !rc && r->rank == 0 && i < 2 * r->n_cfg; i++)
		run_buf_f64(&all, s.start[i]);
	if (!rc && all.bad)
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	if (!rc) {
		void *p = all.p;
		size_t len = all.len;

		rc = iap_dist_share(r->dist, &p, &len, r->err);
		if (!rc && r->rank != 0) {
			struct run_rd d = { p, len, 0, 0 };

			for (int i = 0; i < 2 * r->n_cfg; i++)
				s.start[i] = run_rd_f64(&d);
			if (d.bad)
				rc = iap_error_set(r->err, IAP_EIO, "the bisection brackets from rank 0 are damaged");
			free(p);
		}
	}
	for (int i = 0; !rc && i < r->n_cfg; i++) {
		const struct config *c = &r->cfg[i];
		uint64_t k = iap_key_bytes(eval_key(r, c, 0), &ctx, sizeof(ctx));

		/* Its result follows from the bracket, the tolerance and the baseline's accuracy. */
		k = iap_key_bytes(k, &s.start[2 * i], 2 * sizeof(double));
		k = iap_key_bytes(k, &r->tolerance, sizeof(r->tolerance));
		k = iap_key_bytes(k, &r->baseline.accuracy, sizeof(r->baseline.accuracy));
		snprintf(bis.labels[i], sizeof(bis.labels[i]), "bisection %s/%s", c->attr->name,
			 c->smp ? c->smp->name : "-");
		bis.keys[i] = iap_journal_key(k, bis.labels[i]);
	}
	if (!rc && r->rank == 0)
		run_items_preload(&bis);
	rc = rc ? rc : run_items_run(&bis, bisect_work, &s);
	if (!rc && r->rank == 0)
		rc = assemble(r, &grid, &bis, n_rates);
out:
	free(all.p);
	free(s.start);
	run_items_free(&grid);
	run_items_free(&bis);
	return rc;
}

/* The configuration with the largest lossless threshold (the report's best), or NULL. */
const struct config *run_best_config(const struct run *r)
{
	const struct config *best = NULL;

	for (int i = 0; i < r->n_cfg; i++)
		if (!best || r->cfg[i].threshold > best->threshold + 1e-12)
			best = &r->cfg[i];
	return best;
}
