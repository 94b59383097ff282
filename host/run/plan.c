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

#include "calls.h"
#include "plan.h"

#define RUNTIME_BYTES ((uint64_t)256 << 20)

static uint64_t max3(uint64_t a, uint64_t b, uint64_t c)
{
	uint64_t m = a > b ? a : b;

	return m > c ? m : c;
}

static int clamp(int batch, int64_t count)
{
	return count > 0 && count < batch ? (int)count : batch;
}

int iap_run_plan_memory(const struct iap_run_plan *p, uint64_t *need, struct iap_error *err)
{
	const struct iap_dataset_info *info = &p->splits[IAP_SPLIT_TRAIN].info;
	struct iap_graph *g = NULL;
	uint64_t sample = sizeof(float), images = 0, data, peak;
	char what[256];
	int64_t largest = 1;
	int rc, batch;

	*need = 0;
	iap_graph_planning(1);
	rc = iap_call_build(p->model, p->model_opts, info, &g, err);
	iap_graph_planning(0);
	if (rc)
		return rc;
	for (int d = 0; d < info->in_ndim; d++)
		sample = info->in_shape[d] > 0 && sample <= UINT64_MAX / (uint64_t)info->in_shape[d]
				 ? sample * (uint64_t)info->in_shape[d] : UINT64_MAX;
	for (int s = 0; s < IAP_SPLIT_COUNT; s++) {
		images += (uint64_t)(p->splits[s].count > 0 ? p->splits[s].count : 0);
		largest = p->splits[s].count > largest ? p->splits[s].count : largest;
	}
	/* Datasets keep decoded samples once loaded (medmnist's cache, the folder readers' cache). */
	data = images && sample > UINT64_MAX / images ? UINT64_MAX : images * sample;
	/* A batch never holds more samples than the largest split (the train split for training). */
	peak = max3(p->train_batch ? iap_graph_memory(g, clamp(p->train_batch, p->splits[IAP_SPLIT_TRAIN].count), 1, 1) : 0,
		    iap_graph_memory(g, clamp(p->eval_batch, largest), 0, 0),
		    iap_graph_memory(g, clamp(p->score_batch, largest), 0, 1));
	/* The program itself: libraries, OpenBLAS's per-thread buffers, im2col workspaces (measured ~200 MB). */
	peak = peak > UINT64_MAX - RUNTIME_BYTES ? UINT64_MAX : peak + RUNTIME_BYTES;
	*need = data > UINT64_MAX - peak ? UINT64_MAX : data + peak;
	batch = clamp(p->eval_batch, largest);
	if (p->train_batch && clamp(p->train_batch, p->splits[IAP_SPLIT_TRAIN].count) > batch)
		batch = clamp(p->train_batch, p->splits[IAP_SPLIT_TRAIN].count);
	snprintf(what, sizeof(what), "model '%s' (%" PRId64 " parameters, batch size %d) with %" PRIu64 " images",
		 p->model->desc->name, iap_graph_param_count(g, NULL), batch, images);
	iap_graph_free(g);
	return iap_memory_check(what, *need, err);
}
