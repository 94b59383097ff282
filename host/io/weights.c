/* Graph parameters from and to safetensors, by torchvision key names. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/weights.h>

struct source {
	char *key;                          /* normalised key */
	const struct iap_st_tensor *t;
	const struct iap_st_tensor *mask;   /* for weight_orig × weight_mask */
	int used;
	int ignored;                        /* e.g. num_batches_tracked */
};

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);

	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Replace the first `from` in s by `to` (to no longer than from); in place. */
static void replace_in(char *s, const char *from, const char *to)
{
	char *p = strstr(s, from);
	size_t lf = strlen(from), lt = strlen(to);

	if (!p)
		return;
	memcpy(p, to, lt);
	memmove(p + lt, p + lf, strlen(p + lf) + 1);
}

static int all_prefixed(const struct iap_safetensors *st, const char *prefix)
{
	size_t n = strlen(prefix);

	if (st->n_tensors == 0)
		return 0;
	for (int i = 0; i < st->n_tensors; i++)
		if (strncmp(st->tensors[i].name, prefix, n) != 0)
			return 0;
	return 1;
}

static struct source *find_source(struct source *src, int n, const char *key)
{
	for (int i = 0; i < n; i++)
		if (src[i].key && strcmp(src[i].key, key) == 0)
			return &src[i];
	return NULL;
}

/*
 * A bounded list "a, b, c and 4 more" built up across calls. Three of them
 * must fit one error message (IAP_ERROR_MSG_MAX), so each gets under a third.
 */
struct namelist {
	char buf[300];
	int count, shown;
};

static void namelist_add(struct namelist *l, const char *text)
{
	size_t used = strlen(l->buf);

	l->count++;
	if (used + strlen(text) + 3 < sizeof(l->buf) - 24) {
		snprintf(l->buf + used, sizeof(l->buf) - used, "%s%s", used ? ", " : "", text);
		l->shown++;
	}
}

static void namelist_str(const struct namelist *l, char *out, size_t len)
{
	if (l->shown < l->count)
		snprintf(out, len, "%s and %d more", l->buf, l->count - l->shown);
	else
		snprintf(out, len, "%s", l->buf);
}

/* "<bn>.num_batches_tracked" (an I64 scalar) into that BatchNorm's counter; other BN-less names are ignored. */
static int load_batches_tracked(struct iap_graph *g, const struct iap_safetensors *st,
				const struct iap_st_tensor *t, const char *name, struct iap_error *err)
{
	size_t len = strlen(name) - strlen(".num_batches_tracked");
	int64_t v;

	if (t->dtype != IAP_ST_I64 || t->numel != 1 || strlen(name) <= strlen(".num_batches_tracked"))
		return IAP_OK;
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = &g->nodes[i];

		if (n->kind != IAP_OP_BATCHNORM2D || strlen(n->name) != len || strncmp(n->name, name, len))
			continue;
		if (iap_safetensors_read_i64(st, t, &v, err))
			return err ? err->code : IAP_EFORMAT;
		n->attr.norm.batches_tracked = v;
	}
	return IAP_OK;
}

int iap_graph_load_weights(struct iap_graph *g, const struct iap_safetensors *st, unsigned flags,
			   struct iap_error *err)
{
	struct namelist missing = { .count = 0 }, unexpected = { .count = 0 }, shapes = { .count = 0 };
	size_t strip = all_prefixed(st, "module.") ? strlen("module.") : 0;
	struct source *src = calloc((size_t)(unsigned)st->n_tensors + 1, sizeof(*src));
	float *maskbuf = NULL;
	int rc = IAP_OK;

