/*
 * `iaprune attribute PIPELINE|WEIGHTS ... -o scores.npz` (see iaprune(1)):
 * run one attribution plugin on chosen samples and write, keyed by the
 * unit groups' torchvision module names,
 *
 *   units/<module>/sum          [N, U]  Σ r over the unit's positions, per sample
 *   units/<module>/abs_of_sum   [N, U]  |Σ r|
 *   units/<module>/sum_of_abs   [N, U]  Σ |r|
 *   units/<module>/total/...    [U]     the same three summed over the samples
 *   units/<module>/score        [U]     the plugin's own score (its abs and
 *                                       reduce options): what run and prune rank by
 *   input_relevance             [N, C, H, W] (when the method has one)
 *   delta/input, delta/gap      [N]     IG: Σ input IG − (F(x) − F(x')), and F(x) − F(x')
 *   delta/units/<module>        [N]     IG: Σ conductance of the group − (F(x) − F(x'))
 *   index, labels, targets      [N]     int32: sample index, label (−1 unknown), class explained
 *   logits                      [N, K]
 *
 * A data-free method (magnitude, random) writes only units/<module>/score.
 * Samples come from the pipeline's dataset (a sampler of the pipeline, or
 * indices) or, with a weights file, from images and .npz arrays.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <cblas.h>

#include <iaprune/attribute.h>
#include <iaprune/explain.h>
#include <iaprune/image.h>
#include <iaprune/npz.h>
#include <iaprune/registry.h>
#include <iaprune/threads.h>
#include <iaprune/weights.h>

#include "cmd_attribute.h"
#include "model_load.h"
#include "../host/run/run_internal.h"
/* Plugin calls inside call records, so that a crash names the plugin (guard.h). */
#include "../host/run/calls.h"

enum { EXIT_OK = 0, EXIT_RUN = 1, EXIT_USAGE = 2 };
#define MAX_LIST 256

const char cli_attribute_args[] =
	"(PIPELINE | WEIGHTS) -o OUT.npz [--attribution NAME] [--option KEY=VALUE]...\n"
	"       [--samples SPEC]... [--split SPLIT] [--target N] [--batch N] [--model NAME\n"
	"       [--model-option KEY=VALUE]...] [--set KEY=VALUE]... [-j N] [-q]";
const char cli_attribute_summary[] =
	"Score units with one attribution method on chosen samples and write a NumPy .npz:\n"
	"per sample and in total, per unit of every layer (torchvision module names), the\n"
	"signed sum, |sum| and sum of |.| of the relevance, the method's own score, the\n"
	"input relevance, and IG's completeness gaps. With a PIPELINE, --samples is a\n"
	"sampler of the pipeline (default: its first), 'all', or indices such as 0-9,42\n"
	"of --split (default train). With a WEIGHTS file (.safetensors), --samples lists\n"
	"images, or .npz / .safetensors files of normalised arrays ('x' or 'input');\n"
	"a plain torchvision file needs --model NAME (and --model-option KEY=VALUE).";

struct attr_opts {
	const char *input;
	const char *output;
	const char *attribution;
	const char *options[MAX_LIST];
	int n_options;
	const char *samples[MAX_LIST];
	int n_samples;
	const char *split;
	const char *model;
	const char *model_options[MAX_LIST];
	int n_model_options;
	const char *sets[MAX_LIST];
	int n_sets;
	int target;
	int batch;
	int jobs;
	int quiet;
};

