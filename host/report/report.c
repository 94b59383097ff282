/*
 * The experiment report (see host/include/iaprune/report.h). Plain files a
 * clinician and an engineer can both open: CSV and JSON for tools, Markdown
 * for reading, SVG for the curves (any browser shows it).
 */
#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <iaprune/atomic.h>
#include <iaprune/report.h>

#include "finetune_md.h"
#include "internal.h"

int iap_mkdir_p(const char *path, struct iap_error *err)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return iap_error_set(err, IAP_EINVAL, "bad directory name '%s'", path);
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];

		buf[i] = '\0';
		if (mkdir(buf, 0777) != 0 && errno != EEXIST)
			return iap_error_set(err, IAP_EWRITE, "%s: cannot create directory: %s", buf, strerror(errno));
		buf[i] = c;
	}
	return IAP_OK;
}

/* ---- small writers --------------------------------------------------------- */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(f, "\\%c", c);
		else if (c < 0x20)
			fprintf(f, "\\u%04x", c);
		else
			fputc(c, f);
	}
	fputc('"', f);
}

static void json_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
	else
		fputs("null", f);
}

static void csv_num(FILE *f, double v)
{
	if (isfinite(v))
		fprintf(f, "%.6g", v);
}

void iap_report_csv_field(FILE *f, const char *s)
{
	if (s && !strpbrk(s, ",\"\n\r")) {
		fputs(s, f);
		return;
	}
	fputc('"', f);
	for (; s && *s; s++) {
		if (*s == '"')
			fputc('"', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static int finish(struct iap_atomic_file *af, struct iap_error *err)
{
	if (ferror(af->fp))
		return iap_atomic_fail(af, err);
	return iap_atomic_commit(af, err);
}

/* path, atomically, from a writer that streams the whole file (report.md, curves.svg). */
static int write_stream(const struct iap_report *r, const char *path,
			int (*stream)(const struct iap_report *, FILE *, struct iap_error *), struct iap_error *err)
{
	struct iap_atomic_file af;
	int rc = iap_atomic_open(&af, path, err);

	if (rc)
		return rc;
	rc = stream(r, af.fp, err);
	if (rc) {
		iap_atomic_abort(&af);
		return rc;
	}
	return finish(&af, err);
}

static const char *metric_names[] = { "accuracy", "balanced_accuracy", "macro_f1", "auroc", "ece" };

static double metric(const struct iap_report_metrics *m, int k)
{
	switch (k) {
	case 0: return m->accuracy;
	case 1: return m->balanced_accuracy;
	case 2: return m->macro_f1;
	case 3: return m->auroc;
	default: return m->ece;
	}
}

/* The name of class k: the dataset's, or its index. */
static void class_label(const struct iap_report *r, int k, char *buf, size_t len)
{
	if (r->class_names && r->class_names[k])
		snprintf(buf, len, "%s", r->class_names[k]);
	else
		snprintf(buf, len, "%d", k);
}

/* ---- CSV ---------------------------------------------------------------------- */

int iap_report_write_csv(const struct iap_report *r, const char *path, struct iap_error *err)
{
	struct iap_atomic_file af;
	int rc = iap_atomic_open(&af, path, err);

	if (rc)
		return rc;
	fputs("sampler,attribution,policy,rate,units_removed,params_removed,macs_removed", af.fp);
	for (int k = 0; k < 5; k++)
		fprintf(af.fp, ",%s", metric_names[k]);
	fputs(",accuracy_drop,finetuned", af.fp);
	if (r->has_stats) {
		fputs(",accuracy_lo,accuracy_hi,drop_lo,drop_hi,mcnemar_p,lost,gained", af.fp);
		for (int k = 0; k < r->n_classes; k++) {
			char name[64];

			class_label(r, k, name, sizeof(name));
			fputs(",sensitivity_", af.fp);
			iap_report_csv_field(af.fp, name);
			fputs(",specificity_", af.fp);
			iap_report_csv_field(af.fp, name);
		}
		fputs(",explanation_spearman,explanation_topk", af.fp);
	}
	fputc('\n', af.fp);
	for (int i = 0; i < r->n_rows + r->n_finetuned; i++) {
		const struct iap_report_row *row = i < r->n_rows ? &r->rows[i] : &r->finetuned[i - r->n_rows];

		iap_report_csv_field(af.fp, row->sampler);
		fputc(',', af.fp);
		iap_report_csv_field(af.fp, row->attribution);
		fputc(',', af.fp);
		iap_report_csv_field(af.fp, row->policy);
		fprintf(af.fp, ",%.4g,%.6g,%.6g,%.6g", row->rate, row->units_removed, row->params_removed,
			row->macs_removed);
		for (int k = 0; k < 5; k++) {
			fputc(',', af.fp);
			csv_num(af.fp, metric(&row->m, k));
		}
		fputc(',', af.fp);
		csv_num(af.fp, r->baseline.accuracy - row->m.accuracy);
		fprintf(af.fp, ",%d", i >= r->n_rows);
		if (r->has_stats) {
			const double v[] = { row->acc_lo, row->acc_hi, row->drop_lo, row->drop_hi, row->mcnemar_p };

			for (int k = 0; k < 5; k++) {
				fputc(',', af.fp);
				csv_num(af.fp, row->has_stats ? v[k] : NAN);
			}
			if (row->has_stats)
				fprintf(af.fp, ",%lld,%lld", (long long)row->lost, (long long)row->gained);
			else
				fputs(",,", af.fp);
			for (int k = 0; k < r->n_classes; k++) {
				fputc(',', af.fp);
				csv_num(af.fp, row->has_stats && row->sensitivity ? row->sensitivity[k] : NAN);
				fputc(',', af.fp);
				csv_num(af.fp, row->has_stats && row->specificity ? row->specificity[k] : NAN);
			}
			fputc(',', af.fp);
			csv_num(af.fp, row->has_expl ? row->expl_rho : NAN);
			fputc(',', af.fp);
			csv_num(af.fp, row->has_expl ? row->expl_topk : NAN);
		}
		fputc('\n', af.fp);
	}
	return finish(&af, err);
}

/* ---- JSON --------------------------------------------------------------------- */

static void json_metrics(FILE *f, const struct iap_report_metrics *m)
{
	fputc('{', f);
	for (int k = 0; k < 5; k++) {
		fprintf(f, "%s\"%s\": ", k ? ", " : "", metric_names[k]);
		json_num(f, metric(m, k));
	}
	fputc('}', f);
}

/* , "per_class": {"<name>": {"sensitivity": x, "specificity": y}, ...} (leading comma included). */
static void json_per_class(FILE *f, const struct iap_report *r, const double *sens, const double *spec)
{
	if (!sens || !spec || r->n_classes < 1)
		return;
	fputs(", \"per_class\": {", f);
	for (int k = 0; k < r->n_classes; k++) {
		char name[64];

		class_label(r, k, name, sizeof(name));
		fputs(k ? ", " : "", f);
		json_str(f, name);
		fputs(": {\"sensitivity\": ", f);
		json_num(f, sens[k]);
		fputs(", \"specificity\": ", f);
		json_num(f, spec[k]);
		fputc('}', f);
	}
	fputc('}', f);
}

int iap_report_write_json(const struct iap_report *r, const char *path, struct iap_error *err)
{
	struct iap_atomic_file af;
	int rc = iap_atomic_open(&af, path, err);
	FILE *f;

	if (rc)
		return rc;
	f = af.fp;
	fputs("{\n  \"title\": ", f);
	json_str(f, r->title);
	fputs(",\n  \"model\": ", f);
	json_str(f, r->model);
	fputs(",\n  \"dataset\": ", f);
	json_str(f, r->dataset);
	fprintf(f, ",\n  \"params\": %lld,\n  \"macs\": %lld,\n  \"tolerance\": ", (long long)r->params,
		(long long)r->macs);
	json_num(f, r->tolerance);
	fputs(",\n  \"baseline\": ", f);
	json_metrics(f, &r->baseline);
	if (r->has_stats) {
		fprintf(f, ",\n  \"bootstrap\": {\"resamples\": %d, \"seed\": %llu, \"images\": %lld}", r->n_boot,
			(unsigned long long)r->boot_seed, (long long)r->n_images);
		fputs(",\n  \"baseline_stats\": {\"accuracy_ci\": [", f);
		json_num(f, r->baseline_acc_lo);
		fputs(", ", f);
		json_num(f, r->baseline_acc_hi);
		fputc(']', f);
		json_per_class(f, r, r->baseline_sensitivity, r->baseline_specificity);
		fputc('}', f);
	}
	if (r->ranking) {
		fputs(",\n  \"baseline_ranking\": ", f);
		json_str(f, r->ranking);
	}
	if (r->latency.has) {
		fputs(",\n  \"latency_ms\": [", f);
		for (int k = 0; k < 2; k++) {
			fprintf(f, "%s{\"batch\": %d, \"dense\": ", k ? ", " : "", r->latency.batch[k]);
			json_num(f, r->latency.dense_ms[k]);
			fputs(", \"compact\": ", f);
			json_num(f, r->latency.compact_ms[k]);
			fputc('}', f);
		}
		fputc(']', f);
	}
	if (r->expl_method) {
		fputs(",\n  \"explanation\": {\"method\": ", f);
		json_str(f, r->expl_method);
		fputs(", \"configuration\": ", f);
		json_str(f, r->expl_config ? r->expl_config : "");
		fprintf(f, ", \"images\": %d, \"topk_fraction\": ", r->expl_images);
		json_num(f, r->expl_topk_frac);
		fputc('}', f);
	}
	fputs(",\n  \"rows\": [", f);
	for (int i = 0; i < r->n_rows + r->n_finetuned; i++) {
		const struct iap_report_row *row = i < r->n_rows ? &r->rows[i] : &r->finetuned[i - r->n_rows];

		fputs(i ? ",\n    {" : "\n    {", f);
		fputs("\"sampler\": ", f);
		json_str(f, row->sampler);
		fputs(", \"attribution\": ", f);
		json_str(f, row->attribution);
		fputs(", \"policy\": ", f);
		json_str(f, row->policy);
		fputs(", \"rate\": ", f);
		json_num(f, row->rate);
		fputs(", \"units_removed\": ", f);
		json_num(f, row->units_removed);
		fputs(", \"params_removed\": ", f);
		json_num(f, row->params_removed);
		fputs(", \"macs_removed\": ", f);
		json_num(f, row->macs_removed);
		fputs(", \"metrics\": ", f);
		json_metrics(f, &row->m);
		fprintf(f, ", \"finetuned\": %s", i >= r->n_rows ? "true" : "false");
		if (row->has_stats) {
			fputs(", \"accuracy_ci\": [", f);
			json_num(f, row->acc_lo);
			fputs(", ", f);
			json_num(f, row->acc_hi);
			fputs("], \"drop\": ", f);
			json_num(f, r->baseline.accuracy - row->m.accuracy);
			fputs(", \"drop_ci\": [", f);
			json_num(f, row->drop_lo);
			fputs(", ", f);
			json_num(f, row->drop_hi);
			fprintf(f, "], \"mcnemar\": {\"lost\": %lld, \"gained\": %lld, \"p\": ", (long long)row->lost,
				(long long)row->gained);
			json_num(f, row->mcnemar_p);
			fputc('}', f);
			json_per_class(f, r, row->sensitivity, row->specificity);
		}
		if (row->has_expl) {
			fputs(", \"explanation\": {\"spearman\": ", f);
			json_num(f, row->expl_rho);
			fputs(", \"topk_overlap\": ", f);
			json_num(f, row->expl_topk);
			fputc('}', f);
		}
		fputc('}', f);
	}
	fputs(r->n_rows + r->n_finetuned ? "\n  ],\n  \"lossless\": [" : "],\n  \"lossless\": [", f);
	for (int i = 0; i < r->n_thresholds; i++) {
		const struct iap_report_threshold *t = &r->thresholds[i];

		fputs(i ? ",\n    {" : "\n    {", f);
		fputs("\"sampler\": ", f);
		json_str(f, t->sampler);
		fputs(", \"attribution\": ", f);
		json_str(f, t->attribution);
		fputs(", \"policy\": ", f);
		json_str(f, t->policy);
		fputs(", \"rate\": ", f);
		json_num(f, t->rate);
		if (t->has_ci) {
			fputs(", \"ci\": [", f);
			json_num(f, t->lo);
			fputs(", ", f);
			json_num(f, t->hi);
			fputc(']', f);
		}
		fputc('}', f);
	}
	fputs(r->n_thresholds ? "\n  ],\n  \"best\": " : "],\n  \"best\": ", f);
	json_str(f, r->best ? r->best : "");
	fputs(",\n  \"layers\": [", f);
	for (int i = 0; i < r->n_layers; i++) {
		fputs(i ? ",\n    {" : "\n    {", f);
		fputs("\"name\": ", f);
		json_str(f, r->layers[i].name);
		fprintf(f, ", \"units\": %d, \"pruned\": %d}", r->layers[i].units, r->layers[i].pruned);
	}
	fputs(r->n_layers ? "\n  ]\n}\n" : "]\n}\n", f);
	return finish(&af, err);
}

/* ---- Markdown ----------------------------------------------------------------- */

int iap_report_md_stream(const struct iap_report *r, FILE *f, struct iap_error *err)
{
	int *first = NULL, n_cfg;
	char a[32], b[32];

	first = malloc((size_t)(r->n_rows + 1) * sizeof(*first));
	if (!first)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	n_cfg = iap_report_configs(r, first);
	iap_report_human(a, sizeof(a), (double)r->params);
	iap_report_human(b, sizeof(b), (double)r->macs);
	fprintf(f, "# iaprune report: %s\n\n", r->title ? r->title : "pipeline");
	fprintf(f, "- Model: %s (%s parameters, %s multiply-accumulates per image)\n", r->model ? r->model : "?", a, b);
	fprintf(f, "- Data: %s\n", r->dataset ? r->dataset : "?");
	fprintf(f, "- Lossless means an accuracy drop of at most %.1f points.\n", 100.0 * r->tolerance);
	if (r->ranking)
		fprintf(f, "- Baselines: %s\n", r->ranking);
	fputc('\n', f);

	fputs("## Baseline (unpruned)\n\n| metric | value |\n|---|---|\n", f);
	for (int k = 0; k < 5; k++) {
		fprintf(f, "| %s | ", metric_names[k]);
		iap_report_md_value(f, metric(&r->baseline, k), "%.4f");
		fputs(" |\n", f);
	}
	iap_report_md_baseline_stats(r, f);

	iap_report_md_table1(r, f, first, n_cfg);
	if (r->best)
		fprintf(f, "\nBest configuration: **%s**.\n", r->best);
	iap_report_md_summary(r, f, first, n_cfg);
	iap_report_md_row_stats(r, f, first, n_cfg);
	iap_report_md_explanation(r, f);
	iap_report_md_latency(r, f);

	if (r->n_layers > 0) {
		fputs("\n## Units pruned per layer (best configuration)\n\n| layer | units | pruned | share |\n|---|---:|---:|---:|\n", f);
		for (int i = 0; i < r->n_layers; i++) {
			const struct iap_report_layer *l = &r->layers[i];

			fprintf(f, "| %s | %d | %d | %.0f%% |\n", l->name, l->units, l->pruned,
				l->units ? 100.0 * l->pruned / l->units : 0.0);
		}
	}
	iap_report_md_finetuned(f, r);
	fputs("\n## Files\n\n- `results.csv`, `results.json`: every row with all metrics and the fractions of\n"
	      "  units, parameters and multiply-accumulates removed.\n"
	      "- `curves.svg`: accuracy against pruning rate (baselines dashed).\n", f);
	if (r->has_stats && r->baseline_pred)
		fputs("- `predictions.csv`: the prediction of the baseline and of every row for every evaluation\n"
		      "  image (row = the data line of `results.csv`, from 0).\n", f);
	fputs("- `report.html`: this report in one page with the curves and the heatmaps.\n", f);
	if (r->notes)
		fprintf(f, "\n## Notes\n\n%s\n", r->notes);
	free(first);
	return ferror(f) ? iap_error_set(err, IAP_EIO, "report: write failed") : IAP_OK;
}

int iap_report_write_markdown(const struct iap_report *r, const char *path, struct iap_error *err)
{
	return write_stream(r, path, iap_report_md_stream, err);
}

/* ---- SVG ---------------------------------------------------------------------- */

static const char *palette[] = { "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e",
				 "#e6ab02", "#a6761d", "#666666", "#1f78b4", "#b2df8a" };

int iap_report_is_baseline(const char *attribution)
{
	return !strcmp(attribution, "magnitude") || !strcmp(attribution, "random");
}

/* Text for SVG/XML: the five special characters escaped. */
static void xml_text(FILE *f, const char *s)
{
	for (; s && *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&#39;", f); break;
		default: fputc(*s, f);
		}
	}
}

/* A point marker: the shape tells the sampler (circle, square, triangle, diamond, cross). */
static void marker(FILE *f, int shape, double x, double y, const char *colour)
{
	switch (shape % 5) {
	case 0:
		fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", x, y, colour);
		break;
	case 1:
		fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"6\" height=\"6\" fill=\"%s\"/>", x - 3, y - 3, colour);
		break;
	case 2:
		fprintf(f, "<path d=\"M%.1f %.1fl3.5 6h-7z\" fill=\"%s\"/>", x, y - 3.5, colour);
		break;
	case 3:
		fprintf(f, "<path d=\"M%.1f %.1fl3.5 3.5l-3.5 3.5l-3.5 -3.5z\" fill=\"%s\"/>", x, y - 3.5, colour);
		break;
	default:
		fprintf(f, "<path d=\"M%.1f %.1fl6 6m0 -6l-6 6\" stroke=\"%s\" stroke-width=\"1.5\"/>", x - 3, y - 3,
			colour);
	}
}

/* The next row of cfg's configuration above rate last (in rate order), or NULL. */
static const struct iap_report_row *next_row(const struct iap_report *r, const struct iap_report_row *cfg,
					     double last)
{
	const struct iap_report_row *next = NULL;

	for (int i = 0; i < r->n_rows; i++) {
		const struct iap_report_row *row = &r->rows[i];

		if (row->config != cfg->config || row->rate <= last || !isfinite(row->m.accuracy))
			continue;
		if (!next || row->rate < next->rate)
			next = row;
	}
	return next;
}

/*
 * The explanation-preservation panel under the accuracy panel: Spearman's ρ
 * and the top-k overlap of the best configuration's maps against the dense
 * model's, by rate. top is the panel's upper edge.
 */
static void svg_expl_panel(const struct iap_report *r, FILE *f, double top, double L, double pw)
{
	const double ph = 180;
	const struct iap_report_row *first = NULL;
	static const char *colour[2] = { "#b2182b", "#2166ac" };

	for (int i = 0; i < r->n_rows && !first; i++)
		if (r->rows[i].has_expl)
			first = &r->rows[i];
	if (!first)
		return;
#define PX(v) (L + (v) * pw)
#define PY(v) (top + (1.0 - (v)) / 1.2 * ph)
	fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" font-size=\"14\">Explanation preservation: ", L, top - 12);
	xml_text(f, r->expl_method ? r->expl_method : "");
	fputs(" maps of ", f);
	xml_text(f, r->expl_config ? r->expl_config : "the best configuration");
	fputs(" against the dense model</text>\n", f);
	for (int i = 0; i <= 10; i++)
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n",
			PX(i / 10.0), top, PX(i / 10.0), top + ph, PX(i / 10.0), top + ph + 18, i / 10.0);
	for (int i = 0; i <= 6; i++) {
		double v = 1.0 - i * 0.2;

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n"
			   "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.1f</text>\n",
			L, PY(v), L + pw, PY(v), L - 6, PY(v) + 4, v);
	}
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", L, top,
		pw, ph);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">pruning rate (fraction of units)</text>\n",
		L + pw / 2, top + ph + 38);
	fprintf(f, "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">agreement</text>\n",
		top + ph / 2);
	for (int k = 0; k < 2; k++) {
		double last = -1;
		const struct iap_report_row *row;

		fprintf(f, "<polyline class=\"expl\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", colour[k],
			k ? " stroke-dasharray=\"8,3\"" : "");
		while ((row = next_row(r, first, last)) != NULL) {
			if (row->has_expl)
				fprintf(f, "%.1f,%.1f ", PX(row->rate), PY(k ? row->expl_topk : row->expl_rho));
			last = row->rate;
		}
		fputs("\"/>\n", f);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n"
			   "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
			L + pw + 15, top + 10 + 18.0 * k, L + pw + 45, top + 10 + 18.0 * k, colour[k],
			k ? " stroke-dasharray=\"8,3\"" : "", L + pw + 50, top + 14 + 18.0 * k,
			k ? "top-k overlap of |R|" : "Spearman ρ of |R|");
	}
