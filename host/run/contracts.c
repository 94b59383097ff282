/*
 * What plugins hand back, checked where it comes back (see run_internal.h).
 * The host trusts nothing a plugin returns: an out-of-range sample index
 * would otherwise be blamed on whichever plugin reads it next, and a policy
 * that prunes past its caps would be reported under the rate it was asked
 * for. Every failure names the plugin and its file, and is an error.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "run_internal.h"
#include <iaprune/registry.h>

/* Past the end of every score row: a NaN with a payload no computation produces. */
static const uint32_t score_sentinel = 0x7fc1a5e5u;
#define MASK_SENTINEL 0xa5

static const char *kind_of(const struct iap_plugin *p)
{
	return iap_plugin_kind_name((int)p->desc->kind);
}

/* "sampler 'random' (/path/random.so): " */
#define WHO_FMT "%s '%s' (%s): "
#define WHO(p) kind_of(p), (p)->desc->name, (p)->path

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

int iap_contract_samples(const struct iap_plugin *p, const struct iap_dataset *ds, int k,
			 const int64_t *idx, int64_t n, struct iap_error *err)
{
	int classes = ds->info.n_classes, rc = IAP_OK;
	int64_t *sorted = NULL, *avail = NULL, *got = NULL;

	if (n < 0 || n > (int64_t)k * classes)
		return iap_error_set(err, IAP_EPLUGIN, WHO_FMT "returned %lld samples, but %d per class of %d "
				     "classes allow at most %lld", WHO(p), (long long)n, k, classes,
				     (long long)k * classes);
	for (int64_t i = 0; i < n; i++)
		if (idx[i] < 0 || idx[i] >= ds->count)
			return iap_error_set(err, IAP_EPLUGIN, WHO_FMT "returned sample %lld, but the %s split "
					     "has %lld samples (0 to %lld)", WHO(p), (long long)idx[i],
					     iap_split_name(ds->split), (long long)ds->count, (long long)ds->count - 1);
	sorted = malloc(((size_t)n + 1) * sizeof(*sorted));
	avail = calloc((size_t)classes + 1, sizeof(*avail));
	got = calloc((size_t)classes + 1, sizeof(*got));
	if (!sorted || !avail || !got) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	memcpy(sorted, idx, (size_t)n * sizeof(*sorted));
	qsort(sorted, (size_t)n, sizeof(*sorted), cmp_i64);
	for (int64_t i = 1; i < n; i++)
		if (sorted[i] == sorted[i - 1]) {
			rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "returned sample %lld more than once", WHO(p),
					   (long long)sorted[i]);
			goto out;
		}
	/* Labels only (image NULL): every dataset answers these without decoding an image. */
	for (int64_t i = 0; i < ds->count; i++) {
		int label = -1;
		int64_t lo = 0, hi = n;

		rc = ds->ops->load(ds->state, i, NULL, &label, err);
		if (rc)
			goto out;
		if (label < 0 || label >= classes) {
			rc = iap_error_set(err, IAP_EFORMAT, "the %s split's sample %lld has label %d, outside 0 to %d",
					   iap_split_name(ds->split), (long long)i, label, classes - 1);
			goto out;
		}
		avail[label]++;
		while (lo < hi) {           /* is i among the chosen? */
			int64_t mid = lo + (hi - lo) / 2;

			if (sorted[mid] < i)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (lo < n && sorted[lo] == i)
			got[label]++;
	}
	for (int c = 0; c < classes; c++) {
		int64_t want = avail[c] < k ? avail[c] : k;

		if (got[c] != want) {
			rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "returned %lld samples of class %d, but a sampler "
					   "gives %d per class (all of a class with fewer; class %d has %lld)",
					   WHO(p), (long long)got[c], c, k, c, (long long)avail[c]);
			goto out;
		}
	}
out:
	free(sorted);
	free(avail);
	free(got);
	return rc;
}

void iap_contract_scores_arm(const struct iap_graph *g, float *const *scores)
{
	for (int gi = 0; gi < g->n_groups; gi++)
		memcpy(&scores[gi][iap_graph_group(g, gi)->n_units], &score_sentinel, sizeof(float));
}

int iap_contract_scores(const struct iap_plugin *p, const struct iap_graph *g, float *const *scores,
			struct iap_error *err)
{
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = iap_graph_group(g, gi);

		if (memcmp(&scores[gi][grp->n_units], &score_sentinel, sizeof(float)) != 0)
			return iap_error_set(err, IAP_EPLUGIN, WHO_FMT "wrote past the %d scores of '%s'", WHO(p),
					     grp->n_units, grp->name);
		for (int u = 0; u < grp->n_units; u++)
			if (!isfinite(scores[gi][u]))
				return iap_error_set(err, IAP_ENUMERIC, WHO_FMT "score of unit %d of '%s' is not finite (%g)",
						     WHO(p), u, grp->name, (double)scores[gi][u]);
	}
	return IAP_OK;
}

void iap_contract_mask_arm(const struct iap_graph *g, uint8_t *const *keep)
{
	for (int gi = 0; gi < g->n_groups; gi++)
		keep[gi][iap_graph_group(g, gi)->n_units] = MASK_SENTINEL;
}