static int fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(int code, const char *fmt, ...)
{
	va_list ap;

	fputs("iaprune: attribute: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

/* Bad input (files, shapes, options) is status 2; anything else a failed run. */
static int status_of(const struct iap_error *err)
{
	return err->code == IAP_EINVAL || err->code == IAP_EFORMAT || err->code == IAP_ESHAPE ||
	       err->code == IAP_EIO || err->code == IAP_EUNSUPPORTED ? EXIT_USAGE : EXIT_RUN;
}

static int push(const char **list, int *n, const char *v, const char *what)
{
	if (*n == MAX_LIST)
		return fail(EXIT_USAGE, "too many %s options", what);
	list[(*n)++] = v;
	return EXIT_OK;
}

static int parse_int(const char *s, long lo, long hi, const char *what, int *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi)
		return fail(EXIT_USAGE, "%s wants an integer from %ld to %ld, not '%s'", what, lo, hi, s);
	*out = (int)v;
	return EXIT_OK;
}

enum { O_ATTR = 1000, O_OPTION, O_SAMPLES, O_SPLIT, O_MODEL, O_MODEL_OPTION, O_SET, O_TARGET, O_BATCH,
       O_PLUGIN_PATH, O_HELP };

static int parse(const struct cli_env *env, int argc, char **argv, struct attr_opts *o)
{
	static const struct option lo[] = {
		{ "attribution", required_argument, NULL, O_ATTR },
		{ "option", required_argument, NULL, O_OPTION },
		{ "samples", required_argument, NULL, O_SAMPLES },
		{ "split", required_argument, NULL, O_SPLIT },
		{ "model", required_argument, NULL, O_MODEL },
		{ "model-option", required_argument, NULL, O_MODEL_OPTION },
		{ "set", required_argument, NULL, O_SET },
		{ "target", required_argument, NULL, O_TARGET },
		{ "batch", required_argument, NULL, O_BATCH },
		{ "plugin-path", required_argument, NULL, O_PLUGIN_PATH },
		{ "output", required_argument, NULL, 'o' },
		{ "jobs", required_argument, NULL, 'j' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, O_HELP },
		{ NULL, 0, NULL, 0 },
	};
	int ch, rc = EXIT_OK;

	memset(o, 0, sizeof(*o));
	o->target = -1;
	o->batch = 8;
	optind = 0;
	opterr = 0;
	while (rc == EXIT_OK && (ch = getopt_long(argc, argv, "ho:j:q", lo, NULL)) != -1) {
		switch (ch) {
		case 'h':
		case O_HELP:
			printf("usage: iaprune attribute %s\n\n%s\n", cli_attribute_args, cli_attribute_summary);
			return -2;
		case O_ATTR:
			o->attribution = optarg;
			break;
		case O_OPTION:
			rc = push(o->options, &o->n_options, optarg, "--option");
			break;
		case O_SAMPLES:
			rc = push(o->samples, &o->n_samples, optarg, "--samples");
			break;
		case O_SPLIT:
			o->split = optarg;
			break;
		case O_MODEL:
			o->model = optarg;
			break;
		case O_MODEL_OPTION:
			rc = push(o->model_options, &o->n_model_options, optarg, "--model-option");
			break;
		case O_SET:
			rc = push(o->sets, &o->n_sets, optarg, "--set");
			break;
		case O_TARGET:
			rc = parse_int(optarg, 0, 1000000, "--target", &o->target);
			break;
		case O_BATCH:
			rc = parse_int(optarg, 1, 4096, "--batch", &o->batch);
			break;
		case 'j':
			rc = parse_int(optarg, 1, 1024, "-j", &o->jobs);
			break;
		case 'q':
			o->quiet = 1;
			break;
		case 'o':
			o->output = optarg;
			break;
		case O_PLUGIN_PATH:
			rc = env->add_plugin_path(env->user, optarg) ? EXIT_USAGE : EXIT_OK;
			break;
		default:
			return fail(EXIT_USAGE, "unknown or incomplete option '%s' (try 'iaprune attribute --help')",
				    argv[optind - 1]);
		}
	}
	if (rc)
		return rc;
	if (argc - optind != 1)
		return fail(EXIT_USAGE, "needs one PIPELINE or WEIGHTS file (try 'iaprune attribute --help')");
	o->input = argv[optind];
	if (!o->output)
		return fail(EXIT_USAGE, "needs -o OUT.npz");
	return EXIT_OK;
}

/* ---- the samples ---------------------------------------------------------------------------- */

/* Where the samples come from: a dataset split and indices into it, or files. */
struct source {
	const struct iap_dataset *ds;        /* pipeline mode */
	int64_t *idx;
	int64_t n;
	/* weights mode: every sample's normalised input, [n][C·H·W] */
	float *inputs;
	int64_t per;
};

static int ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);

	return a >= b && !strcasecmp(s + a - b, suffix);
}

static int add_index(struct source *s, int64_t *cap, int64_t v)
{
	if (s->n == *cap) {
		int64_t c = *cap ? 2 * *cap : 64;
		int64_t *p = realloc(s->idx, (size_t)c * sizeof(*p));

		if (!p)
			return IAP_ENOMEM;
		s->idx = p;
		*cap = c;
	}
	s->idx[s->n++] = v;
	return IAP_OK;
}

/* "0-9,42" or "all" into indices below count. */
static int parse_indices(const char *spec, int64_t count, struct source *s, int64_t *cap, struct iap_error *err)
{
	const char *p = spec;

	if (!strcmp(spec, "all")) {
		for (int64_t i = 0; i < count; i++)
			if (add_index(s, cap, i))
				return iap_error_set(err, IAP_ENOMEM, "out of memory");
		return IAP_OK;
	}
	while (*p) {
		char *end;
		long long a, b;

		errno = 0;
		a = strtoll(p, &end, 10);
		if (end == p || errno || a < 0)
			return iap_error_set(err, IAP_EINVAL, "--samples '%s': expected indices such as 0-9,42", spec);
		b = a;
		if (*end == '-') {
			p = end + 1;
			b = strtoll(p, &end, 10);
			if (end == p || errno || b < a)
				return iap_error_set(err, IAP_EINVAL, "--samples '%s': bad range", spec);
		}
		if (b >= count)
			return iap_error_set(err, IAP_EINVAL, "--samples '%s': index %lld, but the split has %lld samples",
					     spec, b, (long long)count);
		for (long long i = a; i <= b; i++)
			if (add_index(s, cap, i))
				return iap_error_set(err, IAP_ENOMEM, "out of memory");
		if (*end == ',')
			end++;
		else if (*end)
			return iap_error_set(err, IAP_EINVAL, "--samples '%s': expected indices such as 0-9,42", spec);
		p = end;
	}
	return IAP_OK;
}

/* The pipeline's sampler called name (its "name:" or plugin name), as `iaprune run` draws it. */
static int run_sampler(const struct iap_cfg_node *root, const struct iap_registry *reg, const char *name,
		       const struct iap_dataset *ds, struct iap_graph *g, struct source *s, int *found,
		       struct iap_error *err)
{
	const struct iap_cfg_node *list = iap_cfg_get(root, "sampling");
	long seed = 0;
	int rc = iap_cfg_get_int(root, "seed", 0, &seed, err);

