/*
 * The "clustering" sampler: per class, k-means++ with k clusters on the
 * model's penultimate features (or the flattened input pixels), several
 * seeded restarts keeping the lowest inertia, then the sample nearest each
 * centroid (distinct samples). Deterministic for a seed: every random draw
 * comes from the host's rng, in a fixed order.
 *
 * PENULTIMATE FEATURES are the input of the output node, read after a
 * forward pass: iap_graph_node(g, g->output)->inputs[0] (for a classifier ending in a
 * linear layer, what that layer sees: VGG's classifier.5 output, ResNet's
 * flattened pool, ViT's class token after the final LayerNorm). When the
 * output node is a softmax, the node before it counts as the output. When
 * that input is the graph input itself, the features are the pixels.
 */
#include "config.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cblas.h>

#include <iaprune/blas.h>
#include <iaprune/plugin.h>

#include "common.h"

/* The `features` option: its choices in the order of enum clu_features (iap_opts_enum's index). */
enum clu_features { CLU_PENULTIMATE, CLU_PIXELS, CLU_FEATURES_COUNT };
static const char *const feature_choices[] = { [CLU_PENULTIMATE] = "penultimate", [CLU_PIXELS] = "pixels", NULL };
_Static_assert(sizeof(feature_choices) / sizeof(feature_choices[0]) == CLU_FEATURES_COUNT + 1,
	       "feature_choices must match enum clu_features");

static const struct iap_option clustering_options[] = {
	{ .name = "features", .type = IAP_OPT_ENUM, .def = "penultimate", .choices = feature_choices,
	  .help = "cluster the model's penultimate features or the flattened input pixels" },
	{ .name = "restarts", .type = IAP_OPT_INT, .def = "5", .has_range = 1, .min = 1, .max = 1000,
	  .help = "k-means++ runs per class; the lowest inertia wins" },
	{ .name = "max_iter", .type = IAP_OPT_INT, .def = "100", .has_range = 1, .min = 1, .max = 100000,
	  .help = "Lloyd iterations at most (they stop earlier when no assignment changes)" },
	{ .name = "batch", .type = IAP_OPT_INT, .def = "64", .has_range = 1, .min = 1, .max = 65536,
	  .help = "samples per forward pass" },
	{ .name = NULL },
};

/* The options, read once per select() (the sampler ABI has no create step). */
struct clu_opts {
	int pixels;
	int restarts;
	int max_iter;
	long batch;
};

static void clu_opts_parse(const struct iap_opts *opts, struct clu_opts *o)
{
	o->pixels = iap_opts_enum(opts, "features") == CLU_PIXELS;
	o->restarts = (int)iap_opts_int(opts, "restarts");
	o->max_iter = (int)iap_opts_int(opts, "max_iter");
	o->batch = iap_opts_int(opts, "batch");
}

/* One class's points and the scratch k-means needs, sized for the largest class once. */
struct km {
	int64_t d;       /* feature length */
	int k;
	int max_iter;
	float *x;        /* [n][d] points, centred on their mean */
	float *xnorm;    /* [n] squared norms */
	float *c;        /* [k][d] centroids of the current restart */
	float *best;     /* [k][d] centroids of the best restart */
	float *cnorm;    /* [k] */
	float *dots;     /* [n][k] */
	float *cnew;     /* [k][d] sums of each cluster's points */
	double *mean;    /* [d] */
	double *d2;      /* [n] k-means++ distances */
	int64_t *counts; /* [k] */
	int *assign;     /* [n] */
	uint8_t *taken;  /* [n] */
};

static double sqdist(const float *a, const float *b, int64_t d)
{
	double s = 0;

	for (int64_t j = 0; j < d; j++) {
		double t = (double)a[j] - b[j];

		s += t * t;
	}
	return s;
}

/* Uniform in [0, 1) with 53 bits. */
static double uniform53(struct iap_rng *rng)
{
	return (double)(iap_rng_next(rng) >> 11) * 0x1.0p-53;
}

/*
 * k-means++ seeding: the first centroid uniform, each next one drawn with
 * probability proportional to its squared distance to the nearest centroid
 * so far. When every point coincides with a centroid, a uniform draw.
 */
