/*
 * Compaction: a new graph without the masked units, the masks baked into the
 * weights, and the keep masks as safetensors metadata (see <iaprune/compact.h>).
 *
 * The new graph has the same nodes, in the same order, with the same ids,
 * names, ops and parameter keys; only sizes change. One pass in topological
 * order decides, for every node, which positions of its unit axis survive (a
 * "keep list": conv channels, linear features, attention heads, qkv rows),
 * then sizes the node and slices its parameters by its own keep list (rows)
 * and its input's (columns).
 */
#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <iaprune/compact.h>
#include <iaprune/ops.h>

/* Kept positions along one node's unit axis. */
struct keep {
	int64_t n;        /* how many positions are kept */
	int64_t *idx;     /* the n old positions, increasing; NULL: all of them */
	int owned;        /* idx belongs to this entry (propagated copies share it) */
	int group;        /* unit group whose mask decided it (messages); -1 none */
};

struct compact_ctx {
	const struct iap_graph *g;
	unsigned flags;
	uint8_t **gkeep;        /* per group: n_units flags, what the new graph keeps */
	struct keep *k;         /* per node: its output's keep list */
	struct keep *forced;    /* per node: list imposed by an attention (qkv rows, heads) */
	struct keep input;      /* the graph input: always whole */
	struct iap_error *err;
};

/* The unit axis of a per-sample shape, as units.c views it: C of C×H×W, else the last. */
static int unit_axis(int ndim)
{
	return ndim == 3 ? 0 : ndim - 1;
}

static const char *group_name(const struct iap_graph *g, int gi)
{
	return gi >= 0 ? g->groups[gi].name : "(none)";
}

static int mask_at(const struct iap_unit_group *grp, int u)
{
	return grp->mask ? grp->mask[u] != 0 : 1;
}

static void keep_release(struct keep *k)
{
	if (k->owned)
		free(k->idx);
	k->idx = NULL;
	k->owned = 0;
}

static int keep_same(const struct keep *a, const struct keep *b)
{
	if (a->n != b->n)
		return 0;
	if (!a->idx || !b->idx)
		return !a->idx && !b->idx;
	return memcmp(a->idx, b->idx, (size_t)a->n * sizeof(*a->idx)) == 0;
}

/* A shared (not owned) copy, used by ops that keep their input's positions. */
static struct keep keep_share(const struct keep *k)
{
	struct keep s = *k;

	s.owned = 0;
	return s;
}

/*
 * Fill k from per-unit flags: unit u covers positions [u·span, (u+1)·span).
 * All kept gives idx NULL, so "whole" has one representation and keep_same
 * can compare lists directly.
 */
static int keep_from_units(struct keep *k, const uint8_t *units, int n_units, int64_t span,
			   int group, struct iap_error *err)
{
	int64_t kept = 0, at = 0;

	for (int u = 0; u < n_units; u++)
		kept += units[u] ? 1 : 0;
	k->group = group;
	k->owned = 0;
	k->idx = NULL;
	k->n = kept * span;
	if (kept == n_units)
		return IAP_OK;
	k->idx = malloc((size_t)(k->n ? k->n : 1) * sizeof(*k->idx));
	if (!k->idx)
		return iap_error_set(err, IAP_ENOMEM, "out of memory for a keep list");
	k->owned = 1;
	for (int u = 0; u < n_units; u++)
		for (int64_t j = 0; units[u] && j < span; j++)
			k->idx[at++] = (int64_t)u * span + j;
	return IAP_OK;
}

/*
 * The positions [outer][axis][inner] keeps when only `in` survives on the
 * middle axis: flatten of C×H×W, the q|k|v parts of packed rows (outer 3,
 * inner 1 after expanding heads to columns), head columns (inner dh).
 */
static int keep_expand(struct keep *out, const struct keep *in, int64_t outer, int64_t axis,
		       int64_t inner, struct iap_error *err)
{
	int64_t at = 0;

	out->group = in->group;
	out->owned = 0;
	out->n = outer * in->n * inner;
	out->idx = NULL;
	if (!in->idx)
		return IAP_OK;
	out->idx = malloc((size_t)(out->n ? out->n : 1) * sizeof(*out->idx));
	if (!out->idx)
		return iap_error_set(err, IAP_ENOMEM, "out of memory for a keep list");
	out->owned = 1;
	for (int64_t o = 0; o < outer; o++)
		for (int64_t c = 0; c < in->n; c++)
			for (int64_t i = 0; i < inner; i++)
				out->idx[at++] = (o * axis + in->idx[c]) * inner + i;
	return IAP_OK;
}

/* The packed q|k|v rows (3·D wide) that a list of kept heads keeps. */
static int keep_qkv_rows(struct keep *out, const struct keep *heads, int n_heads, int64_t dh,
			 struct iap_error *err)
{
	struct keep cols;
	int rc;

	rc = keep_expand(&cols, heads, 1, n_heads, dh, err);
	if (rc)
		return rc;
	rc = keep_expand(out, &cols, 3, (int64_t)n_heads * dh, 1, err);
	keep_release(&cols);
	return rc;
}

/* ---- which units each group keeps ---------------------------------------------- */