	*found = 0;
	for (int i = 0; !rc && list && i < list->n_items && i < 16; i++) {
		const struct iap_plugin *p;
		struct iap_opts *opts = NULL;
		const char *nm = NULL;
		struct iap_rng rng;
		struct iap_error warn;
		long k;

		rc = iap_pipeline_plugin(list->items[i], IAP_PLUGIN_SAMPLER, reg, &p, &opts, err);
		rc = rc ? rc : iap_cfg_get_int(list->items[i], "per_class", 10, &k, err);
		rc = rc ? rc : iap_cfg_get_str(list->items[i], "name", p->desc->name, &nm, err);
		if (!rc && (name ? !strcmp(nm, name) || !strcmp(p->desc->name, name) : 1)) {
			*found = 1;
			s->idx = calloc((size_t)k * (size_t)ds->info.n_classes + 1, sizeof(*s->idx));
			if (!s->idx)
				rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
			/* The runner's seed for sampler i, so the samples are the ones `run` scores. */
			iap_rng_seed(&rng, (uint64_t)seed + 101u * (uint64_t)(i + 1));
			iap_error_clear(&warn);
			if (!rc && (rc = iap_call_select(p, opts, ds, g, &rng, (int)k, s->idx, &s->n, &warn))) {
				*err = warn;
				iap_error_prefix(err, "sampler '%s'", nm);
			}
			iap_opts_free(opts);
			return rc;
		}
		iap_opts_free(opts);
	}
	return rc;
}

/* One image file as the model's input (ImageNet or 0.5/0.5 normalisation, as explain). */
static int load_image(const char *path, const struct iap_graph *g, float *dst, struct iap_error *err)
{
	struct iap_explain_norm norm;

	iap_explain_norm_default((int)g->in_shape[0], &norm);
	return iap_explain_load_image(path, g, &norm, NULL, dst, err);
}

/* Append n samples of per floats to s->inputs. */
static int add_inputs(struct source *s, const float *v, int64_t n, struct iap_error *err)
{
	float *p = realloc(s->inputs, (size_t)(s->n + n) * (size_t)s->per * sizeof(float));

	if (!p)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	s->inputs = p;
	memcpy(p + s->n * s->per, v, (size_t)n * (size_t)s->per * sizeof(float));
	s->n += n;
	return IAP_OK;
}

/* An .npz of already normalised float arrays: member "x" (or its only member), [N, C, H, W] or [C, H, W]. */
static int load_npz(const char *path, const struct iap_graph *g, struct source *s, struct iap_error *err)
{
	struct iap_npz *z = NULL;
	struct iap_npy a = { 0 };
	int rc = iap_npz_open(path, &z, err);
	int off;

	if (rc)
		return rc;
	rc = iap_npz_read(z, iap_npz_find(z, "x") || z->n_members != 1 ? "x" : z->members[0].name, IAP_NPY_F4,
			  &a, err);
	if (!rc) {
		off = a.ndim == g->in_ndim + 1 ? 1 : 0;
		if (a.ndim - off != g->in_ndim)
			rc = 1;
		for (int d = 0; !rc && d < g->in_ndim; d++)
			rc = a.shape[d + off] != g->in_shape[d];
		if (rc)
			rc = iap_error_set(err, IAP_ESHAPE, "%s: array of %d dimensions does not match the model's "
					   "input (C x H x W = %lld x %lld x %lld, with or without a batch axis)",
					   path, a.ndim, (long long)g->in_shape[0], (long long)g->in_shape[1],
					   (long long)g->in_shape[2]);
		else
			rc = add_inputs(s, a.data, off ? a.shape[0] : 1, err);
	}
	iap_npy_free(&a);
	iap_npz_close(z);
	return rc;
}

/* A safetensors file of normalised inputs: tensor "x", else "input", else its only tensor. */
static int load_st(const char *path, const struct iap_graph *g, struct source *s, struct iap_error *err)
{
	struct iap_safetensors *st = NULL;
	const struct iap_st_tensor *t;
	float *v = NULL;
	int rc = iap_safetensors_open(path, &st, err), off;

	if (rc)
		return rc;
	t = iap_safetensors_find(st, "x");
	t = t ? t : iap_safetensors_find(st, "input");
	t = t ? t : st->n_tensors == 1 ? &st->tensors[0] : NULL;
	if (!t) {
		rc = iap_error_set(err, IAP_EINVAL, "%s: no tensor 'x' or 'input'", path);
		goto out;
	}
	off = t->ndim == g->in_ndim + 1 ? 1 : 0;
	rc = t->ndim - off != g->in_ndim;
	for (int d = 0; !rc && d < g->in_ndim; d++)
		rc = t->shape[d + off] != g->in_shape[d];
	if (rc) {
		rc = iap_error_set(err, IAP_ESHAPE, "%s: tensor '%s' does not match the model's input (C x H x W = "
				   "%lld x %lld x %lld, with or without a batch axis)", path, t->name,
				   (long long)g->in_shape[0], (long long)g->in_shape[1], (long long)g->in_shape[2]);
		goto out;
	}
	v = malloc((size_t)(t->numel ? t->numel : 1) * sizeof(float));
	if (!v) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	rc = iap_safetensors_read_f32(st, t, v, err);
	if (!rc)
		rc = add_inputs(s, v, off ? t->shape[0] : 1, err);
out:
	free(v);
	iap_safetensors_close(st);
	return rc;
}

