/*
 * The report stage: thresholds, per-layer counts, explanation
 * preservation, latency, the report files, heatmaps and the best pruned
 * model, staged and published as one report generation.
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

int run_save_pruned(struct run *r, const struct config *best, double rate, const char *masked_path,
		    const char *compact_path)
{
	struct iap_graph *small = NULL;
	char *keep = NULL;
	char note[512];
	int rc = run_apply_rate(r, best, rate);

	if (rc)
		return rc;
	snprintf(note, sizeof(note), "%s / %s / %s at %.2f", best->attr->name, best->smp ? best->smp->name : "-",
		 r->policy->desc->name, rate);
	if (compact_path) {
		rc = iap_graph_compact(r->g, 0, &small, r->err);
		keep = rc ? NULL : iap_graph_keep_metadata(r->g, r->err);
		if (!rc && !keep)
			rc = r->err ? r->err->code : IAP_ENOMEM;
		rc = rc ? rc : run_save_model(r, small, compact_path, IAP_KEEP_META_KEY, keep);
		iap_graph_free(small);
		free(keep);
	}
	if (!rc && masked_path) {
		/*
		 * The masked model as plain weights with the original shapes: a copy
		 * of the graph with the zeros baked in (filters, biases and the
		 * following BatchNorm), so any loader reproduces the masked outputs.
		 */
		struct iap_graph *copy = NULL;

		rc = iap_call_build(r->model_plugin, r->model_opts, &r->split[IAP_SPLIT_TRAIN].info, &copy, r->err);
		for (int i = 0; !rc && i < copy->n_nodes; i++)
			for (int k = 0; k < copy->nodes[i].n_params; k++)
				memcpy(copy->nodes[i].params[k].value.data, r->g->nodes[i].params[k].value.data,
				       (size_t)iap_tensor_numel(&copy->nodes[i].params[k].value) * sizeof(float));
		for (int gi = 0; !rc && gi < r->g->n_groups; gi++)
			rc = iap_graph_set_mask(copy, gi, r->g->groups[gi].mask, r->err);
		rc = rc ? rc : iap_graph_bake_masks(copy, r->err);
		for (int gi = 0; !rc && gi < copy->n_groups; gi++)
			rc = iap_graph_set_mask(copy, gi, NULL, r->err);
		/* Which units are pruned, so 'iaprune info' counts them (the graph is not compacted on load). */
		keep = rc ? NULL : iap_graph_keep_metadata(r->g, r->err);
		if (!rc && !keep)
			rc = r->err ? r->err->code : IAP_ENOMEM;
		rc = rc ? rc : run_save_model_meta(r, copy, masked_path, "iaprune.pruning", note, IAP_MASK_META_KEY, keep);
		free(keep);
		keep = NULL;
		iap_graph_free(copy);
	}
	run_clear_masks(r);
	return rc;
}

/* What the report's optional parts hold on to until the report is written. */
struct extras {
	struct iap_preserve pv;
	int have_pv;
	float *maps;                          /* pruned maps of the preservation images at the gallery's rate */
	int *pred;
	struct iap_report_gallery_item *items;
	struct iap_tensor *natives;           /* [gallery.n] the items' stored images (native.h) */
	struct iap_report_gallery gallery;
	char expl_config[256], gallery_text[300];
};

static int pv_apply(void *user, double rate)
{
	struct run *r = ((void **)user)[0];
	const struct config *c = ((void **)user)[1];

	return run_apply_rate(r, c, rate);
}

static void pv_clear(void *user)
{
	run_clear_masks(((void **)user)[0]);
}

/*
 * The gallery: the first report.heatmaps images per class of the
 * preservation set, dense and pruned maps of configuration c at its
 * threshold (or the first rate).
 */
