/*
 * How iap_predict() spreads a batch over the threads (library-internal; the
 * benchmark and the tests pick a way explicitly to compare them).
 */
#ifndef IAP_CORE_EVAL_PREDICT_SPLIT_H
#define IAP_CORE_EVAL_PREDICT_SPLIT_H

#include <iaprune/predict.h>

enum iap_eval_split {
	IAP_EVAL_SPLIT_AUTO = 0,   /* what iap_predict() does: the rule in predict.c */
	IAP_EVAL_SPLIT_OPS,        /* the whole batch through one forward, each op split over the threads */
	IAP_EVAL_SPLIT_BATCH,      /* a slice of the batch per thread, each through its own forward */
};

/* iap_predict() with the split chosen by the caller; the results are the same bits either way. */
int iap_predict_split(struct iap_graph *g, const struct iap_dataset *ds, int batch, enum iap_eval_split how,
		      float *probs, int *labels, struct iap_error *err);

#endif
