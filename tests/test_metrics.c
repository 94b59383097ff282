/*
 * Metrics against hand-computed values: accuracy, balanced accuracy,
 * per-class recall/specificity/precision/F1, a class that is never predicted,
 * AUROC with ties (binary and macro one-vs-rest) and when it is undefined,
 * ECE bins, class weights, and the JSON / text renderings.
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/metrics.h>

#define TOL 1e-6

/*
 * Binary case, labels 0 0 0 1 1 1, p1 = .1 .4 .6 | .6 .8 .3.
 * Predictions 0 0 1 | 1 1 0: confusion [[2, 1], [1, 2]], both classes
 * recall = specificity = precision = F1 = 2/3.
 * AUROC by pairs (positive above negative 1, tie 1/2):
 *   .6: 1 + 1 + 1/2;  .8: 3;  .3: 1  →  6.5 / 9.
 * ECE: confidences .9 (right), .6 ×3 (right, wrong, right), .8 (right), .7 (wrong)
 * in four bins: (.1 + 3·|2/3 − .6| + .2 + .7) / 6 = 0.2.
 */
static const int bin_labels[6] = { 0, 0, 0, 1, 1, 1 };
static const float bin_probs[12] = {
	0.9f, 0.1f, 0.6f, 0.4f, 0.4f, 0.6f, 0.4f, 0.6f, 0.2f, 0.8f, 0.7f, 0.3f,
};

static void test_binary(void **state)
{
	struct iap_metrics m = { 0 };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_metrics_compute(&m, 6, 2, bin_labels, bin_probs, &err), IAP_OK);
	assert_int_equal(m.n_samples, 6);
	assert_float_equal(m.accuracy, 4.0 / 6.0, TOL);
	assert_float_equal(m.balanced_accuracy, 2.0 / 3.0, TOL);
	assert_float_equal(m.macro_f1, 2.0 / 3.0, TOL);
	assert_int_equal(m.confusion[0], 2);
	assert_int_equal(m.confusion[1], 1);
	assert_int_equal(m.confusion[2], 1);
	assert_int_equal(m.confusion[3], 2);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(m.support[k], 3);
		assert_float_equal(m.sensitivity[k], 2.0 / 3.0, TOL);
		assert_float_equal(m.specificity[k], 2.0 / 3.0, TOL);
		assert_float_equal(m.precision[k], 2.0 / 3.0, TOL);
		assert_float_equal(m.f1[k], 2.0 / 3.0, TOL);
	}
	assert_true(m.auroc_ok);
	assert_float_equal(m.auroc, 6.5 / 9.0, TOL);
	/* Class 0 one-vs-rest ranks by p0 = 1 − p1 with the roles swapped: the same 6.5/9. */
	assert_true(m.auroc_class_ok[0]);
	assert_float_equal(m.auroc_class[0], 6.5 / 9.0, TOL);

	assert_float_equal(m.ece, 0.2, TOL);
	assert_int_equal(m.ece_count[9], 3);    /* .6 in (9/15, 10/15] */
	assert_int_equal(m.ece_count[10], 1);   /* .7 */
	assert_int_equal(m.ece_count[12], 1);   /* .8 */
	assert_int_equal(m.ece_count[13], 1);   /* .9 */
	assert_float_equal(m.ece_accuracy[9], 2.0 / 3.0, TOL);
	assert_float_equal(m.ece_confidence[9], 0.6, TOL);
	assert_int_equal(m.has_loss, 0);

	/* Recomputing into the same struct reuses it and gives the same values. */
	assert_int_equal(iap_metrics_compute(&m, 6, 2, bin_labels, bin_probs, &err), IAP_OK);
	assert_float_equal(m.auroc, 6.5 / 9.0, TOL);
	iap_metrics_free(&m);
	assert_null(m.support);
}

