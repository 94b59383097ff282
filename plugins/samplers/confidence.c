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

static const char *const by_choices[] = { "true", "predicted", NULL };

static const struct iap_option confidence_options[] = {
	{ .name = "by", .type = IAP_OPT_ENUM, .def = "true", .choices = by_choices,
	  .help = "rank by the probability of the true class or of the predicted class" },
	{ .name = "correct_only", .type = IAP_OPT_BOOL, .def = "false",
	  .help = "only samples the model classifies correctly" },
	{ .name = "batch", .type = IAP_OPT_INT, .def = "64", .has_range = 1, .min = 1, .max = 65536,
	  .help = "samples per forward pass" },
	{ .name = NULL },
};

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

static int confidence_select(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
			     struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err)
{
	int by_predicted = iap_opts_str(opts, "by")[0] == 'p';
	int correct_only = iap_opts_bool(opts, "correct_only");
	long batch = iap_opts_int(opts, "batch");
	struct iap_smp_classes cl;
	struct iap_smp_batcher b = { 0 };
	struct scored *sc = NULL;
	int64_t *avail = NULL, n = 0;
	int is_prob, rc;

	(void)rng;
	rc = iap_smp_classes_load("confidence", ds, k, out, n_out, &cl, err);
	if (rc)
		return rc;
	if (!g || !g->finalized) {
		rc = iap_error_set(err, IAP_EINVAL, "sampler 'confidence': needs a finalized model");
		goto out_classes;
	}
	{
		const struct iap_node *o = iap_graph_node(g, g->output);

		if (o->out_ndim != 1 || o->out_shape[0] != cl.n_classes) {
			char got[96];

			rc = iap_error_set(err, IAP_ESHAPE, "sampler 'confidence': model output is N x %s, "
					   "expected N x %d (one score per class)",
					   iap_shape_str(o->out_ndim, o->out_shape, got, sizeof(got)),
					   cl.n_classes);
			goto out_classes;
		}
		is_prob = o->kind == IAP_OP_SOFTMAX;
	}
	sc = calloc((size_t)cl.count + 1, sizeof(*sc));
	avail = calloc((size_t)cl.n_classes, sizeof(*avail));
	if (!sc || !avail) {
		rc = iap_error_set(err, IAP_ENOMEM, "sampler 'confidence': out of memory");
		goto out_free;
	}
	if (batch > cl.count)
		batch = cl.count;
	rc = iap_smp_batcher_init(&b, "confidence", ds, g, (int)batch, err);
	if (rc)
		goto out_free;

	/* Walk the split in class order, so each class's scores land in its own slice of sc. */
	for (int64_t pos = 0; pos < cl.count; pos += batch) {
		int nb = (int)(cl.count - pos < batch ? cl.count - pos : batch);
		const struct iap_tensor *y;

		rc = iap_smp_batcher_run(&b, cl.idx + pos, nb, err);
		if (rc) {
			iap_error_prefix(err, "sampler 'confidence'");
			goto out_batcher;
		}
		y = iap_graph_output(g);
		for (int r = 0; r < nb; r++) {
			int64_t i = cl.idx[pos + r];
			int correct;
			double p;

			score_row(y->data + (int64_t)r * cl.n_classes, cl.n_classes, is_prob, cl.label[i],
				  by_predicted, &p, &correct);
			if (!isfinite(p)) {
				rc = iap_error_set(err, IAP_ENUMERIC, "sampler 'confidence': sample %lld: "
						   "model output is not finite", (long long)i);
				goto out_batcher;
			}
			/* An ineligible sample keeps its slot but can never be ranked in. */
			sc[pos + r].i = correct_only && !correct ? -1 : i;
			sc[pos + r].p = p;
		}
	}

	for (int c = 0; c < cl.n_classes; c++) {
		struct scored *v = sc + cl.start[c];
		int64_t size = cl.start[c + 1] - cl.start[c], m = 0, take;

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
	*n_out = n;
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
