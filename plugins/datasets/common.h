/*
 * Shared machinery of the dataset plugins: the sample list every plugin
 * builds at open time (one entry per image of ALL splits, each tagged with
 * its split), the seeded stratified split that carves val/test out of train
 * (by patient when patient ids are known), the options every image dataset
 * takes, and the load path (decode → resize → normalise → cache).
 *
 * A plugin's open() fills a struct ds with ds_add(), assigns splits, then
 * calls ds_finish(), which probes the sample shape, keeps the requested split,
 * checks the files, and sets up the cache. close/count/info/load are common.
 */
#ifndef IAP_DATASETS_COMMON_H
#define IAP_DATASETS_COMMON_H

#include <stdatomic.h>
#include <stdint.h>

#include <iaprune/error.h>
#include <iaprune/image.h>
#include <iaprune/plugin.h>
#include <iaprune/tensor.h>

/* The options every image dataset accepts (entries of an iap_option array). */
#define DS_IMAGE_OPTIONS \
	{ .name = "image_size", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 4096, \
	  .help = "square side to resize to (antialiased bilinear); 0 keeps the native size" }, \
	{ .name = "channels", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 3, \
	  .help = "0: native (1 for grayscale sources, 3 for colour); 1 or 3 converts" }, \
	{ .name = "normalize", .type = IAP_OPT_ENUM, .def = "imagenet", .choices = ds_norm_choices, \
	  .help = "imagenet (3 channels: ImageNet mean/std; 1 channel: mean 0.5, std 0.5), none, or custom" }, \
	{ .name = "mean", .type = IAP_OPT_STRING, .def = "", \
	  .help = "normalize custom: comma-separated per-channel means, e.g. 0.5 or 0.485,0.456,0.406" }, \
	{ .name = "std", .type = IAP_OPT_STRING, .def = "", \
	  .help = "normalize custom: comma-separated per-channel standard deviations" }, \
	{ .name = "skip_bad", .type = IAP_OPT_BOOL, .def = "false", \
	  .help = "decode every image at open and drop (and count) missing or corrupt ones instead of failing" }, \
	{ .name = "cache", .type = IAP_OPT_BOOL, .def = "true", \
	  .help = "keep decoded, resized, normalised samples in memory after their first load" }

/* Options of the plugins that carve val/test out of train themselves. */
#define DS_SPLIT_OPTIONS(val_def, test_def) \
	{ .name = "val_fraction", .type = IAP_OPT_FLOAT, .def = val_def, .has_range = 1, .min = 0, .max = 0.9, \
	  .help = "fraction of each class (of its patients when known) carved out of train for val" }, \
	{ .name = "test_fraction", .type = IAP_OPT_FLOAT, .def = test_def, .has_range = 1, .min = 0, .max = 0.9, \
	  .help = "fraction of each class (of its patients when known) carved out of train for test" }, \
	{ .name = "seed", .type = IAP_OPT_INT, .def = "0", .has_range = 1, .min = 0, .max = 2147483647, \
	  .help = "seed of the stratified split" }

extern const char *const ds_norm_choices[];

struct ds;

/* Decode sample i as [channels, h, w] floats in [0, 1] into out (channels 0 = native). */
typedef int (*ds_decode_fn)(struct ds *d, int64_t i, int channels, struct iap_tensor *out,
			    struct iap_error *err);

/* Per-call decode scratch; a fixed pool taken with an atomic flag, so loads never lock. */
#define DS_SCRATCH_SLOTS 64
struct ds_scratch {
	atomic_flag busy;
	struct iap_tensor img;
	struct iap_resizer rs;
};

/* The `normalize` choices, in the order of ds_norm_choices (common.c checks). */
enum ds_norm { DS_NORM_IMAGENET = 0, DS_NORM_NONE, DS_NORM_CUSTOM, DS_NORM_COUNT };

struct ds {
	const char *plugin;         /* "imagefolder", ... (messages) */

	/* Samples (all splits while opening; the requested one after ds_finish). */
	int64_t n, cap;
	char **paths;               /* one file each, or NULL for in-memory sources */
	int *labels;
	int8_t *splits;             /* enum iap_split while opening */
	char **groups;              /* patient ids while opening (NULL entries: none) */
	long *lines;                /* manifest line of each sample (0: not from a manifest) */
	int64_t *src_index;         /* index into the plugin's own source (in-memory sources) */
	char *list_name;            /* manifest file, for "file:line" messages */

	int n_classes;
	char **class_names;         /* n_classes strings, or NULL */

