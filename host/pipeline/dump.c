/*
 * The pipeline as it would run (iaprune run --dry-run): the validated tree,
 * each plugin's options it leaves unset as comments with their schema
 * defaults, and no model.train when model.weights is given (the weights are
 * loaded, the recipe is never used).
 *
 * The defaults are comments, not keys: writing an option down can change
 * what a plugin does (a ViT size overrides its preset; a CSV column named
 * in the pipeline becomes required), so the dump must read back as the
 * same pipeline.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "cfg_internal.h"

#include <iaprune/plugin.h>
#include <iaprune/registry.h>

struct ref {
	const struct iap_cfg_node *options;   /* the reference's options map */
	const struct iap_plugin *plugin;
};

struct dumper {
	const struct iap_cfg_node *train;     /* model.train to leave out, or NULL */
	struct ref refs[64];
	int n_refs;
};

static void add_ref(struct dumper *d, const struct iap_cfg_node *ref, int kind, const struct iap_registry *reg)
{
	const struct iap_cfg_node *pn = iap_cfg_child(ref, "plugin"), *on = iap_cfg_child(ref, "options");
	const struct iap_plugin *p;

	if (!pn || !pn->value || !on || on->kind != IAP_CFG_MAP || !reg ||
	    d->n_refs == (int)(sizeof(d->refs) / sizeof(d->refs[0])))
		return;
	p = iap_registry_find(reg, kind, pn->value);
	if (!p)
		return;
	d->refs[d->n_refs].options = on;
	d->refs[d->n_refs].plugin = p;
	d->n_refs++;
}

static void add_list(struct dumper *d, const struct iap_cfg_node *list, int kind, const struct iap_registry *reg)
{
	for (int i = 0; list && list->kind == IAP_CFG_SEQ && i < list->n_items; i++)
		add_ref(d, list->items[i], kind, reg);
}

static int skip(const struct iap_cfg_node *entry, void *user)
{
	return entry == ((struct dumper *)user)->train;
}

/* 1 when an earlier schema entry has the same name (only the first can ever be set). */
static int shadowed(const struct iap_option *schema, const struct iap_option *opt)
{
	for (const struct iap_option *s = schema; s != opt; s++)
		if (!strcmp(s->name, opt->name))
			return 1;
	return 0;
}

static void after(const struct iap_cfg_node *map, FILE *f, int indent, void *user)
{
	const struct dumper *d = user;

	for (int r = 0; r < d->n_refs; r++) {
		const struct iap_option *schema = d->refs[r].plugin->desc->options;
		int first = 1;

		if (d->refs[r].options != map)
			continue;
		for (const struct iap_option *s = schema; s && s->name; s++) {
			if (!s->def || iap_cfg_child(map, s->name) || shadowed(schema, s))
				continue;
			if (first)
				fprintf(f, "%*s# %s's defaults:\n", indent, "", d->refs[r].plugin->desc->name);
			first = 0;
			fprintf(f, "%*s# %s: ", indent, "", s->name);
			cfgi_dump_scalar(s->def, f);
			fputc('\n', f);
		}
	}
}

int iap_pipeline_dump(const struct iap_cfg *cfg, const struct iap_registry *reg, FILE *f)
{
	const struct iap_cfg_node *root = iap_cfg_root(cfg), *model;
	struct cfgi_dump_hooks h = { skip, after, NULL };
	struct dumper *d;

	if (!root)
		return IAP_OK;
	d = calloc(1, sizeof(*d));
	if (!d)
		return IAP_ENOMEM;
	model = iap_cfg_child(root, "model");
	if (model && iap_cfg_child(model, "weights") && iap_cfg_child(model, "weights")->value)
		d->train = iap_cfg_child(model, "train");
	add_ref(d, iap_cfg_child(root, "dataset"), IAP_PLUGIN_DATASET, reg);
	if (model)
		add_ref(d, model, IAP_PLUGIN_MODEL, reg);
	add_list(d, iap_cfg_child(root, "sampling"), IAP_PLUGIN_SAMPLER, reg);
	add_list(d, iap_cfg_child(root, "attribution"), IAP_PLUGIN_ATTRIBUTION, reg);
	if (iap_cfg_get(root, "pruning.policy"))
		add_ref(d, iap_cfg_get(root, "pruning.policy"), IAP_PLUGIN_POLICY, reg);
	h.user = d;
	cfgi_dump(root, f, &h);
	free(d);
	return ferror(f) ? IAP_EIO : IAP_OK;
}
