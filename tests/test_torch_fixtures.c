/*
 * The core engine against PyTorch: each case rebuilds a small torchvision-style
 * net with the op builders, loads the parameters gen_fixtures.py saved under
 * their state_dict keys, and checks the forward output, the gradient of
 * sum(output * upstream) w.r.t. the input and w.r.t. every trainable parameter
 * (and, in training mode, the BatchNorm running statistics after the forward).
 *
 * The reference was computed in float64 from float32 inputs, so the tolerance
 * only has to absorb our own float32 rounding:
 *     max|a - b| <= 1e-4 * max|b| + 1e-6   per tensor.
 *
 * Fixtures are found in $IAP_TEST_SRCDIR/tests/fixtures/ (set by the harness).
 */
#include "config.h"

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "fixture.h"

#define REL_TOL 1e-4
#define ABS_TOL 1e-6

/* ---- helpers ------------------------------------------------------------- */

/* Load tests/fixtures/<name>.iapfx from the source tree; fails the test if absent. */
static void load_fixture(struct fx_file *fx, const char *name)
{
	const char *srcdir = getenv("IAP_TEST_SRCDIR");
	struct iap_error err = { 0 };
	char path[4096];
	int rc;

	if (!srcdir || !*srcdir)
		fail_msg("IAP_TEST_SRCDIR is not set (run through make check, or export it "
			 "to the source tree)");
	snprintf(path, sizeof(path), "%s/tests/fixtures/%s.iapfx", srcdir, name);
	rc = fx_load(fx, path, &err);
	if (rc)
		fail_msg("%s", err.msg);
}

static const struct fx_tensor *need(const struct fx_file *fx, const char *name)
{
	const struct fx_tensor *t = fx_find(fx, name);

	if (!t)
		fail_msg("fixture has no tensor '%s'", name);
	return t;
}

/* A non-owning iap_tensor over fixture data. */
static struct iap_tensor view(const struct fx_tensor *t)
{
	struct iap_tensor v = { 0 };

	if (t->ndim > IAP_MAX_DIMS)
		fail_msg("%s: %d dims do not fit an iap_tensor", t->name, t->ndim);
	v.ndim = t->ndim;
	for (int d = 0; d < t->ndim; d++)
		v.shape[d] = t->shape[d];
	v.data = t->data;
	v.owns = 0;
	return v;
}

static void fx_shape_str(const struct fx_tensor *t, char *buf, size_t len)
{
	int64_t shape[IAP_MAX_DIMS] = { 0 };
	int nd = t->ndim < IAP_MAX_DIMS ? t->ndim : IAP_MAX_DIMS;

	for (int d = 0; d < nd; d++)
		shape[d] = t->shape[d];
	iap_shape_str(nd, shape, buf, len);
}

/* Comparison results of one case: every failure is printed, the worst is summarised. */
struct cmp_report {
	int checked;
	int failed;
	double worst_ratio;          /* max over tensors of max|a-b| / tolerance */
	char worst[512];
};

/*
 * Compare got with the reference ref under the robust per-tensor metric.
 * Shape mismatches and non-finite values count as failures.
 */
static void cmp_tensor(struct cmp_report *r, const char *what, const struct iap_tensor *got,
		       const struct fx_tensor *ref)
{
	char gs[128], rs[128];
	double maxref = 0.0, maxdiff = 0.0, tol, ratio;
	int64_t where = 0;
	int same = got && got->data && got->ndim == ref->ndim;

	r->checked++;
	for (int d = 0; same && d < ref->ndim; d++)
		same = got->shape[d] == ref->shape[d];
	fx_shape_str(ref, rs, sizeof(rs));
	if (!same) {
		if (got && got->data)
			iap_tensor_shape_str(got, gs, sizeof(gs));
		else
			snprintf(gs, sizeof(gs), "(none)");
		print_error("MISMATCH %s: shape %s, PyTorch %s\n", what, gs, rs);
		r->failed++;
		r->worst_ratio = INFINITY;
		snprintf(r->worst, sizeof(r->worst), "%s: shape %s vs %s", what, gs, rs);
		return;
	}
	for (int64_t i = 0; i < ref->numel; i++) {
		double b = ref->data[i];
		double d = fabs((double)got->data[i] - b);

		if (fabs(b) > maxref)
			maxref = fabs(b);
		/* Written so that a NaN difference is taken as the worst. */
		if (!(d <= maxdiff)) {
			maxdiff = isnan(d) ? INFINITY : d;
			where = i;
		}
	}
	tol = REL_TOL * maxref + ABS_TOL;
	ratio = maxdiff / tol;
	if (!(maxdiff <= tol)) {
		print_error("MISMATCH %s %s: max|diff| %.3g at [%lld] (got %.7g, PyTorch %.7g), "
			    "tolerance %.3g (max|ref| %.4g)\n", what, rs, maxdiff, (long long)where,
			    (double)got->data[where], (double)ref->data[where], tol, maxref);
		r->failed++;
	}
	if (ratio > r->worst_ratio || r->checked == 1) {
		r->worst_ratio = ratio;
		snprintf(r->worst, sizeof(r->worst), "%s %s: max|diff| %.3g = %.3g x tolerance",
			 what, rs, maxdiff, ratio);
	}
}