/*
 * Three classes, class 2 never predicted:
 *   labels 0 0 1 1 2 2, predictions 0 0 1 0 1 0 → confusion
 *   [[2,0,0],[1,1,0],[1,1,0]], accuracy 1/2.
 *   class 0: recall 1, specificity 2/4, precision 2/4, F1 2/3
 *   class 1: recall 1/2, specificity 3/4, precision 1/2, F1 1/2
 *   class 2: recall 0, specificity 1, precision 0 (zero_division=0), F1 0
 *   balanced accuracy (1 + 1/2 + 0)/3 = 1/2, macro F1 (2/3 + 1/2)/3 = 7/18.
 * One-vs-rest AUROC: class 0 7/8, class 1 5/8, class 2 1 → macro 5/6.
 * (sklearn: f1_score(average="macro", zero_division=0) = 7/18,
 * roc_auc_score(multi_class="ovr") = 5/6.)
 */
static const int tri_labels[6] = { 0, 0, 1, 1, 2, 2 };
static const float tri_probs[18] = {
	0.7f, 0.2f, 0.1f, 0.5f, 0.4f, 0.1f, 0.3f, 0.6f,  0.1f,
	0.6f, 0.3f, 0.1f, 0.2f, 0.5f, 0.3f, 0.4f, 0.35f, 0.25f,
};

static void test_multiclass_never_predicted(void **state)
{
	struct iap_metrics m = { 0 };
	struct iap_error err;
	static const int64_t conf[9] = { 2, 0, 0, 1, 1, 0, 1, 1, 0 };
	static const double sens[3] = { 1.0, 0.5, 0.0 }, spec[3] = { 0.5, 0.75, 1.0 };
	static const double prec[3] = { 0.5, 0.5, 0.0 }, f1[3] = { 2.0 / 3.0, 0.5, 0.0 };
	static const double auc[3] = { 7.0 / 8.0, 5.0 / 8.0, 1.0 };

	(void)state;
	assert_int_equal(iap_metrics_compute(&m, 6, 3, tri_labels, tri_probs, &err), IAP_OK);
	assert_float_equal(m.accuracy, 0.5, TOL);
	for (int i = 0; i < 9; i++)
		assert_int_equal(m.confusion[i], conf[i]);
	assert_int_equal(m.predicted[2], 0);
	for (int k = 0; k < 3; k++) {
		assert_float_equal(m.sensitivity[k], sens[k], TOL);
		assert_float_equal(m.specificity[k], spec[k], TOL);
		assert_float_equal(m.precision[k], prec[k], TOL);
		assert_float_equal(m.f1[k], f1[k], TOL);
		assert_true(m.auroc_class_ok[k]);
		assert_float_equal(m.auroc_class[k], auc[k], TOL);
	}
	assert_float_equal(m.balanced_accuracy, 0.5, TOL);
	assert_float_equal(m.macro_f1, 7.0 / 18.0, TOL);
	assert_true(m.auroc_ok);
	assert_float_equal(m.auroc, 5.0 / 6.0, TOL);
	/*
	 * Confidences .7 (right) .5 (right) .6 (right) .6 (wrong) .5 (wrong) .4 (wrong):
	 * bins .4 → |0 − .4|·1/6, .5 → 0, .6 → |.5 − .6|·2/6, .7 → |1 − .7|·1/6; ECE .15.
	 */
	assert_float_equal(m.ece, 0.15, TOL);
	iap_metrics_free(&m);
}

/* AUROC ties: all scores equal gives 1/2; a partly tied set by hand. */
static void test_auroc_ties(void **state)
{
	const float same[4] = { 0.3f, 0.3f, 0.3f, 0.3f };
	const unsigned char pos4[4] = { 1, 0, 1, 0 };
	/* Positives .5 .5 .9, negatives .5 .1: (1/2 + 1) + (1/2 + 1) + 2 = 5 of 6 pairs. */
	const float s5[5] = { 0.5f, 0.1f, 0.5f, 0.9f, 0.5f };
	const unsigned char pos5[5] = { 1, 0, 1, 1, 0 };
	const unsigned char none[4] = { 0, 0, 0, 0 }, all[4] = { 1, 1, 1, 1 };
	struct iap_error err;
	double auc = -1.0;

	(void)state;
	assert_int_equal(iap_auroc(4, same, pos4, &auc, &err), IAP_OK);
	assert_float_equal(auc, 0.5, TOL);
	assert_int_equal(iap_auroc(5, s5, pos5, &auc, &err), IAP_OK);
	assert_float_equal(auc, 5.0 / 6.0, TOL);
	assert_int_equal(iap_auroc(4, same, none, &auc, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "undefined"));
	assert_int_equal(iap_auroc(4, same, all, &auc, NULL), IAP_EINVAL);
}

