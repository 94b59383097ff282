/*
 * iaprune — classification metrics (accuracy, balanced accuracy, per-class
 * recall/specificity/precision/F1, confusion matrix, AUROC, ECE) and their
 * JSON and text renderings. Conventions are documented in metrics.h.
 */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/metrics.h>

/* A score and whether its sample is a positive, sorted together for ranking. */
struct scored {
	float score;
	unsigned char pos;
};

static int cmp_scored(const void *a, const void *b)
{
	float x = ((const struct scored *)a)->score, y = ((const struct scored *)b)->score;

	return (x > y) - (x < y);
}

/*
 * Mann–Whitney AUROC of a[n] (sorted here): the positives' rank sum, ranks
 * averaged over tied scores, minus its minimum npos(npos+1)/2, over
 * npos·nneg. The caller has checked npos > 0 and nneg > 0.
 */
static double auroc_sorted(struct scored *a, int64_t n, int64_t npos, int64_t nneg)
{
	double rank_sum = 0.0;

	qsort(a, (size_t)n, sizeof(*a), cmp_scored);
	for (int64_t i = 0; i < n;) {
		int64_t j = i, pos = 0;

		while (j < n && a[j].score == a[i].score) {
			pos += a[j].pos;
			j++;
		}
		/* Ranks i+1 .. j (1-based) share their mean. */
		rank_sum += (double)pos * (double)(i + 1 + j) / 2.0;
		i = j;
	}
	return (rank_sum - (double)npos * (double)(npos + 1) / 2.0) / ((double)npos * (double)nneg);
}

int iap_auroc(int64_t n, const float *scores, const unsigned char *pos, double *auc,
	      struct iap_error *err)
{
	struct scored *a;
	int64_t npos = 0;

	if (n < 1 || !scores || !pos || !auc)
		return iap_error_set(err, IAP_EINVAL, "auroc: need n >= 1, scores, labels and a result");
	for (int64_t i = 0; i < n; i++)
		npos += pos[i] ? 1 : 0;
	if (npos == 0 || npos == n)
		return iap_error_set(err, IAP_EINVAL,
				     "auroc: undefined with %lld positives and %lld negatives",
				     (long long)npos, (long long)(n - npos));
	a = malloc((size_t)n * sizeof(*a));
	if (!a)
		return iap_error_set(err, IAP_ENOMEM, "auroc: out of memory for %lld scores",
				     (long long)n);
	for (int64_t i = 0; i < n; i++) {
		a[i].score = scores[i];
		a[i].pos = pos[i] ? 1 : 0;
	}
	*auc = auroc_sorted(a, n, npos, n - npos);
	free(a);
	return IAP_OK;
}

int iap_class_weights(int64_t n, const int *labels, int c, float *weights, struct iap_error *err)
{
	int64_t *count;

	if (n < 1 || c < 1 || !labels || !weights)
		return iap_error_set(err, IAP_EINVAL, "class weights: need samples, classes and labels");
	count = calloc((size_t)c, sizeof(*count));
	if (!count)
		return iap_error_set(err, IAP_ENOMEM, "class weights: out of memory");
	for (int64_t i = 0; i < n; i++) {
		if (labels[i] < 0 || labels[i] >= c) {
			int bad = labels[i];

			free(count);
			return iap_error_set(err, IAP_EINVAL,
					     "class weights: sample %lld has label %d, outside [0, %d)",
					     (long long)i, bad, c);
		}
		count[labels[i]]++;
	}
	for (int k = 0; k < c; k++)
		weights[k] = count[k] ? (float)((double)n / ((double)c * (double)count[k])) : 0.0f;
	free(count);
	return IAP_OK;
}

void iap_metrics_free(struct iap_metrics *m)
{
	if (!m)
		return;
	free(m->support);
	free(m->predicted);
	free(m->sensitivity);
	free(m->specificity);
	free(m->precision);
	free(m->f1);
	free(m->confusion);
	free(m->auroc_class_ok);
	free(m->auroc_class);
	memset(m, 0, sizeof(*m));
}

