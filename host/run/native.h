/*
 * The stored image of a sample for the report's heatmaps: when the dataset
 * plugin has load_original (ABI 2.1), the map the model explained at its
 * input resolution is resampled to the image's own size and drawn over it;
 * otherwise the model-resolution sample is shown, as before. Internal.
 */
#ifndef IAP_RUN_NATIVE_H
#define IAP_RUN_NATIVE_H

#include <stdint.h>

#include <iaprune/plugin.h>
#include <iaprune/report.h>
#include <iaprune/tensor.h>

struct iap_native {
	struct iap_tensor img;  /* [C][h][w] in [0, 1], C the dataset's channel count */
	float *map;             /* [h][w]: the relevance map resampled to img */
};

/*
 * Sample i of ds as stored. *have is 0 (img untouched) when the plugin has
 * no load_original; else img holds [C][h][w] with C = ds->info.in_shape[0]
 * (checked: a plugin that breaks that is an error naming the sample).
 */
int iap_native_image(const struct iap_dataset *ds, int64_t i, struct iap_tensor *img, int *have,
		     struct iap_error *err);

/*
 * The map (h × w floats at the model's input) resampled bilinearly to an
 * image of nh × nw into out (nh * nw floats).
 */
int iap_native_map(const float *map, int h, int w, float *out, int nh, int nw, struct iap_error *err);

/*
 * For the heatmap of sample i: with the stored image available, *img, *map,
 * *h and *w are replaced by the stored image, the map resampled to it and
 * its size (owned by nv); otherwise they stay. iap_native_free(nv) after.
 */
int iap_native_view(const struct iap_dataset *ds, int64_t i, const float **img, const float **map, int *h,
		    int *w, struct iap_native *nv, struct iap_error *err);
void iap_native_free(struct iap_native *nv);

/* A gallery item's stored image (item->index of ds) into img, and item->native pointed at it, when available. */
int iap_native_item(const struct iap_dataset *ds, struct iap_report_gallery_item *item, struct iap_tensor *img,
		    struct iap_error *err);

#endif /* IAP_RUN_NATIVE_H */
