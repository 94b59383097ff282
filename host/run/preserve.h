/*
 * Explanation preservation (inside the runner): input relevance maps of a
 * pruned model against the dense model's on the same held-out images.
 *
 * iap_preserve_init picks the first per_class images of every class of the
 * evaluation split, runs the dense model (no masks set) and keeps its
 * targets (the attribution's own target rule: label or prediction) and its
 * maps (relevance summed over channels). iap_preserve_measure sets the masks
 * for a rate through the caller's apply(), explains the same images for the
 * same targets, clears the masks, and averages Spearman's ρ and the top-k
 * overlap of |R| (k = topk_frac of the pixels) over the images.
 */
#ifndef IAP_RUN_PRESERVE_H
#define IAP_RUN_PRESERVE_H

#include <iaprune/graph.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>

struct iap_preserve {
	/* Set by the caller. */
	struct iap_graph *g;
	const struct iap_dataset *ds;
	const struct iap_plugin *plugin; /* an attribution: called through the runner's call records */
	const struct iap_opts *opts;
	int per_class;
	double topk_frac;
	int (*apply)(void *user, double rate);
	void (*clear)(void *user);
	void *user;
	/* Filled by init. */
	int n, c, h, w;
	int64_t *idx;        /* [n] indices in ds */
	float *images;       /* [n][c][h][w] */
	int *labels, *targets, *dense_pred;
	float *dense_maps;   /* [n][h][w] */
	void *state;         /* the attribution's */
};

int iap_preserve_init(struct iap_preserve *p, struct iap_error *err);

/* maps ([n][h][w]) and pred ([n]) receive the pruned model's maps and predictions when not NULL. */
int iap_preserve_measure(struct iap_preserve *p, double rate, double *rho, double *topk, float *maps, int *pred,
			 struct iap_error *err);

void iap_preserve_free(struct iap_preserve *p);

#endif
