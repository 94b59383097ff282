/*
 * The scoring stage: unit scores for every attribution x sampler, read
 * from the score cache (score_cache.h) or computed and cached.
 */
#include "config.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "items.h"
#include "stages.h"

/* What the scores depend on: the weights, the method and its options, the samples. */
static uint64_t score_key(const struct run *r, const struct config *c)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	char buf[512];

	for (int i = 0; i < r->g->n_nodes; i++)
		for (int k = 0; k < r->g->nodes[i].n_params; k++) {
			const struct iap_param *p = &r->g->nodes[i].params[k];

			h = iap_key_bytes(h, p->key, strlen(p->key));
			h = iap_key_bytes(h, p->value.data, (size_t)iap_tensor_numel(&p->value) * sizeof(float));
		}
	h = iap_key_plugin(h, c->attr->plugin);
	h = iap_key_bytes(h, c->attr->plugin->desc->name, strlen(c->attr->plugin->desc->name));
	h = iap_key_bytes(h, c->attr->plugin->desc->version, strlen(c->attr->plugin->desc->version));
	for (int i = 0; i < iap_opts_count(c->attr->opts); i++) {
		const char *n = iap_opts_name(c->attr->opts, i);

		iap_opts_format(c->attr->opts, i, buf, sizeof(buf));
		h = iap_key_bytes(h, n, strlen(n));
		h = iap_key_bytes(h, buf, strlen(buf));
	}
	if (c->smp)
		h = iap_key_bytes(h, c->smp->idx, (size_t)c->smp->n * sizeof(int64_t));
	return h;
}

static int alloc_scores(struct run *r, struct config *c)
{
	c->scores = calloc((size_t)r->g->n_groups + 1, sizeof(*c->scores));
	if (!c->scores)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int gi = 0; gi < r->g->n_groups; gi++) {
		c->scores[gi] = calloc((size_t)r->g->groups[gi].n_units + 1, sizeof(float));
		if (!c->scores[gi])
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	iap_contract_scores_arm(r->g, c->scores);
	return IAP_OK;
}

/*
 * Cached scores for key (score_cache.h); 1 when found and verified. A file
 * that fails verification is named, removed and recomputed.
 */
static int load_cached(struct run *r, struct config *c, const char *path, uint64_t key)
{
	struct iap_error why;
	int got;

	iap_error_clear(&why);
	got = iap_score_cache_load(path, key, r->g, c->scores, &why);
	if (got < 0) {
		run_say(r, IAP_LOG_WARN, "%s; discarded, the scores are computed again", why.msg);
		if (unlink(path) != 0)
			run_say(r, IAP_LOG_WARN, "%s: cannot remove: %s", path, strerror(errno));
	}
	return got == 1;
}

static int save_cached(struct run *r, struct config *c, const char *path, uint64_t key)
{
	return iap_score_cache_save(path, key, r->g, c->scores, r->err);
}

/*
 * c's attribution over its samples on the model as it is (masks included),
 * into scores[g][u] (zeroed first); every score checked finite.
 */
int run_score_units(struct run *r, const struct config *c, float *const *scores)
{
	const struct iap_dataset *train = &r->split[IAP_SPLIT_TRAIN];
	struct iap_tensor x = { 0 };
	int labels[SCORE_BATCH];
	void *state = NULL;
	int rc;

	for (int gi = 0; gi < r->g->n_groups; gi++)
		memset(scores[gi], 0, (size_t)r->g->groups[gi].n_units * sizeof(float));
	iap_contract_scores_arm(r->g, scores);
	rc = iap_call_create(c->attr->plugin, c->attr->opts, r->g, &state, r->err);
	if (rc) {
		iap_error_prefix(r->err, "attribution '%s'", c->attr->name);
		return rc;
	}
	iap_graph_set_training(r->g, 0);
	if (!c->smp) {
		/* Data-free criteria: one call on one sample so the graph has run once. */
		int64_t first = 0;

		rc = run_load_batch(r, train, &first, 1, &x, labels);
		if (!rc)
			rc = iap_call_attribute_batch(c->attr->plugin, state, c->attr->opts, r->g, &x, labels, scores, NULL,
						      r->err);
	} else {
		for (int64_t s = 0; !rc && s < c->smp->n; s += SCORE_BATCH) {
			int n = (int)(c->smp->n - s < SCORE_BATCH ? c->smp->n - s : SCORE_BATCH);

			rc = run_load_batch(r, train, c->smp->idx + s, n, &x, labels);
			if (!rc)
				rc = iap_call_attribute_batch(c->attr->plugin, state, c->attr->opts, r->g, &x, labels,
							      scores, NULL, r->err);
			run_progress(r, c->attr->name, s + n, c->smp->n);
		}
		if (!rc)
			iap_scores_finish(r->g, c->attr->opts, c->smp->n, scores);
	}
	iap_call_destroy(c->attr->plugin, state);
	iap_tensor_free(&x);
	if (rc) {
		iap_error_prefix(r->err, "attribution '%s'", c->attr->name);
		return rc;
	}
	return iap_contract_scores(c->attr->plugin, r->g, scores, r->err);
}

