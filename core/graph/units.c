/*
 * Prunable units and their masks. A masked unit's output is exactly zero for
 * every input: the mask is applied after the node (or its BatchNorm) runs, and
 * the backward walk applies it again to what flows back, so a pruned unit
 * neither emits nor receives anything.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/threads.h>

void iap_unit_view(const struct iap_tensor *t, int64_t *outer, int64_t *axis_len, int64_t *inner)
{
	if (t->ndim == 4) {
		*outer = t->shape[0];
		*axis_len = t->shape[1];
		*inner = t->shape[2] * t->shape[3];
		return;
	}
	*outer = 1;
	for (int i = 0; i < t->ndim - 1; i++)
		*outer *= t->shape[i];
	*axis_len = t->ndim ? t->shape[t->ndim - 1] : 1;
	*inner = 1;
}

int iap_graph_add_units(struct iap_graph *g, int node, int n_units, int unit_size, int coupling)
{
	struct iap_unit_group *grp;
	const struct iap_node *n;
	int64_t axis;

	if (g->build_failed)
		return -1;
	if (node < 0 || node >= g->n_nodes)
		return iap_graph_fail(g, IAP_EINVAL, "units declared on missing node %d", node);
	n = &g->nodes[node];
	if (n->unit_group >= 0)
		return iap_graph_fail(g, IAP_EINVAL, "%s: units declared twice", n->name);
	/* Per sample: 3 dims (C,H,W or H,T,T) put units on the first axis, else on the last. */
	axis = n->out_ndim == 3 ? n->out_shape[0] : n->out_shape[n->out_ndim - 1];
	if (n_units < 1 || unit_size < 1 || (int64_t)n_units * unit_size != axis)
		return iap_graph_fail(g, IAP_ESHAPE, "%s: %d units of size %d do not tile an axis of %lld",
				      n->name, n_units, unit_size, (long long)axis);
	if (g->n_groups == g->cap_groups) {
		int cap = g->cap_groups ? 2 * g->cap_groups : 32;
		struct iap_unit_group *groups = realloc(g->groups, (size_t)cap * sizeof(*groups));

		if (!groups)
			return iap_graph_fail(g, IAP_ENOMEM, "out of memory");
		g->groups = groups;
		g->cap_groups = cap;
	}
	grp = &g->groups[g->n_groups];
	memset(grp, 0, sizeof(*grp));
	grp->name = strdup(n->name);
	if (!grp->name)
		return iap_graph_fail(g, IAP_ENOMEM, "out of memory");
	grp->node = node;
	grp->mask_node = node;
	grp->n_units = n_units;
	grp->unit_size = unit_size;
	grp->coupling = coupling;
	g->nodes[node].unit_group = g->n_groups;
	return g->n_groups++;
}

int iap_graph_set_mask(struct iap_graph *g, int group, const uint8_t *keep, struct iap_error *err)
{
	struct iap_unit_group *grp;

	if (group < 0 || group >= g->n_groups)
		return iap_error_set(err, IAP_EINVAL, "unit group %d does not exist", group);
	grp = &g->groups[group];
	if (!keep) {
		free(grp->mask);
		grp->mask = NULL;
		return IAP_OK;
	}
	if (!grp->mask) {
		grp->mask = malloc((size_t)grp->n_units);
		if (!grp->mask)
			return iap_error_set(err, IAP_ENOMEM, "out of memory for the mask of %s", grp->name);
	}
	for (int u = 0; u < grp->n_units; u++)
		grp->mask[u] = keep[u] ? 1 : 0;
	return IAP_OK;
}

const uint8_t *iap_unit_own_keep(const struct iap_graph *g, const struct iap_node *node, int n_out,
				 int *kept)
{
	const struct iap_unit_group *grp;
	int k = 0;

	if (node->unit_group < 0 || node->unit_group >= g->n_groups)
		return NULL;
	grp = &g->groups[node->unit_group];
	if (!grp->mask || grp->node != node->id || grp->unit_size != 1 || grp->n_units != n_out)
		return NULL;
	for (int o = 0; o < grp->n_units; o++)
		k += grp->mask[o] != 0;
	if (k == grp->n_units)
		return NULL;
	*kept = k;
	return grp->mask;
}

/*
 * On the team, over (outer, unit): a masked graph runs this after every
 * masked node of every forward and walk. Token layouts (inner = 1) zero one
 * float per unit and row, so those skip memset's call.
 */
void iap_unit_apply_mask(const struct iap_unit_group *grp, struct iap_tensor *t)
{
	int64_t outer, axis, inner;
	const int64_t span = (int64_t)grp->unit_size;

	if (!grp->mask || !t->data)
		return;
	iap_unit_view(t, &outer, &axis, &inner);
	const int64_t run = span * inner;
	float *const data = t->data;
	const uint8_t *const mask = grp->mask;
	const int units = grp->n_units;

#pragma omp parallel for collapse(2) schedule(static) num_threads(iap_par_nt(outer * axis * inner))
	for (int64_t o = 0; o < outer; o++)
		for (int u = 0; u < units; u++) {
			float *p = data + (o * axis + (int64_t)u * span) * inner;

			if (mask[u])
				continue;
			if (run >= 16) {
				memset(p, 0, (size_t)run * sizeof(float));
				continue;
			}
			for (int64_t k = 0; k < run; k++)
				p[k] = 0.0f;
		}
}

double iap_unit_sample_sum(const struct iap_unit_group *grp, const struct iap_tensor *t, int64_t n,
			   int u, int abs_first)
{
	int64_t outer, axis, inner, per;
	const int64_t span = (int64_t)grp->unit_size;
	/* Double: a 224² map summed in float loses the small channels. */
	double s = 0.0;

	iap_unit_view(t, &outer, &axis, &inner);
	per = outer / t->shape[0]; /* rows of one sample: tokens for N×T×D, 1 for NCHW */
	for (int64_t o = n * per; o < (n + 1) * per; o++) {
		const float *p = t->data + (o * axis + (int64_t)u * span) * inner;

		for (int64_t k = 0; k < span * inner; k++)
			s += abs_first ? fabs((double)p[k]) : (double)p[k];
	}
	return s;
}

void iap_unit_reduce(const struct iap_unit_group *grp, const struct iap_tensor *t, int abs_first,
		     float *scores)
{
	for (int64_t n = 0; n < t->shape[0]; n++)
		for (int u = 0; u < grp->n_units; u++)
			scores[n * grp->n_units + u] = (float)iap_unit_sample_sum(grp, t, n, u, abs_first);
}

int64_t iap_graph_unit_count(const struct iap_graph *g)
{
	int64_t total = 0;

	for (int i = 0; i < g->n_groups; i++)
		total += g->groups[i].n_units;
	return total;
}
