/*
 * Nothing lost, nothing silently wrong (issue #9):
 *   - a child process rewriting a large safetensors file (or a long report)
 *     in a loop is killed with SIGKILL at a random moment; the earlier
 *     output must be intact and the final name must hold either nothing or
 *     a complete file, never half of one;
 *   - a NaN or Inf weight makes the forward pass fail with a message naming
 *     the layer where the value first became non-finite.
 */
#include "config.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <iaprune/atomic.h>
#include <iaprune/graph.h>
#include <iaprune/ops.h>
#include <iaprune/rng.h>
#include <iaprune/safetensors.h>

#include "testutil.h"

/* 2 M floats: writing takes long enough for the kill to land mid-write. */
#define BIG (2 * 1024 * 1024)
#define REPORT_LINES 200000
#define KILLS 6

static char dir[256];

static const char *tpath(const char *name)
{
	static char buf[4][512];
	static int k;

	k = (k + 1) % 4;
	snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
	return buf[k];
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "%s/iap-rel.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	(void)state;
	if (d) {
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				unlink(tpath(e->d_name));
		closedir(d);
	}
	rmdir(dir);
	return 0;
}

/* Write a [BIG] tensor whose every element is `gen`, with gen in the metadata. */
static int write_generation(const char *path, float *buf, int gen)
{
	struct iap_tensor t = { 0 };
	struct iap_st_entry e = { "w", &t };
	struct iap_st_meta m;
	struct iap_error err;
	char v[32];

	for (int64_t i = 0; i < BIG; i++)
		buf[i] = (float)gen;
	t.ndim = 1;
	t.shape[0] = BIG;
	t.data = buf;
	snprintf(v, sizeof(v), "%d", gen);
	m.key = (char *)"generation";
	m.value = v;
	return iap_safetensors_write(path, &e, 1, &m, 1, &err);
}

/*
 * Open path and check it is a whole generation file: returns the generation
 * (>= 0) or -1 when the file is not complete and consistent.
 */
static int check_generation(const char *path)
{
	struct iap_safetensors *st;
	const struct iap_st_tensor *t;
	struct iap_error err;
	const char *g;
	float *buf;
	int gen, ok = 1;

	if (iap_safetensors_open(path, &st, &err)) {
		print_error("%s\n", err.msg);
		return -1;
	}
	g = iap_safetensors_meta(st, "generation");
	t = iap_safetensors_find(st, "w");
	if (!g || !t || t->numel != BIG) {
		iap_safetensors_close(st);
		return -1;
	}
	gen = atoi(g);
	buf = malloc(BIG * sizeof(float));
	assert_non_null(buf);
	if (iap_safetensors_read_f32(st, t, buf, &err))
		ok = 0;
	for (int64_t i = 0; ok && i < BIG; i++)
		ok = buf[i] == (float)gen;
	free(buf);
	iap_safetensors_close(st);
	return ok ? gen : -1;
}

/* Number of entries in dir whose name starts with prefix. */
static int count_prefixed(const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
	closedir(d);
	return n;
}

/* Remove leftover temporary files of `name` (a killed writer cannot clean up). */
static void remove_temps(const char *name)
{
	char prefix[128];
	DIR *d = opendir(dir);
	struct dirent *e;

	snprintf(prefix, sizeof(prefix), "%s.tmp.", name);
	assert_non_null(d);
	while ((e = readdir(d)))
		if (!strncmp(e->d_name, prefix, strlen(prefix)))
			unlink(tpath(e->d_name));
	closedir(d);
}

/* Fork a child running fn forever; kill it with SIGKILL after `us` microseconds. */
static void run_and_kill(void (*fn)(void), useconds_t us)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		fn();
		_exit(0);
	}
	usleep(us);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* The child must have died of the kill, not finished or crashed on its own. */
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

static void weights_writer(void)
{
	float *buf = malloc(BIG * sizeof(float));

	if (!buf)
		_exit(3);
	for (int gen = 2;; gen++)
		if (write_generation(tpath("model.safetensors"), buf, gen))
			_exit(4);
}