/*
 * Start from each group's mask; within a coupling, keep a unit when any member
 * keeps it (or refuse differing members when strict). A group left without
 * units cannot be built.
 */
static int decide_groups(struct compact_ctx *c)
{
	const struct iap_graph *g = c->g;
	struct iap_error *err = c->err;

	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];

		c->gkeep[gi] = malloc((size_t)grp->n_units);
		if (!c->gkeep[gi])
			return iap_error_set(err, IAP_ENOMEM, "out of memory");
		for (int u = 0; u < grp->n_units; u++)
			c->gkeep[gi][u] = (uint8_t)mask_at(grp, u);
	}
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *a = &g->groups[gi];

		if (a->coupling < 0)
			continue;
		for (int gj = gi + 1; gj < g->n_groups; gj++) {
			const struct iap_unit_group *b = &g->groups[gj];

			if (b->coupling != a->coupling)
				continue;
			if (b->n_units != a->n_units || b->unit_size != a->unit_size)
				return iap_error_set(err, IAP_EINVAL,
						     "unit groups '%s' and '%s' share coupling %d but have %d and %d units",
						     a->name, b->name, a->coupling, a->n_units, b->n_units);
			for (int u = 0; u < a->n_units; u++) {
				if (c->gkeep[gi][u] == c->gkeep[gj][u])
					continue;
				if (c->flags & IAP_COMPACT_STRICT)
					return iap_error_set(err, IAP_EINVAL,
							     "coupled unit groups '%s' and '%s' (coupling %d) disagree on unit %d; "
							     "prune a coupling only as a whole", a->name, b->name,
							     a->coupling, u);
				/* Union: gi collects every member's kept units first... */
				c->gkeep[gi][u] = 1;
			}
		}
		/* ...then hands the union to the members after it. */
		for (int gj = gi + 1; gj < g->n_groups; gj++)
			if (g->groups[gj].coupling == a->coupling)
				memcpy(c->gkeep[gj], c->gkeep[gi], (size_t)a->n_units);
	}
	for (int gi = 0; gi < g->n_groups; gi++) {
		int kept = 0;

		for (int u = 0; u < g->groups[gi].n_units; u++)
			kept += c->gkeep[gi][u];
		if (!kept)
			return iap_error_set(err, IAP_EUNSUPPORTED,
					     "unit group '%s': all %d units are pruned, compaction would leave an empty layer",
					     g->groups[gi].name, g->groups[gi].n_units);
	}
	return IAP_OK;
}

/* ---- attention ----------------------------------------------------------------- */

/*
 * The attention whose weights are node w: its context node and packed qkv
 * linear, checked against iap_mha's layout (qkv → scores → softmax w →
 * context(w, qkv)). Returns 1 when found.
 */
static int find_attention(const struct iap_graph *g, int w, int *ctx_id, int *qkv_id, int *scores_id)
{
	const struct iap_node *wn = &g->nodes[w];

	if (wn->kind != IAP_OP_SOFTMAX || wn->inputs[0] < 0)
		return 0;
	for (int j = w + 1; j < g->n_nodes; j++) {
		const struct iap_node *cn = &g->nodes[j];
		int q = cn->inputs[1], s = wn->inputs[0];

		if (cn->kind != IAP_OP_ATTN_CONTEXT || cn->inputs[0] != w)
			continue;
		if (q < 0 || g->nodes[q].kind != IAP_OP_LINEAR || g->nodes[s].kind != IAP_OP_ATTN_SCORES ||
		    g->nodes[s].inputs[0] != q)
			return 0;
		*ctx_id = j;
		*qkv_id = q;
		*scores_id = s;
		return 1;
	}
	return 0;
}

/* Head groups impose their kept heads on the scores node and kept q|k|v rows on in_proj. */
static int plan_attention(struct compact_ctx *c)
{
	const struct iap_graph *g = c->g;

	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];
		const struct iap_node *wn = &g->nodes[grp->node];
		struct keep heads;
		int cx, q, s, rc;

		if (!find_attention(g, grp->node, &cx, &q, &s))
			continue;
		rc = keep_from_units(&heads, c->gkeep[gi], grp->n_units, grp->unit_size, gi, c->err);
		if (rc)
			return rc;
		if (!heads.idx)
			continue;
		if (g->nodes[q].unit_group >= 0 || c->forced[q].idx) {
			keep_release(&heads);
			return iap_error_set(c->err, IAP_EUNSUPPORTED,
					     "attention '%s': its qkv projection '%s' is pruned twice",
					     wn->name, g->nodes[q].name);
		}
		rc = keep_qkv_rows(&c->forced[q], &heads, g->nodes[s].attr.attn.num_heads,
				   g->nodes[s].attr.attn.dim / g->nodes[s].attr.attn.num_heads, c->err);
		c->forced[s] = heads;
		if (rc)
			return rc;
	}
	return IAP_OK;
}

/* ---- the new graph --------------------------------------------------------------- */

/*
 * dst = src restricted, along each axis d, to ax[d] (NULL or whole: every
 * position). Rows of the last axis are copied with memcpy when it is whole.
 */
