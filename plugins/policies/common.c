/* Shared by the policy plugins: options, ignore patterns, coupled layers, normalisation, caps. */
#include "config.h"

#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *const norm_choices[] = {
	[IAP_POL_NORM_NONE] = "none", [IAP_POL_NORM_L1] = "l1", [IAP_POL_NORM_L2] = "l2",
	[IAP_POL_NORM_MAX] = "max", NULL,
};
_Static_assert(sizeof(norm_choices) / sizeof(norm_choices[0]) == IAP_POL_NORM_COUNT + 1,
	       "norm_choices must match enum iap_pol_norm");

const struct iap_option iap_pol_options[] = {
	{ .name = "normalize", .type = IAP_OPT_ENUM, .def = "none", .choices = norm_choices,
	  .help = "divide each layer's scores by their L1 norm, L2 norm or largest magnitude first" },
	{ .name = "ignore", .type = IAP_OPT_STRING, .def = "",
	  .help = "comma-separated fnmatch patterns of unit group names never to prune" },
	{ .name = NULL },
};

void iap_pol_opts_parse(const struct iap_opts *opts, struct iap_pol_opts *o)
{
	int norm = iap_opts_enum(opts, "normalize");

	o->normalize = norm >= 0 && norm < IAP_POL_NORM_COUNT ? (enum iap_pol_norm)norm : IAP_POL_NORM_NONE;
	o->ignore = iap_opts_str(opts, "ignore");
}

/* 1 when name matches one of the comma-separated patterns (blanks around them are ignored). */
static int name_ignored(const char *patterns, const char *name)
{
	const char *p = patterns;

	while (*p) {
		char pat[256];
		size_t len;
		const char *end;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		end = p + strcspn(p, ",");
		len = (size_t)(end - p);
		while (len && (p[len - 1] == ' ' || p[len - 1] == '\t'))
			len--;
		if (len && len < sizeof(pat)) {
			memcpy(pat, p, len);
			pat[len] = '\0';
			if (fnmatch(pat, name ? name : "", 0) == 0)
				return 1;
		}
		p = end;
	}
	return 0;
}

static double group_norm(enum iap_pol_norm how, const float *s, int n)
{
	double acc = 0;

	for (int u = 0; u < n; u++) {
		double a = fabs((double)s[u]);

		if (how == IAP_POL_NORM_L1)
			acc += a;
		else if (how == IAP_POL_NORM_L2)
			acc += a * a;
		else if (a > acc)
			acc = a;
	}
	return how == IAP_POL_NORM_L2 ? sqrt(acc) : acc;
}

static int check_input(const char *policy, const struct iap_policy_input *in, uint8_t *const *keep,
		       struct iap_error *err)
{
	const struct iap_graph *g = in->graph;

	if (!g || !keep || (g->n_groups && !in->scores))
		return iap_error_set(err, IAP_EINVAL, "policy '%s': missing graph, scores or masks", policy);
	if (!(in->rate >= 0 && in->rate <= 1))
		return iap_error_set(err, IAP_EINVAL, "policy '%s': rate %g is outside [0, 1]", policy, in->rate);
	if (!(in->max_layer_rate >= 0 && in->max_layer_rate <= 1))
		return iap_error_set(err, IAP_EINVAL, "policy '%s': max_layer_rate %g is outside [0, 1]",
				     policy, in->max_layer_rate);
	if (in->min_units < 0)
		return iap_error_set(err, IAP_EINVAL, "policy '%s': min_units %d is negative", policy,
				     in->min_units);
	for (int gi = 0; gi < g->n_groups; gi++) {
		if (!in->scores[gi] || !keep[gi])
			return iap_error_set(err, IAP_EINVAL, "policy '%s': group '%s' has no scores or mask",
					     policy, iap_graph_group(g, gi)->name);
		for (int u = 0; u < iap_graph_group(g, gi)->n_units; u++)
			if (!isfinite(in->scores[gi][u]))
				return iap_error_set(err, IAP_ENUMERIC, "policy '%s': group '%s' unit %d: "
						     "score is not finite", policy, iap_graph_group(g, gi)->name, u);
	}
	return IAP_OK;
}

/*
 * Layer l's units that the prior mask prunes: marked fixed and pruned in
 * keep. Every member of a coupled layer must agree.
 */
static int prior_units(const char *policy, const struct iap_policy_input *in, struct iap_pol_plan *plan,
		       struct iap_pol_layer *l, uint8_t *const *keep, struct iap_error *err)
{
	const struct iap_graph *g = in->graph;

