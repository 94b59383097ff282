/* Model provenance in weights files, and rebuilding a model from one (see <iaprune/model.h>). */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/compact.h>
#include <iaprune/image.h>
#include <iaprune/memory.h>
#include <iaprune/model.h>
#include <iaprune/registry.h>
#include <iaprune/weights.h>

#include "../run/calls.h"

int iap_meta_put(struct iap_meta_list *m, const char *key, const char *value, struct iap_error *err)
{
	char *k, *v;

	for (int i = 0; i < m->n; i++)
		if (strcmp(m->items[i].key, key) == 0) {
			v = strdup(value);
			if (!v)
				return iap_error_set(err, IAP_ENOMEM, "out of memory");
			free(m->items[i].value);
			m->items[i].value = v;
			return IAP_OK;
		}
	if (m->n == m->cap) {
		int cap = m->cap ? 2 * m->cap : 8;
		struct iap_st_meta *items = realloc(m->items, (size_t)cap * sizeof(*items));

		if (!items)
			return iap_error_set(err, IAP_ENOMEM, "out of memory");
		m->items = items;
		m->cap = cap;
	}
	k = strdup(key);
	v = strdup(value);
	if (!k || !v) {
		free(k);
		free(v);
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	}
	m->items[m->n].key = k;
	m->items[m->n].value = v;
	m->n++;
	return IAP_OK;
}

void iap_meta_free(struct iap_meta_list *m)
{
	for (int i = 0; i < m->n; i++) {
		free(m->items[i].key);
		free(m->items[i].value);
	}
	free(m->items);
	memset(m, 0, sizeof(*m));
}

int iap_model_meta(struct iap_meta_list *m, const struct iap_plugin *plugin,
		   const struct iap_opts *opts, const struct iap_graph *g, int num_classes,
		   struct iap_error *err)
{
	char *text = NULL;
	size_t len = 0, cap = 0;
	char buf[64], value[512];
	int rc;

	/* Options as "key=value" lines: values are scalars, never multi-line. */
	for (int i = 0; i < iap_opts_count(opts); i++) {
		const char *name = iap_opts_name(opts, i);
		size_t need;

		iap_opts_format(opts, i, value, sizeof(value));
		if (strchr(value, '\n'))
			continue;
		need = strlen(name) + strlen(value) + 3;
		if (len + need > cap) {
			char *t;

			cap = (len + need) * 2;
			t = realloc(text, cap);
			if (!t) {
				free(text);
				return iap_error_set(err, IAP_ENOMEM, "out of memory");
			}
			text = t;
		}
		len += (size_t)snprintf(text + len, cap - len, "%s=%s\n", name, value);
	}
	rc = iap_meta_put(m, IAP_META_VERSION, PACKAGE_VERSION, err);
	if (!rc)
		rc = iap_meta_put(m, IAP_META_MODEL, plugin->desc->name, err);
	if (!rc)
		rc = iap_meta_put(m, IAP_META_MODEL_OPTIONS, text ? text : "", err);
	if (!rc) {
		iap_shape_str(g->in_ndim, g->in_shape, buf, sizeof(buf));
		/* "[3, 32, 32]" → "3x32x32" */
		char shape[64];
		size_t o = 0;

		for (const char *p = buf; *p && o + 2 < sizeof(shape); p++) {
			if (*p >= '0' && *p <= '9')
				shape[o++] = *p;
			else if (*p == ',')
				shape[o++] = 'x';
		}
		shape[o] = '\0';
		rc = iap_meta_put(m, IAP_META_INPUT, shape, err);
	}
	if (!rc) {
		snprintf(buf, sizeof(buf), "%d", num_classes);
		rc = iap_meta_put(m, IAP_META_CLASSES, buf, err);
	}
	free(text);
	return rc;
}

/* Parse "3x32x32" into a dataset description. */
static int parse_input(const char *s, struct iap_dataset_info *info)
{
	char *end;

	info->in_ndim = 0;
	while (*s && info->in_ndim < IAP_MAX_DIMS - 1) {
		long v;

		errno = 0;
		v = strtol(s, &end, 10);
		/* Each side within what an image may have: a 32768-pixel side, not 2^62. */
		if (end == s || v <= 0 || errno || v > IAP_IMAGE_MAX_SIDE)
			return -1;
		info->in_shape[info->in_ndim++] = v;
		s = end;
		if (*s == 'x')
			s++;
		else if (*s)
			return -1;
	}
	return info->in_ndim > 0 && !*s ? 0 : -1;
}