static void slice_copy(float *dst, const float *src, int ndim, const int64_t *shape,
		       const struct keep *const ax[])
{
	int64_t dn[IAP_MAX_DIMS], stride[IAP_MAX_DIMS], at[IAP_MAX_DIMS] = { 0 };
	const int last = ndim - 1;
	const struct keep *lk = ax[last] && ax[last]->idx ? ax[last] : NULL;
	int64_t rows = 1;

	stride[last] = 1;
	for (int d = last; d >= 0; d--) {
		dn[d] = ax[d] ? ax[d]->n : shape[d];
		if (d < last)
			stride[d] = stride[d + 1] * shape[d + 1];
		if (d < last)
			rows *= dn[d];
	}
	for (int64_t r = 0; r < rows; r++) {
		int64_t off = 0;

		for (int d = 0; d < last; d++)
			off += (ax[d] && ax[d]->idx ? ax[d]->idx[at[d]] : at[d]) * stride[d];
		if (lk)
			for (int64_t j = 0; j < dn[last]; j++)
				dst[j] = src[off + lk->idx[j]];
		else
			memcpy(dst, src + off, (size_t)dn[last] * sizeof(*dst));
		dst += dn[last];
		for (int d = last - 1; d >= 0; d--) {
			if (++at[d] < dn[d])
				break;
			at[d] = 0;
		}
	}
}

/* The keep list of node input i (the graph input is always whole). */
static const struct keep *input_keep(const struct compact_ctx *c, const struct iap_node *n, int i)
{
	return n->inputs[i] == IAP_GRAPH_INPUT ? &c->input : &c->k[n->inputs[i]];
}

/* What node_keep's steps share about node i: the node, its first input's keep list and sample shape. */
struct node_in {
	int i;
	const struct iap_node *n;
	const struct keep *in0;
	int nd;                          /* dimensions of input 0's sample shape (0 without inputs) */
};

/* A conv or linear: its own units (or the attention plan's rows) decide; the input may be pruned. */
static int keep_weighted(struct compact_ctx *c, const struct node_in *ni, struct keep *out)
{
	const struct iap_graph *g = c->g;
	const struct iap_node *n = ni->n;

	if (n->kind == IAP_OP_LINEAR && ni->in0->idx && unit_axis(ni->nd) != ni->nd - 1)
		return iap_error_set(c->err, IAP_EUNSUPPORTED,
				     "linear '%s': its input is pruned on a channel axis it does not read",
				     n->name);
	if (c->forced[ni->i].idx) {
		*out = keep_share(&c->forced[ni->i]);
		return IAP_OK;
	}
	if (n->unit_group >= 0) {
		const struct iap_unit_group *grp = &g->groups[n->unit_group];

		return keep_from_units(out, c->gkeep[n->unit_group], grp->n_units, grp->unit_size,
				       n->unit_group, c->err);
	}
	*out = (struct keep){ .n = n->out_shape[unit_axis(n->out_ndim)], .group = -1 };
	return IAP_OK;
}

/*
 * Nodes that keep what arrives only when removing it equals masking it:
 * a BatchNorm's shift, learned tokens and embeddings, and normalisations
 * over the pruned axis would each change the output. IAP_OK when node n
 * may pass its input's keep list on.
 */
static int check_pass_through(const struct compact_ctx *c, const struct node_in *ni)
{
	const struct iap_graph *g = c->g;
	const struct iap_node *n = ni->n;
	const struct keep *in0 = ni->in0;

	if (!in0->idx)
		return IAP_OK;
	switch (n->kind) {
	case IAP_OP_BATCHNORM2D:
		if (ni->nd == 2)
			return iap_error_set(c->err, IAP_EUNSUPPORTED,
					     "batchnorm '%s': its input is pruned on the last axis, not its channels",
					     n->name);
		/*
		 * Its shift turns a zero channel into a constant, so removing the
		 * channel equals masking it only when the mask sits on this BN.
		 */
		if (in0->group < 0 || g->groups[in0->group].mask_node != ni->i)
			return iap_error_set(c->err, IAP_EUNSUPPORTED,
					     "batchnorm '%s' shifts channels pruned by unit group '%s' before its mask",
					     n->name, group_name(g, in0->group));
		return IAP_OK;
	case IAP_OP_CLASS_TOKEN:
	case IAP_OP_POS_EMBED:
		/* Learned values land on pruned (zero) positions too: removing them would change the output. */
		return iap_error_set(c->err, IAP_EUNSUPPORTED,
				     "%s '%s' adds learned values to positions pruned by unit group '%s'",
				     iap_op_name(n->kind), n->name, group_name(g, in0->group));
	case IAP_OP_LAYERNORM:
	case IAP_OP_SOFTMAX:
		/* Both normalise over the last axis: removing positions there changes every output. */
		if (n->kind == IAP_OP_LAYERNORM || ni->nd != 3)
			return iap_error_set(c->err, IAP_EUNSUPPORTED,
					     "%s '%s' normalises over positions pruned by unit group '%s'",
					     iap_op_name(n->kind), n->name, group_name(g, in0->group));
		return IAP_OK;
	default:
		return IAP_OK;
	}
}

