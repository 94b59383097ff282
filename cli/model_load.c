/* Building the model a command works on (see model_load.h). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/model.h>
#include <iaprune/registry.h>
#include <iaprune/safetensors.h>
#include <iaprune/weights.h>

#include "model_load.h"
#include "../host/run/calls.h"

/* The first of the names (also under DataParallel's "module." prefix) in st, or NULL. */
static const struct iap_st_tensor *find_any(const struct iap_safetensors *st, const char *const *names)
{
	char buf[128];

	for (int i = 0; names[i]; i++) {
		const struct iap_st_tensor *t = iap_safetensors_find(st, names[i]);

		if (t)
			return t;
		snprintf(buf, sizeof(buf), "module.%s", names[i]);
		if ((t = iap_safetensors_find(st, buf)))
			return t;
	}
	return NULL;
}

/* Set option name to v unless the user set it (and the plugin has it). */
static int default_from_file(struct iap_opts *opts, const struct iap_plugin *p, const char *name, long v,
			     struct iap_error *err)
{
	char text[32], what[128];

	if (v <= 0 || iap_opts_is_set(opts, name))
		return IAP_OK;
	for (const struct iap_option *o = p->desc->options; o && o->name; o++)
		if (!strcmp(o->name, name)) {
			snprintf(text, sizeof(text), "%ld", v);
			snprintf(what, sizeof(what), "model '%s'", p->desc->name);
			return iap_opts_set(opts, what, name, text, err);
		}
	return IAP_OK;
}

int cli_model_load(const struct iap_registry *reg, const char *path, const char *model,
		   const char *const *model_options, int n, struct iap_graph **out,
		   struct iap_error *err)
{
	static const char *const heads[] = { "classifier.6.weight", "fc.weight", "heads.head.weight", NULL };
	static const char *const firsts[] = { "features.0.weight", "conv1.weight", "conv_proj.weight", NULL };
	static const char *const pos[] = { "encoder.pos_embedding", NULL };
	const struct iap_plugin *p;
	const struct iap_st_tensor *t;
	struct iap_safetensors *st = NULL;
	struct iap_opts *opts = NULL;
	char what[300];
	int rc;

	*out = NULL;
	if (!model) {
		if (n > 0)
			return iap_error_set(err, IAP_EINVAL, "--model-option needs --model NAME");
		return iap_model_from_weights(reg, path, out, NULL, err);
	}
	p = iap_registry_find(reg, IAP_PLUGIN_MODEL, model);
	if (!p)
		return iap_error_set(err, IAP_EINVAL, "--model %s: no such model plugin (see 'iaprune plugins --kind model')",
				     model);
	rc = iap_opts_defaults(p->desc->options, &opts, err);
	snprintf(what, sizeof(what), "--model-option for model '%s'", model);
	for (int i = 0; !rc && i < n; i++) {
		const char *eq = strchr(model_options[i], '=');
		char key[128];

		if (!eq || eq == model_options[i] || (size_t)(eq - model_options[i]) >= sizeof(key)) {
			rc = iap_error_set(err, IAP_EINVAL, "--model-option wants KEY=VALUE, not '%s'", model_options[i]);
			break;
		}
		snprintf(key, sizeof(key), "%.*s", (int)(eq - model_options[i]), model_options[i]);
		rc = iap_opts_set(opts, what, key, eq + 1, err);
	}
	if (!rc)
		rc = iap_safetensors_open(path, &st, err);
	if (rc)
		goto out;
	/* What the file itself says about the head, the input channels and a ViT's image size. */
	t = find_any(st, heads);
	if (t && t->ndim == 2)
		rc = default_from_file(opts, p, "num_classes", (long)t->shape[0], err);
	t = find_any(st, firsts);
	if (!rc && t && t->ndim == 4)
		rc = default_from_file(opts, p, "in_channels", (long)t->shape[1], err);
	if (!rc && t && t->ndim == 4 && (t = find_any(st, pos)) && t->ndim == 3) {
		const struct iap_st_tensor *proj = find_any(st, firsts);
		long tokens = (long)t->shape[1] - 1, side = lround(sqrt((double)tokens));

		if (side * side == tokens)
			rc = default_from_file(opts, p, "image_size", side * (long)proj->shape[2], err);
	}
	if (!rc)
		rc = iap_call_build(p, opts, NULL, out, err);
	if (!rc) {
		rc = iap_graph_load_weights(*out, st, 0, err);
		if (rc)
			iap_error_prefix(err, "%s (as model '%s'; set its sizes with --model-option)", path, model);
	}
	if (rc) {
		iap_graph_free(*out);
		*out = NULL;
	}
out:
	iap_safetensors_close(st);
	iap_opts_free(opts);
	return rc;
}