	if (!in->prior_keep)
		return IAP_OK;
	for (int u = 0; u < l->n_units; u++) {
		int off = 0;

		for (int m = 0; m < l->n_members; m++) {
			const uint8_t *row = in->prior_keep[l->members[m]];

			off += row && !row[u];
		}
		if (!off)
			continue;
		if (off != l->n_members)
			return iap_error_set(err, IAP_EINVAL, "policy '%s': the prior mask prunes unit %d in only "
					     "some of the coupled groups of '%s'", policy, u,
					     iap_graph_group(g, l->members[0])->name);
		l->fixed[u] = 1;
		l->n_fixed++;
		iap_pol_prune(plan, (int)(l - plan->layers), u, keep);
	}
	plan->n_fixed += (int64_t)l->n_fixed * l->n_members;
	if (l->n_fixed > l->max_prune)
		return iap_error_set(err, IAP_EINVAL, "policy '%s': the prior mask prunes %d units of '%s', "
				     "more than its cap of %d", policy, l->n_fixed, iap_graph_group(g, l->members[0])->name,
				     l->max_prune);
	return IAP_OK;
}

/* The prior mask fits the target and prunes nothing in ignored groups. */
static int prior_check(const char *policy, const struct iap_policy_input *in, const uint8_t *skip,
		       const struct iap_pol_plan *plan, struct iap_error *err)
{
	const struct iap_graph *g = in->graph;

	if (!in->prior_keep)
		return IAP_OK;
	for (int gi = 0; gi < g->n_groups; gi++)
		for (int u = 0; skip[gi] && in->prior_keep[gi] && u < iap_graph_group(g, gi)->n_units; u++)
			if (!in->prior_keep[gi][u])
				return iap_error_set(err, IAP_EINVAL, "policy '%s': the prior mask prunes unit %d "
						     "of the ignored group '%s'", policy, u, iap_graph_group(g, gi)->name);
	if (plan->n_fixed > plan->target)
		return iap_error_set(err, IAP_EINVAL, "policy '%s': the prior mask prunes %lld units, more "
				     "than rate %g allows (%lld)", policy, (long long)plan->n_fixed, in->rate,
				     (long long)plan->target);
	return IAP_OK;
}

/* The plan's buffers, sized for every group (+1: zero groups is valid and calloc(0) may return NULL). */
static int plan_alloc(const char *policy, const struct iap_graph *g, struct iap_pol_plan *plan,
		      struct iap_error *err)
{
	int64_t n_scores = 0;

	for (int gi = 0; gi < g->n_groups; gi++)
		n_scores += iap_graph_group(g, gi)->n_units;
	plan->layers = calloc((size_t)g->n_groups + 1, sizeof(*plan->layers));
	plan->member_buf = calloc((size_t)g->n_groups + 1, sizeof(*plan->member_buf));
	plan->score_buf = calloc((size_t)n_scores + 1, sizeof(*plan->score_buf));
	plan->fixed_buf = calloc((size_t)n_scores + 1, 1);
	if (!plan->layers || !plan->member_buf || !plan->score_buf || !plan->fixed_buf)
		return iap_error_set(err, IAP_ENOMEM, "policy '%s': out of memory", policy);
	return IAP_OK;
}

/* skip[g]: never prune group g (ignore list or pattern); one ignored member makes its whole coupled set so. */
static void mark_skipped(const struct iap_pol_opts *o, const struct iap_policy_input *in, uint8_t *skip)
{
	const struct iap_graph *g = in->graph;

	for (int gi = 0; gi < g->n_groups; gi++)
		skip[gi] = (in->ignore && in->ignore[gi]) ||
			   (o->ignore && name_ignored(o->ignore, iap_graph_group(g, gi)->name));
	for (int gi = 0; gi < g->n_groups; gi++) {
		if (!skip[gi] || iap_graph_group(g, gi)->coupling < 0)
			continue;
		for (int gj = 0; gj < g->n_groups; gj++)
			if (iap_graph_group(g, gj)->coupling == iap_graph_group(g, gi)->coupling)
				skip[gj] = 1;
	}
}

/*
 * Layer l from group gi and the groups coupled to it (done[] marks them):
 * members, summed normalised scores, cap. *n_members and *n_scores count
 * what the plan's buffers have handed out.
 */
