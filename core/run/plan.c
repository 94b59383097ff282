/*
 * The memory check at the start of a run (see plan.h). The model plugin's
 * own build runs in planning mode, so the estimate sees exactly the layers
 * and shapes the run will use (a classifier of num_classes outputs, every
 * activation at image_size) without allocating any of them.
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>

#include <iaprune/memory.h>

#include "plan.h"

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a > b ? a : b;

	return m > c ? m : c;
}

int iap_run_plan_memory(const struct iap_run_plan *p, uint64_t *need, struct iap_error *err)
{
	const struct iap_dataset_info *info = &p->splits[IAP_SPLIT_TRAIN].info;
	struct iap_graph *g = NULL;
	uint64_t sample = sizeof(float), images = 0, data, peak;
	char what[256];
	int rc, batch;

	*need = 0;
	iap_graph_planning(1);
	rc = p->model->desc->ops.model->build(p->model_opts, info, &g, err);
	iap_graph_planning(0);
	if (rc)
		return rc;
	for (int d = 0; d < info->in_ndim; d++)
		sample = info->in_shape[d] > 0 && sample <= UINT64_MAX / (uint64_t)info->in_shape[d]
				 ? sample * (uint64_t)info->in_shape[d] : UINT64_MAX;
	for (int s = 0; s < IAP_SPLIT_COUNT; s++)
		images += (uint64_t)(p->splits[s].count > 0 ? p->splits[s].count : 0);
	/* Datasets keep decoded samples once loaded (medmnist's cache, the folder readers' cache). */
	data = images && sample > UINT64_MAX / images ? UINT64_MAX : images * sample;
	peak = max3(p->train_batch ? iap_graph_memory(g, p->train_batch, 1, 1) : 0,
		    iap_graph_memory(g, p->eval_batch, 0, 0), iap_graph_memory(g, p->score_batch, 0, 1));
	*need = data > UINT64_MAX - peak ? UINT64_MAX : data + peak;
	batch = p->train_batch > p->eval_batch ? p->train_batch : p->eval_batch;
	snprintf(what, sizeof(what), "model '%s' (%" PRId64 " parameters, batch size %d) with %" PRIu64 " images",
		 p->model->desc->name, iap_graph_param_count(g, NULL), batch, images);
	iap_graph_free(g);
	return iap_memory_check(what, *need, err);
}