static int report_gallery(struct run *r, struct iap_report *rep, struct extras *x, const struct config *c,
			  int per_class_maps)
{
	double rate = c->threshold > 0 ? c->threshold : r->n_rows ? r->rows[0].rate : 0;
	int rc;

	x->maps = malloc((size_t)x->pv.n * (size_t)x->pv.h * (size_t)x->pv.w * sizeof(float));
	x->pred = malloc((size_t)x->pv.n * sizeof(int));
	x->items = calloc((size_t)x->pv.n, sizeof(*x->items));
	x->natives = calloc((size_t)x->pv.n, sizeof(*x->natives));
	if (!x->maps || !x->pred || !x->items || !x->natives)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	{
		double rho, topk;
		int *taken = calloc((size_t)x->pv.ds->info.n_classes + 1, sizeof(int));

		if (!taken)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		rc = iap_preserve_measure(&x->pv, rate, &rho, &topk, x->maps, x->pred, r->err);
		for (int i = 0; !rc && i < x->pv.n; i++) {
			struct iap_report_gallery_item *it = &x->items[x->gallery.n];
			const int64_t plane = (int64_t)x->pv.h * x->pv.w;

			if (taken[x->pv.labels[i]]++ >= per_class_maps)
				continue;
			it->image = x->pv.images + i * x->pv.c * plane;
			it->dense_map = x->pv.dense_maps + i * plane;
			it->pruned_map = x->maps + i * plane;
			it->label = x->pv.labels[i];
			it->dense_pred = x->pv.dense_pred[i];
			it->pruned_pred = x->pred[i];
			it->index = x->pv.idx[i];
			x->gallery.n++;
			rc = iap_native_item(x->pv.ds, it, &x->natives[x->gallery.n - 1], r->err);
		}
		free(taken);
	}
	if (rc) {
		iap_error_prefix(r->err, "heatmap gallery");
		return rc;
	}
	snprintf(x->gallery_text, sizeof(x->gallery_text), "%s at %.2f", x->expl_config, rate);
	x->gallery.channels = x->pv.c;
	x->gallery.h = x->pv.h;
	x->gallery.w = x->pv.w;
	x->gallery.method = c->attr->name;
	x->gallery.pruned = x->gallery_text;
	x->gallery.items = x->items;
	rep->gallery = &x->gallery;
	return IAP_OK;
}

/*
 * Explanation preservation on the best configuration whose method gives
 * input relevance (the best one, unless it is data-free): every evaluated
 * rate of it gets ρ and the top-k overlap, and the gallery shows its maps
 * at its lossless threshold against the dense model's.
 */
static int explanation_extras(struct run *r, struct iap_report *rep, struct extras *x, int per_class_maps,
			      const double *table, int n_table)
{
	const struct config *c = NULL;
	long per_class = r->p->report.explain_images;
	void *user[2];
	int rc;

	if (per_class < 1)
		return IAP_OK;
	for (int i = 0; i < r->n_cfg; i++) {
		const struct config *k = &r->cfg[i];

		if (k->attr->plugin->desc->ops.attribution->explain && (!c || k->threshold > c->threshold + 1e-12))
			c = k;
	}
	if (!c || r->split[r->eval_split].info.in_ndim != 3)
		return IAP_OK;
	user[0] = r;
	user[1] = (void *)c;
	x->pv.g = r->g;
	x->pv.ds = &r->split[r->eval_split];
	x->pv.plugin = c->attr->plugin;
	x->pv.opts = c->attr->opts;
	x->pv.per_class = (int)(per_class > per_class_maps ? per_class : per_class_maps);
	x->pv.topk_frac = 0.1;
	x->pv.apply = pv_apply;
	x->pv.clear = pv_clear;
	x->pv.user = user;
	run_say(r, IAP_LOG_STAGE, "explanation preservation: %s / %s, %d images per class", c->attr->name,
	    c->smp ? c->smp->name : "-", x->pv.per_class);
	x->have_pv = 1;
	rc = iap_preserve_init(&x->pv, r->err);
	for (int i = 0; !rc && i < r->n_rows; i++) {
		struct iap_report_row *row = &r->rows[i];

		int wanted = fabs(row->rate - c->threshold) < 1e-9;

		if (row->config != c->index)
			continue;
		/* The paper's rates and the threshold: explaining at every curve rate costs too much on big models. */
		for (int j = 0; j < n_table; j++)
			wanted |= fabs(row->rate - table[j]) < 1e-9;
		if (!wanted)
			continue;
		rc = iap_preserve_measure(&x->pv, row->rate, &row->expl_rho, &row->expl_topk, NULL, NULL, r->err);
		row->has_expl = !rc;
	}
	if (rc) {
		iap_error_prefix(r->err, "explanation preservation");
		return rc;
	}
	snprintf(x->expl_config, sizeof(x->expl_config), "%s / %s / %s", c->attr->name, c->smp ? c->smp->name : "-",
		 r->policy->desc->name);
	rep->expl_method = c->attr->name;
	rep->expl_config = x->expl_config;
	rep->expl_images = x->pv.n;
	rep->expl_topk_frac = x->pv.topk_frac;
	if (per_class_maps < 1)
		return IAP_OK;
	return report_gallery(r, rep, x, c, per_class_maps);
}

