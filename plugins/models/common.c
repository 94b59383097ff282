/* Input shape and class count of a model plugin (see common.h). */
#include "config.h"

#include "common.h"

static int pick(const char *model, const struct iap_opts *opts, const char *key, long from_data,
		int have_data, long fallback, int *out, struct iap_error *err)
{
	long v = iap_opts_int(opts, key);

	if (iap_opts_is_set(opts, key) && v > 0) {
		if (have_data && v != from_data)
			return iap_error_set(err, IAP_EINVAL,
					     "model '%s': option '%s' is %ld but the dataset gives %ld",
					     model, key, v, from_data);
		*out = (int)v;
		return IAP_OK;
	}
	*out = (int)(have_data ? from_data : fallback);
	return IAP_OK;
}

int iap_model_input(const char *model, const struct iap_opts *opts,
		    const struct iap_dataset_info *data, int *classes, int *channels, int *size,
		    struct iap_error *err)
{
	int have = data != NULL;
	int rc;

	if (have && (data->in_ndim != 3 || data->in_shape[1] != data->in_shape[2]))
		return iap_error_set(err, IAP_EINVAL,
				     "model '%s': needs square C x H x W images from the dataset", model);
	rc = pick(model, opts, "num_classes", have ? data->n_classes : 0, have, 1000, classes, err);
	if (!rc)
		rc = pick(model, opts, "in_channels", have ? (long)data->in_shape[0] : 0, have, 3, channels, err);
	if (!rc)
		rc = pick(model, opts, "image_size", have ? (long)data->in_shape[1] : 0, have, 224, size, err);
	return rc;
}