/*
 * AUROC unavailable: binary labels all 0 (no positives), and three classes
 * with class 2 absent (macro unavailable, classes 0 and 1 still defined).
 * Balanced accuracy then averages the present classes only.
 */
static void test_auroc_unavailable(void **state)
{
	const int zeros[3] = { 0, 0, 0 };
	const float p2[6] = { 0.9f, 0.1f, 0.2f, 0.8f, 0.6f, 0.4f };
	const int lab3[4] = { 0, 1, 0, 1 };
	const float p3[12] = { 0.8f, 0.1f, 0.1f, 0.1f, 0.2f, 0.7f, 0.3f, 0.6f, 0.1f,
			       0.2f, 0.7f, 0.1f };
	struct iap_metrics m = { 0 };
	struct iap_error err;
	char *json = NULL;

	(void)state;
	assert_int_equal(iap_metrics_compute(&m, 3, 2, zeros, p2, &err), IAP_OK);
	assert_false(m.auroc_ok);
	assert_false(m.auroc_class_ok[0]);
	assert_false(m.auroc_class_ok[1]);
	assert_float_equal(m.auroc, 0.0, 0.0);
	/* Class 0: recall 2/3; class 1 has no samples and is left out of the mean. */
	assert_float_equal(m.balanced_accuracy, 2.0 / 3.0, TOL);
	assert_int_equal(iap_metrics_json_string(&m, NULL, &json, &err), IAP_OK);
	assert_non_null(strstr(json, "\"auroc\": null,"));
	assert_non_null(strstr(json, "\"auroc_per_class\": [null, null],"));
	assert_null(strstr(json, "nan"));
	free(json);

	/* Predictions 0 2 1 1: class 2 is predicted but never true. */
	assert_int_equal(iap_metrics_compute(&m, 4, 3, lab3, p3, &err), IAP_OK);
	assert_int_equal(m.n_classes, 3);
	assert_false(m.auroc_ok);
	assert_true(m.auroc_class_ok[0]);
	assert_true(m.auroc_class_ok[1]);
	assert_false(m.auroc_class_ok[2]);
	/* Class 0: positives .8 .3 above negatives .1 .2 → 1; class 1: .2 .7 vs .1 .6 → 3/4. */
	assert_float_equal(m.auroc_class[0], 1.0, TOL);
	assert_float_equal(m.auroc_class[1], 0.75, TOL);
	assert_float_equal(m.accuracy, 0.5, TOL);
	assert_float_equal(m.balanced_accuracy, 0.5, TOL);  /* (1/2 + 1/2) / 2 */
	assert_float_equal(m.precision[2], 0.0, 0.0);
	assert_float_equal(m.specificity[2], 0.75, TOL);
	iap_metrics_free(&m);
}

/* A confidence of exactly 1 belongs to the last bin (bins are (lo, hi]). */
static void test_ece_edges(void **state)
{
	const int lab[2] = { 0, 1 };
	const float p[4] = { 1.0f, 0.0f, 0.5f, 0.5f };
	struct iap_metrics m = { 0 };
	struct iap_error err;

	(void)state;
	assert_int_equal(iap_metrics_compute(&m, 2, 2, lab, p, &err), IAP_OK);
	assert_int_equal(m.ece_count[14], 1);
	/* .5 lies in (7/15, 8/15]; argmax takes the first of tied classes: predicted 0, wrong. */
	assert_int_equal(m.ece_count[7], 1);
	assert_float_equal(m.accuracy, 0.5, TOL);
	/* ECE = (1/2)|1 − 1| + (1/2)|0 − .5| = .25 */
	assert_float_equal(m.ece, 0.25, TOL);
	iap_metrics_free(&m);
}