/* Make m's arrays hold c classes, keeping them when c is unchanged. */
static int metrics_reserve(struct iap_metrics *m, int c, struct iap_error *err)
{
	size_t k = (size_t)c;

	if (m->n_classes == c && m->support && m->confusion && m->auroc_class)
		return IAP_OK;
	iap_metrics_free(m);
	m->support = calloc(k, sizeof(*m->support));
	m->predicted = calloc(k, sizeof(*m->predicted));
	m->sensitivity = calloc(k, sizeof(*m->sensitivity));
	m->specificity = calloc(k, sizeof(*m->specificity));
	m->precision = calloc(k, sizeof(*m->precision));
	m->f1 = calloc(k, sizeof(*m->f1));
	m->confusion = calloc(k * k, sizeof(*m->confusion));
	m->auroc_class_ok = calloc(k, sizeof(*m->auroc_class_ok));
	m->auroc_class = calloc(k, sizeof(*m->auroc_class));
	if (!m->support || !m->predicted || !m->sensitivity || !m->specificity || !m->precision ||
	    !m->f1 || !m->confusion || !m->auroc_class_ok || !m->auroc_class) {
		iap_metrics_free(m);
		return iap_error_set(err, IAP_ENOMEM, "metrics: out of memory for %d classes", c);
	}
	m->n_classes = c;
	return IAP_OK;
}

/*
 * The ECE bin of a confidence: the b with b/15 < conf <= (b+1)/15, edges
 * compared as doubles like Guo et al.'s torch.linspace edges; conf = 0 goes
 * to the first bin.
 */
static int ece_bin(double conf)
{
	int b = (int)ceil(conf * IAP_ECE_BINS) - 1;

	if (b < 0)
		b = 0;
	if (b > IAP_ECE_BINS - 1)
		b = IAP_ECE_BINS - 1;
	while (b > 0 && conf <= (double)b / IAP_ECE_BINS)
		b--;
	while (b < IAP_ECE_BINS - 1 && conf > (double)(b + 1) / IAP_ECE_BINS)
		b++;
	return b;
}