	if (!src)
		return iap_error_set(err, IAP_ENOMEM, "%s: out of memory", st->path);
	for (int i = 0; i < st->n_tensors; i++) {
		const char *name = st->tensors[i].name + strip;

		src[i].t = &st->tensors[i];
		if (ends_with(name, "num_batches_tracked")) {
			src[i].ignored = 1;
			rc = load_batches_tracked(g, st, &st->tensors[i], name, err);
			if (rc)
				goto out_free;
			continue;
		}
		if (ends_with(name, "_mask")) {
			/* Consumed by its "_orig" partner when there is one. */
			char orig[512];

			snprintf(orig, sizeof(orig), "%.*s_orig", (int)(strlen(st->tensors[i].name) - 5),
				 st->tensors[i].name);
			if (iap_safetensors_find(st, orig)) {
				src[i].ignored = 1;
				continue;
			}
		}
		src[i].key = strdup(name);
		if (!src[i].key) {
			rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", st->path);
			goto out_free;
		}
		replace_in(src[i].key, ".mlp.linear_1.", ".mlp.0.");
		replace_in(src[i].key, ".mlp.linear_2.", ".mlp.3.");
		if (ends_with(src[i].key, "_orig")) {
			char maskname[512];

			src[i].key[strlen(src[i].key) - 5] = '\0';
			snprintf(maskname, sizeof(maskname), "%.*s_mask",
				 (int)(strlen(st->tensors[i].name) - 5), st->tensors[i].name);
			src[i].mask = iap_safetensors_find(st, maskname);
		}
	}
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			struct iap_param *p = &g->nodes[i].params[k];
			struct source *s = find_source(src, st->n_tensors, p->key);
			int same;
			char line[256], a[96], b[96];

			if (!s) {
				namelist_add(&missing, p->key);
				continue;
			}
			s->used = 1;
			same = s->t->ndim == p->value.ndim;
			for (int d = 0; same && d < s->t->ndim; d++)
				same = s->t->shape[d] == p->value.shape[d];
			if (s->mask && (s->mask->numel != s->t->numel))
				same = 0;
			if (!same) {
				snprintf(line, sizeof(line), "%s: file %s, model %s", p->key,
					 iap_shape_str(s->t->ndim, s->t->shape, a, sizeof(a)),
					 iap_tensor_shape_str(&p->value, b, sizeof(b)));
				namelist_add(&shapes, line);
				continue;
			}
			if (s->t->dtype == IAP_ST_I64) {
				snprintf(line, sizeof(line), "%s: file I64, model float", p->key);
				namelist_add(&shapes, line);
				continue;
			}
			rc = iap_safetensors_read_f32(st, s->t, p->value.data, err);
			if (rc)
				goto out_free;
			if (s->mask) {
				float *mb = realloc(maskbuf, (size_t)s->t->numel * sizeof(float));

				if (!mb) {
					rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", st->path);
					goto out_free;
				}
				maskbuf = mb;
				rc = iap_safetensors_read_f32(st, s->mask, maskbuf, err);
				if (rc)
					goto out_free;
				for (int64_t e = 0; e < s->t->numel; e++)
					p->value.data[e] *= maskbuf[e];
			}
		}
	for (int i = 0; i < st->n_tensors; i++)
		if (!src[i].ignored && !src[i].used)
			namelist_add(&unexpected, src[i].t->name);
	if ((flags & IAP_LOAD_ALLOW_MISSING))
		missing.count = 0;
	if ((flags & IAP_LOAD_ALLOW_UNEXPECTED))
		unexpected.count = 0;
	if (missing.count || unexpected.count || shapes.count) {
		char m[320], u[320], s[320];

		namelist_str(&missing, m, sizeof(m));
		namelist_str(&unexpected, u, sizeof(u));
		namelist_str(&shapes, s, sizeof(s));
		rc = iap_error_set(err, shapes.count ? IAP_ESHAPE : IAP_EFORMAT,
				   "%s: does not fit the model:%s%s%s%s%s%s%s%s%s", st->path,
				   missing.count ? " missing " : "", missing.count ? (missing.count == 1 ? "key " : "keys ") : "",
				   missing.count ? m : "",
				   unexpected.count ? (missing.count ? ";" : "") : "",
				   unexpected.count ? (unexpected.count == 1 ? " unexpected key " : " unexpected keys ") : "",
				   unexpected.count ? u : "",
				   shapes.count ? (missing.count || unexpected.count ? ";" : "") : "",
				   shapes.count ? (shapes.count == 1 ? " shape mismatch " : " shape mismatches ") : "",
				   shapes.count ? s : "");
	}