static void report_done(const struct cmp_report *r, const char *name)
{
	if (r->failed)
		fail_msg("%s: %d of %d tensors differ from PyTorch; worst: %s", name, r->failed,
			 r->checked, r->worst);
	print_message("# %s: %d tensors match PyTorch; worst %s\n", name, r->checked, r->worst);
}

/* Names in a fixture that are not state_dict entries. */
static int is_state_key(const char *name)
{
	return strcmp(name, "input") && strcmp(name, "output") && strcmp(name, "upstream") &&
	       strncmp(name, "grad.", 5) && strncmp(name, "post.", 5);
}

struct param_loader {
	const struct fx_file *fx;
	char msg[512];
};

/*
 * Copy one graph parameter from the fixture (every graph parameter must be
 * there). Returns non-zero with a message instead of failing here, so the
 * test never jumps out through the library's iterator.
 */
static int load_one_param(struct iap_node *node, struct iap_param *p, void *user)
{
	struct param_loader *pl = user;
	const struct fx_tensor *t = fx_find(pl->fx, p->key);
	char gs[128], rs[128];
	int same;

	(void)node;
	if (!t) {
		snprintf(pl->msg, sizeof(pl->msg),
			 "graph parameter '%s' is not in the PyTorch state_dict", p->key);
		return 1;
	}
	same = t->ndim == p->value.ndim;
	for (int d = 0; same && d < t->ndim; d++)
		same = t->shape[d] == p->value.shape[d];
	if (!same) {
		iap_tensor_shape_str(&p->value, gs, sizeof(gs));
		fx_shape_str(t, rs, sizeof(rs));
		snprintf(pl->msg, sizeof(pl->msg), "parameter '%s': graph shape %s, PyTorch %s",
			 p->key, gs, rs);
		return 1;
	}
	memcpy(p->value.data, t->data, (size_t)t->numel * sizeof(float));
	return 0;
}

/* Load all parameters by key, and check no state_dict entry was left unused. */
static void load_params(struct iap_graph *g, struct fx_file *fx)
{
	struct param_loader pl = { .fx = fx };

	if (iap_graph_foreach_param(g, load_one_param, &pl))
		fail_msg("%s", pl.msg);
	for (int i = 0; i < fx->count; i++)
		if (is_state_key(fx->t[i].name) && !iap_graph_find_param(g, fx->t[i].name))
			fail_msg("PyTorch state_dict key '%s' has no graph parameter", fx->t[i].name);
}

static void check_ok(int rc, const struct iap_error *err, const char *what)
{
	if (rc)
		fail_msg("%s: %s (%s)", what, err->msg, iap_status_name(rc));
}

/*
 * Build with build(), load the fixture's parameters, run forward and the
 * gradient walk, and compare everything the fixture holds.
 */
