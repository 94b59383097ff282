/*
 * The sampling stage: every sampler picks k per class from the train split.
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

#include "stages.h"

int run_stage_sampling(struct run *r)
{
	const struct iap_dataset *train = &r->split[IAP_SPLIT_TRAIN];
	int rc;

	for (int i = 0; i < r->p->n_samplers && i < 16; i++) {
		const struct iap_pipeline_sampler *ps = &r->p->samplers[i];
		struct sampling *s = &r->smp[r->n_smp];
		struct iap_rng rng;
		struct iap_error warn;

		memset(s, 0, sizeof(*s));
		s->plugin = ps->ref.plugin;
		s->opts = ps->ref.opts;
		r->n_smp++;
		snprintf(s->name, sizeof(s->name), "%s", ps->name);
		s->per_class = ps->per_class;
		s->idx = calloc((size_t)s->per_class * (size_t)train->info.n_classes + 1, sizeof(*s->idx));
		if (!s->idx)
			return iap_error_set(r->err, IAP_ENOMEM, "out of memory");
		iap_rng_seed(&rng, r->seed + 101u * (uint64_t)(i + 1));
		iap_error_clear(&warn);
		run_say(r, IAP_LOG_STAGE, "sampling %d per class with '%s'", s->per_class, s->name);
		rc = iap_call_select(s->plugin, s->opts, train, r->g, &rng, s->per_class, s->idx, &s->n, &warn);
		if (rc) {
			*r->err = warn;
			iap_error_prefix(r->err, "sampler '%s'", s->name);
			return rc;
		}
		rc = iap_contract_samples(s->plugin, train, s->per_class, s->idx, s->n, r->err);
		if (rc)
			return rc;
		if (warn.msg[0])
			run_say(r, IAP_LOG_WARN, "%s", warn.msg);
	}
	return IAP_OK;
}
