/*
 * iaprune — the explain service: one way from an attribution plugin's input
 * relevance to a heatmap on disk, shared by the runner's report (heatmaps/)
 * and the CLI's `explain` (and the image loading `attribute` shares).
 *
 * The image under the map is always the image the user gave: a stored
 * original (a file, or a dataset's load_original) is drawn as it is, values
 * in [0, 1]; only where no original exists is the model's input drawn, and
 * then de-normalised by the inverse of the normalisation it was made with
 * (p = x·std + mean, struct iap_explain_norm), never stretched to its own
 * range, which would change every image whose pixels do not span 0 to 1.
 *
 * What a plugin returns is checked before it is drawn: relevance shaped as
 * the input and finite, else an error naming the plugin.
 */
#ifndef IAPRUNE_EXPLAIN_H
#define IAPRUNE_EXPLAIN_H

#include <iaprune/error.h>
#include <iaprune/graph.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/tensor.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The largest side of a heatmap PNG: an image with a longer side is drawn
 * scaled down (bilinear, aspect kept, the shorter side at least 1) so that
 * its longer side is this many pixels.
 */
#define IAP_EXPLAIN_MAX_SIDE 1024

/* With enlarge, an image whose longer side is under this is drawn an integer factor larger, to about it. */
#define IAP_EXPLAIN_MIN_SIDE 224

/* Per-channel normalisation of the model's input: x = (p − mean) / std. */
struct iap_explain_norm {
	int channels;           /* 1 or 3 */
	float mean[3];
	float std[3];
};

/* The bundled datasets' default: ImageNet's statistics for colour, 0.5 / 0.5 for gray. */
void iap_explain_norm_default(int channels, struct iap_explain_norm *n);

/*
 * The normalisation a dataset plugin's options say it applies (its
 * `normalize` imagenet | none | custom with `mean` and `std`); a plugin
 * without a `normalize` option is taken to use the default. Errors name
 * the option.
 */
int iap_explain_norm_from_opts(const struct iap_opts *ds_opts, int channels, struct iap_explain_norm *n,
			       struct iap_error *err);

/*
 * An image file for the model g: its pixels as given ([C][h][w] in [0, 1],
 * C = g's input channels) into orig when orig is not NULL, and the model's
 * input (resized to g's [C][H][W], normalised by norm) into x (C·H·W floats).
 */
int iap_explain_load_image(const char *path, const struct iap_graph *g, const struct iap_explain_norm *norm,
			   struct iap_tensor *orig, float *x, struct iap_error *err);

/*
 * The relevance of x ([1][C][H][W], g already run forward on it) for class
 * target, from plugin p (its state from iap_call_create) into rel, checked:
 * rel must be shaped as x and finite.
 */
int iap_explain_relevance(const struct iap_plugin *p, void *state, struct iap_graph *g,
			  const struct iap_tensor *x, int target, struct iap_tensor *rel, struct iap_error *err);

/* The image drawn under the map. */
struct iap_explain_view {
	const float *image;     /* [channels][h][w] */
	int channels, h, w;
	/* The normalisation image carries (NULL: pixels already in [0, 1], drawn as they are). */
	const struct iap_explain_norm *norm;
	struct iap_tensor own;  /* storage iap_explain_view_sample filled; iap_explain_view_free */
};

/*
 * The view of sample i of ds whose model input is x ([1][C][H][W]): the
 * stored original when the dataset has load_original (ABI 2.1), else x
 * itself with norm (which must outlive the view).
 */
int iap_explain_view_sample(const struct iap_dataset *ds, int64_t i, const struct iap_tensor *x,
			    const struct iap_explain_norm *norm, struct iap_explain_view *v,
			    struct iap_error *err);
void iap_explain_view_free(struct iap_explain_view *v);

struct iap_explain_write_opts {
	const char *npy;        /* also the raw relevance, [C][H][W] float32, to this path; NULL: none */
	int enlarge;            /* draw images under IAP_EXPLAIN_MIN_SIDE an integer factor larger */
	int max_side;           /* longest PNG side; 0: IAP_EXPLAIN_MAX_SIDE */
};

/*
 * Sum rel ([1][C][H][W]) over channels into a map, resample it to the view
 * (bilinear), scale both as opts say (enlarge, then the size cap) and write
 * the heatmap PNG (heatmap.h) to png, and the raw relevance where asked.
 * opts may be NULL (no enlarging, no .npy, the default cap).
 */
int iap_explain_write(const char *png, const struct iap_tensor *rel, const struct iap_explain_view *v,
		      const struct iap_explain_write_opts *opts, struct iap_error *err);

/* The size an h × w view is drawn at under opts (as iap_explain_write does). */
void iap_explain_drawn_size(int h, int w, const struct iap_explain_write_opts *opts, int *oh, int *ow);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_EXPLAIN_H */
