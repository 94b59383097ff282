/*
 * The dataset plugins loaded from the build tree, on small synthetic trees
 * laid out like each real dataset (PNG / JPEG written here with libpng and
 * libjpeg) and on the bundled data/breastmnist.npz: counts per split, class
 * order, labels, shapes after resizing, normalised values, the cache (a
 * deleted file still loads), skip_bad counting, patient grouping, and the
 * exact error messages.
 */
#include "config.h"

#include <dlfcn.h>
#include <errno.h>
#include <ftw.h>
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
#include <jpeglib.h>
#include <png.h>

#include <iaprune/image.h>
#include <iaprune/npz.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#ifndef IAP_DATASET_PLUGIN_DIR
#error "IAP_DATASET_PLUGIN_DIR must name the build tree's plugins/datasets/.libs"
#endif

static struct iap_registry *reg;
static char tmp[256];

/* ---- files -------------------------------------------------------------------------- */

static char *pathf(const char *fmt, ...)
{
	static char buf[4][1200];
	static int k;
	char rel[900];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(rel, sizeof(rel), fmt, ap);
	va_end(ap);
	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", tmp, rel);
	return buf[k];
}

/* "root=<tmp>/rel" and friends (rotating buffers, so several fit in one call). */
static char *rootopt(const char *key, const char *rel)
{
	static char buf[8][1100];
	static int k;

	k = (k + 1) % 8;
	snprintf(buf[k], sizeof(buf[k]), "%s=%s/%s", key, tmp, rel);
	return buf[k];
}

static void mkdirs(const char *path)
{
	char p[1024];

	snprintf(p, sizeof(p), "%s", path);
	for (char *s = p + 1; *s; s++) {
		if (*s == '/') {
			*s = 0;
			mkdir(p, 0755);
			*s = '/';
		}
	}
}

static void write_text(const char *path, const char *text)
{
	FILE *f;

	mkdirs(path);
	f = fopen(path, "wb");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

/* An 8-bit PNG (gray or RGB) filled with one value per channel. */
static void write_png(const char *path, int w, int h, int comps, const int *val)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	unsigned char row[3 * 64];
	FILE *fp;

	mkdirs(path);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_true(w <= 64);
	if (setjmp(png_jmpbuf(png)))
		fail_msg("libpng failed writing %s", path);
	png_init_io(png, fp);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8,
		     comps == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int x = 0; x < w; x++)
		for (int c = 0; c < comps; c++)
			row[x * comps + c] = (unsigned char)val[c];
	for (int y = 0; y < h; y++)
		png_write_row(png, row);
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	fclose(fp);
}

static void write_gray(const char *path, int side, int v)
{
	write_png(path, side, side, 1, &v);
}

static void write_jpeg(const char *path, int w, int h, int r, int g, int b)
{
	struct jpeg_compress_struct ci;
	struct jpeg_error_mgr jerr;
	unsigned char row[3 * 64];
	JSAMPROW rp = row;
	FILE *fp;

	mkdirs(path);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	for (int x = 0; x < w; x++) {
		row[3 * x] = (unsigned char)r;
		row[3 * x + 1] = (unsigned char)g;
		row[3 * x + 2] = (unsigned char)b;
	}
	ci.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&ci);
	jpeg_stdio_dest(&ci, fp);
	ci.image_width = (JDIMENSION)w;
	ci.image_height = (JDIMENSION)h;
	ci.input_components = 3;
	ci.in_color_space = JCS_RGB;
	jpeg_set_defaults(&ci);
	jpeg_set_quality(&ci, 95, TRUE);
	jpeg_start_compress(&ci, TRUE);
	for (int y = 0; y < h; y++)
		jpeg_write_scanlines(&ci, &rp, 1);
	jpeg_finish_compress(&ci);
	jpeg_destroy_compress(&ci);
	fclose(fp);
}

/* Keep the first `keep` bytes of a file. */
static void truncate_file(const char *path, long keep)
{
	assert_int_equal(truncate(path, keep), 0);
}

/* ---- plugins -------------------------------------------------------------------------- */

struct opened {
	const struct iap_plugin *p;
	void *state;
	struct iap_dataset_info info;
	int64_t n;
};

/* Open plugin `name`'s split with "key=value" options (NULL-terminated); returns the status. */
static int try_open(const char *name, enum iap_split split, struct opened *o, struct iap_error *err,
		    ...)
{
	struct iap_opts *opts = NULL;
	const char *kv;
	va_list ap;
	int rc;

	memset(o, 0, sizeof(*o));
	o->p = iap_registry_find(reg, IAP_PLUGIN_DATASET, name);
	assert_non_null(o->p);
	assert_int_equal(iap_opts_defaults(o->p->desc->options, &opts, err), IAP_OK);
	va_start(ap, err);
	while ((kv = va_arg(ap, const char *))) {
		char key[64];
		const char *eq = strchr(kv, '=');

		assert_non_null(eq);
		snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
		rc = iap_opts_set(opts, name, key, eq + 1, err);
		assert_int_equal(rc, IAP_OK);
	}
	va_end(ap);
	rc = o->p->desc->ops.dataset->open(opts, split, &o->state, err);
	iap_opts_free(opts);
	if (rc == IAP_OK) {
		o->n = o->p->desc->ops.dataset->count(o->state);
		assert_int_equal(o->p->desc->ops.dataset->info(o->state, &o->info, err), IAP_OK);
	}
	return rc;
}