static int add_layer(const char *policy, const struct iap_pol_opts *o, const struct iap_policy_input *in,
		     const uint8_t *skip, uint8_t *done, int gi, struct iap_pol_plan *plan, int *n_members,
		     int64_t *n_scores, struct iap_error *err)
{
	const struct iap_graph *g = in->graph;
	const struct iap_unit_group *grp = iap_graph_group(g, gi);
	struct iap_pol_layer *l = &plan->layers[plan->n_layers++];
	double cap;

	l->members = plan->member_buf + *n_members;
	l->n_units = grp->n_units;
	l->score = plan->score_buf + *n_scores;
	l->fixed = plan->fixed_buf + *n_scores;
	*n_scores += grp->n_units;
	for (int gj = gi; gj < g->n_groups; gj++) {
		const struct iap_unit_group *m = iap_graph_group(g, gj);
		double norm;

		if (gj != gi && (grp->coupling < 0 || m->coupling != grp->coupling || skip[gj]))
			continue;
		if (m->n_units != grp->n_units)
			return iap_error_set(err, IAP_EINVAL, "policy '%s': coupled groups '%s' (%d units) "
					     "and '%s' (%d units) differ in size", policy, grp->name,
					     grp->n_units, m->name, m->n_units);
		done[gj] = 1;
		l->members[l->n_members++] = gj;
		(*n_members)++;
		norm = o->normalize == IAP_POL_NORM_NONE ? 0 : group_norm(o->normalize, in->scores[gj], m->n_units);
		/* A group whose scores are all zero has norm 0: its scores stay zero. */
		for (int u = 0; u < m->n_units; u++)
			l->score[u] += norm > 0 ? in->scores[gj][u] / norm : in->scores[gj][u];
	}
	/* The epsilon keeps 0.9 * 10 = 8.999... from flooring to 8. */
	cap = floor(in->max_layer_rate * l->n_units + 1e-9);
	if (cap > l->n_units - in->min_units)
		cap = l->n_units - in->min_units;
	l->max_prune = cap > 0 ? (int)cap : 0;
	plan->total += (int64_t)l->n_units * l->n_members;
	return IAP_OK;
}

int iap_pol_plan_build(const char *policy, const struct iap_pol_opts *o, const struct iap_policy_input *in,
		       uint8_t *const *keep, struct iap_pol_plan *plan, struct iap_error *err)
{
	const struct iap_graph *g = in->graph;
	uint8_t *skip = NULL, *done = NULL;
	int64_t n_scores = 0;
	int rc, nm = 0;

	memset(plan, 0, sizeof(*plan));
	rc = check_input(policy, in, keep, err);
	if (rc)
		return rc;
	skip = calloc((size_t)g->n_groups + 1, 1);
	done = calloc((size_t)g->n_groups + 1, 1);
	rc = !skip || !done ? iap_error_set(err, IAP_ENOMEM, "policy '%s': out of memory", policy)
			    : plan_alloc(policy, g, plan, err);
	if (rc)
		goto out;
	for (int gi = 0; gi < g->n_groups; gi++)
		memset(keep[gi], 1, (size_t)iap_graph_group(g, gi)->n_units);
	mark_skipped(o, in, skip);
	for (int gi = 0; gi < g->n_groups; gi++) {
		if (skip[gi] || done[gi])
			continue;
		rc = add_layer(policy, o, in, skip, done, gi, plan, &nm, &n_scores, err);
		if (rc)
			goto out;
		rc = prior_units(policy, in, plan, &plan->layers[plan->n_layers - 1], keep, err);
		if (rc)
			goto out;
	}
	plan->target = llround(in->rate * (double)plan->total);
	if (plan->target > plan->total)
		plan->target = plan->total;
	rc = prior_check(policy, in, skip, plan, err);

out:
	free(skip);
	free(done);
	if (rc)
		iap_pol_plan_free(plan);
	return rc;
}

void iap_pol_plan_free(struct iap_pol_plan *plan)
{
	free(plan->layers);
	free(plan->member_buf);
	free(plan->score_buf);
	free(plan->fixed_buf);
	memset(plan, 0, sizeof(*plan));
}

void iap_pol_prune(const struct iap_pol_plan *plan, int l, int u, uint8_t *const *keep)
{
	const struct iap_pol_layer *layer = &plan->layers[l];

	for (int m = 0; m < layer->n_members; m++)
		keep[layer->members[m]][u] = 0;
}