static void extras_free(struct extras *x)
{
	if (x->have_pv)
		iap_preserve_free(&x->pv);
	free(x->maps);
	free(x->pred);
	free(x->items);
	for (int i = 0; x->natives && i < x->gallery.n; i++)
		iap_tensor_free(&x->natives[i]);
	free(x->natives);
}

/*
 * Forward latency at batch 1 and 16 of the dense model and of the compacted
 * best configuration at its threshold (report.latency).
 */
static int latency_extras(struct run *r, struct iap_report *rep, const struct config *best)
{
	const struct iap_dataset *ds = &r->split[r->eval_split];
	static const int batches[2] = { 1, 16 };
	struct iap_graph *small = NULL;
	struct iap_tensor x = { 0 };
	int64_t idx[16];
	int labels[16], rc;

	if (!r->p->report.latency || !best || best->threshold <= 0)
		return IAP_OK;
	rc = run_apply_rate(r, best, best->threshold);
	rc = rc ? rc : iap_graph_compact(r->g, 0, &small, r->err);
	run_clear_masks(r);
	for (int i = 0; i < 16; i++)
		idx[i] = i % ds->count;
	rep->latency.repeats = 10;
	for (int k = 0; !rc && k < 2; k++) {
		rep->latency.batch[k] = batches[k];
		rc = run_load_batch(r, ds, idx, batches[k], &x, labels);
		rc = rc ? rc : iap_forward_latency(r->g, &x, rep->latency.repeats, &rep->latency.dense_ms[k], r->err);
		rc = rc ? rc : iap_forward_latency(small, &x, rep->latency.repeats, &rep->latency.compact_ms[k], r->err);
	}
	rep->latency.has = !rc;
	if (!rc)
		run_say(r, IAP_LOG_INFO, "latency batch 1: dense %.2f ms, compacted %.2f ms; batch 16: %.2f ms, %.2f ms",
		    rep->latency.dense_ms[0], rep->latency.compact_ms[0], rep->latency.dense_ms[1], rep->latency.compact_ms[1]);
	iap_tensor_free(&x);
	iap_graph_free(small);
	return rc;
}

/* The report's texts and tables built from the run, held until the report is written. */
struct report_parts {
	struct iap_report_threshold *th;
	struct iap_report_layer *layers;
	int n_layers;
	const struct config *best;
	char best_text[256], model_text[512], data_text[512], notes[1024];
};

/* One threshold per configuration (its key included), and the best configuration. */
static int report_thresholds(struct run *r, struct report_parts *P)
{
	P->th = calloc((size_t)r->n_cfg + 1, sizeof(*P->th));
	if (!P->th)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int i = 0; i < r->n_cfg; i++) {
		const struct config *c = &r->cfg[i];
		struct iap_report_threshold *t = &P->th[i];

		t->sampler = c->smp ? c->smp->name : "-";
		t->attribution = c->attr->name;
		t->policy = r->policy->desc->name;
		t->rate = c->threshold;
		t->has_ci = r->bs.n_boot > 0;
		t->lo = c->th_lo;
		t->hi = c->th_hi;
		t->config = c->index;
		if (!P->best || c->threshold > P->best->threshold + 1e-12)
			P->best = c;
	}
	return IAP_OK;
}