static void kmeans_seed(struct km *km, int64_t n, struct iap_rng *rng)
{
	int64_t first = (int64_t)iap_rng_below(rng, (uint64_t)n);

	memcpy(km->c, km->x + first * km->d, (size_t)km->d * sizeof(float));
	for (int64_t i = 0; i < n; i++)
		km->d2[i] = sqdist(km->x + i * km->d, km->c, km->d);
	for (int j = 1; j < km->k; j++) {
		double total = 0, r;
		int64_t pick = -1;

		for (int64_t i = 0; i < n; i++)
			total += km->d2[i];
		if (total > 0) {
			r = uniform53(rng) * total;
			for (int64_t i = 0; i < n; i++) {
				if (km->d2[i] <= 0)
					continue;
				pick = i;
				r -= km->d2[i];
				if (r < 0)
					break;
			}
		} else {
			pick = (int64_t)iap_rng_below(rng, (uint64_t)n);
		}
		memcpy(km->c + (int64_t)j * km->d, km->x + pick * km->d, (size_t)km->d * sizeof(float));
		for (int64_t i = 0; i < n; i++) {
			double t = sqdist(km->x + i * km->d, km->c + (int64_t)j * km->d, km->d);

			if (t < km->d2[i])
				km->d2[i] = t;
		}
	}
}

/*
 * Assign every point to its nearest centroid (lower index on ties) through
 * one GEMM: |x - c|² = |x|² - 2 x·c + |c|². Returns how many assignments
 * changed.
 */
static int64_t kmeans_assign(struct km *km, int64_t n)
{
	int64_t changed = 0;

	for (int j = 0; j < km->k; j++) {
		const float *c = km->c + (int64_t)j * km->d;
		double s = 0;

		for (int64_t t = 0; t < km->d; t++)
			s += (double)c[t] * c[t];
		km->cnorm[j] = (float)s;
	}
	iap_sgemm(0, 1, (int)n, km->k, (int)km->d, 1.0f, km->x,
		    (int)km->d, km->c, (int)km->d, 0.0f, km->dots, km->k);
	for (int64_t i = 0; i < n; i++) {
		const float *dot = km->dots + i * km->k;
		int arg = 0;
		float best = FLT_MAX;

		for (int j = 0; j < km->k; j++) {
			float dist = km->xnorm[i] - 2.0f * dot[j] + km->cnorm[j];

			if (dist < best) {
				best = dist;
				arg = j;
			}
		}
		if (km->assign[i] != arg) {
			km->assign[i] = arg;
			changed++;
		}
	}
	return changed;
}

/*
 * Move each centroid to the mean of its points; an empty cluster keeps its
 * centroid. The sums are one GEMM, cnew = Aᵀ x with A the n×k one-hot
 * assignment matrix (written over dots, which the assignment has used up).
 */
static void kmeans_update(struct km *km, int64_t n)
{
	memset(km->dots, 0, (size_t)n * (size_t)km->k * sizeof(float));
	memset(km->counts, 0, (size_t)km->k * sizeof(int64_t));
	for (int64_t i = 0; i < n; i++) {
		km->dots[i * km->k + km->assign[i]] = 1.0f;
		km->counts[km->assign[i]]++;
	}
	iap_sgemm(1, 0, km->k, (int)km->d, (int)n, 1.0f, km->dots,
		    km->k, km->x, (int)km->d, 0.0f, km->cnew, (int)km->d);
	for (int j = 0; j < km->k; j++) {
		float inv;

		if (!km->counts[j])
			continue;
		inv = 1.0f / (float)km->counts[j];
		for (int64_t t = 0; t < km->d; t++)
			km->c[(int64_t)j * km->d + t] = km->cnew[(int64_t)j * km->d + t] * inv;
	}
}

/* One seeded k-means++ run followed by Lloyd iterations; returns its inertia. */
static double kmeans_run(struct km *km, int64_t n, struct iap_rng *rng)
{
	double inertia = 0;

	kmeans_seed(km, n, rng);
	for (int64_t i = 0; i < n; i++)
		km->assign[i] = -1;
	kmeans_assign(km, n);
	for (int it = 0; it < km->max_iter; it++) {
		kmeans_update(km, n);
		if (!kmeans_assign(km, n))
			break;
	}
	for (int64_t i = 0; i < n; i++)
		inertia += sqdist(km->x + i * km->d, km->c + (int64_t)km->assign[i] * km->d, km->d);
	return inertia;
}

/*
 * Cluster the n points of one class and write the row of the point nearest
 * each centroid to rows[0 .. k): centroids in order, each taking the nearest
 * point not yet taken (lower row on ties), so the k rows are distinct.
 */
