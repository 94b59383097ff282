/*
 * Per-unit scores from relevance (see include/iaprune/attribute.h): the host
 * side shared by every attribution plugin, so the spatial/sample reduction
 * and its options mean the same thing whichever method produced the relevance.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/attribute.h>

const char *const iap_attr_abs_choices[] = { "after", "before", "none", NULL };
const char *const iap_attr_reduce_choices[] = { "sum", "mean", NULL };
const char *const iap_attr_target_choices[] = { "predicted", "label", NULL };
const char *const iap_attr_seed_choices[] = { "onehot", "logit", NULL };

/*
 * The common option `name` as an index into choices, def when absent. The
 * schema's entry is IAP_ATTR_COMMON_OPTIONS's, whose choices are these
 * tables, so iap_opts_enum's index is the mode itself; an index past the
 * table (a plugin's own list under the same name) keeps def.
 */
static int choice(const struct iap_opts *opts, const char *name, const char *const *choices, int def)
{
	int i = iap_opts_enum(opts, name), n = 0;

	while (choices[n])
		n++;
	return i >= 0 && i < n ? i : def;
}

void iap_score_opts_from(const struct iap_opts *opts, struct iap_score_opts *so)
{
	so->abs = (enum iap_abs_mode)choice(opts, "abs", iap_attr_abs_choices, IAP_ABS_AFTER);
	so->reduce = (enum iap_reduce_mode)choice(opts, "reduce", iap_attr_reduce_choices, IAP_REDUCE_SUM);
	so->target = (enum iap_target_mode)choice(opts, "target", iap_attr_target_choices, IAP_TARGET_PREDICTED);
	so->seed = (enum iap_seed_mode)choice(opts, "seed", iap_attr_seed_choices, IAP_SEED_ONEHOT);
	so->seed_scale = 1.0f;
}

int iap_targets(const struct iap_tensor *logits, const int *labels, const struct iap_score_opts *so,
		int *targets, struct iap_error *err)
{
	int64_t n = logits->shape[0], c = logits->shape[1];

	if (logits->ndim != 2)
		return iap_error_set(err, IAP_ESHAPE, "attribution needs [N, classes] logits");
	for (int64_t i = 0; i < n; i++) {
		if (so->target == IAP_TARGET_LABEL) {
			if (!labels || labels[i] < 0 || labels[i] >= c)
				return iap_error_set(err, IAP_EINVAL, "sample %lld: label %d is not a class index",
						     (long long)i, labels ? labels[i] : -1);
			targets[i] = labels[i];
			continue;
		}
		const float *row = logits->data + i * c;
		int best = 0;

		for (int64_t k = 1; k < c; k++)
			if (row[k] > row[best])
				best = (int)k;
		targets[i] = best;
	}
	return IAP_OK;
}

int iap_seed_target(const struct iap_tensor *logits, const int *targets,
		    const struct iap_score_opts *so, struct iap_tensor *seed, struct iap_error *err)
{
	int64_t n = logits->shape[0], c = logits->shape[1];
	int rc = iap_tensor_ensure(seed, logits->ndim, logits->shape, err);

	if (rc)
		return rc;
	iap_tensor_zero(seed);
	for (int64_t i = 0; i < n; i++) {
		float v = so->seed == IAP_SEED_LOGIT ? logits->data[i * c + targets[i]] : 1.0f;

		seed->data[i * c + targets[i]] = v * so->seed_scale;
	}
	return IAP_OK;
}

/* Σ p[k] (or Σ |p[k]|) over n contiguous floats, in double, vectorised. */
static double sum_run(const float *p, int64_t n, int abs_first)
{
	double s = 0.0;

	if (abs_first) {
#pragma omp simd reduction(+:s)
		for (int64_t k = 0; k < n; k++)
			s += fabs((double)p[k]);
	} else {
#pragma omp simd reduction(+:s)
		for (int64_t k = 0; k < n; k++)
			s += (double)p[k];
	}
	return s;
}

/* Units summed at a time in the token layout (doubles on the stack). */
#define ACC_UNITS 512

/*
 * The sums of iap_unit_sample_sum (same layout, see iap_unit_view), read in
 * memory order. This runs on every unit group of every walk: for [N, C, H, W]
 * each unit is one contiguous run, summed with vector adds; for token
 * layouts [N, T, D] a unit's entries are D floats apart, so the rows are
 * walked once each, adding a block of units at a time, instead of one cache
 * line per entry per unit.
 */
void iap_unit_accumulate(const struct iap_unit_group *grp, const struct iap_tensor *t,
			 enum iap_abs_mode abs, float *scores)
{
	const int abs_first = abs == IAP_ABS_BEFORE;
	const int64_t span = (int64_t)grp->unit_size;
	int64_t outer, axis, inner, per;

