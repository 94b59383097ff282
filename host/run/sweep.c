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

/* Largest rate within tolerance, refined to 0.01 between the last passing and first failing rate. */
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

/* One evaluation item: its row, appended to the run's rows (*row, when not NULL). */
static int run_eval(struct run *r, const struct run_eval_item *it, struct iap_report_row **row)
{
	return run_add_row(r, &r->cfg[it->config], it->rate, row);
}

/* 1 when row's accuracy is within tolerance of the baseline's. */
static int within(const struct run *r, const struct iap_report_row *row)
{
	return r->baseline.accuracy - row->m.accuracy <= r->tolerance + 1e-12;
}

/*
 * Largest rate within tolerance, refined to 0.01 between the last passing
 * and first failing rate by bisection: each step one more evaluation item,
 * recorded as a row too.
 */
int run_lossless(struct run *r, struct config *c, const double *rates, int n_rates)
{
	double ok = 0, bad = -1;
	int rc;

	for (int i = 0; i < n_rates; i++) {
		const struct iap_report_row *row = run_find_row(r, c, rates[i]);

		if (!row)
			continue;
		if (within(r, row)) {
			if (bad < 0)
				ok = rates[i];
		} else if (bad < 0) {
			bad = rates[i];
		}
	}
	while (bad > 0 && bad - ok > 0.01 + 1e-9) {
		double mid = round((ok + bad) * 50.0) / 100.0;
		struct run_eval_item it;
		struct iap_report_row *row;

		if (mid <= ok || mid >= bad)
			break;
		it = eval_item(r, c, mid);
		rc = run_eval(r, &it, &row);
		if (rc)
			return rc;
		if (within(r, row))
			ok = mid;
		else
			bad = mid;
	}
	c->threshold = ok;
	return threshold_ci(r, c);
}

static void say_threshold(struct run *r, const struct config *c)
{
	char ci[64] = "";

	if (isfinite(c->th_lo))
		snprintf(ci, sizeof(ci), " (95%% interval %.2f to %.2f)", c->th_lo, c->th_hi);
	run_say(r, IAP_LOG_INFO, "%s / %s: lossless up to %.2f%s", c->attr->name, c->smp ? c->smp->name : "-",
		c->threshold, ci);
}

/*
 * The sweep stage: one evaluation item per configuration × rate, in
 * configuration order, run by one loop; after a configuration's last item
 * its lossless threshold (with the bisection's items).
 */
int run_stage_sweep(struct run *r, const double *rates, int n_rates)
{
	int n = r->n_cfg * n_rates, rc = IAP_OK;
	struct run_eval_item *items = calloc((size_t)n + 1, sizeof(*items));

	if (!items)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int i = 0; i < r->n_cfg; i++)
		for (int k = 0; k < n_rates; k++)
			items[i * n_rates + k] = eval_item(r, &r->cfg[i], rates[k]);
	run_say(r, IAP_LOG_STAGE, "pruning: %d configurations × %d rates", r->n_cfg, n_rates);
	if (r->iterations > 1)
		run_say(r, IAP_LOG_INFO, "each rate in %d steps, rescoring the masked model between them "
			"(data-free criteria in one)", r->iterations);
	for (int j = 0; j < n && !rc; j++) {
		struct config *c = &r->cfg[items[j].config];

		rc = run_eval(r, &items[j], NULL);
		run_progress(r, "pruned evaluations", j + 1, n);
		if (rc || (j + 1 < n && items[j + 1].config == items[j].config))
			continue;
		rc = run_lossless(r, c, rates, n_rates);
		if (!rc)
			say_threshold(r, c);
	}
	free(items);
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
