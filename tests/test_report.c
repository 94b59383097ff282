/* The report files: exact CSV rows, Table-1 Markdown, JSON, SVG, atomic replacement. */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <iaprune/image.h>
#include <iaprune/report.h>
#include <iaprune/tensor.h>

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "rb");
	long n;
	char *s;

	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	fseek(f, 0, SEEK_SET);
	s = calloc(1, (size_t)n + 1);
	if (fread(s, 1, (size_t)n, f) != (size_t)n) {
		free(s);
		s = NULL;
	}
	fclose(f);
	return s;
}

#define M(acc) { .accuracy = (acc), .balanced_accuracy = (acc) - 0.05, .macro_f1 = 0.7, .auroc = NAN, .ece = 0.03 }

/* cfg: the configuration's key (0: lrp / clustering, 1: random / -). */
#define ROW(cfg, s, a, p, r, u, pa, ma, acc)                                                                \
	{ .sampler = (s), .attribution = (a), .policy = (p), .rate = (r), .units_removed = (u),              \
	  .params_removed = (pa), .macs_removed = (ma), .m = M(acc), .config = (cfg) }

static const struct iap_report_row rows[] = {
	ROW(0, "clustering", "lrp", "global", 0.15, 0.15, 0.2, 0.25, 0.85),
	ROW(0, "clustering", "lrp", "global", 0.30, 0.30, 0.4, 0.45, 0.83),
	ROW(0, "clustering", "lrp", "global", 0.50, 0.50, 0.6, 0.65, 0.70),
	ROW(1, "-", "random", "global", 0.15, 0.15, 0.15, 0.15, 0.80),
	ROW(1, "-", "random", "global", 0.50, 0.50, 0.50, 0.50, 0.5),
};
static const double table_rates[] = { 0.15, 0.30, 0.50 };
static const struct iap_report_threshold thresholds[] = {
	{ .sampler = "clustering", .attribution = "lrp", .policy = "global", .rate = 0.37 },
	{ .sampler = "-", .attribution = "random", .policy = "global", .rate = 0.0, .config = 1 },
};
static const struct iap_report_layer layers[] = { { "features.0", 16, 3 }, { "classifier.0", 64, 40 } };

static struct iap_report sample(void)
{
	struct iap_report r = {
		.title = "breast, \"demo\"", .model = "vgg11 w0.25", .dataset = "breastmnist test (156)",
		.params = 1234567, .macs = 98765432, .tolerance = 0.05, .baseline = M(0.85),
		.n_rows = 5, .rows = rows, .n_thresholds = 2, .thresholds = thresholds,
		.n_table_rates = 3, .table_rates = table_rates, .n_layers = 2, .layers = layers,
		.best = "lrp / clustering / global at 0.37",
	};
	return r;
}

