/* The stored image of a sample, and maps resampled to it (see native.h). */
#include "config.h"

#include <stdlib.h>

#include <iaprune/image.h>

#include "native.h"

int iap_native_image(const struct iap_dataset *ds, int64_t i, struct iap_tensor *img, int *have,
		     struct iap_error *err)
{
	int rc;

	*have = 0;
	if (!IAP_DATASET_OPS_HAS(ds->ops, load_original))
		return IAP_OK;
	rc = ds->ops->load_original(ds->state, i, img, err);
	if (rc) {
		iap_error_prefix(err, "sample %lld as stored", (long long)i);
		return rc;
	}
	/* The heatmap writer reads C planes of h × w: a wrong shape would read past the buffer. */
	if (img->ndim != 3 || img->shape[0] != ds->info.in_shape[0] || img->shape[1] < 1 || img->shape[2] < 1 ||
	    img->shape[1] > 32768 || img->shape[2] > 32768)
		return iap_error_set(err, IAP_ESHAPE,
				     "dataset: load_original of sample %lld gave a %d-dimensional image (%lld channels), "
				     "not [%lld][h][w] with sides 1 to 32768",
				     (long long)i, img->ndim, (long long)(img->ndim > 0 ? img->shape[0] : 0),
				     (long long)ds->info.in_shape[0]);
	*have = 1;
	return IAP_OK;
}

int iap_native_map(const float *map, int h, int w, float *out, int nh, int nw, struct iap_error *err)
{
	return iap_image_resize(NULL, map, 1, h, w, out, nh, nw, err);
}

int iap_native_view(const struct iap_dataset *ds, int64_t i, const float **img, const float **map, int *h,
		    int *w, struct iap_native *nv, struct iap_error *err)
{
	int have, nh, nw, rc = iap_native_image(ds, i, &nv->img, &have, err);

	if (rc || !have)
		return rc;
	nh = (int)nv->img.shape[1];
	nw = (int)nv->img.shape[2];
	nv->map = malloc((size_t)nh * (size_t)nw * sizeof(float));
	if (!nv->map)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	rc = iap_native_map(*map, *h, *w, nv->map, nh, nw, err);
	if (rc)
		return rc;
	*img = nv->img.data;
	*map = nv->map;
	*h = nh;
	*w = nw;
	return IAP_OK;
}

void iap_native_free(struct iap_native *nv)
{
	iap_tensor_free(&nv->img);
	free(nv->map);
	nv->map = NULL;
}

int iap_native_item(const struct iap_dataset *ds, struct iap_report_gallery_item *item, struct iap_tensor *img,
		    struct iap_error *err)
{
	int have, rc = iap_native_image(ds, item->index, img, &have, err);

	if (!rc && have) {
		item->native = img->data;
		item->native_h = (int)img->shape[1];
		item->native_w = (int)img->shape[2];
	}
	return rc;
}