	/* Options. */
	int image_size, want_channels, skip_bad, use_cache;
	enum ds_norm norm;
	const char *mean_text, *std_text;
	float mean[3], std[3];

	/* Sample shape, fixed by the first decodable image. */
	int C, H, W;

	ds_decode_fn decode;        /* NULL: iap_image_load(paths[i]) */
	void *src;                  /* the plugin's own data (medmnist arrays) */
	void (*src_free)(void *src);

	_Atomic(float *) *cache;    /* [n] once ds_finish ran with cache on */
	struct ds_scratch slots[DS_SCRATCH_SLOTS];

	int64_t n_skipped;          /* skip_bad: samples dropped at open */
	char first_skip[IAP_ERROR_MSG_MAX];
};

/* A zeroed dataset for plugin `plugin` with the common options read from opts. */
int ds_new(const char *plugin, const struct iap_opts *opts, struct ds **out, struct iap_error *err);

/* Append a sample (path copied; group may be NULL). */
int ds_add(struct ds *d, const char *path, int label, int split, const char *group, long line,
	   struct iap_error *err);

/* Take ownership of a sorted, de-duplicated list of class names. */
void ds_set_classes(struct ds *d, char **names, int n);

/*
 * Seeded stratified split: samples currently in split `from` go to val and
 * test by the given fractions of each class. With patient ids the unit is
 * the patient (a patient's images stay together; the patient's class is its
 * first image's), else the image. Counts per class: round(fraction * units).
 */
int ds_carve(struct ds *d, int from, double val_fraction, double test_fraction, uint64_t seed,
	     struct iap_error *err);

/* Read val_fraction, test_fraction, seed from opts and carve from train. */
int ds_carve_opts(struct ds *d, const struct iap_opts *opts, int carve_val, int carve_test,
		  struct iap_error *err);

/* Fail on a path listed twice ("file:line: duplicate path ..."). */
int ds_check_duplicates(struct ds *d, struct iap_error *err);

/* Keep `split`, fix the shape, check or validate the files, set up the cache. */
int ds_finish(struct ds *d, enum iap_split split, struct iap_error *err);

/* "dir/name", or name itself when it is absolute; NULL when out of memory. */
char *ds_join(const char *dir, const char *name);
/* The folder part of path ("." when there is none). */
char *ds_dirname(const char *path);
/* 1 when path is a directory / regular file. */
int ds_is_dir(const char *path);
int ds_is_file(const char *path);

/* Split "a,b,c" into strings (trimmed); *n gets the count. */
int ds_split_list(const char *text, char ***out, int *n, struct iap_error *err);
void ds_free_strings(char **s, int n);

/* Sort names (byte order) and drop repeats; returns the new count. */
int ds_sort_unique(char **names, int n);
/* Index of name in sorted names, or -1. */
int ds_find_name(char *const *names, int n, const char *name);

/* Folder datasets: imagefolder, kvasir, cpn (folder.c). expected: class names the layout must have. */
int ds_open_folder(const char *plugin, const struct iap_opts *opts, const char *root,
		   const char *const *expected, enum iap_split split, void **state,
		   struct iap_error *err);

/* Open a CSV whose delimiter may be ';' or a tab (rewritten to RFC 4180 first). */
struct iap_csv;
int ds_csv_open(const char *path, char delim, struct iap_csv **out, struct iap_error *err);

/* The common vtable entries. */
void ds_close(void *state);
int64_t ds_count(void *state);
int ds_info(void *state, struct iap_dataset_info *info, struct iap_error *err);
int ds_load(void *state, int64_t i, float *image, int *label, struct iap_error *err);
/* Sample i decoded with the dataset's channel count, at its own size, in [0, 1] (no resize, no normalisation). */
int ds_load_original(void *state, int64_t i, struct iap_tensor *image, struct iap_error *err);

/*
 * Exported beside the descriptor (the build keeps '^iap_plugin_'): how many
 * samples skip_bad dropped when `state` was opened, and the first reason.
 * The ABI has no warning channel yet; the host can dlsym this.
 */
IAP_PLUGIN_EXPORT int64_t iap_plugin_dataset_skipped(void *state, const char **first);

#define DS_DEFINE_OPS(ops_name, open_fn) \
	static const struct iap_dataset_ops ops_name = { \
		.size = sizeof(struct iap_dataset_ops), \
		.open = open_fn, \
		.close = ds_close, \
		.count = ds_count, \
		.info = ds_info, \
		.load = ds_load, \
		.load_original = ds_load_original, \
	};

#endif