int iap_model_from_weights(const struct iap_registry *reg, const char *path, struct iap_graph **out,
			   const struct iap_plugin **plugin_out, struct iap_error *err)
{
	struct iap_safetensors *st = NULL;
	const struct iap_plugin *plugin;
	struct iap_dataset_info info = { 0 };
	struct iap_opts *opts = NULL;
	const char *name, *optext, *input, *classes;
	char *lines = NULL;
	int rc;

	*out = NULL;
	rc = iap_safetensors_open(path, &st, err);
	if (rc)
		return rc;
	name = iap_safetensors_meta(st, IAP_META_MODEL);
	optext = iap_safetensors_meta(st, IAP_META_MODEL_OPTIONS);
	input = iap_safetensors_meta(st, IAP_META_INPUT);
	classes = iap_safetensors_meta(st, IAP_META_CLASSES);
	if (!name || !optext || !input || !classes) {
		rc = iap_error_set(err, IAP_EFORMAT,
				   "%s: no iaprune model description in its metadata (give the model in a pipeline instead)",
				   path);
		goto out;
	}
	plugin = iap_registry_find(reg, IAP_PLUGIN_MODEL, name);
	if (!plugin) {
		rc = iap_error_set(err, IAP_EINVAL, "%s: made by model plugin '%s', which is not installed",
				   path, name);
		goto out;
	}
	{
		char *end;
		long n;

		errno = 0;
		n = strtol(classes, &end, 10);
		if (parse_input(input, &info) || errno || end == classes || *end || n <= 0 || n > IAP_MAX_CLASSES) {
			rc = iap_error_set(err, IAP_EFORMAT, "%s: bad %s '%s' or %s '%s' (at most %d classes)", path,
					   IAP_META_INPUT, input, IAP_META_CLASSES, classes, IAP_MAX_CLASSES);
			goto out;
		}
		info.n_classes = (int)n;
	}
	rc = iap_opts_defaults(plugin->desc->options, &opts, err);
	if (rc)
		goto out;
	lines = strdup(optext);
	if (!lines) {
		rc = iap_error_set(err, IAP_ENOMEM, "out of memory");
		goto out;
	}
	for (char *line = strtok(lines, "\n"); line; line = strtok(NULL, "\n")) {
		char *eq = strchr(line, '=');
		char what[300];

		if (!eq)
			continue;
		*eq = '\0';
		snprintf(what, sizeof(what), "%s: model '%s'", path, name);
		rc = iap_opts_set(opts, what, line, eq + 1, err);
		if (rc)
			goto out;
	}
	/* What the metadata asks to build must fit before it is built (memory.h). */
	iap_graph_planning(1);
	rc = iap_call_build(plugin, opts, &info, out, err);
	iap_graph_planning(0);
	if (!rc) {
		char what[4200];

		snprintf(what, sizeof(what), "%s: model '%s'", path, name);
		rc = iap_memory_check(what, iap_graph_memory(*out, 1, 0, 1), err);
	}
	iap_graph_free(*out);
	*out = NULL;
	rc = rc ? rc : iap_call_build(plugin, opts, &info, out, err);
	if (rc)
		goto out;
	/* A compacted model: the full architecture, its keep masks applied, compacted. */
	if (iap_safetensors_meta(st, IAP_KEEP_META_KEY)) {
		struct iap_graph *small = NULL;

		rc = iap_graph_apply_keep_metadata(*out, iap_safetensors_meta(st, IAP_KEEP_META_KEY), err);
		rc = rc ? rc : iap_graph_compact(*out, 0, &small, err);
		iap_graph_free(*out);
		*out = small;
		if (rc) {
			iap_error_prefix(err, "%s", path);
			goto out;
		}
	}
	/* A masked model: same shapes, its masks set again (the zeros are in the weights already). */
	else if (iap_safetensors_meta(st, IAP_MASK_META_KEY)) {
		rc = iap_graph_apply_keep_metadata(*out, iap_safetensors_meta(st, IAP_MASK_META_KEY), err);
		if (rc) {
			iap_error_prefix(err, "%s", path);
			iap_graph_free(*out);
			*out = NULL;
			goto out;
		}
	}
	rc = iap_graph_load_weights(*out, st, 0, err);
	if (rc) {
		iap_graph_free(*out);
		*out = NULL;
		goto out;
	}
	if (plugin_out)
		*plugin_out = plugin;
out:
	free(lines);
	iap_opts_free(opts);
	iap_safetensors_close(st);
	return rc;
}

