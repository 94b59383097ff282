#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/ops.h>

#include "gradcheck.h"
#include "testutil.h"

struct gc_state {
	struct iap_graph *g;
	struct iap_tensor x;
	struct iap_tensor s;
	uint64_t seed;
};

/* L = Σ s ⊙ f(x), in double. NAN if the forward failed. */
static double gc_loss(struct gc_state *st)
{
	struct iap_error err;
	const struct iap_tensor *out;
	double l = 0.0;

	iap_graph_seed(st->g, st->seed ^ 0x5eedULL);
	if (iap_graph_forward(st->g, &st->x, &err)) {
		fprintf(stderr, "gradcheck: forward failed: %s\n", err.msg);
		return NAN;
	}
	out = iap_graph_output(st->g);
	for (int64_t i = 0; i < iap_tensor_numel(out); i++)
		l += (double)st->s.data[i] * (double)out->data[i];
	return l;
}

/* Check `analytic` (n entries) against central differences of the values at v. */
static int gc_check_tensor(struct gc_state *st, const char *what, float *v, const float *analytic,
			   int64_t n, const struct gc_opts *o, struct iap_rng *r)
{
	int fails = 0;
	int checks = n <= o->max_checks ? (int)n : o->max_checks;

	for (int c = 0; c < checks; c++) {
		int64_t i = n <= o->max_checks ? c : (int64_t)iap_rng_below(r, (uint64_t)n);
		float keep = v[i];
		double lp, lm, num, ana = analytic[i], tol;

		v[i] = (float)(keep + o->eps);
		lp = gc_loss(st);
		v[i] = (float)(keep - o->eps);
		lm = gc_loss(st);
		v[i] = keep;
		/* Divide by the step actually taken after rounding to float. */
		num = (lp - lm) / ((double)(float)(keep + o->eps) - (double)(float)(keep - o->eps));
		tol = o->atol + o->rtol * fmax(fabs(ana), fabs(num));
		if (!(fabs(ana - num) <= tol)) {
			if (fails < 8)
				fprintf(stderr, "gradcheck: %s[%lld]: analytic %.7g, numeric %.7g (|diff| %.3g > tol %.3g)\n",
					what, (long long)i, ana, num, fabs(ana - num), tol);
			fails++;
		}
	}
	return fails;
}

int gc_check_graph(struct iap_graph *g, const struct gc_opts *opts)
{
	struct gc_opts o = {
		.batch = 2, .seed = 1, .eps = 1e-2, .rtol = 1e-2, .atol = 1e-3, .max_checks = 48,
		.in_lo = -1.0f, .in_hi = 1.0f,
	};
	struct gc_state st = { .g = g };
	struct iap_walk_opts wo = { 0 };
	struct iap_error err;
	struct iap_rng r;
	int64_t shape[IAP_MAX_DIMS];
	int fails = 0;
	float *saved = NULL;

	if (opts) {
		o.skip_input = opts->skip_input;
		o.skip_params = opts->skip_params;
		if (opts->batch) o.batch = opts->batch;
		if (opts->seed) o.seed = opts->seed;
		if (opts->eps > 0) o.eps = opts->eps;
		if (opts->rtol > 0) o.rtol = opts->rtol;
		if (opts->atol > 0) o.atol = opts->atol;
		if (opts->max_checks > 0) o.max_checks = opts->max_checks;
		if (opts->in_hi > opts->in_lo) { o.in_lo = opts->in_lo; o.in_hi = opts->in_hi; }
	}
	st.seed = o.seed;
	iap_rng_seed(&r, o.seed);
	shape[0] = o.batch;
	memcpy(shape + 1, g->in_shape, (size_t)g->in_ndim * sizeof(*shape));
	if (iap_tensor_alloc(&st.x, g->in_ndim + 1, shape, &err))
		goto out_err;
	tu_fill_uniform(st.x.data, (size_t)iap_tensor_numel(&st.x), &r, o.in_lo, o.in_hi);
	if (iap_graph_forward(g, &st.x, &err))
		goto out_err;
	if (iap_tensor_alloc(&st.s, iap_graph_output(g)->ndim, iap_graph_output(g)->shape, &err))
		goto out_err;
	tu_fill_uniform(st.s.data, (size_t)iap_tensor_numel(&st.s), &r, -1.0f, 1.0f);

	if (iap_graph_zero_grads(g, &err))
		goto out_err;
	wo.want_input = !o.skip_input;
	wo.want_param_grads = !o.skip_params;
	if (isnan(gc_loss(&st)))
		goto out_fail;
	if (iap_graph_backward(g, iap_ruleset_gradient(), &st.s, &wo, &err))
		goto out_err;

	if (!o.skip_input) {
		int64_t n = iap_tensor_numel(&st.x);

		saved = malloc((size_t)n * sizeof(float));
		memcpy(saved, g->input_r.data, (size_t)n * sizeof(float));
		fails += gc_check_tensor(&st, "input", st.x.data, saved, n, &o, &r);
		free(saved);
		saved = NULL;
	}
	if (!o.skip_params) {
		for (int i = 0; i < g->n_nodes; i++)
			for (int k = 0; k < g->nodes[i].n_params; k++) {
				struct iap_param *p = &g->nodes[i].params[k];
				int64_t n = iap_tensor_numel(&p->value);

				if (!(p->flags & IAP_PARAM_TRAINABLE))
					continue;
				saved = malloc((size_t)n * sizeof(float));
				memcpy(saved, p->grad.data, (size_t)n * sizeof(float));
				/* g->nodes may not move here: the graph is finalized. */
				fails += gc_check_tensor(&st, p->key, p->value.data, saved, n, &o, &r);
				free(saved);
				saved = NULL;
			}
	}
	iap_tensor_free(&st.x);
	iap_tensor_free(&st.s);
	return fails;
out_err:
	fprintf(stderr, "gradcheck: %s\n", err.msg);
out_fail:
	iap_tensor_free(&st.x);
	iap_tensor_free(&st.s);
	return -1;
}