/* A flatten: the input's channel keep list, repeated over the positions it folds in. */
static int keep_flatten(struct compact_ctx *c, const struct node_in *ni, struct keep *out)
{
	int64_t shp[IAP_MAX_DIMS], outer = 1, inner = 1;
	int nd = iap_graph_sample_shape(c->g, ni->n->inputs[0], shp), ax = unit_axis(nd);

	for (int d = 0; d < ax; d++)
		outer *= shp[d];
	for (int d = ax + 1; d < nd; d++)
		inner *= shp[d];
	return keep_expand(out, ni->in0, outer, shp[ax], inner, c->err);
}

/* A residual add: both operands must keep the same channels. */
static int keep_add(struct compact_ctx *c, const struct node_in *ni, struct keep *out)
{
	const struct iap_graph *g = c->g;
	const struct keep *in0 = ni->in0, *in1 = input_keep(c, ni->n, 1);

	if (!keep_same(in0, in1))
		return iap_error_set(c->err, IAP_EINVAL,
				     "add '%s': its operands keep different channels (%lld from unit group '%s', "
				     "%lld from '%s'); residual channels must be pruned together (same coupling id)",
				     ni->n->name, (long long)in0->n, group_name(g, in0->group), (long long)in1->n,
				     group_name(g, in1->group));
	*out = keep_share(in0->idx ? in0 : in1);
	return IAP_OK;
}

/* Attention scores keep whole heads (the plan's, or all), and their qkv rows must say the same. */
static int keep_attn_scores(struct compact_ctx *c, const struct node_in *ni, struct keep *out)
{
	const struct iap_node *n = ni->n;
	const int heads = n->attr.attn.num_heads;
	struct keep want;
	int rc;

	*out = c->forced[ni->i].idx ? keep_share(&c->forced[ni->i]) : (struct keep){ .n = heads, .group = -1 };
	rc = keep_qkv_rows(&want, out, heads, n->attr.attn.dim / heads, c->err);
	if (rc)
		return rc;
	rc = keep_same(ni->in0, &want);
	keep_release(&want);
	if (!rc)
		return iap_error_set(c->err, IAP_EUNSUPPORTED,
				     "attn_scores '%s': its qkv rows are pruned, but not by whole heads", n->name);
	return IAP_OK;
}

/* The attention context keeps the columns of the heads its weights keep. */
static int keep_attn_context(struct compact_ctx *c, const struct node_in *ni, struct keep *out)
{
	const struct iap_node *n = ni->n;
	const int heads = n->attr.attn.num_heads;
	const int64_t dh = n->attr.attn.dim / heads;
	struct keep want;
	int rc;

	rc = keep_qkv_rows(&want, ni->in0, heads, dh, c->err);
	if (rc)
		return rc;
	rc = keep_same(input_keep(c, n, 1), &want);
	keep_release(&want);
	if (!rc)
		return iap_error_set(c->err, IAP_EUNSUPPORTED,
				     "attn_context '%s': its qkv rows and weights keep different heads", n->name);
	return keep_expand(out, ni->in0, 1, heads, dh, c->err);
}

/* Units declared on a channel-preserving node (attention weights) must match what arrives. */
static int check_declared_units(struct compact_ctx *c, const struct iap_node *n, const struct keep *out)
{
	const struct iap_unit_group *grp;
	struct keep want;
	int rc;

	if (n->unit_group < 0)
		return IAP_OK;
	grp = &c->g->groups[n->unit_group];
	rc = keep_from_units(&want, c->gkeep[n->unit_group], grp->n_units, grp->unit_size, n->unit_group,
			     c->err);
	if (rc)
		return rc;
	rc = keep_same(out, &want);
	keep_release(&want);
	if (!rc)
		return iap_error_set(c->err, IAP_EUNSUPPORTED,
				     "unit group '%s' on %s '%s' cannot be removed there (no layer before it drops them)",
				     grp->name, iap_op_name(n->kind), n->name);
	return IAP_OK;
}

/* Decide node i's keep list from its inputs, its units and the attention plan. */
static int node_keep(struct compact_ctx *c, int i)
{
	const struct iap_graph *g = c->g;
	const struct iap_node *n = &g->nodes[i];
	int64_t in_shape[IAP_MAX_DIMS];
	struct node_in ni = {
		.i = i,
		.n = n,
		.in0 = n->n_inputs > 0 ? input_keep(c, n, 0) : &c->input,
		.nd = n->n_inputs > 0 ? iap_graph_sample_shape(g, n->inputs[0], in_shape) : 0,
	};
	struct keep *out = &c->k[i];
	int rc;

	switch (n->kind) {
	case IAP_OP_CONV2D:
	case IAP_OP_LINEAR:
		return keep_weighted(c, &ni, out);
	case IAP_OP_ATTN_SCORES:
		return keep_attn_scores(c, &ni, out);
	case IAP_OP_ATTN_CONTEXT:
		return keep_attn_context(c, &ni, out);
	case IAP_OP_FLATTEN:
		rc = keep_flatten(c, &ni, out);
		break;
	case IAP_OP_ADD:
		rc = keep_add(c, &ni, out);
		break;
	default:
		/* Activations, dropout, pools, tokens, token select; the checked kinds above. */
		rc = check_pass_through(c, &ni);
		if (!rc)
			*out = keep_share(ni.in0);
		break;
	}
	return rc ? rc : check_declared_units(c, n, out);
}

