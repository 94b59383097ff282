/*
 * A node's forward with the ReLU that reads it, in one pass over the data
 * (library-internal, not installed).
 *
 * Both outputs are written — the backward walk and the rules read every
 * node's output — but the ReLU no longer reads the first one back from
 * memory, and the pair forks and joins the thread team once instead of
 * twice. The values are those of the two ops run one after the other, bit
 * for bit: the same expressions on the same floats. core/graph/fuse.c
 * decides which pairs run this way.
 */
#ifndef IAP_CORE_OPS_FUSED_H
#define IAP_CORE_OPS_FUSED_H

#include <iaprune/graph.h>

#include "../util/visibility.h"

/*
 * relu(v), the one expression the ReLU op and the fused kernels share (their
 * bits must agree). "v < 0 ? 0 : v" keeps NaN (the comparison is false), as
 * PyTorch's relu does, and compiles without a branch: signs after a conv are
 * a coin toss, and a branch mispredicted half the time made the loop 4x
 * slower (bench/NOTES.md).
 */
static inline float iap_relu1(float v)
{
	return v < 0.0f ? 0.0f : v;
}

/* out = batchnorm(in[0]) as the op's forward, and relu_out = relu(out) (as many floats: the caller checks). */
IAP_INTERNAL
int iap_batchnorm_forward_relu(struct iap_graph *g, struct iap_node *node,
			       const struct iap_tensor *const in[], struct iap_tensor *out,
			       struct iap_tensor *relu_out, struct iap_error *err);

/* out = in[0] + in[1], and relu_out = relu(out) (as many floats: the caller checks). */
IAP_INTERNAL
int iap_add_forward_relu(struct iap_graph *g, struct iap_node *node,
			 const struct iap_tensor *const in[], struct iap_tensor *out,
			 struct iap_tensor *relu_out, struct iap_error *err);

#endif