int iap_metrics_compute(struct iap_metrics *m, int64_t n, int c, const int *labels,
			const float *probs, struct iap_error *err)
{
	struct scored *a = NULL;
	int64_t correct = 0;
	int rc;

	if (!m || !labels || !probs || n < 1 || c < 2)
		return iap_error_set(err, IAP_EINVAL,
				     "metrics: need at least one sample and two classes (got %lld, %d)",
				     (long long)n, c);
	for (int64_t i = 0; i < n; i++) {
		if (labels[i] < 0 || labels[i] >= c)
			return iap_error_set(err, IAP_EINVAL,
					     "metrics: sample %lld has label %d, outside [0, %d)",
					     (long long)i, labels[i], c);
		for (int k = 0; k < c; k++)
			if (!isfinite(probs[i * c + k]))
				return iap_error_set(err, IAP_ENUMERIC,
						     "metrics: probability [%lld][%d] is not finite",
						     (long long)i, k);
	}
	rc = metrics_reserve(m, c, err);
	if (rc)
		return rc;

	m->n_samples = n;
	m->has_loss = 0;
	m->loss = 0.0;
	memset(m->support, 0, (size_t)c * sizeof(*m->support));
	memset(m->predicted, 0, (size_t)c * sizeof(*m->predicted));
	memset(m->confusion, 0, (size_t)c * (size_t)c * sizeof(*m->confusion));
	memset(m->ece_count, 0, sizeof(m->ece_count));
	memset(m->ece_confidence, 0, sizeof(m->ece_confidence));
	memset(m->ece_accuracy, 0, sizeof(m->ece_accuracy));

	/* One pass: argmax, confusion matrix, calibration sums. */
	for (int64_t i = 0; i < n; i++) {
		const float *p = probs + i * c;
		int pred = 0, b;

		for (int k = 1; k < c; k++)
			if (p[k] > p[pred])
				pred = k;
		m->confusion[(int64_t)labels[i] * c + pred]++;
		m->support[labels[i]]++;
		m->predicted[pred]++;
		correct += pred == labels[i];
		b = ece_bin(p[pred]);
		m->ece_count[b]++;
		m->ece_confidence[b] += p[pred];
		m->ece_accuracy[b] += pred == labels[i] ? 1.0 : 0.0;
	}
	m->accuracy = (double)correct / (double)n;

	double bal = 0.0, f1sum = 0.0;
	int present = 0;
	for (int k = 0; k < c; k++) {
		int64_t tp = m->confusion[(int64_t)k * c + k];
		int64_t fn = m->support[k] - tp, fp = m->predicted[k] - tp;
		int64_t tn = n - tp - fn - fp;

		m->sensitivity[k] = tp + fn ? (double)tp / (double)(tp + fn) : 0.0;
		m->specificity[k] = tn + fp ? (double)tn / (double)(tn + fp) : 0.0;
		m->precision[k] = tp + fp ? (double)tp / (double)(tp + fp) : 0.0;
		m->f1[k] = m->precision[k] + m->sensitivity[k] > 0.0 ?
			2.0 * m->precision[k] * m->sensitivity[k] / (m->precision[k] + m->sensitivity[k]) :
			0.0;
		f1sum += m->f1[k];
		if (m->support[k]) {
			bal += m->sensitivity[k];
			present++;
		}
	}
	m->balanced_accuracy = present ? bal / present : 0.0;
	m->macro_f1 = f1sum / c;

	m->ece = 0.0;
	for (int b = 0; b < IAP_ECE_BINS; b++) {
		if (!m->ece_count[b])
			continue;
		m->ece_confidence[b] /= (double)m->ece_count[b];
		m->ece_accuracy[b] /= (double)m->ece_count[b];
		m->ece += (double)m->ece_count[b] / (double)n *
			fabs(m->ece_accuracy[b] - m->ece_confidence[b]);
	}

	/* AUROC: one-vs-rest for every class (for C == 2, class 1 is the binary one). */
	a = malloc((size_t)n * sizeof(*a));
	if (!a)
		return iap_error_set(err, IAP_ENOMEM, "metrics: out of memory for AUROC of %lld samples",
				     (long long)n);
	double auc_sum = 0.0;
	int auc_all = 1;
	for (int k = 0; k < c; k++) {
		int64_t npos = m->support[k];

		m->auroc_class_ok[k] = 0;
		m->auroc_class[k] = 0.0;
		if (npos == 0 || npos == n) {
			auc_all = 0;
			continue;
		}
		for (int64_t i = 0; i < n; i++) {
			a[i].score = probs[i * c + k];
			a[i].pos = labels[i] == k;
		}
		m->auroc_class[k] = auroc_sorted(a, n, npos, n - npos);
		m->auroc_class_ok[k] = 1;
		auc_sum += m->auroc_class[k];
	}
	free(a);
	if (c == 2) {
		m->auroc_ok = m->auroc_class_ok[1];
		m->auroc = m->auroc_class[1];
	} else {
		m->auroc_ok = auc_all;
		m->auroc = auc_all ? auc_sum / c : 0.0;
	}
	return IAP_OK;
}

/* ---- output ---------------------------------------------------------------- */

/* Where rendered text goes: a FILE, or a growing heap string. */
struct sink {
	FILE *fp;
	char *buf;
	size_t len, cap;
	int failed;
};

static void sink_printf(struct sink *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void sink_printf(struct sink *s, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (s->failed)
		return;
	va_start(ap, fmt);
	if (s->fp) {
		if (vfprintf(s->fp, fmt, ap) < 0)
			s->failed = 1;
		va_end(ap);
		return;
	}
	n = vsnprintf(s->buf ? s->buf + s->len : NULL, s->buf ? s->cap - s->len : 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		s->failed = 1;
		return;
	}
	if (!s->buf || s->len + (size_t)n + 1 > s->cap) {
		size_t cap = s->cap ? s->cap : 1024;
		char *nb;

		while (cap < s->len + (size_t)n + 1)
			cap *= 2;
		nb = realloc(s->buf, cap);
		if (!nb) {
			s->failed = 1;
			return;
		}
		s->buf = nb;
		s->cap = cap;
		va_start(ap, fmt);
		vsnprintf(s->buf + s->len, s->cap - s->len, fmt, ap);
		va_end(ap);
	}
	s->len += (size_t)n;
}

/* A JSON string literal with the required escapes. */
static void sink_json_str(struct sink *s, const char *str)
{
	sink_printf(s, "\"");
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		if (*p == '"' || *p == '\\')
			sink_printf(s, "\\%c", *p);
		else if (*p < 0x20)
			sink_printf(s, "\\u%04x", *p);
		else
			sink_printf(s, "%c", *p);
	}
	sink_printf(s, "\"");
}

