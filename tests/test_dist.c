/*
 * The serial backend of the work distribution: outside mpirun every build
 * (with MPI or without) runs the items in order in this process, skips the
 * preloaded ones, reports each result and the progress, and names the item
 * that failed.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/dist.h>

struct log {
	int64_t order[16];
	int n_work, n_result, n_progress;
	int64_t last_done, last_todo, last_per_rank0;
	int64_t fail_at;
};

static int work(void *arg, int64_t item, void **blob, size_t *len, struct iap_error *err)
{
	struct log *l = arg;
	int64_t *v;

	l->order[l->n_work++] = item;
	if (item == l->fail_at)
		return iap_error_set(err, IAP_ENUMERIC, "scores not finite");
	v = malloc(sizeof(*v));
	if (!v)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	*v = item * item + 7;
	*blob = v;
	*len = sizeof(*v);
	return IAP_OK;
}

static int on_result(void *arg, int64_t item, int rank, const void *blob, size_t len, struct iap_error *err)
{
	struct log *l = arg;

	(void)err;
	assert_int_equal(rank, 0);
	assert_int_equal(len, sizeof(int64_t));
	assert_int_equal(*(const int64_t *)blob, item * item + 7);
	l->n_result++;
	return IAP_OK;
}

static void progress(void *arg, const struct iap_dist_progress *p)
{
	struct log *l = arg;

	assert_int_equal(p->n_ranks, 1);
	l->n_progress++;
	l->last_done = p->done;
	l->last_todo = p->todo;
	l->last_per_rank0 = p->per_rank[0];
}

static void name(void *arg, int64_t item, char *buf, size_t size)
{
	(void)arg;
	snprintf(buf, size, "row %d", (int)item * 10);
}

static void test_serial_in_order(void **state)
{
	struct iap_error err = { 0 };
	struct iap_dist *d;
	struct log l = { .fail_at = -1 };
	struct iap_dist_result res[6] = { 0 };
	struct iap_dist_queue q = { .work = work, .ctx = &l, .n_items = 6, .results = res,
				    .on_result = on_result, .progress = progress, .cb_ctx = &l };

	(void)state;
	assert_int_equal(iap_dist_init(&d, NULL, NULL, &err), IAP_OK);
	assert_int_equal(iap_dist_rank(d), 0);
	assert_int_equal(iap_dist_size(d), 1);
	assert_string_equal(iap_dist_backend(d), "serial");
	/* Item 2 is already there (from a journal): it is not run again and keeps its bytes. */
	res[2].ready = 1;
	res[2].rank = -1;
	assert_int_equal(iap_dist_run(d, &q, &err), IAP_OK);
	assert_int_equal(l.n_work, 5);
	assert_int_equal(l.order[0], 0);
	assert_int_equal(l.order[1], 1);
	assert_int_equal(l.order[2], 3);
	assert_int_equal(l.order[4], 5);
	assert_int_equal(l.n_result, 5);
	assert_int_equal(l.n_progress, 5);
	assert_int_equal(l.last_done, 5);
	assert_int_equal(l.last_todo, 5);
	assert_int_equal(l.last_per_rank0, 5);
	for (int i = 0; i < 6; i++) {
		assert_true(res[i].ready);
		if (i == 2) {
			assert_null(res[i].blob);
			assert_int_equal(res[i].rank, -1);
			continue;
		}
		assert_int_equal(res[i].len, sizeof(int64_t));
		assert_int_equal(*(int64_t *)res[i].blob, (int64_t)i * i + 7);
		free(res[i].blob);
	}
	iap_dist_finalize(d);
}

static void test_serial_failure_names_item(void **state)
{
	struct iap_error err = { 0 };
	struct log l = { .fail_at = 3 };
	struct iap_dist_result res[6] = { 0 };
	struct iap_dist_queue q = { .work = work, .ctx = &l, .n_items = 6, .results = res, .name = name };

	(void)state;
	/* No handle at all is the serial backend too. */
	assert_int_equal(iap_dist_run(NULL, &q, &err), IAP_ENUMERIC);
	assert_string_equal(err.msg, "row 30: scores not finite");
	/* Stops at the failure: items after it never run. */
	assert_int_equal(l.n_work, 4);
	for (int i = 0; i < 3; i++) {
		assert_true(res[i].ready);
		free(res[i].blob);
	}
	assert_false(res[3].ready);
	assert_false(res[4].ready);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_serial_in_order),
		cmocka_unit_test(test_serial_failure_names_item),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