#undef PX
#undef PY
}

int iap_report_svg_stream(const struct iap_report *r, FILE *f, struct iap_error *err)
{
	const double W = 860, L = 70, R = 250, T = 40, B = 60, ph = 420;
	const double pw = W - L - R;
	int *first, n_cfg, has_expl = 0;
	double ymin = 1.0, ymax = 0.0, H, legend_h;

	first = malloc((size_t)(r->n_rows + 1) * sizeof(*first));
	if (!first)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	n_cfg = iap_report_configs(r, first);
	for (int i = 0; i < r->n_rows; i++) {
		has_expl |= r->rows[i].has_expl;
		if (isfinite(r->rows[i].m.accuracy)) {
			ymin = fmin(ymin, r->rows[i].m.accuracy);
			ymax = fmax(ymax, r->rows[i].m.accuracy);
		}
	}
	if (isfinite(r->baseline.accuracy)) {
		ymin = fmin(ymin, r->baseline.accuracy - r->tolerance);
		ymax = fmax(ymax, r->baseline.accuracy);
	}
	if (ymax < ymin) {
		ymin = 0;
		ymax = 1;
	}
	ymin = fmax(0.0, floor(ymin * 10) / 10);
	ymax = fmin(1.0, ceil(ymax * 10 + 1e-9) / 10);
	if (ymax - ymin < 0.1)
		ymin = ymax - 0.1;
	/* The legend (configurations, baseline, tolerance) may be taller than the plot. */
	legend_h = 18.0 * (n_cfg + 2) + 20;
	H = T + fmax(ph, legend_h) + B + (has_expl ? 300 : 0);
#define X(v) (L + (v) * pw)
#define Y(v) (T + (ymax - (v)) / (ymax - ymin) * ph)
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
	fputs("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", f);
	fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">Accuracy against pruning rate: ", L);
	xml_text(f, r->title ? r->title : "");
	fputs("</text>\n", f);
	/* Grid and axes. */
	for (int i = 0; i <= 10; i++) {
		double x = X(i / 10.0);

		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", x, T, x, T + ph);
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%.1f</text>\n", x, T + ph + 18, i / 10.0);
	}
	for (double v = ymin; v <= ymax + 1e-9; v += (ymax - ymin) / 5) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e5e5e5\"/>\n", L, Y(v), L + pw, Y(v));
		fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.2f</text>\n", L - 6, Y(v) + 4, v);
	}
	fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"#333\"/>\n", L, T, pw, ph);
	fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">pruning rate (fraction of units)</text>\n",
		L + pw / 2, T + ph + 38);
	fprintf(f, "<text transform=\"translate(18,%.1f) rotate(-90)\" text-anchor=\"middle\">accuracy</text>\n",
		T + ph / 2);
	if (isfinite(r->baseline.accuracy)) {
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" stroke-width=\"1\"/>\n",
			L, Y(r->baseline.accuracy), L + pw, Y(r->baseline.accuracy));
		if (r->baseline.accuracy - r->tolerance >= ymin)
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" "
				   "stroke-dasharray=\"2,3\"/>\n", L, Y(r->baseline.accuracy - r->tolerance), L + pw,
				Y(r->baseline.accuracy - r->tolerance));
	}
	/*
	 * One line per configuration, points in rate order: the colour says the
	 * attribution method, the dash pattern and the marker shape the
	 * sampler, so 11+ lines stay apart even where colours are close; the
	 * data-free criteria (magnitude, random) are grey, dashed.
	 */
	{
		static const char *dashes[] = { "", "8,3", "2,3", "10,3,2,3" };
		const char *attrs[16], *smps[16];
		int n_attrs = 0, n_smps = 0;

		for (int c = 0; c < n_cfg; c++) {
			const struct iap_report_row *cfg = &r->rows[first[c]], *row;
			int ai = -1, si = -1;
			int baseline = iap_report_is_baseline(cfg->attribution);
			char colour[16], dash[32];
			double last = -1.0, ly = T + 10 + 18.0 * c;

			for (int k = 0; k < n_attrs; k++)
				if (!strcmp(attrs[k], cfg->attribution))
					ai = k;
			if (ai < 0 && n_attrs < 16)
				attrs[ai = n_attrs++] = cfg->attribution;
			for (int k = 0; k < n_smps; k++)
				if (!strcmp(smps[k], cfg->sampler))
					si = k;
			if (si < 0 && n_smps < 16)
				smps[si = n_smps++] = cfg->sampler;
			if (baseline) {
				snprintf(colour, sizeof(colour), "%s", !strcmp(cfg->attribution, "random") ? "#999999" : "#555555");
				snprintf(dash, sizeof(dash), " stroke-dasharray=\"6,4\"");
			} else {
				snprintf(colour, sizeof(colour), "%s", palette[(ai < 0 ? 0 : ai) % (int)(sizeof(palette) / sizeof(palette[0]))]);
				if (si > 0)
					snprintf(dash, sizeof(dash), " stroke-dasharray=\"%s\"", dashes[si % 4]);
				else
					dash[0] = '\0';
			}
			fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", colour, dash);
			while ((row = next_row(r, cfg, last)) != NULL) {
				fprintf(f, "%.1f,%.1f ", X(row->rate), Y(row->m.accuracy));
				last = row->rate;
			}
			fputs("\"/>\n", f);
			if (!baseline) {
				fputs("<g>", f);
				for (last = -1.0; (row = next_row(r, cfg, last)) != NULL; last = row->rate)
					marker(f, si < 0 ? 0 : si, X(row->rate), Y(row->m.accuracy), colour);
				fputs("</g>\n", f);
			}
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>",
				L + pw + 15, ly, L + pw + 45, ly, colour, dash);
			if (!baseline)
				marker(f, si < 0 ? 0 : si, L + pw + 30, ly, colour);
			fprintf(f, "\n<text x=\"%.1f\" y=\"%.1f\">", L + pw + 50, ly + 4);
			xml_text(f, cfg->attribution);
			fputs(" / ", f);
			xml_text(f, cfg->sampler);
			fputs(" / ", f);
			xml_text(f, cfg->policy);
			fputs("</text>\n", f);
		}
		/* The reference lines belong in the legend too. */
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#000\" stroke-width=\"1\"/>\n"
			   "<text x=\"%.1f\" y=\"%.1f\">unpruned baseline (%.3f)</text>\n",
			L + pw + 15, T + 10 + 18.0 * n_cfg, L + pw + 45, T + 10 + 18.0 * n_cfg, L + pw + 50,
			T + 14 + 18.0 * n_cfg, r->baseline.accuracy);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-dasharray=\"2,3\"/>\n"
			   "<text x=\"%.1f\" y=\"%.1f\">tolerance (baseline − %.1f points)</text>\n",
			L + pw + 15, T + 10 + 18.0 * (n_cfg + 1), L + pw + 45, T + 10 + 18.0 * (n_cfg + 1), L + pw + 50,
			T + 14 + 18.0 * (n_cfg + 1), 100.0 * r->tolerance);
	}