	iap_unit_view(t, &outer, &axis, &inner);
	per = outer / t->shape[0]; /* rows of one sample */
	for (int64_t n = 0; n < t->shape[0]; n++) {
		if (per == 1) {
			const float *base = t->data + n * axis * inner;

			for (int u = 0; u < grp->n_units; u++) {
				double s = sum_run(base + (int64_t)u * span * inner, span * inner, abs_first);

				scores[u] += (float)(abs == IAP_ABS_AFTER ? fabs(s) : s);
			}
			continue;
		}
		for (int u0 = 0; u0 < grp->n_units; u0 += ACC_UNITS) {
			const int nu = grp->n_units - u0 < ACC_UNITS ? grp->n_units - u0 : ACC_UNITS;
			double acc[ACC_UNITS];

			memset(acc, 0, sizeof(acc));
			for (int64_t o = n * per; o < (n + 1) * per; o++) {
				const float *p = t->data + (o * axis + (int64_t)u0 * span) * inner;

				if (span * inner == 1) {
					if (abs_first) {
#pragma omp simd
						for (int u = 0; u < nu; u++)
							acc[u] += fabs((double)p[u]);
					} else {
#pragma omp simd
						for (int u = 0; u < nu; u++)
							acc[u] += (double)p[u];
					}
					continue;
				}
				for (int u = 0; u < nu; u++)
					acc[u] += sum_run(p + (int64_t)u * span * inner, span * inner, abs_first);
			}
			for (int u = 0; u < nu; u++)
				scores[u0 + u] += (float)(abs == IAP_ABS_AFTER ? fabs(acc[u]) : acc[u]);
		}
	}
}

struct score_hook {
	const struct iap_score_opts *so;
	float *const *scores;
};

static int score_hook(void *user, struct iap_graph *g, const struct iap_node *node,
		      const struct iap_tensor *r_out)
{
	struct score_hook *h = user;

	if (node->unit_group >= 0)
		iap_unit_accumulate(&g->groups[node->unit_group], r_out, h->so->abs,
				    h->scores[node->unit_group]);
	return 0;
}

int iap_ruleset_scores(struct iap_graph *g, const struct iap_ruleset *rs,
		       const struct iap_tensor *seed, const struct iap_score_opts *so,
		       float *const *scores, struct iap_tensor *input_relevance,
		       struct iap_error *err)
{
	struct score_hook h = { .so = so, .scores = scores };
	struct iap_walk_opts wo = {
		.hook = score_hook, .hook_user = &h, .want_input = input_relevance != NULL,
	};
	int rc = iap_graph_backward(g, rs, seed, &wo, err);

	if (rc)
		return rc;
	if (input_relevance)
		return iap_tensor_copy(input_relevance, &g->input_r, err);
	return IAP_OK;
}

int iap_attribute_batch(const struct iap_attribution_ops *ops, void *state,
			const struct iap_opts *opts, struct iap_graph *g,
			const struct iap_tensor *x, const int *labels, float *const *scores,
			int *targets_out, struct iap_error *err)
{
	struct iap_score_opts so;
	struct iap_tensor seed = { 0 };
	const struct iap_tensor *logits;
	int *targets;
	int rc;

	iap_score_opts_from(opts, &so);
	targets = malloc((size_t)x->shape[0] * sizeof(*targets));
	if (!targets)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	rc = iap_graph_forward(g, x, err);
	if (rc)
		goto out;
	logits = iap_graph_output(g);
	rc = iap_targets(logits, labels, &so, targets, err);
	if (rc)
		goto out;
	if (ops->ruleset) {
		const struct iap_ruleset *rs = ops->ruleset(state);

		rc = ops->seed ? ops->seed(state, logits, targets, &seed, err)
			       : iap_seed_target(logits, targets, &so, &seed, err);
		if (!rc)
			rc = iap_ruleset_scores(g, rs, &seed, &so, scores, NULL, err);
	} else if (ops->score) {
		rc = ops->score(state, g, x, targets, scores, err);
	} else {
		rc = iap_error_set(err, IAP_EUNSUPPORTED, "attribution plugin has neither a rule set nor a scorer");
	}
	if (!rc && targets_out)
		memcpy(targets_out, targets, (size_t)x->shape[0] * sizeof(*targets));
out:
	iap_tensor_free(&seed);
	free(targets);
	return rc;
}

void iap_scores_finish(const struct iap_graph *g, const struct iap_opts *opts, int64_t n_samples,
		       float *const *scores)
{
	struct iap_score_opts so;

	iap_score_opts_from(opts, &so);
	if (so.reduce != IAP_REDUCE_MEAN || n_samples <= 0)
		return;
	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; u < g->groups[gi].n_units; u++)
			scores[gi][u] /= (float)n_samples;
}
