/*
 * The experiment report (see include/iaprune/report.h). Plain files a
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

/* A CSV field, quoted when it holds a comma, quote or newline. */
static void csv_str(FILE *f, const char *s)
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
	fputs(",accuracy_drop,finetuned\n", af.fp);
	for (int i = 0; i < r->n_rows + r->n_finetuned; i++) {
		const struct iap_report_row *row = i < r->n_rows ? &r->rows[i] : &r->finetuned[i - r->n_rows];

		csv_str(af.fp, row->sampler);
		fputc(',', af.fp);
		csv_str(af.fp, row->attribution);
		fputc(',', af.fp);
		csv_str(af.fp, row->policy);
		fprintf(af.fp, ",%.4g,%.6g,%.6g,%.6g", row->rate, row->units_removed, row->params_removed,
			row->macs_removed);
		for (int k = 0; k < 5; k++) {
			fputc(',', af.fp);
			csv_num(af.fp, metric(&row->m, k));
		}
		fputc(',', af.fp);
		csv_num(af.fp, r->baseline.accuracy - row->m.accuracy);
		fprintf(af.fp, ",%d\n", i >= r->n_rows);
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
		fprintf(f, ", \"finetuned\": %s}", i >= r->n_rows ? "true" : "false");
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

/* Row with the same configuration and (to rounding) the same rate, or NULL. */
static const struct iap_report_row *find_row(const struct iap_report *r, const struct iap_report_row *cfg,
					     double rate)
{
	for (int i = 0; i < r->n_rows; i++) {
		const struct iap_report_row *row = &r->rows[i];

		if (strcmp(row->sampler, cfg->sampler) == 0 && strcmp(row->attribution, cfg->attribution) == 0 &&
		    strcmp(row->policy, cfg->policy) == 0 && fabs(row->rate - rate) < 1e-9)
			return row;
	}
	return NULL;
}

/* Index of the first row of each distinct configuration, in first-seen order. */
static int configs(const struct iap_report *r, int *first)
{
	int n = 0;

	for (int i = 0; i < r->n_rows; i++) {
		int seen = 0;

		for (int k = 0; k < n && !seen; k++) {
			const struct iap_report_row *a = &r->rows[first[k]], *b = &r->rows[i];

			seen = !strcmp(a->sampler, b->sampler) && !strcmp(a->attribution, b->attribution) &&
			       !strcmp(a->policy, b->policy);
		}
		if (!seen)
			first[n++] = i;
	}
	return n;
}

static double threshold_of(const struct iap_report *r, const struct iap_report_row *cfg)
{
	for (int i = 0; i < r->n_thresholds; i++) {
		const struct iap_report_threshold *t = &r->thresholds[i];

		if (!strcmp(t->sampler, cfg->sampler) && !strcmp(t->attribution, cfg->attribution) &&
		    !strcmp(t->policy, cfg->policy))
			return t->rate;
	}
	return NAN;
}

static void md_value(FILE *f, double v, const char *fmt)
{
	if (isfinite(v))
		fprintf(f, fmt, v);
	else
		fputs("n/a", f);
}

static void human(char *buf, size_t len, double v)
{
	if (v >= 1e9)
		snprintf(buf, len, "%.2f G", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, len, "%.2f M", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.1f k", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
}

int iap_report_write_markdown(const struct iap_report *r, const char *path, struct iap_error *err)
{
	struct iap_atomic_file af;
	int *first = NULL, n_cfg, rc;
	char a[32], b[32];
	FILE *f;

	first = malloc((size_t)(r->n_rows + 1) * sizeof(*first));
	if (!first)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	n_cfg = configs(r, first);
	rc = iap_atomic_open(&af, path, err);
	if (rc) {
		free(first);
		return rc;
	}
	f = af.fp;
	human(a, sizeof(a), (double)r->params);
	human(b, sizeof(b), (double)r->macs);
	fprintf(f, "# iaprune report: %s\n\n", r->title ? r->title : "pipeline");
	fprintf(f, "- Model: %s (%s parameters, %s multiply-accumulates per image)\n", r->model ? r->model : "?", a, b);
	fprintf(f, "- Data: %s\n", r->dataset ? r->dataset : "?");
	fprintf(f, "- Lossless means an accuracy drop of at most %.1f points.\n\n", 100.0 * r->tolerance);

	fputs("## Baseline (unpruned)\n\n| metric | value |\n|---|---|\n", f);
	for (int k = 0; k < 5; k++) {
		fprintf(f, "| %s | ", metric_names[k]);
		md_value(f, metric(&r->baseline, k), "%.4f");
		fputs(" |\n", f);
	}

	fputs("\n## Accuracy change from the baseline (points), by pruning rate\n\n", f);
	fputs("Positive numbers are gains. The last column is the largest rate whose drop stays within the\n"
	      "tolerance (refined to 0.01).\n\n", f);
	fputs("| attribution | sampler | policy |", f);
	for (int j = 0; j < r->n_table_rates; j++)
		fprintf(f, " %.2f |", r->table_rates[j]);
	fputs(" lossless up to |\n|---|---|---|", f);
	for (int j = 0; j < r->n_table_rates; j++)
		fputs("---:|", f);
	fputs("---:|\n", f);
	for (int c = 0; c < n_cfg; c++) {
		const struct iap_report_row *cfg = &r->rows[first[c]];

		fprintf(f, "| %s | %s | %s |", cfg->attribution, cfg->sampler, cfg->policy);
		for (int j = 0; j < r->n_table_rates; j++) {
			const struct iap_report_row *row = find_row(r, cfg, r->table_rates[j]);

			fputc(' ', f);
			if (row)
				md_value(f, 100.0 * (row->m.accuracy - r->baseline.accuracy), "%+.1f");
			else
				fputs("–", f);
			fputs(" |", f);
		}
		fputc(' ', f);
		md_value(f, threshold_of(r, cfg), "%.2f");
		fputs(" |\n", f);
	}
	if (r->best)
		fprintf(f, "\nBest configuration: **%s**.\n", r->best);

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
	if (r->notes)
		fprintf(f, "\n## Notes\n\n%s\n", r->notes);
	free(first);
	return finish(&af, err);
}

/* ---- SVG ---------------------------------------------------------------------- */

static const char *palette[] = { "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e",
				 "#e6ab02", "#a6761d", "#666666", "#1f78b4", "#b2df8a" };

static int is_baseline_criterion(const char *attribution)
{
	return !strcmp(attribution, "magnitude") || !strcmp(attribution, "random");
}

int iap_report_write_svg(const struct iap_report *r, const char *path, struct iap_error *err)
{
	const double W = 860, H = 520, L = 70, R = 250, T = 40, B = 60;
	const double pw = W - L - R, ph = H - T - B;
	struct iap_atomic_file af;
	int *first, n_cfg, rc;
	double ymin = 1.0, ymax = 0.0;
	FILE *f;

	first = malloc((size_t)(r->n_rows + 1) * sizeof(*first));
	if (!first)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	n_cfg = configs(r, first);
	for (int i = 0; i < r->n_rows; i++)
		if (isfinite(r->rows[i].m.accuracy)) {
			ymin = fmin(ymin, r->rows[i].m.accuracy);
			ymax = fmax(ymax, r->rows[i].m.accuracy);
		}
	if (isfinite(r->baseline.accuracy)) {
		ymin = fmin(ymin, r->baseline.accuracy);
		ymax = fmax(ymax, r->baseline.accuracy);
	}
	if (ymax < ymin) {
		ymin = 0;
		ymax = 1;
	}
	ymin = floor(ymin * 10) / 10;
	ymax = fmin(1.0, ceil(ymax * 10 + 1e-9) / 10);
	if (ymax - ymin < 0.1)
		ymin = ymax - 0.1;
	rc = iap_atomic_open(&af, path, err);
	if (rc) {
		free(first);
		return rc;
	}
	f = af.fp;
#define X(v) (L + (v) * pw)
#define Y(v) (T + (ymax - (v)) / (ymax - ymin) * ph)
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H, W, H);
	fputs("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", f);
	fprintf(f, "<text x=\"%.0f\" y=\"22\" font-size=\"15\">Accuracy against pruning rate: ", L);
	for (const char *s = r->title ? r->title : ""; *s; s++)
		fputs(*s == '<' ? "&lt;" : *s == '&' ? "&amp;" : (char[2]){ *s, 0 }, f);
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
		L + pw / 2, H - 18);
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
	 * attribution method, the dash pattern the sampler; the data-free
	 * criteria (magnitude, random) are grey, dashed.
	 */
	{
		static const char *dashes[] = { "", "8,3", "2,3", "10,3,2,3" };
		const char *attrs[16], *smps[16];
		int n_attrs = 0, n_smps = 0;

		for (int c = 0; c < n_cfg; c++) {
			const struct iap_report_row *cfg = &r->rows[first[c]];
			int ai = -1, si = -1;
			int baseline = is_baseline_criterion(cfg->attribution);
			char colour[16], dash[32];
			double last = -1.0;

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
			for (;;) {
				const struct iap_report_row *next = NULL;

				for (int i = 0; i < r->n_rows; i++) {
					const struct iap_report_row *row = &r->rows[i];

					if (strcmp(row->sampler, cfg->sampler) || strcmp(row->attribution, cfg->attribution) ||
					    strcmp(row->policy, cfg->policy) || row->rate <= last || !isfinite(row->m.accuracy))
						continue;
					if (!next || row->rate < next->rate)
						next = row;
				}
				if (!next)
					break;
				fprintf(f, "%.1f,%.1f ", X(next->rate), Y(next->m.accuracy));
				last = next->rate;
			}
			fputs("\"/>\n", f);
			fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"2\"%s/>\n",
				L + pw + 15, T + 10 + 18.0 * c, L + pw + 45, T + 10 + 18.0 * c, colour, dash);
			fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s / %s / %s</text>\n", L + pw + 50, T + 14 + 18.0 * c,
				cfg->attribution, cfg->sampler, cfg->policy);
		}
	}
#undef X
#undef Y
	fputs("</svg>\n", f);
	free(first);
	return finish(&af, err);
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
	};
	char path[4096];
	int rc = iap_mkdir_p(dir, err);

	for (size_t i = 0; !rc && i < sizeof(files) / sizeof(files[0]); i++) {
		if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, files[i].name) >= sizeof(path))
			return iap_error_set(err, IAP_EINVAL, "%s: path too long", dir);
		rc = files[i].write(r, path, err);
	}
	return rc;
}