static void test_class_weights(void **state)
{
	const int lab[4] = { 0, 0, 0, 1 }, bad[2] = { 0, 3 };
	float w[3];
	struct iap_error err;

	(void)state;
	/* N / (C · n_c): 4 / (2·3), 4 / (2·1). */
	assert_int_equal(iap_class_weights(4, lab, 2, w, &err), IAP_OK);
	assert_float_equal(w[0], 4.0 / 6.0, TOL);
	assert_float_equal(w[1], 2.0, TOL);
	/* A class without samples gets 0: 4 / 9, 4 / 3, 0. */
	assert_int_equal(iap_class_weights(4, lab, 3, w, &err), IAP_OK);
	assert_float_equal(w[0], 4.0 / 9.0, TOL);
	assert_float_equal(w[1], 4.0 / 3.0, TOL);
	assert_float_equal(w[2], 0.0, 0.0);
	assert_int_equal(iap_class_weights(2, bad, 3, w, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "label 3"));
}

static void test_refusals(void **state)
{
	const int lab[2] = { 0, 2 };
	const float nanp[4] = { 0.5f, 0.5f, 0.5f, NAN };
	const float p[4] = { 0.5f, 0.5f, 0.5f, 0.5f };
	const int ok[2] = { 0, 1 };
	struct iap_metrics m = { 0 };
	struct iap_error err;
	char *json = NULL;

	(void)state;
	assert_int_equal(iap_metrics_compute(&m, 2, 2, lab, p, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "label 2"));
	assert_int_equal(iap_metrics_compute(&m, 2, 2, ok, nanp, &err), IAP_ENUMERIC);
	assert_int_equal(iap_metrics_compute(&m, 0, 2, ok, p, &err), IAP_EINVAL);
	assert_int_equal(iap_metrics_compute(&m, 2, 1, ok, p, &err), IAP_EINVAL);
	assert_int_equal(iap_metrics_json_string(&m, NULL, &json, &err), IAP_EINVAL);
	assert_null(json);
	iap_metrics_free(&m);
}

/* The JSON and the text table carry the hand-computed values. */
static void test_json_and_text(void **state)
{
	const char *names[2] = { "benign", "mal\"ignant" };
	struct iap_metrics m = { 0 };
	struct iap_error err;
	char *json = NULL, text[8192];
	size_t n;
	FILE *fp;

	(void)state;
	assert_int_equal(iap_metrics_compute(&m, 6, 2, bin_labels, bin_probs, &err), IAP_OK);
	m.has_loss = 1;
	m.loss = 0.25;
	assert_int_equal(iap_metrics_json_string(&m, names, &json, &err), IAP_OK);
	assert_non_null(strstr(json, "\"classes\": [\"benign\", \"mal\\\"ignant\"],"));
	assert_non_null(strstr(json, "\"accuracy\": 0.6666666667,"));
	assert_non_null(strstr(json, "\"auroc\": 0.7222222222,"));
	assert_non_null(strstr(json, "\"auroc_kind\": \"binary\","));
	assert_non_null(strstr(json, "\"loss\": 0.25,"));
	assert_non_null(strstr(json, "\"confusion\": [[2, 1], [1, 2]],"));
	assert_non_null(strstr(json, "\"support\": [3, 3],"));
	assert_non_null(strstr(json, "{\"count\": 3, \"confidence\": 0.6000000238, \"accuracy\": 0.6666666667}"));
	assert_int_equal(json[strlen(json) - 2], '}');

	free(json);

	fp = tmpfile();
	assert_non_null(fp);
	assert_int_equal(iap_metrics_write_text(&m, names, fp, &err), IAP_OK);
	rewind(fp);
	n = fread(text, 1, sizeof(text) - 1, fp);
	text[n] = '\0';
	fclose(fp);
	assert_non_null(strstr(text, "accuracy           0.6667\n"));
	assert_non_null(strstr(text, "AUROC (binary)     0.7222\n"));
	assert_non_null(strstr(text, "mal\"ignant        3   0.6667   0.6667   0.6667   0.6667   0.7222\n"));
	assert_non_null(strstr(text, "benign            2          1\n"));
	/* The confusion matrix's columns are named like its rows, not numbered. */
	assert_non_null(strstr(text, "columns predicted)\n             benign mal\"ignant\n"));
	iap_metrics_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_binary),
		cmocka_unit_test(test_multiclass_never_predicted),
		cmocka_unit_test(test_auroc_ties),
		cmocka_unit_test(test_auroc_unavailable),
		cmocka_unit_test(test_ece_edges),
		cmocka_unit_test(test_class_weights),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_json_and_text),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