/* Add param k of node n to the new node id, sliced by the axes' keep lists. */
static int copy_param(struct iap_graph *g2, int id, const struct iap_node *n, int k,
		      const struct keep *const ax[], struct iap_error *err)
{
	const struct iap_param *p = &n->params[k];
	const size_t nl = strlen(n->name);
	int64_t shape[IAP_MAX_DIMS];
	const char *suffix;
	struct iap_param *q;
	int got;

	for (int d = 0; d < p->value.ndim; d++)
		shape[d] = ax[d] ? ax[d]->n : p->value.shape[d];
	/* Keys keep their text exactly, including renamed ones like in_proj_weight. */
	if (!nl)
		suffix = p->key;
	else if (strncmp(p->key, n->name, nl) == 0 && p->key[nl] == '.')
		suffix = p->key + nl + 1;
	else
		suffix = "param";
	got = iap_graph_add_param(g2, id, suffix, p->value.ndim, shape, p->flags);
	if (got != k)
		return iap_error_set(err, g2->build_err.code ? g2->build_err.code : IAP_EINVAL,
				     "%s: %s", p->key, g2->build_err.msg);
	q = &g2->nodes[id].params[k];
	if (strcmp(q->key, p->key) != 0) {
		char *key = strdup(p->key);

		if (!key)
			return iap_error_set(err, IAP_ENOMEM, "out of memory");
		free(q->key);
		q->key = key;
	}
	if (q->value.data && p->value.data)
		slice_copy(q->value.data, p->value.data, p->value.ndim, p->value.shape, ax);
	return IAP_OK;
}

/* Append node i of the old graph to g2, resized by the keep lists. */
static int add_node(struct compact_ctx *c, struct iap_graph *g2, int i)
{
	const struct iap_node *n = &c->g->nodes[i];
	const struct keep *kout = &c->k[i];
	const struct keep *kin = n->n_inputs > 0 ? input_keep(c, n, 0) : &c->input;
	struct iap_node *m;
	int id, rc;

	id = iap_graph_add_node(g2, n->ops, n->name, n->n_inputs, n->inputs);
	if (id != i)
		return iap_error_set(c->err, g2->build_err.code ? g2->build_err.code : IAP_EINVAL,
				     "%s: %s", n->name, g2->build_err.msg);
	m = &g2->nodes[id];
	m->attr = n->attr;
	m->out_ndim = n->out_ndim;
	memcpy(m->out_shape, n->out_shape, sizeof(m->out_shape));
	m->out_shape[unit_axis(n->out_ndim)] = kout->n;
	switch (n->kind) {
	case IAP_OP_CONV2D:
		m->attr.conv.in_ch = (int)kin->n;
		m->attr.conv.out_ch = (int)kout->n;
		break;
	case IAP_OP_LINEAR:
		m->attr.linear.in_features = (int)kin->n;
		m->attr.linear.out_features = (int)kout->n;
		break;
	case IAP_OP_BATCHNORM2D:
		m->attr.norm.features = (int)kout->n;
		break;
	case IAP_OP_ATTN_SCORES:
	case IAP_OP_ATTN_CONTEXT: {
		const int dh = n->attr.attn.dim / n->attr.attn.num_heads;
		const int heads = (int)(n->kind == IAP_OP_ATTN_SCORES ? kout->n : kin->n);

		m->attr.attn.num_heads = heads;
		m->attr.attn.dim = heads * dh;
		break;
	}
	default:
		break;
	}
	for (int k = 0; k < n->n_params; k++) {
		const struct keep *ax[IAP_MAX_DIMS] = { NULL };
		const int nd = n->params[k].value.ndim;

		switch (n->kind) {
		case IAP_OP_CONV2D:
		case IAP_OP_LINEAR:
			/* weight [out, in, ...] and bias [out] */
			ax[0] = kout;
			if (nd >= 2)
				ax[1] = kin;
			break;
		case IAP_OP_BATCHNORM2D:
			ax[0] = kout;
			break;
		default:
			/* layernorm, class token, position embedding: whole by construction */
			break;
		}
		rc = copy_param(g2, id, n, k, ax, c->err);
		if (rc) {
			iap_error_prefix(c->err, "compacting '%s'", n->name);
			return rc;
		}
	}
	return IAP_OK;
}

static int bake_unit(struct iap_graph *g, int gi, int u, struct iap_error *err);