#define OPEN(o, name, split, ...) \
	do { \
		struct iap_error e_ = { 0 }; \
		int rc_ = try_open(name, split, o, &e_, __VA_ARGS__, NULL); \
		if (rc_) \
			fail_msg("open %s: %s", name, e_.msg); \
	} while (0)

/* Open must fail with exactly this message. */
#define OPEN_FAILS(want_, name, split, ...) \
	do { \
		struct iap_error e_ = { 0 }; \
		struct opened o_; \
		assert_int_not_equal(try_open(name, split, &o_, &e_, __VA_ARGS__, NULL), IAP_OK); \
		assert_string_equal(e_.msg, want_); \
	} while (0)

static void done(struct opened *o)
{
	o->p->desc->ops.dataset->close(o->state);
}

static int load(struct opened *o, int64_t i, float *img, int *label, struct iap_error *err)
{
	return o->p->desc->ops.dataset->load(o->state, i, img, label, err);
}

static int64_t skipped(struct opened *o, const char **first)
{
	void *h = dlopen(o->p->path, RTLD_NOW | RTLD_NOLOAD);
	int64_t (*fn)(void *, const char **);

	assert_non_null(h);
	*(void **)&fn = dlsym(h, "iap_plugin_dataset_skipped");
	assert_non_null(fn);
	dlclose(h);
	return fn(o->state, first);
}

/* Load every sample (normalize none, 1 channel): the first pixel * 255 identifies the image. */
static void pixel_ids(struct opened *o, int *ids, int *labels)
{
	float img[3 * 64 * 64];
	struct iap_error e = { 0 };

	for (int64_t i = 0; i < o->n; i++) {
		if (load(o, i, img, &labels[i], &e))
			fail_msg("load %lld: %s", (long long)i, e.msg);
		ids[i] = (int)lroundf(img[0] * 255);
	}
}

/* ---- imagefolder ------------------------------------------------------------------------- */

/* root/{cat,dog,Bird}/imgKK.png, 10 per class, 4x4 gray of value 20*class_index + k + 1. */
static void make_flat_tree(const char *root)
{
	const char *cls[3] = { "Bird", "cat", "dog" };

	for (int c = 0; c < 3; c++)
		for (int k = 0; k < 10; k++)
			write_gray(pathf("%s/%s/img%02d.png", root, cls[c], k), 4, 20 * c + k + 1);
}

static void test_imagefolder_flat_split(void **state)
{
	struct opened o;
	int seen[61] = { 0 }, ids[32], labels[32], again[32];
	/* per class: test round(0.2 * 10) = 2, val round(0.1 * 10) = 1, train 7 */
	const int expect[3] = { 21, 3, 6 };

	(void)state;
	make_flat_tree("flat");
	for (int s = 0; s < 3; s++) {
		int per_class[3] = { 0 };

		OPEN(&o, "imagefolder", (enum iap_split)s, rootopt("root", "flat"), "normalize=none");
		assert_int_equal(o.n, expect[s]);
		assert_int_equal(o.info.n_classes, 3);
		/* byte order: upper case first, as torchvision sorts */
		assert_string_equal(o.info.class_names[0], "Bird");
		assert_string_equal(o.info.class_names[1], "cat");
		assert_string_equal(o.info.class_names[2], "dog");
		assert_int_equal(o.info.in_ndim, 3);
		assert_int_equal(o.info.in_shape[0], 1);
		assert_int_equal(o.info.in_shape[1], 4);
		assert_int_equal(o.info.in_shape[2], 4);
		pixel_ids(&o, ids, labels);
		for (int64_t i = 0; i < o.n; i++) {
			assert_int_equal(labels[i], (ids[i] - 1) / 20);  /* label matches the folder */
			assert_int_equal(seen[ids[i]]++, 0);             /* splits are disjoint */
			per_class[labels[i]]++;
		}
		for (int c = 0; c < 3; c++)
			assert_int_equal(per_class[c], expect[s] / 3);  /* stratified */
		done(&o);
	}
	for (int c = 0; c < 3; c++)
		for (int k = 0; k < 10; k++)
			assert_int_equal(seen[20 * c + k + 1], 1);  /* every image somewhere */

	/* the same seed gives the same split */
	OPEN(&o, "imagefolder", IAP_SPLIT_TEST, rootopt("root", "flat"), "normalize=none");
	pixel_ids(&o, ids, labels);
	done(&o);
	OPEN(&o, "imagefolder", IAP_SPLIT_TEST, rootopt("root", "flat"), "normalize=none", "seed=0");
	pixel_ids(&o, again, labels);
	done(&o);
	assert_memory_equal(ids, again, sizeof(int) * 6);

	/* default normalisation of 1 channel: mean 0.5, std 0.5 */
	{
		float img[16];
		int label;
		struct iap_error e = { 0 };

		OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "flat"));
		assert_int_equal(load(&o, 0, img, &label, &e), IAP_OK);
		/* train keeps file order: the first Bird image not carved out */
		for (int i = 0; i < 16; i++)
			assert_float_equal(img[i], img[0], 0);
		assert_int_equal(label, 0);
		{
			int v = (int)lroundf((img[0] * 0.5f + 0.5f) * 255);

			assert_true(v >= 1 && v <= 10);
			assert_float_equal(img[0], (v / 255.0f - 0.5f) / 0.5f, 1e-6);
		}
		/* custom: (x - 0.25) / 2 */
		done(&o);
		OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "flat"), "normalize=custom",
		     "mean=0.25", "std=2");
		assert_int_equal(load(&o, 0, img, &label, &e), IAP_OK);
		{
			int v = (int)lroundf((img[0] * 2 + 0.25f) * 255);

			assert_true(v >= 1 && v <= 10);
			assert_float_equal(img[0], (v / 255.0f - 0.25f) / 2, 1e-6);
		}
		done(&o);
	}
}

