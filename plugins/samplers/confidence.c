/*
 * The "confidence" sampler: per class, the k samples the model is most sure
 * of. Samples are grouped by their TRUE class; the score is the softmax
 * probability of that true class (by: true) or of the predicted class, i.e.
 * the largest probability (by: predicted). With correct_only, samples the
 * model misclassifies are not eligible (a class may then fall short of k,
 * which is reported like any short class). Ties go to the lower index.
 *
 * The model runs in evaluation mode in fixed batches. Its output must be
 * [N, n_classes]: logits (a softmax is applied here) or, when the output
 * node is a softmax, probabilities.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>

#include <iaprune/plugin.h>

#include "common.h"

/* The `by` option: its choices in the order of enum conf_by, so iap_opts_enum's index is the value. */
enum conf_by { CONF_BY_TRUE, CONF_BY_PREDICTED, CONF_BY_COUNT };
static const char *const by_choices[] = { [CONF_BY_TRUE] = "true", [CONF_BY_PREDICTED] = "predicted", NULL };
_Static_assert(sizeof(by_choices) / sizeof(by_choices[0]) == CONF_BY_COUNT + 1, "by_choices must match enum conf_by");

static const struct iap_option confidence_options[] = {
	{ .name = "by", .type = IAP_OPT_ENUM, .def = "true", .choices = by_choices,
	  .help = "rank by the probability of the true class or of the predicted class" },
	{ .name = "correct_only", .type = IAP_OPT_BOOL, .def = "false",
	  .help = "only samples the model classifies correctly" },
	{ .name = "batch", .type = IAP_OPT_INT, .def = "64", .has_range = 1, .min = 1, .max = 65536,
	  .help = "samples per forward pass" },
	{ .name = NULL },
};

/* The options, read once per select() (the sampler ABI has no create step). */
struct conf_opts {
	int by_predicted;
	int correct_only;
	long batch;
};

static void conf_opts_parse(const struct iap_opts *opts, struct conf_opts *o)
{
	o->by_predicted = iap_opts_enum(opts, "by") == CONF_BY_PREDICTED;
	o->correct_only = iap_opts_bool(opts, "correct_only");
	o->batch = iap_opts_int(opts, "batch");
}

struct scored {
	int64_t i;
	double p;
};

/* Higher probability first, then lower index: a total order, so qsort is deterministic. */
static int cmp_scored(const void *a, const void *b)
{
	const struct scored *x = a, *y = b;

	if (x->p != y->p)
		return x->p > y->p ? -1 : 1;
	return (x->i > y->i) - (x->i < y->i);
}

/*
 * Score one output row: probability of the true class or the largest one,
 * and whether the prediction (argmax, lower class on ties) is correct. The
 * softmax is computed in double from the row's maximum, so large logits do
 * not overflow.
 */
static void score_row(const float *row, int n_classes, int is_prob, int label, int by_predicted,
		      double *score, int *correct)
{
	int arg = 0;
	double sum = 0;

	for (int c = 1; c < n_classes; c++)
		if (row[c] > row[arg])
			arg = c;
	*correct = arg == label;
	if (is_prob) {
		*score = row[by_predicted ? arg : label];
		return;
	}
	for (int c = 0; c < n_classes; c++)
		sum += exp((double)row[c] - row[arg]);
	*score = exp((double)row[by_predicted ? arg : label] - row[arg]) / sum;
}

/* The model must give one score per class; *is_prob says whether they are already probabilities. */
static int check_output(const struct iap_graph *g, int n_classes, int *is_prob, struct iap_error *err)
{
	const struct iap_node *o;

	if (!g || !g->finalized)
		return iap_error_set(err, IAP_EINVAL, "sampler 'confidence': needs a finalized model");
	o = iap_graph_node(g, g->output);
	if (o->out_ndim != 1 || o->out_shape[0] != n_classes) {
		char got[96];

		return iap_error_set(err, IAP_ESHAPE, "sampler 'confidence': model output is N x %s, "
				     "expected N x %d (one score per class)",
				     iap_shape_str(o->out_ndim, o->out_shape, got, sizeof(got)), n_classes);
	}
	*is_prob = o->kind == IAP_OP_SOFTMAX;
	return IAP_OK;
}