/* --samples in weights mode: comma-separated image, .npz and .safetensors files. */
static int load_files(const struct attr_opts *o, const struct iap_graph *g, struct source *s,
		      struct iap_error *err)
{
	float *one;
	int rc = IAP_OK;

	s->per = 1;
	for (int d = 0; d < g->in_ndim; d++)
		s->per *= g->in_shape[d];
	one = malloc((size_t)s->per * sizeof(float));
	if (!one)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (int i = 0; !rc && i < o->n_samples; i++) {
		char *list = strdup(o->samples[i]);

		if (!list) {
			rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
			break;
		}
		for (char *f = strtok(list, ","); !rc && f; f = strtok(NULL, ","))
			rc = ends_with(f, ".npz") ? load_npz(f, g, s, err)
			     : ends_with(f, ".safetensors") ? load_st(f, g, s, err)
			     : load_image(f, g, one, err) ? err->code : add_inputs(s, one, 1, err);
		free(list);
	}
	free(one);
	if (!rc && s->n == 0)
		rc = iap_error_set(err, IAP_EINVAL, "a weights file needs --samples FILE[,FILE...] (images or .npz)");
	return rc;
}

/* Batch [b0, b0 + n) of the samples into x and labels (−1: unknown). */
static int load_batch(const struct source *s, int64_t b0, int n, const struct iap_graph *g, struct iap_tensor *x,
		      int *labels, struct iap_error *err)
{
	int64_t shape[IAP_MAX_DIMS], per = 1;
	int rc;

	shape[0] = n;
	for (int d = 0; d < g->in_ndim; d++) {
		shape[d + 1] = g->in_shape[d];
		per *= g->in_shape[d];
	}
	rc = iap_tensor_ensure(x, g->in_ndim + 1, shape, err);
	for (int i = 0; !rc && i < n; i++) {
		labels[i] = -1;
		if (s->ds)
			rc = s->ds->ops->load(s->ds->state, s->idx[b0 + i], x->data + i * per, &labels[i], err);
		else
			memcpy(x->data + i * per, s->inputs + (b0 + i) * per, (size_t)per * sizeof(float));
	}
	return rc;
}

/* ---- the output ------------------------------------------------------------------------------ */

/* Everything gathered over the batches. */
struct results {
	int n_groups;
	int64_t n;
	float **sum, **sum_abs;         /* [g][n · U] */
	float **score;                  /* [g][U]: the plugin's own reduction */
	float *rin;                     /* [n · per_in] input relevance, or NULL */
	int64_t per_in;
	float *d_in, *d_gap, **d_units; /* [n], [n], [g][n] */
	int *index, *labels, *targets;
	float *logits;
	int64_t n_classes;
};

static int add_f32(struct iap_npz_writer *w, const char *name, int ndim, int64_t d0, int64_t d1,
		   const float *v, struct iap_error *err)
{
	int64_t shape[2] = { d0, d1 };

	return iap_npz_writer_add_f32(w, name, ndim, shape, v, err);
}

static int write_results(const char *path, const struct iap_graph *g, const struct results *r, int per_sample,
			 const struct iap_tensor *x_shape, struct iap_error *err)
{
	struct iap_npz_writer *w;
	char name[512];
	int rc = iap_npz_writer_open(&w, path, err);

	if (rc)
		return rc;
	for (int gi = 0; !rc && gi < g->n_groups; gi++) {
		const char *m = g->groups[gi].name;
		const int64_t U = g->groups[gi].n_units;

		snprintf(name, sizeof(name), "units/%s/score", m);
		rc = add_f32(w, name, 1, U, 0, r->score[gi], err);
		if (rc || !per_sample)
			continue;
		float *abs_sum = malloc((size_t)(r->n * U) * sizeof(float));
		double *tot = calloc((size_t)(3 * U), sizeof(double));
		float *tf = malloc((size_t)(3 * U) * sizeof(float));

		if (!abs_sum || !tot || !tf) {
			rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		} else {
			for (int64_t k = 0; k < r->n * U; k++) {
				abs_sum[k] = fabsf(r->sum[gi][k]);
				tot[k % U] += r->sum[gi][k];
				tot[U + k % U] += abs_sum[k];
				tot[2 * U + k % U] += r->sum_abs[gi][k];
			}
			for (int64_t k = 0; k < 3 * U; k++)
				tf[k] = (float)tot[k];
			snprintf(name, sizeof(name), "units/%s/sum", m);
			rc = add_f32(w, name, 2, r->n, U, r->sum[gi], err);
			snprintf(name, sizeof(name), "units/%s/abs_of_sum", m);
			rc = rc ? rc : add_f32(w, name, 2, r->n, U, abs_sum, err);
			snprintf(name, sizeof(name), "units/%s/sum_of_abs", m);
			rc = rc ? rc : add_f32(w, name, 2, r->n, U, r->sum_abs[gi], err);
			snprintf(name, sizeof(name), "units/%s/total/sum", m);
			rc = rc ? rc : add_f32(w, name, 1, U, 0, tf, err);
			snprintf(name, sizeof(name), "units/%s/total/abs_of_sum", m);
			rc = rc ? rc : add_f32(w, name, 1, U, 0, tf + U, err);
			snprintf(name, sizeof(name), "units/%s/total/sum_of_abs", m);
			rc = rc ? rc : add_f32(w, name, 1, U, 0, tf + 2 * U, err);
			if (!rc && r->d_units && r->d_units[gi]) {
				snprintf(name, sizeof(name), "delta/units/%s", m);
				rc = add_f32(w, name, 1, r->n, 0, r->d_units[gi], err);
			}
		}
		free(abs_sum);
		free(tot);
		free(tf);
	}
	if (!rc && per_sample) {
		int64_t n1[1] = { r->n };

		rc = iap_npz_writer_add(w, "index", IAP_NPY_I4, 1, n1, r->index, err);
		rc = rc ? rc : iap_npz_writer_add(w, "labels", IAP_NPY_I4, 1, n1, r->labels, err);
		rc = rc ? rc : iap_npz_writer_add(w, "targets", IAP_NPY_I4, 1, n1, r->targets, err);
		rc = rc ? rc : add_f32(w, "logits", 2, r->n, r->n_classes, r->logits, err);
		if (!rc && r->rin) {
			int64_t shape[IAP_MAX_DIMS];

			memcpy(shape, x_shape->shape, sizeof(shape));
			shape[0] = r->n;
			rc = iap_npz_writer_add_f32(w, "input_relevance", x_shape->ndim, shape, r->rin, err);
		}
		if (!rc && r->d_in)
			rc = add_f32(w, "delta/input", 1, r->n, 0, r->d_in, err);
		if (!rc && r->d_gap)
			rc = add_f32(w, "delta/gap", 1, r->n, 0, r->d_gap, err);
	}
	if (rc) {
		iap_npz_writer_abort(w);
		return rc;
	}
	return iap_npz_writer_commit(w, err);
}