/* "vgg (depth=11, width=0.125)": the model plugin and the options the pipeline set. */
static void report_model_text(const struct run *r, char *text, size_t len)
{
	snprintf(text, len, "%s", r->model_plugin->desc->name);
	for (int i = 0; i < iap_opts_count(r->model_opts); i++) {
		char v[128];
		size_t used = strlen(text);

		if (!iap_opts_is_set(r->model_opts, iap_opts_name(r->model_opts, i)))
			continue;
		iap_opts_format(r->model_opts, i, v, sizeof(v));
		snprintf(text + used, len - used, "%s%s=%s", strchr(text, '(') ? ", " : " (",
			 iap_opts_name(r->model_opts, i), v);
	}
	if (strchr(text, '('))
		strncat(text, ")", len - strlen(text) - 1);
}

/* The best configuration's line and its units pruned per layer at its threshold. */
static void report_best(struct run *r, struct report_parts *P)
{
	const struct config *best = P->best;

	if (!best)
		return;
	snprintf(P->best_text, sizeof(P->best_text), "%s / %s / %s: lossless up to %.2f", best->attr->name,
		 best->smp ? best->smp->name : "-", r->policy->desc->name, best->threshold);
	P->layers = calloc((size_t)r->g->n_groups + 1, sizeof(*P->layers));
	if (P->layers && run_apply_rate(r, best, best->threshold) == IAP_OK) {
		for (int gi = 0; gi < r->g->n_groups; gi++) {
			const struct iap_unit_group *grp = &r->g->groups[gi];

			P->layers[gi].name = grp->name;
			P->layers[gi].units = grp->n_units;
			for (int u = 0; grp->mask && u < grp->n_units; u++)
				P->layers[gi].pruned += !grp->mask[u];
		}
		P->n_layers = r->g->n_groups;
	}
	run_clear_masks(r);
}

/* How the rates were applied: the policy with its options, the caps, the cache, the iterations. */
static void report_notes(const struct run *r, char *notes, size_t len)
{
	char popts[256] = "";

	for (int i = 0; i < iap_opts_count(r->policy_opts); i++) {
		char v[96];
		size_t used = strlen(popts);

		iap_opts_format(r->policy_opts, i, v, sizeof(v));
		snprintf(popts + used, sizeof(popts) - used, "%s%s=%s", used ? ", " : "",
			 iap_opts_name(r->policy_opts, i), v[0] ? v : "\"\"");
	}
	snprintf(notes, len,
		 "Rates are fractions of all prunable units (conv channels, hidden neurons, attention heads), "
		 "ranked by the '%s' policy (%s) with at most %.0f%% of any layer pruned and at least %d "
		 "unit(s) kept per layer. Unit scores are cached under cache/ keyed by the model's weights, "
		 "the method, its options and the samples.",
		 r->policy->desc->name, popts[0] ? popts : "no options", 100 * r->max_layer_rate, r->min_units);
	if (r->iterations > 1) {
		size_t used = strlen(notes);

		snprintf(notes + used, len - used,
			 " Iterative pruning: each rate reached in %d equal steps, the scores recomputed on the "
			 "masked model before each step after the first (data-free criteria in one step).",
			 r->iterations);
	}
}

static const char *report_ranking(const struct run *r)
{
	return r->ranking == IAP_RANK_RAW ?
	       "magnitude and random scores ranked globally as they are, unnormalised "
	       "(pruning.baseline_ranking: raw); small-norm layers go first." :
	       r->ranking == IAP_RANK_L2 ?
	       "magnitude and random scores divided by their layer's L2 norm before the global ranking "
	       "(pruning.baseline_ranking: l2, the layer-wise normalisation of Molchanov et al. 2017); "
	       "the attribution methods are ranked as the policy says." :
	       "magnitude and random scores divided by their layer's mean |score| before the global ranking "
	       "(pruning.baseline_ranking: mean); the attribution methods are ranked as the policy says.";
}