/* The key of c's scores: score_key and the samples' content (the same indices into a changed file are other samples). */
static int job_key(struct run *r, const struct config *c, uint64_t *key)
{
	*key = score_key(r, c);
	if (!c->smp)
		return IAP_OK;
	return iap_key_samples(key, &r->split[IAP_SPLIT_TRAIN], c->smp->idx, c->smp->n, r->err);
}

/* A scoring job's work, on any rank: its configuration's scores, as bytes. */
static int score_work(void *ctx, int64_t item, void **blob, size_t *len, struct iap_error *err)
{
	struct run *r = ctx;
	struct config *c = &r->cfg[item];
	struct run_buf b = { 0 };
	int rc;

	run_say(r, IAP_LOG_STAGE, "scoring units with %s on %s", c->attr->name,
		c->smp ? c->smp->name : "the weights alone");
	rc = run_score_units(r, c, c->scores);
	if (!rc) {
		run_put_scores(&b, r->g, c->scores);
		if (b.bad)
			rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	}
	if (rc) {
		free(b.p);
		if (err != r->err)
			*err = *r->err;
		return rc;
	}
	*blob = b.p;
	*len = b.len;
	return IAP_OK;
}

/* Rank 0, before the hand-out: jobs in the score cache are ready. */
static int preload_cached(struct run *r, struct run_items *it, const struct run_score_job *jobs, char *cached)
{
	char name[128];

	for (int64_t i = 0; i < it->n; i++) {
		struct config *c = &r->cfg[jobs[i].config];
		struct run_buf b = { 0 };

		if (it->res[i].ready)
			continue;
		snprintf(name, sizeof(name), "cache/scores-%016" PRIx64 ".safetensors", jobs[i].key);
		if (!load_cached(r, c, run_outpath(r, name), jobs[i].key))
			continue;
		run_say(r, IAP_LOG_INFO, "scores of %s / %s: from the cache", c->attr->name, c->smp ? c->smp->name : "-");
		run_put_scores(&b, r->g, c->scores);
		if (b.bad)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		it->res[i] = (struct iap_dist_result){ b.p, b.len, 1, -1 };
		cached[i] = 1;
	}
	return IAP_OK;
}

/*
 * The jobs through the work distribution and the journal: cached or
 * journaled ones preloaded on rank 0, the others computed on whichever rank
 * asks (and cached on rank 0), then every rank takes every job's scores.
 */
static int run_score_jobs(struct run *r, const struct run_score_job *jobs)
{
	struct run_items it;
	struct run_buf all = { 0 };
	struct run_rd d;
	char name[128], *cached = calloc((size_t)r->n_cfg + 1, 1);
	int rc = run_items_init(&it, r, "scoring", r->n_cfg);

	if (!rc && !cached)
		rc = iap_error_set(r->err, IAP_ENOMEM, "out of memory");

	for (int i = 0; !rc && i < r->n_cfg; i++) {
		const struct config *c = &r->cfg[jobs[i].config];

		rc = alloc_scores(r, &r->cfg[jobs[i].config]);
		snprintf(it.labels[i], sizeof(it.labels[i]), "scores %s/%s", c->attr->name, c->smp ? c->smp->name : "-");
		it.keys[i] = iap_journal_key(jobs[i].key, it.labels[i]);
	}
	/* The cache first (it checks its values; a bad file is named and recomputed), then the journal. */
	if (!rc && r->rank == 0) {
		rc = preload_cached(r, &it, jobs, cached);
		run_items_preload(&it);
	}
	rc = rc ? rc : run_items_run(&it, score_work, r);
	for (int i = 0; !rc && r->rank == 0 && i < r->n_cfg; i++) {
		/* Computed now or taken from the journal: into the cache (again, after a bad file was removed). */
		if (cached[i])
			continue;
		d = (struct run_rd){ it.res[i].blob, it.res[i].len, 0, 0 };
		snprintf(name, sizeof(name), "cache/scores-%016" PRIx64 ".safetensors", jobs[i].key);
		if (run_get_scores(&d, r->g, r->cfg[jobs[i].config].scores))
			rc = iap_error_set(r->err, IAP_EIO, "%s: a result of the wrong size", it.labels[i]);
		rc = rc ? rc : iap_mkdir_p(run_outpath(r, "cache"), r->err);
		rc = rc ? rc : save_cached(r, &r->cfg[jobs[i].config], run_outpath(r, name), jobs[i].key);
	}
	rc = rc ? rc : run_items_share(&it, &all);
	d = (struct run_rd){ all.p, all.len, 0, 0 };
	for (int i = 0; !rc && i < r->n_cfg; i++) {
		struct run_rd one;
		uint64_t n = run_rd_u64(&d);

		one = (struct run_rd){ d.p + d.at, d.bad || n > d.len - d.at ? 0 : (size_t)n, 0, 0 };
		d.at += one.len;
		if (d.bad || one.len != n || run_get_scores(&one, r->g, r->cfg[jobs[i].config].scores) ||
		    one.at != one.len)
			rc = iap_error_set(r->err, IAP_EIO, "%s: a damaged result", it.labels[i]);
	}
	free(all.p);
	free(cached);
	run_items_free(&it);
	return rc;
}

