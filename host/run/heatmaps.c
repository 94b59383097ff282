/*
 * Per-image heatmaps of every attribution with an explain function
 * (report.heatmaps per class), written into the report being staged through
 * the explain service (host/explain), the same one `iaprune explain` uses;
 * run_write_heatmaps is its entry point.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/explain.h>

#include "stages.h"

/*
 * The first per_class images of every class of the evaluation split, explained
 * by every method that has input relevance and drawn by the explain service:
 * over the stored image where the dataset has one, else over the model's
 * input with the dataset's normalisation undone; small inputs enlarged.
 */
int run_write_heatmaps(struct run *r, int per_class)
{
	const struct iap_dataset *ds = &r->split[r->eval_split];
	const struct iap_explain_write_opts wo = { .enlarge = 1 };
	int classes = ds->info.n_classes, rc = IAP_OK;
	int64_t *pick = calloc((size_t)per_class * (size_t)classes + 1, sizeof(*pick));
	int *taken = calloc((size_t)classes + 1, sizeof(int));
	struct iap_tensor x = { 0 }, rel = { 0 };
	struct iap_explain_norm norm;
	int64_t n = 0;
	char dir[4096], file[4200];

	if (!pick || !taken) {
		free(pick);
		free(taken);
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	rc = iap_explain_norm_from_opts(r->ds_opts, (int)ds->info.in_shape[0], &norm, r->err);
	/* The first per_class images of every class in the evaluation split. */
	for (int64_t i = 0; !rc && i < ds->count && n < (int64_t)per_class * classes; i++) {
		int label;
		int64_t one = i;

		rc = run_load_batch(r, ds, &one, 1, &x, &label);
		if (rc)
			goto out;
		if (label >= 0 && label < classes && taken[label] < per_class) {
			taken[label]++;
			pick[n++] = i;
		}
	}
	snprintf(dir, sizeof(dir), "%s/heatmaps", r->report_dir);
	rc = rc ? rc : iap_mkdir_p(dir, r->err);
	for (int a = 0; !rc && a < r->n_attr; a++) {
		const struct iap_attribution_ops *ops = r->attr[a].plugin->desc->ops.attribution;
		void *state = NULL;

		if (!ops->explain)
			continue;
		rc = iap_call_create(r->attr[a].plugin, r->attr[a].opts, r->g, &state, r->err);
		for (int64_t i = 0; !rc && i < n; i++) {
			int label, target;
			struct iap_score_opts so;
			struct iap_explain_view v = { 0 };

			rc = run_load_batch(r, ds, &pick[i], 1, &x, &label);
			rc = rc ? rc : iap_graph_forward(r->g, &x, r->err);
			if (!rc) {
				iap_score_opts_from(r->attr[a].opts, &so);
				rc = iap_targets(iap_graph_output(r->g), &label, &so, &target, r->err);
			}
			rc = rc ? rc : iap_explain_relevance(r->attr[a].plugin, state, r->g, &x, target, &rel, r->err);
			rc = rc ? rc : iap_explain_view_sample(ds, pick[i], &x, &norm, &v, r->err);
			snprintf(file, sizeof(file), "%s/%s-class%d-%03" PRId64 ".png", dir, r->attr[a].name, label, i);
			rc = rc ? rc : iap_explain_write(file, &rel, &v, &wo, r->err);
			iap_explain_view_free(&v);
		}
		iap_call_destroy(r->attr[a].plugin, state);
	}
out:
	iap_tensor_free(&x);
	iap_tensor_free(&rel);
	free(pick);
	free(taken);
	return rc;
}