/* The report's fields from the run and the parts. */
static void report_fill(const struct run *r, const struct report_parts *P, const double *table, int n_table,
			struct iap_report *rep)
{
	rep->title = r->p->name;
	rep->model = P->model_text;
	rep->dataset = P->data_text;
	rep->params = r->params;
	rep->macs = r->macs;
	rep->tolerance = r->tolerance;
	rep->baseline = r->baseline;
	rep->n_rows = r->n_rows;
	rep->rows = r->rows;
	rep->n_thresholds = r->n_cfg;
	rep->thresholds = P->th;
	rep->n_table_rates = n_table;
	rep->table_rates = table;
	rep->layers = P->layers;
	rep->n_layers = P->n_layers;
	rep->best = P->best ? P->best_text : NULL;
	rep->notes = P->notes;
	rep->n_finetuned = r->n_ft_rows;
	rep->finetuned = r->ft_rows;
	rep->finetune = r->ft_note[0] ? r->ft_note : NULL;
	rep->n_classes = r->split[r->eval_split].info.n_classes;
	rep->class_names = r->split[r->eval_split].info.class_names;
	rep->has_stats = 1;
	rep->n_boot = r->bs.n_boot;
	rep->boot_seed = r->seed ^ 0xb0075ULL;
	rep->baseline_acc_lo = r->base_acc_lo;
	rep->baseline_acc_hi = r->base_acc_hi;
	rep->baseline_sensitivity = r->base_sens;
	rep->baseline_specificity = r->base_spec;
	rep->n_images = r->split[r->eval_split].count;
	rep->labels = r->labels;
	rep->baseline_pred = r->base_pred;
	rep->baseline_confidence = r->base_conf;
	rep->ranking = report_ranking(r);
}

/* Every report file staged and the whole set published with one rename (generation.h). */
static int report_publish(struct run *r, const struct iap_report *rep, const struct config *best, int per_class_maps)
{
	struct iap_generation gen;
	int rc = iap_generation_begin(&gen, run_outpath(r, "report"), r->err);

	if (rc)
		return rc;
	r->report_dir = gen.stage;
	rc = iap_report_write(rep, r->report_dir, r->err);
	if (!rc && per_class_maps > 0) {
		run_say(r, IAP_LOG_STAGE, "heatmaps: %d per class", per_class_maps);
		rc = run_write_heatmaps(r, per_class_maps);
	}
	if (!rc && r->p->report.save_pruned && best && best->threshold > 0) {
		char masked[4096], compact[4096];

		snprintf(masked, sizeof(masked), "%s/pruned-masked.safetensors", r->report_dir);
		snprintf(compact, sizeof(compact), "%s/pruned-compact.safetensors", r->report_dir);
		rc = run_save_pruned(r, best, best->threshold, masked, compact);
	}
	r->report_dir = NULL;
	if (rc)
		iap_generation_abort(&gen);
	else
		rc = iap_generation_commit(&gen, r->err);
	return rc;
}

/* The report stage: tables, explanation preservation, latency, then the files, published at once. */
int run_stage_report(struct run *r, const double *table, int n_table, int per_class_maps)
{
	struct report_parts P;
	struct extras x;
	struct iap_report rep = { 0 };
	int rc;

	memset(&P, 0, sizeof(P));
	memset(&x, 0, sizeof(x));
	rc = report_thresholds(r, &P);
	if (!rc) {
		report_model_text(r, P.model_text, sizeof(P.model_text));
		snprintf(P.data_text, sizeof(P.data_text),
			 "%s, %s split (%" PRId64 " images, %d classes); samples from the train split (%" PRId64 ")",
			 r->ds_plugin->desc->name, iap_split_name(r->eval_split), r->split[r->eval_split].count,
			 r->split[r->eval_split].info.n_classes, r->split[IAP_SPLIT_TRAIN].count);
		report_best(r, &P);
		report_notes(r, P.notes, sizeof(P.notes));
		report_fill(r, &P, table, n_table, &rep);
		rc = explanation_extras(r, &rep, &x, per_class_maps, table, n_table);
	}
	rc = rc ? rc : latency_extras(r, &rep, P.best);
	rc = rc ? rc : report_publish(r, &rep, P.best, per_class_maps);
	extras_free(&x);
	free(P.th);
	free(P.layers);
	return rc;
}