static void results_free(struct results *r)
{
	for (int gi = 0; gi < r->n_groups; gi++) {
		if (r->sum)
			free(r->sum[gi]);
		if (r->sum_abs)
			free(r->sum_abs[gi]);
		if (r->score)
			free(r->score[gi]);
		if (r->d_units)
			free(r->d_units[gi]);
	}
	free(r->sum);
	free(r->sum_abs);
	free(r->score);
	free(r->d_units);
	free(r->rin);
	free(r->d_in);
	free(r->d_gap);
	free(r->index);
	free(r->labels);
	free(r->targets);
	free(r->logits);
}

/* Grow a per-sample float array to n entries of `each`, keeping its contents. */
static int grow(float **p, int64_t n, int64_t each)
{
	float *q = realloc(*p, (size_t)(n * each > 0 ? n * each : 1) * sizeof(float));

	if (!q)
		return IAP_ENOMEM;
	*p = q;
	return IAP_OK;
}

/* ---- the run ---------------------------------------------------------------------------------- */

struct job {
	const struct iap_plugin *attr;
	struct iap_opts *opts;
	struct iap_graph *g;
	struct source src;
	const char *what;       /* for the summary line */
};

/* Score every sample; the results are in r. */
static int run(const struct attr_opts *o, struct job *j, struct results *r, struct iap_tensor *x,
	       struct iap_error *err)
{
	const struct iap_attribution_ops *ops = j->attr->desc->ops.attribution;
	const int data_free = (ops->flags & IAP_ATTR_DATA_FREE) != 0;
	/* Rule sets and unit_relevance() give the relevance itself: the score follows from its sums. */
	const int own_reduce = ops->ruleset || IAP_ATTR_OPS_HAS(ops, unit_relevance);
	struct iap_score_opts so;
	struct iap_tensor rin = { 0 };
	float **bsum = NULL, **babs = NULL;
	int *labels = NULL, *targets = NULL;
	void *state = NULL;
	int rc;

