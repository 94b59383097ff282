/*
 * The unit-score cache (see score_cache.h). One safetensors file per key: a
 * float tensor per unit group, and in its metadata the format, the key it
 * was made for and a checksum of every group's name, size and value bits.
 * A file edited, truncated, copied under another key's name or left by
 * another model is named and refused, never used: cached scores decide what
 * is pruned, so a silently wrong cache gives a wrong report.
 */
#include "config.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <iaprune/safetensors.h>

#include "run_internal.h"
#include "score_cache.h"

#define CACHE_FORMAT "iaprune-scores-1"
#define META_FORMAT "iaprune.cache"
#define META_KEY "iaprune.key"
#define META_SUM "iaprune.checksum"

/* FNV-1a over every group's name, unit count and little-endian value bits. */
static uint64_t checksum(const struct iap_graph *g, float *const *scores)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];
		uint32_t n = (uint32_t)grp->n_units;

		h = iap_key_bytes(h, grp->name, strlen(grp->name) + 1);
		h = iap_key_bytes(h, &n, sizeof(n));
		for (int u = 0; u < grp->n_units; u++) {
			uint32_t bits;
			unsigned char le[4];

			memcpy(&bits, &scores[gi][u], 4);
			le[0] = (unsigned char)bits;
			le[1] = (unsigned char)(bits >> 8);
			le[2] = (unsigned char)(bits >> 16);
			le[3] = (unsigned char)(bits >> 24);
			h = iap_key_bytes(h, le, 4);
		}
	}
	return h;
}

static int meta_hex(const struct iap_safetensors *st, const char *key, uint64_t *v)
{
	const char *s = iap_safetensors_meta(st, key);
	char *end;

	if (!s || strlen(s) != 16)
		return -1;
	*v = strtoull(s, &end, 16);
	return *end ? -1 : 0;
}

int iap_score_cache_load(const char *path, uint64_t key, const struct iap_graph *g, float **scores,
			 struct iap_error *why)
{
	struct iap_safetensors *st;
	const char *fmt;
	uint64_t k, sum;
	int rc = -1;

	if (access(path, F_OK) != 0)
		return 0;
	if (iap_safetensors_open(path, &st, why))
		goto out_zero;
	fmt = iap_safetensors_meta(st, META_FORMAT);
	if (!fmt || strcmp(fmt, CACHE_FORMAT)) {
		iap_error_set(why, IAP_EFORMAT, "%s: not an iaprune score cache (no '%s: %s' metadata)", path,
			      META_FORMAT, CACHE_FORMAT);
		goto out_close;
	}
	if (meta_hex(st, META_KEY, &k) || k != key) {
		iap_error_set(why, IAP_EFORMAT, "%s: made for key %s, not %016" PRIx64, path,
			      iap_safetensors_meta(st, META_KEY) ? iap_safetensors_meta(st, META_KEY) : "(none)", key);
		goto out_close;
	}
	if (st->n_tensors != g->n_groups) {
		iap_error_set(why, IAP_EFORMAT, "%s: %d score tensors, the model has %d unit groups", path,
			      st->n_tensors, g->n_groups);
		goto out_close;
	}
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_st_tensor *t = iap_safetensors_find(st, g->groups[gi].name);

		if (!t || t->numel != g->groups[gi].n_units) {
			iap_error_set(why, IAP_EFORMAT, "%s: no %d scores for unit group '%s'", path, g->groups[gi].n_units,
				      g->groups[gi].name);
			goto out_close;
		}
		if (iap_safetensors_read_f32(st, t, scores[gi], why))
			goto out_close;
		for (int u = 0; u < g->groups[gi].n_units; u++)
			if (!isfinite(scores[gi][u])) {
				iap_error_set(why, IAP_ENUMERIC, "%s: score of unit %d of '%s' is not finite", path, u,
					      g->groups[gi].name);
				goto out_close;
			}
	}
	if (meta_hex(st, META_SUM, &sum) || sum != checksum(g, scores)) {
		iap_error_set(why, IAP_EFORMAT, "%s: checksum mismatch (the file was changed after it was written)",
			      path);
		goto out_close;
	}
	rc = 1;
out_close:
	iap_safetensors_close(st);
out_zero:
	if (rc != 1)
		for (int gi = 0; gi < g->n_groups; gi++)
			memset(scores[gi], 0, (size_t)g->groups[gi].n_units * sizeof(float));
	return rc;
}

int iap_score_cache_save(const char *path, uint64_t key, const struct iap_graph *g, float *const *scores,
			 struct iap_error *err)
{
	struct iap_st_entry *e = calloc((size_t)g->n_groups + 1, sizeof(*e));
	struct iap_tensor *t = calloc((size_t)g->n_groups + 1, sizeof(*t));
	char khex[17], shex[17];
	struct iap_st_meta meta[] = { { META_FORMAT, CACHE_FORMAT }, { META_KEY, khex }, { META_SUM, shex } };
	int rc;

	if (!e || !t) {
		free(e);
		free(t);
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	}
	snprintf(khex, sizeof(khex), "%016" PRIx64, key);
	snprintf(shex, sizeof(shex), "%016" PRIx64, checksum(g, scores));
	for (int gi = 0; gi < g->n_groups; gi++) {
		t[gi].ndim = 1;
		t[gi].shape[0] = g->groups[gi].n_units;
		t[gi].data = scores[gi];
		e[gi].name = g->groups[gi].name;
		e[gi].tensor = &t[gi];
	}
	rc = iap_safetensors_write(path, e, g->n_groups, meta, (int)(sizeof(meta) / sizeof(meta[0])), err);
	free(e);
	free(t);
	return rc;
}
