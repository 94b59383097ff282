/* Shared machinery of the dataset plugins: sample list, split, load, cache. */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <iaprune/csv.h>
#include <iaprune/rng.h>

#include "common.h"

const char *const ds_norm_choices[] = {
	[DS_NORM_IMAGENET] = "imagenet", [DS_NORM_NONE] = "none", [DS_NORM_CUSTOM] = "custom", NULL,
};
_Static_assert(sizeof(ds_norm_choices) / sizeof(ds_norm_choices[0]) == DS_NORM_COUNT + 1,
	       "ds_norm_choices must match enum ds_norm");

/* ---- small helpers --------------------------------------------------------------- */

char *ds_join(const char *dir, const char *name)
{
	size_t a, b;
	char *s;

	if (name[0] == '/' || !dir || !dir[0])
		return strdup(name);
	a = strlen(dir);
	b = strlen(name);
	s = malloc(a + b + 2);
	if (!s)
		return NULL;
	memcpy(s, dir, a);
	s[a] = '/';
	memcpy(s + a + 1, name, b + 1);
	return s;
}

char *ds_dirname(const char *path)
{
	const char *slash = strrchr(path, '/');

	if (!slash)
		return strdup(".");
	if (slash == path)
		return strdup("/");
	return strndup(path, (size_t)(slash - path));
}

