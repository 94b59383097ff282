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
	row->rate = rate;
	rc = run_apply_rate(r, c, rate);
	rc = rc ? rc : run_evaluate_row(r, row, &small);
	rc = rc ? rc : removed(r, small, &row->units_removed, &row->params_removed, &row->macs_removed);
	iap_graph_free(small);
	run_clear_masks(r);
	if (rc) {
		run_row_free(row);
		return iap_error_prefix(r->err, "%s / %s at rate %.2f", row->attribution, row->sampler, rate);
	}
	r->n_rows++;
	if (out)
		*out = row;
	return IAP_OK;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* The rates to evaluate: the pipeline's, plus the fine curve; sorted, unique. */
int run_rate_list(struct run *r, double **out, int *n_out, double **table, int *n_table)
{
	double step = r->p->pruning.curve_step;
	int curve = r->p->pruning.curve, n = 0;
	double *v;

	*n_table = r->p->pruning.n_rates;
	*table = calloc((size_t)*n_table + 1, sizeof(double));
	v = calloc((size_t)*n_table + 64, sizeof(double));
	if (!*table || !v) {
		free(v);
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	for (int i = 0; i < *n_table; i++) {
		(*table)[i] = r->p->pruning.rates[i];
		v[n++] = (*table)[i];
	}
	if (curve && step > 0)
		for (int k = 0; k * step < 0.96 && n < *n_table + 60; k++)
			v[n++] = round(k * step * 1e6) / 1e6;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	{
		int m = 0;

		for (int i = 0; i < n; i++)
			if (m == 0 || fabs(v[i] - v[m - 1]) > 1e-9)
				v[m++] = v[i];
		n = m;
	}
	*out = v;
	*n_out = n;
	return IAP_OK;
}

/*
 * The threshold's bootstrap interval: the same rule on every resample, over
 * the configuration's evaluated rates (grid and bisection) in rate order.
 */
static int threshold_ci(struct run *r, struct config *c)
{
	const int64_t n = r->bs.n;
	const char *smp = c->smp ? c->smp->name : "-";
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

		if (row->attribution != c->attr->name || strcmp(row->sampler, smp) || !row->pred)
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
int run_lossless(struct run *r, struct config *c, const double *rates, int n_rates)
{
	double ok = 0, bad = -1;
	int rc;

	for (int i = 0; i < n_rates; i++) {
		const struct iap_report_row *row = NULL;

		for (int k = 0; k < r->n_rows && !row; k++)
			if (r->rows[k].attribution == c->attr->name &&
			    r->rows[k].sampler == (c->smp ? c->smp->name : "-") && fabs(r->rows[k].rate - rates[i]) < 1e-9)
				row = &r->rows[k];
		if (!row)
			continue;
		if (r->baseline.accuracy - row->m.accuracy <= r->tolerance + 1e-12) {
			if (bad < 0)
				ok = rates[i];
		} else if (bad < 0) {
			bad = rates[i];
		}
	}
	/* Bisection on the accuracy drop; extra evaluations are recorded as rows too. */
	while (bad > 0 && bad - ok > 0.01 + 1e-9) {
		double mid = round((ok + bad) * 50.0) / 100.0;
		struct iap_report_row *row;

		if (mid <= ok || mid >= bad)
			break;
		rc = run_add_row(r, c, mid, &row);
		if (rc)
			return rc;
		if (r->baseline.accuracy - row->m.accuracy <= r->tolerance + 1e-12)
			ok = mid;
		else
			bad = mid;
	}
	c->threshold = ok;
	return threshold_ci(r, c);
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