/* train/ and test/ folders (no val/: carved from train), RGB resized to 4x4, gray → 3 channels. */
static void test_imagefolder_split_folders_resize(void **state)
{
	struct opened o;
	const int red[3] = { 200, 100, 50 };
	float img[3 * 16];
	int label;
	struct iap_error e = { 0 };

	(void)state;
	for (int k = 0; k < 10; k++) {
		write_png(pathf("sf/train/a/%d.png", k), 8, 8, 3, red);
		write_gray(pathf("sf/train/b/%d.png", k), 8, 60);
	}
	write_png(pathf("sf/test/a/x.png"), 8, 8, 3, red);
	write_gray(pathf("sf/test/b/y.png"), 8, 60);
	write_gray(pathf("sf/test/c/z.png"), 8, 90);  /* a class only in test */

	OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "sf"), "image_size=4", "channels=3");
	assert_int_equal(o.n, 18);  /* 2 x (10 - round(0.1 * 10)) */
	assert_int_equal(o.info.n_classes, 3);
	assert_int_equal(o.info.in_shape[0], 3);
	assert_int_equal(o.info.in_shape[1], 4);
	assert_int_equal(o.info.in_shape[2], 4);
	done(&o);
	OPEN(&o, "imagefolder", IAP_SPLIT_VAL, rootopt("root", "sf"), "image_size=4", "channels=3");
	assert_int_equal(o.n, 2);
	done(&o);
	OPEN(&o, "imagefolder", IAP_SPLIT_TEST, rootopt("root", "sf"), "image_size=4", "channels=3");
	assert_int_equal(o.n, 3);
	/* a flat image stays flat through the resize; ImageNet statistics per channel */
	assert_int_equal(load(&o, 0, img, &label, &e), IAP_OK);
	assert_int_equal(label, 0);
	for (int c = 0; c < 3; c++)
		for (int i = 0; i < 16; i++)
			assert_float_equal(img[c * 16 + i],
					   (red[c] / 255.0f - iap_imagenet_mean[c]) / iap_imagenet_std[c], 1e-5);
	assert_int_equal(load(&o, 1, img, &label, &e), IAP_OK);  /* gray replicated */
	assert_int_equal(label, 1);
	for (int c = 0; c < 3; c++)
		assert_float_equal(img[c * 16 + 5], (60 / 255.0f - iap_imagenet_mean[c]) / iap_imagenet_std[c],
				   1e-5);
	assert_int_equal(load(&o, 2, NULL, &label, &e), IAP_OK);  /* label only */
	assert_int_equal(label, 2);
	done(&o);
}

/* The second load comes from memory: deleting the file after the first load does not matter. */
static void test_cache(void **state)
{
	struct opened o;
	float a[16], b[16];
	int la, lb;
	struct iap_error e = { 0 };

	(void)state;
	write_gray(pathf("cache/x/1.png"), 4, 11);
	write_gray(pathf("cache/x/2.png"), 4, 22);
	write_gray(pathf("cache/y/3.png"), 4, 33);
	OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "cache"), "val_fraction=0",
	     "test_fraction=0");
	assert_int_equal(o.n, 3);
	assert_int_equal(load(&o, 1, a, &la, &e), IAP_OK);
	assert_int_equal(unlink(pathf("cache/x/2.png")), 0);
	memset(b, 0, sizeof(b));
	assert_int_equal(load(&o, 1, b, &lb, &e), IAP_OK);
	assert_memory_equal(a, b, sizeof(a));
	assert_int_equal(la, lb);
	done(&o);

	/* without the cache the file is read again */
	OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "cache"), "val_fraction=0",
	     "test_fraction=0", "cache=false");
	assert_int_equal(load(&o, 0, a, &la, &e), IAP_OK);
	assert_int_equal(unlink(pathf("cache/x/1.png")), 0);
	assert_int_not_equal(load(&o, 0, b, &lb, &e), IAP_OK);
	{
		char msg[1200];

		snprintf(msg, sizeof(msg), "%s: No such file or directory", pathf("cache/x/1.png"));
		assert_string_equal(e.msg, msg);
	}
	done(&o);
}

