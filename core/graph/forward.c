/* The forward pass: every node in order, every output kept for the backward walk. */
#include "config.h"

#include <math.h>
#include <string.h>

#include <iaprune/graph.h>
#include <iaprune/threads.h>

#include "fuse.h"

/*
 * Index of the first NaN or Inf in t, or -1 when every value is finite. On
 * the team: every forward scans its input and its logits, and on many cores
 * a serial scan of a 224² batch is a visible share of the pass.
 */
static int64_t first_nonfinite(const struct iap_tensor *t)
{
	const int64_t n = iap_tensor_numel(t);
	const float *p = t->data;
	int64_t at = n;

#pragma omp parallel for reduction(min : at) schedule(static) num_threads(iap_par_nt(n))
	for (int64_t i = 0; i < n; i++)
		if (!isfinite(p[i]) && i < at)
			at = i;
	return at < n ? at : -1;
}

/*
 * A NaN or Inf in a parameter, naming the layer and the tensor. Only called
 * once the logits turned out non-finite (ReLU propagates NaN, as PyTorch's
 * does, so a bad weight always reaches them): a healthy pass never reads
 * the parameters twice.
 */
static int check_params(const struct iap_graph *g, struct iap_error *err)
{
	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *n = &g->nodes[i];

		for (int k = 0; k < n->n_params; k++) {
			const struct iap_tensor *v = &n->params[k].value;
			int64_t at = first_nonfinite(v);

			if (at >= 0)
				return iap_error_set(err, IAP_ENUMERIC,
						     "forward: parameter '%s' of layer '%s' (%s) holds %s at element %lld",
						     n->params[k].key, n->name, iap_op_name(n->kind),
						     isnan(v->data[at]) ? "NaN" : "Inf", (long long)at);
		}
	}
	return IAP_OK;
}

/*
 * The output held a NaN or Inf: name the first node (in evaluation order)
 * whose output did, which is where it arose, since every later value is
 * computed from earlier ones. Only run on failure, so a healthy pass pays
 * for one scan of the logits and nothing more.
 */
static int report_nonfinite(const struct iap_graph *g, struct iap_error *err)
{
	if (check_params(g, err))
		return IAP_ENUMERIC;
	for (int i = 0; i < g->n_nodes; i++) {
		const struct iap_node *n = &g->nodes[i];
		int64_t at = first_nonfinite(&n->out);

		if (at < 0)
			continue;
		return iap_error_set(err, IAP_ENUMERIC,
				     "forward: non-finite value (%s) in the output of layer '%s' (%s) at element %lld",
				     isnan(n->out.data[at]) ? "NaN" : "Inf", n->name, iap_op_name(n->kind),
				     (long long)at);
	}
	return iap_error_set(err, IAP_ENUMERIC, "forward: non-finite value in the output");
}

/*
 * Shape every node's output buffer for `batch` samples and size the shared
 * workspace for the largest need of any op, so the pass itself allocates
 * nothing once the batch size is steady.
 */
static int graph_reshape(struct iap_graph *g, int batch, struct iap_error *err)
{
	size_t ws = 0;

	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = &g->nodes[i];
		int64_t shape[IAP_MAX_DIMS];
		int rc;

		shape[0] = batch;
		memcpy(shape + 1, n->out_shape, (size_t)n->out_ndim * sizeof(*shape));
		rc = iap_tensor_ensure(&n->out, n->out_ndim + 1, shape, err);
		if (rc) {
			iap_error_prefix(err, "node '%s' (%s)", n->name, iap_op_name(n->kind));
			return rc;
		}
		if (n->ops->workspace) {
			size_t need = n->ops->workspace(g, n, batch);

			if (need > ws)
				ws = need;
		}
	}
	if (ws && !iap_graph_workspace(g, ws, err))
		return err ? err->code : IAP_ENOMEM;
	g->batch = batch;
	return IAP_OK;
}

/*
 * Every node in order, its unit mask applied after it. A ReLU that the
 * node before it writes in its own pass (fuse.h) is not run again.
 */