static int build_compact(struct compact_ctx *c, struct iap_graph **out)
{
	const struct iap_graph *g = c->g;
	struct iap_graph *g2;
	int rc;

	g2 = iap_graph_new(g->in_ndim, g->in_shape, c->err);
	if (!g2)
		return c->err ? c->err->code : IAP_ENOMEM;
	iap_graph_set_shape_only(g2, g->shape_only);
	for (int i = 0; i < g->n_nodes; i++) {
		rc = add_node(c, g2, i);
		if (rc)
			goto out_free;
	}
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];
		int kept = 0;
		char *name;

		for (int u = 0; u < grp->n_units; u++)
			kept += c->gkeep[gi][u];
		if (iap_graph_add_units(g2, grp->node, kept, grp->unit_size, grp->coupling) != gi) {
			rc = iap_error_set(c->err, g2->build_err.code ? g2->build_err.code : IAP_EINVAL,
					   "unit group '%s': %s", grp->name, g2->build_err.msg);
			goto out_free;
		}
		name = strdup(grp->name);
		if (!name) {
			rc = iap_error_set(c->err, IAP_ENOMEM, "out of memory");
			goto out_free;
		}
		free(g2->groups[gi].name);
		g2->groups[gi].name = name;
	}
	if (g->output >= 0)
		iap_graph_set_output(g2, g->output);
	g2->training = g->training;
	rc = iap_graph_finalize(g2, c->err);
	if (rc) {
		iap_error_prefix(c->err, "compacted graph");
		goto out_free;
	}
	/* Units that one member of a coupling prunes but the coupling keeps: zero them for good. */
	for (int gi = 0; gi < g->n_groups && !g->shape_only; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];
		int nu = 0;

		for (int u = 0; u < grp->n_units; u++) {
			if (!c->gkeep[gi][u])
				continue;
			if (!mask_at(grp, u)) {
				rc = bake_unit(g2, gi, nu, c->err);
				if (rc)
					goto out_free;
			}
			nu++;
		}
	}
	*out = g2;
	return IAP_OK;

out_free:
	iap_graph_free(g2);
	return rc;
}

/* Every node's keep list: what compaction removes (c->g, flags and err set; plan_free after). */
static int plan(struct compact_ctx *c)
{
	const struct iap_graph *g = c->g;
	int rc;

	if (!g->finalized)
		return iap_error_set(c->err, IAP_EINVAL, "compaction needs a finalized graph");
	if (g->in_ndim < 1)
		return iap_error_set(c->err, IAP_EINVAL, "graph has no input shape");
	c->input = (struct keep){ .n = g->in_shape[unit_axis(g->in_ndim)], .group = -1 };
	c->gkeep = calloc((size_t)g->n_groups + 1, sizeof(*c->gkeep));
	c->k = calloc((size_t)g->n_nodes, sizeof(*c->k));
	c->forced = calloc((size_t)g->n_nodes, sizeof(*c->forced));
	if (!c->gkeep || !c->k || !c->forced)
		return iap_error_set(c->err, IAP_ENOMEM, "out of memory");
	rc = decide_groups(c);
	if (rc)
		return rc;
	rc = plan_attention(c);
	if (rc)
		return rc;
	for (int i = 0; i < g->n_nodes; i++) {
		rc = node_keep(c, i);
		if (rc)
			return rc;
	}
	if (c->k[g->output].idx)
		return iap_error_set(c->err, IAP_EUNSUPPORTED,
				     "the graph output '%s' would lose positions (unit group '%s' reaches it)",
				     g->nodes[g->output].name, group_name(g, c->k[g->output].group));
	return IAP_OK;
}

static void plan_free(struct compact_ctx *c)
{
	const struct iap_graph *g = c->g;

	for (int i = 0; c->k && i < g->n_nodes; i++)
		keep_release(&c->k[i]);
	for (int i = 0; c->forced && i < g->n_nodes; i++)
		keep_release(&c->forced[i]);
	for (int gi = 0; c->gkeep && gi < g->n_groups; gi++)
		free(c->gkeep[gi]);
	free(c->k);
	free(c->forced);
	free(c->gkeep);
}

int iap_graph_compact(const struct iap_graph *g, unsigned flags, struct iap_graph **out,
		      struct iap_error *err)
{
	struct compact_ctx c = { .g = g, .flags = flags, .err = err };
	int rc;

	*out = NULL;
	rc = plan(&c);
	if (!rc)
		rc = build_compact(&c, out);
	plan_free(&c);
	return rc;
}

/* ---- baking masks into weights -------------------------------------------------- */

/* Zero rows [r0, r1) of a parameter (its first axis; all of a bias's entries in range). */
static void zero_rows(struct iap_param *p, int64_t r0, int64_t r1)
{
	int64_t row = p->value.shape[0] ? iap_tensor_numel(&p->value) / p->value.shape[0] : 0;

	if (!p->value.data || r1 > p->value.shape[0])
		return;
	memset(p->value.data + r0 * row, 0, (size_t)((r1 - r0) * row) * sizeof(float));
}