static void test_kill_mid_weights_write(void **state)
{
	float *buf = malloc(BIG * sizeof(float));
	struct iap_rng rng;

	(void)state;
	assert_non_null(buf);
	iap_rng_seed(&rng, (uint64_t)time(NULL));
	/* An earlier result in the same directory, and generation 1 of the file being rewritten. */
	assert_int_equal(write_generation(tpath("earlier.safetensors"), buf, 7), IAP_OK);
	assert_int_equal(write_generation(tpath("model.safetensors"), buf, 1), IAP_OK);
	free(buf);
	for (int k = 0; k < KILLS; k++) {
		/* Anywhere from before the first write finishes to several writes in. */
		useconds_t us = (useconds_t)(2000 + iap_rng_below(&rng, 150000));

		run_and_kill(weights_writer, us);
		assert_int_equal(check_generation(tpath("earlier.safetensors")), 7);
		/* The final name holds a whole generation: the old one or a newer one, never a torn one. */
		assert_true(check_generation(tpath("model.safetensors")) >= 1);
		remove_temps("model.safetensors");
	}
	assert_int_equal(count_prefixed("model.safetensors"), 1);
}

/* A "report": REPORT_LINES numbered lines and a closing line, written atomically. */
static int write_report(const char *path, int gen)
{
	struct iap_atomic_file af;
	struct iap_error err;

	if (iap_atomic_open(&af, path, &err))
		return -1;
	for (int i = 0; i < REPORT_LINES; i++)
		fprintf(af.fp, "%d,%d,layer%d,0.%06d\n", gen, i, i % 17, i);
	fprintf(af.fp, "end of report %d\n", gen);
	return iap_atomic_commit(&af, &err) ? -1 : 0;
}

/* The report's generation when it is complete, else -1. */
static int check_report(const char *path)
{
	FILE *f = fopen(path, "r");
	char line[128];
	int lines = 0, gen = -1, g, i, end = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "end of report %d", &end) == 1)
			break;
		if (sscanf(line, "%d,%d,", &g, &i) != 2 || i != lines || (gen >= 0 && g != gen))
			break;
		gen = g;
		lines++;
	}
	fclose(f);
	return lines == REPORT_LINES && end == gen ? gen : -1;
}

static void report_writer(void)
{
	for (int gen = 2;; gen++)
		if (write_report(tpath("report.csv"), gen))
			_exit(4);
}

static void test_kill_mid_report_write(void **state)
{
	struct iap_rng rng;

	(void)state;
	iap_rng_seed(&rng, (uint64_t)time(NULL) ^ 0x5eed);
	assert_int_equal(write_report(tpath("earlier.csv"), 9), 0);
	assert_int_equal(check_report(tpath("earlier.csv")), 9);
	for (int k = 0; k < KILLS; k++) {
		useconds_t us = (useconds_t)(1000 + iap_rng_below(&rng, 100000));

		run_and_kill(report_writer, us);
		assert_int_equal(check_report(tpath("earlier.csv")), 9);
		/* Killed before the first rename: no file at all; after: a complete one. */
		if (access(tpath("report.csv"), F_OK) == 0)
			assert_true(check_report(tpath("report.csv")) >= 2);
		remove_temps("report.csv");
	}
}

/* An aborted write leaves the destination as it was and no temporary file. */
static void test_abort_keeps_old(void **state)
{
	struct iap_atomic_file af;
	struct iap_error err;

	(void)state;
	assert_int_equal(write_report(tpath("kept.csv"), 3), 0);
	assert_int_equal(iap_atomic_open(&af, tpath("kept.csv"), &err), IAP_OK);
	fprintf(af.fp, "half a report\n");
	iap_atomic_abort(&af);
	assert_int_equal(check_report(tpath("kept.csv")), 3);
	assert_int_equal(count_prefixed("kept.csv"), 1);
}

/* conv1 (3x3) → relu → flatten → fc: a small CNN with named layers. */
static struct iap_graph *small_cnn(void)
{
	static const int64_t in_shape[3] = { 2, 6, 6 };
	struct iap_error err;
	struct iap_graph *g = iap_graph_new(3, in_shape, &err);
	int n;

	assert_non_null(g);
	n = iap_conv2d(g, "features.0", IAP_GRAPH_INPUT, 4, 3, 3, 1, 1, 1, 1, 1);
	n = iap_relu(g, "features.1", n);
	n = iap_flatten(g, "flatten", n);
	iap_linear(g, "classifier", n, 3, 1);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	tu_randomize_params(g, 42, 0.5f);
	return g;
}