static void test_all_files(void **state)
{
	char dir[] = "/tmp/iap-report-XXXXXX", sub[256], path[300];
	struct iap_report r = sample();
	struct iap_error err;
	char *s;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a/b", dir);
	assert_int_equal(iap_report_write(&r, sub, &err), IAP_OK);

	snprintf(path, sizeof(path), "%s/results.csv", sub);
	s = slurp(path);
	assert_non_null(s);
	assert_non_null(strstr(s, "sampler,attribution,policy,rate,units_removed,params_removed,macs_removed,"
				  "accuracy,balanced_accuracy,macro_f1,auroc,ece,accuracy_drop,finetuned\n"));
	/* AUROC unavailable → empty field; drop = baseline − accuracy. */
	assert_non_null(strstr(s, "\nclustering,lrp,global,0.3,0.3,0.4,0.45,0.83,0.78,0.7,,0.03,0.02,0\n"));
	free(s);

	snprintf(path, sizeof(path), "%s/report.md", sub);
	s = slurp(path);
	assert_non_null(s);
	assert_non_null(strstr(s, "| attribution | sampler | policy | 0.15 | 0.30 | 0.50 | lossless up to |"));
	/* Drops (baseline − pruned) with the parameters / MACs removed; no intervals without statistics. */
	assert_non_null(strstr(s, "| lrp | clustering | global | 0.0 · 20% / 25% | 2.0 · 40% / 45% | 15.0 · 60% / 65% | 0.37 |"));
	/* A rate a configuration was not run at shows a dash. */
	assert_non_null(strstr(s, "| random | - | global | 5.0 · 15% / 15% | – | 35.0 · 50% / 50% | 0.00 |"));
	/* The paper's averages: by method, and by sampler without the data-free baselines. */
	assert_non_null(strstr(s, "| lrp | 1 | 0.0 | 2.0 | 15.0 | 0.37 |"));
	assert_non_null(strstr(s, "| random | 1 | 5.0 | n/a | 35.0 | 0.00 |"));
	assert_non_null(strstr(s, "| clustering | 1 | 0.0 | 2.0 | 15.0 | 0.37 |"));
	assert_null(strstr(s, "| - | 1 |"));
	assert_null(strstr(s, "McNemar"));
	assert_non_null(strstr(s, "| auroc | n/a |"));
	assert_non_null(strstr(s, "| classifier.0 | 64 | 40 | 62% |"));
	assert_non_null(strstr(s, "1.23 M parameters, 98.77 M multiply-accumulates"));
	free(s);

	snprintf(path, sizeof(path), "%s/results.json", sub);
	s = slurp(path);
	assert_non_null(s);
	assert_non_null(strstr(s, "\"title\": \"breast, \\\"demo\\\"\""));
	assert_non_null(strstr(s, "\"auroc\": null"));
	assert_non_null(strstr(s, "{\"sampler\": \"clustering\", \"attribution\": \"lrp\", \"policy\": \"global\", \"rate\": 0.37}"));
	free(s);

	snprintf(path, sizeof(path), "%s/curves.svg", sub);
	s = slurp(path);
	assert_non_null(s);
	assert_non_null(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
	/* lrp: three points in rate order; random dashed with two. */
	assert_non_null(strstr(s, "points=\"151.0,"));
	assert_non_null(strstr(s, "stroke-dasharray=\"6,4\" points=\""));
	assert_non_null(strstr(s, "</svg>\n"));
	free(s);
}

static void test_failed_write_keeps_old_report(void **state)
{
	char dir[] = "/tmp/iap-report-XXXXXX", path[300];
	struct iap_report r = sample();
	struct iap_error err;
	char *before, *after;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(iap_report_write(&r, dir, &err), IAP_OK);
	snprintf(path, sizeof(path), "%s/report.md", dir);
	before = slurp(path);
	/* Make the directory read-only: the next write cannot even create its temp file. */
	if (geteuid() == 0) {
		/* root ignores permissions; replace results.json by a directory instead. */
		char j[300];

		snprintf(j, sizeof(j), "%s/results.json", dir);
		unlink(j);
		assert_int_equal(mkdir(j, 0700), 0);
		r.baseline.accuracy = 0.99;
		assert_int_not_equal(iap_report_write(&r, dir, &err), IAP_OK);
		rmdir(j);
	} else {
		chmod(dir, 0500);
		r.baseline.accuracy = 0.99;
		assert_int_not_equal(iap_report_write(&r, dir, &err), IAP_OK);
		chmod(dir, 0700);
	}
	after = slurp(path);
	assert_non_null(after);
	assert_string_equal(before, after);
	free(before);
	free(after);
}

/*
 * The fine-tuned set: after the others in results.csv and results.json,
 * marked in the finetuned column, and a report.md section with each pruned
 * model's accuracy before and after and both changes from the baseline.
 * Without fine-tuned rows there is no such section.
 */
static void test_finetuned_rows(void **state)
{
	static const struct iap_report_row ft[] = {
		ROW(0, "clustering", "lrp", "global", 0.50, 0.50, 0.6, 0.65, 0.84),
		ROW(1, "-", "random", "global", 0.50, 0.50, 0.50, 0.50, 0.79),
	};
	char dir[] = "/tmp/iap-report-XXXXXX", path[300];
	struct iap_report r = sample();
	struct iap_error err;
	char *s;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(iap_report_write(&r, dir, &err), IAP_OK);
	snprintf(path, sizeof(path), "%s/report.md", dir);
	s = slurp(path);
	assert_null(strstr(s, "After fine-tuning"));
	free(s);

	r.n_finetuned = 2;
	r.finetuned = ft;
	r.finetune = "Fine-tuned for 2 epochs.";
	assert_int_equal(iap_report_write(&r, dir, &err), IAP_OK);
	snprintf(path, sizeof(path), "%s/results.csv", dir);
	s = slurp(path);
	assert_non_null(strstr(s, "\n-,random,global,0.5,0.5,0.5,0.5,0.5,0.45,0.7,,0.03,0.35,0\n"
				  "clustering,lrp,global,0.5,0.5,0.6,0.65,0.84,0.79,0.7,,0.03,0.01,1\n"
				  "-,random,global,0.5,0.5,0.5,0.5,0.79,0.74,0.7,,0.03,0.06,1\n"));
	free(s);
	snprintf(path, sizeof(path), "%s/results.json", dir);
	s = slurp(path);
	assert_non_null(strstr(s, "\"macs_removed\": 0.65, \"metrics\": {\"accuracy\": 0.84, "));
	assert_non_null(strstr(s, "\"ece\": 0.03}, \"finetuned\": true}"));
	assert_non_null(strstr(s, "\"accuracy\": 0.7, \"balanced_accuracy\": 0.65, \"macro_f1\": 0.7, "
				  "\"auroc\": null, \"ece\": 0.03}, \"finetuned\": false}"));
	free(s);
	snprintf(path, sizeof(path), "%s/report.md", dir);
	s = slurp(path);
	assert_non_null(strstr(s, "## After fine-tuning\n\nFine-tuned for 2 epochs.\n"));
	assert_non_null(strstr(s, "| lrp | clustering | global | 0.50 | 0.7000 | 0.8400 | -15.0 | -1.0 | 0.6500 | 0.7900 |\n"));
	assert_non_null(strstr(s, "| random | - | global | 0.50 | 0.5000 | 0.7900 | -35.0 | -6.0 | 0.4500 | 0.7400 |\n"));
	free(s);
}

/* ---- the statistics, predictions.csv and report.html ---------------------------------------- */

#define NI 4
static const int labels4[NI] = { 0, 1, 1, 0 };
static const int base4[NI] = { 0, 1, 0, 0 };
static const float conf4[NI] = { 0.9f, 0.8f, 0.6f, 0.7f };
static const int pred4[5][NI] = { { 0, 1, 1, 0 }, { 0, 0, 0, 0 }, { 1, 1, 1, 1 }, { 0, 1, 0, 1 }, { 1, 0, 1, 0 } };
static const double sens[2] = { 0.5, 0.75 }, spec[2] = { 0.75, 0.5 };
static const char *const names[2] = { "benign", "malignant" };
static const struct iap_report_threshold thresholds_ci[] = {
	{ "clustering", "lrp", "global", 0.37, 1, 0.30, 0.45, 0 },
	{ "-", "random", "global", 0.0, 1, 0.0, 0.05, 1 },
};
static float image[16], dmap[16], pmap[16];
static struct iap_report_gallery_item items[2];
static struct iap_report_gallery gal;

static struct iap_report stats_sample(struct iap_report_row *r5)
{
	struct iap_report r = sample();

	memcpy(r5, rows, sizeof(rows));
	for (int i = 0; i < 5; i++) {
		r5[i].has_stats = 1;
		r5[i].acc_lo = r5[i].m.accuracy - 0.1;
		r5[i].acc_hi = r5[i].m.accuracy + 0.05;
		r5[i].drop_lo = (0.85 - r5[i].m.accuracy) - 0.01;
		r5[i].drop_hi = (0.85 - r5[i].m.accuracy) + 0.02;
		r5[i].lost = i;
		r5[i].gained = 1;
		r5[i].mcnemar_p = i == 4 ? 0.0001 : 0.5;
		r5[i].sensitivity = sens;
		r5[i].specificity = spec;
		r5[i].pred = pred4[i];
		r5[i].confidence = conf4;
		r5[i].has_expl = i < 3;
		r5[i].expl_rho = 0.95 - 0.1 * i;
		r5[i].expl_topk = 0.8 - 0.1 * i;
	}
	for (int k = 0; k < 16; k++) {
		image[k] = (float)k / 15.0f;
		dmap[k] = k % 5 == 0 ? 1.0f : k % 3 == 0 ? -0.5f : 0.0f;
		pmap[k] = k % 4 == 0 ? 0.8f : 0.0f;
	}
	items[0] = (struct iap_report_gallery_item){ image, dmap, pmap, 1, 1, 0, 7, NULL, 0, 0 };
	items[1] = (struct iap_report_gallery_item){ image, dmap, dmap, 0, 0, 0, 9, NULL, 0, 0 };
	gal = (struct iap_report_gallery){ 1, 4, 4, "lrp", "lrp / clustering / global at 0.37", 2, items };
	r.rows = r5;
	r.thresholds = thresholds_ci;
	r.n_classes = 2;
	r.class_names = names;
	r.has_stats = 1;
	r.n_boot = 1000;
	r.boot_seed = 42;
	r.baseline_acc_lo = 0.80;
	r.baseline_acc_hi = 0.90;
	r.baseline_sensitivity = sens;
	r.baseline_specificity = spec;
	r.n_images = NI;
	r.labels = labels4;
	r.baseline_pred = base4;
	r.baseline_confidence = conf4;
	r.ranking = "magnitude and random scores divided by their layer's L2 norm.";
	r.expl_method = "lrp";
	r.expl_config = "lrp / clustering / global";
	r.expl_images = 16;
	r.expl_topk_frac = 0.1;
	r.latency = (struct iap_report_latency){ 1, { 1, 16 }, { 2.0, 8.0 }, { 1.0, 2.0 }, 10 };
	r.gallery = &gal;
	return r;
}

static int b64(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52 :
	       c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode the first data: URI PNG at or after p with the library's PNG reader into t. */
static void png_at(const char *p, struct iap_tensor *t)
{
	unsigned char *buf;
	size_t n = 0;
	uint32_t acc = 0;
	int bits = 0;
	struct iap_error err;

	p = strstr(p, "data:image/png;base64,");
	assert_non_null(p);
	buf = malloc(strlen(p));
	assert_non_null(buf);
	for (p += strlen("data:image/png;base64,"); b64(*p) >= 0; p++) {
		acc = acc << 6 | (uint32_t)b64(*p);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[n++] = (unsigned char)(acc >> bits);
		}
	}
	/* CRCs and zlib stream checked by libpng. */
	assert_int_equal(iap_image_decode(buf, n, "<html>", 3, t, &err), IAP_OK);
	free(buf);
}

/* The first data: URI PNG of html: the 4-pixel image enlarged to 224, black to white. */
static void check_first_png(const char *html)
{
	struct iap_tensor t = { 0 };
	float mn = 1, mx = 0;

	png_at(html, &t);
	assert_int_equal(t.shape[1], 224);
	assert_int_equal(t.shape[2], 224);
	for (int64_t i = 0; i < iap_tensor_numel(&t); i++) {
		mn = t.data[i] < mn ? t.data[i] : mn;
		mx = t.data[i] > mx ? t.data[i] : mx;
	}
	/* The gray ramp stretched to its range: black to white. */
	assert_true(mn < 0.05f && mx > 0.95f);
	iap_tensor_free(&t);
}

static void test_statistics_and_html(void **state)
{
	char dir[] = "/tmp/iap-report-XXXXXX", path[300];
	struct iap_report_row r5[5];
	struct iap_report r = stats_sample(r5);
	struct iap_error err;
	char *s;
	int lines = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(iap_report_write(&r, dir, &err), IAP_OK);

	snprintf(path, sizeof(path), "%s/results.csv", dir);
	s = slurp(path);
	assert_non_null(strstr(s, ",accuracy_drop,finetuned,accuracy_lo,accuracy_hi,drop_lo,drop_hi,mcnemar_p,lost,gained,"
				  "sensitivity_benign,specificity_benign,sensitivity_malignant,specificity_malignant,"
				  "explanation_spearman,explanation_topk\n"));
	assert_non_null(strstr(s, "\nclustering,lrp,global,0.3,0.3,0.4,0.45,0.83,0.78,0.7,,0.03,0.02,0,0.73,0.88,0.01,0.04,0.5,1,1,"
				  "0.5,0.75,0.75,0.5,0.85,0.7\n"));
	/* No explanation measured for random: empty fields. */
	assert_non_null(strstr(s, "\n-,random,global,0.5,0.5,0.5,0.5,0.5,0.45,0.7,,0.03,0.35,0,0.4,0.55,0.34,0.37,0.0001,4,1,"
				  "0.5,0.75,0.75,0.5,,\n"));
	free(s);

	snprintf(path, sizeof(path), "%s/report.md", dir);
	s = slurp(path);
	assert_non_null(strstr(s, "- Baselines: magnitude and random scores divided by their layer's L2 norm.\n"));
	assert_non_null(strstr(s, "Accuracy 95 % interval: [0.8000, 0.9000] (bootstrap over the 4 evaluation images, 1000 resamples, seed 42)"));
	assert_non_null(strstr(s, "| malignant | 0.7500 | 0.5000 |"));
	assert_non_null(strstr(s, "| lrp | clustering | global | 0.0 [-1.0, 2.0] · 20% / 25% | 2.0 [1.0, 4.0] · 40% / 45% | "
				  "15.0 [14.0, 17.0] · 60% / 65% | 0.37 [0.30, 0.45] |"));
	assert_non_null(strstr(s, "| random | - | 0.50 | 0.5000 [0.4000, 0.5500] | 4 / 1 | 1.0e-04 | 0.500 / 0.750 | 0.750 / 0.500 |"));
	assert_non_null(strstr(s, "| unpruned | – | 0.00 | 0.8500 [0.8000, 0.9000] | – | – | 0.500 / 0.750 | 0.750 / 0.500 |"));
	assert_non_null(strstr(s, "| 0.30 | 0.850 | 0.700 | 2.0 [1.0, 4.0] |"));
	assert_non_null(strstr(s, "| 16 | 8.000 | 2.000 | 4.00× |"));
	free(s);

	snprintf(path, sizeof(path), "%s/results.json", dir);
	s = slurp(path);
	assert_non_null(strstr(s, "\"drop_ci\": [0.01, 0.04], \"mcnemar\": {\"lost\": 1, \"gained\": 1, \"p\": 0.5}"));
	assert_non_null(strstr(s, "\"per_class\": {\"benign\": {\"sensitivity\": 0.5, \"specificity\": 0.75}"));
	assert_non_null(strstr(s, "\"rate\": 0.37, \"ci\": [0.3, 0.45]}"));
	assert_non_null(strstr(s, "\"latency_ms\": [{\"batch\": 1, \"dense\": 2, \"compact\": 1}"));
	free(s);

	/* predictions.csv: a header, then (baseline + 5 rows) × 4 images. */
	snprintf(path, sizeof(path), "%s/predictions.csv", dir);
	s = slurp(path);
	for (const char *p = s; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 1 + 6 * NI);
	assert_non_null(strstr(s, "row,sampler,attribution,policy,rate,image,label,prediction,confidence,correct\n"
				  "baseline,-,unpruned,-,0,0,0,0,0.9,1\n"));
	assert_non_null(strstr(s, "\n4,-,random,global,0.5,2,1,1,0.6,1\n"));
	free(s);

	snprintf(path, sizeof(path), "%s/curves.svg", dir);
	s = slurp(path);
	assert_non_null(strstr(s, "unpruned baseline (0.850)"));
	assert_non_null(strstr(s, "tolerance (baseline − 5.0 points)"));
	assert_non_null(strstr(s, "Explanation preservation"));
	assert_non_null(strstr(s, "<polyline class=\"expl\""));
	free(s);

	snprintf(path, sizeof(path), "%s/report.html", dir);
	s = slurp(path);
	assert_true(!strncmp(s, "<!DOCTYPE html>", 15));
	assert_non_null(strstr(s, "<h2>Table 1: accuracy drop from the baseline (points), by pruning rate</h2>"));
	assert_non_null(strstr(s, "<tr><th>attribution</th><th>sampler</th>"));
	assert_non_null(strstr(s, "<svg xmlns=\"http://www.w3.org/2000/svg\""));
	assert_non_null(strstr(s, "linearGradient id=\"bwr\""));
	assert_non_null(strstr(s, "true class <b>malignant</b> · dense predicts malignant <span class=\"ok\">(correct)</span> · "
				  "pruned predicts benign <span class=\"bad\">(wrong)</span>"));
	/* Self-contained: nothing fetched. */
	assert_null(strstr(s, "src=\"http"));
	assert_null(strstr(s, "href=\""));
	assert_null(strstr(s, "<script"));
	check_first_png(s);
	free(s);
}

/*
 * Gallery items with their stored images (a dataset with load_original): the
 * panels take the stored 6x3 size (enlarged 38x to 228x114), the maps are
 * resampled from the model's 4x4 to it, and the page says so.
 */
static void test_html_native(void **state)
{
	char dir[] = "/tmp/iap-report-XXXXXX", path[300];
	struct iap_report_row r5[5];
	struct iap_report r = stats_sample(r5);
	struct iap_error err;
	struct iap_tensor t = { 0 };
	float native[18];
	const char *p;
	char *s;

	(void)state;
	/* Left half black, right half white: the picture shows which image was drawn, and its orientation. */
	for (int k = 0; k < 18; k++)
		native[k] = k % 6 < 3 ? 0.0f : 1.0f;
	for (int i = 0; i < 2; i++) {
		items[i].native = native;
		items[i].native_h = 3;
		items[i].native_w = 6;
	}
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/report.html", dir);
	assert_int_equal(iap_report_write_html(&r, path, &err), IAP_OK);
	s = slurp(path);
	assert_non_null(strstr(s, ". Images at their stored resolution (6×3); each map resampled (bilinear) to it from "
				  "the model's input resolution (4×4); shown enlarged 38× (bilinear).</p>"));
	assert_non_null(strstr(s, "image 7 of the evaluation split (stored 6×3) · true class"));
	assert_null(strstr(s, "model's input resolution (4×4), shown enlarged"));
	/* Every panel (image, dense, pruned; two items) at the stored size. */
	p = s;
	for (int k = 0; k < 6; k++) {
		p = strstr(p, "<img width=\"228\" height=\"114\"");
		assert_non_null(p);
		p++;
	}
	/* The image panel is the stored image: black on the left, white on the right. */
	png_at(s, &t);
	assert_int_equal(t.shape[1], 114);
	assert_int_equal(t.shape[2], 228);
	assert_true(t.data[57 * 228 + 10] < 0.05f);
	assert_true(t.data[57 * 228 + 217] > 0.95f);
	iap_tensor_free(&t);
	free(s);

	/* A stored 2048 x 4 scan is drawn at 1024 x 2, and the page says so. */
	{
		static float wide[2048 * 4];

		for (int i = 0; i < 2; i++) {
			items[i].native = wide;
			items[i].native_h = 4;
			items[i].native_w = 2048;
		}
		assert_int_equal(iap_report_write_html(&r, path, &err), IAP_OK);
		s = slurp(path);
		assert_non_null(strstr(s, "Images at their stored resolution (2048×4); each map resampled (bilinear) to it "
					  "from the model's input resolution (4×4); shown shrunk to at most 1024 pixels a side."));
		assert_non_null(strstr(s, "<img width=\"1024\" height=\"2\""));
		free(s);
	}
	remove(path);
	rmdir(dir);
	for (int i = 0; i < 2; i++)
		items[i].native = NULL;
}

/*
 * Outside the test harness: `test_report --write DIR` writes the sample
 * report (for the headless-browser test); `test_report --nonblank PNG`
 * exits 0 when the picture has both dark and light pixels.
 */
static int tool(int argc, char **argv)
{
	struct iap_report_row r5[5];
	struct iap_report r = stats_sample(r5);
	struct iap_tensor t = { 0 };
	struct iap_error err;
	int64_t dark = 0, light = 0;

	if (argc == 3 && !strcmp(argv[1], "--write")) {
		if (iap_report_write(&r, argv[2], &err)) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		return 0;
	}
	if (iap_image_load(argv[2], 1, &t, &err)) {
		fprintf(stderr, "%s\n", err.msg);
		return 1;
	}
	for (int64_t i = 0; i < iap_tensor_numel(&t); i++) {
		dark += t.data[i] < 0.3f;
		light += t.data[i] > 0.9f;
	}
	printf("%lld x %lld pixels: %lld dark, %lld light\n", (long long)t.shape[2], (long long)t.shape[1],
	       (long long)dark, (long long)light);
	iap_tensor_free(&t);
	return dark > 100 && light > 100 ? 0 : 1;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_files),
		cmocka_unit_test(test_failed_write_keeps_old_report),
		cmocka_unit_test(test_finetuned_rows),
		cmocka_unit_test(test_statistics_and_html),
		cmocka_unit_test(test_html_native),
	};

	if (argc == 3 && (!strcmp(argv[1], "--write") || !strcmp(argv[1], "--nonblank")))
		return tool(argc, argv);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