/* Make unit u of group gi exactly zero through the weights alone. */
static int bake_unit(struct iap_graph *g, int gi, int u, struct iap_error *err)
{
	const struct iap_unit_group *grp = &g->groups[gi];
	struct iap_node *n = &g->nodes[grp->node];
	const int64_t p0 = (int64_t)u * grp->unit_size, p1 = p0 + grp->unit_size;
	int cx, q, s;

	switch (n->kind) {
	case IAP_OP_CONV2D:
	case IAP_OP_LINEAR:
		/* A conv/linear output unit is one weight row (per position) and its bias. */
		for (int k = 0; k < n->n_params; k++)
			zero_rows(&n->params[k], p0, p1);
		break;
	case IAP_OP_SOFTMAX: {
		int64_t d, dh;

		if (!find_attention(g, grp->node, &cx, &q, &s))
			goto unsupported;
		/*
		 * A head's attention weights cannot be zeroed through weights (a
		 * softmax never outputs zeros), but its v rows can: then its context
		 * columns, all that the rest of the graph sees of it, are 0.
		 */
		d = g->nodes[cx].attr.attn.dim;
		dh = d / g->nodes[cx].attr.attn.num_heads;
		for (int k = 0; k < g->nodes[q].n_params; k++)
			zero_rows(&g->nodes[q].params[k], 2 * d + p0 * dh, 2 * d + p1 * dh);
		break;
	}
	default:
		goto unsupported;
	}
	/* The BatchNorm after it would add its shift back: weight 0 and bias 0 make it output 0. */
	if (grp->mask_node != grp->node && g->nodes[grp->mask_node].kind == IAP_OP_BATCHNORM2D) {
		struct iap_node *bn = &g->nodes[grp->mask_node];

		for (int k = 0; k < bn->n_params && k < 2; k++)
			zero_rows(&bn->params[k], p0, p1);
	}
	return IAP_OK;

unsupported:
	return iap_error_set(err, IAP_EUNSUPPORTED, "cannot bake the mask of unit group '%s' on %s '%s'",
			     grp->name, iap_op_name(n->kind), n->name);
}

/* Zero the input columns of weight w [out, in, ...] that kin does not keep. */
static int zero_columns(struct iap_param *w, const struct keep *kin, struct iap_error *err)
{
	const int64_t n_out = w->value.shape[0], n_in = w->value.shape[1];
	const int64_t inner = n_out > 0 && n_in > 0 ? iap_tensor_numel(&w->value) / (n_out * n_in) : 0;
	uint8_t *kept = calloc((size_t)n_in + 1, 1);

	if (!kept)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (int64_t j = 0; j < kin->n; j++)
		if (kin->idx[j] >= 0 && kin->idx[j] < n_in)
			kept[kin->idx[j]] = 1;
	for (int64_t o = 0; o < n_out; o++)
		for (int64_t i = 0; i < n_in; i++)
			if (!kept[i])
				memset(w->value.data + (o * n_in + i) * inner, 0, (size_t)inner * sizeof(float));
	free(kept);
	return IAP_OK;
}

/*
 * The consumers' side of the baked units: every conv or linear weight column
 * that reads a position compaction would remove (zero in the masked graph)
 * is zeroed too, so the file shows the pruning on both sides of a layer.
 * Outputs do not change (those inputs are 0). A graph compaction refuses is
 * left with its units baked only.
 */
static int bake_consumers(struct iap_graph *g, struct iap_error *err)
{
	struct iap_error plan_err;
	struct compact_ctx c = { .g = g, .flags = 0, .err = &plan_err };
	int rc = plan(&c);

	if (rc) {
		plan_free(&c);
		return rc == IAP_ENOMEM ? iap_error_set(err, rc, "%s", plan_err.msg) : IAP_OK;
	}
	for (int i = 0; !rc && i < g->n_nodes; i++) {
		struct iap_node *n = &g->nodes[i];
		const struct keep *kin;

		if ((n->kind != IAP_OP_CONV2D && n->kind != IAP_OP_LINEAR) || n->n_inputs < 1)
			continue;
		kin = input_keep(&c, n, 0);
		if (!kin->idx || !n->n_params || n->params[0].value.ndim < 2 || !n->params[0].value.data)
			continue;
		rc = zero_columns(&n->params[0], kin, err);
	}
	plan_free(&c);
	return rc;
}

int iap_graph_bake_masks(struct iap_graph *g, struct iap_error *err)
{
	if (g->shape_only)
		return iap_error_set(err, IAP_EINVAL, "graph was built without parameter storage");
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];

		for (int u = 0; grp->mask && u < grp->n_units; u++) {
			int rc;

			if (grp->mask[u])
				continue;
			rc = bake_unit(g, gi, u, err);
			if (rc)
				return rc;
		}
	}
	return bake_consumers(g, err);
}

/* ---- keep masks as metadata -------------------------------------------------------- */

static const char hexdigits[] = "0123456789abcdef";

char *iap_graph_keep_metadata(const struct iap_graph *g, struct iap_error *err)
{
	size_t len = 1, at = 0;
	char *s;

	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];

		if (strpbrk(grp->name, "=:;")) {
			iap_error_set(err, IAP_EINVAL, "unit group '%s': the name cannot be stored in keep metadata",
				      grp->name);
			return NULL;
		}
		len += strlen(grp->name) + 24 + (size_t)(grp->n_units + 3) / 4;
	}
	s = malloc(len);
	if (!s) {
		iap_error_set(err, IAP_ENOMEM, "out of memory for keep metadata");
		return NULL;
	}
	s[0] = '\0';
	for (int gi = 0; gi < g->n_groups; gi++) {
		const struct iap_unit_group *grp = &g->groups[gi];
		int pruned = 0;

		for (int u = 0; u < grp->n_units; u++)
			pruned += !mask_at(grp, u);
		if (!pruned)
			continue;
		at += (size_t)snprintf(s + at, len - at, "%s%s=%d:", at ? ";" : "", grp->name, grp->n_units);
		for (int u = 0; u < grp->n_units; u += 4) {
			int v = 0;

			for (int b = 0; b < 4; b++)
				v = (v << 1) | (u + b < grp->n_units ? mask_at(grp, u + b) : 0);
			s[at++] = hexdigits[v];
		}
		s[at] = '\0';
	}
	return s;
}