static void sink_class_name(struct sink *s, const char *const *names, int k)
{
	if (names && names[k])
		sink_json_str(s, names[k]);
	else
		sink_printf(s, "\"%d\"", k);
}

static void json_double_array(struct sink *s, const char *key, const double *v, int n,
			      const int *ok)
{
	sink_printf(s, "  \"%s\": [", key);
	for (int k = 0; k < n; k++) {
		if (ok && !ok[k])
			sink_printf(s, "%snull", k ? ", " : "");
		else
			sink_printf(s, "%s%.10g", k ? ", " : "", v[k]);
	}
	sink_printf(s, "],\n");
}

static void render_json(struct sink *s, const struct iap_metrics *m, const char *const *names)
{
	int c = m->n_classes;

	sink_printf(s, "{\n  \"n_samples\": %lld,\n  \"n_classes\": %d,\n", (long long)m->n_samples, c);
	sink_printf(s, "  \"classes\": [");
	for (int k = 0; k < c; k++) {
		sink_printf(s, "%s", k ? ", " : "");
		sink_class_name(s, names, k);
	}
	sink_printf(s, "],\n");
	sink_printf(s, "  \"accuracy\": %.10g,\n  \"balanced_accuracy\": %.10g,\n"
		    "  \"macro_f1\": %.10g,\n", m->accuracy, m->balanced_accuracy, m->macro_f1);
	if (m->has_loss)
		sink_printf(s, "  \"loss\": %.10g,\n", m->loss);
	if (m->auroc_ok)
		sink_printf(s, "  \"auroc\": %.10g,\n", m->auroc);
	else
		sink_printf(s, "  \"auroc\": null,\n");
	sink_printf(s, "  \"auroc_kind\": \"%s\",\n", c == 2 ? "binary" : "macro_ovr");
	sink_printf(s, "  \"ece\": %.10g,\n", m->ece);
	sink_printf(s, "  \"support\": [");
	for (int k = 0; k < c; k++)
		sink_printf(s, "%s%lld", k ? ", " : "", (long long)m->support[k]);
	sink_printf(s, "],\n");
	json_double_array(s, "sensitivity", m->sensitivity, c, NULL);
	json_double_array(s, "specificity", m->specificity, c, NULL);
	json_double_array(s, "precision", m->precision, c, NULL);
	json_double_array(s, "f1", m->f1, c, NULL);
	json_double_array(s, "auroc_per_class", m->auroc_class, c, m->auroc_class_ok);
	sink_printf(s, "  \"confusion\": [");
	for (int t = 0; t < c; t++) {
		sink_printf(s, "%s[", t ? ", " : "");
		for (int p = 0; p < c; p++)
			sink_printf(s, "%s%lld", p ? ", " : "", (long long)m->confusion[(int64_t)t * c + p]);
		sink_printf(s, "]");
	}
	sink_printf(s, "],\n  \"ece_bins\": [");
	for (int b = 0; b < IAP_ECE_BINS; b++)
		sink_printf(s, "%s{\"count\": %lld, \"confidence\": %.10g, \"accuracy\": %.10g}",
			    b ? ", " : "", (long long)m->ece_count[b], m->ece_confidence[b],
			    m->ece_accuracy[b]);
	sink_printf(s, "]\n}\n");
}

static int check_filled(const struct iap_metrics *m, struct iap_error *err)
{
	if (!m || m->n_classes < 2 || !m->support)
		return iap_error_set(err, IAP_EINVAL, "metrics: nothing computed yet");
	return IAP_OK;
}