/* skip_bad: a corrupt PNG and a truncated JPEG are counted and dropped; otherwise a clear error. */
static void test_skip_bad(void **state)
{
	struct opened o;
	const char *first;
	float img[3 * 64];
	int label;
	struct iap_error e = { 0 };
	char msg[1200];

	(void)state;
	for (int k = 0; k < 4; k++)
		write_jpeg(pathf("bad/a/%d.jpg", k), 8, 8, 10, 20, 30);
	write_gray(pathf("bad/b/0.png"), 8, 5);
	write_gray(pathf("bad/b/1.png"), 8, 6);
	write_text(pathf("bad/b/2.png"), "\x89PNG\r\n\x1a\nthis is not a PNG at all, just text......");
	truncate_file(pathf("bad/a/2.jpg"), 200);

	OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "bad"), "val_fraction=0",
	     "test_fraction=0", "skip_bad=true", "channels=3");
	assert_int_equal(o.n, 5);
	assert_int_equal(skipped(&o, &first), 2);
	assert_non_null(first);
	assert_non_null(strstr(first, "bad/a/2.jpg: truncated JPEG"));
	done(&o);

	/* without skip_bad, open only checks the files exist; the load names the file */
	OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "bad"), "val_fraction=0",
	     "test_fraction=0", "channels=3");
	assert_int_equal(o.n, 7);
	assert_int_equal(skipped(&o, &first), 0);
	assert_int_not_equal(load(&o, 2, img, &label, &e), IAP_OK);
	snprintf(msg, sizeof(msg), "%s: truncated JPEG", pathf("bad/a/2.jpg"));
	assert_memory_equal(e.msg, msg, strlen(msg));
	assert_int_not_equal(load(&o, 6, img, &label, &e), IAP_OK);
	snprintf(msg, sizeof(msg), "%s: corrupt PNG", pathf("bad/b/2.png"));
	assert_memory_equal(e.msg, msg, strlen(msg));
	done(&o);
}

static void test_folder_errors(void **state)
{
	char msg[1200];

	(void)state;
	snprintf(msg, sizeof(msg), "%s: No such file or directory", pathf("nowhere"));
	OPEN_FAILS(msg, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "nowhere"));

	write_gray(pathf("empty/a/1.png"), 4, 1);
	mkdirs(pathf("empty/b/"));
	snprintf(msg, sizeof(msg), "%s: empty class folder (no .png, .jpg or .jpeg images)",
		 pathf("empty/b"));
	OPEN_FAILS(msg, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "empty"));

	write_gray(pathf("sizes/a/1.png"), 4, 1);
	write_gray(pathf("sizes/a/2.png"), 5, 1);
	{
		struct opened o;
		float img[64];
		int label;
		struct iap_error e = { 0 };

		OPEN(&o, "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "sizes"), "val_fraction=0",
		     "test_fraction=0");
		assert_int_not_equal(load(&o, 1, img, &label, &e), IAP_OK);
		snprintf(msg, sizeof(msg),
			 "%s: image is 5x5, the dataset's first image is 4x4 (set image_size to resize)",
			 pathf("sizes/a/2.png"));
		assert_string_equal(e.msg, msg);
		done(&o);
	}
	OPEN_FAILS("imagefolder: option 'channels': must be 0, 1 or 3, got 2", "imagefolder",
		   IAP_SPLIT_TRAIN, rootopt("root", "sizes"), "channels=2");
	OPEN_FAILS("imagefolder: normalize custom: mean and std need 1 value each (got 2 and 1)",
		   "imagefolder", IAP_SPLIT_TRAIN, rootopt("root", "sizes"), "normalize=custom",
		   "mean=0.1,0.2", "std=1");
}

/* ---- csv ------------------------------------------------------------------------------------ */