static void kmeans_pick(struct km *km, int64_t n, int restarts, struct iap_rng *rng, int64_t *rows)
{
	double best_inertia = INFINITY;

	/* Centre the points: smaller norms keep the GEMM distance formula accurate. */
	memset(km->mean, 0, (size_t)km->d * sizeof(double));
	for (int64_t i = 0; i < n; i++)
		for (int64_t t = 0; t < km->d; t++)
			km->mean[t] += km->x[i * km->d + t];
	for (int64_t t = 0; t < km->d; t++)
		km->mean[t] /= (double)n;
	for (int64_t i = 0; i < n; i++)
		for (int64_t t = 0; t < km->d; t++)
			km->x[i * km->d + t] = (float)(km->x[i * km->d + t] - km->mean[t]);
	for (int64_t i = 0; i < n; i++) {
		double s = 0;

		for (int64_t t = 0; t < km->d; t++)
			s += (double)km->x[i * km->d + t] * km->x[i * km->d + t];
		km->xnorm[i] = (float)s;
	}
	for (int r = 0; r < restarts; r++) {
		double inertia = kmeans_run(km, n, rng);

		/* Strictly lower: on equal inertia the earlier restart stays. */
		if (inertia < best_inertia) {
			best_inertia = inertia;
			memcpy(km->best, km->c, (size_t)km->k * (size_t)km->d * sizeof(float));
		}
	}
	memset(km->taken, 0, (size_t)n);
	for (int j = 0; j < km->k; j++) {
		double best = INFINITY;
		int64_t arg = -1;

		for (int64_t i = 0; i < n; i++) {
			double t;

			if (km->taken[i])
				continue;
			t = sqdist(km->x + i * km->d, km->best + (int64_t)j * km->d, km->d);
			if (arg < 0 || t < best) {
				best = t;
				arg = i;
			}
		}
		km->taken[arg] = 1;
		rows[j] = arg;
	}
}

static void km_free(struct km *km)
{
	free(km->x);
	free(km->xnorm);
	free(km->c);
	free(km->best);
	free(km->cnorm);
	free(km->dots);
	free(km->cnew);
	free(km->mean);
	free(km->d2);
	free(km->counts);
	free(km->assign);
	free(km->taken);
}

static int km_alloc(struct km *km, int64_t n, int64_t d, int k)
{
	size_t kd = (size_t)k * (size_t)d;

	km->d = d;
	km->k = k;
	km->x = malloc((size_t)n * (size_t)d * sizeof(float));
	km->xnorm = malloc((size_t)n * sizeof(float));
	km->c = malloc(kd * sizeof(float));
	km->best = malloc(kd * sizeof(float));
	km->cnorm = malloc((size_t)k * sizeof(float));
	km->dots = malloc((size_t)n * (size_t)k * sizeof(float));
	km->cnew = malloc(kd * sizeof(float));
	km->mean = malloc((size_t)d * sizeof(double));
	km->d2 = malloc((size_t)n * sizeof(double));
	km->counts = malloc((size_t)k * sizeof(int64_t));
	km->assign = malloc((size_t)n * sizeof(int));
	km->taken = malloc((size_t)n);
	return km->x && km->xnorm && km->c && km->best && km->cnorm && km->dots && km->cnew && km->mean &&
	       km->d2 && km->counts && km->assign && km->taken;
}

/*
 * The feature length d and, for penultimate features, *head: the node whose
 * input is the feature vector (the output, or what a final softmax reads).
 */
static int feature_dim(const struct clu_opts *o, const struct iap_dataset *ds, const struct iap_graph *g,
		       const struct iap_node **head, int64_t *dim, struct iap_error *err)
{
	int64_t d = 1;

	*head = NULL;
	if (o->pixels) {
		for (int i = 0; i < ds->info.in_ndim; i++)
			d *= ds->info.in_shape[i];
	} else {
		const struct iap_node *h;

		if (!g || !g->finalized)
			return iap_error_set(err, IAP_EINVAL, "sampler 'clustering': penultimate features "
					     "need a finalized model (or features: pixels)");
		h = iap_graph_node(g, g->output);
		if (h->kind == IAP_OP_SOFTMAX && h->inputs[0] >= 0)
			h = iap_graph_node(g, h->inputs[0]);
		if (h->inputs[0] == IAP_GRAPH_INPUT) {
			for (int i = 0; i < g->in_ndim; i++)
				d *= g->in_shape[i];
		} else {
			const struct iap_node *f = iap_graph_node(g, h->inputs[0]);

			for (int i = 0; i < f->out_ndim; i++)
				d *= f->out_shape[i];
		}
		*head = h;
	}
	if (d < 1 || d > INT32_MAX)
		return iap_error_set(err, IAP_ESHAPE, "sampler 'clustering': %lld features per sample",
				     (long long)d);
	*dim = d;
	return IAP_OK;
}

