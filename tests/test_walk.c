/*
 * The backward walk's rule-set lifecycle and channels: prepare runs once
 * before the first node with the output's channels to seed, finish once
 * after the last (also when a rule fails, never when prepare did), and
 * every channel is shaped, zeroed, summed over consumers and masked as
 * channel 0 is. The net is input [1, 3] → linear a (3 → 2) → relu b →
 * add (a + b), so a's output has two consumers.
 */
#include "config.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <iaprune/graph.h>
#include <iaprune/ops.h>

#include "testutil.h"

/* What the toy rule set saw. */
struct seen {
	int channels;            /* the rule set's n_channels */
	int prepared, finished;
	int n_channels;          /* ctx->n_channels at the last rule call */
	int fail_prepare;        /* prepare returns IAP_EINVAL */
	int fail_at;             /* the rule at this op kind returns IAP_EINVAL (-1: none) */
	int64_t seed_numel;      /* numel of seed[1] as prepare got it */
	float seed1_before;      /* seed[1]'s first value as prepare got it (the walk zeroes it) */
};

/* prepare: channel c starts from 2^c × the walk's seed (powers of two, so every product scales exactly). */
static int toy_prepare(void *user, struct iap_graph *g, struct iap_tensor *const *seed, struct iap_error *err)
{
	struct seen *s = user;

	(void)g;
	s->prepared++;
	if (s->fail_prepare)
		return iap_error_set(err, IAP_EINVAL, "toy prepare refuses");
	s->seed_numel = iap_tensor_numel(seed[1]);
	s->seed1_before = seed[1]->data[0];
	for (int c = 1; c < s->channels; c++)
		for (int64_t i = 0; i < iap_tensor_numel(seed[c]); i++)
			seed[c]->data[i] = (float)(1 << c) * seed[0]->data[i];
	return IAP_OK;
}

static void toy_finish(void *user, struct iap_graph *g)
{
	(void)g;
	((struct seen *)user)->finished++;
}

/* Every channel moves as the gradient: channel c gets exactly 2^c × channel 0. */
static int toy_rule(struct iap_rule_ctx *ctx)
{
	struct seen *s = ctx->user;

	s->n_channels = ctx->n_channels;
	if ((int)ctx->node->kind == s->fail_at)
		return iap_error_set(ctx->err, IAP_EINVAL, "toy rule refuses");
	for (int c = 0; c < ctx->n_channels; c++) {
		struct iap_rule_ctx sub = *ctx;

		assert_true(c > 0 || ctx->r_out_ch[0] == ctx->r_out);
		sub.r_out = ctx->r_out_ch[c];
		for (int k = 0; k < ctx->node->n_inputs; k++) {
			assert_true((ctx->r_in_ch[c][k] == NULL) == (ctx->r_in[k] == NULL));
			sub.r_in[k] = ctx->r_in_ch[c][k];
		}
		if (iap_rule_gradient(&sub) != IAP_OK)
			return sub.err->code;
	}
	return IAP_OK;
}

static struct iap_graph *diamond(void)
{
	const int64_t in[1] = { 3 };
	const float w[6] = { 1, -2, 0.5f, 3, 1, -1 }, bias[2] = { 0.25f, 1 };
	struct iap_error err = { 0 };
	struct iap_graph *g = iap_graph_new(1, in, &err);
	int a, b;

	assert_non_null(g);
	a = iap_linear(g, "a", IAP_GRAPH_INPUT, 2, 1);
	b = iap_relu(g, "b", a);
	assert_true(iap_add(g, "out", a, b) >= 0);
	assert_int_equal(iap_graph_add_units(g, a, 2, 1, -1), 0);
	assert_int_equal(iap_graph_finalize(g, &err), IAP_OK);
	memcpy(g->nodes[a].params[0].value.data, w, sizeof(w));
	memcpy(g->nodes[a].params[1].value.data, bias, sizeof(bias));
	return g;
}

static struct iap_ruleset toy_ruleset(struct seen *s, uint32_t n_channels)
{
	struct iap_ruleset rs = { IAP_RULESET_HEADER, .name = "toy", .user = s, .n_channels = n_channels,
				  .prepare = toy_prepare, .finish = toy_finish };

	s->channels = (int)n_channels;

	for (int k = 0; k < IAP_OP_COUNT; k++)
		rs.rules[k] = toy_rule;
	return rs;
}