static struct iap_param *param(struct iap_graph *g, const char *key)
{
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++)
			if (!strcmp(g->nodes[i].params[k].key, key))
				return &g->nodes[i].params[k];
	fail_msg("no parameter %s", key);
	return NULL;
}

/* A [n, 2, 6, 6] input uniform in [-1, 1). */
static struct iap_tensor input(uint64_t seed, int64_t n)
{
	return tu_rand_tensor(seed, 4, n, (int64_t)2, (int64_t)6, (int64_t)6);
}

static void test_forward_finite_passes(void **state)
{
	struct iap_graph *g = small_cnn();
	struct iap_tensor x = input(1, 2);
	struct iap_error err = { 0, "" };
	const struct iap_tensor *y;

	(void)state;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	y = iap_graph_output(g);
	assert_non_null(y);
	for (int64_t i = 0; i < iap_tensor_numel(y); i++)
		assert_true(isfinite(y->data[i]));
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_nan_weight_names_layer(void **state)
{
	struct iap_graph *g = small_cnn();
	struct iap_tensor x = input(2, 2);
	struct iap_error err = { 0, "" };

	(void)state;
	/* Behind the ReLU this NaN could vanish from the logits: it is caught at the weights. */
	param(g, "features.0.weight")->value.data[5] = NAN;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_ENUMERIC);
	assert_string_equal(err.msg,
			    "forward: parameter 'features.0.weight' of layer 'features.0' (conv2d) holds NaN at element 5");
	/* Repaired, the same graph runs again. */
	param(g, "features.0.weight")->value.data[5] = 0.25f;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_inf_bias_names_layer(void **state)
{
	struct iap_graph *g = small_cnn();
	struct iap_tensor x = input(3, 1);
	struct iap_error err = { 0, "" };

	(void)state;
	param(g, "classifier.bias")->value.data[2] = -INFINITY;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_ENUMERIC);
	assert_string_equal(err.msg,
			    "forward: parameter 'classifier.bias' of layer 'classifier' (linear) holds Inf at element 2");
	iap_tensor_free(&x);
	iap_graph_free(g);
}

static void test_nan_input_refused(void **state)
{
	struct iap_graph *g = small_cnn();
	struct iap_tensor x = input(4, 3);
	struct iap_error err = { 0, "" };

	(void)state;
	/* Element 2*72 + 5 is in sample 2 (72 values per sample). */
	x.data[2 * 72 + 5] = NAN;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_ENUMERIC);
	assert_string_equal(err.msg, "forward: the input holds NaN at element 149 (sample 2)");
	iap_tensor_free(&x);
	iap_graph_free(g);
}

/*
 * Finite weights and input whose products overflow: the conv output is
 * finite (|.| <= 18 * 1e30 * 1), the classifier's (64 * 1e30 * 1e30) is
 * not, so the classifier is named as the layer where it started.
 */
static void test_overflow_names_first_layer(void **state)
{
	struct iap_graph *g = small_cnn();
	struct iap_tensor x = input(5, 2);
	struct iap_error err = { 0, "" };
	struct iap_param *w0 = param(g, "features.0.weight"), *w1 = param(g, "classifier.weight");

	(void)state;
	for (int64_t i = 0; i < iap_tensor_numel(&x); i++)
		x.data[i] = 1.0f;
	for (int64_t i = 0; i < iap_tensor_numel(&w0->value); i++)
		w0->value.data[i] = 1e30f;
	for (int64_t i = 0; i < iap_tensor_numel(&w1->value); i++)
		w1->value.data[i] = 1e30f;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_ENUMERIC);
	assert_non_null(strstr(err.msg, "forward: non-finite value ("));
	assert_non_null(strstr(err.msg, ") in the output of layer 'classifier' (linear) at element "));
	iap_tensor_free(&x);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_kill_mid_weights_write),
		cmocka_unit_test(test_kill_mid_report_write),
		cmocka_unit_test(test_abort_keeps_old),
		cmocka_unit_test(test_forward_finite_passes),
		cmocka_unit_test(test_nan_weight_names_layer),
		cmocka_unit_test(test_inf_bias_names_layer),
		cmocka_unit_test(test_nan_input_refused),
		cmocka_unit_test(test_overflow_names_first_layer),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