/* The features of one class's samples idx[0 .. size) into km->x, batch by batch; all finite. */
static int load_features(struct iap_smp_batcher *b, const struct iap_node *head, const int64_t *idx,
			 int64_t size, struct km *km, struct iap_error *err)
{
	int64_t d = km->d;

	for (int64_t pos = 0; pos < size; pos += b->batch) {
		int nb = (int)(size - pos < b->batch ? size - pos : b->batch);
		const struct iap_tensor *f;
		int rc = iap_smp_batcher_run(b, idx + pos, nb, err);

		if (rc) {
			iap_error_prefix(err, "sampler 'clustering'");
			return rc;
		}
		f = head ? iap_graph_node_input(b->g, head, 0) : &b->x;
		for (int64_t t = 0; t < (int64_t)nb * d; t++)
			if (!isfinite(f->data[t]))
				return iap_error_set(err, IAP_ENUMERIC, "sampler 'clustering': sample %lld: "
						     "features are not finite", (long long)idx[pos + t / d]);
		memcpy(km->x + pos * d, f->data, (size_t)nb * (size_t)d * sizeof(float));
	}
	return IAP_OK;
}

static int clustering_select(const struct iap_opts *opts, const struct iap_dataset *ds, struct iap_graph *g,
			     struct iap_rng *rng, int k, int64_t *out, int64_t *n_out, struct iap_error *err)
{
	struct clu_opts o;
	struct iap_smp_classes cl;
	struct iap_smp_batcher b = { 0 };
	struct km km = { 0 };
	const struct iap_node *head = NULL;
	int64_t d = 1, n = 0, *rows = NULL;
	int rc;

	if (!rng)
		return iap_error_set(err, IAP_EINVAL, "sampler 'clustering': no random number generator");
	clu_opts_parse(opts, &o);
	rc = iap_smp_classes_load("clustering", ds, k, out, n_out, &cl, err);
	if (rc)
		return rc;
	rc = feature_dim(&o, ds, g, &head, &d, err);
	if (rc)
		goto out_classes;

	/* Everything is sized for the largest class once; classes at most k need none of it. */
	if (cl.max_class > k) {
		if (!km_alloc(&km, cl.max_class, d, k) ||
		    !(rows = malloc((size_t)k * sizeof(*rows)))) {
			rc = iap_error_set(err, IAP_ENOMEM, "sampler 'clustering': out of memory for "
					   "%lld x %lld features", (long long)cl.max_class, (long long)d);
			goto out_km;
		}
		km.max_iter = o.max_iter;
		rc = iap_smp_batcher_init(&b, "clustering", ds, o.pixels ? NULL : g,
					  (int)(o.batch > cl.max_class ? cl.max_class : o.batch), err);
		if (rc)
			goto out_km;
	}

	for (int c = 0; c < cl.n_classes; c++) {
		const int64_t *idx = cl.idx + cl.start[c];
		int64_t size = cl.start[c + 1] - cl.start[c];

		if (size <= k) {
			/* Take all (reported below when fewer than k). */
			memcpy(out + n, idx, (size_t)size * sizeof(*out));
			n += size;
			continue;
		}
		rc = load_features(&b, head, idx, size, &km, err);
		if (rc)
			goto out_batcher;
		kmeans_pick(&km, size, o.restarts, rng, rows);
		for (int j = 0; j < k; j++)
			out[n + j] = idx[rows[j]];
		iap_smp_sort_idx(out + n, k);
		n += k;
	}
	*n_out = n;
	rc = iap_smp_report_short("clustering", &cl, NULL, k, err);

out_batcher:
	iap_smp_batcher_free(&b);
out_km:
	free(rows);
	km_free(&km);
out_classes:
	iap_smp_classes_free(&cl);
	return rc;
}

static const struct iap_sampler_ops clustering_ops = {
	.size = sizeof(struct iap_sampler_ops),
	.select = clustering_select,
};

static const struct iap_plugin_desc clustering_desc = {
	IAP_PLUGIN_HEADER,
	.kind = IAP_PLUGIN_SAMPLER,
	.name = "clustering",
	.version = PACKAGE_VERSION,
	.license = "MIT",
	.summary = "per class, the samples nearest k-means++ centroids of penultimate features",
	.options = clustering_options,
	.ops.sampler = &clustering_ops,
};

IAP_PLUGIN_DEFINE(clustering_desc)