out_free:
	for (int i = 0; i < st->n_tensors; i++)
		free(src[i].key);
	free(src);
	free(maskbuf);
	return rc;
}

int iap_graph_load_weights_file(struct iap_graph *g, const char *path, unsigned flags,
				struct iap_error *err)
{
	struct iap_safetensors *st;
	int rc = iap_safetensors_open(path, &st, err);

	if (rc)
		return rc;
	rc = iap_graph_load_weights(g, st, flags, err);
	iap_safetensors_close(st);
	return rc;
}

int iap_graph_save_weights(const struct iap_graph *g, const char *path,
			   const struct iap_st_meta *meta, int n_meta, struct iap_error *err)
{
	struct iap_st_entry *entries;
	struct iap_st_i64 *ints;
	char **names;
	int n = 0, n_bn = 0, rc = IAP_OK;

	for (int i = 0; i < g->n_nodes; i++) {
		n += g->nodes[i].n_params;
		n_bn += g->nodes[i].kind == IAP_OP_BATCHNORM2D;
	}
	entries = calloc((size_t)(unsigned)n + 1, sizeof(*entries));
	ints = calloc((size_t)(unsigned)n_bn + 1, sizeof(*ints));
	names = calloc((size_t)(unsigned)n_bn + 1, sizeof(*names));
	if (!entries || !ints || !names) {
		rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
		goto out;
	}
	n = 0;
	n_bn = 0;
	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *nd = &g->nodes[i];

		for (int k = 0; k < nd->n_params; k++) {
			entries[n].name = nd->params[k].key;
			entries[n].tensor = &nd->params[k].value;
			n++;
		}
		/* torchvision's BatchNorm has this buffer too: without it a strict load_state_dict fails. */
		if (nd->kind == IAP_OP_BATCHNORM2D) {
			size_t len = strlen(nd->name) + sizeof(".num_batches_tracked");

			names[n_bn] = malloc(len);
			if (!names[n_bn]) {
				rc = iap_error_set(err, IAP_ENOMEM, "%s: out of memory", path);
				goto out;
			}
			snprintf(names[n_bn], len, "%s%snum_batches_tracked", nd->name, nd->name[0] ? "." : "");
			ints[n_bn].name = names[n_bn];
			ints[n_bn].value = nd->attr.norm.batches_tracked;
			n_bn++;
		}
	}
	rc = iap_safetensors_write_ex(path, entries, n, ints, n_bn, meta, n_meta, err);
out:
	for (int i = 0; names && i < n_bn; i++)
		free(names[i]);
	free(names);
	free(ints);
	free(entries);
	return rc;
}

int iap_weights_half_note(const struct iap_safetensors *st, char *buf, size_t len)
{
	int f16 = 0, bf16 = 0;

	for (int i = 0; i < st->n_tensors; i++) {
		f16 += st->tensors[i].dtype == IAP_ST_F16;
		bf16 += st->tensors[i].dtype == IAP_ST_BF16;
	}
	if (!f16 && !bf16)
		return 0;
	if (f16 && bf16)
		snprintf(buf, len, "%s: %d F16 and %d BF16 tensors converted to float32", st->path, f16, bf16);
	else
		snprintf(buf, len, "%s: %d %s tensor%s converted to float32", st->path, f16 ? f16 : bf16,
			 f16 ? "F16" : "BF16", f16 + bf16 == 1 ? "" : "s");
	return 1;
}