	iap_score_opts_from(j->opts, &so);
	r->n_groups = j->g->n_groups;
	r->score = calloc((size_t)r->n_groups + 1, sizeof(float *));
	if (!r->score)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (int gi = 0; gi < r->n_groups; gi++)
		if (!(r->score[gi] = calloc((size_t)j->g->groups[gi].n_units, sizeof(float))))
			return iap_error_set(err, IAP_ENOMEM, "out of memory");
	rc = iap_call_create(j->attr, j->opts, j->g, &state, err);
	if (rc) {
		iap_error_prefix(err, "attribution '%s'", j->attr->desc->name);
		return rc;
	}
	iap_graph_set_training(j->g, 0);
	if (data_free) {
		/* Weights alone: one call with one sample so the graph has run once. */
		int lab = -1;

		rc = j->src.n > 0 ? load_batch(&j->src, 0, 1, j->g, x, &lab, err) : IAP_OK;
		if (!rc && j->src.n == 0) {
			int64_t shape[IAP_MAX_DIMS] = { 1 };

			for (int d = 0; d < j->g->in_ndim; d++)
				shape[d + 1] = j->g->in_shape[d];
			rc = iap_tensor_ensure(x, j->g->in_ndim + 1, shape, err);
			if (!rc)
				iap_tensor_zero(x);
		}
		if (!rc)
			rc = iap_call_attribute_batch(j->attr, state, j->opts, j->g, x, NULL, r->score, NULL, err);
		goto out;
	}
	bsum = calloc((size_t)r->n_groups + 1, sizeof(*bsum));
	babs = calloc((size_t)r->n_groups + 1, sizeof(*babs));
	r->sum = calloc((size_t)r->n_groups + 1, sizeof(*r->sum));
	r->sum_abs = calloc((size_t)r->n_groups + 1, sizeof(*r->sum_abs));
	r->d_units = calloc((size_t)r->n_groups + 1, sizeof(*r->d_units));
	labels = calloc((size_t)o->batch, sizeof(int));
	targets = calloc((size_t)o->batch, sizeof(int));
	r->index = calloc((size_t)j->src.n + 1, sizeof(int));
	r->labels = calloc((size_t)j->src.n + 1, sizeof(int));
	r->targets = calloc((size_t)j->src.n + 1, sizeof(int));
	if (!bsum || !babs || !r->sum || !r->sum_abs || !r->d_units || !labels || !targets || !r->index ||
	    !r->labels || !r->targets) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	for (int gi = 0; gi < r->n_groups; gi++) {
		size_t u = (size_t)j->g->groups[gi].n_units;

		bsum[gi] = malloc((size_t)o->batch * u * sizeof(float));
		babs[gi] = malloc((size_t)o->batch * u * sizeof(float));
		r->sum[gi] = malloc(((size_t)j->src.n + 1) * u * sizeof(float));
		r->sum_abs[gi] = malloc(((size_t)j->src.n + 1) * u * sizeof(float));
		if (!bsum[gi] || !babs[gi] || !r->sum[gi] || !r->sum_abs[gi]) {
			rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
			goto out;
		}
	}
	for (int64_t b0 = 0; !rc && b0 < j->src.n; b0 += o->batch) {
		const int n = (int)(j->src.n - b0 < o->batch ? j->src.n - b0 : o->batch);
		const struct iap_tensor *logits;
		int ng, nd;
		const float *d;

		rc = load_batch(&j->src, b0, n, j->g, x, labels, err);
		if (rc)
			break;
		if (o->target >= 0)
			for (int i = 0; i < n; i++)
				labels[i] = o->target;
		rc = iap_call_attribute_samples(j->attr, state, j->opts, j->g, x,
						so.target == IAP_TARGET_LABEL ? labels : NULL, bsum, babs, targets, &rin,
						err);
		/* The input relevance is checked as explain checks it: shaped as the batch, finite. */
		if (!rc && rin.data)
			rc = iap_contract_heatmap(j->attr, x, &rin, err);
		if (rc)
			break;
		/* The logits of this batch (the sweeps may have left other rows in the graph). */
		rc = iap_graph_forward(j->g, x, err);
		if (rc)
			break;
		logits = iap_graph_output(j->g);
		r->n_classes = logits->shape[1];
		if (grow(&r->logits, b0 + n, r->n_classes) ||
		    (rin.data && grow(&r->rin, b0 + n, iap_tensor_numel(&rin) / n))) {
			rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
			break;
		}
		memcpy(r->logits + b0 * r->n_classes, logits->data, (size_t)(n * r->n_classes) * sizeof(float));
		if (rin.data) {
			r->per_in = iap_tensor_numel(&rin) / n;
			memcpy(r->rin + b0 * r->per_in, rin.data, (size_t)iap_tensor_numel(&rin) * sizeof(float));
		}
		for (int i = 0; i < n; i++) {
			r->index[b0 + i] = (int)(j->src.ds ? j->src.idx[b0 + i] : b0 + i);
			r->labels[b0 + i] = j->src.ds ? labels[i] : o->target >= 0 ? o->target : -1;
			r->targets[b0 + i] = targets[i];
		}
		for (int gi = 0; gi < r->n_groups; gi++) {
			const int U = j->g->groups[gi].n_units;

			memcpy(r->sum[gi] + b0 * U, bsum[gi], (size_t)n * U * sizeof(float));
			memcpy(r->sum_abs[gi] + b0 * U, babs[gi], (size_t)n * U * sizeof(float));
			/* The plugin's own score: its abs option over the same sums (scorers: below). */
			for (int i = 0; own_reduce && i < n; i++)
				for (int u = 0; u < U; u++) {
					float s = bsum[gi][i * U + u];

					r->score[gi][u] += so.abs == IAP_ABS_AFTER ? fabsf(s)
							   : so.abs == IAP_ABS_BEFORE ? babs[gi][i * U + u] : s;
				}
		}
		/*
		 * A plugin that only scores may reduce in its own way: its score is
		 * what it adds for the batch, as in `run`.
		 */
		if (!own_reduce &&
		    (rc = iap_call_attribute_batch(j->attr, state, j->opts, j->g, x, labels, r->score, NULL, err)))
			break;
		/* Completeness gaps, when the method reports them (ABI 1.1). */
		if (IAP_ATTR_OPS_HAS(ops, completeness)) {
			d = iap_call_completeness(j->attr, state, IAP_DELTA_UNITS, &ng, &nd);
			if (d && ng == r->n_groups && nd == n)
				for (int gi = 0; !rc && gi < ng; gi++) {
					if (grow(&r->d_units[gi], b0 + n, 1))
						rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
					else
						memcpy(r->d_units[gi] + b0, d + (int64_t)gi * n, (size_t)n * sizeof(float));
				}
			d = iap_call_completeness(j->attr, state, IAP_DELTA_INPUT, &ng, &nd);
			if (!rc && d && nd == n) {
				if (grow(&r->d_in, b0 + n, 1))
					rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
				else
					memcpy(r->d_in + b0, d, (size_t)n * sizeof(float));
			}
			d = iap_call_completeness(j->attr, state, IAP_DELTA_GAP, &ng, &nd);
			if (!rc && d && nd == n) {
				if (grow(&r->d_gap, b0 + n, 1))
					rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
				else
					memcpy(r->d_gap + b0, d, (size_t)n * sizeof(float));
			}
		}
		if (!o->quiet)
			fprintf(stderr, "iaprune: attribute: %s: %lld / %lld samples\n", j->attr->desc->name,
				(long long)(b0 + n), (long long)j->src.n);
	}
	r->n = j->src.n;
	if (!rc)
		iap_scores_finish(j->g, j->opts, r->n, r->score);
out:
	if (rc)
		iap_error_prefix(err, "attribution '%s'", j->attr->desc->name);
	for (int gi = 0; bsum && gi < r->n_groups; gi++)
		free(bsum[gi]);
	for (int gi = 0; babs && gi < r->n_groups; gi++)
		free(babs[gi]);
	free(bsum);
	free(babs);
	free(labels);
	free(targets);
	iap_tensor_free(&rin);
	iap_call_destroy(j->attr, state);
	return rc;
}