static void run_graph_case(const char *name, int training,
			   void (*build)(struct iap_graph *g, int training))
{
	struct fx_file fx;
	struct iap_error err = { 0 };
	struct cmp_report rep = { 0 };
	const struct fx_tensor *in, *up;
	struct iap_tensor x, seed;
	struct iap_graph *g;
	int64_t sample[IAP_MAX_DIMS - 1];
	struct iap_walk_opts opts = { .want_param_grads = 1, .want_input = 1 };
	char key[FX_MAX_NAME + 8];
	int rc;

	load_fixture(&fx, name);
	in = need(&fx, "input");
	up = need(&fx, "upstream");
	assert_true(in->ndim >= 2 && in->ndim <= IAP_MAX_DIMS);
	for (int d = 1; d < in->ndim; d++)
		sample[d - 1] = in->shape[d];
	g = iap_graph_new(in->ndim - 1, sample, &err);
	if (!g)
		fail_msg("iap_graph_new: %s", err.msg);
	build(g, training);
	check_ok(iap_graph_finalize(g, &err), &err, "finalize");
	load_params(g, &fx);
	iap_graph_set_training(g, training);

	x = view(in);
	check_ok(iap_graph_forward(g, &x, &err), &err, "forward");
	cmp_tensor(&rep, "output", iap_graph_output(g), need(&fx, "output"));

	/*
	 * Buffers after the forward: updated running statistics in training
	 * mode ("post.<key>"), untouched ones in evaluation mode.
	 */
	for (int i = 0; i < fx.count; i++) {
		const struct fx_tensor *t = &fx.t[i], *ref;
		struct iap_param *p;

		if (!is_state_key(t->name) || !(p = iap_graph_find_param(g, t->name)) ||
		    !(p->flags & IAP_PARAM_BUFFER))
			continue;
		snprintf(key, sizeof(key), "post.%s", t->name);
		ref = fx_find(&fx, key);
		if (training && !ref)
			fail_msg("fixture lacks '%s'", key);
		cmp_tensor(&rep, training ? key : t->name, &p->value, ref ? ref : t);
	}

	check_ok(iap_graph_zero_grads(g, &err), &err, "zero grads");
	seed = view(up);
	rc = iap_graph_backward(g, iap_ruleset_gradient(), &seed, &opts, &err);
	check_ok(rc, &err, "backward");
	cmp_tensor(&rep, "grad.input", &g->input_r, need(&fx, "grad.input"));

	/* Every trainable parameter has a reference gradient and vice versa. */
	for (int i = 0; i < fx.count; i++) {
		const char *k = fx.t[i].name;
		struct iap_param *p;

		if (strncmp(k, "grad.", 5) || !strcmp(k, "grad.input"))
			continue;
		p = iap_graph_find_param(g, k + 5);
		if (!p || !(p->flags & IAP_PARAM_TRAINABLE))
			fail_msg("PyTorch gradient '%s' has no trainable graph parameter", k);
		cmp_tensor(&rep, k, &p->grad, &fx.t[i]);
	}
	for (int i = 0; i < g->n_nodes; i++)
		for (int k = 0; k < g->nodes[i].n_params; k++) {
			const struct iap_param *p = &g->nodes[i].params[k];

			if (!(p->flags & IAP_PARAM_TRAINABLE))
				continue;
			snprintf(key, sizeof(key), "grad.%s", p->key);
			if (!fx_find(&fx, key))
				fail_msg("trainable parameter '%s' has no PyTorch gradient", p->key);
		}

	iap_graph_free(g);
	fx_free(&fx);
	report_done(&rep, name);
}

/* ---- the nets (mirror gen_fixtures.py) ------------------------------------ */

/*
 * SmallCNN: dropout p is 0.5 in eval, 0 in training (PyTorch's RNG cannot be
 * matched). In training the first conv has no bias: before a batch-statistics
 * BatchNorm its gradient is exactly zero, i.e. pure rounding noise.
 */
static void build_cnn(struct iap_graph *g, int training)
{
	int x, a, b;

	x = iap_conv2d(g, "features.0", IAP_GRAPH_INPUT, 8, 3, 3, 1, 1, 1, 1, !training);
	x = iap_batchnorm2d(g, "features.1", x, 1e-5f, 0.1f);
	x = iap_relu(g, "features.2", x);
	x = iap_maxpool2d(g, "features.3", x, 3, 2, 1, 0);
	x = iap_conv2d(g, "features.4", x, 12, 3, 3, 2, 2, 0, 0, 0);
	x = iap_batchnorm2d(g, "features.5", x, 1e-5f, 0.1f);
	x = iap_relu(g, "features.6", x);
	a = iap_avgpool2d(g, "pool_a", x, 3, 2, 1, 1, 1);
	b = iap_avgpool2d(g, "pool_b", x, 3, 2, 1, 1, 0);
	x = iap_add(g, "pool_sum", a, b);
	x = iap_adaptive_avgpool2d(g, "adapt", x, 3, 3);
	x = iap_flatten(g, "flatten", x);
	x = iap_linear(g, "classifier.0", x, 16, 1);
	x = iap_relu(g, "classifier.1", x);
	x = iap_dropout(g, "classifier.2", x, training ? 0.0f : 0.5f);
	iap_linear(g, "classifier.3", x, 5, 1);
}