static void test_csv(void **state)
{
	struct opened o;
	int ids[32], labels[32], seen[64] = { 0 };
	char text[4096] = "path,label,patient\n", msg[1200];

	(void)state;
	/* 8 patients, 3 images each; patient p has class "cls<p % 2>", images valued 3p + k + 1 */
	for (int p = 0; p < 8; p++)
		for (int k = 0; k < 3; k++) {
			char line[128];

			write_gray(pathf("man/img/p%d_%d.png", p, k), 4, 3 * p + k + 1);
			snprintf(line, sizeof(line), "img/p%d_%d.png,%s,P%d\n", p, k, p % 2 ? "sick" : "healthy",
				 p);
			strcat(text, line);
		}
	write_text(pathf("man/list.csv"), text);
	/* per class 4 patients: test round(0.25 * 4) = 1, val round(0.25 * 4) = 1, train 2 */
	for (int s = 0; s < 3; s++) {
		OPEN(&o, "csv", (enum iap_split)s, rootopt("manifest", "man/list.csv"), "normalize=none",
		     "val_fraction=0.25", "test_fraction=0.25");
		assert_int_equal(o.n, s == 0 ? 12 : 6);
		assert_string_equal(o.info.class_names[0], "healthy");
		assert_string_equal(o.info.class_names[1], "sick");
		pixel_ids(&o, ids, labels);
		for (int64_t i = 0; i < o.n; i++) {
			int p = (ids[i] - 1) / 3;

			assert_int_equal(labels[i], p % 2);
			seen[p] |= 1 << s;  /* the splits each patient appears in */
		}
		done(&o);
	}
	for (int p = 0; p < 8; p++)  /* exactly one split per patient */
		assert_true(seen[p] == 1 || seen[p] == 2 || seen[p] == 4);

	/* a split column, integer labels, semicolons */
	write_text(pathf("man/split.csv"), "file;y;split\nimg/p0_0.png;1;train\nimg/p0_1.png;0;test\n"
					   "img/p0_2.png;1;valid\n");
	OPEN(&o, "csv", IAP_SPLIT_VAL, rootopt("manifest", "man/split.csv"), "path_column=file",
	     "label_column=y", "class_names=no,yes");
	assert_int_equal(o.n, 1);
	assert_int_equal(o.info.n_classes, 2);
	assert_string_equal(o.info.class_names[1], "yes");
	done(&o);

	snprintf(msg, sizeof(msg), "%s:2: column 'split': unknown split 'training' (train, val or test)",
		 pathf("man/bad_split.csv"));
	write_text(pathf("man/bad_split.csv"), "path,label,split\nimg/p0_0.png,a,training\n");
	OPEN_FAILS(msg, "csv", IAP_SPLIT_TRAIN, rootopt("manifest", "man/bad_split.csv"));

	snprintf(msg, sizeof(msg), "%s:4: duplicate path '%s' (also on line 2)", pathf("man/dup.csv"),
		 pathf("man/img/p0_0.png"));
	write_text(pathf("man/dup.csv"), "path,label\nimg/p0_0.png,a\nimg/p0_1.png,b\nimg/p0_0.png,b\n");
	OPEN_FAILS(msg, "csv", IAP_SPLIT_TRAIN, rootopt("manifest", "man/dup.csv"));

	snprintf(msg, sizeof(msg), "%s:3: %s: No such file or directory", pathf("man/missing.csv"),
		 pathf("man/img/gone.png"));
	write_text(pathf("man/missing.csv"), "path,label,split\nimg/p0_0.png,a,train\nimg/gone.png,b,train\n");
	OPEN_FAILS(msg, "csv", IAP_SPLIT_TRAIN, rootopt("manifest", "man/missing.csv"));

	write_text(pathf("man/nolabel.csv"), "path,class\nimg/p0_0.png,a\n");
	{
		struct iap_error e = { 0 };

		assert_int_not_equal(try_open("csv", IAP_SPLIT_TRAIN, &o, &e,
					      rootopt("manifest", "man/nolabel.csv"), NULL), IAP_OK);
		assert_non_null(strstr(e.msg, "nolabel.csv"));
		assert_non_null(strstr(e.msg, "'label'"));
	}
}

/* ---- medmnist -------------------------------------------------------------------------------- */

static void test_medmnist(void **state)
{
	const char *src = getenv("IAP_TEST_SRCDIR");
	char path[1100];
	const int64_t expect[3] = { 546, 78, 156 };
	struct opened o;
	struct iap_npz *npz;
	struct iap_npy raw = { 0 };
	struct iap_error e = { 0 };
	float img[3 * 32 * 32];
	int label;

	(void)state;
	if (!src)
		src = "..";
	snprintf(path, sizeof(path), "path=%s/data/breastmnist.npz", src);
	for (int s = 0; s < 3; s++) {
		OPEN(&o, "medmnist", (enum iap_split)s, path, "class_names=malignant,benign");
		assert_int_equal(o.n, expect[s]);
		assert_int_equal(o.info.n_classes, 2);
		assert_string_equal(o.info.class_names[0], "malignant");
		assert_int_equal(o.info.in_shape[0], 1);
		assert_int_equal(o.info.in_shape[1], 28);
		assert_int_equal(o.info.in_shape[2], 28);
		done(&o);
	}
	/* values: the raw uint8 / 255, normalised with mean 0.5, std 0.5 */
	assert_int_equal(iap_npz_open(path + 5, &npz, &e), IAP_OK);
	assert_int_equal(iap_npz_read(npz, "test_images", IAP_NPY_U1, &raw, &e), IAP_OK);
	OPEN(&o, "medmnist", IAP_SPLIT_TEST, path);
	assert_int_equal(load(&o, 3, img, &label, &e), IAP_OK);
	for (int i = 0; i < 28 * 28; i++)
		assert_float_equal(img[i], (((uint8_t *)raw.data)[3 * 784 + i] / 255.0f - 0.5f) / 0.5f, 1e-6);
	done(&o);
	iap_npy_free(&raw);
	iap_npz_close(npz);

	OPEN(&o, "medmnist", IAP_SPLIT_TRAIN, path, "channels=3", "image_size=32", "normalize=none");
	assert_int_equal(o.info.in_shape[0], 3);
	assert_int_equal(o.info.in_shape[1], 32);
	assert_int_equal(o.info.in_shape[2], 32);
	assert_int_equal(load(&o, 0, img, &label, &e), IAP_OK);
	assert_memory_equal(img, img + 1024, sizeof(float) * 1024);  /* gray replicated */
	assert_true(label == 0 || label == 1);
	done(&o);
}

/* ---- presets --------------------------------------------------------------------------------- */