/* Channel c of node id (id == n_nodes: the input), by the layout graph.h gives. */
static const struct iap_tensor *channel(const struct iap_graph *g, int c, int id)
{
	return &g->r_more[(size_t)(c - 1) * (size_t)(g->n_nodes + 1) + (size_t)id];
}

static void test_channels_travel(void **state)
{
	struct iap_graph *g = diamond();
	struct iap_tensor x = tu_rand_tensor(3, 2, (int64_t)1, (int64_t)3);
	struct iap_tensor seed = tu_rand_tensor(4, 2, (int64_t)1, (int64_t)2);
	struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_error err = { 0 };
	struct seen s = { .fail_at = -1 };
	struct iap_ruleset rs = toy_ruleset(&s, 3);
	float grad[3];

	(void)state;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	/* Channel 0 alone, by the plain gradient: what every channel must match (× 2^c). */
	assert_int_equal(iap_graph_backward(g, iap_ruleset_gradient(), &seed, &wo, &err), IAP_OK);
	memcpy(grad, g->input_r.data, sizeof(grad));
	assert_true(grad[0] != 0.0f || grad[1] != 0.0f || grad[2] != 0.0f);
	for (int walk = 0; walk < 2; walk++) {
		assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_OK);
		assert_int_equal(s.prepared, walk + 1);
		assert_int_equal(s.finished, walk + 1);
		assert_int_equal(s.n_channels, 3);
		assert_int_equal(s.seed_numel, 2);
		/* The second walk reuses the buffers: the walk zeroed what the first left there. */
		assert_true(s.seed1_before == 0.0f);
		for (int i = 0; i < 3; i++) {
			assert_true(g->input_r.data[i] == grad[i]);
			assert_true(channel(g, 1, g->n_nodes)->data[i] == 2.0f * grad[i]);
			assert_true(channel(g, 2, g->n_nodes)->data[i] == 4.0f * grad[i]);
		}
		/* Node a has two consumers: its channels sum both, as channel 0 does. */
		for (int i = 0; i < 2; i++)
			assert_true(channel(g, 2, 0)->data[i] == 4.0f * g->r[0].data[i]);
	}
	/* A unit mask on a zeroes that unit in every channel. */
	assert_int_equal(iap_graph_set_mask(g, 0, (const uint8_t[]){ 1, 0 }, &err), IAP_OK);
	assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_OK);
	assert_true(g->r[0].data[1] == 0.0f && channel(g, 1, 0)->data[1] == 0.0f &&
		    channel(g, 2, 0)->data[1] == 0.0f);
	assert_true(channel(g, 2, 0)->data[0] == 4.0f * g->r[0].data[0]);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

static void test_lifecycle_on_failure(void **state)
{
	struct iap_graph *g = diamond();
	struct iap_tensor x = tu_rand_tensor(5, 2, (int64_t)1, (int64_t)3);
	struct iap_tensor seed = tu_rand_tensor(6, 2, (int64_t)1, (int64_t)2);
	struct iap_walk_opts wo = { .want_input = 1 };
	struct iap_error err = { 0 };
	struct seen s = { .fail_at = -1, .fail_prepare = 1 };
	struct iap_ruleset rs = toy_ruleset(&s, 2);

	(void)state;
	assert_int_equal(iap_graph_forward(g, &x, &err), IAP_OK);
	/* prepare refuses: the walk stops before any rule, and there is nothing to finish. */
	assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_EINVAL);
	assert_string_equal(err.msg, "toy prepare refuses");
	assert_int_equal(s.prepared, 1);
	assert_int_equal(s.finished, 0);
	assert_int_equal(s.n_channels, 0);
	/* A rule fails half-way: finish still runs, once. */
	s.fail_prepare = 0;
	s.fail_at = IAP_OP_RELU;
	assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_EINVAL);
	assert_int_equal(s.prepared, 2);
	assert_int_equal(s.finished, 1);
	assert_non_null(strstr(err.msg, "toy rule refuses"));
	/* More channels than the walk carries: refused before prepare. */
	rs.n_channels = IAP_WALK_MAX_CHANNELS + 1;
	assert_int_equal(iap_graph_backward(g, &rs, &seed, &wo, &err), IAP_EINVAL);
	assert_non_null(strstr(err.msg, "channels"));
	assert_int_equal(s.prepared, 2);
	iap_tensor_free(&x);
	iap_tensor_free(&seed);
	iap_graph_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_channels_travel),
		cmocka_unit_test(test_lifecycle_on_failure),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