static int hexval(char ch)
{
	const char *p = ch ? strchr(hexdigits, ch >= 'A' && ch <= 'F' ? ch - 'A' + 'a' : ch) : NULL;

	return p ? (int)(p - hexdigits) : -1;
}

/* Parse one "<name>=<n>:<hex>" entry of length len into masks[]. */
static int parse_entry(const struct iap_graph *g, const char *e, size_t len, uint8_t **masks,
		       struct iap_error *err)
{
	const char *eq = memchr(e, '=', len), *colon, *hex;
	int gi = -1, n = 0;
	size_t nlen, hlen;

	if (!eq)
		return iap_error_set(err, IAP_EFORMAT, "keep metadata: entry '%.*s' has no '='", (int)len, e);
	nlen = (size_t)(eq - e);
	for (int i = 0; i < g->n_groups; i++) {
		if (strlen(g->groups[i].name) != nlen || memcmp(g->groups[i].name, e, nlen) != 0)
			continue;
		if (gi >= 0)
			return iap_error_set(err, IAP_EINVAL, "keep metadata: unit group name '%.*s' is ambiguous",
					     (int)nlen, e);
		gi = i;
	}
	if (gi < 0)
		return iap_error_set(err, IAP_EINVAL, "keep metadata: the model has no unit group '%.*s'",
				     (int)nlen, e);
	if (masks[gi])
		return iap_error_set(err, IAP_EFORMAT, "keep metadata: unit group '%.*s' is listed twice",
				     (int)nlen, e);
	colon = memchr(eq, ':', len - nlen);
	if (!colon || colon == eq + 1)
		return iap_error_set(err, IAP_EFORMAT, "keep metadata: '%.*s' needs <units>:<hex>", (int)nlen, e);
	for (const char *p = eq + 1; p < colon; p++) {
		if (*p < '0' || *p > '9' || n > 100000000)
			return iap_error_set(err, IAP_EFORMAT, "keep metadata: bad unit count for '%.*s'",
					     (int)nlen, e);
		n = 10 * n + (*p - '0');
	}
	if (n != g->groups[gi].n_units)
		return iap_error_set(err, IAP_EINVAL, "keep metadata: unit group '%.*s' has %d units, not %d",
				     (int)nlen, e, g->groups[gi].n_units, n);
	hex = colon + 1;
	hlen = len - (size_t)(hex - e);
	if (hlen != (size_t)(n + 3) / 4)
		return iap_error_set(err, IAP_EFORMAT, "keep metadata: '%.*s' needs %d hex digits, has %zu",
				     (int)nlen, e, (n + 3) / 4, hlen);
	masks[gi] = malloc((size_t)n);
	if (!masks[gi])
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	for (size_t i = 0; i < hlen; i++) {
		int v = hexval(hex[i]);

		if (v < 0)
			return iap_error_set(err, IAP_EFORMAT, "keep metadata: '%c' in the mask of '%.*s' is not hex",
					     hex[i], (int)nlen, e);
		for (int b = 0; b < 4; b++) {
			int u = (int)i * 4 + b, bit = (v >> (3 - b)) & 1;

			if (u < n)
				masks[gi][u] = (uint8_t)bit;
			else if (bit)
				return iap_error_set(err, IAP_EFORMAT,
						     "keep metadata: the mask of '%.*s' sets padding bits", (int)nlen, e);
		}
	}
	return IAP_OK;
}

int iap_graph_apply_keep_metadata(struct iap_graph *full, const char *meta, struct iap_error *err)
{
	uint8_t **masks = calloc((size_t)full->n_groups + 1, sizeof(*masks));
	const char *e = meta ? meta : "";
	int rc = IAP_OK;

	if (!masks)
		return iap_error_set(err, IAP_ENOMEM, "out of memory");
	while (*e) {
		const char *end = strchr(e, ';');
		size_t len = end ? (size_t)(end - e) : strlen(e);

		rc = parse_entry(full, e, len, masks, err);
		if (rc)
			goto out_free;
		e += len + (end ? 1 : 0);
		if (end && !*e) {
			rc = iap_error_set(err, IAP_EFORMAT, "keep metadata ends with ';'");
			goto out_free;
		}
	}
	/* Everything parsed: only now touch the graph. */
	for (int gi = 0; gi < full->n_groups; gi++) {
		rc = iap_graph_set_mask(full, gi, masks[gi], err);
		if (rc)
			goto out_free;
	}

out_free:
	for (int gi = 0; gi < full->n_groups; gi++)
		free(masks[gi]);
	free(masks);
	return rc;
}