static void test_mura(void **state)
{
	struct opened o;
	int ids[64], labels[64], seen[64] = { 0 };
	char train[4096] = "", valid[1024] = "", studies[2048] = "";

	(void)state;
	/* 10 train patients (2 studies each: positive and negative, 2 images each), 2 valid patients */
	for (int p = 0; p < 10; p++)
		for (int st = 0; st < 2; st++)
			for (int k = 0; k < 2; k++) {
				char rel[256], line[300];

				snprintf(rel, sizeof(rel), "MURA-v1.1/train/XR_WRIST/patient%05d/study%d_%s/image%d.png",
					 p, st + 1, st ? "positive" : "negative", k + 1);
				write_gray(pathf("mura/%s", rel), 4, 4 * p + 2 * st + k + 1);
				snprintf(line, sizeof(line), "%s\n", rel);
				strcat(train, line);
				if (k == 0) {
					snprintf(line, sizeof(line), "%.*s/,%d\n", (int)(strrchr(rel, '/') - rel), rel, st);
					strcat(studies, line);
				}
			}
	for (int p = 0; p < 2; p++) {
		char rel[256], line[300];

		snprintf(rel, sizeof(rel), "MURA-v1.1/valid/XR_HAND/patient%05d/study1_positive/image1.png",
			 p + 100);
		write_gray(pathf("mura/%s", rel), 4, 50 + p);
		snprintf(line, sizeof(line), "%s\r\n", rel);
		strcat(valid, line);
	}
	write_text(pathf("mura/MURA-v1.1/train_image_paths.csv"), train);
	write_text(pathf("mura/MURA-v1.1/train_labeled_studies.csv"), studies);
	write_text(pathf("mura/MURA-v1.1/valid_image_paths.csv"), valid);

	/* the patient's class is its first image's (negative): 10 patients in class 0, val round(0.2 * 10) = 2 */
	OPEN(&o, "mura", IAP_SPLIT_VAL, rootopt("root", "mura"), "normalize=none", "val_fraction=0.2");
	assert_int_equal(o.n, 8);
	assert_string_equal(o.info.class_names[0], "normal");
	assert_string_equal(o.info.class_names[1], "abnormal");
	pixel_ids(&o, ids, labels);
	for (int64_t i = 0; i < o.n; i++) {
		assert_int_equal(labels[i], ((ids[i] - 1) % 4) / 2);  /* positive study → abnormal */
		seen[(ids[i] - 1) / 4] |= 2;
	}
	done(&o);
	OPEN(&o, "mura", IAP_SPLIT_TRAIN, rootopt("root", "mura/MURA-v1.1"), "normalize=none",
	     "val_fraction=0.2");
	assert_int_equal(o.n, 32);
	pixel_ids(&o, ids, labels);
	for (int64_t i = 0; i < o.n; i++)
		seen[(ids[i] - 1) / 4] |= 1;
	done(&o);
	for (int p = 0; p < 10; p++)  /* a patient's four images are all in train or all in val */
		assert_true(seen[p] == 1 || seen[p] == 2);
	OPEN(&o, "mura", IAP_SPLIT_TEST, rootopt("root", "mura"), "normalize=none");
	assert_int_equal(o.n, 2);
	pixel_ids(&o, ids, labels);
	assert_int_equal(ids[0], 50);
	assert_int_equal(labels[0], 1);
	done(&o);

	{
		char msg[1200];

		write_text(pathf("mura2/MURA-v1.1/train_image_paths.csv"),
			   "MURA-v1.1/train/XR_HAND/patient1/study1/image1.png\n");
		write_text(pathf("mura2/MURA-v1.1/valid_image_paths.csv"), "");
		snprintf(msg, sizeof(msg),
			 "%s:1: 'MURA-v1.1/train/XR_HAND/patient1/study1/image1.png' has no study folder ending "
			 "in _positive or _negative", pathf("mura2/MURA-v1.1/train_image_paths.csv"));
		OPEN_FAILS(msg, "mura", IAP_SPLIT_TRAIN, rootopt("root", "mura2"));
	}
}

static void test_fetal_planes(void **state)
{
	struct opened o;
	int ids[64], labels[64], seen[64] = { 0 };
	char text[4096] = "\xEF\xBB\xBFImage_name;Patient_num;Plane;Brain_plane;Operator;US_Machine;Train \r\n";
	const char *planes[3] = { "Fetal brain", "Other", "Fetal abdomen" };

	(void)state;
	/* 12 patients x 2 images; patients 0-8 train, 9-11 test; plane by patient % 3 */
	for (int p = 0; p < 12; p++)
		for (int k = 0; k < 2; k++) {
			char line[256];

			write_gray(pathf("fetal/Images/Patient%03d_Plane%d.png", p, k), 4, 2 * p + k + 1);
			snprintf(line, sizeof(line), "Patient%03d_Plane%d;%d;%s ;Not A Brain;Op. 1;Voluson E6;%d\r\n",
				 p, k, p, planes[p % 3], p < 9);
			strcat(text, line);
		}
	write_text(pathf("fetal/FETAL_PLANES_DB_data.csv"), text);
	/* per class 3 train patients: val round(0.34 * 3) = 1 patient = 2 images */
	OPEN(&o, "fetal_planes", IAP_SPLIT_VAL, rootopt("root", "fetal"), "normalize=none",
	     "val_fraction=0.34");
	assert_int_equal(o.n, 6);
	assert_int_equal(o.info.n_classes, 3);
	assert_string_equal(o.info.class_names[0], "Fetal abdomen");
	assert_string_equal(o.info.class_names[1], "Fetal brain");
	assert_string_equal(o.info.class_names[2], "Other");
	pixel_ids(&o, ids, labels);
	for (int64_t i = 0; i < o.n; i++)
		seen[(ids[i] - 1) / 2] |= 2;
	done(&o);
	OPEN(&o, "fetal_planes", IAP_SPLIT_TRAIN, rootopt("root", "fetal"), "normalize=none",
	     "val_fraction=0.34");
	assert_int_equal(o.n, 12);
	pixel_ids(&o, ids, labels);
	for (int64_t i = 0; i < o.n; i++) {
		int p = (ids[i] - 1) / 2;
		const int cls[3] = { 1, 2, 0 };  /* planes[p % 3] in sorted order */

		assert_int_equal(labels[i], cls[p % 3]);
		seen[p] |= 1;
	}
	done(&o);
	for (int p = 0; p < 9; p++)
		assert_true(seen[p] == 1 || seen[p] == 2);
	OPEN(&o, "fetal_planes", IAP_SPLIT_TEST, rootopt("root", "fetal"));
	assert_int_equal(o.n, 6);
	done(&o);

	write_text(pathf("fetal2/FETAL_PLANES_DB_data.csv"), "Image_name;Patient_num;Train\nx;1;1\n");
	{
		struct iap_error e = { 0 };

		assert_int_not_equal(try_open("fetal_planes", IAP_SPLIT_TRAIN, &o, &e,
					      rootopt("root", "fetal2"), NULL), IAP_OK);
		assert_non_null(strstr(e.msg, "FETAL_PLANES_DB_data.csv"));
		assert_non_null(strstr(e.msg, "'Plane'"));
	}
}

