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

#include <iaprune/report.h>

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

static const struct iap_report_row rows[] = {
	{ "clustering", "lrp", "global", 0.15, 0.15, 0.2, 0.25, M(0.85) },
	{ "clustering", "lrp", "global", 0.30, 0.30, 0.4, 0.45, M(0.83) },
	{ "clustering", "lrp", "global", 0.50, 0.50, 0.6, 0.65, M(0.70) },
	{ "-", "random", "global", 0.15, 0.15, 0.15, 0.15, M(0.80) },
	{ "-", "random", "global", 0.50, 0.50, 0.50, 0.50, M(0.5) },
};
static const double table_rates[] = { 0.15, 0.30, 0.50 };
static const struct iap_report_threshold thresholds[] = {
	{ "clustering", "lrp", "global", 0.37 },
	{ "-", "random", "global", 0.0 },
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
	assert_non_null(strstr(s, "| lrp | clustering | global | +0.0 | -2.0 | -15.0 | 0.37 |"));
	/* A rate a configuration was not run at shows a dash. */
	assert_non_null(strstr(s, "| random | - | global | -5.0 | – | -35.0 | 0.00 |"));
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
		{ "clustering", "lrp", "global", 0.50, 0.50, 0.6, 0.65, M(0.84) },
		{ "-", "random", "global", 0.50, 0.50, 0.50, 0.50, M(0.79) },
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_files),
		cmocka_unit_test(test_failed_write_keeps_old_report),
		cmocka_unit_test(test_finetuned_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