static int run_nodes(struct iap_graph *g, struct iap_error *err)
{
	for (int i = 0; i < g->n_nodes; i++) {
		struct iap_node *n = &g->nodes[i];
		struct iap_node *relu = iap_graph_fused_relu(g, i);
		const struct iap_tensor *in[IAP_NODE_MAX_INPUTS] = { NULL };
		int rc;

		for (int k = 0; k < n->n_inputs; k++)
			in[k] = iap_graph_node_input(g, n, k);
		rc = relu ? iap_graph_forward_fused(g, n, in, relu, err) : n->ops->forward(g, n, in, &n->out, err);
		if (rc) {
			iap_error_prefix(err, "forward of '%s' (%s)", n->name, iap_op_name(n->kind));
			return rc;
		}
		if (n->mask_group >= 0)
			iap_unit_apply_mask(&g->groups[n->mask_group], &n->out);
		if (!relu)
			continue;
		i++;   /* the ReLU is done */
		if (relu->mask_group >= 0)
			iap_unit_apply_mask(&g->groups[relu->mask_group], &relu->out);
	}
	return IAP_OK;
}

int iap_graph_forward(struct iap_graph *g, const struct iap_tensor *x, struct iap_error *err)
{
	char got[96], want[96];
	int64_t at;
	int rc;

	if (!g->finalized)
		return iap_error_set(err, IAP_EINVAL, "graph must be finalized before the forward pass");
	if (g->shape_only)
		return iap_error_set(err, IAP_EINVAL, "graph was built without parameter storage and cannot run");
	if (x->ndim != g->in_ndim + 1 || x->shape[0] < 1 ||
	    memcmp(x->shape + 1, g->in_shape, (size_t)g->in_ndim * sizeof(int64_t)) != 0)
		return iap_error_set(err, IAP_ESHAPE, "input has shape %s, the model expects N x %s",
				     iap_tensor_shape_str(x, got, sizeof(got)),
				     iap_shape_str(g->in_ndim, g->in_shape, want, sizeof(want)));
	if (x->shape[0] > (int64_t)1 << 30)
		return iap_error_set(err, IAP_EINVAL, "batch of %lld samples is too large",
				     (long long)x->shape[0]);
	if (g->batch != (int)x->shape[0]) {
		rc = graph_reshape(g, (int)x->shape[0], err);
		if (rc)
			return rc;
	}
	/* A non-finite input: stop before the pass, saying where. */
	at = first_nonfinite(x);
	if (at >= 0)
		return iap_error_set(err, IAP_ENUMERIC, "forward: the input holds %s at element %lld (sample %lld)",
				     isnan(x->data[at]) ? "NaN" : "Inf", (long long)at,
				     (long long)(at / (iap_tensor_numel(x) / x->shape[0])));
	rc = iap_tensor_ensure(&g->input, x->ndim, x->shape, err);
	if (rc)
		return rc;
	if (x->data != g->input.data) {   /* a caller may hand the graph its own input back */
		const int64_t nx = iap_tensor_numel(x);
		float *dst = g->input.data;
		const float *src = x->data;

		/* On the team, as the scan above: a serial copy of a 224² batch shows on many cores. */
#pragma omp parallel for simd schedule(static) num_threads(iap_par_nt(nx))
		for (int64_t i = 0; i < nx; i++)
			dst[i] = src[i];
	}
	rc = run_nodes(g, err);
	if (rc)
		return rc;
	/*
	 * A NaN or Inf in the logits would silently turn every later table
	 * (accuracy, scores, relevance) into nonsense: stop here and say where
	 * it started.
	 */
	if (g->output >= 0 && first_nonfinite(&g->nodes[g->output].out) >= 0)
		return report_nonfinite(g, err);
	return IAP_OK;
}

const struct iap_tensor *iap_graph_output(const struct iap_graph *g)
{
	if (!g->finalized || g->output < 0 || g->batch == 0)
		return NULL;
	return &g->nodes[g->output].out;
}