/* Data-free criteria ranked per layer (pruning.baseline_ranking) before the global ranking. */
static int normalize_data_free(struct run *r, struct config *c)
{
	int *n_units;

	if (!(c->attr->plugin->desc->ops.attribution->flags & IAP_ATTR_DATA_FREE) || r->ranking == IAP_RANK_RAW)
		return IAP_OK;
	n_units = malloc(((size_t)r->g->n_groups + 1) * sizeof(int));
	if (!n_units)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int gi = 0; gi < r->g->n_groups; gi++)
		n_units[gi] = r->g->groups[gi].n_units;
	iap_scores_normalize((enum iap_ranking)r->ranking, r->g->n_groups, n_units, c->scores);
	free(n_units);
	return IAP_OK;
}

/* The pipeline's attributions, and every attribution × sampler configuration (data-free: one, without samples). */
static int plan_configs(struct run *r)
{
	for (int i = 0; i < r->p->n_attributions && i < 16; i++) {
		const struct iap_pipeline_attribution *pa = &r->p->attributions[i];
		struct attribution *a = &r->attr[r->n_attr];

		memset(a, 0, sizeof(*a));
		a->plugin = pa->ref.plugin;
		a->opts = pa->ref.opts;
		r->n_attr++;
		snprintf(a->name, sizeof(a->name), "%s", pa->name);
	}
	for (int i = 0; i < r->n_attr; i++) {
		int data_free = (r->attr[i].plugin->desc->ops.attribution->flags & IAP_ATTR_DATA_FREE) != 0;
		int n = data_free ? 1 : r->n_smp;

		if (!data_free && r->n_smp == 0)
			return iap_error_set(r->err, IAP_EINVAL,
					     "attribution '%s' needs samples, but the pipeline has no 'sampling' list",
					     r->attr[i].name);
		for (int s = 0; s < n; s++) {
			struct config *c = &r->cfg[r->n_cfg];

			if (r->n_cfg == MAX_CONFIGS)
				return iap_error_set(r->err, IAP_EINVAL, "more than %d attribution × sampler configurations",
						     MAX_CONFIGS);
			memset(c, 0, sizeof(*c));
			c->attr = &r->attr[i];
			c->smp = data_free ? NULL : &r->smp[s];
			c->th_lo = c->th_hi = NAN;
			c->index = r->n_cfg++;
		}
	}
	return IAP_OK;
}

/*
 * The scoring stage: the configurations, one scoring job per configuration
 * keyed by its scores' key, the jobs run through the journal and the work
 * distribution (one at a time in a single process).
 */
int run_stage_scoring(struct run *r)
{
	struct run_score_job *jobs;
	int rc;

	if (r->p->n_attributions == 0)
		return iap_error_set(r->err, IAP_EINVAL,
				     "the pipeline has no 'attribution' list (run and prune need at least one method)");
	r->ranking = r->p->pruning.baseline_ranking;
	rc = plan_configs(r);
	if (rc)
		return rc;
	jobs = calloc((size_t)r->n_cfg + 1, sizeof(*jobs));
	if (!jobs)
		return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
	for (int i = 0; !rc && i < r->n_cfg; i++) {
		jobs[i].config = i;
		rc = job_key(r, &r->cfg[i], &jobs[i].key);
		r->cfg[i].key = jobs[i].key;
	}
	rc = rc ? rc : run_score_jobs(r, jobs);
	for (int i = 0; !rc && i < r->n_cfg; i++)
		rc = normalize_data_free(r, &r->cfg[jobs[i].config]);
	free(jobs);
	return rc;
}