static void test_kvasir_cpn(void **state)
{
	static const char *const kv[8] = {
		"dyed-lifted-polyps", "dyed-resection-margins", "esophagitis", "normal-cecum",
		"normal-pylorus", "normal-z-line", "polyps", "ulcerative-colitis",
	};
	struct opened o;
	char msg[1200];

	(void)state;
	for (int c = 0; c < 8; c++)
		for (int k = 0; k < 5; k++)
			write_jpeg(pathf("kv/kvasir-dataset-v2/%s/%d.jpg", kv[c], k), 16, 12, 30 * c, 90, 200);
	/* per class: test round(0.2 * 5) = 1, val round(0.1 * 5) = 1 (half away from zero), train 3 */
	OPEN(&o, "kvasir", IAP_SPLIT_TRAIN, rootopt("root", "kv"), "image_size=8");
	assert_int_equal(o.n, 24);
	assert_int_equal(o.info.n_classes, 8);
	assert_string_equal(o.info.class_names[7], "ulcerative-colitis");
	assert_int_equal(o.info.in_shape[0], 3);
	assert_int_equal(o.info.in_shape[1], 8);
	done(&o);
	OPEN(&o, "kvasir", IAP_SPLIT_TEST, rootopt("root", "kv/kvasir-dataset-v2"));
	assert_int_equal(o.n, 8);
	assert_int_equal(o.info.in_shape[1], 12);
	assert_int_equal(o.info.in_shape[2], 16);
	done(&o);

	snprintf(msg, sizeof(msg),
		 "%s: missing class folder 'Pneumonia' (cpn expects COVID, Normal, Pneumonia)", pathf("cpn"));
	write_gray(pathf("cpn/COVID/1.png"), 4, 1);
	write_gray(pathf("cpn/Normal/1.png"), 4, 2);
	OPEN_FAILS(msg, "cpn", IAP_SPLIT_TRAIN, rootopt("root", "cpn"));
	for (int k = 0; k < 4; k++) {
		write_gray(pathf("cpn/COVID/%d.png", k), 4, 1);
		write_gray(pathf("cpn/Normal/%d.png", k), 4, 2);
		write_gray(pathf("cpn/Pneumonia/%d.png", k), 4, 3);
	}
	OPEN(&o, "cpn", IAP_SPLIT_TRAIN, rootopt("root", "cpn"), "val_fraction=0.25", "test_fraction=0.25");
	assert_int_equal(o.n, 6);
	assert_string_equal(o.info.class_names[0], "COVID");
	assert_string_equal(o.info.class_names[1], "Normal");
	assert_string_equal(o.info.class_names[2], "Pneumonia");
	done(&o);
}

/* ---- setup ------------------------------------------------------------------------------------ */

/* ---- load_original (ABI 2.1): the stored image, before resizing and normalisation ---------------------- */

/* A w x h gray PNG whose pixel (x, y) is (5x + 3y) mod 256, so a resize or a transpose shows. */
static void write_pattern_png(const char *path, int w, int h)
{
	png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
	png_infop info = png_create_info_struct(png);
	unsigned char row[256];
	FILE *fp;

	mkdirs(path);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_true(w <= 256);
	if (setjmp(png_jmpbuf(png)))
		fail_msg("libpng failed writing %s", path);
	png_init_io(png, fp);
	png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
		     PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
	png_write_info(png, info);
	for (int y = 0; y < h; y++) {
		for (int x = 0; x < w; x++)
			row[x] = (unsigned char)((5 * x + 3 * y) % 256);
		png_write_row(png, row);
	}
	png_write_end(png, NULL);
	png_destroy_write_struct(&png, &info);
	fclose(fp);
}

static int load_original(struct opened *o, int64_t i, struct iap_tensor *t, struct iap_error *err)
{
	const struct iap_dataset_ops *ops = o->p->desc->ops.dataset;

	assert_true(IAP_DATASET_OPS_HAS(ops, load_original));
	return ops->load_original(o->state, i, t, err);
}