/* ---- the layer table ------------------------------------------------------------------ */

static void count_zeros(const struct iap_node *n, int64_t *weights, int64_t *zeros)
{
	for (int k = 0; k < n->n_params; k++) {
		const struct iap_param *p = &n->params[k];

		if (!(p->flags & IAP_PARAM_TRAINABLE) || !p->value.data)
			continue;
		for (int64_t i = 0; i < iap_tensor_numel(&p->value); i++) {
			*weights += 1;
			*zeros += p->value.data[i] == 0.0f;
		}
	}
}

static void human(char *buf, size_t len, double v)
{
	if (v >= 1e9)
		snprintf(buf, len, "%.2fG", v / 1e9);
	else if (v >= 1e6)
		snprintf(buf, len, "%.2fM", v / 1e6);
	else if (v >= 1e3)
		snprintf(buf, len, "%.1fk", v / 1e3);
	else
		snprintf(buf, len, "%.0f", v);
}

void iap_graph_print_summary(const struct iap_graph *g, FILE *f)
{
	int64_t total_params = 0, total_w = 0, total_z = 0, total_units = 0, total_pruned = 0;
	uint64_t total_macs = 0;
	char shape[64], pbuf[32], mbuf[32];

	fprintf(f, "%-44s %-18s %-16s %10s %10s %7s %7s %6s\n", "layer", "op", "output", "params",
		"MACs", "units", "pruned", "zeros");
	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *n = &g->nodes[i];
		int64_t params = 0, w = 0, z = 0;
		uint64_t macs = n->ops->macs ? n->ops->macs(g, n) : 0;
		char units[16] = "-", pruned[16] = "-", zeros[16] = "-";

		for (int k = 0; k < n->n_params; k++)
			if (!(n->params[k].flags & IAP_PARAM_BUFFER))
				params += iap_tensor_numel(&n->params[k].value);
		count_zeros(n, &w, &z);
		if (n->unit_group >= 0) {
			const struct iap_unit_group *grp = &g->groups[n->unit_group];
			int off = 0;

			for (int u = 0; grp->mask && u < grp->n_units; u++)
				off += !grp->mask[u];
			snprintf(units, sizeof(units), "%d", grp->n_units);
			snprintf(pruned, sizeof(pruned), "%d", off);
			total_units += grp->n_units;
			total_pruned += off;
		}
		if (w)
			snprintf(zeros, sizeof(zeros), "%.1f%%", 100.0 * (double)z / (double)w);
		iap_shape_str(n->out_ndim, n->out_shape, shape, sizeof(shape));
		human(pbuf, sizeof(pbuf), (double)params);
		human(mbuf, sizeof(mbuf), (double)macs);
		fprintf(f, "%-44s %-18s %-16s %10s %10s %7s %7s %6s\n", n->name[0] ? n->name : "(unnamed)",
			iap_op_name(n->kind), shape, params ? pbuf : "-", macs ? mbuf : "-", units, pruned, zeros);
		total_params += params;
		total_macs += macs;
		total_w += w;
		total_z += z;
	}
	human(pbuf, sizeof(pbuf), (double)total_params);
	human(mbuf, sizeof(mbuf), (double)total_macs);
	fprintf(f, "\ntotal: %lld parameters (%s), %llu multiply-accumulates per sample (%s), "
		   "%lld prunable units, %lld pruned, %.2f%% of weights are zero\n",
		(long long)total_params, pbuf, (unsigned long long)total_macs, mbuf, (long long)total_units,
		(long long)total_pruned, total_w ? 100.0 * (double)total_z / (double)total_w : 0.0);
}