/* The attribution plugin and its options: the pipeline's entry of that name, or the plugin's defaults. */
static int pick_attribution(const struct attr_opts *o, const struct iap_registry *reg,
			    const struct iap_cfg_node *root, struct job *j, struct iap_error *err)
{
	const struct iap_cfg_node *list = root ? iap_cfg_get(root, "attribution") : NULL;
	char what[128];
	int rc = IAP_OK;

	for (int i = 0; list && i < list->n_items && !j->attr; i++) {
		const struct iap_plugin *p;
		struct iap_opts *opts = NULL;
		const char *nm = NULL;

		rc = iap_pipeline_plugin(list->items[i], IAP_PLUGIN_ATTRIBUTION, reg, &p, &opts, err);
		rc = rc ? rc : iap_cfg_get_str(list->items[i], "name", p->desc->name, &nm, err);
		if (rc)
			return rc;
		if (!o->attribution || !strcmp(nm, o->attribution) || !strcmp(p->desc->name, o->attribution)) {
			j->attr = p;
			j->opts = opts;
		} else {
			iap_opts_free(opts);
		}
	}
	if (!j->attr) {
		const char *name = o->attribution ? o->attribution : "lrp";

		j->attr = iap_registry_find(reg, IAP_PLUGIN_ATTRIBUTION, name);
		if (!j->attr)
			return iap_error_set(err, IAP_EINVAL, "--attribution %s: no such attribution plugin "
					     "(see 'iaprune plugins --kind attribution')", name);
		rc = iap_opts_defaults(j->attr->desc->options, &j->opts, err);
	}
	snprintf(what, sizeof(what), "attribution '%s'", j->attr->desc->name);
	for (int i = 0; !rc && i < o->n_options; i++) {
		const char *eq = strchr(o->options[i], '=');
		char key[128];

		if (!eq || eq == o->options[i] || (size_t)(eq - o->options[i]) >= sizeof(key))
			return iap_error_set(err, IAP_EINVAL, "--option wants KEY=VALUE, not '%s'", o->options[i]);
		snprintf(key, sizeof(key), "%.*s", (int)(eq - o->options[i]), o->options[i]);
		rc = iap_opts_set(j->opts, what, key, eq + 1, err);
	}
	if (!rc && o->target >= 0) {
		for (const struct iap_option *op = j->attr->desc->options; op && op->name; op++)
			if (!strcmp(op->name, "target"))
				rc = iap_opts_set(j->opts, what, "target", "label", err);
	}
	return rc;
}

static int split_of(const char *s, enum iap_split *out)
{
	for (int i = 0; i < IAP_SPLIT_COUNT; i++)
		if (!strcmp(s, iap_split_name(i))) {
			*out = (enum iap_split)i;
			return 0;
		}
	return -1;
}