/* torchvision Bottleneck(16, 8, stride=2) with a conv1x1-BN downsample. */
static void build_resblock(struct iap_graph *g, int training)
{
	int x, d;

	(void)training;
	x = iap_conv2d(g, "conv1", IAP_GRAPH_INPUT, 8, 1, 1, 1, 1, 0, 0, 0);
	x = iap_batchnorm2d(g, "bn1", x, 1e-5f, 0.1f);
	x = iap_relu(g, "relu1", x);
	x = iap_conv2d(g, "conv2", x, 8, 3, 3, 2, 2, 1, 1, 0);
	x = iap_batchnorm2d(g, "bn2", x, 1e-5f, 0.1f);
	x = iap_relu(g, "relu2", x);
	x = iap_conv2d(g, "conv3", x, 32, 1, 1, 1, 1, 0, 0, 0);
	x = iap_batchnorm2d(g, "bn3", x, 1e-5f, 0.1f);
	d = iap_conv2d(g, "downsample.0", IAP_GRAPH_INPUT, 32, 1, 1, 2, 2, 0, 0, 0);
	d = iap_batchnorm2d(g, "downsample.1", d, 1e-5f, 0.1f);
	x = iap_add(g, "add", x, d);
	iap_relu(g, "relu3", x);
}

#define VIT_L0 "encoder.layers.encoder_layer_0"

/* torchvision VisionTransformer(image 8, patch 4, 1 layer, 2 heads, D 16, MLP 32, 3 classes). */
static void build_vit(struct iap_graph *g, int training)
{
	int x, x0, x1, h;

	(void)training;
	x = iap_patch_embed(g, "conv_proj", IAP_GRAPH_INPUT, 16, 4);
	x = iap_class_token(g, "", "class_token", x);
	x0 = iap_pos_embed(g, "encoder", "pos_embedding", x);
	h = iap_layernorm(g, VIT_L0 ".ln_1", x0, 1e-6f);
	h = iap_mha(g, VIT_L0 ".self_attention", h, 2, NULL);
	x1 = iap_add(g, VIT_L0 ".add_1", h, x0);
	h = iap_layernorm(g, VIT_L0 ".ln_2", x1, 1e-6f);
	h = iap_linear(g, VIT_L0 ".mlp.0", h, 32, 1);
	h = iap_gelu(g, VIT_L0 ".mlp.1", h);
	h = iap_linear(g, VIT_L0 ".mlp.3", h, 16, 1);
	x = iap_add(g, VIT_L0 ".add_2", h, x1);
	x = iap_layernorm(g, "encoder.ln", x, 1e-6f);
	x = iap_token_select(g, "select", x, 0);
	iap_linear(g, "heads.head", x, 3, 1);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_cnn_eval(void **state)
{
	(void)state;
	run_graph_case("cnn_eval", 0, build_cnn);
}

static void test_cnn_train(void **state)
{
	(void)state;
	run_graph_case("cnn_train", 1, build_cnn);
}

static void test_resblock(void **state)
{
	(void)state;
	run_graph_case("resblock", 0, build_resblock);
}

static void test_vit_block(void **state)
{
	(void)state;
	run_graph_case("vit_block", 0, build_vit);
}

/* Weighted cross-entropy: the loss value and d loss / d logits. */
static void test_loss(void **state)
{
	struct fx_file fx;
	struct iap_error err = { 0 };
	struct cmp_report rep = { 0 };
	const struct fx_tensor *lt, *lab, *w;
	struct iap_tensor logits, grad = { 0 }, lossv = { 0 };
	int64_t one = 1;
	int labels[64];
	float loss = NAN;

	(void)state;
	load_fixture(&fx, "loss");
	lt = need(&fx, "logits");
	lab = need(&fx, "labels");
	w = need(&fx, "weight");
	assert_int_equal(lt->ndim, 2);
	assert_int_equal(lab->numel, lt->shape[0]);
	assert_int_equal(w->numel, lt->shape[1]);
	assert_true(lab->numel <= 64);
	for (int64_t i = 0; i < lab->numel; i++)
		labels[i] = (int)lab->data[i];
	logits = view(lt);
	check_ok(iap_cross_entropy(&logits, labels, w->data, &loss, &grad, &err), &err,
		 "cross_entropy");
	lossv.ndim = 1;
	lossv.shape[0] = one;
	lossv.data = &loss;
	cmp_tensor(&rep, "loss", &lossv, need(&fx, "loss"));
	cmp_tensor(&rep, "grad.logits", &grad, need(&fx, "grad.logits"));
	iap_tensor_free(&grad);
	fx_free(&fx);
	report_done(&rep, "loss");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cnn_eval),
		cmocka_unit_test(test_cnn_train),
		cmocka_unit_test(test_resblock),
		cmocka_unit_test(test_vit_block),
		cmocka_unit_test(test_loss),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