static void test_load_original(void **state)
{
	static const char *const names[] = { "imagefolder", "csv", "medmnist", "mura", "kvasir", "fetal_planes",
					     "cpn" };
	const char *src = getenv("IAP_TEST_SRCDIR");
	char path[1100];
	struct opened o;
	struct iap_tensor t = { 0 };
	struct iap_npz *npz;
	struct iap_npy raw = { 0 };
	struct iap_error e = { 0 };

	(void)state;
	/* Every bundled dataset plugin has it (they share common.c's). */
	for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
		const struct iap_plugin *p = iap_registry_find(reg, IAP_PLUGIN_DATASET, names[k]);

		assert_non_null(p);
		assert_true(IAP_DATASET_OPS_HAS(p->desc->ops.dataset, load_original));
	}

	/* imagefolder: 48x40 PNGs, the model's input 32x32; the stored pixels come back exactly, in [0, 1]. */
	for (int k = 0; k < 2; k++) {
		write_pattern_png(pathf("orig/train/a/%d.png", k), 48, 40);
		write_pattern_png(pathf("orig/train/b/%d.png", k), 48, 40);
	}
	write_pattern_png(pathf("orig/test/a/x.png"), 48, 40);
	write_pattern_png(pathf("orig/test/b/y.png"), 48, 40);
	OPEN(&o, "imagefolder", IAP_SPLIT_TEST, rootopt("root", "orig"), "image_size=32");
	assert_int_equal(o.info.in_shape[1], 32);
	assert_int_equal(o.info.in_shape[2], 32);
	assert_int_equal(load_original(&o, 1, &t, &e), IAP_OK);
	assert_int_equal(t.ndim, 3);
	assert_int_equal(t.shape[0], 1);
	assert_int_equal(t.shape[1], 40);
	assert_int_equal(t.shape[2], 48);
	for (int y = 0; y < 40; y++)
		for (int x = 0; x < 48; x++)
			assert_float_equal(t.data[y * 48 + x], ((5 * x + 3 * y) % 256) / 255.0f, 1e-7);
	assert_int_not_equal(load_original(&o, 2, &t, &e), IAP_OK);
	assert_string_equal(e.msg, "imagefolder: sample 2 out of range (2 samples)");
	done(&o);
	/* channels=3: the dataset's channel count, gray replicated, at the stored size still */
	OPEN(&o, "imagefolder", IAP_SPLIT_TEST, rootopt("root", "orig"), "image_size=32", "channels=3");
	assert_int_equal(load_original(&o, 0, &t, &e), IAP_OK);
	assert_int_equal(t.shape[0], 3);
	assert_int_equal(t.shape[1], 40);
	assert_int_equal(t.shape[2], 48);
	assert_memory_equal(t.data, t.data + 40 * 48, sizeof(float) * 40 * 48);
	assert_float_equal(t.data[2 * 40 * 48 + 39 * 48 + 47], ((5 * 47 + 3 * 39) % 256) / 255.0f, 1e-7);
	done(&o);

	/* medmnist: the stored 28x28 uint8 / 255, though the model's input is 32x32 and normalised. */
	if (!src)
		src = "..";
	snprintf(path, sizeof(path), "path=%s/data/breastmnist.npz", src);
	assert_int_equal(iap_npz_open(path + 5, &npz, &e), IAP_OK);
	assert_int_equal(iap_npz_read(npz, "test_images", IAP_NPY_U1, &raw, &e), IAP_OK);
	OPEN(&o, "medmnist", IAP_SPLIT_TEST, path, "image_size=32");
	assert_int_equal(o.info.in_shape[1], 32);
	assert_int_equal(load_original(&o, 5, &t, &e), IAP_OK);
	assert_int_equal(t.shape[0], 1);
	assert_int_equal(t.shape[1], 28);
	assert_int_equal(t.shape[2], 28);
	for (int i = 0; i < 28 * 28; i++)
		assert_true(t.data[i] == ((uint8_t *)raw.data)[5 * 784 + i] / 255.0f);
	done(&o);
	iap_npy_free(&raw);
	iap_npz_close(npz);
	iap_tensor_free(&t);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int group_setup(void **state)
{
	struct iap_error e = { 0 };

	(void)state;
	snprintf(tmp, sizeof(tmp), "/tmp/iap-datasets-XXXXXX");
	if (!mkdtemp(tmp))
		return -1;
	setenv(IAP_PLUGIN_SYSTEM_PATH_ENV, "", 1);
	unsetenv(IAP_PLUGIN_PATH_ENV);
	reg = iap_registry_new(&e);
	if (!reg || iap_registry_add_dir(reg, IAP_DATASET_PLUGIN_DIR, &e) ||
	    iap_registry_scan(reg, &e))
		return -1;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	iap_registry_free(reg);
	nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_imagefolder_flat_split),
		cmocka_unit_test(test_imagefolder_split_folders_resize),
		cmocka_unit_test(test_cache),
		cmocka_unit_test(test_skip_bad),
		cmocka_unit_test(test_folder_errors),
		cmocka_unit_test(test_csv),
		cmocka_unit_test(test_medmnist),
		cmocka_unit_test(test_mura),
		cmocka_unit_test(test_fetal_planes),
		cmocka_unit_test(test_kvasir_cpn),
		cmocka_unit_test(test_load_original),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
