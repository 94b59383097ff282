/*
 * The stored image of a sample (plugin ABI 2.1's load_original) as the
 * runner reaches it: the dataset guard of host/run/calls.c offers the entry
 * exactly when the plugin has it (an ops struct built before 2.1, whatever
 * lies past its size, has none), the call passes through, and
 * host/run/native.c falls back when it is absent, refuses an image of the
 * wrong channel count, and resamples a map to the stored size.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/plugin.h>
#include <iaprune/registry.h>

#include "host/run/native.h"
#include "host/run/run_internal.h"

/* A dataset of one 1 x 2 x 2 sample stored as 3 x 4 (pixel (x, y) = (x + 4y) / 11). */
struct fake {
	int channels;   /* what load_original answers with */
	int calls;
};

static struct fake the_fake;

static int fake_open(const struct iap_opts *opts, enum iap_split split, void **state, struct iap_error *err)
{
	(void)opts;
	(void)split;
	(void)err;
	the_fake = (struct fake){ .channels = 1 };
	*state = &the_fake;
	return IAP_OK;
}

static void fake_close(void *state)
{
	(void)state;
}

static int64_t fake_count(void *state)
{
	(void)state;
	return 1;
}

static int fake_info(void *state, struct iap_dataset_info *info, struct iap_error *err)
{
	(void)state;
	(void)err;
	memset(info, 0, sizeof(*info));
	info->n_classes = 2;
	info->in_ndim = 3;
	info->in_shape[0] = 1;
	info->in_shape[1] = 2;
	info->in_shape[2] = 2;
	return IAP_OK;
}

static int fake_load(void *state, int64_t i, float *image, int *label, struct iap_error *err)
{
	(void)state;
	(void)i;
	(void)err;
	if (image)
		memset(image, 0, 4 * sizeof(float));
	if (label)
		*label = 0;
	return IAP_OK;
}

static int fake_load_original(void *state, int64_t i, struct iap_tensor *image, struct iap_error *err)
{
	struct fake *f = state;
	int64_t shape[3] = { f->channels, 3, 4 };
	int rc = iap_tensor_ensure(image, 3, shape, err);

	(void)i;
	f->calls++;
	for (int64_t k = 0; !rc && k < iap_tensor_numel(image); k++)
		image->data[k] = (float)(k % 12) / 11.0f;
	return rc;
}

static const struct iap_dataset_ops with_ops = {
	.size = sizeof(struct iap_dataset_ops), .open = fake_open, .close = fake_close, .count = fake_count,
	.info = fake_info, .load = fake_load, .load_original = fake_load_original,
};
static const struct iap_dataset_ops without_ops = {
	.size = sizeof(struct iap_dataset_ops), .open = fake_open, .close = fake_close, .count = fake_count,
	.info = fake_info, .load = fake_load,
};
/* Built against ABI 2.0: its size ends before load_original, so what follows is not its own. */
static const struct iap_dataset_ops old_ops = {
	.size = offsetof(struct iap_dataset_ops, load_original), .open = fake_open, .close = fake_close,
	.count = fake_count, .info = fake_info, .load = fake_load, .load_original = fake_load_original,
};

static void open_guarded(const struct iap_dataset_ops *ops, struct iap_plugin_desc *desc, struct iap_plugin *p,
			 struct iap_dataset *d)
{
	struct iap_error err = { 0 };

	*desc = (struct iap_plugin_desc){ .kind = IAP_PLUGIN_DATASET, .name = "fake" };
	desc->ops.dataset = ops;
	*p = (struct iap_plugin){ .desc = desc, .path = "/x/fake.so" };
	memset(d, 0, sizeof(*d));
	assert_int_equal(iap_call_dataset_open(p, NULL, IAP_SPLIT_TEST, d, &err), IAP_OK);
	assert_int_equal(d->ops->info(d->state, &d->info, &err), IAP_OK);
	d->count = d->ops->count(d->state);
}

static void test_guard(void **state)
{
	struct iap_plugin_desc desc;
	struct iap_plugin p;
	struct iap_dataset d;
	struct iap_tensor t = { 0 };
	struct iap_error err = { 0 };
	int have = -1;

	(void)state;
	open_guarded(&with_ops, &desc, &p, &d);
	assert_true(IAP_DATASET_OPS_HAS(d.ops, load_original));
	assert_int_equal(iap_native_image(&d, 0, &t, &have, &err), IAP_OK);
	assert_int_equal(have, 1);
	assert_int_equal(t.shape[0], 1);
	assert_int_equal(t.shape[1], 3);
	assert_int_equal(t.shape[2], 4);
	assert_true(t.data[11] == 1.0f);
	assert_int_equal(the_fake.calls, 1);
	d.ops->close(d.state);

	for (int k = 0; k < 2; k++) {
		open_guarded(k ? &old_ops : &without_ops, &desc, &p, &d);
		assert_false(IAP_DATASET_OPS_HAS(d.ops, load_original));
		have = -1;
		assert_int_equal(iap_native_image(&d, 0, &t, &have, &err), IAP_OK);
		assert_int_equal(have, 0);
		assert_int_equal(the_fake.calls, 0);  /* the 2.0 plugin's stray pointer is never called */
		d.ops->close(d.state);
	}
	iap_tensor_free(&t);
}

static void test_checks_and_resample(void **state)
{
	struct iap_plugin_desc desc;
	struct iap_plugin p;
	struct iap_dataset d;
	struct iap_native nv = { 0 };
	struct iap_tensor t = { 0 };
	struct iap_error err = { 0 };
	const float model_img[4] = { 0 }, flat[4] = { 0.5f, 0.5f, 0.5f, 0.5f };
	const float *img = model_img, *map = flat;
	int have, h = 2, w = 2;

	(void)state;
	open_guarded(&with_ops, &desc, &p, &d);
	/* The overlay: stored image, a flat map stays flat at the stored size. */
	assert_int_equal(iap_native_view(&d, 0, &img, &map, &h, &w, &nv, &err), IAP_OK);
	assert_int_equal(h, 3);
	assert_int_equal(w, 4);
	assert_ptr_equal(img, nv.img.data);
	assert_ptr_equal(map, nv.map);
	for (int k = 0; k < 12; k++)
		assert_float_equal(map[k], 0.5f, 1e-6);
	iap_native_free(&nv);
	/* Left column 0, right column 1: resampled left to right, every row alike (no transpose). */
	{
		const float ramp[4] = { 0, 1, 0, 1 };

		img = model_img;
		map = ramp;
		h = w = 2;
		assert_int_equal(iap_native_view(&d, 0, &img, &map, &h, &w, &nv, &err), IAP_OK);
		for (int y = 0; y < 3; y++) {
			assert_float_equal(map[y * 4], 0.0f, 1e-6);
			assert_float_equal(map[y * 4 + 3], 1.0f, 1e-6);
			assert_true(map[y * 4 + 1] < map[y * 4 + 2]);
		}
		iap_native_free(&nv);
	}

	/* Three channels for a one-channel dataset: refused, naming the sample. */
	the_fake.channels = 3;
	assert_int_not_equal(iap_native_image(&d, 0, &t, &have, &err), IAP_OK);
	assert_int_equal(have, 0);
	assert_string_equal(err.msg, "dataset: load_original of sample 0 gave a 3-dimensional image (3 channels), not "
				     "[1][h][w] with sides 1 to 32768");
	d.ops->close(d.state);
	iap_tensor_free(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_guard),
		cmocka_unit_test(test_checks_and_resample),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