int iap_metrics_json_string(const struct iap_metrics *m, const char *const *class_names,
			    char **out, struct iap_error *err)
{
	struct sink s = { 0 };

	if (check_filled(m, err))
		return IAP_EINVAL;
	if (!out)
		return iap_error_set(err, IAP_EINVAL, "metrics: no result pointer");
	render_json(&s, m, class_names);
	if (s.failed) {
		free(s.buf);
		return iap_error_set(err, IAP_ENOMEM, "metrics: out of memory rendering JSON");
	}
	*out = s.buf;
	return IAP_OK;
}

static int col_width(const char *const *class_names, int k)
{
	int n = class_names && class_names[k] ? (int)strlen(class_names[k]) : 0;

	return n > 8 ? n : 8;
}

int iap_metrics_write_text(const struct iap_metrics *m, const char *const *class_names, FILE *fp,
			   struct iap_error *err)
{
	struct sink s = { .fp = fp };
	int c, w = 8;

	if (check_filled(m, err))
		return IAP_EINVAL;
	if (!fp)
		return iap_error_set(err, IAP_EINVAL, "metrics: no output stream");
	c = m->n_classes;
	/* Widen the class column to the longest name. */
	for (int k = 0; class_names && k < c; k++)
		if (class_names[k] && (int)strlen(class_names[k]) > w)
			w = (int)strlen(class_names[k]);

	sink_printf(&s, "samples            %lld\n", (long long)m->n_samples);
	sink_printf(&s, "accuracy           %.4f\n", m->accuracy);
	sink_printf(&s, "balanced accuracy  %.4f\n", m->balanced_accuracy);
	sink_printf(&s, "macro F1           %.4f\n", m->macro_f1);
	if (m->auroc_ok)
		sink_printf(&s, "%-19s%.4f\n", c == 2 ? "AUROC (binary)" : "AUROC (macro OvR)",
			    m->auroc);
	else
		sink_printf(&s, "AUROC              n/a (a class has no positives or no negatives)\n");
	sink_printf(&s, "ECE (15 bins)      %.4f\n", m->ece);
	if (m->has_loss)
		sink_printf(&s, "loss               %.4f\n", m->loss);

	sink_printf(&s, "\n%-*s %8s %8s %8s %8s %8s %8s\n", w, "class", "support", "recall",
		    "specif.", "precis.", "F1", "AUROC");
	for (int k = 0; k < c; k++) {
		char name[32];

		if (!class_names || !class_names[k])
			snprintf(name, sizeof(name), "%d", k);
		sink_printf(&s, "%-*s %8lld %8.4f %8.4f %8.4f %8.4f ", w,
			    class_names && class_names[k] ? class_names[k] : name,
			    (long long)m->support[k], m->sensitivity[k], m->specificity[k],
			    m->precision[k], m->f1[k]);
		if (m->auroc_class_ok[k])
			sink_printf(&s, "%8.4f\n", m->auroc_class[k]);
		else
			sink_printf(&s, "%8s\n", "n/a");
	}

	/* Columns are named like the rows (each at least 8 wide, wider for a longer name). */
	sink_printf(&s, "\nconfusion (rows true, columns predicted)\n%-*s", w, "");
	for (int p = 0; p < c; p++) {
		if (class_names && class_names[p])
			sink_printf(&s, " %*s", col_width(class_names, p), class_names[p]);
		else
			sink_printf(&s, " %8d", p);
	}
	sink_printf(&s, "\n");
	for (int t = 0; t < c; t++) {
		char name[32];

		if (!class_names || !class_names[t])
			snprintf(name, sizeof(name), "%d", t);
		sink_printf(&s, "%-*s", w, class_names && class_names[t] ? class_names[t] : name);
		for (int p = 0; p < c; p++)
			sink_printf(&s, " %*lld", col_width(class_names, p), (long long)m->confusion[(int64_t)t * c + p]);
		sink_printf(&s, "\n");
	}
	if (s.failed)
		return iap_error_set(err, IAP_EIO, "metrics: writing the table failed");
	return IAP_OK;
}