int ds_is_dir(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int ds_is_file(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

void ds_free_strings(char **s, int n)
{
	if (!s)
		return;
	for (int i = 0; i < n; i++)
		free(s[i]);
	free(s);
}

int ds_split_list(const char *text, char ***out, int *n, struct iap_error *err)
{
	char **v = NULL;
	int count = 0;
	const char *p = text;

	*out = NULL;
	*n = 0;
	while (p && *p) {
		const char *end = strchr(p, ',');
		const char *a = p, *b = end ? end : p + strlen(p);
		char **nv;

		while (a < b && isspace((unsigned char)*a))
			a++;
		while (b > a && isspace((unsigned char)b[-1]))
			b--;
		nv = realloc(v, sizeof(*v) * (size_t)(count + 1));
		if (!nv)
			goto oom;
		v = nv;
		if (!(v[count] = strndup(a, (size_t)(b - a))))
			goto oom;
		count++;
		p = end ? end + 1 : NULL;
	}
	*out = v;
	*n = count;
	return IAP_OK;
oom:
	ds_free_strings(v, count);
	return iap_error_set(err, IAP_ENOMEM, "out of memory");
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int ds_sort_unique(char **names, int n)
{
	int k = 0;

	if (n <= 0)
		return 0;
	qsort(names, (size_t)n, sizeof(*names), cmp_str);
	for (int i = 1; i < n; i++) {
		if (strcmp(names[i], names[k]) == 0)
			free(names[i]);
		else
			names[++k] = names[i];
	}
	return k + 1;
}

int ds_find_name(char *const *names, int n, const char *name)
{
	char *const *hit = bsearch(&name, names, (size_t)n, sizeof(*names), cmp_str);

	return hit ? (int)(hit - names) : -1;
}

/* ---- creation and the sample list ------------------------------------------------- */

int ds_new(const char *plugin, const struct iap_opts *opts, struct ds **out, struct iap_error *err)
{
	struct ds *d;
	int norm;

	*out = NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", plugin);
	d->plugin = plugin;
	for (int i = 0; i < DS_SCRATCH_SLOTS; i++)
		atomic_flag_clear(&d->slots[i].busy);
	d->image_size = (int)iap_opts_int(opts, "image_size");
	d->want_channels = (int)iap_opts_int(opts, "channels");
	d->skip_bad = iap_opts_bool(opts, "skip_bad");
	d->use_cache = iap_opts_bool(opts, "cache");
	d->mean_text = iap_opts_str(opts, "mean");
	d->std_text = iap_opts_str(opts, "std");
	norm = iap_opts_enum(opts, "normalize");
	d->norm = norm >= 0 && norm < DS_NORM_COUNT ? (enum ds_norm)norm : DS_NORM_IMAGENET;
	if (d->want_channels == 2) {
		free(d);
		return iap_error_set(err, IAP_EINVAL, "%s: option 'channels': must be 0, 1 or 3, got 2",
				     plugin);
	}
	*out = d;
	return IAP_OK;
}

int ds_add(struct ds *d, const char *path, int label, int split, const char *group, long line,
	   struct iap_error *err)
{
	if (d->n == d->cap) {
		int64_t cap = d->cap ? d->cap * 2 : 256;
		void *p;

#define GROW(field) \
		do { \
			p = realloc(d->field, sizeof(*d->field) * (size_t)cap); \
			if (!p) \
				goto oom; \
			d->field = p; \
		} while (0)
		GROW(paths);
		GROW(labels);
		GROW(splits);
		GROW(groups);
		GROW(lines);
		GROW(src_index);
#undef GROW
		d->cap = cap;
	}
	d->paths[d->n] = NULL;
	d->groups[d->n] = NULL;
	if (path && !(d->paths[d->n] = strdup(path)))
		goto oom;
	if (group && !(d->groups[d->n] = strdup(group))) {
		free(d->paths[d->n]);
		goto oom;
	}
	d->labels[d->n] = label;
	d->splits[d->n] = (int8_t)split;
	d->lines[d->n] = line;
	d->src_index[d->n] = d->n;
	d->n++;
	return IAP_OK;
oom:
	return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", d->plugin);
}

void ds_set_classes(struct ds *d, char **names, int n)
{
	ds_free_strings(d->class_names, d->n_classes);
	d->class_names = names;
	d->n_classes = n;
}

/* ---- splitting --------------------------------------------------------------------- */

struct keyed {
	const char *key;
	int64_t idx;
};

static int cmp_keyed(const void *a, const void *b)
{
	const struct keyed *x = a, *y = b;
	int c = strcmp(x->key, y->key);

	return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

int ds_carve(struct ds *d, int from, double val_fraction, double test_fraction, uint64_t seed,
	     struct iap_error *err)
{
	int64_t *head = NULL, *pick = NULL, m = 0;
	int8_t *dest = NULL;
	struct keyed *keys = NULL;
	struct iap_rng rng;
	int rc = IAP_OK;

	if (val_fraction <= 0 && test_fraction <= 0)
		return IAP_OK;
	head = malloc(sizeof(*head) * (size_t)(d->n + 1));
	pick = malloc(sizeof(*pick) * (size_t)(d->n + 1));
	dest = malloc(sizeof(*dest) * (size_t)(d->n + 1));
	keys = malloc(sizeof(*keys) * (size_t)(d->n + 1));
	if (!head || !pick || !dest || !keys) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", d->plugin);
		goto out;
	}
	/*
	 * head[i]: the first image of i's unit — its patient's first image, or
	 * i itself without a patient id. Sorting (id, index) pairs puts each
	 * patient's first image at the start of its run.
	 */
	for (int64_t i = 0; i < d->n; i++) {
		head[i] = i;
		if (d->splits[i] == from && d->groups[i])
			keys[m++] = (struct keyed){ .key = d->groups[i], .idx = i };
	}
	qsort(keys, (size_t)m, sizeof(*keys), cmp_keyed);
	for (int64_t k = 1; k < m; k++)
		if (!strcmp(keys[k].key, keys[k - 1].key))
			head[keys[k].idx] = head[keys[k - 1].idx];

	/* Per class, its units in order of first image, shuffled; the first go to test, then val. */
	iap_rng_seed(&rng, seed);
	for (int c = 0; c < d->n_classes; c++) {
		int64_t nu = 0, n_test, n_val;

		for (int64_t i = 0; i < d->n; i++)
			if (d->splits[i] == from && head[i] == i && d->labels[i] == c)
				pick[nu++] = i;
		for (int64_t k = nu - 1; k > 0; k--) {
			int64_t j = (int64_t)iap_rng_below(&rng, (uint64_t)k + 1), t = pick[k];

			pick[k] = pick[j];
			pick[j] = t;
		}
		n_test = llround(test_fraction * (double)nu);
		n_val = llround(val_fraction * (double)nu);
		if (n_test + n_val > nu)
			n_val = nu - n_test;
		for (int64_t k = 0; k < nu; k++)
			dest[pick[k]] = (int8_t)(k < n_test ? IAP_SPLIT_TEST
						 : k < n_test + n_val ? IAP_SPLIT_VAL : from);
	}
	for (int64_t i = 0; i < d->n; i++)
		if (d->splits[i] == from)
			d->splits[i] = dest[head[i]];
out:
	free(head);
	free(pick);
	free(dest);
	free(keys);
	return rc;
}

int ds_carve_opts(struct ds *d, const struct iap_opts *opts, int carve_val, int carve_test,
		  struct iap_error *err)
{
	double v = carve_val ? iap_opts_float(opts, "val_fraction") : 0;
	double t = carve_test ? iap_opts_float(opts, "test_fraction") : 0;

	if (v + t >= 1)
		return iap_error_set(err, IAP_EINVAL,
				     "%s: val_fraction + test_fraction must be below 1 (got %g + %g)",
				     d->plugin, v, t);
	return ds_carve(d, IAP_SPLIT_TRAIN, v, t, (uint64_t)iap_opts_int(opts, "seed"), err);
}

int ds_check_duplicates(struct ds *d, struct iap_error *err)
{
	struct keyed *keys;
	int64_t m = 0;
	int rc = IAP_OK;

	keys = malloc(sizeof(*keys) * (size_t)(d->n + 1));
	if (!keys)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", d->plugin);
	for (int64_t i = 0; i < d->n; i++)
		if (d->paths[i])
			keys[m++] = (struct keyed){ .key = d->paths[i], .idx = i };
	qsort(keys, (size_t)m, sizeof(*keys), cmp_keyed);
	for (int64_t k = 1; k < m; k++) {
		int64_t a = keys[k - 1].idx, b = keys[k].idx;

		if (strcmp(keys[k].key, keys[k - 1].key))
			continue;
		/* report the later listing, pointing back at the first */
		if (d->lines[b] > 0)
			rc = iap_error_set(err, IAP_EFORMAT, "%s:%ld: duplicate path '%s' (also on line %ld)",
					   d->list_name, d->lines[b], d->paths[b], d->lines[a]);
		else
			rc = iap_error_set(err, IAP_EFORMAT, "%s: duplicate path", d->paths[b]);
		break;
	}
	free(keys);
	return rc;
}

/* ---- loading ------------------------------------------------------------------------ */

static struct ds_scratch *scratch_take(struct ds *d)
{
	for (int k = 0; k < DS_SCRATCH_SLOTS; k++)
		if (!atomic_flag_test_and_set_explicit(&d->slots[k].busy, memory_order_acquire))
			return &d->slots[k];
	return NULL;
}

static void scratch_give(struct ds_scratch *s)
{
	atomic_flag_clear_explicit(&s->busy, memory_order_release);
}

static void scratch_free(struct ds_scratch *s)
{
	iap_tensor_free(&s->img);
	iap_resizer_free(&s->rs);
}

/* Add "list:line: " to a message about a sample that came from a manifest. */
static int at_line(const struct ds *d, int64_t i, int rc, struct iap_error *err)
{
	if (rc && d->lines[i] > 0)
		iap_error_prefix(err, "%s:%ld", d->list_name, d->lines[i]);
	return rc;
}

static int decode(struct ds *d, int64_t i, int channels, struct iap_tensor *out, struct iap_error *err)
{
	if (d->decode)
		return d->decode(d, i, channels, out, err);
	return at_line(d, i, iap_image_load(d->paths[i], channels, out, err), err);
}

/* Decode, resize and normalise sample i into image (C*H*W floats), without the cache. */
static int load_sample(struct ds *d, int64_t i, float *image, struct iap_error *err)
{
	struct ds_scratch *s = scratch_take(d), spare = { 0 };
	struct ds_scratch *use = s ? s : &spare;  /* more threads than slots: a one-off buffer */
	int64_t h, w;
	int rc;

	rc = decode(d, i, d->C, &use->img, err);
	if (rc)
		goto out;
	h = use->img.shape[1];
	w = use->img.shape[2];
	if (d->image_size == 0 && (h != d->H || w != d->W)) {
		rc = at_line(d, i, iap_error_set(err, IAP_ESHAPE,
				"%s: image is %lldx%lld, the dataset's first image is %dx%d (set image_size to resize)",
				d->paths[i] ? d->paths[i] : "sample", (long long)w, (long long)h, d->W, d->H),
			     err);
		goto out;
	}
	if (h == d->H && w == d->W)
		memcpy(image, use->img.data, sizeof(float) * (size_t)d->C * (size_t)h * (size_t)w);
	else if ((rc = iap_image_resize(&use->rs, use->img.data, d->C, (int)h, (int)w, image, d->H,
					  d->W, err)))
		goto out;
	if (d->norm != DS_NORM_NONE)
		rc = iap_image_normalize(image, d->C, (int64_t)d->H * d->W, d->mean, d->std, err);
out:
	if (s)
		scratch_give(s);
	else
		scratch_free(&spare);
	return rc;
}

static size_t sample_floats(const struct ds *d)
{
	return (size_t)d->C * (size_t)d->H * (size_t)d->W;
}

/* Keep the decoded sample for later loads; a racing second copy is dropped. */
static void cache_store(struct ds *d, int64_t i, const float *image)
{
	float *p = malloc(sizeof(float) * sample_floats(d)), *expect = NULL;

	if (!p)
		return;  /* the cache is an optimisation: no memory means decode again next time */
	memcpy(p, image, sizeof(float) * sample_floats(d));
	if (!atomic_compare_exchange_strong_explicit(&d->cache[i], &expect, p, memory_order_release,
						     memory_order_relaxed))
		free(p);
}

int ds_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	struct ds *d = state;
	float *hit;
	int rc;

	if (i < 0 || i >= d->n)
		return iap_error_set(err, IAP_EINVAL, "%s: sample %lld out of range (%lld samples)",
				     d->plugin, (long long)i, (long long)d->n);
	if (label)
		*label = d->labels[i];
	if (!image)
		return IAP_OK;
	if (d->cache && (hit = atomic_load_explicit(&d->cache[i], memory_order_acquire))) {
		memcpy(image, hit, sizeof(float) * sample_floats(d));
		return IAP_OK;
	}
	rc = load_sample(d, i, image, err);
	if (!rc && d->cache)
		cache_store(d, i, image);
	return rc;
}

int ds_load_original(void *state, int64_t i, struct iap_tensor *image, struct iap_error *err)
{
	struct ds *d = state;

	if (i < 0 || i >= d->n)
		return iap_error_set(err, IAP_EINVAL, "%s: sample %lld out of range (%lld samples)",
				     d->plugin, (long long)i, (long long)d->n);
	/* The decode load() starts from, so the pixels are the ones the model's input was resized from. */
	return decode(d, i, d->C, image, err);
}

int64_t ds_count(void *state)
{
	return ((struct ds *)state)->n;
}

int ds_info(void *state, struct iap_dataset_info *info, struct iap_error *err)
{
	struct ds *d = state;

	(void)err;
	memset(info, 0, sizeof(*info));
	info->n_classes = d->n_classes;
	info->in_ndim = 3;
	info->in_shape[0] = d->C;
	info->in_shape[1] = d->H;
	info->in_shape[2] = d->W;
	info->class_names = (const char *const *)d->class_names;
	return IAP_OK;
}

void ds_close(void *state)
{
	struct ds *d = state;

	if (!d)
		return;
	for (int64_t i = 0; i < d->n; i++) {
		free(d->paths[i]);
		free(d->groups[i]);
		if (d->cache)
			free(atomic_load_explicit(&d->cache[i], memory_order_relaxed));
	}
	free(d->paths);
	free(d->labels);
	free(d->splits);
	free(d->groups);
	free(d->lines);
	free(d->src_index);
	free(d->list_name);
	free((void *)d->cache);
	for (int k = 0; k < DS_SCRATCH_SLOTS; k++)
		scratch_free(&d->slots[k]);
	ds_free_strings(d->class_names, d->n_classes);
	if (d->src_free)
		d->src_free(d->src);
	free(d);
}

int64_t iap_plugin_dataset_skipped(void *state, const char **first)
{
	struct ds *d = state;

	if (first)
		*first = d->n_skipped ? d->first_skip : NULL;
	return d->n_skipped;
}

/* ---- finishing the open ---------------------------------------------------------------- */

/* Keep the samples for which keep[i] is set, in order (the cache moves with them). */
static void compact(struct ds *d, const uint8_t *keep)
{
	int64_t k = 0;

	for (int64_t i = 0; i < d->n; i++) {
		if (!keep[i]) {
			free(d->paths[i]);
			free(d->groups[i]);
			if (d->cache)
				free(atomic_load_explicit(&d->cache[i], memory_order_relaxed));
			continue;
		}
		d->paths[k] = d->paths[i];
		d->groups[k] = d->groups[i];
		d->labels[k] = d->labels[i];
		d->splits[k] = d->splits[i];
		d->lines[k] = d->lines[i];
		d->src_index[k] = d->src_index[i];
		if (d->cache)
			atomic_store_explicit(&d->cache[k], atomic_load_explicit(&d->cache[i],
										  memory_order_relaxed),
					      memory_order_relaxed);
		k++;
	}
	d->n = k;
}

/* Per-channel statistics for the resolved channel count. */
static int resolve_norm(struct ds *d, struct iap_error *err)
{
	char **mv = NULL, **sv = NULL;
	int nm = 0, ns = 0, rc = IAP_OK;

	if (d->norm == DS_NORM_IMAGENET) {
		for (int c = 0; c < 3; c++) {
			d->mean[c] = d->C == 3 ? iap_imagenet_mean[c] : 0.5f;
			d->std[c] = d->C == 3 ? iap_imagenet_std[c] : 0.5f;
		}
		return IAP_OK;
	}
	if (d->norm == DS_NORM_NONE)
		return IAP_OK;
	if ((rc = ds_split_list(d->mean_text, &mv, &nm, err)) ||
	    (rc = ds_split_list(d->std_text, &sv, &ns, err)))
		goto out;
	if (nm != d->C || ns != d->C) {
		rc = iap_error_set(err, IAP_EINVAL,
				   "%s: normalize custom: mean and std need %d value%s each (got %d and %d)",
				   d->plugin, d->C, d->C == 1 ? "" : "s", nm, ns);
		goto out;
	}
	for (int c = 0; c < d->C; c++) {
		char *end;
		double m = strtod(mv[c], &end), s;

		if (!mv[c][0] || *end || !isfinite(m)) {
			rc = iap_error_set(err, IAP_EINVAL, "%s: option 'mean': '%s' is not a number",
					   d->plugin, mv[c]);
			goto out;
		}
		s = strtod(sv[c], &end);
		if (!sv[c][0] || *end || !isfinite(s) || s <= 0) {
			rc = iap_error_set(err, IAP_EINVAL, "%s: option 'std': '%s' is not a positive number",
					   d->plugin, sv[c]);
			goto out;
		}
		d->mean[c] = (float)m;
		d->std[c] = (float)s;
	}
out:
	ds_free_strings(mv, nm);
	ds_free_strings(sv, ns);
	return rc;
}

/*
 * The sample shape: the first decodable image of the whole list (all splits,
 * so every split of one dataset agrees) gives the native channel count and,
 * without image_size, the size.
 */
static int probe_shape(struct ds *d, struct iap_error *err)
{
	struct iap_tensor t = { 0 };
	int rc = IAP_EFORMAT;

	for (int64_t i = 0; i < d->n; i++) {
		rc = decode(d, i, d->want_channels, &t, err);
		if (rc == IAP_OK) {
			d->C = (int)t.shape[0];
			d->H = d->image_size ? d->image_size : (int)t.shape[1];
			d->W = d->image_size ? d->image_size : (int)t.shape[2];
			break;
		}
		if (!d->skip_bad)
			break;
	}
	iap_tensor_free(&t);
	if (rc && d->skip_bad)
		rc = iap_error_set(err, IAP_EFORMAT, "%s: none of the %lld images could be read (first: %s)",
				   d->plugin, (long long)d->n, err ? err->msg : "?");
	return rc;
}

int ds_finish(struct ds *d, enum iap_split split, struct iap_error *err)
{
	uint8_t *keep = NULL;
	float *buf = NULL;
	int rc;

	if ((int)split < 0 || split >= IAP_SPLIT_COUNT)
		return iap_error_set(err, IAP_EINVAL, "%s: unknown split %d", d->plugin, (int)split);
	if (d->n == 0)
		return iap_error_set(err, IAP_EFORMAT, "%s: no images found", d->plugin);
	for (int64_t i = 0; i < d->n; i++)
		if (d->labels[i] < 0 || d->labels[i] >= d->n_classes)
			return iap_error_set(err, IAP_EINVAL, "%s: label %d out of range (%d classes)",
					     d->plugin, d->labels[i], d->n_classes);
	if ((rc = probe_shape(d, err)) || (rc = resolve_norm(d, err)))
		return rc;

	keep = malloc((size_t)d->n + 1);
	if (!keep)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", d->plugin);
	for (int64_t i = 0; i < d->n; i++)
		keep[i] = d->splits[i] == (int8_t)split;
	compact(d, keep);

	if (d->use_cache) {
		d->cache = calloc((size_t)d->n + 1, sizeof(*d->cache));
		if (!d->cache) {
			rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", d->plugin);
			goto out;
		}
		for (int64_t i = 0; i < d->n; i++)
			atomic_init(&d->cache[i], NULL);
	}
	if (!d->skip_bad) {
		/* Cheap check now, so a missing file fails at open, not in the middle of training. */
		for (int64_t i = 0; i < d->n; i++) {
			struct stat st;

			if (!d->paths[i])
				continue;
			if (stat(d->paths[i], &st)) {
				rc = at_line(d, i, iap_error_set(err, IAP_EIO, "%s: %s", d->paths[i],
								 strerror(errno)), err);
				goto out;
			}
			if (!S_ISREG(st.st_mode)) {
				rc = at_line(d, i, iap_error_set(err, IAP_EIO, "%s: not a regular file",
								 d->paths[i]), err);
				goto out;
			}
		}
		goto out;
	}
	/* skip_bad: decode everything once; what fails is counted and dropped, the rest cached. */
	buf = malloc(sizeof(float) * sample_floats(d));
	if (!buf) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", d->plugin);
		goto out;
	}
	for (int64_t i = 0; i < d->n; i++) {
		struct iap_error e = { 0 };

		keep[i] = load_sample(d, i, buf, &e) == IAP_OK;
		if (!keep[i]) {
			if (e.code == IAP_ENOMEM) {
				rc = iap_error_set(err, IAP_ENOMEM, "%s", e.msg);
				goto out;
			}
			if (!d->n_skipped++)
				memcpy(d->first_skip, e.msg, sizeof(d->first_skip));
		} else if (d->cache) {
			cache_store(d, i, buf);
		}
	}
	compact(d, keep);
out:
	free(buf);
	free(keep);
	return rc;
}

/* ---- CSV with another delimiter ---------------------------------------------------------- */

/*
 * Rewrite a delim-separated file as RFC 4180 CSV, line for line (so the CSV
 * reader's line numbers stay right): unquoted fields are quoted, quoted ones
 * copied, delimiters outside quotes become commas.
 */
static char *rewrite_csv(const char *in, size_t len, char delim, size_t *out_len)
{
	char *out = malloc(3 * len + 1), *o = out;
	size_t i = 0;

	if (!out)
		return NULL;
	while (i < len) {
		if (in[i] == '\n' || in[i] == '\r') {  /* empty line or line end */
			*o++ = in[i++];
			continue;
		}
		for (;;) {  /* one field */
			if (i < len && in[i] == '"') {
				*o++ = in[i++];
				while (i < len) {
					if (in[i] == '"' && i + 1 < len && in[i + 1] == '"') {
						*o++ = in[i++];
						*o++ = in[i++];
					} else if (in[i] == '"') {
						*o++ = in[i++];
						break;
					} else {
						*o++ = in[i++];
					}
				}
				while (i < len && in[i] != delim && in[i] != '\n' && in[i] != '\r')
					*o++ = in[i++];  /* the CSV reader reports the stray text */
			} else {
				*o++ = '"';
				while (i < len && in[i] != delim && in[i] != '\n' && in[i] != '\r') {
					if (in[i] == '"')
						*o++ = '"';
					*o++ = in[i++];
				}
				*o++ = '"';
			}
			if (i < len && in[i] == delim) {
				*o++ = ',';
				i++;
				continue;
			}
			break;
		}
	}
	*o = 0;
	*out_len = (size_t)(o - out);
	return out;
}

int ds_csv_open(const char *path, char delim, struct iap_csv **out, struct iap_error *err)
{
	FILE *f;
	char *buf = NULL, *conv = NULL;
	size_t len = 0, cap = 0, conv_len, eol, bom;
	int rc;

	if (delim == ',')
		return iap_csv_open(path, out, err);
	f = fopen(path, "rb");
	if (!f)
		return iap_error_set(err, IAP_EIO, "%s: %s", path, strerror(errno));
	for (;;) {
		size_t got;

		if (len == cap) {
			char *nb;

			cap = cap ? cap * 2 : 65536;
			if (cap > IAP_CSV_MAX_FILE + 1 || !(nb = realloc(buf, cap))) {
				rc = iap_error_set(err, IAP_ENOMEM, "%s: file too large or out of memory", path);
				goto out;
			}
			buf = nb;
		}
		got = fread(buf + len, 1, cap - len, f);
		len += got;
		if (got == 0)
			break;
	}
	if (ferror(f)) {
		rc = iap_error_set(err, IAP_EIO, "%s: read error", path);
		goto out;
	}
	if (delim == 0) {
		/* auto: the header line decides (a ';' or a tab and no comma) */
		int commas = 0, semis = 0, tabs = 0;

		for (eol = 0; eol < len && buf[eol] != '\n'; eol++) {
			commas += buf[eol] == ',';
			semis += buf[eol] == ';';
			tabs += buf[eol] == '\t';
		}
		delim = commas || (!semis && !tabs) ? ',' : semis >= tabs ? ';' : '\t';
	}
	if (delim == ',') {
		rc = iap_csv_open_mem(buf, len, path, out, err);
		goto out;
	}
	/* a UTF-8 byte order mark would end up inside the first quoted header */
	bom = len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3) ? 3 : 0;
	conv = rewrite_csv(buf + bom, len - bom, delim, &conv_len);
	if (!conv) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	rc = iap_csv_open_mem(conv, conv_len, path, out, err);
out:
	fclose(f);
	free(buf);
	free(conv);
	return rc;
}