#undef X
#undef Y
	if (has_expl)
		svg_expl_panel(r, f, T + fmax(ph, legend_h) + B + 40, L, pw);
	fputs("</svg>\n", f);
	free(first);
	return ferror(f) ? iap_error_set(err, IAP_EIO, "curves: write failed") : IAP_OK;
}

int iap_report_write_svg(const struct iap_report *r, const char *path, struct iap_error *err)
{
	return write_stream(r, path, iap_report_svg_stream, err);
}

int iap_report_write(const struct iap_report *r, const char *dir, struct iap_error *err)
{
	static const struct {
		const char *name;
		int (*write)(const struct iap_report *, const char *, struct iap_error *);
	} files[] = {
		{ "results.csv", iap_report_write_csv },
		{ "results.json", iap_report_write_json },
		{ "report.md", iap_report_write_markdown },
		{ "curves.svg", iap_report_write_svg },
		{ "report.html", iap_report_write_html },
		{ "predictions.csv", iap_report_write_predictions },
	};
	char path[4096];
	int rc = iap_mkdir_p(dir, err);

	for (size_t i = 0; !rc && i < sizeof(files) / sizeof(files[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, files[i].name) >= sizeof(path))
			return iap_error_set(err, IAP_EINVAL, "%s: path too long", dir);
		/* predictions.csv exists only when the rows carry per-image predictions. */
		if (files[i].write == iap_report_write_predictions && !(r->has_stats && r->baseline_pred))
			continue;
		rc = files[i].write(r, path, err);
	}
	return rc;
}
