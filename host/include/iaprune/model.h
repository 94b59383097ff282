/*
 * iaprune — models as files: the provenance written into a weights file's
 * __metadata__ (which plugin built the model, with which options, for which
 * input and classes, and later how it was pruned), and rebuilding a model
 * from such a file alone.
 */
#ifndef IAPRUNE_MODEL_H
#define IAPRUNE_MODEL_H

#include <stdio.h>

#include <iaprune/graph.h>
#include <iaprune/plugin.h>
#include <iaprune/registry.h>
#include <iaprune/safetensors.h>

#ifdef __cplusplus
extern "C" {
#endif

#define IAP_META_VERSION "iaprune.version"
#define IAP_META_MODEL "iaprune.model"               /* model plugin name */
#define IAP_META_MODEL_OPTIONS "iaprune.model_options" /* "key=value" lines */
#define IAP_META_INPUT "iaprune.input"               /* "3x224x224" */
#define IAP_META_CLASSES "iaprune.num_classes"

/* A growable list of metadata entries (keys and values owned). */
struct iap_meta_list {
	int n, cap;
	struct iap_st_meta *items;
};

/* Add (or replace) key = value. */
int iap_meta_put(struct iap_meta_list *m, const char *key, const char *value, struct iap_error *err);
void iap_meta_free(struct iap_meta_list *m);

/* The provenance of a model built by `plugin` with `opts` (graph g gives the input shape). */
int iap_model_meta(struct iap_meta_list *m, const struct iap_plugin *plugin,
		   const struct iap_opts *opts, const struct iap_graph *g, int num_classes,
		   struct iap_error *err);

/*
 * Build the model a weights file describes (its iaprune.* metadata) with the
 * plugins in reg and load the weights onto it, strictly. *plugin_out (may be
 * NULL) receives the model plugin. A file without iaprune metadata is an
 * error that says so.
 */
int iap_model_from_weights(const struct iap_registry *reg, const char *path, struct iap_graph **out,
			   const struct iap_plugin **plugin_out, struct iap_error *err);

/*
 * The layer table of g (name, op, output shape, parameters, MACs, units,
 * pruned units, zero weights) and its totals, as aligned text.
 */
void iap_graph_print_summary(const struct iap_graph *g, FILE *f);

#ifdef __cplusplus
}
#endif
#endif /* IAPRUNE_MODEL_H */