/*
 * Score every sample, walking the split in class order so each class's
 * scores land in its own slice of sc; an ineligible sample (correct_only)
 * keeps its slot with index -1.
 */
static int score_all(const struct conf_opts *o, const struct iap_smp_classes *cl, struct iap_smp_batcher *b,
		     int is_prob, struct scored *sc, struct iap_error *err)
{
	for (int64_t pos = 0; pos < cl->count; pos += b->batch) {
		int nb = (int)(cl->count - pos < b->batch ? cl->count - pos : b->batch);
		const struct iap_tensor *y;
		int rc = iap_smp_batcher_run(b, cl->idx + pos, nb, err);

		if (rc) {
			iap_error_prefix(err, "sampler 'confidence'");
			return rc;
		}
		y = iap_graph_output(b->g);
		for (int r = 0; r < nb; r++) {
			int64_t i = cl->idx[pos + r];
			int correct;
			double p;

			score_row(y->data + (int64_t)r * cl->n_classes, cl->n_classes, is_prob, cl->label[i],
				  o->by_predicted, &p, &correct);
			if (!isfinite(p))
				return iap_error_set(err, IAP_ENUMERIC, "sampler 'confidence': sample %lld: "
						     "model output is not finite", (long long)i);
			sc[pos + r].i = o->correct_only && !correct ? -1 : i;
			sc[pos + r].p = p;
		}
	}
	return IAP_OK;
}

/* Per class, the k best eligible samples into out (ascending); avail[c] counts the eligible. */
static int64_t take_best(const struct iap_smp_classes *cl, struct scored *sc, int k, int64_t *out,
			 int64_t *avail)
{
	int64_t n = 0;

	for (int c = 0; c < cl->n_classes; c++) {
		struct scored *v = sc + cl->start[c];
		int64_t size = cl->start[c + 1] - cl->start[c], m = 0, take;

		for (int64_t j = 0; j < size; j++)
			if (v[j].i >= 0)
				v[m++] = v[j];
		qsort(v, (size_t)m, sizeof(*v), cmp_scored);
		avail[c] = m;
		take = m < k ? m : k;
		for (int64_t j = 0; j < take; j++)
			out[n + j] = v[j].i;
		iap_smp_sort_idx(out + n, take);
		n += take;
	}
	return n;
}

static int confidence_select(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
			     struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err)
{
	struct conf_opts o;
	struct iap_smp_classes cl;
	struct iap_smp_batcher b = { 0 };
	struct scored *sc = NULL;
	int64_t *avail = NULL;
	int is_prob = 0, rc;

	(void)rng;
	conf_opts_parse(opts, &o);
	rc = iap_smp_classes_load("confidence", ds, k, out, n_out, &cl, err);
	if (rc)
		return rc;
	rc = check_output(g, cl.n_classes, &is_prob, err);
	if (rc)
		goto out_classes;
	sc = calloc((size_t)cl.count + 1, sizeof(*sc));
	avail = calloc((size_t)cl.n_classes, sizeof(*avail));
	if (!sc || !avail) {
		rc = iap_error_set(err, IAP_ENOMEM, "sampler 'confidence': out of memory");
		goto out_free;
	}
	rc = iap_smp_batcher_init(&b, "confidence", ds, g, (int)(o.batch > cl.count ? cl.count : o.batch), err);
	if (rc)
		goto out_free;
	rc = score_all(&o, &cl, &b, is_prob, sc, err);
	if (rc)
		goto out_batcher;
	*n_out = take_best(&cl, sc, k, out, avail);
	rc = iap_smp_report_short("confidence", &cl, avail, k, err);

out_batcher:
	iap_smp_batcher_free(&b);
out_free:
	free(avail);
	free(sc);
out_classes:
	iap_smp_classes_free(&cl);
	return rc;
}

static const struct iap_sampler_ops confidence_ops = {
	.size = sizeof(struct iap_sampler_ops),
	.select = confidence_select,
};

static const struct iap_plugin_desc confidence_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_SAMPLER,
	.name = "confidence",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "the k samples per class with the highest softmax probability",
	.options = confidence_options,
	.ops.sampler = &confidence_ops,
};

IAP_PLUGIN_DEFINE(confidence_desc)