/* The documented cap: min(floor(max_layer_rate * n), n - min_units), never negative. */
static int layer_cap(const struct iap_policy_input *in, int n)
{
	double cap = floor(in->max_layer_rate * n + 1e-9);

	if (cap > n - in->min_units)
		cap = n - in->min_units;
	return cap > 0 ? (int)cap : 0;
}

int iap_contract_mask(const struct iap_plugin *p, const struct iap_policy_input *in, uint8_t *const *keep,
		      struct iap_error *err)
{
	const struct iap_graph *g = in->graph;
	int64_t total = 0, pruned = 0, touched_total = 0, touched_cap = 0;
	int slack = 0, at_cap = 0, rc = IAP_OK;
	uint8_t *seen = calloc((size_t)g->n_groups + 1, 1);

	if (!seen)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = iap_graph_group(g, gi);
		int off = 0, members = 0, cap;

		if (keep[gi][grp->n_units] != MASK_SENTINEL) {
			rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "wrote past the %d mask entries of '%s'", WHO(p),
					   grp->n_units, grp->name);
			goto out;
		}
		for (int u = 0; u < grp->n_units; u++) {
			if (keep[gi][u] > 1) {
				rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "mask entry %d of '%s' is %d (1 keeps, 0 prunes)",
						   WHO(p), u, grp->name, keep[gi][u]);
				goto out;
			}
			off += !keep[gi][u];
		}
		if (in->ignore && in->ignore[gi] && off) {
			rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "pruned %d units of '%s', which the pipeline ignores",
					   WHO(p), off, grp->name);
			goto out;
		}
		cap = layer_cap(in, grp->n_units);
		if (off > cap) {
			rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "pruned %d of the %d units of '%s' at rate %.2f; "
					   "its cap is %d (max_layer_rate %.2f, min_units %d)", WHO(p), off, grp->n_units,
					   grp->name, in->rate, cap, in->max_layer_rate, in->min_units);
			goto out;
		}
		pruned += off;
		if (!(in->ignore && in->ignore[gi]))
			total += grp->n_units;
		if (seen[gi])
			continue;
		/* The layer: this group and every later one sharing its coupling id, masked alike. */
		for (int gj = gi; gj < g->n_groups; gj++) {
			const struct iap_unit_group *m = iap_graph_group(g, gj);

			if (gj != gi && (grp->coupling < 0 || m->coupling != grp->coupling))
				continue;
			if (m->n_units != grp->n_units || memcmp(keep[gj], keep[gi], (size_t)grp->n_units) != 0) {
				rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "masks of the coupled groups '%s' and '%s' "
						   "differ (they share their units, so they must be pruned alike)",
						   WHO(p), grp->name, m->name);
				goto out;
			}
			seen[gj] = 1;
			members++;
		}
		if (members - 1 > slack)
			slack = members - 1;
		if (off > 0 && !(in->ignore && in->ignore[gi])) {
			touched_total += (int64_t)grp->n_units * members;
			touched_cap += (int64_t)cap * members;
			at_cap |= off == cap;
		}
	}
	{
		int64_t target = llround(in->rate * (double)total), want;

		if (pruned > target) {
			rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "pruned %lld of %lld units (%.1f%%) at rate %.2f: "
					   "more than round(rate x units) = %lld", WHO(p), (long long)pruned,
					   (long long)total, total ? 100.0 * (double)pruned / (double)total : 0.0, in->rate,
					   (long long)target);
			goto out;
		}
		/*
		 * Fewer is allowed where a cap binds, by less than one coupled unit,
		 * and for layers the policy left whole (its own ignore list, which
		 * the host cannot see): the promise is checked over the layers it pruned.
		 */
		want = llround(in->rate * (double)touched_total);
		if (want > touched_cap)
			want = touched_cap;
		if (!at_cap && pruned < want - slack) {
			rc = iap_error_set(err, IAP_EPLUGIN, WHO_FMT "pruned %lld units at rate %.2f, fewer than the "
					   "%lld its layers' %lld units call for, and no cap binds", WHO(p),
					   (long long)pruned, in->rate, (long long)want, (long long)touched_total);
			goto out;
		}
	}
out:
	free(seen);
	return rc;
}

int iap_contract_heatmap(const struct iap_plugin *p, const struct iap_tensor *x, const struct iap_tensor *rel,
			 struct iap_error *err)
{
	char a[96], b[96];

	if (!rel->data || !iap_tensor_same_shape(x, rel))
		return iap_error_set(err, IAP_EPLUGIN, WHO_FMT "explained an input of shape %s with relevance of "
				     "shape %s", WHO(p), iap_tensor_shape_str(x, a, sizeof(a)),
				     iap_tensor_shape_str(rel, b, sizeof(b)));
	/* Checked here, not by the heatmap writer, so the error names the plugin that made it. */
	for (int64_t i = 0, n = iap_tensor_numel(rel); i < n; i++)
		if (!isfinite(rel->data[i]))
			return iap_error_set(err, IAP_ENUMERIC, WHO_FMT "input relevance %lld is not finite (%g)", WHO(p),
					     (long long)i, (double)rel->data[i]);
	return IAP_OK;
}