int cli_attribute(const struct cli_env *env, int argc, char **argv)
{
	struct iap_error err = { 0, "" };
	struct iap_registry *reg = NULL;
	struct iap_cfg *cfg = NULL;
	const struct iap_cfg_node *root = NULL;
	const struct iap_plugin *ds_plugin = NULL, *model_plugin = NULL;
	struct iap_opts *ds_opts = NULL, *model_opts = NULL;
	struct iap_dataset ds = { 0 };
	int ds_open = 0;
	struct attr_opts o;
	struct job j = { 0 };
	struct results r = { 0 };
	struct iap_tensor x = { 0 };
	int rc = parse(env, argc, argv, &o);

	if (rc == -2)
		return EXIT_OK;
	if (rc)
		return rc;
	/* The engine's one pool: -j, else IAPRUNE_THREADS, else every CPU (<iaprune/threads.h>). */
	if (iap_threads_configure(o.jobs, 0, &err))
		return fail(EXIT_USAGE, "%s", err.msg);
	reg = env->load_plugins(env->user);
	if (!reg)
		return EXIT_RUN;
	if (ends_with(o.input, ".safetensors")) {
		if (o.n_sets || o.split)
			rc = iap_error_set(&err, IAP_EINVAL, "--set and --split are for a PIPELINE, not a weights file");
		if (!rc)
			rc = cli_model_load(reg, o.input, o.model, o.model_options, o.n_model_options, &j.g, &err);
		if (!rc && o.n_samples)
			rc = load_files(&o, j.g, &j.src, &err);
		if (!rc)
			rc = pick_attribution(&o, reg, NULL, &j, &err);
		if (!rc && !o.n_samples && !(j.attr->desc->ops.attribution->flags & IAP_ATTR_DATA_FREE))
			rc = iap_error_set(&err, IAP_EINVAL, "a weights file needs --samples FILE[,FILE...] (images or .npz)");
	} else {
		enum iap_split split = IAP_SPLIT_TRAIN;
		const char *weights = NULL, *outdir = NULL;
		char path[4200];

		if (o.model || o.n_model_options) {
			rc = fail(EXIT_USAGE, "--model and --model-option are for a weights file; a pipeline names its model");
			goto out;
		}
		if (o.split && split_of(o.split, &split)) {
			rc = fail(EXIT_USAGE, "--split wants train, val or test, not '%s'", o.split);
			goto out;
		}
		rc = env->load_pipeline(o.input, o.sets, o.n_sets, reg, &cfg);
		if (rc)
			goto out;
		root = iap_cfg_root(cfg);
		rc = iap_pipeline_plugin(iap_cfg_get(root, "dataset"), IAP_PLUGIN_DATASET, reg, &ds_plugin, &ds_opts, &err);
		if (!rc) {
			ds.split = split;
			rc = iap_call_dataset_open(ds_plugin, ds_opts, split, &ds, &err);
			if (rc)
				iap_error_prefix(&err, "dataset '%s', %s split", ds_plugin->desc->name, iap_split_name(split));
			else
				ds_open = 1;
		}
		if (!rc)
			rc = ds.ops->info(ds.state, &ds.info, &err);
		if (!rc)
			ds.count = ds.ops->count(ds.state);
		if (!rc)
			rc = iap_pipeline_plugin(iap_cfg_get(root, "model"), IAP_PLUGIN_MODEL, reg, &model_plugin,
						 &model_opts, &err);
		if (!rc)
			rc = iap_call_build(model_plugin, model_opts, &ds.info, &j.g, &err);
		/* The trained model: model.weights, else what `iaprune train` saved. */
		if (!rc)
			rc = iap_cfg_get_str(root, "model.weights", NULL, &weights, &err);
		if (!rc)
			rc = iap_cfg_get_str(root, "output", "results", &outdir, &err);
		if (!rc && !weights) {
			snprintf(path, sizeof(path), "%s/model.safetensors", outdir);
			if (access(path, R_OK) != 0)
				rc = iap_error_set(&err, IAP_EINVAL, "%s: no model.weights and no %s: train the model first "
						   "('iaprune train %s')", o.input, path, o.input);
			weights = path;
		}
		if (!rc)
			rc = iap_graph_load_weights_file(j.g, weights, 0, &err);
		if (!rc)
			rc = pick_attribution(&o, reg, root, &j, &err);
		j.src.ds = &ds;
		if (!rc && !(j.attr->desc->ops.attribution->flags & IAP_ATTR_DATA_FREE)) {
			int64_t cap = 0;
			int found = 0;

			for (int i = 0; !rc && i < o.n_samples; i++) {
				const char *spec = o.samples[i];

				if ((spec[0] >= '0' && spec[0] <= '9') || !strcmp(spec, "all")) {
					rc = parse_indices(spec, ds.count, &j.src, &cap, &err);
					continue;
				}
				if (j.src.n || i)
					rc = iap_error_set(&err, IAP_EINVAL, "--samples %s: a sampler cannot be combined "
							   "with other --samples", spec);
				if (!rc)
					rc = run_sampler(root, reg, spec, &ds, j.g, &j.src, &found, &err);
				if (!rc && !found)
					rc = iap_error_set(&err, IAP_EINVAL, "--samples %s: no such sampler in the "
							   "pipeline, nor indices such as 0-9,42 or 'all'", spec);
			}
			if (!rc && !o.n_samples) {
				rc = run_sampler(root, reg, NULL, &ds, j.g, &j.src, &found, &err);
				if (!rc && !found)
					rc = iap_error_set(&err, IAP_EINVAL, "%s has no sampling list: say which samples "
							   "with --samples (indices such as 0-9,42, or 'all')", o.input);
			}
			if (!rc && j.src.n == 0)
				rc = iap_error_set(&err, IAP_EINVAL, "no samples chosen");
		}
	}
	if (rc) {
		if (err.msg[0])
			rc = fail(status_of(&err), "%s", err.msg);
		goto out;
	}
	rc = run(&o, &j, &r, &x, &err);
	if (!rc)
		rc = write_results(o.output, j.g, &r, !(j.attr->desc->ops.attribution->flags & IAP_ATTR_DATA_FREE),
				   &x, &err);
	if (rc) {
		rc = fail(status_of(&err), "%s", err.msg);
		goto out;
	}
	if (!o.quiet)
		printf("%s: %s on %lld samples, %d unit groups\n", o.output, j.attr->desc->name, (long long)r.n,
		       j.g->n_groups);
out:
	results_free(&r);
	iap_tensor_free(&x);
	free(j.src.idx);
	free(j.src.inputs);
	iap_opts_free(j.opts);
	if (ds_open)
		ds.ops->close(ds.state);
	iap_opts_free(ds_opts);
	iap_opts_free(model_opts);
	iap_graph_free(j.g);
	iap_cfg_free(cfg);
	iap_registry_free(reg);
	return rc;
}
